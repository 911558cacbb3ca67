package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// P6: the parallel copy of one database into an empty one on another
// cluster (docs/performance.md, "P6"), three ways side by side in one run:
//
//	(a) bash -o pipefail -c 'pg_dump -Fc SRC | pg_restore --no-acl --no-owner -d TGT'
//	    (no --single-transaction, as P2);
//	(b) pgcopydb clone --table-jobs 2 --index-jobs 2 --no-owner --no-acl;
//	(c) runbook's copy action, jobs: 2, index_jobs: 2, verify: none.
//
// The source database is created once per suite run and reused by every round;
// every run restores into a target database dropped and created afresh. Then
// (c) is killed with SIGKILL at about 70% of the copy — once at 70% of a full
// copy's wall, once at 70% of its rows — and `runbook resume` is timed to the end.

// p6Table is one table of P6's source database.
type p6Table struct {
	name  string
	share float64 // of the database's size, estimated
	bytes int     // estimated bytes a row, heap and indexes
	rows  int64
	ddl   string // CREATE TABLE, without keys or indexes (added after the load)
	fill  string // INSERT … SELECT over generate_series(%d, %d) g
	post  []string
}

// p6Tables plans P6's source database for a size of about mb MB: five tables
// of unequal sizes, events holding more than half the data, twelve indexes
// (primary keys included) and a foreign key, every table with text, numeric,
// timestamptz and bytea columns. The rows are derived from the row number, so
// every run of the suite loads the same data.
func p6Tables(mb int) []p6Table {
	ts := []p6Table{
		{name: "events", share: 0.56, bytes: 240,
			ddl: "CREATE TABLE events (id bigint NOT NULL, account_id int NOT NULL, kind text NOT NULL, amount numeric(14,2) NOT NULL, created_at timestamptz NOT NULL, note text, payload bytea)",
			fill: `INSERT INTO events SELECT g, (g::bigint * 7919) %% 100000, (ARRAY['click','view','buy','refund','signup'])[g %% 5 + 1], round((g %% 100000) * 1.37, 2),
				timestamptz '2026-01-01' - g * interval '1 second', md5(g::text), decode(md5(g::text) || md5((g + 1)::text) || md5((g + 2)::text), 'hex')
				FROM generate_series(%d, %d) g`,
			post: []string{"ALTER TABLE events ADD PRIMARY KEY (id)", "CREATE INDEX events_account ON events (account_id)",
				"CREATE INDEX events_created ON events (created_at)", "CREATE INDEX events_kind_amount ON events (kind, amount)"}},
		{name: "orders", share: 0.22, bytes: 200,
			ddl: "CREATE TABLE orders (id bigint NOT NULL, customer_id bigint NOT NULL, status text NOT NULL, total numeric(12,2) NOT NULL, placed_at timestamptz NOT NULL, shipping_note text, receipt bytea)",
			fill: `INSERT INTO orders SELECT g, g %% {customers} + 1, (ARRAY['new','paid','shipped','closed'])[g %% 4 + 1], round((g %% 5000) * 3.1, 2),
				timestamptz '2025-06-01' + g * interval '7 seconds', 'deliver to ' || md5(g::text), decode(md5((g * 13)::text), 'hex')
				FROM generate_series(%d, %d) g`,
			post: []string{"ALTER TABLE orders ADD PRIMARY KEY (id)", "CREATE INDEX orders_customer ON orders (customer_id)",
				"CREATE INDEX orders_placed ON orders (placed_at)"}},
		{name: "customers", share: 0.12, bytes: 290,
			ddl: "CREATE TABLE customers (id bigint NOT NULL, email text NOT NULL, name text NOT NULL, balance numeric(12,2) NOT NULL, created_at timestamptz NOT NULL, avatar bytea)",
			fill: `INSERT INTO customers SELECT g, 'user' || g || '@example.com', initcap(md5(g::text)), round(g * 0.37 %% 100000, 2),
				timestamptz '2020-01-01' + g * interval '1 minute', decode(repeat(md5(g::text), 4), 'hex')
				FROM generate_series(%d, %d) g`,
			post: []string{"ALTER TABLE customers ADD PRIMARY KEY (id)", "ALTER TABLE customers ADD CONSTRAINT customers_email UNIQUE (email)",
				"ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id)"}},
		{name: "notes", share: 0.08, bytes: 260,
			ddl: "CREATE TABLE notes (id int NOT NULL, body text NOT NULL, score numeric NOT NULL, at timestamptz NOT NULL, digest bytea NOT NULL)",
			fill: `INSERT INTO notes SELECT g, repeat(md5(g::text), 4), (g %% 1000) / 7.0, timestamptz '2024-01-01' + g * interval '3 seconds', decode(md5((g * 31)::text), 'hex')
				FROM generate_series(%d, %d) g`,
			post: []string{"ALTER TABLE notes ADD PRIMARY KEY (id)", "CREATE INDEX notes_at ON notes (at)"}},
		{name: "settings", share: 0.02, bytes: 150,
			ddl: "CREATE TABLE settings (id int NOT NULL, name text NOT NULL, value numeric NOT NULL, updated_at timestamptz NOT NULL, blob bytea)",
			fill: `INSERT INTO settings SELECT g, 'setting_' || g, g * 0.5, timestamptz '2026-01-01' + g * interval '1 hour', decode(md5(g::text), 'hex')
				FROM generate_series(%d, %d) g`,
			post: []string{"ALTER TABLE settings ADD PRIMARY KEY (id)"}},
	}
	for i := range ts {
		ts[i].rows = max(1000, int64(float64(mb)*1e6*ts[i].share)/int64(ts[i].bytes))
	}
	// orders' customer_id refers to customers' rows.
	ts[1].fill = strings.ReplaceAll(ts[1].fill, "{customers}", strconv.FormatInt(ts[2].rows, 10))
	// The foreign key is added last, after both tables have their keys.
	fk := ts[2].post[2]
	ts[2].post = ts[2].post[:2]
	ts[len(ts)-1].post = append(ts[len(ts)-1].post, fk)
	return ts
}

