/* conn.c - connections of the connection layer: reading, TLS, buffered
 * output with backpressure, graceful close, and the group's sweep.
 *
 * A connection is a small struct around a libuv TCP handle; its buffers
 * live in an I/O state allocated when needed. A plain connection gives it
 * back as soon as it has nothing buffered, in flight or scheduled (as
 * nginx frees a keep-alive connection's buffers between requests), to the
 * group's spares, from which the next busy connection takes one; TLS
 * connections give their buffers back to the sweep after shrink_ms. So
 * 10,000 idle connections cost little, and a busy one allocates nothing.
 *
 * Input: plain connections read straight into the free tail of the input
 * buffer; TLS connections read ciphertext into the group's scratch
 * buffer, feed it to the read BIO and SSL_read plaintext into the input
 * buffer. The buffer is compacted and grown only right before a read and
 * only while the handler has not paused: a paused handler may hold views
 * into unconsumed bytes (HTTP keeps the request being handled there).
 * While paused, reads still fill the free tail (plain) or the read BIO
 * (TLS, up to TLS_RBIO_MAX), and reading stops once that is full.
 *
 * Output: |out| collects plaintext. A flush encrypts it into |enc| (TLS),
 * tries uv_try_write, and hands the rest to uv_write with the buffers
 * swapped, so the bytes in flight stay alive in |wbuf| until the write
 * callback. File ranges (jn_conn_sendfile, plain TCP only) make the output
 * a queue: the bytes of |out| written before the range become a memory
 * segment, the range a file segment, and |out| collects what comes after;
 * segments leave in order before |out|. A file segment goes out with
 * sendfile(2) on the non-blocking socket; when the socket is full, one
 * chunk is pread into |wbuf| and handed to uv_write, whose callback says
 * the socket is writable again and sendfile continues. TLS connections
 * pread the range into |out| at once (it must be encrypted anyway). Flushes happen at the end of a read callback and from the
 * group's idle handle (for output produced elsewhere): many writes of one
 * loop iteration leave in one syscall.
 *
 * Closing: jn_conn_abort closes the handle at once. jn_conn_close flushes,
 * shuts the write side down (TLS close_notify first) and lingers,
 * discarding input, until the peer closes or linger_ms passes: closing a
 * socket with unread input makes the kernel send a reset that can
 * destroy the last answer before the peer reads it. on_close runs once,
 * and never inside a handler's own callback (see |in_cb|).
 */
#include "net_int.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "../common/asan.h"
#include "../common/log.h"

#define IN_INITIAL 8192     /* first input buffer */
#define IN_MIN_ROOM 2048    /* compact or grow below this much free space */
#define TLS_RBIO_MAX 65536  /* stop reading above this much undecrypted input */
#define FILE_CHUNK 65536    /* pread fallback of a file segment when the socket is full */
#define SENDFILE_MAX (1u << 30) /* one sendfile call */
#define TRIM_AFTER ((size_t)256 << 10) /* freed buffer bytes that make the sweep trim the heap */
#define SPARES_MAX 256      /* quiet conns' I/O states a group keeps for reuse */
#define SPARE_OUT_MAX 16384 /* a state with a larger output buffer is not parked */

/* A part of the output queued before |out| (see the file comment). */
typedef struct out_seg {
    struct out_seg *next;
    jn_buf_t mem;             /* memory segment: the bytes still to send */
    int fd;                   /* file segment; -1 for memory */
    uint64_t pos;             /* file: next byte to send */
    size_t len;               /* file: bytes left */
    void *ref;                /* file: kept alive until sent or dropped */
    void (*unref)(void *ref);
} out_seg_t;

enum conn_state {
    CS_OPEN,     /* delivering input, accepting output */
    CS_FLUSHING, /* jn_conn_close: writing what is queued */
    CS_SHUTTING, /* uv_shutdown issued */
    CS_LINGER,   /* write side shut: discarding input until EOF */
    CS_CLOSED,   /* uv_close issued */
};

/* What a conn needs only while it moves bytes: buffers, the write or
 * shutdown request, the output queue, close timestamps, and TLS. Taken on
 * the first read or write (at accept for TLS) and given back as soon as a
 * plain conn is quiet (conn_quiesce), so an idle plain conn is only its
 * jn_conn_t. A TLS conn keeps it (its SSL lives here) but the sweep frees
 * its buffers once it has been idle for shrink_ms. */
typedef struct conn_io {
    jn_list_t sched;            /* net->deferred while scheduled; net->spares while spare */
    jn_conn_t *conn;            /* the owner (for the deferred list) */
    uint8_t *in;                /* input buffer; unconsumed bytes in [in_off, in_len) */
    size_t in_off, in_len, in_cap;
    size_t in_need;             /* growth hint of the handler */
    jn_buf_t out;               /* plaintext queued */
    jn_buf_t enc;               /* TLS: ciphertext queued */
    jn_buf_t wbuf;              /* bytes of the uv_write in flight */
    size_t woff;                /* bytes of wbuf already written by uv_try_write */
    out_seg_t *sq_head, *sq_tail; /* output queued before |out| (plain TCP) */
    size_t sq_mem;              /* bytes of memory segments */
    size_t sq_file;             /* bytes of file segments (count for high water, not out_max) */
    uint64_t t_write;           /* loop ms: last write progress (or close start) */
    uint64_t t_close;           /* loop ms: shutdown issued */
    SSL *ssl;                   /* NULL: plain TCP */
    union {                     /* never both in flight: shutdown waits for the write */
        uv_write_t wreq;
        uv_shutdown_t sreq;
    } req;
} conn_io_t;

/* Kept small on purpose: 10,000 idle clients cost 10,000 of these (see
 * docs/net.md). Caps are stored in 32 bits (set_limits clamps), times
 * the idle sweep compares in 32-bit loop ms (differences wrap safely),
 * the peer is its raw IPv4 address, formatted on demand (an IPv6 peer is
 * asked of the socket then), and the struct itself comes from the
 * group's pool (pool.h). */
