package executor

import (
	"errors"
	"fmt"
	"time"

	"github.com/runbookhq/runbook/internal/exitcode"
)

// envError marks a failure to prepare runbook's own files (the state
// directory, its lock, the audit log) found before any step ran: exit 5,
// not 1, which means that a step failed. An error that already carries a
// code (a lock held by another process: 4) keeps it.
func envError(err error) error {
	var ce *exitcode.Error
	if err == nil || errors.As(err, &ce) {
		return err
	}
	return exitcode.With(exitcode.Environment, err)
}

// auditSink passes the run's events to the audit log and never reports a
// failed write to zerolog, which would print "could not write event" on
// standard error for every later event. The auditWriter keeps the first
// error (nothing more is appended after it), and the runner stops before its
// next step when it sees it (auditStopped).
type auditSink struct{ w *auditWriter }

func (s auditSink) Write(p []byte) (int, error) {
	s.w.Write(p)
	return len(p), nil
}

// failed returns the error that stopped the log, or nil.
func (w *auditWriter) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// auditStopped returns the error that stops the run because its audit log
// could not be written, or nil: the run must not go on doing work that the
// log does not record (docs/audit.md). next is the step that would run next
// ("" at the end of the run); failure is a step's failure met before, which
// the error reports too.
func (r *runner) auditStopped(next string, failure error) error {
	if r.audit == nil {
		return nil
	}
	err := r.audit.failed()
	if err == nil {
		return nil
	}
	where := "before step " + next
	if next == "" {
		where = "before recording its end"
	}
	err = fmt.Errorf("%w\nthe run stopped %s: nothing more runs without a record. The state %s records what ran; the audit log %s lacks the lines from the failure on, and the next run or resume records its torn last line. Make room, then continue with:\n  %s",
		err, where, r.st.store.Where(), r.o.LogPath, resumeCommand(r.o, r.st.store.Where()))
	if failure != nil {
		err = fmt.Errorf("%w\nbefore that, a step failed: %w", err, failure)
	}
	return exitcode.With(exitcode.Environment, err)
}

// finishedError is what checkResume returns for a run that already
// succeeded: resuming it is not refused but does nothing (Run reports it in
// Result.AlreadySucceeded), so that a resume after a kill that landed after
// the run's last record ends well.
type finishedError struct{ st *State }

func (e *finishedError) Error() string {
	return fmt.Sprintf("the run %s in %s already succeeded", e.st.RunID, e.st.store.Where())
}

func (e *finishedError) ended() time.Time {
	if e.st.Ended != nil {
		return *e.st.Ended
	}
	return time.Time{}
}
