/* The debugger's guest-virtual -> guest-physical walker, on page tables built in a
 * fake guest RAM: every paging mode, every page size, and hostile tables (entries
 * pointing outside RAM, reserved large pages, non-canonical addresses). */
#include "unit.h"

#include "gdb/paging.h"

#define RAM (16u << 20)
#define P 0x1ULL
#define RW 0x2ULL
#define PS 0x80ULL
#define NX (1ULL << 63)
#define CR0_PE 0x1ULL
#define CR0_PG 0x80000000ULL
#define CR4_PSE 0x10ULL
#define CR4_PAE 0x20ULL
#define CR4_LA57 0x1000ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL

static struct gmem mem;
static uint8_t *ram;

static const struct gdb_mmu long4 = {.cr0 = CR0_PE | CR0_PG, .cr3 = 0x1000, .cr4 = CR4_PAE,
				     .efer = EFER_LME | EFER_LMA};

static int setup(void **state)
{
	(void)state;
	return test_ram_init(&mem, &ram, RAM, 0, RAM);
}

static int teardown(void **state)
{
	(void)state;
	test_ram_free(&mem, ram);
	return 0;
}

static void pte64(uint64_t table, unsigned idx, uint64_t v) { set64(ram + table + idx * 8, v); }
static void pte32(uint64_t table, unsigned idx, uint32_t v) { set32(ram + table + idx * 4, v); }

static void expect(const struct gdb_mmu *mmu, uint64_t gva, uint64_t want_gpa, uint64_t want_room)
{
	uint64_t gpa = 0, room = 0;
	assert_int_equal(gdb_translate(&mem, mmu, gva, &gpa, &room), 0);
	assert_true(gpa == want_gpa);
	assert_true(room == want_room);
}

static void unmapped(const struct gdb_mmu *mmu, uint64_t gva)
{
	uint64_t gpa = 0x1234, room = 0x5678;
	assert_int_equal(gdb_translate(&mem, mmu, gva, &gpa, &room), -1);
}

static void paging_off_is_identity(void **state)
{
	(void)state;
	struct gdb_mmu real = {0}, prot = {.cr0 = CR0_PE};
	expect(&real, 0x7c00, 0x7c00, 0x400);
	expect(&prot, 0x100fff, 0x100fff, 1);
	/* outside RAM is still a translation; gmem refuses the access later */
	expect(&prot, 0xfee00000, 0xfee00000, 0x1000);
}

/* 4 KiB page: PML4 at 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000. */
static void long_mode_4k(void **state)
{
	(void)state;
	uint64_t gva = 0x0000123456789abcULL;
	pte64(0x1000, (gva >> 39) & 511, 0x2000 | P | RW);
	pte64(0x2000, (gva >> 30) & 511, 0x3000 | P | RW);
	pte64(0x3000, (gva >> 21) & 511, 0x4000 | P | RW);
	pte64(0x4000, (gva >> 12) & 511, 0xabc000 | P | NX); /* NX is not an address bit */
	expect(&long4, gva, 0xabcabc, 0x1000 - 0xabc);
	expect(&long4, gva | 0xfff, 0xabcfff, 1);
	unmapped(&long4, gva + 0x1000); /* the next PTE is empty */
	/* each level's present bit matters */
	for (uint64_t t = 0x1000; t <= 0x4000; t += 0x1000) {
		unsigned idx = (unsigned)((gva >> (39 - 9 * (t / 0x1000 - 1))) & 511);
		uint64_t saved = le64(ram + t + idx * 8);
		pte64(t, idx, saved & ~P);
		unmapped(&long4, gva);
		pte64(t, idx, saved);
	}
	expect(&long4, gva, 0xabcabc, 0x1000 - 0xabc);
}

static void long_mode_large_pages(void **state)
{
	(void)state;
	/* 2 MiB at PD level: 0x40000000 + 0x212345 -> 0x600000 + 0x12345 */
	pte64(0x1000, 0, 0x2000 | P);
	pte64(0x2000, 1, 0x3000 | P);
	pte64(0x3000, 1, 0x600000 | 0x1000 /* PAT bit, not an address bit */ | P | PS);
	expect(&long4, 0x40212345, 0x612345, 0x200000 - 0x12345);
	/* 1 GiB at PDPT level */
	pte64(0x2000, 3, 0x40000000ULL | P | PS);
	expect(&long4, 0xc0000000ULL + 0x3456789, 0x43456789, 0x40000000ULL - 0x3456789);
	/* PS in a PML4 entry is reserved */
	pte64(0x1000, 2, 0x2000 | P | PS);
	unmapped(&long4, 2ULL << 39);
}

static void kite_boot_tables(void **state)
{
	(void)state;
	/* What kite's boot tables look like: identity, 2 MiB pages, first 4 GiB. */
	pte64(0x1000, 0, 0x2000 | P | RW);
	for (unsigned i = 0; i < 4; i++)
		pte64(0x2000, i, (0x3000 + i * 0x1000) | P | RW);
	for (uint64_t i = 0; i < 4 * 512; i++)
		set64(ram + 0x3000 + i * 8, (i << 21) | P | RW | PS);
	expect(&long4, 0x100000, 0x100000, 0x100000);
	expect(&long4, 0xfffff000ULL, 0xfffff000ULL, 0x1000);
	unmapped(&long4, 0x100000000ULL);
}

