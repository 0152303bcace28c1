/* plog_compact.c - keyed compaction of a partition's log: the latest
 * record of every key stays, older ones and expired tombstones go, offsets
 * never change (see the format and DURABILITY notes at the top of plog.c).
 *
 * A pass maps every key of the log to its latest offset (and every
 * idempotent producer to its last batch), then rewrites each sealed
 * segment without what the map shadows into <base>.log.cleaned and swaps
 * it in. jn_plog_compact does a whole pass at once; maintenance
 * (jn_plog_maintain) does it in bounded steps and leaves the fdatasync and
 * directory fsync of each swap to the thread pool. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/crc32c.h"
#include "../common/hash.h"
#include "../common/log.h"
#include "plog_int.h"

#define KMAP_KEYS_MAX ((size_t)1 << 30)  /* key bytes held by one compaction */
#define KMAP_SLOTS_MAX ((size_t)1 << 26) /* slots of the compaction key map */
/* Compaction keeps an idempotent producer's last batch this long after its
 * newest timestamp (Kafka's producer.id.expiration.ms default). */
#define PRODUCER_KEEP_MS (24 * 3600 * 1000LL)
#define MAINTAIN_MAP_BYTES ((uint64_t)64 << 20) /* keys mapped per maintenance step (plog.c) */

/* key -> latest offset. Keys are copied into one arena (offsets into it, so
 * the arena may move); open addressing with linear probing. */
typedef struct kmap_slot {
    uint64_t hash;
    int64_t offset; /* -1: empty slot */
    size_t key_pos;
    uint32_t key_len;
} kmap_slot_t;

typedef struct kmap {
    kmap_slot_t *slots;
    size_t cap, count;
    jn_buf_t keys;
    /* producer id -> base offset of its last batch (open addressing, -1 =
     * empty slot): the batch compaction must not remove whole. */
    int64_t *pids, *plast;
    size_t pcap, pcount;
} kmap_t;

static int kmap_init(kmap_t *m)
{
    m->cap = 1024;
    m->count = 0;
    m->pids = m->plast = NULL;
    m->pcap = m->pcount = 0;
    jn_buf_init(&m->keys, KMAP_KEYS_MAX);
    m->slots = malloc(m->cap * sizeof *m->slots);
    if (!m->slots)
        return JN_ENOMEM;
    for (size_t i = 0; i < m->cap; i++)
        m->slots[i].offset = -1;
    return 0;
}

static void kmap_free(kmap_t *m)
{
    free(m->slots);
    jn_buf_free(&m->keys);
    free(m->pids);
    free(m->plast);
}

static size_t pmap_slot(const int64_t *pids, size_t cap, int64_t pid)
{
    size_t i = (size_t)((uint64_t)pid * 0x9E3779B97F4A7C15ull >> 20) & (cap - 1);
    while (pids[i] >= 0 && pids[i] != pid)
        i = (i + 1) & (cap - 1);
    return i;
}

/* Notes that producer |pid| wrote the batch at |base| (the highest wins). */
static int pmap_put(kmap_t *m, int64_t pid, int64_t base)
{
    if ((m->pcount + 1) * 2 > m->pcap) {
        size_t cap = m->pcap ? m->pcap * 2 : 64;
        if (cap > KMAP_SLOTS_MAX)
            return JN_ETOOBIG;
        int64_t *pids = malloc(cap * sizeof *pids), *last = malloc(cap * sizeof *last);
        if (!pids || !last) {
            free(pids);
            free(last);
            return JN_ENOMEM;
        }
        for (size_t i = 0; i < cap; i++)
            pids[i] = -1;
        for (size_t i = 0; i < m->pcap; i++) {
            if (m->pids[i] < 0)
                continue;
            size_t j = pmap_slot(pids, cap, m->pids[i]);
            pids[j] = m->pids[i];
            last[j] = m->plast[i];
        }
        free(m->pids);
        free(m->plast);
        m->pids = pids;
        m->plast = last;
        m->pcap = cap;
    }
    size_t i = pmap_slot(m->pids, m->pcap, pid);
    if (m->pids[i] < 0) {
        m->pids[i] = pid;
        m->plast[i] = base;
        m->pcount++;
    } else if (base > m->plast[i]) {
        m->plast[i] = base;
    }
    return 0;
}

