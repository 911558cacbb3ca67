package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	_ "github.com/runbookhq/runbook/actions" // registers the action kinds
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/schema"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// streams are the command's standard streams.
type streams struct {
	in       io.Reader
	out, err io.Writer
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Main runs the command line and returns the exit code (docs/cli.md).
func Main(args []string, in io.Reader, out, errw io.Writer) int {
	s := &streams{in: in, out: out, err: errw}
	root := newRoot(s)
	root.SetArgs(args)
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errw)
	err := root.Execute()
	if err == nil {
		return exitcode.OK
	}
	code := exitcode.Of(err)
	var silent *silentError
	if errors.As(err, &silent) {
		return code
	}
	var usage *usageError
	if errors.As(err, &usage) || isCobraUsage(err) {
		code = exitcode.Invalid
	}
	printError(s, err)
	return code
}

// usageError is a command-line mistake: exit 2.
type usageError struct{ error }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// isCobraUsage recognises the errors cobra returns for bad flags and args.
func isCobraUsage(err error) bool {
	var ce *exitcode.Error
	if errors.As(err, &ce) {
		return false
	}
	var se schema.Errors
	if errors.As(err, &se) {
		return false
	}
	return flagErr(err)
}

// printError writes an error for the operator: a document's errors one per
// line as FILE:LINE:COL: message (with a snippet of the file on a terminal).
func printError(s *streams, err error) {
	var shown *shownError
	if errors.As(err, &shown) {
		return
	}
	var se schema.Errors
	if errors.As(err, &se) {
		tty := isTerminal(s.err)
		for _, e := range se {
			fmt.Fprintln(s.err, e.Error())
			if tty {
				if snip := e.Snippet(); snip != "" {
					fmt.Fprint(s.err, snip)
				}
			}
		}
		if len(se) > 1 {
			fmt.Fprintf(s.err, "%d problems\n", len(se))
		}
		return
	}
	fmt.Fprintf(s.err, "runbook: %v\n", err)
}

func newRoot(s *streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "runbook",
		Short: "Run declarative YAML runbooks for PostgreSQL operations",
		Long: `runbook executes declarative YAML runbooks for PostgreSQL operations: SQL steps,
shell pipelines such as pg_dump | pg_restore, SQL generated from the catalog,
assertions and human approvals. It keeps a durable state file so an interrupted
run resumes exactly where it stopped, and a tamper-evident JSON audit log.

Exit codes: 0 success · 1 a step failed · 2 invalid usage, runbook or params ·
3 approval required · 4 resume refused · 5 runbook cannot write its state or
audit log (nothing more ran; resumable) · 130 interrupted.`,
		Example: `  runbook validate migrate.yaml --vars customers/acme.yaml
  runbook plan builtin:heroku-to-crunchy-bridge --vars acme.yaml
  runbook run migrate.yaml --vars acme.yaml --log acme.log
  runbook list`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{fmt.Errorf("%w (see %s --help)", err, c.CommandPath())}
	})
	root.AddCommand(
		newValidateCmd(s),
		newPlanCmd(s),
		newRunCmd(s),
		newResumeCmd(s),
		newStatusCmd(s),
		newSchemaCmd(s),
		newListCmd(s),
		newShowCmd(s),
		newAuditCmd(s),
		newReportCmd(s),
		newFleetCmd(s),
		newWorkerCmd(s),
	)
	return root
}

// flagErr reports cobra's argument-count errors, which it returns unwrapped.
func flagErr(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "requires at least", "unknown flag", "unknown shorthand", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
