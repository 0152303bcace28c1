/* codec.h - the AMQP 0-9-1 wire codec (sans I/O), with RabbitMQ's
 * extensions (exchange.bind/unbind, basic.nack, confirm.select,
 * connection.blocked/unblocked/update-secret) and its field-table errata.
 *
 * Three layers, none of which touches a socket or allocates:
 *   frames   jn_amqp_frame_decode finds one complete frame in the bytes
 *            received so far (type, channel, payload view), checking the
 *            size cap and the frame-end octet 0xCE;
 *   methods  jn_amqp_method_decode parses a method frame's payload into a
 *            jn_amqp_method_t: class, method and its arguments in spec
 *            order, as numbers or views (strings, raw field tables) into
 *            the payload, valid as long as those bytes are. Field tables
 *            are fully validated here (types, lengths, nesting depth), so
 *            the iterator below walks known-good bytes;
 *   content  jn_amqp_header_decode parses a content header frame
 *            (class, body size, the 14 basic properties by flag).
 * Arguments are described by a static table (one signature string per
 * method: o octet, s short, l long, L longlong, S shortstr, X longstr,
 * b bit, T table), which drives both the decoder and the encoder, so
 * every method of the spec is covered both ways by the same code.
 *
 * Encoders append whole frames to a jn_buf_t (whose cap bounds them) and
 * leave the buffer unchanged on error.
 */
#ifndef JN_AMQP_CODEC_H
#define JN_AMQP_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "../../common/buf.h"
#include "../../common/error.h"

#define JN_AMQP_PROTOCOL_HEADER "AMQP\x00\x00\x09\x01"
#define JN_AMQP_PROTOCOL_HEADER_LEN 8
#define JN_AMQP_FRAME_END 0xCE
#define JN_AMQP_FRAME_OVERHEAD 8 /* type, channel, size, frame-end */
#define JN_AMQP_FRAME_MIN_SIZE 4096 /* the spec's frame-min-size */
#define JN_AMQP_MAX_ARGS 12
#define JN_AMQP_TABLE_DEPTH_MAX 16 /* nested tables/arrays */

enum jn_amqp_frame_type {
    JN_AMQP_FRAME_METHOD = 1,
    JN_AMQP_FRAME_HEADER = 2,
    JN_AMQP_FRAME_BODY = 3,
    JN_AMQP_FRAME_HEARTBEAT = 8,
};

/* Reply codes (spec constants). */
enum jn_amqp_reply {
    JN_AMQP_REPLY_SUCCESS = 200,
    JN_AMQP_CONTENT_TOO_LARGE = 311,
    JN_AMQP_NO_ROUTE = 312,
    JN_AMQP_NO_CONSUMERS = 313,
    JN_AMQP_CONNECTION_FORCED = 320,
    JN_AMQP_INVALID_PATH = 402,
    JN_AMQP_ACCESS_REFUSED = 403,
    JN_AMQP_NOT_FOUND = 404,
    JN_AMQP_RESOURCE_LOCKED = 405,
    JN_AMQP_PRECONDITION_FAILED = 406,
    JN_AMQP_FRAME_ERROR = 501,
    JN_AMQP_SYNTAX_ERROR = 502,
    JN_AMQP_COMMAND_INVALID = 503,
    JN_AMQP_CHANNEL_ERROR = 504,
    JN_AMQP_UNEXPECTED_FRAME = 505,
    JN_AMQP_RESOURCE_ERROR = 506,
    JN_AMQP_NOT_ALLOWED = 530,
    JN_AMQP_NOT_IMPLEMENTED = 540,
    JN_AMQP_INTERNAL_ERROR = 541,
};

