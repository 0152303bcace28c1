/* deliver.c - outbound PUBLISH: records offered by broker cursors are
 * encoded straight into the connection's output buffer (no allocation per
 * message). A QoS 0 subscription of a clean session is lossy: above the
 * output's high water the record is dropped and counted. Other
 * subscriptions refuse (JN_EAGAIN) when the client's window (Receive
 * Maximum) is full or the output is above high water: the cursor lags in
 * the log and resumes on PUBACK/PUBCOMP or drain. After a reconnect or a
 * restart a cursor first reads again what it had sent (state.c, marks):
 * unacknowledged records go out with DUP and their packet ids, the others
 * are skipped.
 *
 * Shared subscriptions ("$share/g/f") have one cursor per group; each
 * record goes to the next online member with room, round robin. When a
 * member leaves with unacknowledged records, the group's cursor restarts
 * from its lowest unacknowledged offset, so another member gets them.
 */
#include "mqtt_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"
#include "../../core/filter.h"

static bool hdr_is(const jn_header_t *h, const char *name, size_t nlen)
{
    return h->key_len == nlen && memcmp(h->key, name, nlen) == 0;
}
#define HDR_IS(h, lit) hdr_is((h), lit, sizeof lit - 1)

static bool internal_stream(const jn_stream_t *s)
{
    const char *n = jn_stream_name(s);
    return n[0] == '_' && n[1] == '_';
}

int64_t jn__mqtt_record_expiry(const jn_record_t *rec)
{
    for (uint32_t i = 0; i < rec->header_count; i++) {
        const jn_header_t *h = &rec->headers[i];
        if (HDR_IS(h, MQTT_H_EXPIRY) && h->value && h->value_len > 0 && h->value_len < 20) {
            int64_t v = 0;
            for (int32_t k = 0; k < h->value_len; k++) {
                if (h->value[k] < '0' || h->value[k] > '9')
                    return 0;
                v = v * 10 + (h->value[k] - '0');
            }
            return v;
        }
    }
    return 0;
}

bool jn__mqtt_record_expired(jn_mqtt_t *m, const jn_record_t *rec)
{
    int64_t at = jn__mqtt_record_expiry(rec);
    return at && at <= jn__mqtt_now(m);
}

static bool record_retained(const jn_record_t *rec)
{
    for (uint32_t i = 0; i < rec->header_count; i++)
        if (HDR_IS(&rec->headers[i], MQTT_H_RETAIN))
            return true;
    return false;
}

/* min(published QoS, granted QoS) (3.8.4): the published QoS is the
 * MQTT_H_QOS header; records without a valid one (QoS 2 publishes, other
 * doors) go out at the granted QoS. */
static uint8_t delivery_qos(const jn_record_t *rec, uint8_t granted)
{
    for (uint32_t i = 0; i < rec->header_count; i++) {
        const jn_header_t *h = &rec->headers[i];
        if (HDR_IS(h, MQTT_H_QOS) && h->value && h->value_len == 1 && h->value[0] >= '0' && h->value[0] < '2') {
            uint8_t q = (uint8_t)(h->value[0] - '0');
            return q < granted ? q : granted;
        }
    }
    return granted;
}

bool jn__mqtt_has_room(jn_mqtt_session_t *s)
{
    return s && s->phase == PH_ACTIVE && !s->t->above_high_water(s->tctx);
}

