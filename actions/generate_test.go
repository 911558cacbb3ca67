package actions

import (
	"context"
	"errors"
	"fmt"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/runbookhq/runbook/internal/pgerr"
	"github.com/runbookhq/runbook/internal/pgtest"
)

// ownerSetup makes n tables owned by postgres and the roles app_<db> and
// app_<db>_b that generated statements give them to; it returns the first.
func ownerSetup(t testing.TB, db testDB, n int) string {
	t.Helper()
	role := "app_" + db.name[len(db.name)-6:]
	db.exec(t, fmt.Sprintf("CREATE ROLE %[1]s; CREATE ROLE %[1]s_b", role))
	for from := 1; from <= n; from += 1000 { // in chunks: each table takes a lock until commit
		db.exec(t, fmt.Sprintf(`DO $$ BEGIN FOR i IN %d..%d LOOP EXECUTE format('CREATE TABLE t%%s (id int)', i); END LOOP; END $$`, from, min(n, from+999)))
	}
	t.Cleanup(func() {
		// The database goes first (NewDatabase's own cleanup, which runs
		// after this one, then finds it gone): the roles own its tables.
		db.srv.Exec(t, "postgres", fmt.Sprintf("DROP DATABASE %q WITH (FORCE)", db.name))
		db.srv.Exec(t, "postgres", fmt.Sprintf("DROP ROLE %[1]s; DROP ROLE %[1]s_b", role))
	})
	return role
}

const ownerQuery = `format('ALTER TABLE %I.%I OWNER TO %I', schemaname, tablename, $1::text)
        FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`

func TestGenerateModes(t *testing.T) {
	cases := []struct {
		mode    string
		extra   string
		commits []int // Done of each BeforeCommit
	}{
		{"each", "", []int{1, 2, 3, 4, 5}},
		{"batch", "batch_size: 2", []int{2, 4, 5}},
		{"all", "", []int{5}},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			db := newDB(t)
			role := ownerSetup(t, db, 5)
			f := newFixture(t, map[string]string{"db": db.url}, fmt.Sprintf(`
  - id: g
    generate:
      on: db
      query: |
        SELECT %s
      args: ['${{ params.role }}']
      transaction: %s
      %s
`, ownerQuery, c.mode, c.extra), fixtureOpts{params: map[string]string{"role": role}, terminal: true})
			out := f.mustRun("g")
			if out["statements"] != 5 || out["executed"] != 5 {
				t.Errorf("outputs = %v", out)
			}
			if got := db.value(t, "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname = 'public'"); got != role {
				t.Errorf("owners = %s, want %s", got, role)
			}
			freeze := f.journal.of("freeze")
			if len(freeze) != 1 || len(freeze[0].Statements) != 5 || freeze[0].Statements[0] != "ALTER TABLE public.t1 OWNER TO "+role {
				t.Fatalf("freeze = %v", freeze)
			}
			var want []string
			want = append(want, "freeze(5)")
			for _, d := range c.commits {
				want = append(want, fmt.Sprintf("before(%d) committed(%d)", d, d))
			}
			if got := f.journal.sequence(); got != strings.Join(want, " ") {
				t.Errorf("journal = %s\nwant      %s", got, strings.Join(want, " "))
			}
			pid := f.conns.conn("db").PgConn().PID()
			for _, b := range f.journal.of("before") {
				if b.Tx.XID == 0 || b.Tx.BackendPID != pid || b.Tx.BackendStart.IsZero() || b.Tx.Conn != "db" {
					t.Errorf("pending tx = %+v", b.Tx)
				}
				if p, err := parseGenData(b.Tx.Data); err != nil || p.done != b.done() || p.of != 5 {
					t.Errorf("pending unit data = %s", b.Tx.Data)
				}
				if got := db.value(t, "SELECT pg_xact_status($1::text::xid8)", strconv.FormatUint(b.Tx.XID, 10)); got != "committed" {
					t.Errorf("pg_xact_status(%d) = %s", b.Tx.XID, got)
				}
			}
			evs := f.events("generate.statement")
			if len(evs) != 5 {
				t.Fatalf("%d generate.statement events", len(evs))
			}
			for i, e := range evs {
				if e["index"] != float64(i) || e["sql"] != freeze[0].Statements[i] || e["duration"] == nil {
					t.Errorf("event %d = %v", i, e)
				}
			}
			live := f.live.all()
			if len(live) == 0 || live[len(live)-1] != (GenerateProgress{Done: 5, Total: 5}) {
				t.Errorf("live events %v, want the last one 5/5", live)
			}
		})
	}
}

