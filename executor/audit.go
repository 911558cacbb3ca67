package executor

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/runbookhq/runbook/internal/event"
	"github.com/runbookhq/runbook/internal/exitcode"
)

// The audit log (docs/audit.md) is a file of JSON lines, one event
// per line, written by zerolog through the secret redactor and then through an
// auditWriter, which chains the lines:
//
//	{"seq":N,"prev":"<hex SHA-256 of line N-1, newline included>", …the event…}\n
//
// seq counts the chained lines of the file from 1; it continues across every
// run and resume that appends to the same file. The first line's prev is
// Genesis. What is hashed is exactly what is written: the masked bytes.

// Genesis is the prev of a log's first line: the SHA-256 of no bytes.
const Genesis = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// EventTruncated is the event that records a torn last line found when
// appending (a write cut short by a crash or a full disk). It is the first line
// a process writes after the tear; the torn bytes stay in the file, unchained,
// and the event carries their length and SHA-256, so they are accounted for.
const EventTruncated = "log.truncated"

// Tear describes a torn last line found when the log was opened for appending.
type Tear struct {
	Bytes  int    `json:"torn_bytes"`
	SHA256 string `json:"torn_sha256"`
}

// auditWriter chains and appends the lines of an audit log. It is safe for
// concurrent use: Write calls are serialized. It holds an exclusive lock on
// the file while it is open, so two processes never interleave one chain.
type auditWriter struct {
	mu   sync.Mutex
	f    *os.File
	seq  uint64
	prev string
	tear *Tear // found at open; the first Write first ends the torn line
	buf  []byte
	err  error // sticky: after a failed write nothing more is appended
	// syncing is closed when the fsync started after the last step.end
	// returns (nil when none is running); syncErr is its result.
	syncing chan struct{}
	syncErr error
}

// openAudit opens (or creates) an audit log for appending and finds where its
// chain stands: the seq and hash of its last complete line.
func openAudit(path string) (*auditWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, exitcode.With(exitcode.Refused, fmt.Errorf("audit log %s is being written by another runbook process: wait for it to finish, or give another --log", path))
	}
	w := &auditWriter{f: f, seq: 0, prev: Genesis}
	if err := w.resume(path); err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// resume reads the end of an existing log to continue its chain.
func (w *auditWriter) resume(path string) error {
	fi, err := w.f.Stat()
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	last, torn, err := readTail(w.f, fi.Size())
	if err != nil {
		return fmt.Errorf("audit log %s: %w", path, err)
	}
	if last != nil {
		cl, err := parseChainLine(last)
		if err != nil {
			return exitcode.With(exitcode.Refused, fmt.Errorf("audit log %s: its last line is not a line of a runbook audit log (%v); runbook appends only to its own hash-chained logs: check it with\n  runbook audit verify %s\nor give another --log", path, err, path))
		}
		w.seq, w.prev = cl.Seq, hashLine(last)
	}
	if torn != nil {
		sum := sha256.Sum256(torn)
		w.tear = &Tear{Bytes: len(torn), SHA256: hex.EncodeToString(sum[:])}
	}
	return nil
}

// readTail returns the last complete line of the file (newline included; nil
// when there is none) and the torn bytes after it (nil when the file ends with
// a newline).
func readTail(f *os.File, size int64) (last, torn []byte, err error) {
	const chunk = 64 << 10
	var buf []byte
	off := size
	for off > 0 && bytes.Count(buf, []byte{'\n'}) < 2 {
		n := int64(chunk)
		if n > off {
			n = off
		}
		off -= n
		b := make([]byte, n, int(n)+len(buf))
		if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, nil, err
		}
		buf = append(b, buf...)
	}
	if len(buf) == 0 {
		return nil, nil, nil
	}
	end := bytes.LastIndexByte(buf, '\n') + 1 // end of the last complete line
	if end < len(buf) {
		torn = buf[end:]
	}
	if end == 0 {
		return nil, torn, nil
	}
	start := bytes.LastIndexByte(buf[:end-1], '\n') + 1
	return buf[start:end], torn, nil
}

// Write chains one zerolog event (one JSON object and its newline) and
// appends it. It reports len(p) on success. What reaches the disk when is
// flush's business.
func (w *auditWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	body := bytes.TrimRight(p, "\n")
	if len(body) < 2 || body[0] != '{' || body[len(body)-1] != '}' || bytes.IndexByte(body, '\n') >= 0 {
		return 0, fmt.Errorf("audit log: not one JSON object: %.80q", p)
	}
	w.buf = w.buf[:0]
	if w.tear != nil {
		w.buf = append(w.buf, '\n') // ends the torn line; it is not part of the chain
	}
	head := len(w.buf)
	w.buf = append(w.buf, `{"seq":`...)
	w.buf = strconv.AppendUint(w.buf, w.seq+1, 10)
	w.buf = append(w.buf, `,"prev":"`...)
	w.buf = append(w.buf, w.prev...)
	w.buf = append(w.buf, '"')
	if body[1] != '}' {
		w.buf = append(w.buf, ',')
	}
	w.buf = append(w.buf, body[1:]...)
	w.buf = append(w.buf, '\n')
	n, err := w.f.Write(w.buf)
	if err == nil && n < len(w.buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = fmt.Errorf("audit log: %w", err)
		return 0, w.err
	}
	w.seq++
	w.prev = hashLine(w.buf[head:])
	w.tear = nil
	return len(p), nil
}

