/* utf8.h - strict UTF-8 well-formedness (RFC 3629), shared by every door
 * and the core so that all of them accept and refuse the same bytes. */
#ifndef JN_UTF8_H
#define JN_UTF8_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length (1..4) of the well-formed character that starts at |p|, reading
 * at most |n| bytes (|n| >= 1), or 0 when it is not one: a stray
 * continuation byte, an overlong form, a surrogate (U+D800..U+DFFF), a code
 * point above U+10FFFF, or a sequence cut short by |n|. Any ASCII byte,
 * U+0000 included, is a character of length 1: callers that forbid U+0000
 * (MQTT, subjects) test for it themselves. */
size_t jn_utf8_char(const uint8_t *p, size_t n);

/* True when |p|[0..n) is well-formed UTF-8 by the rules of jn_utf8_char
 * (U+0000 allowed); true for n == 0. Plain ASCII is checked 16 (SSE2) or 8
 * bytes at a time. */
bool jn_utf8_valid(const uint8_t *p, size_t n);
#endif
