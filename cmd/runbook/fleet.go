package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/fleet"
	"github.com/runbookhq/runbook/runbooks"
)

func newFleetCmd(s *streams) *cobra.Command {
	c := &cobra.Command{
		Use:   "fleet",
		Short: "Run a runbook for many customers: one run per vars file",
		Long: `fleet runs one runbook for many customers: one run per customer's vars file,
named after the file (customers/acme.yaml is the customer acme), each with its
own state, audit log and report in the fleet's directory
(.runbook/fleet/RUNBOOK/ unless --dir). Runs start up to --max-concurrency at a
time; once more runs have failed than --max-errors allows, no new run starts
and the runs in flight finish.

On one machine the runs are part of the fleet process. With --queue
postgres://… the runs go through a queue in that database and runbook worker
processes, on any number of machines, take them (docs/fleet.md).`,
		Example: `  runbook fleet run migrate.yaml --vars customers/*.yaml --max-concurrency 5 --max-errors 1
  runbook fleet status migrate.yaml
  runbook fleet resume migrate.yaml --approve maintenance-on
  runbook fleet report migrate.yaml > fleet.md`,
	}
	c.AddCommand(newFleetRunCmd(s), newFleetStatusCmd(s), newFleetResumeCmd(s), newFleetReportCmd(s))
	return c
}

// fleetFlags are the flags every fleet command shares.
type fleetFlags struct {
	dir   string
	queue queueFlags
}

func (f *fleetFlags) register(c *cobra.Command, s *streams) {
	f.queue.s = s
	c.Flags().StringVar(&f.dir, "dir", "", "the fleet's directory: states, audit logs and reports (default .runbook/fleet/RUNBOOK)")
	f.queue.register(c)
}

// fleetDir is the fleet's directory: --dir, or the default of the runbook.
func (f *fleetFlags) fleetDir(ref string) (string, error) {
	if f.dir != "" {
		return f.dir, nil
	}
	if ref == "" {
		return "", usagef("name the fleet: its RUNBOOK or --dir")
	}
	rb, err := runbooks.Load(ref)
	if err != nil {
		return "", err
	}
	return fleet.DefaultDir(rb.Name), nil
}

// limits parses --max-concurrency and --max-errors ("" is not given).
func limits(conc, errs string) (fleet.Limit, fleet.Limit, error) {
	var lc, le fleet.Limit
	var err error
	if conc != "" {
		if lc, err = fleet.ParseLimit(conc); err != nil {
			return lc, le, usagef("--max-concurrency: %v", err)
		}
		if lc.N == 0 {
			return lc, le, usagef("--max-concurrency: at least one run at a time")
		}
	}
	if errs != "" {
		if le, err = fleet.ParseLimit(errs); err != nil {
			return lc, le, usagef("--max-errors: %v", err)
		}
	}
	return lc, le, nil
}

// runOpts are the options every run of a fleet gets.
type runOpts struct {
	operator, ticket           string
	yes                        bool
	approve, rerun, tookEffect []string
}

func (r *runOpts) register(c *cobra.Command, resume bool) {
	c.Flags().StringVar(&r.operator, "operator", "", "who runs this, for the audit logs (default: the OS user)")
	c.Flags().StringVar(&r.ticket, "ticket", "", "change ticket id, recorded in the audit logs")
	c.Flags().BoolVar(&r.yes, "yes", false, "approve every confirm step of every run")
	c.Flags().StringArrayVar(&r.approve, "approve", nil, "approve the confirm step ID in every run (repeatable)")
	if resume {
		c.Flags().StringArrayVar(&r.rerun, "rerun", nil, "allow re-running the interrupted non-transactional step ID (repeatable)")
		c.Flags().StringArrayVar(&r.tookEffect, "took-effect", nil, "record the work of step ID that runbook could not settle as done (repeatable)")
	}
}