struct jn_conn {
    uv_tcp_t tcp;               /* handle.data points back to the conn */
    jn_net_t *net;
    jn_list_t link;             /* net->conns while not closed */
    const jn_conn_handler_t *h; /* NULL: detached */
    void *ctx;
    conn_io_t *io;              /* NULL while idle (plain TCP) */
    uint64_t deadline;          /* loop ms; 0 none */
    uint32_t t_active;          /* low 32 bits of loop ms: last read or write */
    uint32_t in_max;            /* cap on in_cap */
    uint32_t out_hw, out_max;
    int16_t close_reason;
    uint16_t gen;               /* handler generation: changes with set_handler */
    uint8_t state;              /* enum conn_state */
    uint8_t in_cb;              /* depth of this conn's handler callbacks running */
    bool close_pending : 1;     /* closed inside a callback: on_close after it */
    bool in_read : 1;           /* inside the read callback: it flushes at its end */
    bool want_deliver : 1;      /* offer buffered input from the idle handle */
    bool reading : 1;
    bool writing : 1;           /* a uv_write is in flight (io is kept) */
    bool paused : 1;
    bool above_hw : 1;
    bool in_full : 1;           /* no room for input while paused or detached */
    bool hs_done : 1;
    bool notify_sent : 1;
    bool eof : 1;
    bool peer_closed : 1;       /* closing because the peer did: report JN_ECLOSED */
    bool loopback : 1;
    bool peer_v6 : 1;           /* IPv6 peer: asked of the socket when needed */
    uint8_t peer4[4];           /* IPv4 peer, network order */
};

static SSL *conn_ssl(const jn_conn_t *c)
{
    return c->io ? c->io->ssl : NULL;
}

static void conn_set_out_caps(jn_conn_t *c);

/* The conn's I/O state: a spare of the group (with its buffers), or a new
 * one. NULL on ENOMEM. */
static conn_io_t *conn_get_io(jn_conn_t *c)
{
    if (c->io)
        return c->io;
    jn_net_t *net = c->net;
    conn_io_t *io;
    if (!jn_list_empty(&net->spares)) {
        io = jn_container_of(net->spares.next, conn_io_t, sched);
        jn_list_remove(&io->sched);
        if (--net->nspares < net->spares_low)
            net->spares_low = net->nspares;
        if (io->in_cap > c->in_max) {
            free(io->in);
            io->in = NULL;
            io->in_cap = 0;
        }
    } else {
        if (!(io = calloc(1, sizeof *io)))
            return NULL;
        jn_list_init(&io->sched);
        jn_buf_init(&io->out, 0);
        jn_buf_init(&io->enc, 0);
        jn_buf_init(&io->wbuf, 0);
    }
    io->conn = c;
    io->t_write = uv_now(net->loop);
    c->io = io;
    conn_set_out_caps(c);
    return io;
}

static void spares_free(jn_net_t *net, size_t n);
static void conn_flush(jn_conn_t *c);
static void conn_update_read(jn_conn_t *c);
static void conn_process_input(jn_conn_t *c);
static void on_idle(uv_idle_t *h);

/* ---- groups ---- */

void jn_net_config_default(jn_net_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->tick_ms = 250;
    c->linger_ms = 2000;
    c->write_stall_ms = 60000;
    c->shrink_ms = 1000;
    c->in_max = 1u << 20;
    c->out_high_water = 1u << 20;
    c->out_max = 4u << 20;
}

void jn__net_handle_closed(jn_net_t *net)
{
    net->handles--;
    if (net->freeing && net->handles == 0) {
        spares_free(net, net->nspares);
        jn_pool_destroy(&net->conn_pool);
        free(net->scratch);
        free(net);
    }
}

static void on_net_handle_closed(uv_handle_t *h)
{
    jn__net_handle_closed(h->data);
}

static void on_sweep(uv_timer_t *t);

jn_net_t *jn_net_new(uv_loop_t *loop, const jn_net_config_t *cfg)
{
    jn_net_t *net = calloc(1, sizeof *net);
    if (!net)
        return NULL;
    net->loop = loop;
    if (cfg)
        net->cfg = *cfg;
    else
        jn_net_config_default(&net->cfg);
    jn_net_config_t *c = &net->cfg;
    if (c->tick_ms == 0)
        c->tick_ms = 250;
    if (c->out_high_water == 0)
        c->out_high_water = 1u << 20;
    if (c->out_max < c->out_high_water)
        c->out_max = 4 * c->out_high_water;
    if (c->in_max == 0)
        c->in_max = 1u << 20;
    if (!(net->scratch = malloc(JN__NET_TLS_SCRATCH))) {
        free(net);
        return NULL;
    }
    jn_pool_init(&net->conn_pool, sizeof(jn_conn_t));
    jn_list_init(&net->conns);
    jn_list_init(&net->listeners);
    jn_list_init(&net->deferred);
    jn_list_init(&net->spares);
    uv_idle_init(loop, &net->idle);
    net->idle.data = net;
    uv_timer_init(loop, &net->sweep);
    net->sweep.data = net;
    net->handles = 2;
    uv_timer_start(&net->sweep, on_sweep, c->tick_ms, c->tick_ms);
    return net;
}

uv_loop_t *jn_net_loop(const jn_net_t *net)
{
    return net->loop;
}

size_t jn_net_connections(const jn_net_t *net)
{
    return net->nconns;
}

size_t jn_net_spares(const jn_net_t *net)
{
    return net->nspares;
}

/* ---- lifetime ---- */

static void conn_notify_close(jn_conn_t *c)
{
    const jn_conn_handler_t *h = c->h;
    c->h = NULL;
    if (h && h->on_close)
        h->on_close(c, c->close_reason);
}

/* Runs after each handler callback: a close requested inside it is
 * reported now that the handler's stack is unwound. */
static void conn_after_cb(jn_conn_t *c)
{
    if (c->in_cb == 0 && c->close_pending) {
        c->close_pending = false;
        conn_notify_close(c);
    }
}

static void seg_free(out_seg_t *s)
{
    if (s->unref)
        s->unref(s->ref);
    jn_buf_free(&s->mem);
    free(s);
}

static void conn_io_free(jn_conn_t *c);

static void on_conn_closed(uv_handle_t *hd)
{
    jn_conn_t *c = hd->data;
    jn_net_t *net = c->net;
    if (c->io)
        conn_io_free(c);
    jn_pool_free(&net->conn_pool, c);
    jn__net_handle_closed(net);
}

/* Frees an I/O state and everything it holds. */
static void io_free(conn_io_t *io)
{
    /* Ranges never sent: their files may go now. */
    while (io->sq_head) {
        out_seg_t *s = io->sq_head;
        io->sq_head = s->next;
        seg_free(s);
    }
    free(io->in);
    jn_buf_free(&io->out);
    jn_buf_free(&io->enc);
    jn_buf_free(&io->wbuf);
    if (io->ssl)
        SSL_free(io->ssl);
    free(io);
}

