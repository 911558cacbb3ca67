package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/runbooks"
	"github.com/runbookhq/runbook/schema"
)

// paramFlags are the [params] flags (docs/cli.md).
type paramFlags struct {
	varsFiles []string
	vars      []string
	cmd       *cobra.Command
}

func (p *paramFlags) register(c *cobra.Command) {
	p.cmd = c
	c.Flags().StringArrayVar(&p.varsFiles, "vars", nil, "vars file: a YAML map of param values (repeatable; later files win)")
	c.Flags().StringArrayVar(&p.vars, "var", nil, "param value NAME=VALUE (repeatable; wins over vars files; not for secrets: the command line is visible to every user of the machine)")
}

// load loads a runbook (a file or builtin:NAME) and resolves its params.
func (p *paramFlags) load(ref string) (*schema.Runbook, schema.Values, error) {
	return p.resolve(ref, false)
}

// locate loads a runbook and its non-secret params: enough to find its state.
func (p *paramFlags) locate(ref string) (*schema.Runbook, schema.Values, error) {
	return p.resolve(ref, true)
}

func (p *paramFlags) resolve(ref string, withoutSecrets bool) (*schema.Runbook, schema.Values, error) {
	rb, err := runbooks.Load(ref)
	if err != nil {
		return nil, nil, err
	}
	p.warnSecretVars(rb)
	vals, err := rb.ResolveParams(schema.ParamInputs{VarsFiles: p.varsFiles, Vars: p.vars, WithoutSecrets: withoutSecrets})
	if err != nil {
		return rb, nil, err
	}
	return rb, vals, nil
}

// openStore opens the store of a run: --state when given, else the one
// derived from the runbook and its non-secret params ($RUNBOOK_STATE, or the
// default state file).
func (p *paramFlags) openStore(state, ref string) (executor.Store, error) {
	if state != "" {
		return executor.OpenStore(state, nil, nil)
	}
	rb, vals, err := p.locate(ref)
	if err != nil {
		return nil, err
	}
	return executor.OpenStore("", rb, vals)
}

// firstArg is args[0], "" when there is none.
func firstArg(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

// warnSecretVars warns, once per param, when a secret param is given with
// --var: the value sits in the process list (ps, /proc/PID/cmdline) for
// every user of the machine while runbook runs.
func (p *paramFlags) warnSecretVars(rb *schema.Runbook) {
	if p.cmd == nil {
		return
	}
	warned := map[string]bool{}
	for _, kv := range p.vars {
		name, _, _ := strings.Cut(kv, "=")
		par := rb.Params.Lookup(name)
		if par == nil || !par.Secret || warned[name] {
			continue
		}
		warned[name] = true
		env := "add env: NAME to its definition and set NAME"
		if par.Env != "" {
			env = "export " + par.Env + "=…, which its env: reads"
		}
		fmt.Fprintf(p.cmd.ErrOrStderr(), "runbook: warning: secret param %s was given with --var: its value is on the command line, which every user of this machine can read (ps, /proc) while runbook runs; give it through the environment (%s) or a vars file readable only by you (--vars FILE) instead\n",
			name, env)
	}
}
