package executor

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The HTML rendering of a Report (built in report.go): one self-contained
// file — inline CSS, a timeline drawn as inline SVG by the code below (it
// prints, and needs no script), a few lines of script for hover details —
// with everything the Markdown report says. Every value goes through
// html/template, which escapes it for where it lands.

//go:embed report_html/report.html.tmpl
var htmlReportTemplate string

//go:embed report_html/report.css
var htmlReportCSS string

//go:embed report_html/report.js
var htmlReportJS string

var htmlReport = template.Must(template.New("report").Funcs(template.FuncMap{
	"f":   func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
	"add": func(a, b float64) float64 { return a + b },
	"sub": func(a, b float64) float64 { return a - b },
}).Parse(htmlReportTemplate))

// WriteHTML renders the report as one HTML document.
func (r *Report) WriteHTML(w io.Writer) error {
	v := r.htmlView()
	var b bytes.Buffer
	if err := htmlReport.Execute(&b, v); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}

// seg is a piece of a line of text: plain, code, or strong.
type seg struct {
	Text         string
	Code, Strong bool
}

type htmlFact struct {
	Label string
	Value []seg
}

type htmlAudit struct {
	Given      bool
	Path       string
	Intact     bool
	Lines, Seq uint64
	Head       string
	BadLine    int
	BadReason  string
	Tears      int
	NoEvents   bool
	RunID      string
}

type htmlServer struct{ Name, Database, Version, SystemID string }

type htmlStepRow struct {
	N                              int
	ID, Status, Attempts, Duration string
	StatusClass                    string
	Anchor                         string // the step's first account in the invocations
	Error                          string // the error of a failed step
}

type htmlEntry struct {
	Text  []seg
	Block string
	Lang  string
}

type htmlSessStep struct {
	Anchor, Index, ID, Kind, Status, StatusClass, Title string
	Entries                                             []htmlEntry
	Error                                               string
}

type htmlInvocation struct {
	N                     int
	Kind, Operator, Facts string
	Outcome, OutcomeClass string
	Digest, Ticket        string
	Notes                 [][]seg
	Steps                 []htmlSessStep
	Error                 string
}

type htmlApproval struct{ Step, By, How, At string }

type htmlView struct {
	Title, Outcome, OutcomeClass string
	Facts                        []htmlFact
	Audit                        htmlAudit
	Timeline                     *timeline
	Params                       [][2]string
	Servers                      []htmlServer
	Steps                        []htmlStepRow
	HasLog                       bool
	Invocations                  []htmlInvocation
	Approvals                    []htmlApproval
	CSS                          template.CSS
	JS                           template.JS
}

