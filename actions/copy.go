package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
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
	if _, err := rc.Conns.Conn(ctx, a.To.Name); err != nil {
		return nil, err
	}
	obs := &copyObserver{events: rc.Events, start: time.Now(), jobs: jobs, indexJobs: idx}
	res, err := pgcopy.Run(ctx, pgcopy.Options{
		Dial: func(ctx context.Context, target bool) (*pgx.Conn, error) {
			if target {
				return rc.Conns.Extra(ctx, a.To.Name)
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
