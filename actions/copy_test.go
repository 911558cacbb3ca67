package actions

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runbookhq/runbook/internal/testbin"
)

// The copy action is tested through the real binary: the executor's journal
// and settlement are part of what makes a copy exact.

// copyRunbook is a runbook of one copy step; the URLs come from the
// environment (SRC_URL, TGT_URL), never argv.
func copyRunbook(t *testing.T, step string) string {
	t.Helper()
	dir := t.TempDir()
	rb := `version: 1
name: copy-test
params:
  src: {secret: true, env: SRC_URL}
  tgt: {secret: true, env: TGT_URL}
connections:
  source: {url: "${{ params.src }}"}
  target: {url: "${{ params.tgt }}"}
steps:
  - id: copy
    copy:
      from: source
      to: target
` + step
	if err := os.WriteFile(filepath.Join(dir, "copy.yaml"), []byte(rb), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// copyRun runs the binary in dir against src and tgt.
func copyRun(t *testing.T, dir string, src, tgt testDB, env []string, kill func(int, <-chan struct{}), args ...string) (int, string) {
	t.Helper()
	return testbin.Run(t, testbin.Build(t), testbin.Cmd{Dir: dir, Kill: kill, Timeout: 5 * time.Minute,
		Env: append([]string{"SRC_URL=" + src.url, "TGT_URL=" + tgt.url}, env...)},
		append(args, "--log-format", "json")...)
}

// tableSums is every user table's row count and checksum (the sum of a hash
// of each row's text), computed by the test on one side.
func tableSums(t *testing.T, db testDB) map[string]string {
	t.Helper()
	rows := db.query(t, `
SELECT format('%I.%I', n.nspname, c.relname),
       (xpath('/row/s/text()', query_to_xml(format(
          'SELECT count(*) || '':'' || coalesce(sum((''x'' || left(md5(ROW(r.*)::text), 16))::bit(64)::bigint), 0) AS s FROM ONLY %I.%I r',
          n.nspname, c.relname), false, true, '')))[1]::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'
 ORDER BY 1`)
	m := map[string]string{}
	for _, r := range rows {
		m[r[0]] = r[1]
	}
	return m
}

func checkSameTables(t *testing.T, src, tgt testDB) {
	t.Helper()
	want, got := tableSums(t, src), tableSums(t, tgt)
	if len(want) == 0 {
		t.Fatal("the source has no tables")
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("table %s: rows:checksum %q on the target, %q on the source", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("table %s on the target only", k)
		}
	}
}

// everyKind is a source with every kind of data the copy must carry.
const everyKind = `
CREATE TABLE big (id int PRIMARY KEY, t text, n numeric, ts timestamptz, b bytea);
INSERT INTO big SELECT g, md5(g::text), g / 3.0, '2026-01-01'::timestamptz - g * interval '1 min', decode(md5(g::text), 'hex')
  FROM generate_series(1, 20000) g;
CREATE INDEX big_t ON big (t);
CREATE TABLE nopk (x int, y text);
INSERT INTO nopk SELECT g, repeat('x', 50) FROM generate_series(1, 20000) g;
CREATE TABLE gen (a int, b int GENERATED ALWAYS AS (a * 2) STORED);
INSERT INTO gen (a) SELECT generate_series(1, 100);
CREATE TABLE parted (k int, v text) PARTITION BY RANGE (k);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (500);
CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (500) TO (1000);
INSERT INTO parted SELECT g, 'v' || g FROM generate_series(0, 999) g;
CREATE UNLOGGED TABLE unl (i serial PRIMARY KEY, s text);
INSERT INTO unl (s) SELECT 'u' FROM generate_series(1, 50);
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY, p int REFERENCES parent);
INSERT INTO parent SELECT generate_series(1, 10);
INSERT INTO child SELECT g, g FROM generate_series(1, 10) g;
CREATE TABLE inserts (n int);
CREATE FUNCTION count_insert() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO inserts VALUES (1); RETURN NEW; END$$;
CREATE TRIGGER child_insert AFTER INSERT ON child FOR EACH ROW EXECUTE FUNCTION count_insert();
CREATE MATERIALIZED VIEW mv AS SELECT count(*) AS c FROM big;
CREATE TABLE secured (i int);
ALTER TABLE secured ENABLE ROW LEVEL SECURITY;
ALTER TABLE secured FORCE ROW LEVEL SECURITY;
INSERT INTO secured VALUES (1), (2);
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair AS (a int, b text);
CREATE TABLE typed (m mood, ms mood[], p pair, j jsonb, r int4range, a text[]);
INSERT INTO typed SELECT 'ok', '{sad,happy}', ROW(g, 'b' || g)::pair, jsonb_build_object('g', g), int4range(g, g + 10), ARRAY['x', NULL, 'z']
  FROM generate_series(1, 100) g;
CREATE SEQUENCE free_seq;
SELECT setval('free_seq', 77);
SELECT lo_from_bytea(424242, 'large object data'::bytea);
`

// TestCopyEveryKindOfData: partitions, generated columns, unlogged tables,
// types whose binary form differs between servers (composite, arrays of an
// enum: sent as text) and those sent in binary, row security, large objects, sequences, a materialized view, triggers and
// foreign keys that must not fire, split tables (key and block ranges): all
// arrive, equal on both sides.
func TestCopyEveryKindOfData(t *testing.T) {
	src, tgt := newDB(t), newDB(t)
	src.exec(t, everyKind)
	dir := copyRunbook(t, "      jobs: 2\n      split_larger_than: 256kB\n      verify: checksum\n")
	code, out := copyRun(t, dir, src, tgt, nil, nil, "run", "copy.yaml", "--state", "st.json", "--yes", "--log", "audit.jsonl")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, testbin.Tail(out, 4000))
	}
	checkSameTables(t, src, tgt)
	for _, c := range []struct{ what, sql, want string }{
		{"materialized view refreshed", "SELECT c FROM mv", "20000"},
		{"no trigger fired", "SELECT count(*) FROM inserts", "0"},
		{"large object", "SELECT convert_from(lo_get(424242), 'UTF8')", "large object data"},
		{"owned sequence", "SELECT last_value FROM unl_i_seq", "50"},
		{"free sequence", "SELECT last_value FROM free_seq", "77"},
		{"generated column", "SELECT sum(b) FROM gen", "10100"},
		{"unlogged", "SELECT relpersistence FROM pg_class WHERE relname = 'unl'", "u"},
		{"FORCE row security", "SELECT relforcerowsecurity FROM pg_class WHERE relname = 'secured'", "t"},
		{"indexes", "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'big'", "big_pkey,big_t"},
		{"foreign key", "SELECT count(*) FROM pg_constraint WHERE contype = 'f'", "1"},
		{"trigger", "SELECT count(*) FROM pg_trigger WHERE tgname = 'child_insert'", "1"},
	} {
		if got := tgt.value(t, c.sql); got != c.want {
			t.Errorf("%s: %s = %q, want %q", c.what, c.sql, got, c.want)
		}
	}
	// The split tables were copied in parts: big by its key, nopk by blocks;
	// each index build is recorded, begun and ended.
	for _, part := range []string{`"part":"public.big#2"`, `"part":"public.nopk#2"`,
		`"event":"copy.item.start","item":"big_t","type":"INDEX"`, `"event":"copy.item.end","item":"big_t","type":"INDEX","duration":`} {
		if !strings.Contains(out, part) {
			t.Errorf("no %s in the events:\n%s", part, testbin.Tail(out, 3000))
		}
	}
	if strings.Contains(out, src.url) || strings.Contains(out, tgt.url) {
		t.Error("a connection URL reached the output")
	}
	// The report lists the copy per table.
	code, rep := testbin.Run(t, testbin.Build(t), testbin.Cmd{Dir: dir}, "report", "--state", "st.json", "--log", "audit.jsonl")
	if code != 0 {
		t.Fatalf("report: exit %d\n%s", code, rep)
	}
	for _, want := range []string{"| table | parts | rows | bytes | COPY time |", "| public.big | 9 | 20000 |", "| public.parted\\_1 | 1 | 500 |", "verified: checksum"} {
		if !strings.Contains(rep, want) {
			t.Errorf("the report has no %q:\n%s", want, rep)
		}
	}
}

