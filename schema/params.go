package schema

import (
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// ParamInputs are the places param values come from, weakest first:
// a param's default, then its env variable, then vars files in order (later
// wins), then --var flags (later wins).
type ParamInputs struct {
	VarsFiles []string
	Vars      []string // K=V
	// LookupEnv reads the environment; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// WithoutSecrets accepts missing secret params: for commands that only
	// locate a run's state (status, report), which never use a secret.
	WithoutSecrets bool
}

// Value is a param's resolved value and where it came from.
type Value struct {
	Name   string `json:"name"`
	Value  string `json:"-"`
	Secret bool   `json:"secret"`
	// Source says where the value came from: "default", "env NAME",
	// "vars FILE:LINE", "--var", or "" when the param has no value.
	Source string `json:"source"`
}

// Display returns the value as it may be shown: secrets as ***.
func (v Value) Display() string {
	if v.Secret && v.Value != "" {
		return "***"
	}
	return v.Value
}

// Values are a runbook's resolved params in declaration order.
type Values []Value

// Map returns the values by name, for expressions.
func (vs Values) Map() map[string]string {
	m := make(map[string]string, len(vs))
	for _, v := range vs {
		m[v.Name] = v.Value
	}
	return m
}

// Secrets returns the non-empty values of secret params.
func (vs Values) Secrets() []string {
	var out []string
	for _, v := range vs {
		if v.Secret && v.Value != "" {
			out = append(out, v.Value)
		}
	}
	return out
}

// Get returns the value of a param.
func (vs Values) Get(name string) (Value, bool) {
	for _, v := range vs {
		if v.Name == name {
			return v, true
		}
	}
	return Value{}, false
}

// ResolveParams computes every param's value from its sources and checks each
// against its pattern and enum. On failure the error is Errors, every problem
// at its position: in a vars file, at a --var flag, or at the param's
// definition for a missing required value.
func (rb *Runbook) ResolveParams(in ParamInputs) (Values, error) {
	lookup := in.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var all Errors
	vals := make(Values, len(rb.Params))
	// from is where each value was given, for the error when it is not
	// acceptable: the vars file's value, the --var flag, the param's env key.
	from := make([]*Error, len(rb.Params))
	index := map[string]int{}
	for i, p := range rb.Params {
		index[p.Name] = i
		vals[i] = Value{Name: p.Name, Secret: p.Secret}
		if p.Default != nil {
			vals[i].Value, vals[i].Source = string(*p.Default), "default"
			from[i] = &Error{File: rb.File, Pos: p.Keys["default"], src: rb.Source}
		}
		if p.Env != "" {
			// Set to the empty string counts as not set: an empty
			// DATABASE_URL is a mistake, and libpq would take it for its
			// defaults (a local server), not for "no value".
			if v, ok := lookup(p.Env); ok && v != "" {
				vals[i].Value, vals[i].Source = v, "env "+p.Env
				from[i] = &Error{File: rb.File, Pos: p.Keys["env"], src: rb.Source}
			}
		}
	}
	set := func(name, value, source string, where *Error) {
		i, ok := index[name]
		if !ok {
			where.Msg = fmt.Sprintf("unknown param %q%s", name, suggest(name, rb.Params.Names()))
			if len(rb.Params) == 0 {
				where.Msg = fmt.Sprintf("unknown param %q: runbook %s has no params", name, rb.Name)
			}
			all = append(all, where)
			return
		}
		vals[i].Value, vals[i].Source = value, source
		from[i] = where
	}
	for _, f := range in.VarsFiles {
		m, err := readVars(f)
		if err != nil {
			all = append(all, err.(Errors)...)
			continue
		}
		for _, kv := range m {
			set(kv.name, kv.value, fmt.Sprintf("vars %s:%d", f, kv.pos.Line), &Error{File: f, Pos: kv.pos, src: kv.src})
			if i, ok := index[kv.name]; ok {
				from[i] = &Error{File: f, Pos: kv.valuePos, src: kv.src}
			}
		}
	}
	for n, kv := range in.Vars {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			all = append(all, &Error{File: "--var", Msg: fmt.Sprintf("%q: want NAME=VALUE", maskAfterEquals(kv)), arg: n + 1})
			continue
		}
		set(k, v, "--var", &Error{File: "--var " + k, arg: n + 1})
	}
	for i, p := range rb.Params {
		v := &vals[i]
		if v.Source == "" {
			if p.IsRequired() && !(in.WithoutSecrets && p.Secret) {
				how := fmt.Sprintf("--var %s=VALUE or a vars file", p.Name)
				if p.Env != "" {
					how += " or $" + p.Env
				}
				all = append(all, &Error{File: rb.File, Pos: p.Pos, src: rb.Source,
					Msg: fmt.Sprintf("param %s is required: give it with %s", p.Name, how)})
			}
			continue
		}
		if msg := p.Check(v.Value); msg != "" {
			shown := fmt.Sprintf("%q", v.Value)
			if p.Secret {
				shown = "(secret)"
			}
			if strings.HasPrefix(v.Source, "env ") {
				shown += " of $" + p.Env
			}
			e := *from[i]
			e.Msg = fmt.Sprintf("param %s: value %s %s", p.Name, shown, msg)
			all = append(all, &e)
		}
	}
	if len(all) > 0 {
		return nil, all.sorted()
	}
	return vals, nil
}

func maskAfterEquals(s string) string {
	if k, _, ok := strings.Cut(s, "="); ok {
		return k + "=…"
	}
	return s
}

type varsEntry struct {
	name, value   string
	pos, valuePos Pos
	src           []byte
}

// readVars reads a vars file: a YAML mapping of param names to scalar values.
func readVars(file string) ([]varsEntry, error) {
	src, err := ReadFile(file)
	if err != nil {
		return nil, err
	}
	if blank(src) {
		return nil, nil // no values yet: every param keeps its default
	}
	errs := &errList{file: file, src: src}
	root := parseYAML(errs, src)
	if root == nil {
		return nil, errs.err()
	}
	if root.Kind != yaml.MappingNode {
		errs.add(pos(root), "a vars file must be a mapping of param names to values, not %s", kindName(root))
		return nil, errs.err()
	}
	d := newDecoder(errs)
	var out []varsEntry
	d.eachPair(root, func(k string, kn, vn *yaml.Node) {
		var s Scalar
		d.decode(vn, reflect.ValueOf(&s).Elem(), k)
		out = append(out, varsEntry{name: k, value: string(s), pos: pos(kn), valuePos: pos(vn), src: src})
	})
	if err := errs.err(); err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].pos.Line < out[j].pos.Line })
	return out, nil
}
