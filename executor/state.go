package executor

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/jsonstr"
	"github.com/runbookhq/runbook/schema"
)

// StateFormat is the version of the state file's format (docs/state.md).
const StateFormat = 1

// Step statuses (docs/state.md).
const (
	Pending   = "pending"
	Running   = "running"
	Succeeded = "succeeded"
	Failed    = "failed"
	Skipped   = "skipped"
)

// State is a run's durable record. It lives in two files: a snapshot (PATH,
// JSON, written atomically: temp file, fsync, rename, fsync of the directory)
// and a journal beside it (PATH.journal, one JSON record per line, each fsynced
// before the work it describes moves on). Loading applies the journal to the
// snapshot; a torn last line (a crash mid-write) is ignored, because nothing
// was done on its strength. Secrets are never written: secret params appear
// only as "supplied".
type State struct {
	Format   int               `json:"format"`
	RunID    string            `json:"run_id"`
	Runbook  StateRunbook      `json:"runbook"`
	Params   map[string]string `json:"params"`
	Secrets  []string          `json:"secret_params,omitempty"` // names only: supplied again on resume
	Operator string            `json:"operator"`
	Started  time.Time         `json:"started_at"`
	Ended    *time.Time        `json:"ended_at,omitempty"`
	Outcome  string            `json:"outcome,omitempty"` // succeeded | failed | interrupted | approval-required
	Servers  map[string]Server `json:"servers,omitempty"`
	// From and Only are the run's step selection (run --from, --only):
	// resume keeps to it.
	From     string             `json:"from,omitempty"`
	Only     []string           `json:"only,omitempty"`
	Steps    []*StepState       `json:"steps"`
	Approved map[string]Approve `json:"approvals,omitempty"`

	path    string
	journal *os.File
	jEnd    int64 // where the next journal record goes
	jCap    int64 // the journal's preallocated (zero-filled, fsynced) length
	lock    *os.File
	mu      sync.Mutex
	index   map[string]int // a step's position in Steps (see indexOf)
	// afterSync, when set, is called after each fsync of the journal (the
	// audit log's wait for its own background fsync).
	afterSync func()
}

// StateRunbook identifies the runbook a state belongs to.
type StateRunbook struct {
	Name   string `json:"name"`
	File   string `json:"file"`
	Digest string `json:"digest"`
}

// Server is the identity of a server a connection reached, so that a resume
// against another server refuses.
type Server struct {
	SystemID string `json:"system_identifier"`
	Version  string `json:"version"`
	Database string `json:"database"`
}

// Approve records an approval.
type Approve = actions.Approval

// StepState is one step's durable record.
type StepState struct {
	ID       string             `json:"id"`
	Digest   string             `json:"digest"`
	Status   string             `json:"status"`
	Attempts int                `json:"attempts,omitempty"`
	Started  *time.Time         `json:"started_at,omitempty"`
	Ended    *time.Time         `json:"ended_at,omitempty"`
	Error    string             `json:"error,omitempty"`
	Outputs  actions.Outputs    `json:"outputs,omitempty"`
	Progress *actions.Progress  `json:"progress,omitempty"`
	Pending  *actions.PendingTx `json:"pending_tx,omitempty"`
	// Frozen is the file holding a generate step's frozen statement list,
	// and FrozenLen how many statements it holds.
	Frozen    string `json:"frozen,omitempty"`
	FrozenLen int    `json:"frozen_statements,omitempty"`
}

// record is one journal line: a full replacement of one step's record, or of
// the run's header fields.
type record struct {
	Step    *StepState     `json:"step,omitempty"`
	Server  *serverRecord  `json:"server,omitempty"`
	Outcome string         `json:"outcome,omitempty"`
	Ended   *time.Time     `json:"ended_at,omitempty"`
	Approve *approveRecord `json:"approval,omitempty"`
	Reopen  *reopenRecord  `json:"reopen,omitempty"`
}

type serverRecord struct {
	Conn string `json:"conn"`
	Server
}

type approveRecord struct {
	Step string `json:"step"`
	Approve
}

type reopenRecord struct {
	At time.Time `json:"at"`
}

// DefaultStatePath derives a state path from the runbook's name and its
// non-secret params, so that two customers never share a state file.
func DefaultStatePath(rb *schema.Runbook, vals schema.Values) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", rb.Name)
	for _, v := range vals {
		if !v.Secret {
			fmt.Fprintf(h, "%s=%q\n", v.Name, v.Value)
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))[:12]
	return filepath.Join(".runbook", rb.Name+"-"+sum+".state.json")
}

