package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runbookhq/runbook/runbooks"
)

func newListCmd(s *streams) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List the built-in runbooks",
		Example: `  runbook list`,
		Args:    exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			for _, name := range runbooks.Names() {
				rb, err := runbooks.Load(runbooks.Prefix + name)
				if err != nil {
					return err
				}
				desc := strings.TrimSpace(rb.Description)
				if i := strings.IndexByte(desc, '\n'); i >= 0 {
					desc = desc[:i]
				}
				fmt.Fprintf(s.out, "%-28s %s\n", name, desc)
			}
			return nil
		},
	}
}

func newShowCmd(s *streams) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Print a built-in runbook's YAML",
		Long: `show prints a built-in runbook as it is embedded, to read it or to copy it as
the start of your own: runbook show NAME > mine.yaml. Its editor modeline then
points at runbook.schema.json beside the copy: write that with
runbook schema > runbook.schema.json.`,
		Example: `  runbook show heroku-to-crunchy-bridge > customer.yaml`,
		Args:    exactArgs(1),
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			return runbooks.Names(), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			src, err := runbooks.Export(strings.TrimPrefix(args[0], runbooks.Prefix))
			if err != nil {
				return usagef("%v", err)
			}
			_, err = s.out.Write(src)
			return err
		},
	}
}
