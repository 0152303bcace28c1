/* state.c - MQTT session state per client id: subscriptions as broker
 * cursors, the outbound in-flight window, persistence.
 *
 * A persistent session (expiry > 0) is saved in the internal table
 * "__mqtt_sessions" (key: client id; value: JSON
 *   {"v":5,"expiry":s,"next":n,"subs":[{"f":full filter,"q":qos,"nl":b,
 *    "rap":b,"rh":n,"id":sub id,"n":subno}]})
 * whenever its subscriptions change. Its cursor positions are consumer
 * groups "mqtt/<client id>/<subno>" (one per subscription, since two
 * overlapping filters have different positions in the same partition):
 * the committed offset of a partition is the lowest offset not yet
 * acknowledged. Positions are committed every commit_interval_ms while
 * the session is active and at disconnect; while the client is offline
 * nothing is read or queued, and on reconnect each cursor resumes from
 * its group.
 */
#include "mqtt_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/hash.h"
#include "../../common/log.h"
#include "../../core/filter.h"

/* ---- names ---- */

void jn__mqtt_group_name(char *out, size_t cap, const char *prefix, const char *a, const char *b, uint32_t n)
{
    int len = b ? snprintf(out, cap, "%s/%s/%s", prefix, a, b) : snprintf(out, cap, "%s/%s/%" PRIu32, prefix, a, n);
    bool ok = len > 0 && (size_t)len < cap && len <= JN_STREAM_NAME_MAX;
    for (int i = 0; ok && i < len; i++)
        if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] > 0x7e)
            ok = false;
    if (ok)
        return;
    /* Not printable ASCII or too long for a group name: a digest instead. */
    uint64_t h = jn_fnv1a(a, strlen(a));
    if (b)
        h = h * 1099511628211ull ^ jn_fnv1a(b, strlen(b));
    if (b)
        snprintf(out, cap, "%s/#%016" PRIx64, prefix, h);
    else
        snprintf(out, cap, "%s/#%016" PRIx64 "/%" PRIu32, prefix, h, n);
}

/* ---- the client id map ---- */

static size_t bucket(const jn_mqtt_t *m, const char *id, size_t len)
{
    return (size_t)(jn_fnv1a(id, len) & (m->hcap - 1));
}

mqtt_state_t *jn__mqtt_state_find(jn_mqtt_t *m, const char *id, size_t len)
{
    if (!m->hcap)
        return NULL;
    for (mqtt_state_t *st = m->htab[bucket(m, id, len)]; st; st = st->hnext)
        if (strlen(st->client_id) == len && memcmp(st->client_id, id, len) == 0)
            return st;
    return NULL;
}

static int grow(jn_mqtt_t *m)
{
    size_t ncap = m->hcap ? m->hcap * 2 : 64;
    mqtt_state_t **nt = calloc(ncap, sizeof *nt);
    if (!nt)
        return JN_ENOMEM;
    mqtt_state_t **old = m->htab;
    size_t ocap = m->hcap;
    m->htab = nt;
    m->hcap = ncap;
    for (size_t i = 0; i < ocap; i++) {
        mqtt_state_t *st = old[i];
        while (st) {
            mqtt_state_t *nx = st->hnext;
            size_t k = bucket(m, st->client_id, strlen(st->client_id));
            st->hnext = nt[k];
            nt[k] = st;
            st = nx;
        }
    }
    free(old);
    return 0;
}

mqtt_state_t *jn__mqtt_state_new(jn_mqtt_t *m, const char *id, size_t len)
{
    if ((m->nstates + 1) * 2 > m->hcap && grow(m) < 0)
        return NULL;
    mqtt_state_t *st = calloc(1, sizeof *st);
    if (!st || !(st->client_id = strndup(id, len))) {
        free(st);
        return NULL;
    }
    st->m = m;
    st->window = m->cfg.max_inflight;
    st->next_pid = 1;
    jn_list_init(&st->subs);
    size_t k = bucket(m, id, len);
    st->hnext = m->htab[k];
    m->htab[k] = st;
    jn_list_insert_tail(&m->states, &st->node);
    m->nstates++;
    return st;
}

static void unlink_state(mqtt_state_t *st)
{
    jn_mqtt_t *m = st->m;
    mqtt_state_t **pp = &m->htab[bucket(m, st->client_id, strlen(st->client_id))];
    while (*pp && *pp != st)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = st->hnext;
    jn_list_remove(&st->node);
    m->nstates--;
}

