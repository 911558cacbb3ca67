package runbooks_test

import (
	"encoding/json"
	"github.com/runbookhq/runbook/internal/shellword"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/pgtest"
	"github.com/runbookhq/runbook/internal/testbin"
)

// herokuRole is the fixtures' database owner, what a Heroku DATABASE_URL
// connects as: not a superuser.
const herokuRole = "u_heroku"

// asRole returns a connection URL with its user replaced by role.
func asRole(t *testing.T, raw, role string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	return u.String()
}

// herokuMigration loads fixtures into a fresh source database as a superuser
// would (Heroku's platform), then makes the migration connect to the source
// as the database's owner, u_heroku, as DATABASE_URL does.
func herokuMigration(t *testing.T, src, tgt *pgtest.Server, fixtures ...string) *migration {
	t.Helper()
	m := newMigration(t, src, tgt, fixtures...)
	if super := src.QueryValue(t, m.srcName, `SELECT rolsuper FROM pg_roles WHERE rolname = $1`, herokuRole); super != "f" {
		t.Fatalf("%s is a superuser (%s): the fixture must connect as a plain owner", herokuRole, super)
	}
	m.srcURL = asRole(t, m.srcURL, herokuRole)
	return m
}

// requireExtension makes a test that needs an extension package (postgis)
// unavailable where it is not installed: skipped, or failed under CI=true
// (scripts/ensure-deps installs it).
func requireExtension(t *testing.T, s *pgtest.Server, name string) {
	t.Helper()
	if s.QueryValue(t, "postgres", `SELECT count(*) FROM pg_available_extensions WHERE name = $1`, name) != "0" {
		return
	}
	msg := "extension " + name + " is not installed (scripts/ensure-deps installs it)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg + " (under CI=true this fails the test)")
}

// count returns count(*) of a table on one side.
func count(t *testing.T, s *pgtest.Server, db, table string) string {
	t.Helper()
	return s.QueryValue(t, db, "SELECT count(*) FROM "+table)
}

// forceRLS reports whether public.tenant_notes has FORCE ROW LEVEL SECURITY.
func forceRLS(t *testing.T, s *pgtest.Server, db string) string {
	t.Helper()
	return s.QueryValue(t, db, `SELECT relforcerowsecurity FROM pg_class WHERE oid = 'public.tenant_notes'::regclass`)
}

