/* retained.c - retained messages and the $SYS statistics topics.
 *
 * Retained messages live in memory (a hash map topic -> entry, matched
 * against a new subscription's filter by a scan) and in the internal
 * table "__mqtt_retained" (key: topic; value: the blob below), which is
 * loaded at start. An empty payload clears the topic. $SYS entries are
 * kept in memory only and refreshed every sys_interval_ms.
 *
 * Blob: [u8 qos][u16 header count] then per header [u16 name length]
 * [name][u32 value length][value], then [i64 timestamp ms], then the
 * payload (the rest).
 *
 * A QoS 1/2 message sent at SUBSCRIBE takes a window slot that holds a
 * reference to the entry it sent: replaced or cleared meanwhile, the old
 * entry lives until the slot is acknowledged, so a reconnect resends the
 * exact message (DUP, same packet id). A saved session names it by topic
 * and blob hash; after a restart the slot comes back only when the store
 * still has that message (state.c).
 *
 * When the window is full (or the output above high water) a retained
 * message waits in the state's pending queue, holding a reference, and
 * goes out at its QoS as acknowledgements free slots (jn__mqtt_state_resume
 * drains it): sending it at QoS 0 instead would quietly drop the delivery
 * guarantee the client subscribed with. Once anything is pending, later
 * retained messages for the state queue behind it, QoS 0 ones included,
 * so they keep their order. The QoS and subscription identifier are the
 * subscription's when the message goes; its expiry is checked then too.
 * The queue is bounded (MQTT_PENDING_MAX): beyond it a message goes out at
 * QoS 0 at once as before. It survives a disconnect of a persistent
 * session (in memory only: not saved, so a restart loses it) and goes
 * with its subscription.
 */
#include "mqtt_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/hash.h"
#include "../../common/log.h"
#include "../../core/filter.h"

static size_t rbucket(const jn_mqtt_t *m, const char *t, size_t len)
{
    return (size_t)(jn_fnv1a(t, len) & (m->rcap - 1));
}

static mqtt_retained_t **rfind(jn_mqtt_t *m, const char *t, size_t len)
{
    if (!m->rcap)
        return NULL;
    mqtt_retained_t **pp = &m->rtab[rbucket(m, t, len)];
    while (*pp && !(strlen((*pp)->topic) == len && memcmp((*pp)->topic, t, len) == 0))
        pp = &(*pp)->next;
    return pp;
}

static int rgrow(jn_mqtt_t *m)
{
    size_t ncap = m->rcap ? m->rcap * 2 : 64;
    mqtt_retained_t **nt = calloc(ncap, sizeof *nt);
    if (!nt)
        return JN_ENOMEM;
    for (size_t i = 0; i < m->rcap; i++) {
        mqtt_retained_t *r = m->rtab[i];
        while (r) {
            mqtt_retained_t *nx = r->next;
            size_t k = (size_t)(jn_fnv1a(r->topic, strlen(r->topic)) & (ncap - 1));
            r->next = nt[k];
            nt[k] = r;
            r = nx;
        }
    }
    free(m->rtab);
    m->rtab = nt;
    m->rcap = ncap;
    return 0;
}

static int blob_build(jn_buf_t *b, const jn_record_t *rec, uint8_t qos)
{
    jn_buf_reset(b);
    uint16_t nh = 0;
    for (uint32_t i = 0; i < rec->header_count; i++)
        if (rec->headers[i].value_len >= 0 && rec->headers[i].key_len <= 65535 && nh < MQTT_HDR_MAX)
            nh++;
    int rc = jn_buf_put_u8(b, qos);
    if (rc == 0)
        rc = jn_buf_put_be16(b, nh);
    uint16_t k = 0;
    for (uint32_t i = 0; rc == 0 && i < rec->header_count && k < nh; i++) {
        const jn_header_t *h = &rec->headers[i];
        if (h->value_len < 0 || h->key_len > 65535)
            continue;
        k++;
        rc = jn_buf_put_be16(b, (uint16_t)h->key_len);
        if (rc == 0)
            rc = jn_buf_append(b, h->key, h->key_len);
        if (rc == 0)
            rc = jn_buf_put_be32(b, (uint32_t)h->value_len);
        if (rc == 0)
            rc = jn_buf_append(b, h->value, (size_t)h->value_len);
    }
    if (rc == 0)
        rc = jn_buf_put_be64(b, (uint64_t)rec->timestamp);
    if (rc == 0 && rec->value_len > 0)
        rc = jn_buf_append(b, rec->value, (size_t)rec->value_len);
    return rc;
}

