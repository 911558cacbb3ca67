// Package pgstore keeps runs' state in a PostgreSQL control database: the
// executor's Store (docs/state-postgres.md) for --state postgres://… . One
// run is one key; its snapshot, journal records and blobs are the same bytes
// the file store writes, in rows of the schema runbook_state, which the store
// creates and migrates on first use (schema.go).
//
// The guarantees are the file store's:
//
//   - every durable record is committed with synchronous_commit on before
//     Append returns; a record that is not durable is committed at once with
//     it off (it survives the process, not a crash of the control database's
//     server, as a file's unsynced write survives the process but not the
//     machine), and the next durable commit flushes it, WAL being one log;
//   - one executor at a time: Lock takes a session advisory lock on the
//     store's own connection, which dies with the process (its connection
//     goes, and the server drops its locks). Every write goes through that
//     same connection and the store never reconnects while it holds the lock,
//     so a process whose lock went with a broken connection cannot write
//     another record: the next holder's records cannot be interleaved with
//     its own;
//   - a lease row names the holder (host, pid, run, since) with a heartbeat
//     a goroutine renews every few seconds, for runbook status.
//
// The package knows nothing of the executor: its methods deal in bytes, and
// the executor picks it for a postgres:// state (executor.OpenStore).
package pgstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/redact"
)

// IsURL reports whether a state spec names a control database (a postgres://
// or postgresql:// URL, in any case) rather than a file.
func IsURL(spec string) bool {
	l := strings.ToLower(strings.TrimSpace(spec))
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://")
}

// KeyParam is the query parameter of a state URL that names the run's key;
// it is runbook's, not sent to the server.
const KeyParam = "key"

var validKey = regexp.MustCompile(`^[A-Za-z0-9._-]{1,200}$`)

// Timings. opTimeout bounds each operation on the control database: one
// that hangs longer (a server that no longer answers) fails, and the run
// stops at the record it could not write. Every heartbeat the lease's
// heartbeat is renewed.
var (
	opTimeout      = time.Minute
	connectTimeout = 30 * time.Second
	heartbeat      = 5 * time.Second
	deadHolderWait = 10 * time.Second
)

// Store is one run's state in a control database. Its methods are safe for
// concurrent use: they take turns on the store's connection.
type Store struct {
	cfg     *pgx.ConnConfig
	u       *url.URL // the URL without its key
	key     string
	where   string // the URL with its password masked and the key
	red     *redact.Redactor
	secrets []string
	lockKey int64
	beat    time.Duration // the lease's heartbeat

	mu     sync.Mutex // guards conn, seq and the fields below
	conn   *pgx.Conn
	seq    int64 // the journal's last record; -1 when not known yet
	locked bool
	runID  string

	lost     chan struct{} // closed when a held lock is lost
	lostOnce sync.Once
	lostErr  error
	stop     chan struct{} // stops the heartbeat
	beating  sync.WaitGroup
}

// Open returns the store of one run in the control database named by a URL.
// The run's key is the URL's ?key= when it has one, else defaultKey. Nothing
// is connected before the first operation.
func Open(rawURL, defaultKey string) (*Store, error) {
	red := redact.New()
	red.AddConnString(rawURL)
	u, err := url.Parse(strings.TrimSpace(rawURL))
	if err != nil {
		// url's errors quote the URL: say where without it.
		return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("--state: not a valid postgres:// URL: %s", red.String(unwrapURLError(err))))
	}
	q := u.Query()
	key := defaultKey
	if k := q.Get(KeyParam); k != "" {
		key = k
	}
	q.Del(KeyParam)
	u.RawQuery = q.Encode()
	if key == "" {
		return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("--state %s names no run: add ?%s=NAME, or give the runbook and its params, from which runbook derives the key", maskURL(u, ""), KeyParam))
	}
	if !validKey.MatchString(key) {
		return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("--state: the key %q is not 1 to 200 letters, digits, dots, dashes and underscores", key))
	}
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("--state %s: %w", maskURL(u, key), red.Error(err)))
	}
	cfg.ConnectTimeout = connectTimeout
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "runbook state " + key
	}
	if cfg.Password != "" {
		red.Add(cfg.Password)
	}
	s := &Store{cfg: cfg, u: u, key: key, where: maskURL(u, key), red: red, lockKey: lockKey(key), seq: -1, beat: heartbeat,
		lost: make(chan struct{})}
	s.secrets = redact.PasswordsInConnString(rawURL)
	if cfg.Password != "" {
		s.secrets = append(s.secrets, cfg.Password)
	}
	return s, nil
}