// checkHerokuResult checks what every successful migration of heroku.sql
// must leave on the target: every object owned by the application role (the
// large objects included, which the application can then read), the event
// trigger with postgres (a superuser must own it), the database's settings
// carried and the role's not, the function that needs heroku_ext in the
// search_path working in a new session of the application role, and
// exactly the source's rows.
func checkHerokuResult(t *testing.T, m *migration) {
	t.Helper()
	checkOwners(t, m.tgt, m.tgtName, "application")
	if got := m.tgt.QueryValue(t, m.tgtName, `SELECT count(*) FILTER (WHERE lomowner = 'application'::regrole) || '/' || count(*) FROM pg_largeobject_metadata`); got != "25/25" {
		t.Errorf("large objects owned by application: %s, want 25/25", got)
	}
	others := m.tgt.Query(t, m.tgtName, `SELECT kind, pg_get_userbyid(owner) FROM (
		SELECT 'collation' AS kind, collowner AS owner FROM pg_collation WHERE collname = 'c_copy'
		UNION ALL SELECT 'conversion', conowner FROM pg_conversion WHERE conname = 'latin1_to_utf8'
		UNION ALL SELECT 'operator', oprowner FROM pg_operator WHERE oprname = '==='
		UNION ALL SELECT 'text search dictionary', dictowner FROM pg_ts_dict WHERE dictname = 'simple_dict'
		UNION ALL SELECT 'text search configuration', cfgowner FROM pg_ts_config WHERE cfgname = 'sencillo'
		UNION ALL SELECT 'statistics', stxowner FROM pg_statistic_ext WHERE stxname = 'líneas_stats'
		UNION ALL SELECT 'publication', pubowner FROM pg_publication WHERE pubname = 'documents_pub') o ORDER BY 1`)
	if len(others) != 7 {
		t.Errorf("objects of other kinds on the target: %q, want 7", others)
	}
	for _, r := range others {
		if r[1] != "application" {
			t.Errorf("%s owned by %s, not application", r[0], r[1])
		}
	}
	if got := m.tgt.QueryValue(t, m.tgtName, `SELECT pg_get_userbyid(evtowner) FROM pg_event_trigger WHERE evtname = 'log_ddl'`); got != "postgres" {
		t.Errorf("event trigger log_ddl owned by %q", got)
	}
	settings := m.tgt.QueryValue(t, m.tgtName, `SELECT array_to_string(array_agg(c ORDER BY c), ' | ')
		FROM pg_db_role_setting s, unnest(s.setconfig) c
		WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) AND s.setrole = 0`)
	want := `DateStyle=SQL, DMY | app.tenant_mode=strict, audited | extra_float_digits=0 | search_path="$user", public, heroku_ext`
	if settings != want {
		t.Errorf("target database settings:\n  %s\nwant\n  %s", settings, want)
	}
	if n := m.tgt.QueryValue(t, m.tgtName, `SELECT count(*) FROM pg_db_role_setting WHERE setrole <> 0
		AND setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())`); n != "0" {
		t.Errorf("%s role settings were carried to the target database", n)
	}
	// A new session of the application role: the database's search_path finds
	// uuid_generate_v4 in heroku_ext; the large objects are its own.
	conn := m.tgt.Connect(t, m.tgtName)
	ctx := t.Context()
	var token, doc string
	if _, err := conn.Exec(ctx, "SET ROLE application"); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT public.new_token()").Scan(&token); err != nil || len(token) != 36 {
		t.Errorf("public.new_token() as application: %q, %v", token, err)
	}
	if err := conn.QueryRow(ctx, "SELECT convert_from(lo_get(content), 'UTF8') FROM public.documents WHERE title = 'document 3'").Scan(&doc); err != nil || !strings.HasPrefix(doc, "page 3\n") {
		t.Errorf("reading a large object as application: %q, %v", doc, err)
	}
	if _, err := conn.Exec(ctx, "SELECT lo_put(content, 0, '\\x00') FROM public.documents LIMIT 1"); err != nil {
		t.Errorf("writing a large object as application: %v", err)
	}
	conn.Exec(ctx, "RESET ROLE")
}

