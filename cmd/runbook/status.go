package main

import (
	"github.com/spf13/cobra"

	"github.com/runbookhq/runbook/executor"
)

func newStatusCmd(s *streams) *cobra.Command {
	var pf paramFlags
	var state, format string
	c := &cobra.Command{
		Use:   "status [FILE] [--state F]",
		Short: "Show where a run stands, step by step",
		Long: `status reads a run's state (without disturbing a run in progress) and shows
each step's status, attempts, duration and error, and who runs it now. Give the
runbook and its params to find the default state ($RUNBOOK_STATE, else the state
file under .runbook), or --state: a file, or a control database's URL with ?key=.`,
		Example: `  runbook status migrate.yaml --vars customers/acme.yaml
  runbook status --state .runbook/migrate-3f2a9c1b7e4d.state.json --format json
  runbook status --state 'postgres://runbook@control/runbook_control?key=migrate-3f2a9c1b7e4d'`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 1 || (len(args) == 0) == (state == "") {
				return usagef("status takes a runbook FILE (with its params) or --state F")
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return usagef("--format must be text or json, not %q", format)
			}
			store, err := pf.openStore(state, firstArg(args))
			if err != nil {
				return err
			}
			defer store.Close()
			st, err := executor.ReadStatus(store)
			if err != nil {
				return err
			}
			if format == "json" {
				return st.WriteJSON(s.out)
			}
			st.WriteText(s.out)
			return nil
		},
	}
	pf.register(c)
	c.Flags().StringVar(&state, "state", "", "state: a file, or a control database postgres://USER@HOST/DB[?key=NAME] (default: $RUNBOOK_STATE)")
	c.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return c
}
