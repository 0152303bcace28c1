/* test_common.c - unit tests of src/common: errors, buffers, logger,
 * CRC-32C, varints, hashes, clocks and the embedded-asset lookup. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/assets.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/crc32c.h"
#include "common/error.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/varint.h"

/* Our own table: jn_asset_find is tested without the generated one. */
static const unsigned char asset_a[] = "{\"openapi\":\"3.0.3\"}";
static const unsigned char asset_b[] = "hello";
const jn_asset_t jn_assets[] = {
    {"openapi.json", asset_a, sizeof asset_a - 1},
    {"index.html", asset_b, sizeof asset_b - 1},
    {NULL, NULL, 0},
};

/* ---- error -------------------------------------------------------------- */

static void test_error_codes(void **state)
{
    (void)state;
    static const int codes[] = {JN_EAGAIN, JN_EPARTIAL, JN_EPROTO, JN_ECORRUPT, JN_EUNSUPPORTED,
                                JN_EINVAL, JN_ENOENT, JN_EEXIST, JN_ERANGE, JN_ETOOBIG,
                                JN_EAUTH, JN_EPERM, JN_ESTATE, JN_EIO, JN_ECLOSED, JN_ENOMEM};
    size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        assert_non_null(jn_strerror(codes[i]));
        assert_string_not_equal(jn_errcode(codes[i]), "unknown");
        assert_string_not_equal(jn_strerror(codes[i]), "unknown error");
        for (size_t j = i + 1; j < n; j++)
            assert_string_not_equal(jn_errcode(codes[i]), jn_errcode(codes[j]));
    }
    assert_string_equal(jn_errcode(JN_EAGAIN), "would_block");
    assert_string_equal(jn_errcode(JN_EPARTIAL), "partial");
    assert_string_equal(jn_errcode(JN_EPROTO), "protocol_error");
    assert_string_equal(jn_errcode(JN_ECORRUPT), "corrupt");
    assert_string_equal(jn_errcode(JN_EUNSUPPORTED), "unsupported");
    assert_string_equal(jn_errcode(JN_EINVAL), "invalid_argument");
    assert_string_equal(jn_errcode(JN_ENOENT), "not_found");
    assert_string_equal(jn_errcode(JN_EEXIST), "already_exists");
    assert_string_equal(jn_errcode(JN_ERANGE), "out_of_range");
    assert_string_equal(jn_errcode(JN_ETOOBIG), "too_large");
    assert_string_equal(jn_errcode(JN_EAUTH), "unauthorized");
    assert_string_equal(jn_errcode(JN_EPERM), "forbidden");
    assert_string_equal(jn_errcode(JN_ESTATE), "bad_state");
    assert_string_equal(jn_errcode(JN_EIO), "io_error");
    assert_string_equal(jn_errcode(JN_ECLOSED), "closed");
    assert_string_equal(jn_errcode(JN_ENOMEM), "out_of_memory");
    assert_string_equal(jn_errcode(-999), "unknown");
    assert_non_null(jn_strerror(-999));
    assert_int_equal(JN_ERR_CLASS(JN_ECORRUPT), -10);
    assert_int_equal(JN_ERR_CLASS(JN_EPERM), -20);
    assert_int_equal(JN_ERR_CLASS(JN_ENOMEM), -40);
    assert_int_equal(JN_ERR_CLASS(JN_EPARTIAL), JN_EPARTIAL);
}

/* ---- buf ---------------------------------------------------------------- */

