/* door_ws.c - the `ws` door of the bench: --subscribers WebSocket
 * connections to Junction's /v1/ws (docs/ws.md), each subscribed live to
 * one subject with "format":"binary", and --publishers WebSocket
 * connections publishing to that subject with the binary envelope (type
 * 0x01), so the payload and its stamp travel as raw bytes both ways: a JSON
 * string would need base64 and the stamp's binary would not survive as
 * text. Fan-out 1→N is --publishers 1 --subscribers N.
 *
 * Our own client side of RFC 6455: an HTTP/1.1 upgrade offering the
 * subprotocol junction.v1 and no extensions (no compression, so frames are
 * read as sent), masked client frames, pings answered with pongs. Server
 * messages must not be fragmented (Junction sends each event in one frame).
 *
 * Accounting: every message is expected once per subscriber; with --ack
 * publishers ask for an ack (flag 1) and keep at most --inflight
 * unacknowledged. With --window W publishers pause while more than W
 * messages per subscriber are published and not yet delivered (closed
 * loop): a flat-out fan-out then measures the rate the server sustains,
 * without losses at the end and with latency bounded by the window,
 * whether the server lags in its log (Junction) or blocks the publisher's
 * socket (a broadcast server). */
#include "bench/bench_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/stamp.h"
#include "common/clock.h"

#define WS_BATCH 65536            /* bytes queued per write when flat out */
#define WS_OUT_EXTRA (1u << 20)
#define WS_HEAD_MAX 8192          /* handshake response */
#define WS_SUBJECT_MAX 1024

enum { OP_CONT = 0, OP_TEXT = 1, OP_BIN = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };

typedef struct ws_cfg {
    int publishers;      /* --publishers */
    int subscribers;     /* --subscribers */
    const char *subject; /* --subject */
    double rate;         /* --rate per publisher, 0 = flat out */
    bool ack;            /* --ack */
    int inflight;        /* --inflight with --ack */
    const char *token;   /* --token */
    int window;          /* --window: messages per subscriber in flight, 0 = unbounded */
} ws_cfg_t;

typedef struct ws_door ws_door_t;

typedef struct wconn {
    jn_bclient_t cl;     /* first; inflight: unacknowledged with --ack */
    ws_door_t *d;
    bool upgraded;
    uint32_t mask_state; /* xorshift for masking keys */
} wconn_t;

struct ws_door {
    jn_bench_t *b;
    const ws_cfg_t *cfg;
    jn_bfleet_t fleet;   /* over conns */
    wconn_t *conns;
    uint8_t *payload;
    uint64_t seq;
    size_t subject_len;
    size_t in_max;
    bool window_blocked; /* a publisher stopped at --window */
};

/* ---- frames out -------------------------------------------------------- */

static uint32_t next_mask(wconn_t *w)
{
    uint32_t x = w->mask_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return w->mask_state = x ? x : 0x9e3779b9u;
}

