// Package scripts holds the tests of the shell scripts next to them.
package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeMachine lays out a PostgreSQL installation under a temporary root, as
// Debian's packages would, and a PATH whose apt-cache, apt-get and sudo are
// stand-ins: apt-cache answers with the given candidate version, apt-get
// records its arguments (one call a line) and installs nothing.
type fakeMachine struct {
	root, lib, share, usrbin, bin, browsers, calls string
}

func newFakeMachine(t *testing.T, candidate string) *fakeMachine {
	t.Helper()
	root := t.TempDir()
	m := &fakeMachine{root: root, lib: filepath.Join(root, "lib"), share: filepath.Join(root, "share"),
		usrbin: filepath.Join(root, "usrbin"), bin: filepath.Join(root, "bin"), browsers: filepath.Join(root, "browsers"),
		calls: filepath.Join(root, "apt-get.calls")}
	for _, d := range []string{m.lib, m.share, m.usrbin, m.bin, m.browsers} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	policy := "postgresql:\n  Installed: (none)\n  Candidate: " + candidate + "\n  Version table:\n"
	m.script(t, "apt-cache", "[ \"$1 $2\" = 'policy postgresql' ] || exit 100\ncat <<'EOF'\n"+policy+"EOF\n")
	m.script(t, "apt-get", "echo \"$*\" >> "+shellQuote(m.calls)+"\n")
	m.script(t, "sudo", "exec \"$@\"\n")
	return m
}