static void test_buf_append_and_cap(void **state)
{
    (void)state;
    jn_buf_t b;
    jn_buf_init(&b, 10);
    assert_null(b.data);
    assert_int_equal(jn_buf_append(&b, "abcdef", 6), 0);
    assert_int_equal(jn_buf_append_str(&b, "ghij"), 0); /* exactly at the cap */
    assert_int_equal(b.len, 10);
    assert_memory_equal(b.data, "abcdefghij", 10);
    assert_int_equal(jn_buf_append(&b, "k", 1), JN_ETOOBIG);
    assert_int_equal(jn_buf_put_u8(&b, 1), JN_ETOOBIG);
    assert_int_equal(jn_buf_reserve(&b, 1), JN_ETOOBIG);
    assert_int_equal(jn_buf_reserve(&b, SIZE_MAX), JN_ETOOBIG);
    assert_int_equal(b.len, 10);
    assert_memory_equal(b.data, "abcdefghij", 10);
    assert_true(b.cap <= 10 + 1);

    jn_buf_consume(&b, 4);
    assert_int_equal(b.len, 6);
    assert_memory_equal(b.data, "efghij", 6);
    jn_buf_consume(&b, 6);
    assert_int_equal(b.len, 0);
    jn_buf_reset(&b);
    assert_int_equal(jn_buf_append(&b, "", 0), 0);
    jn_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);

    /* Growth across many appends keeps the content. */
    jn_buf_init(&b, 100000);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(jn_buf_put_u8(&b, (uint8_t)i), 0);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(b.data[i], (uint8_t)i);
    jn_buf_free(&b);

    jn_buf_init(&b, 0);
    assert_int_equal(jn_buf_put_u8(&b, 1), JN_ETOOBIG);
    jn_buf_free(&b);
}

static void test_buf_integers(void **state)
{
    (void)state;
    jn_buf_t b;
    jn_buf_init(&b, 64);
    assert_int_equal(jn_buf_put_u8(&b, 0xab), 0);
    assert_int_equal(jn_buf_put_be16(&b, 0x0102), 0);
    assert_int_equal(jn_buf_put_be32(&b, 0x03040506), 0);
    assert_int_equal(jn_buf_put_be64(&b, 0x0708090a0b0c0d0eull), 0);
    static const uint8_t want[] = {0xab, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
    assert_int_equal(b.len, sizeof want);
    assert_memory_equal(b.data, want, sizeof want);
    assert_int_equal(jn_load_be16(b.data + 1), 0x0102);
    assert_int_equal(jn_load_be32(b.data + 3), 0x03040506);
    assert_true(jn_load_be64(b.data + 7) == 0x0708090a0b0c0d0eull);
    uint8_t t[8];
    jn_store_be64(t, 0xfedcba9876543210ull);
    assert_true(jn_load_be64(t) == 0xfedcba9876543210ull);
    jn_buf_free(&b);

    /* A be64 that does not fit leaves the buffer unchanged. */
    jn_buf_init(&b, 7);
    assert_int_equal(jn_buf_put_be64(&b, 1), JN_ETOOBIG);
    assert_int_equal(b.len, 0);
    jn_buf_free(&b);
}

static void test_buf_printf(void **state)
{
    (void)state;
    jn_buf_t b;
    jn_buf_init(&b, 12);
    assert_int_equal(jn_buf_printf(&b, "%d-%s", 42, "abc"), 0);
    assert_int_equal(b.len, 6);
    assert_memory_equal(b.data, "42-abc", 6);
    assert_int_equal(jn_buf_printf(&b, "%s", "123456"), 0); /* exactly at the cap */
    assert_int_equal(b.len, 12);
    assert_memory_equal(b.data, "42-abc123456", 12);
    assert_int_equal(jn_buf_printf(&b, "x"), JN_ETOOBIG);
    assert_int_equal(b.len, 12);
    assert_int_equal(jn_buf_printf(&b, "%s", ""), 0);
    assert_int_equal(b.len, 12);
    jn_buf_reset(&b);
    assert_int_equal(jn_buf_printf(&b, "%020d", 1), JN_ETOOBIG);
    assert_int_equal(b.len, 0);
    jn_buf_free(&b);
}

/* ---- log ---------------------------------------------------------------- */

static void test_log_levels(void **state)
{
    (void)state;
    assert_int_equal(jn_log_level_parse("debug"), JN_LOG_DEBUG);
    assert_int_equal(jn_log_level_parse("info"), JN_LOG_INFO);
    assert_int_equal(jn_log_level_parse("warn"), JN_LOG_WARN);
    assert_int_equal(jn_log_level_parse("error"), JN_LOG_ERROR);
    assert_int_equal(jn_log_level_parse("off"), JN_LOG_OFF);
    assert_int_equal(jn_log_level_parse("verbose"), -1);
    assert_int_equal(jn_log_level_parse(""), -1);
    assert_int_equal(jn_log_level_parse(NULL), -1);
    assert_int_equal(jn_log_get_level(), JN_LOG_INFO);
}

/* Runs the logger with stderr redirected to a file in a fresh mkdtemp()
 * directory and returns what it wrote (NUL-terminated) in |out|. */
static void capture_log(char *out, size_t cap)
{
    char dir[] = "/tmp/jn_test_common.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/log", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fd, 2) >= 0);

    jn_log_set_level(JN_LOG_WARN);
    jn_info("hidden %d", 1);
    jn_warn("visible %d", 2);
    jn_error("%s", "boom");
    jn_log_set_level(JN_LOG_OFF);
    jn_error("hidden too");
    jn_log_set_level(JN_LOG_INFO);
    fflush(stderr);

    assert_true(dup2(saved, 2) >= 0);
    close(saved);
    ssize_t n = pread(fd, out, cap - 1, 0);
    assert_true(n >= 0);
    out[n] = '\0';
    close(fd);
    unlink(path);
    rmdir(dir);
}

