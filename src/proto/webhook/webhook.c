/* webhook.c - the outbound engine of the webhooks door: endpoints as
 * subscribers of the shared log, deliveries on libcurl's multi interface
 * driven by the libuv loop, retries, dead letters, progress commits and
 * the attempts log.
 *
 * An endpoint holds a window of the records its subscription offered it
 * (at most JN_WH_WINDOW_MAX; beyond that the sink answers JN_EAGAIN and the
 * cursor lags, so memory does not grow with a slow receiver). A record
 * leaves the window when its delivery succeeded or it was dead-lettered.
 * Progress is committed as consumer group "webhook/<id>": per partition,
 * the offset of the oldest record still in the window (else the next one
 * to be offered), every commit_interval_ms and when the endpoint stops.
 * So a restart resumes with every unfinished record: at least once, with
 * duplicates carrying the same webhook-id.
 *
 * Ordering "key": records of one key form a FIFO; only its head may be in
 * flight or waiting for a retry, the next one becomes ready when the head
 * is finished. "parallel": every record is ready at once, up to
 * max_concurrency in flight.
 *
 * curl runs in the loop thread: CURLMOPT_SOCKETFUNCTION maps sockets to
 * uv_poll_t, CURLMOPT_TIMERFUNCTION to one uv_timer_t. DNS uses curl's
 * threaded resolver, off the loop. Every connection's address passes the
 * SSRF rules in the CURLOPT_OPENSOCKETFUNCTION callback, i.e. after
 * resolution, on the address actually connected to. That includes the
 * connections of redirect hops: curl opens a new connection for every
 * host a redirect names (a cached connection is reused only for the same
 * host name and port), and the host-name exemptions of the allow list are
 * judged on the host of the current hop. Redirects are followed up to the
 * endpoint's max_redirects, http/https only, and stay POSTs with their
 * body (CURL_REDIR_POST_ALL).
 *
 * The per-delivery path is kept to what curl itself needs (measured in
 * docs/webhooks.md): each endpoint keeps its easy handles configured and
 * reuses them, request headers live in the request slot (no allocation),
 * the HMAC key is set up once per secret, a kept-alive connection keeps
 * its poll handle and epoll registration between requests, and the
 * attempts log gets one record per endpoint and loop iteration for the
 * successful first attempts (failures stay one record each).
 */
#include "webhook_int.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "../../common/clock.h"
#include "../../common/hash.h"
#include "../../common/log.h"
#include "../../common/utf8.h"
#include "../../core/filter.h"
#include "../rest/rest_internal.h"

#define WH_KEY_BUCKETS 256
#define WH_FD_MAX (1u << 20)       /* file descriptors the socket table covers */
#define WH_SCRATCH_MAX (1u << 20)  /* an attempt record's text */
#define WH_BODY_READ_MAX (64u << 10) /* response bytes read before giving up on the rest */
#define WH_REPLAY_MAX 10000        /* records per replay request */
#define WH_USER_AGENT "junction-webhooks/0.1"

typedef struct wh_part {
    jn_list_t node;    /* ep->parts */
    jn_list_t msgs;    /* unfinished records, in offset order */
    char stream[JN_STREAM_NAME_MAX + 1];
    uint32_t partition;
    int64_t next;      /* offset after the last record taken */
    int64_t committed; /* last committed offset, -1 when none */
} wh_part_t;

typedef struct wh_key {
    struct wh_key *bnext; /* bucket chain */
    uint64_t hash;
    size_t klen;
    wh_msg_t *head, *tail;
    uint8_t key[];
} wh_key_t;

typedef struct wh_att wh_att_t;

struct wh_msg {
    jn_list_t node;    /* part->msgs, or ep->manual */
    jn_list_t rnode;   /* ep->ready or ep->waiting; unlinked in flight or blocked behind its key */
    wh_msg_t *knext;   /* next record of the same key */
    wh_key_t *kq;
    wh_part_t *part;   /* NULL for a manual retry/replay */
    wh_ep_t *ep;
    wh_att_t *att;     /* while in flight */
    uint32_t partition;
    int64_t offset;
    int attempts;      /* made so far */
    uint64_t due;      /* uv_now when waiting */
    uint64_t appended_ms; /* record timestamp, for the latency figures */
    char *stream;
    char *id;
    char *ctype;
    char *subject;
    uint8_t *key;
    int32_t klen;
    uint8_t *body;
    size_t blen;
    char data[];
};

struct wh_ep {
    jn_list_t node;    /* w->eps */
    jn_webhook_t *w;
    char id[64];
    char group[80];
    json_t *def;
    char *url;
    char host[256];
    char *filter;
    struct curl_slist *custom; /* the endpoint's own headers, "Name: value" */
    int64_t timeout_ms, rate_limit, max_conc, disable_after_ms;
    int64_t max_redirects; /* 0 = a 3xx is a failed attempt */
    bool by_key, disabled, envelope;
    bool removing;     /* jn__wh_ep_remove ran: request slots are not kept */
    int64_t sched[JN_WH_SCHEDULE_MAX];
    int nsched;
    uint8_t secret[JN_WH_SECRET_MAX];
    size_t slen;
    uint8_t old_secret[JN_WH_SECRET_MAX];
    size_t olen;
    int64_t old_until;  /* wall ms until which the old secret also signs */
    jn_sub_t *sub;
    jn_list_t parts, manual, ready, waiting;
    size_t window;
    bool paused;       /* the sink refused; resume when the window drains */
    bool dirty;        /* progress to commit */
    uint32_t inflight;
    wh_key_t *keys[WH_KEY_BUCKETS];
    double tokens;
    uint64_t tokens_at;
    uv_timer_t timer;
    jn_wh_signer_t signer, old_signer; /* keyed with secret / old_secret */
    jn_list_t pool;    /* idle attempts with easy handles configured for this endpoint */
    size_t npool;
    jn_wh_okbatch_t okb; /* successes of this iteration, not yet in the attempts log */
    jn_list_t fnode;   /* w->flushq while okb holds some */
    int64_t failing_since; /* wall ms of the first failure since the last success; 0 none */
    uint64_t seq;      /* attempts logged */
    uint64_t delivered, failures, dead;
};

/* One request slot of an endpoint: an easy handle configured once with
 * the endpoint's options and reused (a new endpoint definition gets new
 * ones), and the request headers as a curl_slist whose nodes and text live
 * here, so that starting a delivery allocates nothing. */
struct wh_att {
    jn_list_t node;    /* ep->pool when idle */
    CURL *easy;
    jn_webhook_t *w;
    wh_ep_t *ep;
    wh_msg_t *msg;
    struct curl_slist hl[5]; /* content-type, webhook-id, -timestamp, -signature, Expect; then ep->custom */
    char h_ctype[160];
    char h_id[JN_WH_MSGID_MAX + 16];
    char h_ts[48];
    char h_sig[2 * JN_WH_SIG_LEN + 24];
    uint64_t start_ns;
    size_t resp_len, resp_total;
    char blocked[192];
    char err[CURL_ERROR_SIZE];
    char resp[JN_WH_EXCERPT_MAX];
};

/* A socket curl uses, with its poll handle. Sockets the door opened
 * (opensocket_cb) stay in w->socks, registered, while their connection
 * idles in curl's cache between requests, and go when curl closes them
 * (closesocket_cb): curl stops watching a connection after every request,
 * and an epoll registration plus removal and a handle per request would
 * cost more than the request. Sockets curl opens itself (the resolver's)
 * are dropped when curl stops watching them. */
typedef struct wh_sock {
    uv_poll_t poll;
    jn_webhook_t *w;
    curl_socket_t fd;
    int events;        /* UV_READABLE | UV_WRITABLE while the handle is active */
    bool owned;        /* opened by opensocket_cb; closed through closesocket_cb */
    bool watched;      /* curl watches it; else an idle connection still registered */
} wh_sock_t;

static void ep_dispatch(wh_ep_t *ep);
static void ep_kick(wh_ep_t *ep, uint64_t delay);

void jn_webhook_config_default(jn_webhook_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->allow_hosts = "";
    c->max_concurrency_total = 1024;
    c->default_timeout_ms = 15000;
    c->retry_schedule = "5s,5m,30m,2h,5h,10h,10h";
    c->commit_interval_ms = 1000;
    c->disable_after_ms = 5LL * 24 * 3600 * 1000;
}

static uint32_t wh_rand(jn_webhook_t *w)
{
    uint32_t x = w->rnd;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return w->rnd = x ? x : 0x9e3779b9u;
}

static void handle_closed(jn_webhook_t *w);

/* ---- the attempts log ---- */

