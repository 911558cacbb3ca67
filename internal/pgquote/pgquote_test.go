package pgquote

import (
	"context"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/runbookhq/runbook/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// hostile are strings that exercise every branch of both functions.
var hostile = []string{
	"", "simple", "Mixed", "with space", `a"b`, `"`, `""`, "it's", `'`, `back\slash`, `\`,
	`\'`, `it's a \ mess "too"`, "ünïcödé", "日本語", "emoji😀", "select", "SELECT", "user",
	"Table", "table", "1abc", "_x", "_", "x1", "a-b", "a.b", "a$b", "tab\tchar", "new\nline",
	"cr\rreturn", "abort", "between", "authorization", "all", "select_", "_select",
	"z", "a_b_c", "current_user", "x" + strings.Repeat("y", 70),
}

// randomStrings returns n strings drawn with a fixed seed from an alphabet
// heavy in characters that matter to quoting, and some that are safe
// identifiers, so both paths of Ident are covered.
func randomStrings(n int) []string {
	r := rand.New(rand.NewPCG(15, 2026))
	alphabet := []rune("abcxyz_09AZ \"'\\\t\n-$.éß日😀")
	safe := []rune("abcdefghijklmnopqrstuvwxyz0123456789_")
	out := make([]string, n)
	for i := range out {
		var b strings.Builder
		pool := alphabet
		if i%3 == 0 {
			pool = safe
		}
		for range r.IntN(12) {
			b.WriteRune(pool[r.IntN(len(pool))])
		}
		out[i] = b.String()
	}
	return out
}

// sortedKeywords returns the keyword table's words, sorted.
func sortedKeywords() []string {
	words := make([]string, 0, len(keywords))
	for w := range keywords {
		words = append(words, w)
	}
	sort.Strings(words)
	return words
}

// server returns the shared test server and one connection to it, skipping
// when the server is not PostgreSQL 15 (the version pgquote follows).
func server(t *testing.T) (*pgtest.Server, func(sql string, args ...any) [][]string) {
	t.Helper()
	s := pgtest.Shared(t)
	conn := s.Connect(t, "postgres")
	query := func(sql string, args ...any) [][]string {
		t.Helper()
		rows, err := conn.Query(context.Background(), sql, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out [][]string
		for rows.Next() {
			var a, b string
			if err := rows.Scan(&a, &b); err != nil {
				t.Fatal(err)
			}
			out = append(out, []string{a, b})
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	var version int
	if err := conn.QueryRow(context.Background(), "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version/10000 != 15 {
		t.Skipf("server is version %d; pgquote follows PostgreSQL 15", version)
	}
	return s, query
}

// compare checks Ident and Literal against the server's quote_ident and
// quote_literal for every string in in, with one round trip.
func compare(t *testing.T, query func(string, ...any) [][]string, in []string) {
	t.Helper()
	rows := query(`SELECT quote_ident(s), quote_literal(s)
		FROM unnest($1::text[]) WITH ORDINALITY AS u(s, n) ORDER BY n`, in)
	if len(rows) != len(in) {
		t.Fatalf("server returned %d rows for %d strings", len(rows), len(in))
	}
	for i, s := range in {
		if got, want := Ident(s), rows[i][0]; got != want {
			t.Errorf("Ident(%q) = %s, quote_ident gives %s", s, got, want)
		}
		if got, want := Literal(s), rows[i][1]; got != want {
			t.Errorf("Literal(%q) = %s, quote_literal gives %s", s, got, want)
		}
	}
}

func TestMatchesServer(t *testing.T) {
	_, query := server(t)
	for name, in := range map[string][]string{
		"hostile":  hostile,
		"keywords": sortedKeywords(),
		"random":   randomStrings(1000),
	} {
		t.Run(name, func(t *testing.T) {
			compare(t, query, in)
			t.Logf("%d strings match", len(in))
		})
	}
}

// TestEveryKeyword checks the keyword table against the server's
// pg_get_keywords() and every keyword, in lower and upper case and with a
// suffix, against quote_ident.
func TestEveryKeyword(t *testing.T) {
	_, query := server(t)
	rows := query("SELECT word, catcode::text FROM pg_get_keywords()")
	codes := map[category]string{unreserved: "U", colName: "C", typeFuncName: "T", reserved: "R"}
	seen := map[string]bool{}
	for _, row := range rows {
		word, code := row[0], row[1]
		seen[word] = true
		cat, ok := keywords[word]
		if !ok {
			t.Errorf("keyword %q (%s) missing from the table", word, code)
		} else if codes[cat] != code {
			t.Errorf("keyword %q: table says %s, server says %s", word, codes[cat], code)
		}
	}
	for w := range keywords {
		if !seen[w] {
			t.Errorf("table keyword %q unknown to the server", w)
		}
	}
	var in []string
	for _, w := range sortedKeywords() {
		in = append(in, w, strings.ToUpper(w), w+"_", "_"+w, w+"1")
	}
	compare(t, query, in)
	t.Logf("%d keywords, %d strings match", len(keywords), len(in))
}

// TestKnown pins a few results without a server.
func TestKnown(t *testing.T) {
	for _, tc := range []struct{ in, ident, literal string }{
		{"", `""`, `''`},
		{"simple", `simple`, `'simple'`},
		{"Mixed", `"Mixed"`, `'Mixed'`},
		{`a"b`, `"a""b"`, `'a"b'`},
		{"it's", `"it's"`, `'it''s'`},
		{`back\slash`, `"back\slash"`, `E'back\\slash'`},
		{`\'`, `"\'"`, `E'\\'''`},
		{"select", `"select"`, `'select'`},
		{"abort", `abort`, `'abort'`},                           // unreserved
		{"between", `"between"`, `'between'`},                   // column name
		{"authorization", `"authorization"`, `'authorization'`}, // type or function name
		{"1abc", `"1abc"`, `'1abc'`},
		{"_x", `_x`, `'_x'`},
		{"ünïcödé", `"ünïcödé"`, `'ünïcödé'`},
	} {
		if got := Ident(tc.in); got != tc.ident {
			t.Errorf("Ident(%q) = %s, want %s", tc.in, got, tc.ident)
		}
		if got := Literal(tc.in); got != tc.literal {
			t.Errorf("Literal(%q) = %s, want %s", tc.in, got, tc.literal)
		}
	}
}
