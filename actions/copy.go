package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/pgcopy"
	"github.com/runbookhq/runbook/internal/pgerr"
	"github.com/runbookhq/runbook/internal/pgtx"
	"github.com/runbookhq/runbook/schema"
)

// Copy copies a database into another: the schema (pre-data, then
// post-data after the rows), every table's rows by COPY streamed from one
// server into the other in parallel, in one snapshot of the source, large
// objects and sequences; exactly once per table part (internal/pgcopy).
type Copy struct {
	From            schema.ConnRef `yaml:"from" required:"true" doc:"The connection copied from."`
	To              schema.ConnRef `yaml:"to" required:"true" doc:"The connection copied into."`
	Schema          *bool          `yaml:"schema" default:"true" doc:"Copy the schema too: pre-data (tables, types, functions …) in one transaction before the rows, post-data (indexes, constraints, triggers) after them; without owners or privileges. false: the tables must exist on the target, empty."`
	Jobs            int            `yaml:"jobs" minimum:"1" maximum:"64" doc:"COPY streams at once (default: the CPUs, at most 8)."`
	IndexJobs       int            `yaml:"index_jobs" minimum:"1" maximum:"64" doc:"Indexes and constraints built at once (default: jobs)."`
	SplitLargerThan schema.Size    `yaml:"split_larger_than" default:"1GB" doc:"Tables larger than this are copied in parts, in parallel: ranges of blocks (before PostgreSQL 14, of a one-column integer primary key). 0: never split."`
	Include         []string       `yaml:"include" doc:"Copy only the tables matching one of these schema.table patterns (* and ? wildcards; a partition also matches by its partitioned table's name)."`
	Exclude         []string       `yaml:"exclude" doc:"Leave out the tables matching one of these schema.table patterns."`
	Verify          string         `yaml:"verify" default:"count" enum:"none,count,checksum" doc:"After the copy, compare every table on both sides: its rows (count), or its rows and a checksum of their values (checksum)."`

	Keys schema.Positions `yaml:"-"`
}

func init() {
	Register("copy", "Copy a database into another, in parallel, resumable per table part.", func() Runner { return &Copy{} })
}

// Kind implements schema.Action.
func (*Copy) Kind() string { return "copy" }

// The capabilities the executor relies on for a journaled action.
var (
	_ Effecter  = (*Copy)(nil)
	_ Retrier   = (*Copy)(nil)
	_ Describer = (*Copy)(nil)
)

// Effects implements Effecter: every piece of the copy commits through the
// journal.
func (*Copy) Effects() Effects { return Journaled }

// Retryable implements Retrier: a lost connection is worth another attempt,
// which goes on from the parts committed; a source written since is not.
func (*Copy) Retryable(err error) bool {
	return !errors.Is(err, pgcopy.ErrSourceWritten) && pgerr.Transient(err)
}

// DescribePoint implements Describer.
func (*Copy) DescribePoint(unit string, data []byte) string {
	if data == nil {
		return unit + " not copied"
	}
	return unit + " copied"
}

// DescribeDoubt implements Describer.
func (*Copy) DescribeDoubt(step, unit string, _, _ []byte) string {
	return fmt.Sprintf("%s of step %s was copied", unit, step)
}

// Validate implements schema.Validator.
func (a *Copy) Validate(v *schema.Validation) {
	if a.From.Name != "" && a.From.Name == a.To.Name {
		v.Errorf(a.Keys["to"], "copy: from and to are the same connection (%s)", a.From.Name)
	}
	if a.SplitLargerThan < 0 {
		v.Errorf(a.Keys["split_larger_than"], "copy: split_larger_than must not be negative")
	}
}

// jobs is the number of COPY streams: jobs, else the CPUs, at most 8.
func (a *Copy) jobs() int {
	if a.Jobs > 0 {
		return a.Jobs
	}
	return min(runtime.NumCPU(), 8)
}

// Run implements Runner.
func (a *Copy) Run(ctx context.Context, rc *Context) (Outputs, error) {
	jobs := a.jobs()
	idx := a.IndexJobs
	if idx == 0 {
		idx = jobs
	}
	// The connections are opened (and the servers identified) first: a
	// resume against another server refuses before anything is read.
	if _, err := rc.Conns.Conn(ctx, a.From.Name); err != nil {
		return nil, err
	}
	tgt, err := rc.Conns.Conn(ctx, a.To.Name)
	if err != nil {
		return nil, err
	}
	sessions := &copySessions{rc: rc}
	if err := sessions.endOrphans(ctx, tgt); err != nil {
		return nil, err
	}
	obs := &copyObserver{events: rc.Events, start: time.Now(), jobs: jobs}
	res, err := pgcopy.Run(ctx, pgcopy.Options{
		Dial: func(ctx context.Context, target bool) (*pgx.Conn, error) {
			if target {
				conn, err := rc.Conns.Extra(ctx, a.To.Name)
				if err != nil {
					return nil, err
				}
				if err := sessions.add(ctx, conn); err != nil {
					conn.Close(context.Background())
					return nil, err
				}
				return conn, nil
			}
			return rc.Conns.Extra(ctx, a.From.Name)
		},
		DumpEnv: func(ctx context.Context) ([]string, []*os.File, error) {
			env, files, err := rc.Conns.ChildEnv(ctx, a.From.Name)
			if err != nil {
				return nil, nil, err
			}
			return append(os.Environ(), env...), files, nil
		},
		Schema:    a.Schema == nil || *a.Schema,
		Jobs:      jobs,
		IndexJobs: idx,
		Split:     int64(a.SplitLargerThan),
		Filter:    pgcopy.Filter{Include: a.Include, Exclude: a.Exclude},
		Verify:    a.Verify,
		StartOver: rc.StartOver,
		Journal:   &copyJournal{rc: rc, target: a.To.Name},
		Observer:  obs,
	})
	if err != nil {
		if errors.Is(err, pgcopy.ErrSourceWritten) {
			return nil, exitcode.With(exitcode.Refused, fmt.Errorf("%w.\nEmpty the target, then start the copy over: resume with --rerun %s", err, rc.Step.ID))
		}
		return nil, err
	}
	rc.Events.Emit(CopyDone{Tables: res.Tables, Parts: res.Parts, Resumed: res.Resumed, Rows: res.Rows, Bytes: res.Bytes,
		Verify: a.Verify, Duration: time.Since(obs.start)})
	out := Outputs{"tables": res.Tables, "parts": res.Parts, "rows": res.Rows, "bytes": res.Bytes, "resumed_parts": res.Resumed}
	if res.Verified != nil {
		v := make([]map[string]any, len(res.Verified))
		for i, c := range res.Verified {
			v[i] = map[string]any{"table": c.Table, "rows": c.TargetRows}
			if c.TargetChecksum != "" {
				v[i]["checksum"] = c.TargetChecksum
			}
		}
		out["verified"] = v
	}
	return out, nil
}

