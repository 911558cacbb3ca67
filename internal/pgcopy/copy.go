// Package pgcopy copies a PostgreSQL database into another, in parallel and
// exactly once per table part: the schema's pre-data in one transaction,
// the rows streamed by COPY from one server into the other, every source
// session in one exported snapshot, and post-data (indexes, constraints,
// triggers, refreshes) after, several at a time. Every piece of work commits
// in one target transaction recorded in a Journal before its COMMIT, so
// that a copy that died resumes with the pieces not known committed, in a
// new snapshot, after checking that the source was not written since.
package pgcopy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"

	"github.com/runbookhq/runbook/internal/pgerr"
	"github.com/runbookhq/runbook/internal/pgquote"
)

// Journal keeps a copy's progress durably (actions.Journal, seen from here).
type Journal interface {
	// Unit returns a unit's data as of its last known commit; nil when
	// the unit has none.
	Unit(name string) json.RawMessage
	// Commit commits conn's open transaction as unit, recording it before
	// the COMMIT; once it returns nil, Unit(unit) is data.
	Commit(ctx context.Context, unit string, conn *pgx.Conn, data json.RawMessage) error
	// SavePlan makes the plan durable; LoadPlan returns it, nil when none
	// was saved.
	SavePlan(plan []byte) error
	LoadPlan() ([]byte, error)
}

// Observer is told what the copy does.
type Observer interface {
	Phase(p PhaseInfo)
	PartStart(t *Table, p Part)
	PartEnd(t *Table, p Part, rows, bytes int64, d time.Duration)
	Progress(p Progress)
	// ItemStart and ItemEnd bracket a post-data item's build (an index, a
	// constraint …).
	ItemStart(it Item)
	ItemEnd(it Item, d time.Duration)
}

// PhaseInfo says a phase of the copy begins: "schema", "data",
// "post-data", "verify"; Todo of Total items remain; Resumed when part of
// the copy was done by an earlier attempt or run.
type PhaseInfo struct {
	Name        string
	Todo, Total int
	Resumed     bool
}

// Progress is how far the data phase is.
type Progress struct {
	Bytes, TotalBytes int64
	Parts, TotalParts int
	Rows              int64
	Busy              int
	// Built of Items post-data items are built, Building are in progress.
	Built, Items, Building int
}

// Options configure a copy.
type Options struct {
	// Dial opens a new session on the source (target false) or the target.
	Dial func(ctx context.Context, target bool) (*pgx.Conn, error)
	// DumpEnv is the environment (and inherited files) with which pg_dump
	// reaches the source.
	DumpEnv func(ctx context.Context) ([]string, []*os.File, error)
	// Schema: copy pre-data before the rows and post-data after them.
	Schema bool
	// Jobs is how many COPY streams run at once; IndexJobs how many
	// post-data items are built at once.
	Jobs, IndexJobs int
	// Split: tables larger than this are copied in parts (0: never).
	Split  int64
	Filter Filter
	// StartOver discards a plan the journal holds: the copy starts again
	// (on a target emptied by the operator), its units named anew.
	StartOver bool
	// Verify is none, count or checksum.
	Verify   string
	Journal  Journal
	Observer Observer
}

// Plan is what a copy decided when it started, kept in the journal so that
// a resume copies the same parts and builds the same items.
type Plan struct {
	Tables       []*Table   `json:"tables"`
	Evidence     []Evidence `json:"evidence"`
	PreData      *Section   `json:"pre_data,omitempty"`
	PostData     *Section   `json:"post_data,omitempty"`
	Sequences    []string   `json:"sequences"`
	LargeObjects bool       `json:"large_objects"`
	Started      time.Time  `json:"started"`
	// Epoch counts the starts over: the units of an earlier epoch are
	// not this plan's.
	Epoch int `json:"epoch,omitempty"`
}

// Result sums up a copy.
type Result struct {
	Tables, Parts int
	Rows, Bytes   int64
	// Resumed parts were committed by an earlier attempt or run.
	Resumed int
	// Verified holds the tables' rows (and checksums) when verified.
	Verified []Check
}

// ErrSourceWritten is returned (wrapped) when a resume finds that the source
// was written since the copy started.
var ErrSourceWritten = errors.New("the source was written since the copy started")