/* The base offset of producer |pid|'s last batch, or -1. */
static int64_t pmap_get(const kmap_t *m, int64_t pid)
{
    if (!m->pcap)
        return -1;
    size_t i = pmap_slot(m->pids, m->pcap, pid);
    return m->pids[i] < 0 ? -1 : m->plast[i];
}

static kmap_slot_t *kmap_find(const kmap_t *m, const uint8_t *key, uint32_t len, uint64_t h)
{
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        kmap_slot_t *s = &m->slots[i];
        if (s->offset < 0)
            return s;
        if (s->hash == h && s->key_len == len && memcmp(m->keys.data + s->key_pos, key, len) == 0)
            return s;
    }
}

static int kmap_grow(kmap_t *m)
{
    size_t cap = m->cap * 2;
    if (cap > KMAP_SLOTS_MAX)
        return JN_ETOOBIG;
    kmap_slot_t *old = m->slots;
    size_t old_cap = m->cap;
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots) {
        m->slots = old;
        return JN_ENOMEM;
    }
    m->cap = cap;
    for (size_t i = 0; i < cap; i++)
        m->slots[i].offset = -1;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].offset < 0)
            continue;
        size_t j = old[i].hash & (cap - 1);
        while (m->slots[j].offset >= 0)
            j = (j + 1) & (cap - 1);
        m->slots[j] = old[i];
    }
    free(old);
    return 0;
}

static int kmap_put(kmap_t *m, const uint8_t *key, uint32_t len, int64_t offset)
{
    uint64_t h = jn_fnv1a(key, len);
    kmap_slot_t *s = kmap_find(m, key, len, h);
    if (s->offset >= 0) {
        if (offset > s->offset)
            s->offset = offset;
        return 0;
    }
    if ((m->count + 1) * 2 > m->cap) {
        int rc = kmap_grow(m);
        if (rc < 0)
            return rc;
        s = kmap_find(m, key, len, h);
    }
    size_t pos = m->keys.len;
    int rc = jn_buf_append(&m->keys, key, len);
    if (rc < 0)
        return rc;
    *s = (kmap_slot_t){h, offset, pos, len};
    m->count++;
    return 0;
}

static int64_t kmap_get(const kmap_t *m, const uint8_t *key, uint32_t len)
{
    kmap_slot_t *s = kmap_find(m, key, len, jn_fnv1a(key, len));
    return s->offset;
}

/* Records the latest offset of every key in |seg|. Batches that cannot be
 * iterated (compressed, malformed) contribute nothing: records they shadow
 * are kept, which is safe. */
static int map_segment(const jn_plog_t *log, const jn_plog_segment_t *seg, kmap_t *m)
{
    scanner_t s;
    jn__plog_scan_init(&s, log, seg, 0, seg->size);
    jn_batch_info_t bi;
    const uint8_t *p;
    int r;
    while ((r = jn__plog_scan_next(&s, &bi, &p)) > 0) {
        jn_batch_iter_t it;
        jn_record_t rec;
        int pr = bi.producer_id >= 0 ? pmap_put(m, bi.producer_id, bi.base_offset) : 0;
        if (pr < 0) {
            jn__plog_scan_free(&s);
            return pr;
        }
        if (jn_batch_iter_init(&it, p, (size_t)r, false) == 0) {
            int k;
            while ((k = jn_batch_iter_next(&it, &rec)) > 0) {
                if (!rec.key)
                    continue;
                k = kmap_put(m, rec.key, (uint32_t)rec.key_len, rec.offset);
                if (k < 0) {
                    jn__plog_scan_free(&s);
                    return k;
                }
            }
        }
        jn__plog_scan_skip(&s, (size_t)r);
    }
    jn__plog_scan_free(&s);
    return r < 0 ? JN_EIO : 0;
}

/* Filters one batch into |ob|. Returns the number of records removed (the
 * whole batch appended unchanged when nothing is removed, nothing appended
 * when everything is), or an error from |ob|. A batch whose records would
 * all go but which is the last of an idempotent producer (whose newest
 * timestamp is not older than |producer_cutoff|) stays whole, as Kafka's
 * cleaner keeps it: its header carries the producer's epoch and last
 * sequence, which a rebuild of producer state reads (a partly cleaned
 * batch keeps its header anyway). */
