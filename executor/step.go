package executor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/pgerr"
	"github.com/runbookhq/runbook/schema"
)

// errApprovalRequired stops a run at a confirm step nobody could approve.
var errApprovalRequired = errors.New("approval required")

// runStep runs one step: its condition, its attempts with retry and timeout,
// and its durable record.
func (r *runner) runStep(ctx context.Context, step *schema.Step) error {
	log := r.log.With().Str("step", step.ID).Logger()
	if step.When != nil {
		ok, err := step.When.Bool(r.env)
		if err != nil {
			err = fmt.Errorf("step %s: when: %w", step.ID, err)
			r.recordEnd(step, Failed, nil, err)
			return err
		}
		if !ok {
			log.Info().Str("event", "step.skip").Str("when", step.When.Src).Msgf("skipped: %s is false", step.When.Src)
			return r.recordEnd(step, Skipped, nil, nil)
		}
	}
	runner, ok := step.Action.(actions.Runner)
	if !ok {
		return fmt.Errorf("step %s: action %s cannot run", step.ID, step.Kind)
	}
	// Non-transactional work must be known to have started before it starts:
	// resume then knows it may have happened. Transactional work needs no
	// fsync here: its transaction id is made durable before COMMIT, and that
	// fsync carries this record too.
	//
	// Other steps' start and attempt count are kept in memory only: the
	// step's next record (a transaction id before COMMIT, the frozen list,
	// the step's end) replaces the whole step's record and carries them. A
	// process that dies before that left nothing of the step done, and
	// resume runs it as it would a step that never started.
	now := time.Now().UTC()
	record := func(durable bool, change func(s *StepState)) error {
		if untracked(step) {
			return r.st.update(step.ID, durable, change)
		}
		r.st.change(step.ID, change)
		return nil
	}
	if err := record(true, func(s *StepState) {
		s.Status, s.Started, s.Ended, s.Error, s.Digest = Running, &now, nil, "", step.Digest
	}); err != nil {
		return err
	}
	log.Info().Str("event", "step.start").Str("kind", step.Kind).Str("title", step.Title()).Msg(step.Title())

	attempts, delay, backoff, maxDelay, on := 1, time.Second, 1.0, time.Duration(0), "transient"
	if rt := step.Retry; rt != nil {
		attempts = rt.Attempts
		if rt.Delay != nil {
			delay = rt.Delay.D()
		}
		if rt.Backoff >= 1 {
			backoff = rt.Backoff
		}
		if rt.MaxDelay != nil {
			maxDelay = rt.MaxDelay.D()
		}
		if rt.On != "" {
			on = rt.On
		}
	}
	var out actions.Outputs
	var err error
	for attempt := 1; attempt <= attempts; attempt++ {
		record(false, func(s *StepState) { s.Attempts++ })
		out, err = r.attempt(ctx, step, runner, attempt)
		if err == nil || errors.Is(err, errApprovalRequired) || ctx.Err() != nil {
			break
		}
		if attempt == attempts || !retryable(step, on, err) {
			break
		}
		// A failed attempt may leave a commit in doubt (no answer to COMMIT):
		// settle it before trying again, so nothing runs twice.
		done, serr := r.settlePending(ctx, step)
		if serr != nil {
			err = serr
			break
		}
		if done {
			return nil // the attempt's commit went through: the step is done
		}
		log.Warn().Str("event", "step.retry").Int("attempt", attempt).Dur("delay", delay).Str("error", r.red.String(err.Error())).
			Msgf("attempt %d of %d failed; retrying in %s", attempt, attempts, delay)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
		}
		delay = time.Duration(float64(delay) * backoff)
		if maxDelay > 0 && delay > maxDelay {
			delay = maxDelay
		}
	}
	switch {
	case errors.Is(err, errApprovalRequired):
		r.st.update(step.ID, true, func(s *StepState) { s.Status, s.Attempts = Pending, 0 })
		return err
	case err != nil:
		err = fmt.Errorf("step %s failed: %w", step.ID, r.red.Error(err))
		r.recordEnd(step, Failed, out, err)
		return err
	}
	return r.recordEnd(step, Succeeded, out, nil)
}

// retryable reports whether a failed attempt may be retried: sql and generate
// only on transient errors unless the step says on: any.
func retryable(step *schema.Step, on string, err error) bool {
	if on == "any" {
		return true
	}
	switch step.Kind {
	case "sql", "generate":
		return pgerr.Transient(err)
	}
	return true
}

