package executor

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/shellword"
)

// ReportOptions say what runbook report reads.
type ReportOptions struct {
	// StatePath is the run's state file (required).
	StatePath string
	// LogPath is the audit log the run appended to; "" reports from the state
	// alone.
	LogPath string
	// MaxStatements bounds the generated statements listed per step (the rest
	// are counted); 0 means 10.
	MaxStatements int
	// MaxOutput bounds the lines of a failed command's stderr shown; 0 means 10.
	MaxOutput int
}

// Report is a run told for a change ticket: the state's final word on every
// step, and the audit log's account of every session (run.start … run.end) of
// the state's run id.
type Report struct {
	Status   *Status
	Servers  map[string]Server
	Secrets  []string
	Approved map[string]Approve
	LogPath  string
	Verify   *VerifyResult
	Sessions []*ReportSession
	// LogLines counts the log lines of this run (other runs' lines are not
	// used).
	LogLines int
	opts     ReportOptions
	pending  []string // notes for the next session
}

// ReportSession is one process's part of the run: from its run.start to its
// run.end (if it got there).
type ReportSession struct {
	N           int
	FirstLine   int
	LastLine    int
	Resume      bool
	Operator    string
	Host        string
	Version     string
	Ticket      string
	Digest      string
	Runbook     string
	Params      map[string]string
	Started     time.Time
	Ended       time.Time
	Outcome     string // "" when the session has no run.end
	Error       string
	Duration    time.Duration
	Steps       []*ReportStep
	Notes       []string // run-level events: paused, interrupted, connections, torn log line
	stepByID    map[string]*ReportStep
	hasRunStart bool
}

// ReportStep is what one step did in one session.
type ReportStep struct {
	ID       string
	Kind     string
	Title    string
	Status   string // from step.end; skipped; or what stopped it
	Attempts int
	Duration time.Duration
	HasDur   bool
	Error    string
	Items    []reportItem
	// generated statements are counted, and listed up to MaxStatements.
	genListed, genTotal int
	genRows             int64
	genOf               int64
	// commands started and not yet exited, by stage: argv, the last stderr
	// lines and their count.
	argv    map[string]string
	stderr  map[string][]string
	stderrN map[string]int
	stages  int
}

// reportItem is one line of a step's account (a Markdown list item, and an
// optional block below it).
type reportItem struct {
	text  string
	block string
	lang  string
}

// event is one log line, decoded.
type event map[string]any

func (e event) str(k string) string {
	switch v := e[k].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	case nil:
		return ""
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

func (e event) num(k string) (float64, bool) {
	switch v := e[k].(type) {
	case json.Number:
		f, err := v.Float64()
		return f, err == nil
	case string:
		f, err := strconv.ParseFloat(v, 64)
		return f, err == nil
	}
	return 0, false
}

func (e event) int(k string) (int64, bool) {
	f, ok := e.num(k)
	return int64(f), ok
}

// dur reads a zerolog duration (milliseconds, a float) or a Go duration string.
func (e event) dur(k string) (time.Duration, bool) {
	if s, ok := e[k].(string); ok {
		d, err := time.ParseDuration(s)
		return d, err == nil
	}
	f, ok := e.num(k)
	return time.Duration(f * float64(time.Millisecond)), ok
}

func (e event) time(k string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, e.str(k))
	return t
}

func (e event) strs(k string) []string {
	list, _ := e[k].([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		out = append(out, event{"x": x}.str("x"))
	}
	return out
}

// BuildReport reads a run's state and, when given, its audit log.
func BuildReport(o ReportOptions) (*Report, error) {
	if o.MaxStatements <= 0 {
		o.MaxStatements = 10
	}
	if o.MaxOutput <= 0 {
		o.MaxOutput = 10
	}
	st, err := ReadStatus(o.StatePath)
	if err != nil {
		return nil, err
	}
	r := &Report{Status: st, LogPath: o.LogPath, opts: o}
	if full, err := loadState(o.StatePath); err == nil && full != nil {
		r.Servers, r.Secrets, r.Approved = full.Servers, full.Secrets, full.Approved
	}
	if o.LogPath == "" {
		return r, nil
	}
	res, verr := VerifyLog(o.LogPath)
	if verr != nil && res.Bad == nil {
		return nil, verr // unreadable
	}
	r.Verify = &res
	if err := r.readLog(); err != nil {
		return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("audit log %s: %w", o.LogPath, err))
	}
	return r, nil
}

