package executor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/runbookhq/runbook/internal/atomicfile"
	"github.com/runbookhq/runbook/internal/exitcode"
)

// FileStore keeps a run's state in files beside each other (docs/state.md):
// the snapshot PATH (JSON, written atomically: temp file, fsync, rename,
// fsync of the directory; replaced with the journal emptied through
// PATH.next, see replace), the journal PATH.journal (one JSON record per
// line, each durable one fdatasynced), blobs PATH.KEY, and the lock
// PATH.lock (an flock that dies with its process).
type FileStore struct {
	path    string
	lock    *os.File
	journal *os.File
	jEnd    int64 // where the next journal record goes
	jCap    int64 // the journal's preallocated (zero-filled, fsynced) length
}

// NewFileStore returns the file store of the state at path.
func NewFileStore(path string) *FileStore { return &FileStore{path: path} }

// Where implements Store.
func (s *FileStore) Where() string { return s.path }

// Lock implements Store: an OS file lock that dies with its process. A
// second run or resume on the same state exits 4.
func (s *FileStore) Lock() error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	f, err := os.OpenFile(s.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("state lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		holder := ""
		if b, err := os.ReadFile(s.path + ".lock"); err == nil && len(b) > 0 {
			holder = " (" + strings.TrimSpace(string(b)) + ")"
		}
		return exitcode.With(exitcode.Refused, fmt.Errorf("state %s is locked by another runbook process%s: wait for it to finish, or stop it", s.path, holder))
	}
	host, _ := os.Hostname()
	f.Truncate(0)
	fmt.Fprintf(f, "pid %d on %s since %s\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	s.lock = f
	return nil
}

// Holder implements Store.
func (s *FileStore) Holder() (bool, string) {
	f, err := os.Open(s.path + ".lock")
	if err != nil {
		return false, ""
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(s.path + ".lock")
		return true, strings.TrimSpace(string(b))
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false, ""
}

// Read implements Store.
func (s *FileStore) Read() ([]byte, io.ReadCloser, error) {
	b, err := os.ReadFile(s.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	j, err := os.Open(s.path + ".journal")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	// A snapshot being replaced (see replace): PATH.next beside an empty
	// journal is the snapshot.
	if next, nerr := os.ReadFile(s.path + ".next"); nerr == nil && journalEmpty(j) {
		b = next
	}
	if b == nil || j == nil {
		if j != nil {
			j.Close()
		}
		return b, nil, nil
	}
	// The journal is preallocated with zeros: its records end at the first
	// NUL byte (a record never contains one: JSON escapes it).
	return b, readCloser{untilNUL{j}, j}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// untilNUL reads r up to its first NUL byte.
type untilNUL struct{ r io.Reader }

func (u untilNUL) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	if i := bytes.IndexByte(p[:n], 0); i >= 0 {
		return i, io.EOF
	}
	return n, err
}

// journalChunk is how much journal is preallocated at a time.
const journalChunk = 4 << 20

// zeros is what growJournal writes: never written to, shared, allocated by
// the first run that needs it (not by every command at start).
var zeros = sync.OnceValue(func() []byte { return make([]byte, 1<<20) })

// journalEmpty reports whether a journal holds no record (nil: there is
// none), and rewinds it.
func journalEmpty(j *os.File) bool {
	if j == nil {
		return true
	}
	var b [1]byte
	n, _ := j.ReadAt(b[:], 0)
	return n == 0 || b[0] == 0
}

// replace makes snapshot the state's snapshot with an empty journal, so that
// a crash at any moment leaves the old snapshot with its journal or the new
// one with none: never the new snapshot with the old journal, whose records
// follow the old seal and would fail the integrity check. The new snapshot
// is made durable as PATH.next, then the journal emptied (by empty, which
// makes that durable), then PATH.next renamed over PATH; Read takes PATH.next
// for the snapshot when it finds it beside an empty journal.
func (s *FileStore) replace(snapshot []byte, empty func() error) error {
	if err := atomicfile.Write(s.path+".next", snapshot); err != nil {
		return err
	}
	if err := empty(); err != nil {
		return err
	}
	if err := os.Rename(s.path+".next", s.path); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(s.path))
}

// Create implements Store: the snapshot and an empty journal, atomically
// (replace).
//
// The journal is preallocated: zero-filled and fsynced a chunk at a time,
// records written in place after one another. A durable record then needs
// only fdatasync, which flushes the record's data and nothing else: the
// file's size and blocks are already on disk, so no filesystem journal
// commit is needed (the same reason PostgreSQL preallocates its WAL). It
// costs about half a full fsync of an appended record (docs/performance.md).
func (s *FileStore) Create(snapshot []byte) error {
	return s.replace(snapshot, func() error {
		if s.journal != nil {
			s.journal.Close()
		}
		j, err := os.OpenFile(s.path+".journal", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("state journal: %w", err)
		}
		s.journal, s.jEnd, s.jCap = j, 0, 0
		// Zero-filled and fsynced: the truncation is durable with it.
		return s.growJournal(journalChunk)
	})
}

// growJournal zero-fills the journal to at least n bytes, in whole chunks,
// and fsyncs it, size and blocks.
func (s *FileStore) growJournal(n int64) error {
	end := (n + journalChunk - 1) / journalChunk * journalChunk
	zeros := zeros()
	for off := s.jCap; off < end; off += int64(len(zeros)) {
		if _, err := s.journal.WriteAt(zeros[:min(int64(len(zeros)), end-off)], off); err != nil {
			return fmt.Errorf("state journal: %w", err)
		}
	}
	if err := s.journal.Sync(); err != nil {
		return fmt.Errorf("state journal: %w", err)
	}
	s.jCap = end
	return nil
}

// Append implements Store.
func (s *FileStore) Append(rec []byte, durable bool) error {
	if s.journal == nil {
		return errors.New("state journal: not open")
	}
	n := int64(len(rec)) + 1
	if s.jEnd+n > s.jCap {
		if err := s.growJournal(s.jEnd + n); err != nil {
			return err
		}
	}
	// rec's newline: written with it, one write.
	line := append(rec, '\n')
	if _, err := s.journal.WriteAt(line, s.jEnd); err != nil {
		return fmt.Errorf("state journal: %w", err)
	}
	s.jEnd += n
	if durable {
		// Correctness of fdatasync here: a durable record needs its own
		// bytes and every earlier record's on disk, and the file's size
		// and block map to read them back. fdatasync flushes all of the
		// file's dirty data (every record written so far, durable or not);
		// size and blocks were made durable by growJournal's fsync before
		// any record went into them. Loading stops at the first NUL: the
		// zeros after the last record, or a hole that a crash left among
		// records written after the last flush — on whose strength nothing
		// was done.
		if err := datasync(s.journal); err != nil {
			return fmt.Errorf("state journal: %w", err)
		}
	}
	return nil
}

// Compact implements Store: the snapshot replaced and the journal emptied,
// atomically (replace).
func (s *FileStore) Compact(snapshot []byte) error {
	var errs []error
	if s.journal != nil {
		errs = append(errs, s.journal.Sync())
	}
	err := s.replace(snapshot, func() error {
		if s.journal == nil {
			return nil
		}
		s.jEnd, s.jCap = 0, 0
		if err := s.journal.Truncate(0); err != nil {
			return err
		}
		return s.journal.Sync()
	})
	return errors.Join(append(errs, err)...)
}

// blobPath is where a blob of key lives: beside the snapshot.
func (s *FileStore) blobPath(key string) string {
	return s.path + "." + strings.NewReplacer("/", ".", string(filepath.Separator), ".").Replace(key)
}

// PutBlob implements Store: written atomically (temp file, fsync, rename,
// fsync of the directory). The reference is the file's name, relative to the
// state's directory, so that an archived run keeps its blobs.
func (s *FileStore) PutBlob(key string, write func(w io.Writer) error) (string, error) {
	p := s.blobPath(key)
	if err := atomicfile.WriteWith(p, write); err != nil {
		return "", err
	}
	return filepath.Base(p), nil
}

// OpenBlob implements Store.
func (s *FileStore) OpenBlob(ref string) (io.ReadCloser, error) {
	p := ref
	if !filepath.IsAbs(p) && filepath.Dir(p) == "." {
		p = filepath.Join(filepath.Dir(s.path), ref)
	}
	return os.Open(p)
}

// Archive implements Store: the snapshot, the journal and every blob move
// into the directory PATH.SUFFIX, under their own names.
func (s *FileStore) Archive(suffix string) (string, error) {
	dir := s.path + "." + suffix
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	base := filepath.Base(s.path)
	entries, err := os.ReadDir(filepath.Dir(s.path))
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || (name != base && !strings.HasPrefix(name, base+".")) || name == base+".lock" {
			continue
		}
		if err := os.Rename(filepath.Join(filepath.Dir(s.path), name), filepath.Join(dir, name)); err != nil {
			return "", err
		}
	}
	return dir, atomicfile.SyncDir(filepath.Dir(s.path))
}

// Close implements Store.
func (s *FileStore) Close() error {
	var err error
	if s.journal != nil {
		err = s.journal.Close()
		s.journal = nil
	}
	if s.lock != nil {
		os.Remove(s.lock.Name())
		s.lock.Close()
		s.lock = nil
	}
	return err
}
