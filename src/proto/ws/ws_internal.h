/* ws_internal.h - the pure parts of the WebSocket door, shared by its
 * files and exercised by tests/unit/test_ws.c and tests/fuzz/fuzz_ws.c
 * without a server:
 *
 *   ws_handshake.c  RFC 6455 opening handshake checks, Sec-WebSocket-Accept,
 *                   subprotocol and permessage-deflate (RFC 7692) offers
 *   ws_deflate.c    permessage-deflate compression with zlib (no context
 *                   takeover in either direction, so streams are shared)
 *   ws_codec.c      framing through wslay's event API, sans I/O: bytes in
 *                   through feed, bytes out through a write callback
 *   ws_envelope.c   the binary envelope of docs/ws.md
 *   ws_cmd.c        the JSON commands of docs/ws.md
 *   ws_conn.c       a codec's write and random callbacks over a jn_conn_t
 *                   (shared by the /v1/ws door and MQTT over WebSocket)
 *
 * Not part of the public API (that is ws.h).
 */
#ifndef JN_WS_INTERNAL_H
#define JN_WS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <jansson.h>

#include "../../common/buf.h"
#include "../../common/error.h"
#include "../../core/batch.h"
#include "../../core/broker.h"
#include "../../net/conn.h"

#define JN_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define JN_WS_SUBPROTOCOL "junction.v1"
#define JN_WS_BEARER_PREFIX "bearer."
#define JN_WS_TOKEN_MAX 255     /* longest token accepted anywhere */
#define JN_WS_ID_MAX 128        /* subscription ids and publish refs */
#define JN_WS_EXT_MAX 160       /* the Sec-WebSocket-Extensions answer */

/* Close codes (RFC 6455 section 7.4.1). */
enum jn_ws_close {
    JN_WS_CLOSE_NORMAL = 1000,
    JN_WS_CLOSE_GOING_AWAY = 1001,
    JN_WS_CLOSE_PROTOCOL = 1002,
    JN_WS_CLOSE_UNSUPPORTED = 1003,
    JN_WS_CLOSE_INVALID_DATA = 1007,
    JN_WS_CLOSE_POLICY = 1008,
    JN_WS_CLOSE_TOO_BIG = 1009,
    JN_WS_CLOSE_INTERNAL = 1011,
};

/* ---- handshake (ws_handshake.c) ---- */

/* The negotiated permessage-deflate parameters. The server always answers
 * server_no_context_takeover and client_no_context_takeover (RFC 7692
 * 7.1.1: a server may add both), so that no connection owns a zlib
 * stream: compression state is shared per loop (jn_ws_zctx_t). */
typedef struct jn_ws_pmd {
    bool enabled;
    uint8_t server_window_bits; /* 8..15: the window we may use when compressing */
} jn_ws_pmd_t;

/* Writes base64(SHA-1(key + GUID)) (28 characters and a NUL) into |out|.
 * |key| must be the base64 encoding of exactly 16 bytes (RFC 6455 4.2.1).
 * Returns 0 or JN_EINVAL. */
int jn_ws_accept_key(const char *key, size_t len, char out[29]) JN_MUST_CHECK;

/* Picks the first acceptable permessage-deflate offer in a
 * Sec-WebSocket-Extensions value |v| (|len| bytes). Offers with unknown,
 * repeated or invalid parameters are skipped, as RFC 7692 5 requires.
 * On acceptance fills |pmd| and writes the answer into |resp| (|resp_len|
 * bytes, NUL-terminated); otherwise pmd->enabled is false and |resp| "".
 * Never fails. */
void jn_ws_pmd_negotiate(const char *v, size_t len, jn_ws_pmd_t *pmd, char *resp, size_t resp_len);

/* Looks up a request header; returns a view or NULL. */
typedef const char *(*jn_ws_header_fn)(void *arg, const char *name, size_t *len);