/* ---- slots ---- */

int jn__mqtt_slots_ensure(mqtt_state_t *st)
{
    if (st->slots)
        return 0;
    st->cap = st->m->cfg.max_inflight;
    st->slots = calloc(st->cap, sizeof *st->slots);
    return st->slots ? 0 : JN_ENOMEM;
}

mqtt_slot_t *jn__mqtt_slot_take(mqtt_state_t *st)
{
    if (jn__mqtt_slots_ensure(st) < 0 || st->inflight >= st->window || st->inflight >= st->cap)
        return NULL;
    for (uint32_t tries = 0; tries < 65535u; tries++) {
        uint16_t pid = st->next_pid;
        st->next_pid = (uint16_t)(pid == 65535 ? 1 : pid + 1);
        mqtt_slot_t *sl = &st->slots[pid % st->cap];
        if (sl->pid == 0) {
            memset(sl, 0, sizeof *sl);
            sl->pid = pid;
            st->inflight++;
            return sl;
        }
    }
    return NULL;
}

void jn__mqtt_slot_release(mqtt_state_t *st, mqtt_slot_t *sl)
{
    if (!sl->pid)
        return;
    if (sl->stale && st->nstale)
        st->nstale--;
    if (sl->share)
        sl->share->dirty = true;
    sl->pid = 0;
    st->inflight--;
    st->dirty = true;
}

/* ---- subscriptions ---- */

mqtt_msub_t *jn__mqtt_msub_find(mqtt_state_t *st, const char *full, size_t len)
{
    jn_list_t *n;
    jn_list_foreach(n, &st->subs) {
        mqtt_msub_t *ms = jn_container_of(n, mqtt_msub_t, node);
        if (strlen(ms->full) == len && memcmp(ms->full, full, len) == 0)
            return ms;
    }
    return NULL;
}

int jn__mqtt_msub_open(mqtt_msub_t *ms, bool resume)
{
    mqtt_state_t *st = ms->st;
    if (ms->share || ms->sub)
        return 0;
    char group[JN_STREAM_NAME_MAX + 64];
    jn__mqtt_group_name(group, sizeof group, "mqtt", st->client_id, NULL, ms->subno);
    jn_sub_opts_t o;
    memset(&o, 0, sizeof o);
    o.filter = ms->filter;
    o.deliver = jn__mqtt_deliver;
    o.arg = ms;
    o.lossy = ms->qos == 0 && st->expiry == 0;
    if (resume && st->expiry > 0) {
        o.start = JN_START_GROUP;
        o.group = group;
        o.group_default = JN_START_EARLIEST; /* streams created while offline */
    }
    int rc = jn_broker_subscribe(st->m->b, &o, &ms->sub);
    if (rc < 0) {
        ms->sub = NULL;
        return rc;
    }
    ms->blocked = false;
    if (!resume && st->expiry > 0) {
        /* Save where it starts, so that a restart before the first
         * periodic commit does not replay whole streams. */
        st->dirty = true;
        jn__mqtt_state_commit(st);
    }
    return 0;
}

static void forget_group(mqtt_msub_t *ms)
{
    char group[JN_STREAM_NAME_MAX + 64];
    jn__mqtt_group_name(group, sizeof group, "mqtt", ms->st->client_id, NULL, ms->subno);
    if (jn_broker_group_delete(ms->st->m->b, group) < 0)
        jn_debug("mqtt: %s: no saved position", group);
}

void jn__mqtt_msub_free(mqtt_msub_t *ms, bool forget)
{
    mqtt_state_t *st = ms->st;
    if (ms->sub)
        jn_sub_close(ms->sub);
    ms->sub = NULL;
    if (ms->share)
        jn__mqtt_share_leave(ms);
    for (uint16_t i = 0; st->slots && i < st->cap; i++)
        if (st->slots[i].pid && st->slots[i].msub == ms)
            jn__mqtt_slot_release(st, &st->slots[i]);
    if (forget && st->expiry > 0)
        forget_group(ms);
    jn_list_remove(&ms->node);
    st->nsubs--;
    free(ms->filter);
    free(ms->full);
    free(ms);
}