// The journal's units besides the tables' parts.
const (
	unitPreData      = "pre-data"
	unitSequences    = "sequences"
	unitLargeObjects = "large-objects"
	unitPostPrefix   = "post-data:"
)

// done is the data of a unit with nothing more to say.
var done = json.RawMessage("true")

// partData is the data of a committed part.
type partData struct {
	Rows  int64 `json:"rows"`
	Bytes int64 `json:"bytes"`
}

// unit is the journal's name of a unit of this plan.
func (c *copier) unit(name string) string {
	if c.plan.Epoch == 0 {
		return name
	}
	return fmt.Sprintf("%d/%s", c.plan.Epoch, name)
}

type copier struct {
	Options
	plan     *Plan
	snapshot string
	resumed  bool

	bytes, rows atomic.Int64
	parts, busy atomic.Int64
	// built counts the post-data items built, building those in progress.
	built, building atomic.Int64
	// totalBytes and totalParts are the data's, for progress reports: set
	// by data before its workers start.
	totalBytes int64
	totalParts int
}

// Run copies the source into the target, or goes on with a copy the
// journal says started.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Jobs < 1 {
		o.Jobs = 1
	}
	if o.IndexJobs < 1 {
		o.IndexJobs = 1
	}
	c := &copier{Options: o}
	lead, err := o.Dial(ctx, false)
	if err != nil {
		return nil, err
	}
	defer lead.Close(context.Background())
	if err := c.start(ctx, lead); err != nil {
		return nil, err
	}
	res := &Result{Tables: len(c.plan.Tables)}
	if c.Schema && c.plan.PostData != nil {
		for i := range c.plan.PostData.Items {
			if c.Journal.Unit(c.unit(fmt.Sprintf("%s%d", unitPostPrefix, i+1))) != nil {
				c.built.Add(1) // by an earlier attempt
			}
		}
	}
	if c.Schema && c.Journal.Unit(c.unit(unitPreData)) == nil {
		c.Observer.Phase(PhaseInfo{Name: "schema", Todo: len(c.plan.PreData.Items), Total: len(c.plan.PreData.Items)})
		if err := c.preData(ctx); err != nil {
			return nil, err
		}
	}
	if err := c.data(ctx, lead, res); err != nil {
		return nil, err
	}
	lead.Close(ctx)
	if c.Schema {
		if err := c.postData(ctx); err != nil {
			return nil, err
		}
	}
	if c.Verify != "" && c.Verify != "none" {
		c.Observer.Phase(PhaseInfo{Name: "verify", Todo: len(c.plan.Tables), Total: len(c.plan.Tables)})
		checks, err := c.verify(ctx)
		if err != nil {
			return nil, err
		}
		res.Verified = checks
	}
	return res, nil
}

// start opens the copy's snapshot on lead and loads the plan, or makes it:
// a first start reads the source's write counters, exports a snapshot,
// lists the tables, dumps the schema in the snapshot, and saves the plan
// before anything is written to the target. A resume refuses when the
// source was written since the plan.
func (c *copier) start(ctx context.Context, lead *pgx.Conn) error {
	saved, err := c.Journal.LoadPlan()
	if err != nil {
		return err
	}
	// The write counters are read before the snapshot is exported on a
	// first start, after it on a resume: a write in between then shows as
	// one made since the start, never the other way.
	epoch := 0
	if saved != nil && c.StartOver {
		var old Plan
		if err := json.Unmarshal(saved, &old); err != nil {
			return fmt.Errorf("the copy's plan in the journal is not readable: %w", err)
		}
		epoch, saved = old.Epoch+1, nil
	}
	var evidence []Evidence
	if saved == nil {
		if evidence, err = readEvidence(ctx, lead); err != nil {
			return err
		}
	}
	if _, err := lead.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		return fmt.Errorf("beginning the copy's snapshot on the source: %w", err)
	}
	if err := sourceSettings(ctx, lead); err != nil {
		return err
	}
	if err := lead.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&c.snapshot); err != nil {
		return fmt.Errorf("exporting the copy's snapshot on the source: %w", err)
	}
	if saved != nil {
		c.plan = &Plan{}
		if err := json.Unmarshal(saved, c.plan); err != nil {
			return fmt.Errorf("the copy's plan in the journal is not readable: %w", err)
		}
		c.resumed = true
		if evidence, err = readEvidence(ctx, lead); err != nil {
			return err
		}
		if w := written(c.plan.Evidence, evidence); len(w) > 0 {
			return fmt.Errorf("%w (at %s): %s; the rest of the copy would not be consistent with what is already copied",
				ErrSourceWritten, c.plan.Started.Format(time.RFC3339), strings.Join(clip(w, 20), ", "))
		}
		return nil
	}
	p := &Plan{Started: time.Now().UTC(), Epoch: epoch}
	if p.Tables, err = listTables(ctx, lead, c.Filter, c.Split); err != nil {
		return err
	}
	p.Evidence = evidenceOf(evidence, p.Tables)
	if p.Sequences, err = listSequences(ctx, lead, c.Filter, p.Tables); err != nil {
		return err
	}
	if len(c.Filter.Include) == 0 {
		if err := lead.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_largeobject_metadata)").Scan(&p.LargeObjects); err != nil {
			return fmt.Errorf("looking for large objects on the source: %w", err)
		}
	}
	if c.Schema {
		env, files, err := c.DumpEnv(ctx)
		if err != nil {
			return err
		}
		var only []string
		if len(c.Filter.Include)+len(c.Filter.Exclude) > 0 {
			for _, t := range p.Tables {
				only = append(only, t.Ident())
			}
		}
		if p.PreData, err = dumpSection(ctx, "pre-data", c.snapshot, only, env, files); err != nil {
			return err
		}
		if p.PostData, err = dumpSection(ctx, "post-data", c.snapshot, only, env, files); err != nil {
			return err
		}
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := c.Journal.SavePlan(b); err != nil {
		return err
	}
	c.plan = p
	return nil
}

