/* metrics.c - the metrics registry and its Prometheus text rendering
 * (exposition format 0.0.4).
 *
 * Families are kept in registration order, each with its samples in
 * registration order, so the rendered text is deterministic. Every sample is
 * its own allocation: the pointers handed out at setup stay valid while the
 * registry grows. Histograms count observations per bucket and turn them
 * into cumulative `le` buckets only when rendered, so observing is one
 * binary search and one increment.
 */
#include "metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Registration happens at setup, but a cap still keeps a bug that registers
 * per request from eating memory. */
#define MAX_FAMILIES 4096
#define MAX_SAMPLES 4096   /* per family */
#define MAX_BOUNDS 256     /* per histogram */
#define MAX_COLLECTORS 256

const double jn_metrics_latency_buckets[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,     10,
};
const size_t jn_metrics_latency_nbuckets =
    sizeof jn_metrics_latency_buckets / sizeof jn_metrics_latency_buckets[0];

enum mtype { M_COUNTER, M_GAUGE, M_HISTOGRAM };

static const char *const type_names[] = {"counter", "gauge", "histogram"};

struct jn_histogram {
    double *bounds;    /* ascending upper bounds; +Inf implied after them */
    size_t nbounds;
    uint64_t *buckets; /* nbounds + 1 per-bucket (not cumulative) counts */
    double sum;
    uint64_t count;
};

typedef struct sample {
    char *labels;          /* without braces; "" for none */
    jn_counter_t counter;  /* used by counters */
    jn_gauge_t gauge;      /* used by gauges */
    jn_histogram_t hist;   /* used by histograms */
} sample_t;

typedef struct family {
    char *name;
    char *help;
    enum mtype type;
    sample_t **samples; /* registration order */
    size_t nsamples;
    size_t capsamples;
} family_t;

typedef struct collector {
    jn_metrics_collect_cb cb;
    void *arg;
} collector_t;

struct jn_metrics {
    family_t **families; /* registration order */
    size_t nfamilies;
    size_t capfamilies;
    collector_t *collectors;
    size_t ncollectors;
    size_t capcollectors;
};

jn_metrics_t *jn_metrics_new(void)
{
    return calloc(1, sizeof(jn_metrics_t));
}

static void sample_free(sample_t *s)
{
    if (s == NULL)
        return;
    free(s->labels);
    free(s->hist.bounds);
    free(s->hist.buckets);
    free(s);
}

static void family_free(family_t *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->nsamples; i++)
        sample_free(f->samples[i]);
    free(f->samples);
    free(f->name);
    free(f->help);
    free(f);
}

void jn_metrics_free(jn_metrics_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nfamilies; i++)
        family_free(m->families[i]);
    free(m->families);
    free(m->collectors);
    free(m);
}