func (r *Report) htmlView() *htmlView {
	st := r.Status
	v := &htmlView{Title: st.Runbook.Name, Outcome: st.Outcome, OutcomeClass: statusClass(st.Outcome),
		HasLog: r.LogPath != "", CSS: template.CSS(htmlReportCSS), JS: template.JS(htmlReportJS)}
	if st.Running {
		v.Outcome += " (a runbook process is running it now)"
	}
	fact := func(label string, value ...seg) { v.Facts = append(v.Facts, htmlFact{Label: label, Value: value}) }
	plain := func(s string) seg { return seg{Text: s} }
	mono := func(s string) seg { return seg{Text: s, Code: true} }
	fact("Run", mono(st.RunID))
	fact("Runbook", mono(st.Runbook.File), plain(" (digest "), mono(st.Runbook.Digest), plain(" when the run started)"))
	first := r.firstStart()
	operators := []string{st.Operator}
	for _, s := range r.Invocations {
		if s.Operator != "" && !slices.Contains(operators, s.Operator) {
			operators = append(operators, s.Operator)
		}
	}
	fact("Operator", plain(strings.Join(operators, ", ")))
	if first != nil {
		if first.Host != "" {
			fact("Host", plain(first.Host))
		}
		if first.Version != "" {
			fact("runbook version", plain(first.Version))
		}
	}
	if tickets := r.tickets(); len(tickets) > 0 {
		fact("Ticket", plain(strings.Join(tickets, ", ")))
	}
	if r.Plan != "" {
		fact("Plan", mono(r.Plan+" (sealed plan "+r.PlanFile+")"))
	}
	fact("Started", plain(fmtTime(st.Started)))
	if st.Ended != nil {
		fact("Ended", plain(fmt.Sprintf("%s (%s after the start)", fmtTime(*st.Ended), fmtDur(st.Ended.Sub(st.Started)))))
	}
	fact("State", mono(st.State))

	v.Audit = htmlAudit{Given: r.LogPath != "", Path: r.LogPath, NoEvents: r.LogPath != "" && r.LogLines == 0, RunID: st.RunID}
	if vr := r.Verify; vr != nil {
		v.Audit.Intact, v.Audit.Lines, v.Audit.Seq, v.Audit.Head, v.Audit.Tears = vr.Bad == nil, uint64(vr.Lines), vr.Seq, vr.Head, len(vr.Tears)
		if vr.Bad != nil {
			v.Audit.BadLine, v.Audit.BadReason = vr.Bad.Line, vr.Bad.Reason
		}
	}

	params := map[string]string{}
	for k, val := range st.Params {
		params[k] = val
	}
	for _, k := range r.Secrets {
		params[k] = "***"
	}
	if first != nil && first.Params != nil {
		params = first.Params // as logged: masked
	}
	for _, k := range sortedKeys(params) {
		v.Params = append(v.Params, [2]string{k, params[k]})
	}
	for _, name := range sortedKeys(r.Servers) {
		s := r.Servers[name]
		v.Servers = append(v.Servers, htmlServer{name, s.Database, s.Version, s.SystemID})
	}

	index := map[string]int{}
	anchors := map[string]string{}
	for i, s := range st.Steps {
		index[s.ID] = i + 1
	}
	for _, s := range r.Invocations {
		for _, rs := range s.Steps {
			if _, ok := anchors[rs.ID]; !ok {
				anchors[rs.ID] = stepAnchor(s.N, index[rs.ID])
			}
		}
	}
	for i, s := range st.Steps {
		row := htmlStepRow{N: i + 1, ID: s.ID, Status: s.Status, StatusClass: statusClass(s.Status), Anchor: anchors[s.ID]}
		if s.Started != nil && s.Ended != nil {
			row.Duration = fmtDur(s.Ended.Sub(*s.Started))
		}
		if s.Attempts > 0 {
			row.Attempts = strconv.Itoa(s.Attempts)
		}
		if s.Error != "" && s.Status == Failed {
			row.Error = s.Error
		}
		v.Steps = append(v.Steps, row)
	}

	if r.LogPath != "" {
		v.Invocations = r.htmlInvocations(index)
	} else {
		for _, id := range sortedKeys(r.Approved) {
			a := r.Approved[id]
			v.Approvals = append(v.Approvals, htmlApproval{id, a.By, a.How, fmtTime(a.At)})
		}
	}
	v.Timeline = r.timeline(index)
	return v
}

