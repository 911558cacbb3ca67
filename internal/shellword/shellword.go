// Package shellword quotes words for a POSIX shell (bash, sh): Quote for
// text a person reads (argv in a report, a resume command), Word for the
// shellquote() expression function.
package shellword

import (
	"errors"
	"strings"
)

// Quote returns s as one word a POSIX shell reads back as s: as it is when
// it is made only of letters, digits and -_./:=@%+,… (none special to the
// shell), in single quotes otherwise, where each ' of s ends the quotes,
// is escaped with a backslash and opens them again.
func Quote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=@%+,…") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

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