/* Copies |p| into |dst| (cap bytes) as text jansson accepts: bytes of
 * invalid UTF-8 become '?'. */
static void excerpt_text(char *dst, size_t cap, const char *p, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, p, len);
    dst[len] = '\0';
    /* The excerpt may end inside a character: trim rather than mangle. */
    while (len > 0 && !jn_utf8_valid((const uint8_t *)dst, len) && ((uint8_t)dst[len - 1] & 0x80))
        dst[--len] = '\0';
    if (!jn_utf8_valid((const uint8_t *)dst, len))
        for (size_t i = 0; i < len; i++)
            if ((uint8_t)dst[i] & 0x80)
                dst[i] = '?';
}

/* Stores |txt| as attempt |seq| of |ep|: key "<id>/<seq mod KEEP>", so the
 * table keeps the newest JN_WH_ATTEMPTS_KEEP records of each endpoint. */
static void attempt_put(wh_ep_t *ep, uint64_t seq, const char *txt, size_t len)
{
    char key[96];
    int kl = snprintf(key, sizeof key, "%s/%04" PRIu64, ep->id, seq % JN_WH_ATTEMPTS_KEEP);
    int rc = jn_broker_table_put(ep->w->broker, JN_WH_ATTEMPTS_TABLE, (const uint8_t *)key, (size_t)kl,
                                 (const uint8_t *)txt, len, "application/json", NULL);
    if (rc < 0)
        jn_warn("webhooks: cannot log an attempt of %s: %s", ep->id, jn_strerror(rc));
}

/* Writes the successes gathered in ep->okb as one record. */
static void okb_flush(wh_ep_t *ep)
{
    jn_list_remove(&ep->fnode);
    if (ep->okb.count == 0)
        return;
    jn_webhook_t *w = ep->w;
    uint64_t seq = ++ep->seq;
    jn_buf_reset(&w->scratch);
    int rc = jn_wh_okbatch_render(&ep->okb, seq, jn_wall_ms(), &w->scratch);
    if (rc == 0)
        attempt_put(ep, seq, (const char *)w->scratch.data, w->scratch.len);
    else
        jn_warn("webhooks: cannot log %" PRIu32 " deliveries of %s: %s", ep->okb.count, ep->id, jn_strerror(rc));
    jn_wh_okbatch_reset(&ep->okb);
}

static void flush_check_cb(uv_check_t *c)
{
    jn_webhook_t *w = c->data;
    while (!jn_list_empty(&w->flushq))
        okb_flush(jn_container_of(w->flushq.next, wh_ep_t, fnode));
    uv_check_stop(c);
}

/* Where an attempt ended up after following redirects. */
typedef struct wh_hops {
    long count;      /* redirects followed; 0 = none */
    const char *url; /* the last URL requested (NULL when count is 0) */
} wh_hops_t;

static void log_attempt(wh_ep_t *ep, wh_msg_t *m, long status, double latency_ms, const char *resp,
                        size_t resp_len, const char *error, const char *result, int64_t next_in_ms,
                        const wh_hops_t *hops)
{
    /* Gathered successes completed before this attempt: keep the order. */
    okb_flush(ep);
    char text[JN_WH_EXCERPT_MAX + 1];
    excerpt_text(text, sizeof text, resp ? resp : "", resp ? resp_len : 0);
    uint64_t seq = ++ep->seq;
    json_t *j = json_pack("{s:I,s:I,s:s,s:s,s:i,s:I,s:i,s:i,s:f,s:s,s:s?,s:s,s:b,s:i}", "seq", (json_int_t)seq,
                          "time", (json_int_t)jn_wall_ms(), "webhook_id", m->id, "stream", m->stream, "partition",
                          (int)m->partition, "offset", (json_int_t)m->offset, "attempt", m->attempts, "status",
                          (int)status, "latency_ms", latency_ms, "response", text, "error", error, "result", result,
                          "manual", m->part == NULL, "count", 1);
    if (!j)
        return;
    if (next_in_ms >= 0)
        json_object_set_new(j, "next_attempt_in_ms", json_integer(next_in_ms));
    if (hops && hops->count > 0) {
        json_object_set_new(j, "redirects", json_integer(hops->count));
        if (hops->url && jn_utf8_valid((const uint8_t *)hops->url, strlen(hops->url)))
            json_object_set_new(j, "url", json_stringn(hops->url, strnlen(hops->url, 2048)));
    }
    char *txt = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!txt)
        return;
    attempt_put(ep, seq, txt, strlen(txt));
    free(txt);
}

/* A successful first attempt of a log record: gathered with the others of
 * this loop iteration into one record (written by flush_check_cb, or
 * earlier when the batch fills up or another record of the endpoint is
 * written). */
static void log_success(wh_ep_t *ep, wh_msg_t *m, long status, double latency_ms, const char *resp,
                        size_t resp_len)
{
    jn_webhook_t *w = ep->w;
    char text[JN_WH_EXCERPT_MAX + 1];
    /* Only the first delivery of a batch keeps its response excerpt. */
    if (ep->okb.count == 0)
        excerpt_text(text, sizeof text, resp ? resp : "", resp ? resp_len : 0);
    else
        text[0] = '\0';
    int rc = jn_wh_okbatch_add(&ep->okb, m->id, m->stream, m->partition, m->offset, status, latency_ms, text,
                               strlen(text));
    if (rc == JN_EAGAIN) {
        okb_flush(ep);
        excerpt_text(text, sizeof text, resp ? resp : "", resp ? resp_len : 0);
        rc = jn_wh_okbatch_add(&ep->okb, m->id, m->stream, m->partition, m->offset, status, latency_ms, text,
                               strlen(text));
    }
    if (rc < 0) {
        log_attempt(ep, m, status, latency_ms, resp, resp_len, NULL, "delivered", -1, NULL);
        return;
    }
    if (!jn_list_linked(&ep->fnode))
        jn_list_insert_tail(&w->flushq, &ep->fnode);
    if (!uv_is_active((uv_handle_t *)&w->flush_check))
        uv_check_start(&w->flush_check, flush_check_cb);
}

typedef struct scan_ctx {
    jn_webhook_t *w;
    json_t *arr;
} scan_ctx_t;

static int attempts_key_cb(const uint8_t *key, size_t klen, void *arg)
{
    scan_ctx_t *c = arg;
    jn_buf_t v;
    jn_buf_init(&v, 64u << 10);
    if (jn_broker_table_get(c->w->broker, JN_WH_ATTEMPTS_TABLE, key, klen, &v, NULL, 0, NULL, NULL) == 0) {
        json_t *j = json_loadb((const char *)v.data, v.len, 0, NULL);
        if (j)
            json_array_append_new(c->arr, j);
    }
    jn_buf_free(&v);
    return 0;
}

static int seq_desc(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "seq"));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "seq"));
    return x < y ? 1 : x > y ? -1 : 0;
}

json_t *jn__wh_attempts_json(jn_webhook_t *w, const char *id, size_t limit)
{
    wh_ep_t *ep = jn__wh_ep_find(w, id);
    if (ep)
        okb_flush(ep); /* successes of the current iteration are shown too */
    char prefix[80];
    int pl = snprintf(prefix, sizeof prefix, "%s/", id);
    scan_ctx_t c = {w, json_array()};
    if (!c.arr)
        return NULL;
    (void)jn_broker_table_scan(w->broker, JN_WH_ATTEMPTS_TABLE, (const uint8_t *)prefix, (size_t)pl, NULL, 0,
                               JN_WH_ATTEMPTS_KEEP, attempts_key_cb, &c);
    size_t n = json_array_size(c.arr);
    json_t **v = calloc(n ? n : 1, sizeof *v);
    json_t *out = json_array();
    if (!v || !out) {
        free(v);
        json_decref(out);
        json_decref(c.arr);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = json_array_get(c.arr, i);
    qsort(v, n, sizeof *v, seq_desc);
    for (size_t i = 0; i < n && i < limit; i++)
        json_array_append(out, v[i]);
    free(v);
    json_decref(c.arr);
    return out;
}

/* ---- messages ---- */

static wh_msg_t *msg_new(wh_ep_t *ep, const char *stream, uint32_t partition, const jn_record_t *rec,
                         const char *subject, size_t sublen, const uint8_t *body, size_t blen, const char *ctype,
                         size_t ctlen)
{
    size_t slen = strlen(stream);
    size_t klen = rec->key_len > 0 ? (size_t)rec->key_len : 0;
    size_t need = slen + 1 + JN_WH_MSGID_MAX + 1 + ctlen + 1 + sublen + 1 + klen + blen;
    wh_msg_t *m = calloc(1, sizeof *m + need);
    if (!m)
        return NULL;
    char *p = m->data;
    m->stream = p;
    memcpy(p, stream, slen + 1);
    p += slen + 1;
    m->id = p;
    if (jn_wh_msgid(p, JN_WH_MSGID_MAX + 1, stream, partition, rec->offset) < 0)
        p[0] = '\0';
    p += JN_WH_MSGID_MAX + 1;
    m->ctype = p;
    memcpy(p, ctype, ctlen);
    p[ctlen] = '\0';
    p += ctlen + 1;
    m->subject = p;
    memcpy(p, subject, sublen);
    p[sublen] = '\0';
    p += sublen + 1;
    m->key = (uint8_t *)p;
    m->klen = rec->key_len;
    if (klen)
        memcpy(p, rec->key, klen);
    p += klen;
    m->body = (uint8_t *)p;
    m->blen = blen;
    if (blen)
        memcpy(p, body, blen);
    m->ep = ep;
    m->partition = partition;
    m->offset = rec->offset;
    m->appended_ms = (uint64_t)rec->timestamp;
    jn_list_init(&m->node);
    jn_list_init(&m->rnode);
    return m;
}

static uint64_t key_hash(const uint8_t *k, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ k[i]) * 1099511628211ull;
    return h;
}

