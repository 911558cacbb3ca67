package main

import (
	"bytes"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/atomicfile"
	"github.com/runbookhq/runbook/internal/exitcode"
)

func newReportCmd(s *streams) *cobra.Command {
	var pf paramFlags
	var state, logPath, format, out string
	var maxStatements int
	c := &cobra.Command{
		Use:   "report [FILE] [--state F] [--log LOG] [--format markdown|html] [--out FILE]",
		Short: "Write a report of a run for the change ticket (Markdown or HTML)",
		Long: `report tells what a run did, for a change ticket: who ran it and when, which
runbook (path and digest) with which params (secrets masked), the ticket, the
final status of every step, and — from the audit log — each invocation (the run,
then every resume) step by step: SQL statements with rows affected, generated
statements, commands with their exit status, assertion results, approvals and
errors. Only the events of the state's run are used.

The audit log's chain is verified first; the report says whether it is intact
and gives its head (seq and SHA-256 of the last line) to record in the ticket,
so that the log can later be checked with runbook audit verify LOG --anchor HEAD.

Give the runbook and its params to find the default state ($RUNBOOK_STATE, else
the state file under .runbook), or --state: a file, or a control database's URL
with ?key=.
Without --log the report comes from the state alone.

--format html writes one self-contained HTML file (no external assets: it
works offline, and prints) with the same account plus a timeline of the run:
steps as bars on a time axis, each invocation (the run, every resume) a band,
where it paused, was interrupted or stopped, approvals, failures and retries
marked, a lane per part of a step's parallel work; the audit chain's head on
top. --out writes the report to a file (replaced atomically) instead of
standard output.`,
		Example: `  runbook report migrate.yaml --vars customers/acme.yaml --log acme.log > CHG-1234.md
  runbook report --state .runbook/migrate-3f2a9c1b7e4d.state.json --log acme.log
  runbook report migrate.yaml --vars customers/acme.yaml --log acme.log --format html --out CHG-1234.html`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 1 || (len(args) == 0) == (state == "") {
				return usagef("report takes a runbook FILE (with its params) or --state F")
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			if format != "markdown" && format != "html" {
				return usagef("--format must be markdown or html, not %q", format)
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
			var b bytes.Buffer
			write := rep.WriteMarkdown
			if format == "html" {
				write = rep.WriteHTML
			}
			if err := write(&b); err != nil {
				return err
			}
			if out == "" {
				_, err := s.out.Write(b.Bytes())
				return err
			}
			if err := atomicfile.Write(out, b.Bytes()); err != nil {
				return exitcode.With(exitcode.Environment, fmt.Errorf("writing the report: %w", err))
			}
			return nil
		},
	}
	pf.register(c)
	c.Flags().StringVar(&state, "state", "", "state: a file, or a control database postgres://USER@HOST/DB[?key=NAME] (default: $RUNBOOK_STATE)")
	c.Flags().StringVar(&logPath, "log", "", "the audit log the run wrote (--log of run and resume)")
	c.Flags().StringVar(&format, "format", "markdown", "output format: markdown, or html (one self-contained file with a timeline)")
	c.Flags().StringVar(&out, "out", "", "write the report to FILE instead of standard output")
	c.Flags().IntVar(&maxStatements, "max-statements", 10, "generated statements listed per step (the rest are counted)")
	return c
}
