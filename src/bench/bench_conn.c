/* bench_conn.c - the TCP connection every door of the bench uses: connect,
 * read into a capped buffer, and write in batches. Batching matters more
 * than anything else for a load generator: a door appends many messages to
 * |out| while the previous batch is on its way, so one write call carries
 * as many messages as the socket takes. */
#include "bench/bench_int.h"

#include <string.h>

void jn__bconn_init(jn_bconn_t *c, jn_bench_t *b, void *owner, size_t in_max, size_t out_max)
{
    memset(c, 0, sizeof(*c));
    c->b = b;
    c->owner = owner;
    jn_buf_init(&c->in, in_max);
    jn_buf_init(&c->out, out_max);
    jn_buf_init(&c->wr, out_max);
}

void jn__bconn_free(jn_bconn_t *c)
{
    jn_buf_free(&c->in);
    jn_buf_free(&c->out);
    jn_buf_free(&c->wr);
}

static void on_closed(uv_handle_t *h)
{
    jn_bconn_t *c = h->data;
    c->open = false;
    c->was_connected = c->connected;
    c->connected = false;
    c->writing = false;
    jn_buf_reset(&c->in);
    jn_buf_reset(&c->out);
    jn_buf_reset(&c->wr);
    if (c->on_close)
        c->on_close(c, c->close_err);
}

static void on_closed_quiet(uv_handle_t *h)
{
    jn_bconn_t *c = h->data;
    c->open = false;
    c->connected = false;
}

void jn__bconn_close(jn_bconn_t *c, int err)
{
    if (!c->open || uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    c->close_err = err;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    jn_bconn_t *c = h->data;
    (void)suggested;
    size_t room = c->in.max - c->in.len;
    if (room > JN_BENCH_READ_CHUNK)
        room = JN_BENCH_READ_CHUNK;
    /* A full buffer gives libuv no room: it reports UV_ENOBUFS and the
     * connection closes, which is right for a peer that sends more than
     * any message we asked for. */
    if (room == 0 || jn_buf_reserve(&c->in, room) < 0) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init((char *)c->in.data + c->in.len, (unsigned)room);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    jn_bconn_t *c = s->data;
    (void)buf;
    if (n < 0) {
        jn__bconn_close(c, (int)n);
        return;
    }
    if (n == 0)
        return;
    c->in.len += (size_t)n;
    int rc = c->on_data(c);
    if (rc < 0)
        jn__bconn_close(c, rc);
}

static void on_written(uv_write_t *req, int status)
{
    jn_bconn_t *c = req->data;
    c->writing = false;
    jn_buf_reset(&c->wr);
    if (status < 0) {
        jn__bconn_close(c, status);
        return;
    }
    if (!c->open || uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    if (c->on_writable)
        c->on_writable(c);
    jn__bconn_flush(c);
}

void jn__bconn_flush(jn_bconn_t *c)
{
    if (c->writing || c->out.len == 0 || !c->connected || uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    jn_buf_t t = c->wr;
    c->wr = c->out;
    c->out = t;
    uv_buf_t ub = uv_buf_init((char *)c->wr.data, (unsigned)c->wr.len);
    c->write_req.data = c;
    int rc = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &ub, 1, on_written);
    if (rc < 0) {
        jn__bconn_close(c, rc);
        return;
    }
    c->writing = true;
}

static void on_connected(uv_connect_t *req, int status)
{
    jn_bconn_t *c = req->data;
    if (status == UV_ECANCELED)
        return;
    if (status == 0) {
        uv_tcp_nodelay(&c->tcp, 1);
        status = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
    if (status < 0) {
        jn__bconn_close(c, status);
        return;
    }
    c->connected = true;
    c->on_connect(c);
    jn__bconn_flush(c);
}

int jn__bconn_connect(jn_bconn_t *c)
{
    int rc = uv_tcp_init(&c->b->loop, &c->tcp);
    if (rc < 0)
        return rc;
    c->tcp.data = c;
    c->open = true;
    c->connect_req.data = c;
    rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&c->b->addr, on_connected);
    if (rc < 0) {
        /* No callback for this attempt: the caller has the error. */
        uv_close((uv_handle_t *)&c->tcp, on_closed_quiet);
        return rc;
    }
    return 0;
}
