/* test_net.c - the connection layer over real sockets.
 *
 * Each test runs a group with one listener (plain, or plain and TLS) in
 * its own uv loop on the main thread, and a client in a pthread with
 * blocking sockets (or OpenSSL). The client records what it received; the
 * main thread asserts after the loop ends, since cmocka's assertions are
 * not thread-safe. Handlers are chosen by the first byte line a test
 * sends ("echo", "lines", "switch"...), so one accept callback serves all.
 * The sendfile tests queue ranges of a pattern file in a mkdtemp()
 * directory between written bytes and check the byte stream's order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
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

#include "common/asan.h"
#include "net/conn.h"
#include "tls_client.h"

#define NOUT 8
#define OUTCAP 4096
#define BIG (1u << 20) /* bytes of the flood and flush tests */

typedef struct ctx ctx_t;
typedef void (*client_fn)(ctx_t *x);

struct ctx {
    int port, tls_port;
    client_fn fn;
    uv_async_t done;
    jn_net_t *net;
    char out[NOUT][OUTCAP];
    long rc[NOUT];       /* client-side results */
    int closes;          /* on_close calls */
    int close_reason[8]; /* reasons, in order */
    int drains;
    int timeouts;
    int data_while_paused;
    int accepted;
    size_t spares; /* the group's parked I/O states when the client was done */
    void *keep[2]; /* client conns left open until then */
    char dir[64];
};

static ctx_t *g_ctx;
static uv_loop_t *g_loop;
static int g_file_fd = -1; /* the pattern file of the sendfile tests */
static int g_unrefs;       /* jn_conn_sendfile references given back */

/* Byte |i| of the pattern file. */
static uint8_t pattern(size_t i)
{
    return (uint8_t)((i * 7 + i / 251) % 251);
}

/* ---- client side (pthread) ---- */

typedef tls_cli_t cli_t;

static cli_t *cli_open(int port, bool tls) { return tls_cli_open(sizeof(cli_t), port, tls); }
static void cli_close(cli_t *c) { tls_cli_close(c); }
static void cli_send(cli_t *c, const char *s) { tls_cli_send(c, s); }
static ssize_t cli_read(cli_t *c, char *b, size_t n) { return tls_cli_read(c, b, n); }

