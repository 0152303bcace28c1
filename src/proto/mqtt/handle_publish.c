/* handle_publish.c - inbound PUBLISH: topic aliases, ACL, the record
 * mapping (docs/mqtt.md), retained messages, and the QoS 1/2
 * acknowledgements, sent once the record is durable under its stream's
 * fsync policy. QoS 2 packet ids are remembered until PUBREL so that a
 * DUP resend is acknowledged again without being appended twice.
 */
#include "mqtt_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"
#include "../../core/filter.h"

int jn__mqtt_publish_record(jn_mqtt_t *m, mqtt_state_t *from, const char *topic, size_t tlen,
                            const uint8_t *payload, size_t plen, uint8_t qos, bool retain,
                            const jn_header_t *hdrs, size_t nh, jn_publish_result_t *res)
{
    if (plen > INT32_MAX)
        return JN_ETOOBIG;
    jn_record_t rec;
    memset(&rec, 0, sizeof rec);
    rec.key_len = -1;
    rec.value = payload ? payload : (const uint8_t *)"";
    rec.value_len = (int32_t)plen;
    rec.headers = hdrs;
    rec.header_count = (uint32_t)nh;
    /* The published QoS caps the delivery QoS (3.8.4); 2 caps nothing, so
     * it costs no header. */
    jn_header_t all[MQTT_HDR_MAX];
    static const uint8_t qdigit[2] = {'0', '1'};
    if (qos < 2 && nh < MQTT_HDR_MAX) {
        if (nh)
            memcpy(all, hdrs, nh * sizeof *all);
        all[nh].key = (const uint8_t *)MQTT_H_QOS;
        all[nh].key_len = sizeof MQTT_H_QOS - 1;
        all[nh].value = &qdigit[qos];
        all[nh].value_len = 1;
        rec.headers = all;
        rec.header_count = (uint32_t)nh + 1;
    }
    int rc = 0;
    if (!(tlen > 0 && topic[0] == '$')) {
        m->publishing = from;
        rc = jn_broker_publish(m->b, topic, tlen, &rec, 1, -1, res);
        m->publishing = NULL;
    }
    if (rc == 0 && retain) {
        rec.headers = hdrs; /* the blob keeps the QoS itself */
        rec.header_count = (uint32_t)nh;
        rec.timestamp = jn__mqtt_now(m);
        (void)jn__mqtt_retained_set(m, topic, tlen, &rec, qos, true);
    }
    return rc;
}

/* jn_subject_validate with a one-entry memory of the last valid topic. */
static bool topic_valid(jn_mqtt_session_t *s, const char *t, size_t len)
{
    if (len && len == s->vtlen && memcmp(s->vtopic, t, len) == 0)
        return true;
    if (len == 0 || jn_subject_validate(t, len) < 0)
        return false;
    if (len <= MQTT_VTOPIC_MAX && (s->vtopic || (s->vtopic = malloc(MQTT_VTOPIC_MAX)))) {
        memcpy(s->vtopic, t, len);
        s->vtlen = (uint8_t)len;
    }
    return true;
}

static bool q2_has(const mqtt_state_t *st, uint16_t pid)
{
    for (uint16_t i = 0; i < st->nq2; i++)
        if (st->q2[i] == pid)
            return true;
    return false;
}

static int q2_add(mqtt_state_t *st, uint16_t pid, uint16_t cap)
{
    if (st->nq2 >= cap)
        return JN_ETOOBIG;
    if (st->nq2 == st->capq2) {
        uint16_t nc = st->capq2 ? (uint16_t)(st->capq2 * 2 > cap ? cap : st->capq2 * 2) : 4;
        uint16_t *n = realloc(st->q2, nc * sizeof *n);
        if (!n)
            return JN_ENOMEM;
        st->q2 = n;
        st->capq2 = nc;
    }
    st->q2[st->nq2++] = pid;
    st->dirty = true; /* saved with the session at the next commit (state.c) */
    return 0;
}

