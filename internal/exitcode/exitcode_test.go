package exitcode

import (
	"errors"
	"fmt"
	"testing"
)

// coded is an error type of another package that says its own exit code.
type coded struct{}

func (coded) Error() string { return "coded" }
func (coded) ExitCode() int { return Invalid }

func TestOf(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, OK},
		{"plain", errors.New("boom"), StepFailed},
		{"With", With(Refused, errors.New("held")), Refused},
		{"wrapped With", fmt.Errorf("run: %w", With(Approval, errors.New("approve"))), Approval},
		{"own ExitCode", coded{}, Invalid},
		{"wrapped own ExitCode", fmt.Errorf("load: %w", coded{}), Invalid},
		{"With over own ExitCode", With(Interrupted, coded{}), Interrupted},
	} {
		if got := Of(c.err); got != c.want {
			t.Errorf("%s: Of(%v) = %d, want %d", c.name, c.err, got, c.want)
		}
	}
	if With(Refused, nil) != nil {
		t.Errorf("With(Refused, nil) is not nil")
	}
}
