/* server.c - the HTTP/1.1 server: listeners, connections, TLS, routing.
 *
 * One connection is a small struct with a libuv TCP handle. Everything
 * bigger is allocated when it is needed and given back when the
 * connection sits idle (the sweep below), so that 10,000 idle keep-alive
 * connections cost little: the input buffer, the request struct (whose
 * parsed head holds 100 header views) and the output buffers.
 *
 * Input: plain connections read straight into the input buffer (the alloc
 * callback hands out its free tail), TLS connections read ciphertext into
 * one scratch buffer of the server, feed it to OpenSSL's read BIO and
 * SSL_read plaintext into the input buffer. The buffer holds the current
 * request from offset |in_off|; bytes after it are pipelined requests that
 * wait until the current one is answered. While a handler owns a request
 * its views point into the buffer, so the buffer is then never moved nor
 * grown; otherwise it is compacted and grown (up to head + body + slack)
 * as needed, re-parsing the head when a parsed head moved.
 *
 * Output: responses are built into |out|; one flush at the end of each
 * round of processing writes everything produced by one read (pipelined
 * responses leave in one write). A flush tries uv_try_write and hands the
 * rest to uv_write, swapping buffers so that the bytes in flight stay
 * alive until the write callback. With TLS, |out| is encrypted into |enc|
 * first. Responses produced outside a read (async handlers, streams) are
 * flushed from an idle handle in the same loop iteration: this batches
 * many stream writes into one syscall, and it means the abort callback
 * never runs inside jn_http_respond or jn_http_stream_write.
 *
 * Timeouts: one coarse timer for the whole server sweeps the connections
 * (cheaper than a timer per connection): idle keep-alive, slow request
 * (408), lingering close, and shrinking of idle connections.
 *
 * Closing: after a response with "Connection: close" the output is
 * flushed, the write side is shut down (TLS sends close_notify first) and
 * the connection lingers, discarding input until the peer closes or a
 * short timeout passes: closing a socket with unread input would make the
 * kernel send a reset that can destroy the response before the peer
 * reads it.
 */
#include "server.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/list.h"
#include "../common/log.h"

#define MAX_PARAMS 8           /* route parameters per pattern */
#define MAX_LISTENERS 16
#define IN_INITIAL 8192        /* first input buffer size */
#define IN_MIN_ROOM 2048       /* compact or grow below this much free space */
#define IN_SLACK 8192          /* input cap = head + body + slack */
#define TLS_SCRATCH 65536      /* ciphertext read buffer, shared */
#define TLS_RBIO_MAX 65536     /* stop reading above this much undecrypted input */
#define MAX_RESPONSE (64u << 20) /* one complete response may pass high water by this */
#define HDRS_MAX 16384         /* extra response headers of a handler */
#define LINGER_MS 2000         /* discard input this long after a closing response */
#define SHRINK_MS 1000         /* give buffers back after being idle this long */

/* ---- router ---- */

typedef struct route_method {
    char method[16];
    jn_http_handler fn;
    void *arg;
    char *names[MAX_PARAMS]; /* parameter names, in path order */
    size_t nnames;
} route_method_t;

typedef struct rnode {
    char *lit;               /* literal segment (children of kids[]) */
    size_t lit_len;
    struct rnode **kids;     /* literal children */
    size_t nkids;
    struct rnode *param;     /* "{name}" child */
    struct rnode *wild;      /* "{name*}" child (always a leaf) */
    route_method_t *methods;
    size_t nmethods;
} rnode_t;

typedef struct pview {
    const char *p;
    size_t len;
} pview_t;

/* ---- connections and requests ---- */

enum conn_state {
    ST_IDLE,    /* no byte of the next request yet */
    ST_HEAD,    /* head incomplete */
    ST_BODY,    /* head parsed, body incomplete */
    ST_HANDLER, /* complete request handed to a handler */
};

typedef struct listener {
    uv_tcp_t tcp;
    jn_httpd_t *srv;
    SSL_CTX *ctx; /* NULL: plain */
    int port;
} listener_t;

typedef struct conn conn_t;

struct jn_http_req {
    conn_t *c;
    jn_http_request_t head;     /* views into c->in */
    size_t start;               /* offset of the request in c->in once dispatched */
    size_t head_len;
    uint64_t body_len;          /* Content-Length, or decoded so far when chunked */
    bool chunked;
    jn_http_chunked_t ch;
    bool active;                /* handed to a handler, not finished yet */
    bool is_head;               /* HEAD: no body in the response */
    bool streaming;             /* stream_begin done */
    bool stream_chunked;        /* chunked framing (not for HTTP/1.0) */
    int status;                 /* of a streaming response */
    int err_status;             /* no handler: answer this instead (404/405) */
    const rnode_t *err_node;    /* 405: the node whose methods make Allow */
    const route_method_t *rm;   /* matched route */
    pview_t raw[MAX_PARAMS];    /* matched parameter values, raw */
    size_t nparams;
    size_t poff[MAX_PARAMS];    /* offsets of decoded values in pbuf */
    char *pbuf;
    size_t pbuf_cap;
    jn_buf_t hdrs;              /* extra response headers */
    void *data;
    jn_http_abort_cb on_abort;
    jn_http_drain_cb on_drain;
    uint64_t t0_ns;             /* for the latency histogram */
};

struct conn {
    uv_tcp_t tcp;               /* handle.data points back to the conn */
    jn_httpd_t *srv;
    listener_t *lst;
    jn_list_t link;             /* srv->conns */
    jn_list_t sched;            /* srv->deferred while scheduled */
    char *in;                   /* input buffer (plaintext) */
    size_t in_off, in_len, in_cap;
    jn_buf_t out;               /* plaintext responses being built */
    jn_buf_t enc;               /* TLS: ciphertext waiting to be written */
    jn_buf_t wbuf;              /* bytes of the uv_write in flight */
    size_t woff;                /* bytes of wbuf written by uv_try_write */
    uv_write_t wreq;
    uv_shutdown_t sreq;
    SSL *ssl;
    jn_http_req_t *req;         /* allocated on the first request, reused */
    uint64_t t_mark;            /* loop ms: idle since / request since / lingering since */
    uint64_t t_write;           /* loop ms: the uv_write in flight started or last finished */
    uint8_t state;              /* enum conn_state */
    bool processing;            /* inside conn_process: flush at its end */
    bool reading;
    bool writing;
    bool want_close;            /* close after the output is flushed */
    bool shutting;              /* uv_shutdown issued */
    bool lingering;             /* discarding input before closing */
    bool closing;               /* uv_close issued */
    bool above_hw;              /* output above high water */
    bool in_full;               /* no room for input while a handler runs */
    bool hs_done;               /* TLS handshake complete */
    bool notify_sent;           /* TLS close_notify queued */
    bool eof;                   /* peer closed its side */
    bool loopback;
    char peer[46];
};

struct jn_httpd {
    uv_loop_t *loop;
    jn_httpd_config_t cfg;
    size_t in_max;
    size_t out_max;
    rnode_t root;
    listener_t *lst[MAX_LISTENERS];
    size_t nlst;
    jn_list_t conns;
    size_t nconns;
    jn_list_t deferred;         /* connections with output or work from outside a read */
    uv_idle_t idle;
    uv_timer_t sweep;
    size_t handles;             /* open uv handles; free when 0 after jn_httpd_free */
    bool freeing;
    char *scratch;              /* TLS ciphertext and lingering reads */
    jn_counter_t *m_req[4];     /* 2xx 3xx 4xx 5xx */
    jn_gauge_t *m_conns;
    jn_histogram_t *m_lat;
};

