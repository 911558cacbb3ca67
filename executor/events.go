package executor

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/runbookhq/runbook/internal/event"
)

// The executor's events: a run's and its steps' beginnings and ends, the
// settling of an interrupted step, connections, the audit log's torn line.
// Their fields are the audit log's (docs/audit.md); the step of step.start,
// step.skip and step.retry is the line's envelope, that of the others a
// field of their own.

func init() {
	event.MustRegister(RunStart{}, RunEnd{}, RunPaused{}, RunInterrupted{}, StepStart{}, StepSkip{}, StepRetry{},
		StepEnd{}, StepFailureIgnored{}, StepSettled{}, TxTerminated{}, SessionsEnded{}, ConnOpen{}, LogTruncated{})
}

// RunStart begins an invocation of a run: a run, or a resume.
type RunStart struct {
	Operator string            `json:"operator"`
	Host     string            `json:"host"`
	Version  string            `json:"version"`
	Runbook  string            `json:"runbook"`
	Digest   string            `json:"runbook_digest"`
	Params   map[string]string `json:"params"` // secret values masked
	Ticket   string            `json:"ticket"`
	State    string            `json:"state"`
	Resume   bool              `json:"resume"`
	// Plan is the id of the sealed plan the run executes (run --plan).
	Plan string `json:"plan,omitempty"`
	// For the message and the console, not logged: the runbook's name, the
	// run id (the line's envelope has it), the number of steps and of those
	// an earlier invocation completed.
	RunbookName string `json:"-"`
	RunID       string `json:"-"`
	Steps       int    `json:"-"`
	Done        int    `json:"-"`
}

// Name implements event.Event.
func (RunStart) Name() string { return "run.start" }

// Message implements event.Event.
func (e RunStart) Message() string {
	verb := "starting"
	if e.Resume {
		verb = "resuming"
	}
	return fmt.Sprintf("%s %s (run %s, state %s)", verb, e.RunbookName, e.RunID, e.State)
}

// Boundary implements event.Boundary.
func (e RunStart) Boundary() event.Bound {
	return event.Bound{Phase: event.RunStart, Runbook: e.RunbookName, RunID: e.RunID, State: e.State, Resume: e.Resume, Steps: e.Steps, Done: e.Done}
}

// RunEnd ends an invocation: how the run stands, and what failed.
type RunEnd struct {
	Outcome  string        `json:"outcome"`
	Duration time.Duration `json:"duration"`
	Error    string        `json:"error,omitempty"`
	// ResumeCommand continues the run (not logged: the error says it).
	ResumeCommand string `json:"-"`
}

// Name implements event.Event.
func (RunEnd) Name() string { return "run.end" }

// Message implements event.Event.
func (e RunEnd) Message() string { return "run " + e.Outcome }

// Level implements event.Leveler.
func (e RunEnd) Level() event.Level {
	if e.Outcome != Succeeded {
		return event.Error
	}
	return event.Info
}

// Durability implements event.Durable.
func (RunEnd) Durability() event.Durability { return event.Synced }

// Boundary implements event.Boundary.
func (e RunEnd) Boundary() event.Bound {
	return event.Bound{Phase: event.RunEnd, Outcome: e.Outcome, Duration: e.Duration, Error: e.Error, ResumeCommand: e.ResumeCommand}
}

// RunPaused: the run stopped at a confirm step nobody could approve.
type RunPaused struct {
	Step string `json:"step"`
}

// Name implements event.Event.
func (RunPaused) Name() string { return "run.paused" }

// Message implements event.Event.
func (e RunPaused) Message() string {
	return fmt.Sprintf("step %s needs approval: resume with --approve %s, or run on a terminal", e.Step, e.Step)
}

// Level implements event.Leveler.
func (RunPaused) Level() event.Level { return event.Warn }

// Boundary implements event.Boundary.
func (e RunPaused) Boundary() event.Bound { return event.Bound{Phase: event.RunPaused, Step: e.Step} }

// RunInterrupted: a signal stopped the run during Step; the clean-up steps
// run.
type RunInterrupted struct {
	Step string `json:"step"`
}

// Name implements event.Event.
func (RunInterrupted) Name() string { return "run.interrupted" }

// Message implements event.Event.
func (RunInterrupted) Message() string {
	return "interrupted: running clean-up (always) steps; the state is resumable"
}

// Level implements event.Leveler.
func (RunInterrupted) Level() event.Level { return event.Warn }