/* Method ids: class << 16 | method. */
#define JN_AMQP_M(c, m) ((uint32_t)(c) << 16 | (uint32_t)(m))
enum jn_amqp_method_id {
    JN_AMQP_CONNECTION_START = JN_AMQP_M(10, 10),
    JN_AMQP_CONNECTION_START_OK = JN_AMQP_M(10, 11),
    JN_AMQP_CONNECTION_SECURE = JN_AMQP_M(10, 20),
    JN_AMQP_CONNECTION_SECURE_OK = JN_AMQP_M(10, 21),
    JN_AMQP_CONNECTION_TUNE = JN_AMQP_M(10, 30),
    JN_AMQP_CONNECTION_TUNE_OK = JN_AMQP_M(10, 31),
    JN_AMQP_CONNECTION_OPEN = JN_AMQP_M(10, 40),
    JN_AMQP_CONNECTION_OPEN_OK = JN_AMQP_M(10, 41),
    JN_AMQP_CONNECTION_CLOSE = JN_AMQP_M(10, 50),
    JN_AMQP_CONNECTION_CLOSE_OK = JN_AMQP_M(10, 51),
    JN_AMQP_CONNECTION_BLOCKED = JN_AMQP_M(10, 60),
    JN_AMQP_CONNECTION_UNBLOCKED = JN_AMQP_M(10, 61),
    JN_AMQP_CONNECTION_UPDATE_SECRET = JN_AMQP_M(10, 70),
    JN_AMQP_CONNECTION_UPDATE_SECRET_OK = JN_AMQP_M(10, 71),
    JN_AMQP_CHANNEL_OPEN = JN_AMQP_M(20, 10),
    JN_AMQP_CHANNEL_OPEN_OK = JN_AMQP_M(20, 11),
    JN_AMQP_CHANNEL_FLOW = JN_AMQP_M(20, 20),
    JN_AMQP_CHANNEL_FLOW_OK = JN_AMQP_M(20, 21),
    JN_AMQP_CHANNEL_CLOSE = JN_AMQP_M(20, 40),
    JN_AMQP_CHANNEL_CLOSE_OK = JN_AMQP_M(20, 41),
    JN_AMQP_EXCHANGE_DECLARE = JN_AMQP_M(40, 10),
    JN_AMQP_EXCHANGE_DECLARE_OK = JN_AMQP_M(40, 11),
    JN_AMQP_EXCHANGE_DELETE = JN_AMQP_M(40, 20),
    JN_AMQP_EXCHANGE_DELETE_OK = JN_AMQP_M(40, 21),
    JN_AMQP_EXCHANGE_BIND = JN_AMQP_M(40, 30),
    JN_AMQP_EXCHANGE_BIND_OK = JN_AMQP_M(40, 31),
    JN_AMQP_EXCHANGE_UNBIND = JN_AMQP_M(40, 40),
    JN_AMQP_EXCHANGE_UNBIND_OK = JN_AMQP_M(40, 51),
    JN_AMQP_QUEUE_DECLARE = JN_AMQP_M(50, 10),
    JN_AMQP_QUEUE_DECLARE_OK = JN_AMQP_M(50, 11),
    JN_AMQP_QUEUE_BIND = JN_AMQP_M(50, 20),
    JN_AMQP_QUEUE_BIND_OK = JN_AMQP_M(50, 21),
    JN_AMQP_QUEUE_PURGE = JN_AMQP_M(50, 30),
    JN_AMQP_QUEUE_PURGE_OK = JN_AMQP_M(50, 31),
    JN_AMQP_QUEUE_DELETE = JN_AMQP_M(50, 40),
    JN_AMQP_QUEUE_DELETE_OK = JN_AMQP_M(50, 41),
    JN_AMQP_QUEUE_UNBIND = JN_AMQP_M(50, 50),
    JN_AMQP_QUEUE_UNBIND_OK = JN_AMQP_M(50, 51),
    JN_AMQP_BASIC_QOS = JN_AMQP_M(60, 10),
    JN_AMQP_BASIC_QOS_OK = JN_AMQP_M(60, 11),
    JN_AMQP_BASIC_CONSUME = JN_AMQP_M(60, 20),
    JN_AMQP_BASIC_CONSUME_OK = JN_AMQP_M(60, 21),
    JN_AMQP_BASIC_CANCEL = JN_AMQP_M(60, 30),
    JN_AMQP_BASIC_CANCEL_OK = JN_AMQP_M(60, 31),
    JN_AMQP_BASIC_PUBLISH = JN_AMQP_M(60, 40),
    JN_AMQP_BASIC_RETURN = JN_AMQP_M(60, 50),
    JN_AMQP_BASIC_DELIVER = JN_AMQP_M(60, 60),
    JN_AMQP_BASIC_GET = JN_AMQP_M(60, 70),
    JN_AMQP_BASIC_GET_OK = JN_AMQP_M(60, 71),
    JN_AMQP_BASIC_GET_EMPTY = JN_AMQP_M(60, 72),
    JN_AMQP_BASIC_ACK = JN_AMQP_M(60, 80),
    JN_AMQP_BASIC_REJECT = JN_AMQP_M(60, 90),
    JN_AMQP_BASIC_RECOVER_ASYNC = JN_AMQP_M(60, 100),
    JN_AMQP_BASIC_RECOVER = JN_AMQP_M(60, 110),
    JN_AMQP_BASIC_RECOVER_OK = JN_AMQP_M(60, 111),
    JN_AMQP_BASIC_NACK = JN_AMQP_M(60, 120),
    JN_AMQP_CONFIRM_SELECT = JN_AMQP_M(85, 10),
    JN_AMQP_CONFIRM_SELECT_OK = JN_AMQP_M(85, 11),
    JN_AMQP_TX_SELECT = JN_AMQP_M(90, 10),
    JN_AMQP_TX_SELECT_OK = JN_AMQP_M(90, 11),
    JN_AMQP_TX_COMMIT = JN_AMQP_M(90, 20),
    JN_AMQP_TX_COMMIT_OK = JN_AMQP_M(90, 21),
    JN_AMQP_TX_ROLLBACK = JN_AMQP_M(90, 30),
    JN_AMQP_TX_ROLLBACK_OK = JN_AMQP_M(90, 31),
};

