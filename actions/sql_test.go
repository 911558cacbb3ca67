package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/runbookhq/runbook/internal/pgerr"
)

func TestSQLMultiStatement(t *testing.T) {
	db := newDB(t)
	f := newFixture(t, map[string]string{"db": db.url}, `
  - id: s
    sql:
      on: db
      script: |
        CREATE TABLE t (id int PRIMARY KEY, v text);
        INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');
        -- a comment between statements
        UPDATE t SET v = upper(v) WHERE id < 3;
`, fixtureOpts{})
	out := f.mustRun("s")
	if out["rows_affected"] != int64(5) || out["statements"] != 3 {
		t.Errorf("outputs = %v, want rows_affected 5, statements 3", out)
	}
	if _, ok := out["rows"]; ok {
		t.Errorf("outputs have rows without capture: %v", out)
	}
	if got := db.value(t, "SELECT string_agg(v, ',' ORDER BY id) FROM t"); got != "A,B,c" {
		t.Errorf("table = %s", got)
	}
	evs := f.events("sql.statement")
	if len(evs) != 3 {
		t.Fatalf("%d sql.statement events, want 3", len(evs))
	}
	for i, want := range []float64{0, 3, 2} {
		if evs[i]["rows"] != want || evs[i]["statement"] != float64(i+1) || evs[i]["step"] != "s" {
			t.Errorf("event %d = %v, want rows %v", i, evs[i], want)
		}
		if _, ok := evs[i]["duration"].(float64); !ok {
			t.Errorf("event %d has no duration: %v", i, evs[i])
		}
	}
	if !strings.HasPrefix(evs[1]["sql"].(string), "INSERT INTO t VALUES") {
		t.Errorf("event 2 sql = %v", evs[1]["sql"])
	}

	// The journal protocol: BeforeCommit with the transaction's identity, then Committed.
	if got := f.journal.sequence(); got != "before(3) committed(3)" {
		t.Fatalf("journal = %s", got)
	}
	tx := f.journal.of("before")[0].Tx
	var txOut Outputs
	if err := json.Unmarshal(tx.Data, &txOut); err != nil || tx.Conn != "db" || tx.XID == 0 || tx.Unit != sqlUnit || txOut["rows_affected"] != float64(5) {
		t.Errorf("pending tx = %+v", tx)
	}
	if got := db.value(t, "SELECT pg_xact_status($1::text::xid8)", strconv.FormatUint(tx.XID, 10)); got != "committed" {
		t.Errorf("pg_xact_status(%d) = %s", tx.XID, got)
	}
	conn := f.conns.conn("db")
	var pid uint32
	var start time.Time
	if err := conn.QueryRow(context.Background(), "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()").Scan(&pid, &start); err != nil {
		t.Fatal(err)
	}
	if tx.BackendPID != pid || !tx.BackendStart.Equal(start) {
		t.Errorf("backend = %d %v, want %d %v", tx.BackendPID, tx.BackendStart, pid, start)
	}
	if st := conn.PgConn().TxStatus(); st != 'I' {
		t.Errorf("connection left in transaction status %c", st)
	}
}

