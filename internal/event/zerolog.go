package event

import (
	"reflect"
	"time"

	"github.com/rs/zerolog"
)

// Log writes ev as one JSON line through l: the level, l's context (the
// run_id), the step (unless the event carries a step field of its own), the
// event's name, its fields, the time and the message.
func Log(l *zerolog.Logger, step string, ev Event) {
	var e *zerolog.Event
	switch LevelOf(ev) {
	case Warn:
		e = l.Warn()
	case Error:
		e = l.Error()
	default:
		e = l.Info()
	}
	if e == nil {
		return
	}
	v := reflect.ValueOf(ev)
	p := planOf(v.Type())
	if step != "" && !p.keys["step"] {
		e.Str("step", step)
	}
	e.Str("event", ev.Name())
	encode(v, p, zl{e})
	e.Msg(ev.Message())
}

// zl is an Encoder onto a zerolog event.
type zl struct{ e *zerolog.Event }

func (z zl) Str(k, v string)               { z.e.Str(k, v) }
func (z zl) Strs(k string, v []string)     { z.e.Strs(k, v) }
func (z zl) Int(k string, v int64)         { z.e.Int64(k, v) }
func (z zl) Uint(k string, v uint64)       { z.e.Uint64(k, v) }
func (z zl) Float(k string, v float64)     { z.e.Float64(k, v) }
func (z zl) Bool(k string, v bool)         { z.e.Bool(k, v) }
func (z zl) Dur(k string, v time.Duration) { z.e.Dur(k, v) }
func (z zl) Time(k string, v time.Time)    { z.e.Time(k, v) }
func (z zl) Any(k string, v any)           { z.e.Interface(k, v) }
