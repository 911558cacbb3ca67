package event

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// sample has a field of every kind the encoder knows.
type sample struct {
	Conn    string            `json:"conn"`
	Count   int               `json:"count"`
	Big     uint64            `json:"big"`
	Port    uint16            `json:"port"`
	Ratio   float64           `json:"ratio"`
	OK      bool              `json:"ok"`
	Took    time.Duration     `json:"duration"`
	At      time.Time         `json:"at"`
	Argv    []string          `json:"argv"`
	Params  map[string]string `json:"params"`
	Row     any               `json:"row,omitempty"`
	Rows    *int              `json:"rows,omitempty"`
	Zero    *int              `json:"zero,omitempty"`
	List    *[]string         `json:"list,omitempty"`
	Counts  Extra             `json:"-"`
	Skipped string            `json:"skipped,omitempty"`
	Hidden  string            `json:"-"`
	Line    string            `json:"message"`
	private int
}

func (sample) Name() string      { return "test.sample" }
func (s sample) Message() string { return s.Line }
func (s sample) Level() Level    { return Warn }

type other struct{}

func (other) Name() string    { return "test.sample" }
func (other) Message() string { return "" }

func logLine(t *testing.T, step string, ev Event) []byte {
	t.Helper()
	var b bytes.Buffer
	zerolog.TimeFieldFormat = time.RFC3339Nano
	l := zerolog.New(&b).With().Timestamp().Str("run_id", "R1").Logger()
	Log(&l, step, ev)
	return b.Bytes()
}

// An event written by Log decodes into the same value, field by field; the
// line has the fields in declaration order, after the envelope.
func TestRoundTrip(t *testing.T) {
	reg := NewRegistry()
	if err := reg.Register(sample{}); err != nil {
		t.Fatal(err)
	}
	three := 3
	at := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	for _, ev := range []sample{
		{Conn: "db", Count: -4, Big: 1 << 60, Port: 5432, Ratio: 0.25, OK: true, Took: 1500 * time.Microsecond, At: at,
			Argv: []string{"pg_dump", "-Fc"}, Params: map[string]string{"a": "1"}, Row: map[string]any{"n": json.Number("12")},
			Rows: &three, Zero: new(int), List: &[]string{"a"}, Counts: Extra{{"rows_a", json.Number("5")}, {"rows_b", json.Number("6")}}, Line: "a line with \"quotes\""},
		{Argv: []string{}, Counts: nil},
	} {
		line := logLine(t, "load", ev)
		rec, err := reg.Decode(line)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if rec.Level != Warn || rec.RunID != "R1" || rec.Step != "load" || rec.Message != ev.Line || rec.Time.IsZero() {
			t.Errorf("envelope %+v from %s", rec, line)
		}
		got, ok := rec.Event.(sample)
		if !ok {
			t.Fatalf("decoded as %T", rec.Event)
		}
		if !reflect.DeepEqual(got, ev) {
			t.Errorf("round trip of\n%s\ngot  %+v\nwant %+v", line, got, ev)
		}
	}
	line := string(logLine(t, "load", sample{Conn: "db", Counts: Extra{{"rows_b", 1}, {"rows_a", 2}}, Line: "m"}))
	order := []string{`"level":"warn"`, `"run_id":"R1"`, `"step":"load"`, `"event":"test.sample"`, `"conn":"db"`, `"count":0`,
		`"duration":0`, `"argv":[]`, `"params":null`, `"rows_b":1,"rows_a":2`, `"time":`, `"message":"m"`}
	last := -1
	for _, want := range order {
		i := strings.Index(line, want)
		if i < 0 || i < last {
			t.Fatalf("%s not in place in %s", want, line)
		}
		last = i
	}
	for _, absent := range []string{"skipped", "Hidden", "private", `"row"`, `"rows"`} {
		if strings.Contains(line, absent) {
			t.Errorf("%s written: %s", absent, line)
		}
	}
}

func TestRegistry(t *testing.T) {
	reg := NewRegistry()
	if err := reg.Register(sample{}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(sample{}); err != nil {
		t.Errorf("registering the same type again: %v", err)
	}
	if err := reg.Register(other{}); err == nil {
		t.Error("a second type under one name was accepted")
	}
	if err := reg.Register(&sample{}); err == nil {
		t.Error("a pointer prototype was accepted")
	}
	rec, err := reg.Decode([]byte(`{"level":"info","event":"x.y","step":"s","a":1,"message":"hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	u, ok := rec.Event.(Unknown)
	if !ok || u.Name() != "x.y" || u.Message() != "hi" || Str(u.Fields["a"]) != "1" || rec.Step != "s" {
		t.Errorf("unknown event decoded as %#v", rec)
	}
	if rec, err := reg.Decode([]byte(`{"level":"info","run_id":"R"}`)); err != nil || rec.Event.Name() != "" || rec.RunID != "R" {
		t.Errorf("a line without an event: %+v, %v", rec, err)
	}
	for _, bad := range []string{`not json`, `null`, `[1]`} {
		if _, err := reg.Decode([]byte(bad)); err == nil {
			t.Errorf("%s decoded", bad)
		}
	}
	if got := reg.Names(); !reflect.DeepEqual(got, []string{"test.sample"}) {
		t.Errorf("names %v", got)
	}
}

// An old line whose fields have other types than today's decodes as far as
// it can, never panicking.
func TestDecodeOddValues(t *testing.T) {
	reg := NewRegistry()
	reg.Register(sample{})
	rec, err := reg.Decode([]byte(`{"event":"test.sample","count":"7","big":-1,"port":70000,"ok":"true","duration":"2s","at":"yesterday","argv":"x","params":[1],"rows":null}`))
	if err != nil {
		t.Fatal(err)
	}
	s := rec.Event.(sample)
	if s.Count != 7 || s.Big != 0 || s.Port != 0 || !s.OK || s.Took != 2*time.Second || !s.At.IsZero() || len(s.Argv) != 0 || s.Params != nil || s.Rows != nil {
		t.Errorf("decoded %+v", s)
	}
}
