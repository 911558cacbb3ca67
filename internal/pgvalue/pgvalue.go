// Package pgvalue is how runbook's values cross to PostgreSQL and back:
// bind parameters sent so that the server infers their types (Bind), and
// row values converted to the JSON-friendly form of outputs and expressions
// (JSON, QueryMaps).
package pgvalue

import (
	"context"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/runbookhq/runbook/internal/sqlsplit"
)

// QueryMaps runs one query with args and returns its rows as maps of column
// name to JSON value, and its command tag. The statement is described first
// (QueryExecModeDescribeExec: nothing is cached on the connection), so args are
// encoded for the parameters' types and known result types arrive in binary.
func QueryMaps(ctx context.Context, conn *pgx.Conn, sql string, args []any) ([]map[string]any, pgconn.CommandTag, error) {
	sql, err := Bind(ctx, conn, sql, args)
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
			m[f.Name] = JSON(vals[i], f.DataTypeOID)
		}
		out = append(out, m)
	}
	rows.Close()
	return out, rows.CommandTag(), rows.Err()
}

// JSON converts a value decoded by pgx from a column of type oid to a
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
func JSON(v any, oid uint32) any {
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
			out[i] = JSON(e, elem)
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
			return JSON(s, 0)
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

// Bind makes a query's bind parameters work the way an operator expects.
// They are sent untyped, so PostgreSQL infers each one's type from where it is
// used (`WHERE id = $1` takes an integer, `rolname = $1` a name). Where it
// cannot — format('%I', $1), SELECT $1 — PostgreSQL refuses the query
// (SQLSTATE 42P18, indeterminate datatype); then exactly that parameter gets a
// cast from its value's type (params are strings: ::text) and the query is
// probed again. The probe costs a round trip and runs only for queries with
// args; inside an open transaction it runs in a savepoint. It returns the
// query to send, with those casts.
func Bind(ctx context.Context, conn *pgx.Conn, sql string, args []any) (string, error) {
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
