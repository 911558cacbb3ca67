package fleet

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/runbookhq/runbook/executor"
	"github.com/runbookhq/runbook/internal/exitcode"
)

// Row is one customer's line of fleet status.
type Row struct {
	Customer string `json:"customer"`
	Outcome  string `json:"outcome"`
	// Step is the step the run reached: where it stopped, or its last step
	// when it succeeded; "" when it never started.
	Step     string        `json:"step,omitempty"`
	Started  *time.Time    `json:"started_at,omitempty"`
	Duration time.Duration `json:"duration_ns,omitempty"`
	// State is where the run's state is.
	State string `json:"state"`
	RunID string `json:"run_id,omitempty"`
	// Error is the run's error, or why it did not start.
	Error string `json:"error,omitempty"`
	// Worker is who holds the run now, or ran it last (queue fleets).
	Worker string `json:"worker,omitempty"`

	ended *time.Time // when the state says the run ended
}

// Table is a fleet's status: a row per customer.
type Table struct {
	Name    string `json:"fleet"`
	Runbook string `json:"runbook"`
	Where   string `json:"where"`
	Rows    []*Row `json:"customers"`
}

// Code is the fleet's exit code as it stands (ExitCode).
func (t *Table) Code() int {
	var list []string
	for _, r := range t.Rows {
		list = append(list, r.Outcome)
	}
	return ExitCode(list)
}

// Status reads the fleet in dir: each customer's state (without disturbing
// a run in progress) and, for the customers whose run left none, the
// fleet's record of them.
func Status(dir string) (*Table, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	t := &Table{Name: m.Name, Runbook: m.Runbook, Where: dir}
	for _, c := range m.Customers {
		row := &Row{Customer: c.Name, State: StatePath(dir, c.Name), Outcome: OutcomeNotStarted}
		if err := fillFromState(row, executor.NewFileStore(row.State)); err != nil {
			return nil, err
		}
		// The fleet's last word on the customer, where the state has none
		// or an older one (a resume refused before it began).
		if r := m.Results[c.Name]; r != nil {
			switch {
			case row.RunID == "":
				row.Outcome, row.Error = r.Outcome, r.Error
			case row.ended != nil && !r.Ended.Before(*row.ended) && (r.RunID == row.RunID || r.RunID == ""):
				row.Outcome = r.Outcome
				if r.Error != "" {
					row.Error = r.Error
				}
			}
		}
		t.Rows = append(t.Rows, row)
	}
	return t, nil
}

// fillFromState fills a row from a run's state; nothing when there is none.
func fillFromState(row *Row, store executor.Store) error {
	st, err := executor.ReadStatus(store)
	if err != nil {
		if exitcode.Of(err) == exitcode.Refused {
			return fmt.Errorf("customer %s: %w", row.Customer, err)
		}
		return nil // no state
	}
	row.RunID, row.Outcome = st.RunID, st.Outcome
	if st.Outcome == "unfinished" {
		row.Outcome = OutcomeUnfinished
		if st.Running {
			row.Outcome = OutcomeRunning
		}
	}
	started := st.Started
	row.Started = &started
	end := time.Now()
	if st.Ended != nil {
		end = *st.Ended
		row.ended = st.Ended
	}
	row.Duration = end.Sub(st.Started)
	for _, s := range st.Steps {
		row.Step = s.ID
		if s.Status != executor.Succeeded && s.Status != executor.Skipped {
			if s.Error != "" {
				row.Error = s.Error
			}
			break
		}
	}
	return nil
}

// WriteText renders the table for a person.
func (t *Table) WriteText(w io.Writer) {
	fmt.Fprintf(w, "Fleet %s (%s), %s\n\n", t.Name, t.Runbook, t.Where)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CUSTOMER\tOUTCOME\tSTEP\tDURATION\tSTATE")
	for _, r := range t.Rows {
		dur := "-"
		if r.Started != nil {
			dur = r.Duration.Round(100 * time.Millisecond).String()
		}
		step := r.Step
		if step == "" {
			step = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Customer, r.Outcome, step, dur, r.State)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d customers: %s\n", len(t.Rows), t.outcomes())
	for _, r := range t.Rows {
		if r.Error != "" && r.Outcome != OutcomeSucceeded {
			fmt.Fprintf(w, "  %s: %s\n", r.Customer, Brief(r.Error))
		}
	}
}

// WriteJSON renders the table as JSON.
func (t *Table) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(t)
}

// Brief is an error's first line, with the next when the first announces it
// (the command that continues a run).
func Brief(msg string) string {
	first, rest, _ := strings.Cut(msg, "\n")
	if strings.HasSuffix(first, ":") && rest != "" {
		next, _, _ := strings.Cut(rest, "\n")
		return first + " " + strings.TrimSpace(next)
	}
	return first
}

// outcomes counts the rows by outcome, in the order outcomes first appear:
// "3 succeeded, 1 failed".
func (t *Table) outcomes() string {
	counts := map[string]int{}
	var order []string
	for _, r := range t.Rows {
		if counts[r.Outcome] == 0 {
			order = append(order, r.Outcome)
		}
		counts[r.Outcome]++
	}
	parts := make([]string, len(order))
	for i, o := range order {
		parts[i] = fmt.Sprintf("%d %s", counts[o], o)
	}
	return strings.Join(parts, ", ")
}