// killData is a source of four tables of unequal sizes, two of them split.
const killData = `
CREATE TABLE orders (id bigint PRIMARY KEY, customer int, total numeric, at timestamptz, note text);
INSERT INTO orders SELECT g, g % 1000, g * 1.25, '2026-01-01'::timestamptz + g * interval '1 s', repeat(md5(g::text), 3)
  FROM generate_series(1, 120000) g;
CREATE TABLE events (payload bytea, kind text);
INSERT INTO events SELECT decode(md5(g::text) || md5((g + 1)::text), 'hex'), 'k' || (g % 7) FROM generate_series(1, 60000) g;
CREATE TABLE customers (id int PRIMARY KEY, name text);
INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 1000) g;
CREATE TABLE notes (id serial PRIMARY KEY, body text);
INSERT INTO notes (body) SELECT 'note ' || g FROM generate_series(1, 500) g;
CREATE INDEX orders_customer ON orders (customer);
CREATE INDEX events_kind ON events (kind);
`

const killStep = "      jobs: 2\n      split_larger_than: 1MB\n      verify: checksum\n"

// TestCopyKilledAndResumed kills the real binary with SIGKILL at exact
// fault points (a part's id durable but not its COMMIT; a part committed but
// not recorded) and at random moments, resuming each time, until the copy
// ends: every table equals the source, no row twice.
func TestCopyKilledAndResumed(t *testing.T) {
	src, tgt := newDB(t), newDB(t)
	src.exec(t, killData)
	dir := copyRunbook(t, killStep)
	args := []string{"copy.yaml", "--state", "st.json", "--yes"}
	faults := []string{"before-commit:copy:3", "committed:copy:5", "before-commit:copy:9"}
	kills, first := 0, true
	for i := 0; ; i++ {
		if i > 40 {
			t.Fatalf("not done after %d runs", i)
		}
		var env []string
		var kill func(int, <-chan struct{})
		if i < len(faults) {
			env = []string{"RUNBOOK_CRASH_AFTER=" + faults[i]}
		} else if i < len(faults)+8 {
			kill = testbin.KillAfter(time.Duration(50+rand.IntN(500)) * time.Millisecond)
		}
		cmd := "resume"
		if first {
			cmd, first = "run", false
		}
		code, out := copyRun(t, dir, src, tgt, env, kill, append([]string{cmd}, args...)...)
		if code == 0 {
			if !strings.Contains(out, `"event":"copy.done"`) {
				t.Fatalf("the last run did not end the copy:\n%s", testbin.Tail(out, 3000))
			}
			break
		}
		if code != -1 {
			t.Fatalf("run %d: exit %d\n%s", i, code, testbin.Tail(out, 4000))
		}
		kills++
	}
	if kills < len(faults)+2 {
		t.Fatalf("only %d kills landed", kills)
	}
	t.Logf("%d kills", kills)
	checkSameTables(t, src, tgt)
	if n := tgt.value(t, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'"); n != "5" {
		t.Errorf("%s indexes on the target, want 5", n)
	}
}

