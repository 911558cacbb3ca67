package schema

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// The decoder turns a yaml.Node tree into Go values strictly: unknown keys,
// duplicate keys and values of the wrong kind are errors with positions, and
// every error is collected rather than stopping at the first. Struct fields
// describe themselves with tags, which the JSON Schema generator reads too, so
// the document's Go types and its schema cannot drift:
//
//	yaml:"name"        the key (a field without it, or with "-", is not decoded)
//	doc:"…"            description, for the JSON Schema and `runbook show`
//	required:"true"    the key must be present
//	enum:"a,b"         allowed values of a string
//	pattern:"re"       a string must match
//	minimum:"n"        smallest allowed number
//	default:"v"        documented default
//	short:"true"       a plain scalar given in place of the mapping fills this field
//	scope:"row"        expressions in this field may use row and rows (assert)
//	text:"sql"         the field's evaluated text runs as SQL; text:"shell" as
//	                   a bash command line: raw params there are warned about
//	                   (inject.go)
//
// A field `Pos Pos` receives the mapping's position; a field `Keys Positions`
// receives each present key's value position.

const (
	// maxNodes bounds the nodes one document may expand to, aliases included,
	// so that an alias bomb is an error and not a hang.
	maxNodes = 2_000_000
	// MaxFileSize bounds the size of a runbook or vars file.
	MaxFileSize = 16 << 20
)

// Positions maps each key present in a mapping to the position of its value.
type Positions map[string]Pos

// nodeDecoder is implemented by types with their own YAML form.
type nodeDecoder interface {
	decodeNode(d *decoder, n *yaml.Node)
}

type decoder struct {
	errs   *errList
	budget int
	// sites are the expressions met while decoding, compiled once the whole
	// document is known.
	sites []exprSite
	// step is the index of the step being decoded (-1 outside steps).
	step int
	// rowScope is set inside fields whose expressions may use row/rows.
	rowScope bool
	// text is the language of the field being decoded (text tag), "" for
	// none.
	text string
	// loose accepts any scalar where a string is expected.
	loose bool
	// extraKeys are further valid keys of the mapping being decoded, for
	// "did you mean" hints (a step's action kinds).
	extraKeys []string
	// connRefs are the connection names referenced, checked at the end.
	connRefs []*ConnRef
	// what names the value a nodeDecoder is decoding, for its messages.
	what string
}

// name returns what the value being decoded is called, or def.
func (d *decoder) name(def string) string {
	if d.what != "" {
		return d.what
	}
	return def
}

func newDecoder(errs *errList) *decoder {
	return &decoder{errs: errs, budget: maxNodes, step: -1}
}

func pos(n *yaml.Node) Pos { return Pos{Line: n.Line, Col: n.Column} }

// resolve follows aliases, charging the node budget.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i > 100 || n.Alias == nil {
			d.errs.add(pos(n), "alias cannot be resolved")
			return nil
		}
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	d.budget--
	if d.budget == -1 {
		d.errs.add(pos(n), "document too large: it expands to more than %d nodes (alias bomb?)", maxNodes)
	}
	if d.budget < 0 {
		return nil
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return "a boolean"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		}
		return "a string"
	}
	return "an unknown node"
}

var (
	nodeDecoderType = reflect.TypeOf((*nodeDecoder)(nil)).Elem()
	posType         = reflect.TypeOf(Pos{})
	positionsType   = reflect.TypeOf(Positions{})
)

