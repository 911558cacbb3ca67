// Package actions holds runbook's action kinds, one file each. Each file
// declares its config (decoded, validated and documented through package
// schema from the struct's tags), its execution, and what the executor must
// know of it — its capabilities, below — and registers itself. The executor
// knows actions only through Runner and these interfaces: it never compares
// kind names nor asserts a concrete action type, so adding a kind of work is
// adding one file.
package actions

import (
	"context"

	"github.com/runbookhq/runbook/schema"
)

// Outputs are what a step exposes to later steps as steps.ID.outputs.*.
type Outputs map[string]any

// Runner is implemented by every action config: it runs one attempt of its step.
type Runner interface {
	schema.Action
	Run(ctx context.Context, rc *Context) (Outputs, error)
}

// Effects says how an action's effects reach the databases, which decides
// how the executor records and resumes its step.
type Effects int

const (
	// Untracked effects (a child process, SQL in autocommit) leave no record
	// runbook can settle: the step's start is made durable before it runs,
	// and a step interrupted while running runs again on resume only when it
	// is idempotent or named by --rerun. The default.
	Untracked Effects = iota
	// Journaled effects are committed only through transactions recorded in
	// the step's Journal before COMMIT: a resume settles them with the
	// server and the step goes on from what committed.
	Journaled
	// None: the action changes nothing (a check, an approval); an
	// interrupted one simply runs again.
	None
)

// Effecter is implemented by actions whose effects are not Untracked.
type Effecter interface {
	Effects() Effects
}

// EffectsOf returns an action's effects.
func EffectsOf(a schema.Action) Effects {
	if e, ok := a.(Effecter); ok {
		return e.Effects()
	}
	return Untracked
}

// Retrier is implemented by actions that know which failed attempts are
// worth trying again as they are (retry's default `on: transient`). Without
// it, every failure is (a shell command's exit status says nothing more).
type Retrier interface {
	Retryable(err error) bool
}

// Retryable reports whether a failed attempt of a may be retried under
// `on: transient`.
func Retryable(a schema.Action, err error) bool {
	if r, ok := a.(Retrier); ok {
		return r.Retryable(err)
	}
	return true
}

// Previewer is implemented by actions that can show, without changing
// anything, the statements they would run (plan --generate).
type Previewer interface {
	Preview(ctx context.Context, rc *Context) ([]string, error)
}

// Asker is implemented by actions that ask a human for approval (confirm):
// resume --reject names only their steps.
type Asker interface {
	AsksApproval()
}

// Describer is implemented by journaled actions that can say, for a person,
// what a unit's data stands for, in messages about work in doubt after a
// server restart.
type Describer interface {
	// DescribePoint says how far data reaches ("statement 40"); data is nil
	// for a unit with nothing known committed.
	DescribePoint(unit string, data []byte) string
	// DescribeDoubt says what may or may not have taken effect between two
	// points of a unit ("statements 21 to 40 of step g took effect").
	DescribeDoubt(step, unit string, durable, recorded []byte) string
}

// Register registers an action kind with the schema (decoding, validation, JSON
// Schema, docs). Every kind's file calls it from init; the order of
// registration (the files' order) is the order kinds are listed in.
func Register(kind, summary string, newConfig func() Runner) {
	schema.RegisterAction(schema.ActionType{Kind: kind, Summary: summary,
		New: func() schema.Action { return newConfig() }})
}
