package executor_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/pgtest"
	"github.com/runbookhq/runbook/internal/testbin"
)

// mountTmpfs mounts a tmpfs of size bytes on a new directory and returns it;
// it is unmounted when the test ends. It needs root (mount(2)): elsewhere the
// test is skipped, and under CI=true it fails.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0755", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("cannot mount a tmpfs (needs root): %v %s", err, out)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg + " (under CI=true this fails the test)")
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// TestAuditLogFullStopsTheRun runs the real binary with its audit log on a
// small tmpfs that a step's 20,000 lines of output fill: the run must stop
// before the next step, exit 5 with one message on standard error (no flood
// of "could not write event"), and stay resumable; once there is room, the
// resume runs the rest, and the log verifies with the torn line recorded.
func TestAuditLogFullStopsTheRun(t *testing.T) {
	srv := pgtest.Shared(t)
	url := srv.NewDatabase(t)
	small := mountTmpfs(t, 256<<10)
	bin := testbin.Build(t)
	dir := t.TempDir()
	rb := `version: 1
name: full
params:
  url: {secret: true, env: DB_URL}
connections:
  db: ${{ params.url }}
steps:
  - id: chatty
    shell: {run: 'for i in $(seq 1 20000); do echo "line $i of what fills the disk"; done'}
  - id: after
    sql: {on: db, script: CREATE TABLE after_ran ()}
  - id: cleanup
    always: true
    sql: {on: db, script: CREATE TABLE cleanup_ran ()}
`
	if err := os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(rb), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(small, "audit.log")
	run := func(verb string) (int, string, string) {
		cmd := exec.Command(bin, verb, "rb.yaml", "--state", "st.json", "--log", logPath, "--log-format", "json")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "DB_URL="+url)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
	}
	db := pgtest.DatabaseName(t, url)
	exists := func(table string) bool {
		return srv.QueryValue(t, db, `SELECT count(*) FROM pg_tables WHERE tablename = $1`, table) == "1"
	}

	code, stdout, stderr := run("run")
	if code != 5 {
		t.Fatalf("run: exit %d, want 5 (the audit log cannot be written)\nstderr:\n%s\nstdout:\n%s", code, stderr, tail(stdout))
	}
	if exists("after_ran") || exists("cleanup_ran") {
		t.Error("steps ran after the audit log could not be written")
	}
	if strings.Contains(stderr, "could not write event") {
		t.Errorf("zerolog's complaints reached standard error (%d of them)", strings.Count(stderr, "could not write event"))
	}
	if !strings.Contains(stderr, "no space left on device") || !strings.Contains(stderr, "the run stopped before step after") ||
		!strings.Contains(stderr, "runbook resume rb.yaml") {
		t.Errorf("standard error does not say what happened, and how to go on:\n%s", stderr)
	}
	if n := strings.Count(stderr, "runbook: "); n != 2 { // the state line at start, the error
		t.Errorf("standard error has %d messages, want the state line and one error:\n%s", n, stderr)
	}
	if !strings.Contains(stdout, `"event":"run.end","outcome":"failed"`) {
		t.Errorf("the console does not show the run's end:\n%s", tail(stdout))
	}
	t.Logf("standard error:\n%s", stderr)

	// Room again: the resume records the tear, runs the rest, and the log
	// verifies.
	if out, err := exec.Command("mount", "-o", "remount,size=64m", small).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, out)
	}
	code, stdout, stderr = run("resume")
	if code != 0 {
		t.Fatalf("resume: exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr, tail(stdout))
	}
	if !exists("after_ran") || !exists("cleanup_ran") {
		t.Errorf("the resume did not run the remaining steps (after: %v, cleanup: %v)\n%s", exists("after_ran"), exists("cleanup_ran"), tail(stdout))
	}
	if strings.Contains(stdout, "of what fills the disk") {
		t.Error("the resume ran step chatty again")
	}
	res, err := executor.VerifyLog(logPath)
	if err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	if len(res.Tears) != 1 || len(res.Runs) != 1 || res.Runs[0].Invocations != 2 {
		t.Errorf("verify: %s; want one run of two invocations and one recorded tear", res.Summary())
	}
	t.Log(res.Summary())
}
