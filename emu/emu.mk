# Build the emulated Tang runtime and lay it out like the SDK under $(EMU_ROOT).
CARGO ?= cargo
EMU_ROOT ?= $(abspath target/tangrt-emu)

.PHONY: root test-c demo
root:
	$(CARGO) build --release -p sunrise-link-emu
	mkdir -p $(EMU_ROOT)/lib/linux-x86_64 $(EMU_ROOT)/include

test-c: root

demo: root
	@echo "emulated Tang runtime root: $(EMU_ROOT)"
