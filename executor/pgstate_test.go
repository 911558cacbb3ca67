package executor_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runbookhq/runbook/internal/pgtest"
	"github.com/runbookhq/runbook/internal/redact"
	"github.com/runbookhq/runbook/internal/testbin"
)

// The control database's own guarantees (docs/state-postgres.md), beyond
// those every store's tests check (stores_test.go).

// started is the runbook binary running in the background.
type started struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan error
}

// start runs the binary in dir in a process group of its own; it is killed
// when the test ends.
func start(t *testing.T, bin, dir string, env []string, args ...string) *started {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &started{cmd: cmd, out: out, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	})
	return s
}

// wait waits for the process's end and returns its exit code (-1: killed).
func (s *started) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case err := <-s.done:
		s.done <- err
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(d):
		t.Fatalf("the run did not end within %s\n%s", d, tail(s.out.String()))
		return 0
	}
}

func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestResumeOnAnotherMachine: a run killed in the middle of a generate step
// is resumed by a process in another directory, with nothing of the first
// one's files: the state, its journal and the frozen statement list come
// from the control database ($RUNBOOK_STATE, the run's key derived from the
// runbook and its params as the file store derives its file name).
func TestResumeOnAnotherMachine(t *testing.T) {
	srv := pgtest.Shared(t)
	target := srv.NewDatabase(t)
	control := srv.NewDatabase(t)
	bin := buildBinary(t)
	rb := `version: 1
name: travel
params:
  url: {secret: true}
  customer: {}
connections:
  db: ${{ params.url }}
steps:
  - id: setup
    sql: {on: db, script: "CREATE TABLE effects (k text NOT NULL); CREATE TABLE source AS SELECT g FROM generate_series(1, 50) g"}
  - id: gen
    generate: {on: db, query: "SELECT format('INSERT INTO effects VALUES (%L)', 'row-' || g) FROM source ORDER BY g"}
  - id: after
    shell: {run: "echo after-ran"}
`
	first, second := t.TempDir(), t.TempDir()
	writeFile(t, first, "rb.yaml", rb)
	writeFile(t, second, "rb.yaml", rb)
	env := []string{"RUNBOOK_STATE=" + control, "RUNBOOK_CRASH_AFTER=committed:gen:20"}
	args := []string{"rb.yaml", "--var", "url=" + target, "--var", "customer=acme", "--log-format", "json"}
	code, out := testbin.Run(t, bin, testbin.Cmd{Dir: first, Env: env}, append([]string{"run"}, args...)...)
	if code != -1 {
		t.Fatalf("the fault was not hit: exit %d\n%s", code, tail(out))
	}
	if !strings.Contains(out, "runbook: state "+strings.Split(control, "?")[0]) || !strings.Contains(out, "key=travel-") {
		t.Errorf("the run does not say where its state is (the control database, key travel-…):\n%s", tail(out))
	}
	// The generator's rows change: a resume that generated the list again
	// would run 80 statements, not the frozen 50.
	srv.Exec(t, pgtest.DatabaseName(t, target), `INSERT INTO source SELECT generate_series(51, 80)`)
	code, out = testbin.Run(t, bin, testbin.Cmd{Dir: second, Env: env[:1]}, append([]string{"resume"}, args...)...)
	if code != 0 {
		t.Fatalf("resume in another directory: exit %d\n%s", code, tail(out))
	}
	if !strings.Contains(out, "after-ran") || !strings.Contains(out, `"event":"step.settled"`) {
		t.Errorf("the resume did not settle the step's transaction and go on:\n%s", tail(out))
	}
	db := pgtest.DatabaseName(t, target)
	if got := srv.QueryValue(t, db, `SELECT count(*) || ' ' || count(DISTINCT k) FROM effects`); got != "50 50" {
		t.Errorf("effects (count, distinct): %s; want the frozen 50, each once", got)
	}
	for _, dir := range []string{first, second} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Name() != "rb.yaml" {
				t.Errorf("%s holds %s: the state belongs in the control database", dir, e.Name())
			}
		}
	}
	// status, from a third directory, reads it too.
	code, out = testbin.Run(t, bin, testbin.Cmd{Dir: t.TempDir(), Env: env[:1]}, "status", filepath.Join(second, "rb.yaml"), "--var", "customer=acme")
	if code != 0 || !strings.Contains(out, "outcome   succeeded") || !regexp.MustCompile(`\bgen +succeeded`).MatchString(out) {
		t.Errorf("status: exit %d\n%s", code, out)
	}
}

