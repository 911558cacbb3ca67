package actions

import (
	"errors"
	"strings"
	"testing"

	"github.com/runbookhq/runbook/internal/pgerr"
)

func TestAssertQuery(t *testing.T) {
	db := newDB(t)
	db.exec(t, "CREATE TABLE t (n int, owner text); INSERT INTO t VALUES (1, 'app'), (2, 'postgres'), (3, 'postgres')")
	f := newFixture(t, map[string]string{"db": db.url}, `
  - id: pass
    assert:
      on: db
      query: SELECT count(*) AS n, max(n) AS top FROM t
      that: row.n == 3 && row.top == 3
  - id: fail
    assert:
      on: db
      query: SELECT count(*) AS n FROM t WHERE owner <> $1
      args: ['${{ params.role }}']
      that: row.n == 0
      message: '${{ row.n }} tables are not owned by ${{ params.role }}'
  - id: list
    assert:
      on: db
      query: SELECT n, owner FROM t ORDER BY n
      that:
        - len(rows) == 3
        - rows[1].owner == "postgres"
        - all(rows, .n > 1)
  - id: empty
    assert:
      on: db
      query: SELECT n FROM t WHERE false
      that: len(rows) == 0 && row.n == nil
  - id: bare
    assert:
      that: params.role == "app"
  - id: bare-fail
    assert:
      that: params.role != "app"
`, fixtureOpts{params: map[string]string{"role": "app"}})

	out := f.mustRun("pass")
	if row := out["row"].(map[string]any); row["n"] != int64(3) || len(out["rows"].([]map[string]any)) != 1 {
		t.Errorf("outputs = %v", out)
	}
	res := f.events("assert.result")
	if len(res) != 1 || res[0]["outcome"] != "pass" || res[0]["expr"] != "row.n == 3 && row.top == 3" ||
		res[0]["row"].(map[string]any)["n"] != float64(3) {
		t.Errorf("assert.result = %v", res)
	}

	err := f.runErr("fail")
	var ae *AssertionError
	if !errors.As(err, &ae) || err.Error() != "2 tables are not owned by app" || ae.Expr != "row.n == 0" {
		t.Errorf("error = %v", err)
	}
	res = f.events("assert.result")
	if last := res[len(res)-1]; last["outcome"] != "fail" || last["level"] != "warn" || last["message"] != "2 tables are not owned by app" {
		t.Errorf("assert.result = %v", last)
	}

	err = f.runErr("list")
	if err.Error() != "assertion failed: all(rows, .n > 1)" {
		t.Errorf("error = %v", err)
	}
	if res = f.events("assert.result"); len(res) != 5 || res[2]["outcome"] != "pass" || res[3]["outcome"] != "pass" {
		t.Errorf("every expression is logged until the failing one: %v", res)
	}
	if out := f.mustRun("empty"); out["row"] != nil {
		t.Errorf("outputs = %v", out)
	}
	f.mustRun("bare")
	if err := f.runErr("bare-fail"); err.Error() != `assertion failed: params.role != "app"` {
		t.Errorf("error = %v", err)
	}
}

func TestAssertQueryError(t *testing.T) {
	db := newDB(t)
	f := newFixture(t, map[string]string{"db": db.url}, `
  - id: a
    assert:
      on: db
      query: SELECT nosuch FROM pg_class
      that: row.x == 1
`, fixtureOpts{})
	err := f.runErr("a")
	var se *pgerr.SQLError
	if !errors.As(err, &se) || se.Code != "42703" || !strings.Contains(err.Error(), "assert query at line 1 col 8") {
		t.Errorf("error = %v", err)
	}
}

func TestAssertCompare(t *testing.T) {
	a, b := newDB(t), newDB(t)
	for _, db := range []testDB{a, b} {
		db.exec(t, "CREATE TABLE t (id int, v text); INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 1000) i")
	}
	f := newFixture(t, map[string]string{"source": a.url, "target": b.url}, `
  - id: cmp
    assert:
      compare: [source, target]
      query: SELECT id, v FROM t WHERE id > $1 ORDER BY id
      args: ['${{ 0 }}']
      show_diff: 2
  - id: cmp-all
    assert:
      compare: [source, target]
      query: SELECT id, v FROM t ORDER BY id
  - id: bad
    assert:
      compare: [source, target]
      query: SELECT 1/0
`, fixtureOpts{})
	out := f.mustRun("cmp")
	if out["rows"] != 1000 {
		t.Errorf("outputs = %v", out)
	}
	res := f.events("assert.result")
	if len(res) != 1 || res[0]["outcome"] != "pass" || res[0]["expr"] != "compare source target" {
		t.Errorf("assert.result = %v", res)
	}

	b.exec(t, "UPDATE t SET v = NULL WHERE id = 10; UPDATE t SET v = 'changed' WHERE id = 500; DELETE FROM t WHERE id = 700; INSERT INTO t VALUES (2000, 'new')")
	err := f.runErr("cmp")
	var ae *AssertionError
	if !errors.As(err, &ae) {
		t.Fatalf("error = %v", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"compare source target: results differ in 303 row(s) (source: 1000 rows, target: 1000 rows)",
		"\n  row 10: source=(10, v10) target=(10, NULL)",
		"\n  row 500: source=(500, v500) target=(500, changed)",
		"\n  … and 301 more",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	b.exec(t, "DELETE FROM t WHERE id > 990")
	a.exec(t, "UPDATE t SET v = 'v10' WHERE id = 10") // no change: NULL still differs
	f2 := newFixture(t, map[string]string{"source": a.url, "target": b.url}, `
  - id: cmp
    assert:
      compare: [source, target]
      query: SELECT id, v FROM t WHERE id > 985 ORDER BY id
`, fixtureOpts{})
	err = f2.runErr("cmp")
	for _, want := range []string{
		"(source: 15 rows, target: 5 rows)",
		"row 6: source=(991, v991) target=(missing)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q:\n%s", want, err)
		}
	}

	err = f.runErr("bad")
	var se *pgerr.SQLError
	if !errors.As(err, &se) || se.Code != "22012" || !strings.Contains(err.Error(), "compare query on ") {
		t.Errorf("error = %v", err)
	}
}
