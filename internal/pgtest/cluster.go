package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runbookhq/runbook/internal/shellword"
)

// runAs is the account that runs the PostgreSQL binaries when this process
// is root (initdb and postgres refuse to run as root).
const runAs = "postgres"

// env is what starting a cluster needs from this machine.
type env struct {
	binDir  string
	asRoot  bool
	uid     int // of runAs, when asRoot
	gid     int
	runuser string // path of runuser, when asRoot
}

var localEnv = sync.OnceValues(func() (*env, error) {
	e := &env{}
	dir, err := findBinDir()
	if err != nil {
		return nil, err
	}
	e.binDir = dir
	if os.Geteuid() == 0 {
		e.asRoot = true
		u, err := user.Lookup(runAs)
		if err != nil {
			return nil, fmt.Errorf("running as root needs a %q user to run the server: %v", runAs, err)
		}
		e.uid, _ = strconv.Atoi(u.Uid)
		e.gid, _ = strconv.Atoi(u.Gid)
		if e.runuser, err = exec.LookPath("runuser"); err != nil {
			return nil, fmt.Errorf("running as root needs runuser (util-linux) to run the server as %q: %v", runAs, err)
		}
	}
	return e, nil
})

// findBinDir finds the PostgreSQL server binaries: `pg_config --bindir` when
// pg_config is on PATH and that directory has initdb, else the newest
// /usr/lib/postgresql/*/bin, else initdb's directory on PATH.
func findBinDir() (string, error) {
	if pgConfig, err := exec.LookPath("pg_config"); err == nil {
		if out, err := exec.Command(pgConfig, "--bindir").Output(); err == nil {
			if dir := strings.TrimSpace(string(out)); hasServerBinaries(dir) {
				return dir, nil
			}
		}
	}
	if dirs := debianBinDirs(); len(dirs) > 0 {
		return dirs[0].dir, nil
	}
	if initdb, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(initdb); err == nil {
			initdb = real
		}
		if dir := filepath.Dir(initdb); hasServerBinaries(dir) {
			return dir, nil
		}
	}
	return "", errors.New("no PostgreSQL server binaries (initdb, pg_ctl) found via pg_config, /usr/lib/postgresql/*/bin or PATH; run scripts/ensure-deps or set " + EnvURL)
}

type versionDir struct {
	major int
	dir   string
}

// debianBinDirs lists /usr/lib/postgresql/MAJOR/bin directories that hold
// the server binaries, newest first.
func debianBinDirs() []versionDir {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var out []versionDir
	for _, m := range matches {
		major, err := strconv.ParseFloat(filepath.Base(filepath.Dir(m)), 64)
		if err != nil || !hasServerBinaries(m) {
			continue
		}
		out = append(out, versionDir{int(major), m})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].major > out[j].major })
	return out
}

func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// binDirForMajor returns the local binaries of PostgreSQL major, or the
// default ones when that version is not installed ("" when none are).
func binDirForMajor(major int) string {
	for _, d := range debianBinDirs() {
		if d.major == major {
			return d.dir
		}
	}
	dir, _ := findBinDir()
	return dir
}

// cluster is a PostgreSQL cluster started by this process.
type cluster struct {
	srv  *Server
	env  *env
	base string // holds data/, server.log and the Unix socket

	stopOnce sync.Once
	watchdog *watchdog
}

var running struct {
	sync.Mutex
	clusters map[*cluster]bool
}

// noLocale is set once initdb has failed for want of the C.UTF-8 locale.
var noLocale atomic.Bool

