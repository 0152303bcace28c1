/* buf.h - a growable byte buffer with a hard cap set at init.
 *
 * Every buffer that grows has a cap: appending past |max| fails with
 * JN_ETOOBIG and leaves the buffer unchanged. The buffer owns |data|.
 */
#ifndef JN_BUF_H
#define JN_BUF_H

#include <stddef.h>
#include <stdint.h>
#include "error.h"

typedef struct jn_buf {
    uint8_t *data; /* owned; NULL until the first append */
    size_t len;    /* bytes in use */
    size_t cap;    /* bytes allocated */
    size_t max;    /* hard cap on len */
} jn_buf_t;

void jn_buf_init(jn_buf_t *b, size_t max);
void jn_buf_free(jn_buf_t *b);
/* Drops the content, keeps the allocation. */
static inline void jn_buf_reset(jn_buf_t *b) { b->len = 0; }
/* Makes room for |n| more bytes. JN_ETOOBIG past max, JN_ENOMEM. */
int jn_buf_reserve(jn_buf_t *b, size_t n) JN_MUST_CHECK;
int jn_buf_append(jn_buf_t *b, const void *p, size_t n) JN_MUST_CHECK;
int jn_buf_append_str(jn_buf_t *b, const char *s) JN_MUST_CHECK;
/* printf-style append; JN_ETOOBIG if the result would pass max. */
int jn_buf_printf(jn_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3))) JN_MUST_CHECK;
int jn_buf_put_u8(jn_buf_t *b, uint8_t v) JN_MUST_CHECK;
int jn_buf_put_be16(jn_buf_t *b, uint16_t v) JN_MUST_CHECK;
int jn_buf_put_be32(jn_buf_t *b, uint32_t v) JN_MUST_CHECK;
int jn_buf_put_be64(jn_buf_t *b, uint64_t v) JN_MUST_CHECK;
/* Removes the first |n| bytes (n <= len). */
void jn_buf_consume(jn_buf_t *b, size_t n);

/* Big-endian loads and stores on raw memory (no bounds checks). */
static inline uint16_t jn_load_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t jn_load_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t jn_load_be64(const uint8_t *p) {
    return (uint64_t)jn_load_be32(p) << 32 | jn_load_be32(p + 4);
}
static inline void jn_store_be16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void jn_store_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void jn_store_be64(uint8_t *p, uint64_t v) {
    jn_store_be32(p, (uint32_t)(v >> 32)); jn_store_be32(p + 4, (uint32_t)v);
}

#endif