void jn__mqtt_state_resume(mqtt_state_t *st)
{
    jn_list_t *n;
    jn_list_foreach(n, &st->subs) {
        mqtt_msub_t *ms = jn_container_of(n, mqtt_msub_t, node);
        if (ms->blocked && ms->sub) {
            ms->blocked = false;
            jn_sub_resume(ms->sub);
        }
        if (ms->share && ms->share->blocked) {
            ms->share->blocked = false;
            jn_sub_resume(ms->share->sub);
        }
    }
}

/* ---- positions ---- */

void jn__mqtt_state_commit(mqtt_state_t *st)
{
    if (!st->dirty || st->expiry == 0)
        return;
    st->dirty = false;
    jn_broker_t *b = st->m->b;
    jn_list_t *n;
    jn_list_foreach(n, &st->subs) {
        mqtt_msub_t *ms = jn_container_of(n, mqtt_msub_t, node);
        if (!ms->sub)
            continue;
        char group[JN_STREAM_NAME_MAX + 64];
        jn__mqtt_group_name(group, sizeof group, "mqtt", st->client_id, NULL, ms->subno);
        for (jn_stream_t *s = jn_broker_stream_next(b, NULL); s; s = jn_broker_stream_next(b, s)) {
            for (uint32_t p = 0; p < jn_stream_partitions(s); p++) {
                int64_t pos = jn_sub_position(ms->sub, s, p);
                if (pos < 0)
                    break; /* no cursor in this stream */
                for (uint16_t i = 0; st->slots && i < st->cap; i++) {
                    const mqtt_slot_t *sl = &st->slots[i];
                    if (sl->pid && sl->msub == ms && !sl->share && sl->stream == s && sl->partition == p &&
                        (sl->state == 0 || sl->stale) && sl->offset < pos)
                        pos = sl->offset;
                }
                int64_t cur;
                if (jn_broker_group_fetch(b, group, s, p, &cur) == 0 && cur == pos)
                    continue;
                int rc = jn_broker_group_commit(b, group, s, p, pos, NULL);
                if (rc < 0)
                    jn_warn("mqtt: %s: cannot save a position: %s", st->client_id, jn_strerror(rc));
            }
        }
    }
}

void jn__mqtt_state_offline(mqtt_state_t *st)
{
    st->dirty = true;
    jn__mqtt_state_commit(st);
    jn_list_t *n;
    jn_list_foreach(n, &st->subs) {
        mqtt_msub_t *ms = jn_container_of(n, mqtt_msub_t, node);
        if (ms->sub)
            jn_sub_close(ms->sub);
        ms->sub = NULL;
        ms->blocked = false;
        if (ms->share)
            jn__mqtt_share_leave(ms);
    }
    /* Unacknowledged records come again from the log at reconnect, with
     * their packet ids and DUP set; retained and shared ones do not. */
    for (uint16_t i = 0; st->slots && i < st->cap; i++) {
        mqtt_slot_t *sl = &st->slots[i];
        if (!sl->pid)
            continue;
        if (!sl->stream || sl->share || !sl->msub) {
            jn__mqtt_slot_release(st, sl);
        } else if (!sl->stale) {
            sl->stale = true;
            st->nstale++;
        }
    }
}

int jn__mqtt_state_online(mqtt_state_t *st)
{
    int ret = 0;
    jn_mqtt_session_t *s = st->sess;
    jn_list_t *n;
    jn_list_foreach(n, &st->subs) {
        mqtt_msub_t *ms = jn_container_of(n, mqtt_msub_t, node);
        if (ms->share == NULL && strncmp(ms->full, "$share/", 7) == 0) {
            const char *g = ms->full + 7;
            const char *slash = strchr(g, '/');
            mqtt_share_t *sh = slash ? jn__mqtt_share_get(st->m, g, (size_t)(slash - g), ms->filter) : NULL;
            if (sh) {
                ms->share = sh;
                jn_list_insert_tail(&sh->members, &ms->share_node);
                sh->nmembers++;
                if (sh->blocked) {
                    sh->blocked = false;
                    jn_sub_resume(sh->sub);
                }
            }
            continue;
        }
        int rc = jn__mqtt_msub_open(ms, true);
        if (rc < 0)
            ret = rc;
    }
    /* 4.4: resend PUBREL for QoS 2 messages already received. */
    for (uint16_t i = 0; s && st->slots && i < st->cap; i++) {
        mqtt_slot_t *sl = &st->slots[i];
        if (sl->pid && sl->state == 1) {
            if (sl->stale && st->nstale)
                st->nstale--;
            sl->stale = false;
            jn__mqtt_send_ack(s, JN_MQTT_PUBREL, sl->pid, 0);
        }
    }
    return ret;
}

