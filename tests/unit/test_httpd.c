/* test_httpd.c - the HTTP/1.1 server over real sockets.
 *
 * Each test runs a server in its own uv loop on the main thread and a
 * client in a pthread with plain blocking sockets (or OpenSSL). The client
 * records what it received; the main thread asserts on it after the loop
 * ends, since cmocka's assertions are not thread-safe.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/log.h"
#include "core/metrics.h"
#include "http/server.h"
#include "tls_client.h"

#define NOUT 12
#define OUTCAP 16384

typedef struct ctx ctx_t;
typedef void (*client_fn)(ctx_t *x);

struct ctx {
    int port;
    int tls_port;
    client_fn fn;
    uv_async_t done;
    jn_httpd_t *srv;
    char out[NOUT][OUTCAP]; /* responses as received */
    int rc[NOUT];           /* per-step results (eof seen, counts...) */
    int aborted;            /* abort callbacks run (main thread) */
    int drained;            /* drain callbacks run */
    char dir[64];
};

/* ---- client side (pthread) ---- */

/* The connection first (tls_client.h), then what it received. */
typedef struct cli {
    tls_cli_t t;
    char buf[1 << 16];
    size_t len;
} cli_t;

static cli_t *cli_open(int port, bool tls) { return tls_cli_open(sizeof(cli_t), port, tls); }
static void cli_close(cli_t *c) { tls_cli_close(c); }
static void cli_send(cli_t *c, const char *s) { tls_cli_send(&c->t, s); }

/* Reads more into the buffer; returns bytes read, 0 at EOF, -1 on error. */
static ssize_t cli_more(cli_t *c)
{
    if (c->len == sizeof c->buf)
        return -1;
    ssize_t n = tls_cli_read(&c->t, c->buf + c->len, sizeof c->buf - c->len);
    if (n > 0)
        c->len += (size_t)n;
    return n;
}

/* Length of a complete response at the front of the buffer, or 0. */
static size_t resp_len(const char *b, size_t n, bool head_req)
{
    const char *e = memmem(b, n, "\r\n\r\n", 4);
    if (!e)
        return 0;
    size_t hl = (size_t)(e - b) + 4;
    if (n >= 12 && memcmp(b, "HTTP/1.1 1", 10) == 0)
        return hl;
    if (head_req)
        return hl;
    char head[8192];
    size_t cp = hl < sizeof head - 1 ? hl : sizeof head - 1;
    memcpy(head, b, cp);
    head[cp] = '\0';
    const char *cl = strstr(head, "Content-Length: ");
    if (cl) {
        size_t blen = strtoul(cl + 16, NULL, 10);
        return n >= hl + blen ? hl + blen : 0;
    }
    if (strstr(head, "Transfer-Encoding: chunked")) {
        size_t p = hl;
        for (;;) {
            const char *le = memmem(b + p, n - p, "\r\n", 2);
            if (!le)
                return 0;
            size_t sz = strtoul(b + p, NULL, 16);
            p = (size_t)(le - b) + 2;
            if (n < p + sz + 2)
                return 0;
            p += sz + 2;
            if (sz == 0)
                return p;
        }
    }
    return hl; /* no body framing: the rest is read until EOF by the caller */
}

/* Receives one response into |out| (NUL-terminated). Returns its length or -1. */
static int cli_response(cli_t *c, char *out, bool head_req)
{
    for (;;) {
        size_t n = resp_len(c->buf, c->len, head_req);
        if (n) {
            size_t cp = n < OUTCAP - 1 ? n : OUTCAP - 1;
            memcpy(out, c->buf, cp);
            out[cp] = '\0';
            memmove(c->buf, c->buf + n, c->len - n);
            c->len -= n;
            return (int)n;
        }
        if (cli_more(c) <= 0) {
            size_t cp = c->len < OUTCAP - 1 ? c->len : OUTCAP - 1;
            memcpy(out, c->buf, cp);
            out[cp] = '\0';
            return -1;
        }
    }
}

/* Returns 1 when the server closed the connection (EOF after any buffered bytes). */
static int cli_eof(cli_t *c)
{
    c->len = 0;
    for (;;) {
        ssize_t n = cli_more(c);
        if (n == 0)
            return 1;
        if (n < 0)
            return c->t.ssl ? 1 : 0; /* TLS: a reset after close_notify counts */
        c->len = 0;
    }
}

static void *client_main(void *arg)
{
    ctx_t *x = arg;
    x->fn(x);
    uv_async_send(&x->done);
    return NULL;
}

