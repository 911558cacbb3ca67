package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/runbookhq/runbook/internal/event"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/pgerr"
	"github.com/runbookhq/runbook/internal/pgtx"
	"github.com/runbookhq/runbook/internal/pgvalue"
	"github.com/runbookhq/runbook/internal/sqlsplit"
	"github.com/runbookhq/runbook/internal/textdiff"
	"github.com/runbookhq/runbook/schema"
)

// Generate runs a query whose result cells are SQL statements, then executes
// them, as psql's \gexec does.
type Generate struct {
	On          schema.ConnRef    `yaml:"on" required:"true" doc:"The connection the generator query runs on."`
	Query       schema.Template   `yaml:"query" required:"true" text:"sql" doc:"A query whose every non-null cell is one statement, in row order, then column order."`
	Args        []schema.Template `yaml:"args" doc:"Bind parameters of the query."`
	ExecOn      schema.ConnRef    `yaml:"exec_on" doc:"The connection the statements run on. Default: on."`
	Transaction string            `yaml:"transaction" enum:"each,batch,all" default:"each" doc:"each: every statement commits on its own (psql \\gexec in autocommit); batch: batch_size statements per transaction; all: one transaction."`
	BatchSize   int               `yaml:"batch_size" minimum:"1" default:"100" doc:"Statements per transaction with transaction: batch."`

	Keys schema.Positions `yaml:"-"`
}

func init() {
	Register("generate", "Run a query that generates SQL, then execute the generated statements (psql \\gexec).", func() Runner { return &Generate{} })
}

// Kind implements schema.Action.
func (*Generate) Kind() string { return "generate" }

// Mode returns the transaction mode, each when unset.
func (a *Generate) Mode() string {
	if a.Transaction == "" {
		return "each"
	}
	return a.Transaction
}

// Batch returns the number of statements per transaction.
func (a *Generate) Batch() int {
	switch {
	case a.Mode() == "each":
		return 1
	case a.Mode() == "batch" && a.BatchSize > 0:
		return a.BatchSize
	case a.Mode() == "batch":
		return 100
	}
	return 0 // all
}

// Target returns the connection the statements run on.
func (a *Generate) Target() string {
	if a.ExecOn.Name != "" {
		return a.ExecOn.Name
	}
	return a.On.Name
}

// Validate implements schema.Validator.
func (a *Generate) Validate(v *schema.Validation) {
	if _, ok := a.Keys["batch_size"]; ok && a.Mode() != "batch" {
		v.Errorf(a.Keys["batch_size"], "batch_size applies only with transaction: batch")
	}
}

