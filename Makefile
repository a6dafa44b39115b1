# pinfer build. `make` builds everything, `make check` runs every test,
# `make demo` generates a story, `make bench` prints speed figures.
# SANITIZE=1 builds and tests with ASan+UBSan in a separate tree,
# SANITIZE=thread with TSan in another.
# WITH_SYSTEMD=0 builds pinferd without libsystemd (no sd_notify; socket
# activation still works), in a separate tree too.

CC      ?= cc
SHARED  ?= $(abspath ../shared)
SANITIZE ?= 0
WITH_SYSTEMD ?= 1
PREFIX  ?= /usr/local
UNITDIR ?= $(PREFIX)/lib/systemd/system
# dbus-daemon reads policies and activation files under /usr/share only.
DBUSDIR ?= /usr/share/dbus-1
MANDIR  ?= $(PREFIX)/share/man
# pinferd reads /etc/pinfer/pinferd.conf whatever PREFIX is; OpenRC reads
# /etc/init.d and /etc/conf.d.
SYSCONFDIR ?= /etc

ifeq ($(SANITIZE),1)
BUILD   := build/san
OPT     := -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else ifeq ($(SANITIZE),thread)
BUILD   := build/tsan
OPT     := -O1 -fsanitize=thread -fno-omit-frame-pointer
else
BUILD   := build/rel
OPT     := -O2
endif
# Objects differ with the switch, and make does not track flags.
ifneq ($(WITH_SYSTEMD),1)
BUILD   := $(BUILD)-nosystemd
endif

# Quiet build lines; V=1 shows the full commands.
ifeq ($(V),1)
Q :=
else
Q = @echo "  $(if $(filter %.o,$@),CC  ,LINK) $@";
endif

# Library flags are recursive variables on purpose: they are expanded when a
# recipe runs, i.e. after $(DEPS_STAMP) has installed what was missing.
PKGS        := openblas liburing cmocka libprotobuf-c dbus-1 $(if $(filter 1,$(WITH_SYSTEMD)),libsystemd)
PKG_CFLAGS   = $(shell pkg-config --cflags $(PKGS))
BLAS_LIBS    = $(shell pkg-config --libs openblas)
URING_LIBS   = $(shell pkg-config --libs liburing)
CMOCKA_LIBS  = $(shell pkg-config --libs cmocka)
PROTO_LIBS   = $(shell pkg-config --libs libprotobuf-c)
DBUS_LIBS    = $(shell pkg-config --libs dbus-1)
SYSTEMD_LIBS = $(if $(filter 1,$(WITH_SYSTEMD)),$(shell pkg-config --libs libsystemd))
PROTOC_C    ?= protoc-c

# Error messages are bounded buffers that truncate by design, hence
# -Wno-format-truncation.
CFLAGS_ALL  = -std=c11 -D_GNU_SOURCE -g $(OPT) -Wall -Wextra -Werror -Wno-format-truncation -pthread \
              -DWITH_SYSTEMD=$(if $(filter 1,$(WITH_SYSTEMD)),1,0) \
              -MMD -MP -Iengine -Itools -Iproto -I$(BUILD)/proto -Idaemon -I$(BUILD)/gen $(PKG_CFLAGS) $(CFLAGS)
LDLIBS_ALL  = $(BLAS_LIBS) $(URING_LIBS) -lm -pthread $(LDFLAGS)

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

