/* sub.c - subscriptions: cursors into the log, live delivery, catch-up.
 *
 * A subscription has one cursor per partition of every stream its filter
 * can match. A cursor is either caught up - it stands at the log end and is
 * offered each record as it is appended (publish finds it through the
 * filter trie) - or behind, holding the next offset to read. Records of
 * subjects the filter does not match never touch a caught-up cursor, which
 * is why caught up is a state rather than an offset.
 *
 * A cursor falls behind when its sink refuses a record (JN_EAGAIN) or the
 * subscription is paused: it then holds that record's offset. Subscriptions
 * with a cursor behind and not stalled sit on the broker's ready list; an
 * idle handle reads for them from the log, a bounded number of bytes per
 * subscription per loop iteration, round robin. When a cursor reaches the
 * end offset it becomes caught up again. All of this runs on the loop
 * thread, so between reaching the end and the next append nothing can slip
 * in: no gap, no duplicate.
 *
 * Memory: an idle device keeps one subscription for hours, so its objects
 * come from the broker's pools (pool.h), not the malloc heap: the
 * jn_sub_t with its filter inline (b->sub_pool), and only once a covered
 * stream exists its cursor state and per-stream cursors (b->cur_pool).
 */
#include "broker_int.h"

#include <stdlib.h>
#include <string.h>

#include "../common/log.h"

/* ---- cursors ---- */

/* Objects of b->cur_pool: a subscription's jn_subrun_t and its
 * jn_subpos_t, which live as long as the subscription. */
#define JN_CUR_POOL_OBJ 64
_Static_assert(sizeof(jn_subrun_t) <= JN_CUR_POOL_OBJ, "jn_subrun_t fits the cursor pool");
_Static_assert(sizeof(jn_subpos_t) <= JN_CUR_POOL_OBJ, "jn_subpos_t fits the cursor pool");

static jn_subpos_t *find_pos(const jn_sub_t *sub, const jn_stream_t *s, size_t *at)
{
    const jn_subrun_t *r = sub->run;
    size_t lo = 0, hi = r ? r->npos : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t id = r->pos[mid]->s->id;
        if (id == s->id) {
            if (at)
                *at = mid;
            return r->pos[mid];
        }
        if (id < s->id)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (at)
        *at = lo;
    return NULL;
}

static jn_cursor_t *find_cursor(const jn_sub_t *sub, const jn_stream_t *s, uint32_t p)
{
    jn_subpos_t *sp = find_pos(sub, s, NULL);
    return sp && p < sp->nparts ? &sp->cur[p] : NULL;
}

static void set_behind(jn_sub_t *sub, jn_cursor_t *cur, int64_t next)
{
    if (!cur->behind) {
        cur->behind = true;
        sub->run->nbehind++;
    }
    cur->next = next;
}

static void set_caught_up(jn_sub_t *sub, jn_cursor_t *cur)
{
    if (cur->behind) {
        cur->behind = false;
        sub->run->nbehind--;
    }
}

static void update_ready(jn_sub_t *sub)
{
    bool want = !sub->closed && !sub->stalled && sub->run && sub->run->nbehind > 0;
    if (want && !jn_list_linked(&sub->ready)) {
        jn_list_insert_tail(&sub->b->ready, &sub->ready);
        jn__broker_kick(sub->b);
    } else if (!want && jn_list_linked(&sub->ready)) {
        jn_list_remove(&sub->ready);
    }
}

static int64_t clamp(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Positions a new cursor per the subscription's options |o| (only while
 * subscribing), or, when |o| is NULL, at the start of the log: streams and
 * partitions that appeared after the subscription. */
static void cursor_start(jn_sub_t *sub, const jn_sub_opts_t *o, jn_stream_t *s, uint32_t p, jn_cursor_t *cur)
{
    jn_plog_t *log = s->parts[p]->log;
    int64_t start = jn_plog_start_offset(log), end = jn_plog_end_offset(log), at = end;
    cur->behind = false;
    cur->next = 0;
    if (!o) {
        at = start;
    } else {
        switch (o->start) {
        case JN_START_LIVE: at = end; break;
        case JN_START_EARLIEST: at = start; break;
        case JN_START_OFFSET: at = clamp(o->start_value, start, end); break;
        case JN_START_TIME: at = clamp(jn_plog_offset_for_time(log, o->start_value), start, end); break;
        case JN_START_GROUP: {
            int64_t off;
            if (jn_broker_group_fetch(sub->b, o->group, s, p, &off) == 0)
                at = clamp(off, start, end);
            else
                at = o->group_default == JN_START_EARLIEST ? start : end;
            break;
        }
        }
    }
    if (at < end)
        set_behind(sub, cur, at);
}

