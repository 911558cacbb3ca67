package actions

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/runbookhq/runbook/internal/event"
)

// The events of the assert and confirm actions.

func init() {
	event.MustRegister(AssertResult{}, ConfirmApproved{})
}

// AssertResult: an assertion was evaluated (a that expression, or a
// comparison of two connections' results).
type AssertResult struct {
	Expr string `json:"expr"`
	// Row is the query's first row (an empty object when it returned none)
	// and Rows how many it returned; nil without a query.
	Row  any  `json:"row,omitempty"`
	Rows *int `json:"rows,omitempty"`
	// Counts are a comparison's row counts, rows_<connection>; Differing
	// the rows that differ, Diff the first of them.
	Counts    event.Extra `json:"-"`
	Differing *int        `json:"differing,omitempty"`
	Diff      *[]string   `json:"diff,omitempty"`
	Outcome   string      `json:"outcome"` // pass, fail, error
	Error     string      `json:"error,omitempty"`
	Text      string      `json:"message"`
}

// Name implements event.Event.
func (AssertResult) Name() string { return "assert.result" }

// Message implements event.Event.
func (e AssertResult) Message() string { return e.Text }

// Level implements event.Leveler.
func (e AssertResult) Level() event.Level {
	if e.Outcome != "pass" {
		return event.Warn
	}
	return event.Info
}

// Detail implements event.Detailer.
func (e AssertResult) Detail() string {
	s := fmt.Sprintf("assert %s: %s", e.Expr, e.Outcome)
	if e.Row != nil {
		if b, err := json.Marshal(e.Row); err == nil {
			s += " — row " + string(b)
		}
	}
	return s
}

// ConfirmApproved: a confirm step was approved: who, how, when, and the
// question they answered.
type ConfirmApproved struct {
	By     string    `json:"by"`
	How    string    `json:"how"`
	At     time.Time `json:"at"`
	Prompt string    `json:"prompt"`
}

// Name implements event.Event.
func (ConfirmApproved) Name() string { return "confirm.approved" }

// Message implements event.Event.
func (e ConfirmApproved) Message() string { return fmt.Sprintf("approved by %s (%s)", e.By, e.How) }

// Durability implements event.Durable: an approval is on disk before the
// work it allows begins.
func (ConfirmApproved) Durability() event.Durability { return event.Synced }

// Problem implements event.Problem: the approval is shown.
func (e ConfirmApproved) Problem() (event.Issue, bool) {
	return event.Issue{Level: event.Info, Message: e.Message()}, true
}
