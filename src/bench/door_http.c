/* door_http.c - the `http` door of the bench: N keep-alive connections,
 * each keeping up to --pipeline POST requests of a stamped payload in
 * flight against one URL. A 2xx answer is a delivery, anything else an
 * error; latency is request-to-response time. It loads Junction's REST
 * publish as well as any other HTTP server (nginx answering POSTs).
 *
 * The response reader is our own and minimal: status line, Content-Length
 * or chunked bodies, Connection: close; a body delimited by the end of the
 * connection is refused, as a benchmark cannot keep such a connection. */
#include "bench/bench_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bench/stamp.h"
#include "common/clock.h"

#define HTTP_HEAD_MAX 65536            /* bytes of a response head */
#define HTTP_BODY_MAX (1u << 30)       /* declared body length we accept */
#define HTTP_IN_MAX ((1u << 20) + JN_BENCH_READ_CHUNK) /* per connection */
#define HTTP_RETRY_MS 100              /* between reconnect attempts */

typedef struct http_cfg {
    int connections;          /* --connections */
    int pipeline;             /* --pipeline */
    const char *content_type; /* --content-type */
} http_cfg_t;

typedef struct http_door http_door_t;

typedef struct hconn {
    jn_bconn_t c;
    http_door_t *d;
    uint64_t *sent_at;  /* ring of --pipeline send times, mono ns */
    uint32_t head;      /* oldest outstanding request in |sent_at| */
    uint32_t n;         /* outstanding requests */
    bool ever;          /* connected at least once */
    bool want_retry;    /* closed while running: reconnect on the timer */
} hconn_t;

struct http_door {
    jn_bench_t *b;
    const http_cfg_t *cfg;
    hconn_t *conns;
    int nconns;
    int nready;          /* connections that connected the first time */
    uint8_t *payload;    /* the body, restamped per request */
    char req_head[1536]; /* request line and headers */
    size_t req_head_len;
    uint32_t seq;
    uint64_t outstanding; /* requests without a response, all connections */
    uv_timer_t retry;
    bool retry_init;
};

/* ---- response framing (sans I/O) ------------------------------------- */

static const uint8_t *find_crlf(const uint8_t *p, const uint8_t *end)
{
    for (; p + 1 < end; p++)
        if (p[0] == '\r' && p[1] == '\n')
            return p;
    return NULL;
}

static bool token_in(const char *v, size_t vlen, const char *tok)
{
    size_t tl = strlen(tok);
    size_t i = 0;
    while (i < vlen) {
        while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < vlen && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, tok, tl) == 0)
            return true;
    }
    return false;
}

/* Length of a chunked body at |p|, or JN_EPARTIAL / JN_EPROTO. */
static int chunked_len(const uint8_t *p, size_t len)
{
    const uint8_t *cur = p, *end = p + len;
    for (;;) {
        const uint8_t *eol = find_crlf(cur, end);
        if (!eol)
            return (size_t)(end - cur) > 1024 ? JN_EPROTO : JN_EPARTIAL;
        uint64_t size = 0;
        const uint8_t *q = cur;
        for (; q < eol; q++) {
            int dv;
            if (*q >= '0' && *q <= '9')
                dv = *q - '0';
            else if ((*q | 0x20) >= 'a' && (*q | 0x20) <= 'f')
                dv = (*q | 0x20) - 'a' + 10;
            else
                break;
            size = size * 16 + (uint64_t)dv;
            if (size > HTTP_BODY_MAX)
                return JN_EPROTO;
        }
        if (q == cur || (q < eol && *q != ';' && *q != ' ' && *q != '\t'))
            return JN_EPROTO;
        cur = eol + 2;
        if (size == 0) {
            /* Trailer fields, then an empty line. */
            for (;;) {
                const uint8_t *t = find_crlf(cur, end);
                if (!t)
                    return JN_EPARTIAL;
                bool empty = t == cur;
                cur = t + 2;
                if (empty)
                    break;
            }
            if ((size_t)(cur - p) > HTTP_BODY_MAX)
                return JN_EPROTO;
            return (int)(cur - p);
        }
        if ((uint64_t)(end - cur) < size + 2)
            return JN_EPARTIAL;
        if (cur[size] != '\r' || cur[size + 1] != '\n')
            return JN_EPROTO;
        cur += size + 2;
        if ((size_t)(cur - p) > HTTP_BODY_MAX)
            return JN_EPROTO;
    }
}

