package actions

// Shared PostgreSQL machinery of the sql, generate and assert actions: server
// notices, cancellation, transient errors, positioned SQL errors, pipelined
// round trips with the journal's commit protocol, and row values.

import (
	"context"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/rs/zerolog"

	"github.com/runbookhq/runbook/internal/sqlsplit"
	"github.com/runbookhq/runbook/schema"
)

// LogNotice logs a server notice (RAISE NOTICE, WARNING, the notices of DDL)
// as an "sql.notice" event with its severity, SQLSTATE, message and, when the
// server sent them, detail and hint. WARNING notices are logged at warn level,
// the others at info.
//
// pgx delivers notices to the connection's ConnConfig.OnNotice, which the
// executor owns; it installs
//
//	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { actions.LogNotice(log, n) }
//
// with the logger of the step that is running. Notices that arrive inside a
// pipeline (every statement of sql and generate) reach OnNotice too.
func LogNotice(log zerolog.Logger, n *pgconn.Notice) {
	sev := n.SeverityUnlocalized
	if sev == "" {
		sev = n.Severity
	}
	ev := log.Info()
	if sev == "WARNING" {
		ev = log.Warn()
	}
	ev = ev.Str("event", "sql.notice").Str("severity", sev).Str("sqlstate", n.Code)
	if n.Detail != "" {
		ev = ev.Str("detail", n.Detail)
	}
	if n.Hint != "" {
		ev = ev.Str("hint", n.Hint)
	}
	if n.Where != "" {
		ev = ev.Str("where", n.Where)
	}
	ev.Msg(n.Message)
}

// CancelOnContext is a pgconn context watcher that, when the context of a
// running query is done (Ctrl-C, a step timeout), sends PostgreSQL a cancel
// request, so that the server stops the statement and the session survives,
// with its advisory lock and settings; only when the server has not answered
// within 5 seconds is the socket closed. The executor installs it:
//
//	cfg.BuildContextWatcherHandler = actions.CancelOnContext
//
// pgx's default (pgconn.DeadlineContextWatcherHandler) closes the connection
// instead: pgx then sends a cancel request and Terminate on its way out, so
// the server stops the statement too, but the session is lost (and with it a
// `lock:` advisory lock held on it), and the next step must reconnect.
func CancelOnContext(pc *pgconn.PgConn) ctxwatch.Handler {
	return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 5 * time.Second}
}

