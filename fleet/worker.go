package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/shellword"
)

// WorkerOptions configure runbook worker.
type WorkerOptions struct {
	// Queue is the queue's URL.
	Queue string
	// State is where the runs' states go: "" for the queue's database (the
	// PostgreSQL store), another postgres:// URL, or a directory of file
	// stores shared by the workers.
	State string
	// Dir keeps the runs' audit logs and reports: "" for each fleet's
	// DefaultDir under the working directory.
	Dir string
	// MaxWorkers is how many runs this worker runs at once.
	MaxWorkers int
	// RescueAfter is how long a run's job may go without a heartbeat from
	// its worker before another worker takes the run over.
	RescueAfter time.Duration
	// ID names this worker in the fleet's rows (default host:pid).
	ID      string
	Version string
	// Out receives a line as each run starts and ends.
	Out io.Writer
	// Started is called once the worker takes jobs.
	Started func()
}

// DefaultRescueAfter is how long a worker's silence lasts before its runs
// are taken over: its heartbeat comes every quarter of it.
const DefaultRescueAfter = time.Minute

// Work takes runs from the queue until ctx is done, then stops taking new
// ones and interrupts the runs in flight (their states stay resumable and
// their jobs go back to the queue at once, for another worker).
func Work(ctx context.Context, o WorkerOptions) error {
	if o.MaxWorkers <= 0 {
		o.MaxWorkers = 1
	}
	if o.RescueAfter <= 0 {
		o.RescueAfter = DefaultRescueAfter
	}
	if o.ID == "" {
		host, _ := os.Hostname()
		o.ID = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	q, err := OpenQueue(ctx, o.Queue)
	if err != nil {
		return err
	}
	defer q.Close()
	w := &worker{o: o, q: q}
	workers := river.NewWorkers()
	river.AddWorker[RunArgs](workers, w)
	client, err := river.NewClient(riverpgxv5.New(q.pool), &river.Config{
		ID:                   fmt.Sprintf("runbook-%s-%d", o.ID, time.Now().UnixNano()),
		Schema:               QueueSchema,
		Queues:               map[string]river.QueueConfig{queueName: {MaxWorkers: o.MaxWorkers}},
		Workers:              workers,
		JobTimeout:           -1,
		RescueStuckJobsAfter: o.RescueAfter,
		FetchPollInterval:    time.Second,
		// A finished run's slot is filled at once (River's default waits
		// 100 ms between fetches: a small run's time again).
		FetchCooldown: 10 * time.Millisecond,
		Logger:        quietLogger(os.Stderr),
	})
	if err != nil {
		return err
	}
	w.client = client
	if err := client.Start(context.WithoutCancel(ctx)); err != nil {
		return exitcode.With(exitcode.Environment, fmt.Errorf("worker: queue %s: %w", q.where, err))
	}
	reapCtx, stopReap := context.WithCancel(ctx)
	defer stopReap()
	go w.reap(reapCtx)
	fmt.Fprintf(o.Out, "worker %s: taking runs from %s, %d at a time\n", o.ID, q.where, o.MaxWorkers)
	if o.Started != nil {
		o.Started()
	}
	<-ctx.Done()
	fmt.Fprintf(o.Out, "worker %s: stopping: the runs in flight are interrupted and go back to the queue\n", o.ID)
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	w.stopping.Store(true)
	return client.StopAndCancel(stopCtx)
}

type worker struct {
	river.WorkerDefaults[RunArgs]
	o        WorkerOptions
	q        *Queue
	client   *river.Client[pgx.Tx]
	stopping atomicBool
	mu       sync.Mutex
	warned   map[string]bool
}

type atomicBool struct {
	mu sync.Mutex
	v  bool
}

func (b *atomicBool) Store(v bool) { b.mu.Lock(); b.v = v; b.mu.Unlock() }
func (b *atomicBool) Load() bool   { b.mu.Lock(); defer b.mu.Unlock(); return b.v }

// Timeout implements river.Worker: a run takes as long as it takes.
func (w *worker) Timeout(*river.Job[RunArgs]) time.Duration { return -1 }

// stateSpec is where this worker's states go.
func (w *worker) stateSpec() string {
	if w.o.State != "" {
		return w.o.State
	}
	return w.o.Queue
}

// claim is what the fleet's rows let a job do.
type claim struct {
	run        bool   // run it (else the job ends: nothing to do)
	snooze     bool   // not now: the fleet's concurrency is full
	wrongState string // not this worker's: it keeps states elsewhere
	mode       string // "start", "resume" (asked by fleet resume), "takeover" (its worker died)
	prevRunID  string
	approve    []string
	rerun      []string
	tookEffect []string
	yes, fresh bool
	operator   string
	ticket     string
	name       string
}

// Work implements river.Worker: one customer's run.
func (w *worker) Work(ctx context.Context, job *river.Job[RunArgs]) error {
	a := job.Args
	members, lerr := load(a.Runbook, a.Var, []Customer{{Name: a.Customer, Vars: a.Vars}}, false)
	var store executor.Store
	var st *executor.Status
	if lerr == nil {
		s, err := openStore(w.stateSpec(), a.Fleet, members[0])
		if err != nil {
			lerr = err
		} else {
			store = s
			if cur, err := executor.ReadStatus(store); err == nil {
				st = cur
			} else if exitcode.Of(err) == exitcode.Refused {
				lerr = err
			}
		}
	}
	closeStore := func() {
		if store != nil {
			store.Close()
		}
	}
	cur := ""
	if st != nil {
		cur = st.RunID
	}
	c, err := w.claim(ctx, job, cur)
	if err != nil {
		closeStore()
		return err
	}
	if c.snooze {
		closeStore()
		if c.wrongState != "" {
			w.warnOnce(c.wrongState + ": leaving its runs to other workers")
			return river.JobSnooze(5 * time.Second)
		}
		return river.JobSnooze(time.Second + time.Duration(job.ID%7)*100*time.Millisecond)
	}
	if !c.run {
		closeStore()
		return nil
	}
	started := time.Now().UTC()
	if lerr != nil {
		closeStore()
		return w.finish(ctx, job, &Result{Outcome: outcomeOf(nil, lerr), Exit: exitcode.Of(lerr), Error: lerr.Error(), Started: started, Ended: time.Now().UTC()}, "", "")
	}
	mb := members[0]
	dir := w.o.Dir
	if dir == "" {
		dir = DefaultDir(mb.rb.Name)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		closeStore()
		return w.finish(ctx, job, &Result{Outcome: OutcomeError, Exit: exitcode.Environment, Error: err.Error(), Started: started, Ended: time.Now().UTC()}, "", "")
	}

	// Decide between starting, resuming and recording a run that ended.
	ours := st != nil && st.RunID != c.prevRunID
	resume := false
	switch {
	case !ours:
		// No run of this fleet's yet: start one.
	case c.mode == "takeover" && st.Outcome != "unfinished" && st.Outcome != OutcomeInterrupt:
		// The run ended, and its worker died before recording how.
		closeStore()
		return w.finish(ctx, job, &Result{Outcome: st.Outcome, Exit: exitOf(st.Outcome), RunID: st.RunID, Started: st.Started, Ended: time.Now().UTC()}, st.State, stepReached(st))
	default:
		resume = true
	}
	o := executor.Options{
		Runbook: mb.rb, Values: mb.vals, Store: store, LogPath: LogPath(dir, mb.Name), Resume: resume,
		Fresh: c.fresh && !resume, Yes: c.yes, Approve: c.approve, Rerun: c.rerun, TookEffect: c.tookEffect,
		Operator: c.operator, Ticket: c.ticket, Version: w.o.Version,
		Command: "runbook fleet resume --queue … --fleet " + shellword.Quote(a.Fleet) + " --customer " + shellword.Quote(a.Customer),
	}
	verb := map[bool]string{true: "resuming", false: "starting"}[resume]
	w.say("%s/%s: %s (attempt %d) on %s", a.Fleet, a.Customer, verb, job.Attempt, w.o.ID)

	hbCtx, stopHB := context.WithCancel(ctx)
	go w.heartbeat(hbCtx, job)
	res, runErr := executor.Run(ctx, o)
	stopHB()
	where := store.Where()
	store.Close() // Run closes what it opened; a lock it could not take left nothing open

	outcome := outcomeOf(res, runErr)
	if outcome == OutcomeRefused && w.heldElsewhere(a.Fleet, mb) {
		{
			// Another worker runs it now (a job taken over from a worker
			// that was only slow): leave it to that one, and look again
			// later.
			w.say("%s/%s: held by another worker; looking again later", a.Fleet, a.Customer)
			return river.JobSnooze(w.o.RescueAfter / 2)
		}
	}
	if outcome == OutcomeInterrupt && (w.stopping.Load() || ctx.Err() != nil) {
		// This worker is stopping: the run goes back to the queue at once
		// (its row stays running; the next worker resumes it).
		w.say("%s/%s: interrupted: back to the queue", a.Fleet, a.Customer)
		return river.JobSnooze(0)
	}
	r := &Result{Outcome: outcome, Exit: exitcode.Of(runErr), Started: started, Ended: time.Now().UTC()}
	if res != nil {
		r.RunID = res.RunID
	}
	if runErr != nil {
		r.Error = executor.Secrets(mb.rb, mb.vals).String(runErr.Error())
	}
	step := ""
	if rs, err := w.readStatus(a.Fleet, mb); err == nil {
		step = stepReached(rs)
		if r.RunID == "" {
			r.RunID = rs.RunID
		}
		if rs.Started.Before(started) {
			r.Started = rs.Started
		}
	}
	if err := w.writeReport(a.Fleet, mb, dir); err != nil && r.Error == "" {
		w.say("%s/%s: report: %v", a.Fleet, a.Customer, err)
	}
	return w.finish(ctx, job, r, where, step)
}

// heldElsewhere reports whether a process holds the customer's run now.
func (w *worker) heldElsewhere(fleetID string, mb *member) bool {
	store, err := openStore(w.stateSpec(), fleetID, mb)
	if err != nil {
		return false
	}
	defer store.Close()
	held, _ := store.Holder()
	return held
}

// readStatus reads a customer's state afresh.
func (w *worker) readStatus(fleetID string, mb *member) (*executor.Status, error) {
	store, err := openStore(w.stateSpec(), fleetID, mb)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	return executor.ReadStatus(store)
}

// writeReport writes a run's report into the worker's directory.
func (w *worker) writeReport(fleetID string, mb *member, dir string) error {
	store, err := openStore(w.stateSpec(), fleetID, mb)
	if err != nil {
		return err
	}
	defer store.Close()
	return writeReport(store, "", LogPath(dir, mb.Name), ReportPath(dir, mb.Name))
}

func stepReached(st *executor.Status) string {
	step := ""
	for _, s := range st.Steps {
		step = s.ID
		if s.Status != executor.Succeeded && s.Status != executor.Skipped {
			break
		}
	}
	return step
}

func exitOf(outcome string) int {
	switch outcome {
	case OutcomeSucceeded:
		return exitcode.OK
	case OutcomeApproval:
		return exitcode.Approval
	case OutcomeRefused:
		return exitcode.Refused
	case OutcomeInterrupt:
		return exitcode.Interrupted
	}
	return exitcode.StepFailed
}

func (w *worker) warnOnce(msg string) {
	w.mu.Lock()
	if w.warned == nil {
		w.warned = map[string]bool{}
	}
	seen := w.warned[msg]
	w.warned[msg] = true
	w.mu.Unlock()
	if !seen {
		w.say("warning: %s", msg)
	}
}

func (w *worker) say(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.o.Out, format+"\n", args...)
}