func TestGenerateCells(t *testing.T) {
	db := newDB(t)
	db.exec(t, "CREATE TABLE log (id serial, v text)")
	f := newFixture(t, map[string]string{"db": db.url}, `
  - id: g
    generate:
      on: db
      query: |
        SELECT * FROM (VALUES
          ('INSERT INTO log (v) VALUES (''a1'')', NULL, 'INSERT INTO log (v) VALUES (''a3'')'),
          (NULL, NULL, NULL),
          (NULL, 'INSERT INTO log (v) VALUES (''b2''); INSERT INTO log (v) VALUES (''b2+'')', NULL)) v
  - id: numbers
    generate:
      on: db
      query: SELECT 1, 'SELECT 2'
`, fixtureOpts{})
	out := f.mustRun("g")
	if out["statements"] != 3 || out["executed"] != 3 {
		t.Errorf("outputs = %v", out)
	}
	if got := db.value(t, "SELECT string_agg(v, ',' ORDER BY id) FROM log"); got != "a1,a3,b2,b2+" {
		t.Errorf("executed in order: %s", got)
	}
	evs := f.events("generate.statement")
	if len(evs) != 3 || evs[2]["rows"] != float64(2) {
		t.Errorf("events = %v", evs)
	}
	// A non-text cell is its text form: "1" is a statement (and a syntax error).
	err := f.runErr("numbers")
	var se *pgerr.SQLError
	if !errors.As(err, &se) || se.SQL != "1" || se.Statement != 1 || se.Of != 2 || se.Code != "42601" {
		t.Errorf("error = %v", err)
	}
}

func TestGenerateResumeUsesFrozenList(t *testing.T) {
	db := newDB(t)
	db.exec(t, "CREATE TABLE log (id serial, v text)")
	f := newFixture(t, map[string]string{"db": db.url}, `
  - id: g
    generate:
      on: db
      query: SELECT 'INSERT INTO log (v) VALUES (''regenerated'')'
`, fixtureOpts{})
	frozen := []string{
		"INSERT INTO log (v) VALUES ('s0')",
		"INSERT INTO log (v) VALUES ('s1')",
		"INSERT INTO log (v) VALUES ('s2')",
		"INSERT INTO log (v) VALUES ('s3')",
	}
	f.journal.prime(frozen, 2)
	out := f.mustRun("g")
	if out["statements"] != 4 || out["executed"] != 4 {
		t.Errorf("outputs = %v", out)
	}
	if got := db.value(t, "SELECT string_agg(v, ',' ORDER BY id) FROM log"); got != "s2,s3" {
		t.Errorf("executed %s, want s2,s3", got)
	}
	if len(f.events("generate.query")) != 0 || len(f.journal.of("freeze")) != 0 {
		t.Errorf("the generator query ran again")
	}
	if got := f.journal.sequence(); got != "before(3) committed(3) before(4) committed(4)" {
		t.Errorf("journal = %s", got)
	}

	// Everything was done: nothing runs.
	f.journal.prime(frozen, 4)
	if out := f.mustRun("g"); out["executed"] != 4 || f.journal.sequence() != "" {
		t.Errorf("outputs = %v, journal = %s", out, f.journal.sequence())
	}
	// A journal that cannot be right.
	f.journal.prime(frozen, 4)
	f.journal.units[genUnit] = genData(5, len(frozen))
	if err := f.runErr("g"); !strings.Contains(err.Error(), "cannot resume") {
		t.Errorf("error = %v", err)
	}
}

