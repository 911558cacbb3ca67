package executor_test

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runbookhq/runbook/internal/pgtest"
	"github.com/runbookhq/runbook/internal/redact"
	"github.com/runbookhq/runbook/internal/testbin"
)

// TestPasswordNeverOnDisk runs the real binary against a cluster where the
// role must give its password (scram-sha-256), so libpq in psql, pg_dump and
// pg_restore really read the password file runbook hands them, and kills it
// with SIGKILL while a shell step with conn: runs. No file under TMPDIR, the
// working directory or the state's holds the password in any form, then or
// after the next resume; the resume reaches the server the same way.
func TestPasswordNeverOnDisk(t *testing.T) {
	srv := pgtest.NewCluster(t, pgtest.WithHBA("host all secretive 127.0.0.1/32 scram-sha-256"))
	if srv.External() {
		t.Skip("needs a cluster of its own: its pg_hba.conf must demand the password")
	}
	// Made at run time, so that no file holds it by chance (this test's
	// binary holds its constants); : \ and ' are escaped in a password file.
	password := fmt.Sprintf(`pa:ss\wo'rd-%d`, time.Now().UnixNano())
	srv.Exec(t, "postgres", `CREATE ROLE secretive LOGIN SUPERUSER PASSWORD `+quoteLiteral(password))
	withPassword := func(u string) string {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		pu.User = url.UserPassword("secretive", password)
		return pu.String()
	}
	srcURL, dstURL := withPassword(srv.NewDatabase(t)), withPassword(srv.NewDatabase(t))
	srv.Exec(t, pgtest.DatabaseName(t, srcURL), `CREATE TABLE t AS SELECT 42 AS answer`)

	bin := testbin.Build(t)
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "holding")
	rb := `version: 1
name: passfile
params:
  source_url: {secret: true, env: SOURCE_URL}
  target_url: {secret: true, env: TARGET_URL}
connections:
  source: ${{ params.source_url }}
  target: ${{ params.target_url }}
steps:
  - id: copy
    idempotent: true
    shell:
      pipe:
        - cmd: [pg_dump, -w, -Fc, -t, t]
          conn: source
        - cmd: [pg_restore, -w, --clean, --if-exists, --no-owner, -d, '${{ conn.target.database }}']
          conn: target
  - id: hold
    idempotent: true
    shell:
      conn: target
      run: |
        exec 3>&1
        psql -w -Atc "SELECT 'auth-ok:' || current_user || ':' || answer FROM t" >&3
        if [ ! -e "$MARKER.resumed" ]; then touch "$MARKER"; sleep 60; fi
`
	if err := os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(rb), 0o644); err != nil {
		t.Fatal(err)
	}
	c := testbin.Cmd{Dir: dir, Env: []string{"TMPDIR=" + tmp, "MARKER=" + marker, "SOURCE_URL=" + srcURL, "TARGET_URL=" + dstURL}}
	c.Kill = func(pgid int, done <-chan struct{}) {
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := os.Stat(marker); err == nil {
				syscall.Kill(-pgid, syscall.SIGKILL)
				return
			}
		}
	}
	args := []string{"rb.yaml", "--state", "st.json", "--log", "audit.log", "--log-format", "json"}
	code, out := testbin.Run(t, bin, c, append([]string{"run"}, args...)...)
	if code != -1 {
		t.Fatalf("run: exit %d, want killed while step hold runs\n%s", code, tail(out))
	}
	if !strings.Contains(out, "auth-ok:secretive:42") {
		t.Fatalf("psql did not log in with the password, after pg_dump | pg_restore copied the table:\n%s", tail(out))
	}
	forms := redact.Forms(password)
	scan := func(when string) {
		// dir holds the runbook's TMPDIR, the state and the audit log.
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err != nil || !fi.Mode().IsRegular() {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil
			}
			for _, f := range forms {
				if bytes.Contains(b, []byte(f)) {
					t.Errorf("%s: %s holds the password (form %q)", when, p, f)
					break
				}
			}
			return nil
		})
	}
	scan("after SIGKILL")

	if err := os.WriteFile(marker+".resumed", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c.Kill = nil
	code, out = testbin.Run(t, bin, c, append([]string{"resume"}, args...)...)
	if code != 0 {
		t.Fatalf("resume: exit %d\n%s", code, tail(out))
	}
	if !strings.Contains(out, "auth-ok:secretive:42") {
		t.Errorf("the resumed step did not log in with the password:\n%s", tail(out))
	}
	scan("after resume")
	if entries, _ := os.ReadDir(tmp); len(entries) > 0 {
		t.Errorf("TMPDIR is not empty after the resume: %v", entries)
	}
}
