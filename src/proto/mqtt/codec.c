/* codec.c - MQTT 3.1.1 and 5.0 packets: a stateless, copy-free decoder that
 * validates everything a packet alone can show, and encoders for both
 * directions.
 *
 * Wire format in brief (both versions): a fixed header (type nibble, flags
 * nibble, Remaining Length as a Variable Byte Integer of at most 4 bytes,
 * minimally encoded), then a variable header and payload whose layout
 * depends on the type. MQTT 5 adds a property block (VBI length, then
 * identifier/value pairs) to most variable headers, and reason codes to
 * the acknowledgements.
 *
 * The decoder's internal helpers return 0 or the MQTT 5 reason code of the
 * first problem found (0x81 Malformed, 0x82 Protocol Error, ...); only
 * jn_mqtt_decode turns that into a JN_E* code, so the hot path carries one
 * small integer and no error objects.
 */
#include "proto/mqtt/codec.h"

#include "common/utf8.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define MAL JN_MQTT_RC_MALFORMED
#define PROTO JN_MQTT_RC_PROTOCOL_ERROR

/* ------------------------------------------------------------------ */
/* Reading                                                              */
/* ------------------------------------------------------------------ */

typedef struct rd {
    const uint8_t *p;
    const uint8_t *end;
} rd_t;

static inline size_t rd_left(const rd_t *r) { return (size_t)(r->end - r->p); }

static inline int rd_u8(rd_t *r, uint8_t *v)
{
    if (r->p >= r->end)
        return MAL;
    *v = *r->p++;
    return 0;
}

static inline int rd_u16(rd_t *r, uint16_t *v)
{
    if (rd_left(r) < 2)
        return MAL;
    *v = jn_load_be16(r->p);
    r->p += 2;
    return 0;
}

static inline int rd_u32(rd_t *r, uint32_t *v)
{
    if (rd_left(r) < 4)
        return MAL;
    *v = jn_load_be32(r->p);
    r->p += 4;
    return 0;
}

/* Variable Byte Integer: at most 4 bytes, and minimally encoded (MQTT 5
 * 1.5.5 requires the minimum number of bytes; a last byte of 0 after a
 * continuation is the only non-minimal form). */
static int rd_vbi(rd_t *r, uint32_t *v)
{
    uint32_t val = 0;
    for (int i = 0; i < 4; i++) {
        if (r->p >= r->end)
            return MAL;
        uint8_t b = *r->p++;
        val |= (uint32_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            if (b == 0 && i > 0)
                return MAL;
            *v = val;
            return 0;
        }
    }
    return MAL;
}

static inline int rd_bin(rd_t *r, jn_mqtt_view_t *v)
{
    uint16_t n;
    if (rd_u16(r, &n) || rd_left(r) < n)
        return MAL;
    v->data = r->p;
    v->len = n;
    r->p += n;
    return 0;
}

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Nonzero when one of the 8 bytes at |p| needs a closer look: a byte with
 * the high bit (non-ASCII), a zero byte, and for a topic '#' (0x23) or
 * '+' (0x2B), which differ only in bit 3, so that one test finds both. The
 * zero-byte test may also flag a byte next to a high-bit byte, which is
 * flagged anyway. */
static inline uint64_t str_bad8(const uint8_t *p, bool topic)
{
    uint64_t w;
    memcpy(&w, p, 8);
    uint64_t bad = w | ((w - ONES) & ~w);
    if (topic) {
        uint64_t t = (w | (ONES * 0x08)) ^ (ONES * '+');
        bad |= (t - ONES) & ~t;
    }
    return bad & HIGHS;
}

/* The byte-by-byte check of str_check, from index |i|: full UTF-8
 * decoding (jn_utf8_char) plus the MQTT rules on ASCII bytes. Kept out of line so that the ASCII path stays small. */
static __attribute__((noinline)) int str_check_slow(const uint8_t *p, size_t len, size_t i, bool topic)
{
    while (i < len) {
        uint8_t c = p[i];
        if (c < 0x80) {
            if (c == 0)
                return MAL;
            if (topic && (c == '+' || c == '#'))
                return JN_MQTT_RC_TOPIC_NAME_INVALID;
            i++;
        } else {
            size_t k = jn_utf8_char(p + i, len - i);
            if (k == 0)
                return MAL;
            i += k;
        }
    }
    return 0;
}

/* Checks a string for well-formed UTF-8 and no U+0000; when |topic| is
 * set, also for the wildcards '+' and '#'. Returns 0, MAL, or 0x90
 * Topic Name invalid. Plain ASCII goes 8 bytes at a time (the tail as an
 * overlapping last word); anything else byte by byte from that word on. */
#ifdef __SSE2__
/* str_bad8 on 16 bytes (SSE2 is part of x86-64). */
static inline int str_bad16(const uint8_t *p, bool topic)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i bad = _mm_or_si128(v, _mm_cmpeq_epi8(v, _mm_setzero_si128()));
    if (topic)
        bad = _mm_or_si128(bad, _mm_cmpeq_epi8(_mm_or_si128(v, _mm_set1_epi8(0x08)), _mm_set1_epi8('+')));
    return _mm_movemask_epi8(bad);
}
#endif

static inline int str_check(const uint8_t *p, size_t len, bool topic)
{
    size_t i = 0;
#ifdef __SSE2__
    if (len >= 16) {
        for (; i + 16 <= len; i += 16)
            if (str_bad16(p + i, topic))
                return str_check_slow(p, len, i, topic);
        if (i == len || !str_bad16(p + len - 16, topic))
            return 0;
        return str_check_slow(p, len, i, topic);
    }
#endif
    if (len >= 8) {
        for (; i + 8 <= len; i += 8)
            if (str_bad8(p + i, topic))
                return str_check_slow(p, len, i, topic);
        if (i == len || !str_bad8(p + len - 8, topic))
            return 0;
    }
    return str_check_slow(p, len, i, topic);
}

bool jn_mqtt_utf8_valid(const uint8_t *p, size_t len) { return str_check(p, len, false) == 0; }

static inline int rd_str(rd_t *r, jn_mqtt_view_t *v)
{
    int rc = rd_bin(r, v);
    if (rc)
        return rc;
    return str_check(v->data, v->len, false);
}

/* ------------------------------------------------------------------ */
/* Properties                                                           */
/* ------------------------------------------------------------------ */

enum { T_NONE, T_BYTE, T_U16, T_U32, T_VBI, T_STR, T_BIN, T_PAIR };

static const uint8_t prop_type[64] = {
    [JN_MQTT_PROP_PAYLOAD_FORMAT] = T_BYTE,
    [JN_MQTT_PROP_MESSAGE_EXPIRY] = T_U32,
    [JN_MQTT_PROP_CONTENT_TYPE] = T_STR,
    [JN_MQTT_PROP_RESPONSE_TOPIC] = T_STR,
    [JN_MQTT_PROP_CORRELATION_DATA] = T_BIN,
    [JN_MQTT_PROP_SUB_ID] = T_VBI,
    [JN_MQTT_PROP_SESSION_EXPIRY] = T_U32,
    [JN_MQTT_PROP_ASSIGNED_CLIENT_ID] = T_STR,
    [JN_MQTT_PROP_SERVER_KEEP_ALIVE] = T_U16,
    [JN_MQTT_PROP_AUTH_METHOD] = T_STR,
    [JN_MQTT_PROP_AUTH_DATA] = T_BIN,
    [JN_MQTT_PROP_REQUEST_PROBLEM_INFO] = T_BYTE,
    [JN_MQTT_PROP_WILL_DELAY] = T_U32,
    [JN_MQTT_PROP_REQUEST_RESPONSE_INFO] = T_BYTE,
    [JN_MQTT_PROP_RESPONSE_INFO] = T_STR,
    [JN_MQTT_PROP_SERVER_REFERENCE] = T_STR,
    [JN_MQTT_PROP_REASON_STRING] = T_STR,
    [JN_MQTT_PROP_RECEIVE_MAXIMUM] = T_U16,
    [JN_MQTT_PROP_TOPIC_ALIAS_MAXIMUM] = T_U16,
    [JN_MQTT_PROP_TOPIC_ALIAS] = T_U16,
    [JN_MQTT_PROP_MAXIMUM_QOS] = T_BYTE,
    [JN_MQTT_PROP_RETAIN_AVAILABLE] = T_BYTE,
    [JN_MQTT_PROP_USER] = T_PAIR,
    [JN_MQTT_PROP_MAXIMUM_PACKET_SIZE] = T_U32,
    [JN_MQTT_PROP_WILDCARD_SUB_AVAILABLE] = T_BYTE,
    [JN_MQTT_PROP_SUB_ID_AVAILABLE] = T_BYTE,
    [JN_MQTT_PROP_SHARED_SUB_AVAILABLE] = T_BYTE,
};

