package executor

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// WithSignals returns a context cancelled by the first SIGINT or SIGTERM: the
// running SQL is cancelled on the server, child process groups are ended, the
// state is left resumable, and clean-up (always) steps run, bounded. A second
// signal ends the process at once with exit code 130.
func WithSignals(ctx context.Context, stderr *os.File) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			cancel(fmt.Errorf("interrupted by %v", sig))
		case <-done:
			return
		}
		select {
		case <-ch:
			if stderr != nil {
				fmt.Fprintln(stderr, "runbook: second interrupt: exiting now; the state is resumable")
			}
			os.Exit(130)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel(nil)
	}
}
