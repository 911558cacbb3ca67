package schema

import (
	"fmt"
	"sort"
	"strings"

	"github.com/runbookhq/runbook/internal/exitcode"
)

// Pos is a position in a source file: 1-based line and column.
type Pos struct {
	Line int `json:"line"`
	Col  int `json:"col"`
}

// Less reports whether p comes before q in the file.
func (p Pos) Less(q Pos) bool {
	return p.Line < q.Line || p.Line == q.Line && p.Col < q.Col
}

// Error is one problem found in a document, at a position of its file.
type Error struct {
	File string
	Pos  Pos
	Msg  string
	// src is the whole source, kept to render a snippet.
	src []byte
	// arg is the position (from 1) of the command-line argument the error
	// is about (--var), so that such errors keep the command line's order.
	arg int
}

// Error renders the error as FILE:LINE:COL: message.
func (e *Error) Error() string {
	if e.Pos.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Pos.Line, e.Pos.Col, e.Msg)
}

// Snippet renders the lines around the error with line numbers and a caret under
// the column, as go-task does. It returns "" when the source is unknown.
func (e *Error) Snippet() string {
	if e.src == nil || e.Pos.Line == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimSuffix(string(e.src), "\n"), "\n")
	if e.Pos.Line > len(lines) {
		return ""
	}
	var b strings.Builder
	from, to := max(1, e.Pos.Line-2), min(len(lines), e.Pos.Line+1)
	width := len(fmt.Sprint(to))
	for n := from; n <= to; n++ {
		line := strings.ReplaceAll(lines[n-1], "\t", " ")
		if len(line) > 160 {
			line = line[:160] + "…"
		}
		mark := " "
		if n == e.Pos.Line {
			mark = ">"
		}
		fmt.Fprintf(&b, "%s %*d | %s\n", mark, width, n, line)
		if n == e.Pos.Line && e.Pos.Col > 0 && e.Pos.Col <= 161 {
			fmt.Fprintf(&b, "  %*s | %s^\n", width, "", strings.Repeat(" ", e.Pos.Col-1))
		}
	}
	return b.String()
}

// Errors is every problem found in a document, in file order. A loader reports all
// of them at once, never just the first.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// ExitCode makes a document's errors exit with exitcode.Invalid.
func (es Errors) ExitCode() int { return exitcode.Invalid }

// Sort orders the errors by file and position, and drops exact duplicates.
func (es Errors) sorted() Errors {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.arg > 0 && b.arg > 0 {
			return a.arg < b.arg
		}
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line < b.Pos.Line
		}
		return a.Pos.Col < b.Pos.Col
	})
	out := es[:0]
	for i, e := range es {
		if i > 0 && e.Error() == es[i-1].Error() {
			continue
		}
		out = append(out, e)
	}
	return out
}

// errList collects errors for one file while decoding.
type errList struct {
	file string
	src  []byte
	errs Errors
	text *source
}

// source returns the file's text with its line index.
func (l *errList) source() *source {
	if l.text == nil && l.src != nil {
		l.text = &source{b: l.src}
	}
	return l.text
}

func (l *errList) add(p Pos, format string, args ...any) {
	l.errs = append(l.errs, &Error{File: l.file, Pos: p, Msg: fmt.Sprintf(format, args...), src: l.src})
}

func (l *errList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	return l.errs.sorted()
}

// suggest returns ` (did you mean "x"?)` when one candidate is close to s.
func suggest(s string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		d := levenshtein(strings.ToLower(s), strings.ToLower(c))
		if d < bestD {
			best, bestD = c, d
		}
	}
	limit := 2
	if len(s) > 8 {
		limit = 3
	}
	if best == "" || bestD > limit || bestD >= len(s) {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
