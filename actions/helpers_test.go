package actions

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	neturl "net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/runbookhq/runbook/internal/pghook"
	"github.com/runbookhq/runbook/internal/pgtest"
	"github.com/runbookhq/runbook/internal/redact"
	"github.com/runbookhq/runbook/schema"
)

// fixture is one loaded runbook and the Context its steps run with: test
// connections, a memory journal and a JSON log in a buffer.
type fixture struct {
	t       testing.TB
	rb      *schema.Runbook
	env     *schema.Env
	conns   *testConns
	journal *memJournal
	log     *syncBuffer
	logger  zerolog.Logger
	red     *redact.Redactor
	dir     string
	term    *syncBuffer
}

// fixtureOpts changes how newFixture builds the fixture.
type fixtureOpts struct {
	// params are declared with these defaults; the param "pw" is secret.
	params map[string]string
	// files are written next to the runbook.
	files map[string]string
	// pgxWatcher keeps pgx's default context watcher (socket deadline)
	// instead of pghook.CancelOnContext.
	pgxWatcher bool
	// terminal gives the Context a Terminal.
	terminal bool
}

// newFixture loads a runbook whose connections are the names of urls and whose
// steps are stepsYAML (a YAML list, indented by two spaces).
func newFixture(t testing.TB, urls map[string]string, stepsYAML string, o fixtureOpts) *fixture {
	t.Helper()
	var b strings.Builder
	b.WriteString("version: 1\nname: t\n")
	params := map[string]string{}
	var secrets []string
	if len(o.params) > 0 {
		b.WriteString("params:\n")
		for _, k := range sortedKeys(o.params) {
			v := o.params[k]
			params[k] = v
			fmt.Fprintf(&b, "  %s: {default: %q", k, v)
			if k == "pw" {
				b.WriteString(", secret: true")
				secrets = append(secrets, v)
			}
			b.WriteString("}\n")
		}
	}
	b.WriteString("connections:\n")
	for _, k := range sortedKeys(urls) {
		fmt.Fprintf(&b, "  %s: postgres://placeholder/%s\n", k, k)
	}
	b.WriteString("steps:\n")
	b.WriteString(stepsYAML)
	dir := t.TempDir()
	for name, content := range o.files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "runbook.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	rb, err := schema.LoadFile(path)
	if err != nil {
		t.Fatalf("loading the runbook: %v\n%s", err, b.String())
	}
	f := &fixture{t: t, rb: rb, journal: &memJournal{}, log: &syncBuffer{}, dir: dir, red: redact.New(secrets...)}
	f.logger = zerolog.New(f.red.Writer(f.log)).With().Timestamp().Logger()
	f.env = &schema.Env{Params: params, Steps: map[string]schema.StepResult{}, Conn: map[string]schema.ConnInfo{}, Env: map[string]string{}}
	f.conns = &testConns{t: t, urls: urls, log: f.logger, pgxWatcher: o.pgxWatcher, open: map[string]*pgx.Conn{}}
	if o.terminal {
		f.term = &syncBuffer{}
	}
	return f
}

// context returns the Context step id runs with.
func (f *fixture) context(id string) *Context {
	f.t.Helper()
	step := f.rb.Step(id)
	if step == nil {
		f.t.Fatalf("no step %q", id)
	}
	rc := &Context{Step: step, Env: f.env, Log: f.logger.With().Str("step", id).Logger(), Conns: f.conns,
		Redact: f.red, Dir: f.dir, Journal: f.journal, Attempt: 1}
	if f.term != nil {
		rc.Terminal = f.term
	}
	return rc
}

// run runs step id.
func (f *fixture) run(ctx context.Context, id string) (Outputs, error) {
	f.t.Helper()
	rc := f.context(id)
	return rc.Step.Action.(Runner).Run(ctx, rc)
}

// mustRun runs step id and fails the test on error.
func (f *fixture) mustRun(id string) Outputs {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := f.run(ctx, id)
	if err != nil {
		f.t.Fatalf("step %s: %v\nlog:\n%s", id, err, f.log.String())
	}
	return out
}

// runErr runs step id and fails the test unless it fails.
func (f *fixture) runErr(id string) error {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := f.run(ctx, id)
	if err == nil {
		f.t.Fatalf("step %s succeeded, want an error\nlog:\n%s", id, f.log.String())
	}
	return err
}

