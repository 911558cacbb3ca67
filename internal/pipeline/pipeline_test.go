//go:build linux

package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func sh(name, script string) Stage {
	return Stage{Name: name, Argv: []string{"bash", "-c", script}}
}

func cmd(argv ...string) Stage { return Stage{Argv: argv} }

// modes are the three ways stage 0 can be connected to stage 1.
var modes = []struct {
	name  string
	count bool
	mode  pumpMode
}{
	{"direct", false, pumpSplice},
	{"splice", true, pumpSplice},
	{"copy", true, pumpCopy},
}

// withMode runs f with the pump mode set; tests using it must not be parallel.
func withMode(t testing.TB, m pumpMode) {
	old := currentPumpMode
	currentPumpMode = m
	t.Cleanup(func() { currentPumpMode = old })
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type lines struct {
	mu     sync.Mutex
	stdout []string
	stderr map[int][]string
}

func (l *lines) opts(o Options) Options {
	l.stderr = map[int][]string{}
	o.OnStdoutLine = func(s string) { l.stdout = append(l.stdout, s) }
	o.OnStderrLine = func(i int, s string) { l.stderr[i] = append(l.stderr[i], s) }
	return o
}

func TestRunSingleStage(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name       string
		stage      Stage
		stdin      string
		wantErr    string // "" for success
		wantStdout []string
		wantStderr []string
		wantCode   int
	}{
		{name: "success", stage: cmd("true")},
		{name: "failure", stage: sh("", "exit 7"), wantErr: "stage 1 (bash) exited with status 7", wantCode: 7},
		{name: "named", stage: sh("script", "exit 2"), wantErr: "stage 1 (script) exited with status 2", wantCode: 2},
		{name: "stdout and stderr", stage: sh("", "echo out1; echo err1 >&2; echo out2"), wantStdout: []string{"out1", "out2"}, wantStderr: []string{"err1"}},
		{name: "stdin reader", stage: cmd("cat"), stdin: "a\nb\n", wantStdout: []string{"a", "b"}},
		{name: "env", stage: Stage{Argv: []string{"bash", "-c", "echo $FOO"}, Env: []string{"PATH=/usr/bin:/bin", "FOO=bar"}}, wantStdout: []string{"bar"}},
		{name: "empty env", stage: Stage{Argv: []string{"/usr/bin/env"}, Env: []string{}}},
		{name: "dir", stage: Stage{Argv: []string{"pwd"}, Dir: dir}, wantStdout: []string{dir}},
		{name: "killed by own signal", stage: sh("", "kill -USR1 $$"), wantErr: "stage 1 (bash) killed by signal user defined signal 1", wantCode: -1},
		{name: "run as bash -euo pipefail", stage: cmd("bash", "-euo", "pipefail", "-c", "false | true; echo unreachable"), wantErr: "stage 1 (bash) exited with status 1", wantCode: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l lines
			opt := l.opts(Options{})
			if tt.stdin != "" {
				opt.Stdin = strings.NewReader(tt.stdin)
			}
			res, err := Run(testCtx(t), []Stage{tt.stage}, opt)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			} else {
				var pe *Error
				if !errors.As(err, &pe) || err.Error() != tt.wantErr || pe.Stage != 0 {
					t.Fatalf("Run error = %v, want %q", err, tt.wantErr)
				}
			}
			if got := res.Stages[0].ExitCode; got != tt.wantCode {
				t.Errorf("ExitCode = %d, want %d", got, tt.wantCode)
			}
			if res.Stages[0].Pid == 0 || res.Stages[0].Duration <= 0 {
				t.Errorf("stage result: %+v", res.Stages[0])
			}
			if !slices.Equal(l.stdout, tt.wantStdout) {
				t.Errorf("stdout lines = %q, want %q", l.stdout, tt.wantStdout)
			}
			if !slices.Equal(l.stderr[0], tt.wantStderr) {
				t.Errorf("stderr lines = %q, want %q", l.stderr[0], tt.wantStderr)
			}
		})
	}
}

