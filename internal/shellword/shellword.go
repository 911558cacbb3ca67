// Package shellword quotes words for a POSIX shell.
package shellword

import "strings"

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
