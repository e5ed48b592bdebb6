# modkv — build, run and test.
#
#   make run     build and start one member on localhost:2379
#   make test    install missing deps, build, run the integration tests (and a short fuzz pass)
#   make fuzz    run each fuzz target for FUZZ_SECS seconds
#   make chaos   fault injection with new seeds for SECS seconds, etcd and modkv side by side
#
# Everything is built with the release profile so `build`, `run` and `test`
# share one build. Set CARGO_TARGET_DIR to keep the build outside the clone.

SHELL := /bin/bash

CARGO_TARGET_DIR ?= target
export CARGO_TARGET_DIR
export DEBIAN_FRONTEND := noninteractive

TARGET     := $(CARGO_TARGET_DIR)
MODKV      := $(TARGET)/release/modkv
PLUGIN_DIR := $(TARGET)/plugins
# etcd 3.5's tools (tests/fetch-etcd35.sh), beside the system's etcd 3.4
ETCD35_DIR := $(TARGET)/etcd-3.5

CARGO      ?= cargo
# Fuzzing (server/tests/fuzz.rs): seconds per target for `make fuzz`, and for the short pass `make test`
# runs (`make fuzz FUZZ_SECS=600`).
FUZZ_SECS  ?= 60
FUZZ_TEST_SECS ?= 2
# Extra arguments: `make run RUN_ARGS=--log-level=debug`,
# `make test TEST_ARGS='-- --include-ignored'`.
RUN_ARGS   ?=
TEST_ARGS  ?=

# What each target needs: clang for RocksDB's bindings, etcd 3.4 for the tests' side-by-side checks,
# iproute2 (`ip`) for the partition tests' network namespaces.
BUILD_PACKAGES := clang libclang-dev
TEST_PACKAGES  := etcd-server etcd-client curl chromium iproute2
WASM_TARGET  := wasm32-wasip2
# The example plugins `make plugins` builds (plugins/<name>/).
PLUGINS      := hello json-guard audit kv-browser
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build build-failpoints run test fuzz chaos bench bench-auth bench-ab bench-mem bench-proxy bench-restart bench-report plugins deps deps-build deps-test deps-wasm apt-install fmt clean

all: build

## build: release binary at $(CARGO_TARGET_DIR)/release/modkv
build: deps-build
	$(CARGO) build --release -p modkv --bin modkv

## build-failpoints: the server with failpoints compiled in (feature `failpoints`), as
## $(CARGO_TARGET_DIR)/release/modkv-failpoints, for tests/tests/failpoints.rs; `modkv` is left as it is
## (only the modkv crate is compiled a second time)
build-failpoints: deps-build
	$(CARGO) build --release -p modkv --features failpoints --bin modkv-failpoints

## run: build (server and example plugins), then start a single member (data in ./default.modkv)
run: build plugins
	@if [ -d "$(PLUGIN_DIR)" ]; then \
		set -x; exec "$(MODKV)" --data-dir default.modkv --plugin-dir "$(PLUGIN_DIR)" $(RUN_ARGS); \
	else \
		set -x; exec "$(MODKV)" --data-dir default.modkv $(RUN_ARGS); \
	fi

## test: the whole suite: the server's unit tests, the plugin SDK's and example plugins' unit tests, then
## the integration tests (tests/) against the built binaries (modkv, modkv-failpoints), the example plugins
## and the real etcd
test: deps-test build build-failpoints plugins
	$(CARGO) test --release -p modkv --lib
	$(CARGO) test --release -p modkv-bbolt
	$(CARGO) test --release -p modkv --test layers
	$(CARGO) test --release -p modkv --doc
	FUZZ_MS=$$(( $(FUZZ_TEST_SECS) * 1000 )) MODKV_PLUGIN_DIR="$(abspath $(PLUGIN_DIR))" \
		$(CARGO) test --release -p modkv --test fuzz
	$(CARGO) test --manifest-path plugins/Cargo.toml --workspace
	MODKV_BIN="$(abspath $(MODKV))" MODKV_PLUGIN_DIR="$(abspath $(PLUGIN_DIR))" \
		ETCDCTL35_BIN="$(abspath $(ETCD35_DIR))/usr/bin/etcdctl" \
		$(CARGO) test --release -p modkv-tests --features bench $(TEST_ARGS)

