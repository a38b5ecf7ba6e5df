/* virtio-balloon (device id 5): the host asks the guest to give memory back.
 *
 * The host sets a target (num_pages, 4 KiB pages) in the config space; the
 * guest driver allocates that many pages and sends their frame numbers on the
 * inflate queue; the device returns the host memory behind them with
 * madvise(MADV_DONTNEED). Deflating needs nothing from the device: guest RAM is
 * anonymous memory, a released page faults back in (zeroed) when touched.
 * With statistics on, the driver keeps one buffer of tag/value pairs in the
 * stats queue; every stats_interval_s seconds the device hands it back so the
 * driver refills it with fresh numbers.
 *
 * The control-plane functions below are for the API thread: they take the
 * device lock. They return 0 or a negative errno:
 *   -ENODEV   the VM has no balloon device;
 *   -EINVAL   a value out of range (amount_mib * 256 pages overflows 32 bits),
 *             or an attempt to turn statistics on or off after boot;
 *   -ENOTSUP  statistics were not enabled at boot (stats_interval_s 0). */
#ifndef KITE_BALLOON_H
#define KITE_BALLOON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/mem.h"

struct vm;
struct balloon;
struct balloon_config;
struct kite_err;
struct virtio_dev;
struct virtio_dev_ops;

/* Feature bits (virtio 1.x, 5.5.3). */
#define VIRTIO_BALLOON_F_MUST_TELL_HOST 0
#define VIRTIO_BALLOON_F_STATS_VQ 1
#define VIRTIO_BALLOON_F_DEFLATE_ON_OOM 2

/* Queue indices. Without STATS_VQ offered there is no queue 2. */
#define BALLOON_Q_INFLATE 0
#define BALLOON_Q_DEFLATE 1
#define BALLOON_Q_STATS 2

#define BALLOON_PAGE_SHIFT 12 /* PFNs always count 4 KiB pages, whatever the guest's page size */
#define BALLOON_PAGE_SIZE (1u << BALLOON_PAGE_SHIFT)
#define BALLOON_PAGES_PER_MIB 256u
/* Largest PFN array one inflate/deflate chain may carry (Linux sends at most
 * 256). A longer chain is refused whole: it bounds the work one kick costs. */
#define BALLOON_MAX_PFNS_PER_CHAIN 1024u
/* Largest target: amount_mib * 256 pages must fit the le32 num_pages. */
#define BALLOON_MAX_MIB (UINT32_MAX / BALLOON_PAGES_PER_MIB)

/* Statistics tags (virtio 1.x, 5.5.6.3); one entry is le16 tag + le64 value. */
enum balloon_stat_tag {
	BALLOON_S_SWAP_IN = 0,
	BALLOON_S_SWAP_OUT = 1,
	BALLOON_S_MAJFLT = 2,
	BALLOON_S_MINFLT = 3,
	BALLOON_S_MEMFREE = 4,
	BALLOON_S_MEMTOT = 5,
	BALLOON_S_AVAIL = 6,
	BALLOON_S_CACHES = 7,
	BALLOON_S_HTLB_PGALLOC = 8,
	BALLOON_S_HTLB_PGFAIL = 9,
	BALLOON_S_NR = 10,
};
#define BALLOON_STAT_ENTRY_SIZE 10

/* GET /balloon/statistics (Firecracker's BalloonStats). A tag the driver never
 * reported has its bit clear in `present` and is left out of the answer. */
struct balloon_stats {
	uint32_t target_pages, actual_pages;
	uint32_t target_mib, actual_mib;
	uint32_t present; /* bit t: value[t] was reported by the driver */
	uint64_t value[BALLOON_S_NR];
};

/* Firecracker's JSON name of tag t ("swap_in", ..., "hugetlb_failures"), or
 * NULL for t >= BALLOON_S_NR. */
const char *balloon_stat_name(unsigned tag);

/* PATCH /balloon: the new target; the guest hears of it through a config
 * change interrupt. */
int balloon_set_target(struct vm *vm, uint32_t amount_mib);
/* GET /balloon: the current configuration (target as set last). Any pointer
 * may be NULL. */
int balloon_get_config(struct vm *vm, uint32_t *amount_mib, bool *deflate_on_oom,
		       uint32_t *stats_interval_s);
/* PATCH /balloon/statistics: a new polling interval, the first refresh right
 * away. Statistics cannot be switched on or off after boot (-EINVAL). */
int balloon_set_stats_interval(struct vm *vm, uint32_t seconds);
/* GET /balloon/statistics: -ENOTSUP when statistics are off. */
int balloon_get_stats(struct vm *vm, struct balloon_stats *out);

/* ---- The device's core, exposed for the unit tests. ---- */

/* What releasing a batch of PFNs did. */
struct balloon_release {
	uint64_t pages;   /* pages given back to the host */
	uint64_t runs;    /* madvise calls (runs of contiguous pages) */
	uint64_t invalid; /* PFNs that are not guest RAM: skipped */
	uint64_t failed;  /* pages whose madvise failed */
};

/* Gives the host memory behind n guest PFNs back with MADV_DONTNEED, one call
 * per run of contiguous pages. pfns are guest-chosen: each is checked with
 * gmem_ptr(); duplicates count once. Sorts pfns in place. Adds to *r. */
void balloon_release_pfns(const struct gmem *m, uint32_t *pfns, size_t n, struct balloon_release *r);

/* Folds the tag/value entries of a stats buffer (len bytes, whole 10-byte
 * entries only; a trailing partial entry is ignored) into s. Unknown tags are
 * skipped. Returns how many known entries were taken. */
unsigned balloon_stats_parse(struct balloon_stats *s, const uint8_t *buf, size_t len);

/* What the stats timer does at each expiry: hands the held stats buffer back
 * to the driver (push + signal) so it refills it. d->lock held. */
void balloon_stats_tick(struct virtio_dev *d);
/* The stats timer (a timerfd, -1 without statistics): the tests wait on it. */
int balloon_stats_timer_fd(const struct virtio_dev *d);

/* The device state for cfg, its ops table (2 or 3 queues) and the features it
 * offers: what the create hook hands to virtio_pci_create(). NULL + err. */
struct balloon *balloon_new(const struct balloon_config *cfg, struct kite_err *err);
const struct virtio_dev_ops *balloon_dev_ops(const struct balloon *b);
uint64_t balloon_dev_features(const struct balloon *b);
/* Frees a balloon that never reached a device (ops->destroy frees the others). */
void balloon_free(struct balloon *b);

#endif
