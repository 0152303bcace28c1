/* state.c - MQTT session state per client id: subscriptions as broker
 * cursors, the outbound in-flight window, persistence.
 *
 * Cursor positions are consumer groups "mqtt/<client id>/<subno>" (one per
 * subscription, since two overlapping filters have different positions in
 * the same partition): the committed offset of a partition is the lowest
 * offset not yet acknowledged (QoS 2 records count as acknowledged once
 * PUBREC came). Positions are committed every commit_interval_ms while the
 * session is active, at disconnect and at shutdown; while the client is
 * offline nothing is read or queued, and on reconnect each cursor resumes
 * from its group.
 *
 * A cursor that resumes reads again what was sent but not acknowledged,
 * and possibly acknowledged records after it. A mark per partition says
 * up to where everything was sent before: below it, a record with a stale
 * in-flight slot goes out again with DUP and its old packet id (4.4.0-1),
 * the rest is skipped, so a completed QoS 2 message is never sent again
 * under a new packet id. In-flight QoS 2 messages past PUBREC get their
 * PUBREL again at reconnect. Retained messages sent at SUBSCRIBE are not
 * in the log: their slots hold the message itself (retained.c) and are
 * resent at once at reconnect. Those not sent yet for want of a slot
 * (st->pending, retained.c) stay queued while a persistent session is
 * offline and go after the resends; they are not saved, so a restart
 * forgets them. Shared-subscription slots are released
 * when the member goes offline: the group gives those records to a member
 * again (MQTT 5 4.8.2).
 *
 * SAVED FORMAT
 *
 * A session is kept in the internal table "__mqtt_sessions" while its
 * expiry is > 0, or while it has a will to publish after a restart. Key:
 * the client id. Value: compact JSON, members absent when empty:
 *   "v"      protocol level of the last CONNECT (4 or 5)
 *   "expiry" session expiry interval, seconds (0: kept for its will only)
 *   "next"   next subscription number
 *   "pid"    next outbound packet id
 *   "off"    wall-clock ms when the client went offline; 0 = it was
 *            connected at the last save (after a crash the restart time
 *            counts as the time it went offline)
 *   "subs"   [{"f":filter as subscribed,"q":qos,"nl":No Local,
 *             "rap":Retain As Published,"rh":Retain Handling,
 *             "id":subscription identifier,"n":subno}]
 *   "inf"    outbound in flight: [[packet id, qos, state (0 waiting
 *             PUBACK/PUBREC, 1 waiting PUBCOMP), subno, stream,
 *             partition, offset]] for records read by a cursor, and
 *             [packet id, qos, state, subno, "", 0, 0, topic, hash] for
 *             retained messages sent at SUBSCRIBE, hash being the FNV-1a
 *             64 of the retained blob as 16 lowercase hex digits (a string:
 *             JSON readers that use doubles would round a 64-bit number);
 *             a retained one past PUBREC needs no message and ends at
 *             offset. Shared-subscription deliveries are not saved.
 *   "mk"     marks: [[subno, stream, partition, upto]]
 *   "q2"     inbound QoS 2 packet ids received and not yet released
 *   "will"   {"t":topic,"p":payload (base64),"q":qos,"r":retain,
 *             "d":will delay seconds,"h":headers (base64 of the
 *             big-endian key16/value32 list of mqtt_will_t.headers)}
 * Written when the subscriptions or the will change, with the positions
 * (at most once per commit interval, and only when the JSON differs from
 * the last one written), at disconnect and at shutdown. The positions and
 * the JSON are written in the same loop iteration, so a crash loses at
 * most the last interval: acknowledgements the client sent in it come
 * again (a redelivery, never a loss), and a QoS 2 PUBLISH received in it
 * may be stored twice if the client resends it.
 *
 * On load every slot is stale and every saved will is due at "off" plus
 * min(will delay, expiry), as if the connection had dropped then: a client
 * reconnecting before that cancels it. A session whose expiry passed while
 * the server was down ends at the first tick (or at the client's CONNECT).
 * A retained entry in state 0 comes back only when the retained store
 * (loaded first) still has that topic with the same hash: otherwise the
 * message was replaced or cleared while the server was down, and is gone.
 */
