package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
)

// Read returns the run's snapshot and a reader of its journal's records
// (JSON lines), read in one repeatable-read transaction so that they match
// even while a run compacts. The journal is streamed, never held whole. It
// uses a connection of its own, closed with the reader, and needs no lock.
func (s *Store) Read() ([]byte, io.ReadCloser, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	c, err := s.connect(ctx, false)
	if errors.Is(err, errNoSchema) {
		return nil, nil, nil // no run was ever kept here
	}
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) ([]byte, io.ReadCloser, error) {
		c.Close(context.Background())
		return nil, nil, s.wrap("reading the state", err)
	}
	tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fail(err)
	}
	var snap []byte
	err = tx.QueryRow(ctx, `SELECT snapshot FROM runbook_state.runs WHERE key = $1`, s.key).Scan(&snap)
	if errors.Is(err, pgx.ErrNoRows) {
		c.Close(context.Background())
		return nil, nil, nil
	}
	if err != nil {
		return fail(err)
	}
	// The journal outlives this call's timeout: it is read as loading goes.
	rctx, rcancel := context.WithCancel(context.Background())
	rows, err := tx.Query(rctx, `SELECT record FROM runbook_state.journal WHERE key = $1 ORDER BY seq`, s.key)
	if err != nil {
		rcancel()
		return fail(err)
	}
	return snap, &journalReader{s: s, c: c, rows: rows, cancel: rcancel}, nil
}

// journalReader reads the journal's rows as JSON lines.
type journalReader struct {
	s      *Store
	c      *pgx.Conn
	rows   pgx.Rows
	cancel context.CancelFunc
	buf    []byte
	err    error
}

func (r *journalReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if !r.rows.Next() {
			r.err = io.EOF
			if err := r.rows.Err(); err != nil {
				r.err = r.s.wrap("reading the journal", err)
			}
			continue
		}
		// RawValues are valid until the next row: copied, with the newline.
		raw := r.rows.RawValues()[0]
		r.buf = append(append(r.buf[:0], raw...), '\n')
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *journalReader) Close() error {
	r.rows.Close()
	r.cancel()
	return r.c.Close(context.Background())
}

// Create writes a new snapshot and empties the journal, in one transaction
// committed synchronously.
func (s *Store) Create(snapshot []byte) error {
	return s.replace("writing the snapshot", snapshot)
}

// Compact replaces the snapshot and deletes the journal's records, in one
// transaction committed synchronously: a crash leaves the old snapshot and
// its journal, or the new snapshot alone.
func (s *Store) Compact(snapshot []byte) error {
	return s.replace("compacting the journal", snapshot)
}

func (s *Store) replace(what string, snapshot []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.useLocked(what, func(ctx context.Context, c *pgx.Conn) error {
		err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			b := &pgx.Batch{}
			b.Queue(`SET LOCAL synchronous_commit = on`)
			b.Queue(`INSERT INTO runbook_state.runs (key, snapshot) VALUES ($1, $2)
				ON CONFLICT (key) DO UPDATE SET snapshot = EXCLUDED.snapshot, updated_at = now()`, s.key, snapshot)
			b.Queue(`DELETE FROM runbook_state.journal WHERE key = $1`, s.key)
			return tx.SendBatch(ctx, b).Close()
		})
		if err == nil {
			s.seq = 0
		}
		return err
	})
}

// appendSQL inserts a record, committed with synchronous_commit as $4 says:
// set for this statement's transaction only, which is what its commit obeys.
const appendSQL = `WITH c AS (SELECT set_config('synchronous_commit', $4, true))
	INSERT INTO runbook_state.journal (key, seq, record) SELECT $1, $2, $3 FROM c`

// Append inserts a record after the last. A durable one is committed with
// synchronous_commit on: it is on the server's disk (and its synchronous
// standbys'), and so is every record before it, when Append returns. One
// that is not durable is committed with it off: at once, but flushed by the
// server's WAL writer or the next durable commit.
func (s *Store) Append(record []byte, durable bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.useLocked("appending to the journal", func(ctx context.Context, c *pgx.Conn) error {
		if s.seq < 0 {
			if err := c.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM runbook_state.journal WHERE key = $1`, s.key).Scan(&s.seq); err != nil {
				return err
			}
		}
		mode := "off"
		if durable {
			mode = "on"
		}
		tag, err := c.Exec(ctx, appendSQL, s.key, s.seq+1, record, mode)
		if err == nil && tag.RowsAffected() != 1 {
			err = fmt.Errorf("the record was not inserted")
		}
		if err == nil {
			s.seq++
		}
		return err
	})
}

// Archive moves the run's snapshot, journal and blobs to the key KEY.SUFFIX,
// in one transaction, and returns where they went.
func (s *Store) Archive(suffix string) (string, error) {
	to := s.key + "." + suffix
	if !validKey.MatchString(to) {
		return "", fmt.Errorf("state %s: cannot archive under the key %q", s.where, to)
	}
	err := s.use("archiving the run", func(ctx context.Context, c *pgx.Conn) error {
		return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			var taken bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM runbook_state.runs WHERE key = $1)`, to).Scan(&taken); err != nil {
				return err
			}
			if taken {
				return fmt.Errorf("a run is already archived under the key %s", to)
			}
			b := &pgx.Batch{}
			b.Queue(`SET LOCAL synchronous_commit = on`)
			for _, table := range []string{"runs", "journal", "blobs", "blob_chunks"} {
				b.Queue(`UPDATE runbook_state.`+table+` SET key = $2 WHERE key = $1`, s.key, to)
			}
			return tx.SendBatch(ctx, b).Close()
		})
	})
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.seq = 0
	s.mu.Unlock()
	return s.whereOf(to), nil
}

// whereOf is Where for another key.
func (s *Store) whereOf(key string) string { return maskURL(s.u, key) }