/* Gives |sub| cursors in |s| for partitions it has none in yet, placed per
 * |o| while subscribing, at the log start afterwards (|o| NULL). */
static int attach(jn_sub_t *sub, jn_stream_t *s, const jn_sub_opts_t *o)
{
    size_t at;
    jn_subpos_t *sp = find_pos(sub, s, &at);
    if (!sp) {
        jn_pool_t *pool = &sub->b->cur_pool;
        if (pool->size == 0)
            jn_pool_init(pool, JN_CUR_POOL_OBJ);
        if (!sub->run) {
            if (!(sub->run = jn_pool_calloc(pool)))
                return JN_ENOMEM;
            sub->run->pos = &sub->run->pos1;
            sub->run->cappos = 1;
        }
        jn_subrun_t *r = sub->run;
        if (r->npos == r->cappos) {
            uint32_t ncap = r->cappos == 1 ? 4 : r->cappos * 2;
            jn_subpos_t **np = r->pos == &r->pos1 ? malloc(ncap * sizeof *np) : realloc(r->pos, ncap * sizeof *np);
            if (!np)
                return JN_ENOMEM;
            if (r->pos == &r->pos1)
                np[0] = r->pos1;
            r->pos = np;
            r->cappos = ncap;
        }
        sp = jn_pool_calloc(pool);
        if (!sp)
            return JN_ENOMEM;
        sp->sub = sub;
        sp->s = s;
        memmove(&r->pos[at + 1], &r->pos[at], (r->npos - at) * sizeof *r->pos);
        r->pos[at] = sp;
        r->npos++;
        jn_list_insert_tail(&s->subs, &sp->snode);
    }
    if (sp->nparts >= s->nparts)
        return 0;
    jn_cursor_t *nc;
    if (s->nparts == 1)
        nc = &sp->one; /* nparts was 0 */
    else if (!sp->cur || sp->cur == &sp->one)
        nc = malloc(s->nparts * sizeof *nc);
    else
        nc = realloc(sp->cur, s->nparts * sizeof *nc);
    if (!nc)
        return JN_ENOMEM;
    if (sp->cur == &sp->one && nc != &sp->one)
        nc[0] = sp->one;
    sp->cur = nc;
    for (uint32_t p = sp->nparts; p < s->nparts; p++)
        cursor_start(sub, sp->nparts > 0 ? NULL : o, s, p, &nc[p]);
    sp->nparts = s->nparts;
    return 0;
}

static void detach(jn_sub_t *sub, jn_subpos_t *sp)
{
    size_t at;
    jn_subrun_t *r = sub->run;
    if (find_pos(sub, sp->s, &at) == sp) {
        memmove(&r->pos[at], &r->pos[at + 1], (r->npos - at - 1) * sizeof *r->pos);
        r->npos--;
    }
    for (uint32_t p = 0; p < sp->nparts; p++)
        set_caught_up(sub, &sp->cur[p]);
    jn_list_remove(&sp->snode);
    if (sp->cur != &sp->one)
        free(sp->cur);
    jn_pool_free(&sub->b->cur_pool, sp);
}

/* Could a subject of |s| match the filter? Over-approximates: records are
 * matched against the filter one by one anyway. Internal streams are
 * covered only for subscriptions with internal access: a wildcard first
 * level stops at them as MQTT's '#' stops at "$" topics (without a cursor
 * in a stream a subscription is offered nothing from it, live or
 * catch-up), and a literal "__" first level is refused at subscribe. */
static bool covers(const jn_broker_t *b, const jn_sub_t *sub, const jn_stream_t *s)
{
    if (!sub->internal && jn_stream_is_internal(s))
        return false;
    const char *slash = memchr(sub->filter, '/', sub->flen);
    size_t l1 = slash ? (size_t)(slash - sub->filter) : sub->flen;
    if (l1 == 1 && (sub->filter[0] == '+' || sub->filter[0] == '#'))
        return true; /* stream names never start with '$' */
    if (l1 == s->name_len && memcmp(sub->filter, s->name, l1) == 0)
        return true;
    for (size_t i = 0; i < b->nmappings; i++) {
        const jn_mapping_t *m = &b->mappings[i];
        if (strcmp(m->stream, s->name) == 0 &&
            jn_filter_overlaps(m->filter, strlen(m->filter), sub->filter, sub->flen))
            return true;
    }
    return false;
}