func TestSQLCaptureTypes(t *testing.T) {
	db := newDB(t)
	f := newFixture(t, map[string]string{"db": db.url}, `
  - id: s
    sql:
      on: db
      capture: true
      script: |
        SET TIME ZONE 'Europe/Paris';
        SELECT 1::int2 AS i2, 2::int4 AS i4, 3::int8 AS i8, 1.5::float8 AS f8, 0.25::float4 AS f4,
               12.50::numeric AS num, 'x'::text AS txt, true AS b, NULL::int AS nul,
               '2024-05-01 12:00:00.5+02'::timestamptz AS tstz, '2024-05-01 12:00'::timestamp AS ts,
               '2024-05-01'::date AS d, '\x0aff'::bytea AS bin,
               '1b4e28ba-2fa1-11d2-883f-0016d3cca427'::uuid AS id, '{"a": [1, "x"]}'::jsonb AS doc,
               ARRAY[1, 2] AS arr, interval '1 day 2 hours' AS iv, 'infinity'::timestamptz AS inf,
               'NaN'::float8 AS nan, 'pg_class'::regclass AS rc
        UNION ALL
        SELECT 7, 8, 9, 0, 0, 0, 'y', false, 1, now(), now()::timestamp, now()::date, '', gen_random_uuid(),
               'null', '{}', '0', '-infinity', 0, 'pg_class'
`, fixtureOpts{})
	out := f.mustRun("s")
	rows := out["rows"].([]map[string]any)
	if len(rows) != 2 || out["rows_affected"] != int64(2) {
		t.Fatalf("rows = %v", out)
	}
	row := out["row"].(map[string]any)
	want := map[string]any{
		"i2": int64(1), "i4": int64(2), "i8": int64(3), "f8": 1.5, "f4": 0.25,
		"num": "12.50", "txt": "x", "b": true, "nul": nil,
		"tstz": "2024-05-01T10:00:00.5Z", "ts": "2024-05-01T12:00:00", "d": "2024-05-01", "bin": `\x0aff`,
		"id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "doc": map[string]any{"a": []any{float64(1), "x"}},
		"arr": []any{int64(1), int64(2)}, "iv": "1 day 02:00:00", "inf": "infinity", "nan": "NaN", "rc": "pg_class",
	}
	for k, w := range want {
		if got := fmt.Sprintf("%#v", row[k]); got != fmt.Sprintf("%#v", w) {
			t.Errorf("%s = %s, want %#v", k, got, w)
		}
	}
	if len(row) != len(want) {
		t.Errorf("row has %d columns, want %d: %v", len(row), len(want), row)
	}
	if rows[1]["i2"] != int64(7) || rows[1]["inf"] != "-infinity" {
		t.Errorf("second row = %v", rows[1])
	}

	// No rows: row is nil, rows empty.
	f2 := newFixture(t, map[string]string{"db": db.url}, `
  - id: s
    sql: {on: db, capture: true, transaction: false, script: "SELECT 1 AS one WHERE false"}
`, fixtureOpts{})
	out = f2.mustRun("s")
	if out["row"] != nil || len(out["rows"].([]map[string]any)) != 0 {
		t.Errorf("outputs = %#v", out)
	}
}

func TestSQLArgs(t *testing.T) {
	db := newDB(t)
	db.exec(t, "CREATE TABLE t (n int, s text, b boolean)")
	f := newFixture(t, map[string]string{"db": db.url}, `
  - id: insert
    sql:
      on: db
      script: INSERT INTO t VALUES ($1, $2, $3) RETURNING n + 1 AS next, s
      args: ['${{ 41 }}', '${{ params.role }}', '${{ params.role == "app" }}']
      capture: true
  - id: autocommit
    sql:
      on: db
      transaction: false
      script: SELECT count(*) AS n FROM t WHERE s = $1
      args: ['${{ params.role }}']
      capture: true
  - id: multi
    sql:
      on: db
      script: ${{ "SELECT $1; SELECT $1" }}
      args: [x]
`, fixtureOpts{params: map[string]string{"role": "app"}})
	out := f.mustRun("insert")
	if row := out["row"].(map[string]any); row["next"] != int64(42) || row["s"] != "app" {
		t.Errorf("row = %v", row)
	}
	if got := db.value(t, "SELECT n || s || b FROM t"); got != "41apptrue" {
		t.Errorf("table = %s", got)
	}
	if got := f.journal.sequence(); got != "before(1) committed(1)" {
		t.Errorf("journal = %s", got)
	}
	out = f.mustRun("autocommit")
	if out["row"].(map[string]any)["n"] != int64(1) {
		t.Errorf("count = %v", out)
	}
	if got := f.journal.sequence(); got != "before(1) committed(1)" {
		t.Errorf("transaction: false made journal calls: %s", got)
	}
	if err := f.runErr("multi"); !strings.Contains(err.Error(), "single statement") {
		t.Errorf("error = %v", err)
	}
}