// attempt runs one attempt with the step's timeout.
func (r *runner) attempt(ctx context.Context, step *schema.Step, runner actions.Runner, n int) (actions.Outputs, error) {
	if step.Timeout != nil && step.Timeout.D() > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, step.Timeout.D(), fmt.Errorf("timeout of %s", step.Timeout.D()))
		defer cancel()
	}
	rc := &actions.Context{Step: step, Env: r.env, Log: r.log.With().Str("step", step.ID).Logger(),
		Conns: r.conns, Redact: r.red, Dir: r.dir, File: r.rb.File, Journal: &journal{r: r, step: step.ID},
		Approver: r, Attempt: n}
	if r.o.Terminal {
		rc.Terminal = r.o.Console
	}
	out, err := runner.Run(ctx, rc)
	if err != nil && ctx.Err() != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			err = fmt.Errorf("%w (%v)", err, cause)
		}
	}
	return out, err
}

// recordEnd makes a step's end durable and logs it.
func (r *runner) recordEnd(step *schema.Step, status string, out actions.Outputs, stepErr error) error {
	now := time.Now().UTC()
	var started time.Time
	// The end of a step whose effects are journaled transactions (or that has
	// none) need not be fsynced: if it is lost, resume settles the recorded
	// transaction with the server and reaches the same state. The next
	// durable record carries it anyway.
	durable := untracked(step) || status == Failed
	err := r.st.update(step.ID, durable, func(s *StepState) {
		s.Status, s.Ended, s.Outputs, s.Digest = status, &now, out, step.Digest
		if status == Succeeded || status == Skipped {
			s.Pending = nil
		}
		// A failed step keeps its pending transaction: the next attempt or
		// resume settles it with the server first.
		if s.Started != nil {
			started = *s.Started
		}
		if stepErr != nil {
			s.Error = r.red.String(stepErr.Error())
		}
	})
	r.env.Steps[step.ID] = schema.StepResult{Status: status, Outputs: out}
	crashPoint("step-end", step.ID)
	if status == Skipped {
		return err
	}
	ev := r.log.Info()
	if stepErr != nil {
		ev = r.log.Error().Str("error", r.red.String(stepErr.Error()))
	}
	ev.Str("event", "step.end").Str("step", step.ID).Str("status", status).Dur("duration", now.Sub(started)).
		Interface("outputs", summarize(out)).Msgf("%s %s", step.ID, status)
	return err
}

// summarize keeps log lines small: long lists are counted, not copied.
func summarize(out actions.Outputs) map[string]any {
	if out == nil {
		return nil
	}
	m := map[string]any{}
	for k, v := range out {
		switch x := v.(type) {
		case []map[string]any:
			if len(x) > 20 {
				m[k] = fmt.Sprintf("%d rows", len(x))
				continue
			}
		case []string:
			if len(x) > 20 {
				m[k] = fmt.Sprintf("%d items", len(x))
				continue
			}
		}
		m[k] = v
	}
	return m
}

// Approve implements actions.Approver: --yes, --approve ID, an approval kept
// in the state, or the operator typing yes on a terminal.
func (r *runner) Approve(ctx context.Context, stepID, message string) (actions.Approval, error) {
	now := time.Now().UTC()
	var a actions.Approval
	switch {
	case slices.Contains(r.o.Approve, stepID):
		a = actions.Approval{By: r.o.Operator, How: "--approve " + stepID, At: now}
	case r.o.Yes:
		a = actions.Approval{By: r.o.Operator, How: "--yes", At: now}
	case r.o.Prompt != nil:
		answer, err := r.o.Prompt(fmt.Sprintf("\n%s\nType yes to continue: ", message))
		if err != nil {
			return a, err
		}
		if strings.TrimSpace(answer) != "yes" {
			return a, exitcode.With(exitcode.StepFailed, fmt.Errorf("not approved (answer %q)", strings.TrimSpace(answer)))
		}
		a = actions.Approval{By: r.o.Operator, How: "terminal", At: now}
	default:
		return a, errApprovalRequired
	}
	return a, r.st.write(&record{Approve: &approveRecord{Step: stepID, Approve: a}}, true)
}

// journal implements actions.Journal on the state.
type journal struct {
	r    *runner
	step string
}

func (j *journal) Resume() *actions.Progress {
	s := j.r.st.step(j.step)
	if s == nil || s.Progress == nil {
		return nil
	}
	p := *s.Progress
	if s.Frozen != "" && p.Statements == nil {
		if list, err := openFrozen(s.Frozen, s.FrozenLen); err == nil {
			p.Statements = list
		}
	}
	return &p
}

