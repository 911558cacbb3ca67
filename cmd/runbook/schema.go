package main

import (
	"github.com/spf13/cobra"

	"github.com/runbookhq/runbook/schema"
)

func newSchemaCmd(s *streams) *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of the runbook document",
		Long: `schema prints the JSON Schema (draft-07) of the runbook document, derived
from the same definitions the loader uses. Point your editor at it for
completion and validation, e.g. with a first line
  # yaml-language-server: $schema=runbook.schema.json`,
		Example: `  runbook schema > runbook.schema.json`,
		Args:    exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			_, err := s.out.Write(schema.JSONSchema())
			return err
		},
	}
}
