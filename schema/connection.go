package schema

import "gopkg.in/yaml.v3"

// Connection is a PostgreSQL connection of a runbook: opened lazily, one session.
type Connection struct {
	Name             string            `yaml:"-"`
	Pos              Pos               `yaml:"-"`
	URL              Template          `yaml:"url" required:"true" short:"true" doc:"PostgreSQL connection URL or keyword/value string, usually from a secret param: ${{ params.target_url }}."`
	LockTimeout      *Duration         `yaml:"lock_timeout" doc:"Session lock_timeout (e.g. 5s); how long a statement waits for a lock."`
	StatementTimeout *Duration         `yaml:"statement_timeout" doc:"Session statement_timeout; 0 disables it."`
	ApplicationName  string            `yaml:"application_name" doc:"Session application_name. Default: runbook/<name>/<run id>."`
	Settings         map[string]string `yaml:"settings" doc:"Other session settings, applied with set_config at connect."`
}

// Connections are a runbook's connections in the order they are declared.
type Connections []*Connection

func (cs *Connections) decodeNode(d *decoder, n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		d.errs.add(pos(n), "connections must be a mapping of name to URL or definition, not %s", kindName(n))
		return
	}
	d.eachPair(n, func(k string, kn, vn *yaml.Node) {
		if !nameRe.MatchString(k) {
			d.errs.add(pos(kn), "connection name %q must match %s (it is used as conn.NAME)", k, nameRe)
			return
		}
		c := &Connection{Name: k}
		d.decode(vn, reflectValue(c), "connection "+k)
		*cs = append(*cs, c)
	})
}

// Lookup returns the connection with the given name.
func (cs Connections) Lookup(name string) *Connection {
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Names returns the connections' names in order.
func (cs Connections) Names() []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}
