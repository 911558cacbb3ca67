package schema_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	_ "github.com/runbookhq/runbook/actions" // registers the action kinds
	"github.com/runbookhq/runbook/schema"
)

// The committed schema must be what the Go types generate: `make schema`
// refreshes it.
func TestCommittedSchemaIsCurrent(t *testing.T) {
	committed, err := os.ReadFile("runbook.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(committed, schema.JSONSchema()) {
		t.Fatal("schema/runbook.schema.json is stale: run `make schema` and commit it")
	}
}

// compileSchema compiles the committed JSON Schema, as an editor would use it.
func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("runbook.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(schema.SchemaID, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(schema.SchemaID)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// yamlToJSON turns a YAML document into the JSON value a JSON Schema
// validator sees, as an editor's YAML support does: yaml.v3 decodes it (tags
// resolved, aliases and merge keys expanded), mapping keys become strings. A
// file with more than one document is refused like the loader refuses it.
func yamlToJSON(src []byte) (any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var v any
	if err := dec.Decode(&v); err != nil && err != io.EOF {
		return nil, err
	}
	var extra any
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, fmt.Errorf("more than one YAML document (%v)", err)
	}
	b, err := json.Marshal(stringKeys(v))
	if err != nil {
		return nil, err
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(b))
}

func stringKeys(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = stringKeys(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = stringKeys(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = stringKeys(e)
		}
		return x
	}
	return v
}

// runbookFiles are every runbook the project ships: the examples (vars files
// live under examples/vars/ and are not runbooks) and the built-in library.
func runbookFiles(t testing.TB) []string {
	t.Helper()
	var files []string
	for _, pattern := range []string{"../examples/*.yaml", "../runbooks/*.yaml"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 2 {
		t.Fatalf("found %d runbooks in examples/ and runbooks/", len(files))
	}
	return files
}

// Every shipped runbook is accepted by the loader and by the JSON Schema.
func TestShippedRunbooksAgree(t *testing.T) {
	sch := compileSchema(t)
	for _, file := range runbookFiles(t) {
		t.Run(file, func(t *testing.T) {
			if _, err := schema.LoadFile(file); err != nil {
				t.Errorf("loader: %v", err)
			}
			v, err := yamlToJSON(readFile(t, file))
			if err != nil {
				t.Fatalf("YAML to JSON: %v", err)
			}
			if err := sch.Validate(v); err != nil {
				t.Errorf("JSON Schema: %v", err)
			}
		})
	}
}

// How the JSON Schema judges each malformed case. Every case the loader
// rejects falls in exactly one class, so this test states where the two
// agree and where only the loader can tell.
var (
	// notYAML: the file is not one YAML document an editor could turn into
	// JSON: both refuse it, before any schema is involved.
	notYAML = map[string]string{
		"06-duplicate-keys": "yaml.v3 refuses duplicate keys when decoding",
		"22-tabs":           "tab indentation",
		"26-alias-bomb":     "yaml.v3 refuses excessive aliasing",
		"27-deep-nesting":   "deeper than YAML allows",
		"36-yaml-syntax":    "syntax error",
		"37-unclosed-quote": "syntax error",
		"40-unknown-anchor": "syntax error",
		"41-invalid-utf8":   "not UTF-8",
		"42-nul-byte":       "control character",
		"25-two-documents":  "a stream of two documents has no single JSON value",
	}
	// loaderOnly: cases the JSON Schema accepts because what is wrong cannot
	// be said in a JSON Schema derived from the field tags.
	loaderOnly = map[string]string{
		"05-duplicate-ids":                     "uniqueness of a property across array items",
		"07-undefined-connection":              "references between parts of the document",
		"08-undefined-param":                   "references inside ${{ }} expressions",
		"09-undefined-step":                    "references inside expressions",
		"10-later-step":                        "order of steps referenced by expressions",
		"11-expression-syntax":                 "expr-lang syntax and types",
		"12-row-outside-assert":                "names available to an expression depend on where it is",
		"28-merge-keys":                        "YAML → JSON expands merge keys; the loader refuses them",
		"29-sql-script-and-file":               "one of two keys (Validate of the sql action, not a field tag)",
		"30-sql-file-missing":                  "the file system",
		"31-generate-batch-size-without-batch": "a key allowed only with another's value (Validate of generate)",
		"32-assert-compare-one-connection":     "list length and combinations of keys (Validate of assert)",
		"33-shell-neither-run-nor-pipe":        "one of two keys, empty cmd (Validate of shell)",
		"34-param-pattern-invalid":             "whether a pattern is a valid RE2 regular expression",
		"35-param-default-not-matching":        "a value checked against a sibling's pattern or enum",
		"43-duration-overflow":                 "a duration that matches the grammar but overflows",
	}
)

// For every malformed case: the loader rejects it; when it is valid YAML and
// structurally wrong, the JSON Schema rejects it too; the cases only the
// loader can reject are exactly loaderOnly.
func TestMalformedAgree(t *testing.T) {
	sch := compileSchema(t)
	seen := map[string]bool{}
	for _, name := range malformedCases(t) {
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(malformedDir, name+".yaml")
			src := readFile(t, file)
			if _, err := schema.Load(file, src); err == nil {
				t.Fatal("the loader accepts it")
			}
			v, convErr := yamlToJSON(src)
			if why, ok := notYAML[name]; ok {
				if convErr == nil {
					t.Errorf("listed as not YAML (%s), but it converts to JSON", why)
				}
				return
			}
			if convErr != nil {
				t.Fatalf("YAML to JSON: %v (list it in notYAML if that is the point of the case)", convErr)
			}
			err := sch.Validate(v)
			if why, ok := loaderOnly[name]; ok {
				if err != nil {
					t.Errorf("listed as loader-only (%s), but the JSON Schema rejects it too: move it out of loaderOnly\n%v", why, err)
				}
				return
			}
			if err == nil {
				t.Errorf("structural case accepted by the JSON Schema: fix schema/jsonschema.go, or list it in loaderOnly with the reason")
			}
		})
	}
	for _, m := range []map[string]string{notYAML, loaderOnly} {
		for name := range m {
			if !seen[name] {
				t.Errorf("%s is listed but is not a case of %s", name, malformedDir)
			}
		}
	}
	var structural []string
	for name := range seen {
		if _, ok := loaderOnly[name]; ok {
			continue
		}
		if _, ok := notYAML[name]; ok {
			continue
		}
		structural = append(structural, name)
	}
	sort.Strings(structural)
	t.Logf("both reject (structural): %s", strings.Join(structural, " "))
}

