package fleet

import (
	"context"
	"errors"
	"fmt"
	"github.com/runbookhq/runbook/internal/atomicfile"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/shellword"
)

// Options configure a fleet run or resume on this machine.
type Options struct {
	// Runbook is the runbook as given: a file or builtin:NAME.
	Runbook string
	// Customers are the fleet's members (Customers); resume reads them from
	// the fleet's directory.
	Customers []Customer
	// Vars are NAME=VALUE params for every customer (never a secret).
	Vars []string
	// Dir keeps the fleet's files; "" for DefaultDir of the runbook's name.
	Dir string
	// MaxConcurrency and MaxErrors are the rate control (docs/fleet.md).
	MaxConcurrency, MaxErrors Limit
	// Fresh archives unfinished runs and starts anew.
	Fresh bool
	// Only restricts resume to these customers.
	Only []string
	// Options every run gets (executor.Options).
	Yes                        bool
	Approve, Rerun, TookEffect []string
	Operator, Ticket, Version  string
	// Out receives the fleet's progress: a line as each run starts and ends.
	Out io.Writer
}

// Summary is how a fleet pass ended.
type Summary struct {
	Dir      string
	Manifest *Manifest
	// Outcomes by customer, for the customers of this pass.
	Outcomes map[string]string
	// Code is the fleet's exit code (ExitCode).
	Code int
}

// Err is the summary as an error carrying its exit code; nil when every run
// succeeded.
func (s *Summary) Err() error {
	if s.Code == exitcode.OK {
		return nil
	}
	counts := map[string]int{}
	for _, o := range s.Outcomes {
		counts[o]++
	}
	var parts []string
	for _, o := range []string{OutcomeSucceeded, OutcomeFailed, OutcomeRefused, OutcomeInvalid, OutcomeError, OutcomeApproval, OutcomeInterrupt, OutcomeSkipped, OutcomeNotStarted} {
		if counts[o] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[o], o))
		}
	}
	return exitcode.With(s.Code, fmt.Errorf("fleet %s: %s of %d runs (runbook fleet status --dir %s)", s.Manifest.Name, strings.Join(parts, ", "), len(s.Outcomes), shellword.Quote(s.Dir)))
}

// Run starts a fleet on this machine: one run per customer, each its own
// goroutine calling executor.Run with its own state, audit log and report
// in the fleet's directory, at most MaxConcurrency at a time; once the
// errors exceed MaxErrors no new run starts and the runs in flight finish.
//
// A fleet whose directory holds unfinished runs is refused (exit 4; resume
// it, or Fresh archives them); finished runs' states are archived first, so
// that every state in the directory belongs to this pass.
func Run(ctx context.Context, o Options) (*Summary, error) {
	o.MaxConcurrency, o.MaxErrors = withDefaults(o.MaxConcurrency, o.MaxErrors)
	members, err := load(o.Runbook, o.Vars, o.Customers, false)
	if err != nil {
		return nil, err
	}
	name := members[0].rb.Name
	dir := o.Dir
	if dir == "" {
		dir = DefaultDir(name)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := archiveFinished(dir, members, o.Fresh); err != nil {
		return nil, err
	}
	m := &Manifest{Format: 1, Runbook: o.Runbook, Name: name, Vars: o.Vars, MaxConcurrency: o.MaxConcurrency.String(),
		MaxErrors: o.MaxErrors.String(), Started: time.Now().UTC(), Customers: o.Customers, Results: map[string]*Result{}}
	if err := m.write(dir); err != nil {
		return nil, exitcode.With(exitcode.Environment, fmt.Errorf("fleet %s: %w", dir, err))
	}
	f := &local{o: o, dir: dir, m: m}
	return f.pass(ctx, members, map[string]bool{})
}

// Resume continues a fleet on this machine: every run that did not succeed
// is resumed (failed, paused for approval, interrupted, or left unfinished
// by a process that died), and every customer whose run never started
// starts, under the fleet's rate control with its errors counted afresh.
// Runs that succeeded are left alone.
func Resume(ctx context.Context, o Options) (*Summary, error) {
	dir := o.Dir
	if dir == "" {
		return nil, exitcode.With(exitcode.Invalid, errors.New("fleet resume: no fleet directory"))
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	if m.Queue != "" {
		return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("the fleet in %s runs through a queue: resume it with --queue", dir))
	}
	customers := m.Customers
	if len(o.Only) > 0 {
		customers = nil
		for _, name := range o.Only {
			c, ok := findCustomer(m.Customers, name)
			if !ok {
				return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("no customer %s in the fleet %s", name, m.Name))
			}
			customers = append(customers, c)
		}
	}
	members, err := load(m.Runbook, m.Vars, customers, false)
	if err != nil {
		return nil, err
	}
	resume := map[string]bool{}
	var todo []*member
	for _, mb := range members {
		st, err := executor.ReadStatus(executor.NewFileStore(StatePath(dir, mb.Name)))
		switch {
		case err != nil && exitcode.Of(err) == exitcode.Refused:
			return nil, fmt.Errorf("customer %s: %w", mb.Name, err)
		case err != nil: // no state: the run never started
		case st.Outcome == OutcomeSucceeded:
			continue
		default:
			resume[mb.Name] = true
		}
		todo = append(todo, mb)
	}
	// The fleet's rate control, unless this resume gives its own.
	if !o.MaxConcurrency.IsSet() {
		o.MaxConcurrency, _ = ParseLimit(m.MaxConcurrency)
	}
	if !o.MaxErrors.IsSet() {
		o.MaxErrors, _ = ParseLimit(m.MaxErrors)
	}
	f := &local{o: o, dir: dir, m: m}
	if len(todo) == 0 {
		fmt.Fprintf(o.Out, "fleet %s: every run succeeded; nothing to resume\n", m.Name)
	}
	return f.pass(ctx, todo, resume)
}

