package executor_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/pgtest"
	"github.com/runbookhq/runbook/internal/testbin"
	"github.com/runbookhq/runbook/schema"
)

func TestMain(m *testing.M) {
	if os.Getenv("RUNBOOK_TOY_CHILD") != "" {
		os.Exit(toyChild())
	}
	pgtest.Main(m)
}

// harness runs runbooks written into a temporary directory.
type harness struct {
	t     *testing.T
	dir   string
	state string
}

func newHarness(t *testing.T) *harness {
	dir := t.TempDir()
	return &harness{t: t, dir: dir, state: filepath.Join(dir, "state.json")}
}

// write writes the runbook file and returns its path.
func (h *harness) write(src string) string {
	p := filepath.Join(h.dir, "rb.yaml")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		h.t.Fatal(err)
	}
	return p
}

type outcome struct {
	code   int
	err    error
	events []map[string]any
	out    string
}

// run loads the runbook file and runs it with opts, returning the exit code
// and the JSON events.
func (h *harness) run(vars []string, opts executor.Options) outcome {
	h.t.Helper()
	rb, err := schema.LoadFile(filepath.Join(h.dir, "rb.yaml"))
	if err != nil {
		h.t.Fatalf("load: %v", err)
	}
	vals, err := rb.ResolveParams(schema.ParamInputs{Vars: vars})
	if err != nil {
		h.t.Fatalf("params: %v", err)
	}
	var buf bytes.Buffer
	opts.Runbook, opts.Values, opts.Console, opts.LogFormat = rb, vals, &buf, "json"
	if opts.StatePath == "" {
		opts.StatePath = h.state
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err = executor.Run(ctx, opts)
	o := outcome{code: exitcode.Of(err), err: err, out: buf.String(), events: testbin.Events(h.t, buf.String())}
	return o
}

func (o outcome) count(event, step string) int {
	n := 0
	for _, ev := range o.events {
		if ev["event"] == event && (step == "" || ev["step"] == step) {
			n++
		}
	}
	return n
}

func TestStepControls(t *testing.T) {
	h := newHarness(t)
	counter := filepath.Join(h.dir, "counter")
	h.write(`version: 1
name: controls
params:
  flaky_file: {}
  enabled: {default: "no"}
steps:
  - id: skipped
    when: params.enabled == "yes"
    shell: {run: "exit 1"}
  - id: flaky
    retry: {attempts: 3, delay: 10ms, backoff: 2}
    shell:
      run: |
        n=$(cat "$F" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$F"
        [ "$n" -ge 3 ]
      env: {F: '${{ params.flaky_file }}'}
  - id: tolerated
    on_failure: continue
    shell: {run: "exit 4"}
  - id: slow
    timeout: 200ms
    shell: {run: "sleep 10"}
  - id: never
    shell: {run: "echo never"}
  - id: cleanup
    always: true
    shell: {run: "echo cleanup"}
`)
	start := time.Now()
	o := h.run([]string{"flaky_file=" + counter}, executor.Options{})
	if o.code != exitcode.StepFailed {
		t.Fatalf("exit code %d, want 1 (err %v)", o.code, o.err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeout did not end the slow step: the run took %s", d)
	}
	want := map[string]string{"skipped": "skipped", "flaky": "succeeded", "tolerated": "failed", "slow": "failed", "cleanup": "succeeded"}
	got := testbin.Statuses(o.events)
	for id, st := range want {
		if got[id] != st {
			t.Errorf("step %s: status %q, want %q", id, got[id], st)
		}
	}
	if _, ran := got["never"]; ran {
		t.Errorf("step never ran after a failure")
	}
	if n := o.count("step.retry", "flaky"); n != 2 {
		t.Errorf("flaky retried %d times, want 2", n)
	}
	if b, _ := os.ReadFile(counter); strings.TrimSpace(string(b)) != "3" {
		t.Errorf("flaky ran %q times, want 3", b)
	}
	if !strings.Contains(o.err.Error(), "step slow failed") || !strings.Contains(o.err.Error(), "timeout of 200ms") {
		t.Errorf("error does not name the timed-out step: %v", o.err)
	}
}

func TestRunRefusesUnfinishedStateAndResumeContinues(t *testing.T) {
	forEachStore(t, runRefusesUnfinishedStateAndResumeContinues)
}

func runRefusesUnfinishedStateAndResumeContinues(t *testing.T, store stateStore) {
	h := newHarnessOn(t, store)
	marker := filepath.Join(h.dir, "ran")
	h.write(`version: 1
name: resumable
steps:
  - id: first
    shell: {run: "echo x >> ` + marker + `"}
  - id: second
    shell: {run: "exit 7"}
  - id: third
    shell: {run: "echo third"}
`)
	if o := h.run(nil, executor.Options{}); o.code != 1 {
		t.Fatalf("first run: exit %d, want 1", o.code)
	}
	o := h.run(nil, executor.Options{})
	if o.code != exitcode.Refused || !strings.Contains(o.err.Error(), "runbook resume") {
		t.Fatalf("run on unfinished state: exit %d (%v), want 4 with the resume command", o.code, o.err)
	}
	// Fix the failed step: a failed step may be edited.
	h.write(`version: 1
name: resumable
steps:
  - id: first
    shell: {run: "echo x >> ` + marker + `"}
  - id: second
    shell: {run: "exit 0"}
  - id: third
    shell: {run: "echo third"}
`)
	o = h.run(nil, executor.Options{Resume: true})
	if o.code != 0 {
		t.Fatalf("resume: exit %d (%v)", o.code, o.err)
	}
	if b, _ := os.ReadFile(marker); string(b) != "x\n" {
		t.Errorf("the completed step ran again on resume: marker %q", b)
	}
	if got := testbin.Statuses(o.events); got["second"] != "succeeded" || got["third"] != "succeeded" || got["first"] != "" {
		t.Errorf("resume ran %v, want second and third only", got)
	}
	// Resuming the finished run does nothing, and is not an error.
	o = h.run(nil, executor.Options{Resume: true})
	if o.code != 0 || len(o.events) != 0 {
		t.Errorf("resume of a finished run: exit %d (%v), %d events; want 0 and nothing run", o.code, o.err, len(o.events))
	}
	if b, _ := os.ReadFile(marker); string(b) != "x\n" {
		t.Errorf("resume of a finished run ran a step: marker %q", b)
	}
}

func TestResumeRefusesDrift(t *testing.T) { forEachStore(t, resumeRefusesDrift) }

func resumeRefusesDrift(t *testing.T, store stateStore) {
	h := newHarnessOn(t, store)
	h.write(`version: 1
name: drift
steps:
  - id: done
    shell: {run: "echo one"}
  - id: broken
    shell: {run: "exit 1"}
`)
	if o := h.run(nil, executor.Options{}); o.code != 1 {
		t.Fatalf("exit %d, want 1", o.code)
	}
	// Comments and layout are not drift.
	h.write(`version: 1
name: drift
steps:
  # a comment
  - id: done
    shell:
      run: "echo one"
  - id: broken
    shell: {run: "exit 1"}
`)
	if o := h.run(nil, executor.Options{Resume: true}); o.code != 1 {
		t.Fatalf("resume after a layout change: exit %d (%v), want 1 (the broken step fails again)", o.code, o.err)
	}
	h.write(`version: 1
name: drift
steps:
  - id: done
    shell: {run: "echo two"}
  - id: broken
    shell: {run: "exit 0"}
`)
	o := h.run(nil, executor.Options{Resume: true})
	if o.code != exitcode.Refused || !strings.Contains(o.err.Error(), "step done (completed) changed") {
		t.Fatalf("resume after editing a completed step: exit %d (%v), want 4 naming the step", o.code, o.err)
	}
	for _, line := range []string{`- shell: {run: "echo one"}`, `+ shell: {run: "echo two"}`} {
		if !strings.Contains(o.err.Error(), line) {
			t.Errorf("the refusal does not show the change %q:\n%v", line, o.err)
		}
	}
}

func TestStateLockRefusesSecondRun(t *testing.T) { forEachStore(t, stateLockRefusesSecondRun) }

func stateLockRefusesSecondRun(t *testing.T, store stateStore) {
	h := newHarnessOn(t, store)
	h.write(`version: 1
name: locked
steps:
  - id: wait
    shell: {run: "sleep 2"}
`)
	done := make(chan outcome)
	go func() { done <- h.run(nil, executor.Options{}) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if hasState(t, h.state) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first run did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	o := h.run(nil, executor.Options{Resume: true})
	if o.code != exitcode.Refused || !strings.Contains(o.err.Error(), "locked") {
		t.Errorf("second process on the same state: exit %d (%v), want 4 (locked)", o.code, o.err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("the second run waited for the lock instead of exiting at once")
	}
	if first := <-done; first.code != 0 {
		t.Errorf("first run: exit %d (%v)", first.code, first.err)
	}
}

func TestApprovalRequiredThenResumeWithApprove(t *testing.T) {
	h := newHarness(t)
	h.write(`version: 1
name: approval
steps:
  - id: before
    shell: {run: "echo before"}
  - id: gate
    confirm: Put the application in maintenance mode.
  - id: after
    shell: {run: "echo after"}
`)
	o := h.run(nil, executor.Options{})
	if o.code != exitcode.Approval || !strings.Contains(o.err.Error(), "--approve gate") {
		t.Fatalf("exit %d (%v), want 3 naming --approve gate", o.code, o.err)
	}
	if testbin.Statuses(o.events)["after"] != "" {
		t.Errorf("a step after the unapproved gate ran")
	}
	o = h.run(nil, executor.Options{Resume: true, Approve: []string{"gate"}, Operator: "alice"})
	if o.code != 0 {
		t.Fatalf("resume --approve: exit %d (%v)", o.code, o.err)
	}
	var approved map[string]any
	for _, ev := range o.events {
		if ev["event"] == "confirm.approved" {
			approved = ev
		}
	}
	if approved == nil || approved["by"] != "alice" || approved["how"] != "--approve gate" {
		t.Errorf("approval event %v, want by alice how --approve gate", approved)
	}
	if o.count("step.end", "before") != 0 {
		t.Errorf("the step before the gate ran again")
	}
}

func TestAdvisoryLockHeldRefuses(t *testing.T) {
	srv := pgtest.Shared(t)
	url := srv.NewDatabase(t)
	h := newHarness(t)
	h.write(`version: 1
name: advisory
params:
  url: {secret: true}
connections:
  db: ${{ params.url }}
lock: db
steps:
  - id: one
    shell: {run: "echo one"}
`)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	conn := srv.Connect(t, cfg.Database)
	if _, err := conn.Exec(context.Background(), `SELECT pg_advisory_lock(hashtextextended('runbook:advisory', 0))`); err != nil {
		t.Fatal(err)
	}
	o := h.run([]string{"url=" + url}, executor.Options{})
	if o.code != exitcode.Refused || !strings.Contains(o.err.Error(), "advisory lock") {
		t.Fatalf("exit %d (%v), want 4 (advisory lock held)", o.code, o.err)
	}
	if _, err := conn.Exec(context.Background(), `SELECT pg_advisory_unlock_all()`); err != nil {
		t.Fatal(err)
	}
	if o := h.run([]string{"url=" + url}, executor.Options{Fresh: true}); o.code != 0 {
		t.Fatalf("with the lock free: exit %d (%v)", o.code, o.err)
	}
}

func TestResumeAgainstAnotherServerRefused(t *testing.T) {
	a, b := pgtest.Pair(t)
	if a.External() {
		t.Skip("needs two clusters with distinct system identifiers (RUNBOOK_TEST_DATABASE_URL gives one server)")
	}
	h := newHarness(t)
	h.write(`version: 1
name: identity
params:
  url: {secret: true}
connections:
  db: ${{ params.url }}
steps:
  - id: touch
    shell: {run: "psql -XAtc 'select 1'", conn: db}
  - id: fail
    shell: {run: "exit 1"}
`)
	if o := h.run([]string{"url=" + a.URL("postgres")}, executor.Options{}); o.code != 1 {
		t.Fatalf("first run: exit %d (%v)", o.code, o.err)
	}
	if o := h.run([]string{"url=" + a.URL("postgres")}, executor.Options{Resume: true}); o.code != 1 {
		t.Fatalf("resume on the same server: exit %d (%v)", o.code, o.err)
	}
	o := h.run([]string{"url=" + b.URL("postgres")}, executor.Options{Resume: true})
	if o.code != exitcode.Refused || !strings.Contains(o.err.Error(), "resume refused") {
		t.Fatalf("resume on another server: exit %d (%v), want 4", o.code, o.err)
	}
}

// TestAlwaysStepsRunAgainAfterResume: a clean-up step that ran after a
// failure runs again at the end of the resumed run, so the resumed work is
// cleaned up too (the built-in migration switches pgaudit back on after the
// resumed restore), and editing it is not drift.
func TestAlwaysStepsRunAgainAfterResume(t *testing.T) {
	h := newHarness(t)
	effects := filepath.Join(h.dir, "effects")
	fixed := filepath.Join(h.dir, "fixed")
	rb := func(on string) string {
		return `version: 1
name: again
steps:
  - id: early-cleanup
    always: true
    shell: {run: "echo early >> ` + effects + `"}
  - id: switch-off
    shell: {run: "echo off >> ` + effects + `; [ -e ` + fixed + ` ]"}
  - id: work
    shell: {run: "echo work >> ` + effects + `"}
  - id: switch-on
    always: true
    shell: {run: "echo ` + on + ` >> ` + effects + `"}
`
	}
	h.write(rb("on"))
	if o := h.run(nil, executor.Options{}); o.code != 1 {
		t.Fatalf("exit %d, want 1", o.code)
	}
	if err := os.WriteFile(fixed, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.write(rb("on-edited"))
	if o := h.run(nil, executor.Options{Resume: true}); o.code != 0 {
		t.Fatalf("resume: exit %d (%v)", o.code, o.err)
	}
	b, _ := os.ReadFile(effects)
	if got, want := strings.Fields(string(b)), []string{"early", "off", "on", "off", "work", "on-edited"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("effects %v, want %v", got, want)
	}
}

func TestFromOnlyAndStatus(t *testing.T) {
	h := newHarness(t)
	h.write(`version: 1
name: select
steps:
  - id: a
    shell: {run: "echo a"}
  - id: b
    shell: {run: "echo b"}
  - id: c
    shell: {run: "echo c"}
`)
	o := h.run(nil, executor.Options{From: "b"})
	if got := testbin.Statuses(o.events); got["a"] != "" || got["b"] != "succeeded" || got["c"] != "succeeded" || o.code != 0 {
		t.Errorf("--from b ran %v (exit %d)", got, o.code)
	}
	o = h.run(nil, executor.Options{Only: []string{"a", "c"}, Fresh: true})
	if got := testbin.Statuses(o.events); got["a"] != "succeeded" || got["b"] != "" || got["c"] != "succeeded" {
		t.Errorf("--only a --only c ran %v", got)
	}
	if o := h.run(nil, executor.Options{Only: []string{"nope"}, Fresh: true}); o.code != exitcode.Invalid {
		t.Errorf("--only of an unknown step: exit %d, want 2", o.code)
	}
	st, err := executor.ReadStatus(executor.NewFileStore(h.state))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	st.WriteText(&b)
	for _, want := range []string{"of select", "outcome   succeeded", "a  succeeded", "b  pending", "c  succeeded"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status text lacks %q:\n%s", want, b.String())
		}
	}
	if st.Running {
		t.Errorf("status reports a finished run as locked")
	}
}

// A failing statement is reported at its place in the runbook file.
func TestSQLErrorAtFilePosition(t *testing.T) {
	srv := pgtest.Shared(t)
	url := srv.NewDatabase(t)
	h := newHarness(t)
	path := h.write(`version: 1
name: sqlpos
params:
  url: {secret: true}
connections:
  db: ${{ params.url }}
steps:
  - id: broken
    sql:
      on: db
      script: |
        SELECT 1;
        SELECT no_such_column FROM pg_class;
`)
	o := h.run([]string{"url=" + url}, executor.Options{})
	if want := path + ":13:16"; o.code != 1 || !strings.Contains(o.err.Error(), want) {
		t.Errorf("exit %d, error %v: want the position %s", o.code, o.err, want)
	}
}
