package runbooks_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/pgtest"
	"github.com/runbookhq/runbook/internal/testbin"
	"github.com/runbookhq/runbook/runbooks"
	"github.com/runbookhq/runbook/schema"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const builtin = "builtin:heroku-to-crunchy-bridge"

// migration is a source and a target database on two clusters; the target's
// cluster runs pgaudit as Crunchy Bridge does (pgtest.WithPgaudit).
type migration struct {
	src, tgt         *pgtest.Server
	srcURL, tgtURL   string
	srcName, tgtName string
	// method is the runbook's method param ("" for its default, copy);
	// the tests of the pipe's restore step set "pipe".
	method string
}

func (m *migration) bin(t *testing.T) string { return testbin.Build(t) }

// clusters starts a source and a target cluster. Tests that share them run
// one after the other: the postgres role's pgaudit.log setting is
// cluster-wide.
func clusters(t *testing.T) (src, tgt *pgtest.Server) {
	t.Helper()
	src, tgt = pgtest.Pair(t, pgtest.WithPgaudit())
	if src.External() {
		t.Skip("needs two throwaway clusters (RUNBOOK_TEST_DATABASE_URL gives one server)")
	}
	tgt.Exec(t, "postgres", `DO $$BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'application') THEN CREATE ROLE application; END IF;
	END$$`)
	return src, tgt
}

// newMigration creates fresh databases on src and tgt and loads the fixtures
// (SQL text) into the source. The source database does not keep the pgaudit
// extension the cluster put in template1: a Heroku database has none.
func newMigration(t *testing.T, src, tgt *pgtest.Server, fixtures ...string) *migration {
	t.Helper()
	m := &migration{src: src, tgt: tgt, srcURL: src.NewDatabase(t), tgtURL: tgt.NewDatabase(t)}
	m.srcName, m.tgtName = pgtest.DatabaseName(t, m.srcURL), pgtest.DatabaseName(t, m.tgtURL)
	src.Exec(t, m.srcName, "DROP EXTENSION IF EXISTS pgaudit")
	for _, f := range fixtures {
		src.Exec(t, m.srcName, f)
	}
	return m
}

func readFixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// outcome is how an in-process run ended, with its JSON events.
type outcome struct {
	code   int
	err    error
	events []map[string]any
}

