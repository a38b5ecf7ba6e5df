#include "util/ratelimit.h"

#define NS_PER_MS 1000000ull

static bool tb_active(const struct tb_config *c) { return c->size && c->refill_ms; }

bool rl_config_active(const struct rl_config *c) { return tb_active(&c->bandwidth) || tb_active(&c->ops); }

static void tb_init(struct token_bucket *b, const struct tb_config *c, uint64_t now)
{
	b->cfg = *c;
	b->tokens = c->size > INT64_MAX ? INT64_MAX : (int64_t)c->size;
	b->burst = c->one_time_burst;
	b->last_ns = now;
	b->rem = 0;
}

/* Adds the tokens earned since last_ns: size tokens per refill_ms, exact
 * (the remainder carries over), never above size. */
static void tb_refill(struct token_bucket *b, uint64_t now)
{
	if (!tb_active(&b->cfg) || now <= b->last_ns)
		return;
	uint64_t period = b->cfg.refill_ms * NS_PER_MS;
	uint64_t dt = now - b->last_ns;
	b->last_ns = now;
	if (b->tokens >= (int64_t)b->cfg.size)
		return; /* full: nothing to earn, no remainder to keep */
	/* tokens earned = dt * size / period, in 128-bit to avoid overflow */
	unsigned __int128 num = (unsigned __int128)dt * b->cfg.size + b->rem;
	uint64_t earned = (uint64_t)(num / period);
	b->rem = (uint64_t)(num % period);
	int64_t room = (int64_t)b->cfg.size - b->tokens;
	if (earned >= (uint64_t)room) {
		b->tokens = (int64_t)b->cfg.size;
		b->rem = 0;
	} else {
		b->tokens += (int64_t)earned;
	}
}

/* Whether n tokens can be taken now (burst first; a request larger than the
 * bucket needs a full one). */
static bool tb_can(const struct token_bucket *b, uint64_t n)
{
	if (!tb_active(&b->cfg) || n <= b->burst)
		return true;
	uint64_t need = n - b->burst;
	if (need > b->cfg.size)
		need = b->cfg.size;
	return b->tokens >= 0 && (uint64_t)b->tokens >= need;
}

static void tb_take(struct token_bucket *b, uint64_t n)
{
	if (!tb_active(&b->cfg))
		return;
	uint64_t from_burst = n < b->burst ? n : b->burst;
	b->burst -= from_burst;
	n -= from_burst;
	if (n > (uint64_t)INT64_MAX / 2)
		n = (uint64_t)INT64_MAX / 2;
	b->tokens -= (int64_t)n;
}

/* ns until tb_can(n) holds. */
static uint64_t tb_wait(const struct token_bucket *b, uint64_t n)
{
	if (tb_can(b, n))
		return 0;
	uint64_t need = n - b->burst;
	if (need > b->cfg.size)
		need = b->cfg.size;
	unsigned __int128 missing = (unsigned __int128)((int64_t)need - b->tokens);
	unsigned __int128 period = (unsigned __int128)b->cfg.refill_ms * NS_PER_MS;
	/* ceil((missing * period - rem) / size) */
	unsigned __int128 num = missing * period;
	num = num > b->rem ? num - b->rem : 0;
	unsigned __int128 ns = (num + b->cfg.size - 1) / b->cfg.size;
	return ns > UINT64_MAX ? UINT64_MAX : (uint64_t)ns;
}

void rl_init(struct rate_limiter *r, const struct rl_config *c, uint64_t now_ns)
{
	tb_init(&r->bw, &c->bandwidth, now_ns);
	tb_init(&r->ops, &c->ops, now_ns);
	r->throttled = 0;
}

void rl_update(struct rate_limiter *r, const struct rl_config *c, uint64_t now_ns)
{
	uint64_t t = r->throttled;
	rl_init(r, c, now_ns);
	r->throttled = t;
}

bool rl_consume(struct rate_limiter *r, uint64_t bytes, uint64_t now_ns)
{
	tb_refill(&r->bw, now_ns);
	tb_refill(&r->ops, now_ns);
	if (!tb_can(&r->bw, bytes) || !tb_can(&r->ops, 1)) {
		r->throttled++;
		return false;
	}
	tb_take(&r->bw, bytes);
	tb_take(&r->ops, 1);
	return true;
}

uint64_t rl_wait_ns(struct rate_limiter *r, uint64_t bytes, uint64_t now_ns)
{
	tb_refill(&r->bw, now_ns);
	tb_refill(&r->ops, now_ns);
	uint64_t a = tb_wait(&r->bw, bytes), b = tb_wait(&r->ops, 1);
	uint64_t w = a > b ? a : b;
	return w ? w : 1;
}