typedef struct jn_ws_handshake {
    int status;              /* 0 when acceptable, else the HTTP status to answer (400, 426) */
    const char *error;       /* static message when status != 0 */
    char accept[29];         /* Sec-WebSocket-Accept */
    bool subprotocol;        /* answer Sec-WebSocket-Protocol: |protocol| */
    const char *protocol;    /* the subprotocol chosen (from the accepted list), or NULL */
    char token[JN_WS_TOKEN_MAX + 1]; /* from "bearer.<token>" in the protocol list, or "" */
    jn_ws_pmd_t pmd;
    char extensions[JN_WS_EXT_MAX]; /* Sec-WebSocket-Extensions answer, or "" */
} jn_ws_handshake_t;

/* Checks an upgrade request (RFC 6455 4.2.1): GET, "Upgrade: websocket",
 * "Connection" listing "upgrade", Sec-WebSocket-Version 13 (else status
 * 426, to be answered with "Sec-WebSocket-Version: 13"), a valid
 * Sec-WebSocket-Key. A Sec-WebSocket-Protocol list must contain
 * "junction.v1" (it may also carry "bearer.<token>"). permessage-deflate is
 * negotiated when |allow_deflate|. Fills |out|; returns 0 when the upgrade
 * may proceed, else JN_EPROTO with out->status and out->error set. */
int jn_ws_handshake_check(const char *method, jn_ws_header_fn hdr, void *arg, bool allow_deflate,
                          jn_ws_handshake_t *out);

/* The same checks for a door with its own subprotocols (MQTT over
 * WebSocket): |protos| is a NULL-terminated list of the names accepted
 * (compared case-sensitively, RFC 6455 4.1), the server's preferred first.
 * A Sec-WebSocket-Protocol list must contain one of them, else the answer
 * is 400 with |refusal| (a static string) as out->error; out->protocol is
 * then the most preferred name offered (a pointer into |protos|) and
 * out->subprotocol true. Without the header out->protocol is NULL and no
 * subprotocol is answered. "bearer.<token>" elements fill out->token as
 * above. Returns 0 or JN_EPROTO. */
int jn_ws_handshake_check_protocols(const char *method, jn_ws_header_fn hdr, void *arg, bool allow_deflate,
                                    const char *const *protos, const char *refusal, jn_ws_handshake_t *out);

/* Writes the header lines of the 101 answer to an accepted handshake
 * (Upgrade, Connection, Sec-WebSocket-Accept, and Sec-WebSocket-Protocol /
 * Sec-WebSocket-Extensions when negotiated), each ending in CRLF, into
 * |out| (|cap| bytes, NUL-terminated): the |extra_headers| argument of
 * jn_http_upgrade. Returns the length, or JN_ETOOBIG when |cap| is short. */
int jn_ws_upgrade_headers(const jn_ws_handshake_t *hs, char *out, size_t cap);
/* ---- permessage-deflate (ws_deflate.c) ---- */

typedef struct jn_ws_zctx jn_ws_zctx_t;

/* The zlib streams of one loop: one inflater and one deflater per window
 * size, created on first use and reset per message. */
jn_ws_zctx_t *jn_ws_zctx_new(void);
void jn_ws_zctx_free(jn_ws_zctx_t *z);

/* Compresses |p| as one message with a window of |wbits| (9..15) and no
 * context, appending to |out| without the final 00 00 ff ff (RFC 7692
 * 7.2.1). Returns 0, JN_ETOOBIG (|out|'s cap), JN_ENOMEM, JN_EINVAL (wbits).
 * |out| is unchanged on error. */
int jn_ws_deflate(jn_ws_zctx_t *z, int wbits, const uint8_t *p, size_t len, jn_buf_t *out) JN_MUST_CHECK;

/* Decompresses one message (the 00 00 ff ff tail is added here), appending
 * to |out|. Output past |out|'s cap stops at once with JN_ETOOBIG, which
 * is what defuses a zip bomb. JN_EPROTO on corrupt data, JN_ENOMEM.
 * |out| is unchanged on error. */
int jn_ws_inflate(jn_ws_zctx_t *z, const uint8_t *p, size_t len, jn_buf_t *out) JN_MUST_CHECK;

/* ---- framing (ws_codec.c) ---- */

typedef struct jn_ws_codec jn_ws_codec_t;

