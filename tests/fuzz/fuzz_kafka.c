/* fuzz_kafka.c - libFuzzer target for the Kafka request decoder.
 *
 * The input is a stream of request frames, as a connection delivers them:
 * each frame's header is parsed and, when its API and version are
 * supported, its body decoded with the matching decoder. Every decoded
 * view is touched so that ASan sees any view past the frame. The arena cap
 * is small so that allocation limits are exercised too.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto/kafka/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint32_t sink;

static void touch(jn_kstr_t s)
{
    for (int32_t i = 0; i < s.len; i++)
        sink += (uint8_t)s.p[i];
}

static void touch_bytes(const uint8_t *p, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        sink += p[i];
}

static void inspect(int16_t key, const void *req)
{
    switch (key) {
    case JN_KAPI_PRODUCE: {
        const jn_kafka_produce_req_t *r = req;
        for (int32_t i = 0; i < r->ntopics; i++) {
            touch(r->topics[i].name);
            for (int32_t j = 0; j < r->topics[i].nparts; j++)
                touch_bytes(r->topics[i].parts[j].records, r->topics[i].parts[j].records_len);
        }
        break;
    }
    case JN_KAPI_FETCH: {
        const jn_kafka_fetch_req_t *r = req;
        for (int32_t i = 0; i < r->ntopics; i++) {
            touch(r->topics[i].name);
            for (int32_t j = 0; j < r->topics[i].nparts; j++)
                sink += (uint32_t)r->topics[i].parts[j].fetch_offset;
        }
        break;
    }
    case JN_KAPI_METADATA: {
        const jn_kafka_metadata_req_t *r = req;
        for (int32_t i = 0; i < r->ntopics; i++)
            touch(r->topics[i]);
        break;
    }
    case JN_KAPI_JOIN_GROUP: {
        const jn_kafka_join_group_req_t *r = req;
        touch(r->group_id);
        touch(r->member_id);
        for (int32_t i = 0; i < r->nprotocols; i++) {
            touch(r->protocols[i].name);
            touch_bytes(r->protocols[i].metadata, r->protocols[i].metadata_len);
        }
        break;
    }
    case JN_KAPI_SYNC_GROUP: {
        const jn_kafka_sync_group_req_t *r = req;
        for (int32_t i = 0; i < r->nassignments; i++) {
            touch(r->assignments[i].member_id);
            touch_bytes(r->assignments[i].assignment, r->assignments[i].assignment_len);
        }
        break;
    }
    case JN_KAPI_OFFSET_COMMIT: {
        const jn_kafka_offset_commit_req_t *r = req;
        for (int32_t i = 0; i < r->ntopics; i++)
            for (int32_t j = 0; j < r->topics[i].nparts; j++)
                touch(r->topics[i].parts[j].metadata);
        break;
    }
    case JN_KAPI_OFFSET_FETCH: {
        const jn_kafka_offset_fetch_req_t *r = req;
        for (int32_t g = 0; g < r->ngroups; g++)
            for (int32_t i = 0; i < r->groups[g].ntopics; i++)
                for (int32_t j = 0; j < r->groups[g].topics[i].nparts; j++)
                    sink += (uint32_t)r->groups[g].topics[i].parts[j];
        break;
    }
    case JN_KAPI_CREATE_TOPICS: {
        const jn_kafka_create_topics_req_t *r = req;
        for (int32_t i = 0; i < r->ntopics; i++)
            for (int32_t j = 0; j < r->topics[i].nconfigs; j++) {
                touch(r->topics[i].configs[j].name);
                touch(r->topics[i].configs[j].value);
            }
        break;
    }
    case JN_KAPI_SASL_AUTHENTICATE: {
        const jn_kafka_sasl_authenticate_req_t *r = req;
        touch_bytes(r->auth_bytes, r->auth_len);
        break;
    }
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        const uint8_t *body;
        size_t blen, flen;
        if (jn_kafka_frame(data + off, size - off, 1 << 20, &body, &blen, &flen) != 0)
            break;
        jn_kafka_header_t h;
        int hl = jn_kafka_parse_header(body, blen, &h);
        if (hl >= 0) {
            touch(h.client_id);
            jn_karena_t a;
            jn_karena_init(&a, 64 << 10);
            uint64_t req[JN_KAFKA_REQ_MAX / 8];
            if (jn_kafka_decode_request(&h, body + hl, blen - (size_t)hl, &a, req) == 0)
                inspect(h.api_key, req);
            jn_karena_free(&a);
        }
        off += flen;
    }
    return 0;
}