/* Gives back the I/O state and everything it holds. */
static void conn_io_free(jn_conn_t *c)
{
    io_free(c->io);
    c->io = NULL;
}

/* A plain conn with nothing buffered, in flight, queued or scheduled and
 * no callback running: its I/O state holds nothing it needs. */
static bool conn_io_quiet(const jn_conn_t *c)
{
    const conn_io_t *io = c->io;
    return c->state == CS_OPEN && !c->paused && !c->in_cb && !c->writing && !io->ssl &&
           io->in_off == io->in_len && !io->in_need && !io->sq_head && jn_conn_pending(c) == 0 &&
           !jn_list_linked(&io->sched);
}

/* Parks a quiet plain conn's I/O state among the group's spares at once,
 * for the next conn that moves bytes. A state with grown buffers (a
 * fan-out subscriber's output, a big request's input) stays with its conn
 * instead, as do all once SPARES_MAX are parked: the sweep frees those
 * after shrink_ms, as for a TLS conn. So parking never costs a malloc or a
 * regrowth. Under ASan the state is freed at once instead. */
static void conn_quiesce(jn_conn_t *c)
{
    if (!c->io || !conn_io_quiet(c))
        return;
    jn_net_t *net = c->net;
    conn_io_t *io = c->io;
    if (JN_ASAN) {
        conn_io_free(c);
        return;
    }
    if (net->nspares >= SPARES_MAX || io->in_cap > IN_INITIAL || io->out.cap > SPARE_OUT_MAX ||
        io->enc.cap > SPARE_OUT_MAX || io->wbuf.cap > SPARE_OUT_MAX)
        return;
    c->io = NULL;
    io->in_off = io->in_len = 0;
    io->conn = NULL;
    jn_list_insert_head(&net->spares, &io->sched);
    net->nspares++;
}

/* Frees up to |n| spares, the coldest (at the tail) first. */
static void spares_free(jn_net_t *net, size_t n)
{
    for (; n > 0 && !jn_list_empty(&net->spares); n--) {
        conn_io_t *io = jn_container_of(net->spares.prev, conn_io_t, sched);
        jn_list_remove(&io->sched);
        net->nspares--;
        net->shrunk += sizeof *io + io->in_cap + io->out.cap + io->enc.cap + io->wbuf.cap;
        io_free(io);
    }
}

/* The sweep's share: spares that no conn took since the last sweep are
 * halved, so a burst's spares go back to malloc within a few sweeps. */
static void spares_trim(jn_net_t *net)
{
    spares_free(net, (net->spares_low + 1) / 2);
    net->spares_low = net->nspares;
}

/* Closes the handle now and reports |reason| (once). */
static void conn_finish(jn_conn_t *c, int reason)
{
    if (c->state == CS_CLOSED)
        return;
    jn_net_t *net = c->net;
    c->state = CS_CLOSED;
    c->close_reason = reason == 0 && c->peer_closed ? JN_ECLOSED : reason;
    if (c->io)
        jn_list_remove(&c->io->sched);
    jn_list_remove(&c->link);
    net->nconns--;
    if (net->cfg.m_conns)
        net->cfg.m_conns->value--;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    if (c->in_cb)
        c->close_pending = true;
    else
        conn_notify_close(c);
}

void jn_conn_abort(jn_conn_t *c)
{
    if (c)
        conn_finish(c, 0);
}

bool jn_conn_is_closing(const jn_conn_t *c)
{
    return c->state != CS_OPEN;
}

static void conn_schedule(jn_conn_t *c)
{
    jn_net_t *net = c->net;
    /* Everything that schedules has I/O state: output, input, TLS, or a
     * graceful close. */
    if (c->state == CS_CLOSED || !c->io || jn_list_linked(&c->io->sched))
        return;
    if (jn_list_empty(&net->deferred))
        uv_idle_start(&net->idle, on_idle);
    jn_list_insert_tail(&net->deferred, &c->io->sched);
}

static void on_shutdown(uv_shutdown_t *sr, int status)
{
    jn_conn_t *c = sr->data;
    if (c->state != CS_SHUTTING)
        return;
    if (status < 0 || c->eof) {
        conn_finish(c, 0);
        return;
    }
    c->state = CS_LINGER;
    c->io->t_close = uv_now(c->net->loop);
    conn_update_read(c);
}

size_t jn_conn_pending(const jn_conn_t *c)
{
    if (!c->io)
        return 0;
    return c->io->out.len + c->io->enc.len + c->io->sq_mem + c->io->sq_file + (c->writing ? c->io->wbuf.len - c->io->woff : 0);
}

