# SyncGuard developer entry points. `make demo` and `make test` work on a
# fresh machine: scripts/services.sh installs and starts what they need.

GO        ?= go
BIN       := bin/syncguard
SERVICES  := scripts/services.sh
# DEMO_KAFKA=real runs the demo on the local Kafka broker instead of the
# in-process one.
DEMO_KAFKA ?= inprocess
# FUZZTIME is the budget of each fuzz target in `make fuzz`.
FUZZTIME  ?= 10s

.PHONY: all build demo test unit integration fuzz bench lint services-start services-stop clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/syncguard

services-start:
	bash $(SERVICES) start
	bash $(SERVICES) tools

services-stop:
	bash $(SERVICES) stop

demo: build
ifeq ($(DEMO_KAFKA),real)
	SERVICES="kafka clickhouse" bash $(SERVICES) start
	$(BIN) demo --kafka=real
else
	SERVICES=clickhouse bash $(SERVICES) start
	$(BIN) demo
endif

# test runs every unit and integration test against the real Kafka and
# ClickHouse that the services script starts.
test: services-start
	$(GO) vet ./...
	eval "$$(bash $(SERVICES) env)" && $(GO) test -count=1 -p 2 -timeout 20m ./...

unit:
	$(GO) test -count=1 -short ./...

fuzz:
	bash scripts/fuzz.sh $(FUZZTIME)

bench: build services-start
	eval "$$(bash $(SERVICES) env)" && $(BIN) bench

# lint runs golangci-lint with .golangci.yml. scripts/tools.sh installs the
# pinned version into ~/.cache/syncguard/bin first when it is missing.
lint:
	linter=$$(GO=$(GO) bash scripts/tools.sh golangci-lint) && "$$linter" run ./...

clean:
	rm -rf bin