// heartbeat keeps the job's attempt fresh (river_job.attempted_at) while
// its run goes on: a run whose heartbeat stops for RescueAfter lost its
// worker, and is taken over (reap).
func (w *worker) heartbeat(ctx context.Context, job *river.Job[RunArgs]) {
	t := time.NewTicker(w.o.RescueAfter / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, w.o.RescueAfter/4)
		w.q.pool.Exec(hctx, `UPDATE `+QueueSchema+`.river_job SET attempted_at = now() WHERE id = $1 AND state = 'running' AND attempt = $2`, job.ID, job.Attempt)
		w.q.pool.Exec(hctx, `UPDATE `+QueueSchema+`.fleet_run SET heartbeat_at = now() WHERE fleet_id = $1 AND customer = $2 AND worker = $3`, job.Args.Fleet, job.Args.Customer, w.o.ID)
		cancel()
	}
}

// reap takes over the runs whose worker died: a job of a run still
// "running" whose heartbeat is older than RescueAfter goes back to the queue
// (as River's own rescuer does for jobs with a timeout; a run has none, so
// River leaves it to this). Every worker reaps; the update is conditional,
// so a run is taken over once. The worker that takes its job resumes the run
// exactly where it stopped; were its old worker only slow, the run's lock
// keeps the two apart.
func (w *worker) reap(ctx context.Context) {
	t := time.NewTicker(w.o.RescueAfter / 4)
	defer t.Stop()
	for {
		rows, err := w.q.pool.Query(ctx, `UPDATE `+QueueSchema+`.river_job
			SET state = 'available', scheduled_at = now(),
			    errors = array_append(errors, jsonb_build_object('at', now(), 'attempt', attempt, 'error', 'its worker fell silent: the run is taken over', 'trace', '')),
			    metadata = metadata || jsonb_build_object('runbook:takeovers', coalesce((metadata->>'runbook:takeovers')::int, 0) + 1)
			WHERE kind = $1 AND state = 'running' AND attempted_at < now() - make_interval(secs => $2)
			RETURNING args->>'fleet', args->>'customer', attempted_by[cardinality(attempted_by)]`, RunArgs{}.Kind(), w.o.RescueAfter.Seconds())
		if err == nil {
			for rows.Next() {
				var fleet, customer, by string
				if rows.Scan(&fleet, &customer, &by) == nil {
					w.say("%s/%s: its worker (%s) fell silent: back in the queue, to be resumed", fleet, customer, by)
				}
			}
			rows.Close()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// claim decides, in a transaction that holds the fleet's row, what the job
// does: nothing (the run ended, or the job is of an older generation),
// wait (the fleet's concurrency is full), be skipped (the fleet's errors
// exceed its max-errors: recorded), or run — marked running, by this worker.
func (w *worker) claim(ctx context.Context, job *river.Job[RunArgs], curRunID string) (*claim, error) {
	a := job.Args
	c := &claim{}
	err := pgx.BeginFunc(ctx, w.q.pool, func(tx pgx.Tx) error {
		var gen, concN, errsN, errs int
		var state string
		err := tx.QueryRow(ctx, `SELECT generation, concurrency_n, errors_n, errors, fresh, yes, operator, ticket, name, state FROM `+QueueSchema+`.fleet WHERE id = $1 FOR UPDATE`, a.Fleet).
			Scan(&gen, &concN, &errsN, &errs, &c.fresh, &c.yes, &c.operator, &c.ticket, &c.name, &state)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && gen != a.Generation) {
			return nil // a job of a fleet (generation) that is no more
		}
		if err != nil {
			return err
		}
		if mine := stateName(w.o.State, w.o.Queue); state != mine {
			// This worker keeps states elsewhere than the fleet: it must not
			// run the fleet's runs (it would not find their states).
			c.wrongState = fmt.Sprintf("fleet %s keeps its states in %s, this worker in %s (--state)", a.Fleet, describeState(state), describeState(mine))
			c.snooze = true
			return nil
		}
		var status string
		var resume bool
		var prev *string
		var approve, rerun, took []byte
		err = tx.QueryRow(ctx, `SELECT status, resume, prev_run_id, approve, rerun, took_effect FROM `+QueueSchema+`.fleet_run WHERE fleet_id = $1 AND customer = $2 FOR UPDATE`, a.Fleet, a.Customer).
			Scan(&status, &resume, &prev, &approve, &rerun, &took)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		json.Unmarshal(approve, &c.approve)
		json.Unmarshal(rerun, &c.rerun)
		json.Unmarshal(took, &c.tookEffect)
		switch {
		case status == OutcomeRunning:
			c.mode = "takeover"
		case status == "queued" || resume:
			if errs > errsN {
				// The fleet's errors exceed its max-errors: no new run (nor
				// resume) starts. A run resumed keeps how it ended.
				if status == "queued" {
					status = OutcomeSkipped
				}
				_, err := tx.Exec(ctx, `UPDATE `+QueueSchema+`.fleet_run SET status = $3, resume = false, error = $4, ended_at = clock_timestamp() WHERE fleet_id = $1 AND customer = $2`,
					a.Fleet, a.Customer, status, fmt.Sprintf("not started: more than %d runs failed", errsN))
				if err == nil {
					w.say("%s/%s: not started: more than %d runs failed", a.Fleet, a.Customer, errsN)
				}
				return err
			}
			var running int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+QueueSchema+`.fleet_run WHERE fleet_id = $1 AND status = 'running'`, a.Fleet).Scan(&running); err != nil {
				return err
			}
			if running >= concN {
				c.snooze = true
				return nil
			}
			c.mode = "start"
			if resume {
				c.mode = "resume"
			}
		default:
			return nil // the run ended; nothing asked of it
		}
		if prev != nil {
			c.prevRunID = *prev
		} else if c.mode == "start" {
			// The run before this fleet's, if any: a state whose run id
			// differs from it is this fleet's run.
			c.prevRunID = curRunID
		}
		c.run = true
		_, err = tx.Exec(ctx, `UPDATE `+QueueSchema+`.fleet_run SET status = 'running', resume = false, worker = $3, attempt = $4, prev_run_id = $5,
			started_at = CASE WHEN $6 THEN clock_timestamp() ELSE coalesce(started_at, clock_timestamp()) END, ended_at = NULL, heartbeat_at = now(), error = NULL, exit = NULL
			WHERE fleet_id = $1 AND customer = $2`, a.Fleet, a.Customer, w.o.ID, job.Attempt, c.prevRunID, c.mode == "start")
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// finish records how a run ended, in a transaction that holds the fleet's
// row: its status, and an error counted in the fleet's errors.
func (w *worker) finish(ctx context.Context, job *river.Job[RunArgs], r *Result, state, step string) error {
	a := job.Args
	ctx = context.WithoutCancel(ctx)
	err := pgx.BeginFunc(ctx, w.q.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM `+QueueSchema+`.fleet WHERE id = $1 FOR UPDATE`, a.Fleet); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE `+QueueSchema+`.fleet_run SET status = $3, exit = $4, error = nullif($5, ''), run_id = nullif($6, ''), state = nullif($7, ''), step = nullif($8, ''), ended_at = clock_timestamp()
			WHERE fleet_id = $1 AND customer = $2 AND status = 'running' AND worker = $9`,
			a.Fleet, a.Customer, r.Outcome, r.Exit, r.Error, r.RunID, state, step, w.o.ID)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		if IsError(r.Outcome) {
			_, err = tx.Exec(ctx, `UPDATE `+QueueSchema+`.fleet SET errors = errors + 1, updated_at = now() WHERE id = $1`, a.Fleet)
		}
		return err
	})
	if err != nil {
		return err // River retries the job: the next attempt finds the run ended and records it
	}
	line := fmt.Sprintf("%s/%s: %s in %s", a.Fleet, a.Customer, r.Outcome, r.Ended.Sub(r.Started).Round(10*time.Millisecond))
	if r.Error != "" {
		line += ": " + Brief(r.Error)
	}
	w.say("%s", line)
	return nil
}