func (m *fakeMachine) script(t *testing.T, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(m.bin, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

// install puts files of an installed package in place: "server 15",
// "pgaudit 15", "postgis 15", "chromium" (no version: a browser on the
// fake PATH).
func (m *fakeMachine) install(t *testing.T, what, major string) {
	t.Helper()
	var path string
	switch what {
	case "server":
		path = filepath.Join(m.lib, major, "bin", "initdb")
	case "pgaudit":
		path = filepath.Join(m.lib, major, "lib", "pgaudit.so")
	case "postgis":
		path = filepath.Join(m.share, major, "extension", "postgis.control")
	case "chromium":
		path = filepath.Join(m.browsers, "chromium")
	case "pgcopydb":
		path = filepath.Join(m.usrbin, "pgcopydb")
	default:
		t.Fatalf("unknown package kind %q", what)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// run runs scripts/ensure-deps with args on the fake machine and returns its
// exit code, standard output and standard error.
func (m *fakeMachine) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	script, err := filepath.Abs("ensure-deps")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", append([]string{script}, args...)...)
	cmd.Env = []string{"PATH=" + m.bin + ":/usr/bin:/bin", "ENSURE_DEPS_PGLIB=" + m.lib, "ENSURE_DEPS_PGSHARE=" + m.share,
		"ENSURE_DEPS_BROWSERPATH=" + m.bin + ":" + m.browsers, "ENSURE_DEPS_BINDIR=" + m.usrbin, "LC_ALL=C"}
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

func (m *fakeMachine) aptCalls(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(m.calls)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestEnsureDepsPrint checks the package list that one run installs: the
// major version comes from the installed server, else from apt's candidate,
// and the extensions follow that version.
func TestEnsureDepsPrint(t *testing.T) {
	for _, tc := range []struct {
		name      string
		candidate string
		installed [][2]string
		want      []string
		args      []string
	}{
		{"fresh machine: everything, for the candidate's version", "16+257", nil,
			[]string{"postgresql-16", "postgresql-16-pgaudit", "postgresql-16-postgis-3", "chromium"}, nil},
		{"server installed: its version wins over the candidate", "17+260", [][2]string{{"server", "15"}, {"chromium", ""}},
			[]string{"postgresql-15-pgaudit", "postgresql-15-postgis-3"}, nil},
		{"two servers: the newest", "15+248", [][2]string{{"server", "14"}, {"server", "16"}, {"pgaudit", "14"}, {"postgis", "14"}, {"chromium", ""}},
			[]string{"postgresql-16-pgaudit", "postgresql-16-postgis-3"}, nil},
		{"only postgis missing", "15+248", [][2]string{{"server", "15"}, {"pgaudit", "15"}, {"chromium", ""}},
			[]string{"postgresql-15-postgis-3"}, nil},
		{"only the browser missing", "15+248", [][2]string{{"server", "15"}, {"pgaudit", "15"}, {"postgis", "15"}},
			[]string{"chromium"}, nil},
		{"everything there", "15+248", [][2]string{{"server", "15"}, {"pgaudit", "15"}, {"postgis", "15"}, {"chromium", ""}},
			nil, nil},
		{"extension files without a server do not decide the version", "16", [][2]string{{"pgaudit", "15"}, {"postgis", "15"}},
			[]string{"postgresql-16", "postgresql-16-pgaudit", "postgresql-16-postgis-3", "chromium"}, nil},
		{"pgcopydb missing: only --bench asks for it", "15+248", [][2]string{{"server", "15"}, {"pgaudit", "15"}, {"postgis", "15"}, {"chromium", ""}},
			nil, nil},
		{"--bench: pgcopydb missing", "15+248", [][2]string{{"server", "15"}, {"pgaudit", "15"}, {"postgis", "15"}, {"chromium", ""}},
			[]string{"pgcopydb"}, []string{"--bench"}},
		{"--bench on a fresh machine: everything in one list", "16+257", nil,
			[]string{"postgresql-16", "postgresql-16-pgaudit", "postgresql-16-postgis-3", "chromium", "pgcopydb"}, []string{"--bench"}},
		{"--bench, pgcopydb installed", "15+248", [][2]string{{"server", "15"}, {"pgaudit", "15"}, {"postgis", "15"}, {"chromium", ""}, {"pgcopydb", ""}},
			nil, []string{"--bench"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFakeMachine(t, tc.candidate)
			for _, p := range tc.installed {
				m.install(t, p[0], p[1])
			}
			code, out, errOut := m.run(t, append([]string{"--print"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			got := strings.Fields(out)
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("--print: %q, want %q", got, tc.want)
			}
			if calls := m.aptCalls(t); len(calls) != 0 {
				t.Errorf("--print ran apt-get: %q", calls)
			}
		})
	}
}

// TestEnsureDepsInstallsInOneCall: on a machine without PostgreSQL, one run
// calls apt-get install once, with the server and both extensions of the
// same version and the browser (the bug was a second run being needed for
// pgaudit).
func TestEnsureDepsInstallsInOneCall(t *testing.T) {
	m := newFakeMachine(t, "15+248+deb12u2")
	code, _, errOut := m.run(t)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	calls := m.aptCalls(t)
	var installs []string
	for _, c := range calls {
		if strings.HasPrefix(c, "install ") {
			installs = append(installs, c)
		}
	}
	want := "install -y -qq postgresql-15 postgresql-15-pgaudit postgresql-15-postgis-3 chromium"
	if len(installs) != 1 || installs[0] != want {
		t.Errorf("apt-get calls: %q, want one %q", calls, want)
	}
	if !strings.Contains(errOut, "installing postgresql-15 postgresql-15-pgaudit postgresql-15-postgis-3 chromium") {
		t.Errorf("stderr does not say what it installs: %q", errOut)
	}

	// Nothing missing: nothing run.
	m2 := newFakeMachine(t, "15+248")
	for _, k := range []string{"server", "pgaudit", "postgis", "chromium"} {
		m2.install(t, k, "15")
	}
	if code, _, errOut := m2.run(t); code != 0 || len(m2.aptCalls(t)) != 0 {
		t.Errorf("with everything installed: exit %d, apt-get calls %q (%s)", code, m2.aptCalls(t), errOut)
	}
}

// No server and no candidate package: a clear error, exit 1, nothing installed.
func TestEnsureDepsNoCandidate(t *testing.T) {
	m := newFakeMachine(t, "(none)")
	code, out, errOut := m.run(t)
	if code != 1 || !strings.Contains(errOut, "no candidate postgresql package") {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 naming the missing candidate", code, out, errOut)
	}
	for _, c := range m.aptCalls(t) {
		if strings.HasPrefix(c, "install") {
			t.Errorf("installed something: %q", c)
		}
	}
	if code, _, _ := m.run(t, "--bogus"); code != 2 {
		t.Errorf("--bogus: exit %d, want 2", code)
	}
}
