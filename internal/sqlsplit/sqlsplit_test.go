package sqlsplit

import (
	"reflect"
	"testing"
)

func TestSplit(t *testing.T) {
	tests := []struct {
		name, script string
		want         []string
	}{
		{"one", "SELECT 1", []string{"SELECT 1"}},
		{"two", "SELECT 1; SELECT 2;", []string{"SELECT 1", "SELECT 2"}},
		{"empty", " ;; -- nothing\n/* x */ ;", nil},
		{"quoted semicolon", "SELECT 'a;b'; SELECT \"x;y\" FROM t", []string{"SELECT 'a;b'", "SELECT \"x;y\" FROM t"}},
		{"doubled quote", "SELECT 'it''s; fine'; SELECT 2", []string{"SELECT 'it''s; fine'", "SELECT 2"}},
		{"E string backslash", `SELECT E'a\';b'; SELECT 2`, []string{`SELECT E'a\';b'`, "SELECT 2"}},
		{"standard string backslash", `SELECT 'a\'; SELECT 2`, []string{`SELECT 'a\'`, "SELECT 2"}},
		{"dollar", "DO $$ BEGIN PERFORM 1; END $$; SELECT 2", []string{"DO $$ BEGIN PERFORM 1; END $$", "SELECT 2"}},
		{"dollar tag", "CREATE FUNCTION f() RETURNS int AS $fn$ SELECT 1; $fn$ LANGUAGE sql; SELECT 2",
			[]string{"CREATE FUNCTION f() RETURNS int AS $fn$ SELECT 1; $fn$ LANGUAGE sql", "SELECT 2"}},
		{"positional param is not a tag", "SELECT $1; SELECT 2", []string{"SELECT $1", "SELECT 2"}},
		{"line comment", "SELECT 1 -- a; b\n; SELECT 2", []string{"SELECT 1 -- a; b", "SELECT 2"}},
		{"nested block comment", "SELECT /* a /* b; */ c; */ 1; SELECT 2", []string{"SELECT /* a /* b; */ c; */ 1", "SELECT 2"}},
		{"parens", "CREATE RULE r AS ON INSERT TO t DO (SELECT 1; SELECT 2); SELECT 3",
			[]string{"CREATE RULE r AS ON INSERT TO t DO (SELECT 1; SELECT 2)", "SELECT 3"}},
		{"begin atomic", "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END; SELECT 3",
			[]string{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END", "SELECT 3"}},
		{"unterminated quote", "SELECT 'abc; SELECT 2", []string{"SELECT 'abc; SELECT 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, s := range Split(tt.script) {
				got = append(got, s.SQL)
				if tt.script[s.Offset:s.Offset+len(s.SQL)] != s.SQL {
					t.Errorf("offset %d does not point at %q", s.Offset, s.SQL)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Split(%q) = %q, want %q", tt.script, got, tt.want)
			}
		})
	}
}

func TestPosition(t *testing.T) {
	s := "SELECT 1;\n  SELECT ünï;\nx"
	for _, tt := range []struct{ off, line, col int }{{0, 1, 1}, {12, 2, 3}, {len(s) - 1, 3, 1}} {
		if l, c := Position(s, tt.off); l != tt.line || c != tt.col {
			t.Errorf("Position(%d) = %d:%d, want %d:%d", tt.off, l, c, tt.line, tt.col)
		}
	}
}

func FuzzSplit(f *testing.F) {
	f.Add("SELECT 1; SELECT 'a;b'; DO $$ x; $$")
	f.Fuzz(func(t *testing.T, s string) {
		for _, st := range Split(s) {
			if s[st.Offset:st.Offset+len(st.SQL)] != st.SQL {
				t.Fatalf("bad offset")
			}
		}
	})
}

func TestCastParams(t *testing.T) {
	casts := map[int]string{1: "text", 12: "bigint"}
	for in, want := range map[string]string{
		"SELECT format('%I', $1)":             "SELECT format('%I', $1::text)",
		"SELECT $1, $2, $12":                  "SELECT $1::text, $2, $12::bigint",
		"SELECT '$1', \"$1\", $$ $1 $$ -- $1": "SELECT '$1', \"$1\", $$ $1 $$ -- $1",
		"SELECT $1 /* $1 */ || $tag$$1$tag$":  "SELECT $1::text /* $1 */ || $tag$$1$tag$",
		"SELECT a$1 FROM t":                   "SELECT a$1 FROM t",
	} {
		if got := CastParams(in, casts); got != want {
			t.Errorf("CastParams(%q) = %q, want %q", in, got, want)
		}
	}
}