// Transient reports whether err is worth retrying as it is (docs/format.md, retry):
// a serialization failure (SQLSTATE 40001), a deadlock (40P01), a lock not
// available (55P03, as lock_timeout and NOWAIT give), a connection exception
// (class 08), or a failure of the connection itself: pgconn's "safe to retry"
// errors (nothing was sent), a dial or network error, an EOF from a broken
// connection, a closed connection. Cancellation and timeouts of the context
// are not transient, nor is statement_timeout (57014) or any other SQLSTATE.
//
// A transient error inside a transaction leaves its commit in doubt only
// between BeforeCommit and Committed; the executor settles that before the
// next attempt.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "40001", "40P01", "55P03":
			return true
		}
		return strings.HasPrefix(pgErr.Code, "08")
	}
	if pgconn.SafeToRetry(err) {
		return true
	}
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	return errors.As(err, &netErr) || errors.As(err, &connectErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// SQLError is a statement's failure as PostgreSQL reported it, placed in the
// script (sql) or the generated list (generate). Errors returned by Run wrap
// it (errors.As finds it, and the *pgconn.PgError through it).
type SQLError struct {
	*pgconn.PgError
	// Statement is the failing statement's number, from 1, in the script
	// or in the generated list; Of is how many there are.
	Statement, Of int
	// SQL is the statement's text as sent.
	SQL string
	// ScriptLine and ScriptCol are where the error is in the script (the
	// server's error position; the statement's start when the server gave
	// none), from 1. Zero for generated statements.
	ScriptLine, ScriptCol int
	// StmtLine and StmtCol are the server's error position inside SQL, from
	// 1; zero when the server gave none.
	StmtLine, StmtCol int
	// File is the .sql file of a `file:` script, or the runbook for a script
	// written in it; Line and Col are the error's position in that file.
	// Line is zero when unknown (a script whose ${{ }} changed its text).
	File      string
	Line, Col int
	// label names what failed when it is not a script's statement:
	// "generated statement", "query".
	label string
}

// Unwrap returns the server's error.
func (e *SQLError) Unwrap() error { return e.PgError }

// Error renders the failure: where, the server's message and SQLSTATE, then
// detail, hint and the statement on lines of their own.
func (e *SQLError) Error() string {
	var b strings.Builder
	switch e.label {
	case "":
		fmt.Fprintf(&b, "statement %d of %d", e.Statement, e.Of)
		if e.ScriptLine > 0 {
			fmt.Fprintf(&b, " at script line %d col %d", e.ScriptLine, e.ScriptCol)
		}
		switch {
		case e.File != "" && e.Line > 0:
			fmt.Fprintf(&b, " (%s:%d:%d)", e.File, e.Line, e.Col)
		case e.Line > 0 && e.Col > 0:
			fmt.Fprintf(&b, " (runbook line %d col %d)", e.Line, e.Col)
		case e.Line > 0:
			fmt.Fprintf(&b, " (runbook line %d)", e.Line)
		}
	case "generated statement":
		fmt.Fprintf(&b, "generated statement %d of %d (index %d)", e.Statement, e.Of, e.Statement-1)
	default:
		b.WriteString(e.label)
	}
	if e.label != "" && e.StmtLine > 0 {
		fmt.Fprintf(&b, " at line %d col %d", e.StmtLine, e.StmtCol)
	}
	sev := e.SeverityUnlocalized
	if sev == "" {
		sev = e.Severity
	}
	if sev == "" {
		sev = "ERROR"
	}
	fmt.Fprintf(&b, ": %s: %s (SQLSTATE %s)", sev, e.Message, e.Code)
	if e.Detail != "" {
		b.WriteString("\n  DETAIL: " + e.Detail)
	}
	if e.Hint != "" {
		b.WriteString("\n  HINT: " + e.Hint)
	}
	if e.Where != "" {
		b.WriteString("\n  CONTEXT: " + strings.ReplaceAll(e.Where, "\n", "\n    "))
	}
	b.WriteString("\n  SQL: " + clip(e.SQL, 500))
	return b.String()
}

// logCommitError logs the "sql.error" event of a failed COMMIT (a deferred
// constraint, a serialization failure).
func logCommitError(log zerolog.Logger, err error) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		log.Error().Str("event", "sql.error").Str("sqlstate", pgErr.Code).Str("severity", pgErr.Severity).
			Str("detail", pgErr.Detail).Str("hint", pgErr.Hint).Str("sql", "COMMIT").Msg(pgErr.Message)
	}
}

// logSQLError logs the "sql.error" event of a failed statement.
func logSQLError(log zerolog.Logger, e *SQLError) {
	ev := log.Error().Str("event", "sql.error").Int("statement", e.Statement).
		Str("sqlstate", e.Code).Str("severity", e.Severity).Str("detail", e.Detail).Str("hint", e.Hint).
		Int32("position", e.Position).Str("sql", e.SQL)
	if e.ScriptLine > 0 {
		ev = ev.Int("script_line", e.ScriptLine).Int("script_col", e.ScriptCol)
	}
	if e.Line > 0 {
		ev = ev.Int("line", e.Line)
		if e.File != "" {
			ev = ev.Str("file", e.File)
		}
		if e.Col > 0 {
			ev = ev.Int("col", e.Col)
		}
	}
	ev.Msg(e.Message)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// posOf returns the 1-based line and column (in characters) of byte offset off
// in s.
func posOf(s string, off int) (line, col int) {
	off = min(max(off, 0), len(s))
	line = 1 + strings.Count(s[:off], "\n")
	start := strings.LastIndexByte(s[:off], '\n') + 1
	return line, 1 + utf8.RuneCountInString(s[start:off])
}

// byteOffset converts PostgreSQL's error position (1-based, in characters) in
// s to a byte offset; -1 when there is none.
func byteOffset(s string, position int32) int {
	if position <= 0 {
		return -1
	}
	n := int(position) - 1
	for i := range s {
		if n == 0 {
			return i
		}
		n--
	}
	return len(s)
}

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
	if len(t.stmts) <= 1 && t.lead == nil && t.onCommit == nil {
		return t.runBatch(ctx, pc)
	}
	return t.runPipeline(ctx, pc)
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

// withCtx makes err say that the context ended, when it did, so that callers
// can tell an interruption from a failure (errors.Is(err, context.Canceled)).
func withCtx(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil || errors.Is(err, ctx.Err()) {
		return err
	}
	return fmt.Errorf("%w: %w", ctx.Err(), err)
}

// queryError turns the failure of a query (generate's generator, assert's
// query) into the step's error: a SQLError labelled what, placed in the query,
// logged as "sql.error".
func queryError(ctx context.Context, rc *Context, what, q string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		e := &SQLError{PgError: pgErr, Statement: 1, Of: 1, SQL: q, label: what}
		if b := byteOffset(q, pgErr.Position); b >= 0 {
			e.StmtLine, e.StmtCol = posOf(q, b)
			e.ScriptLine, e.ScriptCol = e.StmtLine, e.StmtCol
		}
		logSQLError(rc.Log, e)
		err = e
	} else {
		err = fmt.Errorf("%s: %w", what, err)
	}
	return rc.Redact.Error(withCtx(ctx, err))
}

