package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// cluster is a throwaway PostgreSQL cluster started by the suite: its own
// initdb, its own port on 127.0.0.1, trust authentication for "postgres", and
// PostgreSQL's default durability (fsync, synchronous_commit and
// full_page_writes on), so that every commit costs what it costs in
// production. It is stopped (pg_ctl -m immediate) and removed by stop, and by
// a watchdog process if the suite dies without stopping it.
type cluster struct {
	name string
	base string // data/, server.log and the Unix socket
	data string
	log  string
	port int
	bin  string // PostgreSQL binaries
}

// pgEnv is how this machine runs PostgreSQL: its binaries, and as root the
// account that runs the server (initdb and postgres refuse to run as root).
type pgEnv struct {
	bin    string
	asRoot bool
	uid    int
	gid    int
}

func findPG() (*pgEnv, error) {
	e := &pgEnv{}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); fileExists(filepath.Join(dir, "initdb")) {
			e.bin = dir
		}
	}
	if e.bin == "" {
		dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Slice(dirs, func(i, j int) bool { return majorOf(dirs[i]) > majorOf(dirs[j]) })
		for _, d := range dirs {
			if fileExists(filepath.Join(d, "initdb")) {
				e.bin = d
				break
			}
		}
	}
	if e.bin == "" {
		return nil, errors.New("no PostgreSQL server binaries (initdb) found; run scripts/ensure-deps")
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs a postgres user to run the server: %v", err)
		}
		e.asRoot = true
		e.uid, _ = strconv.Atoi(u.Uid)
		e.gid, _ = strconv.Atoi(u.Gid)
	}
	return e, nil
}

func majorOf(dir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
	return v
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// command runs a PostgreSQL binary, as the postgres user when we are root.
func (e *pgEnv) command(ctx context.Context, dir, name string, args ...string) *exec.Cmd {
	path := filepath.Join(e.bin, name)
	var cmd *exec.Cmd
	if e.asRoot {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
	return cmd
}

// startCluster initialises and starts a cluster under work. settings are
// appended to postgresql.conf.
func startCluster(e *pgEnv, work, name string, settings [][2]string) (*cluster, error) {
	base := filepath.Join(work, name)
	if err := os.MkdirAll(base, 0o700); err != nil {
		return nil, err
	}
	if e.asRoot {
		if err := os.Chown(base, e.uid, e.gid); err != nil {
			return nil, err
		}
	}
	c := &cluster{name: name, base: base, data: filepath.Join(base, "data"), log: filepath.Join(base, "server.log"), bin: e.bin}
	startWatchdog(e, c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out []byte
	var err error
	for _, locale := range []string{"--locale=C.UTF-8", "--no-locale"} {
		os.RemoveAll(c.data)
		out, err = e.command(ctx, base, "initdb", "-D", c.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", locale).CombinedOutput()
		if err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("initdb %s: %v\n%s", name, err, out)
	}
	var conf strings.Builder
	conf.WriteString("\n# runbook bench: PostgreSQL's default durability (fsync, synchronous_commit, full_page_writes on)\n")
	for _, kv := range settings {
		fmt.Fprintf(&conf, "%s = '%s'\n", kv[0], kv[1])
	}
	f, err := os.OpenFile(filepath.Join(c.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	f.WriteString(conf.String())
	f.Close()
	for attempt := 0; ; attempt++ {
		if c.port, err = freePort(); err != nil {
			return nil, err
		}
		opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories='%s'", c.port, base)
		out, err = e.command(ctx, base, "pg_ctl", "-D", c.data, "-l", c.log, "-w", "-t", "120", "-o", opts, "start").CombinedOutput()
		if err == nil {
			break
		}
		if attempt == 3 {
			logTail, _ := os.ReadFile(c.log)
			return nil, fmt.Errorf("pg_ctl start %s: %v\n%s\n%s", name, err, out, tail(string(logTail), 2000))
		}
	}
	return c, nil
}

// startWatchdog stops the cluster and removes its directory once this process
// is gone, however it went (even SIGKILL).
func startWatchdog(e *pgEnv, c *cluster) {
	stop := fmt.Sprintf("%s/pg_ctl -D '%s' -m immediate -w stop", e.bin, c.data)
	if e.asRoot {
		stop = "runuser -u postgres -- " + stop
	}
	script := fmt.Sprintf(`while kill -0 %d 2>/dev/null; do sleep 2; done; if [ -f '%s/postmaster.pid' ]; then %s >/dev/null 2>&1; fi; rm -rf '%s'`,
		os.Getpid(), c.data, stop, c.base)
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err == nil {
		go cmd.Wait()
	}
}

func (c *cluster) stop(e *pgEnv) {
	if fileExists(filepath.Join(c.data, "postmaster.pid")) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		e.command(ctx, c.base, "pg_ctl", "-D", c.data, "-m", "immediate", "-w", "stop").Run()
		cancel()
	}
	os.RemoveAll(c.base)
}

// url is the connection URL of database db.
func (c *cluster) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// env is the libpq environment that points psql, pg_dump … at database db.
func (c *cluster) env(db string) []string {
	return []string{"PGHOST=127.0.0.1", "PGPORT=" + strconv.Itoa(c.port), "PGUSER=postgres", "PGDATABASE=" + db, "PGSSLMODE=disable"}
}

// exec runs SQL (several statements allowed) on database db.
func (c *cluster) exec(db, sql string) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.url(db))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.PgConn().Exec(ctx, sql).ReadAll()
	if err != nil {
		return fmt.Errorf("%s: %w\nSQL: %.300s", c.name, err, sql)
	}
	return nil
}

// value runs a query that returns one value and returns it as text.
func (c *cluster) value(db, sql string) (string, error) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.url(db))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	res := conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return "", fmt.Errorf("%s: %w\nSQL: %.300s", c.name, res.Err, sql)
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		return "", fmt.Errorf("%s: %d rows, want one value\nSQL: %.300s", c.name, len(res.Rows), sql)
	}
	return string(res.Rows[0][0]), nil
}

// checkpoint flushes the cluster's dirty buffers, so that a run does not
// pay for the checkpoint of the run before it.
func (c *cluster) checkpoint() error { return c.exec("postgres", "CHECKPOINT") }

// version is the server's version string.
func (c *cluster) version() string {
	v, _ := c.value("postgres", "SHOW server_version")
	return v
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
