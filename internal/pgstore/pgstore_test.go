package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// open opens the store of key in the control database at u; it is closed
// when the test ends.
func open(t *testing.T, u, key string) *Store {
	t.Helper()
	s, err := Open(u, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// read returns a store's snapshot and its journal's lines.
func read(t *testing.T, s *Store) (string, []string) {
	t.Helper()
	snap, j, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	if j == nil {
		return string(snap), nil
	}
	defer j.Close()
	b, err := io.ReadAll(j)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return string(snap), nil
	}
	if b[len(b)-1] != '\n' {
		t.Fatalf("the journal does not end with a newline: %q", b)
	}
	return string(snap), strings.Split(string(b[:len(b)-1]), "\n")
}

func TestSnapshotJournalCompact(t *testing.T) {
	srv := pgtest.Shared(t)
	u := srv.NewDatabase(t)
	s := open(t, u, "run-a")
	if snap, recs := read(t, s); snap != "" || recs != nil {
		t.Fatalf("a store never written: snapshot %q, records %q", snap, recs)
	}
	if err := s.Lock(); err != nil {
		t.Fatal(err)
	}
	if err := s.Create([]byte("snapshot 1\n")); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 50 {
		rec := fmt.Sprintf(`{"n":%d}`, i)
		want = append(want, rec)
		if err := s.Append([]byte(rec), i%3 == 0); err != nil {
			t.Fatal(err)
		}
	}
	// Another key in the same database is another run.
	other := open(t, u, "run-b")
	if snap, _ := read(t, other); snap != "" {
		t.Errorf("run-b sees run-a's snapshot %q", snap)
	}
	// A reader of its own (status) sees the records in order.
	snap, recs := read(t, open(t, u, "run-a"))
	if snap != "snapshot 1\n" || strings.Join(recs, "|") != strings.Join(want, "|") {
		t.Errorf("read back snapshot %q and %d records %q; want %d records in order", snap, len(recs), recs, len(want))
	}
	if err := s.Compact([]byte("snapshot 2\n")); err != nil {
		t.Fatal(err)
	}
	if snap, recs := read(t, s); snap != "snapshot 2\n" || recs != nil {
		t.Errorf("after Compact: snapshot %q, records %q; want snapshot 2 and none", snap, recs)
	}
	// Records after a compaction start again, after the new snapshot.
	if err := s.Append([]byte(`{"after":1}`), true); err != nil {
		t.Fatal(err)
	}
	if _, recs := read(t, s); len(recs) != 1 || recs[0] != `{"after":1}` {
		t.Errorf("after Compact and Append: records %q", recs)
	}
	// Create (a resume's new snapshot) also empties the journal.
	if err := s.Create([]byte("snapshot 3\n")); err != nil {
		t.Fatal(err)
	}
	if snap, recs := read(t, s); snap != "snapshot 3\n" || recs != nil {
		t.Errorf("after Create: snapshot %q, records %q", snap, recs)
	}
}

// TestDurableAppendFlushes checks with the server's own counters that a
// durable record is flushed to the WAL before Append returns, and that
// records that are not durable are not flushed one by one.
func TestDurableAppendFlushes(t *testing.T) {
	srv := pgtest.NewCluster(t, pgtest.WithFsync())
	if srv.External() {
		t.Skip("counts the server's WAL flushes: needs a cluster of its own")
	}
	u := srv.NewDatabase(t)
	// A backend's WAL counters reach pg_stat_wal when it exits: each phase
	// has a store (a backend) of its own, closed before counting.
	syncs := func() int {
		var n int
		fmt.Sscan(srv.QueryValue(t, "postgres", `SELECT wal_sync FROM pg_stat_wal`), &n)
		return n
	}
	appendAll := func(durable bool, n int) int {
		s := open(t, u, fmt.Sprintf("flushes-%v", durable))
		if err := s.Lock(); err != nil {
			t.Fatal(err)
		}
		if err := s.Create([]byte("s\n")); err != nil {
			t.Fatal(err)
		}
		before := syncs()
		for i := range n {
			if err := s.Append([]byte(fmt.Sprintf(`{"n":%d}`, i)), durable); err != nil {
				t.Fatal(err)
			}
		}
		// No Close: its own commit would flush. The backend is ended.
		s.mu.Lock()
		s.conn.Close(context.Background())
		s.mu.Unlock()
		for deadline := time.Now().Add(10 * time.Second); srv.QueryValue(t, "postgres",
			`SELECT count(*) FROM pg_stat_activity WHERE application_name = 'runbook state '||$1`, s.key) != "0"; {
			if time.Now().After(deadline) {
				t.Fatal("the store's backend did not exit")
			}
			time.Sleep(20 * time.Millisecond)
		}
		return syncs() - before
	}
	const n = 40
	durable := appendAll(true, n)
	lazy := appendAll(false, n)
	t.Logf("WAL flushes: %d for %d durable records, %d for %d others", durable, n, lazy, n)
	if durable < n {
		t.Errorf("%d WAL flushes for %d durable records: each must be flushed before Append returns", durable, n)
	}
	if lazy >= n/2 {
		t.Errorf("%d WAL flushes for %d records that need not be durable: they should not wait for a flush each", lazy, n)
	}
}

func TestBlobsInChunks(t *testing.T) {
	defer func(n int) { chunkSize = n }(chunkSize)
	chunkSize = 1000
	srv := pgtest.Shared(t)
	u := srv.NewDatabase(t)
	db := pgtest.DatabaseName(t, u)
	s := open(t, u, "blobs")
	if err := s.Lock(); err != nil {
		t.Fatal(err)
	}
	content := func(n int, seed byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = seed + byte(i%251)
		}
		return b
	}
	put := func(name string, data []byte, piece int) (string, error) {
		return s.PutBlob(name, func(w io.Writer) error {
			for off := 0; off < len(data); off += piece {
				if _, err := w.Write(data[off:min(off+piece, len(data))]); err != nil {
					return err
				}
			}
			return nil
		})
	}
	get := func(ref string) []byte {
		t.Helper()
		r, err := s.OpenBlob(ref)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	chunks := func() string {
		return srv.QueryValue(t, db, `SELECT count(*) FROM runbook_state.blob_chunks`)
	}
	for _, tc := range []struct {
		name         string
		size, piece  int
		wantChunks   string
		wantAfterAll string
	}{
		{"empty", 0, 1, "0", ""},
		{"one-chunk", 1000, 7, "1", ""},
		{"odd-pieces", 10_500, 333, "11", ""},
		{"one-big-write", 4321, 4321, "5", ""},
	} {
		data := content(tc.size, byte(len(tc.name)))
		ref, err := put(tc.name, data, tc.piece)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := get(ref); !bytes.Equal(got, data) {
			t.Errorf("%s: read back %d bytes, want %d, equal", tc.name, len(got), len(data))
		}
		if got := srv.QueryValue(t, db, `SELECT chunks FROM runbook_state.blobs WHERE name = $1`, tc.name); got != tc.wantChunks {
			t.Errorf("%s: %s chunks, want %s", tc.name, got, tc.wantChunks)
		}
	}
	before := chunks()
	// Replacing a blob deletes the chunks of the old one.
	data := content(2500, 9)
	if _, err := put("odd-pieces", data, 100); err != nil {
		t.Fatal(err)
	}
	if got := get("odd-pieces"); !bytes.Equal(got, data) {
		t.Errorf("the replaced blob reads back %d bytes, not the new %d", len(got), len(data))
	}
	if got, want := chunks(), fmt.Sprint(mustAtoi(t, before)-11+3); got != want {
		t.Errorf("%s chunks after a replacement, want %s (the old blob's removed)", got, want)
	}
	// An error of write is returned as it is; the blob stays as it was and
	// no chunk of the failed one is left.
	boom := errors.New("generator failed")
	before = chunks()
	if _, err := put("odd-pieces", content(5000, 1), 10); err != nil {
		t.Fatal(err)
	}
	_, err := s.PutBlob("odd-pieces", func(w io.Writer) error {
		w.Write(content(3500, 2))
		return boom
	})
	if err != boom {
		t.Errorf("PutBlob returned %v, want write's own error", err)
	}
	if got := get("odd-pieces"); !bytes.Equal(got, content(5000, 1)) {
		t.Errorf("a failed PutBlob changed the blob")
	}
	if got, want := chunks(), fmt.Sprint(mustAtoi(t, before)-3+5); got != want {
		t.Errorf("%s chunks after a failed PutBlob, want %s", got, want)
	}
	if _, err := s.OpenBlob("never-put"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a blob never put: %v, want os.ErrNotExist", err)
	}
}

func mustAtoi(t *testing.T, s string) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestOrphanChunksDeletedByLock: the chunks a killed holder was writing,
// which no blob points at, go when the next holder takes the lock.
func TestOrphanChunksDeletedByLock(t *testing.T) {
	srv := pgtest.Shared(t)
	u := srv.NewDatabase(t)
	db := pgtest.DatabaseName(t, u)
	s := open(t, u, "orphans")
	if err := s.Lock(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutBlob("kept", func(w io.Writer) error { _, err := w.Write([]byte("kept")); return err }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	srv.Exec(t, db, `INSERT INTO runbook_state.blob_chunks (key, id, n, data) VALUES ('orphans', 999999, 0, 'x'), ('another-run', 999998, 0, 'y')`)
	s2 := open(t, u, "orphans")
	if err := s2.Lock(); err != nil {
		t.Fatal(err)
	}
	if got := srv.QueryValue(t, db, `SELECT string_agg(key || ':' || id, ',' ORDER BY key) FROM runbook_state.blob_chunks WHERE id >= 999998`); got != "another-run:999998" {
		t.Errorf("orphan chunks after Lock: %s; want only another run's", got)
	}
	r, err := s2.OpenBlob("kept")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(r); string(b) != "kept" {
		t.Errorf("the referenced blob reads %q", b)
	}
}

func TestArchive(t *testing.T) {
	srv := pgtest.Shared(t)
	u := srv.NewDatabase(t)
	s := open(t, u, "arch")
	if err := s.Lock(); err != nil {
		t.Fatal(err)
	}
	ref, err := s.PutBlob("runbook.yaml", func(w io.Writer) error { _, err := w.Write([]byte("name: x\n")); return err })
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create([]byte("old\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.Append([]byte(`{"r":1}`), true); err != nil {
		t.Fatal(err)
	}
	where, err := s.Archive("20260101T000000Z")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(where, "key=arch.20260101T000000Z") {
		t.Errorf("archived to %s, want the key arch.20260101T000000Z", where)
	}
	if snap, recs := read(t, s); snap != "" || recs != nil {
		t.Errorf("after Archive the run's key still holds %q, %q", snap, recs)
	}
	if _, err := s.OpenBlob(ref); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Archive the run's key still has its blob (%v)", err)
	}
	a := open(t, u, "arch.20260101T000000Z")
	if snap, recs := read(t, a); snap != "old\n" || len(recs) != 1 {
		t.Errorf("the archive holds %q, %q; want the old snapshot and its record", snap, recs)
	}
	r, err := a.OpenBlob(ref)
	if err != nil {
		t.Fatalf("the archive's blob by its reference: %v", err)
	}
	if b, _ := io.ReadAll(r); string(b) != "name: x\n" {
		t.Errorf("the archive's blob reads %q", b)
	}
	// A new run on the key starts with an empty journal.
	if err := s.Create([]byte("new\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.Append([]byte(`{"r":2}`), true); err != nil {
		t.Fatal(err)
	}
	if snap, recs := read(t, s); snap != "new\n" || len(recs) != 1 || recs[0] != `{"r":2}` {
		t.Errorf("the new run reads %q, %q", snap, recs)
	}
	if _, err := s.Archive("20260101T000000Z"); err == nil || !strings.Contains(err.Error(), "already archived") {
		t.Errorf("archiving twice under one name: %v", err)
	}
}

func TestLockHolderAndLease(t *testing.T) {
	defer func(d time.Duration) { heartbeat = d }(heartbeat)
	heartbeat = 100 * time.Millisecond
	srv := pgtest.Shared(t)
	u := srv.NewDatabase(t)
	db := pgtest.DatabaseName(t, u)
	s1 := open(t, u, "locked")
	if held, who := s1.Holder(); held {
		t.Fatalf("nobody locked it, yet Holder says %q", who)
	}
	if err := s1.Lock(); err != nil {
		t.Fatal(err)
	}
	s1.SetRun("run-42")
	host, _ := os.Hostname()
	s2 := open(t, u, "locked")
	err := s2.Lock()
	if exitcode.Of(err) != exitcode.Refused || !strings.Contains(err.Error(), "locked by another runbook process") ||
		!strings.Contains(err.Error(), fmt.Sprintf("pid %d on %s", os.Getpid(), host)) {
		t.Errorf("a second Lock: %v (exit %d); want exit 4 naming the holder", err, exitcode.Of(err))
	}
	held, who := s2.Holder()
	if !held || !strings.Contains(who, fmt.Sprintf("pid %d on %s, run run-42 since ", os.Getpid(), host)) || !strings.Contains(who, "heartbeat") {
		t.Errorf("Holder: %v %q; want held, with pid, host, run and heartbeat", held, who)
	}
	// The heartbeat moves.
	first := srv.QueryValue(t, db, `SELECT heartbeat_at FROM runbook_state.leases WHERE key = 'locked'`)
	deadline := time.Now().Add(5 * time.Second)
	for srv.QueryValue(t, db, `SELECT heartbeat_at FROM runbook_state.leases WHERE key = 'locked'`) == first {
		if time.Now().After(deadline) {
			t.Fatal("the lease's heartbeat did not move")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Another key is another lock.
	if err := open(t, u, "other").Lock(); err != nil {
		t.Errorf("another key's lock: %v", err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	if held, who := s2.Holder(); held {
		t.Errorf("after Close, Holder still says %q", who)
	}
	if got := srv.QueryValue(t, db, `SELECT count(*) FROM runbook_state.leases WHERE key = 'locked'`); got != "0" {
		t.Errorf("Close left the lease row")
	}
	if err := s2.Lock(); err != nil {
		t.Errorf("Lock after the holder closed: %v", err)
	}
}

// TestLockGoesWithItsConnection: when the server ends the holder's session
// (as when its process dies), the lock is free at once; the old holder
// cannot write another record, and says it lost the lock.
func TestLockGoesWithItsConnection(t *testing.T) {
	srv := pgtest.Shared(t)
	u := srv.NewDatabase(t)
	db := pgtest.DatabaseName(t, u)
	s1 := open(t, u, "fenced")
	if err := s1.Lock(); err != nil {
		t.Fatal(err)
	}
	if err := s1.Create([]byte("s\n")); err != nil {
		t.Fatal(err)
	}
	srv.Exec(t, db, `SELECT pg_terminate_backend(backend_pid, 10000) FROM runbook_state.leases WHERE key = 'fenced'`) // waits until the session is gone
	s2 := open(t, u, "fenced")
	if err := s2.Lock(); err != nil {
		t.Fatalf("the lock of a dead session: %v", err)
	}
	err := s1.Append([]byte(`{"late":1}`), true)
	if err == nil || !strings.Contains(err.Error(), "lock") {
		t.Errorf("the old holder's Append: %v; want an error saying the lock went", err)
	}
	select {
	case <-s1.Lost():
	default:
		t.Errorf("the old holder's Lost is not closed")
	}
	if err := s1.Append([]byte(`{"later":1}`), false); err == nil {
		t.Errorf("the old holder wrote after losing its lock")
	}
	if _, recs := read(t, s2); recs != nil {
		t.Errorf("records of the old holder reached the journal: %q", recs)
	}
}

// TestSchemaCreatedOnceAndVersioned: processes racing to create the schema
// all succeed; a schema newer than this runbook knows is refused.
func TestSchemaCreatedOnceAndVersioned(t *testing.T) {
	srv := pgtest.Shared(t)
	u := srv.NewDatabase(t)
	db := pgtest.DatabaseName(t, u)
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(u, fmt.Sprintf("race-%d", i))
			if err == nil {
				err = s.Lock()
				if err == nil {
					err = s.Create([]byte("x\n"))
				}
				s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("process %d: %v", i, err)
		}
	}
	if got := srv.QueryValue(t, db, `SELECT string_agg(version::text, ',') FROM runbook_state.version`); got != fmt.Sprint(Version) {
		t.Errorf("version table holds %s, want one row %d", got, Version)
	}
	if got := srv.QueryValue(t, db, `SELECT count(*) FROM runbook_state.runs`); got != "6" {
		t.Errorf("%s runs, want 6", got)
	}
	srv.Exec(t, db, `UPDATE runbook_state.version SET version = 99`)
	s := open(t, u, "race-0")
	err := s.Lock()
	if err == nil || !strings.Contains(err.Error(), "version 99, newer than this runbook knows") || exitcode.Of(err) != exitcode.Environment {
		t.Errorf("a newer schema: %v (exit %d); want refused, exit 5", err, exitcode.Of(err))
	}
	if _, _, err := s.Read(); err == nil {
		t.Errorf("Read of a newer schema succeeded")
	}
	// Reading a control database that never held a run creates nothing.
	fresh := srv.NewDatabase(t)
	if snap, recs := read(t, open(t, fresh, "none")); snap != "" || recs != nil {
		t.Errorf("a fresh database holds %q", snap)
	}
	if got := srv.QueryValue(t, pgtest.DatabaseName(t, fresh), `SELECT count(*) FROM pg_namespace WHERE nspname = 'runbook_state'`); got != "0" {
		t.Errorf("reading created the schema")
	}
}

func TestOpenKeysAndErrors(t *testing.T) {
	for _, tc := range []struct {
		url, key       string
		wantKey, where string
		wantErr        string
	}{
		{"postgres://u@h/db", "derived-abc", "derived-abc", "postgres://u@h/db?key=derived-abc", ""},
		{"postgresql://u@h:5433/db?sslmode=disable&key=mine", "derived", "mine", "postgresql://u@h:5433/db?key=mine&sslmode=disable", ""},
		{"POSTGRES://u:s3cr3tpw@h/db", "k", "k", "postgres://u:***@h/db?key=k", ""},
		{"postgres://u@h/db?password=s3cr3tpw", "k", "k", "postgres://u@h/db?key=k&password=***", ""},
		{"postgres://u:s3cr3tpw@h/db", "", "", "", "names no run: add ?key=NAME"},
		{"postgres://u:s3cr3tpw@h/db?key=a/b", "", "", "", `the key "a/b" is not`},
		{"postgres://u:s3cr3tpw@h/db?connect_timeout=nope&key=k", "", "", "", "--state postgres://u:***@h/db?connect_timeout=nope&key=k: "},
		{"postgres://u:s3cr3tpw@h:port/db", "", "", "", "not a valid postgres:// URL"},
	} {
		s, err := Open(tc.url, tc.key)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || exitcode.Of(err) != exitcode.Invalid {
				t.Errorf("Open(%q): %v (exit %d); want exit 2 with %q", tc.url, err, exitcode.Of(err), tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "s3cr3tpw") {
				t.Errorf("Open(%q): the error shows the password: %v", tc.url, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Open(%q): %v", tc.url, err)
			continue
		}
		if s.Key() != tc.wantKey || s.Where() != tc.where {
			t.Errorf("Open(%q): key %q, where %q; want %q, %q", tc.url, s.Key(), s.Where(), tc.wantKey, tc.where)
		}
	}
}

// TestPasswordMasked: the control database's password is in no error and
// no name of the store, whether it logs in or is refused.
func TestPasswordMasked(t *testing.T) {
	srv := pgtest.NewCluster(t, pgtest.WithHBA("host all keeper 127.0.0.1/32 scram-sha-256"))
	if srv.External() {
		t.Skip("needs a cluster of its own, with password authentication")
	}
	const password = `Kp:w/d@?&=%x9`
	srv.Exec(t, "postgres", `CREATE ROLE keeper LOGIN PASSWORD 'Kp:w/d@?&=%x9'`)
	u := srv.NewDatabase(t)
	srv.Exec(t, pgtest.DatabaseName(t, u), `GRANT CREATE ON DATABASE `+pgtest.DatabaseName(t, u)+` TO keeper`)
	withPassword := func(pw string) string {
		pu, _ := url.Parse(u)
		pu.User = url.UserPassword("keeper", pw)
		return pu.String()
	}
	good := open(t, withPassword(password), "masked")
	if err := good.Lock(); err != nil {
		t.Fatalf("logging in with the password: %v", err)
	}
	if err := good.Create([]byte("x\n")); err != nil {
		t.Fatal(err)
	}
	wrong := password + "X"
	bad := open(t, withPassword(wrong), "masked")
	err := bad.Lock()
	if err == nil || exitcode.Of(err) != exitcode.Environment {
		t.Fatalf("a wrong password: %v (exit %d); want exit 5", err, exitcode.Of(err))
	}
	_, _, rerr := bad.Read()
	for _, text := range []string{err.Error(), fmt.Sprint(rerr), good.Where(), bad.Where()} {
		for _, secret := range []string{password, wrong, url.QueryEscape(password), url.UserPassword("u", password).String()[2:]} {
			if strings.Contains(text, secret) {
				t.Errorf("%q shows the password", text)
			}
		}
	}
	if !strings.Contains(err.Error(), "keeper:***@") {
		t.Errorf("the error does not name the store with its password masked: %v", err)
	}
	if got := good.Secrets(); len(got) == 0 || got[0] != password {
		t.Errorf("Secrets() = %q, want the password", got)
	}
}

// BenchmarkAppend measures a record's append, durable or not, on a cluster
// that keeps PostgreSQL's durability settings (fsync, synchronous_commit on).
func BenchmarkAppend(b *testing.B) {
	srv := pgtest.NewCluster(b, pgtest.WithFsync())
	u := srv.NewDatabase(b)
	rec := []byte(`{"step":{"id":"s042","digest":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","status":"running","attempts":1},"chain":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}`)
	for _, durable := range []bool{true, false} {
		b.Run(fmt.Sprintf("durable=%v", durable), func(b *testing.B) {
			s, err := Open(u, fmt.Sprintf("bench-%v", durable))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if err := s.Lock(); err != nil {
				b.Fatal(err)
			}
			if err := s.Create([]byte("s\n")); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if err := s.Append(rec, durable); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestStaleLeaseNamesTheBackend: a holder whose heartbeat stopped while its
// session lives on (a process on a machine cut off, whose connection the
// server has not yet seen die) is named with the backend to end.
func TestStaleLeaseNamesTheBackend(t *testing.T) {
	defer func(d time.Duration) { heartbeat = d }(heartbeat)
	heartbeat = 50 * time.Millisecond
	srv := pgtest.Shared(t)
	u := srv.NewDatabase(t)
	s1 := open(t, u, "stale")
	if err := s1.Lock(); err != nil {
		t.Fatal(err)
	}
	// The holder's heartbeat stops; its session (and lock) stay.
	s1.mu.Lock()
	stop := s1.stop
	s1.stop = nil
	s1.mu.Unlock()
	close(stop)
	s1.beating.Wait()
	backend := srv.QueryValue(t, pgtest.DatabaseName(t, u), `SELECT backend_pid FROM runbook_state.leases WHERE key = 'stale'`)
	time.Sleep(4 * heartbeat)
	err := open(t, u, "stale").Lock()
	if err == nil || !strings.Contains(err.Error(), "Its heartbeat stopped") || !strings.Contains(err.Error(), "pg_terminate_backend("+backend+")") {
		t.Errorf("a holder whose heartbeat stopped: %v; want the refusal to say so and name backend %s", err, backend)
	}
}
