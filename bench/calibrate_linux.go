package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"time"
)

// calibration measures what the absolute goals (P3's overhead per step, P4's
// times) depend on, so that figures from different machines can be read side
// by side: a small write flushed with fdatasync in a preallocated file (what
// every durable record costs) and starting a process.
func calibration(dir string) string {
	f, err := os.OpenFile(filepath.Join(dir, "calibrate"), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		return "?"
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, 1<<20), 0); err != nil || f.Sync() != nil {
		return "?"
	}
	rec := make([]byte, 512)
	var flush []time.Duration
	for i := 0; i < 200; i++ {
		t := time.Now()
		if _, err := f.WriteAt(rec, int64(i*len(rec))); err != nil {
			return "?"
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return "?"
		}
		flush = append(flush, time.Since(t))
	}
	var spawn []time.Duration
	for i := 0; i < 30; i++ {
		t := time.Now()
		if exec.Command("/bin/true").Run() != nil {
			break
		}
		spawn = append(spawn, time.Since(t))
	}
	return fmt.Sprintf("write + fdatasync of 512 B: median %s; starting /bin/true: median %s", median(flush), median(spawn))
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2].Round(time.Microsecond)
}
