package executor

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/internal/jsonstr"
)

// The state's journal records and its snapshot are encoded without
// reflection in the common case: a step's record is written twice per sql
// step (before COMMIT and at its end), and encoding/json's reflective path
// was most of the CPU a record cost (docs/performance.md, P3). The fast path
// writes exactly the bytes json.Marshal writes — the sha256 chain is over
// them — and anything it does not handle plainly (a string that needs
// escaping, an output of another type than a string, an integer or a
// boolean, a time outside RFC 3339, raw JSON that is not compact) sends the
// whole value to json.Marshal. TestStateJSONFastPath compares the two.

// stepStateJSON is StepState without its MarshalJSON: the reflective path.
type stepStateJSON StepState

// MarshalJSON implements json.Marshaler: the fast path, or encoding/json's.
// An encoder with HTML escaping off still gets <, > and & escaped in a
// record that takes encoding/json's path (no such encoder writes a state).
func (s *StepState) MarshalJSON() ([]byte, error) {
	if b, ok := appendStep(make([]byte, 0, 512), s); ok {
		return b, nil
	}
	return json.Marshal((*stepStateJSON)(s))
}

// encodeRecord encodes a journal record as json.Marshal does.
func encodeRecord(r *record) ([]byte, error) {
	if r.Step != nil && r.Server == nil && r.Outcome == "" && r.Ended == nil && r.Approve == nil && r.Reopen == nil {
		// Room for the chain value the journal line adds (chainRecord).
		b := append(make([]byte, 0, 640), `{"step":`...)
		if b, ok := appendStep(b, r.Step); ok {
			return append(b, '}'), nil
		}
	}
	return json.Marshal(r)
}

// appendStep appends s as json.Marshal writes it; false when the fast path
// does not handle one of its values.
func appendStep(b []byte, s *StepState) ([]byte, bool) {
	ok := true
	str := func(b []byte, v string) []byte {
		if !jsonstr.Plain(v) {
			ok = false
		}
		b = append(b, '"')
		b = append(b, v...)
		return append(b, '"')
	}
	b = append(b, `{"id":`...)
	b = str(b, s.ID)
	b = append(b, `,"digest":`...)
	b = str(b, s.Digest)
	b = append(b, `,"status":`...)
	b = str(b, s.Status)
	if s.Attempts != 0 {
		b = append(b, `,"attempts":`...)
		b = strconv.AppendInt(b, int64(s.Attempts), 10)
	}
	if s.Started != nil {
		b = append(b, `,"started_at":`...)
		b, ok = appendTime(b, *s.Started, ok)
	}
	if s.Ended != nil {
		b = append(b, `,"ended_at":`...)
		b, ok = appendTime(b, *s.Ended, ok)
	}
	if s.Error != "" {
		b = append(b, `,"error":`...)
		b = str(b, s.Error)
	}
	if len(s.Outputs) > 0 {
		b = append(b, `,"outputs":`...)
		var fast bool
		if b, fast = actions.AppendOutputs(b, s.Outputs); !fast {
			ok = false
		}
	}
	if len(s.Units) > 0 {
		b = append(b, `,"units":{`...)
		for i, k := range sortedKeys(s.Units) {
			if i > 0 {
				b = append(b, ',')
			}
			b = str(b, k)
			b = append(b, ':')
			b, ok = appendUnit(b, s.Units[k], ok)
		}
		b = append(b, '}')
	}
	if len(s.Blobs) > 0 {
		b = append(b, `,"blobs":{`...)
		for i, k := range sortedKeys(s.Blobs) {
			if i > 0 {
				b = append(b, ',')
			}
			b = str(b, k)
			b = append(b, ':')
			b = str(b, s.Blobs[k])
		}
		b = append(b, '}')
	}
	return append(b, '}'), ok
}

// appendUnit appends u as json.Marshal writes it.
func appendUnit(b []byte, u *UnitState, ok bool) ([]byte, bool) {
	if u == nil {
		return append(b, "null"...), ok
	}
	if len(u.Async) > 0 || !jsonstr.Plain(u.Conn) {
		return b, false
	}
	n := len(b)
	b = append(b, '{')
	sep := func() {
		if len(b) > n+1 {
			b = append(b, ',')
		}
	}
	if len(u.Data) > 0 {
		sep()
		b = append(b, `"data":`...)
		b, ok = appendRaw(b, u.Data, ok)
	}
	if u.AtRisk {
		sep()
		b = append(b, `"at_risk":true`...)
	}
	if len(u.Durable) > 0 {
		sep()
		b = append(b, `"durable":`...)
		b, ok = appendRaw(b, u.Durable, ok)
	}
	if u.Conn != "" {
		sep()
		b = append(b, `"conn":"`...)
		b = append(b, u.Conn...)
		b = append(b, '"')
	}
	if !u.Server.IsZero() {
		sep()
		b = append(b, `"server_start":`...)
		b, ok = appendTime(b, u.Server, ok)
	}
	if u.Tx != nil {
		sep()
		b = append(b, `"tx":`...)
		b, ok = appendTx(b, u.Tx, ok)
	}
	if u.AsyncUncounted {
		sep()
		b = append(b, `"async_uncounted":true`...)
	}
	return append(b, '}'), ok
}

// appendTx appends tx as json.Marshal writes it.
func appendTx(b []byte, tx *actions.Tx, ok bool) ([]byte, bool) {
	if !jsonstr.Plain(tx.Unit) || !jsonstr.Plain(tx.Conn) {
		return b, false
	}
	b = append(b, `{"unit":"`...)
	b = append(b, tx.Unit...)
	b = append(b, `","conn":"`...)
	b = append(b, tx.Conn...)
	b = append(b, `","xid":`...)
	b = strconv.AppendUint(b, tx.XID, 10)
	b = append(b, `,"backend_pid":`...)
	b = strconv.AppendUint(b, uint64(tx.BackendPID), 10)
	b = append(b, `,"backend_start":`...)
	b, ok = appendTime(b, tx.BackendStart, ok)
	if !tx.Server.IsZero() {
		b = append(b, `,"server_start":`...)
		b, ok = appendTime(b, tx.Server, ok)
	}
	if tx.Async {
		b = append(b, `,"async":true`...)
	}
	if len(tx.Data) > 0 {
		b = append(b, `,"data":`...)
		b, ok = appendRaw(b, tx.Data, ok)
	}
	return append(b, '}'), ok
}

// appendTime appends t as time.Time's MarshalJSON writes it, when that
// succeeds: a year of four digits, an offset of whole minutes under a day.
func appendTime(b []byte, t time.Time, ok bool) ([]byte, bool) {
	_, off := t.Zone()
	if y := t.Year(); y < 0 || y > 9999 || off%60 != 0 || off <= -24*3600 || off >= 24*3600 {
		return b, false
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), ok
}

// appendRaw appends raw JSON that encoding/json would copy unchanged: valid,
// with no white space (compacted away) and no <, >, & or non-ASCII byte
// (escaped).
func appendRaw(b, raw []byte, ok bool) ([]byte, bool) {
	for _, c := range raw {
		if c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == '&' {
			return b, false
		}
	}
	if !json.Valid(raw) {
		return b, false
	}
	return append(b, raw...), ok
}
