package executor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/internal/event"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/schema"
)

// logRun runs a runbook (written to dir/rb.yaml) with its audit log at
// dir/audit.log and its state at dir/state.json unless opts say otherwise.
func logRun(t *testing.T, dir, src string, vars []string, opts Options) error {
	t.Helper()
	if src != "" {
		if err := os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rb, err := schema.LoadFile(filepath.Join(dir, "rb.yaml"))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	vals, err := rb.ResolveParams(schema.ParamInputs{Vars: vars})
	if err != nil {
		t.Fatalf("params: %v", err)
	}
	var console bytes.Buffer
	opts.Runbook, opts.Values, opts.Console, opts.LogFormat = rb, vals, &console, "json"
	if opts.StatePath == "" {
		opts.StatePath = filepath.Join(dir, "state.json")
	}
	if opts.LogPath == "" {
		opts.LogPath = filepath.Join(dir, "audit.log")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err = Run(ctx, opts)
	return err
}

const threeSteps = `version: 1
name: audited
steps:
  - id: one
    shell: {run: "echo one; echo to-stderr >&2"}
  - id: two
    shell: {run: "echo two"}
  - id: three
    shell: {run: "echo three"}
`

// logLines reads a log's lines, newlines kept.
func logLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))[:bytes.Count(b, []byte("\n"))]
}

