package schema_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/schema"
)

// load loads a runbook from text, failing the test on any error.
func load(t *testing.T, src string) *schema.Runbook {
	t.Helper()
	rb, err := schema.Load("test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("load: %v\n%s", err, src)
	}
	return rb
}

// loadErr loads a runbook that must fail and returns its errors as lines.
func loadErr(t *testing.T, src string) string {
	t.Helper()
	_, err := schema.Load("test.yaml", []byte(src))
	if err == nil {
		t.Fatalf("loaded without error:\n%s", src)
	}
	var es schema.Errors
	if !errors.As(err, &es) {
		t.Fatalf("error is %T: %v", err, err)
	}
	if code := exitcode.Of(err); code != exitcode.Invalid {
		t.Errorf("exit code %d, want %d (invalid runbook)", code, exitcode.Invalid)
	}
	return err.Error()
}

const header = "version: 1\nname: test\n"

func TestConnectionShortAndLongForm(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		url        string
		lockWait   time.Duration
		settings   map[string]string
	}{
		{"string", "db: postgres://h/app", "postgres://h/app", 0, nil},
		{"mapping", "db: {url: postgres://h/app}", "postgres://h/app", 0, nil},
		{"mapping with settings", "db:\n    url: 'postgres://h/app'\n    lock_timeout: 5s\n    settings: {work_mem: 64MB, jit: off, max_parallel_workers: 4}",
			"postgres://h/app", 5 * time.Second, map[string]string{"work_mem": "64MB", "jit": "off", "max_parallel_workers": "4"}},
		{"expression", "db: ${{ params.url }}", "${{ params.url }}", 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rb := load(t, header+"params:\n  url: {secret: true}\nconnections:\n  "+tc.yaml+"\nsteps:\n  - id: a\n    sql: {on: db, script: SELECT 1}\n")
			c := rb.Connections.Lookup("db")
			if c == nil {
				t.Fatal("no connection db")
			}
			if c.URL.Raw != tc.url {
				t.Errorf("url %q, want %q", c.URL.Raw, tc.url)
			}
			if got := time.Duration(0); c.LockTimeout != nil {
				got = c.LockTimeout.D()
				if got != tc.lockWait {
					t.Errorf("lock_timeout %v, want %v", got, tc.lockWait)
				}
			} else if tc.lockWait != 0 {
				t.Errorf("no lock_timeout, want %v", tc.lockWait)
			}
			if !reflect.DeepEqual(c.Settings, tc.settings) {
				t.Errorf("settings %v, want %v", c.Settings, tc.settings)
			}
		})
	}
}

func TestConfirmShortAndLongForm(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"string", "confirm: Put the app in maintenance mode.", "Put the app in maintenance mode."},
		{"mapping", "confirm: {message: Put the app in maintenance mode.}", "Put the app in maintenance mode."},
		{"block", "confirm:\n      message: |\n        Line one.\n        Line two.", "Line one.\nLine two.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rb := load(t, header+"steps:\n  - id: ask\n    "+tc.yaml+"\n")
			s := rb.Steps[0]
			c, ok := s.Action.(*actions.Confirm)
			if !ok || s.Kind != "confirm" {
				t.Fatalf("action %T kind %q", s.Action, s.Kind)
			}
			if c.Message.Raw != tc.want {
				t.Errorf("message %q, want %q", c.Message.Raw, tc.want)
			}
		})
	}
	if got := loadErr(t, header+"steps:\n  - id: ask\n    confirm: {}\n"); got != `test.yaml:5:14: confirm: missing required key "message"` {
		t.Errorf("empty confirm: %s", got)
	}
}