static void conn_process(conn_t *c);
static void conn_close(conn_t *c);
static void conn_flush(conn_t *c);
static void conn_update_read(conn_t *c);
static void on_idle(uv_idle_t *h);

/* ---- configuration ---- */

void jn_httpd_config_default(jn_httpd_config_t *c)
{
    memset(c, 0, sizeof *c);
    jn_http_limits_default(&c->limits);
    c->max_body = 8u << 20;
    c->out_high_water = 1u << 20;
    c->idle_timeout_ms = 60000;
    c->request_timeout_ms = 30000;
    c->max_connections = 100000;
}

/* ---- router ---- */

static void rnode_free(rnode_t *n)
{
    for (size_t i = 0; i < n->nkids; i++) {
        rnode_free(n->kids[i]);
        free(n->kids[i]);
    }
    free(n->kids);
    if (n->param) {
        rnode_free(n->param);
        free(n->param);
    }
    if (n->wild) {
        rnode_free(n->wild);
        free(n->wild);
    }
    for (size_t i = 0; i < n->nmethods; i++)
        for (size_t j = 0; j < n->methods[i].nnames; j++)
            free(n->methods[i].names[j]);
    free(n->methods);
    free(n->lit);
}

static bool is_tchar(char ch)
{
    return ch != '\0' && ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static bool valid_param_name(const char *p, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z') ||
              (p[i] >= '0' && p[i] <= '9') || p[i] == '_' || p[i] == '-'))
            return false;
    return true;
}

static rnode_t *rnode_new(void)
{
    return calloc(1, sizeof(rnode_t));
}

static rnode_t *rnode_literal(rnode_t *n, const char *seg, size_t len)
{
    for (size_t i = 0; i < n->nkids; i++)
        if (n->kids[i]->lit_len == len && memcmp(n->kids[i]->lit, seg, len) == 0)
            return n->kids[i];
    rnode_t **nk = realloc(n->kids, (n->nkids + 1) * sizeof *nk);
    if (!nk)
        return NULL;
    n->kids = nk;
    rnode_t *k = rnode_new();
    if (!k)
        return NULL;
    k->lit = strndup(seg, len);
    if (!k->lit) {
        free(k);
        return NULL;
    }
    k->lit_len = len;
    n->kids[n->nkids++] = k;
    return k;
}

int jn_httpd_route(jn_httpd_t *s, const char *method, const char *pattern, jn_http_handler handler,
                   void *arg)
{
    size_t mlen = method ? strlen(method) : 0;
    if (!handler || mlen == 0 || mlen >= sizeof(((route_method_t *)0)->method) || !pattern ||
        pattern[0] != '/')
        return JN_EINVAL;
    for (size_t i = 0; i < mlen; i++)
        if (!is_tchar(method[i]))
            return JN_EINVAL;

    /* Validate the whole pattern before changing the trie. */
    pview_t names[MAX_PARAMS];
    size_t nnames = 0;
    const char *p = pattern + 1, *end = pattern + strlen(pattern);
    if (p < end) {
        for (;;) {
            const char *se = memchr(p, '/', (size_t)(end - p));
            if (!se)
                se = end;
            size_t sl = (size_t)(se - p);
            if (sl == 0)
                return JN_EINVAL;
            if (p[0] == '{') {
                bool wild = sl >= 4 && p[sl - 2] == '*';
                size_t nl = sl - 2 - (wild ? 1 : 0);
                if (p[sl - 1] != '}' || !valid_param_name(p + 1, nl) || nnames == MAX_PARAMS ||
                    (wild && se != end))
                    return JN_EINVAL;
                names[nnames++] = (pview_t){p + 1, nl};
            } else {
                for (size_t i = 0; i < sl; i++)
                    if (p[i] == '{' || p[i] == '}' || p[i] == '?' || p[i] == '%')
                        return JN_EINVAL;
            }
            if (se == end)
                break;
            p = se + 1;
        }
    }

    rnode_t *n = &s->root;
    p = pattern + 1;
    while (p < end) {
        const char *se = memchr(p, '/', (size_t)(end - p));
        if (!se)
            se = end;
        size_t sl = (size_t)(se - p);
        rnode_t **slot = NULL;
        if (p[0] == '{')
            slot = p[sl - 2] == '*' ? &n->wild : &n->param;
        if (slot) {
            if (!*slot && !(*slot = rnode_new()))
                return JN_ENOMEM;
            n = *slot;
        } else if (!(n = rnode_literal(n, p, sl))) {
            return JN_ENOMEM;
        }
        p = se == end ? end : se + 1;
    }
    for (size_t i = 0; i < n->nmethods; i++)
        if (strcmp(n->methods[i].method, method) == 0)
            return JN_EEXIST;
    route_method_t *nm = realloc(n->methods, (n->nmethods + 1) * sizeof *nm);
    if (!nm)
        return JN_ENOMEM;
    n->methods = nm;
    route_method_t *rm = &nm[n->nmethods];
    memset(rm, 0, sizeof *rm);
    memcpy(rm->method, method, mlen + 1);
    rm->fn = handler;
    rm->arg = arg;
    for (size_t i = 0; i < nnames; i++) {
        if (!(rm->names[i] = strndup(names[i].p, names[i].len))) {
            for (size_t j = 0; j < i; j++)
                free(rm->names[j]);
            return JN_ENOMEM;
        }
    }
    rm->nnames = nnames;
    n->nmethods++;
    return 0;
}

static const route_method_t *rnode_method(const rnode_t *n, const char *m, size_t mlen)
{
    for (size_t i = 0; i < n->nmethods; i++)
        if (strncmp(n->methods[i].method, m, mlen) == 0 && n->methods[i].method[mlen] == '\0')
            return &n->methods[i];
    if (mlen == 4 && memcmp(m, "HEAD", 4) == 0)
        return rnode_method(n, "GET", 3);
    return NULL;
}

/* Matches the segments from |s| (|at_end|: no segment left) below |n|,
 * literals first, then a parameter, then a wildcard, backtracking. The
 * first node that matched the path but not the method goes to |*hit|
 * (405). Parameter values land in req->raw. Nothing is allocated. */
static const route_method_t *rmatch(const rnode_t *n, const char *s, const char *end, bool at_end,
                                    jn_http_req_t *r, size_t np, const rnode_t **hit)
{
    const char *m = r->head.method;
    size_t mlen = r->head.method_len;
    if (at_end) {
        if (n->nmethods) {
            const route_method_t *rm = rnode_method(n, m, mlen);
            if (rm) {
                r->nparams = np;
                return rm;
            }
            if (!*hit)
                *hit = n;
        }
        /* A wildcard also matches an empty rest. */
        if (n->wild && np < MAX_PARAMS) {
            r->raw[np] = (pview_t){s, 0};
            const route_method_t *rm = rnode_method(n->wild, m, mlen);
            if (rm) {
                r->nparams = np + 1;
                return rm;
            }
            if (!*hit && n->wild->nmethods)
                *hit = n->wild;
        }
        return NULL;
    }
    const char *se = memchr(s, '/', (size_t)(end - s));
    if (!se)
        se = end;
    size_t sl = (size_t)(se - s);
    const char *next = se == end ? end : se + 1;
    bool next_end = se == end;
    for (size_t i = 0; i < n->nkids; i++) {
        const rnode_t *k = n->kids[i];
        if (k->lit_len == sl && memcmp(k->lit, s, sl) == 0) {
            const route_method_t *rm = rmatch(k, next, end, next_end, r, np, hit);
            if (rm)
                return rm;
            break;
        }
    }
    if (n->param && sl > 0 && np < MAX_PARAMS) {
        r->raw[np] = (pview_t){s, sl};
        const route_method_t *rm = rmatch(n->param, next, end, next_end, r, np + 1, hit);
        if (rm)
            return rm;
    }
    if (n->wild && np < MAX_PARAMS) {
        r->raw[np] = (pview_t){s, (size_t)(end - s)};
        const route_method_t *rm = rnode_method(n->wild, m, mlen);
        if (rm) {
            r->nparams = np + 1;
            return rm;
        }
        if (!*hit && n->wild->nmethods)
            *hit = n->wild;
    }
    return NULL;
}

