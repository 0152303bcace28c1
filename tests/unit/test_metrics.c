/* test_metrics.c - the registry and its exact Prometheus text rendering. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/metrics.h"

static int collect_streams(jn_buf_t *out, void *arg)
{
    const int *n = arg;
    return jn_buf_printf(out,
                         "# HELP junction_stream_records Records per stream.\n"
                         "# TYPE junction_stream_records gauge\n"
                         "junction_stream_records{stream=\"s\"} %d\n",
                         *n);
}

static int collect_fail(jn_buf_t *out, void *arg)
{
    (void)arg;
    int rc = jn_buf_append_str(out, "partial");
    return rc ? rc : JN_EIO;
}

static void test_render_exact(void **state)
{
    (void)state;
    jn_metrics_t *m = jn_metrics_new();
    assert_non_null(m);
    jn_counter_t *rest = jn_metrics_counter(m, "junction_http_requests_total", "HTTP requests.",
                                            "door=\"rest\",code=\"200\"");
    jn_counter_t *ws = jn_metrics_counter(m, "junction_http_requests_total", "HTTP requests.",
                                          "door=\"ws\",code=\"101\"");
    assert_non_null(rest);
    assert_non_null(ws);
    assert_ptr_equal(jn_metrics_counter(m, "junction_http_requests_total", "HTTP requests.",
                                        "door=\"rest\",code=\"200\""), rest);
    jn_gauge_t *conns = jn_metrics_gauge(m, "junction_connections", "Open connections.\nBy door \\ all.", "");
    assert_non_null(conns);
    /* a name registered as one type cannot come back as another */
    assert_null(jn_metrics_gauge(m, "junction_http_requests_total", "x", ""));
    assert_null(jn_metrics_counter(m, "bad name", "x", ""));
    assert_null(jn_metrics_counter(m, "0bad", "x", ""));

    static const double bounds[] = {0.1, 0.5, 1};
    jn_histogram_t *lat = jn_metrics_histogram(m, "junction_latency_seconds", "Latency.", "door=\"mqtt\"",
                                               bounds, 3);
    jn_histogram_t *plain = jn_metrics_histogram(m, "junction_size_bytes", "Sizes.", "", bounds, 1);
    assert_non_null(lat);
    assert_non_null(plain);
    assert_ptr_equal(jn_metrics_histogram(m, "junction_latency_seconds", "Latency.", "door=\"mqtt\"", bounds, 3),
                     lat);
    static const double unsorted[] = {1, 0.5};
    assert_null(jn_metrics_histogram(m, "junction_other", "x", "", unsorted, 2));

    jn_counter_add(rest, 41);
    jn_counter_inc(rest);
    jn_counter_inc(ws);
    conns->value = -3;
    jn_histogram_observe(lat, 0.05);
    jn_histogram_observe(lat, 0.1); /* le is inclusive */
    jn_histogram_observe(lat, 0.75);
    jn_histogram_observe(lat, 3);
    jn_histogram_observe(lat, NAN); /* NaN is ignored */
    jn_histogram_observe(plain, 2);

    int n = 7;
    assert_int_equal(jn_metrics_add_collector(m, collect_streams, &n), 0);

    jn_buf_t out;
    jn_buf_init(&out, 1 << 16);
    assert_int_equal(jn_metrics_render(m, &out), 0);
    const char *want =
        "# HELP junction_http_requests_total HTTP requests.\n"
        "# TYPE junction_http_requests_total counter\n"
        "junction_http_requests_total{door=\"rest\",code=\"200\"} 42\n"
        "junction_http_requests_total{door=\"ws\",code=\"101\"} 1\n"
        "# HELP junction_connections Open connections.\\nBy door \\\\ all.\n"
        "# TYPE junction_connections gauge\n"
        "junction_connections -3\n"
        "# HELP junction_latency_seconds Latency.\n"
        "# TYPE junction_latency_seconds histogram\n"
        "junction_latency_seconds_bucket{door=\"mqtt\",le=\"0.1\"} 2\n"
        "junction_latency_seconds_bucket{door=\"mqtt\",le=\"0.5\"} 2\n"
        "junction_latency_seconds_bucket{door=\"mqtt\",le=\"1\"} 3\n"
        "junction_latency_seconds_bucket{door=\"mqtt\",le=\"+Inf\"} 4\n"
        "junction_latency_seconds_sum{door=\"mqtt\"} 3.9\n"
        "junction_latency_seconds_count{door=\"mqtt\"} 4\n"
        "# HELP junction_size_bytes Sizes.\n"
        "# TYPE junction_size_bytes histogram\n"
        "junction_size_bytes_bucket{le=\"0.1\"} 0\n"
        "junction_size_bytes_bucket{le=\"+Inf\"} 1\n"
        "junction_size_bytes_sum 2\n"
        "junction_size_bytes_count 1\n"
        "# HELP junction_stream_records Records per stream.\n"
        "# TYPE junction_stream_records gauge\n"
        "junction_stream_records{stream=\"s\"} 7\n";
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.data, want, out.len);

    /* a failing collector leaves the buffer as it was */
    assert_int_equal(jn_metrics_add_collector(m, collect_fail, NULL), 0);
    jn_buf_reset(&out);
    assert_int_equal(jn_buf_append_str(&out, "keep"), 0);
    assert_int_equal(jn_metrics_render(m, &out), JN_EIO);
    assert_int_equal(out.len, 4);

    /* so does hitting the buffer's cap */
    jn_buf_t small;
    jn_buf_init(&small, 100);
    assert_int_equal(jn_metrics_render(m, &small), JN_ETOOBIG);
    assert_int_equal(small.len, 0);
    jn_buf_free(&small);
    jn_buf_free(&out);
    jn_metrics_free(m);
}

static void test_latency_buckets(void **state)
{
    (void)state;
    assert_int_equal(jn_metrics_latency_nbuckets, 16);
    assert_true(jn_metrics_latency_buckets[0] == 0.0001);
    assert_true(jn_metrics_latency_buckets[15] == 10);
    jn_metrics_t *m = jn_metrics_new();
    jn_histogram_t *h = jn_metrics_histogram(m, "lat", "L.", "", jn_metrics_latency_buckets,
                                             jn_metrics_latency_nbuckets);
    assert_non_null(h);
    jn_histogram_observe(h, 0.0003);
    jn_buf_t out;
    jn_buf_init(&out, 1 << 16);
    assert_int_equal(jn_metrics_render(m, &out), 0);
    assert_int_equal(jn_buf_put_u8(&out, 0), 0);
    const char *text = (const char *)out.data;
    assert_non_null(strstr(text, "lat_bucket{le=\"0.00025\"} 0\n"));
    assert_non_null(strstr(text, "lat_bucket{le=\"0.0005\"} 1\n"));
    assert_non_null(strstr(text, "lat_bucket{le=\"2.5\"} 1\n"));
    assert_non_null(strstr(text, "lat_bucket{le=\"10\"} 1\n"));
    assert_non_null(strstr(text, "lat_sum 0.0003\n"));
    jn_buf_free(&out);
    jn_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_exact),
        cmocka_unit_test(test_latency_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
