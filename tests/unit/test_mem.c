/* Guest memory: the split around the 32-bit MMIO hole and the one checked
 * guest-physical -> host translator every other module relies on. */
#include "unit.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "arch/x86/layout.h"
#include "vmm/mem.h"

#define SMALL MiB(8)

struct small {
	struct gmem m;
	uint8_t *buf;
};

static int small_setup(void **state)
{
	struct small *s = calloc(1, sizeof(*s));
	if (!s)
		return -1;
	s->buf = calloc(1, SMALL);
	if (!s->buf || gmem_init(&s->m, SMALL, s->buf) < 0) {
		free(s->buf);
		free(s);
		return -1;
	}
	*state = s;
	return 0;
}

static int small_teardown(void **state)
{
	struct small *s = *state;
	gmem_free(&s->m);
	free(s->buf); /* gmem does not own a caller's backing */
	free(s);
	return 0;
}

/* 5 GiB of MAP_NORESERVE address space: only the pages a test touches are real. */
static int big_setup(void **state)
{
	struct gmem *m = calloc(1, sizeof(*m));
	if (!m)
		return -1;
	if (gmem_init(m, GiB(5), NULL) < 0) {
		free(m);
		return -1;
	}
	*state = m;
	return 0;
}

static int big_teardown(void **state)
{
	struct gmem *m = *state;
	gmem_free(m);
	free(m);
	return 0;
}

static void init_small_backing(void **state)
{
	struct small *s = *state;
	assert_int_equal(s->m.nr_regions, 1);
	assert_int_equal(s->m.region[0].gpa, 0);
	assert_int_equal(s->m.region[0].size, SMALL);
	assert_ptr_equal(s->m.region[0].hva, s->buf);
	assert_int_equal(s->m.ram_size, SMALL);
	assert_ptr_equal(s->m.base, s->buf);
	assert_int_equal(s->m.mapped, 0);
	assert_int_equal(gmem_low_end(&s->m), SMALL);
}

static void init_rejects_bad_sizes(void **state)
{
	(void)state;
	struct gmem m;
	uint8_t one;
	errno = 0;
	assert_int_equal(gmem_init(&m, 0, &one), -1);
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_int_equal(gmem_init(&m, UINT64_MAX, NULL), -1);
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_int_equal(gmem_init(&m, (UINT64_MAX >> 2) + 1, NULL), -1);
	assert_int_equal(errno, EINVAL);
	/* A failed init leaves nothing a later gmem_free could unmap. */
	assert_int_equal(m.nr_regions, 0);
	assert_int_equal(m.mapped, 0);
	assert_null(gmem_ptr(&m, 0, 1));
	gmem_free(&m);
}

static void init_exactly_hole_start_is_one_region(void **state)
{
	(void)state;
	struct gmem m;
	assert_int_equal(gmem_init(&m, LAYOUT_MMIO_HOLE_START, NULL), 0);
	assert_int_equal(m.nr_regions, 1);
	assert_int_equal(m.region[0].size, LAYOUT_MMIO_HOLE_START);
	assert_int_equal(m.mapped, 1);
	assert_null(gmem_ptr(&m, LAYOUT_MMIO_HOLE_START, 1));
	assert_null(gmem_ptr(&m, LAYOUT_MMIO_HOLE_END, 1));
	assert_non_null(gmem_ptr(&m, LAYOUT_MMIO_HOLE_START - 1, 1));
	gmem_free(&m);
	assert_int_equal(m.nr_regions, 0);
	assert_null(m.base);
}

static void init_one_byte_over_hole_start(void **state)
{
	(void)state;
	struct gmem m;
	assert_int_equal(gmem_init(&m, LAYOUT_MMIO_HOLE_START + 1, NULL), 0);
	assert_int_equal(m.nr_regions, 2);
	assert_int_equal(m.region[1].gpa, LAYOUT_MMIO_HOLE_END);
	assert_int_equal(m.region[1].size, 1);
	assert_non_null(gmem_ptr(&m, LAYOUT_MMIO_HOLE_END, 1));
	assert_null(gmem_ptr(&m, LAYOUT_MMIO_HOLE_END, 2));
	gmem_free(&m);
}