/* Routes r->head: sets r->rm, or r->err_status (and err_node for 405). */
static void req_route(jn_httpd_t *s, jn_http_req_t *r)
{
    const char *path = r->head.path;
    size_t plen = r->head.path_len;
    const rnode_t *hit = NULL;
    r->rm = NULL;
    r->nparams = 0;
    r->err_node = NULL;
    r->err_status = 0;
    if (plen == 0 || path[0] != '/') {
        r->err_status = 404;
        return;
    }
    const char *end = path + plen;
    r->rm = rmatch(&s->root, path + 1, end, plen == 1, r, 0, &hit);
    if (!r->rm) {
        r->err_status = hit ? 405 : 404;
        r->err_node = hit;
    }
}

/* ---- small helpers ---- */

static jn_httpd_t *conn_srv(const conn_t *c)
{
    return c->srv;
}

static size_t conn_pending(const conn_t *c)
{
    return c->out.len + c->enc.len + (c->writing ? c->wbuf.len - c->woff : 0);
}

static void conn_schedule(conn_t *c)
{
    jn_httpd_t *s = conn_srv(c);
    if (c->closing || jn_list_linked(&c->sched))
        return;
    if (jn_list_empty(&s->deferred))
        uv_idle_start(&s->idle, on_idle);
    jn_list_insert_tail(&s->deferred, &c->sched);
}

static const char *status_code_name(int status)
{
    switch (status) {
    case 400: return "bad_request";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 408: return "request_timeout";
    case 413: return "payload_too_large";
    case 414: return "uri_too_long";
    case 431: return "headers_too_large";
    case 501: return "not_implemented";
    case 503: return "unavailable";
    case 505: return "http_version_not_supported";
    default: return status >= 500 ? "internal" : "error";
    }
}

/* Appends the decimal form of |v|. */
static int buf_put_u64(jn_buf_t *b, uint64_t v)
{
    char t[24];
    size_t i = sizeof t;
    do {
        t[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return jn_buf_append(b, t + i, sizeof t - i);
}

/* Appends "HTTP/1.1 <status> <reason>\r\nServer: junction\r\n" and the
 * framing headers. |clen| >= 0: Content-Length; -1: chunked; -2: none
 * (the body ends when the connection closes). |extra| are whole header
 * lines. */
static int put_head(conn_t *c, int status, const char *ctype, int64_t clen, bool close,
                    bool v10_keepalive, const jn_buf_t *extra)
{
    jn_buf_t *o = &c->out;
    const char *reason = jn_http_reason(status);
    if (status < 100 || status > 999)
        return JN_EINVAL;
    char sl[16] = "HTTP/1.1 000 ";
    sl[9] = (char)('0' + status / 100);
    sl[10] = (char)('0' + status / 10 % 10);
    sl[11] = (char)('0' + status % 10);
    int rc;
    if ((rc = jn_buf_append(o, sl, 13)) < 0 || (rc = jn_buf_append_str(o, reason ? reason : "")) < 0 ||
        (rc = jn_buf_append_str(o, "\r\nServer: junction\r\n")) < 0)
        return rc;
    if (ctype) {
        if ((rc = jn_buf_append_str(o, "Content-Type: ")) < 0 || (rc = jn_buf_append_str(o, ctype)) < 0 ||
            (rc = jn_buf_append(o, "\r\n", 2)) < 0)
            return rc;
    }
    if (clen >= 0) {
        if ((rc = jn_buf_append_str(o, "Content-Length: ")) < 0 || (rc = buf_put_u64(o, (uint64_t)clen)) < 0 ||
            (rc = jn_buf_append(o, "\r\n", 2)) < 0)
            return rc;
    } else if (clen == -1) {
        if ((rc = jn_buf_append_str(o, "Transfer-Encoding: chunked\r\n")) < 0)
            return rc;
    }
    if (close) {
        if ((rc = jn_buf_append_str(o, "Connection: close\r\n")) < 0)
            return rc;
    } else if (v10_keepalive) {
        if ((rc = jn_buf_append_str(o, "Connection: keep-alive\r\n")) < 0)
            return rc;
    }
    if (extra && extra->len && (rc = jn_buf_append(o, extra->data, extra->len)) < 0)
        return rc;
    return jn_buf_append(o, "\r\n", 2);
}

/* Renders {"code","message"}; returns a malloc'd string and its length. */
static char *error_body(const char *code, const char *msg, size_t *len)
{
    /* Messages may quote request bytes: keep them printable ASCII so the
     * JSON is always valid UTF-8. */
    char clean[512];
    size_t n = 0;
    for (; msg[n] && n < sizeof clean - 1; n++)
        clean[n] = (unsigned char)msg[n] >= 0x20 && (unsigned char)msg[n] < 0x7f ? msg[n] : '?';
    clean[n] = '\0';
    json_t *j = json_pack("{s:s,s:s}", "code", code, "message", clean);
    if (!j)
        return NULL;
    char *out = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    *len = out ? strlen(out) : 0;
    return out;
}

/* Writes an error response outside any handler (parse errors, 408, 413)
 * and closes the connection after it. */
static void conn_error(conn_t *c, int status, const char *msg)
{
    size_t blen = 0;
    char *body = error_body(status_code_name(status), msg, &blen);
    size_t mark = c->out.len;
    if (!body || put_head(c, status, "application/json", (int64_t)blen, true, false, NULL) < 0 ||
        jn_buf_append(&c->out, body, blen) < 0)
        c->out.len = mark;
    free(body);
    jn_httpd_t *s = conn_srv(c);
    if (s->m_req[0])
        jn_counter_inc(s->m_req[status / 100 - 2 > 3 ? 3 : status / 100 - 2]);
    c->want_close = true;
}

/* ---- connection lifetime ---- */

static void srv_handle_closed(jn_httpd_t *s)
{
    s->handles--;
    if (s->freeing && s->handles == 0) {
        rnode_free(&s->root);
        for (size_t i = 0; i < s->nlst; i++) {
            SSL_CTX_free(s->lst[i]->ctx);
            free(s->lst[i]);
        }
        free(s->scratch);
        free(s);
    }
}

static void req_free(jn_http_req_t *r)
{
    if (!r)
        return;
    jn_buf_free(&r->hdrs);
    free(r->pbuf);
    free(r);
}

static void on_conn_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    jn_httpd_t *s = c->srv;
    free(c->in);
    jn_buf_free(&c->out);
    jn_buf_free(&c->enc);
    jn_buf_free(&c->wbuf);
    if (c->ssl)
        SSL_free(c->ssl);
    req_free(c->req);
    free(c);
    srv_handle_closed(s);
}

/* Closes now: aborts a request in flight (its abort callback runs here,
 * at the top of a libuv callback) and frees the conn after uv_close. */
static void conn_close(conn_t *c)
{
    if (c->closing)
        return;
    jn_httpd_t *s = c->srv;
    c->closing = true;
    jn_list_remove(&c->sched);
    jn_list_remove(&c->link);
    s->nconns--;
    if (s->m_conns)
        s->m_conns->value--;
    jn_http_req_t *r = c->req;
    if (r && r->active) {
        r->active = false;
        if (r->on_abort)
            r->on_abort(r, r->data);
    }
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *sr, int status)
{
    conn_t *c = sr->data;
    if (c->closing)
        return;
    if (status < 0 || c->eof) {
        conn_close(c);
        return;
    }
    c->lingering = true;
    c->t_mark = uv_now(c->srv->loop);
    conn_update_read(c);
}

/* Called once the output is empty and the connection should close. */
static void conn_shutdown(conn_t *c)
{
    if (c->shutting || c->closing)
        return;
    if (c->ssl && c->hs_done && !c->notify_sent) {
        c->notify_sent = true;
        (void)SSL_shutdown(c->ssl);
        conn_flush(c); /* may come back here and shut down */
        if (c->shutting || c->closing || c->writing || conn_pending(c))
            return;
    }
    c->shutting = true;
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
        conn_close(c);
}

/* ---- output ---- */

static void on_write(uv_write_t *wr, int status);

/* Writes |src| (out or enc): try_write, then uv_write for the rest with
 * the buffers swapped so the bytes stay alive until on_write. */
static void conn_send(conn_t *c, jn_buf_t *src)
{
    if (c->writing || src->len == 0 || c->closing)
        return;
    uv_buf_t b = uv_buf_init((char *)src->data, (unsigned)src->len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == UV_EAGAIN || n == UV_ENOSYS)
        n = 0;
    else if (n < 0) {
        conn_close(c);
        return;
    }
    if ((size_t)n == src->len) {
        src->len = 0;
        return;
    }
    jn_buf_t t = c->wbuf;
    c->wbuf = *src;
    *src = t;
    src->len = 0;
    c->woff = (size_t)n;
    b = uv_buf_init((char *)c->wbuf.data + n, (unsigned)(c->wbuf.len - (size_t)n));
    c->wreq.data = c;
    c->t_write = uv_now(c->srv->loop);
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
        conn_close(c);
        return;
    }
    c->writing = true;
}

