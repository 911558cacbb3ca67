package executor

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/internal/event"
)

// Test-only events of a step's parallel work, as a parallel copy would
// emit them: one begins and one ends each part (a table).
type testPartStart struct {
	Table string `json:"part"`
}

func (testPartStart) Name() string         { return "testcopy.part.start" }
func (e testPartStart) Message() string    { return "copying " + e.Table }
func (e testPartStart) PartOf() event.Part { return event.Part{Name: e.Table, Phase: event.PartBegin} }
func (e testPartEnd) PartOf() event.Part {
	return event.Part{Name: e.Table, Phase: event.PartEnd, Failed: e.Error != ""}
}
func (testPartEnd) Name() string              { return "testcopy.part.end" }
func (e testPartEnd) Message() string         { return e.Table + " copied " + e.Error }
func (e testPartProgress) PartOf() event.Part { return event.Part{Name: e.Table} }
func (testPartProgress) Name() string         { return "testcopy.part.warning" }
func (e testPartProgress) Message() string    { return e.Table + ": " + e.Text }
func (testPartProgress) Level() event.Level   { return event.Error }

type testPartEnd struct {
	Table string `json:"part"`
	Error string `json:"error"`
}

func (e testPartEnd) Level() event.Level {
	if e.Error != "" {
		return event.Error
	}
	return event.Info
}

type testPartProgress struct {
	Table string `json:"part"`
	Text  string `json:"text"`
}

var t0 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

func at(d string) time.Time {
	dur, err := time.ParseDuration(d)
	if err != nil {
		panic(err)
	}
	return t0.Add(dur)
}

func ptime(d string) *time.Time { t := at(d); return &t }

