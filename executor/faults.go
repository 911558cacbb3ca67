package executor

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Fault injection for the crash tests: RUNBOOK_CRASH_AFTER=POINT:STEP[:N] makes
// the process kill itself with SIGKILL the Nth time (default 1) it passes POINT
// in STEP. Points: "before-commit" (the transaction id is durable, COMMIT not
// yet sent), "committed" (COMMIT done, the progress not yet recorded),
// "step-end" (the step's end recorded, the next step not started) and
// "run-end" with an empty STEP ("run-end:": the run's outcome recorded, its
// run.end not yet logged). It
// lets tests hit the in-doubt windows of docs/state.md deterministically; operators
// never set it.
var faults struct {
	once  sync.Once
	point string
	step  string
	n     int
	mu    sync.Mutex
	seen  int
}

func crashPoint(point, step string) {
	faults.once.Do(func() {
		spec := os.Getenv("RUNBOOK_CRASH_AFTER")
		parts := strings.Split(spec, ":")
		if len(parts) < 2 {
			return
		}
		faults.point, faults.step, faults.n = parts[0], parts[1], 1
		if len(parts) > 2 {
			faults.n, _ = strconv.Atoi(parts[2])
		}
	})
	if faults.point != point || faults.step != step {
		return
	}
	faults.mu.Lock()
	faults.seen++
	hit := faults.seen == faults.n
	faults.mu.Unlock()
	if hit {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // never returns
	}
}
