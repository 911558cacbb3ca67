package schema_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	_ "github.com/runbookhq/runbook/actions" // registers the action kinds
	"github.com/runbookhq/runbook/schema"
)

var update = flag.Bool("update", false, "rewrite testdata/malformed/*.err from what the loader reports (review every line)")

// malformedDir holds the corpus of broken runbooks: NN-name.yaml and, beside
// it, NN-name.err with the exact stderr of `runbook validate NN-name.yaml`.
const malformedDir = "testdata/malformed"

// slowLoad is far beyond what any case needs (each takes milliseconds): a case
// that comes near it hangs on hostile input.
const slowLoad = 5 * time.Second

// render is what `runbook validate` prints for a document's errors when
// stderr is not a terminal: one FILE:LINE:COL: message line per problem, then
// the count when there are several.
func render(es schema.Errors) string {
	var b strings.Builder
	for _, e := range es {
		b.WriteString(e.Error() + "\n")
	}
	if len(es) > 1 {
		fmt.Fprintf(&b, "%d problems\n", len(es))
	}
	return b.String()
}

// malformedCases returns the corpus's runbooks, by name without .yaml.
func malformedCases(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(malformedDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, strings.TrimSuffix(filepath.Base(f), ".yaml"))
	}
	if len(names) < 20 {
		t.Fatalf("the malformed corpus has %d cases; it needs at least 20", len(names))
	}
	return names
}

// TestMalformed loads every case of the corpus and compares all its errors,
// rendered as the CLI renders them, with the case's .err file.
func TestMalformed(t *testing.T) {
	names := malformedCases(t)
	t.Chdir(malformedDir) // errors name the file as given, and sql file: is relative to it
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			file := name + ".yaml"
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			rb, err := schema.LoadFile(file)
			if took := time.Since(start); took > slowLoad {
				t.Errorf("loading took %v", took)
			}
			if err == nil {
				t.Fatalf("loaded without error (runbook %s)", rb.Name)
			}
			var es schema.Errors
			if !errors.As(err, &es) {
				t.Fatalf("error is %T, not schema.Errors: %v", err, err)
			}
			checkPositions(t, file, src, es)
			got := render(es)
			if *update {
				if err := os.WriteFile(name+".err", []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(name + ".err")
			if err != nil {
				t.Fatalf("%v (go test ./schema -run TestMalformed -update writes it)", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s.err\n--- got\n%s--- want\n%s", name, got, want)
			}
		})
	}
}

// checkPositions asserts that every error names the file and a position
// inside it: a line of the file, a column of that line or just after its end.
func checkPositions(t *testing.T, file string, src []byte, es schema.Errors) {
	t.Helper()
	lines := strings.Split(string(src), "\n")
	for _, e := range es {
		if e.File != file {
			t.Errorf("%v: names file %q, want %q", e, e.File, file)
		}
		if e.Pos.Line < 1 || e.Pos.Line > len(lines) || e.Pos.Col < 1 {
			t.Errorf("%v: position outside the file (%d lines)", e, len(lines))
			continue
		}
		if width := utf8.RuneCountInString(lines[e.Pos.Line-1]); e.Pos.Col > width+1 {
			t.Errorf("%v: column beyond the end of line %d (%d characters)", e, e.Pos.Line, width)
		}
	}
}

// Every .err belongs to a case.
func TestMalformedGoldenFilesHaveCases(t *testing.T) {
	errs, _ := filepath.Glob(filepath.Join(malformedDir, "*.err"))
	for _, f := range errs {
		if _, err := os.Stat(strings.TrimSuffix(f, ".err") + ".yaml"); err != nil {
			t.Errorf("%s has no runbook beside it", f)
		}
	}
	if len(errs) != len(malformedCases(t)) {
		t.Errorf("%d .err files for %d cases", len(errs), len(malformedCases(t)))
	}
}

// The cases too large to commit are generated.