// timelineRecords is a run of four invocations with fixed times: the run is
// interrupted during a parallel copy (three parts, one of which fails
// before the signal); a resume two hours later finishes the copy, retries
// a flaky command and pauses for approval; a resume the next day is
// approved, fails a migration and stops without a run.end (killed); the
// last resume finishes. Texts carry markup, which must come out escaped.
func timelineRecords() []event.Record {
	rec := func(d, step string, ev event.Event) event.Record {
		return event.Record{Time: at(d), RunID: "20260105T090000Z-0123456789ab", Step: step, Message: ev.Message(), Event: ev}
	}
	start := func(d, op string, resume bool) event.Record {
		return rec(d, "", RunStart{Operator: op, Host: "ops-1", Version: "test", Runbook: "rb.yaml", Digest: strings.Repeat("d", 64),
			Params: map[string]string{"region": "eu <b>west</b>", "token": "***"}, Ticket: "CHG-16", Resume: resume})
	}
	return []event.Record{
		start("0s", "alice", false),
		rec("100ms", "", ConnOpen{Conn: "db", Host: "db.internal", Port: 5432, Database: "app", User: "ops", Version: "16.4", SystemID: "7300000000000000001"}),
		rec("1s", "schema", StepStart{Kind: "sql", Title: "Create <tables> & \"indexes\""}),
		rec("3s", "schema", actions.SQLStatement{Statement: 1, SQL: "CREATE TABLE t (x int) -- <script>alert(1)</script>", Rows: 0, Duration: 2 * time.Second}),
		rec("4s", "schema", StepEnd{Step: "schema", Status: Succeeded, Duration: 3 * time.Second}),
		rec("4s", "only-us", StepSkip{When: `params.region == "us"`}),
		rec("5s", "copy", StepStart{Kind: "copy", Title: "copy"}),
		rec("5s", "copy", testPartStart{Table: "public.orders"}),
		rec("5s", "copy", testPartStart{Table: "public.items"}),
		rec("20s", "copy", testPartEnd{Table: "public.items"}),
		rec("25s", "copy", testPartStart{Table: "public.users"}),
		rec("30s", "copy", testPartProgress{Table: "public.users", Text: "slow <disk>"}),
		rec("40s", "copy", testPartEnd{Table: "public.users", Error: "connection reset"}),
		rec("50s", "copy", RunInterrupted{Step: "copy"}),
		rec("51s", "cleanup", StepStart{Kind: "shell", Title: "cleanup"}),
		rec("52s", "cleanup", StepEnd{Step: "cleanup", Status: Succeeded, Duration: time.Second}),
		rec("52s", "", RunEnd{Outcome: "interrupted", Duration: 52 * time.Second, Error: "interrupted by a signal"}),

		start("2h", "bob", true),
		rec("2h1s", "copy", StepStart{Kind: "copy", Title: "copy"}),
		rec("2h1s", "copy", testPartStart{Table: "public.orders"}),
		rec("2h1s", "copy", testPartStart{Table: "public.users"}),
		rec("2h30s", "copy", testPartEnd{Table: "public.orders"}),
		rec("2h45s", "copy", testPartEnd{Table: "public.users"}),
		rec("2h45s", "copy", StepEnd{Step: "copy", Status: Succeeded, Duration: 44 * time.Second}),
		rec("2h46s", "flaky", StepStart{Kind: "shell", Title: "flaky"}),
		rec("2h46s", "flaky", actions.CmdStart{Stage: 1, Argv: []string{"sh", "-c", "check <it>"}}),
		rec("2h50s", "flaky", actions.CmdExit{Stage: 1, ExitCode: 1, Duration: 4 * time.Second}),
		rec("2h50s", "flaky", StepRetry{Attempt: 1, Delay: 5 * time.Second, Error: "exit 1: <b>not yet</b>", Attempts: 2}),
		rec("2h55s", "flaky", actions.CmdStart{Stage: 1, Argv: []string{"sh", "-c", "check <it>"}}),
		rec("2h58s", "flaky", actions.CmdExit{Stage: 1, ExitCode: 0, Duration: 3 * time.Second}),
		rec("2h58s", "flaky", StepEnd{Step: "flaky", Status: Succeeded, Duration: 12 * time.Second}),
		rec("2h59s", "gate", StepStart{Kind: "confirm", Title: "gate"}),
		rec("2h59s", "gate", RunPaused{Step: "gate"}),
		rec("2h59s", "", RunEnd{Outcome: "approval-required", Duration: 59 * time.Second}),

		start("26h", "carol", true),
		rec("26h1s", "gate", StepStart{Kind: "confirm", Title: "gate"}),
		rec("26h1s", "gate", actions.ConfirmApproved{By: "carol <ops>", How: "--approve gate", At: at("26h1s"), Prompt: "Maintenance <on>?"}),
		rec("26h1s", "gate", StepEnd{Step: "gate", Status: Succeeded}),
		rec("26h2s", "migrate", StepStart{Kind: "sql", Title: "migrate"}),
		rec("26h9s", "migrate", actions.SQLFailure{Statement: 1, SQLSTATE: "23505", Severity: "ERROR", Text: "duplicate key <x>", SQL: "INSERT INTO t VALUES (1)"}),
		rec("26h9s", "migrate", StepEnd{Step: "migrate", Status: Failed, Duration: 7 * time.Second, Error: "statement 1: duplicate key <x>"}),
		rec("26h10s", "cleanup", StepStart{Kind: "shell", Title: "cleanup"}),

		start("27h", "alice", true),
		rec("27h1s", "migrate", StepStart{Kind: "sql", Title: "migrate"}),
		rec("27h1s", "migrate", actions.SQLStatement{Statement: 1, SQL: "INSERT INTO t VALUES (2)", Rows: 1, Duration: 1500 * time.Millisecond}),
		rec("27h3s", "migrate", StepEnd{Step: "migrate", Status: Succeeded, Duration: 2 * time.Second}),
		rec("27h3s", "cleanup", StepStart{Kind: "shell", Title: "cleanup"}),
		rec("27h4s", "cleanup", StepEnd{Step: "cleanup", Status: Succeeded, Duration: time.Second}),
		rec("27h4s", "", RunEnd{Outcome: Succeeded, Duration: 4 * time.Second}),
	}
}

