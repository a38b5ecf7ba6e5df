# Tiny freestanding test guests (tests/guests/*.c), each linked with lib/ into an
# ELF that kite boots through its 64-bit ELF entry.
GUEST_CFLAGS := -O2 -std=gnu11 -ffreestanding -fno-pic -fno-pie -fno-stack-protector \
	-mno-red-zone -mno-sse -mno-mmx -mgeneral-regs-only -fno-asynchronous-unwind-tables \
	-nostdlib -Wall -Wextra -Werror -Isrc -Itests/guests/lib
GUEST_LDFLAGS := -static -no-pie -Wl,--build-id=none -Wl,--no-warn-rwx-segments
GUEST_SRCS := $(sort $(wildcard tests/guests/*.c))
GUEST_BINS := $(GUEST_SRCS:tests/guests/%.c=$(BUILD)/guests/%.elf)
GUEST_LIB := tests/guests/lib/start.S tests/guests/lib/guest.c
GUEST_DEPS := $(GUEST_LIB) tests/guests/lib/guest.h tests/guests/lib/guest.ld src/devices/testdev.h

$(BUILD)/guests/%.elf: tests/guests/%.c $(GUEST_DEPS)
	@mkdir -p $(dir $@)
	$(call msg,GUEST,$@)
	$(Q)$(CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) -Wl,-T,tests/guests/lib/guest.ld -o $@ $< $(GUEST_LIB)

# Stand-alone assembly guests with their own entry and linker script
# (tests/guests/NAME.S + NAME.ld), for boot protocols the C runtime cannot start
# in: pvh.S is entered in 32-bit protected mode.
GUEST_ASM_SRCS := $(sort $(wildcard tests/guests/*.S))
GUEST_BINS += $(GUEST_ASM_SRCS:tests/guests/%.S=$(BUILD)/guests/%.elf)

$(BUILD)/guests/%.elf: tests/guests/%.S tests/guests/%.ld
	@mkdir -p $(dir $@)
	$(call msg,GUEST,$@)
	$(Q)$(CC) -nostdlib $(GUEST_LDFLAGS) -Wl,-T,tests/guests/$*.ld -o $@ $<

# bootparams as the flat payload of a bzImage: linked so that its first byte sits
# at load address + 0x200, the 64-bit entry of the Linux boot protocol. The
# integration tests wrap it in a setup header (tests/integration/bzimage.py).
$(BUILD)/guests/bootparams.bin: tests/guests/bootparams.c $(GUEST_DEPS)
	@mkdir -p $(dir $@)
	$(call msg,GUEST,$@)
	$(Q)$(CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) -Wl,-T,tests/guests/lib/guest.ld \
		-Wl,--section-start=.text=0x100200 -o $@.link $< $(GUEST_LIB)
	$(Q)objcopy -O binary $@.link $@
GUEST_BINS += $(BUILD)/guests/bootparams.bin

# Test tools that run on the host beside kite.
$(BUILD)/tools/uffd-handler: tests/tools/uffd_handler.c
	@mkdir -p $(dir $@)
	$(call msg,CC,$@)
	$(Q)$(CC) -O2 -Wall -Wextra -Werror -o $@ $<
GUEST_BINS += $(BUILD)/tools/uffd-handler

guests: $(GUEST_BINS)
.PHONY: guests