// evalArgs evaluates bind parameters, keeping each value's type.
func evalArgs(ts []schema.Template, env *schema.Env) ([]any, error) {
	if len(ts) == 0 {
		return nil, nil
	}
	out := make([]any, len(ts))
	for i, t := range ts {
		v, err := t.Eval(env)
		if err != nil {
			return nil, fmt.Errorf("args[%d]: %w", i, err)
		}
		out[i] = v
	}
	return out, nil
}

// queryMaps runs one query with args and returns its rows as maps of column
// name to JSONValue, and its command tag. The statement is described first
// (QueryExecModeDescribeExec: nothing is cached on the connection), so args are
// encoded for the parameters' types and known result types arrive in binary.
func queryMaps(ctx context.Context, conn *pgx.Conn, sql string, args []any) ([]map[string]any, pgconn.CommandTag, error) {
	sql, err := bindArgs(ctx, conn, sql, args)
	if err != nil {
		return nil, pgconn.CommandTag{}, err
	}
	rows, err := conn.Query(ctx, sql, append([]any{pgx.QueryExecModeDescribeExec}, args...)...)
	if err != nil {
		return nil, pgconn.CommandTag{}, err
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	out := []map[string]any{}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, pgconn.CommandTag{}, err
		}
		m := make(map[string]any, len(fields))
		for i, f := range fields {
			m[f.Name] = JSONValue(vals[i], f.DataTypeOID)
		}
		out = append(out, m)
	}
	rows.Close()
	return out, rows.CommandTag(), rows.Err()
}

