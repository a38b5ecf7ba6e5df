/* Exit analytics against hand-computed values: entropy of known sequences,
 * Jain's index of known shares, classifier posteriors on synthetic rate
 * vectors, the cost of the illusion, and the libm-free ln/exp under them. */
#include "unit.h"

#include <float.h>
#include <math.h> /* macros only: no libm is linked */

#include "stats/analytics.h"

static double absd(double x)
{
	return x < 0 ? -x : x;
}

static void assert_close(double got, double want, double tol)
{
	if (!(absd(got - want) <= tol))
		fail_msg("got %.17g, want %.17g (tolerance %g)", got, want, tol);
}

static void assert_rel(double got, double want, double rel)
{
	assert_close(got, want, absd(want) * rel);
}

/* ---- ln and exp ---- */

static void ln_known_values(void **state)
{
	(void)state;
	assert_close(an_ln(1), 0, 0);
	assert_rel(an_ln(2), 0.69314718055994531, 1e-15);
	assert_rel(an_ln(10), 2.302585092994046, 1e-15);
	assert_rel(an_ln(2.718281828459045), 1.0, 1e-15);
	assert_rel(an_ln(1e-300), -690.7755278982137, 1e-15);
	assert_rel(an_ln(5e-324), -744.4400719213812, 1e-13); /* smallest subnormal */
	assert_rel(an_ln(DBL_MAX), 709.782712893384, 1e-15);
	assert_true(isinf(an_ln(0)) && an_ln(0) < 0);
	assert_true(isnan(an_ln(-1)));
	assert_true(isnan(an_ln(NAN)));
	assert_true(isinf(an_ln(INFINITY)));
}

static void exp_known_values(void **state)
{
	(void)state;
	assert_close(an_exp(0), 1, 0);
	assert_rel(an_exp(1), 2.718281828459045, 1e-15);
	assert_rel(an_exp(-1), 0.36787944117144233, 1e-15);
	assert_rel(an_exp(-700), 9.85967654375977e-305, 1e-13);
	assert_rel(an_exp(709), 8.218407461554972e+307, 1e-13);
	assert_close(an_exp(-1000), 0, 0);
	assert_true(isinf(an_exp(1000)));
	/* Round trip over a wide range. */
	for (double x = -700; x <= 700; x += 13.37)
		assert_rel(an_ln(an_exp(x)), x, 1e-13);
}

/* ---- entropy ---- */

static void entropy_of_counts(void **state)
{
	(void)state;
	uint64_t one[4] = { 7, 0, 0, 0 };
	uint64_t two[2] = { 5, 5 };
	uint64_t four[4] = { 3, 3, 3, 3 };
	uint64_t skew[2] = { 3, 1 }; /* 0.5 + 0.75 (2 - log2 3) */
	uint64_t zero[3] = { 0, 0, 0 };
	uint64_t all[64];
	for (int i = 0; i < 64; i++)
		all[i] = 1000;
	assert_close(entropy_bits(one, 4), 0, 0);
	assert_close(entropy_bits(two, 2), 1, 1e-12);
	assert_close(entropy_bits(four, 4), 2, 1e-12);
	assert_close(entropy_bits(skew, 2), 0.8112781244591328, 1e-3);
	assert_close(entropy_bits(skew, 2), 0.8112781244591328, 1e-12);
	assert_close(entropy_bits(all, 64), 6, 1e-12);
	assert_close(entropy_bits(zero, 3), 0, 0);
	assert_close(entropy_bits(NULL, 0), 0, 0);
}

static void window_rejects_bad_arguments(void **state)
{
	(void)state;
	static struct entropy_window w;
	assert_int_equal(entropy_window_init(&w, 0), -1);
	assert_int_equal(entropy_window_init(&w, ENTROPY_MAX_WINDOW + 1), -1);
	assert_int_equal(entropy_window_init(&w, ENTROPY_MAX_WINDOW), 0);
	assert_int_equal(entropy_window_push(&w, ENTROPY_MAX_REASONS), -1);
	assert_int_equal(entropy_window_push(&w, ~0u), -1);
	assert_int_equal(w.len, 0);
	assert_close(entropy_window_bits(&w), 0, 0);
	assert_int_equal(entropy_window_push(&w, ENTROPY_MAX_REASONS - 1), 0);
	assert_int_equal(w.len, 1);
}

