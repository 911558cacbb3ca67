package actions

import (
	"context"
	"fmt"

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

// Effects implements Effecter: an approval changes nothing (it is recorded
// in the audit log).
func (*Confirm) Effects() Effects { return None }

// Run implements Runner: the approver decides (a terminal prompt, --yes,
// --approve ID); who approved, when and how is logged as confirm.approved.
func (a *Confirm) Run(ctx context.Context, rc *Context) (Outputs, error) {
	msg, err := a.Message.String(rc.Env)
	if err != nil {
		return nil, fmt.Errorf("message: %w", err)
	}
	ap, err := rc.Approver.Approve(ctx, rc.Step.ID, msg)
	if err != nil {
		return nil, err
	}
	rc.Events.Emit(ConfirmApproved{By: ap.By, How: ap.How, At: ap.At, Prompt: msg})
	return Outputs{"approved_by": ap.By, "approved_how": ap.How, "approved_at": ap.At.Format("2006-01-02T15:04:05Z07:00")}, nil
}
