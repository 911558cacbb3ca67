package executor_test

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runbookhq/runbook/internal/pgtest"
	"github.com/runbookhq/runbook/internal/testbin"
)

// buildBinary builds the runbook command once per test binary.
func buildBinary(t *testing.T) string { return testbin.Build(t) }

// crashRun runs the binary with args and kills its process group with
// SIGKILL after delay (never, when delay is 0). It returns the exit code (-1
// when killed).
func crashRun(t *testing.T, bin, dir string, delay time.Duration, args ...string) (int, string) {
	t.Helper()
	c := testbin.Cmd{Dir: dir, Timeout: 2 * time.Minute}
	if delay > 0 {
		c.Kill = testbin.KillAfter(delay)
	}
	return testbin.Run(t, bin, c, args...)
}

// TestCrashResumeExactlyOnce kills the real binary with SIGKILL at random
// moments across generate steps in each transaction mode and a long run of
// one-statement sql steps, resumes until the run completes, and checks that
// the database holds every effect exactly once: every statement is a
// non-idempotent INSERT, so a repeat or a skip shows as a count other than 1.
//
// It runs twice, 30 kills each: with the test cluster's synchronous_commit
// off (every commit asynchronous, nothing claimed durable), and with the
// sessions' synchronous_commit on, where a generate step mixes asynchronous
// commits with synchronous ones that flush (docs/state.md, "Two flushes, one
// of them the client's").
func TestCrashResumeExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("crash harness: skipped with -short")
	}
	forEachStore(t, func(t *testing.T, store stateStore) {
		for _, c := range []struct{ name, query string }{
			{"synchronous_commit off", ""},
			{"synchronous_commit on", "&synchronous_commit=on"},
		} {
			t.Run(c.name, func(t *testing.T) { crashResumeExactlyOnce(t, store, c.query, 30) })
		}
	})
}