// Run implements Runner.
//
// The generator query runs first (its cells in text form, as psql shows them)
// and the list is frozen in the journal before the first statement runs; a
// resumed step uses the frozen list and starts at the first statement not
// known committed, never running the query again.
//
// Every transaction follows the journal's protocol: its transaction id,
// BeforeCommit, COMMIT, Committed. To keep that at one round trip per
// transaction, the COMMIT of a transaction travels with the next one, as
// COMMIT AND CHAIN (which also begins it), prepared once per attempt like the
// transaction id queries; the id is asked before the statements, so that
// BeforeCommit's flush overlaps their work:
//
//	COMMIT AND CHAIN (previous) · SELECT pg_current_xact_id() · Flush · statement(s) · Sync
//
// The commits are asynchronous but the last and one every syncEvery
// (docs/state.md, "Two flushes, one of them the client's").
//
// so each: one round trip per statement (as psql's \gexec in autocommit),
// batch: one per batch_size statements, all: one for everything (sent in
// chunks). The last transaction's COMMIT goes alone. Durations of each are
// round trips (see trip). Needs PostgreSQL 13 (pg_current_xact_id).
//
// A statement that cannot run in a transaction block (VACUUM, CREATE INDEX
// CONCURRENTLY, CREATE DATABASE …: SQLSTATE 25001) is, with each or batch,
// run again on its own in autocommit. That run is not exactly-once protected:
// there is no transaction id to ask the server about, so if runbook dies
// after the statement and before the journal records it, resume runs it
// again. A warning says so. Its progress is recorded with Committed alone
// (XID 0, no BeforeCommit).
//
// With batch, a failing statement rolls back its batch; the statements of the
// batch before it are then committed as one transaction, so what is committed
// is what each would have committed, and the failure names the statement.
func (a *Generate) Run(ctx context.Context, rc *Context) (Outputs, error) {
	g := &genRun{a: a, rc: rc, target: a.Target()}
	if data := rc.Journal.Unit(genUnit); data != nil {
		p, err := parseGenData(data)
		if err != nil {
			return nil, err
		}
		list, err := openFrozen(rc.Journal, p.of)
		if err != nil {
			return nil, err
		}
		if p.done > list.Len() || p.done < 0 {
			return nil, fmt.Errorf("the journal records %d statements done of a frozen list of %d: cannot resume", p.done, list.Len())
		}
		// The executor refused to go on if the server restarted since and
		// lost commits (docs/state.md); what is recorded is committed.
		g.list, g.done, g.durable = list, p.done, p.done
		rc.Events.Emit(GenerateResume{Statements: g.list.Len(), Done: g.done})
	} else {
		// The statements go to the journal's blob as the rows arrive: the
		// list is durable before the first runs, and never in memory whole.
		list, err := freeze(rc.Journal, func(add func(string) error) error {
			_, err := a.generate(ctx, rc, add)
			return err
		})
		if err != nil {
			return nil, err
		}
		// The unit's first record, with the first commit, names the list's
		// length; a crash before it finds no unit, and generates anew.
		g.list = list
		if rc.Plan != nil {
			if err := checkBound(rc, list); err != nil {
				return nil, err
			}
		}
	}
	g.n = g.list.Len()
	if g.done < g.n {
		defer g.cells.close()
		if err := g.exec(ctx); err != nil {
			return nil, err
		}
	}
	return g.outputs(g.done), nil
}

// genUnit is a generate step's one unit of work in the journal: its data
// counts the statements of the frozen list (the blob of the same name) known
// committed, {"done":D,"of":N}.
const genUnit = "statements"

func genData(done, of int) []byte {
	b := make([]byte, 0, 40)
	b = append(b, `{"done":`...)
	b = strconv.AppendInt(b, int64(done), 10)
	b = append(b, `,"of":`...)
	b = strconv.AppendInt(b, int64(of), 10)
	return append(b, '}')
}

type genProgress struct{ done, of int }

func parseGenData(b []byte) (genProgress, error) {
	var v struct {
		Done *int `json:"done"`
		Of   *int `json:"of"`
	}
	if err := json.Unmarshal(b, &v); err != nil || v.Done == nil {
		return genProgress{}, fmt.Errorf("the journal's record of the statements done is not readable: %s", b)
	}
	p := genProgress{done: *v.Done, of: -1}
	if v.Of != nil {
		p.of = *v.Of
	}
	return p, nil
}

// Effects implements Effecter: every statement commits through the journal
// (a statement that must run in autocommit is recorded as it ends, with a
// warning).
func (a *Generate) Effects() Effects { return Journaled }

// Retryable implements Retrier.
func (a *Generate) Retryable(err error) bool { return pgerr.Transient(err) }

// The capabilities the executor relies on for a journaled action.
var (
	_ Effecter  = (*Generate)(nil)
	_ Retrier   = (*Generate)(nil)
	_ Describer = (*Generate)(nil)
)

// DescribePoint implements Describer.
func (a *Generate) DescribePoint(_ string, data []byte) string {
	return fmt.Sprintf("statement %d", doneOf(data))
}

// DescribeDoubt implements Describer.
func (a *Generate) DescribeDoubt(step, _ string, durable, recorded []byte) string {
	return fmt.Sprintf("statements %d to %d of step %s took effect", doneOf(durable)+1, doneOf(recorded), step)
}

// doneOf is the count of statements done that data records, 0 for none.
func doneOf(data []byte) int {
	if data == nil {
		return 0
	}
	p, err := parseGenData(data)
	if err != nil {
		return 0
	}
	return p.done
}