// newState makes the state of a fresh run.
func newState(path, runID, operator string, rb *schema.Runbook, vals schema.Values) *State {
	st := &State{Format: StateFormat, RunID: runID, path: path, Operator: operator,
		Runbook: StateRunbook{Name: rb.Name, File: rb.File, Digest: rb.Digest},
		Params:  map[string]string{}, Started: time.Now().UTC(), Servers: map[string]Server{}}
	for _, v := range vals {
		if v.Secret {
			st.Secrets = append(st.Secrets, v.Name)
			continue
		}
		st.Params[v.Name] = v.Value
	}
	for _, s := range rb.Steps {
		st.Steps = append(st.Steps, &StepState{ID: s.ID, Digest: s.Digest, Status: Pending})
	}
	return st
}

// lockState takes the exclusive lock of a state path: an OS file lock that
// dies with its process. A second run or resume on the same state exits 4.
func lockState(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		holder := ""
		if b, err := os.ReadFile(path + ".lock"); err == nil && len(b) > 0 {
			holder = " (" + strings.TrimSpace(string(b)) + ")"
		}
		return nil, exitcode.With(exitcode.Refused, fmt.Errorf("state %s is locked by another runbook process%s: wait for it to finish, or stop it", path, holder))
	}
	host, _ := os.Hostname()
	f.Truncate(0)
	fmt.Fprintf(f, "pid %d on %s since %s\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	return f, nil
}

// lockHeld reports whether a process holds a state's lock, without taking or
// changing it.
func lockHeld(path string) bool {
	f, err := os.Open(path + ".lock")
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return true
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// loadState reads a state snapshot and its journal. It returns nil, nil when
// there is no state at path.
func loadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	st := &State{path: path}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("state %s is not valid JSON: %v", path, err)
	}
	if st.Format != StateFormat {
		return nil, fmt.Errorf("state %s has format %d; this runbook reads format %d", path, st.Format, StateFormat)
	}
	if st.Servers == nil {
		st.Servers = map[string]Server{}
	}
	j, err := os.Open(path + ".journal")
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	defer j.Close()
	// The journal is preallocated with zeros: its records end at the first
	// NUL byte (a record never contains one: JSON escapes it).
	sc := bufio.NewScanner(untilNUL{j})
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			break // a torn last line: nothing was done on its strength
		}
		st.apply(&r)
	}
	return st, nil
}

func (st *State) apply(r *record) {
	if r.Step != nil {
		if i := st.indexOf(r.Step.ID); i >= 0 {
			st.Steps[i] = r.Step
			return
		}
		st.Steps = append(st.Steps, r.Step)
	}
	if r.Server != nil {
		st.Servers[r.Server.Conn] = r.Server.Server
	}
	if r.Approve != nil {
		if st.Approved == nil {
			st.Approved = map[string]Approve{}
		}
		st.Approved[r.Approve.Step] = r.Approve.Approve
	}
	if r.Reopen != nil {
		st.Outcome, st.Ended = "", nil
	}
	if r.Outcome != "" {
		st.Outcome, st.Ended = r.Outcome, r.Ended
	}
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

// open writes the state's snapshot atomically and starts an empty journal.
//
// The journal is preallocated: zero-filled and fsynced a chunk at a time,
// records written in place after one another. A durable record then needs
// only fdatasync, which flushes the record's data and nothing else: the
// file's size and blocks are already on disk, so no filesystem journal
// commit is needed (the same reason PostgreSQL preallocates its WAL). It
// costs about half a full fsync of an appended record (docs/performance.md).
func (st *State) open() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.snapshotLocked(); err != nil {
		return err
	}
	j, err := os.OpenFile(st.path+".journal", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("state journal: %w", err)
	}
	st.journal, st.jEnd, st.jCap = j, 0, 0
	if err := st.growJournal(journalChunk); err != nil {
		return err
	}
	return syncDir(filepath.Dir(st.path))
}

