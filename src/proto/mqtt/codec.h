/* codec.h - the MQTT 3.1.1 and 5.0 packet codec (sans I/O).
 *
 * jn_mqtt_decode looks at the bytes received so far and either returns the
 * size of one complete, fully validated packet, JN_EPARTIAL when more bytes
 * are needed, or an error together with the MQTT 5 reason code to report
 * (Malformed Packet, Protocol Error, Packet Too Large, Unsupported Protocol
 * Version). Nothing is copied and nothing is allocated: strings, binary
 * data, the payload, subscription lists and the raw property bytes are
 * views into the caller's buffer, valid as long as those bytes are.
 *
 * Validation is done once, by the decoder: every rule of the OASIS
 * specifications that can be checked from the packet alone (see
 * docs/mqtt.md). The iterators below therefore walk bytes that are known
 * to be well formed and cannot fail. Rules that need connection state
 * (topic alias range, Receive Maximum, a second CONNECT, which direction a
 * packet travels, topic/filter level syntax) belong to the session.
 *
 * The encoders append one packet to a jn_buf_t, for both directions (the
 * server's packets and the client's, which tests and the bench use). MQTT 5
 * properties come from the same jn_mqtt_props_t the decoder fills, so a
 * decoded packet re-encodes to an equivalent packet.
 */
#ifndef JN_MQTT_CODEC_H
#define JN_MQTT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../../common/buf.h"
#include "../../common/error.h"

#define JN_MQTT_V311 4 /* protocol level of MQTT 3.1.1 */
#define JN_MQTT_V5 5   /* protocol level of MQTT 5.0 */

/* Largest Remaining Length a 4-byte Variable Byte Integer can hold. */
#define JN_MQTT_MAX_REMAINING 268435455u
/* Largest packet: 1 type byte + 4 length bytes + the largest remainder. */
#define JN_MQTT_MAX_PACKET (JN_MQTT_MAX_REMAINING + 5u)
/* Largest Subscription Identifier (a VBI, 1..268435455). */
#define JN_MQTT_MAX_SUB_ID 268435455u

/* Control packet types (the high nibble of the first byte). */
enum jn_mqtt_type {
    JN_MQTT_CONNECT = 1,
    JN_MQTT_CONNACK = 2,
    JN_MQTT_PUBLISH = 3,
    JN_MQTT_PUBACK = 4,
    JN_MQTT_PUBREC = 5,
    JN_MQTT_PUBREL = 6,
    JN_MQTT_PUBCOMP = 7,
    JN_MQTT_SUBSCRIBE = 8,
    JN_MQTT_SUBACK = 9,
    JN_MQTT_UNSUBSCRIBE = 10,
    JN_MQTT_UNSUBACK = 11,
    JN_MQTT_PINGREQ = 12,
    JN_MQTT_PINGRESP = 13,
    JN_MQTT_DISCONNECT = 14,
    JN_MQTT_AUTH = 15, /* MQTT 5 only */
};

/* MQTT 5 reason codes (section 2.4). In 3.1.1 the CONNACK return codes
 * are 0..5 and SUBACK uses 0x00..0x02 and 0x80; the decoder still reports
 * its errors with these MQTT 5 codes and the session maps them. */
