package executor

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/schema"
)

// StateFormat is the version of the state file's format (docs/state.md).
const StateFormat = 1

// Step statuses (SPEC §5).
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
	Format   int                `json:"format"`
	RunID    string             `json:"run_id"`
	Runbook  StateRunbook       `json:"runbook"`
	Params   map[string]string  `json:"params"`
	Secrets  []string           `json:"secret_params,omitempty"` // names only: supplied again on resume
	Operator string             `json:"operator"`
	Started  time.Time          `json:"started_at"`
	Ended    *time.Time         `json:"ended_at,omitempty"`
	Outcome  string             `json:"outcome,omitempty"` // succeeded | failed | interrupted | approval-required
	Servers  map[string]Server  `json:"servers,omitempty"`
	Steps    []*StepState       `json:"steps"`
	Approved map[string]Approve `json:"approvals,omitempty"`

	path    string
	journal *os.File
	lock    *os.File
	mu      sync.Mutex
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
	// Frozen is the file holding a generate step's frozen statement list.
	Frozen string `json:"frozen,omitempty"`
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
	sc := bufio.NewScanner(j)
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
		for i, s := range st.Steps {
			if s.ID == r.Step.ID {
				st.Steps[i] = r.Step
				return
			}
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

// open writes the state's snapshot atomically and starts an empty journal.
func (st *State) open() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.snapshotLocked(); err != nil {
		return err
	}
	j, err := os.OpenFile(st.path+".journal", os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("state journal: %w", err)
	}
	st.journal = j
	return syncDir(filepath.Dir(st.path))
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
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
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
	if _, err := st.journal.Write(b); err != nil {
		return fmt.Errorf("state journal: %w", err)
	}
	if durable {
		if err := st.journal.Sync(); err != nil {
			return fmt.Errorf("state journal: %w", err)
		}
	}
	return nil
}

// step returns a step's record.
func (st *State) step(id string) *StepState {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, s := range st.Steps {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// update replaces a step's record with a changed copy, durably.
func (st *State) update(id string, durable bool, change func(s *StepState)) error {
	cur := st.step(id)
	next := &StepState{ID: id}
	if cur != nil {
		c := *cur
		next = &c
	}
	change(next)
	return st.write(&record{Step: next}, durable)
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

// saveFrozen keeps a generate step's statement list beside the state.
func (st *State) saveFrozen(stepID string, stmts []string) (string, error) {
	name := fmt.Sprintf("%s.%s.frozen.json", strings.TrimSuffix(st.path, ".json"), stepID)
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(stmts); err != nil {
		return "", err
	}
	return name, writeAtomic(name, buf.Bytes())
}

func loadFrozen(name string) ([]string, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("frozen statement list: %w", err)
	}
	var out []string
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("frozen statement list %s: %v", name, err)
	}
	return out, nil
}

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
