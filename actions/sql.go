package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/runbookhq/runbook/internal/pgerr"
	"github.com/runbookhq/runbook/internal/pgtx"
	"github.com/runbookhq/runbook/internal/pgvalue"
	"github.com/runbookhq/runbook/internal/sqlsplit"
	"github.com/runbookhq/runbook/schema"
)

// SQL runs a script of one or more statements on a connection.
type SQL struct {
	On          schema.ConnRef    `yaml:"on" required:"true" doc:"The connection to run on."`
	Script      schema.Template   `yaml:"script" text:"sql" doc:"One or more SQL statements. May embed ${{ … }}; prefer args and ident() for values."`
	File        string            `yaml:"file" doc:"A .sql file, relative to the runbook, instead of script."`
	Args        []schema.Template `yaml:"args" doc:"Bind parameters $1, $2 … of a single-statement script."`
	Transaction *bool             `yaml:"transaction" default:"true" doc:"true: the whole script commits or rolls back as one. false: each statement on its own (CREATE INDEX CONCURRENTLY, VACUUM, ALTER SYSTEM)."`
	Capture     bool              `yaml:"capture" doc:"Keep the last statement's rows as outputs.rows (a list of maps) and outputs.row (the first)."`

	Keys schema.Positions `yaml:"-"`

	fileScript string
}

func init() {
	Register("sql", "Run SQL on a connection.", func() Runner { return &SQL{} })
}

// Kind implements schema.Action.
func (*SQL) Kind() string { return "sql" }

// InTransaction reports whether the script runs as one transaction.
func (a *SQL) InTransaction() bool { return a.Transaction == nil || *a.Transaction }

// Effects implements Effecter: a script in one transaction commits through
// the journal; statements in autocommit are untracked.
func (a *SQL) Effects() Effects {
	if a.InTransaction() {
		return Journaled
	}
	return Untracked
}

// Retryable implements Retrier: only errors worth retrying as they are.
func (a *SQL) Retryable(err error) bool { return pgerr.Transient(err) }

// The capabilities the executor relies on for a journaled action.
var (
	_ Effecter  = (*SQL)(nil)
	_ Retrier   = (*SQL)(nil)
	_ Describer = (*SQL)(nil)
)

// DescribePoint implements Describer.
func (a *SQL) DescribePoint(_ string, data []byte) string {
	if data == nil {
		return "the start"
	}
	return "the script's commit"
}

// DescribeDoubt implements Describer.
func (a *SQL) DescribeDoubt(step, _ string, _, _ []byte) string {
	return fmt.Sprintf("step %s's transaction committed", step)
}

// sqlUnit is the journal's unit of an sql step in a transaction: its data,
// once the transaction committed, is the step's outputs.
const sqlUnit = "commit"

// Validate implements schema.Validator.
func (a *SQL) Validate(v *schema.Validation) {
	switch {
	case a.Script.IsZero() && a.File == "":
		v.Errorf(v.Step.ActionPos, "sql needs script (the statements) or file (a .sql file)")
		return
	case !a.Script.IsZero() && a.File != "":
		v.Errorf(a.Keys["file"], "sql takes script or file, not both")
		return
	}
	if a.File != "" {
		src, err := v.ReadFile(a.File)
		if err != nil {
			v.Errorf(a.Keys["file"], "sql file: %v", err)
			return
		}
		a.fileScript = string(src)
	}
	if n := len(sqlsplit.Split(a.script())); len(a.Args) > 0 && n != 1 && !a.Script.HasExpr() {
		v.Errorf(a.Keys["args"], "args bind parameters of a single statement; this script has %d", n)
	}
}

// script is the script's text before evaluation: the inline script or the file's content.
func (a *SQL) script() string {
	if a.File != "" {
		return a.fileScript
	}
	return a.Script.Raw
}