/* ---- lifecycle ---- */

/* Pool object size for a subscription: the struct and a filter of up to
 * 24 bytes (a device's own topic); longer filters are malloc'd. */
#define JN_SUB_POOL_OBJ 96

static void sub_free(jn_sub_t *sub)
{
    jn_subrun_t *r = sub->run;
    if (r) {
        while (r->npos)
            detach(sub, r->pos[r->npos - 1]);
        if (r->pos != &r->pos1)
            free(r->pos);
        jn_pool_free(&sub->b->cur_pool, r);
    }
    if (sub->pooled)
        jn_pool_free(&sub->b->sub_pool, sub);
    else
        free(sub);
}

int jn_broker_subscribe(jn_broker_t *b, const jn_sub_opts_t *o, jn_sub_t **out)
{
    if (!b || !o || !o->filter || !o->deliver || !out)
        return JN_EINVAL;
    size_t flen = strlen(o->filter);
    if (jn_filter_validate(o->filter, flen) < 0)
        return JN_EINVAL;
    if ((int)o->start < JN_START_LIVE || o->start > JN_START_GROUP)
        return JN_EINVAL;
    if (!o->internal && flen >= 2 && o->filter[0] == '_' && o->filter[1] == '_')
        return JN_EINVAL; /* names an internal stream: doors' plumbing only */
    if (o->start == JN_START_GROUP) {
        if (!o->group || !o->group[0] || strlen(o->group) > JN_STREAM_NAME_MAX)
            return JN_EINVAL;
        if (o->group_default != JN_START_LIVE && o->group_default != JN_START_EARLIEST)
            return JN_EINVAL;
    }
    int rc = JN_ENOMEM;
    size_t need = offsetof(jn_sub_t, filter) + flen + 1;
    if (b->sub_pool.size == 0)
        jn_pool_init(&b->sub_pool, JN_SUB_POOL_OBJ);
    bool pooled = need <= b->sub_pool.size;
    jn_sub_t *sub = pooled ? jn_pool_calloc(&b->sub_pool) : calloc(1, need);
    if (!sub)
        return JN_ENOMEM;
    sub->pooled = pooled;
    sub->b = b;
    jn_list_init(&sub->node);
    jn_list_init(&sub->ready);
    memcpy(sub->filter, o->filter, flen + 1);
    sub->flen = (uint16_t)flen; /* validated: at most JN_SUBJECT_MAX */
    sub->lossy = o->lossy;
    sub->internal = o->internal;
    sub->deliver = o->deliver;
    sub->arg = o->arg;

    const char *slash = memchr(sub->filter, '/', flen);
    size_t l1 = slash ? (size_t)(slash - sub->filter) : flen;
    bool literal = !(l1 == 1 && (sub->filter[0] == '+' || sub->filter[0] == '#'));
    if (literal && b->nmappings == 0) {
        jn_stream_t *s = jn_broker_stream_find(b, sub->filter, l1);
        if (s && covers(b, sub, s) && (rc = attach(sub, s, o)) < 0)
            goto fail;
    } else {
        for (jn_stream_t *s = jn_broker_stream_next(b, NULL); s; s = jn_broker_stream_next(b, s)) {
            if (covers(b, sub, s) && (rc = attach(sub, s, o)) < 0)
                goto fail;
        }
    }
    rc = jn_trie_add(b->trie, sub->filter, flen, sub);
    if (rc < 0)
        goto fail;
    jn_list_insert_tail(&b->subs, &sub->node);
    /* Catch-up starts from the idle handle, on a later loop iteration. */
    update_ready(sub);
    *out = sub;
    return 0;
fail:
    sub_free(sub);
    return rc;
}

void jn_sub_close(jn_sub_t *sub)
{
    if (!sub || sub->closed)
        return;
    jn_broker_t *b = sub->b;
    (void)jn_trie_remove(b->trie, sub->filter, sub->flen, sub);
    sub->closed = true;
    update_ready(sub);
    jn_list_remove(&sub->node);
    if (b->busy > 0)
        jn_list_insert_tail(&b->zombies, &sub->node); /* freed when the broker stops iterating */
    else
        sub_free(sub);
}

