/* ws_transport.c - MQTT over WebSocket (MQTT 3.1.1 and 5.0, section 6):
 * GET /mqtt on the HTTP listeners upgrades to WebSocket with the
 * subprotocol "mqtt" (or "mqttv3.1", which older clients offer), and the
 * connection then carries an ordinary MQTT session (session.c) through a
 * jn_mqtt_transport_t whose bytes travel in binary WebSocket messages.
 *
 * The framing is the WebSocket door's codec (proto/ws/ws_codec.c) and its
 * connection glue (ws_conn.c); this file only maps the two ways:
 *
 *   in   binary messages are a byte stream: an MQTT packet may span
 *        messages and a message may carry several packets (6.0.0-2), so
 *        the bytes go to jn_mqtt_session_input straight from the message
 *        and only a partial packet left at its end is copied (|in|); a
 *        text message closes the connection (6.0.0-1: 1003).
 *   out  the session appends one packet to a staging buffer shared by all
 *        WebSocket sessions of the door (it never holds more than one
 *        packet: outbuf and commit pair up inside one call of the
 *        session), and commit sends it as one binary message. The staging
 *        buffer's cap is the room left in the connection's output, so an
 *        encoder fails exactly where it would on TCP.
 *   close     the session's close sends a close frame (1000) after what is
 *             queued; a peer's close frame, a WebSocket protocol error or
 *             EOF close the MQTT session as an abnormal end (the will goes
 *             out unless a DISCONNECT came first).
 *   timeout   the session's deadline (CONNECT wait, 1.5 x keep alive) is
 *             the connection's deadline; there are no WebSocket pings of
 *             our own (MQTT PINGREQ keeps the connection alive), those of
 *             the client are answered by the codec.
 *
 * permessage-deflate is declined: MQTT packets are small and every
 * message would pay for a zlib round.
 */
#include "mqtt_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"
#include "../ws/ws_internal.h"

#define WS_FRAME_HDR_MAX 14      /* largest frame header (10 bytes unmasked, as the server sends) */
#define WS_IN_KEEP 4096          /* a reassembly buffer larger than this is freed once empty */
#define WS_LINGER_MS 2000        /* after our close frame: wait this long for the peer's */

typedef struct ws_mqtt {
    jn_mqtt_t *m;
    jn_conn_t *conn;
    jn_ws_codec_t *codec;
    jn_mqtt_session_t *sess;     /* NULL once jn_mqtt_session_closed ran */
    jn_buf_t in;                 /* the start of a packet that a message did not complete */
    size_t out_max;              /* the connection's output hard cap (jn_conn_set_limits) */
    int why;                     /* reason for jn_mqtt_session_closed when the peer ended it */
    bool closing;                /* close frame queued */
} ws_mqtt_t;

/* ---- the transport the session writes through ---- */

static void ws_close(ws_mqtt_t *w, uint16_t code, const char *reason);

static jn_buf_t *t_outbuf(void *tctx)
{
    ws_mqtt_t *w = tctx;
    jn_mqtt_t *m = w->m;
    if (w->closing || jn_conn_is_closing(w->conn))
        return NULL;
    size_t pending = jn_conn_pending(w->conn) + jn_ws_codec_pending(w->codec);
    size_t room = w->out_max > pending + WS_FRAME_HDR_MAX ? w->out_max - pending - WS_FRAME_HDR_MAX : 0;
    /* A packet an encoder left behind without a commit is not sent. */
    jn_buf_reset(&m->wsout);
    m->wsout.max = room;
    return &m->wsout;
}

static void t_commit(void *tctx)
{
    ws_mqtt_t *w = tctx;
    jn_buf_t *b = &w->m->wsout;
    if (b->len == 0 || w->closing)
        return;
    int rc = jn_ws_codec_send(w->codec, true, b->data, b->len);
    jn_buf_reset(b);
    if (rc < 0 && rc != JN_ECLOSED) {
        /* outbuf capped the packet to the room left, so this is memory
         * running out. A lost packet would leave the client waiting (an
         * acknowledgement, a window slot): end the connection instead; the
         * session learns it from on_close, not from inside its own call. */
        jn_debug("mqtt/ws: a packet was not sent: %s", jn_strerror(rc));
        if (!w->why)
            w->why = rc;
        ws_close(w, JN_WS_CLOSE_INTERNAL, "output failed");
    }
    if (b->cap > (64u << 10))
        jn_buf_free(b); /* do not keep a large packet's buffer for small ones */
}

static bool t_above(void *tctx)
{
    ws_mqtt_t *w = tctx;
    return jn_conn_above_high_water(w->conn);
}