func TestStdoutWriterAndFile(t *testing.T) {
	var buf bytes.Buffer
	res, err := Run(testCtx(t), []Stage{sh("", "printf 'x%.0s' {1..1000}")}, Options{Stdout: &buf})
	if err != nil || buf.Len() != 1000 || res.StdoutBytes != 1000 {
		t.Fatalf("err %v, %d bytes, StdoutBytes %d", err, buf.Len(), res.StdoutBytes)
	}

	in, err := os.Open("/etc/hostname")
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	want, _ := os.ReadFile("/etc/hostname")
	buf.Reset()
	if _, err := Run(testCtx(t), []Stage{cmd("cat")}, Options{Stdin: in, Stdout: &buf}); err != nil || buf.String() != string(want) {
		t.Fatalf("stdin from a file: err %v, got %q", err, buf.String())
	}

	f, err := os.Create(t.TempDir() + "/out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err = Run(testCtx(t), []Stage{cmd("echo", "to file")}, Options{Stdout: f})
	if err != nil {
		t.Fatal(err)
	}
	if res.StdoutBytes != 0 {
		t.Errorf("an *os.File should be handed to the child, yet %d bytes passed through", res.StdoutBytes)
	}
	if b, _ := os.ReadFile(f.Name()); string(b) != "to file\n" {
		t.Errorf("file holds %q", b)
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	w.n++
	return 0, errors.New("disk full")
}

func TestStdoutWriteError(t *testing.T) {
	w := &failWriter{}
	res, err := Run(testCtx(t), []Stage{cmd("head", "-c", "1000000", "/dev/zero")}, Options{Stdout: w})
	if err == nil || !strings.Contains(err.Error(), "writing stdout: disk full") {
		t.Fatalf("err = %v", err)
	}
	if res.Stages[0].ExitCode != 0 || res.StdoutBytes != 1000000 || w.n != 1 {
		t.Errorf("stage %+v, StdoutBytes %d, writes %d: the stage should finish, drained", res.Stages[0], res.StdoutBytes, w.n)
	}
}

func TestThreeStages(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			withMode(t, m.mode)
			var out bytes.Buffer
			res, err := Run(testCtx(t), []Stage{
				cmd("printf", `b\na\nc\n`),
				cmd("sort"),
				cmd("tr", "a-z", "A-Z"),
			}, Options{Stdout: &out, CountBytes: m.count})
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != "A\nB\nC\n" {
				t.Errorf("stdout %q", out.String())
			}
			if m.count && res.Bytes != 6 {
				t.Errorf("Bytes = %d, want 6", res.Bytes)
			}
			if !m.count && res.Bytes != 0 {
				t.Errorf("Bytes = %d without counting", res.Bytes)
			}
			if len(res.Stages) != 3 || res.Stages[0].Name != "printf" || res.Stages[2].Name != "tr" {
				t.Errorf("stages %+v", res.Stages)
			}
		})
	}
}