// TestHerokuLikeSource migrates a source shaped like a real Heroku database
// (testdata/heroku.sql) with the source connection as its non-superuser
// owner. The subtests share the clusters and run one after the other.
func TestHerokuLikeSource(t *testing.T) {
	src, tgt := clusters(t)
	fixture := readFixture(t, "heroku.sql")

	// FORCE ROW LEVEL SECURITY on a table of the owner: the preflight stops,
	// naming the table and the ways out, before maintenance mode and before
	// anything changes on either side.
	t.Run("force-rls-stops-the-preflight", func(t *testing.T) {
		before := setPgaudit(t, tgt, "all")
		m := herokuMigration(t, src, tgt, fixture)
		o := m.run(t, builtin, filepath.Join(t.TempDir(), "state.json"), nil, executor.Options{})
		if o.code != 1 || !strings.Contains(o.err.Error(), "step source-rls failed") {
			t.Fatalf("exit %d (%v), want 1 at source-rls", o.code, o.err)
		}
		for _, want := range []string{"public.tenant_notes", "lift_force_rls=true", "NO FORCE ROW LEVEL SECURITY", "BYPASSRLS"} {
			if !strings.Contains(o.err.Error(), want) {
				t.Errorf("the error does not say %q: %v", want, o.err)
			}
		}
		st := testbin.Statuses(o.events)
		for _, id := range []string{"maintenance-confirm", "pgaudit-off", "restore", "copy"} {
			if st[id] != "" {
				t.Errorf("step %s ran (%s) after the preflight failed", id, st[id])
			}
		}
		if got := pgauditSetting(t, tgt); !equalStrings(got, before) {
			t.Errorf("postgres role settings: %q, want %q", got, before)
		}
		if forceRLS(t, src, m.srcName) != "t" {
			t.Errorf("FORCE was lifted on the source without lift_force_rls")
		}
	})

	// Without FORCE (the customer lifted it), the migration goes through, and
	// the event trigger logging DDL, restored on the target, does not fire on
	// runbook's ownership changes and grants: the target's ddl_log has
	// exactly the source's 3 rows (it had 18 when runbook's session fired it).
	t.Run("event-trigger-not-fired", func(t *testing.T) {
		before := setPgaudit(t, tgt, "all")
		m := herokuMigration(t, src, tgt, fixture, `ALTER EVENT TRIGGER log_ddl DISABLE;
			ALTER TABLE public.tenant_notes NO FORCE ROW LEVEL SECURITY;
			ALTER EVENT TRIGGER log_ddl ENABLE`)
		off := logOffset(t, tgt)
		o := m.run(t, builtin, filepath.Join(t.TempDir(), "state.json"), map[string]string{"readonly_roles": "reporting"}, executor.Options{})
		if o.code != 0 {
			t.Fatalf("exit %d: %v", o.code, o.err)
		}
		if s, d := count(t, src, m.srcName, "public.ddl_log"), count(t, tgt, m.tgtName, "public.ddl_log"); s != "3" || d != "3" {
			t.Errorf("ddl_log: %s rows on the source, %s on the target; want 3 and 3", s, d)
		}
		checkHerokuResult(t, m)
		m.checkCopied(t)
		if got := pgauditSetting(t, tgt); !equalStrings(got, before) {
			t.Errorf("postgres role settings: %q, want %q", got, before)
		}
		checkPgauditQuiet(t, logSince(t, tgt, off))
		// The report's evidence: every table's checksum is in verify-data's row.
		row := assertRow(t, o.events, "verify-data")
		if row["differ"] != float64(0) || !strings.Contains(row["checksums"].(string), `"facturación"."líneas" 200 rows `) {
			t.Errorf("verify-data row: %v", row)
		}
	})

	// lift_force_rls: runbook lifts FORCE for the copy, the rows hidden from
	// the owner reach the target, and FORCE is back on the source. The ALTER
	// TABLE statements are in the audit trail. Read-only roles with a
	// password are created; the password reaches no log, event or state.
	t.Run("lift-force-rls/readonly-roles", func(t *testing.T) {
		before := setPgaudit(t, tgt, "all")
		m := herokuMigration(t, src, tgt, fixture)
		const password = "s3cret-ro-Pässword"
		state := filepath.Join(t.TempDir(), "state.json")
		o := m.run(t, builtin, state, map[string]string{"lift_force_rls": "true", "readonly_roles": "reporting,metabase",
			"readonly_password": password}, executor.Options{})
		if o.code != 0 {
			t.Fatalf("exit %d: %v", o.code, o.err)
		}
		if forceRLS(t, src, m.srcName) != "t" || forceRLS(t, tgt, m.tgtName) != "t" {
			t.Errorf("FORCE after the migration: source %s, target %s; want both on", forceRLS(t, src, m.srcName), forceRLS(t, tgt, m.tgtName))
		}
		if n := count(t, tgt, m.tgtName, "public.tenant_notes"); n != "12" {
			t.Errorf("tenant_notes on the target: %s rows, want 12", n)
		}
		// The source's event trigger logged runbook's two ALTER TABLEs there
		// (a non-superuser cannot keep it from firing); the target got the
		// first, which was in the source when it was copied, and nothing else.
		if s, d := count(t, src, m.srcName, "public.ddl_log"), count(t, tgt, m.tgtName, "public.ddl_log"); s != "5" || d != "4" {
			t.Errorf("ddl_log: %s rows on the source, %s on the target; want 5 and 4", s, d)
		}
		checkHerokuResult(t, m)
		if got := pgauditSetting(t, tgt); !equalStrings(got, before) {
			t.Errorf("postgres role settings: %q, want %q", got, before)
		}
		var lifted, forced bool
		for _, ev := range o.events {
			s, _ := json.Marshal(ev)
			switch {
			case ev["step"] == "rls-force-off" && strings.Contains(string(s), "ALTER TABLE public.tenant_notes NO FORCE ROW LEVEL SECURITY"):
				lifted = true
			case ev["event"] == "sql.notice" && strings.Contains(string(s), "ALTER TABLE public.tenant_notes FORCE ROW LEVEL SECURITY"):
				forced = true
			}
		}
		if !lifted || !forced {
			t.Errorf("the events do not record lifting (%v) and putting back (%v) FORCE on public.tenant_notes", lifted, forced)
		}
		checkReadOnly(t, m, []string{"reporting", "metabase"})
		checkNoSecret(t, password, o, state)
	})

	// The restore fails after FORCE was lifted: the always step puts FORCE
	// back at once; resume lifts it again for the dump and the checksums, and
	// puts it back at the end.
	t.Run("lift-force-rls/restore-fails/resume", func(t *testing.T) {
		setPgaudit(t, tgt, "all")
		m := herokuMigration(t, src, tgt, fixture)
		m.method = "pipe"
		state := filepath.Join(t.TempDir(), "state.json")
		params := map[string]string{"lift_force_rls": "true"}
		path := os.Getenv("PATH")
		breakPgRestore(t)
		o := m.run(t, builtin, state, params, executor.Options{})
		if o.code != 1 || !strings.Contains(o.err.Error(), "step restore failed") {
			t.Fatalf("exit %d (%v), want 1: the restore fails", o.code, o.err)
		}
		if st := testbin.Statuses(o.events); st["rls-force-off"] != "succeeded" || st["rls-force-on"] != "succeeded" {
			t.Errorf("after the failure: rls-force-off %q, rls-force-on %q; want both succeeded", st["rls-force-off"], st["rls-force-on"])
		}
		if forceRLS(t, src, m.srcName) != "t" {
			t.Errorf("FORCE is not back on the source after the failure")
		}
		t.Setenv("PATH", path)
		o = m.run(t, builtin, state, params, executor.Options{Resume: true})
		if o.code != 0 {
			t.Fatalf("resume: exit %d: %v", o.code, o.err)
		}
		if n := count(t, tgt, m.tgtName, "public.tenant_notes"); n != "12" {
			t.Errorf("tenant_notes on the target: %s rows, want 12", n)
		}
		if forceRLS(t, src, m.srcName) != "t" {
			t.Errorf("FORCE is not back on the source after the resumed run")
		}
		checkOwners(t, tgt, m.tgtName, "application")
	})
}

