// Package shquote quotes text as one word of a POSIX shell (bash, sh) command
// line, for the shellquote() expression function.
package shquote

import (
	"errors"
	"strings"
)

// Word returns s as one shell word: inside single quotes, where nothing is
// special, with each single quote of s closing the quotes, escaped, and
// opening them again. It always quotes, so the result has the same shape
// whatever s holds:
//
//	abc     →  'abc'
//	(empty) →  ''
//	it's    →  'it'\''s'
//
// A NUL byte cannot be part of a command line: it is an error.
func Word(s string) (string, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return "", errors.New("a shell word cannot contain a NUL byte")
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'", nil
}
