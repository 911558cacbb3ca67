package event

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Encoder receives an event's fields, in order (see Encode).
type Encoder interface {
	Str(key, val string)
	Strs(key string, val []string)
	Int(key string, val int64)
	Uint(key string, val uint64)
	Float(key string, val float64)
	Bool(key string, val bool)
	Dur(key string, val time.Duration)
	Time(key string, val time.Time)
	// Any writes a value as encoding/json does (maps, rows, nil).
	Any(key string, val any)
}

// Extra holds fields whose names are not known in advance (a comparison's
// rows_<connection> counts). As an event field (any name, any tag) its pairs
// are written in order among the event's fields; decoding fills it with the
// line's fields that no other field of the event claims, sorted by name.
type Extra []Pair

// Pair is one field of an Extra.
type Pair struct {
	Key   string
	Value any
}

// Get returns the value of key, and whether it is there.
func (x Extra) Get(key string) (any, bool) {
	for _, p := range x {
		if p.Key == key {
			return p.Value, true
		}
	}
	return nil, false
}

// Envelope keys: written around every event's fields, never by them (but
// for "step" and "message", which an event may also carry as fields).
var envelope = map[string]bool{"level": true, "time": true, "run_id": true, "step": true, "message": true, "event": true, "seq": true, "prev": true}

type fieldKind int8

const (
	kString fieldKind = iota
	kBool
	kInt
	kUint
	kFloat
	kDur
	kTime
	kStrs
	kExtra
	kAny
)

type field struct {
	key       string
	index     int
	kind      fieldKind
	omitEmpty bool
	ptr       bool // a pointer (not to a struct): nil is omitted, anything else written
	message   bool // json:"message": the line's message
}

type plan struct {
	fields []field
	keys   map[string]bool
	extra  int // index of the Extra field, -1 when none
}

var (
	plans sync.Map // reflect.Type → *plan
	tDur  = reflect.TypeFor[time.Duration]()
	tTime = reflect.TypeFor[time.Time]()
	tStrs = reflect.TypeFor[[]string]()
	tXtra = reflect.TypeFor[Extra]()
)

// planOf returns the fields of an event type (a struct, or a pointer to
// one).
func planOf(t reflect.Type) *plan {
	if p, ok := plans.Load(t); ok {
		return p.(*plan)
	}
	p := &plan{keys: map[string]bool{}, extra: -1}
	st := t
	if st.Kind() == reflect.Pointer {
		st = st.Elem()
	}
	if st.Kind() == reflect.Struct {
		for i := 0; i < st.NumField(); i++ {
			sf := st.Field(i)
			if !sf.IsExported() {
				continue
			}
			if sf.Type == tXtra {
				p.extra = i
				p.fields = append(p.fields, field{index: i, kind: kExtra})
				continue
			}
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if name == "" {
				name = sf.Name
			}
			f := field{key: name, index: i, omitEmpty: strings.Contains(opts, "omitempty"), message: name == "message"}
			ft := sf.Type
			if ft.Kind() == reflect.Pointer && ft.Elem().Kind() != reflect.Struct {
				f.ptr, ft = true, ft.Elem()
			}
			f.kind = kindOf(ft)
			p.fields = append(p.fields, f)
			p.keys[name] = true
		}
	}
	actual, _ := plans.LoadOrStore(t, p)
	return actual.(*plan)
}

func kindOf(t reflect.Type) fieldKind {
	switch {
	case t == tDur:
		return kDur
	case t == tTime:
		return kTime
	case t == tStrs:
		return kStrs
	}
	switch t.Kind() {
	case reflect.String:
		return kString
	case reflect.Bool:
		return kBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return kInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return kUint
	case reflect.Float32, reflect.Float64:
		return kFloat
	}
	return kAny
}

// Encode writes ev's fields to enc, in declaration order (the message field
// excepted: it is the envelope's).
func Encode(ev Event, enc Encoder) {
	v := reflect.ValueOf(ev)
	encode(v, planOf(v.Type()), enc)
}

func encode(v reflect.Value, p *plan, enc Encoder) {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return
	}
	for _, f := range p.fields {
		fv := v.Field(f.index)
		switch {
		case f.message:
			continue
		case f.kind == kExtra:
			encodeExtra(fv.Interface().(Extra), enc)
			continue
		}
		if f.ptr {
			if fv.IsNil() {
				continue
			}
			fv = fv.Elem()
		} else if f.omitEmpty && fv.IsZero() {
			continue
		}
		switch f.kind {
		case kString:
			enc.Str(f.key, fv.String())
		case kBool:
			enc.Bool(f.key, fv.Bool())
		case kInt:
			enc.Int(f.key, fv.Int())
		case kUint:
			enc.Uint(f.key, fv.Uint())
		case kFloat:
			enc.Float(f.key, fv.Float())
		case kDur:
			enc.Dur(f.key, time.Duration(fv.Int()))
		case kTime:
			enc.Time(f.key, fv.Interface().(time.Time))
		case kStrs:
			enc.Strs(f.key, fv.Interface().([]string))
		default:
			enc.Any(f.key, fv.Interface())
		}
	}
}

