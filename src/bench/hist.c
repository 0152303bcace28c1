/* hist.c - the bench's latency histogram (see hist.h for the layout and the
 * error bound). Recording is a shift, a count-leading-zeros and an add, so
 * it can sit on the hot path of a load generator that records every
 * message; memory is fixed at init so a long run never allocates. */
#include "hist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int ilog2_u64(uint64_t v) { return 63 - __builtin_clzll(v); }

/* Slot of |units| (a value already divided by the unit). */
static size_t slot_of(const jn_hist_t *h, uint64_t units)
{
    uint64_t s = (uint64_t)1 << h->sub_bits;
    if (units < s)
        return (size_t)units;
    int k = ilog2_u64(units) - h->sub_bits + 1; /* >= 1 */
    uint64_t half = s >> 1;
    uint64_t sub = units >> k; /* in [half, s) */
    return (size_t)(s + (uint64_t)(k - 1) * half + (sub - half));
}

/* Lowest value (in value space) and width of slot |i|. */
static void slot_range(const jn_hist_t *h, size_t i, uint64_t *low, uint64_t *width)
{
    uint64_t s = (uint64_t)1 << h->sub_bits;
    uint64_t half = s >> 1;
    uint64_t lo_units, w_units;
    if (i < s) {
        lo_units = i;
        w_units = 1;
    } else {
        uint64_t j = i - s;
        int k = (int)(j / half) + 1;
        lo_units = (half + j % half) << k;
        w_units = (uint64_t)1 << k;
    }
    *low = lo_units << h->unit_shift;
    *width = w_units << h->unit_shift;
}

int jn_hist_init(jn_hist_t *h, uint64_t lowest, uint64_t highest, int sigfigs)
{
    memset(h, 0, sizeof(*h));
    if (lowest < 1 || sigfigs < 1 || sigfigs > JN_HIST_SIGFIGS_MAX || highest / 2 < lowest)
        return JN_EINVAL;
    uint64_t want = 2;
    for (int i = 0; i < sigfigs; i++)
        want *= 10;
    int sub_bits = 1;
    while (((uint64_t)1 << sub_bits) < want)
        sub_bits++;
    uint64_t half = (uint64_t)1 << (sub_bits - 1);
    /* The largest unit that keeps the linear region's slots no wider than
     * lowest/half, so the error bound holds from |lowest| up. */
    int unit_shift = lowest >= half ? ilog2_u64(lowest / half) : 0;
    if (ilog2_u64(highest) - unit_shift > 62)
        return JN_EINVAL;
    h->lowest = lowest;
    h->highest = highest;
    h->sigfigs = sigfigs;
    h->unit_shift = unit_shift;
    h->sub_bits = sub_bits;
    h->nslots = slot_of(h, highest >> unit_shift) + 1;
    h->counts = calloc(h->nslots, sizeof(*h->counts));
    if (!h->counts) {
        memset(h, 0, sizeof(*h));
        return JN_ENOMEM;
    }
    h->min = UINT64_MAX;
    return 0;
}

void jn_hist_free(jn_hist_t *h)
{
    free(h->counts);
    memset(h, 0, sizeof(*h));
}

void jn_hist_reset(jn_hist_t *h)
{
    memset(h->counts, 0, h->nslots * sizeof(*h->counts));
    h->total = 0;
    h->saturated = 0;
    h->min = UINT64_MAX;
    h->max = 0;
    h->sum = 0;
}

void jn_hist_record_n(jn_hist_t *h, uint64_t v, uint64_t n)
{
    if (n == 0)
        return;
    uint64_t counted = v;
    if (v > h->highest) {
        counted = h->highest;
        h->saturated += n;
    }
    h->counts[slot_of(h, counted >> h->unit_shift)] += n;
    h->total += n;
    h->sum += (long double)v * (long double)n;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void jn_hist_record(jn_hist_t *h, uint64_t v) { jn_hist_record_n(h, v, 1); }

int jn_hist_merge(jn_hist_t *dst, const jn_hist_t *src)
{
    if (dst->lowest != src->lowest || dst->highest != src->highest || dst->sigfigs != src->sigfigs ||
        dst->nslots != src->nslots)
        return JN_EINVAL;
    for (size_t i = 0; i < src->nslots; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    dst->saturated += src->saturated;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    return 0;
}

uint64_t jn_hist_percentile(const jn_hist_t *h, double p)
{
    if (h->total == 0)
        return 0;
    if (p <= 0)
        return h->min;
    if (p >= 100)
        return h->max;
    /* The epsilon absorbs binary rounding of p (99.9 is not exact) so that
     * an integral rank is not pushed to the next one. */
    double r = p / 100.0 * (double)h->total;
    uint64_t rank = (uint64_t)ceil(r - 1e-6);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < h->nslots; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t low, width;
            slot_range(h, i, &low, &width);
            uint64_t v = low + width / 2;
            if (v < h->min)
                v = h->min;
            if (v > h->max)
                v = h->max;
            return v;
        }
    }
    return h->max;
}

double jn_hist_mean(const jn_hist_t *h)
{
    return h->total ? (double)(h->sum / (long double)h->total) : 0.0;
}

double jn_hist_rel_error(const jn_hist_t *h)
{
    return 1.0 / (double)((uint64_t)1 << (h->sub_bits - 1));
}
