# sunrise-link — the two commands a user runs:
#   make bench   build everything and run the main job on the emulated Tang runtime
#   make test    run every test (Rust and C); .ci/run calls exactly this
#
# Other targets:
#   make emu     build the emulated Tang runtime and lay out an SDK-shaped root in $(EMU_ROOT)
#   make lint    rustfmt + clippy
#   make icache  the code footprint of one small transfer (callgrind's cache simulation)

CARGO    ?= cargo
EMU_ROOT ?= target/tangrt-emu
EMU_ROOT_ABS := $(abspath $(EMU_ROOT))

# Every test and example finds the emulator through these, exactly as it would find the SDK.
export SUNRISE_LINK_EMU_ROOT := $(EMU_ROOT_ABS)

BENCH      := c_examples/build/sunrise_link_bench
BENCH_ENV  := MC_TANGRT_ROOT=$(EMU_ROOT_ABS) SUNRISE_LINK_LIB=$(abspath target/release/libsunrise_link.so)
# The main job: same-device and peer-device, write and read, 4K..16M, with baselines.
BENCH_ARGS ?=

.PHONY: all emu lib examples lint test test-rust test-c test-cpp test-examples test-reliability test-fuzz bench icache demo clean

all: emu lib

emu:
	$(MAKE) -f emu/emu.mk root EMU_ROOT=$(EMU_ROOT_ABS)

lib:
	$(CARGO) build --release -p sunrise-link

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The cdylibs are built first: tests load them the way a host does.
test-rust: emu
	$(CARGO) build --workspace
	$(CARGO) test --workspace

examples:
	$(MAKE) -C c_examples

test-c: emu lib
	$(MAKE) -f emu/emu.mk test-c EMU_ROOT=$(EMU_ROOT_ABS)
	@if [ -f tests/c/Makefile ]; then $(MAKE) -C tests/c test EMU_ROOT=$(EMU_ROOT_ABS); fi

# The C++ side for TENT: the CMake package (install, find_package, add_subdirectory,
# pkg-config), and the drop-ins compiled against a Mooncake checkout when MOONCAKE_SRC names
# one (skipped with a note otherwise).
test-cpp: lib
	$(MAKE) -C tests/cpp test package

# The examples and the bench, run briefly with data checks: single process, then a
# target/initiator pair over IPC.
test-examples: emu lib examples
	$(BENCH_ENV) $(BENCH) --duration 0.05 --block-sizes 4K,1M --op write,read,mix --check
	$(BENCH_ENV) $(BENCH) --duration 0.05 --block-sizes 64K --local-type dram --check
	$(BENCH_ENV) sh c_examples/bench_pair.sh $(BENCH) --duration 0.05 --block-sizes 4K,1M --check
	$(BENCH_ENV) c_examples/build/icache_probe --transfers 200 --block 64K

# Leak check: the C harness and tests/valgrind/abi_cycles.c under valgrind memcheck (any
# memory error or definitely lost byte fails); skipped with a note where valgrind is absent.
# The hostile-input, fault, fuzz and stress suites are Rust tests (tests/abi, tests/reliability),
# run by test-rust.
test-reliability: emu lib
	@if command -v valgrind >/dev/null 2>&1; then \
	  $(MAKE) -C tests/valgrind test EMU_ROOT=$(EMU_ROOT_ABS); \
	else \
	  echo "valgrind not found: leak check skipped (.ci/run installs it)"; \
	fi

# The libFuzzer targets of fuzz/ (hex codec, location and config parsers): built unoptimised
# with coverage instrumentation and run FUZZ_SECONDS each; a crash fails the target.
FUZZ_SECONDS ?= 2
test-fuzz:
	FUZZ_PROFILE=dev sh fuzz/run.sh $(FUZZ_SECONDS)

test: lint test-rust test-c test-cpp test-examples test-reliability test-fuzz
	@echo "make test: all suites passed"

demo: emu
	$(MAKE) -f emu/emu.mk demo EMU_ROOT=$(EMU_ROOT_ABS)

bench: emu lib examples
	$(BENCH_ENV) $(BENCH) $(BENCH_ARGS)

# One 4 KiB transfer at a time after a pass over 200 KB of other code, under callgrind's cache
# simulation: instructions and instruction-cache misses per transfer, per object (see
# docs/performance.md). ICACHE_ARGS go to the probe (e.g. --block 64K).
ICACHE_ARGS ?=
icache: emu lib examples
	@command -v valgrind >/dev/null 2>&1 || { echo "make icache needs valgrind (apt-get install valgrind)"; exit 1; }
	$(BENCH_ENV) valgrind --tool=callgrind --cache-sim=yes --callgrind-out-file=target/icache.callgrind \
	  c_examples/build/icache_probe $(ICACHE_ARGS)
	python3 c_examples/icache_report.py target/icache.callgrind

clean:
	$(CARGO) clean
