/* amqp.c - the AMQP door's listeners and connections: protocol header,
 * frame loop, the connection class (Start/StartOk with PLAIN and
 * AMQPLAIN, Tune, Open, Close), heartbeats both ways, and dispatch of
 * channel frames to amqp_channel.c.
 *
 * Connection exceptions send Connection.Close and then ignore everything
 * but Close/Close-Ok (AMQP 0-9-1 section 4.2.2); channel exceptions are
 * the channel's business and leave the connection and other channels as
 * they were.
 */
#include "amqp_int.h"

#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"

#define CLOSE_WAIT_MS 5000

int64_t jn__amqp_now(void)
{
    return (int64_t)(uv_hrtime() / 1000000u);
}

void jn_amqp_config_default(jn_amqp_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->frame_max = 131072;
    c->channel_max = 2047;
    c->heartbeat_s = 60;
    c->max_message = 128u << 20;
    c->commit_interval_ms = 1000;
}

void jn__amqp_send(amqp_conn_t *c, uint16_t ch, uint32_t id, const jn_amqp_arg_t *args, size_t n)
{
    jn_buf_t *out = jn_conn_outbuf(c->conn);
    if (!out)
        return;
    if (jn_amqp_encode_method(out, ch, id, args, n) != 0) {
        jn_warn("amqp: %s: cannot queue %s", jn_conn_peer(c->conn), jn_amqp_method_name(id));
        jn_conn_abort(c->conn);
        return;
    }
    jn_conn_commit(c->conn, 0);
}

bool jn__amqp_conn_writable(amqp_conn_t *c)
{
    return !jn_conn_is_closing(c->conn) && !jn_conn_above_high_water(c->conn);
}

void jn__amqp_conn_error(amqp_conn_t *c, uint16_t code, const char *text, uint32_t method)
{
    if (c->state == CS_CLOSING)
        return;
    jn_debug("amqp: %s: connection error %u %s", jn_conn_peer(c->conn), code, text);
    jn_amqp_arg_t a[4] = {JN_AMQP_U(code), JN_AMQP_STR(text), JN_AMQP_U(method >> 16), JN_AMQP_U(method & 0xffff)};
    if (a[1].len > 255)
        a[1].len = 255;
    jn__amqp_send(c, 0, JN_AMQP_CONNECTION_CLOSE, a, 4);
    c->state = CS_CLOSING;
    jn_conn_set_timeout(c->conn, CLOSE_WAIT_MS);
}

/* ---- connection class ---- */

static int send_start(amqp_conn_t *c)
{
    jn_buf_t t;
    jn_buf_init(&t, 4096);
    size_t m, cm;
    int rc = jn_amqp_table_begin(&t, &m);
    if (!rc) rc = jn_amqp_put_str(&t, "product", "Junction", 8);
    if (!rc) rc = jn_amqp_put_str(&t, "version", "3.12.0", 6);
    if (!rc) rc = jn_amqp_put_str(&t, "platform", "C", 1);
    if (!rc) rc = jn_amqp_put_str(&t, "cluster_name", "junction", 8);
    if (!rc) rc = jn_amqp_put_str(&t, "copyright", "Junction authors", 16);
    if (!rc) rc = jn_amqp_put_str(&t, "information", "https://github.com/junction", 27);
    if (!rc) rc = jn_amqp_put_key(&t, "capabilities");
    if (!rc) rc = jn_buf_put_u8(&t, 'F');
    if (!rc) rc = jn_amqp_table_begin(&t, &cm);
    static const char *const caps_true[] = {"publisher_confirms", "exchange_exchange_bindings", "basic.nack",
                                            "consumer_cancel_notify", "connection.blocked",
                                            "authentication_failure_close", "per_consumer_qos"};
    for (size_t i = 0; !rc && i < sizeof caps_true / sizeof caps_true[0]; i++)
        rc = jn_amqp_put_bool(&t, caps_true[i], true);
    if (!rc) rc = jn_amqp_put_bool(&t, "direct_reply_to", false);
    if (!rc) {
        jn_amqp_table_end(&t, cm);
        jn_amqp_table_end(&t, m);
        jn_amqp_arg_t a[5] = {JN_AMQP_U(0), JN_AMQP_U(9), JN_AMQP_BYTES(t.data + 4, t.len - 4),
                              JN_AMQP_STR("PLAIN AMQPLAIN"), JN_AMQP_STR("en_US")};
        jn__amqp_send(c, 0, JN_AMQP_CONNECTION_START, a, 5);
    }
    jn_buf_free(&t);
    return rc;
}

