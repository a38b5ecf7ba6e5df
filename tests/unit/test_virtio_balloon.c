/* virtio-balloon against a fake driver: the test writes queues and PFN arrays
 * into anonymous, mmap-backed guest RAM (so MADV_DONTNEED is observable: a
 * released page is no longer resident and reads back as zeros), drives the
 * device through its ops, and checks what it released, refused and reported. */
#include "unit.h"

#include <errno.h>
#include <poll.h>
#include <sys/epoll.h>
#include <stdio.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "snap_test.h"
#include "virtio/balloon.h"
#include "virtio/virtio.h"
#include "vmm/vm.h"

/* Low RAM [0, 3 GiB), the MMIO hole, high RAM [4 GiB, 4 GiB + 8 MiB):
 * MAP_NORESERVE, only touched pages become real. */
#define RAM (GiB(3) + MiB(8))
#define HIGH_PFN (LAYOUT_MMIO_HOLE_END >> 12)
#define HIGH_PAGES (MiB(8) >> 12)
#define HOLE_PFN (LAYOUT_MMIO_HOLE_START >> 12)
#define QSIZE 16
#define QBASE(q) (0x10000ULL + 0x4000ULL * (q))
#define DATA 0x40000ULL  /* PFN arrays, stats buffers */
#define DATA2 0x48000ULL

struct fix {
	struct vm vm;
	struct vm_config cfg;
	struct virtio_dev d;
	struct balloon *b;
	uint16_t avail_idx[3];
	uint16_t next_desc[3];
};

static uint8_t *gp(struct fix *f, uint64_t gpa, uint64_t len)
{
	uint8_t *p = gmem_ptr(&f->vm.mem, gpa, len);
	assert_non_null(p);
	return p;
}

static uint8_t *page(struct fix *f, uint64_t pfn)
{
	return gp(f, pfn << 12, 4096);
}

static int setup_cfg(void **state, uint32_t target_mib, bool deflate_on_oom, uint32_t interval)
{
	struct fix *f = calloc(1, sizeof(*f));
	if (!f || gmem_init(&f->vm.mem, RAM, NULL) < 0)
		return -1;
	f->cfg.balloon = (struct balloon_config){.enabled = true, .target_mib = target_mib,
						 .deflate_on_oom = deflate_on_oom,
						 .stats_interval_s = interval};
	f->vm.cfg = &f->cfg;
	struct kite_err err = {0};
	f->b = balloon_new(&f->cfg.balloon, &err);
	if (!f->b)
		return -1;
	f->d.ops = balloon_dev_ops(f->b);
	f->d.priv = f->b;
	f->d.vm = &f->vm;
	f->d.host_features = balloon_dev_features(f->b) | VIRTIO_BIT(VIRTIO_F_VERSION_1);
	snprintf(f->d.name, sizeof(f->d.name), "virtio-balloon0");
	/* As the transport makes it: recursive, so watch calls work under it. */
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&f->d.lock, &a);
	pthread_mutexattr_destroy(&a);
	/* The event thread's epoll set, without the thread: watches land here. */
	f->d.epfd = epoll_create1(EPOLL_CLOEXEC);
	f->d.stop_fd = -1;
	if (f->d.epfd < 0)
		return -1;
	f->vm.virtio[0] = &f->d;
	f->vm.nr_virtio = 1;
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_cfg(state, 100, false, 0);
}

static int setup_stats(void **state)
{
	return setup_cfg(state, 100, true, 600);
}

static int teardown(void **state)
{
	struct fix *f = *state;
	if (f->d.status & VIRTIO_STATUS_DRIVER_OK)
		f->d.ops->reset(&f->d); /* stops watching the stats timer */
	assert_null(f->d.watches);
	if (f->d.priv)
		f->d.ops->destroy(&f->d);
	close(f->d.epfd);
	pthread_mutex_destroy(&f->d.lock);
	gmem_free(&f->vm.mem);
	free(f);
	return 0;
}

/* The driver accepts `features` and enables every queue the device has, up
 * to DRIVER_OK; the device is not activated yet. */
static void queues_up(struct fix *f, uint64_t features)
{
	struct virtio_dev *d = &f->d;
	d->guest_features = features | VIRTIO_BIT(VIRTIO_F_VERSION_1);
	for (unsigned q = 0; q < d->ops->num_queues; q++) {
		struct virtio_queue *vq = &d->queues[q];
		vq->size = QSIZE;
		vq->enabled = true;
		vq->desc = QBASE(q);
		vq->avail = QBASE(q) + 0x1000;
		vq->used = QBASE(q) + 0x2000;
		struct vq_config c = {.size = QSIZE, .desc = vq->desc, .avail = vq->avail,
				      .used = vq->used};
		assert_int_equal(vq_init(&vq->vq, &f->vm.mem, &c), 0);
		vq->ready = true;
	}
	d->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
		    VIRTIO_STATUS_DRIVER_OK;
}

/* queues_up, then activate. Without a transport, the device's interrupts are
 * only counted. */
static void driver_ok(struct fix *f, uint64_t features)
{
	queues_up(f, features);
	pthread_mutex_lock(&f->d.lock);
	assert_int_equal(f->d.ops->activate(&f->d), 0);
	pthread_mutex_unlock(&f->d.lock);
}

static void notify(struct fix *f, unsigned q)
{
	pthread_mutex_lock(&f->d.lock);
	f->d.ops->notify(&f->d, q);
	pthread_mutex_unlock(&f->d.lock);
}

struct buf {
	uint64_t gpa;
	uint32_t len;
	bool writable;
};

/* Makes a chain of n buffers available on queue q; returns its head. */
static uint16_t submit(struct fix *f, unsigned q, unsigned n, const struct buf *bufs)
{
	uint64_t table = QBASE(q), avail = QBASE(q) + 0x1000;
	uint16_t head = f->next_desc[q] % QSIZE;
	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)((f->next_desc[q] + i) % QSIZE);
		uint8_t *p = gp(f, table + 16ULL * idx, 16);
		set64(p, bufs[i].gpa);
		set32(p + 8, bufs[i].len);
		uint16_t flags = (uint16_t)((i + 1 < n ? VQ_DESC_F_NEXT : 0) |
					    (bufs[i].writable ? VQ_DESC_F_WRITE : 0));
		set16(p + 12, flags);
		set16(p + 14, (uint16_t)((idx + 1) % QSIZE));
	}
	f->next_desc[q] = (uint16_t)(f->next_desc[q] + n);
	set16(gp(f, avail + 4 + 2 * (f->avail_idx[q] % QSIZE), 2), head);
	f->avail_idx[q]++;
	set16(gp(f, avail + 2, 2), f->avail_idx[q]);
	return head;
}