enum jn_mqtt_reason {
    JN_MQTT_RC_SUCCESS = 0x00, /* also Normal Disconnection, Granted QoS 0 */
    JN_MQTT_RC_GRANTED_QOS1 = 0x01,
    JN_MQTT_RC_GRANTED_QOS2 = 0x02,
    JN_MQTT_RC_DISCONNECT_WITH_WILL = 0x04,
    JN_MQTT_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
    JN_MQTT_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
    JN_MQTT_RC_CONTINUE_AUTH = 0x18,
    JN_MQTT_RC_REAUTHENTICATE = 0x19,
    JN_MQTT_RC_UNSPECIFIED = 0x80,
    JN_MQTT_RC_MALFORMED = 0x81,
    JN_MQTT_RC_PROTOCOL_ERROR = 0x82,
    JN_MQTT_RC_IMPL_SPECIFIC = 0x83,
    JN_MQTT_RC_UNSUPPORTED_VERSION = 0x84,
    JN_MQTT_RC_CLIENT_ID_INVALID = 0x85,
    JN_MQTT_RC_BAD_USER_OR_PASSWORD = 0x86,
    JN_MQTT_RC_NOT_AUTHORIZED = 0x87,
    JN_MQTT_RC_SERVER_UNAVAILABLE = 0x88,
    JN_MQTT_RC_SERVER_BUSY = 0x89,
    JN_MQTT_RC_BANNED = 0x8A,
    JN_MQTT_RC_SERVER_SHUTTING_DOWN = 0x8B,
    JN_MQTT_RC_BAD_AUTH_METHOD = 0x8C,
    JN_MQTT_RC_KEEP_ALIVE_TIMEOUT = 0x8D,
    JN_MQTT_RC_SESSION_TAKEN_OVER = 0x8E,
    JN_MQTT_RC_TOPIC_FILTER_INVALID = 0x8F,
    JN_MQTT_RC_TOPIC_NAME_INVALID = 0x90,
    JN_MQTT_RC_PACKET_ID_IN_USE = 0x91,
    JN_MQTT_RC_PACKET_ID_NOT_FOUND = 0x92,
    JN_MQTT_RC_RECEIVE_MAX_EXCEEDED = 0x93,
    JN_MQTT_RC_TOPIC_ALIAS_INVALID = 0x94,
    JN_MQTT_RC_PACKET_TOO_LARGE = 0x95,
    JN_MQTT_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
    JN_MQTT_RC_QUOTA_EXCEEDED = 0x97,
    JN_MQTT_RC_ADMIN_ACTION = 0x98,
    JN_MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    JN_MQTT_RC_RETAIN_NOT_SUPPORTED = 0x9A,
    JN_MQTT_RC_QOS_NOT_SUPPORTED = 0x9B,
    JN_MQTT_RC_USE_ANOTHER_SERVER = 0x9C,
    JN_MQTT_RC_SERVER_MOVED = 0x9D,
    JN_MQTT_RC_SHARED_SUBS_NOT_SUPPORTED = 0x9E,
    JN_MQTT_RC_CONNECTION_RATE_EXCEEDED = 0x9F,
    JN_MQTT_RC_MAX_CONNECT_TIME = 0xA0,
    JN_MQTT_RC_SUB_IDS_NOT_SUPPORTED = 0xA1,
    JN_MQTT_RC_WILDCARD_SUBS_NOT_SUPPORTED = 0xA2,
};

