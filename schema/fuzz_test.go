package schema_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"

	_ "github.com/runbookhq/runbook/actions" // registers the action kinds
	"github.com/runbookhq/runbook/schema"
)

// FuzzLoad feeds the loader arbitrary bytes: it must not panic or hang, and it
// returns either a runbook or schema.Errors, each at a position of the file.
// Seeds: every example, every built-in runbook, every malformed case (and the
// crashers found so far, under testdata/fuzz/FuzzLoad).
//
//	go test ./schema -run '^$' -fuzz FuzzLoad -fuzztime 10m
func FuzzLoad(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join(malformedDir, "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, runbookFiles(f)...)
	for _, file := range seeds {
		f.Add(readFile(f, file))
	}
	f.Add([]byte("version: 1\nname: x\nsteps:\n  - id: a\n    confirm: \"${{ '}}' }} ${{ params.x\"\n"))
	f.Add([]byte("version: 1\nname: x\nsteps:\n  - id: a\n    confirm: >\n      a\n\n       ${{ b }}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		// builtin: keeps the loader off the file system (sql file: refers
		// to nothing), so the fuzzer cannot make it read /dev/zero.
		rb, err := schema.Load("builtin:fuzz", src)
		if err == nil {
			if rb == nil {
				t.Fatal("no runbook and no error")
			}
			return
		}
		if rb != nil {
			t.Fatal("a runbook and an error")
		}
		var es schema.Errors
		if !errors.As(err, &es) {
			t.Fatalf("error is %T, not schema.Errors: %v", err, err)
		}
		if len(es) == 0 {
			t.Fatal("empty Errors")
		}
		// A bound on the lines: YAML also breaks lines at \r, NEL, LS and PS.
		lines := 1
		for _, br := range []string{"\n", "\r", "\u0085", "\u2028", "\u2029"} {
			lines += bytes.Count(src, []byte(br))
		}
		for _, e := range es {
			if e.Msg == "" {
				t.Errorf("%v: no message", e)
			}
			if len(bytes.TrimSpace(src)) > 0 && (e.Pos.Line < 1 || e.Pos.Col < 1) {
				t.Errorf("%q: no position", e.Error())
			}
			if e.Pos.Line > lines+1 {
				t.Errorf("%q: line beyond the file's %d lines", e.Error(), lines)
			}
		}
	})
}