/* Moves TLS output (plaintext in |out|, handshake records) into |enc|. */
static int tls_encrypt(conn_t *c)
{
    if (c->hs_done && c->out.len) {
        int n = SSL_write(c->ssl, c->out.data, (int)c->out.len);
        if (n <= 0)
            return JN_EIO;
        jn_buf_consume(&c->out, (size_t)n);
    }
    BIO *wb = SSL_get_wbio(c->ssl);
    size_t pend;
    while ((pend = BIO_ctrl_pending(wb)) > 0) {
        int rc = jn_buf_reserve(&c->enc, pend);
        if (rc < 0)
            return rc;
        int n = BIO_read(wb, c->enc.data + c->enc.len, (int)pend);
        if (n <= 0)
            break;
        c->enc.len += (size_t)n;
    }
    return 0;
}

static void conn_flush(conn_t *c)
{
    if (c->closing)
        return;
    if (c->ssl) {
        if (tls_encrypt(c) < 0) {
            conn_close(c);
            return;
        }
        conn_send(c, &c->enc);
    } else {
        conn_send(c, &c->out);
    }
    if (c->closing)
        return;
    size_t pend = conn_pending(c);
    if (pend > c->srv->cfg.out_high_water) {
        if (!c->above_hw) {
            c->above_hw = true;
            conn_update_read(c);
        }
    } else if (c->above_hw && !c->processing) {
        /* Drained: a streaming writer may go on, parsing and reading resume. */
        c->above_hw = false;
        jn_http_req_t *r = c->req;
        if (r && r->active && r->on_drain)
            r->on_drain(r, r->data);
        if (c->closing)
            return;
        conn_schedule(c);
        conn_update_read(c);
        pend = conn_pending(c);
    }
    if (c->want_close && pend == 0 && !c->writing)
        conn_shutdown(c);
}

static void on_write(uv_write_t *wr, int status)
{
    conn_t *c = wr->data;
    c->writing = false;
    c->wbuf.len = 0;
    c->woff = 0;
    if (c->closing)
        return;
    c->t_write = uv_now(c->srv->loop);
    if (status < 0) {
        conn_close(c);
        return;
    }
    conn_flush(c);
}

/* ---- input ---- */

/* Re-parses a parsed head after the input buffer moved. */
static void req_rebase(conn_t *c)
{
    jn_http_req_t *r = c->req;
    int st = 0;
    int rc = jn_http_parse_request(c->in + c->in_off, r->head_len, &c->srv->cfg.limits, &r->head, &st);
    (void)rc; /* same bytes, same result */
    if (r->rm || r->err_status)
        req_route(c->srv, r);
}

/* Returns the free space at the end of the input buffer, compacting and
 * growing it first when a handler does not hold views into it. */
static size_t in_room(conn_t *c)
{
    jn_httpd_t *s = c->srv;
    if (!c->in) {
        size_t cap = IN_INITIAL < s->in_max ? IN_INITIAL : s->in_max;
        if (!(c->in = malloc(cap)))
            return 0;
        c->in_cap = cap;
        c->in_off = c->in_len = 0;
    }
    size_t room = c->in_cap - c->in_len;
    if (room >= IN_MIN_ROOM || c->state == ST_HANDLER)
        return room;
    bool moved = false;
    if (c->in_off > 0) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
        moved = true;
    }
    if (c->in_cap - c->in_len < IN_MIN_ROOM && c->in_cap < s->in_max) {
        size_t ncap = c->in_cap * 2;
        jn_http_req_t *r = c->req;
        if (c->state == ST_BODY && !r->chunked && r->head_len + r->body_len > ncap)
            ncap = r->head_len + r->body_len;
        if (ncap > s->in_max)
            ncap = s->in_max;
        char *n = realloc(c->in, ncap);
        if (n) {
            moved = moved || n != c->in;
            c->in = n;
            c->in_cap = ncap;
        }
    }
    if (moved && c->state == ST_BODY)
        req_rebase(c);
    return c->in_cap - c->in_len;
}

static bool conn_want_read(conn_t *c)
{
    if (c->closing)
        return false;
    if (c->lingering)
        return true;
    if (c->want_close || c->shutting || c->above_hw || c->in_full || c->eof)
        return false;
    if (c->ssl && BIO_ctrl_pending(SSL_get_rbio(c->ssl)) > TLS_RBIO_MAX)
        return false;
    return true;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void conn_update_read(conn_t *c)
{
    bool want = conn_want_read(c);
    if (want == c->reading)
        return;
    if (want) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
            conn_close(c);
            return;
        }
    } else {
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
    c->reading = want;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn_t *c = h->data;
    (void)suggested;
    if (c->ssl || c->lingering) {
        *buf = uv_buf_init(c->srv->scratch, TLS_SCRATCH);
        return;
    }
    size_t room = in_room(c);
    *buf = uv_buf_init(c->in ? c->in + c->in_len : NULL, (unsigned)room);
}

/* TLS: handshake, then decrypt what the read BIO holds into the input
 * buffer. Returns 0, 1 at close_notify, or < 0 on a TLS error. */
