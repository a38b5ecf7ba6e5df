/* Guest-virtual to guest-physical translation for the debugger, done the way the
 * vCPU's MMU would from its control registers: identity with paging off, 32-bit
 * paging (4 MiB pages with PSE), PAE, and 4- or 5-level long-mode paging with
 * 2 MiB and 1 GiB pages. Page-table entries are read only through the checked
 * guest-memory translator, so a hostile guest's tables (pointing outside RAM,
 * reserved large-page levels) end the walk with an error. Accessed and dirty bits
 * are left alone: looking must not change the guest. */
#ifndef KITE_GDB_PAGING_H
#define KITE_GDB_PAGING_H

#include <stdint.h>

#include "vmm/mem.h"

struct gdb_mmu {
	uint64_t cr0, cr3, cr4, efer;
};

/* On success *gpa is the translation of gva and *room the number of bytes from
 * gva to the end of its page (at least 1), so callers copy page by page. Returns 0,
 * or -1 when gva is not mapped (not present, non-canonical, tables outside RAM). */
int gdb_translate(const struct gmem *m, const struct gdb_mmu *mmu, uint64_t gva, uint64_t *gpa,
		  uint64_t *room);

#endif
