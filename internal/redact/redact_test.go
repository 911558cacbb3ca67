package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

// nasty is a password with every character that URL and JSON encoding touch.
const nasty = `p@ss/w:rd?&= %"\`

func TestString(t *testing.T) {
	tests := []struct {
		name    string
		secrets []string
		in      string
		want    string
	}{
		{"none registered", nil, "hello", "hello"},
		{"empty secret ignored", []string{""}, "hello", "hello"},
		{"plain", []string{"hunter2"}, "pw=hunter2 end", "pw=*** end"},
		{"every occurrence", []string{"s3cr"}, "s3cr s3crs3cr xs3crx", "*** ****** x***x"},
		{"at edges", []string{"abcd"}, "abcd", "***"},
		{"no match", []string{"abcd"}, "ab cd", "ab cd"},
		{"contained secret", []string{"pass", "password1"}, "password1 pass", "*** ***"},
		{"contained secret, other order", []string{"password1", "pass"}, "password1 pass", "*** ***"},
		{"overlapping secrets", []string{"abcd", "cdef"}, "xabcdefx", "x***x"},
		{"overlapping reversed", []string{"cdef", "abcd"}, "xabcdefx", "x***x"},
		{"self-overlap", []string{"aaaa"}, "aaaaa b", "*** b"},
		{"chain of overlaps", []string{"abcd", "cdef", "efgh"}, "-abcdefgh-", "-***-"},
		{"non-ASCII", []string{"pässwörd"}, "x pässwörd y", "x *** y"},
		{"query escaped", []string{"a b&c"}, "?password=a+b%26c&x=1", "?password=***&x=1"},
		{"path escaped", []string{"a b/c"}, "/a%20b%2Fc/", "/***/"},
		{"every byte encoded, upper", []string{"ab"}, "x%61%62y", "x***y"},
		{"every byte encoded, lower", []string{"a:"}, "x%61%3ay", "x***y"},
		{"passfile escaped", []string{`pa:ss\wo`}, `*:*:*:u:pa\:ss\\wo`, `*:*:*:u:***`},
		{"passfile escaped, json", []string{`pa:ss\wo`}, `{"m":"u:pa\\:ss\\\\wo"}`, `{"m":"u:***"}`},
		{"conninfo quoted", []string{`it's\x`}, `password='it\'s\\x'`, `password='***'`},

		// Forms shorter than ShortForm bytes are masked only standing alone.
		{"short inside words", []string{"x"}, "syntax xylophone max_x x2", "syntax xylophone max_x x2"},
		{"short standing alone", []string{"x"}, "pw x, u:x@h [x] x", "pw ***, u:***@h [***] ***"},
		{"short in json", []string{"x"}, `{"msg":"x","k":"xx"}`, `{"msg":"***","k":"xx"}`},
		{"short next to non-ASCII", []string{"ab"}, "äab ab", "äab ***"},
		{"short, three bytes", []string{"abc"}, "abcdef abc", "abcdef ***"},
		{"four bytes: everywhere", []string{"abcd"}, "abcdef", "***ef"},
		{"short secret, long encoded form everywhere", []string{"ab"}, "x%61%62y", "x***y"},
		{"short inside a longer secret's match", []string{"ab", "xabx"}, "xabx ab zab", "*** *** zab"},
		{"json escaped", []string{"a\"b\\c\nd"}, `{"m":"a\"b\\c\nd"}`, `{"m":"***"}`},
		{"json control char", []string{"a\x01b"}, `{"m":"a\u0001b"}`, `{"m":"***"}`},
		{"go quoted", []string{"a\tb\x00"}, `"a\tb\x00"`, `"***"`},
		{"json html escaped", []string{"a<b>&"}, `"a\u003cb\u003e\u0026"`, `"***"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(tt.secrets...)
			if got := r.String(tt.in); got != tt.want {
				t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if got := string(r.Bytes([]byte(tt.in))); got != tt.want {
				t.Errorf("Bytes(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestNastyPasswordEveryForm checks that a password full of reserved
// characters is masked in every place it can end up.
func TestNastyPasswordEveryForm(t *testing.T) {
	r := New(nasty)
	u := url.URL{Scheme: "postgres", User: url.UserPassword("alice", nasty), Host: "db:5432", Path: "/app"}
	q := url.URL{Scheme: "postgres", Host: "db", Path: "/app", RawQuery: url.Values{"password": {nasty}, "sslmode": {"require"}}.Encode()}
	jsonStd, _ := json.Marshal(map[string]string{"url": u.String(), "pw": nasty})

	var zl bytes.Buffer
	logger := zerolog.New(r.Writer(&zl))
	logger.Info().Str("pw", nasty).Str("url", u.String()).Str("qurl", q.String()).Msg("connect " + nasty)
	logger.Error().Err(fmt.Errorf("auth failed for %q", nasty)).Send()

	inputs := map[string]string{
		"raw":            "password is " + nasty + ".",
		"userinfo URL":   u.String(),
		"query URL":      q.String(),
		"QueryEscape":    "x=" + url.QueryEscape(nasty),
		"PathEscape":     "/" + url.PathEscape(nasty) + "/",
		"encoding/json":  string(jsonStd),
		"%q":             fmt.Sprintf("error: %q", nasty),
		"%-every-byte":   percentAll(nasty, upperHex),
		"zerolog stream": zl.String(),
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			out := r.String(in)
			if !strings.Contains(out, Mask) {
				t.Fatalf("nothing masked in %q", out)
			}
			for _, f := range Forms(nasty) {
				if strings.Contains(out, f) {
					t.Errorf("form %q survives in %q", f, out)
				}
			}
			// Fragments that would identify the password.
			for _, frag := range []string{"p@ss", "w:rd", "p%40ss", `w:rd?&=`, "rd%3F"} {
				if strings.Contains(out, frag) {
					t.Errorf("fragment %q survives in %q", frag, out)
				}
			}
		})
	}
	// The zerolog output is still valid JSON after masking.
	for _, line := range strings.Split(strings.TrimSpace(zl.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("masked zerolog line is not JSON: %s", line)
		}
	}
}

func TestFormsDistinct(t *testing.T) {
	if Forms("") != nil {
		t.Errorf("Forms(\"\") = %q", Forms(""))
	}
	if got := Forms("plain"); !slices.Equal(got, []string{"plain", "%70%6C%61%69%6E", "%70%6c%61%69%6e"}) {
		t.Errorf("Forms(plain) = %q", got)
	}
	f := Forms(nasty)
	seen := map[string]bool{}
	for _, x := range f {
		if seen[x] {
			t.Errorf("duplicate form %q", x)
		}
		seen[x] = true
	}
}

func TestAddLater(t *testing.T) {
	r := New()
	if got := r.String("a secret"); got != "a secret" {
		t.Fatalf("got %q", got)
	}
	r.Add("secret")
	r.Add("secret") // again: no change
	if got := r.String("a secret"); got != "a ***" {
		t.Fatalf("got %q", got)
	}
}

func TestBytesDoesNotModifyInput(t *testing.T) {
	r := New("abcd")
	in := []byte("xabcdx")
	out := r.Bytes(in)
	if string(in) != "xabcdx" || string(out) != "x***x" {
		t.Fatalf("in %q out %q", in, out)
	}
	clean := []byte("nothing")
	if got := r.Bytes(clean); &got[0] != &clean[0] {
		t.Errorf("Bytes copied an input with nothing to mask")
	}
}

func TestConcurrent(t *testing.T) {
	r := New("seed-secret")
	var wg sync.WaitGroup
	var buf safeBuffer
	w := r.Writer(&buf)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				r.Add(fmt.Sprintf("secret-%d-%d", g, i%10))
				s := r.String(fmt.Sprintf("x seed-secret secret-%d-%d y", g, i%10))
				if s != "x *** *** y" {
					t.Errorf("got %q", s)
					return
				}
				fmt.Fprintf(w, "line seed-secret %d\n", i)
				_ = r.Error(errors.New("e seed-secret")).Error()
			}
		}()
	}
	wg.Wait()
	if strings.Contains(buf.String(), "seed-secret") {
		t.Error("secret leaked through Writer")
	}
}