/* Appends a masked frame made of |a| then |b| (either may be empty). */
static int put_frame(wconn_t *w, int op, const void *a, size_t alen, const void *bp, size_t blen)
{
    jn_buf_t *o = &w->cl.c.out;
    size_t n = alen + blen;
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = (uint8_t)(0x80 | op);
    if (n < 126) {
        h[hl++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        h[hl++] = 0x80 | 126;
        jn_store_be16(h + hl, (uint16_t)n);
        hl += 2;
    } else {
        h[hl++] = 0x80 | 127;
        jn_store_be64(h + hl, n);
        hl += 8;
    }
    uint8_t key[4];
    jn_store_be32(key, next_mask(w));
    memcpy(h + hl, key, 4);
    hl += 4;
    int rc = jn_buf_reserve(o, hl + n);
    if (rc < 0)
        return rc;
    memcpy(o->data + o->len, h, hl);
    uint8_t *dst = o->data + o->len + hl;
    if (alen)
        memcpy(dst, a, alen);
    if (blen)
        memcpy(dst + alen, bp, blen);
    for (size_t i = 0; i < n; i++)
        dst[i] ^= key[i & 3];
    o->len += hl + n;
    return 0;
}

static int send_upgrade(wconn_t *w)
{
    jn_bench_t *b = w->d->b;
    uint8_t raw[16];
    for (int i = 0; i < 16; i += 4)
        jn_store_be32(raw + i, next_mask(w));
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char key[25];
    size_t k = 0;
    for (int i = 0; i < 15; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        key[k++] = b64[v >> 18 & 63];
        key[k++] = b64[v >> 12 & 63];
        key[k++] = b64[v >> 6 & 63];
        key[k++] = b64[v & 63];
    }
    key[k++] = b64[raw[15] >> 2];
    key[k++] = b64[(raw[15] & 3) << 4];
    key[k++] = '=';
    key[k++] = '=';
    key[k] = 0;
    const char *tok = w->d->cfg->token;
    return jn_buf_printf(&w->cl.c.out,
                         "GET %s%s%s%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                         "Sec-WebSocket-Protocol: junction.v1\r\n\r\n",
                         b->path, tok ? (strchr(b->path, '?') ? "&" : "?") : "", tok ? "token=" : "",
                         tok ? tok : "", b->host, b->port, key);
}

static int send_subscribe(wconn_t *w)
{
    const ws_cfg_t *cfg = w->d->cfg;
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "op", "subscribe", "id", "b", "filter", cfg->subject,
                          "from", "live", "format", "binary");
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s)
        return JN_ENOMEM;
    int rc = put_frame(w, OP_TEXT, s, strlen(s), NULL, 0);
    free(s);
    return rc;
}

static void pub_fill(jn_bclient_t *k)
{
    wconn_t *w = k->c.owner;
    ws_door_t *d = w->d;
    jn_bench_t *b = d->b;
    const ws_cfg_t *cfg = d->cfg;
    if (!w->cl.ready || w->cl.dead || !w->cl.c.connected || b->phase != JN_BENCH_RUNNING)
        return;
    size_t size = (size_t)b->o->size;
    uint64_t allowed = jn__bclient_allowance(k, cfg->rate);
    uint64_t window = (uint64_t)cfg->window * (uint64_t)cfg->subscribers;
    while (allowed > 0 && w->cl.c.out.len < WS_BATCH) {
        if (cfg->ack && w->cl.inflight >= (uint32_t)cfg->inflight)
            break;
        if (window && b->expected - b->delivered >= window) {
            d->window_blocked = true;
            break;
        }
        if (!jn__bench_take(b))
            break;
        /* Envelope: type, flags, ref length, 0, subject length, key length,
         * ref, subject; then the value. */
        uint8_t env[8 + 1 + WS_SUBJECT_MAX];
        size_t el = 0;
        env[el++] = 0x01;
        env[el++] = cfg->ack ? 1 : 0;
        env[el++] = cfg->ack ? 1 : 0;
        env[el++] = 0;
        jn_store_be16(env + el, (uint16_t)d->subject_len);
        el += 2;
        jn_store_be16(env + el, 0);
        el += 2;
        if (cfg->ack)
            env[el++] = 'a';
        memcpy(env + el, cfg->subject, d->subject_len);
        el += d->subject_len;
        if (jn_stamp_write(d->payload, size, (uint32_t)d->seq, jn_mono_ns()) < 0 ||
            put_frame(w, OP_BIN, env, el, d->payload, size) < 0) {
            b->errors++;
            break;
        }
        d->seq++;
        w->cl.published++;
        allowed--;
        if (cfg->ack)
            w->cl.inflight++;
        b->sent++;
        b->sent_bytes += size;
        b->expected += (uint64_t)cfg->subscribers;
    }
    jn__bconn_flush(&w->cl.c);
}

/* ---- frames in --------------------------------------------------------- */

