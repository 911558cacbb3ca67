package schema_test

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/runbookhq/runbook/actions"
)

// TestRawInterpolationWarnings checks which interpolations of a param load
// with a warning, and where it points: a param without pattern or enum whose
// value can reach SQL or a shell command line as raw text.
func TestRawInterpolationWarnings(t *testing.T) {
	const head = `version: 1
name: inj
params:
  x: {}
  secret: {secret: true}
  word: {pattern: '[a-z_]+'}
  color: {enum: [red, blue]}
connections:
  db: postgres://localhost/db
steps:
`
	tests := []struct {
		name string
		step string
		// want: "LINE NAME#N LANG": a warning at the Nth params.NAME of
		// line LINE of the file, about SQL or shell.
		want []string
	}{
		{"sql script, quoted in SQL but raw", `  - id: s
    sql: {on: db, script: "DELETE FROM t WHERE k = '${{ params.x }}'"}`,
			[]string{"12 x#1 SQL"}},
		{"sql script, literal and ident", `  - id: s
    sql: {on: db, script: "SELECT ${{ literal(params.x) }} FROM ${{ ident(params.x) }}"}`, nil},
		{"bind parameter", `  - id: s
    sql: {on: db, script: "SELECT $1", args: ['${{ params.x }}']}`, nil},
		{"pattern and enum", `  - id: s
    sql: {on: db, script: "SELECT '${{ params.word }}', '${{ params.color }}'"}`, nil},
		{"secret without pattern", `  - id: s
    sql: {on: db, script: "ALTER ROLE r PASSWORD '${{ params.secret }}'"}`,
			[]string{"12 secret#1 SQL"}},
		{"values that cannot carry text", `  - id: s
    sql: {on: db, script: "SELECT ${{ len(params.x) }}, ${{ params.x == 'a' }}, '${{ params.x != '' ? 'set' : 'unset' }}'"}`, nil},
		{"text that flows through", `  - id: s
    sql: {on: db, script: "SELECT '${{ upper(params.x) }}', '${{ 'a' + params.x }}', '${{ params.color == 'red' ? params.x : 'b' }}'"}`,
			[]string{"12 x#1 SQL", "12 x#2 SQL", "12 x#3 SQL"}},
		{"shellquote is not an SQL quote", `  - id: s
    sql: {on: db, script: "SELECT ${{ shellquote(params.x) }}"}`,
			[]string{"12 x#1 SQL"}},
		{"block scalar", `  - id: s
    sql:
      on: db
      script: |
        SELECT 1;
        SELECT '${{ params.x }}';`,
			[]string{"16 x#1 SQL"}},
		{"generate query", `  - id: g
    generate: {on: db, query: "SELECT format('DROP TABLE %I', '${{ params.x }}')", args: ['${{ params.x }}']}`,
			[]string{"12 x#1 SQL"}},
		{"assert query", `  - id: a
    assert: {on: db, query: "SELECT count(*) AS n FROM ${{ params.x }}", that: row.n > 0}`,
			[]string{"12 x#1 SQL"}},
		{"shell run", `  - id: sh
    shell: {run: "pg_dump -t ${{ params.x }} | wc -c"}`,
			[]string{"12 x#1 shell"}},
		{"shell run, shellquote", `  - id: sh
    shell: {run: "pg_dump -t ${{ shellquote(params.x) }} | wc -c"}`, nil},
		{"literal is not a shell quote", `  - id: sh
    shell: {run: "echo ${{ literal(params.x) }}"}`,
			[]string{"12 x#1 shell"}},
		{"shell env and pipe argv are not parsed by a shell", `  - id: sh
    shell:
      env: {X: '${{ params.x }}'}
      pipe:
        - cmd: [echo, '${{ params.x }}']`, nil},
		{"connection strings and messages are not SQL", `  - id: c
    confirm: "Drop ${{ params.x }}?"`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := head + tt.step + "\n"
			rb := load(t, src)
			lines := strings.Split(src, "\n")
			var want []string
			for _, w := range tt.want {
				var line, n int
				var name, lang string
				if _, err := fmt.Sscanf(strings.Replace(w, "#", " ", 1), "%d %s %d %s", &line, &name, &n, &lang); err != nil {
					t.Fatalf("want %q: %v", w, err)
				}
				want = append(want, fmt.Sprintf("test.yaml:%d:%d: param %s: %s", line, column(t, lines[line-1], "params."+name, n), name, lang))
			}
			var got []string
			for _, w := range rb.Warnings {
				lang := "SQL"
				if strings.Contains(w.Msg, "shell command line") {
					lang = "shell"
				}
				name := strings.Fields(w.Msg)[1]
				got = append(got, fmt.Sprintf("%s:%d:%d: param %s: %s", w.File, w.Pos.Line, w.Pos.Col, name, lang))
				if !strings.Contains(w.Warning(), ": warning: param "+name+" has no pattern and is interpolated") {
					t.Errorf("warning text: %s", w.Warning())
				}
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// column returns the column (from 1, in characters) of the nth occurrence
// of sub in line.
func column(t *testing.T, line, sub string, n int) int {
	t.Helper()
	off := 0
	for i := 1; ; i++ {
		j := strings.Index(line[off:], sub)
		if j < 0 {
			t.Fatalf("no occurrence %d of %q in %q", n, sub, line)
		}
		if i == n {
			return utf8.RuneCountInString(line[:off+j]) + 1
		}
		off += j + len(sub)
	}
}

// TestRawInterpolationAdvice checks that each warning points to the safe
// ways of its language.
func TestRawInterpolationAdvice(t *testing.T) {
	rb := load(t, `version: 1
name: inj
params:
  x: {}
connections:
  db: postgres://localhost/db
steps:
  - id: s
    sql: {on: db, script: "SELECT '${{ params.x }}'"}
  - id: sh
    shell: {run: "echo ${{ params.x }}"}
`)
	if len(rb.Warnings) != 2 {
		t.Fatalf("%d warnings, want 2: %v", len(rb.Warnings), rb.Warnings)
	}
	for i, want := range []string{
		"test.yaml:9:40: warning: param x has no pattern and is interpolated into SQL as raw text: a value like `x'); DROP TABLE t; --` would run as SQL. Pass it as a bind parameter (args: and $1), quote it with ident() or literal(), or give the param a pattern or an enum",
		"test.yaml:11:28: warning: param x has no pattern and is interpolated into a shell command line as raw text: a value like `$(rm -rf ~)` would run. Pass it through env: and write \"$NAME\" in the command, quote it with shellquote(), or give the param a pattern or an enum",
	} {
		if got := rb.Warnings[i].Warning(); got != want {
			t.Errorf("warning %d:\n%s\nwant:\n%s", i, got, want)
		}
	}
}

// TestShellquote evaluates shellquote() in a template: one quoted word,
// whatever the value holds; a NUL byte is an error.
func TestShellquote(t *testing.T) {
	rb := load(t, header+"params:\n  x: {}\nsteps:\n  - id: c\n    confirm: \"echo ${{ shellquote(params.x) }}\"\n")
	tmpl := rb.Steps[0].Action.(*actions.Confirm).Message
	for _, tt := range []struct{ in, want string }{
		{"abc", "echo 'abc'"},
		{"", "echo ''"},
		{"it's", `echo 'it'\''s'`},
		{"$(rm -rf ~); `x` \"y\" \\ \n", "echo '$(rm -rf ~); `x` \"y\" \\ \n'"},
	} {
		got, err := tmpl.String(env(map[string]string{"x": tt.in}))
		if err != nil || got != tt.want {
			t.Errorf("shellquote(%q): %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := tmpl.String(env(map[string]string{"x": "a\x00b"})); err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Errorf("shellquote of a NUL byte: %v, want an error", err)
	}
}
