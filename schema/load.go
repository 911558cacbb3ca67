package schema

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

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
	src, err := readAll(f)
	if err != nil {
		return nil, Errors{{File: path, Msg: cleanOSError(err)}}
	}
	if len(src) > MaxFileSize {
		return nil, tooLarge(path)
	}
	return src, nil
}

// readAll reads f to its end, or to one byte past MaxFileSize, into a buffer
// of f's size, as os.ReadFile does: io.ReadAll's doubling would allocate and
// copy about twice the file.
func readAll(f *os.File) ([]byte, error) {
	size := 512
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		size = int(min(fi.Size(), MaxFileSize)) + 1
	}
	b := make([]byte, 0, size)
	for len(b) <= MaxFileSize {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := f.Read(b[len(b):min(cap(b), MaxFileSize+1)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

func tooLarge(file string) Errors {
	return Errors{{File: file, Pos: Pos{1, 1}, Msg: fmt.Sprintf("file is larger than %d MiB", MaxFileSize>>20)}}
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
	if len(src) > MaxFileSize {
		return nil, tooLarge(file)
	}
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
	rb.Warnings = errs.warns.sorted()
	return rb, nil
}

// parseYAML parses exactly one YAML document, turning the parser's errors (and
// any panic of it on hostile input) into positioned errors.
func parseYAML(errs *errList, src []byte) (root *yaml.Node) {
	if blank(src) {
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
		addYAMLError(errs, src, dec, err)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		errs.add(pos(&extra), "only one YAML document per file (found a second one after ---)")
		return nil
	} else if err != io.EOF {
		addYAMLError(errs, src, dec, err)
		return nil
	}
	if len(doc.Content) == 0 {
		errs.add(Pos{1, 1}, "file is empty")
		return nil
	}
	if !checkAliases(errs, doc.Content[0]) {
		return nil
	}
	return doc.Content[0]
}

// maxAliasNodes bounds the nodes that aliases may add to a document once
// expanded: reusing a step or a list is fine, a billion laughs is not.
const maxAliasNodes = 100_000

// checkAliases rejects, before anything is decoded, a document whose aliases
// expand it by more than maxAliasNodes nodes, or refer to a node that contains
// them. It visits each node of the file once.
func checkAliases(errs *errList, root *yaml.Node) bool {
	aliases := 0
	var count func(n *yaml.Node) int
	count = func(n *yaml.Node) int {
		if n.Kind == yaml.AliasNode {
			aliases++
		}
		c := 1
		for _, k := range n.Content {
			c += count(k)
		}
		return c
	}
	real := count(root)
	if aliases == 0 {
		return true
	}
	limit := real + maxAliasNodes + 1 // sizes are capped here: no overflow

	// Only anchored nodes can be reached twice (or from inside themselves):
	// their sizes are remembered.
	const visiting = -1
	size := map[*yaml.Node]int{}
	var worst, cycle *yaml.Node
	worstSize := 0
	var walk func(n *yaml.Node) int
	walk = func(n *yaml.Node) int {
		if s, ok := size[n]; ok {
			return max(s, 0)
		}
		if n.Anchor != "" {
			size[n] = visiting
		}
		s := 1
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			if size[n.Alias] == visiting {
				cycle = n
			} else if s = walk(n.Alias); s > worstSize {
				worst, worstSize = n, s
			}
		}
		for _, c := range n.Content {
			s = min(s+walk(c), limit)
		}
		if n.Anchor != "" {
			size[n] = s
		}
		return s
	}
	total := walk(root)
	switch {
	case cycle != nil:
		errs.add(pos(cycle), "alias *%s refers to a node that contains it", cycle.Value)
		return false
	case total > real+maxAliasNodes:
		errs.add(pos(worst), "document too large: its aliases expand it by more than %d nodes (alias bomb?)", maxAliasNodes)
		return false
	}
	return true
}

// blank reports whether src holds nothing but white space and comment lines.
func blank(src []byte) bool {
	for len(src) > 0 {
		line := src
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			line, src = src[:i], src[i+1:]
		} else {
			src = nil
		}
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			return false
		}
	}
	return true
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// addYAMLError reports a YAML syntax error. yaml.v3's message carries a line
// only, and for parser errors the (0-based) line of the enclosing construct
// rather than of the problem; its parser knows both positions exactly, so they
// are read from it (see yamlFailureOf). The message's line is the fallback.
func addYAMLError(errs *errList, src []byte, dec *yaml.Decoder, err error) {
	if f, ok := yamlFailureOf(dec); ok {
		switch f.kind {
		case yamlReaderError:
			if strings.Contains(f.problem, "UTF-8") {
				// yaml.v3 may blame a byte after the one that starts the
				// bad sequence: find that one.
				if i := invalidUTF8(src); i >= 0 {
					errs.add(offsetPos(src, i), "invalid YAML: the file is not UTF-8 text (byte 0x%02X): save it as UTF-8", src[i])
					return
				}
			}
			msg := f.problem
			if f.value >= 0 {
				msg += fmt.Sprintf(" (%U)", f.value)
			}
			errs.add(offsetPos(src, f.offset), "invalid YAML: %s", msg)
			return
		case yamlScannerError, yamlParserError:
			at, msg := f.problemAt, f.problem
			switch {
			case strings.Contains(f.problem, "tab"):
				msg += ": YAML is indented with spaces only"
			case runeAt(src, at) == '\t':
				msg += ": a tab; YAML is indented with spaces only"
			case f.context != "" && !f.contextAt.Less(at):
			case f.context != "" && (strings.Contains(msg, "end of stream") || !at.Less(endPos(src))):
				// The file ends inside a quote or a bracket: point at where it opens.
				at, msg = f.contextAt, fmt.Sprintf("%s (%s that starts here, and is never closed)", msg, f.context)
			case f.context != "":
				msg = fmt.Sprintf("%s (%s at line %d, column %d)", msg, f.context, f.contextAt.Line, f.contextAt.Col)
			}
			if strings.HasPrefix(f.problem, "did not find expected key") || strings.HasPrefix(f.problem, "did not find expected '-'") {
				msg += ": check the indentation"
			}
			errs.add(at, "invalid YAML: %s", msg)
			return
		case yamlNoError:
			// Errors of yaml.v3's composer (unknown anchor …) are raised at
			// the event being composed.
			errs.add(f.eventAt, "invalid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
			return
		}
	}
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
	errs.add(Pos{line, 1}, "invalid YAML: %s", msg)
}

// yaml.v3's yaml_error_type_t values.
const (
	yamlNoError      = 0
	yamlReaderError  = 2
	yamlScannerError = 3
	yamlParserError  = 4
)

// yamlFailure is the state of yaml.v3's parser after it failed.
type yamlFailure struct {
	kind                          int
	problem, context              string
	offset, value                 int
	problemAt, contextAt, eventAt Pos
}

// yamlFailureOf reads the failed parser's error state out of a yaml.Decoder
// through reflection (yaml.v3 is frozen at v3.0.1: its fields cannot move
// under us, and any surprise falls back to the message). ok is false when the
// state cannot be read.
func yamlFailureOf(dec *yaml.Decoder) (f yamlFailure, ok bool) {
	defer func() {
		if recover() != nil {
			f, ok = yamlFailure{}, false
		}
	}()
	if dec == nil {
		return f, false
	}
	p := reflect.ValueOf(dec).Elem().FieldByName("parser")
	if p.Kind() != reflect.Pointer || p.IsNil() {
		return f, false
	}
	p = p.Elem()
	yp := p.FieldByName("parser")
	mark := func(v reflect.Value) Pos {
		return Pos{Line: int(v.FieldByName("line").Int()) + 1, Col: int(v.FieldByName("column").Int()) + 1}
	}
	f.kind = int(yp.FieldByName("error").Int())
	f.problem = yp.FieldByName("problem").String()
	f.context = yp.FieldByName("context").String()
	f.offset = int(yp.FieldByName("problem_offset").Int())
	f.value = int(yp.FieldByName("problem_value").Int())
	f.problemAt = mark(yp.FieldByName("problem_mark"))
	f.contextAt = mark(yp.FieldByName("context_mark"))
	f.eventAt = mark(p.FieldByName("event").FieldByName("start_mark"))
	return f, true
}

// offsetPos returns the position of a byte offset: lines end at \n, \r\n or
// \r, as in YAML; columns count characters.
func offsetPos(src []byte, off int) Pos {
	off = max(0, min(off, len(src)))
	line, start := 1, 0
	for i := 0; i < off; i++ {
		switch src[i] {
		case '\n':
			line, start = line+1, i+1
		case '\r':
			if i+1 < len(src) && src[i+1] == '\n' {
				continue
			}
			line, start = line+1, i+1
		}
	}
	return Pos{Line: line, Col: utf8.RuneCount(src[start:off]) + 1}
}

// invalidUTF8 returns the offset of the first byte of src that is not part of
// valid UTF-8, or -1.
func invalidUTF8(src []byte) int {
	for i := 0; i < len(src); {
		r, size := utf8.DecodeRune(src[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return -1
}

// endPos is the position just after the last character of src that is not
// white space.
func endPos(src []byte) Pos {
	return offsetPos(src, len(bytes.TrimRight(src, " \t\r\n")))
}

// runeAt returns the character at a position of src, or -1.
func runeAt(src []byte, p Pos) rune {
	lines := strings.Split(string(src), "\n")
	if p.Line < 1 || p.Line > len(lines) {
		return -1
	}
	for i, r := range []rune(lines[p.Line-1]) {
		if i == p.Col-1 {
			return r
		}
	}
	return -1
}

func validate(rb *Runbook, d *decoder) {
	errs := d.errs
	if rb.Version != 0 && rb.Version != Version {
		errs.add(rb.Keys["version"], "unsupported version %d: this runbook tool reads version %d", rb.Version, Version)
	}

	sc := &scope{params: map[string]bool{}, free: map[string]bool{}, conns: map[string]bool{}, steps: map[string]int{}}
	for _, p := range rb.Params {
		sc.params[p.Name] = true
		if p.Pattern == "" && len(p.Enum) == 0 {
			sc.free[p.Name] = true
		}
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
		if v, ok := s.Action.(Validator); ok && !s.actionErr {
			v.Validate(&Validation{errs: errs, Step: s, dir: dir})
		}
		if s.node != nil {
			s.Digest = digestNode(s.node, s.extra)
		}
	}
}

func joinQuoted(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}
