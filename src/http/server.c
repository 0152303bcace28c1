/* server.c - the HTTP/1.1 server: request framing, routing, responses.
 *
 * Sockets, TLS, buffers, backpressure and the timers live in the
 * connection layer (net/conn.h); this file is an on_data handler on top
 * of it. One HTTP connection is a small struct; the request struct (whose
 * parsed head holds 100 header views) is taken for a request and given
 * back to the server's spares as soon as the connection has nothing more
 * to parse (answered at once), or after SHRINK_MS idle (answered later:
 * the handler may still use it inside the call that answers), so that
 * 10,000 idle keep-alive connections cost little.
 *
 * Input: requests are parsed straight from the connection's input buffer
 * (no copy). on_data parses and dispatches one request at a time and
 * consumes only the requests that are answered. When a handler keeps a
 * request (answers later), on_data pauses the connection and returns the
 * offset of that request: the connection layer then neither moves nor
 * frees the buffer, so the views of the head and body stay valid. When
 * the answer comes, the request's bytes are consumed and reading resumes,
 * which offers the pipelined requests behind it again. A request whose
 * head or body is incomplete is left unconsumed; its head is parsed again
 * when the buffer moved. A chunked body is decoded into a buffer of the
 * request (the input stays untouched, so a re-parse sees the same bytes).
 *
 * Output: responses are built in the connection's output buffer; the
 * connection layer flushes everything produced by one read at once
 * (pipelined responses leave in one write) and batches output produced
 * outside a read (async handlers, streams) from its idle handle, so the
 * abort callback never runs inside jn_http_respond or
 * jn_http_stream_write.
 *
 * Timeouts: one deadline per connection (jn_conn_set_timeout): idle
 * keep-alive (after SHRINK_MS the request struct is given back first),
 * slow request (408). Write stalls and lingering closes are the
 * connection layer's.
 */
#include "server.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/asan.h"
#include "../common/list.h"
#include "../common/log.h"
#include "../net/conn.h"

#define MAX_PARAMS 8           /* route parameters per pattern */
#define MAX_LISTENERS 16
#define IN_SLACK 8192          /* input cap = head + body + slack */
#define MAX_RESPONSE (64u << 20) /* one complete response may pass high water by this */
#define HDRS_MAX 16384         /* extra response headers of a handler */
#define LINGER_MS 2000         /* discard input this long after a closing response */
#define SHRINK_MS 1000         /* give buffers back after being idle this long */
#define SPARE_REQS 64          /* request structs a server keeps for reuse */
#define CHUNK_STEP 65536       /* raw chunked input decoded per step */
#define BUSY_RECHECK_MS 100    /* re-check a timed-out conn that still has output */

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

typedef struct conn conn_t;

struct jn_http_req {
    conn_t *c;
    jn_http_request_t head;     /* views into c->in */
    const char *base;           /* where the head was parsed (re-parse when it moved) */
    size_t start;               /* offset of the request in c->in once dispatched */
    size_t head_len;
    uint64_t body_len;          /* Content-Length, or decoded so far when chunked */
    size_t chunk_in;            /* chunked: raw body bytes decoded so far */
    size_t total;               /* bytes of the whole request in the input */
    bool chunked;               /* chunked body still being decoded */
    bool body_decoded;          /* the body is in |body|, not in the input */
    jn_http_chunked_t ch;
    jn_buf_t body;              /* decoded chunked body */
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
    jn_http_req_t *next_spare;  /* in srv->spares */
};

struct conn {
    jn_conn_t *nc;              /* the connection below */
    jn_httpd_t *srv;
    jn_list_t link;             /* srv->conns */
    const char *in;             /* the unconsumed input offered by on_data: valid
                                   during on_data, and while held */
    size_t in_off, in_len;      /* parse position and end within |in| */
    jn_http_req_t *req;         /* taken for a request, given back to srv->spares when idle */
    uint8_t state;              /* enum conn_state */
    bool processing;            /* inside on_data */
    bool held;                  /* paused with the active request kept unconsumed */
    bool want_close;            /* close after the output is flushed */
    bool upgraded;              /* handed to another owner inside on_data */
    bool shrunk;                /* idle: the request struct was given back */
};

