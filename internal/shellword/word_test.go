package shellword

import (
	"os/exec"
	"testing"
)

// TestWordRoundTrip gives bash each quoted word and checks that it reads back
// exactly the text that was quoted, as one argument.
func TestWordRoundTrip(t *testing.T) {
	for _, s := range []string{
		"", "abc", "it's", "''", `'\''`, "a b\tc\nd", "$(touch /tmp/pwned) `id` ${HOME} $0",
		`"double" \back\slash ; | & > < * ? [x] ~ # !`, "x'); DROP TABLE t; --", "ünïcödé ✓",
	} {
		w, err := Word(s)
		if err != nil {
			t.Fatalf("Word(%q): %v", s, err)
		}
		// f prints how many words it got, then its first.
		out, err := exec.Command("bash", "-c", `f() { printf '%s\0%s' "$#" "$1"; }; f `+w).Output()
		if err != nil {
			t.Fatalf("bash with %s: %v", w, err)
		}
		if want := "1\x00" + s; string(out) != want {
			t.Errorf("bash read %q back as %q", s, out)
		}
	}
}

func TestWordRefusesNUL(t *testing.T) {
	if _, err := Word("a\x00b"); err == nil {
		t.Error("Word accepted a NUL byte")
	}
}
