package runbook_test

import (
	"go/scanner"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/runbookhq/runbook/executor"
)

// The project's docs are its reference, and its text speaks of the project
// itself: no citation of a document readers do not have, no figure or change
// attributed to an unnamed machine or to a numbered working session. These
// rules keep it so. Each is written so that its own source does not match it.
var docRules = []struct {
	name string
	re   *regexp.Regexp
	// inGoCode: the rule also applies to Go code (strings included), not
	// only to Go comments and Markdown.
	inGoCode bool
	hint     string
}{
	{
		name:     "citation of the product brief",
		re:       regexp.MustCompile(`SPEC\s*(§|\.md)`),
		inGoCode: true,
		hint:     "cite the docs/ file that says it (docs/format.md, docs/cli.md, docs/state.md …), or say it",
	},
	{
		name:     "a machine named by a letter",
		re:       regexp.MustCompile(`\b[Mm]achines?\s+[A-Z]\b`),
		inGoCode: true,
		hint:     "name the commit and the host's measured facts (CPU, fdatasync latency, process start)",
	},
	{
		name: "an ordinal working session",
		re:   regexp.MustCompile(`(?i)\b(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth)\s+session`),
		hint: "name the commit instead",
	},
	{
		name: "a numbered working session",
		re:   regexp.MustCompile(`\bsession\s+[0-9]+\b`),
		hint: "name the commit instead",
	},
}

// docViolations returns the rule broken by each offending stretch of text, as
// "rule: match".
func docViolations(text string, goCode bool) []string {
	var out []string
	for _, r := range docRules {
		if goCode && !r.inGoCode {
			continue
		}
		for _, m := range r.re.FindAllString(text, -1) {
			out = append(out, r.name+": "+m)
		}
	}
	return out
}

func TestDocRules(t *testing.T) {
	tests := []struct {
		text string
		want bool
	}{
		{"resume refuses (" + "SPEC " + "§5).", true},
		{"The contract is `" + "SPEC" + ".md` of the product.", true},
		{"| | machine " + "A (first" + " session) |", true},
		{"on Machine " + "B, P3 is not met", true},
		{"measured on machines " + "A and C", true},
		{"The " + "second" + " session removed two journal records", true},
		{"in three runs of the " + "Third " + "Session", true},
		{"(0.371 ms in " + "session" + " 2)", true},
		// PostgreSQL's and the report's sessions, and machines in general.
		{"one session per cluster in turn", false},
		{"Hold a session advisory lock keyed by the runbook name", false},
		{"opened lazily, one session each", false},
		{"### Invocation 1: run by alice", false},
		{"each invocation (the run, then every resume) step by step", false},
		{"a command line is visible to every user of the machine", false},
		{"the floor ÷ psql is the cost of exactly-once on this machine.", false},
		{"the spec of a connection", false},
		{"at 1e0c80e (Xeon, fdatasync 130–163 µs, process start 0.7 ms)", false},
	}
	for _, tt := range tests {
		got := docViolations(tt.text, false)
		if (len(got) > 0) != tt.want {
			t.Errorf("%q: violations %q, want any: %v", tt.text, got, tt.want)
		}
	}
}

