/* Trap accounting: every VM exit counted, timed and attributed.
 *
 * Hot path (vCPU thread): struct vcpu_stats, written only by its vCPU with
 * relaxed atomic stores (no lock, no syscall; the clock is the vDSO's). Per
 * device: bus ranges count their accesses and the time spent in them; virtio
 * devices count kicks, interrupts and requests on their event threads.
 *
 * Read side: a sampler thread (every STATS_PERIOD_MS) reads those counters and
 * KVM's own statistics (KVM_GET_STATS_FD: exits KVM handled in the kernel, halt
 * time) and keeps a sliding window of deltas for the analytics (entropy, phase,
 * cost of the illusion). stats_json() aggregates on read. Definitions:
 * docs/analytics.md and docs/stats.md. */
#ifndef KITE_STATS_H
#define KITE_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#define STATS_REASONS 64   /* KVM exit reasons; larger ones count as 63 */
#define STATS_HIST 20      /* handling-time buckets: [0,256ns), [256,512ns), ... doubling, last open */
#define STATS_HIST_BASE_NS 256
#define STATS_PERIOD_MS 100
#define STATS_WINDOW 10    /* samples in the sliding window: 1 s */

struct vcpu_stats {
	uint64_t exits[STATS_REASONS];
	uint64_t exit_ns[STATS_REASONS]; /* kite's handling time per reason */
	uint64_t run_ns;                 /* inside KVM_RUN (guest, in-kernel exits, halted) */
	uint64_t handle_ns;              /* in kite between two KVM_RUN calls */
	uint64_t run_start;              /* when the KVM_RUN in progress began; 0 outside */
	uint64_t hist[STATS_HIST];
};

static inline uint64_t stats_now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Single writer: a relaxed load and store, no locked instruction. */
static inline void stats_add(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

static inline unsigned stats_hist_bucket(uint64_t ns)
{
	unsigned b = 0;
	for (uint64_t lim = STATS_HIST_BASE_NS; ns >= lim && b < STATS_HIST - 1; lim <<= 1)
		b++;
	return b;
}

/* One userspace exit handled: reason (KVM_EXIT_*), kite's time on it. */
static inline void stats_exit(struct vcpu_stats *s, unsigned reason, uint64_t ns)
{
	if (reason >= STATS_REASONS)
		reason = STATS_REASONS - 1;
	stats_add(&s->exits[reason], 1);
	stats_add(&s->exit_ns[reason], ns);
	stats_add(&s->handle_ns, ns);
	stats_add(&s->hist[stats_hist_bucket(ns)], 1);
}

struct vm;
struct vm_stats;

/* Starts the sampler of a running VM (after vCPUs exist). 0 or -1; without it
 * stats_json still reports kite's counters, without KVM's and the analytics. */
int stats_start(struct vm *vm);
void stats_stop(struct vm *vm);

/* The whole picture as a jansson object (json_t *; the caller decrefs). */
void *stats_json(struct vm *vm);

#endif
