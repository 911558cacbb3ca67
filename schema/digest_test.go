package schema

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestDigestFastPath checks that canonicalJSON, wherever it encodes a node,
// gives exactly the bytes of the decode-and-encode path: a step's digest is
// kept in state files, and a different one would read as drift on resume.
// Every node of every example, built-in runbook and malformed case is
// compared, and a set of scalars chosen for their edges.
func TestDigestFastPath(t *testing.T) {
	var docs []string
	for _, pattern := range []string{"../examples/*.yaml", "../runbooks/*.yaml", "testdata/malformed/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			docs = append(docs, string(b))
		}
	}
	var scalars []string
	for c := 0; c < 256; c++ {
		scalars = append(scalars, fmt.Sprintf("%q", string(rune(c))), fmt.Sprintf("%q", "a"+string([]byte{byte(c)})+"b"))
	}
	scalars = append(scalars, `"<script>&amp;</script>"`, `"\u2028\u2029"`, `"é ✓ 𝄞"`, `'it''s'`,
		"0x1F", "0o17", "017", "1_000", "-0", "+5", "-17", "9223372036854775807", "9223372036854775808", "1e3", "1.50", ".inf", "-.Inf", ".nan",
		"true", "false", "True", "FALSE", "yes", "no", "on", "~", "null", "Null", "", "2026-11-25", "2026-11-25T03:04:05Z",
		"!!str 12", "!!int '12'", "!!bool true", "!!binary aGk=", "!custom x", "|\n  block\n  text\n", ">-\n  folded\n  text\n")
	for _, s := range scalars {
		docs = append(docs, "v: "+s+"\n", "- "+s+"\n")
	}
	docs = append(docs,
		"a: &x {k: 1}\nb: *x\n", "base: &b {x: 1}\nm:\n  <<: *b\n  y: 2\n", "? [1, 2]\n: v\n", "1: one\n2: two\n",
		"k: 1\nk: 2\n", "{}", "[]", "a: {}\nb: []\nc:\n", "z: 1\na: 2\nm: {b: [1, {c: d}], a: null}\n")
	fast := 0
	for _, d := range docs {
		var root yaml.Node
		if err := yaml.Unmarshal([]byte(d), &root); err != nil {
			continue
		}
		var walk func(n *yaml.Node)
		walk = func(n *yaml.Node) {
			if got, ok := canonicalJSON(nil, n); ok {
				fast++
				if want := slowCanonicalJSON(n); !bytes.Equal(got, want) {
					t.Errorf("canonical JSON of\n%s\n= %s\nwant %s", clipDoc(d), got, want)
				}
			}
			for _, c := range n.Content {
				walk(c)
			}
		}
		walk(&root)
	}
	if fast < 1000 {
		t.Errorf("the fast path encoded only %d nodes", fast)
	}
	// Every step of the examples and built-ins takes the fast path, but for
	// those holding an alias.
	for _, pattern := range []string{"../examples/*.yaml", "../runbooks/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			rb, err := LoadFile(f)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			for _, s := range rb.Steps {
				if _, ok := canonicalJSON(nil, s.node); !ok && !hasAlias(s.node) {
					t.Errorf("%s: step %s takes the slow path", f, s.ID)
				}
			}
		}
	}
}

func clipDoc(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return strings.TrimSpace(s)
}

func hasAlias(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode {
		return true
	}
	for _, c := range n.Content {
		if hasAlias(c) {
			return true
		}
	}
	return false
}
