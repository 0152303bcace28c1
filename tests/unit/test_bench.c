/* test_bench.c - the bench's building blocks: the histogram's error bound
 * and merge, the payload stamp codec, option and URL parsing (bad usage is
 * exit code 2), the HTTP response framing and MQTT remaining lengths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bench/bench.h"
#include "bench/bench_int.h"
#include "bench/hist.h"
#include "bench/stamp.h"

/* ---- histogram -------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    /* xorshift64*: deterministic, so a failure reproduces. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

/* Log-uniform between 1 us and ~17 s, like latencies. */
static uint64_t rnd_latency(void)
{
    int bits = 10 + (int)(rnd() % 25);
    return ((uint64_t)1 << bits) + rnd() % ((uint64_t)1 << bits);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The exact percentile by the same definition: the value at rank
 * ceil(p * n), p given as num/den to stay in integers. */
static uint64_t exact(const uint64_t *sorted, size_t n, uint64_t num, uint64_t den)
{
    uint64_t rank = (num * n + den - 1) / den;
    if (rank < 1)
        rank = 1;
    return sorted[rank - 1];
}

static void assert_close(uint64_t got, uint64_t want, double rel)
{
    double err = got > want ? (double)(got - want) : (double)(want - got);
    if (err > (double)want * rel)
        fail_msg("got %llu, want %llu within %g", (unsigned long long)got, (unsigned long long)want, rel);
}

static void test_hist_percentiles(void **state)
{
    (void)state;
    jn_hist_t h;
    assert_int_equal(jn_hist_init(&h, 1000, 3600ull * 1000000000ull, 3), 0);
    assert_true(jn_hist_rel_error(&h) <= 0.001);
    size_t n = 200000;
    uint64_t *v = malloc(n * sizeof(*v));
    assert_non_null(v);
    long double sum = 0;
    for (size_t i = 0; i < n; i++) {
        v[i] = rnd_latency();
        sum += v[i];
        jn_hist_record(&h, v[i]);
    }
    qsort(v, n, sizeof(*v), cmp_u64);
    assert_int_equal(jn_hist_count(&h), n);
    static const struct { double p; uint64_t num, den; } ps[] = {
        {1, 1, 100}, {50, 1, 2}, {90, 9, 10}, {99, 99, 100}, {99.9, 999, 1000}, {99.99, 9999, 10000},
    };
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
        assert_close(jn_hist_percentile(&h, ps[i].p), exact(v, n, ps[i].num, ps[i].den), jn_hist_rel_error(&h));
    assert_int_equal(jn_hist_percentile(&h, 100), v[n - 1]);
    assert_int_equal(jn_hist_percentile(&h, 0), v[0]);
    assert_int_equal(jn_hist_max(&h), v[n - 1]);
    assert_int_equal(jn_hist_min(&h), v[0]);
    assert_close((uint64_t)jn_hist_mean(&h), (uint64_t)(sum / n), 1e-9);
    free(v);
    jn_hist_free(&h);
}

/* Every value from 1 us to 10 ms in small steps: each one's own percentile
 * comes back within the bound. */
static void test_hist_each_value(void **state)
{
    (void)state;
    jn_hist_t h;
    assert_int_equal(jn_hist_init(&h, 1000, 3600ull * 1000000000ull, 3), 0);
    for (uint64_t x = 1000; x < 10000000; x = x + x / 97 + 1) {
        jn_hist_reset(&h);
        jn_hist_record(&h, x);
        jn_hist_record(&h, 2 * x);
        assert_close(jn_hist_percentile(&h, 50), x, jn_hist_rel_error(&h));
    }
    jn_hist_free(&h);
}

static void test_hist_merge(void **state)
{
    (void)state;
    jn_hist_t a, b, all, other;
    assert_int_equal(jn_hist_init(&a, 1000, 3600000000000ull, 3), 0);
    assert_int_equal(jn_hist_init(&b, 1000, 3600000000000ull, 3), 0);
    assert_int_equal(jn_hist_init(&all, 1000, 3600000000000ull, 3), 0);
    assert_int_equal(jn_hist_init(&other, 1000, 3600000000000ull, 2), 0);
    for (int i = 0; i < 50000; i++) {
        uint64_t x = rnd_latency();
        jn_hist_record(i % 3 ? &a : &b, x);
        jn_hist_record(&all, x);
    }
    assert_int_equal(jn_hist_merge(&a, &b), 0);
    assert_int_equal(jn_hist_count(&a), 50000);
    assert_int_equal(jn_hist_max(&a), jn_hist_max(&all));
    assert_int_equal(jn_hist_min(&a), jn_hist_min(&all));
    assert_true(jn_hist_mean(&a) == jn_hist_mean(&all) ||
                (jn_hist_mean(&a) - jn_hist_mean(&all)) / jn_hist_mean(&all) < 1e-12);
    for (double p = 0; p <= 100; p += 0.5)
        assert_int_equal(jn_hist_percentile(&a, p), jn_hist_percentile(&all, p));
    /* Different shapes do not merge, and the target is left alone. */
    assert_int_equal(jn_hist_merge(&a, &other), JN_EINVAL);
    assert_int_equal(jn_hist_count(&a), 50000);
    jn_hist_free(&a);
    jn_hist_free(&b);
    jn_hist_free(&all);
    jn_hist_free(&other);
}

static void test_hist_edges(void **state)
{
    (void)state;
    jn_hist_t h;
    assert_int_equal(jn_hist_init(&h, 0, 100, 3), JN_EINVAL);
    assert_int_equal(jn_hist_init(&h, 1000, 1500, 3), JN_EINVAL);
    assert_int_equal(jn_hist_init(&h, 1000, 1000000, 0), JN_EINVAL);
    assert_int_equal(jn_hist_init(&h, 1000, 1000000, 6), JN_EINVAL);
    assert_int_equal(jn_hist_init(&h, 1000, 1000000, 3), 0);
    assert_int_equal(jn_hist_percentile(&h, 50), 0);
    assert_int_equal(jn_hist_count(&h), 0);
    assert_true(jn_hist_mean(&h) == 0.0);
    /* Above the range: counted, saturated, max kept exact. */
    jn_hist_record(&h, 5000000);
    jn_hist_record_n(&h, 7, 3);
    assert_int_equal(jn_hist_count(&h), 4);
    assert_int_equal(h.saturated, 1);
    assert_int_equal(jn_hist_max(&h), 5000000);
    assert_int_equal(jn_hist_min(&h), 7);
    assert_int_equal(jn_hist_percentile(&h, 75), 7);
    assert_int_equal(jn_hist_percentile(&h, 100), 5000000);
    jn_hist_free(&h);
    /* A coarse lowest: the bound still holds from |lowest| up. */
    assert_int_equal(jn_hist_init(&h, 1000000, 1000000000000ull, 2), 0);
    jn_hist_record(&h, 1234567);
    assert_close(jn_hist_percentile(&h, 50), 1234567, jn_hist_rel_error(&h));
    assert_true(jn_hist_rel_error(&h) <= 0.01);
    jn_hist_free(&h);
}

/* ---- stamp ------------------------------------------------------------ */

static void test_stamp_round_trip(void **state)
{
    (void)state;
    uint8_t buf[100];
    assert_int_equal(jn_stamp_fill(buf, sizeof(buf), 0xdeadbeef, 0x0123456789abcdefull), 0);
    assert_memory_equal(buf, "JNB1\xde\xad\xbe\xef\x01\x23\x45\x67\x89\xab\xcd\xef", 16);
    for (size_t i = 16; i < sizeof(buf); i++)
        assert_true(buf[i] >= 'a' && buf[i] <= 'z');
    uint32_t seq = 0;
    uint64_t ns = 0;
    assert_int_equal(jn_stamp_read(buf, sizeof(buf), &seq, &ns), 0);
    assert_int_equal(seq, 0xdeadbeef);
    assert_int_equal(ns, 0x0123456789abcdefull);
    /* Restamping keeps the filler. */
    assert_int_equal(jn_stamp_write(buf, sizeof(buf), 7, 42), 0);
    assert_int_equal(jn_stamp_read(buf, 16, &seq, &ns), 0);
    assert_int_equal(seq, 7);
    assert_int_equal(ns, 42);
    assert_int_equal(buf[16], 'a');
    assert_int_equal(jn_stamp_read(buf, 16, NULL, NULL), 0);
}

static void test_stamp_bad(void **state)
{
    (void)state;
    uint8_t buf[32];
    assert_int_equal(jn_stamp_fill(buf, 15, 1, 2), JN_EINVAL);
    assert_int_equal(jn_stamp_write(buf, 0, 1, 2), JN_EINVAL);
    assert_int_equal(jn_stamp_fill(buf, sizeof(buf), 1, 2), 0);
    uint32_t seq = 99;
    uint64_t ns = 99;
    for (size_t len = 0; len < JN_STAMP_LEN; len++)
        assert_int_equal(jn_stamp_read(buf, len, &seq, &ns), JN_EPROTO);
    buf[3] = '2';
    assert_int_equal(jn_stamp_read(buf, sizeof(buf), &seq, &ns), JN_EPROTO);
    assert_int_equal(seq, 99);
    assert_int_equal(ns, 99);
}

/* ---- options ---------------------------------------------------------- */

static int parse(const char *line, jn_bench_opts_t *o)
{
    char copy[512];
    char *argv[32];
    int argc = 0;
    snprintf(copy, sizeof(copy), "%s", line);
    /* Split on single spaces in place. */
    for (char *p = copy; *p && argc < 32;) {
        argv[argc++] = p;
        char *sp = strchr(p, ' ');
        if (!sp)
            break;
        *sp = 0;
        p = sp + 1;
    }
    char err[256];
    int rc = jn__bench_parse(argc, argv, o, err, sizeof(err));
    if (rc)
        assert_true(err[0] != 0);
    return rc;
}

static void test_opts_good(void **state)
{
    (void)state;
    jn_bench_opts_t o;
    assert_int_equal(parse("bench http", &o), 0);
    assert_ptr_equal(o.door, &jn__bench_door_http);
    assert_true(o.duration_s == 10);
    assert_int_equal(o.size, 64);
    assert_int_equal(o.count, 0);
    assert_false(o.json);
    jn__bench_opts_free(&o);
    assert_int_equal(parse("bench mqtt --duration 0.5 --count=1000 --size 1024 --json --quiet --qos 2 "
                           "--publishers 3 --subscribers 0 --topics 8 --rate 100.5 --port 1884",
                           &o), 0);
    assert_ptr_equal(o.door, &jn__bench_door_mqtt);
    assert_true(o.duration_s == 0.5);
    assert_int_equal(o.count, 1000);
    assert_int_equal(o.size, 1024);
    assert_int_equal(o.port, 1884);
    assert_true(o.json && o.quiet);
    jn__bench_opts_free(&o);
    assert_int_equal(parse("bench --help", &o), 0);
    assert_true(o.help);
    jn__bench_opts_free(&o);
    /* The new doors parse their options; amqp picks its queue by durability. */
    assert_int_equal(parse("bench amqp --persistent --confirms --ack-every 10 --prefetch 10", &o), 0);
    assert_ptr_equal(o.door, &jn__bench_door_amqp);
    jn__bench_opts_free(&o);
    assert_int_equal(parse("bench amqp --exchange amq.topic --routing-key a.b --consumers 0", &o), 0);
    jn__bench_opts_free(&o);
    assert_int_equal(parse("bench kafka --acks all --batch 500 --mode consume --topic t.1", &o), 0);
    assert_ptr_equal(o.door, &jn__bench_door_kafka);
    jn__bench_opts_free(&o);
    assert_int_equal(parse("bench kafka --acks -1", &o), 0);
    jn__bench_opts_free(&o);
    assert_int_equal(parse("bench ws --subscribers 1000 --rate 200 --ack --subject a/b", &o), 0);
    assert_ptr_equal(o.door, &jn__bench_door_ws);
    jn__bench_opts_free(&o);
}

static void test_opts_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "bench",
        "bench nosuchdoor",
        "bench http --nosuch 1",
        "bench http --duration",
        "bench http --duration 0",
        "bench http --duration abc",
        "bench http --duration nan",
        "bench http --count -1",
        "bench http --size 15",
        "bench http --size 12x",
        "bench http --json=yes",
        "bench http --connections 0",
        "bench http --pipeline 2000",
        "bench http --port 70000",
        "bench http --qos 1",
        "bench http stray",
        "bench http --content-type=",
        "bench mqtt --qos 3",
        "bench mqtt --topic a/#",
        "bench mqtt --publishers 0",
        "bench mqtt --connections 4",
        "bench amqp --ack-every 100 --prefetch 10",
        "bench amqp --routing-key a.b",
        "bench amqp --prefetch 70000",
        "bench kafka --acks 2",
        "bench kafka --mode both",
        "bench kafka --topic a/b",
        "bench kafka --batch 0",
        "bench ws --subject a/#",
        "bench ws --token a&b",
        "bench ws --publishers 0",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        jn_bench_opts_t o;
        if (parse(bad[i], &o) != 2)
            fail_msg("accepted: %s", bad[i]);
        assert_null(o.cfg);
    }
}

