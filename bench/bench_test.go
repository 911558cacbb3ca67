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

// TestP6Tables checks the plan of P6's source database against what the goal
// asks of it, at both sizes: four tables or more of unequal sizes, one of
// them at least half the data, eight indexes or more, and text, numeric,
// timestamptz and bytea columns.
func TestP6Tables(t *testing.T) {
	for _, mb := range []int{100, 1024} {
		t.Run(fmt.Sprint(mb, "MB"), func(t *testing.T) {
			ts := p6Tables(mb)
			if len(ts) < 4 {
				t.Fatalf("%d tables, want 4 or more", len(ts))
			}
			var total, biggest float64
			sizes := map[float64]bool{}
			indexes := 0
			for _, tb := range ts {
				size := float64(tb.rows) * float64(tb.bytes)
				total += size
				biggest = max(biggest, size)
				if sizes[size] {
					t.Errorf("%s: the same size as another table", tb.name)
				}
				sizes[size] = true
				for _, typ := range []string{" text", " numeric", " timestamptz", " bytea"} {
					if !strings.Contains(tb.ddl, typ) {
						t.Errorf("%s: no%s column: %s", tb.name, typ, tb.ddl)
					}
				}
				if strings.Count(tb.fill, "%d") != 2 || strings.Contains(tb.fill, "{") {
					t.Errorf("%s: the fill statement takes two bounds, nothing else: %s", tb.name, tb.fill)
				}
				for _, p := range tb.post {
					if strings.Contains(p, "PRIMARY KEY") || strings.Contains(p, "UNIQUE") || strings.Contains(p, "CREATE INDEX") {
						indexes++
					}
				}
			}
			if biggest < total/2 {
				t.Errorf("the biggest table holds %.0f%% of the data, want half or more", 100*biggest/total)
			}
			if indexes < 8 {
				t.Errorf("%d indexes, want 8 or more", indexes)
			}
			if est := total / 1e6; est < float64(mb)*0.95 || est > float64(mb)*1.05 {
				t.Errorf("estimated %.0f MB, want about %d", est, mb)
			}
			if !strings.Contains(ts[len(ts)-1].post[len(ts[len(ts)-1].post)-1], "FOREIGN KEY") {
				t.Errorf("the foreign key is not added last, after every key")
			}
		})
	}
}

// TestP6Progress: the rows of copy.part.end events are counted, whatever
// else runbook writes on its JSON output.
func TestP6Progress(t *testing.T) {
	for _, tc := range []struct {
		line string
		rows int64
		ok   bool
	}{
		{`{"level":"info","run_id":"R","step":"copy","event":"copy.part.end","table":"public.events","part":"public.events blocks 0–4095","rows":125000,"bytes":9000000,"message":"part copied"}`, 125000, true},
		{`{"event":"copy.part.end","table":"public.settings","part":0,"rows":"42"}`, 42, true},
		{`{"event":"copy.part.start","table":"public.events","part":4}`, 0, false},
		{`{"event":"copy.part.end","table":"public.events","part":5}`, 0, true},
		{`{"event":"step.end","step":"copy","rows":7}`, 0, false},
		{`not json`, 0, false},
		{``, 0, false},
	} {
		rows, ok := p6Progress([]byte(tc.line))
		if rows != tc.rows || ok != tc.ok {
			t.Errorf("%s: %d, %v; want %d, %v", tc.line, rows, ok, tc.rows, tc.ok)
		}
	}
}

// TestP6Runbook: P6's runbook is valid and asks for what the goal states
// (two jobs, two index jobs, no verification), the URLs through secret
// params.
func TestP6Runbook(t *testing.T) {
	rb := p6Runbook("64MB")
	if _, err := schema.Load("p6.yaml", []byte(rb)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"jobs: 2\n", "index_jobs: 2\n", "verify: none\n", "split_larger_than: 64MB\n", "schema: true\n",
		"source_url: {secret: true, env: BENCH_SRC}", "target_url: {secret: true, env: BENCH_TGT}"} {
		if !strings.Contains(rb, want) {
			t.Errorf("P6's runbook lacks %q:\n%s", want, rb)
		}
	}
}

// TestP6Load runs P6's whole load on real PostgreSQL, at the full size's
// row numbers: each table's fill statement for its last 1,000 rows (the
// expressions must not overflow at the highest row numbers), then the keys,
// indexes and the foreign key. The rows orders refer to exist: customers are
// loaded in full (the smallest plan's).
func TestP6Load(t *testing.T) {
	srv := pgtest.Shared(t)
	db := pgtest.DatabaseName(t, srv.NewDatabase(t))
	for _, mb := range []int{100, 1024} {
		tables := p6Tables(mb)
		for _, tb := range tables {
			srv.Exec(t, db, "DROP TABLE IF EXISTS "+tb.name+" CASCADE")
			srv.Exec(t, db, tb.ddl)
			from := max(1, tb.rows-999)
			if tb.name == "customers" {
				from = 1
			}
			srv.Exec(t, db, fmt.Sprintf(tb.fill, from, tb.rows))
		}
		for _, tb := range tables {
			for _, sql := range tb.post {
				srv.Exec(t, db, sql)
			}
		}
	}
}
