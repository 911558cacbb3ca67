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
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/schema"
)

// StateFormat is the version of the state's format (docs/state.md). Format 1
// (a generate step's progress as a statement count) is migrated on load.
const StateFormat = 2

// Step statuses (docs/state.md).
const (
	Pending   = "pending"
	Running   = "running"
	Succeeded = "succeeded"
	Failed    = "failed"
	Skipped   = "skipped"
)

// State is a run's durable record: a snapshot and the journal of records
// applied to it, kept by a Store. Loading applies the journal to the
// snapshot; a torn last record (a crash mid-write) is ignored, because
// nothing was done on its strength. Secrets are never written: secret params
// appear only as "supplied".
type State struct {
	Format   int               `json:"format"`
	RunID    string            `json:"run_id"`
	Runbook  StateRunbook      `json:"runbook"`
	Params   map[string]string `json:"params"`
	Secrets  []string          `json:"secret_params,omitempty"` // names only: supplied again on resume
	Operator string            `json:"operator"`
	Started  time.Time         `json:"started_at"`
	Ended    *time.Time        `json:"ended_at,omitempty"`
	Outcome  string            `json:"outcome,omitempty"` // succeeded | failed | interrupted | approval-required | refused | rejected
	Servers  map[string]Server `json:"servers,omitempty"`
	// Sessions are the server processes of the run's last sessions on each
	// connection (sessions.go): a resume ends those still running.
	Sessions map[string][]Session `json:"sessions,omitempty"`
	// From and Only are the run's step selection (run --from, --only):
	// resume keeps to it.
	From     string             `json:"from,omitempty"`
	Only     []string           `json:"only,omitempty"`
	Steps    []*StepState       `json:"steps"`
	Approved map[string]Approve `json:"approvals,omitempty"`
	// RunbookCopy is the blob holding the runbook as it ran, so that a
	// refused resume can show what changed.
	RunbookCopy string `json:"runbook_copy,omitempty"`
	// Plan is the id of the sealed plan the run executes (run --plan),
	// PlanFile the plan file as given, PlanCopy the blob that keeps it for
	// resume.
	Plan     string `json:"plan,omitempty"`
	PlanFile string `json:"plan_file,omitempty"`
	PlanCopy string `json:"plan_copy,omitempty"`
	// Seal is the snapshot's integrity (seal.go); it stays the last field.
	Seal string `json:"seal"`

	store Store
	mu    sync.Mutex
	// chain is the integrity chain's head: the seal of the snapshot, then
	// each record's chain value.
	chain string
	index map[string]int // a step's position in Steps (see indexOf)
	// dirty holds, per step, the units changed in memory since the step's
	// last record: its next record carries them.
	dirty map[string]map[string]*UnitState
	// afterSync, when set, is called after each durable record (the audit
	// log's wait for its own background fsync).
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
	// DatabaseOID tells a database from one dropped and created again
	// under the same name (a sealed plan checks it).
	DatabaseOID uint32 `json:"database_oid,omitempty"`
}

// Approve records an approval.
type Approve = actions.Approval

// StepState is one step's durable record.
type StepState struct {
	ID       string          `json:"id"`
	Digest   string          `json:"digest"`
	Status   string          `json:"status"`
	Attempts int             `json:"attempts,omitempty"`
	Started  *time.Time      `json:"started_at,omitempty"`
	Ended    *time.Time      `json:"ended_at,omitempty"`
	Error    string          `json:"error,omitempty"`
	Outputs  actions.Outputs `json:"outputs,omitempty"`
	// Units are the step's journaled units of work (actions.Journal). In
	// a record, only the units that changed; a null unit is removed.
	Units map[string]*UnitState `json:"units,omitempty"`
	// Blobs are the step's blobs: name → the store's reference.
	Blobs map[string]string `json:"blobs,omitempty"`
}