static uint16_t submit1(struct fix *f, unsigned q, uint64_t gpa, uint32_t len)
{
	struct buf b = {.gpa = gpa, .len = len};
	return submit(f, q, 1, &b);
}

static uint16_t used_idx(struct fix *f, unsigned q)
{
	return le16(gp(f, QBASE(q) + 0x2000 + 2, 2));
}

static uint32_t used_id(struct fix *f, unsigned q, uint16_t slot)
{
	return le32(gp(f, QBASE(q) + 0x2000 + 4 + 8 * (slot % QSIZE), 4));
}

static uint32_t used_len(struct fix *f, unsigned q, uint16_t slot)
{
	return le32(gp(f, QBASE(q) + 0x2000 + 8 + 8 * (slot % QSIZE), 4));
}

/* A PFN array at gpa, as the driver writes it. */
static uint32_t put_pfns(struct fix *f, uint64_t gpa, const uint32_t *pfns, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		set32(gp(f, gpa + 4ULL * i, 4), pfns[i]);
	return n * 4;
}

static void fill(struct fix *f, uint64_t pfn, uint8_t v)
{
	memset(page(f, pfn), v, 4096);
}

static bool resident(struct fix *f, uint64_t pfn)
{
	unsigned char vec = 0;
	assert_int_equal(mincore(page(f, pfn), 4096, &vec), 0);
	return vec & 1;
}

static bool all(struct fix *f, uint64_t pfn, uint8_t v)
{
	const uint8_t *p = page(f, pfn);
	for (unsigned i = 0; i < 4096; i++)
		if (p[i] != v)
			return false;
	return true;
}

static uint32_t cfg_read32(struct fix *f, uint32_t off)
{
	uint8_t b[4];
	pthread_mutex_lock(&f->d.lock);
	f->d.ops->config_read(&f->d, off, b, 4);
	pthread_mutex_unlock(&f->d.lock);
	return le32(b);
}

static void cfg_write(struct fix *f, uint32_t off, const uint8_t *data, uint32_t len)
{
	pthread_mutex_lock(&f->d.lock);
	f->d.ops->config_write(&f->d, off, data, len);
	pthread_mutex_unlock(&f->d.lock);
}

/* ---- device shape ---- */

static void queues_and_features_follow_config(void **state)
{
	struct fix *f = *state;
	/* setup: no statistics, no deflate-on-OOM: two queues, no feature. */
	assert_int_equal(f->d.ops->device_id, VIRTIO_ID_BALLOON);
	assert_int_equal(f->d.ops->num_queues, 2);
	assert_int_equal(f->d.ops->config_len, 8);
	assert_int_equal(balloon_dev_features(f->b), 0);

	struct balloon_config c = {.enabled = true, .deflate_on_oom = true, .stats_interval_s = 1};
	struct kite_err err = {0};
	struct balloon *b = balloon_new(&c, &err);
	assert_non_null(b);
	assert_int_equal(balloon_dev_ops(b)->num_queues, 3);
	assert_int_equal(balloon_dev_features(b), VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ) |
							  VIRTIO_BIT(VIRTIO_BALLOON_F_DEFLATE_ON_OOM));
	balloon_free(b);
}

static void target_too_large_refused(void **state)
{
	(void)state;
	struct balloon_config c = {.enabled = true, .target_mib = BALLOON_MAX_MIB + 1};
	struct kite_err err = {0};
	assert_null(balloon_new(&c, &err));
	assert_int_equal(err.code, KITE_EXIT_USAGE);
	assert_non_null(strstr(err.msg, "amount_mib"));

	c.target_mib = BALLOON_MAX_MIB;
	struct balloon *b = balloon_new(&c, &err);
	assert_non_null(b);
	balloon_free(b);
}

/* ---- config space ---- */

static void config_read_num_pages_and_actual(void **state)
{
	struct fix *f = *state;
	assert_int_equal(cfg_read32(f, 0), 100 * 256);
	assert_int_equal(cfg_read32(f, 4), 0);
	uint8_t b[8];
	f->d.ops->config_read(&f->d, 0, b, 8);
	assert_int_equal(le32(b), 25600);
	f->d.ops->config_read(&f->d, 1, b, 1);
	assert_int_equal(b[0], 25600 >> 8);
}

static void config_write_only_actual(void **state)
{
	struct fix *f = *state;
	uint8_t v[8];
	set32(v, 1234);
	cfg_write(f, 4, v, 4);
	assert_int_equal(cfg_read32(f, 4), 1234);

	/* one byte of actual */
	v[0] = 0x7f;
	cfg_write(f, 5, v, 1);
	assert_int_equal(cfg_read32(f, 4), (1234 & 0xff) | 0x7f00);

	/* num_pages is the host's: the driver cannot change it */
	set32(v, 0xffffffff);
	cfg_write(f, 0, v, 4);
	cfg_write(f, 2, v, 2);
	assert_int_equal(cfg_read32(f, 0), 25600);

	/* a write over both fields changes only actual */
	set32(v, 1);
	set32(v + 4, 5000);
	cfg_write(f, 0, v, 8);
	assert_int_equal(cfg_read32(f, 0), 25600);
	assert_int_equal(cfg_read32(f, 4), 5000);

	/* the API sees the driver's number */
	struct balloon_stats s;
	assert_int_equal(balloon_get_stats(&f->vm, &s), -ENOTSUP); /* no stats in this setup */
}

static void set_target_updates_config(void **state)
{
	struct fix *f = *state;
	uint8_t gen = f->d.config_generation;
	assert_int_equal(balloon_set_target(&f->vm, 64), 0);
	assert_int_equal(cfg_read32(f, 0), 64 * 256);
	assert_int_not_equal(f->d.config_generation, gen);

	uint32_t mib = 0, interval = 7;
	bool oom = true;
	assert_int_equal(balloon_get_config(&f->vm, &mib, &oom, &interval), 0);
	assert_int_equal(mib, 64);
	assert_false(oom);
	assert_int_equal(interval, 0);
	assert_int_equal(balloon_get_config(&f->vm, NULL, NULL, NULL), 0);

	assert_int_equal(balloon_set_target(&f->vm, BALLOON_MAX_MIB + 1), -EINVAL);
	assert_int_equal(cfg_read32(f, 0), 64 * 256);
	assert_int_equal(balloon_set_target(&f->vm, 0), 0);
	assert_int_equal(cfg_read32(f, 0), 0);

	/* a running driver hears of it too (a config change) */
	driver_ok(f, 0);
	gen = f->d.config_generation;
	assert_int_equal(balloon_set_target(&f->vm, 32), 0);
	assert_int_equal(cfg_read32(f, 0), 32 * 256);
	assert_int_not_equal(f->d.config_generation, gen);
}