func writeLines(t *testing.T, path string, lines [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkChain recomputes the chain independently of VerifyLog.
func checkChain(t *testing.T, lines [][]byte) {
	t.Helper()
	prev := sha256.Sum256(nil)
	for i, l := range lines {
		want := fmt.Sprintf(`{"seq":%d,"prev":"%s",`, i+1, hex.EncodeToString(prev[:]))
		if !bytes.HasPrefix(l, []byte(want)) {
			t.Fatalf("line %d starts %.100q, want %q", i+1, l, want)
		}
		prev = sha256.Sum256(l)
	}
}

func TestAuditLogVerifiesAndDetectsTampering(t *testing.T) {
	dir := t.TempDir()
	if err := logRun(t, dir, threeSteps, nil, Options{}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "audit.log")
	orig := logLines(t, path)
	checkChain(t, orig)
	if empty := sha256.Sum256(nil); Genesis != hex.EncodeToString(empty[:]) {
		t.Fatal("genesis is not the SHA-256 of nothing")
	}
	res, err := VerifyLog(path)
	if err != nil {
		t.Fatalf("intact log: %v", err)
	}
	n := len(orig)
	if res.Lines != n || res.Seq != uint64(n) || res.Head != hashLine(orig[n-1]) {
		t.Errorf("result %+v, want %d lines, seq %d, head = hash of the last line", res, n, n)
	}
	if len(res.Runs) != 1 || res.Runs[0].Invocations != 1 || res.Runs[0].Outcomes[0] != "succeeded" {
		t.Errorf("runs %+v, want one run, one invocation, succeeded", res.Runs)
	}
	if n < 12 {
		t.Fatalf("only %d lines: the tamper cases need more", n)
	}

	k := n / 2 // a middle line
	edit := func(l []byte) []byte {
		out := bytes.Replace(l, []byte(`"level":"info"`), []byte(`"level":"warn"`), 1)
		if bytes.Equal(out, l) {
			t.Fatalf("line %d has no level to edit: %s", k, l)
		}
		return out
	}
	copyOf := func(ls [][]byte) [][]byte { return append([][]byte(nil), ls...) }
	same := func() [][]byte { return copyOf(orig) }
	cases := []struct {
		name   string
		tamper func() [][]byte
		raw    []byte // appended to the file as is
		line   int
		reason string
	}{
		{"edit a field of a middle line", func() [][]byte {
			ls := copyOf(orig)
			ls[k-1] = edit(ls[k-1])
			return ls
		}, nil, k, "changed after it was written"},
		{"edit the prev of a middle line", func() [][]byte {
			ls := copyOf(orig)
			l := bytes.Clone(ls[k-1])
			i := bytes.Index(l, []byte(`"prev":"`)) + len(`"prev":"`)
			l[i] = "01"[b2i(l[i] == '0')]
			ls[k-1] = l
			return ls
		}, nil, k, "its prev does not match"},
		{"edit the first line", func() [][]byte {
			ls := copyOf(orig)
			ls[0] = bytes.Replace(ls[0], []byte(`"operator":"`), []byte(`"operator":"mallory`), 1)
			return ls
		}, nil, 1, "changed after it was written"},
		{"remove a line", func() [][]byte {
			ls := copyOf(orig)
			return append(ls[:k-1], ls[k:]...)
		}, nil, k, "removed"},
		{"remove the first line", func() [][]byte { return copyOf(orig)[1:] }, nil, 1, "removed"},
		{"insert a copy of another line", func() [][]byte {
			ls := copyOf(orig)
			return append(ls[:k-1], append([][]byte{orig[2]}, ls[k-1:]...)...)
		}, nil, k, "inserted"},
		{"repeat a line", func() [][]byte {
			ls := copyOf(orig)
			return append(ls[:k], append([][]byte{orig[k-1]}, ls[k:]...)...)
		}, nil, k + 1, "inserted, repeated or moved"},
		{"swap two lines", func() [][]byte {
			ls := copyOf(orig)
			ls[k-1], ls[k] = ls[k], ls[k-1]
			return ls
		}, nil, k, "removed or moved"},
		{"truncate mid-line", func() [][]byte {
			ls := copyOf(orig)[:k]
			ls[k-1] = ls[k-1][:len(ls[k-1])/2]
			return ls
		}, nil, k, "torn"},
		{"truncate the last line's newline", func() [][]byte {
			ls := copyOf(orig)
			ls[n-1] = ls[n-1][:len(ls[n-1])-1]
			return ls
		}, nil, n, "torn"},
		{"append garbage", same, []byte("garbage\n"), n + 1, "not a JSON object"},
		{"append garbage without a newline", same, []byte("garbage"), n + 1, "torn"},
		{"append JSON without a chain", same, []byte(`{"level":"info","event":"step.end"}` + "\n"), n + 1, "no seq and prev"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "audit.log")
			writeLines(t, p, append(c.tamper(), c.raw))
			res, err := VerifyLog(p)
			if err == nil {
				t.Fatalf("tampered log verified: %+v", res)
			}
			if exitcode.Of(err) != exitcode.StepFailed {
				t.Errorf("exit code %d, want 1", exitcode.Of(err))
			}
			if res.Bad == nil || res.Bad.Line != c.line || !strings.Contains(res.Bad.Reason, c.reason) {
				t.Errorf("bad line %+v, want line %d: …%s…", res.Bad, c.line, c.reason)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("line %d: ", c.line)) {
				t.Errorf("error %q does not name line %d", err, c.line)
			}
		})
	}

	t.Run("anchor", func(t *testing.T) {
		head := res.Head
		if r, err := VerifyLogAnchor(path, head); err != nil || !r.Anchored {
			t.Fatalf("anchored at the head: %v %+v", err, r)
		}
		p := filepath.Join(t.TempDir(), "audit.log")
		writeLines(t, p, orig[:n-2]) // the end cut at a line boundary: the chain alone cannot see it
		if _, err := VerifyLog(p); err != nil {
			t.Fatalf("a log cut at a line boundary: %v", err)
		}
		r, err := VerifyLogAnchor(p, head)
		if err == nil || r.Anchored || !strings.Contains(err.Error(), "anchored") {
			t.Fatalf("cut log verified against the anchor: %v %+v", err, r)
		}
	})

	t.Run("missing file", func(t *testing.T) {
		_, err := VerifyLog(filepath.Join(dir, "nope.log"))
		if exitcode.Of(err) != exitcode.Invalid {
			t.Errorf("missing log: exit %d (%v), want 2", exitcode.Of(err), err)
		}
	})
}

