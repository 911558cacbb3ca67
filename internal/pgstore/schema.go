package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Schema is the control database's schema that holds the runs' state.
const Schema = "runbook_state"

// migrations bring the schema from one version to the next: migrations[i]
// makes version i+1. A migration is never edited once released; a change is
// a new one (docs/state-postgres.md).
var migrations = []string{
	// 1: runs (the snapshot), the journal, blobs in chunks, leases.
	`CREATE TABLE runbook_state.runs (
		key        text PRIMARY KEY,
		snapshot   bytea NOT NULL,
		updated_at timestamptz NOT NULL DEFAULT now()
	);
	CREATE TABLE runbook_state.journal (
		key    text NOT NULL,
		seq    bigint NOT NULL,
		record bytea NOT NULL,
		PRIMARY KEY (key, seq)
	);
	CREATE SEQUENCE runbook_state.blob_ids;
	CREATE TABLE runbook_state.blobs (
		key    text NOT NULL,
		name   text NOT NULL,
		id     bigint NOT NULL UNIQUE,
		chunks integer NOT NULL,
		size   bigint NOT NULL,
		PRIMARY KEY (key, name)
	);
	CREATE TABLE runbook_state.blob_chunks (
		key  text NOT NULL,
		id   bigint NOT NULL,
		n    integer NOT NULL,
		data bytea NOT NULL,
		PRIMARY KEY (id, n)
	);
	CREATE INDEX blob_chunks_key ON runbook_state.blob_chunks (key);
	CREATE TABLE runbook_state.leases (
		key          text PRIMARY KEY,
		host         text NOT NULL,
		pid          integer NOT NULL,
		backend_pid  integer NOT NULL,
		run_id       text,
		started_at   timestamptz NOT NULL,
		heartbeat_at timestamptz NOT NULL
	);`,
	// 2: sealed plans applied (docs/plan.md): one row per plan id, so that a
	// plan is applied at most once wherever its file is copied.
	`CREATE TABLE runbook_state.applied_plans (
		plan       text PRIMARY KEY,
		key        text NOT NULL,
		record     jsonb NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	);`,
}

// Version is the schema's version this runbook writes.
var Version = len(migrations)

// migrateLock is the advisory lock (transaction-scoped) under which a
// process creates or migrates the schema, so that two do not race.
var migrateLock = lockKey("runbook_state schema")

// errNoSchema is migrate's answer, when asked not to create the schema,
// for a control database that has none: it holds no run.
var errNoSchema = errors.New("no schema " + Schema)

// migrate makes the schema current: created on first use (when create is
// set), migrated from an older version, refused when newer than this
// runbook knows.
func migrate(ctx context.Context, c *pgx.Conn, create bool) error {
	v, err := schemaVersion(ctx, c)
	switch {
	case err != nil:
		return err
	case v == Version:
		return nil
	case v > Version:
		return tooNew(v)
	case v == 0 && !create:
		return errNoSchema
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLock); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS runbook_state;
		CREATE TABLE IF NOT EXISTS runbook_state.version (version integer NOT NULL)`); err != nil {
		return err
	}
	var rows []int
	r, err := tx.Query(ctx, `SELECT version FROM runbook_state.version FOR UPDATE`)
	if err != nil {
		return err
	}
	if rows, err = pgx.CollectRows(r, pgx.RowTo[int]); err != nil {
		return err
	}
	v = 0
	if len(rows) > 0 {
		v = rows[0]
	}
	if v > Version {
		return tooNew(v)
	}
	for i := v; i < Version; i++ {
		if _, err := tx.Exec(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migrating to version %d: %w", i+1, err)
		}
	}
	if len(rows) == 0 {
		_, err = tx.Exec(ctx, `INSERT INTO runbook_state.version (version) VALUES ($1)`, Version)
	} else {
		_, err = tx.Exec(ctx, `UPDATE runbook_state.version SET version = $1`, Version)
	}
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = on`); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// schemaVersion is the schema's version, 0 when there is none yet.
func schemaVersion(ctx context.Context, c *pgx.Conn) (int, error) {
	var v int
	err := c.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM runbook_state.version`).Scan(&v)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") { // no such table, schema
		return 0, nil
	}
	return v, err
}

func tooNew(v int) error {
	return fmt.Errorf("the schema %s is at version %d, newer than this runbook knows (%d): use a newer runbook", Schema, v, Version)
}
