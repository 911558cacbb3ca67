# runbook — developer entry points. See README.md and DEVELOPERS.md.
GO       ?= go
BIN      := bin/runbook
PKGS     := ./...

.PHONY: all build test vet fmt deps schema fuzz demo bench clean

all: build

VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/runbook

deps:
	@scripts/ensure-deps

## test: everything CI checks — formatting, vet, and the full test suite against real PostgreSQL.
test: deps
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 12m $(PKGS)

## schema: regenerate schema/runbook.schema.json from the Go definitions.
schema:
	$(GO) run ./cmd/runbook schema > schema/runbook.schema.json

## fuzz: fuzz the runbook loader (FUZZTIME=10m make fuzz).
FUZZTIME ?= 60s
fuzz:
	$(GO) test ./schema -run '^$$' -fuzz FuzzLoad -fuzztime $(FUZZTIME)

## demo: the Heroku → Crunchy Bridge migration end to end on two throwaway clusters (scripts/demo).
demo: deps
	@scripts/demo

## bench: the performance suite (docs/performance.md) on throwaway clusters of its own, fsync on.
## QUICK=1 for a short check at smaller sizes; BENCHFLAGS for more (-only P1,P3 -runs 7 -audit -v).
bench:
	@scripts/ensure-deps --bench
	$(GO) run ./bench $(if $(QUICK),-quick) $(BENCHFLAGS)

clean:
	rm -rf bin
