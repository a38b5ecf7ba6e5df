/* Kernel loaders on synthetic images: what a well-formed bzImage or ELF turns
 * into, and that every malformed or oversized one is refused with exit code 4
 * and a reason, before any byte reaches guest memory. */
#include "unit.h"

#include <elf.h>
#include <stdlib.h>

#include "arch/x86/boot.h"
#include "arch/x86/layout.h"
#include "vmm/mem.h"

#define RAM MiB(64)
#define FILL 0xcc /* guest RAM before a load: shows what the loader wrote */

struct ctx {
	struct gmem m;
	uint8_t *ram;
	struct boot_image bi;
	struct kite_err err;
};

/* One RAM buffer for all tests: faulting in 64 MiB afresh for each would
 * dominate the run time. */
static uint8_t *ram_buf;

static int ctx_setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -1;
	if (!ram_buf)
		ram_buf = malloc(RAM);
	c->ram = ram_buf;
	if (!c->ram || gmem_init(&c->m, RAM, c->ram) < 0) {
		free(c);
		return -1;
	}
	memset(c->ram, FILL, RAM);
	*state = c;
	return 0;
}

static int ctx_teardown(void **state)
{
	struct ctx *c = *state;
	gmem_free(&c->m);
	free(c);
	return 0;
}

static int untouched(const struct ctx *c, uint64_t gpa, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++)
		if (c->ram[gpa + i] != FILL)
			return 0;
	return 1;
}

/* Where the images below would land; scanning all of RAM after every one of
 * thousands of refused loads would be too slow. */
static int load_areas_untouched(const struct ctx *c)
{
	static const uint64_t areas[][2] = {
		{LAYOUT_HIGH_START, 0x10000},
		{0x1ff000, 0x2000},
		{0x400000, 0x2000},
		{0x1000000, 0x10000},
		{RAM - 0x10000, 0x10000},
	};
	for (size_t i = 0; i < sizeof(areas) / sizeof(areas[0]); i++)
		if (!untouched(c, areas[i][0], areas[i][1]))
			return 0;
	return 1;
}

/* ---- bzImage ---- */

#define BZ_SETUP_SECTS 4
#define BZ_SETUP_SIZE ((BZ_SETUP_SECTS + 1) * 512)
#define BZ_KERNEL 0x3000
#define BZ_LEN (BZ_SETUP_SIZE + BZ_KERNEL)
#define BZ_PREF 0x1000000ULL
#define BZ_INIT_SIZE 0x10000u
#define BZ_HDR_END 0x268 /* 0x202 + jump offset 0x66, as in current kernels */

/* Setup header per Documentation/arch/x86/boot.rst, protocol 2.15. */
static void bz_make(uint8_t *img)
{
	memset(img, 0, BZ_LEN);
	img[BP_SETUP_SECTS] = BZ_SETUP_SECTS;
	set16(img + BP_BOOT_FLAG, 0xaa55);
	img[BP_JUMP] = 0xeb;
	img[BP_JUMP + 1] = BZ_HDR_END - BP_HEADER;
	set32(img + BP_HEADER, HDRS_MAGIC);
	set16(img + BP_VERSION, 0x020f);
	img[BP_LOADFLAGS] = LOADED_HIGH;
	set32(img + BP_CODE32_START, 0x100000);
	set32(img + BP_INITRD_ADDR_MAX, 0x7fffffff);
	set32(img + BP_KERNEL_ALIGNMENT, 0x200000);
	img[BP_RELOCATABLE] = 1;
	set16(img + BP_XLOADFLAGS, XLF_KERNEL_64 | 0x02);
	set32(img + BP_CMDLINE_SIZE, 0x7ff);
	set64(img + BP_PREF_ADDRESS, BZ_PREF);
	set32(img + BP_INIT_SIZE, BZ_INIT_SIZE);
	for (size_t i = BZ_SETUP_SIZE; i < BZ_LEN; i++)
		img[i] = (uint8_t)(i * 7 + 3);
}

/* Loads img from an exactly-sized copy and, on failure, checks the error and
 * that guest memory was not written. */
static int bz_load(struct ctx *c, const uint8_t *img, size_t len)
{
	uint8_t *copy = dup_exact(img, len);
	memset(&c->err, 0, sizeof(c->err));
	int r = bzimage_load(&c->m, copy, len, &c->bi, &c->err);
	free(copy);
	if (r < 0) {
		assert_int_equal(r, -1);
		assert_image_err(&c->err);
		assert_true(load_areas_untouched(c));
	} else {
		assert_int_equal(c->err.code, 0);
	}
	return r;
}

static void bz_good(void **state)
{
	struct ctx *c = *state;
	uint8_t img[BZ_LEN];
	bz_make(img);
	assert_int_equal(bz_load(c, img, sizeof(img)), 0);
	assert_int_equal(c->bi.mode, BOOT_LINUX64);
	assert_int_equal(c->bi.is_bzimage, 1);
	assert_int_equal(c->bi.entry, BZ_PREF + 0x200);
	assert_int_equal(c->bi.version, 0x020f);
	assert_int_equal(c->bi.load_start, BZ_PREF);
	assert_int_equal(c->bi.load_end, BZ_PREF + BZ_INIT_SIZE);
	assert_int_equal(c->bi.initrd_addr_max, 0x7fffffff);
	assert_int_equal(c->bi.cmdline_size, 0x800);
	assert_int_equal(c->bi.setup_hdr_len, BZ_HDR_END - SETUP_HDR_START);
	assert_memory_equal(c->bi.setup_hdr, img + SETUP_HDR_START, c->bi.setup_hdr_len);
	/* The protected-mode kernel, and only it, lands at pref_address. */
	assert_memory_equal(c->ram + BZ_PREF, img + BZ_SETUP_SIZE, BZ_KERNEL);
	assert_true(untouched(c, BZ_PREF + BZ_KERNEL, 0x1000));
	assert_true(untouched(c, LAYOUT_HIGH_START, BZ_PREF - LAYOUT_HIGH_START));
}

static void bz_kernel_larger_than_init_size(void **state)
{
	struct ctx *c = *state;
	uint8_t img[BZ_LEN];
	bz_make(img);
	set32(img + BP_INIT_SIZE, 0x100);
	assert_int_equal(bz_load(c, img, sizeof(img)), 0);
	assert_int_equal(c->bi.load_end, BZ_PREF + BZ_KERNEL);
}

