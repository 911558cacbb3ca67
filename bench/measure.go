package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// command is one measured process: argv run with env added to the suite's
// environment, standard input empty, standard output thrown away (runbook's
// JSON events, psql's tags) and standard error kept for the report of a
// failure.
type command struct {
	label string
	argv  []string
	env   []string
	// before prepares a run, untimed (a fresh state directory, an empty
	// target database, a checkpoint).
	before func() error
	// after checks the run's effect, untimed.
	after func() error
	// timeV runs the command under /usr/bin/time -v and takes the peak RSS
	// from its report.
	timeV bool
	// state is the state file of a runbook command's last run.
	state string
}

// sample is one run of a command.
type sample struct {
	wall      time.Duration
	user, sys time.Duration
	rssKB     int64 // peak resident set size of the process (wait4's ru_maxrss; /usr/bin/time -v's figure with timeV)
}

var rssRe = regexp.MustCompile(`Maximum resident set size \(kbytes\): (\d+)`)

// run runs c once and measures it from outside: wall time from just before
// the start to just after the process is reaped.
func (h *harness) run(c *command) (sample, error) {
	if c.before != nil {
		if err := c.before(); err != nil {
			return sample{}, fmt.Errorf("%s: preparing: %w", c.label, err)
		}
	}
	argv := c.argv
	if c.timeV {
		argv = append([]string{"/usr/bin/time", "-v"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Dir = h.work
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return sample{}, fmt.Errorf("%s: %v\n  %s\n%s", c.label, err, strings.Join(c.argv, " "), tail(stderr.String(), 3000))
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	s := sample{wall: wall, user: cmd.ProcessState.UserTime(), sys: cmd.ProcessState.SystemTime(), rssKB: ru.Maxrss}
	if c.timeV {
		m := rssRe.FindStringSubmatch(stderr.String())
		if m == nil {
			return sample{}, fmt.Errorf("%s: no peak RSS in /usr/bin/time -v's report:\n%s", c.label, tail(stderr.String(), 2000))
		}
		s.rssKB, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if c.after != nil {
		if err := c.after(); err != nil {
			return sample{}, fmt.Errorf("%s: checking the effect: %w", c.label, err)
		}
	}
	if h.verbose {
		fmt.Printf("    %-44s %9s  cpu %7s  rss %6.1f MB\n", c.label, fmtDur(wall), fmtDur(s.user+s.sys), float64(s.rssKB)/1024)
	}
	return s, nil
}

// rounds runs the commands in turn, rounds times, rotating the order every
// round (A B C, B C A, C A B …), so that a drift of the machine's speed
// during the suite weighs on every command alike. It returns the samples of
// each command, by round.
func (h *harness) rounds(rounds int, cmds ...*command) ([][]sample, error) {
	out := make([][]sample, len(cmds))
	for i := range out {
		out[i] = make([]sample, rounds)
	}
	for r := 0; r < rounds; r++ {
		for k := range cmds {
			i := (r + k) % len(cmds)
			s, err := h.run(cmds[i])
			if err != nil {
				return nil, err
			}
			out[i][r] = s
		}
	}
	return out, nil
}

// stats are the median, minimum and maximum of a series.
type stats struct{ med, min, max float64 }

func statsOf(xs []float64) stats {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return stats{med: med, min: s[0], max: s[n-1]}
}

func walls(ss []sample) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = s.wall.Seconds()
	}
	return out
}

// ratios are a/b round by round: the pairs ran back to back.
func ratios(a, b []sample) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = a[i].wall.Seconds() / b[i].wall.Seconds()
	}
	return out
}

func fmtDur(d time.Duration) string { return fmtSec(d.Seconds()) }

func fmtSec(s float64) string {
	switch {
	case s >= 10:
		return fmt.Sprintf("%.1f s", s)
	case s >= 1:
		return fmt.Sprintf("%.2f s", s)
	}
	return fmt.Sprintf("%.0f ms", s*1000)
}

func (s stats) seconds() string {
	return fmt.Sprintf("%s [%s–%s]", fmtSec(s.med), fmtSec(s.min), fmtSec(s.max))
}

func (s stats) ratio() string {
	return fmt.Sprintf("%.2f× [%.2f–%.2f]", s.med, s.min, s.max)
}
