package actions

// The pipelined round trips of sql and generate and the journal's commit
// protocol around them: COMMIT, BEGIN, the statements and the transaction
// id sent together, the statements prepared once per generate attempt, the
// backend's identity that a pending transaction is recorded with.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Round trips.
//
// Statements run over the extended protocol, each parsed on its own (so a
// syntax error in one cannot take the statements before it with it, as it
// would in a multi-statement simple query, which the server parses whole
// before running any of it), several to a round trip. One round trip sends,
// for example,
//
//	COMMIT (of the previous transaction) · BEGIN · statement(s) · SELECT pg_current_xact_id() · Sync
//
// and reads the results in order. A trip of at most one statement goes as a
// pgconn batch (one write, the lightest path); one of several goes in
// pipeline mode, with a Flush request after each statement so that the server
// sends each result as soon as the statement is done: the time between two
// results is that statement's duration (plus network jitter), while in a
// batch of one statement the duration is the whole round trip's (COMMIT of
// the previous transaction, BEGIN and the transaction id included).
// generate prepares COMMIT AND CHAIN and its transaction id queries once per
// attempt, so its trips are COMMIT AND CHAIN · id (lead) · Flush ·
// statement(s), nothing parsed but the statements.

const (
	// xidSQL asks for the transaction id to record before COMMIT.
	xidSQL = "SELECT pg_current_xact_id()"
	// xidAsyncSQL does the same and makes the transaction's COMMIT
	// asynchronous (synchronous_commit off for this transaction only).
	xidAsyncSQL = "SELECT pg_current_xact_id(), set_config('synchronous_commit', 'off', true)"
	// xidFlushSQL does the same and makes sure the transaction writes to the
	// server's log (WAL): a synchronous COMMIT flushes the log only when the
	// transaction wrote to it, and a transaction whose statements changed
	// nothing (an ALTER … OWNER TO its owner, a SELECT) would otherwise leave
	// the asynchronous commits before it unflushed. A transactional logical
	// message is the least a transaction can write; it needs no privilege
	// beyond EXECUTE (granted to PUBLIC) and is ignored by everything but
	// logical decoding.
	xidFlushSQL = "SELECT pg_current_xact_id(), " + flushSQL
	flushSQL    = "pg_logical_emit_message(true, 'runbook', 'flush')"
)

// Stages of a round trip at which it can fail, besides a statement's index.
const (
	atJournal = -4 // onCommit or onLead failed: the journal's error
	atLead    = -3
	atCommit  = -2
	atBegin   = -1
)

// chunk bounds how many statements are written before their results are read,
// so a huge transaction does not build a huge buffer, and a failure early in it
// stops the sending soon.
const chunk = 256

// trip is one pipelined round trip.
type trip struct {
	commit bool // COMMIT the open transaction first
	begin  bool // then BEGIN
	stmts  []string
	xid    string // xidSQL or "": the query run after the statements
	// prep, when set, has COMMIT AND CHAIN and the lead queries prepared: a
	// trip with commit and begin then sends COMMIT AND CHAIN (one statement
	// instead of two), and neither is parsed again.
	prep *prepared
	// done is called as each statement's result arrives, with its command
	// tag and duration.
	done func(k int, tag pgconn.CommandTag, d time.Duration)
	// lead, when set, is a transaction id query (prep.xid, .async or .flush)
	// sent after BEGIN, before the statements, with a Flush: its answer
	// arrives while the server runs the statements, and onLead records it
	// meanwhile (the journal's flush overlaps the statements' work). The trip
	// then needs no xid.
	lead   *pgconn.StatementDescription
	onLead func(xid uint64) error
	// onCommit is called as soon as the leading COMMIT succeeded, before
	// onLead.
	onCommit func() error
}

// prepared are the statements a generate step runs around every
// transaction, prepared once per attempt (see trip.prep).
type prepared struct {
	chain, xid, async, flush *pgconn.StatementDescription
}

var prepSeq atomic.Uint64