static void bz_setup_sects_zero_means_four(void **state)
{
	struct ctx *c = *state;
	uint8_t img[BZ_LEN];
	bz_make(img);
	img[BP_SETUP_SECTS] = 0;
	assert_int_equal(bz_load(c, img, sizeof(img)), 0);
	assert_memory_equal(c->ram + BZ_PREF, img + BZ_SETUP_SIZE, BZ_KERNEL);
}

static void bz_setup_sects_one(void **state)
{
	struct ctx *c = *state;
	uint8_t img[BZ_LEN];
	bz_make(img);
	img[BP_SETUP_SECTS] = 1;
	assert_int_equal(bz_load(c, img, sizeof(img)), 0);
	assert_memory_equal(c->ram + BZ_PREF, img + 1024, BZ_LEN - 1024);
}

static void bz_header_length_is_clamped(void **state)
{
	struct ctx *c = *state;
	uint8_t img[BZ_LEN];
	bz_make(img);
	img[BP_JUMP + 1] = 0xff; /* claims a header past the zero page's copy */
	assert_int_equal(bz_load(c, img, sizeof(img)), 0);
	assert_int_equal(c->bi.setup_hdr_len, SETUP_HDR_MAX_END - SETUP_HDR_START);
	assert_true(c->bi.setup_hdr_len <= sizeof(c->bi.setup_hdr));

	bz_make(img);
	img[BP_JUMP + 1] = 0; /* too short to hold init_size: copy at least that much */
	assert_int_equal(bz_load(c, img, sizeof(img)), 0);
	assert_int_equal(c->bi.setup_hdr_len, BP_INIT_SIZE + 4 - SETUP_HDR_START);
}

static void bz_cmdline_size_limits(void **state)
{
	struct ctx *c = *state;
	uint8_t img[BZ_LEN];
	static const struct {
		uint32_t field, want;
	} cases[] = {
		{0xffffffffu, LAYOUT_CMDLINE_MAX}, /* + 1 wraps to 0 */
		{0, LAYOUT_CMDLINE_MAX},
		{LAYOUT_CMDLINE_MAX, LAYOUT_CMDLINE_MAX},
		{LAYOUT_CMDLINE_MAX - 1, LAYOUT_CMDLINE_MAX},
		{1, 2},
		{255, 256},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bz_make(img);
		set32(img + BP_CMDLINE_SIZE, cases[i].field);
		assert_int_equal(bz_load(c, img, sizeof(img)), 0);
		assert_int_equal(c->bi.cmdline_size, cases[i].want);
	}
}

static void bz_every_truncation_fails_cleanly(void **state)
{
	struct ctx *c = *state;
	uint8_t img[BZ_LEN];
	bz_make(img);
	/* Up to and including the bare setup: no kernel bytes, nothing to boot. */
	for (size_t len = 0; len <= BZ_SETUP_SIZE; len++)
		assert_int_equal(bz_load(c, img, len), -1);
	assert_int_equal(bz_load(c, img, BZ_SETUP_SIZE + 1), 0);
}

static void bz_missing_magic(void **state)
{
	struct ctx *c = *state;
	uint8_t img[BZ_LEN];
	bz_make(img);
	set16(img + BP_BOOT_FLAG, 0x55aa);
	assert_int_equal(bz_load(c, img, sizeof(img)), -1);
	bz_make(img);
	set32(img + BP_HEADER, 0x48647253); /* "SrdH": wrong byte order */
	assert_int_equal(bz_load(c, img, sizeof(img)), -1);
	memset(img, 0, sizeof(img));
	assert_int_equal(bz_load(c, img, sizeof(img)), -1);
}

static void bz_protocol_too_old(void **state)
{
	struct ctx *c = *state;
	uint8_t img[BZ_LEN];
	bz_make(img);
	set16(img + BP_VERSION, 0x020b);
	assert_int_equal(bz_load(c, img, sizeof(img)), -1);
	set16(img + BP_VERSION, 0x0100);
	assert_int_equal(bz_load(c, img, sizeof(img)), -1);
	set16(img + BP_VERSION, 0x020c);
	assert_int_equal(bz_load(c, img, sizeof(img)), 0);
	assert_int_equal(c->bi.version, 0x020c);
}

static void bz_no_64bit_entry(void **state)
{
	struct ctx *c = *state;
	uint8_t img[BZ_LEN];
	bz_make(img);
	set16(img + BP_XLOADFLAGS, 0x02);
	assert_int_equal(bz_load(c, img, sizeof(img)), -1);
}

static void bz_not_loaded_high(void **state)
{
	struct ctx *c = *state;
	uint8_t img[BZ_LEN];
	bz_make(img);
	img[BP_LOADFLAGS] = 0;
	assert_int_equal(bz_load(c, img, sizeof(img)), -1);
}

static void bz_setup_sects_past_end(void **state)
{
	struct ctx *c = *state;
	uint8_t img[BZ_LEN];
	bz_make(img);
	img[BP_SETUP_SECTS] = 0xff;
	assert_int_equal(bz_load(c, img, sizeof(img)), -1);
	/* setup exactly the whole file: zero kernel bytes */
	bz_make(img);
	img[BP_SETUP_SECTS] = BZ_LEN / 512 - 1;
	assert_int_equal(bz_load(c, img, sizeof(img)), -1);
}

static void bz_init_size_too_large(void **state)
{
	struct ctx *c = *state;
	uint8_t img[BZ_LEN];
	bz_make(img);
	set32(img + BP_INIT_SIZE, (uint32_t)(RAM - BZ_PREF + 1));
	assert_int_equal(bz_load(c, img, sizeof(img)), -1);
	set32(img + BP_INIT_SIZE, 0xffffffffu);
	assert_int_equal(bz_load(c, img, sizeof(img)), -1);
	/* Up to the last byte of RAM is fine. */
	set32(img + BP_INIT_SIZE, (uint32_t)(RAM - BZ_PREF));
	assert_int_equal(bz_load(c, img, sizeof(img)), 0);
	assert_int_equal(c->bi.load_end, RAM);
}

