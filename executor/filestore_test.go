package executor

import (
	"fmt"
	"github.com/runbookhq/runbook/internal/atomicfile"
	"os"
	"path/filepath"
	"testing"
)

// TestFileStoreReplaceCrashWindows stops a compaction at each point of the
// file store's replace and loads the state as a resume would: it is the old
// snapshot with its journal, or the new snapshot alone, and passes its
// integrity check (a new snapshot read with the old journal would not: the
// records follow the old seal).
func TestFileStoreReplaceCrashWindows(t *testing.T) {
	for _, stop := range []string{"after PATH.next", "after emptying the journal", "done"} {
		t.Run(stop, func(t *testing.T) {
			st := newTestState(t)
			fs := st.store.(*FileStore)
			st.Steps = []*StepState{{ID: "a", Status: Pending}, {ID: "b", Status: Pending}}
			if err := st.create(); err != nil {
				t.Fatal(err)
			}
			if err := st.update("a", true, func(s *StepState) { s.Status = Succeeded }, nil); err != nil {
				t.Fatal(err)
			}
			// The compaction's snapshot carries a change the journal does not.
			st.change("b", func(s *StepState) { s.Status = Failed }, nil)
			st.mu.Lock()
			snap, err := st.snapshotLocked()
			st.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			switch stop {
			case "after PATH.next":
				err = atomicfile.Write(fs.path+".next", snap)
			case "after emptying the journal":
				if err = atomicfile.Write(fs.path+".next", snap); err == nil {
					err = fs.journal.Truncate(0)
				}
			case "done":
				err = fs.Compact(snap)
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := loadState(NewFileStore(fs.path))
			if err != nil {
				t.Fatalf("loading after a stop %s: %v", stop, err)
			}
			wantB := Failed // the new snapshot
			if stop == "after PATH.next" {
				wantB = Pending // the old snapshot and its journal
			}
			if a, b := got.step("a").Status, got.step("b").Status; a != Succeeded || b != wantB {
				t.Errorf("after a stop %s: a %s, b %s; want a succeeded, b %s", stop, a, b, wantB)
			}
			// A resume then replaces it again, and reads back its own.
			if err := got.create(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(fs.path + ".next"); !os.IsNotExist(err) {
				t.Errorf("PATH.next is left after a replace: %v", err)
			}
			if again, err := loadState(NewFileStore(fs.path)); err != nil || again.step("b").Status != wantB {
				t.Errorf("after the resume's new snapshot: %v", err)
			}
			got.store.Close()
		})
	}
}

// BenchmarkFileStoreAppend measures a record's append, durable (fdatasync)
// or not, for comparison with the control database's (internal/pgstore).
func BenchmarkFileStoreAppend(b *testing.B) {
	rec := []byte(`{"step":{"id":"s042","digest":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","status":"running","attempts":1},"chain":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}`)
	for _, durable := range []bool{true, false} {
		b.Run(fmt.Sprintf("durable=%v", durable), func(b *testing.B) {
			s := NewFileStore(filepath.Join(b.TempDir(), "s.state.json"))
			defer s.Close()
			if err := s.Create([]byte("s\n")); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if err := s.Append(rec, durable); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