// growJournal zero-fills the journal to at least n bytes, in whole chunks,
// and fsyncs it, size and blocks.
func (st *State) growJournal(n int64) error {
	zeros := make([]byte, 1<<20)
	end := (n + journalChunk - 1) / journalChunk * journalChunk
	for off := st.jCap; off < end; off += int64(len(zeros)) {
		if _, err := st.journal.WriteAt(zeros[:min(int64(len(zeros)), end-off)], off); err != nil {
			return fmt.Errorf("state journal: %w", err)
		}
	}
	if err := st.journal.Sync(); err != nil {
		return fmt.Errorf("state journal: %w", err)
	}
	st.jCap = end
	return nil
}

func (st *State) snapshotLocked() error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(st.path, append(b, '\n'))
}

// writeAtomic writes a file so that a crash leaves the old or the new content,
// never a mix: temp file, fsync, rename, fsync of the directory.
func writeAtomic(path string, data []byte) error {
	return writeAtomicWith(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// writeAtomicWith is writeAtomic with the content written by write, whose
// error is returned as it is.
func writeAtomicWith(path string, write func(w io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// write appends a record to the journal and, when durable, fsyncs it before
// returning.
func (st *State) write(r *record, durable bool) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.apply(r)
	if st.journal == nil {
		return nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if st.jEnd+int64(len(b)) > st.jCap {
		if err := st.growJournal(st.jEnd + int64(len(b))); err != nil {
			return err
		}
	}
	if _, err := st.journal.WriteAt(b, st.jEnd); err != nil {
		return fmt.Errorf("state journal: %w", err)
	}
	st.jEnd += int64(len(b))
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
		if err := datasync(st.journal); err != nil {
			return fmt.Errorf("state journal: %w", err)
		}
		if st.afterSync != nil {
			st.afterSync()
		}
	}
	return nil
}

// step returns a step's record.
func (st *State) step(id string) *StepState {
	st.mu.Lock()
	defer st.mu.Unlock()
	if i := st.indexOf(id); i >= 0 {
		return st.Steps[i]
	}
	return nil
}

// indexOf returns a step's position in Steps, -1 when it has none. Every
// record and every lookup finds its step here: a scan of Steps made a run of
// n steps cost O(n²) (25 million comparisons for 5,000 steps). The index is
// rebuilt when it no longer matches Steps.
func (st *State) indexOf(id string) int {
	for range 2 {
		if i, ok := st.index[id]; ok && i < len(st.Steps) && st.Steps[i].ID == id {
			return i
		} else if !ok && len(st.index) == len(st.Steps) {
			return -1
		}
		st.index = make(map[string]int, len(st.Steps))
		for i, s := range st.Steps {
			st.index[s.ID] = i
		}
	}
	return -1
}

// changed returns a copy of a step's record (a new one when it has none)
// with change applied; the state itself is not touched.
func (st *State) changed(id string, change func(s *StepState)) *StepState {
	next := &StepState{ID: id}
	if cur := st.step(id); cur != nil {
		c := *cur
		next = &c
	}
	change(next)
	return next
}

// change replaces a step's record with a changed copy in memory only: the
// step's next record, or the snapshot at the end, carries it to disk.
func (st *State) change(id string, change func(s *StepState)) {
	next := st.changed(id, change)
	st.mu.Lock()
	st.apply(&record{Step: next})
	st.mu.Unlock()
}

// update replaces a step's record with a changed copy, written to the
// journal (and flushed when durable).
func (st *State) update(id string, durable bool, change func(s *StepState)) error {
	return st.write(&record{Step: st.changed(id, change)}, durable)
}

// close compacts the journal into the snapshot and releases the lock.
func (st *State) close() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	var errs []error
	if st.journal != nil {
		errs = append(errs, st.journal.Sync())
		if err := st.snapshotLocked(); err != nil {
			errs = append(errs, err)
		} else {
			errs = append(errs, st.journal.Truncate(0))
		}
		errs = append(errs, st.journal.Close())
		st.journal = nil
	}
	if st.lock != nil {
		os.Remove(st.lock.Name())
		st.lock.Close()
		st.lock = nil
	}
	return errors.Join(errs...)
}

// Unfinished reports whether the run stopped before its end.
func (st *State) Unfinished() bool { return st.Outcome != "succeeded" }

// freeze writes a generate step's statement list beside the state, as write
// adds the statements (the list is never in memory whole), atomically: temp
// file, fsync, rename, fsync of the directory. The file is a JSON array of
// strings, one per line (docs/state.md). An error of write is returned as it
// is.
func (st *State) freeze(stepID string, write func(add func(string) error) error) (*frozenList, error) {
	name := fmt.Sprintf("%s.%s.frozen.json", strings.TrimSuffix(st.path, ".json"), stepID)
	n := 0
	var werr error // write's own error, returned as it is
	err := writeAtomicWith(name, func(f io.Writer) error {
		w := bufio.NewWriterSize(f, 256<<10)
		w.WriteString("[")
		var buf []byte
		add := func(stmt string) error {
			buf = buf[:0]
			if n > 0 {
				buf = append(buf, ',')
			}
			buf = jsonstr.Append(append(buf, '\n'), stmt)
			if _, err := w.Write(buf); err != nil {
				return fmt.Errorf("freezing the generated statements: %w", err)
			}
			n++
			return nil
		}
		if werr = write(add); werr != nil {
			return werr
		}
		w.WriteString("\n]\n")
		return w.Flush()
	})
	switch {
	case werr != nil:
		return nil, werr
	case err != nil:
		return nil, fmt.Errorf("freezing the generated statements: %w", err)
	}
	return &frozenList{path: name, n: n}, nil
}

// frozenList is a frozen statement list in its file. It implements
// actions.Statements: the statements are decoded one at a time as they are
// read.
type frozenList struct {
	path string
	n    int
}

// openFrozen opens a frozen list of n statements; n 0 counts them (a state
// written before the count was recorded, or an empty list).
func openFrozen(path string, n int) (*frozenList, error) {
	l := &frozenList{path: path, n: n}
	if n > 0 {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("frozen statement list: %w", err)
		}
		return l, nil
	}
	r, err := l.read(0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	for {
		if _, err := r.Next(); err == io.EOF {
			return l, nil
		} else if err != nil {
			return nil, err
		}
		l.n++
	}
}

func (l *frozenList) Len() int { return l.n }

func (l *frozenList) Read(from int) (actions.StatementReader, error) {
	r, err := l.read(from)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (l *frozenList) read(from int) (*frozenReader, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, fmt.Errorf("frozen statement list: %w", err)
	}
	r := &frozenReader{path: l.path, f: f, br: bufio.NewReaderSize(f, 256<<10)}
	if head, err := r.br.Peek(2); err != nil || string(head) != "[\n" {
		// Not written one statement a line (a state of an older runbook):
		// decode the array as a stream.
		r.dec = json.NewDecoder(r.br)
		if tok, err := r.dec.Token(); err != nil || tok != json.Delim('[') {
			f.Close()
			return nil, fmt.Errorf("frozen statement list %s: not a JSON array", l.path)
		}
	} else {
		r.br.Discard(2)
	}
	for i := 0; i < from; i++ {
		if _, err := r.Next(); err != nil {
			f.Close()
			if err == io.EOF {
				err = fmt.Errorf("frozen statement list %s: %d statements, not %d", l.path, i, l.n)
			}
			return nil, err
		}
	}
	return r, nil
}

// frozenReader decodes a frozen list's statements one at a time: a line at a
// time (freeze writes one statement a line), or with a JSON decoder.
type frozenReader struct {
	path string
	f    *os.File
	br   *bufio.Reader
	dec  *json.Decoder // nil: a statement a line
	long []byte
}

func (r *frozenReader) Next() (string, error) {
	if r.dec != nil {
		if !r.dec.More() {
			return "", io.EOF
		}
		var s string
		if err := r.dec.Decode(&s); err != nil {
			return "", fmt.Errorf("frozen statement list %s: %v", r.path, err)
		}
		return s, nil
	}
	line, err := r.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull { // a statement longer than the buffer
		r.long = append(r.long[:0], line...)
		for err == bufio.ErrBufferFull {
			line, err = r.br.ReadSlice('\n')
			r.long = append(r.long, line...)
		}
		line = r.long
	}
	if err != nil {
		return "", fmt.Errorf("frozen statement list %s: %v", r.path, err)
	}
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte(","))
	if len(line) == 1 && line[0] == ']' {
		return "", io.EOF
	}
	if len(line) >= 2 && line[0] == '"' && line[len(line)-1] == '"' && bytes.IndexByte(line, '\\') < 0 {
		return string(line[1 : len(line)-1]), nil // nothing escaped: the text itself
	}
	var s string
	if err := json.Unmarshal(line, &s); err != nil {
		return "", fmt.Errorf("frozen statement list %s: %v", r.path, err)
	}
	return s, nil
}

func (r *frozenReader) Close() error { return r.f.Close() }

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
