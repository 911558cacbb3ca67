package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/fleet"
	"github.com/runbookhq/runbook/internal/redact"
	"github.com/runbookhq/runbook/runbooks"
)

// queueFlags are the flags of a fleet that runs through a queue.
type queueFlags struct {
	url, state, fleet string
	wait              bool
	cmd               *cobra.Command
	s                 *streams
}

func (q *queueFlags) register(c *cobra.Command) {
	q.cmd = c
	c.Flags().StringVar(&q.url, "queue", os.Getenv("RUNBOOK_QUEUE"), "run through the queue in this PostgreSQL database (postgres://…; default $RUNBOOK_QUEUE); give its password with PGPASSWORD or ~/.pgpass, not in the URL")
	c.Flags().StringVar(&q.state, "state", "", "with --queue: where the runs' states are (default: the queue's database; a directory for file states that the workers share)")
	c.Flags().StringVar(&q.fleet, "fleet", "", "with --queue: the fleet's id in the queue (default: the runbook's name)")
	if c.Name() == "run" || c.Name() == "resume" {
		c.Flags().BoolVar(&q.wait, "wait", false, "with --queue: wait for the fleet's runs to end, and exit as fleet run would")
	}
}

// stateSpec is where the queue fleet's states are.
func (q *queueFlags) stateSpec() string {
	if q.state != "" {
		return q.state
	}
	return q.url
}

// fleetID is --fleet, or the name of the runbook ref.
func (q *queueFlags) fleetID(ref string) (string, error) {
	if q.fleet != "" {
		return q.fleet, nil
	}
	if ref == "" {
		return "", usagef("name the fleet: its RUNBOOK or --fleet ID")
	}
	rb, err := runbooks.Load(ref)
	if err != nil {
		return "", err
	}
	return rb.Name, nil
}

func openQueue(ctx context.Context, ff *fleetFlags) (*fleet.Queue, error) {
	if ff.queue.cmd != nil {
		warnURLPassword(ff.queue.s, "--queue", ff.queue.url, !ff.queue.cmd.Flags().Changed("queue"))
		if ff.queue.cmd.Flags().Changed("state") {
			warnURLPassword(ff.queue.s, "--state", ff.queue.state, false)
		}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	return fleet.OpenQueue(ctx, ff.queue.url)
}

// warnURLPassword warns when a URL given on the command line holds a
// password: every user of the machine can read it (ps, /proc) while runbook
// runs.
func warnURLPassword(s *streams, flag, raw string, fromEnv bool) {
	if fromEnv || len(redact.PasswordsInConnString(raw)) == 0 {
		return
	}
	fmt.Fprintf(s.err, "runbook: warning: %s holds a password, which every user of this machine can read on the command line (ps, /proc) while runbook runs; give it with PGPASSWORD or ~/.pgpass instead, or set $RUNBOOK_QUEUE\n", flag)
}

// fleetEnqueue is fleet run --queue.
func fleetEnqueue(ctx context.Context, s *streams, ff *fleetFlags, o fleet.Options) error {
	q, err := openQueue(ctx, ff)
	if err != nil {
		return err
	}
	defer q.Close()
	id, err := q.Enqueue(ctx, fleet.EnqueueOptions{Options: o, Fleet: ff.queue.fleet, State: ff.queue.state})
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "fleet %s: %d runs queued in %s; workers take them (runbook worker --queue …); follow with runbook fleet status --queue … --fleet %s\n",
		id, len(o.Customers), q.Where(), id)
	if !ff.queue.wait {
		return nil
	}
	return waitQueued(ctx, s, ff, q, id)
}

// waitQueued waits for a queue fleet's runs to end, printing each change.
func waitQueued(ctx context.Context, s *streams, ff *fleetFlags, q *fleet.Queue, id string) error {
	ctx, stop := signals(ctx, s)
	defer stop()
	_, err := q.Wait(ctx, id, 200*time.Millisecond, func(r *fleet.Row) {
		line := fmt.Sprintf("%s: %s", r.Customer, r.Outcome)
		if r.Worker != "" && r.Outcome != fleet.OutcomeNotStarted {
			line += " (" + r.Worker + ")"
		}
		if r.Error != "" && r.Outcome != fleet.OutcomeRunning {
			line += ": " + fleet.Brief(r.Error)
		}
		fmt.Fprintln(s.out, line)
	})
	if err != nil {
		return err
	}
	t, _, err := q.Status(context.WithoutCancel(ctx), id, ff.queue.stateSpec())
	if err != nil {
		return err
	}
	fmt.Fprintln(s.out)
	t.WriteText(s.out)
	if code := t.Code(); code != 0 {
		return silentExit(code)
	}
	return nil
}

// queueTable is fleet status --queue.
func queueTable(ctx context.Context, ff *fleetFlags, ref string) (*fleet.Table, error) {
	id, err := ff.queue.fleetID(ref)
	if err != nil {
		return nil, err
	}
	q, err := openQueue(ctx, ff)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	t, _, err := q.Status(ctx, id, ff.queue.stateSpec())
	return t, err
}

