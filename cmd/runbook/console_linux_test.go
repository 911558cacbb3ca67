package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/runbookhq/runbook/internal/pgtest"
	"github.com/runbookhq/runbook/internal/termtest"
)

// The step view on a real pseudo-terminal of 100 columns: the command runs
// with its standard output, error and input on the terminal, as an operator
// runs it; what the terminal shows is compared with golden screens
// (testdata/screens/*.txt, rewritten with -update), durations and run ids
// normalised.

// onTerminal runs runbook with args on a pseudo-terminal in dir and returns
// its exit code, the screen and the raw bytes written.
func onTerminal(t *testing.T, dir string, args ...string) (int, *termtest.Screen, string) {
	t.Helper()
	pty, tty, err := termtest.OpenPTY(40, 100)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer pty.Close()
	scr := &termtest.Screen{Width: 100}
	var raw bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 4096)
		for {
			n, err := pty.Read(buf)
			raw.Write(buf[:n])
			scr.Write(buf[:n])
			if err != nil {
				return // EIO once the terminal's last writer closed it
			}
		}
	}()
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	code := Main(args, tty, tty, tty)
	os.Chdir(wd)
	tty.Close()
	wg.Wait()
	return code, scr, raw.String()
}

var screenNormalizers = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\d{8}T\d{6}Z-[0-9a-f]{12}`), "RUNID"},
	{regexp.MustCompile(`(<1ms|\b\d+(\.\d+)?(µs|ms|s)|\b\d+m\d\ds|\b\d+h\d\dm)\b`), "DUR"},
	{regexp.MustCompile(`\bDUR +$`), "DUR"},
}

func normalizeScreen(s, dir string) string {
	s = strings.ReplaceAll(s, dir, "$DIR")
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, n := range screenNormalizers {
			l = n.re.ReplaceAllString(l, n.with)
		}
		out = append(out, strings.TrimRight(l, " "))
	}
	return strings.Join(out, "\n")
}

func goldenScreen(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "screens", name+".txt")
	if *update {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if string(want) != got {
		t.Errorf("the screen differs from %s (go test -update rewrites it):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func writeRunbook(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func setTerm(t *testing.T, term string, noColor bool) {
	t.Setenv("TERM", term)
	if noColor {
		t.Setenv("NO_COLOR", "1")
	} else {
		os.Unsetenv("NO_COLOR")
	}
}

// A short run: one line per step, the skipped one with its condition, and
// the summary; what the steps print is in the audit log, not on the screen.
func TestScreenShortRun(t *testing.T) {
	setTerm(t, "xterm-256color", false)
	dir := writeRunbook(t, `version: 1
name: short
params:
  region: {default: eu}
steps:
  - id: greet
    shell: {run: "echo hello from the step; echo a note >&2"}
  - id: only-us
    when: params.region == "us"
    shell: {run: "echo never"}
  - id: gate
    confirm: Is the application in maintenance mode?
  - id: settle
    shell: {run: "sleep 0.3"}
`)
	code, scr, raw := onTerminal(t, dir, "run", "rb.yaml", "--state", "st.json", "--log", "audit.log", "--yes", "--operator", "alice")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, scr)
	}
	goldenScreen(t, "short", normalizeScreen(scr.String(), dir))
	if !scr.Colored() {
		t.Error("no colours on a terminal without NO_COLOR")
	}
	if strings.Contains(raw, "hello from the step") {
		t.Error("a step's output is on the screen without -v")
	}
	log, _ := os.ReadFile(filepath.Join(dir, "audit.log"))
	if !strings.Contains(string(log), "hello from the step") {
		t.Error("the audit log lacks the step's output")
	}
}

// With -v the details are on the screen too; NO_COLOR turns colours off.
func TestScreenVerbose(t *testing.T) {
	setTerm(t, "xterm", true)
	dir := writeRunbook(t, `version: 1
name: verbose
steps:
  - id: greet
    shell: {run: "echo hello from the step"}
  - id: note
    shell: {run: "echo a note >&2"}
`)
	code, scr, raw := onTerminal(t, dir, "run", "rb.yaml", "--state", "st.json", "-v")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, scr)
	}
	goldenScreen(t, "verbose", normalizeScreen(scr.String(), dir))
	if strings.Contains(raw, "\033[3") || strings.Contains(raw, "\033[1m") {
		t.Errorf("colours with NO_COLOR: %q", raw)
	}
}

// A failed SQL step: a server WARNING on the way, the error in full with its
// position and SQLSTATE under its step, then the summary with the command
// that resumes; the error is not printed a second time.
func TestScreenFailedSQL(t *testing.T) {
	setTerm(t, "xterm", false)
	t.Setenv("RB_TEST_URL", pgtest.Shared(t).NewDatabase(t))
	dir := writeRunbook(t, `version: 1
name: failing-sql
params:
  url: {secret: true, env: RB_TEST_URL}
connections:
  db: ${{ params.url }}
steps:
  - id: schema
    sql:
      on: db
      script: |
        CREATE TABLE items (id int PRIMARY KEY);
        DO $$ BEGIN RAISE WARNING 'items has no owner yet'; END $$;
  - id: migrate
    sql:
      on: db
      script: |
        INSERT INTO items VALUES (1);
        UPDATE itemz SET id = 2;
  - id: verify
    sql: {on: db, script: SELECT 1}