// generate runs the generator query and adds its non-null cells, in row
// order, then column order; it returns how many it added.
func (a *Generate) generate(ctx context.Context, rc *Context, add func(string) error) (int, error) {
	q, args, conn, err := openQuery(ctx, rc, a.Query, a.Args, a.On.Name)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	n := 0
	bound, err := pgvalue.Bind(ctx, conn, q, args)
	if err != nil {
		return 0, queryError(ctx, rc, "generator query", q, err)
	}
	rows, err := conn.Query(ctx, bound, append([]any{pgx.QueryExecModeDescribeExec, pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)...)
	var addErr error
	if err == nil {
	rows:
		for rows.Next() {
			for _, v := range rows.RawValues() {
				if v != nil {
					if addErr = add(string(v)); addErr != nil {
						break rows
					}
					n++
				}
			}
		}
		rows.Close()
		err = rows.Err()
	}
	if addErr != nil {
		return 0, addErr
	}
	if err != nil {
		return 0, queryError(ctx, rc, "generator query", q, err)
	}
	rc.Events.Emit(GenerateQuery{SQL: q, Statements: n, Duration: time.Since(start)})
	return n, nil
}

// segCells bounds the cells of a unit sent in one round trip, and held in
// memory: a transaction of more cells (batch with a large batch_size, all) is
// sent as several round trips inside the transaction, each segment's cells
// read from the frozen list as it goes, so a list of a million statements
// costs the memory of one segment.
var segCells = 4096

// genRun is one attempt of a generate step.
type genRun struct {
	a      *Generate
	rc     *Context
	target string
	list   Statements
	n      int // list.Len()
	done   int // statements known committed

	pc         *pgconn.PgConn
	id         pgtx.Backend
	prep       *prepared
	pend       Tx  // recorded by BeforeCommit, COMMIT not yet sent
	pendFrom   int // the first statement of pend
	pendTo     int // the statement count once pend commits
	hasPending bool

	// Durability of the commits (docs/state.md, "Exactly once"): commits
	// are asynchronous but every syncEvery, and the last; durable counts
	// the statements whose commit is known flushed on the server, lastSync
	// is when the last synchronous commit was acknowledged. syncOK is false
	// when the session's own synchronous_commit is off: no commit of it is
	// then known durable. canFlush tells whether the session may write the
	// log record that makes a synchronous commit flush (xidFlushSQL);
	// without it every commit is synchronous, as psql's.
	durable  int
	lastSync time.Time
	syncOK   bool
	canFlush bool
	// unitFrom, unitTo and unitAsync describe the unit whose transaction id
	// onLead records; onCommit and onLead are the trip's callbacks, bound
	// once.
	unitFrom, unitTo int
	unitAsync        bool
	onCommit         func() error
	onLead           func(xid uint64) error
	leadCtx          context.Context

	// cells reads the frozen list; seg holds the segment being sent (cells
	// first … first+len(seg)-1).
	cells cellReader
	seg   []string
	// The segment's statements as pieces (a cell holding several statements
	// is split, as the server would), the cell each piece belongs to (nil:
	// piece k is cell first+k) and its offset in the cell.
	first  int
	pieces []string
	owner  []int
	offs   []int
	// Per cell of the unit: rows and duration summed over its pieces.
	rows   int64
	dur    time.Duration
	rerun  bool
	doneFn func(k int, tag pgconn.CommandTag, d time.Duration)

	prog progressLine
}

func (g *genRun) outputs(executed int) Outputs {
	return Outputs{"statements": g.n, "executed": executed}
}

// cell returns statement i of the list, which must be in the segment.
func (g *genRun) cell(i int) string { return g.seg[i-g.first] }

func (g *genRun) exec(ctx context.Context) error {
	conn, err := g.rc.Conns.Conn(ctx, g.target)
	if err != nil {
		return err
	}
	g.pc = conn.PgConn()
	if g.id, err = pgtx.Identify(ctx, g.pc); err != nil {
		return g.rc.Redact.Error(withCtx(ctx, fmt.Errorf("reading the backend's identity: %w", err)))
	}
	var sc string
	if err := conn.QueryRow(ctx, durabilitySQL).Scan(&sc, &g.canFlush); err != nil {
		return g.rc.Redact.Error(withCtx(ctx, fmt.Errorf("reading synchronous_commit: %w", err)))
	}
	g.syncOK, g.lastSync = sc != "off", time.Now()
	if g.prep, err = prepare(ctx, g.pc, g.canFlush); err != nil {
		return g.rc.Redact.Error(withCtx(ctx, fmt.Errorf("preparing: %w", err)))
	}
	defer func() { g.prep.release(ctx, g.pc) }()
	g.cells.list = g.list
	g.doneFn = g.pieceDone
	g.onCommit = g.committed
	g.onLead = g.beforeCommit
	if g.rc.Events.Live() {
		g.prog = progressLine{events: g.rc.Events, total: g.n}
	}
	if err := g.loop(ctx); err != nil {
		g.barrier(ctx)
		return err
	}
	return nil
}

// durabilitySQL reads the session's synchronous_commit and whether it may run
// flushSQL.
const durabilitySQL = "SELECT current_setting('synchronous_commit'), has_function_privilege('pg_logical_emit_message(boolean,text,text)', 'EXECUTE')"

// syncEvery is how often, at least, a generate step commits synchronously;
// the commits between are asynchronous (docs/state.md, "Exactly once").
const syncEvery = 100 * time.Millisecond

func (g *genRun) loop(ctx context.Context) error {
	n := g.n
	size := g.a.Batch()
	if size == 0 {
		size = n
	}
	for i := g.done; i < n; {
		if err := ctx.Err(); err != nil {
			return g.abort(ctx, err)
		}
		end := min(i+size, n)
		res, err := g.runUnit(ctx, i, end)
		if err != nil {
			return err
		}
		if res.err == nil {
			i = end
			g.prog.update(i)
			continue
		}
		endTx(ctx, g.pc)
		var pgErr *pgconn.PgError
		isPg := errors.As(res.err, &pgErr)
		switch {
		case res.failed == atCommit:
			// In doubt: the pending transaction stays recorded, for the
			// server to settle.
			emitCommitError(g.rc.Events, res.err)
			return g.rc.Redact.Error(withCtx(ctx, fmt.Errorf("COMMIT of generated statements %d to %d: %w", g.pendFrom+1, g.pendTo, res.err)))
		}
		// The unit's transaction never got a COMMIT: it is rolled back.
		g.hasPending = false
		if res.failed < 0 || res.failed >= len(g.pieces) || !isPg {
			return g.rc.Redact.Error(withCtx(ctx, g.pieceErr(res.failed, res.err)))
		}
		f := g.cellOf(res.failed)
		outside := pgErr.Code == "25001" && g.a.Mode() != "all" && ctx.Err() == nil
		var failure error
		var stmt string
		if outside {
			stmt = g.cell(f) // before commitPrefix replaces the segment
		} else {
			failure = g.pieceErr(res.failed, res.err)
		}
		if g.a.Mode() == "batch" && f > i {
			if err := g.commitPrefix(ctx, i, f); err != nil {
				return err
			}
		}
		if !outside {
			return g.rc.Redact.Error(withCtx(ctx, failure))
		}
		if err := g.autocommit(ctx, f, stmt); err != nil {
			return err
		}
		i = f + 1
		g.prog.update(i)
	}
	if g.hasPending {
		c := trip{commit: true}
		if res := c.run(ctx, g.pc); res.err != nil {
			endTx(ctx, g.pc)
			emitCommitError(g.rc.Events, res.err)
			return g.rc.Redact.Error(withCtx(ctx, fmt.Errorf("COMMIT of generated statements %d to %d: %w", g.pendFrom+1, g.pendTo, res.err)))
		}
		if err := g.committed(); err != nil {
			return err
		}
	}
	return nil
}

// runUnit sends cells from … to-1 as one transaction: in one round trip when
// they fit in a segment, else in one round trip per segment inside the
// transaction. The first round trip commits the pending transaction first
// (COMMIT AND CHAIN, which also begins this one; the commit is recorded as
// soon as its result arrives), then asks for the new transaction's id before
// the statements, and records it (BeforeCommit, a flush of the journal)
// while the server runs them. It returns the last round trip's result, or
// the failing one's (the segment is then the one that failed). An error is
// one of the journal's.
func (g *genRun) runUnit(ctx context.Context, from, to int) (tripResult, error) {
	commit := g.hasPending
	for s := from; ; {
		e := min(s+segCells, to)
		if err := g.unit(s, e); err != nil {
			// Nothing of this transaction commits: a pending one is rolled
			// back with it, and settled by the server on resume.
			endTx(ctx, g.pc)
			return tripResult{}, err
		}
		t := trip{commit: commit, begin: s == from, stmts: g.pieces, prep: g.prep, done: g.doneFn}
		if commit {
			t.onCommit = g.onCommit
		}
		if s == from {
			g.unitFrom, g.unitTo, g.leadCtx = from, to, ctx
			// Asynchronous unless it is the last, or the last synchronous
			// commit is syncEvery old; with the session's own
			// synchronous_commit off every commit is.
			g.unitAsync = !g.syncOK || (g.canFlush && to < g.n && time.Since(g.lastSync) < syncEvery)
			t.lead, t.onLead = g.prep.xid, g.onLead
			switch {
			case g.unitAsync && g.syncOK:
				t.lead = g.prep.async
			case !g.unitAsync && g.canFlush:
				t.lead = g.prep.flush
			}
		}
		res := t.run(ctx, g.pc)
		if res.failed == atJournal {
			endTx(ctx, g.pc)
			return res, res.err
		}
		if res.err != nil || e == to {
			return res, nil
		}
		commit, s = false, e
	}
}

// abort ends the run when ctx is done between round trips: the transaction
// recorded by BeforeCommit is rolled back, not committed (the executor settles
// it from the server).
func (g *genRun) abort(ctx context.Context, err error) error {
	endTx(ctx, g.pc)
	g.hasPending = false
	return err
}

// beforeCommit records the transaction of the unit being sent (unitFrom …
// unitTo-1), whose id xid has just arrived: durably, before its COMMIT.
func (g *genRun) beforeCommit(xid uint64) error {
	g.pendFrom, g.pendTo = g.unitFrom, g.unitTo
	g.pend = Tx{Unit: genUnit, Tx: g.id.Tx(g.target, xid), Data: genData(g.unitTo, g.n)}
	g.pend.Async = g.unitAsync
	if err := g.rc.Journal.BeforeCommit(g.leadCtx, g.pend); err != nil {
		return err
	}
	g.hasPending = true
	return nil
}

func (g *genRun) committed() error {
	g.hasPending = false
	g.done = g.pendTo
	if !g.pend.Async {
		g.durable, g.lastSync = g.done, time.Now()
	}
	return g.rc.Journal.Committed(g.pend)
}

// barrier, after a failure, makes the asynchronous commits durable: a
// transaction that writes to the server's log (flushSQL) commits
// synchronously, which flushes the log up to it, every earlier commit with
// it. Without it a crash of the server could still lose statements the
// failed step reports committed (resume would then refuse to go on by
// itself; docs/state.md).
func (g *genRun) barrier(ctx context.Context) {
	if g.durable >= g.done || !g.syncOK || !g.canFlush || g.hasPending || g.pc.IsClosed() || g.pc.TxStatus() != 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := execSimple(ctx, g.pc, "BEGIN; SELECT "+flushSQL+"; COMMIT"); err != nil {
		g.rc.Events.Emit(GenerateFlush{Error: g.rc.Redact.String(err.Error())})
		return
	}
	tx := Tx{Unit: genUnit, Tx: pgtx.Tx{Conn: g.target, Server: g.id.Server}, Data: genData(g.done, g.n)}
	if err := g.rc.Journal.Committed(tx); err == nil {
		g.durable = g.done
	}
}

// commitPrefix runs the cells from..to-1 again (their batch was rolled back)
// and commits them as one transaction.
func (g *genRun) commitPrefix(ctx context.Context, from, to int) error {
	g.rc.Events.Emit(GenerateRerun{From: from, To: to - 1})
	g.rerun = true
	defer func() { g.rerun = false }()
	res, err := g.runUnit(ctx, from, to)
	if err != nil {
		return err
	}
	if res.err != nil {
		endTx(ctx, g.pc)
		g.hasPending = false
		return g.rc.Redact.Error(withCtx(ctx, g.pieceErr(res.failed, res.err)))
	}
	c := trip{commit: true}
	if res := c.run(ctx, g.pc); res.err != nil {
		endTx(ctx, g.pc)
		return g.rc.Redact.Error(withCtx(ctx, fmt.Errorf("COMMIT: %w", res.err)))
	}
	return g.committed()
}

// autocommit runs cell f, stmt, on its own, outside a transaction block.
func (g *genRun) autocommit(ctx context.Context, f int, stmt string) error {
	g.rc.Events.Emit(GenerateAutocommit{Index: f, SQL: stmt})
	g.first, g.seg = f, append(g.seg[:0], stmt)
	start := time.Now()
	rows, err := execSimple(ctx, g.pc, stmt)
	if err != nil {
		endTx(ctx, g.pc)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			e := g.genError(f, stmt, 0, pgErr)
			emitSQLError(g.rc.Events, e)
			err = e
		} else {
			err = fmt.Errorf("generated statement %d of %d: %w", f+1, g.n, err)
		}
		return g.rc.Redact.Error(withCtx(ctx, err))
	}
	g.logStmt(f, rows, time.Since(start))
	g.done = f + 1
	// Not known durable: an autocommitted statement (VACUUM …) writes no
	// commit record that flushes the ones before it.
	if err := g.rc.Journal.Committed(Tx{Unit: genUnit, Tx: pgtx.Tx{Conn: g.target, Server: g.id.Server, Async: true}, Data: genData(f+1, g.n)}); err != nil {
		return err
	}
	// The statement may have been DISCARD ALL: prepare again.
	g.prep.release(ctx, g.pc)
	if g.prep, err = prepare(ctx, g.pc, g.canFlush); err != nil {
		return g.rc.Redact.Error(withCtx(ctx, fmt.Errorf("preparing: %w", err)))
	}
	return nil
}

