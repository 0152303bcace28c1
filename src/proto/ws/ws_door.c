/* ws_door.c - the WebSocket door: the /v1/ws upgrade, then one session per
 * connection mapping the commands of docs/ws.md to broker operations.
 *
 * Ownership: the door keeps a list of sessions; a session owns its codec,
 * its subscriptions (broker cursors) and its pending acknowledgements, and
 * lives until its connection's on_close. When the door is freed first,
 * sessions are told (door = NULL), their subscriptions closed, and their
 * connections closed with 1001; the on_close that follows frees them.
 *
 * Flow control: the connection's high-water mark is max_unsent. A record
 * is offered to a subscription only while the connection is below it;
 * above it a normal subscription pauses (the broker cursor lags in the log)
 * and a lossy one refuses (the broker counts the skip). on_drain resumes
 * the paused ones and reports the skips as lag events. Memory per
 * connection is therefore bounded by the output cap, whatever the rate.
 */
#include "ws.h"
#include "ws_internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/rand.h>

#include "../../common/list.h"
#include "../../common/log.h"
#include "../../core/filter.h"
#include "../../net/conn.h"
#define JN_REST_PURE_ONLY
#include "../rest/rest_internal.h"

#define RENDER_MAX (64u << 20) /* one rendered record (base64 of a large value) */
#define EVENT_MAX 4096         /* one rendered control event */
#define KEEP_RENDER (1u << 20) /* render buffers larger than this are freed when the next record comes */
/* Output that the messages of one connection may fan out to before it
 * yields its input until the next loop iteration: the subscribers' output
 * is written in between, in batches of a few dozen frames per connection
 * rather than one syscall per frame or megabytes per connection. 1 MiB
 * measured best for 1,000 subscribers of 64-byte records (about 10 KB per
 * connection per iteration): the slice's output stays within the L2
 * cache until the kernel has copied it; 256 KiB costs more in syscalls,
 * 4 MiB more in cache misses. */
#define FANOUT_SLICE (1u << 20)

/* The last record rendered as JSON, kept while the broker offers it to
 * every matching subscription: a fan-out renders each record once, then
 * copies bytes per subscriber. The key is the record itself (position and
 * every byte that went into the rendering, compared on each use), so a
 * record at the same address or offset with other contents never hits. */
typedef struct ws_rcache {
    bool valid;
    const jn_stream_t *stream;
    uint32_t partition;
    int64_t offset;
    int64_t timestamp;
    int32_t key_len, value_len;
    bool key_null, value_null;
    uint32_t header_count;
    size_t subject_len;
    jn_buf_t src;           /* stream name, subject, key, value, headers as rendered */
    jn_buf_t json;          /* the event after its "sub" member (jn_ws_record_json_tail) */
} ws_rcache_t;

struct jn_ws {
    jn_httpd_t *httpd;
    jn_broker_t *broker;
    jn_auth_t *auth;
    jn_ws_config_t cfg;
    jn_ws_zctx_t *z;        /* shared zlib streams (no context takeover) */
    jn_list_t sessions;     /* ws_session_t.node */
    size_t nsessions;
    ws_rcache_t rc;         /* one record at a time: deliveries never nest */
    uint64_t fanout_bytes;  /* record frames queued by deliveries, ever */
    jn_list_t yielded;      /* ws_session_t.yield_node: reading paused until the loop's check phase */
    uv_check_t *resume;     /* resumes them (allocated on first use, freed by its close callback) */
};

typedef struct ws_session ws_session_t;

typedef struct ws_sub {
    jn_list_t node;         /* in ws_session_t.subs */
    ws_session_t *s;
    jn_sub_t *sub;
    bool binary;            /* records as binary envelopes */
    bool lossy;
    bool paused;            /* by us, for backpressure */
    uint64_t reported;      /* skips already reported in lag events */
    uint8_t *id_json;       /* the id as a JSON string, for record events */
    size_t id_json_len;
    size_t id_len;
    char id[JN_WS_ID_MAX + 1];
} ws_sub_t;

typedef struct ws_ack {
    jn_list_t node;         /* in ws_session_t.acks */
    ws_session_t *s;
    jn_durable_waiter_t w;
    char stream[JN_STREAM_NAME_MAX + 1];
    int32_t partition;
    int64_t offset;
    bool has_ref;
    char ref[JN_WS_ID_MAX + 1];
} ws_ack_t;

struct ws_session {
    jn_list_t node;         /* in jn_ws.sessions */
    jn_ws_t *door;          /* NULL once the door is freed */
    jn_conn_t *conn;
    jn_ws_codec_t *codec;
    jn_principal_t who;
    bool authed;
    bool ping_out;          /* our ping is unanswered */
    bool closing;           /* close frame queued: no more commands */
    jn_list_t subs;
    uint32_t nsubs;
    jn_list_t acks;
    uint64_t fanout_mark;   /* door->fanout_bytes when the current input slice began */
    jn_list_t yield_node;   /* in jn_ws.yielded while its reading is paused after a slice */
};

/* ---- output ---- */

static int sess_write(void *arg, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    ws_session_t *s = arg;
    return jn_ws_conn_write(s->conn, a, alen, b, blen);
}

