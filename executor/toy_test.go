package executor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/pgerr"
	"github.com/runbookhq/runbook/internal/pgtest"
	"github.com/runbookhq/runbook/internal/pgtx"
	"github.com/runbookhq/runbook/internal/testbin"
	"github.com/runbookhq/runbook/schema"
)

// toy is an action kind that exists only in this test file: it proves that
// a new kind of work is one file, with no change to the executor. It
// journals two units, each on its own connection and in an extra session,
// in parallel: unit "a" inserts rows 1…N into effects on connection a, unit
// "b" the same on connection b, one transaction per row, each recorded
// before its COMMIT.
type toy struct {
	A schema.ConnRef `yaml:"a" required:"true" doc:"The first unit's connection."`
	B schema.ConnRef `yaml:"b" required:"true" doc:"The second unit's connection."`
	N int            `yaml:"n" minimum:"1" doc:"Rows per unit."`
}

func init() {
	actions.Register("toy", "A test-only kind of work: two journaled units in parallel.", func() actions.Runner { return &toy{} })
}

func (*toy) Kind() string                            { return "toy" }
func (*toy) Effects() actions.Effects                { return actions.Journaled }
func (t *toy) Connections() []string                 { return []string{t.A.Name, t.B.Name} }
func (*toy) Retryable(err error) bool                { return pgerr.Transient(err) }
func (*toy) DescribePoint(u string, d []byte) string { return fmt.Sprintf("unit %s at %s", u, d) }
func (*toy) DescribeDoubt(step, u string, durable, recorded []byte) string {
	return fmt.Sprintf("rows %s to %s of unit %s of step %s took effect", durable, recorded, u, step)
}