/* The entry point answers bad usage with 2, before touching the network. */
static void test_main_usage(void **state)
{
    (void)state;
    char *a1[] = {"bench", "http", "--size", "3", NULL};
    assert_int_equal(jn_bench_main(4, a1), 2);
    char *a2[] = {"bench", NULL};
    assert_int_equal(jn_bench_main(1, a2), 2);
    char *a3[] = {"bench", "http", "--url", "ftp://127.0.0.1/", NULL};
    assert_int_equal(jn_bench_main(4, a3), 2);
    char *a4[] = {"bench", "mqtt", "--url", "mqtt://", NULL};
    assert_int_equal(jn_bench_main(4, a4), 2);
}

static void test_url_split(void **state)
{
    (void)state;
    char scheme[16], host[64], path[64];
    int port;
    assert_int_equal(jn__bench_url_split("http://127.0.0.1:8080/v1/publish/a?x=1", scheme, sizeof(scheme), host,
                                         sizeof(host), &port, path, sizeof(path)), 0);
    assert_string_equal(scheme, "http");
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_string_equal(path, "/v1/publish/a?x=1");
    assert_int_equal(jn__bench_url_split("mqtt://localhost", scheme, sizeof(scheme), host, sizeof(host), &port,
                                         path, sizeof(path)), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 0);
    assert_string_equal(path, "/");
    assert_int_equal(jn__bench_url_split("http://[::1]:81?q", scheme, sizeof(scheme), host, sizeof(host), &port,
                                         path, sizeof(path)), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 81);
    assert_string_equal(path, "/?q");
    static const char *const bad[] = {"", "127.0.0.1:80", "http://", "http://:80/", "http://h:/", "http://h:0",
                                      "http://h:65536", "http://h:8x/", "http://u@h/", "http://[::1/",
                                      "verylongschemename://h/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (jn__bench_url_split(bad[i], scheme, sizeof(scheme), host, sizeof(host), &port, path, sizeof(path)) !=
            JN_EINVAL)
            fail_msg("accepted URL: %s", bad[i]);
}