/* One method argument. Numbers and bits in |u|; short/long strings and
 * tables as |p|/|len| views (a table's bytes exclude its length prefix). */
typedef struct jn_amqp_arg {
    uint64_t u;
    const uint8_t *p;
    uint32_t len;
} jn_amqp_arg_t;

typedef struct jn_amqp_method {
    uint32_t id;       /* enum jn_amqp_method_id */
    const char *name;  /* "basic.publish" */
    const char *sig;   /* argument signature (see top) */
    uint8_t nargs;
    jn_amqp_arg_t a[JN_AMQP_MAX_ARGS]; /* in spec order, reserved fields included */
} jn_amqp_method_t;

typedef struct jn_amqp_frame {
    uint8_t type;
    uint16_t channel;
    const uint8_t *payload; /* view */
    uint32_t size;
} jn_amqp_frame_t;

/* Checks the protocol header at the start of a connection. Returns 8 when
 * |p| starts with AMQP 0-9-1's, JN_EPARTIAL when it might (fewer than 8
 * bytes that agree so far), JN_EPROTO otherwise (reply with the supported
 * header and close). */
int jn_amqp_protocol_header_check(const uint8_t *p, size_t len);

/* Finds one frame at |p|. Returns its total size (payload + 8) and fills
 * |f|, JN_EPARTIAL when more bytes are needed, JN_ETOOBIG when the size
 * field says more than |frame_max| (total frame size; 0 = no cap),
 * JN_EPROTO for an unknown frame type or a frame-end octet other than
 * 0xCE. Both errors are connection errors 501 FRAME_ERROR. |f|'s payload
 * views |p|. */
int jn_amqp_frame_decode(const uint8_t *p, size_t len, uint32_t frame_max, jn_amqp_frame_t *f);