void jn__sub_free_zombies(jn_broker_t *b)
{
    if (b->busy > 0)
        return;
    while (!jn_list_empty(&b->zombies)) {
        jn_sub_t *sub = jn_container_of(b->zombies.next, jn_sub_t, node);
        jn_list_remove(&sub->node);
        sub_free(sub);
    }
}

void jn__sub_close_all(jn_broker_t *b)
{
    b->busy = 0;
    while (!jn_list_empty(&b->subs)) {
        jn_sub_t *sub = jn_container_of(b->subs.next, jn_sub_t, node);
        jn_sub_close(sub);
    }
    jn__sub_free_zombies(b);
    /* Empty now: every subscription was freed. Zeroed so that a later
     * subscribe sets them up again. */
    if (b->sub_pool.size)
        jn_pool_destroy(&b->sub_pool);
    if (b->cur_pool.size)
        jn_pool_destroy(&b->cur_pool);
    memset(&b->sub_pool, 0, sizeof b->sub_pool);
    memset(&b->cur_pool, 0, sizeof b->cur_pool);
}

void jn_sub_resume(jn_sub_t *sub)
{
    if (!sub || sub->closed)
        return;
    sub->stalled = false;
    update_ready(sub);
}

void jn_sub_pause(jn_sub_t *sub)
{
    if (!sub || sub->closed)
        return;
    sub->stalled = true;
    update_ready(sub);
}

uint64_t jn_sub_dropped(const jn_sub_t *sub) { return sub->run ? sub->run->dropped : 0; }

int64_t jn_sub_position(const jn_sub_t *sub, const jn_stream_t *s, uint32_t partition)
{
    const jn_cursor_t *cur = find_cursor(sub, s, partition);
    if (!cur)
        return JN_ENOENT;
    return cur->behind ? cur->next : jn_plog_end_offset(s->parts[partition]->log);
}

int64_t jn_sub_lag(const jn_sub_t *sub)
{
    int64_t lag = 0;
    const jn_subrun_t *r = sub->run;
    for (size_t i = 0; r && i < r->npos && r->nbehind; i++) {
        const jn_subpos_t *sp = r->pos[i];
        for (uint32_t p = 0; p < sp->nparts; p++) {
            if (sp->cur[p].behind) {
                int64_t d = jn_plog_end_offset(sp->s->parts[p]->log) - sp->cur[p].next;
                lag += d > 0 ? d : 0;
            }
        }
    }
    return lag;
}

/* ---- streams appearing and disappearing ---- */

int jn__sub_stream_added(jn_broker_t *b, jn_stream_t *s, uint32_t old_parts)
{
    (void)old_parts; /* attach() knows which partitions are new to each sub */
    int ret = 0;
    jn_list_t *n;
    jn_list_foreach(n, &b->subs) {
        jn_sub_t *sub = jn_container_of(n, jn_sub_t, node);
        if (!covers(b, sub, s))
            continue;
        int rc = attach(sub, s, NULL);
        if (rc < 0)
            ret = rc;
        update_ready(sub);
    }
    return ret;
}

void jn__sub_stream_removed(jn_broker_t *b, jn_stream_t *s)
{
    (void)b;
    while (!jn_list_empty(&s->subs)) {
        jn_subpos_t *sp = jn_container_of(s->subs.next, jn_subpos_t, snode);
        jn_sub_t *sub = sp->sub;
        detach(sub, sp);
        if (!sub->closed)
            update_ready(sub);
    }
}

/* ---- live delivery ---- */

static void collect_cb(void *value, void *arg)
{
    jn_broker_t *b = arg;
    if (b->nmatches == b->capmatches) {
        size_t ncap = b->capmatches ? b->capmatches * 2 : 16;
        jn_sub_t **nm = realloc(b->matches, ncap * sizeof *nm);
        if (!nm) {
            jn_error("broker: out of memory matching subscriptions; a subscription misses a record");
            return;
        }
        b->matches = nm;
        b->capmatches = ncap;
    }
    b->matches[b->nmatches++] = value;
}

