package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func auditMain(args ...string) (code int, stdout, stderr string) {
	var out, errw bytes.Buffer
	code = Main(args, strings.NewReader(""), &out, &errw)
	return code, out.String(), errw.String()
}

func TestAuditVerifyAndReportExitCodes(t *testing.T) {
	dir := t.TempDir()
	rb := filepath.Join(dir, "rb.yaml")
	state := filepath.Join(dir, "state.json")
	log := filepath.Join(dir, "audit.log")
	os.WriteFile(rb, []byte(`version: 1
name: cli-audit
steps:
  - id: one
    shell: {run: "echo one"}
  - id: two
    shell: {run: "echo two"}
  - id: three
    shell: {run: "echo three"}
`), 0o644)
	if code, _, stderr := auditMain("run", rb, "--state", state, "--log", log, "--operator", "alice", "--ticket", "CHG-1"); code != 0 {
		t.Fatalf("run: exit %d: %s", code, stderr)
	}

	code, stdout, stderr := auditMain("audit", "verify", log)
	if code != 0 || !strings.Contains(stdout, log+": ") || !strings.Contains(stdout, "intact, runs: ") || !strings.Contains(stdout, "head: seq ") {
		t.Fatalf("verify of an intact log: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	head := strings.Fields(stdout[strings.Index(stdout, "sha256 "):])[1]
	if code, stdout, _ := auditMain("audit", "verify", log, "--anchor", head); code != 0 || !strings.Contains(stdout, "anchor") {
		t.Errorf("verify --anchor HEAD: exit %d: %s", code, stdout)
	}

	code, stdout, _ = auditMain("report", "--state", state, "--log", log)
	if code != 0 || !strings.Contains(stdout, "# Run report: cli-audit") || !strings.Contains(stdout, "chain intact") || !strings.Contains(stdout, "CHG-1") {
		t.Errorf("report: exit %d:\n%s", code, stdout)
	}
	// --format html --out FILE: the file holds the HTML report, standard
	// output nothing; the same report on standard output without --out.
	html := filepath.Join(dir, "report.html")
	code, stdout, stderr = auditMain("report", "--state", state, "--log", log, "--format", "html", "--out", html)
	page, _ := os.ReadFile(html)
	if code != 0 || stdout != "" || !strings.HasPrefix(string(page), "<!DOCTYPE html>") || !strings.Contains(string(page), `id="audit-head">`+head+`<`) ||
		strings.Count(string(page), `<rect class="bar ok"`) != 3 {
		t.Errorf("report --format html --out: exit %d, stdout %q, stderr %s, file:\n%.3000s", code, stdout, stderr, page)
	}
	if code, stdout, _ := auditMain("report", "--state", state, "--log", log, "--format", "html"); code != 0 || stdout != string(page) {
		t.Errorf("report --format html to standard output: exit %d, and not the --out file's report", code)
	}
	if code, _, stderr := auditMain("report", "--state", state, "--format", "html", "--out", filepath.Join(dir, "no", "such", "dir", "r.html")); code != 5 || !strings.Contains(stderr, "writing the report") {
		t.Errorf("report --out into a missing directory: exit %d (want 5): %s", code, stderr)
	}
	// FILE finds the default state (derived from the runbook and its params),
	// which this run did not use.
	if code, _, stderr := auditMain("report", rb, "--log", log); code != 2 || !strings.Contains(stderr, "no state at .runbook/cli-audit-") {
		t.Errorf("report FILE without its default state: exit %d: %s", code, stderr)
	}

	// Tamper: remove the third line.
	b, _ := os.ReadFile(log)
	lines := strings.SplitAfter(string(b), "\n")
	os.WriteFile(log, []byte(strings.Join(append(lines[:2:2], lines[3:]...), "")), 0o600)
	code, _, stderr = auditMain("audit", "verify", log)
	if code != 1 || !strings.Contains(stderr, "line 3: seq 4 where 3 was due") {
		t.Errorf("verify of a log missing line 3: exit %d: %s", code, stderr)
	}
	code, stdout, stderr = auditMain("report", "--state", state, "--log", log)
	if code != 0 || !strings.Contains(stdout, "CHAIN BROKEN at line 3") || !strings.Contains(stderr, "warning") {
		t.Errorf("report on a broken log: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}

	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"audit", "verify"}, 2},
		{[]string{"audit", "verify", log, log}, 2},
		{[]string{"audit", "verify", filepath.Join(dir, "missing.log")}, 2},
		{[]string{"audit", "verify", log, "--anchor", "nothex"}, 2},
		{[]string{"audit"}, 2},
		{[]string{"audit", "verfy", log}, 2},
		{[]string{"report"}, 2},
		{[]string{"report", rb, "--state", state}, 2},
		{[]string{"report", "--state", state, "--format", "pdf"}, 2},
		{[]string{"report", "--state", filepath.Join(dir, "missing.json")}, 2},
	} {
		if code, _, stderr := auditMain(c.args...); code != c.code {
			t.Errorf("runbook %s: exit %d, want %d (%s)", strings.Join(c.args, " "), code, c.code, stderr)
		}
	}
}
