package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/runbookhq/runbook/internal/pgtest"
)

// cluster is a throwaway PostgreSQL cluster started by the suite with
// pgtest.Start: its own initdb, its own port on 127.0.0.1, trust
// authentication for "postgres", and PostgreSQL's default durability (fsync,
// synchronous_commit and full_page_writes on, pgtest.WithFsync), so that every
// commit costs what it costs in production. It is stopped and removed by
// Stop, and by pgtest's watchdog if the suite dies without stopping it.
type cluster struct {
	name string
	*pgtest.Server
}

// startCluster starts a cluster; settings go to its postgresql.conf.
func startCluster(name string, settings [][2]string) (*cluster, error) {
	opts := []pgtest.Option{pgtest.WithFsync()}
	for _, kv := range settings {
		opts = append(opts, pgtest.WithSetting(kv[0], kv[1]))
	}
	srv, err := pgtest.Start(opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", name, err)
	}
	return &cluster{name: name, Server: srv}, nil
}

// env is the libpq environment that points psql, pg_dump … at database db.
func (c *cluster) env(db string) []string {
	return []string{"PGHOST=" + c.Host, "PGPORT=" + strconv.Itoa(c.Port), "PGUSER=" + c.User, "PGDATABASE=" + db, "PGSSLMODE=disable"}
}

// exec runs SQL (several statements allowed) on database db.
func (c *cluster) exec(db, sql string) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.URL(db))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.PgConn().Exec(ctx, sql).ReadAll()
	if err != nil {
		return fmt.Errorf("%s: %w\nSQL: %.300s", c.name, err, sql)
	}
	return nil
}

// value runs a query that returns one value and returns it as text.
func (c *cluster) value(db, sql string) (string, error) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.URL(db))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	res := conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return "", fmt.Errorf("%s: %w\nSQL: %.300s", c.name, res.Err, sql)
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		return "", fmt.Errorf("%s: %d rows, want one value\nSQL: %.300s", c.name, len(res.Rows), sql)
	}
	return string(res.Rows[0][0]), nil
}

// checkpoint flushes the cluster's dirty buffers, so that a run does not
// pay for the checkpoint of the run before it.
func (c *cluster) checkpoint() error { return c.exec("postgres", "CHECKPOINT") }

// freshCopy returns what runs before each copy from src into dst: database
// db dropped and created empty on dst, then a checkpoint on both clusters,
// so that no run pays for the one before.
func freshCopy(src, dst *cluster, db string) func() error {
	return func() error {
		if err := dst.exec("postgres", fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", db)); err != nil {
			return err
		}
		if err := dst.exec("postgres", "CREATE DATABASE "+db); err != nil {
			return err
		}
		if err := src.checkpoint(); err != nil {
			return err
		}
		return dst.checkpoint()
	}
}

// version is the server's version string.
func (c *cluster) version() string {
	v, _ := c.value("postgres", "SHOW server_version")
	return v
}

// tail returns the last n bytes of s, for error messages.
func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
