package main

import (
	"github.com/spf13/cobra"

	"github.com/runbookhq/runbook/executor"
)

func newPlanCmd(s *streams) *cobra.Command {
	var pf paramFlags
	var format, out, operator string
	var generate, strict bool
	c := &cobra.Command{
		Use:   "plan FILE",
		Short: "Show exactly what a run would do, and the plan's digest",
		Long: `plan resolves a runbook with its params as far as possible without
connecting: each param's value and where it came from (secrets as ***), each
connection's host, port, database and user, and each step with its templates
evaluated. With --generate it connects and runs each generate step's query in
a READ ONLY transaction (rolled back) to list the exact statements it would
execute; nothing is executed. Values that only the run can know are marked "(at run time)".
The plan digest changes whenever anything that would run changes.
With --out PLAN it writes a sealed plan file (docs/plan.md, "Sealed plans"):
runbook run --plan PLAN then executes exactly that plan, at most once, and
refuses (exit 4, with a diff) when the runbook, a param, a server or a
generated statement differs.
--format json prints the documented, stable shape of docs/plan.md.
Warnings go to standard error as validate prints them; --strict makes them
errors.`,
		Example: `  runbook plan migrate.yaml --vars customers/acme.yaml
  runbook plan migrate.yaml --vars acme.yaml --format json > acme-plan.json
  runbook plan migrate.yaml --vars acme.yaml --out acme.plan.json`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return usagef("--format must be text or json, not %q", format)
			}
			defer collectLate(args[0])()
			rb, vals, err := pf.load(args[0])
			if err != nil {
				return err
			}
			if err := warnings(s, rb, strict); err != nil {
				return err
			}
			if out != "" {
				sp, err := executor.MakeSealedPlan(c.Context(), rb, vals, operator)
				if err != nil {
					return err
				}
				if err := executor.WriteSealedPlan(out, sp); err != nil {
					return err
				}
				if format == "json" {
					_, err := s.out.Write(sp.Encode())
					return err
				}
				sp.WriteText(s.out, out)
				return nil
			}
			p, err := executor.NewPlan(rb, vals)
			if err != nil {
				return err
			}
			if generate {
				if err := p.Generate(c.Context(), rb, vals); err != nil {
					return err
				}
			}
			if format == "json" {
				return p.WriteJSON(s.out)
			}
			p.WriteText(s.out)
			return nil
		},
	}
	pf.register(c)
	c.Flags().StringVar(&format, "format", "text", "output format: text or json")
	c.Flags().BoolVar(&strict, "strict", false, "treat warnings (raw params in SQL or shell text) as errors (exit 2)")
	c.Flags().StringVar(&out, "out", "", "write a sealed plan file (implies --generate; also reads every connection's server identity) that runbook run --plan executes exactly, once (docs/plan.md)")
	c.Flags().StringVar(&operator, "operator", "", "who makes the plan, recorded in the plan file (default: the OS user)")
	c.Flags().BoolVar(&generate, "generate", false, "connect and run each generate step's query in a READ ONLY transaction to list the exact statements it would execute")
	return c
}
