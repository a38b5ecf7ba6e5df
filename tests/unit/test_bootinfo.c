/* What the guest learns at entry: the e820 map for each memory layout, the Linux
 * zero page and the PVH start_info, checked field by field against the boot
 * protocols, and the command-line limit. */
#include "unit.h"

#include <stdlib.h>

#include "arch/x86/boot.h"
#include "arch/x86/layout.h"
#include "vmm/mem.h"

/* RAM the e820 must not report: the EBDA and the legacy VGA/BIOS window. */
#define BELOW_1M_HOLE (LAYOUT_HIGH_START - LAYOUT_EBDA)

/* ---- e820 ---- */

static uint64_t e820_check(const struct gmem *m, const struct e820_entry *e, int n)
{
	uint64_t ram = 0;
	for (int i = 0; i < n; i++) {
		assert_true(e[i].size > 0);
		assert_true(e[i].addr + e[i].size > e[i].addr);
		assert_true(e[i].type == E820_RAM || e[i].type == E820_RESERVED ||
			    e[i].type == E820_ACPI);
		if (i > 0)
			assert_true(e[i - 1].addr + e[i - 1].size <= e[i].addr);
		if (e[i].type != E820_RAM)
			continue;
		ram += e[i].size;
		/* RAM the guest is told about must be RAM kite backs. */
		assert_non_null(gmem_ptr(m, e[i].addr, e[i].size));
		assert_true(e[i].addr + e[i].size <= LAYOUT_MMIO_HOLE_START ||
			    e[i].addr >= LAYOUT_MMIO_HOLE_END);
		/* Nothing below 1 MiB overlaps the EBDA or the BIOS area. */
		if (e[i].addr < LAYOUT_HIGH_START)
			assert_true(e[i].addr + e[i].size <= LAYOUT_EBDA);
	}
	return ram;
}

static void e820_layout(uint64_t ram_size, int want_n)
{
	struct gmem m;
	assert_int_equal(gmem_init(&m, ram_size, NULL), 0);
	struct e820_entry e[E820_MAX];
	int n = e820_build(&m, e, E820_MAX);
	assert_int_equal(n, want_n);
	assert_int_equal(e820_check(&m, e, n), ram_size - BELOW_1M_HOLE);

	assert_int_equal(e[0].addr, 0);
	assert_int_equal(e[0].size, LAYOUT_EBDA);
	assert_int_equal(e[0].type, E820_RAM);
	assert_int_equal(e[1].addr, LAYOUT_EBDA);
	assert_int_equal(e[1].addr + e[1].size, LAYOUT_LOWMEM_END);
	assert_int_equal(e[1].type, E820_RESERVED);
	/* The ACPI tables sit in the BIOS area: it must not be handed out as RAM. */
	assert_int_equal(e[2].addr, LAYOUT_BIOS_START);
	assert_int_equal(e[2].addr + e[2].size, LAYOUT_BIOS_END);
	assert_int_equal(e[2].type, E820_RESERVED);
	assert_int_equal(e[3].addr, LAYOUT_HIGH_START);
	assert_int_equal(e[3].type, E820_RAM);
	gmem_free(&m);
}

static void e820_128mib(void **state)
{
	(void)state;
	e820_layout(MiB(128), 4);
}

static void e820_3gib(void **state)
{
	(void)state;
	e820_layout(GiB(3), 4);
}

static void e820_4gib(void **state)
{
	(void)state;
	e820_layout(GiB(4), 5);
	struct gmem m;
	assert_int_equal(gmem_init(&m, GiB(4), NULL), 0);
	struct e820_entry e[E820_MAX];
	int n = e820_build(&m, e, E820_MAX);
	assert_int_equal(e[3].addr + e[3].size, LAYOUT_MMIO_HOLE_START);
	assert_int_equal(e[n - 1].addr, LAYOUT_MMIO_HOLE_END);
	assert_int_equal(e[n - 1].size, GiB(1));
	assert_int_equal(e[n - 1].type, E820_RAM);
	gmem_free(&m);
}

