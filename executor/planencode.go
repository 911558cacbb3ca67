package executor

import (
	"encoding/json"
	"io"
	"slices"
	"strconv"

	"github.com/runbookhq/runbook/internal/jsonstr"
)

// The plan's JSON is written by hand, byte for byte what encoding/json writes
// (TestPlanJSONSharesSteps): a plan of 5,000 steps is over 1 MB of JSON, and
// encoding/json's reflection over the actions' maps, its doubling buffer and
// the copy it returns were a fifth of `plan`'s time (docs/performance.md, P4).
// Strings are quoted by jsonstr.Append.

// appendSteps appends steps as json.Marshal writes them.
func appendSteps(b []byte, steps []PlanStep) ([]byte, error) {
	if steps == nil {
		return append(b, "null"...), nil
	}
	b = append(b, '[')
	for i := range steps {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendPlanStep(b, &steps[i]); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

func appendPlanStep(b []byte, s *PlanStep) ([]byte, error) {
	b = append(b, `{"index":`...)
	b = strconv.AppendInt(b, int64(s.Index), 10)
	b = appendField(b, "id", s.ID, false)
	b = appendField(b, "name", s.Name, true)
	b = appendField(b, "description", s.Description, true)
	b = appendField(b, "kind", s.Kind, false)
	b = appendField(b, "when", s.When, true)
	if s.WillRun != nil {
		b = append(b, `,"will_run":`...)
		b = strconv.AppendBool(b, *s.WillRun)
	}
	if s.Always {
		b = append(b, `,"always":true`...)
	}
	if s.Idempotent {
		b = append(b, `,"idempotent":true`...)
	}
	b = appendField(b, "on_failure", s.OnFailure, false)
	b = appendField(b, "timeout", s.Timeout, true)
	if s.Retry != nil {
		r, err := json.Marshal(s.Retry)
		if err != nil {
			return nil, err
		}
		b = append(append(b, `,"retry":`...), r...)
	}
	b = append(b, `,"action":`...)
	var err error
	if s.Action == nil {
		b = append(b, "null"...)
	} else if b, err = appendValue(b, s.Action); err != nil {
		return nil, err
	}
	b = appendField(b, "digest", s.Digest, false)
	return append(b, '}'), nil
}

// appendField appends ,"key":"value" (nothing for an empty value when
// omitempty).
func appendField(b []byte, key, value string, omitempty bool) []byte {
	if omitempty && value == "" {
		return b
	}
	b = append(append(append(b, ',', '"'), key...), '"', ':')
	return jsonstr.Append(b, value)
}

// appendValue appends what resolveValue returns: strings, bools, integers,
// slices and maps of them (keys sorted, as encoding/json sorts them); other
// values through encoding/json.
func appendValue(b []byte, v any) ([]byte, error) {
	var err error
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return jsonstr.Append(b, v), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case []string:
		if v == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonstr.Append(b, s)
		}
		return append(b, ']'), nil
	case []any:
		if v == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, x := range v {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendValue(b, x); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		if v == nil {
			return append(b, "null"...), nil
		}
		var small [16]string
		keys := small[:0]
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(jsonstr.Append(b, k), ':')
			if b, err = appendValue(b, v[k]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}
	x, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, x...), nil
}

// indenter indents compact JSON as json.Indent(dst, src, "", "  ") does: a
// newline after an opening bracket and each comma, ": " after a key, empty
// objects and arrays kept as {} and []. It only tells strings from the rest,
// where json.Indent runs the full scanner. Its input may come in pieces cut
// between tokens. With w set, it hands w what it has indented whenever that
// passes 64 KiB, so the plan's output (several MB for a long runbook) is not
// held twice.
type indenter struct {
	w     io.Writer
	err   error
	dst   []byte
	depth int
	open  bool
}

// indentJSON appends src, compact JSON, indented.
func indentJSON(dst, src []byte) []byte {
	in := indenter{dst: dst}
	in.write(src)
	return in.dst
}

func (in *indenter) newline() {
	in.dst = append(in.dst, '\n')
	for range in.depth {
		in.dst = append(in.dst, ' ', ' ')
	}
}

func (in *indenter) write(src []byte) {
	for i := 0; i < len(src); i++ {
		c := src[i]
		if in.open && c != '}' && c != ']' {
			in.open = false
			in.depth++
			in.newline()
		}
		switch c {
		case '"':
			j := i + 1
			for j < len(src) && src[j] != '"' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			in.dst = append(in.dst, src[i:min(j+1, len(src))]...)
			i = j
		case '{', '[':
			in.open = true
			in.dst = append(in.dst, c)
		case ',':
			in.dst = append(in.dst, c)
			if in.w != nil && len(in.dst) >= 64<<10 {
				in.flush()
			}
			in.newline()
		case ':':
			in.dst = append(in.dst, c, ' ')
		case '}', ']':
			if in.open {
				in.open = false
			} else {
				in.depth--
				in.newline()
			}
			in.dst = append(in.dst, c)
		default:
			in.dst = append(in.dst, c)
		}
	}
}

// flush hands w what is indented so far.
func (in *indenter) flush() {
	if in.err == nil && len(in.dst) > 0 {
		_, in.err = in.w.Write(in.dst)
	}
	in.dst = in.dst[:0]
}