func TestHugeFileIsRefused(t *testing.T) {
	valid := "version: 1\nname: huge\nsteps:\n  - id: hello\n    confirm: ok\n"
	src := []byte(valid + "# " + strings.Repeat("x", schema.MaxFileSize) + "\n")
	file := filepath.Join(t.TempDir(), "huge.yaml")
	if err := os.WriteFile(file, src, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := schema.LoadFile(file)
	if took := time.Since(start); took > slowLoad {
		t.Errorf("took %v", took)
	}
	want := file + ":1:1: file is larger than 16 MiB"
	if err == nil || err.Error() != want {
		t.Errorf("LoadFile: got %v, want %s", err, want)
	}
	// Load refuses the bytes too, whoever read them.
	if _, err := schema.Load("huge.yaml", src); err == nil || err.Error() != "huge.yaml:1:1: file is larger than 16 MiB" {
		t.Errorf("Load: got %v", err)
	}
}

// A large valid file loads in reasonable time. (At the 16 MiB limit itself,
// 153,146 steps, it takes some 2.5 s and 0.9 GB, mostly yaml.v3's node tree:
// too heavy for every test run, so a quarter of it is loaded here.)
func TestLargeFileLoads(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 4 MiB")
	}
	var b bytes.Buffer
	b.WriteString("version: 1\nname: large\nparams:\n  role: {default: app}\nconnections:\n  db: postgres://localhost/app\nsteps:\n")
	step := "  - id: s%d\n    sql:\n      on: db\n      script: |\n        ALTER TABLE t%d OWNER TO ${{ params.role }};\n"
	for i := 0; b.Len() < schema.MaxFileSize/4; i++ {
		fmt.Fprintf(&b, step, i, i)
	}
	start := time.Now()
	rb, err := schema.Load("large.yaml", b.Bytes())
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d bytes, %d steps: %v", b.Len(), len(rb.Steps), took)
	if took > 10*time.Second {
		t.Errorf("took %v", took)
	}
}

// Nesting deeper than YAML allows (10,000 levels) is an error at once, not a
// stack overflow or a hang, in every shape.
func TestDeepNesting(t *testing.T) {
	const depth = 100_000
	head := "version: 1\nname: deep\nsteps: "
	for _, tc := range []struct {
		name, src, want string
	}{
		{"flow lists", head + strings.Repeat("[", depth) + strings.Repeat("]", depth) + "\n",
			"deep.yaml:3:10008: invalid YAML: exceeded max depth of 10000"},
		{"flow maps", head + strings.Repeat("{a: ", depth) + "1" + strings.Repeat("}", depth) + "\n",
			"deep.yaml:3:40008: invalid YAML: exceeded max depth of 10000"},
		{"block lists", head + "\n  " + strings.Repeat("- ", depth) + "x\n",
			"deep.yaml:4:20001: invalid YAML: exceeded max depth of 10000 (while increasing indent level at line 3, column 1)"},
		{"mixed", head + strings.Repeat("[{a: ", depth/2) + "1" + strings.Repeat("}]", depth/2) + "\n",
			"deep.yaml:3:25008: invalid YAML: exceeded max depth of 10000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := schema.Load("deep.yaml", []byte(tc.src))
			took := time.Since(start)
			t.Logf("%d bytes: %v", len(tc.src), took)
			if took > slowLoad {
				t.Errorf("took %v", took)
			}
			if err == nil || err.Error() != tc.want {
				t.Errorf("got %v\nwant %s", err, tc.want)
			}
		})
	}
	// Just under YAML's limit the document parses; the loader reports the
	// wrong kind and does not descend.
	src := head + strings.Repeat("[", 9_998) + strings.Repeat("]", 9_998) + "\n"
	_, err := schema.Load("deep.yaml", []byte(src))
	if want := "deep.yaml:3:9: a step must be a mapping with an id and one action, not a list"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}
