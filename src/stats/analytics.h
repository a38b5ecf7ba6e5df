/* Exit analytics (issue 6): pure functions over numbers the caller collected.
 * No KVM, no threads, no allocation, no libm. Definitions and parameter choices
 * are in docs/analytics.md. */
#ifndef KITE_ANALYTICS_H
#define KITE_ANALYTICS_H

#include <stddef.h>
#include <stdint.h>

#define ENTROPY_MAX_WINDOW 4096
#define ENTROPY_MAX_REASONS 64

/* The N most recent exit reasons and how often each occurs among them.
 * Update is O(1); the entropy is computed from the counts on read. */
struct entropy_window {
	uint32_t size; /* N, the window capacity */
	uint32_t len;  /* reasons held, <= size */
	uint32_t next; /* ring slot the next reason goes to */
	uint64_t counts[ENTROPY_MAX_REASONS];
	uint8_t ring[ENTROPY_MAX_WINDOW];
};

/* Returns 0, or -1 when size is 0 or above ENTROPY_MAX_WINDOW. */
int entropy_window_init(struct entropy_window *w, uint32_t size);
/* Records one exit; evicts the oldest once the window is full. Returns 0, or
 * -1 (window unchanged) when reason >= ENTROPY_MAX_REASONS. */
int entropy_window_push(struct entropy_window *w, unsigned reason);
/* Shannon entropy in bits of the reasons in the window; 0 when empty. */
double entropy_window_bits(const struct entropy_window *w);

/* Shannon entropy in bits of the distribution counts[0..n-1] / sum; 0 when the
 * sum is 0. */
double entropy_bits(const uint64_t *counts, size_t n);

/* Jain's fairness index (sum x)^2 / (n * sum x^2), in [1/n, 1]. Returns 1.0 for
 * n == 0 and for all-zero shares (nobody got more than anybody else), and -1.0
 * when a share is negative or not finite. */
double jain_index(const double *x, size_t n);

enum phase { PHASE_BOOTING, PHASE_IDLE, PHASE_IO_BOUND, PHASE_COMPUTE_BOUND, PHASE_COUNT };

/* Per-second exit rates of one vCPU (or a VM) over an interval, and the
 * fraction of that interval it spent halted. */
struct exit_rates {
	double pio, mmio, hlt, other;
	double halted_frac;
};

/* Gaussian naive Bayes over log rates, uniform priors. Fills post[] with the
 * posterior probability of each phase (they sum to 1) and returns the most
 * probable. Negative or NaN inputs count as 0, rates are capped at 1e12/s and
 * halted_frac clamped to [0, 1], so any input gives finite posteriors. */
enum phase phase_classify(const struct exit_rates *r, double post[PHASE_COUNT]);
/* "booting", "idle", "io-bound", "compute-bound"; "unknown" out of range. */
const char *phase_name(enum phase p);

/* The cost of the illusion: exit_ns / (guest_ns + exit_ns + halted_ns), the
 * fraction of a vCPU's wall time spent in kite's exit handling; 0 when the total
 * is 0. Pass halted_ns = 0 for the share of the time the guest wanted to run. */
double illusion_cost(uint64_t guest_ns, uint64_t exit_ns, uint64_t halted_ns);

/* Natural logarithm and exponential without libm (the build links none).
 * ln: x > 0 finite gives ln(x); 0 gives -inf; negative or NaN gives NaN.
 * exp: results below about 1e-308 are 0. Relative error about 1e-15. */
double an_ln(double x);
double an_exp(double x);

#endif