// unit reads cells from..to-1 (one segment) and prepares them as the pieces
// of one round trip.
func (g *genRun) unit(from, to int) error {
	cells, err := g.cells.read(from, to, g.seg[:0])
	if err != nil {
		return fmt.Errorf("reading the frozen statement list: %w", err)
	}
	g.seg, g.first, g.rows, g.dur = cells, from, 0, 0
	multi := false
	for _, c := range cells {
		if strings.IndexByte(c, ';') >= 0 && len(sqlsplit.Split(c)) > 1 {
			multi = true
			break
		}
	}
	if !multi {
		g.pieces, g.owner, g.offs = cells, nil, nil
		return nil
	}
	g.pieces, g.owner, g.offs = nil, nil, nil
	for i, c := range cells {
		parts := sqlsplit.Split(c)
		if len(parts) <= 1 {
			g.pieces, g.owner, g.offs = append(g.pieces, c), append(g.owner, from+i), append(g.offs, 0)
			continue
		}
		for _, p := range parts {
			g.pieces, g.owner, g.offs = append(g.pieces, p.SQL), append(g.owner, from+i), append(g.offs, p.Offset)
		}
	}
	return nil
}

// cellReader reads a frozen list's cells in order, starting again from the
// list's beginning only when asked for cells behind it.
type cellReader struct {
	list Statements
	rd   StatementReader
	pos  int // the index of the cell rd returns next
}