func (r *Report) htmlInvocations(index map[string]int) []htmlInvocation {
	var out []htmlInvocation
	for _, s := range r.Invocations {
		hs := htmlInvocation{N: s.N, Kind: "run", Operator: s.Operator, Outcome: s.Outcome, OutcomeClass: statusClass(s.Outcome), Error: s.Error}
		if s.Resume {
			hs.Kind = "resume"
		}
		if !s.HasRunStart {
			hs.Kind = "events without run.start"
		}
		var facts []string
		if !s.Started.IsZero() {
			facts = append(facts, "started "+fmtTime(s.Started))
		}
		if s.Outcome != "" {
			facts = append(facts, fmt.Sprintf("ended %s after %s", fmtTime(s.Ended), fmtDur(s.Duration)))
		} else {
			hs.Outcome, hs.OutcomeClass = "no run.end: the process stopped without ending the run (killed, crashed, or still running)", "stopped"
		}
		facts = append(facts, fmt.Sprintf("log lines %d–%d", s.FirstLine, s.LastLine))
		hs.Facts = strings.Join(facts, "; ")
		if s.Digest != "" && s.Digest != r.Status.Runbook.Digest {
			hs.Digest = s.Digest
		}
		if s.Ticket != "" && len(r.tickets()) > 1 {
			hs.Ticket = s.Ticket
		}
		for _, n := range s.Notes {
			hs.Notes = append(hs.Notes, parseInline(noteText(n)))
		}
		for _, st := range s.Steps {
			ss := htmlSessStep{Anchor: stepAnchor(s.N, index[st.ID]), Index: strconv.Itoa(index[st.ID]), ID: st.ID, Kind: st.Kind, Error: st.Error}
			status := st.Status
			if status == "" {
				status = "no step.end (the process stopped inside the step)"
			}
			ss.StatusClass = statusClass(st.Status)
			if st.HasDur {
				status += " in " + fmtDur(st.Duration)
			}
			if st.Attempts > 1 {
				status += fmt.Sprintf(", %d attempts", st.Attempts)
			}
			ss.Status = status
			if st.Title != "" && st.Title != st.ID {
				ss.Title = st.Title
			}
			for _, e := range st.Entries {
				it := entryItem(e)
				ss.Entries = append(ss.Entries, htmlEntry{Text: parseInline(it.text), Block: it.block, Lang: it.lang})
			}
			if st.GenTotal > st.GenListed {
				ss.Entries = append(ss.Entries, htmlEntry{Text: []seg{{Text: fmt.Sprintf("… and %d more generated statements", st.GenTotal-st.GenListed)}}})
			}
			if st.GenTotal > 0 {
				ss.Entries = append(ss.Entries, htmlEntry{Text: []seg{{Text: fmt.Sprintf("generated statements executed: %d (%s)", st.GenTotal, plural(st.GenRows, "row"))}}})
			}
			for _, c := range st.Copied {
				ss.Entries = append(ss.Entries, htmlEntry{Text: []seg{{Text: fmt.Sprintf("%s: %s, %s, %s, COPY time %s",
					c.Table, plural(int64(c.Parts), "part"), plural(c.Rows, "row"), plural(c.Bytes, "byte"), fmtDur(c.Busy))}}})
			}
			hs.Steps = append(hs.Steps, ss)
		}
		out = append(out, hs)
	}
	return out
}

func stepAnchor(invocation, index int) string { return fmt.Sprintf("i%d-step%d", invocation, index) }

// statusClass is the CSS class of an outcome or a step's status.
func statusClass(s string) string {
	switch s {
	case Succeeded:
		return "ok"
	case Failed:
		return "failed"
	case Skipped:
		return "skipped"
	case "":
		return "stopped"
	}
	switch {
	case strings.Contains(s, "approval") || s == "paused":
		return "paused"
	case strings.Contains(s, "interrupt"):
		return "interrupted"
	}
	return "other"
}

// parseInline reads back the inline Markdown that the Markdown report's
// lines use (code spans, strong emphasis, backslash escapes), so that a
// line reads the same in both reports.
func parseInline(s string) []seg {
	var out []seg
	var cur strings.Builder
	strong := false
	flush := func() {
		if cur.Len() > 0 {
			out = append(out, seg{Text: cur.String(), Strong: strong})
			cur.Reset()
		}
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && strings.IndexByte("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", s[i+1]) >= 0:
			cur.WriteByte(s[i+1])
			i += 2
		case c == '`':
			n := 0
			for i+n < len(s) && s[i+n] == '`' {
				n++
			}
			end := closingRun(s, i+n, n)
			if end < 0 {
				cur.WriteString(s[i : i+n])
				i += n
				continue
			}
			flush()
			text := s[i+n : end]
			if len(text) >= 2 && text[0] == ' ' && text[len(text)-1] == ' ' && strings.Trim(text, " ") != "" {
				text = text[1 : len(text)-1]
			}
			out = append(out, seg{Text: text, Code: true, Strong: strong})
			i = end + n
		case strings.HasPrefix(s[i:], "**") && (strong || strings.Contains(s[i+2:], "**")):
			flush()
			strong = !strong
			i += 2
		default:
			cur.WriteByte(c)
			i++
		}
	}
	flush()
	return out
}

