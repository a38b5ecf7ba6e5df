/* Guest memory and the one checked guest-physical -> host translator.
 *
 * Everything that touches guest memory (loaders, devices, tables) goes through
 * gmem_ptr()/gmem_read()/gmem_write(): a (gpa, len) range is accepted only when it
 * lies entirely inside one RAM region, with overflow-checked arithmetic. */
#ifndef KITE_MEM_H
#define KITE_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GMEM_MAX_REGIONS 2

struct gmem_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
};

struct gmem {
	struct gmem_region region[GMEM_MAX_REGIONS];
	int nr_regions;
	uint64_t ram_size; /* total bytes of RAM */
	uint8_t *base;     /* one host mapping backing all regions */
	int mapped;        /* base came from mmap (gmem_free unmaps) */
	/* Dirty tracking of the VMM's own writes (devices), one bit per 4 KiB page
	 * of base, set by every gmem_ptr() while non-NULL: KVM's dirty log sees
	 * only the guest's writes. Snapshots and migration read and clear it. */
	uint64_t *dirty;
	/* Pages the host has never populated read as zero (anonymous RAM kite made,
	 * not a file or a userfaultfd): gmem_nonzero may skip them unread. */
	bool absent_is_zero;
};

#define GMEM_PAGE 4096u

/* Splits ram_size bytes around the 32-bit MMIO hole: [0, min(ram, 3 GiB)) and
 * [4 GiB, 4 GiB + rest). Backs them with `backing` (ram_size bytes), or with a fresh
 * anonymous MAP_NORESERVE mapping when backing is NULL. Returns 0 or -1 (errno). */
int gmem_init(struct gmem *m, uint64_t ram_size, void *backing);

enum gmem_backing {
	GMEM_ANON,    /* anonymous, 2 MiB aligned, no reservation (the default) */
	GMEM_HUGETLB, /* 2 MiB hugetlbfs pages, reserved at map time */
	GMEM_THP,     /* anonymous with MADV_HUGEPAGE: transparent huge pages */
};
/* Like gmem_init(.., NULL) with a choice of backing; `mergeable` marks the RAM
 * MADV_MERGEABLE (KSM). GMEM_HUGETLB needs ram_size a multiple of 2 MiB and
 * fails with ENOMEM when the host has not reserved enough huge pages. */
int gmem_init_backed(struct gmem *m, uint64_t ram_size, enum gmem_backing b, bool mergeable);
void gmem_free(struct gmem *m);
/* Guest RAM from a memory file (a snapshot's): mapped MAP_PRIVATE, so pages are
 * read lazily on first touch and the guest's writes never reach the file. The
 * file must hold ram_size bytes. 0 or -1 (errno). */
int gmem_init_file(struct gmem *m, uint64_t ram_size, int fd);
/* Starts tracking the VMM's writes (a clear bitmap, kept until gmem_free).
 * Before any device runs, or with them quiet. 0 or -1. */
int gmem_track_dirty(struct gmem *m);
/* Moves the VMM-written bits into bitmap (ORed in: bit i is page i of RAM as
 * laid out in base) and clears them. */
void gmem_collect_dirty(struct gmem *m, uint64_t *bitmap);
/* Sets in bitmap (cleared first; bit i = page i of base) every page that is not
 * all zeros. With absent_is_zero, pages the host never populated are skipped
 * without touching them (/proc/self/pagemap), so a large, mostly untouched guest
 * costs little; swapped-out pages count as not zero. */
void gmem_nonzero(const struct gmem *m, uint64_t *bitmap);

/* Host pointer for [gpa, gpa+len) or NULL when any byte is outside RAM. len 0 is
 * treated as 1 byte (the address itself must be RAM). */
void *gmem_ptr(const struct gmem *m, uint64_t gpa, uint64_t len);
int gmem_read(const struct gmem *m, uint64_t gpa, void *dst, uint64_t len);
int gmem_write(const struct gmem *m, uint64_t gpa, const void *src, uint64_t len);

/* End of the RAM region that starts at 0 (exclusive). */
uint64_t gmem_low_end(const struct gmem *m);

#endif
