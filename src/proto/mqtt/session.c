/* session.c - one MQTT network connection: feeds received bytes to the
 * codec, dispatches each packet to its handler (handle_*.c), keeps the
 * keep-alive deadline, and on close decides the fate of the will and of
 * the MQTT session state (state.c).
 *
 * The session writes only through its jn_mqtt_transport_t, so the same
 * code serves TCP, TLS and WebSocket (ws_transport.c).
 */
#include "mqtt_int.h"

#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"

int jn__mqtt_out_begin(jn_mqtt_session_t *s, jn_buf_t **b)
{
    *b = s->phase == PH_CLOSING && !s->t ? NULL : s->t->outbuf(s->tctx);
    return *b ? 0 : JN_ECLOSED;
}

void jn__mqtt_out_end(jn_mqtt_session_t *s)
{
    s->t->commit(s->tctx);
}

void jn__mqtt_close(jn_mqtt_session_t *s)
{
    if (s->phase == PH_CLOSING)
        return;
    s->phase = PH_CLOSING;
    s->t->close(s->tctx);
}

void jn__mqtt_send_disconnect(jn_mqtt_session_t *s, uint8_t reason)
{
    jn_buf_t *b;
    if (s->version != JN_MQTT_V5 || jn__mqtt_out_begin(s, &b) < 0)
        return;
    jn_mqtt_reason_pkt_t d;
    memset(&d, 0, sizeof d);
    d.reason = reason;
    d.props.limit = s->max_out;
    if (jn_mqtt_encode_disconnect(b, JN_MQTT_V5, &d) > 0)
        jn__mqtt_out_end(s);
}

void jn__mqtt_fail(jn_mqtt_session_t *s, uint8_t reason)
{
    if (s->phase == PH_CLOSING)
        return;
    jn_debug("mqtt: %s: closing: reason 0x%02x", s->st ? s->st->client_id : "-", reason);
    if (s->phase == PH_ACTIVE)
        jn__mqtt_send_disconnect(s, reason);
    jn__mqtt_close(s);
}

void jn__mqtt_send_ack(jn_mqtt_session_t *s, uint8_t type, uint16_t pid, uint8_t reason)
{
    jn_buf_t *b;
    if (jn__mqtt_out_begin(s, &b) < 0)
        return;
    jn_mqtt_ack_t a;
    memset(&a, 0, sizeof a);
    a.packet_id = pid;
    a.reason = s->version == JN_MQTT_V5 ? reason : 0;
    a.props.limit = s->max_out;
    if (jn_mqtt_encode_ack(b, s->version, type, &a) > 0)
        jn__mqtt_out_end(s);
}

jn_mqtt_session_t *jn_mqtt_session_new(jn_mqtt_t *m, const jn_mqtt_transport_t *t, void *tctx, bool loopback)
{
    jn_mqtt_session_t *s = jn_pool_calloc(&m->sess_pool);
    if (!s)
        return NULL;
    s->m = m;
    s->t = t;
    s->tctx = tctx;
    s->loopback = loopback;
    s->recv_max_in = m->cfg.max_inflight;
    jn_list_init(&s->waiters);
    jn_list_insert_tail(&m->sessions, &s->node);
    t->set_timeout(tctx, MQTT_CONNECT_TIMEOUT_MS);
    return s;
}

static void handle_disconnect(jn_mqtt_session_t *s, const jn_mqtt_reason_pkt_t *d)
{
    if (s->version == JN_MQTT_V5 && JN_MQTT_HAS(&d->props, JN_MQTT_PROP_SESSION_EXPIRY) && s->st) {
        /* 3.14.2.2.2: a session that was to end may not be extended. */
        if (s->st->expiry == 0 && d->props.session_expiry != 0) {
            jn__mqtt_fail(s, JN_MQTT_RC_PROTOCOL_ERROR);
            return;
        }
        uint32_t e = d->props.session_expiry;
        s->st->expiry = e > s->m->cfg.session_expiry_max ? s->m->cfg.session_expiry_max : e;
    }
    if (d->reason == JN_MQTT_RC_DISCONNECT_WITH_WILL && s->version == JN_MQTT_V5)
        s->will_anyway = true;
    else
        s->graceful = true;
    jn__mqtt_close(s);
}

static void dispatch(jn_mqtt_session_t *s, const jn_mqtt_packet_t *p)
{
    if (p->type == JN_MQTT_CONNECT) {
        if (s->phase != PH_CONNECT)
            jn__mqtt_fail(s, JN_MQTT_RC_PROTOCOL_ERROR); /* a second CONNECT */
        else
            jn__mqtt_handle_connect(s, &p->u.connect);
        return;
    }
    if (s->phase != PH_ACTIVE) {
        jn__mqtt_fail(s, JN_MQTT_RC_PROTOCOL_ERROR);
        return;
    }
    switch (p->type) {
    case JN_MQTT_PUBLISH: jn__mqtt_handle_publish(s, p); break;
    case JN_MQTT_PUBACK:
    case JN_MQTT_PUBREC:
    case JN_MQTT_PUBREL:
    case JN_MQTT_PUBCOMP: jn__mqtt_handle_ack(s, p->type, &p->u.ack); break;
    case JN_MQTT_SUBSCRIBE: jn__mqtt_handle_subscribe(s, &p->u.subscribe); break;
    case JN_MQTT_UNSUBSCRIBE: jn__mqtt_handle_unsubscribe(s, &p->u.subscribe); break;
    case JN_MQTT_PINGREQ: {
        jn_buf_t *b;
        if (jn__mqtt_out_begin(s, &b) == 0 && jn_mqtt_encode_pingresp(b) > 0)
            jn__mqtt_out_end(s);
        break;
    }
    case JN_MQTT_DISCONNECT: handle_disconnect(s, &p->u.disconnect); break;
    case JN_MQTT_AUTH:
        /* No enhanced authentication: CONNECT never accepted a method. */
        jn__mqtt_fail(s, JN_MQTT_RC_PROTOCOL_ERROR);
        break;
    default: /* server-to-client packets */
        jn__mqtt_fail(s, JN_MQTT_RC_PROTOCOL_ERROR);
        break;
    }
}

