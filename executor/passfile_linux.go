package executor

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// memPassfile returns a sealed, owner-only memfd holding content, or
// errNoMemfd when the kernel (or a sandbox) refuses memfd_create.
func memPassfile(name string, content []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate("runbook-pgpass-"+name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) {
		return nil, errNoMemfd
	}
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:runbook-pgpass-"+name)
	// A memfd is created 0777: libpq ignores a password file that the group
	// or others may read.
	if err := unix.Fchmod(fd, 0o600); err != nil {
		f.Close()
		return nil, os.NewSyscallError("fchmod", err)
	}
	if _, err := f.Write(content); err != nil {
		f.Close()
		return nil, err
	}
	// The children share it: none may change what the next one reads.
	seals := unix.F_SEAL_WRITE | unix.F_SEAL_GROW | unix.F_SEAL_SHRINK | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, os.NewSyscallError("fcntl F_ADD_SEALS", err)
	}
	return f, nil
}