func TestPipefail(t *testing.T) {
	tests := []struct {
		name       string
		stages     []Stage
		wantStage  int
		wantMsg    string
		wantFailed []int
		wantStdout []string
		check      func(t *testing.T, res Result)
	}{
		{
			name:       "producer fails, consumer ok",
			stages:     []Stage{sh("producer", "echo x; exit 3"), cmd("cat")},
			wantStage:  0,
			wantMsg:    "stage 1 (producer) exited with status 3",
			wantFailed: []int{0},
			wantStdout: []string{"x"},
		},
		{
			name:       "producer ok, consumer fails",
			stages:     []Stage{cmd("true"), cmd("false")}, // echo x | false could die of SIGPIPE
			wantStage:  1,
			wantMsg:    "stage 2 (false) exited with status 1",
			wantFailed: []int{1},
		},
		{
			name:       "producer ok, consumer reads all then fails",
			stages:     []Stage{cmd("seq", "100000"), sh("restore", "cat >/dev/null; exit 1")},
			wantStage:  1,
			wantMsg:    "stage 2 (restore) exited with status 1",
			wantFailed: []int{1},
		},
		{
			name:       "producer dies mid-stream, consumer exits 0",
			stages:     []Stage{sh("pg_dump", "head -c 100000 /dev/zero; kill -KILL $$"), cmd("wc", "-c")},
			wantStage:  0,
			wantMsg:    "stage 1 (pg_dump) killed by signal killed",
			wantFailed: []int{0},
			wantStdout: []string{"100000"},
			check: func(t *testing.T, res Result) {
				if res.Stages[1].ExitCode != 0 {
					t.Errorf("consumer: %+v", res.Stages[1])
				}
			},
		},
		{
			// As bash with pipefail reports 141 for yes: a failure, on purpose.
			name:       "SIGPIPE: yes | head -1",
			stages:     []Stage{cmd("yes"), cmd("head", "-1")},
			wantStage:  0,
			wantMsg:    "stage 1 (yes) killed by signal broken pipe",
			wantFailed: []int{0},
			wantStdout: []string{"y"},
		},
		{
			// The consumer's failure is the cause; the producer's SIGPIPE is
			// its consequence, so the consumer is named.
			name:       "consumer fails, producer dies of SIGPIPE",
			stages:     []Stage{cmd("yes"), sh("pg_restore", "head -c 10 >/dev/null; exit 4")},
			wantStage:  1,
			wantMsg:    "stage 2 (pg_restore) exited with status 4; also stage 1 (yes) killed by signal broken pipe",
			wantFailed: []int{0, 1},
		},
		{
			// 141 is how bash reports a SIGPIPE inside its own pipeline.
			name:       "status 141 is treated as SIGPIPE",
			stages:     []Stage{sh("inner", "exit 141"), sh("b", "cat >/dev/null; exit 5")},
			wantStage:  1,
			wantMsg:    "stage 2 (b) exited with status 5; also stage 1 (inner) exited with status 141",
			wantFailed: []int{0, 1},
		},
		{
			name:       "every stage fails: first in order",
			stages:     []Stage{sh("a", "exit 2"), sh("b", "cat >/dev/null; exit 3"), sh("c", "cat; exit 4")},
			wantStage:  0,
			wantMsg:    "stage 1 (a) exited with status 2; also stage 2 (b) exited with status 3; also stage 3 (c) exited with status 4",
			wantFailed: []int{0, 1, 2},
		},
	}
	for _, m := range modes {
		for _, tt := range tests {
			t.Run(m.name+"/"+tt.name, func(t *testing.T) {
				withMode(t, m.mode)
				var l lines
				res, err := Run(testCtx(t), tt.stages, l.opts(Options{CountBytes: m.count}))
				var pe *Error
				if !errors.As(err, &pe) {
					t.Fatalf("Run error = %v, want *Error", err)
				}
				if pe.Stage != tt.wantStage || err.Error() != tt.wantMsg || !slices.Equal(pe.Failed, tt.wantFailed) {
					t.Errorf("error = %q (stage %d, failed %v), want %q (stage %d, failed %v)",
						err, pe.Stage, pe.Failed, tt.wantMsg, tt.wantStage, tt.wantFailed)
				}
				if pe.Result.Name != res.Stages[pe.Stage].Name || pe.Result.ExitCode != res.Stages[pe.Stage].ExitCode {
					t.Errorf("Error.Result %+v differs from Result.Stages", pe.Result)
				}
				if pe.Cause != nil {
					t.Errorf("Cause = %v without cancellation", pe.Cause)
				}
				if !slices.Equal(l.stdout, tt.wantStdout) {
					t.Errorf("stdout %q, want %q", l.stdout, tt.wantStdout)
				}
				if tt.check != nil {
					tt.check(t, res)
				}
			})
		}
	}
}

