package schema

import (
	"reflect"

	"gopkg.in/yaml.v3"
)

// Step is one step of a runbook: common controls and exactly one action.
type Step struct {
	ID          string    `yaml:"id" required:"true" pattern:"^[a-z0-9][a-z0-9_-]*$" doc:"Unique id of the step, used by --from, --only, --rerun, --approve and steps.ID in expressions."`
	Name        string    `yaml:"name" doc:"Human title of the step."`
	Description string    `yaml:"description" doc:"What the step does and why; shown by plan."`
	When        *Expr     `yaml:"when" doc:"Expression; when false the step is skipped. Example: params.heroku_app != \"\""`
	Timeout     *Duration `yaml:"timeout" doc:"Time limit of each attempt (Go duration: 30s, 5m)."`
	Retry       *Retry    `yaml:"retry" doc:"Run the step again after a failure."`
	OnFailure   string    `yaml:"on_failure" enum:"stop,continue" default:"stop" doc:"What a failure of this step does to the run: stop (default) or continue with the next step."`
	Always      bool      `yaml:"always" doc:"Run even after an earlier step failed, for clean-up such as re-enabling pgaudit."`
	Idempotent  bool      `yaml:"idempotent" doc:"Safe to run again after an interruption: resume re-runs it instead of stopping."`

	Pos  Pos       `yaml:"-"`
	Keys Positions `yaml:"-"`
	// Index is the step's place in the runbook, from 0.
	Index int `yaml:"-"`
	// Kind is the action's kind and Action its decoded config.
	Kind   string `yaml:"-"`
	Action Action `yaml:"-"`
	// ActionPos is the position of the action's key.
	ActionPos Pos `yaml:"-"`
	// Digest is the SHA-256 of the step's definition (comments and layout
	// excluded): resume refuses when a completed step's digest changed.
	Digest string `yaml:"-"`

	node  *yaml.Node
	extra []byte // content of files the step refers to, part of its digest
	// actionErr is set when the action's config did not decode: its
	// Validate would only report what is missing because of that.
	actionErr bool
}

// Title returns the step's name, or its id when it has none.
func (s *Step) Title() string {
	if s.Name != "" {
		return s.Name
	}
	return s.ID
}

// Retry says how often and how patiently a step is retried. Its JSON form
// (plan --format json, docs/plan.md) uses the document's keys.
type Retry struct {
	Attempts int       `yaml:"attempts" json:"attempts" required:"true" minimum:"1" doc:"Total attempts, the first included."`
	Delay    *Duration `yaml:"delay" json:"delay,omitempty" default:"1s" doc:"Wait before the second attempt."`
	Backoff  float64   `yaml:"backoff" json:"backoff,omitempty" minimum:"1" default:"1" doc:"Factor applied to the delay after each attempt (2 doubles it)."`
	MaxDelay *Duration `yaml:"max_delay" json:"max_delay,omitempty" doc:"Upper bound of the delay."`
	On       string    `yaml:"on" json:"on,omitempty" enum:"transient,any" default:"transient" doc:"Which failures of sql and generate are retried: transient (SQLSTATE 40001, 40P01, 55P03, class 08; the default) or any. Other actions retry on any failure."`
}

// Steps are a runbook's steps in order.
type Steps []*Step

func (ss *Steps) decodeNode(d *decoder, n *yaml.Node) {
	if n.Kind != yaml.SequenceNode {
		d.errs.add(pos(n), "steps must be a list, not %s", kindName(n))
		return
	}
	if len(n.Content) == 0 {
		d.errs.add(pos(n), "steps: a runbook needs at least one step")
		return
	}
	for i, c := range n.Content {
		d.step = i
		s := &Step{Index: i}
		d.decode(c, reflect.ValueOf(s).Elem(), "step")
		*ss = append(*ss, s)
	}
	d.step = -1
}

func (s *Step) decodeNode(d *decoder, n *yaml.Node) {
	s.Pos, s.node = pos(n), n
	if n.Kind != yaml.MappingNode {
		d.errs.add(pos(n), "a step must be a mapping with an id and one action, not %s", kindName(n))
		return
	}
	common := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column}
	var actionKeys, actionVals []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if _, ok := actionTypes[k.Value]; ok && k.Kind == yaml.ScalarNode {
			if first := findKey(actionKeys, k.Value); first != nil {
				d.errs.add(pos(k), "duplicate key %q (first at line %d)", k.Value, first.Line)
				continue
			}
			actionKeys = append(actionKeys, k)
			actionVals = append(actionVals, n.Content[i+1])
			continue
		}
		common.Content = append(common.Content, k, n.Content[i+1])
	}
	saved := d.extraKeys
	d.extraKeys = actionKinds()
	d.decodeStruct(common, reflect.ValueOf(s).Elem(), "step")
	d.extraKeys = saved
	s.Pos = pos(n)

	name := s.ID
	if name == "" {
		name = "step"
	} else {
		name = "step " + name
	}
	switch len(actionKeys) {
	case 0:
		d.errs.add(pos(n), "%s has no action: add exactly one of %s", name, joinQuoted(actionKinds()))
		return
	case 1:
	default:
		for _, k := range actionKeys[1:] {
			d.errs.add(pos(k), "%s has more than one action (%s at line %d, and %s): a step has exactly one",
				name, actionKeys[0].Value, actionKeys[0].Line, k.Value)
		}
		return
	}
	t := actionTypes[actionKeys[0].Value]
	s.Kind, s.ActionPos = t.Kind, pos(actionKeys[0])
	a := t.New()
	before := len(d.errs.errs)
	d.decode(actionVals[0], reflect.ValueOf(a).Elem(), t.Kind)
	s.Action, s.actionErr = a, len(d.errs.errs) > before
}

func findKey(keys []*yaml.Node, name string) *yaml.Node {
	for _, k := range keys {
		if k.Value == name {
			return k
		}
	}
	return nil
}

// Source renders the step's definition as YAML (normalized layout, comments
// kept), for showing what changed between two versions of a runbook.
func (s *Step) Source() string {
	if s.node == nil {
		return ""
	}
	b, err := yaml.Marshal(s.node)
	if err != nil {
		return ""
	}
	return string(b)
}
