/* ws_codec.c - WebSocket framing for the server side, sans I/O, on top of
 * wslay's event API.
 *
 * wslay does the frame parsing, masking rules (an unmasked client frame is
 * a 1002), control frames, fragmentation, message size limit (1009), the
 * close handshake and UTF-8 checks of uncompressed text. This file adds
 * what wslay leaves to its user: feeding it bytes that arrived elsewhere
 * (its recv callback reads from the buffer given to jn_ws_codec_feed),
 * handing its output to a write callback (the connection's capped output
 * buffer), permessage-deflate on RSV1 messages with the checks that must
 * follow decompression (UTF-8 again, size again), and RSV1 on frames where
 * RFC 7692 forbids it.
 *
 * Sending: when wslay holds nothing, a data frame is written directly as
 * one header plus payload (server frames are unmasked, so the header is
 * all there is to build); this skips wslay's copy of every message on the
 * fan-out path. jn_ws_codec_sendv goes one step further for uncompressed
 * messages: the header and the message's pieces (a rendered record shared
 * by every subscriber, the subscription id of this one) reach the output
 * in one copy. When wslay holds something (a pong, a close, an earlier
 * message that did not fit) the message queues behind it, keeping order.
 *
 * Receiving can yield: jn_ws_codec_feed_some stops taking bytes once the
 * message callback calls jn_ws_codec_yield, so a publisher whose messages
 * fan out to thousands of connections hands over its input a slice at a
 * time and their output is written in between.
 */
#include "ws_internal.h"

#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "../../common/utf8.h"

#define KEEP_BUF_BYTES 65536 /* scratch buffers larger than this are freed after use */

struct jn_ws_codec {
    wslay_event_context_ptr ctx;
    jn_ws_codec_cb_t cb;
    void *arg;
    jn_ws_codec_config_t cfg;
    const uint8_t *in;      /* the bytes being fed */
    size_t in_len;
    jn_buf_t msg;           /* an inflated message (cap max_message) */
    jn_buf_t zout;          /* a compressed outgoing message */
    jn_buf_t gather;        /* the pieces of a jn_ws_codec_sendv message when they cannot go out as they are */
    bool direct;            /* a message may go straight to the write callback: open, nothing queued in wslay
                             * (kept here so that the fan-out path does not touch wslay's context) */
    bool yieldable;         /* inside jn_ws_codec_feed_some */
    bool yield;             /* the message callback asked to stop taking input */
    bool failed;            /* a close was queued for bad input: deliver nothing more */
    bool fatal;             /* a callback failed: the connection must go */
    bool proto_close;       /* wslay queued a code-less close for a framing error */
};

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    jn_ws_codec_t *c = user;
    if (c->in_len == 0 || c->yield) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < c->in_len ? len : c->in_len;
    memcpy(buf, c->in, n);
    c->in += n;
    c->in_len -= n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user)
{
    jn_ws_codec_t *c = user;
    int rc;
    if (c->proto_close && len == 2 && data[0] == 0x88 && data[1] == 0x00) {
        /* wslay fails a framing error with an empty close frame; RFC 6455
         * 7.4.1 has a code for it, and clients report it: send 1002. */
        static const uint8_t close1002[4] = {0x88, 0x02, 0x03, 0xea};
        rc = c->cb.write(c->arg, close1002, sizeof(close1002), NULL, 0);
    } else {
        rc = c->cb.write(c->arg, data, len, NULL, 0);
    }
    if (rc == JN_EAGAIN) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (rc < 0) {
        c->fatal = true;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
    jn_ws_codec_t *c = user;
    if (c->cb.random(c->arg, buf, len) < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return 0;
}

/* Recomputes c->direct after anything that may have changed wslay's
 * queue or state. */
static void refresh(jn_ws_codec_t *c)
{
    c->direct = !c->fatal && wslay_event_get_write_enabled(c->ctx) && !wslay_event_get_close_sent(c->ctx) &&
                !wslay_event_want_write(c->ctx);
}

/* Fails the connection with |code| after bad input. */
static void fail(jn_ws_codec_t *c, uint16_t code, const char *reason)
{
    c->failed = true;
    jn_ws_codec_close(c, code, reason);
}

static void frame_start_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_start_arg *a,
                           void *user)
{
    jn_ws_codec_t *c = user;
    /* RSV1 marks a compressed message: only on its first frame, never on
     * a control frame (RFC 7692 6). */
    if ((a->rsv & WSLAY_RSV1_BIT) && (wslay_is_ctrl_frame(a->opcode) || a->opcode == WSLAY_CONTINUATION_FRAME))
        fail(c, JN_WS_CLOSE_PROTOCOL, "RSV1 on a control or continuation frame");
}

static void free_big(jn_buf_t *b)
{
    if (b->cap > KEEP_BUF_BYTES)
        jn_buf_free(b);
    else
        jn_buf_reset(b);
}

static void msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a, void *user)
{
    jn_ws_codec_t *c = user;
    if (c->failed)
        return;
    if (a->opcode == WSLAY_PONG) {
        if (c->cb.pong)
            c->cb.pong(c->arg);
        return;
    }
    if (a->opcode != WSLAY_TEXT_FRAME && a->opcode != WSLAY_BINARY_FRAME)
        return; /* ping and close are answered by wslay */
    const uint8_t *p = a->msg;
    size_t len = a->msg_length;
    if (a->rsv & WSLAY_RSV1_BIT) {
        if (!c->cfg.pmd.enabled) {
            fail(c, JN_WS_CLOSE_PROTOCOL, "RSV1 without permessage-deflate");
            return;
        }
        jn_buf_reset(&c->msg);
        int rc = jn_ws_inflate(c->cfg.z, p, len, &c->msg);
        if (rc == JN_ETOOBIG) {
            fail(c, JN_WS_CLOSE_TOO_BIG, "message too big");
            return;
        }
        if (rc < 0) {
            fail(c, rc == JN_ENOMEM ? JN_WS_CLOSE_INTERNAL : JN_WS_CLOSE_INVALID_DATA, "bad deflate data");
            return;
        }
        p = c->msg.data;
        len = c->msg.len;
        /* wslay skipped its UTF-8 check on the compressed bytes. */
        if (a->opcode == WSLAY_TEXT_FRAME && len && !jn_utf8_valid(p, len)) {
            fail(c, JN_WS_CLOSE_INVALID_DATA, "invalid UTF-8");
            return;
        }
    }
    static const uint8_t empty[1];
    c->cb.message(c->arg, a->opcode == WSLAY_BINARY_FRAME, p ? p : empty, len);
    free_big(&c->msg);
}