static void e820_odd_sizes(void **state)
{
	(void)state;
	static const uint64_t sizes[] = {MiB(2), MiB(64) + 0x1000, GiB(3) - 0x1000, GiB(3) + 0x1000,
					 GiB(9)};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct gmem m;
		assert_int_equal(gmem_init(&m, sizes[i], NULL), 0);
		struct e820_entry e[E820_MAX];
		int n = e820_build(&m, e, E820_MAX);
		assert_true(n >= 4);
		assert_int_equal(e820_check(&m, e, n), sizes[i] - BELOW_1M_HOLE);
		gmem_free(&m);
	}
}

static void e820_respects_max(void **state)
{
	(void)state;
	struct gmem m;
	assert_int_equal(gmem_init(&m, GiB(5), NULL), 0);
	struct e820_entry full[E820_MAX];
	int all = e820_build(&m, full, E820_MAX);
	for (int max = 0; max <= all; max++) {
		struct e820_entry e[8];
		memset(e, 0xa5, sizeof(e));
		int n = e820_build(&m, e, max);
		assert_int_equal(n, max);
		assert_memory_equal(e, full, (size_t)n * sizeof(e[0]));
		const uint8_t *tail = (const uint8_t *)&e[n];
		for (size_t b = 0; b < sizeof(e) - (size_t)n * sizeof(e[0]); b++)
			assert_int_equal(tail[b], 0xa5);
	}
	gmem_free(&m);
}

/* ---- zero page and PVH start_info ---- */

#define RAM MiB(128)

struct ctx {
	struct gmem m;
	uint8_t *ram;
	struct boot_image bi;
	struct kite_err err;
};

static int ctx_setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -1;
	/* Stale bytes: the builders must clear what they do not set. */
	if (test_ram_init(&c->m, &c->ram, RAM, 0xa5, MiB(2)) < 0) {
		free(c);
		return -1;
	}
	*state = c;
	return 0;
}

static int ctx_teardown(void **state)
{
	struct ctx *c = *state;
	test_ram_free(&c->m, c->ram);
	free(c);
	return 0;
}

#define BZ_SETUP_SIZE (5 * 512)
#define BZ_LEN (BZ_SETUP_SIZE + 0x1000)

static void load_bzimage(struct ctx *c, uint8_t *img, uint32_t cmdline_size)
{
	memset(img, 0, BZ_LEN);
	img[BP_SETUP_SECTS] = 4;
	set16(img + BP_BOOT_FLAG, 0xaa55);
	img[BP_JUMP] = 0xeb;
	img[BP_JUMP + 1] = 0x66;
	set32(img + BP_HEADER, HDRS_MAGIC);
	set16(img + BP_VERSION, 0x020f);
	img[BP_LOADFLAGS] = LOADED_HIGH;
	set32(img + BP_INITRD_ADDR_MAX, 0x7fffffff);
	set32(img + BP_KERNEL_ALIGNMENT, 0x200000);
	set16(img + BP_XLOADFLAGS, XLF_KERNEL_64);
	set32(img + BP_CMDLINE_SIZE, cmdline_size);
	set64(img + BP_PREF_ADDRESS, 0x1000000);
	set32(img + BP_INIT_SIZE, 0x100000);
	/* Stale values a loader must overwrite. */
	img[BP_TYPE_OF_LOADER] = 0x12;
	set32(img + BP_CMD_LINE_PTR, 0xdeadbeef);
	assert_int_equal(bzimage_load(&c->m, img, BZ_LEN, &c->bi, &c->err), 0);
}

static void linux_elf_bi(struct boot_image *bi)
{
	memset(bi, 0, sizeof(*bi));
	bi->mode = BOOT_LINUX64;
	bi->entry = 0x1000000;
	bi->load_start = 0x1000000;
	bi->load_end = 0x2000000;
	bi->initrd_addr_max = 0xffffffffu;
	bi->cmdline_size = LAYOUT_CMDLINE_MAX;
}