int jn__mqtt_send_record(jn_mqtt_session_t *s, const char *subject, size_t slen, const jn_record_t *rec,
                         uint8_t qos, uint16_t pid, bool retain, bool dup, uint32_t sub_id)
{
    jn_mqtt_t *m = s->m;
    jn_mqtt_publish_t p;
    jn_mqtt_user_prop_t up[MQTT_HDR_MAX];
    p.qos = qos;
    p.retain = retain;
    p.dup = dup;
    p.packet_id = pid;
    p.topic.data = (const uint8_t *)subject;
    p.topic.len = (uint32_t)slen;
    p.payload.data = rec->value_len > 0 ? rec->value : NULL;
    p.payload.len = rec->value_len > 0 ? (uint32_t)rec->value_len : 0;
    p.props.present = 0;
    p.props.user = NULL;
    p.props.user_count = 0;
    p.props.sub_ids = NULL;
    p.props.sub_id_count = 0;
    p.props.raw.data = NULL;
    p.props.raw.len = 0;
    p.props.limit = s->max_out;
    if (s->version == JN_MQTT_V5) {
        jn_mqtt_props_t *pr = &p.props;
        uint32_t nu = 0;
        for (uint32_t i = 0; i < rec->header_count; i++) {
            const jn_header_t *h = &rec->headers[i];
            if (!h->value || h->value_len < 0)
                continue;
            jn_mqtt_view_t v = {h->value, (uint32_t)h->value_len};
            if (h->key_len > 0 && h->key[0] == ':')
                continue;
            if (HDR_IS(h, MQTT_H_CTYPE)) {
                if (jn_mqtt_utf8_valid(v.data, v.len)) {
                    pr->present |= JN_MQTT_PBIT(JN_MQTT_PROP_CONTENT_TYPE);
                    pr->content_type = v;
                }
            } else if (HDR_IS(h, MQTT_H_FORMAT)) {
                pr->present |= JN_MQTT_PBIT(JN_MQTT_PROP_PAYLOAD_FORMAT);
                pr->payload_format = 1;
            } else if (HDR_IS(h, MQTT_H_RESPONSE)) {
                if (jn_mqtt_utf8_valid(v.data, v.len) && jn_subject_validate((const char *)v.data, v.len) == 0) {
                    pr->present |= JN_MQTT_PBIT(JN_MQTT_PROP_RESPONSE_TOPIC);
                    pr->response_topic = v;
                }
            } else if (HDR_IS(h, MQTT_H_CORREL)) {
                pr->present |= JN_MQTT_PBIT(JN_MQTT_PROP_CORRELATION_DATA);
                pr->correlation_data = v;
            } else if (HDR_IS(h, MQTT_H_EXPIRY)) {
                int64_t at = jn__mqtt_record_expiry(rec), now = jn__mqtt_now(m);
                if (at > now) {
                    pr->present |= JN_MQTT_PBIT(JN_MQTT_PROP_MESSAGE_EXPIRY);
                    pr->message_expiry = (uint32_t)((at - now + 999) / 1000);
                }
            } else if (HDR_IS(h, MQTT_H_RETAIN)) {
                continue;
            } else if (nu < MQTT_HDR_MAX && h->key_len <= 65535 && v.len <= 65535 &&
                       jn_mqtt_utf8_valid(h->key, h->key_len) && jn_mqtt_utf8_valid(v.data, v.len)) {
                up[nu].name.data = h->key;
                up[nu].name.len = h->key_len;
                up[nu].value = v;
                nu++;
            }
        }
        if (nu) {
            pr->user = up;
            pr->user_count = nu;
            pr->present |= JN_MQTT_PBIT(JN_MQTT_PROP_USER);
        }
        if (sub_id) {
            pr->present |= JN_MQTT_PBIT(JN_MQTT_PROP_SUB_ID);
            pr->sub_id = sub_id;
        }
    }
    jn_buf_t *b;
    if (jn__mqtt_out_begin(s, &b) < 0)
        return JN_EAGAIN;
    int rc = jn_mqtt_encode_publish(b, s->version, &p);
    if (rc == JN_ETOOBIG) {
        /* Over the client's Maximum Packet Size: never fits (3.1.2.25,
         * discarded as if delivered). Over our buffer cap: later. */
        size_t need = (size_t)p.payload.len + slen + 64;
        return b->len + need > b->max ? JN_EAGAIN : JN_ETOOBIG;
    }
    if (rc < 0)
        return JN_ETOOBIG;
    jn__mqtt_out_end(s);
    m->sent++;
    if (m->stats.c_out)
        m->stats.c_out->value++;
    return 0;
}

/* The stale slot (from before a reconnect or restart) of this record, or
 * NULL. */