/* Copies a view into a NUL-terminated buffer; false if it does not fit
 * or holds a NUL. */
static bool copy_z(char *dst, size_t cap, const uint8_t *p, size_t len)
{
    if (len >= cap || (len && memchr(p, 0, len)))
        return false;
    memcpy(dst, p, len);
    dst[len] = 0;
    return true;
}

static void on_start_ok(amqp_conn_t *c, const jn_amqp_method_t *m)
{
    char user[JN_NAME_MAX + 1], pass[1025];
    const jn_amqp_arg_t *mech = &m->a[1], *resp = &m->a[2];
    bool ok = false;
    jn_amqp_value_t v;
    /* Capabilities the client announced. */
    if (jn_amqp_table_get(m->a[0].p, m->a[0].len, "capabilities", &v) == 1 && v.type == 'F') {
        jn_amqp_value_t cv;
        if (jn_amqp_table_get(v.p, v.len, "consumer_cancel_notify", &cv) == 1 && cv.type == 't')
            c->cap_cancel_notify = cv.i != 0;
    }
    if (mech->len == 5 && memcmp(mech->p, "PLAIN", 5) == 0) {
        /* authzid NUL authcid NUL password */
        const uint8_t *p = resp->p, *end = resp->p + resp->len;
        const uint8_t *z1 = resp->len ? memchr(p, 0, resp->len) : NULL;
        const uint8_t *z2 = z1 ? memchr(z1 + 1, 0, (size_t)(end - z1 - 1)) : NULL;
        ok = z2 && copy_z(user, sizeof user, z1 + 1, (size_t)(z2 - z1 - 1)) &&
             copy_z(pass, sizeof pass, z2 + 1, (size_t)(end - z2 - 1));
    } else if (mech->len == 8 && memcmp(mech->p, "AMQPLAIN", 8) == 0) {
        /* A field table without its length prefix. */
        jn_amqp_value_t lv, pv;
        ok = jn_amqp_table_validate(resp->p, resp->len) == 0 &&
             jn_amqp_table_get(resp->p, resp->len, "LOGIN", &lv) == 1 && lv.type == 'S' &&
             jn_amqp_table_get(resp->p, resp->len, "PASSWORD", &pv) == 1 && pv.type == 'S' &&
             copy_z(user, sizeof user, lv.p, lv.len) && copy_z(pass, sizeof pass, pv.p, pv.len);
    } else {
        jn__amqp_conn_error(c, JN_AMQP_ACCESS_REFUSED, "ACCESS_REFUSED - unsupported mechanism",
                            JN_AMQP_CONNECTION_START_OK);
        return;
    }
    jn_auth_t *auth = jn_broker_auth(c->door->broker);
    if (ok && jn_auth_check_password(auth, user, pass, &c->principal) == 0) {
        /* authenticated */
    } else if (ok && c->door->cfg.allow_anonymous &&
               ((strcmp(user, "guest") == 0 && strcmp(pass, "guest") == 0) || user[0] == 0)) {
        /* RabbitMQ's guest/guest, which it allows on loopback only: here
         * the server's anonymous rule decides (loopback-only by default). */
        jn_principal_anonymous(&c->principal);
    } else {
        jn__amqp_conn_error(c, JN_AMQP_ACCESS_REFUSED,
                            "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN",
                            JN_AMQP_CONNECTION_START_OK);
        return;
    }
    jn_amqp_arg_t a[3] = {JN_AMQP_U(c->door->cfg.channel_max), JN_AMQP_U(c->door->cfg.frame_max),
                          JN_AMQP_U(c->door->cfg.heartbeat_s)};
    jn__amqp_send(c, 0, JN_AMQP_CONNECTION_TUNE, a, 3);
    c->state = CS_TUNE_OK;
}