static void check_zp_e820(const struct gmem *m, const uint8_t *zp)
{
	struct e820_entry want[E820_MAX];
	int n = e820_build(m, want, E820_MAX);
	assert_int_equal(zp[BP_E820_ENTRIES], n);
	for (int i = 0; i < n; i++) {
		const uint8_t *e = zp + BP_E820_TABLE + 20 * i;
		assert_int_equal(le64(e), want[i].addr);
		assert_int_equal(le64(e + 8), want[i].size);
		assert_int_equal(le32(e + 16), want[i].type);
	}
	/* The rest of the table is clear. */
	for (size_t b = BP_E820_TABLE + 20 * (size_t)n; b < BP_E820_TABLE + 20 * E820_MAX; b++)
		assert_int_equal(zp[b], 0);
}

static void zero_page_bzimage(void **state)
{
	struct ctx *c = *state;
	uint8_t img[BZ_LEN];
	load_bzimage(c, img, 0x7ff);
	struct boot_args a = {.cmdline = "console=ttyS0 panic=-1", .initrd_gpa = 0x7000000,
			      .initrd_size = 0x123456, .rsdp_gpa = LAYOUT_BIOS_START};
	assert_int_equal(boot_info_setup(&c->m, &c->bi, &a, &c->err), 0);
	assert_int_equal(c->err.code, 0);

	const uint8_t *zp = c->ram + LAYOUT_ZERO_PAGE;
	assert_int_equal(le32(zp + BP_CMD_LINE_PTR), LAYOUT_CMDLINE);
	assert_int_equal(le32(zp + BP_EXT_CMD_LINE_PTR), 0);
	assert_string_equal((const char *)c->ram + LAYOUT_CMDLINE, a.cmdline);
	assert_int_equal(le32(zp + BP_RAMDISK_IMAGE), 0x7000000);
	assert_int_equal(le32(zp + BP_RAMDISK_SIZE), 0x123456);
	assert_int_equal(le32(zp + BP_EXT_RAMDISK_IMAGE), 0);
	assert_int_equal(le32(zp + BP_EXT_RAMDISK_SIZE), 0);
	assert_int_equal(le64(zp + BP_ACPI_RSDP_ADDR), LAYOUT_BIOS_START);
	assert_int_equal(zp[BP_TYPE_OF_LOADER], 0xff);
	check_zp_e820(&c->m, zp);

	/* The image's setup header, as the boot protocol asks, with the fields the
	 * loader owns overwritten. */
	assert_int_equal(zp[BP_SETUP_SECTS], 4);
	assert_int_equal(le16(zp + BP_BOOT_FLAG), 0xaa55);
	assert_int_equal(le32(zp + BP_HEADER), HDRS_MAGIC);
	assert_int_equal(le16(zp + BP_VERSION), 0x020f);
	assert_int_equal(zp[BP_LOADFLAGS], LOADED_HIGH);
	assert_int_equal(le32(zp + BP_INITRD_ADDR_MAX), 0x7fffffff);
	assert_int_equal(le32(zp + BP_KERNEL_ALIGNMENT), 0x200000);
	assert_int_equal(le16(zp + BP_XLOADFLAGS), XLF_KERNEL_64);
	assert_int_equal(le32(zp + BP_CMDLINE_SIZE), 0x7ff);
	assert_int_equal(le64(zp + BP_PREF_ADDRESS), 0x1000000);
	assert_int_equal(le32(zp + BP_INIT_SIZE), 0x100000);
	/* Outside the fields set, the page is zero: no stale 0xa5 bytes. */
	for (size_t b = 0; b < BP_ACPI_RSDP_ADDR; b++)
		assert_int_equal(zp[b], 0);
	for (size_t b = BP_E820_TABLE + 20 * E820_MAX; b < BP_SIZE; b++)
		assert_int_equal(zp[b], 0);
}

