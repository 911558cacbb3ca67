// Package event defines what a run tells: typed events, each declared by the
// code that emits it (the executor's in executor, each action's next to the
// action), and consumed by the console, the audit log and the report.
//
// An event is a Go value whose exported fields, named by their json tags, are
// its fields in a log line, in declaration order:
//
//	{"level":"info","run_id":"…","step":"load","event":"sql.statement","statement":1,"sql":"…","rows":3,"duration":0.42,"time":"…","message":"statement"}
//
// level, run_id, step, event, time and message are the line's envelope; the
// rest are the event's. A field tagged json:"message" is the message itself.
// time.Duration fields are written in milliseconds (a float), time.Time
// fields in RFC 3339 with nanoseconds. A registry maps each name back to its
// type, so that a log line decodes into the event that wrote it (Decode).
//
// Consumers learn what an event is about from the optional interfaces it
// implements, never from its name: Leveler (its level), Boundary (a run or a
// step begins or ends), Progressor (how far a piece of work is: shown live,
// never logged), Problem (a warning or an error with its position and
// SQLSTATE), Detailer (text shown on demand), Durable (the audit log is
// flushed to disk after it) and Parted (one part of a step's parallel work:
// a lane on the HTML report's timeline).
package event

import (
	"time"
)

// Event is one thing that happened during a run.
type Event interface {
	// Name is the event's name in the log: "step.end", "sql.statement".
	Name() string
	// Message is the line's human summary (its "message" field).
	Message() string
}

// Sink receives the events of a run (or of one step of it).
type Sink interface {
	// Emit records the event. It does not fail: a sink that cannot write
	// (a full disk) reports that its own way.
	Emit(Event)
	// Live reports whether somebody watches the run as it happens (a
	// terminal): emitters skip the work of measuring progress otherwise.
	Live() bool
}

// Discard is a Sink that drops every event.
var Discard Sink = discard{}

type discard struct{}

func (discard) Emit(Event) {}
func (discard) Live() bool { return false }

// Level is an event's level, its "level" field.
type Level int8

const (
	Info Level = iota
	Warn
	Error
)

// String returns the level as it is written: info, warn, error.
func (l Level) String() string {
	switch l {
	case Warn:
		return "warn"
	case Error:
		return "error"
	}
	return "info"
}

// ParseLevel reads a level as it is written; anything unknown is Info.
func ParseLevel(s string) Level {
	switch s {
	case "warn", "warning":
		return Warn
	case "error", "fatal", "panic":
		return Error
	}
	return Info
}

// Leveler is implemented by events whose level is not Info (or depends on
// what happened: a failed command's exit is an error).
type Leveler interface {
	Level() Level
}

// LevelOf returns ev's level: its Level(), or Info.
func LevelOf(ev Event) Level {
	if l, ok := ev.(Leveler); ok {
		return l.Level()
	}
	return Info
}

// Record is an event with its envelope: when it happened, in which run and
// step. Decode returns one per log line.
type Record struct {
	Level Level
	Time  time.Time
	RunID string
	// Step is the step the event belongs to ("" for a run's events).
	Step    string
	Message string
	Event   Event
}

// Unknown is an event whose name no registered type has (a line of a newer
// runbook, or not of runbook's): its fields as decoded.
type Unknown struct {
	Event  string
	Msg    string
	Fields map[string]any
}

// Name implements Event.
func (u Unknown) Name() string { return u.Event }

// Message implements Event.
func (u Unknown) Message() string { return u.Msg }

// Durability says what the audit log does after an event: nothing more (the
// line rides on the next flush), an fsync in the background that the state's
// next fsync waits for, or an fsync before the run goes on.
type Durability int8

const (
	Buffered Durability = iota
	Background
	Synced
)

// Durable is implemented by events after which the audit log is flushed.
type Durable interface {
	Durability() Durability
}

// DurabilityOf returns ev's durability: its Durability(), or Buffered.
func DurabilityOf(ev Event) Durability {
	if d, ok := ev.(Durable); ok {
		return d.Durability()
	}
	return Buffered
}

// Outputter is implemented by the lines of a child process's output.
// Consoles show them on demand, and the last lines of standard error of a
// step that fails.
type Outputter interface {
	Output() Output
}

// Output is a line a child process wrote.
type Output struct {
	// Source names the process (a pipe stage's name).
	Source string
	Stderr bool
	Line   string
}

// Detailer is implemented by events that have more to show than their
// message: a statement's text, a line of a command's output. Consoles show
// it on demand (-v); logs always have every field.
type Detailer interface {
	Detail() string
}
