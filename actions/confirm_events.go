package actions

import (
	"fmt"
	"time"

	"github.com/runbookhq/runbook/internal/event"
)

// The events of the confirm action besides confirm.approved: a rejection,
// and an approval refused because the approver does not qualify.

func init() {
	event.MustRegister(ConfirmRejected{}, ConfirmRefused{})
}

// ConfirmRejected: a confirm step was rejected: who, how, when, why, and the
// question they answered. The run ends rejected.
type ConfirmRejected struct {
	By     string    `json:"by"`
	How    string    `json:"how"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
	Prompt string    `json:"prompt"`
}

// Name implements event.Event.
func (ConfirmRejected) Name() string { return "confirm.rejected" }

// Message implements event.Event.
func (e ConfirmRejected) Message() string {
	return fmt.Sprintf("rejected by %s (%s): %s", e.By, e.How, e.Reason)
}

// Durability implements event.Durable: a rejection is on disk before the
// clean-up steps run.
func (ConfirmRejected) Durability() event.Durability { return event.Synced }

// Problem implements event.Problem.
func (e ConfirmRejected) Problem() (event.Issue, bool) {
	return event.Issue{Level: event.Error, Message: e.Message()}, true
}

// ConfirmRefused: an approval was given by someone who may not approve the
// step (not among its approvers, or the run's operator where the step needs
// someone else). It does not count: the run stays paused.
type ConfirmRefused struct {
	By     string    `json:"by"`
	How    string    `json:"how"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// Name implements event.Event.
func (ConfirmRefused) Name() string { return "confirm.refused" }

// Message implements event.Event.
func (e ConfirmRefused) Message() string {
	return fmt.Sprintf("approval by %s (%s) refused: %s", e.By, e.How, e.Reason)
}

// Durability implements event.Durable.
func (ConfirmRefused) Durability() event.Durability { return event.Synced }

// Problem implements event.Problem.
func (e ConfirmRefused) Problem() (event.Issue, bool) {
	return event.Issue{Level: event.Warn, Message: e.Message()}, true
}