typedef struct jn_ws_codec_cb {
    /* A complete message: text is valid UTF-8. |p| is valid during the
     * call. The callback may send, and may close the codec (not free it). */
    void (*message)(void *arg, bool binary, const uint8_t *p, size_t len);
    /* A pong arrived (any payload). May be NULL. */
    void (*pong)(void *arg);
    /* Takes |alen| + |blen| bytes of output (b may be NULL), all or
     * nothing: 0, or JN_EAGAIN when there is no room now (call
     * jn_ws_codec_flush later), or another error to fail the connection. */
    int (*write)(void *arg, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);
    /* Fills |len| random bytes (wslay asks for mask keys only as a
     * client, but the callback must exist). Returns 0 or -1. */
    int (*random)(void *arg, uint8_t *buf, size_t len);
    /* Optional: takes |iovcnt| (<= JN_WS_IOV_MAX + 1) pieces of output
     * all or nothing, with the same answers as |write|. Lets
     * jn_ws_codec_sendv hand a frame header and the pieces of a message to
     * the output in one copy. NULL: the pieces are gathered first. */
    int (*writev)(void *arg, const struct iovec *iov, int iovcnt);
} jn_ws_codec_cb_t;

typedef struct jn_ws_codec_config {
    size_t max_message;      /* close 1009 beyond, compressed or not (default 1 MiB) */
    jn_ws_pmd_t pmd;         /* negotiated permessage-deflate */
    jn_ws_zctx_t *z;         /* required when pmd.enabled; borrowed */
    size_t compress_min;     /* smaller messages leave uncompressed (default 256) */
} jn_ws_codec_config_t;

/* Creates a server-side codec. |cb| and |cfg| are copied. JN_ENOMEM,
 * JN_EINVAL (pmd without z). */
int jn_ws_codec_new(const jn_ws_codec_config_t *cfg, const jn_ws_codec_cb_t *cb, void *arg,
                    jn_ws_codec_t **out) JN_MUST_CHECK;
void jn_ws_codec_free(jn_ws_codec_t *c);

/* Feeds bytes from the peer: frames are parsed, messages delivered,
 * pings answered, bad input answered with the right close frame (1002
 * framing or unmasked, 1007 bad UTF-8 or bad deflate data, 1009 too big).
 * All of |p| is consumed. Returns 0, or JN_ECLOSED when the connection must
 * go now (a fatal callback or allocation failure). After a close frame was
 * exchanged further input is ignored. */
int jn_ws_codec_feed(jn_ws_codec_t *c, const uint8_t *p, size_t len);

/* Sends one message (compressed when negotiated and at least
 * compress_min bytes). When nothing is queued inside wslay the frame goes
 * straight to the write callback; a JN_EAGAIN from it is returned and the
 * message is not taken. Otherwise the message is queued behind the others.
 * Returns 0, JN_EAGAIN, JN_ECLOSED (closing), JN_ENOMEM, JN_ETOOBIG. */
int jn_ws_codec_send(jn_ws_codec_t *c, bool binary, const uint8_t *p, size_t len) JN_MUST_CHECK;
/* The most pieces of a message jn_ws_codec_sendv takes. */
#define JN_WS_IOV_MAX 8
#define JN_WS_GATHER_MAX (64u << 20)

/* Sends one message made of the pieces |iov|[1..|iovcnt|-1] (1 to
 * JN_WS_IOV_MAX of them), as jn_ws_codec_send would send their
 * concatenation. |iov|[0] is the codec's: the frame header goes there
 * during the call (it is left zeroed). When the message goes out
 * uncompressed and nothing is queued inside wslay, header and pieces go to
 * the writev callback at once (no copy here: the fan-out path, where one
 * rendered record goes to many connections); otherwise the pieces are
 * gathered into a scratch buffer first (capped at JN_WS_GATHER_MAX:
 * JN_ETOOBIG beyond). Returns what jn_ws_codec_send returns, or JN_EINVAL
 * for a bad |iovcnt|. */
