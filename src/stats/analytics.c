/* Exit analytics: entropy of the exit stream, Jain's fairness index, the phase
 * classifier and the cost of the illusion. Formulas and the classifier's
 * parameters are explained in docs/analytics.md. */
#include "stats/analytics.h"

#include <float.h>
#include <math.h> /* macros only (NAN, INFINITY): the build links no libm */
#include <string.h>

#define LN2 0.69314718055994530942
/* ln 2 split so that k * LN2_HI is exact for |k| < 2^11 (Cody and Waite). */
#define LN2_HI 6.93147180369123816490e-01
#define LN2_LO 1.90821492927058770002e-10
#define LOG2E 1.44269504088896340736
#define SQRT2 1.41421356237309504880

static uint64_t dbl_bits(double d)
{
	uint64_t u;
	memcpy(&u, &d, sizeof(u));
	return u;
}

static double bits_dbl(uint64_t u)
{
	double d;
	memcpy(&d, &u, sizeof(d));
	return d;
}

/* 2^k for -1022 <= k <= 1023. */
static double pow2i(int k)
{
	return bits_dbl((uint64_t)(k + 1023) << 52);
}

double an_ln(double x)
{
	if (isnan(x) || x < 0)
		return NAN;
	if (x == 0)
		return -INFINITY;
	if (isinf(x))
		return INFINITY;
	int e = 0;
	if (x < DBL_MIN) { /* subnormal: scale into the normal range first */
		x *= 0x1p54;
		e = -54;
	}
	uint64_t u = dbl_bits(x);
	e += (int)((u >> 52) & 0x7ff) - 1023;
	double m = bits_dbl((u & ((1ULL << 52) - 1)) | (1023ULL << 52)); /* [1, 2) */
	if (m > SQRT2) {
		m *= 0.5;
		e++;
	}
	/* ln m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.172: the odd series
	 * s + s^3/3 + ... converges to double precision in 12 terms. */
	double s = (m - 1) / (m + 1), s2 = s * s, term = s, sum = 0;
	for (int k = 1; k <= 27; k += 2) {
		sum += term / k;
		term *= s2;
	}
	return e * LN2 + 2 * sum;
}

double an_exp(double x)
{
	if (isnan(x))
		return x;
	if (x > 709.78)
		return INFINITY;
	if (x < -708.39) /* below DBL_MIN */
		return 0.0;
	/* x = k ln2 + r with |r| <= ln2 / 2, then e^r by its Taylor series. */
	double kd = x * LOG2E;
	int k = (int)(kd + (kd >= 0 ? 0.5 : -0.5));
	double r = (x - k * LN2_HI) - k * LN2_LO;
	double term = 1, sum = 1;
	for (int i = 1; i <= 17; i++) {
		term *= r / i;
		sum += term;
	}
	/* k is in [-1022, 1024]: two factors keep each power representable. */
	int k1 = k / 2;
	return sum * pow2i(k1) * pow2i(k - k1);
}

int entropy_window_init(struct entropy_window *w, uint32_t size)
{
	if (size == 0 || size > ENTROPY_MAX_WINDOW)
		return -1;
	memset(w, 0, sizeof(*w));
	w->size = size;
	return 0;
}

int entropy_window_push(struct entropy_window *w, unsigned reason)
{
	if (reason >= ENTROPY_MAX_REASONS)
		return -1;
	if (w->len == w->size)
		w->counts[w->ring[w->next]]--;
	else
		w->len++;
	w->ring[w->next] = (uint8_t)reason;
	w->counts[reason]++;
	w->next = w->next + 1 == w->size ? 0 : w->next + 1;
	return 0;
}

double entropy_window_bits(const struct entropy_window *w)
{
	return entropy_bits(w->counts, ENTROPY_MAX_REASONS);
}

double entropy_bits(const uint64_t *counts, size_t n)
{
	double total = 0;
	for (size_t i = 0; i < n; i++)
		total += (double)counts[i];
	if (total == 0)
		return 0.0;
	double h = 0;
	for (size_t i = 0; i < n; i++) {
		if (!counts[i])
			continue;
		double p = (double)counts[i] / total;
		h -= p * an_ln(p);
	}
	h /= LN2;
	return h > 0 ? h : 0.0; /* a single reason gives -0 */
}