// TestLeaseStatusAndKill: runbook status names the process that holds a
// run's lock (host, pid, run, heartbeat); a second run is refused with the
// same; and kill -9 of the holder releases the lock at once, since it dies
// with the holder's connection: the next resume takes it.
func TestLeaseStatusAndKill(t *testing.T) {
	control := controlURL(t, "lease")
	bin := buildBinary(t)
	dir := t.TempDir()
	writeFile(t, dir, "rb.yaml", `version: 1
name: lease
steps:
  - id: wait
    idempotent: true
    shell: {run: 'echo waiting; sleep "$(cat duration)"'}
`)
	writeFile(t, dir, "duration", "60")
	run := start(t, bin, dir, nil, "run", "rb.yaml", "--state", control, "--log-format", "json")
	waitFor(t, run.out, "waiting")
	host, _ := os.Hostname()
	code, out := testbin.Run(t, bin, testbin.Cmd{Dir: dir}, "status", "--state", control)
	holder := fmt.Sprintf("pid %d on %s, run ", run.cmd.Process.Pid, host)
	if code != 0 || !strings.Contains(out, "unfinished (a runbook process is running it now: "+holder) || !strings.Contains(out, "heartbeat") {
		t.Errorf("status while the run holds the lock: exit %d\n%s", code, out)
	}
	code, out = testbin.Run(t, bin, testbin.Cmd{Dir: dir}, "status", "--state", control, "--format", "json")
	var st struct {
		RunID    string `json:"run_id"`
		Locked   bool   `json:"locked"`
		LockedBy string `json:"locked_by"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 {
		t.Fatalf("status --format json: exit %d, %v\n%s", code, err, out)
	}
	if !st.Locked || !strings.HasPrefix(st.LockedBy, holder+st.RunID+" since ") {
		t.Errorf("status JSON: locked %v, locked_by %q; want %q…", st.Locked, st.LockedBy, holder+st.RunID)
	}
	code, out = testbin.Run(t, bin, testbin.Cmd{Dir: dir}, "resume", "rb.yaml", "--state", control, "--log-format", "json")
	if code != 4 || !strings.Contains(out, "is locked by another runbook process ("+holder+st.RunID) {
		t.Errorf("a second process: exit %d, want 4 naming the holder\n%s", code, tail(out))
	}

	syscall.Kill(-run.cmd.Process.Pid, syscall.SIGKILL)
	run.wait(t, 10*time.Second)
	killed := time.Now()
	writeFile(t, dir, "duration", "0")
	code, out = testbin.Run(t, bin, testbin.Cmd{Dir: dir}, "resume", "rb.yaml", "--state", control, "--log-format", "json")
	if code != 0 {
		t.Fatalf("resume after kill -9 of the holder: exit %d\n%s", code, tail(out))
	}
	t.Logf("the lock was taken %s after the holder was killed", time.Since(killed).Round(time.Millisecond))
	code, out = testbin.Run(t, bin, testbin.Cmd{Dir: dir}, "status", "--state", control)
	if code != 0 || !strings.Contains(out, "outcome   succeeded\n") {
		t.Errorf("status after the resume: exit %d\n%s", code, out)
	}
}

// TestLostControlConnectionStopsTheRun: when the server ends the session
// that holds the run's lock (a restart, a failover, pg_terminate_backend),
// the run stops — another process may take the lock — with exit 5 and a
// message that says so; a resume continues it.
func TestLostControlConnectionStopsTheRun(t *testing.T) {
	srv := pgtest.Shared(t)
	control := controlURL(t, "lost")
	bin := buildBinary(t)
	dir := t.TempDir()
	writeFile(t, dir, "rb.yaml", `version: 1
name: lost
steps:
  - id: wait
    idempotent: true
    shell: {run: 'echo waiting; sleep "$(cat duration)"'}
  - id: next
    shell: {run: "echo next-ran"}
`)
	writeFile(t, dir, "duration", "60")
	run := start(t, bin, dir, nil, "run", "rb.yaml", "--state", control, "--log-format", "json")
	waitFor(t, run.out, "waiting")
	srv.Exec(t, pgtest.DatabaseName(t, control), `SELECT pg_terminate_backend(backend_pid) FROM runbook_state.leases WHERE key = 'lost'`)
	cut := time.Now()
	code := run.wait(t, 30*time.Second)
	out := run.out.String()
	t.Logf("the run stopped %s after its session was ended", time.Since(cut).Round(time.Millisecond))
	if code != 5 || !strings.Contains(out, "the connection to the control database that held the run's lock is gone") {
		t.Errorf("exit %d, want 5 saying the lock went\n%s", code, tail(out))
	}
	if strings.Contains(out, "next-ran") {
		t.Errorf("the run went on to its next step after losing its lock")
	}
	writeFile(t, dir, "duration", "0")
	code, out = testbin.Run(t, bin, testbin.Cmd{Dir: dir}, "resume", "rb.yaml", "--state", control, "--log-format", "json")
	if code != 0 || !strings.Contains(out, "next-ran") {
		t.Errorf("resume: exit %d\n%s", code, tail(out))
	}
}

// TestControlDatabasePasswordNeverShown: the control database's password,
// in --state or $RUNBOOK_STATE, is masked wherever runbook writes: the
// console, errors, the resume command it prints, the audit log, status,
// report and the state itself; a wrong one fails with exit 5, masked too.
func TestControlDatabasePasswordNeverShown(t *testing.T) {
	srv := pgtest.NewCluster(t, pgtest.WithHBA("host all keeper 127.0.0.1/32 scram-sha-256"))
	if srv.External() {
		t.Skip("needs a cluster of its own, with password authentication")
	}
	const password = `Ct:l/p@?&=%"w0rd`
	srv.Exec(t, "postgres", `CREATE ROLE keeper LOGIN PASSWORD `+quoteLiteral(password))
	base := srv.NewDatabase(t)
	db := pgtest.DatabaseName(t, base)
	srv.Exec(t, db, `GRANT CREATE ON DATABASE `+db+` TO keeper`)
	withPassword := func(pw string) string {
		u, _ := url.Parse(base)
		u.User = url.UserPassword("keeper", pw)
		return u.String()
	}
	control := withPassword(password)
	bin := buildBinary(t)
	dir := t.TempDir()
	writeFile(t, dir, "rb.yaml", `version: 1
name: masked
steps:
  - id: first
    shell: {run: "echo first"}
  - id: broken
    shell: {run: "test -f fixed"}
`)
	var seen strings.Builder
	runbook := func(env []string, args ...string) (int, string) {
		code, out := testbin.Run(t, bin, testbin.Cmd{Dir: dir, Env: env}, args...)
		seen.WriteString(out)
		return code, out
	}
	code, out := runbook(nil, "run", "rb.yaml", "--state", control, "--log", "audit.log", "--log-format", "json")
	if code != 1 || !strings.Contains(out, "runbook resume rb.yaml --state 'postgres://keeper:***@") {
		t.Errorf("a failed run: exit %d, want 1 and the resume command with the password masked\n%s", code, tail(out))
	}
	code, out = runbook([]string{"RUNBOOK_STATE=" + control}, "status", "rb.yaml")
	if code != 0 || !strings.Contains(out, "keeper:***@") {
		t.Errorf("status: exit %d\n%s", code, out)
	}
	if code, out = runbook(nil, "status", "rb.yaml", "--format", "json"); code != 2 || !strings.Contains(out, "no state at .runbook/masked-") {
		t.Errorf("status without $RUNBOOK_STATE looks for the state file: exit %d\n%s", code, out)
	}
	if code, out = runbook([]string{"RUNBOOK_STATE=" + control}, "status", "rb.yaml", "--format", "json"); code != 0 || !strings.Contains(out, `"state": "postgres://keeper:***@`) {
		t.Errorf("status --format json: exit %d\n%s", code, out)
	}
	if code, out = runbook([]string{"RUNBOOK_STATE=" + control}, "report", "rb.yaml", "--log", "audit.log"); code != 0 || !strings.Contains(out, "broken") {
		t.Errorf("report: exit %d\n%s", code, out)
	}
	if code, out = runbook(nil, "status", "--state", control); code != 2 || !strings.Contains(out, "names no run: add ?key=NAME") {
		t.Errorf("status --state URL without a key: exit %d, want 2 asking for ?key=\n%s", code, out)
	}
	writeFile(t, dir, "fixed", "")
	// From the environment: the resume command needs no --state.
	code, out = runbook([]string{"RUNBOOK_STATE=" + control}, "run", "rb.yaml", "--log-format", "json")
	if code != 4 || !strings.Contains(out, "continue it with:\n  runbook resume rb.yaml\n") {
		t.Errorf("a run on the unfinished state from $RUNBOOK_STATE: exit %d, want 4 and a resume command without --state\n%s", code, tail(out))
	}
	if code, out = runbook([]string{"RUNBOOK_STATE=" + control}, "resume", "rb.yaml", "--log", "audit.log", "--log-format", "json"); code != 0 {
		t.Errorf("resume: exit %d\n%s", code, tail(out))
	}
	code, out = runbook(nil, "status", "--state", withPassword(password+"x")+"&key=x")
	if code != 5 || !strings.Contains(out, "password authentication failed") {
		t.Errorf("a wrong password: exit %d, want 5\n%s", code, out)
	}
	audit, err := os.ReadFile(filepath.Join(dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	seen.Write(audit)
	for _, table := range []string{"runs", "journal", "blob_chunks", "leases"} {
		seen.WriteString(srv.QueryValue(t, db, `SELECT coalesce(string_agg(t::text, ' '), '') FROM runbook_state.`+table+` t`))
	}
	for _, form := range redact.Forms(password) {
		if strings.Contains(seen.String(), form) {
			t.Errorf("the control database's password (as %q) was written", form)
		}
	}
	if !strings.Contains(seen.String(), "keeper:***@") {
		t.Errorf("the control database is never named: the check proves little")
	}
}

// TestControlDatabaseEditRefused: a state edited in the control database
// with SQL fails its integrity check as an edited file does: status and
// resume exit 4 and nothing runs.
func TestControlDatabaseEditRefused(t *testing.T) {
	srv := pgtest.Shared(t)
	control := controlURL(t, "edited")
	bin := buildBinary(t)
	dir := t.TempDir()
	writeFile(t, dir, "rb.yaml", `version: 1
name: edited
steps:
  - id: first
    shell: {run: "echo first-ran"}
  - id: broken
    shell: {run: "exit 3"}
`)
	if code, out := testbin.Run(t, bin, testbin.Cmd{Dir: dir}, "run", "rb.yaml", "--state", control, "--log-format", "json"); code != 1 {
		t.Fatalf("run: exit %d\n%s", code, tail(out))
	}
	srv.Exec(t, pgtest.DatabaseName(t, control), `UPDATE runbook_state.runs
		SET snapshot = convert_to(replace(convert_from(snapshot, 'UTF8'), '"failed"', '"succeeded"'), 'UTF8') WHERE key = 'edited'`)
	code, out := testbin.Run(t, bin, testbin.Cmd{Dir: dir}, "status", "--state", control)
	if code != 4 || !strings.Contains(out, "failed its integrity check: the snapshot does not match its seal") {
		t.Errorf("status of an edited state: exit %d, want 4\n%s", code, out)
	}
	code, out = testbin.Run(t, bin, testbin.Cmd{Dir: dir}, "resume", "rb.yaml", "--state", control, "--log-format", "json")
	if code != 4 || strings.Contains(out, "first-ran") || strings.Contains(out, `"event":"step.start"`) {
		t.Errorf("resume of an edited state: exit %d, want 4 and nothing run\n%s", code, tail(out))
	}
}