static int on_text(wconn_t *w, const uint8_t *p, size_t n)
{
    jn_bench_t *b = w->d->b;
    json_error_t je;
    json_t *j = json_loadb((const char *)p, n, 0, &je);
    const char *type = j ? json_string_value(json_object_get(j, "type")) : NULL;
    int rc = 0;
    if (!type) {
        rc = JN_EPROTO;
    } else if (strcmp(type, "subscribed") == 0 && !w->cl.is_pub) {
        jn__bclient_ready(&w->cl);
    } else if (strcmp(type, "ack") == 0 && w->cl.is_pub && w->cl.inflight) {
        w->cl.inflight--;
        b->acked++;
    } else if (strcmp(type, "error") == 0) {
        const char *msg = json_string_value(json_object_get(j, "message"));
        const char *code = json_string_value(json_object_get(j, "code"));
        if (b->phase == JN_BENCH_CONNECTING) {
            jn__bench_fail(b, "the server refused: %s: %s", code ? code : "?", msg ? msg : "");
            rc = JN_EPERM;
        } else {
            b->errors++;
            if (w->cl.is_pub && w->d->cfg->ack && w->cl.inflight)
                w->cl.inflight--; /* a refused publish is not acked */
        }
    } else if (strcmp(type, "lag") == 0) {
        b->errors++; /* records skipped: they show as lost */
    }
    json_decref(j);
    return rc;
}

static int on_binary(wconn_t *w, const uint8_t *p, size_t n, uint64_t now)
{
    jn_bench_t *b = w->d->b;
    if (w->cl.is_pub || n < 28 || p[0] != 0x02) {
        b->errors++;
        return 0;
    }
    size_t off = 28 + (size_t)p[2] + p[3] + jn_load_be16(p + 4) + jn_load_be16(p + 6);
    uint64_t ns;
    if (off > n || jn_stamp_read(p + off, n - off, NULL, &ns) < 0) {
        b->errors++;
        return 0;
    }
    jn__bench_delivered(b, n - off, now > ns ? now - ns : 0);
    return 0;
}

/* Deliveries came in: publishers stopped at --window may go on once half
 * of the window has drained (not after every delivery: in batches). */
static void window_check(ws_door_t *d)
{
    jn_bench_t *b = d->b;
    uint64_t window = (uint64_t)d->cfg->window * (uint64_t)d->cfg->subscribers;
    if (!d->window_blocked || b->expected - b->delivered > window / 2)
        return;
    d->window_blocked = false;
    for (int i = 0; i < d->cfg->publishers; i++)
        pub_fill(&d->conns[i].cl);
}

static int on_handshake(wconn_t *w, size_t *used)
{
    jn_bench_t *b = w->d->b;
    jn_buf_t *in = &w->cl.c.in;
    const uint8_t *end = memmem(in->data, in->len, "\r\n\r\n", 4);
    if (!end)
        return in->len > WS_HEAD_MAX ? JN_ETOOBIG : 0;
    size_t hl = (size_t)(end - in->data) + 4;
    const uint8_t *eol = memmem(in->data, hl, "\r\n", 2);
    if (hl < 12 || memcmp(in->data, "HTTP/1.1 101", 12) != 0) {
        jn__bench_fail(b, "no WebSocket upgrade at %s:%d%s: %.*s", b->host, b->port, b->path,
                       (int)(eol - in->data), (const char *)in->data);
        return JN_EPROTO;
    }
    w->upgraded = true;
    *used = hl;
    if (w->cl.is_pub) {
        jn__bclient_ready(&w->cl);
        return 0;
    }
    return send_subscribe(w);
}

