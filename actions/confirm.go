package actions

import (
	"context"
	"errors"

	"github.com/runbookhq/runbook/schema"
)

// Confirm asks a human to approve before the run goes on.
type Confirm struct {
	Message schema.Template `yaml:"message" required:"true" short:"true" doc:"What the operator must do or check before typing yes."`
}

func init() {
	Register("confirm", "Ask a human for approval: typed yes on a terminal, --yes, or --approve ID.", func() Runner { return &Confirm{} })
}

// Kind implements schema.Action.
func (*Confirm) Kind() string { return "confirm" }

// Run implements Runner.
func (a *Confirm) Run(ctx context.Context, rc *Context) (Outputs, error) {
	return nil, errors.New("Confirm: not implemented yet")
}