func unwrapURLError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// maskURL is u as messages show it: its password (in the userinfo or a
// password= parameter) as "***", and the key as ?key=.
func maskURL(u *url.URL, key string) string {
	c := *u
	if c.User != nil {
		if _, ok := c.User.Password(); ok {
			c.User = url.UserPassword(c.User.Username(), "PASSWORD")
		}
	}
	q := c.Query()
	for k := range q {
		if k == "password" || k == "sslpassword" {
			q.Set(k, "PASSWORD")
		}
	}
	if key != "" {
		q.Set(KeyParam, key)
	}
	c.RawQuery = q.Encode()
	return strings.ReplaceAll(c.String(), "PASSWORD", redact.Mask)
}

// lockKey is the advisory lock of a run's key: 64 bits of a SHA-256, so
// that two keys do not share a lock.
func lockKey(key string) int64 {
	sum := sha256.Sum256([]byte("runbook_state\x00" + key))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

// Key is the run's key.
func (s *Store) Key() string { return s.key }

// Where names the store in messages: the control database's URL, its
// password masked, and the run's key.
func (s *Store) Where() string { return s.where }

// Secrets are the passwords of the control database's URL, for the run's
// masking of everything it writes.
func (s *Store) Secrets() []string { return s.secrets }

// Lost is closed when the store lost its lock (its connection broke or the
// server ended its session): the run must stop, since another process may
// now take the lock. LostErr says why.
func (s *Store) Lost() <-chan struct{} { return s.lost }

// LostErr is why the lock was lost (nil while it is held).
func (s *Store) LostErr() error {
	select {
	case <-s.lost:
		return s.lostErr
	default:
		return nil
	}
}

func (s *Store) markLost(err error) {
	s.lostOnce.Do(func() {
		s.lostErr = fmt.Errorf("state %s: the connection to the control database that held the run's lock is gone (%v): another runbook process may take the lock, so this one stops; resume when the control database answers again", s.where, s.red.String(err.Error()))
		close(s.lost)
	})
}

// wrap masks an error of the store and says where it happened.
func (s *Store) wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return s.red.Error(fmt.Errorf("state %s: %s: %w", s.where, what, err))
}

// use runs f on the store's connection, connecting (and creating or
// migrating the schema) on first use. While the store holds its lock a
// broken connection is never replaced: the lock went with it.
func (s *Store) use(what string, f func(ctx context.Context, c *pgx.Conn) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.useLocked(what, f)
}

