package executor

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/internal/event"
	"github.com/runbookhq/runbook/internal/exitcode"
)

// A report is built in two parts: BuildReport reads the state and the audit
// log (each line decoded into its typed event) into a Report value, which
// says what happened; WriteMarkdown (report_markdown.go) renders it.

// ReportOptions say what runbook report reads.
type ReportOptions struct {
	// Store is the run's state; nil for the file store at StatePath.
	Store Store
	// StatePath is the run's state file (when Store is nil).
	StatePath string
	// LogPath is the audit log the run appended to; "" reports from the state
	// alone.
	LogPath string
	// MaxStatements bounds the generated statements listed per step (the rest
	// are counted); 0 means 10.
	MaxStatements int
	// MaxOutput bounds the lines of a failed command's stderr shown; 0 means 10.
	MaxOutput int
}

// Report is a run told for a change ticket: the state's final word on every
// step, and the audit log's account of every invocation (run.start … run.end) of
// the state's run id.
type Report struct {
	Status   *Status
	Servers  map[string]Server
	Secrets  []string
	Approved map[string]Approve
	// Plan is the id of the sealed plan the run executed, PlanFile the plan
	// file as given (run --plan); "" for none.
	Plan, PlanFile string
	LogPath        string
	Verify         *VerifyResult
	Invocations    []*ReportInvocation
	// LogLines counts the log lines of this run (other runs' lines are not
	// used).
	LogLines int
	opts     ReportOptions
	pending  []ReportNote // notes for the next invocation
}

// ReportInvocation is one process's part of the run: from its run.start to its
// run.end (if it got there).
type ReportInvocation struct {
	N         int
	FirstLine int
	LastLine  int
	// HasRunStart is false for events logged without a run.start before them.
	HasRunStart bool
	Resume      bool
	Operator    string
	Host        string
	Version     string
	Ticket      string
	Digest      string
	// Plan is the sealed plan the invocation executed (run --plan).
	Plan     string
	Runbook  string
	Params   map[string]string
	Started  time.Time
	Ended    time.Time
	Outcome  string // "" when the invocation has no run.end
	Error    string
	Duration time.Duration
	// FirstTime and LastTime are the times of the invocation's first and last
	// events (its span on the timeline when it has no run.start or run.end).
	FirstTime, LastTime time.Time
	Steps               []*ReportStep
	// Notes are the run-level events: connections, a pause, an
	// interruption, a torn log line, events of no step.
	Notes    []ReportNote
	stepByID map[string]*ReportStep
}

// ReportNote is a run-level event of an invocation.
type ReportNote struct {
	Event event.Event
	// Line is the log line of the event (for a log.truncated: the line that
	// records the torn one).
	Line int
	// Message is the line's message, as logged.
	Message string
	// Time is when the event was logged.
	Time time.Time
}

// ReportStep is what one step did in one invocation.
type ReportStep struct {
	ID       string
	Kind     string
	Title    string
	Status   string // from step.end; skipped; or what stopped it
	Attempts int
	Duration time.Duration
	HasDur   bool
	Error    string
	// Rejected is the step's rejection (a confirm step refused).
	Rejected *actions.ConfirmRejected
	// Entries are what the step did, in order: the events the report tells,
	// and the commands it ran.
	Entries []ReportEntry
	// GenListed of the generated statements are entries; GenTotal ran in
	// all, affecting GenRows rows.
	GenListed, GenTotal int
	GenRows             int64
	genOf               int64
	// Copied lists a copy step's tables in the order their first part
	// committed: parts, rows and bytes over every attempt and run.
	Copied []*ReportCopied
	copied map[string]*ReportCopied
	// The step on the timeline (filled by timeline): Start is its first
	// step.start (or step.skip), End its step.end (zero without one);
	// Spans its attempts; Marks what happened at an instant (an approval,
	// a failure, a retry, a pause); Parts the lanes of its parallel work,
	// in order of appearance.
	Start, End time.Time
	Spans      []ReportSpan
	Marks      []ReportMark
	Parts      []*ReportPart
	// commands started and not yet exited, by stage; stages is the largest
	// stage number among them.
	running map[int]*ReportCommand
	stages  int
}

// ReportCopied is what a copy step copied of one table.
type ReportCopied struct {
	Table       string
	Parts       int
	Rows, Bytes int64
	// Busy is the parts' COPY time summed (parts run in parallel).
	Busy time.Duration
}

// ReportEntry is one thing a step did: an event, or a command.
type ReportEntry struct {
	Event event.Event
	// Of is the length of the generated list, for a generate.statement (0
	// when unknown).
	Of int64
	// Command is a command's run, from its cmd.start to its cmd.exit.
	Command *ReportCommand
}

