package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/internal/event"
	"github.com/runbookhq/runbook/internal/exitcode"
	"github.com/runbookhq/runbook/internal/redact"
	"github.com/runbookhq/runbook/schema"
)

// PlanFormat is the version of the plan's JSON shape (docs/plan.md).
const PlanFormat = 1

// Plan is what a run of a runbook with given params would do, resolved as far
// as possible without connecting to anything. Its JSON shape is documented in
// docs/plan.md and stable within a PlanFormat.
type Plan struct {
	Format      int          `json:"format"`
	Runbook     PlanRunbook  `json:"runbook"`
	Params      []PlanParam  `json:"params"`
	Connections []PlanConn   `json:"connections"`
	Lock        string       `json:"lock,omitempty"`
	Steps       []PlanStep   `json:"steps"`
	Digest      string       `json:"digest"`
	Generated   []Generation `json:"generated,omitempty"`

	// steps is Steps as json.Marshal wrote it for the digest, reused by
	// WriteJSON while Steps is the slice it was written from (stepsOf, n).
	steps   []byte
	stepsOf *PlanStep
	n       int
}

// planHead and planTail are the fields of Plan before and after Steps, in
// its order and with its tags: the plan's JSON is written as head, steps,
// tail, so that the steps (nearly all of it) are encoded once for the
// digest and the output (docs/performance.md, P4).
type planHead struct {
	Format      int         `json:"format"`
	Runbook     PlanRunbook `json:"runbook"`
	Params      []PlanParam `json:"params"`
	Connections []PlanConn  `json:"connections"`
	Lock        string      `json:"lock,omitempty"`
}

type planTail struct {
	Digest    string       `json:"digest"`
	Generated []Generation `json:"generated,omitempty"`
}

// pieces returns p as json.Marshal writes it, in pieces: its fields before
// the steps, the steps (the encoded Steps), and the fields after them.
func (p *Plan) pieces(steps []byte) ([3][]byte, error) {
	head, err := json.Marshal(planHead{p.Format, p.Runbook, p.Params, p.Connections, p.Lock})
	if err != nil {
		return [3][]byte{}, err
	}
	tail, err := json.Marshal(planTail{p.Digest, p.Generated})
	if err != nil {
		return [3][]byte{}, err
	}
	head = append(head[:len(head)-1], `,"steps":`...)
	tail[0] = ','
	return [3][]byte{head, steps, tail}, nil
}

// stepBytes is room for a step's JSON in the plan's first buffer, so that
// it is not grown for a runbook of ordinary steps (P4's take about 300 bytes
// each).
const stepBytes = 512

// encodedSteps returns Steps as json.Marshal writes them: kept from the
// digest while Steps was not replaced since.
func (p *Plan) encodedSteps() ([]byte, error) {
	if p.steps != nil && len(p.Steps) == p.n && (p.n == 0 || &p.Steps[0] == p.stepsOf) {
		return p.steps, nil
	}
	return appendSteps(make([]byte, 0, stepBytes*len(p.Steps)), p.Steps)
}

// WriteJSON writes the plan as --format json prints it: what a json.Encoder
// with a two-space indent writes.
func (p *Plan) WriteJSON(w io.Writer) error {
	steps, err := p.encodedSteps()
	if err != nil {
		return err
	}
	pieces, err := p.pieces(steps)
	if err != nil {
		return err
	}
	in := indenter{w: w, dst: make([]byte, 0, 80<<10)}
	for _, b := range pieces {
		in.write(b)
	}
	in.dst = append(in.dst, '\n')
	in.flush()
	return in.err
}

// PlanRunbook identifies the runbook.
type PlanRunbook struct {
	Name        string `json:"name"`
	File        string `json:"file"`
	Digest      string `json:"digest"`
	Description string `json:"description,omitempty"`
}

// PlanParam is a param's value (secrets as ***) and where it came from.
type PlanParam struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Secret bool   `json:"secret,omitempty"`
	Source string `json:"source"`
}

