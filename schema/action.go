package schema

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
)

// Action is the configuration of one action kind (sql, shell, generate, assert,
// confirm). Each kind lives in package actions, declares its config as a struct
// with the field tags described in decode.go, and registers it here, so that
// decoding, validation, the JSON Schema and the docs all come from that one
// declaration.
type Action interface {
	Kind() string
}

// ActionType describes a registered action kind.
type ActionType struct {
	Kind    string
	Summary string
	// New returns a pointer to a zero config of this kind.
	New func() Action
}

// Validator is implemented by action configs with checks beyond their field tags.
type Validator interface {
	Validate(v *Validation)
}

// Validation reports problems with one step's action.
type Validation struct {
	errs *errList
	// Step is the step being validated.
	Step *Step
	dir  string
}

// ReadFile reads a file named relative to the runbook's directory, and makes its
// content part of the step's digest, so that editing it is drift. Built-in
// runbooks cannot read files.
func (v *Validation) ReadFile(name string) ([]byte, error) {
	if v.dir == "" {
		return nil, fmt.Errorf("%s: built-in runbooks cannot refer to files", name)
	}
	p := name
	if !filepath.IsAbs(p) {
		p = filepath.Join(v.dir, name)
	}
	b, err := ReadFile(p)
	if err != nil {
		var es Errors
		if errors.As(err, &es) && len(es) == 1 {
			return nil, fmt.Errorf("%s: %s", name, es[0].Msg)
		}
		return nil, err
	}
	v.Step.extra = append(v.Step.extra, b...)
	return b, nil
}

// Errorf reports a problem at a position of the file.
func (v *Validation) Errorf(p Pos, format string, args ...any) {
	if p.Line == 0 {
		p = v.Step.Pos
	}
	v.errs.add(p, format, args...)
}

var (
	actionTypes = map[string]ActionType{}
	actionOrder []string
)

// RegisterAction registers an action kind. It panics on a duplicate kind: that
// is a programming error, found by any test.
func RegisterAction(t ActionType) {
	if _, dup := actionTypes[t.Kind]; dup {
		panic(fmt.Sprintf("schema: action %q registered twice", t.Kind))
	}
	actionTypes[t.Kind] = t
	actionOrder = append(actionOrder, t.Kind)
	sort.SliceStable(actionOrder, func(i, j int) bool { return rank(actionOrder[i]) < rank(actionOrder[j]) })
}

// ActionTypes returns the registered action kinds in a stable order.
func ActionTypes() []ActionType {
	out := make([]ActionType, 0, len(actionOrder))
	for _, k := range actionOrder {
		out = append(out, actionTypes[k])
	}
	return out
}

// rank keeps the documented order for the built-in kinds (docs/format.md).
func rank(kind string) int {
	for i, k := range []string{"sql", "shell", "generate", "assert", "confirm"} {
		if k == kind {
			return i
		}
	}
	return 100
}

// actionKinds returns the registered kinds in their stable order; the slice is
// shared: callers must not modify it.
func actionKinds() []string { return actionOrder }
