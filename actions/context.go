package actions

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/runbookhq/runbook/internal/event"
	"github.com/runbookhq/runbook/internal/redact"
	"github.com/runbookhq/runbook/schema"
)

// Context is what an action sees while it runs one attempt of its step. The
// executor builds it; actions use nothing else of the run.
type Context struct {
	Step *schema.Step
	// Env evaluates the step's templates: params, earlier steps' outputs,
	// connection facts, run facts.
	Env *schema.Env
	// Events receives what the step does, as typed events (declared next to
	// each action: sql_events.go …): the console, the audit log and the
	// report read them. Secrets are masked where they are written; an action
	// still never puts a connection string or a secret param in one on
	// purpose. Events.Live tells whether somebody watches progress.
	Events event.Sink
	// Conns opens and describes the runbook's connections.
	Conns Conns
	// Redact masks secrets in text an action produces (child output, errors).
	Redact *redact.Redactor
	// File is the runbook's path (or builtin:NAME), for positions in errors.
	File string
	// Dir is the runbook's directory (relative files, shell's dir); "" for a
	// built-in runbook.
	Dir string
	// Journal records, durably, what must survive a crash inside the step.
	Journal Journal
	// Approver decides confirm steps.
	Approver Approver
	// Attempt is the attempt number, from 1.
	Attempt int
	// StartOver is set on the first attempt of a step the operator named
	// with resume --rerun: an action whose progress would otherwise go on
	// from its journal (a copy) starts over.
	StartOver bool
	// Plan is what a sealed plan approved for this step (run --plan,
	// docs/plan.md "Sealed plans"); nil when nothing is bound to it.
	Plan *Bound
}

// Bound is the statements a sealed plan approved for a step. An action that
// generates statements executes them only if it generates exactly this list
// at run time; otherwise it refuses before the first (exit 4).
type Bound struct {
	// Plan is the plan's id (its seal).
	Plan string
	// Statements are the statements approved, in order.
	Statements []string
}

// Conns gives actions the runbook's connections.
type Conns interface {
	// Conn returns the named connection's session, connecting on first use.
	Conn(ctx context.Context, name string) (*pgx.Conn, error)
	// Extra opens another session on the named connection, with the same
	// settings, server-identity check and masking, for work in parallel.
	// The executor closes it when the step's attempt ends; the action may
	// close it sooner.
	Extra(ctx context.Context, name string) (*pgx.Conn, error)
	// ChildEnv returns the libpq environment (PGHOST, PGPORT, PGUSER,
	// PGDATABASE, PGSSLMODE, PGPASSFILE …) that lets a child process reach the
	// named connection, without the password ever being in its argv, and the
	// files the child must inherit for it (its ExtraFiles: descriptors 3, 4 …;
	// PGPASSFILE may name one of them as /dev/fd/N).
	ChildEnv(ctx context.Context, name string) ([]string, []*os.File, error)
}

// Approver decides whether a confirm step may go on.
type Approver interface {
	// Approve asks for (or finds) approval of the step; it returns how it was
	// given ("terminal", "--yes", "--approve") and who gave it, or an error:
	// when nobody can approve now, one that pauses the run until a resume
	// approves the step.
	Approve(ctx context.Context, req ApprovalRequest) (Approval, error)
}

// ApprovalRequest is what a confirm step asks of the approver: its step, the
// message shown, and who may approve it.
type ApprovalRequest struct {
	Step    string
	Message string
	// Approvers, when set, are the only people whose approval counts.
	Approvers []string
	// NotOperator refuses an approval by the run's operator (four eyes).
	NotOperator bool
}

// Qualifies says why an approval by by does not count for the request, in a
// run started by operator; nil when it does.
func (r ApprovalRequest) Qualifies(by, operator string) error {
	if len(r.Approvers) > 0 && !slices.Contains(r.Approvers, by) {
		return fmt.Errorf("%s is not among the approvers of step %s (%s)", by, r.Step, strings.Join(r.Approvers, ", "))
	}
	if r.NotOperator && by == operator {
		return fmt.Errorf("%s started this run, and step %s needs someone other than the run's operator", by, r.Step)
	}
	return nil
}

// Approval records who approved a confirm step, when and how.
type Approval struct {
	By  string    `json:"by"`
	How string    `json:"how"`
	At  time.Time `json:"at"`
}
