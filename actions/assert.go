package actions

import (
	"context"
	"errors"

	"github.com/runbookhq/runbook/schema"
)

// Assert checks a condition, optionally over a query's rows, or compares a
// query's results on two connections.
type Assert struct {
	On      schema.ConnRef    `yaml:"on" doc:"The connection the query runs on."`
	Query   schema.Template   `yaml:"query" doc:"A query; its first row is row and all rows are rows in that and message."`
	Args    []schema.Template `yaml:"args" doc:"Bind parameters of the query."`
	That    schema.Exprs      `yaml:"that" scope:"row" doc:"One expression or a list; all must be true."`
	Message schema.Template   `yaml:"message" scope:"row" doc:"Shown when the assertion fails. May use row and rows."`
	Compare []schema.ConnRef  `yaml:"compare" doc:"Two connections: run query on both; pass when the ordered results are equal."`
	Diff    int               `yaml:"show_diff" minimum:"1" default:"10" doc:"How many differing rows a failed compare shows."`

	Keys schema.Positions `yaml:"-"`
}

func init() {
	Register("assert", "Check a condition over a query's rows, or compare a query's results on two connections.", func() Runner { return &Assert{} })
}

// Kind implements schema.Action.
func (*Assert) Kind() string { return "assert" }

// Validate implements schema.Validator.
func (a *Assert) Validate(v *schema.Validation) {
	if a.Compare != nil {
		if len(a.Compare) != 2 {
			v.Errorf(a.Keys["compare"], "compare takes exactly two connections, not %d", len(a.Compare))
		}
		if a.Query.IsZero() {
			v.Errorf(a.Keys["compare"], "compare needs a query to run on both connections")
		}
		if a.On.Name != "" {
			v.Errorf(a.Keys["on"], "compare names the connections; drop on")
		}
		return
	}
	if len(a.That) == 0 {
		v.Errorf(v.Step.ActionPos, "assert needs that (an expression or a list) or compare")
	}
	if !a.Query.IsZero() && a.On.Name == "" {
		v.Errorf(a.Keys["query"], "assert with a query needs on: the connection to run it on")
	}
	if a.Query.IsZero() && a.On.Name != "" {
		v.Errorf(a.Keys["on"], "on without a query: add the query to run")
	}
}

// Run implements Runner.
func (a *Assert) Run(ctx context.Context, rc *Context) (Outputs, error) {
	return nil, errors.New("Assert: not implemented yet")
}