/* Queues a close frame with |code| and closes the connection once it is
 * written (now, or from on_drain). */
static void ws_close(ws_mqtt_t *w, uint16_t code, const char *reason)
{
    if (!w->closing) {
        w->closing = true;
        jn_ws_codec_close(w->codec, code, reason);
    }
    /* Never jn_conn_abort here: called from the session (also while it
     * delivers to this connection from another's callback), it would run
     * on_close, and free the session, under its feet. */
    if (jn_ws_codec_flush(w->codec) < 0 || jn_ws_codec_done(w->codec)) {
        jn_conn_close(w->conn);
    } else {
        /* The frame waits for room: the peer has this long to read. */
        jn_conn_set_timeout(w->conn, WS_LINGER_MS);
    }
}

static void t_close(void *tctx)
{
    ws_close(tctx, JN_WS_CLOSE_NORMAL, "");
}

static void t_abort(void *tctx)
{
    ws_mqtt_t *w = tctx;
    jn_mqtt_session_t *s = w->sess;
    w->sess = NULL;
    w->closing = true;
    if (s)
        jn_mqtt_session_closed(s, 0);
    jn_conn_abort(w->conn); /* on_close frees |w| (now or after the current callback) */
}

static void t_timeout(void *tctx, uint64_t ms)
{
    ws_mqtt_t *w = tctx;
    if (!w->closing)
        jn_conn_set_timeout(w->conn, ms);
}

static const jn_mqtt_transport_t ws_transport = {
    .outbuf = t_outbuf,
    .commit = t_commit,
    .above_high_water = t_above,
    .close = t_close,
    .abort = t_abort,
    .set_timeout = t_timeout,
};

/* ---- codec callbacks ---- */

static int ws_write(void *arg, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    ws_mqtt_t *w = arg;
    return jn_ws_conn_write(w->conn, a, alen, b, blen);
}

/* The peer ended the WebSocket conversation without an MQTT DISCONNECT
 * reaching us first (or broke a rule): an abnormal end for MQTT. */
static void peer_ended(ws_mqtt_t *w, int why)
{
    if (!w->why)
        w->why = why;
    if (w->sess)
        jn_mqtt_session_eof(w->sess); /* the session's close lands in ws_close */
}

static void ws_message(void *arg, bool binary, const uint8_t *p, size_t len)
{
    ws_mqtt_t *w = arg;
    if (!w->sess || w->closing)
        return;
    if (!binary) {
        /* 6.0.0-1: MQTT travels in binary messages only. */
        ws_close(w, JN_WS_CLOSE_UNSUPPORTED, "MQTT needs binary messages");
        peer_ended(w, JN_EPROTO);
        return;
    }
    if (w->in.len == 0) {
        size_t n = jn_mqtt_session_input(w->sess, p, len);
        p += n;
        len -= n;
        if (len == 0)
            return;
        /* A packet continues in the next message. */
        if (jn_buf_append(&w->in, p, len) < 0)
            goto too_big;
        return;
    }
    if (jn_buf_append(&w->in, p, len) < 0)
        goto too_big;
    size_t n = jn_mqtt_session_input(w->sess, w->in.data, w->in.len);
    jn_buf_consume(&w->in, n);
    if (w->in.len == 0 && w->in.cap > WS_IN_KEEP)
        jn_buf_free(&w->in);
    return;
too_big:
    /* Only a packet over the maximum size can get here, and the codec
     * refuses those from their fixed header: this is memory running out. */
    ws_close(w, JN_WS_CLOSE_INTERNAL, "out of memory");
    peer_ended(w, JN_ENOMEM);
}

/* ---- connection callbacks ---- */

static size_t on_data(jn_conn_t *conn, const uint8_t *data, size_t len)
{
    ws_mqtt_t *w = jn_conn_ctx(conn);
    if (jn_ws_codec_feed(w->codec, data, len) < 0) {
        peer_ended(w, JN_EPROTO);
        jn_conn_abort(conn);
        return len;
    }
    if (jn_ws_codec_done(w->codec) && !jn_conn_is_closing(conn)) {
        /* The close handshake ended (the peer's close frame was echoed,
         * or we failed its bad input with 1002/1007/1009). */
        w->closing = true;
        peer_ended(w, JN_ECLOSED);
        jn_conn_close(conn);
    }
    return len;
}

static void on_drain(jn_conn_t *conn)
{
    ws_mqtt_t *w = jn_conn_ctx(conn);
    if (jn_ws_codec_flush(w->codec) < 0) {
        jn_conn_abort(conn);
        return;
    }
    if (w->closing) {
        if (jn_ws_codec_done(w->codec))
            jn_conn_close(conn);
        return;
    }
    if (w->sess)
        jn_mqtt_session_drain(w->sess);
}

