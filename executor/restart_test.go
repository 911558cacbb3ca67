package executor_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/pgtest"
)

// TestServerRestart covers the server's side of exactly-once (docs/state.md,
// "When the server restarts"): a generate step's commits are asynchronous but
// the last, so a crash of the server can lose statements the step reported
// committed, and a restarted server may give their transaction ids to other
// transactions. The real binary is killed at fixed points, the cluster (fsync
// on) is crashed (pg_ctl -m immediate) or restarted, and resume must either
// go on exactly once or refuse and name what it cannot know.
func TestServerRestart(t *testing.T) {
	srv := pgtest.NewCluster(t, pgtest.WithFsync())
	if srv.External() {
		t.Skip("restarts the server: needs a cluster of its own, not RUNBOOK_TEST_DATABASE_URL's")
	}
	bin := buildBinary(t)
	const rb = `version: 1
name: restart
params:
  url: {secret: true}
  insert: {default: "INSERT INTO effects VALUES (%L)"}
connections:
  db: ${{ params.url }}
steps:
  - id: setup
    sql: {on: db, script: "CREATE TABLE effects (k text NOT NULL UNIQUE)"}
  - id: g
    generate: {on: db, query: "SELECT format('${{ params.insert }}', 'g-' || i) FROM generate_series(1, 40) i"}
  - id: last
    sql: {on: db, script: "INSERT INTO effects VALUES ('last')"}
`
	setup := func(t *testing.T) (dir string, args []string, db string) {
		url := srv.NewDatabase(t)
		dir = t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(rb), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir, []string{"rb.yaml", "--var", "url=" + url, "--state", "st.json", "--log-format", "json"}, pgtest.DatabaseName(t, url)
	}
	crash := func(t *testing.T, dir string, args []string, at string) {
		t.Setenv("RUNBOOK_CRASH_AFTER", at)
		if code, out := crashRun(t, bin, dir, 0, append([]string{"run"}, args...)...); code != -1 {
			t.Fatalf("the fault %s was not hit: exit %d\n%s", at, code, tail(out))
		}
		os.Unsetenv("RUNBOOK_CRASH_AFTER")
	}
	exactlyOnce := func(t *testing.T, db string, want string) {
		t.Helper()
		if got := srv.QueryValue(t, db, "SELECT count(*) FROM effects"); got != want {
			t.Errorf("%s effects, want %s", got, want)
		}
	}

	t.Run("commits at risk: settled exactly", func(t *testing.T) {
		// Killed after the 5th commit, all asynchronous (well within 100
		// ms): none is known durable, and the crash may keep any prefix of
		// them. The inserts are not idempotent (a unique key): resume must
		// find exactly which survived, with nobody's help.
		dir, args, db := setup(t)
		crash(t, dir, args, "committed:g:5")
		srv.Restart(t, "immediate")
		code, out := crashRun(t, bin, dir, 0, append([]string{"resume"}, args...)...)
		if code != 0 || !strings.Contains(out, `"outcome":"restart-settled"`) {
			t.Fatalf("resume after the crash: exit %d, want 0, settled by itself\n%s", code, tail(out))
		}
		exactlyOnce(t, db, "41")
	})

	t.Run("nothing committed: goes on", func(t *testing.T) {
		// Killed once the first transaction's id is durable, before its
		// COMMIT: nothing of the step committed, the inserts are not
		// idempotent, and resume needs nobody.
		dir, args, db := setup(t)
		crash(t, dir, args, "before-commit:g:1")
		srv.Restart(t, "immediate")
		code, out := crashRun(t, bin, dir, 0, append([]string{"resume"}, args...)...)
		if code != 0 || !strings.Contains(out, "the server restarted; the step's commits that survived are known exactly: it goes on after statement 0") {
			t.Fatalf("resume: exit %d\n%s", code, tail(out))
		}
		exactlyOnce(t, db, "41")
	})

	t.Run("sql step in doubt after a restart: settled by the server", func(t *testing.T) {
		// Killed right after the sql step's COMMIT was acknowledged, before
		// its record: the transaction is in doubt. Its id is below the
		// next id recovery left, so no other transaction can have it, and
		// pg_xact_status answers for it: the step is done, not run again.
		dir, args, db := setup(t)
		crash(t, dir, args, "committed:last")
		srv.Restart(t, "immediate")
		code, out := crashRun(t, bin, dir, 0, append([]string{"resume"}, args...)...)
		if code != 0 || !strings.Contains(out, `"outcome":"restart-settled"`) {
			t.Fatalf("resume: exit %d, want 0\n%s", code, tail(out))
		}
		exactlyOnce(t, db, "41")
		st, err := executor.ReadStatus(executor.NewFileStore(filepath.Join(dir, "st.json")))
		if err != nil {
			t.Fatal(err)
		}
		if last := st.Steps[len(st.Steps)-1]; st.Outcome != "succeeded" || last.ID != "last" || last.Status != "succeeded" || last.Outputs["rows_affected"] == nil {
			t.Errorf("outcome %s, step %s %s, outputs %v", st.Outcome, last.ID, last.Status, last.Outputs)
		}
	})

	t.Run("sql step in doubt, the recovery's checkpoint gone: refuse, then --took-effect", func(t *testing.T) {
		// As above, but a checkpoint after the restart replaced the one
		// that recorded where recovery left the transaction ids: runbook
		// can no longer rule out that another transaction got the step's
		// id, so it stops, names the step, and the operator decides.
		dir, args, db := setup(t)
		crash(t, dir, args, "committed:last")
		srv.Restart(t, "immediate")
		srv.Exec(t, db, "CHECKPOINT")
		code, out := crashRun(t, bin, dir, 0, append([]string{"resume"}, args...)...)
		if code != 4 || !strings.Contains(out, "cannot tell whether step last's transaction committed") ||
			!strings.Contains(out, "--took-effect last") || !strings.Contains(out, "--rerun last") {
			t.Fatalf("resume: exit %d, want 4\n%s", code, tail(out))
		}
		// The synchronous commit did survive: the operator checks, sees it,
		// and says so; the step is done and not run again.
		if got := srv.QueryValue(t, db, "SELECT count(*) FROM effects WHERE k = 'last'"); got != "1" {
			t.Fatalf("%s rows of step last", got)
		}
		code, out = crashRun(t, bin, dir, 0, append([]string{"resume", "--took-effect", "last"}, args...)...)
		if code != 0 || !strings.Contains(out, `"outcome":"took-effect"`) {
			t.Fatalf("resume --took-effect last: exit %d\n%s", code, tail(out))
		}
		exactlyOnce(t, db, "41")
	})

	t.Run("succeeded step survives a crash", func(t *testing.T) {
		// The step's last statement changes nothing (no log record of its
		// own): its synchronous COMMIT must still flush the asynchronous
		// commits before it, so that a crash of the server right after the
		// step ended loses none of them.
		dir, args, db := setup(t)
		args = append(args, "--var", "insert=SELECT 1 WHERE %L IS NULL")
		srv.Exec(t, db, "CREATE TABLE effects (k text NOT NULL UNIQUE)")
		rb := strings.Replace(rb, "generate_series(1, 40) i\"}", "generate_series(1, 40) i UNION ALL SELECT 'SELECT 1'\"}", 1)
		rb = strings.Replace(rb, "'${{ params.insert }}'", "'INSERT INTO effects VALUES (%L)'", 1)
		if err := os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(rb), 0o644); err != nil {
			t.Fatal(err)
		}
		crash(t, dir, append(args, "--from", "g"), "step-end:g")
		srv.Restart(t, "immediate")
		if got := srv.QueryValue(t, db, "SELECT count(*) FROM effects"); got != "40" {
			t.Errorf("%s of the step's 40 effects survived the crash", got)
		}
	})

	t.Run("failed step made durable: no refusal", func(t *testing.T) {
		// Statement 7 fails: the six before it committed asynchronously,
		// and the failure path flushes them before it records the step
		// failed, so a crash of the server afterwards puts nothing at risk.
		dir, args, db := setup(t)
		srv.Exec(t, db, "CREATE TABLE effects (k text NOT NULL UNIQUE); INSERT INTO effects VALUES ('g-7')")
		code, out := crashRun(t, bin, dir, 0, append([]string{"run", "--from", "g"}, args...)...)
		if code != 1 || !strings.Contains(out, "generated statement 7 of 40") {
			t.Fatalf("run: exit %d, want 1 at statement 7\n%s", code, tail(out))
		}
		st, err := executor.ReadStatus(executor.NewFileStore(filepath.Join(dir, "st.json")))
		if err != nil {
			t.Fatal(err)
		}
		var g *executor.StepState
		for _, s := range st.Steps {
			if s.ID == "g" {
				g = s
			}
		}
		if g == nil || g.Units["statements"] == nil || compact(g.Units["statements"].Data) != `{"done":6,"of":40}` || g.Units["statements"].AtRisk {
			t.Fatalf("step g's record = %+v, want 6 statements done, 6 durable", g)
		}
		srv.Restart(t, "immediate")
		srv.Exec(t, db, "DELETE FROM effects WHERE k = 'g-7'")
		code, out = crashRun(t, bin, dir, 0, append([]string{"resume"}, args...)...)
		if code != 0 || strings.Contains(out, "cannot tell") {
			t.Fatalf("resume: exit %d\n%s", code, tail(out))
		}
		if got := srv.QueryValue(t, db, "SELECT count(*) FROM effects WHERE k LIKE 'g-%'"); got != "40" {
			t.Errorf("%s of the step's 40 effects", got)
		}
	})
}

