package schema

import "gopkg.in/yaml.v3"

// ConnRef names a connection of the runbook's `connections`.
type ConnRef struct {
	Name string
	Pos  Pos
}

func (c *ConnRef) decodeNode(d *decoder, n *yaml.Node) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		d.errs.add(pos(n), "%s must be the name of a connection, not %s", d.name("connection"), kindName(n))
		return
	}
	c.Name, c.Pos = n.Value, pos(n)
	d.connRefs = append(d.connRefs, c)
}

// String returns the connection's name.
func (c ConnRef) String() string { return c.Name }

// MarshalText renders the name for JSON.
func (c ConnRef) MarshalText() ([]byte, error) { return []byte(c.Name), nil }