/* The output is flushed: send close_notify (TLS), then shut down. */
static void conn_shutdown(jn_conn_t *c)
{
    if (c->state != CS_FLUSHING)
        return;
    if (conn_ssl(c) && c->hs_done && !c->notify_sent) {
        c->notify_sent = true;
        (void)SSL_shutdown(conn_ssl(c));
        conn_flush(c); /* may come back here and shut down */
        if (c->state != CS_FLUSHING || c->writing || jn_conn_pending(c))
            return;
    }
    c->state = CS_SHUTTING;
    c->io->t_close = uv_now(c->net->loop);
    c->io->req.sreq.data = c;
    if (uv_shutdown(&c->io->req.sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
        conn_finish(c, 0);
}

void jn_conn_close(jn_conn_t *c)
{
    if (!c || c->state != CS_OPEN)
        return;
    c->state = CS_FLUSHING;
    conn_update_read(c);
    /* Without I/O state (ENOMEM) the sweep finishes the close. */
    if (!conn_get_io(c))
        return;
    c->io->t_write = uv_now(c->net->loop);
    /* The flush (and with it the shutdown) runs from the loop, never
     * inside this call. */
    conn_schedule(c);
}

/* ---- output ---- */

static void on_write(uv_write_t *wr, int status);

static void conn_count_out(jn_conn_t *c, size_t n)
{
    if (c->net->cfg.m_bytes_out)
        jn_counter_add(c->net->cfg.m_bytes_out, n);
}

/* Writes |src| (out or enc): try_write, then uv_write for the rest with
 * the buffers swapped so the bytes stay alive until on_write. */
static void conn_send(jn_conn_t *c, jn_buf_t *src)
{
    if (c->writing || src->len == 0 || c->state >= CS_SHUTTING)
        return;
    uv_buf_t b = uv_buf_init((char *)src->data, (unsigned)src->len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == UV_EAGAIN || n == UV_ENOSYS)
        n = 0;
    else if (n < 0) {
        conn_finish(c, c->state == CS_OPEN ? JN_ECLOSED : 0);
        return;
    }
    uint64_t now = uv_now(c->net->loop);
    if (n > 0) {
        c->io->t_write = now;
        c->t_active = (uint32_t)now;
        conn_count_out(c, (size_t)n);
    }
    if ((size_t)n == src->len) {
        src->len = 0;
        return;
    }
    jn_buf_t t = c->io->wbuf;
    c->io->wbuf = *src;
    *src = t;
    src->len = 0;
    c->io->woff = (size_t)n;
    b = uv_buf_init((char *)c->io->wbuf.data + n, (unsigned)(c->io->wbuf.len - (size_t)n));
    c->io->req.wreq.data = c;
    c->io->t_write = now;
    if (uv_write(&c->io->req.wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
        conn_finish(c, c->state == CS_OPEN ? JN_ECLOSED : 0);
        return;
    }
    c->writing = true;
}

/* Queues a chunk of file segment |s| through uv_write: the socket is full
 * (or sendfile cannot be used on this file), and the write callback will
 * say when it takes more. */
static void send_file_chunk(jn_conn_t *c, out_seg_t *s)
{
    size_t n = s->len < FILE_CHUNK ? s->len : FILE_CHUNK;
    jn_buf_reset(&c->io->wbuf);
    if (n > c->io->wbuf.max)
        n = c->io->wbuf.max;
    if (jn_buf_reserve(&c->io->wbuf, n) < 0) {
        conn_finish(c, JN_ENOMEM);
        return;
    }
    ssize_t r;
    do
        r = pread(s->fd, c->io->wbuf.data, n, (off_t)s->pos);
    while (r < 0 && errno == EINTR);
    if (r <= 0) {
        jn_warn("net: %s: reading queued file range: %s", jn_conn_peer(c), r == 0 ? "short file" : strerror(errno));
        conn_finish(c, JN_EIO);
        return;
    }
    c->io->wbuf.len = (size_t)r;
    c->io->woff = 0;
    s->pos += (uint64_t)r;
    s->len -= (size_t)r;
    c->io->sq_file -= (size_t)r;
    uv_buf_t b = uv_buf_init((char *)c->io->wbuf.data, (unsigned)r);
    c->io->req.wreq.data = c;
    c->io->t_write = uv_now(c->net->loop);
    if (uv_write(&c->io->req.wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
        conn_finish(c, c->state == CS_OPEN ? JN_ECLOSED : 0);
        return;
    }
    c->writing = true;
}

/* Sends file segment |s| with sendfile until it is done, the socket is
 * full (a chunk then goes through uv_write), or the conn failed. */
static void send_file_seg(jn_conn_t *c, out_seg_t *s)
{
    int sock;
    if (uv_fileno((const uv_handle_t *)&c->tcp, &sock) < 0) {
        conn_finish(c, JN_EIO);
        return;
    }
    while (s->len > 0) {
        off_t off = (off_t)s->pos;
        ssize_t n = sendfile(sock, s->fd, &off, s->len < SENDFILE_MAX ? s->len : SENDFILE_MAX);
        if (n > 0) {
            uint64_t now = uv_now(c->net->loop);
            s->pos += (uint64_t)n;
            s->len -= (size_t)n;
            c->io->sq_file -= (size_t)n;
            c->io->t_write = now;
            c->t_active = (uint32_t)now;
            conn_count_out(c, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN)) {
            conn_finish(c, c->state == CS_OPEN ? JN_ECLOSED : 0);
            return;
        }
        /* EAGAIN: wait for room through uv_write. n == 0 (a file shorter
         * than promised) and EINVAL/ENOSYS (a file sendfile cannot read)
         * take the same path, where pread reports or works around them. */
        send_file_chunk(c, s);
        return;
    }
}

/* Sends the queued segments in order; stops at a write in flight. */
static void send_queue(jn_conn_t *c)
{
    while (c->io->sq_head && !c->writing && c->state < CS_SHUTTING) {
        out_seg_t *s = c->io->sq_head;
        if (s->fd < 0) {
            /* All of it leaves now or moves into |wbuf| (counted there). */
            c->io->sq_mem -= s->mem.len;
            conn_send(c, &s->mem);
            if (c->state == CS_CLOSED)
                return;
        } else {
            send_file_seg(c, s);
            if (c->state == CS_CLOSED || s->len > 0)
                return;
        }
        c->io->sq_head = s->next;
        if (!c->io->sq_head)
            c->io->sq_tail = NULL;
        seg_free(s);
    }
}

/* Moves TLS output (plaintext in |out|, handshake records) into |enc|. */
static int tls_encrypt(jn_conn_t *c)
{
    if (c->hs_done && c->io->out.len) {
        int n = SSL_write(conn_ssl(c), c->io->out.data, c->io->out.len > INT_MAX ? INT_MAX : (int)c->io->out.len);
        if (n <= 0)
            return JN_EIO;
        jn_buf_consume(&c->io->out, (size_t)n);
    }
    BIO *wb = SSL_get_wbio(conn_ssl(c));
    size_t pend;
    while ((pend = BIO_ctrl_pending(wb)) > 0) {
        int rc = jn_buf_reserve(&c->io->enc, pend);
        if (rc < 0)
            return rc;
        int n = BIO_read(wb, c->io->enc.data + c->io->enc.len, (int)pend);
        if (n <= 0)
            break;
        c->io->enc.len += (size_t)n;
    }
    return 0;
}

static void conn_flush(jn_conn_t *c)
{
    if (c->state == CS_CLOSED || !c->io)
        return;
    if (conn_ssl(c)) {
        if (tls_encrypt(c) < 0) {
            conn_finish(c, JN_EPROTO);
            return;
        }
        conn_send(c, &c->io->enc);
    } else {
        send_queue(c);
        if (c->state != CS_CLOSED && !c->io->sq_head)
            conn_send(c, &c->io->out);
    }
    if (c->state == CS_CLOSED)
        return;
    size_t pend = jn_conn_pending(c);
    if (pend > c->out_hw) {
        if (!c->above_hw) {
            c->above_hw = true;
            conn_update_read(c);
        }
    } else if (c->above_hw) {
        c->above_hw = false;
        if (c->state == CS_OPEN && c->h && c->h->on_drain) {
            c->in_cb++;
            c->h->on_drain(c);
            c->in_cb--;
            conn_after_cb(c);
            if (c->state == CS_CLOSED)
                return;
        }
        if (c->io->in_len > c->io->in_off) {
            c->want_deliver = true;
            conn_schedule(c);
        }
        if (jn_conn_pending(c))
            conn_schedule(c); /* what on_drain wrote */
        conn_update_read(c);
        if (c->state == CS_CLOSED)
            return;
        pend = jn_conn_pending(c);
    }
    if (c->state == CS_FLUSHING && pend == 0 && !c->writing)
        conn_shutdown(c);
}

static void on_write(uv_write_t *wr, int status)
{
    jn_conn_t *c = wr->data;
    size_t n = c->io->wbuf.len - c->io->woff;
    c->writing = false;
    c->io->wbuf.len = 0;
    c->io->woff = 0;
    if (c->state == CS_CLOSED)
        return;
    if (status < 0) {
        conn_finish(c, c->state == CS_OPEN ? JN_ECLOSED : 0);
        return;
    }
    conn_count_out(c, n);
    c->io->t_write = uv_now(c->net->loop);
    c->t_active = (uint32_t)c->io->t_write;
    conn_flush(c);
    conn_quiesce(c);
}

/* Output produced: flush at the end of the read callback, or soon. */
static void conn_wrote(jn_conn_t *c)
{
    if (!c->in_read)
        conn_schedule(c);
}

static int out_room(jn_conn_t *c, size_t n)
{
    if (c->state != CS_OPEN)
        return JN_ECLOSED;
    if (!conn_get_io(c))
        return JN_ENOMEM;
    size_t pend = jn_conn_pending(c) - c->io->sq_file; /* the cap is on memory */
    if (n > c->out_max || pend > c->out_max - n)
        return JN_ETOOBIG;
    return 0;
}

int jn_conn_write(jn_conn_t *c, const void *data, size_t len)
{
    int rc = out_room(c, len);
    if (rc < 0)
        return rc;
    if (len == 0)
        return 0;
    if ((rc = jn_buf_append(&c->io->out, data, len)) < 0)
        return rc;
    conn_wrote(c);
    return 0;
}

int jn_conn_writev(jn_conn_t *c, const struct iovec *iov, int iovcnt)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > SIZE_MAX - total)
            return JN_ETOOBIG;
        total += iov[i].iov_len;
    }
    int rc = out_room(c, total);
    if (rc < 0)
        return rc;
    if ((rc = jn_buf_reserve(&c->io->out, total)) < 0)
        return rc;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len)
            memcpy(c->io->out.data + c->io->out.len, iov[i].iov_base, iov[i].iov_len);
        c->io->out.len += iov[i].iov_len;
    }
    if (total)
        conn_wrote(c);
    return 0;
}

