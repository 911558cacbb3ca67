package pgerr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/runbookhq/runbook/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestTransient(t *testing.T) {
	pg := func(code string) error { return &pgconn.PgError{Code: code, Message: "m"} }
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"serialization failure", pg("40001"), true},
		{"deadlock", pg("40P01"), true},
		{"lock not available", pg("55P03"), true},
		{"connection exception", pg("08006"), true},
		{"connection failure class 08", pg("08001"), true},
		{"wrapped", fmt.Errorf("step: %w", &SQLError{PgError: pg("40001").(*pgconn.PgError)}), true},
		{"unique violation", pg("23505"), false},
		{"statement timeout", pg("57014"), false},
		{"admin shutdown", pg("57P01"), false},
		{"syntax", pg("42601"), false},
		{"eof", fmt.Errorf("reading: %w", io.EOF), true},
		{"unexpected eof", io.ErrUnexpectedEOF, true},
		{"net error", &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, true},
		{"closed", net.ErrClosed, true},
		{"cancelled", context.Canceled, false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{"cancelled with eof", fmt.Errorf("%w: %w", context.Canceled, io.EOF), false},
		{"plain", errors.New("boom"), false},
		{"nil", nil, false},
	}
	for _, c := range cases {
		if got := Transient(c.err); got != c.want {
			t.Errorf("%s: Transient(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}

	// A real connection failure: the server ends the session.
	srv := pgtest.Shared(t)
	db := pgtest.DatabaseName(t, srv.NewDatabase(t))
	conn := srv.Connect(t, db)
	srv.Exec(t, db, fmt.Sprintf("SELECT pg_terminate_backend(%d)", conn.PgConn().PID()))
	time.Sleep(100 * time.Millisecond)
	_, err := conn.Exec(context.Background(), "SELECT 1")
	if err == nil {
		t.Fatal("query on a terminated session succeeded")
	}
	_, err = conn.Exec(context.Background(), "SELECT 1")
	if !Transient(err) {
		t.Errorf("using a broken connection: Transient(%v) = false", err)
	}
}

func TestSQLErrorRendering(t *testing.T) {
	pg := &pgconn.PgError{Severity: "ERROR", Code: "42601", Message: `syntax error at or near "SELEC"`, Hint: "h", Where: "a\nb"}
	for _, c := range []struct {
		name string
		e    *SQLError
		want string
	}{
		{"script statement in a file", &SQLError{PgError: pg, Statement: 2, Of: 3, SQL: "SELEC 1", ScriptLine: 4, ScriptCol: 1, File: "m.sql", Line: 4, Col: 1},
			"statement 2 of 3 at script line 4 col 1 (m.sql:4:1): ERROR: syntax error at or near \"SELEC\" (SQLSTATE 42601)\n  HINT: h\n  CONTEXT: a\n    b\n  SQL: SELEC 1"},
		{"script statement in the runbook, line only", &SQLError{PgError: pg, Statement: 1, Of: 1, SQL: "SELEC 1", ScriptLine: 1, ScriptCol: 1, Line: 7},
			"statement 1 of 1 at script line 1 col 1 (runbook line 7): ERROR: syntax error at or near \"SELEC\" (SQLSTATE 42601)\n  HINT: h\n  CONTEXT: a\n    b\n  SQL: SELEC 1"},
		{"generated statement", &SQLError{PgError: pg, Statement: 5, Of: 9, SQL: "SELEC 1", StmtLine: 1, StmtCol: 1, Label: "generated statement"},
			"generated statement 5 of 9 (index 4) at line 1 col 1: ERROR: syntax error at or near \"SELEC\" (SQLSTATE 42601)\n  HINT: h\n  CONTEXT: a\n    b\n  SQL: SELEC 1"},
		{"labelled query", &SQLError{PgError: pg, Statement: 1, Of: 1, SQL: "SELEC 1", Label: "assert query"},
			"assert query: ERROR: syntax error at or near \"SELEC\" (SQLSTATE 42601)\n  HINT: h\n  CONTEXT: a\n    b\n  SQL: SELEC 1"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
		if !errors.Is(fmt.Errorf("step: %w", c.e), error(pg)) {
			t.Errorf("%s: the server's error is not found through the SQLError", c.name)
		}
	}
}

func TestPositions(t *testing.T) {
	const s = "SELECT 1;\n  SELECT é + x"
	for _, c := range []struct {
		position  int32
		off       int
		line, col int
	}{
		{0, -1, 0, 0},
		{1, 0, 1, 1},
		{13, 12, 2, 3},
		{22, 22, 2, 12}, // the +, after the two-byte é
		{99, len(s), 2, 15},
	} {
		off := ByteOffset(s, c.position)
		if off != c.off {
			t.Errorf("ByteOffset(%d) = %d, want %d", c.position, off, c.off)
		}
		if off < 0 {
			continue
		}
		if l, col := PosOf(s, off); l != c.line || col != c.col {
			t.Errorf("PosOf(%d) = %d:%d, want %d:%d", off, l, col, c.line, c.col)
		}
	}
	if got := Clip("aé", 2); got != "a…" {
		t.Errorf("Clip cut inside a character: %q", got)
	}
	if got := Clip("abc", 3); got != "abc" {
		t.Errorf("Clip(abc, 3) = %q", got)
	}
}
