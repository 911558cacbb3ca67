// Command runbook executes declarative YAML runbooks for PostgreSQL operations.
// See README.md and docs/cli.md. This package is the command line only: it parses
// flags, calls the library packages and maps their errors to exit codes.
package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

func main() {
	os.Exit(profiled(func() int { return Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr) }))
}

// profiled runs f with a CPU profile written to $RUNBOOK_CPUPROFILE when it is
// set: for the performance work (docs/performance.md), on the real binary as
// the benchmarks run it.
func profiled(f func() int) int {
	path := os.Getenv("RUNBOOK_CPUPROFILE")
	if path == "" {
		return f()
	}
	out, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "runbook: RUNBOOK_CPUPROFILE:", err)
		return f()
	}
	defer out.Close()
	if err := pprof.StartCPUProfile(out); err != nil {
		fmt.Fprintln(os.Stderr, "runbook: RUNBOOK_CPUPROFILE:", err)
		return f()
	}
	defer pprof.StopCPUProfile()
	return f()
}
