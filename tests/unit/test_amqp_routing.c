/* test_amqp_routing.c - topic patterns with '*' and '#', headers
 * exchange matching (all/any, -with-x), pattern -> subject filter mapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "proto/amqp/codec.h"
#include "proto/amqp/routing.h"

static bool tm(const char *p, const char *k)
{
    return jn_amqp_topic_match(p, strlen(p), k, strlen(k));
}

static void topic(void **state)
{
    (void)state;
    assert_true(tm("a.b.c", "a.b.c"));
    assert_false(tm("a.b.c", "a.b"));
    assert_true(tm("a.*.c", "a.x.c"));
    assert_false(tm("a.*.c", "a.c"));
    assert_false(tm("a.*", "a.b.c"));
    assert_true(tm("a.#", "a"));
    assert_true(tm("a.#", "a.b.c"));
    assert_true(tm("#", ""));
    assert_true(tm("#", "x.y"));
    assert_true(tm("#.c", "a.b.c"));
    assert_true(tm("a.#.c", "a.c"));
    assert_true(tm("a.#.c", "a.b.b.c"));
    assert_false(tm("a.#.c", "a.b.d"));
    assert_true(tm("*.#", "a"));
    assert_false(tm("*.#", ""));
    assert_true(tm("#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.x", "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.y.x"));
    assert_false(tm("#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.x", "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.y.z"));
    assert_true(tm("", ""));
    assert_false(tm("", "a"));
}

static void filter_map(void **state)
{
    (void)state;
    char f[64];
    assert_int_equal(jn_amqp_topic_to_filter("sensors.*.temp", 14, f, sizeof f), 1);
    assert_string_equal(f, "sensors/+/temp");
    assert_int_equal(jn_amqp_topic_to_filter("orders.#", 8, f, sizeof f), 1);
    assert_string_equal(f, "orders/#");
    assert_int_equal(jn_amqp_topic_to_filter("a.#.c", 5, f, sizeof f), 0);
    assert_string_equal(f, "a/#");
    assert_int_equal(jn_amqp_topic_to_filter("a.b/c", 5, f, sizeof f), 0);
    assert_int_equal(jn_amqp_topic_to_filter("a.b", 3, f, 3), -1);
    char k[16];
    assert_int_equal(jn_amqp_subject_to_key("a/b/c", 5, k, sizeof k), 5);
    assert_string_equal(k, "a.b.c");
}

/* Builds a table of string pairs; "!name" puts a 'V'. */
static size_t table(uint8_t *out, const char *const *kv, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 2) {
        size_t kl = strlen(kv[i]), vl = strlen(kv[i + 1]);
        out[o++] = (uint8_t)kl;
        memcpy(out + o, kv[i], kl);
        o += kl;
        if (kv[i + 1][0] == '!') {
            out[o++] = 'V';
            continue;
        }
        out[o++] = 'S';
        out[o++] = 0;
        out[o++] = 0;
        out[o++] = 0;
        out[o++] = (uint8_t)vl;
        memcpy(out + o, kv[i + 1], vl);
        o += vl;
    }
    return o;
}

static void headers(void **state)
{
    (void)state;
    uint8_t a[256], m[256];
    const char *all[] = {"x-match", "all", "fmt", "pdf", "type", "report"};
    const char *any[] = {"x-match", "any", "fmt", "pdf", "type", "report"};
    const char *msg1[] = {"fmt", "pdf", "type", "report", "x-extra", "1"};
    const char *msg2[] = {"fmt", "pdf"};
    size_t al = table(a, all, 6), ml = table(m, msg1, 6);
    assert_true(jn_amqp_headers_match(a, al, m, ml));
    ml = table(m, msg2, 2);
    assert_false(jn_amqp_headers_match(a, al, m, ml));
    al = table(a, any, 6);
    assert_true(jn_amqp_headers_match(a, al, m, ml));
    assert_false(jn_amqp_headers_match(a, al, NULL, 0));
    /* presence only */
    const char *pres[] = {"fmt", "!"};
    al = table(a, pres, 2);
    assert_true(jn_amqp_headers_match(a, al, m, ml));
    /* x- keys ignored unless -with-x */
    const char *wx[] = {"x-match", "all-with-x", "x-k", "1"};
    const char *mx[] = {"x-k", "1"};
    const char *nox[] = {"x-match", "all", "x-k", "2"};
    al = table(a, wx, 4);
    ml = table(m, mx, 2);
    assert_true(jn_amqp_headers_match(a, al, m, ml));
    al = table(a, nox, 4);
    assert_true(jn_amqp_headers_match(a, al, m, ml));
    /* integers compare across widths */
    const uint8_t bi[] = {1, 'n', 'b', 5};
    const uint8_t li[] = {1, 'n', 'l', 0, 0, 0, 0, 0, 0, 0, 5};
    assert_true(jn_amqp_headers_match(bi, sizeof bi, li, sizeof li));
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(topic), cmocka_unit_test(filter_map), cmocka_unit_test(headers)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
