package actions

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/runbookhq/runbook/internal/redact"
	"github.com/runbookhq/runbook/schema"
)

// Context is what an action sees while it runs one attempt of its step. The
// executor builds it; actions use nothing else of the run.
type Context struct {
	Step *schema.Step
	// Env evaluates the step's templates: params, earlier steps' outputs,
	// connection facts, run facts.
	Env *schema.Env
	// Log is the step's logger. Secrets are masked at its writer; an action
	// still never logs a connection string or a secret param on purpose.
	Log zerolog.Logger
	// Conns opens and describes the runbook's connections.
	Conns Conns
	// Redact masks secrets in text an action produces (child output, errors).
	Redact *redact.Redactor
	// File is the runbook's path (or builtin:NAME), for positions in errors.
	File string
	// Dir is the runbook's directory (relative files, shell's dir); "" for a
	// built-in runbook.
	Dir string
	// Journal records, durably, what must survive a crash inside the step.
	Journal Journal
	// Approver decides confirm steps.
	Approver Approver
	// Terminal is where progress lines go when the output is a terminal; nil
	// otherwise.
	Terminal io.Writer
	// Attempt is the attempt number, from 1.
	Attempt int
}

// Conns gives actions the runbook's connections.
type Conns interface {
	// Conn returns the named connection's session, connecting on first use.
	Conn(ctx context.Context, name string) (*pgx.Conn, error)
	// ChildEnv returns the libpq environment (PGHOST, PGPORT, PGUSER,
	// PGDATABASE, PGSSLMODE, PGPASSFILE …) that lets a child process reach the
	// named connection, without the password ever being in its argv, and the
	// files the child must inherit for it (its ExtraFiles: descriptors 3, 4 …;
	// PGPASSFILE may name one of them as /dev/fd/N).
	ChildEnv(ctx context.Context, name string) ([]string, []*os.File, error)
}

// Approver decides whether a confirm step may go on.
type Approver interface {
	// Approve asks for (or finds) approval of the step; it returns how it was
	// given ("terminal", "--yes", "--approve") and who gave it, or an error
	// (ErrApprovalRequired when nobody can approve now).
	Approve(ctx context.Context, stepID, message string) (Approval, error)
}

// Approval records who approved a confirm step, when and how.
type Approval struct {
	By  string    `json:"by"`
	How string    `json:"how"`
	At  time.Time `json:"at"`
}

// Journal is the step's durable record inside the state file. The executor's
// implementation makes every call durable (fsync) before returning; a crash
// after a call returns loses nothing the call recorded.
type Journal interface {
	// Resume returns what an earlier, interrupted run of this step recorded,
	// after the executor has settled any transaction whose commit was in doubt
	// (Done then counts it). Nil when the step starts afresh.
	Resume() *Progress
	// Freeze makes a generate step's statement list durable before the first
	// statement runs. It calls write once, with add, which appends one
	// statement to the list: the action adds the statements as the generator
	// query's rows arrive, so the list is never held in memory whole. An
	// error of write (or add) is returned as it is, and nothing is recorded.
	// When Freeze returns nil, the whole list is durable and the step's
	// record names it; the returned Statements reads it back (and so does
	// Resume after a crash).
	Freeze(write func(add func(stmt string) error) error) (Statements, error)
	// BeforeCommit records that a transaction is about to commit. After a
	// crash, resume asks the server (pg_xact_status) whether it did.
	BeforeCommit(ctx context.Context, tx PendingTx) error
	// Committed records that the transaction of the last BeforeCommit committed.
	Committed(tx PendingTx) error
}

// Progress is a step's durable progress.
type Progress struct {
	// Statements is a generate step's frozen list; nil when it has none. It
	// lives in a file of its own (docs/state.md), not in the record.
	Statements Statements `json:"-"`
	// Done counts the statements known committed.
	Done int `json:"done"`
	// Durable counts the statements whose commit is known to be on the
	// server's disk: a generate step commits its transactions but the last
	// asynchronously (docs/state.md, "Exactly once"), and each synchronous
	// commit makes every commit before it durable. Statements Durable+1 …
	// Done did commit, but a crash of the server may still lose them.
	Durable int `json:"durable"`
	// Server is the start time of the server (pg_postmaster_start_time)
	// that committed them: resume compares it with the server's, and a
	// server that restarted since may have lost statements after Durable.
	Server time.Time `json:"server_start,omitzero"`
	// Outputs are the outputs recorded with the last commit, so that a step
	// whose commit is settled as done after a crash still has them.
	Outputs Outputs `json:"outputs,omitempty"`
}

// PendingTx identifies a transaction about to commit.
type PendingTx struct {
	Conn string `json:"conn"`
	// XID is pg_current_xact_id() of the transaction.
	XID uint64 `json:"xid"`
	// BackendPID and BackendStart identify the server process, so that resume
	// can end a transaction the dead client left open, and only that one.
	BackendPID   uint32    `json:"backend_pid"`
	BackendStart time.Time `json:"backend_start"`
	// Server is the server's start time (pg_postmaster_start_time): a
	// transaction id is only known to mean this transaction on the same
	// run of the server (after a crash the server may hand out again the ids
	// of transactions whose records it lost).
	Server time.Time `json:"server_start,omitzero"`
	// Async is set when the COMMIT is asynchronous (synchronous_commit off
	// for this transaction): acknowledged before it is on the server's disk.
	Async bool `json:"async,omitempty"`
	// Durable is Progress.Durable as it stood when this transaction began.
	Durable int `json:"durable"`
	// Done is the step's statement count once this transaction commits.
	Done int `json:"done"`
	// Outputs are the step's outputs once this transaction commits.
	Outputs Outputs `json:"outputs,omitempty"`
}

// Statements is a generate step's frozen statement list, read in order, a
// statement at a time: a list of a million statements is never held in
// memory whole.
type Statements interface {
	// Len is how many statements the list holds.
	Len() int
	// Read returns a reader of the statements from index from (0-based) on.
	Read(from int) (StatementReader, error)
}

// StatementReader reads a frozen list's statements in order.
type StatementReader interface {
	// Next returns the next statement, or io.EOF after the last.
	Next() (string, error)
	Close() error
}

// StatementList is a Statements held in memory (small lists, tests).
type StatementList []string

// Len implements Statements.
func (l StatementList) Len() int { return len(l) }

// Read implements Statements.
func (l StatementList) Read(from int) (StatementReader, error) {
	return &listReader{l: l, i: min(max(from, 0), len(l))}, nil
}

type listReader struct {
	l StatementList
	i int
}

func (r *listReader) Next() (string, error) {
	if r.i >= len(r.l) {
		return "", io.EOF
	}
	r.i++
	return r.l[r.i-1], nil
}

func (r *listReader) Close() error { return nil }
