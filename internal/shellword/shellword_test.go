package shellword

import (
	"os/exec"
	"testing"
)

func TestQuote(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"builtin:heroku-to-crunchy-bridge", "builtin:heroku-to-crunchy-bridge"},
		{"customers/acme corp.yaml", "'customers/acme corp.yaml'"},
		{"app_role=it's", `'app_role=it'\''s'`},
		{"target_url=…", "target_url=…"},
		{"", "''"},
		{"***", "'***'"},
		{"$HOME `id` \"x\" \\n", `'$HOME ` + "`id`" + ` "x" \n'`},
		{"a\nb", "'a\nb'"},
	} {
		if got := Quote(c.in); got != c.want {
			t.Errorf("Quote(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

// TestQuoteRoundTrip has a real POSIX shell read the quoted words back.
func TestQuoteRoundTrip(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("no POSIX shell: %v", err)
	}
	for _, s := range []string{"plain", "", "it's", "''", `a'b"c\d`, "$(echo no)", "tab\there", "new\nline", "…"} {
		out, err := exec.Command(sh, "-c", "printf %s "+Quote(s)).Output()
		if err != nil {
			t.Fatalf("sh -c printf %s: %v", Quote(s), err)
		}
		if string(out) != s {
			t.Errorf("sh read %s back as %q, want %q", Quote(s), out, s)
		}
	}
}