// p6Progress reads one line of runbook's JSON output and returns the rows of
// a copy.part.end event (ok false for any other line).
func p6Progress(line []byte) (rows int64, ok bool) {
	var ev struct {
		Event string          `json:"event"`
		Rows  json.RawMessage `json:"rows"`
	}
	if json.Unmarshal(line, &ev) != nil || ev.Event != "copy.part.end" {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.Trim(string(ev.Rows), `"`), 10, 64)
	if err != nil {
		return 0, true
	}
	return n, true
}

// p6Runbook is the runbook of (c).
func p6Runbook(split string) string {
	return fmt.Sprintf(`version: 1
name: bench-p6
params:
  source_url: {secret: true, env: BENCH_SRC}
  target_url: {secret: true, env: BENCH_TGT}
connections:
  source: ${{ params.source_url }}
  target: ${{ params.target_url }}
steps:
  - id: copy
    copy:
      from: source
      to: target
      schema: true
      jobs: 2
      index_jobs: 2
      split_larger_than: %s
      verify: none
`, split)
}

func (h *harness) p6(mb int, split string, resumeRounds int) error {
	section("P6  copy of a ~%d MB database to an empty one: pg_dump | pg_restore, pgcopydb clone, runbook copy (2 jobs)", mb)
	src, dst := h.a, h.b
	tables := p6Tables(mb)
	var total int64
	for _, t := range tables {
		total += t.rows
	}
	fmt.Printf("  loading %d rows into %d tables of the source (fsync on: this takes a while)\n", total, len(tables))
	if err := src.exec("postgres", "CREATE DATABASE p6"); err != nil {
		return err
	}
	const chunk = 500000
	for _, t := range tables {
		if err := src.exec("p6", t.ddl); err != nil {
			return err
		}
		for from := int64(1); from <= t.rows; from += chunk {
			if err := src.exec("p6", fmt.Sprintf(t.fill, from, min(t.rows, from+chunk-1))); err != nil {
				return err
			}
		}
	}
	for _, t := range tables {
		for _, sql := range t.post {
			if err := src.exec("p6", sql); err != nil {
				return err
			}
		}
	}
	// Hint bits and visibility map set now, not by the first copy.
	if err := src.exec("p6", "VACUUM (FREEZE, ANALYZE)"); err != nil {
		return err
	}
	sizes, _ := src.value("p6", `SELECT string_agg(format('%s %s (%s rows)', c.relname, pg_size_pretty(pg_total_relation_size(c.oid)), s.n_live_tup), ', ' ORDER BY pg_total_relation_size(c.oid) DESC)
		FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid`)
	size, _ := src.value("p6", "SELECT pg_size_pretty(pg_database_size('p6'))")
	sizeBytes, _ := src.value("p6", "SELECT pg_database_size('p6')")
	indexes, _ := src.value("p6", "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'")
	bigShare, _ := src.value("p6", "SELECT round(100.0 * pg_total_relation_size('events') / sum(pg_total_relation_size(relid)))::text FROM pg_stat_user_tables")
	fmt.Printf("  source database: %s; %s indexes; events %s%% of the tables' size\n  %s\n", size, indexes, bigShare, sizes)
	if b, _ := strconv.ParseInt(sizeBytes, 10, 64); mb >= 900 && b < 900*1000*1000 {
		fmt.Printf("  warning: the source is below 900 MB (%s): P6's goals are stated for 900 MB or more\n", size)
	}

	if err := h.write("p6.yaml", p6Runbook(split)); err != nil {
		return err
	}
	env := []string{"PATH=" + h.a.BinDir + ":" + os.Getenv("PATH"), "BENCH_SRC=" + src.URL("p6"), "BENCH_TGT=" + dst.URL("p6")}
	fresh := freshCopy(src, dst, "p6")
	wantIdx, _ := strconv.Atoi(indexes)
	check := func() error { return p6Check(dst, tables, wantIdx) }

	pipe := fmt.Sprintf("pg_dump -Fc -h 127.0.0.1 -p %d -U postgres -d p6 | pg_restore --no-acl --no-owner -h 127.0.0.1 -p %d -U postgres -d p6", src.Port, dst.Port)
	fmt.Printf("  (a) bash -o pipefail -c '%s'\n      without --single-transaction, as P2\n", pipe)
	a := &command{label: "(a) pg_dump -Fc | pg_restore (bash pipefail)", env: env, before: fresh, after: check,
		argv: []string{"bash", "-o", "pipefail", "-c", pipe}}
	cmds := []*command{a}

	var b *command
	if pgcopydb, why := findPgcopydb(); pgcopydb == "" {
		fmt.Printf("  (b) pgcopydb: not measured: %s\n", why)
	} else {
		b = &command{label: "(b) pgcopydb clone, 2 table jobs, 2 index jobs", env: env, after: check}
		b.before = func() error {
			b.argv = []string{pgcopydb, "clone", "--source", src.URL("p6"), "--target", dst.URL("p6"), "--dir", filepath.Join(h.stateDir(), "pgcopydb"),
				"--table-jobs", "2", "--index-jobs", "2", "--no-owner", "--no-acl", "--skip-extensions"}
			return fresh()
		}
		v, _ := exec.Command(pgcopydb, "--version").Output()
		fmt.Printf("  (b) %s clone --table-jobs 2 --index-jobs 2 --no-owner --no-acl --skip-extensions --source … --target … --dir (fresh); %s\n",
			pgcopydb, strings.SplitN(strings.TrimSpace(string(v)), "\n", 2)[0])
		cmds = append(cmds, b)
	}

	var c *command
	if out, err := exec.Command(h.bin, "validate", filepath.Join(h.work, "p6.yaml")).CombinedOutput(); err != nil {
		fmt.Printf("  (c) runbook copy: not measured: this runbook does not validate P6's runbook (no copy action yet?): %s\n",
			strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0])
	} else {
		var freshState func() error
		c, freshState = h.runbook("p6.yaml", "--yes")
		c.label, c.env, c.after, c.timeV = "(c) runbook copy, jobs 2, index_jobs 2", env, check, true
		c.before = func() error {
			freshState()
			return fresh()
		}
		fmt.Printf("  (c) runbook run p6.yaml --yes --state (fresh) --log-format json: copy jobs 2, index_jobs 2, split_larger_than %s, verify none; peak RSS by /usr/bin/time -v\n", split)
		cmds = append(cmds, c)
	}

	res, err := h.rounds(h.runs, cmds...)
	if err != nil {
		return err
	}
	sa := statsOf(walls(res[0]))
	what := fmt.Sprintf("copy of %s (5 tables, %s indexes)", size, indexes)
	h.add(result{goal: "P6", what: "(a) pg_dump -Fc | pg_restore --no-acl --no-owner, bash pipefail, " + what, value: "—", vs: "bash " + sa.seconds()})
	bi := -1
	if b != nil {
		bi = 1
		h.add(result{goal: "P6", what: "(b) pgcopydb clone --table-jobs 2 --index-jobs 2 vs (a)", value: "—", vs: "pgcopydb " + statsOf(walls(res[bi])).seconds(),
			ratio: statsOf(ratios(res[bi], res[0])).ratio() + " of (a)"})
	}
	if c == nil {
		return h.p6Drop()
	}
	ci := len(cmds) - 1
	sc := statsOf(walls(res[ci]))
	r := statsOf(ratios(res[ci], res[0]))
	h.add(result{goal: "P6", what: "(c) runbook copy, jobs 2, vs (a) the seed's pipe", value: sc.seconds(), vs: "bash " + sa.seconds(),
		ratio: r.ratio(), target: "≤ 0.60×", met: boolp(r.med <= 0.6)})
	if b != nil {
		r := statsOf(ratios(res[ci], res[bi]))
		h.add(result{goal: "P6", what: "(c) runbook copy vs (b) pgcopydb clone", value: sc.seconds(), vs: "pgcopydb " + statsOf(walls(res[bi])).seconds(),
			ratio: r.ratio(), target: "≤ 1.0×", met: boolp(r.med <= 1.0)})
	}
	rss := make([]float64, len(res[ci]))
	for k, s := range res[ci] {
		rss[k] = float64(s.rssKB) / 1024
	}
	rs := statsOf(rss)
	h.add(result{goal: "P6", what: "(c) runbook copy: peak RSS (/usr/bin/time -v)", value: sc.seconds(), vs: "—",
		ratio: fmt.Sprintf("%.1f MB [%.1f–%.1f]", rs.med, rs.min, rs.max), target: "≤ 150 MB", met: boolp(rs.max <= 150)})

	// Resume: (c) killed at about 70% of the copy, then runbook resume, with
	// the 70% counted two ways: in the copy's time (its median wall, what the
	// operator waits for) and in its rows (what the progress shows).
	for _, at := range []p6KillAt{{wall: time.Duration(0.7 * sc.med * float64(time.Second))}, {rows: total * 7 / 10}} {
		var resumes, killedAt, elapsedAt []float64
		for i := 0; i < resumeRounds; i++ {
			k, err := h.p6Resume(c, env, check, at, total)
			if err != nil {
				return err
			}
			resumes = append(resumes, k.resume.Seconds()/sc.med)
			killedAt = append(killedAt, k.fraction)
			elapsedAt = append(elapsedAt, k.elapsed.Seconds()/sc.med)
			if h.verbose {
				fmt.Printf("    killed at %.0f%% of the rows (copy.part.end events: %d rows, the target's n_tup_ins: %d, of %d) after %s, %.2f× a full copy; resume %s\n",
					k.fraction*100, k.events, k.stats, total, fmtDur(k.elapsed), k.elapsed.Seconds()/sc.med, fmtDur(k.resume))
			}
		}
		rr := statsOf(resumes)
		ka, ea := statsOf(killedAt), statsOf(elapsedAt)
		what := fmt.Sprintf("(c) killed (SIGKILL) at %.2f× [%.2f–%.2f] the full copy's wall (%.0f%% of the rows), then runbook resume; row counts equal the source",
			ea.med, ea.min, ea.max, ka.med*100)
		if at.rows > 0 {
			what = fmt.Sprintf("(c) killed (SIGKILL) at %.0f%% [%.0f–%.0f] of the rows (%.2f× the full copy's wall), then runbook resume; row counts equal the source",
				ka.med*100, ka.min*100, ka.max*100, ea.med)
		}
		h.add(result{goal: "P6", what: what, value: "resume " + fmtSec(rr.med*sc.med), vs: "full copy " + fmtSec(sc.med),
			ratio: rr.ratio(), target: "≤ 0.45×", met: boolp(rr.med <= 0.45)})
	}
	return h.p6Drop()
}

