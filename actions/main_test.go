package actions

import (
	"testing"

	"github.com/runbookhq/runbook/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
