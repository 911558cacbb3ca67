package schema

import (
	"errors"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// maxMillis is the largest integer duration: milliseconds that fit a time.Duration.
const maxMillis = math.MaxInt64 / int64(time.Millisecond)

// durationRe is time.ParseDuration's grammar (the JSON Schema uses it too):
// a value that matches it and still fails to parse is out of range.
var durationRe = regexp.MustCompile(`^\s*[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+\s*$`)

// Duration is a Go duration string ("5s", "1m30s") or an integer number of
// milliseconds, as PostgreSQL settings take them (`statement_timeout: 0`).
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d *Duration) decodeNode(dec *decoder, n *yaml.Node) {
	if n.Kind != yaml.ScalarNode {
		dec.errs.add(pos(n), "%s must be a duration such as \"30s\", not %s", dec.name("duration"), kindName(n))
		return
	}
	if n.ShortTag() == "!!int" {
		ms, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		switch {
		case err == nil && ms < 0, err != nil && !errors.Is(err, strconv.ErrRange):
			dec.errs.add(pos(n), "invalid duration %q: an integer is a number of milliseconds, 0 or more", n.Value)
		case err != nil || ms > maxMillis:
			dec.errs.add(pos(n), "invalid duration %q: out of range (at most %d milliseconds)", n.Value, maxMillis)
		default:
			*d = Duration(time.Duration(ms) * time.Millisecond)
		}
		return
	}
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil && durationRe.MatchString(n.Value) {
		dec.errs.add(pos(n), "invalid duration %q: out of range (at most %s)", n.Value, time.Duration(math.MaxInt64).Truncate(time.Hour))
		return
	}
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
