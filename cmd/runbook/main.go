// Command runbook executes declarative YAML runbooks for PostgreSQL operations.
// See README.md and SPEC.md. This package is the command line only: it parses
// flags, calls the library packages and maps their errors to exit codes.
package main

import (
	"os"
)

func main() {
	os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