static void bz_pref_address_invalid(void **state)
{
	struct ctx *c = *state;
	uint8_t img[BZ_LEN];
	static const uint64_t bad[] = {
		0, 0x7c00, LAYOUT_HIGH_START - 1, LAYOUT_HIGH_START - 0x200,
		RAM,                          /* past the end of RAM */
		RAM - BZ_INIT_SIZE + 1,       /* init_size straddles the end */
		LAYOUT_MMIO_HOLE_START,       /* in the hole */
		0xfffffffffffff000ULL,        /* load + span wraps */
		UINT64_MAX,
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		bz_make(img);
		set64(img + BP_PREF_ADDRESS, bad[i]);
		assert_int_equal(bz_load(c, img, sizeof(img)), -1);
	}
	bz_make(img);
	set64(img + BP_PREF_ADDRESS, LAYOUT_HIGH_START);
	assert_int_equal(bz_load(c, img, sizeof(img)), 0);
	assert_int_equal(c->bi.entry, LAYOUT_HIGH_START + 0x200);
}

static void bz_alignment_not_power_of_two(void **state)
{
	struct ctx *c = *state;
	uint8_t img[BZ_LEN];
	static const uint32_t bad[] = {3, 0x300000, 0x200001, 0xffffffffu};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		bz_make(img);
		set32(img + BP_KERNEL_ALIGNMENT, bad[i]);
		assert_int_equal(bz_load(c, img, sizeof(img)), -1);
	}
	static const uint32_t good[] = {0, 1, 0x1000, 0x80000000u};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		bz_make(img);
		set32(img + BP_KERNEL_ALIGNMENT, good[i]);
		assert_int_equal(bz_load(c, img, sizeof(img)), 0);
	}
}

static void bz_error_keeps_first_cause(void **state)
{
	struct ctx *c = *state;
	uint8_t img[BZ_LEN];
	bz_make(img);
	set16(img + BP_VERSION, 0x0200);
	struct kite_err err = {0};
	assert_int_equal(bzimage_load(&c->m, img, sizeof(img), &c->bi, &err), -1);
	char first[sizeof(err.msg)];
	memcpy(first, err.msg, sizeof(first));
	set16(img + BP_BOOT_FLAG, 0);
	assert_int_equal(bzimage_load(&c->m, img, sizeof(img), &c->bi, &err), -1);
	assert_string_equal(err.msg, first);
	/* A NULL err is allowed: the caller only wants the status. */
	assert_int_equal(bzimage_load(&c->m, img, sizeof(img), &c->bi, NULL), -1);
}

/* ---- ELF ---- */

#define ELF_LEN 0x4000
#define ELF_DATA 0x1000 /* segment contents start here in the file */

struct elf {
	uint8_t img[ELF_LEN];
	size_t len;
	int nph;
};

static void elf_init(struct elf *e, uint64_t entry)
{
	memset(e, 0, sizeof(*e));
	e->len = ELF_LEN;
	Elf64_Ehdr *h = (Elf64_Ehdr *)e->img;
	memcpy(h->e_ident, ELFMAG, SELFMAG);
	h->e_ident[EI_CLASS] = ELFCLASS64;
	h->e_ident[EI_DATA] = ELFDATA2LSB;
	h->e_ident[EI_VERSION] = EV_CURRENT;
	h->e_type = ET_EXEC;
	h->e_machine = EM_X86_64;
	h->e_version = EV_CURRENT;
	h->e_entry = entry;
	h->e_phoff = sizeof(Elf64_Ehdr);
	h->e_ehsize = sizeof(Elf64_Ehdr);
	h->e_phentsize = sizeof(Elf64_Phdr);
	for (size_t i = ELF_DATA; i < ELF_LEN; i++)
		e->img[i] = (uint8_t)(i * 13 + 1);
}

static Elf64_Ehdr *elf_hdr(struct elf *e) { return (Elf64_Ehdr *)e->img; }

static Elf64_Phdr *elf_add(struct elf *e, uint32_t type, uint64_t off, uint64_t paddr,
			   uint64_t filesz, uint64_t memsz)
{
	Elf64_Phdr *p = (Elf64_Phdr *)(e->img + sizeof(Elf64_Ehdr)) + e->nph++;
	assert_true((uint8_t *)(p + 1) <= e->img + ELF_DATA);
	*p = (Elf64_Phdr){.p_type = type, .p_flags = PF_R | PF_X, .p_offset = off,
			  .p_vaddr = paddr | 0xffffffff80000000ULL, .p_paddr = paddr,
			  .p_filesz = filesz, .p_memsz = memsz, .p_align = 0x1000};
	elf_hdr(e)->e_phnum = (Elf64_Half)e->nph;
	return p;
}

/* One ELF note at file offset off; returns its size. */
static size_t note_put(uint8_t *at, uint32_t namesz, const char *name, uint32_t type,
		       const void *desc, uint32_t descsz)
{
	set32(at, namesz);
	set32(at + 4, descsz);
	set32(at + 8, type);
	size_t n = 12;
	memcpy(at + n, name, namesz);
	n += (namesz + 3u) & ~3u;
	memcpy(at + n, desc, descsz);
	n += (descsz + 3u) & ~3u;
	return n;
}

static int elf_load_exact(struct ctx *c, const struct elf *e)
{
	uint8_t *copy = dup_exact(e->img, e->len);
	memset(&c->err, 0, sizeof(c->err));
	int r = elf_load(&c->m, copy, e->len, &c->bi, &c->err);
	free(copy);
	if (r < 0) {
		assert_int_equal(r, -1);
		assert_image_err(&c->err);
		/* Everything is validated before the first copy. */
		assert_true(load_areas_untouched(c));
	} else {
		assert_int_equal(c->err.code, 0);
	}
	return r;
}

/* A text segment and a data segment with bss, like a vmlinux. */
static void elf_two_segments(struct elf *e)
{
	elf_init(e, 0x200010);
	elf_add(e, PT_LOAD, ELF_DATA, 0x200000, 0x800, 0x800);
	elf_add(e, PT_LOAD, ELF_DATA + 0x800, 0x400000, 0x100, 0x2000);
}