func (j *journal) Freeze(write func(add func(string) error) error) (actions.Statements, error) {
	list, err := j.r.st.freeze(j.step, write)
	if err != nil {
		return nil, err
	}
	// The list is durable (fsynced, renamed, directory fsynced) before this
	// record names it, and this record is durable before the first
	// statement runs.
	if err := j.r.st.update(j.step, true, func(s *StepState) {
		s.Frozen, s.FrozenLen = list.path, list.n
		s.Progress = &actions.Progress{Done: 0}
	}); err != nil {
		return nil, err
	}
	return list, nil
}

func (j *journal) BeforeCommit(ctx context.Context, tx actions.PendingTx) error {
	err := j.r.st.update(j.step, true, func(s *StepState) { s.Pending = &tx })
	crashPoint("before-commit", j.step)
	return err
}

func (j *journal) Committed(tx actions.PendingTx) error {
	crashPoint("committed", j.step)
	change := func(s *StepState) {
		s.Pending = nil
		s.Progress = committedProgress(tx)
	}
	if tx.XID != 0 {
		// No record of its own: if the process dies before the step's next
		// record (which replaces the whole step's, this change included),
		// resume settles the pending transaction with pg_xact_status and
		// reaches the same state. That saves one record per transaction.
		j.r.st.change(j.step, change)
		return nil
	}
	// A statement run in autocommit has no transaction id to settle with:
	// its record is written at once (not fsynced: see actions.Generate).
	return j.r.st.update(j.step, false, change)
}

// committedProgress is a step's progress once tx committed: a synchronous
// commit makes every statement up to it durable, an asynchronous one leaves
// that as it was.
func committedProgress(tx actions.PendingTx) *actions.Progress {
	p := &actions.Progress{Done: tx.Done, Durable: tx.Done, Server: tx.Server, Outputs: tx.Outputs}
	if tx.Async {
		p.Durable = min(tx.Durable, tx.Done)
	}
	return p
}

// settle resolves steps a dead process left running (SPEC §5), before any
// step runs: an in-doubt commit is settled by the server, an interrupted
// non-transactional step re-runs only when idempotent or named by --rerun.
func (r *runner) settle(ctx context.Context) error {
	for _, s := range r.st.Steps {
		if s.Status != Running && s.Pending == nil && !atRisk(s) {
			continue
		}
		step := r.rb.Step(s.ID)
		if step == nil {
			return exitcode.With(exitcode.Refused, fmt.Errorf("step %s was running when the run stopped but is no longer in the runbook", s.ID))
		}
		if s.Pending != nil || atRisk(s) {
			if _, err := r.settlePending(ctx, step); err != nil {
				return err
			}
			continue
		}
		if transactional(step) || step.Idempotent || slices.Contains(r.o.Rerun, s.ID) || step.Kind == "assert" || step.Kind == "confirm" {
			continue
		}
		return exitcode.With(exitcode.Refused, fmt.Errorf("step %s (%s) was interrupted while running and is not transactional: runbook cannot know whether it took effect.\nCheck its effect by hand, then either mark it re-runnable with --rerun %s, or set idempotent: true in the runbook if it is safe to run twice",
			s.ID, step.Kind, s.ID))
	}
	return nil
}

// settlePending settles a step's recorded transaction whose commit is in
// doubt — after a crash, or after a failed attempt whose COMMIT got no answer —
// by asking the server. A committed transaction counts as done: an sql step is
// then succeeded (done reports it), a generate step continues after it.
func (r *runner) settlePending(ctx context.Context, step *schema.Step) (done bool, err error) {
	s := r.st.step(step.ID)
	if s == nil || (s.Pending == nil && !atRisk(s)) {
		return false, nil
	}
	if settled, ended, err := r.lostCommits(ctx, step, s); err != nil || settled {
		return ended, err
	}
	if s.Pending == nil {
		return false, nil
	}
	pending := *s.Pending
	if slices.Contains(r.o.Rerun, step.ID) {
		// The operator checked and asks for the step to run again.
		return false, r.st.update(step.ID, true, func(x *StepState) { x.Pending = nil })
	}
	committed, err := r.settleTx(ctx, step.ID, pending)
	if err != nil {
		return false, err
	}
	if !committed {
		r.log.Info().Str("event", "step.settled").Str("step", step.ID).Uint64("xid", pending.XID).Str("outcome", "aborted").
			Msg("the step's last transaction did not commit: it runs again")
		return false, r.st.update(step.ID, true, func(x *StepState) { x.Pending = nil })
	}
	if err := r.st.update(step.ID, true, func(x *StepState) {
		x.Pending = nil
		x.Progress = committedProgress(pending)
	}); err != nil {
		return false, err
	}
	if step.Kind == "sql" {
		r.log.Info().Str("event", "step.settled").Str("step", step.ID).Uint64("xid", pending.XID).Str("outcome", "committed").
			Msg("the step's transaction committed: the step is done")
		return true, r.recordEnd(step, Succeeded, pending.Outputs, nil)
	}
	r.log.Info().Str("event", "step.settled").Str("step", step.ID).Uint64("xid", pending.XID).Str("outcome", "committed").
		Int("done", pending.Done).Msgf("the step's last transaction committed: it continues after statement %d", pending.Done)
	return false, nil
}