static int clean_batch(const kmap_t *m, const uint8_t *p, size_t len, int64_t tomb_cutoff,
                       int64_t producer_cutoff, jn_buf_t *ob)
{
    jn_batch_iter_t it;
    jn_record_t rec;
    if (jn_batch_iter_init(&it, p, len, false) < 0 || (it.info.attributes & JN_BATCH_CONTROL))
        return jn_buf_append(ob, p, len);
    size_t start = ob->len;
    int rc = jn_buf_append(ob, p, JN_BATCH_HEADER_SIZE);
    if (rc < 0)
        return rc;
    int32_t kept = 0, seen = 0;
    const uint8_t *rp = it.p;
    int k;
    while ((k = jn_batch_iter_next(&it, &rec)) > 0) {
        seen++;
        bool keep = true;
        if (rec.key) {
            if (kmap_get(m, rec.key, (uint32_t)rec.key_len) != rec.offset)
                keep = false;
            else if (!rec.value && rec.timestamp < tomb_cutoff)
                keep = false;
        }
        if (keep) {
            /* Deltas are relative to the unchanged header: copy verbatim. */
            rc = jn_buf_append(ob, rp, (size_t)(it.p - rp));
            if (rc < 0)
                return rc;
            kept++;
        }
        rp = it.p;
    }
    if (k < 0 || kept == seen) {
        ob->len = start;
        rc = jn_buf_append(ob, p, len);
        return rc < 0 ? rc : 0;
    }
    if (kept == 0) {
        ob->len = start;
        const jn_batch_info_t *bi = &it.info;
        if (bi->producer_id >= 0 && bi->max_timestamp >= producer_cutoff &&
            pmap_get(m, bi->producer_id) == bi->base_offset) {
            rc = jn_buf_append(ob, p, len);
            return rc < 0 ? rc : 0;
        }
        return seen;
    }
    uint8_t *h = ob->data + start;
    size_t total = ob->len - start;
    jn_store_be32(h + 8, (uint32_t)(total - JN_BATCH_LOG_OVERHEAD));
    jn_store_be32(h + 57, (uint32_t)kept);
    jn_store_be32(h + 17, jn_crc32c(0, h + 21, total - 21));
    return seen - kept;
}

/* Rewrites sealed segment |seg| without the records compaction removes
 * into <base>.log.cleaned, in the page cache only: the file is neither
 * synced nor renamed. Returns the number of records removed with *out set
 * to the new segment (one reference, its fd open on the cleaned file, its
 * indexes in memory only), 0 when nothing is removed (*out NULL, no file
 * left behind), or an error. */
static int64_t clean_rewrite(const jn_plog_t *log, const jn_plog_segment_t *seg, const kmap_t *m,
                             int64_t tomb_cutoff, jn_plog_segment_t **out)
{
    jn_plog_segment_t *ns = jn__plog_seg_new(log->dir, seg->base);
    int64_t producer_cutoff = jn_clock_now(log->clock) - PRODUCER_KEEP_MS;
    char tmp[PATH_MAX];
    int64_t removed = 0;
    int64_t rc = JN_ENOMEM;
    jn_buf_t ob;
    jn_buf_init(&ob, SCAN_MAX);
    scanner_t s;
    jn__plog_scan_init(&s, log, seg, 0, seg->size);
    *out = NULL;
    if (!ns)
        goto fail;
    rc = JN_EIO;
    if (jn__plog_seg_file(seg, ".log.cleaned", tmp, sizeof tmp) < 0)
        goto fail;
    ns->fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (ns->fd < 0)
        goto fail;
    jn_batch_info_t bi;
    const uint8_t *p;
    int r;
    uint64_t wpos = 0;
    while ((r = jn__plog_scan_next(&s, &bi, &p)) > 0) {
        jn_buf_reset(&ob);
        int c = clean_batch(m, p, (size_t)r, tomb_cutoff, producer_cutoff, &ob);
        if (c < 0) {
            rc = c;
            goto fail;
        }
        removed += c;
        jn__plog_scan_skip(&s, (size_t)r);
        if (ob.len == 0)
            continue;
        jn_batch_info_t obi;
        if (jn_batch_parse(ob.data, ob.len, SCAN_MAX, &obi) != (int)ob.len)
            goto fail;
        if (jn__plog_write_all(ns->fd, ob.data, ob.len, wpos) < 0)
            goto fail;
        jn__plog_seg_note_batch(ns, log->cfg.index_interval_bytes, wpos, ob.len, &obi);
        wpos += ob.len;
    }
    if (r < 0)
        goto fail;
    if (removed == 0) {
        rc = 0;
        goto fail; /* nothing to replace: discard the copy */
    }
    ns->file_size = ns->alloc_size = ns->size = wpos;
    ns->end = seg->end; /* offsets up to the next segment stay this segment's */
    jn__plog_seg_seal_time(ns);
    jn__plog_scan_free(&s);
    jn_buf_free(&ob);
    *out = ns;
    return removed;
fail:
    if (ns && ns->fd >= 0)
        (void)unlink(tmp);
    if (rc < 0)
        jn_error("plog %s: compaction of segment %" PRId64 " failed: %s", log->dir, seg->base,
                 jn_strerror((int)rc));
    jn_plog_segment_unref(ns);
    jn__plog_scan_free(&s);
    jn_buf_free(&ob);
    return rc;
}

