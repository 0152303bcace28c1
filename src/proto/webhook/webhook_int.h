/* webhook_int.h - what the files of the webhooks door share, and the pure
 * helpers of webhook_sign.c (Standard Webhooks signatures, generic HMAC,
 * the SSRF address rules, the allow list, retry schedules, message ids)
 * and webhook_attlog.c (aggregated attempt records), which
 * tests/unit/test_webhook_sign.c and test_webhook_attlog.c exercise
 * without a server. Not part of the public API (webhook.h is). */
#ifndef JN_WEBHOOK_INT_H
#define JN_WEBHOOK_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../../common/buf.h"
#include "../../common/error.h"

#define JN_WH_SECRET_MAX 64     /* decoded secret bytes */
#define JN_WH_SIG_LEN 48        /* "v1," + 44 base64 chars + NUL */
#define JN_WH_SCHEDULE_MAX 16   /* retries after the first attempt */
#define JN_WH_ALLOW_MAX 64      /* allow-list entries */
#define JN_WH_MSGID_MAX 300     /* "msg_<partition>_<offset>_<stream>" */

/* ---- signing (Standard Webhooks) ---- */

/* Decodes a secret: "whsec_" followed by base64 (the prefix is optional).
 * Writes at most JN_WH_SECRET_MAX bytes to |out|; returns the length, or
 * JN_EINVAL (not base64, empty, or longer than the cap). */
int jn_wh_secret_decode(const char *secret, uint8_t *out);

/* Makes a new secret: "whsec_" + base64 of 24 random bytes, into |out|
 * (at least 40 bytes). Returns 0 or JN_EIO when no randomness is there. */
int jn_wh_secret_generate(char *out, size_t outlen) JN_MUST_CHECK;

/* Writes "v1," + base64(HMAC-SHA256(key, id "." ts "." body)) into |out|
 * (JN_WH_SIG_LEN bytes, NUL-terminated). Returns 0 or JN_EINVAL when
 * |id| is too long (over JN_WH_MSGID_MAX) or HMAC fails. */
int jn_wh_sign(const uint8_t *key, size_t klen, const char *id, int64_t ts, const uint8_t *body, size_t blen,
               char *out) JN_MUST_CHECK;

/* A signer holds one secret's keyed HMAC-SHA256 state, so signing a
 * delivery costs the hash of the signed bytes only (no key setup, no
 * algorithm lookup, no allocation). Not thread-safe: one user at a time. */
typedef struct jn_wh_signer {
    void *mac; /* EVP_MAC_CTX keyed with the secret; NULL when unset */
} jn_wh_signer_t;

/* Keys |s| with |key| (|klen| bytes, copied). Returns 0, JN_EINVAL (empty
 * key) or JN_ENOMEM. On failure |s| is unset (jn_wh_signer_free is still
 * safe). */
int jn_wh_signer_init(jn_wh_signer_t *s, const uint8_t *key, size_t klen) JN_MUST_CHECK;
/* Same output as jn_wh_sign with the key of |s|. Returns 0 or JN_EINVAL
 * (unset signer, |id| over JN_WH_MSGID_MAX, HMAC failure). */
int jn_wh_signer_sign(jn_wh_signer_t *s, const char *id, int64_t ts, const uint8_t *body, size_t blen,
                      char *out) JN_MUST_CHECK;
/* Releases the state; the signer is unset afterwards. Safe when unset. */
void jn_wh_signer_free(jn_wh_signer_t *s);

/* Verifies a webhook-signature header value (space-separated "v1,<b64>"
 * entries; other versions are ignored) against |key|: true when one entry
 * equals the expected signature, compared in constant time. */
bool jn_wh_verify(const uint8_t *key, size_t klen, const char *id, int64_t ts, const uint8_t *body, size_t blen,
                  const char *header, size_t hlen);

/* Generic HMAC scheme (GitHub-style "sha256=<hex>"): HMAC-|alg| ("sha256",
 * "sha1", "sha512") of |prefix_data| (may be NULL) followed by |body|, with
 * |key|, compared in constant time with |sig| (|slen| bytes, after the
 * configured prefix was removed) decoded as hex (|hex|) or base64. Returns
 * true on a match; false otherwise, or for an unknown algorithm. */