// atRisk reports whether a step that did not succeed has statements that
// committed asynchronously and are not yet known durable on the server.
func atRisk(s *StepState) bool {
	return s.Status != Succeeded && s.Progress != nil && s.Progress.Done > s.Progress.Durable && !s.Progress.Server.IsZero()
}

// lostCommits checks that the server did not restart since the step's
// commits were recorded (docs/state.md, "When the server restarts"). A
// crash of the server loses the commits not yet flushed to its disk, and
// the server may then hand their transaction ids out again, so that
// pg_xact_status no longer answers for them. When it restarted and the step
// has statements that committed but are not known durable — or its pending
// transaction reports committed — resume refuses (exit 4), unless the
// operator named the step with --rerun: the step then runs again from its
// last durable statement; or with --took-effect: what is in doubt is then
// recorded as done. It reports whether it settled the step's record (the
// pending transaction, if any, is then resolved), and whether that ended the
// step (an sql step whose transaction took effect).
func (r *runner) lostCommits(ctx context.Context, step *schema.Step, s *StepState) (settled, ended bool, err error) {
	var recorded time.Time
	conn, durable, done := "", 0, 0
	if p := s.Progress; p != nil {
		recorded, durable, done = p.Server, p.Durable, p.Done
		if g, ok := step.Action.(*actions.Generate); ok {
			conn = g.Target()
		}
	}
	if p := s.Pending; p != nil {
		recorded, durable, conn = p.Server, p.Durable, p.Conn
	}
	if recorded.IsZero() || conn == "" {
		return false, false, nil // recorded before runbook kept the server's start time
	}
	c, err := r.conns.Conn(ctx, conn)
	if err != nil {
		return false, false, err
	}
	var now time.Time
	if err := c.QueryRow(ctx, "SELECT pg_postmaster_start_time()").Scan(&now); err != nil {
		return false, false, fmt.Errorf("step %s: reading the server's start time: %w", step.ID, r.red.Error(err))
	}
	if now.Equal(recorded) {
		return false, false, nil
	}
	last := done
	if p := s.Pending; p != nil {
		status, err := xactStatus(ctx, c, p.XID)
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == "22023":
			// "transaction ID … is in the future": the restarted server
			// never saw it; it did not commit.
		case err != nil:
			return false, false, fmt.Errorf("step %s: settling transaction %d: %w", step.ID, p.XID, r.red.Error(err))
		case status != nil && *status == "committed":
			last = max(last, p.Done)
		}
	}
	if last <= durable {
		if s.Pending == nil {
			return false, false, nil
		}
		// The pending transaction did not commit before the restart (had
		// it, its id could not have been given away): it runs again.
		r.log.Info().Str("event", "step.settled").Str("step", step.ID).Uint64("xid", s.Pending.XID).Str("outcome", "aborted").
			Msg("the server restarted; the step's last transaction did not commit: it runs again")
		return true, false, r.st.update(step.ID, true, func(x *StepState) { x.Pending = nil })
	}
	what := fmt.Sprintf("statements %d to %d of step %s took effect", durable+1, last, step.ID)
	if step.Kind == "sql" {
		what = fmt.Sprintf("step %s's transaction committed", step.ID)
	}
	if slices.Contains(r.o.TookEffect, step.ID) {
		// The operator checked: everything runbook could not vouch for
		// took effect.
		r.log.Warn().Str("event", "step.settled").Str("step", step.ID).Int("durable", durable).Int("done", last).Str("outcome", "took-effect").
			Msgf("the server restarted: statements up to %d recorded as done, as --took-effect asks", last)
		pending := s.Pending
		if err := r.st.update(step.ID, true, func(x *StepState) {
			x.Pending = nil
			out := actions.Outputs(nil)
			if x.Progress != nil {
				out = x.Progress.Outputs
			}
			if pending != nil && last == pending.Done {
				out = pending.Outputs
			}
			x.Progress = &actions.Progress{Done: last, Durable: last, Server: now, Outputs: out}
		}); err != nil {
			return false, false, err
		}
		if step.Kind == "sql" && pending != nil && last == pending.Done {
			return true, true, r.recordEnd(step, Succeeded, pending.Outputs, nil)
		}
		return true, false, nil
	}
	if !slices.Contains(r.o.Rerun, step.ID) {
		return false, false, exitcode.With(exitcode.Refused, fmt.Errorf("step %s: the server restarted since runbook recorded the step's commits (it was started at %s, now at %s). "+
			"A crash loses the commits not yet on the server's disk, and the server may then give their transaction ids to other transactions, so runbook cannot tell whether %s.\n"+
			"Check them, then resume with --took-effect %s if they did, or with --rerun %s to run them again (statements up to %d are known durable)",
			step.ID, recorded.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano), what, step.ID, step.ID, durable))
	}
	r.log.Warn().Str("event", "step.settled").Str("step", step.ID).Int("durable", durable).Int("done", last).Str("outcome", "rerun").
		Msgf("the server restarted: running the step again after statement %d, as --rerun asks", durable)
	return true, false, r.st.update(step.ID, true, func(x *StepState) {
		x.Pending = nil
		if x.Progress != nil {
			x.Progress = &actions.Progress{Done: durable, Durable: durable, Server: now, Outputs: x.Progress.Outputs}
		}
	})
}

