package actions

import (
	"fmt"
	"strings"
	"time"

	"github.com/runbookhq/runbook/internal/event"
)

// The events of the shell action: each stage's start, output lines and
// exit, and (live, on a terminal) the bytes a pipe moves.

func init() {
	event.MustRegister(CmdStart{}, CmdStdout{}, CmdStderr{}, CmdExit{})
}

// CmdStart: a command (a stage of a pipe) starts.
type CmdStart struct {
	Stage int      `json:"stage"` // from 1
	Cmd   string   `json:"name"`
	Argv  []string `json:"argv"`
}

// Name implements event.Event.
func (CmdStart) Name() string { return "cmd.start" }

// Message implements event.Event.
func (e CmdStart) Message() string {
	return fmt.Sprintf("stage %d: %s", e.Stage, strings.Join(e.Argv, " "))
}

// Detail implements event.Detailer.
func (e CmdStart) Detail() string { return "$ " + strings.Join(e.Argv, " ") }

// CmdStdout is a line of the last stage's standard output.
type CmdStdout struct {
	Stage int    `json:"stage"`
	Cmd   string `json:"name"`
	Line  string `json:"message"`
}

// Name implements event.Event.
func (CmdStdout) Name() string { return "cmd.stdout" }

// Message implements event.Event.
func (e CmdStdout) Message() string { return e.Line }

// Detail implements event.Detailer.
func (e CmdStdout) Detail() string { return e.Cmd + " │ " + e.Line }

// Output implements event.Outputter.
func (e CmdStdout) Output() event.Output { return event.Output{Source: e.Cmd, Line: e.Line} }

// CmdStderr is a line of a stage's standard error.
type CmdStderr struct {
	Stage int    `json:"stage"`
	Cmd   string `json:"name"`
	Line  string `json:"message"`
}

// Name implements event.Event.
func (CmdStderr) Name() string { return "cmd.stderr" }

// Message implements event.Event.
func (e CmdStderr) Message() string { return e.Line }

// Detail implements event.Detailer.
func (e CmdStderr) Detail() string { return e.Cmd + " ! " + e.Line }

// Output implements event.Outputter.
func (e CmdStderr) Output() event.Output {
	return event.Output{Source: e.Cmd, Stderr: true, Line: e.Line}
}

// CmdExit: a stage ended (or could not start).
type CmdExit struct {
	Stage      int           `json:"stage"`
	Cmd        string        `json:"name"`
	StartError string        `json:"start_error,omitempty"`
	ExitCode   int           `json:"exit_code"`
	Signal     string        `json:"signal"`
	Duration   time.Duration `json:"duration"`
}

// Name implements event.Event.
func (CmdExit) Name() string { return "cmd.exit" }

// Failed reports whether the stage counts as failed.
func (e CmdExit) Failed() bool { return e.StartError != "" || e.Signal != "" || e.ExitCode != 0 }

// Message implements event.Event.
func (e CmdExit) Message() string {
	var how string
	switch {
	case e.StartError != "":
		how = "did not start: " + e.StartError
	case e.Signal != "":
		how = "killed by signal " + e.Signal
	default:
		how = fmt.Sprintf("exited with status %d", e.ExitCode)
	}
	return fmt.Sprintf("stage %d (%s) %s", e.Stage, e.Cmd, how)
}

// Level implements event.Leveler.
func (e CmdExit) Level() event.Level {
	if e.Failed() {
		return event.Error
	}
	return event.Info
}

// Detail implements event.Detailer.
func (e CmdExit) Detail() string {
	return e.Message() + " after " + e.Duration.Round(time.Millisecond).String()
}

// CmdProgress is how many bytes a pipe moved from its first stage to the
// next, of Total (0: unknown) estimated from the size of the database the
// first stage reads. It is live: shown on a terminal, never logged.
type CmdProgress struct {
	Bytes     int64
	Total     int64
	Estimated bool
	Elapsed   time.Duration
}

// Name implements event.Event.
func (CmdProgress) Name() string { return "cmd.progress" }

// Message implements event.Event.
func (e CmdProgress) Message() string { return fmt.Sprintf("%d bytes moved", e.Bytes) }

// Progress implements event.Progressor.
func (e CmdProgress) Progress() event.Progress {
	p := event.Progress{Done: e.Bytes, Total: e.Total, Estimated: e.Estimated, Unit: "bytes"}
	if e.Elapsed > 0 {
		p.Rate = float64(e.Bytes) / e.Elapsed.Seconds()
	}
	return p
}