double jain_index(const double *x, size_t n)
{
	double max = 0;
	for (size_t i = 0; i < n; i++) {
		if (!(x[i] >= 0) || isinf(x[i])) /* negative, NaN or infinite */
			return -1.0;
		if (x[i] > max)
			max = x[i];
	}
	if (n == 0 || max == 0)
		return 1.0;
	/* Dividing by the largest share keeps sum x^2 from overflowing; the
	 * index does not change under scaling. */
	double s = 0, s2 = 0;
	for (size_t i = 0; i < n; i++) {
		double y = x[i] / max;
		s += y;
		s2 += y * y;
	}
	double j = s * s / ((double)n * s2);
	if (j > 1)
		j = 1;
	if (j < 1.0 / (double)n)
		j = 1.0 / (double)n;
	return j;
}

/* Class-conditional Gaussians on the features ln(1 + rate/s) for port I/O, MMIO,
 * HLT and other exits, and on the halted fraction itself. Why these numbers:
 * docs/analytics.md. */
enum { F_PIO, F_MMIO, F_HLT, F_OTHER, F_HALTED, F_COUNT };

static const struct {
	double mean[F_COUNT];
	double sd[F_COUNT];
} phase_params[PHASE_COUNT] = {
	[PHASE_BOOTING] = { { 6.0, 2.0, 1.0, 6.5, 0.05 }, { 2.0, 2.5, 1.5, 1.0, 0.10 } },
	[PHASE_IDLE] = { { 0.5, 1.0, 5.0, 5.0, 0.95 }, { 1.0, 1.0, 1.5, 1.5, 0.05 } },
	[PHASE_IO_BOUND] = { { 5.0, 9.0, 7.5, 8.0, 0.40 }, { 3.0, 1.5, 1.5, 1.5, 0.20 } },
	[PHASE_COMPUTE_BOUND] = { { 0.5, 1.0, 0.5, 6.0, 0.02 }, { 1.0, 1.0, 1.0, 1.5, 0.05 } },
};

#define RATE_CAP 1e12

/* NaN and values below lo become lo; values above hi become hi. */
static double clamp(double v, double lo, double hi)
{
	if (!(v >= lo))
		return lo;
	return v > hi ? hi : v;
}

enum phase phase_classify(const struct exit_rates *r, double post[PHASE_COUNT])
{
	double f[F_COUNT] = {
		[F_PIO] = an_ln(1 + clamp(r->pio, 0, RATE_CAP)),
		[F_MMIO] = an_ln(1 + clamp(r->mmio, 0, RATE_CAP)),
		[F_HLT] = an_ln(1 + clamp(r->hlt, 0, RATE_CAP)),
		[F_OTHER] = an_ln(1 + clamp(r->other, 0, RATE_CAP)),
		[F_HALTED] = clamp(r->halted_frac, 0, 1),
	};
	/* Log-likelihoods without the -ln sqrt(2 pi) every term shares; uniform
	 * priors add the same constant to each class, so they drop out too. */
	double ll[PHASE_COUNT];
	for (int c = 0; c < PHASE_COUNT; c++) {
		ll[c] = 0;
		for (int i = 0; i < F_COUNT; i++) {
			double z = (f[i] - phase_params[c].mean[i]) / phase_params[c].sd[i];
			ll[c] -= 0.5 * z * z + an_ln(phase_params[c].sd[i]);
		}
	}
	/* Log-sum-exp: subtracting the largest log-likelihood keeps every
	 * exponent <= 0 and the best class's term exactly 1. */
	int best = 0;
	for (int c = 1; c < PHASE_COUNT; c++)
		if (ll[c] > ll[best])
			best = c;
	double sum = 0;
	for (int c = 0; c < PHASE_COUNT; c++) {
		post[c] = an_exp(ll[c] - ll[best]);
		sum += post[c];
	}
	for (int c = 0; c < PHASE_COUNT; c++)
		post[c] /= sum;
	return (enum phase)best;
}

const char *phase_name(enum phase p)
{
	static const char *const names[PHASE_COUNT] = {
		[PHASE_BOOTING] = "booting",
		[PHASE_IDLE] = "idle",
		[PHASE_IO_BOUND] = "io-bound",
		[PHASE_COMPUTE_BOUND] = "compute-bound",
	};
	if ((unsigned)p >= PHASE_COUNT)
		return "unknown";
	return names[p];
}

double illusion_cost(uint64_t guest_ns, uint64_t exit_ns, uint64_t halted_ns)
{
	/* Summed in double: three uint64_t could overflow. */
	double total = (double)guest_ns + (double)exit_ns + (double)halted_ns;
	if (total == 0)
		return 0.0;
	return (double)exit_ns / total;
}