/* TLS: the range is read into |out| now, to be encrypted with the rest. */
static int sendfile_tls(jn_conn_t *c, int fd, uint64_t off, size_t len)
{
    int rc = out_room(c, len);
    if (rc < 0 || (rc = jn_buf_reserve(&c->io->out, len)) < 0)
        return rc;
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, c->io->out.data + c->io->out.len + got, len - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return JN_EIO;
        got += (size_t)r;
    }
    c->io->out.len += len;
    return 0;
}

int jn_conn_sendfile(jn_conn_t *c, int fd, uint64_t off, size_t len, void *ref, void (*unref)(void *ref))
{
    if (fd < 0 || off > (uint64_t)INT64_MAX - len)
        return JN_EINVAL;
    if (c->state != CS_OPEN)
        return JN_ECLOSED;
    if (len == 0 || conn_ssl(c)) {
        int rc = len ? sendfile_tls(c, fd, off, len) : 0;
        if (rc < 0)
            return rc;
        if (unref)
            unref(ref);
        if (len)
            conn_wrote(c);
        return 0;
    }
    if (!conn_get_io(c))
        return JN_ENOMEM;
    out_seg_t *m = NULL, *f = calloc(1, sizeof *f);
    if (!f)
        return JN_ENOMEM;
    if (c->io->out.len) {
        /* What was written before the range leaves before it: |out|
         * becomes a memory segment and starts over empty. */
        if (!(m = calloc(1, sizeof *m))) {
            free(f);
            return JN_ENOMEM;
        }
        m->fd = -1;
        m->mem = c->io->out;
        jn_buf_init(&c->io->out, m->mem.max);
        c->io->sq_mem += m->mem.len;
        if (c->io->sq_tail)
            c->io->sq_tail->next = m;
        else
            c->io->sq_head = m;
        c->io->sq_tail = m;
    }
    f->fd = fd;
    f->pos = off;
    f->len = len;
    f->ref = ref;
    f->unref = unref;
    jn_buf_init(&f->mem, 0);
    c->io->sq_file += len;
    if (c->io->sq_tail)
        c->io->sq_tail->next = f;
    else
        c->io->sq_head = f;
    c->io->sq_tail = f;
    conn_wrote(c);
    return 0;
}

uint8_t *jn_conn_reserve(jn_conn_t *c, size_t n)
{
    if (out_room(c, n) < 0 || jn_buf_reserve(&c->io->out, n) < 0)
        return NULL;
    return c->io->out.data + c->io->out.len;
}

void jn_conn_commit(jn_conn_t *c, size_t used)
{
    if (c->state == CS_CLOSED || !c->io)
        return;
    if (used > c->io->out.cap - c->io->out.len)
        used = c->io->out.cap - c->io->out.len;
    c->io->out.len += used;
    if (c->io->out.len)
        conn_wrote(c);
}

jn_buf_t *jn_conn_outbuf(jn_conn_t *c)
{
    if (c->state != CS_OPEN || !conn_get_io(c))
        return NULL;
    return &c->io->out;
}

bool jn_conn_above_high_water(jn_conn_t *c)
{
    if (jn_conn_pending(c) > c->out_hw) {
        c->above_hw = true; /* promises on_drain */
        return true;
    }
    return false;
}

/* ---- input ---- */

/* Returns the free space at the end of the input buffer, compacting and
 * growing it first unless the handler paused (it may hold views). */
