// Package console shows a run to the person watching it: one line per step
// as it runs and ends, the running step's progress (how far, how fast, how
// long to go) redrawn in place on a terminal, warnings and errors in full,
// and a summary at the end with the command that resumes. Statement texts,
// notices, outputs and child output are shown on demand (Verbose); the audit
// log has everything, always.
//
// It reads typed events (internal/event) through the interfaces they
// implement: Boundary for the run's and the steps' beginnings and ends,
// Progressor, Problem, Detailer.
package console

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/runbookhq/runbook/internal/event"
	"github.com/runbookhq/runbook/internal/humanize"
)

// Options configure a Console.
type Options struct {
	// Out receives the screen. Every update is one Write.
	Out io.Writer
	// Live is set when Out is a terminal that can redraw a line in place
	// (carriage return, erase line): the running step's line is kept up to
	// date. Otherwise every line is printed once, when it is final.
	Live bool
	// Color allows ANSI colours (a terminal, NO_COLOR unset, TERM not dumb).
	Color bool
	// Width returns the terminal's width in columns (the live line is cut
	// to it); nil or ≤ 0: no limit.
	Width func() int
	// Verbose shows every event's details: statements, notices, outputs,
	// child output.
	Verbose bool
	// Mask hides secrets in any text shown (before it is cut to the width,
	// so that no part of a secret survives a cut).
	Mask func(string) string
	// Steps are the runbook's step ids, in order: steps are numbered by it.
	Steps []string
	// LogPath is the audit log (--log), named in the summary; "" for none.
	LogPath string
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
	// Tick is how often the running step is looked at when nothing happens
	// (the live line's elapsed time and spinner; a plain line when it runs
	// long); 0: every second; < 0: never.
	Tick time.Duration
	// When the output is not live, a step that runs PlainAfter (0: 5
	// seconds) gets a line saying so, with its progress, and another every
	// PlainEvery (0: 30 seconds) while it runs.
	PlainAfter, PlainEvery time.Duration
}

// Console renders the events of one run. Its methods are safe for
// concurrent use.
type Console struct {
	mu      sync.Mutex
	o       Options
	num     map[string]int
	idWidth int
	numW    int
	buf     bytes.Buffer

	started time.Time
	state   string
	cur     *stepView
	live    bool // the live line is on screen
	held    bool
	spin    int

	succeeded, skipped int
	failed             []string
	// steps in the runbook, and done in an earlier invocation of the run.
	steps, doneBefore int

	stop chan struct{}
	done chan struct{}
}

// stepView is the running step.
type stepView struct {
	id        string
	start     time.Time
	prog      *event.Progress
	progAt    time.Time
	baseAt    time.Time // the first progress: measured rates start there
	baseDone  int64
	lastPlain time.Time // when its last plain line was printed
	announced bool      // a plain line said it runs
	// stderr are the last lines of standard error of its attempt, shown
	// if it fails; stderrN counts them all.
	stderr  []event.Output
	stderrN int
}

// keepStderr is how many lines of standard error a failed step shows.
const keepStderr = 10

// New returns a console; Close it at the end of the run.
func New(o Options) *Console {
	if o.Mask == nil {
		o.Mask = func(s string) string { return s }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PlainEvery <= 0 {
		o.PlainEvery = 30 * time.Second
	}
	if o.PlainAfter <= 0 {
		o.PlainAfter = 5 * time.Second
	}
	if o.Tick == 0 {
		o.Tick = time.Second
	}
	c := &Console{o: o, num: map[string]int{}}
	for i, id := range o.Steps {
		c.num[id] = i + 1
		c.idWidth = max(c.idWidth, len([]rune(id)))
	}
	c.idWidth = min(c.idWidth, 28)
	c.numW = len(strconv.Itoa(len(o.Steps)))
	if o.Tick > 0 {
		c.stop, c.done = make(chan struct{}), make(chan struct{})
		go c.tick()
	}
	return c
}

// tick redraws the live line while a step runs, so that its elapsed time
// moves even when the step reports nothing.
func (c *Console) tick() {
	defer close(c.done)
	t := time.NewTicker(c.o.Tick)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.mu.Lock()
			if c.cur != nil && !c.held {
				c.spin++
				c.drawLive()
				c.plain(c.o.Now())
				c.flush()
			}
			c.mu.Unlock()
		}
	}
}