## fuzz: each fuzz target of server/tests/fuzz.rs (its corpus in server/tests/fuzz/<target>/, then random
## and mutated inputs) for FUZZ_SECS seconds; FUZZ_SEED=<n> replays a run. A failing input is printed and
## saved under $(CARGO_TARGET_DIR)/tmp/fuzz-crashes/.
fuzz: deps-build plugins
	FUZZ_MS=$$(( $(FUZZ_SECS) * 1000 )) MODKV_PLUGIN_DIR="$(abspath $(PLUGIN_DIR))" \
		$(CARGO) test --release -p modkv --test fuzz -- --test-threads=1 --nocapture

## chaos: the fault-injection suite's long mode (tests/src/bin/modkv-chaos.rs): new seeds until SECS seconds
## are up, each against etcd 3.4 and modkv (kill -9, SIGSTOP, partitions, latency/loss, restarts, member
## replace, a full disk under recorded load with leases, checked for linearizability, watch and lease guarantees), each seed, anomalies and availability printed;
## CHAOS_SEED=<n> replays a seed. Needs root (network namespaces). The short mode runs in `make test`.
SECS ?= 600
chaos: deps-test build
	$(CARGO) build --release -p modkv-tests --bin modkv-chaos
	MODKV_BIN="$(abspath $(MODKV))" MODKV_PLUGIN_DIR="$(abspath $(PLUGIN_DIR))" \
		"$(TARGET)/release/modkv-chaos" --secs $(SECS)

## bench: benchmarks against the reference etcd (figures printed, nothing asserted): put latency and
## throughput, the json-guard hook's cost, a plugin route under wrk, auth off vs on (tests/bench-auth.sh)
bench: deps-test build plugins
	@$(MAKE) --no-print-directory apt-install PACKAGES="wrk"
	$(CARGO) build --release -p modkv-tests --features bench --bin modkv-bench
	$(CARGO) build --release -p modkv --example plugin-call-cost
	CARGO_TARGET_DIR="$(abspath $(TARGET))" tests/bench.sh
	CARGO_TARGET_DIR="$(abspath $(TARGET))" tests/bench-auth.sh

## bench-auth: only the auth part of `make bench` (tests/bench-auth.sh): puts, ranges and Authenticate
## calls with auth off and on, modkv and etcd 3.4 alternating over ROUNDS rounds
bench-auth: deps-test build
	$(CARGO) build --release -p modkv-tests --features bench --bin modkv-bench
	CARGO_TARGET_DIR="$(abspath $(TARGET))" tests/bench-auth.sh

## bench-ab: two modkv binaries side by side (tests/bench-ab.sh), alternating over ROUNDS rounds:
## make bench-ab A=/path/to/old/modkv B=$(CARGO_TARGET_DIR)/release/modkv
bench-ab: deps-test
	$(CARGO) build --release -p modkv-tests --features bench --bin modkv-bench
	CARGO_TARGET_DIR="$(abspath $(TARGET))" A="$(A)" B="$(B)" tests/bench-ab.sh

## bench-mem: resident memory of etcd 3.4 and modkv (MEMBERS=1 or 3; the largest member) after N puts of
## 256 B (tests/bench-mem.sh; N=300000), then after MIXED_SECS seconds of a 4:1 read/write mix at MIXED_RATE
## requests/s if given
bench-mem: deps-test build
	$(CARGO) build --release -p modkv-tests --features bench --bin modkv-bench
	CARGO_TARGET_DIR="$(abspath $(TARGET))" N="$(N)" MEMBERS="$(MEMBERS)" MIXED_SECS="$(MIXED_SECS)" MIXED_RATE="$(MIXED_RATE)" tests/bench-mem.sh

## bench-restart: restart time of etcd 3.4 and modkv with N keys of 256 B (tests/bench-restart.sh;
## N=300000, MEMBERS=1 or 3, ROUNDS=3): from spawning every member until each is healthy
bench-restart: deps-test build
	$(CARGO) build --release -p modkv-tests --features bench --bin modkv-bench
	CARGO_TARGET_DIR="$(abspath $(TARGET))" N="$(N)" MEMBERS="$(MEMBERS)" ROUNDS="$(ROUNDS)" tests/bench-restart.sh