/* ---- persistence ---- */

int jn__mqtt_state_save(mqtt_state_t *st)
{
    jn_broker_t *b = st->m->b;
    if (st->expiry == 0) {
        if (st->saved)
            if (jn_broker_table_delete(b, MQTT_SESSIONS_TABLE, (const uint8_t *)st->client_id,
                                       strlen(st->client_id), NULL) < 0)
                jn_debug("mqtt: %s: no saved session", st->client_id);
        st->saved = false;
        return 0;
    }
    json_t *subs = json_array();
    jn_list_t *n;
    jn_list_foreach(n, &st->subs) {
        mqtt_msub_t *ms = jn_container_of(n, mqtt_msub_t, node);
        json_array_append_new(subs, json_pack("{s:s,s:i,s:b,s:b,s:i,s:I,s:I}", "f", ms->full, "q", ms->qos, "nl",
                                              ms->no_local, "rap", ms->rap, "rh", ms->rh, "id",
                                              (json_int_t)ms->sub_id, "n", (json_int_t)ms->subno));
    }
    json_t *j = json_pack("{s:i,s:I,s:I,s:o}", "v", st->version, "expiry", (json_int_t)st->expiry, "next",
                          (json_int_t)st->next_subno, "subs", subs);
    char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!txt)
        return JN_ENOMEM;
    int rc = jn_broker_table_put(b, MQTT_SESSIONS_TABLE, (const uint8_t *)st->client_id, strlen(st->client_id),
                                 (const uint8_t *)txt, strlen(txt), "application/json", NULL);
    free(txt);
    if (rc < 0)
        jn_warn("mqtt: %s: cannot save the session: %s", st->client_id, jn_strerror(rc));
    else
        st->saved = true;
    return rc;
}

void jn__mqtt_state_end(mqtt_state_t *st)
{
    uint32_t expiry = st->expiry;
    while (!jn_list_empty(&st->subs)) {
        mqtt_msub_t *ms = jn_container_of(st->subs.next, mqtt_msub_t, node);
        st->expiry = expiry ? expiry : (st->saved ? 1 : 0); /* forget groups of saved sessions */
        jn__mqtt_msub_free(ms, true);
    }
    st->expiry = 0;
    if (st->saved)
        (void)jn__mqtt_state_save(st);
    jn__mqtt_will_free(st->will);
    unlink_state(st);
    free(st->slots);
    free(st->q2);
    free(st->client_id);
    free(st);
}

static int load_key(const uint8_t *key, size_t klen, void *arg)
{
    jn_buf_t *keys = arg;
    if (jn_buf_put_be16(keys, (uint16_t)klen) < 0 || jn_buf_append(keys, key, klen) < 0)
        return JN_ENOMEM;
    return 0;
}

static void load_one(jn_mqtt_t *m, const char *id, size_t idlen, const json_t *j)
{
    mqtt_state_t *st = jn__mqtt_state_new(m, id, idlen);
    if (!st)
        return;
    st->saved = true;
    st->version = (uint8_t)json_integer_value(json_object_get(j, "v"));
    int64_t e = json_integer_value(json_object_get(j, "expiry"));
    st->expiry = e > 0 && e <= UINT32_MAX ? (uint32_t)e : 1;
    if (st->expiry > m->cfg.session_expiry_max)
        st->expiry = m->cfg.session_expiry_max ? m->cfg.session_expiry_max : 1;
    st->next_subno = (uint32_t)json_integer_value(json_object_get(j, "next"));
    st->offline_since = jn__mqtt_now(m);
    size_t i;
    json_t *sj;
    json_array_foreach(json_object_get(j, "subs"), i, sj) {
        const char *full = json_string_value(json_object_get(sj, "f"));
        if (!full || st->nsubs >= MQTT_SUBS_MAX)
            continue;
        mqtt_msub_t *ms = calloc(1, sizeof *ms);
        const char *filter = full;
        if (strncmp(full, "$share/", 7) == 0) {
            const char *slash = strchr(full + 7, '/');
            filter = slash ? slash + 1 : full;
        }
        if (!ms || !(ms->full = strdup(full)) || !(ms->filter = strdup(filter))) {
            if (ms)
                free(ms->full);
            free(ms);
            continue;
        }
        ms->st = st;
        jn_list_init(&ms->share_node);
        ms->qos = (uint8_t)json_integer_value(json_object_get(sj, "q"));
        ms->no_local = json_is_true(json_object_get(sj, "nl"));
        ms->rap = json_is_true(json_object_get(sj, "rap"));
        ms->rh = (uint8_t)json_integer_value(json_object_get(sj, "rh"));
        ms->sub_id = (uint32_t)json_integer_value(json_object_get(sj, "id"));
        ms->subno = (uint32_t)json_integer_value(json_object_get(sj, "n"));
        jn_list_insert_tail(&st->subs, &ms->node);
        st->nsubs++;
    }
}