func TestSQLTransactionRollsBack(t *testing.T) {
	db := newDB(t)
	db.exec(t, "CREATE TABLE t (n int)")
	f := newFixture(t, map[string]string{"db": db.url}, `
  - id: s
    sql:
      on: db
      script: |
        INSERT INTO t VALUES (1);
        INSERT INTO t VALUES ('x');
        INSERT INTO t VALUES (3);
  - id: vacuum
    sql: {on: db, script: VACUUM t}
`, fixtureOpts{})
	err := f.runErr("s")
	var se *pgerr.SQLError
	if !errors.As(err, &se) || se.Statement != 2 || se.Code != "22P02" {
		t.Fatalf("error = %v", err)
	}
	if got := db.value(t, "SELECT count(*) FROM t"); got != "0" {
		t.Errorf("%s rows committed, want 0 (statement 1 rolled back)", got)
	}
	if got := f.journal.sequence(); got != "" {
		t.Errorf("journal = %s", got)
	}
	if evs := f.events("sql.statement"); len(evs) != 1 {
		t.Errorf("%d statements logged, want 1", len(evs))
	}
	if st := f.conns.conn("db").PgConn().TxStatus(); st != 'I' {
		t.Errorf("connection left in transaction status %c", st)
	}
	// What transaction: false is for.
	err = f.runErr("vacuum")
	if !errors.As(err, &se) || se.Code != "25001" {
		t.Errorf("VACUUM in a transaction: %v", err)
	}
}

func TestSQLNoTransaction(t *testing.T) {
	db := newDB(t)
	db.exec(t, "CREATE TABLE t (n int)")
	f := newFixture(t, map[string]string{"db": db.url}, `
  - id: s
    sql:
      on: db
      transaction: false
      script: |
        VACUUM (ANALYZE) t;
        CREATE INDEX CONCURRENTLY t_n ON t (n);
        INSERT INTO t VALUES (1), (2);
        INSERT INTO t VALUES ('x');
        INSERT INTO t VALUES (3);
  - id: open
    sql:
      on: db
      transaction: false
      script: BEGIN; INSERT INTO t VALUES (4)
`, fixtureOpts{})
	err := f.runErr("s")
	var se *pgerr.SQLError
	if !errors.As(err, &se) || se.Statement != 4 || se.Of != 5 {
		t.Fatalf("error = %v", err)
	}
	if got := db.value(t, "SELECT string_agg(n::text, ',') FROM t"); got != "1,2" {
		t.Errorf("rows = %s, want 1,2 (statements before the failure persist)", got)
	}
	if got := db.value(t, "SELECT count(*) FROM pg_indexes WHERE indexname = 't_n'"); got != "1" {
		t.Errorf("index not created")
	}
	if got := f.journal.sequence(); got != "" {
		t.Errorf("journal = %s", got)
	}
	if err := f.runErr("open"); !strings.Contains(err.Error(), "transaction open") {
		t.Errorf("error = %v", err)
	}
	if got := db.value(t, "SELECT count(*) FROM t WHERE n = 4"); got != "0" {
		t.Errorf("the open transaction was not rolled back")
	}
}