`)
	code, scr, _ := onTerminal(t, dir, "run", "rb.yaml", "--state", "st.json", "--log", "audit.log")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, scr)
	}
	got := normalizeScreen(scr.String(), dir)
	goldenScreen(t, "failed-sql", got)
	for _, want := range []string{"SQLSTATE 42P01", "rb.yaml:19:16", "runbook resume rb.yaml --state st.json --log audit.log", "WARNING: items has no owner yet"} {
		if !strings.Contains(got, want) {
			t.Errorf("the screen lacks %q", want)
		}
	}
}

// A failed pipe: the error, the failing command's standard error, then the
// summary with the command that resumes; the error is not printed a second
// time.
func TestScreenFailedPipe(t *testing.T) {
	setTerm(t, "xterm", false)
	dir := writeRunbook(t, `version: 1
name: failing
params:
  token: {secret: true, env: RB_TEST_TOKEN}
steps:
  - id: prepare
    shell: {run: "true"}
  - id: migrate
    shell:
      pipe:
        - cmd: [printf, 'a\nb\n']
        - cmd: [sh, -c, 'cat >/dev/null; echo "migration failed: $T" >&2; exit 3']
          env: {T: '${{ params.token }}'}
  - id: after
    shell: {run: "true"}
  - id: cleanup
    always: true
    shell: {run: "true"}
`)
	t.Setenv("RB_TEST_TOKEN", "s3cr3t-value")
	code, scr, raw := onTerminal(t, dir, "run", "rb.yaml", "--state", "st.json")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, scr)
	}
	got := normalizeScreen(scr.String(), dir)
	goldenScreen(t, "failed-pipe", got)
	if strings.Contains(raw, "s3cr3t-value") {
		t.Error("the secret reached the terminal")
	}
	if n := strings.Count(got, "runbook resume rb.yaml"); n != 1 {
		t.Errorf("the resume command is shown %d times, want once", n)
	}
}

// A long pipe: its progress line — bytes of the size of the source
// database's tables, rate, ETA — is redrawn in place, and gone when the step
// ends.
func TestScreenLongPipe(t *testing.T) {
	setTerm(t, "xterm", true)
	srv := pgtest.Shared(t)
	url := srv.NewDatabase(t)
	// About 6 MiB of table data: more than the pipe moves.
	srv.Exec(t, pgtest.DatabaseName(t, url), "CREATE TABLE filler AS SELECT repeat('x', 1000) AS x FROM generate_series(1, 6000)")
	dir := writeRunbook(t, `version: 1
name: long-pipe
params:
  url: {secret: true, env: RB_TEST_URL}
connections:
  db: ${{ params.url }}
steps:
  - id: copy
    shell:
      pipe:
        - cmd: [sh, -c, 'for i in 1 2 3 4 5 6 7 8 9 10 11 12; do head -c 262144 /dev/zero; sleep 0.25; done']
          conn: db
        - cmd: [sh, -c, 'cat >/dev/null']
`)
	t.Setenv("RB_TEST_URL", url)
	code, scr, raw := onTerminal(t, dir, "run", "rb.yaml", "--state", "st.json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, scr)
	}
	goldenScreen(t, "long-pipe", normalizeScreen(scr.String(), dir))
	var frames []string
	for _, f := range scr.Erased() {
		if strings.Contains(f, "ETA") {
			frames = append(frames, f)
		}
	}
	if len(frames) < 2 {
		t.Fatalf("%d progress frames with an ETA, want several; erased lines:\n%s", len(frames), strings.Join(scr.Erased(), "\n"))
	}
	if frames[0] == frames[len(frames)-1] {
		t.Errorf("the progress line did not move: %q", frames)
	}
	if !strings.Contains(raw, "\r\033[K") {
		t.Error("no line redrawn in place")
	}
	for _, f := range frames {
		if n := len([]rune(f)); n >= 100 {
			t.Errorf("a progress line of %d columns on a terminal of 100: %q", n, f)
		}
	}
	// One frame, numbers, units and the spinner normalised: what an
	// operator reads.
	frame := frames[len(frames)/2]
	for _, n := range []struct{ re, with string }{{`\d+(\.\d+)?`, "N"}, {`\b(B|KiB|MiB|GiB)\b`, "UNIT"}, {`^[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]`, "*"}} {
		frame = regexp.MustCompile(n.re).ReplaceAllString(frame, n.with)
	}
	goldenScreen(t, "long-pipe-frame", frame+"\n")
}

// TERM=dumb: plain lines, nothing redrawn, no colour.
func TestScreenDumbTerminal(t *testing.T) {
	setTerm(t, "dumb", false)
	dir := writeRunbook(t, "version: 1\nname: dumb\nsteps:\n  - id: one\n    shell: {run: \"true\"}\n  - id: two\n    shell: {run: \"exit 2\"}\n")
	code, scr, raw := onTerminal(t, dir, "run", "rb.yaml", "--state", "st.json")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, scr)
	}
	if strings.Contains(raw, "\033") {
		t.Errorf("control sequences on a dumb terminal: %q", raw)
	}
	if !strings.Contains(scr.String(), "✗ 2/2 two") || !strings.Contains(scr.String(), "runbook resume rb.yaml") {
		t.Errorf("screen:\n%s", scr)
	}
}