// TestCopyEndsOrphanedIndexBuild: a copy killed while the target builds an
// index leaves the build running on the server (its client is gone, it does
// not know yet). The resume ends that session first (conn.orphans.ended: the
// executor records every session, the copy's extra ones included) instead of
// waiting for its build and its rollback, then builds the index itself.
func TestCopyEndsOrphanedIndexBuild(t *testing.T) {
	src, tgt := newDB(t), newDB(t)
	src.exec(t, `CREATE FUNCTION slow_key(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$BEGIN PERFORM pg_sleep(0.01); RETURN x; END$$;
		CREATE TABLE slow (id int PRIMARY KEY, x int);
		INSERT INTO slow SELECT g, g FROM generate_series(1, 600) g;
		CREATE INDEX slow_x ON slow (x);`)
	// The slow index is made after the load: slow_key runs once a row, 6 s
	// for the target's build.
	src.exec(t, "DROP INDEX slow_x; CREATE INDEX slow_x ON slow (slow_key(x))")
	dir := copyRunbook(t, "      jobs: 1\n      index_jobs: 1\n")
	args := []string{"copy.yaml", "--state", "st.json", "--yes"}
	watch := tgt.srv.Connect(t, tgt.name)
	var orphan int32
	kill := testbin.KillWhenActive(watch, "%CREATE INDEX slow_x%", &orphan)

	code, out := copyRun(t, dir, src, tgt, nil, kill, append([]string{"run"}, args...)...)
	if code != -1 || orphan == 0 {
		t.Fatalf("run: exit %d, the index build not caught (pid %d)\n%s", code, orphan, testbin.Tail(out, 3000))
	}
	time.Sleep(200 * time.Millisecond)
	if n := tgt.value(t, fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND state = 'active'", orphan)); n != "1" {
		t.Fatalf("the killed run's index build (pid %d) is not running on the target: the test shows nothing", orphan)
	}
	start := time.Now()
	code, out = copyRun(t, dir, src, tgt, nil, nil, append([]string{"resume"}, args...)...)
	if code != 0 {
		t.Fatalf("resume: exit %d\n%s", code, testbin.Tail(out, 4000))
	}
	if !strings.Contains(out, `"event":"conn.orphans.ended","conn":"target","sessions":1`) {
		t.Errorf("the resume did not say it ended the last invocation's session:\n%s", testbin.Tail(out, 4000))
	}
	t.Logf("resume took %s", time.Since(start).Round(time.Millisecond))
	if n := tgt.value(t, fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE pid = %d", orphan)); n != "0" {
		t.Errorf("the killed run's session (pid %d) still runs after the resume", orphan)
	}
	checkSameTables(t, src, tgt)
	if def := tgt.value(t, "SELECT indexdef FROM pg_indexes WHERE indexname = 'slow_x'"); !strings.Contains(def, "slow_key(x)") {
		t.Errorf("index slow_x on the target: %q", def)
	}
}

