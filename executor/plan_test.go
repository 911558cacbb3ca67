package executor_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/pgtest"
	"github.com/runbookhq/runbook/schema"
)

// TestPlanGenerate lists the exact statements of generate steps, changes the
// digest when the catalog changes what would run, and changes nothing in the
// database: the catalog, the table's contents and the server's commit counter
// of the database stay the same, and a generator that tries to write fails.
func TestPlanGenerate(t *testing.T) {
	srv := pgtest.Shared(t)
	url := srv.NewDatabase(t)
	db := pgtest.DatabaseName(t, url)
	srv.Exec(t, db, `CREATE SCHEMA "Sales"; CREATE TABLE "Sales"."Order ""Items""" (x int); CREATE TABLE public.plain (x int);
		CREATE ROLE plan_app; CREATE TABLE audit_trail (n int);
		CREATE FUNCTION sneaky() RETURNS text LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit_trail VALUES (1); RETURN 'SELECT 1'; END $$;`)
	dir := t.TempDir()
	path := filepath.Join(dir, "rb.yaml")
	src := `version: 1
name: plangen
params:
  url: {secret: true}
  role: {default: plan_app}
connections:
  db: ${{ params.url }}
steps:
  - id: owners
    generate:
      on: db
      query: |
        SELECT format('ALTER TABLE %I.%I OWNER TO %I', schemaname, tablename, $1::text)
        FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND tablename <> 'audit_trail'
        ORDER BY 1
      args: ['${{ params.role }}']
  - id: later
    generate:
      on: db
      query: SELECT '${{ steps.owners.outputs.executed }}'
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	plan := func() *executor.Plan {
		rb, err := schema.LoadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		vals, err := rb.ResolveParams(schema.ParamInputs{Vars: []string{"url=" + url}})
		if err != nil {
			t.Fatal(err)
		}
		p, err := executor.NewPlan(rb, vals)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Generate(context.Background(), rb, vals); err != nil {
			t.Fatal(err)
		}
		return p
	}
	catalog := `SELECT string_agg(c.oid || ':' || c.relname || ':' || c.relowner, ',' ORDER BY c.oid) FROM pg_class c`
	before := srv.QueryValue(t, db, catalog)
	p1 := plan()
	if got := srv.QueryValue(t, db, catalog); got != before {
		t.Errorf("plan --generate changed the catalog")
	}
	want := []string{`ALTER TABLE "Sales"."Order ""Items""" OWNER TO plan_app`, `ALTER TABLE public.plain OWNER TO plan_app`}
	if len(p1.Generated) != 2 || strings.Join(p1.Generated[0].Statements, "\n") != strings.Join(want, "\n") {
		t.Fatalf("generated %+v, want %q", p1.Generated, want)
	}
	if p1.Generated[1].Note == "" || p1.Generated[1].Statements != nil {
		t.Errorf("a generator reading earlier steps' outputs must be marked, not run: %+v", p1.Generated[1])
	}
	if p2 := plan(); p2.Digest != p1.Digest {
		t.Errorf("the same catalog gave another digest")
	}
	srv.Exec(t, db, `CREATE TABLE public.added (x int)`)
	if p3 := plan(); p3.Digest == p1.Digest {
		t.Errorf("the digest did not change when the catalog changed what would run")
	}

	if !p1.Generated[1].AfterChanges {
		t.Errorf("a generator after a step that changes something must be marked after_changes: %+v", p1.Generated[1])
	}

	// A generator query that writes is refused by the READ ONLY transaction.
	if err := os.WriteFile(path, []byte(strings.Replace(src, "  - id: owners\n", "  - id: sneaky\n    generate: {on: db, query: SELECT sneaky()}\n  - id: owners\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	rb, err := schema.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	vals, _ := rb.ResolveParams(schema.ParamInputs{Vars: []string{"url=" + url}})
	p, _ := executor.NewPlan(rb, vals)
	err = p.Generate(context.Background(), rb, vals)
	if err == nil || !strings.Contains(err.Error(), "read-only transaction") {
		t.Errorf("a writing generator: %v, want a read-only error", err)
	}
	if n := srv.QueryValue(t, db, `SELECT count(*) FROM audit_trail`); n != "0" {
		t.Errorf("the writing generator wrote %s rows", n)
	}
}
