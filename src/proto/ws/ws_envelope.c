/* ws_envelope.c - the binary envelope of the WebSocket door (docs/ws.md):
 * raw payloads in binary frames, without JSON escaping or base64.
 *
 * Publish (client to server), big-endian:
 *   0  u8   type = 0x01
 *   1  u8   flags: 1 ack, 2 key present, 4 null value (tombstone)
 *   2  u8   ref length R (0: no ref)
 *   3  u8   reserved, 0
 *   4  u16  subject length J (1..4096)
 *   6  u16  key length K (0 unless flag 2)
 *   8       ref, subject, key, then the value to the end of the frame
 *
 * Record (server to client):
 *   0  u8   type = 0x02
 *   1  u8   flags: 2 key present, 4 null value
 *   2  u8   subscription id length S
 *   3  u8   stream name length T
 *   4  u16  subject length J
 *   6  u16  key length K
 *   8  u32  partition
 *  12  u64  offset
 *  20  u64  timestamp (ms)
 *  28       subscription id, stream, subject, key, then the value
 *
 * Keys longer than 65535 bytes and record headers do not fit: such
 * subscriptions use JSON.
 */
#include "ws_internal.h"

#include <string.h>

int jn_ws_env_publish_decode(const uint8_t *p, size_t len, jn_ws_env_publish_t *out)
{
    memset(out, 0, sizeof(*out));
    if (len < JN_WS_ENV_PUBLISH_HDR || p[0] != JN_WS_ENV_PUBLISH || p[3] != 0 ||
        (p[1] & ~(JN_WS_ENV_F_ACK | JN_WS_ENV_F_KEY | JN_WS_ENV_F_NULL)))
        return JN_EPROTO;
    out->flags = p[1];
    size_t r = p[2], j = jn_load_be16(p + 4), k = jn_load_be16(p + 6);
    if (k && !(out->flags & JN_WS_ENV_F_KEY))
        return JN_EPROTO;
    size_t need = JN_WS_ENV_PUBLISH_HDR + r + j + k;
    if (need > len)
        return JN_EPROTO;
    const uint8_t *q = p + JN_WS_ENV_PUBLISH_HDR;
    out->ref = r ? (const char *)q : NULL;
    out->ref_len = r;
    q += r;
    out->subject = (const char *)q;
    out->subject_len = j;
    q += j;
    if (out->flags & JN_WS_ENV_F_KEY) {
        out->key = q;
        out->key_len = k;
    }
    q += k;
    if (out->flags & JN_WS_ENV_F_NULL) {
        if (need != len)
            return JN_EPROTO;
    } else {
        out->value = q;
        out->value_len = len - need;
    }
    return 0;
}

int jn_ws_env_publish_encode(jn_buf_t *out, const jn_ws_env_publish_t *e)
{
    if (e->ref_len > 255 || e->subject_len > 0xffff || e->key_len > 0xffff)
        return JN_EINVAL;
    size_t mark = out->len;
    uint8_t flags = (uint8_t)(e->flags & JN_WS_ENV_F_ACK);
    if (e->key)
        flags |= JN_WS_ENV_F_KEY;
    if (!e->value)
        flags |= JN_WS_ENV_F_NULL;
    uint8_t h[JN_WS_ENV_PUBLISH_HDR] = {JN_WS_ENV_PUBLISH, flags, (uint8_t)e->ref_len, 0};
    jn_store_be16(h + 4, (uint16_t)e->subject_len);
    jn_store_be16(h + 6, (uint16_t)(e->key ? e->key_len : 0));
    int rc = jn_buf_append(out, h, sizeof(h));
    if (rc == 0 && e->ref_len)
        rc = jn_buf_append(out, e->ref, e->ref_len);
    if (rc == 0 && e->subject_len)
        rc = jn_buf_append(out, e->subject, e->subject_len);
    if (rc == 0 && e->key && e->key_len)
        rc = jn_buf_append(out, e->key, e->key_len);
    if (rc == 0 && e->value && e->value_len)
        rc = jn_buf_append(out, e->value, e->value_len);
    if (rc < 0)
        out->len = mark;
    return rc;
}