// UnitState is one unit of work of a step, as the journal knows it.
type UnitState struct {
	// Data is the unit's data as of its last known commit (nil: none).
	Data json.RawMessage `json:"data,omitempty"`
	// AtRisk is set when Data comes from commits not yet known on the
	// server's disk (asynchronous commits, autocommit); Durable is then the
	// data as of the last commit known there (nil: none). A restart of the
	// server may have lost what lies between.
	AtRisk  bool            `json:"at_risk,omitempty"`
	Durable json.RawMessage `json:"durable,omitempty"`
	// Conn and Server are the connection that committed Data and its
	// server's start time.
	Conn   string    `json:"conn,omitempty"`
	Server time.Time `json:"server_start,omitzero"`
	// Tx is the unit's transaction in flight: recorded before its COMMIT,
	// settled with the server after a crash.
	Tx *actions.Tx `json:"tx,omitempty"`
	// Async are the asynchronous commits since the last durable one, in
	// order (each transaction's id and the unit's data once it committed):
	// after a crash of the server, settle.go finds which of them survived.
	// A journal record never carries them (that would grow with each
	// commit): loading rebuilds them from the records, in which each
	// transaction appears before its COMMIT (see applyStep); a snapshot
	// keeps them whole.
	Async []AsyncCommit `json:"async_commits,omitempty"`
	// AsyncUncounted is set when more asynchronous commits came in a row
	// than Async keeps (maxAsync: a session whose own synchronous_commit is
	// off never makes one durable): which survived a crash is then unknown.
	AsyncUncounted bool `json:"async_uncounted,omitempty"`
}

// maxAsync bounds the asynchronous commits a unit keeps (memory, state).
const maxAsync = 100_000

// AsyncCommit is an asynchronous commit of a unit not yet known on the
// server's disk.
type AsyncCommit struct {
	XID  uint64          `json:"xid"` // 0: work done in autocommit, with no id to ask about
	Data json.RawMessage `json:"data"`
}

// inDoubt reports whether u has work a crash may have left undecided.
func (u *UnitState) inDoubt() bool { return u != nil && (u.Tx != nil || u.AtRisk) }

// committed returns u once tx committed: its data, and whether that data is
// known on the server's disk.
func (u *UnitState) committed(tx actions.Tx) *UnitState {
	n := &UnitState{Data: tx.Data, Conn: tx.Conn, Server: tx.Server}
	if tx.Async {
		n.AtRisk, n.Durable = true, nil
		if u != nil {
			n.Durable = u.Data
			if u.AtRisk {
				n.Durable, n.Async, n.AsyncUncounted = u.Durable, u.Async, u.AsyncUncounted
			}
		}
		if n.AsyncUncounted || len(n.Async) >= maxAsync {
			n.Async, n.AsyncUncounted = nil, true
		} else {
			n.Async = append(slices.Clip(n.Async), AsyncCommit{XID: tx.XID, Data: tx.Data})
		}
	}
	return n
}

// forRecord is u as a journal record carries it: without its list of
// asynchronous commits.
func (u *UnitState) forRecord() *UnitState {
	if u == nil || u.Async == nil {
		return u
	}
	c := *u
	c.Async = nil
	return &c
}