static int on_data(jn_bconn_t *c)
{
    wconn_t *w = c->owner;
    ws_door_t *d = w->d;
    int rc = 0;
    size_t off = 0;
    /* One clock read per read: the frames of one read arrived together. */
    uint64_t now = jn_mono_ns();
    if (!w->upgraded) {
        rc = on_handshake(w, &off);
        if (rc < 0)
            return rc;
        if (!w->upgraded)
            return 0;
    }
    while (c->in.len - off >= 2) {
        const uint8_t *p = c->in.data + off;
        size_t avail = c->in.len - off;
        int op = p[0] & 0x0f;
        bool fin = p[0] & 0x80;
        if ((p[0] & 0x70) || (p[1] & 0x80) || !fin || op == OP_CONT) {
            rc = JN_EPROTO; /* reserved bits, a masked or fragmented server frame */
            break;
        }
        size_t hl = 2;
        uint64_t n = p[1] & 0x7f;
        if (n == 126) {
            if (avail < 4)
                break;
            n = jn_load_be16(p + 2);
            hl = 4;
        } else if (n == 127) {
            if (avail < 10)
                break;
            n = jn_load_be64(p + 2);
            hl = 10;
        }
        if (n > d->in_max - JN_BENCH_READ_CHUNK) {
            rc = JN_ETOOBIG;
            break;
        }
        if (avail < hl + n)
            break;
        const uint8_t *pl = p + hl;
        if (op == OP_TEXT)
            rc = on_text(w, pl, (size_t)n);
        else if (op == OP_BIN)
            rc = on_binary(w, pl, (size_t)n, now);
        else if (op == OP_PING)
            rc = put_frame(w, OP_PONG, pl, (size_t)n, NULL, 0);
        else if (op == OP_CLOSE)
            rc = JN_ECLOSED;
        if (rc < 0)
            break;
        off += hl + (size_t)n;
    }
    if (rc >= 0 && !w->cl.is_pub && d->window_blocked)
        window_check(d);
    return jn__bclient_parsed(&w->cl, off, rc);
}

static void on_connect(jn_bconn_t *c)
{
    if (send_upgrade(c->owner) < 0)
        jn__bconn_close(c, JN_ENOMEM);
}

static const jn_bfleet_kind_t ws_kind = {
    .door = "ws",
    .pub = "publisher",
    .sub = "subscriber",
    .malformed = "the server sent a malformed or unexpected frame",
    .too_big = "frame larger than expected",
    .closed = "the server sent a close frame",
    .on_connect = on_connect,
    .on_data = on_data,
    .fill = pub_fill,
};

/* ---- the door ---------------------------------------------------------- */

static void ws_defaults(void *cfg)
{
    ws_cfg_t *c = cfg;
    c->publishers = 1;
    c->subscribers = 1;
    c->subject = "bench/ws";
    c->rate = 0;
    c->ack = false;
    c->inflight = 1000;
    c->token = NULL;
    c->window = 0;
}

static int ws_check(const jn_bench_opts_t *o, char *err, size_t errlen)
{
    const ws_cfg_t *c = o->cfg;
    if (strlen(c->subject) > WS_SUBJECT_MAX - 1 || strpbrk(c->subject, "+#*> ")) {
        snprintf(err, errlen, "--subject must be a subject (no wildcards) of at most %d bytes", WS_SUBJECT_MAX - 1);
        return -1;
    }
    if (c->token && strpbrk(c->token, " \r\n&#")) {
        snprintf(err, errlen, "--token has characters a URL query cannot carry");
        return -1;
    }
    return 0;
}

static int ws_open(jn_bench_t *b)
{
    const ws_cfg_t *cfg = b->cfg;
    ws_door_t *d = calloc(1, sizeof(*d));
    if (!d)
        goto nomem;
    b->door_state = d;
    b->has_loss = cfg->subscribers > 0;
    d->b = b;
    d->cfg = cfg;
    d->subject_len = strlen(cfg->subject);
    if (strcmp(b->path, "/") == 0)
        snprintf(b->path, sizeof(b->path), "/v1/ws");
    size_t size = (size_t)b->o->size;
    d->payload = malloc(size);
    d->conns = calloc((size_t)cfg->publishers + (size_t)cfg->subscribers, sizeof(*d->conns));
    if (!d->payload || !d->conns || jn_stamp_fill(d->payload, size, 0, 0) < 0)
        goto nomem;
    /* A record frame: header, ids, stream and subject, then the value. */
    d->in_max = size + 2 * WS_SUBJECT_MAX + 512 + JN_BENCH_READ_CHUNK;
    if (d->in_max < 2 * JN_BENCH_READ_CHUNK)
        d->in_max = 2 * JN_BENCH_READ_CHUNK;
    size_t out_max = WS_BATCH + size + WS_SUBJECT_MAX + 64 + WS_OUT_EXTRA;
    jn__bfleet_init(&d->fleet, b, &ws_kind, d->conns, sizeof(*d->conns), cfg->publishers, cfg->subscribers,
                    d->in_max, out_max);
    if (cfg->rate > 0)
        jn__bfleet_pace(&d->fleet);
    uint32_t seed = (uint32_t)jn_mono_ns() ^ (uint32_t)getpid() << 16;
    for (int i = 0; i < d->fleet.nconns; i++) {
        wconn_t *w = &d->conns[i];
        w->d = d;
        w->mask_state = seed + (uint32_t)i * 2654435761u;
    }
    return jn__bfleet_connect(&d->fleet);
nomem:
    jn__bench_fail(b, "out of memory");
    return JN_ENOMEM;
}

