package actions

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/runbookhq/runbook/internal/event"
	"github.com/runbookhq/runbook/internal/pgerr"
)

// The events of the sql action, and those the PostgreSQL machinery shared
// with generate and assert emits (sql.error, sql.notice).

func init() {
	event.MustRegister(SQLStatement{}, SQLFailure{}, SQLNotice{}, SQLEmpty{})
}

// SQLStatement: a statement of a sql step ran.
type SQLStatement struct {
	// Statement is its number in the script, from 1.
	Statement int           `json:"statement"`
	SQL       string        `json:"sql"`
	Rows      int64         `json:"rows"`
	Duration  time.Duration `json:"duration"`
}

// Name implements event.Event.
func (SQLStatement) Name() string { return "sql.statement" }

// Message implements event.Event.
func (SQLStatement) Message() string { return "statement" }

// Detail implements event.Detailer.
func (e SQLStatement) Detail() string {
	return fmt.Sprintf("SQL %d (%s, %s):\n%s", e.Statement, rowCount(e.Rows), e.Duration.Round(10*time.Microsecond), indentSQL(e.SQL))
}

// SQLFailure is the sql.error event: a statement (or a COMMIT) failed.
type SQLFailure struct {
	// Statement is the failing statement's number (0 for a COMMIT).
	Statement int    `json:"statement,omitempty"`
	SQLSTATE  string `json:"sqlstate"`
	Severity  string `json:"severity"`
	Details   string `json:"detail"`
	Hint      string `json:"hint"`
	// Position is the server's error position in SQL (1-based characters).
	Position int32  `json:"position,omitempty"`
	SQL      string `json:"sql"`
	// ScriptLine and ScriptCol place the error in a sql step's script.
	ScriptLine int `json:"script_line,omitempty"`
	ScriptCol  int `json:"script_col,omitempty"`
	// Line, File and Col place it in the runbook or its .sql file.
	Line int    `json:"line,omitempty"`
	File string `json:"file,omitempty"`
	Col  int    `json:"col,omitempty"`
	Text string `json:"message"`
}

// Name implements event.Event.
func (SQLFailure) Name() string { return "sql.error" }

// Message implements event.Event.
func (e SQLFailure) Message() string { return e.Text }

// Level implements event.Leveler.
func (SQLFailure) Level() event.Level { return event.Error }

// Problem implements event.Problem.
func (e SQLFailure) Problem() (event.Issue, bool) {
	sev := e.Severity
	if sev == "" {
		sev = "ERROR"
	}
	is := event.Issue{Level: event.Error, Message: sev + ": " + e.Text, SQLSTATE: e.SQLSTATE, Detail: e.Details, Hint: e.Hint}
	switch {
	case e.Line > 0 && e.File != "":
		is.Position = fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Col)
	case e.ScriptLine > 0:
		is.Position = fmt.Sprintf("script line %d col %d", e.ScriptLine, e.ScriptCol)
	}
	return is, true
}

// emitSQLError emits the sql.error event of a failed statement.
func emitSQLError(events event.Sink, e *pgerr.SQLError) { events.Emit(sqlFailure(e)) }

// emitCommitError emits the sql.error event of a failed COMMIT (a deferred
// constraint, a serialization failure); nothing when err is not the
// server's.
func emitCommitError(events event.Sink, err error) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		events.Emit(SQLFailure{SQLSTATE: pgErr.Code, Severity: pgErr.Severity, Details: pgErr.Detail, Hint: pgErr.Hint, SQL: "COMMIT", Text: pgErr.Message})
	}
}

// Notice is the sql.notice event of a server notice (RAISE NOTICE, WARNING,
// the notices of DDL) on connection conn. The executor emits it for every
// notice its sessions receive (internal/pghook); notices that arrive inside
// a pipeline (every statement of sql and generate) are delivered too.
func Notice(conn string, n *pgconn.Notice) SQLNotice {
	sev := n.SeverityUnlocalized
	if sev == "" {
		sev = n.Severity
	}
	return SQLNotice{Conn: conn, Severity: sev, SQLSTATE: n.Code, Details: n.Detail, Hint: n.Hint, Where: n.Where, Text: n.Message}
}

// sqlFailure is the event of a positioned statement failure.
func sqlFailure(e *pgerr.SQLError) SQLFailure {
	ev := SQLFailure{Statement: e.Statement, SQLSTATE: e.Code, Severity: e.Severity, Details: e.Detail, Hint: e.Hint,
		Position: e.Position, SQL: e.SQL, ScriptLine: e.ScriptLine, ScriptCol: e.ScriptCol, Text: e.Message}
	if e.ScriptLine <= 0 {
		ev.ScriptCol = 0
	}
	if e.Line > 0 {
		ev.Line, ev.File, ev.Col = e.Line, e.File, e.Col
	}
	return ev
}

// SQLNotice: the server sent a notice (RAISE NOTICE, a WARNING, the notices
// of DDL) on a connection.
type SQLNotice struct {
	Conn     string `json:"conn"`
	Severity string `json:"severity"`
	SQLSTATE string `json:"sqlstate"`
	Details  string `json:"detail,omitempty"`
	Hint     string `json:"hint,omitempty"`
	Where    string `json:"where,omitempty"`
	Text     string `json:"message"`
}

// Name implements event.Event.
func (SQLNotice) Name() string { return "sql.notice" }

// Message implements event.Event.
func (e SQLNotice) Message() string { return e.Text }

// Level implements event.Leveler: WARNING notices are warnings.
func (e SQLNotice) Level() event.Level {
	if e.Severity == "WARNING" {
		return event.Warn
	}
	return event.Info
}

// Problem implements event.Problem: a WARNING is shown, other notices are
// details.
func (e SQLNotice) Problem() (event.Issue, bool) {
	return event.Issue{Level: event.Warn, Message: e.Severity + ": " + e.Text, SQLSTATE: e.SQLSTATE, Detail: e.Details, Hint: e.Hint},
		e.Severity == "WARNING"
}

// Detail implements event.Detailer.
func (e SQLNotice) Detail() string {
	s := e.Severity + ": " + e.Text
	if e.Details != "" {
		s += "\nDETAIL: " + e.Details
	}
	if e.Hint != "" {
		s += "\nHINT: " + e.Hint
	}
	return s
}

// SQLEmpty: a sql step's script has no statements.
type SQLEmpty struct{}

// Name implements event.Event.
func (SQLEmpty) Name() string { return "sql.empty" }

// Message implements event.Event.
func (SQLEmpty) Message() string { return "the script has no statements" }

// Level implements event.Leveler.
func (SQLEmpty) Level() event.Level { return event.Warn }

// Problem implements event.Problem.
func (e SQLEmpty) Problem() (event.Issue, bool) {
	return event.Issue{Level: event.Warn, Message: e.Message()}, true
}

func rowCount(n int64) string {
	if n == 1 {
		return "1 row"
	}
	return fmt.Sprintf("%d rows", n)
}

// indentSQL indents a statement's lines under the line that introduces it.
func indentSQL(sql string) string {
	return "  " + strings.ReplaceAll(strings.TrimSpace(sql), "\n", "\n  ")
}
