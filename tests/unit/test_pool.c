/* test_pool.c - jn_pool: objects are zeroed, distinct and writable over
 * many slabs, freed objects are reused, and slabs go back when emptied
 * (one kept). Slab counts are checked only when the pool maps slabs
 * (under AddressSanitizer it hands out calloc'd objects instead). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/pool.h"

#define N 5000

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static void test_alloc_free_reuse(void **state)
{
    (void)state;
    jn_pool_t p;
    jn_pool_init(&p, 344);
    assert_int_equal(p.size, 352);
    uint8_t **o = calloc(N, sizeof *o);
    assert_non_null(o);
    for (int i = 0; i < N; i++) {
        o[i] = jn_pool_calloc(&p);
        assert_non_null(o[i]);
        assert_true(all_zero(o[i], 344));
        memset(o[i], (i & 0xff) | 1, 344);
    }
    assert_int_equal(p.live, N);
    /* Nothing overlapped: every object still holds its own pattern. */
    for (int i = 0; i < N; i++)
        for (int k = 0; k < 344; k++)
            assert_int_equal(o[i][k], (i & 0xff) | 1);
    size_t mapped = p.slabs;
    if (mapped)
        assert_int_equal(mapped, (N + p.per_slab - 1) / p.per_slab);
    /* Free every other one, take them again: reused, zeroed, no new slab. */
    for (int i = 0; i < N; i += 2)
        jn_pool_free(&p, o[i]);
    assert_int_equal(p.live, N / 2);
    for (int i = 0; i < N; i += 2) {
        o[i] = jn_pool_calloc(&p);
        assert_non_null(o[i]);
        assert_true(all_zero(o[i], 344));
    }
    assert_int_equal(p.slabs, mapped);
    /* Free all: at most one slab stays mapped. */
    for (int i = 0; i < N; i++)
        jn_pool_free(&p, o[i]);
    assert_int_equal(p.live, 0);
    assert_true(p.slabs <= 1);
    /* The kept slab serves the next burst with zeroed objects. */
    for (int i = 0; i < N; i++) {
        o[i] = jn_pool_calloc(&p);
        assert_non_null(o[i]);
        assert_true(all_zero(o[i], 344));
    }
    if (mapped)
        assert_int_equal(p.slabs, mapped);
    for (int i = 0; i < N; i++)
        jn_pool_free(&p, o[i]);
    jn_pool_free(&p, NULL);
    jn_pool_destroy(&p);
    assert_int_equal(p.slabs, 0);
    free(o);
}

static void test_small_objects(void **state)
{
    (void)state;
    jn_pool_t p;
    jn_pool_init(&p, 1);
    assert_int_equal(p.size, 16);
    void *a = jn_pool_calloc(&p), *b = jn_pool_calloc(&p);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    jn_pool_free(&p, a);
    jn_pool_free(&p, b);
    jn_pool_destroy(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_free_reuse),
        cmocka_unit_test(test_small_objects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