/* Drops a cleaned segment that will not be installed, and its file. */
static void clean_discard(jn_plog_segment_t *ns)
{
    char tmp[PATH_MAX];
    if (jn__plog_seg_file(ns, ".log.cleaned", tmp, sizeof tmp) == 0)
        (void)unlink(tmp);
    jn_plog_segment_unref(ns);
}

/* Puts cleaned segment |ns|, its file already synced, in place of segment
 * |si|: unlinks the old indexes, renames the cleaned file over the .log and
 * swaps the segments, taking over the reference to |ns|. The log's
 * reference to the old segment is dropped; readers that hold one keep
 * reading the old file through its descriptor. Neither the directory nor
 * the new indexes are written: the caller does both, in that order (new
 * indexes must never be found next to the old .log after a crash). On
 * failure |ns| and its file are discarded. Returns 0 or JN_EIO. */
static int clean_swap(jn_plog_t *log, size_t si, jn_plog_segment_t *ns, int64_t removed)
{
    jn_plog_segment_t *seg = log->segs[si];
    char tmp[PATH_MAX], name[PATH_MAX], iname[PATH_MAX];
    if (jn__plog_seg_file(seg, ".log.cleaned", tmp, sizeof tmp) < 0 || jn__plog_seg_file(seg, ".log", name, sizeof name) < 0)
        goto fail;
    /* Indexes go first: a crash before the new ones exist leaves none,
     * which recovery rebuilds, never old ones pointing into the new file. */
    if (jn__plog_seg_file(seg, ".index", iname, sizeof iname) == 0)
        (void)unlink(iname);
    if (jn__plog_seg_file(seg, ".timeindex", iname, sizeof iname) == 0)
        (void)unlink(iname);
    if (rename(tmp, name) != 0)
        goto fail;
    log->segs[si] = ns;
    jn_plog_segment_unref(seg);
    jn_info("plog %s: compacted segment %" PRId64 ", %" PRId64 " records removed", log->dir,
            ns->base, removed);
    return 0;
fail:
    jn_error("plog %s: compaction of segment %" PRId64 " failed: rename: %s", log->dir, seg->base,
             strerror(errno));
    clean_discard(ns);
    return JN_EIO;
}

/* jn_plog_compact's rewrite of segment |si|, fsyncs included, all on the
 * calling thread. Returns the number of records removed, or an error. */
static int64_t clean_segment_now(jn_plog_t *log, size_t si, const kmap_t *m, int64_t tomb_cutoff)
{
    jn_plog_segment_t *ns;
    int64_t removed = clean_rewrite(log, log->segs[si], m, tomb_cutoff, &ns);
    if (removed <= 0)
        return removed;
    if (fdatasync(ns->fd) != 0) {
        jn_error("plog %s: compaction of segment %" PRId64 " failed: fdatasync: %s", log->dir,
                 ns->base, strerror(errno));
        clean_discard(ns);
        return JN_EIO;
    }
    if (clean_swap(log, si, ns, removed) < 0)
        return JN_EIO;
    jn__plog_fsync_dir(log);
    (void)jn__plog_seg_rewrite_indexes(ns, false);
    return removed;
}