/* Appends |m| to its key's FIFO; true when it is the head (may be sent). */
static int key_enqueue(wh_ep_t *ep, wh_msg_t *m, bool *head)
{
    size_t klen = m->klen > 0 ? (size_t)m->klen : 0;
    uint64_t h = key_hash(m->key, klen) ^ (m->klen < 0 ? 0x5bd1e995u : 0);
    wh_key_t **b = &ep->keys[h % WH_KEY_BUCKETS];
    wh_key_t *k;
    for (k = *b; k; k = k->bnext)
        if (k->hash == h && k->klen == klen && memcmp(k->key, m->key, klen) == 0)
            break;
    if (!k) {
        if (!(k = calloc(1, sizeof *k + klen)))
            return JN_ENOMEM;
        k->hash = h;
        k->klen = klen;
        if (klen)
            memcpy(k->key, m->key, klen);
        k->bnext = *b;
        *b = k;
    }
    m->kq = k;
    if (k->tail)
        k->tail->knext = m;
    else
        k->head = m;
    k->tail = m;
    *head = k->head == m;
    return 0;
}

static void key_free(wh_ep_t *ep, wh_key_t *k)
{
    wh_key_t **b = &ep->keys[k->hash % WH_KEY_BUCKETS];
    while (*b != k)
        b = &(*b)->bnext;
    *b = k->bnext;
    free(k);
}

/* The record is finished (delivered or dead-lettered) or dropped: it
 * leaves the window, the next record of its key becomes ready. */
static void msg_done(wh_msg_t *m)
{
    wh_ep_t *ep = m->ep;
    if (m->kq) {
        wh_key_t *k = m->kq;
        /* Only the head is ever sent, so it is the one finishing. */
        k->head = m->knext;
        if (!k->head) {
            key_free(ep, k);
        } else {
            jn_list_insert_tail(&ep->ready, &k->head->rnode);
        }
    }
    jn_list_remove(&m->rnode);
    jn_list_remove(&m->node);
    if (m->part) {
        ep->window--;
        ep->dirty = true;
    }
    free(m);
    if (ep->paused && ep->sub && ep->window < JN_WH_WINDOW_MAX / 2) {
        ep->paused = false;
        jn_sub_resume(ep->sub);
    }
}

static wh_part_t *part_get(wh_ep_t *ep, const char *stream, uint32_t partition)
{
    jn_list_t *it;
    jn_list_foreach(it, &ep->parts) {
        wh_part_t *p = jn_container_of(it, wh_part_t, node);
        if (p->partition == partition && strcmp(p->stream, stream) == 0) {
            if (it != ep->parts.next) { /* most recent first: the common case is one partition */
                jn_list_remove(it);
                jn_list_insert_head(&ep->parts, it);
            }
            return p;
        }
    }
    wh_part_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    snprintf(p->stream, sizeof p->stream, "%s", stream);
    p->partition = partition;
    p->committed = -1;
    p->next = -1;
    jn_list_init(&p->msgs);
    jn_list_insert_head(&ep->parts, &p->node);
    return p;
}

/* Streams the door writes itself are not offered to endpoints whose
 * filter does not name them: a "#" endpoint must not feed on its own
 * dead letters and attempt records. */
static bool internal_stream(const wh_ep_t *ep, const char *s)
{
    if (strncmp(s, "__", 2) == 0)
        return true;
    if (strcmp(s, JN_WH_DLQ_STREAM) != 0 && strcmp(s, JN_WH_EVENTS_STREAM) != 0)
        return false;
    size_t n = strlen(s);
    return !(strncmp(ep->filter, s, n) == 0 && (ep->filter[n] == '/' || ep->filter[n] == '\0'));
}

static int ep_deliver(jn_sub_t *sub, const jn_delivery_t *d, void *arg)
{
    (void)sub;
    wh_ep_t *ep = arg;
    const char *sname = jn_stream_name(d->stream);
    if (internal_stream(ep, sname))
        return 0;
    if (ep->window >= JN_WH_WINDOW_MAX) {
        ep->paused = true;
        return JN_EAGAIN;
    }
    const jn_record_t *rec = d->rec;
    const char *ct = "application/octet-stream";
    size_t ctlen = strlen(ct);
    for (uint32_t i = 0; i < rec->header_count; i++) {
        const jn_header_t *h = &rec->headers[i];
        if (h->key_len == 12 && strncasecmp((const char *)h->key, "content-type", 12) == 0 && h->value &&
            h->value_len > 0 && h->value_len < 128) {
            ct = (const char *)h->value;
            ctlen = (size_t)h->value_len;
        }
    }
    jn_buf_t env;
    jn_buf_init(&env, 64u << 20);
    const uint8_t *body = rec->value;
    size_t blen = rec->value_len > 0 ? (size_t)rec->value_len : 0;
    if (ep->envelope) {
        if (jn_rest_record_json(&env, sname, strlen(sname), d->partition, rec, d->subject, d->subject_len) < 0) {
            jn_buf_free(&env);
            return JN_EAGAIN;
        }
        body = env.data;
        blen = env.len;
        ct = "application/json";
        ctlen = strlen(ct);
    }
    wh_part_t *part = part_get(ep, sname, d->partition);
    wh_msg_t *m = part ? msg_new(ep, sname, d->partition, rec, d->subject, d->subject_len, body, blen, ct, ctlen)
                       : NULL;
    jn_buf_free(&env);
    if (!m)
        return JN_EAGAIN;
    bool head = true;
    if (ep->by_key && key_enqueue(ep, m, &head) < 0) {
        free(m);
        return JN_EAGAIN;
    }
    m->part = part;
    jn_list_insert_tail(&part->msgs, &m->node);
    part->next = rec->offset + 1;
    ep->window++;
    ep->dirty = true;
    if (head)
        jn_list_insert_tail(&ep->ready, &m->rnode);
    ep_kick(ep, 0);
    return 0;
}

/* ---- commits ---- */

static void ep_commit(wh_ep_t *ep)
{
    if (!ep->dirty)
        return;
    ep->dirty = false;
    jn_list_t *it;
    jn_list_foreach(it, &ep->parts) {
        wh_part_t *p = jn_container_of(it, wh_part_t, node);
        int64_t off = jn_list_empty(&p->msgs) ? p->next : jn_container_of(p->msgs.next, wh_msg_t, node)->offset;
        if (off < 0 || off <= p->committed)
            continue;
        jn_stream_t *s = jn_broker_stream_find(ep->w->broker, p->stream, strlen(p->stream));
        if (!s)
            continue;
        int rc = jn_broker_group_commit(ep->w->broker, ep->group, s, p->partition, off, NULL);
        if (rc < 0) {
            jn_warn("webhooks: cannot commit %s: %s", ep->group, jn_strerror(rc));
            ep->dirty = true;
            continue;
        }
        p->committed = off;
    }
}

static void commit_tick(uv_timer_t *t)
{
    jn_webhook_t *w = t->data;
    jn_list_t *it;
    jn_list_foreach(it, &w->eps)
        ep_commit(jn_container_of(it, wh_ep_t, node));
}

/* ---- curl glue ---- */

static void check_done(jn_webhook_t *w);

static void sock_closed(uv_handle_t *h)
{
    wh_sock_t *s = h->data;
    jn_webhook_t *w = s->w;
    free(s);
    handle_closed(w);
}

static wh_sock_t *sock_find(jn_webhook_t *w, curl_socket_t fd)
{
    return fd >= 0 && (size_t)fd < w->nsocks ? w->socks[fd] : NULL;
}