// TestDocsSpeakOfTheProject checks every Markdown file of the repository, and
// every Go file (the working-session rules apply to its comments only).
// Files under testdata are program output, not prose, and are left out.
func TestDocsSpeakOfTheProject(t *testing.T) {
	var checked []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		ext := filepath.Ext(path)
		if ext != ".md" && ext != ".go" {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		checked = append(checked, filepath.ToSlash(path))
		report := func(line int, v string) {
			t.Errorf("%s:%d: %s", path, line, v)
		}
		if ext == ".md" {
			for i, line := range strings.Split(string(src), "\n") {
				for _, v := range docViolations(line, false) {
					report(i+1, v+hintOf(v))
				}
			}
			return nil
		}
		for i, line := range strings.Split(string(src), "\n") {
			for _, v := range docViolations(line, true) {
				report(i+1, v+hintOf(v))
			}
		}
		fset := token.NewFileSet()
		file := fset.AddFile(path, -1, len(src))
		var s scanner.Scanner
		s.Init(file, src, nil, scanner.ScanComments)
		for {
			pos, tok, lit := s.Scan()
			if tok == token.EOF {
				break
			}
			if tok != token.COMMENT {
				continue
			}
			start := fset.Position(pos).Line
			for i, line := range strings.Split(lit, "\n") {
				for _, v := range docViolations(line, false) {
					if !goCodeRule(v) { // those were reported above
						report(start+i, v+hintOf(v))
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The walk must have reached the docs and the code, or it proved nothing.
	for _, want := range []string{"README.md", "DEVELOPERS.md", "docs/format.md", "docs/performance.md", "executor/executor.go", "docs_test.go"} {
		found := false
		for _, c := range checked {
			found = found || c == want
		}
		if !found {
			t.Errorf("%s was not checked (%d files checked)", want, len(checked))
		}
	}
}

func goCodeRule(violation string) bool {
	for _, r := range docRules {
		if r.inGoCode && strings.HasPrefix(violation, r.name+": ") {
			return true
		}
	}
	return false
}

func hintOf(violation string) string {
	for _, r := range docRules {
		if strings.HasPrefix(violation, r.name+": ") {
			return " (" + r.hint + ")"
		}
	}
	return ""
}

// A run's share of one runbook run or resume process (run.start … run.end) is
// an invocation (docs/audit.md); "session" means a PostgreSQL session only.
// invocationRules catch the old name of an invocation in the docs, the
// rendered reports and the code that renders them. Each is written so that
// its own source does not match it.
var invocationRules = []struct {
	name string
	re   *regexp.Regexp
}{
	{"a heading of sessions", regexp.MustCompile(`(?im)^#+\s+sessions?\b|<h[1-6][^>]*>\s*sessions?\b`)},
	{"a numbered session", regexp.MustCompile(`(?i)\bsessions?\s+(#?[0-9]+|%d)\b`)},
	{"a count of sessions", regexp.MustCompile(`(?i)\b[0-9]+\s+sessions?:`)},
	{"the run's sessions", regexp.MustCompile(`(?i)\bsessions?\s+\(the run|\bsessions?\s+a\s+band|band per sessions?\b|\bno sessions? of this run`)},
	{"a session class or id", regexp.MustCompile(`(?i)(class|id)="sessions?\b|data-sessions?=|\.sessions?\b[-:{ ]|#s[0-9]+-step`)},
}

func invocationViolations(text string) []string {
	var out []string
	for _, r := range invocationRules {
		for _, m := range r.re.FindAllString(text, -1) {
			out = append(out, r.name+": "+m)
		}
	}
	return out
}

func TestInvocationRules(t *testing.T) {
	tests := []struct {
		text string
		want bool
	}{
		{"## " + "Sessions", true},
		{"### " + "Session 1: run by root", true},
		{"<h2>" + "Sessions</h2>", true},
		{"<h3>" + "Session 2: resume by bob</h3>", true},
		{`p("### ` + `Session %d: %s", s.N, kind)`, true},
		{"runs: 20261125T034712Z-a56b2924e3f8 (2 " + "sessions: failed, succeeded)", true},
		{"then each " + "session (the run, then every resume) step by step", true},
		{"a timeline of the run (each " + "session a band, steps as bars", true},
		{"The audit log holds no " + "session of this run.", true},
		{`<g class="` + `session" data-` + `session="1">`, true},
		{`<a href="#` + `s1-step3">`, true},
		{"svg.timeline ." + "session-label { font-weight: 600; }", true},
		// PostgreSQL sessions, and the new name.
		{"### Invocation 1: run by root", false},
		{"(2 invocations: failed, succeeded)", false},
		{"No event trigger of the source fires in replica sessions", false},
		{"runbook's own target session runs with session_replication_role = replica", false},
		{"opened lazily, one session each; extra sessions are closed", false},
		{"Hold a session advisory lock keyed by the runbook name", false},
		{"Connect directly or through a pooler in *session* mode", false},
	}
	for _, tt := range tests {
		got := invocationViolations(tt.text)
		if (len(got) > 0) != tt.want {
			t.Errorf("%q: violations %q, want any: %v", tt.text, got, tt.want)
		}
	}
}

// TestDocsNameInvocations checks the docs (Markdown and the example reports),
// the reports' golden files, the HTML report's template and style, the code
// that renders the reports and the audit verdict, and a rendered verdict.
func TestDocsNameInvocations(t *testing.T) {
	var files []string
	err := filepath.WalkDir("docs", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, pattern := range []string{"*.md", "executor/testdata/report/*", "executor/report_html/*", "executor/report*.go", "executor/audit.go", "cmd/runbook/report.go", "cmd/runbook/audit.go"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	checked := map[string]bool{}
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		checked[filepath.ToSlash(path)] = true
		for i, line := range strings.Split(string(src), "\n") {
			for _, v := range invocationViolations(line) {
				t.Errorf("%s:%d: %s (a run's share of one run or resume process is an invocation: docs/audit.md)", path, i+1, v)
			}
		}
	}
	// The walk must have reached the docs and the rendered reports.
	for _, want := range []string{"docs/audit.md", "docs/cli.md", "docs/examples/report.md", "docs/examples/report.html", "README.md",
		"executor/testdata/report/invocations.md", "executor/testdata/report/timeline.html", "executor/report_html/report.html.tmpl", "executor/report_markdown.go", "executor/audit.go"} {
		if !checked[want] {
			t.Errorf("%s was not checked (%d files checked)", want, len(checked))
		}
	}

	// audit verify's verdict, rendered.
	v := &executor.VerifyResult{Path: "acme.log", Lines: 57, Runs: []executor.LogRun{
		{RunID: "20261125T034712Z-a56b2924e3f8", Invocations: 3, Outcomes: []string{"approval-required", "approval-required", "succeeded"}},
		{RunID: "20261126T034712Z-b56b2924e3f8", Invocations: 1, Outcomes: []string{"succeeded"}}}}
	got := v.Summary()
	want := "acme.log: 57 lines, intact, runs: 20261125T034712Z-a56b2924e3f8 (3 invocations: approval-required, approval-required, succeeded), 20261126T034712Z-b56b2924e3f8 (1 invocation: succeeded)"
	if got != want {
		t.Errorf("verdict:\n got %s\nwant %s", got, want)
	}
	if vs := invocationViolations(got); len(vs) > 0 {
		t.Errorf("verdict %q: %q", got, vs)
	}
}