static void api_without_device(void **state)
{
	(void)state;
	struct vm *vm = calloc(1, sizeof(*vm));
	assert_non_null(vm);
	struct balloon_stats s;
	uint32_t mib;
	assert_int_equal(balloon_set_target(vm, 1), -ENODEV);
	assert_int_equal(balloon_get_config(vm, &mib, NULL, NULL), -ENODEV);
	assert_int_equal(balloon_set_stats_interval(vm, 1), -ENODEV);
	assert_int_equal(balloon_get_stats(vm, &s), -ENODEV);
	free(vm);
}

/* ---- inflate / deflate ---- */

static void release_coalesces_runs(void **state)
{
	struct fix *f = *state;
	for (uint64_t p = 1; p <= 12; p++)
		fill(f, p, 0xab);
	uint32_t pfns[] = {3, 1, 2, 2, 11, 10, (uint32_t)HOLE_PFN, 0xffffffffu,
			   (uint32_t)HIGH_PFN, (uint32_t)HOLE_PFN - 1,
			   (uint32_t)(HIGH_PFN + HIGH_PAGES - 1), (uint32_t)(HIGH_PFN + HIGH_PAGES)};
	struct balloon_release r = {0};
	balloon_release_pfns(&f->vm.mem, pfns, sizeof(pfns) / sizeof(pfns[0]), &r);
	/* {1,2,3} {10,11} {3G-4K} {4G} {end of RAM - 4K}; hole, 2^32-1 and the
	 * page after RAM are not the guest's to give. */
	assert_int_equal(r.runs, 5);
	assert_int_equal(r.pages, 8);
	assert_int_equal(r.invalid, 3);
	assert_int_equal(r.failed, 0);
	for (uint64_t p = 1; p <= 3; p++)
		assert_false(resident(f, p));
	assert_true(resident(f, 4));
	assert_true(all(f, 4, 0xab));
	assert_true(all(f, 1, 0));
	assert_true(all(f, 11, 0));
	assert_true(all(f, 12, 0xab));

	/* nothing to do */
	balloon_release_pfns(&f->vm.mem, pfns, 0, &r);
	assert_int_equal(r.runs, 5);
}

