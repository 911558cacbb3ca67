package executor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/runbookhq/runbook/internal/exitcode"
)

// Status is where a run stands, read from its state file (read-only: a run in
// progress is not disturbed).
type Status struct {
	State    string       `json:"state"`
	RunID    string       `json:"run_id"`
	Runbook  StateRunbook `json:"runbook"`
	Operator string       `json:"operator"`
	Started  time.Time    `json:"started_at"`
	Ended    *time.Time   `json:"ended_at,omitempty"`
	Outcome  string       `json:"outcome"`
	Running  bool         `json:"locked"` // a process holds the state's lock now
	// LockedBy says who holds the lock, as its store knows: the process
	// and host, and for a control database the run and its heartbeat.
	LockedBy string            `json:"locked_by,omitempty"`
	Params   map[string]string `json:"params"`
	// From and Only are the run's step selection (run --from, --only).
	From  string       `json:"from,omitempty"`
	Only  []string     `json:"only,omitempty"`
	Steps []*StepState `json:"steps"`
}

// ReadStatus reads a run's state from its store, without taking its lock.
func ReadStatus(store Store) (*Status, error) {
	path := store.Where()
	st, err := loadState(store)
	if err != nil {
		var coder exitcode.Coder
		if errors.As(err, &coder) {
			// A state that fails its integrity check (exit 4), a control
			// database that cannot be reached (exit 5).
			return nil, err
		}
		return nil, exitcode.With(exitcode.Invalid, err)
	}
	if st == nil {
		return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("no state at %s", path))
	}
	s := &Status{State: path, RunID: st.RunID, Runbook: st.Runbook, Operator: st.Operator, Started: st.Started,
		Ended: st.Ended, Outcome: st.Outcome, Params: st.Params, From: st.From, Only: st.Only, Steps: st.Steps}
	if s.Outcome == "" {
		s.Outcome = "unfinished"
	}
	s.Running, s.LockedBy = store.Holder()
	return s, nil
}

// WriteJSON renders the status as JSON.
func (s *Status) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// WriteText renders the status for a human.
func (s *Status) WriteText(w io.Writer) {
	fmt.Fprintf(w, "Run %s of %s (%s)\n", s.RunID, s.Runbook.Name, s.Runbook.File)
	fmt.Fprintf(w, "  state     %s\n", s.State)
	fmt.Fprintf(w, "  operator  %s\n", s.Operator)
	fmt.Fprintf(w, "  started   %s\n", s.Started.Format(time.RFC3339))
	outcome := s.Outcome
	if s.Running {
		outcome += " (a runbook process is running it now"
		if s.LockedBy != "" {
			outcome += ": " + s.LockedBy
		}
		outcome += ")"
	}
	fmt.Fprintf(w, "  outcome   %s\n", outcome)
	if s.From != "" {
		fmt.Fprintf(w, "  from      %s (run --from: the steps before it are not run)\n", s.From)
	}
	if len(s.Only) > 0 {
		fmt.Fprintf(w, "  only      %s (run --only)\n", strings.Join(s.Only, ", "))
	}
	fmt.Fprintln(w)
	width := 0
	for _, st := range s.Steps {
		width = max(width, len(st.ID))
	}
	for i, st := range s.Steps {
		line := fmt.Sprintf("  %2d. %-*s  %-9s", i+1, width, st.ID, st.Status)
		if st.Attempts > 1 {
			line += fmt.Sprintf("  %d attempts", st.Attempts)
		}
		if st.Started != nil && st.Ended != nil {
			line += "  " + st.Ended.Sub(*st.Started).Round(time.Millisecond).String()
		}
		if st.Status != Succeeded {
			for _, name := range sortedKeys(st.Units) {
				u := st.Units[name]
				line += fmt.Sprintf("\n        %s: %s", name, unitText(u.Data))
				if u.AtRisk {
					line += fmt.Sprintf(" (known on the server's disk: %s)", unitText(u.Durable))
				}
				if u.Tx != nil {
					line += fmt.Sprintf(" (transaction %d in flight on %s)", u.Tx.XID, u.Tx.Conn)
				}
			}
		}
		if st.Error != "" {
			line += "\n        " + strings.ReplaceAll(st.Error, "\n", "\n        ")
		}
		fmt.Fprintln(w, line)
	}
}

// unitText renders a unit's data for a person: the fields of a JSON object
// as "done 6, of 40", anything else as it is.
func unitText(data json.RawMessage) string {
	if data == nil {
		return "nothing committed"
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil || len(m) == 0 {
		return string(data)
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+" "+string(m[k]))
	}
	return strings.Join(parts, ", ")
}
