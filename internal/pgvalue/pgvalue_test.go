package pgvalue

import (
	"context"
	"reflect"
	"testing"

	"github.com/runbookhq/runbook/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestQueryMaps reads values of each kind of type back from a real server in
// the form outputs and expressions take.
func TestQueryMaps(t *testing.T) {
	srv := pgtest.Shared(t)
	conn := srv.Connect(t, pgtest.DatabaseName(t, srv.NewDatabase(t)))
	ctx := context.Background()
	for _, c := range []struct {
		expr string
		want any
	}{
		{"NULL::int", nil},
		{"true", true},
		{"'x'::text", "x"},
		{"42::smallint", int64(42)},
		{"9000000000::bigint", int64(9000000000)},
		{"1.5::float8", 1.5},
		{"'NaN'::float8", "NaN"},
		{"'-Infinity'::float4", "-Infinity"},
		{"12.50::numeric", "12.50"},
		{"'2024-05-01'::date", "2024-05-01"},
		{"'infinity'::date", "infinity"},
		{"'2024-05-01 12:00:00.5'::timestamp", "2024-05-01T12:00:00.5"},
		{"'2024-05-01 12:00:00.5+02'::timestamptz", "2024-05-01T10:00:00.5Z"},
		{`'\x0aff'::bytea`, `\x0aff`},
		{"'1b4e28ba-2fa1-11d2-883f-0016d3cca427'::uuid", "1b4e28ba-2fa1-11d2-883f-0016d3cca427"},
		{`'{"a": [1, "b"]}'::jsonb`, map[string]any{"a": []any{1.0, "b"}}},
		{"ARRAY[1, NULL, 3]", []any{int64(1), nil, int64(3)}},
		{"ARRAY['2024-05-01'::date]", []any{"2024-05-01"}},
		{"'10.0.0.0/8'::cidr", "10.0.0.0/8"},
	} {
		rows, _, err := QueryMaps(ctx, conn, "SELECT "+c.expr+" AS v", nil)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		if len(rows) != 1 || !reflect.DeepEqual(rows[0]["v"], c.want) {
			t.Errorf("%s = %#v, want %#v", c.expr, rows, c.want)
		}
	}
}

// TestBind casts exactly the parameters whose type the server cannot infer,
// from their values' types.
func TestBind(t *testing.T) {
	srv := pgtest.Shared(t)
	conn := srv.Connect(t, pgtest.DatabaseName(t, srv.NewDatabase(t)))
	ctx := context.Background()
	for _, c := range []struct {
		sql  string
		args []any
		want string
	}{
		{"SELECT 1 WHERE 1 = $1", []any{"1"}, "SELECT 1 WHERE 1 = $1"},
		{"SELECT format('%I', $1)", []any{"Mixed Case"}, "SELECT format('%I', $1::text)"},
		{"SELECT format('%s %s', $1, $2)", []any{int64(1), true}, "SELECT format('%s %s', $1::bigint, $2::boolean)"},
		{"SELECT format('%s', $1)", []any{2.5}, "SELECT format('%s', $1::double precision)"},
		{"SELECT 1", nil, "SELECT 1"},
	} {
		got, err := Bind(ctx, conn, c.sql, c.args)
		if err != nil || got != c.want {
			t.Errorf("Bind(%q) = %q, %v; want %q", c.sql, got, err, c.want)
		}
	}
	// Inside a transaction the probe leaves the transaction usable.
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := Bind(ctx, conn, "SELECT format('%I', $1)", []any{"x"}); err != nil {
		t.Fatal(err)
	}
	rows, _, err := QueryMaps(ctx, conn, "SELECT 1 AS one", nil)
	if err != nil || len(rows) != 1 || rows[0]["one"] != int64(1) {
		t.Errorf("after Bind in a transaction: %v, %v", rows, err)
	}
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
}
