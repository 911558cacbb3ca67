//go:build !linux

package heap

func hugePages() bool { return false }

func advise([]byte) {}