int jn__bench_http_response(const uint8_t *p, size_t len, int *status, bool *close)
{
    const uint8_t *end = p + len;
    const uint8_t *eol = find_crlf(p, end);
    if (!eol)
        return len > HTTP_HEAD_MAX ? JN_EPROTO : JN_EPARTIAL;
    /* "HTTP/1.x SSS[ reason]" */
    size_t sl = (size_t)(eol - p);
    if (sl < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ' ||
        p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9' ||
        (sl > 12 && p[12] != ' '))
        return JN_EPROTO;
    int st = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    bool cl_close = p[7] == '0'; /* HTTP/1.0 closes unless kept alive */
    int64_t clen = -1;
    bool chunked = false;
    const uint8_t *cur = eol + 2;
    for (;;) {
        eol = find_crlf(cur, end);
        if (!eol)
            return len > HTTP_HEAD_MAX ? JN_EPROTO : JN_EPARTIAL;
        if (eol == cur)
            break;
        const uint8_t *colon = memchr(cur, ':', (size_t)(eol - cur));
        if (!colon || colon == cur)
            return JN_EPROTO;
        size_t nlen = (size_t)(colon - cur);
        const uint8_t *v = colon + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t vlen = (size_t)(ve - v);
        if (nlen == 14 && strncasecmp((const char *)cur, "content-length", 14) == 0) {
            if (vlen == 0)
                return JN_EPROTO;
            int64_t n = 0;
            for (size_t i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9')
                    return JN_EPROTO;
                n = n * 10 + (v[i] - '0');
                if (n > HTTP_BODY_MAX)
                    return JN_EPROTO;
            }
            if (clen >= 0 && clen != n)
                return JN_EPROTO;
            clen = n;
        } else if (nlen == 17 && strncasecmp((const char *)cur, "transfer-encoding", 17) == 0) {
            if (!token_in((const char *)v, vlen, "chunked"))
                return JN_EUNSUPPORTED;
            chunked = true;
        } else if (nlen == 10 && strncasecmp((const char *)cur, "connection", 10) == 0) {
            if (token_in((const char *)v, vlen, "close"))
                cl_close = true;
            else if (token_in((const char *)v, vlen, "keep-alive"))
                cl_close = false;
        }
        cur = eol + 2;
        if ((size_t)(cur - p) > HTTP_HEAD_MAX)
            return JN_EPROTO;
    }
    size_t head = (size_t)(eol + 2 - p);
    if (head > HTTP_HEAD_MAX)
        return JN_EPROTO;
    size_t body = 0;
    if (st < 200 || st == 204 || st == 304) {
        body = 0;
    } else if (chunked) {
        if (clen >= 0)
            return JN_EPROTO; /* both framings: a smuggling risk, refuse */
        int rc = chunked_len(p + head, len - head);
        if (rc < 0)
            return rc;
        body = (size_t)rc;
    } else if (clen >= 0) {
        body = (size_t)clen;
        if (len - head < body)
            return JN_EPARTIAL;
    } else {
        return JN_EUNSUPPORTED;
    }
    *status = st;
    *close = cl_close;
    return (int)(head + body);
}

/* ---- the door --------------------------------------------------------- */

static void hc_fill(hconn_t *h)
{
    http_door_t *d = h->d;
    jn_bench_t *b = d->b;
    if (!h->c.connected)
        return;
    uint32_t depth = (uint32_t)d->cfg->pipeline;
    while (h->n < depth && jn__bench_take(b)) {
        uint64_t now = jn_mono_ns();
        if (jn_stamp_write(d->payload, (size_t)b->o->size, d->seq++, now) < 0 ||
            jn_buf_append(&h->c.out, d->req_head, d->req_head_len) < 0 ||
            jn_buf_append(&h->c.out, d->payload, (size_t)b->o->size) < 0) {
            /* The out buffer is sized for a full pipeline: cannot happen. */
            b->errors++;
            break;
        }
        h->sent_at[(h->head + h->n) % depth] = now;
        h->n++;
        d->outstanding++;
        b->sent++;
        b->sent_bytes += (uint64_t)b->o->size;
    }
    jn__bconn_flush(&h->c);
}

