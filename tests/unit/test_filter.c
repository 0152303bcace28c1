/* test_filter.c - subject/filter validation, matching, covers/overlaps and
 * the filter trie (cross-checked against jn_filter_match on random data). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/filter.h"

#define S(x) (x), (sizeof(x) - 1)

static void test_subject_validate(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
        int ok;
    } cases[] = {
        {S("a"), 1},
        {S("sensors/kitchen/temp"), 1},
        {S("/"), 1},
        {S("a//b"), 1},
        {S("/leading"), 1},
        {S("trailing/"), 1},
        {S("$SYS/broker"), 1},
        {S("caf\xc3\xa9"), 1},                 /* U+00E9 */
        {S("\xe2\x82\xac"), 1},                /* U+20AC */
        {S("\xed\x9f\xbf"), 1},                /* U+D7FF, last before surrogates */
        {S("\xee\x80\x80"), 1},                /* U+E000 */
        {S("\xef\xbf\xbf"), 1},                /* U+FFFF */
        {S("\xf0\x90\x80\x80"), 1},            /* U+10000 */
        {S("\xf4\x8f\xbf\xbf"), 1},            /* U+10FFFF */
        {S(""), 0},
        {S("a+"), 0},
        {S("+"), 0},
        {S("a/#"), 0},
        {S("a/b#"), 0},
        {S("a\0b"), 0},                        /* NUL */
        {S("\xc0\x80"), 0},                    /* overlong NUL */
        {S("\xc1\xbf"), 0},                    /* overlong */
        {S("\xe0\x80\xaf"), 0},                /* overlong '/' */
        {S("\xe0\x9f\xbf"), 0},                /* overlong */
        {S("\xf0\x8f\xbf\xbf"), 0},            /* overlong */
        {S("\xed\xa0\x80"), 0},                /* U+D800 */
        {S("\xed\xbf\xbf"), 0},                /* U+DFFF */
        {S("\xf4\x90\x80\x80"), 0},            /* U+110000 */
        {S("\xf5\x80\x80\x80"), 0},
        {S("\xff"), 0},
        {S("\x80"), 0},                        /* lone continuation */
        {S("\xc3"), 0},                        /* truncated */
        {S("\xe2\x82"), 0},                    /* truncated */
        {S("\xe2\x28\xa1"), 0},                /* bad continuation */
        {S("\xf0\x90\x80"), 0},                /* truncated */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = jn_subject_validate(cases[i].s, cases[i].len);
        if ((rc == 0) != cases[i].ok)
            fail_msg("subject case %zu: rc %d, want ok=%d", i, rc, cases[i].ok);
    }
    char big[JN_SUBJECT_MAX + 1];
    memset(big, 'x', sizeof big);
    assert_int_equal(jn_subject_validate(big, JN_SUBJECT_MAX), 0);
    assert_int_equal(jn_subject_validate(big, JN_SUBJECT_MAX + 1), JN_EINVAL);
    assert_int_equal(jn_subject_validate(NULL, 0), JN_EINVAL);
}

static void test_filter_validate(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
        int ok;
    } cases[] = {
        {S("a"), 1},
        {S("#"), 1},
        {S("+"), 1},
        {S("+/+"), 1},
        {S("/+"), 1},
        {S("+/"), 1},
        {S("sport/tennis/#"), 1},
        {S("sport/+/player1"), 1},
        {S("+/tennis/#"), 1},
        {S("$SYS/#"), 1},
        {S("a//#"), 1},
        {S("caf\xc3\xa9/+"), 1},
        {S(""), 0},
        {S("sport/tennis#"), 0},
        {S("sport/tennis/#/ranking"), 0},
        {S("#/a"), 0},
        {S("sport+"), 0},
        {S("a/+b"), 0},
        {S("a/b+/c"), 0},
        {S("##"), 0},
        {S("++"), 0},
        {S("a/#/"), 0},
        {S("a\0/#"), 0},
        {S("\xed\xa0\x80/#"), 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = jn_filter_validate(cases[i].s, cases[i].len);
        if ((rc == 0) != cases[i].ok)
            fail_msg("filter case %zu (%s): rc %d, want ok=%d", i, cases[i].s, rc, cases[i].ok);
    }
    assert_true(jn_filter_has_wildcard(S("a/+/b")));
    assert_true(jn_filter_has_wildcard(S("#")));
    assert_true(jn_filter_has_wildcard(S("a/#")));
    assert_false(jn_filter_has_wildcard(S("a/b")));
    assert_false(jn_filter_has_wildcard(S("/")));
}

