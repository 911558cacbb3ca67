package runbooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// withCrashSteps returns the built-in runbook with a step inserted before
// every step and after the last one that kills runbook (SIGKILL, its parent
// process) the first time it runs: each kill lands exactly on a step boundary,
// after the previous step's end is durable and before the next one starts.
// The inserted steps are idempotent, so resume runs them again; then they do
// nothing (their mark file exists) and the run goes on.
func withCrashSteps(t *testing.T) (src string, kills int) {
	t.Helper()
	b, err := os.ReadFile("heroku-to-crunchy-bridge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	crash := func(n int) string {
		return fmt.Sprintf(`  - id: crash-%02d
    idempotent: true
    shell:
      run: 'if [ ! -e "$MARKS/%02d" ]; then touch "$MARKS/%02d"; kill -9 $PPID; sleep 10; fi'
`, n, n, n)
	}
	var out strings.Builder
	inSteps := false
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if strings.HasPrefix(line, "steps:") {
			inSteps = true
		}
		if inSteps && strings.HasPrefix(line, "  - id: ") {
			out.WriteString(crash(kills))
			kills++
		}
		out.WriteString(line)
	}
	if !strings.HasSuffix(out.String(), "\n") {
		out.WriteString("\n")
	}
	out.WriteString(crash(kills))
	kills++
	return out.String(), kills
}

