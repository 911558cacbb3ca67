package examples_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/pgtest"
	"github.com/runbookhq/runbook/internal/testbin"
	"github.com/runbookhq/runbook/schema"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// cases runs every example end to end, each with its own test: the runbook
// through executor.Run against real PostgreSQL (internal/pgtest), its exit
// code, every step's final status, and what it did to the database.
var cases = map[string]func(t *testing.T, file string){
	"assert.yaml":   testAssert,
	"confirm.yaml":  testConfirm,
	"control.yaml":  testControl,
	"generate.yaml": testGenerate,
	"params.yaml":   testParams,
	"shell.yaml":    testShell,
	"sql.yaml":      testSQL,
}

// elsewhere are examples whose run case lives in another package.
var elsewhere = map[string]string{
	// Owned with the built-in runbook it led to: TestSeedProcedure in
	// runbooks/seed_test.go runs it.
	"seed-procedure.yaml": "runbooks/seed_test.go",
}

// TestExamples runs every examples/*.yaml: a new example without a run case
// fails here.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no examples/*.yaml found")
	}
	seen := map[string]bool{}
	for _, f := range files {
		seen[f] = true
		if where, ok := elsewhere[f]; ok {
			t.Logf("examples/%s runs in %s", f, where)
			continue
		}
		tc, ok := cases[f]
		if !ok {
			t.Errorf("examples/%s has no run case: add one to cases in examples/examples_test.go", f)
			continue
		}
		abs, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(strings.TrimSuffix(f, ".yaml"), func(t *testing.T) { tc(t, abs) })
	}
	for f := range cases {
		if !seen[f] {
			t.Errorf("run case for examples/%s, which does not exist", f)
		}
	}
}

// ---------------------------------------------------------------------------
// sql.yaml

func testSQL(t *testing.T, file string) {
	// The example creates the role "application" when it is missing; roles
	// are cluster-wide, so it gets a cluster of its own where it is missing.
	srv := pgtest.NewCluster(t)
	tgt := srv.NewDatabase(t)
	db := pgtest.DatabaseName(t, tgt)
	srv.Exec(t, db, fixture(t, "schema.sql")+fixture(t, "data.sql"))
	existed := srv.QueryValue(t, db, `SELECT count(*) FROM pg_roles WHERE rolname = 'application'`) == "1"

	o := run(t, file, inputs{vars: []string{"target_url=" + tgt}})
	created := "succeeded"
	if existed {
		created = "skipped" // only on RUNBOOK_TEST_DATABASE_URL, where the role may already exist
	}
	o.want(t, 0, map[string]string{"find-role": "succeeded", "create-role": created, "grants": "succeeded", "analyze": "succeeded"})
	if n := o.output(t, "find-role", "row", "n"); n != float64(b2i(existed)) {
		t.Errorf("find-role: outputs.row.n = %v, want %d", n, b2i(existed))
	}

	if !existed {
		if got := srv.QueryValue(t, db, `SELECT rolcanlogin FROM pg_roles WHERE rolname = 'application'`); got != "f" {
			t.Errorf("role application: rolcanlogin = %s, want f (NOLOGIN)", got)
		}
	}
	expect(t, srv, db, "privileges of application (create-role, grants)",
		`SELECT has_schema_privilege('application', 'public', 'USAGE'),
		        has_schema_privilege('application', 'public', 'CREATE'),
		        has_table_privilege('application', 'public.customers', 'SELECT'),
		        has_table_privilege('application', 'public."Order Items"', 'SELECT'),
		        has_table_privilege('application', 'public.customers', 'INSERT')`,
		[][]string{{"t", "t", "t", "t", "f"}})
	// ALTER DEFAULT PRIVILEGES: a table created later is readable too.
	srv.Exec(t, db, `CREATE TABLE later (x int)`)
	expect(t, srv, db, "default privileges (grants)",
		`SELECT has_table_privilege('application', 'public.later', 'SELECT')`, [][]string{{"t"}})
	// VACUUM (ANALYZE) outside a transaction reached every table.
	expect(t, srv, db, "tables without a vacuum or an analyze (analyze)",
		`SELECT relname FROM pg_stat_user_tables
		 WHERE relname <> 'later' AND (last_vacuum IS NULL OR last_analyze IS NULL) ORDER BY 1`, [][]string{})

	// Again: the role exists now, so the when: of create-role is false.
	o = run(t, file, inputs{vars: []string{"target_url=" + tgt}})
	o.want(t, 0, map[string]string{"find-role": "succeeded", "create-role": "skipped", "grants": "succeeded", "analyze": "succeeded"})
	if n := o.output(t, "find-role", "row", "n"); n != float64(1) {
		t.Errorf("second run: find-role outputs.row.n = %v, want 1", n)
	}
}