// run runs a runbook reference (builtin:NAME or a file) in process with the
// source and target URLs and the other params given, approving every confirm
// step (--yes).
func (m *migration) run(t *testing.T, ref string, state string, params map[string]string, o executor.Options) outcome {
	t.Helper()
	rb, err := runbooks.Load(ref)
	if err != nil {
		t.Fatalf("load %s: %v", ref, err)
	}
	vars := []string{"source_url=" + m.srcURL, "target_url=" + m.tgtURL}
	if _, ok := params["method"]; !ok && m.method != "" {
		vars = append(vars, "method="+m.method)
	}
	for k, v := range params {
		vars = append(vars, k+"="+v)
	}
	vals, err := rb.ResolveParams(schema.ParamInputs{Vars: vars, LookupEnv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatalf("params: %v", err)
	}
	var buf bytes.Buffer
	o.Runbook, o.Values, o.Console, o.LogFormat, o.StatePath, o.Yes = rb, vals, &buf, "json", state, true
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, err = executor.Run(ctx, o)
	out := outcome{code: exitcode.Of(err), err: err, events: testbin.Events(t, buf.String())}
	if t.Failed() || (out.code != 0 && testing.Verbose()) {
		t.Logf("run %s: exit %d: %v", ref, out.code, err)
		for _, ev := range out.events {
			if ev["event"] == "cmd.stderr" || ev["event"] == "sql.error" {
				t.Logf("  %s %s: %v", ev["step"], ev["event"], ev["message"])
			}
		}
	}
	return out
}

// pgauditSetting returns the postgres role's role-level settings (all
// databases) on s, sorted, as "name=value" entries: the exact state that the
// migration must leave as it found it. nil when the role has none.
func pgauditSetting(t testing.TB, s *pgtest.Server) []string {
	t.Helper()
	rows := s.Query(t, "postgres", `SELECT c FROM pg_db_role_setting r, unnest(r.setconfig) c
		WHERE r.setrole = 'postgres'::regrole AND r.setdatabase = 0 ORDER BY 1`)
	var out []string
	for _, r := range rows {
		out = append(out, r[0])
	}
	return out
}

// logOffset and logSince read the server log of a cluster from a point on.
func logOffset(t testing.TB, s *pgtest.Server) int64 {
	fi, err := os.Stat(s.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func logSince(t testing.TB, s *pgtest.Server, off int64) string {
	b, err := os.ReadFile(s.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	if off > int64(len(b)) {
		return ""
	}
	return string(b[off:])
}

// auditLines returns the pgaudit lines of a log extract.
func auditLines(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "AUDIT: ") {
			out = append(out, l)
		}
	}
	return out
}

// checkPgauditQuiet checks a target log extract: no COPY (the restore's data)
// and no CREATE TABLE (its schema) was audited, while the two ALTER ROLE
// statements that switch pgaudit off and back on were.
func checkPgauditQuiet(t *testing.T, log string) {
	t.Helper()
	lines := auditLines(log)
	toggles := 0
	for _, l := range lines {
		switch {
		case strings.Contains(l, "COPY") || strings.Contains(l, "CREATE TABLE"):
			t.Errorf("the restore was audited: %s", l)
		case strings.Contains(l, "ALTER ROLE postgres") && strings.Contains(l, "pgaudit.log"):
			toggles++
		}
	}
	if toggles < 2 {
		t.Errorf("the target's audit log shows %d pgaudit toggles, want 2 (off and back on); audit lines:\n%s", toggles, strings.Join(lines, "\n"))
	}
}

// ownership lists the objects of a database that the migration must hand to
// role, with their owners: every schema, relation, routine and type outside
// the system schemas, except the objects of extensions (pg_depend 'e': the
// target's pgaudit, the fixtures' citext) and the heroku_ext schema's
// content. It is written independently of the runbook's own check.
func ownership(t testing.TB, s *pgtest.Server, db string) [][]string {
	t.Helper()
	return s.Query(t, db, `
		WITH ext AS (SELECT classid, objid FROM pg_depend WHERE deptype = 'e')
		SELECT 'schema', quote_ident(nspname), pg_get_userbyid(nspowner) FROM pg_namespace
		WHERE nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema'
		UNION ALL
		SELECT 'relation ' || c.relkind::text, c.oid::regclass::text, pg_get_userbyid(c.relowner)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname NOT IN ('information_schema', 'heroku_ext')
		  AND (c.oid, 'pg_class'::regclass) NOT IN (SELECT objid, classid FROM ext)
		UNION ALL
		SELECT 'routine', p.oid::regprocedure::text, pg_get_userbyid(p.proowner)
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname NOT IN ('information_schema', 'heroku_ext')
		  AND (p.oid, 'pg_proc'::regclass) NOT IN (SELECT objid, classid FROM ext)
		UNION ALL
		SELECT 'type', t.oid::regtype::text, pg_get_userbyid(t.typowner)
		FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
		WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname NOT IN ('information_schema', 'heroku_ext')
		  AND (t.oid, 'pg_type'::regclass) NOT IN (SELECT objid, classid FROM ext)
		ORDER BY 1, 2`)
}

// checkOwners checks that every object is owned by role, and that the
// objects of extensions (in heroku_ext) kept their owner, postgres.
func checkOwners(t *testing.T, s *pgtest.Server, db, role string) {
	t.Helper()
	for _, r := range ownership(t, s, db) {
		if r[2] != role {
			t.Errorf("%s %s is owned by %s, not %s", r[0], r[1], r[2], role)
		}
	}
	rows := s.Query(t, db, `
		SELECT p.oid::regprocedure::text, pg_get_userbyid(p.proowner) FROM pg_proc p
		WHERE p.pronamespace = 'heroku_ext'::regnamespace
		UNION ALL
		SELECT t.oid::regtype::text, pg_get_userbyid(t.typowner) FROM pg_type t
		WHERE t.typnamespace = 'heroku_ext'::regnamespace`)
	if len(rows) == 0 {
		t.Errorf("the fixture's extension objects are missing from the target")
	}
	for _, r := range rows {
		if r[1] != "postgres" {
			t.Errorf("extension object %s changed owner to %s", r[0], r[1])
		}
	}
}

// checkCopied compares every table's exact row count and every sequence's
// position on both sides.
func (m *migration) checkCopied(t *testing.T) {
	t.Helper()
	tables := m.src.Query(t, m.srcName, `SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE (c.relkind = 'r' OR c.relkind = 'm' AND c.relispopulated)
		  AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema' ORDER BY 1`)
	if len(tables) == 0 {
		t.Fatal("the source has no tables")
	}
	for _, tb := range tables {
		q := "SELECT count(*) FROM " + tb[0]
		if a, b := m.src.QueryValue(t, m.srcName, q), m.tgt.QueryValue(t, m.tgtName, q); a != b {
			t.Errorf("%s: %s rows on the source, %s on the target", tb[0], a, b)
		}
	}
	seqs := m.src.Query(t, m.srcName, `SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'S' AND n.nspname NOT LIKE 'pg\_%' ORDER BY 1`)
	for _, sq := range seqs {
		q := "SELECT last_value || ' ' || is_called FROM " + sq[0]
		if a, b := m.src.QueryValue(t, m.srcName, q), m.tgt.QueryValue(t, m.tgtName, q); a != b {
			t.Errorf("sequence %s: %s on the source, %s on the target", sq[0], a, b)
		}
	}
}

// setPgaudit sets the postgres role's pgaudit.log (RESET for "") and adds an
// unrelated role setting, so that the test sees the migration touch only
// pgaudit.log. It returns the settings as pgauditSetting shows them.
func setPgaudit(t *testing.T, s *pgtest.Server, value string) []string {
	t.Helper()
	sql := "ALTER ROLE postgres RESET pgaudit.log; ALTER ROLE postgres SET work_mem = '8MB'"
	if value != "" {
		sql = "ALTER ROLE postgres SET work_mem = '8MB'; ALTER ROLE postgres SET pgaudit.log = " + quoteLiteral(value)
	}
	s.Exec(t, "postgres", sql)
	t.Cleanup(func() {
		s.Exec(t, "postgres", "ALTER ROLE postgres RESET work_mem; ALTER ROLE postgres SET pgaudit.log = 'all'")
	})
	return pgauditSetting(t, s)
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func equalStrings(a, b []string) bool {
	a, b = append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(a)
	sort.Strings(b)
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

// The real binary, for the tests that kill it.

// binRun runs the binary in dir with the migration's URLs in the environment
// (never in argv) and extra environment variables; kill is testbin.Cmd.Kill.
// It returns the exit code (-1 when killed by a signal) and the combined
// output.
func (m *migration) binRun(t *testing.T, dir string, env []string, kill func(pgid int, done <-chan struct{}), args ...string) (int, string) {
	t.Helper()
	if m.method != "" {
		args = append(args, "--var", "method="+m.method)
	}
	return testbin.Run(t, m.bin(t), testbin.Cmd{Dir: dir, Kill: kill,
		Env: append([]string{"DATABASE_URL=" + m.srcURL, "TARGET_DATABASE_URL=" + m.tgtURL}, env...)}, args...)
}

func tail(s string, n int) string { return testbin.Tail(s, n) }
