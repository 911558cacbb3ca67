package textdiff

import (
	"fmt"
	"strings"
	"testing"
)

func TestLines(t *testing.T) {
	tests := []struct{ a, b, want string }{
		{"a\nb\n", "a\nb\n", "  a\n  b\n"},
		{"id: x\nrun: echo one\n", "id: x\nrun: echo two\n", "  id: x\n- run: echo one\n+ run: echo two\n"},
		{"a\n", "a\nb\n", "  a\n+ b\n"},
		{"a\nb\nc\n", "a\nc\n", "  a\n- b\n  c\n"},
	}
	for _, tt := range tests {
		if got := Lines(tt.a, tt.b); got != tt.want {
			t.Errorf("Lines(%q, %q) =\n%s\nwant\n%s", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestChanges(t *testing.T) {
	tests := []struct {
		name string
		a, b []string
		want string
	}{
		{"one changed in the middle", []string{"a", "b", "c"}, []string{"a", "x", "c"}, "  (1 the same)\n- b\n+ x\n  (1 the same)\n"},
		{"one added at the end", []string{"a"}, []string{"a", "b"}, "  (1 the same)\n+ b\n"},
		{"one removed at the start", []string{"a", "b"}, []string{"b"}, "- a\n  (1 the same)\n"},
		{"line break inside", []string{"x\ny"}, []string{"z"}, "- x⏎y\n+ z\n"},
	}
	for _, tt := range tests {
		if got := Changes(tt.a, tt.b); got != tt.want {
			t.Errorf("%s: Changes(%q, %q) =\n%s\nwant\n%s", tt.name, tt.a, tt.b, got, tt.want)
		}
	}
	var many []string
	for i := range 1000 {
		many = append(many, fmt.Sprint(i))
	}
	if got := Changes(nil, many); !strings.Contains(got, "(and 0 more removed, 800 more added, not shown)") {
		t.Errorf("a long list is cut: %s", got[len(got)-80:])
	}
}