/* A packet the codec refused. Before CONNECT completed, a CONNACK carries
 * the reason where the spec allows one; after it, DISCONNECT (5.0). */
static void decode_error(jn_mqtt_session_t *s, int rc, const jn_mqtt_packet_t *p)
{
    if (s->phase == PH_CONNECT && p->type == JN_MQTT_CONNECT) {
        jn_buf_t *b;
        jn_mqtt_connack_t ca;
        memset(&ca, 0, sizeof ca);
        uint8_t v = p->version == JN_MQTT_V5 ? JN_MQTT_V5 : JN_MQTT_V311;
        bool answer = false;
        if (rc == JN_EUNSUPPORTED) {
            /* 3.1.2.2: answer 0x01 (3.1.1 form) or 0x84 (5.0 form). */
            ca.reason = p->u.connect.version == JN_MQTT_V5 ? JN_MQTT_RC_UNSUPPORTED_VERSION : 0x01;
            v = ca.reason == 0x01 ? JN_MQTT_V311 : JN_MQTT_V5;
            answer = true;
        } else if (v == JN_MQTT_V5) {
            ca.reason = p->reason ? p->reason : JN_MQTT_RC_MALFORMED;
            answer = true;
        }
        if (answer && jn__mqtt_out_begin(s, &b) == 0 && jn_mqtt_encode_connack(b, v, &ca) > 0)
            jn__mqtt_out_end(s);
        jn__mqtt_close(s);
        return;
    }
    jn__mqtt_fail(s, p->reason ? p->reason : JN_MQTT_RC_MALFORMED);
}

size_t jn_mqtt_session_input(jn_mqtt_session_t *s, const uint8_t *data, size_t len)
{
    size_t off = 0;
    bool any = false;
    while (off < len && s->phase != PH_CLOSING) {
        jn_mqtt_packet_t p;
        int n = jn_mqtt_decode(data + off, len - off, s->version, s->m->cfg.max_packet_size, &p);
        if (n == JN_EPARTIAL)
            break;
        if (n < 0) {
            decode_error(s, n, &p);
            break;
        }
        any = true;
        dispatch(s, &p);
        off += (size_t)n;
    }
    if (s->phase == PH_CLOSING)
        return len;
    if (any && s->phase == PH_ACTIVE && s->keep_alive)
        s->t->set_timeout(s->tctx, (uint64_t)s->keep_alive * 1500u); /* 3.1.2.10: 1.5 x */
    return off;
}

void jn_mqtt_session_drain(jn_mqtt_session_t *s)
{
    if (s->phase == PH_ACTIVE && s->st)
        jn__mqtt_state_resume(s->st);
}

void jn_mqtt_session_timeout(jn_mqtt_session_t *s)
{
    if (s->phase == PH_ACTIVE) {
        jn__mqtt_fail(s, JN_MQTT_RC_KEEP_ALIVE_TIMEOUT);
    } else if (s->phase == PH_CONNECT) {
        jn__mqtt_close(s);
    }
}

void jn_mqtt_session_eof(jn_mqtt_session_t *s)
{
    jn__mqtt_close(s);
}

void jn_mqtt_session_closed(jn_mqtt_session_t *s, int reason)
{
    jn_mqtt_t *m = s->m;
    while (!jn_list_empty(&s->waiters)) {
        mqtt_waiter_t *w = jn_container_of(s->waiters.next, mqtt_waiter_t, node);
        jn_list_remove(&w->node);
        jn_plog_cancel_durable(&w->w);
        free(w);
    }
    mqtt_state_t *st = s->st;
    if (st && st->sess == s) {
        st->sess = NULL;
        m->connected--;
        if (m->stats.g_conns)
            m->stats.g_conns->value--;
        bool publish_will = st->will && (!s->graceful || s->will_anyway);
        if (st->will && !publish_will) {
            jn__mqtt_will_free(st->will);
            st->will = NULL;
        }
        if (publish_will && m->freeing) {
            /* Shutdown: the will stays in the saved session and goes out
             * after the restart unless the client is back first (state.c). */
        } else if (publish_will && (st->will->delay == 0 || st->expiry == 0)) {
            jn__mqtt_will_publish(m, st->will);
            jn__mqtt_will_free(st->will);
            st->will = NULL;
        } else if (publish_will) {
            uint32_t d = st->will->delay < st->expiry ? st->will->delay : st->expiry;
            st->will->at = jn__mqtt_now(m) + (int64_t)d * 1000;
        }
        jn_debug("mqtt: client %s gone (%s)", st->client_id, reason ? jn_strerror(reason) : "closed");
        if (st->expiry == 0 && !m->freeing) {
            jn__mqtt_state_end(st);
        } else {
            st->offline_since = jn__mqtt_now(m);
            jn__mqtt_state_offline(st);
        }
    }
    if (s->principal != &m->anonymous)
        free(s->principal);
    free(s->vtopic);
    if (s->aliases) {
        for (uint32_t i = 0; i <= m->cfg.topic_alias_max; i++)
            free(s->aliases[i]);
        free(s->aliases);
    }
    jn_list_remove(&s->node);
    jn_pool_free(&m->sess_pool, s);
}
