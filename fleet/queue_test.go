package fleet

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runbookhq/runbook/internal/pgtest"
	"github.com/runbookhq/runbook/internal/testbin"
)

// stateArgs are the --state flags of a queue test's commands: none for the
// PostgreSQL store in the queue's database, or a directory of state files
// that the workers share.
func stateArgs(state string) []string {
	if state == "" {
		return nil
	}
	return []string{"--state", state}
}

// workerProc is a runbook worker running as a process of its own.
type workerProc struct {
	id  string
	cmd *exec.Cmd
	mu  sync.Mutex
	out bytes.Buffer
}

func (w *workerProc) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.Write(p)
}

func (w *workerProc) output() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.String()
}

// startWorker starts `runbook worker` in the fixture's directory; the test's
// end stops it (SIGTERM, then SIGKILL).
func startWorker(t *testing.T, bin string, f *fleetFixture, queue, state, id string, args ...string) *workerProc {
	t.Helper()
	w := &workerProc{id: id}
	all := append(append([]string{"worker", "--queue", queue, "--dir", filepath.Join(f.dir, "logs"),
		"--rescue-after", "4s", "--id", id}, stateArgs(state)...), args...)
	w.cmd = exec.Command(bin, all...)
	w.cmd.Dir = f.dir
	w.cmd.Stdout, w.cmd.Stderr = w, w
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { w.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-w.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("worker %s:\n%s", id, testbin.Tail(w.output(), 4000))
		}
	})
	return w
}

// waitFor polls cond until it holds, failing the test after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A fleet of 20 customers through the queue, two workers, one of them
// killed with SIGKILL while it runs several customers: the other takes its
// runs over and resumes them; every customer ends migrated exactly once
// (every step's effect once, every run begun once), each audit log
// verifies, and neither the queue, the states nor any file holds a secret.
// The states in the queue's database (the PostgreSQL store, whose run lock
// is a session advisory lock with a lease), and in state files the workers
// share.
func TestQueueFleetWorkerKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes: skipped with -short")
	}
	t.Run("postgres store", func(t *testing.T) { workerKilled(t, false) })
	t.Run("shared state files", func(t *testing.T) { workerKilled(t, true) })
}

