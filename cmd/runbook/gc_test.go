package main

import (
	"runtime/debug"
	"testing"
)

// collectLate idles the collector up to lateHeap and its restore puts the
// process's settings back (tests run commands in process).
func TestCollectLate(t *testing.T) {
	percent, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	debug.SetGCPercent(percent)
	restore := collectLate("")
	gotPercent, gotLimit := debug.SetGCPercent(-1), debug.SetMemoryLimit(-1) // -1 reads without changing the limit
	restore()
	if gotPercent != -1 || gotLimit != lateHeap {
		t.Errorf("while loading: GC percent %d, memory limit %d; want -1 (idle), %d", gotPercent, gotLimit, int64(lateHeap))
	}
	if p, l := debug.SetGCPercent(percent), debug.SetMemoryLimit(-1); p != percent || l != limit {
		t.Errorf("after restore: GC percent %d, memory limit %d; want %d, %d", p, l, percent, limit)
	}
}
