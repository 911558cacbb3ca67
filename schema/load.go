package schema

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// LoadFile reads and loads a runbook from a file.
func LoadFile(path string) (*Runbook, error) {
	src, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Load(path, src)
}

// ReadFile reads a runbook or vars file, refusing files larger than MaxFileSize.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: cleanOSError(err)}}
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, Errors{{File: path, Msg: cleanOSError(err)}}
	}
	if len(src) > MaxFileSize {
		return nil, Errors{{File: path, Pos: Pos{1, 1}, Msg: fmt.Sprintf("file is larger than %d MiB", MaxFileSize>>20)}}
	}
	return src, nil
}

func cleanOSError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// Load decodes, validates and compiles a runbook. On failure the error is
// Errors: every problem found, each at FILE:LINE:COL.
func Load(file string, src []byte) (*Runbook, error) {
	errs := &errList{file: file, src: src}
	root := parseYAML(errs, src)
	if root == nil {
		return nil, errs.err()
	}
	rb := &Runbook{File: file, Source: src}
	sum := sha256.Sum256(src)
	rb.Digest = hex.EncodeToString(sum[:])

	d := newDecoder(errs)
	if root.Kind != yaml.MappingNode {
		errs.add(pos(root), "a runbook must be a mapping with version, name and steps, not %s", kindName(root))
		return nil, errs.err()
	}
	d.decode(root, reflect.ValueOf(rb).Elem(), "runbook")
	if d.budget < 0 {
		return nil, errs.err()
	}
	validate(rb, d)
	if err := errs.err(); err != nil {
		return nil, err
	}
	return rb, nil
}

// parseYAML parses exactly one YAML document, turning the parser's errors (and
// any panic of it on hostile input) into positioned errors.
func parseYAML(errs *errList, src []byte) (root *yaml.Node) {
	if len(bytes.TrimSpace(stripComments(src))) == 0 {
		errs.add(Pos{1, 1}, "file is empty: a runbook needs at least version, name and steps")
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			errs.add(Pos{1, 1}, "cannot parse YAML: %v", r)
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		addYAMLError(errs, src, err)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		errs.add(pos(&extra), "only one YAML document per file (found a second one after ---)")
		return nil
	} else if err != io.EOF {
		addYAMLError(errs, src, err)
		return nil
	}
	if len(doc.Content) == 0 {
		errs.add(Pos{1, 1}, "file is empty")
		return nil
	}
	return doc.Content[0]
}

func stripComments(src []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(src, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, t...)
		}
	}
	return out
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func addYAMLError(errs *errList, src []byte, err error) {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msg = strings.Join(te.Errors, "; ")
	}
	line := 1
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	col := 1
	lines := strings.Split(string(src), "\n")
	if line >= 1 && line <= len(lines) {
		if i := strings.IndexByte(lines[line-1], '\t'); i >= 0 {
			col = i + 1
			msg += " (a tab: YAML is indented with spaces only)"
		}
	}
	errs.add(Pos{line, col}, "invalid YAML: %s", msg)
}

func validate(rb *Runbook, d *decoder) {
	errs := d.errs
	if rb.Version != 0 && rb.Version != Version {
		errs.add(rb.Keys["version"], "unsupported version %d: this runbook tool reads version %d", rb.Version, Version)
	}
	if _, ok := rb.Keys["steps"]; ok && len(rb.Steps) == 0 {
		errs.add(rb.Keys["steps"], "steps: a runbook needs at least one step")
	}

	sc := &scope{params: map[string]bool{}, conns: map[string]bool{}, steps: map[string]int{}}
	for _, p := range rb.Params {
		sc.params[p.Name] = true
	}
	for _, c := range rb.Connections {
		sc.conns[c.Name] = true
	}
	for _, s := range rb.Steps {
		if s.ID == "" {
			continue
		}
		if first, dup := sc.steps[s.ID]; dup {
			errs.add(s.Keys["id"], "duplicate step id %q (first at line %d)", s.ID, rb.Steps[first].Pos.Line)
			continue
		}
		sc.steps[s.ID] = s.Index
		sc.ids = append(sc.ids, s.ID)
	}
	for _, ref := range d.connRefs {
		if ref.Name != "" && !sc.conns[ref.Name] {
			if len(rb.Connections) == 0 {
				errs.add(ref.Pos, "undefined connection %q: the runbook has no connections", ref.Name)
			} else {
				errs.add(ref.Pos, "undefined connection %q%s (defined: %s)", ref.Name, suggest(ref.Name, rb.Connections.Names()), strings.Join(rb.Connections.Names(), ", "))
			}
		}
	}
	for _, site := range d.sites {
		sc.compile(errs, site)
	}
	dir := ""
	if !strings.HasPrefix(rb.File, "builtin:") {
		dir = filepath.Dir(rb.File)
	}
	for _, s := range rb.Steps {
		if v, ok := s.Action.(Validator); ok {
			v.Validate(&Validation{errs: errs, Step: s, dir: dir})
		}
		if s.node != nil {
			s.Digest = digestNode(s.node, s.extra)
		}
	}
}

// digestNode hashes a node's content independently of comments, quoting and
// layout.
func digestNode(n *yaml.Node, extra []byte) string {
	var v any
	if err := n.Decode(&v); err != nil {
		v = n.Value
	}
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(fmt.Sprint(v))
	}
	h := sha256.New()
	h.Write(b)
	h.Write(extra)
	return hex.EncodeToString(h.Sum(nil))
}

func joinQuoted(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}
