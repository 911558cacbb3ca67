package executor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/internal/shellword"
)

// The Markdown rendering of a Report (built in report.go).

// WriteMarkdown renders the report as Markdown.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b bytes.Buffer
	st := r.Status
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Run report: %s\n\n", mdEscape(st.Runbook.Name))
	outcome := st.Outcome
	if st.Running {
		outcome += " (a runbook process is running it now)"
	}
	p("- **Outcome:** %s\n", mdEscape(outcome))
	p("- **Run:** %s\n", code(st.RunID))
	p("- **Runbook:** %s (digest %s when the run started)\n", code(st.Runbook.File), code(st.Runbook.Digest))
	first := r.firstStart()
	operators := []string{st.Operator}
	for _, s := range r.Invocations {
		if s.Operator != "" && !slices.Contains(operators, s.Operator) {
			operators = append(operators, s.Operator)
		}
	}
	p("- **Operator:** %s\n", mdEscape(strings.Join(operators, ", ")))
	if first != nil {
		if first.Host != "" {
			p("- **Host:** %s\n", mdEscape(first.Host))
		}
		if first.Version != "" {
			p("- **runbook version:** %s\n", mdEscape(first.Version))
		}
	}
	if tickets := r.tickets(); len(tickets) > 0 {
		p("- **Ticket:** %s\n", mdEscape(strings.Join(tickets, ", ")))
	}
	p("- **Started:** %s\n", fmtTime(st.Started))
	if st.Ended != nil {
		p("- **Ended:** %s (%s after the start)\n", fmtTime(*st.Ended), fmtDur(st.Ended.Sub(st.Started)))
	}
	if r.Plan != "" {
		p("- **Plan:** %s (sealed plan %s)\n", code(r.Plan), code(r.PlanFile))
	}
	p("- **State:** %s\n", code(st.State))
	r.writeLogLine(&b)
	b.WriteString("\n")

	r.writeParams(&b, first)
	if len(r.Servers) > 0 {
		p("## Servers\n\n| connection | database | PostgreSQL | system identifier |\n| --- | --- | --- | --- |\n")
		for _, name := range sortedKeys(r.Servers) {
			s := r.Servers[name]
			p("| %s | %s | %s | %s |\n", cell(name), cell(s.Database), cell(s.Version), cell(s.SystemID))
		}
		b.WriteString("\n")
	}

	p("## Steps\n\n| # | step | status | attempts | duration |\n| --- | --- | --- | --- | --- |\n")
	for i, s := range st.Steps {
		d := ""
		if s.Started != nil && s.Ended != nil {
			d = fmtDur(s.Ended.Sub(*s.Started))
		}
		attempts := ""
		if s.Attempts > 0 {
			attempts = strconv.Itoa(s.Attempts)
		}
		p("| %d | %s | %s | %s | %s |\n", i+1, cell(s.ID), cell(s.Status), attempts, d)
	}
	b.WriteString("\n")
	for _, s := range st.Steps {
		if s.Error != "" && s.Status == Failed {
			p("Step %s failed:\n\n", code(s.ID))
			writeBlock(&b, "", "text", s.Error)
		}
	}

	if r.LogPath != "" {
		r.writeInvocations(&b)
	} else if len(r.Approved) > 0 {
		p("## Approvals\n\n")
		for _, id := range sortedKeys(r.Approved) {
			a := r.Approved[id]
			p("- step %s approved by **%s** (%s) at %s\n", code(id), mdEscape(a.By), code(a.How), fmtTime(a.At))
		}
		b.WriteString("\n")
	}
	_, err := w.Write(b.Bytes())
	return err
}

// tickets are the tickets the invocations named, in order, without repeats.
func (r *Report) tickets() []string {
	var out []string
	for _, s := range r.Invocations {
		if s.Ticket != "" && !slices.Contains(out, s.Ticket) {
			out = append(out, s.Ticket)
		}
	}
	return out
}

func (r *Report) firstStart() *ReportInvocation {
	for _, s := range r.Invocations {
		if s.HasRunStart {
			return s
		}
	}
	return nil
}

func (r *Report) writeLogLine(b *bytes.Buffer) {
	if r.LogPath == "" {
		fmt.Fprintf(b, "- **Audit log:** none given (`--log`): the commands, statements and approvals are not reported\n")
		return
	}
	v := r.Verify
	switch {
	case v.Bad != nil:
		fmt.Fprintf(b, "- **Audit log:** %s — **CHAIN BROKEN at line %d: %s.** The events below may have been altered.\n",
			code(r.LogPath), v.Bad.Line, mdEscape(v.Bad.Reason))
	default:
		fmt.Fprintf(b, "- **Audit log:** %s — chain intact (%s, seq 1–%d); head: seq %d, sha256 %s (check later with `runbook audit verify %s --anchor %s`)\n",
			code(r.LogPath), plural(int64(v.Lines), "line"), v.Seq, v.Seq, code(v.Head), r.LogPath, v.Head)
		if len(v.Tears) > 0 {
			fmt.Fprintf(b, "- **Torn log lines:** %d, each recorded by the log.truncated event after it\n", len(v.Tears))
		}
	}
	if r.LogLines == 0 {
		fmt.Fprintf(b, "- **Warning:** the audit log holds no event of run %s\n", code(r.Status.RunID))
	}
}