func TestParamForms(t *testing.T) {
	rb := load(t, header+`params:
  app_role: application
  port: 5432
  strict: true
  url: {secret: true, env: DATABASE_URL}
  optional: {required: false}
  empty_default: {default: ""}
  mode: {enum: [fast, 1], default: 1}
steps:
  - id: a
    confirm: ok
`)
	for _, tc := range []struct {
		name     string
		def      string
		required bool
		secret   bool
	}{
		{"app_role", "application", false, false},
		{"port", "5432", false, false},
		{"strict", "true", false, false},
		{"url", "", true, true},
		{"optional", "", false, false},
		{"empty_default", "", false, false},
		{"mode", "1", false, false},
	} {
		p := rb.Params.Lookup(tc.name)
		if p == nil {
			t.Errorf("no param %s", tc.name)
			continue
		}
		def := ""
		if p.Default != nil {
			def = string(*p.Default)
		}
		if def != tc.def || p.IsRequired() != tc.required || p.Secret != tc.secret {
			t.Errorf("%s: default %q required %v secret %v; want %q %v %v", tc.name, def, p.IsRequired(), p.Secret, tc.def, tc.required, tc.secret)
		}
	}
	if got, want := rb.Params.Names(), []string{"app_role", "port", "strict", "url", "optional", "empty_default", "mode"}; !reflect.DeepEqual(got, want) {
		t.Errorf("names %v, want declaration order %v", got, want)
	}
}

// env returns an expression environment with params.
func env(params map[string]string) *schema.Env {
	return &schema.Env{Params: params, Steps: map[string]schema.StepResult{
		"first": {Status: "succeeded", Outputs: map[string]any{"n": 3, "row": map[string]any{"owner": "app"}}},
	}, Conn: map[string]schema.ConnInfo{"db": {Host: "db.example.com", Port: 5432, Database: "app", User: "admin"}},
		Run: schema.RunInfo{ID: "r1", Operator: "alice"}, Env: map[string]string{"HOME": "/home/alice"}}
}

func TestTemplateEval(t *testing.T) {
	params := map[string]string{"role": "app", "name": "Mixed Case", "quote": "it's", "n": "7"}
	for _, tc := range []struct {
		name, tmpl string
		want       any
	}{
		{"plain text", "SELECT 1", "SELECT 1"},
		{"one expression keeps its type: int", "${{ 1 + 2 }}", 3},
		{"one expression keeps its type: bool", "${{ params.role == 'app' }}", true},
		{"one expression keeps its type: map", "${{ steps.first.outputs.row }}", map[string]any{"owner": "app"}},
		{"one expression with spaces around", "  ${{ 1 + 2 }}  ", "  3  "},
		{"one param", "${{ params.role }}", "app"},
		{"mixed text", "ALTER TABLE t OWNER TO ${{ params.role }};", "ALTER TABLE t OWNER TO app;"},
		{"mixed number", "n=${{ 1 + 2 }}", "n=3"},
		{"two expressions", "${{ params.role }}/${{ params.n }}", "app/7"},
		{"closing braces in a string", `${{ "}}" }}`, "}}"},
		{"closing braces in single quotes", `x${{ '}}' + "}" }}y`, "x}}}y"},
		{"braces in backquotes", "${{ `}}` }}", "}}"},
		{"escaped quote in a string", `${{ "a\"}}" }}`, `a"}}`},
		{"ident", `${{ ident(params.name) }}`, `"Mixed Case"`},
		{"ident plain", `${{ ident(params.role) }}`, `app`},
		{"literal", `${{ literal(params.quote) }}`, `'it''s'`},
		{"ident and literal in text", `COMMENT ON ROLE ${{ ident(params.name) }} IS ${{ literal(params.quote) }}`, `COMMENT ON ROLE "Mixed Case" IS 'it''s'`},
		{"step outputs", "${{ steps.first.outputs.n }} rows", "3 rows"},
		{"connection facts", "${{ conn.db.host }}:${{ conn.db.port }}", "db.example.com:5432"},
		{"run and env", "${{ run.operator }}@${{ env.HOME }}", "alice@/home/alice"},
		{"nil as empty", "[${{ steps.first.outputs.missing }}]", "[]"},
		{"float", "${{ 1.5 * 2 }}|${{ 0.25 }}", "3|0.25"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rb := load(t, header+"params:\n  role: {}\n  name: {}\n  quote: {}\n  n: {}\nconnections:\n  db: postgres://h/app\nsteps:\n"+
				"  - id: first\n    confirm: ok\n  - id: second\n    confirm: "+yamlQuote(tc.tmpl)+"\n")
			tmpl := rb.Steps[1].Action.(*actions.Confirm).Message
			got, err := tmpl.Eval(env(params))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s → %#v, want %#v", tc.tmpl, got, tc.want)
			}
			if s, err := tmpl.String(env(params)); err != nil || s != schema.Stringify(tc.want) {
				t.Errorf("String: %q %v, want %q", s, err, schema.Stringify(tc.want))
			}
		})
	}
}

