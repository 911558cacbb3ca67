package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/jackc/pgx/v5"
)

// chunkSize is how much of a blob one row holds: a blob (a frozen statement
// list can be hundreds of megabytes) is written and read a chunk at a time,
// never held whole.
var chunkSize = 1 << 20

// PutBlob writes a blob under a name, replacing one of that name, and
// returns the name as its reference (a reference within the run's key, so
// that an archived run keeps its blobs). The chunks are inserted as write
// produces them, each committed asynchronously under a new blob id; then one
// transaction, committed synchronously (which flushes the chunks before it),
// makes the name point at them and deletes the chunks it pointed at before.
// A crash before that leaves the old blob as it was, and chunks nothing
// points at, which the next Lock deletes. An error of write is returned as
// it is.
func (s *Store) PutBlob(name string, write func(w io.Writer) error) (string, error) {
	var id int64
	if err := s.use("writing blob "+name, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT nextval('runbook_state.blob_ids')`).Scan(&id)
	}); err != nil {
		return "", err
	}
	w := &chunkWriter{s: s, name: name, id: id, buf: make([]byte, 0, chunkSize)}
	if err := write(w); err != nil {
		s.use("removing an unfinished blob", func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, `DELETE FROM runbook_state.blob_chunks WHERE id = $1`, id)
			return err
		})
		return "", err
	}
	if err := w.flush(); err != nil {
		return "", err
	}
	err := s.use("writing blob "+name, func(ctx context.Context, c *pgx.Conn) error {
		return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			b := &pgx.Batch{}
			b.Queue(`SET LOCAL synchronous_commit = on`)
			b.Queue(`DELETE FROM runbook_state.blob_chunks WHERE id IN (SELECT id FROM runbook_state.blobs WHERE key = $1 AND name = $2)`, s.key, name)
			b.Queue(`INSERT INTO runbook_state.blobs (key, name, id, chunks, size) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (key, name) DO UPDATE SET id = EXCLUDED.id, chunks = EXCLUDED.chunks, size = EXCLUDED.size`,
				s.key, name, id, w.n, w.size)
			return tx.SendBatch(ctx, b).Close()
		})
	})
	if err != nil {
		return "", err
	}
	return name, nil
}

// chunkWriter buffers a blob's bytes and inserts them a chunk at a time.
type chunkWriter struct {
	s    *Store
	name string
	id   int64
	n    int   // chunks inserted
	size int64 // bytes inserted
	buf  []byte
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		k := min(len(p), cap(w.buf)-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p, written = p[k:], written+k
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// flush inserts the buffered bytes as the next chunk (the last may be
// empty: a blob of no bytes still has its row in blobs, and no chunk).
func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.s.use("writing blob "+w.name, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `WITH c AS (SELECT set_config('synchronous_commit', 'off', true))
			INSERT INTO runbook_state.blob_chunks (key, id, n, data) SELECT $1, $2, $3, $4 FROM c`,
			w.s.key, w.id, w.n, w.buf)
		return err
	})
	if err != nil {
		return err
	}
	w.n++
	w.size += int64(len(w.buf))
	w.buf = w.buf[:0]
	return nil
}

// OpenBlob opens a blob by its reference (its name in the run), read a
// chunk at a time. A blob that is not there is os.ErrNotExist.
func (s *Store) OpenBlob(ref string) (io.ReadCloser, error) {
	r := &blobReader{s: s, name: ref}
	err := s.use("reading blob "+ref, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT id, chunks, size FROM runbook_state.blobs WHERE key = $1 AND name = $2`, s.key, ref).
			Scan(&r.id, &r.chunks, &r.size)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("state %s: blob %s: %w", s.where, ref, os.ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// blobReader reads a blob's chunks in order, one query each, taking turns
// with the run's records on the store's connection.
type blobReader struct {
	s      *Store
	name   string
	id     int64
	chunks int
	size   int64
	next   int // the next chunk to fetch
	read   int64
	buf    []byte
}

func (r *blobReader) Read(p []byte) (int, error) {
	if len(r.buf) == 0 {
		if r.next >= r.chunks {
			if r.read != r.size {
				return 0, fmt.Errorf("state %s: blob %s: %d bytes read, %d written", r.s.where, r.name, r.read, r.size)
			}
			return 0, io.EOF
		}
		err := r.s.use("reading blob "+r.name, func(ctx context.Context, c *pgx.Conn) error {
			return c.QueryRow(ctx, `SELECT data FROM runbook_state.blob_chunks WHERE id = $1 AND n = $2`, r.id, r.next).Scan(&r.buf)
		})
		if errors.Is(err, pgx.ErrNoRows) {
			err = fmt.Errorf("state %s: blob %s: chunk %d of %d is missing (the blob was replaced while it was read)", r.s.where, r.name, r.next, r.chunks)
		}
		if err != nil {
			return 0, err
		}
		r.next++
		r.read += int64(len(r.buf))
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *blobReader) Close() error { return nil }
