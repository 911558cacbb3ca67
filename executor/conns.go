package executor

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/internal/event"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/pghook"
	"github.com/runbookhq/runbook/internal/redact"
	"github.com/runbookhq/runbook/schema"
)

// conns opens the runbook's connections lazily, one session each, and gives
// child processes their libpq environment. It implements actions.Conns.
type conns struct {
	defs    map[string]*schema.Connection
	urls    map[string]string // evaluated connection strings (secret)
	appName string
	// emit tells the run about connections and servers' notices.
	emit func(step string, ev event.Event)
	red  *redact.Redactor
	// identify checks and records the identity of a server on first connect.
	identify func(name string, s Server) error
	// opened records each session before it is used (sessions.go).
	opened func(ctx context.Context, name string, conn *pgx.Conn) error
	// pass are the connections' password files (passfile.go), made on
	// first use; passDir is the fallback directory, when one was needed.
	pass    map[string]*secretFile
	passDir *passDir

	mu   sync.Mutex
	open map[string]*pgx.Conn
}

func newConns(rb *schema.Runbook, urls map[string]string, appName string, emit func(step string, ev event.Event), red *redact.Redactor) *conns {
	if emit == nil {
		emit = func(string, event.Event) {}
	}
	c := &conns{defs: map[string]*schema.Connection{}, urls: urls, appName: appName, emit: emit, red: red, open: map[string]*pgx.Conn{}}
	for _, d := range rb.Connections {
		c.defs[d.Name] = d
	}
	return c
}

func (c *conns) config(name string) (*pgx.ConnConfig, error) {
	raw, ok := c.urls[name]
	if !ok {
		return nil, fmt.Errorf("no connection %q", name)
	}
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("connection %s: invalid connection string (not shown: it may contain a password)", name)
	}
	return cfg, nil
}

// Conn implements actions.Conns.
func (c *conns) Conn(ctx context.Context, name string) (*pgx.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if conn := c.open[name]; conn != nil && !conn.IsClosed() {
		return conn, nil
	}
	conn, err := c.dial(ctx, name, true)
	if err != nil {
		return nil, err
	}
	c.open[name] = conn
	return conn, nil
}

