package textdiff

import (
	"fmt"
	"strings"
)

// maxItems bounds the differing items Changes compares (Lines is quadratic)
// and shows, from each list.
const maxItems = 200

// Changes returns a diff of two lists of items (statements), one item a line
// (a line break inside an item shown as ⏎): the items both lists share at
// their start and end are counted, not shown; of the rest, up to maxItems of
// each are diffed as Lines does, the others counted.
func Changes(a, b []string) string {
	p := 0
	for p < len(a) && p < len(b) && a[p] == b[p] {
		p++
	}
	s := 0
	for s < len(a)-p && s < len(b)-p && a[len(a)-1-s] == b[len(b)-1-s] {
		s++
	}
	ma, mb := a[p:len(a)-s], b[p:len(b)-s]
	var out strings.Builder
	if p > 0 {
		fmt.Fprintf(&out, "  (%d the same)\n", p)
	}
	cut := func(l []string) (string, int) {
		n := 0
		if len(l) > maxItems {
			n, l = len(l)-maxItems, l[:maxItems]
		}
		lines := make([]string, len(l))
		for i, x := range l {
			lines[i] = strings.ReplaceAll(strings.TrimRight(x, "\n"), "\n", "⏎")
		}
		return strings.Join(lines, "\n"), n
	}
	xa, na := cut(ma)
	xb, nb := cut(mb)
	switch {
	case len(ma) == 0:
		out.WriteString(prefixed("+ ", xb))
	case len(mb) == 0:
		out.WriteString(prefixed("- ", xa))
	default:
		out.WriteString(Lines(xa, xb))
	}
	if na > 0 || nb > 0 {
		fmt.Fprintf(&out, "  (and %d more removed, %d more added, not shown)\n", na, nb)
	}
	if s > 0 {
		fmt.Fprintf(&out, "  (%d the same)\n", s)
	}
	return out.String()
}

func prefixed(prefix, s string) string {
	var out strings.Builder
	for _, l := range strings.Split(s, "\n") {
		out.WriteString(prefix + l + "\n")
	}
	return out.String()
}