// closingRun finds, from i on, a run of exactly n backticks; -1 if none.
func closingRun(s string, i, n int) int {
	for i < len(s) {
		if s[i] != '`' {
			i++
			continue
		}
		j := i
		for j < len(s) && s[j] == '`' {
			j++
		}
		if j-i == n {
			return i
		}
		i = j
	}
	return -1
}

// The timeline: one band per invocation (the run, each
// resume) laid side by side, each as wide as its share of the time the
// invocations took (with a floor, so that a short one stays visible); the idle
// time between two invocations is a break in the axis, labelled. A row per
// step of the runbook, a bar per attempt, a thinner row (a lane) per part
// of a step's parallel work; marks for approvals, failures, retries,
// skips; a line where an invocation paused, was interrupted or stopped.

const (
	tlWidth  = 1200.0
	tlLabelW = 210.0 // the step names' column
	tlPlotX0 = 220.0
	tlPlotX1 = 1185.0
	tlTop    = 48.0 // the invocations' header
	tlRowH   = 24.0
	tlLaneH  = 16.0
	tlGapW   = 46.0
	// tlNamedLanes is the most parts of a step that get a lane each.
	tlNamedLanes = 12
)

// laneKey is a span of a part of a step.
type laneKey struct {
	step, part string
	span       int
}

// pack shares the lanes of the step's parts in this invocation: each span goes
// to the first lane free when it begins. It returns the number of lanes.
func (s *tlInvocation) pack(id string) int {
	type item struct {
		key        laneKey
		start, end time.Time
	}
	var items []item
	for _, st := range s.steps {
		if st.ID != id {
			continue
		}
		for _, p := range st.Parts {
			for j, sp := range p.Spans {
				end := sp.End
				if end.IsZero() {
					end = s.end
					if !st.End.IsZero() {
						end = st.End
					}
				}
				items = append(items, item{laneKey{id, p.Name, j}, sp.Start, end})
			}
		}
	}
	slices.SortStableFunc(items, func(a, b item) int { return a.start.Compare(b.start) })
	if s.lane == nil {
		s.lane = map[laneKey]int{}
	}
	var free []time.Time // when each lane is free again
	for _, it := range items {
		k := slices.IndexFunc(free, func(t time.Time) bool { return !t.After(it.start) })
		if k < 0 {
			k = len(free)
			free = append(free, time.Time{})
		}
		free[k] = it.end
		s.lane[it.key] = k
	}
	return len(free)
}

type timeline struct {
	Width, Height, AxisY, PlotX0, PlotX1 float64
	Invocations                          []tlInvocation
	Gaps                                 []tlGap
	Ticks                                []tlTick
	Rows                                 []tlRow
	Bars                                 []tlBar
	Marks                                []tlMark
	Lines                                []tlLine
	FromState                            bool
}

type tlInvocation struct {
	// lane is the shared lane of a part's span (see pack).
	lane         map[laneKey]int
	N            int
	X, W         float64
	Label, Sub   string
	EndClass     string
	Title        string
	start, end   time.Time
	steps        []*ReportStep
	notes        []ReportNote
	outcome      string
	hasEndRecord bool
}

type tlGap struct {
	X, W, Mid float64
	Label     string
	Zigzag    string
}

type tlTick struct {
	X     float64
	Label string
}

type tlRow struct {
	Y, H, TextY float64
	Label       string
	Title       string
	Lane        bool
	Stripe      bool
	Step        string
}

type tlBar struct {
	X, Y, W, H float64
	Class      string
	Step, Part string
	Invocation int
	Title      string
	Href       string
}

