// Package pgtx identifies the transactions whose commits runbook journals,
// and settles them after a crash: it asks the server whether a recorded
// transaction committed (pg_xact_status) and ends the transaction a dead
// client left open, and only that one. Every action whose effects are
// journaled transactions (sql, generate, copy …) records a Tx before it sends
// COMMIT; the executor settles whatever a dead run left in doubt with Settle.
package pgtx

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Tx identifies a transaction about to commit, as the journal records it.
type Tx struct {
	// Conn is the runbook connection's name.
	Conn string `json:"conn"`
	// XID is pg_current_xact_id() of the transaction.
	XID uint64 `json:"xid"`
	// BackendPID and BackendStart identify the server process, so that a
	// resume can end a transaction the dead client left open, and only that
	// one.
	BackendPID   uint32    `json:"backend_pid"`
	BackendStart time.Time `json:"backend_start"`
	// Server is the server's start time (pg_postmaster_start_time): a
	// transaction id is only known to mean this transaction on the same
	// run of the server (after a crash the server may hand out again the ids
	// of transactions whose records it lost).
	Server time.Time `json:"server_start,omitzero"`
	// Async is set when the COMMIT is asynchronous (synchronous_commit off
	// for this transaction): acknowledged before it is on the server's disk.
	Async bool `json:"async,omitempty"`
}

// Backend identifies a connection's server process and the run of the server
// it belongs to.
type Backend struct {
	PID    uint32
	Start  time.Time // the backend's start
	Server time.Time // the server's start (pg_postmaster_start_time)
}

// Tx returns the record of a transaction of this backend.
func (b Backend) Tx(conn string, xid uint64) Tx {
	return Tx{Conn: conn, XID: xid, BackendPID: b.PID, BackendStart: b.Start, Server: b.Server}
}

// backendSQL is the backend's identity: pid and start time, and the server's
// start time (UTC, microseconds, independent of DateStyle and TimeZone).
const backendSQL = `SELECT pg_backend_pid(), (SELECT to_char(backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') FROM pg_stat_activity WHERE pid = pg_backend_pid()), to_char(pg_postmaster_start_time() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`

// identityKey keeps a connection's Backend in its CustomData.
const identityKey = "runbook.backend"

// Identify returns the identity of a connection's backend. It does not
// change while the connection lives: the server is asked once per connection
// and the answer kept with it (pgconn's CustomData), so that a transaction's
// id, asked before every COMMIT, comes from SELECT pg_current_xact_id() alone.
// A query of pg_stat_activity, a view of several joins, costs the server
// about 0.3 ms to plan and run: on a run of one-statement sql steps it was a
// third of each step's time (docs/performance.md).
func Identify(ctx context.Context, pc *pgconn.PgConn) (Backend, error) {
	if id, ok := pc.CustomData()[identityKey].(Backend); ok && id.PID == pc.PID() {
		return id, nil
	}
	res := pc.ExecParams(ctx, backendSQL, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return Backend{}, res.Err
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 3 {
		return Backend{}, errors.New("cannot read the backend's identity")
	}
	row := res.Rows[0]
	pid, err := strconv.ParseUint(string(row[0]), 10, 32)
	if err != nil {
		return Backend{}, fmt.Errorf("backend pid %q: %v", row[0], err)
	}
	id := Backend{PID: uint32(pid)}
	if id.Start, err = ParseTime("backend start", row[1]); err != nil {
		return Backend{}, err
	}
	if id.Server, err = ParseTime("server start", row[2]); err != nil {
		return Backend{}, err
	}
	pc.CustomData()[identityKey] = id
	return id, nil
}

// ParseTime parses a timestamp in backendSQL's format.
func ParseTime(what string, b []byte) (time.Time, error) {
	if b == nil {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q: %v", what, b, err)
	}
	return t, nil
}

// Status asks the server whether a transaction committed: "committed",
// "aborted" or "in progress"; nil when it is too old for the server to know.
func Status(ctx context.Context, q *pgx.Conn, xid uint64) (*string, error) {
	var status *string
	err := q.QueryRow(ctx, `SELECT pg_xact_status($1::text::xid8)`, strconv.FormatUint(xid, 10)).Scan(&status)
	return status, err
}

// ErrUnknown is returned by Settle when the server no longer knows whether
// the transaction committed.
var ErrUnknown = errors.New("the server no longer knows whether the transaction committed (pg_xact_status is NULL)")

// Settle asks the server whether tx committed. A transaction still in
// progress (its client died) is ended first: after wait, its backend is
// terminated — only if pid and start time still match the record — and
// onTerminate is called. It returns ErrUnknown when the server cannot tell.
func Settle(ctx context.Context, q *pgx.Conn, tx Tx, wait time.Duration, onTerminate func()) (bool, error) {
	deadline := time.Now().Add(wait)
	for {
		status, err := Status(ctx, q, tx.XID)
		if err != nil {
			return false, err
		}
		switch {
		case status == nil:
			return false, ErrUnknown
		case *status == "committed":
			return true, nil
		case *status == "aborted":
			return false, nil
		}
		// in progress: the dead client's backend still holds it.
		if time.Now().After(deadline) {
			if err := Terminate(ctx, q, tx); err != nil {
				return false, fmt.Errorf("ending the dead run's transaction: %w", err)
			}
			if onTerminate != nil {
				onTerminate()
			}
			deadline = time.Now().Add(wait)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// Terminate ends the backend that ran tx, if it still runs: pid and start
// time must both match the record.
func Terminate(ctx context.Context, q *pgx.Conn, tx Tx) error {
	var terminated bool
	err := q.QueryRow(ctx, `SELECT coalesce((SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE pid = $1 AND date_trunc('milliseconds', backend_start) = date_trunc('milliseconds', $2::timestamptz)), false)`,
		int32(tx.BackendPID), tx.BackendStart).Scan(&terminated)
	return err
}

// ServerStart returns the server's start time (pg_postmaster_start_time).
func ServerStart(ctx context.Context, q *pgx.Conn) (time.Time, error) {
	var t time.Time
	err := q.QueryRow(ctx, "SELECT pg_postmaster_start_time()").Scan(&t)
	return t, err
}
