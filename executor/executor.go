// Package executor runs a loaded runbook: step order, conditions, retries and
// timeouts, always-steps, connections and the advisory lock, the durable state
// and resume, the event log, and signals. It is a library; cmd/runbook is one
// face of it.
package executor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/internal/console"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/redact"
	"github.com/runbookhq/runbook/internal/textdiff"
	"github.com/runbookhq/runbook/schema"
)

const timeoutClose = 5 * time.Second

// Options configure a run or a resume.
type Options struct {
	Runbook *schema.Runbook
	Values  schema.Values
	// Store keeps the run's state; nil for the one StatePath names.
	Store Store
	// StatePath is the state when Store is nil: a file, or a control
	// database's URL; "" derives one (OpenStore).
	StatePath string
	// LogPath is the audit log (JSON lines, appended); "" for none.
	LogPath string
	// Resume continues the run recorded in the state.
	Resume bool
	// Fresh archives an unfinished state and starts anew.
	Fresh bool
	// Yes approves every confirm step; Approve approves the named ones.
	Yes     bool
	Approve []string
	// Reject rejects the confirm step of that id when the run reaches it,
	// for RejectReason (resume --reject ID --reason TEXT): the run ends
	// rejected (exit 6) after its always steps.
	Reject       string
	RejectReason string
	// Rerun names interrupted non-transactional steps that resume may run again.
	Rerun []string
	// TookEffect names steps whose work in doubt the operator checked and
	// found done (resume --took-effect): it is recorded as committed.
	TookEffect []string
	Operator   string
	Ticket     string
	// From starts at a step; Only runs just the named steps.
	From string
	Only []string
	// Console receives the event stream: human on a terminal, JSON lines
	// otherwise (LogFormat "text" or "json" overrides).
	Console   io.Writer
	LogFormat string
	Terminal  bool
	// Verbose shows every event's details on the human console: statement
	// texts, notices, outputs, child output (the JSON console and the audit
	// log always have them).
	Verbose bool
	// Prompt reads the operator's answer to a confirm step; nil when there is
	// no terminal to ask on.
	Prompt  func(question string) (string, error)
	Version string
	// Command is how the operator invoked runbook, used to print the exact
	// command that resumes (without secrets).
	Command string
	// PlanPath is a sealed plan file (run --plan, docs/plan.md "Sealed
	// plans"): the run executes exactly that plan, or refuses. A resume
	// runs the plan its state keeps.
	PlanPath string

	plan *SealedPlan // the plan file's content, checked
}

// Result says how a run ended.
type Result struct {
	RunID     string
	StatePath string
	Outcome   string
	// AlreadySucceeded is set when a resume found that the run had already
	// succeeded (a kill after its last record, say): nothing ran, and Ended
	// is when it ended.
	AlreadySucceeded bool
	Ended            time.Time
	// Shown is set when the human console showed the run's end: its error
	// and the command that resumes need not be printed again.
	Shown bool
}

// Runner executes one run.
type runner struct {
	o  Options
	rb *schema.Runbook
	st *State
	// sessions are this invocation's sessions and the last one's (sessions.go).
	sessions *sessions
	red      *redact.Redactor
	log      zerolog.Logger // the JSON lines: console and audit log
	human    *console.Console
	conns    *conns
	env      *schema.Env
	dir      string
	audit    *auditWriter
	// paused is the confirm step the run paused at.
	paused string
	// plan is the sealed plan the run executes; nil for none.
	plan *SealedPlan
}