// startCluster initializes and starts a cluster. Errors describe why, with
// the tail of the server log when the server was involved.
func startCluster(cfg *config) (_ *cluster, err error) {
	e, err := localEnv()
	if err != nil {
		return nil, err
	}
	if cfg.pgaudit {
		if err := checkPgaudit(e); err != nil {
			return nil, err
		}
	}
	base, err := makeBaseDir(e)
	if err != nil {
		return nil, err
	}
	c := &cluster{env: e, base: base}
	c.srv = &Server{
		Host:    "127.0.0.1",
		User:    "postgres",
		DataDir: filepath.Join(base, "data"),
		BinDir:  e.binDir,
		LogFile: filepath.Join(base, "server.log"),
		cluster: c,
	}
	// From here on the directory (and the server, once started) is the
	// watchdog's and stop's to remove.
	c.watchdog = startWatchdog(base, c.command("pg_ctl", "-D", c.srv.DataDir, "-m", "immediate", "stop").Args)
	running.Lock()
	if running.clusters == nil {
		running.clusters = map[*cluster]bool{}
	}
	running.clusters[c] = true
	running.Unlock()
	defer func() {
		if err != nil {
			c.stop()
		}
	}()

	if err := c.initdb(); err != nil {
		return nil, err
	}
	if err := c.writeConf(cfg); err != nil {
		return nil, err
	}
	if err := c.start(); err != nil {
		return nil, err
	}
	c.srv.base = url.URL{
		Scheme:   "postgres",
		User:     url.User(c.srv.User),
		Host:     net.JoinHostPort(c.srv.Host, strconv.Itoa(c.srv.Port)),
		RawQuery: "sslmode=disable",
	}
	if cfg.pgaudit {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		for _, step := range []struct{ db, sql string }{
			{"template1", "CREATE EXTENSION IF NOT EXISTS pgaudit"},
			{"postgres", "CREATE EXTENSION IF NOT EXISTS pgaudit; ALTER ROLE postgres SET pgaudit.log = 'all'"},
		} {
			if err := c.srv.exec(ctx, step.db, step.sql); err != nil {
				return nil, fmt.Errorf("setting up pgaudit in %s: %v%s", step.db, err, c.logTail())
			}
		}
	}
	return c, nil
}

// checkPgaudit checks that the pgaudit library is installed for e's server.
func checkPgaudit(e *env) error {
	libDir := filepath.Join(filepath.Dir(e.binDir), "lib")
	if out, err := exec.Command(filepath.Join(e.binDir, "pg_config"), "--pkglibdir").Output(); err == nil {
		libDir = strings.TrimSpace(string(out))
	}
	if _, err := os.Stat(filepath.Join(libDir, "pgaudit.so")); err != nil {
		return fmt.Errorf("pgaudit is not installed (%s/pgaudit.so missing); scripts/ensure-deps installs it", libDir)
	}
	return nil
}

// makeBaseDir creates the cluster's directory under os.TempDir(), owned by
// the account that runs the server. As root it falls back to /tmp when
// os.TempDir() is not reachable by that account.
func makeBaseDir(e *env) (string, error) {
	root := os.TempDir()
	if e.asRoot && !reachable(root, e.uid, e.gid) {
		root = "/tmp"
		if !reachable(root, e.uid, e.gid) {
			return "", fmt.Errorf("neither %s nor /tmp can be reached by the %q user", os.TempDir(), runAs)
		}
	}
	base, err := os.MkdirTemp(root, "pgtest-")
	if err != nil {
		return "", err
	}
	if e.asRoot {
		if err := os.Chown(base, e.uid, e.gid); err != nil {
			os.RemoveAll(base)
			return "", err
		}
	}
	return base, nil
}