// prepare prepares COMMIT AND CHAIN and the xid queries on pc (xidFlushSQL
// only with flush), under names of their own (so that a statement left by an
// earlier attempt on the same session cannot clash).
func prepare(ctx context.Context, pc *pgconn.PgConn, flush bool) (*prepared, error) {
	n := prepSeq.Add(1)
	p := &prepared{}
	var err error
	if p.chain, err = pc.Prepare(ctx, fmt.Sprintf("runbook_chain_%d", n), "COMMIT AND CHAIN", nil); err != nil {
		return nil, err
	}
	if p.xid, err = pc.Prepare(ctx, fmt.Sprintf("runbook_xid_%d", n), xidSQL, nil); err != nil {
		p.release(ctx, pc)
		return nil, err
	}
	if p.async, err = pc.Prepare(ctx, fmt.Sprintf("runbook_xid_async_%d", n), xidAsyncSQL, nil); err != nil {
		p.release(ctx, pc)
		return nil, err
	}
	if flush {
		if p.flush, err = pc.Prepare(ctx, fmt.Sprintf("runbook_xid_flush_%d", n), xidFlushSQL, nil); err != nil {
			p.release(ctx, pc)
			return nil, err
		}
	}
	return p, nil
}

// release deallocates the statements, even when ctx is done.
func (p *prepared) release(ctx context.Context, pc *pgconn.PgConn) {
	if p == nil || pc.IsClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, d := range []*pgconn.StatementDescription{p.chain, p.xid, p.async, p.flush} {
		if d != nil {
			pc.Deallocate(ctx, d.Name)
		}
	}
}

// tripResult is what a round trip did.
type tripResult struct {
	// failed is where the trip failed (atJournal, atLead, atCommit,
	// atBegin, a statement's index, len(stmts) for the xid query) and err
	// why; err is nil on success. A trip that got past atCommit committed
	// its leading COMMIT (onCommit was called).
	failed int
	err    error
	// xid is the xid query's answer.
	xid uint64
}

// run sends the trip and reads its results. On a server error the rest of the
// trip is skipped by the server; the connection stays usable (with its
// transaction, if one was begun, failed). Any other error means the
// connection is broken.
func (t *trip) run(ctx context.Context, pc *pgconn.PgConn) tripResult {
	if t.commit && !t.begin && len(t.stmts) == 0 && t.xid == "" && t.lead == nil && t.onCommit == nil {
		return t.runCommit(ctx, pc)
	}
	if len(t.stmts) <= 1 && t.lead == nil && t.onCommit == nil {
		return t.runBatch(ctx, pc)
	}
	return t.runPipeline(ctx, pc)
}

// runCommit runs a trip that only commits as psql does: one simple-protocol
// Query message, where the extended protocol's Parse, Bind, Describe,
// Execute and Sync made the server do five messages' work for it (a sql
// step's COMMIT; docs/performance.md, P3).
func (t *trip) runCommit(ctx context.Context, pc *pgconn.PgConn) (r tripResult) {
	res, err := pc.Exec(ctx, "COMMIT").ReadAll()
	if err == nil && (len(res) != 1 || res[0].CommandTag.String() != "COMMIT") {
		tag := ""
		if len(res) > 0 {
			tag = res[0].CommandTag.String()
		}
		err = fmt.Errorf("COMMIT answered %q: the transaction had failed", tag)
	}
	if err != nil {
		r.failed, r.err = atCommit, err
	}
	return r
}

