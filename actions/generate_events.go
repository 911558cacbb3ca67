package actions

import (
	"fmt"
	"time"

	"github.com/runbookhq/runbook/internal/event"
)

// The events of the generate action.

func init() {
	event.MustRegister(GenerateQuery{}, GenerateResume{}, GenerateStatement{}, GenerateRerun{}, GenerateAutocommit{}, GenerateFlush{}, GenerateBound{})
}

// GenerateQuery: the generator query ran; its statements are frozen.
type GenerateQuery struct {
	SQL        string        `json:"sql"`
	Statements int           `json:"statements"`
	Duration   time.Duration `json:"duration"`
}

// Name implements event.Event.
func (GenerateQuery) Name() string { return "generate.query" }

// Message implements event.Event.
func (GenerateQuery) Message() string { return "generated statements" }

// Detail implements event.Detailer.
func (e GenerateQuery) Detail() string {
	return fmt.Sprintf("the generator query produced %d statements (%s):\n%s", e.Statements, e.Duration.Round(10*time.Microsecond), indentSQL(e.SQL))
}

// GenerateResume: an interrupted step goes on with its frozen list.
type GenerateResume struct {
	Statements int `json:"statements"`
	Done       int `json:"done"`
}

// Name implements event.Event.
func (GenerateResume) Name() string { return "generate.resume" }

// Message implements event.Event.
func (GenerateResume) Message() string { return "resuming with the frozen statement list" }

// Problem implements event.Problem: the operator sees where it resumes.
func (e GenerateResume) Problem() (event.Issue, bool) {
	return event.Issue{Level: event.Info, Message: fmt.Sprintf("resuming with the frozen statement list: %d of %d done", e.Done, e.Statements)}, true
}

// GenerateStatement: a generated statement committed (or, with rerun, ran
// again after its batch rolled back).
type GenerateStatement struct {
	// Index is the statement's place in the list, from 0.
	Index    int           `json:"index"`
	SQL      string        `json:"sql"`
	Rows     int64         `json:"rows"`
	Duration time.Duration `json:"duration"`
	Rerun    bool          `json:"rerun,omitempty"`
}

// Name implements event.Event.
func (GenerateStatement) Name() string { return "generate.statement" }

// Message implements event.Event.
func (GenerateStatement) Message() string { return "generated statement" }

// Detail implements event.Detailer.
func (e GenerateStatement) Detail() string {
	return fmt.Sprintf("generated %d (%s, %s):\n%s", e.Index+1, rowCount(e.Rows), e.Duration.Round(10*time.Microsecond), indentSQL(e.SQL))
}

// GenerateRerun: a batch rolled back; the statements before the failing
// one run again, in one transaction (From and To are indexes).
type GenerateRerun struct {
	From int `json:"from"`
	To   int `json:"to"`
}

// Name implements event.Event.
func (GenerateRerun) Name() string { return "generate.rerun" }

// Message implements event.Event.
func (GenerateRerun) Message() string {
	return "the batch was rolled back; running the statements before the failing one again, in one transaction"
}

// Level implements event.Leveler.
func (GenerateRerun) Level() event.Level { return event.Warn }

// Problem implements event.Problem.
func (e GenerateRerun) Problem() (event.Issue, bool) {
	return event.Issue{Level: event.Warn, Message: fmt.Sprintf("the batch was rolled back; statements %d to %d run again, in one transaction", e.From+1, e.To+1)}, true
}

// GenerateAutocommit: a statement that cannot run in a transaction block
// runs on its own, not protected against running twice.
type GenerateAutocommit struct {
	Index int    `json:"index"`
	SQL   string `json:"sql"`
}

// Name implements event.Event.
func (GenerateAutocommit) Name() string { return "generate.autocommit" }

// Message implements event.Event.
func (GenerateAutocommit) Message() string {
	return "the statement cannot run inside a transaction block: running it on its own in autocommit; " +
		"it is not protected against running twice if runbook dies before its completion is recorded"
}

// Level implements event.Leveler.
func (GenerateAutocommit) Level() event.Level { return event.Warn }

// Problem implements event.Problem.
func (e GenerateAutocommit) Problem() (event.Issue, bool) {
	return event.Issue{Level: event.Warn, Message: fmt.Sprintf("generated statement %d cannot run inside a transaction block: it runs on its own in autocommit, "+
		"not protected against running twice if runbook dies before its completion is recorded", e.Index+1)}, true
}

// GenerateFlush: after a failure, the committed statements could not be
// made durable on the server.
type GenerateFlush struct {
	Error string `json:"error"`
}

// Name implements event.Event.
func (GenerateFlush) Name() string { return "generate.flush" }

// Message implements event.Event.
func (GenerateFlush) Message() string {
	return "could not make the committed statements durable on the server"
}

// Level implements event.Leveler.
func (GenerateFlush) Level() event.Level { return event.Warn }

// Problem implements event.Problem.
func (e GenerateFlush) Problem() (event.Issue, bool) {
	return event.Issue{Level: event.Warn, Message: e.Message() + ": " + e.Error}, true
}

// GenerateProgress is how many generated statements are done, of Total. It
// is live: shown on a terminal, never logged.
type GenerateProgress struct {
	Done, Total int
}

// Name implements event.Event.
func (GenerateProgress) Name() string { return "generate.progress" }

// Message implements event.Event.
func (e GenerateProgress) Message() string { return fmt.Sprintf("%d/%d statements", e.Done, e.Total) }

// Progress implements event.Progressor.
func (e GenerateProgress) Progress() event.Progress {
	return event.Progress{Done: int64(e.Done), Total: int64(e.Total), Unit: "statements"}
}

// GenerateBound: the statements generated at run time are those a sealed
// plan approved; they run.
type GenerateBound struct {
	Plan       string `json:"plan"`
	Statements int    `json:"statements"`
}

// Name implements event.Event.
func (GenerateBound) Name() string { return "generate.bound" }

// Message implements event.Event.
func (e GenerateBound) Message() string {
	return fmt.Sprintf("the %d generated statements are those plan %s approved", e.Statements, e.Plan)
}