func clip(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
}

// sourceSettings: rows the role may not see fail the read instead of being
// left out (row security), and nothing is cut short by a timeout.
func sourceSettings(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, "SET LOCAL row_security = off; SET LOCAL statement_timeout = 0; SET LOCAL idle_in_transaction_session_timeout = 0")
	if err != nil {
		return fmt.Errorf("setting up a source session: %w", err)
	}
	return nil
}

// targetSession opens a target session that fires no trigger (foreign keys
// included) and is not audited by pgaudit.
func (c *copier) targetSession(ctx context.Context) (*pgx.Conn, error) {
	conn, err := c.Dial(ctx, true)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "SET session_replication_role = replica"); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("the copy's target sessions fire no triggers (session_replication_role = replica), which needs a superuser: %w", err)
	}
	if _, err := conn.Exec(ctx, "SET pgaudit.log = 'none'; SET statement_timeout = 0"); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("setting up a target session: %w", err)
	}
	return conn, nil
}

// sourceSession opens a source session in the copy's snapshot.
func (c *copier) sourceSession(ctx context.Context) (*pgx.Conn, error) {
	conn, err := c.Dial(ctx, false)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	if _, err := conn.Exec(ctx, "SET TRANSACTION SNAPSHOT "+pgquote.Literal(c.snapshot)); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("importing the copy's snapshot: %w", err)
	}
	if err := sourceSettings(ctx, conn); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return conn, nil
}

// preData creates the schema's objects in one target transaction.
func (c *copier) preData(ctx context.Context) error {
	conn, err := c.targetSession(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		return err
	}
	for _, s := range []string{c.plan.PreData.Preamble} {
		if err := execScript(ctx, conn, s); err != nil {
			return fmt.Errorf("pre-data: %w", err)
		}
	}
	for _, it := range c.plan.PreData.Items {
		if err := execScript(ctx, conn, it.SQL); err != nil {
			return fmt.Errorf("pre-data, %s %s: %w", strings.ToLower(it.Type), it.Name, err)
		}
	}
	return c.Journal.Commit(ctx, c.unit(unitPreData), conn, done)
}

// execScript runs statements through the simple query protocol.
func execScript(ctx context.Context, conn *pgx.Conn, sql string) error {
	if strings.TrimSpace(sql) == "" {
		return nil
	}
	_, err := conn.PgConn().Exec(ctx, sql).ReadAll()
	return sqlErr(err, "statement", sql)
}

// sqlErr renders a server's error with what failed and its SQL.
func sqlErr(err error, label, sql string) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return &pgerr.SQLError{PgError: pe, Label: label, SQL: strings.TrimSpace(sql)}
	}
	return err
}

