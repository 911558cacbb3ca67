package schema

import "testing"

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want Size
		ok   bool
	}{
		{"0", 0, true},
		{"1024", 1024, true},
		{"64MB", 64 << 20, true},
		{"1GB", 1 << 30, true},
		{"1.5GB", 3 << 29, true},
		{" 8kB ", 8 << 10, true},
		{"2 TB", 2 << 40, true},
		{"1gb", 0, false},
		{"-1MB", 0, false},
		{"MB", 0, false},
		{"1e3", 0, false},
		{"99999999999TB", 0, false},
	}
	for _, c := range cases {
		got, ok := ParseSize(c.in)
		if ok != c.ok || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
	for _, s := range []Size{0, 1, 1024, 64 << 20, 1 << 30, 1536 << 20} {
		if back, ok := ParseSize(s.String()); !ok || back != s {
			t.Errorf("%d → %q → %d, %v", s, s.String(), back, ok)
		}
	}
}