func findCustomer(cs []Customer, name string) (Customer, bool) {
	for _, c := range cs {
		if c.Name == name {
			return c, true
		}
	}
	return Customer{}, false
}

// archiveFinished refuses a fleet whose directory holds an unfinished run
// (unless fresh) and moves finished runs' states aside, as a new run of
// each would (executor.Run archives a finished state).
func archiveFinished(dir string, members []*member, fresh bool) error {
	var unfinished []string
	for _, mb := range members {
		st, err := executor.ReadStatus(executor.NewFileStore(StatePath(dir, mb.Name)))
		if err != nil {
			if exitcode.Of(err) == exitcode.Refused {
				return fmt.Errorf("customer %s: %w", mb.Name, err)
			}
			continue
		}
		if st.Outcome != OutcomeSucceeded && !fresh {
			unfinished = append(unfinished, fmt.Sprintf("%s (%s)", mb.Name, st.Outcome))
		}
	}
	if len(unfinished) > 0 {
		return exitcode.With(exitcode.Refused, fmt.Errorf("the fleet in %s has unfinished runs: %s; continue them with runbook fleet resume --dir %s, or start over with --fresh (their states are archived)",
			dir, strings.Join(unfinished, ", "), shellword.Quote(dir)))
	}
	for _, mb := range members {
		store := executor.NewFileStore(StatePath(dir, mb.Name))
		st, err := executor.ReadStatus(store)
		if err != nil {
			continue
		}
		if err := store.Lock(); err != nil {
			return fmt.Errorf("customer %s: %w", mb.Name, err)
		}
		_, err = store.Archive(st.Started.Format("20060102T150405Z"))
		store.Close()
		if err != nil {
			return exitcode.With(exitcode.Environment, fmt.Errorf("customer %s: archiving its last run: %w", mb.Name, err))
		}
	}
	return nil
}

// local drives one pass of a fleet on this machine.
type local struct {
	o   Options
	dir string
	m   *Manifest

	mu       sync.Mutex
	running  int
	errors   int
	outcomes map[string]string
	wake     chan struct{}
}