func TestSQLErrors(t *testing.T) {
	db := newDB(t)
	db.exec(t, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
	cases := []struct {
		name, step string
		files      map[string]string
		check      func(t *testing.T, e *pgerr.SQLError, msg string)
	}{
		{
			name: "position in a block script",
			step: `
  - id: s
    sql:
      on: db
      script: |
        SELECT 1;
        SELECT id,
               nosuchcol FROM t;
`,
			check: func(t *testing.T, e *pgerr.SQLError, msg string) {
				if e.Code != "42703" || e.Statement != 2 || e.ScriptLine != 3 || e.ScriptCol != 8 || e.StmtLine != 2 || e.StmtCol != 8 {
					t.Errorf("error = %+v", e)
				}
				// The runbook's steps start at line 6: the script's line 3 is line 13.
				if e.Line != 13 || e.Col != 16 || e.File != "" {
					t.Errorf("runbook position = %s:%d:%d", e.File, e.Line, e.Col)
				}
				for _, want := range []string{"statement 2 of 2 at script line 3 col 8 (runbook line 13 col 16)", "SQLSTATE 42703", `column "nosuchcol" does not exist`, "SQL: SELECT id,"} {
					if !strings.Contains(msg, want) {
						t.Errorf("message lacks %q:\n%s", want, msg)
					}
				}
			},
		},
		{
			name: "detail",
			step: `
  - id: s
    sql: {on: db, script: "INSERT INTO t VALUES (1)"}
`,
			check: func(t *testing.T, e *pgerr.SQLError, msg string) {
				if e.Code != "23505" || !strings.Contains(msg, "DETAIL: Key (id)=(1) already exists.") || !strings.Contains(msg, "(runbook line 8 col 28)") {
					t.Errorf("message:\n%s", msg)
				}
			},
		},
		{
			name: "hint and context",
			step: `
  - id: s
    sql:
      on: db
      transaction: false
      script: |
        DO $$ BEGIN RAISE EXCEPTION 'custom' USING DETAIL = 'the detail', HINT = 'the hint', ERRCODE = 'P0001'; END $$
`,
			check: func(t *testing.T, e *pgerr.SQLError, msg string) {
				for _, want := range []string{"ERROR: custom (SQLSTATE P0001)", "DETAIL: the detail", "HINT: the hint", "CONTEXT: PL/pgSQL"} {
					if !strings.Contains(msg, want) {
						t.Errorf("message lacks %q:\n%s", want, msg)
					}
				}
				if e.ScriptLine != 1 || e.ScriptCol != 1 {
					t.Errorf("no server position: want the statement's start, got %d:%d", e.ScriptLine, e.ScriptCol)
				}
			},
		},
		{
			name:  "file script",
			files: map[string]string{"m.sql": "-- migration\nSELECT 1;\n\n  SELECT 1 +* 2;\n"},
			step: `
  - id: s
    sql: {on: db, file: m.sql}
`,
			check: func(t *testing.T, e *pgerr.SQLError, msg string) {
				if e.Code != "42883" || e.File != "m.sql" || e.Line != 4 || e.Col != 12 {
					t.Errorf("error = %+v", e)
				}
				if !strings.Contains(msg, "statement 2 of 2 at script line 4 col 12 (m.sql:4:12)") {
					t.Errorf("message:\n%s", msg)
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, map[string]string{"db": db.url}, c.step, fixtureOpts{files: c.files})
			err := f.runErr("s")
			var e *pgerr.SQLError
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not an SQLError: %v", err, err)
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) {
				t.Errorf("the PgError is not found through the error")
			}
			c.check(t, e, err.Error())
			evs := f.events("sql.error")
			if len(evs) != 1 || evs[0]["sqlstate"] != e.Code || evs[0]["level"] != "error" || evs[0]["message"] != e.Message {
				t.Errorf("sql.error events = %v", evs)
			}
		})
	}
}

func TestSQLRedactsErrors(t *testing.T) {
	db := newDB(t)
	f := newFixture(t, map[string]string{"db": db.url}, `
  - id: s
    sql:
      on: db
      script: SELECT '${{ params.pw }}'::int
`, fixtureOpts{params: map[string]string{"pw": "s3cr3t-value"}})
	err := f.runErr("s")
	if strings.Contains(err.Error(), "s3cr3t-value") || !strings.Contains(err.Error(), "***") {
		t.Errorf("error = %v", err)
	}
	if strings.Contains(f.log.String(), "s3cr3t-value") {
		t.Errorf("log has the secret:\n%s", f.log.String())
	}
	var se *pgerr.SQLError
	if !errors.As(err, &se) {
		t.Errorf("SQLError not found through the redacted error")
	}
}

func TestSQLNotices(t *testing.T) {
	db := newDB(t)
	f := newFixture(t, map[string]string{"db": db.url}, `
  - id: s
    sql:
      on: db
      script: |
        DO $$ BEGIN RAISE NOTICE 'hello %', 1; RAISE WARNING 'careful' USING HINT = 'look'; END $$;
        DROP TABLE IF EXISTS nosuch;
`, fixtureOpts{})
	f.mustRun("s")
	evs := f.events("sql.notice")
	if len(evs) != 3 {
		t.Fatalf("notices = %v", evs)
	}
	want := []struct{ level, severity, msg string }{
		{"info", "NOTICE", "hello 1"},
		{"warn", "WARNING", "careful"},
		{"info", "NOTICE", `table "nosuch" does not exist, skipping`},
	}
	for i, w := range want {
		e := evs[i]
		if e["level"] != w.level || e["severity"] != w.severity || e["message"] != w.msg || e["conn"] != "db" {
			t.Errorf("notice %d = %v, want %+v", i, e, w)
		}
	}
	if evs[1]["hint"] != "look" || evs[0]["sqlstate"] != "00000" {
		t.Errorf("notices = %v", evs)
	}
}