static void arm_heartbeat(amqp_conn_t *c)
{
    if (c->heartbeat && c->state != CS_CLOSING)
        jn_conn_set_timeout(c->conn, (uint64_t)c->heartbeat * 1000 / 2);
}

static void on_tune_ok(amqp_conn_t *c, const jn_amqp_method_t *m)
{
    uint32_t ch_max = (uint32_t)m->a[0].u, fmax = (uint32_t)m->a[1].u, hb = (uint32_t)m->a[2].u;
    if (fmax && fmax < JN_AMQP_FRAME_MIN_SIZE) {
        jn__amqp_conn_error(c, JN_AMQP_NOT_ALLOWED, "NOT_ALLOWED - frame_max too small", JN_AMQP_CONNECTION_TUNE_OK);
        return;
    }
    c->channel_max = ch_max && ch_max < c->door->cfg.channel_max ? (uint16_t)ch_max : c->door->cfg.channel_max;
    c->frame_max = fmax && fmax < c->door->cfg.frame_max ? fmax : c->door->cfg.frame_max;
    c->heartbeat = (uint16_t)hb;
    c->state = CS_OPEN;
    jn_conn_set_timeout(c->conn, 0);
    arm_heartbeat(c);
}

static void on_open(amqp_conn_t *c, const jn_amqp_method_t *m)
{
    /* One virtual host, "/": see docs/amqp.md. */
    if (!(m->a[0].len == 1 && m->a[0].p[0] == '/')) {
        jn__amqp_conn_error(c, JN_AMQP_NOT_ALLOWED, "NOT_ALLOWED - vhost not found", JN_AMQP_CONNECTION_OPEN);
        return;
    }
    jn_amqp_arg_t a[1] = {JN_AMQP_EMPTY};
    jn__amqp_send(c, 0, JN_AMQP_CONNECTION_OPEN_OK, a, 1);
    c->state = CS_RUNNING;
}

static amqp_chan_t *chan_get(amqp_conn_t *c, uint16_t id)
{
    return id < c->nchans ? c->chans[id] : NULL;
}

static void chan_drop(amqp_conn_t *c, uint16_t id)
{
    amqp_chan_t *ch = chan_get(c, id);
    if (ch) {
        c->chans[id] = NULL;
        jn__amqp_chan_free(ch);
    }
}

static void free_channels(amqp_conn_t *c)
{
    for (uint32_t i = 0; i < c->nchans; i++)
        chan_drop(c, (uint16_t)i);
    free(c->chans);
    c->chans = NULL;
    c->nchans = 0;
}