// feed sends todo's items into ch, one worker at a time, until they are all
// sent or ctx is done (a worker failed); then it closes ch.
func feed[T any](ctx context.Context, ch chan<- T, todo []T) {
	defer close(ch)
	for _, x := range todo {
		select {
		case ch <- x:
		case <-ctx.Done():
			return
		}
	}
}

// errTargetEnded stops a part's read when the target's COPY has ended.
var errTargetEnded = errors.New("the target's COPY ended")

// job is one part of a table to copy.
type job struct {
	t *Table
	p Part
}

// data copies the parts not known committed, the largest first, Jobs at a
// time; then the large objects and the sequences.
func (c *copier) data(ctx context.Context, lead *pgx.Conn, res *Result) error {
	var todo []job
	for _, t := range c.plan.Tables {
		for _, p := range t.Parts {
			res.Parts++
			c.totalBytes += p.Bytes
			if d := c.Journal.Unit(c.unit(p.ID)); d != nil {
				var pd partData
				json.Unmarshal(d, &pd)
				res.Resumed++
				res.Rows += pd.Rows
				res.Bytes += pd.Bytes
				c.bytes.Add(p.Bytes)
				c.parts.Add(1)
				continue
			}
			todo = append(todo, job{t, p})
		}
	}
	c.totalParts = res.Parts
	c.Observer.Phase(PhaseInfo{Name: "data", Todo: len(todo), Total: res.Parts, Resumed: res.Resumed > 0})
	sort.SliceStable(todo, func(i, j int) bool { return todo[i].p.Bytes > todo[j].p.Bytes })

	stop := make(chan struct{})
	var ticker sync.WaitGroup
	ticker.Add(1)
	go func() {
		defer ticker.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				c.progress()
			}
		}
	}()
	defer func() { close(stop); ticker.Wait(); c.progress() }()

	g, gctx := errgroup.WithContext(ctx)
	jobs := make(chan job)
	var mu sync.Mutex
	// A table's indexes and key constraints are built as soon as its last
	// part committed, while other tables are still copied (IndexJobs at a
	// time): they overlap the copy, and a resumed copy finds those of the
	// tables done before the crash built.
	early := c.earlyItems()
	left := map[string]int{}
	for _, j := range todo {
		left[j.t.Ident()]++
	}
	items := make(chan int, early.n)
	ready := func(table string) {
		for _, i := range early.byTable[table] {
			items <- i
		}
	}
	for _, t := range c.plan.Tables {
		if left[t.Ident()] == 0 {
			ready(t.Ident())
		}
	}
	if early.n > 0 {
		for range c.IndexJobs {
			g.Go(func() error { return c.postWorker(gctx, items) })
		}
	}
	var copying sync.WaitGroup
	for range min(c.Jobs, max(len(todo), 1)) {
		copying.Add(1)
		g.Go(func() error {
			defer copying.Done()
			w := &worker{c: c}
			defer w.close()
			for j := range jobs {
				rows, bytes, err := w.copyPart(gctx, j)
				if err != nil {
					return err
				}
				mu.Lock()
				res.Rows += rows
				res.Bytes += bytes
				if left[j.t.Ident()]--; left[j.t.Ident()] == 0 {
					ready(j.t.Ident())
				}
				mu.Unlock()
			}
			return nil
		})
	}
	g.Go(func() error {
		copying.Wait()
		close(items)
		return nil
	})
	g.Go(func() error { feed(gctx, jobs, todo); return nil })
	if err := g.Wait(); err != nil {
		return err
	}
	if c.plan.LargeObjects && c.Journal.Unit(c.unit(unitLargeObjects)) == nil {
		if err := c.largeObjects(ctx, lead); err != nil {
			return err
		}
	}
	if len(c.plan.Sequences) > 0 && c.Journal.Unit(c.unit(unitSequences)) == nil {
		if err := c.sequences(ctx, lead); err != nil {
			return err
		}
	}
	return nil
}

func (c *copier) progress() {
	items := 0
	if c.Schema && c.plan.PostData != nil {
		items = len(c.plan.PostData.Items)
	}
	c.Observer.Progress(Progress{Bytes: c.bytes.Load(), TotalBytes: c.totalBytes, Parts: int(c.parts.Load()), TotalParts: c.totalParts,
		Rows: c.rows.Load(), Busy: int(c.busy.Load()), Built: int(c.built.Load()), Items: items, Building: int(c.building.Load())})
}

