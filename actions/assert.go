package actions

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/runbookhq/runbook/internal/event"
	"github.com/runbookhq/runbook/internal/pgerr"
	"github.com/runbookhq/runbook/internal/pgvalue"
	"github.com/runbookhq/runbook/schema"
)

// Assert checks a condition, optionally over a query's rows, or compares a
// query's results on two connections.
type Assert struct {
	On      schema.ConnRef    `yaml:"on" doc:"The connection the query runs on."`
	Query   schema.Template   `yaml:"query" text:"sql" doc:"A query; its first row is row and all rows are rows in that and message."`
	Args    []schema.Template `yaml:"args" doc:"Bind parameters of the query."`
	That    schema.Exprs      `yaml:"that" scope:"row" doc:"One expression or a list; all must be true."`
	Message schema.Template   `yaml:"message" scope:"row" doc:"Shown when the assertion fails. May use row and rows."`
	Compare []schema.ConnRef  `yaml:"compare" doc:"Two connections: run query on both; pass when the ordered results are equal."`
	Diff    int               `yaml:"show_diff" minimum:"1" default:"10" doc:"How many differing rows a failed compare shows."`

	Keys schema.Positions `yaml:"-"`
}

func init() {
	Register("assert", "Check a condition over a query's rows, or compare a query's results on two connections.", func() Runner { return &Assert{} })
}

// Kind implements schema.Action.
func (*Assert) Kind() string { return "assert" }

// Effects implements Effecter: an assertion changes nothing.
func (*Assert) Effects() Effects { return None }

// Validate implements schema.Validator.
func (a *Assert) Validate(v *schema.Validation) {
	if a.Compare != nil {
		if len(a.Compare) != 2 {
			v.Errorf(a.Keys["compare"], "compare takes exactly two connections, not %d", len(a.Compare))
		}
		if a.Query.IsZero() {
			v.Errorf(a.Keys["compare"], "compare needs a query to run on both connections")
		}
		if a.On.Name != "" {
			v.Errorf(a.Keys["on"], "compare names the connections; drop on")
		}
		if len(a.Compare) == 2 && a.Compare[0].Name != "" && a.Compare[0].Name == a.Compare[1].Name {
			v.Errorf(a.Compare[1].Pos, "compare takes two different connections")
		}
		return
	}
	if len(a.That) == 0 {
		v.Errorf(v.Step.ActionPos, "assert needs that (an expression or a list) or compare")
	}
	if !a.Query.IsZero() && a.On.Name == "" {
		v.Errorf(a.Keys["query"], "assert with a query needs on: the connection to run it on")
	}
	if a.Query.IsZero() && a.On.Name != "" {
		v.Errorf(a.Keys["on"], "on without a query: add the query to run")
	}
}

// AssertionError is an assertion that did not hold: the expression (or
// "compare A B") and the message shown.
type AssertionError struct {
	Expr    string
	Message string
}

func (e *AssertionError) Error() string { return e.Message }

// Run implements Runner.
//
// With a query, its rows (values as JSONValue gives them) are row (the first,
// or an empty map) and rows in that and message, and the outputs row (nil
// without rows) and rows. Every expression is logged as an "assert.result"
// event with the row it saw and its outcome. With compare, the query runs on
// both connections at once and the results are compared row by row as they
// stream in (text form of the values, NULL distinct from the empty string), in bounded
// memory; the outputs are rows (the count). A failure is an
// *AssertionError; the executor's retry makes an assert a wait-until.
func (a *Assert) Run(ctx context.Context, rc *Context) (Outputs, error) {
	if len(a.Compare) > 0 {
		return a.compare(ctx, rc)
	}
	env := *rc.Env
	out := Outputs{}
	if !a.Query.IsZero() {
		q, args, conn, err := openQuery(ctx, rc, a.Query, a.Args, a.On.Name)
		if err != nil {
			return nil, err
		}
		rows, _, err := pgvalue.QueryMaps(ctx, conn, q, args)
		if err != nil {
			return nil, queryError(ctx, rc, "assert query", q, err)
		}
		env.Rows, env.Row = rows, map[string]any{}
		out["rows"], out["row"] = rows, nil
		if len(rows) > 0 {
			env.Row, out["row"] = rows[0], rows[0]
		}
	}
	for i := range a.That {
		e := &a.That[i]
		ok, err := e.Bool(&env)
		ev := AssertResult{Expr: e.Src}
		if !a.Query.IsZero() {
			n := len(env.Rows)
			ev.Row, ev.Rows = env.Row, &n
		}
		switch {
		case err != nil:
			ev.Outcome, ev.Error, ev.Text = "error", err.Error(), "assertion could not be evaluated"
			rc.Events.Emit(ev)
			return nil, rc.Redact.Error(fmt.Errorf("that: %w", err))
		case ok:
			ev.Outcome, ev.Text = "pass", "assertion holds"
			rc.Events.Emit(ev)
			continue
		}
		msg := "assertion failed: " + strings.TrimSpace(e.Src)
		if !a.Message.IsZero() {
			if m, err := a.Message.String(&env); err == nil {
				msg = m
			} else {
				msg += " (message: " + err.Error() + ")"
			}
		}
		ev.Outcome, ev.Text = "fail", msg
		rc.Events.Emit(ev)
		return nil, rc.Redact.Error(&AssertionError{Expr: e.Src, Message: msg})
	}
	return out, nil
}