#define B(id) JN_MQTT_PBIT(JN_MQTT_PROP_##id)
/* Not a property: marks the one packet (PUBLISH) where the Subscription
 * Identifier may repeat. */
#define MULTI_SUB_ID (1ull << 63)

/* Which properties each packet may carry (MQTT 5 table 2-4). */
#define P_CONNECT                                                                                            \
    (B(SESSION_EXPIRY) | B(AUTH_METHOD) | B(AUTH_DATA) | B(REQUEST_PROBLEM_INFO) |                          \
     B(REQUEST_RESPONSE_INFO) | B(RECEIVE_MAXIMUM) | B(TOPIC_ALIAS_MAXIMUM) | B(USER) |                     \
     B(MAXIMUM_PACKET_SIZE))
#define P_WILL                                                                                               \
    (B(PAYLOAD_FORMAT) | B(MESSAGE_EXPIRY) | B(CONTENT_TYPE) | B(RESPONSE_TOPIC) | B(CORRELATION_DATA) |     \
     B(WILL_DELAY) | B(USER))
#define P_CONNACK                                                                                            \
    (B(SESSION_EXPIRY) | B(ASSIGNED_CLIENT_ID) | B(SERVER_KEEP_ALIVE) | B(AUTH_METHOD) | B(AUTH_DATA) |     \
     B(RESPONSE_INFO) | B(SERVER_REFERENCE) | B(REASON_STRING) | B(RECEIVE_MAXIMUM) |                      \
     B(TOPIC_ALIAS_MAXIMUM) | B(MAXIMUM_QOS) | B(RETAIN_AVAILABLE) | B(USER) | B(MAXIMUM_PACKET_SIZE) |     \
     B(WILDCARD_SUB_AVAILABLE) | B(SUB_ID_AVAILABLE) | B(SHARED_SUB_AVAILABLE))
#define P_PUBLISH                                                                                            \
    (B(PAYLOAD_FORMAT) | B(MESSAGE_EXPIRY) | B(CONTENT_TYPE) | B(RESPONSE_TOPIC) | B(CORRELATION_DATA) |     \
     B(SUB_ID) | B(TOPIC_ALIAS) | B(USER) | MULTI_SUB_ID)
#define P_ACK (B(REASON_STRING) | B(USER))
#define P_SUBSCRIBE (B(SUB_ID) | B(USER))
#define P_UNSUBSCRIBE (B(USER))
#define P_DISCONNECT (B(SESSION_EXPIRY) | B(SERVER_REFERENCE) | B(REASON_STRING) | B(USER))
#define P_AUTH (B(AUTH_METHOD) | B(AUTH_DATA) | B(REASON_STRING) | B(USER))
/* What the encoder may leave out to fit the peer's Maximum Packet Size. */
#define P_DROPPABLE (B(REASON_STRING) | B(USER))

static inline void props_empty(jn_mqtt_props_t *pr)
{
    pr->present = 0;
    pr->sub_id_count = 0;
    pr->sub_ids = NULL;
    pr->user = NULL;
    pr->user_count = 0;
    pr->raw.data = NULL;
    pr->raw.len = 0;
    pr->limit = 0;
}

static uint32_t *prop_u32(jn_mqtt_props_t *pr, uint8_t id)
{
    switch (id) {
    case JN_MQTT_PROP_MESSAGE_EXPIRY: return &pr->message_expiry;
    case JN_MQTT_PROP_SESSION_EXPIRY: return &pr->session_expiry;
    case JN_MQTT_PROP_WILL_DELAY: return &pr->will_delay;
    case JN_MQTT_PROP_MAXIMUM_PACKET_SIZE: return &pr->max_packet_size;
    case JN_MQTT_PROP_SUB_ID: return &pr->sub_id;
    default: return NULL;
    }
}

static uint16_t *prop_u16(jn_mqtt_props_t *pr, uint8_t id)
{
    switch (id) {
    case JN_MQTT_PROP_SERVER_KEEP_ALIVE: return &pr->server_keep_alive;
    case JN_MQTT_PROP_RECEIVE_MAXIMUM: return &pr->receive_maximum;
    case JN_MQTT_PROP_TOPIC_ALIAS_MAXIMUM: return &pr->topic_alias_maximum;
    case JN_MQTT_PROP_TOPIC_ALIAS: return &pr->topic_alias;
    default: return NULL;
    }
}

static uint8_t *prop_u8(jn_mqtt_props_t *pr, uint8_t id)
{
    switch (id) {
    case JN_MQTT_PROP_PAYLOAD_FORMAT: return &pr->payload_format;
    case JN_MQTT_PROP_REQUEST_PROBLEM_INFO: return &pr->request_problem_info;
    case JN_MQTT_PROP_REQUEST_RESPONSE_INFO: return &pr->request_response_info;
    case JN_MQTT_PROP_MAXIMUM_QOS: return &pr->maximum_qos;
    case JN_MQTT_PROP_RETAIN_AVAILABLE: return &pr->retain_available;
    case JN_MQTT_PROP_WILDCARD_SUB_AVAILABLE: return &pr->wildcard_sub_available;
    case JN_MQTT_PROP_SUB_ID_AVAILABLE: return &pr->sub_id_available;
    case JN_MQTT_PROP_SHARED_SUB_AVAILABLE: return &pr->shared_sub_available;
    default: return NULL;
    }
}

static jn_mqtt_view_t *prop_view(jn_mqtt_props_t *pr, uint8_t id)
{
    switch (id) {
    case JN_MQTT_PROP_CONTENT_TYPE: return &pr->content_type;
    case JN_MQTT_PROP_RESPONSE_TOPIC: return &pr->response_topic;
    case JN_MQTT_PROP_CORRELATION_DATA: return &pr->correlation_data;
    case JN_MQTT_PROP_ASSIGNED_CLIENT_ID: return &pr->assigned_client_id;
    case JN_MQTT_PROP_AUTH_METHOD: return &pr->auth_method;
    case JN_MQTT_PROP_AUTH_DATA: return &pr->auth_data;
    case JN_MQTT_PROP_RESPONSE_INFO: return &pr->response_info;
    case JN_MQTT_PROP_SERVER_REFERENCE: return &pr->server_reference;
    case JN_MQTT_PROP_REASON_STRING: return &pr->reason_string;
    default: return NULL;
    }
}

/* Reads a property block allowed to hold the properties of |allowed|.
 * An identifier that is unknown or not allowed in this packet makes the
 * packet Malformed (MQTT 5 2.2.2.2); a repeated one, or a value the spec
 * forbids, is a Protocol Error. */