// Close stops redrawing and leaves the screen on a fresh line.
func (c *Console) Close() {
	c.mu.Lock()
	if c.stop != nil {
		close(c.stop)
		c.stop = nil
	}
	c.clearLive()
	c.flush()
	c.mu.Unlock()
	if c.done != nil {
		<-c.done
	}
}

// Hold clears the live line and stops drawing it, until Release: someone
// else writes to the terminal (a confirm step's question).
func (c *Console) Hold() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clearLive()
	c.held = true
	c.flush()
}

// Release draws the live line again after Hold.
func (c *Console) Release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held = false
	c.drawLive()
	c.flush()
}

// Handle renders one event.
func (c *Console) Handle(rec event.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := rec.Time
	if now.IsZero() {
		now = c.o.Now()
	}
	ev := rec.Event
	switch e := ev.(type) {
	case event.Boundary:
		b := e.Boundary()
		if b.Step == "" {
			b.Step = rec.Step
		}
		c.boundary(b, now)
		if c.o.Verbose {
			if d, ok := ev.(event.Detailer); ok {
				c.detail(d.Detail())
			}
		}
	case event.Progressor:
		c.progress(rec.Step, e.Progress(), now)
	default:
		if o, ok := ev.(event.Outputter); ok {
			c.output(rec.Step, o.Output())
		}
		if p, ok := ev.(event.Problem); ok {
			if is, ok := p.Problem(); ok && (is.Level < event.Error || c.o.Verbose) {
				c.issue(is)
				break
			}
		}
		if c.o.Verbose {
			text := ev.Message()
			if d, ok := ev.(event.Detailer); ok {
				text = d.Detail()
			}
			c.detail(text)
		}
	}
	c.flush()
}

func (c *Console) boundary(b event.Bound, now time.Time) {
	switch b.Phase {
	case event.RunStart:
		c.started, c.state = now, b.State
		c.steps, c.doneBefore = b.Steps, b.Done
		head := c.paint(bold, b.Runbook) + " · run " + b.RunID + " · " + plural(b.Steps, "step")
		if b.Resume {
			head = "resuming " + head
			if b.Done > 0 {
				head += fmt.Sprintf(" (%d done earlier)", b.Done)
			}
		}
		c.println(head)
		c.println(c.paint(dim, "  state "+b.State))
	case event.StepStart:
		c.clearLive()
		c.cur = &stepView{id: b.Step, start: now}
		c.drawLive()
	case event.StepSkip:
		c.skipped++
		c.println(c.stepLine("↷", dim, b.Step, c.paint(dim, "skipped: "+c.o.Mask(b.When)+" is false")))
	case event.StepRetry:
		if c.cur != nil {
			c.cur.stderr, c.cur.stderrN = nil, 0
		}
		c.announce()
		c.println(c.paint(yellow, fmt.Sprintf("      ! attempt %d of %d failed; retrying in %s:", b.Attempt, b.Attempts, human(b.Delay))))
		c.println(c.paint(yellow, indent(c.o.Mask(b.Error), "        ")))
	case event.StepEnd:
		c.endStep(b)
	case event.RunPaused:
		if c.cur != nil && c.cur.id == b.Step {
			c.clearLive()
			c.cur = nil
		}
		c.println(c.stepLine("⏸", yellow, b.Step, c.paint(yellow, "waiting for approval")))
	case event.RunInterrupted:
		c.println(c.paint(yellow, fmt.Sprintf("! interrupted during %s: running the clean-up (always) steps; the state is resumable", b.Step)))
	case event.RunEnd:
		c.clearLive()
		c.cur = nil
		c.summary(b, now)
	}
}

// output keeps the running step's last lines of standard error.
func (c *Console) output(step string, o event.Output) {
	s := c.cur
	if s == nil || !o.Stderr || (step != "" && step != s.id) {
		return
	}
	s.stderrN++
	s.stderr = append(s.stderr, o)
	if len(s.stderr) > keepStderr {
		s.stderr = s.stderr[1:]
	}
}

