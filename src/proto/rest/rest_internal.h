/* rest_internal.h - what the files of the REST door share: the door
 * struct, the handlers each file registers, and the pure JSON helpers of
 * rest_json.c (records <-> JSON, UTF-8, base64, error mapping), which the
 * unit test exercises without a server. Not part of the public API. */
#ifndef JN_REST_INTERNAL_H
#define JN_REST_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>

#include "../../common/buf.h"
#include "../../common/list.h"
#include "../../core/batch.h"

/* ---- pure helpers (rest_json.c) ---- */

/* Appends |p| as a quoted JSON string. Valid UTF-8 is copied with '"', '\\'
 * and control characters escaped; a byte that is not part of a valid
 * sequence is written as the code point of the same value (\u00XX), so the
 * output is always valid JSON (lossy only for invalid input). Returns 0 or
 * the error of |out| (JN_ETOOBIG, JN_ENOMEM), leaving |out| unchanged. */
int jn_rest_json_string(jn_buf_t *out, const uint8_t *p, size_t len) JN_MUST_CHECK;

/* Writes the quoted JSON string of |p| into |dst| (|cap| bytes, NUL-
 * terminated). Returns the length written, or -1 when it does not fit. */
ssize_t jn_rest_json_string_to(char *dst, size_t cap, const uint8_t *p, size_t len);

/* Standard base64 (RFC 4648, with padding). encode appends to |out|;
 * returns 0 or the error of |out|, leaving it unchanged on error. */
int jn_rest_base64_encode(jn_buf_t *out, const uint8_t *p, size_t len) JN_MUST_CHECK;
/* Decodes |in| (padding optional, no whitespace) into |out|, which has
 * room for jn_rest_base64_decoded_max(inlen) bytes. Returns the decoded
 * length or JN_EINVAL on a bad character, length or padding. */
static inline size_t jn_rest_base64_decoded_max(size_t inlen) { return inlen / 4 * 3 + 3; }
int jn_rest_base64_decode(const char *in, size_t inlen, uint8_t *out);

/* Appends the JSON object of one record as docs/rest.md describes it:
 * {"stream","partition","offset","subject","timestamp","key"[,"key_encoding"],
 *  "headers"[,"base64_headers"],"value","encoding"}. The ":subject" header
 * is not shown (it is the "subject" member). Values, keys and header
 * values that are not valid UTF-8 are base64. Returns 0, or the error of
 * |out| with |out| unchanged. */
int jn_rest_record_json(jn_buf_t *out, const char *stream, size_t stream_len, uint32_t partition,
                        const jn_record_t *rec, const char *subject, size_t subject_len) JN_MUST_CHECK;

/* One record of a batch publish body, parsed. The views in |rec| point into
 * the JSON value it was parsed from and into |owned| storage: keep both
 * until the record is published, then jn_rest_rec_free. */
typedef struct jn_rest_rec {
    const char *subject;  /* NULL when missing */
    size_t subject_len;
    int32_t partition;    /* -1 when absent */
    jn_record_t rec;
    jn_header_t *headers; /* owned */
    uint8_t *owned;       /* owned: decoded key, value, header values */
    char *dumped;         /* owned: a non-string "value" serialised */
} jn_rest_rec_t;

#define JN_REST_MAX_HEADERS (JN_BATCH_MAX_HEADERS - 1) /* one is kept for ":subject" */

/* Parses |o|: {"subject", "key"?, "key_encoding"?, "value", "encoding"?,
 * "headers"?, "base64_headers"?, "partition"?, "timestamp"?}. "value" may
 * be a string (UTF-8 text, or base64 with "encoding":"base64"), null (a
 * tombstone), or any other JSON value (stored as its compact text). The
 * subject is not validated here (the broker does). Returns 0, or
 * JN_EINVAL with a message in |err|, or JN_ENOMEM. On error nothing needs
 * freeing. */
int jn_rest_rec_parse(const json_t *o, jn_rest_rec_t *out, char *err, size_t errlen) JN_MUST_CHECK;
void jn_rest_rec_free(jn_rest_rec_t *r);

/* Maps a core error to the HTTP status and the error `code` of
 * docs/rest.md. |is_name| selects invalid_name over bad_request for
 * JN_EINVAL. */
int jn_rest_error_status(int err, bool is_name, const char **code);

/* Parses a whole decimal integer (optional '-'), no spaces. Returns 0 or
 * JN_EINVAL. */
int jn_rest_parse_i64(const char *s, int64_t *out);

