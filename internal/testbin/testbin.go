// Package testbin builds the runbook command and runs it as a real process,
// for the tests that kill it, interrupt it or read what it printed (the crash
// harnesses of executor and runbooks), and reads the JSON events runbook
// prints, whether it ran as a process or in the test's own.
package testbin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var built struct {
	once sync.Once
	path string
	err  error
}

// Build returns the path of the runbook binary, built once per test process
// (the build cache makes it quick) into a directory of its own.
func Build(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "runbook-bin-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "runbook")
		out, err := exec.Command("go", "build", "-o", built.path, "github.com/runbookhq/runbook/cmd/runbook").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// Cmd says how Run runs the binary.
type Cmd struct {
	// Dir is the working directory.
	Dir string
	// Env is added to the test's environment.
	Env []string
	// Kill, when set, is called in a goroutine with the process group id
	// (the binary runs in a group of its own, with its children) and a
	// channel closed when the process has ended; it may kill the group.
	Kill func(pgid int, done <-chan struct{})
	// Timeout bounds the run (default 3 minutes).
	Timeout time.Duration
}

// Run runs bin with args and returns its exit code (-1 when a signal killed
// it) and its standard output and error, combined.
func Run(t testing.TB, bin string, c Cmd, args ...string) (int, string) {
	t.Helper()
	if c.Timeout == 0 {
		c.Timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), c.Env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	killed := make(chan struct{})
	if c.Kill != nil {
		go func() {
			defer close(killed)
			c.Kill(cmd.Process.Pid, done)
		}()
	} else {
		close(killed)
	}
	err := cmd.Wait()
	close(done)
	<-killed
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return ee.ExitCode(), out.String()
	case errors.As(err, &ee):
		return -1, out.String()
	}
	t.Fatalf("run: %v\n%s", err, out.String())
	return 0, ""
}

// KillAfter returns a Cmd.Kill that kills the process group with SIGKILL
// after d, unless the process ended before.
func KillAfter(d time.Duration) func(pgid int, done <-chan struct{}) {
	return func(pgid int, done <-chan struct{}) {
		select {
		case <-time.After(d):
			syscall.Kill(-pgid, syscall.SIGKILL)
		case <-done:
		}
	}
}

// KillWhenActive returns a Kill that watches the server through conn and
// kills the process group as soon as another session runs a statement whose
// text is LIKE pattern; *pid is then that session's backend. It gives up
// after a minute.
func KillWhenActive(conn *pgx.Conn, pattern string, pid *int32) func(pgid int, done <-chan struct{}) {
	return func(pgid int, done <-chan struct{}) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for ctx.Err() == nil {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if conn.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
				WHERE datname = current_database() AND state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()`, pattern).Scan(pid) == nil {
				syscall.Kill(-pgid, syscall.SIGKILL)
				return
			}
		}
	}
}

// Tail returns the last n bytes of s, for failure messages.
func Tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// Events parses runbook's JSON console output, one event per line; a line
// that is not JSON fails the test.
func Events(t testing.TB, out string) []map[string]any {
	t.Helper()
	var events []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("console line is not JSON: %q", line)
		}
		events = append(events, ev)
	}
	return events
}

// Statuses returns each step's final status from its step.end and step.skip
// events.
func Statuses(events []map[string]any) map[string]string {
	m := map[string]string{}
	for _, ev := range events {
		switch ev["event"] {
		case "step.end":
			m[ev["step"].(string)] = ev["status"].(string)
		case "step.skip":
			m[ev["step"].(string)] = "skipped"
		}
	}
	return m
}
