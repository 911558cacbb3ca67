package main

import (
	"bytes"
	"errors"
	"flag"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/runbookhq/runbook/schema"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/script/*.txtar and testdata/screens (review the diff)")

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"runbook": func() { os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs the CLI scenarios of testdata/script/*.txtar. Each starts in
// a fresh $WORK holding copies of examples/, runbooks/*.yaml and the committed
// JSON Schema, so scripts name them by relative paths.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		UpdateScripts:       *update,
		Setup: func(env *testscript.Env) error {
			for _, dir := range []string{"examples", "runbooks"} {
				if err := copyTree(filepath.Join("..", "..", dir), filepath.Join(env.WorkDir, dir)); err != nil {
					return err
				}
			}
			b, err := os.ReadFile("../../schema/runbook.schema.json")
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(env.WorkDir, "runbook.schema.json"), b, 0o644)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits": cmdExits,
		},
	})
}

// cmdExits is `exits CODE PROGRAM [ARGS...]`: run the program and fail unless
// it exits with CODE; its stdout and stderr are then checked as after exec.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROGRAM [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: %v", err)
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("exit code %d, want %d", got, want)
	}
}

func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		if filepath.Ext(path) == ".go" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
}

// runCLI calls Main as the binary would be run, in dir.
func runCLI(t *testing.T, dir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	if dir != "" {
		t.Chdir(dir)
	}
	var out, errw bytes.Buffer
	code = Main(args, strings.NewReader(""), &out, &errw)
	return code, out.String(), errw.String()
}

// Every case of the loader's malformed corpus makes `runbook validate` exit 2
// and print exactly the case's .err: every problem as FILE:LINE:COL: message.
func TestValidateMalformed(t *testing.T) {
	dir := "../../schema/testdata/malformed"
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) < 20 {
		t.Fatalf("%d malformed cases (%v)", len(files), err)
	}
	t.Chdir(dir)
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(name, ".yaml") + ".err")
			if err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runCLI(t, "", "validate", name)
			if code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			if stdout != "" {
				t.Errorf("stdout: %q", stdout)
			}
			if stderr != string(want) {
				t.Errorf("stderr\n%s\nwant\n%s", stderr, want)
			}
		})
	}
}

// A file larger than the limit is refused at once.
func TestValidateHugeFile(t *testing.T) {
	dir := t.TempDir()
	src := "version: 1\nname: huge\nsteps:\n  - id: a\n    confirm: ok\n# " + strings.Repeat("x", schema.MaxFileSize) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "huge.yaml"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, dir, "validate", "huge.yaml")
	if code != 2 || stderr != "huge.yaml:1:1: file is larger than 16 MiB\n" {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// `runbook schema` prints the committed schema/runbook.schema.json.
func TestSchemaCommand(t *testing.T) {
	want, err := os.ReadFile("../../schema/runbook.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "", "schema")
	if code != 0 || stderr != "" || stdout != string(want) {
		t.Errorf("exit %d, stderr %q; stdout equals the committed schema: %v", code, stderr, stdout == string(want))
	}
}