static void init_big_splits_around_hole(void **state)
{
	struct gmem *m = *state;
	assert_int_equal(m->nr_regions, 2);
	assert_int_equal(m->mapped, 1);
	assert_non_null(m->base);
	assert_int_equal(m->ram_size, GiB(5));
	assert_int_equal(m->region[0].gpa, 0);
	assert_int_equal(m->region[0].size, GiB(3));
	assert_ptr_equal(m->region[0].hva, m->base);
	assert_int_equal(m->region[1].gpa, GiB(4));
	assert_int_equal(m->region[1].size, GiB(2));
	assert_ptr_equal(m->region[1].hva, m->base + GiB(3));
	assert_int_equal(gmem_low_end(m), GiB(3));
}

/* KVM maps guest RAM with huge nested pages only when the host mapping is
 * 2 MiB aligned; kite's own mapping must be, whatever mmap handed out. */
static void init_mapping_is_2mib_aligned(void **state)
{
	(void)state;
	for (uint64_t mib = 1; mib <= 9; mib += 4) {
		struct gmem m;
		assert_int_equal(gmem_init(&m, MiB(mib), NULL), 0);
		assert_int_equal((uintptr_t)m.base & (MiB(2) - 1), 0);
		/* every byte usable, and the trimmed ends gave back */
		m.base[0] = 1;
		m.base[MiB(mib) - 1] = 2;
		gmem_free(&m);
	}
}

static void ptr_small_edges(void **state)
{
	struct small *s = *state;
	const struct gmem *m = &s->m;
	assert_ptr_equal(gmem_ptr(m, 0, 1), s->buf);
	assert_ptr_equal(gmem_ptr(m, 0, SMALL), s->buf);
	assert_ptr_equal(gmem_ptr(m, SMALL - 1, 1), s->buf + SMALL - 1);
	assert_ptr_equal(gmem_ptr(m, SMALL - 8, 8), s->buf + SMALL - 8);
	assert_null(gmem_ptr(m, SMALL, 1));
	assert_null(gmem_ptr(m, SMALL - 4, 8));
	assert_null(gmem_ptr(m, 0, SMALL + 1));
	assert_null(gmem_ptr(m, 1, SMALL));
}

static void ptr_len_zero_is_one_byte(void **state)
{
	struct small *s = *state;
	assert_ptr_equal(gmem_ptr(&s->m, 0, 0), s->buf);
	assert_ptr_equal(gmem_ptr(&s->m, SMALL - 1, 0), s->buf + SMALL - 1);
	assert_null(gmem_ptr(&s->m, SMALL, 0));
	assert_null(gmem_ptr(&s->m, UINT64_MAX, 0));
}

static void ptr_huge_and_overflowing(void **state)
{
	struct small *s = *state;
	const struct gmem *m = &s->m;
	assert_null(gmem_ptr(m, 0, UINT64_MAX));
	assert_null(gmem_ptr(m, 1, UINT64_MAX));
	assert_null(gmem_ptr(m, 0x1000, UINT64_MAX - 0xfff)); /* gpa + len == 0 mod 2^64 */
	assert_null(gmem_ptr(m, 0x1000, UINT64_MAX - 0x7ff)); /* gpa + len wraps into RAM */
	assert_null(gmem_ptr(m, UINT64_MAX, 1));
	assert_null(gmem_ptr(m, UINT64_MAX, 2));
	assert_null(gmem_ptr(m, UINT64_MAX - 1, 4));
	assert_null(gmem_ptr(m, UINT64_MAX, UINT64_MAX));
	assert_null(gmem_ptr(m, 1ULL << 63, 1));
}

static void ptr_uninitialised_is_empty(void **state)
{
	(void)state;
	struct gmem m;
	memset(&m, 0, sizeof(m));
	assert_null(gmem_ptr(&m, 0, 1));
	assert_int_equal(gmem_low_end(&m), 0);
	gmem_free(&m); /* nothing mapped: must be a no-op */
}

