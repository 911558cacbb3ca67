// Package redact masks secrets in every byte that leaves the process: console
// output, the audit log, the state file, error messages and the lines of child
// output that get logged.
//
// A Redactor knows a set of secrets and the forms each one takes on the way
// out: as written, URL-encoded (query, path and userinfo escaping, and every
// byte %-encoded), JSON-escaped (as zerolog and encoding/json write strings) and
// Go-quoted (as %q writes it), and escaped as libpq reads it from a password
// file (\: and \\) or a quoted keyword/value connection string (\' and \\).
// Every occurrence of any form is replaced by "***". Where occurrences of
// different secrets overlap, the whole overlapping stretch is masked, so no
// fragment of either leaks.
//
// A form shorter than ShortForm bytes (a secret of one to three characters,
// say "x") is masked only where it stands alone: where neither the byte
// before it nor the byte after it is a letter, a digit, '_' or part of a
// non-ASCII character. Masking every "x" would turn "syntax" into "synta***",
// make every line unreadable, and point at the secret all the same; standing
// alone ("password x", "u:x@host", "\"x\"") it is masked.
//
// Masking works on whole strings: a secret split across two Write calls of a
// Writer is not seen. zerolog writes each event with one Write, and
// internal/pipeline delivers child output line by line, so both are masked
// whole.
package redact

import (
	"bytes"
	"encoding/json"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Mask is what every occurrence of a secret is replaced with.
const Mask = "***"

// Redactor replaces registered secrets with "***". Safe for concurrent use.
// The zero value is not usable; use New.
type Redactor struct {
	mu      sync.Mutex // serializes Add
	secrets map[string]struct{}
	set     atomic.Pointer[formSet] // read without locking
}

// ShortForm is the length, in bytes, from which a form is masked wherever it
// occurs; a shorter one is masked only where it stands alone (see the package
// documentation).
const ShortForm = 4

// formSet is an immutable snapshot of every form to mask, longest first.
type formSet struct {
	strs  []string
	bytes [][]byte
}

// New returns a Redactor that masks the given secrets (see Add).
func New(secrets ...string) *Redactor {
	r := &Redactor{secrets: map[string]struct{}{}}
	r.set.Store(&formSet{})
	r.Add(secrets...)
	return r
}

// Add registers each secret together with its encoded forms: url.QueryEscape,
// url.PathEscape, the escaping of a password in URL userinfo, every byte
// %-encoded (upper and lower case hex), JSON string escaping (as zerolog writes
// it, and as encoding/json writes it with and without HTML escaping), the body
// of strconv.Quote, libpq's password-file escaping (\: and \\) and its quoted
// keyword/value escaping (\' and \\), and the JSON escaping of each of those
// forms. Empty strings are ignored.
func (r *Redactor) Add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := false
	for _, s := range secrets {
		if s == "" {
			continue
		}
		for _, f := range Forms(s) {
			if _, ok := r.secrets[f]; !ok {
				r.secrets[f] = struct{}{}
				changed = true
			}
		}
	}
	if !changed {
		return
	}
	strs := make([]string, 0, len(r.secrets))
	for f := range r.secrets {
		strs = append(strs, f)
	}
	// Longest first, then lexically, so the order (and so the output) is
	// deterministic.
	slices.SortFunc(strs, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	bs := make([][]byte, len(strs))
	for i, s := range strs {
		bs[i] = []byte(s)
	}
	r.set.Store(&formSet{strs: strs, bytes: bs})
}

// AddConnString registers the passwords found in a PostgreSQL connection string
// (see PasswordsInConnString), and also each password exactly as it is spelled
// in s, which may be %-encoded in a way Add does not generate (lower-case hex,
// only some bytes encoded).
func (r *Redactor) AddConnString(s string) {
	for _, p := range connPasswords(s) {
		r.Add(p.value, p.raw)
	}
}

// Forms returns a secret and every encoded form of it that Add registers,
// without duplicates. Empty for "".
func Forms(secret string) []string {
	if secret == "" {
		return nil
	}
	userinfo := strings.TrimPrefix(url.UserPassword("u", secret).String(), "u:")
	base := []string{
		secret,
		url.QueryEscape(secret),
		url.PathEscape(secret),
		userinfo,
		percentAll(secret, upperHex),
		percentAll(secret, lowerHex),
	}
	if q := strconv.Quote(secret); len(q) >= 2 {
		base = append(base, q[1:len(q)-1])
	}
	base = append(base, passfileEscape.Replace(secret), conninfoEscape.Replace(secret))
	var out []string
	seen := map[string]bool{}
	add := func(f string) {
		if f != "" && !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	for _, b := range base {
		add(b)
		add(zerologJSON(b))
		add(stdJSON(b, true))
		add(stdJSON(b, false))
	}
	return out
}

var (
	// passfileEscape escapes a field of a libpq password file (~/.pgpass).
	passfileEscape = strings.NewReplacer(`\`, `\\`, `:`, `\:`)
	// conninfoEscape escapes a single-quoted value of a keyword/value
	// connection string (password='…').
	conninfoEscape = strings.NewReplacer(`\`, `\\`, `'`, `\'`)
)

// PassfileEscape escapes a user name or password for a line of a libpq
// password file, as libpq reads it back: '\' and ':' are preceded by '\'.
func PassfileEscape(s string) string { return passfileEscape.Replace(s) }

const (
	upperHex = "0123456789ABCDEF"
	lowerHex = "0123456789abcdef"
)

func percentAll(s, hex string) string {
	var b strings.Builder
	b.Grow(3 * len(s))
	for i := 0; i < len(s); i++ {
		b.WriteByte('%')
		b.WriteByte(hex[s[i]>>4])
		b.WriteByte(hex[s[i]&0xF])
	}
	return b.String()
}

// zerologJSON escapes s exactly as zerolog writes a string value, without the
// quotes: \" \\ \b \f \n \r \t, other bytes below 0x20 and 0x7f as \u00xx,
// invalid UTF-8 as \ufffd.
func zerologJSON(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b.WriteString(`\ufffd`)
			} else {
				b.WriteString(s[i : i+size])
			}
			i += size
			continue
		}
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\b':
			b.WriteString(`\b`)
		case c == '\f':
			b.WriteString(`\f`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c == 0x7f:
			b.WriteString(`\u00`)
			b.WriteByte(lowerHex[c>>4])
			b.WriteByte(lowerHex[c&0xF])
		default:
			b.WriteByte(c)
		}
		i++
	}
	return b.String()
}

