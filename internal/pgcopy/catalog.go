package pgcopy

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/runbookhq/runbook/internal/pgquote"
)

// Table is a table whose rows are copied: an ordinary table, a leaf
// partition, an unlogged table (never a partitioned parent, whose rows live
// in its leaves, nor a view or a foreign table).
type Table struct {
	Schema string `json:"schema"`
	Name   string `json:"name"`
	// Columns are the quoted columns the COPY lists: every column but the
	// generated ones, which the target computes.
	Columns string `json:"columns"`
	// Binary: the COPY uses the binary format, which every column's type
	// has the same on any server (built-in types, enums): less to encode,
	// parse and send (bytea travels as its bytes, not twice as many hex
	// digits). Other tables travel as text, as pg_dump sends them.
	Binary bool `json:"binary,omitempty"`
	// Bytes is the table's size on the source (heap and TOAST), at the plan.
	Bytes int64 `json:"bytes"`
	// Parts split the table's rows; one part covers the whole table.
	Parts []Part `json:"parts"`
}

// Ident is the table's quoted name.
func (t *Table) Ident() string { return pgquote.Ident(t.Schema) + "." + pgquote.Ident(t.Name) }

// Label is the table's name as people read it (schema.name).
func (t *Table) Label() string { return t.Schema + "." + t.Name }

// Part is a range of a table's rows, copied in one target transaction.
type Part struct {
	// ID names the part's unit in the journal: "schema.table" for a whole
	// table, "schema.table#N" (from 1) for the Nth part of a split one.
	ID string `json:"id"`
	// Where selects the part's rows ("" for the whole table): a range of
	// an integer key, or of ctid (block numbers).
	Where string `json:"where,omitempty"`
	// Bytes is the part's expected share of the table's size.
	Bytes int64 `json:"bytes"`
}

// Evidence is what shows that a table was written: the source's counters
// of inserted, updated and deleted rows (pg_stat_all_tables). It is read when
// the copy starts and compared when it resumes in a new snapshot.
type Evidence struct {
	Table string `json:"table"`
	Ins   int64  `json:"ins"`
	Upd   int64  `json:"upd"`
	Del   int64  `json:"del"`
}

// tablesSQL lists the tables whose rows are copied, with their sizes and
// their COPY column lists. Tables of the system schemas are left out, and
// so are extensions' tables but their configuration tables, whose rows that
// the extension's condition selects (the rows users added) are copied, as
// pg_dump does.
const tablesSQL = `
SELECT n.nspname, c.relname, pg_table_size(c.oid),
       coalesce((SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                   FROM pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), ''),
       coalesce((SELECT bool_and(a.atttypid < 16384 OR t.typtype = 'e')
                   FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), false),
       coalesce((SELECT format('%I.%I', rn.nspname, r.relname)
                   FROM pg_class r JOIN pg_namespace rn ON rn.oid = r.relnamespace
                  WHERE c.relispartition AND r.oid = pg_partition_root(c.oid)), ''),
       pg_relation_size(c.oid) / current_setting('block_size')::int8,
       (SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = c.oid AND i.indisprimary AND i.indnkeyatts = 1 AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)),
       x.cond
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN LATERAL (SELECT coalesce(e.extcondition[array_position(e.extconfig, c.oid)], '') AS cond
                       FROM pg_extension e WHERE c.oid = ANY (e.extconfig) LIMIT 1) x ON true
 WHERE c.relkind = 'r'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
   AND (x.cond IS NOT NULL
        OR NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'))
 ORDER BY 1, 2`

// Filter keeps the tables that match one of include (all when it is empty)
// and none of exclude. A pattern is schema.table with shell wildcards (*,
// ?); a leaf partition also matches by its partitioned root's name.
type Filter struct {
	Include, Exclude []string
}

func (f Filter) match(names ...string) bool {
	in := len(f.Include) == 0
	for _, n := range names {
		if n == "" {
			continue
		}
		for _, p := range f.Include {
			if ok, _ := path.Match(p, n); ok {
				in = true
			}
		}
		for _, p := range f.Exclude {
			if ok, _ := path.Match(p, n); ok {
				return false
			}
		}
	}
	return in
}