/* Parses a blob into |rec| with headers in |h|. JN_EPROTO when malformed. */
static int blob_parse(const uint8_t *p, size_t len, jn_record_t *rec, jn_header_t *h, uint8_t *qos)
{
    if (len < 11)
        return JN_EPROTO;
    *qos = p[0];
    uint16_t nh = jn_load_be16(p + 1);
    size_t off = 3;
    if (nh > MQTT_HDR_MAX)
        return JN_EPROTO;
    for (uint16_t i = 0; i < nh; i++) {
        if (off + 2 > len)
            return JN_EPROTO;
        uint16_t kl = jn_load_be16(p + off);
        if (off + 2 + kl + 4 > len)
            return JN_EPROTO;
        uint32_t vl = jn_load_be32(p + off + 2 + kl);
        if (vl > len || off + 6 + kl + vl > len)
            return JN_EPROTO;
        h[i].key = p + off + 2;
        h[i].key_len = kl;
        h[i].value = p + off + 6 + kl;
        h[i].value_len = (int32_t)vl;
        off += 6 + kl + vl;
    }
    if (off + 8 > len)
        return JN_EPROTO;
    memset(rec, 0, sizeof *rec);
    rec->timestamp = (int64_t)jn_load_be64(p + off);
    off += 8;
    rec->key_len = -1;
    rec->value = p + off;
    rec->value_len = (int32_t)(len - off);
    rec->headers = h;
    rec->header_count = nh;
    return 0;
}

mqtt_retained_t *jn__mqtt_retained_ref(mqtt_retained_t *r)
{
    r->refs++;
    return r;
}

void jn__mqtt_retained_unref(mqtt_retained_t *r)
{
    if (!r || --r->refs > 0)
        return;
    free(r->topic);
    free(r);
}

mqtt_retained_t *jn__mqtt_retained_find(jn_mqtt_t *m, const char *topic, size_t tlen)
{
    mqtt_retained_t **pp = rfind(m, topic, tlen);
    return pp ? *pp : NULL;
}

static int store_blob(jn_mqtt_t *m, const char *topic, size_t tlen, const uint8_t *blob, size_t blen, bool sys)
{
    if (m->rcap == 0 || (m->nretained + 1) * 2 > m->rcap) {
        if (rgrow(m) < 0)
            return JN_ENOMEM;
    }
    mqtt_retained_t **pp = rfind(m, topic, tlen);
    mqtt_retained_t *r = malloc(sizeof *r + blen);
    if (!r || !(r->topic = strndup(topic, tlen))) {
        free(r);
        return JN_ENOMEM;
    }
    r->hash = jn_fnv1a(blob, blen);
    r->refs = 1; /* the table's */
    r->qos = blob[0];
    r->sys = sys;
    r->len = blen;
    memcpy(r->blob, blob, blen);
    if (*pp) {
        mqtt_retained_t *old = *pp;
        r->next = old->next;
        old->next = NULL;
        jn__mqtt_retained_unref(old);
        *pp = r;
    } else {
        r->next = NULL;
        *pp = r;
        m->nretained++;
    }
    return 0;
}

