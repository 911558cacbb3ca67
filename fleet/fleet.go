// Package fleet runs one runbook for many customers: one run per customer's
// vars file, each with its own state, audit log and report, under rate
// control (docs/fleet.md). A fleet runs on one machine (Run, Resume: the runs
// are goroutines of this process) or through a PostgreSQL queue that any
// number of workers take runs from (queue.go).
package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/runbookhq/runbook/internal/atomicfile"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/runbooks"
	"github.com/runbookhq/runbook/schema"
)

// Limit is a rate-control value: a number of runs, or a percentage of the
// fleet's size (--max-concurrency, --max-errors).
type Limit struct {
	N       int
	Percent bool
	set     bool // given (the zero Limit is "not given")
}

// IsSet reports whether the limit was given (ParseLimit).
func (l Limit) IsSet() bool { return l.set }

// ParseLimit reads "N" or "N%".
func ParseLimit(s string) (Limit, error) {
	t := strings.TrimSpace(s)
	pct := strings.HasSuffix(t, "%")
	n, err := strconv.Atoi(strings.TrimSuffix(t, "%"))
	if err != nil || n < 0 || (pct && n > 100) {
		return Limit{}, fmt.Errorf("%q is neither a number of runs (10) nor a percentage of the fleet (10%%)", s)
	}
	return Limit{N: n, Percent: pct, set: true}, nil
}

func (l Limit) String() string {
	if l.Percent {
		return strconv.Itoa(l.N) + "%"
	}
	return strconv.Itoa(l.N)
}

// Concurrency is the number of runs at once in a fleet of size: a
// percentage is rounded up, and at least one run goes at a time.
func (l Limit) Concurrency(size int) int {
	n := l.N
	if l.Percent {
		n = int(math.Ceil(float64(l.N) * float64(size) / 100))
	}
	return max(n, 1)
}

// Errors is the number of errors a fleet of size tolerates: a percentage is
// rounded down. No new run starts once the errors exceed it (the next error
// after that many stops the fleet).
func (l Limit) Errors(size int) int {
	if l.Percent {
		return l.N * size / 100
	}
	return l.N
}

// Defaults of the rate control, as in AWS Systems Manager: 50 runs at a
// time, and no new run after the first error.
const (
	DefaultMaxConcurrency = "50"
	DefaultMaxErrors      = "0"
)

// withDefaults fills in the limits not given.
func withDefaults(conc, errs Limit) (Limit, Limit) {
	if !conc.IsSet() {
		conc, _ = ParseLimit(DefaultMaxConcurrency)
	}
	if !errs.IsSet() {
		errs, _ = ParseLimit(DefaultMaxErrors)
	}
	return conc, errs
}

// Customer is one member of the fleet: named after its vars file.
type Customer struct {
	Name string `json:"name"`
	// Vars are its vars files, as given.
	Vars []string `json:"vars"`
}

// CustomerName is a vars file's base name without its extension.
func CustomerName(file string) string {
	base := filepath.Base(file)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// Customers makes the fleet's customers from vars files: one customer per
// file, named after it (CustomerName); a pattern with *, ? or [ is expanded
// (for shells that pass it as it is). Two files of the same name, a pattern
// that matches nothing, or no file at all is an error (exit 2).
func Customers(files []string) ([]Customer, error) {
	var out []Customer
	seen := map[string]string{}
	for _, f := range files {
		matches := []string{f}
		if strings.ContainsAny(f, "*?[") {
			m, err := filepath.Glob(f)
			if err != nil {
				return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("--vars %s: %w", f, err))
			}
			if len(m) == 0 {
				return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("--vars %s: no file matches", f))
			}
			sort.Strings(m)
			matches = m
		}
		for _, m := range matches {
			name := CustomerName(m)
			if !validName.MatchString(name) {
				return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("--vars %s: a customer is named after its vars file, and %q is not a name of letters, digits, dots, dashes and underscores", m, name))
			}
			if prev, ok := seen[name]; ok {
				if prev == m {
					continue
				}
				return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("customer %s twice: %s and %s (a customer is named after its vars file, without the extension)", name, prev, m))
			}
			seen[name] = m
			out = append(out, Customer{Name: name, Vars: []string{m}})
		}
	}
	if len(out) == 0 {
		return nil, exitcode.With(exitcode.Invalid, errors.New("no customers: give their vars files with --vars customers/*.yaml"))
	}
	return out, nil
}