static void ptr_big_hole(void **state)
{
	struct gmem *m = *state;
	assert_ptr_equal(gmem_ptr(m, GiB(3) - 1, 1), m->base + GiB(3) - 1);
	assert_ptr_equal(gmem_ptr(m, GiB(3) - 4096, 4096), m->base + GiB(3) - 4096);
	assert_null(gmem_ptr(m, GiB(3), 1));
	assert_null(gmem_ptr(m, GiB(3), 0));
	assert_null(gmem_ptr(m, LAYOUT_IOAPIC, 4));
	assert_null(gmem_ptr(m, LAYOUT_LAPIC, 4));
	assert_null(gmem_ptr(m, LAYOUT_PCI_MMIO32, 4096));
	assert_null(gmem_ptr(m, GiB(4) - 1, 1));
	assert_ptr_equal(gmem_ptr(m, GiB(4), 1), m->base + GiB(3));
	assert_ptr_equal(gmem_ptr(m, GiB(4), 0), m->base + GiB(3));
}

static void ptr_big_ranges_spanning_hole(void **state)
{
	struct gmem *m = *state;
	/* The host mapping is contiguous across the hole; the guest's is not, so a
	 * range crossing it must fail even though host pointers would be valid. */
	assert_null(gmem_ptr(m, GiB(3) - 8, 16));
	assert_null(gmem_ptr(m, GiB(3) - 1, 2));
	assert_null(gmem_ptr(m, GiB(3) - 4096, GiB(1) + 8192));
	assert_null(gmem_ptr(m, 0, GiB(5)));
	assert_null(gmem_ptr(m, GiB(4) - 1, 2));
	assert_null(gmem_ptr(m, GiB(4) - 4096, 8192));
}

static void ptr_big_high_region_end(void **state)
{
	struct gmem *m = *state;
	assert_ptr_equal(gmem_ptr(m, GiB(6) - 1, 1), m->base + GiB(5) - 1);
	assert_ptr_equal(gmem_ptr(m, GiB(4), GiB(2)), m->base + GiB(3));
	assert_null(gmem_ptr(m, GiB(4), GiB(2) + 1));
	assert_null(gmem_ptr(m, GiB(6), 1));
	assert_null(gmem_ptr(m, GiB(6) - 4, 8));
	assert_null(gmem_ptr(m, GiB(5), UINT64_MAX));
	assert_null(gmem_ptr(m, UINT64_MAX, 1));
	assert_null(gmem_ptr(m, UINT64_MAX - GiB(1), GiB(1) + 2));
}

static void read_write_roundtrip(void **state)
{
	struct small *s = *state;
	const uint8_t msg[] = "kite guest memory";
	uint8_t back[sizeof(msg)];
	assert_int_equal(gmem_write(&s->m, 0x1234, msg, sizeof(msg)), 0);
	assert_memory_equal(s->buf + 0x1234, msg, sizeof(msg));
	memset(back, 0, sizeof(back));
	assert_int_equal(gmem_read(&s->m, 0x1234, back, sizeof(back)), 0);
	assert_memory_equal(back, msg, sizeof(msg));

	assert_int_equal(gmem_write(&s->m, SMALL - sizeof(msg), msg, sizeof(msg)), 0);
	assert_memory_equal(s->buf + SMALL - sizeof(msg), msg, sizeof(msg));
}

static void read_write_out_of_range_touch_nothing(void **state)
{
	struct small *s = *state;
	uint8_t src[16], dst[16];
	memset(src, 0x5a, sizeof(src));
	memset(dst, 0xee, sizeof(dst));
	memset(s->buf + SMALL - 16, 0, 16);

	assert_int_equal(gmem_write(&s->m, SMALL - 8, src, sizeof(src)), -1);
	for (int i = 0; i < 16; i++)
		assert_int_equal(s->buf[SMALL - 16 + i], 0);
	assert_int_equal(gmem_read(&s->m, SMALL - 8, dst, sizeof(dst)), -1);
	for (int i = 0; i < 16; i++)
		assert_int_equal(dst[i], 0xee);

	assert_int_equal(gmem_write(&s->m, UINT64_MAX, src, 1), -1);
	assert_int_equal(gmem_read(&s->m, UINT64_MAX - 3, dst, 8), -1);
	assert_int_equal(gmem_write(&s->m, SMALL, src, 0), -1);
	assert_int_equal(gmem_read(&s->m, 0, dst, 0), 0);
}

