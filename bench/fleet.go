package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// fleet is F1: the queue's overhead per run. The same n small runs (three
// SQL steps each, on cluster a) go once through the queue (fleet run --queue
// … --wait, the queue's database on cluster b, two runbook worker processes
// of one run at a time each, started afresh before every round, untimed)
// and once as a local fleet (fleet run --max-concurrency 2: two runs at a
// time in the fleet's own process). The difference, divided by n, is what
// the queue costs a run: enqueueing, fetching, claiming under the fleet's
// lock, the heartbeat and recording the outcome.
func (h *harness) fleet(n int) error {
	section("F1  %d small runs through the queue (2 workers) vs the same as a local fleet", n)
	for _, sql := range []string{"CREATE DATABASE f1", "CREATE DATABASE f1q"} {
		c := h.a
		if strings.HasSuffix(sql, "f1q") {
			c = h.b
		}
		if err := c.exec("postgres", sql); err != nil {
			return err
		}
	}
	if err := h.a.exec("f1", "CREATE TABLE effects (customer text NOT NULL, step int NOT NULL)"); err != nil {
		return err
	}
	if err := h.write("f1.yaml", `version: 1
name: bench-f1
params:
  url: {secret: true, env: BENCH_URL}
  customer: {pattern: '[a-z0-9]+'}
connections:
  db: ${{ params.url }}
steps:
  - id: one
    sql: {on: db, script: "INSERT INTO effects VALUES (${{ literal(params.customer) }}, 1)"}
  - id: two
    sql: {on: db, script: "INSERT INTO effects VALUES (${{ literal(params.customer) }}, 2)"}
  - id: three
    sql: {on: db, script: "INSERT INTO effects VALUES (${{ literal(params.customer) }}, 3)"}
`); err != nil {
		return err
	}
	custDir := filepath.Join(h.work, "f1-customers")
	os.MkdirAll(custDir, 0o700)
	for i := 1; i <= n; i++ {
		if err := os.WriteFile(filepath.Join(custDir, fmt.Sprintf("c%03d.yaml", i)), []byte(fmt.Sprintf("customer: c%03d\n", i)), 0o600); err != nil {
			return err
		}
	}
	env := []string{"BENCH_URL=" + h.a.URL("f1")}
	queue := h.b.URL("f1q")
	check := func() error {
		got, err := h.a.value("f1", "SELECT count(*) || '/' || count(DISTINCT (customer, step)) FROM effects")
		if err != nil {
			return err
		}
		if want := fmt.Sprintf("%d/%d", 3*n, 3*n); got != want {
			return fmt.Errorf("effects %s, want %s", got, want)
		}
		return h.a.exec("f1", "TRUNCATE effects")
	}
	vars := filepath.Join(custDir, "*.yaml")

	local := &command{label: "local fleet, 2 at a time", env: env, after: check}
	local.before = func() error {
		local.argv = []string{h.bin, "fleet", "run", filepath.Join(h.work, "f1.yaml"), "--vars", vars, "--max-concurrency", "2",
			"--dir", h.stateDir()}
		return nil
	}
	var workers []*exec.Cmd
	stop := func() {
		for _, w := range workers {
			w.Process.Signal(syscall.SIGTERM)
			w.Wait()
		}
		workers = nil
	}
	defer stop()
	round := 0
	queued := &command{label: "queue, 2 workers of 1 run each", env: env, after: check}
	queued.before = func() error {
		stop()
		round++
		dir := h.stateDir()
		for i := 1; i <= 2; i++ {
			log := filepath.Join(dir, fmt.Sprintf("worker%d.log", i))
			out, err := os.Create(log)
			if err != nil {
				return err
			}
			w := exec.Command(h.bin, "worker", "--queue", queue, "--max-workers", "1", "--state", filepath.Join(dir, "states"),
				"--dir", filepath.Join(dir, "logs"), "--id", fmt.Sprintf("w%d", i))
			w.Dir, w.Env, w.Stdout, w.Stderr = h.work, append(os.Environ(), env...), out, out
			if err := w.Start(); err != nil {
				return err
			}
			out.Close()
			workers = append(workers, w)
			deadline := time.Now().Add(30 * time.Second)
			for {
				b, _ := os.ReadFile(log)
				if strings.Contains(string(b), "taking runs") {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("worker %d did not start:\n%s", i, b)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		queued.argv = []string{h.bin, "fleet", "run", filepath.Join(h.work, "f1.yaml"), "--vars", vars, "--queue", queue,
			"--state", filepath.Join(dir, "states"), "--fleet", fmt.Sprintf("f1-%d", round), "--wait"}
		return nil
	}
	res, err := h.rounds(h.runs, local, queued)
	stop()
	if err != nil {
		return err
	}
	per := make([]float64, len(res[0]))
	for i := range per {
		per[i] = (res[1][i].wall.Seconds() - res[0][i].wall.Seconds()) / float64(n)
	}
	h.add(result{goal: "F1", what: fmt.Sprintf("%d runs of 3 SQL steps, 2 at a time: queue (2 workers) vs local fleet", n),
		value: "queue " + statsOf(walls(res[1])).seconds(), vs: "local " + statsOf(walls(res[0])).seconds(), ratio: statsOf(ratios(res[1], res[0])).ratio()})
	h.add(result{goal: "F1", what: "the queue's overhead per run: (queue − local) ÷ runs", value: statsOf(per).seconds()})
	for _, c := range []*cluster{h.a, h.b} {
		db := "f1"
		if c == h.b {
			db = "f1q"
		}
		if err := c.exec("postgres", "DROP DATABASE "+db+" WITH (FORCE)"); err != nil {
			return err
		}
	}
	return nil
}