func TestSQLCancel(t *testing.T) {
	db := newDB(t)
	for _, pgxWatcher := range []bool{false, true} {
		name := "CancelOnContext"
		if pgxWatcher {
			name = "pgx default watcher"
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, map[string]string{"db": db.url}, `
  - id: s
    sql: {on: db, script: SELECT pg_sleep(30)}
`, fixtureOpts{pgxWatcher: pgxWatcher})
			pid := f.conns.conn("db").PgConn().PID()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := f.run(ctx, "s")
			took := time.Since(start)
			if err == nil || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error = %v, want one that wraps the context's", err)
			}
			if took > 2*time.Second {
				t.Errorf("Run returned after %v", took)
			}
			// The server stopped the statement: no pg_sleep left on that backend.
			var active string
			for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				active = db.value(t, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query LIKE '%pg_sleep%'", pid)
				if active == "0" {
					break
				}
			}
			if active != "0" {
				t.Errorf("pg_sleep still running on backend %d after the cancel", pid)
			}
			if !pgxWatcher {
				// The session survived and is usable at once.
				if _, err := f.conns.conn("db").Exec(context.Background(), "SELECT 1"); err != nil {
					t.Errorf("connection after cancel: %v", err)
				}
				if st := f.conns.conn("db").PgConn().TxStatus(); st != 'I' {
					t.Errorf("connection left in transaction status %c", st)
				}
			}
		})
	}
}

func TestSQLCommitFails(t *testing.T) {
	db := newDB(t)
	db.exec(t, "CREATE TABLE t (n int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
	f := newFixture(t, map[string]string{"db": db.url}, `
  - id: s
    sql:
      on: db
      script: INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)
`, fixtureOpts{})
	err := f.runErr("s")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" || !strings.HasPrefix(err.Error(), "COMMIT: ") {
		t.Errorf("error = %v", err)
	}
	// BeforeCommit without Committed: the executor asks the server, which says aborted.
	if got := f.journal.sequence(); got != "before(2)" {
		t.Fatalf("journal = %s", got)
	}
	xid := f.journal.of("before")[0].Tx.XID
	if got := db.value(t, "SELECT pg_xact_status($1::text::xid8)", strconv.FormatUint(xid, 10)); got != "aborted" {
		t.Errorf("pg_xact_status = %s", got)
	}
	if got := db.value(t, "SELECT count(*) FROM t"); got != "0" {
		t.Errorf("%s rows", got)
	}
}

// Untyped args: PostgreSQL infers a parameter's type from its use, and where
// it cannot (format(), a bare SELECT $1) the args are sent as text — in a
// transaction, autocommit, a generator and an assert alike (the ownership
// queries of docs/format.md pass $1 to format()).
func TestArgsWithoutInferableType(t *testing.T) {
	db := newDB(t)
	db.exec(t, "CREATE TABLE nums (n int); INSERT INTO nums VALUES (1), (2), (3)")
	f := newFixture(t, map[string]string{"db": db.url}, `
  - id: in-tx
    sql: {on: db, capture: true, script: "SELECT format('%I', $1) AS quoted", args: ['${{ params.role }}']}
  - id: autocommit
    sql: {on: db, capture: true, transaction: false, script: "SELECT $1 AS bare", args: ['${{ params.role }}']}
  - id: inferred
    sql: {on: db, capture: true, script: "SELECT count(*) AS c FROM nums WHERE n > $1", args: ['1']}
  - id: gen
    generate: {on: db, query: "SELECT format('SELECT %L', $1)", args: ['${{ params.role }}']}
  - id: check
    assert: {on: db, query: "SELECT format('%s!', $1) AS s", args: ['${{ params.role }}'], that: 'row.s == params.role + "!"'}
`, fixtureOpts{params: map[string]string{"role": "Mixed Case"}})
	if got := f.mustRun("in-tx")["row"].(map[string]any)["quoted"]; got != `"Mixed Case"` {
		t.Errorf("format('%%I', $1) = %v", got)
	}
	if got := f.mustRun("autocommit")["row"].(map[string]any)["bare"]; got != "Mixed Case" {
		t.Errorf("SELECT $1 = %v", got)
	}
	if got := f.mustRun("inferred")["row"].(map[string]any)["c"]; got != int64(2) {
		t.Errorf("n > $1 with $1 inferred as integer: count = %v, want 2", got)
	}
	if got := f.mustRun("gen")["executed"]; got != 1 {
		t.Errorf("generate with an untyped arg executed %v statements", got)
	}
	f.mustRun("check")
}