// flush makes the lines written so far durable as the event just written
// asks (its event.Durability; docs/audit.md, "When the log is written to
// disk"): Synced fsyncs before returning; Background starts an fsync while
// the run goes on (the step's lines go to disk while the next step starts),
// and the state journal waits for it before its next fsync returns (see
// waitSync), so the log on disk never lags the state by more than the step
// in progress. A failed fsync stops the log as a failed write does.
func (w *auditWriter) flush(d event.Durability) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	switch d {
	case event.Background:
		w.waitLocked()
		if w.err != nil {
			return w.err
		}
		done := make(chan struct{})
		w.syncing = done
		go func() {
			w.syncErr = w.f.Sync()
			close(done)
		}()
	case event.Synced:
		if w.waitLocked(); w.err == nil {
			if err := w.f.Sync(); err != nil {
				w.err = fmt.Errorf("audit log: fsync: %w", err)
			}
		}
	}
	return w.err
}

// waitSync waits for the fsync started at the last step.end, if it is still
// running. The state journal calls it after each of its own fsyncs: the two
// flushes overlap, and the state never records more than the log on disk
// accounts for, but for the step in progress. A failed fsync stops the log as
// a failed write does (docs/audit.md).
func (w *auditWriter) waitSync() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waitLocked()
}

func (w *auditWriter) waitLocked() {
	if w.syncing == nil {
		return
	}
	<-w.syncing
	w.syncing = nil
	if w.syncErr != nil && w.err == nil {
		w.err = fmt.Errorf("audit log: fsync: %w", w.syncErr)
	}
}

// close waits for a running fsync, flushes the log and closes it.
func (w *auditWriter) close() error {
	w.waitSync()
	return errors.Join(w.f.Sync(), w.f.Close())
}

func hashLine(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}

// chainLine is what the chain needs of a line, and what summaries use.
type chainLine struct {
	Seq        uint64
	Prev       string
	RunID      string
	Event      string
	Outcome    string
	TornBytes  *int
	TornSHA256 string
}

// parseChainLine reads the chain fields of a line (newline included or not).
func parseChainLine(line []byte) (*chainLine, error) {
	var raw struct {
		Seq        json.RawMessage `json:"seq"`
		Prev       *string         `json:"prev"`
		RunID      string          `json:"run_id"`
		Event      string          `json:"event"`
		Outcome    string          `json:"outcome"`
		TornBytes  *int            `json:"torn_bytes"`
		TornSHA256 string          `json:"torn_sha256"`
	}
	trimmed := bytes.TrimRight(line, "\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		return nil, fmt.Errorf("not JSON: %v", err)
	}
	if raw.Seq == nil || raw.Prev == nil {
		return nil, errors.New("no seq and prev fields")
	}
	seq, err := strconv.ParseUint(string(raw.Seq), 10, 64)
	if err != nil || seq == 0 {
		return nil, fmt.Errorf("seq %s is not a positive integer", raw.Seq)
	}
	if len(*raw.Prev) != 64 {
		return nil, fmt.Errorf("prev %q is not a SHA-256", *raw.Prev)
	}
	return &chainLine{Seq: seq, Prev: *raw.Prev, RunID: raw.RunID, Event: raw.Event, Outcome: raw.Outcome,
		TornBytes: raw.TornBytes, TornSHA256: raw.TornSHA256}, nil
}

// VerifyResult is what VerifyLog found.
type VerifyResult struct {
	Path string `json:"path"`
	// Lines is the number of lines read: all of them for an intact log, up to
	// and including the bad one otherwise.
	Lines int `json:"lines"`
	// Seq and Head identify the last chained line checked: its seq and its
	// SHA-256 (the prev the next line must carry). Record them elsewhere (in
	// the change ticket: runbook report prints them) to make the log's end
	// tamper-evident too: without an anchor, lines removed from the very end
	// leave a valid chain.
	Seq  uint64 `json:"seq"`
	Head string `json:"head"`
	// Runs are the run ids met, in order of first appearance.
	Runs []LogRun `json:"runs"`
	// Tears are torn lines recorded by a later log.truncated event.
	Tears []LogTear `json:"tears,omitempty"`
	// Bad is the first line that breaks the chain; nil when the log is intact.
	Bad *BadLine `json:"bad,omitempty"`
	// Anchored reports whether the anchor given to VerifyLogAnchor was found.
	Anchored bool `json:"anchored,omitempty"`
}