static int tls_pull(conn_t *c)
{
    if (!c->hs_done) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0;
            ERR_clear_error();
            return JN_EPROTO;
        }
        c->hs_done = true;
    }
    for (;;) {
        size_t room = in_room(c);
        if (room == 0) {
            if (c->state == ST_HANDLER)
                c->in_full = true;
            return 0;
        }
        int n = SSL_read(c->ssl, c->in + c->in_len, room > INT32_MAX ? INT32_MAX : (int)room);
        if (n > 0) {
            c->in_len += (size_t)n;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            return 0;
        if (e == SSL_ERROR_ZERO_RETURN)
            return 1;
        ERR_clear_error();
        return JN_EPROTO;
    }
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = st->data;
    if (c->closing)
        return;
    if (c->lingering) {
        if (nread < 0)
            conn_close(c);
        return;
    }
    if (nread == UV_ENOBUFS) {
        if (c->state == ST_HANDLER)
            c->in_full = true;
        else {
            conn_error(c, 413, "request too large");
            conn_flush(c);
        }
        conn_update_read(c);
        return;
    }
    if (nread < 0) {
        /* The peer is gone or half-closed: a request being handled is
         * aborted; answers already queued are still flushed. */
        c->eof = true;
        if (nread != UV_EOF || (c->req && c->req->active) ||
            (conn_pending(c) == 0 && !c->writing)) {
            conn_close(c);
            return;
        }
        c->want_close = true;
        conn_update_read(c);
        return;
    }
    if (nread == 0)
        return;
    if (c->ssl) {
        if (BIO_write(SSL_get_rbio(c->ssl), buf->base, (int)nread) != (int)nread) {
            conn_close(c);
            return;
        }
    } else {
        c->in_len += (size_t)nread;
    }
    conn_process(c);
}

/* ---- requests ---- */

static jn_http_req_t *conn_req(conn_t *c)
{
    if (!c->req) {
        jn_http_req_t *r = calloc(1, sizeof *r);
        if (!r)
            return NULL;
        r->c = c;
        jn_buf_init(&r->hdrs, HDRS_MAX);
        c->req = r;
    }
    return c->req;
}

/* Percent-decodes the matched parameters into r->pbuf. */
static int req_decode_params(jn_http_req_t *r)
{
    size_t need = 0;
    for (size_t i = 0; i < r->nparams; i++)
        need += r->raw[i].len + 1;
    if (need > r->pbuf_cap) {
        size_t ncap = need < 256 ? 256 : need;
        char *n = realloc(r->pbuf, ncap);
        if (!n)
            return JN_ENOMEM;
        r->pbuf = n;
        r->pbuf_cap = ncap;
    }
    size_t off = 0;
    for (size_t i = 0; i < r->nparams; i++) {
        int n = jn_http_urldecode(r->raw[i].p, r->raw[i].len, r->pbuf + off, false);
        if (n < 0)
            return JN_EINVAL;
        r->poff[i] = off;
        off += (size_t)n + 1;
    }
    return 0;
}

static void req_respond_status_error(jn_http_req_t *r, int status);

/* Starts the request whose head is parsed: routing and framing checks.
 * Returns false when the connection answered an error and will close. */
static bool req_begin(conn_t *c, jn_http_req_t *r, size_t head_len)
{
    jn_httpd_t *s = c->srv;
    r->head_len = head_len;
    r->body_len = 0;
    r->chunked = r->head.chunked;
    r->active = false;
    r->streaming = false;
    r->stream_chunked = false;
    r->is_head = r->head.method_len == 4 && memcmp(r->head.method, "HEAD", 4) == 0;
    r->data = NULL;
    r->on_abort = NULL;
    r->on_drain = NULL;
    jn_buf_reset(&r->hdrs);
    if (s->m_lat)
        r->t0_ns = uv_hrtime();
    if (r->chunked) {
        jn_http_chunked_init(&r->ch);
    } else if (r->head.content_length > 0) {
        if ((uint64_t)r->head.content_length > s->cfg.max_body) {
            conn_error(c, 413, "request body too large");
            return false;
        }
        r->body_len = (uint64_t)r->head.content_length;
    }
    req_route(s, r);
    bool has_body = r->chunked || r->body_len > 0;
    if (has_body && r->head.expect_continue && r->head.minor_version == 1 &&
        c->in_len - c->in_off == head_len) {
        if (r->err_status) {
            /* Refuse before the body is sent, then close: the body the
             * client may still send cannot be framed. */
            r->head.keep_alive = false;
            r->chunked = false;
            r->body_len = 0;
            return true;
        }
        if (jn_buf_append_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n") < 0) {
            conn_close(c);
            return false;
        }
    }
    return true;
}

/* Advances the request at in_off: body framing, then the handler.
 * Returns true when a request was dispatched (loop again). */
static bool conn_step(conn_t *c)
{
    jn_httpd_t *s = c->srv;
    size_t avail = c->in_len - c->in_off;
    jn_http_req_t *r;
    if (c->state == ST_IDLE || c->state == ST_HEAD) {
        if (avail == 0) {
            if (c->state != ST_IDLE) {
                c->state = ST_IDLE;
                c->t_mark = uv_now(s->loop);
            }
            return false;
        }
        if (c->state == ST_IDLE) {
            c->state = ST_HEAD;
            c->t_mark = uv_now(s->loop);
        }
        if (!(r = conn_req(c))) {
            conn_close(c);
            return false;
        }
        int status = 400;
        int rc = jn_http_parse_request(c->in + c->in_off, avail, &s->cfg.limits, &r->head, &status);
        if (rc == JN_EPARTIAL)
            return false;
        if (rc <= 0) {
            status = status >= 400 && status <= 599 ? status : 400;
            conn_error(c, status, status == 414   ? "request line too long"
                              : status == 431 ? "request headers too large"
                              : status == 505 ? "HTTP version not supported"
                              : status == 501 ? "transfer coding not implemented"
                                              : "malformed request");
            return false;
        }
        c->state = ST_BODY;
        if (!req_begin(c, r, (size_t)rc))
            return false;
    }
    r = c->req;
    if (c->state != ST_BODY)
        return false;
    char *start = c->in + c->in_off;
    size_t total;
    if (r->chunked) {
        for (;;) {
            size_t at = r->head_len + r->body_len;
            size_t len = c->in_len - c->in_off - at, consumed = 0;
            if (len == 0)
                break;
            int rc = jn_http_chunked_decode(&r->ch, start + at, &len, &consumed);
            if (rc < 0) {
                conn_error(c, 400, "bad chunked framing");
                return false;
            }
            /* Keep the undecoded rest right after the decoded body. */
            size_t rest = c->in_len - c->in_off - at - consumed;
            if (consumed > len)
                memmove(start + at + len, start + at + consumed, rest);
            c->in_len -= consumed - len;
            r->body_len += len;
            if (r->body_len > s->cfg.max_body) {
                conn_error(c, 413, "request body too large");
                return false;
            }
            if (rc == 1) {
                r->chunked = false; /* complete: now a plain body */
                break;
            }
            if (consumed == 0)
                break;
        }
        if (r->chunked) {
            if (c->in_len - c->in_off >= s->in_max) {
                conn_error(c, 413, "request too large");
                return false;
            }
            return false;
        }
        total = r->head_len + r->body_len;
    } else {
        total = r->head_len + r->body_len;
        if (avail < total) {
            if (c->in_len - c->in_off >= s->in_max) {
                conn_error(c, 413, "request too large");
            }
            return false;
        }
    }
    /* Complete: hand it over. From here the buffer must not move. */
    c->state = ST_HANDLER;
    r->active = true;
    r->start = c->in_off;
    c->in_off += total; /* where the next request starts once this one is done */
    if (r->err_status) {
        req_respond_status_error(r, r->err_status);
        return true;
    }
    if (r->nparams && req_decode_params(r) < 0) {
        jn_http_respond_error(r, 400, "bad_request", "bad percent-encoding in path");
        return true;
    }
    r->rm->fn(r, r->rm->arg);
    return true;
}

