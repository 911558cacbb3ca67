package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/pgstore"
	"github.com/runbookhq/runbook/internal/redact"
	"github.com/runbookhq/runbook/internal/shellword"
)

// The queue (docs/fleet.md): River's tables and the fleet's own, in the
// schema QueueSchema of the queue's database. A fleet is a row of
// QueueSchema.fleet (its rate control and its error count); each customer a
// row of QueueSchema.fleet_run (where its run stands) and one River job of
// kind RunArgs.Kind, unique per fleet, generation and customer.
//
// Every change of a customer's status happens in a transaction that holds
// its fleet's row (SELECT … FOR UPDATE): the count of runs in flight and of
// errors that a worker checks before it starts a run is exact across
// workers.
const (
	QueueSchema = "runbook_queue"
	queueName   = "runbook_fleet"
	// jobMaxAttempts bounds how often a run's job is taken over after its
	// worker died (each takeover is an attempt; a snooze is not).
	jobMaxAttempts = 100
)

// RunArgs is a River job: one customer's run of a fleet. It names the
// customer's vars files, which the workers read from a checkout they share;
// it holds no secret (secrets come from the vars files or the worker's
// environment).
type RunArgs struct {
	Fleet      string `json:"fleet" river:"unique"`
	Generation int    `json:"generation" river:"unique"`
	Customer   string `json:"customer" river:"unique"`
	// Round counts the jobs of a customer's run that fleet resume added
	// (when the last one had not yet left the running state).
	Round   int      `json:"round,omitempty" river:"unique"`
	Runbook string   `json:"runbook"`
	Vars    []string `json:"vars"`
	// Var are NAME=VALUE params for every customer (never a secret).
	Var []string `json:"var,omitempty"`
}

// Kind implements river.JobArgs.
func (RunArgs) Kind() string { return "runbook.fleet.run" }

// InsertOpts implements river.JobArgsWithInsertOpts: one job per customer
// and fleet generation, whatever state it is in.
func (RunArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: queueName, MaxAttempts: jobMaxAttempts,
		UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: rivertype.JobStates()}}
}

// Queue is a connection to a fleet queue.
type Queue struct {
	pool   *pgxpool.Pool
	client *river.Client[pgx.Tx]
	where  string // the URL without its password
	raw    string // the URL as given
}

// Where names the queue in messages (its URL without a password).
func (q *Queue) Where() string { return q.where }

// OpenQueue connects to the queue's database and brings its tables up to
// date (River's migrations and the fleet's tables, one process at a time).
// The URL's password, if any, never reaches a message; PGPASSWORD and
// ~/.pgpass are read as by libpq.
func OpenQueue(ctx context.Context, rawURL string) (*Queue, error) {
	red := redact.New()
	red.AddConnString(rawURL)
	where := red.String(rawURL)
	redactErr := func(err error, _ string) string { return red.String(err.Error()) }
	if !strings.HasPrefix(rawURL, "postgres://") && !strings.HasPrefix(rawURL, "postgresql://") {
		return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("--queue %s: want a postgres:// URL (the queue is a PostgreSQL database)", where))
	}
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("--queue %s: %v", where, redactErr(err, rawURL)))
	}
	cfg.MaxConns = max(cfg.MaxConns, 8)
	cfg.ConnConfig.RuntimeParams["application_name"] = "runbook/queue"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, exitcode.With(exitcode.Environment, fmt.Errorf("queue %s: %v", where, redactErr(err, rawURL)))
	}
	q := &Queue{pool: pool, where: where, raw: rawURL}
	if err := q.migrate(ctx); err != nil {
		pool.Close()
		return nil, exitcode.With(exitcode.Environment, fmt.Errorf("queue %s: %v", where, redactErr(err, rawURL)))
	}
	q.client, err = river.NewClient(riverpgxv5.New(pool), &river.Config{Schema: QueueSchema, Logger: quietLogger(os.Stderr)})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("queue %s: %w", where, err)
	}
	return q, nil
}