static void durable_cb(jn_durable_waiter_t *w, int status)
{
    mqtt_waiter_t *mw = (mqtt_waiter_t *)w;
    jn_mqtt_session_t *s = mw->sess;
    jn_list_remove(&mw->node);
    if (s->in_unacked)
        s->in_unacked--;
    jn__mqtt_send_ack(s, mw->qos == 1 ? JN_MQTT_PUBACK : JN_MQTT_PUBREC, mw->pid,
                      status == 0 ? JN_MQTT_RC_SUCCESS : JN_MQTT_RC_UNSPECIFIED);
    free(mw);
}

static void ack(jn_mqtt_session_t *s, uint8_t qos, uint16_t pid, uint8_t reason)
{
    jn__mqtt_send_ack(s, qos == 1 ? JN_MQTT_PUBACK : JN_MQTT_PUBREC, pid, reason);
}

static bool add_header(jn_header_t *h, size_t *nh, const char *name, const uint8_t *v, size_t vlen)
{
    if (*nh >= MQTT_HDR_MAX)
        return false;
    h[*nh].key = (const uint8_t *)name;
    h[*nh].key_len = (uint32_t)strlen(name);
    h[*nh].value = v ? v : (const uint8_t *)"";
    h[*nh].value_len = (int32_t)vlen;
    (*nh)++;
    return true;
}

