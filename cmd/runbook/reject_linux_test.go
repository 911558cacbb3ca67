package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runbookhq/runbook/internal/termtest"
)

// answering runs runbook on a pseudo-terminal in dir, typing each answer
// once the screen shows its prompt; it returns the exit code and the raw
// bytes written.
func answering(t *testing.T, dir string, answers [][2]string, args ...string) (int, string) {
	t.Helper()
	pty, tty, err := termtest.OpenPTY(40, 100)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer pty.Close()
	var mu sync.Mutex
	var raw bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 4096)
		for {
			n, err := pty.Read(buf)
			mu.Lock()
			raw.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	done := make(chan struct{})
	go func() {
		defer wg.Done()
		from := 0
		for _, a := range answers {
			for {
				mu.Lock()
				s := raw.String()
				mu.Unlock()
				if i := strings.Index(s[from:], a[0]); i >= 0 {
					from += i + len(a[0])
					break
				}
				select {
				case <-done:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
			pty.Write([]byte(a[1] + "\n"))
		}
	}()
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	code := Main(args, tty, tty, tty)
	os.Chdir(wd)
	close(done)
	tty.Close()
	wg.Wait()
	return code, raw.String()
}

// Answering no to a confirm prompt asks for a reason (again while it is
// empty) and rejects the step: exit 6, the reason and the operator in the
// audit log, the always step run.
func TestTerminalNoRejects(t *testing.T) {
	setTerm(t, "xterm-256color", true)
	dir := writeRunbook(t, `version: 1
name: terminal-no
steps:
  - id: gate
    confirm: Is the application in maintenance mode?
  - id: after
    shell: {run: "echo after"}
  - id: cleanup
    always: true
    shell: {run: "echo cleanup"}
`)
	code, raw := answering(t, dir, [][2]string{
		{"Type yes to continue, or no to reject: ", "no"},
		{"Reason for rejecting (recorded in the audit log): ", ""},
		{"Reason for rejecting (recorded in the audit log): ", "maintenance mode is not on"},
	}, "run", "rb.yaml", "--state", "st.json", "--log", "audit.log", "--operator", "carol")
	if code != 6 {
		t.Fatalf("exit %d, want 6\n%s", code, raw)
	}
	log, err := os.ReadFile(filepath.Join(dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"event":"confirm.rejected","by":"carol","how":"terminal"`, `"reason":"maintenance mode is not on"`,
		`"step":"cleanup","status":"succeeded"`, `"outcome":"rejected"`} {
		if !strings.Contains(string(log), want) {
			t.Errorf("the audit log lacks %s:\n%s", want, log)
		}
	}
	if strings.Contains(string(log), `"step":"after","status"`) {
		t.Errorf("the step after the rejected gate ran")
	}
}
