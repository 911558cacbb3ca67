package executor

import (
	"os"
	"syscall"
)

// datasync flushes f's data to stable storage, with only the metadata needed
// to read it back (fdatasync): for the preallocated journal, the records.
func datasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
