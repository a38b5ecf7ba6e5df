/* virtio-balloon: inflate gives guest pages back to the host, deflate only
 * consumes (anonymous memory faults back in), stats are polled Firecracker's
 * way (the device holds the driver's one stats buffer and returns it every
 * interval). See balloon.h. */
#include "virtio/balloon.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "devices/device.h"
#include "snapshot/snapfile.h"
#include "virtio/virtio.h"
#include "vmm/vm.h"

#define BALLOON_QUEUE_SIZE 256
#define BALLOON_CONFIG_LEN 8 /* le32 num_pages, le32 actual */
/* Stats entries read from one buffer: Linux sends 10 (6.1) to 16 (6.12). */
#define BALLOON_MAX_STAT_ENTRIES 64

struct balloon {
	/* Set at creation, fixed for the device's life: statistics cannot be
	 * switched on or off after boot (the stats queue exists or not). */
	bool stats_enabled;
	bool deflate_on_oom;

	uint32_t num_pages;        /* host's target, config space */
	uint32_t actual;           /* driver-written, config space */
	uint32_t stats_interval_s; /* > 0 iff stats_enabled */

	int timer_fd;              /* stats polling; -1 without statistics */
	bool timer_watched;
	bool stats_held;           /* the driver's stats buffer is ours */
	uint16_t stats_head;
	struct balloon_stats stats;

	struct vq_chain chain;
	uint32_t pfns[BALLOON_MAX_PFNS_PER_CHAIN];

	/* Counters, under d->lock. */
	struct balloon_release released;
	uint64_t deflated_pages;
	bool warned_invalid, warned_long, warned_madvise;
};

static const char *const stat_names[BALLOON_S_NR] = {
	[BALLOON_S_SWAP_IN] = "swap_in",
	[BALLOON_S_SWAP_OUT] = "swap_out",
	[BALLOON_S_MAJFLT] = "major_faults",
	[BALLOON_S_MINFLT] = "minor_faults",
	[BALLOON_S_MEMFREE] = "free_memory",
	[BALLOON_S_MEMTOT] = "total_memory",
	[BALLOON_S_AVAIL] = "available_memory",
	[BALLOON_S_CACHES] = "disk_caches",
	[BALLOON_S_HTLB_PGALLOC] = "hugetlb_allocations",
	[BALLOON_S_HTLB_PGFAIL] = "hugetlb_failures",
};

const char *balloon_stat_name(unsigned tag)
{
	return tag < BALLOON_S_NR ? stat_names[tag] : NULL;
}

/* ---- the core: releasing pages, parsing stats ---- */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

static void release_run(uint8_t *hva, uint64_t pages, struct balloon_release *r)
{
	r->runs++;
	if (madvise(hva, pages << BALLOON_PAGE_SHIFT, MADV_DONTNEED) == 0)
		r->pages += pages;
	else
		r->failed += pages;
}

void balloon_release_pfns(const struct gmem *m, uint32_t *pfns, size_t n, struct balloon_release *r)
{
	if (n == 0)
		return;
	/* Drivers send pages in allocation order; sorted, neighbours coalesce. */
	qsort(pfns, n, sizeof(*pfns), cmp_u32);
	uint8_t *run = NULL; /* host address of the run's first page */
	uint64_t run_pages = 0;
	uint32_t last = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t pfn = pfns[i];
		if (run_pages && pfn == last)
			continue; /* a duplicate of the page just taken */
		uint8_t *hva = gmem_ptr(m, (uint64_t)pfn << BALLOON_PAGE_SHIFT, BALLOON_PAGE_SIZE);
		if (!hva) {
			/* Outside RAM (the MMIO hole, past the end): nothing of the
			 * host's to give back. */
			r->invalid++;
			continue;
		}
		/* Contiguous in guest-physical and in host memory: one madvise.
		 * The RAM regions either side of the MMIO hole are never
		 * guest-physical neighbours, so a run stays inside one region. */
		if (run_pages && pfn == last + 1 && hva == run + (run_pages << BALLOON_PAGE_SHIFT)) {
			run_pages++;
		} else {
			if (run_pages)
				release_run(run, run_pages, r);
			run = hva;
			run_pages = 1;
		}
		last = pfn;
	}
	if (run_pages)
		release_run(run, run_pages, r);
}