/* Prometheus metric names: [a-zA-Z_:][a-zA-Z0-9_:]*. */
static bool name_valid(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(p > s && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

/* Returns |arr| (|n| used of |*cap| elements of |size| bytes) with room
 * for one more, or NULL when |max| is reached or memory is short (|arr| is
 * then untouched). */
static void *grow(void *arr, size_t *cap, size_t n, size_t size, size_t max)
{
    if (n < *cap)
        return arr;
    if (n >= max)
        return NULL;
    size_t ncap = *cap ? *cap * 2 : 8;
    if (ncap > max)
        ncap = max;
    void *na = realloc(arr, ncap * size);
    if (na == NULL)
        return NULL;
    *cap = ncap;
    return na;
}

/* Finds or creates the sample (name, labels) of type |type|. NULL on a type
 * clash, a bad name, a cap, or allocation failure. */
static sample_t *lookup(jn_metrics_t *m, const char *name, const char *help, const char *labels,
                        enum mtype type, bool *created)
{
    *created = false;
    if (m == NULL || !name_valid(name))
        return NULL;
    if (labels == NULL)
        labels = "";
    if (help == NULL)
        help = "";
    family_t *f = NULL;
    for (size_t i = 0; i < m->nfamilies; i++) {
        if (strcmp(m->families[i]->name, name) == 0) {
            f = m->families[i];
            break;
        }
    }
    if (f != NULL) {
        if (f->type != type)
            return NULL;
        for (size_t i = 0; i < f->nsamples; i++)
            if (strcmp(f->samples[i]->labels, labels) == 0)
                return f->samples[i];
    }

    sample_t *s = calloc(1, sizeof *s);
    family_t *nf = NULL;
    if (s == NULL || (s->labels = strdup(labels)) == NULL)
        goto fail;
    if (f == NULL) {
        family_t **nfams = grow(m->families, &m->capfamilies, m->nfamilies, sizeof *nfams, MAX_FAMILIES);
        if (nfams == NULL)
            goto fail;
        m->families = nfams;
        nf = calloc(1, sizeof *nf);
        if (nf == NULL || (nf->name = strdup(name)) == NULL || (nf->help = strdup(help)) == NULL)
            goto fail;
        nf->type = type;
        f = nf;
    }
    sample_t **nsamples = grow(f->samples, &f->capsamples, f->nsamples, sizeof *nsamples, MAX_SAMPLES);
    if (nsamples == NULL)
        goto fail;
    f->samples = nsamples;
    f->samples[f->nsamples++] = s;
    if (nf != NULL)
        m->families[m->nfamilies++] = nf;
    *created = true;
    return s;
fail:
    family_free(nf);
    sample_free(s);
    return NULL;
}

jn_counter_t *jn_metrics_counter(jn_metrics_t *m, const char *name, const char *help, const char *labels)
{
    bool created;
    sample_t *s = lookup(m, name, help, labels, M_COUNTER, &created);
    return s ? &s->counter : NULL;
}

jn_gauge_t *jn_metrics_gauge(jn_metrics_t *m, const char *name, const char *help, const char *labels)
{
    bool created;
    sample_t *s = lookup(m, name, help, labels, M_GAUGE, &created);
    return s ? &s->gauge : NULL;
}

jn_histogram_t *jn_metrics_histogram(jn_metrics_t *m, const char *name, const char *help,
                                     const char *labels, const double *bounds, size_t nbounds)
{
    if (nbounds > MAX_BOUNDS || (nbounds > 0 && bounds == NULL))
        return NULL;
    for (size_t i = 0; i < nbounds; i++)
        if (isnan(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
            return NULL;
    /* allocated first so that a failure leaves nothing half registered */
    uint64_t *buckets = calloc(nbounds + 1, sizeof *buckets);
    double *copy = malloc((nbounds ? nbounds : 1) * sizeof *copy);
    jn_histogram_t *h = NULL;
    sample_t *s;
    bool created;
    if (buckets == NULL || copy == NULL)
        goto done;
    s = lookup(m, name, help, labels, M_HISTOGRAM, &created);
    if (s == NULL)
        goto done;
    h = &s->hist;
    if (created) {
        if (nbounds > 0)
            memcpy(copy, bounds, nbounds * sizeof *bounds);
        h->bounds = copy;
        h->nbounds = nbounds;
        h->buckets = buckets;
        copy = NULL;
        buckets = NULL;
    }
done:
    free(buckets);
    free(copy);
    return h;
}

void jn_histogram_observe(jn_histogram_t *h, double v)
{
    /* one NaN would make the sum NaN for the life of the process */
    if (isnan(v))
        return;
    size_t lo = 0, hi = h->nbounds; /* first bound >= v, or nbounds (+Inf) */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (h->bounds[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    h->buckets[lo]++;
    h->sum += v;
    h->count++;
}

int jn_metrics_add_collector(jn_metrics_t *m, jn_metrics_collect_cb cb, void *arg)
{
    if (m == NULL || cb == NULL)
        return JN_EINVAL;
    collector_t *nc = grow(m->collectors, &m->capcollectors, m->ncollectors, sizeof *nc, MAX_COLLECTORS);
    if (nc == NULL)
        return m->ncollectors >= MAX_COLLECTORS ? JN_ETOOBIG : JN_ENOMEM;
    m->collectors = nc;
    m->collectors[m->ncollectors++] = (collector_t){cb, arg};
    return 0;
}

/* The shortest decimal that reads back as |v|, in the spellings the format
 * uses for the special values. */
static void fmt_double(char *out, size_t cap, double v)
{
    if (isnan(v)) {
        snprintf(out, cap, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

/* HELP text escapes backslash and newline only (format 0.0.4). */
static int append_help(jn_buf_t *out, const char *help)
{
    const char *run = help;
    for (const char *p = help;; p++) {
        if (*p != '\\' && *p != '\n' && *p != '\0')
            continue;
        int rc = jn_buf_append(out, run, (size_t)(p - run));
        if (rc != 0)
            return rc;
        if (*p == '\0')
            return 0;
        rc = jn_buf_append_str(out, *p == '\\' ? "\\\\" : "\\n");
        if (rc != 0)
            return rc;
        run = p + 1;
    }
}

static int render_histogram(jn_buf_t *out, const char *name, const sample_t *s)
{
    const jn_histogram_t *h = &s->hist;
    const char *sep = s->labels[0] ? "," : "";
    char num[64];
    uint64_t cum = 0;
    int rc = 0;
    for (size_t i = 0; i < h->nbounds && rc == 0; i++) {
        cum += h->buckets[i];
        fmt_double(num, sizeof num, h->bounds[i]);
        rc = jn_buf_printf(out, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, s->labels, sep, num,
                           (unsigned long long)cum);
    }
    if (rc != 0)
        return rc;
    rc = jn_buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, s->labels, sep,
                       (unsigned long long)h->count);
    if (rc != 0)
        return rc;
    const char *lb = s->labels[0] ? "{" : "", *rb = s->labels[0] ? "}" : "";
    fmt_double(num, sizeof num, h->sum);
    rc = jn_buf_printf(out, "%s_sum%s%s%s %s\n", name, lb, s->labels, rb, num);
    if (rc != 0)
        return rc;
    return jn_buf_printf(out, "%s_count%s%s%s %llu\n", name, lb, s->labels, rb,
                         (unsigned long long)h->count);
}

static int render_family(jn_buf_t *out, const family_t *f)
{
    int rc = jn_buf_printf(out, "# HELP %s ", f->name);
    if (rc == 0)
        rc = append_help(out, f->help);
    if (rc == 0)
        rc = jn_buf_printf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
    for (size_t i = 0; i < f->nsamples && rc == 0; i++) {
        const sample_t *s = f->samples[i];
        const char *lb = s->labels[0] ? "{" : "", *rb = s->labels[0] ? "}" : "";
        switch (f->type) {
        case M_COUNTER:
            rc = jn_buf_printf(out, "%s%s%s%s %llu\n", f->name, lb, s->labels, rb,
                               (unsigned long long)s->counter.value);
            break;
        case M_GAUGE:
            rc = jn_buf_printf(out, "%s%s%s%s %lld\n", f->name, lb, s->labels, rb,
                               (long long)s->gauge.value);
            break;
        case M_HISTOGRAM:
            rc = render_histogram(out, f->name, s);
            break;
        }
    }
    return rc;
}

int jn_metrics_render(const jn_metrics_t *m, jn_buf_t *out)
{
    size_t start = out->len;
    int rc = 0;
    for (size_t i = 0; i < m->nfamilies && rc == 0; i++)
        rc = render_family(out, m->families[i]);
    for (size_t i = 0; i < m->ncollectors && rc == 0; i++)
        rc = m->collectors[i].cb(out, m->collectors[i].arg);
    if (rc != 0)
        goto fail;
    return 0;
fail:
    out->len = start; /* never hand out half an exposition */
    return rc < 0 ? rc : JN_EIO;
}
