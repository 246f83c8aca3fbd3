# Builds the emulated Tang runtime + PTML and lays them out like the SDK:
#   <EMU_ROOT>/lib/linux-x86_64/{libtangrt_shared.so,libptml_shared.so}
#   <EMU_ROOT>/lib/{libtangrt_shared.so,libptml_shared.so} -> linux-x86_64/ (relative links:
#     Mooncake's classic targets link these paths; one file, so a process that links one
#     path and loads the other gets one runtime, not two)
#   <EMU_ROOT>/include/{tang_runtime_api.h,tang_rt/*.h,ptml.h,tang_emu.h}
# plus <EMU_ROOT>-minimal, the same without the optional symbols (tangMemcpyPeer_v2,
# tangMemcpyPeerAsync_v2, tangDeviceGetPeerPointer, ptmlUninit, __ptmlUinit).
#
#   make -f emu/emu.mk root   EMU_ROOT=<abs dir>   build + lay out both roots
#   make -f emu/emu.mk test-c EMU_ROOT=<abs dir>   C and C++ programs against the headers (-Werror)
#   make -f emu/emu.mk demo   EMU_ROOT=<abs dir>   two unrelated processes sharing device memory

CARGO    ?= cargo
EMU_CC   ?= gcc
EMU_CXX  ?= g++
EMU_DIR  := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
REPO     := $(patsubst %/,%,$(dir $(EMU_DIR)))
TARGET_DIR ?= $(if $(CARGO_TARGET_DIR),$(abspath $(CARGO_TARGET_DIR)),$(REPO)/target)
EMU_ROOT ?= $(TARGET_DIR)/tangrt-emu
EMU_ROOT_MINIMAL ?= $(EMU_ROOT)-minimal
MINIMAL_TARGET_DIR ?= $(TARGET_DIR)/emu-minimal
C_BUILD  ?= $(TARGET_DIR)/emu-c

LIBDIR   = $(EMU_ROOT)/lib/linux-x86_64
CFLAGS_EMU = -O2 -g -Wall -Wextra -Werror -I$(EMU_ROOT)/include
LDFLAGS_EMU = -L$(LIBDIR) -Wl,-rpath,$(LIBDIR) -ltangrt_shared -lptml_shared -lpthread

PKGS := -p sunrise-link-emu -p sunrise-link-emu-ptml

.PHONY: root layout headers-alone test-c demo

root:
	cd $(REPO) && $(CARGO) build --release $(PKGS)
	cd $(REPO) && $(CARGO) build --release $(PKGS) \
		--features sunrise-link-emu/minimal,sunrise-link-emu-ptml/minimal \
		--target-dir $(MINIMAL_TARGET_DIR)
	$(MAKE) -f $(EMU_DIR)/emu.mk layout DEST=$(EMU_ROOT) FROM=$(TARGET_DIR)/release
	$(MAKE) -f $(EMU_DIR)/emu.mk layout DEST=$(EMU_ROOT_MINIMAL) FROM=$(MINIMAL_TARGET_DIR)/release
	@echo "emulated Tang runtime root: $(EMU_ROOT) (and $(EMU_ROOT_MINIMAL))"

layout:
	mkdir -p $(DEST)/lib/linux-x86_64 $(DEST)/include/tang_rt
	install -m 0755 $(FROM)/libtangrt_shared.so $(FROM)/libptml_shared.so $(DEST)/lib/linux-x86_64/
	ln -sfn linux-x86_64/libtangrt_shared.so $(DEST)/lib/libtangrt_shared.so
	ln -sfn linux-x86_64/libptml_shared.so $(DEST)/lib/libptml_shared.so
	install -m 0644 $(EMU_DIR)/include/tang_runtime_api.h $(EMU_DIR)/include/ptml.h \
		$(EMU_DIR)/include/tang_emu.h $(DEST)/include/
	install -m 0644 $(EMU_DIR)/include/tang_rt/driver_types.h \
		$(EMU_DIR)/include/tang_rt/host_defines.h $(DEST)/include/tang_rt/

$(C_BUILD):
	mkdir -p $@

$(C_BUILD)/test_emu: $(EMU_DIR)/c/test_emu.c $(EMU_DIR)/include/*.h $(EMU_DIR)/include/tang_rt/*.h | $(C_BUILD)
	$(EMU_CC) -std=c11 $(CFLAGS_EMU) $< -o $@ $(LDFLAGS_EMU)

$(C_BUILD)/test_emu_cpp: $(EMU_DIR)/c/test_emu.cpp $(EMU_DIR)/include/*.h $(EMU_DIR)/include/tang_rt/*.h | $(C_BUILD)
	$(EMU_CXX) -std=c++17 $(CFLAGS_EMU) $< -o $@ $(LDFLAGS_EMU)

$(C_BUILD)/ipc_demo: $(EMU_DIR)/c/ipc_demo.c $(EMU_DIR)/include/*.h $(EMU_DIR)/include/tang_rt/*.h | $(C_BUILD)
	$(EMU_CC) -std=c11 $(CFLAGS_EMU) $< -o $@ $(LDFLAGS_EMU)

HEADERS := tang_runtime_api.h tang_rt/driver_types.h tang_rt/host_defines.h ptml.h tang_emu.h

# Each header compiles on its own, as C11 and as C++17.
headers-alone: root
	@for h in $(HEADERS); do \
		printf '#include <%s>\n' $$h | $(EMU_CC) -std=c11 $(CFLAGS_EMU) -x c -fsyntax-only - || exit 1; \
		printf '#include <%s>\n' $$h | $(EMU_CXX) -std=c++17 $(CFLAGS_EMU) -x c++ -fsyntax-only - || exit 1; \
	done
	@echo "headers compile alone as C11 and C++17: $(HEADERS)"

test-c: root headers-alone $(C_BUILD)/test_emu $(C_BUILD)/test_emu_cpp $(C_BUILD)/ipc_demo
	$(C_BUILD)/test_emu $(C_BUILD)/ipc_demo
	$(C_BUILD)/test_emu_cpp

demo: root $(C_BUILD)/ipc_demo
	$(C_BUILD)/ipc_demo