func (h *harness) p6Drop() error {
	if err := h.a.exec("postgres", "DROP DATABASE p6 WITH (FORCE)"); err != nil {
		return err
	}
	return h.b.exec("postgres", "DROP DATABASE IF EXISTS p6 WITH (FORCE)")
}

// p6Check checks that the target holds every row of every table, the indexes
// and the foreign key.
func p6Check(dst *cluster, tables []p6Table, indexes int) error {
	var q strings.Builder
	q.WriteString("SELECT concat_ws(' '")
	for _, t := range tables {
		fmt.Fprintf(&q, ", (SELECT count(*) FROM %s)", t.name)
	}
	q.WriteString(", (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'), (SELECT count(*) FROM pg_constraint WHERE contype = 'f'))")
	got, err := dst.value("p6", q.String())
	if err != nil {
		return err
	}
	want := make([]string, 0, len(tables)+2)
	for _, t := range tables {
		want = append(want, strconv.FormatInt(t.rows, 10))
	}
	want = append(want, strconv.Itoa(indexes), "1")
	if got != strings.Join(want, " ") {
		names := make([]string, 0, len(tables))
		for _, t := range tables {
			names = append(names, t.name)
		}
		return fmt.Errorf("the target holds %q (rows of %s, indexes, foreign keys), want %q", got, strings.Join(names, ", "), strings.Join(want, " "))
	}
	return nil
}