static void elf_good(void **state)
{
	struct ctx *c = *state;
	struct elf e;
	elf_two_segments(&e);
	assert_int_equal(elf_load_exact(c, &e), 0);
	assert_int_equal(c->bi.mode, BOOT_LINUX64);
	assert_int_equal(c->bi.is_bzimage, 0);
	assert_int_equal(c->bi.version, 0);
	assert_int_equal(c->bi.entry, 0x200010);
	assert_int_equal(c->bi.load_start, 0x200000);
	assert_int_equal(c->bi.load_end, 0x402000);
	assert_int_equal(c->bi.initrd_addr_max, 0xffffffffu);
	assert_int_equal(c->bi.cmdline_size, ELF_CMDLINE_MAX);
	assert_memory_equal(c->ram + 0x200000, e.img + ELF_DATA, 0x800);
	assert_memory_equal(c->ram + 0x400000, e.img + ELF_DATA + 0x800, 0x100);
	for (uint64_t i = 0x400100; i < 0x402000; i++)
		assert_int_equal(c->ram[i], 0); /* bss */
	assert_true(untouched(c, 0x200800, 0x1000));
	assert_true(untouched(c, 0x402000, 0x1000));
	assert_true(untouched(c, 0x1ff000, 0x1000));
}

static void elf_ignores_non_load_and_empty_segments(void **state)
{
	struct ctx *c = *state;
	struct elf e;
	elf_init(&e, 0x300000);
	elf_add(&e, PT_NULL, 0, 0, 0, 0);
	elf_add(&e, PT_LOAD, ELF_DATA, 0x300000, 0x10, 0x10);
	elf_add(&e, PT_LOAD, 0, 0, 0, 0);            /* empty: not RAM-checked */
	elf_add(&e, PT_GNU_STACK, 0, 0, 0, 0);
	elf_add(&e, PT_LOAD, ELF_DATA, 0x300000, 0x8, 0); /* memsz 0 overlapping: ignored */
	assert_int_equal(elf_load_exact(c, &e), 0);
	assert_int_equal(c->bi.load_start, 0x300000);
	assert_int_equal(c->bi.load_end, 0x300010);
}

static void elf_adjacent_segments_ok(void **state)
{
	struct ctx *c = *state;
	struct elf e;
	elf_init(&e, 0x200000);
	elf_add(&e, PT_LOAD, ELF_DATA, 0x200000, 0x1000, 0x1000);
	elf_add(&e, PT_LOAD, ELF_DATA + 0x1000, 0x201000, 0x1000, 0x1000);
	assert_int_equal(elf_load_exact(c, &e), 0);
	assert_memory_equal(c->ram + 0x200000, e.img + ELF_DATA, 0x2000);
}

static void elf_segment_at_end_of_ram(void **state)
{
	struct ctx *c = *state;
	struct elf e;
	elf_init(&e, RAM - 0x10);
	elf_add(&e, PT_LOAD, ELF_DATA, RAM - 0x1000, 0x1000, 0x1000);
	assert_int_equal(elf_load_exact(c, &e), 0);
	assert_int_equal(c->bi.load_end, RAM);
}

static void put_pvh_note(struct elf *e, uint64_t entry, uint32_t descsz, size_t *len)
{
	uint8_t desc[8];
	set64(desc, entry);
	size_t n = note_put(e->img + ELF_DATA + 0x2000, 4, "GNU", 3, "abcdefgh", 8);
	n += note_put(e->img + ELF_DATA + 0x2000 + n, 4, "Xen", 6, "x86_64\0", 8);
	n += note_put(e->img + ELF_DATA + 0x2000 + n, 4, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, desc,
		      descsz);
	*len = n;
}

static void elf_pvh_note(void **state)
{
	struct ctx *c = *state;
	for (uint32_t descsz = 4; descsz <= 8; descsz += 4) {
		struct elf e;
		size_t n;
		elf_two_segments(&e);
		put_pvh_note(&e, 0x200400, descsz, &n);
		elf_add(&e, PT_NOTE, ELF_DATA + 0x2000, 0, n, n);
		assert_int_equal(elf_load_exact(c, &e), 0);
		assert_int_equal(c->bi.mode, BOOT_PVH);
		assert_int_equal(c->bi.entry, 0x200400);
		assert_int_equal(c->bi.load_start, 0x200000);
	}
}

static void elf_pvh_note_in_second_note_segment(void **state)
{
	struct ctx *c = *state;
	struct elf e;
	size_t n;
	elf_two_segments(&e);
	elf_add(&e, PT_NOTE, ELF_DATA + 0x2000, 0, 20, 20); /* GNU note only */
	put_pvh_note(&e, 0x400010, 4, &n);
	elf_add(&e, PT_NOTE, ELF_DATA + 0x2000, 0, n, n);
	assert_int_equal(elf_load_exact(c, &e), 0);
	assert_int_equal(c->bi.mode, BOOT_PVH);
	assert_int_equal(c->bi.entry, 0x400010);
}

static void elf_pvh_entry_outside_segments(void **state)
{
	struct ctx *c = *state;
	struct elf e;
	size_t n;
	elf_two_segments(&e);
	put_pvh_note(&e, 0x300000, 4, &n); /* between the two segments */
	elf_add(&e, PT_NOTE, ELF_DATA + 0x2000, 0, n, n);
	assert_int_equal(elf_load_exact(c, &e), -1);
}

static void elf_xen_note_other_type_or_size_is_not_pvh(void **state)
{
	struct ctx *c = *state;
	struct elf e;
	uint8_t desc[8];
	set64(desc, 0x200400);

	elf_two_segments(&e);
	size_t n = note_put(e.img + ELF_DATA + 0x2000, 4, "Xen", 1, desc, 8);
	elf_add(&e, PT_NOTE, ELF_DATA + 0x2000, 0, n, n);
	assert_int_equal(elf_load_exact(c, &e), 0);
	assert_int_equal(c->bi.mode, BOOT_LINUX64);
	assert_int_equal(c->bi.entry, 0x200010);

	elf_two_segments(&e);
	n = note_put(e.img + ELF_DATA + 0x2000, 4, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, desc, 2);
	elf_add(&e, PT_NOTE, ELF_DATA + 0x2000, 0, n, n);
	assert_int_equal(elf_load_exact(c, &e), 0);
	assert_int_equal(c->bi.mode, BOOT_LINUX64);

	elf_two_segments(&e);
	n = note_put(e.img + ELF_DATA + 0x2000, 3, "Xe", XEN_ELFNOTE_PHYS32_ENTRY, desc, 4);
	elf_add(&e, PT_NOTE, ELF_DATA + 0x2000, 0, n, n);
	assert_int_equal(elf_load_exact(c, &e), 0);
	assert_int_equal(c->bi.mode, BOOT_LINUX64);
}

