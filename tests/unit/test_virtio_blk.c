/* virtio-blk through its ops table: a fake driver writes requests into
 * malloc'd guest memory, the device runs them against a temporary image with
 * io_uring, and the test plays the event thread: it waits on the device's
 * epoll set for the completion eventfd the device watches, then reaps with
 * blk_poll (what the watch callback does). Plus requests a hostile driver
 * could make, and the errors of opening images.
 *
 * No KVM here, so no real virtio-pci function (it needs irqfds): the device
 * gets a stand-in for src/virtio/pci.c's private struct vpci with everything
 * off: MSI-X disabled, no INTx line, so an interrupt (a used-buffer signal, a
 * NEEDS_RESET config change) only sets the ISR bit and counts in
 * d->interrupts. It mirrors the head of struct vpci (the PCI function, then
 * the device); the rest reads as zeroes. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "devices/pci.h"
#include "virtio/blk.h"
#include "virtio/virtio.h"
#include "virtio/virtqueue.h"
#include "vmm/mem.h"
#include "vmm/vm.h"
#include "snap_test.h"

#define RAM MiB(4)
#define QSIZE 128
#define DESC 0x1000ULL
#define AVAIL 0x2000ULL
#define USED 0x3000ULL
#define DATA 0x10000ULL
#define IMAGE_SECTORS 2048 /* 1 MiB */

struct fake_vpci {
	struct pci_dev pci;
	struct virtio_dev *d;
	uint8_t zeroes[4096];
};

struct seg {
	uint32_t len;
	bool w; /* device-writable */
};

struct req {
	const struct seg *segs;
	unsigned n;
	uint64_t gpa[QSIZE];
	uint16_t head;
};

struct t {
	struct gmem m;
	uint8_t *ram;
	char path[64];
	int img; /* the test's own fd on the image */
	struct disk_config cfg;
	struct blk *b;
	struct virtio_dev d;
	struct fake_vpci *transport;
	uint16_t avail_idx, next_desc;
	uint64_t next_data;
};

static uint8_t *gp(struct t *t, uint64_t gpa, uint64_t len)
{
	uint8_t *p = gmem_ptr(&t->m, gpa, len);
	assert_non_null(p);
	return p;
}

/* Image bytes: byte i is a function of i, so any misplaced sector shows. */
static uint8_t pattern(uint64_t i)
{
	return (uint8_t)(i * 7 + (i >> 9) * 13 + 1);
}

static void make_image(struct t *t, uint64_t size)
{
	snprintf(t->path, sizeof(t->path), "/var/tmp/kite-blk-XXXXXX");
	t->img = mkstemp(t->path);
	assert_true(t->img >= 0);
	uint8_t *buf = malloc(size ? size : 1);
	assert_non_null(buf);
	for (uint64_t i = 0; i < size; i++)
		buf[i] = pattern(i);
	assert_int_equal(pwrite(t->img, buf, size, 0), (ssize_t)size);
	free(buf);
}

/* Opens the device on t->path and starts it the way the transport would:
 * queue 0 configured, DRIVER_OK, activate. */
static void start_dev_features(struct t *t, uint64_t drop);

static void start_dev(struct t *t)
{
	start_dev_features(t, 0);
}

/* The driver accepts every offered feature except those in drop. */
static void start_dev_features(struct t *t, uint64_t drop)
{
	struct kite_err err = {0};
	t->b = blk_open(&t->cfg, &err);
	assert_non_null(t->b);
	assert_int_equal(err.code, 0);
	struct virtio_dev *d = &t->d;
	memset(d, 0, sizeof(*d));
	d->ops = &blk_ops;
	d->priv = t->b;
	snprintf(d->name, sizeof(d->name), "virtio-blk0");
	/* As the transport has it: recursive, held around every callback. */
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&d->lock, &a);
	pthread_mutexattr_destroy(&a);
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	assert_true(d->epfd >= 0);
	d->stop_fd = -1;
	if (!t->transport)
		t->transport = calloc(1, sizeof(*t->transport));
	assert_non_null(t->transport);
	t->transport->d = d;
	d->transport = t->transport;
	d->host_features = blk_features(t->b);
	d->guest_features = (d->host_features | VIRTIO_BIT(VIRTIO_F_VERSION_1)) & ~drop;
	struct vq_config qc = {.size = QSIZE, .desc = DESC, .avail = AVAIL, .used = USED};
	struct virtio_queue *q = &d->queues[0];
	assert_int_equal(vq_init(&q->vq, &t->m, &qc), 0);
	q->size = QSIZE;
	q->enabled = q->ready = true;
	q->desc = DESC;
	q->avail = AVAIL;
	q->used = USED;
	q->kick_fd = -1;
	d->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
		    VIRTIO_STATUS_DRIVER_OK;
	blk_attach(t->b, d);
	pthread_mutex_lock(&d->lock);
	assert_int_equal(blk_ops.activate(d), 0);
	pthread_mutex_unlock(&d->lock);
}

/* The transport's calls into the device, with the lock held. */
static void notify(struct t *t)
{
	pthread_mutex_lock(&t->d.lock);
	blk_ops.notify(&t->d, 0);
	pthread_mutex_unlock(&t->d.lock);
}

static void reset(struct t *t)
{
	pthread_mutex_lock(&t->d.lock);
	blk_ops.reset(&t->d);
	pthread_mutex_unlock(&t->d.lock);
}

static unsigned poll_dev(struct t *t)
{
	pthread_mutex_lock(&t->d.lock);
	unsigned left = blk_poll(&t->d);
	pthread_mutex_unlock(&t->d.lock);
	return left;
}

