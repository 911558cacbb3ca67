package executor_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runbookhq/runbook/internal/pgtest"
	"github.com/runbookhq/runbook/internal/testbin"
)

// TestResumeEndsOrphanedStatement: a run killed in the middle of a statement
// leaves the statement running on the server, its lock held. The resume ends
// that session first (conn.orphans.ended, matched on pid and start time), so
// the step's new attempt does not wait behind its own dead attempt; the
// effect is there once.
func TestResumeEndsOrphanedStatement(t *testing.T) {
	srv := pgtest.Shared(t)
	url := srv.NewDatabase(t)
	db := pgtest.DatabaseName(t, url)
	// The first attempt sleeps a minute holding the table's lock; the test
	// shortens the sleep before resuming, so that only the dead attempt is slow.
	srv.Exec(t, db, "CREATE TABLE t (k int); CREATE TABLE sleep_for (s float8); INSERT INTO sleep_for VALUES (60)")
	dir := t.TempDir()
	rb := `version: 1
name: orphans
params:
  url: {secret: true, env: DB_URL}
connections:
  db: ${{ params.url }}
steps:
  - id: slow
    sql:
      on: db
      script: |
        LOCK TABLE t IN ACCESS EXCLUSIVE MODE;
        SELECT pg_sleep((SELECT s FROM sleep_for));
        INSERT INTO t VALUES (1);
`
	if err := os.WriteFile(filepath.Join(dir, "orphans.yaml"), []byte(rb), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := buildBinary(t)
	watch := srv.Connect(t, db)
	var orphan int32
	kill := testbin.KillWhenActive(watch, "%pg_sleep%", &orphan)

	args := []string{"orphans.yaml", "--state", "st.json", "--log-format", "json"}
	env := []string{"DB_URL=" + url}
	code, out := testbin.Run(t, bin, testbin.Cmd{Dir: dir, Env: env, Kill: kill}, append([]string{"run"}, args...)...)
	if code != -1 || orphan == 0 {
		t.Fatalf("run: exit %d, the statement not caught (pid %d)\n%s", code, orphan, tail(out))
	}
	time.Sleep(200 * time.Millisecond)
	if n := srv.QueryValue(t, db, fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND state = 'active'", orphan)); n != "1" {
		t.Fatalf("the killed run's statement (pid %d) is not running on the server: the test shows nothing", orphan)
	}
	srv.Exec(t, db, "UPDATE sleep_for SET s = 0")
	// Without the orphan ended, the resume would wait for the dead attempt's
	// minute of sleep: bounded well below it.
	code, out = testbin.Run(t, bin, testbin.Cmd{Dir: dir, Env: env, Timeout: 40 * time.Second}, append([]string{"resume"}, args...)...)
	if code != 0 {
		t.Fatalf("resume: exit %d\n%s", code, tail(out))
	}
	if !strings.Contains(out, `"event":"conn.orphans.ended","conn":"db","sessions":1`) {
		t.Errorf("the resume did not say it ended the last invocation's session:\n%s", tail(out))
	}
	if n := srv.QueryValue(t, db, fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE pid = %d", orphan)); n != "0" {
		t.Errorf("the killed run's session (pid %d) still runs after the resume", orphan)
	}
	if n := srv.QueryValue(t, db, "SELECT count(*) FROM t"); n != "1" {
		t.Errorf("%s rows in t, want 1", n)
	}
}
