package pipeline

import (
	"bytes"
	"unicode/utf8"
)

// lineSplitter turns a byte stream into lines of at most MaxLine bytes.
type lineSplitter struct {
	buf  []byte // the current line so far, at most MaxLine bytes between writes
	emit func(line string)
}

func (l *lineSplitter) write(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.buf = append(l.buf, p...)
			// Deliver what cannot be part of a line of MaxLine bytes; keep
			// the rest, which a "\n" may still end.
			for len(l.buf) > MaxLine {
				cut := runeCut(l.buf, MaxLine)
				l.emit(string(l.buf[:cut]))
				l.buf = l.buf[:copy(l.buf, l.buf[cut:])]
			}
			return
		}
		line := append(l.buf, p[:i]...)
		line = bytes.TrimSuffix(line, []byte{'\r'})
		for len(line) > MaxLine {
			cut := runeCut(line, MaxLine)
			l.emit(string(line[:cut]))
			line = line[cut:]
		}
		l.emit(string(line))
		l.buf = l.buf[:0]
		p = p[i+1:]
	}
}

// flush delivers a last line that has no "\n".
func (l *lineSplitter) flush() {
	for len(l.buf) > 0 {
		cut := runeCut(l.buf, MaxLine)
		l.emit(string(l.buf[:cut]))
		l.buf = l.buf[cut:]
	}
}

// runeCut returns where to cut b so the first part has at most max bytes and
// does not end inside a UTF-8 sequence (when b is valid UTF-8 there).
func runeCut(b []byte, max int) int {
	if len(b) <= max {
		return len(b)
	}
	for cut := max; cut > 0 && cut > max-utf8.UTFMax; cut-- {
		if utf8.RuneStart(b[cut]) {
			return cut
		}
	}
	return max
}