/* Stops the device like the transport does at teardown: reset, destroy. */
static void stop_dev(struct t *t)
{
	reset(t);
	blk_ops.destroy(&t->d);
	assert_null(t->d.priv);
	/* Reset forgot the completion eventfd: nothing is watched any more. */
	struct epoll_event ev;
	assert_int_equal(epoll_wait(t->d.epfd, &ev, 1, 0), 0);
	close(t->d.epfd);
	pthread_mutex_destroy(&t->d.lock);
	t->b = NULL;
}

static int setup_image(void **state, uint64_t size, bool ro, bool start)
{
	struct t *t = calloc(1, sizeof(*t));
	if (!t || test_ram_init(&t->m, &t->ram, RAM, 0, RAM) < 0)
		return -1;
	make_image(t, size);
	t->cfg = (struct disk_config){.id = "rootfs", .path = t->path, .read_only = ro};
	t->next_data = DATA;
	if (start)
		start_dev(t);
	*state = t;
	return 0;
}

static int setup(void **state) { return setup_image(state, IMAGE_SECTORS * 512ULL, false, true); }
static int setup_ro(void **state) { return setup_image(state, IMAGE_SECTORS * 512ULL, true, true); }
/* 1 MiB + 100 bytes: the tail is no whole sector. */
static int setup_odd(void **state) { return setup_image(state, IMAGE_SECTORS * 512ULL + 100, false, true); }
/* Image only: the test sets cfg up and starts the device itself. */
static int setup_nodev(void **state) { return setup_image(state, IMAGE_SECTORS * 512ULL, false, false); }

static int teardown(void **state)
{
	struct t *t = *state;
	if (t->b)
		stop_dev(t);
	free(t->transport);
	close(t->img);
	unlink(t->path);
	test_ram_free(&t->m, t->ram);
	free(t);
	return 0;
}

/* ---- the fake driver ---- */

static void put_desc(struct t *t, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	uint8_t *p = gp(t, DESC + 16ULL * i, 16);
	set64(p, addr);
	set32(p + 8, len);
	set16(p + 12, flags);
	set16(p + 14, next);
}

/* Lays the chain's buffers out back to back (with a gap, so an overrun shows)
 * and writes the descriptors; out (the header and any data) is spread over
 * the readable buffers, the writable ones are filled with 0xEE. */
static void prepare(struct t *t, struct req *r, const struct seg *segs, unsigned n,
		    const void *out, size_t out_len)
{
	r->segs = segs;
	r->n = n;
	r->head = t->next_desc % QSIZE;
	size_t done = 0;
	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = (t->next_desc + i) % QSIZE;
		r->gpa[i] = t->next_data;
		t->next_data += segs[i].len + 64;
		uint8_t *p = gp(t, r->gpa[i], segs[i].len);
		if (segs[i].w) {
			memset(p, 0xee, segs[i].len);
		} else {
			size_t k = out_len - done < segs[i].len ? out_len - done : segs[i].len;
			memcpy(p, (const uint8_t *)out + done, k);
			done += k;
		}
		uint16_t flags = (segs[i].w ? VQ_DESC_F_WRITE : 0) | (i + 1 < n ? VQ_DESC_F_NEXT : 0);
		put_desc(t, idx, r->gpa[i], segs[i].len, flags, (idx + 1) % QSIZE);
	}
	assert_int_equal(done, out_len);
	t->next_desc = (uint16_t)(t->next_desc + n);
}

static void make_available(struct t *t, const struct req *r)
{
	set16(gp(t, AVAIL + 4 + 2 * (t->avail_idx % QSIZE), 2), r->head);
	t->avail_idx++;
	set16(gp(t, AVAIL + 2, 2), t->avail_idx);
}

static uint16_t used_idx(struct t *t)
{
	return le16(gp(t, USED + 2, 2));
}

static void hdr(uint8_t *h, uint32_t type, uint64_t sector)
{
	memset(h, 0, BLK_HDR_LEN);
	set32(h, type);
	set32(h + 4, 0xdeadbeef); /* reserved: ignored */
	set64(h + 8, sector);
}

/* Kicks the queue, then does what the event thread does until `want` chains
 * were used: waits for the watched eventfd, calls the device. The timeout only
 * catches a device that never completes. */
static void run_until(struct t *t, uint16_t want)
{
	notify(t);
	while (used_idx(t) != want) {
		struct epoll_event ev;
		int n = epoll_wait(t->d.epfd, &ev, 1, 20000);
		/* io_uring's worker set-up interrupts us (task work) */
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fail_msg("no completion event: %u chains unanswered",
				 (uint16_t)(want - used_idx(t)));
		assert_non_null(ev.data.ptr); /* the device's watch */
		poll_dev(t);
	}
}

/* Used element of the n-th answered chain (0-based). */
static void used_elem(struct t *t, uint16_t n, uint32_t *id, uint32_t *len)
{
	uint8_t *e = gp(t, USED + 4 + 8 * (n % QSIZE), 8);
	*id = le32(e);
	*len = le32(e + 4);
}

static uint8_t status_of(struct t *t, const struct req *r)
{
	const struct seg *last = &r->segs[r->n - 1];
	assert_true(last->w);
	return *gp(t, r->gpa[r->n - 1] + last->len - 1, 1);
}

/* One request, start to answer: its status, and the written length the
 * device reported in the used element. */
static uint8_t do_req(struct t *t, struct req *r, const struct seg *segs, unsigned n,
		      const void *out, size_t out_len, uint32_t *written)
{
	prepare(t, r, segs, n, out, out_len);
	make_available(t, r);
	uint16_t slot = (uint16_t)(t->avail_idx - 1);
	run_until(t, t->avail_idx);
	uint32_t id, len;
	used_elem(t, slot, &id, &len);
	assert_int_equal(id, r->head);
	if (written)
		*written = len;
	return status_of(t, r);
}