/* Parses a method frame payload. 0, JN_EUNSUPPORTED for an unknown class
 * or method (540/503), JN_EPROTO for truncated or malformed arguments,
 * trailing bytes, or a bad field table (502 SYNTAX_ERROR). */
int jn_amqp_method_decode(const uint8_t *p, size_t len, jn_amqp_method_t *m);
/* The signature of |id| and its name, or NULL when unknown. */
const char *jn_amqp_method_sig(uint32_t id, const char **name);
/* The method's name ("basic.publish") or "unknown". */
const char *jn_amqp_method_name(uint32_t id);

/* Appends a method frame on |channel|: |args| must match the method's
 * signature (|nargs| entries). JN_EINVAL for an unknown method, a wrong
 * count or a string over its length limit; JN_ETOOBIG when |out| is full. */
int jn_amqp_encode_method(jn_buf_t *out, uint16_t channel, uint32_t id, const jn_amqp_arg_t *args,
                          size_t nargs) JN_MUST_CHECK;
/* Helpers for building |args|. */
#define JN_AMQP_U(v) ((jn_amqp_arg_t){.u = (uint64_t)(v)})
#define JN_AMQP_STR(s) ((jn_amqp_arg_t){.p = (const uint8_t *)(s), .len = (uint32_t)strlen(s)})
#define JN_AMQP_BYTES(s, n) ((jn_amqp_arg_t){.p = (const uint8_t *)(s), .len = (uint32_t)(n)})
#define JN_AMQP_EMPTY ((jn_amqp_arg_t){.p = NULL, .len = 0})

/* ---- content ---- */

enum jn_amqp_prop_flag {
    JN_AMQP_P_CONTENT_TYPE = 1 << 15,
    JN_AMQP_P_CONTENT_ENCODING = 1 << 14,
    JN_AMQP_P_HEADERS = 1 << 13,
    JN_AMQP_P_DELIVERY_MODE = 1 << 12,
    JN_AMQP_P_PRIORITY = 1 << 11,
    JN_AMQP_P_CORRELATION_ID = 1 << 10,
    JN_AMQP_P_REPLY_TO = 1 << 9,
    JN_AMQP_P_EXPIRATION = 1 << 8,
    JN_AMQP_P_MESSAGE_ID = 1 << 7,
    JN_AMQP_P_TIMESTAMP = 1 << 6,
    JN_AMQP_P_TYPE = 1 << 5,
    JN_AMQP_P_USER_ID = 1 << 4,
    JN_AMQP_P_APP_ID = 1 << 3,
    JN_AMQP_P_CLUSTER_ID = 1 << 2,
};

typedef struct jn_amqp_str {
    const uint8_t *p;
    uint32_t len;
} jn_amqp_str_t;

/* The basic class's properties; a member counts only if its flag is set. */
typedef struct jn_amqp_props {
    uint16_t flags;
    jn_amqp_str_t content_type, content_encoding;
    jn_amqp_str_t headers; /* raw field table bytes (validated) */
    uint8_t delivery_mode, priority;
    jn_amqp_str_t correlation_id, reply_to, expiration, message_id;
    uint64_t timestamp;
    jn_amqp_str_t type, user_id, app_id, cluster_id;
} jn_amqp_props_t;

typedef struct jn_amqp_content_header {
    uint16_t class_id;
    uint64_t body_size;
    jn_amqp_props_t props;
} jn_amqp_content_header_t;

/* Parses a content header frame payload. 0 or JN_EPROTO (truncated,
 * trailing bytes, a flag continuation bit, bad headers table). */
int jn_amqp_header_decode(const uint8_t *p, size_t len, jn_amqp_content_header_t *h);
/* Appends a content header frame. JN_ETOOBIG, JN_EINVAL (a string over 255). */
int jn_amqp_encode_header(jn_buf_t *out, uint16_t channel, uint16_t class_id, uint64_t body_size,
                          const jn_amqp_props_t *props) JN_MUST_CHECK;