// worker holds a source session in the snapshot and a target session.
type worker struct {
	c        *copier
	src, tgt *pgx.Conn
}

func (w *worker) close() {
	if w.src != nil {
		w.src.Close(context.Background())
	}
	if w.tgt != nil {
		w.tgt.Close(context.Background())
	}
}

// counter counts the bytes a COPY streams, into the copy's progress too.
type counter struct {
	w     io.Writer
	n     int64
	total *atomic.Int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.total.Add(int64(n))
	return n, err
}

// copyPart streams one part from the source into the target, in one target
// transaction committed through the journal. A failed read fails the
// target's COPY: a part never commits truncated.
func (w *worker) copyPart(ctx context.Context, j job) (rows, bytes int64, err error) {
	c := w.c
	if w.src == nil {
		if w.src, err = c.sourceSession(ctx); err != nil {
			return 0, 0, err
		}
	}
	if w.tgt == nil {
		if w.tgt, err = c.targetSession(ctx); err != nil {
			return 0, 0, err
		}
	}
	c.busy.Add(1)
	defer c.busy.Add(-1)
	c.Observer.PartStart(j.t, j.p)
	start := time.Now()
	cols := ""
	if j.t.Columns != "" {
		cols = " (" + j.t.Columns + ")"
	}
	out := fmt.Sprintf("COPY %s%s TO STDOUT", j.t.Ident(), cols)
	if j.p.Where != "" {
		sel := j.t.Columns
		if sel == "" {
			sel = "*"
		}
		out = fmt.Sprintf("COPY (SELECT %s FROM ONLY %s WHERE %s) TO STDOUT", sel, j.t.Ident(), j.p.Where)
	}
	in := fmt.Sprintf("COPY %s%s FROM STDIN", j.t.Ident(), cols)
	if j.t.Binary {
		out += " (FORMAT binary)"
		in += " (FORMAT binary)"
	}
	fail := func(err error) (int64, int64, error) {
		return 0, 0, fmt.Errorf("copying %s (part %s): %w", j.t.Label(), j.p.ID, err)
	}
	if _, err := w.tgt.Exec(ctx, "BEGIN"); err != nil {
		return fail(err)
	}
	pr, pw := io.Pipe()
	cnt := &counter{w: pw, total: &c.bytes}
	readErr := make(chan error, 1)
	go func() {
		// The server sends a row per message, and pgconn writes each: a
		// buffer makes them large writes into the pipe, which costs a
		// handoff between goroutines per write.
		bw := bufio.NewWriterSize(cnt, 256<<10)
		_, err := w.src.PgConn().CopyTo(ctx, bw, out)
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			err = fmt.Errorf("reading from the source: %w", err)
			pw.CloseWithError(err)
		} else {
			pw.Close()
		}
		readErr <- err
	}()
	tag, werr := w.tgt.PgConn().CopyFrom(ctx, pr, in)
	pr.CloseWithError(errTargetEnded)
	rerr := <-readErr
	switch {
	case werr != nil && (rerr == nil || errors.Is(rerr, errTargetEnded)):
		// The target failed first (a duplicate key, a missing table …):
		// the read stopped because of it.
		return fail(fmt.Errorf("writing into the target: %w", sqlErr(werr, "COPY", in)))
	case rerr != nil:
		w.tgt.Exec(context.Background(), "ROLLBACK")
		return fail(rerr)
	}
	rows = tag.RowsAffected()
	data, _ := json.Marshal(partData{Rows: rows, Bytes: cnt.n})
	if err := c.Journal.Commit(ctx, c.unit(j.p.ID), w.tgt, data); err != nil {
		return fail(err)
	}
	c.rows.Add(rows)
	c.parts.Add(1)
	c.bytes.Add(j.p.Bytes - cnt.n) // the progress counts a part's expected size once it is done
	c.Observer.PartEnd(j.t, j.p, rows, cnt.n, time.Since(start))
	return rows, cnt.n, nil
}

