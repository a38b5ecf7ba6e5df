/* The device registry: overlap rules, routing (device, offset, size), what an
 * access that hits nothing or only part of a device gets, and the counters. */
#include "unit.h"

#include <stdlib.h>

#include "vmm/bus.h"

struct dev {
	int reads, writes;
	uint64_t offset;
	unsigned size;
	uint8_t last[8];
	uint8_t reply; /* reads return reply, reply+1, ... */
};

static void dev_read(void *opaque, uint64_t offset, uint8_t *data, unsigned size)
{
	struct dev *d = opaque;
	d->reads++;
	d->offset = offset;
	d->size = size;
	for (unsigned i = 0; i < size; i++)
		data[i] = (uint8_t)(d->reply + i);
}

static void dev_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned size)
{
	struct dev *d = opaque;
	d->writes++;
	d->offset = offset;
	d->size = size;
	memcpy(d->last, data, size);
}

static const struct bus_ops ops = {.read = dev_read, .write = dev_write};
static const struct bus_ops no_ops = {0};

static int setup(void **state)
{
	struct bus *b = calloc(1, sizeof(*b));
	if (!b)
		return -1;
	bus_init(b, "test");
	*state = b;
	return 0;
}

static int teardown(void **state)
{
	struct bus *b = *state;
	bus_free(b);
	free(b);
	return 0;
}

static void register_and_find(void **state)
{
	struct bus *b = *state;
	struct dev a = {0};
	assert_int_equal(bus_register(b, 0x3f8, 8, &ops, &a, "com1"), 0);
	const struct bus_range *r = bus_find(b, 0x3f8);
	assert_non_null(r);
	assert_int_equal(r->base, 0x3f8);
	assert_int_equal(r->len, 8);
	assert_ptr_equal(r->opaque, &a);
	assert_string_equal(r->name, "com1");
	assert_ptr_equal(bus_find(b, 0x3ff), r);
	assert_null(bus_find(b, 0x3f7));
	assert_null(bus_find(b, 0x400));
	assert_null(bus_find(b, 0));
	assert_null(bus_find(b, UINT64_MAX));
}

static void empty_bus(void **state)
{
	struct bus *b = *state;
	assert_null(bus_find(b, 0));
	uint8_t d[4] = {0};
	assert_false(bus_dispatch(b, 0x80, d, 4, false));
	assert_int_equal(le32(d), 0xffffffffu);
	assert_int_equal(b->unclaimed, 1);
}

