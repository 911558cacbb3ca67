package executor

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/runbookhq/runbook/schema"
)

// TestPlanJSONSharesSteps: the plan's digest and its --format json output,
// which encode the steps once for both, are byte for byte what encoding/json
// gave for the whole plan (the digest of json.Marshal of the plan without its
// digest, file and sources; a json.Encoder with a two-space indent).
func TestPlanJSONSharesSteps(t *testing.T) {
	inline := `version: 1
name: plan-json
description: "Steps with <html>, \"quotes\" and é"
params:
  url: {secret: true, default: 'postgres://app:s3cret@127.0.0.1:5999/app'}
  region: {default: eu}
connections:
  db: ${{ params.url }}
lock: db
steps:
  - id: one
    description: "a <b> & c"
    sql: {on: db, script: "SELECT '<' || '${{ params.region }}'"}
  - id: two
    when: params.region == "eu"
    shell: {run: "echo ${{ params.url }}"}
  - id: three
    name: "Retried, timed, always: \u2028"
    retry: {attempts: 3, delay: 1s, backoff: 2}
    timeout: 30s
    always: true
    when: params.region != "eu"
    sql: {on: db, script: "UPDATE t SET v = $1", args: ['${{ params.region }}', 'é']}
`
	cases := map[string][]byte{"inline.yaml": []byte(inline)}
	files, _ := filepath.Glob("../examples/*.yaml")
	files = append(files, "../runbooks/heroku-to-crunchy-bridge.yaml")
	for _, f := range files {
		cases[f] = nil
	}
	for _, v := range []string{"DATABASE_URL", "SOURCE_DATABASE_URL", "TARGET_DATABASE_URL"} {
		t.Setenv(v, "postgres://app:pw@127.0.0.1:5999/app")
	}
	planned := 0
	for name, src := range cases {
		t.Run(filepath.Base(name), func(t *testing.T) {
			var rb *schema.Runbook
			var err error
			if src != nil {
				rb, err = schema.Load(name, src)
			} else {
				rb, err = schema.LoadFile(name)
			}
			if err != nil {
				t.Fatal(err)
			}
			vals, err := rb.ResolveParams(schema.ParamInputs{})
			if err != nil {
				t.Skipf("params this test does not give: %v", err)
			}
			p, err := NewPlan(rb, vals)
			if err != nil {
				t.Skipf("not plannable without its params: %v", err)
			}
			planned++
			c := *p
			c.Digest, c.Runbook.File = "", ""
			c.Params = append([]PlanParam(nil), p.Params...)
			for i := range c.Params {
				c.Params[i].Source = ""
			}
			b, _ := json.Marshal(c)
			sum := sha256.Sum256(b)
			if want := "sha256:" + hex.EncodeToString(sum[:]); p.Digest != want {
				t.Errorf("digest %s, want %s", p.Digest, want)
			}
			var want, got bytes.Buffer
			enc := json.NewEncoder(&want)
			enc.SetIndent("", "  ")
			if err := enc.Encode(p); err != nil {
				t.Fatal(err)
			}
			if err := p.WriteJSON(&got); err != nil {
				t.Fatal(err)
			}
			if got.String() != want.String() {
				t.Errorf("WriteJSON\n%s\nwant\n%s", got.String(), want.String())
			}
			// Steps replaced after the digest are encoded afresh.
			p.Steps = append([]PlanStep(nil), p.Steps[:len(p.Steps)-1]...)
			got.Reset()
			want.Reset()
			enc.Encode(p)
			if err := p.WriteJSON(&got); err != nil || got.String() != want.String() {
				t.Errorf("WriteJSON after Steps changed: %v\n%s\nwant\n%s", err, got.String(), want.String())
			}
		})
	}
	if planned < 3 {
		t.Errorf("only %d runbooks planned", planned)
	}
}

// TestIndentJSON: indentJSON writes what json.Indent writes for compact
// JSON, brackets, commas, colons and escapes inside strings included.
func TestIndentJSON(t *testing.T) {
	for _, v := range []any{
		map[string]any{},
		[]any{},
		"plain",
		42,
		nil,
		map[string]any{"a": []any{}, "b": map[string]any{}, "c": []any{1, "x", nil, true, map[string]any{"d": []any{[]any{}}}}},
		map[string]any{`k"e,y:{[`: `v\"}],:\\`, "\\": "\\\\\"", "u": "é\u2028<&>\t\n"},
		[]any{map[string]any{"a": 1.5e-9, "b": -0.0}, []any{[]any{[]any{}}, map[string]any{}}},
		big(),
	} {
		src, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		if err := json.Indent(&want, src, "", "  "); err != nil {
			t.Fatal(err)
		}
		if got := indentJSON(nil, src); string(got) != want.String() {
			t.Errorf("%.200s:\n got %.200s\nwant %.200s", src, got, want.String())
		}
		// The same handed to a writer as it goes.
		var got bytes.Buffer
		in := indenter{w: &got}
		in.write(src)
		in.flush()
		if in.err != nil || got.String() != want.String() {
			t.Errorf("%.200s through a writer: %v\n got %.200s\nwant %.200s", src, in.err, got.String(), want.String())
		}
	}
}

// big is a value whose JSON is over 64 KiB, so that an indenter with a
// writer hands it over more than once.
func big() []any {
	var v []any
	for i := range 2000 {
		v = append(v, map[string]any{"i": i, "s": fmt.Sprintf("item, number: %d {%q}", i, "x")})
	}
	return v
}