type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type recWriter struct {
	writes []string
	n      int // bytes to accept; -1: all
	err    error
}

func (w *recWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, string(p))
	if w.n >= 0 && w.n < len(p) {
		return w.n, w.err
	}
	return len(p), w.err
}

func TestWriter(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		in      string
		dst     recWriter
		wantN   int
		wantErr error
		wantOut string
	}{
		{"masked, full length reported", "a hunter2 b", recWriter{n: -1}, 11, nil, "a *** b"},
		{"clean", "nothing here", recWriter{n: -1}, 12, nil, "nothing here"},
		{"longer after masking", "ab", recWriter{n: -1}, 2, nil, "ab"},
		{"error, clean input", "hello", recWriter{n: 2, err: boom}, 2, boom, "hello"},
		{"error, masked input", "x hunter2", recWriter{n: 3, err: boom}, 0, boom, "x ***"},
		{"short write", "x hunter2", recWriter{n: 1}, 0, io.ErrShortWrite, "x ***"},
	}
	r := New("hunter2")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := tt.dst
			n, err := r.Writer(&dst).Write([]byte(tt.in))
			if n != tt.wantN || !errors.Is(err, tt.wantErr) {
				t.Errorf("Write = %d, %v; want %d, %v", n, err, tt.wantN, tt.wantErr)
			}
			if len(dst.writes) != 1 || dst.writes[0] != tt.wantOut {
				t.Errorf("writes = %q, want one write %q", dst.writes, tt.wantOut)
			}
		})
	}
}

