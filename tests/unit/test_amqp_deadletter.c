/* test_amqp_deadletter.c - x-death headers and the dead-letter cycle rule
 * of the AMQP door (src/proto/amqp/deadletter.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "proto/amqp/codec.h"
#include "proto/amqp/deadletter.h"

static jn_amqp_death_t death(const char *queue, const char *reason)
{
    jn_amqp_death_t d = {
        .queue = queue,
        .reason = reason,
        .exchange = (const uint8_t *)"ex",
        .exchange_len = 2,
        .routing_key = (const uint8_t *)"rk",
        .routing_key_len = 2,
        .time_s = 1700000000,
    };
    return d;
}

/* Dead-letters a message with headers |in| (table entries) into |out|. */
static void die(jn_buf_t *in, jn_buf_t *out, const jn_amqp_death_t *d)
{
    jn_buf_reset(out);
    assert_int_equal(jn_amqp_dead_letter_headers(out, in->data, in->len, d), 0);
    assert_int_equal(jn_amqp_table_validate(out->data, out->len), 0);
}

static const char *str_of(const uint8_t *tbl, size_t len, const char *key, char *buf, size_t cap)
{
    jn_amqp_value_t v;
    if (jn_amqp_table_get(tbl, len, key, &v) != 1 || v.type != 'S' || v.len >= cap)
        return NULL;
    memcpy(buf, v.p, v.len);
    buf[v.len] = 0;
    return buf;
}

/* Entry |i| of x-death as a table view. */
static jn_amqp_value_t entry(const jn_buf_t *b, int i, int *count)
{
    jn_amqp_value_t xd, v;
    assert_int_equal(jn_amqp_table_get(b->data, b->len, "x-death", &xd), 1);
    assert_int_equal(xd.type, 'A');
    jn_amqp_iter_t it;
    jn_amqp_iter_init(&it, xd.p, xd.len);
    int n = 0;
    jn_amqp_value_t found = {0};
    while (jn_amqp_array_next(&it, &v) == 1) {
        assert_int_equal(v.type, 'F');
        if (n == i)
            found = v;
        n++;
    }
    *count = n;
    return found;
}

static void test_first_death(void **state)
{
    (void)state;
    jn_buf_t in, out;
    jn_buf_init(&in, 1 << 16);
    jn_buf_init(&out, 1 << 16);
    assert_int_equal(jn_amqp_put_str(&in, "app", "v", 1), 0);
    jn_amqp_death_t d = death("q1", "expired");
    d.expiration = (const uint8_t *)"500";
    d.expiration_len = 3;
    die(&in, &out, &d);
    char s[64];
    assert_string_equal(str_of(out.data, out.len, "app", s, sizeof s), "v");
    assert_string_equal(str_of(out.data, out.len, "x-first-death-reason", s, sizeof s), "expired");
    assert_string_equal(str_of(out.data, out.len, "x-first-death-queue", s, sizeof s), "q1");
    assert_string_equal(str_of(out.data, out.len, "x-first-death-exchange", s, sizeof s), "ex");
    assert_string_equal(str_of(out.data, out.len, "x-last-death-queue", s, sizeof s), "q1");
    int n;
    jn_amqp_value_t e = entry(&out, 0, &n);
    assert_int_equal(n, 1);
    assert_string_equal(str_of(e.p, e.len, "queue", s, sizeof s), "q1");
    assert_string_equal(str_of(e.p, e.len, "reason", s, sizeof s), "expired");
    assert_string_equal(str_of(e.p, e.len, "exchange", s, sizeof s), "ex");
    assert_string_equal(str_of(e.p, e.len, "original-expiration", s, sizeof s), "500");
    jn_amqp_value_t v;
    assert_int_equal(jn_amqp_table_get(e.p, e.len, "count", &v), 1);
    assert_int_equal(v.type, 'l');
    assert_int_equal(v.i, 1);
    assert_int_equal(jn_amqp_table_get(e.p, e.len, "time", &v), 1);
    assert_int_equal(v.type, 'T');
    assert_int_equal(v.u, 1700000000);
    assert_int_equal(jn_amqp_table_get(e.p, e.len, "routing-keys", &v), 1);
    assert_int_equal(v.type, 'A');
    jn_amqp_iter_t it;
    jn_amqp_value_t k;
    jn_amqp_iter_init(&it, v.p, v.len);
    assert_int_equal(jn_amqp_array_next(&it, &k), 1);
    assert_int_equal(k.len, 2);
    assert_memory_equal(k.p, "rk", 2);
    jn_buf_free(&in);
    jn_buf_free(&out);
}

/* A second death in the same queue for the same reason counts up and
 * comes first; another pair gets its own entry; first-death stays. */