int jn__mqtt_retained_set(jn_mqtt_t *m, const char *topic, size_t tlen, const jn_record_t *rec, uint8_t qos,
                          bool persist)
{
    bool sys = tlen > 0 && topic[0] == '$';
    if (rec->value_len <= 0) {
        mqtt_retained_t **pp = rfind(m, topic, tlen);
        if (pp && *pp) {
            mqtt_retained_t *old = *pp;
            *pp = old->next;
            old->next = NULL;
            jn__mqtt_retained_unref(old);
            m->nretained--;
        }
        if (persist && !sys)
            if (jn_broker_table_delete(m->b, MQTT_RETAINED_TABLE, (const uint8_t *)topic, tlen, NULL) < 0)
                jn_debug("mqtt: no retained message to clear");
        return 0;
    }
    int rc = blob_build(&m->scratch, rec, qos);
    if (rc < 0)
        return rc;
    if (persist && !sys) {
        rc = jn_broker_table_put(m->b, MQTT_RETAINED_TABLE, (const uint8_t *)topic, tlen, m->scratch.data,
                                 m->scratch.len, NULL, NULL);
        if (rc < 0) {
            jn_warn("mqtt: cannot save the retained message of '%.*s': %s", (int)tlen, topic, jn_strerror(rc));
            return rc;
        }
    }
    return store_blob(m, topic, tlen, m->scratch.data, m->scratch.len, sys);
}

/* Sends |r| to |ms| now: at min(its QoS, the subscription's), or at QoS 0
 * when |qos0|. Returns 0 when done with it (sent; or dropped: malformed,
 * expired, never fits) or JN_EAGAIN when it has to wait (no output room,
 * or no window slot for a QoS>0 one). */
static int send_now(jn_mqtt_session_t *s, mqtt_msub_t *ms, mqtt_retained_t *r, bool qos0)
{
    jn_record_t rec;
    jn_header_t h[MQTT_HDR_MAX];
    uint8_t qos;
    if (blob_parse(r->blob, r->len, &rec, h, &qos) < 0 || jn__mqtt_record_expired(s->m, &rec))
        return 0;
    if (!jn__mqtt_has_room(s))
        return JN_EAGAIN;
    if (qos > ms->qos)
        qos = ms->qos;
    if (qos0)
        qos = 0;
    mqtt_slot_t *sl = NULL;
    if (qos) {
        if (!(sl = jn__mqtt_slot_take(s->st)))
            return JN_EAGAIN;
        sl->qos = qos;
        sl->msub = ms;
        sl->ret = jn__mqtt_retained_ref(r);
        s->st->dirty = true; /* saved with the session */
    }
    int rc = jn__mqtt_send_record(s, r->topic, strlen(r->topic), &rec, qos, sl ? sl->pid : 0, true, false,
                                  ms->sub_id);
    if (rc < 0 && sl)
        jn__mqtt_slot_release(s->st, sl);
    return rc == JN_EAGAIN ? JN_EAGAIN : 0;
}

/* Appends |r| for |ms| to the pending queue of |st|, taking a reference.
 * Returns 0, JN_ETOOBIG (MQTT_PENDING_MAX reached) or JN_ENOMEM. */
static int pending_push(mqtt_state_t *st, mqtt_msub_t *ms, mqtt_retained_t *r)
{
    mqtt_pending_t *q = st->pending;
    if (q && q->n >= MQTT_PENDING_MAX)
        return JN_ETOOBIG;
    if (!q || q->n == q->cap) {
        uint32_t ncap = q ? q->cap * 2 : 16;
        if (ncap > MQTT_PENDING_MAX)
            ncap = MQTT_PENDING_MAX;
        mqtt_pending_t *nq = malloc(sizeof *nq + (size_t)ncap * sizeof nq->v[0]);
        if (!nq)
            return JN_ENOMEM;
        nq->head = 0;
        nq->n = q ? q->n : 0;
        nq->cap = ncap;
        for (uint32_t i = 0; i < nq->n; i++)
            nq->v[i] = q->v[(q->head + i) % q->cap];
        free(q);
        st->pending = q = nq;
    }
    q->v[(q->head + q->n) % q->cap] = (mqtt_pend_t){jn__mqtt_retained_ref(r), ms};
    q->n++;
    return 0;
}

static void pending_release_if_empty(mqtt_state_t *st)
{
    if (st->pending && st->pending->n == 0) {
        free(st->pending);
        st->pending = NULL;
    }
}