type tlMark struct {
	X, Y  float64
	Kind  string
	Shape string // "circle" or a path's d
	Step  string
	Title string
}

type tlLine struct {
	X, Y1, Y2 float64
	Class     string
	Label     string
	LabelY    float64
	Title     string
}

// timeline lays out the report's timeline; nil when there is nothing to
// draw.
func (r *Report) timeline(index map[string]int) *timeline {
	tl := &timeline{Width: tlWidth, PlotX0: tlPlotX0, PlotX1: tlPlotX1}
	for _, s := range r.Invocations {
		ts := tlInvocation{N: s.N, start: s.Started, end: s.Ended, steps: s.Steps, notes: s.Notes, outcome: s.Outcome, hasEndRecord: s.Outcome != ""}
		if ts.start.IsZero() {
			ts.start = s.FirstTime
		}
		if s.Outcome == "" {
			ts.end = s.LastTime
		}
		kind := "run"
		if s.Resume {
			kind = "resume"
		}
		if !s.HasRunStart {
			kind = "events"
		}
		ts.Label = fmt.Sprintf("#%d %s", s.N, kind)
		if s.Operator != "" {
			ts.Label += " · " + s.Operator
		}
		tl.Invocations = append(tl.Invocations, ts)
	}
	if len(tl.Invocations) == 0 {
		// No audit log: the state's times, as one band.
		ts, ok := r.stateInvocation()
		if !ok {
			return nil
		}
		tl.FromState = true
		tl.Invocations = append(tl.Invocations, ts)
	}

	// The bands' widths.
	n := float64(len(tl.Invocations))
	avail := tlPlotX1 - tlPlotX0 - tlGapW*(n-1)
	floor := math.Min(avail/n, math.Max(70, avail*0.1))
	var total float64
	for i := range tl.Invocations {
		s := &tl.Invocations[i]
		if !s.end.After(s.start) {
			s.end = s.start.Add(time.Millisecond)
		}
		total += float64(s.end.Sub(s.start))
	}
	x := tlPlotX0
	for i := range tl.Invocations {
		s := &tl.Invocations[i]
		s.X = x
		s.W = floor + (avail-floor*n)*float64(s.end.Sub(s.start))/total
		d := s.end.Sub(s.start)
		switch {
		case s.outcome != "":
			s.Sub = s.outcome + " after " + fmtDur(d)
			s.EndClass = statusClass(s.outcome)
		case tl.FromState:
			s.Sub = fmtDur(d)
			s.EndClass = "other"
		default:
			s.Sub = "stopped: no run.end"
			s.EndClass = "stopped"
		}
		s.Title = fmt.Sprintf("%s: %s – %s (%s)", s.Label, fmtTime(s.start), fmtTime(s.end), s.Sub)
		// A narrow band shows what fits (about 6.5 pixels a character);
		// its tooltip tells all.
		fit := int((s.W - 6) / 6.5)
		if len([]rune(s.Label)) > fit {
			s.Label = clip(s.Label, max(fit, 3))
		}
		s.Sub = clip(s.Sub, max(fit, 3))
		x += s.W
		if i+1 < len(tl.Invocations) {
			next := tl.Invocations[i+1].start
			if tl.Invocations[i+1].start.IsZero() {
				next = tl.Invocations[i+1].end
			}
			g := tlGap{X: x, W: tlGapW, Mid: x + tlGapW/2}
			if idle := next.Sub(s.end); idle > 0 {
				g.Label = "+" + fmtIdle(idle)
			}
			tl.Gaps = append(tl.Gaps, g)
			x += tlGapW
		}
	}

	// The rows: every step of the runbook (those of the log that the state
	// lacks after them), each followed by its lanes.
	var ids []string
	seen := map[string]bool{}
	for _, s := range r.Status.Steps {
		ids = append(ids, s.ID)
		seen[s.ID] = true
	}
	lanes := map[string][]string{}
	for _, s := range tl.Invocations {
		for _, st := range s.steps {
			if !seen[st.ID] {
				ids = append(ids, st.ID)
				seen[st.ID] = true
			}
			for _, p := range st.Parts {
				if !slices.Contains(lanes[st.ID], p.Name) {
					lanes[st.ID] = append(lanes[st.ID], p.Name)
				}
			}
		}
	}
	rowY := map[string]float64{}
	y := tlTop
	stripe := false
	for _, id := range ids {
		label := id
		if i := index[id]; i > 0 {
			label = fmt.Sprintf("%d. %s", i, id)
		}
		rowY[id] = y
		tl.Rows = append(tl.Rows, tlRow{Y: y, H: tlRowH, TextY: y + tlRowH/2 + 4, Label: clip(label, 30), Title: label, Stripe: stripe, Step: id})
		y += tlRowH
		if n := len(lanes[id]); n > tlNamedLanes {
			// Too many parts for a lane each: the parts share lanes, each
			// taking the first lane free when it begins, so that there are
			// as many lanes as parts ran at once.
			count := 0
			for i := range tl.Invocations {
				count = max(count, tl.Invocations[i].pack(id))
			}
			for k := 0; k < count; k++ {
				rowY[fmt.Sprintf("%s\x00#%d", id, k)] = y
				tl.Rows = append(tl.Rows, tlRow{Y: y, H: tlLaneH, TextY: y + tlLaneH/2 + 3.5, Label: fmt.Sprintf("lane %d", k+1),
					Title: fmt.Sprintf("%s: %d parts, %d at most at once", id, n, count), Lane: true, Stripe: stripe, Step: id})
				y += tlLaneH
			}
		} else {
			for _, p := range lanes[id] {
				rowY[id+"\x00"+p] = y
				tl.Rows = append(tl.Rows, tlRow{Y: y, H: tlLaneH, TextY: y + tlLaneH/2 + 3.5, Label: clip(p, 30), Title: id + ": " + p, Lane: true, Stripe: stripe, Step: id})
				y += tlLaneH
			}
		}
		stripe = !stripe
	}
	tl.AxisY = y + 4
	tl.Height = tl.AxisY + 52

	for i := range tl.Gaps {
		tl.Gaps[i].Zigzag = zigzag(tl.Gaps[i].Mid, tlTop-6, tl.AxisY)
	}
	for _, s := range tl.Invocations {
		tl.layoutInvocation(s, rowY, index)
	}
	return tl
}