// reachable reports whether uid/gid may traverse dir and all its parents.
func reachable(dir string, uid, gid int) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil {
			return false
		}
		owner, group, ok := fileOwner(fi)
		mode := fi.Mode().Perm()
		switch {
		case ok && owner == uid:
			if mode&0o100 == 0 {
				return false
			}
		case ok && group == gid:
			if mode&0o010 == 0 {
				return false
			}
		default:
			if mode&0o001 == 0 {
				return false
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// command builds a command running the PostgreSQL binary name, as the
// postgres user when this process is root. It runs in the cluster directory:
// the server account may not be allowed into the test's working directory.
func (c *cluster) command(name string, args ...string) *exec.Cmd {
	return c.commandContext(context.Background(), name, args...)
}

func (c *cluster) commandContext(ctx context.Context, name string, args ...string) *exec.Cmd {
	path := filepath.Join(c.env.binDir, name)
	var cmd *exec.Cmd
	if c.env.asRoot {
		cmd = exec.CommandContext(ctx, c.env.runuser, append([]string{"-u", runAs, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = c.base
	return cmd
}

func (c *cluster) initdb() error {
	for {
		args := []string{"-D", c.srv.DataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"}
		if noLocale.Load() {
			args = append(args, "--no-locale")
		} else {
			args = append(args, "--locale=C.UTF-8")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := c.commandContext(ctx, "initdb", args...)
		// TZ spares initdb its scan of the time zone database and gives
		// every cluster timezone = UTC; LC_ALL keeps its messages English.
		cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil {
			return nil
		}
		if !noLocale.Load() && bytes.Contains(bytes.ToLower(out), []byte("locale")) {
			noLocale.Store(true)
			os.RemoveAll(c.srv.DataDir)
			continue
		}
		return fmt.Errorf("initdb failed: %v\n%s", err, tail(out, 2000))
	}
}

// writeConf appends pgtest's settings and the options' to postgresql.conf.
func (c *cluster) writeConf(cfg *config) error {
	var b strings.Builder
	b.WriteString("\n# pgtest\n")
	set := func(k, v string) {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(v, "'", "''"))
	}
	if !cfg.fsync {
		set("fsync", "off")
		set("synchronous_commit", "off")
		set("full_page_writes", "off")
	}
	if cfg.pgaudit {
		set("shared_preload_libraries", "pgaudit")
	}
	for _, kv := range cfg.settings {
		set(kv[0], kv[1])
	}
	f, err := os.OpenFile(filepath.Join(c.srv.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// start starts the server on a free port, retrying with another port when
// the chosen one was taken meanwhile.
func (c *cluster) start() error {
	// Unix socket paths are limited to about 107 bytes; without room for
	// one, the server listens on TCP only.
	sockDir := c.base
	if len(sockDir)+len("/.s.PGSQL.65535.lock") > 100 {
		sockDir = ""
	}
	const attempts = 5
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		logStart := fileSize(c.srv.LogFile)
		opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s", port, shellword.Quote(sockDir))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := c.commandContext(ctx, "pg_ctl", "-D", c.srv.DataDir, "-l", c.srv.LogFile, "-w", "-t", "90", "-o", opts, "start")
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil {
			c.srv.Port = port
			return nil
		}
		log := readFrom(c.srv.LogFile, logStart)
		if attempt < attempts && (bytes.Contains(log, []byte("could not bind")) || bytes.Contains(log, []byte("already in use"))) {
			continue
		}
		return fmt.Errorf("pg_ctl start failed: %v\n%s%s", err, tail(out, 1000), c.logTail())
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// cleanupWith stops the cluster when t ends, showing the server log's tail
// first when t failed.
func (c *cluster) cleanupWith(t testing.TB) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pgtest: cluster %s:%d%s", c.srv.Host, c.srv.Port, c.logTail())
		}
		c.stop()
	})
}

// stop stops the server at once and removes its directory. It may be called
// more than once.
func (c *cluster) stop() {
	c.stopOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(c.srv.DataDir, "postmaster.pid")); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			_ = c.commandContext(ctx, "pg_ctl", "-D", c.srv.DataDir, "-m", "immediate", "-w", "stop").Run()
			cancel()
		}
		os.RemoveAll(c.base)
		c.watchdog.dismiss()
		running.Lock()
		delete(running.clusters, c)
		running.Unlock()
	})
}

// stopAll stops every cluster this process started.
func stopAll() {
	running.Lock()
	var cs []*cluster
	for c := range running.clusters {
		cs = append(cs, c)
	}
	running.Unlock()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.stop()
		}()
	}
	wg.Wait()
}

// logTail returns the end of the server log, introduced by a newline, or ""
// when there is none.
func (c *cluster) logTail() string {
	b, err := os.ReadFile(c.srv.LogFile)
	if err != nil || len(b) == 0 {
		return ""
	}
	return "\nserver log (" + c.srv.LogFile + ", tail):\n" + tail(b, 3000)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
		return "…\n" + string(b)
	}
	return string(b)
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func readFrom(path string, off int64) []byte {
	b, err := os.ReadFile(path)
	if err != nil || off > int64(len(b)) {
		return nil
	}
	return b[off:]
}
