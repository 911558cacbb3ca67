package executor

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/internal/pgtx"
)

// TestStateJSONFastPath: a step's record encoded without reflection is
// byte for byte what encoding/json writes (the journal's sha256 chain is
// over those bytes), and the fast path is taken for the records a sql step
// writes.
func TestStateJSONFastPath(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 13, 58, 9, 205291257, time.UTC)
	t1 := t0.Add(24 * time.Millisecond)
	whole := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	zone := time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("X", -(3*3600+30*60)))
	tx := &actions.Tx{Unit: "commit", Tx: pgtx.Tx{Conn: "db", XID: 22742, BackendPID: 4480, BackendStart: t0.Add(-time.Hour), Server: t0.Add(-2 * time.Hour)},
		Data: json.RawMessage(`{"rows_affected":1,"statements":1}`)}
	for _, tc := range []struct {
		name string
		s    StepState
		fast bool
	}{
		{"pending", StepState{ID: "s0001", Digest: "ab", Status: Pending}, true},
		{"empty", StepState{}, true},
		{"running with a transaction", StepState{ID: "s0003", Digest: "7921", Status: Running, Attempts: 1, Started: &t0,
			Units: map[string]*UnitState{"commit": {Tx: tx}}}, true},
		{"succeeded", StepState{ID: "s0003", Digest: "7921", Status: Succeeded, Attempts: 1, Started: &t0, Ended: &t1,
			Outputs: actions.Outputs{"statements": 1, "rows_affected": int64(1), "name": "x", "ok": true, "none": nil, "big": uint64(1 << 63), "small": int32(-3)},
			Units:   map[string]*UnitState{"commit": {Data: tx.Data, Conn: "db", Server: t0}, "gone": nil}}, true},
		{"async and blobs", StepState{ID: "g", Digest: "d", Status: Failed, Error: "step g failed: boom", Started: &whole, Ended: &zone,
			Units: map[string]*UnitState{"u": {Data: json.RawMessage(`{"done":3}`), AtRisk: true, Durable: json.RawMessage(`{"done":1}`), AsyncUncounted: true,
				Tx: &actions.Tx{Unit: "u", Tx: pgtx.Tx{Conn: "db", XID: 9, Async: true}}}},
			Blobs: map[string]string{"list": "st.json.g.list", "b": "x"}}, true},
		{"empty maps", StepState{ID: "e", Outputs: actions.Outputs{}, Units: map[string]*UnitState{}, Blobs: map[string]string{}}, true},
		{"escaped string", StepState{ID: "s1", Status: Failed, Error: "relation \"t\" <does not> exist & so\non\t\u2028é"}, false},
		{"escaped key", StepState{ID: "s1", Outputs: actions.Outputs{"a<b": 1}}, false},
		{"float output", StepState{ID: "s1", Outputs: actions.Outputs{"ratio": 0.5}}, false},
		{"rows output", StepState{ID: "s1", Outputs: actions.Outputs{"rows": []map[string]any{{"n": 1}}}}, false},
		{"raw with spaces", StepState{ID: "s1", Units: map[string]*UnitState{"u": {Data: json.RawMessage(`{"a": 1}`)}}}, false},
		{"raw with html", StepState{ID: "s1", Units: map[string]*UnitState{"u": {Data: json.RawMessage(`{"a":"<b>"}`)}}}, false},
		{"async commits", StepState{ID: "s1", Units: map[string]*UnitState{"u": {Async: []AsyncCommit{{XID: 1, Data: json.RawMessage(`{}`)}}}}}, false},
		{"year 10000", StepState{ID: "s1", Started: ptr(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			_, fast := appendStep(nil, &s)
			if fast != tc.fast {
				t.Errorf("fast path %v, want %v", fast, tc.fast)
			}
			want, wantErr := json.Marshal(struct {
				Step *stepStateJSON `json:"step,omitempty"`
			}{(*stepStateJSON)(&s)})
			got, err := encodeRecord(&record{Step: &s})
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("error %v, want %v", err, wantErr)
			}
			if string(got) != string(want) {
				t.Errorf("record\n got %s\nwant %s", got, want)
			}
			want, _ = json.Marshal((*stepStateJSON)(&s))
			got, err = json.Marshal(&s)
			if err != nil && wantErr == nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("MarshalJSON\n got %s\nwant %s", got, want)
			}
			var back StepState
			if wantErr == nil {
				if err := json.Unmarshal(got, &back); err != nil {
					t.Errorf("read back: %v", err)
				}
			}
		})
	}
	// Records of the run's header fields take encoding/json's path.
	now := t0
	got, err := encodeRecord(&record{Outcome: "succeeded", Ended: &now})
	if err != nil || string(got) != `{"outcome":"succeeded","ended_at":"2026-12-03T13:58:09.205291257Z"}` {
		t.Errorf("header record %s, %v", got, err)
	}
}

func ptr[T any](v T) *T { return &v }
