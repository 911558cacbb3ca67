package actions

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	neturl "net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/runbookhq/runbook/internal/event"
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
	// live, when set, receives the live events (progress) and makes the
	// Context's Events say that somebody watches.
	live *liveEvents
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
	// terminal makes the Context's Events live (progress is measured and
	// emitted).
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
		f.live = &liveEvents{}
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
	rc := &Context{Step: step, Env: f.env, Events: &testEvents{log: &f.logger, step: id, live: f.live}, Conns: f.conns,
		Redact: f.red, Dir: f.dir, Journal: f.journal, Attempt: 1}
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

// testEvents writes a step's events as the executor does (JSON lines, the
// step in the envelope) and keeps the live ones.
type testEvents struct {
	log  *zerolog.Logger
	step string
	live *liveEvents
}

func (e *testEvents) Emit(ev event.Event) {
	if _, ok := ev.(event.Progressor); ok {
		if e.live != nil {
			e.live.add(ev)
		}
		return
	}
	event.Log(e.log, e.step, ev)
}

func (e *testEvents) Live() bool { return e.live != nil }

// liveEvents collects live events.
type liveEvents struct {
	mu  sync.Mutex
	evs []event.Event
}

func (l *liveEvents) add(ev event.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, ev)
}

func (l *liveEvents) all() []event.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]event.Event(nil), l.evs...)
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
	conn, err := c.dial(ctx, name)
	if err != nil {
		return nil, err
	}
	c.open[name] = conn
	return conn, nil
}

// Extra implements Conns: another session, closed when the test ends.
func (c *testConns) Extra(ctx context.Context, name string) (*pgx.Conn, error) {
	return c.dial(ctx, name)
}

func (c *testConns) dial(ctx context.Context, name string) (*pgx.Conn, error) {
	url, ok := c.urls[name]
	if !ok {
		return nil, fmt.Errorf("no connection %q", name)
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, err
	}

	pgxDefault := cfg.BuildContextWatcherHandler
	pghook.Install(&cfg.Config, func(n *pgconn.Notice) { event.Log(&c.log, "", Notice(name, n)) })
	if c.pgxWatcher {
		cfg.BuildContextWatcherHandler = pgxDefault
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	c.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn, nil
}

func (c *testConns) ChildEnv(context.Context, string) ([]string, []*os.File, error) {
	return nil, nil, nil
}

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
	Tx         Tx
}

// done is the statement count a Tx records: a generate step's statements
// done, an sql step's statements (its outputs).
func (c journalCall) done() int {
	var v struct {
		Done       *int `json:"done"`
		Statements *int `json:"statements"`
	}
	json.Unmarshal(c.Tx.Data, &v)
	switch {
	case v.Done != nil:
		return *v.Done
	case v.Statements != nil:
		return *v.Statements
	}
	return 0
}

func (c journalCall) String() string {
	switch c.Kind {
	case "freeze":
		return fmt.Sprintf("freeze(%d)", len(c.Statements))
	case "before":
		return fmt.Sprintf("before(%d)", c.done())
	}
	return fmt.Sprintf("committed(%d)", c.done())
}

// memJournal implements Journal in memory and records the calls.
type memJournal struct {
	mu    sync.Mutex
	units map[string]json.RawMessage
	blobs map[string][]byte
	calls []journalCall
	// failBefore makes BeforeCommit fail when the statements done reach it
	// (0: never).
	failBefore int
}

// prime makes the journal hold what an earlier run of a generate step left:
// its frozen list and the statements done.
func (j *memJournal) prime(frozen []string, done int) {
	j.mu.Lock()
	j.units, j.blobs = nil, nil
	j.mu.Unlock()
	if _, err := freeze(j, func(add func(string) error) error {
		for _, s := range frozen {
			if err := add(s); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		panic(err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.units = map[string]json.RawMessage{genUnit: genData(done, len(frozen))}
	j.calls = nil
}

func (j *memJournal) Unit(name string) json.RawMessage {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.units[name]
}

func (j *memJournal) PutBlob(name string, write func(w io.Writer) error) error {
	var b bytes.Buffer
	if err := write(&b); err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.blobs == nil {
		j.blobs = map[string][]byte{}
	}
	j.blobs[name] = b.Bytes()
	var stmts []string
	if err := json.Unmarshal(b.Bytes(), &stmts); err != nil {
		return err
	}
	j.calls = append(j.calls, journalCall{Kind: "freeze", Statements: stmts})
	return nil
}

func (j *memJournal) OpenBlob(name string) (io.ReadCloser, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	b, ok := j.blobs[name]
	if !ok {
		return nil, ErrNoBlob
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (j *memJournal) BeforeCommit(ctx context.Context, tx Tx) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	c := journalCall{Kind: "before", Tx: tx}
	if j.failBefore > 0 && c.done() >= j.failBefore {
		return fmt.Errorf("journal: disk full")
	}
	j.calls = append(j.calls, c)
	return nil
}

func (j *memJournal) Committed(tx Tx) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	// Units are what prime sets: the steps of a test share the journal,
	// and each starts from what an earlier run left.
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