// timelineReport builds the report of timelineRecords, as BuildReport does
// from a state and a log.
func timelineReport(t *testing.T) *Report {
	t.Helper()
	step := func(id, status string, attempts int, from, to string) *StepState {
		s := &StepState{ID: id, Status: status, Attempts: attempts}
		if from != "" {
			s.Started, s.Ended = ptime(from), ptime(to)
		}
		return s
	}
	st := &Status{State: "/srv/runbook/state.json", RunID: "20260105T090000Z-0123456789ab",
		Runbook:  StateRunbook{Name: "timeline-golden", File: "rb.yaml", Digest: strings.Repeat("d", 64)},
		Operator: "alice", Started: t0, Ended: ptime("27h4s"), Outcome: Succeeded,
		Params: map[string]string{"region": "eu <b>west</b>", "token": "supplied"},
		Steps: []*StepState{
			step("schema", Succeeded, 1, "1s", "4s"),
			step("only-us", Skipped, 0, "", ""),
			step("copy", Succeeded, 2, "2h1s", "2h45s"),
			step("flaky", Succeeded, 2, "2h46s", "2h58s"),
			step("gate", Succeeded, 1, "26h1s", "26h1s"),
			step("migrate", Succeeded, 2, "27h1s", "27h3s"),
			step("cleanup", Succeeded, 3, "27h3s", "27h4s"),
		}}
	r := &Report{Status: st, LogPath: "/srv/runbook/audit.log", Secrets: []string{"token"},
		Servers: map[string]Server{"db": {SystemID: "7300000000000000001", Version: "16.4", Database: "app"}},
		Verify:  &VerifyResult{Path: "/srv/runbook/audit.log", Lines: 57, Seq: 57, Head: strings.Repeat("ab", 32)},
		opts:    ReportOptions{MaxStatements: 10, MaxOutput: 10},
	}
	var cur *ReportInvocation
	for i, rec := range timelineRecords() {
		r.LogLines++
		cur = r.add(cur, rec, i+1)
	}
	r.finish()
	return r
}

// TestReportHTMLGolden renders the report of a fixed sequence of events and
// compares it with testdata/report/timeline.html (go test -update rewrites
// it): invocations, their gaps, lanes of parted events, approvals, failures,
// retries, an interruption and an invocation that stopped without a run.end.
func TestReportHTMLGolden(t *testing.T) {
	r := timelineReport(t)
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	got := b.String()

	// The model: the invocations' spans, the copy's lanes and their spans.
	if len(r.Invocations) != 4 || r.Invocations[2].Outcome != "" || !r.Invocations[2].LastTime.Equal(at("26h10s")) {
		t.Fatalf("invocations: %d, the third's outcome %q and last event %v", len(r.Invocations), r.Invocations[2].Outcome, r.Invocations[2].LastTime)
	}
	copy1 := r.Invocations[0].stepByID["copy"]
	var lanes []string
	for _, p := range copy1.Parts {
		lanes = append(lanes, p.Name)
	}
	if strings.Join(lanes, " ") != "public.orders public.items public.users" {
		t.Errorf("lanes of the interrupted copy: %q", lanes)
	}
	if users := copy1.Parts[2].Spans; len(users) != 1 || !users[0].Failed || !users[0].End.Equal(at("40s")) {
		t.Errorf("public.users in invocation 1: %+v", users)
	}
	if orders := copy1.Parts[0].Spans; len(orders) != 1 || !orders[0].Interrupted || !orders[0].End.Equal(at("50s")) {
		t.Errorf("public.orders in invocation 1 (interrupted at 50s): %+v", orders)
	}
	if sp := copy1.Spans; len(sp) != 1 || !sp[0].Interrupted || !sp[0].End.Equal(at("50s")) {
		t.Errorf("the copy in invocation 1 (interrupted at 50s): %+v", sp)
	}
	flaky := r.Invocations[1].stepByID["flaky"]
	if len(flaky.Spans) != 2 || !flaky.Spans[0].Failed || !flaky.Spans[1].Start.Equal(at("2h55s")) || flaky.Spans[1].Failed {
		t.Errorf("flaky's attempts: %+v", flaky.Spans)
	}

	for _, want := range []string{
		`data-step="copy" data-part="public.users" data-invocation="1"`,
		`class="bar failed part"`, `class="bar open part"`, `class="bar attempt-failed"`, `class="bar paused"`,
		`data-mark="approval"`, `data-mark="failure"`, `data-mark="retry"`, `data-mark="skip"`,
		`class="mark-line interrupt"`, `class="mark-line stopped"`, `class="mark-line pause"`,
		`>&#43;1h59m8s<`, `>&#43;23h59m1s<`, `>&#43;59m50s<`, // the idle time between the invocations
		`id="audit-head">` + strings.Repeat("ab", 32) + `<`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the HTML lacks %s", want)
		}
	}
	for _, bad := range []string{"<script>alert", "<b>", "<tables>", "<x>", "<ops>", "<disk>", "<on>", "<it>"} {
		if strings.Contains(got, bad) {
			t.Errorf("the HTML holds %q unescaped", bad)
		}
	}
	if strings.Contains(got, "supplied") {
		t.Error("the HTML shows the secret's value as the state has it, not as logged (***)")
	}
	// Self-contained: nothing is loaded (the only URL is the SVG namespace).
	for _, load := range []string{" src=", "<link", "@import", "url(http", "https://"} {
		if strings.Contains(got, load) {
			t.Errorf("the HTML loads something: %q", load)
		}
	}
	if strings.Count(got, "http://") != 1 {
		t.Error("the HTML names a URL other than the SVG namespace")
	}
	goldenFile(t, filepath.Join("testdata", "report", "timeline.html"), got)

	// From the state alone (no log): one band, from the steps' times.
	r.LogPath, r.Invocations, r.Verify = "", nil, nil
	b.Reset()
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	if s := b.String(); !strings.Contains(s, "from the state alone") || strings.Count(s, `<rect class="bar `) != 6 {
		t.Errorf("the report from the state alone has %d bars (want 6, one per step that ran):\n%s", strings.Count(s, `<rect class="bar `), s)
	}
}

