package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/runbookhq/runbook/executor"
)

func newReportCmd(s *streams) *cobra.Command {
	var pf paramFlags
	var state, logPath, format string
	var maxStatements int
	c := &cobra.Command{
		Use:   "report [FILE] [--state F] [--log LOG]",
		Short: "Write a Markdown report of a run for the change ticket",
		Long: `report tells what a run did, for a change ticket: who ran it and when, which
runbook (path and digest) with which params (secrets masked), the ticket, the
final status of every step, and — from the audit log — each session (the run,
then every resume) step by step: SQL statements with rows affected, generated
statements, commands with their exit status, assertion results, approvals and
errors. Only the events of the state's run are used.

The audit log's chain is verified first; the report says whether it is intact
and gives its head (seq and SHA-256 of the last line) to record in the ticket,
so that the log can later be checked with runbook audit verify LOG --anchor HEAD.

Give the runbook and its params to find the default state ($RUNBOOK_STATE, else
the state file under .runbook), or --state: a file, or a control database's URL
with ?key=.
Without --log the report comes from the state alone.`,
		Example: `  runbook report migrate.yaml --vars customers/acme.yaml --log acme.log > CHG-1234.md
  runbook report --state .runbook/migrate-3f2a9c1b7e4d.state.json --log acme.log`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 1 || (len(args) == 0) == (state == "") {
				return usagef("report takes a runbook FILE (with its params) or --state F")
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			if format != "markdown" {
				return usagef("--format must be markdown, not %q", format)
			}
			store, err := pf.openStore(state, firstArg(args))
			if err != nil {
				return err
			}
			defer store.Close()
			rep, err := executor.BuildReport(executor.ReportOptions{Store: store, LogPath: logPath, MaxStatements: maxStatements})
			if err != nil {
				return err
			}
			if rep.Verify != nil && rep.Verify.Bad != nil {
				fmt.Fprintf(s.err, "runbook: warning: the audit log's chain is broken: %s\n", rep.Verify.Summary())
			}
			return rep.WriteMarkdown(s.out)
		},
	}
	pf.register(c)
	c.Flags().StringVar(&state, "state", "", "state: a file, or a control database postgres://USER@HOST/DB[?key=NAME] (default: $RUNBOOK_STATE)")
	c.Flags().StringVar(&logPath, "log", "", "the audit log the run wrote (--log of run and resume)")
	c.Flags().StringVar(&format, "format", "markdown", "output format: markdown")
	c.Flags().IntVar(&maxStatements, "max-statements", 10, "generated statements listed per step (the rest are counted)")
	return c
}
