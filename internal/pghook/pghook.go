// Package pghook holds the hooks runbook installs on every PostgreSQL
// connection it opens: server notices go to the log, and a done context
// cancels the running statement on the server instead of closing the session.
package pghook

import (
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/rs/zerolog"
)

// Install sets cfg's OnNotice to LogNotice with log, and its context watcher
// to CancelOnContext.
func Install(cfg *pgconn.Config, log zerolog.Logger) {
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { LogNotice(log, n) }
	cfg.BuildContextWatcherHandler = CancelOnContext
}

// LogNotice logs a server notice (RAISE NOTICE, WARNING, the notices of DDL)
// as an "sql.notice" event with its severity, SQLSTATE, message and, when the
// server sent them, detail and hint. WARNING notices are logged at warn level,
// the others at info.
//
// pgx delivers notices to the connection's ConnConfig.OnNotice, where
// Install puts LogNotice with the logger of the connection (the executor's
// carries the connection's name as "conn"), not of a step. Notices that
// arrive inside a pipeline (every statement of sql and generate) reach
// OnNotice too.
func LogNotice(log zerolog.Logger, n *pgconn.Notice) {
	sev := n.SeverityUnlocalized
	if sev == "" {
		sev = n.Severity
	}
	ev := log.Info()
	if sev == "WARNING" {
		ev = log.Warn()
	}
	ev = ev.Str("event", "sql.notice").Str("severity", sev).Str("sqlstate", n.Code)
	if n.Detail != "" {
		ev = ev.Str("detail", n.Detail)
	}
	if n.Hint != "" {
		ev = ev.Str("hint", n.Hint)
	}
	if n.Where != "" {
		ev = ev.Str("where", n.Where)
	}
	ev.Msg(n.Message)
}

// CancelOnContext is a pgconn context watcher that, when the context of a
// running query is done (Ctrl-C, a step timeout), sends PostgreSQL a cancel
// request, so that the server stops the statement and the session survives,
// with its advisory lock and settings; only when the server has not answered
// within 5 seconds is the socket closed. Install makes it the connection's
// BuildContextWatcherHandler.
//
// pgx's default (pgconn.DeadlineContextWatcherHandler) closes the connection
// instead: pgx then sends a cancel request and Terminate on its way out, so
// the server stops the statement too, but the session is lost (and with it a
// `lock:` advisory lock held on it), and the next step must reconnect.
func CancelOnContext(pc *pgconn.PgConn) ctxwatch.Handler {
	return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 5 * time.Second}
}
