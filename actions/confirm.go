package actions

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/schema"
)

// Confirm asks a human to approve before the run goes on.
type Confirm struct {
	Message     schema.Template `yaml:"message" required:"true" short:"true" doc:"What the operator must do or check before typing yes."`
	Approvers   []string        `yaml:"approvers" doc:"Who may approve (operator identities, as --operator gives them): an approval by anyone else is refused and logged, and the run stays paused. Default: anyone."`
	NotOperator bool            `yaml:"not_operator" doc:"Refuse an approval by the run's operator (the one who started it): four eyes. The approval is then given by someone else, with resume --approve ID --operator NAME."`
}

func init() {
	Register("confirm", "Ask a human for approval: typed yes on a terminal, --yes, or --approve ID; refused with resume --reject ID --reason TEXT or no on a terminal.", func() Runner { return &Confirm{} })
}

// Kind implements schema.Action.
func (*Confirm) Kind() string { return "confirm" }

// AsksApproval implements Asker.
func (*Confirm) AsksApproval() {}

var _ Asker = (*Confirm)(nil)

// Effects implements Effecter: an approval changes nothing (it is recorded
// in the audit log).
func (*Confirm) Effects() Effects { return None }

// Run implements Runner: the approver decides (a terminal prompt, --yes,
// --approve ID, --reject ID); who approved, when and how is logged as
// confirm.approved, who rejected and why as confirm.rejected.
func (a *Confirm) Run(ctx context.Context, rc *Context) (Outputs, error) {
	msg, err := a.Message.String(rc.Env)
	if err != nil {
		return nil, fmt.Errorf("message: %w", err)
	}
	ap, err := rc.Approver.Approve(ctx, ApprovalRequest{Step: rc.Step.ID, Message: msg, Approvers: a.Approvers, NotOperator: a.NotOperator})
	var rej *Rejection
	if errors.As(err, &rej) {
		rc.Events.Emit(ConfirmRejected{By: rej.By, How: rej.How, At: rej.At, Reason: rej.Reason, Prompt: msg})
	}
	if err != nil {
		return nil, err
	}
	rc.Events.Emit(ConfirmApproved{By: ap.By, How: ap.How, At: ap.At, Prompt: msg})
	return Outputs{"approved_by": ap.By, "approved_how": ap.How, "approved_at": ap.At.Format("2006-01-02T15:04:05Z07:00")}, nil
}

// Rejection is the error of a confirm step somebody refused: who, how
// (resume --reject, the terminal), when and why. The run ends with outcome
// rejected (exit 6).
type Rejection struct {
	Step   string
	By     string
	How    string
	At     time.Time
	Reason string
}

func (e *Rejection) Error() string {
	return fmt.Sprintf("rejected by %s (%s): %s", e.By, e.How, e.Reason)
}

// ExitCode implements exitcode.Coder.
func (e *Rejection) ExitCode() int { return exitcode.Rejected }
