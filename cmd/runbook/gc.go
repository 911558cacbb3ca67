package main

import (
	"os"
	"runtime/debug"

	"github.com/runbookhq/runbook/internal/heap"
)

// lateHeap is the heap size up to which commands that load a runbook and exit
// leave the garbage collector idle: far beyond what an ordinary runbook needs
// (a 5,000-step one allocates about 40 MB to validate, 50 MB to plan), and past the
// live heap of the largest one accepted (16 MiB of YAML: about 500 MB).
const lateHeap = 1 << 30

// heapPerByte is about what loading and planning a runbook allocates per byte
// of its file (40 MB to validate and 48 MB to plan 957 KB).
const heapPerByte = 48

// collectLate prepares the heap for validate and plan of the runbook at path:
// loading is short and allocation-heavy (yaml.v3's nodes), and most of what it
// allocates is kept until the process exits. The garbage collector waits
// until the heap reaches lateHeap (collections at the default pace cost
// 10–13% of those commands' time and freed little), and the heap the load
// will need is made resident in advance, in huge pages where the kernel
// offers them (heap.Warm; docs/performance.md, P4). The returned function
// restores the collector's defaults (it matters only to tests, which run
// commands in process).
func collectLate(path string) (restore func()) {
	percent := debug.SetGCPercent(-1)
	limit := debug.SetMemoryLimit(lateHeap)
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		heap.Warm(int(min(fi.Size()*heapPerByte, lateHeap/2)))
	}
	return func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	}
}