unsigned balloon_stats_parse(struct balloon_stats *s, const uint8_t *buf, size_t len)
{
	unsigned taken = 0;
	for (size_t off = 0; len - off >= BALLOON_STAT_ENTRY_SIZE; off += BALLOON_STAT_ENTRY_SIZE) {
		uint16_t tag;
		uint64_t val;
		memcpy(&tag, buf + off, sizeof(tag));
		memcpy(&val, buf + off + 2, sizeof(val));
		tag = le16toh(tag);
		/* Newer drivers report more tags (OOM kills, reclaim, ...):
		 * not part of Firecracker's statistics, skipped. */
		if (tag >= BALLOON_S_NR)
			continue;
		s->value[tag] = le64toh(val);
		s->present |= 1u << tag;
		taken++;
	}
	return taken;
}

/* ---- the device ---- */

static void cfg_bytes(const struct balloon *b, uint8_t out[BALLOON_CONFIG_LEN])
{
	uint32_t np = htole32(b->num_pages), act = htole32(b->actual);
	memcpy(out, &np, 4);
	memcpy(out + 4, &act, 4);
}

static void balloon_config_read(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
	uint8_t cfg[BALLOON_CONFIG_LEN];
	cfg_bytes(d->priv, cfg);
	if (off < sizeof(cfg) && len <= sizeof(cfg) - off)
		memcpy(data, cfg + off, len);
	else
		memset(data, 0, len);
}

/* Only `actual` is the driver's to write; bytes of num_pages are ignored, so
 * a write straddling both fields still updates its actual part. */
static void balloon_config_write(struct virtio_dev *d, uint32_t off, const uint8_t *data, uint32_t len)
{
	struct balloon *b = d->priv;
	uint8_t cfg[BALLOON_CONFIG_LEN];
	cfg_bytes(b, cfg);
	for (uint32_t i = 0; i < len; i++) {
		uint64_t pos = (uint64_t)off + i;
		if (pos >= sizeof(cfg))
			break;
		if (pos >= 4)
			cfg[pos] = data[i];
	}
	uint32_t act;
	memcpy(&act, cfg + 4, 4);
	b->actual = le32toh(act);
}

/* The PFN array of one inflate/deflate chain into b->pfns; how many, or -1
 * when the chain is longer than any driver sends. */
static long chain_pfns(struct virtio_dev *d, struct balloon *b)
{
	uint32_t n = b->chain.readable_len / sizeof(uint32_t);
	if (n > BALLOON_MAX_PFNS_PER_CHAIN) {
		if (!b->warned_long)
			log_warn("%s: a chain of %u page numbers (at most %u): ignored", d->name, n,
				 BALLOON_MAX_PFNS_PER_CHAIN);
		b->warned_long = true;
		return -1;
	}
	/* Copy out first: the guest may change the array while we work on it. */
	size_t got = vq_chain_read(&b->chain, 0, b->pfns, (size_t)n * sizeof(uint32_t));
	n = (uint32_t)(got / sizeof(uint32_t));
	for (uint32_t i = 0; i < n; i++)
		b->pfns[i] = le32toh(b->pfns[i]);
	return n;
}