// TestHerokuDataChecksums: a row changed on the target after the copy, the
// count unchanged, is caught by verify-data (not by verify-row-counts), which
// names the table.
func TestHerokuDataChecksums(t *testing.T) {
	src, tgt := clusters(t)
	m := newMigration(t, src, tgt, readFixture(t, "hostile.sql"))
	m.method = "pipe" // pg_restore, then one changed value on the target.
	real, err := exec.LookPath("pg_restore")
	if err != nil {
		t.Skip("no pg_restore on PATH")
	}
	psql := "psql"
	if tgt.BinDir != "" {
		psql = filepath.Join(tgt.BinDir, "psql")
	}
	dir := t.TempDir()
	script := "#!/bin/sh\ncase \"$1\" in --version) exec " + shellword.Quote(real) + " --version;; esac\n" +
		shellword.Quote(real) + " \"$@\" || exit $?\n" +
		"PGOPTIONS= " + shellword.Quote(psql) + ` -X -q -v ON_ERROR_STOP=1 -c 'UPDATE "Sales"."Orders" SET total = total + 0.01 WHERE "Order ID" = 7'` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "pg_restore"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	o := m.run(t, builtin, filepath.Join(t.TempDir(), "state.json"), nil, executor.Options{})
	if o.code != 1 || !strings.Contains(o.err.Error(), "step verify-data failed") || !strings.Contains(o.err.Error(), `"Sales"."Orders": checksum`) {
		t.Fatalf("exit %d (%v), want 1 at verify-data naming \"Sales\".\"Orders\"", o.code, o.err)
	}
	if st := testbin.Statuses(o.events); st["verify-row-counts"] != "succeeded" {
		t.Errorf("verify-row-counts %q, want succeeded (the count did not change)", st["verify-row-counts"])
	}
}