func (r *Report) writeParams(b *bytes.Buffer, first *ReportInvocation) {
	params := map[string]string{}
	for k, v := range r.Status.Params {
		params[k] = v
	}
	for _, k := range r.Secrets {
		params[k] = "***"
	}
	if first != nil && first.Params != nil {
		params = first.Params // as logged: masked
	}
	if len(params) == 0 {
		return
	}
	fmt.Fprintf(b, "## Parameters\n\n| name | value |\n| --- | --- |\n")
	for _, k := range sortedKeys(params) {
		fmt.Fprintf(b, "| %s | %s |\n", cell(k), strings.ReplaceAll(code(oneLine(params[k])), "|", `\|`))
	}
	b.WriteString("\n")
}

func (r *Report) writeInvocations(b *bytes.Buffer) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("## Invocations\n\n")
	if len(r.Invocations) == 0 {
		p("The audit log holds no invocation of this run.\n")
		return
	}
	index := map[string]int{}
	for i, s := range r.Status.Steps {
		index[s.ID] = i + 1
	}
	for _, s := range r.Invocations {
		kind := "run"
		if s.Resume {
			kind = "resume"
		}
		if !s.HasRunStart {
			kind = "events without run.start"
		}
		p("### Invocation %d: %s", s.N, kind)
		if s.Operator != "" {
			p(" by %s", mdEscape(s.Operator))
		}
		p("\n\n")
		var facts []string
		if !s.Started.IsZero() {
			facts = append(facts, "started "+fmtTime(s.Started))
		}
		switch {
		case s.Outcome != "":
			facts = append(facts, fmt.Sprintf("ended %s after %s: **%s**", fmtTime(s.Ended), fmtDur(s.Duration), mdEscape(s.Outcome)))
		default:
			facts = append(facts, "**no run.end**: the process stopped without ending the run (killed, crashed, or still running)")
		}
		facts = append(facts, fmt.Sprintf("log lines %d–%d", s.FirstLine, s.LastLine))
		p("%s.\n", strings.Join(facts, "; "))
		if s.Digest != "" && s.Digest != r.Status.Runbook.Digest {
			p("The runbook was edited since the run started: digest %s.\n", code(s.Digest))
		}
		if s.Ticket != "" && len(r.tickets()) > 1 {
			p("Ticket: %s.\n", mdEscape(s.Ticket))
		}
		p("\n")
		for _, n := range s.Notes {
			p("- %s\n", noteText(n))
		}
		if len(s.Notes) > 0 {
			p("\n")
		}
		for _, st := range s.Steps {
			status := st.Status
			if status == "" {
				status = "no step.end (the process stopped inside the step)"
			}
			if st.Rejected != nil {
				status = "rejected"
			}
			p("#### %d. %s", index[st.ID], code(st.ID))
			if st.Kind != "" {
				p(" (%s)", st.Kind)
			}
			p(" — %s", mdEscape(status))
			if st.HasDur {
				p(" in %s", fmtDur(st.Duration))
			}
			if st.Attempts > 1 {
				p(", %d attempts", st.Attempts)
			}
			p("\n\n")
			if st.Title != "" && st.Title != st.ID {
				p("%s\n\n", mdEscape(st.Title))
			}
			for _, e := range st.Entries {
				it := entryItem(e)
				p("- %s\n", it.text)
				if it.block != "" {
					if it.lang == "quote" {
						for _, l := range strings.Split(it.block, "\n") {
							p("  > %s\n", mdEscape(l))
						}
						continue
					}
					writeBlock(b, "  ", it.lang, it.block)
				}
			}
			if st.GenTotal > st.GenListed {
				p("- … and %d more generated statements\n", st.GenTotal-st.GenListed)
			}
			if st.GenTotal > 0 {
				p("- generated statements executed: %d (%s)\n", st.GenTotal, plural(st.GenRows, "row"))
			}
			if len(st.Copied) > 0 {
				p("\n| table | parts | rows | bytes | COPY time |\n| --- | ---: | ---: | ---: | ---: |\n")
				for _, c := range st.Copied {
					p("| %s | %d | %d | %d | %s |\n", mdEscape(c.Table), c.Parts, c.Rows, c.Bytes, fmtDur(c.Busy))
				}
				p("\n")
			}
			if st.Error != "" {
				p("- **error:**\n")
				writeBlock(b, "  ", "text", st.Error)
			}
			if len(st.Entries) > 0 || st.GenTotal > 0 || st.Error != "" {
				p("\n")
			}
		}
		if s.Error != "" {
			p("Run ended with:\n\n")
			writeBlock(b, "", "text", s.Error)
			p("\n")
		}
	}
}

