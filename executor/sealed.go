package executor

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/internal/atomicfile"
	"github.com/runbookhq/runbook/internal/event"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/textdiff"
	"github.com/runbookhq/runbook/schema"
)

// A sealed plan (docs/plan.md, "Sealed plans") is a plan file a change board
// approves and run --plan executes exactly: the plan of plan --generate (the
// runbook's digest, params with secrets masked, every step's definition,
// every generate step's statements), a digest of each secret's value, the
// identity of every connection's server, and a seal over all of it. Its seal
// is its id. A run refuses (exit 4) a plan that is edited, stale (the
// runbook, a param or a server differs) or already applied.

// SealedFormat is the version of the plan file's shape (docs/plan.md).
const SealedFormat = 1

// sealedKind names a plan file in its kind field.
const sealedKind = "runbook-sealed-plan"

// SealedPlan is a plan file.
type SealedPlan struct {
	Kind      string    `json:"kind"`
	Format    int       `json:"format"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	Host      string    `json:"host"`
	// Salt makes the secrets' digests the plan's own: equal secrets of two
	// plans do not show as equal digests.
	Salt    string         `json:"salt"`
	Plan    *Plan          `json:"plan"`
	Secrets []SealedSecret `json:"secrets"`
	Servers []SealedServer `json:"servers"`
	// Seal is the SHA-256 of the plan's canonical content (the struct's
	// JSON encoding with Seal empty); it is the plan's id.
	Seal string `json:"seal"`
}

// SealedSecret is a secret param, by name and a salted digest of its value:
// a changed secret is detected, the value never written.
type SealedSecret struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`
}

// SealedServer is the identity of the server a connection reached when the
// plan was made (the identity the state checks on resume).
type SealedServer struct {
	Conn string `json:"conn"`
	Server
}

// ID is the plan's id: its seal.
func (sp *SealedPlan) ID() string { return sp.Seal }

// ShortID is the id's first hex digits, for messages.
func (sp *SealedPlan) ShortID() string { return shortPlan(sp.Seal) }

func shortPlan(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 16 {
		id = id[:16]
	}
	return id
}

// MakeSealedPlan plans a runbook with its params, generates every generate
// step's statements as the databases stand now (in READ ONLY transactions),
// reads every connection's server identity, and seals the result. Nothing
// is executed.
func MakeSealedPlan(ctx context.Context, rb *schema.Runbook, vals schema.Values, operator string) (*SealedPlan, error) {
	p, err := NewPlan(rb, vals)
	if err != nil {
		return nil, err
	}
	servers, err := p.generate(ctx, rb, vals, true)
	if err != nil {
		return nil, err
	}
	if operator == "" {
		operator = osUser()
	}
	var salt [16]byte
	rand.Read(salt[:])
	sp := &SealedPlan{Kind: sealedKind, Format: SealedFormat, CreatedAt: time.Now().UTC().Truncate(time.Second),
		CreatedBy: operator, Host: hostname(), Salt: hex.EncodeToString(salt[:]), Plan: p,
		Secrets: []SealedSecret{}, Servers: []SealedServer{}}
	sp.Secrets = sp.secretDigests(vals)
	for _, c := range rb.Connections {
		if s, ok := servers[c.Name]; ok {
			sp.Servers = append(sp.Servers, SealedServer{Conn: c.Name, Server: s})
		}
	}
	sp.Seal = sp.seal()
	return sp, nil
}

func (sp *SealedPlan) secretDigests(vals schema.Values) []SealedSecret {
	out := []SealedSecret{}
	for _, v := range vals {
		if !v.Secret {
			continue
		}
		h := sha256.New()
		fmt.Fprintf(h, "%s\x00%s\x00%s", sp.Salt, v.Name, v.Value)
		out = append(out, SealedSecret{Name: v.Name, Digest: "sha256:" + hex.EncodeToString(h.Sum(nil))})
	}
	return out
}

// seal computes the plan's seal: SHA-256 of its JSON encoding with Seal
// empty.
func (sp *SealedPlan) seal() string {
	c := *sp
	c.Seal = ""
	b, _ := json.Marshal(&c)
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Encode returns the plan file's bytes: indented JSON, a newline after.
func (sp *SealedPlan) Encode() []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	enc.Encode(sp)
	return b.Bytes()
}

// ledgerPath is the file next to a plan file that records it applied.
func ledgerPath(planPath string) string { return planPath + ".applied" }

// WriteSealedPlan writes a plan file, replacing one at path, atomically. A
// plan file whose ledger says it was applied is not replaced (exit 4): the
// new plan would be refused as applied.
func WriteSealedPlan(path string, sp *SealedPlan) error {
	if b, err := os.ReadFile(ledgerPath(path)); err == nil {
		return exitcode.With(exitcode.Refused, fmt.Errorf("plan file %s was applied (%s): write the new plan to another file",
			path, strings.TrimSpace(appliedText(b))))
	}
	if err := atomicfile.Write(path, sp.Encode()); err != nil {
		return exitcode.With(exitcode.Environment, fmt.Errorf("writing the plan file: %w", err))
	}
	return nil
}

