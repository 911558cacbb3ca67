package schema

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"

	"github.com/runbookhq/runbook/internal/pgquote"
)

// Env is what expressions see when they are evaluated (SPEC §2). Expressions are
// compiled and type-checked against this type at load time.
type Env struct {
	Params map[string]string     `expr:"params"`
	Steps  map[string]StepResult `expr:"steps"`
	Conn   map[string]ConnInfo   `expr:"conn"`
	Run    RunInfo               `expr:"run"`
	Env    map[string]string     `expr:"env"`
	// Row and Rows are set for an assert's `that` and `message`: the first row
	// of the query's result and all of them.
	Row  map[string]any   `expr:"row"`
	Rows []map[string]any `expr:"rows"`
}

// StepResult is an earlier step's outcome as expressions see it.
type StepResult struct {
	Status  string         `expr:"status" json:"status"`
	Outputs map[string]any `expr:"outputs" json:"outputs,omitempty"`
}

// ConnInfo is what expressions may know of a connection: never its password.
type ConnInfo struct {
	Host     string `expr:"host" json:"host"`
	Port     int    `expr:"port" json:"port"`
	Database string `expr:"database" json:"database"`
	User     string `expr:"user" json:"user"`
}

// RunInfo describes the current run.
type RunInfo struct {
	ID        string `expr:"id"`
	Operator  string `expr:"operator"`
	StartedAt string `expr:"started_at"` // RFC 3339
}

var exprOptions = []expr.Option{
	expr.Env(Env{}),
	expr.Function("ident", func(p ...any) (any, error) { return pgquote.Ident(p[0].(string)), nil }, new(func(string) string)),
	expr.Function("literal", func(p ...any) (any, error) { return pgquote.Literal(p[0].(string)), nil }, new(func(string) string)),
	expr.MaxNodes(2000),
}

// Expr is a bare expression (`when`, `that`) that must yield a boolean.
type Expr struct {
	Src     string
	Pos     Pos
	prog    *vm.Program
	loc     locator
	dynamic bool
}

// Dynamic reports whether the expression reads what only the run knows:
// earlier steps, run facts or an assert's rows.
func (e *Expr) Dynamic() bool { return e != nil && e.dynamic }

// IsZero reports whether the expression is absent.
func (e *Expr) IsZero() bool { return e == nil || e.Src == "" }

// Bool evaluates the expression.
func (e *Expr) Bool(env *Env) (bool, error) {
	if e.prog == nil {
		return false, fmt.Errorf("expression %q was not compiled", e.Src)
	}
	v, err := expr.Run(e.prog, *env)
	if err != nil {
		return false, fmt.Errorf("%s: %w", e.Src, err)
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("%s: yields %T, not a boolean", e.Src, v)
	}
	return b, nil
}

func (e *Expr) decodeNode(d *decoder, n *yaml.Node) {
	s, ok := d.scalar(n, d.name("expression"), true)
	if !ok {
		return
	}
	e.Pos, e.loc = pos(n), newLocator(n, d.errs.source())
	e.Src = s
	offset := 0
	if t := strings.TrimSpace(s); strings.HasPrefix(t, "${{") && strings.HasSuffix(t, "}}") {
		// `when: ${{ x }}` is accepted and means `when: x`.
		i, j := strings.Index(s, "${{"), strings.LastIndex(s, "}}")
		e.Src, offset = s[i+3:j], utf8.RuneCountInString(s[:i+3])
	}
	if strings.TrimSpace(e.Src) == "" {
		d.errs.add(pos(n), "empty expression")
		return
	}
	d.sites = append(d.sites, exprSite{src: e.Src, offset: offset, loc: e.loc, step: d.step, row: d.rowScope, boolean: true,
		set: func(p *vm.Program, dynamic bool) { e.prog, e.dynamic = p, dynamic }})
}

// Exprs is one expression or a list of them; all must hold.
type Exprs []Expr

func (es *Exprs) decodeNode(d *decoder, n *yaml.Node) {
	if n.Kind == yaml.SequenceNode {
		*es = make(Exprs, len(n.Content))
		for i, c := range n.Content {
			if c = d.resolve(c); c != nil {
				(*es)[i].decodeNode(d, c)
			}
		}
		return
	}
	*es = make(Exprs, 1)
	(*es)[0].decodeNode(d, n)
}

// Template is a string that may embed `${{ expression }}`. A template that is
// exactly one expression keeps the expression's type when evaluated.
type Template struct {
	Raw   string
	Pos   Pos
	parts []part
	loc   locator
}

type part struct {
	lit     string
	src     string
	prog    *vm.Program
	dynamic bool
}

// IsZero reports whether the template is empty.
func (t Template) IsZero() bool { return t.Raw == "" }