static void test_match(void **state)
{
    (void)state;
    static const struct {
        const char *f, *s;
        int match;
    } cases[] = {
        /* MQTT 3.1.1 / 5.0 section 4.7 examples */
        {"sport/tennis/player1/#", "sport/tennis/player1", 1},
        {"sport/tennis/player1/#", "sport/tennis/player1/ranking", 1},
        {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", 1},
        {"sport/#", "sport", 1},
        {"#", "sport/tennis", 1},
        {"#", "/", 1},
        {"sport/tennis/+", "sport/tennis/player1", 1},
        {"sport/tennis/+", "sport/tennis/player2", 1},
        {"sport/tennis/+", "sport/tennis/player1/ranking", 0},
        {"sport/+", "sport", 0},
        {"sport/+", "sport/", 1},
        {"+/+", "/finance", 1},
        {"/+", "/finance", 1},
        {"+", "/finance", 0},
        {"+/tennis/#", "sport/tennis/player1", 1},
        {"+/tennis/#", "sport/tennis", 1},
        {"+/tennis/#", "sport/golf", 0},
        {"#", "$SYS/uptime", 0},
        {"+/monitor/Clients", "$SYS/monitor/Clients", 0},
        {"$SYS/#", "$SYS/monitor/Clients", 1},
        {"$SYS/monitor/+", "$SYS/monitor/Clients", 1},
        {"$SYS/#", "$SYS", 1},
        /* the rest */
        {"sensors/#", "sensors", 1},
        {"sensors/#", "sensorsx", 0},
        {"sensors/#", "sensors/a/b/c", 1},
        {"a/+/c", "a//c", 1},
        {"a/+", "a/", 1},
        {"+", "", 1},
        {"a/b", "a/b", 1},
        {"a/b", "a/b/", 0},
        {"a/b/", "a/b", 0},
        {"a/b", "a/bc", 0},
        {"a/b", "a", 0},
        {"a", "A", 0},
        {"+/+/+", "a/b/c", 1},
        {"+/+/+", "a/b", 0},
        {"+/+/+", "a/b/c/d", 0},
        {"a/#", "a/", 1},
        {"x/$y/#", "x/$y/z", 1},
        {"+/$y", "x/$y", 1},
        {"$", "$", 1},
        {"+", "$", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool m = jn_filter_match(cases[i].f, strlen(cases[i].f), cases[i].s, strlen(cases[i].s));
        if (m != (bool)cases[i].match)
            fail_msg("match case %zu: %s vs %s gave %d", i, cases[i].f, cases[i].s, m);
    }
}

static void test_covers(void **state)
{
    (void)state;
    static const struct {
        const char *outer, *inner;
        int covers;
    } cases[] = {
        {"#", "a/b", 1},
        {"#", "+/b", 1},
        {"#", "#", 1},
        {"#", "$SYS/x", 0},
        {"#", "$SYS/#", 0},
        {"+/#", "$SYS/#", 0},
        {"$SYS/#", "$SYS/x/+", 1},
        {"a/#", "a", 1},
        {"a/#", "a/b/#", 1},
        {"a/#", "a/+/#", 1},
        {"a/#", "b/#", 0},
        {"a/+", "a/b", 1},
        {"a/+", "a/+", 1},
        {"a/+", "a/#", 0},
        {"a/+", "a/b/c", 0},
        {"a/+/#", "a/#", 0},
        {"a/+/#", "a/b", 1},
        {"a/b", "a/+", 0},
        {"a/b", "a/b", 1},
        {"a/b", "a/b/c", 0},
        {"a/b/c", "a/b", 0},
        {"+", "a", 1},
        {"+", "", 1},
        {"+", "a/b", 0},
        {"+/+", "+/+", 1},
        {"sensors/#", "sensors/+/temp", 1},
        {"sensors/+/temp", "sensors/kitchen/temp", 1},
        {"sensors/+/temp", "sensors/#", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool c = jn_filter_covers(cases[i].outer, strlen(cases[i].outer), cases[i].inner,
                                  strlen(cases[i].inner));
        if (c != (bool)cases[i].covers)
            fail_msg("covers case %zu: %s over %s gave %d", i, cases[i].outer, cases[i].inner, c);
    }
}

static void test_overlaps(void **state)
{
    (void)state;
    static const struct {
        const char *a, *b;
        int overlaps;
    } cases[] = {
        {"#", "a/b", 1},
        {"#", "$SYS/x", 0},
        {"+/x", "$SYS/x", 0},
        {"+/x", "+/x", 1},
        {"#", "+", 1},
        {"a/+", "+/b", 1},
        {"a/+", "b/+", 0},
        {"a/#", "a", 1},
        {"a", "a/#", 1},
        {"a/b", "a/b/c", 0},
        {"a/+/c", "a/b/+", 1},
        {"a/+/c", "a/b/d", 0},
        {"a/+", "a/b/c", 0},
        {"a/+", "a/#", 1},
        {"$SYS/#", "$SYS/+", 1},
        {"$SYS/#", "+/#", 0},
        {"x/+", "x/$y", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *a = cases[i].a, *b = cases[i].b;
        bool o1 = jn_filter_overlaps(a, strlen(a), b, strlen(b));
        bool o2 = jn_filter_overlaps(b, strlen(b), a, strlen(a));
        if (o1 != (bool)cases[i].overlaps || o2 != o1)
            fail_msg("overlaps case %zu: %s, %s gave %d/%d", i, a, b, o1, o2);
    }
}

/* ---- trie ---- */

typedef struct hits {
    void *seen[64];
    size_t n;
} hits_t;

static void collect(void *value, void *arg)
{
    hits_t *h = arg;
    assert_true(h->n < 64);
    h->seen[h->n++] = value;
}

static bool hit(const hits_t *h, void *v)
{
    for (size_t i = 0; i < h->n; i++)
        if (h->seen[i] == v)
            return true;
    return false;
}

static hits_t match_all(jn_trie_t *t, const char *s)
{
    hits_t h = {.n = 0};
    jn_trie_match(t, s, strlen(s), collect, &h);
    return h;
}

static void test_trie_basic(void **state)
{
    (void)state;
    jn_trie_t *t = jn_trie_new();
    assert_non_null(t);
    int v[10];
    assert_int_equal(jn_trie_add(t, S("sensors/#"), &v[0]), 0);
    assert_int_equal(jn_trie_add(t, S("sensors/+/temp"), &v[1]), 0);
    assert_int_equal(jn_trie_add(t, S("sensors/kitchen/temp"), &v[2]), 0);
    assert_int_equal(jn_trie_add(t, S("#"), &v[3]), 0);
    assert_int_equal(jn_trie_add(t, S("$SYS/#"), &v[4]), 0);
    assert_int_equal(jn_trie_add(t, S("+/+"), &v[5]), 0);
    assert_int_equal(jn_trie_add(t, S("sensors/kitchen/temp"), &v[6]), 0);
    assert_int_equal(jn_trie_add(t, S("sensors/kitchen/temp"), &v[2]), JN_EEXIST);
    assert_int_equal(jn_trie_add(t, S("sensors/#/x"), &v[7]), JN_EINVAL);
    assert_int_equal(jn_trie_add(t, S(""), &v[7]), JN_EINVAL);
    assert_int_equal(jn_trie_count(t), 7);

    hits_t h = match_all(t, "sensors/kitchen/temp");
    assert_int_equal(h.n, 5);
    assert_true(hit(&h, &v[0]) && hit(&h, &v[1]) && hit(&h, &v[2]) && hit(&h, &v[3]) && hit(&h, &v[6]));

    h = match_all(t, "sensors");
    assert_int_equal(h.n, 2);
    assert_true(hit(&h, &v[0]) && hit(&h, &v[3]));

    h = match_all(t, "sensors/x");
    assert_int_equal(h.n, 3);
    assert_true(hit(&h, &v[0]) && hit(&h, &v[3]) && hit(&h, &v[5]));

    h = match_all(t, "$SYS/uptime");
    assert_int_equal(h.n, 1);
    assert_true(hit(&h, &v[4]));

    h = match_all(t, "other/a/b");
    assert_int_equal(h.n, 1);
    assert_true(hit(&h, &v[3]));

    assert_int_equal(jn_trie_remove(t, S("sensors/kitchen/temp"), &v[2]), 0);
    assert_int_equal(jn_trie_remove(t, S("sensors/kitchen/temp"), &v[2]), JN_ENOENT);
    assert_int_equal(jn_trie_remove(t, S("sensors/kitchen/temp"), &v[9]), JN_ENOENT);
    assert_int_equal(jn_trie_remove(t, S("no/such"), &v[0]), JN_ENOENT);
    assert_int_equal(jn_trie_remove(t, S("sensors/+"), &v[1]), JN_ENOENT);
    assert_int_equal(jn_trie_count(t), 6);
    h = match_all(t, "sensors/kitchen/temp");
    assert_int_equal(h.n, 4);
    assert_false(hit(&h, &v[2]));
    assert_true(hit(&h, &v[6]));

    assert_int_equal(jn_trie_remove(t, S("sensors/kitchen/temp"), &v[6]), 0);
    assert_int_equal(jn_trie_remove(t, S("#"), &v[3]), 0);
    h = match_all(t, "sensors/kitchen/temp");
    assert_int_equal(h.n, 2);
    assert_true(hit(&h, &v[0]) && hit(&h, &v[1]));
    /* a pruned path can be added again */
    assert_int_equal(jn_trie_add(t, S("sensors/kitchen/temp"), &v[6]), 0);
    h = match_all(t, "sensors/kitchen/temp");
    assert_int_equal(h.n, 3);
    assert_int_equal(jn_trie_count(t), 5);
    jn_trie_free(t);
}

static void test_trie_empty_levels(void **state)
{
    (void)state;
    jn_trie_t *t = jn_trie_new();
    int v[4];
    assert_int_equal(jn_trie_add(t, S("a/+"), &v[0]), 0);
    assert_int_equal(jn_trie_add(t, S("a//b"), &v[1]), 0);
    assert_int_equal(jn_trie_add(t, S("/"), &v[2]), 0);
    assert_int_equal(jn_trie_add(t, S("a/#"), &v[3]), 0);
    hits_t h = match_all(t, "a/");
    assert_int_equal(h.n, 2);
    assert_true(hit(&h, &v[0]) && hit(&h, &v[3]));
    h = match_all(t, "a//b");
    assert_int_equal(h.n, 2);
    assert_true(hit(&h, &v[1]) && hit(&h, &v[3]));
    h = match_all(t, "/");
    assert_int_equal(h.n, 1);
    assert_true(hit(&h, &v[2]));
    h = match_all(t, "a");
    assert_int_equal(h.n, 1);
    assert_true(hit(&h, &v[3]));
    jn_trie_free(t);
}

/* Deterministic generator so failures reproduce. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static const char *const words[] = {"a", "b", "c", "d", "e", "", "$s", "long-level-name"};
#define NWORDS (sizeof words / sizeof words[0])

static size_t gen(char *out, size_t cap, bool filter)
{
    size_t depth = 1 + rnd(5), len = 0;
    for (size_t i = 0; i < depth; i++) {
        const char *w;
        uint32_t r = rnd(10);
        if (filter && r == 0 && i + 1 == depth)
            w = "#";
        else if (filter && r <= 2)
            w = "+";
        else
            w = words[rnd((uint32_t)NWORDS)];
        if (i > 0)
            out[len++] = '/';
        size_t wl = strlen(w);
        assert_true(len + wl + 1 < cap);
        memcpy(out + len, w, wl);
        len += wl;
    }
    if (len == 0) /* a lone empty level is not a valid name */
        out[len++] = 'a';
    out[len] = '\0';
    return len;
}

#define NFILTERS 100000
#define NSUBJECTS 200

typedef struct mark {
    unsigned char *seen;
    size_t n;
} mark_t;

static void mark(void *value, void *arg)
{
    mark_t *m = arg;
    size_t i = (size_t)(uintptr_t)value - 1;
    assert_true(i < NFILTERS);
    assert_int_equal(m->seen[i], 0); /* each pair visited once */
    m->seen[i] = 1;
    m->n++;
}

static void cross_check(jn_trie_t *t, char (*filters)[128], const unsigned char *present)
{
    mark_t m = {.seen = calloc(NFILTERS, 1), .n = 0};
    assert_non_null(m.seen);
    size_t total = 0;
    for (int k = 0; k < NSUBJECTS; k++) {
        char s[128];
        size_t sl = gen(s, sizeof s, false);
        memset(m.seen, 0, NFILTERS);
        m.n = 0;
        jn_trie_match(t, s, sl, mark, &m);
        total += m.n;
        for (size_t i = 0; i < NFILTERS; i++) {
            bool want = present[i] && jn_filter_match(filters[i], strlen(filters[i]), s, sl);
            if (want != (bool)m.seen[i])
                fail_msg("subject %s filter %s: trie %d, match %d", s, filters[i], m.seen[i], want);
        }
    }
    assert_true(total > NSUBJECTS); /* the data must actually match */
    free(m.seen);
}

static void test_trie_random(void **state)
{
    (void)state;
    char (*filters)[128] = malloc(NFILTERS * sizeof *filters);
    unsigned char *present = malloc(NFILTERS);
    assert_non_null(filters);
    assert_non_null(present);
    jn_trie_t *t = jn_trie_new();
    for (size_t i = 0; i < NFILTERS; i++) {
        size_t fl = gen(filters[i], sizeof filters[i], true);
        assert_int_equal(jn_filter_validate(filters[i], fl), 0);
        assert_int_equal(jn_trie_add(t, filters[i], fl, (void *)(uintptr_t)(i + 1)), 0);
        present[i] = 1;
    }
    assert_int_equal(jn_trie_count(t), NFILTERS);
    cross_check(t, filters, present);

    /* remove two thirds, then check again */
    size_t left = NFILTERS;
    for (size_t i = 0; i < NFILTERS; i++) {
        if (i % 3 == 0)
            continue;
        assert_int_equal(jn_trie_remove(t, filters[i], strlen(filters[i]), (void *)(uintptr_t)(i + 1)), 0);
        present[i] = 0;
        left--;
    }
    assert_int_equal(jn_trie_count(t), left);
    cross_check(t, filters, present);

    for (size_t i = 0; i < NFILTERS; i += 3)
        assert_int_equal(jn_trie_remove(t, filters[i], strlen(filters[i]), (void *)(uintptr_t)(i + 1)), 0);
    assert_int_equal(jn_trie_count(t), 0);
    hits_t h = match_all(t, "a/b/c");
    assert_int_equal(h.n, 0);
    jn_trie_free(t);
    free(filters);
    free(present);
}

/* Many literal siblings exercise the child table's growth and its
 * backward-shift deletion. */
static void test_trie_wide(void **state)
{
    (void)state;
    jn_trie_t *t = jn_trie_new();
    char f[32];
    for (uintptr_t i = 0; i < 5000; i++) {
        int n = snprintf(f, sizeof f, "w/%lu", (unsigned long)i);
        assert_int_equal(jn_trie_add(t, f, (size_t)n, (void *)(i + 1)), 0);
    }
    for (uintptr_t i = 0; i < 5000; i += 2) {
        int n = snprintf(f, sizeof f, "w/%lu", (unsigned long)i);
        assert_int_equal(jn_trie_remove(t, f, (size_t)n, (void *)(i + 1)), 0);
    }
    for (uintptr_t i = 0; i < 5000; i++) {
        int n = snprintf(f, sizeof f, "w/%lu", (unsigned long)i);
        hits_t h = {.n = 0};
        jn_trie_match(t, f, (size_t)n, collect, &h);
        if (i % 2) {
            assert_int_equal(h.n, 1);
            assert_ptr_equal(h.seen[0], (void *)(i + 1));
        } else {
            assert_int_equal(h.n, 0);
        }
    }
    assert_int_equal(jn_trie_count(t), 2500);
    jn_trie_free(t);
}

/* Many values on one node (the array grows and shrinks back to one
 * inline value) and levels longer than the node's inline key. */
static void test_trie_values_and_long_levels(void **state)
{
    (void)state;
    jn_trie_t *t = jn_trie_new();
    assert_non_null(t);
    int v[40];
    const char *longf = "a-level-longer-than-sixteen-bytes/and-another-long-one-here/x";
    for (int i = 0; i < 40; i++) {
        assert_int_equal(jn_trie_add(t, S("s/k"), &v[i]), 0);
        assert_int_equal(jn_trie_add(t, longf, strlen(longf), &v[i]), 0);
        assert_int_equal(jn_trie_add(t, S("s/k"), &v[i]), JN_EEXIST);
    }
    assert_int_equal(jn_trie_count(t), 80);
    hits_t h = match_all(t, "s/k");
    assert_int_equal(h.n, 40);
    h = match_all(t, longf);
    assert_int_equal(h.n, 40);
    assert_int_equal(match_all(t, "a-level-longer-than-sixteen-bytes/and-another-long-one-herE/x").n, 0);
    /* remove all but one, out of order, checking what is left each time */
    for (int i = 0; i < 39; i++) {
        int k = (i * 7) % 39;
        assert_int_equal(jn_trie_remove(t, S("s/k"), &v[k]), 0);
        assert_int_equal(jn_trie_remove(t, S("s/k"), &v[k]), JN_ENOENT);
        h = match_all(t, "s/k");
        assert_int_equal(h.n, 39 - i);
        assert_false(hit(&h, &v[k]));
        assert_true(hit(&h, &v[39]));
    }
    /* one value left: grow again from it */
    assert_int_equal(jn_trie_add(t, S("s/k"), &v[0]), 0);
    assert_int_equal(jn_trie_add(t, S("s/k"), &v[1]), 0);
    h = match_all(t, "s/k");
    assert_int_equal(h.n, 3);
    assert_true(hit(&h, &v[0]) && hit(&h, &v[1]) && hit(&h, &v[39]));
    for (int i = 0; i < 40; i++)
        assert_int_equal(jn_trie_remove(t, longf, strlen(longf), &v[i]), 0);
    assert_int_equal(match_all(t, longf).n, 0);
    assert_int_equal(jn_trie_count(t), 3);
    jn_trie_free(t); /* frees the nodes still holding values */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subject_validate),
        cmocka_unit_test(test_filter_validate),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_covers),
        cmocka_unit_test(test_overlaps),
        cmocka_unit_test(test_trie_basic),
        cmocka_unit_test(test_trie_empty_levels),
        cmocka_unit_test(test_trie_random),
        cmocka_unit_test(test_trie_wide),
        cmocka_unit_test(test_trie_values_and_long_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