static size_t in_room(jn_conn_t *c)
{
    if (!conn_get_io(c))
        return 0;
    if (!c->io->in) {
        size_t cap = IN_INITIAL;
        if (c->io->in_need > cap)
            cap = c->io->in_need;
        if (cap > c->in_max)
            cap = c->in_max;
        if (!(c->io->in = malloc(cap)))
            return 0;
        c->io->in_cap = cap;
        c->io->in_off = c->io->in_len = 0;
    }
    if (c->io->in_off == c->io->in_len)
        c->io->in_off = c->io->in_len = 0;
    size_t room = c->io->in_cap - c->io->in_len;
    size_t unconsumed = c->io->in_len - c->io->in_off;
    if (c->paused || (room >= IN_MIN_ROOM && c->io->in_need <= c->io->in_cap - c->io->in_off))
        return room;
    if (c->io->in_off > 0) {
        memmove(c->io->in, c->io->in + c->io->in_off, unconsumed);
        c->io->in_len = unconsumed;
        c->io->in_off = 0;
    }
    size_t want = unconsumed + IN_MIN_ROOM;
    if (c->io->in_need > want)
        want = c->io->in_need;
    if (want > c->io->in_cap && c->io->in_cap < c->in_max) {
        size_t ncap = c->io->in_cap * 2 > want ? c->io->in_cap * 2 : want;
        if (ncap > c->in_max)
            ncap = c->in_max;
        uint8_t *n = realloc(c->io->in, ncap);
        if (n) {
            c->io->in = n;
            c->io->in_cap = ncap;
        }
    }
    return c->io->in_cap - c->io->in_len;
}

static bool conn_deliverable(const jn_conn_t *c)
{
    return c->state == CS_OPEN && c->h && !c->paused && !c->above_hw;
}

/* Offers the unconsumed input to on_data (again to a new handler when it
 * switched inside the call). Returns the bytes consumed. */
static size_t conn_deliver(jn_conn_t *c)
{
    size_t total = 0;
    c->want_deliver = false;
    while (conn_deliverable(c) && c->io && c->io->in_len > c->io->in_off) {
        uint32_t gen = c->gen;
        size_t avail = c->io->in_len - c->io->in_off;
        c->in_cb++;
        size_t n = c->h->on_data(c, c->io->in + c->io->in_off, avail);
        c->in_cb--;
        conn_after_cb(c);
        if (c->state == CS_CLOSED)
            return total;
        avail = c->io->in_len - c->io->in_off;
        if (n > avail)
            n = avail;
        c->io->in_off += n;
        total += n;
        if (c->io->in_off == c->io->in_len)
            c->io->in_off = c->io->in_len = 0;
        if (c->gen == gen)
            break;
    }
    /* A full buffer that the handler cannot make progress on. */
    if (conn_deliverable(c) && c->io && c->io->in_len - c->io->in_off >= c->in_max)
        conn_finish(c, JN_ETOOBIG);
    return total;
}

/* TLS: handshake, then decrypt what the read BIO holds into the input
 * buffer. Returns 0, 1 at close_notify, or JN_EPROTO. */
static int tls_pull(jn_conn_t *c)
{
    if (!c->hs_done) {
        int r = SSL_do_handshake(conn_ssl(c));
        if (r != 1) {
            int e = SSL_get_error(conn_ssl(c), r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0;
            ERR_clear_error();
            return JN_EPROTO;
        }
        c->hs_done = true;
        if (c->io->out.len)
            conn_wrote(c); /* output queued before the handshake */
    }
    if (c->state != CS_OPEN || c->paused || !c->h)
        return 0;
    for (;;) {
        size_t room = in_room(c);
        if (room == 0)
            return 0;
        int n = SSL_read(conn_ssl(c), c->io->in + c->io->in_len, room > INT_MAX ? INT_MAX : (int)room);
        if (n > 0) {
            c->io->in_len += (size_t)n;
            continue;
        }
        int e = SSL_get_error(conn_ssl(c), n);
        if (e == SSL_ERROR_WANT_READ)
            return 0;
        if (e == SSL_ERROR_ZERO_RETURN)
            return 1;
        ERR_clear_error();
        return JN_EPROTO;
    }
}

static void conn_eof(jn_conn_t *c)
{
    c->eof = true;
    switch (c->state) {
    case CS_OPEN:
        conn_update_read(c);
        if (c->h && c->h->on_eof) {
            c->in_cb++;
            c->h->on_eof(c);
            c->in_cb--;
            conn_after_cb(c);
        } else {
            c->peer_closed = true;
            jn_conn_close(c);
        }
        break;
    case CS_LINGER:
        conn_finish(c, 0);
        break;
    default:
        break;
    }
}

/* Decrypts (TLS) and delivers until nothing moves. */
static void conn_process_input(jn_conn_t *c)
{
    for (;;) {
        int tls_rc = 0;
        if (conn_ssl(c)) {
            tls_rc = tls_pull(c);
            if (tls_rc < 0) {
                conn_finish(c, JN_EPROTO);
                return;
            }
        }
        size_t n = conn_deliver(c);
        if (c->state != CS_OPEN)
            return;
        if (tls_rc == 1) {
            conn_eof(c);
            return;
        }
        if (!conn_ssl(c) || n == 0 || !conn_deliverable(c) ||
            (BIO_ctrl_pending(SSL_get_rbio(conn_ssl(c))) == 0 && SSL_pending(conn_ssl(c)) == 0))
            return;
    }
}

static bool conn_want_read(const jn_conn_t *c)
{
    if (c->state == CS_LINGER)
        return true;
    if (c->state != CS_OPEN || c->eof || c->above_hw || c->in_full)
        return false;
    if (conn_ssl(c) && BIO_ctrl_pending(SSL_get_rbio(conn_ssl(c))) > TLS_RBIO_MAX)
        return false;
    return true;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void conn_update_read(jn_conn_t *c)
{
    if (c->state == CS_CLOSED)
        return;
    bool want = conn_want_read(c);
    if (want == c->reading)
        return;
    if (want) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
            conn_finish(c, JN_EIO);
            return;
        }
    } else {
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
    c->reading = want;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    jn_conn_t *c = h->data;
    (void)suggested;
    if (conn_ssl(c) || c->state == CS_LINGER) {
        *buf = uv_buf_init(c->net->scratch, JN__NET_TLS_SCRATCH);
        return;
    }
    size_t room = in_room(c);
    *buf = uv_buf_init(c->io && c->io->in ? (char *)c->io->in + c->io->in_len : NULL, (unsigned)(room > UINT_MAX ? UINT_MAX : room));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    jn_conn_t *c = st->data;
    if (c->state == CS_CLOSED)
        return;
    if (c->state == CS_LINGER) {
        if (nread < 0)
            conn_finish(c, 0);
        return;
    }
    if (nread == UV_ENOBUFS) {
        if (c->paused || !c->h) {
            c->in_full = true;
            conn_update_read(c);
        } else {
            conn_finish(c, c->io && c->io->in ? JN_ETOOBIG : JN_ENOMEM);
        }
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF)
            conn_eof(c);
        else
            conn_finish(c, JN_ECLOSED);
        return;
    }
    if (nread == 0) {
        conn_quiesce(c); /* EAGAIN after a read that filled the buffer */
        return;
    }
    c->t_active = (uint32_t)uv_now(c->net->loop);
    if (c->net->cfg.m_bytes_in)
        jn_counter_add(c->net->cfg.m_bytes_in, (uint64_t)nread);
    if (conn_ssl(c)) {
        if (BIO_write(SSL_get_rbio(conn_ssl(c)), buf->base, (int)nread) != (int)nread) {
            conn_finish(c, JN_ENOMEM);
            return;
        }
    } else {
        c->io->in_len += (size_t)nread;
    }
    c->in_read = true;
    conn_process_input(c);
    c->in_read = false;
    conn_flush(c);
    conn_update_read(c);
    conn_quiesce(c);
}

