package executor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/internal/pgtest"
)

// newTestState is a state with an open (preallocated) journal in a temp dir.
func newTestState(t testing.TB) *State {
	t.Helper()
	st := &State{Format: StateFormat, RunID: "r", path: filepath.Join(t.TempDir(), "s.state.json"), Servers: map[string]Server{},
		Started: time.Now().UTC()}
	if err := st.open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if st.journal != nil {
			st.journal.Close()
		}
	})
	return st
}

func readAll(t testing.TB, l actions.Statements, from int) []string {
	t.Helper()
	r, err := l.Read(from)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []string
	for {
		s, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
}

func TestFrozenList(t *testing.T) {
	st := newTestState(t)
	long := "SELECT '" + strings.Repeat("long ", 150<<10) + "'" // beyond the reader's buffer
	want := []string{"ALTER TABLE \"Weird\"\"name\" OWNER TO app", "SELECT 'line\nbreak', '\\', '\x01', 'é', '\u2028'", "", long,
		"INSERT INTO t VALUES ('<&>')", long + "\\"}
	list, err := st.freeze("g", func(add func(string) error) error {
		for _, s := range want {
			if err := add(s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if list.Len() != len(want) {
		t.Fatalf("Len = %d", list.Len())
	}
	for from := 0; from <= len(want); from++ {
		if got := readAll(t, list, from); strings.Join(got, "|") != strings.Join(want[from:], "|") {
			t.Errorf("from %d: %.200q", from, got)
		}
	}
	// Counted again when the state did not record the count.
	l2, err := openFrozen(list.path, 0)
	if err != nil || l2.Len() != len(want) {
		t.Fatalf("openFrozen: %v, %v", l2, err)
	}
	// The file is a JSON array, as docs/state.md says; an older state's list
	// (one line) reads the same.
	old := filepath.Join(t.TempDir(), "old.frozen.json")
	os.WriteFile(old, []byte(`["a","b\n",  "c"]`+"\n"), 0o600)
	l3, err := openFrozen(old, 0)
	if err != nil || l3.Len() != 3 || strings.Join(readAll(t, l3, 1), "|") != "b\n|c" {
		t.Fatalf("old format: %v %v", l3, err)
	}
	// An error of the writer is returned as it is, and leaves no file.
	boom := errors.New("boom")
	if _, err := st.freeze("h", func(add func(string) error) error { add("x"); return boom }); err != boom {
		t.Errorf("error = %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(st.path), "*.h.frozen*")); len(m) != 0 {
		t.Errorf("left behind: %v", m)
	}
}

// TestJournalPreallocated: records go in place into a zero-filled journal
// that grows by chunks, and loading stops at the zeros (and at a torn record).
func TestJournalPreallocated(t *testing.T) {
	st := newTestState(t)
	st.Steps = []*StepState{{ID: "a", Status: Pending}, {ID: "b", Status: Pending}}
	fi, _ := os.Stat(st.path + ".journal")
	if fi.Size() != journalChunk {
		t.Fatalf("journal size %d, want %d preallocated", fi.Size(), journalChunk)
	}
	big := strings.Repeat("x", 300<<10)
	for i := 0; i < 20; i++ { // 6 MB: the journal grows
		if err := st.update("a", i%2 == 0, func(s *StepState) { s.Status, s.Error = Running, fmt.Sprint(i, big) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.update("b", true, func(s *StepState) { s.Status = Succeeded }); err != nil {
		t.Fatal(err)
	}
	fi, _ = os.Stat(st.path + ".journal")
	if fi.Size() <= journalChunk || fi.Size()%journalChunk != 0 {
		t.Errorf("journal size %d, want whole chunks beyond the first", fi.Size())
	}
	got, err := loadState(st.path)
	if err != nil {
		t.Fatal(err)
	}
	if a := got.step("a"); a == nil || !strings.HasPrefix(a.Error, "19") || got.step("b").Status != Succeeded {
		t.Errorf("loaded %+v", got.Steps)
	}
	// A torn record (a crash mid-write) ends the journal: what follows is
	// not applied.
	f, _ := os.OpenFile(st.path+".journal", os.O_WRONLY, 0)
	f.WriteAt([]byte(`{"step":{"id":"b","status":"fai`), st.jEnd)
	f.Close()
	if got, err = loadState(st.path); err != nil || got.step("b").Status != Succeeded {
		t.Errorf("torn record: %v, %+v", err, got.step("b"))
	}
}

// BenchmarkFrozenList: freezing and reading back a million statements.
func BenchmarkFrozenList(b *testing.B) {
	const n = 1000000
	st := newTestState(b)
	for b.Loop() {
		list, err := st.freeze("g", func(add func(string) error) error {
			for i := 0; i < n; i++ {
				if err := add(fmt.Sprintf("SELECT %d AS n, 'a generated statement of a typical length'", i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		r, err := list.Read(0)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := r.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
		r.Close()
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
	st, err := loadState(state)
	if err != nil {
		t.Fatal(err)
	}
	g := st.step("g")
	if g.Status != Succeeded || g.FrozenLen != 10000 || g.Outputs["executed"] != float64(10000) {
		t.Errorf("step %+v", g)
	}
	list, err := openFrozen(g.Frozen, 0)
	if err != nil || list.Len() != 10000 {
		t.Fatalf("frozen list: %v, %v", list, err)
	}
	if got := readAll(t, list, 9999); len(got) != 1 || got[0] != "INSERT INTO t VALUES (10000)" {
		t.Errorf("last statement %q", got)
	}
}