static int hc_on_data(jn_bconn_t *c)
{
    hconn_t *h = c->owner;
    http_door_t *d = h->d;
    jn_bench_t *b = d->b;
    uint32_t depth = (uint32_t)d->cfg->pipeline;
    bool close = false;
    int rc = 0;
    while (c->in.len > 0 && !close) {
        int status = 0;
        rc = jn__bench_http_response(c->in.data, c->in.len, &status, &close);
        if (rc == JN_EPARTIAL) {
            rc = 0;
            break;
        }
        if (rc < 0)
            break;
        jn_buf_consume(&c->in, (size_t)rc);
        rc = 0;
        if (status < 200)
            continue; /* interim (100 Continue): the real answer follows */
        if (h->n == 0) {
            rc = JN_EPROTO; /* an answer to nothing */
            break;
        }
        uint64_t t0 = h->sent_at[h->head];
        h->head = (h->head + 1) % depth;
        h->n--;
        d->outstanding--;
        if (status >= 200 && status < 300)
            jn__bench_delivered(b, (size_t)b->o->size, jn_mono_ns() - t0);
        else
            b->errors++;
    }
    if (rc < 0 || close) {
        jn__bench_poke(b);
        return rc < 0 ? rc : JN_ECLOSED;
    }
    hc_fill(h);
    jn__bench_poke(b);
    return 0;
}

static void hc_on_connect(jn_bconn_t *c)
{
    hconn_t *h = c->owner;
    http_door_t *d = h->d;
    if (!h->ever) {
        h->ever = true;
        if (++d->nready == d->nconns)
            jn__bench_ready(d->b);
        return;
    }
    hc_fill(h);
}

static void hc_on_close(jn_bconn_t *c, int err)
{
    hconn_t *h = c->owner;
    http_door_t *d = h->d;
    jn_bench_t *b = d->b;
    /* Requests that never got an answer are failures. */
    b->errors += h->n;
    d->outstanding -= h->n;
    h->n = 0;
    h->head = 0;
    if (b->phase == JN_BENCH_CONNECTING && !c->was_connected) {
        jn__bench_fail(b, "cannot connect to %s:%d: %s", b->host, b->port,
                       err < 0 ? uv_strerror(err) : "closed");
        return;
    }
    if (b->phase == JN_BENCH_RUNNING || b->phase == JN_BENCH_CONNECTING) {
        /* A server that closes keep-alive connections (Connection: close,
         * idle timeout) is not an error; a broken one shows in the
         * unanswered requests above. Reconnecting right after a failure
         * would spin, so failures wait for the retry timer. */
        if (err == JN_ECLOSED && jn__bconn_connect(&h->c) == 0)
            return; /* the server asked to close: open the next at once */
        h->want_retry = true; /* on_retry reconnects after a pause */
    }
    jn__bench_poke(b);
}

static void on_retry(uv_timer_t *t)
{
    http_door_t *d = t->data;
    jn_bench_t *b = d->b;
    if (b->phase != JN_BENCH_RUNNING && b->phase != JN_BENCH_CONNECTING)
        return;
    for (int i = 0; i < d->nconns; i++) {
        hconn_t *h = &d->conns[i];
        if (!h->want_retry || h->c.open)
            continue;
        h->want_retry = false;
        int rc = jn__bconn_connect(&h->c);
        if (rc < 0) {
            b->errors++;
            h->want_retry = true;
        }
    }
}

static void http_defaults(void *cfg)
{
    http_cfg_t *c = cfg;
    c->connections = 64;
    c->pipeline = 1;
    c->content_type = "application/octet-stream";
}

static int http_check(const jn_bench_opts_t *o, char *err, size_t errlen)
{
    const http_cfg_t *c = o->cfg;
    for (const char *p = c->content_type; *p; p++)
        if (*p == '\r' || *p == '\n') {
            snprintf(err, errlen, "--content-type must be one line");
            return -1;
        }
    return 0;
}