/* The subscriptions matching one subject, taken out of the broker while
 * they are offered records: a delivery may publish (an AMQP forwarder
 * enqueues into a queue's stream), and that publish matches again with the
 * broker's array. Taking it keeps the outer iteration intact. */
typedef struct match_set {
    jn_sub_t **v;
    size_t n, cap;
} match_set_t;

static void match_collect(jn_broker_t *b, const char *subject, size_t len, match_set_t *m)
{
    b->nmatches = 0;
    jn_trie_match(b->trie, subject, len, collect_cb, b);
    m->v = b->matches;
    m->n = b->nmatches;
    m->cap = b->capmatches;
    b->matches = NULL;
    b->nmatches = b->capmatches = 0;
}

/* Gives the array back for reuse (freeing one a nested match allocated). */
static void match_release(jn_broker_t *b, match_set_t *m)
{
    free(b->matches);
    b->matches = m->v;
    b->capmatches = m->cap;
    b->nmatches = 0;
    m->v = NULL;
    m->n = m->cap = 0;
}

static void offer_one(jn_broker_t *b, jn_sub_t *sub, jn_stream_t *s, uint32_t p, const jn_record_t *rec,
                      const char *subj, size_t slen)
{
    if (sub->closed)
        return;
    jn_cursor_t *cur = find_cursor(sub, s, p);
    if (!cur || cur->behind)
        return; /* behind: catch-up will read this record from the log */
    int rc = JN_EAGAIN;
    if (!sub->stalled) {
        jn_delivery_t d = {s, p, rec, subj, slen};
        rc = sub->deliver(sub, &d, sub->arg);
        if (rc == 0 || sub->closed)
            return;
    }
    if (sub->lossy) {
        sub->run->dropped++;
        jn_counter_inc(b->m_dropped);
        return;
    }
    cur = find_cursor(sub, s, p);
    if (!cur)
        return;
    set_behind(sub, cur, rec->offset);
    sub->stalled = true;
    update_ready(sub);
}

void jn__sub_offer_batch(jn_broker_t *b, jn_stream_t *s, uint32_t p, const uint8_t *batch, size_t len,
                         int64_t base, const char *subject, size_t subject_len)
{
    jn_batch_iter_t it;
    /* Local: a delivery may publish, which offers a batch again. Only
     * compressed batches allocate it. */
    jn_buf_t z;
    jn_buf_init(&z, JN_BATCH_MAX_DECOMPRESSED);
    int rc = jn_batch_iter_init_scratch(&it, batch, len, false, &z);
    if (rc < 0) {
        jn_warn("broker: %s/%u: unreadable batch at %lld: %s", s->name, p, (long long)base, jn_strerror(rc));
        jn_buf_free(&z);
        return;
    }
    const char *last = NULL;
    size_t last_len = 0;
    match_set_t m = {NULL, 0, 0};
    if (subject) {
        match_collect(b, subject, subject_len, &m);
        last = subject;
        last_len = subject_len;
    }
    jn_record_t rec;
    while ((rc = jn_batch_iter_next(&it, &rec)) == 1) {
        rec.offset = base + (rec.offset - it.info.base_offset);
        const char *subj = subject;
        size_t slen = subject_len;
        if (!subject) {
            subj = jn_record_subject(&rec, s->name, s->name_len, &slen);
            if (!last || slen != last_len || memcmp(subj, last, slen) != 0) {
                if (last)
                    match_release(b, &m);
                match_collect(b, subj, slen, &m);
                last = subj;
                last_len = slen;
            }
        }
        for (size_t i = 0; i < m.n; i++)
            offer_one(b, m.v[i], s, p, &rec, subj, slen);
    }
    if (last)
        match_release(b, &m);
    if (rc < 0)
        jn_warn("broker: %s/%u: malformed record in batch at %lld", s->name, p, (long long)base);
    jn_buf_free(&z);
}

/* The empty field of the log: a non-null pointer with length 0. */
static const uint8_t empty_field[1];

static const uint8_t *field_as_stored(const uint8_t *data, int32_t len)
{
    if (len == -1)
        return NULL;
    return len == 0 && !data ? empty_field : data;
}

/* Does any header need rewriting to look as decoded from the log? */
static bool headers_need_copy(const jn_record_t *r)
{
    for (uint32_t i = 0; i < r->header_count; i++) {
        const jn_header_t *h = &r->headers[i];
        if ((h->key_len == 0 && !h->key) || h->value != field_as_stored(h->value, h->value_len))
            return true;
    }
    return false;
}