/* Gathers the writable bytes of a chain (data before the status). */
static void gather(struct t *t, const struct req *r, uint8_t *dst, size_t len)
{
	size_t done = 0;
	for (unsigned i = 0; i < r->n && done < len; i++) {
		if (!r->segs[i].w)
			continue;
		size_t k = len - done < r->segs[i].len ? len - done : r->segs[i].len;
		memcpy(dst + done, gp(t, r->gpa[i], k), k);
		done += k;
	}
	assert_int_equal(done, len);
}

static void check_pattern(const uint8_t *p, uint64_t off, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != pattern(off + i))
			fail_msg("byte %zu (image offset %llu) is %#x, not %#x", i,
				 (unsigned long long)(off + i), p[i], pattern(off + i));
}

/* A request of one type and sector with a 16-byte header buffer, data
 * buffers as given and a 1-byte status buffer. */
static uint8_t simple(struct t *t, struct req *r, uint32_t type, uint64_t sector,
		      uint32_t data_len, bool data_w, uint32_t *written)
{
	static struct seg segs[3];
	uint8_t out[BLK_HDR_LEN + 4096];
	assert_true(data_len <= 4096);
	hdr(out, type, sector);
	unsigned n = 0;
	segs[n++] = (struct seg){BLK_HDR_LEN, false};
	size_t out_len = BLK_HDR_LEN;
	if (data_len) {
		segs[n++] = (struct seg){data_len, data_w};
		if (!data_w) {
			memset(out + BLK_HDR_LEN, 0x5a, data_len);
			out_len += data_len;
		}
	}
	segs[n++] = (struct seg){1, true};
	return do_req(t, r, segs, n, out, out_len, written);
}

/* Rate limiter: 2 KiB of budget and a refill of an hour: two 1 KiB reads
 * pass, the third is held (not answered, not failed) until the limits change. */
static void rate_limited_reads(void **state)
{
	struct t *t = *state;
	t->cfg.rl = (struct rl_config){.bandwidth = {.size = 2048, .refill_ms = 3600000}};
	start_dev(t);
	struct req r1, r2, r3;
	uint32_t w;
	assert_int_equal(simple(t, &r1, VIRTIO_BLK_T_IN, 0, 1024, true, &w), VIRTIO_BLK_S_OK);
	assert_int_equal(simple(t, &r2, VIRTIO_BLK_T_IN, 2, 1024, true, &w), VIRTIO_BLK_S_OK);
	static const struct seg segs[3] = {{BLK_HDR_LEN, false}, {1024, true}, {1, true}};
	uint8_t out[BLK_HDR_LEN];
	hdr(out, VIRTIO_BLK_T_IN, 4);
	prepare(t, &r3, segs, 3, out, sizeof(out));
	make_available(t, &r3);
	notify(t);
	assert_int_equal(used_idx(t), 2); /* held */
	assert_int_equal(t->d.requests, 3);
	notify(t);                         /* a kick does not let it through */
	assert_int_equal(used_idx(t), 2);
	/* What PATCH does: new limits (none here); the held request goes. */
	struct rl_config off = {0};
	pthread_mutex_lock(&t->d.lock);
	blk_set_rate_limiter(t->b, &off);
	pthread_mutex_unlock(&t->d.lock);
	run_until(t, 3);
	assert_int_equal(status_of(t, &r3), VIRTIO_BLK_S_OK);
}

/* ---- configuration ---- */

static void config_space(void **state)
{
	struct t *t = *state;
	uint8_t cfg[BLK_CFG_LEN];
	for (uint32_t off = 0; off < BLK_CFG_LEN; off++)
		blk_ops.config_read(&t->d, off, cfg + off, 1);
	assert_int_equal(le64(cfg + BLK_CFG_CAPACITY), IMAGE_SECTORS);
	assert_int_equal(le32(cfg + BLK_CFG_SEG_MAX), BLK_QUEUE_SIZE - 2);
	assert_int_equal(le32(cfg + BLK_CFG_BLK_SIZE), 512);
	assert_int_equal(le16(cfg + BLK_CFG_NUM_QUEUES), 1);
	/* A wide read sees the same bytes. */
	uint8_t cap[8];
	blk_ops.config_read(&t->d, BLK_CFG_CAPACITY, cap, 8);
	assert_memory_equal(cap, cfg, 8);

	assert_int_equal(blk_ops.device_id, VIRTIO_ID_BLOCK);
	assert_int_equal(blk_ops.num_queues, 1);
	assert_int_equal(blk_ops.queue_max_size, 256);
	uint64_t f = blk_features(t->b);
	assert_true(f & VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX));
	assert_true(f & VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE));
	assert_true(f & VIRTIO_BIT(VIRTIO_BLK_F_FLUSH));
	assert_false(f & VIRTIO_BIT(VIRTIO_BLK_F_RO));
}

/* The read-only disk says so, and its image is open O_RDONLY. */
static void config_read_only(void **state)
{
	struct t *t = *state;
	assert_true(blk_features(t->b) & VIRTIO_BIT(VIRTIO_BLK_F_RO));
	char want[PATH_MAX], link[64], got[PATH_MAX];
	assert_non_null(realpath(t->path, want));
	int found = 0;
	for (int fd = 0; fd < 1024; fd++) {
		if (fd == t->img)
			continue;
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, got, sizeof(got) - 1);
		if (n < 0)
			continue;
		got[n] = '\0';
		if (strcmp(got, want) != 0)
			continue;
		found++;
		assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	}
	assert_int_equal(found, 1);
}