func (t *toy) Run(ctx context.Context, rc *actions.Context) (actions.Outputs, error) {
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, c := range []string{t.A.Name, t.B.Name} {
		unit := []string{"a", "b"}[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = t.unit(ctx, rc, unit, c)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return actions.Outputs{"rows": 2 * t.N}, nil
}

func (t *toy) unit(ctx context.Context, rc *actions.Context, unit, name string) error {
	done := 0
	if d := rc.Journal.Unit(unit); d != nil {
		if err := json.Unmarshal(d, &done); err != nil {
			return err
		}
	}
	conn, err := rc.Conns.Extra(ctx, name)
	if err != nil {
		return err
	}
	id, err := pgtx.Identify(ctx, conn.PgConn())
	if err != nil {
		return err
	}
	for i := done + 1; i <= t.N; i++ {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		var xid uint64
		if err := tx.QueryRow(ctx, "INSERT INTO effects VALUES ($1, $2) RETURNING pg_current_xact_id()::text::bigint", unit, i).Scan(&xid); err != nil {
			tx.Rollback(ctx)
			return err
		}
		rec := actions.Tx{Unit: unit, Tx: id.Tx(name, xid), Data: []byte(strconv.Itoa(i))}
		if err := rc.Journal.BeforeCommit(ctx, rec); err != nil {
			tx.Rollback(ctx)
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		if err := rc.Journal.Committed(rec); err != nil {
			return err
		}
	}
	return nil
}

// toyChild runs the runbook named by RUNBOOK_TOY_FILE when the test binary
// is started as a child of TestToyKindKilledAndResumed; it returns the exit
// code.
func toyChild() int {
	rb, err := schema.LoadFile(os.Getenv("RUNBOOK_TOY_FILE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	vals, err := rb.ResolveParams(schema.ParamInputs{Vars: []string{"a=" + os.Getenv("RUNBOOK_TOY_A"), "b=" + os.Getenv("RUNBOOK_TOY_B")}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	_, err = executor.Run(context.Background(), executor.Options{Runbook: rb, Values: vals, StatePath: os.Getenv("RUNBOOK_TOY_STATE"),
		Resume: os.Getenv("RUNBOOK_TOY_RESUME") != "", Console: os.Stdout, LogFormat: "json"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	return exitcode.Of(err)
}

// TestToyKindKilledAndResumed: the test-only kind above, run by the real
// executor in a child process killed with SIGKILL at random moments and
// resumed each time, ends with every row of both units exactly once.
func TestToyKindKilledAndResumed(t *testing.T) {
	srv := pgtest.Shared(t)
	urlA, urlB := srv.NewDatabase(t), srv.NewDatabase(t)
	dbA, dbB := pgtest.DatabaseName(t, urlA), pgtest.DatabaseName(t, urlB)
	for _, db := range []string{dbA, dbB} {
		srv.Exec(t, db, "CREATE TABLE effects (unit text, i int, UNIQUE (unit, i))")
	}
	dir := t.TempDir()
	const n = 2000
	file := filepath.Join(dir, "toy.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`version: 1
name: toy
params:
  a: {secret: true}
  b: {secret: true}
connections:
  a: ${{ params.a }}
  b: ${{ params.b }}
steps:
  - id: units
    toy: {a: a, b: b, n: %d}
  - id: after
    sql: {on: a, script: "INSERT INTO effects VALUES ('after', 1)"}
`, n)), 0o644)
	env := []string{"RUNBOOK_TOY_CHILD=1", "RUNBOOK_TOY_FILE=" + file, "RUNBOOK_TOY_A=" + urlA, "RUNBOOK_TOY_B=" + urlB,
		"RUNBOOK_TOY_STATE=" + filepath.Join(dir, "state.json")}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	run := func(resume bool, kill time.Duration) (int, string) {
		c := testbin.Cmd{Dir: dir, Timeout: time.Minute, Env: env}
		if resume {
			c.Env = append(c.Env, "RUNBOOK_TOY_RESUME=1")
		}
		if kill > 0 {
			c.Kill = testbin.KillAfter(kill)
		}
		return testbin.Run(t, self, c, "-test.run=^$")
	}
	// The first run is killed too; every later one resumes.
	kills, resume, finished := 0, false, false
	for attempt := 0; attempt < 60 && !finished; attempt++ {
		code, out := run(resume, time.Duration(20+rand.IntN(120))*time.Millisecond)
		if code == 0 {
			finished = true
			break
		}
		if code != -1 {
			t.Fatalf("run %d: exit %d\n%s", attempt, code, tail(out))
		}
		kills++
		// Resume once there is a state to resume (the snapshot, or the one
		// replacing it: the file store's PATH.next).
		for _, f := range []string{"state.json", "state.json.next"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				resume = true
			}
		}
	}
	if !finished {
		if code, out := run(resume, 0); code != 0 {
			t.Fatalf("last run: exit %d\n%s", code, tail(out))
		}
	}
	if kills < 5 {
		t.Errorf("only %d kills landed", kills)
	}
	for db, units := range map[string][]string{dbA: {"a"}, dbB: {"b"}} {
		for _, u := range units {
			if got := srv.QueryValue(t, db, "SELECT count(*) || ' ' || count(DISTINCT i) || ' ' || coalesce(max(i), 0) FROM effects WHERE unit = $1", u); got != fmt.Sprintf("%d %d %d", n, n, n) {
				t.Errorf("unit %s: rows, distinct, max = %s; want %d of each", u, got, n)
			}
		}
	}
	if got := srv.QueryValue(t, dbA, "SELECT count(*) FROM effects WHERE unit = 'after'"); got != "1" {
		t.Errorf("the step after ran %s times", got)
	}
	st, err := executor.ReadStatus(executor.NewFileStore(filepath.Join(dir, "state.json")))
	if err != nil || st.Outcome != "succeeded" {
		t.Fatalf("status: %v %+v", err, st)
	}
	t.Logf("%d kills, then resumed to exactly %d rows per unit", kills, n)
}

// TestSecretsNotInState: a step whose outputs hold a secret param's value
// (captured rows, a journaled commit) leaves no trace of it in the state.
func TestSecretsNotInState(t *testing.T) {
	srv := pgtest.Shared(t)
	url := srv.NewDatabase(t)
	dir := t.TempDir()
	const secret = "s3cr3t-Value-42"
	file := filepath.Join(dir, "rb.yaml")
	os.WriteFile(file, []byte(`version: 1
name: leak
params:
  url: {secret: true}
  token: {secret: true}
connections:
  db: ${{ params.url }}
steps:
  - id: captured
    sql: {on: db, script: "SELECT $1::text AS token", args: ['${{ params.token }}'], capture: true}
  - id: autocommit
    sql: {on: db, script: "SELECT $1::text AS token", args: ['${{ params.token }}'], capture: true, transaction: false}
`), 0o644)
	rb, err := schema.LoadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := rb.ResolveParams(schema.ParamInputs{Vars: []string{"url=" + url, "token=" + secret}})
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state.json")
	var console strings.Builder
	if _, err := executor.Run(context.Background(), executor.Options{Runbook: rb, Values: vals, StatePath: state, Console: &console, LogFormat: "json"}); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(state + "*")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), secret) {
			t.Errorf("%s holds the secret", f)
		}
	}
	st, err := executor.ReadStatus(executor.NewFileStore(state))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(st.Steps[0].Outputs["row"]); !strings.Contains(got, "***") {
		t.Errorf("captured row in the state = %s, want it masked", got)
	}
}