// untracked reports whether a step has effects that no journaled transaction
// records: a shell command, or SQL outside a transaction. Its start and end
// must be durable before anything moves on.
func untracked(step *schema.Step) bool {
	switch step.Kind {
	case "assert", "confirm":
		return false
	}
	return !transactional(step)
}

// transactional reports whether a step's effects are committed only through
// journaled transactions.
func transactional(step *schema.Step) bool {
	switch a := step.Action.(type) {
	case *actions.SQL:
		return a.InTransaction()
	case *actions.Generate:
		return true
	}
	return false
}

// settleTx asks the server whether a recorded transaction committed. A
// transaction still in progress (its client died) is ended first: after a
// bounded wait, its backend is terminated — only if pid and start time still
// match the record.
func (r *runner) settleTx(ctx context.Context, stepID string, tx actions.PendingTx) (bool, error) {
	conn, err := r.conns.Conn(ctx, tx.Conn)
	if err != nil {
		return false, err
	}
	deadline := time.Now().Add(settleWait)
	for {
		status, err := xactStatus(ctx, conn, tx.XID)
		if err != nil {
			return false, fmt.Errorf("step %s: settling transaction %d: %w", stepID, tx.XID, r.red.Error(err))
		}
		switch {
		case status == nil:
			// Too old for the server's commit log: runbook cannot know.
			return false, exitcode.With(exitcode.Refused, fmt.Errorf("step %s: the server no longer knows whether transaction %d committed (pg_xact_status is NULL); check the step's effect by hand, then resume with --rerun %s if it must run again",
				stepID, tx.XID, stepID))
		case *status == "committed":
			return true, nil
		case *status == "aborted":
			return false, nil
		}
		// in progress: the dead client's backend still holds it.
		if time.Now().After(deadline) {
			var terminated bool
			err := conn.QueryRow(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE pid = $1 AND date_trunc('milliseconds', backend_start) = date_trunc('milliseconds', $2::timestamptz)`,
				int32(tx.BackendPID), tx.BackendStart).Scan(&terminated)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return false, fmt.Errorf("step %s: ending the dead run's transaction: %w", stepID, r.red.Error(err))
			}
			r.log.Warn().Str("event", "tx.terminated").Str("step", stepID).Uint32("backend_pid", tx.BackendPID).
				Msg("ended the dead run's open transaction")
			deadline = time.Now().Add(settleWait)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

const settleWait = 10 * time.Second

// xactStatus asks the server whether a transaction committed:
// pg_xact_status ("committed", "aborted", "in progress"; nil when too old to
// know).
func xactStatus(ctx context.Context, conn *pgx.Conn, xid uint64) (*string, error) {
	var status *string
	err := conn.QueryRow(ctx, `SELECT pg_xact_status($1::text::xid8)`, fmt.Sprint(xid)).Scan(&status)
	return status, err
}
