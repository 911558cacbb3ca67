//go:build unix

package pgtest

import (
	"io/fs"
	"os"
	"os/exec"
	"syscall"
)

// watchdogScript waits until the test binary closes the pipe on its stdin.
// "done" means the cluster was stopped normally; end of file without it
// means the test binary died, so it stops the server and removes its
// directory. Arguments: the cluster directory, then the stop command.
const watchdogScript = `trap '' HUP INT
base=$1; shift
IFS= read -r line || line=
[ "$line" = done ] && exit 0
"$@" >/dev/null 2>&1
rm -rf -- "$base"
`

// watchdog cleans up a cluster if the test binary dies before doing it.
type watchdog struct {
	cmd *exec.Cmd
	w   *os.File
}

// startWatchdog starts the watchdog of the cluster in base; stop is the argv
// that stops its server. It returns nil when it cannot (cleanup then depends
// on the test binary alone).
func startWatchdog(base string, stop []string) *watchdog {
	r, w, err := os.Pipe()
	if err != nil {
		return nil
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", append([]string{"-c", watchdogScript, "pgtest-watchdog", base}, stop...)...)
	cmd.Stdin = r
	cmd.Dir = "/"
	// Its own process group: a Ctrl-C aimed at the test run must not stop
	// the watchdog before the test binary is gone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil
	}
	return &watchdog{cmd: cmd, w: w}
}

// dismiss tells the watchdog that the cluster is gone and reaps it.
func (d *watchdog) dismiss() {
	if d == nil {
		return
	}
	d.w.WriteString("done\n")
	d.w.Close()
	d.cmd.Wait()
}

func fileOwner(fi fs.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}
