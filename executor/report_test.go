package executor

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/pgtest"
)

// -update rewrites the golden files (go test ./... -update). Registered here
// unless another test file of the package already did.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files")
	}
}

func updating() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

var normalizers = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`(?m)^- \*\*Host:\*\* .*$`), "- **Host:** HOST"},
	{regexp.MustCompile(`(?m)^- connected .*$`), "- connected CONNECTION"},
	{regexp.MustCompile(`(?m)^\| db \| .*$`), "| db | DATABASE | VERSION | SYSTEM ID |"},
	{regexp.MustCompile(`\d{8}T\d{6}Z-[0-9a-f]{12}`), "RUNID"},
	{regexp.MustCompile(`[0-9a-f]{64}`), "HASH"},
	{regexp.MustCompile(`\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}Z`), "TIME"},
	{regexp.MustCompile(`\b(\d+(\.\d+)?(ns|µs|ms|s|m|h))+\b`), "DUR"},
}

// normalize removes what changes from one run to the next: the temporary
// directory, the host, run ids, hashes, times and durations.
func normalize(s, dir string) string {
	s = strings.ReplaceAll(s, dir, "$DIR")
	for _, n := range normalizers {
		s = n.re.ReplaceAllString(s, n.with)
	}
	return s
}

// golden compares got with testdata/report/NAME.md (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "report", name+".md")
	if updating() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("report differs from %s (go test -update rewrites it):\n--- got\n%s", path, got)
		wl, gl := strings.Split(string(want), "\n"), strings.Split(got, "\n")
		for i := 0; i < max(len(wl), len(gl)); i++ {
			var w, g string
			if i < len(wl) {
				w = wl[i]
			}
			if i < len(gl) {
				g = gl[i]
			}
			if w != g {
				t.Errorf("first difference at line %d:\nwant %q\ngot  %q", i+1, w, g)
				break
			}
		}
	}
}

func report(t *testing.T, o ReportOptions) string {
	t.Helper()
	rep, err := BuildReport(o)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := rep.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

const changeRunbook = `version: 1
name: change
params:
  token: {secret: true}
  region: {default: eu}
  marker: {}
steps:
  - id: prepare
    name: Prepare the work area
    shell:
      run: 'echo "preparing with $TOKEN"; echo "a warning" >&2'
      env: {TOKEN: '${{ params.token }}'}
  - id: flaky
    retry: {attempts: 2, delay: 10ms}
    shell:
      run: 'if [ ! -f "$M" ]; then touch "$M"; echo "not yet" >&2; exit 1; fi'
      env: {M: '${{ params.marker }}'}
  - id: only-us
    when: params.region == "us"
    shell: {run: "echo never"}
  - id: gate
    confirm: Put the application in maintenance mode.
  - id: migrate
    shell:
      pipe:
        - cmd: [printf, 'a\nb\n']
        - cmd: [sh, -c, 'cat >/dev/null; echo "migration failed" >&2; exit 3']
  - id: check
    assert:
      that: ['params.region == "eu"', 'steps.migrate.status == "succeeded"']
  - id: cleanup
    always: true
    shell: {run: "echo cleanup"}
`

// A run paused for approval, resumed by another operator (a step fails),
// fixed and resumed again; another run appends to the same log in between.
func TestReportInvocationsGolden(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "audit.log")
	vars := []string{"token=s3cr3t-token", "marker=" + filepath.Join(dir, "marker")}
	err := logRun(t, dir, changeRunbook, vars, Options{Operator: "alice", Ticket: "CHG-7", Version: "test"})
	if exitcode.Of(err) != exitcode.Approval {
		t.Fatalf("first invocation: exit %d (%v), want 3", exitcode.Of(err), err)
	}
	other := filepath.Join(dir, "other")
	os.Mkdir(other, 0o755)
	if err := logRun(t, other, "version: 1\nname: other\nsteps:\n  - id: x\n    shell: {run: \"echo other\"}\n", nil,
		Options{LogPath: log, Operator: "carol", Version: "test"}); err != nil {
		t.Fatal(err)
	}
	err = logRun(t, dir, "", vars, Options{Resume: true, Approve: []string{"gate"}, Operator: "bob", Ticket: "CHG-7", Version: "test"})
	if exitcode.Of(err) != exitcode.StepFailed {
		t.Fatalf("second invocation: exit %d (%v), want 1", exitcode.Of(err), err)
	}
	fixed := strings.Replace(changeRunbook, `exit 3`, `exit 0`, 1)
	if err := logRun(t, dir, fixed, vars, Options{Resume: true, Operator: "alice", Ticket: "CHG-7", Version: "test"}); err != nil {
		t.Fatalf("third invocation: %v", err)
	}

	got := report(t, ReportOptions{StatePath: filepath.Join(dir, "state.json"), LogPath: log})
	if strings.Contains(got, "s3cr3t") {
		t.Error("the report holds the secret")
	}
	if strings.Contains(got, "carol") || strings.Contains(got, "echo other") {
		t.Error("the report holds another run's events")
	}
	for _, want := range []string{"### Invocation 1: run by alice", "### Invocation 2: resume by bob", "### Invocation 3: resume by alice",
		"approved by **bob** (`--approve gate`)", "migration failed", "chain intact"} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	golden(t, "invocations", normalize(got, dir))

	// From the state alone.
	golden(t, "state-only", normalize(report(t, ReportOptions{StatePath: filepath.Join(dir, "state.json")}), dir))

	// A broken chain is said at the top.
	lines := logLines(t, log)
	lines[3] = bytes.Replace(lines[3], []byte(`"level":"info"`), []byte(`"level":"warn"`), 1)
	writeLines(t, log, lines)
	got = report(t, ReportOptions{StatePath: filepath.Join(dir, "state.json"), LogPath: log})
	if !strings.Contains(got, "**CHAIN BROKEN at line 4:") {
		t.Errorf("a report from a tampered log does not say so:\n%s", got)
	}
}

// SQL statements, generated statements (listed up to a bound, then counted),
// assertions over a query and connections, on a real server.
func TestReportSQLGolden(t *testing.T) {
	srv := pgtest.Shared(t)
	url := srv.NewDatabase(t)
	dir := t.TempDir()
	err := logRun(t, dir, `version: 1
name: sql-change
params:
  url: {secret: true}
connections:
  db: ${{ params.url }}
steps:
  - id: schema
    sql:
      on: db
      script: |
        CREATE TABLE items (id int PRIMARY KEY, name text);
        INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 12) g;
  - id: shout
    generate:
      on: db
      query: SELECT format('UPDATE items SET name = upper(name) WHERE id = %s', id) FROM items ORDER BY id
  - id: verify
    assert:
      on: db
      query: SELECT count(*) AS n FROM items WHERE name = upper(name)
      that: row.n == 12
`, []string{"url=" + url}, Options{Operator: "alice", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	got := report(t, ReportOptions{StatePath: filepath.Join(dir, "state.json"), LogPath: filepath.Join(dir, "audit.log")})
	for _, want := range []string{"(12 rows", "… and 2 more generated statements", "generated statements executed: 12", "assert `row.n == 12`: **pass**"} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	golden(t, "sql", normalize(got, dir))
}
