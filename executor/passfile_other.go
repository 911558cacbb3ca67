//go:build !linux

package executor

import "os"

// memPassfile: memfd_create is Linux's; elsewhere the fallback directory is used.
func memPassfile(name string, content []byte) (*os.File, error) { return nil, errNoMemfd }
