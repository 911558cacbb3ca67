package executor

import (
	"time"

	"github.com/runbookhq/runbook/internal/event"
)

// emit tells the run's consumers about an event: the JSON console and the
// audit log (one JSON line each, through zerolog and the secret redactor;
// the audit log is then flushed as the event asks) and the human console.
// step is the step the event belongs to, written in the line's envelope
// ("" for a run's events, and for those that carry a step field of their
// own). Live events (progress) reach the human console only.
func (r *runner) emit(step string, ev event.Event) {
	if _, live := ev.(event.Progressor); !live {
		event.Log(&r.log, step, ev)
		if r.audit != nil {
			if d := event.DurabilityOf(ev); d != event.Buffered {
				// A failed flush stops the log; the run stops before its
				// next step (auditStopped).
				r.audit.flush(d)
			}
		}
	}
	if r.human != nil {
		r.human.Handle(event.Record{Time: time.Now(), RunID: r.st.RunID, Step: step, Event: ev})
	}
}

// stepEvents is the event.Sink an action's attempt emits to: its events
// belong to the step.
type stepEvents struct {
	r    *runner
	step string
}

// Emit implements event.Sink.
func (s stepEvents) Emit(ev event.Event) { s.r.emit(s.step, ev) }

// Live implements event.Sink: a person watches the human console.
func (s stepEvents) Live() bool { return s.r.human != nil }