/* ---- server side ---- */

typedef struct later {
    uv_timer_t t;
    jn_http_req_t *req;
    ctx_t *x;
    int step;
} later_t;

static ctx_t *g_ctx;
static uv_loop_t *g_loop;

static void later_closed(uv_handle_t *h)
{
    free(h->data);
}

static void later_abort(jn_http_req_t *req, void *data)
{
    (void)req;
    later_t *l = data;
    l->x->aborted++;
    uv_timer_stop(&l->t);
    uv_close((uv_handle_t *)&l->t, later_closed);
}

static void h_hello(jn_http_req_t *req, void *arg)
{
    (void)arg;
    jn_http_respond(req, 200, "text/plain", "hello", 5);
}

static void h_echo(jn_http_req_t *req, void *arg)
{
    (void)arg;
    size_t n;
    const uint8_t *b = jn_http_req_body(req, &n);
    assert_int_equal(jn_http_add_header(req, "X-Len", "yes"), 0);
    jn_http_respond(req, 200, "application/octet-stream", b, n);
}

static void async_fire(uv_timer_t *t)
{
    later_t *l = t->data;
    jn_http_respond(l->req, 200, "text/plain", "async", 5);
    uv_close((uv_handle_t *)&l->t, later_closed);
}

static later_t *later_new(jn_http_req_t *req, uv_timer_cb cb, uint64_t ms)
{
    later_t *l = calloc(1, sizeof *l);
    l->req = req;
    l->x = g_ctx;
    uv_timer_init(g_loop, &l->t);
    l->t.data = l;
    jn_http_req_set_data(req, l);
    jn_http_req_on_abort(req, later_abort);
    uv_timer_start(&l->t, cb, ms, 0);
    return l;
}

static void h_async(jn_http_req_t *req, void *arg)
{
    (void)arg;
    later_new(req, async_fire, 20);
}

static void hang_fire(uv_timer_t *t)
{
    (void)t; /* never answers: the client goes away first */
}

static void h_hang(jn_http_req_t *req, void *arg)
{
    (void)arg;
    later_new(req, hang_fire, 100000);
}

static void stream_fire(uv_timer_t *t)
{
    later_t *l = t->data;
    assert_int_equal(jn_http_stream_write(l->req, "def", 3), 0);
    jn_http_stream_end(l->req);
    uv_close((uv_handle_t *)&l->t, later_closed);
}

static void h_stream(jn_http_req_t *req, void *arg)
{
    (void)arg;
    assert_int_equal(jn_http_stream_begin(req, 200, "text/plain"), 0);
    assert_int_equal(jn_http_stream_write(req, "a", 1), 0);
    assert_int_equal(jn_http_stream_write(req, "bc", 2), 0);
    later_new(req, stream_fire, 10);
}

/* Writes until the output passes high water, then on drain ends. */
static void big_drain(jn_http_req_t *req, void *data)
{
    later_t *l = data;
    l->x->drained++;
    jn_http_stream_end(req);
    uv_close((uv_handle_t *)&l->t, later_closed);
}

static void h_big(jn_http_req_t *req, void *arg)
{
    (void)arg;
    static char blob[4096];
    memset(blob, 'x', sizeof blob);
    assert_int_equal(jn_http_stream_begin(req, 200, "text/plain"), 0);
    later_t *l = later_new(req, hang_fire, 100000);
    jn_http_req_on_drain(req, big_drain);
    int rc, n = 0;
    while ((rc = jn_http_stream_write(req, blob, sizeof blob)) == 0)
        n++;
    assert_int_equal(rc, JN_EAGAIN);
    (void)l;
}

static void h_params(jn_http_req_t *req, void *arg)
{
    (void)arg;
    char b[256];
    char q[32] = "-";
    if (jn_http_req_query(req, "q", q, sizeof q) < 0)
        q[0] = '-', q[1] = '\0';
    int n = snprintf(b, sizeof b, "id=%s part=%s q=%s", jn_http_req_param(req, "id"),
                     jn_http_req_param(req, "part"), q);
    jn_http_respond(req, 200, "text/plain", b, (size_t)n);
}

static void h_special(jn_http_req_t *req, void *arg)
{
    (void)arg;
    char b[256];
    int n = snprintf(b, sizeof b, "special part=%s", jn_http_req_param(req, "part"));
    jn_http_respond(req, 200, "text/plain", b, (size_t)n);
}