static void zero_page_elf(void **state)
{
	struct ctx *c = *state;
	linux_elf_bi(&c->bi);
	struct boot_args a = {.cmdline = "quiet"};
	assert_int_equal(boot_info_setup(&c->m, &c->bi, &a, &c->err), 0);
	const uint8_t *zp = c->ram + LAYOUT_ZERO_PAGE;
	/* No image header: kite supplies the fields a 64-bit kernel checks. */
	assert_int_equal(le16(zp + BP_BOOT_FLAG), 0xaa55);
	assert_int_equal(le32(zp + BP_HEADER), HDRS_MAGIC);
	assert_true(le16(zp + BP_VERSION) >= 0x020c);
	assert_int_equal(le32(zp + BP_KERNEL_ALIGNMENT), 0x1000000);
	assert_int_equal(zp[BP_TYPE_OF_LOADER], 0xff);
	assert_int_equal(le32(zp + BP_CMD_LINE_PTR), LAYOUT_CMDLINE);
	assert_string_equal((const char *)c->ram + LAYOUT_CMDLINE, "quiet");
	/* No initrd, no RSDP: the fields say so. */
	assert_int_equal(le32(zp + BP_RAMDISK_IMAGE), 0);
	assert_int_equal(le32(zp + BP_RAMDISK_SIZE), 0);
	assert_int_equal(le64(zp + BP_ACPI_RSDP_ADDR), 0);
	check_zp_e820(&c->m, zp);
}

static void zero_page_initrd_above_4g(void **state)
{
	struct ctx *c = *state;
	linux_elf_bi(&c->bi);
	struct boot_args a = {.cmdline = "", .initrd_gpa = 0x123456000ULL,
			      .initrd_size = 0x100000001ULL};
	assert_int_equal(boot_info_setup(&c->m, &c->bi, &a, &c->err), 0);
	const uint8_t *zp = c->ram + LAYOUT_ZERO_PAGE;
	assert_int_equal(le32(zp + BP_RAMDISK_IMAGE), 0x23456000);
	assert_int_equal(le32(zp + BP_EXT_RAMDISK_IMAGE), 0x1);
	assert_int_equal(le32(zp + BP_RAMDISK_SIZE), 0x1);
	assert_int_equal(le32(zp + BP_EXT_RAMDISK_SIZE), 0x1);
}

static void zero_page_big_memory_e820(void **state)
{
	(void)state;
	struct gmem m;
	assert_int_equal(gmem_init(&m, GiB(6), NULL), 0);
	struct boot_image bi;
	linux_elf_bi(&bi);
	struct boot_args a = {.cmdline = "x"};
	struct kite_err err = {0};
	assert_int_equal(boot_info_setup(&m, &bi, &a, &err), 0);
	const uint8_t *zp = gmem_ptr(&m, LAYOUT_ZERO_PAGE, BP_SIZE);
	assert_non_null(zp);
	check_zp_e820(&m, zp);
	int n = zp[BP_E820_ENTRIES];
	const uint8_t *last = zp + BP_E820_TABLE + 20 * (n - 1);
	assert_int_equal(le64(last), LAYOUT_MMIO_HOLE_END);
	assert_int_equal(le64(last + 8), GiB(3));
	gmem_free(&m);
}

static void zero_page_null_cmdline(void **state)
{
	struct ctx *c = *state;
	linux_elf_bi(&c->bi);
	struct boot_args a = {.cmdline = NULL};
	assert_int_equal(boot_info_setup(&c->m, &c->bi, &a, &c->err), 0);
	assert_int_equal(c->ram[LAYOUT_CMDLINE], 0);
}

#define PVH_INFO_MODLIST 16
#define PVH_INFO_CMDLINE 24
#define PVH_INFO_RSDP 32
#define PVH_INFO_MEMMAP 40
#define PVH_INFO_MEMMAP_ENTRIES 48

static void check_pvh_memmap(const struct gmem *m, const uint8_t *si)
{
	struct e820_entry want[E820_MAX];
	int n = e820_build(m, want, E820_MAX);
	assert_int_equal(le32(si + PVH_INFO_MEMMAP_ENTRIES), n);
	uint64_t mm = le64(si + PVH_INFO_MEMMAP);
	const uint8_t *e = gmem_ptr(m, mm, 24 * (uint64_t)n);
	assert_non_null(e);
	for (int i = 0; i < n; i++, e += 24) {
		assert_int_equal(le64(e), want[i].addr);
		assert_int_equal(le64(e + 8), want[i].size);
		assert_int_equal(le32(e + 16), want[i].type);
		assert_int_equal(le32(e + 20), 0); /* reserved */
	}
}