// LoadSealedPlan reads a plan file and checks its seal: a file edited after
// plan --out wrote it is refused (exit 4).
func LoadSealedPlan(path string) (*SealedPlan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("plan file: %w", err))
	}
	return decodeSealed(path, b)
}

func decodeSealed(where string, b []byte) (*SealedPlan, error) {
	var sp SealedPlan
	if err := decodeStrict(b, &sp); err != nil || sp.Kind != sealedKind || sp.Plan == nil {
		why := "it is not a plan file runbook plan --out wrote"
		if err != nil {
			why += ": " + err.Error()
		}
		return nil, exitcode.With(exitcode.Refused, fmt.Errorf("plan %s refused: %s", where, why))
	}
	if sp.Format != SealedFormat {
		return nil, exitcode.With(exitcode.Refused, fmt.Errorf("plan %s has format %d; this runbook reads format %d", where, sp.Format, SealedFormat))
	}
	if got := sp.seal(); got != sp.Seal {
		return nil, exitcode.With(exitcode.Refused, fmt.Errorf("plan %s refused: its content does not match its seal (it was edited after runbook plan --out wrote it); make a new plan and have it approved", where))
	}
	return &sp, nil
}

// check compares the plan with the run's runbook and params: any difference
// refuses the run (exit 4) with a diff of the plans.
func (sp *SealedPlan) check(where string, rb *schema.Runbook, vals schema.Values) error {
	cur, err := NewPlan(rb, vals)
	if err != nil {
		return err
	}
	approved := *sp.Plan
	approved.Generated, approved.Runbook.File = nil, cur.Runbook.File
	approved.Digest = approved.digest()
	if approved.Digest != cur.Digest {
		var a, b strings.Builder
		approved.WriteText(&a)
		cur.WriteText(&b)
		diff := textdiff.Lines(a.String(), b.String())
		if a.String() == b.String() {
			ja, _ := json.MarshalIndent(approved, "", "  ")
			jb, _ := json.MarshalIndent(cur, "", "  ")
			diff = textdiff.Lines(string(ja), string(jb))
		}
		return exitcode.With(exitcode.Refused, fmt.Errorf("plan %s (%s) refused: the runbook or its params differ from the plan's. Planned (-) and now (+):\n%s",
			where, sp.ShortID(), onlyChanges(diff)))
	}
	var bad []string
	now := map[string]string{}
	for _, s := range sp.secretDigests(vals) {
		now[s.Name] = s.Digest
	}
	for _, s := range sp.Secrets {
		if now[s.Name] != s.Digest {
			bad = append(bad, fmt.Sprintf("secret param %s has another value than when the plan was made", s.Name))
		}
	}
	if len(bad) > 0 {
		return exitcode.With(exitcode.Refused, fmt.Errorf("plan %s (%s) refused:\n  %s", where, sp.ShortID(), strings.Join(bad, "\n  ")))
	}
	return nil
}

