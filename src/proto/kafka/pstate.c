/* pstate.c - idempotent producers' sequence state of one Kafka partition,
 * its snapshot and its rebuild after a restart (contracts in pstate.h).
 *
 * Why a snapshot plus a scan: the batch headers in the log carry every
 * fact the state holds (producer id, epoch, base sequence, last offset
 * delta, base offset), so the log alone could rebuild it, but only by
 * reading all of it. A snapshot taken when a segment rolls bounds the read
 * to the newest segment, as in Kafka. A snapshot is only a cache of what
 * the log says: whenever it cannot be shown to describe this very log (its
 * anchor batch is gone or different), it is dropped and the log is scanned.
 *
 * SNAPSHOT FORMAT: see jn_kps_encode in pstate.h. Validity rules: the
 * trailing CRC-32C covers the whole encoding; counts must fit the length
 * exactly; epochs and producer ids are >= 0; n <= JN_KPS_CACHE.
 */
#include "pstate.h"

#include <stdlib.h>
#include <string.h>

#include "../../common/crc32c.h"
#include "codec.h"

#define SNAP_MAGIC "JKPS"
#define SNAP_VERSION 1
#define SNAP_HEADER 30
#define SNAP_PRODUCER 23 /* without its batches */
#define SNAP_BATCH 16

/* ---- the table ---- */

static size_t slot_of(const jn_kps_t *ps, int64_t pid)
{
    uint64_t h = (uint64_t)pid * 0x9E3779B97F4A7C15ull;
    return (size_t)(h ^ (h >> 29)) & (ps->cap - 1);
}

void jn_kps_init(jn_kps_t *ps, size_t *total, size_t max)
{
    memset(ps, 0, sizeof *ps);
    ps->total = total;
    ps->max = max;
}

void jn_kps_clear(jn_kps_t *ps)
{
    if (ps->total)
        *ps->total -= ps->n;
    free(ps->slots);
    ps->slots = NULL;
    ps->cap = ps->n = 0;
}

void jn_kps_free(jn_kps_t *ps)
{
    jn_kps_clear(ps);
}

bool jn_kps_tracked(const jn_batch_info_t *bi)
{
    return bi->producer_id >= 0 && bi->base_sequence >= 0 &&
           !(bi->attributes & (JN_BATCH_TRANSACTIONAL | JN_BATCH_CONTROL));
}

static jn_kps_producer_t *find_slot(const jn_kps_t *ps, int64_t pid)
{
    if (ps->cap == 0)
        return NULL;
    for (size_t i = slot_of(ps, pid);; i = (i + 1) & (ps->cap - 1)) {
        jn_kps_producer_t *p = &ps->slots[i];
        if (p->pid == pid || p->pid < 0)
            return p;
    }
}

const jn_kps_producer_t *jn_kps_find(const jn_kps_t *ps, int64_t pid)
{
    const jn_kps_producer_t *p = find_slot(ps, pid);
    return p && p->pid == pid ? p : NULL;
}

size_t jn_kps_count(const jn_kps_t *ps)
{
    return ps->n;
}

/* Moves the producers into a table of |cap| slots (a power of two larger
 * than n): growth, and removal (expiry rebuilds rather than deletes). */
static int rehash(jn_kps_t *ps, size_t cap, int64_t drop_before)
{
    jn_kps_producer_t *slots = malloc(cap * sizeof *slots);
    if (!slots)
        return JN_ENOMEM;
    for (size_t i = 0; i < cap; i++)
        slots[i].pid = -1;
    jn_kps_producer_t *old = ps->slots;
    size_t ocap = ps->cap, kept = 0;
    ps->slots = slots;
    ps->cap = cap;
    for (size_t i = 0; i < ocap; i++) {
        if (old[i].pid < 0 || old[i].last_ts < drop_before)
            continue;
        *find_slot(ps, old[i].pid) = old[i];
        kept++;
    }
    free(old);
    if (ps->total)
        *ps->total -= ps->n - kept;
    ps->n = kept;
    return 0;
}