void jn__mqtt_pending_drain(mqtt_state_t *st)
{
    mqtt_pending_t *q = st->pending;
    jn_mqtt_session_t *s = st->sess;
    while (q && q->n > 0 && s && s->st == st) {
        mqtt_pend_t *e = &q->v[q->head];
        if (send_now(s, e->msub, e->ret, false) == JN_EAGAIN)
            return;
        jn__mqtt_retained_unref(e->ret); /* a slot took its own */
        q->head = (q->head + 1) % q->cap;
        q->n--;
    }
    pending_release_if_empty(st);
}

void jn__mqtt_pending_drop(mqtt_state_t *st, const mqtt_msub_t *ms)
{
    mqtt_pending_t *q = st->pending;
    if (!q)
        return;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < q->n; i++) {
        mqtt_pend_t e = q->v[(q->head + i) % q->cap];
        if (!ms || e.msub == ms)
            jn__mqtt_retained_unref(e.ret);
        else
            q->v[(q->head + kept++) % q->cap] = e; /* kept <= i: not read again */
    }
    q->n = kept;
    pending_release_if_empty(st);
}

/* One retained message for |ms| at SUBSCRIBE: now when nothing is pending
 * and there is room, otherwise queued behind the pending ones. */
static void send_one(jn_mqtt_session_t *s, mqtt_msub_t *ms, mqtt_retained_t *r)
{
    mqtt_state_t *st = s->st;
    if ((!st->pending || st->pending->n == 0) && send_now(s, ms, r, false) == 0)
        return;
    int rc = pending_push(st, ms, r);
    if (rc == 0)
        return;
    /* Over the cap (or out of memory): at QoS 0 now, as a full window did
     * before the queue existed. */
    jn_debug("mqtt: %s: retained '%s' not queued (%s): sent at QoS 0", st->client_id, r->topic, jn_strerror(rc));
    if (send_now(s, ms, r, true) == JN_EAGAIN) {
        jn_debug("mqtt: %s: retained '%s' dropped: no room", st->client_id, r->topic);
        s->m->dropped++;
    }
}

int jn__mqtt_retained_resend(jn_mqtt_session_t *s, mqtt_slot_t *sl)
{
    mqtt_state_t *st = s->st;
    const mqtt_retained_t *r = sl->ret;
    jn_record_t rec;
    jn_header_t h[MQTT_HDR_MAX];
    uint8_t qos;
    int rc = JN_ETOOBIG;
    if (blob_parse(r->blob, r->len, &rec, h, &qos) == 0 && !jn__mqtt_record_expired(s->m, &rec)) {
        if (!jn__mqtt_has_room(s))
            return JN_EAGAIN;
        rc = jn__mqtt_send_record(s, r->topic, strlen(r->topic), &rec, sl->qos, sl->pid, true, true,
                                  sl->msub ? sl->msub->sub_id : 0);
        if (rc == JN_EAGAIN)
            return JN_EAGAIN;
    }
    sl->stale = false;
    if (st->nstale)
        st->nstale--;
    if (rc < 0) /* expired, or never fits: as if delivered (3.1.2.25) */
        jn__mqtt_slot_release(st, sl);
    return 0;
}

void jn__mqtt_retained_send(jn_mqtt_session_t *s, mqtt_msub_t *ms)
{
    jn_mqtt_t *m = s->m;
    const char *filter = jn__mqtt_msub_filter(ms);
    size_t flen = (size_t)(ms->flen - ms->foff);
    /* A replaced subscription: what it still had pending is matched again. */
    jn__mqtt_pending_drop(s->st, ms);
    for (size_t i = 0; i < m->rcap; i++)
        for (mqtt_retained_t *r = m->rtab[i]; r; r = r->next)
            if (jn_filter_match(filter, flen, r->topic, strlen(r->topic)))
                send_one(s, ms, r);
}

static int load_key(const uint8_t *key, size_t klen, void *arg)
{
    jn_buf_t *keys = arg;
    if (jn_buf_put_be16(keys, (uint16_t)klen) < 0 || jn_buf_append(keys, key, klen) < 0)
        return JN_ENOMEM;
    return 0;
}