// read appends cells from..to-1 to buf.
func (c *cellReader) read(from, to int, buf []string) ([]string, error) {
	if c.rd == nil || from < c.pos {
		c.close()
		rd, err := c.list.Read(from)
		if err != nil {
			return nil, err
		}
		c.rd, c.pos = rd, from
	}
	for ; c.pos < to; c.pos++ {
		s, err := c.rd.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("the list ends after %d statements, not %d", c.pos, c.list.Len())
		}
		if err != nil {
			return nil, err
		}
		if c.pos >= from {
			buf = append(buf, s)
		}
	}
	return buf, nil
}

func (c *cellReader) close() {
	if c.rd != nil {
		c.rd.Close()
		c.rd = nil
	}
}

// cellOf returns the index in the list of piece k of the current unit.
func (g *genRun) cellOf(k int) int {
	if g.owner == nil {
		return g.first + k
	}
	return g.owner[k]
}

// pieceDone is a trip's done callback: it logs each cell once its last piece
// is done.
func (g *genRun) pieceDone(k int, tag pgconn.CommandTag, d time.Duration) {
	if g.owner == nil {
		g.logStmt(g.first+k, tag.RowsAffected(), d)
		return
	}
	g.rows += tag.RowsAffected()
	g.dur += d
	if k+1 == len(g.owner) || g.owner[k+1] != g.owner[k] {
		g.logStmt(g.owner[k], g.rows, g.dur)
		g.rows, g.dur = 0, 0
	}
}