// JSONValue converts a value decoded by pgx from a column of type oid to a
// JSON-friendly Go value, the form rows take in outputs and expressions:
//
//   - NULL: nil; boolean: bool; text types, enums and unknown types: string
//   - smallint, integer, bigint, oid: int64
//   - real, double precision: float64 (NaN and ±Infinity as strings)
//   - numeric: string, exact ("12.50", "NaN")
//   - timestamptz: RFC 3339 with the offset, in UTC ("2024-05-01T12:00:00.5Z");
//     timestamp: the same without an offset; date: "2024-05-01";
//     ±infinity: "infinity", "-infinity"
//   - bytea: PostgreSQL's hex form ("\x0aff")
//   - uuid: "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
//   - json, jsonb: the decoded document (maps, lists, float64 numbers …)
//   - arrays: lists of converted elements
//   - anything else: its text form
func JSONValue(v any, oid uint32) any {
	switch x := v.(type) {
	case nil, bool, string, map[string]any:
		return x
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int64:
		return x
	case int:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		if x > math.MaxInt64 {
			return strconv.FormatUint(x, 10)
		}
		return int64(x)
	case float32:
		return jsonFloat(float64(x))
	case float64:
		return jsonFloat(x)
	case time.Time:
		switch oid {
		case pgtype.DateOID:
			return x.Format("2006-01-02")
		case pgtype.TimestampOID:
			return x.Format("2006-01-02T15:04:05.999999")
		}
		return x.UTC().Format(time.RFC3339Nano)
	case pgtype.InfinityModifier:
		if x == pgtype.NegativeInfinity {
			return "-infinity"
		}
		return "infinity"
	case []byte:
		return `\x` + hex.EncodeToString(x)
	case [16]byte:
		return fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16])
	case []any:
		out := make([]any, len(x))
		elem := uint32(0)
		switch oid {
		case pgtype.DateArrayOID:
			elem = pgtype.DateOID
		case pgtype.TimestampArrayOID:
			elem = pgtype.TimestampOID
		}
		for i, e := range x {
			out[i] = JSONValue(e, elem)
		}
		return out
	case pgtype.Numeric:
		if b, err := x.MarshalJSON(); err == nil {
			return strings.Trim(string(b), `"`)
		}
	case fmt.Stringer:
		return x.String()
	}
	if tv, ok := v.(driver.Valuer); ok {
		if s, err := tv.Value(); err == nil {
			return JSONValue(s, 0)
		}
	}
	if tv, ok := v.(interface {
		TextValue() (pgtype.Text, error)
	}); ok {
		if s, err := tv.TextValue(); err == nil && s.Valid {
			return s.String
		}
	}
	return fmt.Sprint(v)
}

func jsonFloat(f float64) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return f
}

// bindArgs makes a query's bind parameters work the way an operator expects.
// They are sent untyped, so PostgreSQL infers each one's type from where it is
// used (`WHERE id = $1` takes an integer, `rolname = $1` a name). Where it
// cannot — format('%I', $1), SELECT $1 — PostgreSQL refuses the query
// (SQLSTATE 42P18, indeterminate datatype); then exactly that parameter gets a
// cast from its value's type (params are strings: ::text) and the query is
// probed again. The probe costs a round trip and runs only for queries with
// args; inside an open transaction it runs in a savepoint.
func bindArgs(ctx context.Context, conn *pgx.Conn, sql string, args []any) (string, error) {
	if len(args) == 0 {
		return sql, nil
	}
	casts := map[int]string{}
	query := sql
	for range args {
		n, err := indeterminate(ctx, conn.PgConn(), query)
		if err != nil || n < 1 || n > len(args) || casts[n] != "" {
			return query, err
		}
		casts[n] = pgTypeOf(args[n-1])
		query = sqlsplit.CastParams(sql, casts)
	}
	return query, nil
}

var indeterminateRe = regexp.MustCompile(`parameter \$(\d+)`)

// indeterminate parses (without running) a query and returns the number of
// the first parameter whose type PostgreSQL cannot determine, or 0.
func indeterminate(ctx context.Context, pc *pgconn.PgConn, sql string) (int, error) {
	inTx := pc.TxStatus() != 'I'
	if inTx {
		if err := pc.Exec(ctx, "SAVEPOINT runbook_args").Close(); err != nil {
			return 0, err
		}
	}
	_, perr := pc.Prepare(ctx, "", sql, nil)
	if inTx {
		undo := "RELEASE SAVEPOINT runbook_args"
		if perr != nil {
			undo = "ROLLBACK TO SAVEPOINT runbook_args; RELEASE SAVEPOINT runbook_args"
		}
		if err := pc.Exec(ctx, undo).Close(); err != nil {
			return 0, err
		}
	}
	var pgErr *pgconn.PgError
	if !errors.As(perr, &pgErr) || pgErr.Code != "42P18" {
		return 0, nil // typed, or an error of the query's own that running it reports
	}
	m := indeterminateRe.FindStringSubmatch(pgErr.Message)
	if m == nil {
		return 0, nil
	}
	n, _ := strconv.Atoi(m[1])
	return n, nil
}

// pgTypeOf names the PostgreSQL type an arg's value is sent as when the
// server cannot infer one.
func pgTypeOf(v any) string {
	switch v.(type) {
	case bool:
		return "boolean"
	case int, int64, int32:
		return "bigint"
	case float64:
		return "double precision"
	}
	return "text"
}