// yamlQuote writes s as a double-quoted YAML scalar.
func yamlQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func TestTemplateDynamic(t *testing.T) {
	rb := load(t, header+"params:\n  p: {}\nsteps:\n  - id: a\n    confirm: ok\n"+
		"  - id: b\n    confirm: ${{ params.p }}\n"+
		"  - id: c\n    confirm: ${{ steps.a.status }}\n"+
		"  - id: d\n    confirm: ${{ run.id }}\n"+
		"  - id: e\n    confirm: plain\n")
	for i, want := range []bool{false, false, true, true, false} {
		m := rb.Steps[i].Action.(*actions.Confirm).Message
		if m.Dynamic() != want {
			t.Errorf("step %s: Dynamic %v, want %v", rb.Steps[i].ID, m.Dynamic(), want)
		}
	}
}

func TestWhenAndThat(t *testing.T) {
	rb := load(t, header+"params:\n  mode: {default: fast}\nconnections:\n  db: postgres://h/app\nsteps:\n"+
		"  - id: a\n    when: params.mode == \"fast\"\n    confirm: ok\n"+
		"  - id: b\n    when: ${{ params.mode != 'fast' }}\n    confirm: ok\n"+
		"  - id: c\n    assert:\n      on: db\n      query: SELECT 1 AS n\n      that: [row.n == 1, len(rows) == 1]\n")
	e := env(map[string]string{"mode": "fast"})
	for i, want := range []bool{true, false} {
		got, err := rb.Steps[i].When.Bool(e)
		if err != nil || got != want {
			t.Errorf("step %d when: %v %v, want %v", i, got, err, want)
		}
	}
	that := rb.Steps[2].Action.(*actions.Assert).That
	e.Row, e.Rows = map[string]any{"n": 1}, []map[string]any{{"n": 1}}
	for _, x := range that {
		if ok, err := x.Bool(e); !ok || err != nil {
			t.Errorf("%s: %v %v", x.Src, ok, err)
		}
		if !x.Dynamic() {
			t.Errorf("%s: not dynamic", x.Src)
		}
	}
}