/* Memory madvise refuses (not page-aligned): counted, no crash. */
static void release_madvise_failure_counted(void **state)
{
	(void)state;
	size_t size = MiB(1);
	uint8_t *p = mmap(NULL, size + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(p != MAP_FAILED);
	struct gmem m;
	assert_int_equal(gmem_init(&m, size, p + 1), 0);
	uint32_t pfns[] = {5, 6};
	struct balloon_release r = {0};
	balloon_release_pfns(&m, pfns, 2, &r);
	assert_int_equal(r.runs, 1);
	assert_int_equal(r.pages, 0);
	assert_int_equal(r.failed, 2);
	gmem_free(&m);
	munmap(p, size + 4096);
}

static void inflate_gives_pages_back(void **state)
{
	struct fix *f = *state;
	driver_ok(f, 0);
	for (uint64_t p = 0x100; p <= 0x108; p++)
		fill(f, p, 0xab);
	fill(f, 0x200, 0xcd);
	fill(f, 0x300, 0xcd);
	fill(f, HIGH_PFN + 5, 0xcd);
	uint32_t pfns[] = {0x105, 0x100, 0x101, 0x102, 0x103, 0x104, 0x106, 0x107,
			   0x200, 0x300, 0x200, (uint32_t)HIGH_PFN + 5};
	uint32_t len = put_pfns(f, DATA, pfns, sizeof(pfns) / sizeof(pfns[0]));
	uint16_t head = submit1(f, BALLOON_Q_INFLATE, DATA, len);
	notify(f, BALLOON_Q_INFLATE);

	assert_int_equal(used_idx(f, BALLOON_Q_INFLATE), 1);
	assert_int_equal(used_id(f, BALLOON_Q_INFLATE, 0), head);
	assert_int_equal(used_len(f, BALLOON_Q_INFLATE, 0), 0);
	assert_int_equal(f->d.errors, 0);
	assert_int_equal(f->d.requests, 1);
	assert_int_equal(f->d.interrupts, 1);
	assert_false(resident(f, 0x100));
	assert_false(resident(f, 0x107));
	assert_false(resident(f, 0x300));
	assert_false(resident(f, HIGH_PFN + 5));
	for (uint64_t p = 0x100; p <= 0x107; p++)
		assert_true(all(f, p, 0));
	assert_true(all(f, 0x200, 0));
	assert_true(all(f, HIGH_PFN + 5, 0));
	assert_true(all(f, 0x108, 0xab)); /* the neighbour stays */
	assert_true(all(f, 0x201, 0));    /* never written: zero anyway */
}

static void inflate_hostile_pfns_skipped(void **state)
{
	struct fix *f = *state;
	driver_ok(f, 0);
	fill(f, 0x100, 0xab);
	uint32_t pfns[] = {(uint32_t)HOLE_PFN, 0xffffffffu, 0x100,
			   (uint32_t)(HIGH_PFN + HIGH_PAGES), (uint32_t)HOLE_PFN + 5};
	uint32_t len = put_pfns(f, DATA, pfns, 5);
	submit1(f, BALLOON_Q_INFLATE, DATA, len);
	notify(f, BALLOON_Q_INFLATE);
	assert_int_equal(used_idx(f, BALLOON_Q_INFLATE), 1);
	assert_true(all(f, 0x100, 0));
	assert_int_equal(f->d.errors, 1);
	assert_false(f->d.status & VIRTIO_STATUS_NEEDS_RESET);

	/* the device goes on */
	fill(f, 0x101, 0xab);
	uint32_t ok = 0x101;
	submit1(f, BALLOON_Q_INFLATE, DATA, put_pfns(f, DATA, &ok, 1));
	notify(f, BALLOON_Q_INFLATE);
	assert_int_equal(used_idx(f, BALLOON_Q_INFLATE), 2);
	assert_true(all(f, 0x101, 0));
	assert_int_equal(f->d.errors, 1);
}

/* An array longer than any driver sends is refused whole, but returned. */
static void inflate_overlong_chain_refused(void **state)
{
	struct fix *f = *state;
	driver_ok(f, 0);
	fill(f, 0x100, 0xab);
	for (unsigned i = 0; i <= BALLOON_MAX_PFNS_PER_CHAIN; i++)
		set32(gp(f, DATA + 4ULL * i, 4), 0x100);
	submit1(f, BALLOON_Q_INFLATE, DATA, (BALLOON_MAX_PFNS_PER_CHAIN + 1) * 4);
	notify(f, BALLOON_Q_INFLATE);
	assert_int_equal(used_idx(f, BALLOON_Q_INFLATE), 1);
	assert_int_equal(f->d.errors, 1);
	assert_true(all(f, 0x100, 0xab));

	/* exactly the limit is fine */
	submit1(f, BALLOON_Q_INFLATE, DATA, BALLOON_MAX_PFNS_PER_CHAIN * 4);
	notify(f, BALLOON_Q_INFLATE);
	assert_int_equal(used_idx(f, BALLOON_Q_INFLATE), 2);
	assert_int_equal(f->d.errors, 1);
	assert_true(all(f, 0x100, 0));
}

/* The PFN array may be split over buffers anywhere; a trailing partial
 * number and device-writable buffers are ignored. */
static void inflate_scattered_array(void **state)
{
	struct fix *f = *state;
	driver_ok(f, 0);
	for (uint64_t p = 0x100; p <= 0x103; p++)
		fill(f, p, 0xab);
	uint8_t arr[15];
	set32(arr, 0x100);
	set32(arr + 4, 0x101);
	set32(arr + 8, 0x102);
	set16(arr + 12, 0x103); /* a partial number: 14 bytes + 1 */
	arr[14] = 0;
	memcpy(gp(f, DATA, 6), arr, 6);
	memcpy(gp(f, DATA2, 9), arr + 6, 9);
	struct buf bufs[] = {{DATA, 6, false}, {DATA2, 9, false}, {DATA2 + 0x100, 16, true}};
	submit(f, BALLOON_Q_INFLATE, 3, bufs);
	notify(f, BALLOON_Q_INFLATE);
	assert_int_equal(used_idx(f, BALLOON_Q_INFLATE), 1);
	assert_int_equal(used_len(f, BALLOON_Q_INFLATE, 0), 0);
	assert_true(all(f, 0x100, 0));
	assert_true(all(f, 0x101, 0));
	assert_true(all(f, 0x102, 0));
	assert_true(all(f, 0x103, 0xab));
	assert_int_equal(f->d.errors, 0);

	/* only a writable buffer: no pages, still returned */
	struct buf w = {DATA2, 64, true};
	submit(f, BALLOON_Q_INFLATE, 1, &w);
	notify(f, BALLOON_Q_INFLATE);
	assert_int_equal(used_idx(f, BALLOON_Q_INFLATE), 2);
}

static void deflate_only_consumes(void **state)
{
	struct fix *f = *state;
	driver_ok(f, 0);
	fill(f, 0x100, 0xab);
	uint32_t pfns[] = {0x100, (uint32_t)HOLE_PFN};
	submit1(f, BALLOON_Q_DEFLATE, DATA, put_pfns(f, DATA, pfns, 2));
	submit1(f, BALLOON_Q_DEFLATE, DATA, 8);
	notify(f, BALLOON_Q_DEFLATE);
	assert_int_equal(used_idx(f, BALLOON_Q_DEFLATE), 2);
	assert_int_equal(f->d.interrupts, 1); /* one for the batch */
	assert_int_equal(used_idx(f, BALLOON_Q_INFLATE), 0);
	assert_true(all(f, 0x100, 0xab));
	assert_true(resident(f, 0x100));
}

/* A driver that breaks the queue puts the device in NEEDS_RESET; the VMM
 * goes on. */
static void broken_queue_needs_reset(void **state)
{
	struct fix *f = *state;
	driver_ok(f, 0);
	set16(gp(f, QBASE(BALLOON_Q_INFLATE) + 0x1000 + 2, 2), QSIZE + 1);
	notify(f, BALLOON_Q_INFLATE);
	assert_true(f->d.status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(used_idx(f, BALLOON_Q_INFLATE), 0);
	assert_int_equal(f->d.interrupts, 0);
}

/* Kicks before DRIVER_OK or for queues that do not exist do nothing. */
static void notify_without_queue_ignored(void **state)
{
	struct fix *f = *state;
	notify(f, BALLOON_Q_INFLATE);
	driver_ok(f, 0);
	notify(f, BALLOON_Q_STATS); /* no stats queue in this setup */
	notify(f, 7);
	assert_int_equal(f->d.requests, 0);
}

/* ---- statistics ---- */

static void stats_parse_known_tags(void **state)
{
	(void)state;
	uint8_t raw[BALLOON_S_NR * 10];
	for (unsigned t = 0; t < BALLOON_S_NR; t++) {
		set16(raw + 10 * t, (uint16_t)t);
		set64(raw + 10 * t + 2, 0x1000000000ULL * (t + 1) + t);
	}
	uint8_t *buf = dup_exact(raw, sizeof(raw));
	struct balloon_stats s = {0};
	assert_int_equal(balloon_stats_parse(&s, buf, sizeof(raw)), BALLOON_S_NR);
	assert_int_equal(s.present, (1u << BALLOON_S_NR) - 1);
	for (unsigned t = 0; t < BALLOON_S_NR; t++)
		assert_int_equal(s.value[t], 0x1000000000ULL * (t + 1) + t);
	free(buf);

	assert_string_equal(balloon_stat_name(BALLOON_S_SWAP_IN), "swap_in");
	assert_string_equal(balloon_stat_name(BALLOON_S_MEMFREE), "free_memory");
	assert_string_equal(balloon_stat_name(BALLOON_S_MEMTOT), "total_memory");
	assert_string_equal(balloon_stat_name(BALLOON_S_AVAIL), "available_memory");
	assert_string_equal(balloon_stat_name(BALLOON_S_CACHES), "disk_caches");
	assert_string_equal(balloon_stat_name(BALLOON_S_HTLB_PGFAIL), "hugetlb_failures");
	assert_null(balloon_stat_name(BALLOON_S_NR));
}

static void stats_parse_unknown_tags_ignored(void **state)
{
	(void)state;
	uint8_t raw[40];
	set16(raw, 10); /* newer kernels: OOM kills */
	set64(raw + 2, 1);
	set16(raw + 10, 0xffff);
	set64(raw + 12, 2);
	set16(raw + 20, BALLOON_S_MEMFREE);
	set64(raw + 22, 4096);
	set16(raw + 30, 15);
	set64(raw + 32, 3);
	uint8_t *buf = dup_exact(raw, sizeof(raw));
	struct balloon_stats s = {0};
	assert_int_equal(balloon_stats_parse(&s, buf, sizeof(raw)), 1);
	assert_int_equal(s.present, 1u << BALLOON_S_MEMFREE);
	assert_int_equal(s.value[BALLOON_S_MEMFREE], 4096);
	free(buf);
}

static void stats_parse_short_buffers(void **state)
{
	(void)state;
	uint8_t raw[25];
	memset(raw, 0, sizeof(raw));
	set16(raw, BALLOON_S_MEMTOT);
	set64(raw + 2, 111);
	set16(raw + 10, BALLOON_S_AVAIL);
	set64(raw + 12, 222);
	set16(raw + 20, BALLOON_S_SWAP_OUT); /* 5 bytes of a third entry */
	for (size_t len = 0; len <= sizeof(raw); len++) {
		uint8_t *buf = dup_exact(raw, len);
		struct balloon_stats s = {0};
		unsigned want = (unsigned)(len / 10);
		assert_int_equal(balloon_stats_parse(&s, buf, len), want);
		assert_int_equal(s.present, (want >= 1 ? 1u << BALLOON_S_MEMTOT : 0) |
						    (want >= 2 ? 1u << BALLOON_S_AVAIL : 0));
		free(buf);
	}
	/* later buffers update what they report, keep the rest */
	struct balloon_stats s = {0};
	balloon_stats_parse(&s, raw, 20);
	set64(raw + 2, 333);
	balloon_stats_parse(&s, raw, 10);
	assert_int_equal(s.value[BALLOON_S_MEMTOT], 333);
	assert_int_equal(s.value[BALLOON_S_AVAIL], 222);
}

static uint32_t put_stats(struct fix *f, uint64_t gpa, uint64_t free_b, uint64_t total_b)
{
	set16(gp(f, gpa, 2), BALLOON_S_MEMFREE);
	set64(gp(f, gpa + 2, 8), free_b);
	set16(gp(f, gpa + 10, 2), BALLOON_S_MEMTOT);
	set64(gp(f, gpa + 12, 8), total_b);
	set16(gp(f, gpa + 20, 2), 12); /* unknown */
	set64(gp(f, gpa + 22, 8), 1);
	return 30;
}

static void tick(struct fix *f)
{
	pthread_mutex_lock(&f->d.lock);
	balloon_stats_tick(&f->d);
	pthread_mutex_unlock(&f->d.lock);
}

/* The driver's buffer is kept until poll time, then returned for a refill. */
static void stats_buffer_held_and_returned(void **state)
{
	struct fix *f = *state;
	driver_ok(f, VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ));
	struct balloon_stats s;
	assert_int_equal(balloon_get_stats(&f->vm, &s), 0);
	assert_int_equal(s.present, 0);

	uint16_t head = submit1(f, BALLOON_Q_STATS, DATA, put_stats(f, DATA, 1000, 2000));
	notify(f, BALLOON_Q_STATS);
	assert_int_equal(used_idx(f, BALLOON_Q_STATS), 0); /* held */
	assert_int_equal(f->d.interrupts, 0);
	assert_int_equal(balloon_get_stats(&f->vm, &s), 0);
	assert_int_equal(s.present, (1u << BALLOON_S_MEMFREE) | (1u << BALLOON_S_MEMTOT));
	assert_int_equal(s.value[BALLOON_S_MEMFREE], 1000);
	assert_int_equal(s.value[BALLOON_S_MEMTOT], 2000);
	assert_int_equal(s.target_pages, 25600);
	assert_int_equal(s.target_mib, 100);
	assert_int_equal(s.actual_pages, 0);

	uint8_t act[4];
	set32(act, 512 + 3);
	cfg_write(f, 4, act, 4);
	assert_int_equal(balloon_get_stats(&f->vm, &s), 0);
	assert_int_equal(s.actual_pages, 515);
	assert_int_equal(s.actual_mib, 2);

	tick(f);
	assert_int_equal(used_idx(f, BALLOON_Q_STATS), 1);
	assert_int_equal(f->d.interrupts, 1);
	assert_int_equal(used_id(f, BALLOON_Q_STATS, 0), head);
	assert_int_equal(used_len(f, BALLOON_Q_STATS, 0), 0);
	tick(f); /* nothing held: nothing to return */
	assert_int_equal(used_idx(f, BALLOON_Q_STATS), 1);
	assert_int_equal(f->d.interrupts, 1);

	/* the refill */
	submit1(f, BALLOON_Q_STATS, DATA, put_stats(f, DATA, 1500, 2000));
	notify(f, BALLOON_Q_STATS);
	assert_int_equal(balloon_get_stats(&f->vm, &s), 0);
	assert_int_equal(s.value[BALLOON_S_MEMFREE], 1500);

	/* a second buffer while one is held: the old one goes back */
	uint16_t second = submit1(f, BALLOON_Q_STATS, DATA2, put_stats(f, DATA2, 1700, 2000));
	notify(f, BALLOON_Q_STATS);
	assert_int_equal(used_idx(f, BALLOON_Q_STATS), 2);
	assert_int_equal(f->d.interrupts, 2);
	assert_int_equal(balloon_get_stats(&f->vm, &s), 0);
	assert_int_equal(s.value[BALLOON_S_MEMFREE], 1700);
	tick(f);
	assert_int_equal(used_idx(f, BALLOON_Q_STATS), 3);
	assert_int_equal(used_id(f, BALLOON_Q_STATS, 2), second);
}

/* A hostile stats buffer: odd length, in two pieces, writable only. */
static void stats_hostile_buffers(void **state)
{
	struct fix *f = *state;
	driver_ok(f, VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ));
	put_stats(f, DATA, 42, 84);
	struct buf bufs[] = {{DATA, 13, false}, {DATA + 13, 10, false}}; /* 2 entries + 3 bytes */
	submit(f, BALLOON_Q_STATS, 2, bufs);
	notify(f, BALLOON_Q_STATS);
	struct balloon_stats s;
	assert_int_equal(balloon_get_stats(&f->vm, &s), 0);
	assert_int_equal(s.present, (1u << BALLOON_S_MEMFREE) | (1u << BALLOON_S_MEMTOT));
	assert_int_equal(s.value[BALLOON_S_MEMTOT], 84);
	tick(f);

	struct buf w = {DATA2, 30, true};
	submit(f, BALLOON_Q_STATS, 1, &w);
	notify(f, BALLOON_Q_STATS);
	tick(f);
	assert_int_equal(used_idx(f, BALLOON_Q_STATS), 2);
	assert_false(f->d.status & VIRTIO_STATUS_NEEDS_RESET);
}

