package textdiff

import "testing"

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