#ifndef JN_REST_PURE_ONLY
#include "rest.h"

/* ---- the door ---- */
struct jn_rest {
    jn_httpd_t *httpd;
    jn_broker_t *broker;
    jn_auth_t *auth;
    jn_rest_config_t cfg;
    char version[64];   /* cfg.version copied */
    uint64_t start_ns;  /* for uptime_ms */
    jn_list_t feeds;    /* live /v1/subscribe feeds (rest_feed_t.node) */
};

/* Authenticates |req| into |p|. On failure answers 401 and returns false. */
bool jn__rest_auth(jn_rest_t *r, jn_http_req_t *req, jn_principal_t *p);
/* Authenticates and checks |perm| on |what| (a subject, or a filter for
 * SUBSCRIBE); answers 401/403 and returns false when not allowed. */
bool jn__rest_allow(jn_rest_t *r, jn_http_req_t *req, jn_principal_t *p, enum jn_perm perm,
                    const char *what);
/* Authenticates and requires admin rights (an admin user, a rule granting
 * admin on |what| when not NULL, or anonymous with anonymous_is_admin). */
bool jn__rest_admin(jn_rest_t *r, jn_http_req_t *req, jn_principal_t *p, const char *what);
/* Answers the error of |err| (see jn_rest_error_status) with a message. */
void jn__rest_fail(jn_http_req_t *req, int err, bool is_name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Parses the body as JSON; answers 400 invalid_json and returns NULL. */
json_t *jn__rest_body_json(jn_http_req_t *req);
/* Reads query |name| as an integer into |out|. Returns 1 when present, 0
 * when absent, or -1 after answering 400 bad_request. */
int jn__rest_query_i64(jn_http_req_t *req, const char *name, int64_t *out);
/* Sends |b| as application/json with |status|. */
void jn__rest_respond_buf(jn_http_req_t *req, int status, const jn_buf_t *b);
/* Responds with json and drops the reference. */
void jn__rest_respond_steal(jn_http_req_t *req, int status, json_t *j);

/* Handlers, all with arg = jn_rest_t *. */
#define JN_REST_HANDLER(name) void name(jn_http_req_t *req, void *arg)
JN_REST_HANDLER(jn__rest_streams_list);
JN_REST_HANDLER(jn__rest_streams_create);
JN_REST_HANDLER(jn__rest_stream_get);
JN_REST_HANDLER(jn__rest_stream_patch);
JN_REST_HANDLER(jn__rest_stream_delete);
JN_REST_HANDLER(jn__rest_records_read);
JN_REST_HANDLER(jn__rest_publish_one);
JN_REST_HANDLER(jn__rest_publish_batch);
JN_REST_HANDLER(jn__rest_subscribe);
JN_REST_HANDLER(jn__rest_groups_list);
JN_REST_HANDLER(jn__rest_group_get);
JN_REST_HANDLER(jn__rest_group_commit);
JN_REST_HANDLER(jn__rest_group_delete);
JN_REST_HANDLER(jn__rest_tables_list);
JN_REST_HANDLER(jn__rest_tables_create);
JN_REST_HANDLER(jn__rest_table_keys);
JN_REST_HANDLER(jn__rest_table_put);
JN_REST_HANDLER(jn__rest_table_get);
JN_REST_HANDLER(jn__rest_table_delete);
JN_REST_HANDLER(jn__rest_users_list);
JN_REST_HANDLER(jn__rest_user_put);
JN_REST_HANDLER(jn__rest_user_delete);
JN_REST_HANDLER(jn__rest_tokens_list);
JN_REST_HANDLER(jn__rest_token_create);
JN_REST_HANDLER(jn__rest_token_delete);
JN_REST_HANDLER(jn__rest_acls_list);
JN_REST_HANDLER(jn__rest_acl_add);
JN_REST_HANDLER(jn__rest_acl_remove);
JN_REST_HANDLER(jn__rest_stats);

/* Creates a stream: |config| (may be NULL) applied over the broker's
 * defaults, |compact| forced on when true. Answers nothing; returns 0 and
 * *out, or an error with a message in |err| (JN_EINVAL with *is_name). */
int jn__rest_stream_create(jn_rest_t *r, const char *name, uint32_t partitions, const json_t *config,
                           bool compact, jn_stream_t **out, bool *is_name, char *err, size_t errlen);

/* Ends every live feed (rest_feed.c). */
void jn__rest_feeds_end_all(jn_rest_t *r);
#endif

#endif
