package runbooks_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/pgtest"
	"github.com/runbookhq/runbook/internal/shellword"
	"github.com/runbookhq/runbook/internal/testbin"
	"github.com/runbookhq/runbook/runbooks"
	"github.com/runbookhq/runbook/schema"
)

// TestHerokuToCrunchyBridge runs the built-in migration between two real
// clusters, the target running pgaudit as Crunchy Bridge does. The subtests
// share the clusters and run one after the other (the postgres role's
// pgaudit.log is cluster-wide).
func TestHerokuToCrunchyBridge(t *testing.T) {
	src, tgt := clusters(t)
	hostile := readFixture(t, "hostile.sql")

	// With the Heroku CLI (a stand-in that records its arguments) and the
	// role's pgaudit.log = 'all', as Crunchy Bridge sets it.
	t.Run("hostile-names/pgaudit-all/heroku-cli", func(t *testing.T) {
		before := setPgaudit(t, tgt, "all")
		herokuLog := fakeHeroku(t)
		m := newMigration(t, src, tgt, hostile)
		off := logOffset(t, tgt)
		start := time.Now()
		o := m.run(t, builtin, filepath.Join(t.TempDir(), "state.json"), map[string]string{"heroku_app": "acme-test"}, executor.Options{})
		t.Logf("migration took %s", time.Since(start).Round(time.Millisecond))
		if o.code != 0 {
			t.Fatalf("exit %d: %v", o.code, o.err)
		}
		checkOwners(t, tgt, m.tgtName, "application")
		m.checkCopied(t)
		if got := pgauditSetting(t, tgt); !equalStrings(got, before) {
			t.Errorf("postgres role settings after the migration: %q, want %q", got, before)
		}
		checkPgauditQuiet(t, logSince(t, tgt, off))
		b, _ := os.ReadFile(herokuLog)
		want := "maintenance:on --app acme-test\naddons:detach DATABASE --app acme-test\nmaintenance:off --app acme-test\n"
		if string(b) != want {
			t.Errorf("heroku CLI calls:\n%s\nwant:\n%s", b, want)
		}
		st := testbin.Statuses(o.events)
		for _, id := range []string{"maintenance-confirm"} {
			if st[id] != "skipped" {
				t.Errorf("step %s: %q, want skipped with heroku_app set", id, st[id])
			}
		}
	})

	// Without the Heroku CLI (confirm steps instead, approved by --yes) and
	// with no pgaudit.log on the role before: it must stay absent.
	t.Run("hostile-names/pgaudit-absent/confirms", func(t *testing.T) {
		before := setPgaudit(t, tgt, "")
		m := newMigration(t, src, tgt, hostile)
		off := logOffset(t, tgt)
		o := m.run(t, builtin, filepath.Join(t.TempDir(), "state.json"), nil, executor.Options{})
		if o.code != 0 {
			t.Fatalf("exit %d: %v", o.code, o.err)
		}
		checkOwners(t, tgt, m.tgtName, "application")
		m.checkCopied(t)
		if got := pgauditSetting(t, tgt); !equalStrings(got, before) {
			t.Errorf("postgres role settings after the migration: %q, want %q", got, before)
		}
		checkPgauditQuiet(t, logSince(t, tgt, off))
		st := testbin.Statuses(o.events)
		for id, want := range map[string]string{"maintenance-on": "skipped", "maintenance-confirm": "succeeded",
			"detach-heroku-database": "skipped", "switch-application": "succeeded", "maintenance-off": "skipped"} {
			if st[id] != want {
				t.Errorf("step %s: %q, want %q", id, st[id], want)
			}
		}
	})

	// The restore fails in the middle of the run (pg_restore loses its
	// connection): exit 1, pgaudit.log put back exactly by the always step,
	// and once the cause is gone resume completes. The resumed restore runs
	// while the role's setting is back on, and still leaves no audit trail.
	t.Run("restore-fails/pgaudit-restored/resume", func(t *testing.T) {
		before := setPgaudit(t, tgt, "ddl, write")
		m := newMigration(t, src, tgt, hostile)
		m.method = "pipe"
		state := filepath.Join(t.TempDir(), "state.json")
		off := logOffset(t, tgt)
		path := os.Getenv("PATH")
		breakPgRestore(t)
		o := m.run(t, builtin, state, nil, executor.Options{})
		if o.code != 1 || !strings.Contains(o.err.Error(), "step restore failed") {
			t.Fatalf("exit %d (%v), want 1: the restore fails", o.code, o.err)
		}
		st := testbin.Statuses(o.events)
		if st["pgaudit-restore"] != "succeeded" || st["owner-tables"] != "" {
			t.Errorf("after the failure: pgaudit-restore %q (want succeeded), owner-tables %q (want not run)", st["pgaudit-restore"], st["owner-tables"])
		}
		if got := pgauditSetting(t, tgt); !equalStrings(got, before) {
			t.Errorf("postgres role settings after the failure: %q, want %q", got, before)
		}
		if n := tgt.QueryValue(t, m.tgtName, `SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')`); n != "0" {
			t.Errorf("the failed restore left %s tables", n)
		}
		t.Setenv("PATH", path) // the cause is fixed
		o = m.run(t, builtin, state, nil, executor.Options{Resume: true})
		if o.code != 0 {
			t.Fatalf("resume: exit %d: %v", o.code, o.err)
		}
		if st := testbin.Statuses(o.events); st["source-server"] != "" || st["restore"] != "succeeded" {
			t.Errorf("resume: source-server %q (want not run again), restore %q (want succeeded)", st["source-server"], st["restore"])
		}
		checkOwners(t, tgt, m.tgtName, "application")
		m.checkCopied(t)
		if got := pgauditSetting(t, tgt); !equalStrings(got, before) {
			t.Errorf("postgres role settings after the resume: %q, want %q", got, before)
		}
		checkPgauditQuiet(t, logSince(t, tgt, off))
	})

	// What the built-in hands to the application role that the published
	// procedure (examples/seed-procedure.yaml) does not: its four generator
	// queries and their statements run on a fresh restore of the fixture,
	// then the owners are compared. The list goes to the log for the docs.
	t.Run("beyond-the-published-procedure", func(t *testing.T) {
		m := newMigration(t, src, tgt, hostile)
		m.method = "pipe"
		if o := m.run(t, builtin, filepath.Join(t.TempDir(), "state.json"), nil, executor.Options{Only: []string{"restore"}}); o.code != 0 {
			t.Fatalf("restore only: exit %d: %v", o.code, o.err)
		}
		failed := runPublishedOwnership(t, tgt, m.tgtName)
		var missed []string
		for _, r := range ownership(t, tgt, m.tgtName) {
			kind := r[0]
			if r[2] == "application" || kind == "relation i" {
				continue // handed over, or an index (it follows its table)
			}
			missed = append(missed, kind+" "+r[1])
		}
		sort.Strings(missed)
		t.Logf("the published procedure leaves %d objects owned by postgres that the built-in hands to application:\n  %s",
			len(missed), strings.Join(missed, "\n  "))
		t.Logf("published statements that fail on these names (%d):\n  %s", len(failed), strings.Join(failed, "\n  "))
		for _, want := range []string{`schema "Sales"`, `routine "Sales"."Close Day"(date)`, `type "Sales"."Order Status"`,
			`type "Sales".email`, `relation r "Sales"."Customers"`, `relation r "we""ird"."ta""ble"`} {
			if !slices.Contains(missed, want) {
				t.Errorf("expected %q among the objects the published procedure misses", want)
			}
		}
		if len(failed) == 0 {
			t.Errorf("no published statement failed on the hostile names")
		}
	})

	// Pagila, a realistic schema (partitioned payments, enum and domain,
	// functions and triggers, views and a materialized view), when the
	// team's shared datasets are there.
	t.Run("pagila", func(t *testing.T) {
		dir := filepath.Join("..", "..", "shared", "datasets", "pagila")
		if _, err := os.Stat(dir); err != nil {
			t.Skip("../shared/datasets/pagila is not here (optional)")
		}
		m := newMigration(t, src, tgt)
		start := time.Now()
		loadPagila(t, src, m.srcURL, dir)
		t.Logf("pagila loaded in %s", time.Since(start).Round(time.Millisecond))
		if n := src.QueryValue(t, m.srcName, "SELECT count(*) FROM public.rental"); len(n) < 4 {
			t.Fatalf("pagila did not load: %s rentals", n)
		}
		before := setPgaudit(t, tgt, "all")
		off := logOffset(t, tgt)
		start = time.Now()
		o := m.run(t, builtin, filepath.Join(t.TempDir(), "state.json"), nil, executor.Options{})
		t.Logf("migration took %s", time.Since(start).Round(time.Millisecond))
		if o.code != 0 {
			t.Fatalf("exit %d: %v", o.code, o.err)
		}
		for _, r := range ownership(t, tgt, m.tgtName) {
			if r[2] != "application" {
				t.Errorf("%s %s is owned by %s", r[0], r[1], r[2])
			}
		}
		m.checkCopied(t)
		if got := pgauditSetting(t, tgt); !equalStrings(got, before) {
			t.Errorf("postgres role settings after the migration: %q, want %q", got, before)
		}
		checkPgauditQuiet(t, logSince(t, tgt, off))
	})
}

