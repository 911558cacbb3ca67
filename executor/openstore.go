package executor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/pgstore"
	"github.com/runbookhq/runbook/schema"
)

// StateEnv is the environment variable that says where states are kept when
// --state is not given (docs/state.md): a control database's URL, or a
// directory for state files.
const StateEnv = "RUNBOOK_STATE"

// OpenStore returns the store a state spec names (docs/state.md, "Where"):
//
//   - a postgres:// or postgresql:// URL: the control database's store
//     (docs/state-postgres.md), for the run named by the URL's ?key=, else
//     by the key derived from the runbook's name and non-secret params
//     (StateKey);
//   - a path: the file store of that state file;
//   - "": the spec in $RUNBOOK_STATE — a URL as above, or a directory that
//     holds the derived state files — else the derived state file
//     (DefaultStatePath).
//
// rb and vals may be nil when the spec names its run itself (a path, a URL
// with ?key=). Nothing is opened or connected before the store's first use.
func OpenStore(spec string, rb *schema.Runbook, vals schema.Values) (Store, error) {
	key := ""
	if rb != nil {
		key = StateKey(rb, vals)
	}
	if spec == "" {
		env := strings.TrimSpace(os.Getenv(StateEnv))
		switch {
		case env != "" && pgstore.IsURL(env):
			spec = env
		case rb == nil:
			return nil, errNoRun
		case env != "":
			return NewFileStore(filepath.Join(env, filepath.Base(DefaultStatePath(rb, vals)))), nil
		default:
			return NewFileStore(DefaultStatePath(rb, vals)), nil
		}
	}
	if pgstore.IsURL(spec) {
		s, err := pgstore.Open(spec, key)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return NewFileStore(spec), nil
}

var _ Store = (*pgstore.Store)(nil)

// errNoRun: neither a runbook nor a spec names the state.
var errNoRun = exitcode.With(exitcode.Invalid, errors.New("no state named: give the runbook FILE (with its params), or --state"))

// StateKey is the name of a run's state in a control database: the derived
// state file's name (DefaultStatePath) without its directory and
// .state.json.
func StateKey(rb *schema.Runbook, vals schema.Values) string {
	return strings.TrimSuffix(filepath.Base(DefaultStatePath(rb, vals)), ".state.json")
}

// Optional capabilities of a store, which Run uses when a store has them.
type (
	// secretStore has secrets of its own (a control database's password):
	// the run masks them like its own.
	secretStore interface{ Secrets() []string }
	// runStore names the run that holds its lock (a lease row).
	runStore interface{ SetRun(runID string) }
	// losingStore can lose its lock while the run goes on (a connection to
	// a control database): Lost is closed then, and the run stops.
	losingStore interface {
		Lost() <-chan struct{}
		LostErr() error
	}
)

// stopOnLost returns a context cancelled, with the store's reason, when the
// store loses its lock.
func stopOnLost(ctx context.Context, s losingStore) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		select {
		case <-s.Lost():
			cancel(s.LostErr())
		case <-done:
		}
	}()
	return ctx, func() {
		close(done)
		cancel(nil)
	}
}
