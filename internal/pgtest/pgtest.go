// Package pgtest gives tests a real PostgreSQL server.
//
// By default it starts throwaway clusters with the local PostgreSQL binaries
// (initdb + pg_ctl) in directories under os.TempDir(), tuned for speed (fsync,
// synchronous_commit and full_page_writes off) and listening on 127.0.0.1 only
// with trust authentication for the role "postgres". When the environment
// variable RUNBOOK_TEST_DATABASE_URL is set, every function hands out that
// server instead and starts nothing.
//
// A test package that uses pgtest should declare
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// so that the clusters it started are stopped when its tests end.
//
// When PostgreSQL cannot be obtained (no binaries, no pgaudit for
// WithPgaudit, the server does not start), the test is skipped; under
// CI=true it fails instead, with the reason and the tail of the server log.
//
// Clusters are also cleaned up when the test binary dies without running its
// cleanups (a panic, a timeout, SIGKILL): every cluster has a small watchdog
// process (/bin/sh) that waits for the test binary to go away and then stops
// the server (pg_ctl -m immediate) and removes its directory. Only when the
// watchdog itself is killed (for example by killing the whole process tree)
// can a postmaster outlive its test binary; it then keeps running detached
// until stopped by hand (its directory is /tmp/pgtest-*).
package pgtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the environment variable that points the tests at an existing
// server instead of throwaway clusters. Its role must be allowed to create
// and drop databases.
const EnvURL = "RUNBOOK_TEST_DATABASE_URL"

// opTimeout bounds every helper query so that a wedged server fails the test
// instead of hanging until the test binary's own timeout.
const opTimeout = 2 * time.Minute

// Server is a running PostgreSQL server that tests may use.
type Server struct {
	// Host and Port are where the server listens (127.0.0.1 and a free port
	// for clusters started here).
	Host string
	Port int
	// User is the superuser role tests connect as ("postgres" for clusters
	// started here).
	User string
	// DataDir is the cluster's data directory; "" when the server is
	// external (RUNBOOK_TEST_DATABASE_URL).
	DataDir string
	// BinDir is the directory of the PostgreSQL binaries (pg_dump,
	// pg_restore, psql …) of the server's major version; for an external
	// server, the local binaries of that major version when installed,
	// otherwise the newest local ones ("" when there are none).
	BinDir string
	// LogFile is the server log; "" when the server is external.
	LogFile string

	base    url.URL  // connection URL without a database
	cluster *cluster // nil when external
}

// External reports whether s is the server named by RUNBOOK_TEST_DATABASE_URL
// rather than a cluster started by this process. NewCluster and Pair hand out
// that same server, so tests that need truly distinct clusters (different
// system identifiers, server settings) should check it and skip or fail.
func (s *Server) External() bool { return s.cluster == nil }

// URL returns the connection URL of database db on s, for example
// postgres://postgres@127.0.0.1:5433/db?sslmode=disable. For an external
// server it is RUNBOOK_TEST_DATABASE_URL with the database replaced, so
// password and parameters are kept.
func (s *Server) URL(db string) string {
	u := s.base
	u.Path = "/" + db
	u.RawPath = ""
	return u.String()
}

var dbSeq struct {
	sync.Mutex
	n int
}

var unsafeName = regexp.MustCompile(`[^a-z0-9_]+`)

// NewDatabase creates a database with a unique name (derived from the test's
// name) and returns its URL. The database is dropped, WITH (FORCE), when the
// test ends. It is created from template1, so on a WithPgaudit server it has
// the pgaudit extension.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := s.newDatabaseName(t.Name())
	s.Exec(t, "postgres", "CREATE DATABASE "+quoteIdent(name))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := s.exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+quoteIdent(name)+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})
	return s.URL(name)
}