static void h_files(jn_http_req_t *req, void *arg)
{
    (void)arg;
    char b[256];
    int n = snprintf(b, sizeof b, "path=%s peer=%s lo=%d tls=%d", jn_http_req_param(req, "path"),
                     jn_http_req_peer(req), jn_http_req_peer_is_loopback(req), jn_http_req_is_tls(req));
    jn_http_respond(req, 200, "text/plain", b, (size_t)n);
}

static void h_json(jn_http_req_t *req, void *arg)
{
    (void)arg;
    json_t *j = json_pack("{s:i}", "n", 42);
    jn_http_respond_json(req, 201, j);
    json_decref(j);
}

/* After an upgrade: a raw protocol that echoes bytes upper-cased and
 * closes on 'q'. */
static size_t up_data(jn_conn_t *nc, const uint8_t *d, size_t n)
{
    char out[256];
    size_t i = 0;
    for (; i < n && i < sizeof out; i++) {
        if (d[i] == 'q') {
            assert_int_equal(jn_conn_write(nc, out, i), 0);
            jn_conn_close(nc);
            return i + 1;
        }
        out[i] = (char)(d[i] >= 'a' && d[i] <= 'z' ? d[i] - 32 : d[i]);
    }
    assert_int_equal(jn_conn_write(nc, out, i), 0);
    return i;
}

static void up_close(jn_conn_t *nc, int reason)
{
    (void)nc;
    (void)reason;
    g_ctx->rc[10]++;
}

static const jn_conn_handler_t up_handler = {.on_data = up_data, .on_close = up_close};

static void do_upgrade(jn_http_req_t *req)
{
    jn_conn_t *nc = jn_http_upgrade(req, "Upgrade: shout\r\nConnection: Upgrade\r\n");
    if (!nc) {
        jn_http_respond_error(req, 400, "bad_request", "no upgrade");
        return;
    }
    g_ctx->rc[11] = (int)jn_httpd_connections(g_ctx->srv) + 100;
    jn_conn_set_handler(nc, &up_handler, NULL);
}

static void h_upgrade(jn_http_req_t *req, void *arg)
{
    (void)arg;
    do_upgrade(req);
}

static void upgrade_fire(uv_timer_t *t)
{
    later_t *l = t->data;
    do_upgrade(l->req);
    uv_close((uv_handle_t *)&l->t, later_closed);
}

static void h_upgrade_async(jn_http_req_t *req, void *arg)
{
    (void)arg;
    later_new(req, upgrade_fire, 20);
}

static void on_done(uv_async_t *a)
{
    ctx_t *x = a->data;
    jn_httpd_free(x->srv);
    uv_close((uv_handle_t *)a, NULL);
}

static void add_routes(jn_httpd_t *s)
{
    assert_int_equal(jn_httpd_route(s, "GET", "/hello", h_hello, NULL), 0);
    assert_int_equal(jn_httpd_route(s, "POST", "/echo", h_echo, NULL), 0);
    assert_int_equal(jn_httpd_route(s, "PUT", "/echo", h_echo, NULL), 0);
    assert_int_equal(jn_httpd_route(s, "GET", "/async", h_async, NULL), 0);
    assert_int_equal(jn_httpd_route(s, "GET", "/hang", h_hang, NULL), 0);
    assert_int_equal(jn_httpd_route(s, "GET", "/stream", h_stream, NULL), 0);
    assert_int_equal(jn_httpd_route(s, "GET", "/big", h_big, NULL), 0);
    assert_int_equal(jn_httpd_route(s, "GET", "/things/{id}/parts/{part}", h_params, NULL), 0);
    assert_int_equal(jn_httpd_route(s, "GET", "/things/special/parts/{part}", h_special, NULL), 0);
    assert_int_equal(jn_httpd_route(s, "GET", "/files/{path*}", h_files, NULL), 0);
    assert_int_equal(jn_httpd_route(s, "POST", "/json", h_json, NULL), 0);
    assert_int_equal(jn_httpd_route(s, "GET", "/up", h_upgrade, NULL), 0);
    assert_int_equal(jn_httpd_route(s, "GET", "/upasync", h_upgrade_async, NULL), 0);
}

