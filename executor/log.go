package executor

import (
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/term"

	"github.com/runbookhq/runbook/internal/console"
)

// Every event's time, to the nanosecond; set once (zerolog's setting is global,
// and a fleet runs several runs in one process).
func init() { zerolog.TimeFieldFormat = time.RFC3339Nano }

// setupLog builds the run's consumers of events: the console — the step
// view for a person (internal/console) on a terminal or with --log-format
// text, JSON lines otherwise — and the audit log file. Every byte goes
// through the secret redactor, so no code path can forget to mask.
func (r *runner) setupLog() error {
	var writers []io.Writer
	if r.o.Console != nil {
		human := r.o.Terminal
		switch r.o.LogFormat {
		case "text":
			human = true
		case "json":
			human = false
		}
		if human {
			r.human = r.newConsole()
		} else {
			writers = append(writers, r.red.Writer(r.o.Console))
		}
	}
	audit := r.audit
	if audit != nil {
		// zerolog → redact → audit → file: what is chained and hashed is
		// exactly what is written, secrets already masked (docs/audit.md).
		// The state's fsyncs wait for the log's (see auditWriter.waitSync).
		// A failed write stops the run before its next step (auditStopped).
		r.st.afterSync = audit.waitSync
		writers = append(writers, r.red.Writer(auditSink{audit}))
	}
	if len(writers) == 0 {
		r.log = zerolog.Nop()
	} else {
		r.log = zerolog.New(zerolog.MultiLevelWriter(writers...)).With().Timestamp().Str("run_id", r.st.RunID).Logger()
	}
	if r.human != nil && r.o.Prompt != nil {
		// A confirm step's question is asked on a clean line.
		prompt := r.o.Prompt
		r.o.Prompt = func(q string) (string, error) {
			r.human.Hold()
			defer r.human.Release()
			return prompt(q)
		}
	}
	if audit != nil && audit.tear != nil {
		// The first line written after a torn one records it (docs/audit.md).
		r.emit("", LogTruncated{TornBytes: audit.tear.Bytes, TornSHA256: audit.tear.SHA256, Path: r.o.LogPath})
	}
	return nil
}

// newConsole returns the step view on the console: redrawn in place and in
// colour on a terminal, as the conventions allow (NO_COLOR, TERM=dumb: no
// colour; TERM=dumb: no redrawing either), plain lines elsewhere.
func (r *runner) newConsole() *console.Console {
	tty := r.o.Terminal
	dumb := os.Getenv("TERM") == "dumb"
	noColor := os.Getenv("NO_COLOR") != "" // no-color.org
	o := console.Options{
		Out:     r.red.Writer(r.o.Console),
		Live:    tty && !dumb,
		Color:   tty && !dumb && !noColor,
		Verbose: r.o.Verbose,
		Mask:    r.red.String,
		Steps:   r.rb.StepIDs(),
		LogPath: r.o.LogPath,
	}
	if f, ok := r.o.Console.(*os.File); ok && tty {
		fd := int(f.Fd())
		o.Width = func() int {
			w, _, err := term.GetSize(fd)
			if err != nil {
				return 0
			}
			return w
		}
	}
	return console.New(o)
}

func (r *runner) closeLog() {
	if r.human != nil {
		r.human.Close()
	}
	if r.audit != nil {
		r.st.afterSync = nil
		r.audit.close()
	}
}