int jn_ws_codec_new(const jn_ws_codec_config_t *cfg, const jn_ws_codec_cb_t *cb, void *arg, jn_ws_codec_t **out)
{
    if (cfg->pmd.enabled && !cfg->z)
        return JN_EINVAL;
    jn_ws_codec_t *c = calloc(1, sizeof(*c));
    if (!c)
        return JN_ENOMEM;
    c->cb = *cb;
    c->arg = arg;
    c->cfg = *cfg;
    if (!c->cfg.max_message)
        c->cfg.max_message = 1u << 20;
    if (!c->cfg.compress_min)
        c->cfg.compress_min = 256;
    jn_buf_init(&c->msg, c->cfg.max_message);
    jn_buf_init(&c->zout, c->cfg.max_message + 1024);
    jn_buf_init(&c->gather, JN_WS_GATHER_MAX);
    struct wslay_event_callbacks wcb = {
        .recv_callback = recv_cb,
        .send_callback = send_cb,
        .genmask_callback = genmask_cb,
        .on_frame_recv_start_callback = frame_start_cb,
        .on_msg_recv_callback = msg_cb,
    };
    if (wslay_event_context_server_init(&c->ctx, &wcb, c) != 0) {
        free(c);
        return JN_ENOMEM;
    }
    wslay_event_config_set_max_recv_msg_length(c->ctx, c->cfg.max_message);
    if (c->cfg.pmd.enabled)
        wslay_event_config_set_allowed_rsv_bits(c->ctx, WSLAY_RSV1_BIT);
    refresh(c);
    *out = c;
    return 0;
}