static mqtt_slot_t *stale_find(mqtt_state_t *st, mqtt_msub_t *ms, const jn_delivery_t *d)
{
    for (uint16_t i = 0; i < st->cap; i++) {
        mqtt_slot_t *sl = &st->slots[i];
        if (sl->pid && sl->stale && sl->msub == ms && sl->stream == d->stream && sl->partition == d->partition &&
            sl->offset == d->rec->offset)
            return sl;
    }
    return NULL;
}

/* A record the cursor reads again below a mark (state.c): resent with DUP
 * and its packet id when its slot still waits for PUBACK/PUBREC, skipped
 * otherwise (acknowledged before, or QoS 2 past PUBREC, whose PUBREL went
 * out at reconnect). Returns 1 when |d| is not below a mark (deliver it
 * as new), 0 when handled, JN_EAGAIN when there is no room to resend. */
static int replay(mqtt_state_t *st, mqtt_msub_t *ms, const jn_delivery_t *d)
{
    mqtt_mark_t *mk = jn__mqtt_mark_find(st, ms, d->stream, d->partition);
    if (!mk)
        return 1;
    if (d->rec->offset >= mk->upto) {
        jn__mqtt_mark_drop(st, mk);
        return 1;
    }
    st->dirty = true; /* the position moves on */
    mqtt_slot_t *sl = st->nstale ? stale_find(st, ms, d) : NULL;
    if (!sl || sl->state == 1)
        return 0;
    if (jn__mqtt_record_expired(st->m, d->rec)) {
        jn__mqtt_slot_release(st, sl);
        return 0;
    }
    jn_mqtt_session_t *s = st->sess;
    int rc = JN_EAGAIN;
    if (jn__mqtt_has_room(s))
        rc = jn__mqtt_send_record(s, d->subject, d->subject_len, d->rec, sl->qos, sl->pid,
                                  ms->rap && record_retained(d->rec), true, ms->sub_id);
    if (rc == JN_EAGAIN) {
        ms->blocked = true;
        return JN_EAGAIN;
    }
    sl->stale = false;
    st->nstale--;
    if (rc == JN_ETOOBIG)
        jn__mqtt_slot_release(st, sl);
    return 0;
}

int jn__mqtt_deliver(jn_sub_t *sub, const jn_delivery_t *d, void *arg)
{
    mqtt_msub_t *ms = arg;
    mqtt_state_t *st = ms->st;
    jn_mqtt_t *m = st->m;
    jn_mqtt_session_t *s = st->sess;
    if (internal_stream(d->stream))
        return 0;
    if (st->nmarks) {
        int rc = replay(st, ms, d);
        if (rc != 1)
            return rc;
    }
    if (ms->no_local && m->publishing == st)
        return 0;
    if (jn__mqtt_record_expired(m, d->rec))
        return 0;
    bool retain = ms->rap && record_retained(d->rec);
    uint8_t qos = delivery_qos(d->rec, ms->qos);
    if (!jn__mqtt_has_room(s)) {
        if (ms->qos == 0 && st->expiry == 0) {
            m->dropped++;
            return JN_EAGAIN; /* lossy: the broker skips and counts it */
        }
        ms->blocked = true;
        return JN_EAGAIN;
    }
    if (qos == 0) {
        /* Only a QoS 0 subscription's cursor is lossy: a QoS 0 record on
         * another one waits like the rest. */
        bool lossy = ms->qos == 0 && st->expiry == 0;
        int rc = jn__mqtt_send_record(s, d->subject, d->subject_len, d->rec, 0, 0, retain, false, ms->sub_id);
        if (rc == JN_EAGAIN && !lossy)
            ms->blocked = true;
        if (rc == JN_EAGAIN && lossy)
            m->dropped++;
        if (rc != JN_EAGAIN && ms->qos > 0)
            st->dirty = true; /* the saved position may move past it */
        return rc == JN_EAGAIN ? JN_EAGAIN : 0;
    }
    mqtt_slot_t *sl = jn__mqtt_slot_take(st);
    if (!sl) {
        ms->blocked = true;
        return JN_EAGAIN;
    }
    sl->qos = qos;
    sl->msub = ms;
    sl->stream = d->stream;
    sl->partition = d->partition;
    sl->offset = d->rec->offset;
    int rc = jn__mqtt_send_record(s, d->subject, d->subject_len, d->rec, qos, sl->pid, retain, false, ms->sub_id);
    if (rc < 0) {
        jn__mqtt_slot_release(st, sl);
        if (rc == JN_EAGAIN) {
            ms->blocked = true;
            return JN_EAGAIN;
        }
    }
    st->dirty = true;
    return 0;
}