// dial opens a session on a connection: its settings, the notice and
// cancellation hooks, the server's identity checked and recorded; announce
// emits its conn.open (extra sessions, the same connection again, do not).
func (c *conns) dial(ctx context.Context, name string, announce bool) (*pgx.Conn, error) {
	cfg, err := c.config(name)
	if err != nil {
		return nil, err
	}
	def := c.defs[name]
	params := cfg.RuntimeParams
	params["application_name"] = c.appName
	for k, v := range sessionSettings(def) {
		params[k] = v
	}
	// Notices are the run's events; Ctrl-C and step timeouts cancel the
	// statement on the server and keep the session (and its advisory lock).
	pghook.Install(&cfg.Config, func(n *pgconn.Notice) { c.emit("", actions.Notice(name, n)) })
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connection %s: %w", name, c.red.Error(err))
	}
	var srv Server
	err = conn.QueryRow(ctx, `SELECT (SELECT system_identifier::text FROM pg_control_system()),
		current_setting('server_version'), current_database(),
		(SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&srv.SystemID, &srv.Version, &srv.Database, &srv.DatabaseOID)
	if err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("connection %s: reading the server's identity: %w", name, c.red.Error(err))
	}
	if c.identify != nil {
		if err := c.identify(name, srv); err != nil {
			conn.Close(context.Background())
			return nil, err
		}
	}
	if c.opened != nil {
		if err := c.opened(ctx, name, conn); err != nil {
			conn.Close(context.Background())
			return nil, err
		}
	}
	if announce {
		c.emit("", ConnOpen{Conn: name, Host: cfg.Host, Port: cfg.Port, Database: cfg.Database, User: cfg.User,
			Version: srv.Version, SystemID: srv.SystemID})
	}
	return conn, nil
}

// forStep returns the connections as one attempt of a step sees them: extra
// sessions it opens are closed when the attempt ends (closeExtra).
func (c *conns) forStep() *stepConns { return &stepConns{conns: c} }

// stepConns implements actions.Conns for one attempt of a step.
type stepConns struct {
	*conns
	mu    sync.Mutex
	extra []*pgx.Conn
}

// Extra implements actions.Conns: a session of its own on a connection, with
// the same settings, identity check and masking as the step's main one.
func (s *stepConns) Extra(ctx context.Context, name string) (*pgx.Conn, error) {
	conn, err := s.dial(ctx, name, false)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.extra = append(s.extra, conn)
	s.mu.Unlock()
	return conn, nil
}

// closeExtra closes the extra sessions the attempt opened.
func (s *stepConns) closeExtra() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, conn := range s.extra {
		ctx, cancel := context.WithTimeout(context.Background(), timeoutClose)
		conn.Close(ctx)
		cancel()
	}
	s.extra = nil
}

// ChildEnv implements actions.Conns: libpq's environment for a child process,
// the password in a password file that no process outlives (passfile.go):
// never in argv, never in the environment, never on a disk where memfd exists.
func (c *conns) ChildEnv(ctx context.Context, name string) ([]string, []*os.File, error) {
	// Connect first: the server's identity is checked and recorded (a resume
	// against another server refuses), and a wrong password fails here, clearly.
	if _, err := c.Conn(ctx, name); err != nil {
		return nil, nil, err
	}
	cfg, err := c.config(name)
	if err != nil {
		return nil, nil, err
	}
	env := []string{
		"PGHOST=" + cfg.Host,
		"PGPORT=" + strconv.Itoa(int(cfg.Port)),
		"PGUSER=" + cfg.User,
		"PGDATABASE=" + cfg.Database,
		"PGAPPNAME=" + c.appName,
		"PGPASSWORD=", // an inherited password must not leak to another server
	}
	for k, v := range libpqOptions(c.urls[name]) {
		env = append(env, k+"="+v)
	}
	if cfg.Password == "" {
		return env, nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	sf := c.pass[name]
	if sf == nil {
		if sf, err = newSecretFile(name, passLine(cfg.User, cfg.Password), &c.passDir); err != nil {
			return nil, nil, err
		}
		if c.pass == nil {
			c.pass = map[string]*secretFile{}
		}
		c.pass[name] = sf
	}
	kv, files := sf.childEnv()
	return append(env, kv), files, nil
}

// libpqOptions maps a connection string's TLS and other options to libpq
// environment variables.
func libpqOptions(raw string) map[string]string {
	names := map[string]string{"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT",
		"sslkey": "PGSSLKEY", "connect_timeout": "PGCONNECT_TIMEOUT", "options": "PGOPTIONS",
		"target_session_attrs": "PGTARGETSESSIONATTRS", "sslcrl": "PGSSLCRL"}
	out := map[string]string{}
	if strings.HasPrefix(raw, "postgres://") || strings.HasPrefix(raw, "postgresql://") {
		u, err := url.Parse(raw)
		if err != nil {
			return out
		}
		for k, vs := range u.Query() {
			if env, ok := names[k]; ok && len(vs) > 0 {
				out[env] = vs[len(vs)-1]
			}
		}
		return out
	}
	for _, f := range strings.Fields(raw) {
		if k, v, ok := strings.Cut(f, "="); ok {
			if env, ok := names[k]; ok {
				out[env] = strings.Trim(v, "'")
			}
		}
	}
	return out
}

// lock takes the runbook's session advisory lock on a connection.
func (c *conns) lock(ctx context.Context, name, runbook string) error {
	conn, err := c.Conn(ctx, name)
	if err != nil {
		return err
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended('runbook:' || $1, 0))`, runbook).Scan(&ok); err != nil {
		return fmt.Errorf("advisory lock on %s: %w", name, c.red.Error(err))
	}
	if !ok {
		var holder string
		_ = conn.QueryRow(ctx, `SELECT coalesce(string_agg(a.application_name || ' (pid ' || a.pid || ')', ', '), 'unknown')
			FROM pg_locks l JOIN pg_stat_activity a USING (pid)
			WHERE l.locktype = 'advisory' AND l.granted AND l.objid = (hashtextextended('runbook:' || $1, 0) & x'ffffffff'::bigint)::oid`, runbook).Scan(&holder)
		return exitcode.With(exitcode.Refused, fmt.Errorf("another run of %s holds its advisory lock on connection %s: %s", runbook, name, holder))
	}
	return nil
}

// close closes every connection and the password files.
func (c *conns) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, conn := range c.open {
		ctx, cancel := context.WithTimeout(context.Background(), timeoutClose)
		conn.Close(ctx)
		cancel()
		delete(c.open, name)
	}
	for name, sf := range c.pass {
		sf.close()
		delete(c.pass, name)
	}
	if c.passDir != nil {
		c.passDir.remove()
		c.passDir = nil
	}
}