func (c *Console) endStep(b event.Bound) {
	var s *stepView
	if c.cur != nil && c.cur.id == b.Step {
		s = c.cur
		c.clearLive()
		c.cur = nil
	}
	dur := human(b.Duration)
	switch b.Status {
	case "succeeded":
		c.succeeded++
		c.println(c.stepLine("✓", green, b.Step, dur))
	case "failed":
		c.failed = append(c.failed, b.Step)
		c.println(c.stepLine("✗", red, b.Step, dur))
		if b.Error != "" {
			c.println(c.paint(red, indent(c.o.Mask(b.Error), "      ")))
		}
		if s != nil && len(s.stderr) > 0 && !c.o.Verbose {
			head := "standard error:"
			if s.stderrN > len(s.stderr) {
				head = fmt.Sprintf("the last %d of %d lines of standard error:", len(s.stderr), s.stderrN)
			}
			lines := []string{head}
			for _, o := range s.stderr {
				lines = append(lines, "  "+o.Source+" ! "+c.o.Mask(o.Line))
			}
			c.println(indent(strings.Join(lines, "\n"), "      "))
		}
	default:
		c.println(c.stepLine("•", "", b.Step, b.Status+" "+dur))
	}
}

func (c *Console) summary(b event.Bound, now time.Time) {
	if b.Error != "" && len(c.failed) == 0 && b.Outcome != "approval-required" && b.Outcome != "interrupted" {
		c.println(c.paint(red, c.o.Mask(b.Error)))
	}
	d := b.Duration
	if d == 0 && !c.started.IsZero() {
		d = now.Sub(c.started)
	}
	counts := []string{fmt.Sprintf("%s succeeded", plural(c.succeeded, "step"))}
	if len(c.failed) > 0 {
		counts = append(counts, fmt.Sprintf("%d failed (%s)", len(c.failed), strings.Join(c.failed, ", ")))
	}
	if c.skipped > 0 {
		counts = append(counts, fmt.Sprintf("%d skipped", c.skipped))
	}
	if left := c.steps - c.doneBefore - c.succeeded - len(c.failed) - c.skipped; left > 0 && b.Outcome != "succeeded" {
		counts = append(counts, fmt.Sprintf("%d not run", left))
	}
	var line string
	switch b.Outcome {
	case "succeeded":
		line = c.paint(green, "✓ succeeded in "+human(d))
	case "approval-required":
		line = c.paint(yellow, "⏸ paused for approval after "+human(d))
	case "interrupted":
		line = c.paint(yellow, "! interrupted after "+human(d))
	default:
		line = c.paint(red, "✗ "+b.Outcome+" after "+human(d))
	}
	c.println("")
	c.println(line + " · " + strings.Join(counts, ", "))
	c.println("  state   " + c.state)
	if c.o.LogPath != "" {
		c.println("  log     " + c.o.LogPath)
	} else {
		c.println(c.paint(dim, "  log     none (--log FILE keeps an audit log)"))
	}
	if b.ResumeCommand != "" {
		c.println("  resume  " + c.paint(bold, c.o.Mask(b.ResumeCommand)))
	}
}

func (c *Console) progress(step string, p event.Progress, now time.Time) {
	s := c.cur
	if s == nil || (step != "" && step != s.id) {
		return
	}
	if s.prog == nil {
		s.baseAt, s.baseDone = now, p.Done
	}
	s.prog, s.progAt = &p, now
	if c.o.Live {
		c.drawLive()
		return
	}
	c.plain(now)
}

// plain prints a line about the running step when the output is not live:
// once it has run PlainAfter, then every PlainEvery.
func (c *Console) plain(now time.Time) {
	s := c.cur
	if c.o.Live || s == nil {
		return
	}
	if s.announced && now.Sub(s.lastPlain) < c.o.PlainEvery || !s.announced && now.Sub(s.start) < c.o.PlainAfter {
		return
	}
	s.announced, s.lastPlain = true, now
	rest := clock(now.Sub(s.start).Truncate(time.Second))
	if p := c.progressText(s); p != "" {
		rest += "  " + p
	}
	c.println(c.stepLine("…", "", s.id, rest))
}