static void read_write_big_high_region(void **state)
{
	struct gmem *m = *state;
	const uint64_t v = 0x0123456789abcdefULL;
	uint64_t back = 0;
	assert_int_equal(gmem_write(m, GiB(4) + 0x10, &v, sizeof(v)), 0);
	assert_memory_equal(m->base + GiB(3) + 0x10, &v, sizeof(v));
	assert_int_equal(gmem_read(m, GiB(4) + 0x10, &back, sizeof(back)), 0);
	assert_int_equal(back, v);
	assert_int_equal(gmem_write(m, GiB(3) - 4, &v, sizeof(v)), -1);
	assert_int_equal(gmem_write(m, GiB(3) + 0x10, &v, sizeof(v)), -1);
	assert_int_equal(gmem_read(m, GiB(6) - 4, &back, sizeof(back)), -1);
}

#define S(f) cmocka_unit_test_setup_teardown(f, small_setup, small_teardown)
#define B(f) cmocka_unit_test_setup_teardown(f, big_setup, big_teardown)

/* gmem_nonzero: pages with data are found; pages written back to zero are not;
 * with absent_is_zero, pages never populated are skipped unread (here: still not
 * resident afterwards), and the answer is the same as reading every page. */
static void nonzero_pages(void **state)
{
	(void)state;
	struct gmem m;
	const uint64_t size = 8 << 20, pages = size / GMEM_PAGE;
	assert_int_equal(gmem_init(&m, size, NULL), 0);
	m.base[3 * GMEM_PAGE + 17] = 1;           /* page 3 */
	m.base[1000 * GMEM_PAGE + 4095] = 0x80;   /* page 1000, last byte */
	m.base[1500 * GMEM_PAGE] = 5;             /* page 1500, then back to zero */
	m.base[1500 * GMEM_PAGE] = 0;
	uint64_t *a = calloc(pages / 64, 8), *b = calloc(pages / 64, 8);
	m.absent_is_zero = true;
	gmem_nonzero(&m, a);
	m.absent_is_zero = false;
	gmem_nonzero(&m, b);
	assert_memory_equal(a, b, pages / 8);
	for (uint64_t p = 0; p < pages; p++)
		assert_int_equal((a[p / 64] >> (p % 64)) & 1, p == 3 || p == 1000);
	/* Reading every page made them resident (the zero page); a second map skips them. */
	gmem_free(&m);
	assert_int_equal(gmem_init(&m, size, NULL), 0);
	m.absent_is_zero = true;
	gmem_nonzero(&m, a);
	for (uint64_t i = 0; i < pages / 64; i++)
		assert_int_equal(a[i], 0);
	unsigned char vec[8];
	assert_int_equal(mincore(m.base + 4000 * GMEM_PAGE, 8 * GMEM_PAGE, vec), 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(vec[i] & 1, 0); /* never touched */
	free(a);
	free(b);
	gmem_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		S(init_small_backing),
		cmocka_unit_test(init_rejects_bad_sizes),
		cmocka_unit_test(init_mapping_is_2mib_aligned),
		cmocka_unit_test(init_exactly_hole_start_is_one_region),
		cmocka_unit_test(init_one_byte_over_hole_start),
		B(init_big_splits_around_hole),
		S(ptr_small_edges),
		S(ptr_len_zero_is_one_byte),
		S(ptr_huge_and_overflowing),
		cmocka_unit_test(ptr_uninitialised_is_empty),
		cmocka_unit_test(nonzero_pages),
		B(ptr_big_hole),
		B(ptr_big_ranges_spanning_hole),
		B(ptr_big_high_region_end),
		S(read_write_roundtrip),
		S(read_write_out_of_range_touch_nothing),
		B(read_write_big_high_region),
	};
	return cmocka_run_group_tests_name("mem", tests, NULL, NULL);
}
