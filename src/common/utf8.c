/* utf8.c - the one UTF-8 validator: subjects, MQTT strings, REST JSON
 * values and WebSocket text frames all go through it.
 *
 * The second byte of a multi-byte sequence carries every rule beyond "is a
 * continuation byte": its allowed range depends on the lead byte (E0 and F0
 * exclude overlongs, ED excludes surrogates, F4 stops at U+10FFFF), which is
 * the table of RFC 3629 section 4. Most payloads are ASCII, so the scan
 * skips words whose bytes all lack the high bit and decodes only from the
 * first word that has one.
 */
#include "utf8.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

size_t jn_utf8_char(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0; /* below: overlong */
        else if (c == 0xED)
            hi = 0x9F; /* above: surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90; /* below: overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above: past U+10FFFF */
    } else {
        return 0; /* continuation byte, C0/C1 overlongs, F5..FF */
    }
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

/* Character by character from |i|; kept out of line so that the ASCII
 * loop of jn_utf8_valid stays small. */
static __attribute__((noinline)) bool valid_slow(const uint8_t *p, size_t n, size_t i)
{
    while (i < n) {
        size_t k = jn_utf8_char(p + i, n - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

static inline bool ascii8(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return (w & 0x8080808080808080ull) == 0;
}

bool jn_utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
#ifdef __SSE2__
    for (; i + 16 <= n; i += 16)
        if (_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + i))))
            return valid_slow(p, n, i);
#endif
    for (; i + 8 <= n; i += 8)
        if (!ascii8(p + i))
            return valid_slow(p, n, i);
    return valid_slow(p, n, i);
}