// largeObjects copies every large object, its OID kept, in one target
// transaction.
func (c *copier) largeObjects(ctx context.Context, lead *pgx.Conn) error {
	tgt, err := c.targetSession(ctx)
	if err != nil {
		return err
	}
	defer tgt.Close(context.Background())
	if _, err := tgt.Exec(ctx, "BEGIN"); err != nil {
		return err
	}
	rows, err := lead.Query(ctx, "SELECT oid FROM pg_largeobject_metadata ORDER BY oid")
	if err != nil {
		return fmt.Errorf("listing the source's large objects: %w", err)
	}
	oids, err := pgx.CollectRows(rows, pgx.RowTo[uint32])
	if err != nil {
		return fmt.Errorf("listing the source's large objects: %w", err)
	}
	for _, oid := range oids {
		var data []byte
		if err := lead.QueryRow(ctx, "SELECT lo_get($1)", oid).Scan(&data); err != nil {
			return fmt.Errorf("reading large object %d: %w", oid, err)
		}
		if _, err := tgt.Exec(ctx, "SELECT lo_create($1) WHERE NOT EXISTS (SELECT FROM pg_largeobject_metadata WHERE oid = $1)", oid); err != nil {
			return fmt.Errorf("creating large object %d: %w", oid, err)
		}
		if _, err := tgt.Exec(ctx, "SELECT lo_put($1, 0, $2)", oid, data); err != nil {
			return fmt.Errorf("writing large object %d: %w", oid, err)
		}
	}
	return c.Journal.Commit(ctx, c.unit(unitLargeObjects), tgt, done)
}

// sequences sets every sequence of the plan where it is on the source.
func (c *copier) sequences(ctx context.Context, lead *pgx.Conn) error {
	tgt, err := c.targetSession(ctx)
	if err != nil {
		return err
	}
	defer tgt.Close(context.Background())
	if _, err := tgt.Exec(ctx, "BEGIN"); err != nil {
		return err
	}
	for _, s := range c.plan.Sequences {
		var last int64
		var called bool
		if err := lead.QueryRow(ctx, "SELECT last_value, is_called FROM "+s).Scan(&last, &called); err != nil {
			return fmt.Errorf("reading sequence %s: %w", s, err)
		}
		if _, err := tgt.Exec(ctx, "SELECT setval($1::regclass, $2, $3)", s, last, called); err != nil {
			return fmt.Errorf("setting sequence %s: %w", s, err)
		}
	}
	return c.Journal.Commit(ctx, c.unit(unitSequences), tgt, done)
}