/* Takes |s| out of the table and closes its handle (which removes the
 * registration: call it before the descriptor is closed). */
static void sock_drop(jn_webhook_t *w, wh_sock_t *s)
{
    if (sock_find(w, s->fd) == s)
        w->socks[s->fd] = NULL;
    uv_close((uv_handle_t *)&s->poll, sock_closed);
}

/* A poll handle for |fd|, in the table. NULL when out of memory or past
 * WH_FD_MAX. */
static wh_sock_t *sock_new(jn_webhook_t *w, curl_socket_t fd, bool owned)
{
    if (fd < 0 || (size_t)fd >= WH_FD_MAX)
        return NULL;
    if ((size_t)fd >= w->nsocks) {
        size_t n = w->nsocks ? w->nsocks : 64;
        while (n <= (size_t)fd)
            n *= 2;
        if (n > WH_FD_MAX)
            n = WH_FD_MAX;
        wh_sock_t **t = realloc(w->socks, n * sizeof *t);
        if (!t)
            return NULL;
        memset(t + w->nsocks, 0, (n - w->nsocks) * sizeof *t);
        w->socks = t;
        w->nsocks = n;
    }
    wh_sock_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (uv_poll_init_socket(w->loop, &s->poll, fd) != 0) {
        free(s);
        return NULL;
    }
    s->w = w;
    s->fd = fd;
    s->owned = owned;
    s->poll.data = s;
    w->handles++;
    w->socks[fd] = s;
    return s;
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    wh_sock_t *s = h->data;
    jn_webhook_t *w = s->w;
    if (!s->watched) {
        /* An idle connection woke up (the receiver closed it, most
         * likely): stop listening; curl checks the connection before it
         * reuses it and closes it through closesocket_cb. */
        uv_poll_stop(h);
        return;
    }
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(w->multi, s->fd, flags, &running);
    check_done(w);
}

static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)e;
    jn_webhook_t *w = userp;
    wh_sock_t *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (!s)
            return 0;
        curl_multi_assign(w->multi, fd, NULL);
        s->watched = false;
        /* Ours: the connection goes to curl's cache and is most likely
         * reused by the next request; keep the registration until then
         * or until closesocket_cb. Not ours: curl may close it without
         * telling, so let it go now. */
        if (!s->owned) {
            uv_poll_stop(&s->poll);
            sock_drop(w, s);
        }
        return 0;
    }
    if (!s)
        s = sock_find(w, fd);
    if (!s && !(s = sock_new(w, fd, false)))
        return -1;
    if (!s->watched) {
        curl_multi_assign(w->multi, fd, s);
        s->watched = true;
    }
    int ev = ((what & CURL_POLL_IN) ? UV_READABLE : 0) | ((what & CURL_POLL_OUT) ? UV_WRITABLE : 0);
    /* uv_poll_start removes the registration and adds it again: two
     * system calls, for nothing when the events are the same. */
    if (ev != s->events || !uv_is_active((uv_handle_t *)&s->poll)) {
        uv_poll_start(&s->poll, ev, poll_cb);
        s->events = ev;
    }
    return 0;
}

static void curl_timeout(uv_timer_t *t)
{
    jn_webhook_t *w = t->data;
    int running;
    curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(w);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    jn_webhook_t *w = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&w->curl_timer);
    else
        uv_timer_start(&w->curl_timer, curl_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* True when the host the request is connecting to right now is a host-name
 * entry of the allow list. On the first hop that is the endpoint's host;
 * after a redirect curl has already made the new location the effective
 * URL, and it is that host that must be exempt, not the endpoint's. */
static bool hop_host_allowed(wh_att_t *att)
{
    jn_webhook_t *w = att->w;
    long hops = 0;
    if (curl_easy_getinfo(att->easy, CURLINFO_REDIRECT_COUNT, &hops) != CURLE_OK || hops == 0)
        return jn_wh_allow_host(&w->allow, att->ep->host);
    char *url = NULL, *host = NULL;
    bool ok = false;
    CURLU *u = curl_url();
    if (u && curl_easy_getinfo(att->easy, CURLINFO_EFFECTIVE_URL, &url) == CURLE_OK && url &&
        curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK && curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
        ok = jn_wh_allow_host(&w->allow, host);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

static curl_socket_t opensocket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    wh_att_t *att = clientp;
    jn_webhook_t *w = att->w;
    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKET_BAD;
    const struct sockaddr *sa = &a->addr;
    const char *why = jn_wh_addr_blocked(sa);
    if (why && !jn_wh_allow_addr(&w->allow, sa) && !hop_host_allowed(att)) {
        char addr[INET6_ADDRSTRLEN] = "?";
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof addr);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof addr);
        snprintf(att->blocked, sizeof att->blocked, "refused: %s is a %s address (not in webhooks.allow_hosts)", addr,
                 why);
        return CURL_SOCKET_BAD;
    }
    curl_socket_t fd = socket(a->family, a->socktype, a->protocol);
    if (fd >= 0) {
        /* The number was free, so an entry for it is stale. */
        wh_sock_t *stale = sock_find(w, fd);
        if (stale)
            sock_drop(w, stale);
        /* Without a table entry the socket is handled like curl's own ones. */
        (void)sock_new(w, fd, true);
    }
    return fd;
}

static int closesocket_cb(void *clientp, curl_socket_t fd)
{
    jn_webhook_t *w = clientp;
    wh_sock_t *s = sock_find(w, fd);
    if (s)
        sock_drop(w, s);
    return close(fd);
}

static size_t write_cb(char *p, size_t size, size_t n, void *ud)
{
    wh_att_t *att = ud;
    size_t len = size * n;
    if (att->resp_len < sizeof att->resp) {
        size_t take = len < sizeof att->resp - att->resp_len ? len : sizeof att->resp - att->resp_len;
        memcpy(att->resp + att->resp_len, p, take);
        att->resp_len += take;
    }
    att->resp_total += len;
    /* The status is known by now; reading a huge body only to discard it
     * would hold a delivery slot for nothing. */
    return att->resp_total > WH_BODY_READ_MAX ? 0 : len;
}

/* A request slot for |ep|: an idle one of its pool, or a new easy handle
 * set up with everything that does not change between its requests. */
static wh_att_t *att_get(wh_ep_t *ep)
{
    if (!jn_list_empty(&ep->pool)) {
        wh_att_t *a = jn_container_of(ep->pool.next, wh_att_t, node);
        jn_list_remove(&a->node);
        ep->npool--;
        return a;
    }
    wh_att_t *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    if (!(a->easy = curl_easy_init())) {
        free(a);
        return NULL;
    }
    a->w = ep->w;
    a->ep = ep;
    jn_list_init(&a->node);
    a->hl[0].data = a->h_ctype;
    a->hl[1].data = a->h_id;
    a->hl[2].data = a->h_ts;
    a->hl[3].data = a->h_sig;
    a->hl[4].data = (char *)"Expect:";
    for (int i = 0; i < 4; i++)
        a->hl[i].next = &a->hl[i + 1];
    a->hl[4].next = ep->custom; /* lives as long as the endpoint, which outlives its requests */
    CURL *e = a->easy;
    curl_easy_setopt(e, CURLOPT_PRIVATE, a);
    curl_easy_setopt(e, CURLOPT_URL, ep->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* no proxy from the environment: the SSRF check sees the receiver */
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, a->hl);
    curl_easy_setopt(e, CURLOPT_USERAGENT, WH_USER_AGENT);
    /* A webhook is a POST: it stays one, with its body and headers, on
     * 301/302/303 as well as 307/308. Every hop's connection passes
     * opensocket_cb. */
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, ep->max_redirects > 0 ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)ep->max_redirects);
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_POSTREDIR, (long)CURL_REDIR_POST_ALL);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)ep->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(ep->timeout_ms < 10000 ? ep->timeout_ms : 10000));
    /* A receiver that drips its answer is cut off well before the total
     * timeout when it sends under 1 byte/s for a few seconds. */
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)(ep->timeout_ms / 1000 > 1 ? ep->timeout_ms / 1000 : 1));
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, opensocket_cb);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, a);
    /* Connections outlive the request that opened them: not |a|. */
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, closesocket_cb);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, ep->w);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, a->err);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    return a;
}

static void att_destroy(wh_att_t *a)
{
    curl_easy_cleanup(a->easy);
    free(a);
}

/* Back to its endpoint's pool; destroyed when the endpoint is going away
 * (its pool is emptied then) or the pool holds max_concurrency already. */