// readLog collects the sessions of the state's run id.
func (r *Report) readLog() error {
	f, err := os.Open(r.LogPath)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var cur *ReportSession
	lineNo := 0
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			lineNo++
			if ev := decodeEvent(line); ev != nil && ev.str("run_id") == r.Status.RunID {
				r.LogLines++
				cur = r.add(cur, ev, lineNo)
			}
		}
		if errors.Is(err, io.EOF) {
			r.finish()
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// finish reports the commands whose exit the log does not hold: the process
// stopped while they ran.
func (r *Report) finish() {
	if len(r.pending) > 0 && len(r.Sessions) > 0 {
		last := r.Sessions[len(r.Sessions)-1]
		last.Notes = append(last.Notes, r.pending...)
	}
	for _, s := range r.Sessions {
		for _, st := range s.Steps {
			for _, stage := range sortedKeys(st.argv) {
				st.Items = append(st.Items, reportItem{text: fmt.Sprintf("command %s → no exit recorded", inline(st.argv[stage]))})
			}
			st.argv = nil
		}
	}
}

func decodeEvent(line []byte) event {
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	var ev event
	if d.Decode(&ev) != nil {
		return nil
	}
	return ev
}

// add files one event of the run into the report.
func (r *Report) add(cur *ReportSession, ev event, line int) *ReportSession {
	name := ev.str("event")
	if name == EventTruncated {
		// Written as a process opens the log, before its run.start: it belongs
		// to the session that follows.
		r.pending = append(r.pending, fmt.Sprintf("the audit log ended in a torn line (%s bytes: a write cut short) when this session began; it is kept, and recorded at line %d",
			ev.str("torn_bytes"), line))
		return cur
	}
	if cur == nil || name == "run.start" {
		cur = &ReportSession{N: len(r.Sessions) + 1, FirstLine: line, stepByID: map[string]*ReportStep{}, Notes: r.pending}
		r.pending = nil
		r.Sessions = append(r.Sessions, cur)
	}
	cur.LastLine = line
	s := cur
	switch name {
	case "run.start":
		s.hasRunStart = true
		s.Operator, s.Host, s.Version, s.Ticket = ev.str("operator"), ev.str("host"), ev.str("version"), ev.str("ticket")
		s.Runbook, s.Digest = ev.str("runbook"), ev.str("runbook_digest")
		s.Resume = ev.str("resume") == "true"
		s.Started = ev.time("time")
		if p, ok := ev["params"].(map[string]any); ok {
			s.Params = map[string]string{}
			for k, v := range p {
				s.Params[k] = event{"v": v}.str("v")
			}
		}
		return cur
	case "run.end":
		s.Outcome, s.Error, s.Ended = ev.str("outcome"), ev.str("error"), ev.time("time")
		s.Duration, _ = ev.dur("duration")
		return cur
	case "conn.open":
		s.Notes = append(s.Notes, fmt.Sprintf("connected %s: %s as %s on %s:%s, PostgreSQL %s (system identifier %s)",
			code(ev.str("conn")), code(ev.str("database")), code(ev.str("user")), ev.str("host"), ev.str("port"),
			ev.str("server_version"), ev.str("system_identifier")))
		return cur
	case "run.paused":
		s.Notes = append(s.Notes, fmt.Sprintf("paused at step %s: approval required (resume with `--approve %s`)", code(ev.str("step")), ev.str("step")))
	case "run.interrupted":
		s.Notes = append(s.Notes, fmt.Sprintf("interrupted (signal) during step %s; clean-up (always) steps ran", code(ev.str("step"))))
	}
	id := ev.str("step")
	if id == "" {
		if name != "run.paused" && name != "run.interrupted" {
			s.Notes = append(s.Notes, fmt.Sprintf("%s: %s", code(name), ev.str("message")))
		}
		return cur
	}
	st := s.stepByID[id]
	if st == nil {
		st = &ReportStep{ID: id}
		s.stepByID[id] = st
		s.Steps = append(s.Steps, st)
	}
	r.addStepEvent(st, name, ev)
	return cur
}

func (r *Report) addStepEvent(st *ReportStep, name string, ev event) {
	item := func(text string) { st.Items = append(st.Items, reportItem{text: text}) }
	switch name {
	case "step.start":
		st.Kind, st.Title, st.Attempts = ev.str("kind"), ev.str("title"), st.Attempts+1
	case "step.skip":
		st.Status = Skipped
		item(fmt.Sprintf("skipped: %s is false", code(ev.str("when"))))
	case "step.retry":
		st.Attempts++
		d, _ := ev.dur("delay")
		item(fmt.Sprintf("attempt %s failed, retried after %s: %s", ev.str("attempt"), fmtDur(d), oneLine(ev.str("error"))))
	case "step.end":
		st.Status, st.Error = ev.str("status"), ev.str("error")
		st.Duration, st.HasDur = ev.dur("duration")
	case "step.failure_ignored":
		item("the failure is ignored (`on_failure: continue`)")
	case "step.settled":
		item(fmt.Sprintf("settled after an interruption (transaction %s): %s", ev.str("xid"), ev.str("message")))
	case "tx.terminated":
		item(fmt.Sprintf("ended the dead run's open transaction (backend pid %s)", ev.str("backend_pid")))
	case "run.paused":
		if st.Status == "" {
			st.Status = "waiting for approval"
		}
	case "run.interrupted":
		if st.Status == "" {
			st.Status = "interrupted"
		}
	case "cmd.start":
		// cmd.exit tells the command's story, with the argv kept from here.
		if st.argv == nil {
			st.argv, st.stderr, st.stderrN = map[string]string{}, map[string][]string{}, map[string]int{}
		}
		if len(st.argv) == 0 {
			st.stages = 0
		}
		stage := ev.str("stage")
		st.argv[stage] = strings.Join(quoteArgv(ev.strs("argv")), " ")
		if n, err := strconv.Atoi(stage); err == nil {
			st.stages = max(st.stages, n)
		}
	case "cmd.exit":
		r.cmdExit(st, ev)
	case "cmd.stderr":
		if st.stderr != nil {
			stage := ev.str("stage")
			st.stderrN[stage]++
			lines := append(st.stderr[stage], ev.str("message"))
			if len(lines) > r.opts.MaxOutput {
				lines = lines[1:]
			}
			st.stderr[stage] = lines
		}
	case "cmd.stdout":
	case "sql.statement":
		text := "SQL"
		if n := ev.str("statement"); n != "" {
			text += " " + n
		}
		var facts []string
		if rows, ok := ev.int("rows"); ok {
			facts = append(facts, plural(rows, "row"))
		}
		if d, ok := ev.dur("duration"); ok {
			facts = append(facts, fmtDur(d))
		}
		if len(facts) > 0 {
			text += " (" + strings.Join(facts, ", ") + ")"
		}
		st.Items = append(st.Items, sqlItem(text, ev.str("sql")))
	case "sql.error":
		text := fmt.Sprintf("**error** SQLSTATE %s: %s", ev.str("sqlstate"), oneLine(ev.str("message")))
		for _, k := range []string{"detail", "hint"} {
			if v := ev.str(k); v != "" {
				text += fmt.Sprintf("; %s: %s", k, oneLine(v))
			}
		}
		st.Items = append(st.Items, sqlItem(text, ev.str("sql")))
	case "sql.notice":
		item(fmt.Sprintf("notice (%s): %s", ev.str("severity"), oneLine(ev.str("message"))))
	case "sql.empty":
		item("the script has no statements")
	case "generate.query":
		st.genOf, _ = ev.int("statements")
		item(fmt.Sprintf("the generator query produced %s (list frozen before the first ran)", plural(mustInt(ev, "statements"), "statement")))
	case "generate.resume":
		st.genOf, _ = ev.int("statements")
		item(fmt.Sprintf("resumed with the frozen list: %s of %s already done", ev.str("done"), ev.str("statements")))
	case "generate.rerun":
		item(fmt.Sprintf("a batch rolled back: statements %s–%s ran again in one transaction", ev.str("from"), ev.str("to")))
	case "generate.autocommit":
		item(fmt.Sprintf("statement %s cannot run in a transaction block: it ran on its own in autocommit", ev.str("index")))
	case "generate.statement":
		st.genTotal++
		if rows, ok := ev.int("rows"); ok {
			st.genRows += rows
		}
		if st.genListed < r.opts.MaxStatements {
			st.genListed++
			text := "generated"
			if i, ok := ev.int("index"); ok {
				text += fmt.Sprintf(" %d", i+1)
				if st.genOf > 0 {
					text += fmt.Sprintf("/%d", st.genOf)
				}
			}
			if rows, ok := ev.int("rows"); ok {
				text += " (" + plural(rows, "row") + ")"
			}
			st.Items = append(st.Items, sqlItem(text, ev.str("sql")))
		}
	case "assert.result":
		text := fmt.Sprintf("assert %s: **%s**", code(ev.str("expr")), ev.str("outcome"))
		if row, ok := ev["row"]; ok && row != nil {
			b, _ := json.Marshal(row)
			text += " — row " + code(string(b))
		}
		if d, ok := ev.int("differing"); ok {
			text += fmt.Sprintf(" — %s differ", plural(d, "row"))
		}
		if e := ev.str("error"); e != "" {
			text += ": " + oneLine(e)
		}
		item(text)
	case "confirm.approved":
		at := ev.time("at")
		text := fmt.Sprintf("approved by **%s** (%s) at %s", ev.str("by"), code(ev.str("how")), fmtTime(at))
		st.Items = append(st.Items, reportItem{text: text, block: ev.str("prompt"), lang: "quote"})
	}
}

// cmdExit reports a stage's exit with its argv and, when it failed, its last
// stderr lines.
func (r *Report) cmdExit(st *ReportStep, ev event) {
	stage := ev.str("stage")
	argv, stderr, nerr := st.argv[stage], st.stderr[stage], st.stderrN[stage]
	delete(st.argv, stage)
	delete(st.stderr, stage)
	delete(st.stderrN, stage)
	code, _ := ev.int("exit_code")
	var outcome string
	switch {
	case ev.str("start_error") != "":
		outcome = "could not start: " + oneLine(ev.str("start_error"))
	case ev.str("signal") != "":
		outcome = "killed by " + ev.str("signal")
	default:
		outcome = fmt.Sprintf("exit %d", code)
	}
	if d, ok := ev.dur("duration"); ok {
		outcome += ", " + fmtDur(d)
	}
	failed := code != 0 || ev.str("signal") != "" || ev.str("start_error") != ""
	text := fmt.Sprintf("command %s → %s", inline(argv), outcome)
	if st.stages > 1 {
		text = fmt.Sprintf("stage %s: %s", stage, text)
	}
	it := reportItem{text: text}
	if failed && len(stderr) > 0 {
		if nerr > len(stderr) {
			it.text += fmt.Sprintf("; last %d of %d stderr lines:", len(stderr), nerr)
		} else {
			it.text += "; stderr:"
		}
		it.block, it.lang = strings.Join(stderr, "\n"), "text"
	}
	st.Items = append(st.Items, it)
}

func mustInt(ev event, k string) int64 {
	n, _ := ev.int(k)
	return n
}

func sqlItem(text, sql string) reportItem {
	sql = strings.TrimSpace(sql)
	if !strings.Contains(sql, "\n") && len(sql) <= 160 {
		return reportItem{text: text + ": " + code(sql)}
	}
	return reportItem{text: text + ":", block: sql, lang: "sql"}
}

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
	for _, s := range r.Sessions {
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
		r.writeSessions(&b)
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

// tickets are the tickets the sessions named, in order, without repeats.
func (r *Report) tickets() []string {
	var out []string
	for _, s := range r.Sessions {
		if s.Ticket != "" && !slices.Contains(out, s.Ticket) {
			out = append(out, s.Ticket)
		}
	}
	return out
}

func (r *Report) firstStart() *ReportSession {
	for _, s := range r.Sessions {
		if s.hasRunStart {
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

func (r *Report) writeParams(b *bytes.Buffer, first *ReportSession) {
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

func (r *Report) writeSessions(b *bytes.Buffer) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("## Sessions\n\n")
	if len(r.Sessions) == 0 {
		p("The audit log holds no session of this run.\n")
		return
	}
	index := map[string]int{}
	for i, s := range r.Status.Steps {
		index[s.ID] = i + 1
	}
	for _, s := range r.Sessions {
		kind := "run"
		if s.Resume {
			kind = "resume"
		}
		if !s.hasRunStart {
			kind = "events without run.start"
		}
		p("### Session %d: %s", s.N, kind)
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
			p("- %s\n", n)
		}
		if len(s.Notes) > 0 {
			p("\n")
		}
		for _, st := range s.Steps {
			status := st.Status
			if status == "" {
				status = "no step.end (the process stopped inside the step)"
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
			for _, it := range st.Items {
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
			if st.genTotal > st.genListed {
				p("- … and %d more generated statements\n", st.genTotal-st.genListed)
			}
			if st.genTotal > 0 {
				p("- generated statements executed: %d (%s)\n", st.genTotal, plural(st.genRows, "row"))
			}
			if st.Error != "" {
				p("- **error:**\n")
				writeBlock(b, "  ", "text", st.Error)
			}
			if len(st.Items) > 0 || st.genTotal > 0 || st.Error != "" {
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
