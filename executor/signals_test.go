package executor_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runbookhq/runbook/internal/pgtest"
)

// TestSIGINTCancelsQueryOnServer interrupts a run in the middle of a long
// query: the query must be cancelled on the server (pg_stat_activity shows it
// gone), the always-step must run, the exit code must be 130, and the run must
// resume to completion.
func TestSIGINTCancelsQueryOnServer(t *testing.T) {
	srv := pgtest.Shared(t)
	url := srv.NewDatabase(t)
	bin := buildBinary(t)
	dir := t.TempDir()
	write := func(sleep string) {
		rb := `version: 1
name: sigint
params:
  url: {secret: true}
connections:
  db: ${{ params.url }}
steps:
  - id: long
    sql: {on: db, script: "SELECT pg_sleep(` + sleep + `)"}
  - id: after
    sql: {on: db, script: "CREATE TABLE after_ran (x int)"}
  - id: cleanup
    always: true
    sql: {on: db, script: "CREATE TABLE IF NOT EXISTS cleanup_ran (x int)"}
`
		if err := os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(rb), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("60")
	args := []string{"rb.yaml", "--var", "url=" + url, "--state", "st.json", "--log-format", "json"}
	cmd := exec.Command(bin, append([]string{"run"}, args...)...)
	cmd.Dir = dir
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	db := pgtest.DatabaseName(t, url)
	active := `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'runbook/sigint/%' AND query LIKE 'SELECT pg_sleep%' AND state = 'active'`
	deadline := time.Now().Add(10 * time.Second)
	for srv.QueryValue(t, db, active) != "1" {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the query never showed up in pg_stat_activity\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 130 {
		t.Fatalf("exit %v, want 130\n%s", err, tail(out.String()))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the interrupt took %s to end the run", d)
	}
	// The cancel request is asynchronous: give the server a moment.
	for deadline := time.Now().Add(3 * time.Second); srv.QueryValue(t, db, active) != "0"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("the pg_sleep query is still active on the server 3s after the interrupt")
			break
		}
	}
	if srv.QueryValue(t, db, `SELECT count(*) FROM pg_class WHERE relname = 'cleanup_ran'`) != "1" {
		t.Errorf("the always step did not run after the interrupt")
	}
	if srv.QueryValue(t, db, `SELECT count(*) FROM pg_class WHERE relname = 'after_ran'`) != "0" {
		t.Errorf("a step after the interrupted one ran")
	}
	if !strings.Contains(out.String(), `"event":"run.interrupted"`) || !strings.Contains(out.String(), "runbook resume") {
		t.Errorf("no run.interrupted event or resume command in the output\n%s", tail(out.String()))
	}
	// The interrupted step may be edited (it did not complete) and resumed.
	write("0")
	code, rout := crashRun(t, bin, dir, 0, append([]string{"resume"}, args...)...)
	if code != 0 {
		t.Fatalf("resume: exit %d\n%s", code, tail(rout))
	}
	if srv.QueryValue(t, db, `SELECT count(*) FROM pg_class WHERE relname = 'after_ran'`) != "1" {
		t.Errorf("resume did not run the remaining steps")
	}
}

// TestSecondSIGINTExitsAtOnce: a second interrupt does not wait for clean-up.
func TestSecondSIGINTExitsAtOnce(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	rb := `version: 1
name: twice
steps:
  - id: long
    shell: {run: "sleep 60"}
  - id: slow-cleanup
    always: true
    shell: {run: "sleep 60"}
`
	if err := os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(rb), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "rb.yaml", "--state", "st.json", "--log-format", "json")
	cmd.Dir = dir
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &out, `"step":"long","event":"cmd.start"`)
	cmd.Process.Signal(syscall.SIGINT)
	waitFor(t, &out, `"step":"slow-cleanup","event":"cmd.start"`)
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("exit %v, want 130\n%s", err, tail(out.String()))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the second interrupt took %s", d)
	}
}

func waitFor(t *testing.T, out *lockedBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s\n%s", s, tail(out.String()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOutputsSurviveResume: a step after the crash reads outputs of steps that
// ran before it, in another process.
func TestOutputsSurviveResume(t *testing.T) {
	srv := pgtest.Shared(t)
	url := srv.NewDatabase(t)
	bin := buildBinary(t)
	dir := t.TempDir()
	rb := `version: 1
name: outputs
params:
  url: {secret: true}
connections:
  db: ${{ params.url }}
steps:
  - id: pick
    sql: {on: db, capture: true, script: "SELECT 'mixed Case' AS name, 42 AS answer"}
  - id: greet
    shell: {run: "echo -n '${{ steps.pick.outputs.row.name }}' > greeting", capture: stdout}
  - id: crash-here
    sql: {on: db, script: "CREATE TABLE marker (x int)"}
  - id: use
    sql:
      on: db
      script: CREATE TABLE ${{ ident(steps.pick.outputs.row.name) }} AS SELECT $1::int AS answer
      args: ['${{ steps.pick.outputs.row.answer }}']
`
	if err := os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(rb), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"rb.yaml", "--var", "url=" + url, "--state", "st.json", "--log-format", "json"}
	t.Setenv("RUNBOOK_CRASH_AFTER", "committed:crash-here")
	if code, out := crashRun(t, bin, dir, 0, append([]string{"run"}, args...)...); code != -1 {
		t.Fatalf("the fault was not hit: exit %d\n%s", code, tail(out))
	}
	os.Unsetenv("RUNBOOK_CRASH_AFTER")
	if code, out := crashRun(t, bin, dir, 0, append([]string{"resume"}, args...)...); code != 0 {
		t.Fatalf("resume: exit %d\n%s", code, tail(out))
	}
	if got := srv.QueryValue(t, pgtest.DatabaseName(t, url), `SELECT answer FROM "mixed Case"`); got != "42" {
		t.Errorf("the step after the crash saw outputs %q, want 42", got)
	}
}

