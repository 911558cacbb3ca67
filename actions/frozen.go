package actions

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/runbookhq/runbook/internal/jsonstr"
)

// A generate step's frozen statement list is a blob of its journal: a JSON
// array of strings, one statement a line (docs/state.md), written as the
// generator query's rows arrive and read back a statement at a time, so that
// a list of a million statements is never held in memory whole.

// Statements is a frozen statement list, read in order.
type Statements interface {
	// Len is how many statements the list holds.
	Len() int
	// Read returns a reader of the statements from index from (0-based) on.
	Read(from int) (StatementReader, error)
}

// StatementReader reads a frozen list's statements in order.
type StatementReader interface {
	// Next returns the next statement, or io.EOF after the last.
	Next() (string, error)
	Close() error
}

// freeze writes the list into the journal's blob genUnit as write adds the
// statements. An error of write is returned as it is.
func freeze(j Journal, write func(add func(string) error) error) (*frozenList, error) {
	n := 0
	var werr error // write's own error, returned as it is
	err := j.PutBlob(genUnit, func(f io.Writer) error {
		w := bufio.NewWriterSize(f, 256<<10)
		w.WriteString("[")
		var buf []byte
		add := func(stmt string) error {
			buf = buf[:0]
			if n > 0 {
				buf = append(buf, ',')
			}
			buf = jsonstr.Append(append(buf, '\n'), stmt)
			if _, err := w.Write(buf); err != nil {
				return fmt.Errorf("freezing the generated statements: %w", err)
			}
			n++
			return nil
		}
		if werr = write(add); werr != nil {
			return werr
		}
		w.WriteString("\n]\n")
		return w.Flush()
	})
	switch {
	case werr != nil:
		return nil, werr
	case err != nil:
		return nil, fmt.Errorf("freezing the generated statements: %w", err)
	}
	return &frozenList{j: j, n: n}, nil
}

// frozenList is a frozen list in the journal. It implements Statements: the
// statements are decoded one at a time as they are read.
type frozenList struct {
	j Journal
	n int
}

// openFrozen opens the frozen list of n statements; n < 0 counts them.
func openFrozen(j Journal, n int) (*frozenList, error) {
	l := &frozenList{j: j, n: n}
	r, err := l.read(0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if n >= 0 {
		return l, nil
	}
	for l.n = 0; ; l.n++ {
		if _, err := r.Next(); err == io.EOF {
			return l, nil
		} else if err != nil {
			return nil, err
		}
	}
}

func (l *frozenList) Len() int { return l.n }

func (l *frozenList) Read(from int) (StatementReader, error) {
	r, err := l.read(from)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (l *frozenList) read(from int) (*frozenReader, error) {
	f, err := l.j.OpenBlob(genUnit)
	if err != nil {
		return nil, fmt.Errorf("frozen statement list: %w", err)
	}
	r := &frozenReader{f: f, br: bufio.NewReaderSize(f, 256<<10)}
	if head, err := r.br.Peek(2); err != nil || string(head) != "[\n" {
		// Not written one statement a line: decode the array as a stream.
		r.dec = json.NewDecoder(r.br)
		if tok, err := r.dec.Token(); err != nil || tok != json.Delim('[') {
			f.Close()
			return nil, fmt.Errorf("frozen statement list: not a JSON array")
		}
	} else {
		r.br.Discard(2)
	}
	for i := 0; i < from; i++ {
		if _, err := r.Next(); err != nil {
			f.Close()
			if err == io.EOF {
				err = fmt.Errorf("frozen statement list: %d statements, not %d", i, l.n)
			}
			return nil, err
		}
	}
	return r, nil
}

// frozenReader decodes a frozen list's statements one at a time: a line at a
// time (freeze writes one statement a line), or with a JSON decoder.
type frozenReader struct {
	f    io.ReadCloser
	br   *bufio.Reader
	dec  *json.Decoder // nil: a statement a line
	long []byte
}

func (r *frozenReader) Next() (string, error) {
	if r.dec != nil {
		if !r.dec.More() {
			return "", io.EOF
		}
		var s string
		if err := r.dec.Decode(&s); err != nil {
			return "", fmt.Errorf("frozen statement list: %v", err)
		}
		return s, nil
	}
	line, err := r.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull { // a statement longer than the buffer
		r.long = append(r.long[:0], line...)
		for err == bufio.ErrBufferFull {
			line, err = r.br.ReadSlice('\n')
			r.long = append(r.long, line...)
		}
		line = r.long
	}
	if err != nil {
		return "", fmt.Errorf("frozen statement list: %v", err)
	}
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte(","))
	if len(line) == 1 && line[0] == ']' {
		return "", io.EOF
	}
	if len(line) >= 2 && line[0] == '"' && line[len(line)-1] == '"' && bytes.IndexByte(line, '\\') < 0 {
		return string(line[1 : len(line)-1]), nil // nothing escaped: the text itself
	}
	var s string
	if err := json.Unmarshal(line, &s); err != nil {
		return "", fmt.Errorf("frozen statement list: %v", err)
	}
	return s, nil
}

func (r *frozenReader) Close() error { return r.f.Close() }