struct jn_httpd {
    uv_loop_t *loop;
    jn_httpd_config_t cfg;
    size_t in_max;
    size_t out_max;
    rnode_t root;
    jn_net_t *net;
    jn_listener_t *lst[MAX_LISTENERS];
    size_t nlst;
    jn_list_t conns;
    size_t nconns;
    jn_http_req_t *spares;      /* request structs of idle connections, for reuse */
    size_t nspares;
    bool freeing;
    jn_counter_t *m_req[4];     /* 2xx 3xx 4xx 5xx */
    jn_gauge_t *m_conns;
    jn_histogram_t *m_lat;
};

static void conn_process(conn_t *c);
static void conn_enter(conn_t *c, int state);

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
static int put_head(jn_buf_t *o, int status, const char *ctype, int64_t clen, bool close,
                    bool v10_keepalive, const jn_buf_t *extra)
{
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

static void count_status(jn_httpd_t *s, int status)
{
    if (s->m_req[0]) {
        int cls = status / 100 - 2;
        jn_counter_inc(s->m_req[cls < 0 ? 0 : cls > 3 ? 3 : cls]);
    }
}

/* Writes an error response outside any handler (parse errors, 408, 413)
 * and closes the connection after it. */
static void conn_error(conn_t *c, int status, const char *msg)
{
    size_t blen = 0;
    char *body = error_body(status_code_name(status), msg, &blen);
    jn_buf_t *o = jn_conn_outbuf(c->nc);
    if (o) {
        size_t mark = o->len;
        if (!body || put_head(o, status, "application/json", (int64_t)blen, true, false, NULL) < 0 ||
            jn_buf_append(o, body, blen) < 0)
            o->len = mark;
        jn_conn_commit(c->nc, 0);
    }
    free(body);
    count_status(c->srv, status);
    c->want_close = true;
}

/* ---- connection lifetime ---- */

static void req_free(jn_http_req_t *r)
{
    if (!r)
        return;
    jn_buf_free(&r->hdrs);
    jn_buf_free(&r->body);
    free(r->pbuf);
    free(r);
}

/* Takes |c| out of the server's books (closed or handed over). */
static void conn_unlink(conn_t *c)
{
    jn_httpd_t *s = c->srv;
    jn_list_remove(&c->link);
    s->nconns--;
    if (s->m_conns)
        s->m_conns->value--;
}

static void conn_free(conn_t *c)
{
    req_free(c->req);
    free(c);
}

/* Gives the idle connection's request struct to the server's spares (to
 * malloc when there are enough, and always under ASan). */
static void conn_release_req(conn_t *c)
{
    jn_httpd_t *s = c->srv;
    jn_http_req_t *r = c->req;
    c->req = NULL;
    c->shrunk = true;
    if (JN_ASAN || s->nspares >= SPARE_REQS) {
        req_free(r);
        return;
    }
    r->c = NULL;
    r->next_spare = s->spares;
    s->spares = r;
    s->nspares++;
}

/* Sets the state and the deadline that goes with it. */
static void conn_enter(conn_t *c, int state)
{
    const jn_httpd_config_t *cfg = &c->srv->cfg;
    c->state = (uint8_t)state;
    switch (state) {
    case ST_IDLE:
        /* First give the request struct back, then close at the idle timeout. */
        c->shrunk = cfg->idle_timeout_ms <= SHRINK_MS;
        jn_conn_set_timeout(c->nc, c->shrunk ? cfg->idle_timeout_ms : SHRINK_MS);
        break;
    case ST_HEAD:
        jn_conn_set_timeout(c->nc, cfg->request_timeout_ms);
        break;
    case ST_HANDLER:
        jn_conn_set_timeout(c->nc, 0);
        break;
    default:
        break; /* ST_BODY: the head's deadline covers the body too */
    }
}

static void http_on_close(jn_conn_t *nc, int reason)
{
    conn_t *c = jn_conn_ctx(nc);
    jn_http_req_t *r = c->req;
    (void)reason;
    conn_unlink(c);
    if (r && r->active) {
        r->active = false;
        if (r->on_abort)
            r->on_abort(r, r->data);
    }
    conn_free(c);
}

/* The peer half-closed: a request being handled is aborted (its answer
 * could not be read); answers already queued are still flushed. */
static void http_on_eof(jn_conn_t *nc)
{
    conn_t *c = jn_conn_ctx(nc);
    if (c->req && c->req->active)
        jn_conn_abort(nc);
    else
        jn_conn_close(nc);
}

static void http_on_drain(jn_conn_t *nc)
{
    conn_t *c = jn_conn_ctx(nc);
    jn_http_req_t *r = c->req;
    /* A streaming writer may go on; the connection layer then offers the
     * pipelined input again. */
    if (r && r->active && r->on_drain)
        r->on_drain(r, r->data);
}

static void http_on_timeout(jn_conn_t *nc)
{
    conn_t *c = jn_conn_ctx(nc);
    const jn_httpd_config_t *cfg = &c->srv->cfg;
    if (jn_conn_pending(nc) > 0) {
        /* A slow reader is not idle; the write stall rule of the
         * connection layer bounds it. */
        jn_conn_set_timeout(nc, c->state == ST_IDLE ? cfg->idle_timeout_ms : BUSY_RECHECK_MS);
        return;
    }
    switch (c->state) {
    case ST_IDLE:
        if (c->shrunk) {
            jn_conn_abort(nc);
            break;
        }
        conn_release_req(c);
        jn_conn_set_timeout(nc, cfg->idle_timeout_ms - SHRINK_MS);
        break;
    case ST_HEAD:
    case ST_BODY:
        if (!c->want_close) {
            conn_error(c, 408, "request timed out");
            jn_conn_close(nc);
        }
        break;
    default:
        break;
    }
}

/* ---- input ---- */

/* Parses the head again after the input buffer moved. */
static void req_rebase(conn_t *c)
{
    jn_http_req_t *r = c->req;
    int st = 0;
    r->base = c->in + c->in_off;
    int rc = jn_http_parse_request(r->base, r->head_len, &c->srv->cfg.limits, &r->head, &st);
    (void)rc; /* same bytes, same result */
    if (r->rm || r->err_status)
        req_route(c->srv, r);
}

static jn_http_req_t *conn_req(conn_t *c)
{
    jn_httpd_t *s = c->srv;
    if (!c->req && s->spares) {
        c->req = s->spares;
        s->spares = c->req->next_spare;
        s->nspares--;
        c->req->c = c;
    } else if (!c->req) {
        jn_http_req_t *r = calloc(1, sizeof *r);
        if (!r)
            return NULL;
        r->c = c;
        jn_buf_init(&r->hdrs, HDRS_MAX);
        jn_buf_init(&r->body, s->cfg.max_body + CHUNK_STEP);
        c->req = r;
    }
    c->shrunk = false;
    return c->req;
}

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
    r->base = c->in + c->in_off;
    r->head_len = head_len;
    r->body_len = 0;
    r->chunk_in = 0;
    r->chunked = r->head.chunked;
    r->body_decoded = r->chunked;
    jn_buf_reset(&r->body);
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
        jn_conn_need_input(c->nc, head_len + (size_t)r->body_len);
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
            r->body_decoded = false;
            r->body_len = 0;
            return true;
        }
        jn_buf_t *o = jn_conn_outbuf(c->nc);
        if (!o || jn_buf_append_str(o, "HTTP/1.1 100 Continue\r\n\r\n") < 0) {
            jn_conn_abort(c->nc);
            return false;
        }
        jn_conn_commit(c->nc, 0);
    }
    return true;
}

