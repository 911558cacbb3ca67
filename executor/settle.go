package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/pgtx"
	"github.com/runbookhq/runbook/schema"
)

// settle resolves what a dead process left undecided (docs/state.md), before
// any step runs: transactions in flight are settled by their servers; a step
// with untracked effects that was interrupted while running runs again only
// when idempotent or named by --rerun.
func (r *runner) settle(ctx context.Context) error {
	for _, s := range r.st.Steps {
		// A step that succeeded is done: what it committed is not asked
		// about again.
		doubt := false
		for _, u := range s.Units {
			doubt = doubt || (u.inDoubt() && s.Status != Succeeded && s.Status != Skipped)
		}
		if s.Status != Running && !doubt {
			continue
		}
		step := r.rb.Step(s.ID)
		if step == nil {
			return exitcode.With(exitcode.Refused, fmt.Errorf("step %s was running when the run stopped but is no longer in the runbook", s.ID))
		}
		if doubt {
			if err := r.settleUnits(ctx, step); err != nil {
				return err
			}
			continue
		}
		if actions.EffectsOf(step.Action) != actions.Untracked || step.Idempotent || slices.Contains(r.o.Rerun, s.ID) {
			continue
		}
		return exitcode.With(exitcode.Refused, fmt.Errorf("step %s (%s) was interrupted while running and is not transactional: runbook cannot know whether it took effect.\nCheck its effect by hand, then either mark it re-runnable with --rerun %s, or set idempotent: true in the runbook if it is safe to run twice",
			s.ID, step.Kind, s.ID))
	}
	return nil
}