// TestCopyRefusesWrittenSource: a write to the source between a crash and
// the resume makes the resume refuse (exit 4) naming the table, and copy
// nothing more; --rerun after emptying the target copies it all again.
func TestCopyRefusesWrittenSource(t *testing.T) {
	src, tgt := newDB(t), newDB(t)
	src.exec(t, killData)
	dir := copyRunbook(t, killStep)
	args := []string{"copy.yaml", "--state", "st.json", "--yes"}
	code, out := copyRun(t, dir, src, tgt, []string{"RUNBOOK_CRASH_AFTER=committed:copy:4"}, nil, append([]string{"run"}, args...)...)
	if code != -1 {
		t.Fatalf("run: exit %d, want killed\n%s", code, testbin.Tail(out, 3000))
	}
	before := tableSums(t, tgt)
	src.exec(t, "UPDATE customers SET name = 'changed' WHERE id = 7")
	code, out = copyRun(t, dir, src, tgt, nil, nil, append([]string{"resume"}, args...)...)
	if code != 4 {
		t.Fatalf("resume: exit %d, want 4\n%s", code, testbin.Tail(out, 3000))
	}
	if !strings.Contains(out, "public.customers") || !strings.Contains(out, "written since the copy started") {
		t.Errorf("the refusal does not name the table written:\n%s", testbin.Tail(out, 3000))
	}
	if after := tableSums(t, tgt); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the refused resume changed the target:\nbefore %v\nafter  %v", before, after)
	}
	// Start over: an emptied target, the step run again.
	tgt.exec(t, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
	code, out = copyRun(t, dir, src, tgt, nil, nil, append([]string{"resume", "--rerun", "copy"}, args...)...)
	if code != 0 {
		t.Fatalf("resume --rerun copy: exit %d\n%s", code, testbin.Tail(out, 4000))
	}
	checkSameTables(t, src, tgt)
}

// TestCopySourceKilledMidCopy: the source session of a COPY is terminated
// while it streams: the step fails naming the table and the server's error,
// and the target holds none of the table's rows.
func TestCopySourceKilledMidCopy(t *testing.T) {
	src, tgt := newDB(t), newDB(t)
	src.exec(t, `CREATE TABLE wide (id int, body text);
		INSERT INTO wide SELECT g, repeat(md5(g::text), 20) FROM generate_series(1, 400000) g`)
	dir := copyRunbook(t, "      jobs: 1\n      split_larger_than: 0\n")
	watch := src.srv.Connect(t, src.name)
	saw := false
	kill := func(pgid int, done <-chan struct{}) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for ctx.Err() == nil {
			select {
			case <-done:
				return
			default:
			}
			var n int
			err := watch.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE datname = current_database() AND state = 'active' AND query LIKE 'COPY %wide% TO STDOUT%'`).Scan(&n)
			if err == nil && n > 0 {
				saw = true
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	code, out := copyRun(t, dir, src, tgt, nil, kill, "run", "copy.yaml", "--state", "st.json", "--yes")
	if !saw {
		t.Fatalf("the source's COPY was not caught (exit %d):\n%s", code, testbin.Tail(out, 3000))
	}
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, testbin.Tail(out, 3000))
	}
	// The server's FATAL (57P01) when it got to send it; a connection cut
	// short otherwise.
	for _, want := range []string{"copying public.wide (part public.wide): reading from the source: "} {
		if !strings.Contains(out, want) {
			t.Errorf("the failure does not say %q:\n%s", want, testbin.Tail(out, 3000))
		}
	}
	if n := tgt.value(t, "SELECT count(*) FROM wide"); n != "0" {
		t.Errorf("%s rows of the broken COPY committed on the target", n)
	}
}

// TestCopyTargetFailureNamed: with schema: false, a row the target refuses
// (a duplicate key) fails the step with the target's error (SQLSTATE
// 23505), not the read it stopped; nothing of the part commits.
func TestCopyTargetFailureNamed(t *testing.T) {
	src, tgt := newDB(t), newDB(t)
	src.exec(t, "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 50000) g")
	tgt.exec(t, "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (40000, 'already here')")
	dir := copyRunbook(t, "      schema: false\n      jobs: 1\n")
	code, out := copyRun(t, dir, src, tgt, nil, nil, "run", "copy.yaml", "--state", "st.json", "--yes")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, testbin.Tail(out, 3000))
	}
	for _, want := range []string{"copying public.items (part public.items): writing into the target", "23505"} {
		if !strings.Contains(out, want) {
			t.Errorf("the failure does not say %q:\n%s", want, testbin.Tail(out, 3000))
		}
	}
	if n := tgt.value(t, "SELECT count(*) FROM items"); n != "1" {
		t.Errorf("%s rows on the target, want the 1 it had", n)
	}
}
