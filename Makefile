# pinfer build. `make` builds everything, `make check` runs every test,
# `make demo` generates a story, `make bench` prints speed figures.
# SANITIZE=1 builds and tests with ASan+UBSan in a separate tree.

CC      ?= cc
SHARED  ?= $(abspath ../shared)
SANITIZE ?= 0
PREFIX  ?= /usr/local

ifeq ($(SANITIZE),1)
BUILD   := build/san
OPT     := -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else
BUILD   := build/rel
OPT     := -O2
endif

# Quiet build lines; V=1 shows the full commands.
ifeq ($(V),1)
Q :=
else
Q = @echo "  $(if $(filter %.o,$@),CC  ,LINK) $@";
endif

# Library flags are recursive variables on purpose: they are expanded when a
# recipe runs, i.e. after $(DEPS_STAMP) has installed what was missing.
PKGS        := openblas cmocka
PKG_CFLAGS   = $(shell pkg-config --cflags $(PKGS))
BLAS_LIBS    = $(shell pkg-config --libs openblas)
CMOCKA_LIBS  = $(shell pkg-config --libs cmocka)

# Error messages are bounded buffers that truncate by design, hence
# -Wno-format-truncation.
CFLAGS_ALL  = -std=c11 -D_GNU_SOURCE -g $(OPT) -Wall -Wextra -Werror -Wno-format-truncation -pthread \
              -MMD -MP -Iengine -Itools $(PKG_CFLAGS) $(CFLAGS)
LDLIBS_ALL  = $(BLAS_LIBS) -lm -pthread $(LDFLAGS)

ENGINE_SRC  := $(wildcard engine/*.c)
ENGINE_OBJ  := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
LIBPINFER   := $(BUILD)/libpinfer.a
LIBPINFER_SO := $(BUILD)/libpinfer.so
TOOLS_SRC   := $(wildcard tools/*.c)
TOOLS_OBJ   := $(TOOLS_SRC:%.c=$(BUILD)/%.o)
# The tools' code minus main(), so tests can call a command's logic directly.
LIBTOOLS    := $(BUILD)/libtools.a
LIBTOOLS_OBJ := $(filter-out $(BUILD)/tools/pinfer-model.o,$(TOOLS_OBJ))
PINFER_MODEL := $(BUILD)/pinfer-model
TESTS_C     := $(wildcard tests/test_*.c)
TESTS_BIN   := $(TESTS_C:tests/%.c=$(BUILD)/tests/%)
TESTS_SH    := $(wildcard tests/test_*.sh)
TESTUTIL_OBJ := $(BUILD)/tests/testutil.o
DEPS_STAMP  := build/.deps-ok

.PHONY: all check demo bench clean deps install
# Keep test objects: they are intermediates of a chain and make would delete them.
.SECONDARY:
all: $(PINFER_MODEL) $(LIBPINFER_SO) $(TESTS_BIN)

deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/install-deps.sh
	@pkg-config --exists $(PKGS) || scripts/install-deps.sh
	@mkdir -p $(dir $@) && touch $@

# The engine goes into a shared library too, exporting only engine/pinfer.h.
$(ENGINE_OBJ): OBJ_CFLAGS := -fPIC -fvisibility=hidden

$(BUILD)/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS_ALL) $(OBJ_CFLAGS) -c $< -o $@

$(LIBPINFER): $(ENGINE_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(LIBPINFER_SO): $(ENGINE_OBJ)
	$(Q)$(CC) $(CFLAGS_ALL) -shared -o $@ $^ $(LDLIBS_ALL)

$(LIBTOOLS): $(LIBTOOLS_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(PINFER_MODEL): $(BUILD)/tools/pinfer-model.o $(LIBTOOLS) $(LIBPINFER)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(TESTUTIL_OBJ) $(LIBTOOLS) $(LIBPINFER)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(CMOCKA_LIBS) $(LDLIBS_ALL)

check: all
	@BUILD=$(BUILD) SHARED=$(SHARED) scripts/run-tests.sh $(TESTS_BIN) $(TESTS_SH)

demo: $(PINFER_MODEL)
	@BUILD=$(BUILD) SHARED=$(SHARED) scripts/demo.sh

bench: $(PINFER_MODEL)
	@BUILD=$(BUILD) scripts/bench.sh

install: $(PINFER_MODEL)
	install -D -m 0755 $(PINFER_MODEL) $(DESTDIR)$(PREFIX)/bin/pinfer-model

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