func TestGenerateFailure(t *testing.T) {
	// Seven statements, the fifth (index 4) fails: every mode leaves what
	// each would have committed, and names the statement.
	cases := []struct {
		mode, extra, journal, rows string
		reruns                     int
	}{
		// The failing transaction's id is recorded (before(5), before(6),
		// before(7)) before its statements run: the journal's flush overlaps
		// them.
		{"each", "", "freeze(7) before(1) committed(1) before(2) committed(2) before(3) committed(3) before(4) committed(4) before(5)", "0,1,2,3", 0},
		{"batch", "batch_size: 3", "freeze(7) before(3) committed(3) before(6) before(4) committed(4)", "0,1,2,3", 1},
		{"all", "", "freeze(7) before(7)", "", 0},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			db := newDB(t)
			db.exec(t, "CREATE TABLE t (n int PRIMARY KEY); INSERT INTO t VALUES (100)")
			f := newFixture(t, map[string]string{"db": db.url}, fmt.Sprintf(`
  - id: g
    generate:
      on: db
      query: SELECT format('INSERT INTO t VALUES (%%s)', CASE WHEN i = 4 THEN 100 ELSE i END) FROM generate_series(0, 6) i
      transaction: %s
      %s
`, c.mode, c.extra), fixtureOpts{})
			err := f.runErr("g")
			var se *pgerr.SQLError
			if !errors.As(err, &se) {
				t.Fatalf("error = %v", err)
			}
			if se.Statement != 5 || se.Of != 7 || se.SQL != "INSERT INTO t VALUES (100)" || se.Code != "23505" {
				t.Errorf("error = %+v", se)
			}
			for _, want := range []string{"generated statement 5 of 7 (index 4)", "SQLSTATE 23505", "SQL: INSERT INTO t VALUES (100)", "DETAIL: Key (n)=(100) already exists."} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			}
			if got := db.value(t, "SELECT coalesce(string_agg(n::text, ',' ORDER BY n), '') FROM t WHERE n < 100"); got != c.rows {
				t.Errorf("committed rows %q, want %q", got, c.rows)
			}
			if got := f.journal.sequence(); got != c.journal {
				t.Errorf("journal = %s\nwant      %s", got, c.journal)
			}
			if got := len(f.events("generate.rerun")); got != c.reruns {
				t.Errorf("%d reruns", got)
			}
			if st := f.conns.conn("db").PgConn().TxStatus(); st != 'I' {
				t.Errorf("connection left in transaction status %c", st)
			}
		})
	}
}

func TestGenerateOutsideTransaction(t *testing.T) {
	db := newDB(t)
	db.exec(t, "CREATE TABLE t (n int); CREATE TABLE u (n int)")
	steps := `
  - id: g
    generate:
      on: db
      query: |
        SELECT * FROM (VALUES ('INSERT INTO t VALUES (1)'), ('VACUUM t'), ('CREATE INDEX CONCURRENTLY t_n ON t (n)'), ('INSERT INTO t VALUES (2)')) v
      transaction: %s
      %s
`
	for _, c := range []struct{ mode, extra, journal string }{
		// before(N) of a statement that then cannot run in a transaction
		// block is its rolled-back transaction's.
		{"each", "", "freeze(4) before(1) committed(1) before(2) committed(2) before(3) committed(3) before(4) committed(4)"},
		{"batch", "batch_size: 3", "freeze(4) before(3) before(1) committed(1) committed(2) before(4) committed(3) before(4) committed(4)"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			db.exec(t, "TRUNCATE t; DROP INDEX IF EXISTS t_n")
			f := newFixture(t, map[string]string{"db": db.url}, fmt.Sprintf(steps, c.mode, c.extra), fixtureOpts{})
			out := f.mustRun("g")
			if out["executed"] != 4 {
				t.Errorf("outputs = %v", out)
			}
			if got := db.value(t, "SELECT string_agg(n::text, ',' ORDER BY n) FROM t"); got != "1,2" {
				t.Errorf("rows = %s", got)
			}
			if got := db.value(t, "SELECT count(*) FROM pg_indexes WHERE indexname = 't_n'"); got != "1" {
				t.Errorf("index not created")
			}
			warns := f.events("generate.autocommit")
			if len(warns) != 2 || warns[0]["level"] != "warn" || !strings.Contains(warns[0]["message"].(string), "not protected") {
				t.Errorf("warnings = %v", warns)
			}
			for _, c := range f.journal.of("committed") {
				if c.done() == 2 && c.Tx.XID != 0 {
					t.Errorf("autocommit statement recorded with xid %d", c.Tx.XID)
				}
			}
			if got := f.journal.sequence(); got != c.journal {
				t.Errorf("journal = %s\nwant      %s", got, c.journal)
			}
		})
	}
	t.Run("all", func(t *testing.T) {
		f := newFixture(t, map[string]string{"db": db.url}, fmt.Sprintf(steps, "all", ""), fixtureOpts{})
		err := f.runErr("g")
		var se *pgerr.SQLError
		if !errors.As(err, &se) || se.Code != "25001" || se.Statement != 2 || !strings.Contains(err.Error(), "use each or batch") {
			t.Errorf("error = %v", err)
		}
	})
}

