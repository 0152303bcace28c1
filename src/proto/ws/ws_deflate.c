/* ws_deflate.c - permessage-deflate (RFC 7692) with zlib.
 *
 * Junction negotiates no context takeover in both directions, so every
 * message is compressed and decompressed on its own. That lets one loop
 * share a handful of zlib streams among all its connections (a deflater
 * with a 32 KiB window costs ~256 KiB; ten thousand idle connections with
 * their own would cost gigabytes) at the price of a somewhat lower ratio.
 *
 * Inflating never trusts the peer: output grows in steps and stops at the
 * output buffer's cap (the configured maximum message size), so a small
 * frame that expands to gigabytes costs at most that cap.
 */
#include "ws_internal.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define INFLATE_STEP 16384

struct jn_ws_zctx {
    z_stream inf;
    bool inf_ok;
    z_stream def[16];   /* by window bits; 9..15 used */
    bool def_ok[16];
};

jn_ws_zctx_t *jn_ws_zctx_new(void)
{
    return calloc(1, sizeof(jn_ws_zctx_t));
}

void jn_ws_zctx_free(jn_ws_zctx_t *z)
{
    if (!z)
        return;
    if (z->inf_ok)
        inflateEnd(&z->inf);
    for (int i = 0; i < 16; i++)
        if (z->def_ok[i])
            deflateEnd(&z->def[i]);
    free(z);
}

int jn_ws_deflate(jn_ws_zctx_t *z, int wbits, const uint8_t *p, size_t len, jn_buf_t *out)
{
    if (wbits < 9 || wbits > 15)
        return JN_EINVAL;
    z_stream *s = &z->def[wbits];
    if (!z->def_ok[wbits]) {
        memset(s, 0, sizeof(*s));
        /* memLevel 8 is zlib's default; raw deflate (negative bits). */
        if (deflateInit2(s, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -wbits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            return JN_ENOMEM;
        z->def_ok[wbits] = true;
    } else if (deflateReset(s) != Z_OK) {
        return JN_ENOMEM;
    }
    size_t mark = out->len;
    /* The bound is for incompressible input; a message that compresses
     * well may fit a buffer capped below it. */
    size_t want = (size_t)deflateBound(s, (uLong)len) + 8;
    if (want > out->max - out->len)
        want = out->max - out->len;
    int rc = jn_buf_reserve(out, want);
    if (rc < 0)
        return rc;
    s->next_in = (Bytef *)(uintptr_t)p;
    s->avail_in = (uInt)len;
    s->next_out = out->data + out->len;
    s->avail_out = (uInt)(out->cap - out->len);
    if (len > UINT32_MAX || out->cap - out->len > UINT32_MAX)
        return JN_ETOOBIG;
    /* Z_SYNC_FLUSH ends on an empty stored block (00 00 ff ff): the
     * receiver adds it back, so it is not sent (RFC 7692 7.2.1). */
    int zr = deflate(s, Z_SYNC_FLUSH);
    if ((zr != Z_OK && zr != Z_BUF_ERROR) || s->avail_in != 0 || s->avail_out == 0) {
        out->len = mark;
        return JN_ETOOBIG;
    }
    size_t produced = (size_t)(s->next_out - (out->data + out->len));
    if (produced < 4 || memcmp(s->next_out - 4, "\x00\x00\xff\xff", 4) != 0) {
        out->len = mark;
        return JN_EPROTO;
    }
    out->len += produced - 4;
    return 0;
}

int jn_ws_inflate(jn_ws_zctx_t *z, const uint8_t *p, size_t len, jn_buf_t *out)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    z_stream *s = &z->inf;
    if (!z->inf_ok) {
        memset(s, 0, sizeof(*s));
        if (inflateInit2(s, -15) != Z_OK)
            return JN_ENOMEM;
        z->inf_ok = true;
    } else if (inflateReset(s) != Z_OK) {
        return JN_ENOMEM;
    }
    if (len > UINT32_MAX)
        return JN_ETOOBIG;
    size_t mark = out->len;
    int rc = 0;
    bool ended = false;
    for (int part = 0; part < 2 && rc == 0 && !ended; part++) {
        s->next_in = (Bytef *)(uintptr_t)(part == 0 ? p : tail);
        s->avail_in = (uInt)(part == 0 ? len : sizeof(tail));
        for (;;) {
            size_t room = out->max - out->len;
            uint8_t scratch;
            size_t avail;
            if (room) {
                rc = jn_buf_reserve(out, room < INFLATE_STEP ? room : INFLATE_STEP);
                if (rc < 0)
                    break;
                avail = out->cap - out->len;
                if (avail > room)
                    avail = room;
                if (avail > UINT32_MAX)
                    avail = UINT32_MAX;
                s->next_out = out->data + out->len;
            } else {
                /* At the cap: any further byte makes the message too big. */
                avail = 1;
                s->next_out = &scratch;
            }
            s->avail_out = (uInt)avail;
            int zr = inflate(s, Z_SYNC_FLUSH);
            size_t produced = avail - s->avail_out;
            if (!room && produced) {
                rc = JN_ETOOBIG;
                break;
            }
            if (room)
                out->len += produced;
            if (zr == Z_STREAM_END) {
                /* A final block ends the message; what follows is ignored. */
                ended = true;
                break;
            }
            if (zr == Z_BUF_ERROR && s->avail_in == 0)
                break;
            if (zr != Z_OK && zr != Z_BUF_ERROR) {
                rc = zr == Z_MEM_ERROR ? JN_ENOMEM : JN_EPROTO;
                break;
            }
            if (s->avail_in == 0 && s->avail_out != 0)
                break;
        }
    }
    if (rc < 0)
        out->len = mark;
    return rc;
}
