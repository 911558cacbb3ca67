package schema

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	"github.com/runbookhq/runbook/internal/jsonstr"
	"gopkg.in/yaml.v3"
)

// digestNode hashes a node's content independently of comments, quoting and
// layout: the SHA-256 of the node decoded as YAML and encoded as JSON (map
// keys sorted), then extra.
//
// Decoding into interface values and encoding them back through reflection
// was a fifth of the load of a 5,000-step runbook (docs/performance.md), so
// the common case — mappings with string keys, sequences, strings, decimal
// integers, booleans, nulls — is encoded straight from the node into the same
// bytes (canonicalJSON); anything else (floats, timestamps, aliases, merge
// keys, other tags) takes the decode-and-encode path. TestDigestFastPath
// checks that both give the same bytes.
func digestNode(n *yaml.Node, extra []byte) string {
	b, ok := canonicalJSON(make([]byte, 0, 512), n)
	if !ok {
		b = slowCanonicalJSON(n)
	}
	h := sha256.New()
	h.Write(b)
	h.Write(extra)
	return hex.EncodeToString(h.Sum(nil))
}

// slowCanonicalJSON decodes n and encodes the value as JSON.
func slowCanonicalJSON(n *yaml.Node) []byte {
	var v any
	if err := n.Decode(&v); err != nil {
		v = n.Value
	}
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(fmt.Sprint(v))
	}
	return b
}

// canonicalJSON appends what slowCanonicalJSON gives for n to b, when n holds
// only what it knows how to encode; ok is false otherwise.
func canonicalJSON(b []byte, n *yaml.Node) (_ []byte, ok bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return b, false
		}
		return canonicalJSON(b, n.Content[0])
	case yaml.SequenceNode:
		b = append(b, '[')
		for i, c := range n.Content {
			if i > 0 {
				b = append(b, ',')
			}
			if b, ok = canonicalJSON(b, c); !ok {
				return b, false
			}
		}
		return append(b, ']'), true
	case yaml.MappingNode:
		if len(n.Content)%2 != 0 {
			return b, false
		}
		idx := make([]int, 0, len(n.Content)/2)
		for i := 0; i < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
				return b, false // merge keys, non-string keys, aliases
			}
			idx = append(idx, i)
		}
		sort.Slice(idx, func(x, y int) bool { return n.Content[idx[x]].Value < n.Content[idx[y]].Value })
		b = append(b, '{')
		for j, i := range idx {
			if j > 0 {
				if n.Content[idx[j-1]].Value == n.Content[i].Value {
					return b, false // a duplicate key: the decoder's error decides
				}
				b = append(b, ',')
			}
			b = jsonstr.Append(b, n.Content[i].Value)
			b = append(b, ':')
			if b, ok = canonicalJSON(b, n.Content[i+1]); !ok {
				return b, false
			}
		}
		return append(b, '}'), true
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return jsonstr.Append(b, n.Value), true
		case "!!null":
			return append(b, "null"...), true
		case "!!bool":
			if n.Value == "true" || n.Value == "false" {
				return append(b, n.Value...), true
			}
		case "!!int":
			if i, err := strconv.ParseInt(n.Value, 10, 64); err == nil && strconv.FormatInt(i, 10) == n.Value {
				return append(b, n.Value...), true
			}
		}
	}
	return b, false
}
