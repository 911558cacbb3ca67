package schema

import (
	"regexp"

	"gopkg.in/yaml.v3"
)

// Param is one input of a runbook. Per-customer values come from vars files,
// --var flags or the environment (see params.go for the order).
type Param struct {
	Name string `yaml:"-"`
	// Pos is the position of the param's name.
	Pos         Pos       `yaml:"-"`
	Keys        Positions `yaml:"-"`
	Description string    `yaml:"description" doc:"What the param is for; shown by plan and show."`
	Default     *Scalar   `yaml:"default" short:"true" doc:"Value used when none is given. A param without a default is required unless required: false."`
	Required    *bool     `yaml:"required" doc:"Whether a value must be given. Defaults to true when there is no default."`
	Env         string    `yaml:"env" pattern:"^[A-Za-z_][A-Za-z0-9_]*$" doc:"Environment variable that supplies the value when no vars file or --var does."`
	Pattern     string    `yaml:"pattern" doc:"Regular expression (RE2) the whole value must match; checked before any step runs."`
	Enum        []Scalar  `yaml:"enum" doc:"The allowed values."`
	Secret      bool      `yaml:"secret" doc:"Never printed, logged or stored in state: shown as ***."`

	re *regexp.Regexp
}

// IsRequired reports whether a value must be supplied.
func (p *Param) IsRequired() bool {
	if p.Required != nil {
		return *p.Required
	}
	return p.Default == nil
}

// Scalar is a string-valued YAML scalar that also accepts numbers and booleans,
// taken as their text.
type Scalar string

func (s *Scalar) decodeNode(d *decoder, n *yaml.Node) {
	if v, ok := d.scalar(n, d.name("value"), true); ok {
		*s = Scalar(v)
	}
}

// Params are a runbook's params in the order they are declared.
type Params []*Param

var nameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (ps *Params) decodeNode(d *decoder, n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		d.errs.add(pos(n), "params must be a mapping of name to definition, not %s", kindName(n))
		return
	}
	d.eachPair(n, func(k string, kn, vn *yaml.Node) {
		if !nameRe.MatchString(k) {
			d.errs.add(pos(kn), "param name %q must match %s (it is used as params.NAME)", k, nameRe)
			return
		}
		p := &Param{Name: k}
		before := len(d.errs.errs)
		d.decode(vn, reflectValue(p), "param "+k)
		p.Pos = pos(kn)
		if len(d.errs.errs) == before {
			p.check(d)
		}
		*ps = append(*ps, p)
	})
}

func (p *Param) check(d *decoder) {
	if p.Pattern != "" {
		// Compiled alone first, so that an error quotes the pattern as written.
		if _, err := regexp.Compile(p.Pattern); err != nil {
			d.errs.add(p.Keys["pattern"], "param %s: invalid pattern: %v", p.Name, err)
		} else if re, err := regexp.Compile("^(?:" + p.Pattern + ")$"); err != nil {
			d.errs.add(p.Keys["pattern"], "param %s: invalid pattern: %v", p.Name, err)
		} else {
			p.re = re
		}
	}
	if p.Required != nil && *p.Required && p.Default != nil {
		d.errs.add(p.Keys["required"], "param %s: required: true and a default contradict each other; drop one", p.Name)
	}
	if p.Default != nil {
		if msg := p.Check(string(*p.Default)); msg != "" {
			d.errs.add(p.Keys["default"], "param %s: default %q %s", p.Name, string(*p.Default), msg)
		}
	}
}

// Check returns why a value is not acceptable for the param, or "".
func (p *Param) Check(v string) string {
	if p.re != nil && !p.re.MatchString(v) {
		return "does not match pattern " + p.Pattern
	}
	if len(p.Enum) > 0 {
		for _, e := range p.Enum {
			if string(e) == v {
				return ""
			}
		}
		names := make([]string, len(p.Enum))
		for i, e := range p.Enum {
			names[i] = string(e)
		}
		return "is not one of " + joinQuoted(names)
	}
	return ""
}

// Lookup returns the param with the given name.
func (ps Params) Lookup(name string) *Param {
	for _, p := range ps {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Names returns the params' names in order.
func (ps Params) Names() []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name
	}
	return out
}