func TestGenerateQueryError(t *testing.T) {
	db := newDB(t)
	f := newFixture(t, map[string]string{"db": db.url}, `
  - id: g
    generate:
      on: db
      query: |
        SELECT 'x'
        FROM nosuch
`, fixtureOpts{})
	err := f.runErr("g")
	var se *pgerr.SQLError
	if !errors.As(err, &se) || se.Code != "42P01" || !strings.Contains(err.Error(), "generator query at line 2 col 6") {
		t.Errorf("error = %v", err)
	}
	if len(f.journal.calls) != 0 {
		t.Errorf("journal = %s", f.journal.sequence())
	}
}

func TestGenerateJournalFailure(t *testing.T) {
	db := newDB(t)
	db.exec(t, "CREATE TABLE t (n int)")
	f := newFixture(t, map[string]string{"db": db.url}, `
  - id: g
    generate:
      on: db
      query: SELECT format('INSERT INTO t VALUES (%s)', i) FROM generate_series(1, 4) i
`, fixtureOpts{})
	f.journal.failBefore = 3
	err := f.runErr("g")
	if !strings.Contains(err.Error(), "disk full") {
		t.Errorf("error = %v", err)
	}
	// Statement 3 was not recorded before its commit: it must not commit.
	if got := db.value(t, "SELECT string_agg(n::text, ',' ORDER BY n) FROM t"); got != "1,2" {
		t.Errorf("rows = %s", got)
	}
	if st := f.conns.conn("db").PgConn().TxStatus(); st != 'I' {
		t.Errorf("connection left in transaction status %c", st)
	}
}

func TestGenerateCancel(t *testing.T) {
	db := newDB(t)
	db.exec(t, "CREATE TABLE t (n int)")
	f := newFixture(t, map[string]string{"db": db.url}, `
  - id: g
    generate:
      on: db
      query: SELECT 'INSERT INTO t VALUES (1)' UNION ALL SELECT 'SELECT pg_sleep(30)'
`, fixtureOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Cancel once the second statement runs.
	watch := db.srv.Connect(t, db.name)
	var cancelled time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cancel()
		for i := 0; i < 1000; i++ {
			var n int
			err := watch.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'").Scan(&n)
			if err != nil || n == 1 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancelled = time.Now()
	}()
	_, err := f.run(ctx, "g")
	<-done
	if !errors.Is(err, context.Canceled) || time.Since(cancelled) > 2*time.Second {
		t.Errorf("%v after the cancel: error = %v", time.Since(cancelled), err)
	}
	if got := db.value(t, "SELECT count(*) FROM t"); got != "1" {
		t.Errorf("%s rows: the first statement's commit travels with the second", got)
	}
	if got := f.journal.sequence(); got != "freeze(2) before(1) committed(1) before(2)" {
		t.Errorf("journal = %s", got)
	}
}

// benchTables is how many statements the generate benchmarks run.
const benchTables = 2000

func benchmarkGenerate(b *testing.B, mode, extra string) {
	db := newDB(b)
	role := ownerSetup(b, db, benchTables)
	f := newFixture(b, map[string]string{"db": db.url}, fmt.Sprintf(`
  - id: g
    generate:
      on: db
      query: SELECT %s
      args: ['${{ params.role }}']
      transaction: %s
      %s
`, ownerQuery, mode, extra), fixtureOpts{params: map[string]string{"role": role}})
	f.conns.conn("db")
	roles := []string{role + "_b", role}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.env.Params["role"] = roles[i%2]
		f.journal.calls = nil
		f.log.b.Reset()
		if out := f.mustRun("g"); out["executed"] != benchTables {
			b.Fatalf("outputs = %v", out)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*benchTables), "µs/stmt")
}

