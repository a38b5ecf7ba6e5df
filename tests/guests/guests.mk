# Tiny freestanding test guests (tests/guests/*.c), each linked with lib/ into an
# ELF that kite boots through its 64-bit ELF entry.
GUEST_CFLAGS := -O2 -std=gnu11 -ffreestanding -fno-pic -fno-pie -fno-stack-protector \
	-mno-red-zone -mno-sse -mno-mmx -mgeneral-regs-only -fno-asynchronous-unwind-tables \
	-nostdlib -Wall -Wextra -Werror -Isrc -Itests/guests/lib
GUEST_SRCS := $(sort $(wildcard tests/guests/*.c))
GUEST_BINS := $(GUEST_SRCS:tests/guests/%.c=$(BUILD)/guests/%.elf)
GUEST_LIB := tests/guests/lib/start.S tests/guests/lib/guest.c

$(BUILD)/guests/%.elf: tests/guests/%.c $(GUEST_LIB) tests/guests/lib/guest.h tests/guests/lib/guest.ld src/devices/testdev.h
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) -static -no-pie -Wl,--build-id=none -Wl,--no-warn-rwx-segments -Wl,-T,tests/guests/lib/guest.ld -o $@ $< $(GUEST_LIB)

guests: $(GUEST_BINS)
.PHONY: guests