/* A maintenance segment swap, the part of a compaction step that must wait
 * for the disk. Phase 1 fdatasyncs the cleaned file on the thread pool; its
 * completion, on the loop, renames the file into place and swaps the
 * segments; phase 2 fsyncs the directory on the thread pool; its completion
 * writes the new indexes. At most one per log (log->clean): the next
 * compaction step waits for it. Like a sync job it outlives
 * jn_plog_close, finishing alone with log NULL. */
typedef struct clean_job {
    uv_work_t req;
    jn_plog_t *log;         /* NULL once the log is closed */
    jn_plog_segment_t *old; /* phase 1: reference to the segment being replaced */
    jn_plog_segment_t *ns;  /* the cleaned segment: owned in phase 1, a reference in phase 2 */
    int64_t removed;        /* records removed, for the log */
    int fd;                 /* phase 1: the cleaned file (ns->fd) */
    int dir_fd;             /* phase 2: dup of the directory, or -1 */
    bool renamed;           /* phase 2 */
    int status;             /* 0 or JN_EIO, set by the worker */
    int err;                /* errno of the failure */
} clean_job_t;

static void clean_job_free(clean_job_t *job)
{
    jn_plog_segment_unref(job->old);
    jn_plog_segment_unref(job->ns);
    if (job->dir_fd >= 0)
        close(job->dir_fd);
    free(job);
}

static void clean_work(uv_work_t *req)
{
    clean_job_t *job = jn_container_of(req, clean_job_t, req);
    int rc = job->renamed ? fsync(job->dir_fd) : fdatasync(job->fd);
    if (rc != 0) {
        job->status = JN_EIO;
        job->err = errno;
    }
}

static void clean_after(uv_work_t *req, int status);

/* Index of |seg| in the log, nsegs when it is no longer there. The caller
 * holds a reference, so the pointer cannot have been reused. */
static size_t seg_position(const jn_plog_t *log, const jn_plog_segment_t *seg)
{
    size_t i = 0;
    while (i < log->nsegs && log->segs[i] != seg)
        i++;
    return i;
}

/* Phase 1 completed: install the cleaned segment and start phase 2. */
static void clean_install(jn_plog_t *log, clean_job_t *job)
{
    jn_plog_segment_t *ns = job->ns;
    size_t si = seg_position(log, job->old);
    job->ns = NULL;
    if (job->status < 0) {
        jn_error("plog %s: compaction of segment %" PRId64 " failed: fdatasync: %s", log->dir,
                 ns->base, job->err ? strerror(job->err) : "cancelled");
        clean_discard(ns);
        jn__plog_pass_free(log); /* starts over on a later step */
        goto done;
    }
    if (si == log->nsegs) {
        /* Retention deleted the segment meanwhile: nothing to replace. */
        clean_discard(ns);
        goto done;
    }
    if (clean_swap(log, si, ns, job->removed) < 0) {
        jn__plog_pass_free(log);
        goto done;
    }
    jn__plog_seg_ref(ns);
    job->ns = ns;
    jn_plog_segment_unref(job->old);
    job->old = NULL;
    job->renamed = true;
    job->dir_fd = dup(log->dir_fd);
    if (job->dir_fd >= 0 && uv_queue_work(log->loop, &job->req, clean_work, clean_after) == 0)
        return;
    /* Left to the next sync job; the new indexes to recovery. */
    jn_error("plog %s: cannot queue the directory fsync of a compaction", log->dir);
    log->dir_dirty = true;
done:
    log->clean = NULL;
    clean_job_free(job);
}

/* Phase 2 completed: the rename is durable, the new indexes may exist. */
static void clean_finish(jn_plog_t *log, clean_job_t *job)
{
    log->clean = NULL;
    if (job->status < 0) {
        jn_error("plog %s: fsync of directory failed: %s", log->dir,
                 job->err ? strerror(job->err) : "cancelled");
        log->dir_dirty = true; /* the next sync job retries; the indexes are left to recovery */
    } else if (seg_position(log, job->ns) < log->nsegs) {
        (void)jn__plog_seg_rewrite_indexes(job->ns, false);
    }
    clean_job_free(job);
}