static void att_put(wh_att_t *a)
{
    wh_ep_t *ep = a->ep;
    a->msg = NULL;
    a->resp_len = a->resp_total = 0;
    a->blocked[0] = a->err[0] = '\0';
    if (!ep->removing && !a->w->closing && ep->npool < (size_t)ep->max_conc) {
        jn_list_insert_head(&ep->pool, &a->node);
        ep->npool++;
        return;
    }
    att_destroy(a);
}

/* Writes "name: value" into |dst| (cap bytes). JN_ETOOBIG when cut. */
static int header_line(char *dst, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int header_line(char *dst, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= cap ? JN_ETOOBIG : 0;
}

static int add_header(struct curl_slist **l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int add_header(struct curl_slist **l, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line)
        return JN_ETOOBIG;
    struct curl_slist *nl = curl_slist_append(*l, line);
    if (!nl)
        return JN_ENOMEM;
    *l = nl;
    return 0;
}

static int att_start(wh_ep_t *ep, wh_msg_t *m)
{
    jn_webhook_t *w = ep->w;
    wh_att_t *a = att_get(ep);
    if (!a)
        return JN_ENOMEM;
    a->msg = m;
    int64_t now = jn_wall_ms();
    int64_t ts = now / 1000;
    char sig[JN_WH_SIG_LEN], sig_old[JN_WH_SIG_LEN];
    int rc = jn_wh_signer_sign(&ep->signer, m->id, ts, m->body, m->blen, sig);
    bool two = ep->olen > 0 && now < ep->old_until;
    if (rc == 0 && two)
        rc = jn_wh_signer_sign(&ep->old_signer, m->id, ts, m->body, m->blen, sig_old);
    /* The content type comes from the record: a control byte in it (a
     * CR/LF would start another header) makes it the default. */
    const char *ct = m->ctype;
    for (const char *p = ct; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            ct = "application/octet-stream";
            break;
        }
    if (rc == 0)
        rc = header_line(a->h_ctype, sizeof a->h_ctype, "content-type: %s", ct);
    if (rc == 0)
        rc = header_line(a->h_id, sizeof a->h_id, "webhook-id: %s", m->id);
    if (rc == 0)
        rc = header_line(a->h_ts, sizeof a->h_ts, "webhook-timestamp: %" PRId64, ts);
    if (rc == 0)
        rc = header_line(a->h_sig, sizeof a->h_sig, "webhook-signature: %s%s%s", sig, two ? " " : "",
                         two ? sig_old : "");
    if (rc < 0)
        goto fail;
    CURL *e = a->easy;
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, (const char *)m->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)m->blen);
    a->start_ns = jn_mono_ns();
    if (curl_multi_add_handle(w->multi, e) != CURLM_OK) {
        rc = JN_ENOMEM;
        goto fail;
    }
    m->att = a;
    m->attempts++;
    ep->inflight++;
    w->inflight++;
    return 0;
fail:
    att_put(a);
    return rc;
}

/* Aborts |m|'s request in flight, if any; nothing is recorded. */
static void att_abort(wh_msg_t *m)
{
    wh_att_t *a = m->att;
    if (!a)
        return;
    jn_webhook_t *w = a->w;
    curl_multi_remove_handle(w->multi, a->easy);
    m->att = NULL;
    m->ep->inflight--;
    w->inflight--;
    att_put(a);
}

/* ---- dead letters and events ---- */

static void dead_letter(wh_ep_t *ep, wh_msg_t *m, const char *error)
{
    char subject[128], src[400];
    snprintf(subject, sizeof subject, "%s/%s", JN_WH_DLQ_STREAM, ep->id);
    snprintf(src, sizeof src, "%s/%" PRIu32 "/%" PRId64, m->stream, m->partition, m->offset);
    const char *err = error ? error : "";
    jn_header_t hs[5] = {
        {(const uint8_t *)"content-type", 12, (const uint8_t *)m->ctype, (int32_t)strlen(m->ctype)},
        {(const uint8_t *)"webhook-id", 10, (const uint8_t *)m->id, (int32_t)strlen(m->id)},
        {(const uint8_t *)"webhook-endpoint", 16, (const uint8_t *)ep->id, (int32_t)strlen(ep->id)},
        {(const uint8_t *)"webhook-source", 14, (const uint8_t *)src, (int32_t)strlen(src)},
        {(const uint8_t *)"webhook-error", 13, (const uint8_t *)err, (int32_t)strlen(err)},
    };
    jn_record_t r = {.key = m->klen >= 0 ? m->key : NULL, .key_len = m->klen, .value = m->body,
                     .value_len = (int32_t)m->blen, .header_count = 5, .headers = hs};
    int rc = jn_broker_publish(ep->w->broker, subject, strlen(subject), &r, 1, -1, NULL);
    if (rc < 0)
        jn_warn("webhooks: cannot dead-letter %s of %s: %s", m->id, ep->id, jn_strerror(rc));
}

static void disabled_event(jn_webhook_t *w, const char *id, const char *url, const char *reason, int64_t since)
{
    char subject[128];
    snprintf(subject, sizeof subject, "%s/%s/disabled", JN_WH_EVENTS_STREAM, id);
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "type", "endpoint.disabled", "endpoint", id, "url", url,
                          "reason", reason, "failing_since", (json_int_t)since, "time", (json_int_t)jn_wall_ms());
    char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!txt)
        return;
    jn_header_t h = {(const uint8_t *)"content-type", 12, (const uint8_t *)"application/json", 16};
    jn_record_t r = {.key = (const uint8_t *)id, .key_len = (int32_t)strlen(id), .value = (const uint8_t *)txt,
                     .value_len = (int32_t)strlen(txt), .header_count = 1, .headers = &h};
    int rc = jn_broker_publish(w->broker, subject, strlen(subject), &r, 1, -1, NULL);
    if (rc < 0)
        jn_warn("webhooks: cannot publish the disabled event of %s: %s", id, jn_strerror(rc));
    free(txt);
}

/* Disables |ep| durably (its definition gets "disabled": true) and says
 * so on webhooks.events/<id>/disabled. |ep| is replaced: do not use it
 * after this call. */
static void ep_auto_disable(wh_ep_t *ep, const char *reason)
{
    jn_webhook_t *w = ep->w;
    char id[64];
    snprintf(id, sizeof id, "%s", ep->id);
    jn_warn("webhooks: endpoint %s disabled: %s", id, reason);
    json_t *def = json_deep_copy(ep->def);
    if (!def)
        return;
    json_object_set_new(def, "disabled", json_true());
    json_object_set_new(def, "disabled_reason", json_string(reason));
    char key[96];
    snprintf(key, sizeof key, "webhook/%s", id);
    int rc = jn_broker_meta_put(w->broker, key, def);
    if (rc < 0)
        jn_warn("webhooks: cannot store the disabled state of %s: %s", id, jn_strerror(rc));
    disabled_event(w, id, ep->url, reason, ep->failing_since);
    if (jn__wh_ep_apply(w, id, def) < 0)
        jn_warn("webhooks: cannot stop endpoint %s", id);
    json_decref(def);
}

/* ---- completion ---- */

