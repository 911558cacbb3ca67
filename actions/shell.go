package actions

import (
	"context"
	"errors"

	"github.com/runbookhq/runbook/schema"
)

// Shell runs a bash command or a pipeline of commands.
type Shell struct {
	Command schema.Template            `yaml:"run" short:"true" doc:"A command line run by bash -euo pipefail -c."`
	Pipe    []Stage                    `yaml:"pipe" doc:"Commands wired stdout to stdin and started together; every stage's exit status counts."`
	Conn    schema.ConnRef             `yaml:"conn" doc:"With run: give the command this connection's libpq environment (PGHOST, PGPORT, PGUSER, PGDATABASE, password via a 0600 passfile)."`
	Env     map[string]schema.Template `yaml:"env" doc:"Extra environment variables for every command."`
	Dir     string                     `yaml:"dir" doc:"Working directory, relative to the runbook's directory."`
	Capture string                     `yaml:"capture" enum:"stdout" doc:"stdout: keep the (last stage's) standard output, up to 1 MiB, as outputs.stdout."`

	Keys schema.Positions `yaml:"-"`
}

// Stage is one command of a pipe.
type Stage struct {
	Cmd  []schema.Template          `yaml:"cmd" required:"true" doc:"The command and its arguments, not run through a shell. Never put secrets here: use conn or env."`
	Conn schema.ConnRef             `yaml:"conn" doc:"Give this stage the connection's libpq environment."`
	Env  map[string]schema.Template `yaml:"env" doc:"Extra environment variables for this stage."`
	Name string                     `yaml:"name" doc:"Name for logs; defaults to the command's base name."`

	Pos schema.Pos `yaml:"-"`
}

func init() {
	Register("shell", "Run a command (bash) or a pipeline of commands with pipefail semantics.", func() Runner { return &Shell{} })
}

// Kind implements schema.Action.
func (*Shell) Kind() string { return "shell" }

// Validate implements schema.Validator.
func (a *Shell) Validate(v *schema.Validation) {
	switch {
	case a.Command.IsZero() && len(a.Pipe) == 0:
		v.Errorf(v.Step.ActionPos, "shell needs run (a command line) or pipe (a list of commands)")
	case !a.Command.IsZero() && a.Pipe != nil:
		v.Errorf(a.Keys["pipe"], "shell takes run or pipe, not both")
	}
	if a.Pipe != nil && a.Conn.Name != "" {
		v.Errorf(a.Keys["conn"], "with pipe, give conn to each stage that needs it")
	}
	for i, s := range a.Pipe {
		if len(s.Cmd) == 0 && s.Pos.Line != 0 {
			v.Errorf(s.Pos, "pipe stage %d: cmd must name a command", i+1)
		}
	}
}

// Run implements Runner.
func (a *Shell) Run(ctx context.Context, rc *Context) (Outputs, error) {
	return nil, errors.New("Shell: not implemented yet")
}