/* ---- input flow ---- */

void jn_conn_pause_reading(jn_conn_t *c)
{
    c->paused = true;
}

void jn_conn_resume_reading(jn_conn_t *c)
{
    if (!c->paused)
        return;
    c->paused = false;
    c->in_full = false;
    if (c->state != CS_OPEN)
        return;
    c->want_deliver = true;
    conn_schedule(c);
    conn_update_read(c);
}

bool jn_conn_is_paused(const jn_conn_t *c)
{
    return c->paused;
}

void jn_conn_consume(jn_conn_t *c, size_t n)
{
    if (!c->io)
        return;
    size_t avail = c->io->in_len - c->io->in_off;
    c->io->in_off += n < avail ? n : avail;
    if (c->io->in_off == c->io->in_len)
        c->io->in_off = c->io->in_len = 0;
    if (c->in_full && c->state == CS_OPEN) {
        c->in_full = false;
        conn_update_read(c);
    }
}

size_t jn_conn_input_len(const jn_conn_t *c)
{
    return c->io ? c->io->in_len - c->io->in_off : 0;
}

/* ---- handlers, limits, identity ---- */

void jn_conn_set_handler(jn_conn_t *c, const jn_conn_handler_t *h, void *ctx)
{
    c->h = h;
    c->ctx = ctx;
    c->gen++;
    if (h && c->state == CS_OPEN) {
        c->in_full = false;
        if (c->io && (c->io->in_len > c->io->in_off || c->io->ssl)) {
            c->want_deliver = true;
            conn_schedule(c);
        }
        if (!c->in_cb && !c->in_read)
            conn_update_read(c);
    }
}

void *jn_conn_ctx(const jn_conn_t *c)
{
    return c->ctx;
}

const jn_conn_handler_t *jn_conn_handler(const jn_conn_t *c)
{
    return c->h;
}

static void conn_set_out_caps(jn_conn_t *c)
{
    /* out, enc and wbuf swap on a partial write: one cap for all three,
     * with room for TLS record overhead on top of the logical cap that
     * out_room enforces. */
    if (!c->io)
        return;
    size_t max = (size_t)c->out_max + c->out_max / 8 + 16384;
    c->io->out.max = c->io->enc.max = c->io->wbuf.max = max;
}

/* Caps are kept in 32 bits: 4 GiB is far above any buffer we would hold. */
static uint32_t cap32(size_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

void jn_conn_set_limits(jn_conn_t *c, size_t in_max, size_t out_high_water, size_t out_max)
{
    if (in_max)
        c->in_max = cap32(in_max);
    if (out_high_water)
        c->out_hw = cap32(out_high_water);
    if (out_max)
        c->out_max = cap32(out_max);
    if (c->out_max < c->out_hw)
        c->out_max = c->out_hw;
    conn_set_out_caps(c);
}

void jn_conn_need_input(jn_conn_t *c, size_t total)
{
    /* A hint: dropping it for want of memory only costs regrowth. */
    if (total == 0 && !c->io)
        return;
    if (conn_get_io(c))
        c->io->in_need = total > c->in_max ? c->in_max : total;
}

void jn_conn_set_timeout(jn_conn_t *c, uint64_t ms)
{
    c->deadline = ms ? uv_now(c->net->loop) + ms : 0;
}

const char *jn_conn_peer(const jn_conn_t *c)
{
    /* Formatted on demand: 46 bytes of text per idle conn would be more
     * than a tenth of it. A small ring lets a log line name a few peers. */
    static __thread char ring[4][INET6_ADDRSTRLEN];
    static __thread unsigned next;
    char *s = ring[next++ % 4];
    s[0] = '\0';
    if (c->peer_v6) {
        /* Not stored (16 bytes per conn for the rarer family): asked of
         * the socket, so a closed conn's IPv6 peer prints as "". */
        struct sockaddr_storage ss;
        int len = sizeof ss;
        if (c->state < CS_CLOSED && uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0 &&
            ss.ss_family == AF_INET6)
            uv_ip6_name((const struct sockaddr_in6 *)&ss, s, INET6_ADDRSTRLEN);
    } else if (c->peer4[0] || c->peer4[1] || c->peer4[2] || c->peer4[3] || c->loopback) {
        struct sockaddr_in a = {.sin_family = AF_INET};
        memcpy(&a.sin_addr, c->peer4, 4);
        uv_ip4_name(&a, s, INET6_ADDRSTRLEN);
    }
    return s;
}

bool jn_conn_is_loopback(const jn_conn_t *c)
{
    return c->loopback;
}

bool jn_conn_is_tls(const jn_conn_t *c)
{
    return conn_ssl(c) != NULL;
}

jn_net_t *jn_conn_net(const jn_conn_t *c)
{
    return c->net;
}

uv_loop_t *jn_conn_loop(const jn_conn_t *c)
{
    return c->net->loop;
}

/* ---- accepting ---- */

static void conn_set_peer(jn_conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    memset(c->peer4, 0, sizeof c->peer4);
    c->peer_v6 = false;
    c->loopback = false;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0)
        return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        memcpy(c->peer4, &a->sin_addr, 4);
        c->loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        c->peer_v6 = true;
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        const uint8_t *b = a->sin6_addr.s6_addr;
        c->loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) || (memcmp(b, v4mapped, 12) == 0 && b[12] == 127);
    }
}