func TestStartError(t *testing.T) {
	tests := []struct {
		name      string
		stages    []Stage
		wantStage int
		wantMsg   string
		wantIs    error
	}{
		{"first stage not found", []Stage{cmd("no-such-command-xyz"), cmd("cat")}, 0,
			`stage 1 (no-such-command-xyz) could not start: exec: "no-such-command-xyz": executable file not found in $PATH`, exec.ErrNotFound},
		{"middle stage not found", []Stage{cmd("sleep", "100"), {Name: "restore", Argv: []string{"no-such-command-xyz"}}, cmd("cat")}, 1,
			`stage 2 (restore) could not start: exec: "no-such-command-xyz": executable file not found in $PATH`, exec.ErrNotFound},
		{"not in the stage's PATH", []Stage{cmd("sleep", "100"), {Argv: []string{"cat"}, Env: []string{"PATH=/nonexistent"}}}, 1,
			`stage 2 (cat) could not start: exec: "cat": executable file not found in $PATH`, exec.ErrNotFound},
		{"bad path", []Stage{cmd("sleep", "100"), cmd("/nonexistent/cat")}, 1,
			`stage 2 (cat) could not start: fork/exec /nonexistent/cat: no such file or directory`, syscall.ENOENT},
		{"bad dir", []Stage{cmd("sleep", "100"), {Argv: []string{"cat"}, Dir: "/nonexistent"}}, 1,
			`stage 2 (cat) could not start: chdir /nonexistent: no such file or directory`, syscall.ENOENT},
		{"empty argv", []Stage{cmd("sleep", "100"), {Name: "nothing"}}, 1,
			`stage 2 (nothing) could not start: empty command`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			res, err := Run(testCtx(t), tt.stages, Options{CountBytes: true, OnStderrLine: func(int, string) {}})
			var pe *Error
			if !errors.As(err, &pe) || pe.Stage != tt.wantStage || err.Error() != tt.wantMsg {
				t.Fatalf("error = %v, want %q", err, tt.wantMsg)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(err, %v) = false", tt.wantIs)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Run took %v: started stages were not terminated", d)
			}
			for i := range tt.stages {
				s := res.Stages[i]
				switch {
				case i < tt.wantStage:
					if s.Signal != "terminated" || s.Pid == 0 {
						t.Errorf("stage %d should have been terminated: %+v", i, s)
					}
				case i > tt.wantStage:
					if !errors.Is(s.StartErr, ErrNotStarted) || s.Pid != 0 {
						t.Errorf("stage %d should not have started: %+v", i, s)
					}
				}
			}
			if tt.wantStage > 0 {
				if pg := res.Stages[0].Pid; len(liveMembers(pg)) > 0 {
					t.Errorf("group %d still has members %v", pg, liveMembers(pg))
				}
			}
		})
	}
}

// liveMembers lists the pids of the non-zombie processes in process group pgid.
func liveMembers(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, pg, ok := procStat(e.Name())
		if ok && pg == pgid && state != 'Z' {
			out = append(out, pid)
		}
	}
	return out
}

// waitMembers waits until the group pgid() has at least n live members. It
// runs outside the test goroutine, so it reports with Errorf.
func waitMembers(t *testing.T, pgid func() int, n int) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if pg := pgid(); pg != 0 && len(liveMembers(pg)) >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("group never reached %d members", n)
}

// pidLine parses the first stdout line as the group id (stage 0 prints $$).
type pidLine struct {
	mu  sync.Mutex
	pid int
}

func (p *pidLine) onLine(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pid == 0 {
		p.pid, _ = strconv.Atoi(s)
	}
}

func (p *pidLine) get() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

func TestCancelKillsWholeGroup(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			withMode(t, m.mode)
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			var pl pidLine
			stages := []Stage{
				sh("script", "echo $$ >&2; sleep 100 & sleep 100; wait"),
				sh("consumer", "sleep 100 & cat; wait"),
			}
			go func() {
				waitMembers(t, pl.get, 5) // 2 bashes, 3 sleeps
				cancel()
			}()
			start := time.Now()
			res, err := Run(ctx, stages, Options{
				CountBytes:   m.count,
				OnStderrLine: func(_ int, s string) { pl.onLine(s) },
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Stage != 0 || pe.Cause != context.Canceled {
				t.Fatalf("err = %#v", err)
			}
			if want := "interrupted (context canceled): stage 1 (script) killed by signal terminated"; err.Error() != want {
				t.Errorf("message %q, want %q", err, want)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("took %v", d)
			}
			for i, s := range res.Stages {
				if s.Signal != "terminated" {
					t.Errorf("stage %d: %+v", i, s)
				}
			}
			if pg := res.Stages[0].Pid; pg != pl.get() {
				t.Errorf("stage 0 pid %d, its $$ %d", pg, pl.get())
			}
			if live := liveMembers(res.Stages[0].Pid); len(live) != 0 {
				t.Errorf("processes of the group survive: %v", live)
			}
		})
	}
}