// copyJournal is the step's Journal as the copy sees it.
type copyJournal struct {
	rc     *Context
	target string
}

func (j *copyJournal) Unit(name string) json.RawMessage { return j.rc.Journal.Unit(name) }

// Commit records conn's transaction before its COMMIT, then commits it.
func (j *copyJournal) Commit(ctx context.Context, unit string, conn *pgx.Conn, data json.RawMessage) error {
	var xid uint64
	if err := conn.QueryRow(ctx, "SELECT pg_current_xact_id()::text::bigint").Scan(&xid); err != nil {
		return err
	}
	id, err := pgtx.Identify(ctx, conn.PgConn())
	if err != nil {
		return err
	}
	tx := Tx{Unit: unit, Tx: id.Tx(j.target, xid), Data: data}
	if err := j.rc.Journal.BeforeCommit(ctx, tx); err != nil {
		return err
	}
	tag, err := conn.Exec(ctx, "COMMIT")
	if err != nil {
		return err
	}
	if tag.String() != "COMMIT" {
		return fmt.Errorf("%s: the transaction was rolled back", unit)
	}
	return j.rc.Journal.Committed(tx)
}

const copyPlanBlob = "plan"

func (j *copyJournal) SavePlan(plan []byte) error {
	return j.rc.Journal.PutBlob(copyPlanBlob, func(w io.Writer) error {
		_, err := w.Write(plan)
		return err
	})
}

func (j *copyJournal) LoadPlan() ([]byte, error) {
	r, err := j.rc.Journal.OpenBlob(copyPlanBlob)
	if errors.Is(err, ErrNoBlob) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// copySessions keeps, in a blob of the step, the identities of the copy's
// target sessions, so that a resume ends those a dead invocation left on the
// server before it starts. A client killed during a CREATE INDEX does not stop
// it: the server builds the index to the end (a core and the table's lock
// held), then rolls it back when it finds the client gone, and the resume's
// build of the same index waits for it all that time before starting over.
type copySessions struct {
	rc   *Context
	mu   sync.Mutex
	list []copySession
}

type copySession struct {
	PID   uint32    `json:"pid"`
	Start time.Time `json:"backend_start"`
}

const copySessionsBlob = "sessions"

// add records conn's backend before the copy uses it.
func (s *copySessions) add(ctx context.Context, conn *pgx.Conn) error {
	id, err := pgtx.Identify(ctx, conn.PgConn())
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, copySession{PID: id.PID, Start: id.Start})
	return s.rc.Journal.PutBlob(copySessionsBlob, func(w io.Writer) error {
		return json.NewEncoder(w).Encode(s.list)
	})
}

// endOrphans terminates the target sessions an earlier invocation recorded
// that still run (pid and start time both match: never another session),
// and waits until they are gone, at most a minute.
func (s *copySessions) endOrphans(ctx context.Context, tgt *pgx.Conn) error {
	r, err := s.rc.Journal.OpenBlob(copySessionsBlob)
	if errors.Is(err, ErrNoBlob) {
		return nil
	}
	if err != nil {
		return err
	}
	var old []copySession
	err = json.NewDecoder(r).Decode(&old)
	r.Close()
	if err != nil || len(old) == 0 {
		return nil // an interrupted write: the sessions of a copy that had barely begun
	}
	pids, starts := make([]int32, len(old)), make([]time.Time, len(old))
	for i, o := range old {
		pids[i], starts[i] = int32(o.PID), o.Start
	}
	// Terminated again every 100 ms until none is left: the signal is
	// harmless to repeat, and pid and start time are matched every time.
	const end = `SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a JOIN unnest($1::int[], $2::timestamptz[]) o(pid, start)
		ON a.pid = o.pid AND date_trunc('milliseconds', a.backend_start) = date_trunc('milliseconds', o.start)`
	deadline := time.Now().Add(time.Minute)
	for ended := -1; ; {
		tag, err := tgt.Exec(ctx, end, pids, starts)
		if err != nil {
			return fmt.Errorf("ending the target sessions of the copy's last invocation: %w", err)
		}
		left := int(tag.RowsAffected())
		if ended < 0 {
			ended = left
		}
		if left == 0 {
			if ended > 0 {
				s.rc.Events.Emit(CopyOrphans{Sessions: ended})
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d target session(s) of the copy's last invocation did not end within a minute of pg_terminate_backend", left)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