// DatabaseName returns the database of a connection URL, such as one that
// NewDatabase or URL returned. A URL without one fails the test (the message
// leaves the URL out: it may hold a password).
func DatabaseName(t testing.TB, connURL string) string {
	t.Helper()
	u, err := url.Parse(connURL)
	if err != nil || strings.Trim(u.Path, "/") == "" {
		t.Fatal("pgtest: no database in the connection URL")
	}
	return strings.TrimPrefix(u.Path, "/")
}

func (s *Server) newDatabaseName(testName string) string {
	dbSeq.Lock()
	dbSeq.n++
	n := dbSeq.n
	dbSeq.Unlock()
	short := strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(testName), "_"), "_")
	if len(short) > 32 {
		short = short[:32]
	}
	// The pid and sequence keep names unique within this host; the time
	// keeps them unique among test binaries sharing an external server.
	return fmt.Sprintf("t_%s_%d_%d_%x", short, os.Getpid(), n, time.Now().UnixNano()&0xffffff)
}

// Exec runs sql on database db through the simple query protocol, so sql may
// hold several statements. The test fails at once on error.
func (s *Server) Exec(t testing.TB, db, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := s.exec(ctx, db, sql); err != nil {
		t.Fatalf("pgtest: exec on %s: %v\nSQL: %s", db, err, sql)
	}
}

func (s *Server) exec(ctx context.Context, db, sql string) error {
	conn, err := pgx.Connect(ctx, s.URL(db))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.PgConn().Exec(ctx, sql).ReadAll()
	return err
}

// Query runs one query with args on database db and returns every row as the
// text form of its columns (as psql shows them; NULL becomes ""). The test
// fails at once on error.
func (s *Server) Query(t testing.TB, db, sql string, args ...any) [][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL(db))
	if err != nil {
		t.Fatalf("pgtest: connecting to %s: %v", db, err)
	}
	defer conn.Close(context.Background())
	out, err := queryText(ctx, conn, sql, args...)
	if err != nil {
		t.Fatalf("pgtest: query on %s: %v\nSQL: %s", db, err, sql)
	}
	return out
}

// QueryValue runs a query that returns one row of one column and returns that
// value as text. The test fails at once on error or on another shape.
func (s *Server) QueryValue(t testing.TB, db, sql string, args ...any) string {
	t.Helper()
	rows := s.Query(t, db, sql, args...)
	if len(rows) != 1 || len(rows[0]) != 1 {
		t.Fatalf("pgtest: query on %s returned %d rows, want one value\nSQL: %s", db, len(rows), sql)
	}
	return rows[0][0]
}

