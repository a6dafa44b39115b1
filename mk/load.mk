# pinfer-load (tests/load/): the load and soak tool. A protocol client, so
# it links the proto library and libdbus like pinfer does, never the
# engine. tests/test_load.sh runs it for 20 s in the suite; `make soak`
# runs it longer (SOAK_CLIENTS, SOAK_SECONDS, SOAK_RSS_MIB; figures in
# docs/reliability.md).
LOAD_SRC    := $(wildcard tests/load/*.c)
LOAD_OBJ    := $(LOAD_SRC:%.c=$(BUILD)/%.o)
PINFER_LOAD := $(BUILD)/tests/load/pinfer-load
SOAK_CLIENTS ?= 64
SOAK_SECONDS ?= 1800
SOAK_RSS_MIB ?= 64

$(LOAD_OBJ): | $(PROTO_GEN_H)

$(PINFER_LOAD): $(LOAD_OBJ) $(LIBPROTO)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(PROTO_LIBS) $(DBUS_LIBS) -lm -pthread $(LDFLAGS)

all: $(PINFER_LOAD)

.PHONY: soak
soak: $(PROGRAMS) $(PINFER_LOAD)
	@BUILD=$(BUILD) SHARED=$(SHARED) LOAD_CLIENTS=$(SOAK_CLIENTS) LOAD_SECONDS=$(SOAK_SECONDS) \
		LOAD_RSS_MIB=$(SOAK_RSS_MIB) tests/test_load.sh
