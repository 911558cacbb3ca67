package actions

import (
	"encoding/json"
	"testing"
)

// TestOutputsJSON: Outputs encode as encoding/json encodes the map, with or
// without the fast path.
func TestOutputsJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Outputs
		fast bool
	}{
		{"nil", nil, true},
		{"empty", Outputs{}, true},
		{"sql counts", Outputs{"rows_affected": int64(1), "statements": 1}, true},
		{"every plain kind", Outputs{"s": "x y", "t": true, "f": false, "n": nil, "i32": int32(-7), "u": uint64(1 << 63), "i": -1}, true},
		{"escaped string", Outputs{"s": "a \"b\" <c> & d\n\u2028é"}, false},
		{"escaped key", Outputs{"a&b": 1}, false},
		{"float", Outputs{"ratio": 0.1}, false},
		{"rows", Outputs{"rows": []map[string]any{{"n": int64(1)}}, "row": map[string]any{"n": int64(1)}}, false},
		{"strings", Outputs{"items": []string{"a", "b"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, fast := AppendOutputs(nil, tc.o); fast != tc.fast {
				t.Errorf("fast path %v, want %v", fast, tc.fast)
			}
			want, err := json.Marshal(map[string]any(tc.o))
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("got %s, want %s", got, want)
			}
			// As a field, and inside a map of any.
			got, _ = json.Marshal(struct {
				O Outputs        `json:"o,omitempty"`
				M map[string]any `json:"m"`
			}{tc.o, map[string]any{"x": tc.o}})
			want, _ = json.Marshal(struct {
				O map[string]any `json:"o,omitempty"`
				M map[string]any `json:"m"`
			}{tc.o, map[string]any{"x": map[string]any(tc.o)}})
			if string(got) != string(want) {
				t.Errorf("as a field: got %s, want %s", got, want)
			}
		})
	}
}
