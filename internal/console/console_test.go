package console

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runbookhq/runbook/internal/event"
	"github.com/runbookhq/runbook/internal/termtest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// Events of a made-up run, through the interfaces the console reads.
type bound struct{ b event.Bound }

func (bound) Name() string            { return "test.bound" }
func (bound) Message() string         { return "" }
func (e bound) Boundary() event.Bound { return e.b }
func (e bound) Detail() string {
	if e.b.Phase == event.StepEnd {
		return `outputs: {"rows": 3}`
	}
	return ""
}

type progress struct{ p event.Progress }

func (progress) Name() string               { return "test.progress" }
func (progress) Message() string            { return "" }
func (e progress) Progress() event.Progress { return e.p }

type problem struct{ is event.Issue }

func (problem) Name() string                   { return "test.problem" }
func (e problem) Message() string              { return e.is.Message }
func (e problem) Problem() (event.Issue, bool) { return e.is, e.is.Level > event.Info }

type detail struct{ text string }

func (detail) Name() string     { return "test.detail" }
func (detail) Message() string  { return "a detail" }
func (e detail) Detail() string { return e.text }

const secret = "hunter2-s3cr3t"

// script is a run: a step that succeeds, one skipped, a long pipe with
// progress, a warning, a retry and a failure.
func script(t0 time.Time) []event.Record {
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	rec := func(s float64, step string, ev event.Event) event.Record {
		return event.Record{Time: at(s), Step: step, Event: ev}
	}
	return []event.Record{
		rec(0, "", bound{event.Bound{Phase: event.RunStart, Runbook: "migrate", RunID: "RUNID", State: ".runbook/migrate.state.json", Steps: 4}}),
		rec(0, "check", bound{event.Bound{Phase: event.StepStart, Step: "check"}}),
		rec(0.1, "check", detail{"SQL 1 (1 row, 2ms): SELECT '" + secret + "'"}),
		rec(0.2, "", bound{event.Bound{Phase: event.StepEnd, Step: "check", Status: "succeeded", Duration: 200 * time.Millisecond}}),
		rec(0.2, "maintenance", bound{event.Bound{Phase: event.StepSkip, Step: "maintenance", When: `params.app != ""`}}),
		rec(0.3, "restore", bound{event.Bound{Phase: event.StepStart, Step: "restore"}}),
		rec(0.8, "restore", progress{event.Progress{Done: 100 << 20, Total: 1 << 30, Estimated: true, Unit: "bytes", Rate: 200 << 20}}),
		rec(1.3, "restore", progress{event.Progress{Done: 300 << 20, Total: 1 << 30, Estimated: true, Unit: "bytes", Rate: 300 << 20}}),
		rec(1.4, "restore", problem{event.Issue{Level: event.Warn, Message: "WARNING: no privileges were granted", SQLSTATE: "01007", Hint: "check the role"}}),
		rec(1.8, "restore", progress{event.Progress{Done: 1200 << 20, Total: 1 << 30, Estimated: true, Unit: "bytes", Rate: 800 << 20}}),
		rec(2.0, "", bound{event.Bound{Phase: event.StepEnd, Step: "restore", Status: "succeeded", Duration: 1700 * time.Millisecond}}),
		rec(2.0, "owners", bound{event.Bound{Phase: event.StepStart, Step: "owners"}}),
		rec(2.5, "owners", progress{event.Progress{Done: 10, Total: 40, Unit: "statements"}}),
		rec(3.0, "owners", progress{event.Progress{Done: 20, Total: 40, Unit: "statements"}}),
		rec(3.1, "owners", bound{event.Bound{Phase: event.StepRetry, Step: "owners", Attempt: 1, Attempts: 2, Delay: time.Second, Error: "deadlock detected (SQLSTATE 40P01)"}}),
		rec(3.2, "owners", problem{event.Issue{Level: event.Error, Message: "ERROR: relation \"x\" does not exist", SQLSTATE: "42P01", Position: "migrate.yaml:12:7"}}),
		rec(4.2, "", bound{event.Bound{Phase: event.StepEnd, Step: "owners", Status: "failed", Duration: 2200 * time.Millisecond,
			Error: "step owners failed: migrate.yaml:12:7: generated statement 21 of 40: ERROR: relation \"x\" does not exist (SQLSTATE 42P01)\n  SQL: ALTER TABLE x OWNER TO " + secret}}),
		rec(4.3, "", bound{event.Bound{Phase: event.RunEnd, Outcome: "failed", Duration: 4300 * time.Millisecond,
			Error: "step owners failed: …", ResumeCommand: "runbook resume migrate.yaml --state .runbook/migrate.state.json --var url=…"}}),
	}
}