static void att_done(jn_webhook_t *w, CURL *e, CURLcode res)
{
    wh_att_t *a = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&a);
    wh_msg_t *m = a->msg;
    wh_ep_t *ep = m->ep;
    long status = 0;
    curl_off_t retry_after = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &retry_after);
    /* The final URL lives in the easy handle until its next request:
     * copied before the slot goes back to the pool. */
    char final_url[2048] = "";
    wh_hops_t hops = {0, NULL};
    char *eff = NULL;
    if (curl_easy_getinfo(e, CURLINFO_REDIRECT_COUNT, &hops.count) == CURLE_OK && hops.count > 0 &&
        curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &eff) == CURLE_OK && eff) {
        snprintf(final_url, sizeof final_url, "%s", eff);
        hops.url = final_url;
    }
    double latency = (double)(jn_mono_ns() - a->start_ns) / 1e6;
    curl_multi_remove_handle(w->multi, e);
    m->att = NULL;
    ep->inflight--;
    w->inflight--;
    bool ok = status >= 200 && status < 300 && (res == CURLE_OK || res == CURLE_WRITE_ERROR);
    char error[512] = "";
    if (!ok) {
        if (a->blocked[0])
            snprintf(error, sizeof error, "%s%s%s", a->blocked, hops.count ? " after a redirect to " : "",
                     hops.count ? final_url : "");
        else if (res == CURLE_TOO_MANY_REDIRECTS)
            snprintf(error, sizeof error, "too many redirects (%" PRId64 ")", ep->max_redirects);
        else if (status >= 300 && status < 400 && ep->max_redirects == 0)
            snprintf(error, sizeof error, "HTTP %ld: redirects are not followed (max_redirects 0)", status);
        else if (status > 0 && (res == CURLE_OK || res == CURLE_WRITE_ERROR))
            snprintf(error, sizeof error, "HTTP %ld", status);
        else
            snprintf(error, sizeof error, "%s%s%s", curl_easy_strerror(res), a->err[0] ? ": " : "", a->err);
    }
    char resp[JN_WH_EXCERPT_MAX];
    size_t rlen = a->resp_len;
    memcpy(resp, a->resp, rlen);
    att_put(a);

    bool disable = false;
    if (ok) {
        ep->delivered++;
        ep->failing_since = 0;
        /* Redirected deliveries keep a record of their own: where they
         * ended up is not in the aggregated ones. */
        if (m->attempts == 1 && m->part && hops.count == 0)
            log_success(ep, m, status, latency, resp, rlen);
        else
            log_attempt(ep, m, status, latency, resp, rlen, NULL, "delivered", -1, &hops);
        msg_done(m);
    } else {
        ep->failures++;
        int64_t now = jn_wall_ms();
        if (!ep->failing_since)
            ep->failing_since = now;
        int retry = m->attempts - 1;
        if (retry < ep->nsched) {
            int64_t ra = (status == 429 || status == 503) && retry_after > 0 ? (int64_t)retry_after * 1000 : 0;
            int64_t delay = jn_wh_backoff(ep->sched, retry, wh_rand(w), ra);
            log_attempt(ep, m, status, latency, resp, rlen, error, "retry", delay, &hops);
            m->due = uv_now(w->loop) + (uint64_t)delay;
            jn_list_insert_tail(&ep->waiting, &m->rnode);
        } else {
            log_attempt(ep, m, status, latency, resp, rlen, error, "dead_letter", -1, &hops);
            ep->dead++;
            dead_letter(ep, m, error);
            msg_done(m);
        }
        disable = ep->disable_after_ms > 0 && now - ep->failing_since >= ep->disable_after_ms;
    }
    if (disable) {
        char reason[160];
        snprintf(reason, sizeof reason, "failing continuously for %" PRId64 " ms",
                 jn_wall_ms() - ep->failing_since);
        ep_auto_disable(ep, reason); /* replaces ep */
        return;
    }
    ep_kick(ep, 0);
}

static void check_done(jn_webhook_t *w)
{
    CURLMsg *msg;
    int left;
    bool was_full = w->inflight >= w->cfg.max_concurrency_total;
    while ((msg = curl_multi_info_read(w->multi, &left))) {
        if (msg->msg == CURLMSG_DONE)
            att_done(w, msg->easy_handle, msg->data.result);
    }
    /* Slots freed over all endpoints: others may be waiting for them. */
    if (was_full && w->inflight < w->cfg.max_concurrency_total) {
        jn_list_t *it;
        jn_list_foreach(it, &w->eps) {
            wh_ep_t *ep = jn_container_of(it, wh_ep_t, node);
            if (!jn_list_empty(&ep->ready))
                ep_kick(ep, 0);
        }
    }
}

/* ---- dispatch ---- */

static void ep_timer_cb(uv_timer_t *t)
{
    ep_dispatch(t->data);
}

static void ep_kick(wh_ep_t *ep, uint64_t delay)
{
    if (ep->disabled || uv_is_closing((uv_handle_t *)&ep->timer))
        return;
    if (uv_is_active((uv_handle_t *)&ep->timer) && uv_timer_get_due_in(&ep->timer) <= delay)
        return;
    uv_timer_start(&ep->timer, ep_timer_cb, delay, 0);
}

static bool take_token(wh_ep_t *ep, uint64_t *wait_ms)
{
    if (ep->rate_limit <= 0)
        return true;
    uint64_t now = jn_mono_ns();
    double burst = (double)ep->rate_limit;
    ep->tokens += (double)(now - ep->tokens_at) / 1e9 * (double)ep->rate_limit;
    if (ep->tokens > burst)
        ep->tokens = burst;
    ep->tokens_at = now;
    if (ep->tokens >= 1.0) {
        ep->tokens -= 1.0;
        return true;
    }
    *wait_ms = (uint64_t)((1.0 - ep->tokens) * 1000.0 / (double)ep->rate_limit) + 1;
    return false;
}

static void ep_dispatch(wh_ep_t *ep)
{
    jn_webhook_t *w = ep->w;
    if (ep->disabled || w->closing)
        return;
    uint64_t now = uv_now(w->loop);
    uint64_t next_due = UINT64_MAX;
    jn_list_t *it, *tmp;
    jn_list_foreach_safe(it, tmp, &ep->waiting) {
        wh_msg_t *m = jn_container_of(it, wh_msg_t, rnode);
        if (m->due <= now) {
            jn_list_remove(it);
            /* Retries go first: they are older than anything new. */
            jn_list_insert_head(&ep->ready, it);
        } else if (m->due < next_due) {
            next_due = m->due;
        }
    }
    while (!jn_list_empty(&ep->ready) && ep->inflight < (uint32_t)ep->max_conc &&
           w->inflight < w->cfg.max_concurrency_total) {
        uint64_t wait = 0;
        if (!take_token(ep, &wait)) {
            if (now + wait < next_due)
                next_due = now + wait;
            break;
        }
        wh_msg_t *m = jn_container_of(ep->ready.next, wh_msg_t, rnode);
        jn_list_remove(&m->rnode);
        int rc = att_start(ep, m);
        if (rc < 0) {
            jn_warn("webhooks: cannot start a delivery to %s: %s", ep->id, jn_strerror(rc));
            m->due = now + 1000;
            jn_list_insert_tail(&ep->waiting, &m->rnode);
            if (m->due < next_due)
                next_due = m->due;
            break;
        }
    }
    if (next_due != UINT64_MAX)
        ep_kick(ep, next_due > now ? next_due - now : 0);
}

/* ---- endpoints ---- */

wh_ep_t *jn__wh_ep_find(jn_webhook_t *w, const char *id)
{
    jn_list_t *it;
    jn_list_foreach(it, &w->eps) {
        wh_ep_t *ep = jn_container_of(it, wh_ep_t, node);
        if (strcmp(ep->id, id) == 0)
            return ep;
    }
    return NULL;
}

const char *jn__wh_ep_id(const wh_ep_t *ep) { return ep->id; }
json_t *jn__wh_ep_def(const wh_ep_t *ep) { return ep->def; }

static void ep_closed(uv_handle_t *h)
{
    wh_ep_t *ep = h->data;
    jn_webhook_t *w = ep->w;
    json_decref(ep->def);
    free(ep->url);
    free(ep->filter);
    curl_slist_free_all(ep->custom);
    jn_wh_signer_free(&ep->signer);
    jn_wh_signer_free(&ep->old_signer);
    jn_wh_okbatch_free(&ep->okb);
    free(ep);
    handle_closed(w);
}

void jn__wh_ep_remove(wh_ep_t *ep, bool drop_group)
{
    jn_webhook_t *w = ep->w;
    jn_list_remove(&ep->node);
    okb_flush(ep);
    ep->removing = true;
    if (ep->sub) {
        ep_commit(ep);
        jn_sub_close(ep->sub);
        ep->sub = NULL;
    }
    ep->disabled = true; /* no more dispatch */
    jn_list_t *it, *tmp;
    jn_list_foreach_safe(it, tmp, &ep->parts) {
        wh_part_t *p = jn_container_of(it, wh_part_t, node);
        while (!jn_list_empty(&p->msgs)) {
            wh_msg_t *m = jn_container_of(p->msgs.next, wh_msg_t, node);
            att_abort(m);
            m->kq = NULL; /* keys are freed below as a whole */
            jn_list_remove(&m->rnode);
            jn_list_remove(&m->node);
            free(m);
        }
        jn_list_remove(&p->node);
        free(p);
    }
    while (!jn_list_empty(&ep->manual)) {
        wh_msg_t *m = jn_container_of(ep->manual.next, wh_msg_t, node);
        att_abort(m);
        jn_list_remove(&m->rnode);
        jn_list_remove(&m->node);
        free(m);
    }
    for (int i = 0; i < WH_KEY_BUCKETS; i++) {
        while (ep->keys[i]) {
            wh_key_t *k = ep->keys[i];
            ep->keys[i] = k->bnext;
            free(k);
        }
    }
    while (!jn_list_empty(&ep->pool)) {
        wh_att_t *a = jn_container_of(ep->pool.next, wh_att_t, node);
        jn_list_remove(&a->node);
        att_destroy(a);
    }
    ep->npool = 0;
    if (drop_group && jn_broker_group_delete(w->broker, ep->group) < 0)
        jn_debug("webhooks: no group %s to delete", ep->group);
    uv_timer_stop(&ep->timer);
    uv_close((uv_handle_t *)&ep->timer, ep_closed);
}

