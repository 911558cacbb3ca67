//go:build !linux

package main

// calibration is measured on Linux only.
func calibration(dir string) string { return "not measured on this system" }