/* ---- shared subscriptions ---- */

int jn__mqtt_share_deliver(jn_sub_t *sub, const jn_delivery_t *d, void *arg)
{
    mqtt_share_t *sh = arg;
    jn_mqtt_t *m = sh->m;
    if (internal_stream(d->stream))
        return 0;
    if (jn__mqtt_record_expired(m, d->rec))
        return 0;
    jn_list_t *pos = sh->next ? sh->next : sh->members.next;
    for (size_t k = 0; k < sh->nmembers + 1; k++, pos = pos->next) {
        if (pos == &sh->members)
            continue;
        mqtt_msub_t *ms = jn_container_of(pos, mqtt_msub_t, share_node);
        mqtt_state_t *st = ms->st;
        jn_mqtt_session_t *s = st->sess;
        if (!jn__mqtt_has_room(s))
            continue;
        bool retain = ms->rap && record_retained(d->rec);
        uint8_t qos = delivery_qos(d->rec, ms->qos);
        if (qos == 0) {
            if (jn__mqtt_send_record(s, d->subject, d->subject_len, d->rec, 0, 0, retain, false, ms->sub_id) ==
                JN_EAGAIN)
                continue;
        } else {
            mqtt_slot_t *sl = jn__mqtt_slot_take(st);
            if (!sl)
                continue;
            sl->qos = qos;
            sl->msub = ms;
            sl->share = sh;
            sl->stream = d->stream;
            sl->partition = d->partition;
            sl->offset = d->rec->offset;
            int rc = jn__mqtt_send_record(s, d->subject, d->subject_len, d->rec, qos, sl->pid, retain, false,
                                          ms->sub_id);
            if (rc < 0)
                jn__mqtt_slot_release(st, sl);
            if (rc == JN_EAGAIN)
                continue;
        }
        sh->next = pos->next;
        sh->dirty = true;
        return 0;
    }
    sh->blocked = true;
    return JN_EAGAIN;
}

static int share_open(mqtt_share_t *sh)
{
    jn_sub_opts_t o;
    memset(&o, 0, sizeof o);
    o.filter = sh->filter;
    o.start = JN_START_GROUP;
    o.group = sh->group;
    o.group_default = JN_START_LIVE;
    o.deliver = jn__mqtt_share_deliver;
    o.arg = sh;
    sh->blocked = false;
    return jn_broker_subscribe(sh->m->b, &o, &sh->sub);
}

mqtt_share_t *jn__mqtt_share_get(jn_mqtt_t *m, const char *group, size_t glen, const char *filter)
{
    size_t flen = strlen(filter);
    jn_list_t *n;
    jn_list_foreach(n, &m->shares) {
        mqtt_share_t *sh = jn_container_of(n, mqtt_share_t, node);
        if (strlen(sh->key) == glen + 1 + flen && memcmp(sh->key, group, glen) == 0 && sh->key[glen] == '/' &&
            memcmp(sh->key + glen + 1, filter, flen) == 0)
            return sh;
    }
    mqtt_share_t *sh = calloc(1, sizeof *sh);
    if (!sh)
        return NULL;
    sh->m = m;
    jn_list_init(&sh->members);
    char g[JN_STREAM_NAME_MAX + 64];
    char *gn = strndup(group, glen);
    sh->key = malloc(glen + flen + 2);
    sh->filter = strdup(filter);
    if (gn)
        jn__mqtt_group_name(g, sizeof g, "mqtt-share", gn, filter, 0);
    free(gn);
    sh->group = gn ? strdup(g) : NULL;
    if (!sh->key || !sh->filter || !sh->group)
        goto fail;
    memcpy(sh->key, group, glen);
    sh->key[glen] = '/';
    memcpy(sh->key + glen + 1, filter, flen + 1);
    if (share_open(sh) < 0)
        goto fail;
    jn_list_insert_tail(&m->shares, &sh->node);
    return sh;
fail:
    free(sh->key);
    free(sh->filter);
    free(sh->group);
    free(sh);
    return NULL;
}