/* Parses and dispatches everything the input holds, one request at a
 * time, then flushes all responses produced at once. */
static void conn_process(conn_t *c)
{
    if (c->processing || c->closing)
        return;
    c->processing = true;
    for (;;) {
        if (c->closing || c->want_close || c->above_hw)
            break;
        if (c->ssl) {
            int rc = tls_pull(c);
            if (rc < 0) {
                conn_close(c);
                break;
            }
            if (rc == 1)
                c->want_close = true;
        }
        if (c->state == ST_HANDLER)
            break;
        if (conn_pending(c) > c->srv->cfg.out_high_water)
            break;
        if (!conn_step(c))
            break;
    }
    c->processing = false;
    if (c->closing)
        return;
    /* Keep a partial head at the front so the next read has room. */
    if ((c->state == ST_IDLE || c->state == ST_HEAD) && c->in_off > 0) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    conn_flush(c);
    if (!c->closing)
        conn_update_read(c);
}

/* The handler finished |r|: count it, free the input it used, and go on
 * with pipelined requests (now, or from the idle handle). */
static void req_finish(jn_http_req_t *r, int status)
{
    conn_t *c = r->c;
    jn_httpd_t *s = c->srv;
    r->active = false;
    if (s->m_req[0]) {
        int cls = status / 100 - 2;
        jn_counter_inc(s->m_req[cls < 0 ? 0 : cls > 3 ? 3 : cls]);
    }
    if (s->m_lat)
        jn_histogram_observe(s->m_lat, (double)(uv_hrtime() - r->t0_ns) / 1e9);
    if (!r->head.keep_alive)
        c->want_close = true;
    c->state = ST_IDLE;
    c->t_mark = uv_now(s->loop);
    if (c->in_full) {
        c->in_full = false;
    }
    if (!c->processing)
        conn_schedule(c);
}

static bool req_usable(const jn_http_req_t *r, const char *what)
{
    if (!r || !r->active || r->streaming) {
        jn_warn("http: %s on a request that is not waiting for a response", what);
        return false;
    }
    return true;
}

static bool req_close_after(const jn_http_req_t *r)
{
    return !r->head.keep_alive || r->c->want_close || r->c->srv->freeing;
}

/* Writes a whole response; on failure (too big) a 500 instead. */
static void req_send(jn_http_req_t *r, int status, const char *ctype, const void *body, size_t len,
                     const jn_buf_t *extra)
{
    conn_t *c = r->c;
    size_t mark = c->out.len;
    bool nobody = status == 204 || status == 304 || (status >= 100 && status < 200);
    bool v10ka = r->head.minor_version == 0 && r->head.keep_alive;
    int rc = put_head(c, status, ctype, nobody ? -2 : (int64_t)len, req_close_after(r), v10ka,
                      extra ? extra : &r->hdrs);
    if (rc == 0 && !nobody && !r->is_head && len)
        rc = jn_buf_append(&c->out, body, len);
    if (rc < 0) {
        c->out.len = mark;
        r->head.keep_alive = false;
        size_t blen = 0;
        char *eb = error_body("internal", "response too large", &blen);
        if (eb && put_head(c, 500, "application/json", (int64_t)blen, true, false, NULL) == 0 &&
            jn_buf_append(&c->out, eb, blen) == 0)
            status = 500;
        else
            c->out.len = mark;
        free(eb);
    }
    req_finish(r, status);
}

void jn_http_respond(jn_http_req_t *req, int status, const char *ctype, const void *body, size_t len)
{
    if (!req_usable(req, "respond"))
        return;
    req_send(req, status, ctype, body, len, NULL);
}

void jn_http_respond_json(jn_http_req_t *req, int status, const json_t *json)
{
    if (!req_usable(req, "respond_json"))
        return;
    char *s = json_dumps(json, JSON_COMPACT);
    if (!s) {
        req_send(req, 500, "application/json", "{\"code\":\"internal\",\"message\":\"json\"}", 37, NULL);
        return;
    }
    req_send(req, status, "application/json", s, strlen(s), NULL);
    free(s);
}

void jn_http_respond_error(jn_http_req_t *req, int status, const char *code, const char *fmt, ...)
{
    if (!req_usable(req, "respond_error"))
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t blen = 0;
    char *b = error_body(code, msg, &blen);
    if (!b) {
        req_send(req, status, "application/json", "{}", 2, NULL);
        return;
    }
    req_send(req, status, "application/json", b, blen, NULL);
    free(b);
}

/* 404 / 405 for an unrouted request (405 with Allow). */
static void req_respond_status_error(jn_http_req_t *r, int status)
{
    if (status == 405 && r->err_node) {
        jn_buf_t *h = &r->hdrs;
        const rnode_t *n = r->err_node;
        bool has_get = false, has_head = false;
        int rc = jn_buf_append_str(h, "Allow: ");
        for (size_t i = 0; i < n->nmethods && rc == 0; i++) {
            has_get |= strcmp(n->methods[i].method, "GET") == 0;
            has_head |= strcmp(n->methods[i].method, "HEAD") == 0;
            if (i)
                rc = jn_buf_append(h, ", ", 2);
            if (rc == 0)
                rc = jn_buf_append_str(h, n->methods[i].method);
        }
        if (rc == 0 && has_get && !has_head)
            rc = jn_buf_append_str(h, ", HEAD");
        if (rc == 0)
            rc = jn_buf_append(h, "\r\n", 2);
        (void)rc;
        jn_http_respond_error(r, 405, "method_not_allowed", "method %.*s not allowed here",
                              (int)(r->head.method_len > 32 ? 32 : r->head.method_len), r->head.method);
        return;
    }
    jn_http_respond_error(r, status, status_code_name(status), "no route for %.*s",
                          (int)(r->head.path_len > 200 ? 200 : r->head.path_len), r->head.path);
}

/* ---- streaming ---- */

int jn_http_stream_begin(jn_http_req_t *req, int status, const char *ctype)
{
    if (!req_usable(req, "stream_begin"))
        return JN_ESTATE;
    conn_t *c = req->c;
    req->stream_chunked = req->head.minor_version >= 1;
    if (!req->stream_chunked)
        req->head.keep_alive = false; /* HTTP/1.0: the close ends the body */
    size_t mark = c->out.len;
    int rc = put_head(c, status, ctype, req->stream_chunked ? -1 : -2,
                      req_close_after(req), false, &req->hdrs);
    if (rc < 0) {
        c->out.len = mark;
        return rc;
    }
    req->streaming = true;
    req->status = status;
    if (!c->processing)
        conn_schedule(c);
    return 0;
}