// events returns the logged events named event, decoded.
func (f *fixture) events(event string) []map[string]any {
	f.t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(f.log.String()))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			f.t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
		}
		if m["event"] == event {
			out = append(out, m)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// testConns connects to URLs by name, once each, as the executor would: with
// pghook's hooks installed (unless pgxWatcher, pgx's default context watcher).
type testConns struct {
	t          testing.TB
	urls       map[string]string
	log        zerolog.Logger
	pgxWatcher bool

	mu   sync.Mutex
	open map[string]*pgx.Conn
}

func (c *testConns) Conn(ctx context.Context, name string) (*pgx.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if conn := c.open[name]; conn != nil && !conn.IsClosed() {
		return conn, nil
	}
	url, ok := c.urls[name]
	if !ok {
		return nil, fmt.Errorf("no connection %q", name)
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	log := c.log.With().Str("conn", name).Logger()
	pgxDefault := cfg.BuildContextWatcherHandler
	pghook.Install(&cfg.Config, log)
	if c.pgxWatcher {
		cfg.BuildContextWatcherHandler = pgxDefault
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	c.t.Cleanup(func() { conn.Close(context.Background()) })
	c.open[name] = conn
	return conn, nil
}

func (c *testConns) ChildEnv(context.Context, string) ([]string, error) { return nil, nil }

// conn returns the open connection name (connecting if needed).
func (c *testConns) conn(name string) *pgx.Conn {
	c.t.Helper()
	conn, err := c.Conn(context.Background(), name)
	if err != nil {
		c.t.Fatal(err)
	}
	return conn
}

// journalCall is one call of the memory journal.
type journalCall struct {
	Kind       string // freeze, before, committed
	Statements []string
	Tx         PendingTx
}

func (c journalCall) String() string {
	switch c.Kind {
	case "freeze":
		return fmt.Sprintf("freeze(%d)", len(c.Statements))
	case "before":
		return fmt.Sprintf("before(%d)", c.Tx.Done)
	}
	return fmt.Sprintf("committed(%d)", c.Tx.Done)
}

// memJournal records the calls; resume primes what Resume returns.
type memJournal struct {
	mu     sync.Mutex
	resume *Progress
	calls  []journalCall
	// failBefore makes BeforeCommit fail when Done reaches it (0: never).
	failBefore int
}

func (j *memJournal) Resume() *Progress { return j.resume }

func (j *memJournal) Freeze(write func(add func(string) error) error) (Statements, error) {
	var statements []string
	if err := write(func(s string) error { statements = append(statements, s); return nil }); err != nil {
		return nil, err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.calls = append(j.calls, journalCall{Kind: "freeze", Statements: statements})
	return StatementList(statements), nil
}

func (j *memJournal) BeforeCommit(ctx context.Context, tx PendingTx) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failBefore > 0 && tx.Done >= j.failBefore {
		return fmt.Errorf("journal: disk full")
	}
	j.calls = append(j.calls, journalCall{Kind: "before", Tx: tx})
	return nil
}

func (j *memJournal) Committed(tx PendingTx) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.calls = append(j.calls, journalCall{Kind: "committed", Tx: tx})
	return nil
}

// sequence renders the calls: "freeze(3) before(1) committed(1) …".
func (j *memJournal) sequence() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := make([]string, len(j.calls))
	for i, c := range j.calls {
		s[i] = c.String()
	}
	return strings.Join(s, " ")
}

// of returns the calls of one kind.
func (j *memJournal) of(kind string) []journalCall {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []journalCall
	for _, c := range j.calls {
		if c.Kind == kind {
			out = append(out, c)
		}
	}
	return out
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testDB is a fresh database on the shared test server.
type testDB struct {
	srv  *pgtest.Server
	name string
	url  string
}

func newDB(t testing.TB) testDB {
	t.Helper()
	return newDBOn(t, pgtest.Shared(t))
}

// newDBOn creates a database on srv.
func newDBOn(t testing.TB, srv *pgtest.Server) testDB {
	t.Helper()
	url := srv.NewDatabase(t)
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	return testDB{srv: srv, name: strings.TrimPrefix(u.Path, "/"), url: url}
}

func (d testDB) exec(t testing.TB, sql string) { t.Helper(); d.srv.Exec(t, d.name, sql) }

func (d testDB) value(t testing.TB, sql string, args ...any) string {
	t.Helper()
	return d.srv.QueryValue(t, d.name, sql, args...)
}

func (d testDB) query(t testing.TB, sql string, args ...any) [][]string {
	t.Helper()
	return d.srv.Query(t, d.name, sql, args...)
}
