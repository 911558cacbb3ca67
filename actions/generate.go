package actions

import (
	"context"
	"errors"

	"github.com/runbookhq/runbook/schema"
)

// Generate runs a query whose result cells are SQL statements, then executes
// them, as psql's \gexec does.
type Generate struct {
	On          schema.ConnRef    `yaml:"on" required:"true" doc:"The connection the generator query runs on."`
	Query       schema.Template   `yaml:"query" required:"true" doc:"A query whose every non-null cell is one statement, in row order, then column order."`
	Args        []schema.Template `yaml:"args" doc:"Bind parameters of the query."`
	ExecOn      schema.ConnRef    `yaml:"exec_on" doc:"The connection the statements run on. Default: on."`
	Transaction string            `yaml:"transaction" enum:"each,batch,all" default:"each" doc:"each: every statement commits on its own (psql \\gexec in autocommit); batch: batch_size statements per transaction; all: one transaction."`
	BatchSize   int               `yaml:"batch_size" minimum:"1" default:"100" doc:"Statements per transaction with transaction: batch."`

	Keys schema.Positions `yaml:"-"`
}

func init() {
	Register("generate", "Run a query that generates SQL, then execute the generated statements (psql \\gexec).", func() Runner { return &Generate{} })
}

// Kind implements schema.Action.
func (*Generate) Kind() string { return "generate" }

// Mode returns the transaction mode, each when unset.
func (a *Generate) Mode() string {
	if a.Transaction == "" {
		return "each"
	}
	return a.Transaction
}

// Batch returns the number of statements per transaction.
func (a *Generate) Batch() int {
	switch {
	case a.Mode() == "each":
		return 1
	case a.Mode() == "batch" && a.BatchSize > 0:
		return a.BatchSize
	case a.Mode() == "batch":
		return 100
	}
	return 0 // all
}

// Target returns the connection the statements run on.
func (a *Generate) Target() string {
	if a.ExecOn.Name != "" {
		return a.ExecOn.Name
	}
	return a.On.Name
}

// Validate implements schema.Validator.
func (a *Generate) Validate(v *schema.Validation) {
	if _, ok := a.Keys["batch_size"]; ok && a.Mode() != "batch" {
		v.Errorf(a.Keys["batch_size"], "batch_size applies only with transaction: batch")
	}
}

// Run implements Runner.
func (a *Generate) Run(ctx context.Context, rc *Context) (Outputs, error) {
	return nil, errors.New("Generate: not implemented yet")
}