/* Decodes the chunked body received so far into r->body. Returns 1 when
 * complete, 0 when more input is needed, or -1 after answering an error. */
static int req_dechunk(conn_t *c, jn_http_req_t *r)
{
    jn_httpd_t *s = c->srv;
    const char *start = c->in + c->in_off;
    size_t avail = c->in_len - c->in_off;
    for (;;) {
        size_t at = r->head_len + r->chunk_in;
        size_t n = avail - at, consumed = 0;
        if (n == 0)
            return 0;
        n = n < CHUNK_STEP ? n : CHUNK_STEP;
        /* The decoder works in place: give it a copy at the body's end,
         * so the input stays as received (a re-parse of the head after
         * the buffer moved sees the same bytes). */
        if (jn_buf_reserve(&r->body, n) < 0) {
            conn_error(c, 413, "request body too large");
            return -1;
        }
        char *dst = (char *)r->body.data + r->body.len;
        memcpy(dst, start + at, n);
        size_t len = n;
        int rc = jn_http_chunked_decode(&r->ch, dst, &len, &consumed);
        if (rc < 0) {
            conn_error(c, 400, "bad chunked framing");
            return -1;
        }
        r->body.len += len;
        r->chunk_in += consumed;
        if (r->body.len > s->cfg.max_body) {
            conn_error(c, 413, "request body too large");
            return -1;
        }
        if (rc == 1)
            return 1;
        if (consumed == 0)
            return 0;
    }
}