// Run runs (or resumes) a runbook and returns how it ended. The error carries
// the exit code of docs/cli.md (internal/exitcode).
func Run(ctx context.Context, o Options) (*Result, error) {
	rb := o.Runbook
	red := Secrets(rb, o.Values)
	env, _, urls, err := staticEnv(rb, o.Values, red)
	if err != nil {
		return nil, err
	}
	if o.Operator == "" {
		o.Operator = osUser()
	}
	store := o.Store
	if store == nil {
		if store, err = OpenStore(o.StatePath, rb, o.Values); err != nil {
			return nil, err
		}
	}
	if s, ok := store.(secretStore); ok {
		red.Add(s.Secrets()...)
	}
	path := store.Where()
	if err := checkSelection(rb, o); err != nil {
		return nil, err
	}
	// Password files a killed runbook left behind (passfile.go).
	sweepPassDirs(os.TempDir())

	if err := store.Lock(); err != nil {
		return nil, envError(err)
	}
	// The audit log is opened before the state changes: a log that cannot be
	// appended to (locked, or not a chain) leaves the state as it was.
	var audit *auditWriter
	if o.LogPath != "" {
		if audit, err = openAudit(o.LogPath); err != nil {
			store.Close()
			return nil, envError(err)
		}
	}
	if o.PlanPath != "" && !o.Resume {
		if o.plan, err = LoadSealedPlan(o.PlanPath); err == nil {
			if err = o.plan.check(o.PlanPath, rb, o.Values); err == nil {
				err = alreadyApplied(store, o.PlanPath, o.plan)
			}
		}
		if err != nil {
			store.Close()
			if audit != nil {
				audit.f.Close()
			}
			return nil, red.Error(err)
		}
	}
	st, err := prepareState(store, rb, o)
	if err == nil && o.Resume && st.PlanCopy != "" {
		if o.plan, err = loadPlanCopy(st); err == nil {
			o.PlanPath = st.PlanFile
			err = o.plan.check(st.PlanFile, rb, o.Values)
		}
		if err != nil {
			st.close()
			if audit != nil {
				audit.f.Close()
			}
			return nil, red.Error(err)
		}
	}
	if err != nil {
		store.Close()
		if audit != nil {
			audit.f.Close()
		}
		var done *finishedError
		if errors.As(err, &done) {
			return &Result{RunID: done.st.RunID, StatePath: path, Outcome: done.st.Outcome, AlreadySucceeded: true, Ended: done.ended()}, nil
		}
		return nil, envError(err)
	}
	if s, ok := store.(runStore); ok {
		s.SetRun(st.RunID)
	}
	if s, ok := store.(losingStore); ok {
		// A store that loses its lock stops the run: another process may
		// take it now.
		var stop context.CancelFunc
		ctx, stop = stopOnLost(ctx, s)
		defer stop()
	}
	if o.Resume {
		// The run's selection holds for its resumes: a step --from or --only
		// left out is not run by resume either.
		o.From, o.Only = st.From, st.Only
	}
	r := &runner{o: o, rb: rb, st: st, red: red, env: env, audit: audit, plan: o.plan}
	if !strings.HasPrefix(rb.File, "builtin:") {
		r.dir = filepath.Dir(rb.File)
	}
	if err := r.setupLog(); err != nil {
		st.close()
		return nil, err
	}
	defer r.closeLog()
	env.Run = schema.RunInfo{ID: st.RunID, Operator: o.Operator, StartedAt: st.Started.Format(time.RFC3339)}
	app := fmt.Sprintf("runbook/%s/%s", rb.Name, st.RunID)
	if len(app) > 63 {
		app = app[:63]
	}
	r.conns = newConns(rb, urls, app, r.emit, red)
	r.conns.identify = r.identify
	r.sessions, r.conns.opened = newSessions(st), r.opened
	for name, u := range urls {
		if info, err := ParseConnInfo(u); err == nil {
			env.Conn[name] = info
		}
	}

	res := &Result{RunID: st.RunID, StatePath: path}
	runErr := r.run(ctx)
	r.conns.close()
	res.Outcome, res.Shown = st.Outcome, r.human != nil
	if s, ok := store.(losingStore); ok && s.LostErr() != nil {
		runErr = exitcode.With(exitcode.Environment, errors.Join(s.LostErr(), runErr))
		res.Shown = false // not what the console showed
	}
	if cerr := st.close(); cerr != nil && runErr == nil {
		runErr = fmt.Errorf("state %s: %w", path, cerr)
		res.Shown = false // after the run's end
	}
	return res, runErr
}

