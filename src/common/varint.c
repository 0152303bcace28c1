/* varint.c - the variable-length integers of Kafka records: protobuf-style
 * base-128 groups, least significant first, zigzag for signed values.
 *
 * Decoding is strict about the two ways a peer can make us misread: more
 * groups than the type holds (overlong), and bits set beyond the type's width
 * in the last group (overflow). Both are JN_EPROTO. Non-minimal encodings
 * that still fit (0x80 0x00 for 0) are accepted, as Kafka's Java client does.
 */
#include "varint.h"

#include "error.h"

static size_t uvarint64_put(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

static size_t uvarint64_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Decodes at most |maxbytes| groups into a value of |bits| width. */
static int uvarint64_get(const uint8_t *p, size_t len, unsigned maxbytes, unsigned bits,
                         uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned i = 0; i < maxbytes; i++) {
        if (i >= len)
            return JN_EPARTIAL;
        uint8_t b = p[i];
        unsigned shift = 7 * i;
        if (i == maxbytes - 1) {
            /* Last possible group: no continuation, no bits past |bits|. */
            if ((b & 0x80) || ((uint64_t)(b & 0x7f) >> (bits - shift)) != 0)
                return JN_EPROTO;
        }
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return (int)i + 1;
        }
    }
    return JN_EPROTO; /* not reached: the last group returns above */
}

static inline uint32_t zigzag32(int32_t v)
{
    return ((uint32_t)v << 1) ^ (uint32_t)(v >> 31);
}
static inline uint64_t zigzag64(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}
static inline int32_t unzigzag32(uint32_t u)
{
    return (int32_t)((u >> 1) ^ (0u - (u & 1)));
}
static inline int64_t unzigzag64(uint64_t u)
{
    return (int64_t)((u >> 1) ^ (0u - (u & 1)));
}

size_t jn_varint_put(uint8_t *out, int32_t v)
{
    return uvarint64_put(out, zigzag32(v));
}

size_t jn_varlong_put(uint8_t *out, int64_t v)
{
    return uvarint64_put(out, zigzag64(v));
}

size_t jn_varint_size(int32_t v)
{
    return uvarint64_size(zigzag32(v));
}

size_t jn_varlong_size(int64_t v)
{
    return uvarint64_size(zigzag64(v));
}

int jn_varint_get(const uint8_t *p, size_t len, int32_t *v)
{
    uint64_t u;
    int n = uvarint64_get(p, len, JN_VARINT_MAX, 32, &u);
    if (n > 0)
        *v = unzigzag32((uint32_t)u);
    return n;
}

int jn_varlong_get(const uint8_t *p, size_t len, int64_t *v)
{
    uint64_t u;
    int n = uvarint64_get(p, len, JN_VARLONG_MAX, 64, &u);
    if (n > 0)
        *v = unzigzag64(u);
    return n;
}

size_t jn_uvarint_put(uint8_t *out, uint32_t v)
{
    return uvarint64_put(out, v);
}

int jn_uvarint_get(const uint8_t *p, size_t len, uint32_t *v)
{
    uint64_t u;
    int n = uvarint64_get(p, len, JN_VARINT_MAX, 32, &u);
    if (n > 0)
        *v = (uint32_t)u;
    return n;
}