// encodeExtra writes the pairs of an Extra field.
func encodeExtra(x Extra, enc Encoder) {
	for _, kv := range x {
		switch x := kv.Value.(type) {
		case string:
			enc.Str(kv.Key, x)
		case int:
			enc.Int(kv.Key, int64(x))
		case int64:
			enc.Int(kv.Key, x)
		case bool:
			enc.Bool(kv.Key, x)
		default:
			enc.Any(kv.Key, x)
		}
	}
}

// decodeInto fills the fields of *ptr (a pointer to an event struct) from a
// decoded line.
func decodeInto(ptr reflect.Value, m map[string]any) {
	v := ptr.Elem()
	p := planOf(v.Type())
	for _, f := range p.fields {
		raw, ok := m[f.key]
		if !ok || f.kind == kExtra {
			continue
		}
		fv := v.Field(f.index)
		if f.ptr {
			if raw == nil {
				continue
			}
			fv.Set(reflect.New(fv.Type().Elem()))
			fv = fv.Elem()
		}
		setField(fv, f.kind, raw)
	}
	if p.extra >= 0 {
		var x Extra
		for _, k := range sortedKeys(m) {
			if !p.keys[k] && !envelope[k] {
				x = append(x, Pair{Key: k, Value: m[k]})
			}
		}
		v.Field(p.extra).Set(reflect.ValueOf(x))
	}
}

func setField(fv reflect.Value, kind fieldKind, raw any) {
	switch kind {
	case kString:
		fv.SetString(Str(raw))
	case kBool:
		switch x := raw.(type) {
		case bool:
			fv.SetBool(x)
		case string:
			fv.SetBool(x == "true")
		}
	case kInt:
		if f, ok := Num(raw); ok && !fv.OverflowInt(int64(f)) {
			fv.SetInt(int64(f))
		}
	case kUint:
		if n, ok := raw.(json.Number); ok {
			if u, err := strconv.ParseUint(n.String(), 10, 64); err == nil && !fv.OverflowUint(u) {
				fv.SetUint(u)
				return
			}
		}
		if f, ok := Num(raw); ok && f >= 0 && !fv.OverflowUint(uint64(f)) {
			fv.SetUint(uint64(f))
		}
	case kFloat:
		if f, ok := Num(raw); ok {
			fv.SetFloat(f)
		}
	case kDur:
		if s, ok := raw.(string); ok {
			if d, err := time.ParseDuration(s); err == nil {
				fv.SetInt(int64(d))
			}
			return
		}
		if f, ok := Num(raw); ok {
			fv.SetInt(int64(f * float64(time.Millisecond)))
		}
	case kTime:
		if s, ok := raw.(string); ok {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				fv.Set(reflect.ValueOf(t))
			}
		}
	case kStrs:
		list, _ := raw.([]any)
		out := make([]string, 0, len(list))
		for _, x := range list {
			out = append(out, Str(x))
		}
		fv.Set(reflect.ValueOf(out))
	default:
		if raw == nil {
			return
		}
		t := fv.Type()
		if t.Kind() == reflect.Map && t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.String {
			obj, ok := raw.(map[string]any)
			if !ok {
				return
			}
			out := reflect.MakeMapWithSize(t, len(obj))
			for k, x := range obj {
				out.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), reflect.ValueOf(Str(x)).Convert(t.Elem()))
			}
			fv.Set(out)
			return
		}
		if rv := reflect.ValueOf(raw); rv.Type().AssignableTo(t) {
			fv.Set(rv)
			return
		}
		// Another shape (a struct, a typed map): through encoding/json.
		b, err := json.Marshal(raw)
		if err != nil {
			return
		}
		nv := reflect.New(t)
		if json.Unmarshal(b, nv.Interface()) == nil {
			fv.Set(nv.Elem())
		}
	}
}

// Str renders a decoded JSON value as text: strings as they are, numbers as
// written, null as "", anything else as JSON.
func Str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return ""
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(b)
	}
}

// Num reads a decoded JSON number (or a string holding one).
func Num(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case string:
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil
	}
	return 0, false
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