static void clean_after(uv_work_t *req, int status)
{
    clean_job_t *job = jn_container_of(req, clean_job_t, req);
    jn_plog_t *log = job->log;
    if (status != 0 && job->status == 0)
        job->status = JN_EIO;
    if (!log) {
        /* Closed meanwhile. Before the rename, the .cleaned file is a
         * leftover that the next open deletes (it may already have: a new
         * log of this directory may own that name now, so it is not
         * touched). After it, only the indexes are missing: rebuilt. */
        clean_job_free(job);
        return;
    }
    if (job->renamed)
        clean_finish(log, job);
    else
        clean_install(log, job);
}

/* Starts phase 1 for cleaned segment |ns| replacing segment |si|; takes
 * |ns| (discarded on failure). Returns 0, JN_ENOMEM or JN_EIO. */
static int clean_start(jn_plog_t *log, size_t si, jn_plog_segment_t *ns, int64_t removed)
{
    clean_job_t *job = calloc(1, sizeof *job);
    if (!job) {
        clean_discard(ns);
        return JN_ENOMEM;
    }
    job->log = log;
    job->old = log->segs[si];
    jn__plog_seg_ref(job->old);
    job->removed = removed;
    job->fd = ns->fd;
    job->dir_fd = -1;
    if (uv_queue_work(log->loop, &job->req, clean_work, clean_after) != 0) {
        jn_error("plog %s: cannot queue the fdatasync of a compaction", log->dir);
        clean_discard(ns);
        clean_job_free(job);
        return JN_EIO;
    }
    job->ns = ns;
    log->clean = job;
    return 0;
}

/* jn_plog_close: a swap in flight finishes alone. */
void jn__plog_clean_detach(jn_plog_t *log)
{
    if (log->clean) {
        log->clean->log = NULL;
        log->clean = NULL;
    }
}

/* True while |seg| is being replaced by a swap in flight (phase 1). */
static bool clean_busy(const jn_plog_t *log, const jn_plog_segment_t *seg)
{
    return log->clean && log->clean->old == seg;
}

int64_t jn__plog_compact_all(jn_plog_t *log, int *rewritten)
{
    *rewritten = 0;
    jn__plog_pass_free(log); /* this full pass supersedes a stepwise one */
    if (log->nsegs < 2)
        return 0;
    kmap_t m;
    int64_t rc = kmap_init(&m);
    if (rc < 0)
        goto done;
    for (size_t i = 0; i < log->nsegs; i++) {
        rc = map_segment(log, log->segs[i], &m);
        if (rc < 0)
            goto done;
    }
    int64_t cutoff = jn_clock_now(log->clock) - log->cfg.delete_retention_ms;
    int64_t removed = 0;
    for (size_t i = 0; i + 1 < log->nsegs; i++) {
        /* A swap in flight replaces it anyway; the next pass cleans it. */
        if (clean_busy(log, log->segs[i]))
            continue;
        rc = clean_segment_now(log, i, &m, cutoff);
        if (rc < 0)
            goto done;
        if (rc > 0)
            (*rewritten)++;
        removed += rc;
    }
    log->cleaned_upto = active_seg(log)->base;
    rc = removed;
done:
    kmap_free(&m);
    return rc;
}

/* ---- compaction in steps (maintenance) -----------------------------------
 *
 * jn_plog_maintain compacts in steps, one per call, so that the loop never
 * stalls on a whole log (jn_plog_compact, for tests and admin, still does
 * everything at once, fsyncs included, on the calling thread). A pass cleans the segments that were sealed when it
 * started (base below end_base). Phase 1 maps key -> latest offset over the
 * segments in order, the pass's and any newer ones (the active one last, up
 * to its size then), at least one segment and up to MAINTAIN_MAP_BYTES per
 * step. Phase 2 rewrites one segment of the pass per step. Meanwhile the
 * log keeps growing and retention may delete segments; that is safe:
 *   - every key of a segment the pass rewrites is in the map: a sealed
 *     segment does not change between being mapped and being rewritten;
 *   - a mapped offset is at most the key's true latest offset (newer
 *     records may have come since), so a record below it is obsolete for
 *     sure; the mapped record itself is kept even if something newer
 *     exists, and the next pass removes it;
 *   - progress is kept as a base offset, not an index, so segments deleted
 *     or replaced meanwhile do not shift it.
 * A phase 2 step leaves the rewritten segment to a clean job (clean_job_t):
 * until the loop installs it, reads go to the old segment, which the job
 * references, and the pass waits. If retention deletes that segment
 * meanwhile the job discards its file instead of renaming it (which would
 * bring the segment back); if the log is closed the job finishes alone and
 * the .cleaned file is left for the next open to delete (RECOVERY 1).
 * The map lives in the log between steps (capped as in compact()). */