static int64_t def_int(const json_t *def, const char *name, int64_t dflt)
{
    json_t *v = json_object_get(def, name);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

static const char *def_str(const json_t *def, const char *name)
{
    return json_string_value(json_object_get(def, name));
}

/* Commits the current positions of every partition the endpoint has not
 * taken anything from yet, so that a "live" endpoint created before a
 * restart does not miss what arrived while the server was down. */
static void ep_mark_positions(wh_ep_t *ep)
{
    jn_webhook_t *w = ep->w;
    size_t n = 0;
    for (jn_stream_t *s = jn_broker_stream_next(w->broker, NULL); s; s = jn_broker_stream_next(w->broker, s)) {
        const char *name = jn_stream_name(s);
        if (internal_stream(ep, name))
            continue;
        for (uint32_t p = 0; p < jn_stream_partitions(s) && n < 4096; p++, n++) {
            wh_part_t *part = part_get(ep, name, p);
            if (part && part->next < 0)
                part->next = jn_sub_position(ep->sub, s, p);
        }
    }
    ep->dirty = true;
}

/* Restores the attempt counter from the attempts log, so that a restarted
 * endpoint continues its ring of attempt keys instead of overwriting the
 * newest ones. */
static void ep_restore_seq(wh_ep_t *ep)
{
    json_t *a = jn__wh_attempts_json(ep->w, ep->id, 1);
    if (a && json_array_size(a) == 1)
        ep->seq = (uint64_t)json_integer_value(json_object_get(json_array_get(a, 0), "seq"));
    json_decref(a);
}

int jn__wh_ep_apply(jn_webhook_t *w, const char *id, json_t *def)
{
    wh_ep_t *old = jn__wh_ep_find(w, id);
    uint64_t seq = 0;
    int64_t failing_since = 0;
    if (old) {
        okb_flush(old); /* its records take sequence numbers: before copying */
        seq = old->seq;
        failing_since = old->failing_since;
        jn__wh_ep_remove(old, false);
    }
    wh_ep_t *ep = calloc(1, sizeof *ep);
    if (!ep)
        return JN_ENOMEM;
    ep->w = w;
    snprintf(ep->id, sizeof ep->id, "%s", id);
    snprintf(ep->group, sizeof ep->group, "webhook/%s", id);
    jn_list_init(&ep->parts);
    jn_list_init(&ep->manual);
    jn_list_init(&ep->ready);
    jn_list_init(&ep->waiting);
    jn_list_init(&ep->node);
    jn_list_init(&ep->pool);
    jn_list_init(&ep->fnode);
    jn_wh_okbatch_init(&ep->okb);
    ep->def = json_incref(def);
    if (uv_timer_init(w->loop, &ep->timer) != 0) {
        json_decref(ep->def);
        free(ep);
        return JN_ENOMEM;
    }
    ep->timer.data = ep;
    w->handles++;
    jn_list_insert_tail(&w->eps, &ep->node);
    int rc = JN_ENOMEM;
    ep->url = strdup(def_str(def, "url"));
    ep->filter = strdup(def_str(def, "filter"));
    if (!ep->url || !ep->filter)
        goto fail;
    CURLU *u = curl_url();
    char *host = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, ep->url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
        snprintf(ep->host, sizeof ep->host, "%s", host);
    curl_free(host);
    curl_url_cleanup(u);
    ep->timeout_ms = def_int(def, "timeout_ms", w->cfg.default_timeout_ms);
    ep->rate_limit = def_int(def, "rate_limit", 0);
    ep->max_conc = def_int(def, "max_concurrency", 16);
    ep->disable_after_ms = def_int(def, "disable_after_ms", w->cfg.disable_after_ms);
    ep->max_redirects = def_int(def, "max_redirects", JN_WH_REDIRECTS_DEFAULT);
    ep->by_key = strcmp(def_str(def, "ordering") ? def_str(def, "ordering") : "", "key") == 0;
    ep->envelope = strcmp(def_str(def, "envelope") ? def_str(def, "envelope") : "", "json") == 0;
    ep->disabled = json_is_true(json_object_get(def, "disabled"));
    ep->tokens = (double)ep->rate_limit;
    ep->tokens_at = jn_mono_ns();
    ep->failing_since = failing_since;
    json_t *sched = json_object_get(def, "retry_schedule");
    size_t i;
    json_t *v;
    json_array_foreach(sched, i, v) {
        if (ep->nsched < JN_WH_SCHEDULE_MAX)
            ep->sched[ep->nsched++] = (int64_t)json_integer_value(v);
    }
    int sl = jn_wh_secret_decode(def_str(def, "secret"), ep->secret);
    if (sl < 0) {
        rc = JN_EINVAL;
        goto fail;
    }
    ep->slen = (size_t)sl;
    if ((rc = jn_wh_signer_init(&ep->signer, ep->secret, ep->slen)) < 0)
        goto fail;
    const char *old_secret = def_str(def, "old_secret");
    if (old_secret) {
        int ol = jn_wh_secret_decode(old_secret, ep->old_secret);
        if (ol > 0) {
            ep->olen = (size_t)ol;
            ep->old_until = def_int(def, "old_secret_until", 0);
            if ((rc = jn_wh_signer_init(&ep->old_signer, ep->old_secret, ep->olen)) < 0)
                goto fail;
        }
    }
    const char *hname;
    json_object_foreach(json_object_get(def, "headers"), hname, v) {
        if ((rc = add_header(&ep->custom, "%s: %s", hname, json_string_value(v))) < 0)
            goto fail;
    }
    ep->seq = seq;
    if (!old)
        ep_restore_seq(ep);
    if (ep->disabled)
        return 0;

    jn_sub_opts_t so = {.filter = ep->filter, .deliver = ep_deliver, .arg = ep};
    json_t *start = json_object_get(def, "start");
    json_t *g = jn_broker_group_json(w->broker, ep->group);
    bool has_group = g != NULL;
    json_decref(g);
    enum jn_start fresh = JN_START_LIVE;
    if (json_is_integer(start)) {
        fresh = JN_START_OFFSET;
        so.start_value = (int64_t)json_integer_value(start);
    } else if (json_is_string(start) && strcmp(json_string_value(start), "earliest") == 0) {
        fresh = JN_START_EARLIEST;
    }
    if (has_group) {
        so.start = JN_START_GROUP;
        so.group = ep->group;
        so.group_default = fresh == JN_START_LIVE ? JN_START_LIVE : JN_START_EARLIEST;
    } else {
        so.start = fresh;
    }
    if ((rc = jn_broker_subscribe(w->broker, &so, &ep->sub)) < 0)
        goto fail;
    if (!has_group && fresh == JN_START_LIVE)
        ep_mark_positions(ep);
    return 0;
fail:
    jn_warn("webhooks: cannot start endpoint %s: %s", id, jn_strerror(rc));
    jn__wh_ep_remove(ep, false);
    return rc;
}

json_t *jn__wh_ep_json(wh_ep_t *ep, bool with_secret)
{
    json_t *j = json_deep_copy(ep->def);
    if (!j)
        return NULL;
    json_object_del(j, "old_secret");
    if (!with_secret)
        json_object_del(j, "secret");
    json_t *st = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "in_flight", (json_int_t)ep->inflight, "pending",
                           (json_int_t)ep->window, "delivered", (json_int_t)ep->delivered, "failed_attempts",
                           (json_int_t)ep->failures, "dead_lettered", (json_int_t)ep->dead, "lag",
                           (json_int_t)(ep->sub ? jn_sub_lag(ep->sub) : 0));
    if (st) {
        if (ep->failing_since)
            json_object_set_new(st, "failing_since", json_integer(ep->failing_since));
        json_object_set_new(j, "status", st);
    }
    return j;
}

json_t *jn__wh_list_json(jn_webhook_t *w)
{
    json_t *arr = json_array();
    jn_list_t *it;
    jn_list_foreach(it, &w->eps)
        json_array_append_new(arr, jn__wh_ep_json(jn_container_of(it, wh_ep_t, node), false));
    return arr;
}

