// Package exitcode maps runbook's errors to the process exit codes of
// docs/cli.md.
package exitcode

import (
	"errors"

	"github.com/runbookhq/runbook/schema"
)

// The exit codes (docs/cli.md, "Exit codes").
const (
	OK          = 0   // success
	StepFailed  = 1   // a step failed
	Invalid     = 2   // invalid usage, runbook or params
	Approval    = 3   // approval required
	Refused     = 4   // resume refused: state/runbook mismatch, lock held
	Environment = 5   // runbook cannot write its state or audit log (docs/behaviour.md)
	Interrupted = 130 // interrupted by a signal
)

// Error carries an exit code with an error.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// With wraps err with an exit code.
func With(code int, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Err: err}
}

// Of returns the exit code for err: its own when it carries one, 2 for a
// document's errors, 1 otherwise.
func Of(err error) int {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var se schema.Errors
	if errors.As(err, &se) {
		return Invalid
	}
	return StepFailed
}