func (g *genRun) logStmt(i int, rows int64, d time.Duration) {
	g.rc.Events.Emit(GenerateStatement{Index: i, SQL: g.cell(i), Rows: rows, Duration: d, Rerun: g.rerun})
}

// pieceErr describes the failure of piece k of the current unit (or of BEGIN,
// the transaction id).
func (g *genRun) pieceErr(k int, err error) error {
	var pgErr *pgconn.PgError
	switch {
	case k == atBegin:
		return fmt.Errorf("BEGIN: %w", err)
	case k == atJournal:
		return err
	case k < 0 || k >= len(g.pieces):
		return fmt.Errorf("reading the transaction id: %w", err)
	case errors.As(err, &pgErr):
		off := 0
		if g.offs != nil {
			off = g.offs[k]
		}
		e := g.genError(g.cellOf(k), g.pieces[k], off, pgErr)
		emitSQLError(g.rc.Events, e)
		return e
	}
	return fmt.Errorf("generated statement %d of %d: %w", g.cellOf(k)+1, g.n, err)
}

// genError places the server's error in generated statement f; piece is the
// part of it that failed, at byte offset off.
func (g *genRun) genError(f int, piece string, off int, pgErr *pgconn.PgError) *pgerr.SQLError {
	stmt := g.cell(f)
	e := &pgerr.SQLError{PgError: pgErr, Statement: f + 1, Of: g.n, SQL: stmt, Label: "generated statement"}
	if b := pgerr.ByteOffset(piece, pgErr.Position); b >= 0 {
		e.StmtLine, e.StmtCol = pgerr.PosOf(stmt, off+b)
	}
	if pgErr.Code == "25001" && g.a.Mode() == "all" {
		e.Hint = strings.TrimSpace(e.Hint + " With transaction: all every statement runs in one transaction; use each or batch.")
	}
	return e
}

