package executor

import (
	"bytes"
	"context"
	"encoding/json"
	"io"

	"github.com/runbookhq/runbook/actions"
)

// journal implements actions.Journal on the state: a step's units of work
// and blobs.
type journal struct {
	r    *runner
	step string
}

func (j *journal) Unit(name string) json.RawMessage {
	if u := j.r.st.unit(j.step, name); u != nil {
		return u.Data
	}
	return nil
}

func (j *journal) BeforeCommit(ctx context.Context, tx actions.Tx) error {
	tx.Data = j.r.maskJSON(tx.Data)
	u := j.r.st.unit(j.step, tx.Unit)
	next := &UnitState{Tx: &tx}
	if u != nil {
		c := *u
		c.Tx = &tx
		next = &c
	}
	err := j.r.st.update(j.step, true, nil, map[string]*UnitState{tx.Unit: next})
	crashPoint("before-commit", j.step)
	return err
}

func (j *journal) Committed(tx actions.Tx) error {
	crashPoint("committed", j.step)
	tx.Data = j.r.maskJSON(tx.Data)
	next := j.r.st.unit(j.step, tx.Unit).committed(tx)
	if tx.XID != 0 {
		// No record of its own: if the process dies before the step's next
		// record carries it, resume settles the transaction recorded by
		// BeforeCommit with pg_xact_status and reaches the same state. That
		// saves one record per transaction.
		j.r.st.change(j.step, nil, map[string]*UnitState{tx.Unit: next})
		return nil
	}
	// Work without a transaction id to settle with: its record is written at
	// once (not fsynced: see actions.Generate).
	return j.r.st.update(j.step, false, nil, map[string]*UnitState{tx.Unit: next})
}

func (j *journal) PutBlob(name string, write func(w io.Writer) error) error {
	return j.r.st.putBlob(j.step, name, write)
}

func (j *journal) OpenBlob(name string) (io.ReadCloser, error) {
	return j.r.st.openBlob(j.step, name)
}

// maskJSON masks the secrets in JSON the state is about to keep (a unit's
// data may hold a step's outputs, rows a query returned): the state never
// holds a secret (docs/secrets.md). JSON that masking would break is kept
// out whole.
func (r *runner) maskJSON(b []byte) []byte {
	if b == nil {
		return nil
	}
	m := r.red.Bytes(b)
	if bytes.Equal(m, b) {
		return b
	}
	if !json.Valid(m) {
		return []byte(`"(withheld: it held a secret)"`)
	}
	return m
}

// maskOutputs returns outputs as the state may keep them: with their secrets
// masked.
func (r *runner) maskOutputs(out actions.Outputs) actions.Outputs {
	if out == nil {
		return nil
	}
	b, err := out.MarshalJSON() // what json.Marshal writes, without its second pass
	if err != nil {
		return out
	}
	m := r.maskJSON(b)
	if bytes.Equal(m, b) {
		return out
	}
	var masked actions.Outputs
	if json.Unmarshal(m, &masked) != nil {
		return actions.Outputs{"withheld": "the outputs held a secret"}
	}
	return masked
}