// The schema also catches what the loader does for a few single keys, so an
// editor shows the same problems while typing.
func TestSchemaRejectsLikeTheLoader(t *testing.T) {
	sch := compileSchema(t)
	base := "version: 1\nname: ok\nsteps:\n  - id: a\n"
	for _, tc := range []struct{ name, src string }{
		{"step key typo", base + "    confirm: ok\n    tiemout: 5s\n"},
		{"version 2", strings.Replace(base, "version: 1", "version: 2", 1) + "    confirm: ok\n"},
		{"duration without unit", base + "    timeout: '5'\n    confirm: ok\n"},
		{"negative duration", base + "    timeout: -5s\n    confirm: ok\n"},
		{"negative milliseconds", base + "    timeout: -5\n    confirm: ok\n"},
		{"param name", "version: 1\nname: ok\nparams:\n  bad-name: {}\nsteps:\n  - id: a\n    confirm: ok\n"},
		{"empty that", base + "    assert: {that: []}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := schema.Load("x.yaml", []byte(tc.src)); err == nil {
				t.Error("the loader accepts it")
			}
			v, err := yamlToJSON([]byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			if sch.Validate(v) == nil {
				t.Error("the JSON Schema accepts it")
			}
		})
	}
	// And accepts what the loader accepts in every duration form.
	for _, d := range []string{"0", "500", "'0'", "1h30m", "1.5s", ".5s", "+5s", "300ms", "2µs", "2μs", "2us", "' 5s '"} {
		src := base + "    timeout: " + d + "\n    confirm: ok\n"
		if _, err := schema.Load("x.yaml", []byte(src)); err != nil {
			t.Errorf("timeout: %s: loader: %v", d, err)
		}
		v, err := yamlToJSON([]byte(src))
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(v); err != nil {
			t.Errorf("timeout: %s: JSON Schema: %v", d, err)
		}
	}
}

func readFile(t testing.TB, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
