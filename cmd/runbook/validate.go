package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runbookhq/runbook/runbooks"
	"github.com/runbookhq/runbook/schema"
)

func newValidateCmd(s *streams) *cobra.Command {
	var pf paramFlags
	var strict bool
	c := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a runbook and its params without running anything",
		Long: `validate loads a runbook strictly and reports every problem at once, each as
FILE:LINE:COL: message. With --vars/--var it also checks the param values.
Without them only the document is checked. It connects to nothing.
Warnings (FILE:LINE:COL: warning: …) go to standard error: a param without
pattern interpolated as raw text into SQL or a shell command line. --strict
makes them errors. Exit 0 when valid, 2 otherwise.`,
		Example: `  runbook validate migrate.yaml
  runbook validate builtin:heroku-to-crunchy-bridge --vars customers/acme.yaml
  runbook validate migrate.yaml --strict`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			defer collectLate(args[0])()
			var rb *schema.Runbook
			var err error
			if len(pf.varsFiles)+len(pf.vars) == 0 {
				// Without param flags, check the document only: a library
				// runbook is valid before any customer's values exist.
				rb, err = runbooks.Load(args[0])
			} else {
				rb, _, err = pf.load(args[0])
			}
			if err != nil {
				return err
			}
			if err := warnings(s, rb, strict); err != nil {
				return err
			}
			fmt.Fprintf(s.out, "%s: ok (runbook %s, %d steps)\n", args[0], rb.Name, len(rb.Steps))
			return nil
		},
	}
	pf.register(c)
	c.Flags().BoolVar(&strict, "strict", false, "treat warnings as errors (exit 2)")
	return c
}

// warnings prints the runbook's warnings on standard error, each as
// FILE:LINE:COL: warning: message (with a snippet on a terminal); with strict
// they are returned as errors instead (exit 2).
func warnings(s *streams, rb *schema.Runbook, strict bool) error {
	if len(rb.Warnings) == 0 {
		return nil
	}
	if strict {
		return rb.Warnings
	}
	// One write for them all: a long runbook can have thousands, and a
	// write each cost P4's validate and plan a system call per step.
	tty := isTerminal(s.err)
	var b strings.Builder
	for _, w := range rb.Warnings {
		b.WriteString(w.Warning())
		b.WriteByte('\n')
		if tty {
			b.WriteString(w.Snippet())
		}
	}
	io.WriteString(s.err, b.String())
	return nil
}

// exactArgs is cobra.ExactArgs with an exit-2 usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %d argument(s), got %d (usage: %s)", c.CommandPath(), n, len(args), c.UseLine())
		}
		return nil
	}
}