static void test_repeated_deaths(void **state)
{
    (void)state;
    jn_buf_t a, b;
    jn_buf_init(&a, 1 << 16);
    jn_buf_init(&b, 1 << 16);
    jn_amqp_death_t d1 = death("q1", "rejected"), d2 = death("q2", "expired");
    die(&a, &b, &d1);  /* b: [q1/rejected] */
    die(&b, &a, &d2);  /* a: [q2/expired, q1/rejected] */
    die(&a, &b, &d1);  /* b: [q1/rejected x2, q2/expired] */
    int n;
    char s[64];
    jn_amqp_value_t e = entry(&b, 0, &n), v;
    assert_int_equal(n, 2);
    assert_string_equal(str_of(e.p, e.len, "queue", s, sizeof s), "q1");
    assert_int_equal(jn_amqp_table_get(e.p, e.len, "count", &v), 1);
    assert_int_equal(v.i, 2);
    e = entry(&b, 1, &n);
    assert_string_equal(str_of(e.p, e.len, "queue", s, sizeof s), "q2");
    assert_int_equal(jn_amqp_table_get(e.p, e.len, "count", &v), 1);
    assert_int_equal(v.i, 1);
    assert_string_equal(str_of(b.data, b.len, "x-first-death-queue", s, sizeof s), "q1");
    assert_string_equal(str_of(b.data, b.len, "x-first-death-reason", s, sizeof s), "rejected");
    assert_string_equal(str_of(b.data, b.len, "x-last-death-queue", s, sizeof s), "q1");
    /* one x-first-death-queue only, one x-last-death-queue only */
    jn_amqp_iter_t it;
    jn_amqp_str_t k;
    int firsts = 0, lasts = 0;
    jn_amqp_iter_init(&it, b.data, b.len);
    while (jn_amqp_table_next(&it, &k, &v) == 1) {
        firsts += k.len == 19 && memcmp(k.p, "x-first-death-queue", 19) == 0;
        lasts += k.len == 18 && memcmp(k.p, "x-last-death-queue", 18) == 0;
    }
    assert_int_equal(firsts, 1);
    assert_int_equal(lasts, 1);
    jn_buf_free(&a);
    jn_buf_free(&b);
}

static void test_cycles(void **state)
{
    (void)state;
    jn_buf_t a, b;
    jn_buf_init(&a, 1 << 16);
    jn_buf_init(&b, 1 << 16);
    /* No history: never a cycle. */
    assert_false(jn_amqp_dead_letter_cycle(a.data, a.len, "q1"));
    /* q1 expires back into itself: dropped. */
    jn_amqp_death_t e1 = death("q1", "expired"), e2 = death("q2", "maxlen"), r1 = death("q1", "rejected");
    die(&a, &b, &e1);
    assert_true(jn_amqp_dead_letter_cycle(b.data, b.len, "q1"));
    assert_false(jn_amqp_dead_letter_cycle(b.data, b.len, "q2"));
    /* q1 -> q2 -> q1 by expiry and overflow: dropped at q1. */
    die(&b, &a, &e2);
    assert_true(jn_amqp_dead_letter_cycle(a.data, a.len, "q1"));
    assert_true(jn_amqp_dead_letter_cycle(a.data, a.len, "q2"));
    /* A rejection in the cycle: a client decided, so it goes on. */
    jn_buf_reset(&a);
    die(&a, &b, &r1);
    assert_false(jn_amqp_dead_letter_cycle(b.data, b.len, "q1"));
    die(&b, &a, &e2); /* [q2/maxlen, q1/rejected] */
    assert_false(jn_amqp_dead_letter_cycle(a.data, a.len, "q1"));
    assert_true(jn_amqp_dead_letter_cycle(a.data, a.len, "q2"));
    jn_buf_free(&a);
    jn_buf_free(&b);
}

static void test_bad_input(void **state)
{
    (void)state;
    jn_buf_t in, out;
    jn_buf_init(&in, 1 << 16);
    jn_buf_init(&out, 64); /* too small for the headers */
    jn_amqp_death_t d = death("q1", "expired");
    assert_int_equal(jn_amqp_dead_letter_headers(&out, in.data, in.len, &d), JN_ETOOBIG);
    assert_int_equal(out.len, 0);
    static const uint8_t bad[] = {5, 'x', 'y'}; /* truncated key */
    jn_buf_free(&out);
    jn_buf_init(&out, 1 << 16);
    assert_int_equal(jn_amqp_dead_letter_headers(&out, bad, sizeof bad, &d), JN_EPROTO);
    assert_int_equal(out.len, 0);
    /* An x-death that is not an array is replaced. */
    assert_int_equal(jn_amqp_put_str(&in, "x-death", "junk", 4), 0);
    die(&in, &out, &d);
    int n;
    entry(&out, 0, &n);
    assert_int_equal(n, 1);
    jn_buf_free(&in);
    jn_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_death),
        cmocka_unit_test(test_repeated_deaths),
        cmocka_unit_test(test_cycles),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
