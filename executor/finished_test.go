package executor_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runbookhq/runbook/internal/testbin"
)

// TestResumeOfFinishedRun kills the real binary right after the run's last
// record (its outcome) is durable: the resume that follows, as the crash
// harness and an operator do after a kill, does nothing, says so and exits 0,
// and so does every later one; a resume with another runbook's state is still
// refused.
func TestResumeOfFinishedRun(t *testing.T) {
	bin := testbin.Build(t)
	dir := t.TempDir()
	rb := `version: 1
name: finished
steps:
  - id: one
    shell: {run: "echo once >> effects"}
  - id: two
    shell: {run: "echo once >> effects"}
`
	if err := os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(rb), 0o644); err != nil {
		t.Fatal(err)
	}
	other := strings.Replace(rb, "name: finished", "name: other", 1)
	if err := os.WriteFile(filepath.Join(dir, "other.yaml"), []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--state", "st.json", "--log", "audit.log", "--log-format", "json"}
	code, out := testbin.Run(t, bin, testbin.Cmd{Dir: dir, Env: []string{"RUNBOOK_CRASH_AFTER=run-end:"}}, append([]string{"run", "rb.yaml"}, args...)...)
	if code != -1 {
		t.Fatalf("run: exit %d, want killed after its last record\n%s", code, tail(out))
	}
	for i := 1; i <= 2; i++ {
		code, out = testbin.Run(t, bin, testbin.Cmd{Dir: dir}, append([]string{"resume", "rb.yaml"}, args...)...)
		if code != 0 {
			t.Fatalf("resume %d: exit %d, want 0\n%s", i, code, tail(out))
		}
		if !strings.Contains(out, "already succeeded") || !strings.Contains(out, "nothing to resume") {
			t.Errorf("resume %d does not say that the run already succeeded:\n%s", i, out)
		}
		if strings.Contains(out, `"event":"step.start"`) {
			t.Errorf("resume %d ran a step:\n%s", i, out)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "effects"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "once"); n != 2 {
		t.Errorf("%d effects, want 2 (one per step, once)", n)
	}
	code, out = testbin.Run(t, bin, testbin.Cmd{Dir: dir}, append([]string{"resume", "other.yaml"}, args...)...)
	if code != 4 || !strings.Contains(out, "belongs to runbook finished") {
		t.Errorf("resume with another runbook: exit %d, want 4\n%s", code, out)
	}
}