func (s *Store) useLocked(what string, f func(ctx context.Context, c *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if s.conn == nil || s.conn.IsClosed() {
		if s.locked {
			err := errors.New("connection closed")
			s.markLost(err)
			return s.lostErr
		}
		c, err := s.connect(ctx, true)
		if err != nil {
			return err
		}
		s.conn = c
	}
	err := f(ctx, s.conn)
	if err != nil && s.conn.IsClosed() && s.locked {
		s.markLost(err)
		return s.wrap(what, fmt.Errorf("%w; the run's lock went with the connection", err))
	}
	return s.wrap(what, err)
}

// connect opens a connection to the control database, its schema ready:
// created when create is set, else errNoSchema when there is none.
func (s *Store) connect(ctx context.Context, create bool) (*pgx.Conn, error) {
	c, err := pgx.ConnectConfig(ctx, s.cfg)
	if err != nil {
		return nil, exitcode.With(exitcode.Environment, s.wrap("connecting to the control database", err))
	}
	if err := migrate(ctx, c, create); err != nil {
		c.Close(context.Background())
		if errors.Is(err, errNoSchema) {
			return nil, err
		}
		return nil, exitcode.With(exitcode.Environment, s.wrap("preparing the schema "+Schema, err))
	}
	return c, nil
}

// Lock takes the run's lock: a session advisory lock on the store's
// connection, and the lease row that names its holder. It fails at once
// with exit code 4 when another process holds it.
func (s *Store) Lock() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locked {
		return nil
	}
	var got bool
	err := s.useLocked("taking the run's lock", func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, s.lockKey).Scan(&got)
	})
	if err != nil {
		return err
	}
	// A holder that died on this host a moment ago: its lock goes when the
	// server sees its connection closed.
	for deadline := time.Now().Add(deadHolderWait); !got; {
		var l lease
		err = s.useLocked("taking the run's lock", func(ctx context.Context, c *pgx.Conn) error {
			if l = readLease(ctx, c, s.key, s.lockKey); l.held && (!l.deadHere() || time.Now().After(deadline)) {
				return nil
			}
			time.Sleep(20 * time.Millisecond)
			return c.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, s.lockKey).Scan(&got)
		})
		if err != nil {
			return err
		}
		if got {
			break
		}
		if l.held && (!l.deadHere() || time.Now().After(deadline)) {
			return s.lockedBy(l)
		}
	}
	host, _ := os.Hostname()
	err = s.useLocked("writing the lease", func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO runbook_state.leases (key, host, pid, backend_pid, run_id, started_at, heartbeat_at)
			VALUES ($1, $2, $3, pg_backend_pid(), NULL, now(), now())
			ON CONFLICT (key) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, backend_pid = EXCLUDED.backend_pid,
				run_id = NULL, started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at`,
			s.key, host, os.Getpid())
		if err != nil {
			return err
		}
		// Chunks of blobs a killed holder was writing, never referenced.
		_, err = c.Exec(ctx, `DELETE FROM runbook_state.blob_chunks c WHERE c.key = $1
			AND NOT EXISTS (SELECT FROM runbook_state.blobs b WHERE b.id = c.id)`, s.key)
		return err
	})
	if err != nil {
		s.conn.Close(context.Background())
		s.conn = nil
		return err
	}
	s.locked = true
	s.stop = make(chan struct{})
	s.beating.Add(1)
	go s.heartbeat(s.stop)
	return nil
}

// lockedBy is the refusal of a lock that l's holder holds.
func (s *Store) lockedBy(l lease) error {
	msg := fmt.Sprintf("state %s is locked by another runbook process", s.where)
	if who := l.String(); who != "" {
		msg += " (" + who + ")"
	}
	msg += ": wait for it to finish, or stop it"
	if l.stale() {
		msg += fmt.Sprintf(". Its heartbeat stopped: if its process is gone (a machine that died, a network cut off), the control database drops the lock when it notices the connection is dead; to end it now, check that the process is gone and run SELECT pg_terminate_backend(%d) on the control database", l.lockPID)
	}
	return exitcode.With(exitcode.Refused, errors.New(msg))
}

// SetRun names the run the lock's holder runs, in its lease.
func (s *Store) SetRun(runID string) {
	s.use("writing the lease", func(ctx context.Context, c *pgx.Conn) error {
		s.runID = runID
		_, err := c.Exec(ctx, `UPDATE runbook_state.leases SET run_id = $2 WHERE key = $1`, s.key, runID)
		return err
	})
}

// heartbeat renews the lease's heartbeat until stop is closed, and marks the
// lock lost when the connection is gone.
func (s *Store) heartbeat(stop <-chan struct{}) {
	defer s.beating.Done()
	t := time.NewTicker(s.beat)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-s.lost:
			return
		case <-t.C:
		}
		s.use("renewing the lease", func(ctx context.Context, c *pgx.Conn) error {
			ctx, cancel := context.WithTimeout(ctx, 2*s.beat)
			defer cancel()
			_, err := c.Exec(ctx, `WITH c AS (SELECT set_config('synchronous_commit', 'off', true))
				UPDATE runbook_state.leases SET heartbeat_at = now() FROM c WHERE key = $1`, s.key)
			if err != nil && !c.IsClosed() && ctx.Err() != nil {
				// A server that no longer answers: the lock may be gone
				// with the session by the time it does.
				c.Close(context.Background())
			}
			return err
		})
	}
}

// Holder reports, without taking the lock, whether a process holds it (the
// advisory lock is granted in pg_locks), and who, from its lease.
func (s *Store) Holder() (bool, string) {
	var l lease
	s.use("reading the lease", func(ctx context.Context, c *pgx.Conn) error {
		l = readLease(ctx, c, s.key, s.lockKey)
		return nil
	})
	return l.held, l.String()
}

// lease is the lock's state and its lease row.
type lease struct {
	held    bool
	lockPID int32 // the backend that holds the advisory lock
	ok      bool  // the lease row is the holder's
	host    string
	pid     int32
	runID   *string
	since   time.Time
	age     time.Duration // since the last heartbeat
}

// readLease reads the lock's state and its lease.
func readLease(ctx context.Context, c *pgx.Conn, key string, lk int64) lease {
	var (
		l       lease
		lockPID *int32
		host    *string
		pid     *int32
		backend *int32
		since   *time.Time
		age     *float64
	)
	hi, lo := int64(uint32(uint64(lk)>>32)), int64(uint32(uint64(lk)))
	err := c.QueryRow(ctx, `
		SELECT k.pid, l.host, l.pid, l.backend_pid, l.run_id, l.started_at,
		       extract(epoch FROM clock_timestamp() - l.heartbeat_at)::float8
		FROM (SELECT 1) AS one
		LEFT JOIN (SELECT pid FROM pg_locks
		           WHERE locktype = 'advisory' AND granted AND objsubid = 1
		             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		             AND classid::int8 = $2 AND objid::int8 = $3) AS k ON true
		LEFT JOIN runbook_state.leases AS l ON l.key = $1`, key, hi, lo).Scan(&lockPID, &host, &pid, &backend, &l.runID, &since, &age)
	if err != nil || lockPID == nil {
		return l
	}
	l.held, l.lockPID = true, *lockPID
	if host != nil && backend != nil && *backend == *lockPID {
		l.ok, l.host, l.pid, l.since = true, *host, *pid, *since
		l.age = time.Duration(*age * float64(time.Second))
	}
	return l
}

// String says who holds the lock ("" when nobody does).
func (l lease) String() string {
	switch {
	case !l.held:
		return ""
	case !l.ok:
		return fmt.Sprintf("the control database's backend %d holds the lock; it wrote no lease", l.lockPID)
	}
	who := fmt.Sprintf("pid %d on %s", l.pid, l.host)
	if l.runID != nil {
		who += ", run " + *l.runID
	}
	return who + fmt.Sprintf(" since %s, heartbeat %s ago", l.since.UTC().Format(time.RFC3339), l.age.Round(time.Second))
}

// deadHere reports whether the holder ran on this host and its process is
// gone: the server drops its lock as soon as it sees the connection closed,
// which may take a moment after the process died.
func (l lease) deadHere() bool {
	host, _ := os.Hostname()
	return l.ok && l.host == host && l.pid > 0 && syscall.Kill(int(l.pid), 0) == syscall.ESRCH
}

// stale reports whether the holder's heartbeat stopped: the holder is dead
// or cut off, but its server has not seen its connection go yet.
func (l lease) stale() bool { return l.ok && l.age > 3*heartbeat }

// Close releases the lock (the lease row goes with it) and closes the
// connection.
func (s *Store) Close() error {
	s.mu.Lock()
	stop := s.stop
	s.stop = nil
	s.mu.Unlock()
	if stop != nil {
		close(stop)
		s.beating.Wait()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	var err error
	if s.locked && !s.conn.IsClosed() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		_, err = s.conn.Exec(ctx, `DELETE FROM runbook_state.leases WHERE key = $1 AND backend_pid = pg_backend_pid()`, s.key)
		if err == nil {
			_, err = s.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, s.lockKey)
		}
		cancel()
		err = s.wrap("releasing the run's lock", err)
	}
	s.locked = false
	s.conn.Close(context.Background())
	s.conn = nil
	return err
}