// decode decodes n into v, which must be settable.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, what string) {
	if n = d.resolve(n); n == nil {
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(nodeDecoderType) {
		saved := d.what
		d.what = what
		v.Addr().Interface().(nodeDecoder).decodeNode(d, n)
		d.what = saved
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if n.ShortTag() == "!!null" {
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), what)
	case reflect.Struct:
		d.decodeStruct(n, v, what)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errs.add(pos(n), "%s must be a list, not %s", what, kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		v.Set(s)
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", what, i))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.errs.add(pos(n), "%s must be a mapping, not %s", what, kindName(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		saved := d.loose
		d.loose = true // map values (env: {K: 1}) take any scalar as its text
		d.eachPair(n, func(k string, kn, vn *yaml.Node) {
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(vn, ev, what+"."+k)
			m.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), ev)
		})
		d.loose = saved
		v.Set(m)
	case reflect.String:
		if s, ok := d.scalar(n, what, d.loose); ok {
			if strings.Contains(s, "${{") {
				// Only template fields evaluate expressions; a plain string
				// would keep the text literally, which is never what was meant.
				d.errs.add(pos(n), "%s: ${{ }} is not evaluated here; this value is taken literally", what)
				return
			}
			v.SetString(s)
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.errs.add(pos(n), "%s must be true or false, not %s", what, kindName(n))
			return
		}
		b, _ := strconv.ParseBool(strings.ToLower(n.Value))
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			d.errs.add(pos(n), "%s must be an integer, not %s", what, kindName(n))
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		if err != nil || v.OverflowInt(i) {
			d.errs.add(pos(n), "%s: %q is out of range", what, n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		tag := n.ShortTag()
		if n.Kind != yaml.ScalarNode || (tag != "!!float" && tag != "!!int") {
			d.errs.add(pos(n), "%s must be a number, not %s", what, kindName(n))
			return
		}
		f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
		if err != nil {
			d.errs.add(pos(n), "%s: %q is not a number", what, n.Value)
			return
		}
		v.SetFloat(f)
	default:
		d.errs.add(pos(n), "%s: cannot decode into %s", what, v.Type())
	}
}

// scalar returns a string scalar's value. Any scalar is accepted when loose is set
// (vars files, env maps: numbers and booleans are taken as their text).
func (d *decoder) scalar(n *yaml.Node, what string, loose bool) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errs.add(pos(n), "%s must be a string, not %s", what, kindName(n))
		return "", false
	}
	tag := n.ShortTag()
	if tag == "!!null" {
		return "", true // `key:`, `key: ~` and `key: null` alike: no value
	}
	if tag != "!!str" && !loose {
		d.errs.add(pos(n), "%s must be a string, not %s (quote it: %q)", what, kindName(n), n.Value)
		return "", false
	}
	return n.Value, true
}

// eachPair calls fn for every key of a mapping, reporting non-string and
// duplicate keys.
func (d *decoder) eachPair(n *yaml.Node, fn func(key string, k, v *yaml.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := d.resolve(n.Content[i]), n.Content[i+1]
		if k == nil {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errs.add(pos(k), "mapping keys must be strings, not %s", kindName(k))
			continue
		}
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			d.errs.add(pos(k), "merge keys (<<) are not supported; repeat the keys or use a vars file")
			continue
		}
		if line, dup := seen[k.Value]; dup {
			d.errs.add(pos(k), "duplicate key %q (first at line %d)", k.Value, line)
			continue
		}
		seen[k.Value] = k.Line
		fn(k.Value, k, v)
	}
}

type fieldInfo struct {
	index    int
	key      string
	required bool
	enum     []string
	pattern  *regexp.Regexp
	minimum  *float64
	short    bool
	rowScope bool
	text     string
}

type structInfo struct {
	fields   []fieldInfo
	byKey    map[string]*fieldInfo
	keys     []string
	posField int // index of the Pos field, or -1
	keysFld  int // index of the Keys Positions field, or -1
	short    *fieldInfo
}

// structCache holds each struct type's decoding information; documents may
// be loaded concurrently (a fleet's workers each load theirs).
var structCache sync.Map // reflect.Type → *structInfo