// p6Kill is one interrupted copy and its resume.
type p6Kill struct {
	fraction float64       // of the source's rows committed on the target when killed
	elapsed  time.Duration // from the start to the kill
	resume   time.Duration // runbook resume, to the end
	events   int64         // rows of the copy.part.end events read before the kill
	stats    int64         // the target's committed inserts (n_tup_ins) last read before the kill
}

// p6KillAt is when p6Resume kills the copy: once rows of the source's rows
// are committed on the target, or once wall has passed since the start.
type p6KillAt struct {
	rows int64
	wall time.Duration
}

// p6Resume starts (c), follows its copy.part.end events (and the target's
// committed inserts, pg_stat_user_tables.n_tup_ins) until the point at, kills
// runbook's process group with SIGKILL, and times runbook resume with the same
// state to the end.
func (h *harness) p6Resume(c *command, env []string, check func() error, at p6KillAt, total int64) (p6Kill, error) {
	var k p6Kill
	if err := c.before(); err != nil {
		return k, fmt.Errorf("P6 resume: preparing: %w", err)
	}
	state := c.state
	cmd := exec.Command(c.argv[0], c.argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = h.work
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return k, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return k, err
	}
	var evRows, statRows atomic.Int64
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
		for sc.Scan() {
			if n, ok := p6Progress(sc.Bytes()); ok {
				evRows.Add(n)
			}
		}
		io.Copy(io.Discard, out)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if v, err := h.b.value("p6", "SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables"); err == nil {
				n, _ := strconv.ParseInt(v, 10, 64)
				statRows.Store(n)
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	exited := make(chan error, 1)
	go func() {
		<-lines
		exited <- cmd.Wait()
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			return k, fmt.Errorf("P6 resume: the copy ended after %s, before it was to be killed (events %d, target %d of %d rows): %v\n%s",
				fmtDur(time.Since(start)), evRows.Load(), statRows.Load(), total, err, tail(stderr.String(), 2000))
		case <-tick.C:
		}
		done := max(evRows.Load(), statRows.Load())
		if (at.rows > 0 && done >= at.rows) || (at.wall > 0 && time.Since(start) >= at.wall) {
			k.elapsed = time.Since(start)
			k.fraction = float64(done) / float64(total)
			k.events, k.stats = evRows.Load(), statRows.Load()
			break
		}
	}
	cancel()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if err := <-exited; err == nil {
		return k, errors.New("P6 resume: the copy ended before it was killed")
	}
	resume := &command{label: "(c) runbook resume after SIGKILL", env: env, after: check,
		argv: []string{h.bin, "resume", filepath.Join(h.work, "p6.yaml"), "--state", state, "--log-format", "json", "--yes"}}
	s, err := h.run(resume)
	if err != nil {
		return k, err
	}
	k.resume = s.wall
	return k, nil
}

// findPgcopydb returns pgcopydb's path, installing it with
// scripts/ensure-deps --bench when it is missing; or why there is none.
func findPgcopydb() (path, why string) {
	if p, err := exec.LookPath("pgcopydb"); err == nil {
		return p, ""
	}
	if _, err := os.Stat("scripts/ensure-deps"); err != nil {
		return "", "not on PATH, and no scripts/ensure-deps here to install it (run from the repository's root)"
	}
	fmt.Println("  pgcopydb is missing: scripts/ensure-deps --bench")
	if out, err := exec.Command("scripts/ensure-deps", "--bench").CombinedOutput(); err != nil {
		return "", fmt.Sprintf("scripts/ensure-deps --bench: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if p, err := exec.LookPath("pgcopydb"); err == nil {
		return p, ""
	}
	return "", "still not on PATH after scripts/ensure-deps --bench"
}