// stateInvocation is the band of a report without an audit log: the steps'
// times as the state has them.
func (r *Report) stateInvocation() (tlInvocation, bool) {
	ts := tlInvocation{N: 1, Label: "the run (from the state)", start: r.Status.Started}
	for _, s := range r.Status.Steps {
		if s.Started == nil {
			continue
		}
		rs := &ReportStep{ID: s.ID, Status: s.Status, Start: *s.Started}
		sp := ReportSpan{Start: *s.Started, Failed: s.Status == Failed}
		if s.Ended != nil {
			sp.End, rs.End = *s.Ended, *s.Ended
			if s.Ended.After(ts.end) {
				ts.end = *s.Ended
			}
		}
		if s.Status == Skipped {
			rs.Marks = append(rs.Marks, ReportMark{Time: *s.Started, Kind: MarkSkip, Text: "skipped"})
		} else {
			rs.Spans = append(rs.Spans, sp)
		}
		if s.Started.After(ts.end) {
			ts.end = *s.Started
		}
		ts.steps = append(ts.steps, rs)
	}
	if r.Status.Ended != nil && r.Status.Ended.After(ts.end) {
		ts.end = *r.Status.Ended
	}
	ts.outcome = r.Status.Outcome
	if ts.outcome == "unfinished" {
		ts.outcome = ""
	}
	return ts, len(ts.steps) > 0 && !ts.start.IsZero()
}