int jn_http_stream_write(jn_http_req_t *req, const void *data, size_t len)
{
    if (!req || !req->active || !req->streaming)
        return JN_ESTATE;
    conn_t *c = req->c;
    jn_httpd_t *s = c->srv;
    if (len == 0 || req->is_head)
        return 0;
    size_t pend = conn_pending(c);
    if (pend + len + 24 > 2 * s->cfg.out_high_water)
        return JN_ETOOBIG;
    size_t mark = c->out.len;
    int rc = 0;
    if (req->stream_chunked) {
        char hx[20];
        int n = snprintf(hx, sizeof hx, "%zx\r\n", len);
        rc = jn_buf_append(&c->out, hx, (size_t)n);
    }
    if (rc == 0)
        rc = jn_buf_append(&c->out, data, len);
    if (rc == 0 && req->stream_chunked)
        rc = jn_buf_append(&c->out, "\r\n", 2);
    if (rc < 0) {
        c->out.len = mark;
        return rc;
    }
    if (!c->processing)
        conn_schedule(c);
    if (conn_pending(c) > s->cfg.out_high_water) {
        c->above_hw = true; /* promises a drain callback */
        return JN_EAGAIN;
    }
    return 0;
}

void jn_http_stream_end(jn_http_req_t *req)
{
    if (!req || !req->active || !req->streaming) {
        jn_warn("http: stream_end on a request that is not streaming");
        return;
    }
    conn_t *c = req->c;
    if (req->stream_chunked && !req->is_head && jn_buf_append(&c->out, "0\r\n\r\n", 5) < 0)
        req->head.keep_alive = false;
    req->streaming = false;
    req_finish(req, req->status);
}

/* ---- request accessors ---- */

const jn_http_request_t *jn_http_req_head(const jn_http_req_t *req)
{
    return &req->head;
}

const uint8_t *jn_http_req_body(const jn_http_req_t *req, size_t *len)
{
    *len = (size_t)req->body_len;
    return (const uint8_t *)req->c->in + req->start + req->head_len;
}

const char *jn_http_req_param(const jn_http_req_t *req, const char *name)
{
    if (!req->rm)
        return NULL;
    for (size_t i = 0; i < req->nparams && i < req->rm->nnames; i++)
        if (strcmp(req->rm->names[i], name) == 0)
            return req->pbuf + req->poff[i];
    return NULL;
}

int jn_http_req_query(const jn_http_req_t *req, const char *name, char *out, size_t outlen)
{
    return jn_http_query_get(req->head.query, req->head.query_len, name, out, outlen);
}

const char *jn_http_req_header(const jn_http_req_t *req, const char *name, size_t *len)
{
    const jn_http_header_t *h = jn_http_find_header(&req->head, name);
    if (!h)
        return NULL;
    if (len)
        *len = h->value_len;
    return h->value;
}

const char *jn_http_req_peer(const jn_http_req_t *req)
{
    return req->c->peer;
}

bool jn_http_req_peer_is_loopback(const jn_http_req_t *req)
{
    return req->c->loopback;
}

bool jn_http_req_is_tls(const jn_http_req_t *req)
{
    return req->c->ssl != NULL;
}

void jn_http_req_set_data(jn_http_req_t *req, void *data)
{
    req->data = data;
}

void *jn_http_req_data(const jn_http_req_t *req)
{
    return req->data;
}

void jn_http_req_on_abort(jn_http_req_t *req, jn_http_abort_cb cb)
{
    req->on_abort = cb;
}

void jn_http_req_on_drain(jn_http_req_t *req, jn_http_drain_cb cb)
{
    req->on_drain = cb;
}

int jn_http_add_header(jn_http_req_t *req, const char *name, const char *value)
{
    if (!req || !req->active || req->streaming || !name || !value || !*name)
        return JN_EINVAL;
    for (const char *p = name; *p; p++)
        if (!is_tchar(*p))
            return JN_EINVAL;
    for (const char *p = value; *p; p++)
        if (*p == '\r' || *p == '\n')
            return JN_EINVAL;
    jn_buf_t *h = &req->hdrs;
    size_t mark = h->len;
    int rc;
    if ((rc = jn_buf_append_str(h, name)) < 0 || (rc = jn_buf_append(h, ": ", 2)) < 0 ||
        (rc = jn_buf_append_str(h, value)) < 0 || (rc = jn_buf_append(h, "\r\n", 2)) < 0) {
        h->len = mark;
        return rc;
    }
    return 0;
}

/* ---- accepting ---- */

static void on_refused_closed(uv_handle_t *h)
{
    jn_httpd_t *s = h->data;
    free(h);
    srv_handle_closed(s);
}

static void conn_set_peer(conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    c->peer[0] = '\0';
    c->loopback = false;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0)
        return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        uv_ip4_name(a, c->peer, sizeof c->peer);
        c->loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, c->peer, sizeof c->peer);
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        const uint8_t *b = a->sin6_addr.s6_addr;
        c->loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) ||
                      (memcmp(b, v4mapped, 12) == 0 && b[12] == 127);
    }
}

static void on_connection(uv_stream_t *ls, int status)
{
    listener_t *l = ls->data;
    jn_httpd_t *s = l->srv;
    if (status < 0) {
        jn_warn("http: accept failed: %s", uv_strerror(status));
        return;
    }
    if (s->nconns >= s->cfg.max_connections) {
        uv_tcp_t *t = malloc(sizeof *t);
        if (!t || uv_tcp_init(s->loop, t) < 0) {
            free(t);
            return;
        }
        t->data = s;
        s->handles++;
        (void)uv_accept(ls, (uv_stream_t *)t);
        uv_close((uv_handle_t *)t, on_refused_closed);
        return;
    }
    conn_t *c = calloc(1, sizeof *c);
    if (!c || uv_tcp_init(s->loop, &c->tcp) < 0) {
        free(c);
        return;
    }
    c->tcp.data = c;
    c->srv = s;
    c->lst = l;
    s->handles++;
    jn_list_init(&c->sched);
    jn_list_insert_tail(&s->conns, &c->link);
    s->nconns++;
    if (s->m_conns)
        s->m_conns->value++;
    /* The same cap on all three: out and wbuf swap on a partial write. */
    jn_buf_init(&c->out, s->out_max);
    jn_buf_init(&c->enc, s->out_max);
    jn_buf_init(&c->wbuf, s->out_max);
    c->state = ST_IDLE;
    c->t_mark = uv_now(s->loop);
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    (void)uv_tcp_nodelay(&c->tcp, 1);
    conn_set_peer(c);
    if (l->ctx) {
        BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
        c->ssl = SSL_new(l->ctx);
        if (!rb || !wb || !c->ssl) {
            BIO_free(rb);
            BIO_free(wb);
            conn_close(c);
            return;
        }
        SSL_set_bio(c->ssl, rb, wb);
        SSL_set_accept_state(c->ssl);
    }
    conn_update_read(c);
}

/* ---- the sweep and the idle handle ---- */

static void conn_shrink(conn_t *c)
{
    if (c->in && c->in_off == c->in_len) {
        free(c->in);
        c->in = NULL;
        c->in_off = c->in_len = c->in_cap = 0;
    }
    if (!c->writing && conn_pending(c) == 0) {
        jn_buf_free(&c->out);
        jn_buf_free(&c->enc);
        jn_buf_free(&c->wbuf);
    }
    if (c->req && !c->in) {
        req_free(c->req);
        c->req = NULL;
    }
}