// Durability implements event.Durable.
func (RunInterrupted) Durability() event.Durability { return event.Synced }

// Boundary implements event.Boundary.
func (e RunInterrupted) Boundary() event.Bound {
	return event.Bound{Phase: event.RunInterrupted, Step: e.Step}
}

// StepStart: a step begins (its first attempt).
type StepStart struct {
	Kind  string `json:"kind"`
	Title string `json:"title"`
}

// Name implements event.Event.
func (StepStart) Name() string { return "step.start" }

// Message implements event.Event.
func (e StepStart) Message() string { return e.Title }

// Boundary implements event.Boundary.
func (e StepStart) Boundary() event.Bound {
	return event.Bound{Phase: event.StepStart, Kind: e.Kind, Title: e.Title}
}

// StepSkip: the step's when is false.
type StepSkip struct {
	When string `json:"when"`
}

// Name implements event.Event.
func (StepSkip) Name() string { return "step.skip" }

// Message implements event.Event.
func (e StepSkip) Message() string { return fmt.Sprintf("skipped: %s is false", e.When) }

// Boundary implements event.Boundary.
func (e StepSkip) Boundary() event.Bound { return event.Bound{Phase: event.StepSkip, When: e.When} }

// StepRetry: an attempt failed; the next begins after Delay.
type StepRetry struct {
	Attempt  int           `json:"attempt"`
	Delay    time.Duration `json:"delay"`
	Error    string        `json:"error"`
	Attempts int           `json:"-"`
}

// Name implements event.Event.
func (StepRetry) Name() string { return "step.retry" }

// Message implements event.Event.
func (e StepRetry) Message() string {
	return fmt.Sprintf("attempt %d of %d failed; retrying in %s", e.Attempt, e.Attempts, e.Delay)
}

// Level implements event.Leveler.
func (StepRetry) Level() event.Level { return event.Warn }

// Boundary implements event.Boundary.
func (e StepRetry) Boundary() event.Bound {
	return event.Bound{Phase: event.StepRetry, Attempt: e.Attempt, Attempts: e.Attempts, Delay: e.Delay, Error: e.Error}
}

// StepEnd: a step ended (succeeded or failed), with its outputs (long lists
// counted, not copied).
type StepEnd struct {
	Step     string         `json:"step"`
	Status   string         `json:"status"`
	Duration time.Duration  `json:"duration"`
	Outputs  map[string]any `json:"outputs"`
	Error    string         `json:"error,omitempty"`
}

// Name implements event.Event.
func (StepEnd) Name() string { return "step.end" }

// Message implements event.Event.
func (e StepEnd) Message() string { return e.Step + " " + e.Status }

// Level implements event.Leveler.
func (e StepEnd) Level() event.Level {
	if e.Error != "" {
		return event.Error
	}
	return event.Info
}

// Durability implements event.Durable: the step's lines go to disk while
// the next step starts (see auditWriter.flush).
func (StepEnd) Durability() event.Durability { return event.Background }

// Boundary implements event.Boundary.
func (e StepEnd) Boundary() event.Bound {
	return event.Bound{Phase: event.StepEnd, Step: e.Step, Status: e.Status, Duration: e.Duration, Error: e.Error}
}

// Detail implements event.Detailer: the outputs.
func (e StepEnd) Detail() string {
	if len(e.Outputs) == 0 {
		return ""
	}
	b, err := json.Marshal(e.Outputs)
	if err != nil {
		return ""
	}
	return "outputs: " + string(b)
}

// StepFailureIgnored: a step failed and on_failure: continue lets the run
// go on.
type StepFailureIgnored struct {
	Step string `json:"step"`
}

// Name implements event.Event.
func (StepFailureIgnored) Name() string { return "step.failure_ignored" }

// Message implements event.Event.
func (StepFailureIgnored) Message() string { return "step failed; on_failure: continue" }

// Level implements event.Leveler.
func (StepFailureIgnored) Level() event.Level { return event.Warn }

// Problem implements event.Problem.
func (e StepFailureIgnored) Problem() (event.Issue, bool) {
	return event.Issue{Level: event.Warn, Message: fmt.Sprintf("the failure of %s is ignored (on_failure: continue)", e.Step)}, true
}

