package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
	var flush []float64 // nanoseconds
	for i := 0; i < 200; i++ {
		t := time.Now()
		if _, err := f.WriteAt(rec, int64(i*len(rec))); err != nil {
			return "?"
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return "?"
		}
		flush = append(flush, float64(time.Since(t)))
	}
	var spawn []float64
	for i := 0; i < 30; i++ {
		t := time.Now()
		if exec.Command("/bin/true").Run() != nil {
			break
		}
		spawn = append(spawn, float64(time.Since(t)))
	}
	return fmt.Sprintf("write + fdatasync of 512 B: median %s; starting /bin/true: median %s", median(flush), median(spawn))
}

// median is the median of durations in nanoseconds (statsOf's), 0 for none.
func median(ns []float64) time.Duration {
	if len(ns) == 0 {
		return 0
	}
	return time.Duration(statsOf(ns).med).Round(time.Microsecond)
}
