package actions

import (
	"context"
	"fmt"
)

// Preview runs the generator query inside a READ ONLY transaction, rolled back,
// and returns the statements the step would execute now (plan --generate). It
// executes none of them.
func (a *Generate) Preview(ctx context.Context, rc *Context) ([]string, error) {
	conn, err := rc.Conns.Conn(ctx, a.On.Name)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "BEGIN TRANSACTION READ ONLY"); err != nil {
		return nil, rc.Redact.Error(fmt.Errorf("plan: starting a read-only transaction: %w", err))
	}
	defer conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
	list := []string{}
	if _, err := a.generate(ctx, rc, func(s string) error { list = append(list, s); return nil }); err != nil {
		return nil, err
	}
	return list, nil
}
