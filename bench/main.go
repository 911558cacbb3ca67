// Command bench is runbook's performance suite: the goals P1–P6 of
// docs/performance.md, each measured against its yardstick (psql, bash,
// pgcopydb), and F1, the fleet queue's overhead per run (bench/fleet.go).
//
//	make bench            # go run ./bench
//	make bench QUICK=1    # go run ./bench -quick: smaller sizes, fewer rounds
//
// It builds the runbook binary (go build ./cmd/runbook), starts two throwaway
// PostgreSQL clusters of its own (initdb, 127.0.0.1, a free port) with
// PostgreSQL's default durability (fsync, synchronous_commit and
// full_page_writes on) — never the server a developer runs on 5432 — and runs
// every command as a real process, as a user would: runbook with
// --log-format json (standard output thrown away) and its state in a fresh
// temporary directory for every run; psql, bash, pg_dump and pg_restore
// likewise. The commands a goal compares run in turn, several rounds, in an
// order that rotates every round; each ratio is taken round by round (the two
// runs were back to back), and every figure is printed as its median with the
// minimum and maximum. The clusters are removed at the end (and by a
// watchdog if the suite is killed).
//
// Besides the goals' commands, P1 and P3 run bench/floor, the least any client
// can do to commit each statement exactly once the way runbook does (a
// durable record of the transaction id before every COMMIT): the ratio of
// runbook to it is runbook's own cost, the ratio of it to psql the
// protocol's. Flags choose the goals (-only P1,P3), the rounds (-runs), the
// sizes (-p1-tables, -p2-mb, -p4-statements, -p6-mb); -audit=false leaves out the
// runs with an audit log (--log FILE); -v prints every run.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

type harness struct {
	work    string // the suite's temporary directory
	bin     string // the runbook binary
	floor   string // the exactly-once floor client (bench/floor)
	a, b    *cluster
	verbose bool
	runs    int
	results []result
	seq     int
}

// result is one row of the report.
type result struct {
	goal   string
	what   string
	value  string // the measure: median [min–max]
	vs     string // the yardstick's measure
	ratio  string // or another derived figure
	target string
	met    *bool // nil: for information
}

func main() {
	quick := flag.Bool("quick", false, "smaller sizes and fewer rounds: a check that the suite works, not a measurement of the goals")
	runs := flag.Int("runs", 0, "rounds per comparison (default 5; 3 with -quick)")
	only := flag.String("only", "", "comma-separated goals to run (P1,P2,P3,P4,P5,P6,F1); default all")
	f1Runs := flag.Int("f1-runs", 50, "F1: runs of the fleet, through the queue and locally")
	p1Tables := flag.Int("p1-tables", 0, "P1: tables, one generated statement each (default 10000; 2000 with -quick)")
	p2MB := flag.Int("p2-mb", 0, "P2: size of the database piped through pg_dump | pg_restore, in MB (default 1024; 100 with -quick)")
	p4Stmts := flag.Int("p4-statements", 0, "P4: generated statements (default 1000000; 200000 with -quick)")
	p6MB := flag.Int("p6-mb", 0, "P6: size of the database copied, in MB (default 1024; 100 with -quick)")
	p6Split := flag.String("p6-split", "", "P6: the copy's split_larger_than (default 64MB; 8MB with -quick)")
	p6Resumes := flag.Int("p6-resumes", 0, "P6: copies killed at 70% and resumed (default 3; 1 with -quick)")
	audit := flag.Bool("audit", true, "also measure runbook with an audit log (--log FILE) where it matters (P1 each, P3); -audit=false to skip")
	bin := flag.String("bin", "", "use this runbook binary instead of building one")
	verbose := flag.Bool("v", false, "print every run")
	flag.Parse()

	def := func(v *int, full, q int) {
		if *v == 0 {
			*v = full
			if *quick {
				*v = q
			}
		}
	}
	def(runs, 5, 3)
	def(p1Tables, 10000, 2000)
	def(p2MB, 1024, 100)
	def(p4Stmts, 1000000, 200000)
	def(p6MB, 1024, 100)
	def(p6Resumes, 3, 1)
	if *p6Split == "" {
		*p6Split = map[bool]string{false: "64MB", true: "8MB"}[*quick]
	}
	goals := map[string]bool{}
	for _, g := range strings.Split(strings.ToUpper(*only), ",") {
		if g = strings.TrimSpace(g); g != "" {
			goals[g] = true
		}
	}
	want := func(g string) bool { return len(goals) == 0 || goals[g] }

	h := &harness{verbose: *verbose, runs: *runs}
	code := 0
	if err := h.main(*bin, func() error {
		if want("P1") {
			if err := h.p1(*p1Tables, *audit); err != nil {
				return err
			}
		}
		if want("P2") {
			if err := h.p2(*p2MB); err != nil {
				return err
			}
		}
		if want("P3") {
			if err := h.p3(1000, *audit); err != nil {
				return err
			}
		}
		if want("P4") {
			if err := h.p4(*p4Stmts); err != nil {
				return err
			}
		}
		if want("P5") {
			if err := h.p5(1000); err != nil {
				return err
			}
		}
		if want("P6") {
			if err := h.p6(*p6MB, *p6Split, *p6Resumes); err != nil {
				return err
			}
		}
		if want("F1") {
			if err := h.fleet(*f1Runs); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		code = 1
	}
	h.report(*quick)
	os.Exit(code)
}

// main prepares the binary and the clusters, runs the goals and cleans up.
func (h *harness) main(bin string, goals func() error) error {
	var err error
	if h.work, err = os.MkdirTemp("", "runbook-bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(h.work)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "bench: interrupted; stopping the clusters")
		h.stopClusters()
		os.RemoveAll(h.work)
		os.Exit(130)
	}()
	if bin == "" {
		h.bin = filepath.Join(h.work, "runbook")
		fmt.Printf("building %s\n", h.bin)
		if out, err := exec.Command("go", "build", "-o", h.bin, "./cmd/runbook").CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/runbook (run from the repository's root): %v\n%s", err, out)
		}
	} else if h.bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	h.floor = filepath.Join(h.work, "floor")
	if out, err := exec.Command("go", "build", "-o", h.floor, "./bench/floor").CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./bench/floor: %v\n%s", err, out)
	}
	// Enough lock slots for 10,000 ALTER TABLE in one transaction (the
	// PL/pgSQL floor of P1 and generate's transaction: all).
	settings := [][2]string{{"max_locks_per_transaction", "256"}}
	fmt.Println("starting two throwaway clusters (fsync on)")
	if h.a, err = startCluster("a", settings); err != nil {
		return err
	}
	defer h.stopClusters()
	if h.b, err = startCluster("b", settings); err != nil {
		return err
	}
	h.machine()
	return goals()
}

func (h *harness) stopClusters() {
	for _, c := range []*cluster{h.a, h.b} {
		if c != nil {
			c.Stop()
		}
	}
}

// machine prints what the figures were measured on.
func (h *harness) machine() {
	cpu := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(l[strings.Index(l, ":")+1:])
				break
			}
		}
	}
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.TrimPrefix(strings.Split(string(b), "\n")[0], "MemTotal:"), "%d", &kb)
		mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
	}
	disk := "?"
	if out, err := exec.Command("df", "-hT", h.work).Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		f := strings.Fields(lines[len(lines)-1])
		if len(f) >= 3 {
			disk = f[0] + " (" + f[1] + ", " + f[2] + ")"
		}
	}
	fsync, _ := h.a.value("postgres", "SELECT current_setting('fsync') || ', synchronous_commit ' || current_setting('synchronous_commit') || ', full_page_writes ' || current_setting('full_page_writes')")
	rev, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	dirty := ""
	if out, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); len(bytes.TrimSpace(out)) > 0 {
		dirty = " (with uncommitted changes)"
	}
	fmt.Printf("machine: %s, %d cores, %s RAM; disk %s\n", cpu, runtime.NumCPU(), mem, disk)
	fmt.Printf("PostgreSQL %s, fsync %s; runbook %s%s, %s\n", h.a.version(), fsync, strings.TrimSpace(string(rev)), dirty, runtime.Version())
	fmt.Printf("calibration: %s\n", calibration(h.work))
	fmt.Printf("rounds per comparison: %d; order rotates every round\n", h.runs)
}

