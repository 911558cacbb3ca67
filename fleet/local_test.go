package fleet

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runbookhq/runbook/internal/exitcode"
)

func mustLimit(t *testing.T, s string) Limit {
	t.Helper()
	l, err := ParseLimit(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A fleet of 6 with --max-concurrency 2 (and 33%, which is 2 of 6 rounded
// up) never has more than 2 runs at once, and has 2 at some moment; every
// customer is migrated exactly once, its audit log verifies, its report is
// written, and no file of the fleet holds a secret.
func TestLocalFleetConcurrency(t *testing.T) {
	for _, conc := range []string{"2", "33%"} {
		t.Run(strings.ReplaceAll(conc, "%", "pct"), func(t *testing.T) {
			f := newFixture(t, 3, "0.1")
			var files []string
			for _, c := range names("c", 6) {
				files = append(files, f.customer(t, c))
			}
			customers, err := Customers(files)
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(f.dir, "fleet")
			var out bytes.Buffer
			sum, err := Run(context.Background(), Options{Runbook: f.runbook, Customers: customers, Dir: dir,
				MaxConcurrency: mustLimit(t, conc), MaxErrors: mustLimit(t, "0"), Out: &out})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Code != exitcode.OK || sum.Err() != nil {
				t.Fatalf("code %d (%v)\n%s", sum.Code, sum.Err(), out.String())
			}
			// The most runs at once: at each run's start, the runs whose span
			// holds it.
			most := f.srv.QueryValue(t, f.db, `SELECT max(n) FROM (SELECT (SELECT count(*) FROM spans b WHERE b.t0 <= a.t0 AND b.t1 > a.t0) AS n FROM spans a) x`)
			if most != "2" {
				t.Errorf("at most %s runs at once, want 2", most)
			}
			counts, bad := f.effects(t)
			if len(counts) != 6 || len(bad) > 0 {
				t.Errorf("effects per customer %v; not exactly once: %v", counts, bad)
			}
			verifyLogs(t, dir, names("c", 6))
			for _, c := range names("c", 6) {
				if b, err := os.ReadFile(ReportPath(dir, c)); err != nil || !strings.Contains(string(b), "succeeded") {
					t.Errorf("%s: report: %v", c, err)
				}
			}
			noSecret(t, dir, f.password)
		})
	}
}

// Three customers made to fail, --max-errors 2 (and 25% of 8, rounded down
// to 2): once the third has failed no new run starts, the runs in flight
// finish, and the customers not started are "skipped"; the fleet exits 1.
// Customers start in the order of their names, four at a time: the three
// failing ones and b01 (slow: about 1.8 s). a01 and a02 fail at once, which
// frees slots for b02 and b03 (2 errors do not exceed 2); a03 fails 1 s
// later (b02 and b03 run by then, and none of b01–b03 has finished), which
// stops the fleet: b01–b03 finish, and succeed; b04 and b05 never start.
func TestLocalFleetMaxErrors(t *testing.T) {
	for _, maxErrs := range []string{"2", "25%"} {
		t.Run(strings.ReplaceAll(maxErrs, "%", "pct"), func(t *testing.T) {
			f := newFixture(t, 3, "0.6")
			var files []string
			for _, c := range names("a", 3) {
				after := "0"
				if c == "a03" {
					after = "1"
				}
				files = append(files, f.customer(t, c, `fail: "yes"`, `fail_after: "`+after+`"`))
			}
			for _, c := range names("b", 5) {
				files = append(files, f.customer(t, c))
			}
			customers, err := Customers(files)
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(f.dir, "fleet")
			var out bytes.Buffer
			sum, err := Run(context.Background(), Options{Runbook: f.runbook, Customers: customers, Dir: dir,
				MaxConcurrency: mustLimit(t, "4"), MaxErrors: mustLimit(t, maxErrs), Out: &out})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Code != exitcode.StepFailed {
				t.Errorf("code %d, want 1\n%s", sum.Code, out.String())
			}
			want := map[string]string{"a01": OutcomeFailed, "a02": OutcomeFailed, "a03": OutcomeFailed, "b01": OutcomeSucceeded,
				"b02": OutcomeSucceeded, "b03": OutcomeSucceeded, "b04": OutcomeSkipped, "b05": OutcomeSkipped}
			for c, o := range want {
				if sum.Outcomes[c] != o {
					t.Errorf("%s: %s, want %s\n%s", c, sum.Outcomes[c], o, out.String())
				}
			}
			counts, bad := f.effects(t)
			if len(bad) > 0 || counts["b01"] != 3 || counts["b02"] != 3 || counts["b03"] != 3 || len(counts) != 3 {
				t.Errorf("effects %v (not once: %v); want b01–b03's alone", counts, bad)
			}
			// fleet status says the same, with where each state is.
			tab, err := Status(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range tab.Rows {
				if r.Outcome != want[r.Customer] {
					t.Errorf("status %s: %s, want %s", r.Customer, r.Outcome, want[r.Customer])
				}
				if r.Outcome == OutcomeFailed && (r.Step != "check" || r.State != StatePath(dir, r.Customer)) {
					t.Errorf("status %s: step %q, state %q", r.Customer, r.Step, r.State)
				}
			}
			if tab.Code() != exitcode.StepFailed {
				t.Errorf("status code %d", tab.Code())
			}
		})
	}
}

// A run that needs approval pauses (exit 3); a second fleet run is refused
// while it is unfinished (exit 4); fleet resume --approve continues it and
// leaves the others alone; fleet report links every run's report.
func TestLocalFleetApprovalAndResume(t *testing.T) {
	f := newFixture(t, 2, "0")
	var files []string
	for _, c := range names("c", 4) {
		extra := []string{}
		if c == "c02" || c == "c04" {
			extra = append(extra, `confirm: "yes"`)
		}
		files = append(files, f.customer(t, c, extra...))
	}
	customers, err := Customers(files)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(f.dir, "fleet")
	o := Options{Runbook: f.runbook, Customers: customers, Dir: dir, MaxConcurrency: mustLimit(t, "50%"), MaxErrors: mustLimit(t, "0")}
	sum, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Code != exitcode.Approval || sum.Outcomes["c02"] != OutcomeApproval || sum.Outcomes["c01"] != OutcomeSucceeded {
		t.Fatalf("code %d, outcomes %v", sum.Code, sum.Outcomes)
	}
	if _, err := Run(context.Background(), o); exitcode.Of(err) != exitcode.Refused || !strings.Contains(err.Error(), "c02 (approval-required)") {
		t.Errorf("a second fleet run over unfinished runs: %v (exit %d), want refused", err, exitcode.Of(err))
	}
	before, _ := os.ReadFile(StatePath(dir, "c01"))
	sum, err = Resume(context.Background(), Options{Dir: dir, Approve: []string{"approve"}})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Code != exitcode.OK || len(sum.Outcomes) != 2 || sum.Outcomes["c04"] != OutcomeSucceeded {
		t.Errorf("resume: code %d, outcomes %v (want c02 and c04 only)", sum.Code, sum.Outcomes)
	}
	if after, _ := os.ReadFile(StatePath(dir, "c01")); !bytes.Equal(before, after) {
		t.Error("resume touched a run that had succeeded")
	}
	counts, bad := f.effects(t)
	if len(counts) != 4 || len(bad) > 0 {
		t.Errorf("effects %v; not once: %v", counts, bad)
	}
	verifyLogs(t, dir, names("c", 4))

	tab, err := Status(dir)
	if err != nil {
		t.Fatal(err)
	}
	reports, err := WriteReports(dir, tab, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := map[string]string{}
	for _, c := range names("c", 4) {
		logs[c] = LogPath(dir, c)
	}
	var b bytes.Buffer
	if err := WriteReport(&b, ReportOptions{Table: tab, Reports: reports, Logs: logs, LinkBase: dir}); err != nil {
		t.Fatal(err)
	}
	for _, c := range names("c", 4) {
		line := "| " + c + " | succeeded | end | "
		if !strings.Contains(b.String(), line) || !strings.Contains(b.String(), "verified | ["+c+".report.md]("+c+".report.md) |") {
			t.Errorf("summary lacks %s's line:\n%s", c, b.String())
		}
	}
	noSecret(t, dir, f.password)
}

// A customer's vars file that does not resolve stops the fleet before any
// run (exit 2), naming the customer; a secret given with --var is refused.
func TestLocalFleetRefusedBeforeRunning(t *testing.T) {
	f := newFixture(t, 1, "0")
	good := f.customer(t, "good")
	bad := filepath.Join(f.dir, "customers", "bad.yaml")
	os.WriteFile(bad, []byte("customer: Not A Valid Name\n"), 0o600)
	customers, err := Customers([]string{good, bad})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(f.dir, "fleet")
	_, err = Run(context.Background(), Options{Runbook: f.runbook, Customers: customers, Dir: dir})
	if exitcode.Of(err) != exitcode.Invalid || !strings.Contains(err.Error(), "customer bad:") {
		t.Errorf("err %v (exit %d)", err, exitcode.Of(err))
	}
	if counts, _ := f.effects(t); len(counts) != 0 {
		t.Errorf("runs ran: %v", counts)
	}
	customers, _ = Customers([]string{good})
	_, err = Run(context.Background(), Options{Runbook: f.runbook, Customers: customers, Dir: dir, Vars: []string{"url=" + f.url}})
	if exitcode.Of(err) != exitcode.Invalid || strings.Contains(err.Error(), f.password) || !strings.Contains(err.Error(), "secret") {
		t.Errorf("a secret with --var: %v", err)
	}
}

func TestLimits(t *testing.T) {
	for _, c := range []struct {
		in         string
		size       int
		conc, errs int
		bad        bool
	}{
		{"10", 50, 10, 10, false},
		{"10%", 50, 5, 5, false},
		{"10%", 7, 1, 0, false}, // 0.7: concurrency rounds up, errors down
		{"34%", 6, 3, 2, false},
		{"0", 5, 1, 0, false},
		{"100%", 3, 3, 3, false},
		{"101%", 3, 0, 0, true},
		{"-1", 3, 0, 0, true},
		{"x", 3, 0, 0, true},
	} {
		l, err := ParseLimit(c.in)
		if (err != nil) != c.bad {
			t.Errorf("%q: err %v", c.in, err)
			continue
		}
		if c.bad {
			continue
		}
		if got := l.Concurrency(c.size); got != c.conc {
			t.Errorf("%q of %d: concurrency %d, want %d", c.in, c.size, got, c.conc)
		}
		if got := l.Errors(c.size); got != c.errs {
			t.Errorf("%q of %d: errors %d, want %d", c.in, c.size, got, c.errs)
		}
		if l.String() != c.in {
			t.Errorf("%q prints as %q", c.in, l.String())
		}
	}
}

func TestCustomers(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"acme.yaml", "globex.yml", "initech.yaml"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o600)
	}
	os.MkdirAll(filepath.Join(dir, "other"), 0o755)
	os.WriteFile(filepath.Join(dir, "other", "acme.yaml"), nil, 0o600)
	cs, err := Customers([]string{filepath.Join(dir, "*.y*ml")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cs {
		got = append(got, c.Name+"="+filepath.Base(c.Vars[0]))
	}
	if want := []string{"acme=acme.yaml", "globex=globex.yml", "initech=initech.yaml"}; !slices.Equal(got, want) {
		t.Errorf("customers %v, want %v", got, want)
	}
	for _, c := range []struct {
		files []string
		msg   string
	}{
		{[]string{filepath.Join(dir, "acme.yaml"), filepath.Join(dir, "other", "acme.yaml")}, "customer acme twice"},
		{[]string{filepath.Join(dir, "*.json")}, "no file matches"},
		{nil, "no customers"},
	} {
		_, err := Customers(c.files)
		if exitcode.Of(err) != exitcode.Invalid || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v: %v, want exit 2 and %q", c.files, err, c.msg)
		}
	}
}

func TestExitCode(t *testing.T) {
	for _, c := range []struct {
		outcomes []string
		want     int
	}{
		{[]string{OutcomeSucceeded, OutcomeSucceeded}, 0},
		{[]string{OutcomeSucceeded, OutcomeApproval}, 3},
		{[]string{OutcomeFailed, OutcomeApproval}, 1},
		{[]string{OutcomeSkipped, OutcomeSucceeded}, 1},
		{[]string{OutcomeRefused}, 1},
		{[]string{OutcomeInterrupt, OutcomeApproval}, 3},
		{[]string{OutcomeInterrupt, OutcomeNotStarted}, 130},
	} {
		if got := ExitCode(c.outcomes); got != c.want {
			t.Errorf("%v: %d, want %d", c.outcomes, got, c.want)
		}
	}
}

// An interrupted fleet (the first Ctrl-C: its context cancelled) stops its
// runs in flight, resumable, starts no new one, and exits 130; fleet resume
// then finishes every customer, each migrated exactly once.
func TestLocalFleetInterruptedThenResumed(t *testing.T) {
	f := newFixture(t, 4, "0.3")
	var files []string
	for _, c := range names("c", 5) {
		files = append(files, f.customer(t, c))
	}
	customers, err := Customers(files)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(f.dir, "fleet")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Once two runs have begun their work.
		for atoi(f.srv.QueryValue(t, f.db, `SELECT count(DISTINCT customer) FROM effects`)) < 2 {
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
	}()
	sum, err := Run(ctx, Options{Runbook: f.runbook, Customers: customers, Dir: dir, MaxConcurrency: mustLimit(t, "2")})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Code != exitcode.Interrupted {
		t.Errorf("code %d, want 130 (%v)", sum.Code, sum.Outcomes)
	}
	interrupted, notStarted := 0, 0
	for _, o := range sum.Outcomes {
		switch o {
		case OutcomeInterrupt:
			interrupted++
		case OutcomeNotStarted:
			notStarted++
		}
	}
	if interrupted != 2 || notStarted != 3 {
		t.Errorf("outcomes %v: want 2 interrupted, 3 not started", sum.Outcomes)
	}
	sum, err = Resume(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Code != exitcode.OK || len(sum.Outcomes) != 5 {
		t.Errorf("resume: code %d, outcomes %v", sum.Code, sum.Outcomes)
	}
	counts, bad := f.effects(t)
	if len(counts) != 5 || len(bad) > 0 {
		t.Errorf("effects %v; not once: %v", counts, bad)
	}
	verifyLogs(t, dir, names("c", 5))
}