// TestHerokuPostGIS migrates a PostGIS database (its composite types are
// extension members through their type) and every verification passes.
func TestHerokuPostGIS(t *testing.T) {
	src, tgt := clusters(t)
	requireExtension(t, src, "postgis")
	requireExtension(t, tgt, "postgis")
	before := setPgaudit(t, tgt, "all")
	m := herokuMigration(t, src, tgt, readFixture(t, "postgis.sql"))
	o := m.run(t, builtin, filepath.Join(t.TempDir(), "state.json"), nil, executor.Options{})
	if o.code != 0 {
		t.Fatalf("exit %d: %v", o.code, o.err)
	}
	// The application's objects are the application's; the extension's stay
	// with postgres, its composite types (members through their type) too.
	rows := tgt.Query(t, m.tgtName, `SELECT x, pg_get_userbyid(o) FROM (
		SELECT c.oid::regclass::text, c.relowner FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
		  AND c.relname IN ('places', 'areas', 'places_geojson', 'places_id_seq', 'places_geom')
		UNION ALL SELECT 'function nearest', proowner FROM pg_proc WHERE proname = 'nearest'
		UNION ALL SELECT 'schema public', nspowner FROM pg_namespace WHERE nspname = 'public'
		UNION ALL SELECT 'type ' || typname, typowner FROM pg_type WHERE typname IN ('geometry_dump', 'valid_detail', 'geometry')
		UNION ALL SELECT 'table spatial_ref_sys', relowner FROM pg_class WHERE oid = 'public.spatial_ref_sys'::regclass) s(x, o)
		ORDER BY 1`)
	want := map[string]string{"areas": "application", "places": "application", "places_geojson": "application",
		"places_id_seq": "application", "places_geom": "application", "function nearest": "application",
		"schema public": "application", "type geometry_dump": "postgres", "type valid_detail": "postgres",
		"type geometry": "postgres", "table spatial_ref_sys": "postgres"}
	if len(rows) != len(want) {
		t.Errorf("owners: %q", rows)
	}
	for _, r := range rows {
		if want[r[0]] != r[1] {
			t.Errorf("%s is owned by %s, want %s", r[0], r[1], want[r[0]])
		}
	}
	m.checkCopied(t)
	q := `SELECT string_agg(id || ST_AsText(geom), ',' ORDER BY id) FROM public.places`
	if a, b := src.QueryValue(t, m.srcName, q), tgt.QueryValue(t, m.tgtName, q); a != b {
		t.Errorf("places differ")
	}
	if n := tgt.QueryValue(t, m.tgtName, `SELECT count(*) FROM public.spatial_ref_sys WHERE srid = 990001`); n != "1" {
		t.Errorf("the application's spatial_ref_sys row: %s", n)
	}
	if got := pgauditSetting(t, tgt); !equalStrings(got, before) {
		t.Errorf("postgres role settings: %q, want %q", got, before)
	}
	if st := testbin.Statuses(o.events); st["verify-owners"] != "succeeded" || st["verify-data"] != "succeeded" {
		t.Errorf("verify-owners %q, verify-data %q", st["verify-owners"], st["verify-data"])
	}
}

// assertRow returns the row an assert step logged with its result.
func assertRow(t *testing.T, events []map[string]any, step string) map[string]any {
	t.Helper()
	for _, ev := range events {
		if ev["step"] == step && ev["event"] == "assert.result" {
			if row, ok := ev["row"].(map[string]any); ok {
				return row
			}
		}
	}
	t.Fatalf("no assert.result with a row for %s", step)
	return nil
}