// stateDir returns a fresh directory for one run's state.
func (h *harness) stateDir() string {
	h.seq++
	d := filepath.Join(h.work, "runs", fmt.Sprintf("%04d", h.seq))
	os.MkdirAll(d, 0o700)
	return d
}

// runbook returns the command `runbook run FILE ARGS…` with its state in a
// fresh directory (set by the before hook it returns).
func (h *harness) runbook(file string, args ...string) (*command, func() error) {
	c := &command{}
	base := append([]string{h.bin, "run", filepath.Join(h.work, file)}, args...)
	before := func() error {
		c.state = filepath.Join(h.stateDir(), "state.json")
		c.argv = append(append([]string(nil), base...), "--state", c.state, "--log-format", "json")
		return nil
	}
	before()
	return c, before
}

// outputs returns a step's outputs as the state of the command's last run
// recorded them.
func outputs(c *command, step string) (map[string]any, error) {
	b, err := os.ReadFile(c.state)
	if err != nil {
		return nil, err
	}
	var st struct {
		Outcome string `json:"outcome"`
		Steps   []struct {
			ID      string         `json:"id"`
			Outputs map[string]any `json:"outputs"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	for _, s := range st.Steps {
		if s.ID == step && st.Outcome == "succeeded" {
			return s.Outputs, nil
		}
	}
	return nil, fmt.Errorf("state %s: no outputs of %s (outcome %q)", c.state, step, st.Outcome)
}

func (h *harness) write(name, content string) error {
	return os.WriteFile(filepath.Join(h.work, name), []byte(content), 0o644)
}

func (h *harness) add(r result) { h.results = append(h.results, r) }

func boolp(b bool) *bool { return &b }

// report prints the table of results.
func (h *harness) report(quick bool) {
	if len(h.results) == 0 {
		return
	}
	fmt.Println()
	if quick {
		fmt.Println("QUICK mode: sizes below the goals'; the verdicts are indicative only.")
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "goal\twhat\trunbook\tyardstick\tratio / figure\ttarget\tverdict")
	for _, r := range h.results {
		verdict := "(info)"
		if r.met != nil {
			verdict = map[bool]string{true: "met", false: "NOT MET"}[*r.met]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.goal, r.what, r.value, r.vs, r.ratio, r.target, verdict)
	}
	tw.Flush()
	fmt.Println()
	fmt.Println("Markdown:")
	fmt.Println()
	fmt.Println("| goal | what | runbook | yardstick | ratio / figure | target | verdict |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range h.results {
		verdict := "(info)"
		if r.met != nil {
			verdict = map[bool]string{true: "met", false: "**not met**"}[*r.met]
		}
		cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s |\n", r.goal, cell(r.what), r.value, r.vs, r.ratio, r.target, verdict)
	}
}

// section prints a goal's heading.
func section(format string, args ...any) {
	fmt.Printf("\n== %s  (%s)\n", fmt.Sprintf(format, args...), time.Now().Format("15:04:05"))
}