void jn__sub_offer_records(jn_broker_t *b, jn_stream_t *s, uint32_t p, const jn_record_t *recs, size_t n,
                           int64_t base, int64_t now, const char *subject, size_t subject_len,
                           bool add_subject)
{
    /* Local: a delivery may publish, which offers records again. */
    jn_header_t hdrs[JN_BATCH_MAX_HEADERS + 1];
    match_set_t m;
    match_collect(b, subject, subject_len, &m);
    if (m.n == 0) {
        match_release(b, &m);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        jn_record_t rec = recs[i];
        rec.offset = base + (int64_t)i;
        if (rec.timestamp == 0)
            rec.timestamp = now;
        rec.key = field_as_stored(rec.key, rec.key_len);
        rec.value = field_as_stored(rec.value, rec.value_len);
        if (add_subject || (rec.header_count && headers_need_copy(&rec))) {
            /* The publish checked header_count against JN_BATCH_MAX_HEADERS. */
            uint32_t k = 0;
            if (add_subject) {
                hdrs[0].key = (const uint8_t *)JN_SUBJECT_HEADER;
                hdrs[0].key_len = sizeof JN_SUBJECT_HEADER - 1;
                hdrs[0].value = (const uint8_t *)subject;
                hdrs[0].value_len = (int32_t)subject_len;
                k = 1;
            }
            for (uint32_t j = 0; j < rec.header_count; j++, k++) {
                const jn_header_t *h = &rec.headers[j];
                hdrs[k].key = h->key_len == 0 && !h->key ? empty_field : h->key;
                hdrs[k].key_len = h->key_len;
                hdrs[k].value = field_as_stored(h->value, h->value_len);
                hdrs[k].value_len = h->value_len;
            }
            rec.headers = hdrs;
            rec.header_count = k;
        }
        for (size_t k = 0; k < m.n; k++)
            offer_one(b, m.v[k], s, p, &rec, subject, subject_len);
    }
    match_release(b, &m);
}

/* ---- catch-up ---- */

/* Reads for one behind cursor, at most about |budget| bytes. Returns the
 * bytes read. Stops early when the sink refuses or pauses. */
static size_t catchup_cursor(jn_broker_t *b, jn_sub_t *sub, jn_subpos_t *sp, uint32_t p, size_t budget)
{
    jn_cursor_t *cur = &sp->cur[p];
    jn_stream_t *s = sp->s;
    jn_plog_t *log = s->parts[p]->log;
    int64_t end = jn_plog_end_offset(log);
    if (cur->next >= end) {
        set_caught_up(sub, cur);
        return 0;
    }
    jn_buf_reset(&b->rbuf);
    int n = jn_plog_read(log, cur->next, budget, &b->rbuf);
    if (n == JN_ERANGE) {
        int64_t start = jn_plog_start_offset(log);
        if (cur->next < start) {
            /* Retention deleted what the cursor had not read yet. */
            sub->run->skipped += (uint64_t)(start - cur->next);
            jn_debug("broker: subscription %s skipped %lld records of %s/%u (retention)", sub->filter,
                     (long long)(start - cur->next), s->name, p);
            cur->next = start;
        } else {
            cur->next = end;
        }
        if (cur->next >= end)
            set_caught_up(sub, cur);
        return 1;
    }
    if (n < 0) {
        jn_warn("broker: subscription %s: read %s/%u at %lld: %s; waiting for resume", sub->filter, s->name, p,
                (long long)cur->next, jn_strerror(n));
        sub->stalled = true;
        return 0;
    }
    if (n == 0) {
        set_caught_up(sub, cur);
        return 0;
    }
    size_t pos = 0;
    while (pos < b->rbuf.len) {
        const uint8_t *bp = b->rbuf.data + pos;
        jn_batch_info_t bi;
        int sz = jn_batch_parse(bp, b->rbuf.len - pos, INT32_MAX, &bi);
        if (sz < 0) {
            jn_warn("broker: %s/%u: bad batch near %lld; subscription %s waits for resume", s->name, p,
                    (long long)cur->next, sub->filter);
            sub->stalled = true;
            return (size_t)n;
        }
        pos += (size_t)sz;
        int64_t last = bi.base_offset + bi.last_offset_delta + 1;
        if (last <= cur->next)
            continue;
        jn_batch_iter_t it;
        int rc = jn_batch_iter_init_scratch(&it, bp, (size_t)sz, false, &b->zbuf);
        if (rc < 0) {
            jn_debug("broker: %s/%u: batch at %lld skipped for subscribers: %s", s->name, p,
                     (long long)bi.base_offset, jn_strerror(rc));
            cur->next = last;
            continue;
        }
        jn_record_t rec;
        while ((rc = jn_batch_iter_next(&it, &rec)) == 1) {
            if (rec.offset < cur->next)
                continue;
            size_t slen;
            const char *subj = jn_record_subject(&rec, s->name, s->name_len, &slen);
            if (jn_filter_match(sub->filter, sub->flen, subj, slen)) {
                jn_delivery_t d = {s, p, &rec, subj, slen};
                int drc = sub->deliver(sub, &d, sub->arg);
                if (sub->closed)
                    return (size_t)n;
                if (drc != 0) {
                    if (!sub->lossy) {
                        sub->stalled = true;
                        return (size_t)n;
                    }
                    sub->run->dropped++;
                    jn_counter_inc(b->m_dropped);
                }
            }
            cur->next = rec.offset + 1;
            if (sub->stalled) /* paused from inside the callback */
                return (size_t)n;
        }
        if (rc < 0)
            jn_warn("broker: %s/%u: malformed record in batch at %lld; skipped", s->name, p,
                    (long long)bi.base_offset);
        if (last > cur->next)
            cur->next = last; /* control records, compacted-away offsets */
    }
    if (cur->next >= end)
        set_caught_up(sub, cur);
    return (size_t)n;
}