/* MQTT 5 property identifiers (section 2.2.2.2). */
enum jn_mqtt_prop_id {
    JN_MQTT_PROP_PAYLOAD_FORMAT = 0x01,        /* byte */
    JN_MQTT_PROP_MESSAGE_EXPIRY = 0x02,        /* four-byte integer */
    JN_MQTT_PROP_CONTENT_TYPE = 0x03,          /* UTF-8 string */
    JN_MQTT_PROP_RESPONSE_TOPIC = 0x08,        /* UTF-8 string */
    JN_MQTT_PROP_CORRELATION_DATA = 0x09,      /* binary data */
    JN_MQTT_PROP_SUB_ID = 0x0B,                /* variable byte integer */
    JN_MQTT_PROP_SESSION_EXPIRY = 0x11,        /* four-byte integer */
    JN_MQTT_PROP_ASSIGNED_CLIENT_ID = 0x12,    /* UTF-8 string */
    JN_MQTT_PROP_SERVER_KEEP_ALIVE = 0x13,     /* two-byte integer */
    JN_MQTT_PROP_AUTH_METHOD = 0x15,           /* UTF-8 string */
    JN_MQTT_PROP_AUTH_DATA = 0x16,             /* binary data */
    JN_MQTT_PROP_REQUEST_PROBLEM_INFO = 0x17,  /* byte */
    JN_MQTT_PROP_WILL_DELAY = 0x18,            /* four-byte integer */
    JN_MQTT_PROP_REQUEST_RESPONSE_INFO = 0x19, /* byte */
    JN_MQTT_PROP_RESPONSE_INFO = 0x1A,         /* UTF-8 string */
    JN_MQTT_PROP_SERVER_REFERENCE = 0x1C,      /* UTF-8 string */
    JN_MQTT_PROP_REASON_STRING = 0x1F,         /* UTF-8 string */
    JN_MQTT_PROP_RECEIVE_MAXIMUM = 0x21,       /* two-byte integer */
    JN_MQTT_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,   /* two-byte integer */
    JN_MQTT_PROP_TOPIC_ALIAS = 0x23,           /* two-byte integer */
    JN_MQTT_PROP_MAXIMUM_QOS = 0x24,           /* byte */
    JN_MQTT_PROP_RETAIN_AVAILABLE = 0x25,      /* byte */
    JN_MQTT_PROP_USER = 0x26,                  /* UTF-8 string pair */
    JN_MQTT_PROP_MAXIMUM_PACKET_SIZE = 0x27,   /* four-byte integer */
    JN_MQTT_PROP_WILDCARD_SUB_AVAILABLE = 0x28, /* byte */
    JN_MQTT_PROP_SUB_ID_AVAILABLE = 0x29,      /* byte */
    JN_MQTT_PROP_SHARED_SUB_AVAILABLE = 0x2A,  /* byte */
};

/* Bit of property |id| in jn_mqtt_props_t.present. */
#define JN_MQTT_PBIT(id) (1ull << (id))
/* True when property |id| is present in |props| (a jn_mqtt_props_t *). */
#define JN_MQTT_HAS(props, id) (((props)->present & JN_MQTT_PBIT(id)) != 0)

/* A view of bytes: into the decoded buffer, or supplied by the caller of an
 * encoder. UTF-8 strings are not NUL-terminated. */
typedef struct jn_mqtt_view {
    const uint8_t *data; /* may be NULL when len == 0 */
    uint32_t len;
} jn_mqtt_view_t;

typedef struct jn_mqtt_user_prop {
    jn_mqtt_view_t name;
    jn_mqtt_view_t value;
} jn_mqtt_user_prop_t;

/* MQTT 5 properties of one packet (or of a CONNECT's will).
 *
 * A field is meaningful only when its property's bit is set in |present|:
 * the decoder sets |present|, |raw|, |user_count|, |sub_id_count|, |user|,
 * |sub_ids| and |limit| and writes only the fields of the properties it
 * found (the rest hold garbage); the encoder reads only the fields whose
 * bit is set. Zero the struct (or set |present| = 0 and the pointers) before
 * filling it for an encoder. For 3.1.1 packets the decoder leaves it empty
 * and the encoders ignore it. */
