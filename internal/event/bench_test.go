package event

import (
	"io"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

type benchStatement struct {
	Index    int           `json:"index"`
	SQL      string        `json:"sql"`
	Rows     int64         `json:"rows"`
	Duration time.Duration `json:"duration"`
	Rerun    bool          `json:"rerun,omitempty"`
}

func (benchStatement) Name() string    { return "generate.statement" }
func (benchStatement) Message() string { return "generated statement" }

// The cost of a typed event over writing its zerolog line by hand: a
// generate step writes one per statement.
func BenchmarkLog(b *testing.B) {
	l := zerolog.New(io.Discard).With().Timestamp().Str("run_id", "R").Logger()
	ev := benchStatement{Index: 7, SQL: "ALTER TABLE public.t7 OWNER TO app", Rows: 0, Duration: 1500 * time.Microsecond}
	b.Run("typed", func(b *testing.B) {
		for b.Loop() {
			Log(&l, "owners", ev)
		}
	})
	b.Run("zerolog", func(b *testing.B) {
		for b.Loop() {
			e := l.Info().Str("step", "owners").Str("event", "generate.statement").Int("index", ev.Index).Str("sql", ev.SQL).
				Int64("rows", ev.Rows).Dur("duration", ev.Duration)
			if ev.Rerun {
				e = e.Bool("rerun", true)
			}
			e.Msg("generated statement")
		}
	})
}
