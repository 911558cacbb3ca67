//go:build unix && !linux

package pipeline

import (
	"os"
	"sync/atomic"
	"syscall"
)

// sysProcAttr puts the child in process group pgid (a new one, led by the
// child, when pgid is 0). Pdeathsig exists on Linux only.
func sysProcAttr(pgid int) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pgid: pgid}
}

// groupAlive reports whether process group pgid has a member (zombies count).
func groupAlive(pgid int) bool {
	return syscall.Kill(-pgid, 0) != syscall.ESRCH
}

func isTerminal(f *os.File) bool { return false }

func splicePump(src, dst *os.File, n *atomic.Int64, s *pumpStopper) error {
	return errNoSplice
}

var pumpPipeSize = 0

func setPipeSize(f *os.File, size int) {}