func workerKilled(t *testing.T, files bool) {
	f := newFixture(t, 8, "0.15")
	state := ""
	if files {
		state = filepath.Join(f.dir, "states")
	}
	queue := f.srv.NewDatabase(t)
	qdb := pgtest.DatabaseName(t, queue)
	customers := names("c", 20)
	for _, c := range customers {
		f.customer(t, c)
	}
	bin := testbin.Build(t)
	w1 := startWorker(t, bin, f, queue, state, "w1", "--max-workers", "4")
	w2 := startWorker(t, bin, f, queue, state, "w2", "--max-workers", "4")

	code, out := testbin.Run(t, bin, testbin.Cmd{Dir: f.dir}, append([]string{"fleet", "run", "migrate.yaml", "--vars", "customers/*.yaml",
		"--queue", queue, "--max-concurrency", "8"}, stateArgs(state)...)...)
	if code != 0 {
		t.Fatalf("fleet run --queue: exit %d\n%s", code, out)
	}
	// Kill w1 once at least two of the customers it runs have begun (their
	// first step committed: the span).
	waitFor(t, 90*time.Second, "w1 to run two customers", func() bool {
		n := f.srv.QueryValue(t, qdb, `SELECT count(*) FROM runbook_queue.fleet_run WHERE worker = 'w1' AND status = 'running'`)
		return atoi(n) >= 2
	})
	waitFor(t, 90*time.Second, "two of w1's customers to begin", func() bool {
		running := f.srv.Query(t, qdb, `SELECT customer FROM runbook_queue.fleet_run WHERE worker = 'w1' AND status = 'running'`)
		begun := 0
		for _, r := range running {
			if f.srv.QueryValue(t, f.db, `SELECT count(*) FROM spans WHERE customer = $1`, r[0]) != "0" {
				begun++
			}
		}
		return begun >= 2
	})
	syscall.Kill(-w1.cmd.Process.Pid, syscall.SIGKILL)
	inFlight := f.srv.Query(t, qdb, `SELECT customer FROM runbook_queue.fleet_run WHERE worker = 'w1' AND status = 'running' ORDER BY 1`)
	if len(inFlight) == 0 {
		t.Fatal("w1 ran nothing when killed")
	}
	// The customers that had begun when w1 died have a state to resume; one
	// taken but not begun yet may start afresh.
	begun := map[string]bool{}
	for _, r := range inFlight {
		begun[r[0]] = f.srv.QueryValue(t, f.db, `SELECT count(*) FROM spans WHERE customer = $1`, r[0]) != "0"
	}

	waitFor(t, 3*time.Minute, "every customer to end", func() bool {
		return f.srv.QueryValue(t, qdb, `SELECT count(*) FROM runbook_queue.fleet_run WHERE status IN ('queued', 'running')`) == "0"
	})
	for _, r := range f.srv.Query(t, qdb, `SELECT customer, status, coalesce(error, '') FROM runbook_queue.fleet_run WHERE status <> 'succeeded'`) {
		t.Errorf("%s: %s %s", r[0], r[1], r[2])
	}
	counts, bad := f.effects(t)
	for _, c := range customers {
		if counts[c] != 8 {
			t.Errorf("%s: %d effects, want 8", c, counts[c])
		}
	}
	if len(bad) > 0 {
		t.Errorf("effects not exactly once: %v", bad)
	}
	if n := f.srv.QueryValue(t, f.db, `SELECT count(*) FROM (SELECT customer FROM spans GROUP BY 1 HAVING count(*) <> 1) x`); n != "0" {
		t.Errorf("%s customers begun more than once", n)
	}
	// The runs w1 had in flight were taken over, by w2, and resumed.
	for _, r := range inFlight {
		if got := f.srv.QueryValue(t, qdb, `SELECT worker FROM runbook_queue.fleet_run WHERE customer = $1`, r[0]); got != "w2" {
			t.Errorf("%s (in flight on w1) ended on %s", r[0], got)
		}
		if begun[r[0]] && !strings.Contains(w2.output(), "fleet-test/"+r[0]+": resuming") {
			t.Errorf("w2 did not resume %s:\n%s", r[0], w2.output())
		}
	}
	if n := f.srv.QueryValue(t, qdb, `SELECT count(*) FROM runbook_queue.river_job WHERE metadata ? 'runbook:takeovers'`); n != fmt.Sprint(len(inFlight)) {
		t.Errorf("%s jobs taken over, want %d", n, len(inFlight))
	}
	verifyLogs(t, filepath.Join(f.dir, "logs"), customers)

	// fleet status through the queue: every customer succeeded, exit 0.
	code, out = testbin.Run(t, bin, testbin.Cmd{Dir: f.dir}, append([]string{"fleet", "status", "--queue", queue, "--fleet", "fleet-test"}, stateArgs(state)...)...)
	if code != 0 || strings.Count(out, " succeeded ") != 20 {
		t.Errorf("fleet status: exit %d\n%s", code, out)
	}
	noSecret(t, filepath.Join(f.dir, "logs"), f.password)
	if files {
		noSecret(t, state, f.password)
	} else {
		// Every customer's state is in the queue's database, keyed by the
		// fleet and the customer; none holds the secret.
		if n := f.srv.QueryValue(t, qdb, `SELECT count(*) FROM runbook_state.runs WHERE key LIKE 'fleet.fleet-test.c%'`); n != "20" {
			t.Errorf("%s states in the queue's database, want 20", n)
		}
		if n := f.srv.QueryValue(t, qdb, `SELECT (SELECT count(*) FROM runbook_state.runs WHERE position(convert_to($1, 'UTF8') IN snapshot) > 0)
			+ (SELECT count(*) FROM runbook_state.journal WHERE position(convert_to($1, 'UTF8') IN record) > 0)
			+ (SELECT count(*) FROM runbook_state.blob_chunks WHERE position(convert_to($1, 'UTF8') IN data) > 0)`, f.password); n != "0" {
			t.Errorf("the states hold the secret in %s rows", n)
		}
	}
	if n := f.srv.QueryValue(t, qdb, `SELECT (SELECT count(*) FROM runbook_queue.river_job WHERE args::text LIKE '%' || $1 || '%')
		+ (SELECT count(*) FROM runbook_queue.fleet_run r WHERE r::text LIKE '%' || $1 || '%')
		+ (SELECT count(*) FROM runbook_queue.fleet r WHERE r::text LIKE '%' || $1 || '%')`, f.password); n != "0" {
		t.Errorf("the queue holds the secret in %s rows", n)
	}
}

