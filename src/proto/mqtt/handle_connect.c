/* handle_connect.c - CONNECT: authentication, client id, session takeover
 * and resumption, will, keep alive, and the CONNACK.
 */
#include "mqtt_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"

/* Refuses the connection with |v5| (5.0) or |v3| (3.1.1 return code). */
static void refuse(jn_mqtt_session_t *s, uint8_t v5, uint8_t v3)
{
    jn_buf_t *b;
    jn_mqtt_connack_t ca;
    memset(&ca, 0, sizeof ca);
    ca.reason = s->version == JN_MQTT_V5 ? v5 : v3;
    if (jn__mqtt_out_begin(s, &b) == 0 && jn_mqtt_encode_connack(b, s->version, &ca) > 0)
        jn__mqtt_out_end(s);
    jn__mqtt_close(s);
}

static bool view_cstr(const jn_mqtt_view_t *v, char *out, size_t cap)
{
    if (v->len >= cap || memchr(v->data, 0, v->len))
        return false;
    if (v->len)
        memcpy(out, v->data, v->len);
    out[v->len] = '\0';
    return true;
}

static int authenticate(jn_mqtt_session_t *s, const jn_mqtt_connect_t *c)
{
    jn_mqtt_t *m = s->m;
    if (!c->has_username) {
        if (!m->cfg.allow_anonymous)
            return JN_EPERM;
        s->principal = &m->anonymous;
        return 0;
    }
    char user[JN_NAME_MAX + 1], pass[1025];
    if (!view_cstr(&c->username, user, sizeof user))
        return JN_EAUTH;
    if (!c->has_password || !view_cstr(&c->password, pass, sizeof pass))
        return JN_EAUTH;
    jn_principal_t *p = malloc(sizeof *p);
    if (!p)
        return JN_ENOMEM;
    int rc = jn_auth_check_password(jn_broker_auth(m->b), user, pass, p);
    memset(pass, 0, sizeof pass);
    if (rc < 0) {
        free(p);
        return JN_EAUTH;
    }
    s->principal = p;
    return 0;
}

static int will_copy(mqtt_state_t *st, const jn_mqtt_connect_t *c)
{
    mqtt_will_t *w = calloc(1, sizeof *w);
    if (!w)
        return JN_ENOMEM;
    jn_buf_init(&w->headers, 1u << 20);
    w->qos = c->will_qos;
    w->retain = c->will_retain;
    w->topic = strndup((const char *)c->will_topic.data, c->will_topic.len);
    w->payload = malloc(c->will_payload.len ? c->will_payload.len : 1);
    w->payload_len = c->will_payload.len;
    if (!w->topic || !w->payload)
        goto fail;
    if (c->will_payload.len)
        memcpy(w->payload, c->will_payload.data, c->will_payload.len);
    const jn_mqtt_props_t *wp = &c->will_props;
    if (c->version == JN_MQTT_V5) {
        if (JN_MQTT_HAS(wp, JN_MQTT_PROP_WILL_DELAY))
            w->delay = wp->will_delay;
        /* Headers as name\0value\0 pairs; built back in will_publish. */
        jn_mqtt_prop_iter_t it;
        jn_mqtt_prop_t pr;
        jn_mqtt_prop_iter_init(&it, wp);
        while (jn_mqtt_prop_next(&it, &pr)) {
            const char *name = NULL;
            const uint8_t *val = pr.str.data;
            uint32_t vlen = pr.str.len;
            char num[32];
            switch (pr.id) {
            case JN_MQTT_PROP_USER:
                if (jn_buf_put_be16(&w->headers, (uint16_t)pr.str.len) < 0 ||
                    jn_buf_append(&w->headers, pr.str.data, pr.str.len) < 0 ||
                    jn_buf_put_be32(&w->headers, pr.value.len) < 0 ||
                    jn_buf_append(&w->headers, pr.value.data, pr.value.len) < 0)
                    goto fail;
                continue;
            case JN_MQTT_PROP_CONTENT_TYPE: name = MQTT_H_CTYPE; break;
            case JN_MQTT_PROP_RESPONSE_TOPIC: name = MQTT_H_RESPONSE; break;
            case JN_MQTT_PROP_CORRELATION_DATA: name = MQTT_H_CORREL; break;
            case JN_MQTT_PROP_PAYLOAD_FORMAT:
                if (pr.num != 1)
                    continue;
                name = MQTT_H_FORMAT;
                val = (const uint8_t *)"1";
                vlen = 1;
                break;
            case JN_MQTT_PROP_MESSAGE_EXPIRY: {
                /* Relative here: made absolute when the will is published. */
                int n = snprintf(num, sizeof num, "+%" PRIu32, pr.num);
                name = MQTT_H_EXPIRY;
                val = (const uint8_t *)num;
                vlen = (uint32_t)n;
                break;
            }
            default: continue;
            }
            if (jn_buf_put_be16(&w->headers, (uint16_t)strlen(name)) < 0 ||
                jn_buf_append(&w->headers, name, strlen(name)) < 0 || jn_buf_put_be32(&w->headers, vlen) < 0 ||
                jn_buf_append(&w->headers, val, vlen) < 0)
                goto fail;
        }
    }
    jn__mqtt_will_free(st->will);
    w->owner = st;
    st->will = w;
    return 0;
fail:
    jn__mqtt_will_free(w);
    return JN_ENOMEM;
}