// fakeHeroku puts a heroku command on PATH that records its arguments, and
// returns the file it writes.
func fakeHeroku(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "calls")
	script := "#!/bin/sh\necho \"$@\" >> " + shellword.Quote(log) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "heroku"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return log
}

// breakPgRestore puts a pg_restore on PATH that answers --version like the
// real one but fails a restore after reading its input, as when the
// connection to the target is lost.
func breakPgRestore(t *testing.T) {
	t.Helper()
	real, err := exec.LookPath("pg_restore")
	if err != nil {
		t.Skip("no pg_restore on PATH")
	}
	dir := t.TempDir()
	script := "#!/bin/sh\ncase \"$1\" in --version) exec " + shellword.Quote(real) + " --version;; esac\n" +
		"cat >/dev/null\necho 'pg_restore: error: connection to server was lost' >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(dir, "pg_restore"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// runPublishedOwnership runs the published procedure's four generator queries
// (from examples/seed-procedure.yaml) on db and each statement they produce
// in a transaction of its own, as psql's \gexec does, and returns the
// statements that failed, with their errors.
func runPublishedOwnership(t *testing.T, s *pgtest.Server, db string) []string {
	t.Helper()
	rb, err := schema.LoadFile(filepath.Join("..", "examples", "seed-procedure.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	conn := s.Connect(t, db)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var failed []string
	for _, step := range rb.Steps {
		g, ok := step.Action.(*actions.Generate)
		if !ok {
			continue
		}
		for _, r := range s.Query(t, db, g.Query.Raw) {
			if _, err := conn.Exec(ctx, r[0]); err != nil {
				failed = append(failed, r[0]+" → "+err.Error())
			}
		}
	}
	return failed
}

// loadPagila loads the pagila schema and data as its README says (the lines
// that set transaction_timeout, a PostgreSQL 17 setting, left out).
func loadPagila(t *testing.T, s *pgtest.Server, dbURL, dir string) {
	t.Helper()
	psql := "psql"
	if s.BinDir != "" {
		psql = filepath.Join(s.BinDir, "psql")
	}
	for _, f := range []string{"pagila-schema.sql", "pagila-data.sql"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		var kept []string
		for _, l := range strings.Split(string(b), "\n") {
			if !strings.Contains(l, "transaction_timeout") {
				kept = append(kept, l)
			}
		}
		cmd := exec.Command(psql, "-X", "-q", "-d", dbURL)
		cmd.Stdin = strings.NewReader(strings.Join(kept, "\n"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("loading %s: %v\n%s", f, err, tail(string(out), 2000))
		}
	}
}

// The per-customer vars file of the examples fits the built-in, and a
// heroku_app that is not an application name (it is interpolated into the
// heroku command line) is refused before anything runs.
func TestHerokuVars(t *testing.T) {
	rb, err := runbooks.Load(builtin)
	if err != nil {
		t.Fatal(err)
	}
	env := func(k string) (string, bool) {
		switch k {
		case "DATABASE_URL":
			return "postgres://u:pw@heroku.example/d", true
		case "TARGET_DATABASE_URL":
			return "postgres://postgres:pw@bridge.example/postgres", true
		}
		return "", false
	}
	vals, err := rb.ResolveParams(schema.ParamInputs{VarsFiles: []string{filepath.Join("..", "examples", "vars", "heroku-acme.yaml")}, LookupEnv: env})
	if err != nil {
		t.Fatalf("examples/vars/heroku-acme.yaml: %v", err)
	}
	if got := vals.Map()["heroku_app"]; got != "acme-production" {
		t.Errorf("heroku_app = %q", got)
	}
	for _, bad := range []string{"acme; rm -rf /", "Acme", "$(id)", "acme app"} {
		if _, err := rb.ResolveParams(schema.ParamInputs{Vars: []string{"heroku_app=" + bad}, LookupEnv: env}); err == nil {
			t.Errorf("heroku_app %q accepted", bad)
		}
	}
	for _, bad := range []string{"Robert'); DROP", "10", ""} {
		if _, err := rb.ResolveParams(schema.ParamInputs{Vars: []string{"compress=" + bad}, LookupEnv: env}); err == nil {
			t.Errorf("compress %q accepted", bad)
		}
	}
}
