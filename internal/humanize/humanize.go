// Package humanize formats quantities for people: byte sizes with binary
// units and counts with thousands separators, the same on the console and in
// the events' messages.
package humanize

import (
	"strconv"
	"strings"
)

// Bytes formats a byte count with binary units: 1023 B, 1.5 KiB, 289 MiB
// (one decimal below 100 of a unit).
func Bytes(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	prec := 1
	if i == 0 || b >= 100 {
		prec = 0
	}
	return strconv.FormatFloat(b, 'f', prec, 64) + " " + units[i]
}

// Count formats an integer with thousands separators: 1,234,567.
func Count(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
