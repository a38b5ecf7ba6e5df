/* What the guest kernel learns at entry: memory map, command line, initrd,
 * RSDP; as a Linux zero page or as a PVH start_info. */
#include <string.h>

#include "arch/x86/boot.h"
#include "arch/x86/layout.h"

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

int e820_build(const struct gmem *m, struct e820_entry *out, int max)
{
	int n = 0;
#define ADD(a, s, t)                                                                  \
	do {                                                                          \
		if (n < max)                                                          \
			out[n++] = (struct e820_entry){.addr = (a), .size = (s), .type = (t)}; \
	} while (0)
	uint64_t low = gmem_low_end(m);
	uint64_t below_1m = low < LAYOUT_EBDA ? low : LAYOUT_EBDA;
	ADD(0, below_1m, E820_RAM);
	if (low > LAYOUT_EBDA)
		ADD(LAYOUT_EBDA, LAYOUT_LOWMEM_END - LAYOUT_EBDA, E820_RESERVED);
	if (low > LAYOUT_BIOS_START)
		ADD(LAYOUT_BIOS_START, LAYOUT_BIOS_END - LAYOUT_BIOS_START, E820_RESERVED);
	if (low > LAYOUT_HIGH_START)
		ADD(LAYOUT_HIGH_START, low - LAYOUT_HIGH_START, E820_RAM);
	for (int i = 1; i < m->nr_regions; i++)
		ADD(m->region[i].gpa, m->region[i].size, E820_RAM);
#undef ADD
	return n;
}

static int write_cmdline(struct gmem *m, const struct boot_image *bi, const char *cmdline,
			 struct kite_err *err)
{
	size_t len = strlen(cmdline) + 1;
	if (len > bi->cmdline_size)
		return err_set(err, KITE_EXIT_USAGE,
			       "--cmdline is %zu bytes; this kernel accepts at most %u", len - 1,
			       bi->cmdline_size - 1);
	if (gmem_write(m, LAYOUT_CMDLINE, cmdline, len) < 0)
		return err_set(err, KITE_EXIT_IMAGE, "guest memory too small for the command line");
	return 0;
}

static int setup_zero_page(struct gmem *m, const struct boot_image *bi, const struct boot_args *a)
{
	uint8_t *bp = gmem_ptr(m, LAYOUT_ZERO_PAGE, BP_SIZE);
	if (!bp)
		return -1;
	memset(bp, 0, BP_SIZE);
	if (bi->is_bzimage) {
		memcpy(bp + SETUP_HDR_START, bi->setup_hdr, bi->setup_hdr_len);
	} else {
		put16(bp + BP_BOOT_FLAG, 0xaa55);
		put32(bp + BP_HEADER, HDRS_MAGIC);
		put16(bp + BP_VERSION, 0x020f);
		put32(bp + BP_KERNEL_ALIGNMENT, 0x1000000);
	}
	bp[BP_TYPE_OF_LOADER] = 0xff;
	put32(bp + BP_CMD_LINE_PTR, LAYOUT_CMDLINE);
	put32(bp + BP_EXT_CMD_LINE_PTR, 0);
	if (a->initrd_size) {
		put32(bp + BP_RAMDISK_IMAGE, (uint32_t)a->initrd_gpa);
		put32(bp + BP_RAMDISK_SIZE, (uint32_t)a->initrd_size);
		put32(bp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(a->initrd_gpa >> 32));
		put32(bp + BP_EXT_RAMDISK_SIZE, (uint32_t)(a->initrd_size >> 32));
	}
	if (a->rsdp_gpa)
		put64(bp + BP_ACPI_RSDP_ADDR, a->rsdp_gpa);
	struct e820_entry e820[E820_MAX];
	int n = e820_build(m, e820, E820_MAX);
	bp[BP_E820_ENTRIES] = (uint8_t)n;
	memcpy(bp + BP_E820_TABLE, e820, (size_t)n * sizeof(e820[0]));
	return 0;
}

/* hvm_start_info (version 1), then one module entry, then the memory map. */
#define PVH_MODLIST (LAYOUT_PVH_INFO + 0x40)
#define PVH_MEMMAP (LAYOUT_PVH_INFO + 0x80)

static int setup_pvh(struct gmem *m, const struct boot_args *a)
{
	uint8_t *si = gmem_ptr(m, LAYOUT_PVH_INFO, 0x1000);
	if (!si)
		return -1;
	memset(si, 0, 0x1000);
	put32(si + 0, PVH_MAGIC);
	put32(si + 4, 1);        /* version */
	put32(si + 8, 0);        /* flags */
	put64(si + 24, LAYOUT_CMDLINE);
	put64(si + 32, a->rsdp_gpa);
	if (a->initrd_size) {
		put32(si + 12, 1); /* nr_modules */
		put64(si + 16, PVH_MODLIST);
		put64(si + (PVH_MODLIST - LAYOUT_PVH_INFO), a->initrd_gpa);
		put64(si + (PVH_MODLIST - LAYOUT_PVH_INFO) + 8, a->initrd_size);
	}
	struct e820_entry e820[E820_MAX];
	int n = e820_build(m, e820, E820_MAX);
	uint8_t *mm = si + (PVH_MEMMAP - LAYOUT_PVH_INFO);
	for (int i = 0; i < n && (PVH_MEMMAP - LAYOUT_PVH_INFO) + (i + 1) * 24 <= 0x1000; i++) {
		put64(mm + i * 24, e820[i].addr);
		put64(mm + i * 24 + 8, e820[i].size);
		put32(mm + i * 24 + 16, e820[i].type);
	}
	put64(si + 40, PVH_MEMMAP);
	put32(si + 48, (uint32_t)n);
	return 0;
}

int boot_info_setup(struct gmem *m, const struct boot_image *bi, const struct boot_args *a,
		    struct kite_err *err)
{
	if (write_cmdline(m, bi, a->cmdline ? a->cmdline : "", err) < 0)
		return -1;
	int r = bi->mode == BOOT_PVH ? setup_pvh(m, a) : setup_zero_page(m, bi, a);
	if (r < 0)
		return err_set(err, KITE_EXIT_IMAGE, "guest memory too small for boot information");
	return 0;
}
