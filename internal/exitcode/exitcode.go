// Package exitcode maps runbook's errors to the process exit codes of docs/cli.md.
// An error says its exit code through an ExitCode method (Coder): Error
// carries any code, and packages give their own error types one (a
// document's errors, schema.Errors, say Invalid).
package exitcode

import "errors"

// The exit codes (docs/cli.md, "Exit codes").
const (
	OK          = 0   // success
	StepFailed  = 1   // a step failed
	Invalid     = 2   // invalid usage, runbook or params
	Approval    = 3   // approval required
	Refused     = 4   // resume refused: state/runbook mismatch, lock held
	Environment = 5   // runbook cannot write its state or audit log (docs/behaviour.md)
	Rejected    = 6   // a confirm step was rejected (resume --reject, or no on a terminal)
	Interrupted = 130 // interrupted by a signal
)

// Error carries an exit code with an error.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// ExitCode returns the code the error carries.
func (e *Error) ExitCode() int { return e.Code }

// Coder is an error that says its exit code.
type Coder interface {
	error
	ExitCode() int
}

// With wraps err with an exit code.
func With(code int, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Err: err}
}

// Of returns the exit code for err: that of the first error in its chain
// that says one (a Coder), StepFailed when none does.
func Of(err error) int {
	if err == nil {
		return OK
	}
	var c Coder
	if errors.As(err, &c) {
		return c.ExitCode()
	}
	return StepFailed
}
