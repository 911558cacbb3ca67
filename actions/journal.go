package actions

import (
	"context"
	"encoding/json"
	"errors"
	"io"

	"github.com/runbookhq/runbook/internal/pgtx"
)

// Journal is a step's durable record of its progress, kept by the executor
// in the run's state. An action records its progress as named units of work
// (a generate step's statements, a table part of a copy …), each with
// action-defined data, and any number of transactions in flight at once, on
// any connections. Every call that says so is durable (fsynced) before it
// returns: a crash after it returns loses nothing it recorded.
//
// After a crash, before the step runs again, the executor settles every
// transaction a dead run left in flight (pg_xact_status; the dead run's
// open transaction is ended first): one that committed makes its unit's data
// what its Tx said, one that did not is forgotten. Unit then answers with
// what is known committed.
type Journal interface {
	// Unit returns a unit's data as of its last known commit, nil when the
	// unit has none.
	Unit(name string) json.RawMessage
	// BeforeCommit records, durably, that tx is about to commit: COMMIT may
	// be sent only after it returns nil. A unit has at most one transaction
	// in flight; units may have theirs at the same time.
	BeforeCommit(ctx context.Context, tx Tx) error
	// Committed records that tx committed: its unit's data becomes tx.Data.
	// It need not be durable: until a later record carries it, the executor
	// settles the transaction with the server after a crash. A Tx without
	// an XID records work done without a journaled transaction (a statement
	// in autocommit, with Async set: not known on the server's disk), or,
	// without Async, that the server flushed everything the unit committed
	// up to Data; it is written at once, not fsynced.
	//
	// An asynchronous commit leaves the unit's data at risk until a
	// synchronous one on the same server: if the server restarts in between
	// (and may have lost it), the executor stops the resume and says so,
	// in the words of the action's Describer.
	Committed(tx Tx) error
	// PutBlob makes a blob of the step durable (written by write, then
	// fsynced) under a name; a blob of that name is replaced. An error of
	// write is returned as it is, and nothing is recorded.
	PutBlob(name string, write func(w io.Writer) error) error
	// OpenBlob opens a blob PutBlob made durable, in this run or one before
	// a crash; ErrNoBlob when there is none.
	OpenBlob(name string) (io.ReadCloser, error)
}

// ErrNoBlob is returned by OpenBlob for a blob that was never put.
var ErrNoBlob = errors.New("no such blob")

// Tx is a transaction about to commit: which unit of work it carries, the
// transaction's identity on its server, and the unit's data once it commits.
type Tx struct {
	Unit string `json:"unit"`
	pgtx.Tx
	// Data is the unit's data once this transaction commits.
	Data json.RawMessage `json:"data,omitempty"`
}
