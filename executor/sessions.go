package executor

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/runbookhq/runbook/internal/pgtx"
)

// A client killed in the middle of a statement does not stop it: the server
// runs it to its end — an index build, an ALTER TABLE, a COPY, holding its
// locks and a core — and only then, finding the client gone, rolls it back.
// The resume's statements would wait on those locks all that time. So every
// session a run opens is recorded in the state before it is used, and an
// invocation's first connection to a connection's server ends those the last
// invocation left running there (docs/state.md).

// Session identifies a server process one of the run's sessions ran in.
type Session struct {
	PID   uint32    `json:"pid"`
	Start time.Time `json:"backend_start"`
}

// sessionsRecord replaces a connection's list of sessions.
type sessionsRecord struct {
	Conn string    `json:"conn"`
	List []Session `json:"list"`
}

// sessions are the sessions of this invocation and those the last one left.
type sessions struct {
	mu   sync.Mutex
	last map[string][]Session // as the state had them when this invocation began
	mine map[string][]Session // opened by this invocation
}

func newSessions(st *State) *sessions {
	s := &sessions{last: map[string][]Session{}, mine: map[string][]Session{}}
	for name, l := range st.Sessions {
		s.last[name] = append([]Session(nil), l...)
	}
	return s
}

// opened records a session of connection name before it is used; the
// invocation's first on that connection ends the last invocation's sessions
// there first.
func (r *runner) opened(ctx context.Context, name string, conn *pgx.Conn) error {
	id, err := pgtx.Identify(ctx, conn.PgConn())
	if err != nil {
		return fmt.Errorf("connection %s: %w", name, r.red.Error(err))
	}
	s := r.sessions
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.mine[name]; !ok {
		r.endOrphans(ctx, name, conn, s.last[name])
	}
	s.mine[name] = append(s.mine[name], Session{PID: id.PID, Start: id.Start})
	return r.st.write(&record{Sessions: &sessionsRecord{Conn: name, List: s.mine[name]}}, true)
}

// orphanWait bounds the wait for terminated sessions to exit.
const orphanWait = time.Minute

// endOrphans terminates the sessions in last that still run — the pid and
// the start time must both match, so no other session is touched — and
// waits until they are gone. It does not fail the run: sessions it cannot
// end are said (another role's, after the connection's user changed: their
// start time is hidden, or the signal refused), and the resume goes on as it
// would have without this.
func (r *runner) endOrphans(ctx context.Context, name string, conn *pgx.Conn, last []Session) {
	if len(last) == 0 {
		return
	}
	pids, starts := make([]int32, len(last)), make([]time.Time, len(last))
	for i, o := range last {
		pids[i], starts[i] = int32(o.PID), o.Start
	}
	// A row per recorded session still there: signalled (true), or its
	// start time hidden from this role (NULL: it cannot be told from another
	// session that got the pid since). Signalled again every 100 ms until
	// none is left: harmless to repeat, and matched every time.
	const end = `SELECT CASE WHEN a.backend_start IS NULL THEN NULL ELSE pg_terminate_backend(a.pid) END
		  FROM unnest($1::int[], $2::timestamptz[]) o(pid, start)
		  JOIN pg_stat_activity a ON a.pid = o.pid
		 WHERE a.pid <> pg_backend_pid()
		   AND (a.backend_start IS NULL OR date_trunc('milliseconds', a.backend_start) = date_trunc('milliseconds', o.start))`
	deadline := time.Now().Add(orphanWait)
	ended := -1
	for {
		rows, err := conn.Query(ctx, end, pids, starts)
		if err != nil {
			r.emit("", SessionsEnded{Conn: name, Sessions: max(ended, 0), Error: r.red.Error(err).Error()})
			return
		}
		found, err := pgx.CollectRows(rows, pgx.RowTo[*bool])
		if err != nil {
			r.emit("", SessionsEnded{Conn: name, Sessions: max(ended, 0), Error: r.red.Error(err).Error()})
			return
		}
		left, hidden := 0, 0
		for _, f := range found {
			if f == nil {
				hidden++
			} else {
				left++
			}
		}
		if ended < 0 {
			ended = left
		}
		switch {
		case hidden > 0 && left == 0:
			r.emit("", SessionsEnded{Conn: name, Sessions: ended,
				Error: fmt.Sprintf("%d session(s) that may be the last invocation's are not visible to this role (pg_stat_activity hides their start): not ended", hidden)})
			return
		case left == 0:
			if ended > 0 {
				r.emit("", SessionsEnded{Conn: name, Sessions: ended})
			}
			return
		case time.Now().After(deadline):
			r.emit("", SessionsEnded{Conn: name, Sessions: ended,
				Error: fmt.Sprintf("%d of them still ran %s after pg_terminate_backend", left, orphanWait)})
			return
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return
		}
	}
}