func TestStepDigest(t *testing.T) {
	base := header + "connections:\n  db: postgres://h/app\nsteps:\n"
	digest := func(t *testing.T, step string) string {
		t.Helper()
		rb := load(t, base+step)
		if rb.Steps[0].Digest == "" {
			t.Fatal("no digest")
		}
		return rb.Steps[0].Digest
	}
	orig := digest(t, "  - id: a\n    timeout: 5s\n    sql:\n      on: db\n      script: SELECT 1\n")
	for _, tc := range []struct {
		name, step string
		same       bool
	}{
		{"comments", "  # the first step\n  - id: a   # its id\n    timeout: 5s\n    sql:  # run it\n      on: db\n      script: SELECT 1\n", true},
		{"flow style", "  - {id: a, timeout: 5s, sql: {on: db, script: SELECT 1}}\n", true},
		{"quoting", "  - id: 'a'\n    timeout: \"5s\"\n    sql:\n      on: db\n      script: 'SELECT 1'\n", true},
		{"indentation", "  -   id: a\n      timeout: 5s\n      sql:\n          on: db\n          script: SELECT 1\n", true},
		{"key order", "  - sql:\n      script: SELECT 1\n      on: db\n    timeout: 5s\n    id: a\n", true},
		{"script", "  - id: a\n    timeout: 5s\n    sql:\n      on: db\n      script: SELECT 2\n", false},
		{"block scalar adds a newline", "  - id: a\n    timeout: 5s\n    sql:\n      on: db\n      script: |\n        SELECT 1\n", false},
		{"timeout", "  - id: a\n    timeout: 6s\n    sql:\n      on: db\n      script: SELECT 1\n", false},
		{"new key", "  - id: a\n    timeout: 5s\n    always: true\n    sql:\n      on: db\n      script: SELECT 1\n", false},
		{"id", "  - id: b\n    timeout: 5s\n    sql:\n      on: db\n      script: SELECT 1\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := digest(t, tc.step); (got == orig) != tc.same {
				t.Errorf("digest same=%v, want same=%v", got == orig, tc.same)
			}
		})
	}
	// Another step's change does not touch this one's digest.
	rb1 := load(t, base+"  - id: a\n    confirm: ok\n  - id: b\n    confirm: one\n")
	rb2 := load(t, base+"  - id: a\n    confirm: ok\n  - id: b\n    confirm: two\n")
	if rb1.Steps[0].Digest != rb2.Steps[0].Digest || rb1.Steps[1].Digest == rb2.Steps[1].Digest {
		t.Error("a step's digest depends on another step")
	}
}

// A sql file is part of its step's digest: editing it is a change.
func TestStepDigestIncludesSQLFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rb.yaml")
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("rb.yaml", header+"connections:\n  db: postgres://h/app\nsteps:\n  - id: a\n    sql: {on: db, file: migrate.sql}\n")
	digest := func() string {
		rb, err := schema.LoadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return rb.Steps[0].Digest
	}
	write("migrate.sql", "SELECT 1;\n")
	one := digest()
	write("migrate.sql", "SELECT 2;\n")
	if digest() == one {
		t.Error("editing the sql file does not change the step's digest")
	}
	// A built-in runbook cannot read files.
	_, err := schema.Load("builtin:x", []byte(header+"connections:\n  db: postgres://h/app\nsteps:\n  - id: a\n    sql: {on: db, file: migrate.sql}\n"))
	if want := "builtin:x:7:25: sql file: migrate.sql: built-in runbooks cannot refer to files"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// Expressions are located inside their scalar whatever its style: the column
// is that of the offending name in the file.
func TestExpressionPositions(t *testing.T) {
	for _, tc := range []struct {
		name, value string // the value of `confirm:` on line 6, which starts at column 14
		want        string
	}{
		{"plain", "ok ${{ params.nope }}", "6:28"},
		{"double-quoted", `"ok ${{ params.nope }}"`, "6:29"},
		{"double-quoted with escapes", `"\t\u00e9\x41 ${{ params.nope }}"`, "6:39"},
		{"single-quoted with quotes", `'it''s ${{ params.nope }}'`, "6:32"},
		{"tagged", `!!str ${{ params.nope }}`, "6:31"},
		{"anchored", `&m ${{ params.nope }}`, "6:28"},
		{"non-ASCII before", `"héllo wörld ${{ params.nope }}"`, "6:38"},
		{"multi-line plain", "first line\n      ${{ params.nope }}", "7:18"},
		{"multi-line double-quoted", "\"first line\n      ${{ params.nope }}\"", "7:18"},
		{"escaped line break", "\"first \\\n      line ${{ params.nope }}\"", "7:23"},
		{"multi-line with empty line", "'first\n\n      ${{ params.nope }}'", "8:18"},
		{"literal", "|\n      first line\n        ${{ params.nope }}", "8:20"},
		{"literal with indentation indicator", "|2\n         ${{ params.nope }}", "7:21"},
		{"literal keep", "|+\n      ${{ params.nope }}\n\n", "7:18"},
		{"folded", ">\n      first\n      ${{ params.nope }}", "8:18"},
		{"folded with empty line", ">\n      first\n\n      second ${{ params.nope }}", "9:25"},
		{"second expression", "${{ params.p }} ${{ params.nope }}", "6:41"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := header + "params: {p: {}}\nsteps:\n  - id: a\n    confirm: " + tc.value + "\n"
			got := loadErr(t, src)
			want := fmt.Sprintf("test.yaml:%s: expression: undefined param \"nope\"", tc.want)
			if got != want {
				t.Errorf("got  %s\nwant %s\n%s", got, want, src)
			}
		})
	}
	// CRLF line ends count as one line break.
	src := strings.ReplaceAll(header+"steps:\n  - id: a\n    confirm: |\n      x\n      ${{ params.nope }}\n", "\n", "\r\n")
	if got, want := loadErr(t, src), `test.yaml:7:18: expression: undefined param "nope"`; got != want {
		t.Errorf("CRLF: got %s, want %s", got, want)
	}
}

