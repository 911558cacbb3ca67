package actions

// What the PostgreSQL actions share around their queries: the args'
// values, the step's error for a failed query, a done context in errors.

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/runbookhq/runbook/internal/pgerr"
	"github.com/runbookhq/runbook/schema"
)

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
		e := &pgerr.SQLError{PgError: pgErr, Statement: 1, Of: 1, SQL: q, Label: what}
		if b := pgerr.ByteOffset(q, pgErr.Position); b >= 0 {
			e.StmtLine, e.StmtCol = pgerr.PosOf(q, b)
			e.ScriptLine, e.ScriptCol = e.StmtLine, e.StmtCol
		}
		emitSQLError(rc.Events, e)
		err = e
	} else {
		err = fmt.Errorf("%s: %w", what, err)
	}
	return rc.Redact.Error(withCtx(ctx, err))
}

// openQuery is how generate and assert begin: it evaluates the step's query
// and args for this attempt, then opens the connection named on. Errors of
// evaluation are redacted; the connection's are as Conns gives them.
func openQuery(ctx context.Context, rc *Context, q schema.Template, args []schema.Template, on string) (string, []any, *pgx.Conn, error) {
	text, err := q.String(rc.Env)
	if err != nil {
		return "", nil, nil, rc.Redact.Error(fmt.Errorf("query: %w", err))
	}
	vals, err := evalArgs(args, rc.Env)
	if err != nil {
		return "", nil, nil, rc.Redact.Error(err)
	}
	conn, err := rc.Conns.Conn(ctx, on)
	if err != nil {
		return "", nil, nil, err
	}
	return text, vals, conn, nil
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