// settleUnits settles a step's units in doubt — after a crash, or after a
// failed attempt whose COMMIT got no answer — by asking their servers. A
// transaction that committed makes its unit's data what it recorded; one
// that did not is forgotten. When a server restarted since it acknowledged
// commits not yet known on its disk (docs/state.md, "When the server
// restarts"), runbook cannot tell what survived: it refuses (exit 4), unless
// the operator named the step with --rerun (the unit goes back to what is
// known durable) or --took-effect (everything recorded is taken as done).
func (r *runner) settleUnits(ctx context.Context, step *schema.Step) error {
	s := r.st.step(step.ID)
	if s == nil {
		return nil
	}
	starts := map[string]time.Time{} // per connection: its server's start now
	serverStart := func(conn string) (time.Time, error) {
		if t, ok := starts[conn]; ok {
			return t, nil
		}
		c, err := r.conns.Conn(ctx, conn)
		if err != nil {
			return time.Time{}, err
		}
		t, err := pgtx.ServerStart(ctx, c)
		if err != nil {
			return time.Time{}, fmt.Errorf("step %s: reading the server's start time: %w", step.ID, r.red.Error(err))
		}
		starts[conn] = t
		return t, nil
	}
	describe, _ := step.Action.(actions.Describer)
	rerun, tookEffect := slices.Contains(r.o.Rerun, step.ID), slices.Contains(r.o.TookEffect, step.ID)
	changes := map[string]*UnitState{}
	bounds := map[string]*xidLimit{} // per connection, after a restart
	var doubts []string
	var recordedAt, nowAt time.Time
	for _, name := range sortedKeys(s.Units) {
		u := s.Units[name]
		if !u.inDoubt() {
			continue
		}
		conn, recorded := u.Conn, u.Server
		if u.Tx != nil {
			conn, recorded = u.Tx.Conn, u.Tx.Server
		}
		if conn == "" {
			continue
		}
		now, err := serverStart(conn)
		if err != nil {
			return err
		}
		if recorded.IsZero() || now.Equal(recorded) {
			// The same run of the server: pg_xact_status answers for the
			// transaction in flight, and asynchronous commits are still
			// on their way to its disk.
			if u.Tx == nil {
				continue
			}
			next := *u
			next.Tx = nil
			if rerun {
				// The operator checked and asks for the unit to run again.
				changes[name] = &next
				continue
			}
			c, err := r.conns.Conn(ctx, conn)
			if err != nil {
				return err
			}
			tx := *u.Tx
			committed, err := pgtx.Settle(ctx, c, tx.Tx, settleWait, func() {
				r.emit("", TxTerminated{Step: step.ID, BackendPID: tx.BackendPID})
			})
			switch {
			case errors.Is(err, pgtx.ErrUnknown):
				return exitcode.With(exitcode.Refused, fmt.Errorf("step %s: the server no longer knows whether transaction %d committed (pg_xact_status is NULL); check the step's effect by hand, then resume with --rerun %s if it must run again",
					step.ID, tx.XID, step.ID))
			case err != nil:
				return fmt.Errorf("step %s: settling transaction %d: %w", step.ID, tx.XID, r.red.Error(err))
			case committed:
				changes[name] = u.committed(tx)
				msg := "the step's transaction in flight committed"
				if describe != nil {
					msg = fmt.Sprintf("the step's transaction in flight committed: it goes on after %s", describe.DescribePoint(name, tx.Data))
				}
				r.emit("", StepSettled{Step: step.ID, Unit: name, XID: &tx.XID, Outcome: "committed", Text: msg})
			default:
				changes[name] = &next
				r.emit("", StepSettled{Step: step.ID, Unit: name, XID: &tx.XID, Outcome: "aborted", Text: "the step's last transaction did not commit: it runs again"})
			}
			continue
		}
		// The server restarted: it lost what was not on its disk, and may
		// have given the lost transactions' ids to others. Find exactly
		// which of the unit's commits survived (afterRestart).
		c, err := r.conns.Conn(ctx, conn)
		if err != nil {
			return err
		}
		if bounds[conn] == nil {
			if bounds[conn], err = xidBound(ctx, c); err != nil {
				return fmt.Errorf("step %s: %w", step.ID, r.red.Error(err))
			}
		}
		known, recordedData, ambiguous, err := afterRestart(ctx, c, u, bounds[conn])
		if err != nil {
			return fmt.Errorf("step %s: settling after the server's restart: %w", step.ID, r.red.Error(err))
		}
		if !ambiguous {
			// Every commit in doubt is settled: what survived is the unit's
			// data, on the server's disk now.
			changes[name] = unitAt(known, conn, now)
			r.emit("", StepSettled{Step: step.ID, Unit: name, Outcome: "restart-settled",
				Text: fmt.Sprintf("the server restarted; the step's commits that survived are known exactly: it goes on after %s", point(describe, name, known))})
			continue
		}
		switch {
		case tookEffect:
			changes[name] = unitAt(recordedData, conn, now)
			r.emit("", StepSettled{Step: step.ID, Unit: name, Outcome: "took-effect",
				Text: fmt.Sprintf("the server restarted: %s recorded as done, as --took-effect asks", point(describe, name, recordedData))})
		case rerun:
			changes[name] = unitAt(known, conn, now)
			r.emit("", StepSettled{Step: step.ID, Unit: name, Outcome: "rerun",
				Text: fmt.Sprintf("the server restarted: running the step again after %s, as --rerun asks", point(describe, name, known))})
		default:
			what := fmt.Sprintf("unit %s of step %s took effect beyond what is known durable", name, step.ID)
			if describe != nil {
				what = describe.DescribeDoubt(step.ID, name, known, recordedData)
			}
			doubts = append(doubts, what)
			recordedAt, nowAt = recorded, now
		}
	}
	if len(doubts) > 0 {
		return exitcode.With(exitcode.Refused, fmt.Errorf("step %s: the server restarted since runbook recorded the step's commits (it was started at %s, now at %s). "+
			"A crash loses the commits not yet on the server's disk, and the server may then give their transaction ids to other transactions, so runbook cannot tell whether %s.\n"+
			"Check them, then resume with --took-effect %s if they did, or with --rerun %s to run them again after what is known to have survived",
			step.ID, recordedAt.UTC().Format(time.RFC3339Nano), nowAt.UTC().Format(time.RFC3339Nano), strings.Join(doubts, ", nor whether "), step.ID, step.ID))
	}
	if len(changes) == 0 {
		return nil
	}
	return r.st.update(step.ID, true, nil, changes)
}

// unitAt is a unit whose data, committed on the server that started at
// server, is known on its disk; nil (the unit removed) for no data.
func unitAt(data json.RawMessage, conn string, server time.Time) *UnitState {
	if data == nil {
		return nil
	}
	return &UnitState{Data: data, Conn: conn, Server: server}
}

// point describes how far a unit's data reaches.
func point(d actions.Describer, unit string, data []byte) string {
	if d != nil {
		return d.DescribePoint(unit, data)
	}
	if data == nil {
		return "the start of unit " + unit
	}
	return "unit " + unit + " " + string(data)
}

const settleWait = 10 * time.Second

// xidLimit bounds the transaction ids a restarted server may have handed out
// again: every id at or above Next is one whose commit, if any, the crash
// lost. Exact says Next is the server's next id when its recovery ended: an
// id below it was never given to another transaction, so pg_xact_status
// answers for ours.
type xidLimit struct {
	Next  uint64
	Exact bool
}