/* The slot for a new producer |pid|, or NULL with *rc set. */
static jn_kps_producer_t *add(jn_kps_t *ps, int64_t pid, int *rc)
{
    size_t used = ps->total ? *ps->total : ps->n;
    if (used >= ps->max) {
        *rc = JN_ETOOBIG;
        return NULL;
    }
    if ((ps->n + 1) * 2 > ps->cap) {
        *rc = rehash(ps, ps->cap ? ps->cap * 2 : 8, INT64_MIN);
        if (*rc < 0)
            return NULL;
    }
    jn_kps_producer_t *p = find_slot(ps, pid);
    if (!p) { /* not reached: the table has room now */
        *rc = JN_ENOMEM;
        return NULL;
    }
    memset(p, 0, sizeof *p);
    p->pid = pid;
    p->epoch = -1;
    p->last_seq = -1;
    ps->n++;
    if (ps->total)
        (*ps->total)++;
    return p;
}

/* ---- checks ---- */

int jn_kps_check(const jn_kps_t *ps, const jn_batch_info_t *bi, int64_t *dup_offset)
{
    const jn_kps_producer_t *e = jn_kps_find(ps, bi->producer_id);
    if (!e || e->epoch < 0)
        return 0; /* first batch seen, or state expired: accept */
    if (bi->producer_epoch < e->epoch)
        return -JN_KERR_INVALID_PRODUCER_EPOCH;
    if (bi->producer_epoch > e->epoch)
        return bi->base_sequence == 0 ? 0 : -JN_KERR_OUT_OF_ORDER_SEQUENCE_NUMBER;
    int32_t last = bi->base_sequence + bi->last_offset_delta;
    for (int i = 0; i < e->n; i++) {
        if (e->batches[i].first_seq == bi->base_sequence && e->batches[i].last_seq == last) {
            *dup_offset = e->batches[i].base_offset;
            return 1;
        }
    }
    int32_t expected = e->last_seq == INT32_MAX ? 0 : e->last_seq + 1;
    if (bi->base_sequence == expected)
        return 0;
    if (bi->base_sequence < expected && bi->base_sequence >= 0)
        return -JN_KERR_DUPLICATE_SEQUENCE_NUMBER;
    return -JN_KERR_OUT_OF_ORDER_SEQUENCE_NUMBER;
}

int jn_kps_record(jn_kps_t *ps, const jn_batch_info_t *bi, int64_t base_offset, int64_t ts_ms)
{
    jn_kps_producer_t *e = find_slot(ps, bi->producer_id);
    if (!e || e->pid != bi->producer_id) {
        int rc = 0;
        e = add(ps, bi->producer_id, &rc);
        if (!e)
            return rc;
    }
    if (bi->producer_epoch != e->epoch) {
        e->epoch = bi->producer_epoch;
        e->n = e->head = 0;
    }
    jn_kps_batch_t *b = &e->batches[e->head];
    b->first_seq = bi->base_sequence;
    b->last_seq = bi->base_sequence + bi->last_offset_delta;
    b->base_offset = base_offset;
    e->head = (uint8_t)((e->head + 1) % JN_KPS_CACHE);
    if (e->n < JN_KPS_CACHE)
        e->n++;
    e->last_seq = b->last_seq;
    e->last_ts = ts_ms;
    return 0;
}

size_t jn_kps_expire(jn_kps_t *ps, int64_t now_ms, int64_t max_idle_ms)
{
    int64_t cutoff = now_ms - max_idle_ms;
    size_t stale = 0;
    for (size_t i = 0; i < ps->cap; i++)
        if (ps->slots[i].pid >= 0 && ps->slots[i].last_ts < cutoff)
            stale++;
    if (stale == 0)
        return 0;
    size_t before = ps->n;
    if (stale == ps->n) {
        jn_kps_clear(ps);
        return before;
    }
    size_t cap = 8;
    while ((ps->n - stale) * 2 > cap)
        cap *= 2;
    if (rehash(ps, cap, cutoff) < 0)
        return 0; /* no memory to shrink into: keep them a while longer */
    return before - ps->n;
}

/* ---- snapshot ---- */

