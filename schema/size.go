package schema

import (
	"math"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// sizeRe is a size's grammar: a number and an optional unit, 1024-based as
// PostgreSQL's memory settings are ("64MB", "1.5GB", "8kB").
var sizeRe = regexp.MustCompile(`^\s*([0-9]+(?:\.[0-9]+)?)\s*(B|kB|KB|MB|GB|TB)?\s*$`)

var sizeUnits = map[string]float64{"": 1, "B": 1, "kB": 1 << 10, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}

// Size is a number of bytes: an integer, or a number with a unit (B, kB,
// MB, GB, TB; 1024-based, as PostgreSQL's settings): "1GB", "64MB".
type Size int64

// ParseSize parses a size as the loader does.
func ParseSize(s string) (Size, bool) {
	m := sizeRe.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, false
	}
	v := f * sizeUnits[m[2]]
	if v >= math.MaxInt64 {
		return 0, false
	}
	return Size(v), true
}

func (s *Size) decodeNode(dec *decoder, n *yaml.Node) {
	if n.Kind != yaml.ScalarNode {
		dec.errs.add(pos(n), "%s must be a size such as \"1GB\", not %s", dec.name("size"), kindName(n))
		return
	}
	v, ok := ParseSize(strings.ReplaceAll(n.Value, "_", ""))
	if !ok {
		dec.errs.add(pos(n), "invalid size %q: use a number of bytes or a number with a unit, such as 64MB or 1GB", n.Value)
		return
	}
	*s = v
}

// String renders the size with the largest unit that divides it.
func (s Size) String() string {
	for _, u := range []string{"TB", "GB", "MB", "kB"} {
		if f := int64(sizeUnits[u]); s != 0 && int64(s)%f == 0 {
			return strconv.FormatInt(int64(s)/f, 10) + u
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// MarshalText renders the size for JSON.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
