package actions

import (
	"fmt"
	"strings"
	"time"

	"github.com/runbookhq/runbook/internal/event"
	"github.com/runbookhq/runbook/internal/humanize"
	"github.com/runbookhq/runbook/internal/pgcopy"
)

// The events of the copy action.

func init() {
	event.MustRegister(CopyPhase{}, CopyPartStart{}, CopyPartEnd{}, CopyItemStart{}, CopyItemEnd{}, CopyDone{})
}

// CopyPhase: a phase of the copy begins (schema, data, post-data, verify),
// with Todo of Total items left to do.
type CopyPhase struct {
	Phase   string `json:"phase"`
	Todo    int    `json:"todo"`
	Total   int    `json:"total"`
	Resumed bool   `json:"resumed,omitempty"`
}

// Name implements event.Event.
func (CopyPhase) Name() string { return "copy.phase" }

// Message implements event.Event.
func (e CopyPhase) Message() string {
	return fmt.Sprintf("copy: %s, %d of %d to do", e.Phase, e.Todo, e.Total)
}

// Problem implements event.Problem: the operator sees where a resumed copy
// goes on.
func (e CopyPhase) Problem() (event.Issue, bool) {
	if !e.Resumed {
		return event.Issue{}, false
	}
	return event.Issue{Level: event.Info, Message: fmt.Sprintf("copy resumed: %s, %d of %d already committed", e.Phase, e.Total-e.Todo, e.Total)}, true
}

// CopyPartStart: a table part's COPY begins.
type CopyPartStart struct {
	Table string `json:"table"`
	Part  string `json:"part"`
	Bytes int64  `json:"bytes"`
}

// Name implements event.Event.
func (CopyPartStart) Name() string { return "copy.part.start" }

// Message implements event.Event.
func (e CopyPartStart) Message() string { return "copying " + e.Part }

// Part implements event.Parted: the part begins (a lane of the HTML
// report's timeline).
func (e CopyPartStart) PartOf() event.Part { return event.Part{Name: e.Part, Phase: event.PartBegin} }

// CopyPartEnd: a table part committed on the target.
type CopyPartEnd struct {
	Table    string        `json:"table"`
	Part     string        `json:"part"`
	Rows     int64         `json:"rows"`
	Bytes    int64         `json:"bytes"`
	Duration time.Duration `json:"duration"`
}

// Name implements event.Event.
func (CopyPartEnd) Name() string { return "copy.part.end" }

// Message implements event.Event.
func (e CopyPartEnd) Message() string { return "copied " + e.Part }

// Part implements event.Parted: the part ends, committed.
func (e CopyPartEnd) PartOf() event.Part { return event.Part{Name: e.Part, Phase: event.PartEnd} }

// Detail implements event.Detailer.
func (e CopyPartEnd) Detail() string {
	return fmt.Sprintf("copied %s: %s, %s in %s", e.Part, rowCount(e.Rows), humanize.Bytes(float64(e.Bytes)), e.Duration.Round(time.Millisecond))
}

// CopyItemStart: a post-data item (an index, a key constraint, a foreign
// key, a trigger …) begins building on the target.
type CopyItemStart struct {
	Item string `json:"item"`
	Type string `json:"type"`
}

// Name implements event.Event.
func (CopyItemStart) Name() string { return "copy.item.start" }

// Message implements event.Event.
func (e CopyItemStart) Message() string { return "building " + strings.ToLower(e.Type) + " " + e.Item }

// PartOf implements event.Parted: the build is a lane of the HTML report's
// timeline, as a table part's copy is.
func (e CopyItemStart) PartOf() event.Part { return event.Part{Name: e.Item, Phase: event.PartBegin} }

// CopyItemEnd: a post-data item committed on the target.
type CopyItemEnd struct {
	Item     string        `json:"item"`
	Type     string        `json:"type"`
	Duration time.Duration `json:"duration"`
}

// Name implements event.Event.
func (CopyItemEnd) Name() string { return "copy.item.end" }

// Message implements event.Event.
func (e CopyItemEnd) Message() string { return "built " + e.Item }

// PartOf implements event.Parted.
func (e CopyItemEnd) PartOf() event.Part { return event.Part{Name: e.Item, Phase: event.PartEnd} }

// Detail implements event.Detailer.
func (e CopyItemEnd) Detail() string {
	return fmt.Sprintf("built %s %s in %s", strings.ToLower(e.Type), e.Item, e.Duration.Round(time.Millisecond))
}

