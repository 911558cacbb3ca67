package schema

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
)

// SchemaID is the $id of the runbook JSON Schema.
const SchemaID = "https://runbookhq.github.io/runbook/runbook.schema.json"

// jsonSchemaer is implemented by types whose JSON Schema is not derived from
// their fields.
type jsonSchemaer interface {
	jsonSchema(g *schemaGen) map[string]any
}

type schemaGen struct {
	defs map[string]any
}

// JSONSchema returns the JSON Schema (draft-07) of the runbook document,
// derived from the Go types and the registered actions: the same definitions
// the loader decodes with.
func JSONSchema() []byte {
	g := &schemaGen{defs: map[string]any{}}
	root := g.structSchema(reflect.TypeOf(Runbook{}))
	root["properties"].(map[string]any)["version"].(map[string]any)["enum"] = []int{Version}
	root["$schema"] = "http://json-schema.org/draft-07/schema#"
	root["$id"] = SchemaID
	root["title"] = "runbook v1"
	root["description"] = "A declarative runbook for PostgreSQL operations (runbook, format version 1)."
	root["definitions"] = g.defs
	b, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		panic(err) // only maps of plain values: cannot fail
	}
	return append(b, '\n')
}

var jsonSchemaerType = reflect.TypeOf((*jsonSchemaer)(nil)).Elem()

func (g *schemaGen) typeSchema(t reflect.Type) map[string]any {
	if t.Kind() == reflect.Pointer {
		return g.typeSchema(t.Elem())
	}
	if t.Implements(jsonSchemaerType) {
		return reflect.Zero(t).Interface().(jsonSchemaer).jsonSchema(g)
	}
	if reflect.PointerTo(t).Implements(jsonSchemaerType) {
		return reflect.New(t).Interface().(jsonSchemaer).jsonSchema(g)
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.typeSchema(t.Elem())
	case reflect.Struct:
		return g.structSchema(t)
	case reflect.Slice:
		return map[string]any{"type": "array", "items": g.typeSchema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": map[string]any{"type": []string{"string", "number", "boolean"}}}
	case reflect.String:
		// Plain strings take ${{ }} literally, so the loader refuses it there.
		return map[string]any{"type": "string", "not": map[string]any{"pattern": `\$\{\{`}}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64, reflect.Int32:
		return map[string]any{"type": "integer"}
	case reflect.Float64:
		return map[string]any{"type": "number"}
	}
	return map[string]any{}
}

// structSchema derives an object schema from a struct's field tags.
func (g *schemaGen) structSchema(t reflect.Type) map[string]any {
	si := infoOf(t)
	props := map[string]any{}
	var required []string
	var short map[string]any
	for _, f := range si.fields {
		sf := t.Field(f.index)
		p := g.typeSchema(sf.Type)
		p = withDoc(p, sf)
		props[f.key] = p
		if f.required {
			required = append(required, f.key)
		}
		if f.short {
			short = p
		}
	}
	obj := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		obj["required"] = required
	}
	if short != nil {
		return map[string]any{"anyOf": []any{short, obj}}
	}
	return obj
}

// withDoc adds a field's description, enum, pattern, minimum and default.
func withDoc(p map[string]any, sf reflect.StructField) map[string]any {
	out := map[string]any{}
	for k, v := range p {
		out[k] = v
	}
	if d := sf.Tag.Get("doc"); d != "" {
		out["description"] = d
	}
	if e := sf.Tag.Get("enum"); e != "" {
		out["enum"] = strings.Split(e, ",")
	}
	if pat := sf.Tag.Get("pattern"); pat != "" {
		out["pattern"] = pat
	}
	if m := sf.Tag.Get("minimum"); m != "" {
		v, _ := strconv.ParseFloat(m, 64)
		out["minimum"] = v
	}
	if d := sf.Tag.Get("default"); d != "" {
		if v, err := strconv.ParseFloat(d, 64); err == nil && out["type"] != "string" {
			out["default"] = v
		} else {
			out["default"] = d
		}
	}
	return out
}

const exprDoc = "May embed ${{ expression }} (expr-lang): params.NAME, steps.ID.outputs.*, conn.NAME.host, run.id, env.NAME, ident(), literal(), shellquote()."

func (Template) jsonSchema(*schemaGen) map[string]any {
	// Numbers and booleans are accepted and taken as their text.
	return map[string]any{"type": []string{"string", "number", "boolean"}, "$comment": exprDoc}
}

func (Expr) jsonSchema(*schemaGen) map[string]any {
	return map[string]any{"type": []string{"string", "boolean"}, "$comment": "A bare expr-lang expression that yields a boolean."}
}

func (Exprs) jsonSchema(*schemaGen) map[string]any {
	e := map[string]any{"type": []string{"string", "boolean"}}
	return map[string]any{"anyOf": []any{e, map[string]any{"type": "array", "items": e, "minItems": 1}}}
}

func (Duration) jsonSchema(*schemaGen) map[string]any {
	return map[string]any{"anyOf": []any{
		// time.ParseDuration's grammar, without the sign the loader refuses.
		map[string]any{"type": "string", "pattern": `^\s*\+?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+\s*$|^\s*\+?0\s*$`},
		map[string]any{"type": "integer", "minimum": 0, "$comment": "milliseconds"},
	}}
}

func (Size) jsonSchema(*schemaGen) map[string]any {
	return map[string]any{"anyOf": []any{
		map[string]any{"type": "string", "pattern": sizeRe.String()},
		map[string]any{"type": "integer", "minimum": 0, "$comment": "bytes"},
	}}
}

func (ConnRef) jsonSchema(*schemaGen) map[string]any {
	return map[string]any{"type": "string", "$comment": "The name of one of the runbook's connections."}
}

func (Scalar) jsonSchema(*schemaGen) map[string]any {
	return map[string]any{"type": []string{"string", "number", "boolean"}}
}

func (Params) jsonSchema(g *schemaGen) map[string]any {
	g.defs["param"] = g.typeSchema(reflect.TypeOf(Param{}))
	return map[string]any{"type": "object",
		"propertyNames":        map[string]any{"pattern": nameRe.String()},
		"additionalProperties": map[string]any{"$ref": "#/definitions/param"}}
}

func (Connections) jsonSchema(g *schemaGen) map[string]any {
	g.defs["connection"] = g.typeSchema(reflect.TypeOf(Connection{}))
	return map[string]any{"type": "object",
		"propertyNames":        map[string]any{"pattern": nameRe.String()},
		"additionalProperties": map[string]any{"$ref": "#/definitions/connection"}}
}

func (Steps) jsonSchema(g *schemaGen) map[string]any {
	g.defs["step"] = g.stepSchema()
	return map[string]any{"type": "array", "minItems": 1, "items": map[string]any{"$ref": "#/definitions/step"}}
}

// stepSchema is the common step keys plus one property per action kind, of
// which exactly one must be present.
func (g *schemaGen) stepSchema() map[string]any {
	s := g.structSchema(reflect.TypeOf(Step{}))
	props := s["properties"].(map[string]any)
	var one []any
	for _, at := range ActionTypes() {
		def := "action." + at.Kind
		a := g.typeSchema(reflect.TypeOf(at.New()).Elem())
		a["description"] = at.Summary
		g.defs[def] = a
		props[at.Kind] = map[string]any{"$ref": "#/definitions/" + def}
		one = append(one, map[string]any{"required": []string{at.Kind}})
	}
	if len(one) > 0 {
		s["oneOf"] = one
	}
	return s
}