static void window_evicts_oldest(void **state)
{
	(void)state;
	static struct entropy_window w;
	assert_int_equal(entropy_window_init(&w, 4), 0);
	for (int i = 0; i < 4; i++)
		entropy_window_push(&w, 0);
	assert_close(entropy_window_bits(&w), 0, 0);
	/* 0 0 0 0 -> 0 0 1 1: two reasons equally. */
	entropy_window_push(&w, 1);
	entropy_window_push(&w, 1);
	assert_close(entropy_window_bits(&w), 1, 1e-12);
	/* -> 1 1 2 3: 1/2, 1/4, 1/4 = 1.5 bits. */
	entropy_window_push(&w, 2);
	entropy_window_push(&w, 3);
	assert_close(entropy_window_bits(&w), 1.5, 1e-12);
	assert_int_equal(w.counts[0], 0);
	/* -> 2 3 4 5: four equally. */
	entropy_window_push(&w, 4);
	entropy_window_push(&w, 5);
	assert_close(entropy_window_bits(&w), 2, 1e-12);
	/* -> 5 9 9 9: 3:1. */
	for (int i = 0; i < 3; i++)
		entropy_window_push(&w, 9);
	assert_close(entropy_window_bits(&w), 0.8112781244591328, 1e-3);
	/* A steady loop flushes the history out: entropy falls to 0. */
	for (int i = 0; i < 4; i++)
		entropy_window_push(&w, 9);
	assert_close(entropy_window_bits(&w), 0, 0);
	assert_int_equal(w.len, 4);
}

/* The O(1) counts match a recount of the last N reasons of a long sequence. */
static void window_matches_recount(void **state)
{
	(void)state;
	static struct entropy_window w;
	enum { N = 1000, LEN = 25000 };
	static uint8_t seq[LEN];
	uint32_t x = 12345;
	assert_int_equal(entropy_window_init(&w, N), 0);
	for (int i = 0; i < LEN; i++) {
		x = x * 1103515245u + 12345u;
		/* Phases of varied and of repetitive reasons. */
		seq[i] = (uint8_t)((i / 3000) % 2 ? (x >> 16) % 64 : (x >> 16) % 2);
		assert_int_equal(entropy_window_push(&w, seq[i]), 0);
		if (i % 997 == 0 || i == LEN - 1) {
			uint64_t counts[64] = { 0 };
			int first = i + 1 > N ? i + 1 - N : 0;
			for (int j = first; j <= i; j++)
				counts[seq[j]]++;
			assert_memory_equal(counts, w.counts, sizeof(counts));
			assert_close(entropy_window_bits(&w), entropy_bits(counts, 64), 0);
		}
	}
}

/* ---- Jain's index ---- */

static void jain_known_shares(void **state)
{
	(void)state;
	double equal[5] = { 3, 3, 3, 3, 3 };
	double hog[4] = { 0, 0, 7, 0 };
	double mixed[4] = { 1, 2, 3, 4 }; /* 10^2 / (4 * 30) */
	double half[4] = { 1, 1, 0, 0 };  /* 2^2 / (4 * 2) */
	double pair[2] = { 1, 3 };        /* 16 / (2 * 10) */
	double huge[3] = { 1e300, 1e300, 1e300 };
	double tiny[2] = { 5e-324, 5e-324 };
	assert_close(jain_index(equal, 5), 1, 1e-12);
	assert_close(jain_index(hog, 4), 0.25, 1e-12);
	assert_close(jain_index(mixed, 4), 100.0 / 120.0, 1e-12);
	assert_close(jain_index(half, 4), 0.5, 1e-12);
	assert_close(jain_index(pair, 2), 0.8, 1e-12);
	assert_close(jain_index(huge, 3), 1, 1e-12);
	assert_close(jain_index(tiny, 2), 1, 1e-12);
}

static void jain_edge_cases(void **state)
{
	(void)state;
	double zeros[3] = { 0, 0, 0 };
	double neg[2] = { 1, -1 };
	double nan_[2] = { 1, NAN };
	double inf[2] = { 1, INFINITY };
	assert_close(jain_index(NULL, 0), 1, 0);
	assert_close(jain_index(zeros, 3), 1, 0);
	assert_close(jain_index(neg, 2), -1, 0);
	assert_close(jain_index(nan_, 2), -1, 0);
	assert_close(jain_index(inf, 2), -1, 0);
}

/* ---- phase classifier ---- */

static void assert_posteriors_ok(const double post[PHASE_COUNT])
{
	double sum = 0;
	for (int c = 0; c < PHASE_COUNT; c++) {
		assert_true(isfinite(post[c]));
		assert_true(post[c] >= 0 && post[c] <= 1);
		sum += post[c];
	}
	assert_close(sum, 1, 1e-9);
}