typedef struct jn_mqtt_props {
    uint64_t present;                /* JN_MQTT_PBIT(id) per property present */
    uint32_t message_expiry;         /* 0x02 seconds */
    uint32_t session_expiry;         /* 0x11 seconds; 0xFFFFFFFF = never */
    uint32_t will_delay;             /* 0x18 seconds */
    uint32_t max_packet_size;        /* 0x27 bytes, 1.. */
    uint32_t sub_id;                 /* 0x0B the first Subscription Identifier */
    uint32_t sub_id_count;           /* how many Subscription Identifiers */
    const uint32_t *sub_ids;         /* encode: sub_id_count identifiers (see below); decode: NULL */
    uint16_t server_keep_alive;      /* 0x13 seconds */
    uint16_t receive_maximum;        /* 0x21 1.. */
    uint16_t topic_alias_maximum;    /* 0x22 */
    uint16_t topic_alias;            /* 0x23 1.. */
    uint8_t payload_format;          /* 0x01 0 bytes, 1 UTF-8 */
    uint8_t request_problem_info;    /* 0x17 0/1 */
    uint8_t request_response_info;   /* 0x19 0/1 */
    uint8_t maximum_qos;             /* 0x24 0/1 */
    uint8_t retain_available;        /* 0x25 0/1 */
    uint8_t wildcard_sub_available;  /* 0x28 0/1 */
    uint8_t sub_id_available;        /* 0x29 0/1 */
    uint8_t shared_sub_available;    /* 0x2A 0/1 */
    jn_mqtt_view_t content_type;     /* 0x03 */
    jn_mqtt_view_t response_topic;   /* 0x08 */
    jn_mqtt_view_t correlation_data; /* 0x09 */
    jn_mqtt_view_t assigned_client_id; /* 0x12 */
    jn_mqtt_view_t auth_method;      /* 0x15 */
    jn_mqtt_view_t auth_data;        /* 0x16 */
    jn_mqtt_view_t response_info;    /* 0x1A */
    jn_mqtt_view_t server_reference; /* 0x1C */
    jn_mqtt_view_t reason_string;    /* 0x1F */
    /* User properties (0x26; bit set when user_count > 0). Decode: |user|
     * is NULL, |user_count| counts them, iterate |raw| with
     * jn_mqtt_user_next. Encode: the |user_count| pairs of |user| when
     * |user| is non-NULL, else the User Property entries of |raw|, so that
     * a decoded packet re-encodes with its user properties. */
    const jn_mqtt_user_prop_t *user;
    uint32_t user_count;
    /* Decode: the property bytes as received (after the length), for
     * jn_mqtt_prop_next / jn_mqtt_user_next. Encode: see |user| and
     * |sub_ids|; other properties in |raw| are not used. */
    jn_mqtt_view_t raw;
    /* Encode only: the peer's Maximum Packet Size (0 = no limit). When the
     * packet would be larger, the Reason String and then the User
     * Properties are left out where the spec allows it (CONNACK, PUBACK,
     * PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, DISCONNECT, AUTH); if it
     * is still larger the encoder fails with JN_ETOOBIG (PUBLISH,
     * SUBSCRIBE, UNSUBSCRIBE fail at once: nothing in them may be
     * dropped). Not used for CONNECT, sent before the server's limit is
     * known. Only the packet's own props.limit counts (not will_props).
     * Decode sets 0. */
    uint32_t limit;
} jn_mqtt_props_t;
/* Subscription Identifiers are encoded from sub_ids[0..sub_id_count) when
 * |sub_ids| is non-NULL; else, when the 0x0B bit is set, all those of |raw|
 * if |raw| holds any, else the single |sub_id|. */

/* CONNECT. The decoder reads the protocol level from the packet. */
typedef struct jn_mqtt_connect {
    uint8_t version;       /* 4 or 5 */
    bool clean_start;      /* Clean Session in 3.1.1 */
    bool will;             /* will_* fields valid */
    uint8_t will_qos;      /* 0..2 */
    bool will_retain;
    bool has_username;
    bool has_password;
    uint16_t keep_alive;   /* seconds */
    jn_mqtt_view_t client_id; /* may be empty */
    jn_mqtt_view_t will_topic;
    jn_mqtt_view_t will_payload;
    jn_mqtt_view_t username;
    jn_mqtt_view_t password;
    jn_mqtt_props_t props;
    jn_mqtt_props_t will_props; /* present = 0 without a will or in 3.1.1 */
} jn_mqtt_connect_t;

/* CONNACK. |reason| is the 3.1.1 return code (0..5) or the 5.0 reason. */
typedef struct jn_mqtt_connack {
    bool session_present;
    uint8_t reason;
    jn_mqtt_props_t props;
} jn_mqtt_connack_t;