static void elf_malformed_notes_do_not_crash(void **state)
{
	struct ctx *c = *state;
	static const uint32_t sizes[][2] = {
		{0xffffffffu, 4}, {0xfffffffdu, 4}, {4, 0xffffffffu}, {0xffffffffu, 0xffffffffu},
		{4, 0xfffffffdu}, {0x7fffffffu, 0x7fffffffu}, {16, 0}, {0, 16},
	};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct elf e;
		elf_two_segments(&e);
		/* Note header at the very end of the file: the note claims to run past it. */
		size_t at = ELF_LEN - 16;
		set32(e.img + at, sizes[i][0]);
		set32(e.img + at + 4, sizes[i][1]);
		set32(e.img + at + 8, XEN_ELFNOTE_PHYS32_ENTRY);
		memcpy(e.img + at + 12, "Xen", 4);
		elf_add(&e, PT_NOTE, at, 0, 16, 16);
		assert_int_equal(elf_load_exact(c, &e), 0);
		assert_int_equal(c->bi.mode, BOOT_LINUX64);
	}
	/* Too short to hold a note header, and a truncated Xen note without its desc. */
	for (uint64_t sz = 0; sz <= 16; sz++) {
		struct elf e;
		elf_two_segments(&e);
		size_t at = ELF_LEN - sz;
		uint8_t note[16];
		set32(note, 4);
		set32(note + 4, 4);
		set32(note + 8, XEN_ELFNOTE_PHYS32_ENTRY);
		memcpy(note + 12, "Xen", 4);
		memcpy(e.img + at, note, sz);
		elf_add(&e, PT_NOTE, at, 0, sz, sz);
		assert_int_equal(elf_load_exact(c, &e), 0);
		assert_int_equal(c->bi.mode, BOOT_LINUX64);
	}
}

static void elf_many_tiny_notes_terminate(void **state)
{
	struct ctx *c = *state;
	struct elf e;
	elf_two_segments(&e);
	/* Empty notes, 12 bytes each, filling the rest of the file. */
	size_t at = ELF_DATA + 0x2000, n = 0;
	while (at + n + 12 <= ELF_LEN)
		n += note_put(e.img + at + n, 0, "", 0, "", 0);
	elf_add(&e, PT_NOTE, at, 0, n, n);
	assert_int_equal(elf_load_exact(c, &e), 0);
	assert_int_equal(c->bi.mode, BOOT_LINUX64);
}

static void elf_overlapping_segments(void **state)
{
	struct ctx *c = *state;
	static const uint64_t second[][2] = {
		{0x200000, 0x800},  /* identical */
		{0x2007ff, 0x10},   /* starts in the first's last byte */
		{0x1ff000, 0x1001}, /* ends in the first's first byte */
		{0x200100, 0x10},   /* contained */
		{0x100000, 0x200000}, /* contains */
	};
	for (size_t i = 0; i < sizeof(second) / sizeof(second[0]); i++) {
		struct elf e;
		elf_init(&e, 0x200010);
		elf_add(&e, PT_LOAD, ELF_DATA, 0x200000, 0x800, 0x800);
		elf_add(&e, PT_LOAD, ELF_DATA, second[i][0], 0x10, second[i][1]);
		assert_int_equal(elf_load_exact(c, &e), -1);
	}
	/* bss of one overlapping the next segment's file data */
	struct elf e;
	elf_init(&e, 0x200010);
	elf_add(&e, PT_LOAD, ELF_DATA, 0x200000, 0x10, 0x2000);
	elf_add(&e, PT_LOAD, ELF_DATA, 0x201000, 0x10, 0x10);
	assert_int_equal(elf_load_exact(c, &e), -1);
}

static void elf_segment_outside_ram(void **state)
{
	struct ctx *c = *state;
	static const uint64_t bad[][2] = {
		{RAM, 0x10},                   /* starts at the end */
		{RAM - 0x8, 0x10},             /* straddles the end */
		{LAYOUT_MMIO_HOLE_START, 0x10},
		{GiB(4), 0x10},
		{0xfffffffffffff000ULL, 0x2000}, /* paddr + memsz wraps */
		{UINT64_MAX, 1},
		{0x200000, UINT64_MAX},
		{0x200000, RAM},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct elf e;
		elf_init(&e, 0x200010);
		elf_add(&e, PT_LOAD, ELF_DATA, 0x200000, 0x800, 0x800);
		elf_add(&e, PT_LOAD, ELF_DATA, bad[i][0], 0x8, bad[i][1]);
		assert_int_equal(elf_load_exact(c, &e), -1);
	}
}

static void elf_segment_below_1mib(void **state)
{
	struct ctx *c = *state;
	static const uint64_t bad[] = {0, 0x7000, 0xe0000, LAYOUT_HIGH_START - 0x10};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct elf e;
		elf_init(&e, bad[i]);
		elf_add(&e, PT_LOAD, ELF_DATA, bad[i], 0x20, 0x20);
		assert_int_equal(elf_load_exact(c, &e), -1);
		assert_true(untouched(c, bad[i], 0x20)); /* boot structures live there */
	}
}

static void elf_file_range_past_end(void **state)
{
	struct ctx *c = *state;
	static const uint64_t bad[][2] = {
		{ELF_LEN - 0x10, 0x11},
		{ELF_LEN, 1},
		{ELF_LEN + 1, 0},
		{UINT64_MAX, 0},
		{UINT64_MAX - 4, 0x10}, /* offset + size wraps */
		{0x10, UINT64_MAX},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct elf e;
		elf_init(&e, 0x200010);
		elf_add(&e, PT_LOAD, bad[i][0], 0x200000, bad[i][1], 0x1000);
		assert_int_equal(elf_load_exact(c, &e), -1);
		/* Non-loadable segments are bounds-checked too: a note is read. */
		elf_init(&e, 0x200010);
		elf_add(&e, PT_LOAD, ELF_DATA, 0x200000, 0x10, 0x1000);
		elf_add(&e, PT_NOTE, bad[i][0], 0, bad[i][1], bad[i][1]);
		assert_int_equal(elf_load_exact(c, &e), -1);
	}
	/* The last byte of the file is fine. */
	struct elf e;
	elf_init(&e, 0x200010);
	elf_add(&e, PT_LOAD, ELF_LEN - 0x10, 0x200000, 0x10, 0x20);
	assert_int_equal(elf_load_exact(c, &e), 0);
	assert_memory_equal(c->ram + 0x200000, e.img + ELF_LEN - 0x10, 0x10);
}

