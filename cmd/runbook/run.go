package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/shellword"
	"github.com/runbookhq/runbook/schema"
)

// runFlags are the flags shared by run and resume.
type runFlags struct {
	paramFlags
	state, logPath, logFormat, operator, ticket string
	yes, verbose                                bool
	approve                                     []string
}

func (f *runFlags) register(c *cobra.Command) {
	f.paramFlags.register(c)
	c.Flags().StringVar(&f.state, "state", "", "state: a file, or a control database postgres://USER@HOST/DB[?key=NAME] (default: $RUNBOOK_STATE, else .runbook/NAME-HASH.state.json, derived from the runbook and its non-secret params)")
	c.Flags().StringVar(&f.logPath, "log", "", "audit log file: JSON lines, appended")
	c.Flags().StringVar(&f.logFormat, "log-format", "", "console format: text (the steps as they run, a summary) or json (every event, as in the audit log) (default: text on a terminal, json otherwise)")
	c.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "text console: show every statement, notice, output and line of child output (the audit log always has them)")
	c.Flags().StringVar(&f.operator, "operator", "", "who runs this, for the audit log (default: the OS user)")
	c.Flags().StringVar(&f.ticket, "ticket", "", "change ticket id, recorded in the audit log")
	c.Flags().BoolVar(&f.yes, "yes", false, "approve every confirm step")
	c.Flags().StringArrayVar(&f.approve, "approve", nil, "approve the confirm step ID (repeatable)")
}

func newRunCmd(s *streams) *cobra.Command {
	var f runFlags
	var from string
	var only []string
	var fresh bool
	var plan string
	c := &cobra.Command{
		Use:   "run FILE",
		Short: "Run a runbook",
		Long: `run executes a runbook's steps in order, recording each step durably in a
state file (or a control database: --state postgres://…, or $RUNBOOK_STATE) so
that an interrupted run can be resumed exactly (runbook resume). The state is
printed at start; on any failure or interruption runbook prints the command that
resumes.`,
		Example: `  runbook run migrate.yaml --vars customers/acme.yaml --log acme.log
  runbook run builtin:heroku-to-crunchy-bridge --vars acme.yaml --approve maintenance-on`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if plan != "" && (from != "" || len(only) > 0) {
				return usagef("--plan runs the whole plan: it cannot go with --from or --only")
			}
			return execute(c.Context(), s, &f, args[0], executor.Options{From: from, Only: only, Fresh: fresh, PlanPath: plan})
		},
	}
	f.register(c)
	c.Flags().StringVar(&from, "from", "", "start at step ID (earlier steps are not run)")
	c.Flags().StringArrayVar(&only, "only", nil, "run only step ID (repeatable)")
	c.Flags().BoolVar(&fresh, "fresh", false, "archive an unfinished state and start anew")
	c.Flags().StringVar(&plan, "plan", "", "execute exactly the sealed plan file PLAN (runbook plan --out), at most once; refused (exit 4) when the runbook, a param, a server or a generated statement differs (docs/plan.md)")
	return c
}

func newResumeCmd(s *streams) *cobra.Command {
	var f runFlags
	var rerun, tookEffect []string
	var reject, reason string
	c := &cobra.Command{
		Use:   "resume FILE",
		Short: "Continue an interrupted or failed run where it stopped",
		Long: `resume continues the run recorded in the state: a transaction whose commit was
in doubt is settled by asking the server; a failed step runs again (as edited
since, if it was); completed steps are never repeated and must not have
changed. Secret params are given again; non-secret params must match.
Resuming a run that already succeeded does nothing, says so, and exits 0.`,
		Example: `  runbook resume migrate.yaml --vars customers/acme.yaml --var target_url=…
  runbook resume migrate.yaml --vars acme.yaml --rerun restore
  runbook resume migrate.yaml --vars acme.yaml --took-effect set-owners
  runbook resume migrate.yaml --vars acme.yaml --reject go-live --reason "CAB: not this week"`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if reject != "" && strings.TrimSpace(reason) == "" {
				return usagef("--reject needs --reason TEXT: why the step is rejected, for the audit log")
			}
			if reject == "" && reason != "" {
				return usagef("--reason goes with --reject ID")
			}
			if reject != "" && slices.Contains(f.approve, reject) {
				return usagef("step %s cannot be both approved and rejected", reject)
			}
			return execute(c.Context(), s, &f, args[0], executor.Options{Resume: true, Rerun: rerun, TookEffect: tookEffect,
				Reject: reject, RejectReason: strings.TrimSpace(reason)})
		},
	}
	f.register(c)
	c.Flags().StringArrayVar(&rerun, "rerun", nil, "allow re-running the interrupted non-transactional step ID (repeatable)")
	c.Flags().StringVar(&reject, "reject", "", "reject the confirm step ID (with --reason): the run ends rejected (exit 6) after its always steps")
	c.Flags().StringVar(&reason, "reason", "", "why the step is rejected (--reject), recorded in the audit log")
	c.Flags().StringArrayVar(&tookEffect, "took-effect", nil, "record the work of step ID that runbook could not settle (a server restart) as done: you checked that it took effect (repeatable)")
	return c
}