/* Another connection holds |st|: 3.1.4-3 / 0x8E Session taken over. */
static void take_over(mqtt_state_t *st)
{
    jn_mqtt_session_t *old = st->sess;
    jn_mqtt_t *m = st->m;
    jn__mqtt_fail(old, JN_MQTT_RC_SESSION_TAKEN_OVER);
    old->st = NULL;
    st->sess = NULL;
    m->connected--;
    if (m->stats.g_conns)
        m->stats.g_conns->value--;
    if (st->will && !old->graceful) {
        if (st->will->delay == 0)
            jn__mqtt_will_publish(m, st->will);
        jn__mqtt_will_free(st->will);
        st->will = NULL;
    }
    jn__mqtt_state_offline(st);
}

void jn__mqtt_handle_connect(jn_mqtt_session_t *s, const jn_mqtt_connect_t *c)
{
    jn_mqtt_t *m = s->m;
    s->version = c->version;
    const jn_mqtt_props_t *pr = &c->props;
    bool v5 = c->version == JN_MQTT_V5;

    if (v5 && JN_MQTT_HAS(pr, JN_MQTT_PROP_AUTH_METHOD)) {
        refuse(s, JN_MQTT_RC_BAD_AUTH_METHOD, 5);
        return;
    }
    int rc = authenticate(s, c);
    if (rc == JN_EPERM) {
        refuse(s, JN_MQTT_RC_NOT_AUTHORIZED, 5);
        return;
    }
    if (rc < 0) {
        refuse(s, JN_MQTT_RC_BAD_USER_OR_PASSWORD, 4);
        return;
    }

    char idbuf[64];
    const char *id = (const char *)c->client_id.data;
    size_t idlen = c->client_id.len;
    bool assigned = false;
    if (idlen == 0) {
        if (!v5 && !c->clean_start) {
            refuse(s, JN_MQTT_RC_CLIENT_ID_INVALID, 2); /* 3.1.3-8 */
            return;
        }
        int n = snprintf(idbuf, sizeof idbuf, "jn-%" PRIx64 "-%" PRIu64, (uint64_t)jn__mqtt_now(m),
                         ++m->idseq);
        id = idbuf;
        idlen = (size_t)n;
        assigned = true;
    } else if (idlen > MQTT_CLIENT_ID_MAX || memchr(id, 0, idlen)) {
        refuse(s, JN_MQTT_RC_CLIENT_ID_INVALID, 2);
        return;
    }

    mqtt_state_t *st = jn__mqtt_state_find(m, id, idlen);
    int64_t now = jn__mqtt_now(m);
    if (st && !st->sess && st->expiry != UINT32_MAX && now >= st->offline_since + (int64_t)st->expiry * 1000) {
        /* Expired before the tick saw it (e.g. while the server was down). */
        if (st->will)
            jn__mqtt_will_publish(m, st->will);
        jn__mqtt_state_end(st);
        st = NULL;
    }
    if (st && st->sess)
        take_over(st);
    bool present = false;
    if (st && c->clean_start) {
        if (st->will) { /* the old session ends now: its pending will goes out */
            jn__mqtt_will_publish(m, st->will);
            jn__mqtt_will_free(st->will);
            st->will = NULL;
        }
        jn__mqtt_state_end(st);
        st = NULL;
    }
    if (st) {
        present = true;
        if (st->will) { /* resumed before the will delay ran out, unless the tick was late */
            if (st->will->at && now >= st->will->at)
                jn__mqtt_will_publish(m, st->will);
            jn__mqtt_will_free(st->will);
            st->will = NULL;
        }
    } else if (!(st = jn__mqtt_state_new(m, id, idlen))) {
        refuse(s, JN_MQTT_RC_SERVER_UNAVAILABLE, 3);
        return;
    }

    uint32_t expiry = 0;
    bool clamped = false;
    if (v5)
        expiry = JN_MQTT_HAS(pr, JN_MQTT_PROP_SESSION_EXPIRY) ? pr->session_expiry : 0;
    else
        expiry = c->clean_start ? 0 : UINT32_MAX;
    if (expiry > m->cfg.session_expiry_max) {
        expiry = m->cfg.session_expiry_max;
        clamped = v5;
    }
    st->expiry = expiry;
    st->version = c->version;
    st->window = m->cfg.max_inflight;
    if (v5 && JN_MQTT_HAS(pr, JN_MQTT_PROP_RECEIVE_MAXIMUM) && pr->receive_maximum < st->window)
        st->window = pr->receive_maximum;
    s->max_out = v5 && JN_MQTT_HAS(pr, JN_MQTT_PROP_MAXIMUM_PACKET_SIZE) ? pr->max_packet_size : 0;
    if (c->will && will_copy(st, c) < 0) {
        jn__mqtt_state_end(st);
        refuse(s, JN_MQTT_RC_SERVER_UNAVAILABLE, 3);
        return;
    }

    uint16_t ka = c->keep_alive;
    bool server_ka = false;
    if (v5 && m->cfg.keepalive_max && (ka == 0 || ka > m->cfg.keepalive_max)) {
        ka = m->cfg.keepalive_max;
        server_ka = true;
    }
    s->keep_alive = ka;
    s->t->set_timeout(s->tctx, ka ? (uint64_t)ka * 1500u : 0);

    jn_buf_t *b;
    jn_mqtt_connack_t ca;
    memset(&ca, 0, sizeof ca);
    ca.session_present = present;
    if (v5) {
        jn_mqtt_props_t *p = &ca.props;
        p->limit = s->max_out;
        p->present = JN_MQTT_PBIT(JN_MQTT_PROP_RECEIVE_MAXIMUM) | JN_MQTT_PBIT(JN_MQTT_PROP_MAXIMUM_PACKET_SIZE) |
                     JN_MQTT_PBIT(JN_MQTT_PROP_TOPIC_ALIAS_MAXIMUM) | JN_MQTT_PBIT(JN_MQTT_PROP_RETAIN_AVAILABLE) |
                     JN_MQTT_PBIT(JN_MQTT_PROP_WILDCARD_SUB_AVAILABLE) |
                     JN_MQTT_PBIT(JN_MQTT_PROP_SUB_ID_AVAILABLE) | JN_MQTT_PBIT(JN_MQTT_PROP_SHARED_SUB_AVAILABLE);
        p->receive_maximum = m->cfg.max_inflight;
        p->max_packet_size = m->cfg.max_packet_size;
        p->topic_alias_maximum = m->cfg.topic_alias_max;
        p->retain_available = 1;
        p->wildcard_sub_available = 1;
        p->sub_id_available = 1;
        p->shared_sub_available = 1;
        if (assigned) {
            p->present |= JN_MQTT_PBIT(JN_MQTT_PROP_ASSIGNED_CLIENT_ID);
            p->assigned_client_id.data = (const uint8_t *)id;
            p->assigned_client_id.len = (uint32_t)idlen;
        }
        if (server_ka) {
            p->present |= JN_MQTT_PBIT(JN_MQTT_PROP_SERVER_KEEP_ALIVE);
            p->server_keep_alive = ka;
        }
        if (clamped) {
            p->present |= JN_MQTT_PBIT(JN_MQTT_PROP_SESSION_EXPIRY);
            p->session_expiry = expiry;
        }
    }
    if (jn__mqtt_out_begin(s, &b) < 0 || jn_mqtt_encode_connack(b, s->version, &ca) < 0) {
        jn__mqtt_close(s);
        return;
    }
    jn__mqtt_out_end(s);
    st->sess = s;
    s->st = st;
    s->phase = PH_ACTIVE;
    m->connected++;
    if (m->stats.g_conns)
        m->stats.g_conns->value++;
    if (present && jn__mqtt_state_online(st) < 0) {
        jn__mqtt_fail(s, JN_MQTT_RC_SERVER_UNAVAILABLE);
        return;
    }
    /* Kept while the expiry is > 0 or there is a will (published after a
     * restart unless the client comes back first); otherwise the saved
     * copy goes. Unchanged JSON is not written again. */
    if (st->expiry > 0 || st->will || st->saved)
        (void)jn__mqtt_state_save(st);
    jn_debug("mqtt: client %s connected (v%u, expiry %u, present %d)", st->client_id, s->version, st->expiry,
             present);
}
