package actions

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/runbookhq/runbook/internal/pipeline"

	"github.com/runbookhq/runbook/schema"
)

// Shell runs a bash command or a pipeline of commands.
type Shell struct {
	Command schema.Template            `yaml:"run" short:"true" text:"shell" doc:"A command line run by bash -euo pipefail -c."`
	Pipe    []Stage                    `yaml:"pipe" doc:"Commands wired stdout to stdin and started together; every stage's exit status counts."`
	Conn    schema.ConnRef             `yaml:"conn" doc:"With run: give the command this connection's libpq environment (PGHOST, PGPORT, PGUSER, PGDATABASE, and the password through PGPASSFILE, a password file in memory that no process outlives)."`
	Env     map[string]schema.Template `yaml:"env" doc:"Extra environment variables for every command."`
	Dir     string                     `yaml:"dir" doc:"Working directory, relative to the runbook's directory."`
	Capture string                     `yaml:"capture" enum:"stdout" doc:"stdout: keep the (last stage's) standard output, up to 1 MiB, as outputs.stdout."`

	Keys schema.Positions `yaml:"-"`
}

// Stage is one command of a pipe.
type Stage struct {
	Cmd  []schema.Template          `yaml:"cmd" required:"true" doc:"The command and its arguments, not run through a shell. Never put secrets here: use conn or env."`
	Conn schema.ConnRef             `yaml:"conn" doc:"Give this stage the connection's libpq environment."`
	Env  map[string]schema.Template `yaml:"env" doc:"Extra environment variables for this stage."`
	Name string                     `yaml:"name" doc:"Name for logs; defaults to the command's base name."`

	Pos schema.Pos `yaml:"-"`
}

func init() {
	Register("shell", "Run a command (bash) or a pipeline of commands with pipefail semantics.", func() Runner { return &Shell{} })
}

// Kind implements schema.Action.
func (*Shell) Kind() string { return "shell" }

// Validate implements schema.Validator.
func (a *Shell) Validate(v *schema.Validation) {
	switch {
	case a.Command.IsZero() && len(a.Pipe) == 0:
		v.Errorf(v.Step.ActionPos, "shell needs run (a command line) or pipe (a list of commands)")
	case !a.Command.IsZero() && a.Pipe != nil:
		v.Errorf(a.Keys["pipe"], "shell takes run or pipe, not both")
	}
	if a.Pipe != nil && a.Conn.Name != "" {
		v.Errorf(a.Keys["conn"], "with pipe, give conn to each stage that needs it")
	}
	for i, s := range a.Pipe {
		if len(s.Cmd) == 0 && s.Pos.Line != 0 {
			v.Errorf(s.Pos, "pipe stage %d: cmd must name a command", i+1)
		}
	}
}

// maxCapture bounds outputs.stdout.
const maxCapture = 1 << 20

// Run implements Runner. Secrets reach a child only through its environment
// (env:) or an inherited password file (conn:, see Conns.ChildEnv): a command
// line that would carry a secret is refused before anything starts.
func (a *Shell) Run(ctx context.Context, rc *Context) (Outputs, error) {
	stages, err := a.stages(ctx, rc)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(stages))
	for i, st := range stages {
		names[i] = st.Name
		rc.Events.Emit(CmdStart{Stage: i + 1, Cmd: st.Name, Argv: st.Argv})
	}
	var captured bytes.Buffer
	opt := pipeline.Options{
		OnStderrLine: func(stage int, line string) {
			rc.Events.Emit(CmdStderr{Stage: stage + 1, Cmd: names[stage], Line: rc.Redact.String(line)})
		},
		OnStdoutLine: func(line string) {
			if a.Capture == "stdout" && captured.Len() < maxCapture {
				captured.WriteString(line)
				captured.WriteByte('\n')
			}
			rc.Events.Emit(CmdStdout{Stage: len(stages), Cmd: names[len(stages)-1], Line: rc.Redact.String(line)})
		},
	}
	if rc.Events.Live() && len(stages) > 1 {
		// Somebody watches: count the bytes the pipe moves, against what
		// the first stage's database holds.
		total := a.expectedBytes(ctx, rc)
		opt.CountBytes = true
		opt.ProgressEvery = 500 * time.Millisecond
		opt.OnProgress = func(p pipeline.Progress) {
			rc.Events.Emit(CmdProgress{Bytes: p.Bytes, Total: total, Estimated: total > 0, Elapsed: p.Elapsed})
		}
	}
	res, err := pipeline.Run(ctx, stages, opt)
	codes := make([]int, len(res.Stages))
	for i, sr := range res.Stages {
		codes[i] = sr.ExitCode
		ev := CmdExit{Stage: i + 1, Cmd: sr.Name, ExitCode: sr.ExitCode, Signal: sr.Signal, Duration: sr.Duration}
		if sr.StartErr != nil {
			ev.StartError = rc.Redact.String(sr.StartErr.Error())
		}
		rc.Events.Emit(ev)
	}
	out := Outputs{"exit_codes": codes}
	if opt.CountBytes {
		out["bytes"] = res.Bytes
	}
	if a.Capture == "stdout" {
		out["stdout"] = rc.Redact.String(captured.String())
	}
	if err != nil {
		return out, rc.Redact.Error(err)
	}
	return out, nil
}