int jn__mqtt_retained_load(jn_mqtt_t *m)
{
    jn_buf_t keys, val;
    jn_buf_init(&keys, 1u << 30);
    jn_buf_init(&val, 1u << 30);
    int rc = jn_broker_table_scan(m->b, MQTT_RETAINED_TABLE, NULL, 0, NULL, 0, SIZE_MAX, load_key, &keys);
    if (rc == JN_ENOENT)
        rc = 0;
    for (size_t off = 0; rc >= 0 && off + 2 <= keys.len;) {
        size_t kl = jn_load_be16(keys.data + off);
        const char *k = (const char *)keys.data + off + 2;
        off += 2 + kl;
        jn_buf_reset(&val);
        if (jn_broker_table_get(m->b, MQTT_RETAINED_TABLE, (const uint8_t *)k, kl, &val, NULL, 0, NULL, NULL) < 0)
            continue;
        jn_record_t rec;
        jn_header_t h[MQTT_HDR_MAX];
        uint8_t q;
        if (blob_parse(val.data, val.len, &rec, h, &q) == 0)
            (void)store_blob(m, k, kl, val.data, val.len, false);
    }
    jn_buf_free(&keys);
    jn_buf_free(&val);
    return rc < 0 ? rc : 0;
}

void jn__mqtt_retained_free_all(jn_mqtt_t *m)
{
    for (size_t i = 0; i < m->rcap; i++) {
        mqtt_retained_t *r = m->rtab[i];
        while (r) {
            mqtt_retained_t *nx = r->next;
            r->next = NULL;
            jn__mqtt_retained_unref(r);
            r = nx;
        }
    }
    free(m->rtab);
    m->rtab = NULL;
    m->rcap = m->nretained = 0;
}

/* Sets one $SYS topic and sends it to the live subscribers of $ filters. */
static void sys_set(jn_mqtt_t *m, const char *topic, const char *value)
{
    jn_record_t rec;
    memset(&rec, 0, sizeof rec);
    rec.key_len = -1;
    rec.value = (const uint8_t *)value;
    rec.value_len = (int32_t)strlen(value);
    rec.timestamp = jn__mqtt_now(m);
    if (jn__mqtt_retained_set(m, topic, strlen(topic), &rec, 0, false) < 0)
        return;
    size_t tlen = strlen(topic);
    jn_list_t *n;
    jn_list_foreach(n, &m->states) {
        mqtt_state_t *st = jn_container_of(n, mqtt_state_t, node);
        if (!st->sess || st->sess->phase != PH_ACTIVE)
            continue;
        jn_list_t *k;
        jn_list_foreach(k, &st->subs) {
            mqtt_msub_t *ms = jn_container_of(k, mqtt_msub_t, node);
            if (jn__mqtt_msub_filter(ms)[0] == '$' && !ms->share &&
                jn_filter_match(jn__mqtt_msub_filter(ms), (size_t)(ms->flen - ms->foff), topic, tlen) &&
                jn__mqtt_has_room(st->sess))
                (void)jn__mqtt_send_record(st->sess, topic, tlen, &rec, 0, 0, false, false, ms->sub_id);
        }
    }
}

void jn__mqtt_sys_update(jn_mqtt_t *m)
{
    char v[64];
    snprintf(v, sizeof v, "%zu", m->connected);
    sys_set(m, "$SYS/broker/clients/connected", v);
    snprintf(v, sizeof v, "%zu", m->nstates);
    sys_set(m, "$SYS/broker/clients/total", v);
    snprintf(v, sizeof v, "%" PRIu64, m->received);
    sys_set(m, "$SYS/broker/messages/received", v);
    snprintf(v, sizeof v, "%" PRIu64, m->sent);
    sys_set(m, "$SYS/broker/messages/sent", v);
    snprintf(v, sizeof v, "%" PRIu64, m->dropped);
    sys_set(m, "$SYS/broker/messages/dropped", v);
    snprintf(v, sizeof v, "%zu", m->nretained);
    sys_set(m, "$SYS/broker/retained messages/count", v);
    snprintf(v, sizeof v, "%" PRId64 " seconds", (jn__mqtt_now(m) - m->started_ms) / 1000);
    sys_set(m, "$SYS/broker/uptime", v);
    snprintf(v, sizeof v, "junction %s", m->cfg.version ? m->cfg.version : "");
    sys_set(m, "$SYS/broker/version", v);
}