// reportItem is one line of a step's account (a Markdown list item, and an
// optional block below it).
type reportItem struct {
	text  string
	block string
	lang  string
}

// noteText renders an invocation's run-level event.
func noteText(n ReportNote) string {
	switch e := n.Event.(type) {
	case LogTruncated:
		return fmt.Sprintf("the audit log ended in a torn line (%d bytes: a write cut short) when this invocation began; it is kept, and recorded at line %d",
			e.TornBytes, n.Line)
	case ConnOpen:
		return fmt.Sprintf("connected %s: %s as %s on %s:%d, PostgreSQL %s (system identifier %s)",
			code(e.Conn), code(e.Database), code(e.User), e.Host, e.Port, e.Version, e.SystemID)
	case RunPaused:
		return fmt.Sprintf("paused at step %s: approval required (resume with `--approve %s`)", code(e.Step), e.Step)
	case RunInterrupted:
		return fmt.Sprintf("interrupted (signal) during step %s; clean-up (always) steps ran", code(e.Step))
	}
	return fmt.Sprintf("%s: %s", code(n.Event.Name()), n.Message)
}

// entryItem renders one thing a step did.
func entryItem(e ReportEntry) reportItem {
	if c := e.Command; c != nil {
		return commandItem(c)
	}
	text := func(format string, args ...any) reportItem { return reportItem{text: fmt.Sprintf(format, args...)} }
	switch ev := e.Event.(type) {
	case StepSkip:
		return text("skipped: %s is false", code(ev.When))
	case StepRetry:
		return text("attempt %d failed, retried after %s: %s", ev.Attempt, fmtDur(ev.Delay), oneLine(ev.Error))
	case StepFailureIgnored:
		return text("the failure is ignored (`on_failure: continue`)")
	case StepSettled:
		xid := ""
		if ev.XID != nil {
			xid = strconv.FormatUint(*ev.XID, 10)
		}
		return text("settled after an interruption (transaction %s): %s", xid, ev.Text)
	case TxTerminated:
		return text("ended the dead run's open transaction (backend pid %d)", ev.BackendPID)
	case actions.SQLStatement:
		return sqlItem(fmt.Sprintf("SQL %d (%s, %s)", ev.Statement, plural(ev.Rows, "row"), fmtDur(ev.Duration)), ev.SQL)
	case actions.SQLFailure:
		t := fmt.Sprintf("**error** SQLSTATE %s: %s", ev.SQLSTATE, oneLine(ev.Text))
		if ev.Details != "" {
			t += "; detail: " + oneLine(ev.Details)
		}
		if ev.Hint != "" {
			t += "; hint: " + oneLine(ev.Hint)
		}
		return sqlItem(t, ev.SQL)
	case actions.SQLNotice:
		return text("notice (%s): %s", ev.Severity, oneLine(ev.Text))
	case actions.SQLEmpty:
		return text("the script has no statements")
	case actions.GenerateQuery:
		return text("the generator query produced %s (list frozen before the first ran)", plural(int64(ev.Statements), "statement"))
	case actions.GenerateResume:
		return text("resumed with the frozen list: %d of %d already done", ev.Done, ev.Statements)
	case actions.GenerateRerun:
		return text("a batch rolled back: statements %d–%d ran again in one transaction", ev.From, ev.To)
	case actions.GenerateAutocommit:
		return text("statement %d cannot run in a transaction block: it ran on its own in autocommit", ev.Index)
	case actions.GenerateStatement:
		t := fmt.Sprintf("generated %d", ev.Index+1)
		if e.Of > 0 {
			t += fmt.Sprintf("/%d", e.Of)
		}
		return sqlItem(t+" ("+plural(ev.Rows, "row")+")", ev.SQL)
	case actions.AssertResult:
		t := fmt.Sprintf("assert %s: **%s**", code(ev.Expr), ev.Outcome)
		if ev.Row != nil {
			b, _ := json.Marshal(ev.Row)
			t += " — row " + code(string(b))
		}
		if ev.Differing != nil {
			t += fmt.Sprintf(" — %s differ", plural(int64(*ev.Differing), "row"))
		}
		if ev.Error != "" {
			t += ": " + oneLine(ev.Error)
		}
		return reportItem{text: t}
	case actions.CopyPhase:
		return text("copy resumed at its %s: %d of %d already committed", ev.Phase, ev.Total-ev.Todo, ev.Total)
	case actions.CopyDone:
		t := fmt.Sprintf("copied %s in %s (%s, %s)", plural(int64(ev.Tables), "table"), plural(int64(ev.Parts), "part"), plural(ev.Rows, "row"), plural(ev.Bytes, "byte"))
		if ev.Resumed > 0 {
			t += fmt.Sprintf("; %d parts committed before this attempt", ev.Resumed)
		}
		if ev.Verify != "" && ev.Verify != "none" {
			t += "; verified: " + ev.Verify
		}
		return text("%s", t)
	case actions.ConfirmApproved:
		return reportItem{text: fmt.Sprintf("approved by **%s** (%s) at %s", ev.By, code(ev.How), fmtTime(ev.At)), block: ev.Prompt, lang: "quote"}
	case actions.ConfirmRejected:
		return reportItem{text: fmt.Sprintf("**rejected** by **%s** (%s) at %s: %s", ev.By, code(ev.How), fmtTime(ev.At), mdEscape(oneLine(ev.Reason))), block: ev.Prompt, lang: "quote"}
	case actions.ConfirmRefused:
		return text("approval by **%s** (%s) at %s **refused**: %s", ev.By, code(ev.How), fmtTime(ev.At), mdEscape(oneLine(ev.Reason)))
	case actions.GenerateBound:
		return text("the %s generated now are those plan %s approved", plural(int64(ev.Statements), "statement"), code(ev.Plan))
	case PlanUnbound:
		return text("not bound by plan %s: %s", code(ev.Plan), ev.Why)
	}
	return text("%s: %s", code(e.Event.Name()), oneLine(e.Event.Message()))
}