static void overlaps_rejected(void **state)
{
	struct bus *b = *state;
	struct dev a = {0};
	assert_int_equal(bus_register(b, 0x1000, 0x100, &ops, &a, "a"), 0);
	static const uint64_t bad[][2] = {
		{0x1000, 0x100},  /* exact */
		{0x0f80, 0x100},  /* partial, from below */
		{0x1080, 0x100},  /* partial, from above */
		{0x1010, 0x10},   /* contained */
		{0x0800, 0x1000}, /* contains */
		{0x10ff, 1},      /* last byte */
		{0x0fff, 2},      /* one byte into the first */
		{0x1000, 1},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(bus_register(b, bad[i][0], bad[i][1], &ops, &a, "bad"), -1);
	assert_int_equal(b->nr, 1);
	/* Adjacent on both sides is fine. */
	assert_int_equal(bus_register(b, 0x0f00, 0x100, &ops, &a, "below"), 0);
	assert_int_equal(bus_register(b, 0x1100, 0x100, &ops, &a, "above"), 0);
	assert_int_equal(b->nr, 3);
	/* And a range that would bridge the neighbours now overlaps both. */
	assert_int_equal(bus_register(b, 0x0e00, 0x400, &ops, &a, "bridge"), -1);
	assert_string_equal(bus_find(b, 0x0fff)->name, "below");
	assert_string_equal(bus_find(b, 0x1000)->name, "a");
	assert_string_equal(bus_find(b, 0x1100)->name, "above");
}

static void invalid_ranges_rejected(void **state)
{
	struct bus *b = *state;
	struct dev a = {0};
	assert_int_equal(bus_register(b, 0x10, 0, &ops, &a, "empty"), -1);
	assert_int_equal(bus_register(b, UINT64_MAX, 2, &ops, &a, "wrap"), -1);
	assert_int_equal(bus_register(b, UINT64_MAX - 7, 16, &ops, &a, "wrap"), -1);
	assert_int_equal(bus_register(b, 1, UINT64_MAX, &ops, &a, "wrap"), -1);
	assert_int_equal(bus_register(b, 0x10, 4, NULL, &a, "no ops"), -1);
	assert_int_equal(b->nr, 0);
	/* The highest range that does not wrap. */
	assert_int_equal(bus_register(b, UINT64_MAX - 0x1000, 0x1000, &ops, &a, "top"), 0);
	uint8_t d[2] = {0};
	assert_true(bus_dispatch(b, UINT64_MAX - 2, d, 2, false));
	assert_int_equal(a.offset, 0xffe);
	assert_false(bus_dispatch(b, UINT64_MAX - 1, d, 2, false));
	assert_false(bus_dispatch(b, UINT64_MAX, d, 1, false));
}

static void dispatch_routes_offset_and_size(void **state)
{
	struct bus *b = *state;
	struct dev com = {.reply = 0x10}, pci = {.reply = 0x80};
	assert_int_equal(bus_register(b, 0xcf8, 8, &ops, &pci, "pci"), 0);
	assert_int_equal(bus_register(b, 0x3f8, 8, &ops, &com, "com1"), 0);

	uint8_t d[8] = {0};
	assert_true(bus_dispatch(b, 0x3fd, d, 1, false));
	assert_int_equal(com.reads, 1);
	assert_int_equal(com.offset, 5);
	assert_int_equal(com.size, 1);
	assert_int_equal(d[0], 0x10);
	assert_int_equal(pci.reads, 0);

	const uint8_t w[4] = {0x00, 0x08, 0x00, 0x80};
	memcpy(d, w, 4);
	assert_true(bus_dispatch(b, 0xcf8, d, 4, true));
	assert_int_equal(pci.writes, 1);
	assert_int_equal(pci.offset, 0);
	assert_int_equal(pci.size, 4);
	assert_memory_equal(pci.last, w, 4);

	assert_true(bus_dispatch(b, 0xcfe, d, 2, false));
	assert_int_equal(pci.offset, 6);
	assert_int_equal(pci.size, 2);
	assert_int_equal(d[0], 0x80);
	assert_int_equal(d[1], 0x81);
	assert_int_equal(com.writes, 0);
}

static void dispatch_sizes_1_2_4_8(void **state)
{
	struct bus *b = *state;
	struct dev m = {.reply = 1};
	assert_int_equal(bus_register(b, 0xd0000000, 0x1000, &ops, &m, "mmio"), 0);
	for (unsigned size = 1; size <= 8; size *= 2) {
		uint8_t d[8];
		memset(d, 0, sizeof(d));
		assert_true(bus_dispatch(b, 0xd0001000 - size, d, size, false));
		assert_int_equal(m.offset, 0x1000 - size);
		assert_int_equal(m.size, size);
		for (unsigned i = 0; i < size; i++)
			assert_int_equal(d[i], 1 + i);
	}
}

static void unclaimed_read_all_ones_and_counted(void **state)
{
	struct bus *b = *state;
	struct dev a = {0};
	assert_int_equal(bus_register(b, 0x100, 0x10, &ops, &a, "a"), 0);
	for (unsigned size = 1; size <= 8; size *= 2) {
		uint8_t d[8];
		memset(d, 0, sizeof(d));
		assert_false(bus_dispatch(b, 0x200, d, size, false));
		for (unsigned i = 0; i < size; i++)
			assert_int_equal(d[i], 0xff);
		for (unsigned i = size; i < 8; i++)
			assert_int_equal(d[i], 0); /* nothing past the access */
	}
	assert_int_equal(b->unclaimed, 4);
	uint8_t v[4] = {1, 2, 3, 4};
	assert_false(bus_dispatch(b, 0xff, v, 1, true));
	assert_int_equal(v[0], 1); /* a dropped write leaves the buffer alone */
	assert_int_equal(b->unclaimed, 5);
	assert_int_equal(a.reads + a.writes, 0);
	assert_int_equal(bus_find(b, 0x100)->accesses, 0);
}

static void straddling_access_unclaimed(void **state)
{
	struct bus *b = *state;
	struct dev a = {0}, c = {0};
	assert_int_equal(bus_register(b, 0x100, 8, &ops, &a, "a"), 0);
	assert_int_equal(bus_register(b, 0x108, 8, &ops, &c, "c"), 0);
	uint8_t d[8];
	/* Starts in a, ends in c: neither device may see half an access. */
	memset(d, 0, sizeof(d));
	assert_false(bus_dispatch(b, 0x106, d, 4, false));
	assert_int_equal(le32(d), 0xffffffffu);
	assert_false(bus_dispatch(b, 0x107, d, 2, true));
	assert_false(bus_dispatch(b, 0x101, d, 8, false));
	/* Starts in c, runs past its end into nothing. */
	assert_false(bus_dispatch(b, 0x10f, d, 2, false));
	assert_false(bus_dispatch(b, 0x0ff, d, 2, false)); /* starts before a */
	assert_int_equal(a.reads + a.writes + c.reads + c.writes, 0);
	assert_int_equal(b->unclaimed, 5);
	/* The last fitting access is routed. */
	assert_true(bus_dispatch(b, 0x104, d, 4, false));
	assert_int_equal(a.offset, 4);
	assert_true(bus_dispatch(b, 0x100, d, 8, false));
}

static void access_larger_than_range(void **state)
{
	struct bus *b = *state;
	struct dev a = {0};
	assert_int_equal(bus_register(b, 0x60, 1, &ops, &a, "one"), 0);
	assert_int_equal(bus_register(b, 0x70, 2, &ops, &a, "two"), 0);
	uint8_t d[8];
	memset(d, 0, sizeof(d));
	assert_false(bus_dispatch(b, 0x60, d, 2, false));
	assert_int_equal(le16(d), 0xffff);
	assert_false(bus_dispatch(b, 0x60, d, 4, true));
	assert_false(bus_dispatch(b, 0x70, d, 4, false));
	assert_true(bus_dispatch(b, 0x60, d, 1, false));
	assert_true(bus_dispatch(b, 0x70, d, 2, false));
	assert_int_equal(a.reads, 2);
	assert_int_equal(a.writes, 0);
}

static void bad_sizes_unclaimed(void **state)
{
	struct bus *b = *state;
	struct dev a = {0};
	assert_int_equal(bus_register(b, 0x1000, 0x100, &ops, &a, "a"), 0);
	uint8_t d[16];
	memset(d, 0x11, sizeof(d));
	assert_false(bus_dispatch(b, 0x1000, d, 0, false));
	assert_int_equal(d[0], 0x11);
	assert_false(bus_dispatch(b, 0x1000, d, 9, false));
	assert_false(bus_dispatch(b, 0x1000, d, 16, true));
	assert_int_equal(a.reads + a.writes, 0);
	assert_int_equal(b->unclaimed, 3);
}

static void missing_callbacks(void **state)
{
	struct bus *b = *state;
	assert_int_equal(bus_register(b, 0x80, 1, &no_ops, NULL, "sink"), 0);
	uint8_t d[1] = {0};
	/* Claimed but without a read handler: the device reads as all-ones. */
	assert_true(bus_dispatch(b, 0x80, d, 1, false));
	assert_int_equal(d[0], 0xff);
	assert_true(bus_dispatch(b, 0x80, d, 1, true));
	assert_int_equal(bus_find(b, 0x80)->accesses, 2);
	assert_int_equal(b->unclaimed, 0);
}

static void counters(void **state)
{
	struct bus *b = *state;
	struct dev a = {0}, c = {0};
	assert_int_equal(bus_register(b, 0x10, 4, &ops, &a, "a"), 0);
	assert_int_equal(bus_register(b, 0x20, 4, &ops, &c, "c"), 0);
	uint8_t d[4] = {0};
	for (int i = 0; i < 5; i++)
		bus_dispatch(b, 0x10 + (unsigned)i % 4, d, 1, i & 1);
	for (int i = 0; i < 3; i++)
		bus_dispatch(b, 0x22, d, 2, false);
	for (int i = 0; i < 7; i++)
		bus_dispatch(b, 0x30, d, 1, false);
	bus_dispatch(b, 0x23, d, 2, false); /* straddles c's end */
	assert_int_equal(bus_find(b, 0x10)->accesses, 5);
	assert_int_equal(bus_find(b, 0x20)->accesses, 3);
	assert_int_equal(b->unclaimed, 8);
	assert_int_equal(a.reads, 3);
	assert_int_equal(a.writes, 2);
}

/* Many ranges registered out of order: the binary search must find each one. */
static void many_ranges(void **state)
{
	struct bus *b = *state;
	enum { N = 1000 };
	struct dev *devs = calloc(N, sizeof(*devs));
	assert_non_null(devs);
	/* A fixed permutation of 0..N-1 (7 is coprime with 1000). */
	for (unsigned k = 0; k < N; k++) {
		unsigned i = (k * 7 + 3) % N;
		devs[i].reply = (uint8_t)i;
		assert_int_equal(bus_register(b, 0x10000 + (uint64_t)i * 0x20, 0x10, &ops, &devs[i],
					      "d"),
				 0);
	}
	assert_int_equal(b->nr, N);
	for (int i = 1; i < b->nr; i++)
		assert_true(b->ranges[i - 1].base + b->ranges[i - 1].len <= b->ranges[i].base);
	for (unsigned i = 0; i < N; i++) {
		uint64_t base = 0x10000 + (uint64_t)i * 0x20;
		assert_ptr_equal(bus_find(b, base)->opaque, &devs[i]);
		assert_ptr_equal(bus_find(b, base + 0xf)->opaque, &devs[i]);
		assert_null(bus_find(b, base + 0x10)); /* the gap */
		assert_null(bus_find(b, base + 0x1f));
		uint8_t d[4];
		assert_true(bus_dispatch(b, base + 0xc, d, 4, false));
		assert_int_equal(devs[i].reads, 1);
		assert_int_equal(devs[i].offset, 0xc);
		assert_int_equal(d[0], (uint8_t)i);
	}
	assert_null(bus_find(b, 0xffff));
	assert_null(bus_find(b, 0x10000 + (uint64_t)N * 0x20));
	/* Every gap and every overlap is still refused after growth. */
	assert_int_equal(bus_register(b, 0x10008, 0x10, &ops, &devs[0], "x"), -1);
	assert_int_equal(bus_register(b, 0x10010, 0x10, &ops, &devs[0], "gap"), 0);
	free(devs);
}

static void free_and_reuse(void **state)
{
	struct bus *b = *state;
	struct dev a = {0};
	assert_int_equal(bus_register(b, 0x10, 4, &ops, &a, "a"), 0);
	bus_free(b);
	assert_int_equal(b->nr, 0);
	assert_null(bus_find(b, 0x10));
	assert_int_equal(bus_register(b, 0x10, 4, &ops, &a, "a"), 0);
	assert_non_null(bus_find(b, 0x12));
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(register_and_find),
		T(empty_bus),
		T(overlaps_rejected),
		T(invalid_ranges_rejected),
		T(dispatch_routes_offset_and_size),
		T(dispatch_sizes_1_2_4_8),
		T(unclaimed_read_all_ones_and_counted),
		T(straddling_access_unclaimed),
		T(access_larger_than_range),
		T(bad_sizes_unclaimed),
		T(missing_callbacks),
		T(counters),
		T(many_ranges),
		T(free_and_reuse),
	};
	return cmocka_run_group_tests_name("bus", tests, NULL, NULL);
}