bool jn_wh_hmac_verify(const char *alg, const uint8_t *key, size_t klen, const char *prefix_data,
                       const uint8_t *body, size_t blen, const char *sig, size_t slen, bool hex);
/* True when |alg| is a supported HMAC algorithm name. */
bool jn_wh_hmac_alg_ok(const char *alg);

/* ---- message ids ---- */

/* webhook-id of a record: "msg_<partition>_<offset>_<stream>", stable across
 * retries, replays and restarts. Returns 0 or JN_ETOOBIG. */
int jn_wh_msgid(char *out, size_t outlen, const char *stream, uint32_t partition, int64_t offset);
/* Parses a message id back. |stream| gets JN_STREAM_NAME_MAX+1 bytes.
 * Returns 0 or JN_EINVAL. */
int jn_wh_msgid_parse(const char *id, char *stream, size_t streamlen, uint32_t *partition, int64_t *offset);

/* ---- retry schedule ---- */

/* Parses "5s,5m,30m,2h" (units ms, s, m, h; a bare number is ms) into
 * |out| (JN_WH_SCHEDULE_MAX entries). An empty string is an empty
 * schedule (no retry). Returns the count or JN_EINVAL. */
int jn_wh_schedule_parse(const char *s, int64_t *out);

/* Delay before retry |n| (0-based) with jitter: |sched[n]| scaled by a
 * factor in [0.9, 1.1) taken from |rnd| (any 32 random bits). When the
 * receiver asked for |retry_after_ms| (> 0, 429/503 Retry-After) the delay
 * is at least that, capped at 24 h. */
int64_t jn_wh_backoff(const int64_t *sched, int n, uint32_t rnd, int64_t retry_after_ms);

/* ---- aggregated attempt records (webhook_attlog.c) ----
 *
 * Successful first attempts of log records are not written to the
 * attempts log one by one: those of one endpoint that complete in one loop
 * iteration (with the same status) become one record with "count" and
 * every "webhook_ids". Failures, retries that succeed and manual
 * deliveries are still written one per attempt (webhook.c). */

#define JN_WH_OKBATCH_MAX 256      /* deliveries per aggregated record */
#define JN_WH_OKBATCH_TEXT_MAX 1024 /* response excerpt kept (of the first delivery) */

typedef struct jn_wh_okbatch {
    uint32_t count;     /* deliveries in the batch; 0 = empty */
    long status;        /* HTTP status shared by all of them */
    double lat_sum, lat_max; /* ms */
    char id[JN_WH_MSGID_MAX + 1]; /* the first delivery: */
    char stream[256];
    uint32_t partition;
    int64_t offset;
    char resp[JN_WH_OKBATCH_TEXT_MAX + 1]; /* its response excerpt (valid UTF-8, NUL-terminated) */
    jn_buf_t ids;       /* the JSON array's elements so far: "\"id\",\"id\"" (capped) */
} jn_wh_okbatch_t;

void jn_wh_okbatch_init(jn_wh_okbatch_t *b);
void jn_wh_okbatch_free(jn_wh_okbatch_t *b);
/* Empties the batch (keeps the id buffer's memory). */
void jn_wh_okbatch_reset(jn_wh_okbatch_t *b);
/* Adds one successful delivery: message id |id|, from |stream| (NUL-
 * terminated, under 256 bytes) / |partition| / |offset|, HTTP |status|,
 * |latency_ms|, and its response excerpt |resp| (|rlen| bytes of valid
 * UTF-8, only kept for the first delivery; may be NULL). Returns 0;
 * JN_EAGAIN when the batch is full (JN_WH_OKBATCH_MAX) or holds another
 * status - render and reset it, then add again; JN_EINVAL for an id or
 * stream over its cap; JN_ENOMEM. The batch is unchanged on error. */
int jn_wh_okbatch_add(jn_wh_okbatch_t *b, const char *id, const char *stream, uint32_t partition, int64_t offset,
                      long status, double latency_ms, const char *resp, size_t rlen) JN_MUST_CHECK;