int jn__mqtt_states_load(jn_mqtt_t *m)
{
    jn_buf_t keys, val;
    jn_buf_init(&keys, 256u << 20);
    jn_buf_init(&val, 16u << 20);
    int rc = jn_broker_table_scan(m->b, MQTT_SESSIONS_TABLE, NULL, 0, NULL, 0, SIZE_MAX, load_key, &keys);
    if (rc == JN_ENOENT)
        rc = 0;
    for (size_t off = 0; rc >= 0 && off + 2 <= keys.len;) {
        size_t kl = jn_load_be16(keys.data + off);
        const char *k = (const char *)keys.data + off + 2;
        off += 2 + kl;
        jn_buf_reset(&val);
        if (jn_broker_table_get(m->b, MQTT_SESSIONS_TABLE, (const uint8_t *)k, kl, &val, NULL, 0, NULL, NULL) < 0)
            continue;
        json_t *j = json_loadb((const char *)val.data, val.len, 0, NULL);
        if (j)
            load_one(m, k, kl, j);
        json_decref(j);
    }
    jn_buf_free(&keys);
    jn_buf_free(&val);
    if (m->nstates)
        jn_info("mqtt: %zu persistent sessions restored", m->nstates);
    return rc < 0 ? rc : 0;
}

/* ---- wills ---- */

void jn__mqtt_will_free(mqtt_will_t *w)
{
    if (!w)
        return;
    free(w->topic);
    free(w->payload);
    jn_buf_free(&w->headers);
    free(w);
}

void jn__mqtt_will_publish(jn_mqtt_t *m, mqtt_will_t *w)
{
    jn_header_t h[MQTT_HDR_MAX];
    size_t nh = 0;
    char exp[24];
    /* Two slots stay free: MQTT_H_RETAIN and MQTT_H_QOS. */
    for (size_t off = 0; off + 6 <= w->headers.len && nh < MQTT_HDR_MAX - 2;) {
        const uint8_t *p = w->headers.data + off;
        uint16_t kl = jn_load_be16(p);
        uint32_t vl = jn_load_be32(p + 2 + kl);
        h[nh].key = p + 2;
        h[nh].key_len = kl;
        h[nh].value = p + 6 + kl;
        h[nh].value_len = (int32_t)vl;
        if (kl == sizeof MQTT_H_EXPIRY - 1 && memcmp(p + 2, MQTT_H_EXPIRY, kl) == 0 && vl > 1 && vl < 16) {
            char tmp[16];
            memcpy(tmp, p + 7 + kl, vl - 1);
            tmp[vl - 1] = '\0';
            int n = snprintf(exp, sizeof exp, "%" PRId64, jn__mqtt_now(m) + (int64_t)strtoll(tmp, NULL, 10) * 1000);
            h[nh].value = (const uint8_t *)exp;
            h[nh].value_len = n;
        }
        nh++;
        off += 6 + kl + vl;
    }
    if (w->retain) {
        h[nh].key = (const uint8_t *)MQTT_H_RETAIN;
        h[nh].key_len = sizeof MQTT_H_RETAIN - 1;
        h[nh].value = (const uint8_t *)"1";
        h[nh].value_len = 1;
        nh++;
    }
    size_t tlen = strlen(w->topic);
    if (jn_subject_validate(w->topic, tlen) < 0)
        return;
    int rc = jn__mqtt_publish_record(m, NULL, w->topic, tlen, w->payload, w->payload_len, w->qos, w->retain, h, nh,
                                     NULL);
    if (rc < 0)
        jn_debug("mqtt: will to '%s' not published: %s", w->topic, jn_strerror(rc));
}