/* First catch-up read of a subscription, and the size it returns to when
 * its sink refuses: a slow sink takes little per turn, and reading (and
 * faulting in) catchup_batch_bytes for each of many lagging subscriptions
 * only to drop most of it dominated the loop. */
#define CATCHUP_MIN_BYTES (16 * 1024)

/* One turn for one subscription: round robin over its cursors, within
 * its current read size, which doubles up to catchup_batch_bytes while the
 * sink takes all that was read. */
static void catchup_sub(jn_broker_t *b, jn_sub_t *sub)
{
    jn_subrun_t *r = sub->run; /* on the ready list: it has cursors */
    size_t max = b->cfg.catchup_batch_bytes;
    size_t cb = r->catchup_bytes < CATCHUP_MIN_BYTES ? CATCHUP_MIN_BYTES : r->catchup_bytes;
    size_t budget = cb < max ? cb : max, spent = 0;
    size_t total = 0;
    for (size_t i = 0; i < r->npos; i++)
        total += r->pos[i]->nparts;
    size_t pi = r->npos ? r->rr_pos % r->npos : 0;
    uint32_t pp = r->rr_part;
    for (size_t k = 0; k < total; k++) {
        if (pp >= r->pos[pi]->nparts) {
            pp = 0;
            pi = (pi + 1) % r->npos;
        }
        jn_subpos_t *sp = r->pos[pi];
        if (sp->cur[pp].behind)
            spent += catchup_cursor(b, sub, sp, pp, budget - spent);
        pp++;
        if (sub->closed || sub->stalled || !r->nbehind || spent >= budget)
            break;
    }
    r->rr_pos = (uint32_t)pi;
    r->rr_part = pp;
    if (sub->stalled)
        cb = CATCHUP_MIN_BYTES;
    else if (spent >= budget && cb < max)
        cb = cb > max / 2 ? max : cb * 2;
    r->catchup_bytes = cb > UINT32_MAX ? UINT32_MAX : (uint32_t)cb;
}

bool jn__sub_catchup(jn_broker_t *b)
{
    /* A marker at the tail bounds this round: subscriptions re-queued
     * during it go after the marker and wait for the next iteration. */
    jn_list_t marker;
    jn_list_insert_tail(&b->ready, &marker);
    b->busy++;
    while (b->ready.next != &marker) {
        jn_sub_t *sub = jn_container_of(b->ready.next, jn_sub_t, ready);
        jn_list_remove(&sub->ready);
        catchup_sub(b, sub);
        if (!sub->closed)
            update_ready(sub);
    }
    jn_list_remove(&marker);
    b->busy--;
    jn__sub_free_zombies(b);
    return !jn_list_empty(&b->ready);
}