// TestInterruptedNonTransactionalStep: a shell step killed in the middle may or
// may not have taken effect; resume refuses (exit 4) and says what to check,
// unless the operator names it with --rerun or the runbook marks it idempotent.
func TestInterruptedNonTransactionalStep(t *testing.T) {
	bin := buildBinary(t)
	for _, idempotent := range []bool{false, true} {
		dir := t.TempDir()
		rb := `version: 1
name: nontx
steps:
  - id: copy
    idempotent: ` + map[bool]string{true: "true", false: "false"}[idempotent] + `
    shell: {run: "echo started >> effects; [ $(grep -c started effects) -gt 1 ] || sleep 30; echo finished >> effects"}
  - id: after
    shell: {run: "echo after >> effects"}
`
		if err := os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(rb), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"rb.yaml", "--state", "st.json", "--log-format", "json"}
		cmd := exec.Command(bin, append([]string{"run"}, args...)...)
		cmd.Dir = dir
		var out lockedBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, &out, `"step":"copy","event":"cmd.start"`)
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if b, _ := os.ReadFile(filepath.Join(dir, "effects")); strings.Contains(string(b), "started") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the step never started")
			}
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()

		code, rout := crashRun(t, bin, dir, 0, append([]string{"resume"}, args...)...)
		if !idempotent {
			if code != 4 || !strings.Contains(rout, "--rerun copy") || !strings.Contains(rout, "not transactional") {
				t.Fatalf("resume of an interrupted shell step: exit %d, want 4 with what to check and --rerun\n%s", code, tail(rout))
			}
			code, rout = crashRun(t, bin, dir, 0, append(append([]string{"resume"}, args...), "--rerun", "copy")...)
		}
		if code != 0 {
			t.Fatalf("idempotent=%v: resume: exit %d\n%s", idempotent, code, tail(rout))
		}
		effects, _ := os.ReadFile(filepath.Join(dir, "effects"))
		if got := strings.Count(string(effects), "started"); got != 2 {
			t.Errorf("idempotent=%v: the step started %d times, want 2 (once killed, once re-run)", idempotent, got)
		}
		if !strings.Contains(string(effects), "after") {
			t.Errorf("idempotent=%v: the step after it did not run", idempotent)
		}
	}
}

// TestConfirmOnTerminal: on a terminal the operator types yes; no asks for a
// reason and rejects (exit 6); anything else stops the run; a
// pseudo-terminal comes from script(1).
func TestConfirmOnTerminal(t *testing.T) {
	scriptCmd, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) not installed: no pseudo-terminal to test with")
	}
	bin := buildBinary(t)
	for answer, wantCode := range map[string]int{"yes": 0, "no": 6, "maybe": 1} {
		dir := t.TempDir()
		rb := "version: 1\nname: tty\nsteps:\n  - id: gate\n    confirm: Is the application in maintenance mode?\n  - id: after\n    shell: {run: \"touch after\"}\n"
		if err := os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(rb), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(scriptCmd, "-qfec", bin+" run rb.yaml --log audit.log", "/dev/null")
		cmd.Dir = dir
		stdin, _ := cmd.StdinPipe()
		var out lockedBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, &out, "Type yes to continue")
		stdin.Write([]byte(answer + "\n"))
		if answer == "no" {
			waitFor(t, &out, "Reason for rejecting")
			stdin.Write([]byte("not in maintenance mode\n"))
		}
		err := cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != wantCode {
			t.Errorf("answer %q: exit %d, want %d\n%s", answer, code, wantCode, tail(out.String()))
		}
		_, ranAfter := os.Stat(filepath.Join(dir, "after"))
		if (ranAfter == nil) != (answer == "yes") {
			t.Errorf("answer %q: the step after the gate ran=%v", answer, ranAfter == nil)
		}
		log, _ := os.ReadFile(filepath.Join(dir, "audit.log"))
		if answer == "yes" && !strings.Contains(string(log), `"how":"terminal"`) {
			t.Errorf("the audit log does not record a terminal approval")
		}
		if answer == "no" && !strings.Contains(string(log), `"how":"terminal","at":`) || answer == "no" && !strings.Contains(string(log), `"reason":"not in maintenance mode"`) {
			t.Errorf("the audit log does not record the terminal rejection and its reason:\n%s", log)
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for a child's output copier and the
// test reading it at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
