/* test_utf8.c - jn_utf8_char and jn_utf8_valid: the RFC 3629 boundaries
 * (overlongs, surrogates, U+10FFFF), truncation, and an invalid byte at
 * every position of the word-at-a-time ASCII scan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/utf8.h"

#define U8(lit) ((const uint8_t *)(lit))
#define V(lit) jn_utf8_valid(U8(lit), sizeof(lit) - 1)
#define C(lit) jn_utf8_char(U8(lit), sizeof(lit) - 1)

static void test_char_lengths(void **state)
{
    (void)state;
    assert_int_equal(C("a"), 1);
    assert_int_equal(C("\0"), 1);
    assert_int_equal(C("\x7f"), 1);
    assert_int_equal(C("\xc2\x80"), 2);         /* U+0080, smallest 2-byte */
    assert_int_equal(C("\xdf\xbf"), 2);         /* U+07FF */
    assert_int_equal(C("\xe0\xa0\x80"), 3);     /* U+0800, smallest 3-byte */
    assert_int_equal(C("\xed\x9f\xbf"), 3);     /* U+D7FF, below surrogates */
    assert_int_equal(C("\xee\x80\x80"), 3);     /* U+E000, above surrogates */
    assert_int_equal(C("\xef\xbf\xbf"), 3);     /* U+FFFF */
    assert_int_equal(C("\xf0\x90\x80\x80"), 4); /* U+10000, smallest 4-byte */
    assert_int_equal(C("\xf4\x8f\xbf\xbf"), 4); /* U+10FFFF */
    /* Only the character at |p| is read: what follows does not matter. */
    assert_int_equal(C("\xc3\xa9\xff"), 2);
}

static void test_char_invalid(void **state)
{
    (void)state;
    assert_int_equal(C("\x80"), 0);             /* stray continuation */
    assert_int_equal(C("\xbf"), 0);
    assert_int_equal(C("\xc0\xaf"), 0);         /* overlong '/' */
    assert_int_equal(C("\xc1\xbf"), 0);         /* overlong */
    assert_int_equal(C("\xe0\x9f\xbf"), 0);     /* overlong 3-byte */
    assert_int_equal(C("\xed\xa0\x80"), 0);     /* U+D800 */
    assert_int_equal(C("\xed\xbf\xbf"), 0);     /* U+DFFF */
    assert_int_equal(C("\xf0\x8f\xbf\xbf"), 0); /* overlong 4-byte */
    assert_int_equal(C("\xf4\x90\x80\x80"), 0); /* U+110000 */
    assert_int_equal(C("\xf5\x80\x80\x80"), 0);
    assert_int_equal(C("\xff"), 0);
    assert_int_equal(C("\xc3"), 0);             /* truncated */
    assert_int_equal(C("\xe2\x82"), 0);
    assert_int_equal(C("\xf0\x9f\x98"), 0);
    assert_int_equal(C("\xe2\x28\xa1"), 0);     /* bad second byte */
    assert_int_equal(C("\xe2\x82\x28"), 0);     /* bad third byte */
    assert_int_equal(C("\xf0\x9f\x98\x28"), 0); /* bad fourth byte */
}

static void test_valid_strings(void **state)
{
    (void)state;
    assert_true(jn_utf8_valid(NULL, 0));
    assert_true(V(""));
    assert_true(V("plain ascii"));
    assert_true(V("a\0b")); /* U+0000 is well-formed; MQTT refuses it itself */
    assert_true(V("caf\xc3\xa9"));
    assert_true(V("\xe2\x82\xac"));
    assert_true(V("\xf0\x9f\x98\x80"));
    assert_true(V("a longer ASCII prefix of more than sixteen bytes \xc3\xa9 then more text"));
    assert_false(V("\xff"));
    assert_false(V("\xc3"));
    assert_false(V("abc\xc3"));
    assert_false(V("\xed\xa0\x80"));
    assert_false(V("\xf4\x90\x80\x80"));
    assert_false(V("a longer ASCII prefix of more than sixteen bytes \xc0\xaf"));
}

/* An invalid byte, or a character split by the end, at every offset of
 * strings of every length up to 40: each word of the fast path and the
 * tail after it must see it. */
static void test_every_position(void **state)
{
    (void)state;
    uint8_t buf[48];
    for (size_t n = 1; n <= 40; n++) {
        for (size_t at = 0; at < n; at++) {
            memset(buf, 'x', n);
            buf[at] = 0x80;
            assert_false(jn_utf8_valid(buf, n));
            if (at + 2 <= n) {
                buf[at] = 0xc3;
                buf[at + 1] = 0xa9;
                assert_true(jn_utf8_valid(buf, n));
            }
            buf[at] = 0xe2; /* a 3-byte lead with too little after it, or ASCII after it */
            if (at + 1 < n)
                buf[at + 1] = 'x';
            assert_false(jn_utf8_valid(buf, n));
        }
        memset(buf, 'x', n);
        assert_true(jn_utf8_valid(buf, n));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_char_lengths),
        cmocka_unit_test(test_char_invalid),
        cmocka_unit_test(test_valid_strings),
        cmocka_unit_test(test_every_position),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