// Errors in an expression point at the offending token, wherever it is.
func TestExpressionErrors(t *testing.T) {
	for _, tc := range []struct{ name, step, want string }{
		{"undefined connection", `confirm: ${{ conn.nope.host }}`, `8:23: expression: undefined connection "nope"`},
		{"connection field", `confirm: ${{ conn.db.password }}`, `8:26: expression: a connection has host, port, database and user, not "password"`},
		{"step field", `confirm: ${{ steps.a.stats }}`, `8:26: expression: a step has status and outputs, not "stats" (did you mean "status"?)`},
		{"run field", `confirm: ${{ run.who }}`, `8:22: expression: run has id, operator and started_at, not "who"`},
		{"unknown name", `confirm: ${{ parms.x }}`, `8:18: expression: unknown name parms (did you mean "params"?)`},
		{"when must be boolean", "when: '1 + 1'\n    confirm: ok", `8:12: expression: expected bool, but got int`},
		{"empty when", "when: '  '\n    confirm: ok", `8:11: empty expression`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := header + "connections: {db: postgres://h/app}\nsteps:\n  - id: a\n    confirm: first\n  - id: b\n    " + tc.step + "\n"
			want := "test.yaml:" + tc.want // the step under test is on line 8
			if got := loadErr(t, src); got != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
	// Connection URLs are resolved before any step: steps are not available.
	got := loadErr(t, header+"connections:\n  db: postgres://h/${{ steps.a.status }}\nsteps:\n  - id: a\n    confirm: ok\n")
	if want := `test.yaml:4:30: expression: steps are not available here`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestNullValues(t *testing.T) {
	rb := load(t, header+"description:\nparams:\n  p: {default: ~, required: false}\nsteps:\n  - id: a\n    name: null\n    when:\n    confirm: ok\n")
	if rb.Description != "" || rb.Steps[0].Name != "" || rb.Steps[0].When != nil {
		t.Errorf("null values: description %q name %q when %v", rb.Description, rb.Steps[0].Name, rb.Steps[0].When)
	}
	if d := rb.Params.Lookup("p").Default; d != nil {
		t.Errorf("default: ~ is %q, want no default", *d)
	}
}

func TestErrorSnippet(t *testing.T) {
	_, err := schema.Load("test.yaml", []byte(header+"steps:\n  - id: a\n    confirm: ${{ params.nope }}\n"))
	var es schema.Errors
	if !errors.As(err, &es) || len(es) != 1 {
		t.Fatalf("%v", err)
	}
	want := "  3 | steps:\n  4 |   - id: a\n> 5 |     confirm: ${{ params.nope }}\n    |                         ^\n"
	if got := es[0].Snippet(); got != want {
		t.Errorf("snippet\n%s\nwant\n%s", got, want)
	}
}