// stdJSON escapes s as encoding/json does, without the quotes.
func stdJSON(s string, escapeHTML bool) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(escapeHTML)
	if err := enc.Encode(s); err != nil {
		return ""
	}
	out := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(out) < 2 {
		return ""
	}
	return string(out[1 : len(out)-1])
}

// String returns s with every registered secret masked.
func (r *Redactor) String(s string) string {
	set := r.set.Load()
	sp := findSpans(s, set.strs, strings.Index)
	if sp == nil {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	last := 0
	for _, x := range sp {
		b.WriteString(s[last:x.start])
		b.WriteString(Mask)
		last = x.end
	}
	b.WriteString(s[last:])
	return b.String()
}

// Bytes returns b with every registered secret masked. When nothing is masked
// it returns b itself; otherwise a new slice (b is never modified).
func (r *Redactor) Bytes(b []byte) []byte {
	set := r.set.Load()
	sp := findSpans(b, set.bytes, bytes.Index)
	if sp == nil {
		return b
	}
	out := make([]byte, 0, len(b))
	last := 0
	for _, x := range sp {
		out = append(out, b[last:x.start]...)
		out = append(out, Mask...)
		last = x.end
	}
	return append(out, b[last:]...)
}

type span struct{ start, end int }

// findSpans returns the stretches of s covered by occurrences of forms
// (overlapping occurrences merged), in order, or nil when there are none. A
// form shorter than ShortForm counts only where it stands alone.
func findSpans[T string | []byte](s T, forms []T, index func(T, T) int) []span {
	var sp []span
	for _, f := range forms {
		if len(f) > len(s) {
			continue
		}
		short := len(f) < ShortForm
		for off := 0; off+len(f) <= len(s); {
			i := index(s[off:], f)
			if i < 0 {
				break
			}
			start, end := off+i, off+i+len(f)
			if !short || (start == 0 || !wordByte(s[start-1])) && (end == len(s) || !wordByte(s[end])) {
				sp = append(sp, span{start, end})
			}
			off += i + 1 // occurrences of one form may overlap too
		}
	}
	if len(sp) == 0 {
		return nil
	}
	slices.SortFunc(sp, func(a, b span) int {
		if a.start != b.start {
			return a.start - b.start
		}
		return b.end - a.end
	})
	merged := sp[:1]
	for _, x := range sp[1:] {
		cur := &merged[len(merged)-1]
		if x.start < cur.end {
			cur.end = max(cur.end, x.end)
			continue
		}
		merged = append(merged, x)
	}
	return merged
}

// Writer returns an io.Writer that masks the bytes of each Write call and
// passes them to w in one Write. It reports len(p) written on success.
func (r *Redactor) Writer(w io.Writer) io.Writer {
	return &writer{r: r, w: w}
}

type writer struct {
	r *Redactor
	w io.Writer
}

// wordByte reports whether c continues a word around a short form: an ASCII
// letter or digit, '_', or a byte of a non-ASCII character.
func wordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c >= utf8.RuneSelf
}

func (w *writer) Write(p []byte) (int, error) {
	out := w.r.Bytes(p)
	n, err := w.w.Write(out)
	masked := len(out) != len(p) || (len(p) > 0 && &out[0] != &p[0])
	if err != nil {
		if !masked {
			return n, err
		}
		// The masked bytes do not map back onto p; claim nothing was written
		// unless everything was.
		if n >= len(out) {
			return len(p), err
		}
		return 0, err
	}
	if n < len(out) {
		return 0, io.ErrShortWrite
	}
	return len(p), nil
}

// Error returns an error whose Error() is err's message with every secret
// masked (nil for nil). errors.Is and errors.As still see err and its chain
// through Unwrap; an error they return is the original, unmasked one.
func (r *Redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	if re, ok := err.(*redactedError); ok && re.r == r {
		return err
	}
	return &redactedError{r: r, err: err}
}

type redactedError struct {
	r   *Redactor
	err error
}

// Error masks at call time, so secrets added after wrapping are masked too.
func (e *redactedError) Error() string { return e.r.String(e.err.Error()) }

func (e *redactedError) Unwrap() error { return e.err }