static void pvh_start_info(void **state)
{
	struct ctx *c = *state;
	linux_elf_bi(&c->bi);
	c->bi.mode = BOOT_PVH;
	struct boot_args a = {.cmdline = "console=hvc0", .initrd_gpa = 0x6000000,
			      .initrd_size = 0x54321, .rsdp_gpa = LAYOUT_BIOS_START};
	assert_int_equal(boot_info_setup(&c->m, &c->bi, &a, &c->err), 0);
	assert_int_equal(c->err.code, 0);

	const uint8_t *si = c->ram + LAYOUT_PVH_INFO;
	assert_int_equal(le32(si), PVH_MAGIC);
	assert_int_equal(le32(si), 0x336ec578);
	assert_int_equal(le32(si + 4), 1); /* version */
	assert_int_equal(le32(si + 8), 0); /* flags */
	assert_int_equal(le32(si + 12), 1); /* nr_modules */
	assert_int_equal(le64(si + PVH_INFO_CMDLINE), LAYOUT_CMDLINE);
	assert_string_equal((const char *)c->ram + LAYOUT_CMDLINE, "console=hvc0");
	assert_int_equal(le64(si + PVH_INFO_RSDP), LAYOUT_BIOS_START);
	assert_int_equal(le32(si + 52), 0); /* reserved */

	uint64_t ml = le64(si + PVH_INFO_MODLIST);
	const uint8_t *mod = gmem_ptr(&c->m, ml, 32);
	assert_non_null(mod);
	assert_int_equal(ml % 8, 0);
	assert_int_equal(le64(mod), 0x6000000);
	assert_int_equal(le64(mod + 8), 0x54321);
	assert_int_equal(le64(mod + 16), 0); /* no module command line */
	assert_int_equal(le64(mod + 24), 0);
	/* The module list and memory map do not overlap the start_info itself. */
	assert_true(ml >= LAYOUT_PVH_INFO + 56);
	assert_true(le64(si + PVH_INFO_MEMMAP) >= ml + 32);
	check_pvh_memmap(&c->m, si);
}

static void pvh_without_initrd(void **state)
{
	struct ctx *c = *state;
	linux_elf_bi(&c->bi);
	c->bi.mode = BOOT_PVH;
	struct boot_args a = {.cmdline = ""};
	assert_int_equal(boot_info_setup(&c->m, &c->bi, &a, &c->err), 0);
	const uint8_t *si = c->ram + LAYOUT_PVH_INFO;
	assert_int_equal(le32(si), PVH_MAGIC);
	assert_int_equal(le32(si + 12), 0);
	assert_int_equal(le64(si + PVH_INFO_MODLIST), 0);
	assert_int_equal(le64(si + PVH_INFO_RSDP), 0);
	check_pvh_memmap(&c->m, si);
	/* No zero page is written for a PVH boot. */
	assert_int_equal(c->ram[LAYOUT_ZERO_PAGE + BP_TYPE_OF_LOADER], 0xa5);
}

static void pvh_big_memory(void **state)
{
	(void)state;
	struct gmem m;
	assert_int_equal(gmem_init(&m, GiB(5), NULL), 0);
	struct boot_image bi;
	linux_elf_bi(&bi);
	bi.mode = BOOT_PVH;
	struct boot_args a = {.cmdline = "x"};
	struct kite_err err = {0};
	assert_int_equal(boot_info_setup(&m, &bi, &a, &err), 0);
	const uint8_t *si = gmem_ptr(&m, LAYOUT_PVH_INFO, 64);
	check_pvh_memmap(&m, si);
	assert_int_equal(le32(si + PVH_INFO_MEMMAP_ENTRIES), 5);
	gmem_free(&m);
}