#include "mqtt_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

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
    /* Load factor up to 1: a bucket is 8 bytes per client, chains stay short. */
    if (m->nstates + 1 > m->hcap && grow(m) < 0)
        return NULL;
    mqtt_state_t *st = jn_pool_calloc(&m->state_pool);
    if (!st)
        return NULL;
    if (len < MQTT_ID_INLINE) {
        st->client_id = (char *)(st + 1);
        memcpy(st->client_id, id, len); /* NUL: the pool zeroes */
    } else if (!(st->client_id = strndup(id, len))) {
        jn_pool_free(&m->state_pool, st);
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
    if (!sl->stream) {
        jn__mqtt_retained_unref(sl->ret);
        sl->ret = NULL;
    }
    sl->pid = 0;
    st->inflight--;
    st->dirty = true;
}

/* ---- marks ---- */

mqtt_mark_t *jn__mqtt_mark_find(mqtt_state_t *st, const mqtt_msub_t *ms, const jn_stream_t *s, uint32_t partition)
{
    for (uint16_t i = 0; i < st->nmarks; i++) {
        mqtt_mark_t *mk = &st->marks[i];
        if (mk->msub == ms && mk->stream == s && mk->partition == partition)
            return mk;
    }
    return NULL;
}

void jn__mqtt_mark_drop(mqtt_state_t *st, mqtt_mark_t *mk)
{
    *mk = st->marks[--st->nmarks];
}

/* A growable list of marks (the state's, or one being built). */
typedef struct marks {
    mqtt_mark_t *v;
    uint16_t n, cap;
} marks_t;

/* Raises the mark of |ms| in |s|/|p| to |upto|, adding it if needed. */
static int marks_raise(marks_t *l, mqtt_msub_t *ms, jn_stream_t *s, uint32_t p, int64_t upto)
{
    for (uint16_t i = 0; i < l->n; i++) {
        mqtt_mark_t *mk = &l->v[i];
        if (mk->msub == ms && mk->stream == s && mk->partition == p) {
            if (upto > mk->upto)
                mk->upto = upto;
            return 0;
        }
    }
    if (l->n >= MQTT_MARKS_MAX)
        return JN_ETOOBIG;
    if (l->n == l->cap) {
        uint16_t nc = l->cap ? (uint16_t)(l->cap * 2 > MQTT_MARKS_MAX ? MQTT_MARKS_MAX : l->cap * 2) : 4;
        mqtt_mark_t *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv)
            return JN_ENOMEM;
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = (mqtt_mark_t){ms, s, p, upto};
    return 0;
}

/* The marks a resumed cursor needs: those it has not reached yet, and for
 * every partition with a record waiting for PUBACK/PUBREC, the cursor's
 * position (everything below it was sent). A mark that cannot be kept
 * (memory, MQTT_MARKS_MAX) only costs redeliveries. */
static void marks_collect(mqtt_state_t *st, marks_t *out)
{
    memset(out, 0, sizeof *out);
    for (uint16_t i = 0; i < st->nmarks; i++) {
        const mqtt_mark_t *mk = &st->marks[i];
        int64_t pos = mk->msub->sub ? jn_sub_position(mk->msub->sub, mk->stream, mk->partition) : -1;
        if (pos < mk->upto)
            (void)marks_raise(out, mk->msub, mk->stream, mk->partition, mk->upto);
    }
    for (uint16_t i = 0; st->slots && i < st->cap; i++) {
        const mqtt_slot_t *sl = &st->slots[i];
        if (!sl->pid || sl->state != 0 || !sl->msub || !sl->stream || sl->share)
            continue;
        int64_t pos = sl->msub->sub ? jn_sub_position(sl->msub->sub, sl->stream, sl->partition) : -1;
        (void)marks_raise(out, sl->msub, sl->stream, sl->partition, pos > sl->offset ? pos : sl->offset + 1);
    }
}

static void marks_set(mqtt_state_t *st, marks_t *l)
{
    free(st->marks);
    st->marks = l->v;
    st->nmarks = l->n;
    st->capmarks = l->cap;
}