// nullText stands for NULL in a row's text form: PostgreSQL's text output
// never contains a NUL byte.
const nullText = "\x00"

// side streams one connection's result rows, in text form, in batches.
type side struct {
	name string
	ch   chan [][]string
	err  error
	n    int
}

func (a *Assert) compare(ctx context.Context, rc *Context) (Outputs, error) {
	if len(a.Compare) != 2 {
		return nil, fmt.Errorf("compare takes exactly two connections, not %d", len(a.Compare))
	}
	var conns [2]*pgx.Conn
	q, args, conn, err := openQuery(ctx, rc, a.Query, a.Args, a.Compare[0].Name)
	if err != nil {
		return nil, err
	}
	conns[0] = conn
	if conns[1], err = rc.Conns.Conn(ctx, a.Compare[1].Name); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sides := [2]*side{{name: a.Compare[0].Name}, {name: a.Compare[1].Name}}
	var wg sync.WaitGroup
	for i, s := range sides {
		s.ch = make(chan [][]string, 2)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(s.ch)
			s.err = streamRows(cctx, conns[i], q, args, s.ch)
			if s.err != nil {
				cancel()
			}
		}()
	}
	show := a.Diff
	if show <= 0 {
		show = 10
	}
	var diffs []string
	differing := 0
	var bufs [2][][]string
	next := func(i int) ([]string, bool) {
		for len(bufs[i]) == 0 {
			b, ok := <-sides[i].ch
			if !ok {
				return nil, false
			}
			bufs[i] = b
		}
		r := bufs[i][0]
		bufs[i] = bufs[i][1:]
		sides[i].n++
		return r, true
	}
	for row := 1; ; row++ {
		ra, okA := next(0)
		rb, okB := next(1)
		if !okA && !okB {
			break
		}
		if okA && okB && equalRows(ra, rb) {
			continue
		}
		differing++
		if len(diffs) < show {
			diffs = append(diffs, fmt.Sprintf("row %d: %s=%s %s=%s", row, sides[0].name, renderRow(ra, okA), sides[1].name, renderRow(rb, okB)))
		}
	}
	wg.Wait()
	// A failure on one side cancels the other: report the first failure
	// that is not that cancellation.
	byCancel := func(err error) bool {
		var pgErr *pgconn.PgError
		return ctx.Err() == nil && (errors.Is(err, context.Canceled) || errors.As(err, &pgErr) && pgErr.Code == "57014")
	}
	failed := -1
	for i, s := range sides {
		if s.err != nil && (failed < 0 || byCancel(sides[failed].err) && !byCancel(s.err)) {
			failed = i
		}
	}
	if failed >= 0 {
		return nil, queryError(ctx, rc, "compare query on "+sides[failed].name, q, sides[failed].err)
	}
	nA, nB := sides[0].n, sides[1].n
	expr := "compare " + sides[0].name + " " + sides[1].name
	ev := AssertResult{Expr: expr, Counts: event.Extra{{Key: "rows_" + sides[0].name, Value: nA}, {Key: "rows_" + sides[1].name, Value: nB}},
		Differing: &differing, Diff: &diffs}
	if differing == 0 {
		ev.Outcome, ev.Text = "pass", "results are equal"
		rc.Events.Emit(ev)
		return Outputs{"rows": nA}, nil
	}
	ev.Outcome, ev.Text = "fail", "results differ"
	rc.Events.Emit(ev)
	var b strings.Builder
	fmt.Fprintf(&b, "%s: results differ in %d row(s) (%s: %d rows, %s: %d rows)", expr, differing, sides[0].name, nA, sides[1].name, nB)
	for _, d := range diffs {
		b.WriteString("\n  " + d)
	}
	if differing > len(diffs) {
		fmt.Fprintf(&b, "\n  … and %d more", differing-len(diffs))
	}
	return nil, rc.Redact.Error(&AssertionError{Expr: expr, Message: b.String()})
}

// streamRows runs the query and sends its rows in text form, in batches.
func streamRows(ctx context.Context, conn *pgx.Conn, q string, args []any, ch chan<- [][]string) error {
	bound, err := pgvalue.Bind(ctx, conn, q, args)
	if err != nil {
		return err
	}
	rows, err := conn.Query(ctx, bound, append([]any{pgx.QueryExecModeDescribeExec, pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)...)
	if err != nil {
		return err
	}
	defer rows.Close()
	const size = 256
	batch := make([][]string, 0, size)
	for rows.Next() {
		raw := rows.RawValues()
		r := make([]string, len(raw))
		for i, v := range raw {
			if v == nil {
				r[i] = nullText
			} else {
				r[i] = string(v)
			}
		}
		if batch = append(batch, r); len(batch) == size {
			select {
			case ch <- batch:
			case <-ctx.Done():
				return ctx.Err()
			}
			batch = make([][]string, 0, size)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		select {
		case ch <- batch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func equalRows(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// renderRow shows a row as (v1, v2, NULL); a missing row as (missing).
func renderRow(r []string, ok bool) string {
	if !ok {
		return "(missing)"
	}
	var b strings.Builder
	b.WriteByte('(')
	for i, v := range r {
		if i > 0 {
			b.WriteString(", ")
		}
		if v == nullText {
			b.WriteString("NULL")
		} else {
			b.WriteString(pgerr.Clip(v, 200))
		}
	}
	b.WriteByte(')')
	return b.String()
}
