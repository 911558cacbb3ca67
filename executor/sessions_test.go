package executor_test

import (
	"fmt"
	"net/url"
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
// effect is there once. A resume as another role, which may not end the
// session, says so and goes on.
func TestResumeEndsOrphanedStatement(t *testing.T) {
	for _, c := range []struct {
		name string
		// lock is the step's first statement: the dead attempt holds it.
		lock string
		// otherRole resumes as a role that may not end the first one's
		// sessions.
		otherRole bool
		want      string
	}{
		{name: "ended", lock: "LOCK TABLE t IN ACCESS EXCLUSIVE MODE;", want: `"event":"conn.orphans.ended","conn":"db","sessions":1,"time"`},
		{name: "another role", otherRole: true, want: `"event":"conn.orphans.ended","conn":"db","sessions":0,"error":"1 session(s) that may be the last invocation's are not visible to this role`},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := pgtest.Shared(t)
			dbURL := srv.NewDatabase(t)
			db := pgtest.DatabaseName(t, dbURL)
			// The first attempt sleeps a minute; the test shortens the
			// sleep before resuming, so that only the dead attempt is slow.
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
        ` + c.lock + `
        SELECT pg_sleep((SELECT s FROM sleep_for));
        INSERT INTO t VALUES (1);
`
			if err := os.WriteFile(filepath.Join(dir, "orphans.yaml"), []byte(rb), 0o644); err != nil {
				t.Fatal(err)
			}
			bin := buildBinary(t)
			var orphan int32
			kill := testbin.KillWhenActive(srv.Connect(t, db), "%pg_sleep%", &orphan)
			args := []string{"orphans.yaml", "--state", "st.json", "--log-format", "json"}
			code, out := testbin.Run(t, bin, testbin.Cmd{Dir: dir, Env: []string{"DB_URL=" + dbURL}, Kill: kill}, append([]string{"run"}, args...)...)
			if code != -1 || orphan == 0 {
				t.Fatalf("run: exit %d, the statement not caught (pid %d)\n%s", code, orphan, tail(out))
			}
			time.Sleep(200 * time.Millisecond)
			if n := srv.QueryValue(t, db, fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND state = 'active'", orphan)); n != "1" {
				t.Fatalf("the killed run's statement (pid %d) is not running on the server: the test shows nothing", orphan)
			}
			srv.Exec(t, db, "UPDATE sleep_for SET s = 0")
			resumeURL := dbURL
			if c.otherRole {
				role := "other_" + db
				srv.Exec(t, db, fmt.Sprintf("CREATE ROLE %s LOGIN; GRANT SELECT ON sleep_for TO %[1]s; GRANT INSERT ON t TO %[1]s", role))
				u, err := url.Parse(dbURL)
				if err != nil {
					t.Fatal(err)
				}
				u.User = url.User(role)
				resumeURL = u.String()
			}
			// Without the orphan ended, a resume behind its lock would wait
			// for the dead attempt's minute of sleep: bounded well below it.
			code, out = testbin.Run(t, bin, testbin.Cmd{Dir: dir, Env: []string{"DB_URL=" + resumeURL}, Timeout: 40 * time.Second},
				append([]string{"resume"}, args...)...)
			if code != 0 {
				t.Fatalf("resume: exit %d\n%s", code, tail(out))
			}
			if !strings.Contains(out, c.want) {
				t.Errorf("the resume did not say %s:\n%s", c.want, tail(out))
			}
			alive := srv.QueryValue(t, db, fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE pid = %d", orphan))
			if want := map[bool]string{false: "0", true: "1"}[c.otherRole]; alive != want {
				t.Errorf("the killed run's session (pid %d): %s running after the resume, want %s", orphan, alive, want)
			}
			if n := srv.QueryValue(t, db, "SELECT count(*) FROM t"); n != "1" {
				t.Errorf("%s rows in t, want 1", n)
			}
		})
	}
}