func run(t *testing.T, o Options) (*termtest.Screen, string) {
	t.Helper()
	t0 := time.Date(2024, 5, 6, 7, 0, 0, 0, time.UTC)
	recs := script(t0)
	var raw bytes.Buffer
	scr := &termtest.Screen{}
	now := t0
	o.Out = &raw
	o.Now = func() time.Time { return now }
	o.Tick = -1
	o.Steps = []string{"check", "maintenance", "restore", "owners"}
	o.LogPath = "audit.log"
	o.Mask = func(s string) string { return strings.ReplaceAll(s, secret, "***") }
	c := New(o)
	for _, r := range recs {
		now = r.Time
		c.Handle(r)
	}
	c.Close()
	scr.Write(raw.Bytes())
	return scr, raw.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".txt")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func TestLiveScreen(t *testing.T) {
	scr, raw := run(t, Options{Live: true, Width: func() int { return 72 }})
	golden(t, "live", scr.String())
	if strings.Contains(raw, secret) {
		t.Error("the secret reached the screen")
	}
	if strings.Contains(raw, "\033[3") || scr.Colored() {
		t.Error("colours without Color")
	}
	// The running steps' lines were redrawn in place: their frames.
	var frames []string
	for _, f := range scr.Erased() {
		if strings.Contains(f, "ETA") {
			frames = append(frames, f)
		}
	}
	golden(t, "live-frames", strings.Join(frames, "\n")+"\n")
	for _, f := range scr.Erased() {
		if n := len([]rune(f)); n > 71 {
			t.Errorf("a live line of %d columns on a screen of 72: %q", n, f)
		}
	}
	for _, line := range strings.Split(scr.String(), "\n") {
		if strings.Contains(line, "ETA") {
			t.Errorf("a progress line stayed on the screen: %q", line)
		}
	}
}

func TestPlainLines(t *testing.T) {
	scr, raw := run(t, Options{PlainAfter: time.Second, PlainEvery: time.Second})
	if strings.ContainsAny(raw, "\r\033") {
		t.Errorf("plain output holds control characters: %q", raw)
	}
	golden(t, "plain", scr.String())
}

func TestVerbose(t *testing.T) {
	scr, raw := run(t, Options{Verbose: true})
	golden(t, "verbose", scr.String())
	if strings.Contains(raw, secret) {
		t.Error("the secret reached the screen")
	}
}

func TestColor(t *testing.T) {
	scr, raw := run(t, Options{Live: true, Color: true, Width: func() int { return 40 }})
	if !scr.Colored() || !strings.Contains(raw, "\033[31m✗\033[0m") {
		t.Errorf("no colours: %q", raw)
	}
	for _, f := range scr.Erased() {
		if n := len([]rune(f)); n > 39 {
			t.Errorf("a live line of %d columns on a screen of 40: %q", n, f)
		}
	}
	// Every line drawn ends its colours.
	for _, seg := range strings.FieldsFunc(raw, func(r rune) bool { return r == '\r' || r == '\n' }) {
		if i := strings.LastIndex(seg, "\033["); i >= 0 && !strings.HasPrefix(seg[i:], "\033[0m") && !strings.HasPrefix(seg[i:], "\033[K") {
			t.Errorf("a line ends in colour: %q", seg)
		}
	}
}

// Hold clears the live line for a question and Release draws it again.
func TestHold(t *testing.T) {
	var raw bytes.Buffer
	c := New(Options{Out: &raw, Live: true, Tick: -1, Steps: []string{"gate"}})
	c.Handle(event.Record{Step: "gate", Event: bound{event.Bound{Phase: event.StepStart, Step: "gate"}}})
	c.Hold()
	raw.WriteString("Type yes to continue: yes\n")
	c.Handle(event.Record{Step: "gate", Event: detail{"not shown"}})
	c.Release()
	c.Close()
	scr := &termtest.Screen{}
	scr.Write(raw.Bytes())
	if got := scr.String(); got != "Type yes to continue: yes\n" {
		t.Errorf("screen %q", got)
	}
	if e := scr.Erased(); len(e) != 2 || !strings.Contains(e[0], "1/1 gate") {
		t.Errorf("erased %q", e)
	}
}

func TestFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{
		350 * time.Microsecond: "<1ms", 42 * time.Millisecond: "42ms", 4240 * time.Millisecond: "4.2s",
		41 * time.Second: "41s", 125 * time.Second: "2m05s", 3720 * time.Second: "1h02m",
	} {
		if got := human(d); got != want {
			t.Errorf("human(%s) = %s, want %s", d, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		925 * time.Millisecond: "<1s", 1400 * time.Millisecond: "1s", 41 * time.Second: "41s", 125 * time.Second: "2m05s",
	} {
		if got := clock(d); got != want {
			t.Errorf("clock(%s) = %s, want %s", d, got, want)
		}
	}
	if got := truncate("abcdef", 4); got != "abc…" {
		t.Errorf("truncate: %s", got)
	}
}