typedef struct compact_pass {
    kmap_t map;
    int64_t end_base;  /* segments below this base were sealed at the start */
    int64_t next_base; /* the next segment to map (phase 1) or clean (phase 2) */
    bool cleaning;     /* phase 2 */
    int64_t cutoff;    /* tombstones older than this go (fixed when phase 2 starts) */
} compact_pass_t;

void jn__plog_pass_free(jn_plog_t *log)
{
    if (!log->pass)
        return;
    kmap_free(&log->pass->map);
    free(log->pass);
    log->pass = NULL;
}

/* Index of the first segment whose base is >= |base| (nsegs when none). */
static size_t seg_from(const jn_plog_t *log, int64_t base)
{
    size_t i = 0;
    while (i < log->nsegs && log->segs[i]->base < base)
        i++;
    return i;
}

/* One step; returns the number of segments rewritten (0 or 1), or an error
 * (the pass is dropped and starts over on a later call). */
int jn__plog_compact_step(jn_plog_t *log)
{
    if (!log->cfg.compact) {
        jn__plog_pass_free(log);
        return 0;
    }
    if (log->clean)
        return 0; /* one swap at a time: the pass resumes once it is done */
    compact_pass_t *cp = log->pass;
    if (!cp) {
        /* Nothing sealed since the last pass: nothing new to clean. */
        if (log->nsegs < 2 || log->segs[log->nsegs - 2]->base < log->cleaned_upto)
            return 0;
        cp = calloc(1, sizeof *cp);
        if (!cp)
            return JN_ENOMEM;
        if (kmap_init(&cp->map) < 0) {
            kmap_free(&cp->map);
            free(cp);
            return JN_ENOMEM;
        }
        cp->end_base = active_seg(log)->base;
        cp->next_base = INT64_MIN;
        log->pass = cp;
    }
    if (!cp->cleaning) {
        uint64_t mapped = 0;
        size_t i = seg_from(log, cp->next_base);
        for (; i < log->nsegs && mapped < MAINTAIN_MAP_BYTES; i++) {
            jn_plog_segment_t *seg = log->segs[i];
            int rc = map_segment(log, seg, &cp->map);
            if (rc < 0) {
                jn_error("plog %s: compaction: mapping segment %" PRId64 " failed: %s", log->dir, seg->base,
                         jn_strerror(rc));
                jn__plog_pass_free(log);
                return rc;
            }
            mapped += seg->size + 1; /* + 1: empty segments count too */
            cp->next_base = seg->base + 1;
        }
        if (i < log->nsegs)
            return 0; /* more to map on the next call */
        cp->cleaning = true;
        cp->next_base = INT64_MIN;
        cp->cutoff = jn_clock_now(log->clock) - log->cfg.delete_retention_ms;
        return 0;
    }
    size_t i = seg_from(log, cp->next_base);
    if (i + 1 >= log->nsegs || log->segs[i]->base >= cp->end_base) {
        log->cleaned_upto = cp->end_base;
        jn__plog_pass_free(log);
        return 0;
    }
    cp->next_base = log->segs[i]->base + 1;
    jn_plog_segment_t *ns;
    int64_t rc = clean_rewrite(log, log->segs[i], &cp->map, cp->cutoff, &ns);
    if (rc > 0) {
        int sr = clean_start(log, i, ns, rc);
        rc = sr < 0 ? sr : 1;
    }
    if (rc < 0) {
        jn__plog_pass_free(log);
        return (int)rc;
    }
    return (int)rc;
}

int64_t jn_plog_compact(jn_plog_t *log)
{
    int rewritten;
    return jn__plog_compact_all(log, &rewritten);
}
