package actions

import "testing"

// An approval qualifies when its approver is among the step's approvers (if
// it names any) and is not the run's operator (if not_operator).
func TestQualifies(t *testing.T) {
	for _, c := range []struct {
		name        string
		approvers   []string
		notOperator bool
		by          string
		ok          bool
	}{
		{"no rule", nil, false, "alice", true},
		{"among approvers", []string{"bob", "carol"}, false, "carol", true},
		{"not among approvers", []string{"bob", "carol"}, false, "mallory", false},
		{"the operator, not_operator", nil, true, "alice", false},
		{"another, not_operator", nil, true, "bob", true},
		{"the operator among approvers, not_operator", []string{"alice", "bob"}, true, "alice", false},
		{"approvers match exactly", []string{"bob"}, false, "Bob", false},
	} {
		err := ApprovalRequest{Step: "gate", Approvers: c.approvers, NotOperator: c.notOperator}.Qualifies(c.by, "alice")
		if (err == nil) != c.ok {
			t.Errorf("%s: Qualifies(%s) = %v, want ok %v", c.name, c.by, err, c.ok)
		}
	}
}
