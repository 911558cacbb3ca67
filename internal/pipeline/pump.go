package pipeline

import (
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// errStopped: the pump was told to stop (forceStop) before EOF.
var errStopped = errors.New("pump stopped")

// errNoSplice: splice(2) does not work on these files; copy instead.
var errNoSplice = errors.New("splice not supported")

// pumpMode selects how counted bytes move; tests and benchmarks switch it.
type pumpMode int

const (
	pumpSplice pumpMode = iota // splice(2) pipe to pipe, falling back to copying
	pumpCopy                   // read(2)/write(2) through a 1 MiB buffer
)

var currentPumpMode = pumpSplice

// copyBufSize is the buffer of the copying pump.
const copyBufSize = 1 << 20

// pump moves src to dst until EOF, adding every byte moved to n.
func pump(src, dst *os.File, n *atomic.Int64, s *pumpStopper) error {
	if currentPumpMode == pumpSplice {
		err := splicePump(src, dst, n, s)
		if !errors.Is(err, errNoSplice) {
			return err
		}
	}
	return copyPump(src, dst, n)
}

func copyPump(src, dst *os.File, n *atomic.Int64) error {
	buf := make([]byte, copyBufSize)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				if errors.Is(werr, os.ErrDeadlineExceeded) {
					return errStopped
				}
				return werr
			}
			n.Add(int64(k))
		}
		switch {
		case err == io.EOF:
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			return errStopped
		case err != nil:
			return err
		}
	}
}

// pumpStopper interrupts a pump: the splicing pump polls wakeR, which stop
// makes readable by closing wakeW; the copying pump sees deadlines.
type pumpStopper struct {
	src, dst     *os.File
	wakeR, wakeW *os.File // nil if the wake pipe could not be made
	once         sync.Once
}

func newPumpStopper(src, dst *os.File) *pumpStopper {
	s := &pumpStopper{src: src, dst: dst}
	if r, w, err := os.Pipe(); err == nil {
		s.wakeR, s.wakeW = r, w
	}
	return s
}

func (s *pumpStopper) stop() {
	s.once.Do(func() {
		now := time.Now()
		_ = s.src.SetReadDeadline(now)
		_ = s.dst.SetWriteDeadline(now)
		if s.wakeW != nil {
			s.wakeW.Close()
		}
	})
}

// close releases the wake pipe once the pump has returned.
func (s *pumpStopper) close() {
	s.once.Do(func() {})
	if s.wakeW != nil {
		s.wakeW.Close()
		s.wakeR.Close()
	}
}