void jn__mqtt_handle_publish(jn_mqtt_session_t *s, const jn_mqtt_packet_t *pk)
{
    jn_mqtt_t *m = s->m;
    mqtt_state_t *st = s->st;
    const jn_mqtt_publish_t *p = &pk->u.publish;
    const char *topic = (const char *)p->topic.data;
    size_t tlen = p->topic.len;
    bool v5 = s->version == JN_MQTT_V5;

    if (v5 && JN_MQTT_HAS(&p->props, JN_MQTT_PROP_TOPIC_ALIAS)) {
        uint16_t a = p->props.topic_alias;
        if (a == 0 || a > m->cfg.topic_alias_max) {
            jn__mqtt_fail(s, JN_MQTT_RC_TOPIC_ALIAS_INVALID);
            return;
        }
        if (!s->aliases && !(s->aliases = calloc((size_t)m->cfg.topic_alias_max + 1, sizeof(char *)))) {
            jn__mqtt_fail(s, JN_MQTT_RC_UNSPECIFIED);
            return;
        }
        if (tlen > 0) {
            char *t = strndup(topic, tlen);
            if (!t) {
                jn__mqtt_fail(s, JN_MQTT_RC_UNSPECIFIED);
                return;
            }
            free(s->aliases[a]);
            s->aliases[a] = t;
        } else if (!s->aliases[a]) {
            jn__mqtt_fail(s, JN_MQTT_RC_PROTOCOL_ERROR); /* 3.3.2.3.4 */
            return;
        } else {
            topic = s->aliases[a];
            tlen = strlen(topic);
        }
    }
    if (!topic_valid(s, topic, tlen)) {
        jn__mqtt_fail(s, tlen == 0 ? JN_MQTT_RC_PROTOCOL_ERROR : JN_MQTT_RC_TOPIC_NAME_INVALID);
        return;
    }
    uint8_t qos = p->qos;
    uint16_t pid = p->packet_id;
    if (qos > 0 && s->in_unacked >= s->recv_max_in) {
        jn__mqtt_fail(s, JN_MQTT_RC_RECEIVE_MAX_EXCEEDED);
        return;
    }
    if (qos == 2 && q2_has(st, pid)) {
        ack(s, 2, pid, 0); /* a resend (4.3.3): stored once already */
        return;
    }
    m->received++;
    if (m->stats.c_in)
        m->stats.c_in->value++;

    uint8_t refuse = 0;
    if (topic[0] == '$' || !jn_auth_allowed(jn_broker_auth(m->b), s->principal, JN_PERM_PUBLISH, topic, tlen))
        refuse = JN_MQTT_RC_NOT_AUTHORIZED;
    else if (v5 && JN_MQTT_HAS(&p->props, JN_MQTT_PROP_PAYLOAD_FORMAT) && p->props.payload_format == 1 &&
             !jn_mqtt_utf8_valid(p->payload.data, p->payload.len))
        refuse = JN_MQTT_RC_PAYLOAD_FORMAT_INVALID;
    if (refuse) {
        jn_debug("mqtt: %s: publish to '%.*s' refused (0x%02x)", st->client_id, (int)tlen, topic, refuse);
        if (qos == 2 && !v5)
            (void)q2_add(st, pid, s->recv_max_in); /* 3.1.1: the flow completes as usual */
        if (qos > 0)
            ack(s, qos, pid, v5 ? refuse : 0);
        return;
    }

    jn_header_t h[MQTT_HDR_MAX];
    size_t nh = 0;
    char expbuf[24];
    if (v5) {
        const jn_mqtt_props_t *pr = &p->props;
        jn_mqtt_prop_iter_t it;
        jn_mqtt_view_t n, v;
        jn_mqtt_prop_iter_init(&it, pr);
        while (jn_mqtt_user_next(&it, &n, &v)) {
            if (nh >= MQTT_HDR_MAX - 7) /* room for the 6 below and MQTT_H_QOS */
                break;
            h[nh].key = n.data;
            h[nh].key_len = n.len;
            h[nh].value = v.data ? v.data : (const uint8_t *)"";
            h[nh].value_len = (int32_t)v.len;
            nh++;
        }
        if (JN_MQTT_HAS(pr, JN_MQTT_PROP_CONTENT_TYPE))
            add_header(h, &nh, MQTT_H_CTYPE, pr->content_type.data, pr->content_type.len);
        if (JN_MQTT_HAS(pr, JN_MQTT_PROP_PAYLOAD_FORMAT) && pr->payload_format == 1)
            add_header(h, &nh, MQTT_H_FORMAT, (const uint8_t *)"1", 1);
        if (JN_MQTT_HAS(pr, JN_MQTT_PROP_RESPONSE_TOPIC))
            add_header(h, &nh, MQTT_H_RESPONSE, pr->response_topic.data, pr->response_topic.len);
        if (JN_MQTT_HAS(pr, JN_MQTT_PROP_CORRELATION_DATA))
            add_header(h, &nh, MQTT_H_CORREL, pr->correlation_data.data, pr->correlation_data.len);
        if (JN_MQTT_HAS(pr, JN_MQTT_PROP_MESSAGE_EXPIRY)) {
            int k = snprintf(expbuf, sizeof expbuf, "%" PRId64,
                             jn__mqtt_now(m) + (int64_t)pr->message_expiry * 1000);
            add_header(h, &nh, MQTT_H_EXPIRY, (const uint8_t *)expbuf, (size_t)k);
        }
    }
    if (p->retain)
        add_header(h, &nh, MQTT_H_RETAIN, (const uint8_t *)"1", 1);

    jn_publish_result_t res;
    int rc = jn__mqtt_publish_record(m, st, topic, tlen, p->payload.data, p->payload.len, qos, p->retain, h, nh,
                                     &res);
    if (rc < 0) {
        jn_debug("mqtt: %s: publish to '%.*s' failed: %s", st->client_id, (int)tlen, topic, jn_strerror(rc));
        if (qos > 0)
            ack(s, qos, pid, v5 ? (rc == JN_EINVAL ? JN_MQTT_RC_TOPIC_NAME_INVALID : JN_MQTT_RC_IMPL_SPECIFIC) : 0);
        return;
    }
    if (qos == 0)
        return;
    if (qos == 2 && q2_add(st, pid, s->recv_max_in) < 0) {
        jn__mqtt_fail(s, JN_MQTT_RC_RECEIVE_MAX_EXCEEDED);
        return;
    }
    if (!res.stream || jn_stream_config(res.stream)->fsync != JN_FSYNC_ALWAYS) {
        ack(s, qos, pid, 0);
        return;
    }
    mqtt_waiter_t *w = calloc(1, sizeof *w);
    if (!w) {
        jn__mqtt_fail(s, JN_MQTT_RC_UNSPECIFIED);
        return;
    }
    w->sess = s;
    w->pid = pid;
    w->qos = qos;
    s->in_unacked++;
    jn_list_insert_tail(&s->waiters, &w->node);
    jn_broker_wait_durable(m->b, res.stream, (uint32_t)res.partition, res.offset, &w->w, durable_cb);
}