// PlanConn is a connection's facts, never its password.
type PlanConn struct {
	Name     string            `json:"name"`
	Host     string            `json:"host"`
	Port     int               `json:"port"`
	Database string            `json:"database"`
	User     string            `json:"user"`
	Settings map[string]string `json:"settings,omitempty"`
}

// PlanStep is one step as it would run.
type PlanStep struct {
	Index       int            `json:"index"`
	ID          string         `json:"id"`
	Name        string         `json:"name,omitempty"`
	Description string         `json:"description,omitempty"`
	Kind        string         `json:"kind"`
	When        string         `json:"when,omitempty"`
	WillRun     *bool          `json:"will_run,omitempty"` // nil: decided at run time
	Always      bool           `json:"always,omitempty"`
	Idempotent  bool           `json:"idempotent,omitempty"`
	OnFailure   string         `json:"on_failure"`
	Timeout     string         `json:"timeout,omitempty"`
	Retry       *schema.Retry  `json:"retry,omitempty"`
	Action      map[string]any `json:"action"`
	Digest      string         `json:"digest"`
}

// Generation lists the statements a generate step would execute (plan --generate).
type Generation struct {
	Step       string   `json:"step"`
	Statements []string `json:"statements"`
	// Note says why the statements are not listed, when they are not.
	Note string `json:"note,omitempty"`
	// AfterChanges is set for a generate step after a step that may change
	// a database: its statements are generated at run time, and a sealed
	// plan does not bind them.
	AfterChanges bool `json:"after_changes,omitempty"`
}

// AtRunTime marks a value that only the run can know (it reads earlier steps'
// outputs or run facts): the plan shows the template as written after it.
const AtRunTime = "(at run time) "

// NewPlan resolves a runbook with its params into a plan. It connects to
// nothing. Secrets are masked in everything it returns.
func NewPlan(rb *schema.Runbook, vals schema.Values) (*Plan, error) {
	red := Secrets(rb, vals)
	env, conns, _, err := staticEnv(rb, vals, red)
	if err != nil {
		return nil, err
	}
	p := &Plan{Format: PlanFormat,
		Runbook: PlanRunbook{Name: rb.Name, File: rb.File, Digest: "sha256:" + rb.Digest, Description: strings.TrimSpace(rb.Description)},
		Params:  []PlanParam{}, Connections: conns, Steps: make([]PlanStep, 0, len(rb.Steps))}
	for _, v := range vals {
		p.Params = append(p.Params, PlanParam{Name: v.Name, Value: red.String(v.Display()), Secret: v.Secret, Source: v.Source})
	}
	if rb.Lock != nil {
		p.Lock = rb.Lock.Name
	}
	for _, s := range rb.Steps {
		ps := PlanStep{Index: s.Index + 1, ID: s.ID, Name: s.Name, Description: strings.TrimSpace(s.Description),
			Kind: s.Kind, Always: s.Always, Idempotent: s.Idempotent, OnFailure: s.OnFailure, Retry: s.Retry,
			Digest: "sha256:" + s.Digest}
		if ps.OnFailure == "" {
			ps.OnFailure = "stop"
		}
		if s.Timeout != nil {
			ps.Timeout = s.Timeout.String()
		}
		if !s.When.IsZero() {
			ps.When = s.When.Src
			if !s.When.Dynamic() {
				ok, err := s.When.Bool(env)
				if err != nil {
					return nil, exitcode.With(exitcode.Invalid, fmt.Errorf("step %s: when: %w", s.ID, red.Error(err)))
				}
				ps.WillRun = &ok
			}
		}
		ps.Action = resolveStruct(reflect.ValueOf(s.Action).Elem(), env, red)
		p.Steps = append(p.Steps, ps)
	}
	p.Digest = p.digest()
	return p, nil
}