// Close closes the queue's connections.
func (q *Queue) Close() { q.pool.Close() }

// quietLogger is River's logger: warnings and errors on w.
func quietLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// queueLockKey serializes the migrations of concurrent processes.
const queueLockKey = 0x72756e62_6f6f6b71 // "runbookq"

const fleetTables = `
CREATE TABLE IF NOT EXISTS ` + QueueSchema + `.fleet (
    id              text PRIMARY KEY,
    runbook         text NOT NULL,
    name            text NOT NULL,
    vars            jsonb NOT NULL DEFAULT '[]',
    size            int NOT NULL,
    max_concurrency text NOT NULL,
    max_errors      text NOT NULL,
    concurrency_n   int NOT NULL,
    errors_n        int NOT NULL,
    generation      int NOT NULL DEFAULT 1,
    fresh           bool NOT NULL DEFAULT false,
    yes             bool NOT NULL DEFAULT false,
    operator        text NOT NULL DEFAULT '',
    ticket          text NOT NULL DEFAULT '',
    state           text NOT NULL DEFAULT '',
    errors          int NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ` + QueueSchema + `.fleet_run (
    fleet_id     text NOT NULL REFERENCES ` + QueueSchema + `.fleet (id) ON DELETE CASCADE,
    customer     text NOT NULL,
    vars         jsonb NOT NULL,
    job_id       bigint,
    round        int NOT NULL DEFAULT 0,
    status       text NOT NULL DEFAULT 'queued',
    resume       bool NOT NULL DEFAULT false,
    approve      jsonb NOT NULL DEFAULT '[]',
    rerun        jsonb NOT NULL DEFAULT '[]',
    took_effect  jsonb NOT NULL DEFAULT '[]',
    prev_run_id  text,
    run_id       text,
    worker       text,
    attempt      int,
    exit         int,
    error        text,
    step         text,
    state        text,
    started_at   timestamptz,
    ended_at     timestamptz,
    heartbeat_at timestamptz,
    PRIMARY KEY (fleet_id, customer)
);
`

func (q *Queue) migrate(ctx context.Context) error {
	conn, err := q.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(queueLockKey)); err != nil {
		return err
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(queueLockKey))
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+QueueSchema); err != nil {
		return err
	}
	m, err := rivermigrate.New(riverpgxv5.New(q.pool), &rivermigrate.Config{Schema: QueueSchema, Logger: quietLogger(io.Discard)})
	if err != nil {
		return err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("queue tables: %w", err)
	}
	_, err = conn.Exec(ctx, fleetTables)
	return err
}

// EnqueueOptions are a fleet started through the queue.
type EnqueueOptions struct {
	Options
	// Fleet is the fleet's id in the queue; "" for the runbook's name.
	Fleet string
	// State is where the runs' states go: "" for the queue's database (see
	// WorkerOptions.State); the workers must be given the same.
	State string
}

// stateName is how the queue records where a fleet's states are: "" for
// the queue's database, a URL without its password, or a directory as
// given.
func stateName(state, queue string) string {
	if state == "" || state == queue {
		return ""
	}
	red := redact.New()
	red.AddConnString(state)
	return red.String(state)
}

func describeState(name string) string {
	if name == "" {
		return "the queue's database"
	}
	return name
}