static void cmdline_limit_bzimage(void **state)
{
	struct ctx *c = *state;
	uint8_t img[BZ_LEN];
	load_bzimage(c, img, 15); /* 15 characters and the NUL */
	assert_int_equal(c->bi.cmdline_size, 16);
	struct boot_args a = {.cmdline = "0123456789abcde"};
	assert_int_equal(boot_info_setup(&c->m, &c->bi, &a, &c->err), 0);
	assert_string_equal((const char *)c->ram + LAYOUT_CMDLINE, a.cmdline);

	memset(c->ram + LAYOUT_CMDLINE, 0xa5, 32);
	a.cmdline = "0123456789abcdef";
	assert_int_equal(boot_info_setup(&c->m, &c->bi, &a, &c->err), -1);
	assert_int_equal(c->err.code, KITE_EXIT_USAGE);
	assert_true(c->err.msg[0] != '\0');
	assert_non_null(strstr(c->err.msg, "15"));
	/* Nothing of a refused command line reaches the guest. */
	assert_int_equal(c->ram[LAYOUT_CMDLINE], 0xa5);
}

static void cmdline_limit_elf(void **state)
{
	struct ctx *c = *state;
	linux_elf_bi(&c->bi);
	char *s = malloc(LAYOUT_CMDLINE_MAX + 1);
	assert_non_null(s);
	memset(s, 'k', LAYOUT_CMDLINE_MAX - 1);
	s[LAYOUT_CMDLINE_MAX - 1] = '\0';
	struct boot_args a = {.cmdline = s};
	assert_int_equal(boot_info_setup(&c->m, &c->bi, &a, &c->err), 0);
	assert_int_equal(c->ram[LAYOUT_CMDLINE + LAYOUT_CMDLINE_MAX - 1], 0);
	assert_int_equal(strlen((const char *)c->ram + LAYOUT_CMDLINE), LAYOUT_CMDLINE_MAX - 1);

	s[LAYOUT_CMDLINE_MAX - 1] = 'k';
	s[LAYOUT_CMDLINE_MAX] = '\0';
	assert_int_equal(boot_info_setup(&c->m, &c->bi, &a, &c->err), -1);
	assert_int_equal(c->err.code, KITE_EXIT_USAGE);
	assert_true(c->err.msg[0] != '\0');
	free(s);
}

static void memory_too_small(void **state)
{
	(void)state;
	/* Below the command line's address: nothing fits. */
	const uint64_t ram = LAYOUT_CMDLINE;
	uint8_t *buf = calloc(1, ram);
	assert_non_null(buf);
	struct gmem m;
	assert_int_equal(gmem_init(&m, ram, buf), 0);
	struct boot_image bi;
	linux_elf_bi(&bi);
	struct boot_args a = {.cmdline = "x"};
	struct kite_err err = {0};
	assert_int_equal(boot_info_setup(&m, &bi, &a, &err), -1);
	assert_image_err(&err);
	bi.mode = BOOT_PVH;
	memset(&err, 0, sizeof(err));
	assert_int_equal(boot_info_setup(&m, &bi, &a, &err), -1);
	assert_image_err(&err);
	gmem_free(&m);
	free(buf);
}

#define T(f) cmocka_unit_test_setup_teardown(f, ctx_setup, ctx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(e820_128mib),
		cmocka_unit_test(e820_3gib),
		cmocka_unit_test(e820_4gib),
		cmocka_unit_test(e820_odd_sizes),
		cmocka_unit_test(e820_respects_max),
		T(zero_page_bzimage),
		T(zero_page_elf),
		T(zero_page_initrd_above_4g),
		cmocka_unit_test(zero_page_big_memory_e820),
		T(zero_page_null_cmdline),
		T(pvh_start_info),
		T(pvh_without_initrd),
		cmocka_unit_test(pvh_big_memory),
		T(cmdline_limit_bzimage),
		T(cmdline_limit_elf),
		cmocka_unit_test(memory_too_small),
	};
	return cmocka_run_group_tests_name("bootinfo", tests, NULL, NULL);
}