static int sess_writev(void *arg, const struct iovec *iov, int iovcnt)
{
    ws_session_t *s = arg;
    int rc = jn_conn_writev(s->conn, iov, iovcnt);
    return rc == JN_ETOOBIG ? JN_EAGAIN : rc;
}

static int sess_random(void *arg, uint8_t *buf, size_t len)
{
    return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

/* Sends a control event (rendered by jansson: they are rare). */
static void send_event(ws_session_t *s, json_t *ev)
{
    if (!ev)
        return;
    char buf[EVENT_MAX];
    size_t n = json_dumpb(ev, buf, sizeof(buf), JSON_COMPACT);
    json_decref(ev);
    if (n == 0 || n > sizeof(buf))
        return;
    int rc = jn_ws_codec_send(s->codec, false, (const uint8_t *)buf, n);
    if (rc == JN_EAGAIN) {
        /* At the hard cap: events are small and rare, the peer is not
         * reading; the stall timer of the connection will end it. */
        jn_debug("ws: event dropped: output full");
    }
}

static void send_error(ws_session_t *s, const char *ref, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void send_error(ws_session_t *s, const char *ref, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *ev = json_pack("{s:s,s:s,s:s}", "type", "error", "code", code, "message", msg);
    if (ev && ref)
        json_object_set_new(ev, "ref", json_string(ref));
    send_event(s, ev);
}

/* Maps a core error to an error event code. */
static const char *err_code(int err, bool is_name)
{
    const char *code;
    jn_rest_error_status(err, is_name, &code);
    return code;
}

/* Starts the close handshake; the connection closes once the frame left. */
static void sess_close(ws_session_t *s, uint16_t code, const char *reason)
{
    s->closing = true;
    jn_ws_codec_close(s->codec, code, reason);
    if (jn_ws_codec_flush(s->codec) < 0 || jn_ws_codec_done(s->codec))
        jn_conn_close(s->conn);
}

/* ---- subscriptions ---- */

static void sub_free(ws_sub_t *ws)
{
    jn_list_remove(&ws->node);
    ws->s->nsubs--;
    if (ws->sub)
        jn_sub_close(ws->sub);
    free(ws->id_json);
    free(ws);
}

static ws_sub_t *sub_find(ws_session_t *s, const char *id)
{
    jn_list_t *pos;
    jn_list_foreach(pos, &s->subs) {
        ws_sub_t *ws = jn_container_of(pos, ws_sub_t, node);
        if (strcmp(ws->id, id) == 0)
            return ws;
    }
    return NULL;
}

static void report_skips(ws_sub_t *ws)
{
    uint64_t dropped = jn_sub_dropped(ws->sub);
    if (dropped <= ws->reported)
        return;
    json_t *ev = json_pack("{s:s,s:s,s:I}", "type", "lag", "sub", ws->id, "skipped",
                           (json_int_t)(dropped - ws->reported));
    ws->reported = dropped;
    send_event(ws->s, ev);
}

/* Walks the bytes a record's JSON is rendered from: appends them to |b|
 * (to remember a rendering) or compares them with what |b| holds. */
typedef struct fp {
    jn_buf_t *b;
    size_t pos;
    bool cmp;
    bool ok;
} fp_t;

static void fp_put(fp_t *f, const void *p, size_t n)
{
    if (!f->ok || n == 0)
        return;
    if (f->cmp)
        f->ok = n <= f->b->len - f->pos && memcmp(f->b->data + f->pos, p, n) == 0;
    else
        f->ok = jn_buf_append(f->b, p, n) == 0;
    f->pos += n;
}

/* Lengths are part of the key (ws_rcache_t), so the concatenation of
 * bytes is unambiguous; header lengths go in with the headers. */
static void fp_record(fp_t *f, const jn_delivery_t *d)
{
    const jn_record_t *r = d->rec;
    const char *sname = jn_stream_name(d->stream);
    fp_put(f, sname, strlen(sname) + 1);
    fp_put(f, d->subject, d->subject_len);
    if (r->key && r->key_len > 0)
        fp_put(f, r->key, (size_t)r->key_len);
    if (r->value && r->value_len > 0)
        fp_put(f, r->value, (size_t)r->value_len);
    for (uint32_t i = 0; i < r->header_count; i++) {
        const jn_header_t *h = &r->headers[i];
        bool null = !h->value || h->value_len < 0;
        fp_put(f, &h->key_len, sizeof(h->key_len));
        fp_put(f, h->key, h->key_len);
        fp_put(f, &null, sizeof(null));
        if (!null)
            fp_put(f, &h->value_len, sizeof(h->value_len));
        if (!null && h->value_len > 0)
            fp_put(f, h->value, (size_t)h->value_len);
    }
}

static bool rcache_hit(const ws_rcache_t *c, const jn_delivery_t *d)
{
    const jn_record_t *r = d->rec;
    if (!c->valid || c->stream != d->stream || c->partition != d->partition || c->offset != r->offset ||
        c->timestamp != r->timestamp || c->key_len != r->key_len || c->value_len != r->value_len ||
        c->key_null != (!r->key || r->key_len < 0) || c->value_null != (!r->value || r->value_len < 0) ||
        c->header_count != r->header_count || c->subject_len != d->subject_len)
        return false;
    fp_t f = {(jn_buf_t *)&c->src, 0, true, true};
    fp_record(&f, d);
    return f.ok && f.pos == c->src.len;
}

/* Makes door->rc.json the tail of |d|'s record event, rendering it unless
 * it already is. Returns 0 or the renderer's error. */
static int rcache_json(jn_ws_t *door, const jn_delivery_t *d)
{
    ws_rcache_t *c = &door->rc;
    if (rcache_hit(c, d))
        return 0;
    c->valid = false;
    if (c->json.cap > KEEP_RENDER)
        jn_buf_free(&c->json);
    if (c->src.cap > KEEP_RENDER)
        jn_buf_free(&c->src);
    jn_buf_reset(&c->json);
    jn_buf_reset(&c->src);
    int rc = jn_ws_record_json_tail(&c->json, d);
    if (rc < 0)
        return rc;
    fp_t f = {&c->src, 0, false, true};
    fp_record(&f, d);
    if (!f.ok)
        return 0; /* usable for this delivery, not remembered */
    const jn_record_t *r = d->rec;
    c->stream = d->stream;
    c->partition = d->partition;
    c->offset = r->offset;
    c->timestamp = r->timestamp;
    c->key_len = r->key_len;
    c->value_len = r->value_len;
    c->key_null = !r->key || r->key_len < 0;
    c->value_null = !r->value || r->value_len < 0;
    c->header_count = r->header_count;
    c->subject_len = d->subject_len;
    c->valid = true;
    return 0;
}

/* The pieces of a binary record envelope, pointing at the record where
 * it is: no rendering at all. |h| receives the fixed header. Returns the
 * number of pieces, or JN_EINVAL when the record does not fit the
 * envelope (docs/ws.md). */
static int binary_pieces(const ws_sub_t *ws, const jn_delivery_t *d, uint8_t h[JN_WS_ENV_RECORD_HDR],
                         struct iovec *iov)
{
    const char *sname = jn_stream_name(d->stream);
    const jn_record_t *r = d->rec;
    jn_ws_env_record_t e = {
        .sub = ws->id,
        .sub_len = ws->id_len,
        .stream = sname,
        .stream_len = strlen(sname),
        .subject = d->subject,
        .subject_len = d->subject_len,
        .partition = d->partition,
        .offset = r->offset,
        .timestamp = r->timestamp,
        .key = r->key_len >= 0 ? (r->key ? r->key : (const uint8_t *)"") : NULL,
        .key_len = r->key_len >= 0 ? (size_t)r->key_len : 0,
        .value = r->value_len >= 0 ? (r->value ? r->value : (const uint8_t *)"") : NULL,
        .value_len = r->value_len >= 0 ? (size_t)r->value_len : 0,
    };
    int rc = jn_ws_env_record_header(h, &e);
    if (rc < 0)
        return rc;
    iov[0] = (struct iovec){h, JN_WS_ENV_RECORD_HDR};
    iov[1] = (struct iovec){(void *)e.sub, e.sub_len};
    iov[2] = (struct iovec){(void *)e.stream, e.stream_len};
    iov[3] = (struct iovec){(void *)e.subject, e.subject_len};
    iov[4] = (struct iovec){(void *)e.key, e.key_len};
    iov[5] = (struct iovec){(void *)e.value, e.value_len};
    return 6;
}

static int sub_deliver(jn_sub_t *sub, const jn_delivery_t *d, void *arg)
{
    ws_sub_t *ws = arg;
    ws_session_t *s = ws->s;
    if (!s->door || s->closing)
        return JN_EAGAIN;
    if (jn_conn_above_high_water(s->conn)) {
        if (!ws->lossy) {
            ws->paused = true;
            jn_sub_pause(sub);
        }
        return JN_EAGAIN; /* lossy: the broker counts the skip */
    }
    if (ws->lossy)
        report_skips(ws);
    jn_ws_t *door = s->door;
    uint8_t h[JN_WS_ENV_RECORD_HDR];
    struct iovec iov[1 + JN_WS_IOV_MAX]; /* [0]: the codec's frame header */
    int n;
    if (ws->binary) {
        n = binary_pieces(ws, d, h, iov + 1);
    } else {
        n = rcache_json(door, d);
        if (n == 0) {
            static const char head[] = JN_WS_RECORD_JSON_HEAD;
            iov[1] = (struct iovec){(void *)head, sizeof(head) - 1};
            iov[2] = (struct iovec){ws->id_json, ws->id_json_len};
            iov[3] = (struct iovec){door->rc.json.data, door->rc.json.len};
            n = 3;
        }
    }
    int rc = n < 0 ? n : jn_ws_codec_sendv(s->codec, ws->binary, iov, n + 1);
    if (rc == JN_EINVAL || rc == JN_ETOOBIG || (n < 0 && rc == JN_ENOMEM)) {
        send_error(s, NULL, "payload_too_large", "record %s/%" PRIu32 "/%" PRId64 " is too large to send",
                   jn_stream_name(d->stream), d->partition, d->rec->offset);
        return 0;
    }
    if (rc == JN_EAGAIN) {
        if (jn_conn_pending(s->conn) == 0) {
            /* Does not fit even into an empty output: it never will. */
            send_error(s, NULL, "payload_too_large", "record %s/%" PRIu32 "/%" PRId64 " is too large to send",
                       jn_stream_name(d->stream), d->partition, d->rec->offset);
            return 0;
        }
        if (!ws->lossy) {
            ws->paused = true;
            jn_sub_pause(sub);
        }
        return JN_EAGAIN;
    }
    if (rc < 0)
        return JN_EAGAIN; /* closing: on_close tears down */
    for (int i = 1; i <= n; i++)
        door->fanout_bytes += iov[i].iov_len;
    return 0;
}

static void resume_all(ws_session_t *s)
{
    jn_list_t *pos;
    jn_list_foreach(pos, &s->subs) {
        ws_sub_t *ws = jn_container_of(pos, ws_sub_t, node);
        if (ws->lossy)
            report_skips(ws);
        if (ws->paused) {
            ws->paused = false;
            jn_sub_resume(ws->sub);
        }
    }
}

/* ---- commands ---- */

static bool allowed(ws_session_t *s, enum jn_perm perm, const char *what, size_t len)
{
    return s->who.admin || jn_auth_allowed(s->door->auth, &s->who, perm, what, len);
}

static void do_subscribe(ws_session_t *s, const jn_ws_cmd_t *c)
{
    jn_ws_t *door = s->door;
    if (sub_find(s, c->id)) {
        send_error(s, c->ref, "already_exists", "subscription \"%s\" exists", c->id);
        return;
    }
    if (s->nsubs >= door->cfg.max_subscriptions) {
        send_error(s, c->ref, "limit_exceeded", "at most %" PRIu32 " subscriptions per connection",
                   door->cfg.max_subscriptions);
        return;
    }
    if (!allowed(s, JN_PERM_SUBSCRIBE, c->filter, strlen(c->filter))) {
        send_error(s, c->ref, "forbidden", "%s may not subscribe to '%s'", s->who.name, c->filter);
        return;
    }
    ws_sub_t *ws = calloc(1, sizeof(*ws));
    if (!ws) {
        send_error(s, c->ref, "internal", "out of memory");
        return;
    }
    ws->s = s;
    ws->binary = c->binary;
    ws->lossy = c->lossy;
    ws->id_len = strlen(c->id);
    memcpy(ws->id, c->id, ws->id_len + 1);
    jn_buf_t idj;
    jn_buf_init(&idj, 6 * JN_WS_ID_MAX + 3);
    if (jn_rest_json_string(&idj, (const uint8_t *)ws->id, ws->id_len) < 0) {
        jn_buf_free(&idj);
        free(ws);
        send_error(s, c->ref, "internal", "out of memory");
        return;
    }
    ws->id_json = idj.data;
    ws->id_json_len = idj.len;
    jn_sub_opts_t o = {
        .filter = c->filter,
        .start = c->start,
        .start_value = c->start_value,
        .lossy = c->lossy,
        .deliver = sub_deliver,
        .arg = ws,
    };
    if (c->group) {
        o.group_default = c->start;
        o.start = JN_START_GROUP;
        o.group = c->group;
    }
    int rc = jn_broker_subscribe(door->broker, &o, &ws->sub);
    if (rc < 0) {
        free(ws->id_json);
        free(ws);
        send_error(s, c->ref, err_code(rc, rc == JN_EINVAL), "cannot subscribe to '%s': %s", c->filter,
                   jn_strerror(rc));
        return;
    }
    jn_list_insert_tail(&s->subs, &ws->node);
    s->nsubs++;
    /* Catch-up starts on a later loop iteration: "subscribed" comes first. */
    json_t *ev = json_pack("{s:s,s:s}", "type", "subscribed", "id", c->id);
    if (ev && c->ref)
        json_object_set_new(ev, "ref", json_string(c->ref));
    send_event(s, ev);
}

static void do_unsubscribe(ws_session_t *s, const jn_ws_cmd_t *c)
{
    ws_sub_t *ws = sub_find(s, c->id);
    if (!ws) {
        send_error(s, c->ref, "not_found", "no subscription \"%s\"", c->id);
        return;
    }
    sub_free(ws);
    json_t *ev = json_pack("{s:s,s:s}", "type", "unsubscribed", "id", c->id);
    if (ev && c->ref)
        json_object_set_new(ev, "ref", json_string(c->ref));
    send_event(s, ev);
}

static void ack_fired(jn_durable_waiter_t *w, int status)
{
    ws_ack_t *a = jn_container_of(w, ws_ack_t, w);
    ws_session_t *s = a->s;
    jn_list_remove(&a->node);
    if (status < 0) {
        send_error(s, a->has_ref ? a->ref : NULL, "internal", "the record was appended but is not durable");
    } else {
        json_t *ev = json_pack("{s:s,s:s,s:i,s:I}", "type", "ack", "stream", a->stream, "partition",
                               (int)a->partition, "offset", (json_int_t)a->offset);
        if (ev && a->has_ref)
            json_object_set_new(ev, "ref", json_string(a->ref));
        send_event(s, ev);
    }
    free(a);
}

/* Publishes one record and, when asked, acknowledges it once durable. */
static void publish(ws_session_t *s, const char *subject, size_t subject_len, const jn_record_t *rec,
                    int32_t partition, bool ack, const char *ref)
{
    jn_ws_t *door = s->door;
    if (subject_len > JN_SUBJECT_MAX || jn_subject_validate(subject, subject_len) < 0) {
        send_error(s, ref, "invalid_name", "invalid subject");
        return;
    }
    if (!allowed(s, JN_PERM_PUBLISH, subject, subject_len)) {
        send_error(s, ref, "forbidden", "%s may not publish to '%.*s'", s->who.name, (int)subject_len, subject);
        return;
    }
    jn_publish_result_t res;
    int rc = jn_broker_publish(door->broker, subject, subject_len, rec, 1, partition, &res);
    if (rc < 0) {
        send_error(s, ref, err_code(rc, rc == JN_EINVAL), "cannot publish: %s", jn_strerror(rc));
        return;
    }
    if (!ack)
        return;
    ws_ack_t *a = calloc(1, sizeof(*a));
    if (!a) {
        send_error(s, ref, "internal", "out of memory (the record was published)");
        return;
    }
    a->s = s;
    snprintf(a->stream, sizeof(a->stream), "%s", jn_stream_name(res.stream));
    a->partition = res.partition;
    a->offset = res.offset;
    if (ref) {
        a->has_ref = true;
        snprintf(a->ref, sizeof(a->ref), "%s", ref);
    }
    jn_list_insert_tail(&s->acks, &a->node);
    jn_broker_wait_durable(door->broker, res.stream, (uint32_t)res.partition, res.offset, &a->w, ack_fired);
}

static void do_commit(ws_session_t *s, const jn_ws_cmd_t *c)
{
    jn_ws_t *door = s->door;
    jn_stream_t *st = jn_broker_stream_find(door->broker, c->stream, strlen(c->stream));
    if (!st) {
        send_error(s, c->ref, "not_found", "stream '%s' does not exist", c->stream);
        return;
    }
    if ((uint32_t)c->partition >= jn_stream_partitions(st)) {
        send_error(s, c->ref, "bad_request", "stream '%s' has no partition %" PRId32, c->stream, c->partition);
        return;
    }
    int rc = jn_broker_group_commit(door->broker, c->group, st, (uint32_t)c->partition, c->offset, c->metadata);
    if (rc < 0) {
        send_error(s, c->ref, err_code(rc, rc == JN_EINVAL), "cannot commit: %s", jn_strerror(rc));
        return;
    }
    json_t *ev = json_pack("{s:s,s:s,s:s,s:i,s:I}", "type", "committed", "group", c->group, "stream", c->stream,
                           "partition", (int)c->partition, "offset", (json_int_t)c->offset);
    if (ev && c->ref)
        json_object_set_new(ev, "ref", json_string(c->ref));
    send_event(s, ev);
}

static void do_auth(ws_session_t *s, const jn_ws_cmd_t *c)
{
    jn_principal_t p;
    if (jn_auth_check_token(s->door->auth, c->token, &p) < 0) {
        send_error(s, c->ref, "unauthorized", "invalid token");
        sess_close(s, JN_WS_CLOSE_POLICY, "invalid token");
        return;
    }
    s->who = p;
    s->authed = true;
    jn_conn_set_timeout(s->conn, s->door->cfg.idle_timeout_ms);
    json_t *ev = json_pack("{s:s,s:s}", "type", "authenticated", "user", p.name);
    if (ev && c->ref)
        json_object_set_new(ev, "ref", json_string(c->ref));
    send_event(s, ev);
}

static void on_text(ws_session_t *s, const uint8_t *p, size_t len)
{
    jn_ws_cmd_t c;
    const char *code = "bad_request";
    char err[256];
    int rc = jn_ws_cmd_parse(p, len, &c, &code, err, sizeof(err));
    if (rc < 0) {
        send_error(s, c.ref, code, "%s", err);
        goto done;
    }
    if (!s->authed && c.op != JN_WS_OP_AUTH) {
        send_error(s, c.ref, "unauthorized", "authenticate first: {\"op\":\"auth\",\"token\":...}");
        goto done;
    }
    switch (c.op) {
    case JN_WS_OP_SUBSCRIBE: do_subscribe(s, &c); break;
    case JN_WS_OP_UNSUBSCRIBE: do_unsubscribe(s, &c); break;
    case JN_WS_OP_PUBLISH:
        publish(s, c.subject, c.subject_len, &c.rec, c.partition, c.ack, c.ref);
        break;
    case JN_WS_OP_COMMIT: do_commit(s, &c); break;
    case JN_WS_OP_AUTH: do_auth(s, &c); break;
    case JN_WS_OP_PING: {
        json_t *ev = json_pack("{s:s}", "type", "pong");
        if (ev && c.ref)
            json_object_set_new(ev, "ref", json_string(c.ref));
        send_event(s, ev);
        break;
    }
    }
done:
    jn_ws_cmd_free(&c);
}

static void on_binary(ws_session_t *s, const uint8_t *p, size_t len)
{
    jn_ws_env_publish_t e;
    if (jn_ws_env_publish_decode(p, len, &e) < 0) {
        send_error(s, NULL, "bad_request", "malformed binary envelope");
        return;
    }
    char ref[JN_WS_ID_MAX + 1];
    const char *refp = NULL;
    if (e.ref_len) {
        size_t n = e.ref_len < JN_WS_ID_MAX ? e.ref_len : JN_WS_ID_MAX;
        memcpy(ref, e.ref, n);
        ref[n] = '\0';
        refp = ref;
    }
    if (!s->authed) {
        send_error(s, refp, "unauthorized", "authenticate first");
        return;
    }
    if (e.value_len > INT32_MAX || e.key_len > INT32_MAX) {
        send_error(s, refp, "payload_too_large", "record too large");
        return;
    }
    jn_record_t rec = {
        .key = e.key,
        .key_len = e.key ? (int32_t)e.key_len : -1,
        .value = e.value,
        .value_len = e.value ? (int32_t)e.value_len : -1,
    };
    publish(s, e.subject, e.subject_len, &rec, -1, e.flags & JN_WS_ENV_F_ACK, refp);
}

static void codec_message(void *arg, bool binary, const uint8_t *p, size_t len)
{
    ws_session_t *s = arg;
    if (s->closing || !s->door)
        return;
    if (binary)
        on_binary(s, p, len);
    else
        on_text(s, p, len);
    if (s->door && s->door->fanout_bytes - s->fanout_mark >= FANOUT_SLICE)
        jn_ws_codec_yield(s->codec);
}

static void codec_pong(void *arg)
{
    ws_session_t *s = arg;
    s->ping_out = false;
}

/* ---- the connection ---- */

/* After the poll phase of the loop iteration in which sessions yielded:
 * their input is offered again from the next iteration, after the output
 * their slice produced has been flushed (the connection layer flushes in
 * scheduling order). Resuming only here, not inside on_data, also keeps
 * libuv's read loop from handing the same connection its next reads (and
 * with them the next slices) in the same iteration. */
static void on_resume(uv_check_t *h)
{
    jn_ws_t *door = h->data;
    while (!jn_list_empty(&door->yielded)) {
        ws_session_t *s = jn_container_of(door->yielded.next, ws_session_t, yield_node);
        jn_list_remove(&s->yield_node);
        jn_conn_resume_reading(s->conn);
    }
    uv_check_stop(h);
}

/* Pauses |s|'s input until on_resume. Returns false when that cannot be
 * arranged (no memory for the check handle): the caller then takes all
 * input at once, as before yielding existed. */
static bool sess_yield(ws_session_t *s)
{
    jn_ws_t *door = s->door;
    if (!door->resume) {
        door->resume = malloc(sizeof(*door->resume));
        if (!door->resume)
            return false;
        uv_check_init(jn_conn_loop(s->conn), door->resume);
        door->resume->data = door;
    }
    if (!jn_list_linked(&s->yield_node))
        jn_list_insert_tail(&door->yielded, &s->yield_node);
    uv_check_start(door->resume, on_resume);
    jn_conn_pause_reading(s->conn);
    return true;
}

static void sess_free(ws_session_t *s)
{
    jn_list_t *pos, *tmp;
    jn_list_foreach_safe(pos, tmp, &s->subs) sub_free(jn_container_of(pos, ws_sub_t, node));
    jn_list_foreach_safe(pos, tmp, &s->acks) {
        ws_ack_t *a = jn_container_of(pos, ws_ack_t, node);
        jn_plog_cancel_durable(&a->w);
        jn_list_remove(&a->node);
        free(a);
    }
    if (s->door) {
        jn_list_remove(&s->node);
        s->door->nsessions--;
    }
    if (jn_list_linked(&s->yield_node))
        jn_list_remove(&s->yield_node);
    jn_ws_codec_free(s->codec);
    free(s);
}

static size_t conn_data(jn_conn_t *conn, const uint8_t *data, size_t len)
{
    ws_session_t *s = jn_conn_ctx(conn);
    if (s->authed && !s->closing && s->door)
        jn_conn_set_timeout(conn, s->door->cfg.idle_timeout_ms);
    s->ping_out = false;
    s->fanout_mark = s->door ? s->door->fanout_bytes : 0;
    size_t used;
    int rc = s->door ? jn_ws_codec_feed_some(s->codec, data, len, &used) : jn_ws_codec_feed(s->codec, data, len);
    if (rc < 0) {
        jn_conn_abort(conn);
        return len;
    }
    if (jn_ws_codec_done(s->codec)) {
        s->closing = true;
        jn_conn_close(conn);
        return len;
    }
    /* Yielded after a large fan-out: the rest waits for the next loop
     * iteration, after the subscribers' output has been written. */
    if (s->door && used < len && sess_yield(s))
        return used;
    if (used < len && jn_ws_codec_feed(s->codec, data + used, len - used) < 0)
        jn_conn_abort(conn);
    return len;
}

static void conn_drain(jn_conn_t *conn)
{
    ws_session_t *s = jn_conn_ctx(conn);
    if (jn_ws_codec_flush(s->codec) < 0) {
        jn_conn_abort(conn);
        return;
    }
    if (jn_ws_codec_done(s->codec)) {
        jn_conn_close(conn);
        return;
    }
    if (!s->closing && s->door)
        resume_all(s);
}

static void conn_timeout(jn_conn_t *conn)
{
    ws_session_t *s = jn_conn_ctx(conn);
    if (s->closing || !s->door) {
        jn_conn_abort(conn);
        return;
    }
    if (!s->authed) {
        sess_close(s, JN_WS_CLOSE_POLICY, "authentication timeout");
        jn_conn_set_timeout(conn, 2000);
        return;
    }
    if (s->ping_out) {
        sess_close(s, JN_WS_CLOSE_GOING_AWAY, "idle timeout");
        jn_conn_set_timeout(conn, 2000);
        return;
    }
    s->ping_out = true;
    if (jn_ws_codec_ping(s->codec, (const uint8_t *)"jn", 2) < 0) {
        jn_conn_abort(conn);
        return;
    }
    jn_conn_set_timeout(conn, s->door->cfg.idle_timeout_ms);
}

static void conn_closed(jn_conn_t *conn, int reason)
{
    sess_free(jn_conn_ctx(conn));
}

static const jn_conn_handler_t ws_handler = {
    .on_data = conn_data,
    .on_drain = conn_drain,
    .on_close = conn_closed,
    .on_timeout = conn_timeout,
};

/* ---- the upgrade ---- */

static const char *req_header(void *arg, const char *name, size_t *len)
{
    return jn_http_req_header(arg, name, len);
}

/* Finds the credentials of the upgrade: ?token=, the bearer.<token>
 * subprotocol, or an Authorization: Bearer header. Returns 1 and fills
 * |p|, 0 when there are none, -1 when they are wrong. */
static int upgrade_auth(jn_ws_t *door, jn_http_req_t *req, const jn_ws_handshake_t *hs, jn_principal_t *p)
{
    char tok[JN_WS_TOKEN_MAX + 1];
    const char *t = NULL;
    int n = jn_http_req_query(req, "token", tok, sizeof(tok));
    if (n > 0)
        t = tok;
    else if (n != JN_ENOENT)
        return -1;
    if (!t && hs->token[0])
        t = hs->token;
    size_t hl;
    const char *h = jn_http_req_header(req, "Authorization", &hl);
    if (!t && h) {
        if (hl <= 7 || hl - 7 > JN_WS_TOKEN_MAX || strncasecmp(h, "Bearer ", 7) != 0)
            return -1;
        memcpy(tok, h + 7, hl - 7);
        tok[hl - 7] = '\0';
        t = tok;
    }
    if (!t)
        return 0;
    return jn_auth_check_token(door->auth, t, p) == 0 ? 1 : -1;
}

static void ws_upgrade(jn_http_req_t *req, void *arg)
{
    jn_ws_t *door = arg;
    const jn_http_request_t *head = jn_http_req_head(req);
    jn_ws_handshake_t hs;
    char method[16];
    snprintf(method, sizeof(method), "%.*s", (int)head->method_len, head->method);
    if (jn_ws_handshake_check(method, req_header, req, door->cfg.deflate, &hs) < 0) {
        if (hs.status == 426 && jn_http_add_header(req, "Sec-WebSocket-Version", "13") < 0)
            jn_debug("ws: cannot add Sec-WebSocket-Version");
        jn_http_respond_error(req, hs.status, hs.status == 426 ? "upgrade_required" : "bad_request", "%s",
                              hs.error);
        return;
    }
    jn_principal_t who;
    int a = upgrade_auth(door, req, &hs, &who);
    if (a < 0) {
        if (jn_http_add_header(req, "WWW-Authenticate", "Bearer") < 0)
            jn_debug("ws: cannot add WWW-Authenticate");
        jn_http_respond_error(req, 401, "unauthorized", "invalid token");
        return;
    }
    bool authed = a > 0;
    if (!authed && door->cfg.allow_anonymous) {
        jn_principal_anonymous(&who);
        authed = true;
    }
    ws_session_t *s = calloc(1, sizeof(*s));
    if (!s) {
        jn_http_respond_error(req, 503, "unavailable", "out of memory");
        return;
    }
    jn_ws_codec_config_t cc = {
        .max_message = door->cfg.max_message,
        .pmd = hs.pmd,
        .z = door->z,
        .compress_min = door->cfg.compress_min,
    };
    jn_ws_codec_cb_t cb = {
        .message = codec_message,
        .pong = codec_pong,
        .write = sess_write,
        .random = sess_random,
        .writev = sess_writev,
    };
    if (jn_ws_codec_new(&cc, &cb, s, &s->codec) < 0) {
        free(s);
        jn_http_respond_error(req, 503, "unavailable", "out of memory");
        return;
    }
    char extra[512];
    int n = jn_ws_upgrade_headers(&hs, extra, sizeof(extra));
    jn_conn_t *conn = n > 0 ? jn_http_upgrade(req, extra) : NULL;
    if (!conn) {
        /* The request still waits for an answer. */
        jn_ws_codec_free(s->codec);
        free(s);
        jn_http_respond_error(req, 503, "unavailable", "cannot switch protocols now");
        return;
    }
    s->door = door;
    s->conn = conn;
    s->who = who;
    s->authed = authed;
    jn_list_init(&s->subs);
    jn_list_init(&s->acks);
    jn_list_init(&s->yield_node);
    jn_list_insert_tail(&door->sessions, &s->node);
    door->nsessions++;
    size_t out_max = 2 * door->cfg.max_unsent + 2 * door->cfg.max_message + 4096;
    jn_conn_set_limits(conn, door->cfg.max_message + 65536, door->cfg.max_unsent, out_max);
    jn_conn_set_handler(conn, &ws_handler, s);
    jn_conn_set_timeout(conn, authed ? door->cfg.idle_timeout_ms : door->cfg.auth_timeout_ms);
}

/* ---- the door ---- */

void jn_ws_config_default(jn_ws_config_t *c)
{
    memset(c, 0, sizeof(*c));
    c->max_message = 1u << 20;
    c->max_unsent = 1u << 20;
    c->idle_timeout_ms = 30000;
    c->auth_timeout_ms = 10000;
    c->max_subscriptions = 256;
    c->deflate = true;
    c->compress_min = 256;
}

jn_ws_t *jn_ws_new(jn_httpd_t *httpd, jn_broker_t *broker, const jn_ws_config_t *cfg)
{
    jn_ws_t *door = calloc(1, sizeof(*door));
    if (!door)
        return NULL;
    if (cfg)
        door->cfg = *cfg;
    else
        jn_ws_config_default(&door->cfg);
    jn_ws_config_t d;
    jn_ws_config_default(&d);
#define DEF(f)                                                                                             \
    if (!door->cfg.f)                                                                                      \
        door->cfg.f = d.f;
    DEF(max_message) DEF(max_unsent) DEF(idle_timeout_ms) DEF(auth_timeout_ms) DEF(max_subscriptions)
    DEF(compress_min)
#undef DEF
    door->httpd = httpd;
    door->broker = broker;
    door->auth = jn_broker_auth(broker);
    jn_list_init(&door->sessions);
    jn_list_init(&door->yielded);
    jn_buf_init(&door->rc.json, RENDER_MAX);
    jn_buf_init(&door->rc.src, RENDER_MAX);
    door->z = jn_ws_zctx_new();
    if (!door->z)
        goto fail;
    int rc = jn_httpd_route(httpd, "GET", "/v1/ws", ws_upgrade, door);
    if (rc < 0) {
        jn_error("ws: cannot register GET /v1/ws: %s", jn_strerror(rc));
        goto fail;
    }
    return door;
fail:
    jn_ws_zctx_free(door->z);
    free(door);
    return NULL;
}

static void orphan_closed(jn_conn_t *conn, int reason)
{
    sess_free(jn_conn_ctx(conn));
}

static size_t orphan_data(jn_conn_t *conn, const uint8_t *data, size_t len)
{
    return len;
}

/* After the door is gone: nothing but the final close. */
static const jn_conn_handler_t orphan_handler = {
    .on_data = orphan_data,
    .on_close = orphan_closed,
};

static void resume_closed(uv_handle_t *h)
{
    free(h);
}

void jn_ws_free(jn_ws_t *door)
{
    if (!door)
        return;
    while (!jn_list_empty(&door->yielded))
        jn_list_remove(door->yielded.next);
    if (door->resume)
        uv_close((uv_handle_t *)door->resume, resume_closed);
    jn_list_t *pos, *tmp;
    jn_list_foreach_safe(pos, tmp, &door->sessions) {
        ws_session_t *s = jn_container_of(pos, ws_session_t, node);
        jn_list_remove(&s->node);
        s->door = NULL;
        jn_list_t *p2, *t2;
        jn_list_foreach_safe(p2, t2, &s->subs) sub_free(jn_container_of(p2, ws_sub_t, node));
        jn_list_foreach_safe(p2, t2, &s->acks) {
            ws_ack_t *a = jn_container_of(p2, ws_ack_t, node);
            jn_plog_cancel_durable(&a->w);
            jn_list_remove(&a->node);
            free(a);
        }
        /* The codec lives on until on_close: its close frame is queued. */
        s->closing = true;
        jn_ws_codec_close(s->codec, JN_WS_CLOSE_GOING_AWAY, "server shutting down");
        (void)jn_ws_codec_flush(s->codec);
        jn_conn_set_handler(s->conn, &orphan_handler, s);
        jn_conn_close(s->conn);
    }
    jn_ws_zctx_free(door->z);
    jn_buf_free(&door->rc.json);
    jn_buf_free(&door->rc.src);
    free(door);
}

size_t jn_ws_connections(const jn_ws_t *ws)
{
    return ws->nsessions;
}