static void canonical_addresses(void **state)
{
	(void)state;
	/* The kernel's high half: PML4[511] -> PDPT[510] -> 1 GiB page at 0. */
	pte64(0x1000, 511, 0x2000 | P);
	pte64(0x2000, 510, 0 | P | PS);
	expect(&long4, 0xffffffff81000000ULL, 0x1000000, 0x40000000ULL - 0x1000000);
	unmapped(&long4, 0x0000ffff81000000ULL); /* same index bits, not canonical */
	unmapped(&long4, 0x8000000000000000ULL);
	unmapped(&long4, 0x0000800000000000ULL);
}

static void five_levels(void **state)
{
	(void)state;
	struct gdb_mmu la57 = long4;
	la57.cr4 |= CR4_LA57;
	uint64_t gva = 0x00ff000000001000ULL; /* canonical with 57 bits, not with 48 */
	pte64(0x1000, (gva >> 48) & 511, 0x2000 | P);
	pte64(0x2000, (gva >> 39) & 511, 0x3000 | P);
	pte64(0x3000, (gva >> 30) & 511, 0x4000 | P);
	pte64(0x4000, (gva >> 21) & 511, 0x5000 | P);
	pte64(0x5000, (gva >> 12) & 511, 0x9000 | P);
	expect(&la57, gva + 5, 0x9005, 0x1000 - 5);
	unmapped(&long4, gva);
	unmapped(&la57, 0x0100000000000000ULL);
}

static void tables_outside_ram(void **state)
{
	(void)state;
	/* A hostile guest's tables: every step must stay inside RAM, and fail cleanly. */
	struct gdb_mmu mmu = long4;
	mmu.cr3 = 0x000ffffffffff000ULL;
	unmapped(&mmu, 0x1000);
	mmu.cr3 = RAM; /* the byte right after RAM */
	unmapped(&mmu, 0x1000);
	mmu.cr3 = RAM - 0x1000; /* the table itself is in RAM; its entry points out */
	pte64(RAM - 0x1000, 0, 0x000ffffffffff000ULL | P);
	unmapped(&mmu, 0x1000);
	pte64(RAM - 0x1000, 0, 0xc0000000ULL | P); /* into the MMIO hole */
	unmapped(&mmu, 0x1000);
	/* a translation to a page outside RAM is still a translation */
	pte64(0x1000, 0, 0x2000 | P);
	pte64(0x2000, 0, 0x3000 | P);
	pte64(0x3000, 0, 0x4000 | P);
	pte64(0x4000, 1, 0xfee00000ULL | P);
	expect(&long4, 0x1000, 0xfee00000ULL, 0x1000);
	/* a table that points at itself ends after four levels */
	pte64(0x1000, 3, 0x1000 | P);
	expect(&long4, (3ULL << 39) | (3ULL << 30) | (3ULL << 21) | (3ULL << 12) | 0x10, 0x1010, 0xff0);
}

static void pae(void **state)
{
	(void)state;
	struct gdb_mmu m = {.cr0 = CR0_PE | CR0_PG, .cr3 = 0x1020, .cr4 = CR4_PAE};
	/* a 32-byte-aligned PDPT of 4 entries */
	pte64(0x1020, 3, 0x2000 | P);
	pte64(0x2000, 0, 0x400000 | P | PS);    /* 2 MiB */
	pte64(0x2000, 1, 0x3000 | P);
	pte64(0x3000, 2, 0x7000 | P);           /* 4 KiB */
	expect(&m, 0xc0012345, 0x412345, 0x200000 - 0x12345);
	expect(&m, 0xc0202abc, 0x7abc, 0x1000 - 0xabc);
	unmapped(&m, 0x80000000);               /* PDPT[2] empty */
	unmapped(&m, 0x100000000ULL);           /* 32-bit linear addresses only */
}

static void legacy_32bit(void **state)
{
	(void)state;
	struct gdb_mmu m = {.cr0 = CR0_PE | CR0_PG, .cr3 = 0x1000};
	pte32(0x1000, 0x300, 0x2000 | P);
	pte32(0x2000, 0x12, 0x5000 | P);
	expect(&m, 0xc0012345, 0x5345, 0x1000 - 0x345);
	/* a 4 MiB page needs CR4.PSE; bits 13..20 are physical bits 32..39 */
	pte32(0x1000, 0x301, 0x00800000 | (0x3u << 13) | P | PS);
	unmapped(&m, 0xc0412345);               /* without PSE it is a table at 0x806000+... */
	m.cr4 = CR4_PSE;
	expect(&m, 0xc0412345, 0x300812345ULL, 0x400000 - 0x12345);
	unmapped(&m, 0xc0800000);
	unmapped(&m, 0x100000000ULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(paging_off_is_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(long_mode_4k, setup, teardown),
		cmocka_unit_test_setup_teardown(long_mode_large_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(kite_boot_tables, setup, teardown),
		cmocka_unit_test_setup_teardown(canonical_addresses, setup, teardown),
		cmocka_unit_test_setup_teardown(five_levels, setup, teardown),
		cmocka_unit_test_setup_teardown(tables_outside_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(pae, setup, teardown),
		cmocka_unit_test_setup_teardown(legacy_32bit, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