// xidBound reads the limit. The checkpoint that ends crash recovery records
// the next transaction id as recovery left it; the statistics are reset by a
// crash, so while the checkpointer counts one checkpoint since, the last one
// is that one. Otherwise the next id now is a limit, not an exact one.
func xidBound(ctx context.Context, c *pgx.Conn) (*xidLimit, error) {
	var next string
	var count int64
	var ckpt, start time.Time
	err := c.QueryRow(ctx, `SELECT next_xid, checkpoint_time, pg_postmaster_start_time(),
		(SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter) FROM pg_control_checkpoint()`).Scan(&next, &ckpt, &start, &count)
	lim := &xidLimit{}
	if err == nil {
		if x, ok := parseFullXID(next); ok && !ckpt.Before(start.Truncate(time.Second)) {
			lim.Next, lim.Exact = x, count == 1
		}
	}
	if lim.Exact {
		return lim, nil
	}
	// The next id now: no id at or above it was ever handed out.
	var cur uint64
	tx, err := c.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx)
	if err := tx.QueryRow(ctx, "SELECT pg_current_xact_id()::text::bigint").Scan(&cur); err != nil {
		return nil, err
	}
	if lim.Next == 0 || cur < lim.Next {
		lim.Next = cur
	}
	return lim, nil
}

// parseFullXID parses pg_control's "epoch:xid" into a 64-bit id.
func parseFullXID(s string) (uint64, bool) {
	e, x, ok := strings.Cut(s, ":")
	if !ok {
		return 0, false
	}
	epoch, err1 := strconv.ParseUint(e, 10, 32)
	xid, err2 := strconv.ParseUint(x, 10, 32)
	return epoch<<32 | xid, err1 == nil && err2 == nil
}

// afterRestart finds which of a unit's commits in doubt survived a crash of
// the server: its asynchronous commits since the last durable one and its
// transaction in flight, in commit order. A crash loses a suffix of them. An
// id at or above the limit did not survive; below an exact limit,
// pg_xact_status answers. It returns the unit's data as of the last commit
// known to have survived (nil: none), the data of the last one that may
// have, and whether any remains undecided (then known is the last point
// decided).
func afterRestart(ctx context.Context, c *pgx.Conn, u *UnitState, lim *xidLimit) (known, last json.RawMessage, ambiguous bool, err error) {
	known = u.Data
	if u.AtRisk {
		known = u.Durable
	}
	var doubt []AsyncCommit
	if u.AtRisk {
		doubt = append(doubt, u.Async...)
		if u.AsyncUncounted {
			// Too many to keep: what survived cannot be told apart.
			doubt = []AsyncCommit{{Data: u.Data}}
		}
	}
	if u.Tx != nil {
		doubt = append(doubt, AsyncCommit{XID: u.Tx.XID, Data: u.Tx.Data})
	}
	const (
		survived = iota
		lost
		unknown
	)
	class := make([]int, len(doubt))
	for i, d := range doubt {
		switch {
		case d.XID == 0:
			class[i] = unknown // work in autocommit: no id to ask about
		case d.XID >= lim.Next:
			class[i] = lost
		default:
			status, err := pgtx.Status(ctx, c, d.XID)
			var pgErr *pgconn.PgError
			switch {
			case errors.As(err, &pgErr) && pgErr.Code == "22023":
				class[i] = lost // in the future: never seen by the restarted server
			case err != nil:
				return nil, nil, false, err
			case status == nil:
				class[i] = unknown
			case *status == "committed" && lim.Exact:
				class[i] = survived
			case *status == "committed":
				class[i] = unknown // ours, or another's that got its id
			default:
				class[i] = lost
			}
		}
	}
	// Survivors are a prefix: a commit after one that survived survived too
	// (a crash loses the end of the log), one after a lost one is lost.
	lastSurvived, firstLost := -1, len(doubt)
	for i, k := range class {
		if k == survived {
			lastSurvived = i
		}
		if k == lost && i < firstLost {
			firstLost = i
		}
	}
	if lastSurvived >= firstLost {
		// Not a prefix: the ids say something a crash cannot do.
		return known, u.Data, true, nil
	}
	if lastSurvived >= 0 {
		known = doubt[lastSurvived].Data
	}
	if firstLost == lastSurvived+1 {
		return known, known, false, nil
	}
	return known, doubt[firstLost-1].Data, true, nil
}