static void process_pfn_queue(struct virtio_dev *d, struct balloon *b, struct vq *vq, unsigned q)
{
	bool pushed = false;
	for (;;) {
		int r = vq_pop(vq, &b->chain);
		if (r == VQ_EMPTY)
			break;
		if (r < 0) {
			virtio_dev_needs_reset(d, "%s queue: %s",
					       q == BALLOON_Q_INFLATE ? "inflate" : "deflate", vq_strerror(r));
			return;
		}
		d->requests++;
		long n = chain_pfns(d, b);
		if (n < 0) {
			d->errors++;
		} else if (q == BALLOON_Q_INFLATE) {
			uint64_t invalid = b->released.invalid, failed = b->released.failed;
			balloon_release_pfns(&d->vm->mem, b->pfns, (size_t)n, &b->released);
			if (b->released.invalid != invalid || b->released.failed != failed) {
				d->errors++;
				if (!b->warned_invalid)
					log_warn("%s: inflate named pages outside guest RAM or madvise failed: skipped",
						 d->name);
				b->warned_invalid = true;
			}
		} else {
			/* Nothing to do: the pages fault back in on the guest's touch. */
			b->deflated_pages += (uint64_t)n;
		}
		if (vq_push(vq, b->chain.head, 0) < 0) {
			virtio_dev_needs_reset(d, "balloon queue %u: push failed", q);
			return;
		}
		pushed = true;
	}
	if (pushed)
		virtio_dev_signal(d, q);
}

/* A new stats buffer: take its numbers and keep it until the next poll. */
static void process_stats_queue(struct virtio_dev *d, struct balloon *b, struct vq *vq)
{
	for (;;) {
		int r = vq_pop(vq, &b->chain);
		if (r == VQ_EMPTY)
			break;
		if (r < 0) {
			virtio_dev_needs_reset(d, "stats queue: %s", vq_strerror(r));
			return;
		}
		d->requests++;
		if (b->stats_held) {
			/* The driver keeps one buffer in flight; an extra one
			 * replaces the old, which goes back unused. */
			d->errors++;
			if (vq_push(vq, b->stats_head, 0) < 0) {
				virtio_dev_needs_reset(d, "stats queue: push failed");
				return;
			}
			virtio_dev_signal(d, BALLOON_Q_STATS);
		}
		uint8_t buf[BALLOON_MAX_STAT_ENTRIES * BALLOON_STAT_ENTRY_SIZE];
		size_t len = vq_chain_read(&b->chain, 0, buf, sizeof(buf));
		balloon_stats_parse(&b->stats, buf, len);
		b->stats_head = b->chain.head;
		b->stats_held = true;
	}
}

/* Poll time: hand the buffer back so the driver refills it. */
void balloon_stats_tick(struct virtio_dev *d)
{
	struct balloon *b = d->priv;
	struct vq *vq = virtio_dev_queue(d, BALLOON_Q_STATS);
	if (!vq || !b->stats_held)
		return;
	b->stats_held = false;
	if (vq_push(vq, b->stats_head, 0) < 0) {
		virtio_dev_needs_reset(d, "stats queue: push failed");
		return;
	}
	virtio_dev_signal(d, BALLOON_Q_STATS);
}

static void stats_timer_fired(struct virtio_dev *d, void *ctx, uint32_t events)
{
	struct balloon *b = ctx;
	(void)events;
	uint64_t expirations;
	if (read(b->timer_fd, &expirations, sizeof(expirations)) < 0)
		return; /* EAGAIN: a re-arm raced with this wake-up */
	balloon_stats_tick(d);
}

int balloon_stats_timer_fd(const struct virtio_dev *d)
{
	const struct balloon *b = d->priv;
	return b->timer_fd;
}

/* Every interval, the first expiry after `first_ns` (>= 1). */
static int arm_timer(struct balloon *b, uint64_t first_ns)
{
	struct itimerspec its = {
		.it_interval = {.tv_sec = b->stats_interval_s},
		.it_value = {.tv_sec = (time_t)(first_ns / 1000000000u),
			     .tv_nsec = (long)(first_ns % 1000000000u)},
	};
	return timerfd_settime(b->timer_fd, 0, &its, NULL);
}

static void stop_timer(struct virtio_dev *d, struct balloon *b)
{
	if (b->timer_fd < 0)
		return;
	struct itimerspec off = {0};
	timerfd_settime(b->timer_fd, 0, &off, NULL);
	if (b->timer_watched)
		virtio_dev_unwatch(d, b->timer_fd);
	b->timer_watched = false;
}