void jn_ws_codec_free(jn_ws_codec_t *c)
{
    if (!c)
        return;
    wslay_event_context_free(c->ctx);
    jn_buf_free(&c->msg);
    jn_buf_free(&c->zout);
    jn_buf_free(&c->gather);
    free(c);
}

int jn_ws_codec_flush(jn_ws_codec_t *c)
{
    if (c->fatal)
        return JN_ECLOSED;
    if (wslay_event_want_write(c->ctx) && wslay_event_send(c->ctx) != 0)
        c->fatal = true;
    refresh(c);
    return c->fatal ? JN_ECLOSED : 0;
}

/* Feeds |p|; with |yieldable| the message callback may stop it early
 * (jn_ws_codec_yield), and *used says how far it got. */
static int feed(jn_ws_codec_t *c, const uint8_t *p, size_t len, bool yieldable, size_t *used)
{
    *used = len;
    if (c->fatal) {
        c->direct = false;
        return JN_ECLOSED;
    }
    c->in = p;
    c->in_len = len;
    c->yieldable = yieldable;
    c->yield = false;
    if (wslay_event_get_read_enabled(c->ctx)) {
        int r = wslay_event_recv(c->ctx);
        if (r == WSLAY_ERR_NOMEM) {
            c->fatal = true;
        } else if (r != 0) {
            /* Our recv callback only ever says "would block", so any other
             * failure is a framing error below the message layer (reserved
             * opcode, fragmented control frame, bad length): wslay queued a
             * close without a code, which ours replaces when it can. */
            c->proto_close = true;
            fail(c, JN_WS_CLOSE_PROTOCOL, "protocol error");
        }
    }
    /* Anything after a close is dropped (counts as taken). */
    if (c->yield && !c->fatal && wslay_event_get_read_enabled(c->ctx))
        *used = len - c->in_len;
    c->in = NULL;
    c->in_len = 0;
    c->yieldable = false;
    c->yield = false;
    return jn_ws_codec_flush(c);
}

int jn_ws_codec_feed(jn_ws_codec_t *c, const uint8_t *p, size_t len)
{
    size_t used;
    return feed(c, p, len, false, &used);
}

int jn_ws_codec_feed_some(jn_ws_codec_t *c, const uint8_t *p, size_t len, size_t *used)
{
    return feed(c, p, len, true, used);
}

void jn_ws_codec_yield(jn_ws_codec_t *c)
{
    if (c->yieldable)
        c->yield = true;
}