// progress parts of a running step: how far ("1.2 GiB of ~3.4 GiB"), the
// percentage, the rate, the ETA and further counts, each "" when unknown.
type progressParts struct {
	done, pct, rate, eta string
	also                 []string
}

func (c *Console) progressParts(s *stepView) (pp progressParts, ok bool) {
	p := s.prog
	if p == nil {
		return pp, false
	}
	unit := p.Unit
	pp.done = amount(float64(p.Done), unit)
	hasTotal := p.Total > 0 && (p.Done <= p.Total || !p.Estimated)
	if hasTotal {
		tot := amount(float64(p.Total), unit)
		if p.Estimated {
			tot = "~" + tot
		}
		pp.done += " of " + tot
		pp.pct = fmt.Sprintf("(%d%%)", p.Done*100/p.Total)
	}
	if unit != "bytes" && unit != "" {
		pp.done += " " + unit
	}
	rate := p.Rate
	if rate <= 0 {
		if el := s.progAt.Sub(s.baseAt).Seconds(); el >= 0.5 {
			rate = float64(p.Done-s.baseDone) / el
		}
	}
	if rate > 0 {
		pp.rate = amount(rate, unit) + "/s"
		if hasTotal && p.Total > p.Done {
			pp.eta = "ETA " + clock(time.Duration(float64(p.Total-p.Done)/rate*float64(time.Second)))
			if p.Estimated {
				pp.eta = "ETA ~" + strings.TrimPrefix(pp.eta, "ETA ")
			}
		}
	}
	for _, a := range p.Also {
		v := humanize.Count(a.Done)
		if a.Total > 0 {
			v += "/" + humanize.Count(a.Total)
		}
		pp.also = append(pp.also, a.Label+" "+v)
	}
	return pp, true
}

// text joins the parts: "1.2 GiB of ~3.4 GiB (35%) · 82.4 MiB/s · ETA 28s",
// leaving out the percentage (brief) and then the rate and other counts
// (briefer) to fit a narrow line.
func (pp progressParts) text(brevity int) string {
	main := pp.done
	if pp.pct != "" && brevity < 1 {
		main += " " + pp.pct
	}
	parts := []string{main}
	if pp.rate != "" && brevity < 2 {
		parts = append(parts, pp.rate)
	}
	if pp.eta != "" {
		parts = append(parts, pp.eta)
	}
	if brevity < 2 {
		parts = append(parts, pp.also...)
	}
	return strings.Join(parts, " · ")
}

// progressText is the progress at full length.
func (c *Console) progressText(s *stepView) string {
	pp, ok := c.progressParts(s)
	if !ok {
		return ""
	}
	return pp.text(0)
}

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// drawLive draws the running step's line in place (live output only): its
// elapsed time and progress, as much as fits the terminal's width.
func (c *Console) drawLive() {
	if !c.o.Live || c.held || c.cur == nil {
		return
	}
	s := c.cur
	width := 0
	if c.o.Width != nil {
		// One column short of the edge: a line that fills it wraps on some
		// terminals, and the next redraw would leave it behind.
		width = c.o.Width() - 1
	}
	elapsed := ""
	if d := c.o.Now().Sub(s.start); d >= time.Second {
		elapsed = clock(d.Truncate(time.Second))
	}
	pp, hasProgress := c.progressParts(s)
	sym := spinner[c.spin%len(spinner)]
	var line string
	for brevity := 0; brevity < 4; brevity++ {
		var rest []string
		if elapsed != "" && brevity < 3 {
			rest = append(rest, elapsed)
		}
		if hasProgress {
			rest = append(rest, pp.text(brevity))
		}
		line = c.stepLine(sym, cyan, s.id, strings.Join(rest, "  "))
		if width <= 0 || visible(line) <= width {
			break
		}
	}
	if width > 0 {
		line = c.cut(line, width)
	}
	c.buf.WriteString("\r\033[K")
	c.buf.WriteString(line)
	c.live = true
}

