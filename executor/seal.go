package executor

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/runbookhq/runbook/internal/exitcode"
)

// The state's integrity (docs/state.md, "Integrity"): the snapshot carries a
// seal, the SHA-256 of its own bytes (with the seal's value zeroed), and every
// journal record a chain value, the SHA-256 of the previous one (the seal for
// the first) and the record's bytes without it. A state edited by hand, a
// record changed or removed in the middle, or one that does not parse other
// than a torn last one is refused: nothing runs on the strength of a state
// that fails the check.

const (
	sealKey  = `"seal": "`
	chainKey = `,"chain":"`
)

var zeroHash = bytes.Repeat([]byte("0"), 64)

// seal returns a snapshot (MarshalIndent of a State whose Seal is zeroHash)
// with its seal filled in, and the seal.
func seal(b []byte) ([]byte, string, error) {
	i := bytes.LastIndex(b, []byte(sealKey))
	if i < 0 || len(b) < i+len(sealKey)+64 {
		return nil, "", fmt.Errorf("snapshot without a seal")
	}
	sum := sha256.Sum256(b)
	h := hex.EncodeToString(sum[:])
	copy(b[i+len(sealKey):], h)
	return b, h, nil
}

// checkSeal verifies a snapshot's seal and returns it.
func checkSeal(where string, b []byte) (string, error) {
	i := bytes.LastIndex(b, []byte(sealKey))
	if i < 0 || len(b) < i+len(sealKey)+64 {
		return "", tampered(where, "the snapshot has no seal")
	}
	v := i + len(sealKey)
	got := string(b[v : v+64])
	c := slices.Clone(b)
	copy(c[v:], zeroHash)
	sum := sha256.Sum256(c)
	if want := hex.EncodeToString(sum[:]); got != want {
		return "", tampered(where, "the snapshot does not match its seal: it was edited after runbook wrote it")
	}
	return got, nil
}

// chainRecord returns a record's journal line: rec (a JSON object) with its
// chain value after prev, and that value.
func chainRecord(prev string, rec []byte) ([]byte, string) {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write(rec)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	// The line is built in rec's own array when it has room (encodeRecord
	// leaves some): the caller gives rec up.
	line := append(rec[:len(rec)-1], chainKey...)
	line = hex.AppendEncode(line, sum[:])
	hexSum := string(line[len(line)-2*sha256.Size:])
	return append(line, '"', '}'), hexSum
}

// unchain splits a journal line into the record and its chain value, and
// checks the value against prev. ok is false when the line is not a chained
// record at all.
func unchain(prev string, line []byte) (rec []byte, sum string, ok, match bool) {
	n := len(chainKey) + 64 + 2
	if len(line) < n+1 || !bytes.HasSuffix(line, []byte(`"}`)) || !bytes.Equal(line[len(line)-n:len(line)-66], []byte(chainKey)) {
		return nil, "", false, false
	}
	sum = string(line[len(line)-66 : len(line)-2])
	rec = append(slices.Clone(line[:len(line)-n]), '}')
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write(rec)
	return rec, sum, true, hex.EncodeToString(h.Sum(nil)) == sum
}

// decodeStrict decodes JSON into v, refusing fields v does not have.
func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// tamperedError is a state that fails its integrity check.
type tamperedError struct{ msg string }

func (e *tamperedError) Error() string { return e.msg }

// ExitCode implements exitcode.Coder: nothing runs (exit 4).
func (e *tamperedError) ExitCode() int { return exitcode.Refused }

func tampered(where, why string) error {
	return &tamperedError{fmt.Sprintf("state %s failed its integrity check: %s. runbook will not run on it; "+
		"restore the state from a backup, or start over with runbook run --fresh (the state is archived) after checking what the run did (runbook report, the audit log)", where, why)}
}

// checkValues refuses values the state's format does not have.
func (st *State) checkValues() error {
	statuses := []string{Pending, Running, Succeeded, Failed, Skipped}
	for _, s := range st.Steps {
		if !slices.Contains(statuses, s.Status) {
			return tampered(st.store.Where(), fmt.Sprintf("step %s has status %q, which runbook never writes", s.ID, s.Status))
		}
	}
	switch st.Outcome {
	case "", "succeeded", "failed", "interrupted", "approval-required", "refused", "rejected":
	default:
		return tampered(st.store.Where(), fmt.Sprintf("the run's outcome %q is not one runbook writes", st.Outcome))
	}
	return nil
}