/* Checks "YYYY-MM-DDTHH:MM:SS.mmmZ " at |s|. */
static void assert_timestamp(const char *s)
{
    static const char pat[] = "dddd-dd-ddTdd:dd:dd.dddZ ";
    for (size_t i = 0; i < sizeof pat - 1; i++) {
        if (pat[i] == 'd')
            assert_true(s[i] >= '0' && s[i] <= '9');
        else
            assert_int_equal(s[i], pat[i]);
    }
}

static void test_log_format(void **state)
{
    (void)state;
    char out[1024];
    capture_log(out, sizeof out);
    char *nl = strchr(out, '\n');
    assert_non_null(nl);
    *nl = '\0';
    char *second = nl + 1;
    assert_timestamp(out);
    assert_string_equal(out + 25, "WARN visible 2");
    nl = strchr(second, '\n');
    assert_non_null(nl);
    *nl = '\0';
    assert_timestamp(second);
    assert_string_equal(second + 25, "ERROR boom");
    assert_string_equal(nl + 1, ""); /* nothing else was written */
}

/* ---- crc32c ------------------------------------------------------------- */

static void test_crc32c_vectors(void **state)
{
    (void)state;
    uint8_t b[32];
    uint32_t (*const fns[])(uint32_t, const void *, size_t) = {jn_crc32c, jn__crc32c_sw,
                                                               jn__crc32c_hw};
    for (size_t f = 0; f < 3; f++) {
        assert_int_equal(fns[f](0, "123456789", 9), 0xE3069283u);
        assert_int_equal(fns[f](0, "", 0), 0);
        /* RFC 3720 (iSCSI) appendix B.4 vectors. */
        memset(b, 0, sizeof b);
        assert_int_equal(fns[f](0, b, 32), 0x8A9136AAu);
        memset(b, 0xff, sizeof b);
        assert_int_equal(fns[f](0, b, 32), 0x62A8AB43u);
        for (int i = 0; i < 32; i++)
            b[i] = (uint8_t)i;
        assert_int_equal(fns[f](0, b, 32), 0x46DD794Eu);
        for (int i = 0; i < 32; i++)
            b[i] = (uint8_t)(31 - i);
        assert_int_equal(fns[f](0, b, 32), 0x113FDB5Cu);
        /* Extending piece by piece equals one pass. */
        assert_int_equal(fns[f](fns[f](0, "12345", 5), "6789", 4), 0xE3069283u);
    }
}

