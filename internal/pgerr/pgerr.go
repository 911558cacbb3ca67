// Package pgerr is what runbook knows of PostgreSQL's errors: which are
// worth retrying (Transient), and a statement's failure placed in its script
// or list (SQLError), rendered for people (actions emits it as the
// sql.error event).
package pgerr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
)

// Transient reports whether err is worth retrying as it is (docs/format.md, retry):
// a serialization failure (SQLSTATE 40001), a deadlock (40P01), a lock not
// available (55P03, as lock_timeout and NOWAIT give), a connection exception
// (class 08), or a failure of the connection itself: pgconn's "safe to retry"
// errors (nothing was sent), a dial or network error, an EOF from a broken
// connection, a closed connection. Cancellation and timeouts of the context
// are not transient, nor is statement_timeout (57014) or any other SQLSTATE.
//
// A transient error inside a transaction leaves its commit in doubt only
// between BeforeCommit and Committed; the executor settles that before the
// next attempt.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "40001", "40P01", "55P03":
			return true
		}
		return strings.HasPrefix(pgErr.Code, "08")
	}
	if pgconn.SafeToRetry(err) {
		return true
	}
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	return errors.As(err, &netErr) || errors.As(err, &connectErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// SQLError is a statement's failure as PostgreSQL reported it, placed in the
// script (sql) or the generated list (generate). Errors returned by Run wrap
// it (errors.As finds it, and the *pgconn.PgError through it).
type SQLError struct {
	*pgconn.PgError
	// Statement is the failing statement's number, from 1, in the script
	// or in the generated list; Of is how many there are.
	Statement, Of int
	// SQL is the statement's text as sent.
	SQL string
	// ScriptLine and ScriptCol are where the error is in the script (the
	// server's error position; the statement's start when the server gave
	// none), from 1. Zero for generated statements.
	ScriptLine, ScriptCol int
	// StmtLine and StmtCol are the server's error position inside SQL, from
	// 1; zero when the server gave none.
	StmtLine, StmtCol int
	// File is the .sql file of a `file:` script, or the runbook for a script
	// written in it; Line and Col are the error's position in that file.
	// Line is zero when unknown (a script whose ${{ }} changed its text).
	File      string
	Line, Col int
	// Label names what failed when it is not a script's statement:
	// "generated statement", "assert query" …; "" for a script's.
	Label string
}

// Unwrap returns the server's error.
func (e *SQLError) Unwrap() error { return e.PgError }

// Error renders the failure: where, the server's message and SQLSTATE, then
// detail, hint and the statement on lines of their own.
func (e *SQLError) Error() string {
	var b strings.Builder
	switch e.Label {
	case "":
		fmt.Fprintf(&b, "statement %d of %d", e.Statement, e.Of)
		if e.ScriptLine > 0 {
			fmt.Fprintf(&b, " at script line %d col %d", e.ScriptLine, e.ScriptCol)
		}
		switch {
		case e.File != "" && e.Line > 0:
			fmt.Fprintf(&b, " (%s:%d:%d)", e.File, e.Line, e.Col)
		case e.Line > 0 && e.Col > 0:
			fmt.Fprintf(&b, " (runbook line %d col %d)", e.Line, e.Col)
		case e.Line > 0:
			fmt.Fprintf(&b, " (runbook line %d)", e.Line)
		}
	case "generated statement":
		fmt.Fprintf(&b, "generated statement %d of %d (index %d)", e.Statement, e.Of, e.Statement-1)
	default:
		b.WriteString(e.Label)
	}
	if e.Label != "" && e.StmtLine > 0 {
		fmt.Fprintf(&b, " at line %d col %d", e.StmtLine, e.StmtCol)
	}
	sev := e.SeverityUnlocalized
	if sev == "" {
		sev = e.Severity
	}
	if sev == "" {
		sev = "ERROR"
	}
	fmt.Fprintf(&b, ": %s: %s (SQLSTATE %s)", sev, e.Message, e.Code)
	if e.Detail != "" {
		b.WriteString("\n  DETAIL: " + e.Detail)
	}
	if e.Hint != "" {
		b.WriteString("\n  HINT: " + e.Hint)
	}
	if e.Where != "" {
		b.WriteString("\n  CONTEXT: " + strings.ReplaceAll(e.Where, "\n", "\n    "))
	}
	b.WriteString("\n  SQL: " + Clip(e.SQL, 500))
	return b.String()
}

// Clip shortens s to at most n bytes (cut at a character's start) followed
// by "…".
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// PosOf returns the 1-based line and column (in characters) of byte offset off
// in s.
func PosOf(s string, off int) (line, col int) {
	off = min(max(off, 0), len(s))
	line = 1 + strings.Count(s[:off], "\n")
	start := strings.LastIndexByte(s[:off], '\n') + 1
	return line, 1 + utf8.RuneCountInString(s[start:off])
}

// ByteOffset converts PostgreSQL's error position (1-based, in characters) in
// s to a byte offset; -1 when there is none.
func ByteOffset(s string, position int32) int {
	if position <= 0 {
		return -1
	}
	n := int(position) - 1
	for i := range s {
		if n == 0 {
			return i
		}
		n--
	}
	return len(s)
}