/* Appends |len| body bytes as body frames of at most |frame_max| bytes
 * each (total frame size; 0 = one frame). */
int jn_amqp_encode_body(jn_buf_t *out, uint16_t channel, const uint8_t *p, size_t len,
                        uint32_t frame_max) JN_MUST_CHECK;
int jn_amqp_encode_heartbeat(jn_buf_t *out) JN_MUST_CHECK;

/* ---- field tables ---- */

/* A field value. Integers of every width are widened into |i| (and for
 * unsigned 64 into |u| too); 'f'/'d' into |d|; 'D' into |scale| and |i|;
 * strings, byte arrays into |p|/|len|; nested 'F' tables and 'A' arrays as
 * raw views in |p|/|len| (walk them with the iterators). */
typedef struct jn_amqp_value {
    char type;
    int64_t i;
    uint64_t u;
    double d;
    uint8_t scale;
    const uint8_t *p;
    uint32_t len;
} jn_amqp_value_t;

/* Validates a field table's bytes (without its length prefix): every
 * type, every length, nesting up to JN_AMQP_TABLE_DEPTH_MAX. 0 or
 * JN_EPROTO. */
int jn_amqp_table_validate(const uint8_t *p, size_t len);

typedef struct jn_amqp_iter {
    const uint8_t *p, *end;
} jn_amqp_iter_t;

/* Iterates a validated table: returns 1 and fills |key|/|v|, 0 at the
 * end, JN_EPROTO if the bytes are bad after all (not validated). */
void jn_amqp_iter_init(jn_amqp_iter_t *it, const uint8_t *p, size_t len);
int jn_amqp_table_next(jn_amqp_iter_t *it, jn_amqp_str_t *key, jn_amqp_value_t *v);
/* The same over an 'A' array's values. */
int jn_amqp_array_next(jn_amqp_iter_t *it, jn_amqp_value_t *v);
/* Finds |key| in a validated table: 1 and |v|, or 0. */
int jn_amqp_table_get(const uint8_t *p, size_t len, const char *key, jn_amqp_value_t *v);

/* A table (or array, or single value) as JSON: numbers, strings (byte
 * arrays too, as text when valid UTF-8 is not required), booleans, null
 * for 'V', nested objects/arrays; decimals as numbers; timestamps as
 * integers. New reference, or NULL on ENOMEM/malformed bytes. */
json_t *jn_amqp_table_to_json(const uint8_t *p, size_t len);
json_t *jn_amqp_value_to_json(const jn_amqp_value_t *v);

/* Table encoding: begin writes a 4-byte length placeholder and returns
 * its position; end patches it. Between them, put key/value pairs. */
int jn_amqp_table_begin(jn_buf_t *b, size_t *mark) JN_MUST_CHECK;
void jn_amqp_table_end(jn_buf_t *b, size_t mark);
int jn_amqp_put_key(jn_buf_t *b, const char *key) JN_MUST_CHECK;
int jn_amqp_put_bool(jn_buf_t *b, const char *key, bool v) JN_MUST_CHECK;
int jn_amqp_put_long(jn_buf_t *b, const char *key, int64_t v) JN_MUST_CHECK; /* 'l' */
int jn_amqp_put_int(jn_buf_t *b, const char *key, int32_t v) JN_MUST_CHECK;  /* 'I' */
int jn_amqp_put_str(jn_buf_t *b, const char *key, const void *s, size_t len) JN_MUST_CHECK; /* 'S' */
/* Encodes a JSON value as a field value (object 'F', array 'A', string
 * 'S', true/false 't', integer 'l', real 'd', null 'V'), with its key
 * when |key| is not NULL. */
int jn_amqp_put_json(jn_buf_t *b, const char *key, const json_t *v) JN_MUST_CHECK;

#endif
