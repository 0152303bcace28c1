/* test_sse_id.c - the SSE door's position vector and id text (sse_id.c):
 * get/set and ordering, the exact text form, round trips, bare record
 * ids, every malformed form rejected, the length cap, and every truncated
 * prefix of a valid id either parsing or failing cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/broker.h"
#include "proto/sse/sse_id.h"

static char *format(const jn_sse_vec_t *v, const char *stream, uint32_t p, int64_t off)
{
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    assert_int_equal(jn_sse_id_format(v, stream, stream ? strlen(stream) : 0, p, off, &b), 0);
    char *s = malloc(b.len + 1);
    assert_non_null(s);
    memcpy(s, b.data, b.len);
    s[b.len] = '\0';
    jn_buf_free(&b);
    return s;
}

static void test_set_get_and_text(void **state)
{
    (void)state;
    jn_sse_vec_t v;
    jn_sse_vec_init(&v);
    assert_int_equal(jn_sse_vec_get(&v, "a", 1, 0), 0);
    assert_int_equal(jn_sse_vec_set(&v, "sensors", 7, 2, 9), 0);
    assert_int_equal(jn_sse_vec_set(&v, "orders", 6, 0, 3), 0);
    assert_int_equal(jn_sse_vec_set(&v, "sensors", 7, 0, 42), 0);
    assert_int_equal(jn_sse_vec_set(&v, "zero", 4, 5, 0), 0); /* adds nothing */
    assert_int_equal(v.n, 2);
    assert_int_equal(jn_sse_vec_get(&v, "sensors", 7, 0), 42);
    assert_int_equal(jn_sse_vec_get(&v, "sensors", 7, 1), 0);
    assert_int_equal(jn_sse_vec_get(&v, "sensors", 7, 2), 9);
    assert_int_equal(jn_sse_vec_get(&v, "sensors", 7, 7), 0);
    assert_int_equal(jn_sse_vec_get(&v, "sensor", 6, 0), 0);
    char *s = format(&v, "sensors", 2, 8);
    assert_string_equal(s, "sensors/2/8;orders=3;sensors=42,0,9");
    free(s);
    /* No record part; trailing zeros and all-zero streams left out. */
    assert_int_equal(jn_sse_vec_set(&v, "sensors", 7, 2, 0), 0);
    assert_int_equal(jn_sse_vec_set(&v, "orders", 6, 0, 0), 0);
    s = format(&v, NULL, 0, 0);
    assert_string_equal(s, ";sensors=42");
    free(s);
    assert_int_equal(jn_sse_vec_set(&v, "", 0, 0, 1), JN_EINVAL);
    assert_int_equal(jn_sse_vec_set(&v, "a", 1, JN_PARTITIONS_MAX, 1), JN_EINVAL);
    assert_int_equal(jn_sse_vec_set(&v, "a", 1, 0, -1), JN_EINVAL);
    jn_sse_vec_free(&v);
    assert_int_equal(v.n, 0);
}

static void test_round_trip(void **state)
{
    (void)state;
    jn_sse_vec_t v, w;
    jn_sse_vec_init(&v);
    jn_sse_vec_init(&w);
    const char *names[] = {"b", "a.b", "a", "a-b", "Z_9"};
    for (int i = 0; i < 5; i++)
        for (uint32_t p = 0; p < 7; p++)
            assert_int_equal(jn_sse_vec_set(&v, names[i], strlen(names[i]), p, (int64_t)(p * 1000003u + (uint32_t)i)), 0);
    assert_int_equal(jn_sse_vec_set(&v, "a", 1, 3, INT64_MAX), 0);
    char *s = format(&v, "a", 3, INT64_MAX - 1);
    assert_int_equal(jn_sse_id_parse(s, strlen(s), &w), 0);
    for (int i = 0; i < 5; i++)
        for (uint32_t p = 0; p < 8; p++)
            assert_int_equal(jn_sse_vec_get(&w, names[i], strlen(names[i]), p),
                             jn_sse_vec_get(&v, names[i], strlen(names[i]), p));
    char *t = format(&w, "a", 3, INT64_MAX - 1);
    assert_string_equal(s, t);
    free(s);
    free(t);
    jn_sse_vec_free(&v);
    jn_sse_vec_free(&w);
}