/* Appends the batch as one attempt record (compact JSON object) to |out|:
 * seq, time (|time_ms|), webhook_id/stream/partition/offset of the first
 * delivery, attempt 1, status, latency_ms (mean), latency_ms_max,
 * response, error null, result "delivered", manual false, count and
 * webhook_ids (every id, in completion order). Returns 0, JN_EINVAL for
 * an empty batch, JN_ETOOBIG / JN_ENOMEM from |out|. */
int jn_wh_okbatch_render(const jn_wh_okbatch_t *b, uint64_t seq, int64_t time_ms, jn_buf_t *out) JN_MUST_CHECK;
/* Appends |p| (|len| bytes) as a JSON string, quotes included: '"', '\\'
 * and control bytes escaped, other bytes as they are (give valid UTF-8).
 * Returns 0, JN_ETOOBIG or JN_ENOMEM. */
int jn_wh_json_str(jn_buf_t *out, const char *p, size_t len) JN_MUST_CHECK;

/* ---- SSRF rules ---- */

typedef struct jn_wh_allow_entry {
    bool is_host;       /* a host name, matched case-insensitively */
    char host[256];
    int family;         /* AF_INET or AF_INET6 for a CIDR */
    uint8_t addr[16];
    int prefix;         /* bits */
} jn_wh_allow_entry_t;

typedef struct jn_wh_allow {
    jn_wh_allow_entry_t e[JN_WH_ALLOW_MAX];
    int n;
} jn_wh_allow_t;

/* Parses a comma- or space-separated list of CIDRs ("127.0.0.1/32",
 * "10.0.0.0/8", "::1/128"), bare addresses (a /32 or /128) and host names.
 * Returns 0 or JN_EINVAL (bad entry, more than JN_WH_ALLOW_MAX). */
int jn_wh_allow_parse(const char *s, jn_wh_allow_t *out);
/* True when |sa| is inside a CIDR of |a|. */
bool jn_wh_allow_addr(const jn_wh_allow_t *a, const struct sockaddr *sa);
/* True when |host| is a host-name entry of |a|. */
bool jn_wh_allow_host(const jn_wh_allow_t *a, const char *host);

/* Why |sa| must not be connected to: "loopback", "private",
 * "link-local", "unique-local", "metadata", "unspecified", "multicast",
 * "reserved", "shared" (CGNAT); NULL when it is a public address. IPv4-
 * mapped and NAT64 IPv6 addresses are judged by their IPv4 part. */
const char *jn_wh_addr_blocked(const struct sockaddr *sa);

#ifndef JN_WH_PURE_ONLY
#include <curl/curl.h>
#include <jansson.h>
#include <uv.h>

#include "../../common/list.h"
#include "../../core/broker.h"
#include "../../http/server.h"
#include "webhook.h"

#define JN_WH_ATTEMPTS_TABLE "__webhook_attempts"
#define JN_WH_ATTEMPTS_KEEP 1000   /* attempts kept per endpoint (a ring of keys) */
#define JN_WH_WINDOW_MAX 8192      /* records held per endpoint before its cursor waits */
#define JN_WH_EXCERPT_MAX 1024     /* response bytes kept per attempt */
#define JN_WH_REDIRECTS_DEFAULT 5  /* redirects followed per attempt when an endpoint sets none */
#define JN_WH_REDIRECTS_MAX 20     /* the most an endpoint may ask for */
#define JN_WH_DLQ_STREAM "webhooks.dlq"
#define JN_WH_EVENTS_STREAM "webhooks.events"

typedef struct wh_ep wh_ep_t;
typedef struct wh_msg wh_msg_t;

/* One inbound hook (POST /v1/hooks/{name}). */
typedef struct wh_hook {
    jn_list_t node;
    char name[128];
    char *subject;
    bool standard;         /* Standard Webhooks; else the generic HMAC scheme */
    uint8_t secret[256];
    size_t secret_len;
    char header[64];       /* hmac: signature header */
    char alg[16];          /* hmac: sha256 | sha1 | sha512 */
    char prefix[32];       /* hmac: e.g. "sha256=" */
    bool hex;              /* hmac: hex, else base64 */
    char ts_header[64];    /* hmac: optional timestamp header ("" = none) */
    char id_header[64];    /* hmac: optional delivery id header for replay checks */
    int64_t tolerance_s;
    json_t *def;           /* the stored definition (owned) */
    /* recent message ids, for exact-replay rejection: a FIFO with expiry
     * and a hash index; capped at JN_WH_SEEN_MAX (the oldest goes first) */
    jn_list_t seen;
    struct wh_seen **buckets;
    size_t nseen;
} wh_hook_t;

