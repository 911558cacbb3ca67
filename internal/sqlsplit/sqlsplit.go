// Package sqlsplit splits a PostgreSQL script into statements the way psql
// does: on semicolons outside quotes, dollar quotes, comments, parentheses and
// BEGIN ATOMIC … END bodies.
package sqlsplit

import (
	"strings"
	"unicode"
)

// Statement is one statement of a script and where it starts in the script.
type Statement struct {
	SQL    string // the statement without the terminating semicolon, trimmed
	Offset int    // byte offset of SQL's first byte in the script
}

// Split returns the statements of script, skipping empty ones (comments and
// whitespace only).
func Split(script string) []Statement {
	var out []Statement
	start := 0
	emit := func(end int) {
		raw := script[start:end]
		trimmed := strings.TrimSpace(raw)
		if trimmed != "" && !onlyComments(trimmed) {
			out = append(out, Statement{SQL: trimmed, Offset: start + strings.Index(raw, trimmed)})
		}
	}
	paren, atomic := 0, 0
	var prevWord string
	for i := 0; i < len(script); {
		c := script[i]
		switch {
		case c == '-' && strings.HasPrefix(script[i:], "--"):
			j := strings.IndexByte(script[i:], '\n')
			if j < 0 {
				i = len(script)
			} else {
				i += j + 1
			}
		case c == '/' && strings.HasPrefix(script[i:], "/*"):
			i = skipBlockComment(script, i)
		case c == '\'':
			escapes := i > 0 && (script[i-1] == 'E' || script[i-1] == 'e') && (i < 2 || !isIdent(script[i-2]))
			i = skipQuoted(script, i, '\'', escapes)
		case c == '"':
			i = skipQuoted(script, i, '"', false)
		case c == '$' && (i == 0 || !isIdent(script[i-1])):
			if tag, ok := dollarTag(script[i:]); ok {
				j := strings.Index(script[i+len(tag):], tag)
				if j < 0 {
					i = len(script)
				} else {
					i += len(tag) + j + len(tag)
				}
			} else {
				i++
			}
		case c == '(':
			paren++
			i++
		case c == ')':
			if paren > 0 {
				paren--
			}
			i++
		case c == ';' && paren == 0 && atomic == 0:
			emit(i)
			start = i + 1
			i++
			prevWord = ""
		case isIdentStart(c):
			j := i
			for j < len(script) && isIdent(script[j]) {
				j++
			}
			w := strings.ToUpper(script[i:j])
			switch {
			case w == "ATOMIC" && prevWord == "BEGIN":
				atomic++
			case atomic > 0 && w == "CASE":
				atomic++
			case atomic > 0 && w == "END":
				atomic--
			}
			prevWord = w
			i = j
		default:
			i++
		}
	}
	emit(len(script))
	return out
}

func onlyComments(s string) bool {
	for _, st := range []string{s} {
		i := 0
		for i < len(st) {
			switch {
			case unicode.IsSpace(rune(st[i])):
				i++
			case strings.HasPrefix(st[i:], "--"):
				j := strings.IndexByte(st[i:], '\n')
				if j < 0 {
					return true
				}
				i += j + 1
			case strings.HasPrefix(st[i:], "/*"):
				i = skipBlockComment(st, i)
			default:
				return false
			}
		}
	}
	return true
}

func skipBlockComment(s string, i int) int {
	depth := 0
	for i < len(s) {
		switch {
		case strings.HasPrefix(s[i:], "/*"):
			depth++
			i += 2
		case strings.HasPrefix(s[i:], "*/"):
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return i
}

func skipQuoted(s string, i int, q byte, backslash bool) int {
	i++
	for i < len(s) {
		switch {
		case backslash && s[i] == '\\':
			i += 2
		case s[i] == q && i+1 < len(s) && s[i+1] == q:
			i += 2
		case s[i] == q:
			return i + 1
		default:
			i++
		}
	}
	return i
}

// dollarTag returns the opening $tag$ at the start of s.
func dollarTag(s string) (string, bool) {
	for j := 1; j < len(s); j++ {
		c := s[j]
		if c == '$' {
			return s[:j+1], true
		}
		if !(isIdent(c) && !(j == 1 && c >= '0' && c <= '9')) {
			return "", false
		}
	}
	return "", false
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func isIdent(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' || c == '$' }

// Position returns the 1-based line and column of a byte offset in s.
func Position(s string, offset int) (line, col int) {
	if offset > len(s) {
		offset = len(s)
	}
	line = 1 + strings.Count(s[:offset], "\n")
	lineStart := strings.LastIndexByte(s[:offset], '\n') + 1
	return line, len([]rune(s[lineStart:offset])) + 1
}

// CastParams appends a cast to every reference to the positional parameters
// in casts ($N → $N::type), outside quotes, dollar quotes and comments.
func CastParams(sql string, casts map[int]string) string {
	var b strings.Builder
	last := 0
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			j := strings.IndexByte(sql[i:], '\n')
			if j < 0 {
				i = len(sql)
			} else {
				i += j + 1
			}
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			i = skipBlockComment(sql, i)
		case c == '\'':
			escapes := i > 0 && (sql[i-1] == 'E' || sql[i-1] == 'e') && (i < 2 || !isIdent(sql[i-2]))
			i = skipQuoted(sql, i, '\'', escapes)
		case c == '"':
			i = skipQuoted(sql, i, '"', false)
		case c == '$' && (i == 0 || !isIdent(sql[i-1])):
			if tag, ok := dollarTag(sql[i:]); ok {
				j := strings.Index(sql[i+len(tag):], tag)
				if j < 0 {
					i = len(sql)
				} else {
					i += len(tag) + j + len(tag)
				}
				continue
			}
			j := i + 1
			for j < len(sql) && sql[j] >= '0' && sql[j] <= '9' {
				j++
			}
			n := 0
			for _, d := range sql[i+1 : j] {
				n = n*10 + int(d-'0')
			}
			if t, ok := casts[n]; ok && j > i+1 {
				b.WriteString(sql[last:j])
				b.WriteString("::" + t)
				last = j
			}
			i = j
		default:
			i++
		}
	}
	b.WriteString(sql[last:])
	return b.String()
}