/* Capacity rounds down; the bytes after the last whole sector stay unreachable. */
static void odd_size(void **state)
{
	struct t *t = *state;
	struct req r;
	uint8_t buf[512];
	assert_int_equal(blk_capacity(t->b), IMAGE_SECTORS);
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_IN, IMAGE_SECTORS - 1, 512, true, NULL),
			 VIRTIO_BLK_S_OK);
	gather(t, &r, buf, 512);
	check_pattern(buf, (IMAGE_SECTORS - 1) * 512ULL, 512);
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_IN, IMAGE_SECTORS, 512, true, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_OUT, IMAGE_SECTORS, 512, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	struct stat st;
	assert_int_equal(fstat(t->img, &st), 0);
	assert_int_equal(st.st_size, IMAGE_SECTORS * 512 + 100);
}

/* ---- reads and writes ---- */

static void read_sectors(void **state)
{
	struct t *t = *state;
	struct req r;
	uint32_t written;
	uint8_t buf[1024];
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_IN, 5, 1024, true, &written), VIRTIO_BLK_S_OK);
	assert_int_equal(written, 1024 + 1);
	gather(t, &r, buf, sizeof(buf));
	check_pattern(buf, 5 * 512, sizeof(buf));
	assert_int_equal(t->d.requests, 1);
	assert_int_equal(t->d.errors, 0);
	assert_int_equal(t->d.interrupts, 1); /* the driver asked for them */
}

/* Any layout: a header split over three buffers, data over odd-sized buffers,
 * the status byte in the same buffer as the last data bytes. */
static void read_any_layout(void **state)
{
	struct t *t = *state;
	static const struct seg segs[] = {
		{3, false}, {12, false}, {1, false}, {700, true}, {1, true}, {300, true}, {24, true},
	};
	uint8_t h[BLK_HDR_LEN], buf[1024];
	hdr(h, VIRTIO_BLK_T_IN, 100);
	struct req r;
	uint32_t written;
	assert_int_equal(do_req(t, &r, segs, 7, h, sizeof(h), &written), VIRTIO_BLK_S_OK);
	assert_int_equal(written, 1025);
	gather(t, &r, buf, 1024);
	check_pattern(buf, 100 * 512, 1024);
}

/* Data over many buffers: the iovecs cover them all. */
static void read_many_buffers(void **state)
{
	struct t *t = *state;
	struct seg segs[40];
	segs[0] = (struct seg){BLK_HDR_LEN, false};
	for (int i = 1; i < 39; i++)
		segs[i] = (struct seg){i % 2 ? 256 : 768, true}; /* 19 * 1024 bytes */
	segs[39] = (struct seg){1, true};
	uint8_t h[BLK_HDR_LEN];
	static uint8_t buf[19 * 1024];
	hdr(h, VIRTIO_BLK_T_IN, 7);
	struct req r;
	uint32_t written;
	assert_int_equal(do_req(t, &r, segs, 40, h, sizeof(h), &written), VIRTIO_BLK_S_OK);
	assert_int_equal(written, sizeof(buf) + 1);
	gather(t, &r, buf, sizeof(buf));
	check_pattern(buf, 7 * 512, sizeof(buf));
}

static void write_then_read(void **state)
{
	struct t *t = *state;
	/* Header and data in one readable buffer, status alone. */
	static const struct seg segs[] = {{BLK_HDR_LEN + 1024, false}, {1, true}};
	uint8_t out[BLK_HDR_LEN + 1024];
	hdr(out, VIRTIO_BLK_T_OUT, 9);
	for (int i = 0; i < 1024; i++)
		out[BLK_HDR_LEN + i] = (uint8_t)(i ^ 0xa5);
	struct req r;
	uint32_t written;
	assert_int_equal(do_req(t, &r, segs, 2, out, sizeof(out), &written), VIRTIO_BLK_S_OK);
	assert_int_equal(written, 1); /* a write returns only the status */

	uint8_t file[512 * 12];
	assert_int_equal(pread(t->img, file, sizeof(file), 0), (ssize_t)sizeof(file));
	assert_memory_equal(file + 9 * 512, out + BLK_HDR_LEN, 1024);
	check_pattern(file, 0, 9 * 512);          /* before: untouched */
	check_pattern(file + 11 * 512, 11 * 512, 512); /* after: untouched */

	/* And the guest reads it back. */
	uint8_t back[1024];
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_IN, 9, 1024, true, NULL), VIRTIO_BLK_S_OK);
	gather(t, &r, back, sizeof(back));
	assert_memory_equal(back, out + BLK_HDR_LEN, 1024);
}

/* The last sector is in range, one past it is not; nothing is written
 * outside the image. */
static void range_checks(void **state)
{
	struct t *t = *state;
	struct req r;
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_OUT, IMAGE_SECTORS - 1, 512, false, NULL),
			 VIRTIO_BLK_S_OK);
	static const uint64_t bad[] = {IMAGE_SECTORS, IMAGE_SECTORS + 1, UINT64_MAX,
				       UINT64_MAX / 512 + 1, 1ULL << 55};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(simple(t, &r, VIRTIO_BLK_T_OUT, bad[i], 512, false, NULL),
				 VIRTIO_BLK_S_IOERR);
		assert_int_equal(simple(t, &r, VIRTIO_BLK_T_IN, bad[i], 512, true, NULL),
				 VIRTIO_BLK_S_IOERR);
	}
	/* Starts inside, ends outside. */
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_OUT, IMAGE_SECTORS - 1, 1024, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_IN, IMAGE_SECTORS - 1, 1024, true, NULL),
			 VIRTIO_BLK_S_IOERR);
	struct stat st;
	assert_int_equal(fstat(t->img, &st), 0);
	assert_int_equal(st.st_size, IMAGE_SECTORS * 512);
	assert_int_equal(t->d.errors, 12);
}

