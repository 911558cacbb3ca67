package executor

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/runbookhq/runbook/actions"
	"github.com/runbookhq/runbook/internal/pgtx"
)

// Format 1 of the state knew two journaled shapes of progress, both of one
// transaction at a time: a generate step's (a count of the statements of its
// frozen list done, and of those known on the server's disk) and an sql
// step's (its outputs once its transaction committed). migrate1 reads a
// format-1 snapshot and journal into the units of format 2: the statements
// unit and blob of generate, the commit unit of sql.

// stepV1 is a step's record of format 1: format 2's header (format 1 had no
// units nor blobs) and the progress of its one transaction at a time.
type stepV1 struct {
	StepState
	Progress  *progressV1 `json:"progress,omitempty"`
	Pending   *pendingV1  `json:"pending_tx,omitempty"`
	Frozen    string      `json:"frozen,omitempty"`
	FrozenLen int         `json:"frozen_statements,omitempty"`
}

type progressV1 struct {
	Done    int             `json:"done"`
	Durable int             `json:"durable"`
	Server  time.Time       `json:"server_start,omitzero"`
	Outputs actions.Outputs `json:"outputs,omitempty"`
}

type pendingV1 struct {
	pgtx.Tx
	Durable int             `json:"durable"`
	Done    int             `json:"done"`
	Outputs actions.Outputs `json:"outputs,omitempty"`
}

type stateV1 struct {
	State
	Steps []*stepV1 `json:"steps"`
}

type recordV1 struct {
	record
	Step *stepV1 `json:"step,omitempty"`
}

func migrate1(store Store, snapshot []byte, journal io.Reader) (*State, error) {
	var v1 stateV1
	if err := json.Unmarshal(snapshot, &v1); err != nil {
		return nil, fmt.Errorf("state %s is not valid JSON: %v", store.Where(), err)
	}
	st := &v1.State
	st.store, st.Format, st.Steps = store, StateFormat, nil
	if st.Servers == nil {
		st.Servers = map[string]Server{}
	}
	steps := v1.Steps
	put := func(s *stepV1) {
		for i, x := range steps {
			if x.ID == s.ID {
				steps[i] = s
				return
			}
		}
		steps = append(steps, s)
	}
	if journal != nil {
		sc := bufio.NewScanner(journal)
		sc.Buffer(make([]byte, 1<<20), 256<<20)
		for sc.Scan() {
			var r recordV1
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				break // a torn last line
			}
			if r.Step != nil {
				put(r.Step)
			}
			st.apply(&r.record)
		}
	}
	for _, s := range steps {
		st.Steps = append(st.Steps, s.migrate())
	}
	// The runbook's copy beside the state, as format 1 kept it.
	st.RunbookCopy = store.Where() + ".runbook.yaml"
	return st, nil
}

func (s *stepV1) migrate() *StepState {
	n := &s.StepState
	if s.Progress == nil && s.Pending == nil {
		return n
	}
	conn := ""
	if s.Pending != nil {
		conn = s.Pending.Conn
	}
	if s.Frozen != "" {
		of := s.FrozenLen
		if of == 0 {
			of = -1 // counted when read
		}
		data := func(done int) json.RawMessage {
			return json.RawMessage(`{"done":` + strconv.Itoa(done) + `,"of":` + strconv.Itoa(of) + `}`)
		}
		n.Blobs = map[string]string{"statements": s.Frozen}
		u := &UnitState{Data: data(0), Conn: conn}
		if p := s.Progress; p != nil {
			u.Data, u.Server = data(p.Done), p.Server
			if p.Done > p.Durable && !p.Server.IsZero() {
				u.AtRisk, u.Durable = true, data(p.Durable)
			}
		}
		if p := s.Pending; p != nil {
			u.Tx = &actions.Tx{Unit: "statements", Tx: p.Tx, Data: data(p.Done)}
		}
		n.Units = map[string]*UnitState{"statements": u}
		return n
	}
	u := &UnitState{Conn: conn}
	if p := s.Progress; p != nil {
		u.Data, _ = json.Marshal(p.Outputs)
		u.Server = p.Server
	}
	if p := s.Pending; p != nil {
		data, _ := json.Marshal(p.Outputs)
		u.Tx = &actions.Tx{Unit: "commit", Tx: p.Tx, Data: data}
	}
	n.Units = map[string]*UnitState{"commit": u}
	return n
}