// pass runs members under the rate control; resume names those whose run
// is resumed rather than started.
func (f *local) pass(ctx context.Context, members []*member, resume map[string]bool) (*Summary, error) {
	size := len(f.m.Customers)
	conc, maxErrs := f.o.MaxConcurrency.Concurrency(size), f.o.MaxErrors.Errors(size)
	f.outcomes = map[string]string{}
	f.wake = make(chan struct{}, 1)
	out := f.o.Out
	if out == nil {
		out = io.Discard
	}
	if len(members) > 0 {
		fmt.Fprintf(out, "fleet %s: %d runs, at most %d at a time, no new run once more than %d fail; files in %s\n",
			f.m.Name, len(members), conc, maxErrs, f.dir)
	}
	var wg sync.WaitGroup
	stopped := ""
	for _, mb := range members {
		// Wait for a free slot (or the end of the fleet).
		for {
			f.mu.Lock()
			free, errs := f.running < conc, f.errors
			f.mu.Unlock()
			if errs > maxErrs {
				stopped = fmt.Sprintf("more than %d runs failed", maxErrs)
				break
			}
			if ctx.Err() != nil {
				stopped = "interrupted"
				break
			}
			if free {
				break
			}
			select {
			case <-f.wake:
			case <-ctx.Done():
			}
		}
		if stopped != "" {
			break
		}
		f.mu.Lock()
		f.running++
		f.outcomes[mb.Name] = OutcomeRunning
		f.mu.Unlock()
		wg.Add(1)
		go func(mb *member) {
			defer wg.Done()
			res := f.one(ctx, mb, resume[mb.Name])
			f.mu.Lock()
			f.running--
			f.outcomes[mb.Name] = res.Outcome
			if IsError(res.Outcome) {
				f.errors++
			}
			f.m.Results[mb.Name] = res
			werr := f.m.write(f.dir)
			f.mu.Unlock()
			if werr != nil {
				fmt.Fprintf(out, "%s: warning: fleet record %s: %v\n", mb.Name, f.dir, werr)
			}
			f.say(mb.Name, res)
			select {
			case f.wake <- struct{}{}:
			default:
			}
		}(mb)
	}
	wg.Wait()
	for _, mb := range members {
		if _, ok := f.outcomes[mb.Name]; ok {
			continue
		}
		o := OutcomeNotStarted
		if !strings.HasPrefix(stopped, "interrupted") {
			o = OutcomeSkipped
		}
		f.outcomes[mb.Name] = o
		f.m.Results[mb.Name] = &Result{Outcome: o, Error: "not started: " + stopped}
		fmt.Fprintf(out, "%s: not started: %s\n", mb.Name, stopped)
	}
	if err := f.m.write(f.dir); err != nil {
		return nil, exitcode.With(exitcode.Environment, fmt.Errorf("fleet %s: %w", f.dir, err))
	}
	var list []string
	for _, o := range f.outcomes {
		list = append(list, o)
	}
	s := &Summary{Dir: f.dir, Manifest: f.m, Outcomes: f.outcomes, Code: ExitCode(list)}
	if ctx.Err() != nil && s.Code != exitcode.StepFailed {
		s.Code = exitcode.Interrupted
	}
	return s, nil
}

// say prints a run's end.
func (f *local) say(name string, r *Result) {
	out := f.o.Out
	if out == nil {
		return
	}
	line := fmt.Sprintf("%s: %s in %s", name, r.Outcome, r.Ended.Sub(r.Started).Round(10*time.Millisecond))
	if r.Error != "" {
		line += ": " + Brief(r.Error)
	}
	f.mu.Lock()
	fmt.Fprintln(out, line)
	f.mu.Unlock()
}

// one runs (or resumes) one customer's run and writes its report.
func (f *local) one(ctx context.Context, mb *member, resume bool) *Result {
	started := time.Now().UTC()
	state, logPath := StatePath(f.dir, mb.Name), LogPath(f.dir, mb.Name)
	o := executor.Options{
		Runbook: mb.rb, Values: mb.vals, StatePath: state, LogPath: logPath, Resume: resume,
		Fresh: f.o.Fresh && !resume, Yes: f.o.Yes, Approve: f.o.Approve, Rerun: f.o.Rerun, TookEffect: f.o.TookEffect,
		Operator: f.o.Operator, Ticket: f.o.Ticket, Version: f.o.Version,
		Command: resumeCommand(f.dir, mb.Name),
	}
	res, err := executor.Run(ctx, o)
	r := &Result{Outcome: outcomeOf(res, err), Exit: exitcode.Of(err), Started: started, Ended: time.Now().UTC()}
	if res != nil {
		r.RunID = res.RunID
	}
	if err != nil {
		// Masked by the run already where it ran; errors from before the
		// run began are masked here.
		r.Error = executor.Secrets(mb.rb, mb.vals).String(err.Error())
	}
	if err := writeReport(nil, state, logPath, ReportPath(f.dir, mb.Name)); err != nil && r.Error == "" {
		r.Error = "report: " + err.Error()
	}
	return r
}

// resumeCommand is what an operator types to continue one customer's run.
func resumeCommand(dir, customer string) string {
	return "runbook fleet resume --dir " + shellword.Quote(dir) + " --customer " + shellword.Quote(customer)
}

// writeReport writes a run's Markdown report beside its state; nothing when
// the run left no state (it never began).
func writeReport(store executor.Store, state, logPath, path string) error {
	if store == nil {
		if _, err := os.Stat(state); err != nil {
			return nil
		}
	}
	if _, err := os.Stat(logPath); err != nil {
		logPath = ""
	}
	rep, err := executor.BuildReport(executor.ReportOptions{Store: store, StatePath: state, LogPath: logPath})
	if err != nil {
		return err
	}
	var b strings.Builder
	if err := rep.WriteMarkdown(&b); err != nil {
		return err
	}
	return atomicfile.Write(path, []byte(b.String()))
}
