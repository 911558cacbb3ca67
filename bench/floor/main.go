// Command floor is the least a client can do to run statements exactly once
// the way runbook does (docs/state.md, "Exactly once"): before every COMMIT,
// the transaction's id is recorded durably on the client's disk. It does
// nothing else — no state snapshot, no log, no step records — so the suite
// (bench/) can tell the cost of the protocol on this machine from runbook's
// own costs above it.
//
//	floor each URL ROLE    generate each: the P1 catalog query, then for every
//	                       statement one round trip COMMIT AND CHAIN ·
//	                       SELECT pg_current_xact_id() (its commit asynchronous
//	                       but every 100 ms and the last) · Flush · statement,
//	                       the record fdatasync'd while the statement runs
//	floor sql URL FILE     one statement per line, each its own transaction:
//	                       BEGIN · statement · SELECT pg_current_xact_id(), the
//	                       record, fdatasync'd, then COMMIT
//
// The record (about 300 bytes of JSON, as runbook's) goes to a journal file
// preallocated with zeros, as runbook's journal is, and is flushed with
// fdatasync.
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: floor each URL ROLE | floor sql URL FILE")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2], os.Args[3]); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

const ownerQuery = `SELECT format('ALTER TABLE %I.%I OWNER TO %I', schemaname, tablename, $1::text) FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`

func run(mode, url, arg string) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	pc := conn.PgConn()
	dir, err := os.MkdirTemp("", "floor-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	j, err := newJournal(dir + "/journal")
	if err != nil {
		return err
	}
	defer j.f.Close()

	var stmts []string
	switch mode {
	case "each":
		rows, err := conn.Query(ctx, ownerQuery, arg)
		if err != nil {
			return err
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				return err
			}
			stmts = append(stmts, s)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if err := j.record(0, "0"); err != nil { // the frozen list's record
			return err
		}
		chain, err := pc.Prepare(ctx, "floor_chain", "COMMIT AND CHAIN", nil)
		if err != nil {
			return err
		}
		xid, err := pc.Prepare(ctx, "floor_xid", "SELECT pg_current_xact_id()", nil)
		if err != nil {
			return err
		}
		async, err := pc.Prepare(ctx, "floor_xid_async", "SELECT pg_current_xact_id(), set_config('synchronous_commit', 'off', true)", nil)
		if err != nil {
			return err
		}
		if err := pc.Exec(ctx, "BEGIN").Close(); err != nil {
			return err
		}
		lastSync := time.Now()
		for i, s := range stmts {
			p := pc.StartPipeline(ctx)
			if i > 0 {
				p.SendQueryStatement(chain, nil, nil, nil)
			}
			lead := async
			if i == len(stmts)-1 || time.Since(lastSync) >= 100*time.Millisecond {
				lead, lastSync = xid, time.Now()
			}
			p.SendQueryStatement(lead, nil, nil, nil)
			p.SendFlushRequest()
			p.SendQueryParams(s, nil, nil, nil, nil)
			if err := p.Sync(); err != nil {
				return err
			}
			if i > 0 {
				if err := closeResult(p); err != nil {
					return err
				}
			}
			x, err := readValue(p)
			if err != nil {
				return err
			}
			// The record is flushed while the server runs the statement.
			if err := j.record(i+1, x); err != nil {
				return err
			}
			if err := closeResult(p); err != nil {
				return err
			}
			if r, err := p.GetResults(); err != nil {
				return err
			} else if _, ok := r.(*pgconn.PipelineSync); !ok {
				return fmt.Errorf("expected the end of the round trip, got %T", r)
			}
			if err := p.Close(); err != nil {
				return err
			}
		}
		return pc.Exec(ctx, "COMMIT").Close()
	case "sql":
		f, err := os.Open(arg)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if s := strings.TrimSuffix(strings.TrimSpace(sc.Text()), ";"); s != "" {
				stmts = append(stmts, s)
			}
		}
		f.Close()
		for i, s := range stmts {
			var b pgconn.Batch
			b.ExecParams("BEGIN", nil, nil, nil, nil)
			b.ExecParams(s, nil, nil, nil, nil)
			b.ExecParams("SELECT pg_current_xact_id()", nil, nil, nil, nil)
			res, err := pc.ExecBatch(ctx, &b).ReadAll()
			if err != nil {
				return err
			}
			if err := j.record(i+1, xidOf(res)); err != nil {
				return err
			}
			if err := pc.Exec(ctx, "COMMIT").Close(); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unknown mode %q", mode)
}

func closeResult(p *pgconn.Pipeline) error {
	r, err := p.GetResults()
	if err != nil {
		return err
	}
	rr, ok := r.(*pgconn.ResultReader)
	if !ok {
		return fmt.Errorf("expected a result, got %T", r)
	}
	_, err = rr.Close()
	return err
}

func readValue(p *pgconn.Pipeline) (string, error) {
	r, err := p.GetResults()
	if err != nil {
		return "", err
	}
	rr, ok := r.(*pgconn.ResultReader)
	if !ok {
		return "", fmt.Errorf("expected a result, got %T", r)
	}
	v := "?"
	for rr.NextRow() {
		v = string(rr.Values()[0])
	}
	_, err = rr.Close()
	return v, err
}

func xidOf(res []*pgconn.Result) string {
	last := res[len(res)-1]
	if len(last.Rows) == 1 && len(last.Rows[0]) == 1 {
		return string(last.Rows[0][0])
	}
	return "?"
}

// journal is a file preallocated with zeros, records written in place and
// flushed with fdatasync.
type journal struct {
	f   *os.File
	off int64
	cap int64
}

func newJournal(path string) (*journal, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	j := &journal{f: f}
	return j, j.grow()
}

func (j *journal) grow() error {
	if _, err := j.f.WriteAt(make([]byte, 4<<20), j.cap); err != nil {
		return err
	}
	j.cap += 4 << 20
	return j.f.Sync()
}

func (j *journal) record(done int, xid string) error {
	rec := fmt.Sprintf(`{"step":{"id":"g","digest":"0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0","status":"running","attempts":1,"progress":{"done":%d},"pending_tx":{"conn":"db","xid":%s,"backend_pid":4242,"backend_start":"2026-01-01T00:00:00Z","done":%d}}}`+"\n", done, xid, done+1)
	if j.off+int64(len(rec)) > j.cap {
		if err := j.grow(); err != nil {
			return err
		}
	}
	if _, err := j.f.WriteAt([]byte(rec), j.off); err != nil {
		return err
	}
	j.off += int64(len(rec))
	return datasync(j.f)
}