// layoutInvocation draws one invocation's bars, marks, lines and ticks.
func (tl *timeline) layoutInvocation(s tlInvocation, rowY map[string]float64, index map[string]int) {
	span := float64(s.end.Sub(s.start))
	xAt := func(t time.Time) float64 {
		f := float64(t.Sub(s.start)) / span
		return s.X + math.Max(0, math.Min(1, f))*s.W
	}
	for _, st := range s.steps {
		y, ok := rowY[st.ID]
		if !ok {
			continue
		}
		href := ""
		if !tl.FromState {
			href = "#" + stepAnchor(s.N, index[st.ID])
		}
		for i, sp := range st.Spans {
			end, class := sp.End, "ok"
			switch {
			case sp.Failed && i < len(st.Spans)-1:
				class = "attempt-failed"
			case sp.Failed:
				class = "failed"
			case sp.Interrupted:
				class = "open"
			case sp.End.IsZero() && st.Status == "waiting for approval":
				class, end = "paused", s.end
			case sp.End.IsZero():
				class, end = "open", s.end
			}
			x0, x1 := xAt(sp.Start), xAt(end)
			word := barWord(class)
			if sp.Interrupted {
				word = "interrupted by a signal"
			}
			title := fmt.Sprintf("%s — attempt %d: %s, %s – %s", st.ID, i+1, word, fmtTime(sp.Start), fmtTime(end))
			if !sp.End.IsZero() {
				title += " (" + fmtDur(sp.End.Sub(sp.Start)) + ")"
			}
			tl.Bars = append(tl.Bars, tlBar{X: x0, Y: y + 4, W: math.Max(2, x1-x0), H: tlRowH - 8, Class: class,
				Step: st.ID, Invocation: s.N, Title: title, Href: href})
		}
		for _, p := range st.Parts {
			ly := rowY[st.ID+"\x00"+p.Name]
			for j, sp := range p.Spans {
				if k, ok := s.lane[laneKey{st.ID, p.Name, j}]; ok {
					ly = rowY[fmt.Sprintf("%s\x00#%d", st.ID, k)]
				}
				end, class := sp.End, "ok"
				switch {
				case sp.Failed:
					class = "failed"
				case sp.Interrupted:
					class = "open"
				case sp.End.IsZero():
					end, class = s.end, "open"
					if !st.End.IsZero() {
						end = st.End
					}
				}
				x0, x1 := xAt(sp.Start), xAt(end)
				title := fmt.Sprintf("%s / %s: %s, %s – %s", st.ID, p.Name, barWord(class), fmtTime(sp.Start), fmtTime(end))
				if !sp.End.IsZero() {
					title += " (" + fmtDur(sp.End.Sub(sp.Start)) + ")"
				}
				tl.Bars = append(tl.Bars, tlBar{X: x0, Y: ly + 3, W: math.Max(2, x1-x0), H: tlLaneH - 6, Class: class + " part",
					Step: st.ID, Part: p.Name, Invocation: s.N, Title: title, Href: href})
			}
		}
		for _, m := range st.Marks {
			my := y + tlRowH/2
			if m.Part != "" {
				if ly, ok := rowY[st.ID+"\x00"+m.Part]; ok {
					my = ly + tlLaneH/2
				}
			}
			if m.Kind == MarkPause || m.Kind == MarkInterrupt {
				continue // drawn as the invocation's lines
			}
			tl.Marks = append(tl.Marks, tlMark{X: xAt(m.Time), Y: my, Kind: string(m.Kind), Shape: markShape(m.Kind, xAt(m.Time), my),
				Step: st.ID, Title: fmt.Sprintf("%s at %s: %s", st.ID, fmtTimeMS(m.Time), m.Text)})
		}
	}
	for _, n := range s.notes {
		switch e := n.Event.(type) {
		case RunPaused:
			tl.Lines = append(tl.Lines, tlLine{X: xAt(n.Time), Y1: tlTop - 4, Y2: tl.AxisY, Class: "pause", Label: "paused", LabelY: tl.AxisY + 30,
				Title: fmt.Sprintf("paused at %s: step %s waits for approval", fmtTimeMS(n.Time), e.Step)})
		case RunInterrupted:
			tl.Lines = append(tl.Lines, tlLine{X: xAt(n.Time), Y1: tlTop - 4, Y2: tl.AxisY, Class: "interrupt", Label: "interrupted", LabelY: tl.AxisY + 30,
				Title: fmt.Sprintf("interrupted by a signal at %s during step %s", fmtTimeMS(n.Time), e.Step)})
		}
	}
	if !s.hasEndRecord && !tl.FromState {
		tl.Lines = append(tl.Lines, tlLine{X: s.X + s.W, Y1: tlTop - 4, Y2: tl.AxisY, Class: "stopped", Label: "stopped", LabelY: tl.AxisY + 30,
			Title: fmt.Sprintf("the process stopped without ending the run; last event at %s", fmtTimeMS(s.end))})
	}
	tl.ticks(s)
}

