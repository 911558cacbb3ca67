// Package pgquote quotes identifiers and literals exactly as PostgreSQL 15's
// quote_ident and quote_literal do, so SQL built here matches SQL built by the
// server (and by runbooks through the ident/literal functions).
package pgquote

import "strings"

// keywords.go is generated from a PostgreSQL 15 server's pg_get_keywords():
// RUNBOOK_TEST_DATABASE_URL=postgres://… go generate ./internal/pgquote
// (TestEveryKeyword checks the table against the test server.)
//
//go:generate go run gen_keywords.go -o keywords.go

// category is a keyword's category in PostgreSQL's grammar
// (src/include/common/keywords.h).
type category uint8

const (
	unreserved category = iota
	colName
	typeFuncName
	reserved
)

// Ident quotes s as PostgreSQL's quote_ident does.
//
// s is returned as is when it starts with a lower-case ASCII letter or an
// underscore, holds only lower-case ASCII letters, digits and underscores,
// and is not a keyword other than an unreserved one. Otherwise it is put in
// double quotes, with embedded double quotes doubled; so is the empty string.
// Any non-ASCII byte forces quotes. (quote_all_identifiers, which only
// pg_dump sets, is not modelled. Like the server, both functions work on
// bytes; PostgreSQL text cannot hold NUL, so neither can a meaningful s.)
func Ident(s string) string {
	safe := s != "" && (s[0] >= 'a' && s[0] <= 'z' || s[0] == '_')
	quotes := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' {
			continue
		}
		safe = false
		if c == '"' {
			quotes++
		}
	}
	if safe {
		if cat, ok := keywords[s]; ok && cat != unreserved {
			safe = false
		}
	}
	if safe {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + quotes + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			b.WriteByte('"')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// Literal quotes s as PostgreSQL's quote_literal does.
//
// s is put in single quotes with embedded single quotes doubled. When s holds
// a backslash, every backslash is doubled too and the literal gets the E
// prefix, so the result means s whatever standard_conforming_strings is.
func Literal(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 3)
	backslash := strings.IndexByte(s, '\\') >= 0
	if backslash {
		b.WriteByte('E')
	}
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\'' || c == '\\' {
			b.WriteByte(c)
		}
		b.WriteByte(c)
	}
	b.WriteByte('\'')
	return b.String()
}