// fleetQueueResume is fleet resume --queue.
func fleetQueueResume(ctx context.Context, s *streams, ff *fleetFlags, ref string, o fleet.Options) error {
	id, err := ff.queue.fleetID(ref)
	if err != nil {
		return err
	}
	q, err := openQueue(ctx, ff)
	if err != nil {
		return err
	}
	defer q.Close()
	resumed, err := q.ResumeQueued(ctx, id, o)
	if err != nil {
		return err
	}
	if len(resumed) == 0 {
		fmt.Fprintf(s.out, "fleet %s: no run to resume (every run succeeded or is in flight)\n", id)
	} else {
		fmt.Fprintf(s.out, "fleet %s: %d runs back in the queue: %s\n", id, len(resumed), strings.Join(resumed, ", "))
	}
	if !ff.queue.wait {
		return nil
	}
	return waitQueued(ctx, s, ff, q, id)
}

// queueReportStores gives fleet report --queue the directory of the audit
// logs and reports (--dir, or the fleet's default) and each customer's
// state store.
func queueReportStores(ctx context.Context, ff *fleetFlags, t *fleet.Table) (string, func(string) (executor.Store, error), error) {
	q, err := openQueue(ctx, ff)
	if err != nil {
		return "", nil, err
	}
	defer q.Close()
	f, err := q.Fleet(ctx, t.Name)
	if err != nil {
		return "", nil, err
	}
	dir := ff.dir
	if dir == "" {
		dir = fleet.DefaultDir(f.Name)
	}
	open := func(customer string) (executor.Store, error) {
		return fleet.OpenCustomerStore(ff.queue.stateSpec(), f.ID, f.Runbook, f.Vars, fleet.Customer{Name: customer, Vars: f.CustomerVars[customer]})
	}
	return dir, open, nil
}

func newWorkerCmd(s *streams) *cobra.Command {
	var o fleet.WorkerOptions
	c := &cobra.Command{
		Use:   "worker --queue postgres://… [--max-workers N]",
		Short: "Take fleet runs from a queue and run them",
		Long: `worker takes runs of fleets from the queue (fleet run --queue) and runs them,
up to --max-workers at once, until SIGINT or SIGTERM: then it takes no new run
and interrupts those in flight, which go back to the queue, resumable.

Runs of any number of workers, on any number of machines, share the queue. A
run's state goes to the PostgreSQL store (the queue's database unless --state
names another); its run lock keeps two workers from ever running the same
customer at once, and a run whose worker died (kill -9, a lost machine) is
taken over by another worker after --rescue-after without a heartbeat, and
resumed exactly where it stopped. A worker reads each run's vars files (paths
as fleet run was given them: run workers from the same directory of a
checkout they share) and takes secrets from them or from its environment.
Audit logs and reports go to --dir (default .runbook/fleet/RUNBOOK).`,
		Example: `  PGPASSWORD=… runbook worker --queue postgres://runbook@queue.internal/runbook --max-workers 4`,
		Args:    exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			if o.Queue == "" {
				return usagef("worker needs --queue postgres://… (or $RUNBOOK_QUEUE)")
			}
			if o.MaxWorkers < 1 {
				return usagef("--max-workers: at least 1")
			}
			if o.RescueAfter < 4*time.Second {
				return usagef("--rescue-after: at least 4s")
			}
			o.Version, o.Out = version, s.out
			warnURLPassword(s, "--queue", o.Queue, !c.Flags().Changed("queue"))
			if c.Flags().Changed("state") {
				warnURLPassword(s, "--state", o.State, false)
			}
			ctx, stop := signals(c.Context(), s)
			defer stop()
			return fleet.Work(ctx, o)
		},
	}
	c.Flags().StringVar(&o.Queue, "queue", os.Getenv("RUNBOOK_QUEUE"), "the queue's PostgreSQL database (postgres://…; default $RUNBOOK_QUEUE); its password through PGPASSWORD or ~/.pgpass")
	c.Flags().StringVar(&o.State, "state", "", "where the runs' states go (default: the queue's database; a directory for file states that every worker shares)")
	c.Flags().StringVar(&o.Dir, "dir", "", "audit logs and reports (default .runbook/fleet/RUNBOOK)")
	c.Flags().IntVar(&o.MaxWorkers, "max-workers", 1, "runs at once on this worker")
	c.Flags().DurationVar(&o.RescueAfter, "rescue-after", fleet.DefaultRescueAfter, "a run whose worker is silent this long is taken over by another worker")
	c.Flags().StringVar(&o.ID, "id", "", "this worker's name in the fleet's status (default host:pid)")
	return c
}

// silentError is an exit code without a message: the command already said
// why (fleet status's table).
type silentError struct{ code int }

func (e *silentError) Error() string { return fmt.Sprintf("exit %d", e.code) }
func (e *silentError) ExitCode() int { return e.code }

func silentExit(code int) error { return &silentError{code} }