func newFleetRunCmd(s *streams) *cobra.Command {
	var ff fleetFlags
	var ro runOpts
	var varsFiles, vars []string
	var conc, errs string
	var fresh bool
	c := &cobra.Command{
		Use:   "run RUNBOOK --vars FILE... [flags]",
		Short: "Start a fleet: one run per customer's vars file",
		Long: `fleet run starts one run of RUNBOOK per vars file (--vars customers/*.yaml:
every file after --vars is a customer; a quoted pattern is expanded). Every
customer's params are resolved before anything runs; secrets come from the
vars files or the environment, never --var.

Rate control: at most --max-concurrency runs at a time (a number, or a
percentage of the fleet rounded up; default 50); once the failed runs exceed
--max-errors (a number, or a percentage rounded down; default 0: the first
failure stops the fleet) no new run starts and the runs in flight finish.

Exit code: 0 every run succeeded; 1 a run failed (or was not started because
of --max-errors); 3 a run waits for approval (fleet resume --approve ID);
130 interrupted.`,
		Example: `  runbook fleet run migrate.yaml --vars customers/*.yaml
  runbook fleet run migrate.yaml --vars 'customers/*.yaml' --max-concurrency 20% --max-errors 2
  runbook fleet run migrate.yaml --vars customers/*.yaml --queue postgres://queue.internal/runbook`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			files := append(append([]string{}, varsFiles...), args[1:]...)
			customers, err := fleet.Customers(files)
			if err != nil {
				return err
			}
			lc, le, err := limits(conc, errs)
			if err != nil {
				return err
			}
			o := fleet.Options{Runbook: args[0], Customers: customers, Vars: vars, Dir: ff.dir, MaxConcurrency: lc, MaxErrors: le,
				Fresh: fresh, Yes: ro.yes, Approve: ro.approve, Operator: ro.operator, Ticket: ro.ticket, Version: version, Out: s.out}
			if ff.queue.url != "" {
				return fleetEnqueue(c.Context(), s, &ff, o)
			}
			ctx, stop := signals(c.Context(), s)
			defer stop()
			sum, err := fleet.Run(ctx, o)
			if err != nil {
				return err
			}
			return finishPass(s, sum)
		},
	}
	ff.register(c, s)
	ro.register(c, false)
	c.Flags().StringArrayVar(&varsFiles, "vars", nil, "customers' vars files: one customer per file, named after it (repeatable; patterns expanded)")
	c.Flags().StringArrayVar(&vars, "var", nil, "param value NAME=VALUE for every customer (repeatable; never a secret)")
	c.Flags().StringVar(&conc, "max-concurrency", fleet.DefaultMaxConcurrency, "runs at a time: N, or N% of the fleet")
	c.Flags().StringVar(&errs, "max-errors", fleet.DefaultMaxErrors, "failed runs tolerated before no new run starts: N, or N% of the fleet")
	c.Flags().BoolVar(&fresh, "fresh", false, "archive unfinished runs' states and start anew")
	return c
}

// finishPass prints the fleet's table after a pass and returns its error.
func finishPass(s *streams, sum *fleet.Summary) error {
	t, err := fleet.Status(sum.Dir)
	if err != nil {
		return err
	}
	fmt.Fprintln(s.out)
	t.WriteText(s.out)
	return sum.Err()
}

func signals(ctx context.Context, s *streams) (context.Context, func()) {
	if ctx == nil {
		ctx = context.Background()
	}
	errFile, _ := s.err.(*os.File)
	return executor.WithSignals(ctx, errFile)
}

