#include "gdb/paging.h"

#include <stdbool.h>

#define CR0_PG (1ULL << 31)
#define CR4_PSE (1ULL << 4)
#define CR4_PAE (1ULL << 5)
#define CR4_LA57 (1ULL << 12)
#define EFER_LMA (1ULL << 10)

#define PTE_P 0x1ULL
#define PTE_PS 0x80ULL
#define ADDR_MASK 0x000ffffffffff000ULL /* bits 12..51 of an entry */

static int done(uint64_t gva, uint64_t base, unsigned page_shift, uint64_t *gpa, uint64_t *room)
{
	uint64_t off = gva & ((1ULL << page_shift) - 1);
	*gpa = base + off;
	*room = (1ULL << page_shift) - off;
	return 0;
}

static int read_entry(const struct gmem *m, uint64_t addr, unsigned size, uint64_t *e)
{
	if (size == 4) {
		uint32_t v;
		if (gmem_read(m, addr, &v, 4) < 0)
			return -1;
		*e = v;
		return 0;
	}
	return gmem_read(m, addr, e, 8);
}

/* 64-bit entries: long mode (levels 4 or 5) and PAE (a 4-entry PDPT, then 2 levels). */
static int walk64(const struct gmem *m, uint64_t table, uint64_t gva, int top, bool pae,
		  uint64_t *gpa, uint64_t *room)
{
	for (int level = top; level >= 1; level--) {
		unsigned shift = 12 + 9 * (unsigned)(level - 1);
		uint64_t idx = (gva >> shift) & (pae && level == 3 ? 3 : 511);
		uint64_t e;
		if (read_entry(m, table + idx * 8, 8, &e) < 0 || !(e & PTE_P))
			return -1;
		if (level == 1)
			return done(gva, e & ADDR_MASK, 12, gpa, room);
		/* PS at the PDPT (1 GiB) or PD (2 MiB); a PAE PDPT entry has no PS. */
		if ((e & PTE_PS) && (level == 2 || (level == 3 && !pae)))
			return done(gva, e & ADDR_MASK & ~((1ULL << shift) - 1), shift, gpa, room);
		if ((e & PTE_PS) && level > 3)
			return -1; /* reserved in PML4/PML5 entries */
		table = e & ADDR_MASK;
	}
	return -1;
}

int gdb_translate(const struct gmem *m, const struct gdb_mmu *mmu, uint64_t gva, uint64_t *gpa,
		  uint64_t *room)
{
	if (!(mmu->cr0 & CR0_PG))
		return done(gva, gva & ~0xfffULL, 12, gpa, room);
	if (mmu->efer & EFER_LMA) {
		int levels = (mmu->cr4 & CR4_LA57) ? 5 : 4;
		unsigned bits = levels == 5 ? 57 : 48;
		/* canonical: the bits above the top one copy it */
		uint64_t hi = gva >> (bits - 1);
		if (hi != 0 && hi != (~0ULL >> (bits - 1)))
			return -1;
		return walk64(m, mmu->cr3 & ADDR_MASK, gva, levels, false, gpa, room);
	}
	if (gva > 0xffffffffULL)
		return -1; /* linear addresses are 32-bit outside long mode */
	if (mmu->cr4 & CR4_PAE)
		return walk64(m, mmu->cr3 & 0xffffffe0ULL, gva, 3, true, gpa, room);
	/* 32-bit paging: 4-byte entries, 10+10+12 bits. */
	uint64_t pde, pte;
	if (read_entry(m, (mmu->cr3 & 0xfffff000ULL) + (gva >> 22) * 4, 4, &pde) < 0 || !(pde & PTE_P))
		return -1;
	if ((pde & PTE_PS) && (mmu->cr4 & CR4_PSE)) /* 4 MiB page; bits 13..20 are PA bits 32..39 */
		return done(gva, (pde & 0xffc00000ULL) | ((pde >> 13) & 0xffULL) << 32, 22, gpa, room);
	if (read_entry(m, (pde & 0xfffff000ULL) + ((gva >> 12) & 0x3ff) * 4, 4, &pte) < 0 ||
	    !(pte & PTE_P))
		return -1;
	return done(gva, pte & 0xfffff000ULL, 12, gpa, room);
}