func crashResumeExactlyOnce(t *testing.T, store stateStore, query string, wantKills int) {
	srv := pgtest.Shared(t)
	url := srv.NewDatabase(t) + query
	bin := buildBinary(t)
	dir := t.TempDir()

	const sqlSteps = 300
	const genRows = 400
	copyURL := srv.NewDatabase(t)
	var b strings.Builder
	b.WriteString(`version: 1
name: crash
params:
  url: {secret: true}
  copy_url: {secret: true}
connections:
  db: ${{ params.url }}
  copy: ${{ params.copy_url }}
steps:
  - id: setup
    sql:
      on: db
      script: |
        CREATE TABLE effects (k text NOT NULL);
        CREATE TABLE source_rows AS SELECT g AS i FROM generate_series(1, ` + fmt.Sprint(genRows) + `) g;
`)
	for _, mode := range []string{"each", "batch", "all"} {
		fmt.Fprintf(&b, `  - id: gen-%[1]s
    generate:
      on: db
      query: SELECT format('INSERT INTO effects VALUES (%%L)', 'gen-%[1]s-' || i) FROM source_rows ORDER BY i
      transaction: %[1]s
`, mode)
		if mode == "batch" {
			b.WriteString("      batch_size: 7\n")
		}
	}
	// A pipe is not transactional: it is re-run after an interruption because
	// it says it is idempotent (a single-transaction restore that replaces).
	b.WriteString(`  - id: copy
    idempotent: true
    shell:
      pipe:
        - cmd: [pg_dump, -Fc, -t, source_rows]
          conn: db
        - cmd: [pg_restore, --clean, --if-exists, --single-transaction, --no-owner, -d, '${{ conn.copy.database }}']
          conn: copy
`)
	for i := 0; i < sqlSteps; i++ {
		fmt.Fprintf(&b, "  - id: s%03d\n    sql: {on: db, script: \"INSERT INTO effects VALUES ('sql-%03d')\"}\n", i, i)
	}
	if err := os.WriteFile(filepath.Join(dir, "crash.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	// Kill delays are fractions of the time an uninterrupted run takes on
	// this machine, measured first on databases of their own: fixed delays
	// let a fast machine finish the run before enough kills land, and a slow
	// one die before its first step every time.
	calibURL, calibCopy := srv.NewDatabase(t)+query, srv.NewDatabase(t)
	start := time.Now()
	if code, out := crashRun(t, bin, dir, 0, "run", "crash.yaml", "--var", "url="+calibURL, "--var", "copy_url="+calibCopy,
		"--state", store.spec(t, dir, "calibration"), "--log-format", "json"); code != 0 {
		t.Fatalf("uninterrupted run: exit %d\n%s", code, tail(out))
	}
	whole := time.Since(start)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	delay := func() time.Duration { return whole/50 + time.Duration(rng.Int63n(int64(whole/15))) }
	state := store.spec(t, dir, "state")
	args := []string{"--var", "url=" + url, "--var", "copy_url=" + copyURL, "--state", state, "--log-format", "json"}
	kills, runs, settledCommitted, settledAborted := 0, 0, 0, 0
	code, out := crashRun(t, bin, dir, delay(), append([]string{"run", "crash.yaml"}, args...)...)
	for ; code != 0; runs++ {
		if code != -1 {
			t.Fatalf("run %d: exit %d, want 0 or killed\n%s", runs, code, tail(out))
		}
		kills++
		if runs > 200 {
			t.Fatalf("no completion after %d resumes", runs)
		}
		d := delay()
		if kills >= wantKills {
			d = 0 // enough kills: let it finish
		}
		verb := "resume"
		if !hasState(t, state) {
			verb = "run" // killed before the state existed: nothing to resume yet
		}
		code, out = crashRun(t, bin, dir, d, append([]string{verb, "crash.yaml"}, args...)...)
		if verb == "run" && code == 4 && strings.Contains(out, "holds an unfinished run") {
			// The killed run's first write reached the store after hasState
			// looked (a control database commits what a dead client sent).
			code, out = crashRun(t, bin, dir, d, append([]string{"resume", "crash.yaml"}, args...)...)
		}
		settledCommitted += strings.Count(out, `"event":"step.settled","step"`) - strings.Count(out, `"outcome":"aborted"`)
		settledAborted += strings.Count(out, `"outcome":"aborted"`)
	}
	t.Logf("uninterrupted run %v; %d kills (SIGKILL) survived, %d resumes; in-doubt transactions settled by the server: %d committed, %d aborted",
		whole.Round(time.Millisecond), kills, runs, settledCommitted, settledAborted)
	if kills < 10 {
		t.Errorf("only %d kills landed before the run completed: the harness proves little", kills)
	}

	// Every effect exactly once.
	rows := srv.Query(t, pgtest.DatabaseName(t, url), `SELECT k, count(*) FROM effects GROUP BY k HAVING count(*) <> 1 ORDER BY k LIMIT 10`)
	if len(rows) > 0 {
		t.Errorf("effects applied more than once: %v", rows)
	}
	want := 3*genRows + sqlSteps
	if got := srv.QueryValue(t, pgtest.DatabaseName(t, url), `SELECT count(DISTINCT k) FROM effects`); got != fmt.Sprint(want) {
		t.Errorf("%s distinct effects, want %d (a step or statement was skipped)", got, want)
	}
	if got := srv.QueryValue(t, pgtest.DatabaseName(t, copyURL), `SELECT count(*) FROM source_rows`); got != fmt.Sprint(genRows) {
		t.Errorf("the copied table has %s rows, want %d", got, genRows)
	}
}

func tail(s string) string { return testbin.Tail(s, 3000) }

// TestInDoubtCommitSettledByServer kills the process exactly inside the two
// in-doubt windows — after the transaction id is durable but before COMMIT, and
// after COMMIT but before the progress is recorded — for an sql step and for
// each generate mode, and checks that resume settles the transaction with the
// server (pg_xact_status) and leaves every effect exactly once.
func TestInDoubtCommitSettledByServer(t *testing.T) { forEachStore(t, inDoubtCommitSettledByServer) }

func inDoubtCommitSettledByServer(t *testing.T, store stateStore) {
	srv := pgtest.Shared(t)
	bin := buildBinary(t)
	cases := []struct{ point, step, n, settled string }{
		{"before-commit", "one", "1", "did not commit"},
		{"committed", "one", "1", "committed"},
		{"before-commit", "gen-each", "3", "did not commit"},
		{"committed", "gen-each", "3", "committed"},
		{"before-commit", "gen-batch", "2", "did not commit"},
		{"committed", "gen-batch", "2", "committed"},
		{"before-commit", "gen-all", "1", "did not commit"},
		{"committed", "gen-all", "1", "committed"},
	}
	for _, tc := range cases {
		t.Run(tc.point+"/"+tc.step, func(t *testing.T) {
			url := srv.NewDatabase(t)
			dir := t.TempDir()
			rb := `version: 1
name: indoubt
params:
  url: {secret: true}
connections:
  db: ${{ params.url }}
steps:
  - id: setup
    sql: {on: db, script: "CREATE TABLE effects (k text NOT NULL)"}
  - id: one
    sql: {on: db, script: "INSERT INTO effects VALUES ('one'); INSERT INTO effects VALUES ('one-b')"}
  - id: gen-each
    generate: {on: db, query: "SELECT format('INSERT INTO effects VALUES (%L)', 'each-' || g) FROM generate_series(1, 10) g"}
  - id: gen-batch
    generate: {on: db, transaction: batch, batch_size: 3, query: "SELECT format('INSERT INTO effects VALUES (%L)', 'batch-' || g) FROM generate_series(1, 10) g"}
  - id: gen-all
    generate: {on: db, transaction: all, query: "SELECT format('INSERT INTO effects VALUES (%L)', 'all-' || g) FROM generate_series(1, 10) g"}
`
			if err := os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(rb), 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{"rb.yaml", "--var", "url=" + url, "--state", store.spec(t, dir, "st"), "--log-format", "json"}
			t.Setenv("RUNBOOK_CRASH_AFTER", tc.point+":"+tc.step+":"+tc.n)
			if code, out := crashRun(t, bin, dir, 0, append([]string{"run"}, args...)...); code != -1 {
				t.Fatalf("the fault was not hit: exit %d\n%s", code, tail(out))
			}
			os.Unsetenv("RUNBOOK_CRASH_AFTER")
			code, out := crashRun(t, bin, dir, 0, append([]string{"resume"}, args...)...)
			if code != 0 {
				t.Fatalf("resume: exit %d\n%s", code, tail(out))
			}
			if !strings.Contains(out, `"event":"step.settled"`) || !strings.Contains(out, tc.settled) {
				t.Errorf("resume did not settle the in-doubt transaction as %q:\n%s", tc.settled, tail(out))
			}
			if rows := srv.Query(t, pgtest.DatabaseName(t, url), `SELECT k, count(*) FROM effects GROUP BY k HAVING count(*) <> 1`); len(rows) > 0 {
				t.Errorf("effects repeated: %v", rows)
			}
			if got := srv.QueryValue(t, pgtest.DatabaseName(t, url), `SELECT count(*) FROM effects`); got != "32" {
				t.Errorf("%s effects, want 32", got)
			}
		})
	}
}
