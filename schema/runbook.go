package schema

import "reflect"

// Version is the runbook format version this build reads.
const Version = 1

// Runbook is a v1 runbook document (docs/format.md).
type Runbook struct {
	Version     int         `yaml:"version" required:"true" doc:"Format version of the document: 1."`
	Name        string      `yaml:"name" required:"true" pattern:"^[a-z0-9][a-z0-9-]*$" doc:"Name of the runbook: lower-case letters, digits and dashes. Keys the state file and the advisory lock."`
	Description string      `yaml:"description" doc:"What the runbook does, for the operator and the change board."`
	Params      Params      `yaml:"params" doc:"Inputs. Per-customer values come from vars files (--vars), --var K=V or the environment."`
	Connections Connections `yaml:"connections" doc:"PostgreSQL connections by name, opened lazily, one session each."`
	Lock        *ConnRef    `yaml:"lock" doc:"Hold a session advisory lock keyed by the runbook name on this connection for the whole run."`
	Steps       Steps       `yaml:"steps" required:"true" doc:"The steps, run in order."`

	Pos  Pos       `yaml:"-"`
	Keys Positions `yaml:"-"`

	// File is the path the runbook was loaded from (or builtin:NAME).
	File string `yaml:"-"`
	// Source is the document's bytes and Digest their SHA-256.
	Source []byte `yaml:"-"`
	Digest string `yaml:"-"`
	// Warnings are what loading found risky but not wrong, each at
	// FILE:LINE:COL: a param interpolated as raw text into SQL or a shell
	// command line (inject.go). validate and plan print them; --strict
	// makes them errors.
	Warnings Errors `yaml:"-"`
}

// Step returns the step with the given id.
func (rb *Runbook) Step(id string) *Step {
	for _, s := range rb.Steps {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// StepIDs returns the ids of the steps in order.
func (rb *Runbook) StepIDs() []string {
	out := make([]string, len(rb.Steps))
	for i, s := range rb.Steps {
		out[i] = s.ID
	}
	return out
}

func reflectValue(ptr any) reflect.Value { return reflect.ValueOf(ptr).Elem() }