/* ---- subscriptions ---- */

mqtt_msub_t *jn__mqtt_msub_find(mqtt_state_t *st, const char *full, size_t len)
{
    jn_list_t *n;
    jn_list_foreach(n, &st->subs) {
        mqtt_msub_t *ms = jn_container_of(n, mqtt_msub_t, node);
        if (ms->flen == len && memcmp(ms->full, full, len) == 0)
            return ms;
    }
    return NULL;
}

mqtt_msub_t *jn__mqtt_msub_new(mqtt_state_t *st, const char *full, size_t len, size_t foff)
{
    if (len > UINT16_MAX || foff > len)
        return NULL;
    mqtt_msub_t *ms = jn_pool_calloc(&st->m->msub_pool);
    if (!ms)
        return NULL;
    ms->full = len < MQTT_SUB_INLINE ? (char *)(ms + 1) : malloc(len + 1);
    if (!ms->full) {
        jn_pool_free(&st->m->msub_pool, ms);
        return NULL;
    }
    memcpy(ms->full, full, len);
    ms->full[len] = 0;
    ms->flen = (uint16_t)len;
    ms->foff = (uint16_t)foff;
    ms->st = st;
    jn_list_init(&ms->share_node);
    jn_list_insert_tail(&st->subs, &ms->node);
    st->nsubs++;
    return ms;
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
    o.filter = jn__mqtt_msub_filter(ms);
    o.deliver = jn__mqtt_deliver;
    o.arg = ms;
    o.lossy = ms->qos == 0 && st->expiry == 0;
    if (resume && st->expiry > 0) {
        o.start = JN_START_GROUP;
        o.group = group;
        o.group_default = JN_START_EARLIEST; /* streams created while offline */
        /* The saved position should be at or below every record waiting
         * for its PUBACK/PUBREC (both are written in the same tick); if a
         * crash split them, move it back so that each is read again. */
        for (uint16_t i = 0; st->slots && i < st->cap; i++) {
            const mqtt_slot_t *sl = &st->slots[i];
            int64_t cur;
            if (sl->pid && sl->stale && sl->state == 0 && sl->msub == ms && sl->stream &&
                jn_broker_group_fetch(st->m->b, group, sl->stream, sl->partition, &cur) == 0 && cur > sl->offset &&
                jn_broker_group_commit(st->m->b, group, sl->stream, sl->partition, sl->offset, NULL) < 0)
                jn_warn("mqtt: %s: cannot move a position back", st->client_id);
        }
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
    for (uint16_t i = st->nmarks; i > 0; i--)
        if (st->marks[i - 1].msub == ms)
            jn__mqtt_mark_drop(st, &st->marks[i - 1]);
    jn__mqtt_pending_drop(st, ms);
    if (forget && st->expiry > 0)
        forget_group(ms);
    jn_list_remove(&ms->node);
    st->nsubs--;
    if (ms->full != (char *)(ms + 1))
        free(ms->full);
    jn_pool_free(&st->m->msub_pool, ms);
}

static void resend_retained(mqtt_state_t *st);

void jn__mqtt_state_resume(mqtt_state_t *st)
{
    resend_retained(st);
    jn__mqtt_pending_drain(st);
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
                        sl->state == 0 && sl->offset < pos)
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
    /* The in-flight state that goes with these positions. */
    (void)jn__mqtt_state_save(st);
}

void jn__mqtt_state_offline(mqtt_state_t *st)
{
    st->offline_since = jn__mqtt_now(st->m);
    /* Before the cursors close: how far each one sent. */
    marks_t mk;
    marks_collect(st, &mk);
    marks_set(st, &mk);
    st->dirty = true;
    jn__mqtt_state_commit(st);
    if (st->expiry == 0)
        (void)jn__mqtt_state_save(st); /* a will kept across a shutdown */
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
     * their packet ids and DUP set, and retained messages from their slots
     * (state_online); shared ones go to another member of the group. */
    for (uint16_t i = 0; st->slots && i < st->cap; i++) {
        mqtt_slot_t *sl = &st->slots[i];
        if (!sl->pid)
            continue;
        if (sl->share || !sl->msub) {
            jn__mqtt_slot_release(st, sl);
        } else if (!sl->stale) {
            sl->stale = true;
            st->nstale++;
        }
    }
}

