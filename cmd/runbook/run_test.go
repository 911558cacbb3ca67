package main

import "testing"

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"builtin:heroku-to-crunchy-bridge": "builtin:heroku-to-crunchy-bridge",
		"customers/acme corp.yaml":         "'customers/acme corp.yaml'",
		"app_role=it's":                    `'app_role=it'\''s'`,
		"target_url=…":                     "target_url=…",
		"":                                 "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