static void ws_start(jn_bench_t *b) { jn__bfleet_start(&((ws_door_t *)b->door_state)->fleet); }
static void ws_drain(jn_bench_t *b) { jn__bfleet_drain(&((ws_door_t *)b->door_state)->fleet); }
static bool ws_settled(jn_bench_t *b) { return jn__bfleet_settled(&((ws_door_t *)b->door_state)->fleet); }

static void ws_close(jn_bench_t *b)
{
    ws_door_t *d = b->door_state;
    if (d)
        jn__bfleet_close(&d->fleet);
}

static void ws_free(jn_bench_t *b)
{
    ws_door_t *d = b->door_state;
    jn__bfleet_free(&d->fleet);
    free(d->conns);
    free(d->payload);
    free(d);
    b->door_state = NULL;
}

static void ws_describe(const jn_bench_t *b, json_t *config)
{
    const ws_cfg_t *c = b->cfg;
    json_object_set_new(config, "publishers", json_integer(c->publishers));
    json_object_set_new(config, "subscribers", json_integer(c->subscribers));
    json_object_set_new(config, "subject", json_string(c->subject));
    json_object_set_new(config, "rate", json_real(c->rate));
    json_object_set_new(config, "ack", json_boolean(c->ack));
    if (c->ack)
        json_object_set_new(config, "inflight", json_integer(c->inflight));
    if (c->window)
        json_object_set_new(config, "window", json_integer(c->window));
}

#define WOPT(f) offsetof(ws_cfg_t, f)
static const jn_bench_opt_t ws_opts[] = {
    {"publishers", JN_BOPT_INT, WOPT(publishers), 1, 10000, "publishing connections (default 1)"},
    {"subscribers", JN_BOPT_INT, WOPT(subscribers), 0, 100000, "subscribing connections (default 1)"},
    {"subject", JN_BOPT_STR, WOPT(subject), 0, 0, "subject published and subscribed to (default bench/ws)"},
    {"rate", JN_BOPT_DOUBLE, WOPT(rate), 0, 1e9, "messages/s per publisher, 0 = flat out (default 0)"},
    {"ack", JN_BOPT_FLAG, WOPT(ack), 0, 0, "publish with acks (durable under the stream's fsync policy)"},
    {"inflight", JN_BOPT_INT, WOPT(inflight), 1, 1000000, "unacknowledged publishes per publisher with --ack (default 1000)"},
    {"token", JN_BOPT_STR, WOPT(token), 0, 0, "API token, sent as ?token="},
    {"window", JN_BOPT_INT, WOPT(window), 0, 1000000,
     "publish at most W messages per subscriber ahead of deliveries, 0 = unbounded (default 0)"},
    {NULL, 0, 0, 0, 0, NULL},
};

const jn_bench_door_t jn__bench_door_ws = {
    .name = "ws",
    .summary = "WebSocket (/v1/ws) subscribers and publishers, binary envelopes",
    .default_url = "ws://127.0.0.1:8080/v1/ws",
    .default_port = 8080,
    .schemes = {"ws", "http", NULL},
    .opts = ws_opts,
    .cfg_size = sizeof(ws_cfg_t),
    .defaults = ws_defaults,
    .check = ws_check,
    .open = ws_open,
    .start = ws_start,
    .drain = ws_drain,
    .settled = ws_settled,
    .tick = NULL,
    .close = ws_close,
    .free = ws_free,
    .describe = ws_describe,
};