static void misaligned(void **state)
{
	struct t *t = *state;
	struct req r;
	static const uint32_t lens[] = {1, 511, 513, 1000};
	for (unsigned i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		assert_int_equal(simple(t, &r, VIRTIO_BLK_T_IN, 0, lens[i], true, NULL),
				 VIRTIO_BLK_S_IOERR);
		assert_int_equal(simple(t, &r, VIRTIO_BLK_T_OUT, 0, lens[i], false, NULL),
				 VIRTIO_BLK_S_IOERR);
	}
	uint8_t file[1024];
	assert_int_equal(pread(t->img, file, sizeof(file), 0), (ssize_t)sizeof(file));
	check_pattern(file, 0, sizeof(file));
}

/* Data in the wrong direction: a read with bytes after the header, a write
 * with writable bytes before the status. */
static void wrong_direction(void **state)
{
	struct t *t = *state;
	struct req r;
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_IN, 0, 512, false, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_OUT, 0, 512, true, NULL), VIRTIO_BLK_S_IOERR);
	uint8_t file[512];
	assert_int_equal(pread(t->img, file, sizeof(file), 0), (ssize_t)sizeof(file));
	check_pattern(file, 0, sizeof(file));
}

/* No data: nothing to do, OK. */
static void zero_length(void **state)
{
	struct t *t = *state;
	struct req r;
	uint32_t written;
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_IN, 3, 0, true, &written), VIRTIO_BLK_S_OK);
	assert_int_equal(written, 1);
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_OUT, IMAGE_SECTORS, 0, false, NULL),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_IN, IMAGE_SECTORS + 1, 0, true, NULL),
			 VIRTIO_BLK_S_IOERR);
}

static void read_only_write_fails(void **state)
{
	struct t *t = *state;
	struct req r;
	uint8_t buf[512];
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_OUT, 0, 512, false, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(pread(t->img, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	check_pattern(buf, 0, sizeof(buf));
	/* Reads and flushes still work. */
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_IN, 0, 512, true, NULL), VIRTIO_BLK_S_OK);
	gather(t, &r, buf, sizeof(buf));
	check_pattern(buf, 0, sizeof(buf));
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_FLUSH, 0, 0, true, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(t->d.errors, 1);
}

/* ---- flush ---- */

/* Whether the page-cache page holding byte off of fd is dirty (or under
 * writeback): through a mapping, /proc/self/pagemap and /proc/kpageflags.
 * -1 when the host does not let us look (not root, no PFNs). */
static int page_dirty(int fd, uint64_t off)
{
	long ps = sysconf(_SC_PAGESIZE);
	uint8_t *p = mmap(NULL, (size_t)ps, PROT_READ, MAP_SHARED, fd, (off_t)(off & ~(uint64_t)(ps - 1)));
	if (p == MAP_FAILED)
		return -1;
	volatile uint8_t touch = p[0];
	(void)touch;
	int r = -1;
	uint64_t pm, flags;
	int pmfd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	int kfd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	if (pmfd >= 0 && kfd >= 0 &&
	    pread(pmfd, &pm, 8, (off_t)((uintptr_t)p / (uint64_t)ps * 8)) == 8 &&
	    (pm >> 63) && (pm & ((1ULL << 55) - 1)) &&
	    pread(kfd, &flags, 8, (off_t)((pm & ((1ULL << 55) - 1)) * 8)) == 8)
		r = (flags >> 4 & 1) || (flags >> 8 & 1); /* KPF_DIRTY, KPF_WRITEBACK */
	if (pmfd >= 0)
		close(pmfd);
	if (kfd >= 0)
		close(kfd);
	munmap(p, (size_t)ps);
	return r;
}

/* A flush is answered only after fdatasync made the written data stable: the
 * page the write dirtied is clean once the flush completes, and the flush is
 * not answered before its completion is reaped. */
static void flush_syncs(void **state)
{
	struct t *t = *state;
	struct req r;
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_OUT, 16, 512, false, NULL), VIRTIO_BLK_S_OK);
	int dirty = page_dirty(t->img, 16 * 512);
	if (dirty < 0)
		skip(); /* needs root for PFNs */
	if (dirty == 0)
		skip(); /* written back already, or not page-cache backed: nothing to see */

	static const struct seg segs[] = {{BLK_HDR_LEN, false}, {1, true}};
	uint8_t h[BLK_HDR_LEN];
	hdr(h, VIRTIO_BLK_T_FLUSH, 0);
	prepare(t, &r, segs, 2, h, sizeof(h));
	make_available(t, &r);
	uint16_t before = used_idx(t);
	notify(t);
	assert_int_equal(used_idx(t), before); /* not answered on the spot */
	assert_int_equal(status_of(t, &r), 0xee);
	run_until(t, t->avail_idx);
	assert_int_equal(status_of(t, &r), VIRTIO_BLK_S_OK);
	assert_int_equal(page_dirty(t->img, 16 * 512), 0);
}

/* A driver without FLUSH cannot ask for one: each write is stable when it is
 * answered (write-through). */
static void write_through_without_flush(void **state)
{
	struct t *t = *state;
	struct req r;
	start_dev_features(t, VIRTIO_BIT(VIRTIO_BLK_F_FLUSH));
	/* The image's pages are dirty from make_image; make them clean first. */
	assert_int_equal(fdatasync(t->img), 0);
	int dirty = page_dirty(t->img, 16 * 512);
	if (dirty < 0)
		skip(); /* needs root for PFNs */
	assert_int_equal(dirty, 0);
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_OUT, 16, 512, false, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(page_dirty(t->img, 16 * 512), 0);
}

