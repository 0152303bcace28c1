/* compress.c - gzip, snappy, lz4 and zstd decompression for record batches
 * (formats in compress.h).
 *
 * Every decoder writes into a jn_buf_t that grows by doubling up to the
 * limit, so the memory a batch can cost is bounded before any byte is
 * inflated, whatever sizes the compressed stream claims. Streams are read
 * to their end: trailing garbage or a truncated stream is JN_EPROTO, never
 * a silently shortened batch (the record count check of the iterator would
 * catch some of it, not all).
 */
#include "compress.h"

#include <lz4frame.h>
#include <snappy-c.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#define GROW_MIN 65536

/* Makes free room at the end of |out| without passing |limit| (an absolute
 * length). Returns the free bytes (> 0), JN_ETOOBIG at the limit, or
 * JN_ENOMEM. */
static int64_t room(jn_buf_t *out, size_t limit, size_t hint)
{
    if (out->len >= limit)
        return JN_ETOOBIG;
    size_t free_now = out->cap - out->len;
    if (free_now > 0)
        return (int64_t)(free_now < limit - out->len ? free_now : limit - out->len);
    size_t want = out->len > hint ? out->len : hint;
    if (want < GROW_MIN)
        want = GROW_MIN;
    if (want > limit - out->len)
        want = limit - out->len;
    int rc = jn_buf_reserve(out, want);
    if (rc < 0)
        return rc;
    free_now = out->cap - out->len;
    return (int64_t)(free_now < limit - out->len ? free_now : limit - out->len);
}

static int64_t inflate_gzip(const uint8_t *src, size_t len, jn_buf_t *out, size_t limit)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + 32) != Z_OK) /* +32: gzip or zlib header */
        return JN_ENOMEM;
    int64_t rc = 0;
    const uint8_t *p = src, *end = src + len;
    while (p < end) {
        /* One member per pass; a member ends with Z_STREAM_END. */
        zs.next_in = (Bytef *)p;
        zs.avail_in = (uInt)((size_t)(end - p) > UINT32_MAX ? UINT32_MAX : (size_t)(end - p));
        int zr;
        do {
            int64_t r = room(out, limit, len * 4);
            if (r < 0) {
                rc = r;
                goto done;
            }
            uInt avail = (uInt)(r > UINT32_MAX ? UINT32_MAX : r);
            zs.next_out = out->data + out->len;
            zs.avail_out = avail;
            zr = inflate(&zs, Z_NO_FLUSH);
            out->len += avail - zs.avail_out;
            if (zr == Z_MEM_ERROR) {
                rc = JN_ENOMEM;
                goto done;
            }
            if (zr != Z_OK && zr != Z_STREAM_END) {
                rc = JN_EPROTO; /* bad data, or Z_BUF_ERROR: truncated */
                goto done;
            }
        } while (zr != Z_STREAM_END);
        p = zs.next_in;
        if (p < end && inflateReset(&zs) != Z_OK) {
            rc = JN_EPROTO;
            goto done;
        }
    }
done:
    inflateEnd(&zs);
    return rc;
}

/* One raw snappy block. */
static int64_t snappy_block(const uint8_t *src, size_t len, jn_buf_t *out, size_t limit)
{
    size_t ulen;
    if (snappy_uncompressed_length((const char *)src, len, &ulen) != SNAPPY_OK)
        return JN_EPROTO;
    if (ulen > limit - out->len)
        return JN_ETOOBIG;
    int rc = jn_buf_reserve(out, ulen ? ulen : 1);
    if (rc < 0)
        return rc;
    size_t got = ulen;
    if (snappy_uncompress((const char *)src, len, (char *)out->data + out->len, &got) != SNAPPY_OK || got != ulen)
        return JN_EPROTO;
    out->len += got;
    return 0;
}

static const uint8_t xerial_magic[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};

