package actions

import (
	"strconv"
	"testing"

	"github.com/runbookhq/runbook/internal/event"
)

// When somebody watches, a pipe reports the bytes it moves; its expected
// total is the size of the table data of the database its first stage reads
// (conn:), none otherwise. Nobody watching: no counting at all.
func TestShellPipeProgress(t *testing.T) {
	db := newDB(t)
	db.exec(t, "CREATE TABLE filler AS SELECT repeat('x', 1000) AS x FROM generate_series(1, 3000)")
	want, err := strconv.ParseInt(db.value(t, tableDataSQL), 10, 64)
	if err != nil || want < 3_000_000 {
		t.Fatalf("table data %d, %v", want, err)
	}
	const steps = `
  - id: from-db
    shell:
      pipe:
        - cmd: [sh, -c, 'for i in 1 2 3 4 5 6 7 8; do head -c 65536 /dev/zero; sleep 0.2; done']
          conn: db
        - cmd: [sh, -c, 'cat >/dev/null']
  - id: from-file
    shell:
      pipe:
        - cmd: [sh, -c, 'for i in 1 2 3 4 5 6 7 8; do head -c 65536 /dev/zero; sleep 0.2; done']
        - cmd: [sh, -c, 'cat >/dev/null']
`
	for _, tc := range []struct {
		step      string
		watched   bool
		wantTotal int64
	}{
		{"from-db", true, want},
		{"from-file", true, 0},
		{"from-db", false, 0},
	} {
		f := newFixture(t, map[string]string{"db": db.url}, steps, fixtureOpts{terminal: tc.watched})
		out := f.mustRun(tc.step)
		if !tc.watched {
			if _, counted := out["bytes"]; counted {
				t.Errorf("%s unwatched: bytes counted: %v", tc.step, out)
			}
			continue
		}
		if out["bytes"] != int64(8*65536) {
			t.Errorf("%s: outputs.bytes = %v, want %d", tc.step, out["bytes"], 8*65536)
		}
		live := f.live.all()
		if len(live) < 2 {
			t.Fatalf("%s: %d progress events, want some", tc.step, len(live))
		}
		var last int64
		for _, ev := range live {
			p := ev.(event.Progressor).Progress()
			if p.Total != tc.wantTotal || p.Estimated != (tc.wantTotal > 0) || p.Unit != "bytes" || p.Done < last {
				t.Errorf("%s: progress %+v, want a total of %d", tc.step, p, tc.wantTotal)
			}
			last = p.Done
		}
		if len(f.events("cmd.progress")) != 0 {
			t.Errorf("%s: progress reached the log", tc.step)
		}
	}
}