// ---------------------------------------------------------------------------
// shell.yaml

func testShell(t *testing.T, file string) {
	srv := pgtest.Shared(t)
	usePgBin(t, srv)
	src, tgt := srv.NewDatabase(t), srv.NewDatabase(t)
	srcDB, tgtDB := pgtest.DatabaseName(t, src), pgtest.DatabaseName(t, tgt)
	srv.Exec(t, srcDB, fixture(t, "schema.sql")+fixture(t, "data.sql"))

	o := run(t, file, inputs{vars: []string{"source_url=" + src, "target_url=" + tgt}})
	o.want(t, 0, map[string]string{"client-versions": "succeeded", "server-version": "succeeded", "copy": "succeeded"})

	versions, _ := o.output(t, "client-versions", "stdout").(string)
	if !strings.Contains(versions, "pg_dump (PostgreSQL) ") || !strings.Contains(versions, "pg_restore (PostgreSQL) ") {
		t.Errorf("client-versions: outputs.stdout = %q, want both tools' versions", versions)
	}
	// psql reached the source through the libpq environment of conn: source.
	server, _ := o.output(t, "server-version", "stdout").(string)
	if want := srv.QueryValue(t, srcDB, "SHOW server_version"); strings.TrimSpace(server) != want {
		t.Errorf("server-version: outputs.stdout = %q, want %q", server, want)
	}
	if codes := o.output(t, "copy", "exit_codes"); !reflect.DeepEqual(codes, []any{float64(0), float64(0)}) {
		t.Errorf("copy: outputs.exit_codes = %v, want [0 0]", codes)
	}

	// The target now holds the source: the same objects, rows and sequence
	// positions, owned by the restoring user (--no-owner).
	if got, want := srv.Query(t, tgtDB, fingerprint), srv.Query(t, srcDB, fingerprint); !reflect.DeepEqual(got, want) {
		t.Errorf("target after copy:\n%v\nwant the source's:\n%v", got, want)
	}
	expect(t, srv, tgtDB, "objects on the target not owned by the restoring user (--no-owner)",
		`SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
		   AND c.relowner <> current_user::regrole`, [][]string{})
	if n := srv.QueryValue(t, tgtDB, `SELECT count(*) FROM "Order Items"`); n != "200" {
		t.Errorf(`target "Order Items": %s rows, want 200`, n)
	}
}

// fingerprint describes a database of schema.sql: its objects, each table's
// rows (hashed) and each sequence's position.
const fingerprint = `
SELECT n.nspname, c.relname, c.relkind::text,
       CASE c.relkind
         WHEN 'r' THEN (xpath('/row/h/text()', query_to_xml(format(
              'SELECT md5(coalesce(string_agg(t::text, '','' ORDER BY t::text), '''')) AS h FROM %I.%I t',
              n.nspname, c.relname), false, true, '')))[1]::text
         WHEN 'S' THEN (SELECT s.last_value::text FROM pg_sequences s
                        WHERE s.schemaname = n.nspname AND s.sequencename = c.relname)
         ELSE '' END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND c.relkind IN ('r', 'S', 'v')
ORDER BY 1, 2`

