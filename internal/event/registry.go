package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"time"
)

// Registry maps event names to their types, so that a log line decodes into
// the event that wrote it.
type Registry struct {
	mu    sync.RWMutex
	types map[string]reflect.Type
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{types: map[string]reflect.Type{}}
}

// Default is the registry the emitters register their events with (in their
// package's init) and Decode reads.
var Default = NewRegistry()

// Register records the type of each prototype under its Name. Prototypes
// are struct values (not pointers). A name registered twice with another
// type is an error.
func (r *Registry) Register(protos ...Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range protos {
		t := reflect.TypeOf(p)
		if t.Kind() != reflect.Struct {
			return fmt.Errorf("event %s: register a struct value, not a %s", p.Name(), t.Kind())
		}
		name := p.Name()
		if old, ok := r.types[name]; ok && old != t {
			return fmt.Errorf("event %s is registered twice: %s and %s", name, old, t)
		}
		r.types[name] = t
		planOf(t)
	}
	return nil
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.types))
	for n := range r.types {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// New returns a zero event of the named type, and false when the name is
// not registered.
func (r *Registry) New(name string) (Event, bool) {
	r.mu.RLock()
	t, ok := r.types[name]
	r.mu.RUnlock()
	if !ok {
		return nil, false
	}
	return reflect.New(t).Elem().Interface().(Event), true
}

// MustRegister registers with Default and panics on a conflict: for init
// functions, where a conflict is a programming error.
func MustRegister(protos ...Event) {
	if err := Default.Register(protos...); err != nil {
		panic(err)
	}
}

// ErrNotEvent is returned by Decode for a line that is not a JSON object.
var ErrNotEvent = errors.New("not an event line")

// Decode reads one log line (a JSON object) into its record, with Default.
func Decode(line []byte) (Record, error) { return Default.Decode(line) }

// Decode reads one log line into its record: the envelope, and the event as
// its registered type (Unknown when the name is not registered).
func (r *Registry) Decode(line []byte) (Record, error) {
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrNotEvent, err)
	}
	return r.FromFields(m)
}

// FromFields builds a record from a line's decoded fields (numbers as
// json.Number).
func (r *Registry) FromFields(m map[string]any) (Record, error) {
	if m == nil {
		return Record{}, ErrNotEvent
	}
	name := Str(m["event"]) // a line without one is an Unknown named ""
	rec := Record{Level: ParseLevel(Str(m["level"])), RunID: Str(m["run_id"]), Step: Str(m["step"]), Message: Str(m["message"])}
	if t, err := time.Parse(time.RFC3339Nano, Str(m["time"])); err == nil {
		rec.Time = t
	}
	r.mu.RLock()
	t, known := r.types[name]
	r.mu.RUnlock()
	if !known {
		fields := map[string]any{}
		for k, v := range m {
			if !envelope[k] {
				fields[k] = v
			}
		}
		rec.Event = Unknown{Event: name, Msg: rec.Message, Fields: fields}
		return rec, nil
	}
	ptr := reflect.New(t)
	decodeInto(ptr, m)
	rec.Event = ptr.Elem().Interface().(Event)
	return rec, nil
}
