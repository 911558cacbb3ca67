package heap

import (
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
)

var sink [][]byte

// TestWarm: where huge pages are offered, the warmed block is backed by huge
// pages and what is allocated next reuses it instead of growing the heap;
// elsewhere Warm does nothing.
func TestWarm(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // as the commands run it
	const n = 64 << 20
	if !hugePages() {
		if Warm(n) {
			t.Fatal("Warm warmed without huge pages")
		}
		t.Log("no transparent huge pages here: Warm does nothing")
		return
	}
	if Warm(hugePage - 1) {
		t.Error("Warm warmed less than a huge page")
	}
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	if !Warm(n) {
		t.Fatal("Warm did not warm")
	}
	if got := anonHuge(t); got < n/2 {
		t.Errorf("%d MiB in huge pages after warming %d MiB, want at least half", got>>20, n>>20)
	}
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	sink = make([][]byte, 0, n/2/64)
	for range n / 2 / 64 {
		sink = append(sink, make([]byte, 64))
	}
	var m2 runtime.MemStats
	runtime.ReadMemStats(&m2)
	if grew := int64(m2.HeapSys) - int64(m1.HeapSys); grew > 8<<20 { // HeapSys may also shrink a little
		t.Errorf("the heap grew by %d MiB for %d MiB of small objects after warming: the warmed block was not reused", grew>>20, n/2>>20)
	}
	t.Logf("heap %d → %d → %d MiB; idle %d → %d, released %d → %d", m0.HeapSys>>20, m1.HeapSys>>20, m2.HeapSys>>20, m1.HeapIdle>>20, m2.HeapIdle>>20, m1.HeapReleased>>20, m2.HeapReleased>>20)
	sink = nil
}

// anonHuge is the process's memory in transparent huge pages.
func anonHuge(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`AnonHugePages:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no AnonHugePages in /proc/self/smaps_rollup:\n%s", b)
	}
	kb, _ := strconv.Atoi(string(m[1]))
	return kb << 10
}