typedef struct jn_mqtt_publish {
    uint8_t qos;             /* 0..2 */
    bool retain;
    bool dup;
    uint16_t packet_id;      /* 1.. when qos > 0, else 0 */
    jn_mqtt_view_t topic;    /* may be empty in 5.0 with a Topic Alias */
    jn_mqtt_view_t payload;
    jn_mqtt_props_t props;
} jn_mqtt_publish_t;

/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
typedef struct jn_mqtt_ack {
    uint16_t packet_id;
    uint8_t reason;          /* 5.0; 0 when absent and in 3.1.1 */
    jn_mqtt_props_t props;
} jn_mqtt_ack_t;

/* One entry of a SUBSCRIBE (UNSUBSCRIBE uses only |filter|). */
typedef struct jn_mqtt_sub {
    jn_mqtt_view_t filter;
    uint8_t qos;             /* maximum QoS 0..2 */
    bool no_local;           /* 5.0 */
    bool retain_as_published; /* 5.0 */
    uint8_t retain_handling; /* 5.0, 0..2 */
} jn_mqtt_sub_t;

/* SUBSCRIBE and UNSUBSCRIBE. Decode: |entries| views the validated entry
 * bytes (iterate with jn_mqtt_sub_iter_init/next), |count| counts them,
 * |subs| is NULL. Encode: from subs[0..count) when |subs| is non-NULL,
 * else |entries| copied verbatim. */
typedef struct jn_mqtt_subscribe {
    uint16_t packet_id;
    bool unsubscribe;        /* decode: set for UNSUBSCRIBE */
    uint8_t version;         /* decode: the version the entries were read with */
    uint32_t count;
    jn_mqtt_view_t entries;
    const jn_mqtt_sub_t *subs;
    jn_mqtt_props_t props;
} jn_mqtt_subscribe_t;

/* SUBACK and UNSUBACK: one reason code a byte, one per filter requested.
 * A 3.1.1 UNSUBACK carries none (decode: len 0; encode: ignored). */
typedef struct jn_mqtt_suback {
    uint16_t packet_id;
    jn_mqtt_view_t reasons;
    jn_mqtt_props_t props;
} jn_mqtt_suback_t;

/* DISCONNECT and AUTH (5.0; a 3.1.1 DISCONNECT is empty). */
typedef struct jn_mqtt_reason_pkt {
    uint8_t reason;          /* 0 when absent */
    jn_mqtt_props_t props;
} jn_mqtt_reason_pkt_t;

/* A decoded packet. |type| selects the member of |u|. PINGREQ and
 * PINGRESP have no member. */
typedef struct jn_mqtt_packet {
    uint8_t type;            /* enum jn_mqtt_type; 0 before the first byte is read */
    uint8_t flags;           /* low nibble of the first byte */
    uint8_t version;         /* the version the packet was read with (0 if unknown) */
    uint8_t reason;          /* on error: the reason code to report; else 0 */
    uint32_t len;            /* whole packet in bytes, once the fixed header is complete */
    union {
        jn_mqtt_connect_t connect;
        jn_mqtt_connack_t connack;
        jn_mqtt_publish_t publish;
        jn_mqtt_ack_t ack;                /* PUBACK PUBREC PUBREL PUBCOMP */
        jn_mqtt_subscribe_t subscribe;    /* SUBSCRIBE UNSUBSCRIBE */
        jn_mqtt_suback_t suback;          /* SUBACK UNSUBACK */
        jn_mqtt_reason_pkt_t disconnect;  /* DISCONNECT */
        jn_mqtt_reason_pkt_t auth;        /* AUTH */
    } u;
} jn_mqtt_packet_t;

