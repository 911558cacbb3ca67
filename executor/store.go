package executor

import (
	"io"
)

// Store keeps one run's durable state: a snapshot, a journal of records
// appended after it, blobs (a generate step's frozen list, the runbook as it
// ran), and the lock that keeps two executors apart. The file store
// (FileStore) is the first implementation; the state's model and encoding
// (State, its records) know nothing of where the bytes go.
type Store interface {
	// Where names the store in messages (a path; never a password).
	Where() string
	// Lock takes the run's exclusive lock; it fails with exit code 4 when
	// another process holds it. The lock dies with its process.
	Lock() error
	// Holder reports, without taking the lock, whether a process holds it,
	// and who ("" when unknown).
	Holder() (held bool, who string)
	// Read returns the snapshot and a reader of the journal's records (JSON
	// lines; nil when there are none); snapshot is nil when there is no
	// state. It needs no lock.
	Read() (snapshot []byte, journal io.ReadCloser, err error)
	// Create writes a new snapshot and starts an empty journal.
	Create(snapshot []byte) error
	// Append appends a record (one JSON line, without its newline) to the
	// journal; durable makes it, and every record before it, durable before
	// returning.
	Append(record []byte, durable bool) error
	// Compact replaces the snapshot and empties the journal.
	Compact(snapshot []byte) error
	// PutBlob writes a blob durably under a key (replacing one of that key)
	// and returns the reference a record keeps; an error of write is
	// returned as it is.
	PutBlob(key string, write func(w io.Writer) error) (ref string, err error)
	// OpenBlob opens a blob by its reference.
	OpenBlob(ref string) (io.ReadCloser, error)
	// Archive moves everything of the run (snapshot, journal, blobs) aside
	// under a name made of suffix, and returns where it went.
	Archive(suffix string) (string, error)
	// Close releases the lock and whatever the store holds open.
	Close() error
}
