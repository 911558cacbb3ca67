package executor_test

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runbookhq/runbook/internal/pgtest"
	"github.com/runbookhq/runbook/internal/redact"
)

// TestSecretsNeverLeak runs the real binary with a password in a connection
// URL and a secret param, both used on purpose everywhere a careless tool
// would leak them (SQL text, a child's environment echoed to stdout and
// stderr, pg_dump | pg_restore with conn:, error messages), reads the argv of
// every process while it runs, and scans stdout, stderr, the audit log and
// the state for both values in every encoding.
func TestSecretsNeverLeak(t *testing.T) {
	srv := pgtest.Shared(t)
	src := srv.NewDatabase(t)
	dst := srv.NewDatabase(t)
	const password = `Pa55:w/rd@?&=%"\x`
	const token = `tok-Zq9xSECRETx7`
	srv.Exec(t, "postgres", `DO $$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'leaky') THEN CREATE ROLE leaky LOGIN SUPERUSER; END IF; END $$`)
	srv.Exec(t, "postgres", `ALTER ROLE leaky PASSWORD `+quoteLiteral(password))
	withPassword := func(u string) string {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		pu.User = url.UserPassword("leaky", password)
		return pu.String()
	}
	srcURL, dstURL := withPassword(src), withPassword(dst)

	bin := buildBinary(t)
	dir := t.TempDir()
	rb := `version: 1
name: leak
params:
  source_url: {secret: true}
  target_url: {secret: true}
  api_token: {secret: true}
connections:
  source: ${{ params.source_url }}
  target: ${{ params.target_url }}
steps:
  - id: seed
    sql:
      on: source
      script: |
        CREATE TABLE t (token text);
        INSERT INTO t VALUES (${{ literal(params.api_token) }});
  - id: notice
    sql:
      on: source
      script: DO $$ BEGIN RAISE NOTICE 'token is ${{ params.api_token }}'; END $$
  - id: echo
    shell:
      run: |
        echo "stdout: $TOKEN $PGPASSFILE"; echo "stderr: $TOKEN" >&2
        cat "$PGPASSFILE"; sleep 0.5; echo done
      env: {TOKEN: '${{ params.api_token }}'}
      conn: source
      capture: stdout
  - id: copy
    shell:
      pipe:
        - cmd: [pg_dump, -Fc, --no-password]
          conn: source
        - cmd: [pg_restore, --no-owner, --no-password, -d, '${{ conn.target.database }}']
          conn: target
  - id: refuse-argv
    on_failure: continue
    shell: {run: 'echo ${{ params.api_token }}'}
  - id: fail
    sql: {on: target, script: "SELECT 1/0 AS ${{ ident(params.api_token) }}"}
`
	if err := os.WriteFile(filepath.Join(dir, "leak.yaml"), []byte(rb), 0o644); err != nil {
		t.Fatal(err)
	}
	vars := filepath.Join(dir, "secrets.yaml")
	if err := os.WriteFile(vars, []byte("source_url: '"+srcURL+"'\ntarget_url: '"+dstURL+"'\napi_token: "+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Watch every process's argv while the run goes on.
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var argvSeen []string
	seen := map[string]bool{}
	var wg sync.WaitGroup
	wg.Add(1)
	scans := 0
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			scans++
			procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
			for _, p := range procs {
				b, err := os.ReadFile(p)
				if err != nil || len(b) == 0 {
					continue
				}
				line := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
				mu.Lock()
				if !seen[line] {
					seen[line] = true
					argvSeen = append(argvSeen, line)
				}
				mu.Unlock()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	logPath := filepath.Join(dir, "audit.log")
	statePath := filepath.Join(dir, "state.json")
	cmd := exec.Command(bin, "run", "leak.yaml", "--vars", vars, "--state", statePath, "--log", logPath, "--log-format", "json")
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	cancel()
	wg.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("run: %v (want exit 1: the last step fails on purpose)\nstdout:\n%s\nstderr:\n%s", err, tail(stdout.String()), stderr.String())
	}

	// The run did what it was asked: the secrets were usable.
	if got := srv.QueryValue(t, pgtest.DatabaseName(t, dst), `SELECT token FROM t`); got != token {
		t.Errorf("the pipe did not copy the table (token %q)", got)
	}
	if !strings.Contains(stdout.String(), "cmd.stdout") || !strings.Contains(stdout.String(), "the command line would contain a secret") {
		t.Errorf("expected child output events and the argv refusal in the event stream")
	}

	forms := append(redact.Forms(password), redact.Forms(token)...)
	forms = append(forms, url.QueryEscape(password), url.PathEscape(password), url.UserPassword("leaky", password).String())
	check := func(what, text string) {
		for _, f := range forms {
			if len(f) >= 4 && strings.Contains(text, f) {
				t.Errorf("%s leaks a secret (form %q)", what, f)
			}
		}
	}
	check("stdout", stdout.String())
	check("stderr", stderr.String())
	logBytes, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	check("the audit log", string(logBytes))
	files, _ := filepath.Glob(filepath.Join(dir, "state.json*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		check("state file "+filepath.Base(f), string(b))
	}
	mu.Lock()
	t.Logf("%d distinct command lines observed in %d scans of /proc while running", len(argvSeen), scans)
	var children int
	for _, a := range argvSeen {
		if strings.Contains(a, "pg_dump ") || strings.Contains(a, "pg_restore ") || strings.HasPrefix(a, "bash -euo") {
			children++
		}
		check("a child's argv ("+strings.Fields(a)[0]+")", a)
	}
	mu.Unlock()
	t.Logf("argv of %d runbook children checked (bash, pg_dump, pg_restore)", children)
	// bash lives 0.5 s; pg_dump and pg_restore are quick and may be missed on
	// a loaded machine, but never both.
	if children < 2 {
		t.Errorf("saw %d of runbook's children while scanning (want bash and pg_dump or pg_restore): the scan proves little", children)
	}
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