/* Resends every stale retained slot waiting for PUBACK/PUBREC until the
 * output is full (the rest go at the next jn__mqtt_state_resume). */
static void resend_retained(mqtt_state_t *st)
{
    jn_mqtt_session_t *s = st->sess;
    if (!s || !st->slots || !st->nstale)
        return;
    for (uint16_t i = 0; i < st->cap; i++) {
        mqtt_slot_t *sl = &st->slots[i];
        if (sl->pid && sl->stale && !sl->stream && sl->state == 0 && sl->ret &&
            jn__mqtt_retained_resend(s, sl) == JN_EAGAIN)
            return;
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
            mqtt_share_t *sh = slash ? jn__mqtt_share_get(st->m, g, (size_t)(slash - g), jn__mqtt_msub_filter(ms)) : NULL;
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
    /* 4.4: and the retained messages sent at SUBSCRIBE, not acknowledged;
     * then those still owed since a SUBSCRIBE (kept while offline). */
    resend_retained(st);
    jn__mqtt_pending_drain(st);
    return ret;
}

/* ---- persistence ---- */

/* Base64 of |len| bytes as a JSON string (EVP_EncodeBlock: no newlines). */
static json_t *b64_json(const uint8_t *p, size_t len)
{
    if (len > INT32_MAX / 2)
        return NULL;
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (!out)
        return NULL;
    int n = EVP_EncodeBlock((unsigned char *)out, p, (int)len);
    json_t *j = json_stringn(out, (size_t)n);
    free(out);
    return j;
}

/* Decodes the base64 string |j| into a malloc'd buffer (at least one byte).
 * Returns 0, JN_EPROTO or JN_ENOMEM. */
static int b64_take(const json_t *j, uint8_t **out, size_t *len)
{
    const char *s = json_string_value(j);
    size_t n = s ? json_string_length(j) : 0;
    if (!s || n % 4 || n > INT32_MAX)
        return JN_EPROTO;
    uint8_t *b = malloc(n / 4 * 3 + 1);
    if (!b)
        return JN_ENOMEM;
    int got = n ? EVP_DecodeBlock(b, (const unsigned char *)s, (int)n) : 0;
    if (got < 0) {
        free(b);
        return JN_EPROTO;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    for (size_t k = n; k > 0 && s[k - 1] == '='; k--)
        got--;
    *out = b;
    *len = got > 0 ? (size_t)got : 0;
    return 0;
}

static json_t *will_json(const mqtt_will_t *w)
{
    json_t *p = b64_json(w->payload, w->payload_len);
    json_t *h = b64_json(w->headers.data, w->headers.len);
    if (!p || !h) {
        json_decref(p);
        json_decref(h);
        return NULL;
    }
    return json_pack("{s:s,s:o,s:i,s:b,s:I,s:o}", "t", w->topic, "p", p, "q", w->qos, "r", w->retain, "d",
                     (json_int_t)w->delay, "h", h);
}

char *jn__mqtt_state_encode(mqtt_state_t *st)
{
    json_t *j = json_pack("{s:i,s:I,s:I,s:I,s:I}", "v", st->version, "expiry", (json_int_t)st->expiry, "next",
                          (json_int_t)st->next_subno, "pid", (json_int_t)st->next_pid, "off",
                          (json_int_t)(st->sess ? 0 : st->offline_since));
    json_t *subs = json_array(), *inf = json_array(), *mks = json_array(), *q2 = json_array();
    marks_t ml;
    marks_collect(st, &ml);
    bool ok = j && subs && inf && mks && q2;
    jn_list_t *n;
    jn_list_foreach(n, &st->subs) {
        mqtt_msub_t *ms = jn_container_of(n, mqtt_msub_t, node);
        ok = ok && json_array_append_new(subs, json_pack("{s:s,s:i,s:b,s:b,s:i,s:I,s:I}", "f", ms->full, "q",
                                                         ms->qos, "nl", ms->no_local, "rap", ms->rap, "rh", ms->rh,
                                                         "id", (json_int_t)ms->sub_id, "n",
                                                         (json_int_t)ms->subno)) == 0;
    }
    for (uint16_t i = 0; ok && st->slots && i < st->cap; i++) {
        const mqtt_slot_t *sl = &st->slots[i];
        if (!sl->pid || !sl->msub || sl->share)
            continue;
        if (sl->stream) {
            ok = json_array_append_new(inf, json_pack("[i,i,i,I,s,I,I]", sl->pid, sl->qos, sl->state,
                                                      (json_int_t)sl->msub->subno, jn_stream_name(sl->stream),
                                                      (json_int_t)sl->partition, (json_int_t)sl->offset)) == 0;
        } else if (sl->ret) {
            char hex[17];
            snprintf(hex, sizeof hex, "%016" PRIx64, sl->ret->hash);
            ok = json_array_append_new(inf, json_pack("[i,i,i,I,s,i,i,s,s]", sl->pid, sl->qos, sl->state,
                                                      (json_int_t)sl->msub->subno, "", 0, 0, sl->ret->topic,
                                                      hex)) == 0;
        } else if (sl->state == 1) {
            ok = json_array_append_new(inf, json_pack("[i,i,i,I,s,i,i]", sl->pid, sl->qos, sl->state,
                                                      (json_int_t)sl->msub->subno, "", 0, 0)) == 0;
        }
    }
    for (uint16_t i = 0; ok && i < ml.n; i++)
        ok = json_array_append_new(mks, json_pack("[I,s,I,I]", (json_int_t)ml.v[i].msub->subno,
                                                  jn_stream_name(ml.v[i].stream), (json_int_t)ml.v[i].partition,
                                                  (json_int_t)ml.v[i].upto)) == 0;
    free(ml.v);
    for (uint16_t i = 0; ok && i < st->nq2; i++)
        ok = json_array_append_new(q2, json_integer(st->q2[i])) == 0;
    if (ok && json_array_size(subs))
        ok = json_object_set(j, "subs", subs) == 0;
    if (ok && json_array_size(inf))
        ok = json_object_set(j, "inf", inf) == 0;
    if (ok && json_array_size(mks))
        ok = json_object_set(j, "mk", mks) == 0;
    if (ok && json_array_size(q2))
        ok = json_object_set(j, "q2", q2) == 0;
    if (ok && st->will)
        ok = json_object_set_new(j, "will", will_json(st->will)) == 0;
    char *txt = ok ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(subs);
    json_decref(inf);
    json_decref(mks);
    json_decref(q2);
    json_decref(j);
    return txt;
}

int jn__mqtt_state_save(mqtt_state_t *st)
{
    jn_broker_t *b = st->m->b;
    const uint8_t *key = (const uint8_t *)st->client_id;
    size_t klen = strlen(st->client_id);
    if (st->expiry == 0 && !st->will) {
        if (st->saved && jn_broker_table_delete(b, MQTT_SESSIONS_TABLE, key, klen, NULL) < 0)
            jn_debug("mqtt: %s: no saved session", st->client_id);
        st->saved = false;
        st->saved_hash = 0;
        return 0;
    }
    char *txt = jn__mqtt_state_encode(st);
    if (!txt)
        return JN_ENOMEM;
    size_t len = strlen(txt);
    uint64_t h = jn_fnv1a(txt, len);
    int rc = 0;
    if (!st->saved || h != st->saved_hash) {
        rc = jn_broker_table_put(b, MQTT_SESSIONS_TABLE, key, klen, (const uint8_t *)txt, len, "application/json",
                                 NULL);
        if (rc < 0) {
            jn_warn("mqtt: %s: cannot save the session: %s", st->client_id, jn_strerror(rc));
        } else {
            st->saved = true;
            st->saved_hash = h;
        }
    }
    free(txt);
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
    jn__mqtt_will_free(st->will);
    st->will = NULL;
    if (st->saved)
        (void)jn__mqtt_state_save(st); /* deletes the saved copy */
    unlink_state(st);
    jn__mqtt_pending_drop(st, NULL);
    for (uint16_t i = 0; st->slots && i < st->cap; i++)
        jn__mqtt_slot_release(st, &st->slots[i]); /* their retained references */
    free(st->slots);
    free(st->marks);
    free(st->q2);
    if (st->client_id != (char *)(st + 1))
        free(st->client_id);
    jn_pool_free(&st->m->state_pool, st);
}

static mqtt_msub_t *msub_by_no(mqtt_state_t *st, json_int_t subno)
{
    jn_list_t *n;
    jn_list_foreach(n, &st->subs) {
        mqtt_msub_t *ms = jn_container_of(n, mqtt_msub_t, node);
        if ((json_int_t)ms->subno == subno && strncmp(ms->full, "$share/", 7) != 0)
            return ms;
    }
    return NULL;
}

/* The partition |p| of the stream named |name|, or NULL when gone. */
static jn_stream_t *stream_by_name(jn_mqtt_t *m, const char *name, json_int_t p)
{
    jn_stream_t *s = name ? jn_broker_stream_find(m->b, name, strlen(name)) : NULL;
    return s && p >= 0 && p < (json_int_t)jn_stream_partitions(s) ? s : NULL;
}

static void decode_subs(mqtt_state_t *st, const json_t *arr)
{
    size_t i;
    json_t *sj;
    json_array_foreach(arr, i, sj) {
        const char *full = json_string_value(json_object_get(sj, "f"));
        if (!full || st->nsubs >= MQTT_SUBS_MAX)
            continue;
        const char *filter = full;
        if (strncmp(full, "$share/", 7) == 0) {
            const char *slash = strchr(full + 7, '/');
            filter = slash ? slash + 1 : full;
        }
        mqtt_msub_t *ms = jn__mqtt_msub_new(st, full, strlen(full), (size_t)(filter - full));
        if (!ms)
            continue;
        ms->qos = (uint8_t)json_integer_value(json_object_get(sj, "q"));
        ms->no_local = json_is_true(json_object_get(sj, "nl"));
        ms->rap = json_is_true(json_object_get(sj, "rap"));
        ms->rh = (uint8_t)json_integer_value(json_object_get(sj, "rh"));
        ms->sub_id = (uint32_t)json_integer_value(json_object_get(sj, "id"));
        ms->subno = (uint32_t)json_integer_value(json_object_get(sj, "n"));
    }
}

/* The retained message that the saved in-flight entry |e| (a retained
 * one in state 0: [pid, qos, 0, subno, "", 0, 0, topic, hash]) names, when
 * the store still has it; NULL otherwise (replaced or cleared while the
 * server was down: the slot is dropped). */
static mqtt_retained_t *saved_retained(mqtt_state_t *st, const json_t *e, int pid)
{
    const char *topic = json_string_value(json_array_get(e, 7));
    const char *hex = json_string_value(json_array_get(e, 8));
    uint64_t h = 0;
    bool ok = topic && hex && strlen(hex) == 16;
    for (size_t i = 0; ok && i < 16; i++) {
        char c = hex[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        ok = d >= 0;
        h = h << 4 | (uint64_t)(d & 15);
    }
    mqtt_retained_t *r = ok ? jn__mqtt_retained_find(st->m, topic, strlen(topic)) : NULL;
    if (!r || r->hash != h) {
        jn_debug("mqtt: %s: retained in-flight packet %d to '%s' not restored: %s", st->client_id, pid,
                 topic ? topic : "?", ok ? "the message was replaced or cleared" : "bad entry");
        return NULL;
    }
    return r;
}

/* Restores the in-flight slots as stale ones and the marks. */
static int decode_inflight(mqtt_state_t *st, const json_t *inf, const json_t *mks)
{
    jn_mqtt_t *m = st->m;
    size_t i;
    json_t *e;
    if (json_array_size(inf) && jn__mqtt_slots_ensure(st) < 0)
        return JN_ENOMEM;
    json_array_foreach(inf, i, e) {
        json_int_t pid, qos, state, subno, part, off;
        const char *name;
        if (json_unpack(e, "[I,I,I,I,s,I,I]", &pid, &qos, &state, &subno, &name, &part, &off) < 0 || pid < 1 ||
            pid > 65535 || qos < 1 || qos > 2 || state < 0 || state > 1 || (state == 1 && qos != 2) || off < 0)
            continue;
        mqtt_msub_t *ms = msub_by_no(st, subno);
        /* A stream name, or "" for a retained message (past PUBREC it
         * needs none). */
        bool retained = *name == '\0';
        jn_stream_t *s = retained ? NULL : stream_by_name(m, name, part);
        mqtt_retained_t *r = NULL;
        if (retained && state == 0 && !(r = saved_retained(st, e, (int)pid)))
            continue;
        mqtt_slot_t *sl = &st->slots[pid % st->cap];
        if (!ms || (!retained && !s) || sl->pid || st->inflight >= st->cap) {
            jn_debug("mqtt: %s: in-flight packet %d not restored", st->client_id, (int)pid);
            continue;
        }
        memset(sl, 0, sizeof *sl);
        sl->pid = (uint16_t)pid;
        sl->qos = (uint8_t)qos;
        sl->state = (uint8_t)state;
        sl->stale = true;
        sl->msub = ms;
        sl->stream = s;
        sl->partition = s ? (uint32_t)part : 0;
        if (s)
            sl->offset = off;
        else
            sl->ret = r ? jn__mqtt_retained_ref(r) : NULL;
        st->inflight++;
        st->nstale++;
    }
    marks_t ml = {st->marks, st->nmarks, st->capmarks};
    json_array_foreach(mks, i, e) {
        json_int_t subno, part, upto;
        const char *name;
        if (json_unpack(e, "[I,s,I,I]", &subno, &name, &part, &upto) < 0 || upto < 0)
            continue;
        mqtt_msub_t *ms = msub_by_no(st, subno);
        jn_stream_t *s = stream_by_name(m, name, part);
        if (ms && s)
            (void)marks_raise(&ml, ms, s, (uint32_t)part, upto);
    }
    /* Every record waiting for PUBACK/PUBREC needs a mark to be resent. */
    for (uint16_t k = 0; st->slots && k < st->cap; k++) {
        const mqtt_slot_t *sl = &st->slots[k];
        if (sl->pid && sl->state == 0 && sl->stream)
            (void)marks_raise(&ml, sl->msub, sl->stream, sl->partition, sl->offset + 1);
    }
    st->marks = ml.v;
    st->nmarks = ml.n;
    st->capmarks = ml.cap;
    return 0;
}

static int decode_will(mqtt_state_t *st, json_t *wj)
{
    const char *topic;
    json_t *pj, *hj;
    json_int_t qos, delay;
    int retain;
    if (json_unpack(wj, "{s:s,s:o,s:I,s:b,s:I,s:o}", "t", &topic, "p", &pj, "q", &qos, "r", &retain, "d",
                    &delay, "h", &hj) < 0 ||
        !*topic || qos < 0 || qos > 2 || delay < 0 || delay > UINT32_MAX)
        return JN_EPROTO;
    mqtt_will_t *w = calloc(1, sizeof *w);
    if (!w)
        return JN_ENOMEM;
    jn_buf_init(&w->headers, 1u << 20);
    uint8_t *h = NULL;
    size_t hlen = 0;
    int rc = JN_ENOMEM;
    if (!(w->topic = strdup(topic)))
        goto fail;
    if ((rc = b64_take(pj, &w->payload, &w->payload_len)) < 0 || (rc = b64_take(hj, &h, &hlen)) < 0)
        goto fail;
    if (hlen && (rc = jn_buf_append(&w->headers, h, hlen)) < 0)
        goto fail;
    free(h);
    w->qos = (uint8_t)qos;
    w->retain = retain;
    w->delay = (uint32_t)delay;
    w->owner = st;
    jn__mqtt_will_free(st->will);
    st->will = w;
    uint32_t d = w->delay < st->expiry ? w->delay : st->expiry;
    w->at = st->offline_since + (int64_t)d * 1000;
    return 0;
fail:
    free(h);
    jn__mqtt_will_free(w);
    return rc;
}

int jn__mqtt_state_decode(mqtt_state_t *st, const char *txt, size_t len, int64_t now)
{
    jn_mqtt_t *m = st->m;
    json_t *j = json_loadb(txt, len, 0, NULL);
    int rc = JN_EPROTO;
    if (!json_is_object(j))
        goto done;
    st->version = (uint8_t)json_integer_value(json_object_get(j, "v"));
    json_int_t e = json_integer_value(json_object_get(j, "expiry"));
    st->expiry = e >= 0 && e <= UINT32_MAX ? (uint32_t)e : 1;
    if (st->expiry > m->cfg.session_expiry_max)
        st->expiry = m->cfg.session_expiry_max ? m->cfg.session_expiry_max : 1;
    st->next_subno = (uint32_t)json_integer_value(json_object_get(j, "next"));
    json_int_t pid = json_integer_value(json_object_get(j, "pid"));
    if (pid >= 1 && pid <= 65535)
        st->next_pid = (uint16_t)pid;
    json_int_t off = json_integer_value(json_object_get(j, "off"));
    st->offline_since = off > 0 ? off : now;
    decode_subs(st, json_object_get(j, "subs"));
    if ((rc = decode_inflight(st, json_object_get(j, "inf"), json_object_get(j, "mk"))) < 0)
        goto done;
    size_t i;
    json_t *q;
    uint16_t qcap = m->cfg.max_inflight;
    size_t nq = json_array_size(json_object_get(j, "q2"));
    if (nq && !(st->q2 = malloc((nq < qcap ? nq : qcap) * sizeof *st->q2))) {
        rc = JN_ENOMEM;
        goto done;
    }
    st->capq2 = (uint16_t)(nq < qcap ? nq : qcap);
    json_array_foreach(json_object_get(j, "q2"), i, q) {
        json_int_t v = json_integer_value(q);
        if (v >= 1 && v <= 65535 && st->nq2 < st->capq2)
            st->q2[st->nq2++] = (uint16_t)v;
    }
    json_t *wj = json_object_get(j, "will");
    int wrc = wj ? decode_will(st, wj) : 0;
    if (wrc < 0)
        jn_warn("mqtt: %s: saved will not restored: %s", st->client_id, jn_strerror(wrc));
    rc = 0;
done:
    json_decref(j);
    return rc;
}

static int load_key(const uint8_t *key, size_t klen, void *arg)
{
    jn_buf_t *keys = arg;
    if (jn_buf_put_be16(keys, (uint16_t)klen) < 0 || jn_buf_append(keys, key, klen) < 0)
        return JN_ENOMEM;
    return 0;
}

int jn__mqtt_states_load(jn_mqtt_t *m)
{
    jn_buf_t keys, val;
    jn_buf_init(&keys, 256u << 20);
    jn_buf_init(&val, 16u << 20);
    int64_t now = jn__mqtt_now(m);
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
        mqtt_state_t *st = jn__mqtt_state_new(m, k, kl);
        if (!st)
            continue;
        st->saved = true;
        st->saved_hash = jn_fnv1a(val.data, val.len);
        int drc = jn__mqtt_state_decode(st, (const char *)val.data, val.len, now);
        if (drc < 0) {
            jn_warn("mqtt: %.*s: saved session not restored: %s", (int)kl, k, jn_strerror(drc));
            if (drc != JN_EPROTO) { /* keep the saved copy and positions for the next start */
                st->saved = false;
                st->expiry = 0;
            }
            jn__mqtt_state_end(st); /* an unreadable copy is forgotten */
        }
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
    int rc = jn_subject_validate(w->topic, tlen);
    if (rc == 0)
        rc = jn__mqtt_publish_record(m, NULL, w->topic, tlen, w->payload, w->payload_len, w->qos, w->retain, h, nh,
                                     NULL);
    if (rc < 0)
        jn_debug("mqtt: will to '%s' not published: %s", w->topic, jn_strerror(rc));
    mqtt_state_t *st = w->owner;
    if (st && st->will == w && st->saved) {
        /* Gone from the saved copy, so that a restart does not send it
         * again. */
        st->will = NULL;
        (void)jn__mqtt_state_save(st);
        st->will = w;
    }
}