// ticks puts the invocation's axis ticks at round times.
func (tl *timeline) ticks(s tlInvocation) {
	d := s.end.Sub(s.start)
	most := math.Max(1, math.Floor(s.W/95))
	step := time.Duration(0)
	for _, c := range []time.Duration{time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
		20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
		time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
		time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour} {
		if float64(d)/float64(c) <= most {
			step = c
			break
		}
	}
	if step == 0 {
		step = 24 * time.Hour * time.Duration(math.Ceil(float64(d)/float64(24*time.Hour)/most))
	}
	layout := "15:04:05"
	if step < time.Second {
		layout = "15:04:05.000"
	}
	for t := s.start.Truncate(step); !t.After(s.end); t = t.Add(step) {
		if t.Before(s.start) {
			continue
		}
		x := s.X + float64(t.Sub(s.start))/float64(d)*s.W
		if x > tlPlotX1-30 || (x > s.X+s.W-30 && len(tl.Ticks) > 0 && tl.Ticks[len(tl.Ticks)-1].X >= s.X) {
			continue // too close to the next band's first tick, or to the edge
		}
		tl.Ticks = append(tl.Ticks, tlTick{X: x, Label: t.UTC().Format(layout)})
	}
}

func barWord(class string) string {
	switch class {
	case "ok":
		return "succeeded"
	case "failed":
		return "failed"
	case "attempt-failed":
		return "failed, retried"
	case "paused":
		return "waiting for approval"
	}
	return "no end recorded (interrupted or stopped)"
}

// markShape is a mark's outline at (x, y): "circle" or a path.
func markShape(k MarkKind, x, y float64) string {
	p := func(pts ...float64) string {
		var b strings.Builder
		for i := 0; i < len(pts); i += 2 {
			if i == 0 {
				b.WriteString("M")
			} else {
				b.WriteString(" L")
			}
			fmt.Fprintf(&b, "%.1f %.1f", x+pts[i], y+pts[i+1])
		}
		b.WriteString(" Z")
		return b.String()
	}
	switch k {
	case MarkApproval:
		return p(0, -7, 7, 0, 0, 7, -7, 0)
	case MarkFailure:
		return p(0, -7, 7, 6, -7, 6)
	}
	return "circle"
}

// zigzag is the axis break drawn down a gap between two invocations.
func zigzag(x, y0, y1 float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "M%.1f %.1f", x, y0)
	for y, left := y0, true; y < y1; y, left = y+8, !left {
		dx := 4.0
		if left {
			dx = -4
		}
		fmt.Fprintf(&b, " L%.1f %.1f", x+dx, math.Min(y+4, y1))
		fmt.Fprintf(&b, " L%.1f %.1f", x, math.Min(y+8, y1))
	}
	return b.String()
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// fmtIdle is the idle time between two invocations, to the second.
func fmtIdle(d time.Duration) string {
	if d < time.Second {
		return fmtDur(d)
	}
	return d.Round(time.Second).String()
}

func fmtTimeMS(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}
