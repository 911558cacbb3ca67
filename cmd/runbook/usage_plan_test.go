package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The flags of rejection and sealed plans that cannot go together are usage
// errors (exit 2), before anything is read or run.
func TestRejectAndPlanUsage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte("version: 1\nname: usage\nsteps:\n  - id: gate\n    confirm: ok\n  - id: work\n    shell: {run: \"true\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"resume", "rb.yaml", "--reject", "gate"}, "--reject needs --reason TEXT"},
		{[]string{"resume", "rb.yaml", "--reject", "gate", "--reason", "  "}, "--reject needs --reason TEXT"},
		{[]string{"resume", "rb.yaml", "--reason", "why"}, "--reason goes with --reject ID"},
		{[]string{"resume", "rb.yaml", "--reject", "gate", "--reason", "no", "--approve", "gate"}, "both approved and rejected"},
		{[]string{"resume", "rb.yaml", "--state", "st.json", "--reject", "nosuch", "--reason", "no"}, `no step "nosuch"`},
		{[]string{"resume", "rb.yaml", "--state", "st.json", "--reject", "work", "--reason", "no"}, "step work asks for no approval"},
		{[]string{"run", "rb.yaml", "--plan", "p.plan", "--from", "gate"}, "cannot go with --from or --only"},
		{[]string{"run", "rb.yaml", "--state", "st.json", "--plan", "missing.plan"}, "plan file: open missing.plan"},
	} {
		code, _, stderr := runCLI(t, dir, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("runbook %s: exit %d, want 2 saying %q\n%s", strings.Join(c.args, " "), code, c.want, stderr)
		}
	}
}
