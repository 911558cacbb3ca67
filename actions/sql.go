package actions

import (
	"context"
	"errors"

	"github.com/runbookhq/runbook/internal/sqlsplit"
	"github.com/runbookhq/runbook/schema"
)

// SQL runs a script of one or more statements on a connection.
type SQL struct {
	On          schema.ConnRef    `yaml:"on" required:"true" doc:"The connection to run on."`
	Script      schema.Template   `yaml:"script" doc:"One or more SQL statements. May embed ${{ … }}; prefer args and ident() for values."`
	File        string            `yaml:"file" doc:"A .sql file, relative to the runbook, instead of script."`
	Args        []schema.Template `yaml:"args" doc:"Bind parameters $1, $2 … of a single-statement script."`
	Transaction *bool             `yaml:"transaction" default:"true" doc:"true: the whole script commits or rolls back as one. false: each statement on its own (CREATE INDEX CONCURRENTLY, VACUUM, ALTER SYSTEM)."`
	Capture     bool              `yaml:"capture" doc:"Keep the last statement's rows as outputs.rows (a list of maps) and outputs.row (the first)."`

	Keys schema.Positions `yaml:"-"`

	fileScript string
}

func init() {
	Register("sql", "Run SQL on a connection.", func() Runner { return &SQL{} })
}

// Kind implements schema.Action.
func (*SQL) Kind() string { return "sql" }

// InTransaction reports whether the script runs as one transaction.
func (a *SQL) InTransaction() bool { return a.Transaction == nil || *a.Transaction }

// Validate implements schema.Validator.
func (a *SQL) Validate(v *schema.Validation) {
	switch {
	case a.Script.IsZero() && a.File == "":
		v.Errorf(v.Step.ActionPos, "sql needs script (the statements) or file (a .sql file)")
		return
	case !a.Script.IsZero() && a.File != "":
		v.Errorf(a.Keys["file"], "sql takes script or file, not both")
		return
	}
	if a.File != "" {
		src, err := v.ReadFile(a.File)
		if err != nil {
			v.Errorf(a.Keys["file"], "sql file: %v", err)
			return
		}
		a.fileScript = string(src)
	}
	if n := len(sqlsplit.Split(a.script())); len(a.Args) > 0 && n != 1 && !a.Script.HasExpr() {
		v.Errorf(a.Keys["args"], "args bind parameters of a single statement; this script has %d", n)
	}
}

// script is the script's text before evaluation: the inline script or the file's content.
func (a *SQL) script() string {
	if a.File != "" {
		return a.fileScript
	}
	return a.Script.Raw
}

// Run implements Runner.
func (a *SQL) Run(ctx context.Context, rc *Context) (Outputs, error) {
	return nil, errors.New("SQL: not implemented yet")
}