/* Reads exactly |n| bytes into |out| (NUL-terminated); returns the count. */
static size_t cli_recv(cli_t *c, char *out, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = cli_read(c, out + got, n - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    out[got] = '\0';
    return got;
}

/* Reads until EOF; returns the bytes read, and *tail the last 3 of them. */
static long cli_drain(cli_t *c, char *tail)
{
    static char b[65536];
    long total = 0;
    for (;;) {
        ssize_t r = cli_read(c, b, sizeof b);
        if (r <= 0)
            break;
        total += r;
        if (r >= 3 && tail) {
            memcpy(tail, b + r - 3, 3);
            tail[3] = '\0';
        }
    }
    return total;
}

static void *client_main(void *arg)
{
    ctx_t *x = arg;
    x->fn(x);
    uv_async_send(&x->done);
    return NULL;
}

/* ---- server side: handlers ---- */

static void on_close_count(jn_conn_t *nc, int reason)
{
    (void)nc;
    if (g_ctx->closes < 8)
        g_ctx->close_reason[g_ctx->closes] = reason;
    g_ctx->closes++;
}

/* echo: writes back what it gets. */
static size_t echo_data(jn_conn_t *nc, const uint8_t *d, size_t n)
{
    assert_int_equal(jn_conn_write(nc, d, n), 0);
    return n;
}

static const jn_conn_handler_t echo_handler = {.on_data = echo_data, .on_close = on_close_count};

/* "B:" + input: the handler switched to mid-stream. */
static size_t b_data(jn_conn_t *nc, const uint8_t *d, size_t n)
{
    struct iovec iov[2] = {{(void *)"B:", 2}, {(void *)d, n}};
    assert_int_equal(jn_conn_writev(nc, iov, 2), 0);
    return n;
}

static const jn_conn_handler_t b_handler = {.on_data = b_data, .on_close = on_close_count};

/* lines: consumes whole lines only; the partial rest is offered again. A
 * line "switch" hands the conn to b_handler, "flood" writes BIG bytes,
 * "bye" writes BIG bytes and closes gracefully, "pause" pauses reading
 * for 100 ms. */
static void resume_fire(uv_timer_t *t)
{
    jn_conn_t *nc = t->data;
    jn_conn_resume_reading(nc);
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static void write_big(jn_conn_t *nc, char fill)
{
    size_t done = 0;
    while (done < BIG) {
        size_t n = BIG - done < 8192 ? BIG - done : 8192;
        uint8_t *p = jn_conn_reserve(nc, n);
        assert_non_null(p);
        memset(p, fill, n);
        jn_conn_commit(nc, n);
        done += n;
    }
}

static void count_unref(void *ref)
{
    (void)ref;
    g_unrefs++;
}

/* "file N": A, bytes [0, N) of the file, B, bytes [100, 5100), C, then a
 * graceful close. "fdrop N": a range of N queued, then abort. */
static void file_line(jn_conn_t *nc, const char *line, size_t ll)
{
    char num[32];
    bool drop = ll > 6 && memcmp(line, "fdrop ", 6) == 0;
    size_t skip = drop ? 6 : 5;
    size_t nl = ll - skip < sizeof num - 1 ? ll - skip : sizeof num - 1;
    memcpy(num, line + skip, nl);
    num[nl] = '\0';
    size_t len = strtoul(num, NULL, 10);
    assert_int_equal(jn_conn_write(nc, "A", 1), 0);
    assert_int_equal(jn_conn_sendfile(nc, g_file_fd, 0, len, nc, count_unref), 0);
    if (drop) {
        jn_conn_abort(nc);
        return;
    }
    assert_int_equal(jn_conn_sendfile(nc, -1, 0, 1, NULL, NULL), JN_EINVAL);
    assert_int_equal(jn_conn_write(nc, "B", 1), 0);
    assert_int_equal(jn_conn_sendfile(nc, g_file_fd, 100, 5000, nc, count_unref), 0);
    assert_int_equal(jn_conn_sendfile(nc, g_file_fd, 0, 0, nc, count_unref), 0); /* empty: unref at once */
    assert_int_equal(jn_conn_write(nc, "C", 1), 0);
    jn_conn_close(nc);
    assert_int_equal(jn_conn_sendfile(nc, g_file_fd, 0, 1, nc, count_unref), JN_ECLOSED);
}

static size_t lines_data(jn_conn_t *nc, const uint8_t *d, size_t n)
{
    size_t used = 0;
    if (jn_conn_is_paused(nc))
        g_ctx->data_while_paused++;
    while (used < n) {
        const uint8_t *nl = memchr(d + used, '\n', n - used);
        if (!nl)
            break;
        size_t ll = (size_t)(nl - (d + used));
        const char *line = (const char *)d + used;
        used += ll + 1;
        if (ll > 5 && (memcmp(line, "file ", 5) == 0 || memcmp(line, "fdrop ", 6) == 0)) {
            file_line(nc, line, ll);
            return used;
        }
        if (ll == 6 && memcmp(line, "switch", 6) == 0) {
            jn_conn_set_handler(nc, &b_handler, NULL);
            return used; /* the rest goes to b_handler */
        } else if (ll == 5 && memcmp(line, "flood", 5) == 0) {
            write_big(nc, 'f');
            assert_true(jn_conn_above_high_water(nc));
            assert_int_equal(jn_conn_write(nc, "END", 3), 0);
        } else if (ll == 3 && memcmp(line, "bye", 3) == 0) {
            write_big(nc, 'b');
            jn_conn_close(nc);
            assert_int_equal(jn_conn_write(nc, "x", 1), JN_ECLOSED);
            return used;
        } else if (ll == 5 && memcmp(line, "pause", 5) == 0) {
            jn_conn_pause_reading(nc);
            uv_timer_t *t = malloc(sizeof *t);
            uv_timer_init(g_loop, t);
            t->data = nc;
            uv_timer_start(t, resume_fire, 100, 0);
            assert_int_equal(jn_conn_write(nc, "paused\n", 7), 0);
            return used;
        } else {
            assert_int_equal(jn_conn_write(nc, line, ll + 1), 0);
        }
    }
    return used;
}

static void lines_drain(jn_conn_t *nc)
{
    (void)nc;
    g_ctx->drains++;
}

static void lines_timeout(jn_conn_t *nc)
{
    g_ctx->timeouts++;
    assert_int_equal(jn_conn_write(nc, "TIMEOUT", 7), 0);
    jn_conn_close(nc);
}

static const jn_conn_handler_t lines_handler = {
    .on_data = lines_data, .on_drain = lines_drain, .on_close = on_close_count};
static const jn_conn_handler_t timeout_handler = {
    .on_data = lines_data, .on_close = on_close_count, .on_timeout = lines_timeout};
static const jn_conn_handler_t default_timeout_handler = {.on_data = lines_data, .on_close = on_close_count};

/* The test picks a handler by its listener argument. */
typedef enum { H_ECHO, H_LINES, H_TIMEOUT } hmode_t;
static hmode_t g_mode;
static uint32_t g_tick_ms = 10; /* the group's sweep period in the next run */

static void on_accept(jn_conn_t *nc, void *arg)
{
    (void)arg;
    g_ctx->accepted++;
    assert_true(jn_conn_is_loopback(nc));
    assert_string_equal(jn_conn_peer(nc), "127.0.0.1");
    switch (g_mode) {
    case H_ECHO:
        jn_conn_set_handler(nc, &echo_handler, NULL);
        break;
    case H_LINES:
        jn_conn_set_limits(nc, 1024, 65536, 4 * BIG);
        jn_conn_set_handler(nc, &lines_handler, NULL);
        break;
    case H_TIMEOUT:
        /* odd connections use the default on_timeout (abort) */
        jn_conn_set_handler(nc, g_ctx->accepted % 2 ? &timeout_handler : &default_timeout_handler, NULL);
        jn_conn_set_timeout(nc, 50);
        break;
    }
}

static void on_done(uv_async_t *a)
{
    ctx_t *x = a->data;
    x->spares = jn_net_spares(x->net);
    jn_net_free(x->net);
    uv_close((uv_handle_t *)a, NULL);
}

static ctx_t *run(client_fn fn, hmode_t mode, bool tls)
{
    static uv_loop_t loop;
    ctx_t *x = calloc(1, sizeof *x);
    g_ctx = x;
    g_loop = &loop;
    g_mode = mode;
    x->fn = fn;
    assert_int_equal(uv_loop_init(&loop), 0);
    jn_net_config_t cfg;
    jn_net_config_default(&cfg);
    cfg.tick_ms = g_tick_ms;
    cfg.linger_ms = 200;
    x->net = jn_net_new(&loop, &cfg);
    assert_non_null(x->net);
    jn_listener_t *l = NULL;
    assert_int_equal(jn_listener_open(x->net, "test", "localhost", 0, NULL, NULL, on_accept, x, &l), 0);
    assert_false(jn_listener_is_tls(l));
    x->port = jn_listener_port(l);
    assert_true(x->port > 0);
    assert_int_equal(jn_listener_open(x->net, "test", "not-an-address", 0, NULL, NULL, on_accept, x, NULL),
                     JN_EINVAL);
    char cert[128], key[128];
    if (tls) {
        snprintf(x->dir, sizeof x->dir, "/tmp/test_net.XXXXXX");
        assert_non_null(mkdtemp(x->dir));
        tls_make_cert(x->dir, cert, key, sizeof cert);
        assert_int_equal(jn_listener_open(x->net, "test", "127.0.0.1", 0, cert, key, on_accept, x, &l), 0);
        assert_true(jn_listener_is_tls(l));
        x->tls_port = jn_listener_port(l);
        assert_int_equal(jn_listener_open(x->net, "test", "127.0.0.1", 0, key, key, on_accept, x, NULL), JN_EINVAL);
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

/* ---- tests ---- */

/* How many closes had |reason| (closes of different conns may be seen in
 * any order). */
static int reasons(const ctx_t *x, int reason)
{
    int n = 0;
    for (int i = 0; i < x->closes && i < 8; i++)
        n += x->close_reason[i] == reason;
    return n;
}

static void c_echo(ctx_t *x)
{
    for (int i = 0; i < 2; i++) {
        cli_t *c = cli_open(i ? x->tls_port : x->port, i == 1);
        if (!c)
            continue;
        cli_send(c, "hello");
        cli_recv(c, x->out[2 * i], 5);
        cli_send(c, "again");
        cli_recv(c, x->out[2 * i + 1], 5);
        cli_close(c);
    }
    /* Not a TLS handshake: the TLS conn fails and closes. */
    cli_t *c = cli_open(x->tls_port, false);
    cli_send(c, "GET / HTTP/1.1\r\n\r\n");
    x->rc[0] = cli_drain(c, NULL);
    cli_close(c);
    usleep(50000);
}

static void test_echo_plain_tls(void **state)
{
    (void)state;
    ctx_t *x = run(c_echo, H_ECHO, true);
    assert_string_equal(x->out[0], "hello");
    assert_string_equal(x->out[1], "again");
    assert_string_equal(x->out[2], "hello");
    assert_string_equal(x->out[3], "again");
    assert_int_equal(x->rc[0], 0);
    assert_int_equal(x->accepted, 3);
    assert_int_equal(x->closes, 3);
    assert_int_equal(reasons(x, JN_ECLOSED), 2);
    assert_int_equal(reasons(x, JN_EPROTO), 1);
    free(x);
}

static void c_lines(ctx_t *x)
{
    cli_t *c = cli_open(x->port, false);
    /* A line in two parts: the first part is offered again with the rest. */
    cli_send(c, "ab");
    usleep(20000);
    cli_send(c, "c\n");
    cli_recv(c, x->out[0], 4);
    /* Paused: input waits until the handler resumes, then comes in order. */
    cli_send(c, "pause\n");
    cli_recv(c, x->out[1], 7);
    cli_send(c, "one\ntwo\n");
    cli_recv(c, x->out[2], 8);
    /* Switch handlers with bytes behind the switch in the same packet. */
    cli_send(c, "switch\nxyz");
    cli_recv(c, x->out[3], 5);
    cli_close(c);
    /* Over the input cap without a complete line: aborted. */
    c = cli_open(x->port, false);
    char junk[2048];
    memset(junk, 'j', sizeof junk - 1);
    junk[sizeof junk - 1] = '\0';
    cli_send(c, junk);
    x->rc[0] = cli_drain(c, NULL);
    cli_close(c);
}

static void test_partial_pause_switch_overflow(void **state)
{
    (void)state;
    ctx_t *x = run(c_lines, H_LINES, false);
    assert_string_equal(x->out[0], "abc\n");
    assert_string_equal(x->out[1], "paused\n");
    assert_string_equal(x->out[2], "one\ntwo\n");
    assert_string_equal(x->out[3], "B:xyz");
    assert_int_equal(x->data_while_paused, 0);
    assert_int_equal(x->rc[0], 0);
    assert_int_equal(x->closes, 2);
    assert_int_equal(reasons(x, JN_ETOOBIG), 1);
    assert_int_equal(reasons(x, JN_ECLOSED), 1);
    free(x);
}

/* A quiet conn parks its I/O state and the next busy one takes it: two
 * interleaved conns, one of them holding a partial line, each get their
 * own bytes back. */
static void c_spares(ctx_t *x)
{
    cli_t *a = cli_open(x->port, false), *b = cli_open(x->port, false);
    cli_send(a, "a1\n");
    cli_recv(a, x->out[0], 3);
    cli_send(b, "b");
    usleep(20000);
    cli_send(a, "a2\n");
    cli_recv(a, x->out[1], 3);
    cli_send(b, "1\n");
    cli_recv(b, x->out[2], 3);
    /* Both quiet now; closing takes a state for the close, so they stay
     * open until the group has been counted. */
    x->keep[0] = a;
    x->keep[1] = b;
}

static void test_quiet_conns_share_spares(void **state)
{
    (void)state;
    g_tick_ms = 60000; /* no sweep: it would free the spares no conn took */
    ctx_t *x = run(c_spares, H_LINES, false);
    g_tick_ms = 10;
    cli_close(x->keep[0]);
    cli_close(x->keep[1]);
    assert_string_equal(x->out[0], "a1\n");
    assert_string_equal(x->out[1], "a2\n");
    assert_string_equal(x->out[2], "b1\n");
    if (JN_ASAN)
        assert_int_equal(x->spares, 0); /* freed at once, so ASan sees any late use */
    else
        assert_true(x->spares >= 1);
    free(x);
}

static void c_flood(ctx_t *x)
{
    cli_t *c = cli_open(x->port, false);
    cli_send(c, "flood\n");
    usleep(100000); /* the server fills the socket and waits */
    static char b[BIG + 4];
    x->rc[0] = (long)cli_recv(c, b, BIG + 3);
    memcpy(x->out[0], b + BIG, 4);
    cli_send(c, "after\n");
    cli_recv(c, x->out[1], 6);
    cli_send(c, "bye\n");
    char tail[4] = "";
    x->rc[1] = cli_drain(c, tail);
    memcpy(x->out[2], tail, 4);
    cli_close(c);
}

static void test_backpressure_graceful_close(void **state)
{
    (void)state;
    ctx_t *x = run(c_flood, H_LINES, false);
    assert_int_equal(x->rc[0], BIG + 3);
    assert_string_equal(x->out[0], "END");
    assert_int_equal(x->drains, 1);
    assert_string_equal(x->out[1], "after\n");
    /* graceful close: everything queued before it arrives, then EOF */
    assert_int_equal(x->rc[1], BIG);
    assert_string_equal(x->out[2], "bbb");
    assert_int_equal(x->closes, 1);
    assert_int_equal(x->close_reason[0], 0);
    free(x);
}

static void c_timeout(ctx_t *x)
{
    cli_t *c = cli_open(x->port, false);
    x->rc[0] = cli_drain(c, NULL); /* on_timeout writes and closes */
    cli_close(c);
    c = cli_open(x->port, false);
    x->rc[1] = cli_drain(c, NULL); /* default: abort */
    cli_close(c);
    c = cli_open(x->port, false);
    cli_send(c, "hi\n");
    cli_recv(c, x->out[0], 3);
    x->rc[2] = cli_drain(c, x->out[1]);
    cli_close(c);
}

static void test_timeouts(void **state)
{
    (void)state;
    ctx_t *x = run(c_timeout, H_TIMEOUT, false);
    assert_int_equal(x->rc[0], 7);
    assert_int_equal(x->rc[1], 0);
    assert_string_equal(x->out[0], "hi\n");
    assert_int_equal(x->rc[2], 7);
    assert_string_equal(x->out[1], "OUT");
    assert_int_equal(x->timeouts, 2);
    assert_int_equal(x->closes, 3);
    assert_int_equal(reasons(x, 0), 2);
    assert_int_equal(reasons(x, JN_EAGAIN), 1);
    free(x);
}

#define FILE_BIG (16u << 20) /* more than a loopback socket buffers */
#define FILE_TLS (1u << 20)  /* TLS reads the range into out (cap 4 MiB) */

/* Reads the whole answer to "file N" and checks it byte by byte; returns
 * 1 when it is A, file[0,N), B, file[100,5100), C. */
static long check_file_answer(cli_t *c, size_t n, long *total)
{
    size_t want = n + 5000 + 3, got = 0;
    uint8_t *b = malloc(want + 1);
    for (;;) {
        ssize_t r = cli_read(c, (char *)b + got, want + 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        if (got == want + 1)
            break;
    }
    *total = (long)got;
    long ok = got == want && b[0] == 'A' && b[n + 1] == 'B' && b[want - 1] == 'C';
    for (size_t i = 0; ok && i < n; i++)
        ok = b[1 + i] == pattern(i);
    for (size_t i = 0; ok && i < 5000; i++)
        ok = b[n + 2 + i] == pattern(100 + i);
    free(b);
    return ok;
}

static void c_sendfile(ctx_t *x)
{
    char line[64];
    /* Plain: the client reads late, so sendfile fills the socket and
     * continues across partial writes. */
    cli_t *c = cli_open(x->port, false);
    snprintf(line, sizeof line, "file %u\n", FILE_BIG);
    cli_send(c, line);
    usleep(200000);
    x->rc[0] = check_file_answer(c, FILE_BIG, &x->rc[1]);
    cli_close(c);
    /* TLS: the same byte stream. */
    c = cli_open(x->tls_port, true);
    snprintf(line, sizeof line, "file %u\n", FILE_TLS);
    cli_send(c, line);
    x->rc[2] = check_file_answer(c, FILE_TLS, &x->rc[3]);
    cli_close(c);
    /* Aborted with a range queued: the reference is still given back. */
    c = cli_open(x->port, false);
    snprintf(line, sizeof line, "fdrop %u\n", FILE_BIG);
    cli_send(c, line);
    x->rc[4] = cli_drain(c, NULL);
    cli_close(c);
    usleep(50000);
}

static void test_sendfile_order_partial(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_net_sf.XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/pattern", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < FILE_BIG; i++)
        fputc(pattern(i), f);
    fclose(f);
    g_file_fd = open(path, O_RDONLY);
    assert_true(g_file_fd >= 0);
    g_unrefs = 0;
    ctx_t *x = run(c_sendfile, H_LINES, true);
    assert_int_equal(x->rc[1], FILE_BIG + 5003);
    assert_int_equal(x->rc[0], 1);
    assert_int_equal(x->rc[3], FILE_TLS + 5003);
    assert_int_equal(x->rc[2], 1);
    assert_true(x->rc[4] < (long)FILE_BIG + 1); /* aborted before all of it */
    /* Per "file": two ranges and an empty one; "fdrop": one. */
    assert_int_equal(g_unrefs, 3 + 3 + 1);
    assert_int_equal(x->closes, 3);
    close(g_file_fd);
    g_file_fd = -1;
    unlink(path);
    rmdir(dir);
    free(x);
}

static void test_config(void **state)
{
    (void)state;
    jn_net_config_t c;
    jn_net_config_default(&c);
    assert_true(c.out_max >= c.out_high_water);
    assert_true(c.tick_ms > 0 && c.linger_ms > 0 && c.in_max > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_echo_plain_tls),
        cmocka_unit_test(test_partial_pause_switch_overflow),
        cmocka_unit_test(test_quiet_conns_share_spares),
        cmocka_unit_test(test_backpressure_graceful_close),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_sendfile_order_partial),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
