package executor_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runbookhq/runbook/internal/testbin"
)

// TestStateTampering: a state changed by hand is refused by resume and
// reported by status, exit 4, and nothing runs; a torn last journal record
// (a crash mid-write) is not tampering. The run is the real binary, killed
// right after its second step's end is recorded, so that the state is a
// snapshot and a journal of records.
func TestStateTampering(t *testing.T) {
	bin := testbin.Build(t)
	const rb = `version: 1
name: tamper
steps:
  - id: one
    shell: {run: "echo one >> effects"}
  - id: two
    shell: {run: "echo two >> effects"}
  - id: three
    shell: {run: "exit 1"}
  - id: four
    shell: {run: "echo four >> effects"}
`
	// fresh returns a directory holding a run killed after step two's end.
	fresh := func(t *testing.T) string {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(rb), 0o644)
		code, out := testbin.Run(t, bin, testbin.Cmd{Dir: dir, Env: []string{"RUNBOOK_CRASH_AFTER=step-end:two"}},
			"run", "rb.yaml", "--state", "st.json", "--log-format", "json")
		if code != -1 {
			t.Fatalf("run: exit %d, want killed\n%s", code, tail(out))
		}
		return dir
	}
	edit := func(t *testing.T, dir, file string, change func([]byte) []byte) {
		p := filepath.Join(dir, file)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		nb := change(b)
		if bytes.Equal(nb, b) {
			t.Fatalf("the edit changed nothing in %s", file)
		}
		os.WriteFile(p, nb, 0o600)
	}
	// records returns the journal's records (up to the preallocated zeros).
	records := func(b []byte) [][]byte {
		if i := bytes.IndexByte(b, 0); i >= 0 {
			b = b[:i]
		}
		return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	}
	setRecords := func(b []byte, recs [][]byte) []byte {
		out := append(bytes.Join(recs, []byte("\n")), '\n')
		return append(out, make([]byte, len(b)-len(out))...)
	}
	for _, tc := range []struct {
		name, file string
		change     func([]byte) []byte
		want       string // "" for a resume that goes on
	}{
		{"a step's status edited in the snapshot", "st.json", func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"status": "pending"`), []byte(`"status": "succeeded"`), 1)
		}, "does not match its seal"},
		{"steps emptied in the snapshot", "st.json", func(b []byte) []byte {
			i, j := bytes.Index(b, []byte(`"steps": [`)), bytes.Index(b, []byte("\n  ]"))
			return append(append(append([]byte{}, b[:i]...), `"steps": []`...), b[j+4:]...)
		}, "does not match its seal"},
		{"a record's status edited", "st.json.journal", func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"status":"succeeded"`), []byte(`"status":"skipped"`), 1)
		}, "does not follow the one before it"},
		{"a record removed from the middle", "st.json.journal", func(b []byte) []byte {
			recs := records(b)
			return setRecords(b, append(recs[:1:1], recs[2:]...))
		}, "does not follow the one before it"},
		{"garbage in the middle of the journal", "st.json.journal", func(b []byte) []byte {
			recs := records(b)
			return setRecords(b, append(append(recs[:1:1], []byte("{garbage")), recs[1:]...))
		}, "is not a record runbook wrote"},
		{"an unknown field in a record", "st.json.journal", func(b []byte) []byte {
			return bytes.Replace(b, []byte(`{"step":`), []byte(`{"x":1,"step":`), 1)
		}, "does not follow"},
		{"a torn last record", "st.json.journal", func(b []byte) []byte {
			recs := records(b)
			return setRecords(b, append(recs, []byte(`{"step":{"id":"thr`)))
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := fresh(t)
			edit(t, dir, tc.file, tc.change)
			code, out := testbin.Run(t, bin, testbin.Cmd{Dir: dir}, "status", "--state", "st.json")
			if tc.want != "" && (code != 4 || !strings.Contains(out, tc.want)) {
				t.Errorf("status: exit %d, want 4 naming %q\n%s", code, tc.want, tail(out))
			}
			if tc.want == "" && code != 0 {
				t.Errorf("status: exit %d, want 0\n%s", code, tail(out))
			}
			code, out = testbin.Run(t, bin, testbin.Cmd{Dir: dir}, "resume", "rb.yaml", "--state", "st.json", "--log-format", "json")
			switch {
			case tc.want != "" && (code != 4 || !strings.Contains(out, "failed its integrity check") || strings.Contains(out, `"event":"step.start"`)):
				t.Errorf("resume: exit %d, want 4 and nothing run\n%s", code, tail(out))
			case tc.want == "" && (code != 1 || !strings.Contains(out, `"step":"three"`)):
				t.Errorf("resume after a torn record: exit %d, want the run to go on to step three's failure\n%s", code, tail(out))
			}
			b, _ := os.ReadFile(filepath.Join(dir, "effects"))
			if got := string(b); got != "one\ntwo\n" {
				t.Errorf("effects %q: a step ran again or a later one ran", got)
			}
		})
	}
}