static void on_timeout(jn_conn_t *conn)
{
    ws_mqtt_t *w = jn_conn_ctx(conn);
    if (w->closing || !w->sess) {
        jn_conn_abort(conn); /* our close frame could not leave in time */
        return;
    }
    jn_mqtt_session_timeout(w->sess);
}

static void on_eof(jn_conn_t *conn)
{
    ws_mqtt_t *w = jn_conn_ctx(conn);
    peer_ended(w, JN_ECLOSED);
    jn_conn_close(conn);
}

static void on_close(jn_conn_t *conn, int reason)
{
    ws_mqtt_t *w = jn_conn_ctx(conn);
    if (w->sess)
        jn_mqtt_session_closed(w->sess, reason ? reason : w->why);
    jn_ws_codec_free(w->codec);
    jn_buf_free(&w->in);
    free(w);
}

static const jn_conn_handler_t ws_handler = {
    .on_data = on_data,
    .on_drain = on_drain,
    .on_close = on_close,
    .on_timeout = on_timeout,
    .on_eof = on_eof,
};

/* ---- the upgrade ---- */

static const char *req_header(void *arg, const char *name, size_t *len)
{
    return jn_http_req_header(arg, name, len);
}

static void ws_upgrade(jn_http_req_t *req, void *arg)
{
    static const char *const protos[] = {"mqtt", "mqttv3.1", NULL};
    jn_mqtt_t *m = arg;
    if (m->freeing) {
        jn_http_respond_error(req, 503, "unavailable", "the MQTT door is closing");
        return;
    }
    const jn_http_request_t *head = jn_http_req_head(req);
    char method[16];
    snprintf(method, sizeof method, "%.*s", (int)head->method_len, head->method);
    jn_ws_handshake_t hs;
    if (jn_ws_handshake_check_protocols(method, req_header, req, false, protos,
                                        "MQTT over WebSocket needs the subprotocol 'mqtt'", &hs) < 0) {
        if (hs.status == 426 && jn_http_add_header(req, "Sec-WebSocket-Version", "13") < 0)
            jn_debug("mqtt/ws: cannot add Sec-WebSocket-Version");
        jn_http_respond_error(req, hs.status, hs.status == 426 ? "upgrade_required" : "bad_request", "%s",
                              hs.error);
        return;
    }
    bool loopback = jn_http_req_peer_is_loopback(req);
    /* One WebSocket message holds at least one whole packet of the
     * largest size we accept, plus room for small ones around it. */
    size_t max_message = (size_t)m->cfg.max_packet_size + 65536;
    ws_mqtt_t *w = calloc(1, sizeof *w);
    if (!w) {
        jn_http_respond_error(req, 503, "unavailable", "out of memory");
        return;
    }
    w->m = m;
    jn_buf_init(&w->in, (size_t)m->cfg.max_packet_size + 8 + max_message);
    jn_ws_codec_config_t cc = {.max_message = max_message};
    jn_ws_codec_cb_t cb = {.message = ws_message, .write = ws_write, .random = jn_ws_random};
    char extra[256];
    if (jn_ws_upgrade_headers(&hs, extra, sizeof extra) < 0 || jn_ws_codec_new(&cc, &cb, w, &w->codec) < 0) {
        free(w);
        jn_http_respond_error(req, 503, "unavailable", "out of memory");
        return;
    }
    jn_conn_t *conn = jn_http_upgrade(req, extra);
    if (!conn) {
        /* The request still waits for an answer. */
        jn_ws_codec_free(w->codec);
        free(w);
        jn_http_respond_error(req, 503, "unavailable", "cannot switch protocols now");
        return;
    }
    w->conn = conn;
    size_t hw = m->cfg.max_queued_bytes;
    w->out_max = hw * 4;
    jn_conn_set_limits(conn, max_message + 65536, hw, w->out_max);
    jn_conn_set_handler(conn, &ws_handler, w);
    w->sess = jn_mqtt_session_new(m, &ws_transport, w, loopback);
    if (!w->sess)
        jn_conn_abort(conn); /* on_close frees |w| */
}

int jn_mqtt_ws_route(jn_mqtt_t *m, jn_httpd_t *httpd, const char *path)
{
    int rc = jn_httpd_route(httpd, "GET", path ? path : "/mqtt", ws_upgrade, m);
    if (rc < 0)
        jn_error("mqtt: cannot register GET %s: %s", path ? path : "/mqtt", jn_strerror(rc));
    return rc;
}