void jn__conn_accept(jn_listener_t *l)
{
    jn_net_t *net = l->net;
    jn_conn_t *c = jn_pool_calloc(&net->conn_pool);
    if (!c)
        return;
    if (uv_tcp_init(net->loop, &c->tcp) < 0) {
        jn_pool_free(&net->conn_pool, c);
        return;
    }
    c->tcp.data = c;
    c->net = net;
    net->handles++;
    jn_list_insert_tail(&net->conns, &c->link);
    net->nconns++;
    if (net->cfg.m_conns)
        net->cfg.m_conns->value++;
    c->in_max = cap32(net->cfg.in_max);
    c->out_hw = cap32(net->cfg.out_high_water);
    c->out_max = cap32(net->cfg.out_max);
    c->t_active = (uint32_t)uv_now(net->loop);
    if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&c->tcp) < 0) {
        conn_finish(c, JN_EIO);
        return;
    }
    (void)uv_tcp_nodelay(&c->tcp, 1);
    conn_set_peer(c);
    if (l->ctx) {
        /* A TLS conn keeps its I/O state for the SSL object. */
        if (!conn_get_io(c)) {
            conn_finish(c, JN_ENOMEM);
            return;
        }
        BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
        c->io->ssl = SSL_new(l->ctx);
        if (!rb || !wb || !c->io->ssl) {
            BIO_free(rb);
            BIO_free(wb);
            conn_finish(c, JN_ENOMEM);
            return;
        }
        SSL_set_bio(c->io->ssl, rb, wb);
        SSL_set_accept_state(c->io->ssl);
    }
    c->in_cb++;
    l->on_accept(c, l->arg);
    c->in_cb--;
    conn_after_cb(c);
    if (c->state == CS_CLOSED)
        return;
    if (!c->h) {
        conn_finish(c, 0);
        return;
    }
    conn_update_read(c);
}

/* ---- the sweep and the idle handle ---- */

static void conn_shrink(jn_conn_t *c)
{
    if (!c->io)
        return;
    if (c->io->in && c->io->in_off == c->io->in_len) {
        c->net->shrunk += c->io->in_cap;
        free(c->io->in);
        c->io->in = NULL;
        c->io->in_off = c->io->in_len = c->io->in_cap = 0;
    }
    if (!c->writing && jn_conn_pending(c) == 0) {
        c->net->shrunk += c->io->out.cap + c->io->enc.cap + c->io->wbuf.cap;
        jn_buf_free(&c->io->out);
        jn_buf_free(&c->io->enc);
        jn_buf_free(&c->io->wbuf);
    }
    if (conn_io_quiet(c)) {
        c->net->shrunk += sizeof *c->io;
        conn_io_free(c);
    }
}

static void on_sweep(uv_timer_t *t)
{
    jn_net_t *net = t->data;
    const jn_net_config_t *cfg = &net->cfg;
    uint64_t now = uv_now(net->loop);
    /* Callbacks may close any conn: walk a detached list, putting each conn
     * back before looking at it, so that a conn closed meanwhile simply
     * leaves the walk. */
    jn_list_t batch;
    jn_list_init(&batch);
    if (!jn_list_empty(&net->conns)) {
        batch.next = net->conns.next;
        batch.prev = net->conns.prev;
        batch.next->prev = &batch;
        batch.prev->next = &batch;
        jn_list_init(&net->conns);
    }
    while (!jn_list_empty(&batch)) {
        jn_conn_t *c = jn_container_of(batch.next, jn_conn_t, link);
        jn_list_remove(&c->link);
        jn_list_insert_tail(&net->conns, &c->link);
        switch (c->state) {
        case CS_SHUTTING:
        case CS_LINGER:
            if (!c->io || now - c->io->t_close >= cfg->linger_ms)
                conn_finish(c, 0);
            continue;
        case CS_FLUSHING: {
            uint64_t bound = cfg->write_stall_ms ? cfg->write_stall_ms : cfg->linger_ms;
            if (!c->io || now - c->io->t_write >= bound)
                conn_finish(c, 0);
            continue;
        }
        default:
            break;
        }
        if (c->writing && cfg->write_stall_ms && now - c->io->t_write >= cfg->write_stall_ms) {
            conn_finish(c, JN_EAGAIN); /* the peer stopped reading */
            continue;
        }
        if (c->deadline && now >= c->deadline) {
            c->deadline = 0;
            if (c->h && c->h->on_timeout) {
                c->in_cb++;
                c->h->on_timeout(c);
                c->in_cb--;
                conn_after_cb(c);
            } else {
                conn_finish(c, JN_EAGAIN);
            }
            if (c->state != CS_OPEN)
                continue;
        }
        if (!c->paused && cfg->shrink_ms && (uint32_t)now - c->t_active >= cfg->shrink_ms)
            conn_shrink(c);
    }
    spares_trim(net);
    /* Many connections went idle: their buffers were freed between the
     * pooled objects, and malloc keeps freed pages unless asked. */
    if (net->shrunk >= TRIM_AFTER) {
        net->shrunk = 0;
        malloc_trim(0);
    }
}

static void on_idle(uv_idle_t *h)
{
    jn_net_t *net = h->data;
    jn_list_t batch;
    jn_list_init(&batch);
    /* Move the list so that work scheduled while it runs waits one turn. */
    if (!jn_list_empty(&net->deferred)) {
        batch.next = net->deferred.next;
        batch.prev = net->deferred.prev;
        batch.next->prev = &batch;
        batch.prev->next = &batch;
        jn_list_init(&net->deferred);
    }
    while (!jn_list_empty(&batch)) {
        jn_conn_t *c = jn_container_of(batch.next, conn_io_t, sched)->conn;
        jn_list_remove(&c->io->sched);
        if (c->want_deliver && c->state == CS_OPEN) {
            c->in_read = true;
            conn_process_input(c);
            c->in_read = false;
        }
        conn_flush(c);
        conn_update_read(c);
        conn_quiesce(c);
    }
    if (jn_list_empty(&net->deferred))
        uv_idle_stop(&net->idle);
}

void jn_net_free(jn_net_t *net)
{
    if (!net || net->freeing)
        return;
    net->freeing = true;
    jn_list_t *pos, *tmp;
    jn_list_foreach_safe(pos, tmp, &net->listeners) jn_listener_close(jn_container_of(pos, jn_listener_t, link));
    while (!jn_list_empty(&net->conns)) {
        jn_conn_t *c = jn_container_of(net->conns.next, jn_conn_t, link);
        /* Best effort: what is queued goes out if the socket takes it now. */
        if (!c->writing)
            conn_flush(c);
        conn_finish(c, 0);
    }
    uv_timer_stop(&net->sweep);
    uv_close((uv_handle_t *)&net->sweep, on_net_handle_closed);
    uv_close((uv_handle_t *)&net->idle, on_net_handle_closed);
}
