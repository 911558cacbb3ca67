package executor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/schema"
)

// errApprovalRequired stops a run at a confirm step nobody could approve.
var errApprovalRequired = errors.New("approval required")

// runStep runs one step: its condition, its attempts with retry and timeout,
// and its durable record.
func (r *runner) runStep(ctx context.Context, step *schema.Step) error {
	if step.When != nil {
		ok, err := step.When.Bool(r.env)
		if err != nil {
			err = fmt.Errorf("step %s: when: %w", step.ID, err)
			r.recordEnd(step, Failed, nil, err)
			return err
		}
		if !ok {
			r.emit(step.ID, StepSkip{When: step.When.Src})
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
	untracked := actions.EffectsOf(step.Action) == actions.Untracked
	record := func(durable bool, change func(s *StepState)) error {
		if untracked {
			return r.st.update(step.ID, durable, change, nil)
		}
		r.st.change(step.ID, change, nil)
		return nil
	}
	if err := record(true, func(s *StepState) {
		s.Status, s.Started, s.Ended, s.Error, s.Digest = Running, &now, nil, "", step.Digest
	}); err != nil {
		return err
	}
	r.emit(step.ID, StepStart{Kind: step.Kind, Title: step.Title()})

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
		if attempt == attempts || (on != "any" && !actions.Retryable(step.Action, err)) {
			break
		}
		// A failed attempt may leave a commit in doubt (no answer to COMMIT):
		// settle it before trying again, so nothing runs twice (the next
		// attempt goes on from what committed).
		if serr := r.settleUnits(ctx, step); serr != nil {
			err = serr
			break
		}
		r.emit(step.ID, StepRetry{Attempt: attempt, Delay: delay, Error: r.red.String(err.Error()), Attempts: attempts})
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
		r.st.update(step.ID, true, func(s *StepState) { s.Status, s.Attempts = Pending, 0 }, nil)
		return err
	case err != nil:
		err = fmt.Errorf("step %s failed: %w", step.ID, r.red.Error(err))
		r.recordEnd(step, Failed, out, err)
		return err
	}
	return r.recordEnd(step, Succeeded, out, nil)
}

// attempt runs one attempt with the step's timeout.
func (r *runner) attempt(ctx context.Context, step *schema.Step, runner actions.Runner, n int) (actions.Outputs, error) {
	if step.Timeout != nil && step.Timeout.D() > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, step.Timeout.D(), fmt.Errorf("timeout of %s", step.Timeout.D()))
		defer cancel()
	}
	conns := r.conns.forStep()
	defer conns.closeExtra()
	rc := &actions.Context{Step: step, Env: r.env,
		Conns: conns, Redact: r.red, Dir: r.dir, File: r.rb.File, Journal: &journal{r: r, step: step.ID},
		Approver: r, Attempt: n, Events: stepEvents{r: r, step: step.ID},
		StartOver: n == 1 && slices.Contains(r.o.Rerun, step.ID)}
	if r.plan != nil {
		rc.Plan = r.plan.bound(step.ID)
		if why := r.plan.unbound(step.ID); why != "" {
			r.emit(step.ID, PlanUnbound{Plan: r.plan.ID(), Why: why})
		}
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
	durable := actions.EffectsOf(step.Action) == actions.Untracked || status == Failed
	// A failed step keeps its units and transactions in flight: the next
	// attempt or resume settles them with the server first. A succeeded one
	// keeps its units too (they are its record), but nothing is in flight.
	err := r.st.update(step.ID, durable, func(s *StepState) {
		s.Status, s.Ended, s.Outputs, s.Digest = status, &now, r.maskOutputs(out), step.Digest
		if s.Started != nil {
			started = *s.Started
		}
		if stepErr != nil {
			s.Error = r.red.String(stepErr.Error())
		}
	}, nil)
	r.env.Steps[step.ID] = schema.StepResult{Status: status, Outputs: out}
	crashPoint("step-end", step.ID)
	if status == Skipped {
		return err
	}
	end := StepEnd{Step: step.ID, Status: status, Duration: now.Sub(started), Outputs: summarize(out)}
	if stepErr != nil {
		end.Error = r.red.String(stepErr.Error())
	}
	r.emit("", end)
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

// Approve implements actions.Approver: --reject ID, --approve ID, --yes, or
// the operator answering on a terminal. An approval is recorded in the state
// and the audit log; one by somebody the step does not accept (its
// approvers, not_operator) is refused, logged, and leaves the run paused.
func (r *runner) Approve(ctx context.Context, req actions.ApprovalRequest) (actions.Approval, error) {
	now := time.Now().UTC()
	stepID := req.Step
	var a actions.Approval
	switch {
	case r.o.Reject == stepID:
		return a, &actions.Rejection{Step: stepID, By: r.o.Operator, How: "--reject " + stepID, At: now, Reason: r.o.RejectReason}
	case slices.Contains(r.o.Approve, stepID):
		a = actions.Approval{By: r.o.Operator, How: "--approve " + stepID, At: now}
	case r.o.Yes:
		a = actions.Approval{By: r.o.Operator, How: "--yes", At: now}
	case r.o.Prompt != nil:
		if err := req.Qualifies(r.o.Operator, r.st.Operator); err != nil {
			// Nobody here can approve: asking would only refuse the answer.
			return a, &approvalRequired{why: err.Error()}
		}
		answer, err := r.o.Prompt(fmt.Sprintf("\n%s\nType yes to continue, or no to reject: ", req.Message))
		if err != nil {
			return a, err
		}
		switch strings.ToLower(strings.TrimSpace(answer)) {
		case "yes":
		case "no":
			reason := ""
			for reason == "" {
				if reason, err = r.o.Prompt("Reason for rejecting (recorded in the audit log): "); err != nil {
					return a, err
				}
				reason = strings.TrimSpace(reason)
			}
			return a, &actions.Rejection{Step: stepID, By: r.o.Operator, How: "terminal", At: now, Reason: reason}
		default:
			return a, exitcode.With(exitcode.StepFailed, fmt.Errorf("not approved (answer %q)", strings.TrimSpace(answer)))
		}
		a = actions.Approval{By: r.o.Operator, How: "terminal", At: now}
	default:
		return a, errApprovalRequired
	}
	if err := req.Qualifies(a.By, r.st.Operator); err != nil {
		r.emit(stepID, actions.ConfirmRefused{By: a.By, How: a.How, At: a.At, Reason: err.Error()})
		return actions.Approval{}, &approvalRequired{why: "approval refused: " + err.Error()}
	}
	return a, r.st.write(&record{Approve: &approveRecord{Step: stepID, Approve: a}}, true)
}

// approvalRequired pauses the run at a confirm step whose approval did not
// qualify: why says so.
type approvalRequired struct{ why string }

func (e *approvalRequired) Error() string        { return e.why }
func (e *approvalRequired) Is(target error) bool { return target == errApprovalRequired }
