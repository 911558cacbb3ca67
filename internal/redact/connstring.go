package redact

import (
	"net/url"
	"strings"
)

// PasswordsInConnString returns the passwords in a PostgreSQL connection
// string, in order of appearance and without duplicates, so they can be
// registered as secrets. It understands both forms libpq accepts:
//
//   - a URL (postgres:// or postgresql://, any case): the password of the
//     userinfo and the password= query parameter, %-decoded as libpq decodes
//     them. A query value containing '+' is also returned with '+' read as a
//     space, as Go's net/url (and so pgx) reads it.
//   - a keyword/value string (host=h password=secret ...): unquoted values and
//     single-quoted values with \' and \\ escapes; a dbname value that is itself
//     a connection string is searched too, as libpq expands it.
//
// sslpassword (the passphrase of the client key) is returned as well. Empty
// passwords are left out. A string that does not parse is searched as far as it
// does; an unterminated quoted password is returned up to the end of s.
func PasswordsInConnString(s string) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range connPasswords(s) {
		if p.value != "" && !seen[p.value] {
			seen[p.value] = true
			out = append(out, p.value)
		}
	}
	return out
}

// connPassword is one password: its value and its spelling in the string.
type connPassword struct{ value, raw string }

func isPasswordKey(k string) bool {
	return k == "password" || k == "sslpassword"
}

func connPasswords(s string) []connPassword {
	return connPasswordsDepth(s, 0)
}

func connPasswordsDepth(s string, depth int) []connPassword {
	t := strings.TrimSpace(s)
	for _, scheme := range []string{"postgresql://", "postgres://"} {
		if len(t) >= len(scheme) && strings.EqualFold(t[:len(scheme)], scheme) {
			return uriPasswords(t[len(scheme):])
		}
	}
	return dsnPasswords(s, depth)
}

// uriPasswords reads the part of a URL after "scheme://". As libpq does, the
// authority ends at the first '/' or '?'; the userinfo ends at the last '@' in
// it, so a password with a raw '@' (which should have been written %40) is
// still found whole.
func uriPasswords(rest string) []connPassword {
	var out []connPassword
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority := rest[:end]
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		userinfo := authority[:at]
		if colon := strings.IndexByte(userinfo, ':'); colon >= 0 {
			raw := userinfo[colon+1:]
			if raw != "" {
				out = append(out, connPassword{percentDecode(raw), raw})
			}
		}
	}
	q := strings.IndexByte(rest[end:], '?')
	if q < 0 {
		return out
	}
	for _, kv := range strings.Split(rest[end+q+1:], "&") {
		k, raw, ok := strings.Cut(kv, "=")
		if !ok || raw == "" || !isPasswordKey(percentDecode(k)) {
			continue
		}
		out = append(out, connPassword{percentDecode(raw), raw})
		if strings.Contains(raw, "+") {
			if v, err := url.QueryUnescape(raw); err == nil {
				out = append(out, connPassword{v, raw})
			}
		}
	}
	return out
}

// percentDecode decodes %XX sequences only ('+' stays '+'), as libpq does. A
// malformed sequence leaves the string as it is.
func percentDecode(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	v, err := url.PathUnescape(s)
	if err != nil {
		return s
	}
	return v
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// dsnPasswords parses keyword/value pairs the way libpq's conninfo_parse does.
func dsnPasswords(s string, depth int) []connPassword {
	var out []connPassword
	i := 0
	for i < len(s) {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			break
		}
		kstart := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[kstart:i]
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) || s[i] != '=' {
			return out // syntax error: missing "="
		}
		i++
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		var val strings.Builder
		rstart := i
		var raw string
		if i < len(s) && s[i] == '\'' {
			i++
			rstart = i
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					val.WriteByte(s[i+1])
					i += 2
					continue
				}
				if c == '\'' {
					closed = true
					break
				}
				val.WriteByte(c)
				i++
			}
			raw = s[rstart:i]
			if closed {
				i++
			}
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' && i+1 < len(s) {
					val.WriteByte(s[i+1])
					i += 2
					continue
				}
				val.WriteByte(s[i])
				i++
			}
			raw = s[rstart:i]
		}
		v := val.String()
		switch {
		case isPasswordKey(key):
			if v != "" {
				out = append(out, connPassword{v, raw})
			}
		case key == "dbname" && depth == 0 && looksLikeConnString(v):
			out = append(out, connPasswordsDepth(v, depth+1)...)
		}
	}
	return out
}

// looksLikeConnString reports whether a dbname value is one libpq would expand.
func looksLikeConnString(v string) bool {
	l := strings.ToLower(v)
	return strings.Contains(v, "=") || strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://")
}