/* With FLUSH accepted the same write leaves a dirty page for the flush: the
 * check above sees a difference. */
static void write_back_with_flush(void **state)
{
	struct t *t = *state;
	struct req r;
	assert_int_equal(fdatasync(t->img), 0);
	if (page_dirty(t->img, 16 * 512) < 0)
		skip();
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_OUT, 16, 512, false, NULL), VIRTIO_BLK_S_OK);
	int dirty = page_dirty(t->img, 16 * 512);
	if (dirty == 0)
		skip(); /* written back already by the host: nothing to compare */
	assert_int_equal(dirty, 1);
}

static void flush_shape(void **state)
{
	struct t *t = *state;
	struct req r;
	uint32_t written;
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_FLUSH, 12345, 0, true, &written),
			 VIRTIO_BLK_S_OK); /* the sector is ignored */
	assert_int_equal(written, 1);
	/* A flush carries no data. */
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_FLUSH, 0, 512, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_FLUSH, 0, 512, true, NULL),
			 VIRTIO_BLK_S_IOERR);
}

/* ---- GET_ID ---- */

static uint8_t get_id(struct t *t, struct req *r, uint32_t buf_len, uint8_t *id,
		      uint32_t *written)
{
	assert_int_equal(simple(t, r, VIRTIO_BLK_T_GET_ID, 0, buf_len, true, written),
			 VIRTIO_BLK_S_OK);
	gather(t, r, id, buf_len);
	return 0;
}

/* Without a serial, the drive id, NUL-padded to 20 bytes and not beyond. */
static void get_id_drive_id(void **state)
{
	struct t *t = *state;
	struct req r;
	uint8_t id[32];
	uint32_t written;
	get_id(t, &r, 32, id, &written);
	assert_int_equal(written, 20 + 1);
	uint8_t want[20] = "rootfs";
	assert_memory_equal(id, want, 20);
	for (int i = 20; i < 32; i++)
		assert_int_equal(id[i], 0xee);
}

static void get_id_serial(void **state)
{
	struct t *t = *state;
	struct req r;
	uint8_t id[20];
	uint32_t written;
	t->cfg.serial = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"; /* 26: cut at 20, no terminator */
	start_dev(t);
	get_id(t, &r, 20, id, &written);
	assert_int_equal(written, 21);
	assert_memory_equal(id, "ABCDEFGHIJKLMNOPQRST", 20);
	/* A short buffer gets what fits. */
	get_id(t, &r, 4, id, &written);
	assert_int_equal(written, 5);
	assert_memory_equal(id, "ABCD", 4);
	/* No room at all is malformed. */
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_GET_ID, 0, 0, true, NULL),
			 VIRTIO_BLK_S_IOERR);
}

/* ---- malformed requests ---- */

static void unknown_types(void **state)
{
	struct t *t = *state;
	struct req r;
	/* SCSI, discard, write zeroes, secure erase, get lifetime, nonsense */
	static const uint32_t types[] = {2, 3, 5, 11, 13, 14, 10, 0x80000000, UINT32_MAX};
	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		uint32_t written;
		assert_int_equal(simple(t, &r, types[i], 0, 512, true, &written),
				 VIRTIO_BLK_S_UNSUPP);
		assert_int_equal(written, 1);
	}
	assert_int_equal(t->d.status & VIRTIO_STATUS_NEEDS_RESET, 0);
}