// onlyChanges keeps a diff's changed lines with a line of context around
// each run of them.
func onlyChanges(diff string) string {
	lines := strings.Split(strings.TrimRight(diff, "\n"), "\n")
	keep := make([]bool, len(lines))
	for i, l := range lines {
		if !strings.HasPrefix(l, "  ") {
			for j := max(0, i-1); j <= min(len(lines)-1, i+1); j++ {
				keep[j] = true
			}
		}
	}
	var out []string
	gap := false
	for i, l := range lines {
		if !keep[i] {
			gap = true
			continue
		}
		if gap && len(out) > 0 {
			out = append(out, "  …")
		}
		gap = false
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// server returns the planned identity of a connection's server.
func (sp *SealedPlan) server(conn string) (Server, bool) {
	for _, s := range sp.Servers {
		if s.Conn == conn {
			return s.Server, true
		}
	}
	return Server{}, false
}

// bound returns what the plan approved for a step: nil when the plan lists
// no statements for it (not a generate step, generated at run time).
func (sp *SealedPlan) bound(step string) *actions.Bound {
	for _, g := range sp.Plan.Generated {
		if g.Step == step && g.Note == "" && !g.AfterChanges && g.Statements != nil {
			return &actions.Bound{Plan: sp.ShortID(), Statements: g.Statements}
		}
	}
	return nil
}

// unbound says why a generate step of the plan is not bound ("" when it is,
// or when the plan does not know the step as a generate step).
func (sp *SealedPlan) unbound(step string) string {
	for _, g := range sp.Plan.Generated {
		if g.Step == step && (g.Note != "" || g.AfterChanges) {
			return g.Note
		}
	}
	return ""
}

// Applied is a plan's record in a ledger: when, by whom, where.
type Applied struct {
	Plan     string    `json:"plan"`
	RunID    string    `json:"run_id"`
	State    string    `json:"state"`
	Operator string    `json:"operator"`
	Host     string    `json:"host"`
	At       time.Time `json:"applied_at"`
}

func (a Applied) String() string {
	return fmt.Sprintf("applied %s by %s on %s, run %s, state %s", a.At.Format(time.RFC3339), a.Operator, a.Host, a.RunID, a.State)
}

func appliedText(b []byte) string {
	var a Applied
	if json.Unmarshal(b, &a) != nil {
		return "its ledger is not readable"
	}
	return a.String()
}

// planLedger is a store that also records plans applied (a control
// database: docs/state-postgres.md), so that a plan is applied once
// wherever its file is copied.
type planLedger interface {
	// PlanApplied returns the plan's record, nil when it was not applied.
	PlanApplied(id string) ([]byte, error)
	// MarkPlanApplied records the plan applied, durably, unless it already
	// is: then it returns the earlier record.
	MarkPlanApplied(id string, rec []byte) (prior []byte, err error)
}

// alreadyApplied refuses a plan that a ledger records applied: the file next
// to the plan, and the control database when the state is kept in one.
func alreadyApplied(store Store, planPath string, sp *SealedPlan) error {
	refuse := func(where string, rec []byte) error {
		return exitcode.With(exitcode.Refused, fmt.Errorf("plan %s (%s) was already applied (%s; recorded in %s): a plan is applied at most once; make a new plan",
			planPath, sp.ShortID(), appliedText(rec), where))
	}
	b, err := os.ReadFile(ledgerPath(planPath))
	switch {
	case err == nil:
		return refuse(ledgerPath(planPath), b)
	case !errors.Is(err, fs.ErrNotExist):
		return exitcode.With(exitcode.Environment, fmt.Errorf("plan ledger: %w", err))
	}
	if l, ok := store.(planLedger); ok {
		rec, err := l.PlanApplied(sp.ID())
		if err != nil {
			return exitcode.With(exitcode.Environment, fmt.Errorf("plan ledger in %s: %w", store.Where(), err))
		}
		if rec != nil {
			return refuse(store.Where(), rec)
		}
	}
	return nil
}

// markApplied records the plan applied before the run's first step: the
// ledger file next to the plan (created exclusively and synced) and the
// control database's table. A record found there first refuses the run.
func (r *runner) markApplied() error {
	sp, path := r.plan, r.o.PlanPath
	rec, _ := json.Marshal(Applied{Plan: sp.ID(), RunID: r.st.RunID, State: r.st.store.Where(), Operator: r.o.Operator, Host: hostname(), At: time.Now().UTC()})
	rec = append(rec, '\n')
	if l, ok := r.st.store.(planLedger); ok {
		prior, err := l.MarkPlanApplied(sp.ID(), rec)
		if err != nil {
			return exitcode.With(exitcode.Environment, fmt.Errorf("plan ledger in %s: %w", r.st.store.Where(), err))
		}
		if prior != nil {
			return exitcode.With(exitcode.Refused, fmt.Errorf("plan %s (%s) was already applied (%s; recorded in %s): a plan is applied at most once; make a new plan",
				path, sp.ShortID(), appliedText(prior), r.st.store.Where()))
		}
	}
	f, err := os.OpenFile(ledgerPath(path), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		b, _ := os.ReadFile(ledgerPath(path))
		return exitcode.With(exitcode.Refused, fmt.Errorf("plan %s (%s) was already applied (%s; recorded in %s): a plan is applied at most once; make a new plan",
			path, sp.ShortID(), appliedText(b), ledgerPath(path)))
	}
	if err != nil {
		return exitcode.With(exitcode.Environment, fmt.Errorf("plan ledger: %w", err))
	}
	_, err = f.Write(rec)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = atomicfile.SyncDir(filepath.Dir(ledgerPath(path)))
	}
	if err != nil {
		return exitcode.With(exitcode.Environment, fmt.Errorf("plan ledger %s: %w", ledgerPath(path), err))
	}
	r.emit("", PlanApplied{Plan: sp.ID(), File: path, Ledger: ledgerPath(path)})
	return nil
}

// checkServer refuses a connection whose server is not the one the plan
// was made on.
func (sp *SealedPlan) checkServer(name string, s Server) error {
	want, ok := sp.server(name)
	if !ok || want.SystemID == s.SystemID && want.Database == s.Database && (want.DatabaseOID == 0 || want.DatabaseOID == s.DatabaseOID) {
		return nil
	}
	line := func(s Server) string {
		return fmt.Sprintf("connection %s: system identifier %s, database %s (oid %d), PostgreSQL %s", name, s.SystemID, s.Database, s.DatabaseOID, s.Version)
	}
	return exitcode.With(exitcode.Refused, fmt.Errorf("plan %s refused: connection %s reaches another server than the plan was made on. Planned (-) and now (+):\n%s",
		sp.ShortID(), name, textdiff.Lines(line(want), line(s))))
}

// putPlan keeps the plan file in the run's state, so that a resume runs the
// same plan without being given it.
func putPlan(store Store, sp *SealedPlan) (string, error) {
	return store.PutBlob("plan.json", func(w io.Writer) error { _, err := w.Write(sp.Encode()); return err })
}

// loadPlanCopy reads the plan a run's state keeps.
func loadPlanCopy(st *State) (*SealedPlan, error) {
	f, err := st.store.OpenBlob(st.PlanCopy)
	if err != nil {
		return nil, exitcode.With(exitcode.Refused, fmt.Errorf("the run's plan (kept in the state) is not readable: %w", err))
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, exitcode.With(exitcode.Refused, fmt.Errorf("the run's plan (kept in the state) is not readable: %w", err))
	}
	return decodeSealed(st.store.Where()+" (the run's plan)", b)
}

func init() {
	event.MustRegister(PlanApplied{}, PlanUnbound{})
}

// PlanApplied: the run executes a sealed plan, recorded as applied before
// its first step.
type PlanApplied struct {
	Plan   string `json:"plan"`
	File   string `json:"file"`
	Ledger string `json:"ledger"`
}

// Name implements event.Event.
func (PlanApplied) Name() string { return "plan.applied" }

// Message implements event.Event.
func (e PlanApplied) Message() string {
	return fmt.Sprintf("executing plan %s (%s), recorded applied in %s", shortPlan(e.Plan), e.File, e.Ledger)
}

// Durability implements event.Durable.
func (PlanApplied) Durability() event.Durability { return event.Synced }

// PlanUnbound: a generate step of a sealed plan whose statements the plan
// could not list (generated after changes, or reading earlier outputs): they
// are generated at run time, and each statement it runs is logged.
type PlanUnbound struct {
	Plan string `json:"plan"`
	Why  string `json:"why"`
}

// Name implements event.Event.
func (PlanUnbound) Name() string { return "plan.unbound" }

// Message implements event.Event.
func (e PlanUnbound) Message() string {
	return fmt.Sprintf("not bound by plan %s: %s", shortPlan(e.Plan), e.Why)
}

// Problem implements event.Problem: the operator sees it.
func (e PlanUnbound) Problem() (event.Issue, bool) {
	return event.Issue{Level: event.Info, Message: e.Message()}, true
}

// ensureApplied makes sure the plan is recorded applied by this run: a
// ledger that records it for this run (a resume) lets it go on, one that
// records another run refuses it, and none gets this run's record.
func (r *runner) ensureApplied() error {
	sp := r.plan
	b, err := os.ReadFile(ledgerPath(r.o.PlanPath))
	if err == nil {
		var a Applied
		if json.Unmarshal(b, &a) == nil && a.RunID == r.st.RunID && a.Plan == sp.ID() {
			return nil
		}
		return exitcode.With(exitcode.Refused, fmt.Errorf("plan %s (%s) was already applied (%s; recorded in %s): a plan is applied at most once; make a new plan",
			r.o.PlanPath, sp.ShortID(), appliedText(b), ledgerPath(r.o.PlanPath)))
	}
	if l, ok := r.st.store.(planLedger); ok && r.o.Resume {
		rec, err := l.PlanApplied(sp.ID())
		if err != nil {
			return exitcode.With(exitcode.Environment, fmt.Errorf("plan ledger in %s: %w", r.st.store.Where(), err))
		}
		var a Applied
		if rec != nil && json.Unmarshal(rec, &a) == nil && a.RunID == r.st.RunID {
			return nil // the plan file was moved; the control database knows
		}
	}
	return r.markApplied()
}

// WriteText renders the sealed plan for a human: the plan, the servers it
// was made on, and its id.
func (sp *SealedPlan) WriteText(w io.Writer, path string) {
	sp.Plan.WriteText(w)
	if len(sp.Servers) > 0 {
		fmt.Fprintf(w, "\nServers (a run on another refuses)\n")
		for _, s := range sp.Servers {
			fmt.Fprintf(w, "  %s  system identifier %s, database %s (oid %d), PostgreSQL %s\n", s.Conn, s.SystemID, s.Database, s.DatabaseOID, s.Version)
		}
	}
	fmt.Fprintf(w, "\nSealed plan %s\n  id %s\n  made %s by %s on %s\n  run it with: runbook run %s (with the same params) --plan %s\n",
		path, sp.ID(), sp.CreatedAt.Format(time.RFC3339), sp.CreatedBy, sp.Host, sp.Plan.Runbook.File, path)
}
