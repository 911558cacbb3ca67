package executor

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

func TestPassLineEscapes(t *testing.T) {
	if got, want := string(passLine(`al:ice`, `pa:ss\wo`)), `*:*:*:al\:ice:pa\:ss\\wo`+"\n"; got != want {
		t.Errorf("passLine = %q, want %q", got, want)
	}
}

// TestSecretFileInMemory checks the password file a child inherits on Linux:
// a sealed, owner-only regular file in memory at /dev/fd/10, readable by a
// real child, absent from every directory.
func TestSecretFileInMemory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("memfd_create is Linux's")
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	content := passLine("alice", "s3cret-Zq9")
	var dir *passDir
	sf, err := newSecretFile("db", content, &dir)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.close()
	if sf.f == nil || dir != nil {
		t.Fatalf("not a memfd: %+v (fallback dir %v)", sf, dir)
	}
	fi, err := sf.f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want a regular file 0600 (libpq ignores anything else)", fi.Mode())
	}
	if _, err := sf.f.WriteAt([]byte("x"), 0); err == nil {
		t.Error("the file is not sealed against writes")
	}
	kv, files := sf.childEnv()
	if kv != "PGPASSFILE=/dev/fd/10" || len(files) != childPassFD-2 || files[childPassFD-3] != sf.f {
		t.Fatalf("childEnv = %q, %d files", kv, len(files))
	}
	for i, f := range files[:childPassFD-3] {
		if f != nil {
			t.Errorf("file %d is not nil", i)
		}
	}
	// A child that redirects 3 to 9 for itself still reads it, twice.
	cmd := exec.Command("bash", "-c", `exec 3>&1 4>&1; cat "${PGPASSFILE}"; cat "${PGPASSFILE}"; stat -L -c %a "${PGPASSFILE}"`)
	cmd.Env = append(os.Environ(), kv)
	cmd.ExtraFiles = files
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if want := string(content) + string(content) + "600\n"; string(out) != want {
		t.Errorf("child read %q, want %q", out, want)
	}
	if n := filesContaining(t, tmp, "s3cret-Zq9"); n > 0 {
		t.Errorf("%d files under TMPDIR hold the password", n)
	}
}

// TestSecretFileFallback checks the directory used where memfd_create is not
// available: private, removed on close.
func TestSecretFileFallback(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	forceFallback = true
	defer func() { forceFallback = false }()
	var dir *passDir
	sf, err := newSecretFile("db", passLine("alice", "s3cret-Zq9"), &dir)
	if err != nil {
		t.Fatal(err)
	}
	if sf.f != nil || dir == nil || filepath.Dir(sf.path) != dir.dir || filepath.Dir(dir.dir) != tmp {
		t.Fatalf("not the fallback: %+v in %+v", sf, dir)
	}
	for _, p := range []string{dir.dir, sf.path} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s: mode %v, want owner-only", p, perm)
		}
	}
	if kv, files := sf.childEnv(); kv != "PGPASSFILE="+sf.path || files != nil {
		t.Errorf("childEnv = %q, %v", kv, files)
	}
	// A live directory is not swept.
	if removed := sweepPassDirs(tmp); len(removed) != 0 {
		t.Errorf("swept the live directory: %v", removed)
	}
	dir.remove()
	if _, err := os.Stat(dir.dir); !os.IsNotExist(err) {
		t.Errorf("directory left after remove: %v", err)
	}
}

// TestSweepPassDirs checks that the sweep removes exactly the fallback
// directories whose process is gone.
func TestSweepPassDirs(t *testing.T) {
	tmp := t.TempDir()
	mk := func(name string, lock bool, age time.Duration) string {
		d := filepath.Join(tmp, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "db.pgpass"), []byte("*:*:*:u:pw\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if lock {
			if err := os.WriteFile(filepath.Join(d, "lock"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		old := time.Now().Add(-age)
		os.Chtimes(d, old, old)
		return d
	}
	killed := mk(passDirPrefix+"killed", true, 0)                 // lock free: its process died
	noLockOld := mk(passDirPrefix+"nolock-old", false, time.Hour) // died before locking
	noLockNew := mk(passDirPrefix+"nolock-new", false, 0)         // may be locking right now
	other := mk("runbook-other", true, time.Hour)                 // not ours to touch
	live, err := openPassDir(tmp)                                 // a running process's
	if err != nil {
		t.Fatal(err)
	}
	defer live.remove()
	// Held by another process, not only by another descriptor of this one.
	held := mk(passDirPrefix+"held", true, time.Hour)
	holder := exec.Command("flock", "-x", filepath.Join(held, "lock"), "sleep", "30")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	waitLocked(t, filepath.Join(held, "lock"))

	removed := sweepPassDirs(tmp)
	for _, d := range []string{killed, noLockOld} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s: not removed (%v)", filepath.Base(d), err)
		}
	}
	for _, d := range []string{noLockNew, other, live.dir, held} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s: removed, but it was not stale", filepath.Base(d))
		}
	}
	if len(removed) != 2 {
		t.Errorf("removed %v, want the 2 stale directories", removed)
	}
}

// waitLocked waits until another process holds the lock on path.
func waitLocked(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		f.Close()
		if err != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("flock(1) did not take the lock")
}

// filesContaining counts the regular files under dir that contain s.
func filesContaining(t *testing.T, dir, s string) int {
	t.Helper()
	n := 0
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(s)) {
				t.Logf("%s holds it", p)
				n++
			}
		}
		return nil
	})
	return n
}