// LogRun is one run in a log: its invocations (run.start events) and how each
// ended (run.end outcomes, "" for an invocation that has none).
type LogRun struct {
	RunID       string   `json:"run_id"`
	Invocations int      `json:"invocations"`
	Outcomes    []string `json:"outcomes"`
}

// LogTear is a torn line kept in the log and recorded by the log.truncated
// event on the next line.
type LogTear struct {
	Line  int `json:"line"`
	Bytes int `json:"bytes"`
}

// BadLine is the first line that breaks the chain, and why.
type BadLine struct {
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

// Intact reports whether the whole chain verified.
func (v *VerifyResult) Intact() bool { return v.Bad == nil }

// Summary is the one-line verdict of runbook audit verify.
func (v *VerifyResult) Summary() string {
	var b bytes.Buffer
	if v.Bad != nil {
		fmt.Fprintf(&b, "%s: line %d: %s", v.Path, v.Bad.Line, v.Bad.Reason)
		return b.String()
	}
	fmt.Fprintf(&b, "%s: %d lines, intact", v.Path, v.Lines)
	for _, t := range v.Tears {
		fmt.Fprintf(&b, ", torn line %d (%d bytes, recorded by log.truncated at line %d)", t.Line, t.Bytes, t.Line+1)
	}
	b.WriteString(", runs: ")
	if len(v.Runs) == 0 {
		b.WriteString("none")
	}
	for i, r := range v.Runs {
		if i > 0 {
			b.WriteString(", ")
		}
		outcomes := make([]string, len(r.Outcomes))
		for j, o := range r.Outcomes {
			if o == "" {
				o = "no run.end"
			}
			outcomes[j] = o
		}
		s := "invocation"
		if r.Invocations != 1 {
			s = "invocations"
		}
		if len(outcomes) == 0 {
			outcomes = []string{"no run.start"}
		}
		fmt.Fprintf(&b, "%s (%d %s: %s)", r.RunID, r.Invocations, s, strings.Join(outcomes, ", "))
	}
	return b.String()
}

// VerifyLog recomputes an audit log's chain. It returns an error carrying
// exit code 1 that names the first bad line when the chain is broken (an
// edited, removed, inserted or reordered line, a line that is not JSON, a
// torn last line), and exit code 2 when the file cannot be read.
func VerifyLog(path string) (VerifyResult, error) {
	return VerifyLogAnchor(path, "")
}

// VerifyLogAnchor is VerifyLog that also requires a line whose SHA-256 is
// anchor (a head recorded earlier, e.g. in a change ticket): the log must
// still hold that line, so nothing up to it can have been changed.
func VerifyLogAnchor(path, anchor string) (VerifyResult, error) {
	res := VerifyResult{Path: path, Head: Genesis}
	f, err := os.Open(path)
	if err != nil {
		return res, exitcode.With(exitcode.Invalid, err)
	}
	defer f.Close()
	v := &verifier{res: &res, r: bufio.NewReaderSize(f, 64<<10), runs: map[string]int{}, anchor: anchor}
	if err := v.run(); err != nil {
		return res, exitcode.With(exitcode.Invalid, fmt.Errorf("%s: %w", path, err))
	}
	if res.Bad == nil && anchor != "" {
		res.Anchored = v.anchored
		if !res.Anchored {
			res.Bad = &BadLine{Line: res.Lines, Reason: fmt.Sprintf("no line has the anchored hash %s: the log was rewritten or cut before the anchored line", anchor)}
		}
	}
	if res.Bad != nil {
		return res, exitcode.With(exitcode.StepFailed, errors.New(res.Summary()))
	}
	return res, nil
}

// verifier walks a log with one line of lookahead (a torn line is recognised
// by the log.truncated event that follows it). Each line's chain fields are
// parsed once, when it is first looked at.
type verifier struct {
	res      *VerifyResult
	r        *bufio.Reader
	next     []byte
	nextCL   parsed
	peeked   bool
	runs     map[string]int
	anchor   string
	anchored bool
}

// parsed is a line's chain fields, parsed on demand.
type parsed struct {
	cl   *chainLine
	err  error
	done bool
}

func (p *parsed) of(line []byte) (*chainLine, error) {
	if !p.done {
		p.cl, p.err = parseChainLine(line)
		p.done = true
	}
	return p.cl, p.err
}

// read returns the next line and its parse (empty unless it was parsed as
// the lookahead).
func (v *verifier) read() ([]byte, parsed, error) {
	if v.peeked {
		v.peeked = false
		return v.next, v.nextCL, nil
	}
	line, err := v.r.ReadBytes('\n')
	if errors.Is(err, io.EOF) {
		if len(line) == 0 {
			return nil, parsed{}, nil
		}
		return line, parsed{}, nil
	}
	return line, parsed{}, err
}

func (v *verifier) peek() ([]byte, error) {
	if !v.peeked {
		line, _, err := v.read()
		if err != nil {
			return nil, err
		}
		v.next, v.nextCL, v.peeked = line, parsed{}, true
	}
	return v.next, nil
}

func (v *verifier) bad(line int, format string, args ...any) {
	v.res.Bad = &BadLine{Line: line, Reason: fmt.Sprintf(format, args...)}
}

func (v *verifier) run() error {
	res := v.res
	want, prev := uint64(1), Genesis
	var prevLine int // line number of the last chained line
	for {
		line, lineCL, err := v.read()
		if err != nil {
			return err
		}
		if line == nil {
			return nil
		}
		res.Lines++
		n := res.Lines
		next, err := v.peek()
		if err != nil {
			return err
		}
		if next != nil && v.recordsTear(line) {
			res.Tears = append(res.Tears, LogTear{Line: n, Bytes: len(bytes.TrimSuffix(line, []byte("\n")))})
			continue
		}
		if line[len(line)-1] != '\n' {
			upTo := "no complete line precedes it"
			if prevLine > 0 {
				upTo = fmt.Sprintf("the chain is intact up to line %d", prevLine)
			}
			v.bad(n, "torn: the last line has no newline at its end (a write cut short by a crash or a full disk, or bytes appended); "+
				"%s; a run appending to this log records the torn line with a %s event", upTo, EventTruncated)
			return nil
		}
		cl, err := lineCL.of(line)
		if err != nil {
			v.bad(n, "%v", err)
			return nil
		}
		switch {
		case cl.Seq < want:
			v.bad(n, "seq %d where %d was due: a line was inserted, repeated or moved here", cl.Seq, want)
			return nil
		case cl.Seq > want:
			missing := fmt.Sprintf("seq %d", want)
			if cl.Seq > want+1 {
				missing = fmt.Sprintf("seq %d–%d", want, cl.Seq-1)
			}
			v.bad(n, "seq %d where %d was due: the line(s) with %s were removed or moved", cl.Seq, want, missing)
			return nil
		case cl.Prev != prev:
			if n == 1 || prevLine == 0 {
				v.bad(n, "prev is %.12s…, but the first line of a chain carries the genesis value %.12s…: the line was changed", cl.Prev, Genesis)
				return nil
			}
			// The smallest change that explains the break: line n intact
			// (line n+1 vouches for it) means line prevLine changed; line n
			// not vouched for means line n changed.
			if next != nil {
				ncl, err := v.nextCL.of(next)
				if err == nil && ncl.Prev == hashLine(line) {
					v.bad(prevLine, "changed after it was written: its SHA-256 does not match the prev recorded by line %d", n)
				} else {
					v.bad(n, "changed after it was written: its prev does not match the SHA-256 of line %d, and its own SHA-256 does not match the prev of line %d", prevLine, n+1)
				}
				return nil
			}
			v.bad(prevLine, "line %d or line %d (the last) was changed after it was written: the prev of line %d does not match the SHA-256 of line %d", prevLine, n, n, prevLine)
			return nil
		}
		h := hashLine(line)
		want, prev, prevLine = cl.Seq+1, h, n
		res.Seq, res.Head = cl.Seq, h
		if h == v.anchor {
			v.anchored = true
		}
		if cl.RunID != "" {
			i, ok := v.runs[cl.RunID]
			if !ok {
				i = len(res.Runs)
				v.runs[cl.RunID] = i
				res.Runs = append(res.Runs, LogRun{RunID: cl.RunID})
			}
			switch cl.Event {
			case "run.start":
				res.Runs[i].Invocations++
				res.Runs[i].Outcomes = append(res.Runs[i].Outcomes, "")
			case "run.end":
				if k := len(res.Runs[i].Outcomes); k > 0 {
					res.Runs[i].Outcomes[k-1] = cl.Outcome
				}
			}
		}
	}
}

// recordsTear reports whether the line after line (the lookahead) is a
// log.truncated event that records line as the torn line it found (its
// length and SHA-256, without the newline that ended it when the log was
// appended to).
func (v *verifier) recordsTear(line []byte) bool {
	cl, err := v.nextCL.of(v.next)
	if err != nil || cl.Event != EventTruncated || cl.TornBytes == nil {
		return false
	}
	torn := bytes.TrimSuffix(line, []byte("\n"))
	sum := sha256.Sum256(torn)
	return *cl.TornBytes == len(torn) && cl.TornSHA256 == hex.EncodeToString(sum[:])
}
