package event

import "time"

// Phase is the moment of a run or a step that a Boundary event marks.
type Phase int8

const (
	RunStart Phase = iota + 1
	RunEnd
	// RunPaused: the run stopped at a confirm step nobody could approve.
	RunPaused
	// RunInterrupted: a signal stopped the run; clean-up steps run.
	RunInterrupted
	StepStart
	StepEnd
	StepSkip
	// StepRetry: an attempt failed and the step is tried again.
	StepRetry
)

// Boundary is implemented by the events that begin or end a run or a step.
type Boundary interface {
	Boundary() Bound
}

// Bound describes a Boundary event; which fields are set depends on Phase.
type Bound struct {
	Phase Phase
	// Step is the step (step phases, RunPaused, RunInterrupted).
	Step string
	// Kind and Title describe a starting step.
	Kind, Title string
	// Status is a step's end status (succeeded, failed); Outcome a run's
	// (succeeded, failed, interrupted, approval-required, refused).
	Status, Outcome string
	// When is the condition that skipped a step.
	When string
	// Duration is a step's or a run's, at its end.
	Duration time.Duration
	// Error is what failed: a step's or a run's error, a retried attempt's.
	Error string
	// Attempt failed, of Attempts; the next begins after Delay (StepRetry).
	Attempt, Attempts int
	Delay             time.Duration
	// Runbook, RunID, State and Resume describe a starting run; Steps is
	// how many steps the runbook has, Done how many an earlier invocation of
	// the run completed.
	Runbook, RunID, State string
	Resume                bool
	Steps, Done           int
	// ResumeCommand is the command that continues the run, at its end
	// ("" when there is nothing to continue).
	ResumeCommand string
}

// Progressor is implemented by events that tell how far a piece of work is
// (a pipe's bytes, generated statements done). They are live: consoles show
// them as they come; logs do not record them (a step's end has the totals).
type Progressor interface {
	Progress() Progress
}

// Progress is how far a piece of work is.
type Progress struct {
	// Done of Total units; Total 0 when unknown.
	Done, Total int64
	// Estimated marks Total as an estimate (a pipe's size guessed from the
	// database's): Done may pass it.
	Estimated bool
	// Unit is "bytes" (shown as sizes) or a plural noun ("statements").
	Unit string
	// Rate is units per second; 0 when the emitter does not know it (the
	// consumer then measures it).
	Rate float64
	// Also are further counts shown after the main one: parts, rows, busy
	// workers.
	Also []Count
}

// Count is one more figure of a Progress: Done of Total (Total 0: unknown)
// Label ("parts", "rows", "workers busy").
type Count struct {
	Label       string
	Done, Total int64
}

// Problem is implemented by events that can report a warning or an error
// an operator must see: a server WARNING, a failed statement.
type Problem interface {
	// Problem returns the issue, and false when this event reports none
	// (a NOTICE is not a problem; a WARNING is).
	Problem() (Issue, bool)
}

// Issue is a warning or an error, with where it happened.
type Issue struct {
	Level Level
	// Message is the text, in full.
	Message string
	// SQLSTATE is the server's error code, if the server reported the issue.
	SQLSTATE string
	// Position is FILE:LINE:COL in the runbook (or its SQL file), if known.
	Position     string
	Detail, Hint string
}

// Parted is implemented by the events of one part of a step's work when the
// step works on several parts at once (a parallel copy's tables, say: a
// part.start and a part.end event per table). The HTML report draws a lane
// per part under the step on its timeline, from whatever parted events the
// log holds.
type Parted interface {
	PartOf() Part
}

// Part says which part an event is about, and where in the part's life it
// stands.
type Part struct {
	// Name names the part within its step ("public.orders").
	Name  string
	Phase PartPhase
	// Failed is set on the PartEnd of a part that failed.
	Failed bool
}

// PartPhase is where in a part's life its event stands.
type PartPhase int8

const (
	// PartWithin: the event happened during the part (progress, a notice).
	PartWithin PartPhase = iota
	// PartBegin: the part begins.
	PartBegin
	// PartEnd: the part ends.
	PartEnd
)