/* Decodes one packet from the |len| bytes at |buf|.
 *
 * |protocol_version| is the connection's version: 4 (3.1.1) or 5 (any
 * other non-zero value is read as 4), or 0
 * before CONNECT, when only a CONNECT is accepted and the version is read
 * from it (any other first packet: Protocol Error). A CONNECT is decoded
 * with its own protocol level whatever |protocol_version| is; refusing a
 * second CONNECT is the session's job. |max_packet_size| (0 = no limit
 * beyond the protocol's) is checked from the fixed header alone, before
 * the body has arrived.
 *
 * Returns the size of the packet (> 0) when a complete, valid packet is at
 * |buf|; |out| then describes it, with views into |buf|. Returns
 * JN_EPARTIAL when |buf| ends before the packet does (out->len is the
 * whole packet's size once the fixed header is complete, else 0). Errors,
 * with out->reason set (and out->type/out->version as far as they were
 * read, so that the session can answer a bad CONNECT with a CONNACK):
 *   JN_EPROTO        0x81 Malformed Packet or 0x82 Protocol Error
 *   JN_ETOOBIG       0x95 Packet Too Large (out->len is the announced size)
 *   JN_EUNSUPPORTED  0x84 Unsupported Protocol Version (CONNECT level not
 *                    4 or 5; out->u.connect.version holds the level read)
 * The decoder never reads past |buf| + |len| and keeps no state. */
int jn_mqtt_decode(const uint8_t *buf, size_t len, uint8_t protocol_version, uint32_t max_packet_size,
                   jn_mqtt_packet_t *out) JN_MUST_CHECK;

/* Iterates the entries of a decoded SUBSCRIBE or UNSUBSCRIBE. */
typedef struct jn_mqtt_sub_iter {
    const uint8_t *p, *end;
    bool unsubscribe;
} jn_mqtt_sub_iter_t;
void jn_mqtt_sub_iter_init(jn_mqtt_sub_iter_t *it, const jn_mqtt_subscribe_t *s);
/* Fills |sub| with the next entry and returns true, or returns false at
 * the end. Only valid over entries the decoder validated. */
bool jn_mqtt_sub_next(jn_mqtt_sub_iter_t *it, jn_mqtt_sub_t *sub);

/* One property as the iterator yields it. */
typedef struct jn_mqtt_prop {
    uint8_t id;              /* enum jn_mqtt_prop_id */
    uint32_t num;            /* byte, two-byte, four-byte and VBI values */
    jn_mqtt_view_t str;      /* strings and binary data; a user property's name */
    jn_mqtt_view_t value;    /* a user property's value */
} jn_mqtt_prop_t;

typedef struct jn_mqtt_prop_iter {
    const uint8_t *p, *end;
} jn_mqtt_prop_iter_t;
/* Starts an iteration over |props|->raw (decoded properties only). */
void jn_mqtt_prop_iter_init(jn_mqtt_prop_iter_t *it, const jn_mqtt_props_t *props);
/* Next property in wire order: true, or false at the end. */
bool jn_mqtt_prop_next(jn_mqtt_prop_iter_t *it, jn_mqtt_prop_t *prop);
/* Next User Property (skipping the others): true, or false at the end. */
bool jn_mqtt_user_next(jn_mqtt_prop_iter_t *it, jn_mqtt_view_t *name, jn_mqtt_view_t *value);

/* Returns true when |p|[0..len) is a well-formed UTF-8 string as MQTT
 * requires: no overlong forms, no surrogates (U+D800..U+DFFF), nothing
 * above U+10FFFF, no U+0000. (For a PUBLISH whose Payload Format Indicator
 * is 1, the session may check the payload with it.) */
bool jn_mqtt_utf8_valid(const uint8_t *p, size_t len);