/* ---- HTTP response framing -------------------------------------------- */

static int resp(const char *s, int *status, bool *close)
{
    return jn__bench_http_response((const uint8_t *)s, strlen(s), status, close);
}

static void test_http_response(void **state)
{
    (void)state;
    int st = 0;
    bool cl = true;
    const char *r1 = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\ncontent-length:  5 \r\n\r\nhelloHTTP/1.1";
    assert_int_equal(resp(r1, &st, &cl), (int)strlen(r1) - 8);
    assert_int_equal(st, 201);
    assert_false(cl);
    /* Every truncated prefix asks for more. */
    for (size_t n = 0; n < strlen(r1) - 8; n++)
        assert_int_equal(jn__bench_http_response((const uint8_t *)r1, n, &st, &cl), JN_EPARTIAL);

    const char *r2 = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\nA\r\n0123456789\r\n0\r\nT: v\r\n\r\n";
    assert_int_equal(resp(r2, &st, &cl), (int)strlen(r2));
    assert_int_equal(st, 200);
    for (size_t n = 0; n < strlen(r2); n++)
        assert_int_equal(jn__bench_http_response((const uint8_t *)r2, n, &st, &cl), JN_EPARTIAL);

    const char *r3 = "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(resp(r3, &st, &cl), (int)strlen(r3));
    assert_int_equal(st, 404);
    assert_true(cl);
    const char *r4 = "HTTP/1.1 204 No Content\r\nConnection: keep-alive, Close\r\n\r\n";
    assert_int_equal(resp(r4, &st, &cl), (int)strlen(r4));
    assert_true(cl);
    const char *r5 = "HTTP/1.1 100 Continue\r\n\r\n";
    assert_int_equal(resp(r5, &st, &cl), (int)strlen(r5));
    assert_int_equal(st, 100);
    const char *r6 = "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok";
    assert_int_equal(resp(r6, &st, &cl), (int)strlen(r6));

    assert_int_equal(resp("HTTP/1.1 200 OK\r\n\r\n", &st, &cl), JN_EUNSUPPORTED);
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", &st, &cl), JN_EUNSUPPORTED);
    static const char *const bad[] = {
        "HTTP/2.0 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "ICY 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (resp(bad[i], &st, &cl) != JN_EPROTO)
            fail_msg("accepted response %zu: %s", i, bad[i]);
}

/* ---- MQTT remaining length -------------------------------------------- */

static void test_mqtt_len(void **state)
{
    (void)state;
    static const uint32_t vals[] = {0, 1, 127, 128, 16383, 16384, 2097151, 2097152, 268435455};
    static const int sizes[] = {1, 1, 1, 2, 2, 3, 3, 4, 4};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        uint8_t b[4];
        int n = jn__bench_mqtt_len_put(b, vals[i]);
        assert_int_equal(n, sizes[i]);
        uint32_t v = 0;
        assert_int_equal(jn__bench_mqtt_len_get(b, (size_t)n, &v), n);
        assert_int_equal(v, vals[i]);
        for (int k = 0; k < n; k++)
            assert_int_equal(jn__bench_mqtt_len_get(b, (size_t)k, &v), JN_EPARTIAL);
    }
    uint8_t b[5];
    assert_int_equal(jn__bench_mqtt_len_put(b, 268435456u), JN_EINVAL);
    uint32_t v;
    static const uint8_t five[] = {0xff, 0xff, 0xff, 0xff, 0x01};
    assert_int_equal(jn__bench_mqtt_len_get(five, 5, &v), JN_EPROTO);
    static const uint8_t overlong[] = {0x80, 0x00};
    assert_int_equal(jn__bench_mqtt_len_get(overlong, 2, &v), JN_EPROTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_percentiles),
        cmocka_unit_test(test_hist_each_value),
        cmocka_unit_test(test_hist_merge),
        cmocka_unit_test(test_hist_edges),
        cmocka_unit_test(test_stamp_round_trip),
        cmocka_unit_test(test_stamp_bad),
        cmocka_unit_test(test_opts_good),
        cmocka_unit_test(test_opts_bad),
        cmocka_unit_test(test_main_usage),
        cmocka_unit_test(test_url_split),
        cmocka_unit_test(test_http_response),
        cmocka_unit_test(test_mqtt_len),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