static bool stats_running(struct virtio_dev *d, struct balloon *b)
{
	return b->stats_enabled && virtio_has_feature(d, VIRTIO_BALLOON_F_STATS_VQ) &&
	       virtio_dev_queue(d, BALLOON_Q_STATS);
}

static int balloon_activate(struct virtio_dev *d)
{
	struct balloon *b = d->priv;
	if (!stats_running(d, b))
		return 0;
	if (arm_timer(b, (uint64_t)b->stats_interval_s * 1000000000u) < 0 ||
	    virtio_dev_watch(d, b->timer_fd, EPOLLIN, stats_timer_fired, b) < 0) {
		log_error("%s: stats timer: %s", d->name, strerror(errno));
		stop_timer(d, b);
		return -1;
	}
	b->timer_watched = true;
	return 0;
}

static void balloon_notify(struct virtio_dev *d, unsigned q)
{
	struct balloon *b = d->priv;
	struct vq *vq = virtio_dev_queue(d, q);
	if (!vq)
		return;
	if (q == BALLOON_Q_INFLATE || q == BALLOON_Q_DEFLATE)
		process_pfn_queue(d, b, vq, q);
	else if (q == BALLOON_Q_STATS && stats_running(d, b))
		process_stats_queue(d, b, vq);
}

static void balloon_reset(struct virtio_dev *d)
{
	struct balloon *b = d->priv;
	stop_timer(d, b);
	b->stats_held = false;
	/* A fresh driver starts with an empty balloon: every page is the
	 * guest's again (released ones fault back in). */
	b->actual = 0;
}

void balloon_free(struct balloon *b)
{
	if (!b)
		return;
	if (b->timer_fd >= 0)
		close(b->timer_fd);
	vq_chain_free(&b->chain);
	free(b);
}

static void balloon_destroy(struct virtio_dev *d)
{
	balloon_free(d->priv);
	d->priv = NULL;
}

/* ---- snapshots ----
 * Inflate and deflate chains are answered as they are read, so only the stats
 * buffer can be in flight: the device holds it between polls, and keeps holding
 * it across a snapshot (its head is saved, the stats queue's position counts
 * it in flight). The device's own bytes:
 *   u32 num_pages (target), u32 actual, u32 stats_interval_s,
 *   u8 stats_held, u16 stats_head, u32 stats present mask, u64 value[10]. */
static int balloon_save(struct virtio_dev *d, struct snap_writer *w, struct kite_err *err)
{
	struct balloon *b = d->priv;
	if (virtio_dev_check_idle(d, 1u << BALLOON_Q_STATS, KITE_EXIT_ERROR, err) < 0)
		return -1;
	snapw_u32(w, b->num_pages);
	snapw_u32(w, b->actual);
	snapw_u32(w, b->stats_interval_s);
	snapw_u8(w, b->stats_held);
	snapw_u16(w, b->stats_head);
	snapw_u32(w, b->stats.present);
	for (unsigned t = 0; t < BALLOON_S_NR; t++)
		snapw_u64(w, b->stats.value[t]);
	return 0;
}

