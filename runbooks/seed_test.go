package runbooks_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/testbin"
)

const seed = "../examples/seed-procedure.yaml"

// TestSeedProcedure runs the published procedure, transcribed as
// examples/seed-procedure.yaml, between two clusters: it works on the simple
// database it was written for, and shows why the built-in exists on a
// database with one mixed-case schema.
func TestSeedProcedure(t *testing.T) {
	src, tgt := clusters(t)

	t.Run("simple-database", func(t *testing.T) {
		before := setPgaudit(t, tgt, "all")
		m := newMigration(t, src, tgt, readFixture(t, "simple.sql"))
		o := m.run(t, seed, filepath.Join(t.TempDir(), "state.json"), nil, executor.Options{})
		if o.code != 0 {
			t.Fatalf("exit %d: %v", o.code, o.err)
		}
		rows := tgt.Query(t, m.tgtName, `SELECT c.relkind::text || ' ' || c.oid::regclass::text, pg_get_userbyid(c.relowner)
			FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1`)
		if len(rows) < 5 {
			t.Fatalf("the restore brought %d relations", len(rows))
		}
		for _, r := range rows {
			if r[1] != "application" {
				t.Errorf("%s is owned by %s, not application", r[0], r[1])
			}
		}
		m.checkCopied(t)
		if got := pgauditSetting(t, tgt); !equalStrings(got, before) {
			t.Errorf("postgres role settings after the procedure: %q, want %q", got, before)
		}
	})

	t.Run("mixed-case-schema-breaks-it", func(t *testing.T) {
		setPgaudit(t, tgt, "all")
		m := newMigration(t, src, tgt, readFixture(t, "mixed-case.sql"))
		o := m.run(t, seed, filepath.Join(t.TempDir(), "state.json"), nil, executor.Options{})
		if o.code != 1 || !strings.Contains(o.err.Error(), `schema "sales" does not exist`) {
			t.Fatalf("exit %d (%v), want 1: the generated ALTER TABLE Sales.\"orders\" folds the schema to sales", o.code, o.err)
		}
		t.Logf("the published procedure on a mixed-case schema: %v", strings.SplitN(o.err.Error(), "\n", 2)[0])
		st := testbin.Statuses(o.events)
		if st["tables"] != "failed" || st["enable-pgaudit"] != "" {
			t.Errorf("tables %q (want failed), enable-pgaudit %q (want not run)", st["tables"], st["enable-pgaudit"])
		}
		// And, having no clean-up step, it leaves auditing off.
		for _, s := range pgauditSetting(t, tgt) {
			if strings.HasPrefix(s, "pgaudit.log=") {
				t.Errorf("pgaudit.log is %q after the failure; the published procedure has no clean-up, so it should be left off", s)
			}
		}
	})
}