// clearLive erases the live line, if it is on screen.
func (c *Console) clearLive() {
	if c.live {
		c.buf.WriteString("\r\033[K")
		c.live = false
	}
}

// println prints text that stays: above the live line, which is drawn again
// below it.
func (c *Console) println(s string) {
	c.clearLive()
	c.buf.WriteString(s)
	c.buf.WriteByte('\n')
	c.drawLive()
}

// announce prints the running step's line before what is said about it (a
// warning, a detail), so that it is read under the right step; once.
func (c *Console) announce() {
	if s := c.cur; s != nil && !s.announced {
		s.announced, s.lastPlain = true, c.o.Now()
		c.println(c.stepLine("…", "", s.id, ""))
	}
}

func (c *Console) detail(text string) {
	text = strings.TrimRight(c.o.Mask(text), "\n")
	if text == "" {
		return
	}
	c.announce()
	c.println(c.paint(dim, indent(text, "      ")))
}

func (c *Console) issue(is event.Issue) {
	var b strings.Builder
	if is.Position != "" {
		b.WriteString(is.Position + ": ")
	}
	b.WriteString(is.Message)
	if is.SQLSTATE != "" {
		b.WriteString(" (SQLSTATE " + is.SQLSTATE + ")")
	}
	if is.Detail != "" {
		b.WriteString("\nDETAIL: " + is.Detail)
	}
	if is.Hint != "" {
		b.WriteString("\nHINT: " + is.Hint)
	}
	c.announce()
	text := indent(c.o.Mask(b.String()), "        ")
	mark, color := "      i ", ""
	switch is.Level {
	case event.Warn:
		mark, color = "      ! ", yellow
	case event.Error:
		mark, color = "      ✗ ", red
	}
	c.println(c.paint(color, mark+strings.TrimPrefix(text, "        ")))
}

// stepLine is "✓  3/18 restore          41s".
func (c *Console) stepLine(sym, color, id, rest string) string {
	n := "?"
	if k, ok := c.num[id]; ok {
		n = strconv.Itoa(k)
	}
	num := fmt.Sprintf("%*s/%d", c.numW, n, len(c.o.Steps))
	pad := c.idWidth - len([]rune(id))
	line := c.paint(color, sym) + " " + num + " " + id
	if rest != "" {
		line += strings.Repeat(" ", max(pad, 0)) + "  " + rest
	}
	return line
}

// ANSI colours.
const (
	bold   = "1"
	dim    = "2"
	red    = "31"
	green  = "32"
	yellow = "33"
	cyan   = "36"
)

// paint colours s, line by line (each line ends its colour).
func (c *Console) paint(code, s string) string {
	if !c.o.Color || code == "" || s == "" {
		return s
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = "\033[" + code + "m" + l + "\033[0m"
		}
	}
	return strings.Join(lines, "\n")
}

// cut shortens a line to width visible columns, keeping its colour codes
// balanced.
func (c *Console) cut(line string, width int) string {
	if !c.o.Color {
		return truncate(line, width)
	}
	if width <= 0 || visible(line) <= width {
		return line
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(line); {
		if line[i] == '\033' {
			j := strings.IndexByte(line[i:], 'm')
			if j < 0 {
				break
			}
			b.WriteString(line[i : i+j+1])
			i += j + 1
			continue
		}
		if n == width-1 {
			break
		}
		_, size := utf8.DecodeRuneInString(line[i:])
		b.WriteString(line[i : i+size])
		n++
		i += size
	}
	b.WriteString("…\033[0m")
	return b.String()
}

// visible counts the runes of s outside colour codes.
func visible(s string) int {
	n := 0
	for i := 0; i < len(s); {
		if s[i] == '\033' {
			j := strings.IndexByte(s[i:], 'm')
			if j < 0 {
				break
			}
			i += j + 1
			continue
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
		n++
	}
	return n
}

func (c *Console) flush() {
	if c.buf.Len() == 0 {
		return
	}
	c.o.Out.Write(c.buf.Bytes())
	c.buf.Reset()
}