static void on_sweep(uv_timer_t *t)
{
    jn_httpd_t *s = t->data;
    uint64_t now = uv_now(s->loop);
    jn_list_t *pos, *tmp;
    jn_list_foreach_safe(pos, tmp, &s->conns) {
        conn_t *c = jn_container_of(pos, conn_t, link);
        uint64_t age = now - c->t_mark;
        if (c->lingering || c->shutting) {
            if (age >= LINGER_MS)
                conn_close(c);
            continue;
        }
        if (c->writing && now - c->t_write >= s->cfg.idle_timeout_ms) {
            conn_close(c); /* the peer stopped reading */
            continue;
        }
        if (c->writing || conn_pending(c)) {
            if (c->state == ST_IDLE)
                c->t_mark = now; /* a slow reader is not idle */
            continue;
        }
        switch (c->state) {
        case ST_IDLE:
            if (age >= s->cfg.idle_timeout_ms)
                conn_close(c);
            else if (age >= SHRINK_MS && !c->want_close)
                conn_shrink(c);
            break;
        case ST_HEAD:
        case ST_BODY:
            if (age >= s->cfg.request_timeout_ms && !c->want_close) {
                conn_error(c, 408, "request timed out");
                conn_flush(c);
                if (!c->closing)
                    conn_update_read(c);
            }
            break;
        default:
            break;
        }
    }
}

static void on_idle(uv_idle_t *h)
{
    jn_httpd_t *s = h->data;
    jn_list_t batch;
    jn_list_init(&batch);
    /* Move the list so that work scheduled while it runs waits one turn. */
    if (!jn_list_empty(&s->deferred)) {
        batch.next = s->deferred.next;
        batch.prev = s->deferred.prev;
        batch.next->prev = &batch;
        batch.prev->next = &batch;
        jn_list_init(&s->deferred);
    }
    while (!jn_list_empty(&batch)) {
        conn_t *c = jn_container_of(batch.next, conn_t, sched);
        jn_list_remove(&c->sched);
        conn_process(c);
    }
    if (jn_list_empty(&s->deferred))
        uv_idle_stop(&s->idle);
}

/* ---- server ---- */

static void on_srv_handle_closed(uv_handle_t *h)
{
    srv_handle_closed(h->data);
}

jn_httpd_t *jn_httpd_new(uv_loop_t *loop, const jn_httpd_config_t *cfg, jn_metrics_t *metrics)
{
    jn_httpd_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->loop = loop;
    if (cfg)
        s->cfg = *cfg;
    else
        jn_httpd_config_default(&s->cfg);
    if (s->cfg.out_high_water == 0)
        s->cfg.out_high_water = 1u << 20;
    if (s->cfg.idle_timeout_ms == 0)
        s->cfg.idle_timeout_ms = 60000;
    if (s->cfg.request_timeout_ms == 0)
        s->cfg.request_timeout_ms = 30000;
    s->in_max = s->cfg.limits.max_header_bytes + s->cfg.max_body + IN_SLACK;
    s->out_max = 2 * s->cfg.out_high_water + MAX_RESPONSE;
    jn_list_init(&s->conns);
    jn_list_init(&s->deferred);
    if (!(s->scratch = malloc(TLS_SCRATCH)))
        goto fail;
    if (metrics) {
        static const char *const cls[4] = {"door=\"http\",code=\"2xx\"", "door=\"http\",code=\"3xx\"",
                                           "door=\"http\",code=\"4xx\"", "door=\"http\",code=\"5xx\""};
        for (int i = 0; i < 4; i++)
            s->m_req[i] = jn_metrics_counter(metrics, "junction_http_requests_total",
                                             "HTTP requests answered, by status class", cls[i]);
        s->m_conns = jn_metrics_gauge(metrics, "junction_http_connections", "Open HTTP connections", "");
        s->m_lat = jn_metrics_histogram(metrics, "junction_http_request_seconds",
                                        "HTTP request latency, head received to response queued", "",
                                        jn_metrics_latency_buckets, jn_metrics_latency_nbuckets);
        if (!s->m_req[0] || !s->m_req[1] || !s->m_req[2] || !s->m_req[3] || !s->m_conns || !s->m_lat)
            goto fail;
    }
    uv_idle_init(loop, &s->idle);
    s->idle.data = s;
    uv_timer_init(loop, &s->sweep);
    s->sweep.data = s;
    s->handles = 2;
    uint64_t iv = s->cfg.idle_timeout_ms < s->cfg.request_timeout_ms ? s->cfg.idle_timeout_ms
                                                                     : s->cfg.request_timeout_ms;
    iv /= 4;
    iv = iv < 10 ? 10 : iv > 1000 ? 1000 : iv;
    uv_timer_start(&s->sweep, on_sweep, iv, iv);
    return s;
fail:
    free(s->scratch);
    free(s);
    return NULL;
}

void jn_httpd_free(jn_httpd_t *s)
{
    if (!s || s->freeing)
        return;
    s->freeing = true;
    jn_list_t *pos, *tmp;
    jn_list_foreach_safe(pos, tmp, &s->conns) {
        conn_t *c = jn_container_of(pos, conn_t, link);
        /* Best effort: what is queued (the last chunk of a live feed ended
         * at shutdown) goes out if the socket takes it now; nothing waits. */
        if (!c->writing)
            conn_flush(c);
        conn_close(c);
    }
    for (size_t i = 0; i < s->nlst; i++) {
        s->lst[i]->tcp.data = s;
        s->handles++;
        uv_close((uv_handle_t *)&s->lst[i]->tcp, on_srv_handle_closed);
    }
    uv_timer_stop(&s->sweep);
    uv_close((uv_handle_t *)&s->sweep, on_srv_handle_closed);
    uv_close((uv_handle_t *)&s->idle, on_srv_handle_closed);
}

static SSL_CTX *tls_ctx_new(const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return NULL;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

int jn_httpd_listen(jn_httpd_t *s, const char *host, int port, const char *cert_file, const char *key_file)
{
    struct sockaddr_storage ss;
    char h[64];
    SSL_CTX *ctx = NULL;
    listener_t *l = NULL;
    if (!host || port < 0 || port > 65535 || s->nlst == MAX_LISTENERS || s->freeing)
        return JN_EINVAL;
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        if (hl - 2 >= sizeof h)
            return JN_EINVAL;
        memcpy(h, host + 1, hl - 2);
        h[hl - 2] = '\0';
        host = h;
    }
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
        return JN_EINVAL;
    if ((cert_file && *cert_file) || (key_file && *key_file)) {
        if (!cert_file || !key_file || !(ctx = tls_ctx_new(cert_file, key_file))) {
            jn_error("http: cannot load TLS certificate %s / key %s", cert_file ? cert_file : "-",
                     key_file ? key_file : "-");
            return JN_EINVAL;
        }
    }
    if (!(l = calloc(1, sizeof *l))) {
        SSL_CTX_free(ctx);
        return JN_ENOMEM;
    }
    l->srv = s;
    l->ctx = ctx;
    uv_tcp_init(s->loop, &l->tcp);
    l->tcp.data = l;
    /* libuv sets SO_REUSEADDR on bind. */
    int rc = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, 4096, on_connection);
    if (rc < 0) {
        jn_error("http: cannot listen on %s:%d: %s", host, port, uv_strerror(rc));
        goto fail;
    }
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&bound, &blen) == 0)
        l->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    s->lst[s->nlst++] = l;
    jn_info("http: listening on %s:%d%s", host, l->port, ctx ? " (TLS)" : "");
    return 0;
fail:
    /* The handle is open: close it; on_refused_closed frees it, and with
     * it the listener whose first member it is. */
    l->tcp.data = s;
    s->handles++;
    SSL_CTX_free(ctx);
    uv_close((uv_handle_t *)&l->tcp, on_refused_closed);
    return JN_EIO;
}

int jn_httpd_port(const jn_httpd_t *s, int listener_index)
{
    if (listener_index < 0 || (size_t)listener_index >= s->nlst)
        return JN_EINVAL;
    return s->lst[listener_index]->port;
}

size_t jn_httpd_connections(const jn_httpd_t *s)
{
    return s->nconns;
}