func TestKillGraceEscalates(t *testing.T) {
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	var pl pidLine
	go func() {
		waitMembers(t, pl.get, 3)
		cancel()
	}()
	start := time.Now()
	// SIGTERM is ignored by bash and inherited as ignored by both sleeps.
	res, err := Run(ctx, []Stage{sh("stubborn", `trap "" TERM; echo $$; sleep 100 & sleep 100; wait`)}, Options{
		OnStdoutLine: pl.onLine,
		KillGrace:    300 * time.Millisecond,
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 10*time.Second {
		t.Errorf("took %v, want about KillGrace", d)
	}
	if s := res.Stages[0]; s.Signal != "killed" || s.ExitCode != -1 {
		t.Errorf("stage: %+v", s)
	}
	if live := liveMembers(res.Stages[0].Pid); len(live) != 0 {
		t.Errorf("processes of the group survive: %v", live)
	}
}

func TestTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, []Stage{cmd("sleep", "30"), cmd("cat")}, Options{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if want := "interrupted (context deadline exceeded): stage 1 (sleep) killed by signal terminated"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	if res.Elapsed < 150*time.Millisecond {
		t.Errorf("Elapsed %v", res.Elapsed)
	}
}

func TestCancelCause(t *testing.T) {
	ctx, cancel := context.WithCancelCause(testCtx(t))
	sig := errors.New("received interrupt")
	time.AfterFunc(100*time.Millisecond, func() { cancel(sig) })
	_, err := Run(ctx, []Stage{cmd("sleep", "30")}, Options{})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, sig) {
		t.Fatalf("err = %v", err)
	}
	if want := "interrupted (context canceled: received interrupt): stage 1 (sleep) killed by signal terminated"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
}

func TestCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := Run(ctx, []Stage{cmd("true")}, Options{})
	if !errors.Is(err, context.Canceled) || res.Stages[0].Pid != 0 {
		t.Fatalf("err %v, %+v", err, res.Stages[0])
	}
}

func TestCancelAfterSuccessIsSuccess(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Run(ctx, []Stage{cmd("true")}, Options{})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
}

func TestNoStages(t *testing.T) {
	if _, err := Run(context.Background(), nil, Options{}); err == nil {
		t.Fatal("no error for no stages")
	}
}

func TestStderrLines(t *testing.T) {
	const n = 3000
	// Each stage floods stderr while data flows; lines must come back whole,
	// tagged with their stage, in order.
	script := func(i int) string {
		return fmt.Sprintf(`x=$(printf '%%*s' 200 '' | tr ' ' x); for ((k = 1; k <= %d; k++)); do echo "s%d line $k ${x:0:$((k %% 200))}" >&2; done; cat`, n, i)
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			withMode(t, m.mode)
			var l lines
			_, err := Run(testCtx(t), []Stage{sh("a", script(0)), sh("b", script(1)), sh("c", script(2))},
				l.opts(Options{Stdin: strings.NewReader("payload\n"), CountBytes: m.count}))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(l.stdout, []string{"payload"}) {
				t.Errorf("stdout %q", l.stdout)
			}
			for i := range 3 {
				got := l.stderr[i]
				if len(got) != n {
					t.Fatalf("stage %d: %d lines, want %d", i, len(got), n)
				}
				for k, line := range got {
					want := fmt.Sprintf("s%d line %d %s", i, k+1, strings.Repeat("x", (k+1)%200))
					if line != want {
						t.Fatalf("stage %d line %d = %q, want %q", i, k, line, want)
					}
				}
			}
		})
	}
}

func TestStderrLongLinesAndEdges(t *testing.T) {
	var l lines
	script := `head -c 200000 /dev/zero | tr '\0' a >&2; echo >&2; printf 'crlf\r\n\nlast' >&2`
	_, err := Run(testCtx(t), []Stage{sh("", script)}, l.opts(Options{}))
	if err != nil {
		t.Fatal(err)
	}
	got := l.stderr[0]
	var lens []int
	for _, s := range got[:4] {
		lens = append(lens, len(s))
	}
	if !slices.Equal(lens, []int{MaxLine, MaxLine, MaxLine, 200000 - 3*MaxLine}) {
		t.Errorf("long line pieces %v", lens)
	}
	if !slices.Equal(got[4:], []string{"crlf", "", "last"}) {
		t.Errorf("tail %q", got[4:])
	}
}