// TestHerokuKilledAtEveryStepBoundary kills the real binary with SIGKILL at
// every step boundary of the built-in migration, one after the other, each
// time resuming with runbook resume, until the run completes. Every step
// must have run exactly once, and the result must be the same as without
// kills: owners, rows, sequences, pgaudit setting, no restore in the audit
// log, and an audit log (--log) whose chain verifies.
func TestHerokuKilledAtEveryStepBoundary(t *testing.T) {
	if testing.Short() {
		t.Skip("kills the binary at every step boundary: skipped with -short")
	}
	src, tgt := clusters(t)
	before := setPgaudit(t, tgt, "all")
	m := newMigration(t, src, tgt, readFixture(t, "hostile.sql"))
	dir := t.TempDir()
	rb, want := withCrashSteps(t)
	if err := os.WriteFile(filepath.Join(dir, "hk.yaml"), []byte(rb), 0o644); err != nil {
		t.Fatal(err)
	}
	marks := filepath.Join(dir, "marks")
	if err := os.Mkdir(marks, 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{"MARKS=" + marks}
	args := []string{"hk.yaml", "--yes", "--state", "st.json", "--log", "audit.log", "--log-format", "json"}
	off := logOffset(t, tgt)
	start := time.Now()

	var all strings.Builder
	code, out := m.binRun(t, dir, env, nil, append([]string{"run"}, args...)...)
	all.WriteString(out)
	kills := 0
	for code == -1 {
		kills++
		if kills > want {
			t.Fatalf("killed %d times, more than the %d boundaries", kills, want)
		}
		code, out = m.binRun(t, dir, env, nil, append([]string{"resume"}, args...)...)
		all.WriteString(out)
	}
	t.Logf("%d SIGKILLs at step boundaries, %d resumes, %s", kills, kills, time.Since(start).Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("exit %d after %d kills:\n%s", code, kills, tail(all.String(), 4000))
	}
	if kills != want {
		t.Errorf("%d kills, want one per boundary (%d)", kills, want)
	}

	// Every step of the built-in ended exactly once (run, or skipped).
	ends := map[string]int{}
	for _, line := range strings.Split(all.String(), "\n") {
		var ev struct{ Event, Step string }
		if json.Unmarshal([]byte(line), &ev) != nil {
			continue
		}
		if ev.Event == "step.end" || ev.Event == "step.skip" {
			ends[ev.Step]++
		}
	}
	builtinSteps := 0
	for id, n := range ends {
		if strings.HasPrefix(id, "crash-") {
			continue
		}
		builtinSteps++
		if n != 1 {
			t.Errorf("step %s ended %d times, want exactly once", id, n)
		}
	}
	if builtinSteps != want-1 {
		t.Errorf("%d steps of the built-in ended, want %d", builtinSteps, want-1)
	}

	checkOwners(t, tgt, m.tgtName, "application")
	m.checkCopied(t)
	if got := pgauditSetting(t, tgt); !equalStrings(got, before) {
		t.Errorf("postgres role settings: %q, want %q", got, before)
	}
	checkPgauditQuiet(t, logSince(t, tgt, off))
	if code, out := m.binRun(t, dir, nil, nil, "audit", "verify", "audit.log"); code != 0 {
		t.Errorf("audit verify after %d kills: exit %d\n%s", kills, code, out)
	} else {
		t.Logf("audit verify: %s", strings.SplitN(out, "\n", 2)[0])
	}
}

// TestHerokuKilledDuringCopy kills runbook (SIGKILL to its process group)
// while the data step's COPY streams rows into the target, with each method,
// then resumes:
//   - pipe: the single-transaction restore leaves nothing in the target, and
//     resume runs the idempotent restore again;
//   - copy: resume copies the parts not committed, in a new snapshot.
//
// Either way the migration completes with every row once.
func TestHerokuKilledDuringCopy(t *testing.T) {
	src, tgt := clusters(t)
	cases := []struct {
		method, step string
		// killed checks the target after the kill; resumed the resume's output.
		killed  func(t *testing.T, m *migration)
		resumed func(t *testing.T, out string)
	}{
		{method: "pipe", step: "restore",
			killed: func(t *testing.T, m *migration) {
				if n := tgt.QueryValue(t, m.tgtName, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
					WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema' AND c.relkind IN ('r', 'p', 'S', 'v', 'm')`); n != "0" {
					t.Errorf("the killed restore left %s relations in the target", n)
				}
			},
			resumed: func(t *testing.T, out string) {
				if !strings.Contains(out, `"event":"step.end","step":"restore"`) && !strings.Contains(out, `"step":"restore","status":"succeeded"`) {
					t.Errorf("resume did not run the restore again:\n%s", tail(out, 3000))
				}
			}},
		{method: "copy", step: "copy",
			killed: func(*testing.T, *migration) {},
			resumed: func(t *testing.T, out string) {
				// The schema committed before the first COPY began: resume
				// goes on with the rows.
				if strings.Contains(out, `"phase":"schema"`) || !strings.Contains(out, `"phase":"data"`) || !strings.Contains(out, `"step":"copy","status":"succeeded"`) {
					t.Errorf("resume did not go on with the copy's rows:\n%s", tail(out, 3000))
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.method, func(t *testing.T) {
			before := setPgaudit(t, tgt, "all")
			m := newMigration(t, src, tgt, readFixture(t, "hostile.sql"),
				`CREATE TABLE public.big AS SELECT g AS i, md5(g::text) AS t FROM generate_series(1, 300000) g`)
			m.method = c.method
			dir := t.TempDir()
			args := []string{builtin, "--yes", "--state", "st.json", "--log-format", "json"}
			off := logOffset(t, tgt)

			watch := tgt.Connect(t, m.tgtName)
			if _, err := watch.Exec(context.Background(), "SET pgaudit.log = 'none'"); err != nil { // its polling query mentions COPY
				t.Fatal(err)
			}
			sawCopy := false
			kill := func(pgid int, done <-chan struct{}) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				for {
					select {
					case <-done:
						return
					case <-ctx.Done():
						return
					default:
					}
					var n int
					err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
						WHERE datname = current_database() AND state = 'active' AND query LIKE 'COPY %'
						  AND application_name LIKE 'runbook/%'`).Scan(&n)
					if err == nil && n > 0 {
						sawCopy = true
						syscall.Kill(-pgid, syscall.SIGKILL)
						return
					}
					time.Sleep(2 * time.Millisecond)
				}
			}
			code, out := m.binRun(t, dir, nil, kill, append([]string{"run"}, args...)...)
			if !sawCopy || code != -1 {
				t.Fatalf("the %s's COPY was not caught and killed (saw COPY: %v, exit %d):\n%s", c.step, sawCopy, code, tail(out, 3000))
			}
			if !strings.Contains(out, `"step":"`+c.step+`"`) || strings.Contains(out, `"`+c.step+` succeeded"`) {
				t.Fatalf("not killed inside the %s step:\n%s", c.step, tail(out, 3000))
			}

			// The server ends the dead run's sessions and rolls them back.
			deadline := time.Now().Add(30 * time.Second)
			for tgt.QueryValue(t, m.tgtName, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
				AND application_name LIKE 'runbook/%'`) != "0" {
				if time.Now().After(deadline) {
					t.Fatalf("the killed %s's sessions are still there after 30s", c.step)
				}
				time.Sleep(20 * time.Millisecond)
			}
			c.killed(t, m)

			code, out = m.binRun(t, dir, nil, nil, append([]string{"resume"}, args...)...)
			if code != 0 {
				t.Fatalf("resume: exit %d\n%s", code, tail(out, 4000))
			}
			c.resumed(t, out)
			checkOwners(t, tgt, m.tgtName, "application")
			m.checkCopied(t)
			if got := pgauditSetting(t, tgt); !equalStrings(got, before) {
				t.Errorf("postgres role settings: %q, want %q", got, before)
			}
			checkPgauditQuiet(t, logSince(t, tgt, off))
		})
	}
}
