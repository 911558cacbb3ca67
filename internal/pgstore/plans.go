package pgstore

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
)

// The ledger of sealed plans applied (docs/plan.md, "Sealed plans"): a row
// per plan id in runbook_state.applied_plans, with the run's record of it
// (when, by whom, which run and state), as the executor wrote it.

// PlanApplied returns the record of the plan applied, nil when it was not.
func (s *Store) PlanApplied(id string) ([]byte, error) {
	var rec []byte
	err := s.use("reading the plans applied", func(ctx context.Context, c *pgx.Conn) error {
		err := c.QueryRow(ctx, `SELECT record::text FROM runbook_state.applied_plans WHERE plan = $1`, id).Scan(&rec)
		if errors.Is(err, pgx.ErrNoRows) {
			rec, err = nil, nil
		}
		return err
	})
	return rec, err
}

// MarkPlanApplied records the plan applied, committed synchronously, unless
// a row for it exists: then it returns that row's record.
func (s *Store) MarkPlanApplied(id string, rec []byte) (prior []byte, err error) {
	err = s.use("recording the plan applied", func(ctx context.Context, c *pgx.Conn) error {
		tx, err := c.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.Background())
		if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = on`); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO runbook_state.applied_plans (plan, key, record) VALUES ($1, $2, $3::jsonb) ON CONFLICT (plan) DO NOTHING`,
			id, s.key, string(rec))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			// Another run's row (committed: the insert waited for it).
			if err := tx.QueryRow(ctx, `SELECT record::text FROM runbook_state.applied_plans WHERE plan = $1`, id).Scan(&prior); err != nil {
				return err
			}
		}
		return tx.Commit(ctx)
	})
	return prior, err
}
