package executor_test

import (
	"net/url"
	"path/filepath"
	"testing"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/pgtest"
)

// stateStore is one kind of store the state's tests run against: every
// guarantee (crash, fault points, drift, the lock) holds for each.
type stateStore struct {
	name string
	// spec returns the --state of a run's state called name: a file in
	// dir, or a key in a control database of the test's own.
	spec func(t *testing.T, dir, name string) string
}

var stateStores = []stateStore{
	{"file", func(t *testing.T, dir, name string) string { return filepath.Join(dir, name+".json") }},
	{"postgres", func(t *testing.T, dir, name string) string { return controlURL(t, name) }},
}

// controlURL returns the URL of a fresh control database on the shared
// server, naming the run key.
func controlURL(t *testing.T, key string) string {
	t.Helper()
	u, err := url.Parse(pgtest.Shared(t).NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("key", key)
	u.RawQuery = q.Encode()
	return u.String()
}

// forEachStore runs a test against each store.
func forEachStore(t *testing.T, test func(t *testing.T, store stateStore)) {
	for _, s := range stateStores {
		t.Run(s.name, func(t *testing.T) { test(t, s) })
	}
}

// newHarnessOn is newHarness with its state in store.
func newHarnessOn(t *testing.T, store stateStore) *harness {
	h := newHarness(t)
	h.state = store.spec(t, h.dir, "state")
	return h
}

// hasState reports whether a state spec holds a run's state.
func hasState(t *testing.T, spec string) bool {
	t.Helper()
	s, err := executor.OpenStore(spec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	snap, j, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	if j != nil {
		j.Close()
	}
	return snap != nil
}

// readStatus reads a state spec's status.
func readStatus(t *testing.T, spec string) *executor.Status {
	t.Helper()
	s, err := executor.OpenStore(spec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := executor.ReadStatus(s)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