/* Saves the lowest unacknowledged offset of each partition of |sh|. */
static void share_commit(mqtt_share_t *sh, bool force)
{
    if (!sh->dirty && !force)
        return;
    sh->dirty = false;
    jn_broker_t *b = sh->m->b;
    for (jn_stream_t *s = jn_broker_stream_next(b, NULL); s; s = jn_broker_stream_next(b, s)) {
        for (uint32_t p = 0; p < jn_stream_partitions(s); p++) {
            int64_t pos = jn_sub_position(sh->sub, s, p);
            if (pos < 0)
                break;
            jn_list_t *n;
            jn_list_foreach(n, &sh->members) {
                mqtt_state_t *st = jn_container_of(n, mqtt_msub_t, share_node)->st;
                for (uint16_t i = 0; st->slots && i < st->cap; i++) {
                    const mqtt_slot_t *sl = &st->slots[i];
                    if (sl->pid && sl->share == sh && sl->stream == s && sl->partition == p && sl->state == 0 &&
                        sl->offset < pos)
                        pos = sl->offset;
                }
            }
            int64_t cur;
            if (jn_broker_group_fetch(b, sh->group, s, p, &cur) == 0 && cur == pos)
                continue;
            if (jn_broker_group_commit(b, sh->group, s, p, pos, NULL) < 0)
                jn_warn("mqtt: shared subscription %s: cannot save a position", sh->key);
        }
    }
}

static void share_free(mqtt_share_t *sh, bool forget)
{
    jn_list_remove(&sh->node);
    if (sh->sub)
        jn_sub_close(sh->sub);
    if (forget)
        if (jn_broker_group_delete(sh->m->b, sh->group) < 0)
            jn_debug("mqtt: %s: no saved position", sh->key);
    free(sh->key);
    free(sh->filter);
    free(sh->group);
    free(sh);
}

static void share_reopen(mqtt_share_t *sh)
{
    jn_sub_close(sh->sub);
    sh->sub = NULL;
    if (share_open(sh) < 0)
        jn_warn("mqtt: shared subscription %s: cannot reopen its cursor", sh->key);
}

void jn__mqtt_share_leave(mqtt_msub_t *ms)
{
    mqtt_share_t *sh = ms->share;
    mqtt_state_t *st = ms->st;
    if (!sh)
        return;
    bool unacked = false;
    for (uint16_t i = 0; st->slots && i < st->cap; i++)
        if (st->slots[i].pid && st->slots[i].share == sh && st->slots[i].state == 0)
            unacked = true;
    /* Unacknowledged records go to another member: save the lowest
     * unacknowledged offsets (the leaver's included) and restart the
     * cursor from there. */
    if (unacked || sh->nmembers == 1)
        share_commit(sh, true);
    for (uint16_t i = 0; st->slots && i < st->cap; i++)
        if (st->slots[i].pid && st->slots[i].share == sh)
            jn__mqtt_slot_release(st, &st->slots[i]);
    if (sh->next == &ms->share_node)
        sh->next = ms->share_node.next;
    jn_list_remove(&ms->share_node);
    sh->nmembers--;
    ms->share = NULL;
    if (sh->nmembers == 0) {
        share_free(sh, false);
        return;
    }
    if (unacked && !sh->m->freeing)
        share_reopen(sh);
}

void jn__mqtt_shares_tick(jn_mqtt_t *m)
{
    jn_list_t *n, *t;
    jn_list_foreach_safe(n, t, &m->shares) {
        mqtt_share_t *sh = jn_container_of(n, mqtt_share_t, node);
        share_commit(sh, false);
    }
}