/* Encoders. Each appends one packet to |out| for protocol |version| (4 or
 * 5) and returns the bytes appended (> 0). On error |out| is unchanged:
 *   JN_EINVAL   a field out of range (QoS 3, packet id 0 where one is
 *               required, a string longer than 65535 bytes, an invalid
 *               property value, AUTH in 3.1.1, no entries, version not 4/5)
 *   JN_ETOOBIG  the packet exceeds JN_MQTT_MAX_PACKET or props.limit, or
 *               |out| would pass its cap
 *   JN_ENOMEM
 * The encoders do not check UTF-8 well-formedness: callers pass strings
 * that came from validated input or from the server itself. Properties
 * that the packet type does not allow are not encoded. */
int jn_mqtt_encode_connect(jn_buf_t *out, uint8_t version, const jn_mqtt_connect_t *p) JN_MUST_CHECK;
int jn_mqtt_encode_connack(jn_buf_t *out, uint8_t version, const jn_mqtt_connack_t *p) JN_MUST_CHECK;
int jn_mqtt_encode_publish(jn_buf_t *out, uint8_t version, const jn_mqtt_publish_t *p) JN_MUST_CHECK;
/* |type| is JN_MQTT_PUBACK, PUBREC, PUBREL or PUBCOMP. In 5.0 the reason
 * code and properties are left out when they are 0 and empty (the short
 * forms of 3.4.2.1). */
int jn_mqtt_encode_ack(jn_buf_t *out, uint8_t version, uint8_t type, const jn_mqtt_ack_t *p) JN_MUST_CHECK;
int jn_mqtt_encode_puback(jn_buf_t *out, uint8_t version, const jn_mqtt_ack_t *p) JN_MUST_CHECK;
int jn_mqtt_encode_pubrec(jn_buf_t *out, uint8_t version, const jn_mqtt_ack_t *p) JN_MUST_CHECK;
int jn_mqtt_encode_pubrel(jn_buf_t *out, uint8_t version, const jn_mqtt_ack_t *p) JN_MUST_CHECK;
int jn_mqtt_encode_pubcomp(jn_buf_t *out, uint8_t version, const jn_mqtt_ack_t *p) JN_MUST_CHECK;
int jn_mqtt_encode_subscribe(jn_buf_t *out, uint8_t version, const jn_mqtt_subscribe_t *p) JN_MUST_CHECK;
int jn_mqtt_encode_unsubscribe(jn_buf_t *out, uint8_t version, const jn_mqtt_subscribe_t *p) JN_MUST_CHECK;
int jn_mqtt_encode_suback(jn_buf_t *out, uint8_t version, const jn_mqtt_suback_t *p) JN_MUST_CHECK;
int jn_mqtt_encode_unsuback(jn_buf_t *out, uint8_t version, const jn_mqtt_suback_t *p) JN_MUST_CHECK;
int jn_mqtt_encode_pingreq(jn_buf_t *out) JN_MUST_CHECK;
int jn_mqtt_encode_pingresp(jn_buf_t *out) JN_MUST_CHECK;
/* In 5.0 the reason code and properties are left out when 0 and empty. */
int jn_mqtt_encode_disconnect(jn_buf_t *out, uint8_t version, const jn_mqtt_reason_pkt_t *p) JN_MUST_CHECK;
int jn_mqtt_encode_auth(jn_buf_t *out, uint8_t version, const jn_mqtt_reason_pkt_t *p) JN_MUST_CHECK;

/* Writes the fixed header and variable header of a PUBLISH whose payload
 * is p->payload.len bytes, but not the payload, to |hdr| (room |cap|), so
 * that the payload can be sent from where it lies (writev). Returns the
 * bytes written, JN_ETOOBIG when |cap| is too small or the packet too
 * large (see the encoders), or JN_EINVAL. p->payload.data is not read. */
int jn_mqtt_publish_header(uint8_t *hdr, size_t cap, uint8_t version, const jn_mqtt_publish_t *p) JN_MUST_CHECK;

/* Name of packet |type| ("PUBLISH"), "?" when unknown. */
const char *jn_mqtt_type_name(uint8_t type);

#endif
