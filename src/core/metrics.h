/* metrics.h - counters, gauges and histograms, rendered in the Prometheus
 * text exposition format.
 *
 * Metrics are registered at setup time and return stable pointers; the hot
 * path only increments (single loop thread, no atomics). Dynamic families
 * (per stream, per connection) are rendered by collectors.
 */
#ifndef JN_METRICS_H
#define JN_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "../common/buf.h"
#include "../common/error.h"

typedef struct jn_metrics jn_metrics_t;
typedef struct jn_counter { uint64_t value; } jn_counter_t;
typedef struct jn_gauge { int64_t value; } jn_gauge_t;
typedef struct jn_histogram jn_histogram_t;

jn_metrics_t *jn_metrics_new(void);
void jn_metrics_free(jn_metrics_t *m);

/* |name| is a metric family name (junction_http_requests_total), |labels|
 * the label set without braces (door="rest",code="200") or "" for none.
 * Registering the same name and labels twice returns the same metric. The
 * same name must always be registered with the same type and help. Returns
 * NULL on allocation failure. */
jn_counter_t *jn_metrics_counter(jn_metrics_t *m, const char *name, const char *help, const char *labels);
jn_gauge_t *jn_metrics_gauge(jn_metrics_t *m, const char *name, const char *help, const char *labels);
/* |bounds| are the bucket upper bounds, ascending (copied); +Inf is implied. */
jn_histogram_t *jn_metrics_histogram(jn_metrics_t *m, const char *name, const char *help,
                                     const char *labels, const double *bounds, size_t nbounds);
static inline void jn_counter_add(jn_counter_t *c, uint64_t n) { c->value += n; }
static inline void jn_counter_inc(jn_counter_t *c) { c->value++; }
void jn_histogram_observe(jn_histogram_t *h, double v);

/* A collector appends whole families in exposition format to |out| at
 * render time (the broker renders per-stream figures this way). */
typedef int (*jn_metrics_collect_cb)(jn_buf_t *out, void *arg);
int jn_metrics_add_collector(jn_metrics_t *m, jn_metrics_collect_cb cb, void *arg);

/* Renders every family (HELP, TYPE, samples) and then the collectors. */
int jn_metrics_render(const jn_metrics_t *m, jn_buf_t *out) JN_MUST_CHECK;

/* Default latency buckets in seconds (100 µs .. 10 s). */
extern const double jn_metrics_latency_buckets[];
extern const size_t jn_metrics_latency_nbuckets;

#endif