/* Runs |fn| in a client thread against a fresh server. */
static ctx_t *run(client_fn fn, const jn_httpd_config_t *cfg, bool tls, jn_metrics_t *m)
{
    static uv_loop_t loop;
    ctx_t *x = calloc(1, sizeof *x);
    g_ctx = x;
    g_loop = &loop;
    x->fn = fn;
    assert_int_equal(uv_loop_init(&loop), 0);
    jn_httpd_config_t def;
    jn_httpd_config_default(&def);
    x->srv = jn_httpd_new(&loop, cfg ? cfg : &def, m);
    assert_non_null(x->srv);
    add_routes(x->srv);
    assert_int_equal(jn_httpd_listen(x->srv, "localhost", 0, NULL, NULL), 0);
    x->port = jn_httpd_port(x->srv, 0);
    assert_true(x->port > 0);
    char cert[128], key[128];
    if (tls) {
        snprintf(x->dir, sizeof x->dir, "/tmp/test_httpd.XXXXXX");
        assert_non_null(mkdtemp(x->dir));
        tls_make_cert(x->dir, cert, key, sizeof cert);
        assert_int_equal(jn_httpd_listen(x->srv, "127.0.0.1", 0, cert, key), 0);
        x->tls_port = jn_httpd_port(x->srv, 1);
        assert_int_equal(jn_httpd_listen(x->srv, "127.0.0.1", 0, key, key), JN_EINVAL);
    }
    assert_int_equal(uv_async_init(&loop, &x->done, on_done), 0);
    x->done.data = x;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, client_main, x), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    assert_int_equal(uv_loop_close(&loop), 0);
    if (tls) {
        unlink(cert);
        unlink(key);
        rmdir(x->dir);
    }
    return x;
}

/* "HTTP/1.1 <st>\r\nServer: junction\r\nContent-Type: application/json\r\n..." for an error. */
static void expect_error(const char *got, const char *status, const char *code, const char *msg, bool close,
                         const char *extra)
{
    char body[512], want[1024];
    int bl = snprintf(body, sizeof body, "{\"code\":\"%s\",\"message\":\"%s\"}", code, msg);
    snprintf(want, sizeof want,
             "HTTP/1.1 %s\r\nServer: junction\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s%s\r\n%s",
             status, bl, close ? "Connection: close\r\n" : "", extra ? extra : "", body);
    assert_string_equal(got, want);
}

#define HELLO "HTTP/1.1 200 OK\r\nServer: junction\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
#define ASYNC "HTTP/1.1 200 OK\r\nServer: junction\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nasync"

/* ---- tests ---- */

