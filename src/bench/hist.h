/* hist.h - a latency histogram with bounded relative error, in the manner
 * of HdrHistogram: log-linear buckets, fixed memory allocated at init, O(1)
 * record, and percentiles whose error relative to the exact value is at
 * most 10^-sigfigs.
 *
 * Layout. Values are counted in units of 2^unit_shift (chosen at init so
 * that one unit is at most |lowest| / half, half = sub_bucket_count / 2).
 * sub_bucket_count is the smallest power of two >= 2 * 10^sigfigs. The
 * first sub_bucket_count slots count units 0..sub_bucket_count-1 exactly;
 * after that each power-of-two range [2^k, 2^(k+1)) of units is split into
 * |half| slots of equal width 2^(k - log2(half)). A slot is therefore never
 * wider than 1/half of the values it holds, which bounds the relative error
 * of any value >= |lowest| by 1/half (and of the midpoint reported by
 * jn_hist_percentile by 1/(2*half)).
 *
 * Values above |highest| are counted in the last slot (as |highest|) and
 * tallied in |saturated|; min, max and sum are kept exact.
 */
#ifndef JN_BENCH_HIST_H
#define JN_BENCH_HIST_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define JN_HIST_SIGFIGS_MAX 5

typedef struct jn_hist {
    uint64_t lowest;     /* smallest value whose relative error is bounded */
    uint64_t highest;    /* largest value counted in its own slot */
    int sigfigs;         /* significant decimal digits (1..5) */
    int unit_shift;      /* values are counted in units of 2^unit_shift */
    int sub_bits;        /* log2(sub_bucket_count) */
    size_t nslots;       /* length of |counts| */
    uint64_t *counts;    /* owned; nslots counters */
    uint64_t total;      /* values recorded */
    uint64_t saturated;  /* values that were above |highest| */
    uint64_t min;        /* exact smallest value (UINT64_MAX when empty) */
    uint64_t max;        /* exact largest value (0 when empty) */
    long double sum;     /* exact-ish sum for the mean */
} jn_hist_t;

/* Sets up |h| for values in [|lowest|, |highest|] (1 <= lowest, 2*lowest
 * <= highest) with |sigfigs| significant digits (1..JN_HIST_SIGFIGS_MAX).
 * Allocates all the memory the histogram will ever use. Returns 0,
 * JN_EINVAL on a bad parameter, JN_ENOMEM. On failure |h| needs no free. */
int jn_hist_init(jn_hist_t *h, uint64_t lowest, uint64_t highest, int sigfigs) JN_MUST_CHECK;
/* Releases the counters; |h| may then be initialised again. Safe on a
 * zeroed struct. */
void jn_hist_free(jn_hist_t *h);
/* Forgets every recorded value, keeps the configuration and memory. */
void jn_hist_reset(jn_hist_t *h);

/* Counts one value. Never fails: values above |highest| saturate. */
void jn_hist_record(jn_hist_t *h, uint64_t v);
/* Counts |v| |n| times. */
void jn_hist_record_n(jn_hist_t *h, uint64_t v, uint64_t n);

/* Adds every value of |src| to |dst|. Both must have been initialised with
 * the same lowest, highest and sigfigs: JN_EINVAL otherwise (dst is then
 * unchanged). Returns 0. */
int jn_hist_merge(jn_hist_t *dst, const jn_hist_t *src) JN_MUST_CHECK;

/* The value at percentile |p| (0..100): the smallest recorded value such
 * that at least p% of the values are <= it, reported as the midpoint of its
 * slot and clamped to [min, max]. p <= 0 gives min, p >= 100 gives max.
 * Returns 0 when the histogram is empty. */
uint64_t jn_hist_percentile(const jn_hist_t *h, double p);
/* Number of recorded values. */
static inline uint64_t jn_hist_count(const jn_hist_t *h) { return h->total; }
/* Exact maximum and minimum recorded (0 when empty). */
static inline uint64_t jn_hist_max(const jn_hist_t *h) { return h->max; }
static inline uint64_t jn_hist_min(const jn_hist_t *h) { return h->total ? h->min : 0; }
/* Exact arithmetic mean of the recorded values (0 when empty). */
double jn_hist_mean(const jn_hist_t *h);

/* The relative error bound of a value >= lowest, as a fraction (e.g.
 * 1/1024 for 3 significant digits). */
double jn_hist_rel_error(const jn_hist_t *h);

#endif
