package schema_test

import (
	"bytes"
	"os"
	"testing"

	_ "github.com/runbookhq/runbook/actions" // registers the action kinds
	"github.com/runbookhq/runbook/schema"
)

// The committed schema must be what the Go types generate: `make schema`
// refreshes it.
func TestCommittedSchemaIsCurrent(t *testing.T) {
	committed, err := os.ReadFile("runbook.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(committed, schema.JSONSchema()) {
		t.Fatal("schema/runbook.schema.json is stale: run `make schema` and commit it")
	}
}
