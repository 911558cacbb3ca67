package fleet

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/runbookhq/runbook/executor"
)

// ReportOptions say what fleet report reads and where its links point.
type ReportOptions struct {
	// Table is the fleet's status (Status, or QueueStatus).
	Table *Table
	// Reports are the runs' Markdown reports by customer (ReportPath).
	Reports map[string]string
	// Logs are the runs' audit logs by customer, verified for the summary;
	// a customer without one is reported without.
	Logs map[string]string
	// LinkBase is the directory the summary's links are relative to (where
	// the summary is read from).
	LinkBase string
}

// WriteReports writes every customer's run report (ReportPath) from its
// state and audit log, and returns the reports written by customer.
// Customers whose run never began have none.
func WriteReports(dir string, t *Table, open func(customer string) (executor.Store, error)) (map[string]string, error) {
	out := map[string]string{}
	for _, r := range t.Rows {
		if r.RunID == "" {
			continue
		}
		var store executor.Store
		if open != nil {
			s, err := open(r.Customer)
			if err != nil {
				return nil, err
			}
			store = s
		}
		path := ReportPath(dir, r.Customer)
		err := writeReport(store, r.State, LogPath(dir, r.Customer), path)
		if store != nil {
			store.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("customer %s: report: %w", r.Customer, err)
		}
		out[r.Customer] = path
	}
	return out, nil
}

// WriteReport writes the fleet's Markdown summary: a line per customer with
// its outcome, the step it reached, its duration, whether its audit log
// verifies, and a link to its run's report.
func WriteReport(w io.Writer, o ReportOptions) error {
	t := o.Table
	fmt.Fprintf(w, "# Fleet %s\n\n", t.Name)
	fmt.Fprintf(w, "- Runbook: `%s`\n", t.Runbook)
	fmt.Fprintf(w, "- Files: `%s`\n", t.Where)
	fmt.Fprintf(w, "- Written: %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "- Customers: %d (%s)\n\n", len(t.Rows), t.outcomes())
	fmt.Fprintln(w, "| Customer | Outcome | Step reached | Duration | Audit log | Report |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
	for _, r := range t.Rows {
		step, dur := r.Step, ""
		if step == "" {
			step = "—"
		}
		if r.Started != nil {
			dur = r.Duration.Round(100 * time.Millisecond).String()
		}
		audit := "—"
		if p := o.Logs[r.Customer]; p != "" {
			if _, err := os.Stat(p); err == nil {
				v, err := executor.VerifyLog(p)
				switch {
				case err != nil:
					audit = "unreadable: " + cell(err.Error())
				case v.Bad != nil:
					audit = "**broken**: " + cell(v.Summary())
				default:
					audit = "verified"
				}
			}
		}
		link := "—"
		if p := o.Reports[r.Customer]; p != "" {
			rel := p
			if o.LinkBase != "" {
				if abs, err := filepath.Abs(p); err == nil {
					if base, err := filepath.Abs(o.LinkBase); err == nil {
						if x, err := filepath.Rel(base, abs); err == nil {
							rel = x
						}
					}
				}
			}
			link = fmt.Sprintf("[%s](%s)", filepath.Base(p), filepath.ToSlash(rel))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", cell(r.Customer), r.Outcome, cell(step), dur, audit, link)
	}
	var errs []string
	for _, r := range t.Rows {
		if r.Error != "" && r.Outcome != OutcomeSucceeded {
			errs = append(errs, fmt.Sprintf("- **%s** (%s): %s", r.Customer, r.Outcome, Brief(r.Error)))
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(w, "\n## Not succeeded\n\n%s\n", strings.Join(errs, "\n"))
	}
	return nil
}

// cell makes text safe in a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", `\|`)
}
