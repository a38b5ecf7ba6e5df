/* Token buckets as Firecracker defines them, on a fake clock: the initial
 * budget, refill at size/refill_time, the one-time burst spent first and never
 * refilled, both buckets must agree, oversized requests, the long-run rate,
 * the wait until the next request passes, PATCH at run time. */
#include "unit.h"

#include "util/ratelimit.h"

#define MS 1000000ull

static struct rl_config bw(uint64_t size, uint64_t burst, uint64_t refill_ms)
{
	struct rl_config c = {.bandwidth = {size, burst, refill_ms}};
	return c;
}

static void unlimited(void **state)
{
	(void)state;
	struct rl_config c = {0};
	struct rate_limiter r;
	assert_false(rl_config_active(&c));
	rl_init(&r, &c, 0);
	for (int i = 0; i < 1000; i++)
		assert_true(rl_consume(&r, 1u << 30, 0));
	c.bandwidth.size = 100; /* refill_time 0: still no limit */
	assert_false(rl_config_active(&c));
}

static void budget_then_refill(void **state)
{
	(void)state;
	struct rl_config c = bw(1000, 0, 100); /* 1000 bytes per 100 ms */
	struct rate_limiter r;
	assert_true(rl_config_active(&c));
	rl_init(&r, &c, 0);
	assert_true(rl_consume(&r, 600, 0));
	assert_true(rl_consume(&r, 400, 0));
	assert_false(rl_consume(&r, 1, 0)); /* empty */
	assert_int_equal(r.throttled, 1);
	/* 10 ms earn 100 bytes */
	assert_int_equal(rl_wait_ns(&r, 100, 0), 10 * MS);
	assert_false(rl_consume(&r, 100, 10 * MS - 1));
	assert_true(rl_consume(&r, 100, 10 * MS));
	/* never above size: 1 s later the bucket holds 1000, not 10000 */
	assert_true(rl_consume(&r, 1000, 1000 * MS));
	assert_false(rl_consume(&r, 1, 1000 * MS));
}

static void fractional_refill_is_exact(void **state)
{
	(void)state;
	struct rl_config c = bw(3, 0, 1); /* 3 tokens per ms: one per 333333.33 ns */
	struct rate_limiter r;
	rl_init(&r, &c, 0);
	assert_true(rl_consume(&r, 3, 0));
	uint64_t t = 0;
	unsigned got = 0;
	/* tiny steps lose nothing to rounding: 3000 tokens over 1000 ms */
	for (; t <= 1000 * MS; t += 1000)
		while (rl_consume(&r, 1, t))
			got++;
	assert_int_equal(got, 3000);
}

static void one_time_burst(void **state)
{
	(void)state;
	struct rl_config c = bw(100, 500, 1000);
	struct rate_limiter r;
	rl_init(&r, &c, 0);
	assert_true(rl_consume(&r, 550, 0)); /* 500 burst + 50 of the bucket */
	assert_true(rl_consume(&r, 50, 0));
	assert_false(rl_consume(&r, 1, 0));
	/* the burst never comes back: after a full refill only 100 */
	assert_true(rl_consume(&r, 100, 5000 * MS));
	assert_false(rl_consume(&r, 1, 5000 * MS));
}

static void both_buckets_must_allow(void **state)
{
	(void)state;
	struct rl_config c = {.bandwidth = {1000000, 0, 1000}, .ops = {2, 0, 1000}};
	struct rate_limiter r;
	rl_init(&r, &c, 0);
	assert_true(rl_consume(&r, 10, 0));
	assert_true(rl_consume(&r, 10, 0));
	assert_false(rl_consume(&r, 10, 0)); /* ops exhausted, bytes plenty */
	/* a refused request took nothing from the bytes bucket */
	assert_int_equal(r.bw.tokens, 1000000 - 20);
	assert_int_equal(rl_wait_ns(&r, 10, 0), 500 * MS); /* one op per 500 ms */
}

static void oversized_requests_pass_when_full_and_leave_debt(void **state)
{
	(void)state;
	struct rl_config c = bw(100, 0, 100); /* 1 byte per ms */
	struct rate_limiter r;
	rl_init(&r, &c, 0);
	assert_true(rl_consume(&r, 300, 0)); /* full bucket: through, 200 in debt */
	assert_false(rl_consume(&r, 1, 0));
	/* debt first: 200 ms to get back to 0, 1 ms more for one byte */
	assert_int_equal(rl_wait_ns(&r, 1, 0), 201 * MS);
	/* an oversized request waits for a full bucket, not for its own size */
	assert_int_equal(rl_wait_ns(&r, 300, 0), 300 * MS);
	assert_true(rl_consume(&r, 300, 300 * MS));
}

static void long_run_rate_holds(void **state)
{
	(void)state;
	/* a 4 KiB-request stream against 1 MiB/s: after 10 simulated seconds the
	 * bytes passed stay within one bucket of 10 MiB */
	struct rl_config c = bw(1u << 20, 0, 1000);
	struct rate_limiter r;
	rl_init(&r, &c, 0);
	uint64_t t = 0, bytes = 0;
	while (t < 10000 * MS) {
		if (rl_consume(&r, 4096, t))
			bytes += 4096;
		else
			t += rl_wait_ns(&r, 4096, t);
	}
	assert_true(bytes >= 10ull << 20);
	assert_true(bytes <= 11ull << 20);
}

static void update_at_run_time(void **state)
{
	(void)state;
	struct rl_config c = bw(100, 0, 1000);
	struct rate_limiter r;
	rl_init(&r, &c, 0);
	assert_true(rl_consume(&r, 100, 0));
	assert_false(rl_consume(&r, 100, 0));
	struct rl_config d = bw(1000, 0, 1000);
	rl_update(&r, &d, 0);
	assert_true(rl_consume(&r, 1000, 0)); /* new bucket, full */
	assert_int_equal(r.throttled, 1); /* the count survives */
	struct rl_config off = {0};
	rl_update(&r, &off, 0);
	assert_true(rl_consume(&r, 1u << 30, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(unlimited),
		cmocka_unit_test(budget_then_refill),
		cmocka_unit_test(fractional_refill_is_exact),
		cmocka_unit_test(one_time_burst),
		cmocka_unit_test(both_buckets_must_allow),
		cmocka_unit_test(oversized_requests_pass_when_full_and_leave_debt),
		cmocka_unit_test(long_run_rate_holds),
		cmocka_unit_test(update_at_run_time),
	};
	return cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
}