static void on_channel_open(amqp_conn_t *c, uint16_t id)
{
    if (id == 0 || id > c->channel_max) {
        jn__amqp_conn_error(c, JN_AMQP_CHANNEL_ERROR, "CHANNEL_ERROR - channel number out of range",
                            JN_AMQP_CHANNEL_OPEN);
        return;
    }
    if (chan_get(c, id)) {
        jn__amqp_conn_error(c, JN_AMQP_CHANNEL_ERROR, "CHANNEL_ERROR - second 'channel.open' seen",
                            JN_AMQP_CHANNEL_OPEN);
        return;
    }
    if (id >= c->nchans) {
        uint32_t n = c->nchans ? c->nchans : 8;
        while (n <= id)
            n *= 2;
        amqp_chan_t **nc = realloc(c->chans, n * sizeof *nc);
        if (!nc)
            goto nomem;
        memset(nc + c->nchans, 0, (n - c->nchans) * sizeof *nc);
        c->chans = nc;
        c->nchans = n;
    }
    c->chans[id] = jn__amqp_chan_new(c, id);
    if (!c->chans[id])
        goto nomem;
    jn_amqp_arg_t a[1] = {JN_AMQP_EMPTY};
    jn__amqp_send(c, id, JN_AMQP_CHANNEL_OPEN_OK, a, 1);
    return;
nomem:
    jn__amqp_conn_error(c, JN_AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - out of memory", JN_AMQP_CHANNEL_OPEN);
}

/* A method on channel 0. */
static void conn_method(amqp_conn_t *c, const jn_amqp_method_t *m)
{
    if (c->state == CS_CLOSING) {
        if (m->id == JN_AMQP_CONNECTION_CLOSE_OK)
            jn_conn_close(c->conn);
        else if (m->id == JN_AMQP_CONNECTION_CLOSE) {
            jn__amqp_send(c, 0, JN_AMQP_CONNECTION_CLOSE_OK, NULL, 0);
            jn_conn_close(c->conn);
        }
        return;
    }
    uint32_t want = c->state == CS_START_OK ? JN_AMQP_CONNECTION_START_OK
                    : c->state == CS_TUNE_OK ? JN_AMQP_CONNECTION_TUNE_OK
                    : c->state == CS_OPEN    ? JN_AMQP_CONNECTION_OPEN
                                             : 0;
    if (m->id == JN_AMQP_CONNECTION_CLOSE) {
        jn__amqp_send(c, 0, JN_AMQP_CONNECTION_CLOSE_OK, NULL, 0);
        c->state = CS_CLOSING;
        jn_conn_close(c->conn);
        return;
    }
    if (want && m->id != want) {
        jn__amqp_conn_error(c, JN_AMQP_COMMAND_INVALID, "COMMAND_INVALID - unexpected method in handshake", m->id);
        return;
    }
    switch (m->id) {
    case JN_AMQP_CONNECTION_START_OK:
        on_start_ok(c, m);
        break;
    case JN_AMQP_CONNECTION_TUNE_OK:
        on_tune_ok(c, m);
        break;
    case JN_AMQP_CONNECTION_OPEN:
        on_open(c, m);
        break;
    case JN_AMQP_CONNECTION_CLOSE_OK:
        break;
    case JN_AMQP_CONNECTION_UPDATE_SECRET:
        jn__amqp_send(c, 0, JN_AMQP_CONNECTION_UPDATE_SECRET_OK, NULL, 0);
        break;
    default:
        jn__amqp_conn_error(c, JN_AMQP_COMMAND_INVALID, "COMMAND_INVALID - method not allowed on channel 0", m->id);
        break;
    }
}

static void handle_frame(amqp_conn_t *c, const jn_amqp_frame_t *f)
{
    c->last_recv_ms = jn__amqp_now();
    if (f->type == JN_AMQP_FRAME_HEARTBEAT) {
        if (f->channel != 0)
            jn__amqp_conn_error(c, JN_AMQP_FRAME_ERROR, "FRAME_ERROR - heartbeat on a channel", 0);
        return;
    }
    if (f->channel == 0) {
        jn_amqp_method_t m;
        if (f->type != JN_AMQP_FRAME_METHOD) {
            jn__amqp_conn_error(c, JN_AMQP_UNEXPECTED_FRAME, "UNEXPECTED_FRAME - content on channel 0", 0);
            return;
        }
        int rc = jn_amqp_method_decode(f->payload, f->size, &m);
        if (rc) {
            jn__amqp_conn_error(c, rc == JN_EUNSUPPORTED ? JN_AMQP_NOT_IMPLEMENTED : JN_AMQP_SYNTAX_ERROR,
                                rc == JN_EUNSUPPORTED ? "NOT_IMPLEMENTED - unknown method" : "SYNTAX_ERROR - bad method",
                                f->size >= 4 ? jn_load_be32(f->payload) : 0);
            return;
        }
        conn_method(c, &m);
        return;
    }
    if (c->state == CS_CLOSING)
        return;
    if (c->state != CS_RUNNING) {
        jn__amqp_conn_error(c, JN_AMQP_COMMAND_INVALID, "COMMAND_INVALID - connection not open", 0);
        return;
    }
    amqp_chan_t *ch = chan_get(c, f->channel);
    if (!ch) {
        jn_amqp_method_t m;
        if (f->type == JN_AMQP_FRAME_METHOD && jn_amqp_method_decode(f->payload, f->size, &m) == 0) {
            if (m.id == JN_AMQP_CHANNEL_OPEN) {
                on_channel_open(c, f->channel);
                return;
            }
            /* A Close-Ok for a channel we already dropped is harmless. */
            if (m.id == JN_AMQP_CHANNEL_CLOSE_OK)
                return;
        }
        jn__amqp_conn_error(c, JN_AMQP_CHANNEL_ERROR, "CHANNEL_ERROR - expected 'channel.open'", 0);
        return;
    }
    jn__amqp_chan_frame(ch, f);
}

void jn__amqp_chan_done(amqp_conn_t *c, uint16_t id)
{
    chan_drop(c, id);
}

/* ---- jn_conn handler ---- */

static size_t on_data(jn_conn_t *conn, const uint8_t *data, size_t len)
{
    amqp_conn_t *c = jn_conn_ctx(conn);
    size_t used = 0;
    if (c->state == CS_HEADER) {
        int rc = jn_amqp_protocol_header_check(data, len);
        if (rc == JN_EPARTIAL)
            return 0;
        if (rc < 0) {
            /* Tell the peer what we speak, then close (section 4.2.2). */
            if (jn_conn_write(conn, JN_AMQP_PROTOCOL_HEADER, JN_AMQP_PROTOCOL_HEADER_LEN) == 0)
                jn_conn_close(conn);
            else
                jn_conn_abort(conn);
            return len;
        }
        used = (size_t)rc;
        c->state = CS_START_OK;
        if (send_start(c)) {
            jn_conn_abort(conn);
            return len;
        }
        jn_conn_set_timeout(conn, 10000);
    }
    while (used < len && !jn_conn_is_closing(conn)) {
        jn_amqp_frame_t f;
        uint32_t fmax = c->state >= CS_OPEN ? c->frame_max : c->door->cfg.frame_max;
        int rc = jn_amqp_frame_decode(data + used, len - used, fmax, &f);
        if (rc == JN_EPARTIAL) {
            if (len - used >= 7)
                jn_conn_need_input(conn, (size_t)jn_load_be32(data + used + 3) + JN_AMQP_FRAME_OVERHEAD);
            break;
        }
        if (rc < 0) {
            /* Framing is lost: nothing after this can be trusted. */
            c->state = CS_RUNNING;
            jn__amqp_conn_error(c, JN_AMQP_FRAME_ERROR,
                                rc == JN_ETOOBIG ? "FRAME_ERROR - frame too large" : "FRAME_ERROR - bad frame", 0);
            jn_conn_close(conn);
            return len;
        }
        handle_frame(c, &f);
        used += (size_t)rc;
    }
    return jn_conn_is_closing(conn) ? len : used;
}

static void on_drain(jn_conn_t *conn)
{
    amqp_conn_t *c = jn_conn_ctx(conn);
    for (uint32_t i = 0; i < c->nchans; i++)
        if (c->chans[i])
            jn__amqp_chan_drain(c->chans[i]);
}

static void on_timeout(jn_conn_t *conn)
{
    amqp_conn_t *c = jn_conn_ctx(conn);
    if (c->state == CS_RUNNING || c->state == CS_OPEN) {
        if (!c->heartbeat)
            return;
        /* Two missed heartbeat intervals: the peer is gone. */
        if (jn__amqp_now() - c->last_recv_ms > (int64_t)c->heartbeat * 2000) {
            jn_debug("amqp: %s: missed heartbeats", jn_conn_peer(conn));
            jn_conn_abort(conn);
            return;
        }
        jn_buf_t *out = jn_conn_outbuf(conn);
        if (out && jn_amqp_encode_heartbeat(out) == 0)
            jn_conn_commit(conn, 0);
        arm_heartbeat(c);
        return;
    }
    jn_conn_abort(conn);
}

static void on_close(jn_conn_t *conn, int reason)
{
    (void)reason;
    amqp_conn_t *c = jn_conn_ctx(conn);
    free_channels(c);
    jn__amqp_release_owned(c);
    jn_list_remove(&c->node);
    free(c);
}

static const jn_conn_handler_t amqp_handler = {
    .on_data = on_data,
    .on_drain = on_drain,
    .on_close = on_close,
    .on_timeout = on_timeout,
};

static void on_accept(jn_conn_t *conn, void *arg)
{
    jn_amqp_t *a = arg;
    amqp_conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        jn_conn_abort(conn);
        return;
    }
    c->door = a;
    c->conn = conn;
    c->state = CS_HEADER;
    c->frame_max = a->cfg.frame_max;
    c->channel_max = a->cfg.channel_max;
    c->last_recv_ms = jn__amqp_now();
    jn_list_insert_tail(&a->conns, &c->node);
    jn_conn_set_limits(conn, (size_t)a->cfg.frame_max + 64 > (1u << 20) ? (size_t)a->cfg.frame_max + 64 : 1u << 20,
                       0, 0);
    jn_conn_set_handler(conn, &amqp_handler, c);
    jn_conn_set_timeout(conn, 10000);
}

