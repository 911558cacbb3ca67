package main

// Go benchmarks of the paths the suite measures from outside, for profiling
// (go test ./bench -run '^$' -bench . -cpuprofile cpu.out). The ones that need
// PostgreSQL start a throwaway cluster with fsync on (internal/pgtest), or use
// RUNBOOK_TEST_DATABASE_URL.

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/runbookhq/runbook/actions" // registers the action kinds
	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/pgtest"
	"github.com/runbookhq/runbook/schema"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestManySteps checks that the runbook the P4 timings load is valid, so the
// suite measures loading, not failing.
func TestManySteps(t *testing.T) {
	rb, err := schema.Load("many.yaml", []byte(manySteps(50)))
	if err != nil {
		t.Fatal(err)
	}
	if len(rb.Steps) != 50 {
		t.Fatalf("%d steps", len(rb.Steps))
	}
}

// BenchmarkLoad5000Steps: parsing, decoding and validating a 5,000-step
// runbook (runbook validate, without the process).
func BenchmarkLoad5000Steps(b *testing.B) {
	src := []byte(manySteps(5000))
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if _, err := schema.Load("many.yaml", src); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPlan5000Steps: the plan of a loaded 5,000-step runbook, rendered as
// JSON as the command does (runbook plan --format json, without loading and the process).
func BenchmarkPlan5000Steps(b *testing.B) {
	rb, err := schema.Load("many.yaml", []byte(manySteps(5000)))
	if err != nil {
		b.Fatal(err)
	}
	vals, err := rb.ResolveParams(schema.ParamInputs{})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		p, err := executor.NewPlan(rb, vals)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.WriteJSON(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunSQLSteps: a run of 1,000 one-statement sql steps (P3's
// runbook), durable state included, on a server with fsync on; it reports
// the time and this process's CPU time per step (the console is discarded:
// no writes to it).
func BenchmarkRunSQLSteps(b *testing.B) {
	const steps = 1000
	srv := pgtest.NewCluster(b, pgtest.WithFsync())
	url := srv.NewDatabase(b)
	db := pgtest.DatabaseName(b, url)
	srv.Exec(b, db, "CREATE TABLE p3 (k int)")
	var src strings.Builder
	src.WriteString("version: 1\nname: bench-steps\nparams:\n  url: {secret: true}\nconnections:\n  db: ${{ params.url }}\nsteps:\n")
	for i := 1; i <= steps; i++ {
		fmt.Fprintf(&src, "  - id: s%04d\n    sql: {on: db, script: \"INSERT INTO p3 VALUES (%d)\"}\n", i, i)
	}
	dir := b.TempDir()
	file := filepath.Join(dir, "steps.yaml")
	if err := os.WriteFile(file, []byte(src.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	rb, err := schema.LoadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	vals, err := rb.ResolveParams(schema.ParamInputs{Vars: []string{"url=" + url}})
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	cpu0 := cpuTime()
	for b.Loop() {
		n++
		_, err := executor.Run(context.Background(), executor.Options{Runbook: rb, Values: vals, Console: io.Discard, LogFormat: "json",
			StatePath: filepath.Join(dir, fmt.Sprintf("run%d", n), "state.json")})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(n*steps), "µs/step")
	// CPU time (user + system) of this process per step: what a loaded
	// machine distorts least (the server is another process).
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(n*steps), "cpu-µs/step")
}