// validName is a customer's name, or a fleet's id: it names files and a
// run's key in a control database.
var validName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$`)

// DefaultDir is where a fleet of the runbook named name keeps its files.
func DefaultDir(name string) string { return filepath.Join(".runbook", "fleet", name) }

// Paths of a customer's files in the fleet's directory.
func StatePath(dir, customer string) string  { return filepath.Join(dir, customer+".state.json") }
func LogPath(dir, customer string) string    { return filepath.Join(dir, customer+".audit.log") }
func ReportPath(dir, customer string) string { return filepath.Join(dir, customer+".report.md") }

// manifestName is the fleet's own record in its directory.
const manifestName = "fleet.json"

// Manifest is what a fleet's directory records of it (fleet.json): enough
// for status, resume and report to find every customer's run. It holds no
// secret: vars files by name, and only the non-secret --var values.
type Manifest struct {
	Format  int    `json:"format"`
	Runbook string `json:"runbook"`
	Name    string `json:"name"`
	// Vars are NAME=VALUE params given to every customer (never a secret).
	Vars           []string   `json:"vars,omitempty"`
	MaxConcurrency string     `json:"max_concurrency"`
	MaxErrors      string     `json:"max_errors"`
	Started        time.Time  `json:"started_at"`
	Customers      []Customer `json:"customers"`
	// Queue is set for a fleet run through a queue: its id there.
	Queue string `json:"queue_fleet,omitempty"`
	// Results are the fleet process's last word on each customer, for the
	// customers whose run has no state to tell (never started, refused
	// before it began).
	Results map[string]*Result `json:"results,omitempty"`
}

// Result is how one customer's run ended, as the fleet saw it.
type Result struct {
	Outcome string    `json:"outcome"`
	Exit    int       `json:"exit"`
	Error   string    `json:"error,omitempty"`
	RunID   string    `json:"run_id,omitempty"`
	Started time.Time `json:"started_at"`
	Ended   time.Time `json:"ended_at"`
}

// ReadManifest reads the fleet in dir.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("no fleet in %s (start one with runbook fleet run)", dir))
	}
	if err != nil {
		return nil, exitcode.With(exitcode.Environment, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, exitcode.With(exitcode.Refused, fmt.Errorf("%s: %w", filepath.Join(dir, manifestName), err))
	}
	if m.Format != 1 {
		return nil, exitcode.With(exitcode.Refused, fmt.Errorf("%s: format %d is not one this runbook reads", filepath.Join(dir, manifestName), m.Format))
	}
	if m.Results == nil {
		m.Results = map[string]*Result{}
	}
	return &m, nil
}

// write records the manifest atomically.
func (m *Manifest) write(dir string) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, manifestName), append(b, '\n'))
}

// lockDir takes the fleet's lock (DIR/fleet.lock, an flock that dies with
// its process): one fleet process at a time drives a fleet.
func lockDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, exitcode.With(exitcode.Environment, fmt.Errorf("fleet directory: %w", err))
	}
	f, err := os.OpenFile(filepath.Join(dir, "fleet.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, exitcode.With(exitcode.Environment, fmt.Errorf("fleet lock: %w", err))
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, exitcode.With(exitcode.Refused, fmt.Errorf("the fleet in %s is driven by another runbook process: wait for it to finish, or stop it", dir))
	}
	return f, nil
}

// member is a customer with its runbook loaded and its params resolved.
type member struct {
	Customer
	rb   *schema.Runbook
	vals schema.Values
}

// load loads the runbook once per customer (each run has its own copy) and
// resolves every customer's params before anything runs: a customer whose
// vars file does not resolve stops the fleet before its first run (exit 2).
// Secrets come from the vars files or the environment, never from --var.
func load(ref string, vars []string, customers []Customer, withoutSecrets bool) ([]*member, error) {
	rb, err := runbooks.Load(ref)
	if err != nil {
		return nil, err
	}
	for _, kv := range vars {
		name, _, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("--var %s: want NAME=VALUE", kv))
		}
		if p := rb.Params.Lookup(name); p != nil && p.Secret {
			return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("--var %s: %s is a secret param; a fleet takes secrets from each customer's vars file or the environment, never from the command line", name, name))
		}
	}
	var out []*member
	var errs []string
	for _, c := range customers {
		crb := rb
		if len(out) > 0 {
			// Each run gets a runbook of its own (nothing is shared between
			// concurrent runs).
			if crb, err = runbooks.Load(ref); err != nil {
				return nil, err
			}
		}
		vals, err := crb.ResolveParams(schema.ParamInputs{VarsFiles: c.Vars, Vars: vars, WithoutSecrets: withoutSecrets})
		if err != nil {
			errs = append(errs, fmt.Sprintf("customer %s: %v", c.Name, strings.ReplaceAll(err.Error(), "\n", "\n  ")))
			continue
		}
		out = append(out, &member{Customer: c, rb: crb, vals: vals})
	}
	if len(errs) > 0 {
		return nil, exitcode.With(exitcode.Invalid, errors.New(strings.Join(errs, "\n")))
	}
	return out, nil
}

// Outcomes of a customer's run as the fleet reports them: the state's
// (succeeded, failed, interrupted, approval-required, refused) and the
// fleet's own.
const (
	OutcomeSucceeded  = "succeeded"
	OutcomeFailed     = "failed"
	OutcomeApproval   = "approval-required"
	OutcomeInterrupt  = "interrupted"
	OutcomeRefused    = "refused"
	OutcomeInvalid    = "invalid"
	OutcomeError      = "error"       // runbook could not write its state or audit log
	OutcomeRunning    = "running"     // a process holds the run's lock
	OutcomeUnfinished = "unfinished"  // the state says the run is under way, and nobody holds it: its process died
	OutcomeNotStarted = "not-started" // no run yet
	OutcomeSkipped    = "skipped"     // not started: the fleet's errors exceeded --max-errors
)

// outcomeOf classifies how executor.Run ended.
func outcomeOf(res *executor.Result, err error) string {
	if err == nil {
		return OutcomeSucceeded
	}
	switch exitcode.Of(err) {
	case exitcode.Approval:
		return OutcomeApproval
	case exitcode.Interrupted:
		return OutcomeInterrupt
	case exitcode.Refused:
		return OutcomeRefused
	case exitcode.Invalid:
		return OutcomeInvalid
	case exitcode.Environment:
		return OutcomeError
	}
	if res != nil && res.Outcome != "" {
		return res.Outcome
	}
	return OutcomeFailed
}

// IsError reports whether an outcome counts against --max-errors: every
// end but success, a pause for approval and an interrupt.
func IsError(outcome string) bool {
	switch outcome {
	case OutcomeSucceeded, OutcomeApproval, OutcomeInterrupt, OutcomeRunning, OutcomeUnfinished, OutcomeNotStarted, OutcomeSkipped, "":
		return false
	}
	return true
}

// ExitCode is the fleet's exit code from its customers' outcomes
// (docs/cli.md): 1 when a run ended in error or was skipped for the
// fleet's errors, else 3 when one awaits approval, else 130 when one was
// interrupted or is unfinished, else 0.
func ExitCode(outcomes []string) int {
	code := exitcode.OK
	rank := map[int]int{exitcode.OK: 0, exitcode.Interrupted: 1, exitcode.Approval: 2, exitcode.StepFailed: 3}
	for _, o := range outcomes {
		c := exitcode.OK
		switch {
		case IsError(o) || o == OutcomeSkipped:
			c = exitcode.StepFailed
		case o == OutcomeApproval:
			c = exitcode.Approval
		case o == OutcomeInterrupt || o == OutcomeUnfinished || o == OutcomeNotStarted || o == OutcomeRunning:
			c = exitcode.Interrupted
		}
		if rank[c] > rank[code] {
			code = c
		}
	}
	return code
}