/* Without STATS_VQ accepted, queue 2 is not the stats queue. */
static void stats_queue_unused_without_feature(void **state)
{
	struct fix *f = *state;
	driver_ok(f, 0);
	submit1(f, BALLOON_Q_STATS, DATA, put_stats(f, DATA, 1, 2));
	notify(f, BALLOON_Q_STATS);
	struct balloon_stats s;
	assert_int_equal(balloon_get_stats(&f->vm, &s), 0);
	assert_int_equal(s.present, 0);
	assert_int_equal(f->d.requests, 0);
}

/* Reset forgets the held buffer (never pushed into a dead ring) and actual. */
static void reset_forgets_held_buffer(void **state)
{
	struct fix *f = *state;
	driver_ok(f, VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ));
	submit1(f, BALLOON_Q_STATS, DATA, put_stats(f, DATA, 1, 2));
	notify(f, BALLOON_Q_STATS);
	uint8_t act[4];
	set32(act, 77);
	cfg_write(f, 4, act, 4);
	pthread_mutex_lock(&f->d.lock);
	f->d.ops->reset(&f->d);
	pthread_mutex_unlock(&f->d.lock);
	assert_int_equal(cfg_read32(f, 4), 0);
	assert_int_equal(cfg_read32(f, 0), 25600);
	tick(f);
	assert_int_equal(used_idx(f, BALLOON_Q_STATS), 0);
}

