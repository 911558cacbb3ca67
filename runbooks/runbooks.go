// Package runbooks is the library of vetted runbooks built into the binary.
// A runbook here is used as builtin:NAME wherever a runbook file is accepted.
package runbooks

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/runbookhq/runbook/schema"
)

//go:embed *.yaml
var files embed.FS

// Prefix marks a built-in runbook reference: builtin:NAME.
const Prefix = "builtin:"

// Names lists the built-in runbooks.
func Names() []string {
	entries, _ := fs.ReadDir(files, ".")
	var out []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Source returns a built-in runbook's YAML.
func Source(name string) ([]byte, error) {
	b, err := files.ReadFile(name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("no built-in runbook %q (built in: %s)", name, strings.Join(Names(), ", "))
	}
	return b, nil
}

// Read returns the bytes of a runbook reference: builtin:NAME or a file path.
func Read(ref string) ([]byte, error) {
	if name, ok := strings.CutPrefix(ref, Prefix); ok {
		b, err := Source(name)
		if err != nil {
			return nil, schema.Errors{{File: ref, Msg: err.Error()}}
		}
		return b, nil
	}
	return schema.ReadFile(ref)
}

// Load reads and loads a runbook reference.
func Load(ref string) (*schema.Runbook, error) {
	src, err := Read(ref)
	if err != nil {
		return nil, err
	}
	return schema.Load(ref, src)
}

// embeddedModeline is the editor modeline of the runbooks in this directory:
// their schema, relative to the repository.
const embeddedModeline = "# yaml-language-server: $schema=../schema/runbook.schema.json\n"

// Export returns a built-in runbook's YAML to copy as the start of one's own
// (runbook show): the same document, its editor modeline pointing at
// runbook.schema.json beside the copy (which `runbook schema` writes) instead
// of this repository's schema directory.
func Export(name string) ([]byte, error) {
	src, err := Source(name)
	if err != nil {
		return nil, err
	}
	if rest, ok := bytes.CutPrefix(src, []byte(embeddedModeline)); ok {
		head := "# yaml-language-server: $schema=runbook.schema.json\n" +
			"# (write the schema beside this file with: runbook schema > runbook.schema.json)\n"
		return append([]byte(head), rest...), nil
	}
	return src, nil
}
