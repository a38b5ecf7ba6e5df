#include "vmm/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <linux/mman.h>
#include <sys/mman.h>

#include "arch/x86/layout.h"

int gmem_init_backed(struct gmem *m, uint64_t ram_size, enum gmem_backing b, bool mergeable)
{
	if (b == GMEM_ANON || b == GMEM_THP) {
		if (gmem_init(m, ram_size, NULL) < 0)
			return -1;
	} else {
		const uint64_t huge = 2ULL << 20;
		if (ram_size == 0 || ram_size % huge || ram_size > (UINT64_MAX >> 2)) {
			errno = EINVAL;
			return -1;
		}
		/* No MAP_NORESERVE: the pages are reserved now, so a host short of
		 * huge pages fails here rather than with SIGBUS in the guest. */
		void *p = mmap(NULL, ram_size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
		if (p == MAP_FAILED)
			return -1;
		madvise(p, ram_size, MADV_DONTDUMP);
		if (gmem_init(m, ram_size, p) < 0) {
			munmap(p, ram_size);
			return -1;
		}
		m->mapped = 1;
	}
	if (b == GMEM_THP)
		madvise(m->base, ram_size, MADV_HUGEPAGE);
	if (mergeable && madvise(m->base, ram_size, MADV_MERGEABLE) < 0) {
		int e = errno;
		gmem_free(m);
		errno = e;
		return -1;
	}
	return 0;
}

int gmem_init(struct gmem *m, uint64_t ram_size, void *backing)
{
	memset(m, 0, sizeof(*m));
	if (ram_size == 0 || ram_size > (UINT64_MAX >> 2)) {
		errno = EINVAL;
		return -1;
	}
	uint8_t *base = backing;
	if (!base) {
		/* 2 MiB aligned, so that where the host backs it with transparent huge
		 * pages KVM can map guest RAM with huge nested pages: an unaligned
		 * mapping cost a Linux guest 2 s of boot in the lab. No MADV_HUGEPAGE:
		 * sparse guests stay small on hosts that only use THP on request.
		 * Reserve one huge page more, then trim both ends. */
		const uint64_t huge = 2ULL << 20;
		if (ram_size > UINT64_MAX - huge) {
			errno = EINVAL;
			return -1;
		}
		uint64_t span = ram_size + huge;
		void *p = mmap(NULL, span, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			return -1;
		uintptr_t start = ((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1);
		uintptr_t head = start - (uintptr_t)p, tail = span - head - ram_size;
		if (head)
			munmap(p, head);
		if (tail)
			munmap((uint8_t *)start + ram_size, tail);
		base = (uint8_t *)start;
		m->mapped = 1;
		/* Guest RAM in a core dump of the VMM is tenant data; keep it out. */
		madvise(base, ram_size, MADV_DONTDUMP);
	}
	m->base = base;
	m->ram_size = ram_size;
	uint64_t low = ram_size < LAYOUT_MMIO_HOLE_START ? ram_size : LAYOUT_MMIO_HOLE_START;
	m->region[0] = (struct gmem_region){.gpa = 0, .size = low, .hva = base};
	m->nr_regions = 1;
	if (ram_size > low) {
		m->region[1] = (struct gmem_region){
			.gpa = LAYOUT_MMIO_HOLE_END, .size = ram_size - low, .hva = base + low};
		m->nr_regions = 2;
	}
	return 0;
}

void gmem_free(struct gmem *m)
{
	if (m->mapped && m->base)
		munmap(m->base, m->ram_size);
	free(m->dirty);
	memset(m, 0, sizeof(*m));
}

int gmem_init_file(struct gmem *m, uint64_t ram_size, int fd)
{
	if (ram_size == 0 || ram_size > (UINT64_MAX >> 2) || ram_size % GMEM_PAGE) {
		errno = EINVAL;
		return -1;
	}
	void *p = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
	if (p == MAP_FAILED)
		return -1;
	madvise(p, ram_size, MADV_DONTDUMP);
	if (gmem_init(m, ram_size, p) < 0) {
		int e = errno;
		munmap(p, ram_size);
		errno = e;
		return -1;
	}
	m->mapped = 1;
	return 0;
}

static size_t dirty_words(const struct gmem *m)
{
	return (size_t)((m->ram_size / GMEM_PAGE + 63) / 64);
}

int gmem_track_dirty(struct gmem *m)
{
	if (__atomic_load_n(&m->dirty, __ATOMIC_ACQUIRE))
		return 0;
	uint64_t *b = calloc(dirty_words(m), sizeof(uint64_t));
	if (!b)
		return -1;
	/* Set once and kept until gmem_free: device threads read it without a lock. */
	__atomic_store_n(&m->dirty, b, __ATOMIC_RELEASE);
	return 0;
}

void gmem_collect_dirty(struct gmem *m, uint64_t *bitmap)
{
	uint64_t *d = __atomic_load_n(&m->dirty, __ATOMIC_ACQUIRE);
	if (!d)
		return;
	for (size_t i = 0, n = dirty_words(m); i < n; i++)
		bitmap[i] |= __atomic_exchange_n(&d[i], 0, __ATOMIC_ACQ_REL);
}

static void mark_dirty(const struct gmem *m, const uint8_t *hva, uint64_t len)
{
	uint64_t *d = __atomic_load_n(&m->dirty, __ATOMIC_ACQUIRE);
	if (!d)
		return;
	uint64_t first = (uint64_t)(hva - m->base) / GMEM_PAGE;
	uint64_t last = ((uint64_t)(hva - m->base) + len - 1) / GMEM_PAGE;
	for (uint64_t p = first; p <= last; p++)
		__atomic_fetch_or(&d[p / 64], 1ULL << (p % 64), __ATOMIC_RELAXED);
}

void *gmem_ptr(const struct gmem *m, uint64_t gpa, uint64_t len)
{
	if (len == 0)
		len = 1;
	for (int i = 0; i < m->nr_regions; i++) {
		const struct gmem_region *r = &m->region[i];
		if (gpa < r->gpa)
			continue;
		uint64_t off = gpa - r->gpa;
		/* off < size and len <= size - off: no addition can overflow. */
		if (off >= r->size || len > r->size - off)
			continue;
		/* Any caller may write through the pointer: count it as a write. */
		mark_dirty(m, r->hva + off, len);
		return r->hva + off;
	}
	return NULL;
}

int gmem_read(const struct gmem *m, uint64_t gpa, void *dst, uint64_t len)
{
	void *p = gmem_ptr(m, gpa, len);
	if (!p)
		return -1;
	memcpy(dst, p, len);
	return 0;
}

int gmem_write(const struct gmem *m, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = gmem_ptr(m, gpa, len);
	if (!p)
		return -1;
	memcpy(p, src, len);
	return 0;
}

uint64_t gmem_low_end(const struct gmem *m)
{
	return m->nr_regions ? m->region[0].size : 0;
}

static bool page_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;
	for (unsigned i = 0; i < GMEM_PAGE / 8; i++)
		if (w[i])
			return false;
	return true;
}

void gmem_nonzero(const struct gmem *m, uint64_t *bitmap)
{
	uint64_t pages = m->ram_size / GMEM_PAGE;
	memset(bitmap, 0, (size_t)((pages + 63) / 64) * sizeof(uint64_t));
	int pm = m->absent_is_zero ? open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC) : -1;
	enum { CHUNK = 4096 };
	static __thread uint64_t ent[CHUNK];
	for (uint64_t p = 0; p < pages; p += CHUNK) {
		uint64_t n = pages - p < CHUNK ? pages - p : CHUNK;
		bool known = false;
		if (pm >= 0) {
			off_t off = (off_t)(((uintptr_t)m->base / GMEM_PAGE + p) * 8);
			known = pread(pm, ent, (size_t)n * 8, off) == (ssize_t)(n * 8);
		}
		for (uint64_t i = 0; i < n; i++) {
			const uint8_t *pg = m->base + (p + i) * GMEM_PAGE;
			bool present = (ent[i] >> 63) & 1, swapped = (ent[i] >> 62) & 1;
			if (known && !present && !swapped)
				continue; /* never populated: zero, left untouched */
			if ((known && swapped) || !page_zero(pg))
				bitmap[(p + i) / 64] |= 1ULL << ((p + i) % 64);
		}
	}
	if (pm >= 0)
		close(pm);
}
