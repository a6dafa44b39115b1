# libFuzzer targets (tests/fuzz/, docs/reliability.md). Everything they
# run is compiled again with clang under -fsanitize=fuzzer,address,undefined
# in build/fuzz, apart from the gcc build: libFuzzer needs clang's coverage
# instrumentation in the code it explores, not only in the harness.
#   make fuzz [FUZZ_SECONDS=600]      every target FUZZ_SECONDS each
#   make check-fuzz                   the stage: FUZZ_SMOKE_SECONDS (20) each
#   make fuzz-build                   only build them
# A run starts from the committed seeds (tests/fuzz/corpus/TARGET), copied
# into build/fuzz/corpus-work/TARGET, where what it finds accumulates over
# runs; crashing inputs go to build/fuzz/artifacts/TARGET/.

FUZZ_CC            ?= clang-14
FUZZ_SECONDS       ?= 600
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_BUILD         := build/fuzz
FUZZ_TARGETS       := gguf bundle tokenizer proto config dbus

# Per target: the longest input, in bytes. The model files must fit a
# bundle file (15 tensors, each 4 KiB-aligned: ~92 KiB at the least); the
# others are requests, config files and texts, where longer inputs only
# repeat what shorter ones reach.
FUZZ_MAXLEN_gguf      := 131072
FUZZ_MAXLEN_bundle    := 131072
FUZZ_MAXLEN_tokenizer := 4096
FUZZ_MAXLEN_proto     := 16384
FUZZ_MAXLEN_config    := 4096
FUZZ_MAXLEN_dbus      := 4096

# clang does not know gcc's -Wno-format-truncation, and warns of positional
# initializers that leave fields zero, which the code uses and gcc accepts.
# The sanitizers stop at the first report so that libFuzzer keeps the input.
FUZZ_SAN     := address,undefined
FUZZ_CFLAGS   = -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -fno-sanitize-recover=all \
                -Wall -Wextra -Werror -Wno-missing-field-initializers -pthread -DWITH_SYSTEMD=1 -MMD -MP \
                -DFUZZ_SHARED='"$(SHARED)"' \
                -Iengine -Iproto -I$(FUZZ_BUILD)/proto -Idaemon -I$(FUZZ_BUILD)/gen -Itests/fuzz \
                $(shell pkg-config --cflags openblas liburing libprotobuf-c dbus-1 libsystemd)
FUZZ_LIBS     = $(shell pkg-config --libs openblas liburing libprotobuf-c dbus-1 libsystemd) -lm -pthread

FUZZ_ENGINE_OBJ := $(patsubst %.c,$(FUZZ_BUILD)/%.o,$(wildcard engine/*.c))
FUZZ_PROTO_OBJ  := $(FUZZ_BUILD)/proto/pinfer.pb-c.o $(patsubst %.c,$(FUZZ_BUILD)/%.o,$(wildcard proto/*.c))
FUZZ_DAEMON_OBJ := $(patsubst %.c,$(FUZZ_BUILD)/%.o,$(filter-out daemon/main.c,$(wildcard daemon/*.c)))
FUZZ_UTIL_OBJ   := $(FUZZ_BUILD)/tests/fuzz/fuzz_util.o
FUZZ_BINS       := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

.PHONY: fuzz fuzz-build check-fuzz fuzz-tools
CHECK_STAGES += check-fuzz

# A stage fails, never skips, without its tools: clang and libFuzzer come
# from scripts/install-deps.sh, run here when either is missing.
FUZZ_PROBE = echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' | \
	$(FUZZ_CC) -x c -fsanitize=fuzzer,$(FUZZ_SAN) -o /dev/null - 2>/dev/null
fuzz-tools: | $(DEPS_STAMP)
	@$(FUZZ_PROBE) || scripts/install-deps.sh
	@$(FUZZ_PROBE) || { echo "fuzz: $(FUZZ_CC) cannot build a libFuzzer target (packages clang, libclang-rt-14-dev)" >&2; exit 1; }

$(FUZZ_BUILD)/proto/pinfer.pb-c.c $(FUZZ_BUILD)/proto/pinfer.pb-c.h &: proto/pinfer.proto | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(PROTOC_C) --proto_path=proto --c_out=$(FUZZ_BUILD)/proto proto/pinfer.proto

$(FUZZ_BUILD)/gen/bus_xml.h: scripts/embed-xml.sh $(DBUS_XML)
	@mkdir -p $(dir $@)
	$(Q)scripts/embed-xml.sh $(DBUS_XML) >$@.tmp && mv $@.tmp $@

$(FUZZ_PROTO_OBJ) $(FUZZ_DAEMON_OBJ) $(FUZZ_UTIL_OBJ) $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/tests/fuzz/fuzz_%.o): \
	| $(FUZZ_BUILD)/proto/pinfer.pb-c.h $(FUZZ_BUILD)/gen/bus_xml.h

$(FUZZ_BUILD)/%.o: %.c | fuzz-tools
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,$(FUZZ_SAN) -c $< -o $@

$(FUZZ_BUILD)/proto/pinfer.pb-c.o: $(FUZZ_BUILD)/proto/pinfer.pb-c.c | fuzz-tools
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,$(FUZZ_SAN) -c $< -o $@

$(FUZZ_BUILD)/libengine.a: $(FUZZ_ENGINE_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^
$(FUZZ_BUILD)/libproto.a: $(FUZZ_PROTO_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^
$(FUZZ_BUILD)/libdaemon.a: $(FUZZ_DAEMON_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

# Archives, so that each target takes only the objects it reaches.
$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_UTIL_OBJ) $(FUZZ_BUILD)/libdaemon.a \
		$(FUZZ_BUILD)/libproto.a $(FUZZ_BUILD)/libengine.a
	$(Q)$(FUZZ_CC) -fsanitize=fuzzer,$(FUZZ_SAN) -o $@ $^ $(FUZZ_LIBS)

fuzz-build: $(FUZZ_BINS)

# $(call fuzz-run,TARGET,SECONDS): fails on a crash, leak or timeout
# (libFuzzer exits non-zero and leaves the input in artifacts/TARGET/).
define fuzz-run
	@mkdir -p $(FUZZ_BUILD)/corpus-work/$(1) $(FUZZ_BUILD)/artifacts/$(1)
	@cp tests/fuzz/corpus/$(1)/* $(FUZZ_BUILD)/corpus-work/$(1)/
	@echo "fuzz_$(1): $(2) s"
	@SHARED=$(SHARED) $(FUZZ_BUILD)/fuzz_$(1) -max_total_time=$(2) -max_len=$(FUZZ_MAXLEN_$(1)) \
		-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix=$(FUZZ_BUILD)/artifacts/$(1)/ $(FUZZ_BUILD)/corpus-work/$(1) \
		>$(FUZZ_BUILD)/fuzz_$(1).log 2>&1 || \
		{ tail -n 60 $(FUZZ_BUILD)/fuzz_$(1).log >&2; echo "fuzz_$(1): FAILED (log: $(FUZZ_BUILD)/fuzz_$(1).log)" >&2; exit 1; }
	@grep -E '^(stat::|#[0-9]+\s+DONE)' $(FUZZ_BUILD)/fuzz_$(1).log | tr '\n' ' ' | sed 's/$$/\n/'

endef

fuzz: fuzz-build
	$(foreach t,$(FUZZ_TARGETS),$(call fuzz-run,$(t),$(FUZZ_SECONDS)))

check-fuzz: fuzz-build
	$(foreach t,$(FUZZ_TARGETS),$(call fuzz-run,$(t),$(FUZZ_SMOKE_SECONDS)))