static int balloon_restore(struct virtio_dev *d, struct snap_cursor *c, struct kite_err *err)
{
	struct balloon *b = d->priv;
	uint32_t num_pages = snapc_u32(c), actual = snapc_u32(c), interval = snapc_u32(c);
	uint8_t held = snapc_u8(c);
	uint16_t head = snapc_u16(c);
	uint32_t present = snapc_u32(c);
	uint64_t value[BALLOON_S_NR];
	for (unsigned t = 0; t < BALLOON_S_NR; t++)
		value[t] = snapc_u64(c);
	if (c->bad)
		return err_set(err, KITE_EXIT_IMAGE, "%s: balloon state is short", d->name);
	if (num_pages % BALLOON_PAGES_PER_MIB || num_pages / BALLOON_PAGES_PER_MIB > BALLOON_MAX_MIB)
		return err_set(err, KITE_EXIT_IMAGE, "%s: target of %u pages is not a whole number of MiB", d->name,
			       num_pages);
	if ((interval > 0) != b->stats_enabled)
		return err_set(err, KITE_EXIT_IMAGE, "%s: statistics every %u s in the snapshot, but they are %s here",
			       d->name, interval, b->stats_enabled ? "on" : "off");
	if (held > 1)
		return err_set(err, KITE_EXIT_IMAGE, "%s: stats buffer flag %u is not 0 or 1", d->name, held);
	if (present >> BALLOON_S_NR)
		return err_set(err, KITE_EXIT_IMAGE, "%s: statistics mask %#x has unknown tags", d->name, present);
	if (virtio_dev_check_idle(d, 1u << BALLOON_Q_STATS, KITE_EXIT_IMAGE, err) < 0)
		return -1;
	/* The stats queue holds exactly the buffer the device keeps, if any. */
	struct vq *sq = b->stats_enabled ? virtio_dev_queue(d, BALLOON_Q_STATS) : NULL;
	unsigned inflight = sq ? sq->inflight : 0;
	bool quiet = d->status & VIRTIO_STATUS_NEEDS_RESET;
	if (!quiet && inflight != held)
		return err_set(err, KITE_EXIT_IMAGE, "%s: stats queue has %u buffers in flight, the device holds %u",
			       d->name, inflight, held);
	if (held && (!sq || head >= sq->cfg.size))
		return err_set(err, KITE_EXIT_IMAGE, "%s: held stats buffer %u is not in a running stats queue",
			       d->name, head);
	b->num_pages = num_pages;
	b->actual = actual;
	b->stats_interval_s = interval;
	b->stats_held = held;
	b->stats_head = head;
	b->stats.present = present;
	memcpy(b->stats.value, value, sizeof(value));
	return 0;
}

#define BALLOON_OPS(nq)                                                                   \
	{                                                                                 \
		.device_id = VIRTIO_ID_BALLOON, .num_queues = (nq),                       \
		.queue_max_size = BALLOON_QUEUE_SIZE, .config_len = BALLOON_CONFIG_LEN,   \
		.config_read = balloon_config_read, .config_write = balloon_config_write, \
		.activate = balloon_activate, .notify = balloon_notify,                   \
		.reset = balloon_reset, .destroy = balloon_destroy,                       \
		.save = balloon_save, .restore = balloon_restore,                         \
	}

/* The stats queue is there only when statistics are offered (5.5.2). */
static const struct virtio_dev_ops balloon_ops_nostats = BALLOON_OPS(2);
static const struct virtio_dev_ops balloon_ops_stats = BALLOON_OPS(3);

const struct virtio_dev_ops *balloon_dev_ops(const struct balloon *b)
{
	return b->stats_enabled ? &balloon_ops_stats : &balloon_ops_nostats;
}