// progressLine tells how many statements are done, at most every 200 ms, when
// somebody watches (a terminal).
type progressLine struct {
	events event.Sink // nil when nobody watches
	total  int
	last   time.Time
}

func (p *progressLine) update(n int) {
	if p.events == nil {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < 200*time.Millisecond && n < p.total {
		return
	}
	p.last = now
	p.events.Emit(GenerateProgress{Done: n, Total: p.total})
}

// ErrRunTime is returned by a Previewer whose statements depend on what
// earlier steps output: they are known only at run time.
var ErrRunTime = errors.New("known only at run time")

// Preview implements Previewer: it runs the generator query inside a READ
// ONLY transaction, rolled back, and returns the statements the step would
// execute now (plan --generate). It executes none of them.
func (a *Generate) Preview(ctx context.Context, rc *Context) ([]string, error) {
	if a.Query.Dynamic() || slices.ContainsFunc(a.Args, schema.Template.Dynamic) {
		return nil, ErrRunTime
	}
	conn, err := rc.Conns.Conn(ctx, a.On.Name)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "BEGIN TRANSACTION READ ONLY"); err != nil {
		return nil, rc.Redact.Error(fmt.Errorf("plan: starting a read-only transaction: %w", err))
	}
	defer conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
	list := []string{}
	if _, err := a.generate(ctx, rc, func(s string) error { list = append(list, s); return nil }); err != nil {
		return nil, err
	}
	return list, nil
}

// checkBound compares the statements generated now with those a sealed plan
// approved (docs/plan.md, "Sealed plans"): the step executes them only if
// they are the same, and otherwise refuses before the first, showing the
// difference (exit 4).
func checkBound(rc *Context, list Statements) error {
	got := make([]string, 0, list.Len())
	r, err := list.Read(0)
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		st, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		got = append(got, st)
	}
	if slices.Equal(got, rc.Plan.Statements) {
		rc.Events.Emit(GenerateBound{Plan: rc.Plan.Plan, Statements: len(got)})
		return nil
	}
	return exitcode.With(exitcode.Refused, rc.Redact.Error(fmt.Errorf(
		"the generator now yields other statements than plan %s approved (the database changed since the plan was made); nothing was executed. "+
			"Make a new plan and have it approved. Approved (-) and generated now (+):\n%s",
		rc.Plan.Plan, textdiff.Changes(rc.Plan.Statements, got))))
}