// commandItem reports a command's exit with its argv and, when it failed,
// its last stderr lines.
func commandItem(c *ReportCommand) reportItem {
	argv := inline(strings.Join(quoteArgv(c.Argv), " "))
	if c.Exit == nil {
		return reportItem{text: fmt.Sprintf("command %s → no exit recorded", argv)}
	}
	e := c.Exit
	var outcome string
	switch {
	case e.StartError != "":
		outcome = "could not start: " + oneLine(e.StartError)
	case e.Signal != "":
		outcome = "killed by " + e.Signal
	default:
		outcome = fmt.Sprintf("exit %d", e.ExitCode)
	}
	outcome += ", " + fmtDur(e.Duration)
	text := fmt.Sprintf("command %s → %s", argv, outcome)
	if c.Staged {
		text = fmt.Sprintf("stage %d: %s", c.Stage, text)
	}
	it := reportItem{text: text}
	if e.Failed() && len(c.Stderr) > 0 {
		if c.StderrLines > len(c.Stderr) {
			it.text += fmt.Sprintf("; last %d of %d stderr lines:", len(c.Stderr), c.StderrLines)
		} else {
			it.text += "; stderr:"
		}
		it.block, it.lang = strings.Join(c.Stderr, "\n"), "text"
	}
	return it
}

func sqlItem(text, sql string) reportItem {
	sql = strings.TrimSpace(sql)
	if !strings.Contains(sql, "\n") && len(sql) <= 160 {
		return reportItem{text: text + ": " + code(sql)}
	}
	return reportItem{text: text + ":", block: sql, lang: "sql"}
}

// writeBlock writes a fenced code block, its fence longer than any run of
// backticks in text.
func writeBlock(b *bytes.Buffer, indent, lang, text string) {
	fence := strings.Repeat("`", max(3, longestRun(text, '`')+1))
	fmt.Fprintf(b, "%s%s%s\n", indent, fence, lang)
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		fmt.Fprintf(b, "%s%s\n", indent, l)
	}
	fmt.Fprintf(b, "%s%s\n", indent, fence)
}

func longestRun(s string, c byte) int {
	best, n := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			n++
			best = max(best, n)
		} else {
			n = 0
		}
	}
	return best
}

// code renders s as inline code.
func code(s string) string {
	if s == "" {
		return "—"
	}
	s = strings.ReplaceAll(s, "\n", " ")
	fence := strings.Repeat("`", longestRun(s, '`')+1)
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		return fence + " " + s + " " + fence
	}
	return fence + s + fence
}

// inline is code for a command line, clipped.
func inline(s string) string {
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return code(s)
}

// cell renders s for a table cell.
func cell(s string) string {
	return strings.ReplaceAll(mdEscape(oneLine(s)), "|", `\|`)
}

// mdEscape keeps text from being read as Markdown markup.
func mdEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune("\\`*_[]<>#|", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func plural(n int64, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// quoteArgv renders argv as a shell would read it back.
func quoteArgv(argv []string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = shellword.Quote(a)
	}
	return out
}