// digest hashes everything that would run: the plan without its own digest.
// Secret values are not part of it (they are masked), so a digest cannot be
// used to guess a secret.
func (p *Plan) digest() string {
	c := *p
	c.Digest = ""
	c.Runbook.File = "" // the same runbook from another path runs the same
	c.Params = append([]PlanParam(nil), p.Params...)
	for i := range c.Params {
		c.Params[i].Source = ""
	}
	// What json.Marshal(c) writes, the steps encoded once for WriteJSON too.
	steps, _ := appendSteps(make([]byte, 0, stepBytes*len(p.Steps)), p.Steps)
	p.steps, p.n, p.stepsOf = steps, len(p.Steps), nil
	if len(p.Steps) > 0 {
		p.stepsOf = &p.Steps[0]
	}
	pieces, _ := c.pieces(steps)
	h := sha256.New()
	for _, b := range pieces {
		h.Write(b)
	}
	sum := h.Sum(nil)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Secrets returns a redactor for a run's secrets: secret params, and every
// password in them or in the connection strings built from them.
func Secrets(rb *schema.Runbook, vals schema.Values) *redact.Redactor {
	red := redact.New()
	for _, s := range vals.Secrets() {
		red.Add(s)
		red.AddConnString(s)
	}
	for _, v := range vals {
		red.AddConnString(v.Value)
	}
	return red
}

// staticEnv is the expression environment known before the run: params,
// connection facts parsed from their URLs, and the process environment. It
// evaluates each connection's URL once: urls holds them by name (secret:
// their passwords are registered with red).
func staticEnv(rb *schema.Runbook, vals schema.Values, red *redact.Redactor) (env *schema.Env, conns []PlanConn, urls map[string]string, err error) {
	env = &schema.Env{Params: vals.Map(), Steps: map[string]schema.StepResult{},
		Conn: map[string]schema.ConnInfo{}, Env: environ()}
	conns, urls = []PlanConn{}, map[string]string{}
	for _, c := range rb.Connections {
		url, err := c.URL.String(env)
		if err != nil {
			return nil, nil, nil, exitcode.With(exitcode.Invalid, fmt.Errorf("connection %s: %w", c.Name, red.Error(err)))
		}
		red.AddConnString(url)
		urls[c.Name] = url
		info, err := ParseConnInfo(url)
		if err != nil {
			return nil, nil, nil, exitcode.With(exitcode.Invalid, fmt.Errorf("connection %s: %w", c.Name, red.Error(err)))
		}
		env.Conn[c.Name] = info
		pc := PlanConn{Name: c.Name, Host: info.Host, Port: info.Port, Database: info.Database, User: info.User, Settings: sessionSettings(c)}
		conns = append(conns, pc)
	}
	return env, conns, urls, nil
}

// resolveStruct renders an action config for the plan, by its yaml tags:
// templates evaluated when they can be, as written otherwise.
func resolveStruct(v reflect.Value, env *schema.Env, red *redact.Redactor) map[string]any {
	out := map[string]any{}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key := f.Tag.Get("yaml")
		if key == "" || key == "-" || !f.IsExported() {
			continue
		}
		if r := resolveValue(v.Field(i), env, red); r != nil {
			out[key] = r
		}
	}
	return out
}

var (
	templateType = reflect.TypeOf(schema.Template{})
	connRefType  = reflect.TypeOf(schema.ConnRef{})
	exprsType    = reflect.TypeOf(schema.Exprs{})
)

// ptrTo returns a pointer to v's value of type T: v's own address when it has
// one (no copy to the heap), else a copy's.
func ptrTo[T any](v reflect.Value) *T {
	if v.CanAddr() {
		return v.Addr().Interface().(*T)
	}
	x := v.Interface().(T)
	return &x
}