// checkReadOnly checks the read-only roles on the target: LOGIN with a
// password, able to read every table, view and sequence, unable to write,
// and able to read what the application creates later.
func checkReadOnly(t *testing.T, m *migration, roles []string) {
	t.Helper()
	for _, r := range roles {
		if got := m.tgt.QueryValue(t, m.tgtName, `SELECT rolcanlogin || ' ' || (rolpassword LIKE 'SCRAM-SHA-256$%') FROM pg_authid WHERE rolname = $1`, r); got != "true true" {
			t.Errorf("role %s: login and SCRAM password: %q", r, got)
		}
	}
	tables := m.tgt.Query(t, m.tgtName, `SELECT c.oid::regclass::text, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND n.nspname NOT LIKE 'pg\_%' AND n.nspname NOT IN ('information_schema')
		ORDER BY 1`)
	conn := m.tgt.Connect(t, m.tgtName)
	ctx := t.Context()
	for _, r := range roles {
		if _, err := conn.Exec(ctx, "SET ROLE "+r); err != nil {
			t.Fatal(err)
		}
		for _, tb := range tables {
			if _, err := conn.Exec(ctx, "SELECT FROM "+tb[0]+" LIMIT 1"); err != nil {
				t.Errorf("%s cannot read %s: %v", r, tb[0], err)
			}
		}
		if _, err := conn.Exec(ctx, `DELETE FROM "facturación"."líneas"`); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("%s could delete: %v", r, err)
		}
		conn.Exec(ctx, "RESET ROLE")
	}
	// What the application creates later.
	m.tgt.Exec(t, m.tgtName, "GRANT CREATE ON DATABASE "+quoteIdent(m.tgtName)+" TO application")
	for _, sql := range []string{"SET ROLE application", "CREATE SCHEMA later", "CREATE TABLE later.t AS SELECT 1 AS x", "CREATE SEQUENCE public.later_seq", "RESET ROLE", "SET ROLE " + roles[0]} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	for _, q := range []string{"SELECT x FROM later.t", "SELECT last_value FROM public.later_seq"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Errorf("%s cannot read what application created later (%s): %v", roles[0], q, err)
		}
	}
	conn.Exec(ctx, "RESET ROLE")
}

