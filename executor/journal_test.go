package executor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runbookhq/runbook/internal/pgtest"
)

// newTestState is a state with an open (preallocated) journal in a temp dir.
func newTestState(t testing.TB) *State {
	t.Helper()
	store := NewFileStore(filepath.Join(t.TempDir(), "s.state.json"))
	st := &State{Format: StateFormat, RunID: "r", store: store, Servers: map[string]Server{},
		Started: time.Now().UTC()}
	if err := st.create(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return st
}

// TestJournalPreallocated: records go in place into a zero-filled journal
// that grows by chunks, and loading stops at the zeros (and at a torn record).
func TestJournalPreallocated(t *testing.T) {
	st := newTestState(t)
	st.Steps = []*StepState{{ID: "a", Status: Pending}, {ID: "b", Status: Pending}}
	path := st.store.Where()
	fi, _ := os.Stat(path + ".journal")
	if fi.Size() != journalChunk {
		t.Fatalf("journal size %d, want %d preallocated", fi.Size(), journalChunk)
	}
	big := strings.Repeat("x", 300<<10)
	for i := 0; i < 20; i++ { // 6 MB: the journal grows
		if err := st.update("a", i%2 == 0, func(s *StepState) { s.Status, s.Error = Running, fmt.Sprint(i, big) }, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.update("b", true, func(s *StepState) { s.Status = Succeeded }, nil); err != nil {
		t.Fatal(err)
	}
	fi, _ = os.Stat(path + ".journal")
	if fi.Size() <= journalChunk || fi.Size()%journalChunk != 0 {
		t.Errorf("journal size %d, want whole chunks beyond the first", fi.Size())
	}
	got, err := loadState(NewFileStore(path))
	if err != nil {
		t.Fatal(err)
	}
	if a := got.step("a"); a == nil || !strings.HasPrefix(a.Error, "19") || got.step("b").Status != Succeeded {
		t.Errorf("loaded %+v", got.Steps)
	}
	// A torn record (a crash mid-write) ends the journal: what follows is
	// not applied.
	f, _ := os.OpenFile(path+".journal", os.O_WRONLY, 0)
	f.WriteAt([]byte(`{"step":{"id":"b","status":"fai`), st.store.(*FileStore).jEnd)
	f.Close()
	if got, err = loadState(NewFileStore(path)); err != nil || got.step("b").Status != Succeeded {
		t.Errorf("torn record: %v, %+v", err, got.step("b"))
	}
}

// TestGenerateStreamsTheFrozenList runs a generate step whose transactions are
// larger than a segment (actions' segCells, 4,096 statements): its list is
// frozen to the file and read back a segment at a time, within one
// transaction per batch.
func TestGenerateStreamsTheFrozenList(t *testing.T) {
	srv := pgtest.Shared(t)
	url := srv.NewDatabase(t)
	db := pgtest.DatabaseName(t, url)
	srv.Exec(t, db, "CREATE TABLE t (n int PRIMARY KEY)")
	dir := t.TempDir()
	src := `version: 1
name: stream
params:
  url: {secret: true}
connections:
  db: ${{ params.url }}
steps:
  - id: g
    generate:
      on: db
      query: SELECT format('INSERT INTO t VALUES (%s)', g) FROM generate_series(1, 10000) g
      transaction: batch
      batch_size: 6000
`
	if err := logRun(t, dir, src, []string{"url=" + url}, Options{}); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state.json")
	if got := srv.QueryValue(t, db, "SELECT count(*) || ' ' || sum(n) FROM t"); got != "10000 50005000" {
		t.Errorf("rows: %s", got)
	}
	st, err := loadState(NewFileStore(state))
	if err != nil {
		t.Fatal(err)
	}
	g := st.step("g")
	if g.Status != Succeeded || compactJSON(g.Units["statements"].Data) != `{"done":10000,"of":10000}` || g.Outputs["executed"] != float64(10000) {
		t.Errorf("step %+v", g)
	}
	// The frozen list is the step's blob: a JSON array, a statement a line.
	f, err := st.openBlob("g", "statements")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var list []string
	if err := json.NewDecoder(f).Decode(&list); err != nil || len(list) != 10000 || list[9999] != "INSERT INTO t VALUES (10000)" {
		t.Fatalf("frozen list: %d statements, %v", len(list), err)
	}
}

// compactJSON is JSON without its layout.
func compactJSON(b []byte) string {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return string(b)
	}
	return out.String()
}