static void stats_interval_rules(void **state)
{
	struct fix *f = *state;
	assert_int_equal(balloon_set_stats_interval(&f->vm, 0), -EINVAL); /* cannot turn off */
	assert_int_equal(balloon_set_stats_interval(&f->vm, 10), 0);
	uint32_t interval = 0;
	assert_int_equal(balloon_get_config(&f->vm, NULL, NULL, &interval), 0);
	assert_int_equal(interval, 10);
}

static void stats_off_refused(void **state)
{
	struct fix *f = *state;
	struct balloon_stats s;
	assert_int_equal(balloon_get_stats(&f->vm, &s), -ENOTSUP);
	assert_int_equal(balloon_set_stats_interval(&f->vm, 5), -EINVAL); /* cannot turn on */
	assert_int_equal(balloon_set_stats_interval(&f->vm, 0), 0);
	assert_int_equal(balloon_stats_timer_fd(&f->d), -1);
}

static bool timer_fires(struct fix *f, int timeout_ms)
{
	struct pollfd p = {.fd = balloon_stats_timer_fd(&f->d), .events = POLLIN};
	return poll(&p, 1, timeout_ms) == 1;
}

/* Activation arms the timer for one interval; a new interval refreshes at
 * once. */
static void stats_timer_armed(void **state)
{
	struct fix *f = *state;
	assert_true(balloon_stats_timer_fd(&f->d) >= 0);
	assert_false(timer_fires(f, 0)); /* not before activation */
	driver_ok(f, VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ));
	assert_false(timer_fires(f, 0)); /* 600 s away */
	assert_int_equal(balloon_set_stats_interval(&f->vm, 300), 0);
	assert_true(timer_fires(f, 10000));
	uint64_t n;
	assert_int_equal(read(balloon_stats_timer_fd(&f->d), &n, sizeof(n)), sizeof(n));
	assert_false(timer_fires(f, 0)); /* next one in 300 s */

	pthread_mutex_lock(&f->d.lock);
	f->d.ops->reset(&f->d);
	pthread_mutex_unlock(&f->d.lock);
	assert_int_equal(balloon_set_stats_interval(&f->vm, 4), 0);
	assert_false(timer_fires(f, 0)); /* stopped: no refresh until the next activation */
}

/* ---- snapshots ----
 * Inflate and deflate chains are answered at once, so the stats buffer is the
 * only chain in flight, and the device keeps holding it across a snapshot.
 * The device's bytes (balloon.c): u32 target, u32 actual, u32 interval,
 * u8 held, u16 head, u32 present, u64 value[10]. The transport's part (queue
 * positions, in flight count) is played here by vq_get_state / vq_set_state;
 * test_virtio_snap.c tests it. */
#define SNAP_HELD 12
#define SNAP_HEAD 13
#define SNAP_PRESENT 15
#define SNAP_LEN (SNAP_PRESENT + 4 + 8 * BALLOON_S_NR)

struct bsnap {
	struct snap_reader r;
	struct vq_state q[3]; /* what the transport's section keeps of each queue */
};

static void balloon_snapshot(struct fix *f, struct bsnap *s)
{
	struct kite_err err = {0};
	struct snap_writer w;
	snapw_init(&w);
	snapw_begin(&w, "VIRT", 0);
	pthread_mutex_lock(&f->d.lock);
	if ((f->d.status & VIRTIO_STATUS_DRIVER_OK) && f->d.ops->quiesce)
		f->d.ops->quiesce(&f->d);
	memset(s->q, 0, sizeof(s->q));
	for (unsigned q = 0; q < f->d.ops->num_queues; q++)
		vq_get_state(&f->d.queues[q].vq, &s->q[q]);
	assert_int_equal(f->d.ops->save(&f->d, &w, &err), 0);
	pthread_mutex_unlock(&f->d.lock);
	snapw_end(&w);
	snap_test_reopen(&w, &s->r);
	size_t len;
	snap_test_payload(&s->r, "VIRT", 0, &len);
	assert_int_equal(len, SNAP_LEN);
}

/* The device as a restoring process builds it from f->cfg (which a test may
 * change first), on the same guest memory (a restore brings it back), the
 * driver's queues where the snapshot left them; then the device's bytes. The
 * old device is reset first only so that its timer is no longer watched. */