static void elf_filesz_exceeds_memsz(void **state)
{
	struct ctx *c = *state;
	struct elf e;
	elf_init(&e, 0x200010);
	elf_add(&e, PT_LOAD, ELF_DATA, 0x200000, 0x801, 0x800);
	assert_int_equal(elf_load_exact(c, &e), -1);
}

static void elf_bad_program_header_table(void **state)
{
	struct ctx *c = *state;
	struct elf e;

	static const Elf64_Half phnum[] = {0, 65, 0xffff};
	for (size_t i = 0; i < sizeof(phnum) / sizeof(phnum[0]); i++) {
		elf_two_segments(&e);
		elf_hdr(&e)->e_phnum = phnum[i];
		assert_int_equal(elf_load_exact(c, &e), -1);
	}

	static const Elf64_Half entsize[] = {0, 1, sizeof(Elf64_Phdr) - 1, sizeof(Elf64_Phdr) + 1,
					     0xffff};
	for (size_t i = 0; i < sizeof(entsize) / sizeof(entsize[0]); i++) {
		elf_two_segments(&e);
		elf_hdr(&e)->e_phentsize = entsize[i];
		assert_int_equal(elf_load_exact(c, &e), -1);
	}

	static const uint64_t phoff[] = {
		ELF_LEN, ELF_LEN + 1, ELF_LEN - sizeof(Elf64_Phdr) * 2 + 1, UINT64_MAX,
		UINT64_MAX - sizeof(Elf64_Phdr) + 1, 1ULL << 63,
	};
	for (size_t i = 0; i < sizeof(phoff) / sizeof(phoff[0]); i++) {
		elf_two_segments(&e);
		elf_hdr(&e)->e_phoff = phoff[i];
		assert_int_equal(elf_load_exact(c, &e), -1);
	}

	/* 64 headers exactly fill the end of the file: accepted, all PT_NULL but one. */
	elf_init(&e, 0x200010);
	size_t off = ELF_LEN - 64 * sizeof(Elf64_Phdr);
	memset(e.img + off, 0, 64 * sizeof(Elf64_Phdr));
	Elf64_Phdr last = {.p_type = PT_LOAD, .p_offset = ELF_DATA, .p_paddr = 0x200000,
			   .p_filesz = 0x10, .p_memsz = 0x20};
	memcpy(e.img + ELF_LEN - sizeof(last), &last, sizeof(last));
	elf_hdr(&e)->e_phoff = off;
	elf_hdr(&e)->e_phnum = 64;
	assert_int_equal(elf_load_exact(c, &e), 0);
}

static void elf_wrong_identity(void **state)
{
	struct ctx *c = *state;
	struct elf e;

	elf_two_segments(&e);
	elf_hdr(&e)->e_ident[EI_CLASS] = ELFCLASS32;
	assert_int_equal(elf_load_exact(c, &e), -1);

	elf_two_segments(&e);
	elf_hdr(&e)->e_ident[EI_CLASS] = ELFCLASSNONE;
	assert_int_equal(elf_load_exact(c, &e), -1);

	elf_two_segments(&e);
	elf_hdr(&e)->e_ident[EI_DATA] = ELFDATA2MSB;
	assert_int_equal(elf_load_exact(c, &e), -1);

	elf_two_segments(&e);
	elf_hdr(&e)->e_machine = EM_386;
	assert_int_equal(elf_load_exact(c, &e), -1);

	elf_two_segments(&e);
	elf_hdr(&e)->e_machine = EM_AARCH64;
	assert_int_equal(elf_load_exact(c, &e), -1);

	elf_two_segments(&e);
	elf_hdr(&e)->e_ident[EI_MAG3] = 'G';
	assert_int_equal(elf_load_exact(c, &e), -1);
}

static void elf_entry_outside_every_segment(void **state)
{
	struct ctx *c = *state;
	static const uint64_t bad[] = {0, 0x1fffff, 0x200800, 0x300000, 0x402000, UINT64_MAX,
				       0xffffffff81000000ULL};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct elf e;
		elf_two_segments(&e);
		elf_hdr(&e)->e_entry = bad[i];
		assert_int_equal(elf_load_exact(c, &e), -1);
	}
	/* In the bss is inside the segment. */
	struct elf e;
	elf_two_segments(&e);
	elf_hdr(&e)->e_entry = 0x401fff;
	assert_int_equal(elf_load_exact(c, &e), 0);
}

static void elf_no_loadable_segment(void **state)
{
	struct ctx *c = *state;
	struct elf e;
	elf_init(&e, 0x200000);
	elf_add(&e, PT_NOTE, ELF_DATA, 0, 0, 0);
	elf_add(&e, PT_LOAD, ELF_DATA, 0x200000, 0, 0);
	assert_int_equal(elf_load_exact(c, &e), -1);
}

static void elf_every_truncation_fails_cleanly(void **state)
{
	struct ctx *c = *state;
	struct elf e;
	elf_two_segments(&e);
	/* The data segment's file bytes end at ELF_DATA + 0x900. */
	for (size_t len = 0; len < ELF_DATA + 0x900; len += (len < 0x200 ? 1 : 61)) {
		e.len = len;
		assert_int_equal(elf_load_exact(c, &e), -1);
	}
	e.len = ELF_DATA + 0x900 - 1;
	assert_int_equal(elf_load_exact(c, &e), -1);
	e.len = ELF_DATA + 0x900;
	assert_int_equal(elf_load_exact(c, &e), 0);
}

/* ---- kernel_load ---- */