func resolveValue(v reflect.Value, env *schema.Env, red *redact.Redactor) any {
	switch v.Type() {
	case templateType:
		t := ptrTo[schema.Template](v)
		if t.IsZero() {
			return nil
		}
		if t.Dynamic() {
			return AtRunTime + red.String(t.Raw)
		}
		s, err := t.String(env)
		if err != nil {
			return red.String(fmt.Sprintf("%s(error: %v)", AtRunTime, err))
		}
		return red.String(s)
	case connRefType:
		if name := ptrTo[schema.ConnRef](v).Name; name != "" {
			return name
		}
		return nil
	case exprsType:
		var out []string
		for _, e := range *ptrTo[schema.Exprs](v) {
			out = append(out, e.Src)
		}
		return out
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		if v.Elem().Kind() == reflect.Bool {
			return v.Elem().Bool() // set explicitly: shown even when false
		}
		return resolveValue(v.Elem(), env, red)
	case reflect.Struct:
		return resolveStruct(v, env, red)
	case reflect.Slice:
		if v.IsNil() {
			return nil
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = resolveValue(v.Index(i), env, red)
		}
		return out
	case reflect.Map:
		if v.Len() == 0 {
			return nil
		}
		out := map[string]any{}
		for _, k := range v.MapKeys() {
			out[k.String()] = resolveValue(v.MapIndex(k), env, red)
		}
		return out
	case reflect.String:
		if v.String() == "" {
			return nil
		}
		return red.String(v.String())
	case reflect.Bool:
		if !v.Bool() {
			return nil
		}
		return true
	case reflect.Int, reflect.Int64:
		if v.Int() == 0 {
			return nil
		}
		return v.Int()
	}
	return nil
}

// WriteText renders the plan for a human.
func (p *Plan) WriteText(w io.Writer) {
	fmt.Fprintf(w, "Plan for %s (%s)\n", p.Runbook.Name, p.Runbook.File)
	fmt.Fprintf(w, "  runbook digest %s\n", p.Runbook.Digest)
	if len(p.Params) > 0 {
		fmt.Fprintf(w, "\nParams\n")
		width := 0
		for _, pp := range p.Params {
			width = max(width, len(pp.Name))
		}
		for _, pp := range p.Params {
			val := pp.Value
			if val == "" {
				val = `""`
			}
			src := pp.Source
			if src == "" {
				src = "unset"
			}
			fmt.Fprintf(w, "  %-*s  %s  (%s)\n", width, pp.Name, val, src)
		}
	}
	if len(p.Connections) > 0 {
		fmt.Fprintf(w, "\nConnections\n")
		for _, c := range p.Connections {
			fmt.Fprintf(w, "  %s  %s@%s:%d/%s", c.Name, c.User, c.Host, c.Port, c.Database)
			if c.Name == p.Lock {
				fmt.Fprintf(w, "  (holds the runbook's advisory lock)")
			}
			fmt.Fprintln(w)
			keys := make([]string, 0, len(c.Settings))
			for k := range c.Settings {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(w, "      %s = %s\n", k, c.Settings[k])
			}
		}
	}
	fmt.Fprintf(w, "\nSteps\n")
	for _, s := range p.Steps {
		title := s.ID
		if s.Name != "" {
			title += " — " + s.Name
		}
		var tags []string
		if s.Always {
			tags = append(tags, "always")
		}
		if s.Idempotent {
			tags = append(tags, "idempotent")
		}
		if s.OnFailure == "continue" {
			tags = append(tags, "on failure: continue")
		}
		if s.Timeout != "" {
			tags = append(tags, "timeout "+s.Timeout)
		}
		if s.Retry != nil {
			tags = append(tags, fmt.Sprintf("retry %d×", s.Retry.Attempts))
		}
		fmt.Fprintf(w, "  %d. %s  [%s]", s.Index, title, s.Kind)
		if len(tags) > 0 {
			fmt.Fprintf(w, " (%s)", strings.Join(tags, ", "))
		}
		fmt.Fprintln(w)
		if s.Description != "" {
			for _, line := range strings.Split(s.Description, "\n") {
				fmt.Fprintf(w, "       %s\n", strings.TrimRight(line, " "))
			}
		}
		if s.When != "" {
			verdict := "decided at run time"
			if s.WillRun != nil && *s.WillRun {
				verdict = "true: runs"
			} else if s.WillRun != nil {
				verdict = "false: skipped"
			}
			fmt.Fprintf(w, "       when %s  → %s\n", s.When, verdict)
		}
		writeAction(w, s.Action, "       ")
	}
	for _, g := range p.Generated {
		if g.AfterChanges {
			fmt.Fprintf(w, "\nGenerated by %s: %s (after_changes: not bound by the plan; the audit log records what runs)\n", g.Step, g.Note)
			continue
		}
		if g.Note != "" {
			fmt.Fprintf(w, "\nGenerated by %s: %s\n", g.Step, g.Note)
			continue
		}
		fmt.Fprintf(w, "\nGenerated by %s (%d statements)\n", g.Step, len(g.Statements))
		for i, st := range g.Statements {
			fmt.Fprintf(w, "  %d: %s\n", i+1, st)
		}
	}
	fmt.Fprintf(w, "\nPlan digest %s\n", p.Digest)
}

