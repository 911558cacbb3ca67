// Package heap prepares the Go heap of a short, allocation-heavy command.
//
// Loading a runbook allocates about 40 times the file's size (yaml.v3's
// nodes, then the decoded document), nearly all of it kept until the process
// exits. Each new 4 KiB page of that heap costs a page fault on first touch,
// and on a virtual machine the faults were a third of `runbook plan`'s time
// for a 5,000-step runbook (docs/performance.md, P4). Warm makes that memory
// resident in advance, in transparent huge pages where the kernel offers them:
// a few hundred faults of 2 MiB instead of thousands of 4 KiB ones.
package heap

import (
	"runtime"
)

// hugePage is the size of a transparent huge page on amd64 and arm64.
const hugePage = 2 << 20

// Warm makes about n bytes of heap resident and free, so that what the
// process allocates next reuses them instead of faulting new pages in: it
// allocates one block of n bytes (rounded up to a huge page), asks the kernel
// to back it with huge pages, touches every page, and frees it with a
// collection. It does nothing where huge pages are not offered (other
// systems than Linux, or transparent huge pages set to never): touching the
// pages one by one would cost what it saves. It reports whether it warmed.
func Warm(n int) bool {
	if n < hugePage || !hugePages() {
		return false
	}
	n = (n + hugePage - 1) &^ (hugePage - 1)
	b := make([]byte, n+hugePage) // room to align to a huge page inside
	advise(b)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	runtime.KeepAlive(b)
	b = nil
	runtime.GC()
	return true
}