static void kernel_load_dispatch(void **state)
{
	struct ctx *c = *state;
	uint8_t bz[BZ_LEN];
	bz_make(bz);
	memset(&c->err, 0, sizeof(c->err));
	assert_int_equal(kernel_load(&c->m, bz, sizeof(bz), &c->bi, &c->err), 0);
	assert_int_equal(c->bi.is_bzimage, 1);
	assert_int_equal(c->bi.entry, BZ_PREF + 0x200);

	struct elf e;
	elf_two_segments(&e);
	assert_int_equal(kernel_load(&c->m, e.img, e.len, &c->bi, &c->err), 0);
	assert_int_equal(c->bi.is_bzimage, 0);
	assert_int_equal(c->bi.entry, 0x200010);
	assert_int_equal(c->err.code, 0);
}

static void kernel_load_routes_broken_images_to_their_loader(void **state)
{
	struct ctx *c = *state;
	struct elf e;
	elf_two_segments(&e);
	elf_hdr(&e)->e_machine = EM_386;
	memset(&c->err, 0, sizeof(c->err));
	assert_int_equal(kernel_load(&c->m, e.img, e.len, &c->bi, &c->err), -1);
	assert_image_err(&c->err);
	assert_non_null(strstr(c->err.msg, "ELF"));

	uint8_t bz[BZ_LEN];
	bz_make(bz);
	set16(bz + BP_VERSION, 0x0200);
	memset(&c->err, 0, sizeof(c->err));
	assert_int_equal(kernel_load(&c->m, bz, sizeof(bz), &c->bi, &c->err), -1);
	assert_image_err(&c->err);
	assert_non_null(strstr(c->err.msg, "bzImage"));
}

static void kernel_load_unknown_format(void **state)
{
	struct ctx *c = *state;
	uint8_t junk[4096];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 31 + 7);
	static const size_t lens[] = {0, 1, 3, 4, BP_HEADER + 3, BP_HEADER + 4, sizeof(junk)};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		uint8_t *copy = dup_exact(junk, lens[i]);
		memset(&c->err, 0, sizeof(c->err));
		assert_int_equal(kernel_load(&c->m, copy, lens[i], &c->bi, &c->err), -1);
		free(copy);
		assert_image_err(&c->err);
		assert_non_null(strstr(c->err.msg, "not a bzImage or ELF"));
	}
	/* ELF magic cut short is not ELF. */
	uint8_t *copy = dup_exact(ELFMAG, SELFMAG - 1);
	memset(&c->err, 0, sizeof(c->err));
	assert_int_equal(kernel_load(&c->m, copy, SELFMAG - 1, &c->bi, &c->err), -1);
	free(copy);
	assert_non_null(strstr(c->err.msg, "not a bzImage or ELF"));
	/* A boot flag without HdrS is not a bzImage either. */
	uint8_t bz[BZ_LEN];
	bz_make(bz);
	set32(bz + BP_HEADER, 0);
	memset(&c->err, 0, sizeof(c->err));
	assert_int_equal(kernel_load(&c->m, bz, sizeof(bz), &c->bi, &c->err), -1);
	assert_non_null(strstr(c->err.msg, "not a bzImage or ELF"));
	assert_true(load_areas_untouched(c));
}

/* ---- initrd_place ---- */

static struct boot_image bi_with(uint64_t load_end, uint32_t addr_max)
{
	struct boot_image bi;
	memset(&bi, 0, sizeof(bi));
	bi.load_start = LAYOUT_HIGH_START;
	bi.load_end = load_end;
	bi.initrd_addr_max = addr_max;
	return bi;
}

static void check_placed(const struct gmem *m, const struct boot_image *bi, uint64_t size,
			 uint64_t gpa)
{
	assert_int_equal(gpa & 0xfff, 0);
	assert_true(gpa >= bi->load_end);
	assert_true(gpa + size <= (uint64_t)bi->initrd_addr_max + 1 || bi->initrd_addr_max == 0);
	assert_non_null(gmem_ptr(m, gpa, size));
}

static void initrd_fits_high(void **state)
{
	struct ctx *c = *state;
	struct boot_image bi = bi_with(0x2000000, 0xffffffffu);
	static const uint64_t sizes[] = {1, 0xfff, 0x1000, 0x1001, 0x12345, MiB(16)};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint64_t gpa = 0;
		struct kite_err err = {0};
		assert_int_equal(initrd_place(&c->m, &bi, sizes[i], &gpa, &err), 0);
		assert_int_equal(err.code, 0);
		check_placed(&c->m, &bi, sizes[i], gpa);
		/* As high as possible: less than a page of slack below the top. */
		assert_true(RAM - (gpa + sizes[i]) < 0x1000);
	}
}

static void initrd_respects_addr_max(void **state)
{
	struct ctx *c = *state;
	struct boot_image bi = bi_with(0x1100000, 0x01ffffff);
	uint64_t gpa = 0;
	struct kite_err err = {0};
	assert_int_equal(initrd_place(&c->m, &bi, 0x10000, &gpa, &err), 0);
	check_placed(&c->m, &bi, 0x10000, gpa);
	assert_int_equal(gpa, 0x2000000 - 0x10000);

	/* An addr_max that is not page-aligned minus one still gives a page-aligned end. */
	bi = bi_with(0x1100000, 0x01fff7ff);
	assert_int_equal(initrd_place(&c->m, &bi, 0x10000, &gpa, &err), 0);
	check_placed(&c->m, &bi, 0x10000, gpa);
	assert_int_equal(gpa, 0x1fef000);

	/* 0 means "not given": the whole low region may be used. */
	bi = bi_with(0x1100000, 0);
	assert_int_equal(initrd_place(&c->m, &bi, 0x10000, &gpa, &err), 0);
	assert_int_equal(gpa, RAM - 0x10000);
}

static void initrd_exact_fit_and_one_byte_too_big(void **state)
{
	struct ctx *c = *state;
	struct boot_image bi = bi_with(0x2000000, 0xffffffffu);
	uint64_t gpa = 0;
	struct kite_err err = {0};
	assert_int_equal(initrd_place(&c->m, &bi, RAM - 0x2000000, &gpa, &err), 0);
	assert_int_equal(gpa, 0x2000000);

	uint64_t sentinel = 0x5a5a5a5a;
	gpa = sentinel;
	assert_int_equal(initrd_place(&c->m, &bi, RAM - 0x2000000 + 1, &gpa, &err), -1);
	assert_image_err(&err);
	assert_int_equal(gpa, sentinel);
}