static void test_crc32c_paths_agree(void **state)
{
    (void)state;
    print_message("crc32c: SSE4.2 %s on this CPU\n",
                  jn__crc32c_hw_available() ? "available" : "not available");
    enum { N = 1100 };
    uint8_t *buf = malloc(N + 16);
    assert_non_null(buf);
    uint32_t x = 2463534242u; /* xorshift32: deterministic test data */
    for (size_t i = 0; i < N + 16; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (uint8_t)x;
    }
    for (size_t align = 0; align < 8; align++)
        for (size_t len = 0; len <= N; len += (len < 80 ? 1 : 37)) {
            uint32_t sw = jn__crc32c_sw(0, buf + align, len);
            uint32_t hw = jn__crc32c_hw(0, buf + align, len);
            assert_int_equal(sw, hw);
            assert_int_equal(jn_crc32c(0, buf + align, len), sw);
            /* And with a running CRC split at an odd place. */
            size_t cut = len / 3;
            assert_int_equal(jn__crc32c_hw(jn__crc32c_sw(0, buf + align, cut), buf + align + cut,
                                           len - cut),
                             sw);
        }
    free(buf);
}

/* ---- varint ------------------------------------------------------------- */

static void test_varint_known_encodings(void **state)
{
    (void)state;
    static const struct {
        int32_t v;
        uint8_t enc[5];
        size_t n;
    } cases[] = {
        {0, {0x00}, 1},
        {-1, {0x01}, 1},
        {1, {0x02}, 1},
        {-2, {0x03}, 1},
        {63, {0x7e}, 1},
        {-64, {0x7f}, 1},
        {64, {0x80, 0x01}, 2},
        {-65, {0x81, 0x01}, 2},
        {150, {0xac, 0x02}, 2},
        {INT32_MAX, {0xfe, 0xff, 0xff, 0xff, 0x0f}, 5},
        {INT32_MIN, {0xff, 0xff, 0xff, 0xff, 0x0f}, 5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t out[JN_VARINT_MAX];
        assert_int_equal(jn_varint_put(out, cases[i].v), cases[i].n);
        assert_memory_equal(out, cases[i].enc, cases[i].n);
        assert_int_equal(jn_varint_size(cases[i].v), cases[i].n);
        int32_t got = 12345;
        assert_int_equal(jn_varint_get(cases[i].enc, cases[i].n, &got), (int)cases[i].n);
        assert_int_equal(got, cases[i].v);
        /* As a varlong the zigzag encoding of these values is the same. */
        int64_t got64;
        assert_int_equal(jn_varlong_get(cases[i].enc, cases[i].n, &got64), (int)cases[i].n);
        assert_true(got64 == cases[i].v);
    }
    uint8_t out[JN_VARLONG_MAX];
    static const uint8_t max64[] = {0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const uint8_t min64[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    assert_int_equal(jn_varlong_put(out, INT64_MAX), 10);
    assert_memory_equal(out, max64, 10);
    assert_int_equal(jn_varlong_put(out, INT64_MIN), 10);
    assert_memory_equal(out, min64, 10);
    assert_int_equal(jn_uvarint_put(out, 300), 2);
    assert_int_equal(out[0], 0xac);
    assert_int_equal(out[1], 0x02);
    assert_int_equal(jn_uvarint_put(out, UINT32_MAX), 5);
    static const uint8_t umax[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    assert_memory_equal(out, umax, 5);
}

static void test_varint_round_trips(void **state)
{
    (void)state;
    static const int64_t vals[] = {0, 1, -1, 63, 64, -64, -65, 127, 128, 8191, 8192, -8192,
                                   -8193, 1048575, 1048576, 134217727, 134217728, INT32_MAX,
                                   INT32_MIN, (int64_t)INT32_MAX + 1, (int64_t)INT32_MIN - 1,
                                   INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1,
                                   1625000000000, -1625000000000};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        uint8_t out[JN_VARLONG_MAX];
        int64_t v64 = vals[i];
        size_t n = jn_varlong_put(out, v64);
        assert_int_equal(n, jn_varlong_size(v64));
        int64_t g64;
        assert_int_equal(jn_varlong_get(out, n, &g64), (int)n);
        assert_true(g64 == v64);
        /* Every proper prefix is partial. */
        for (size_t k = 0; k < n; k++)
            assert_int_equal(jn_varlong_get(out, k, &g64), JN_EPARTIAL);
        if (v64 >= INT32_MIN && v64 <= INT32_MAX) {
            int32_t v = (int32_t)v64, g;
            n = jn_varint_put(out, v);
            assert_int_equal(n, jn_varint_size(v));
            assert_int_equal(jn_varint_get(out, n, &g), (int)n);
            assert_int_equal(g, v);
            for (size_t k = 0; k < n; k++)
                assert_int_equal(jn_varint_get(out, k, &g), JN_EPARTIAL);
            uint32_t u = (uint32_t)v, gu;
            n = jn_uvarint_put(out, u);
            assert_int_equal(jn_uvarint_get(out, n, &gu), (int)n);
            assert_int_equal(gu, u);
            for (size_t k = 0; k < n; k++)
                assert_int_equal(jn_uvarint_get(out, k, &gu), JN_EPARTIAL);
        }
    }
    /* Exhaustive-ish: a sweep of 32-bit values. */
    for (int64_t v = INT32_MIN; v <= INT32_MAX; v += 65537) {
        uint8_t out[JN_VARINT_MAX];
        int32_t g;
        size_t n = jn_varint_put(out, (int32_t)v);
        assert_int_equal(jn_varint_get(out, n, &g), (int)n);
        assert_int_equal(g, (int32_t)v);
    }
}

static void test_varint_malformed(void **state)
{
    (void)state;
    int32_t v = 7;
    int64_t v64 = 7;
    uint32_t u = 7;
    /* Nothing at all. */
    assert_int_equal(jn_varint_get((const uint8_t *)"", 0, &v), JN_EPARTIAL);
    assert_int_equal(jn_varlong_get((const uint8_t *)"", 0, &v64), JN_EPARTIAL);
    assert_int_equal(jn_uvarint_get((const uint8_t *)"", 0, &u), JN_EPARTIAL);

    /* Overlong: a 6th group for a 32-bit value, an 11th for 64-bit. */
    static const uint8_t six[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    assert_int_equal(jn_varint_get(six, sizeof six, &v), JN_EPROTO);
    assert_int_equal(jn_uvarint_get(six, sizeof six, &u), JN_EPROTO);
    /* Decided at the 5th byte: more input would not help. */
    assert_int_equal(jn_varint_get(six, 5, &v), JN_EPROTO);
    static const uint8_t eleven[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                     0x80, 0x80, 0x80, 0x80, 0x00};
    assert_int_equal(jn_varlong_get(eleven, sizeof eleven, &v64), JN_EPROTO);
    assert_int_equal(jn_varlong_get(eleven, 10, &v64), JN_EPROTO);
    assert_int_equal(jn_varlong_get(eleven, 9, &v64), JN_EPARTIAL);

    /* Overflow: bits past 32 / 64 in the last group. */
    static const uint8_t of32[] = {0xff, 0xff, 0xff, 0xff, 0x10};
    assert_int_equal(jn_varint_get(of32, sizeof of32, &v), JN_EPROTO);
    assert_int_equal(jn_uvarint_get(of32, sizeof of32, &u), JN_EPROTO);
    static const uint8_t of64[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
    assert_int_equal(jn_varlong_get(of64, sizeof of64, &v64), JN_EPROTO);
    /* But a 5-byte 32-bit value is fine as a varlong. */
    int64_t big;
    assert_int_equal(jn_varlong_get(of32, sizeof of32, &big), 5);
    assert_true(big == -INT64_C(0x88000000)); /* zigzag of 0x10fffffff */
    assert_true(v == 7 && v64 == 7 && u == 7); /* failures leave outputs alone */

    /* Non-minimal but in range: accepted, as Kafka's client does. */
    static const uint8_t padded[] = {0x80, 0x00};
    assert_int_equal(jn_varint_get(padded, sizeof padded, &v), 2);
    assert_int_equal(v, 0);
    static const uint8_t padded5[] = {0x82, 0x80, 0x80, 0x80, 0x00};
    assert_int_equal(jn_varint_get(padded5, sizeof padded5, &v), 5);
    assert_int_equal(v, 1);
    /* Stops at the first group without continuation. */
    static const uint8_t two[] = {0x02, 0x04};
    assert_int_equal(jn_varint_get(two, sizeof two, &v), 1);
    assert_int_equal(v, 1);
}

/* ---- hash --------------------------------------------------------------- */

static void test_murmur2_kafka_vectors(void **state)
{
    (void)state;
    /* Kafka's clients UtilsTest.testMurmur2 and values from Kafka's
     * Utils.murmur2 quoted by other ports. */
    static const struct {
        const char *s;
        int32_t h;
    } cases[] = {
        {"21", -973932308},
        {"foobar", -790332482},
        {"a-little-bit-long-string", -985981536},
        {"a-little-bit-longer-string", -1486304829},
        {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
        {"abc", 479470107},
        {"1", -1993445489},
        {"12", 126087238},
        {"123", -267702483},
        {"1234", -1614185708},
        {"12345", -1188365604},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(jn_murmur2(cases[i].s, strlen(cases[i].s)), cases[i].h);

    /* toPositive clears the sign bit: 1173551340 for "21". */
    assert_int_equal(jn_murmur2_partition("21", 2, 7), 1173551340u % 7);
    assert_int_equal(jn_murmur2_partition("21", 2, 7), 3);
    assert_int_equal(jn_murmur2_partition("foobar", 6, 10), 6);
    assert_int_equal(jn_murmur2_partition("abc", 3, 1), 0);
    assert_int_equal(jn_murmur2_partition("abc", 3, 0), 0);
}

static void test_fnv1a(void **state)
{
    (void)state;
    assert_true(jn_fnv1a("", 0) == 0xcbf29ce484222325ull);
    assert_true(jn_fnv1a("a", 1) == 0xaf63dc4c8601ec8cull);
    assert_true(jn_fnv1a("foobar", 6) == 0x85944171f73967e8ull);
}

/* ---- clock -------------------------------------------------------------- */

static void test_clock(void **state)
{
    (void)state;
    int64_t w = jn_wall_ms();
    assert_true(w > INT64_C(1577836800000)); /* after 2020-01-01 */
    assert_true(jn_clock_now(&jn_clock_real) >= w);
    uint64_t a = jn_mono_ns();
    uint64_t b = jn_mono_ns();
    assert_true(b >= a);
}

/* ---- assets ------------------------------------------------------------- */

static void test_assets(void **state)
{
    (void)state;
    const jn_asset_t *a = jn_asset_find("openapi.json");
    assert_non_null(a);
    assert_int_equal(a->len, strlen("{\"openapi\":\"3.0.3\"}"));
    assert_int_equal(a->data[a->len], '\0');
    a = jn_asset_find("index.html");
    assert_non_null(a);
    assert_memory_equal(a->data, "hello", 5);
    assert_null(jn_asset_find("missing.txt"));
    assert_null(jn_asset_find("openapi"));
    assert_null(jn_asset_find(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_codes),
        cmocka_unit_test(test_buf_append_and_cap),
        cmocka_unit_test(test_buf_integers),
        cmocka_unit_test(test_buf_printf),
        cmocka_unit_test(test_log_levels),
        cmocka_unit_test(test_log_format),
        cmocka_unit_test(test_crc32c_vectors),
        cmocka_unit_test(test_crc32c_paths_agree),
        cmocka_unit_test(test_varint_known_encodings),
        cmocka_unit_test(test_varint_round_trips),
        cmocka_unit_test(test_varint_malformed),
        cmocka_unit_test(test_murmur2_kafka_vectors),
        cmocka_unit_test(test_fnv1a),
        cmocka_unit_test(test_clock),
        cmocka_unit_test(test_assets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