/* Advances the request at in_off: head, body framing, then the handler.
 * Returns true when a request was dispatched (loop again). */
static bool conn_step(conn_t *c)
{
    jn_httpd_t *s = c->srv;
    size_t avail = c->in_len - c->in_off;
    jn_http_req_t *r;
    if (c->state == ST_IDLE || c->state == ST_HEAD) {
        if (avail == 0) {
            if (c->state != ST_IDLE)
                conn_enter(c, ST_IDLE);
            return false;
        }
        if (c->state == ST_IDLE)
            conn_enter(c, ST_HEAD);
        if (!(r = conn_req(c))) {
            jn_conn_abort(c->nc);
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
    if (r->base != c->in + c->in_off)
        req_rebase(c);
    size_t total;
    if (r->chunked) {
        int rc = req_dechunk(c, r);
        if (rc < 0)
            return false;
        if (rc == 0) {
            if (avail >= s->in_max)
                conn_error(c, 413, "request too large");
            return false;
        }
        r->chunked = false; /* complete: now a plain body */
        r->body_len = r->body.len;
        total = r->head_len + r->chunk_in;
    } else {
        total = r->head_len + (size_t)r->body_len;
        if (avail < total) {
            if (avail >= s->in_max)
                conn_error(c, 413, "request too large");
            return false;
        }
    }
    /* Complete: hand it over. From here the bytes must not move. */
    jn_conn_need_input(c->nc, 0);
    conn_enter(c, ST_HANDLER);
    r->active = true;
    r->start = c->in_off;
    r->total = total;
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

/* Parses and dispatches the input one request at a time. */
static void conn_process(conn_t *c)
{
    for (;;) {
        if (jn_conn_is_closing(c->nc) || c->want_close || c->upgraded || c->state == ST_HANDLER)
            break;
        if (jn_conn_above_high_water(c->nc))
            break; /* on_drain, then the rest is offered again */
        if (!conn_step(c))
            break;
    }
}

static size_t http_on_data(jn_conn_t *nc, const uint8_t *data, size_t len)
{
    conn_t *c = jn_conn_ctx(nc);
    c->in = (const char *)data;
    c->in_len = len;
    c->in_off = 0;
    c->processing = true;
    conn_process(c);
    c->processing = false;
    size_t used = c->in_off;
    if (c->upgraded) {
        conn_free(c); /* the new owner has the conn; the request is consumed */
        return used;
    }
    if (jn_conn_is_closing(nc))
        return used;
    if (c->state == ST_HANDLER) {
        /* Answered later: keep the request unconsumed and unmoved. */
        c->held = true;
        jn_conn_pause_reading(nc);
        return c->req->start;
    }
    if (c->want_close) {
        jn_conn_close(nc);
    } else if (c->state == ST_IDLE && c->req) {
        /* Answered, and no next request begun: the struct waits among the spares. */
        conn_release_req(c);
        jn_conn_set_timeout(nc, c->srv->cfg.idle_timeout_ms);
    }
    return used;
}

static const jn_conn_handler_t http_handler = {
    .on_data = http_on_data,
    .on_drain = http_on_drain,
    .on_close = http_on_close,
    .on_timeout = http_on_timeout,
    .on_eof = http_on_eof,
};

/* ---- requests ---- */

/* The handler finished |r|: count it and go on with pipelined requests
 * (now, when inside on_data, or once the connection offers them again). */
static void req_finish(jn_http_req_t *r, int status)
{
    conn_t *c = r->c;
    jn_httpd_t *s = c->srv;
    r->active = false;
    count_status(s, status);
    if (s->m_lat)
        jn_histogram_observe(s->m_lat, (double)(uv_hrtime() - r->t0_ns) / 1e9);
    if (!r->head.keep_alive)
        c->want_close = true;
    if (r->body.cap > CHUNK_STEP)
        jn_buf_free(&r->body); /* a big chunked body is not kept around */
    conn_enter(c, ST_IDLE);
    if (c->processing)
        return;
    if (c->held) {
        c->held = false;
        jn_conn_consume(c->nc, r->total);
        if (!c->want_close)
            jn_conn_resume_reading(c->nc);
    }
    if (c->want_close)
        jn_conn_close(c->nc);
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
    jn_buf_t *o = jn_conn_outbuf(c->nc);
    if (!o) {
        req_finish(r, status);
        return;
    }
    size_t mark = o->len;
    bool nobody = status == 204 || status == 304 || (status >= 100 && status < 200);
    bool v10ka = r->head.minor_version == 0 && r->head.keep_alive;
    int rc = put_head(o, status, ctype, nobody ? -2 : (int64_t)len, req_close_after(r), v10ka,
                      extra ? extra : &r->hdrs);
    if (rc == 0 && !nobody && !r->is_head && len)
        rc = jn_buf_append(o, body, len);
    if (rc < 0) {
        o->len = mark;
        r->head.keep_alive = false;
        size_t blen = 0;
        char *eb = error_body("internal", "response too large", &blen);
        if (eb && put_head(o, 500, "application/json", (int64_t)blen, true, false, NULL) == 0 &&
            jn_buf_append(o, eb, blen) == 0)
            status = 500;
        else
            o->len = mark;
        free(eb);
    }
    jn_conn_commit(c->nc, 0);
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
    jn_buf_t *o = jn_conn_outbuf(c->nc);
    if (!o)
        return JN_ECLOSED;
    req->stream_chunked = req->head.minor_version >= 1;
    if (!req->stream_chunked)
        req->head.keep_alive = false; /* HTTP/1.0: the close ends the body */
    size_t mark = o->len;
    int rc = put_head(o, status, ctype, req->stream_chunked ? -1 : -2, req_close_after(req), false, &req->hdrs);
    if (rc < 0) {
        o->len = mark;
        return rc;
    }
    req->streaming = true;
    req->status = status;
    jn_conn_commit(c->nc, 0);
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
    jn_buf_t *o = jn_conn_outbuf(c->nc);
    if (!o)
        return JN_ECLOSED;
    size_t pend = jn_conn_pending(c->nc);
    if (pend + len + 24 > 2 * s->cfg.out_high_water)
        return JN_ETOOBIG;
    size_t mark = o->len;
    int rc = 0;
    if (req->stream_chunked) {
        char hx[20];
        int n = snprintf(hx, sizeof hx, "%zx\r\n", len);
        rc = jn_buf_append(o, hx, (size_t)n);
    }
    if (rc == 0)
        rc = jn_buf_append(o, data, len);
    if (rc == 0 && req->stream_chunked)
        rc = jn_buf_append(o, "\r\n", 2);
    if (rc < 0) {
        o->len = mark;
        return rc;
    }
    jn_conn_commit(c->nc, 0);
    if (jn_conn_above_high_water(c->nc))
        return JN_EAGAIN; /* the drain callback will follow */
    return 0;
}

void jn_http_stream_end(jn_http_req_t *req)
{
    if (!req || !req->active || !req->streaming) {
        jn_warn("http: stream_end on a request that is not streaming");
        return;
    }
    conn_t *c = req->c;
    jn_buf_t *o = jn_conn_outbuf(c->nc);
    if (req->stream_chunked && !req->is_head) {
        if (!o || jn_buf_append(o, "0\r\n\r\n", 5) < 0)
            req->head.keep_alive = false;
        else
            jn_conn_commit(c->nc, 0);
    }
    req->streaming = false;
    req_finish(req, req->status);
}

/* ---- upgrade ---- */

jn_conn_t *jn_http_upgrade(jn_http_req_t *req, const char *extra_headers)
{
    if (!req_usable(req, "upgrade"))
        return NULL;
    conn_t *c = req->c;
    jn_conn_t *nc = c->nc;
    jn_httpd_t *s = c->srv;
    size_t xl = extra_headers ? strlen(extra_headers) : 0;
    if (!req->head.upgrade || req->head.minor_version != 1 || s->freeing ||
        (xl && (xl < 2 || memcmp(extra_headers + xl - 2, "\r\n", 2) != 0))) {
        jn_warn("http: upgrade refused (request without Upgrade, HTTP/1.0, or bad headers)");
        return NULL;
    }
    jn_buf_t *o = jn_conn_outbuf(nc);
    if (!o)
        return NULL;
    size_t mark = o->len;
    int rc = jn_buf_append_str(o, "HTTP/1.1 101 Switching Protocols\r\nServer: junction\r\n");
    if (rc == 0 && xl)
        rc = jn_buf_append(o, extra_headers, xl);
    if (rc == 0 && req->hdrs.len)
        rc = jn_buf_append(o, req->hdrs.data, req->hdrs.len);
    if (rc == 0)
        rc = jn_buf_append(o, "\r\n", 2);
    if (rc < 0) {
        o->len = mark;
        return NULL;
    }
    jn_conn_commit(nc, 0);
    req->active = false;
    count_status(s, 101);
    if (s->m_lat)
        jn_histogram_observe(s->m_lat, (double)(uv_hrtime() - req->t0_ns) / 1e9);
    /* Hand the connection over: no HTTP deadline, no HTTP callbacks. */
    conn_unlink(c);
    jn_conn_set_timeout(nc, 0);
    jn_conn_need_input(nc, 0);
    jn_conn_set_handler(nc, NULL, NULL);
    if (c->processing) {
        c->upgraded = true; /* on_data consumes the request and frees c */
    } else {
        if (c->held) {
            jn_conn_consume(nc, req->total);
            jn_conn_resume_reading(nc);
        }
        conn_free(c);
    }
    return nc;
}

/* ---- request accessors ---- */

const jn_http_request_t *jn_http_req_head(const jn_http_req_t *req)
{
    return &req->head;
}

const uint8_t *jn_http_req_body(const jn_http_req_t *req, size_t *len)
{
    *len = (size_t)req->body_len;
    if (req->body_decoded)
        return req->body.data ? req->body.data : (const uint8_t *)"";
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
    return jn_conn_peer(req->c->nc);
}

bool jn_http_req_peer_is_loopback(const jn_http_req_t *req)
{
    return jn_conn_is_loopback(req->c->nc);
}

bool jn_http_req_is_tls(const jn_http_req_t *req)
{
    return jn_conn_is_tls(req->c->nc);
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

static void http_on_accept(jn_conn_t *nc, void *arg)
{
    jn_httpd_t *s = arg;
    if (s->freeing || s->nconns >= s->cfg.max_connections) {
        jn_conn_abort(nc);
        return;
    }
    conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        jn_conn_abort(nc);
        return;
    }
    c->nc = nc;
    c->srv = s;
    jn_list_insert_tail(&s->conns, &c->link);
    s->nconns++;
    if (s->m_conns)
        s->m_conns->value++;
    jn_conn_set_limits(nc, s->in_max, s->cfg.out_high_water, s->out_max);
    jn_conn_set_handler(nc, &http_handler, c);
    conn_enter(c, ST_IDLE);
}

/* ---- server ---- */

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
    jn_net_config_t nc;
    jn_net_config_default(&nc);
    uint64_t iv = s->cfg.idle_timeout_ms < s->cfg.request_timeout_ms ? s->cfg.idle_timeout_ms
                                                                     : s->cfg.request_timeout_ms;
    iv /= 4;
    nc.tick_ms = (uint32_t)(iv < 10 ? 10 : iv > 1000 ? 1000 : iv);
    nc.linger_ms = LINGER_MS;
    nc.write_stall_ms = s->cfg.idle_timeout_ms; /* the peer stopped reading */
    nc.shrink_ms = SHRINK_MS;
    nc.in_max = s->in_max;
    nc.out_high_water = s->cfg.out_high_water;
    nc.out_max = s->out_max;
    if (!(s->net = jn_net_new(loop, &nc)))
        goto fail;
    return s;
fail:
    free(s);
    return NULL;
}

void jn_httpd_free(jn_httpd_t *s)
{
    if (!s || s->freeing)
        return;
    s->freeing = true;
    /* Best effort flush, then every connection closes: requests in flight
     * get their abort callback, upgraded connections their owner's
     * on_close. */
    jn_net_free(s->net);
    rnode_free(&s->root);
    while (s->spares) {
        jn_http_req_t *r = s->spares;
        s->spares = r->next_spare;
        req_free(r);
    }
    free(s);
}

int jn_httpd_listen(jn_httpd_t *s, const char *host, int port, const char *cert_file, const char *key_file)
{
    if (s->nlst == MAX_LISTENERS || s->freeing)
        return JN_EINVAL;
    jn_listener_t *l = NULL;
    int rc = jn_listener_open(s->net, "http", host, port, cert_file, key_file, http_on_accept, s, &l);
    if (rc < 0)
        return rc == JN_ENOMEM ? JN_ENOMEM : rc;
    s->lst[s->nlst++] = l;
    return 0;
}

int jn_httpd_port(const jn_httpd_t *s, int listener_index)
{
    if (listener_index < 0 || (size_t)listener_index >= s->nlst)
        return JN_EINVAL;
    return jn_listener_port(s->lst[listener_index]);
}

size_t jn_httpd_connections(const jn_httpd_t *s)
{
    return s->nconns;
}