# proto/: the wire protocol, shared by pinferd and the client. The protobuf-c
# code is generated at build time, never committed.
PROTO_GEN_C := $(BUILD)/proto/pinfer.pb-c.c
PROTO_GEN_H := $(BUILD)/proto/pinfer.pb-c.h
PROTO_OBJ   := $(PROTO_GEN_C:.c=.o) $(patsubst %.c,$(BUILD)/%.o,$(wildcard proto/*.c))
LIBPROTO    := $(BUILD)/libproto.a
DAEMON_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(wildcard daemon/*.c))
# The daemon minus main(), for tests.
LIBDAEMON   := $(BUILD)/libdaemon.a
LIBDAEMON_OBJ := $(filter-out $(BUILD)/daemon/main.o,$(DAEMON_OBJ))
PINFERD     := $(BUILD)/pinferd
CLIENT_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(wildcard client/*.c))
PINFER_CLIENT := $(BUILD)/pinfer

TESTS_C     := $(wildcard tests/test_*.c)
TESTS_BIN   := $(TESTS_C:tests/%.c=$(BUILD)/tests/%)
TESTS_SH    := $(wildcard tests/test_*.sh)
TESTUTIL_OBJ := $(BUILD)/tests/testutil.o $(BUILD)/tests/daemon_harness.o
DEPS_STAMP  := build/.deps-ok

.PHONY: all check test demo bench clean deps install check-asan
# Keep test objects: they are intermediates of a chain and make would delete them.
.SECONDARY:
PROGRAMS    := $(PINFER_MODEL) $(if $(wildcard daemon/main.c),$(PINFERD)) \
               $(if $(CLIENT_OBJ),$(PINFER_CLIENT))
all: $(PROGRAMS) $(LIBPINFER_SO) $(TESTS_BIN)

deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/install-deps.sh
	@(pkg-config --exists $(PKGS) && command -v $(PROTOC_C) dbus-daemon dbus-send busctl gdbus setpriv >/dev/null) || \
		scripts/install-deps.sh
	@mkdir -p $(dir $@) && touch $@

$(PROTO_GEN_C) $(PROTO_GEN_H) &: proto/pinfer.proto | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(PROTOC_C) --proto_path=proto --c_out=$(BUILD)/proto proto/pinfer.proto

# The daemon's introspection data is the shipped interface files
# themselves (docs/dbus-api.md), as C strings.
DBUS_XML    := systemd/org.pinfer.Pinfer1.Manager.xml systemd/org.pinfer.Pinfer1.Model.xml
BUS_XML_H   := $(BUILD)/gen/bus_xml.h
$(BUS_XML_H): scripts/embed-xml.sh $(DBUS_XML)
	@mkdir -p $(dir $@)
	$(Q)scripts/embed-xml.sh $(DBUS_XML) >$@.tmp && mv $@.tmp $@
$(BUILD)/daemon/bus.o: | $(BUS_XML_H)

# Everything that may include the generated header waits for it.
$(DAEMON_OBJ) $(CLIENT_OBJ) $(PROTO_OBJ) $(TESTS_C:%.c=$(BUILD)/%.o): | $(PROTO_GEN_H)

# The engine goes into a shared library too, exporting only engine/pinfer.h.
$(ENGINE_OBJ): OBJ_CFLAGS := -fPIC -fvisibility=hidden

$(BUILD)/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS_ALL) $(OBJ_CFLAGS) -c $< -o $@

$(BUILD)/proto/%.o: $(BUILD)/proto/%.c
	$(Q)$(CC) $(CFLAGS_ALL) -c $< -o $@

$(LIBPINFER): $(ENGINE_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(LIBPINFER_SO): $(ENGINE_OBJ)
	$(Q)$(CC) $(CFLAGS_ALL) -shared -o $@ $^ $(LDLIBS_ALL)

$(LIBTOOLS): $(LIBTOOLS_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(LIBPROTO): $(PROTO_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(LIBDAEMON): $(LIBDAEMON_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(PINFER_MODEL): $(BUILD)/tools/pinfer-model.o $(LIBTOOLS) $(LIBPINFER)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(PINFERD): $(BUILD)/daemon/main.o $(LIBDAEMON) $(LIBPROTO) $(LIBPINFER)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(PROTO_LIBS) $(DBUS_LIBS) $(SYSTEMD_LIBS) $(LDLIBS_ALL)

# The client never links the engine.
$(PINFER_CLIENT): $(CLIENT_OBJ) $(LIBPROTO)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(PROTO_LIBS) $(DBUS_LIBS) -pthread $(LDFLAGS)

$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(TESTUTIL_OBJ) $(LIBDAEMON) $(LIBTOOLS) $(LIBPROTO) $(LIBPINFER)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(CMOCKA_LIBS) $(PROTO_LIBS) $(DBUS_LIBS) $(SYSTEMD_LIBS) $(LDLIBS_ALL)

# tests/alloc_wrap.c goes between the allocator and the code that
# test_alloc_faults runs, and fails the allocation it is told to.
ALLOC_WRAP  := malloc calloc realloc free aligned_alloc posix_memalign strdup strndup mmap munmap \
               pthread_create pthread_join pthread_detach
$(BUILD)/tests/test_alloc_faults: $(BUILD)/tests/alloc_wrap.o
$(BUILD)/tests/test_alloc_faults: LDFLAGS += $(ALLOC_WRAP:%=-Wl,--wrap=%)

test: all
	@BUILD=$(BUILD) SHARED=$(SHARED) WITH_SYSTEMD=$(WITH_SYSTEMD) scripts/run-tests.sh $(TESTS_BIN) $(TESTS_SH)

# `make check` is what CI runs: the suite in this build, then every further
# stage (each mk/*.mk file adds its own to CHECK_STAGES). A stage that
# cannot run here fails rather than skips: the tools it needs are installed
# by scripts/install-deps.sh.
CHECK_STAGES := check-asan
include $(sort $(wildcard mk/*.mk))

check: test
	@for stage in $(CHECK_STAGES); do \
		echo "== stage $$stage"; \
		$(MAKE) --no-print-directory $$stage || exit 1; \
	done

# The whole suite again under ASan+UBSan, in build/san.
check-asan:
	@$(MAKE) --no-print-directory SANITIZE=1 test

demo: $(PROGRAMS)
	@BUILD=$(BUILD) SHARED=$(SHARED) scripts/demo.sh

bench: $(PROGRAMS)
	@BUILD=$(BUILD) SHARED=$(SHARED) scripts/bench.sh

# Files that name the daemon's binary (units, D-Bus activation, OpenRC
# script) are installed with /usr/sbin/pinferd rewritten to where it goes,
# so that they always start the binary installed with them.
# $(call install-sbin-path,MODE,SOURCE,TARGET)
install-sbin-path = install -d $(dir $(3)) && \
	sed 's|/usr/sbin/pinferd|$(PREFIX)/sbin/pinferd|g' $(2) >$(3) && chmod $(1) $(3)

# docs/install.md lists every file this installs; tests/test_install.sh
# checks the two against each other.
install: $(PROGRAMS)
	install -D -m 0755 $(PINFER_MODEL) $(DESTDIR)$(PREFIX)/bin/pinfer-model
	install -D -m 0755 $(PINFER_CLIENT) $(DESTDIR)$(PREFIX)/bin/pinfer
	install -D -m 0755 $(PINFERD) $(DESTDIR)$(PREFIX)/sbin/pinferd
	$(call install-sbin-path,0644,systemd/pinferd.service,$(DESTDIR)$(UNITDIR)/pinferd.service)
	$(call install-sbin-path,0644,systemd/pinferd.socket,$(DESTDIR)$(UNITDIR)/pinferd.socket)
	install -D -m 0644 systemd/pinferd.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/pinfer.conf
	install -D -m 0644 systemd/pinferd.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/pinfer.conf
	install -D -m 0644 systemd/org.pinfer.Pinfer1.conf $(DESTDIR)$(DBUSDIR)/system.d/org.pinfer.Pinfer1.conf
	$(call install-sbin-path,0644,systemd/org.pinfer.Pinfer1.service,$(DESTDIR)$(DBUSDIR)/system-services/org.pinfer.Pinfer1.service)
	install -D -m 0644 systemd/org.pinfer.Pinfer1.Manager.xml \
		$(DESTDIR)$(DBUSDIR)/interfaces/org.pinfer.Pinfer1.Manager.xml
	install -D -m 0644 systemd/org.pinfer.Pinfer1.Model.xml \
		$(DESTDIR)$(DBUSDIR)/interfaces/org.pinfer.Pinfer1.Model.xml
	install -D -m 0644 docs/man/pinferd.8 $(DESTDIR)$(MANDIR)/man8/pinferd.8
	install -D -m 0644 docs/man/pinfer.1 $(DESTDIR)$(MANDIR)/man1/pinfer.1
	install -D -m 0644 docs/man/pinfer-model.1 $(DESTDIR)$(MANDIR)/man1/pinfer-model.1
	install -D -m 0644 docs/pinferd.conf.example $(DESTDIR)$(SYSCONFDIR)/pinfer/pinferd.conf.example
	$(call install-sbin-path,0755,openrc/pinferd.initd,$(DESTDIR)$(SYSCONFDIR)/init.d/pinferd)
	install -D -m 0644 openrc/pinferd.confd $(DESTDIR)$(SYSCONFDIR)/conf.d/pinferd

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