func BenchmarkGenerateEach(b *testing.B)  { benchmarkGenerate(b, "each", "") }
func BenchmarkGenerateBatch(b *testing.B) { benchmarkGenerate(b, "batch", "batch_size: 100") }
func BenchmarkGenerateAll(b *testing.B)   { benchmarkGenerate(b, "all", "") }

// BenchmarkGexecBaseline is what psql's \gexec does in autocommit: each
// statement alone through the simple protocol, no journal.
func BenchmarkGexecBaseline(b *testing.B) {
	db := newDB(b)
	role := ownerSetup(b, db, benchTables)
	conn := db.srv.Connect(b, db.name)
	ctx := context.Background()
	roles := []string{role + "_b", role}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rows, err := conn.Query(ctx, "SELECT "+ownerQuery, roles[i%2])
		if err != nil {
			b.Fatal(err)
		}
		var list []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				b.Fatal(err)
			}
			list = append(list, s)
		}
		if rows.Err() != nil {
			b.Fatal(rows.Err())
		}
		for _, s := range list {
			if _, err := conn.PgConn().Exec(ctx, s).ReadAll(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*benchTables), "µs/stmt")
}

func TestGenerateCommitFails(t *testing.T) {
	for _, mode := range []string{"each", "batch"} {
		t.Run(mode, func(t *testing.T) {
			db := newDB(t)
			db.exec(t, "CREATE TABLE t (n int UNIQUE DEFERRABLE INITIALLY DEFERRED); INSERT INTO t VALUES (2)")
			f := newFixture(t, map[string]string{"db": db.url}, `
  - id: g
    generate:
      on: db
      query: SELECT format('INSERT INTO t VALUES (%s)', i) FROM generate_series(1, 3) i
      transaction: `+mode+`
      `+map[string]string{"each": "", "batch": "batch_size: 2"}[mode]+`
`, fixtureOpts{})
			err := f.runErr("g")
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "23505" || !strings.Contains(err.Error(), "COMMIT") {
				t.Errorf("error = %v", err)
			}
			want := map[string]string{
				"each":  "freeze(3) before(1) committed(1) before(2)",
				"batch": "freeze(3) before(2)",
			}[mode]
			if got := f.journal.sequence(); got != want {
				t.Errorf("journal = %s, want %s", got, want)
			}
			before := f.journal.of("before")
			xid := before[len(before)-1].Tx.XID
			if got := db.value(t, "SELECT pg_xact_status($1::text::xid8)", strconv.FormatUint(xid, 10)); got != "aborted" {
				t.Errorf("pg_xact_status = %s", got)
			}
			if st := f.conns.conn("db").PgConn().TxStatus(); st != 'I' {
				t.Errorf("connection left in transaction status %c", st)
			}
		})
	}
}

