// Package termtest helps tests look at what a terminal would show: Screen
// interprets the bytes written to a terminal (carriage returns, erased lines,
// colours) into the lines a person sees, and OpenPTY gives a real
// pseudo-terminal to write to.
package termtest

import (
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Screen is a minimal terminal: it keeps the text a terminal would show
// after the bytes written to it, and the lines that were drawn and then
// erased in place (the frames of a progress line). It understands printable
// text, \r, \n, \b, \t, and the CSI sequences for erasing (K, J), moving up
// (A) and colours (m, ignored). Safe for concurrent use.
type Screen struct {
	mu sync.Mutex
	// Width wraps lines longer than it (0: never).
	Width   int
	lines   [][]rune
	row     int
	col     int
	pending []byte
	erased  []string
	colored bool
}

// Write implements io.Writer.
func (s *Screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := append(s.pending, p...)
	s.pending = nil
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == 0x1b:
			n, ok := s.escape(b[i:])
			if !ok {
				s.pending = append([]byte(nil), b[i:]...)
				return len(p), nil
			}
			i += n
			continue
		case c == '\r':
			s.col = 0
		case c == '\n':
			s.row++
			s.col = 0
		case c == '\b':
			s.col = max(s.col-1, 0)
		case c == '\t':
			s.col = (s.col/8 + 1) * 8
		case c < 0x20:
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 && !utf8.FullRune(b[i:]) {
				s.pending = append([]byte(nil), b[i:]...)
				return len(p), nil
			}
			s.put(r)
			i += size
			continue
		}
		i++
	}
	return len(p), nil
}

// escape handles the sequence at the start of b; ok is false when it is
// not complete yet.
func (s *Screen) escape(b []byte) (n int, ok bool) {
	if len(b) < 2 {
		return 0, false
	}
	if b[1] != '[' {
		return 2, true
	}
	for j := 2; j < len(b); j++ {
		if b[j] >= 0x40 && b[j] <= 0x7e {
			param := string(b[2:j])
			switch b[j] {
			case 'K':
				s.eraseLine(param)
			case 'J':
				s.eraseLine("0")
				if s.row+1 < len(s.lines) {
					s.lines = s.lines[:s.row+1]
				}
			case 'A':
				k, err := strconv.Atoi(param)
				if err != nil || k < 1 {
					k = 1
				}
				s.row = max(s.row-k, 0)
			case 'm':
				s.colored = true
			}
			return j + 1, true
		}
	}
	return 0, false
}

func (s *Screen) eraseLine(param string) {
	line := s.line()
	if s.col == 0 && len(*line) > 0 && (param == "" || param == "0" || param == "2") {
		s.erased = append(s.erased, strings.TrimRight(string(*line), " "))
	}
	switch param {
	case "", "0":
		if s.col < len(*line) {
			*line = (*line)[:s.col]
		}
	case "2":
		*line = (*line)[:0]
	}
}

func (s *Screen) line() *[]rune {
	for len(s.lines) <= s.row {
		s.lines = append(s.lines, nil)
	}
	return &s.lines[s.row]
}

func (s *Screen) put(r rune) {
	if s.Width > 0 && s.col >= s.Width {
		s.row++
		s.col = 0
	}
	line := s.line()
	for len(*line) < s.col {
		*line = append(*line, ' ')
	}
	if s.col < len(*line) {
		(*line)[s.col] = r
	} else {
		*line = append(*line, r)
	}
	s.col++
}

// String returns the screen's lines, trailing spaces and empty lines at
// the end removed.
func (s *Screen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.lines))
	for i, l := range s.lines {
		out[i] = strings.TrimRight(string(l), " ")
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	if len(out) == 0 {
		return ""
	}
	return strings.Join(out, "\n") + "\n"
}

// Erased returns the lines that were erased in place, in order: what a
// line showed before it was redrawn.
func (s *Screen) Erased() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.erased...)
}

// Colored reports whether a colour sequence was written.
func (s *Screen) Colored() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.colored
}
