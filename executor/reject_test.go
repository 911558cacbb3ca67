package executor_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/testbin"
)

const rejectRunbook = `version: 1
name: reject
steps:
  - id: before
    shell: {run: "echo before >> effects"}
  - id: gate
    on_failure: continue
    confirm: Switch the application to the new database.
  - id: after
    shell: {run: "echo after >> effects"}
  - id: cleanup
    always: true
    shell: {run: "echo cleanup >> effects"}
`

// resume --reject ends the run rejected (exit 6), though the gate says
// on_failure: continue: who, when and why are in the audit log and the
// report, the always step runs, the step after the gate does not; the run cannot be resumed, run without --fresh refuses it,
// and run --fresh starts over.
func TestRejectViaResume(t *testing.T) {
	h := newHarness(t)
	h.write(strings.ReplaceAll(rejectRunbook, "effects", filepath.Join(h.dir, "effects")))
	log := filepath.Join(h.dir, "audit.log")
	if o := h.run(nil, executor.Options{LogPath: log, Operator: "alice"}); o.code != exitcode.Approval {
		t.Fatalf("run: exit %d (%v), want 3", o.code, o.err)
	}
	o := h.run(nil, executor.Options{Resume: true, LogPath: log, Operator: "bob", Reject: "gate", RejectReason: "CAB: not this week"})
	if o.code != exitcode.Rejected || !strings.Contains(o.err.Error(), "rejected by bob (--reject gate): CAB: not this week") {
		t.Fatalf("resume --reject: exit %d (%v), want 6", o.code, o.err)
	}
	var rejected map[string]any
	for _, ev := range o.events {
		if ev["event"] == "confirm.rejected" {
			rejected = ev
		}
	}
	if rejected == nil || rejected["by"] != "bob" || rejected["reason"] != "CAB: not this week" || rejected["how"] != "--reject gate" || rejected["at"] == nil {
		t.Errorf("confirm.rejected %v", rejected)
	}
	st := testbin.Statuses(o.events)
	if st["cleanup"] != "succeeded" || st["after"] != "" {
		t.Errorf("statuses %v: want cleanup run, after not", st)
	}
	b, _ := os.ReadFile(filepath.Join(h.dir, "effects"))
	if string(b) != "before\ncleanup\n" {
		t.Errorf("effects %q", b)
	}
	audit, _ := os.ReadFile(log)
	if !bytes.Contains(audit, []byte(`"event":"confirm.rejected"`)) || !bytes.Contains(audit, []byte(`"outcome":"rejected"`)) {
		t.Errorf("the audit log lacks the rejection or the outcome")
	}
	rep, err := executor.BuildReport(executor.ReportOptions{StatePath: h.state, LogPath: log})
	if err != nil {
		t.Fatal(err)
	}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"- **Outcome:** rejected", "`gate` (confirm) — rejected", "**rejected** by **bob** (`--reject gate`)", "CAB: not this week"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, md.String())
		}
	}

	o = h.run(nil, executor.Options{Resume: true, Approve: []string{"gate"}, Operator: "bob"})
	if o.code != exitcode.Refused || !strings.Contains(o.err.Error(), "was rejected") {
		t.Errorf("resume of a rejected run: exit %d (%v), want 4", o.code, o.err)
	}
	o = h.run(nil, executor.Options{Operator: "bob"})
	if o.code != exitcode.Refused || !strings.Contains(o.err.Error(), "start over with --fresh") {
		t.Errorf("run over a rejected run: exit %d (%v), want 4", o.code, o.err)
	}
	o = h.run(nil, executor.Options{Fresh: true, Yes: true, Operator: "bob"})
	if o.code != 0 {
		t.Errorf("run --fresh: exit %d (%v)", o.code, o.err)
	}
}

// A confirm step's approvers and not_operator: an approval that does not
// qualify is refused (exit 3), logged, and leaves the run paused; a
// qualifying one goes on.
func TestApprovers(t *testing.T) {
	for _, c := range []struct {
		name        string
		approvers   string
		notOperator bool
		approver    string // resume --approve gate --operator approver
		want        int
		refusal     string
	}{
		{"anyone, by the operator", "", false, "alice", 0, ""},
		{"approver", "[bob, carol]", false, "bob", 0, ""},
		{"not an approver", "[bob, carol]", false, "mallory", exitcode.Approval, "mallory is not among the approvers of step gate (bob, carol)"},
		{"not the operator, by another", "", true, "bob", 0, ""},
		{"not the operator, by the operator", "", true, "alice", exitcode.Approval, "alice started this run, and step gate needs someone other than the run's operator"},
		{"both, by the operator among approvers", "[alice, bob]", true, "alice", exitcode.Approval, "alice started this run"},
		{"both, by another approver", "[alice, bob]", true, "bob", 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			conf := `{message: "Go live?"`
			if c.approvers != "" {
				conf += ", approvers: " + c.approvers
			}
			if c.notOperator {
				conf += ", not_operator: true"
			}
			h.write(strings.Replace(strings.ReplaceAll(rejectRunbook, "effects", filepath.Join(h.dir, "effects")),
				"confirm: Switch the application to the new database.", "confirm: "+conf+"}", 1))
			log := filepath.Join(h.dir, "audit.log")
			if o := h.run(nil, executor.Options{LogPath: log, Operator: "alice"}); o.code != exitcode.Approval {
				t.Fatalf("run: exit %d (%v), want 3", o.code, o.err)
			}
			o := h.run(nil, executor.Options{Resume: true, LogPath: log, Operator: c.approver, Approve: []string{"gate"}})
			if o.code != c.want {
				t.Fatalf("resume --approve gate by %s: exit %d (%v), want %d", c.approver, o.code, o.err, c.want)
			}
			var refused, approved map[string]any
			for _, ev := range o.events {
				switch ev["event"] {
				case "confirm.refused":
					refused = ev
				case "confirm.approved":
					approved = ev
				}
			}
			if c.want == 0 {
				if approved == nil || approved["by"] != c.approver || refused != nil {
					t.Errorf("approved %v, refused %v", approved, refused)
				}
				return
			}
			if refused == nil || refused["by"] != c.approver || !strings.Contains(refused["reason"].(string), c.refusal) || approved != nil {
				t.Errorf("refused %v (want reason %q), approved %v", refused, c.refusal, approved)
			}
			if !strings.Contains(o.err.Error(), c.refusal) {
				t.Errorf("error %v does not say why", o.err)
			}
			if st := testbin.Statuses(o.events); st["after"] != "" || st["cleanup"] != "" {
				t.Errorf("steps ran after a refused approval: %v", st)
			}
			if b, _ := os.ReadFile(log); !bytes.Contains(b, []byte(`"event":"confirm.refused"`)) {
				t.Errorf("the audit log lacks the refusal")
			}
			status, err := executor.ReadStatus(executor.NewFileStore(h.state))
			if err != nil || status.Outcome != "approval-required" {
				t.Errorf("status %v (%v), want approval-required", status, err)
			}
		})
	}
}