type codeError struct{ code int }

func (e *codeError) Error() string { return fmt.Sprintf("code %d: password hunter2", e.code) }

func TestError(t *testing.T) {
	r := New("hunter2")
	if r.Error(nil) != nil {
		t.Fatal("Error(nil) != nil")
	}
	base := &codeError{7}
	err := r.Error(fmt.Errorf("connect: %w: %w", base, fs.ErrPermission))
	if got, want := err.Error(), "connect: code 7: password ***: permission denied"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, fs.ErrPermission) {
		t.Error("errors.Is lost the chain")
	}
	var ce *codeError
	if !errors.As(err, &ce) || ce.code != 7 {
		t.Error("errors.As lost the chain")
	}
	if again := r.Error(err); again != err {
		t.Error("wrapping twice with the same Redactor should be a no-op")
	}
	if got := fmt.Sprintf("%v / %s / %+v", err, err, err); strings.Contains(got, "hunter2") {
		t.Errorf("formatting leaks: %q", got)
	}
	// Masking happens when the message is read.
	late := r.Error(errors.New("token tok-123"))
	r.Add("tok-123")
	if got := late.Error(); got != "token ***" {
		t.Errorf("late secret: %q", got)
	}
	// Another Redactor's wrapping is wrapped again.
	r2 := New("code")
	if got := r2.Error(err).Error(); got != "connect: *** 7: password ***: permission denied" {
		t.Errorf("nested: %q", got)
	}
}