int jn_ws_codec_sendv(jn_ws_codec_t *c, bool binary, struct iovec *iov, int iovcnt) JN_MUST_CHECK;
/* Feeds bytes like jn_ws_codec_feed, but stops taking input once the
 * message callback has called jn_ws_codec_yield: *used is set to the bytes
 * taken (all of |len| unless yielded; bytes after a close count as taken).
 * The caller offers the rest again later, which is how a connection whose
 * messages fan out to many others spreads that work over loop iterations
 * (and lets their output be written in between). wslay may still deliver
 * the messages already in its read buffer (at most 4 KiB) after a yield. */
int jn_ws_codec_feed_some(jn_ws_codec_t *c, const uint8_t *p, size_t len, size_t *used);
/* From inside the message callback: take no more input in the current
 * jn_ws_codec_feed_some call. Has no effect on jn_ws_codec_feed. */
void jn_ws_codec_yield(jn_ws_codec_t *c);
/* Queues a ping with |len| <= 125 bytes of payload. */
int jn_ws_codec_ping(jn_ws_codec_t *c, const uint8_t *p, size_t len) JN_MUST_CHECK;
/* Queues a close frame with |code| and a short reason (cut to 123 bytes)
 * and stops reading. Idempotent. */
void jn_ws_codec_close(jn_ws_codec_t *c, uint16_t code, const char *reason);
/* Writes what wslay holds, until the write callback says JN_EAGAIN.
 * Returns 0 or JN_ECLOSED. */
int jn_ws_codec_flush(jn_ws_codec_t *c);
/* Bytes queued inside wslay (not yet handed to the write callback). */
size_t jn_ws_codec_pending(const jn_ws_codec_t *c);
/* True once a close frame was written out: the connection may be closed. */
bool jn_ws_codec_done(const jn_ws_codec_t *c);
/* The close code we sent (0 before). */
uint16_t jn_ws_codec_close_code(const jn_ws_codec_t *c);

/* ---- on a connection (ws_conn.c) ---- */

/* The body of a codec write callback over |conn|: queues |alen| + |blen|
 * bytes (|b| may be NULL) all or nothing. Returns 0, JN_EAGAIN when the
 * output is at its hard cap (the codec keeps the frame; flush it on
 * drain), or JN_ECLOSED / JN_ENOMEM. */
int jn_ws_conn_write(jn_conn_t *conn, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);
/* A codec random callback: |len| bytes from OpenSSL's generator. 0 or -1. */
int jn_ws_random(void *arg, uint8_t *buf, size_t len);

/* ---- the binary envelope (ws_envelope.c), big-endian ---- */

#define JN_WS_ENV_PUBLISH 0x01
#define JN_WS_ENV_RECORD 0x02
#define JN_WS_ENV_PUBLISH_HDR 8
#define JN_WS_ENV_RECORD_HDR 28

enum {
    JN_WS_ENV_F_ACK = 1,       /* publish: answer with an ack event */
    JN_WS_ENV_F_KEY = 2,       /* a key is present (else null) */
    JN_WS_ENV_F_NULL = 4,      /* the value is null (a tombstone) */
};

typedef struct jn_ws_env_publish {
    uint8_t flags;
    const char *ref;       /* views into the frame */
    size_t ref_len;
    const char *subject;
    size_t subject_len;
    const uint8_t *key;    /* NULL when absent */
    size_t key_len;
    const uint8_t *value;  /* NULL for a tombstone */
    size_t value_len;
} jn_ws_env_publish_t;

/* Decodes a publish envelope; the views point into |p|. Returns 0 or
 * JN_EPROTO (wrong type, lengths past the end, reserved bits set). */
int jn_ws_env_publish_decode(const uint8_t *p, size_t len, jn_ws_env_publish_t *out) JN_MUST_CHECK;
/* Encodes a publish envelope (for clients and tests). Returns 0, JN_EINVAL
 * (a field too long), or the error of |out|. */
int jn_ws_env_publish_encode(jn_buf_t *out, const jn_ws_env_publish_t *e) JN_MUST_CHECK;

