# check-aarch64: the engine, its unit tests and the stories260K reference
# test cross-built for arm64 and run under qemu-user, in two builds so that
# both NEON paths are exercised: armv8.2-a+dotprod (the SDOT kernels) on
# qemu's "max" CPU, and plain armv8-a on a Cortex-A57, which has no dot
# product instructions, so one that slipped into that build would trap.
# The arm64 libraries are Debian's own, installed through multiarch by
# `scripts/install-deps.sh aarch64`. docs/reliability.md has the figures.

CHECK_STAGES += check-aarch64
.PHONY: check-aarch64 check-aarch64-dotprod check-aarch64-armv8

A64_CC     := aarch64-linux-gnu-gcc
A64_ROOT   := build/aarch64
A64_PKGS   := openblas liburing cmocka
A64_DEPS_STAMP := build/.deps-aarch64-ok
# pkg-config's default search path is the host's; this one finds the .pc
# files that the :arm64 packages install.
A64_PKG_CONFIG := PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig pkg-config
# Recursive on purpose, like the host's library flags: expanded once the
# packages are there.
A64_CFLAGS  = -std=c11 -D_GNU_SOURCE -g -O2 -Wall -Wextra -Werror -Wno-format-truncation -pthread \
              -MMD -MP -Iengine -Itools -Itests $(shell $(A64_PKG_CONFIG) --cflags $(A64_PKGS))
A64_LIBS    = $(shell $(A64_PKG_CONFIG) --libs $(A64_PKGS)) -lm -pthread

# The unit tests that need only the engine and the tools: every one that
# includes no header of the daemon or of the protocol.
A64_FOREIGN_HDRS := $(notdir $(wildcard daemon/*.h proto/*.h)) daemon_harness.h
# Left out, the tests that take minutes each under qemu (several times
# what the rest take together) for code that has no arm64 path of its own:
# the kernels they run are the ones test_quant and test_matmul check.
A64_SLOW   := test_prefill test_quantize test_sparsity test_synth_predictor test_synth_sparse \
              test_offload_budget
A64_TESTS  := $(filter-out $(A64_SLOW),$(notdir $(basename \
              $(shell grep -L -F $(A64_FOREIGN_HDRS:%=-e '"%"') tests/test_*.c))))
A64_ENGINE_SRC := $(wildcard engine/*.c) $(filter-out tools/pinfer-model.c,$(wildcard tools/*.c)) tests/testutil.c

$(A64_DEPS_STAMP): scripts/install-deps.sh
	@(command -v $(A64_CC) qemu-aarch64 >/dev/null && $(A64_PKG_CONFIG) --exists $(A64_PKGS)) || \
		scripts/install-deps.sh aarch64
	@mkdir -p $(dir $@) && touch $@

# $(call a64-wrap,QEMU_CPU) writes $@, a script that runs $< in qemu.
# The arm64 C library is the multiarch one (libc6:arm64, in /lib), not the
# cross toolchain's copy in /usr/aarch64-linux-gnu: under qemu -L with that
# one, the first pthread_create never returns. OpenBLAS's idle worker
# threads spin, which under qemu starves the thread doing the work for
# minutes; the engine runs BLAS on one thread anyway.
a64-wrap = @mkdir -p $(dir $@) && \
	printf '\#!/bin/sh\nOPENBLAS_NUM_THREADS=1 exec qemu-aarch64 -cpu $(1) %s "$$@"\n' '$(abspath $<)' >$@ && \
	chmod +x $@

# $(call a64-build,NAME,MARCH,QEMU_CPU): build/aarch64/NAME holds the
# objects and the arm64 binaries under bin/, and under tests/ and at the
# top the wrappers that run them in qemu, so that scripts/run-tests.sh and
# tests/test_stories.sh run them as they run host binaries.
define a64-build
$(A64_ROOT)/$(1)/obj/%.o: %.c | $(A64_DEPS_STAMP)
	@mkdir -p $$(dir $$@)
	$$(Q)$(A64_CC) $$(A64_CFLAGS) -march=$(2) -c $$< -o $$@

$(A64_ROOT)/$(1)/bin/%: $(A64_ROOT)/$(1)/obj/tests/%.o $(A64_ENGINE_SRC:%.c=$(A64_ROOT)/$(1)/obj/%.o)
	@mkdir -p $$(dir $$@)
	$$(Q)$(A64_CC) -o $$@ $$^ $$(A64_LIBS)

$(A64_ROOT)/$(1)/bin/pinfer-model: $(A64_ROOT)/$(1)/obj/tools/pinfer-model.o \
		$(filter-out %/testutil.o,$(A64_ENGINE_SRC:%.c=$(A64_ROOT)/$(1)/obj/%.o))
	@mkdir -p $$(dir $$@)
	$$(Q)$(A64_CC) -o $$@ $$^ $$(A64_LIBS)

$(A64_ROOT)/$(1)/tests/%: $(A64_ROOT)/$(1)/bin/%
	$$(call a64-wrap,$(3))

$(A64_ROOT)/$(1)/pinfer-model: $(A64_ROOT)/$(1)/bin/pinfer-model
	$$(call a64-wrap,$(3))

check-aarch64-$(1): $(A64_TESTS:%=$(A64_ROOT)/$(1)/tests/%) $(A64_ROOT)/$(1)/pinfer-model
	@echo "aarch64 $(2) on qemu -cpu $(3)"
	@BUILD=$(A64_ROOT)/$(1) SHARED=$(SHARED) scripts/run-tests.sh \
		$(A64_TESTS:%=$(A64_ROOT)/$(1)/tests/%) tests/test_stories.sh
endef

$(eval $(call a64-build,dotprod,armv8.2-a+dotprod,max))
$(eval $(call a64-build,armv8,armv8-a,cortex-a57))

check-aarch64: check-aarch64-dotprod check-aarch64-armv8