// HasExpr reports whether the template embeds expressions.
func (t Template) HasExpr() bool {
	for _, p := range t.parts {
		if p.src != "" {
			return true
		}
	}
	return false
}

// Dynamic reports whether the template can only be evaluated while the run
// goes on: it reads earlier steps' outputs, run facts or an assert's rows.
func (t Template) Dynamic() bool {
	for _, p := range t.parts {
		if p.dynamic {
			return true
		}
	}
	return false
}

// Eval evaluates the template. A template that is exactly one expression yields
// the expression's value; any other yields a string.
func (t Template) Eval(env *Env) (any, error) {
	if !t.HasExpr() {
		return t.Raw, nil
	}
	if len(t.parts) == 1 {
		return t.run(t.parts[0], env)
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.src == "" {
			b.WriteString(p.lit)
			continue
		}
		v, err := t.run(p, env)
		if err != nil {
			return nil, err
		}
		b.WriteString(Stringify(v))
	}
	return b.String(), nil
}

// String evaluates the template to a string.
func (t Template) String(env *Env) (string, error) {
	v, err := t.Eval(env)
	if err != nil {
		return "", err
	}
	return Stringify(v), nil
}

func (t Template) run(p part, env *Env) (any, error) {
	if p.prog == nil {
		return nil, fmt.Errorf("expression %q was not compiled", p.src)
	}
	v, err := expr.Run(p.prog, *env)
	if err != nil {
		return nil, fmt.Errorf("${{ %s }}: %w", strings.TrimSpace(p.src), err)
	}
	return v, nil
}

// Stringify renders an expression's value as text: strings as they are, nil as
// "", numbers and booleans in Go syntax, anything else as JSON.
func Stringify(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case fmt.Stringer:
		return x.String()
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// MarshalText renders the template as written, so plans show it unevaluated.
func (t Template) MarshalText() ([]byte, error) { return []byte(t.Raw), nil }

func (t *Template) decodeNode(d *decoder, n *yaml.Node) {
	s, ok := d.scalar(n, d.name("value"), true)
	if !ok {
		return
	}
	t.Raw, t.Pos, t.loc = s, pos(n), newLocator(n, d.errs.source())
	t.parts = nil
	rest, offset := s, 0
	for {
		i := strings.Index(rest, "${{")
		if i < 0 {
			if rest != "" {
				t.parts = append(t.parts, part{lit: rest})
			}
			break
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: rest[:i]})
		}
		body := rest[i+3:]
		j := closing(body)
		if j < 0 {
			// Keep the parts: expressions met before are compiled later
			// and set by their index.
			d.errs.add(t.loc.at(utf8.RuneCountInString(s[:offset+i])), "unterminated ${{ (missing }})")
			return
		}
		src := body[:j]
		idx := len(t.parts)
		t.parts = append(t.parts, part{src: src})
		if strings.TrimSpace(src) == "" {
			d.errs.add(t.loc.at(utf8.RuneCountInString(s[:offset+i])), "empty ${{ }}")
		} else {
			d.sites = append(d.sites, exprSite{src: src, offset: utf8.RuneCountInString(s[:offset+i+3]), loc: t.loc,
				step: d.step, row: d.rowScope, set: func(p *vm.Program, dynamic bool) { t.parts[idx].prog, t.parts[idx].dynamic = p, dynamic }})
		}
		consumed := i + 3 + j + 2
		offset += consumed
		rest = rest[consumed:]
	}
	if len(t.parts) == 1 && t.parts[0].src == "" {
		t.parts = nil
	}
}