func TestPasswordsInConnString(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		// URLs
		{"url no userinfo", "postgres://db.example.com:5432/app", nil},
		{"url user only", "postgres://alice@db/app", nil},
		{"url empty password", "postgres://alice:@db/app", nil},
		{"url password", "postgres://alice:s3cret@db/app", []string{"s3cret"}},
		{"postgresql scheme", "postgresql://alice:s3cret@db/app?sslmode=require", []string{"s3cret"}},
		{"scheme in capitals", "POSTGRES://alice:s3cret@db/app", []string{"s3cret"}},
		{"leading space", "  postgres://alice:s3cret@db", []string{"s3cret"}},
		{"url no path", "postgres://alice:s3cret@db:5432", []string{"s3cret"}},
		{"url no host", "postgresql://alice:s3cret@/app?host=/var/run/postgresql", []string{"s3cret"}},
		{"url empty user", "postgres://:s3cret@db/app", []string{"s3cret"}},
		{"url percent-encoded", "postgres://alice:p%40ss%2Fw%3Ard%3F%26%3D%20%25%22%5C@db/app", []string{nasty}},
		{"url percent-encoded lower hex", "postgres://alice:p%40ss%2fw@db/app", []string{"p@ss/w"}},
		{"url plus stays plus", "postgres://alice:a+b@db/app", []string{"a+b"}},
		{"url raw @ in password", "postgres://alice:p@ss@db/app", []string{"p@ss"}},
		{"url raw colon in password", "postgres://alice:a:b@db/app", []string{"a:b"}},
		{"url malformed escape kept raw", "postgres://alice:100%@db/app", []string{"100%"}},
		{"url multi-host", "postgres://alice:s3cret@h1:5432,h2:5433/app?target_session_attrs=read-write", []string{"s3cret"}},
		{"url query password", "postgres://alice@db/app?sslmode=require&password=q%20pw", []string{"q pw"}},
		{"url query password first", "postgres://db/app?password=qpw&sslmode=disable", []string{"qpw"}},
		{"url query plus both readings", "postgres://db/app?password=a+b", []string{"a+b", "a b"}},
		{"url query empty password", "postgres://db/app?password=&sslmode=disable", nil},
		{"url both places", "postgres://alice:one@db/app?password=two", []string{"one", "two"}},
		{"url same twice", "postgres://alice:one@db/app?password=one", []string{"one"}},
		{"url sslpassword", "postgres://alice@db/app?sslpassword=keypw", []string{"keypw"}},
		{"url @ in query only", "postgres://db/app?application_name=a@b", nil},
		{"not postgres url", "mysql://alice:s3cret@db/app", nil},

		// keyword/value
		{"dsn no password", "host=db user=alice dbname=app", nil},
		{"dsn password", "host=db user=alice password=s3cret dbname=app", []string{"s3cret"}},
		{"dsn password last", "host=db password=s3cret", []string{"s3cret"}},
		{"dsn spaces around =", "host = db password = s3cret  dbname=app", []string{"s3cret"}},
		{"dsn quoted with space", "host=db password='pa ss' dbname=app", []string{"pa ss"}},
		{"dsn quoted escaped quote", `password='it\'s' user=alice`, []string{"it's"}},
		{"dsn quoted escaped backslash", `password='a\\b' user=alice`, []string{`a\b`}},
		{"dsn quoted =", `password='a=b c'`, []string{"a=b c"}},
		{"dsn unquoted backslash escape", `password=a\ b user=alice`, []string{"a b"}},
		{"dsn empty quoted", "password='' user=alice", nil},
		{"dsn empty unquoted", "password= user=alice", []string{"user=alice"}}, // as libpq reads it
		{"dsn tabs and newlines", "host=db\n\tpassword=s3cret\n", []string{"s3cret"}},
		{"dsn unterminated quote", "password='abc def", []string{"abc def"}},
		{"dsn sslpassword", "sslkey=/k sslpassword='key pw'", []string{"key pw"}},
		{"dsn passfile is not a password", "passfile=/home/a/.pgpass", nil},
		{"dsn syntax error stops", "host=db garbage password=s3cret", nil},
		{"dsn expanded dbname", "dbname='postgres://alice:inner@db/app' password=outer", []string{"inner", "outer"}},
		{"dsn expanded dbname keywords", `dbname='host=db password=inner'`, []string{"inner"}},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PasswordsInConnString(tt.in)
			if !slices.Equal(got, tt.want) {
				t.Errorf("PasswordsInConnString(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestAddConnString(t *testing.T) {
	r := New()
	conn := "postgres://alice:p%40ss%2fw@db/app"
	r.AddConnString(conn)
	for in, want := range map[string]string{
		conn:                    "postgres://alice:***@db/app",
		"password p@ss/w":       "password ***",
		"encoded p%40ss%2Fw":    "encoded ***",
		`{"u":"p@ss/w"}`:        `{"u":"***"}`,
		"dsn: password='x y'":   "dsn: password='x y'",
		"unrelated alice db/ap": "unrelated alice db/ap",
	} {
		if got := r.String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkString(b *testing.B) {
	r := New(nasty, "hunter2", "another-secret-value")
	line := `{"level":"info","run_id":"01J","event":"cmd.stderr","stage":0,"line":"pg_dump: dumping contents of table public.orders (hunter2)"}`
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		_ = r.String(line)
	}
}