func infoOf(t reflect.Type) *structInfo {
	if si, ok := structCache.Load(t); ok {
		return si.(*structInfo)
	}
	si := &structInfo{byKey: map[string]*fieldInfo{}, posField: -1, keysFld: -1}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		switch {
		case f.Type == posType && f.Name == "Pos":
			si.posField = i
			continue
		case f.Type == positionsType:
			si.keysFld = i
			continue
		}
		key := f.Tag.Get("yaml")
		if key == "" || key == "-" || !f.IsExported() {
			continue
		}
		fi := fieldInfo{index: i, key: key, required: f.Tag.Get("required") == "true",
			short: f.Tag.Get("short") == "true", rowScope: f.Tag.Get("scope") == "row", text: f.Tag.Get("text")}
		if e := f.Tag.Get("enum"); e != "" {
			fi.enum = strings.Split(e, ",")
		}
		if p := f.Tag.Get("pattern"); p != "" {
			fi.pattern = regexp.MustCompile(p)
		}
		if m := f.Tag.Get("minimum"); m != "" {
			v, err := strconv.ParseFloat(m, 64)
			if err != nil {
				panic(fmt.Sprintf("schema: bad minimum tag on %s.%s", t, f.Name))
			}
			fi.minimum = &v
		}
		si.fields = append(si.fields, fi)
		si.keys = append(si.keys, key)
	}
	for i := range si.fields {
		f := &si.fields[i]
		si.byKey[f.key] = f
		if f.short {
			si.short = f
		}
	}
	actual, _ := structCache.LoadOrStore(t, si)
	return actual.(*structInfo)
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, what string) {
	si := infoOf(v.Type())
	if si.posField >= 0 {
		v.Field(si.posField).Set(reflect.ValueOf(pos(n)))
	}
	if n.Kind == yaml.ScalarNode && si.short != nil && n.ShortTag() != "!!null" {
		d.field(si.short, n, v, what)
		d.checkRequired(n, v, si, map[string]bool{si.short.key: true}, what)
		return
	}
	if n.Kind != yaml.MappingNode {
		if si.short != nil {
			d.errs.add(pos(n), "%s must be a string or a mapping, not %s", what, kindName(n))
		} else {
			d.errs.add(pos(n), "%s must be a mapping, not %s", what, kindName(n))
		}
		return
	}
	extra := d.extraKeys
	d.extraKeys = nil
	defer func() { d.extraKeys = extra }()
	keys := Positions{}
	present := map[string]bool{}
	d.eachPair(n, func(k string, kn, vn *yaml.Node) {
		f := si.byKey[k]
		if f == nil {
			d.errs.add(pos(kn), "unknown key %q in %s%s", k, what, suggest(k, append(append([]string{}, si.keys...), extra...)))
			return
		}
		present[k] = true
		keys[k] = pos(vn)
		d.field(f, vn, v, what)
	})
	if si.keysFld >= 0 {
		v.Field(si.keysFld).Set(reflect.ValueOf(keys))
	}
	d.checkRequired(n, v, si, present, what)
}

func (d *decoder) checkRequired(n *yaml.Node, v reflect.Value, si *structInfo, present map[string]bool, what string) {
	for _, f := range si.fields {
		if f.required && !present[f.key] {
			d.errs.add(pos(n), "%s: missing required key %q", what, f.key)
		}
	}
}

func (d *decoder) field(f *fieldInfo, vn *yaml.Node, v reflect.Value, what string) {
	fv := v.Field(f.index)
	saved, savedText := d.rowScope, d.text
	if f.rowScope {
		d.rowScope = true
	}
	d.text = f.text
	before := len(d.errs.errs)
	d.decode(vn, fv, f.key)
	d.rowScope, d.text = saved, savedText
	if len(d.errs.errs) > before {
		return // the value did not decode: its zero value says nothing
	}
	r := d.resolve(vn)
	if r == nil || r.Kind != yaml.ScalarNode {
		return
	}
	if f.enum != nil && fv.Kind() == reflect.String && fv.String() != "" {
		ok := false
		for _, e := range f.enum {
			ok = ok || e == fv.String()
		}
		if !ok {
			d.errs.add(pos(r), "%s: %q is not one of %s%s", f.key, fv.String(), strings.Join(f.enum, ", "), suggest(fv.String(), f.enum))
		}
	}
	if f.pattern != nil && fv.Kind() == reflect.String && !f.pattern.MatchString(fv.String()) {
		d.errs.add(pos(r), "%s: %q does not match %s", f.key, fv.String(), f.pattern)
	}
	if f.minimum != nil {
		var x float64
		switch fv.Kind() {
		case reflect.Int, reflect.Int64, reflect.Int32:
			x = float64(fv.Int())
		case reflect.Float64:
			x = fv.Float()
		default:
			return
		}
		if x < *f.minimum {
			d.errs.add(pos(r), "%s must be at least %v, not %v", f.key, *f.minimum, x)
		}
	}
}