// Three customers made to fail, --max-errors 2, two workers: no run starts
// after the third failure (the fleet's count of errors holds across
// workers), the customers left are skipped, and fleet run --wait exits 1.
func TestQueueFleetMaxErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes: skipped with -short")
	}
	f := newFixture(t, 2, "0.2")
	queue := f.srv.NewDatabase(t)
	qdb := pgtest.DatabaseName(t, queue)
	for _, c := range names("a", 3) {
		f.customer(t, c, `fail: "yes"`)
	}
	for _, c := range names("b", 7) {
		f.customer(t, c)
	}
	bin := testbin.Build(t)
	startWorker(t, bin, f, queue, "", "w1", "--max-workers", "2")
	startWorker(t, bin, f, queue, "", "w2", "--max-workers", "2")
	code, out := testbin.Run(t, bin, testbin.Cmd{Dir: f.dir, Timeout: 3 * time.Minute}, "fleet", "run", "migrate.yaml", "--vars", "customers/*.yaml",
		"--queue", queue, "--max-concurrency", "2", "--max-errors", "2", "--wait")
	if code != 1 {
		t.Fatalf("fleet run --wait: exit %d, want 1\n%s", code, out)
	}
	if got := f.srv.QueryValue(t, qdb, `SELECT errors FROM runbook_queue.fleet WHERE id = 'fleet-test'`); got != "3" {
		t.Errorf("the fleet counted %s errors, want 3", got)
	}
	failed := f.srv.Query(t, qdb, `SELECT customer FROM runbook_queue.fleet_run WHERE status = 'failed' ORDER BY 1`)
	if len(failed) != 3 {
		t.Errorf("failed: %v, want the three a's", failed)
	}
	if late := f.srv.Query(t, qdb, `SELECT customer FROM runbook_queue.fleet_run
		WHERE started_at > (SELECT max(ended_at) FROM runbook_queue.fleet_run WHERE status = 'failed')`); len(late) > 0 {
		t.Errorf("runs started after the third failure: %v", late)
	}
	skipped := f.srv.QueryValue(t, qdb, `SELECT count(*) FROM runbook_queue.fleet_run WHERE status = 'skipped' AND started_at IS NULL`)
	ran := f.srv.QueryValue(t, qdb, `SELECT count(*) FROM runbook_queue.fleet_run WHERE started_at IS NOT NULL`)
	if skipped == "0" || fmt.Sprint(atoi(skipped)+atoi(ran)) != "10" {
		t.Errorf("%s skipped, %s ran; want some skipped and the rest run", skipped, ran)
	}
	counts, bad := f.effects(t)
	if len(bad) > 0 || len(counts) != atoi(ran)-3 {
		t.Errorf("effects %v (not once: %v); %s runs", counts, bad, ran)
	}
	if !strings.Contains(out, "skipped") {
		t.Errorf("fleet run --wait did not report the skipped runs:\n%s", out)
	}
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

// A run that needs approval pauses (fleet run --wait exits 3); fleet resume
// --approve puts it back in the queue, a worker resumes it with the
// approval, and the runs that succeeded are left alone.
func TestQueueFleetApproval(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes: skipped with -short")
	}
	f := newFixture(t, 2, "0")
	queue := f.srv.NewDatabase(t)
	qdb := pgtest.DatabaseName(t, queue)
	f.customer(t, "c01")
	f.customer(t, "c02", `confirm: "yes"`)
	f.customer(t, "c03")
	bin := testbin.Build(t)
	startWorker(t, bin, f, queue, "", "w1", "--max-workers", "2")
	code, out := testbin.Run(t, bin, testbin.Cmd{Dir: f.dir}, "fleet", "run", "migrate.yaml", "--vars", "customers/*.yaml",
		"--queue", queue, "--wait")
	if code != 3 || !strings.Contains(out, "c02: approval-required") || !strings.Contains(out, "--approve approve") {
		t.Fatalf("fleet run --wait: exit %d, want 3\n%s", code, out)
	}
	ended := f.srv.QueryValue(t, qdb, `SELECT ended_at FROM runbook_queue.fleet_run WHERE customer = 'c01'`)
	code, out = testbin.Run(t, bin, testbin.Cmd{Dir: f.dir}, "fleet", "resume", "--queue", queue, "--fleet", "fleet-test",
		"--approve", "approve", "--wait")
	if code != 0 || !strings.Contains(out, "1 runs back in the queue: c02") {
		t.Fatalf("fleet resume --approve --wait: exit %d, want 0\n%s", code, out)
	}
	if got := f.srv.QueryValue(t, qdb, `SELECT ended_at FROM runbook_queue.fleet_run WHERE customer = 'c01'`); got != ended {
		t.Errorf("c01, which had succeeded, ran again (ended %s, then %s)", ended, got)
	}
	counts, bad := f.effects(t)
	if len(counts) != 3 || len(bad) > 0 {
		t.Errorf("effects %v; not once: %v", counts, bad)
	}
	verifyLogs(t, filepath.Join(f.dir, "logs"), []string{"c01", "c02", "c03"})
}