func TestGenerateLargeUnits(t *testing.T) {
	// More statements per transaction than one chunk of the pipeline.
	db := newDB(t)
	db.exec(t, "CREATE TABLE t (n int PRIMARY KEY)")
	steps := `
  - id: ok
    generate:
      on: db
      query: SELECT format('INSERT INTO t VALUES (%s)', i) FROM generate_series(1, 600) i
      transaction: all
  - id: fail-all
    generate:
      on: db
      query: SELECT format('INSERT INTO t VALUES (%s)', CASE WHEN i = 1500 THEN 1 ELSE i END) FROM generate_series(1001, 1600) i
      transaction: all
  - id: fail-batch
    generate:
      on: db
      query: SELECT format('INSERT INTO t VALUES (%s)', CASE WHEN i = 1500 THEN 1 ELSE i END) FROM generate_series(1001, 1600) i
      transaction: batch
      batch_size: 300
  - id: none
    generate:
      on: db
      query: SELECT 'x' WHERE false
`
	f := newFixture(t, map[string]string{"db": db.url}, steps, fixtureOpts{})
	if out := f.mustRun("ok"); out["executed"] != 600 {
		t.Errorf("outputs = %v", out)
	}
	if n := len(f.events("generate.statement")); n != 600 {
		t.Errorf("%d events", n)
	}
	err := f.runErr("fail-all")
	var se *pgerr.SQLError
	if !errors.As(err, &se) || se.Statement != 500 {
		t.Errorf("error = %v", err)
	}
	if got := db.value(t, "SELECT count(*) FROM t"); got != "600" {
		t.Errorf("%s rows after the failed all", got)
	}
	err = f.runErr("fail-batch")
	if !errors.As(err, &se) || se.Statement != 500 || se.SQL != "INSERT INTO t VALUES (1)" {
		t.Errorf("error = %v", err)
	}
	if got := db.value(t, "SELECT count(*) || ' ' || max(n) FROM t WHERE n > 1000"); got != "499 1499" {
		t.Errorf("rows after the failed batch: %s", got)
	}
	f.journal.calls = nil
	if out := f.mustRun("none"); out["statements"] != 0 || out["executed"] != 0 || f.journal.sequence() != "freeze(0)" {
		t.Errorf("outputs = %v, journal = %s", out, f.journal.sequence())
	}
}

// BenchmarkPsqlGexec is the reference of the goal: psql's \gexec (autocommit)
// on the same statements, process start included.
func BenchmarkPsqlGexec(b *testing.B) {
	db := newDB(b)
	psql := filepath.Join(db.srv.BinDir, "psql")
	if _, err := os.Stat(psql); db.srv.BinDir == "" || err != nil {
		b.Skip("no psql")
	}
	role := ownerSetup(b, db, benchTables)
	roles := []string{role + "_b", role}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		q := "SELECT " + strings.ReplaceAll(ownerQuery, "$1::text", "'"+roles[i%2]+"'") + " \\gexec\n"
		cmd := exec.Command(psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db.url)
		cmd.Stdin = strings.NewReader(q)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("psql: %v\n%s", err, out)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*benchTables), "µs/stmt")
}

// TestGenerateSegments runs the generate tests again with units sent two
// cells per round trip, as a transaction of more than segCells statements is:
// transactions spanning several round trips, failures in a later segment,
// the batch's re-run of its prefix, and cells of several statements.
func TestGenerateSegments(t *testing.T) {
	defer func(n int) { segCells = n }(segCells)
	segCells = 2
	t.Run("modes", TestGenerateModes)
	t.Run("cells", TestGenerateCells)
	t.Run("failure", TestGenerateFailure)
	t.Run("outside", TestGenerateOutsideTransaction)
	t.Run("resume", TestGenerateResumeUsesFrozenList)
	t.Run("journal", TestGenerateJournalFailure)
	t.Run("large batch", func(t *testing.T) {
		// batch_size 5, segments of 2: the failing statement (index 6) is in
		// the second batch's second segment; the prefix re-run spans two.
		db := newDB(t)
		db.exec(t, "CREATE TABLE t (n int PRIMARY KEY); INSERT INTO t VALUES (100)")
		f := newFixture(t, map[string]string{"db": db.url}, `
  - id: g
    generate:
      on: db
      query: SELECT format('INSERT INTO t VALUES (%s)', CASE WHEN i = 8 THEN 100 ELSE i END) FROM generate_series(0, 11) i
      transaction: batch
      batch_size: 5
`, fixtureOpts{})
		err := f.runErr("g")
		var se *pgerr.SQLError
		if !errors.As(err, &se) || se.Statement != 9 || se.Of != 12 || se.SQL != "INSERT INTO t VALUES (100)" {
			t.Fatalf("error = %v", err)
		}
		if got := db.value(t, "SELECT string_agg(n::text, ',' ORDER BY n) FROM t WHERE n < 100"); got != "0,1,2,3,4,5,6,7" {
			t.Errorf("committed rows %q", got)
		}
		if got, want := f.journal.sequence(), "freeze(12) before(5) committed(5) before(10) before(8) committed(8)"; got != want {
			t.Errorf("journal = %s\nwant      %s", got, want)
		}
		if evs := f.events("generate.statement"); len(evs) != 8+3 {
			t.Errorf("%d generate.statement events", len(evs))
		}
	})
}