static void initrd_too_big(void **state)
{
	struct ctx *c = *state;
	struct boot_image bi = bi_with(0x2000000, 0xffffffffu);
	static const uint64_t sizes[] = {RAM, RAM + 1, GiB(4), UINT64_MAX, UINT64_MAX - 0xfff};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint64_t gpa = 0;
		struct kite_err err = {0};
		assert_int_equal(initrd_place(&c->m, &bi, sizes[i], &gpa, &err), -1);
		assert_image_err(&err);
	}
	/* The kernel already reaches the top of RAM. */
	bi = bi_with(RAM, 0xffffffffu);
	uint64_t gpa = 0;
	struct kite_err err = {0};
	assert_int_equal(initrd_place(&c->m, &bi, 1, &gpa, &err), -1);
	assert_image_err(&err);
	/* addr_max below the kernel's end. */
	bi = bi_with(0x2000000, 0x00ffffff);
	memset(&err, 0, sizeof(err));
	assert_int_equal(initrd_place(&c->m, &bi, 1, &gpa, &err), -1);
	assert_image_err(&err);
}

static void initrd_size_zero(void **state)
{
	struct ctx *c = *state;
	struct boot_image bi = bi_with(0x2000000, 0xffffffffu);
	uint64_t gpa = 0;
	struct kite_err err = {0};
	assert_int_equal(initrd_place(&c->m, &bi, 0, &gpa, &err), -1);
	assert_image_err(&err);
}

static void initrd_stays_below_hole(void **state)
{
	(void)state;
	struct gmem m;
	assert_int_equal(gmem_init(&m, GiB(5), NULL), 0);
	struct boot_image bi = bi_with(0x2000000, 0xffffffffu);
	uint64_t gpa = 0;
	struct kite_err err = {0};
	assert_int_equal(initrd_place(&m, &bi, MiB(100), &gpa, &err), 0);
	check_placed(&m, &bi, MiB(100), gpa);
	assert_true(gpa + MiB(100) <= LAYOUT_MMIO_HOLE_START);
	/* More than the low region holds is refused even though high RAM exists. */
	assert_int_equal(initrd_place(&m, &bi, GiB(3), &gpa, &err), -1);
	assert_image_err(&err);
	gmem_free(&m);
}

static void initrd_unaligned_ram_end(void **state)
{
	(void)state;
	const uint64_t ram = MiB(8) + 0x800;
	uint8_t *buf = calloc(1, ram);
	assert_non_null(buf);
	struct gmem m;
	assert_int_equal(gmem_init(&m, ram, buf), 0);
	struct boot_image bi = bi_with(0x200000, 0xffffffffu);
	uint64_t gpa = 0;
	struct kite_err err = {0};
	assert_int_equal(initrd_place(&m, &bi, 0x1000, &gpa, &err), 0);
	assert_int_equal(gpa, MiB(8) - 0x1000);
	gmem_free(&m);
	free(buf);
}

static void initrd_after_real_loads(void **state)
{
	struct ctx *c = *state;
	uint8_t bz[BZ_LEN];
	bz_make(bz);
	assert_int_equal(bz_load(c, bz, sizeof(bz)), 0);
	uint64_t gpa = 0;
	struct kite_err err = {0};
	assert_int_equal(initrd_place(&c->m, &c->bi, MiB(4), &gpa, &err), 0);
	check_placed(&c->m, &c->bi, MiB(4), gpa);
	assert_true(gpa >= BZ_PREF + BZ_INIT_SIZE);

	struct elf e;
	elf_two_segments(&e);
	assert_int_equal(elf_load_exact(c, &e), 0);
	assert_int_equal(initrd_place(&c->m, &c->bi, MiB(4), &gpa, &err), 0);
	check_placed(&c->m, &c->bi, MiB(4), gpa);
}

#define T(f) cmocka_unit_test_setup_teardown(f, ctx_setup, ctx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(bz_good),
		T(bz_kernel_larger_than_init_size),
		T(bz_setup_sects_zero_means_four),
		T(bz_setup_sects_one),
		T(bz_header_length_is_clamped),
		T(bz_cmdline_size_limits),
		T(bz_every_truncation_fails_cleanly),
		T(bz_missing_magic),
		T(bz_protocol_too_old),
		T(bz_no_64bit_entry),
		T(bz_not_loaded_high),
		T(bz_setup_sects_past_end),
		T(bz_init_size_too_large),
		T(bz_pref_address_invalid),
		T(bz_alignment_not_power_of_two),
		T(bz_error_keeps_first_cause),
		T(elf_good),
		T(elf_ignores_non_load_and_empty_segments),
		T(elf_adjacent_segments_ok),
		T(elf_segment_at_end_of_ram),
		T(elf_pvh_note),
		T(elf_pvh_note_in_second_note_segment),
		T(elf_pvh_entry_outside_segments),
		T(elf_xen_note_other_type_or_size_is_not_pvh),
		T(elf_malformed_notes_do_not_crash),
		T(elf_many_tiny_notes_terminate),
		T(elf_overlapping_segments),
		T(elf_segment_outside_ram),
		T(elf_segment_below_1mib),
		T(elf_file_range_past_end),
		T(elf_filesz_exceeds_memsz),
		T(elf_bad_program_header_table),
		T(elf_wrong_identity),
		T(elf_entry_outside_every_segment),
		T(elf_no_loadable_segment),
		T(elf_every_truncation_fails_cleanly),
		T(kernel_load_dispatch),
		T(kernel_load_routes_broken_images_to_their_loader),
		T(kernel_load_unknown_format),
		T(initrd_fits_high),
		T(initrd_respects_addr_max),
		T(initrd_exact_fit_and_one_byte_too_big),
		T(initrd_too_big),
		T(initrd_size_zero),
		T(initrd_stays_below_hole),
		T(initrd_unaligned_ram_end),
		T(initrd_after_real_loads),
	};
	int failed = cmocka_run_group_tests_name("loader", tests, NULL, NULL);
	free(ram_buf);
	return failed;
}
