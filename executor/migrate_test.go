package executor_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/pgtest"
	"github.com/runbookhq/runbook/schema"
)

// TestFormat1StateResumes: a state written in format 1 (a generate step's
// progress as a count of its frozen list, a step's record replaced whole by
// each journal record) is migrated on load, and the resume goes on after
// the statements it records done, never running them again.
func TestFormat1StateResumes(t *testing.T) {
	srv := pgtest.Shared(t)
	url := srv.NewDatabase(t)
	db := pgtest.DatabaseName(t, url)
	srv.Exec(t, db, "CREATE TABLE effects (k int NOT NULL UNIQUE); INSERT INTO effects VALUES (1), (2)")
	h := newHarness(t)
	h.write(`version: 1
name: old
params:
  url: {secret: true}
connections:
  db: ${{ params.url }}
steps:
  - id: g
    generate: {on: db, query: "SELECT format('INSERT INTO effects VALUES (%s)', i) FROM generate_series(1, 5) i"}
  - id: after
    sql: {on: db, script: "INSERT INTO effects VALUES (100)"}
`)
	rb, err := schema.LoadFile(filepath.Join(h.dir, "rb.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	frozen := h.state + ".g.frozen.json"
	os.WriteFile(frozen, []byte("[\n\"INSERT INTO effects VALUES (1)\",\n\"INSERT INTO effects VALUES (2)\",\n\"INSERT INTO effects VALUES (3)\",\n\"INSERT INTO effects VALUES (4)\",\n\"INSERT INTO effects VALUES (5)\"\n]\n"), 0o600)
	started := time.Now().UTC().Add(-time.Minute)
	v1 := map[string]any{
		"format": 1, "run_id": "20261201T000000Z-000000000000", "operator": "op", "started_at": started,
		"runbook": map[string]any{"name": "old", "file": filepath.Join(h.dir, "rb.yaml"), "digest": rb.Digest},
		"params":  map[string]any{}, "secret_params": []string{"url"},
		"steps": []any{
			map[string]any{"id": "g", "digest": rb.Step("g").Digest, "status": "pending"},
			map[string]any{"id": "after", "digest": rb.Step("after").Digest, "status": "pending"},
		},
	}
	b, _ := json.Marshal(v1)
	os.WriteFile(h.state, b, 0o600)
	// The journal: g running, two statements done, its list frozen.
	rec, _ := json.Marshal(map[string]any{"step": map[string]any{"id": "g", "digest": rb.Step("g").Digest, "status": "running",
		"attempts": 1, "started_at": started, "progress": map[string]any{"done": 2, "durable": 2},
		"frozen": frozen, "frozen_statements": 5}})
	os.WriteFile(h.state+".journal", append(rec, '\n'), 0o600)

	o := h.run([]string{"url=" + url}, executor.Options{Resume: true})
	if o.code != 0 {
		t.Fatalf("resume of a format-1 state: exit %d: %v", o.code, o.err)
	}
	if got := srv.QueryValue(t, db, "SELECT count(*) || ' ' || count(DISTINCT k) || ' ' || sum(k) FROM effects"); got != "6 6 115" {
		t.Errorf("effects: count, distinct, sum = %s; want 6 6 115 (statements 3 to 5 and the step after, once)", got)
	}
	st, err := executor.ReadStatus(executor.NewFileStore(h.state))
	if err != nil {
		t.Fatal(err)
	}
	if st.Outcome != "succeeded" {
		t.Errorf("outcome %s", st.Outcome)
	}
}