static int rd_props(rd_t *r, jn_mqtt_props_t *pr, uint64_t allowed)
{
    uint32_t plen;
    int rc = rd_vbi(r, &plen);
    if (rc)
        return rc;
    if (plen > rd_left(r))
        return MAL;
    props_empty(pr);
    pr->raw.data = r->p;
    pr->raw.len = plen;
    rd_t pr_r = {r->p, r->p + plen};
    r->p += plen;
    while (pr_r.p < pr_r.end) {
        /* Identifiers are VBIs, but all are below 128: a continuation bit
         * means an unknown identifier or a non-minimal encoding. */
        uint8_t id = *pr_r.p++;
        if (id >= 64 || !(allowed & JN_MQTT_PBIT(id)))
            return MAL;
        uint64_t bit = JN_MQTT_PBIT(id);
        if ((pr->present & bit) && id != JN_MQTT_PROP_USER &&
            !(id == JN_MQTT_PROP_SUB_ID && (allowed & MULTI_SUB_ID)))
            return PROTO;
        pr->present |= bit;
        switch (prop_type[id]) {
        case T_BYTE: {
            uint8_t v;
            if ((rc = rd_u8(&pr_r, &v)))
                return rc;
            if (v > 1) /* every byte property is 0 or 1 */
                return PROTO;
            *prop_u8(pr, id) = v;
            break;
        }
        case T_U16: {
            uint16_t v;
            if ((rc = rd_u16(&pr_r, &v)))
                return rc;
            if (v == 0 && id == JN_MQTT_PROP_RECEIVE_MAXIMUM)
                return PROTO;
            if (v == 0 && id == JN_MQTT_PROP_TOPIC_ALIAS)
                return JN_MQTT_RC_TOPIC_ALIAS_INVALID;
            *prop_u16(pr, id) = v;
            break;
        }
        case T_U32: {
            uint32_t v;
            if ((rc = rd_u32(&pr_r, &v)))
                return rc;
            if (v == 0 && id == JN_MQTT_PROP_MAXIMUM_PACKET_SIZE)
                return PROTO;
            *prop_u32(pr, id) = v;
            break;
        }
        case T_VBI: { /* only the Subscription Identifier */
            uint32_t v;
            if ((rc = rd_vbi(&pr_r, &v)))
                return rc;
            if (v == 0)
                return PROTO;
            if (pr->sub_id_count++ == 0)
                pr->sub_id = v;
            break;
        }
        case T_STR:
            if ((rc = rd_str(&pr_r, prop_view(pr, id))))
                return rc;
            break;
        case T_BIN:
            if ((rc = rd_bin(&pr_r, prop_view(pr, id))))
                return rc;
            break;
        case T_PAIR: {
            jn_mqtt_view_t k, v;
            if ((rc = rd_str(&pr_r, &k)) || (rc = rd_str(&pr_r, &v)))
                return rc;
            pr->user_count++;
            break;
        }
        default:
            return MAL;
        }
    }
    /* MQTT 5 3.1.2.11.10 / 3.15.2.2.3: data without a method. */
    if ((pr->present & B(AUTH_DATA)) && !(pr->present & B(AUTH_METHOD)))
        return PROTO;
    return 0;
}

void jn_mqtt_prop_iter_init(jn_mqtt_prop_iter_t *it, const jn_mqtt_props_t *props)
{
    it->p = props->raw.data;
    it->end = props->raw.data ? props->raw.data + props->raw.len : NULL;
}

/* Over validated bytes, so the reads cannot run past the end; the checks
 * that remain only stop a walk over bytes that were never validated. */
bool jn_mqtt_prop_next(jn_mqtt_prop_iter_t *it, jn_mqtt_prop_t *prop)
{
    if (!it->p || it->p >= it->end)
        return false;
    rd_t r = {it->p, it->end};
    uint8_t id = *r.p++;
    if (id >= 64)
        return false;
    prop->id = id;
    prop->num = 0;
    prop->str.data = prop->value.data = NULL;
    prop->str.len = prop->value.len = 0;
    int rc = 0;
    switch (prop_type[id]) {
    case T_BYTE: {
        uint8_t v = 0;
        rc = rd_u8(&r, &v);
        prop->num = v;
        break;
    }
    case T_U16: {
        uint16_t v = 0;
        rc = rd_u16(&r, &v);
        prop->num = v;
        break;
    }
    case T_U32: rc = rd_u32(&r, &prop->num); break;
    case T_VBI: rc = rd_vbi(&r, &prop->num); break;
    case T_STR:
    case T_BIN: rc = rd_bin(&r, &prop->str); break;
    case T_PAIR:
        rc = rd_bin(&r, &prop->str);
        if (!rc)
            rc = rd_bin(&r, &prop->value);
        break;
    default: rc = MAL;
    }
    if (rc) {
        it->p = it->end;
        return false;
    }
    it->p = r.p;
    return true;
}