// ReportCommand is a command (or a stage of a pipe) and how it ended.
type ReportCommand struct {
	Stage int
	Argv  []string
	// Staged is set when the command was one stage of several.
	Staged bool
	// Exit is nil when the log holds no exit: the process stopped while the
	// command ran.
	Exit *actions.CmdExit
	// Stderr are its last lines of standard error (up to MaxOutput), of
	// StderrLines.
	Stderr      []string
	StderrLines int
}

// BuildReport reads a run's state and, when given, its audit log.
func BuildReport(o ReportOptions) (*Report, error) {
	if o.MaxStatements <= 0 {
		o.MaxStatements = 10
	}
	if o.MaxOutput <= 0 {
		o.MaxOutput = 10
	}
	store := o.Store
	if store == nil {
		store = NewFileStore(o.StatePath)
	}
	st, err := ReadStatus(store)
	if err != nil {
		return nil, err
	}
	r := &Report{Status: st, LogPath: o.LogPath, opts: o}
	if full, err := loadState(store); err == nil && full != nil {
		r.Servers, r.Secrets, r.Approved = full.Servers, full.Secrets, full.Approved
		r.Plan, r.PlanFile = full.Plan, full.PlanFile
	}
	if o.LogPath == "" {
		return r, nil
	}
	res, verr := VerifyLog(o.LogPath)
	if verr != nil && res.Bad == nil {
		return nil, verr // unreadable
	}
	r.Verify = &res
	if err := r.readLog(); err != nil {
		return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("audit log %s: %w", o.LogPath, err))
	}
	return r, nil
}