struct jn_webhook {
    jn_httpd_t *httpd;
    jn_broker_t *broker;
    jn_rest_t *rest;
    uv_loop_t *loop;
    jn_webhook_config_t cfg;
    char *allow_text;      /* cfg.allow_hosts copied */
    jn_wh_allow_t allow;
    int64_t sched[JN_WH_SCHEDULE_MAX];
    int nsched;
    CURLM *multi;
    uv_timer_t curl_timer;
    uv_timer_t commit_timer;
    int handles;           /* open uv handles; freed when 0 after closing */
    bool closing;
    uint32_t inflight;     /* over all endpoints */
    jn_list_t eps;         /* wh_ep_t.node */
    jn_list_t hooks;       /* wh_hook_t.node */
    uv_check_t flush_check; /* writes the aggregated attempt records at the end of an iteration */
    jn_list_t flushq;      /* endpoints with successes not yet written (wh_ep_t.fnode) */
    jn_buf_t scratch;      /* an attempt record's text, reused */
    struct wh_sock **socks; /* by file descriptor: the poll handle of each curl socket */
    size_t nsocks;         /* entries of socks (grows up to WH_FD_MAX) */
    uint32_t rnd;          /* xorshift state for jitter */
};

/* ---- webhook.c: the engine ---- */
/* Finds an endpoint by id. */
wh_ep_t *jn__wh_ep_find(jn_webhook_t *w, const char *id);
/* Creates or replaces endpoint |id| from its (validated) definition
 * |def| (borrowed). Starts its subscription unless disabled. */
int jn__wh_ep_apply(jn_webhook_t *w, const char *id, json_t *def) JN_MUST_CHECK;
/* Stops and removes an endpoint (its definition is deleted by the caller);
 * |drop_group| also deletes its consumer group. */
void jn__wh_ep_remove(wh_ep_t *ep, bool drop_group);
json_t *jn__wh_ep_json(wh_ep_t *ep, bool with_secret);
/* Every endpoint, without secrets. */
json_t *jn__wh_list_json(jn_webhook_t *w);
const char *jn__wh_ep_id(const wh_ep_t *ep);
json_t *jn__wh_ep_def(const wh_ep_t *ep);
/* Queues a manual delivery of records |from|..|to| (inclusive) of
 * |stream|/|partition|; returns how many were queued or an error. */
int jn__wh_ep_replay(wh_ep_t *ep, const char *stream, uint32_t partition, int64_t from, int64_t to);
/* Validates and normalises a definition: |in| over |base| (NULL for a new
 * endpoint). Returns a new definition, or NULL with the error |code|
 * ("invalid_url", "invalid_filter", "bad_request") and |err| set. */
json_t *jn__wh_def_build(jn_webhook_t *w, const json_t *base, const json_t *in, const char **code, char *err,
                         size_t errlen);
/* The configured default retry schedule; returns its length. */
int jn__wh_default_schedule(jn_webhook_t *w, const int64_t **sched);
/* Attempts of |ep|, newest first, at most |limit|. */
json_t *jn__wh_attempts_json(jn_webhook_t *w, const char *id, size_t limit);

/* ---- webhook_api.c / webhook_in.c: routes ---- */
int jn__wh_routes(jn_webhook_t *w) JN_MUST_CHECK;
int jn__wh_hooks_load(jn_webhook_t *w);
void jn__wh_hooks_free(jn_webhook_t *w);
/* Inbound hook handlers (webhook_in.c), routed by webhook_api.c. */
void jn__wh_hook_create(jn_http_req_t *req, void *arg);
void jn__wh_hook_list(jn_http_req_t *req, void *arg);
void jn__wh_hook_get(jn_http_req_t *req, void *arg);
void jn__wh_hook_delete(jn_http_req_t *req, void *arg);
void jn__wh_hook_receive(jn_http_req_t *req, void *arg);
#endif
#endif