// record is one journal line: a change of one step's record (its header
// replaced, the units it names replaced), or of the run's header fields.
type record struct {
	Step     *StepState      `json:"step,omitempty"`
	Server   *serverRecord   `json:"server,omitempty"`
	Outcome  string          `json:"outcome,omitempty"`
	Ended    *time.Time      `json:"ended_at,omitempty"`
	Approve  *approveRecord  `json:"approval,omitempty"`
	Reopen   *reopenRecord   `json:"reopen,omitempty"`
	Sessions *sessionsRecord `json:"sessions,omitempty"`
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
func newState(store Store, runID, operator string, rb *schema.Runbook, vals schema.Values) *State {
	st := &State{Format: StateFormat, RunID: runID, store: store, Operator: operator,
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

// loadState reads a state from its store. It returns nil, nil when there is
// none.
func loadState(store Store) (*State, error) {
	b, j, err := store.Read()
	if err != nil || b == nil {
		return nil, err
	}
	if j != nil {
		defer j.Close()
	}
	var head struct {
		Format int `json:"format"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("state %s is not valid JSON: %v", store.Where(), err)
	}
	st := &State{store: store}
	switch head.Format {
	case StateFormat:
		if st.chain, err = checkSeal(store.Where(), b); err != nil {
			return nil, err
		}
		if err := decodeStrict(b, st); err != nil {
			return nil, tampered(store.Where(), fmt.Sprintf("the snapshot is not runbook's: %v", err))
		}
	case 1:
		if st, err = migrate1(store, b, j); err != nil {
			return nil, err
		}
		j = nil
	default:
		return nil, fmt.Errorf("state %s has format %d; this runbook reads formats 1 and %d", store.Where(), head.Format, StateFormat)
	}
	if st.Servers == nil {
		st.Servers = map[string]Server{}
	}
	if j != nil {
		if err := st.replay(j); err != nil {
			return nil, err
		}
	}
	if err := st.checkValues(); err != nil {
		return nil, err
	}
	return st, nil
}

// replay applies the journal's records, checking their chain. A last line
// that does not parse is a torn write (nothing was done on its strength) and
// is ignored; any other broken line refuses the state.
func (st *State) replay(j io.Reader) error {
	sc := bufio.NewScanner(j)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	var bad string
	n := 0
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		n++
		if bad != "" {
			// A broken record with records after it: not a torn write.
			return tampered(st.store.Where(), bad)
		}
		rec, sum, ok, match := unchain(st.chain, line)
		var r record
		switch {
		case !ok || json.Valid(rec) == false:
			bad = fmt.Sprintf("journal record %d is not a record runbook wrote", n)
			continue
		case !match:
			return tampered(st.store.Where(), fmt.Sprintf("journal record %d does not follow the one before it: it was edited, or records were removed", n))
		}
		if err := decodeStrict(rec, &r); err != nil {
			return tampered(st.store.Where(), fmt.Sprintf("journal record %d is not runbook's: %v", n, err))
		}
		st.chain = sum
		st.apply(&r)
	}
	return sc.Err()
}

func (st *State) apply(r *record) {
	if r.Step != nil {
		st.applyStep(r.Step)
	}
	if r.Server != nil {
		st.Servers[r.Server.Conn] = r.Server.Server
	}
	if r.Sessions != nil {
		if st.Sessions == nil {
			st.Sessions = map[string][]Session{}
		}
		st.Sessions[r.Sessions.Conn] = r.Sessions.List
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

// applyStep applies a step's record: its header replaces the step's, its
// units and blobs replace those of the same names.
func (st *State) applyStep(rec *StepState) {
	i := st.indexOf(rec.ID)
	if i < 0 {
		st.Steps = append(st.Steps, &StepState{ID: rec.ID})
		i = len(st.Steps) - 1
		st.index = nil
	}
	cur := st.Steps[i]
	next := *rec
	next.Units, next.Blobs = cur.Units, cur.Blobs
	for name, u := range rec.Units {
		if next.Units == nil {
			next.Units = map[string]*UnitState{}
		}
		if u == nil {
			delete(next.Units, name)
			continue
		}
		if u.AtRisk && u.Async == nil {
			u = rebuildAsync(next.Units[name], u)
		}
		next.Units[name] = u
	}
	if len(next.Units) == 0 {
		next.Units = nil
	}
	for name, ref := range rec.Blobs {
		if next.Blobs == nil {
			next.Blobs = map[string]string{}
		}
		next.Blobs[name] = ref
	}
	st.Steps[i] = &next
}

// rebuildAsync returns rec (a unit as a record carries it, at risk) with its
// list of asynchronous commits: cur's, and cur's transaction in flight when
// rec shows it committed (its data is rec's, and rec no longer has it in
// flight). Records carry a unit whole but for this list.
func rebuildAsync(cur, rec *UnitState) *UnitState {
	if cur == nil || !cur.AtRisk && cur.Tx == nil {
		return rec
	}
	n := *rec
	if cur.AtRisk {
		n.Async = slices.Clip(cur.Async)
		n.AsyncUncounted = n.AsyncUncounted || cur.AsyncUncounted
	}
	if n.AsyncUncounted || len(n.Async) >= maxAsync {
		n.Async, n.AsyncUncounted = nil, true
		return &n
	}
	if t := cur.Tx; t != nil && t.Async && (rec.Tx == nil || rec.Tx.XID != t.XID) && bytes.Equal(rec.Data, t.Data) {
		if len(n.Async) == 0 || n.Async[len(n.Async)-1].XID != t.XID {
			n.Async = append(n.Async, AsyncCommit{XID: t.XID, Data: t.Data})
		}
	}
	return &n
}

// create writes the state's first snapshot and starts its journal.
func (st *State) create() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	b, err := st.snapshotLocked()
	if err != nil {
		return err
	}
	return st.store.Create(b)
}

// snapshotLocked encodes the state, sealed; the seal becomes the chain's
// head.
func (st *State) snapshotLocked() ([]byte, error) {
	st.Seal = string(zeroHash)
	// json.MarshalIndent's bytes, indented without its second scan.
	c, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	b := indentJSON(make([]byte, 0, 2*len(c)), c)
	b, h, err := seal(append(b, '\n'))
	if err != nil {
		return nil, err
	}
	st.Seal, st.chain = h, h
	return b, nil
}

// write applies a record and appends it to the journal; durable makes it
// durable before returning.
func (st *State) write(r *record, durable bool) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.writeLocked(r, durable)
}

func (st *State) writeLocked(r *record, durable bool) error {
	st.apply(r)
	b, err := encodeRecord(r)
	if err != nil {
		return err
	}
	line, sum := chainRecord(st.chain, b) // b is given up
	if err := st.store.Append(line, durable); err != nil {
		return err
	}
	st.chain = sum
	if durable && st.afterSync != nil {
		st.afterSync()
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

// unit returns a unit of a step.
func (st *State) unit(step, name string) *UnitState {
	st.mu.Lock()
	defer st.mu.Unlock()
	if i := st.indexOf(step); i >= 0 {
		return st.Steps[i].Units[name]
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

// changedLocked returns a step's record changed by change (header only) and
// carrying units: the units given, and those changed in memory since the
// step's last record.
func (st *State) changedLocked(id string, change func(s *StepState), units map[string]*UnitState) *StepState {
	next := &StepState{ID: id}
	if i := st.indexOf(id); i >= 0 {
		c := *st.Steps[i]
		next = &c
	}
	next.Units, next.Blobs = nil, nil
	if change != nil {
		change(next)
	}
	if d := st.dirty[id]; len(d) > 0 || len(units) > 0 {
		next.Units = make(map[string]*UnitState, len(d)+len(units))
		for k, v := range d {
			next.Units[k] = v.forRecord()
		}
		for k, v := range units {
			next.Units[k] = v.forRecord()
		}
		delete(st.dirty, id)
	}
	return next
}

// change changes a step's record in memory only (header by change, units
// as given): the step's next record, or the snapshot at the end, carries it
// to disk.
func (st *State) change(id string, change func(s *StepState), units map[string]*UnitState) {
	st.mu.Lock()
	defer st.mu.Unlock()
	next := &StepState{ID: id}
	if i := st.indexOf(id); i >= 0 {
		c := *st.Steps[i]
		next = &c
	}
	next.Units, next.Blobs = units, nil
	if change != nil {
		change(next)
	}
	st.applyStep(next)
	if len(units) == 0 {
		return
	}
	if st.dirty == nil {
		st.dirty = map[string]map[string]*UnitState{}
	}
	if st.dirty[id] == nil {
		st.dirty[id] = map[string]*UnitState{}
	}
	for k, v := range units {
		st.dirty[id][k] = v
	}
}

// update changes a step's record (header by change, units as given, with
// every unit changed in memory since) and writes the record to the journal,
// durable when asked.
func (st *State) update(id string, durable bool, change func(s *StepState), units map[string]*UnitState) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.writeLocked(&record{Step: st.changedLocked(id, change, units)}, durable)
}

// putBlob writes a step's blob to the store and records it.
func (st *State) putBlob(id, name string, write func(w io.Writer) error) error {
	ref, err := st.store.PutBlob(id+"/"+name, write)
	if err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	rec := st.changedLocked(id, nil, nil)
	rec.Blobs = map[string]string{name: ref}
	return st.writeLocked(&record{Step: rec}, false)
}

// openBlob opens a step's blob.
func (st *State) openBlob(id, name string) (io.ReadCloser, error) {
	st.mu.Lock()
	var ref string
	if i := st.indexOf(id); i >= 0 {
		ref = st.Steps[i].Blobs[name]
	}
	st.mu.Unlock()
	if ref == "" {
		return nil, actions.ErrNoBlob
	}
	return st.store.OpenBlob(ref)
}

// close compacts the journal into the snapshot and releases the store.
func (st *State) close() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	var errs []error
	// Units changed in memory only are carried by the snapshot.
	st.dirty = nil
	if b, err := st.snapshotLocked(); err != nil {
		errs = append(errs, err)
	} else {
		errs = append(errs, st.store.Compact(b))
	}
	errs = append(errs, st.store.Close())
	return errors.Join(errs...)
}

// Unfinished reports whether the run stopped before its end.
func (st *State) Unfinished() bool { return st.Outcome != "succeeded" }

// rejection says which step was rejected, from its recorded error.
func (st *State) rejection() string {
	for _, s := range st.Steps {
		if s.Status == Failed && s.Error != "" {
			return s.Error
		}
	}
	return "no step records why"
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