func TestAuditLogOneChainAcrossRunsAndResume(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	// A first run, finished.
	if err := logRun(t, dir, threeSteps, nil, Options{}); err != nil {
		t.Fatal(err)
	}
	first := len(logLines(t, path))
	// A second run of another runbook (its own state) appends to the same log.
	other := t.TempDir()
	failing := `version: 1
name: failing
steps:
  - id: ok
    shell: {run: "echo ok"}
  - id: broken
    shell: {run: "echo failing >&2; exit 3"}
  - id: after
    shell: {run: "echo after"}
`
	err := logRun(t, other, failing, nil, Options{LogPath: path})
	if exitcode.Of(err) != exitcode.StepFailed {
		t.Fatalf("failing run: exit %d (%v), want 1", exitcode.Of(err), err)
	}
	// Fix the failed step and resume, appending to the same log.
	fixed := strings.Replace(failing, "exit 3", "exit 0", 1)
	if err := logRun(t, other, fixed, nil, Options{LogPath: path, Resume: true}); err != nil {
		t.Fatalf("resume: %v", err)
	}
	lines := logLines(t, path)
	checkChain(t, lines)
	if !bytes.Contains(lines[first], []byte(fmt.Sprintf(`"seq":%d,`, first+1))) {
		t.Errorf("the second run does not continue the seq: %.60s", lines[first])
	}
	res, err := VerifyLog(path)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if len(res.Runs) != 2 {
		t.Fatalf("runs %+v, want 2", res.Runs)
	}
	if r := res.Runs[1]; r.Invocations != 2 || strings.Join(r.Outcomes, ",") != "failed,succeeded" {
		t.Errorf("the resumed run: %+v, want 2 invocations failed, succeeded", r)
	}
	if got := res.Summary(); !strings.Contains(got, "intact") || !strings.Contains(got, "2 invocations: failed, succeeded") {
		t.Errorf("summary %q", got)
	}
}

func TestAuditLogTornLineIsRecorded(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	if err := logRun(t, dir, threeSteps, nil, Options{}); err != nil {
		t.Fatal(err)
	}
	lines := logLines(t, path)
	n := len(lines)
	// A crash mid-write: the last line lost its end.
	torn := lines[n-1][:len(lines[n-1])/2]
	lines[n-1] = torn
	writeLines(t, path, lines)
	if _, err := VerifyLog(path); err == nil {
		t.Fatal("a torn last line verified")
	}
	if err := logRun(t, dir, "", nil, Options{}); err != nil {
		t.Fatalf("a run appending to a torn log: %v", err)
	}
	res, err := VerifyLog(path)
	if err != nil {
		t.Fatalf("the recorded tear does not verify: %v", err)
	}
	if len(res.Tears) != 1 || res.Tears[0].Line != n || res.Tears[0].Bytes != len(torn) {
		t.Errorf("tears %+v, want line %d, %d bytes", res.Tears, n, len(torn))
	}
	after := logLines(t, path)
	var ev map[string]any
	if err := json.Unmarshal(after[n], &ev); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(torn)
	if ev["event"] != EventTruncated || ev["seq"] != float64(n) || ev["torn_sha256"] != hex.EncodeToString(sum[:]) || ev["prev"] != hashLine(after[n-2]) {
		t.Errorf("line %d: %v, want log.truncated with seq %d chained to line %d", n+1, ev, n, n-1)
	}
	if !strings.Contains(res.Summary(), fmt.Sprintf("torn line %d", n)) {
		t.Errorf("summary does not mention the tear: %s", res.Summary())
	}
	// The report of the run that appended says so, in its invocation.
	rep := report(t, ReportOptions{StatePath: filepath.Join(dir, "state.json"), LogPath: path})
	if !strings.Contains(rep, "### Invocation 1: run by") || strings.Contains(rep, "Invocation 2") ||
		!strings.Contains(rep, fmt.Sprintf("- the audit log ended in a torn line (%d bytes", len(torn))) {
		t.Errorf("the report does not tell the tear in the first invocation:\n%s", rep)
	}
	// Editing the kept torn bytes is seen.
	tampered := logLines(t, path)
	tampered[n-1] = bytes.Replace(tampered[n-1], []byte(`"level"`), []byte(`"LEVEL"`), 1)
	writeLines(t, path+".x", tampered)
	if r, err := VerifyLog(path + ".x"); err == nil || r.Bad.Line != n {
		t.Errorf("edited torn line: %v %+v, want line %d bad", err, r.Bad, n)
	}

	// A last line that is complete but not the log's own: runbook refuses to
	// append to it (and leaves the file as it was).
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("garbage\n")
	f.Close()
	before, _ := os.ReadFile(path)
	_, err = openAudit(path)
	if exitcode.Of(err) != exitcode.Refused || !strings.Contains(err.Error(), "runbook audit verify") {
		t.Errorf("appending after a foreign line: %v, want exit 4 naming audit verify", err)
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, before) {
		t.Errorf("the refused log was changed")
	}
}

func TestAuditLogTornFirstLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	os.WriteFile(path, []byte(`{"seq":1,"prev":"e3b0`), 0o600)
	w, err := openAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(w)
	log.Warn().Str("event", EventTruncated).Int("torn_bytes", w.tear.Bytes).Str("torn_sha256", w.tear.SHA256).Msg("torn")
	log.Info().Str("event", "run.start").Msg("x")
	w.f.Close()
	res, err := VerifyLog(path)
	if err != nil || len(res.Tears) != 1 || res.Tears[0].Line != 1 || res.Seq != 2 {
		t.Fatalf("verify: %v %+v", err, res)
	}
}

func TestAuditLogEmptyAndLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := openAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.f.Close()
	if w.seq != 0 || w.prev != Genesis || w.tear != nil {
		t.Errorf("a new log starts at seq %d prev %s tear %v", w.seq, w.prev, w.tear)
	}
	_, err = openAudit(path)
	if exitcode.Of(err) != exitcode.Refused || !strings.Contains(err.Error(), "another runbook process") {
		t.Errorf("second writer on the same log: %v, want exit 4", err)
	}
	if res, err := VerifyLog(path); err != nil || res.Lines != 0 {
		t.Errorf("empty log: %v %+v", err, res)
	}
}

// Actions log from goroutines (child stdout and stderr arrive concurrently):
// the chain stays whole.
func TestAuditWriterConcurrentWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := openAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(w).With().Timestamp().Str("run_id", "r").Logger()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				log.Info().Str("event", "cmd.stdout").Int("g", g).Int("i", i).Msg(strings.Repeat("x", i))
			}
		}()
	}
	wg.Wait()
	w.f.Close()
	res, err := VerifyLog(path)
	if err != nil || res.Lines != 1600 {
		t.Fatalf("verify: %v, %d lines, want 1600", err, res.Lines)
	}
}

func TestAuditLogShellOutputFromTwoStreams(t *testing.T) {
	dir := t.TempDir()
	err := logRun(t, dir, `version: 1
name: chatty
steps:
  - id: chatty
    shell: {run: "for i in $(seq 1 300); do echo out $i; echo err $i >&2; done"}
`, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := VerifyLog(filepath.Join(dir, "audit.log"))
	if err != nil || res.Lines < 600 {
		t.Fatalf("verify: %v, %d lines", err, res.Lines)
	}
}

func TestAuditLogMasksSecretsAndStillVerifies(t *testing.T) {
	dir := t.TempDir()
	secret := "p@ss w/rd&x=1%"
	err := logRun(t, dir, `version: 1
name: secretive
params:
  token: {secret: true}
  region: {default: eu}
steps:
  - id: echo
    shell:
      run: |
        echo "token is $TOKEN"
        echo "again: $TOKEN" >&2
        # the query-escaped form, as a child might print a URL
        enc() { local s="$1" i c; for ((i=0; i<${#s}; i++)); do c=${s:i:1}
          case "$c" in [a-zA-Z0-9._~-]) printf '%s' "$c";; ' ') printf '+';; *) printf '%%%02X' "'$c";; esac; done; echo; }
        echo "url: https://x/?token=$(enc "$TOKEN")"
      env: {TOKEN: '${{ params.token }}'}
  - id: fails
    shell:
      run: 'echo "$TOKEN" >&2; exit 2'
      env: {TOKEN: '${{ params.token }}'}
`, []string{"token=" + secret}, Options{Operator: "alice", Ticket: "CHG-42", Version: "1.2.3"})
	if exitcode.Of(err) != exitcode.StepFailed {
		t.Fatalf("exit %d (%v), want 1", exitcode.Of(err), err)
	}
	path := filepath.Join(dir, "audit.log")
	b, _ := os.ReadFile(path)
	for _, form := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret), "w/rd&x"} {
		if bytes.Contains(b, []byte(form)) {
			t.Errorf("the audit log holds the secret (%q)", form)
		}
	}
	for _, masked := range []string{`token is ***`, `url: https://x/?token=***`} {
		if !bytes.Contains(b, []byte(masked)) {
			t.Errorf("the log lacks the echoed line, masked: %s", masked)
		}
	}
	if _, err := VerifyLog(path); err != nil {
		t.Fatalf("the masked log does not verify: %v", err)
	}
	// run.start records who, where, what and with which params.
	var start map[string]any
	json.Unmarshal(logLines(t, path)[0], &start)
	want := map[string]any{"event": "run.start", "operator": "alice", "ticket": "CHG-42", "version": "1.2.3",
		"runbook": filepath.Join(dir, "rb.yaml"), "resume": false}
	for k, v := range want {
		if start[k] != v {
			t.Errorf("run.start %s = %v, want %v", k, start[k], v)
		}
	}
	host, _ := os.Hostname()
	if start["host"] != host || len(fmt.Sprint(start["runbook_digest"])) < 64 || start["run_id"] == "" || start["time"] == "" || start["level"] != "info" {
		t.Errorf("run.start lacks host, digest, run id, time or level: %v", start)
	}
	if p, _ := start["params"].(map[string]any); p["token"] != "***" || p["region"] != "eu" {
		t.Errorf("run.start params %v, want token *** and region eu", start["params"])
	}
}