// Enqueue starts a fleet through the queue: a row for the fleet, one per
// customer, and one unique job per customer, in one transaction. Every
// customer's params are resolved first (exit 2 when one does not: nothing is
// enqueued), without secrets: those are the workers' to read.
//
// A fleet of that id whose runs are not all finished is refused (exit 4;
// resume it). A finished one starts a new generation: new jobs, its
// customers' rows reset. Fresh starts anew even over unfinished runs (their
// states are archived by the workers as they start each run), but never
// while one is in flight.
func (q *Queue) Enqueue(ctx context.Context, o EnqueueOptions) (string, error) {
	members, err := load(o.Runbook, o.Vars, o.Customers, true)
	if err != nil {
		return "", err
	}
	id := o.Fleet
	if id == "" {
		id = members[0].rb.Name
	}
	if !validName.MatchString(id) {
		return "", exitcode.With(exitcode.Invalid, fmt.Errorf("--fleet %q: a fleet's id is letters, digits, dots, dashes and underscores", id))
	}
	o.MaxConcurrency, o.MaxErrors = withDefaults(o.MaxConcurrency, o.MaxErrors)
	size := len(members)
	vars, _ := json.Marshal(nonNil(o.Vars))
	err = pgx.BeginFunc(ctx, q.pool, func(tx pgx.Tx) error {
		var gen int
		err := tx.QueryRow(ctx, `SELECT generation FROM `+QueueSchema+`.fleet WHERE id = $1 FOR UPDATE`, id).Scan(&gen)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			gen = 1
			_, err = tx.Exec(ctx, `INSERT INTO `+QueueSchema+`.fleet (id, runbook, name, vars, size, max_concurrency, max_errors, concurrency_n, errors_n, fresh, yes, operator, ticket, state)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
				id, o.Runbook, members[0].rb.Name, vars, size, o.MaxConcurrency.String(), o.MaxErrors.String(),
				o.MaxConcurrency.Concurrency(size), o.MaxErrors.Errors(size), o.Fresh, o.Yes, o.Operator, o.Ticket, stateName(o.State, q.raw))
			if err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			var open []string
			rows, err := tx.Query(ctx, `SELECT customer, status FROM `+QueueSchema+`.fleet_run WHERE fleet_id = $1 AND (status NOT IN ('succeeded', 'skipped') OR resume) ORDER BY customer`, id)
			if err != nil {
				return err
			}
			running := false
			for rows.Next() {
				var c, s string
				if err := rows.Scan(&c, &s); err != nil {
					return err
				}
				open = append(open, c+" ("+s+")")
				running = running || s == "running"
			}
			if err := rows.Err(); err != nil {
				return err
			}
			if len(open) > 0 && (!o.Fresh || running) {
				how := "continue them with runbook fleet resume --queue … --fleet " + shellword.Quote(id) + ", or start over with --fresh"
				if running {
					how = "wait for the runs in flight to end"
				}
				return exitcode.With(exitcode.Refused, fmt.Errorf("fleet %s has unfinished runs: %s; %s", id, strings.Join(open, ", "), how))
			}
			gen++
			if _, err := tx.Exec(ctx, `DELETE FROM `+QueueSchema+`.fleet_run WHERE fleet_id = $1`, id); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `UPDATE `+QueueSchema+`.fleet SET runbook = $2, name = $3, vars = $4, size = $5, max_concurrency = $6, max_errors = $7,
				concurrency_n = $8, errors_n = $9, fresh = $10, yes = $11, operator = $12, ticket = $13, generation = $14, state = $15, errors = 0, updated_at = now() WHERE id = $1`,
				id, o.Runbook, members[0].rb.Name, vars, size, o.MaxConcurrency.String(), o.MaxErrors.String(),
				o.MaxConcurrency.Concurrency(size), o.MaxErrors.Errors(size), o.Fresh, o.Yes, o.Operator, o.Ticket, gen, stateName(o.State, q.raw))
			if err != nil {
				return err
			}
		}
		approve, _ := json.Marshal(nonNil(o.Approve))
		var params []river.InsertManyParams
		for _, mb := range members {
			cv, _ := json.Marshal(mb.Vars)
			if _, err := tx.Exec(ctx, `INSERT INTO `+QueueSchema+`.fleet_run (fleet_id, customer, vars, approve) VALUES ($1, $2, $3, $4)`, id, mb.Name, cv, approve); err != nil {
				return err
			}
			params = append(params, river.InsertManyParams{Args: RunArgs{Fleet: id, Generation: gen, Customer: mb.Name, Runbook: o.Runbook, Vars: mb.Vars, Var: o.Vars}})
		}
		res, err := q.client.InsertManyTx(ctx, tx, params)
		if err != nil {
			return err
		}
		for i, r := range res {
			if _, err := tx.Exec(ctx, `UPDATE `+QueueSchema+`.fleet_run SET job_id = $3 WHERE fleet_id = $1 AND customer = $2`, id, members[i].Name, r.Job.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if exitcode.Of(err) != exitcode.StepFailed {
			return "", err
		}
		return "", exitcode.With(exitcode.Environment, fmt.Errorf("queue %s: %w", q.where, err))
	}
	return id, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// ResumeQueued continues a fleet through the queue: every customer whose run
// did not succeed and is not in flight is made to run again — resumed where
// it stopped when it began, started when it never did — with the approvals
// and the other resume options given, its fleet's errors counted afresh.
// It returns the customers resumed.
func (q *Queue) ResumeQueued(ctx context.Context, id string, o Options) ([]string, error) {
	approve, _ := json.Marshal(nonNil(o.Approve))
	rerun, _ := json.Marshal(nonNil(o.Rerun))
	took, _ := json.Marshal(nonNil(o.TookEffect))
	var resumed []string
	err := pgx.BeginFunc(ctx, q.pool, func(tx pgx.Tx) error {
		var size int
		var runbook string
		var varsJSON []byte
		var gen int
		err := tx.QueryRow(ctx, `SELECT size, runbook, vars, generation FROM `+QueueSchema+`.fleet WHERE id = $1 FOR UPDATE`, id).Scan(&size, &runbook, &varsJSON, &gen)
		if errors.Is(err, pgx.ErrNoRows) {
			return exitcode.With(exitcode.Invalid, fmt.Errorf("no fleet %s in the queue %s", id, q.where))
		}
		if err != nil {
			return err
		}
		set := `errors = 0, updated_at = now()`
		args := []any{id}
		if o.MaxConcurrency.IsSet() {
			args = append(args, o.MaxConcurrency.String(), o.MaxConcurrency.Concurrency(size))
			set += fmt.Sprintf(", max_concurrency = $%d, concurrency_n = $%d", len(args)-1, len(args))
		}
		if o.MaxErrors.IsSet() {
			args = append(args, o.MaxErrors.String(), o.MaxErrors.Errors(size))
			set += fmt.Sprintf(", max_errors = $%d, errors_n = $%d", len(args)-1, len(args))
		}
		if o.Yes {
			set += ", yes = true"
		}
		if _, err := tx.Exec(ctx, `UPDATE `+QueueSchema+`.fleet SET `+set+` WHERE id = $1`, args...); err != nil {
			return err
		}
		var vars []string
		json.Unmarshal(varsJSON, &vars)
		rows, err := tx.Query(ctx, `SELECT customer, status, job_id, round, vars, run_id IS NOT NULL OR status NOT IN ('queued', 'skipped') FROM `+QueueSchema+`.fleet_run
			WHERE fleet_id = $1 AND status NOT IN ('succeeded', 'running') AND (cardinality($2::text[]) = 0 OR customer = ANY($2)) ORDER BY customer`, id, nonNil(o.Only))
		if err != nil {
			return err
		}
		type todo struct {
			customer string
			job      *int64
			round    int
			vars     []string
			began    bool
		}
		var list []todo
		for rows.Next() {
			var t todo
			var status string
			var cv []byte
			if err := rows.Scan(&t.customer, &status, &t.job, &t.round, &cv, &t.began); err != nil {
				return err
			}
			json.Unmarshal(cv, &t.vars)
			list = append(list, t)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for _, t := range list {
			status := "queued"
			if _, err := tx.Exec(ctx, `UPDATE `+QueueSchema+`.fleet_run SET status = CASE WHEN $3 THEN status ELSE $4 END, resume = $3,
				approve = $5, rerun = $6, took_effect = $7, error = NULL WHERE fleet_id = $1 AND customer = $2`,
				id, t.customer, t.began, status, approve, rerun, took); err != nil {
				return err
			}
			again := false
			if t.job != nil {
				// The customer's job, made available again. One still
				// running has recorded its run's end but not yet left the
				// running state (River completes jobs asynchronously): it
				// will not be fetched again, so a new job takes its place.
				job, err := q.client.JobRetryTx(ctx, tx, *t.job)
				switch {
				case err == nil:
					again = job.State != rivertype.JobStateRunning
				case !errors.Is(err, river.ErrNotFound):
					return err
				}
			}
			if !again {
				// A new job: the last one is running still, or was cleaned
				// out of the queue (River keeps finished jobs for a day).
				res, err := q.client.InsertTx(ctx, tx, RunArgs{Fleet: id, Generation: gen, Customer: t.customer, Round: t.round + 1, Runbook: runbook, Vars: t.vars, Var: vars}, nil)
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `UPDATE `+QueueSchema+`.fleet_run SET job_id = $3, round = $4 WHERE fleet_id = $1 AND customer = $2`, id, t.customer, res.Job.ID, t.round+1); err != nil {
					return err
				}
			}
			resumed = append(resumed, t.customer)
		}
		return nil
	})
	if err != nil && exitcode.Of(err) == exitcode.StepFailed {
		err = exitcode.With(exitcode.Environment, fmt.Errorf("queue %s: %w", q.where, err))
	}
	return resumed, err
}

// QueuedFleet is a fleet as the queue records it.
type QueuedFleet struct {
	ID, Runbook, Name string
	Vars              []string
	Generation        int
	Rows              []*Row
	// Vars files by customer.
	CustomerVars map[string][]string
	// Pending counts the customers still to run: queued, running, or
	// resumed and not yet taken.
	Pending int
}

// Fleet reads a fleet's rows.
func (q *Queue) Fleet(ctx context.Context, id string) (*QueuedFleet, error) {
	f := &QueuedFleet{ID: id, CustomerVars: map[string][]string{}}
	var varsJSON []byte
	err := q.pool.QueryRow(ctx, `SELECT runbook, name, vars, generation FROM `+QueueSchema+`.fleet WHERE id = $1`, id).Scan(&f.Runbook, &f.Name, &varsJSON, &f.Generation)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("no fleet %s in the queue %s", id, q.where))
	}
	if err != nil {
		return nil, exitcode.With(exitcode.Environment, fmt.Errorf("queue %s: %w", q.where, err))
	}
	json.Unmarshal(varsJSON, &f.Vars)
	rows, err := q.pool.Query(ctx, `SELECT customer, vars, status, resume, coalesce(run_id, ''), coalesce(worker, ''), coalesce(error, ''), coalesce(step, ''), coalesce(state, ''), started_at, ended_at
		FROM `+QueueSchema+`.fleet_run WHERE fleet_id = $1 ORDER BY customer`, id)
	if err != nil {
		return nil, exitcode.With(exitcode.Environment, fmt.Errorf("queue %s: %w", q.where, err))
	}
	defer rows.Close()
	for rows.Next() {
		r := &Row{}
		var cv []byte
		var resume bool
		var started, ended *time.Time
		if err := rows.Scan(&r.Customer, &cv, &r.Outcome, &resume, &r.RunID, &r.Worker, &r.Error, &r.Step, &r.State, &started, &ended); err != nil {
			return nil, err
		}
		var vars []string
		json.Unmarshal(cv, &vars)
		f.CustomerVars[r.Customer] = vars
		if r.Outcome == "queued" {
			r.Outcome = OutcomeNotStarted
		}
		if started != nil {
			r.Started = started
			end := time.Now()
			if ended != nil && r.Outcome != OutcomeRunning {
				end = *ended
			}
			r.Duration = end.Sub(*started)
		}
		if resume || r.Outcome == OutcomeRunning || r.Outcome == OutcomeNotStarted {
			f.Pending++
		}
		f.Rows = append(f.Rows, r)
	}
	return f, rows.Err()
}

// Wait polls the fleet until no customer is pending, calling seen with
// each row whose outcome changed; it returns the fleet as it ended.
func (q *Queue) Wait(ctx context.Context, id string, every time.Duration, seen func(*Row)) (*QueuedFleet, error) {
	last := map[string]string{}
	for {
		f, err := q.Fleet(ctx, id)
		if err != nil {
			return nil, err
		}
		for _, r := range f.Rows {
			if last[r.Customer] != r.Outcome {
				last[r.Customer] = r.Outcome
				if seen != nil {
					seen(r)
				}
			}
		}
		if f.Pending == 0 {
			return f, nil
		}
		select {
		case <-ctx.Done():
			return f, exitcode.With(exitcode.Interrupted, fmt.Errorf("stopped waiting for the fleet %s (its runs go on: runbook fleet status --queue … --fleet %s)", id, shellword.Quote(id)))
		case <-time.After(every):
		}
	}
}

// StoreSpec is where a customer's state goes: in a control database (a
// postgres:// URL: the PostgreSQL store, docs/state-postgres.md) the run
// keyed fleet.FLEET.CUSTOMER (the URL's own ?key= is replaced: every
// customer has a run of its own, whatever its params); anything else is a
// directory of state files, one per customer (StatePath), for workers that
// share a file system.
func StoreSpec(spec, fleet, customer string) string {
	if !pgstore.IsURL(spec) {
		return StatePath(spec, customer)
	}
	key := StoreKey(fleet, customer)
	u, err := url.Parse(strings.TrimSpace(spec))
	if err != nil {
		return spec // OpenStore says what is wrong with it
	}
	q := u.Query()
	q.Set(pgstore.KeyParam, key)
	u.RawQuery = q.Encode()
	return u.String()
}

// StoreKey is a fleet customer's run in a control database.
func StoreKey(fleet, customer string) string { return "fleet." + fleet + "." + customer }

// openStore opens a customer's state store.
func openStore(spec, fleet string, mb *member) (executor.Store, error) {
	return executor.OpenStore(StoreSpec(spec, fleet, mb.Name), mb.rb, mb.vals)
}

// QueueStatus is the fleet's status table from the queue, with each run's
// state read from its store (without secrets) where the customer's vars
// files can be read here.
func (q *Queue) Status(ctx context.Context, id, stateSpec string) (*Table, *QueuedFleet, error) {
	f, err := q.Fleet(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	t := &Table{Name: id, Runbook: f.Runbook, Where: q.where}
	for _, r := range f.Rows {
		if r.RunID != "" || r.Outcome == OutcomeRunning {
			q.fillState(r, f, stateSpec)
		}
		t.Rows = append(t.Rows, r)
	}
	return t, f, nil
}

// fillState adds what a customer's state tells to its row: where the state
// is, the step the run reached, and whether a worker holds it now (a row
// "running" whose run nobody holds lost its worker and waits to be taken
// over: "unfinished").
func (q *Queue) fillState(r *Row, f *QueuedFleet, stateSpec string) {
	members, err := load(f.Runbook, f.Vars, []Customer{{Name: r.Customer, Vars: f.CustomerVars[r.Customer]}}, true)
	if err != nil {
		return
	}
	store, err := openStore(stateSpec, f.ID, members[0])
	if err != nil {
		return
	}
	defer store.Close()
	r.State = store.Where()
	got := &Row{Customer: r.Customer}
	if fillFromState(got, store) != nil || got.RunID == "" || (r.RunID != "" && got.RunID != r.RunID) {
		return // no state, or not this fleet's run
	}
	r.Step = got.Step
	if r.RunID == "" {
		r.RunID = got.RunID
	}
	if r.Outcome == OutcomeRunning && got.Outcome != OutcomeRunning {
		r.Outcome = OutcomeUnfinished
	}
	if r.Error == "" && r.Outcome != OutcomeSucceeded {
		r.Error = got.Error
	}
}

// OpenCustomerStore opens a customer's state store in spec (StoreSpec),
// resolving its params without secrets: for status and reports.
func OpenCustomerStore(spec, fleet, runbook string, vars []string, c Customer) (executor.Store, error) {
	members, err := load(runbook, vars, []Customer{c}, true)
	if err != nil {
		return nil, err
	}
	return openStore(spec, fleet, members[0])
}
