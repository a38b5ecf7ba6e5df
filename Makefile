# kite: plain Makefile. `make` builds build/kite; `make check` runs the unit tests
# under ASan+UBSan; `make guests` builds the tiny test guests.
VERSION := 0.1.0
CC ?= cc
BUILD := build

WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral
HARDEN := -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE
CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -D_GNU_SOURCE $(WARN) $(HARDEN) -Isrc -DKITE_VERSION='"$(VERSION)"' -MMD -MP
LDFLAGS += -pie -Wl,-z,noexecstack -Wl,-z,relro -Wl,-z,now
LDLIBS += -ljansson -lhttp_parser -luring -lseccomp -lpthread

SRCS := $(shell find src -name '*.c' | sort)
LIB_SRCS := $(filter-out src/main.c,$(SRCS))
OBJS := $(SRCS:%.c=$(BUILD)/obj/%.o)

# `make V=1` shows full command lines.
ifeq ($(V),1)
Q :=
msg = @true
else
Q := @
msg = @printf '  %-6s %s\n' $(1) $(2)
endif

all: $(BUILD)/kite

$(BUILD)/kite: $(OBJS)
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# `make static`: build/kite-static for `kite jail` (a jail has no loader or libraries).
$(BUILD)/kite-static: $(OBJS)
	$(call msg,LD,$@)
	$(Q)$(CC) -static-pie $(filter-out -pie,$(LDFLAGS)) -o $@ $^ $(LDLIBS)

static: $(BUILD)/kite-static
.PHONY: static

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(call msg,CC,$<)
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# ---- unit tests: cmocka, built with ASan and UBSan ----
SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/unit/%)
SAN_OBJS := $(LIB_SRCS:%.c=$(BUILD)/san/%.o)

$(BUILD)/san/%.o: %.c
	@mkdir -p $(dir $@)
	$(call msg,CC-SAN,$<)
	$(Q)$(CC) $(CFLAGS) $(SAN) -O1 -c -o $@ $<

$(BUILD)/unit/%: tests/unit/%.c $(SAN_OBJS)
	@mkdir -p $(dir $@)
	$(call msg,TEST,$@)
	$(Q)$(CC) $(CFLAGS) $(SAN) -O1 -Itests/unit -o $@ $< $(SAN_OBJS) $(LDFLAGS) -lcmocka $(LDLIBS)

# Keep the sanitizer objects between runs (make would delete them as intermediates).
.SECONDARY: $(SAN_OBJS)

unit: $(UNIT_BINS)

check: unit
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

-include tests/guests/guests.mk

clean:
	rm -rf $(BUILD)

.PHONY: all unit check clean
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# ---- fuzz: libFuzzer over the virtqueue core, virtio-blk's request checks and the
# snapshot/migration state container.
# Needs clang and its libFuzzer runtime (Debian 12: clang-14 and libclang-rt-14-dev).
# `make fuzz` runs the targets one after the other, FUZZ_TIME seconds in all;
# new inputs go to build/fuzz/corpus/<target>, crashes to build/fuzz/. ----
FUZZ_CC ?= clang
FUZZ_TIME ?= 30
FUZZ_TARGETS := virtqueue blk snapfile
FUZZ_CFLAGS := -std=gnu11 -D_GNU_SOURCE -g -O1 $(WARN) -Isrc \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_virtqueue_SRCS := fuzz/fuzz_virtqueue.c src/virtio/virtqueue.c src/vmm/mem.c
FUZZ_virtqueue_DEPS := src/virtio/virtqueue.h src/vmm/mem.h src/arch/x86/layout.h
FUZZ_blk_SRCS := fuzz/fuzz_blk.c src/virtio/blk_req.c src/virtio/virtqueue.c src/vmm/mem.c
FUZZ_blk_DEPS := src/virtio/blk.h src/virtio/virtio.h src/virtio/virtqueue.h src/vmm/mem.h
FUZZ_snapfile_SRCS := fuzz/fuzz_snapfile.c src/snapshot/snapfile.c src/util/log.c
FUZZ_snapfile_DEPS := src/snapshot/snapfile.h src/util/log.h

.SECONDEXPANSION:
$(BUILD)/fuzz/fuzz_%: $$(FUZZ_$$*_SRCS) $$(FUZZ_$$*_DEPS)
	@command -v $(FUZZ_CC) >/dev/null 2>&1 || { \
		echo "kite: error: make fuzz needs clang with libFuzzer: apt-get install clang-14 libclang-rt-14-dev (or FUZZ_CC=...)" >&2; exit 1; }
	@mkdir -p $(dir $@)
	$(call msg,FUZZ,$@)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(FUZZ_$*_SRCS) || { \
		echo "kite: error: building $@ with $(FUZZ_CC) failed (libFuzzer's runtime is in Debian's libclang-rt-14-dev)" >&2; exit 1; }

# FUZZ_TIME split evenly (at least 1 s each), so the whole run stays bounded.
fuzz: $(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%)
	@set -e; n=$(words $(FUZZ_TARGETS)); t=$$(( $(FUZZ_TIME) / n )); [ $$t -ge 1 ] || t=1; \
	for f in $(FUZZ_TARGETS); do \
		mkdir -p $(BUILD)/fuzz/corpus/$$f; \
		echo "== fuzz_$$f for $$t s"; \
		$(BUILD)/fuzz/fuzz_$$f -max_total_time=$$t -print_final_stats=1 \
			-artifact_prefix=$(BUILD)/fuzz/ $(BUILD)/fuzz/corpus/$$f fuzz/corpus/$$f; \
	done

.PHONY: fuzz
