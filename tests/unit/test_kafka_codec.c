/* test_kafka_codec.c - the Kafka codec: framing, request headers, the
 * version table, and each API's request decoder for classic and flexible
 * versions against hand-built bytes, every truncated prefix, bad lengths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proto/kafka/codec.h"

/* ---- a tiny encoder for hand-built requests ---- */
typedef struct bb {
    uint8_t d[4096];
    size_t n;
    bool flex;
} bb_t;

static void u8(bb_t *b, uint8_t v) { b->d[b->n++] = v; }
static void i16(bb_t *b, int16_t v) { u8(b, (uint8_t)((uint16_t)v >> 8)); u8(b, (uint8_t)v); }
static void i32(bb_t *b, int32_t v) { i16(b, (int16_t)((uint32_t)v >> 16)); i16(b, (int16_t)v); }
static void i64(bb_t *b, int64_t v) { i32(b, (int32_t)((uint64_t)v >> 32)); i32(b, (int32_t)v); }
static void uv(bb_t *b, uint32_t v)
{
    while (v >= 0x80) {
        u8(b, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    u8(b, (uint8_t)v);
}
static void len16(bb_t *b, int32_t n) { if (b->flex) uv(b, (uint32_t)(n + 1)); else i16(b, (int16_t)n); }
static void str(bb_t *b, const char *s)
{
    if (!s) { len16(b, -1); return; }
    len16(b, (int32_t)strlen(s));
    memcpy(b->d + b->n, s, strlen(s));
    b->n += strlen(s);
}
static void bytes(bb_t *b, const char *s, int32_t n)
{
    if (b->flex) uv(b, (uint32_t)(n + 1)); else i32(b, n);
    if (n > 0) { memcpy(b->d + b->n, s, (size_t)n); b->n += (size_t)n; }
}
static void arr(bb_t *b, int32_t n) { if (b->flex) uv(b, (uint32_t)(n + 1)); else i32(b, n); }
static void tags(bb_t *b) { if (b->flex) u8(b, 0); }

/* Decodes |b| as |key| v|ver| into |out| and checks that every strict
 * prefix fails cleanly. */
static int decode_(int16_t key, int16_t ver, const bb_t *b, void *out, size_t outlen, jn_karena_t *a)
{
    jn_kafka_header_t h = {.api_key = key, .api_version = ver, .flexible = jn_kafka_is_flexible(key, ver)};
    assert_int_equal(h.flexible, b->flex);
    uint8_t scratch[JN_KAFKA_REQ_MAX];
    for (size_t cut = 0; cut < b->n; cut++) {
        jn_karena_t pa;
        jn_karena_init(&pa, 1 << 20);
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size: ASan catches over-reads */
        memcpy(copy, b->d, cut);
        int rc = jn_kafka_decode_request(&h, copy, cut, &pa, scratch);
        if (rc != JN_EPROTO)
            fail_msg("api %d v%d: prefix %zu of %zu decoded (%d)", key, ver, cut, b->n, rc);
        jn_karena_free(&pa);
        free(copy);
    }
    jn_karena_init(a, 1 << 20);
    int rc = jn_kafka_decode_request(&h, b->d, b->n, a, scratch);
    memcpy(out, scratch, outlen);
    return rc;
}
#define decode(k, v, b, out, a) decode_((k), (v), (b), (out), sizeof *(out), (a))

static bool kstr_is(jn_kstr_t s, const char *v)
{
    if (!v)
        return s.len == -1 && s.p == NULL;
    return s.len == (int32_t)strlen(v) && memcmp(s.p, v, (size_t)s.len) == 0;
}

/* ---- framing, header, versions ---- */

static void test_frame(void **state)
{
    (void)state;
    uint8_t buf[16] = {0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 9, 9};
    const uint8_t *body;
    size_t blen, flen = 0;
    assert_int_equal(jn_kafka_frame(buf, 3, 100, &body, &blen, &flen), JN_EPARTIAL);
    assert_int_equal(jn_kafka_frame(buf, 13, 100, &body, &blen, &flen), JN_EPARTIAL);
    assert_int_equal(flen, 14);
    assert_int_equal(jn_kafka_frame(buf, 16, 100, &body, &blen, &flen), 0);
    assert_int_equal(blen, 10);
    assert_ptr_equal(body, buf + 4);
    assert_int_equal(jn_kafka_frame(buf, 16, 9, &body, &blen, &flen), JN_ETOOBIG);
    uint8_t neg[4] = {0x80, 0, 0, 0};
    assert_int_equal(jn_kafka_frame(neg, 4, 100, &body, &blen, &flen), JN_EPROTO);
    uint8_t small[4] = {0, 0, 0, 3};
    assert_int_equal(jn_kafka_frame(small, 4, 100, &body, &blen, &flen), JN_EPROTO);
}

static void test_header(void **state)
{
    (void)state;
    bb_t b = {0};
    i16(&b, 3); i16(&b, 1); i32(&b, 77); str(&b, "cli");
    jn_kafka_header_t h;
    assert_int_equal(jn_kafka_parse_header(b.d, b.n, &h), (int)b.n);
    assert_int_equal(h.api_key, 3);
    assert_int_equal(h.correlation_id, 77);
    assert_true(kstr_is(h.client_id, "cli"));
    assert_false(h.flexible);
    /* v2 header: the client id stays a classic string, then tagged fields. */
    bb_t f = {0};
    i16(&f, 18); i16(&f, 3); i32(&f, 5); str(&f, NULL); u8(&f, 1); u8(&f, 0); u8(&f, 2); u8(&f, 7); u8(&f, 7);
    assert_int_equal(jn_kafka_parse_header(f.d, f.n, &h), (int)f.n);
    assert_true(h.flexible);
    assert_int_equal(h.client_id.len, -1);
    for (size_t cut = 0; cut < f.n; cut++)
        assert_int_equal(jn_kafka_parse_header(f.d, cut, &h), JN_EPROTO);
    /* Unknown APIs parse (classic) so they can be refused. */
    bb_t u = {0};
    i16(&u, 999); i16(&u, 0); i32(&u, 1); str(&u, "x");
    assert_int_equal(jn_kafka_parse_header(u.d, u.n, &h), (int)u.n);
    assert_false(jn_kafka_version_supported(999, 0));
}

static void test_versions(void **state)
{
    (void)state;
    assert_true(jn_kafka_version_supported(JN_KAPI_FETCH, 12));
    assert_false(jn_kafka_version_supported(JN_KAPI_FETCH, 13));
    assert_true(jn_kafka_version_supported(JN_KAPI_PRODUCE, 0)); /* see codec.c: librdkafka's compression check */
    assert_false(jn_kafka_version_supported(JN_KAPI_PRODUCE, 10));
    assert_true(jn_kafka_is_flexible(JN_KAPI_METADATA, 9));
    assert_false(jn_kafka_is_flexible(JN_KAPI_METADATA, 8));
    assert_false(jn_kafka_is_flexible(JN_KAPI_SASL_HANDSHAKE, 1));
    assert_int_equal(jn_kafka_response_header_version(JN_KAPI_API_VERSIONS, 3), 0);
    assert_int_equal(jn_kafka_response_header_version(JN_KAPI_METADATA, 9), 1);
    size_t n;
    const jn_kafka_api_range_t *r = jn_kafka_apis(&n);
    for (size_t i = 1; i < n; i++)
        assert_true(r[i - 1].key < r[i].key);
}

/* ---- per-API decoders ---- */

static void test_api_versions(void **state)
{
    (void)state;
    jn_karena_t a;
    jn_kafka_api_versions_req_t r;
    bb_t f = {.flex = true};
    str(&f, "librdkafka"); str(&f, "2.0.2"); tags(&f);
    assert_int_equal(decode(JN_KAPI_API_VERSIONS, 3, &f, &r, &a), 0);
    assert_true(kstr_is(r.client_software_name, "librdkafka"));
    jn_karena_free(&a);
    bb_t c = {0};
    jn_karena_init(&a, 1024);
    jn_kafka_header_t h = {.api_key = JN_KAPI_API_VERSIONS, .api_version = 0};
    uint8_t scratch[JN_KAFKA_REQ_MAX];
    assert_int_equal(jn_kafka_decode_request(&h, c.d, 0, &a, scratch), 0);
    jn_karena_free(&a);
}

static void test_metadata(void **state)
{
    (void)state;
    jn_karena_t a;
    jn_kafka_metadata_req_t r;
    bb_t c = {0};
    arr(&c, 2); str(&c, "a"); str(&c, "bb"); u8(&c, 0);
    assert_int_equal(decode(JN_KAPI_METADATA, 4, &c, &r, &a), 0);
    assert_int_equal(r.ntopics, 2);
    assert_true(kstr_is(r.topics[1], "bb"));
    assert_false(r.allow_auto_create);
    jn_karena_free(&a);
    bb_t n = {0};
    arr(&n, -1);
    assert_int_equal(decode(JN_KAPI_METADATA, 1, &n, &r, &a), 0);
    assert_int_equal(r.ntopics, -1);
    jn_karena_free(&a);
    bb_t f = {.flex = true};
    arr(&f, 1); for (int i = 0; i < 16; i++) u8(&f, 0); str(&f, "t"); tags(&f);
    u8(&f, 1); u8(&f, 0); tags(&f);
    assert_int_equal(decode(JN_KAPI_METADATA, 12, &f, &r, &a), 0);
    assert_true(kstr_is(r.topics[0], "t"));
    assert_true(r.allow_auto_create);
    jn_karena_free(&a);
    /* An array count larger than the bytes left is refused before allocating. */
    bb_t big = {0};
    arr(&big, 0x7fffffff);
    jn_karena_init(&a, 1024);
    jn_kafka_header_t h = {.api_key = JN_KAPI_METADATA, .api_version = 1};
    uint8_t scratch[JN_KAFKA_REQ_MAX];
    assert_int_equal(jn_kafka_decode_request(&h, big.d, big.n, &a, scratch), JN_EPROTO);
    jn_karena_free(&a);
}

static void build_produce(bb_t *b)
{
    str(b, NULL); i16(b, -1); i32(b, 30000);
    arr(b, 1); str(b, "orders");
    arr(b, 1); i32(b, 2); bytes(b, "RECORDS", 7); tags(b);
    tags(b); tags(b);
}

static void test_produce(void **state)
{
    (void)state;
    jn_karena_t a;
    jn_kafka_produce_req_t r;
    for (int flex = 0; flex < 2; flex++) {
        bb_t b = {.flex = flex};
        build_produce(&b);
        assert_int_equal(decode(JN_KAPI_PRODUCE, flex ? 9 : 7, &b, &r, &a), 0);
        assert_int_equal(r.acks, -1);
        assert_int_equal(r.transactional_id.len, -1);
        assert_true(kstr_is(r.topics[0].name, "orders"));
        assert_int_equal(r.topics[0].parts[0].index, 2);
        assert_int_equal(r.topics[0].parts[0].records_len, 7);
        assert_memory_equal(r.topics[0].parts[0].records, "RECORDS", 7);
        jn_karena_free(&a);
    }
    /* A records length past the frame. */
    bb_t bad = {0};
    str(&bad, NULL); i16(&bad, 1); i32(&bad, 0); arr(&bad, 1); str(&bad, "t"); arr(&bad, 1); i32(&bad, 0);
    i32(&bad, 1000);
    jn_karena_init(&a, 1024);
    jn_kafka_header_t h = {.api_key = JN_KAPI_PRODUCE, .api_version = 3};
    uint8_t scratch[JN_KAFKA_REQ_MAX];
    assert_int_equal(jn_kafka_decode_request(&h, bad.d, bad.n, &a, scratch), JN_EPROTO);
    jn_karena_free(&a);
}

static void test_fetch(void **state)
{
    (void)state;
    jn_karena_t a;
    jn_kafka_fetch_req_t r;
    bb_t c = {0}; /* v4 */
    i32(&c, -1); i32(&c, 500); i32(&c, 1); i32(&c, 52428800); u8(&c, 0);
    arr(&c, 1); str(&c, "t"); arr(&c, 1); i32(&c, 0); i64(&c, 42); i32(&c, 1048576);
    assert_int_equal(decode(JN_KAPI_FETCH, 4, &c, &r, &a), 0);
    assert_int_equal(r.max_wait_ms, 500);
    assert_int_equal(r.topics[0].parts[0].fetch_offset, 42);
    assert_int_equal(r.session_epoch, -1);
    jn_karena_free(&a);
    bb_t f = {.flex = true}; /* v12 */
    i32(&f, -1); i32(&f, 100); i32(&f, 1); i32(&f, 1000); u8(&f, 1); i32(&f, 0); i32(&f, -1);
    arr(&f, 1); str(&f, "t"); arr(&f, 1);
    i32(&f, 3); i32(&f, -1); i64(&f, 7); i32(&f, -1); i64(&f, 0); i32(&f, 999); tags(&f); tags(&f);
    arr(&f, 1); str(&f, "old"); arr(&f, 1); i32(&f, 0); tags(&f);
    str(&f, "rack"); tags(&f);
    assert_int_equal(decode(JN_KAPI_FETCH, 12, &f, &r, &a), 0);
    assert_int_equal(r.topics[0].parts[0].partition, 3);
    assert_int_equal(r.topics[0].parts[0].fetch_offset, 7);
    assert_int_equal(r.topics[0].parts[0].max_bytes, 999);
    assert_true(kstr_is(r.rack_id, "rack"));
    jn_karena_free(&a);
}

static void test_list_offsets(void **state)
{
    (void)state;
    jn_karena_t a;
    jn_kafka_list_offsets_req_t r;
    bb_t c = {0};
    i32(&c, -1); arr(&c, 1); str(&c, "t"); arr(&c, 1); i32(&c, 0); i64(&c, -2);
    assert_int_equal(decode(JN_KAPI_LIST_OFFSETS, 1, &c, &r, &a), 0);
    assert_int_equal(r.topics[0].parts[0].timestamp, -2);
    jn_karena_free(&a);
    bb_t f = {.flex = true};
    i32(&f, -1); u8(&f, 0); arr(&f, 1); str(&f, "t"); arr(&f, 1); i32(&f, 1); i32(&f, 0); i64(&f, 123);
    tags(&f); tags(&f); tags(&f);
    assert_int_equal(decode(JN_KAPI_LIST_OFFSETS, 7, &f, &r, &a), 0);
    assert_int_equal(r.topics[0].parts[0].partition, 1);
    assert_int_equal(r.topics[0].parts[0].timestamp, 123);
    jn_karena_free(&a);
}

static void test_find_coordinator(void **state)
{
    (void)state;
    jn_karena_t a;
    jn_kafka_find_coordinator_req_t r;
    bb_t c = {0};
    str(&c, "grp");
    assert_int_equal(decode(JN_KAPI_FIND_COORDINATOR, 0, &c, &r, &a), 0);
    assert_true(kstr_is(r.keys[0], "grp"));
    jn_karena_free(&a);
    bb_t f = {.flex = true};
    u8(&f, 0); arr(&f, 2); str(&f, "g1"); str(&f, "g2"); tags(&f);
    assert_int_equal(decode(JN_KAPI_FIND_COORDINATOR, 4, &f, &r, &a), 0);
    assert_int_equal(r.nkeys, 2);
    assert_true(kstr_is(r.keys[1], "g2"));
    jn_karena_free(&a);
}

static void test_join_sync_heartbeat_leave(void **state)
{
    (void)state;
    jn_karena_t a;
    jn_kafka_join_group_req_t j;
    bb_t c = {0}; /* v5 */
    str(&c, "g"); i32(&c, 10000); i32(&c, 300000); str(&c, ""); str(&c, NULL); str(&c, "consumer");
    arr(&c, 1); str(&c, "range"); bytes(&c, "meta", 4);
    assert_int_equal(decode(JN_KAPI_JOIN_GROUP, 5, &c, &j, &a), 0);
    assert_int_equal(j.rebalance_timeout_ms, 300000);
    assert_true(kstr_is(j.protocols[0].name, "range"));
    assert_int_equal(j.protocols[0].metadata_len, 4);
    jn_karena_free(&a);
    bb_t f = {.flex = true}; /* v8 */
    str(&f, "g"); i32(&f, 45000); i32(&f, 300000); str(&f, "m-1"); str(&f, "inst"); str(&f, "consumer");
    arr(&f, 1); str(&f, "cooperative-sticky"); bytes(&f, "", 0); tags(&f); str(&f, "why"); tags(&f);
    assert_int_equal(decode(JN_KAPI_JOIN_GROUP, 8, &f, &j, &a), 0);
    assert_true(kstr_is(j.member_id, "m-1"));
    assert_true(kstr_is(j.group_instance_id, "inst"));
    assert_true(kstr_is(j.reason, "why"));
    jn_karena_free(&a);

    jn_kafka_sync_group_req_t s;
    bb_t sc = {0}; /* v1 */
    str(&sc, "g"); i32(&sc, 3); str(&sc, "m"); arr(&sc, 1); str(&sc, "m"); bytes(&sc, "AS", 2);
    assert_int_equal(decode(JN_KAPI_SYNC_GROUP, 1, &sc, &s, &a), 0);
    assert_int_equal(s.generation_id, 3);
    assert_int_equal(s.assignments[0].assignment_len, 2);
    jn_karena_free(&a);
    bb_t sf = {.flex = true}; /* v5 */
    str(&sf, "g"); i32(&sf, 3); str(&sf, "m"); str(&sf, NULL); str(&sf, "consumer"); str(&sf, "range");
    arr(&sf, 0); tags(&sf);
    assert_int_equal(decode(JN_KAPI_SYNC_GROUP, 5, &sf, &s, &a), 0);
    assert_true(kstr_is(s.protocol_name, "range"));
    assert_int_equal(s.nassignments, 0);
    jn_karena_free(&a);

    jn_kafka_heartbeat_req_t h;
    bb_t hf = {.flex = true};
    str(&hf, "g"); i32(&hf, 9); str(&hf, "m"); str(&hf, NULL); tags(&hf);
    assert_int_equal(decode(JN_KAPI_HEARTBEAT, 4, &hf, &h, &a), 0);
    assert_int_equal(h.generation_id, 9);
    jn_karena_free(&a);

    jn_kafka_leave_group_req_t l;
    bb_t lc = {0};
    str(&lc, "g"); str(&lc, "m");
    assert_int_equal(decode(JN_KAPI_LEAVE_GROUP, 0, &lc, &l, &a), 0);
    assert_int_equal(l.nmembers, 1);
    assert_true(kstr_is(l.members[0].member_id, "m"));
    jn_karena_free(&a);
    bb_t lf = {.flex = true};
    str(&lf, "g"); arr(&lf, 2); str(&lf, "m1"); str(&lf, NULL); str(&lf, NULL); tags(&lf);
    str(&lf, "m2"); str(&lf, "i"); str(&lf, "r"); tags(&lf); tags(&lf);
    assert_int_equal(decode(JN_KAPI_LEAVE_GROUP, 5, &lf, &l, &a), 0);
    assert_int_equal(l.nmembers, 2);
    assert_true(kstr_is(l.members[1].group_instance_id, "i"));
    jn_karena_free(&a);
}

static void test_offsets(void **state)
{
    (void)state;
    jn_karena_t a;
    jn_kafka_offset_commit_req_t c;
    bb_t cc = {0}; /* v2: retention time */
    str(&cc, "g"); i32(&cc, 1); str(&cc, "m"); i64(&cc, -1);
    arr(&cc, 1); str(&cc, "t"); arr(&cc, 1); i32(&cc, 0); i64(&cc, 99); str(&cc, "meta");
    assert_int_equal(decode(JN_KAPI_OFFSET_COMMIT, 2, &cc, &c, &a), 0);
    assert_int_equal(c.topics[0].parts[0].offset, 99);
    assert_true(kstr_is(c.topics[0].parts[0].metadata, "meta"));
    jn_karena_free(&a);
    bb_t cf = {.flex = true}; /* v8 */
    str(&cf, "g"); i32(&cf, 1); str(&cf, "m"); str(&cf, NULL);
    arr(&cf, 1); str(&cf, "t"); arr(&cf, 1); i32(&cf, 1); i64(&cf, 5); i32(&cf, -1); str(&cf, NULL); tags(&cf);
    tags(&cf); tags(&cf);
    assert_int_equal(decode(JN_KAPI_OFFSET_COMMIT, 8, &cf, &c, &a), 0);
    assert_int_equal(c.topics[0].parts[0].partition, 1);
    assert_int_equal(c.topics[0].parts[0].metadata.len, -1);
    jn_karena_free(&a);

    jn_kafka_offset_fetch_req_t f;
    bb_t fc = {0}; /* v1 */
    str(&fc, "g"); arr(&fc, 1); str(&fc, "t"); arr(&fc, 2); i32(&fc, 0); i32(&fc, 1);
    assert_int_equal(decode(JN_KAPI_OFFSET_FETCH, 1, &fc, &f, &a), 0);
    assert_int_equal(f.groups[0].topics[0].nparts, 2);
    jn_karena_free(&a);
    bb_t fn = {0}; /* v2: null topics = all */
    str(&fn, "g"); arr(&fn, -1);
    assert_int_equal(decode(JN_KAPI_OFFSET_FETCH, 2, &fn, &f, &a), 0);
    assert_int_equal(f.groups[0].ntopics, -1);
    jn_karena_free(&a);
    bb_t ff = {.flex = true}; /* v8 */
    arr(&ff, 1); str(&ff, "g"); arr(&ff, -1); tags(&ff); u8(&ff, 1); tags(&ff);
    assert_int_equal(decode(JN_KAPI_OFFSET_FETCH, 8, &ff, &f, &a), 0);
    assert_true(kstr_is(f.groups[0].group_id, "g"));
    assert_true(f.require_stable);
    jn_karena_free(&a);
}

static void test_groups_admin(void **state)
{
    (void)state;
    jn_karena_t a;
    jn_kafka_describe_groups_req_t d;
    bb_t dc = {0};
    arr(&dc, 1); str(&dc, "g");
    assert_int_equal(decode(JN_KAPI_DESCRIBE_GROUPS, 0, &dc, &d, &a), 0);
    assert_true(kstr_is(d.groups[0], "g"));
    jn_karena_free(&a);
    bb_t df = {.flex = true};
    arr(&df, 1); str(&df, "g"); u8(&df, 1); tags(&df);
    assert_int_equal(decode(JN_KAPI_DESCRIBE_GROUPS, 5, &df, &d, &a), 0);
    assert_true(d.include_authorized_operations);
    jn_karena_free(&a);
    jn_kafka_list_groups_req_t l;
    bb_t lf = {.flex = true};
    arr(&lf, 1); str(&lf, "Stable"); tags(&lf);
    assert_int_equal(decode(JN_KAPI_LIST_GROUPS, 4, &lf, &l, &a), 0);
    assert_true(kstr_is(l.states[0], "Stable"));
    jn_karena_free(&a);
}

static void test_topics_admin(void **state)
{
    (void)state;
    jn_karena_t a;
    jn_kafka_create_topics_req_t c;
    for (int flex = 0; flex < 2; flex++) {
        bb_t b = {.flex = flex};
        arr(&b, 1); str(&b, "new"); i32(&b, 3); i16(&b, 1); arr(&b, 0);
        arr(&b, 1); str(&b, "cleanup.policy"); str(&b, "compact"); tags(&b); tags(&b);
        i32(&b, 5000); u8(&b, 1); tags(&b);
        assert_int_equal(decode(JN_KAPI_CREATE_TOPICS, flex ? 5 : 2, &b, &c, &a), 0);
        assert_int_equal(c.topics[0].num_partitions, 3);
        assert_true(kstr_is(c.topics[0].configs[0].value, "compact"));
        assert_true(c.validate_only);
        jn_karena_free(&a);
    }
    jn_kafka_delete_topics_req_t d;
    bb_t dc = {0};
    arr(&dc, 1); str(&dc, "old"); i32(&dc, 100);
    assert_int_equal(decode(JN_KAPI_DELETE_TOPICS, 1, &dc, &d, &a), 0);
    assert_true(kstr_is(d.topics[0].name, "old"));
    jn_karena_free(&a);
    bb_t df = {.flex = true};
    arr(&df, 1); str(&df, NULL); for (int i = 0; i < 16; i++) u8(&df, (uint8_t)i); tags(&df); i32(&df, 1); tags(&df);
    assert_int_equal(decode(JN_KAPI_DELETE_TOPICS, 6, &df, &d, &a), 0);
    assert_int_equal(d.topics[0].name.len, -1);
    assert_int_equal(d.topics[0].topic_id[15], 15);
    jn_karena_free(&a);
    jn_kafka_create_partitions_req_t p;
    bb_t pc = {0};
    arr(&pc, 1); str(&pc, "t"); i32(&pc, 4); arr(&pc, -1); i32(&pc, 100); u8(&pc, 0);
    assert_int_equal(decode(JN_KAPI_CREATE_PARTITIONS, 1, &pc, &p, &a), 0);
    assert_int_equal(p.topics[0].count, 4);
    assert_int_equal(p.topics[0].nassignments, -1);
    jn_karena_free(&a);
    jn_kafka_describe_configs_req_t dcf;
    bb_t cc = {0};
    arr(&cc, 1); u8(&cc, 2); str(&cc, "t"); arr(&cc, -1); u8(&cc, 0);
    assert_int_equal(decode(JN_KAPI_DESCRIBE_CONFIGS, 1, &cc, &dcf, &a), 0);
    assert_int_equal(dcf.resources[0].type, 2);
    assert_int_equal(dcf.resources[0].nkeys, -1);
    jn_karena_free(&a);
    bb_t cf = {.flex = true};
    arr(&cf, 1); u8(&cf, 2); str(&cf, "t"); arr(&cf, 1); str(&cf, "retention.ms"); tags(&cf);
    u8(&cf, 0); u8(&cf, 0); tags(&cf);
    assert_int_equal(decode(JN_KAPI_DESCRIBE_CONFIGS, 4, &cf, &dcf, &a), 0);
    assert_true(kstr_is(dcf.resources[0].keys[0], "retention.ms"));
    jn_karena_free(&a);
}

static void test_producer_id_and_sasl(void **state)
{
    (void)state;
    jn_karena_t a;
    jn_kafka_init_producer_id_req_t p;
    bb_t pc = {0};
    str(&pc, NULL); i32(&pc, 60000);
    assert_int_equal(decode(JN_KAPI_INIT_PRODUCER_ID, 1, &pc, &p, &a), 0);
    assert_int_equal(p.producer_id, -1);
    jn_karena_free(&a);
    bb_t pf = {.flex = true};
    str(&pf, NULL); i32(&pf, 60000); i64(&pf, 12); i16(&pf, 3); tags(&pf);
    assert_int_equal(decode(JN_KAPI_INIT_PRODUCER_ID, 4, &pf, &p, &a), 0);
    assert_int_equal(p.producer_id, 12);
    assert_int_equal(p.producer_epoch, 3);
    jn_karena_free(&a);
    jn_kafka_sasl_handshake_req_t h;
    bb_t hc = {0};
    str(&hc, "SCRAM-SHA-256");
    assert_int_equal(decode(JN_KAPI_SASL_HANDSHAKE, 1, &hc, &h, &a), 0);
    assert_true(kstr_is(h.mechanism, "SCRAM-SHA-256"));
    jn_karena_free(&a);
    jn_kafka_sasl_authenticate_req_t s;
    bb_t sc = {0};
    bytes(&sc, "\0u\0p", 4);
    assert_int_equal(decode(JN_KAPI_SASL_AUTHENTICATE, 1, &sc, &s, &a), 0);
    assert_int_equal(s.auth_len, 4);
    jn_karena_free(&a);
    bb_t sf = {.flex = true};
    bytes(&sf, "n,,n=u,r=x", 10); tags(&sf);
    assert_int_equal(decode(JN_KAPI_SASL_AUTHENTICATE, 2, &sf, &s, &a), 0);
    assert_int_equal(s.auth_len, 10);
    jn_karena_free(&a);
}

static void test_writer_and_overlong_varint(void **state)
{
    (void)state;
    jn_buf_t b;
    jn_buf_init(&b, 64);
    jn_kwriter_t w;
    jn_kwriter_init(&w, &b, true);
    jn_kw_cstr(&w, "ab");
    jn_kw_str(&w, NULL, -1);
    jn_kw_array(&w, 2);
    jn_kw_tags(&w);
    const uint8_t want[] = {3, 'a', 'b', 0, 3, 0};
    assert_int_equal(b.len, sizeof want);
    assert_memory_equal(b.data, want, sizeof want);
    jn_buf_reset(&b);
    w.flex = false;
    jn_kw_cstr(&w, "ab");
    jn_kw_bytes(&w, NULL, -1);
    const uint8_t want2[] = {0, 2, 'a', 'b', 0xff, 0xff, 0xff, 0xff};
    assert_memory_equal(b.data, want2, sizeof want2);
    /* The cap makes the writer fail, not overflow. */
    uint8_t big[100] = {0};
    jn_kw_raw(&w, big, sizeof big);
    assert_int_equal(w.err, JN_ETOOBIG);
    jn_buf_free(&b);
    /* Overlong varints are malformed. */
    uint8_t ov[6] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
    jn_kreader_t r;
    jn_kreader_init(&r, ov, sizeof ov, true);
    (void)jn_kr_uvarint(&r);
    assert_int_equal(r.err, JN_EPROTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame),
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_api_versions),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_produce),
        cmocka_unit_test(test_fetch),
        cmocka_unit_test(test_list_offsets),
        cmocka_unit_test(test_find_coordinator),
        cmocka_unit_test(test_join_sync_heartbeat_leave),
        cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_groups_admin),
        cmocka_unit_test(test_topics_admin),
        cmocka_unit_test(test_producer_id_and_sasl),
        cmocka_unit_test(test_writer_and_overlong_varint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
