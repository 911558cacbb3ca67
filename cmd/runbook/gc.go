package main

import "runtime/debug"

// lateHeap is the heap size up to which commands that load a runbook and exit
// leave the garbage collector idle: far beyond what an ordinary runbook needs
// (a 5,000-step one allocates about 40 MB to validate, 65 MB to plan), and past the
// live heap of the largest one accepted (16 MiB of YAML: about 500 MB).
const lateHeap = 1 << 30

// collectLate makes the garbage collector wait until the heap reaches
// lateHeap, for validate and plan: loading is short and allocation-heavy
// (yaml.v3's nodes), and most of what it allocates is kept until the process
// exits, so collections at the default pace cost 10–13% of those commands'
// time and freed little (docs/performance.md, P4). Beyond lateHeap the
// collector keeps the heap there. The returned function restores the
// defaults (it matters only to tests, which run commands in process).
func collectLate() (restore func()) {
	percent := debug.SetGCPercent(-1)
	limit := debug.SetMemoryLimit(lateHeap)
	return func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	}
}