static void classify_synthetic_phases(void **state)
{
	(void)state;
	static const struct {
		struct exit_rates r;
		enum phase want;
	} cases[] = {
		/* Boot: PIT, serial, PCI config probing by port; APIC/IOAPIC by MMIO. */
		{ { 20000, 2000, 10, 1000, 0.05 }, PHASE_BOOTING },
		{ { 5000, 500, 0, 300, 0 }, PHASE_BOOTING },
		/* Idle: a timer tick, then HLT again. */
		{ { 0, 0, 250, 250, 0.99 }, PHASE_IDLE },
		{ { 2, 5, 50, 60, 0.9 }, PHASE_IDLE },
		/* I/O-bound: virtio notifications, completion interrupts, short halts. */
		{ { 50, 20000, 2000, 5000, 0.4 }, PHASE_IO_BOUND },
		{ { 3000, 8000, 3000, 6000, 0.3 }, PHASE_IO_BOUND },
		/* Compute-bound: only the timer interrupts, never halted. */
		{ { 0, 0, 0, 1000, 0 }, PHASE_COMPUTE_BOUND },
		{ { 1, 3, 1, 250, 0.02 }, PHASE_COMPUTE_BOUND },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		double post[PHASE_COUNT];
		enum phase p = phase_classify(&cases[i].r, post);
		assert_posteriors_ok(post);
		if (p != cases[i].want)
			fail_msg("case %zu: %s, want %s", i, phase_name(p), phase_name(cases[i].want));
		/* A clear-cut synthetic vector is a confident call. */
		assert_true(post[cases[i].want] > 0.9);
	}
}

static void classify_extreme_inputs(void **state)
{
	(void)state;
	static const struct exit_rates cases[] = {
		{ 0, 0, 0, 0, 0 },
		{ 1e300, 1e300, 1e300, 1e300, 1e300 },
		{ DBL_MAX, 0, DBL_MAX, 0, 1 },
		{ INFINITY, INFINITY, INFINITY, INFINITY, INFINITY },
		{ NAN, NAN, NAN, NAN, NAN },
		{ -1, -1e300, -INFINITY, -5, -3 },
		{ 5e-324, 5e-324, 5e-324, 5e-324, 5e-324 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		double post[PHASE_COUNT];
		enum phase p = phase_classify(&cases[i], post);
		assert_true((unsigned)p < PHASE_COUNT);
		assert_posteriors_ok(post);
		/* The label is the argmax of the posteriors. */
		for (int c = 0; c < PHASE_COUNT; c++)
			assert_true(post[p] >= post[c]);
	}
	/* A vCPU that never exits and never halts is computing. */
	double post[PHASE_COUNT];
	assert_int_equal(phase_classify(&cases[0], post), PHASE_COMPUTE_BOUND);
}

static void phase_names(void **state)
{
	(void)state;
	assert_string_equal(phase_name(PHASE_BOOTING), "booting");
	assert_string_equal(phase_name(PHASE_IDLE), "idle");
	assert_string_equal(phase_name(PHASE_IO_BOUND), "io-bound");
	assert_string_equal(phase_name(PHASE_COMPUTE_BOUND), "compute-bound");
	assert_string_equal(phase_name(PHASE_COUNT), "unknown");
	assert_string_equal(phase_name((enum phase)-1), "unknown");
}

/* ---- cost of the illusion ---- */

static void illusion_cost_values(void **state)
{
	(void)state;
	assert_close(illusion_cost(900, 100, 0), 0.1, 1e-15);
	assert_close(illusion_cost(500, 100, 400), 0.1, 1e-15);
	assert_close(illusion_cost(0, 0, 1000), 0, 0);
	assert_close(illusion_cost(0, 1000, 0), 1, 0);
	assert_close(illusion_cost(0, 0, 0), 0, 0);
	assert_close(illusion_cost(UINT64_MAX, UINT64_MAX, UINT64_MAX), 1.0 / 3.0, 1e-15);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ln_known_values),
		cmocka_unit_test(exp_known_values),
		cmocka_unit_test(entropy_of_counts),
		cmocka_unit_test(window_rejects_bad_arguments),
		cmocka_unit_test(window_evicts_oldest),
		cmocka_unit_test(window_matches_recount),
		cmocka_unit_test(jain_known_shares),
		cmocka_unit_test(jain_edge_cases),
		cmocka_unit_test(classify_synthetic_phases),
		cmocka_unit_test(classify_extreme_inputs),
		cmocka_unit_test(phase_names),
		cmocka_unit_test(illusion_cost_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