// compact is JSON without its layout.
func compact(b []byte) string {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return string(b)
	}
	return out.String()
}

// TestServerStopsDuringGenerate stops the server (pg_ctl -m immediate) five
// times at random moments of a long generate step whose commits are
// asynchronous, and resumes after each restart: every statement's effect is
// there exactly once at the end (a unique key refuses a second), with no
// operator decision.
func TestServerStopsDuringGenerate(t *testing.T) {
	srv := pgtest.NewCluster(t, pgtest.WithFsync())
	if srv.External() {
		t.Skip("restarts the server: needs a cluster of its own")
	}
	bin := buildBinary(t)
	url := srv.NewDatabase(t)
	db := pgtest.DatabaseName(t, url)
	srv.Exec(t, db, "CREATE TABLE effects (k int NOT NULL UNIQUE)")
	dir := t.TempDir()
	const n = 20000
	os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(fmt.Sprintf(`version: 1
name: stops
params:
  url: {secret: true, env: TEST_URL}
connections:
  db: ${{ params.url }}
steps:
  - id: g
    generate: {on: db, query: "SELECT format('INSERT INTO effects VALUES (%%s)', i) FROM generate_series(1, %d) i"}
`, n)), 0o644)
	t.Setenv("TEST_URL", url)
	args := []string{"rb.yaml", "--state", "st.json", "--log-format", "json"}
	cmd := "run"
	count := func() int {
		n, _ := strconv.Atoi(srv.QueryValue(t, db, "SELECT count(*) FROM effects"))
		return n
	}
	settled := 0
	for stop := 1; stop <= 5; stop++ {
		done := make(chan struct{})
		var code int
		var out string
		from := count()
		go func() {
			defer close(done)
			code, out = crashRun(t, bin, dir, 0, append([]string{cmd}, args...)...)
		}()
		// Stop the server once this run made progress, at a random moment.
		deadline := time.Now().Add(time.Minute)
		for count() < from+100 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		srv.Restart(t, "immediate")
		<-done
		if code == 0 {
			t.Fatalf("stop %d came after the step ended: the test stops the server too late", stop)
		} else if code != 1 {
			t.Fatalf("stop %d: exit %d, want 1 (the connection was lost)\n%s", stop, code, tail(out))
		}
		settled += strings.Count(out, `"outcome":"restart-settled"`)
		cmd = "resume"
		srv.Exec(t, db, "SELECT 1") // the server is back
	}
	code, out := crashRun(t, bin, dir, 0, append([]string{"resume"}, args...)...)
	settled += strings.Count(out, `"outcome":"restart-settled"`)
	// No resume was refused (every one before the last was stopped, exit 1):
	// runbook settled each restart by itself — in one go when a stop came
	// before a resume had settled the one before.
	if code != 0 || settled == 0 {
		t.Fatalf("last resume: exit %d, want 0; %d settlements by runbook itself\n%s", code, settled, tail(out))
	}
	t.Logf("5 stops of the server; %d settlements after a restart, each by runbook itself", settled)
	if got := srv.QueryValue(t, db, "SELECT count(*) || ' ' || count(DISTINCT k) || ' ' || max(k) FROM effects"); got != fmt.Sprintf("%d %d %d", n, n, n) {
		t.Errorf("effects: count, distinct, max = %s; want %d of each", got, n)
	}
}
