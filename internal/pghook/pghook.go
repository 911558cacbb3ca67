// Package pghook holds the hooks runbook installs on every PostgreSQL
// connection it opens: server notices go to the run's events, and a done context
// cancels the running statement on the server instead of closing the session.
package pghook

import (
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

// Install sets cfg's OnNotice to pass every server notice (RAISE NOTICE,
// WARNING, the notices of DDL) to onNotice, and its context watcher to
// CancelOnContext. Notices that arrive inside a pipeline (every statement of
// sql and generate) reach onNotice too; the executor emits each as an
// sql.notice event of the connection (actions.Notice).
func Install(cfg *pgconn.Config, onNotice func(*pgconn.Notice)) {
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { onNotice(n) }
	cfg.BuildContextWatcherHandler = CancelOnContext
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
