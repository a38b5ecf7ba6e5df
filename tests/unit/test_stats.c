/* Trap accounting: the latency histogram's buckets, the per-exit update, and
 * the parser of KVM's binary statistics file (a synthetic one in a memfd:
 * header, descriptors with names, data block). */
#include "unit.h"

#include <linux/kvm.h>
#include <sys/mman.h>
#include <unistd.h>

#include "stats/kvmstats.h"
#include "stats/stats.h"

static void hist_buckets(void **state)
{
	(void)state;
	assert_int_equal(stats_hist_bucket(0), 0);
	assert_int_equal(stats_hist_bucket(255), 0);
	assert_int_equal(stats_hist_bucket(256), 1);
	assert_int_equal(stats_hist_bucket(511), 1);
	assert_int_equal(stats_hist_bucket(512), 2);
	assert_int_equal(stats_hist_bucket((uint64_t)STATS_HIST_BASE_NS << (STATS_HIST - 2)), STATS_HIST - 1);
	assert_int_equal(stats_hist_bucket(UINT64_MAX), STATS_HIST - 1); /* the open last bucket */
}

static void exit_update(void **state)
{
	(void)state;
	struct vcpu_stats s;
	memset(&s, 0, sizeof(s));
	stats_exit(&s, KVM_EXIT_IO, 300);
	stats_exit(&s, KVM_EXIT_IO, 100);
	stats_exit(&s, 200, 1000); /* beyond the table: the last slot */
	assert_int_equal(s.exits[KVM_EXIT_IO], 2);
	assert_int_equal(s.exit_ns[KVM_EXIT_IO], 400);
	assert_int_equal(s.exits[STATS_REASONS - 1], 1);
	assert_int_equal(s.handle_ns, 1400);
	assert_int_equal(s.hist[0], 1);
	assert_int_equal(s.hist[1], 1);
	assert_int_equal(s.hist[2], 1);
}

#define NAME_SIZE 32

/* A stats file: n descriptors named names[i], sizes[i] u64s each, at the
 * given byte offsets in the data block; data holds the values. */
static int stats_file(const char *const *names, const uint16_t *sizes, const uint32_t *offsets, unsigned n,
		      const uint64_t *data, unsigned words, uint32_t name_size)
{
	int fd = memfd_create("kvmstats", 0);
	assert_true(fd >= 0);
	struct kvm_stats_header h = {.name_size = name_size, .num_desc = n};
	h.desc_offset = sizeof(h) + 16; /* an id string would go in between */
	size_t dsz = sizeof(struct kvm_stats_desc) + name_size;
	h.data_offset = (uint32_t)(h.desc_offset + n * dsz);
	assert_int_equal(pwrite(fd, &h, sizeof(h), 0), sizeof(h));
	for (unsigned i = 0; i < n; i++) {
		uint8_t d[sizeof(struct kvm_stats_desc) + 256];
		memset(d, 0, sizeof(d));
		struct kvm_stats_desc *k = (struct kvm_stats_desc *)d;
		k->flags = KVM_STATS_TYPE_CUMULATIVE | KVM_STATS_UNIT_NONE;
		k->size = sizes[i];
		k->offset = offsets[i];
		strncpy(k->name, names[i], name_size);
		assert_int_equal(pwrite(fd, d, dsz, (off_t)(h.desc_offset + i * dsz)), (ssize_t)dsz);
	}
	assert_int_equal(pwrite(fd, data, words * 8, h.data_offset), (ssize_t)(words * 8));
	return fd;
}

static void kvmstats_parse_and_read(void **state)
{
	(void)state;
	const char *names[] = {"exits", "halt_poll_hist", "halt_exits", "blocking"};
	const uint16_t sizes[] = {1, 4, 1, 1};
	const uint32_t offsets[] = {0, 8, 40, 48};
	uint64_t data[7] = {1000, 1, 2, 3, 4, 77, 1};
	int fd = stats_file(names, sizes, offsets, 4, data, 7, NAME_SIZE);
	struct kvmstats s;
	assert_int_equal(kvmstats_parse(&s, fd), 0);
	assert_int_equal(s.nr, 3); /* the histogram is not kept */
	assert_int_equal(kvmstats_read(&s), 0);
	assert_int_equal(kvmstats_value(&s, kvmstats_find(&s, "exits")), 1000);
	assert_int_equal(kvmstats_value(&s, kvmstats_find(&s, "halt_exits")), 77);
	assert_int_equal(kvmstats_value(&s, kvmstats_find(&s, "blocking")), 1);
	assert_int_equal(kvmstats_find(&s, "halt_poll_hist"), -1);
	assert_int_equal(kvmstats_find(&s, "nope"), -1);
	assert_int_equal(kvmstats_value(&s, -1), 0);
	/* values change between reads */
	uint64_t more = 1234;
	assert_int_equal(pwrite(fd, &more, 8, (off_t)(sizeof(struct kvm_stats_header) + 16 +
						      4 * (sizeof(struct kvm_stats_desc) + NAME_SIZE))), 8);
	assert_int_equal(kvmstats_read(&s), 0);
	assert_int_equal(kvmstats_value(&s, kvmstats_find(&s, "exits")), 1234);
	kvmstats_close(&s); /* closes fd */
}

static void kvmstats_refuses_nonsense(void **state)
{
	(void)state;
	const char *names[] = {"a", "misaligned", "b"};
	const uint16_t sizes[] = {1, 1, 1};
	const uint32_t offsets[] = {0, 3, 8};
	uint64_t data[2] = {5, 6};
	int fd = stats_file(names, sizes, offsets, 3, data, 2, NAME_SIZE);
	struct kvmstats s;
	assert_int_equal(kvmstats_parse(&s, fd), 0);
	assert_int_equal(s.nr, 2); /* the misaligned one is skipped */
	assert_int_equal(kvmstats_read(&s), 0);
	assert_int_equal(kvmstats_value(&s, kvmstats_find(&s, "b")), 6);
	kvmstats_close(&s);

	/* a name size of 0 and a truncated file are refused, the fd left to the caller */
	fd = stats_file(names, sizes, offsets, 1, data, 1, 0);
	assert_int_equal(kvmstats_parse(&s, fd), -1);
	assert_int_equal(s.fd, -1);
	close(fd);
	fd = memfd_create("short", 0);
	assert_int_equal(write(fd, "xy", 2), 2);
	assert_int_equal(kvmstats_parse(&s, fd), -1);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(hist_buckets),
		cmocka_unit_test(exit_update),
		cmocka_unit_test(kvmstats_parse_and_read),
		cmocka_unit_test(kvmstats_refuses_nonsense),
	};
	return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
