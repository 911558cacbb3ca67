package actions

import (
	"fmt"
	"testing"

	"github.com/runbookhq/runbook/internal/event"
)

// TestCopyProgress: the copy's live progress counts bytes while parts are
// left, and the indexes and constraints built once every part is in.
func TestCopyProgress(t *testing.T) {
	for _, c := range []struct {
		name string
		p    CopyProgress
		want event.Progress
	}{
		{"copying", CopyProgress{Bytes: 10, TotalBytes: 100, Parts: 1, TotalParts: 4, Rows: 7, Busy: 2, Jobs: 2, Built: 1, Items: 5, Building: 1, IndexJobs: 2},
			event.Progress{Done: 10, Total: 100, Estimated: true, Unit: "bytes", Also: []event.Count{{Label: "parts", Done: 1, Total: 4},
				{Label: "rows", Done: 7}, {Label: "busy", Done: 2, Total: 2}, {Label: "indexes", Done: 1, Total: 5}}}},
		{"building", CopyProgress{Bytes: 100, TotalBytes: 100, Parts: 4, TotalParts: 4, Rows: 9, Jobs: 2, Built: 3, Items: 5, Building: 2, IndexJobs: 2},
			event.Progress{Done: 3, Total: 5, Unit: "indexes and constraints", Also: []event.Count{{Label: "building", Done: 2, Total: 2},
				{Label: "parts", Done: 4, Total: 4}}}},
		{"no schema", CopyProgress{Bytes: 100, TotalBytes: 100, Parts: 4, TotalParts: 4, Rows: 9, Jobs: 2},
			event.Progress{Done: 100, Total: 100, Estimated: true, Unit: "bytes", Also: []event.Count{{Label: "parts", Done: 4, Total: 4},
				{Label: "rows", Done: 9}, {Label: "busy", Done: 0, Total: 2}}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := c.p.Progress()
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}