// closing finds the `}}` that ends an embedded expression, skipping string
// literals so that `${{ "}}" }}` works.
func closing(s string) int {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' && quote != '`' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '}' && i+1 < len(s) && s[i+1] == '}':
			return i
		}
	}
	return -1
}

// exprSite is one expression met while decoding, compiled once the document's
// params, connections and steps are all known.
type exprSite struct {
	src     string
	offset  int // rune offset of src inside the scalar
	loc     locator
	step    int // index of the enclosing step, -1 outside steps
	row     bool
	boolean bool
	set     func(p *vm.Program, dynamic bool)
}

// scope is what a site may reference.
type scope struct {
	params map[string]bool
	conns  map[string]bool
	steps  map[string]int // id → index
	ids    []string
	// programs caches compilations: a runbook repeats the same expressions
	// (params.app_role …), and a program does not depend on where it is used.
	programs map[programKey]compiled
}

type programKey struct {
	src     string
	boolean bool
}

type compiled struct {
	prog *vm.Program
	err  error
}

func (s *scope) compile(errs *errList, site exprSite) {
	opts := exprOptions
	if site.boolean {
		opts = append(append([]expr.Option{}, exprOptions...), expr.AsBool())
	}
	at := func(runeOffset int) Pos { return site.loc.at(site.offset + runeOffset) }
	key := programKey{site.src, site.boolean}
	c, ok := s.programs[key]
	if !ok {
		c.prog, c.err = expr.Compile(site.src, opts...)
		if s.programs == nil {
			s.programs = map[programKey]compiled{}
		}
		s.programs[key] = c
	}
	prog, err := c.prog, c.err
	if err != nil {
		if fe, ok := err.(*file.Error); ok {
			errs.add(at(fe.From), "expression: %s", friendly(firstLine(fe.Message)))
		} else {
			errs.add(at(0), "expression: %s", firstLine(err.Error()))
		}
		return
	}
	node := prog.Node()
	v := &refChecker{s: s, site: site, at: at, errs: errs}
	ast.Walk(&node, v)
	if !v.failed {
		site.set(prog, v.dynamic)
	}
}

var (
	noFieldRe     = regexp.MustCompile(`^type schema\.(StepResult|ConnInfo|RunInfo) has no field (\S+)$`)
	unknownNameRe = regexp.MustCompile(`^unknown name (\S+)$`)
)

// friendly rewrites expr-lang's messages that name this package's Go types
// into the names a runbook uses.
func friendly(msg string) string {
	if m := unknownNameRe.FindStringSubmatch(msg); m != nil {
		return msg + suggest(m[1], []string{"params", "steps", "conn", "run", "env", "ident", "literal"})
	}
	m := noFieldRe.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	var what string
	var fields []string
	switch m[1] {
	case "StepResult":
		what, fields = "a step has", []string{"status", "outputs"}
	case "ConnInfo":
		what, fields = "a connection has", []string{"host", "port", "database", "user"}
	default:
		what, fields = "run has", []string{"id", "operator", "started_at"}
	}
	list := strings.Join(fields[:len(fields)-1], ", ") + " and " + fields[len(fields)-1]
	return fmt.Sprintf("%s %s, not %q%s", what, list, m[2], suggest(m[2], fields))
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// refChecker reports references to params, connections and steps that do not
// exist, or not yet, at the expression's place.
type refChecker struct {
	s       *scope
	site    exprSite
	at      func(int) Pos
	errs    *errList
	failed  bool
	dynamic bool
}

func (r *refChecker) fail(n ast.Node, format string, args ...any) {
	r.failed = true
	r.errs.add(r.at(n.Location().From), format, args...)
}

func (r *refChecker) Visit(np *ast.Node) {
	switch n := (*np).(type) {
	case *ast.IdentifierNode:
		switch n.Value {
		case "row", "rows":
			r.dynamic = true
			if !r.site.row {
				r.fail(n, "expression: %s is only available in an assert's that and message", n.Value)
			}
		case "steps", "run":
			r.dynamic = true
		}
	case *ast.MemberNode:
		prop, ok := n.Property.(*ast.StringNode)
		if !ok {
			return
		}
		if id, ok := n.Node.(*ast.IdentifierNode); ok {
			switch id.Value {
			case "params":
				if !r.s.params[prop.Value] {
					r.fail(n.Property, "expression: undefined param %q%s", prop.Value, suggest(prop.Value, keys(r.s.params)))
				}
			case "conn":
				if !r.s.conns[prop.Value] {
					r.fail(n.Property, "expression: undefined connection %q%s", prop.Value, suggest(prop.Value, keys(r.s.conns)))
				}
			case "steps":
				i, ok := r.s.steps[prop.Value]
				switch {
				case !ok:
					r.fail(n.Property, "expression: undefined step %q%s", prop.Value, suggest(prop.Value, r.s.ids))
				case r.site.step < 0:
					r.fail(n.Property, "expression: steps are not available here")
				case i >= r.site.step:
					r.fail(n.Property, "expression: step %q does not run before this one", prop.Value)
				}
			}
			return
		}
		inner, ok := n.Node.(*ast.MemberNode)
		if !ok {
			return
		}
		if id, ok := inner.Node.(*ast.IdentifierNode); ok {
			switch id.Value {
			case "steps":
				if prop.Value != "status" && prop.Value != "outputs" {
					r.fail(n.Property, "expression: a step has status and outputs, not %q%s", prop.Value, suggest(prop.Value, []string{"status", "outputs"}))
				}
			case "conn":
				if f := []string{"host", "port", "database", "user"}; !slices.Contains(f, prop.Value) {
					r.fail(n.Property, "expression: a connection has host, port, database and user, not %q%s", prop.Value, suggest(prop.Value, f))
				}
			}
		}
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// PosAt returns the file position of the rune at offset in the template's
// text as written (exact for every scalar style), for errors that point
// inside a value, such as a failing statement in an sql script.
func (t Template) PosAt(runeOffset int) Pos { return t.loc.at(runeOffset) }