// prepareState loads or creates the state for a run or a resume.
func prepareState(store Store, rb *schema.Runbook, o Options) (*State, error) {
	path := store.Where()
	old, err := loadState(store)
	if err != nil {
		return nil, exitcode.With(exitcode.Refused, err)
	}
	resumeCmd := resumeCommand(o, path)
	switch {
	case o.Resume && old == nil:
		return nil, exitcode.With(exitcode.Refused, fmt.Errorf("nothing to resume: no state at %s (start with runbook run)", path))
	case o.Resume:
		if err := checkResume(old, rb, o); err != nil {
			return nil, err
		}
		// A new snapshot (of the current format) and an empty journal.
		if err := old.create(); err != nil {
			return nil, err
		}
		for id := range alwaysAgain(old, rb) {
			// Clean-up steps run afresh: nothing of their last run counts.
			if err := old.update(id, false, func(s *StepState) { s.Status, s.Attempts = Pending, 0 }, resetUnits(old.step(id))); err != nil {
				return nil, err
			}
		}
		return old, old.write(&record{Reopen: &reopenRecord{At: time.Now().UTC()}}, true)
	case old != nil && old.Outcome == "rejected" && !o.Fresh:
		return nil, exitcode.With(exitcode.Refused, fmt.Errorf("state %s holds the run %s, which was rejected (%s); start over with --fresh (the old state is archived)",
			path, old.RunID, old.rejection()))
	case old != nil && old.Unfinished() && !o.Fresh:
		return nil, exitcode.With(exitcode.Refused, fmt.Errorf("state %s holds an unfinished run (%s, started %s by %s); continue it with:\n  %s\nor start over with --fresh (the old state is archived)",
			path, old.RunID, old.Started.Format(time.RFC3339), old.Operator, resumeCmd))
	case old != nil:
		if _, err := store.Archive(old.Started.Format("20060102T150405Z")); err != nil {
			return nil, fmt.Errorf("state %s: archiving the last run: %w", path, err)
		}
	}
	st := newState(store, newRunID(), o.Operator, rb, o.Values)
	st.From, st.Only = o.From, o.Only
	// The runbook as it ran, so that a refused resume can show what changed.
	ref, err := store.PutBlob("runbook.yaml", func(w io.Writer) error { _, err := w.Write(rb.Source); return err })
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	st.RunbookCopy = ref
	if o.plan != nil {
		if st.PlanCopy, err = putPlan(store, o.plan); err != nil {
			return nil, fmt.Errorf("state %s: %w", path, err)
		}
		st.Plan, st.PlanFile = o.plan.ID(), o.PlanPath
	}
	if err := st.create(); err != nil {
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	return st, nil
}

// resetUnits returns the changes that remove every unit of a step.
func resetUnits(s *StepState) map[string]*UnitState {
	if s == nil || len(s.Units) == 0 {
		return nil
	}
	out := map[string]*UnitState{}
	for name := range s.Units {
		out[name] = nil
	}
	return out
}

// checkResume refuses a resume whose runbook or params do not match the state.
func checkResume(st *State, rb *schema.Runbook, o Options) error {
	refuse := func(format string, args ...any) error {
		return exitcode.With(exitcode.Refused, fmt.Errorf("resume refused: "+format, args...))
	}
	if st.Runbook.Name != rb.Name {
		return refuse("the state belongs to runbook %s, not %s", st.Runbook.Name, rb.Name)
	}
	if !st.Unfinished() {
		return &finishedError{st: st}
	}
	if st.Outcome == "rejected" {
		return refuse("the run %s was rejected (%s); it cannot go on. Start over with runbook run --fresh", st.RunID, st.rejection())
	}
	for _, v := range o.Values {
		if v.Secret {
			continue
		}
		if old, ok := st.Params[v.Name]; ok && old != v.Value {
			return refuse("param %s is %q in the state but %q now; non-secret params must match", v.Name, old, v.Value)
		}
	}
	if s := st.step(o.Reject); o.Reject != "" && s != nil && (s.Status == Succeeded || s.Status == Skipped) {
		return exitcode.With(exitcode.Invalid, fmt.Errorf("step %s is %s: there is nothing to reject", o.Reject, s.Status))
	}
	again := alwaysAgain(st, rb)
	var drift []string
	var old *schema.Runbook
	if st.RunbookCopy != "" {
		if f, err := st.store.OpenBlob(st.RunbookCopy); err == nil {
			if src, err := io.ReadAll(f); err == nil {
				old, _ = schema.Load(rb.File, src)
			}
			f.Close()
		}
	}
	for _, s := range st.Steps {
		if s.Status != Succeeded && s.Status != Skipped || again[s.ID] {
			continue
		}
		cur := rb.Step(s.ID)
		switch {
		case cur == nil:
			drift = append(drift, fmt.Sprintf("step %s (completed) was removed from the runbook", s.ID))
		case cur.Digest != s.Digest:
			msg := fmt.Sprintf("step %s (completed) changed since it ran (digest %s → %s)", s.ID, short(s.Digest), short(cur.Digest))
			if old != nil {
				if was := old.Step(s.ID); was != nil && was.Digest == s.Digest {
					msg += ":\n" + indent(textdiff.Lines(was.Source(), cur.Source()), "    ")
				}
			}
			drift = append(drift, msg)
		}
	}
	if len(drift) > 0 {
		return refuse("completed steps changed since they ran:\n  %s\nrestore their definitions (pending and failed steps may be edited), or start over with runbook run --fresh",
			strings.Join(drift, "\n  "))
	}
	return nil
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n")
}

// alwaysAgain returns the always-steps that ran as clean-up after the step
// where the run stopped: they run again at the end of the resumed run (the
// clean-up belongs to every run that gets that far — pgaudit is switched back
// on after the resumed restore too), so their earlier completion neither
// counts nor pins their definition.
func alwaysAgain(st *State, rb *schema.Runbook) map[string]bool {
	out := map[string]bool{}
	stopped := false
	for _, step := range rb.Steps {
		ss := st.step(step.ID)
		done := ss != nil && (ss.Status == Succeeded || ss.Status == Skipped)
		if stopped && step.Always && ss != nil && ss.Status != Pending && ss.Status != Running {
			out[step.ID] = true
		}
		if !done && !stopped {
			stopped = true
		}
	}
	return out
}

func short(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

func checkSelection(rb *schema.Runbook, o Options) error {
	for _, id := range append(append(append(append([]string{o.From, o.Reject}, o.Only...), o.Approve...), o.Rerun...), o.TookEffect...) {
		if id != "" && rb.Step(id) == nil {
			return exitcode.With(exitcode.Invalid, fmt.Errorf("no step %q in %s (steps: %s)", id, rb.Name, strings.Join(rb.StepIDs(), ", ")))
		}
	}
	if o.Reject != "" {
		if _, ok := rb.Step(o.Reject).Action.(actions.Asker); !ok {
			return exitcode.With(exitcode.Invalid, fmt.Errorf("step %s asks for no approval: --reject names a confirm step", o.Reject))
		}
	}
	return nil
}

func newRunID() string {
	var b [6]byte
	rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

func osUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}

// resumeCommand is the command that resumes this run, without secrets.
func resumeCommand(o Options, path string) string {
	if o.Command != "" {
		return o.Command
	}
	return fmt.Sprintf("runbook resume %s --state %s", o.Runbook.File, path)
}

// identify records the identity of each server, and refuses a resume against
// another server than the one the run started on.
func (r *runner) identify(name string, s Server) error {
	if r.plan != nil {
		if err := r.plan.checkServer(name, s); err != nil {
			return err
		}
	}
	if old, ok := r.st.Servers[name]; ok && old.SystemID != s.SystemID {
		return exitcode.With(exitcode.Refused, fmt.Errorf("connection %s reaches server %s (database %s), but this run started on server %s (database %s): resume refused",
			name, s.SystemID, s.Database, old.SystemID, old.Database))
	}
	if old, ok := r.st.Servers[name]; ok && old == s {
		return nil
	}
	return r.st.write(&record{Server: &serverRecord{Conn: name, Server: s}}, true)
}

// run executes the steps in order.
func (r *runner) run(ctx context.Context) error {
	st, rb := r.st, r.rb
	params := map[string]string{}
	for _, v := range r.o.Values {
		params[v.Name] = v.Display()
	}
	done := 0
	for _, s := range st.Steps {
		if s.Status == Succeeded || s.Status == Skipped {
			done++
		}
	}
	r.emit("", RunStart{Operator: r.o.Operator, Host: hostname(), Version: r.o.Version, Runbook: rb.File, Digest: rb.Digest,
		Params: params, Ticket: r.o.Ticket, State: st.store.Where(), Resume: r.o.Resume,
		RunbookName: rb.Name, RunID: st.RunID, Steps: len(rb.Steps), Done: done, Plan: st.Plan})

	// Earlier steps' results, for expressions (they survive a resume).
	for _, s := range st.Steps {
		r.env.Steps[s.ID] = schema.StepResult{Status: s.Status, Outputs: s.Outputs}
	}
	// A resume checks every server the run reached before anything runs.
	for _, name := range sortedKeys(st.Servers) {
		if _, ok := r.conns.urls[name]; !ok {
			continue
		}
		if _, err := r.conns.Conn(ctx, name); err != nil {
			return r.finish("failed", err)
		}
	}
	if r.plan != nil {
		// Every server the plan was made on is checked, and the plan
		// recorded applied, before the first step.
		for _, s := range r.plan.Servers {
			if _, ok := r.conns.urls[s.Conn]; !ok {
				continue
			}
			if _, err := r.conns.Conn(ctx, s.Conn); err != nil {
				return r.finish("failed", err)
			}
		}
		if err := r.ensureApplied(); err != nil {
			return r.finish("failed", err)
		}
	}
	if rb.Lock != nil {
		if err := r.conns.lock(ctx, rb.Lock.Name, rb.Name); err != nil {
			return r.finish("failed", err)
		}
	}
	if err := r.settle(ctx); err != nil {
		return r.finish("failed", err)
	}

	var failure error
	interrupted := false
	started := r.o.From == ""
	for _, step := range rb.Steps {
		if step.ID == r.o.From {
			started = true
		}
		ss := st.step(step.ID)
		if ss != nil && (ss.Status == Succeeded || ss.Status == Skipped) {
			continue
		}
		if !started || (len(r.o.Only) > 0 && !slices.Contains(r.o.Only, step.ID)) {
			continue
		}
		if (failure != nil || interrupted) && !step.Always {
			continue
		}
		if err := r.auditStopped(step.ID, failure); err != nil {
			return r.finish("failed", err)
		}
		stepCtx := ctx
		if interrupted || ctx.Err() != nil {
			// Clean-up steps run after an interrupt, bounded, on a context of
			// their own (a second Ctrl-C ends the process at once).
			var cancel context.CancelFunc
			stepCtx, cancel = context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			defer cancel()
		}
		err := r.runStep(stepCtx, step)
		switch {
		case err == nil:
		case errors.Is(err, errApprovalRequired):
			r.emit("", RunPaused{Step: step.ID})
			r.paused = step.ID
			why := ""
			var ar *approvalRequired
			if errors.As(err, &ar) {
				why = " (" + ar.why + ")"
			}
			return r.finish("approval-required", exitcode.With(exitcode.Approval, fmt.Errorf("step %s needs approval%s; continue with:\n  %s --approve %s", step.ID, why, resumeCommand(r.o, st.store.Where()), step.ID)))
		case ctx.Err() != nil && !interrupted:
			interrupted = true
			r.emit("", RunInterrupted{Step: step.ID})
			failure = err
		case errors.As(err, new(*actions.Rejection)) && failure == nil:
			// A rejection stops the run whatever on_failure says.
			failure = err
		case step.OnFailure == "continue":
			r.emit("", StepFailureIgnored{Step: step.ID})
		case failure == nil:
			failure = err
		}
	}
	if err := r.auditStopped("", failure); err != nil {
		return r.finish("failed", err)
	}
	var rejected *actions.Rejection
	switch {
	case errors.As(failure, &rejected):
		return r.finish("rejected", exitcode.With(exitcode.Rejected, fmt.Errorf("%w\nthe run is over (resume refuses it); runbook run --fresh starts over", failure)))
	case exitcode.Of(failure) == exitcode.Refused:
		return r.finish("refused", failure)
	case interrupted:
		return r.finish("interrupted", exitcode.With(exitcode.Interrupted, fmt.Errorf("interrupted; the state is resumable:\n  %s", resumeCommand(r.o, st.store.Where()))))
	case failure != nil && exitcode.Of(failure) == exitcode.Refused:
		// The step refused to go on (a copy whose source was written since
		// it started): the run is refused, as a resume that refuses is.
		return r.finish("refused", failure)
	case failure != nil:
		return r.finish("failed", exitcode.With(exitcode.StepFailed, fmt.Errorf("%w\nfix the cause, then continue with:\n  %s", failure, resumeCommand(r.o, st.store.Where()))))
	}
	return r.finish("succeeded", nil)
}

// cleanupTimeout bounds always-steps that run after an interrupt.
const cleanupTimeout = 5 * time.Minute

func (r *runner) finish(outcome string, err error) error {
	if exitcode.Of(err) == exitcode.Refused {
		outcome = "refused"
	}
	now := time.Now().UTC()
	if werr := r.st.write(&record{Outcome: outcome, Ended: &now}, true); werr != nil && err == nil {
		err = werr
	}
	crashPoint("run-end", "")
	end := RunEnd{Outcome: outcome, Duration: now.Sub(r.st.Started)}
	if err != nil {
		end.Error = r.red.String(err.Error())
	}
	switch outcome {
	case "failed", "interrupted":
		end.ResumeCommand = resumeCommand(r.o, r.st.store.Where())
	case "approval-required":
		end.ResumeCommand = resumeCommand(r.o, r.st.store.Where()) + " --approve " + r.paused
	}
	r.emit("", end)
	if err != nil {
		return r.red.Error(err)
	}
	return nil
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}
