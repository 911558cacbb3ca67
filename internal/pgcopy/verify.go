package pgcopy

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
)

// Check is a table's rows (and checksum) on both sides after the copy.
type Check struct {
	Table          string `json:"table"`
	SourceRows     int64  `json:"source_rows"`
	TargetRows     int64  `json:"target_rows"`
	SourceChecksum string `json:"source_checksum,omitempty"`
	TargetChecksum string `json:"target_checksum,omitempty"`
}

// OK reports whether both sides agree.
func (c Check) OK() bool {
	return c.SourceRows == c.TargetRows && c.SourceChecksum == c.TargetChecksum
}

// verifySettings make both sides print values the same way, so that
// checksums of the rows' text compare.
const verifySettings = "SET DateStyle = 'ISO, MDY'; SET IntervalStyle = postgres; SET extra_float_digits = 3; " +
	"SET TimeZone = 'UTC'; SET bytea_output = hex; SET row_security = off; SET statement_timeout = 0"

// checksumSQL: the row count and the sum of a 64-bit hash of each row's
// text, which does not depend on the rows' order (the built-in migration's
// verify-data computes the same).
const checksumSQL = "SELECT count(*), coalesce(sum(('x' || left(md5(ROW(r.*)::text), 16))::bit(64)::bigint), 0)::text FROM ONLY %s r"

// verify counts (and checksums) every table on both sides, Jobs tables at
// a time, and fails naming the tables that differ.
func (c *copier) verify(ctx context.Context) ([]Check, error) {
	checks := make([]Check, len(c.plan.Tables))
	g, gctx := errgroup.WithContext(ctx)
	next := make(chan int)
	for range min(c.Jobs, max(len(checks), 1)) {
		g.Go(func() error {
			var src, tgt *pgx.Conn
			defer func() {
				for _, c := range []*pgx.Conn{src, tgt} {
					if c != nil {
						c.Close(context.Background())
					}
				}
			}()
			for i := range next {
				var err error
				if src == nil {
					if src, err = c.verifySession(gctx, false); err != nil {
						return err
					}
					if tgt, err = c.verifySession(gctx, true); err != nil {
						return err
					}
				}
				t := c.plan.Tables[i]
				q := fmt.Sprintf(checksumSQL, t.Ident())
				if c.Verify == "count" {
					q = fmt.Sprintf("SELECT count(*), '' FROM ONLY %s", t.Ident())
				}
				ck := Check{Table: t.Label()}
				if err := src.QueryRow(gctx, q).Scan(&ck.SourceRows, &ck.SourceChecksum); err != nil {
					return fmt.Errorf("verifying %s on the source: %w", t.Label(), sqlErr(err, "verification query", q))
				}
				if err := tgt.QueryRow(gctx, q).Scan(&ck.TargetRows, &ck.TargetChecksum); err != nil {
					return fmt.Errorf("verifying %s on the target: %w", t.Label(), sqlErr(err, "verification query", q))
				}
				checks[i] = ck
			}
			return nil
		})
	}
	tables := make([]int, len(checks))
	for i := range tables {
		tables[i] = i
	}
	g.Go(func() error { feed(gctx, next, tables); return nil })
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var bad []string
	for _, ck := range checks {
		switch {
		case ck.SourceRows != ck.TargetRows:
			bad = append(bad, fmt.Sprintf("%s: %d rows on the source, %d on the target", ck.Table, ck.SourceRows, ck.TargetRows))
		case ck.SourceChecksum != ck.TargetChecksum:
			bad = append(bad, fmt.Sprintf("%s: checksum %s on the source, %s on the target", ck.Table, ck.SourceChecksum, ck.TargetChecksum))
		}
	}
	if len(bad) > 0 {
		return checks, fmt.Errorf("the copy differs from the source (verify: %s): %s", c.Verify, strings.Join(clip(bad, 20), "; "))
	}
	return checks, nil
}

func (c *copier) verifySession(ctx context.Context, target bool) (*pgx.Conn, error) {
	conn, err := c.Dial(ctx, target)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, verifySettings); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("setting up a verification session: %w", err)
	}
	return conn, nil
}
