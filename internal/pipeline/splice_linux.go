package pipeline

import (
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// spliceChunk is the most one splice(2) call is asked to move; a pipe holds
// less, so each call moves whatever the source pipe has.
const spliceChunk = 1 << 30

// splicePump moves src to dst (both pipes) with splice(2), so the bytes never
// enter user space, counting them into n. Both files are non-blocking (os.Pipe
// makes them so), and SPLICE_F_NONBLOCK keeps splice from blocking on either
// pipe; when it would, the pump waits in poll(2) until src is readable and dst
// writable (or the stopper's wake pipe fires). It returns nil at EOF, EPIPE
// when the consumer has gone, errStopped when stopped, errNoSplice when the
// kernel refuses these files before any byte moved.
func splicePump(src, dst *os.File, n *atomic.Int64, s *pumpStopper) error {
	rfd, err := rawFd(src)
	if err != nil {
		return errNoSplice
	}
	wfd, err := rawFd(dst)
	if err != nil {
		return errNoSplice
	}
	kfd := -1
	if s != nil && s.wakeR != nil {
		if kfd, err = rawFd(s.wakeR); err != nil {
			kfd = -1
		}
	}
	moved := false
	last := time.Now()
	for {
		k, err := unix.Splice(rfd, nil, wfd, nil, spliceChunk, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if k > 0 {
			n.Add(int64(k))
			moved = true
			now := time.Now()
			if pumpNap > 0 && int64(k) < pumpBatch {
				// k bytes gathered since the last splice: at that rate a
				// batch takes batch/k times as long. Nap that long (at
				// least pumpNap, at most pumpMaxNap).
				nap := time.Duration(float64(now.Sub(last)) * float64(pumpBatch) / float64(k))
				napTime(min(max(nap, pumpNap), pumpMaxNap))
			}
			last = now
			continue
		}
		switch err {
		case nil:
			return nil // EOF: every writer of src has gone
		case unix.EINTR:
		case unix.EAGAIN:
			// Either src is empty or dst is full: wait for both to be ready.
			// While src is empty, a consumer that goes away ends the pump at
			// once (as with a direct pipe, the producer then dies of SIGPIPE
			// at its next write, and a descendant still holding src does
			// not keep Run waiting).
			if stopped, err := waitFd(rfd, unix.POLLIN, wfd, kfd); stopped || err != nil {
				return stoppedOr(err)
			}
			if !ready(wfd, unix.POLLOUT) {
				if stopped, err := waitFd(wfd, unix.POLLOUT, -1, kfd); stopped || err != nil {
					return stoppedOr(err)
				}
				// The consumer held the pump up: the producer's rate is
				// measured from now on.
				last = time.Now()
			}
		case unix.EINVAL, unix.ENOSYS:
			if !moved {
				return errNoSplice
			}
			return err
		default:
			return err
		}
	}
}

// The pump batches: after a splice that moved less than pumpBatch bytes it
// sleeps pumpNap before looking again, so the producer fills the (1 MiB) pipe
// instead of waking the pump, and the pump the consumer, for every 4 KiB
// write. At 2.4 GB/s a 1 MiB pipe takes ~400 µs to fill, so 100 µs never
// stalls the producer. Measured (package doc), batching makes the counted
// pipeline faster than a direct pipe; without it the pump wakes for every
// write of the producer.
var (
	pumpNap    = 100 * time.Microsecond
	pumpMaxNap = 10 * time.Millisecond
	pumpBatch  = int64(256 << 10)
)

func napTime(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	_ = unix.Nanosleep(&ts, nil)
}

func stoppedOr(err error) error {
	if err != nil {
		return err
	}
	return errStopped
}

// waitFd blocks until fd has one of events (or an error or hang-up). It
// returns EPIPE early if peer (if >= 0, the write end of a pipe) reports that
// its reader has gone, and stopped if kfd (if >= 0) becomes readable.
func waitFd(fd int, events int16, peer, kfd int) (stopped bool, err error) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
	peerAt, kfdAt := -1, -1
	if peer >= 0 {
		peerAt = len(fds)
		fds = append(fds, unix.PollFd{Fd: int32(peer)}) // POLLERR is always reported
	}
	if kfd >= 0 {
		kfdAt = len(fds)
		fds = append(fds, unix.PollFd{Fd: int32(kfd), Events: unix.POLLIN})
	}
	for {
		_, err := unix.Poll(fds, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, err
		}
		if kfdAt >= 0 && fds[kfdAt].Revents != 0 {
			return true, nil
		}
		if peerAt >= 0 && fds[peerAt].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
			return false, unix.EPIPE
		}
		if fds[0].Revents != 0 {
			return false, nil
		}
	}
}

// ready reports whether fd has one of events now.
func ready(fd int, events int16) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0 && fds[0].Revents&events != 0
}

// rawFd returns f's descriptor without switching it to blocking mode (as
// f.Fd() would). The caller keeps f open while it uses the descriptor.
func rawFd(f *os.File) (int, error) {
	sc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := sc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, err
	}
	return fd, nil
}