typedef struct jn_ws_env_record {
    const char *sub;       /* subscription id */
    size_t sub_len;
    const char *stream;
    size_t stream_len;
    const char *subject;
    size_t subject_len;
    uint32_t partition;
    int64_t offset;
    int64_t timestamp;
    const uint8_t *key;    /* NULL when absent */
    size_t key_len;
    const uint8_t *value;  /* NULL for a tombstone */
    size_t value_len;
} jn_ws_env_record_t;

/* Writes the fixed 28-byte header of a record envelope: what precedes the
 * subscription id, stream, subject, key and value, which a sender may then
 * write from where they are. Returns 0 or JN_EINVAL (a field too long). */
int jn_ws_env_record_header(uint8_t h[JN_WS_ENV_RECORD_HDR], const jn_ws_env_record_t *r) JN_MUST_CHECK;
/* Appends a record envelope. Returns 0, JN_EINVAL (a field too long), or
 * the error of |out|, leaving it unchanged. */
int jn_ws_env_record_encode(jn_buf_t *out, const jn_ws_env_record_t *r) JN_MUST_CHECK;
/* Decodes a record envelope (for clients and tests). 0 or JN_EPROTO. */
int jn_ws_env_record_decode(const uint8_t *p, size_t len, jn_ws_env_record_t *out) JN_MUST_CHECK;

/* ---- JSON commands (ws_cmd.c) ---- */

enum jn_ws_op {
    JN_WS_OP_SUBSCRIBE = 1,
    JN_WS_OP_UNSUBSCRIBE,
    JN_WS_OP_PUBLISH,
    JN_WS_OP_COMMIT,
    JN_WS_OP_AUTH,
    JN_WS_OP_PING,
};

typedef struct jn_ws_cmd {
    enum jn_ws_op op;
    json_t *root;            /* owned; the strings below are views into it */
    const char *ref;         /* "ref" (any op), echoed in errors; NULL when absent */
    const char *id;          /* subscribe/unsubscribe */
    /* subscribe */
    const char *filter;
    enum jn_start start;
    int64_t start_value;
    const char *group;       /* NULL when none */
    bool lossy;
    bool binary;             /* "format":"binary" */
    /* publish: a record parsed by the REST door's parser (owned parts) */
    const char *subject;
    size_t subject_len;
    int32_t partition;       /* -1: by key or round robin */
    bool ack;
    jn_record_t rec;
    void *rec_state;         /* owned: the parser's storage */
    /* commit */
    const char *stream;
    int64_t offset;
    const char *metadata;    /* NULL when none */
    /* auth */
    const char *token;
} jn_ws_cmd_t;

/* Parses one text message into |out|. On error returns JN_EINVAL (or
 * JN_ENOMEM), sets *code to the error event's code ("invalid_json",
 * "unknown_op", "bad_request", "invalid_name") and writes a message into
 * |err|; out->ref is still set when the message had a usable "ref" (so
 * errors can echo it), and jn_ws_cmd_free must be called either way. */
int jn_ws_cmd_parse(const uint8_t *p, size_t len, jn_ws_cmd_t *out, const char **code, char *err,
                    size_t errlen) JN_MUST_CHECK;
void jn_ws_cmd_free(jn_ws_cmd_t *c);

/* Parses a start position: "live", "earliest", "<offset>", "time:<ms>".
 * 0 or JN_EINVAL. */
int jn_ws_parse_from(const char *s, enum jn_start *start, int64_t *value);

/* Appends {"type":"record","sub":<id>, ...the record of docs/rest.md...}.
 * Returns 0 or the error of |out|, which is then unchanged. */
int jn_ws_record_json(jn_buf_t *out, const char *sub, size_t sub_len, const jn_delivery_t *d) JN_MUST_CHECK;
/* The same event in three pieces, so that a record is rendered once for
 * all its subscribers: JN_WS_RECORD_JSON_HEAD, then the subscription id as
 * a JSON string, then the tail that this appends (",\"stream\":...}", the
 * same for every subscription). Returns 0 or the error of |out|, which is
 * then unchanged. */
#define JN_WS_RECORD_JSON_HEAD "{\"type\":\"record\",\"sub\":"
int jn_ws_record_json_tail(jn_buf_t *out, const jn_delivery_t *d) JN_MUST_CHECK;

#endif