// Run implements Runner.
//
// With transaction: true (the default) the script costs two round trips
// whatever its length: one pipeline of BEGIN, every statement and the query of
// the transaction id; then, after the journal's BeforeCommit, COMMIT. (The
// backend's identity, recorded with the transaction id, is asked once per
// connection: see pgtx.Identify.) With args or capture the last statement runs on its
// own, described first so that parameters and values are typed (two more
// round trips). With transaction: false each statement runs alone through the
// simple query protocol, in autocommit, one round trip each, with no journal
// calls.
//
// Each statement is logged as an "sql.statement" event with its number, text,
// rows affected and duration (see trip for how durations are measured). The
// script is split as psql splits it; a file: script is sent as written (no
// ${{ }} evaluation). Outputs: rows_affected (int64, summed over the
// statements), statements (int) and, with capture, rows and row (see
// JSONValue for the values).
func (a *SQL) Run(ctx context.Context, rc *Context) (Outputs, error) {
	if done := rc.Journal.Unit(sqlUnit); done != nil && a.InTransaction() {
		// The transaction committed in an earlier attempt or run whose end
		// was not recorded (the executor settled it with the server).
		var out Outputs
		if err := json.Unmarshal(done, &out); err != nil {
			return nil, fmt.Errorf("the journal's record of the committed transaction: %w", err)
		}
		return out, nil
	}
	script := a.fileScript
	if a.File == "" {
		s, err := a.Script.String(rc.Env)
		if err != nil {
			return nil, rc.Redact.Error(fmt.Errorf("script: %w", err))
		}
		script = s
	}
	stmts := sqlsplit.Split(script)
	args, err := evalArgs(a.Args, rc.Env)
	if err != nil {
		return nil, rc.Redact.Error(err)
	}
	if len(args) > 0 && len(stmts) != 1 {
		return nil, fmt.Errorf("args bind parameters of a single statement; this script has %d", len(stmts))
	}
	out := Outputs{"rows_affected": int64(0), "statements": len(stmts)}
	if a.Capture {
		out["rows"], out["row"] = []map[string]any{}, nil
	}
	if len(stmts) == 0 {
		rc.Events.Emit(SQLEmpty{})
		return out, nil
	}
	conn, err := rc.Conns.Conn(ctx, a.On.Name)
	if err != nil {
		return nil, err
	}
	r := &sqlRun{a: a, rc: rc, conn: conn, pc: conn.PgConn(), script: script, stmts: stmts, args: args, out: out,
		last: len(args) > 0 || a.Capture}
	if a.InTransaction() {
		err = r.inTx(ctx)
	} else {
		err = r.autocommit(ctx)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// sqlRun is one attempt of an sql step.
type sqlRun struct {
	a      *SQL
	rc     *Context
	conn   *pgx.Conn
	pc     *pgconn.PgConn
	script string
	stmts  []sqlsplit.Statement
	args   []any
	out    Outputs
	// last: the last statement runs on its own (args or capture).
	last bool
}

func (r *sqlRun) inTx(ctx context.Context) error {
	n := len(r.stmts)
	texts := make([]string, n)
	for i, s := range r.stmts {
		texts[i] = s.SQL
	}
	id, err := pgtx.Identify(ctx, r.pc)
	if err != nil {
		endTx(ctx, r.pc)
		return r.rc.Redact.Error(withCtx(ctx, fmt.Errorf("reading the backend's identity: %w", err)))
	}
	t := trip{begin: true, stmts: texts, xid: xidSQL, done: r.done}
	if r.last {
		t.stmts, t.xid = texts[:n-1], ""
	}
	res := t.run(ctx, r.pc)
	if res.err != nil {
		return r.fail(ctx, res.failed, res.err)
	}
	if r.last {
		if err := r.runLast(ctx); err != nil {
			return r.fail(ctx, n-1, err)
		}
		x := trip{xid: xidSQL}
		if res = x.run(ctx, r.pc); res.err != nil {
			return r.fail(ctx, n, res.err)
		}
	}
	data, err := r.out.MarshalJSON() // what json.Marshal writes, without its second pass
	if err != nil {
		endTx(ctx, r.pc)
		return fmt.Errorf("outputs: %w", err)
	}
	tx := Tx{Unit: sqlUnit, Tx: id.Tx(r.a.On.Name, res.xid), Data: data}
	if err := r.rc.Journal.BeforeCommit(ctx, tx); err != nil {
		endTx(ctx, r.pc)
		return err
	}
	c := trip{commit: true}
	if res = c.run(ctx, r.pc); res.err != nil {
		endTx(ctx, r.pc)
		emitCommitError(r.rc.Events, res.err)
		return r.rc.Redact.Error(withCtx(ctx, fmt.Errorf("COMMIT: %w", res.err)))
	}
	return r.rc.Journal.Committed(tx)
}

func (r *sqlRun) autocommit(ctx context.Context) error {
	n := len(r.stmts)
	for k, st := range r.stmts {
		if r.last && k == n-1 {
			if err := r.runLast(ctx); err != nil {
				return r.fail(ctx, k, err)
			}
			continue
		}
		start := time.Now()
		rows, err := execSimple(ctx, r.pc, st.SQL)
		if err != nil {
			return r.fail(ctx, k, err)
		}
		r.log(k, rows, time.Since(start))
	}
	if st := r.pc.TxStatus(); st != 'I' && st != 0 {
		endTx(ctx, r.pc)
		return errors.New("the script left a transaction open (BEGIN without COMMIT); it was rolled back")
	}
	return nil
}

// runLast runs the last statement with the step's args, keeping its rows when
// capture is set.
func (r *sqlRun) runLast(ctx context.Context) error {
	k := len(r.stmts) - 1
	start := time.Now()
	rows, tag, err := pgvalue.QueryMaps(ctx, r.conn, r.stmts[k].SQL, r.args)
	if err != nil {
		return err
	}
	r.done(k, tag, time.Since(start))
	if r.a.Capture {
		r.out["rows"] = rows
		if len(rows) > 0 {
			r.out["row"] = rows[0]
		}
	}
	return nil
}

func (r *sqlRun) done(k int, tag pgconn.CommandTag, d time.Duration) {
	r.log(k, tag.RowsAffected(), d)
}

func (r *sqlRun) log(k int, rows int64, d time.Duration) {
	r.out["rows_affected"] = r.out["rows_affected"].(int64) + rows
	r.rc.Events.Emit(SQLStatement{Statement: k + 1, SQL: r.stmts[k].SQL, Rows: rows, Duration: d})
}

// fail ends the transaction (or the statement still running on the server)
// and turns err, met at statement k (or atBegin, or len(stmts) for the
// transaction id), into the step's error.
func (r *sqlRun) fail(ctx context.Context, k int, err error) error {
	endTx(ctx, r.pc)
	n := len(r.stmts)
	var pgErr *pgconn.PgError
	switch {
	case k >= 0 && k < n && errors.As(err, &pgErr):
		e := r.sqlError(k, pgErr)
		emitSQLError(r.rc.Events, e)
		err = e
	case k >= 0 && k < n:
		err = fmt.Errorf("statement %d of %d: %w", k+1, n, err)
	case k == atBegin:
		err = fmt.Errorf("BEGIN: %w", err)
	default:
		err = fmt.Errorf("reading the transaction id: %w", err)
	}
	return r.rc.Redact.Error(withCtx(ctx, err))
}

// sqlError places the server's error in the script and the runbook.
func (r *sqlRun) sqlError(k int, pgErr *pgconn.PgError) *pgerr.SQLError {
	st := r.stmts[k]
	e := &pgerr.SQLError{PgError: pgErr, Statement: k + 1, Of: len(r.stmts), SQL: st.SQL}
	off := st.Offset
	if b := pgerr.ByteOffset(st.SQL, pgErr.Position); b >= 0 {
		e.StmtLine, e.StmtCol = pgerr.PosOf(st.SQL, b)
		off += b
	}
	e.ScriptLine, e.ScriptCol = pgerr.PosOf(r.script, off)
	switch {
	case r.a.File != "":
		e.File, e.Line, e.Col = r.a.File, e.ScriptLine, e.ScriptCol
	case r.a.Script.Pos.Line == 0 || r.a.Script.Raw != r.script:
		// unknown, or expressions changed the text: no runbook position
	default:
		// The exact place in the runbook, whatever the scalar's style.
		p := r.a.Script.PosAt(utf8.RuneCountInString(r.script[:off]))
		e.File, e.Line, e.Col = r.rc.File, p.Line, p.Col
	}
	return e
}