// expectedBytes estimates what a pipe will move when its first stage reads a
// database (conn:): the size of that database's table data — its tables
// (with their TOAST) and large objects, not its indexes, of which a dump
// holds only the definitions, nor the system catalogs. On a database of 1.5
// million rows (189 MiB in all), it was 109 MB where pg_dump --format=custom
// --compress=0 wrote 103 MB; the whole database's size (pg_database_size)
// would have been 199 MB. A compressed dump is smaller still: the figure is
// shown as an estimate. 0 when unknown.
func (a *Shell) expectedBytes(ctx context.Context, rc *Context) int64 {
	if len(a.Pipe) == 0 || a.Pipe[0].Conn.Name == "" {
		return 0
	}
	conn, err := rc.Conns.Conn(ctx, a.Pipe[0].Conn.Name)
	if err != nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var size int64
	if err := conn.QueryRow(ctx, tableDataSQL).Scan(&size); err != nil {
		return 0
	}
	return size
}

// tableDataSQL is the size of a database's table data (see expectedBytes).
const tableDataSQL = `SELECT (coalesce(sum(pg_table_size(c.oid)), 0) + pg_table_size('pg_largeobject'))::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'`

// stages builds the processes: argv evaluated, environment assembled.
func (a *Shell) stages(ctx context.Context, rc *Context) ([]pipeline.Stage, error) {
	shellEnv, err := envList(rc, a.Env)
	if err != nil {
		return nil, err
	}
	dir := a.Dir
	if dir != "" && !filepath.IsAbs(dir) && rc.Dir != "" {
		dir = filepath.Join(rc.Dir, dir)
	}
	if !a.Command.IsZero() {
		script, err := a.Command.String(rc.Env)
		if err != nil {
			return nil, fmt.Errorf("run: %w", err)
		}
		env := append(os.Environ(), shellEnv...)
		var files []*os.File
		if a.Conn.Name != "" {
			pg, fs, err := rc.Conns.ChildEnv(ctx, a.Conn.Name)
			if err != nil {
				return nil, err
			}
			env, files = append(env, pg...), fs
		}
		st := pipeline.Stage{Name: "bash", Argv: []string{"bash", "-euo", "pipefail", "-c", script}, Env: env, Dir: dir, ExtraFiles: files}
		return []pipeline.Stage{st}, checkArgv(rc, 0, st.Argv)
	}
	stages := make([]pipeline.Stage, len(a.Pipe))
	for i, s := range a.Pipe {
		argv := make([]string, len(s.Cmd))
		for j, t := range s.Cmd {
			if argv[j], err = t.String(rc.Env); err != nil {
				return nil, fmt.Errorf("pipe stage %d: %w", i+1, err)
			}
		}
		if err := checkArgv(rc, i, argv); err != nil {
			return nil, err
		}
		stageEnv, err := envList(rc, s.Env)
		if err != nil {
			return nil, err
		}
		env := append(append(os.Environ(), shellEnv...), stageEnv...)
		var files []*os.File
		if s.Conn.Name != "" {
			pg, fs, err := rc.Conns.ChildEnv(ctx, s.Conn.Name)
			if err != nil {
				return nil, err
			}
			env, files = append(env, pg...), fs
		}
		name := s.Name
		if name == "" {
			name = filepath.Base(argv[0])
		}
		stages[i] = pipeline.Stage{Name: name, Argv: argv, Env: env, Dir: dir, ExtraFiles: files}
	}
	return stages, nil
}

// envList evaluates extra environment variables, in a stable order.
func envList(rc *Context, extra map[string]schema.Template) ([]string, error) {
	var env []string
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, err := extra[k].String(rc.Env)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", k, err)
		}
		env = append(env, k+"="+v)
	}
	return env, nil
}

// checkArgv refuses a command line that carries a secret: argv is visible to
// every user of the machine (ps, /proc/PID/cmdline).
func checkArgv(rc *Context, stage int, argv []string) error {
	for _, arg := range argv {
		if rc.Redact.String(arg) != arg {
			return fmt.Errorf("stage %d: the command line would contain a secret (%s); pass secrets through env: or conn:, never in the command",
				stage+1, rc.Redact.String(strings.Join(argv, " ")))
		}
	}
	return nil
}
