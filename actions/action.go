// Package actions holds runbook's action kinds, one file each: sql, shell,
// generate, assert and confirm. Each file declares its config (decoded,
// validated and documented through package schema from the struct's tags), and
// its execution. The executor knows actions only through Runner.
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

// Register registers an action kind with the schema (decoding, validation, JSON
// Schema, docs). Every kind's file calls it from init.
func Register(kind, summary string, newConfig func() Runner) {
	schema.RegisterAction(schema.ActionType{Kind: kind, Summary: summary,
		New: func() schema.Action { return newConfig() }})
}