// listSequences lists the sequences to set: all of them without a filter,
// else those the filter matches or a copied table owns.
func listSequences(ctx context.Context, q *pgx.Conn, f Filter, tables []*Table) ([]string, error) {
	rows, err := q.Query(ctx, `
SELECT format('%I.%I', n.nspname, c.relname), n.nspname || '.' || c.relname,
       coalesce((SELECT format('%I.%I', tn.nspname, t.relname) FROM pg_depend d
                   JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass
                    AND d.deptype IN ('a', 'i') LIMIT 1), '')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("listing the source's sequences: %w", err)
	}
	copied := make(map[string]bool, len(tables))
	for _, t := range tables {
		copied[t.Ident()] = true
	}
	var seqs []string
	for rows.Next() {
		var ident, label, owner string
		if err := rows.Scan(&ident, &label, &owner); err != nil {
			rows.Close()
			return nil, err
		}
		filtered := len(f.Include)+len(f.Exclude) > 0
		if !filtered || copied[owner] || (owner == "" && f.match(label)) {
			seqs = append(seqs, ident)
		}
	}
	return seqs, rows.Err()
}

// postData builds the post-data items not known built: indexes and the
// constraints that build one, IndexJobs at a time, then the rest in the
// dump's order; each in its own target transaction.
func (c *copier) postData(ctx context.Context) error {
	var par, seq []int
	for i, it := range c.plan.PostData.Items {
		if c.Journal.Unit(c.unit(fmt.Sprintf("%s%d", unitPostPrefix, i+1))) != nil {
			continue
		}
		if it.parallel() {
			par = append(par, i)
		} else {
			seq = append(seq, i)
		}
	}
	total := len(c.plan.PostData.Items)
	c.Observer.Phase(PhaseInfo{Name: "post-data", Todo: len(par) + len(seq), Total: total, Resumed: c.resumed && len(par)+len(seq) < total})
	g, gctx := errgroup.WithContext(ctx)
	items := make(chan int)
	for range min(c.IndexJobs, max(len(par), 1)) {
		g.Go(func() error { return c.postWorker(gctx, items) })
	}
	g.Go(func() error { feed(gctx, items, par); return nil })
	if err := g.Wait(); err != nil {
		return err
	}
	if len(seq) == 0 {
		return nil
	}
	conn, err := c.postSession(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, i := range seq {
		if err := c.postItem(ctx, conn, i); err != nil {
			return err
		}
	}
	return nil
}

// postWorker builds the post-data items it receives, in a session of its
// own, until items is closed.
func (c *copier) postWorker(ctx context.Context, items <-chan int) error {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for i := range items {
		if conn == nil {
			var err error
			if conn, err = c.postSession(ctx); err != nil {
				return err
			}
		}
		if err := c.postItem(ctx, conn, i); err != nil {
			return err
		}
	}
	return nil
}

// earlyIndexes are the post-data items built as soon as their table's rows
// are all copied: indexes and key constraints of a copied table, not built
// yet.
type earlyIndexes struct {
	byTable map[string][]int
	n       int
}

// itemTable finds the table an index or a constraint is on, as pg_dump
// writes it (CREATE [UNIQUE] INDEX name ON [ONLY] table …, ALTER TABLE
// [ONLY] table ADD CONSTRAINT …).
var itemTable = regexp.MustCompile(`^(?:CREATE (?:UNIQUE )?INDEX (?:"(?:[^"]|"")*"|\S+) ON (?:ONLY )?|ALTER TABLE (?:ONLY )?)((?:"(?:[^"]|"")*"|[^\s."]+)\.(?:"(?:[^"]|"")*"|[^\s."(]+))\s`)

func (c *copier) earlyItems() earlyIndexes {
	e := earlyIndexes{byTable: map[string][]int{}}
	if !c.Schema || c.plan.PostData == nil {
		return e
	}
	copied := map[string]bool{}
	for _, t := range c.plan.Tables {
		copied[t.Ident()] = true
	}
	for i, it := range c.plan.PostData.Items {
		if !it.parallel() || c.Journal.Unit(c.unit(fmt.Sprintf("%s%d", unitPostPrefix, i+1))) != nil {
			continue
		}
		m := itemTable.FindStringSubmatch(stripComments(it.SQL))
		if m == nil || !copied[m[1]] {
			continue // a partitioned table's: built in post-data
		}
		e.byTable[m[1]] = append(e.byTable[m[1]], i)
		e.n++
	}
	return e
}

// stripComments drops the comment lines and blank lines before a statement.
func stripComments(sql string) string {
	for {
		sql = strings.TrimLeft(sql, " \t\n")
		if !strings.HasPrefix(sql, "--") {
			return sql
		}
		_, rest, ok := strings.Cut(sql, "\n")
		if !ok {
			return ""
		}
		sql = rest
	}
}

// postMemory is the maintenance_work_mem of the sessions that build
// indexes, unless the server's is larger: the default (64MB) makes a large
// table's index build sort on disk.
const postMemory = 256 << 10 // kB

func (c *copier) postSession(ctx context.Context) (*pgx.Conn, error) {
	conn, err := c.targetSession(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(`SELECT set_config('maintenance_work_mem', '%dkB', false)
		WHERE (SELECT setting::bigint FROM pg_settings WHERE name = 'maintenance_work_mem') < %d`, postMemory, postMemory)); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("post-data: %w", err)
	}
	if err := execScript(ctx, conn, c.plan.PostData.Preamble); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("post-data: %w", err)
	}
	return conn, nil
}

func (c *copier) postItem(ctx context.Context, conn *pgx.Conn, i int) error {
	it := c.plan.PostData.Items[i]
	start := time.Now()
	c.building.Add(1)
	c.Observer.ItemStart(it)
	c.progress()
	err := c.buildItem(ctx, conn, i, it)
	c.building.Add(-1)
	if err != nil {
		return err
	}
	c.built.Add(1)
	c.Observer.ItemEnd(it, time.Since(start))
	c.progress()
	return nil
}

func (c *copier) buildItem(ctx context.Context, conn *pgx.Conn, i int, it Item) error {
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		return err
	}
	if err := execScript(ctx, conn, it.SQL); err != nil {
		conn.Exec(context.Background(), "ROLLBACK")
		return fmt.Errorf("post-data, %s %s: %w", strings.ToLower(it.Type), it.Name, err)
	}
	return c.Journal.Commit(ctx, c.unit(fmt.Sprintf("%s%d", unitPostPrefix, i+1)), conn, done)
}