// CopyDone: the copy ended; Resumed parts were committed before this
// attempt.
type CopyDone struct {
	Tables   int           `json:"tables"`
	Parts    int           `json:"parts"`
	Resumed  int           `json:"resumed_parts"`
	Rows     int64         `json:"rows"`
	Bytes    int64         `json:"bytes"`
	Verify   string        `json:"verify"`
	Duration time.Duration `json:"duration"`
}

// Name implements event.Event.
func (CopyDone) Name() string { return "copy.done" }

// Message implements event.Event.
func (e CopyDone) Message() string {
	return fmt.Sprintf("copied %d tables (%d parts), %s, %s", e.Tables, e.Parts, rowCount(e.Rows), humanize.Bytes(float64(e.Bytes)))
}

// CopyProgress is how far the rows' copy is. It is live: shown on a
// terminal, never logged.
type CopyProgress struct {
	Bytes, TotalBytes int64
	Parts, TotalParts int
	Rows              int64
	Busy, Jobs        int
	// Built of Items post-data items (indexes, constraints …) are built,
	// Building of IndexJobs in progress.
	Built, Items, Building, IndexJobs int
}

// Name implements event.Event.
func (CopyProgress) Name() string { return "copy.progress" }

// Message implements event.Event.
func (e CopyProgress) Message() string {
	return fmt.Sprintf("%d/%d parts", e.Parts, e.TotalParts)
}

// Progress implements event.Progressor: the bytes copied while parts are
// left to copy; once every part is in, the indexes and constraints built,
// which can take as long again and would otherwise show as a copy at 100%
// that does not end.
func (e CopyProgress) Progress() event.Progress {
	if e.TotalParts > 0 && e.Parts >= e.TotalParts && e.Items > 0 {
		return event.Progress{Done: int64(e.Built), Total: int64(e.Items), Unit: "indexes and constraints",
			Also: []event.Count{{Label: "building", Done: int64(e.Building), Total: int64(e.IndexJobs)},
				{Label: "parts", Done: int64(e.Parts), Total: int64(e.TotalParts)}}}
	}
	p := event.Progress{Done: e.Bytes, Total: e.TotalBytes, Estimated: true, Unit: "bytes",
		Also: []event.Count{{Label: "parts", Done: int64(e.Parts), Total: int64(e.TotalParts)},
			{Label: "rows", Done: e.Rows}, {Label: "busy", Done: int64(e.Busy), Total: int64(e.Jobs)}}}
	if e.Items > 0 {
		p.Also = append(p.Also, event.Count{Label: "indexes", Done: int64(e.Built), Total: int64(e.Items)})
	}
	return p
}

// copyObserver turns what the copy does into the step's events.
type copyObserver struct {
	events    event.Sink
	start     time.Time
	jobs      int
	indexJobs int
}

func (o *copyObserver) Phase(p pgcopy.PhaseInfo) {
	o.events.Emit(CopyPhase{Phase: p.Name, Todo: p.Todo, Total: p.Total, Resumed: p.Resumed})
}

func (o *copyObserver) PartStart(t *pgcopy.Table, p pgcopy.Part) {
	o.events.Emit(CopyPartStart{Table: t.Label(), Part: p.ID, Bytes: p.Bytes})
}

func (o *copyObserver) PartEnd(t *pgcopy.Table, p pgcopy.Part, rows, bytes int64, d time.Duration) {
	o.events.Emit(CopyPartEnd{Table: t.Label(), Part: p.ID, Rows: rows, Bytes: bytes, Duration: d})
}

func (o *copyObserver) ItemStart(it pgcopy.Item) {
	o.events.Emit(CopyItemStart{Item: it.Name, Type: it.Type})
}

func (o *copyObserver) ItemEnd(it pgcopy.Item, d time.Duration) {
	o.events.Emit(CopyItemEnd{Item: it.Name, Type: it.Type, Duration: d})
}

func (o *copyObserver) Progress(p pgcopy.Progress) {
	if o.events.Live() {
		o.events.Emit(CopyProgress{Bytes: p.Bytes, TotalBytes: p.TotalBytes, Parts: p.Parts, TotalParts: p.TotalParts, Rows: p.Rows, Busy: p.Busy, Jobs: o.jobs,
			Built: p.Built, Items: p.Items, Building: p.Building, IndexJobs: o.indexJobs})
	}
}