static int http_open(jn_bench_t *b)
{
    const http_cfg_t *cfg = b->cfg;
    http_door_t *d = calloc(1, sizeof(*d));
    if (!d)
        goto nomem;
    b->door_state = d;
    d->b = b;
    d->cfg = cfg;
    d->payload = malloc((size_t)b->o->size);
    d->conns = calloc((size_t)cfg->connections, sizeof(*d->conns));
    if (!d->payload || !d->conns)
        goto nomem;
    if (jn_stamp_fill(d->payload, (size_t)b->o->size, 0, 0) < 0)
        goto nomem;
    int n = snprintf(d->req_head, sizeof(d->req_head),
                     "POST %s HTTP/1.1\r\nHost: %s%s%s:%d\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
                     b->path, strchr(b->host, ':') ? "[" : "", b->host, strchr(b->host, ':') ? "]" : "",
                     b->port, cfg->content_type, b->o->size);
    if (n < 0 || (size_t)n >= sizeof(d->req_head)) {
        jn__bench_fail(b, "request head too long (path or content type)");
        return JN_ETOOBIG;
    }
    d->req_head_len = (size_t)n;
    uv_timer_init(&b->loop, &d->retry);
    d->retry.data = d;
    d->retry_init = true;
    uv_timer_start(&d->retry, on_retry, HTTP_RETRY_MS, HTTP_RETRY_MS);
    size_t out_max = (size_t)cfg->pipeline * (d->req_head_len + (size_t)b->o->size) + 1;
    for (int i = 0; i < cfg->connections; i++) {
        hconn_t *h = &d->conns[i];
        h->d = d;
        h->sent_at = calloc((size_t)cfg->pipeline, sizeof(uint64_t));
        d->nconns++;
        jn__bconn_init(&h->c, b, h, HTTP_IN_MAX, out_max);
        if (!h->sent_at)
            goto nomem;
        h->c.on_connect = hc_on_connect;
        h->c.on_data = hc_on_data;
        h->c.on_close = hc_on_close;
        int rc = jn__bconn_connect(&h->c);
        if (rc < 0) {
            jn__bench_fail(b, "cannot connect to %s:%d: %s", b->host, b->port, uv_strerror(rc));
            return JN_EIO;
        }
    }
    return 0;
nomem:
    jn__bench_fail(b, "out of memory");
    return JN_ENOMEM;
}

static void http_start(jn_bench_t *b)
{
    http_door_t *d = b->door_state;
    for (int i = 0; i < d->nconns; i++)
        hc_fill(&d->conns[i]);
}

static bool http_settled(jn_bench_t *b)
{
    http_door_t *d = b->door_state;
    return d->outstanding == 0;
}

static void http_close(jn_bench_t *b)
{
    http_door_t *d = b->door_state;
    if (!d)
        return;
    if (d->retry_init && !uv_is_closing((uv_handle_t *)&d->retry))
        uv_close((uv_handle_t *)&d->retry, NULL);
    for (int i = 0; i < d->nconns; i++)
        jn__bconn_close(&d->conns[i].c, 0);
}

static void http_free(jn_bench_t *b)
{
    http_door_t *d = b->door_state;
    for (int i = 0; i < d->nconns; i++) {
        free(d->conns[i].sent_at);
        jn__bconn_free(&d->conns[i].c);
    }
    free(d->conns);
    free(d->payload);
    free(d);
    b->door_state = NULL;
}

static void http_describe(const jn_bench_t *b, json_t *config)
{
    const http_cfg_t *c = b->cfg;
    json_object_set_new(config, "path", json_string(b->path));
    json_object_set_new(config, "connections", json_integer(c->connections));
    json_object_set_new(config, "pipeline", json_integer(c->pipeline));
}

#define HOPT(f) offsetof(http_cfg_t, f)
static const jn_bench_opt_t http_opts[] = {
    {"connections", JN_BOPT_INT, HOPT(connections), 1, 10000, "keep-alive connections (default 64)"},
    {"pipeline", JN_BOPT_INT, HOPT(pipeline), 1, 1024, "requests in flight per connection (default 1)"},
    {"content-type", JN_BOPT_STR, HOPT(content_type), 0, 0, "Content-Type of the POSTs (default application/octet-stream)"},
    {NULL, 0, 0, 0, 0, NULL},
};

const jn_bench_door_t jn__bench_door_http = {
    .name = "http",
    .summary = "POST stamped payloads over keep-alive connections",
    .default_url = "http://127.0.0.1:8080/v1/publish/bench/t",
    .default_port = 80,
    .schemes = {"http", NULL, NULL},
    .opts = http_opts,
    .cfg_size = sizeof(http_cfg_t),
    .defaults = http_defaults,
    .check = http_check,
    .open = http_open,
    .start = http_start,
    .settled = http_settled,
    .close = http_close,
    .free = http_free,
    .describe = http_describe,
};