// StepSettled: resume settled the work an interrupted step left in doubt,
// by asking the server (Outcome committed or aborted) or as the operator
// said (took-effect, rerun).
type StepSettled struct {
	Step string `json:"step"`
	// Unit is the unit of the step's work settled; XID its transaction in
	// flight, when there was one.
	Unit    string  `json:"unit"`
	XID     *uint64 `json:"xid,omitempty"`
	Outcome string  `json:"outcome"`
	Text    string  `json:"message"`
}

// Name implements event.Event.
func (StepSettled) Name() string { return "step.settled" }

// Message implements event.Event.
func (e StepSettled) Message() string { return e.Text }

// Level implements event.Leveler.
func (e StepSettled) Level() event.Level {
	if e.Outcome == "took-effect" || e.Outcome == "rerun" {
		return event.Warn
	}
	return event.Info
}

// Problem implements event.Problem: what resume found is shown.
func (e StepSettled) Problem() (event.Issue, bool) {
	return event.Issue{Level: e.Level(), Message: e.Step + ": " + e.Text}, true
}

// TxTerminated: resume ended the transaction a dead run left open on the
// server.
type TxTerminated struct {
	Step       string `json:"step"`
	BackendPID uint32 `json:"backend_pid"`
}

// Name implements event.Event.
func (TxTerminated) Name() string { return "tx.terminated" }

// Message implements event.Event.
func (TxTerminated) Message() string { return "ended the dead run's open transaction" }

// Level implements event.Leveler.
func (TxTerminated) Level() event.Level { return event.Warn }

// Problem implements event.Problem.
func (e TxTerminated) Problem() (event.Issue, bool) {
	return event.Issue{Level: event.Warn, Message: fmt.Sprintf("%s: ended the dead run's open transaction (backend pid %d)", e.Step, e.BackendPID)}, true
}

// SessionsEnded: a resume ended the sessions the run's last invocation left
// running on a connection (a statement whose client was killed runs on);
// Error says why it could not end them all.
type SessionsEnded struct {
	Conn     string `json:"conn"`
	Sessions int    `json:"sessions"`
	Error    string `json:"error,omitempty"`
}

// Name implements event.Event.
func (SessionsEnded) Name() string { return "conn.orphans.ended" }

// Message implements event.Event.
func (e SessionsEnded) Message() string {
	if e.Error != "" {
		return fmt.Sprintf("connection %s: the sessions the last invocation left running were not all ended: %s", e.Conn, e.Error)
	}
	return fmt.Sprintf("connection %s: ended %d session(s) the last invocation left running", e.Conn, e.Sessions)
}

// Level implements event.Leveler.
func (e SessionsEnded) Level() event.Level { return event.Warn }

// Problem implements event.Problem: the operator sees it.
func (e SessionsEnded) Problem() (event.Issue, bool) {
	return event.Issue{Level: event.Warn, Message: e.Message()}, true
}

// ConnOpen: a connection's session was opened.
type ConnOpen struct {
	Conn     string `json:"conn"`
	Host     string `json:"host"`
	Port     uint16 `json:"port"`
	Database string `json:"database"`
	User     string `json:"user"`
	Version  string `json:"server_version"`
	SystemID string `json:"system_identifier"`
}

// Name implements event.Event.
func (ConnOpen) Name() string { return "conn.open" }

// Message implements event.Event.
func (ConnOpen) Message() string { return "connected" }

// Detail implements event.Detailer.
func (e ConnOpen) Detail() string {
	return fmt.Sprintf("connected %s: %s as %s on %s:%d, PostgreSQL %s", e.Conn, e.Database, e.User, e.Host, e.Port, e.Version)
}

// LogTruncated records a torn last line found when the audit log was opened
// for appending (docs/audit.md): the first line a process writes after it.
type LogTruncated struct {
	TornBytes  int    `json:"torn_bytes"`
	TornSHA256 string `json:"torn_sha256"`
	Path       string `json:"-"`
}

// Name implements event.Event.
func (LogTruncated) Name() string { return EventTruncated }

// Message implements event.Event.
func (e LogTruncated) Message() string {
	return fmt.Sprintf("the audit log %s ended in a torn line (%d bytes: a write cut short); it is kept, and the chain continues from the last complete line", e.Path, e.TornBytes)
}

// Level implements event.Leveler.
func (LogTruncated) Level() event.Level { return event.Warn }

// Durability implements event.Durable.
func (LogTruncated) Durability() event.Durability { return event.Synced }

// Problem implements event.Problem.
func (e LogTruncated) Problem() (event.Issue, bool) {
	return event.Issue{Level: event.Warn, Message: e.Message()}, true
}