// usePgBin puts the server's own client tools (pg_dump, pg_restore, psql)
// first on PATH for the examples' shell steps.
func usePgBin(t *testing.T, srv *pgtest.Server) {
	if srv.BinDir != "" {
		t.Setenv("PATH", srv.BinDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
}

// ---------------------------------------------------------------------------
// generate.yaml

func testGenerate(t *testing.T, file string) {
	srv := pgtest.Shared(t)
	srv.Exec(t, "postgres", fixture(t, "roles.sql"))
	// The source as the application left it; the target as restored: the same
	// objects owned by postgres, sequences not yet moved.
	src, tgt := srv.NewDatabase(t), srv.NewDatabase(t)
	srcDB, tgtDB := pgtest.DatabaseName(t, src), pgtest.DatabaseName(t, tgt)
	srv.Exec(t, srcDB, fixture(t, "schema.sql")+fixture(t, "data.sql"))
	srv.Exec(t, tgtDB, fixture(t, "schema.sql"))
	count := func(relkind string) float64 {
		var n int
		fmt.Sscan(srv.QueryValue(t, tgtDB, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.relkind = $1 AND n.nspname NOT IN ('pg_catalog', 'information_schema')`, relkind), &n)
		return float64(n)
	}
	tables, sequences, views := count("r"), count("S"), count("v")

	o := run(t, file, inputs{vars: []string{"source_url=" + src, "target_url=" + tgt}})
	o.want(t, 0, map[string]string{"tables": "succeeded", "sequences": "succeeded", "views": "succeeded", "sequence-values": "succeeded"})
	for step, n := range map[string]float64{"tables": tables, "sequences": sequences, "views": views, "sequence-values": sequences} {
		st, ex := o.output(t, step, "statements"), o.output(t, step, "executed")
		if st != n || ex != n {
			t.Errorf("%s: outputs statements=%v executed=%v, want %v and %v", step, st, ex, n, n)
		}
	}

	expect(t, srv, tgtDB, "tables, sequences and views on the target not owned by application",
		`SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE c.relkind IN ('r', 'S', 'v') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		   AND c.relowner <> 'application'::regrole`, [][]string{})
	// sequence-values read the source and ran setval on the target.
	const positions = `SELECT schemaname, sequencename, last_value FROM pg_sequences ORDER BY 1, 2`
	got, want := srv.Query(t, tgtDB, positions), srv.Query(t, srcDB, positions)
	if !reflect.DeepEqual(got, want) || len(want) != int(sequences) || slices.ContainsFunc(want, func(r []string) bool { return r[2] == "" }) {
		t.Errorf("sequence positions on the target %v, want the source's %v", got, want)
	}
}

// ---------------------------------------------------------------------------
// assert.yaml

func testAssert(t *testing.T, file string) {
	srv := pgtest.Shared(t)
	srv.Exec(t, "postgres", fixture(t, "roles.sql"))
	// A copy that is complete and handed over.
	src, tgt := srv.NewDatabase(t), srv.NewDatabase(t)
	srcDB, tgtDB := pgtest.DatabaseName(t, src), pgtest.DatabaseName(t, tgt)
	srv.Exec(t, srcDB, fixture(t, "schema.sql")+fixture(t, "data.sql"))
	srv.Exec(t, tgtDB, fixture(t, "schema.sql")+fixture(t, "data.sql")+fixture(t, "handed-over.sql"))
	p := inputs{vars: []string{"source_url=" + src, "target_url=" + tgt}}
	all := map[string]string{"target-reachable": "succeeded", "same-major-version": "succeeded", "owners": "succeeded", "row-counts": "succeeded"}

	o := run(t, file, p)
	o.want(t, 0, all)
	if n := o.output(t, "row-counts", "rows"); n != float64(3) {
		t.Errorf("row-counts compared %v rows, want 3 (one per table)", n)
	}

	// An assert's effect is its verdict: it must catch a copy that lost a row …
	srv.Exec(t, tgtDB, `DELETE FROM "Order Items" WHERE id = 7`)
	o = run(t, file, p)
	all["row-counts"] = "failed"
	o.want(t, 1, all)
	if e := o.steps["row-counts"].Error; !strings.Contains(e, "Order Items") || !strings.Contains(e, "200") || !strings.Contains(e, "199") {
		t.Errorf("row-counts error does not show the differing row (Order Items, 200 vs 199): %s", e)
	}

	// … and a table the hand-over missed, with the message's expressions.
	srv.Exec(t, tgtDB, `CREATE TABLE stray (x int)`)
	o = run(t, file, p)
	all["owners"], all["row-counts"] = "failed", "pending"
	o.want(t, 1, all)
	if e := o.steps["owners"].Error; !strings.Contains(e, "1 tables are not owned by application") {
		t.Errorf("owners error does not carry the rendered message: %s", e)
	}
}

// ---------------------------------------------------------------------------
// params.yaml

func testParams(t *testing.T, file string) {
	srv := pgtest.Shared(t)
	srv.Exec(t, "postgres", fixture(t, "roles.sql"))
	for _, c := range []struct {
		customer, schema, owner, comment string
		confirm                          string // source-left-alone
		setup                            string
	}{
		{"acme", "acme", "acme_app", "migrated for Acme Corp (premium)", "succeeded", "CREATE SCHEMA acme"},
		{"globex", "public", "globex", "migrated for Globex (standard)", "skipped", ""},
	} {
		t.Run(c.customer, func(t *testing.T) {
			src, tgt := srv.NewDatabase(t), srv.NewDatabase(t)
			tgtDB := pgtest.DatabaseName(t, tgt)
			if c.setup != "" {
				srv.Exec(t, tgtDB, c.setup)
			}
			p := inputs{varsFiles: []string{"vars/" + c.customer + ".yaml"}, vars: []string{"source_url=" + src, "target_url=" + tgt}}
			o := run(t, file, p, executor.Options{Yes: true})
			o.want(t, 0, map[string]string{"schema-owner": "succeeded", "comment": "succeeded", "source-left-alone": c.confirm})
			expect(t, srv, tgtDB, "schema owner and comment",
				`SELECT nspowner::regrole::text, obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1`,
				[][]string{{c.owner, c.comment}}, c.schema)
			if c.confirm == "succeeded" {
				ev := o.event("confirm.approved", "source-left-alone")
				want := "Leave acme-production (" + srv.Host + ") in maintenance mode until Acme Corp confirms."
				if ev == nil || ev["prompt"] != want || ev["how"] != "--yes" {
					t.Errorf("confirm.approved event %v, want prompt %q approved --yes", ev, want)
				}
			}
		})
	}
	// Two customers never share a state file.
	paths := map[string]bool{}
	for _, c := range []string{"acme", "globex"} {
		rb, err := schema.LoadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		vals, err := rb.ResolveParams(schema.ParamInputs{VarsFiles: []string{"vars/" + c + ".yaml"},
			Vars: []string{"source_url=x", "target_url=y"}, LookupEnv: func(string) (string, bool) { return "", false }})
		if err != nil {
			t.Fatal(err)
		}
		paths[executor.DefaultStatePath(rb, vals)] = true
	}
	if len(paths) != 2 {
		t.Errorf("acme and globex share the default state file %v", paths)
	}
}

// ---------------------------------------------------------------------------
// confirm.yaml

func testConfirm(t *testing.T, file string) {
	srv := pgtest.Shared(t)
	tgt := srv.NewDatabase(t)
	db := pgtest.DatabaseName(t, tgt)
	// Another session on the database, which the go-ahead message counts.
	other := srv.Connect(t, db)
	p := inputs{vars: []string{"target_url=" + tgt, "heroku_app=acme-production"}}
	state := filepath.Join(t.TempDir(), "state.json")

	// Without a terminal and without approval the run pauses at the first
	// gate: exit 3, resumable.
	o := run(t, file, p, executor.Options{StatePath: state})
	o.want(t, exitcode.Approval, map[string]string{"maintenance-on": "pending", "connections": "pending", "go-ahead": "pending"})
	if o.err == nil || !strings.Contains(o.err.Error(), "--approve maintenance-on") {
		t.Errorf("the pause does not say how to approve: %v", o.err)
	}
	if o.outcome != "approval-required" {
		t.Errorf("state outcome %q, want approval-required", o.outcome)
	}

	// resume --approve for both gates.
	o = run(t, file, p, executor.Options{StatePath: state, Resume: true, Approve: []string{"maintenance-on", "go-ahead"}, Operator: "alice"})
	o.want(t, 0, map[string]string{"maintenance-on": "succeeded", "connections": "succeeded", "go-ahead": "succeeded"})
	for _, id := range []string{"maintenance-on", "go-ahead"} {
		if by, how := o.output(t, id, "approved_by"), o.output(t, id, "approved_how"); by != "alice" || how != "--approve "+id {
			t.Errorf("%s: approved by %v (%v), want alice (--approve %s)", id, by, how, id)
		}
	}
	var others int
	if err := other.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()`).Scan(&others); err != nil {
		t.Fatal(err)
	}
	n := o.output(t, "connections", "row", "n")
	if n != float64(others) {
		t.Errorf("connections: outputs.row.n = %v, want %d (the test's session)", n, others)
	}
	ev := o.event("confirm.approved", "go-ahead")
	prompt, _ := ev["prompt"].(string)
	for _, want := range []string{
		"heroku maintenance:on --app acme-production is done",
		fmt.Sprintf("%v other sessions are still connected", n),
		"to " + db + " on " + srv.Host + ". Continue?",
	} {
		if !strings.Contains(prompt, want) {
			t.Errorf("go-ahead prompt %q does not contain %q", prompt, want)
		}
	}
}

// ---------------------------------------------------------------------------
// control.yaml

func testControl(t *testing.T, file string) {
	// pgaudit.log is set on the postgres role, cluster-wide: a cluster of its
	// own, with pgaudit as on Crunchy Bridge (pgaudit.log = 'all' on postgres).
	srv := pgtest.NewCluster(t, pgtest.WithPgaudit())
	if srv.External() {
		t.Skip("changes the postgres role's settings: needs a throwaway cluster, not RUNBOOK_TEST_DATABASE_URL")
	}
	tgt := srv.NewDatabase(t)
	db := pgtest.DatabaseName(t, tgt)
	srv.Exec(t, db, fixture(t, "schema.sql")+fixture(t, "data.sql"))
	before := roleSettings(t, srv)
	if !slices.Contains(before, "pgaudit.log=all") {
		t.Fatalf("postgres role settings %v, want pgaudit.log=all", before)
	}
	checkAfter := func(what string) {
		t.Helper()
		if got := roleSettings(t, srv); !reflect.DeepEqual(got, before) {
			t.Errorf("%s: postgres role settings %v, want them back as they were: %v", what, got, before)
		}
		expect(t, srv, db, what+": advisory locks left behind (lock: target)",
			`SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = $1)`,
			[][]string{}, db)
	}
	target := "target_url=" + tgt

	// Defaults: pgaudit off around the work, then back.
	o := run(t, file, inputs{vars: []string{target}})
	o.want(t, 0, map[string]string{"pgaudit-off": "succeeded", "maintenance": "skipped", "work": "succeeded", "pgaudit-on": "succeeded"})
	checkAfter("defaults")
	expect(t, srv, db, "tables without statistics (work: ANALYZE)",
		`SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NULL`, [][]string{})

	// pgaudit=off: neither pgaudit step runs (pgaudit-on's when reads
	// steps["pgaudit-off"].status).
	o = run(t, file, inputs{vars: []string{target, "pgaudit=off"}})
	o.want(t, 0, map[string]string{"pgaudit-off": "skipped", "maintenance": "skipped", "work": "succeeded", "pgaudit-on": "skipped"})
	checkAfter("pgaudit=off")

	// A Heroku app whose maintenance command fails (on_failure: continue),
	// then work fails: pgaudit-on still runs (always), and the run fails.
	bin := t.TempDir()
	args := filepath.Join(bin, "args")
	heroku := "#!/bin/sh\necho \"$@\" > " + args + "\necho 'heroku: not logged in' >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "heroku"), []byte(heroku), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	// work (ANALYZE) waits for a lock this session holds; the test cancels it
	// once pgaudit is seen off.
	lock := srv.Connect(t, db)
	ctx := context.Background()
	if _, err := lock.Exec(ctx, `BEGIN; LOCK TABLE customers IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	// pg_stat_activity is a snapshot for the length of a transaction: watch
	// from another session. While work waits, pgaudit is off for new
	// sessions and the runbook's session holds the advisory lock (lock:).
	type seen struct {
		settings []string
		locks    int
	}
	watch := srv.Connect(t, db)
	during := make(chan seen, 1)
	go func() {
		defer close(during)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			var pid int
			err := watch.QueryRow(ctx, `SELECT coalesce(max(pid), 0) FROM pg_stat_activity
				WHERE application_name LIKE 'runbook/example-control/%' AND wait_event_type = 'Lock'`).Scan(&pid)
			if err != nil {
				return
			}
			if pid != 0 {
				// Not roleSettings: t.Fatal belongs to the test's goroutine.
				var w seen
				watch.QueryRow(ctx, `SELECT coalesce(array_agg(c ORDER BY c), '{}') FROM pg_db_role_setting s, unnest(s.setconfig) c
					WHERE s.setrole = 'postgres'::regrole AND s.setdatabase = 0`).Scan(&w.settings)
				watch.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $1`, pid).Scan(&w.locks)
				watch.Exec(ctx, `SELECT pg_cancel_backend($1)`, pid)
				during <- w
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	o = run(t, file, inputs{vars: []string{target, "heroku_app=acme-production"}})
	if _, err := lock.Exec(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	o.want(t, exitcode.StepFailed, map[string]string{"pgaudit-off": "succeeded", "maintenance": "failed", "work": "failed", "pgaudit-on": "succeeded"})
	if w := <-during; !slices.Contains(w.settings, "pgaudit.log=none") || w.locks != 1 {
		t.Errorf("while work ran: postgres role settings %v and %d advisory locks held by the run, want pgaudit.log=none and 1", w.settings, w.locks)
	}
	if b, err := os.ReadFile(args); err != nil || strings.TrimSpace(string(b)) != "maintenance:on --app acme-production" {
		t.Errorf("maintenance ran heroku with %q (%v), want maintenance:on --app acme-production", b, err)
	}
	if e := o.steps["work"].Error; !strings.Contains(e, "57014") && !strings.Contains(e, "55P03") {
		t.Errorf("work failed with %q, want the cancelled ANALYZE", e)
	}
	checkAfter("after a failure")
}

// roleSettings returns the postgres role's settings for all databases, as
// name=value, sorted.
func roleSettings(t *testing.T, srv *pgtest.Server) []string {
	t.Helper()
	var out []string
	for _, r := range srv.Query(t, "postgres", `SELECT c FROM pg_db_role_setting s, unnest(s.setconfig) c
		WHERE s.setrole = 'postgres'::regrole AND s.setdatabase = 0 ORDER BY 1`) {
		out = append(out, r[0])
	}
	return out
}

// ---------------------------------------------------------------------------
// helpers

// inputs are the params of a run: vars files (relative to examples/) and --var
// K=V values. The process environment is not consulted, so a developer's
// SOURCE_DATABASE_URL cannot leak in.
type inputs struct {
	varsFiles []string
	vars      []string
}

type outcome struct {
	code    int
	err     error
	out     string
	events  []map[string]any
	steps   map[string]*executor.StepState
	outcome string
}

// run loads file, resolves its params from p and runs it with opts (a state
// of its own unless opts.StatePath is set), returning the exit code, the
// console's JSON events and the final state.
func run(t *testing.T, file string, p inputs, opts ...executor.Options) outcome {
	t.Helper()
	var o executor.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	rb, err := schema.LoadFile(file)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	vals, err := rb.ResolveParams(schema.ParamInputs{VarsFiles: p.varsFiles, Vars: p.vars,
		LookupEnv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatalf("params: %v", err)
	}
	var buf bytes.Buffer
	o.Runbook, o.Values, o.Console, o.LogFormat = rb, vals, &buf, "json"
	if o.StatePath == "" {
		o.StatePath = filepath.Join(t.TempDir(), "state.json")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = executor.Run(ctx, o)
	res := outcome{code: exitcode.Of(err), err: err, out: buf.String(), steps: map[string]*executor.StepState{},
		events: testbin.Events(t, buf.String())}
	st, serr := executor.ReadStatus(executor.NewFileStore(o.StatePath))
	if serr != nil {
		t.Fatalf("state after the run (exit %d, %v): %v", res.code, err, serr)
	}
	res.outcome = st.Outcome
	for _, s := range st.Steps {
		res.steps[s.ID] = s
	}
	// Secret params (the connection URLs) never reach the console.
	for _, v := range vals {
		if v.Secret && v.Value != "" && strings.Contains(res.out, v.Value) {
			t.Errorf("the console shows the value of secret param %s", v.Name)
		}
	}
	if t.Failed() || (res.code != 0 && testing.Verbose()) {
		t.Logf("run %s: exit %d: %v", filepath.Base(file), res.code, err)
	}
	return res
}

// want checks the exit code and the final status of every step in the
// state (a step that never ran is "pending").
func (o outcome) want(t *testing.T, code int, statuses map[string]string) {
	t.Helper()
	if o.code != code {
		t.Errorf("exit code %d, want %d (err %v)\n%s", o.code, code, o.err, o.out)
	}
	got := map[string]string{}
	for id, s := range o.steps {
		got[id] = s.Status
	}
	if !reflect.DeepEqual(got, statuses) {
		t.Errorf("step statuses %v, want %v", got, statuses)
		for _, s := range o.steps {
			if s.Error != "" {
				t.Logf("step %s: %s", s.ID, s.Error)
			}
		}
	}
}

// output returns a step's output at path (keys into nested JSON objects),
// as it was recorded in the state.
func (o outcome) output(t *testing.T, step string, path ...string) any {
	t.Helper()
	s := o.steps[step]
	if s == nil {
		t.Fatalf("no step %s in the state", step)
	}
	b, err := json.Marshal(s.Outputs)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("step %s: outputs %s: no %s in %v", step, strings.Join(path, "."), k, v)
		}
		v = m[k]
	}
	return v
}

// event returns the first event named name for step.
func (o outcome) event(name, step string) map[string]any {
	for _, ev := range o.events {
		if ev["event"] == name && ev["step"] == step {
			return ev
		}
	}
	return nil
}

// expect runs query on db and compares its rows (as text) with want.
func expect(t *testing.T, srv *pgtest.Server, db, what, query string, want [][]string, args ...any) {
	t.Helper()
	got := srv.Query(t, db, query, args...)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

func fixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
