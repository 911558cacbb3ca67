package pgcopy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
)

// Item is one object of a schema section as pg_dump writes it (a table, an
// index, a constraint …): its SQL, and its name and type for messages.
type Item struct {
	Name string `json:"name"`
	Type string `json:"type"`
	SQL  string `json:"sql"`
}

// Section is a schema section split into items, with the settings pg_dump
// puts before them (search_path, …), which every session that runs them
// runs first.
type Section struct {
	Preamble string `json:"preamble"`
	Items    []Item `json:"items"`
}

// SQL is the whole section, preamble first.
func (s *Section) SQL() string {
	var b strings.Builder
	b.WriteString(s.Preamble)
	for _, it := range s.Items {
		b.WriteString(it.SQL)
	}
	return b.String()
}

// parallel reports whether an item of post-data may be built at the same
// time as others: indexes and the constraints that build one (primary key,
// unique, exclusion). Foreign keys, triggers, rules, policies, index
// attachments, comments and refreshes come after them, in the dump's order.
func (it Item) parallel() bool { return it.Type == "INDEX" || it.Type == "CONSTRAINT" }

// header is the comment pg_dump writes before each object of a plain dump.
var header = regexp.MustCompile(`(?m)^--\n-- (?:Data for )?Name: ([^\n]*?); Type: ([^;\n]*);[^\n]*\n--\n`)

// metaCommand matches psql's \restrict and \unrestrict, which plain dumps
// carry for psql and which a server does not take.
var metaCommand = regexp.MustCompile(`(?m)^\\(?:un)?restrict [^\n]*\n?`)

// parseDump splits a plain-format dump into its items.
func parseDump(dump string) *Section {
	dump = metaCommand.ReplaceAllString(dump, "")
	locs := header.FindAllStringSubmatchIndex(dump, -1)
	s := &Section{}
	if len(locs) == 0 {
		s.Preamble = dump
		return s
	}
	s.Preamble = dump[:locs[0][0]]
	for i, l := range locs {
		end := len(dump)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		s.Items = append(s.Items, Item{Name: dump[l[2]:l[3]], Type: dump[l[4]:l[5]], SQL: dump[l[0]:end]})
	}
	return s
}

// dumpSection runs pg_dump for one section of the source's schema, in the
// exported snapshot, without owners or privileges, and parses what it
// writes. env and files reach the source without a password in argv.
func dumpSection(ctx context.Context, section, snapshot string, tables []string, env []string, files []*os.File) (*Section, error) {
	args := []string{"--section=" + section, "--no-owner", "--no-acl", "--no-password", "--snapshot=" + snapshot}
	for _, t := range tables {
		args = append(args, "--table="+t)
	}
	cmd := exec.CommandContext(ctx, "pg_dump", args...)
	cmd.Env = env
	cmd.ExtraFiles = files
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("pg_dump --section=%s: %s", section, msg)
	}
	return parseDump(out.String()), nil
}
