/* buf.c - the capped growable byte buffer.
 *
 * The cap (|max|) bounds |len|, never silently: any append that would pass
 * it fails with JN_ETOOBIG and leaves the buffer exactly as it was, so a
 * caller can stop encoding at a size limit and still use what it has.
 */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jn_buf_init(jn_buf_t *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void jn_buf_free(jn_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

/* Ensures cap >= |need| without looking at max; jn_buf_printf needs one
 * byte past max for vsnprintf's terminating NUL. Doubles to keep appends
 * amortised O(1), but does not allocate far beyond max. */
static int buf_grow(jn_buf_t *b, size_t need)
{
    if (need <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) {
            ncap = need;
            break;
        }
        ncap *= 2;
    }
    if (ncap > b->max && b->max >= need)
        ncap = b->max;
    if (ncap < need)
        ncap = need;
    uint8_t *nd = realloc(b->data, ncap);
    if (!nd)
        return JN_ENOMEM;
    b->data = nd;
    b->cap = ncap;
    return 0;
}

int jn_buf_reserve(jn_buf_t *b, size_t n)
{
    if (n > b->max || b->len > b->max - n)
        return JN_ETOOBIG;
    return buf_grow(b, b->len + n);
}

int jn_buf_append(jn_buf_t *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    int rc = jn_buf_reserve(b, n);
    if (rc < 0)
        return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int jn_buf_append_str(jn_buf_t *b, const char *s)
{
    return jn_buf_append(b, s, strlen(s));
}

int jn_buf_printf(jn_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return JN_EINVAL;
    if ((size_t)n > b->max || b->len > b->max - (size_t)n)
        return JN_ETOOBIG;
    int rc = buf_grow(b, b->len + (size_t)n + 1);
    if (rc < 0)
        return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int jn_buf_put_u8(jn_buf_t *b, uint8_t v)
{
    return jn_buf_append(b, &v, 1);
}

int jn_buf_put_be16(jn_buf_t *b, uint16_t v)
{
    uint8_t t[2];
    jn_store_be16(t, v);
    return jn_buf_append(b, t, sizeof t);
}

int jn_buf_put_be32(jn_buf_t *b, uint32_t v)
{
    uint8_t t[4];
    jn_store_be32(t, v);
    return jn_buf_append(b, t, sizeof t);
}

int jn_buf_put_be64(jn_buf_t *b, uint64_t v)
{
    uint8_t t[8];
    jn_store_be64(t, v);
    return jn_buf_append(b, t, sizeof t);
}

void jn_buf_consume(jn_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}
