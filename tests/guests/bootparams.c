/* The Linux 64-bit boot protocol as a kernel sees it: rsi points at a zero page
 * with the HdrS header, our loader id, the command line, the initrd and an e820
 * map. Built twice: as an ELF, and as the payload of a bzImage
 * (tests/integration/bzimage.py) whose setup header must reach the zero page.
 * The test gives an initrd starting with "KITEINRD" and
 * --cmdline "bootparams-test <initrd size>[ bzimage][ mem=<MiB>]": "bzimage" for
 * the bzImage build, mem= to check the e820 map against --mem. */
#include "guest.h"

static uint32_t rd32(uint64_t a) { return *(volatile uint32_t *)a; }
static uint64_t rd64(uint64_t a) { return *(volatile uint64_t *)a; }

static uint64_t parse_dec(const char **s)
{
	uint64_t v = 0;
	for (; **s >= '0' && **s <= '9'; (*s)++)
		v = v * 10 + (uint64_t)(**s - '0');
	return v;
}

int main(void)
{
	uint64_t bp = boot_params_gpa;
	GUEST_ASSERT(bp != 0 && bp < 0x100000);
	GUEST_ASSERT_EQ(*(volatile uint16_t *)(bp + 0x1fe), 0xaa55);
	GUEST_ASSERT_EQ(rd32(bp + 0x202), 0x53726448u); /* "HdrS" */
	GUEST_ASSERT(*(volatile uint16_t *)(bp + 0x206) >= 0x020c);
	GUEST_ASSERT_EQ(*(volatile uint8_t *)(bp + 0x210), 0xff); /* type_of_loader: undefined */

	const char *cmdline = boot_cmdline();
	const char *prefix = "bootparams-test ";
	GUEST_ASSERT(mem_eq(cmdline, prefix, str_len(prefix)));
	const char *rest = cmdline + str_len(prefix);
	uint64_t initrd_size = parse_dec(&rest);
	int is_bzimage = 0;
	uint64_t mem_mib = 0;
	while (*rest == ' ') {
		rest++;
		if (mem_eq(rest, "bzimage", 7) && (rest[7] == ' ' || rest[7] == 0)) {
			is_bzimage = 1;
			rest += 7;
		} else if (mem_eq(rest, "mem=", 4)) {
			rest += 4;
			mem_mib = parse_dec(&rest);
		} else {
			GUEST_ASSERT(!"unknown word on the command line");
		}
	}
	GUEST_ASSERT_EQ(*rest, 0);
	if (is_bzimage) {
		/* The bzImage's own setup header, as tests/integration/bzimage.py wrote it. */
		GUEST_ASSERT_EQ(*(volatile uint16_t *)(bp + 0x206), 0x020f);
		GUEST_ASSERT_EQ(rd32(bp + 0x238), 255);      /* cmdline_size */
		GUEST_ASSERT_EQ(rd64(bp + 0x258), 0x100000); /* pref_address */
	}

	/* Initrd: where the header says, page aligned, above the image, below RAM's end. */
	uint64_t ramdisk = rd32(bp + 0x218) | (uint64_t)rd32(bp + 0xc0) << 32;
	uint64_t ramdisk_size = rd32(bp + 0x21c) | (uint64_t)rd32(bp + 0xc4) << 32;
	GUEST_ASSERT_EQ(ramdisk_size, initrd_size);
	GUEST_ASSERT_EQ(ramdisk & 0xfff, 0);
	/* Above everything the kernel may use while booting: our image and stack,
	 * or for a bzImage pref_address + init_size. */
	extern char stack_top[];
	GUEST_ASSERT(ramdisk >= (uintptr_t)stack_top);
	if (is_bzimage)
		GUEST_ASSERT(ramdisk >= rd64(bp + 0x258) + rd32(bp + 0x260));
	GUEST_ASSERT(mem_eq((const void *)(uintptr_t)ramdisk, "KITEINRD", 8));
	uint32_t initrd_addr_max = rd32(bp + 0x22c);
	if (initrd_addr_max)
		GUEST_ASSERT(ramdisk + ramdisk_size - 1 <= initrd_addr_max);

	/* e820: RAM from 0, RAM at 1 MiB covering the initrd. */
	uint8_t n = *(volatile uint8_t *)(bp + 0x1e8);
	GUEST_ASSERT(n >= 2 && n <= 128);
	int initrd_in_ram = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t e = bp + 0x2d0 + 20 * i;
		uint64_t addr = rd64(e), size = rd64(e + 8);
		uint32_t type = rd32(e + 16);
		if (i == 0) {
			GUEST_ASSERT_EQ(addr, 0);
			GUEST_ASSERT_EQ(type, 1);
		}
		if (type == 1 && addr <= ramdisk && ramdisk + ramdisk_size <= addr + size)
			initrd_in_ram = 1;
	}
	GUEST_ASSERT(initrd_in_ram);

	if (mem_mib) {
		/* RAM stops at the 3 GiB hole and the rest continues at 4 GiB. */
		uint64_t low = (mem_mib < 3072 ? mem_mib : 3072) << 20, high = 0, low_seen = 0;
		for (unsigned i = 0; i < n; i++) {
			uint64_t e = bp + 0x2d0 + 20 * i;
			uint64_t addr = rd64(e), size = rd64(e + 8);
			if (rd32(e + 16) != 1)
				continue;
			GUEST_ASSERT(addr + size <= 0xc0000000ULL || addr >= 0x100000000ULL);
			if (addr + size == low)
				low_seen = 1;
			if (addr >= 0x100000000ULL)
				high += size;
		}
		GUEST_ASSERT(low_seen);
		GUEST_ASSERT_EQ(high, (mem_mib << 20) - low);
	}
	return 0;
}