## bench-proxy: etcd 3.4 + `etcd grpc-proxy` and modkv + `modkv grpc-proxy` side by side (tests/bench-proxy.sh):
## 10,000 watchers through a proxy vs on a member (CPU, RSS), serializable ranges through the proxy's cache
## vs a member (auth off and on), the latency a proxy adds to puts (1 and 100 clients)
bench-proxy: deps-test build
	$(CARGO) build --release -p modkv-tests --features bench --bin modkv-bench
	CARGO_TARGET_DIR="$(abspath $(TARGET))" tests/bench-proxy.sh

## bench-report: etcd 3.4 and modkv side by side (`modkv-bench report`): 1 member then 3, fresh data dirs,
## fsync on, ROUNDS rounds (default 3) alternating which server goes first, BENCH_SCALE times the request
## counts, BENCH_NOTE a remark for the report; writes bench/results/<date>/ (or OUT=dir): report.md
## (QPS, p50/p99, CPU seconds, peak RSS, disk bytes, start-to-ready and restart time, the machine's
## fdatasync time), results.json and PNG charts. Figures only, nothing asserted.
bench-report: deps-test build
	$(CARGO) build --release -p modkv-tests --features bench --bin modkv-bench
	MODKV_BIN="$(abspath $(MODKV))" "$(TARGET)/release/modkv-bench" report $(if $(OUT),--out "$(OUT)")

## plugins: build the example plugins (plugins/, their own workspace) for wasm32-wasip2 into
## $(CARGO_TARGET_DIR)/plugins/ as <name>.wasm, plus <name>.toml where the plugin has one
plugins: deps-wasm
	$(CARGO) build --manifest-path plugins/Cargo.toml --target $(WASM_TARGET) --release
	mkdir -p "$(PLUGIN_DIR)"
	@for p in $(PLUGINS); do \
		wasm="$(TARGET)/$(WASM_TARGET)/release/$$(echo "$$p" | tr - _).wasm"; \
		install -m 644 "$$wasm" "$(PLUGIN_DIR)/$$p.wasm" || exit 1; \
		if [ -f "plugins/$$p/$$p.toml" ]; then install -m 644 "plugins/$$p/$$p.toml" "$(PLUGIN_DIR)/$$p.toml" || exit 1; fi; \
		echo "plugins: $(PLUGIN_DIR)/$$p.wasm ($$(stat -c %s "$$wasm") bytes)"; \
	done

## deps: everything below (each target also installs just what it needs)
deps: deps-build deps-test deps-wasm

deps-build:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(BUILD_PACKAGES)"

deps-test:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(TEST_PACKAGES)"
	@# The Python etcd3gw client for tests/tests/etcd3gw.rs (pip from apt if missing; Debian's
	@# system python3 refuses plain `pip install` (PEP 668), hence the second attempt).
	@python3 -c 'import etcd3gw' 2>/dev/null || python3 -m pip --version >/dev/null 2>&1 || \
		$(MAKE) --no-print-directory apt-install PACKAGES="python3-pip"
	@python3 -c 'import etcd3gw' 2>/dev/null || python3 -m pip install --quiet 'etcd3gw>=2,<3' 2>/dev/null || \
		python3 -m pip install --quiet --break-system-packages 'etcd3gw>=2,<3'
	@# etcd 3.5's etcdctl / etcdutl (Debian trixie's packages, unpacked under the target dir) for the
	@# tests that run the newer tools beside etcd 3.4.
	@tests/fetch-etcd35.sh "$(ETCD35_DIR)"

## apt-install: install the Debian PACKAGES that are missing (idempotent; no apt-get update otherwise)
apt-install:
	@missing=""; \
	for p in $(PACKAGES); do \
		dpkg -s "$$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		command -v apt-get >/dev/null 2>&1 || { echo "deps: missing$$missing and no apt-get" >&2; exit 1; }; \
		echo "deps: installing$$missing"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi

deps-wasm:
	@if ! command -v rustup >/dev/null 2>&1; then \
		echo "deps: rustup not found; cannot add the $(WASM_TARGET) target" >&2; exit 1; \
	elif ! rustup target list --installed | grep -qx '$(WASM_TARGET)'; then \
		rustup target add $(WASM_TARGET); \
	fi

## fmt: format the workspace
fmt:
	$(CARGO) fmt --all
	$(CARGO) fmt --manifest-path plugins/Cargo.toml --all
	$(CARGO) fmt --manifest-path tests/plugins/Cargo.toml --all

## clean: remove build outputs (not data dirs such as ./default.modkv)
clean:
	$(CARGO) clean