int jn_ws_env_record_header(uint8_t h[JN_WS_ENV_RECORD_HDR], const jn_ws_env_record_t *r)
{
    if (r->sub_len > 255 || r->stream_len > 255 || r->subject_len > 0xffff || (r->key && r->key_len > 0xffff))
        return JN_EINVAL;
    h[0] = JN_WS_ENV_RECORD;
    h[1] = (uint8_t)((r->key ? JN_WS_ENV_F_KEY : 0) | (r->value ? 0 : JN_WS_ENV_F_NULL));
    h[2] = (uint8_t)r->sub_len;
    h[3] = (uint8_t)r->stream_len;
    jn_store_be16(h + 4, (uint16_t)r->subject_len);
    jn_store_be16(h + 6, (uint16_t)(r->key ? r->key_len : 0));
    jn_store_be32(h + 8, r->partition);
    jn_store_be64(h + 12, (uint64_t)r->offset);
    jn_store_be64(h + 20, (uint64_t)r->timestamp);
    return 0;
}

int jn_ws_env_record_encode(jn_buf_t *out, const jn_ws_env_record_t *r)
{
    uint8_t hdr[JN_WS_ENV_RECORD_HDR];
    int rc = jn_ws_env_record_header(hdr, r);
    if (rc < 0)
        return rc;
    size_t total = JN_WS_ENV_RECORD_HDR + r->sub_len + r->stream_len + r->subject_len +
                   (r->key ? r->key_len : 0) + (r->value ? r->value_len : 0);
    if ((rc = jn_buf_reserve(out, total)) < 0)
        return rc;
    uint8_t *q = out->data + out->len;
    memcpy(q, hdr, sizeof(hdr));
    q += sizeof(hdr);
#define PUT(ptr, n)                                                                                        \
    do {                                                                                                   \
        if (n) {                                                                                           \
            memcpy(q, ptr, n);                                                                             \
            q += n;                                                                                        \
        }                                                                                                  \
    } while (0)
    PUT(r->sub, r->sub_len);
    PUT(r->stream, r->stream_len);
    PUT(r->subject, r->subject_len);
    if (r->key)
        PUT(r->key, r->key_len);
    if (r->value)
        PUT(r->value, r->value_len);
#undef PUT
    out->len += total;
    return 0;
}

int jn_ws_env_record_decode(const uint8_t *p, size_t len, jn_ws_env_record_t *out)
{
    memset(out, 0, sizeof(*out));
    if (len < JN_WS_ENV_RECORD_HDR || p[0] != JN_WS_ENV_RECORD || (p[1] & ~(JN_WS_ENV_F_KEY | JN_WS_ENV_F_NULL)))
        return JN_EPROTO;
    size_t s = p[2], t = p[3], j = jn_load_be16(p + 4), k = jn_load_be16(p + 6);
    if (k && !(p[1] & JN_WS_ENV_F_KEY))
        return JN_EPROTO;
    size_t need = JN_WS_ENV_RECORD_HDR + s + t + j + k;
    if (need > len || ((p[1] & JN_WS_ENV_F_NULL) && need != len))
        return JN_EPROTO;
    out->partition = jn_load_be32(p + 8);
    out->offset = (int64_t)jn_load_be64(p + 12);
    out->timestamp = (int64_t)jn_load_be64(p + 20);
    const uint8_t *q = p + JN_WS_ENV_RECORD_HDR;
    out->sub = (const char *)q;
    out->sub_len = s;
    q += s;
    out->stream = (const char *)q;
    out->stream_len = t;
    q += t;
    out->subject = (const char *)q;
    out->subject_len = j;
    q += j;
    if (p[1] & JN_WS_ENV_F_KEY) {
        out->key = q;
        out->key_len = k;
    }
    q += k;
    if (!(p[1] & JN_WS_ENV_F_NULL)) {
        out->value = q;
        out->value_len = len - need;
    }
    return 0;
}
