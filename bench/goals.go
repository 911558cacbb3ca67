package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The goals of docs/performance.md. Each sets up its data (untimed), writes
// the runbook and the yardstick's script, measures, and adds its rows to the
// report.

const ownerQuery = `SELECT format('ALTER TABLE %I.%I OWNER TO %I', schemaname, tablename, $1::text) FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`

// p1: generate of n ALTER TABLE … OWNER TO statements on n tables, against
// psql's \gexec in autocommit and a server-side PL/pgSQL loop (the floor).
// Every run gives the tables to the other of two roles, so every statement
// changes something.
func (h *harness) p1(n int, audit bool) error {
	section("P1  generate: %d ALTER TABLE … OWNER TO from a catalog query, on %d tables", n, n)
	c := h.a
	for _, sql := range []string{"CREATE DATABASE p1", "CREATE ROLE bench_a", "CREATE ROLE bench_b"} {
		if err := c.exec("postgres", sql); err != nil {
			return err
		}
	}
	for from := 1; from <= n; from += 1000 { // a transaction locks every table it creates
		if err := c.exec("p1", fmt.Sprintf(`DO $$ BEGIN FOR i IN %d..%d LOOP EXECUTE format('CREATE TABLE t%%s (id int)', i); END LOOP; END $$`, from, min(n, from+999))); err != nil {
			return err
		}
	}
	if err := c.exec("p1", "VACUUM ANALYZE"); err != nil {
		return err
	}
	for _, mode := range []string{"each", "batch", "all"} {
		extra := ""
		if mode == "batch" {
			extra = "\n      batch_size: 100"
		}
		if err := h.write("p1-"+mode+".yaml", fmt.Sprintf(`version: 1
name: bench-p1-%s
params:
  url: {secret: true, env: BENCH_URL}
  role: {pattern: '[a-z_]+'}
connections:
  db: ${{ params.url }}
steps:
  - id: owners
    generate:
      on: db
      query: %s
      args: ['${{ params.role }}']
      transaction: %s%s
`, mode, ownerQuery, mode, extra)); err != nil {
			return err
		}
	}
	gexec := strings.Replace(ownerQuery, "$1::text", ":'role'", 1) + " \\gexec\n"
	if err := h.write("p1-gexec.sql", gexec); err != nil {
		return err
	}

	owner := "postgres"
	role := ""
	next := func() error {
		role = map[string]string{"bench_a": "bench_b"}[owner]
		if role == "" {
			role = "bench_a"
		}
		return c.checkpoint()
	}
	check := func() error {
		left, err := c.value("p1", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner <> '"+role+"'")
		if err != nil {
			return err
		}
		if left != "0" {
			return fmt.Errorf("%s tables not owned by %s", left, role)
		}
		owner = role
		return nil
	}
	psql := filepath.Join(h.a.BinDir, "psql")
	env := c.env("p1")
	ps := &command{label: `psql \gexec (autocommit)`, env: env, after: check}
	ps.before = func() error {
		if err := next(); err != nil {
			return err
		}
		ps.argv = []string{psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "role=" + role, "-f", filepath.Join(h.work, "p1-gexec.sql")}
		return nil
	}
	floor := &command{label: "PL/pgSQL loop (server side, one transaction)", env: env, after: check}
	floor.before = func() error {
		if err := next(); err != nil {
			return err
		}
		q := strings.Replace(ownerQuery, "$1::text", "'"+role+"'", 1)
		floor.argv = []string{psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", "DO $$ DECLARE s text; BEGIN FOR s IN " + q + " LOOP EXECUTE s; END LOOP; END $$"}
		return nil
	}
	gen := func(mode, label string, extra ...string) *command {
		cmd, fresh := h.runbook("p1-"+mode+".yaml", extra...)
		cmd.label, cmd.env, cmd.after = label, []string{"BENCH_URL=" + c.URL("p1")}, check
		cmd.before = func() error {
			if err := next(); err != nil {
				return err
			}
			fresh()
			cmd.argv = append(cmd.argv, "--var", "role="+role)
			return nil
		}
		return cmd
	}
	// The least any client can do for each with exactly-once (bench/floor):
	// per statement one round trip and one fdatasync'd record.
	minimal := &command{label: "exactly-once floor client, each", after: check}
	minimal.before = func() error {
		if err := next(); err != nil {
			return err
		}
		minimal.argv = []string{h.floor, "each", c.URL("p1"), role}
		return nil
	}
	cmds := []*command{ps, gen("batch", "runbook generate, transaction: batch (100)"), gen("each", "runbook generate, transaction: each"),
		floor, gen("all", "runbook generate, transaction: all"), minimal}
	if audit {
		logCmd := gen("each", "runbook generate, each, with --log")
		inner := logCmd.before
		logCmd.before = func() error {
			if err := inner(); err != nil {
				return err
			}
			logCmd.argv = append(logCmd.argv, "--log", filepath.Join(h.stateDir(), "audit.log"))
			return nil
		}
		cmds = append(cmds, logCmd)
	}
	res, err := h.rounds(h.runs, cmds...)
	if err != nil {
		return err
	}
	base := statsOf(walls(res[0]))
	vs := "psql " + base.seconds()
	h.add(result{goal: "P1", what: "generate batch (100) vs psql \\gexec", value: statsOf(walls(res[1])).seconds(), vs: vs,
		ratio: statsOf(ratios(res[1], res[0])).ratio(), target: "≤ 0.80×", met: boolp(statsOf(ratios(res[1], res[0])).med <= 0.8)})
	h.add(result{goal: "P1", what: "generate each (exactly-once) vs psql \\gexec", value: statsOf(walls(res[2])).seconds(), vs: vs,
		ratio: statsOf(ratios(res[2], res[0])).ratio(), target: "≤ 1.30×", met: boolp(statsOf(ratios(res[2], res[0])).med <= 1.3)})
	h.add(result{goal: "P1", what: "PL/pgSQL loop (the floor) vs psql \\gexec", value: statsOf(walls(res[3])).seconds(), vs: vs,
		ratio: statsOf(ratios(res[3], res[0])).ratio()})
	h.add(result{goal: "P1", what: "generate all vs psql \\gexec", value: statsOf(walls(res[4])).seconds(), vs: vs,
		ratio: statsOf(ratios(res[4], res[0])).ratio()})
	h.add(result{goal: "P1", what: "exactly-once floor client (each) vs psql \\gexec", value: statsOf(walls(res[5])).seconds(), vs: vs,
		ratio: statsOf(ratios(res[5], res[0])).ratio()})
	h.add(result{goal: "P1", what: "generate each vs the exactly-once floor client", value: statsOf(walls(res[2])).seconds(),
		vs: "floor " + statsOf(walls(res[5])).seconds(), ratio: statsOf(ratios(res[2], res[5])).ratio()})
	if audit {
		h.add(result{goal: "P1", what: "generate each with an audit log (--log) vs psql \\gexec", value: statsOf(walls(res[6])).seconds(), vs: vs,
			ratio: statsOf(ratios(res[6], res[0])).ratio()})
	}
	return c.exec("postgres", "DROP DATABASE p1")
}

// p2: shell.pipe pg_dump -Fc | pg_restore of a database of about mb MB, with
// runbook's progress accounting on, against the same pipeline in bash with
// pipefail.
//
// Progress accounting is on when somebody watches runbook's step view (a
// terminal), so both commands run under script(1), which gives them a
// pseudo-terminal, and runbook shows its step view there (--log-format text,
// the default on a terminal): what an operator at a terminal runs, with
// nothing forced.
func (h *harness) p2(mb int) error {
	section("P2  shell.pipe pg_dump -Fc | pg_restore of ~%d MB, progress accounting on", mb)
	src, dst := h.a, h.b
	// About 150 bytes a row on disk, heap and primary key.
	rows := int64(mb) * 1000 * 1000 / 150
	fmt.Printf("  loading %d rows into the source (fsync on: this takes a while)\n", rows)
	if err := src.exec("postgres", "CREATE DATABASE p2"); err != nil {
		return err
	}
	if err := src.exec("p2", "CREATE TABLE big (id bigint PRIMARY KEY, a text, b text, n numeric, ts timestamptz)"); err != nil {
		return err
	}
	const chunk = 1000000
	for from := int64(1); from <= rows; from += chunk {
		if err := src.exec("p2", fmt.Sprintf(`INSERT INTO big SELECT g, md5(g::text), md5((g * 7)::text), g * 1.5, timestamptz '2026-01-01' - g * interval '1 second' FROM generate_series(%d, %d) g`, from, min(rows, from+chunk-1))); err != nil {
			return err
		}
	}
	// Hint bits and visibility map set now, not by the first dump.
	if err := src.exec("p2", "VACUUM (FREEZE, ANALYZE)"); err != nil {
		return err
	}
	size, _ := src.value("p2", "SELECT pg_size_pretty(pg_database_size('p2'))")
	fmt.Printf("  source database: %s\n", size)

	if err := h.write("p2.yaml", `version: 1
name: bench-p2
params:
  source_url: {secret: true, env: BENCH_SRC}
  target_url: {secret: true, env: BENCH_TGT}
connections:
  source: ${{ params.source_url }}
  target: ${{ params.target_url }}
steps:
  - id: copy
    shell:
      pipe:
        - cmd: [pg_dump, -Fc]
          conn: source
        - cmd: [pg_restore, --no-owner, --no-acl, -d, '${{ conn.target.database }}']
          conn: target
`); err != nil {
		return err
	}
	pipeline := fmt.Sprintf("set -o pipefail; pg_dump -Fc -h 127.0.0.1 -p %d -U postgres -d p2 | pg_restore --no-owner --no-acl -h 127.0.0.1 -p %d -U postgres -d p2",
		src.Port, dst.Port)
	// The same binaries for both: PostgreSQL's own, first on PATH.
	env := []string{"PATH=" + h.a.BinDir + ":" + os.Getenv("PATH"), "BENCH_SRC=" + src.URL("p2"), "BENCH_TGT=" + dst.URL("p2")}
	fresh := freshCopy(src, dst, "p2")
	check := func() error {
		n, err := dst.value("p2", "SELECT count(*) FROM big")
		if err != nil {
			return err
		}
		if n != strconv.FormatInt(rows, 10) {
			return fmt.Errorf("the target has %s rows, want %d", n, rows)
		}
		return nil
	}
	bash := &command{label: "bash pipefail pg_dump | pg_restore (pty)", env: env, before: fresh, after: check,
		argv: []string{"script", "-qefc", "bash -c '" + pipeline + "'", "/dev/null"}}
	rb, freshState := h.runbook("p2.yaml")
	rb.label, rb.env, rb.after = "runbook shell.pipe (pty: progress counted)", env, check
	rb.before = func() error {
		freshState()
		argv := append([]string(nil), rb.argv...)
		for i := range argv[:len(argv)-1] {
			if argv[i] == "--log-format" {
				argv[i+1] = "text"
			}
		}
		rb.argv = []string{"script", "-qefc", "exec " + shellJoin(argv), "/dev/null"}
		return fresh()
	}
	plain, freshPlain := h.runbook("p2.yaml")
	plain.label, plain.env, plain.after = "runbook shell.pipe (no terminal: not counted)", env, check
	plain.before = func() error {
		freshPlain()
		return fresh()
	}
	res, err := h.rounds(h.runs, bash, rb, plain)
	if err != nil {
		return err
	}
	vs := "bash " + statsOf(walls(res[0])).seconds()
	r := statsOf(ratios(res[1], res[0]))
	h.add(result{goal: "P2", what: fmt.Sprintf("pg_dump -Fc | pg_restore, %s, progress counted, vs bash pipefail", size),
		value: statsOf(walls(res[1])).seconds(), vs: vs, ratio: r.ratio(), target: "≤ 1.02×", met: boolp(r.med <= 1.02)})
	h.add(result{goal: "P2", what: "the same without a terminal (direct pipe, nothing counted) vs bash",
		value: statsOf(walls(res[2])).seconds(), vs: vs, ratio: statsOf(ratios(res[2], res[0])).ratio()})
	if err := src.exec("postgres", "DROP DATABASE p2"); err != nil {
		return err
	}
	return dst.exec("postgres", "DROP DATABASE p2 WITH (FORCE)")
}

// p3: n one-statement sql steps with the durable state, against psql -f of
// the same statements (autocommit: one transaction each, as the steps).
func (h *harness) p3(n int, audit bool) error {
	section("P3  %d one-statement sql steps with durable state", n)
	c := h.a
	if err := c.exec("postgres", "CREATE DATABASE p3"); err != nil {
		return err
	}
	if err := c.exec("p3", "CREATE TABLE p3 (k int)"); err != nil {
		return err
	}
	var sql, rb strings.Builder
	rb.WriteString("version: 1\nname: bench-p3\nparams:\n  url: {secret: true, env: BENCH_URL}\nconnections:\n  db: ${{ params.url }}\nsteps:\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&sql, "INSERT INTO p3 VALUES (%d);\n", i)
		fmt.Fprintf(&rb, "  - id: s%04d\n    sql: {on: db, script: \"INSERT INTO p3 VALUES (%d)\"}\n", i, i)
	}
	if err := h.write("p3.sql", sql.String()); err != nil {
		return err
	}
	if err := h.write("p3.yaml", rb.String()); err != nil {
		return err
	}
	rows := 0
	check := func() error {
		rows += n
		got, err := c.value("p3", "SELECT count(*) FROM p3")
		if err != nil {
			return err
		}
		if got != strconv.Itoa(rows) {
			return fmt.Errorf("p3 has %s rows, want %d", got, rows)
		}
		return nil
	}
	env := c.env("p3")
	ps := &command{label: "psql -f (autocommit)", env: env, after: check, before: c.checkpoint,
		argv: []string{filepath.Join(h.a.BinDir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", filepath.Join(h.work, "p3.sql")}}
	run, fresh := h.runbook("p3.yaml")
	run.label, run.env, run.after = "runbook run, 1,000 sql steps", []string{"BENCH_URL=" + c.URL("p3")}, check
	run.before = func() error {
		fresh()
		return c.checkpoint()
	}
	minimal := &command{label: "exactly-once floor client, sql", before: c.checkpoint, after: check,
		argv: []string{h.floor, "sql", c.URL("p3"), filepath.Join(h.work, "p3.sql")}}
	cmds := []*command{ps, run, minimal}
	if audit {
		logged, freshLogged := h.runbook("p3.yaml")
		logged.label, logged.env, logged.after = "runbook run, with --log", run.env, check
		logged.before = func() error {
			freshLogged()
			logged.argv = append(logged.argv, "--log", filepath.Join(h.stateDir(), "audit.log"))
			return c.checkpoint()
		}
		cmds = append(cmds, logged)
	}
	res, err := h.rounds(h.runs, cmds...)
	if err != nil {
		return err
	}
	perStep := func(a, b []sample) stats {
		d := make([]float64, len(a))
		for i := range a {
			d[i] = (a[i].wall.Seconds() - b[i].wall.Seconds()) / float64(n) * 1000
		}
		return statsOf(d)
	}
	vs := "psql " + statsOf(walls(res[0])).seconds()
	o := perStep(res[1], res[0])
	h.add(result{goal: "P3", what: fmt.Sprintf("%d one-statement sql steps vs psql -f: overhead per step", n), value: statsOf(walls(res[1])).seconds(), vs: vs,
		ratio: fmt.Sprintf("%.3f ms [%.3f–%.3f] (%s)", o.med, o.min, o.max, statsOf(ratios(res[1], res[0])).ratio()), target: "≤ 0.5 ms", met: boolp(o.med <= 0.5)})
	o = perStep(res[2], res[0])
	h.add(result{goal: "P3", what: "exactly-once floor client vs psql -f: overhead per statement", value: statsOf(walls(res[2])).seconds(), vs: vs,
		ratio: fmt.Sprintf("%.3f ms [%.3f–%.3f]", o.med, o.min, o.max)})
	o = perStep(res[1], res[2])
	rf := statsOf(ratios(res[1], res[2]))
	h.add(result{goal: "P3", what: "runbook ÷ the exactly-once floor client (runbook's own cost per step after the ms)", value: statsOf(walls(res[1])).seconds(),
		vs: "floor " + statsOf(walls(res[2])).seconds(), ratio: fmt.Sprintf("%s (%.3f ms [%.3f–%.3f])", rf.ratio(), o.med, o.min, o.max),
		target: "≤ 1.15×", met: boolp(rf.med <= 1.15)})
	if audit {
		o := perStep(res[3], res[0])
		h.add(result{goal: "P3", what: "the same with an audit log (--log: fsynced at every step end)", value: statsOf(walls(res[3])).seconds(), vs: vs,
			ratio: fmt.Sprintf("%.3f ms [%.3f–%.3f] (%s)", o.med, o.min, o.max, statsOf(ratios(res[3], res[0])).ratio())})
	}
	return c.exec("postgres", "DROP DATABASE p3")
}

// p4: peak memory of a generate step of n statements, and the time to
// validate and plan a runbook of 5,000 steps.
func (h *harness) p4(n int) error {
	section("P4  generate of %d statements (peak RSS); validate and plan of 5,000 steps", n)
	c := h.a
	if err := c.exec("postgres", "CREATE DATABASE p4"); err != nil {
		return err
	}
	for _, mode := range []string{"batch", "all"} {
		extra := ""
		if mode == "batch" {
			extra = "\n      batch_size: 1000"
		}
		if err := h.write("p4-"+mode+".yaml", fmt.Sprintf(`version: 1
name: bench-p4-%s
params:
  url: {secret: true, env: BENCH_URL}
connections:
  db: ${{ params.url }}
steps:
  - id: many
    generate:
      on: db
      query: SELECT format('SELECT %%s AS n, ''a generated statement of a typical length''', g) FROM generate_series(1, %d) g
      transaction: %s%s
`, mode, n, mode, extra)); err != nil {
			return err
		}
	}
	var cmds []*command
	for _, mode := range []string{"batch", "all"} {
		cmd, fresh := h.runbook("p4-" + mode + ".yaml")
		cmd.label, cmd.env, cmd.timeV = "runbook generate, transaction: "+mode, []string{"BENCH_URL=" + c.URL("p4")}, true
		cmd.before = func() error { fresh(); return nil }
		cmd.after = func() error {
			out, err := outputs(cmd, "many")
			if err != nil {
				return err
			}
			if out["executed"] != float64(n) || out["statements"] != float64(n) {
				return fmt.Errorf("outputs %v, want %d statements executed", out, n)
			}
			return nil
		}
		cmds = append(cmds, cmd)
	}
	rounds := max(3, h.runs-2)
	res, err := h.rounds(rounds, cmds...)
	if err != nil {
		return err
	}
	for i, mode := range []string{"batch (1000)", "all"} {
		rss := make([]float64, len(res[i]))
		for k, s := range res[i] {
			rss[k] = float64(s.rssKB) / 1024
		}
		r := statsOf(rss)
		h.add(result{goal: "P4", what: fmt.Sprintf("generate of %d statements, transaction: %s: peak RSS (/usr/bin/time -v)", n, mode),
			value: statsOf(walls(res[i])).seconds(), vs: "—", ratio: fmt.Sprintf("%.1f MB [%.1f–%.1f]", r.med, r.min, r.max),
			target: "≤ 100 MB", met: boolp(r.max <= 100)})
	}
	if err := c.exec("postgres", "DROP DATABASE p4"); err != nil {
		return err
	}

	if err := h.write("p4-steps.yaml", manySteps(5000)); err != nil {
		return err
	}
	file := filepath.Join(h.work, "p4-steps.yaml")
	validate := &command{label: "runbook validate (5,000 steps)", argv: []string{h.bin, "validate", file}}
	plan := &command{label: "runbook plan (5,000 steps)", argv: []string{h.bin, "plan", file, "--format", "json"}}
	res, err = h.rounds(max(7, h.runs), validate, plan)
	if err != nil {
		return err
	}
	for i, what := range []string{"validate", "plan"} {
		s := statsOf(walls(res[i]))
		rss := 0.0
		for _, x := range res[i] {
			rss = max(rss, float64(x.rssKB)/1024)
		}
		h.add(result{goal: "P4", what: fmt.Sprintf("%s of a 5,000-step runbook (whole process)", what), value: s.seconds(), vs: "—",
			ratio: fmt.Sprintf("peak RSS %.0f MB", rss), target: "≤ 200 ms", met: boolp(s.med <= 0.2)})
	}
	return nil
}

// manySteps is a runbook of n steps of every kind, with templates, args,
// conditions and retries, as a long maintenance runbook has.
func manySteps(n int) string {
	var b strings.Builder
	b.WriteString(`version: 1
name: bench-p4-steps
description: A long runbook for the validate and plan timings.
params:
  url: {secret: true, default: 'postgres://postgres:secret@127.0.0.1:5999/app'}
  schema: {default: public, pattern: '[a-z_]+'}
  region: {default: eu}
  n: {default: '42'}
connections:
  db: ${{ params.url }}
steps:
`)
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  - id: s%05d\n    name: Step %d of the long runbook\n", i, i)
		switch i % 5 {
		case 1:
			fmt.Fprintf(&b, "    sql:\n      on: db\n      script: |\n        UPDATE t%d SET v = v + 1 WHERE id = $1\n      args: ['${{ params.n }}']\n", i)
		case 2:
			fmt.Fprintf(&b, "    when: params.region == \"eu\"\n    shell:\n      run: echo ${{ params.region }} step %d\n", i)
		case 3:
			b.WriteString("    generate:\n      on: db\n      query: SELECT format('ANALYZE %I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = $1\n      args: ['${{ params.schema }}']\n      transaction: batch\n      batch_size: 50\n")
		case 4:
			fmt.Fprintf(&b, "    assert:\n      on: db\n      query: SELECT count(*) AS n FROM t%d\n      that: row.n >= 0\n      message: '${{ row.n }} rows in t%d'\n", i, i)
		case 0:
			fmt.Fprintf(&b, "    retry: {attempts: 3, delay: 1s}\n    timeout: 30s\n    sql: {on: db, script: \"ANALYZE ${{ ident(params.schema) }}.t%d\"}\n", i)
		}
	}
	return b.String()
}

// p5: exact row counts of n tables compared across two clusters: one assert
// compare step against a bash loop of psql -c count(*) per table and cluster.
func (h *harness) p5(n int) error {
	section("P5  per-table row counts of %d tables compared across two clusters", n)
	for _, c := range []*cluster{h.a, h.b} {
		if err := c.exec("postgres", "CREATE DATABASE p5"); err != nil {
			return err
		}
		if err := c.exec("p5", fmt.Sprintf(`DO $$ BEGIN FOR i IN 1..%d LOOP
			EXECUTE format('CREATE TABLE t_%%s AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, %%s) g', i, (i %% 50 + 1) * 100);
			END LOOP; END $$`, n)); err != nil {
			return err
		}
		if err := c.exec("p5", "VACUUM ANALYZE"); err != nil {
			return err
		}
	}
	rows, _ := h.a.value("p5", "SELECT sum(n_live_tup) FROM pg_stat_user_tables")
	fmt.Printf("  %s rows in %d tables on each cluster\n", rows, n)
	if err := h.write("p5.yaml", `version: 1
name: bench-p5
params:
  source_url: {secret: true, env: BENCH_SRC}
  target_url: {secret: true, env: BENCH_TGT}
connections:
  source: ${{ params.source_url }}
  target: ${{ params.target_url }}
steps:
  - id: row-counts
    assert:
      compare: [source, target]
      query: |
        SELECT n.nspname, c.relname,
               (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname),
                                                    false, true, '')))[1]::text::bigint AS rows
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname = 'public'
        ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C"
`); err != nil {
		return err
	}
	psql := filepath.Join(h.a.BinDir, "psql")
	loop := fmt.Sprintf(`set -euo pipefail
fail=0
for i in $(seq 1 %d); do
  a=$(%s -X -At -h 127.0.0.1 -p %d -U postgres -d p5 -c "SELECT count(*) FROM t_$i")
  b=$(%s -X -At -h 127.0.0.1 -p %d -U postgres -d p5 -c "SELECT count(*) FROM t_$i")
  [ "$a" = "$b" ] || { echo "t_$i: $a <> $b"; fail=1; }
done
exit $fail
`, n, psql, h.a.Port, psql, h.b.Port)
	var counts strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&counts, "SELECT 't_%d', count(*) FROM t_%d;\n", i, i)
	}
	sessions := fmt.Sprintf(`set -euo pipefail
%[1]s -X -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p %[2]d -U postgres -d p5 -f %[4]s > %[5]s.a
%[1]s -X -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p %[3]d -U postgres -d p5 -f %[4]s > %[5]s.b
cmp %[5]s.a %[5]s.b
`, psql, h.a.Port, h.b.Port, filepath.Join(h.work, "p5-counts.sql"), filepath.Join(h.work, "p5-out"))
	for name, content := range map[string]string{"p5-loop.sh": loop, "p5-sessions.sh": sessions, "p5-counts.sql": counts.String()} {
		if err := h.write(name, content); err != nil {
			return err
		}
	}
	rb, fresh := h.runbook("p5.yaml")
	rb.label, rb.env = "runbook assert compare (both clusters at once)", []string{"BENCH_SRC=" + h.a.URL("p5"), "BENCH_TGT=" + h.b.URL("p5")}
	rb.before = func() error { fresh(); return nil }
	bashLoop := &command{label: "bash loop: psql -c count(*) per table and cluster", argv: []string{"bash", filepath.Join(h.work, "p5-loop.sh")}}
	bashSessions := &command{label: "psql -f: one session per cluster, in turn", argv: []string{"bash", filepath.Join(h.work, "p5-sessions.sh")}}
	res, err := h.rounds(h.runs, bashLoop, rb, bashSessions)
	if err != nil {
		return err
	}
	r := statsOf(ratios(res[1], res[0]))
	h.add(result{goal: "P5", what: fmt.Sprintf("row counts of %d tables, two clusters, vs a sequential psql loop", n), value: statsOf(walls(res[1])).seconds(),
		vs: "loop " + statsOf(walls(res[0])).seconds(), ratio: r.ratio(), target: "≤ 0.60×", met: boolp(r.med <= 0.6)})
	h.add(result{goal: "P5", what: "the same vs psql -f of the 1,000 counts, one session per cluster in turn", value: statsOf(walls(res[1])).seconds(),
		vs: "psql -f " + statsOf(walls(res[2])).seconds(), ratio: statsOf(ratios(res[1], res[2])).ratio()})
	for _, c := range []*cluster{h.a, h.b} {
		if err := c.exec("postgres", "DROP DATABASE p5"); err != nil {
			return err
		}
	}
	return nil
}

// shellJoin quotes argv for sh.
func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