int jn_kps_encode(const jn_kps_t *ps, const jn_kps_anchor_t *a, jn_buf_t *out)
{
    size_t size = SNAP_HEADER + 4;
    for (size_t i = 0; i < ps->cap; i++)
        if (ps->slots[i].pid >= 0)
            size += SNAP_PRODUCER + (size_t)ps->slots[i].n * SNAP_BATCH;
    if (size > JN_KPS_SNAPSHOT_MAX || ps->n > UINT32_MAX)
        return JN_ETOOBIG;
    size_t start = out->len;
    int rc = jn_buf_reserve(out, size);
    if (rc < 0)
        return rc;
    uint8_t *p = out->data + start;
    memcpy(p, SNAP_MAGIC, 4);
    jn_store_be16(p + 4, SNAP_VERSION);
    jn_store_be64(p + 6, (uint64_t)a->end);
    jn_store_be64(p + 14, (uint64_t)a->last_base);
    jn_store_be32(p + 22, a->last_crc);
    jn_store_be32(p + 26, (uint32_t)ps->n);
    p += SNAP_HEADER;
    for (size_t i = 0; i < ps->cap; i++) {
        const jn_kps_producer_t *e = &ps->slots[i];
        if (e->pid < 0)
            continue;
        jn_store_be64(p, (uint64_t)e->pid);
        jn_store_be16(p + 8, (uint16_t)e->epoch);
        jn_store_be32(p + 10, (uint32_t)e->last_seq);
        jn_store_be64(p + 14, (uint64_t)e->last_ts);
        p[22] = e->n;
        p += SNAP_PRODUCER;
        for (int k = 0; k < e->n; k++) {
            const jn_kps_batch_t *b = &e->batches[(e->head + JN_KPS_CACHE - e->n + k) % JN_KPS_CACHE];
            jn_store_be32(p, (uint32_t)b->first_seq);
            jn_store_be32(p + 4, (uint32_t)b->last_seq);
            jn_store_be64(p + 8, (uint64_t)b->base_offset);
            p += SNAP_BATCH;
        }
    }
    jn_store_be32(p, jn_crc32c(0, out->data + start, size - 4));
    out->len = start + size;
    return 0;
}

int jn_kps_decode(jn_kps_t *ps, const uint8_t *p, size_t len, jn_kps_anchor_t *a)
{
    jn_kps_clear(ps);
    if (len < SNAP_HEADER + 4 || len > JN_KPS_SNAPSHOT_MAX || memcmp(p, SNAP_MAGIC, 4) != 0 ||
        jn_load_be16(p + 4) != SNAP_VERSION)
        return JN_ECORRUPT;
    if (jn_load_be32(p + len - 4) != jn_crc32c(0, p, len - 4))
        return JN_ECORRUPT;
    a->end = (int64_t)jn_load_be64(p + 6);
    a->last_base = (int64_t)jn_load_be64(p + 14);
    a->last_crc = jn_load_be32(p + 22);
    uint32_t count = jn_load_be32(p + 26);
    if (a->end < 1 || a->last_base < 0 || a->last_base >= a->end)
        return JN_ECORRUPT;
    /* The count is checked against the bytes before anything is added. */
    if (count > (len - SNAP_HEADER - 4) / SNAP_PRODUCER)
        return JN_ECORRUPT;
    size_t at = SNAP_HEADER, end = len - 4;
    int rc = JN_ECORRUPT;
    for (uint32_t i = 0; i < count; i++) {
        if (end - at < SNAP_PRODUCER)
            goto fail;
        const uint8_t *q = p + at;
        jn_batch_info_t bi = {0};
        bi.producer_id = (int64_t)jn_load_be64(q);
        bi.producer_epoch = (int16_t)jn_load_be16(q + 8);
        int32_t last_seq = (int32_t)jn_load_be32(q + 10);
        int64_t last_ts = (int64_t)jn_load_be64(q + 14);
        uint8_t n = q[22];
        at += SNAP_PRODUCER;
        if (bi.producer_id < 0 || bi.producer_epoch < 0 || n > JN_KPS_CACHE || jn_kps_find(ps, bi.producer_id) ||
            (size_t)n * SNAP_BATCH > end - at)
            goto fail;
        for (uint8_t k = 0; k < n; k++) {
            const uint8_t *b = p + at;
            int32_t first = (int32_t)jn_load_be32(b), last = (int32_t)jn_load_be32(b + 4);
            int64_t base = (int64_t)jn_load_be64(b + 8);
            if (first < 0 || last < first || base < 0 || base >= a->end)
                goto fail;
            bi.base_sequence = first;
            bi.last_offset_delta = last - first;
            rc = jn_kps_record(ps, &bi, base, last_ts);
            if (rc < 0)
                goto fail;
            rc = JN_ECORRUPT;
            at += SNAP_BATCH;
        }
        if (n == 0) {
            /* A producer whose cache is empty still has its epoch and
             * sequence (Kafka keeps such entries after a new epoch). */
            jn_kps_producer_t *e = add(ps, bi.producer_id, &rc);
            if (!e)
                goto fail;
            rc = JN_ECORRUPT;
            e->epoch = bi.producer_epoch;
        }
        jn_kps_producer_t *e = find_slot(ps, bi.producer_id);
        e->last_seq = last_seq;
        e->last_ts = last_ts;
    }
    if (at != end)
        goto fail;
    return 0;
fail:
    jn_kps_clear(ps);
    return rc;
}