// checkNoSecret checks that a secret param's value reached none of the
// run's events, its state file and journal, and what else runbook wrote
// beside the state.
func checkNoSecret(t *testing.T, secret string, o outcome, state string) {
	t.Helper()
	for _, ev := range o.events {
		if b, _ := json.Marshal(ev); strings.Contains(string(b), secret) {
			t.Errorf("the secret is in an event: %s", b)
		}
	}
	files, _ := filepath.Glob(state + "*")
	if len(files) == 0 {
		t.Fatalf("no state files at %s", state)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), secret) {
			t.Errorf("the secret is in %s", filepath.Base(f))
		}
	}
	if o.err != nil && strings.Contains(o.err.Error(), secret) {
		t.Errorf("the secret is in the error")
	}
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// TestHerokuRLSPreflight: source-rls and event-triggers, run alone against
// sources whose rows the owner role cannot all read, stop with the tables and
// the ways out; lift_force_rls lets FORCE on the role's own tables through,
// but not policies on a table it does not own, nor a table it may not read.
// An event trigger enabled ALWAYS (it would fire in runbook's replica
// session on the target) is refused too.
func TestHerokuRLSPreflight(t *testing.T) {
	src, tgt := clusters(t)
	src.Exec(t, "postgres", `DO $$BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'u_other') THEN CREATE ROLE u_other; END IF;
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'u_heroku') THEN CREATE ROLE u_heroku LOGIN; END IF;
	END$$`)
	owner := `DO $$BEGIN EXECUTE format('ALTER DATABASE %I OWNER TO u_heroku', current_database()); END$$;
		CREATE TABLE public.open (id int); ALTER TABLE public.open OWNER TO u_heroku;`
	for _, tc := range []struct {
		name, fixture, lift string
		pass                bool
		want                []string
	}{
		{"nothing hidden", "", "false", true, nil},
		{"force on its own table", `CREATE TABLE public.notes (t text); ALTER TABLE public.notes OWNER TO u_heroku;
			ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY; ALTER TABLE public.notes FORCE ROW LEVEL SECURITY`,
			"false", false, []string{"step source-rls failed", "public.notes", "lift_force_rls=true", "NO FORCE ROW LEVEL SECURITY"}},
		{"force on its own table, lifted", `CREATE TABLE public.notes (t text); ALTER TABLE public.notes OWNER TO u_heroku;
			ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY; ALTER TABLE public.notes FORCE ROW LEVEL SECURITY`,
			"true", true, nil},
		{"policies on a table of another role", `CREATE TABLE public."Secrets" (t text); ALTER TABLE public."Secrets" OWNER TO u_other;
			GRANT SELECT ON public."Secrets" TO u_heroku; ALTER TABLE public."Secrets" ENABLE ROW LEVEL SECURITY`,
			"true", false, []string{"step source-rls failed", `public."Secrets"`, "does not own", "BYPASSRLS"}},
		{"an event trigger enabled always", `CREATE FUNCTION public.noop() RETURNS event_trigger LANGUAGE plpgsql AS 'BEGIN END';
			CREATE EVENT TRIGGER "Always On" ON ddl_command_end EXECUTE FUNCTION public.noop();
			ALTER EVENT TRIGGER "Always On" ENABLE ALWAYS`, "false", false, []string{"step event-triggers failed", `"Always On"`, "ENABLE"}},
		{"no SELECT on a table of another role", `CREATE TABLE "données".privé (t text); ALTER TABLE "données".privé OWNER TO u_other`,
			"true", false, []string{"step source-rls failed", `"données"."privé"`, "grant it SELECT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := owner
			if strings.Contains(tc.fixture, `"données"`) {
				fx += `CREATE SCHEMA "données"; ALTER SCHEMA "données" OWNER TO u_heroku;`
			}
			m := herokuMigration(t, src, tgt, fx+tc.fixture)
			o := m.run(t, builtin, filepath.Join(t.TempDir(), "state.json"), map[string]string{"lift_force_rls": tc.lift},
				executor.Options{Only: []string{"source-rls", "event-triggers"}})
			if tc.pass {
				if o.code != 0 {
					t.Fatalf("exit %d: %v", o.code, o.err)
				}
				return
			}
			if o.code != 1 {
				t.Fatalf("exit %d (%v), want 1", o.code, o.err)
			}
			for _, w := range tc.want {
				if !strings.Contains(o.err.Error(), w) {
					t.Errorf("the error does not say %q: %v", w, o.err)
				}
			}
		})
	}
}

// TestHerokuRestoreTwice: the restore step run a second time over a restore
// that committed (as when runbook dies right after pg_restore's COMMIT)
// replaces it whole (--clean), and on an empty target it runs without
// --clean, whose clean phase fails on heroku.sql (a view rebuilt around
// citext before heroku_ext exists).
func TestHerokuRestoreTwice(t *testing.T) {
	src, tgt := clusters(t)
	m := herokuMigration(t, src, tgt, readFixture(t, "heroku.sql"),
		`ALTER TABLE public.tenant_notes NO FORCE ROW LEVEL SECURITY`)
	m.method = "pipe"
	for i := 1; i <= 2; i++ {
		o := m.run(t, builtin, filepath.Join(t.TempDir(), "state.json"), nil, executor.Options{Only: []string{"restore"}})
		if o.code != 0 {
			t.Fatalf("restore %d: exit %d: %v", i, o.code, o.err)
		}
		// Without --clean the second restore would fail (relations exist);
		// with it the first would (see above): both succeeding is the proof.
		m.checkCopied(t)
	}
	if n := count(t, tgt, m.tgtName, "public.ddl_log"); n != count(t, src, m.srcName, "public.ddl_log") {
		t.Errorf("ddl_log: %s rows on the target after two restores", n)
	}
}