/* Writes a frame header for an unmasked, final frame into |h| (14 bytes). */
static size_t frame_header(uint8_t *h, uint8_t opcode, bool rsv1, size_t len)
{
    h[0] = (uint8_t)(0x80 | (rsv1 ? 0x40 : 0) | opcode);
    if (len < 126) {
        h[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        h[1] = 126;
        jn_store_be16(h + 2, (uint16_t)len);
        return 4;
    }
    h[1] = 127;
    jn_store_be64(h + 2, (uint64_t)len);
    return 10;
}

int jn_ws_codec_send(jn_ws_codec_t *c, bool binary, const uint8_t *p, size_t len)
{
    if (c->fatal || !wslay_event_get_write_enabled(c->ctx) || wslay_event_get_close_sent(c->ctx))
        return JN_ECLOSED;
    uint8_t opcode = binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME;
    const uint8_t *payload = p;
    size_t plen = len;
    bool rsv1 = false;
    if (c->cfg.pmd.enabled && len >= c->cfg.compress_min) {
        jn_buf_reset(&c->zout);
        /* Not compressed (sent as is, which RFC 7692 allows) when zlib
         * cannot honour the window (8 bits) or it would not shrink. */
        if (jn_ws_deflate(c->cfg.z, c->cfg.pmd.server_window_bits, p, len, &c->zout) == 0 && c->zout.len < len) {
            payload = c->zout.data;
            plen = c->zout.len;
            rsv1 = true;
        }
    }
    int rc;
    if (!wslay_event_want_write(c->ctx)) {
        uint8_t h[14];
        size_t hl = frame_header(h, opcode, rsv1, plen);
        rc = c->cb.write(c->arg, h, hl, payload, plen);
        if (rc < 0 && rc != JN_EAGAIN) {
            c->fatal = true;
            c->direct = false;
            rc = JN_ECLOSED;
        }
    } else {
        struct wslay_event_msg m = {opcode, payload, plen};
        int wr = wslay_event_queue_msg_ex(c->ctx, &m, rsv1 ? WSLAY_RSV1_BIT : WSLAY_RSV_NONE);
        rc = wr == 0 ? 0 : wr == WSLAY_ERR_NOMEM ? JN_ENOMEM : JN_ECLOSED;
        if (rc == 0)
            rc = jn_ws_codec_flush(c);
        refresh(c);
    }
    if (rsv1)
        free_big(&c->zout);
    return rc;
}

int jn_ws_codec_sendv(jn_ws_codec_t *c, bool binary, struct iovec *iov, int iovcnt)
{
    if (iovcnt < 2 || iovcnt > JN_WS_IOV_MAX + 1)
        return JN_EINVAL;
    size_t len = 0;
    for (int i = 1; i < iovcnt; i++) {
        if (iov[i].iov_len > JN_WS_GATHER_MAX - len)
            return JN_ETOOBIG;
        len += iov[i].iov_len;
    }
    bool compress = c->cfg.pmd.enabled && len >= c->cfg.compress_min;
    if (!compress && c->direct && c->cb.writev) {
        /* The common case of fan-out: header and pieces straight to the
         * output, which copies them once. */
        uint8_t h[14];
        iov[0].iov_base = h;
        iov[0].iov_len = frame_header(h, binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME, false, len);
        int rc = c->cb.writev(c->arg, iov, iovcnt);
        iov[0].iov_base = NULL;
        iov[0].iov_len = 0;
        if (rc < 0 && rc != JN_EAGAIN) {
            c->fatal = true;
            c->direct = false;
            rc = JN_ECLOSED;
        }
        return rc;
    }
    if (c->fatal || !wslay_event_get_write_enabled(c->ctx) || wslay_event_get_close_sent(c->ctx))
        return JN_ECLOSED;
    if (iovcnt == 2)
        return jn_ws_codec_send(c, binary, iov[1].iov_base, iov[1].iov_len);
    jn_buf_reset(&c->gather);
    for (int i = 1; i < iovcnt; i++) {
        int rc = iov[i].iov_len ? jn_buf_append(&c->gather, iov[i].iov_base, iov[i].iov_len) : 0;
        if (rc < 0) {
            free_big(&c->gather);
            return rc;
        }
    }
    int rc = jn_ws_codec_send(c, binary, c->gather.data, c->gather.len);
    free_big(&c->gather);
    return rc;
}

int jn_ws_codec_ping(jn_ws_codec_t *c, const uint8_t *p, size_t len)
{
    if (len > 125)
        return JN_EINVAL;
    if (c->fatal)
        return JN_ECLOSED;
    struct wslay_event_msg m = {WSLAY_PING, p, len};
    int wr = wslay_event_queue_msg(c->ctx, &m);
    refresh(c);
    if (wr != 0)
        return wr == WSLAY_ERR_NOMEM ? JN_ENOMEM : JN_ECLOSED;
    return jn_ws_codec_flush(c);
}

void jn_ws_codec_close(jn_ws_codec_t *c, uint16_t code, const char *reason)
{
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > 123)
        rl = 123;
    /* NO_MORE_MSG when a close is already queued: idempotent. */
    (void)wslay_event_queue_close(c->ctx, code, (const uint8_t *)reason, rl);
    wslay_event_shutdown_read(c->ctx);
    refresh(c);
}

size_t jn_ws_codec_pending(const jn_ws_codec_t *c)
{
    return wslay_event_get_queued_msg_length(c->ctx);
}

bool jn_ws_codec_done(const jn_ws_codec_t *c)
{
    return c->fatal || wslay_event_get_close_sent(c->ctx);
}

uint16_t jn_ws_codec_close_code(const jn_ws_codec_t *c)
{
    if (!wslay_event_get_close_sent(c->ctx))
        return 0;
    uint16_t code = wslay_event_get_status_code_sent(c->ctx);
    return c->proto_close && code == WSLAY_CODE_NO_STATUS_RCVD ? JN_WS_CLOSE_PROTOCOL : code;
}