static int restore_fresh(struct fix *f, const struct bsnap *s, struct snap_cursor *c,
			 struct kite_err *err)
{
	pthread_mutex_lock(&f->d.lock);
	if (f->d.status & VIRTIO_STATUS_DRIVER_OK)
		f->d.ops->reset(&f->d);
	pthread_mutex_unlock(&f->d.lock);
	balloon_free(f->b);
	struct kite_err e = {0};
	f->b = balloon_new(&f->cfg.balloon, &e);
	assert_non_null(f->b);
	f->d.priv = f->b;
	f->d.ops = balloon_dev_ops(f->b);
	for (unsigned q = 0; q < f->d.ops->num_queues && f->d.queues[q].ready; q++) {
		struct virtio_queue *vq = &f->d.queues[q];
		struct vq_config qc = {.size = vq->size, .desc = vq->desc, .avail = vq->avail,
				       .used = vq->used};
		const char *why = NULL;
		assert_int_equal(vq_init(&vq->vq, &f->vm.mem, &qc), 0);
		assert_int_equal(vq_set_state(&vq->vq, &s->q[q], &why), 0);
	}
	assert_true(snapr_find(&s->r, "VIRT", 0, c));
	pthread_mutex_lock(&f->d.lock);
	int rc = f->d.ops->restore(&f->d, c, err);
	pthread_mutex_unlock(&f->d.lock);
	return rc;
}

/* restore_fresh that must succeed, then what the transport does next:
 * activate, one notify per queue. */
static void restore_and_run(struct fix *f, const struct bsnap *s)
{
	struct kite_err err = {0};
	struct snap_cursor c;
	assert_int_equal(restore_fresh(f, s, &c, &err), 0);
	assert_true(snapc_done(&c));
	pthread_mutex_lock(&f->d.lock);
	assert_int_equal(f->d.ops->activate(&f->d), 0);
	for (unsigned q = 0; q < f->d.ops->num_queues; q++)
		f->d.ops->notify(&f->d, q);
	pthread_mutex_unlock(&f->d.lock);
}

static void expect_refused(struct fix *f, const struct bsnap *s, const char *what)
{
	struct kite_err err = {0};
	struct snap_cursor c;
	assert_int_equal(restore_fresh(f, s, &c, &err), -1);
	assert_image_err(&err);
	assert_non_null(strstr(err.msg, "virtio-balloon0"));
	if (!strstr(err.msg, what))
		fail_msg("'%s' does not say '%s'", err.msg, what);
}

/* Target, actual and interval come back from the snapshot, not from the
 * configuration the restoring process was given: config space reads what the
 * guest saw, the API what was set, and the stats timer runs at the saved
 * interval. */
static void snapshot_round_trip(void **state)
{
	struct fix *f = *state;
	driver_ok(f, VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ));
	assert_int_equal(balloon_set_target(&f->vm, 64), 0);
	uint8_t act[4];
	set32(act, 64 * 256 - 3);
	cfg_write(f, 4, act, 4);
	assert_int_equal(balloon_set_stats_interval(&f->vm, 30), 0);
	struct bsnap s;
	balloon_snapshot(f, &s);

	restore_and_run(f, &s); /* the configuration says 100 MiB, every 600 s */
	assert_int_equal(cfg_read32(f, 0), 64 * 256);
	assert_int_equal(cfg_read32(f, 4), 64 * 256 - 3);
	uint32_t mib = 0, interval = 0;
	assert_int_equal(balloon_get_config(&f->vm, &mib, NULL, &interval), 0);
	assert_int_equal(mib, 64);
	assert_int_equal(interval, 30);
	struct itimerspec its;
	assert_int_equal(timerfd_gettime(balloon_stats_timer_fd(&f->d), &its), 0);
	assert_int_equal(its.it_interval.tv_sec, 30);
	assert_true(its.it_value.tv_sec > 0 && its.it_value.tv_sec <= 30);
	snapr_free(&s.r);
}

/* The stats buffer the device held (descriptor 1: the second the driver
 * gave) stays held across the snapshot, with the numbers it carried; the
 * restored device's next poll hands back that very head. */
static void snapshot_keeps_held_stats_buffer(void **state)
{
	struct fix *f = *state;
	driver_ok(f, VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ));
	submit1(f, BALLOON_Q_STATS, DATA, put_stats(f, DATA, 1000, 2000));
	notify(f, BALLOON_Q_STATS);
	tick(f);
	uint16_t head = submit1(f, BALLOON_Q_STATS, DATA2, put_stats(f, DATA2, 1500, 3000));
	notify(f, BALLOON_Q_STATS);
	assert_int_equal(head, 1);
	assert_int_equal(used_idx(f, BALLOON_Q_STATS), 1);
	struct bsnap s;
	balloon_snapshot(f, &s);
	assert_int_equal(s.q[BALLOON_Q_STATS].inflight, 1);
	assert_int_equal(used_idx(f, BALLOON_Q_STATS), 1); /* still held */

	restore_and_run(f, &s);
	assert_int_equal(used_idx(f, BALLOON_Q_STATS), 1);
	struct balloon_stats st;
	assert_int_equal(balloon_get_stats(&f->vm, &st), 0);
	assert_int_equal(st.present, (1u << BALLOON_S_MEMFREE) | (1u << BALLOON_S_MEMTOT));
	assert_int_equal(st.value[BALLOON_S_MEMFREE], 1500);
	assert_int_equal(st.value[BALLOON_S_MEMTOT], 3000);
	tick(f);
	assert_int_equal(used_idx(f, BALLOON_Q_STATS), 2);
	assert_int_equal(used_id(f, BALLOON_Q_STATS, 1), head);
	tick(f); /* given back once */
	assert_int_equal(used_idx(f, BALLOON_Q_STATS), 2);
	/* and the driver's refill is taken as before */
	uint16_t next = submit1(f, BALLOON_Q_STATS, DATA, put_stats(f, DATA, 1700, 3000));
	notify(f, BALLOON_Q_STATS);
	assert_int_equal(balloon_get_stats(&f->vm, &st), 0);
	assert_int_equal(st.value[BALLOON_S_MEMFREE], 1700);
	tick(f);
	assert_int_equal(used_id(f, BALLOON_Q_STATS, 2), next);
	assert_false(f->d.status & VIRTIO_STATUS_NEEDS_RESET);
	snapr_free(&s.r);
}

