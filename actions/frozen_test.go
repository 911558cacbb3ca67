package actions

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func readAll(t testing.TB, l Statements, from int) []string {
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
	st := &memJournal{}
	long := "SELECT '" + strings.Repeat("long ", 150<<10) + "'" // beyond the reader's buffer
	want := []string{"ALTER TABLE \"Weird\"\"name\" OWNER TO app", "SELECT 'line\nbreak', '\\', '\x01', 'é', '\u2028'", "", long,
		"INSERT INTO t VALUES ('<&>')", long + "\\"}
	list, err := freeze(st, func(add func(string) error) error {
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
	// Counted again when the journal did not record the count.
	l2, err := openFrozen(st, -1)
	if err != nil || l2.Len() != len(want) {
		t.Fatalf("openFrozen: %v, %v", l2, err)
	}
	// The file is a JSON array, as docs/state.md says; an older state's list
	// (one line) reads the same.
	st.blobs[genUnit] = []byte(`["a","b\n",  "c"]` + "\n")
	l3, err := openFrozen(st, -1)
	if err != nil || l3.Len() != 3 || strings.Join(readAll(t, l3, 1), "|") != "b\n|c" {
		t.Fatalf("old format: %v %v", l3, err)
	}
	// An error of the writer is returned as it is, and records nothing.
	boom := errors.New("boom")
	other := &memJournal{}
	if _, err := freeze(other, func(add func(string) error) error { add("x"); return boom }); err != boom {
		t.Errorf("error = %v", err)
	}
	if len(other.blobs) != 0 {
		t.Errorf("left behind: %v", other.blobs)
	}
}

// BenchmarkFrozenList: freezing and reading back a million statements.
func BenchmarkFrozenList(b *testing.B) {
	const n = 1000000
	st := &memJournal{}
	for b.Loop() {
		list, err := freeze(st, func(add func(string) error) error {
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
