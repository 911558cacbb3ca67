package executor

import (
	"encoding/json"
	"io"
	"time"

	"github.com/rs/zerolog"
)

// setupLog builds the run's logger: the console (human on a terminal, JSON
// lines otherwise) and the audit log file, both behind the secret redactor, so
// no code path can forget to mask.
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
			writers = append(writers, r.red.Writer(zerolog.ConsoleWriter{Out: r.o.Console, TimeFormat: "15:04:05",
				NoColor: !r.o.Terminal, FormatPrepare: humanFields,
				// What the message already says, or only machines need.
				FieldsExclude: []string{"run_id", "event", "title", "kind", "argv", "prompt", "name", "signal", "at", "by", "how"}}))
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
	zerolog.TimeFieldFormat = time.RFC3339Nano
	r.log = zerolog.New(zerolog.MultiLevelWriter(writers...)).With().Timestamp().Str("run_id", r.st.RunID).Logger()
	if audit != nil && audit.tear != nil {
		// The first line written after a torn one records it (docs/audit.md).
		r.log.Warn().Str("event", EventTruncated).Int("torn_bytes", audit.tear.Bytes).Str("torn_sha256", audit.tear.SHA256).
			Msgf("the audit log %s ended in a torn line (%d bytes: a write cut short); it is kept, and the chain continues from the last complete line", r.o.LogPath, audit.tear.Bytes)
	}
	return nil
}

// humanFields shapes an event's fields for a person: durations (milliseconds
// in JSON) as 1.2s or 350ms.
func humanFields(m map[string]any) error {
	for _, k := range []string{"duration", "delay"} {
		var ms float64
		switch v := m[k].(type) {
		case float64:
			ms = v
		case json.Number:
			f, err := v.Float64()
			if err != nil {
				continue
			}
			ms = f
		default:
			continue
		}
		d := time.Duration(ms * float64(time.Millisecond))
		switch {
		case d >= time.Second:
			d = d.Round(100 * time.Millisecond)
		case d >= time.Millisecond:
			d = d.Round(time.Millisecond)
		}
		m[k] = d.String()
	}
	return nil
}

func (r *runner) closeLog() {
	if r.audit != nil {
		r.st.afterSync = nil
		r.audit.close()
	}
}
