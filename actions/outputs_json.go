package actions

import (
	"encoding/json"
	"sort"
	"strconv"

	"github.com/runbookhq/runbook/internal/jsonstr"
)

// MarshalJSON implements json.Marshaler: the bytes encoding/json writes for
// the map, without reflection when every key is plain and every value a
// string, an integer, a boolean or nil (a sql step's counts). A step's
// outputs are encoded several times a step (its unit's data, the state's
// record, masking); encoding/json's map path was a good part of the CPU a
// one-statement step cost (docs/performance.md, P3). Anything else — a
// key or string to escape, a float, rows — takes encoding/json's path
// (TestOutputsJSON compares the two). An encoder with HTML escaping off
// still gets <, > and & escaped in a value that takes that path.
func (o Outputs) MarshalJSON() ([]byte, error) {
	if b, ok := AppendOutputs(make([]byte, 0, 64), o); ok {
		return b, nil
	}
	return json.Marshal(map[string]any(o))
}

// AppendOutputs appends o as json.Marshal writes it ("null" for nil); false
// when a key or a value is not one its fast path handles (the appended
// bytes are then not to be used).
func AppendOutputs(b []byte, o Outputs) ([]byte, bool) {
	if o == nil {
		return append(b, "null"...), true
	}
	keys := make([]string, 0, len(o))
	for k := range o {
		if !jsonstr.Plain(k) {
			return b, false
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, '"', ':')
		switch v := o[k].(type) {
		case nil:
			b = append(b, "null"...)
		case string:
			if !jsonstr.Plain(v) {
				return b, false
			}
			b = append(b, '"')
			b = append(b, v...)
			b = append(b, '"')
		case bool:
			b = strconv.AppendBool(b, v)
		case int:
			b = strconv.AppendInt(b, int64(v), 10)
		case int64:
			b = strconv.AppendInt(b, v, 10)
		case int32:
			b = strconv.AppendInt(b, int64(v), 10)
		case uint64:
			b = strconv.AppendUint(b, v, 10)
		default:
			return b, false
		}
	}
	return append(b, '}'), true
}