static int64_t inflate_snappy(const uint8_t *src, size_t len, jn_buf_t *out, size_t limit)
{
    if (len < 16 || memcmp(src, xerial_magic, sizeof xerial_magic) != 0)
        return snappy_block(src, len, out, limit);
    /* Xerial framing: the two version words are not checked (every writer
     * uses 1/1 and the block format never changed). */
    size_t pos = 16;
    while (pos < len) {
        if (len - pos < 4)
            return JN_EPROTO;
        uint32_t blen = jn_load_be32(src + pos);
        pos += 4;
        if (blen > len - pos)
            return JN_EPROTO;
        int64_t rc = snappy_block(src + pos, blen, out, limit);
        if (rc < 0)
            return rc;
        pos += blen;
    }
    return 0;
}

static int64_t inflate_lz4(const uint8_t *src, size_t len, jn_buf_t *out, size_t limit)
{
    LZ4F_dctx *dctx = NULL;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION)))
        return JN_ENOMEM;
    int64_t rc = 0;
    size_t pos = 0, hint = 1;
    while (pos < len) {
        int64_t r = room(out, limit, len * 4);
        if (r < 0) {
            rc = r;
            break;
        }
        size_t dst = (size_t)r, in = len - pos;
        hint = LZ4F_decompress(dctx, out->data + out->len, &dst, src + pos, &in, NULL);
        if (LZ4F_isError(hint)) {
            rc = JN_EPROTO;
            break;
        }
        out->len += dst;
        pos += in;
        if (dst == 0 && in == 0) {
            rc = JN_EPROTO; /* no progress: cannot happen with room, but never spin */
            break;
        }
    }
    /* The frame is complete when the decoder expects nothing more; it may
     * still hold decoded bytes when the output was full at the end. */
    while (rc == 0 && hint != 0) {
        int64_t r = room(out, limit, len * 4);
        if (r < 0) {
            rc = r;
            break;
        }
        size_t dst = (size_t)r, in = 0;
        hint = LZ4F_decompress(dctx, out->data + out->len, &dst, NULL, &in, NULL);
        if (LZ4F_isError(hint) || dst == 0) {
            rc = JN_EPROTO; /* truncated frame */
            break;
        }
        out->len += dst;
    }
    LZ4F_freeDecompressionContext(dctx);
    return rc;
}

static int64_t inflate_zstd(const uint8_t *src, size_t len, jn_buf_t *out, size_t limit)
{
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    if (!dctx)
        return JN_ENOMEM;
    int64_t rc = 0;
    ZSTD_inBuffer in = {src, len, 0};
    size_t left = 1; /* 0 once a frame is complete */
    for (;;) {
        if (in.pos == in.size && left == 0)
            break;
        int64_t r = room(out, limit, len * 4);
        if (r < 0) {
            rc = r;
            break;
        }
        ZSTD_outBuffer o = {out->data + out->len, (size_t)r, 0};
        size_t before = in.pos;
        left = ZSTD_decompressStream(dctx, &o, &in);
        if (ZSTD_isError(left)) {
            rc = JN_EPROTO;
            break;
        }
        out->len += o.pos;
        if (o.pos == 0 && in.pos == before && left != 0) {
            rc = JN_EPROTO; /* truncated: input used up, frame incomplete */
            break;
        }
    }
    ZSTD_freeDCtx(dctx);
    return rc;
}

int64_t jn_decompress(int codec, const uint8_t *src, size_t len, jn_buf_t *out, size_t max)
{
    size_t start = out->len;
    if (max > JN_DECOMPRESS_MAX)
        max = JN_DECOMPRESS_MAX;
    size_t limit = out->max - out->len < max ? out->max : out->len + max;
    int64_t rc;
    if (len == 0)
        return JN_EPROTO; /* every codec frames even an empty payload */
    switch (codec) {
    case JN_CODEC_GZIP: rc = inflate_gzip(src, len, out, limit); break;
    case JN_CODEC_SNAPPY: rc = inflate_snappy(src, len, out, limit); break;
    case JN_CODEC_LZ4: rc = inflate_lz4(src, len, out, limit); break;
    case JN_CODEC_ZSTD: rc = inflate_zstd(src, len, out, limit); break;
    default: rc = JN_EPROTO; break;
    }
    if (rc < 0) {
        out->len = start;
        return rc;
    }
    return (int64_t)(out->len - start);
}