func execute(ctx context.Context, s *streams, f *runFlags, ref string, o executor.Options) error {
	if f.logFormat != "" && f.logFormat != "text" && f.logFormat != "json" {
		return usagef("--log-format must be text or json, not %q", f.logFormat)
	}
	rb, vals, err := f.load(ref)
	if err != nil {
		return err
	}
	o.Runbook, o.Values = rb, vals
	o.LogPath, o.LogFormat = f.logPath, f.logFormat
	o.Operator, o.Ticket, o.Yes, o.Approve = f.operator, f.ticket, f.yes, f.approve
	o.Console, o.Terminal, o.Version, o.Verbose = s.out, isTerminal(s.out), version, f.verbose
	if o.Store, err = executor.OpenStore(f.state, rb, vals); err != nil {
		return err
	}
	o.StatePath = o.Store.Where()
	state := o.StatePath
	if f.state == "" && os.Getenv(executor.StateEnv) != "" {
		state = "" // the resume finds it where this run did: $RUNBOOK_STATE
	}
	o.Command = resumeLine(ref, f, vals, state)
	if in, ok := s.in.(*os.File); ok && isTerminal(in) && isTerminal(s.err) {
		reader := bufio.NewReader(in)
		o.Prompt = func(q string) (string, error) {
			fmt.Fprint(s.err, q)
			return reader.ReadString('\n')
		}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	errFile, _ := s.err.(*os.File)
	ctx, stop := executor.WithSignals(ctx, errFile)
	defer stop()
	// On a terminal the step view says where the state is, and ends with
	// the run's error and the command that resumes: not said twice.
	onScreen := o.Terminal && f.logFormat != "json" && isTerminal(s.err)
	if !onScreen {
		fmt.Fprintf(s.err, "runbook: state %s\n", o.StatePath)
	}
	res, err := executor.Run(ctx, o)
	if err == nil && res.AlreadySucceeded {
		fmt.Fprintf(s.err, "runbook: the run %s already succeeded (ended %s): nothing to resume; runbook run starts a new one\n",
			res.RunID, res.Ended.Format(time.RFC3339))
	}
	if err != nil && onScreen && res != nil && res.Shown {
		return &shownError{err}
	}
	return err
}

// shownError is an error the console already showed: its exit code counts,
// it is not printed again.
type shownError struct{ error }

func (e *shownError) Unwrap() error { return e.error }

// resumeLine is the exact command that resumes a run, with secret values
// (and a control database's password) left for the operator to supply;
// without --state when state is "".
func resumeLine(ref string, f *runFlags, vals schema.Values, state string) string {
	parts := []string{"runbook", "resume", ref}
	if state != "" {
		parts = append(parts, "--state", state)
	}
	for _, v := range f.varsFiles {
		parts = append(parts, "--vars", v)
	}
	for _, kv := range f.vars {
		k, _, _ := strings.Cut(kv, "=")
		if v, ok := vals.Get(k); ok && v.Secret {
			parts = append(parts, "--var", k+"=…")
			continue
		}
		parts = append(parts, "--var", kv)
	}
	if f.logPath != "" {
		parts = append(parts, "--log", f.logPath)
	}
	for i, p := range parts {
		parts[i] = shellword.Quote(p)
	}
	return strings.Join(parts, " ")
}