func TestLineSplitter(t *testing.T) {
	euro := "€" // 3 bytes
	long := strings.Repeat("a", MaxLine-1) + euro + "b"
	tests := []struct {
		name   string
		chunks []string
		want   []string
	}{
		{"simple", []string{"a\nb\n"}, []string{"a", "b"}},
		{"split across chunks", []string{"ab", "c\nd", "e\n"}, []string{"abc", "de"}},
		{"no final newline", []string{"a\nb"}, []string{"a", "b"}},
		{"empty lines", []string{"\n\n"}, []string{"", ""}},
		{"crlf", []string{"a\r\nb\r", "\n"}, []string{"a", "b"}},
		{"exactly MaxLine", []string{strings.Repeat("x", MaxLine) + "\n"}, []string{strings.Repeat("x", MaxLine)}},
		{"MaxLine+1", []string{strings.Repeat("x", MaxLine+1) + "\n"}, []string{strings.Repeat("x", MaxLine), "x"}},
		{"cut on rune boundary", []string{long + "\n"}, []string{strings.Repeat("a", MaxLine-1), euro + "b"}},
		{"cut on rune boundary, byte by byte", strings.Split(long+"\n", ""), []string{strings.Repeat("a", MaxLine-1), euro + "b"}},
		{"long without newline", []string{strings.Repeat("y", 2*MaxLine+5)}, []string{strings.Repeat("y", MaxLine), strings.Repeat("y", MaxLine), "yyyyy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			ls := &lineSplitter{emit: func(s string) { got = append(got, s) }}
			for _, c := range tt.chunks {
				ls.write([]byte(c))
			}
			ls.flush()
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %d lines %.80q, want %d lines %.80q", len(got), got, len(tt.want), tt.want)
			}
		})
	}
}

func TestCountBytes(t *testing.T) {
	const size = 10_000_000
	for _, m := range modes[1:] {
		t.Run(m.name, func(t *testing.T) {
			withMode(t, m.mode)
			var l lines
			res, err := Run(testCtx(t), []Stage{
				cmd("head", "-c", strconv.Itoa(size), "/dev/urandom"),
				cmd("wc", "-c"),
			}, l.opts(Options{CountBytes: true}))
			if err != nil {
				t.Fatal(err)
			}
			if res.Bytes != size {
				t.Errorf("Bytes = %d, want %d", res.Bytes, size)
			}
			if !slices.Equal(l.stdout, []string{strconv.Itoa(size)}) {
				t.Errorf("wc says %q", l.stdout)
			}
			if res.StdoutBytes != int64(len(strconv.Itoa(size))+1) {
				t.Errorf("StdoutBytes = %d", res.StdoutBytes)
			}
		})
	}
	t.Run("single stage counts its stdout", func(t *testing.T) {
		res, err := Run(testCtx(t), []Stage{cmd("head", "-c", "12345", "/dev/zero")}, Options{CountBytes: true})
		if err != nil || res.Bytes != 12345 {
			t.Fatalf("err %v, Bytes %d", err, res.Bytes)
		}
	})
	t.Run("content intact", func(t *testing.T) {
		withMode(t, pumpSplice)
		var out bytes.Buffer
		_, err := Run(testCtx(t), []Stage{cmd("seq", "1", "200000"), cmd("cat")}, Options{CountBytes: true, Stdout: &out})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := exec.Command("seq", "1", "200000").Output()
		if !bytes.Equal(out.Bytes(), want) {
			t.Error("bytes changed on the way")
		}
	})
}

func TestProgress(t *testing.T) {
	for _, m := range modes[1:] {
		t.Run(m.name, func(t *testing.T) {
			withMode(t, m.mode)
			var calls []Progress
			res, err := Run(testCtx(t), []Stage{
				sh("slow", "for i in $(seq 20); do head -c 1000 /dev/zero; sleep 0.02; done"),
				cmd("cat"),
			}, Options{
				CountBytes:    true,
				ProgressEvery: 30 * time.Millisecond,
				OnProgress:    func(p Progress) { calls = append(calls, p) },
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Bytes != 20000 {
				t.Errorf("Bytes %d", res.Bytes)
			}
			if len(calls) < 3 {
				t.Fatalf("progress called %d times", len(calls))
			}
			for i := 1; i < len(calls); i++ {
				if calls[i].Bytes < calls[i-1].Bytes || calls[i].Elapsed <= calls[i-1].Elapsed {
					t.Errorf("progress goes backwards: %+v then %+v", calls[i-1], calls[i])
				}
			}
			last := calls[len(calls)-1]
			if last.Bytes == 0 || last.Bytes > res.Bytes || last.Rate() <= 0 {
				t.Errorf("last progress %+v (rate %v)", last, last.Rate())
			}
		})
	}
	if r := (Progress{Bytes: 10}).Rate(); r != 0 {
		t.Errorf("Rate with no elapsed time = %v", r)
	}
	if r := (Progress{Bytes: 3 << 20, Elapsed: 2 * time.Second}).Rate(); r != 1.5*(1<<20) {
		t.Errorf("Rate = %v", r)
	}
}

func TestLeftoverHoldingPipes(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			withMode(t, m.mode)
			var l lines
			start := time.Now()
			// The background sleep keeps stdout and stderr open after bash exits.
			res, err := Run(testCtx(t), []Stage{sh("bg", "sleep 30 & echo started"), cmd("head", "-1")},
				l.opts(Options{WaitDelay: 200 * time.Millisecond, CountBytes: m.count}))
			pg := res.Stages[0].Pid
			if pg != 0 {
				defer syscall.Kill(-pg, syscall.SIGKILL) // the leftover sleep
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
			if !slices.Equal(l.stdout, []string{"started"}) {
				t.Errorf("stdout %q", l.stdout)
			}
		})
	}
}