int jn__wh_ep_replay(wh_ep_t *ep, const char *stream, uint32_t partition, int64_t from, int64_t to)
{
    jn_webhook_t *w = ep->w;
    if (ep->disabled)
        return JN_ESTATE;
    jn_stream_t *s = jn_broker_stream_find(w->broker, stream, strlen(stream));
    if (!s || partition >= jn_stream_partitions(s))
        return JN_ENOENT;
    if (from < 0 || to < from)
        return JN_EINVAL;
    if (to - from + 1 > WH_REPLAY_MAX)
        return JN_ETOOBIG;
    jn_plog_t *log = jn_stream_plog(s, partition);
    int64_t end = jn_plog_end_offset(log);
    if (from < jn_plog_start_offset(log) || from >= end)
        return JN_ERANGE;
    if (to >= end)
        to = end - 1;
    jn_buf_t raw;
    jn_buf_init(&raw, 128u << 20);
    jn_buf_t z; /* records of a compressed batch */
    jn_buf_init(&z, JN_BATCH_MAX_DECOMPRESSED);
    int64_t next = from;
    int queued = 0, rc = 0;
    while (next <= to) {
        jn_buf_reset(&raw);
        rc = jn_plog_read(log, next, 1u << 20, &raw);
        if (rc <= 0)
            break;
        rc = 0;
        size_t pos = 0;
        int64_t before = next;
        while (pos < raw.len) {
            jn_batch_info_t bi;
            int blen = jn_batch_parse(raw.data + pos, raw.len - pos, raw.len - pos, &bi);
            if (blen < 0)
                break;
            jn_batch_iter_t it;
            if (jn_batch_iter_init_scratch(&it, raw.data + pos, (size_t)blen, false, &z) == 0) {
                jn_record_t rec;
                while (jn_batch_iter_next(&it, &rec) == 1) {
                    if (rec.offset < next || rec.offset > to)
                        continue;
                    size_t sublen;
                    const char *sub = jn_record_subject(&rec, stream, strlen(stream), &sublen);
                    const char *ct = "application/octet-stream";
                    size_t ctlen = strlen(ct);
                    for (uint32_t h = 0; h < rec.header_count; h++)
                        if (it.headers[h].key_len == 12 &&
                            strncasecmp((const char *)it.headers[h].key, "content-type", 12) == 0 &&
                            it.headers[h].value_len > 0 && it.headers[h].value_len < 128) {
                            ct = (const char *)it.headers[h].value;
                            ctlen = (size_t)it.headers[h].value_len;
                        }
                    jn_buf_t env;
                    jn_buf_init(&env, 64u << 20);
                    const uint8_t *body = rec.value;
                    size_t bl = rec.value_len > 0 ? (size_t)rec.value_len : 0;
                    if (ep->envelope &&
                        jn_rest_record_json(&env, stream, strlen(stream), partition, &rec, sub, sublen) == 0) {
                        body = env.data;
                        bl = env.len;
                        ct = "application/json";
                        ctlen = strlen(ct);
                    }
                    wh_msg_t *m = msg_new(ep, stream, partition, &rec, sub, sublen, body, bl, ct, ctlen);
                    jn_buf_free(&env);
                    if (!m) {
                        rc = JN_ENOMEM;
                        goto done;
                    }
                    jn_list_insert_tail(&ep->manual, &m->node);
                    jn_list_insert_tail(&ep->ready, &m->rnode);
                    queued++;
                    next = rec.offset + 1;
                }
            }
            int64_t last = bi.base_offset + bi.last_offset_delta;
            if (last + 1 > next)
                next = last + 1;
            pos += (size_t)blen;
        }
        if (next == before)
            break;
    }
done:
    jn_buf_free(&raw);
    jn_buf_free(&z);
    if (queued)
        ep_kick(ep, 0);
    return rc < 0 ? rc : queued;
}

/* ---- the door ---- */

static void handle_closed(jn_webhook_t *w)
{
    if (--w->handles == 0 && w->closing) {
        jn__wh_hooks_free(w);
        free(w->allow_text);
        free(w->socks);
        jn_buf_free(&w->scratch);
        free(w);
    }
}

static void door_timer_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

static void load_ep(const char *key, json_t *value, void *arg)
{
    jn_webhook_t *w = arg;
    const char *id = key + strlen("webhook/");
    if (jn__wh_ep_apply(w, id, value) < 0)
        jn_warn("webhooks: endpoint %s not started", id);
}

int jn_webhook_new(jn_httpd_t *httpd, jn_broker_t *broker, jn_rest_t *rest, const jn_webhook_config_t *cfg,
                   jn_webhook_t **out)
{
    static bool curl_ready;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return JN_ENOMEM;
        curl_ready = true;
    }
    jn_webhook_t *w = calloc(1, sizeof *w);
    if (!w)
        return JN_ENOMEM;
    w->httpd = httpd;
    w->broker = broker;
    w->rest = rest;
    w->loop = jn_broker_loop(broker);
    w->cfg = *cfg;
    jn_list_init(&w->eps);
    jn_list_init(&w->hooks);
    jn_list_init(&w->flushq);
    jn_buf_init(&w->scratch, WH_SCRATCH_MAX);
    if (RAND_bytes((uint8_t *)&w->rnd, sizeof w->rnd) != 1 || w->rnd == 0)
        w->rnd = 0x2545f491u;
    int rc = JN_EINVAL;
    if (!(w->allow_text = strdup(cfg->allow_hosts ? cfg->allow_hosts : ""))) {
        free(w);
        return JN_ENOMEM;
    }
    w->cfg.allow_hosts = w->allow_text;
    w->cfg.retry_schedule = NULL;
    if (jn_wh_allow_parse(w->allow_text, &w->allow) < 0) {
        jn_error("webhooks: bad webhooks.allow_hosts '%s'", w->allow_text);
        free(w->allow_text);
        free(w);
        return JN_EINVAL;
    }
    if ((w->nsched = jn_wh_schedule_parse(cfg->retry_schedule ? cfg->retry_schedule : "", w->sched)) < 0) {
        jn_error("webhooks: bad webhooks.retry_schedule '%s'", cfg->retry_schedule);
        free(w->allow_text);
        free(w);
        return JN_EINVAL;
    }
    if (w->cfg.max_concurrency_total == 0)
        w->cfg.max_concurrency_total = 1024;
    if (w->cfg.default_timeout_ms == 0)
        w->cfg.default_timeout_ms = 15000;
    if (w->cfg.commit_interval_ms <= 0)
        w->cfg.commit_interval_ms = 1000;
    if (!(w->multi = curl_multi_init())) {
        free(w->allow_text);
        free(w);
        return JN_ENOMEM;
    }
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, (long)(w->cfg.max_concurrency_total < 4096 ? w->cfg.max_concurrency_total : 4096));
    curl_multi_setopt(w->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    uv_timer_init(w->loop, &w->curl_timer);
    uv_timer_init(w->loop, &w->commit_timer);
    uv_check_init(w->loop, &w->flush_check);
    w->curl_timer.data = w->commit_timer.data = w->flush_check.data = w;
    w->handles = 3;
    uv_timer_start(&w->commit_timer, commit_tick, (uint64_t)w->cfg.commit_interval_ms,
                   (uint64_t)w->cfg.commit_interval_ms);
    uv_unref((uv_handle_t *)&w->commit_timer);
    *out = w;
    if ((rc = jn_broker_table_open_internal(broker, JN_WH_ATTEMPTS_TABLE)) < 0) {
        jn_error("webhooks: cannot open %s: %s", JN_WH_ATTEMPTS_TABLE, jn_strerror(rc));
        goto fail;
    }
    if ((rc = jn__wh_routes(w)) < 0)
        goto fail;
    jn_broker_meta_each(broker, "webhook/", load_ep, w);
    if ((rc = jn__wh_hooks_load(w)) < 0)
        goto fail;
    return 0;
fail:
    jn_webhook_free(w);
    *out = NULL;
    return rc;
}

int jn__wh_default_schedule(jn_webhook_t *w, const int64_t **sched)
{
    *sched = w->sched;
    return w->nsched;
}

void jn_webhook_free(jn_webhook_t *w)
{
    if (!w)
        return;
    while (!jn_list_empty(&w->eps))
        jn__wh_ep_remove(jn_container_of(w->eps.next, wh_ep_t, node), false);
    w->closing = true;
    /* Closes the cached connections through closesocket_cb: their poll
     * handles close now. */
    curl_multi_cleanup(w->multi);
    w->multi = NULL;
    for (size_t i = 0; i < w->nsocks; i++)
        if (w->socks[i])
            sock_drop(w, w->socks[i]);
    uv_check_stop(&w->flush_check);
    uv_close((uv_handle_t *)&w->flush_check, door_timer_closed);
    uv_timer_stop(&w->curl_timer);
    uv_timer_stop(&w->commit_timer);
    uv_close((uv_handle_t *)&w->curl_timer, door_timer_closed);
    uv_close((uv_handle_t *)&w->commit_timer, door_timer_closed);
}