// readLog collects the invocations of the state's run id.
func (r *Report) readLog() error {
	f, err := os.Open(r.LogPath)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var cur *ReportInvocation
	lineNo := 0
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			lineNo++
			if rec, derr := event.Decode(line); derr == nil && rec.RunID == r.Status.RunID {
				r.LogLines++
				cur = r.add(cur, rec, lineNo)
			}
		}
		if errors.Is(err, io.EOF) {
			r.finish()
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// finish files the commands whose exit the log does not hold (the process
// stopped while they ran), and notes left for an invocation that never came.
func (r *Report) finish() {
	if len(r.pending) > 0 && len(r.Invocations) > 0 {
		last := r.Invocations[len(r.Invocations)-1]
		last.Notes = append(last.Notes, r.pending...)
	}
	for _, s := range r.Invocations {
		for _, st := range s.Steps {
			stages := make([]int, 0, len(st.running))
			for n := range st.running {
				stages = append(stages, n)
			}
			sort.Ints(stages)
			for _, n := range stages {
				c := st.running[n]
				c.Staged = false
				st.Entries = append(st.Entries, ReportEntry{Command: c})
			}
			st.running = nil
		}
	}
}

// add files one event of the run into the report.
func (r *Report) add(cur *ReportInvocation, rec event.Record, line int) *ReportInvocation {
	ev := rec.Event
	if _, ok := ev.(LogTruncated); ok {
		// Written as a process opens the log, before its run.start: it
		// belongs to the invocation that follows.
		r.pending = append(r.pending, ReportNote{Event: ev, Line: line, Message: rec.Message, Time: rec.Time})
		return cur
	}
	start, isStart := ev.(RunStart)
	if cur == nil || isStart {
		cur = &ReportInvocation{N: len(r.Invocations) + 1, FirstLine: line, FirstTime: rec.Time, stepByID: map[string]*ReportStep{}, Notes: r.pending}
		r.pending = nil
		r.Invocations = append(r.Invocations, cur)
	}
	cur.LastLine, cur.LastTime = line, rec.Time
	s := cur
	switch e := ev.(type) {
	case RunStart:
		s.HasRunStart = true
		s.Operator, s.Host, s.Version, s.Ticket = start.Operator, start.Host, start.Version, start.Ticket
		s.Runbook, s.Digest, s.Resume, s.Started = start.Runbook, start.Digest, start.Resume, rec.Time
		s.Params, s.Plan = start.Params, start.Plan
		return cur
	case RunEnd:
		s.Outcome, s.Error, s.Ended, s.Duration = e.Outcome, e.Error, rec.Time, e.Duration
		return cur
	case ConnOpen, PlanApplied, SessionsEnded:
		s.Notes = append(s.Notes, ReportNote{Event: ev, Line: line, Message: rec.Message, Time: rec.Time})
		return cur
	case RunPaused, RunInterrupted:
		s.Notes = append(s.Notes, ReportNote{Event: ev, Line: line, Message: rec.Message, Time: rec.Time})
	}
	id := rec.Step
	if id == "" {
		switch ev.(type) {
		case RunPaused, RunInterrupted:
		default:
			s.Notes = append(s.Notes, ReportNote{Event: ev, Line: line, Message: rec.Message, Time: rec.Time})
		}
		return cur
	}
	st := s.stepByID[id]
	if st == nil {
		st = &ReportStep{ID: id}
		s.stepByID[id] = st
		s.Steps = append(s.Steps, st)
	}
	r.addStepEvent(st, ev)
	st.timeline(ev, rec.Time)
	return cur
}

func (r *Report) addStepEvent(st *ReportStep, ev event.Event) {
	entry := func() { st.Entries = append(st.Entries, ReportEntry{Event: ev}) }
	switch e := ev.(type) {
	case StepStart:
		st.Kind, st.Title, st.Attempts = e.Kind, e.Title, st.Attempts+1
	case StepSkip:
		st.Status = Skipped
		entry()
	case StepRetry:
		st.Attempts++
		entry()
	case StepEnd:
		st.Status, st.Error = e.Status, e.Error
		st.Duration, st.HasDur = e.Duration, true
	case StepFailureIgnored, StepSettled, TxTerminated, actions.SQLStatement, actions.SQLFailure, actions.SQLNotice,
		actions.SQLEmpty, actions.GenerateRerun, actions.GenerateAutocommit, actions.AssertResult, actions.ConfirmApproved,
		actions.ConfirmRefused, actions.GenerateBound, PlanUnbound:
		entry()
	case actions.ConfirmRejected:
		st.Rejected = &e
		entry()
		entry()
	case RunPaused:
		if st.Status == "" {
			st.Status = "waiting for approval"
		}
	case RunInterrupted:
		if st.Status == "" {
			st.Status = "interrupted"
		}
	case actions.CmdStart:
		// The cmd.exit tells the command's story, with the argv kept from
		// here.
		if st.running == nil {
			st.running = map[int]*ReportCommand{}
		}
		if len(st.running) == 0 {
			st.stages = 0
		}
		st.running[e.Stage] = &ReportCommand{Stage: e.Stage, Argv: e.Argv}
		st.stages = max(st.stages, e.Stage)
	case actions.CmdExit:
		c := st.running[e.Stage]
		delete(st.running, e.Stage)
		if c == nil {
			c = &ReportCommand{Stage: e.Stage}
		}
		exit := e
		c.Exit, c.Staged = &exit, st.stages > 1
		st.Entries = append(st.Entries, ReportEntry{Command: c})
	case actions.CmdStderr:
		if c := st.running[e.Stage]; c != nil {
			c.StderrLines++
			c.Stderr = append(c.Stderr, e.Line)
			if len(c.Stderr) > r.opts.MaxOutput {
				c.Stderr = c.Stderr[1:]
			}
		}
	case actions.CopyPartEnd:
		c := st.copied[e.Table]
		if c == nil {
			if st.copied == nil {
				st.copied = map[string]*ReportCopied{}
			}
			c = &ReportCopied{Table: e.Table}
			st.copied[e.Table] = c
			st.Copied = append(st.Copied, c)
		}
		c.Parts++
		c.Rows += e.Rows
		c.Bytes += e.Bytes
		c.Busy += e.Duration
	case actions.CopyPhase:
		if e.Resumed {
			entry()
		}
	case actions.CopyDone:
		entry()
	case actions.GenerateQuery:
		st.genOf = int64(e.Statements)
		entry()
	case actions.GenerateResume:
		st.genOf = int64(e.Statements)
		entry()
	case actions.GenerateStatement:
		st.GenTotal++
		st.GenRows += e.Rows
		if st.GenListed < r.opts.MaxStatements {
			st.GenListed++
			st.Entries = append(st.Entries, ReportEntry{Event: ev, Of: st.genOf})
		}
	}
}

// ReportSpan is a stretch of time on the timeline: an attempt of a step, or
// a part's work. End is zero when the log holds no end (the process stopped,
// or the step waits for approval): it lasts until its invocation's end.
type ReportSpan struct {
	Start, End time.Time
	// Failed: the attempt (or the part) failed.
	Failed bool
	// Interrupted: a signal stopped the run during the span; End is when.
	Interrupted bool
}

// ReportMark is something that happened at an instant of a step.
type ReportMark struct {
	Time time.Time
	Kind MarkKind
	// Part is the lane the mark belongs to ("" for the step's own row).
	Part string
	// Text says what happened, in a line (a tooltip on the timeline).
	Text string
}

// MarkKind is what a ReportMark marks.
type MarkKind string

const (
	MarkApproval  MarkKind = "approval"
	MarkFailure   MarkKind = "failure"
	MarkRetry     MarkKind = "retry"
	MarkSkip      MarkKind = "skip"
	MarkPause     MarkKind = "pause"
	MarkInterrupt MarkKind = "interrupt"
)

// ReportPart is a lane of a step: one part of its parallel work, and the
// spans it was worked on (more than one when it began again).
type ReportPart struct {
	Name  string
	Spans []ReportSpan
}

// timeline files an event of the step, logged at at, into the step's
// spans, marks and lanes.
func (st *ReportStep) timeline(ev event.Event, at time.Time) {
	mark := func(kind MarkKind, part, text string) {
		st.Marks = append(st.Marks, ReportMark{Time: at, Kind: kind, Part: part, Text: text})
	}
	open := func() *ReportSpan {
		if n := len(st.Spans); n > 0 && st.Spans[n-1].End.IsZero() {
			return &st.Spans[n-1]
		}
		return nil
	}
	switch e := ev.(type) {
	case StepStart:
		if st.Start.IsZero() {
			st.Start = at
		}
		st.Spans = append(st.Spans, ReportSpan{Start: at})
	case StepSkip:
		st.Start, st.End = at, at
		mark(MarkSkip, "", ev.Message())
	case StepRetry:
		if sp := open(); sp != nil {
			sp.End, sp.Failed = at, true
		}
		// The next attempt begins after the delay; no event says so.
		st.Spans = append(st.Spans, ReportSpan{Start: at.Add(e.Delay)})
		st.Marks = append(st.Marks, ReportMark{Time: at.Add(e.Delay), Kind: MarkRetry,
			Text: fmt.Sprintf("attempt %d failed (%s), retried after %s", e.Attempt, oneLine(e.Error), fmtDur(e.Delay))})
	case StepEnd:
		failed := e.Status == Failed
		if sp := open(); sp != nil {
			sp.End, sp.Failed = at, failed
		}
		st.End = at
		if failed && !st.failureMarked() {
			mark(MarkFailure, "", "step failed: "+oneLine(e.Error))
		}
	case RunPaused:
		mark(MarkPause, "", "waiting for approval")
	case RunInterrupted:
		mark(MarkInterrupt, "", "interrupted by a signal")
		if sp := open(); sp != nil {
			sp.End, sp.Interrupted = at, true
		}
		for _, p := range st.Parts {
			if n := len(p.Spans); n > 0 && p.Spans[n-1].End.IsZero() {
				p.Spans[n-1].End, p.Spans[n-1].Interrupted = at, true
			}
		}
	case actions.ConfirmApproved:
		mark(MarkApproval, "", fmt.Sprintf("approved by %s (%s)", e.By, e.How))
	}
	part := ""
	if p, ok := ev.(event.Parted); ok {
		pt := p.PartOf()
		part = pt.Name
		lane := st.lane(pt.Name)
		n := len(lane.Spans)
		switch {
		case pt.Phase == event.PartBegin:
			lane.Spans = append(lane.Spans, ReportSpan{Start: at})
		case pt.Phase == event.PartEnd && n > 0 && lane.Spans[n-1].End.IsZero():
			lane.Spans[n-1].End, lane.Spans[n-1].Failed = at, pt.Failed
		case pt.Phase == event.PartEnd:
			// An end without its beginning: from the step's start.
			lane.Spans = append(lane.Spans, ReportSpan{Start: st.Start, End: at, Failed: pt.Failed})
		}
	}
	if _, isEnd := ev.(StepEnd); !isEnd && event.LevelOf(ev) == event.Error {
		mark(MarkFailure, part, oneLine(ev.Message()))
	}
}

// failureMarked reports whether the step's current attempt already has a
// failure mark.
func (st *ReportStep) failureMarked() bool {
	var since time.Time
	if n := len(st.Spans); n > 0 {
		since = st.Spans[n-1].Start
	}
	for _, m := range st.Marks {
		if m.Kind == MarkFailure && !m.Time.Before(since) {
			return true
		}
	}
	return false
}

// lane returns the step's lane of the named part, added when new.
func (st *ReportStep) lane(name string) *ReportPart {
	for _, p := range st.Parts {
		if p.Name == name {
			return p
		}
	}
	p := &ReportPart{Name: name}
	st.Parts = append(st.Parts, p)
	return p
}