// runBatch runs a trip of at most one statement as a pgconn batch: one
// buffer, one write, the results read in order. It is lighter than a pipeline
// and needs no Flush: there is only one statement to time.
func (t *trip) runBatch(ctx context.Context, pc *pgconn.PgConn) (r tripResult) {
	var b pgconn.Batch
	chain := t.chain()
	switch {
	case chain:
		b.ExecStatement(t.prep.chain, nil, nil, nil)
	case t.commit:
		b.ExecParams("COMMIT", nil, nil, nil, nil)
	}
	if t.begin && !chain {
		b.ExecParams("BEGIN", nil, nil, nil, nil)
	}
	for _, s := range t.stmts {
		b.ExecParams(s, nil, nil, nil, nil)
	}
	if t.xid != "" {
		b.ExecParams(t.xid, nil, nil, nil, nil)
	}
	start := time.Now()
	mrr := pc.ExecBatch(ctx, &b)
	// The stages in order; a missing result is the failure of its stage.
	stage := 0
	if t.begin {
		stage = atBegin
	}
	if t.commit {
		stage = atCommit
	}
	last := len(t.stmts)
	if t.xid == "" {
		last--
	}
	fail := func(at int, err error) tripResult {
		cerr := mrr.Close()
		if err == nil {
			err = cerr
		}
		if err == nil {
			err = errors.New("the server sent fewer results than statements")
		}
		var pgErr *pgconn.PgError
		if at == atBegin && len(t.stmts) > 0 && !errors.As(err, &pgErr) {
			at = 0 // BEGIN's result comes with the statement's: the wait that broke was the statement's
		}
		r.failed, r.err = at, err
		return r
	}
	for ; stage <= last; stage++ {
		if stage == atBegin && (!t.begin || chain) {
			continue
		}
		if !mrr.NextResult() {
			return fail(stage, nil)
		}
		rr := mrr.ResultReader()
		if stage == len(t.stmts) {
			if err := r.readXIDFrom(rr); err != nil {
				return fail(stage, err)
			}
			continue
		}
		tag, err := rr.Close()
		if err == nil && stage == atCommit && tag.String() != "COMMIT" {
			err = fmt.Errorf("COMMIT answered %q: the transaction had failed", tag.String())
		}
		if err != nil {
			return fail(stage, err)
		}
		if stage >= 0 && t.done != nil {
			t.done(stage, tag, time.Since(start))
		}
	}
	if err := mrr.Close(); err != nil {
		r.failed, r.err = len(t.stmts)+1, err
	}
	return r
}

// runPipeline runs a trip of several statements in pipeline mode, with a
// Flush after each statement so that each result arrives when its statement
// is done.
func (t *trip) runPipeline(ctx context.Context, pc *pgconn.PgConn) (r tripResult) {
	p := pc.StartPipeline(ctx)
	n := len(t.stmts)
	multi := n > 1
	sent, synced := 0, false
	send := func() error {
		limit := min(n, sent+chunk)
		for ; sent < limit; sent++ {
			p.SendQueryParams(t.stmts[sent], nil, nil, nil, nil)
			if multi {
				p.SendFlushRequest()
			}
		}
		if sent < n {
			return p.Flush()
		}
		if t.xid != "" {
			p.SendQueryParams(t.xid, nil, nil, nil, nil)
		}
		synced = true
		return p.Sync()
	}
	chain := t.chain()
	switch {
	case chain:
		p.SendQueryStatement(t.prep.chain, nil, nil, nil)
	case t.commit:
		p.SendQueryParams("COMMIT", nil, nil, nil, nil)
	}
	if t.begin && !chain {
		p.SendQueryParams("BEGIN", nil, nil, nil, nil)
	}
	if t.lead != nil {
		p.SendQueryStatement(t.lead, nil, nil, nil)
	}
	if (t.begin && multi) || t.lead != nil {
		p.SendFlushRequest()
	}
	fail := func(at int, err error) tripResult {
		r.failed, r.err = at, err
		t.drain(p, pc, synced)
		return r
	}
	prev := time.Now()
	if err := send(); err != nil {
		return fail(atCommit, err)
	}
	if t.commit {
		tag, err := readTag(p)
		if err == nil && tag.String() != "COMMIT" {
			err = fmt.Errorf("COMMIT answered %q: the transaction had failed", tag.String())
		}
		if err != nil {
			return fail(atCommit, err)
		}
		if t.onCommit != nil {
			if err := t.onCommit(); err != nil {
				return fail(atJournal, err)
			}
		}
	}
	if t.begin && !chain {
		if _, err := readTag(p); err != nil {
			var pgErr *pgconn.PgError
			if n > 0 && !errors.As(err, &pgErr) {
				// Without a Flush after BEGIN its result comes with the
				// statements': the wait that broke was theirs.
				return fail(0, err)
			}
			return fail(atBegin, err)
		}
	}
	if t.lead != nil {
		if err := r.readXID(p); err != nil {
			return fail(atLead, err)
		}
		prev = time.Now()
		if t.onLead != nil {
			if err := t.onLead(r.xid); err != nil {
				return fail(atJournal, err)
			}
		}
	} else if t.begin && multi {
		prev = time.Now()
	}
	for k := 0; k < n; k++ {
		if sent < n && sent-k <= chunk/2 {
			if err := send(); err != nil {
				return fail(k, err)
			}
		}
		tag, err := readTag(p)
		if err != nil {
			return fail(k, err)
		}
		now := time.Now()
		if t.done != nil {
			t.done(k, tag, now.Sub(prev))
		}
		prev = now
	}
	if t.xid != "" {
		if err := r.readXID(p); err != nil {
			return fail(n, err)
		}
	}
	r.failed = n + 1
	if res, err := p.GetResults(); err != nil {
		return fail(n+1, err)
	} else if _, ok := res.(*pgconn.PipelineSync); !ok {
		return fail(n+1, fmt.Errorf("pipeline: expected the end of the round trip, got %T", res))
	}
	if err := p.Close(); err != nil {
		r.failed, r.err = n+1, err
	}
	return r
}

