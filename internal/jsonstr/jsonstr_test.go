package jsonstr

import (
	"encoding/json"
	"strings"
	"testing"
)

// Append writes exactly what encoding/json writes: the steps' digests depend
// on it (schema.TestDigestFastPath checks them on whole documents).
func TestAppendMatchesEncodingJSON(t *testing.T) {
	cases := []string{
		"", "ALTER TABLE public.t OWNER TO app", `say "hi"`, `back\slash`, "a < b && c > d",
		"line\nbreak\ttab\rcr\bbs\fff", "\x00\x01\x1f\x7f", "é ü 日本 🐘", "\u2028\u2029",
		"bad \xff utf-8 \xc3", strings.Repeat("x", 1000) + "\n",
	}
	for c := 0; c < 0x100; c++ {
		cases = append(cases, "<"+string(rune(c))+">", "<"+string([]byte{byte(c)})+">")
	}
	for _, s := range cases {
		want, _ := json.Marshal(s)
		if got := Append([]byte("prefix"), s); string(got) != "prefix"+string(want) {
			t.Errorf("Append(%q) = %s, want %s", s, got[len("prefix"):], want)
		}
	}
}
