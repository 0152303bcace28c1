/* webhook_attlog.c - aggregated records of the webhooks attempts log.
 *
 * One table record per delivery cost about a quarter of the delivery
 * path (a JSON object built and dumped, a record appended to the
 * compacted attempts table). At thousands of deliveries per second the
 * individual successes say little that a count does not, so the engine
 * gathers the successful first attempts of one endpoint that complete in
 * one loop iteration into a batch and writes it as one record listing
 * every webhook-id; failures stay one record each. This file is the pure
 * part: the batch and its JSON text, written by hand because the text is
 * simple and this runs per delivery.
 */
#include "webhook_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define OKBATCH_IDS_MAX ((size_t)JN_WH_OKBATCH_MAX * (6 * JN_WH_MSGID_MAX + 3))

void jn_wh_okbatch_init(jn_wh_okbatch_t *b)
{
    memset(b, 0, sizeof *b);
    /* Room for every id escaped at worst (jn_wh_json_str reserves six
     * bytes per input byte), plus quotes and a comma. */
    jn_buf_init(&b->ids, OKBATCH_IDS_MAX);
}

void jn_wh_okbatch_free(jn_wh_okbatch_t *b)
{
    jn_buf_free(&b->ids);
    b->count = 0;
}

void jn_wh_okbatch_reset(jn_wh_okbatch_t *b)
{
    jn_buf_reset(&b->ids);
    b->count = 0;
    b->status = 0;
    b->lat_sum = b->lat_max = 0;
}

int jn_wh_json_str(jn_buf_t *out, const char *p, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    /* Worst case every byte becomes \u00XX. */
    int rc = jn_buf_reserve(out, len * 6 + 2);
    if (rc < 0)
        return rc;
    uint8_t *d = out->data + out->len;
    *d++ = '"';
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)p[i];
        if (c == '"' || c == '\\') {
            *d++ = '\\';
            *d++ = c;
        } else if (c < 0x20) {
            *d++ = '\\';
            *d++ = 'u';
            *d++ = '0';
            *d++ = '0';
            *d++ = (uint8_t)hex[c >> 4];
            *d++ = (uint8_t)hex[c & 15];
        } else {
            *d++ = c;
        }
    }
    *d++ = '"';
    out->len = (size_t)(d - out->data);
    return 0;
}

int jn_wh_okbatch_add(jn_wh_okbatch_t *b, const char *id, const char *stream, uint32_t partition, int64_t offset,
                      long status, double latency_ms, const char *resp, size_t rlen)
{
    size_t idlen = strlen(id);
    if (idlen > JN_WH_MSGID_MAX || strlen(stream) >= sizeof b->stream)
        return JN_EINVAL;
    if (b->count >= JN_WH_OKBATCH_MAX || (b->count > 0 && status != b->status))
        return JN_EAGAIN;
    size_t before = b->ids.len;
    int rc = b->count > 0 ? jn_buf_append(&b->ids, ",", 1) : 0;
    if (rc == 0)
        rc = jn_wh_json_str(&b->ids, id, idlen);
    if (rc < 0) {
        b->ids.len = before;
        return rc;
    }
    if (b->count == 0) {
        memcpy(b->id, id, idlen + 1);
        memcpy(b->stream, stream, strlen(stream) + 1);
        b->partition = partition;
        b->offset = offset;
        b->status = status;
        if (!resp)
            rlen = 0;
        if (rlen > JN_WH_OKBATCH_TEXT_MAX)
            rlen = JN_WH_OKBATCH_TEXT_MAX;
        if (rlen)
            memcpy(b->resp, resp, rlen);
        b->resp[rlen] = '\0';
        b->lat_max = latency_ms;
    } else if (latency_ms > b->lat_max) {
        b->lat_max = latency_ms;
    }
    b->lat_sum += latency_ms;
    b->count++;
    return 0;
}

int jn_wh_okbatch_render(const jn_wh_okbatch_t *b, uint64_t seq, int64_t time_ms, jn_buf_t *out)
{
    if (b->count == 0)
        return JN_EINVAL;
    size_t before = out->len;
    int rc = jn_buf_printf(out, "{\"seq\":%" PRIu64 ",\"time\":%" PRId64 ",\"webhook_id\":", seq, time_ms);
    if (rc == 0)
        rc = jn_wh_json_str(out, b->id, strlen(b->id));
    if (rc == 0)
        rc = jn_buf_append_str(out, ",\"stream\":");
    if (rc == 0)
        rc = jn_wh_json_str(out, b->stream, strlen(b->stream));
    if (rc == 0)
        rc = jn_buf_printf(out,
                           ",\"partition\":%" PRIu32 ",\"offset\":%" PRId64 ",\"attempt\":1,\"status\":%ld"
                           ",\"latency_ms\":%.3f,\"latency_ms_max\":%.3f,\"response\":",
                           b->partition, b->offset, b->status, b->lat_sum / b->count, b->lat_max);
    if (rc == 0)
        rc = jn_wh_json_str(out, b->resp, strlen(b->resp));
    if (rc == 0)
        rc = jn_buf_printf(out,
                           ",\"error\":null,\"result\":\"delivered\",\"manual\":false,\"count\":%" PRIu32
                           ",\"webhook_ids\":[",
                           b->count);
    if (rc == 0)
        rc = jn_buf_append(out, b->ids.data, b->ids.len);
    if (rc == 0)
        rc = jn_buf_append_str(out, "]}");
    if (rc < 0)
        out->len = before;
    return rc;
}
