package executor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/runbookhq/runbook/internal/redact"
)

// A child process with conn: reaches its connection's password through a libpq
// password file (PGPASSFILE) that no process outlives and that is never on a
// disk:
//
//   - On Linux the file is a memfd (memfd_create): an anonymous file in memory,
//     mode 0600, sealed against writes once filled. runbook holds one per
//     connection and each child inherits it as descriptor childPassFD, with
//     PGPASSFILE=/dev/fd/10. libpq stat()s and fopen()s that path: the memfd is
//     a regular file with owner-only permissions, as libpq requires (a pipe
//     would not do: libpq ignores a password file that is not a plain file).
//     The memory is freed when the last process holding it ends, whether it
//     exits or is killed with SIGKILL: there is nothing to clean up.
//   - Where memfd_create is not available (other systems, a kernel or a
//     sandbox that refuses it) the file is written in a private directory,
//     TMPDIR/runbook-pass-XXXX (0700), next to a lock file that runbook holds
//     locked (flock) for as long as it runs. A normal exit removes the
//     directory; after a SIGKILL the lock dies with the process, and the next
//     runbook to start (any run or resume, as the same user) removes every
//     such directory whose lock nobody holds (sweepPassDirs).
//
// The descriptor is 10 rather than 3: shell scripts use 3 to 9 for their own
// redirections (exec 3>&1), which would hide the password file from a libpq
// tool run after them; bash allocates {var} descriptors from 10 up, skipping
// one in use.
const childPassFD = 10

// passDirPrefix names the fallback directories (see above).
const passDirPrefix = "runbook-pass-"

// passLine is a libpq password file line for any host, port and database.
func passLine(user, password string) []byte {
	return []byte("*:*:*:" + redact.PassfileEscape(user) + ":" + redact.PassfileEscape(password) + "\n")
}

// secretFile is one connection's password file: an open memfd the children
// inherit, or a path in the fallback directory.
type secretFile struct {
	f    *os.File
	path string
}

// childEnv returns the environment entry and the inherited files that give a
// child the password file.
func (s *secretFile) childEnv() (string, []*os.File) {
	if s.f == nil {
		return "PGPASSFILE=" + s.path, nil
	}
	files := make([]*os.File, childPassFD-2)
	files[childPassFD-3] = s.f
	return "PGPASSFILE=/dev/fd/" + strconv.Itoa(childPassFD), files
}

func (s *secretFile) close() {
	if s.f != nil {
		s.f.Close()
	}
}

// errNoMemfd reports that this system has no memfd_create.
var errNoMemfd = errors.New("memfd_create is not available")

// forceFallback makes newSecretFile use the fallback directory (for tests).
var forceFallback = false

// passDir is the fallback directory of one runbook process.
type passDir struct {
	dir  string
	lock *os.File
}

// newSecretFile makes a password file for the connection name: a memfd when
// the system has them, otherwise a file in *dir (created on first use).
func newSecretFile(name string, content []byte, dir **passDir) (*secretFile, error) {
	if !forceFallback {
		f, err := memPassfile(name, content)
		if err == nil {
			return &secretFile{f: f}, nil
		}
		if !errors.Is(err, errNoMemfd) {
			return nil, fmt.Errorf("password file for connection %s: %w", name, err)
		}
	}
	if *dir == nil {
		d, err := openPassDir(os.TempDir())
		if err != nil {
			return nil, fmt.Errorf("password file for connection %s: %w", name, err)
		}
		*dir = d
	}
	p := filepath.Join((*dir).dir, name+".pgpass")
	if err := os.WriteFile(p, content, 0o600); err != nil {
		return nil, fmt.Errorf("password file for connection %s: %w", name, err)
	}
	return &secretFile{path: p}, nil
}

// openPassDir creates this process's fallback directory under tmp and locks it.
func openPassDir(tmp string) (*passDir, error) {
	dir, err := os.MkdirTemp(tmp, passDirPrefix)
	if err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		if err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			lock.Close()
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &passDir{dir: dir, lock: lock}, nil
}

// remove deletes the directory, then lets its lock go.
func (d *passDir) remove() {
	os.RemoveAll(d.dir)
	d.lock.Close()
}

// staleAge is how old a fallback directory without a lock file must be to be
// removed: younger, its process may be about to create the lock.
const staleAge = time.Minute

// sweepPassDirs removes the fallback directories under tmp that belong to
// this user and whose process is gone (their lock is free): what a runbook
// killed with SIGKILL left behind. It returns the directories removed.
// Errors are ignored: the sweep is a courtesy to the disk, and the next start
// tries again.
func sweepPassDirs(tmp string) []string {
	matches, _ := filepath.Glob(filepath.Join(tmp, passDirPrefix+"*"))
	var removed []string
	for _, dir := range matches {
		fi, err := os.Lstat(dir)
		if err != nil || !fi.IsDir() || !ownedByMe(fi) || !strings.HasPrefix(filepath.Base(dir), passDirPrefix) {
			continue
		}
		lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|syscall.O_NOFOLLOW, 0)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if time.Since(fi.ModTime()) < staleAge {
				continue
			}
		case err != nil:
			continue
		default:
			if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
				lock.Close() // its process is alive
				continue
			}
		}
		if os.RemoveAll(dir) == nil {
			removed = append(removed, dir)
		}
		if lock != nil {
			lock.Close()
		}
	}
	return removed
}

// ownedByMe reports whether fi belongs to this process's user.
func ownedByMe(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Getuid()
}