static void c_keepalive(ctx_t *x)
{
    cli_t *c = cli_open(x->port, false);
    cli_send(c, "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n");
    cli_response(c, x->out[0], false);
    cli_send(c, "GET /async HTTP/1.1\r\nHost: a\r\n\r\n");
    cli_response(c, x->out[1], false);
    cli_send(c, "HEAD /hello HTTP/1.1\r\nHost: a\r\n\r\n");
    cli_response(c, x->out[2], true);
    cli_send(c, "POST /json HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    cli_response(c, x->out[3], false);
    cli_send(c, "GET /hello HTTP/1.0\r\n\r\n");
    cli_response(c, x->out[4], false);
    x->rc[0] = cli_eof(c);
    cli_close(c);
}

static void test_keepalive_head_json(void **state)
{
    (void)state;
    jn_metrics_t *m = jn_metrics_new();
    ctx_t *x = run(c_keepalive, NULL, false, m);
    assert_string_equal(x->out[0], HELLO);
    assert_string_equal(x->out[1], ASYNC);
    assert_string_equal(x->out[2], "HTTP/1.1 200 OK\r\nServer: junction\r\nContent-Type: text/plain\r\n"
                                   "Content-Length: 5\r\n\r\n");
    assert_string_equal(x->out[3], "HTTP/1.1 201 Created\r\nServer: junction\r\nContent-Type: application/json\r\n"
                                   "Content-Length: 8\r\n\r\n{\"n\":42}");
    assert_string_equal(x->out[4], "HTTP/1.1 200 OK\r\nServer: junction\r\nContent-Type: text/plain\r\n"
                                   "Content-Length: 5\r\nConnection: close\r\n\r\nhello");
    assert_int_equal(x->rc[0], 1);
    jn_counter_t *ok = jn_metrics_counter(m, "junction_http_requests_total", "HTTP requests answered, by status class",
                                          "door=\"http\",code=\"2xx\"");
    assert_int_equal(ok->value, 5);
    jn_metrics_free(m);
    free(x);
}

static void c_pipeline(ctx_t *x)
{
    cli_t *c = cli_open(x->port, false);
    cli_send(c, "GET /async HTTP/1.1\r\nHost: a\r\n\r\n"
                "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n");
    for (int i = 0; i < 3; i++)
        cli_response(c, x->out[i], false);
    /* chunked request body, then more after it on the same connection */
    cli_send(c, "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                "3\r\nabc\r\n");
    usleep(20000);
    cli_send(c, "4\r\ndefg\r\n0\r\n\r\nGET /hello HTTP/1.1\r\n\r\n");
    cli_response(c, x->out[3], false);
    cli_response(c, x->out[4], false);
    cli_close(c);
}

static void test_pipeline_chunked(void **state)
{
    (void)state;
    ctx_t *x = run(c_pipeline, NULL, false, NULL);
    assert_string_equal(x->out[0], ASYNC);
    assert_string_equal(x->out[1], "HTTP/1.1 200 OK\r\nServer: junction\r\nContent-Type: application/octet-stream\r\n"
                                   "Content-Length: 3\r\nX-Len: yes\r\n\r\nabc");
    assert_string_equal(x->out[2], HELLO);
    assert_string_equal(x->out[3], "HTTP/1.1 200 OK\r\nServer: junction\r\nContent-Type: application/octet-stream\r\n"
                                   "Content-Length: 7\r\nX-Len: yes\r\n\r\nabcdefg");
    assert_string_equal(x->out[4], HELLO);
    free(x);
}

static void c_continue(ctx_t *x)
{
    cli_t *c = cli_open(x->port, false);
    cli_send(c, "PUT /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    cli_response(c, x->out[0], false);
    cli_send(c, "12345");
    cli_response(c, x->out[1], false);
    /* A refused route gets its answer instead of 100, then a close. */
    cli_send(c, "POST /nope HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    cli_response(c, x->out[2], false);
    x->rc[0] = cli_eof(c);
    cli_close(c);
}

static void test_continue(void **state)
{
    (void)state;
    ctx_t *x = run(c_continue, NULL, false, NULL);
    assert_string_equal(x->out[0], "HTTP/1.1 100 Continue\r\n\r\n");
    assert_string_equal(x->out[1], "HTTP/1.1 200 OK\r\nServer: junction\r\nContent-Type: application/octet-stream\r\n"
                                   "Content-Length: 5\r\nX-Len: yes\r\n\r\n12345");
    expect_error(x->out[2], "404 Not Found", "not_found", "no route for /nope", true, NULL);
    assert_int_equal(x->rc[0], 1);
    free(x);
}

static void c_errors(ctx_t *x)
{
    cli_t *c = cli_open(x->port, false);
    cli_send(c, "GET /nope HTTP/1.1\r\nHost: a\r\n\r\n");
    cli_response(c, x->out[0], false);
    cli_send(c, "DELETE /echo HTTP/1.1\r\nHost: a\r\n\r\n");
    cli_response(c, x->out[1], false);
    cli_send(c, "POST /hello HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi");
    cli_response(c, x->out[2], false);
    cli_send(c, "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n");
    cli_response(c, x->out[3], false);
    cli_close(c);

    c = cli_open(x->port, false);
    cli_send(c, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 999999\r\n\r\n");
    cli_response(c, x->out[4], false);
    x->rc[0] = cli_eof(c);
    cli_close(c);

    static char big[12000];
    c = cli_open(x->port, false);
    memcpy(big, "GET /", 5);
    memset(big + 5, 'a', 3000);
    memcpy(big + 3005, " HTTP/1.1\r\n\r\n", 14);
    cli_send(c, big);
    cli_response(c, x->out[5], false);
    x->rc[1] = cli_eof(c);
    cli_close(c);

    c = cli_open(x->port, false);
    int n = snprintf(big, sizeof big, "GET /hello HTTP/1.1\r\nX-Big: ");
    memset(big + n, 'b', 5000);
    memcpy(big + n + 5000, "\r\n\r\n", 5);
    cli_send(c, big);
    cli_response(c, x->out[6], false);
    x->rc[2] = cli_eof(c);
    cli_close(c);

    c = cli_open(x->port, false);
    cli_send(c, "\x01\x02garbage\r\n\r\n");
    cli_response(c, x->out[7], false);
    x->rc[3] = cli_eof(c);
    cli_close(c);
}

static void test_errors(void **state)
{
    (void)state;
    jn_httpd_config_t cfg;
    jn_httpd_config_default(&cfg);
    cfg.max_body = 1000;
    cfg.limits.max_header_bytes = 4096;
    cfg.limits.max_request_line = 2048;
    ctx_t *x = run(c_errors, &cfg, false, NULL);
    expect_error(x->out[0], "404 Not Found", "not_found", "no route for /nope", false, NULL);
    expect_error(x->out[1], "405 Method Not Allowed", "method_not_allowed", "method DELETE not allowed here",
                 false, "Allow: POST, PUT\r\n");
    expect_error(x->out[2], "405 Method Not Allowed", "method_not_allowed", "method POST not allowed here",
                 false, "Allow: GET, HEAD\r\n");
    assert_string_equal(x->out[3], HELLO);
    expect_error(x->out[4], "413 Content Too Large", "payload_too_large", "request body too large", true, NULL);
    assert_int_equal(x->rc[0], 1);
    expect_error(x->out[5], "414 URI Too Long", "uri_too_long", "request line too long", true, NULL);
    assert_int_equal(x->rc[1], 1);
    expect_error(x->out[6], "431 Request Header Fields Too Large", "headers_too_large", "request headers too large", true,
                 NULL);
    assert_int_equal(x->rc[2], 1);
    expect_error(x->out[7], "400 Bad Request", "bad_request", "malformed request", true, NULL);
    assert_int_equal(x->rc[3], 1);
    free(x);
}

static void c_routes(ctx_t *x)
{
    cli_t *c = cli_open(x->port, false);
    cli_send(c, "GET /things/a%20b/parts/7?q=x%2By HTTP/1.1\r\n\r\n");
    cli_response(c, x->out[0], false);
    cli_send(c, "GET /things/special/parts/9 HTTP/1.1\r\n\r\n");
    cli_response(c, x->out[1], false);
    cli_send(c, "GET /files/a/b/c.txt HTTP/1.1\r\n\r\n");
    cli_response(c, x->out[2], false);
    cli_send(c, "GET /files HTTP/1.1\r\n\r\n");
    cli_response(c, x->out[3], false);
    cli_send(c, "GET /things/a/parts HTTP/1.1\r\n\r\n");
    cli_response(c, x->out[4], false);
    cli_send(c, "GET /stream HTTP/1.1\r\n\r\n");
    cli_response(c, x->out[5], false);
    cli_send(c, "GET /hello HTTP/1.1\r\n\r\n");
    cli_response(c, x->out[6], false);
    cli_close(c);
}

static void test_routes_stream(void **state)
{
    (void)state;
    ctx_t *x = run(c_routes, NULL, false, NULL);
    assert_string_equal(x->out[0], "HTTP/1.1 200 OK\r\nServer: junction\r\nContent-Type: text/plain\r\n"
                                   "Content-Length: 19\r\n\r\nid=a b part=7 q=x+y");
    assert_string_equal(x->out[1], "HTTP/1.1 200 OK\r\nServer: junction\r\nContent-Type: text/plain\r\n"
                                   "Content-Length: 14\r\n\r\nspecial part=9");
    assert_string_equal(x->out[2], "HTTP/1.1 200 OK\r\nServer: junction\r\nContent-Type: text/plain\r\n"
                                   "Content-Length: 40\r\n\r\npath=a/b/c.txt peer=127.0.0.1 lo=1 tls=0");
    assert_string_equal(x->out[3], "HTTP/1.1 200 OK\r\nServer: junction\r\nContent-Type: text/plain\r\n"
                                   "Content-Length: 31\r\n\r\npath= peer=127.0.0.1 lo=1 tls=0");
    expect_error(x->out[4], "404 Not Found", "not_found", "no route for /things/a/parts", false, NULL);
    assert_string_equal(x->out[5], "HTTP/1.1 200 OK\r\nServer: junction\r\nContent-Type: text/plain\r\n"
                                   "Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n2\r\nbc\r\n3\r\ndef\r\n0\r\n\r\n");
    assert_string_equal(x->out[6], HELLO);
    free(x);
}

static void c_abort(ctx_t *x)
{
    cli_t *c = cli_open(x->port, false);
    cli_send(c, "GET /hang HTTP/1.1\r\n\r\n");
    usleep(50000);
    cli_close(c);
    /* the server sees the close; make sure it handled it before we finish */
    c = cli_open(x->port, false);
    cli_send(c, "GET /async HTTP/1.1\r\n\r\n");
    cli_response(c, x->out[0], false);
    cli_close(c);
}

static void test_abort(void **state)
{
    (void)state;
    ctx_t *x = run(c_abort, NULL, false, NULL);
    assert_string_equal(x->out[0], ASYNC);
    assert_int_equal(x->aborted, 1);
    free(x);
}

static void c_timeouts(ctx_t *x)
{
    cli_t *c = cli_open(x->port, false);
    cli_send(c, "GET /hello HTTP/1.1\r\n");
    cli_response(c, x->out[0], false);
    x->rc[0] = cli_eof(c);
    cli_close(c);
    c = cli_open(x->port, false);
    cli_send(c, "GET /hello HTTP/1.1\r\n\r\n");
    cli_response(c, x->out[1], false);
    x->rc[1] = cli_eof(c); /* idle timeout */
    /* max_connections = 2: with one open, a second is fine, a third refused */
    cli_t *a = cli_open(x->port, false);
    cli_send(a, "GET /hello HTTP/1.1\r\n\r\n");
    cli_response(a, x->out[2], false);
    cli_t *b = cli_open(x->port, false);
    cli_t *d = cli_open(x->port, false);
    cli_send(b, "GET /hello HTTP/1.1\r\n\r\n");
    cli_response(b, x->out[3], false);
    x->rc[2] = d ? cli_eof(d) : 1;
    cli_close(a);
    cli_close(b);
    cli_close(d);
    cli_close(c);
}

static void test_timeouts_limits(void **state)
{
    (void)state;
    jn_httpd_config_t cfg;
    jn_httpd_config_default(&cfg);
    cfg.request_timeout_ms = 100;
    cfg.idle_timeout_ms = 200;
    cfg.max_connections = 2;
    ctx_t *x = run(c_timeouts, &cfg, false, NULL);
    expect_error(x->out[0], "408 Request Timeout", "request_timeout", "request timed out", true, NULL);
    assert_int_equal(x->rc[0], 1);
    assert_string_equal(x->out[1], HELLO);
    assert_int_equal(x->rc[1], 1);
    assert_string_equal(x->out[2], HELLO);
    assert_string_equal(x->out[3], HELLO);
    assert_int_equal(x->rc[2], 1);
    free(x);
}

static void c_backpressure(ctx_t *x)
{
    cli_t *c = cli_open(x->port, false);
    cli_send(c, "GET /big HTTP/1.1\r\n\r\n");
    usleep(100000); /* let the server fill the socket and stop */
    int n = cli_response(c, x->out[0], false);
    x->rc[0] = n;
    cli_send(c, "GET /hello HTTP/1.1\r\n\r\n");
    cli_response(c, x->out[1], false);
    cli_close(c);
}

static void test_backpressure(void **state)
{
    (void)state;
    jn_httpd_config_t cfg;
    jn_httpd_config_default(&cfg);
    cfg.out_high_water = 16384;
    ctx_t *x = run(c_backpressure, &cfg, false, NULL);
    assert_true(x->rc[0] > 16384);
    assert_int_equal(x->drained, 1);
    assert_string_equal(x->out[1], HELLO);
    free(x);
}

static void c_tls(ctx_t *x)
{
    cli_t *c = cli_open(x->tls_port, true);
    if (!c) {
        x->rc[0] = -1;
        return;
    }
    cli_send(c, "GET /files/x HTTP/1.1\r\n\r\n");
    cli_response(c, x->out[0], false);
    cli_send(c, "GET /async HTTP/1.1\r\n\r\nPOST /echo HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    cli_response(c, x->out[1], false);
    cli_response(c, x->out[2], false);
    x->rc[0] = cli_eof(c);
    cli_close(c);
    /* garbage instead of a handshake: closed */
    c = cli_open(x->tls_port, false);
    cli_send(c, "GET / HTTP/1.1\r\n\r\n");
    x->rc[1] = cli_eof(c);
    cli_close(c);
}

static void test_tls(void **state)
{
    (void)state;
    ctx_t *x = run(c_tls, NULL, true, NULL);
    assert_string_equal(x->out[0], "HTTP/1.1 200 OK\r\nServer: junction\r\nContent-Type: text/plain\r\n"
                                   "Content-Length: 32\r\n\r\npath=x peer=127.0.0.1 lo=1 tls=1");
    assert_string_equal(x->out[1], ASYNC);
    assert_string_equal(x->out[2], "HTTP/1.1 200 OK\r\nServer: junction\r\nContent-Type: application/octet-stream\r\n"
                                   "Content-Length: 2\r\nConnection: close\r\nX-Len: yes\r\n\r\nok");
    assert_int_equal(x->rc[0], 1);
    assert_int_equal(x->rc[1], 1);
    free(x);
}

/* Reads exactly |n| raw bytes after whatever is buffered. */
static void cli_raw(cli_t *c, char *out, size_t n)
{
    while (c->len < n && cli_more(c) > 0)
        ;
    size_t cp = c->len < n ? c->len : n;
    memcpy(out, c->buf, cp);
    out[cp] = '\0';
    memmove(c->buf, c->buf + cp, c->len - cp);
    c->len -= cp;
}

#define UP101 "HTTP/1.1 101 Switching Protocols\r\nServer: junction\r\nUpgrade: shout\r\nConnection: Upgrade\r\n\r\n"
#define UPREQ(path) "GET " path " HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: shout\r\n\r\n"

static void c_upgrade(ctx_t *x)
{
    /* Upgraded inside the handler; bytes sent right behind the head
     * belong to the new protocol. */
    cli_t *c = cli_open(x->port, x->tls_port != 0);
    cli_send(c, UPREQ("/up") "hello ");
    cli_response(c, x->out[0], false);
    cli_raw(c, x->out[1], 6);
    cli_send(c, "GET / HTTP/1.1\r\n");
    cli_raw(c, x->out[2], 16);
    cli_send(c, "xq");
    cli_raw(c, x->out[3], 1);
    x->rc[0] = cli_eof(c);
    cli_close(c);
    /* Upgraded later, from a timer, while the early bytes wait. */
    c = cli_open(x->port, false);
    cli_send(c, UPREQ("/upasync") "early");
    cli_response(c, x->out[4], false);
    cli_raw(c, x->out[5], 5);
    cli_send(c, "q");
    x->rc[1] = cli_eof(c);
    cli_close(c);
    /* No Upgrade header: refused, the connection stays HTTP. */
    c = cli_open(x->port, false);
    cli_send(c, "GET /up HTTP/1.1\r\nHost: a\r\n\r\nGET /hello HTTP/1.1\r\n\r\n");
    cli_response(c, x->out[6], false);
    cli_response(c, x->out[7], false);
    cli_close(c);
}

static void test_upgrade(void **state)
{
    (void)state;
    ctx_t *x = run(c_upgrade, NULL, false, NULL);
    assert_string_equal(x->out[0], UP101);
    assert_string_equal(x->out[1], "HELLO ");
    assert_string_equal(x->out[2], "GET / HTTP/1.1\r\n");
    assert_string_equal(x->out[3], "X");
    assert_int_equal(x->rc[0], 1);
    assert_string_equal(x->out[4], UP101);
    assert_string_equal(x->out[5], "EARLY");
    assert_int_equal(x->rc[1], 1);
    expect_error(x->out[6], "400 Bad Request", "bad_request", "no upgrade", false, NULL);
    assert_string_equal(x->out[7], HELLO);
    assert_int_equal(x->rc[10], 2);  /* both upgraded conns closed through the new handler */
    assert_int_equal(x->rc[11], 100); /* HTTP no longer counts an upgraded conn */
    free(x);
}

static void test_route_register(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    jn_httpd_t *s = jn_httpd_new(&loop, NULL, NULL);
    assert_non_null(s);
    assert_int_equal(jn_httpd_route(s, "GET", "/a/{x}", h_hello, NULL), 0);
    assert_int_equal(jn_httpd_route(s, "GET", "/a/{y}", h_hello, NULL), JN_EEXIST);
    assert_int_equal(jn_httpd_route(s, "POST", "/a/{y}", h_hello, NULL), 0);
    assert_int_equal(jn_httpd_route(s, "GET", "/", h_hello, NULL), 0);
    assert_int_equal(jn_httpd_route(s, "GET", "/", h_hello, NULL), JN_EEXIST);
    assert_int_equal(jn_httpd_route(s, "GET", "a", h_hello, NULL), JN_EINVAL);
    assert_int_equal(jn_httpd_route(s, "GET", "/a//b", h_hello, NULL), JN_EINVAL);
    assert_int_equal(jn_httpd_route(s, "GET", "/a/{p*}/b", h_hello, NULL), JN_EINVAL);
    assert_int_equal(jn_httpd_route(s, "GET", "/a/{}", h_hello, NULL), JN_EINVAL);
    assert_int_equal(jn_httpd_route(s, "GET", "/a/{x", h_hello, NULL), JN_EINVAL);
    assert_int_equal(jn_httpd_route(s, "G T", "/a", h_hello, NULL), JN_EINVAL);
    assert_int_equal(jn_httpd_listen(s, "not-an-address", 0, NULL, NULL), JN_EINVAL);
    assert_int_equal(jn_httpd_connections(s), 0);
    jn_httpd_free(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    jn_log_set_level(JN_LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_register),
        cmocka_unit_test(test_keepalive_head_json),
        cmocka_unit_test(test_pipeline_chunked),
        cmocka_unit_test(test_continue),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_routes_stream),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_timeouts_limits),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_upgrade),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
