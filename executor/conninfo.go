package executor

import (
	"errors"
	"os"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/runbookhq/runbook/schema"
)

// ParseConnInfo reads a connection string's facts without connecting. The
// error never contains the string itself (it may hold a password).
func ParseConnInfo(conn string) (schema.ConnInfo, error) {
	cfg, err := pgx.ParseConfig(conn)
	if err != nil {
		return schema.ConnInfo{}, errors.New("invalid connection string (check its syntax; it is not shown because it may contain a password)")
	}
	return schema.ConnInfo{Host: cfg.Host, Port: int(cfg.Port), Database: cfg.Database, User: cfg.User}, nil
}

// sessionSettings are the session settings a connection asks for, as the plan
// shows them (application_name is added at run time).
func sessionSettings(c *schema.Connection) map[string]string {
	m := map[string]string{}
	for k, v := range c.Settings {
		m[k] = v
	}
	if c.LockTimeout != nil {
		m["lock_timeout"] = pgDuration(c.LockTimeout.D().Milliseconds())
	}
	if c.StatementTimeout != nil {
		m["statement_timeout"] = pgDuration(c.StatementTimeout.D().Milliseconds())
	}
	if c.ApplicationName != "" {
		m["application_name"] = c.ApplicationName
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

func pgDuration(ms int64) string {
	if ms == 0 {
		return "0"
	}
	return strconv.FormatInt(ms, 10) + "ms"
}

// environ returns the process environment as a map, for env.NAME.
func environ() map[string]string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}
