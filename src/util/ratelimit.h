/* Rate limiters as Firecracker defines them: two token buckets per device (or
 * queue), bytes and operations. A bucket holds `size` tokens and refills at
 * size / refill_time (ms); `one_time_burst` extra tokens are spent first and
 * never come back. size 0 or refill_time 0 means no limit for that bucket.
 *
 * Pure arithmetic on a caller-supplied clock (ns), so it is unit-tested with
 * a fake one. Not thread-safe: one device thread owns a limiter.
 *
 * A request larger than the bucket is let through when the bucket is full and
 * leaves it in debt (negative), so big requests neither starve nor beat the
 * long-run rate. */
#ifndef KITE_RATELIMIT_H
#define KITE_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct tb_config {
	uint64_t size;
	uint64_t one_time_burst;
	uint64_t refill_ms;
};

struct token_bucket {
	struct tb_config cfg;
	int64_t tokens;     /* may go negative: debt */
	uint64_t burst;     /* one-time burst left */
	uint64_t last_ns;   /* last refill */
	uint64_t rem;       /* refill remainder (token * ns units) */
};

struct rl_config {
	struct tb_config bandwidth, ops;
};

struct rate_limiter {
	struct token_bucket bw, ops;
	uint64_t throttled; /* requests that had to wait */
};

/* Whether a configuration limits anything. */
bool rl_config_active(const struct rl_config *c);
void rl_init(struct rate_limiter *r, const struct rl_config *c, uint64_t now_ns);
/* Changes the limits at run time (PATCH): buckets start full again. */
void rl_update(struct rate_limiter *r, const struct rl_config *c, uint64_t now_ns);
/* Takes `bytes` and one operation if both buckets allow it now; else takes
 * nothing and returns false. */
bool rl_consume(struct rate_limiter *r, uint64_t bytes, uint64_t now_ns);
/* After a refused rl_consume: nanoseconds until the same request would pass
 * (at least 1). */
uint64_t rl_wait_ns(struct rate_limiter *r, uint64_t bytes, uint64_t now_ns);

#endif