func TestCancelDuringDrainKillsLeftovers(t *testing.T) {
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	var l lines
	opt := l.opts(Options{WaitDelay: 30 * time.Second})
	opt.OnStdoutLine = func(string) { time.AfterFunc(300*time.Millisecond, cancel) }
	start := time.Now()
	res, err := Run(ctx, []Stage{sh("bg", "sleep 30 & echo started")}, opt)
	if err != nil {
		t.Fatalf("the stage succeeded before the cancellation, yet: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
	if live := liveMembers(res.Stages[0].Pid); len(live) != 0 {
		t.Errorf("leftovers survive: %v", live)
	}
}

func TestStdinTerminalRefused(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer ptmx.Close()
	_, err = Run(testCtx(t), []Stage{cmd("cat")}, Options{Stdin: ptmx})
	if err == nil || !strings.Contains(err.Error(), "stdin must not be a terminal") {
		t.Fatalf("err = %v", err)
	}
}

// A descendant holding only the pipe between stage 0 and stage 1 does not keep
// Run waiting once both stages have exited, counted or not.
func TestLeftoverHoldingInnerPipe(t *testing.T) {
	for _, m := range modes[:2] { // the copying pump only notices at WaitDelay
		t.Run(m.name, func(t *testing.T) {
			withMode(t, m.mode)
			var out bytes.Buffer
			start := time.Now()
			res, err := Run(testCtx(t), []Stage{sh("bg", "sleep 30 & echo started"), cmd("head", "-1")},
				Options{Stdout: &out, WaitDelay: 20 * time.Second, CountBytes: m.count})
			if pg := res.Stages[0].Pid; pg != 0 {
				defer syscall.Kill(-pg, syscall.SIGKILL)
			}
			if err != nil || out.String() != "started\n" {
				t.Fatalf("err %v, stdout %q", err, out.String())
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

// TestParentDeathKillsStages kills a process running a pipeline with SIGKILL
// and checks that its stage dies too (Pdeathsig).
func TestParentDeathKillsStages(t *testing.T) {
	if os.Getenv("PIPELINE_HELPER") == "1" {
		_, _ = Run(context.Background(), []Stage{sh("victim", "echo $$; exec sleep 100")},
			Options{OnStdoutLine: func(s string) { fmt.Println(s) }})
		os.Exit(0)
	}
	helper := exec.Command(os.Args[0], "-test.run=^TestParentDeathKillsStages$")
	helper.Env = append(os.Environ(), "PIPELINE_HELPER=1")
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		helper.Process.Kill()
		t.Fatalf("helper: %v", err)
	}
	stagePid, _ := strconv.Atoi(strings.TrimSpace(line))
	if err := helper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		state, _, ok := procStat(strconv.Itoa(stagePid))
		if !ok || state == 'Z' {
			return
		}
		if time.Now().After(deadline) {
			syscall.Kill(stagePid, syscall.SIGKILL)
			t.Fatalf("stage %d survived its parent", stagePid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func BenchmarkPipe(b *testing.B) {
	size := int64(256 << 20)
	if s := os.Getenv("PIPELINE_BENCH_BYTES"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		size = v
	}
	stages := []Stage{cmd("head", "-c", strconv.FormatInt(size, 10), "/dev/zero"), cmd("cat")}
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			withMode(b, m.mode)
			b.SetBytes(size)
			for b.Loop() {
				res, err := Run(context.Background(), stages, Options{CountBytes: m.count})
				if err != nil {
					b.Fatal(err)
				}
				if m.count && res.Bytes != size {
					b.Fatalf("Bytes %d", res.Bytes)
				}
			}
		})
	}
}