uint64_t balloon_dev_features(const struct balloon *b)
{
	uint64_t f = 0;
	if (b->stats_enabled)
		f |= VIRTIO_BIT(VIRTIO_BALLOON_F_STATS_VQ);
	if (b->deflate_on_oom)
		f |= VIRTIO_BIT(VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
	return f;
}

struct balloon *balloon_new(const struct balloon_config *cfg, struct kite_err *err)
{
	if (cfg->target_mib > BALLOON_MAX_MIB) {
		err_set(err, KITE_EXIT_USAGE, "balloon: amount_mib %u is more than %u MiB of pages can count",
			cfg->target_mib, BALLOON_MAX_MIB);
		return NULL;
	}
	struct balloon *b = calloc(1, sizeof(*b));
	if (!b || vq_chain_alloc(&b->chain, BALLOON_QUEUE_SIZE) < 0) {
		free(b);
		err_set(err, KITE_EXIT_ERROR, "balloon: out of memory");
		return NULL;
	}
	b->timer_fd = -1;
	b->stats_enabled = cfg->stats_interval_s > 0;
	b->deflate_on_oom = cfg->deflate_on_oom;
	b->num_pages = cfg->target_mib * BALLOON_PAGES_PER_MIB;
	b->stats_interval_s = cfg->stats_interval_s;
	if (b->stats_enabled) {
		b->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (b->timer_fd < 0) {
			err_set(err, KITE_EXIT_ERROR, "balloon: stats timer: %s", strerror(errno));
			balloon_free(b);
			return NULL;
		}
	}
	return b;
}

static int balloon_create(struct vm *vm, struct kite_err *err)
{
	const struct balloon_config *cfg = &vm->cfg->balloon;
	if (!cfg->enabled)
		return 0;
	struct balloon *b = balloon_new(cfg, err);
	if (!b)
		return -1;
	if (!virtio_pci_create(vm, balloon_dev_ops(b), b, balloon_dev_features(b), "virtio-balloon0", err)) {
		balloon_free(b);
		return -1;
	}
	return 0;
}

KITE_DEVICE(virtio_balloon, {.name = "virtio-balloon", .create = balloon_create});

/* ---- control plane (API thread) ---- */

static struct virtio_dev *find_balloon(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_virtio; i++) {
		struct virtio_dev *d = vm->virtio[i];
		if (d && d->ops->device_id == VIRTIO_ID_BALLOON && d->priv)
			return d;
	}
	return NULL;
}

int balloon_set_target(struct vm *vm, uint32_t amount_mib)
{
	struct virtio_dev *d = find_balloon(vm);
	if (!d)
		return -ENODEV;
	if (amount_mib > BALLOON_MAX_MIB)
		return -EINVAL;
	pthread_mutex_lock(&d->lock);
	struct balloon *b = d->priv;
	b->num_pages = amount_mib * BALLOON_PAGES_PER_MIB;
	virtio_dev_config_changed(d);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

int balloon_get_config(struct vm *vm, uint32_t *amount_mib, bool *deflate_on_oom,
		       uint32_t *stats_interval_s)
{
	struct virtio_dev *d = find_balloon(vm);
	if (!d)
		return -ENODEV;
	pthread_mutex_lock(&d->lock);
	struct balloon *b = d->priv;
	if (amount_mib)
		*amount_mib = b->num_pages / BALLOON_PAGES_PER_MIB;
	if (deflate_on_oom)
		*deflate_on_oom = b->deflate_on_oom;
	if (stats_interval_s)
		*stats_interval_s = b->stats_interval_s;
	pthread_mutex_unlock(&d->lock);
	return 0;
}

int balloon_set_stats_interval(struct vm *vm, uint32_t seconds)
{
	struct virtio_dev *d = find_balloon(vm);
	if (!d)
		return -ENODEV;
	pthread_mutex_lock(&d->lock);
	struct balloon *b = d->priv;
	int ret = 0;
	if (b->stats_enabled != (seconds > 0)) {
		ret = -EINVAL;
	} else if (seconds > 0) {
		b->stats_interval_s = seconds;
		/* Firecracker refreshes right away, then every interval. */
		if (b->timer_watched && arm_timer(b, 1) < 0)
			ret = -errno;
	}
	pthread_mutex_unlock(&d->lock);
	return ret;
}

int balloon_get_stats(struct vm *vm, struct balloon_stats *out)
{
	struct virtio_dev *d = find_balloon(vm);
	if (!d)
		return -ENODEV;
	pthread_mutex_lock(&d->lock);
	struct balloon *b = d->priv;
	int ret = 0;
	if (!b->stats_enabled) {
		ret = -ENOTSUP;
	} else {
		*out = b->stats;
		out->target_pages = b->num_pages;
		out->actual_pages = b->actual;
		out->target_mib = b->num_pages / BALLOON_PAGES_PER_MIB;
		out->actual_mib = b->actual / BALLOON_PAGES_PER_MIB;
	}
	pthread_mutex_unlock(&d->lock);
	return ret;
}
