package schema

import (
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a Go duration string ("5s", "1m30s") or an integer number of
// milliseconds, as PostgreSQL settings take them (`statement_timeout: 0`).
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d *Duration) decodeNode(dec *decoder, n *yaml.Node) {
	if n.Kind != yaml.ScalarNode {
		dec.errs.add(pos(n), "a duration must be a string such as \"30s\", not %s", kindName(n))
		return
	}
	if n.ShortTag() == "!!int" {
		ms, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil || ms < 0 {
			dec.errs.add(pos(n), "invalid duration %q: an integer is a number of milliseconds, 0 or more", n.Value)
			return
		}
		*d = Duration(time.Duration(ms) * time.Millisecond)
		return
	}
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		dec.errs.add(pos(n), "invalid duration %q: use a number with a unit, such as 500ms, 30s, 5m or 1h", n.Value)
		return
	}
	if v < 0 {
		dec.errs.add(pos(n), "invalid duration %q: must not be negative", n.Value)
		return
	}
	*d = Duration(v)
}

// String renders the duration as Go does.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText renders the duration for JSON.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
