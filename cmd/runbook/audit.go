package main

import (
	"fmt"
	"regexp"

	"github.com/spf13/cobra"

	"github.com/runbookhq/runbook/executor"
)

func newAuditCmd(s *streams) *cobra.Command {
	c := &cobra.Command{
		Use:   "audit",
		Short: "Check audit logs",
		Long: `The audit log (--log FILE of run and resume) is a file of JSON lines, one event
per line. Every line carries seq (1, 2, 3 … across every run appended to the
file) and prev (the SHA-256 of the line before it), so that an edited, removed,
inserted or reordered line breaks the chain. See docs/audit.md.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown audit command %q: the command is runbook audit verify LOG", args[0])
			}
			return usagef("audit needs a subcommand: runbook audit verify LOG")
		},
	}
	c.AddCommand(newAuditVerifyCmd(s))
	return c
}

var hexHash = regexp.MustCompile(`^[0-9a-f]{64}$`)

func newAuditVerifyCmd(s *streams) *cobra.Command {
	var anchor string
	c := &cobra.Command{
		Use:   "verify LOG",
		Short: "Verify the hash chain of an audit log",
		Long: `verify recomputes the chain of an audit log: each line's seq follows the one
before, and each line's prev is the SHA-256 of the line before (its bytes,
newline included; the first line's prev is the SHA-256 of nothing, e3b0c442…).

An intact log prints its line count, the runs it holds and its head (the seq
and SHA-256 of the last line), and exits 0. Otherwise verify names the first
bad line and why — not JSON, a seq out of order (a line removed, inserted,
repeated or moved), a prev that does not match (a line changed), a torn last
line — and exits 1.

The chain cannot see lines cut from the very end of the log. Record the head
elsewhere (runbook report prints it for the change ticket) and give it back
with --anchor: verify then also requires the log to still hold that line.`,
		Example: `  runbook audit verify acme.log
  runbook audit verify acme.log --anchor 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if anchor != "" && !hexHash.MatchString(anchor) {
				return usagef("--anchor must be a SHA-256 in lowercase hex (64 characters), not %q", anchor)
			}
			res, err := executor.VerifyLogAnchor(args[0], anchor)
			if err != nil {
				return err
			}
			fmt.Fprintln(s.out, res.Summary())
			fmt.Fprintf(s.out, "head: seq %d, sha256 %s\n", res.Seq, res.Head)
			if res.Anchored {
				fmt.Fprintf(s.out, "anchor %s found: the log is unchanged up to it\n", anchor)
			}
			return nil
		},
	}
	c.Flags().StringVar(&anchor, "anchor", "", "also require a line whose SHA-256 is this (a head recorded earlier)")
	return c
}