bool jn_mqtt_user_next(jn_mqtt_prop_iter_t *it, jn_mqtt_view_t *name, jn_mqtt_view_t *value)
{
    jn_mqtt_prop_t p;
    while (jn_mqtt_prop_next(it, &p)) {
        if (p.id == JN_MQTT_PROP_USER) {
            *name = p.str;
            *value = p.value;
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* Decoding packets                                                     */
/* ------------------------------------------------------------------ */

static bool rc_in(uint8_t rc, const char *set, size_t n) { return memchr(set, rc, n) != NULL; }
#define RC_IN(rc, s) rc_in((rc), (s), sizeof(s) - 1)

static const char rc_connack[] = "\x00\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8A\x8C\x90\x95\x97\x99\x9A"
                                 "\x9B\x9C\x9D\x9F";
static const char rc_puback[] = "\x00\x10\x80\x83\x87\x90\x91\x97\x99"; /* also PUBREC */
static const char rc_pubrel[] = "\x00\x92";                             /* also PUBCOMP */
static const char rc_suback5[] = "\x00\x01\x02\x80\x83\x87\x8F\x91\x97\x9E\xA1\xA2";
static const char rc_suback4[] = "\x00\x01\x02\x80";
static const char rc_unsuback[] = "\x00\x11\x80\x83\x87\x8F\x91";
static const char rc_disconnect[] = "\x00\x04\x80\x81\x82\x83\x87\x89\x8B\x8D\x8E\x8F\x90\x93\x94\x95\x96"
                                    "\x97\x98\x99\x9A\x9B\x9C\x9D\x9E\x9F\xA0\xA1\xA2";
static const char rc_auth[] = "\x00\x18\x19";

static int dec_connect(rd_t *r, jn_mqtt_packet_t *out)
{
    jn_mqtt_connect_t *c = &out->u.connect;
    jn_mqtt_view_t name;
    uint8_t level, flags;
    int rc;
    c->version = 0;
    if ((rc = rd_bin(r, &name)) || (rc = rd_u8(r, &level)))
        return rc;
    c->version = level;
    /* A name other than "MQTT" (MQIsdp is MQTT 3.1) or another level is a
     * protocol we do not speak: the session answers 0x84 / return code 1. */
    if (name.len != 4 || memcmp(name.data, "MQTT", 4) != 0 || (level != JN_MQTT_V311 && level != JN_MQTT_V5))
        return JN_MQTT_RC_UNSUPPORTED_VERSION;
    out->version = level;
    bool v5 = level == JN_MQTT_V5;
    if ((rc = rd_u8(r, &flags)) || (rc = rd_u16(r, &c->keep_alive)))
        return rc;
    if (flags & 0x01) /* reserved */
        return MAL;
    c->clean_start = flags & 0x02;
    c->will = flags & 0x04;
    c->will_qos = (flags >> 3) & 3;
    c->will_retain = flags & 0x20;
    c->has_password = flags & 0x40;
    c->has_username = flags & 0x80;
    if (c->will_qos == 3 || (!c->will && (c->will_qos || c->will_retain)))
        return MAL;
    if (!v5 && c->has_password && !c->has_username)
        return MAL; /* 3.1.1 3.1.2-22 */
    if (v5) {
        if ((rc = rd_props(r, &c->props, P_CONNECT)))
            return rc;
    } else {
        props_empty(&c->props);
    }
    props_empty(&c->will_props);
    if ((rc = rd_str(r, &c->client_id)))
        return rc;
    c->will_topic.data = c->will_payload.data = c->username.data = c->password.data = NULL;
    c->will_topic.len = c->will_payload.len = c->username.len = c->password.len = 0;
    if (c->will) {
        if (v5 && (rc = rd_props(r, &c->will_props, P_WILL)))
            return rc;
        if ((rc = rd_bin(r, &c->will_topic)))
            return rc;
        if (c->will_topic.len == 0)
            return JN_MQTT_RC_TOPIC_NAME_INVALID;
        if ((rc = str_check(c->will_topic.data, c->will_topic.len, true)))
            return rc;
        if ((rc = rd_bin(r, &c->will_payload)))
            return rc;
    }
    if (c->has_username && (rc = rd_str(r, &c->username)))
        return rc;
    if (c->has_password && (rc = rd_bin(r, &c->password)))
        return rc;
    return rd_left(r) ? MAL : 0;
}

static int dec_connack(rd_t *r, uint8_t ver, jn_mqtt_connack_t *c)
{
    uint8_t ackf;
    int rc;
    if ((rc = rd_u8(r, &ackf)) || (rc = rd_u8(r, &c->reason)))
        return rc;
    if (ackf & 0xFE)
        return MAL;
    c->session_present = ackf & 1;
    if (ver == JN_MQTT_V5) {
        if (!RC_IN(c->reason, rc_connack))
            return PROTO;
        if ((rc = rd_props(r, &c->props, P_CONNACK)))
            return rc;
    } else {
        if (c->reason > 5)
            return PROTO;
        props_empty(&c->props);
    }
    if (c->session_present && c->reason != 0)
        return PROTO; /* 3.2.2-4 / 3.2.2-6 */
    return rd_left(r) ? MAL : 0;
}

static int dec_publish(rd_t *r, uint8_t ver, uint8_t flags, jn_mqtt_publish_t *p)
{
    int rc;
    p->qos = (flags >> 1) & 3;
    p->retain = flags & 1;
    p->dup = flags & 8;
    if (p->qos == 3)
        return MAL;
    if (p->dup && p->qos == 0)
        return PROTO; /* 3.3.1-2 */
    if ((rc = rd_bin(r, &p->topic)))
        return rc;
    if ((rc = str_check(p->topic.data, p->topic.len, true)))
        return rc;
    p->packet_id = 0;
    if (p->qos) {
        if ((rc = rd_u16(r, &p->packet_id)))
            return rc;
        if (p->packet_id == 0)
            return PROTO;
    }
    if (ver == JN_MQTT_V5) {
        if ((rc = rd_props(r, &p->props, P_PUBLISH)))
            return rc;
        if (p->topic.len == 0 && !(p->props.present & B(TOPIC_ALIAS)))
            return PROTO; /* 3.3.2-8 */
    } else {
        props_empty(&p->props);
        if (p->topic.len == 0)
            return PROTO; /* 3.1.1 4.7.3-1 */
    }
    p->payload.data = r->p;
    p->payload.len = (uint32_t)rd_left(r);
    r->p = r->end;
    return 0;
}

static int dec_ack(rd_t *r, uint8_t ver, uint8_t type, jn_mqtt_ack_t *a)
{
    int rc;
    if ((rc = rd_u16(r, &a->packet_id)))
        return rc;
    if (a->packet_id == 0)
        return PROTO;
    a->reason = 0;
    props_empty(&a->props);
    if (ver != JN_MQTT_V5)
        return rd_left(r) ? MAL : 0;
    /* 5.0 short forms: no reason code means Success, no property length
     * means no properties. */
    if (rd_left(r) == 0)
        return 0;
    if ((rc = rd_u8(r, &a->reason)))
        return rc;
    bool ok = (type == JN_MQTT_PUBACK || type == JN_MQTT_PUBREC) ? RC_IN(a->reason, rc_puback)
                                                                 : RC_IN(a->reason, rc_pubrel);
    if (!ok)
        return PROTO;
    if (rd_left(r) == 0)
        return 0;
    if ((rc = rd_props(r, &a->props, P_ACK)))
        return rc;
    return rd_left(r) ? MAL : 0;
}

static int dec_subscribe(rd_t *r, uint8_t ver, bool unsub, jn_mqtt_subscribe_t *s)
{
    int rc;
    s->unsubscribe = unsub;
    s->version = ver;
    s->subs = NULL;
    s->count = 0;
    if ((rc = rd_u16(r, &s->packet_id)))
        return rc;
    if (s->packet_id == 0)
        return PROTO;
    if (ver == JN_MQTT_V5) {
        if ((rc = rd_props(r, &s->props, unsub ? P_UNSUBSCRIBE : P_SUBSCRIBE)))
            return rc;
    } else {
        props_empty(&s->props);
    }
    s->entries.data = r->p;
    s->entries.len = (uint32_t)rd_left(r);
    while (rd_left(r)) {
        jn_mqtt_view_t f;
        if ((rc = rd_str(r, &f)))
            return rc;
        if (!unsub) {
            uint8_t o;
            if ((rc = rd_u8(r, &o)))
                return rc;
            if ((o & 3) == 3)
                return MAL;
            if (ver == JN_MQTT_V5) {
                if (o & 0xC0)
                    return MAL;
                if (((o >> 4) & 3) == 3)
                    return PROTO;
                /* 3.8.3-4: No Local on a shared subscription. */
                if ((o & 4) && f.len >= 7 && memcmp(f.data, "$share/", 7) == 0)
                    return PROTO;
            } else if (o & 0xFC) {
                return MAL;
            }
        }
        s->count++;
    }
    if (s->count == 0)
        return PROTO; /* 3.8.3-2 / 3.10.3-2 */
    return 0;
}

static int dec_suback(rd_t *r, uint8_t ver, bool unsub, jn_mqtt_suback_t *s)
{
    int rc;
    if ((rc = rd_u16(r, &s->packet_id)))
        return rc;
    if (s->packet_id == 0)
        return PROTO;
    if (ver == JN_MQTT_V5) {
        if ((rc = rd_props(r, &s->props, P_ACK)))
            return rc;
    } else {
        props_empty(&s->props);
    }
    s->reasons.data = r->p;
    s->reasons.len = (uint32_t)rd_left(r);
    r->p = r->end;
    if (unsub && ver != JN_MQTT_V5)
        return s->reasons.len ? MAL : 0;
    if (s->reasons.len == 0)
        return PROTO;
    for (uint32_t i = 0; i < s->reasons.len; i++) {
        uint8_t c = s->reasons.data[i];
        bool ok = unsub ? RC_IN(c, rc_unsuback) : ver == JN_MQTT_V5 ? RC_IN(c, rc_suback5) : RC_IN(c, rc_suback4);
        if (!ok)
            return PROTO;
    }
    return 0;
}

/* DISCONNECT and AUTH: reason code and properties, both optional in 5.0
 * (a DISCONNECT may stop after the reason code; an AUTH may not). */
static int dec_reason_pkt(rd_t *r, uint8_t ver, uint8_t type, jn_mqtt_reason_pkt_t *d)
{
    int rc;
    d->reason = 0;
    props_empty(&d->props);
    if (ver != JN_MQTT_V5 || rd_left(r) == 0)
        return rd_left(r) ? MAL : 0;
    if ((rc = rd_u8(r, &d->reason)))
        return rc;
    bool auth = type == JN_MQTT_AUTH;
    if (!(auth ? RC_IN(d->reason, rc_auth) : RC_IN(d->reason, rc_disconnect)))
        return PROTO;
    if (rd_left(r) == 0)
        return auth ? MAL : 0;
    if ((rc = rd_props(r, &d->props, auth ? P_AUTH : P_DISCONNECT)))
        return rc;
    if (auth && !(d->props.present & B(AUTH_METHOD)))
        return PROTO; /* 3.15.2.2.2 */
    return rd_left(r) ? MAL : 0;
}

/* The flags nibble each type must carry (PUBLISH's are free). */
static const uint8_t fixed_flags[16] = {
    [JN_MQTT_PUBREL] = 2, [JN_MQTT_SUBSCRIBE] = 2, [JN_MQTT_UNSUBSCRIBE] = 2,
};

int jn_mqtt_decode(const uint8_t *buf, size_t len, uint8_t protocol_version, uint32_t max_packet_size,
                   jn_mqtt_packet_t *out)
{
    int rc;
    out->type = 0;
    out->flags = 0;
    out->version = protocol_version;
    out->reason = 0;
    out->len = 0;
    if (len == 0)
        return JN_EPARTIAL;
    uint8_t type = buf[0] >> 4, flags = buf[0] & 0x0F;
    out->type = type;
    out->flags = flags;
    /* Everything the first byte shows is checked before waiting for more. */
    if (type == 0 || (type == JN_MQTT_AUTH && protocol_version != JN_MQTT_V5) ||
        (type != JN_MQTT_PUBLISH && flags != fixed_flags[type])) {
        rc = MAL;
        goto fail;
    }
    if (protocol_version == 0 && type != JN_MQTT_CONNECT) {
        rc = PROTO;
        goto fail;
    }
    if (type == JN_MQTT_PUBLISH && (flags & 6) == 6) {
        rc = MAL;
        goto fail;
    }

    /* Remaining Length; the common one-byte case first. */
    uint32_t rl;
    size_t hdr;
    if (len < 2)
        return JN_EPARTIAL;
    if (!(buf[1] & 0x80)) {
        rl = buf[1];
        hdr = 2;
    } else {
        rd_t h = {buf + 1, buf + (len < 5 ? len : 5)};
        rc = rd_vbi(&h, &rl);
        if (rc) {
            /* Ran out of input inside a length that may still be valid. */
            if (len < 5 && h.p == h.end && (buf[len - 1] & 0x80))
                return JN_EPARTIAL;
            goto fail;
        }
        hdr = (size_t)(h.p - buf);
    }
    uint64_t total = hdr + (uint64_t)rl;
    out->len = (uint32_t)total;
    if (max_packet_size && total > max_packet_size) {
        out->reason = JN_MQTT_RC_PACKET_TOO_LARGE;
        return JN_ETOOBIG;
    }
    if (len < total)
        return JN_EPARTIAL;

    rd_t r = {buf + hdr, buf + total};
    uint8_t ver = protocol_version;
    switch (type) {
    case JN_MQTT_CONNECT:
        rc = dec_connect(&r, out);
        if (rc == JN_MQTT_RC_UNSUPPORTED_VERSION) {
            out->reason = (uint8_t)rc;
            return JN_EUNSUPPORTED;
        }
        break;
    case JN_MQTT_CONNACK: rc = dec_connack(&r, ver, &out->u.connack); break;
    case JN_MQTT_PUBLISH: rc = dec_publish(&r, ver, flags, &out->u.publish); break;
    case JN_MQTT_PUBACK:
    case JN_MQTT_PUBREC:
    case JN_MQTT_PUBREL:
    case JN_MQTT_PUBCOMP: rc = dec_ack(&r, ver, type, &out->u.ack); break;
    case JN_MQTT_SUBSCRIBE:
    case JN_MQTT_UNSUBSCRIBE:
        rc = dec_subscribe(&r, ver, type == JN_MQTT_UNSUBSCRIBE, &out->u.subscribe);
        break;
    case JN_MQTT_SUBACK:
    case JN_MQTT_UNSUBACK: rc = dec_suback(&r, ver, type == JN_MQTT_UNSUBACK, &out->u.suback); break;
    case JN_MQTT_PINGREQ:
    case JN_MQTT_PINGRESP: rc = rl ? MAL : 0; break;
    case JN_MQTT_DISCONNECT: rc = dec_reason_pkt(&r, ver, type, &out->u.disconnect); break;
    default: /* JN_MQTT_AUTH */ rc = dec_reason_pkt(&r, ver, type, &out->u.auth); break;
    }
    if (rc)
        goto fail;
    return (int)total;

fail:
    out->reason = (uint8_t)rc;
    return JN_EPROTO;
}

void jn_mqtt_sub_iter_init(jn_mqtt_sub_iter_t *it, const jn_mqtt_subscribe_t *s)
{
    it->p = s->entries.data;
    it->end = s->entries.data ? s->entries.data + s->entries.len : NULL;
    it->unsubscribe = s->unsubscribe;
}

bool jn_mqtt_sub_next(jn_mqtt_sub_iter_t *it, jn_mqtt_sub_t *sub)
{
    if (!it->p || it->p >= it->end)
        return false;
    rd_t r = {it->p, it->end};
    uint8_t o = 0;
    if (rd_bin(&r, &sub->filter) || (!it->unsubscribe && rd_u8(&r, &o))) {
        it->p = it->end;
        return false;
    }
    sub->qos = o & 3;
    sub->no_local = o & 4;
    sub->retain_as_published = o & 8;
    sub->retain_handling = (o >> 4) & 3;
    it->p = r.p;
    return true;
}

const char *jn_mqtt_type_name(uint8_t type)
{
    static const char *const names[16] = {
        NULL,     "CONNECT",   "CONNACK", "PUBLISH",     "PUBACK",   "PUBREC",  "PUBREL",     "PUBCOMP",
        "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH",
    };
    return type < 16 && names[type] ? names[type] : "?";
}

/* ------------------------------------------------------------------ */
/* Encoding                                                             */
/* ------------------------------------------------------------------ */

static inline size_t vbi_size(uint32_t v) { return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4; }

static inline uint8_t *w_vbi(uint8_t *w, uint32_t v)
{
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        *w++ = b | (v ? 0x80 : 0);
    } while (v);
    return w;
}

static inline uint8_t *w_u16(uint8_t *w, uint16_t v)
{
    jn_store_be16(w, v);
    return w + 2;
}

static inline uint8_t *w_u32(uint8_t *w, uint32_t v)
{
    jn_store_be32(w, v);
    return w + 4;
}

static inline uint8_t *w_bin(uint8_t *w, jn_mqtt_view_t v)
{
    w = w_u16(w, (uint16_t)v.len);
    if (v.len)
        memcpy(w, v.data, v.len);
    return w + v.len;
}

/* Every length an encoder writes as a two-byte prefix must fit. */
static inline bool fits16(jn_mqtt_view_t v) { return v.len <= 0xFFFF; }

/* The properties the encoder will write: |allowed| minus |drop|. Sizes are
 * size_t sums of 32-bit lengths, so they cannot overflow on 64-bit; they
 * are checked against JN_MQTT_MAX_REMAINING before anything is written. */
typedef struct penc {
    const jn_mqtt_props_t *pr;
    uint64_t mask;      /* properties to write (user and sub ids handled apart) */
    bool user;          /* write user properties */
    bool user_raw;      /* ... from pr->raw */
    bool subid_raw;     /* sub ids from pr->raw */
    bool subid_arr;     /* sub ids from pr->sub_ids */
    bool subid_one;     /* the single pr->sub_id */
    size_t len;         /* bytes of the block after its length */
} penc_t;

/* Sizes the property block; JN_EINVAL for a value that cannot be encoded. */
static int penc_size(penc_t *e, const jn_mqtt_props_t *pr, uint64_t allowed, uint64_t drop)
{
    e->pr = pr;
    e->mask = pr->present & allowed & ~drop & ~(B(USER) | B(SUB_ID));
    e->len = 0;
    e->user = !(drop & B(USER)) && (allowed & B(USER)) && (pr->user || (pr->present & B(USER)));
    e->user_raw = e->user && !pr->user;
    e->subid_raw = false;
    e->subid_arr = false;
    e->subid_one = false;
    jn_mqtt_props_t *mpr = (jn_mqtt_props_t *)pr; /* accessors are shared with the decoder; nothing is written */
    for (uint64_t m = e->mask; m; m &= m - 1) {
        uint8_t id = (uint8_t)__builtin_ctzll(m);
        switch (prop_type[id]) {
        case T_BYTE: e->len += 2; break;
        case T_U16: e->len += 3; break;
        case T_U32: e->len += 5; break;
        case T_STR:
        case T_BIN: {
            jn_mqtt_view_t v = *prop_view(mpr, id);
            if (!fits16(v))
                return JN_EINVAL;
            e->len += 3 + (size_t)v.len;
            break;
        }
        default: return JN_EINVAL;
        }
    }
    if (e->user) {
        if (pr->user) {
            for (uint32_t i = 0; i < pr->user_count; i++) {
                if (!fits16(pr->user[i].name) || !fits16(pr->user[i].value))
                    return JN_EINVAL;
                e->len += 5 + (size_t)pr->user[i].name.len + pr->user[i].value.len;
            }
        } else {
            jn_mqtt_prop_iter_t it;
            jn_mqtt_prop_t p;
            jn_mqtt_prop_iter_init(&it, pr);
            while (jn_mqtt_prop_next(&it, &p))
                if (p.id == JN_MQTT_PROP_USER)
                    e->len += 5 + (size_t)p.str.len + p.value.len;
        }
    }
    if ((allowed & B(SUB_ID)) && !(drop & B(SUB_ID))) {
        if (pr->sub_ids) {
            e->subid_arr = true;
            for (uint32_t i = 0; i < pr->sub_id_count; i++) {
                if (pr->sub_ids[i] == 0 || pr->sub_ids[i] > JN_MQTT_MAX_SUB_ID)
                    return JN_EINVAL;
                e->len += 1 + vbi_size(pr->sub_ids[i]);
            }
            if (pr->sub_id_count > 1 && !(allowed & MULTI_SUB_ID))
                return JN_EINVAL;
        } else if (pr->present & B(SUB_ID)) {
            jn_mqtt_prop_iter_t it;
            jn_mqtt_prop_t p;
            size_t n = 0, sz = 0;
            jn_mqtt_prop_iter_init(&it, pr);
            while (jn_mqtt_prop_next(&it, &p))
                if (p.id == JN_MQTT_PROP_SUB_ID) {
                    n++;
                    sz += 1 + vbi_size(p.num);
                }
            if (n > 1 && !(allowed & MULTI_SUB_ID))
                return JN_EINVAL;
            if (n) {
                e->subid_raw = true;
                e->len += sz;
            } else {
                if (pr->sub_id == 0 || pr->sub_id > JN_MQTT_MAX_SUB_ID)
                    return JN_EINVAL;
                e->subid_one = true;
                e->len += 1 + vbi_size(pr->sub_id);
            }
        }
    }
    if (e->len > JN_MQTT_MAX_REMAINING)
        return JN_ETOOBIG;
    return 0;
}

/* Size of the block with its length prefix. */
static inline size_t penc_total(const penc_t *e) { return vbi_size((uint32_t)e->len) + e->len; }

static uint8_t *penc_write(uint8_t *w, const penc_t *e)
{
    const jn_mqtt_props_t *pr = e->pr;
    jn_mqtt_props_t *mpr = (jn_mqtt_props_t *)pr;
    w = w_vbi(w, (uint32_t)e->len);
    for (uint64_t m = e->mask; m; m &= m - 1) {
        uint8_t id = (uint8_t)__builtin_ctzll(m);
        *w++ = id;
        switch (prop_type[id]) {
        case T_BYTE: *w++ = *prop_u8(mpr, id); break;
        case T_U16: w = w_u16(w, *prop_u16(mpr, id)); break;
        case T_U32: w = w_u32(w, *prop_u32(mpr, id)); break;
        default: w = w_bin(w, *prop_view(mpr, id)); break;
        }
    }
    /* Subscription Identifiers and User Properties come last, in that
     * order, whatever their source, so that a decoded packet re-encodes to
     * the same bytes. */
    if (e->subid_one) {
        *w++ = JN_MQTT_PROP_SUB_ID;
        w = w_vbi(w, pr->sub_id);
    }
    if (e->subid_arr) {
        for (uint32_t i = 0; i < pr->sub_id_count; i++) {
            *w++ = JN_MQTT_PROP_SUB_ID;
            w = w_vbi(w, pr->sub_ids[i]);
        }
    }
    if (e->subid_raw) {
        jn_mqtt_prop_iter_t it;
        jn_mqtt_prop_t p;
        jn_mqtt_prop_iter_init(&it, pr);
        while (jn_mqtt_prop_next(&it, &p)) {
            if (p.id == JN_MQTT_PROP_SUB_ID) {
                *w++ = p.id;
                w = w_vbi(w, p.num);
            }
        }
    }
    if (e->user_raw) {
        jn_mqtt_prop_iter_t it;
        jn_mqtt_view_t k, v;
        jn_mqtt_prop_iter_init(&it, pr);
        while (jn_mqtt_user_next(&it, &k, &v)) {
            *w++ = JN_MQTT_PROP_USER;
            w = w_bin(w, k);
            w = w_bin(w, v);
        }
    }
    if (e->user && pr->user) {
        for (uint32_t i = 0; i < pr->user_count; i++) {
            *w++ = JN_MQTT_PROP_USER;
            w = w_bin(w, pr->user[i].name);
            w = w_bin(w, pr->user[i].value);
        }
    }
    return w;
}

/* Reserves room for a packet of |body| remaining bytes and writes its fixed
 * header. Returns where the body goes, or NULL with *err set. */
static uint8_t *enc_begin(jn_buf_t *out, uint8_t byte0, size_t body, size_t *total, int *err)
{
    if (body > JN_MQTT_MAX_REMAINING) {
        *err = JN_ETOOBIG;
        return NULL;
    }
    *total = 1 + vbi_size((uint32_t)body) + body;
    int rc = jn_buf_reserve(out, *total);
    if (rc < 0) {
        *err = rc;
        return NULL;
    }
    uint8_t *w = out->data + out->len;
    *w++ = byte0;
    return w_vbi(w, (uint32_t)body);
}

static inline bool version_ok(uint8_t v) { return v == JN_MQTT_V311 || v == JN_MQTT_V5; }

/* Sizes a packet whose body is |fixed| bytes plus a property block, leaving
 * out the droppable properties when the packet would pass props->limit
 * (the Reason String first, then the User Properties). */
static int size_with_limit(penc_t *e, const jn_mqtt_props_t *pr, uint64_t allowed, size_t fixed, bool droppable,
                           size_t *body)
{
    static const uint64_t drops[3] = {0, B(REASON_STRING), B(REASON_STRING) | B(USER)};
    for (int i = 0; i < (droppable ? 3 : 1); i++) {
        int rc = penc_size(e, pr, allowed, drops[i]);
        if (rc < 0)
            return rc;
        *body = fixed + penc_total(e);
        size_t total = 1 + vbi_size(*body > JN_MQTT_MAX_REMAINING ? 0 : (uint32_t)*body) + *body;
        if (*body <= JN_MQTT_MAX_REMAINING && (!pr->limit || total <= pr->limit))
            return 0;
    }
    return JN_ETOOBIG;
}

int jn_mqtt_encode_connect(jn_buf_t *out, uint8_t version, const jn_mqtt_connect_t *c)
{
    if (!version_ok(version) || c->will_qos > 2 || (version == JN_MQTT_V311 && c->has_password && !c->has_username))
        return JN_EINVAL;
    if (!fits16(c->client_id) || !fits16(c->username) || !fits16(c->password) || !fits16(c->will_topic) ||
        !fits16(c->will_payload))
        return JN_EINVAL;
    bool v5 = version == JN_MQTT_V5;
    penc_t pe, we;
    int rc;
    size_t body = 10 + 2 + (size_t)c->client_id.len;
    if (v5) {
        if ((rc = penc_size(&pe, &c->props, P_CONNECT, 0)) < 0)
            return rc;
        body += penc_total(&pe);
    }
    if (c->will) {
        if (v5) {
            if ((rc = penc_size(&we, &c->will_props, P_WILL, 0)) < 0)
                return rc;
            body += penc_total(&we);
        }
        body += 4 + (size_t)c->will_topic.len + c->will_payload.len;
    }
    if (c->has_username)
        body += 2 + (size_t)c->username.len;
    if (c->has_password)
        body += 2 + (size_t)c->password.len;
    size_t total;
    uint8_t *w = enc_begin(out, JN_MQTT_CONNECT << 4, body, &total, &rc);
    if (!w)
        return rc;
    w = w_bin(w, (jn_mqtt_view_t){(const uint8_t *)"MQTT", 4});
    *w++ = version;
    *w++ = (uint8_t)((c->clean_start ? 0x02 : 0) | (c->will ? 0x04 | c->will_qos << 3 | (c->will_retain ? 0x20 : 0) : 0) |
                     (c->has_password ? 0x40 : 0) | (c->has_username ? 0x80 : 0));
    w = w_u16(w, c->keep_alive);
    if (v5)
        w = penc_write(w, &pe);
    w = w_bin(w, c->client_id);
    if (c->will) {
        if (v5)
            w = penc_write(w, &we);
        w = w_bin(w, c->will_topic);
        w = w_bin(w, c->will_payload);
    }
    if (c->has_username)
        w = w_bin(w, c->username);
    if (c->has_password)
        w = w_bin(w, c->password);
    out->len += total;
    return (int)total;
}

int jn_mqtt_encode_connack(jn_buf_t *out, uint8_t version, const jn_mqtt_connack_t *c)
{
    if (!version_ok(version))
        return JN_EINVAL;
    penc_t pe;
    size_t body = 2, total;
    int rc;
    if (version == JN_MQTT_V5 && (rc = size_with_limit(&pe, &c->props, P_CONNACK, 2, true, &body)) < 0)
        return rc;
    uint8_t *w = enc_begin(out, JN_MQTT_CONNACK << 4, body, &total, &rc);
    if (!w)
        return rc;
    *w++ = c->session_present ? 1 : 0;
    *w++ = c->reason;
    if (version == JN_MQTT_V5)
        w = penc_write(w, &pe);
    out->len += total;
    return (int)total;
}

/* Writes a PUBLISH header into |w| (room checked by the caller). */
static uint8_t *publish_write_head(uint8_t *w, uint8_t version, const jn_mqtt_publish_t *p, const penc_t *pe,
                                   size_t body)
{
    *w++ = (uint8_t)(JN_MQTT_PUBLISH << 4 | (p->dup ? 8 : 0) | p->qos << 1 | (p->retain ? 1 : 0));
    w = w_vbi(w, (uint32_t)body);
    w = w_bin(w, p->topic);
    if (p->qos)
        w = w_u16(w, p->packet_id);
    if (version == JN_MQTT_V5)
        w = penc_write(w, pe);
    return w;
}

/* Validates a PUBLISH and sizes it: *head is everything before the payload. */
static int publish_size(uint8_t version, const jn_mqtt_publish_t *p, penc_t *pe, size_t *body, size_t *head)
{
    if (!version_ok(version) || p->qos > 2 || (p->qos && p->packet_id == 0) || !fits16(p->topic))
        return JN_EINVAL;
    size_t vh = 2 + (size_t)p->topic.len + (p->qos ? 2 : 0);
    if (version == JN_MQTT_V5) {
        int rc = penc_size(pe, &p->props, P_PUBLISH, 0);
        if (rc < 0)
            return rc;
        vh += penc_total(pe);
    }
    *body = vh + (size_t)p->payload.len;
    if (*body > JN_MQTT_MAX_REMAINING)
        return JN_ETOOBIG;
    *head = 1 + vbi_size((uint32_t)*body) + vh;
    if (version == JN_MQTT_V5 && p->props.limit && *head + p->payload.len > p->props.limit)
        return JN_ETOOBIG;
    return 0;
}

int jn_mqtt_encode_publish(jn_buf_t *out, uint8_t version, const jn_mqtt_publish_t *p)
{
    penc_t pe;
    size_t body, head;
    int rc = publish_size(version, p, &pe, &body, &head);
    if (rc < 0)
        return rc;
    size_t total = head + p->payload.len;
    if ((rc = jn_buf_reserve(out, total)) < 0)
        return rc;
    uint8_t *w = publish_write_head(out->data + out->len, version, p, &pe, body);
    if (p->payload.len)
        memcpy(w, p->payload.data, p->payload.len);
    out->len += total;
    return (int)total;
}

int jn_mqtt_publish_header(uint8_t *hdr, size_t cap, uint8_t version, const jn_mqtt_publish_t *p)
{
    penc_t pe;
    size_t body, head;
    int rc = publish_size(version, p, &pe, &body, &head);
    if (rc < 0)
        return rc;
    if (head > cap)
        return JN_ETOOBIG;
    publish_write_head(hdr, version, p, &pe, body);
    return (int)head;
}

int jn_mqtt_encode_ack(jn_buf_t *out, uint8_t version, uint8_t type, const jn_mqtt_ack_t *a)
{
    if (!version_ok(version) || type < JN_MQTT_PUBACK || type > JN_MQTT_PUBCOMP || a->packet_id == 0)
        return JN_EINVAL;
    penc_t pe;
    size_t body = 2, total;
    int rc;
    bool with_props = false;
    if (version == JN_MQTT_V5) {
        if ((rc = size_with_limit(&pe, &a->props, P_ACK, 3, true, &body)) < 0)
            return rc;
        with_props = pe.len > 0;
        body = with_props ? body : a->reason ? 3 : 2;
    }
    uint8_t *w = enc_begin(out, (uint8_t)(type << 4 | (type == JN_MQTT_PUBREL ? 2 : 0)), body, &total, &rc);
    if (!w)
        return rc;
    w = w_u16(w, a->packet_id);
    if (body > 2)
        *w++ = a->reason;
    if (with_props)
        w = penc_write(w, &pe);
    out->len += total;
    return (int)total;
}

int jn_mqtt_encode_puback(jn_buf_t *out, uint8_t version, const jn_mqtt_ack_t *p)
{
    return jn_mqtt_encode_ack(out, version, JN_MQTT_PUBACK, p);
}
int jn_mqtt_encode_pubrec(jn_buf_t *out, uint8_t version, const jn_mqtt_ack_t *p)
{
    return jn_mqtt_encode_ack(out, version, JN_MQTT_PUBREC, p);
}
int jn_mqtt_encode_pubrel(jn_buf_t *out, uint8_t version, const jn_mqtt_ack_t *p)
{
    return jn_mqtt_encode_ack(out, version, JN_MQTT_PUBREL, p);
}
int jn_mqtt_encode_pubcomp(jn_buf_t *out, uint8_t version, const jn_mqtt_ack_t *p)
{
    return jn_mqtt_encode_ack(out, version, JN_MQTT_PUBCOMP, p);
}

/* Entry |i| of a SUBSCRIBE/UNSUBSCRIBE to encode, from |subs| or from the
 * decoded |entries|. */
typedef struct sub_src {
    const jn_mqtt_subscribe_t *s;
    uint32_t i;
    jn_mqtt_sub_iter_t it;
} sub_src_t;

static void sub_src_init(sub_src_t *src, const jn_mqtt_subscribe_t *s)
{
    src->s = s;
    src->i = 0;
    jn_mqtt_sub_iter_init(&src->it, s);
}

static bool sub_src_next(sub_src_t *src, jn_mqtt_sub_t *e)
{
    if (src->s->subs) {
        if (src->i >= src->s->count)
            return false;
        *e = src->s->subs[src->i++];
        return true;
    }
    return jn_mqtt_sub_next(&src->it, e);
}

static int encode_sub(jn_buf_t *out, uint8_t version, const jn_mqtt_subscribe_t *s, bool unsub)
{
    if (!version_ok(version) || s->packet_id == 0)
        return JN_EINVAL;
    /* Decoded UNSUBSCRIBE entries have no options byte; decoded SUBSCRIBE
     * entries do, and encoding them as UNSUBSCRIBE drops it. */
    if (!s->subs && s->unsubscribe && !unsub)
        return JN_EINVAL;
    penc_t pe;
    size_t body = 2, n = 0, total;
    int rc;
    if (version == JN_MQTT_V5) {
        if ((rc = penc_size(&pe, &s->props, unsub ? P_UNSUBSCRIBE : P_SUBSCRIBE, 0)) < 0)
            return rc;
        body += penc_total(&pe);
    }
    sub_src_t src;
    jn_mqtt_sub_t e;
    sub_src_init(&src, s);
    while (sub_src_next(&src, &e)) {
        if (!fits16(e.filter) || e.qos > 2 || e.retain_handling > 2)
            return JN_EINVAL;
        body += 2 + (size_t)e.filter.len + (unsub ? 0 : 1);
        n++;
    }
    if (n == 0)
        return JN_EINVAL;
    if (version == JN_MQTT_V5 && s->props.limit && body <= JN_MQTT_MAX_REMAINING &&
        1 + vbi_size((uint32_t)body) + body > s->props.limit)
        return JN_ETOOBIG;
    uint8_t *w = enc_begin(out, (uint8_t)((unsub ? JN_MQTT_UNSUBSCRIBE : JN_MQTT_SUBSCRIBE) << 4 | 2), body, &total,
                           &rc);
    if (!w)
        return rc;
    w = w_u16(w, s->packet_id);
    if (version == JN_MQTT_V5)
        w = penc_write(w, &pe);
    sub_src_init(&src, s);
    while (sub_src_next(&src, &e)) {
        w = w_bin(w, e.filter);
        if (!unsub) {
            uint8_t o = e.qos;
            if (version == JN_MQTT_V5)
                o |= (uint8_t)((e.no_local ? 4 : 0) | (e.retain_as_published ? 8 : 0) | e.retain_handling << 4);
            *w++ = o;
        }
    }
    out->len += total;
    return (int)total;
}

int jn_mqtt_encode_subscribe(jn_buf_t *out, uint8_t version, const jn_mqtt_subscribe_t *p)
{
    return encode_sub(out, version, p, false);
}
int jn_mqtt_encode_unsubscribe(jn_buf_t *out, uint8_t version, const jn_mqtt_subscribe_t *p)
{
    return encode_sub(out, version, p, true);
}

static int encode_suback(jn_buf_t *out, uint8_t version, const jn_mqtt_suback_t *s, bool unsub)
{
    if (!version_ok(version) || s->packet_id == 0)
        return JN_EINVAL;
    bool codes = !unsub || version == JN_MQTT_V5;
    if (codes && s->reasons.len == 0)
        return JN_EINVAL;
    penc_t pe;
    size_t fixed = 2 + (codes ? (size_t)s->reasons.len : 0), body = fixed, total;
    int rc;
    if (version == JN_MQTT_V5 && (rc = size_with_limit(&pe, &s->props, P_ACK, fixed, true, &body)) < 0)
        return rc;
    uint8_t *w = enc_begin(out, (uint8_t)((unsub ? JN_MQTT_UNSUBACK : JN_MQTT_SUBACK) << 4), body, &total, &rc);
    if (!w)
        return rc;
    w = w_u16(w, s->packet_id);
    if (version == JN_MQTT_V5)
        w = penc_write(w, &pe);
    if (codes)
        memcpy(w, s->reasons.data, s->reasons.len);
    out->len += total;
    return (int)total;
}

int jn_mqtt_encode_suback(jn_buf_t *out, uint8_t version, const jn_mqtt_suback_t *p)
{
    return encode_suback(out, version, p, false);
}
int jn_mqtt_encode_unsuback(jn_buf_t *out, uint8_t version, const jn_mqtt_suback_t *p)
{
    return encode_suback(out, version, p, true);
}

static int encode_empty(jn_buf_t *out, uint8_t type)
{
    uint8_t b[2] = {(uint8_t)(type << 4), 0};
    int rc = jn_buf_append(out, b, 2);
    return rc < 0 ? rc : 2;
}

int jn_mqtt_encode_pingreq(jn_buf_t *out) { return encode_empty(out, JN_MQTT_PINGREQ); }
int jn_mqtt_encode_pingresp(jn_buf_t *out) { return encode_empty(out, JN_MQTT_PINGRESP); }

static int encode_reason_pkt(jn_buf_t *out, uint8_t version, uint8_t type, const jn_mqtt_reason_pkt_t *d)
{
    if (!version_ok(version) || (type == JN_MQTT_AUTH && version != JN_MQTT_V5))
        return JN_EINVAL;
    if (version != JN_MQTT_V5)
        return encode_empty(out, type);
    penc_t pe;
    size_t body, total;
    int rc = size_with_limit(&pe, &d->props, type == JN_MQTT_AUTH ? P_AUTH : P_DISCONNECT, 1, true, &body);
    if (rc < 0)
        return rc;
    if (pe.len == 0)
        body = d->reason ? 1 : 0;
    if (type == JN_MQTT_AUTH && body == 1)
        body = 2; /* AUTH has no reason-only form */
    uint8_t *w = enc_begin(out, (uint8_t)(type << 4), body, &total, &rc);
    if (!w)
        return rc;
    if (body) {
        *w++ = d->reason;
        if (body > 1)
            w = penc_write(w, &pe);
    }
    out->len += total;
    return (int)total;
}

int jn_mqtt_encode_disconnect(jn_buf_t *out, uint8_t version, const jn_mqtt_reason_pkt_t *p)
{
    return encode_reason_pkt(out, version, JN_MQTT_DISCONNECT, p);
}
int jn_mqtt_encode_auth(jn_buf_t *out, uint8_t version, const jn_mqtt_reason_pkt_t *p)
{
    return encode_reason_pkt(out, version, JN_MQTT_AUTH, p);
}
