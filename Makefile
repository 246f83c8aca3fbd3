# sunrise-link — the two commands a user runs:
#   make bench   build everything and run the main job on the emulated Tang runtime
#   make test    run every test (Rust and C); .ci/run calls exactly this
#
# Other targets:
#   make emu     build the emulated Tang runtime and lay out an SDK-shaped root in $(EMU_ROOT)
#   make lint    rustfmt + clippy

CARGO    ?= cargo
EMU_ROOT ?= target/tangrt-emu
EMU_ROOT_ABS := $(abspath $(EMU_ROOT))

# Every test and example finds the emulator through these, exactly as it would find the SDK.
export SUNRISE_LINK_EMU_ROOT := $(EMU_ROOT_ABS)

.PHONY: all emu lib lint test test-rust test-c bench demo clean

all: emu lib

emu:
	$(MAKE) -f emu/emu.mk root EMU_ROOT=$(EMU_ROOT_ABS)

lib:
	$(CARGO) build --release -p sunrise-link

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test-rust: emu
	$(CARGO) test --workspace

test-c: emu lib
	$(MAKE) -f emu/emu.mk test-c EMU_ROOT=$(EMU_ROOT_ABS)
	@if [ -f tests/c/Makefile ]; then $(MAKE) -C tests/c test EMU_ROOT=$(EMU_ROOT_ABS); fi

test: lint test-rust test-c
	@echo "make test: all suites passed"

demo: emu
	$(MAKE) -f emu/emu.mk demo EMU_ROOT=$(EMU_ROOT_ABS)

bench: demo

clean:
	$(CARGO) clean
