package fleet

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fleetRunbook is a runbook whose every run records its effects in the
// database: a row per (customer, step), never idempotent, so that a step run
// twice, or a run started twice, shows as a count other than 1. Each run
// also records when it began and ended (spans), for the rate control. A
// customer whose vars say fail: "yes" fails at the assert; one with confirm:
// "yes" waits for approval at step approve.
func fleetRunbook(steps int, sleep string) string {
	var b strings.Builder
	b.WriteString(`version: 1
name: fleet-test
params:
  url: {secret: true}
  customer: {pattern: '[a-z0-9_-]+'}
  fail: {default: "no", enum: ["yes", "no"]}
  fail_after: {default: "0", pattern: '[0-9.]+'}
  confirm: {default: "no", enum: ["yes", "no"]}
connections:
  db: ${{ params.url }}
steps:
  - id: begin
    sql:
      on: db
      script: INSERT INTO spans (customer, t0) VALUES (${{ literal(params.customer) }}, clock_timestamp())
  - id: check
    assert:
      on: db
      query: SELECT pg_sleep(${{ params.fail_after }}) IS NULL AS waited
      that: params.fail == "no"
      message: this customer is made to fail
`)
	for i := 1; i <= steps; i++ {
		fmt.Fprintf(&b, `  - id: s%d
    sql:
      on: db
      script: INSERT INTO effects (customer, step) VALUES (${{ literal(params.customer) }}, %d); SELECT pg_sleep(%s)
`, i, i, sleep)
	}
	b.WriteString(`  - id: approve
    when: params.confirm == "yes"
    confirm: migrate ${{ params.customer }}?
  - id: end
    sql:
      on: db
      script: UPDATE spans SET t1 = clock_timestamp() WHERE customer = ${{ literal(params.customer) }} AND t1 IS NULL
`)
	return b.String()
}

const effectTables = `CREATE TABLE effects (customer text NOT NULL, step int NOT NULL);
CREATE TABLE spans (customer text NOT NULL, t0 timestamptz NOT NULL, t1 timestamptz);`

// fleetFixture is a runbook and customers' vars files in a directory, and
// the database their runs write to.
type fleetFixture struct {
	dir, runbook string
	srv          *pgtest.Server
	db           string
	url          string // with a password the server ignores (trust): a secret to look for
	password     string
}

func newFixture(t *testing.T, steps int, sleep string) *fleetFixture {
	t.Helper()
	srv := pgtest.Shared(t)
	u := srv.NewDatabase(t)
	db := pgtest.DatabaseName(t, u)
	srv.Exec(t, db, effectTables)
	f := &fleetFixture{dir: t.TempDir(), srv: srv, db: db, password: "fleet-Secret-" + strings.ReplaceAll(t.Name(), "/", "-")}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	pu.User = url.UserPassword(pu.User.Username(), f.password)
	f.url = pu.String()
	f.runbook = filepath.Join(f.dir, "migrate.yaml")
	if err := os.WriteFile(f.runbook, []byte(fleetRunbook(steps, sleep)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(f.dir, "customers"), 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

// customer writes a customer's vars file (its secret URL in it) and returns
// its path.
func (f *fleetFixture) customer(t *testing.T, name string, extra ...string) string {
	t.Helper()
	p := filepath.Join(f.dir, "customers", name+".yaml")
	body := fmt.Sprintf("customer: %s\nurl: %q\n%s", name, f.url, strings.Join(extra, "\n"))
	if err := os.WriteFile(p, []byte(body+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// effects returns the count of effects per customer and the (customer,
// step) pairs not recorded exactly once.
func (f *fleetFixture) effects(t *testing.T) (map[string]int, []string) {
	t.Helper()
	counts := map[string]int{}
	for _, r := range f.srv.Query(t, f.db, `SELECT customer, count(*) FROM effects GROUP BY 1`) {
		var n int
		fmt.Sscan(r[1], &n)
		counts[r[0]] = n
	}
	var bad []string
	for _, r := range f.srv.Query(t, f.db, `SELECT customer, step, count(*) FROM effects GROUP BY 1, 2 HAVING count(*) <> 1 ORDER BY 1, 2`) {
		bad = append(bad, strings.Join(r, "/"))
	}
	return counts, bad
}

// noSecret fails the test when the password appears in any file under dir.
func noSecret(t *testing.T, dir, secret string) {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Error(err)
			return nil
		}
		n++
		if strings.Contains(string(b), secret) {
			t.Errorf("%s holds the secret", p)
		}
		return nil
	})
	if n == 0 {
		t.Errorf("no file under %s", dir)
	}
}

// verifyLogs checks that every customer's audit log exists and its chain
// verifies.
func verifyLogs(t *testing.T, dir string, customers []string) {
	t.Helper()
	for _, c := range customers {
		v, err := executor.VerifyLog(LogPath(dir, c))
		if err != nil {
			t.Errorf("%s: audit log: %v", c, err)
			continue
		}
		if v.Bad != nil || v.Lines == 0 {
			t.Errorf("%s: audit log does not verify: %s (%d lines)", c, v.Summary(), v.Lines)
		}
	}
}

func names(prefix string, n int) []string {
	var out []string
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Sprintf("%s%02d", prefix, i))
	}
	return out
}