/* Statistics are on or off for a device's life (the stats queue exists or
 * not): a snapshot with them cannot go onto a configuration without them. */
static void snapshot_stats_on_config_off_refused(void **state)
{
	struct fix *f = *state;
	driver_ok(f, VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ));
	struct bsnap s;
	balloon_snapshot(f, &s);
	f->cfg.balloon.stats_interval_s = 0;
	expect_refused(f, &s, "statistics every 600 s in the snapshot, but they are off here");
	snapr_free(&s.r);
}

static void snapshot_stats_off_config_on_refused(void **state)
{
	struct fix *f = *state;
	driver_ok(f, 0);
	struct bsnap s;
	balloon_snapshot(f, &s);
	f->cfg.balloon.stats_interval_s = 5;
	expect_refused(f, &s, "statistics every 0 s in the snapshot, but they are on here");
	snapr_free(&s.r);
}

/* The held buffer must be the one chain in flight on the stats queue: a file
 * that says held with nothing in flight, nothing held with one in flight, or a
 * head outside the queue, is refused. */
static void snapshot_held_buffer_must_be_in_flight(void **state)
{
	struct fix *f = *state;
	driver_ok(f, VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ));
	submit1(f, BALLOON_Q_STATS, DATA, put_stats(f, DATA, 1, 2));
	notify(f, BALLOON_Q_STATS);
	struct bsnap held;
	balloon_snapshot(f, &held);
	tick(f);
	struct bsnap none;
	balloon_snapshot(f, &none);
	size_t len;
	uint8_t *ph = snap_test_payload(&held.r, "VIRT", 0, &len);
	uint8_t *pn = snap_test_payload(&none.r, "VIRT", 0, &len);
	assert_int_equal(ph[SNAP_HELD], 1);
	assert_int_equal(pn[SNAP_HELD], 0);

	pn[SNAP_HELD] = 1;
	expect_refused(f, &none, "stats queue has 0 buffers in flight, the device holds 1");
	ph[SNAP_HELD] = 0;
	expect_refused(f, &held, "stats queue has 1 buffers in flight, the device holds 0");
	ph[SNAP_HELD] = 1;
	set16(ph + SNAP_HEAD, QSIZE);
	expect_refused(f, &held, "held stats buffer 16 is not in a running stats queue");
	set16(ph + SNAP_HEAD, 0xffff);
	expect_refused(f, &held, "held stats buffer 65535");
	/* as saved, both go back */
	set16(ph + SNAP_HEAD, 0);
	restore_and_run(f, &held);
	snapr_free(&held.r);
	snapr_free(&none.r);
}

/* Fields no device writes: a target that is no whole MiB, a held flag that
 * is not 0 or 1, stats tags the device does not know. */
static void snapshot_bad_fields_refused(void **state)
{
	struct fix *f = *state;
	driver_ok(f, VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ));
	struct bsnap s;
	balloon_snapshot(f, &s);
	size_t len;
	uint8_t *p = snap_test_payload(&s.r, "VIRT", 0, &len);
	set32(p, 100 * 256 + 1);
	expect_refused(f, &s, "not a whole number of MiB");
	set32(p, 100 * 256);
	p[SNAP_HELD] = 2;
	expect_refused(f, &s, "stats buffer flag 2 is not 0 or 1");
	p[SNAP_HELD] = 0;
	set32(p + SNAP_PRESENT, 1u << BALLOON_S_NR);
	expect_refused(f, &s, "unknown tags");
	set32(p + SNAP_PRESENT, 0);
	restore_and_run(f, &s);
	snapr_free(&s.r);
}

/* A section a byte (or all of it) short is refused by the device; one a byte
 * long is read only as far as its fields, and the cursor tells the transport
 * the rest is there (virtio_restore_all refuses it: test_virtio_snap.c). */
static void snapshot_short_and_long_sections(void **state)
{
	struct fix *f = *state;
	driver_ok(f, VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ));
	struct bsnap s, shorter, empty, longer;
	balloon_snapshot(f, &s);
	shorter = empty = longer = s;
	snap_test_resize(&s.r, "VIRT", 0, 1, &shorter.r);
	snap_test_resize(&s.r, "VIRT", 0, SNAP_LEN, &empty.r);
	snap_test_resize(&s.r, "VIRT", 0, -1, &longer.r);
	expect_refused(f, &shorter, "balloon state is short");
	expect_refused(f, &empty, "balloon state is short");
	struct kite_err err = {0};
	struct snap_cursor c;
	assert_int_equal(restore_fresh(f, &longer, &c, &err), 0);
	assert_false(snapc_done(&c));
	assert_false(c.bad);
	snapr_free(&s.r);
	snapr_free(&shorter.r);
	snapr_free(&empty.r);
	snapr_free(&longer.r);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define T_STATS(fn) cmocka_unit_test_setup_teardown(fn, setup_stats, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(queues_and_features_follow_config),
		cmocka_unit_test(target_too_large_refused),
		T(config_read_num_pages_and_actual),
		T(config_write_only_actual),
		T(set_target_updates_config),
		cmocka_unit_test(api_without_device),
		T(release_coalesces_runs),
		cmocka_unit_test(release_madvise_failure_counted),
		T(inflate_gives_pages_back),
		T(inflate_hostile_pfns_skipped),
		T(inflate_overlong_chain_refused),
		T(inflate_scattered_array),
		T(deflate_only_consumes),
		T(broken_queue_needs_reset),
		T(notify_without_queue_ignored),
		cmocka_unit_test(stats_parse_known_tags),
		cmocka_unit_test(stats_parse_unknown_tags_ignored),
		cmocka_unit_test(stats_parse_short_buffers),
		T_STATS(stats_buffer_held_and_returned),
		T_STATS(stats_hostile_buffers),
		T_STATS(stats_queue_unused_without_feature),
		T_STATS(reset_forgets_held_buffer),
		T_STATS(stats_interval_rules),
		T(stats_off_refused),
		T_STATS(stats_timer_armed),
		T_STATS(snapshot_round_trip),
		T_STATS(snapshot_keeps_held_stats_buffer),
		T_STATS(snapshot_stats_on_config_off_refused),
		T(snapshot_stats_off_config_on_refused),
		T_STATS(snapshot_held_buffer_must_be_in_flight),
		T_STATS(snapshot_bad_fields_refused),
		T_STATS(snapshot_short_and_long_sections),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