// listTables reads the source's tables in the transaction of q (the
// exported snapshot's) and splits those larger than split into parts:
// ranges of blocks (ctid), or on a server older than 14 ranges of a
// one-column integer primary key when the table has one.
func listTables(ctx context.Context, q *pgx.Conn, f Filter, split int64) ([]*Table, error) {
	var version int
	if err := q.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		return nil, fmt.Errorf("the source's version: %w", err)
	}
	rows, err := q.Query(ctx, tablesSQL)
	if err != nil {
		return nil, fmt.Errorf("listing the source's tables: %w", err)
	}
	type row struct {
		t      *Table
		pages  int64
		key    *string
		parent string
		cond   *string
	}
	var all []row
	for rows.Next() {
		var r row
		r.t = &Table{}
		var pages int64
		if err := rows.Scan(&r.t.Schema, &r.t.Name, &r.t.Bytes, &r.t.Columns, &r.t.Binary, &r.parent, &pages, &r.key, &r.cond); err != nil {
			rows.Close()
			return nil, err
		}
		r.pages = pages
		if f.match(r.t.Label(), r.parent) {
			all = append(all, r)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing the source's tables: %w", err)
	}
	tables := make([]*Table, 0, len(all))
	for _, r := range all {
		if r.cond != nil {
			// An extension's configuration table: its condition's rows, in
			// one part.
			where := strings.TrimSpace(*r.cond)
			if len(where) >= 5 && strings.EqualFold(where[:5], "WHERE") {
				where = strings.TrimSpace(where[5:])
			}
			if where == "" {
				where = "true"
			}
			r.t.Parts = []Part{{ID: r.t.Label(), Where: where, Bytes: r.t.Bytes}}
			tables = append(tables, r.t)
			continue
		}
		n := 1
		if split > 0 && r.t.Bytes > split {
			n = int((r.t.Bytes + split - 1) / split)
		}
		// A range of blocks is read by a TID range scan (PostgreSQL 14 and
		// later): each part reads its share of the table. A range of keys
		// may cost a scan of the whole table per part, so it serves only
		// older servers.
		if n > 1 && r.key != nil && version < 140000 {
			if err := keyParts(ctx, q, r.t, *r.key, n); err != nil {
				return nil, err
			}
		} else if n > 1 {
			blocks := r.t.Bytes / 8192 // pg_table_size counts TOAST too: a bound, not the heap's size
			if r.pages > 0 {
				blocks = r.pages
			}
			blockParts(r.t, blocks, n)
		}
		if len(r.t.Parts) == 0 {
			r.t.Parts = []Part{{ID: r.t.Label(), Bytes: r.t.Bytes}}
		}
		tables = append(tables, r.t)
	}
	return tables, nil
}

// keyParts splits a table into n ranges of its integer key between its
// smallest and largest values; the first and last ranges are open, so that
// every row falls in one.
func keyParts(ctx context.Context, q *pgx.Conn, t *Table, key string, n int) error {
	k := pgquote.Ident(key)
	var lo, hi *int64
	if err := q.QueryRow(ctx, fmt.Sprintf("SELECT min(%s)::int8, max(%s)::int8 FROM ONLY %s", k, k, t.Ident())).Scan(&lo, &hi); err != nil {
		return fmt.Errorf("the key range of %s: %w", t.Label(), err)
	}
	if lo == nil || *hi-*lo < int64(n) {
		return nil
	}
	bounds := make([]string, n-1)
	for i := range bounds {
		bounds[i] = strconv.FormatInt(*lo+(*hi-*lo)/int64(n)*int64(i+1), 10)
	}
	t.Parts = ranges(t, k, bounds, "")
	return nil
}

// blockParts splits a table into n ranges of blocks; ctid ranges are read
// by TID range scans, each part reading only its blocks.
func blockParts(t *Table, blocks int64, n int) {
	if blocks < int64(n) {
		return
	}
	bounds := make([]string, n-1)
	for i := range bounds {
		bounds[i] = fmt.Sprintf("'(%d,0)'", blocks/int64(n)*int64(i+1))
	}
	t.Parts = ranges(t, "ctid", bounds, "::tid")
}

func ranges(t *Table, col string, bounds []string, cast string) []Part {
	n := len(bounds) + 1
	parts := make([]Part, n)
	for i := range parts {
		var w []string
		if i > 0 {
			w = append(w, fmt.Sprintf("%s >= %s%s", col, bounds[i-1], cast))
		}
		if i < n-1 {
			w = append(w, fmt.Sprintf("%s < %s%s", col, bounds[i], cast))
		}
		parts[i] = Part{ID: fmt.Sprintf("%s#%d", t.Label(), i+1), Where: strings.Join(w, " AND "), Bytes: t.Bytes / int64(n)}
	}
	return parts
}

// evidenceSQL reads the write counters of every table.
const evidenceSQL = `
SELECT format('%I.%I', schemaname, relname), n_tup_ins, n_tup_upd, n_tup_del
  FROM pg_stat_all_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`

// readEvidence reads the write counters of every table (by quoted name).
// Read before the snapshot is taken, a write in between shows as one made
// since: a resume refuses when it need not, never the other way.
func readEvidence(ctx context.Context, q *pgx.Conn) ([]Evidence, error) {
	rows, err := q.Query(ctx, evidenceSQL)
	if err != nil {
		return nil, fmt.Errorf("reading the source's write counters: %w", err)
	}
	defer rows.Close()
	var ev []Evidence
	for rows.Next() {
		var e Evidence
		if err := rows.Scan(&e.Table, &e.Ins, &e.Upd, &e.Del); err != nil {
			return nil, err
		}
		ev = append(ev, e)
	}
	return ev, rows.Err()
}

// evidenceOf keeps the evidence of the planned tables.
func evidenceOf(all []Evidence, tables []*Table) []Evidence {
	keep := make(map[string]bool, len(tables))
	for _, t := range tables {
		keep[t.Ident()] = true
	}
	var ev []Evidence
	for _, e := range all {
		if keep[e.Table] {
			ev = append(ev, e)
		}
	}
	return ev
}

// written compares evidence read at the start with evidence read now, and
// returns the tables written in between (or gone).
func written(then, now []Evidence) []string {
	cur := make(map[string]Evidence, len(now))
	for _, e := range now {
		cur[e.Table] = e
	}
	var w []string
	for _, e := range then {
		if c, ok := cur[e.Table]; !ok || c != e {
			w = append(w, e.Table)
		}
	}
	sort.Strings(w)
	return w
}