func newFleetStatusCmd(s *streams) *cobra.Command {
	var ff fleetFlags
	var format string
	c := &cobra.Command{
		Use:   "status [RUNBOOK] [--dir D]",
		Short: "Show where each customer's run stands",
		Long: `fleet status shows a table of the fleet: each customer, its run's outcome, the
step it reached, its duration and where its state is (read without disturbing
runs in progress). The exit code is the fleet's as it stands (fleet run).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return usagef("--format must be text or json, not %q", format)
			}
			t, err := fleetTable(c.Context(), &ff, firstArg(args))
			if err != nil {
				return err
			}
			if format == "json" {
				if err := t.WriteJSON(s.out); err != nil {
					return err
				}
			} else {
				t.WriteText(s.out)
			}
			if code := t.Code(); code != 0 {
				return silentExit(code)
			}
			return nil
		},
	}
	ff.register(c, s)
	c.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return c
}

// fleetTable reads the fleet's status, local or from the queue.
func fleetTable(ctx context.Context, ff *fleetFlags, ref string) (*fleet.Table, error) {
	if ff.queue.url != "" {
		return queueTable(ctx, ff, ref)
	}
	dir, err := ff.fleetDir(ref)
	if err != nil {
		return nil, err
	}
	return fleet.Status(dir)
}

func newFleetResumeCmd(s *streams) *cobra.Command {
	var ff fleetFlags
	var ro runOpts
	var only []string
	var conc, errs string
	c := &cobra.Command{
		Use:   "resume [RUNBOOK] [--dir D]",
		Short: "Continue a fleet: the runs that did not succeed",
		Long: `fleet resume continues every run of the fleet that did not succeed — failed,
waiting for approval (give --approve ID), interrupted, or left unfinished by a
process that died — exactly where it stopped, and starts the customers whose
run never started. Runs that succeeded are left alone. The rate control is the
fleet's (or this command's --max-concurrency, --max-errors), its errors
counted afresh. --customer NAME resumes only that customer (repeatable).`,
		Example: `  runbook fleet resume migrate.yaml --approve maintenance-on
  runbook fleet resume --dir .runbook/fleet/migrate --customer acme --rerun restore`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			lc, le, err := limits(conc, errs)
			if err != nil {
				return err
			}
			o := fleet.Options{Only: only, MaxConcurrency: lc, MaxErrors: le, Yes: ro.yes, Approve: ro.approve, Rerun: ro.rerun,
				TookEffect: ro.tookEffect, Operator: ro.operator, Ticket: ro.ticket, Version: version, Out: s.out}
			if ff.queue.url != "" {
				return fleetQueueResume(c.Context(), s, &ff, firstArg(args), o)
			}
			if o.Dir, err = ff.fleetDir(firstArg(args)); err != nil {
				return err
			}
			ctx, stop := signals(c.Context(), s)
			defer stop()
			sum, err := fleet.Resume(ctx, o)
			if err != nil {
				return err
			}
			return finishPass(s, sum)
		},
	}
	ff.register(c, s)
	ro.register(c, true)
	c.Flags().StringArrayVar(&only, "customer", nil, "resume only this customer (repeatable)")
	c.Flags().StringVar(&conc, "max-concurrency", "", "runs at a time: N, or N% of the fleet (default: the fleet's)")
	c.Flags().StringVar(&errs, "max-errors", "", "failed runs tolerated: N, or N% of the fleet (default: the fleet's)")
	return c
}

func newFleetReportCmd(s *streams) *cobra.Command {
	var ff fleetFlags
	var out string
	c := &cobra.Command{
		Use:   "report [RUNBOOK] [--dir D] [--out FILE]",
		Short: "Write a Markdown summary of the fleet, linking each run's report",
		Long: `fleet report writes each customer's run report (CUSTOMER.report.md in the
fleet's directory, as runbook report would) and a Markdown summary of the
fleet: each customer's outcome, the step it reached, its duration, whether
its audit log verifies, and a link to its report. The summary goes to
standard output, or to --out FILE (its links are then relative to FILE).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			t, err := fleetTable(c.Context(), &ff, firstArg(args))
			if err != nil {
				return err
			}
			dir := t.Where
			var open func(string) (executor.Store, error)
			if ff.queue.url != "" {
				if dir, open, err = queueReportStores(c.Context(), &ff, t); err != nil {
					return err
				}
			}
			reports, err := fleet.WriteReports(dir, t, open)
			if err != nil {
				return err
			}
			logs := map[string]string{}
			for _, r := range t.Rows {
				logs[r.Customer] = fleet.LogPath(dir, r.Customer)
			}
			o := fleet.ReportOptions{Table: t, Reports: reports, Logs: logs, LinkBase: "."}
			if out == "" {
				return fleet.WriteReport(s.out, o)
			}
			o.LinkBase = filepath.Dir(out)
			f, err := os.Create(out)
			if err != nil {
				return err
			}
			if err := fleet.WriteReport(f, o); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		},
	}
	ff.register(c, s)
	c.Flags().StringVar(&out, "out", "", "write the summary to FILE (links relative to it)")
	return c
}