func TestAuditWriterRejectsNonObjects(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := openAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.f.Close()
	if _, err := w.Write([]byte("plain text\n")); err == nil {
		t.Error("a line that is not a JSON object was chained")
	}
	if _, err := w.Write([]byte("{}\n")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if want := `{"seq":1,"prev":"` + Genesis + `"}` + "\n"; string(b) != want {
		t.Errorf("empty object chained as %q, want %q", b, want)
	}
}

func TestAuditWriterStopsAfterAFailedWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := openAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	w.f.Close() // every write now fails
	if _, err := w.Write([]byte(`{"a":1}` + "\n")); err == nil {
		t.Fatal("write to a closed file succeeded")
	}
	if _, err := w.Write([]byte(`{"a":2}` + "\n")); err == nil || err != w.err {
		t.Errorf("the writer went on after a failed write: %v", err)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestAuditCrashHelper is the process TestAuditLogAfterACrash kills: it runs
// a runbook whose step kills runbook itself (SIGKILL, no clean-up at all).
func TestAuditCrashHelper(t *testing.T) {
	dir := os.Getenv("RUNBOOK_AUDIT_CRASH_DIR")
	if dir == "" {
		t.Skip("helper process of TestAuditLogAfterACrash")
	}
	logRun(t, dir, "", nil, Options{Operator: "alice"})
	t.Fatal("the run survived its crash")
}

// A process killed in the middle of a step leaves an invocation without run.end;
// the resume appends to the same chain and the whole log verifies.
func TestAuditLogAfterACrash(t *testing.T) {
	dir := t.TempDir()
	crashing := `version: 1
name: crashing
steps:
  - id: before
    shell: {run: "echo before"}
  - id: boom
    shell: {run: "echo about to die; kill -9 $PPID"}
  - id: after
    shell: {run: "echo after"}
`
	os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(crashing), 0o644)
	cmd := exec.Command(os.Args[0], "-test.run=^TestAuditCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "RUNBOOK_AUDIT_CRASH_DIR="+dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != -1 {
		t.Fatalf("the helper was not killed: %v\n%s", err, out)
	}
	path := filepath.Join(dir, "audit.log")
	res, err := VerifyLog(path)
	if err != nil {
		t.Fatalf("the log of a killed run: %v", err)
	}
	if len(res.Runs) != 1 || res.Runs[0].Outcomes[0] != "" {
		t.Fatalf("runs %+v, want one invocation without run.end", res.Runs)
	}
	fixed := strings.Replace(crashing, "kill -9 $PPID", "true", 1)
	if err := logRun(t, dir, fixed, nil, Options{Resume: true, Rerun: []string{"boom"}, Operator: "bob"}); err != nil {
		t.Fatalf("resume: %v", err)
	}
	res, err = VerifyLog(path)
	if err != nil {
		t.Fatalf("after the resume: %v", err)
	}
	if r := res.Runs[0]; r.Invocations != 2 || r.Outcomes[0] != "" || r.Outcomes[1] != "succeeded" {
		t.Errorf("run %+v, want 2 invocations: no run.end, succeeded", r)
	}
	rep := report(t, ReportOptions{StatePath: filepath.Join(dir, "state.json"), LogPath: path})
	for _, want := range []string{"### Invocation 1: run by alice", "**no run.end**", "→ no exit recorded", "#### 2. `boom` (shell) — no step.end", "### Invocation 2: resume by bob", "#### 2. `boom` (shell) — succeeded"} {
		if !strings.Contains(rep, want) {
			t.Errorf("report lacks %q:\n%s", want, rep)
		}
	}
}

// A step.end is fsynced in the background; the state journal's next fsync
// waits for it, and a failed background fsync stops the log as a failed
// write does.
func TestAuditWriterBackgroundSync(t *testing.T) {
	stepEnd := []byte(`{"event":"step.end","step":"a"}` + "\n")
	runEnd := []byte(`{"event":"run.end"}` + "\n")
	line := []byte(`{"event":"cmd.stdout"}` + "\n")
	devNull := func(t *testing.T, w *auditWriter) {
		f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0) // writes succeed, fsync fails (EINVAL)
		if err != nil {
			t.Fatal(err)
		}
		w.f.Close()
		w.f = f
	}
	for _, tc := range []struct {
		name     string
		broken   bool   // fsync fails
		write    []byte // the line written
		ev       event.Event
		flushErr bool // its flush fails at once
		laterErr bool // the Write after the state's fsync fails
	}{
		{"step.end, fsync works", false, stepEnd, StepEnd{}, false, false},
		{"step.end, fsync fails: seen at the next barrier", true, stepEnd, StepEnd{}, false, true},
		{"run.end, fsync fails: at once", true, runEnd, RunEnd{}, true, true},
		{"plain line: no fsync", true, line, actions.CmdStdout{}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := openAudit(filepath.Join(t.TempDir(), "audit.log"))
			if err != nil {
				t.Fatal(err)
			}
			if tc.broken {
				devNull(t, w)
			}
			defer w.close()
			st := newTestState(t)
			st.afterSync = w.waitSync
			if _, err := w.Write(tc.write); err != nil {
				t.Fatalf("Write: %v", err)
			}
			if err := w.flush(event.DurabilityOf(tc.ev)); (err != nil) != tc.flushErr {
				t.Fatalf("flush: %v, want an error: %v", err, tc.flushErr)
			}
			if event.DurabilityOf(tc.ev) == event.Background && w.syncing == nil {
				t.Fatal("no fsync started at step.end")
			}
			if err := st.update("a", true, func(s *StepState) { s.Status = "running" }, nil); err != nil {
				t.Fatal(err)
			}
			if w.syncing != nil {
				t.Fatal("the state's fsync returned before the log's")
			}
			if _, err := w.Write(line); (err != nil) != tc.laterErr {
				t.Errorf("next Write: %v, want an error: %v", err, tc.laterErr)
			}
		})
	}
}

// The events the audit log is flushed after (docs/audit.md, "When the log
// is written to disk") say so themselves.
func TestDurableEvents(t *testing.T) {
	for _, ev := range []event.Event{StepEnd{}, RunEnd{}, RunInterrupted{}, actions.ConfirmApproved{}, LogTruncated{}} {
		if event.DurabilityOf(ev) == event.Buffered {
			t.Errorf("%s is not flushed", ev.Name())
		}
	}
	for _, ev := range []event.Event{StepStart{}, actions.CmdStdout{}, actions.SQLStatement{}, actions.GenerateStatement{}} {
		if event.DurabilityOf(ev) != event.Buffered {
			t.Errorf("%s is flushed", ev.Name())
		}
	}
}