// TestGenerateDurability checks the commit protocol of docs/state.md
// ("Exactly once") on a server with PostgreSQL's default durability, by what
// the server did: pg_stat_wal counts its log flushes. Every transaction's
// COMMIT is asynchronous but the last (and one every 100 ms), whose log record
// (xidFlushSQL) makes it flush the ones before it; without the right to write
// that record, every COMMIT is synchronous, as psql's; with the session's own
// synchronous_commit off, none is known durable.
func TestGenerateDurability(t *testing.T) {
	srv := pgtest.NewCluster(t, pgtest.WithFsync())
	const n = 300
	cases := []struct {
		name  string
		setup string // run as the superuser; the step connects as plain
		query string // added to the connection URL
		// The journal's records: how many commits were asynchronous, and
		// whether the step ends with everything durable.
		async   func(int) bool
		durable bool
		// The server's log flushes during the step: fewer than max, at least min.
		minFlushes, maxFlushes int64
	}{
		{"default", "", "", func(a int) bool { return a >= n/2 && a < n }, true, 1, n / 4},
		{"without pg_logical_emit_message", "REVOKE EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) FROM PUBLIC", "",
			func(a int) bool { return a == 0 }, true, n, 10 * n},
		{"synchronous_commit off", "", "&synchronous_commit=off", func(a int) bool { return a == n }, false, 0, n / 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db := newDBOn(t, srv)
			u, err := neturl.Parse(db.url)
			if err != nil {
				t.Fatal(err)
			}
			db.exec(t, "CREATE TABLE t (n int); DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'plain') THEN CREATE ROLE plain LOGIN; END IF; END$$; GRANT ALL ON t TO plain")
			db.exec(t, "GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO PUBLIC")
			if c.setup != "" {
				db.exec(t, c.setup)
				t.Cleanup(func() { db.exec(t, "GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO PUBLIC") })
			}
			u.User = neturl.User("plain")
			plainURL := u.String() + c.query
			f := newFixture(t, map[string]string{"db": plainURL}, fmt.Sprintf(`
  - id: g
    generate:
      on: db
      query: SELECT format('INSERT INTO t VALUES (%%s)', i) FROM generate_series(1, %d) i
`, n), fixtureOpts{})
			// A backend reports its statistics lazily (at most once a
			// second) but always when it exits: the step's session ends
			// before the count is read, and the counts are read after a
			// new session is idle.
			flushes := func() int64 {
				for i := 0; i < 100; i++ {
					if db.value(t, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'plain'") == "0" {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				v, err := strconv.ParseInt(db.value(t, "SELECT wal_sync FROM pg_stat_wal"), 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			before := flushes()
			f.mustRun("g")
			f.conns.conn("db").Close(context.Background())
			got := flushes() - before
			if v := db.value(t, "SELECT count(*) FROM t"); v != strconv.Itoa(n) {
				t.Fatalf("%s rows", v)
			}
			async := 0
			var last Tx
			for _, call := range f.journal.of("before") {
				if call.Tx.Async {
					async++
				}
				last = call.Tx
			}
			t.Logf("%d statements: %d asynchronous commits, %d log flushes by the server", n, async, got)
			if !c.async(async) {
				t.Errorf("%d asynchronous commits of %d", async, n)
			}
			if last.Async == c.durable {
				t.Errorf("the last commit asynchronous: %v, want %v", last.Async, !c.durable)
			}
			if got < c.minFlushes || got >= c.maxFlushes {
				t.Errorf("the server flushed its log %d times, want %d to %d", got, c.minFlushes, c.maxFlushes-1)
			}
		})
	}
}