// chain reports whether the trip commits and begins with COMMIT AND CHAIN.
func (t *trip) chain() bool { return t.commit && t.begin && t.prep != nil }

// drain ends a pipeline after a failure: it sends the Sync if it was not sent,
// skips what the server skipped, and returns the connection to normal mode.
func (t *trip) drain(p *pgconn.Pipeline, pc *pgconn.PgConn, synced bool) {
	if pc.IsClosed() {
		p.Close()
		return
	}
	if !synced {
		if err := p.Sync(); err != nil {
			p.Close()
			return
		}
	}
	for {
		res, err := p.GetResults()
		var pgErr *pgconn.PgError
		if err != nil && !errors.As(err, &pgErr) {
			break
		}
		if _, ok := res.(*pgconn.PipelineSync); ok || (res == nil && err == nil) {
			break
		}
	}
	p.Close()
}

// nextResult returns the pipeline's next result, which must be a
// statement's; what names it for the error otherwise.
func nextResult(p *pgconn.Pipeline, what string) (*pgconn.ResultReader, error) {
	res, err := p.GetResults()
	if err != nil {
		return nil, err
	}
	rr, ok := res.(*pgconn.ResultReader)
	if !ok {
		return nil, fmt.Errorf("pipeline: expected %s, got %T", what, res)
	}
	return rr, nil
}

func readTag(p *pgconn.Pipeline) (pgconn.CommandTag, error) {
	rr, err := nextResult(p, "a result")
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	return rr.Close()
}

func (r *tripResult) readXID(p *pgconn.Pipeline) error {
	rr, err := nextResult(p, "the transaction id")
	if err != nil {
		return err
	}
	return r.readXIDFrom(rr)
}

func (r *tripResult) readXIDFrom(rr *pgconn.ResultReader) error {
	var perr error
	if rr.NextRow() {
		if v := rr.Values(); len(v) > 0 {
			r.xid, perr = strconv.ParseUint(string(v[0]), 10, 64)
		}
	}
	if _, err := rr.Close(); err != nil {
		return err
	}
	if perr == nil && r.xid == 0 {
		perr = errors.New("no transaction id")
	}
	return perr
}

// execSimple runs sql alone through the simple query protocol, outside any
// transaction the client started: what statements that cannot run in a
// transaction block (VACUUM, CREATE INDEX CONCURRENTLY …) need. It returns the
// rows affected, summed over the results.
func execSimple(ctx context.Context, pc *pgconn.PgConn, sql string) (int64, error) {
	mrr := pc.Exec(ctx, sql)
	var rows int64
	for mrr.NextResult() {
		tag, _ := mrr.ResultReader().Close()
		rows += tag.RowsAffected()
	}
	return rows, mrr.Close()
}

// endTx ends the connection's failed or abandoned transaction with ROLLBACK,
// even when ctx is done, so that the session is clean for what runs next.
func endTx(ctx context.Context, pc *pgconn.PgConn) {
	if pc.IsClosed() || pc.TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	pc.Exec(ctx, "ROLLBACK").Close()
}