// plainJSON renders a value as JSON without HTML escaping, for humans.
func plainJSON(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimRight(b.String(), "\n")
}

func writeAction(w io.Writer, a map[string]any, indent string) {
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := a[k]
		switch x := v.(type) {
		case string:
			if strings.Contains(strings.TrimSpace(x), "\n") {
				fmt.Fprintf(w, "%s%s:\n", indent, k)
				for _, line := range strings.Split(strings.TrimRight(x, "\n"), "\n") {
					fmt.Fprintf(w, "%s  | %s\n", indent, line)
				}
				continue
			}
			fmt.Fprintf(w, "%s%s: %s\n", indent, k, x)
		default:
			fmt.Fprintf(w, "%s%s: %s\n", indent, k, plainJSON(x))
		}
	}
}

// Generate runs the generator query of every generate step that can be known
// before the run (its query and args read no earlier step's outputs, and no
// earlier step changes anything) inside a READ ONLY transaction, and adds the
// statements each would execute to the plan. The digest then covers them: it
// changes whenever the catalog changes what would run. Nothing is executed
// and nothing is written.
func (p *Plan) Generate(ctx context.Context, rb *schema.Runbook, vals schema.Values) error {
	_, err := p.generate(ctx, rb, vals, false)
	return err
}

// generate is Generate; with servers set, it also connects to every
// connection and returns each server's identity, by connection.
func (p *Plan) generate(ctx context.Context, rb *schema.Runbook, vals schema.Values, servers bool) (map[string]Server, error) {
	red := Secrets(rb, vals)
	env, _, urls, err := staticEnv(rb, vals, red)
	if err != nil {
		return nil, err
	}
	cs := newConns(rb, urls, "runbook/"+rb.Name+"/plan", nil, red)
	defer cs.close()
	seen := map[string]Server{}
	cs.identify = func(name string, s Server) error { seen[name] = s; return nil }
	p.Generated = nil
	// changed is set after the first step that may change a database: a
	// generate step after it would run on what that step leaves, which a
	// preview now cannot see.
	changed := false
	for i, s := range rb.Steps {
		skipped := p.Steps[i].WillRun != nil && !*p.Steps[i].WillRun
		g, ok := s.Action.(actions.Previewer)
		if ok && !skipped {
			gen := Generation{Step: s.ID}
			rc := &actions.Context{Step: s, Env: env, Events: event.Discard, Conns: cs.forStep(), Redact: red}
			var stmts []string
			var err error
			if changed {
				err = errAfterChanges
			} else {
				stmts, err = g.Preview(ctx, rc)
			}
			switch {
			case errors.Is(err, errAfterChanges):
				gen.AfterChanges = true
				gen.Note = "earlier steps change the databases first: generated at run time"
			case errors.Is(err, actions.ErrRunTime):
				gen.Note = "reads earlier steps' outputs: generated at run time"
			case err != nil:
				return nil, fmt.Errorf("step %s: %w", s.ID, red.Error(err))
			default:
				for j := range stmts {
					stmts[j] = red.String(stmts[j])
				}
				gen.Statements = stmts
			}
			p.Generated = append(p.Generated, gen)
		}
		if !skipped && actions.EffectsOf(s.Action) != actions.None {
			changed = true
		}
	}
	if servers {
		for _, c := range rb.Connections {
			if _, err := cs.Conn(ctx, c.Name); err != nil {
				return nil, fmt.Errorf("reading the identity of the server of connection %s: %w", c.Name, red.Error(err))
			}
		}
	}
	p.Digest = p.digest()
	return seen, nil
}

// errAfterChanges marks a generate step that earlier steps' changes make
// impossible to preview faithfully.
var errAfterChanges = errors.New("after changes")