// Connect opens a connection to database db, closed when the test ends. Use
// it when a test runs many queries.
func (s *Server) Connect(t testing.TB, db string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL(db))
	if err != nil {
		t.Fatalf("pgtest: connecting to %s: %v", db, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func queryText(ctx context.Context, conn *pgx.Conn, sql string, args ...any) ([][]string, error) {
	rows, err := conn.Query(ctx, sql, append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := [][]string{}
	for rows.Next() {
		raw := rows.RawValues()
		row := make([]string, len(raw))
		for i, v := range raw {
			row[i] = string(v)
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// quoteIdent quotes a database name. pgtest cannot use internal/pgquote:
// that package's tests use pgtest.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// Option changes how NewCluster and Pair set up a cluster.
type Option func(*config)

type config struct {
	pgaudit  bool
	fsync    bool
	settings [][2]string
	hba      []string
}

// WithPgaudit prepares the cluster as Crunchy Bridge does:
// shared_preload_libraries = pgaudit, CREATE EXTENSION pgaudit in template1
// and postgres (so every new database has it), and
// ALTER ROLE postgres SET pgaudit.log = 'all'. Without pgaudit installed the
// test is unavailable (skipped, or failed under CI=true); scripts/ensure-deps
// installs it. On an external server it only checks that
// shared_preload_libraries includes pgaudit.
func WithPgaudit() Option { return func(c *config) { c.pgaudit = true } }

// WithFsync keeps the durability settings at PostgreSQL's defaults (fsync,
// synchronous_commit and full_page_writes on). Without it a cluster turns
// them off for speed. Benchmarks use it. Ignored for an external server.
func WithFsync() Option { return func(c *config) { c.fsync = true } }

// WithSetting sets a server parameter in the cluster's postgresql.conf, after
// pgtest's own settings, so it can override them. Ignored for an external
// server.
func WithSetting(k, v string) Option {
	return func(c *config) { c.settings = append(c.settings, [2]string{k, v}) }
}

// WithHBA puts lines at the top of the cluster's pg_hba.conf, before the
// trust rules pgtest writes, so they win: for example
// "host all alice 127.0.0.1/32 scram-sha-256" makes the role alice log in with
// its password while every other role is still trusted. Ignored for an
// external server (see Server.External).
func WithHBA(lines ...string) Option {
	return func(c *config) { c.hba = append(c.hba, lines...) }
}

func newConfig(opts []Option) *config {
	c := &config{}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Available reports whether tests can get PostgreSQL here: nil when
// RUNBOOK_TEST_DATABASE_URL is set or the PostgreSQL server binaries are
// installed (and, as root, the postgres user exists to run them). It does not
// start anything, nor check for pgaudit.
func Available() error {
	if os.Getenv(EnvURL) != "" {
		return nil
	}
	_, err := localEnv()
	return err
}

// unavailable reports that the test cannot get the PostgreSQL it needs:
// under CI=true the test fails, elsewhere it is skipped.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := "pgtest: PostgreSQL unavailable: " + fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg + " (under CI=true this fails the test)")
}

var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Shared returns the cluster shared by all the tests of this test binary,
// started on first use, or the RUNBOOK_TEST_DATABASE_URL server when that is
// set. Tests must not change it in ways that leak into other tests: create a
// database with NewDatabase. It is stopped by Main (or, without Main, by its
// watchdog when the test binary exits).
func Shared(t testing.TB) *Server {
	t.Helper()
	if os.Getenv(EnvURL) != "" {
		return externalFor(t, &config{})
	}
	shared.once.Do(func() {
		c, err := startCluster(&config{})
		if err != nil {
			shared.err = err
			return
		}
		shared.srv = c.srv
	})
	if shared.err != nil {
		unavailable(t, "%v", shared.err)
	}
	return shared.srv
}

// NewCluster starts a fresh cluster of its own for the test and stops and
// removes it when the test ends. With RUNBOOK_TEST_DATABASE_URL set it
// returns that server instead (see Server.External).
func NewCluster(t testing.TB, opts ...Option) *Server {
	t.Helper()
	cfg := newConfig(opts)
	if os.Getenv(EnvURL) != "" {
		return externalFor(t, cfg)
	}
	c, err := startCluster(cfg)
	if err != nil {
		unavailable(t, "%v", err)
	}
	c.cleanupWith(t)
	return c.srv
}

// Pair starts two independent clusters with the same options, concurrently:
// a migration's source and target. Both are stopped and removed when the test
// ends. With RUNBOOK_TEST_DATABASE_URL set both are that one server (see
// Server.External).
func Pair(t testing.TB, opts ...Option) (source, target *Server) {
	t.Helper()
	cfg := newConfig(opts)
	if os.Getenv(EnvURL) != "" {
		s := externalFor(t, cfg)
		return s, s
	}
	var cs [2]*cluster
	var errs [2]error
	var wg sync.WaitGroup
	for i := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs[i], errs[i] = startCluster(cfg)
		}()
	}
	wg.Wait()
	for _, c := range cs {
		if c != nil {
			c.cleanupWith(t)
		}
	}
	for _, err := range errs {
		if err != nil {
			unavailable(t, "%v", err)
		}
	}
	return cs[0].srv, cs[1].srv
}

// Start starts a throwaway cluster outside a test, for the benchmark suite:
// the same cluster as NewCluster's, with its watchdog, but never the
// RUNBOOK_TEST_DATABASE_URL server, and stopped by the caller with Stop.
func Start(opts ...Option) (*Server, error) {
	c, err := startCluster(newConfig(opts))
	if err != nil {
		return nil, err
	}
	return c.srv, nil
}

// Stop stops a cluster started by this process at once and removes its
// directory; it may be called more than once. It does nothing to an external
// server.
func (s *Server) Stop() {
	if s.cluster != nil {
		s.cluster.stop()
	}
}

// Main runs the tests of m, stops every cluster this process started (the
// shared one included) and exits with the tests' code. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	stopAll()
	os.Exit(code)
}

// external is the RUNBOOK_TEST_DATABASE_URL server, probed once.
var external struct {
	once    sync.Once
	srv     *Server
	preload string
	err     error
}

func externalFor(t testing.TB, cfg *config) *Server {
	t.Helper()
	external.once.Do(func() {
		external.srv, external.preload, external.err = probeExternal(os.Getenv(EnvURL))
	})
	if external.err != nil {
		unavailable(t, "%s: %v", EnvURL, external.err)
	}
	if cfg.pgaudit && !hasLibrary(external.preload, "pgaudit") {
		unavailable(t, "%s: pgaudit requested but shared_preload_libraries is %q", EnvURL, external.preload)
	}
	return external.srv
}

func hasLibrary(list, lib string) bool {
	for _, l := range strings.Split(list, ",") {
		if strings.Trim(strings.TrimSpace(l), `"`) == lib {
			return true
		}
	}
	return false
}

// probeExternal builds the Server for raw and asks it for its version and
// preloaded libraries.
func probeExternal(raw string) (*Server, string, error) {
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return nil, "", err
	}
	s := &Server{Host: cfg.Host, Port: int(cfg.Port), User: cfg.User}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// keyword=value form: rebuild a URL from what pgx understood.
		u = &url.URL{Scheme: "postgres"}
		if cfg.Password != "" {
			u.User = url.UserPassword(cfg.User, cfg.Password)
		} else {
			u.User = url.User(cfg.User)
		}
		q := url.Values{}
		if strings.HasPrefix(cfg.Host, "/") {
			q.Set("host", cfg.Host)
			q.Set("port", strconv.Itoa(int(cfg.Port)))
		} else {
			u.Host = net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
		}
		if cfg.TLSConfig == nil {
			q.Set("sslmode", "disable")
		}
		u.RawQuery = q.Encode()
	}
	s.base = *u

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, "", err
	}
	defer conn.Close(context.Background())
	var version int
	var preload string
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int, current_setting('shared_preload_libraries')").Scan(&version, &preload); err != nil {
		return nil, "", err
	}
	s.BinDir = binDirForMajor(version / 10000)
	return s, preload, nil
}

// Restart stops the cluster in pg_ctl's shutdown mode — "immediate" is a
// crash (the next start recovers from the WAL, losing what was not flushed),
// "fast" a clean shutdown — and starts it again with the same options, on the
// same port. Sessions open before it are broken. An external server
// (RUNBOOK_TEST_DATABASE_URL) cannot be restarted: the test fails.
func (s *Server) Restart(t testing.TB, mode string) {
	t.Helper()
	if s.cluster == nil {
		t.Fatal("pgtest: Restart needs a cluster started by the test, not RUNBOOK_TEST_DATABASE_URL's server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := s.cluster.commandContext(ctx, "pg_ctl", "-D", s.DataDir, "-l", s.LogFile, "-w", "-t", "90", "-m", mode, "restart").CombinedOutput()
	if err != nil {
		t.Fatalf("pgtest: pg_ctl restart -m %s: %v\n%s%s", mode, err, tail(out, 1000), s.cluster.logTail())
	}
}
