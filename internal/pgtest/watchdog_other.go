//go:build !unix

package pgtest

import "io/fs"

// watchdog is a no-op where there are no Unix process groups: a test binary
// that dies there leaves its clusters behind.
type watchdog struct{}

func startWatchdog(base string, stop []string) *watchdog { return nil }

func (d *watchdog) dismiss() {}

func fileOwner(fi fs.FileInfo) (uid, gid int, ok bool) { return 0, 0, false }
