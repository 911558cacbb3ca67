package schema

import (
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// source is a document's text with an index of where its lines start, built
// on first use. Lines end at \n, \r\n or \r, as in YAML.
type source struct {
	b      []byte
	starts []int
}

func (s *source) index() {
	if s.starts != nil {
		return
	}
	s.starts = []int{0}
	for i := 0; i < len(s.b); i++ {
		switch s.b[i] {
		case '\r':
			if i+1 < len(s.b) && s.b[i+1] == '\n' {
				i++
			}
			fallthrough
		case '\n':
			s.starts = append(s.starts, i+1)
		}
	}
}

// line returns the text of a line (1-based), without its line break.
func (s *source) line(n int) (string, bool) {
	s.index()
	if n < 1 || n > len(s.starts) {
		return "", false
	}
	from, to := s.starts[n-1], len(s.b)
	if n < len(s.starts) {
		to = s.starts[n]
	}
	return strings.TrimRight(string(s.b[from:to]), "\r\n"), true
}

// offset returns the byte offset of a position (its column counts characters).
func (s *source) offset(p Pos) (int, bool) {
	text, ok := s.line(p.Line)
	if !ok {
		return 0, false
	}
	i := s.starts[p.Line-1]
	for col := 1; col < p.Col; col++ {
		if len(text) == 0 {
			return 0, false
		}
		_, size := utf8.DecodeRuneInString(text)
		text, i = text[size:], i+size
	}
	return i, true
}

// locator maps a rune offset inside a scalar's value to a position in the file.
type locator struct {
	line, col int
	style     yaml.Style
	val       string
	src       *source
}

func newLocator(n *yaml.Node, src *source) locator {
	return locator{line: n.Line, col: n.Column, style: n.Style, val: n.Value, src: src}
}

// at returns the file position of the rune at offset in the value. It walks
// the scalar's source as YAML wrote it, undoing quoting, escapes, line folding
// and block indentation; should the source not read back as the value, it
// returns the position of the scalar itself.
func (l locator) at(offset int) Pos {
	if l.line == 0 {
		return Pos{}
	}
	if l.src != nil && offset >= 0 {
		var p Pos
		var ok bool
		switch {
		case l.style&yaml.LiteralStyle != 0:
			p, ok = l.inLiteral(offset)
		case l.style&yaml.FoldedStyle != 0:
			p, ok = l.inFolded(offset)
		default:
			p, ok = l.inFlow(offset)
		}
		if ok {
			return p
		}
	}
	return Pos{Line: l.line, Col: l.col}
}

// inLiteral: each line of a literal block is the source line without the
// block's indentation.
func (l locator) inLiteral(offset int) (Pos, bool) {
	lines := strings.Split(l.val, "\n")
	k, col := 0, offset
	for k < len(lines) && col > utf8.RuneCountInString(lines[k]) {
		col -= utf8.RuneCountInString(lines[k]) + 1
		k++
	}
	if k == len(lines) {
		return Pos{}, false
	}
	text, ok := l.src.line(l.line + 1 + k)
	if !ok || !strings.HasSuffix(text, lines[k]) {
		return Pos{}, false
	}
	indent := utf8.RuneCountInString(text) - utf8.RuneCountInString(lines[k])
	return Pos{Line: l.line + 1 + k, Col: indent + 1 + col}, true
}

// inFolded: lines of a folded block are joined by a space, or by newlines
// where empty lines separate them.
func (l locator) inFolded(offset int) (Pos, bool) {
	line := l.line + 1
	indent := -1
	content := func(n int) ([]rune, bool) {
		text, ok := l.src.line(n)
		if !ok {
			return nil, false
		}
		r := []rune(text)
		if indent < 0 && strings.TrimSpace(text) != "" {
			indent = len(r) - len([]rune(strings.TrimLeft(text, " ")))
		}
		if indent < 0 || len(r) < indent {
			return nil, true
		}
		return r[indent:], true
	}
	for { // leading empty lines are newlines of the value
		text, ok := l.src.line(line)
		if !ok || strings.TrimSpace(text) != "" {
			break
		}
		line++
	}
	val := []rune(l.val)
	cur, ok := content(line)
	if !ok {
		return Pos{}, false
	}
	k := 0
	for j := 0; j < len(val); {
		if k < len(cur) {
			if cur[k] != val[j] {
				return Pos{}, false
			}
			if j == offset {
				return Pos{Line: line, Col: indent + 1 + k}, true
			}
			j, k = j+1, k+1
			continue
		}
		// End of a source line: a single break folds into a space; n empty
		// lines after it become n newlines.
		empty := 0
		for {
			text, ok := l.src.line(line + 1 + empty)
			if !ok || strings.TrimSpace(text) != "" {
				break
			}
			empty++
		}
		n := max(empty, 1)
		if offset >= j && offset < j+n {
			return Pos{Line: line, Col: indent + 1 + k}, true
		}
		j += n
		line += 1 + empty
		if cur, ok = content(line); !ok {
			return Pos{}, false
		}
		k = 0
	}
	return Pos{}, false
}

// inFlow walks a plain, single-quoted or double-quoted scalar.
func (l locator) inFlow(offset int) (Pos, bool) {
	start, ok := l.src.offset(Pos{Line: l.line, Col: l.col})
	if !ok {
		return Pos{}, false
	}
	c := &cursor{b: l.src.b, i: start, pos: Pos{Line: l.line, Col: l.col}}
	single := l.style&yaml.SingleQuotedStyle != 0
	double := l.style&yaml.DoubleQuotedStyle != 0
	c.skipProperties()
	if single || double {
		if q := c.peek(0); (single && q != '\'') || (double && q != '"') {
			return Pos{}, false
		}
		c.next()
	}
	val := []rune(l.val)
	for j := 0; j <= len(val); {
		r := c.peek(0)
		switch {
		case double && r == '\\' && isBreak(c.peek(1)):
			// An escaped line break joins the lines.
			c.next()
			c.skipBreak()
			c.skipBlanks()
			continue
		case j == offset:
			return c.pos, true
		case j == len(val):
			return Pos{}, false
		case double && r == '\\':
			c.nextN(escapeLen(c.peek(1)))
			j++
		case single && r == '\'':
			if c.peek(1) != '\'' {
				return Pos{}, false
			}
			c.nextN(2)
			j++
		case r == ' ' || r == '\t' || isBreak(r):
			// White space reads as itself unless it holds a line break: one
			// break folds into a space, n+1 breaks into n newlines.
			run := *c
			breaks, n := 0, 0
			for {
				r := c.peek(0)
				if r == ' ' || r == '\t' {
					c.next()
				} else if isBreak(r) {
					c.skipBreak()
					breaks++
				} else {
					break
				}
				n++
			}
			if breaks == 0 {
				*c = run
				for ; n > 0; n-- {
					if c.peek(0) != val[j] {
						return Pos{}, false
					}
					if j == offset {
						return c.pos, true
					}
					c.next()
					j++
				}
				continue
			}
			n = max(breaks-1, 1)
			if offset >= j && offset < j+n {
				return run.pos, true
			}
			j += n
		default:
			if r != val[j] {
				return Pos{}, false
			}
			c.next()
			j++
		}
	}
	return Pos{}, false
}

// cursor reads a source rune by rune, keeping its position.
type cursor struct {
	b   []byte
	i   int
	pos Pos
}

// peek returns the rune k runes ahead, or -1 at the end.
func (c *cursor) peek(k int) rune {
	i := c.i
	for ; k > 0 && i < len(c.b); k-- {
		_, size := utf8.DecodeRune(c.b[i:])
		i += size
	}
	if i >= len(c.b) {
		return -1
	}
	r, _ := utf8.DecodeRune(c.b[i:])
	return r
}

func (c *cursor) next() {
	if c.i >= len(c.b) {
		return
	}
	_, size := utf8.DecodeRune(c.b[c.i:])
	c.i += size
	c.pos.Col++
}

func (c *cursor) nextN(n int) {
	for ; n > 0; n-- {
		c.next()
	}
}

func (c *cursor) skipBreak() {
	if c.peek(0) == '\r' && c.peek(1) == '\n' {
		c.i++
	}
	c.i++
	c.pos = Pos{Line: c.pos.Line + 1, Col: 1}
}

func (c *cursor) skipBlanks() {
	for r := c.peek(0); r == ' ' || r == '\t'; r = c.peek(0) {
		c.next()
	}
}

// skipProperties skips a node's anchor (&a) and tag (!t) before its value.
func (c *cursor) skipProperties() {
	for r := c.peek(0); r == '&' || r == '!'; r = c.peek(0) {
		for r := c.peek(0); r != ' ' && r != '\t' && r != -1 && !isBreak(r); r = c.peek(0) {
			c.next()
		}
		for r := c.peek(0); r == ' ' || r == '\t' || isBreak(r); r = c.peek(0) {
			if isBreak(r) {
				c.skipBreak()
			} else {
				c.next()
			}
		}
	}
}

func isBreak(r rune) bool { return r == '\n' || r == '\r' }

// escapeLen is the length in runes of a double-quoted escape whose letter is e.
func escapeLen(e rune) int {
	switch e {
	case 'x':
		return 4
	case 'u':
		return 6
	case 'U':
		return 10
	}
	return 2
}