/* ---- the door ---- */

jn_amqp_t *jn_amqp_new(jn_broker_t *broker, const jn_amqp_config_t *cfg)
{
    jn_amqp_t *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->broker = broker;
    a->loop = jn_broker_loop(broker);
    if (cfg)
        a->cfg = *cfg;
    else
        jn_amqp_config_default(&a->cfg);
    if (a->cfg.frame_max < JN_AMQP_FRAME_MIN_SIZE)
        a->cfg.frame_max = JN_AMQP_FRAME_MIN_SIZE;
    jn_list_init(&a->conns);
    jn_list_init(&a->owned);
    jn_list_init(&a->forwarders);
    jn_buf_init(&a->scratch, 1u << 20);
    jn_net_config_t nc;
    jn_net_config_default(&nc);
    a->net = jn_net_new(a->loop, &nc);
    if (!a->net || jn__amqp_exchanges_init(a)) {
        jn_amqp_free(a);
        return NULL;
    }
    return a;
}

int jn_amqp_listen(jn_amqp_t *a, const char *host, int port, const char *cert, const char *key)
{
    if (a->nlisteners == AMQP_LISTENERS_MAX)
        return JN_ETOOBIG;
    jn_listener_t *l;
    int rc = jn_listener_open(a->net, cert ? "amqps" : "amqp", host, port, cert, key, on_accept, a, &l);
    if (rc)
        return rc;
    a->listeners[a->nlisteners++] = l;
    return 0;
}

int jn_amqp_port(const jn_amqp_t *a, int index)
{
    return index >= 0 && index < a->nlisteners ? jn_listener_port(a->listeners[index]) : -1;
}

void jn_amqp_free(jn_amqp_t *a)
{
    if (!a)
        return;
    /* Connections first: their channels requeue unacked messages and
     * their exclusive queues go, while exchanges still exist. */
    if (a->net)
        jn_net_free(a->net);
    jn__amqp_exchanges_free(a);
    jn_buf_free(&a->scratch);
    free(a);
}