static void test_bare_record_id(void **state)
{
    (void)state;
    jn_sse_vec_t v;
    jn_sse_vec_init(&v);
    assert_int_equal(jn_sse_id_parse("logs/3/41", 9, &v), 0);
    assert_int_equal(jn_sse_vec_get(&v, "logs", 4, 3), 42);
    assert_int_equal(jn_sse_vec_get(&v, "logs", 4, 0), 0);
    jn_sse_vec_free(&v);
    /* With a vector, the record part is informative only. */
    assert_int_equal(jn_sse_id_parse("logs/3/41;logs=1,2", 18, &v), 0);
    assert_int_equal(jn_sse_vec_get(&v, "logs", 4, 3), 0);
    assert_int_equal(jn_sse_vec_get(&v, "logs", 4, 1), 2);
    jn_sse_vec_free(&v);
    assert_int_equal(jn_sse_id_parse(";x=5", 4, &v), 0);
    assert_int_equal(jn_sse_vec_get(&v, "x", 1, 0), 5);
    jn_sse_vec_free(&v);
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {
        "", "logs", "logs/1", "logs/1/", "logs//1", "/1/2", "logs/1/2/3", "logs/-1/2", "logs/1/-2",
        "logs/1/+2", "lo gs/1/2", "logs/1024/0", "logs/1/99999999999999999999", "logs/1/9223372036854775807",
        ";", "a/0/1;", ";x", ";x=", ";x=1,", ";x=,1", ";=1", ";x=1;;y=2", ";x=1;x=2", ";x=a", ";x/y=1",
        ";x=1 ", "a/0/1;x=1;", "bad/x/1;x=1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        jn_sse_vec_t v;
        jn_sse_vec_init(&v);
        int rc = jn_sse_id_parse(bad[i], strlen(bad[i]), &v);
        if (rc != JN_EINVAL)
            fail_msg("'%s' parsed (%d)", bad[i], rc);
        assert_int_equal(v.n, 0);
    }
}

static void test_limits(void **state)
{
    (void)state;
    jn_sse_vec_t v;
    jn_sse_vec_init(&v);
    /* Too many partitions with large offsets: the id would pass the cap. */
    for (uint32_t p = 0; p < 1000; p++)
        assert_int_equal(jn_sse_vec_set(&v, "wide", 4, p, 1000000000000LL + p), 0);
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    assert_int_equal(jn_buf_append(&b, "x", 1), 0);
    assert_int_equal(jn_sse_id_format(&v, "wide", 4, 0, 1, &b), JN_ETOOBIG);
    assert_int_equal(b.len, 1); /* unchanged */
    jn_buf_free(&b);
    jn_sse_vec_free(&v);
    char *big = malloc(JN_SSE_ID_MAX + 2);
    assert_non_null(big);
    memset(big, '1', JN_SSE_ID_MAX + 1);
    big[0] = ';';
    big[1] = 'x';
    big[2] = '=';
    assert_int_equal(jn_sse_id_parse(big, JN_SSE_ID_MAX + 1, &v), JN_ETOOBIG);
    free(big);
}

static void test_every_prefix(void **state)
{
    (void)state;
    const char *id = "orders/2/17;orders=5,0,18;returns=1,2";
    for (size_t n = 0; n <= strlen(id); n++) {
        jn_sse_vec_t v;
        jn_sse_vec_init(&v);
        int rc = jn_sse_id_parse(id, n, &v);
        assert_true(rc == 0 || rc == JN_EINVAL);
        jn_sse_vec_free(&v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_get_and_text), cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_bare_record_id),   cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_limits),           cmocka_unit_test(test_every_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