// goldenFile compares got with the file at path (rewritten with -update).
func goldenFile(t *testing.T, path, got string) {
	t.Helper()
	if updating() {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		wl, gl := strings.Split(string(want), "\n"), strings.Split(got, "\n")
		for i := 0; i < max(len(wl), len(gl)); i++ {
			var w, g string
			if i < len(wl) {
				w = wl[i]
			}
			if i < len(gl) {
				g = gl[i]
			}
			if w != g {
				t.Errorf("%s differs (go test -update rewrites it); first at line %d:\nwant %q\ngot  %q", path, i+1, w, g)
				return
			}
		}
	}
}

// TestReportTimelineSharesLanes: a step of more parts than get a lane each
// draws its parts on as many lanes as ran at once — 20 parts, four at a
// time, on four lanes — and every part keeps its bar.
func TestReportTimelineSharesLanes(t *testing.T) {
	rec := func(d time.Duration, ev event.Event) event.Record {
		return event.Record{Time: t0.Add(d), RunID: "r", Step: "copy", Message: ev.Message(), Event: ev}
	}
	recs := []event.Record{{Time: t0, RunID: "r", Message: "start", Event: RunStart{Operator: "alice"}}, rec(0, StepStart{Kind: "copy"})}
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("public.big#%d", i+1)
		from := time.Duration(i/4) * 10 * time.Second
		recs = append(recs, rec(from, testPartStart{Table: name}))
		if i != 19 { // the last part has no end: it ends with the step
			recs = append(recs, rec(from+9*time.Second, testPartEnd{Table: name}))
		}
	}
	recs = append(recs, rec(60*time.Second, StepEnd{Step: "copy", Status: Succeeded}),
		event.Record{Time: t0.Add(60 * time.Second), RunID: "r", Event: RunEnd{Outcome: Succeeded}})
	r := &Report{Status: &Status{RunID: "r", Steps: []*StepState{{ID: "copy", Status: Succeeded}}}, LogPath: "log",
		opts: ReportOptions{MaxStatements: 10, MaxOutput: 10}}
	var cur *ReportInvocation
	for i, x := range recs {
		cur = r.add(cur, x, i+1)
	}
	r.finish()
	tl := r.timeline(map[string]int{"copy": 1})
	var lanes []string
	for _, row := range tl.Rows {
		if row.Lane {
			lanes = append(lanes, row.Label)
		}
	}
	if strings.Join(lanes, ",") != "lane 1,lane 2,lane 3,lane 4" {
		t.Errorf("lanes %q, want four", lanes)
	}
	parts, ys := 0, map[float64]int{}
	for _, b := range tl.Bars {
		if b.Part != "" {
			parts++
			ys[b.Y]++
		}
	}
	if parts != 20 || len(ys) != 4 {
		t.Errorf("%d part bars on %d lanes, want 20 on 4", parts, len(ys))
	}
}