/* ---- anchors and rebuild ---- */

static int first_header_cb(const jn_batch_info_t *bi, void *arg)
{
    *(jn_batch_info_t *)arg = *bi;
    return 1; /* the first one is all we want */
}

/* The batch holding |offset|: 0 with *bi, JN_ENOENT, JN_EIO. */
static int batch_at(jn_plog_t *log, int64_t offset, jn_batch_info_t *bi)
{
    if (offset < jn_plog_start_offset(log) || offset >= jn_plog_end_offset(log))
        return JN_ENOENT;
    int rc = jn_plog_scan_headers(log, offset, first_header_cb, bi);
    if (rc == 1)
        return bi->base_offset <= offset && bi->base_offset + bi->last_offset_delta >= offset ? 0 : JN_ENOENT;
    return rc == 0 ? JN_ENOENT : rc;
}

int jn_kps_anchor_of(jn_plog_t *log, jn_kps_anchor_t *a)
{
    jn_batch_info_t bi;
    int64_t end = jn_plog_end_offset(log);
    int rc = batch_at(log, end - 1, &bi);
    if (rc < 0)
        return rc;
    if (bi.base_offset + bi.last_offset_delta != end - 1)
        return JN_ENOENT;
    a->end = end;
    a->last_base = bi.base_offset;
    a->last_crc = bi.crc;
    return 0;
}

int jn_kps_snapshot(const jn_kps_t *ps, jn_plog_t *log, jn_buf_t *out)
{
    jn_kps_anchor_t a;
    int rc = jn_kps_anchor_of(log, &a);
    if (rc < 0)
        return rc;
    return jn_kps_encode(ps, &a, out);
}

/* Whether the log holds the snapshot's anchor batch, unchanged. */
static bool anchor_holds(jn_plog_t *log, const jn_kps_anchor_t *a)
{
    jn_batch_info_t bi;
    if (a->end > jn_plog_end_offset(log) || batch_at(log, a->end - 1, &bi) < 0)
        return false;
    return bi.base_offset == a->last_base && bi.base_offset + bi.last_offset_delta == a->end - 1 &&
           bi.crc == a->last_crc;
}

typedef struct scan_ctx {
    jn_kps_t *ps;
    int64_t now;
    int64_t batches;
} scan_ctx_t;

static int apply_cb(const jn_batch_info_t *bi, void *arg)
{
    scan_ctx_t *c = arg;
    c->batches++;
    if (!jn_kps_tracked(bi))
        return 0;
    /* The append time is not in the header (the timestamps are the
     * producer's clock): a producer seen after the snapshot counts as
     * active now, so expiry can only come late, never early. */
    int rc = jn_kps_record(c->ps, bi, bi->base_offset, c->now);
    return rc == JN_ENOMEM ? rc : 0; /* past the cap: untracked, as at run time */
}

int jn_kps_rebuild(jn_kps_t *ps, jn_plog_t *log, const uint8_t *snap, size_t snap_len, uint64_t scan_bytes,
                   int64_t now_ms, int64_t max_idle_ms, jn_kps_rebuild_info_t *info)
{
    jn_kps_rebuild_info_t dummy;
    if (!info)
        info = &dummy;
    memset(info, 0, sizeof *info);
    jn_kps_clear(ps);
    int64_t end = jn_plog_end_offset(log);
    int64_t from = jn_plog_recent_offset(log, scan_bytes);
    jn_kps_anchor_t a;
    if (snap && jn_kps_decode(ps, snap, snap_len, &a) == 0) {
        if (a.end >= from && anchor_holds(log, &a)) {
            info->snapshot_used = true;
            from = a.end;
        } else {
            jn_kps_clear(ps);
        }
    }
    info->scanned_from = from;
    if (from < end) {
        scan_ctx_t c = {.ps = ps, .now = now_ms};
        int rc = jn_plog_scan_headers(log, from, apply_cb, &c);
        info->batches = c.batches;
        if (rc < 0) {
            jn_kps_clear(ps);
            return rc;
        }
    }
    jn_kps_expire(ps, now_ms, max_idle_ms);
    return 0;
}