static void short_header(void **state)
{
	struct t *t = *state;
	static const struct seg segs[] = {{8, false}, {7, false}, {512, true}, {1, true}};
	uint8_t h[15];
	memset(h, 0, sizeof(h)); /* an IN of sector 0, one byte short */
	struct req r;
	assert_int_equal(do_req(t, &r, segs, 4, h, sizeof(h), NULL), VIRTIO_BLK_S_IOERR);
	/* No header at all: only writable buffers. */
	static const struct seg w_only[] = {{512, true}, {1, true}};
	assert_int_equal(do_req(t, &r, w_only, 2, NULL, 0, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(t->d.status & VIRTIO_STATUS_NEEDS_RESET, 0);
}

/* Without a writable byte the device cannot answer: NEEDS_RESET, and it
 * stops taking requests. */
static void missing_status(void **state)
{
	struct t *t = *state;
	static const struct seg segs[] = {{BLK_HDR_LEN, false}, {512, false}};
	uint8_t out[BLK_HDR_LEN + 512] = {0};
	hdr(out, VIRTIO_BLK_T_OUT, 0);
	struct req r;
	prepare(t, &r, segs, 2, out, sizeof(out));
	make_available(t, &r);
	notify(t);
	assert_true(t->d.status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(used_idx(t), 0);
	/* A good request behind it waits for the reset. */
	static const struct seg ok[] = {{BLK_HDR_LEN, false}, {1, true}};
	hdr(out, VIRTIO_BLK_T_FLUSH, 0);
	prepare(t, &r, ok, 2, out, BLK_HDR_LEN);
	make_available(t, &r);
	notify(t);
	assert_int_equal(poll_dev(t), 0);
	assert_int_equal(used_idx(t), 0);
}

/* A chain the virtqueue core refuses (a loop) puts the device in NEEDS_RESET. */
static void broken_queue(void **state)
{
	struct t *t = *state;
	put_desc(t, 0, DATA, 16, VQ_DESC_F_NEXT, 1);
	put_desc(t, 1, DATA, 16, VQ_DESC_F_NEXT, 0);
	set16(gp(t, AVAIL + 4, 2), 0);
	set16(gp(t, AVAIL + 2, 2), 1);
	notify(t);
	assert_true(t->d.status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(used_idx(t), 0);
}

/* blk_parse alone, on chains made by hand. */
static void parse_alone(void **state)
{
	(void)state;
	uint8_t h1[5], h2[11], data[1024], st[1];
	uint8_t h[BLK_HDR_LEN];
	hdr(h, VIRTIO_BLK_T_IN, 0x123456789ULL);
	memcpy(h1, h, 5);
	memcpy(h2, h + 5, 11);
	struct vq_buf bufs[] = {
		{.hva = h1, .len = 5}, {.hva = h2, .len = 11},
		{.hva = data, .len = 1024, .writable = true}, {.hva = st, .len = 1, .writable = true},
	};
	struct vq_chain c = {.nr = 4, .nr_readable = 2, .readable_len = 16, .writable_len = 1025,
			     .cap = 4, .buf = bufs};
	struct blk_limits lim = {.capacity = 0x123456789ULL + 2};
	struct blk_req r;
	assert_int_equal(blk_parse(&c, &lim, &r), 0);
	assert_int_equal(r.status, VIRTIO_BLK_S_OK);
	assert_int_equal(r.type, VIRTIO_BLK_T_IN);
	assert_int_equal(r.sector, 0x123456789ULL);
	assert_int_equal(r.offset, 0x123456789ULL * 512);
	assert_int_equal(r.data_len, 1024);
	assert_ptr_equal(r.status_ptr, st);
	struct iovec iov[4];
	assert_int_equal(blk_data_iov(&c, &r, iov, 4), 1);
	assert_ptr_equal(iov[0].iov_base, data);
	assert_int_equal(iov[0].iov_len, 1024);

	lim.capacity--; /* the last sector falls outside */
	assert_int_equal(blk_parse(&c, &lim, &r), 0);
	assert_int_equal(r.status, VIRTIO_BLK_S_IOERR);

	c.nr = 2; /* no writable byte: nowhere to answer */
	c.writable_len = 0;
	assert_int_equal(blk_parse(&c, &lim, &r), -1);
	c.nr = 0;
	c.nr_readable = 0;
	c.readable_len = 0;
	assert_int_equal(blk_parse(&c, &lim, &r), -1);
}

/* ---- several in flight, reset, a shrinking image ---- */

static void many_in_flight(void **state)
{
	struct t *t = *state;
	enum { N = 32 };
	static struct seg segs[N][3];
	struct req r[N];
	for (int i = 0; i < N; i++) {
		uint8_t h[BLK_HDR_LEN];
		hdr(h, VIRTIO_BLK_T_IN, (uint64_t)i * 8);
		segs[i][0] = (struct seg){BLK_HDR_LEN, false};
		segs[i][1] = (struct seg){4096, true};
		segs[i][2] = (struct seg){1, true};
		prepare(t, &r[i], segs[i], 3, h, sizeof(h));
		make_available(t, &r[i]);
	}
	run_until(t, N);
	uint8_t buf[4096];
	for (int i = 0; i < N; i++) {
		assert_int_equal(status_of(t, &r[i]), VIRTIO_BLK_S_OK);
		gather(t, &r[i], buf, sizeof(buf));
		check_pattern(buf, (uint64_t)i * 4096, sizeof(buf));
	}
	assert_int_equal(t->d.requests, N);
}

/* ---- snapshots ----
 * Nothing may be in flight in a snapshot: quiesce waits for io_uring and answers
 * every request (status, used entry) before save writes anything; the device's
 * bytes (the capacity the guest saw) restore onto a fresh device, and a
 * different image size is refused. */
static void snapshot_drains_in_flight(void **state)
{
	struct t *t = *state;
	enum { N = 16 };
	static struct seg segs[N][3];
	struct req r[N];
	for (int i = 0; i < N; i++) {
		uint8_t h[BLK_HDR_LEN];
		hdr(h, VIRTIO_BLK_T_IN, (uint64_t)i * 8);
		segs[i][0] = (struct seg){BLK_HDR_LEN, false};
		segs[i][1] = (struct seg){4096, true};
		segs[i][2] = (struct seg){1, true};
		prepare(t, &r[i], segs[i], 3, h, sizeof(h));
		make_available(t, &r[i]);
	}
	notify(t); /* submitted, not reaped: the test plays no event thread */
	assert_int_equal(used_idx(t), 0);
	struct kite_err err = {0};
	struct snap_writer w;
	snapw_init(&w);
	snapw_begin(&w, "VIRT", 0);
	pthread_mutex_lock(&t->d.lock);
	blk_ops.quiesce(&t->d);
	assert_int_equal(t->d.queues[0].vq.inflight, 0);
	assert_int_equal(blk_ops.save(&t->d, &w, &err), 0);
	pthread_mutex_unlock(&t->d.lock);
	snapw_end(&w);
	assert_int_equal(used_idx(t), N);
	uint8_t buf[4096];
	for (int i = 0; i < N; i++) {
		assert_int_equal(status_of(t, &r[i]), VIRTIO_BLK_S_OK);
		gather(t, &r[i], buf, sizeof(buf));
		check_pattern(buf, (uint64_t)i * 4096, sizeof(buf));
	}
	struct snap_reader rd;
	snap_test_reopen(&w, &rd);

	/* A fresh device on the same image takes it; on a grown one, not. */
	struct blk *b2 = blk_open(&t->cfg, &err);
	assert_non_null(b2);
	struct virtio_dev d2 = {.ops = &blk_ops, .priv = b2};
	snprintf(d2.name, sizeof(d2.name), "virtio-blk0");
	blk_attach(b2, &d2);
	struct snap_cursor c;
	assert_true(snapr_find(&rd, "VIRT", 0, &c));
	assert_int_equal(blk_ops.restore(&d2, &c, &err), 0);
	assert_true(snapc_done(&c));
	blk_free(b2);
	assert_int_equal(ftruncate(t->img, (IMAGE_SECTORS + 8) * 512), 0);
	b2 = blk_open(&t->cfg, &err);
	assert_non_null(b2);
	d2.priv = b2;
	blk_attach(b2, &d2);
	assert_true(snapr_find(&rd, "VIRT", 0, &c));
	assert_int_equal(blk_ops.restore(&d2, &c, &err), -1);
	assert_image_err(&err);
	assert_non_null(strstr(err.msg, "sectors"));
	blk_free(b2);
	snapr_free(&rd);
}

/* Reset waits for the I/O in flight (it points into guest memory) and
 * answers none of it; the device works again after the transport re-inits. */
static void reset_waits(void **state)
{
	struct t *t = *state;
	enum { N = 8 };
	static struct seg segs[3] = {{BLK_HDR_LEN, false}, {65536, true}, {1, true}};
	struct req r[N];
	for (int i = 0; i < N; i++) {
		uint8_t h[BLK_HDR_LEN];
		hdr(h, VIRTIO_BLK_T_IN, (uint64_t)i * 128);
		prepare(t, &r[i], segs, 3, h, sizeof(h));
		make_available(t, &r[i]);
	}
	notify(t);
	reset(t);
	assert_int_equal(poll_dev(t), 0); /* nothing left in flight */
	assert_int_equal(used_idx(t), 0);

	/* What the transport does on reset, then the driver starts over. */
	struct virtio_queue *q = &t->d.queues[0];
	vq_reset(&q->vq);
	memset(gp(t, USED, 4 + 8 * QSIZE + 2), 0, 4 + 8 * QSIZE + 2);
	t->avail_idx = 0;
	set16(gp(t, AVAIL + 2, 2), 0);
	struct vq_config qc = {.size = QSIZE, .desc = DESC, .avail = AVAIL, .used = USED};
	assert_int_equal(vq_init(&q->vq, &t->m, &qc), 0);
	pthread_mutex_lock(&t->d.lock);
	assert_int_equal(blk_ops.activate(&t->d), 0);
	pthread_mutex_unlock(&t->d.lock);
	struct req again;
	uint8_t buf[512];
	assert_int_equal(simple(t, &again, VIRTIO_BLK_T_IN, 3, 512, true, NULL), VIRTIO_BLK_S_OK);
	gather(t, &again, buf, sizeof(buf));
	check_pattern(buf, 3 * 512, sizeof(buf));
}

/* The image shrinks under a running device: a read across the new end comes
 * back short, then empty: IOERR, not stale bytes or a hang. */
static void image_shrinks(void **state)
{
	struct t *t = *state;
	struct req r;
	assert_int_equal(ftruncate(t->img, 10 * 512 + 256), 0);
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_IN, 8, 4096, true, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_IN, 20, 512, true, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(simple(t, &r, VIRTIO_BLK_T_IN, 9, 512, true, NULL), VIRTIO_BLK_S_OK);
}

/* ---- opening images ---- */

static void open_expect(struct t *t, const char *path, const char *why)
{
	struct kite_err err = {0};
	t->cfg.path = path;
	assert_null(blk_open(&t->cfg, &err));
	assert_int_equal(err.code, KITE_EXIT_IMAGE);
	char want[512];
	snprintf(want, sizeof(want), "disk 'rootfs' ('%s'): %s", path, why);
	assert_string_equal(err.msg, want);
}

static void open_errors(void **state)
{
	struct t *t = *state;
	open_expect(t, "/nonexistent/kite.img", strerror(ENOENT));
	open_expect(t, "/var/tmp", strerror(EISDIR));
	t->cfg.read_only = true; /* O_RDONLY opens a directory: still refused */
	open_expect(t, "/var/tmp", strerror(EISDIR));
	open_expect(t, "/dev/null", "not a regular file or block device");

	char fifo[sizeof(t->path) + 8];
	snprintf(fifo, sizeof(fifo), "%s.fifo", t->path);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	open_expect(t, fifo, "not a regular file or block device"); /* and no hang */
	unlink(fifo);
	t->cfg.read_only = false;

	if (geteuid() != 0) {
		assert_int_equal(chmod(t->path, 0400), 0);
		open_expect(t, t->path, strerror(EACCES));
		t->cfg.read_only = true;
		t->cfg.path = t->path;
		struct kite_err err = {0};
		struct blk *b = blk_open(&t->cfg, &err);
		assert_non_null(b);
		blk_free(b);
	}
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(config_space),
		cmocka_unit_test_setup_teardown(config_read_only, setup_ro, teardown),
		cmocka_unit_test_setup_teardown(odd_size, setup_odd, teardown),
		T(read_sectors),
		cmocka_unit_test_setup_teardown(rate_limited_reads, setup_nodev, teardown),
		T(read_any_layout),
		T(read_many_buffers),
		T(write_then_read),
		T(range_checks),
		T(misaligned),
		T(wrong_direction),
		T(zero_length),
		cmocka_unit_test_setup_teardown(read_only_write_fails, setup_ro, teardown),
		T(flush_syncs),
		T(flush_shape),
		cmocka_unit_test_setup_teardown(write_through_without_flush, setup_nodev, teardown),
		T(write_back_with_flush),
		T(get_id_drive_id),
		cmocka_unit_test_setup_teardown(get_id_serial, setup_nodev, teardown),
		T(unknown_types),
		T(short_header),
		T(missing_status),
		T(broken_queue),
		cmocka_unit_test(parse_alone),
		T(many_in_flight),
		T(snapshot_drains_in_flight),
		T(reset_waits),
		T(image_shrinks),
		cmocka_unit_test_setup_teardown(open_errors, setup_nodev, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
