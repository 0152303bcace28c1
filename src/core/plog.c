/* plog.c - one partition's durable log: segment files, sparse indexes,
 * crash recovery, retention, keyed compaction (plog_compact.c) and group-committed fsync.
 *
 * Everything the broker stores ends up here, so this file documents the
 * on-disk format byte by byte, and the rules that decide, after a crash,
 * which bytes are kept.
 *
 * DIRECTORY
 *
 *   A partition is a directory of segments. A segment is named by its base
 *   offset (the offset of its first batch when it was created), in decimal,
 *   zero-padded to 20 digits, with three files:
 *
 *     <base>.log        the data
 *     <base>.index      sparse offset index
 *     <base>.timeindex  sparse time index
 *
 *   Segments are ordered by base offset; the last one is the active segment
 *   (the only one appended to), the others are sealed. `<base>.log.cleaned`
 *   is a compaction output not yet renamed into place; found at open, it is
 *   an interrupted compaction and is deleted.
 *
 * .log FORMAT
 *
 *   Kafka RecordBatch v2 batches back to back, nothing else (layout in
 *   batch.h). Each batch's baseOffset is the absolute offset of its first
 *   record and its partitionLeaderEpoch is 0. In the active segment batch
 *   offsets are contiguous: the next batch's baseOffset is the previous
 *   batch's baseOffset + lastOffsetDelta + 1. In sealed segments compaction
 *   leaves gaps (batches and records removed) but never changes an offset,
 *   so baseOffsets only increase. A partly cleaned batch keeps its header
 *   (baseOffset, lastOffsetDelta, producer id, epoch, base sequence); a
 *   batch that is the last of an idempotent producer (producerId >= 0, its
 *   newest timestamp within PRODUCER_KEEP_MS) is never removed whole, so
 *   the producer's sequence state can always be rebuilt from the log, as
 *   Kafka's cleaner does.
 *
 * .index FORMAT
 *
 *   An array of 8-byte entries, no header:
 *
 *     off len field
 *      0   4  relative offset  u32 BE: batch baseOffset - segment base
 *      4   4  position         u32 BE: byte position of that batch in .log
 *
 *   Both fields strictly increase from entry to entry. An entry is added for
 *   the batch being appended when at least index_interval_bytes of batches
 *   were appended since the previous entry (or since the segment start), so
 *   the first batch of a segment (position 0) is implied, not stored. A
 *   lookup takes the last entry at or below the wanted offset and scans
 *   batch headers forward from its position. Segments are rolled before a
 *   relative offset or a position would pass 2^32 - 1.
 *
 * .timeindex FORMAT
 *
 *   An array of 12-byte entries, no header:
 *
 *     off len field
 *      0   8  timestamp        i64 BE: largest batch maxTimestamp seen in the
 *                              segment up to and including the batch below
 *      8   4  relative offset  u32 BE: that batch's baseOffset - segment base
 *
 *   Added together with an offset index entry when the segment's largest
 *   timestamp grew since the last time entry, and once more when the
 *   segment is sealed, so that the last entry of a sealed segment holds its
 *   largest timestamp. Timestamps strictly increase, relative offsets never
 *   decrease. For an entry (T, r), every record in batches up to the one at
 *   r has a timestamp <= T: a search for the first record with timestamp
 *   >= ts may start at the batch of the last entry with T < ts.
 *
 *   Index files are written (not fsynced) in runs of INDEX_WRITE_RUN
 *   entries while a segment is active, and wholly when it is sealed or
 *   closed; they may trail the log. They are never needed for correctness: recovery checks
 *   them and rebuilds them from the .log whenever they look wrong.
 *
 * RECOVERY (jn_plog_open)
 *
 *   1. *.cleaned files are deleted (see above).
 *   2. Every segment but the last is trusted: its .log is not CRC-checked.
 *      Its indexes are loaded and checked: sizes a multiple of the entry
 *      size, fields increasing as described, positions inside the file, and
 *      the batches from the last index entry's position to the end of the
 *      file must parse back to back, the first one at the offset the entry
 *      names, ending exactly at the end of the file. That walk also yields
 *      the segment's end offset and largest timestamp. If any check fails,
 *      both indexes are rebuilt by walking every batch header of the .log.
 *      Zeros at the end (PREALLOCATION) are cut. If the walk meets anything
 *      else that is not a batch, the batches before it are kept, the rest
 *      of the file is moved to <base>.log.damaged (never read again, kept
 *      for an investigation) with an error in the log, and the partition
 *      opens: readers go on at the next segment. Only a segment that
 *      cannot be read (JN_EIO) or whose damaged part cannot be moved aside
 *      (JN_ECORRUPT) fails the open.
 *   3. The last segment is scanned batch by batch from position 0. A batch
 *      is valid when its header parses (jn_batch_parse), it lies wholly in
 *      the file, its CRC matches and its baseOffset is the expected next
 *      offset (the segment base for the first batch). The first invalid
 *      batch (a torn write, a flipped bit, garbage or zero fill) and
 *      everything after it is cut off with ftruncate, and a warning says how
 *      many bytes were cut. Its indexes are always rebuilt from the scan.
 *   4. The log's end offset is the last valid batch's baseOffset +
 *      lastOffsetDelta + 1 (the segment base when it is empty); the start
 *      offset is the first segment's base.
 *
 * DURABILITY
 *
 *   Appends go to an in-memory tail buffer, written with pwrite(2) by
 *   jn_plog_flush. fsync never runs on the loop thread while the log is
 *   open: a sync job on libuv's thread pool fdatasyncs the active segment,
 *   every segment sealed since the last successful sync, and the directory
 *   when segments were created. A job covers the offsets written before it
 *   started; when it completes, waiters below that offset fire and, if more
 *   was written meanwhile, the next job starts (group commit). Under ALWAYS
 *   a job starts for anything written, waited for or not; under INTERVAL
 *   for the interval timer and for waiters armed by jn_plog_wait_synced.
 *   The job holds references to the segments it syncs, so their
 *   descriptors stay open whatever happens to the log meanwhile, and it
 *   outlives jn_plog_close.
 *
 *   Compaction by maintenance (jn_plog_maintain) follows the same rule: a
 *   rewritten segment is written to <base>.log.cleaned on the loop (page
 *   cache only), then a clean job on the thread pool fdatasyncs it; back
 *   on the loop its old indexes are unlinked and it is renamed over
 *   <base>.log (metadata, no fsync), and a second pass of the job fsyncs
 *   the directory on the pool before the new indexes are written. A crash
 *   leaves either the old .log or the synced new one; since the old
 *   indexes go before the rename and the new ones come only once it is
 *   durable, it never leaves new indexes beside the old file (missing
 *   ones are rebuilt at open).
 *
 *   Only jn_plog_open (before serving), jn_plog_close (shutdown),
 *   jn_plog_sync (the broker's metadata writes) and jn_plog_compact (tests
 *   and admin) fsync on the calling thread.
 *
 * PREALLOCATION
 *
 *   With fsync `always`, the active segment's file is kept zero-filled one
 *   PREALLOC_CHUNK ahead of its batches (real zeros, written by write_tail
 *   before the batches that need them; fallocate would leave unwritten
 *   extents whose conversion is metadata again). An fdatasync of batches
 *   written over those zeros then changes neither the file size nor its
 *   block map: on ext4 (this machine's data disk runs without a journal,
 *   where every metadata block is written synchronously) it is one data
 *   write and a cache flush instead of three or four dependent writes. A
 *   roll and jn_plog_close cut the zeros. Zeros found at open are not
 *   damage: the active segment drops them like any invalid tail (quietly
 *   when they are all zero), and a sealed segment whose cut was lost in a
 *   crash is cut again. Other policies do not preallocate (it writes the
 *   disk twice for speed they do not wait for).
 */
#include "plog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../common/crc32c.h"
#include "../common/hash.h"
#include "../common/fs.h"
#include "../common/log.h"
#include "plog_int.h"


/* ---- small I/O helpers -------------------------------------------------- */

int jn__plog_write_all(int fd, const void *p, size_t n, uint64_t pos)
{
    const uint8_t *s = p;
    while (n > 0) {
        ssize_t w = pwrite(fd, s, n, (off_t)pos);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return JN_EIO;
        }
        s += w;
        n -= (size_t)w;
        pos += (uint64_t)w;
    }
    return 0;
}

/* A short read is an error: callers only read bytes known to exist. */
static int read_all(int fd, void *p, size_t n, uint64_t pos)
{
    uint8_t *d = p;
    while (n > 0) {
        ssize_t r = pread(fd, d, n, (off_t)pos);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return JN_EIO;
        }
        if (r == 0)
            return JN_EIO;
        d += r;
        n -= (size_t)r;
        pos += (uint64_t)r;
    }
    return 0;
}

static const uint8_t zeros[ZERO_BUF];

/* Writes zeros over [pos, end) of |fd|. */
static int write_zeros(int fd, uint64_t pos, uint64_t end)
{
    struct iovec iov[16];
    for (int i = 0; i < 16; i++)
        iov[i] = (struct iovec){(void *)zeros, ZERO_BUF};
    while (pos < end) {
        uint64_t left = end - pos;
        int n = 0;
        while (n < 16 && left > 0) {
            iov[n].iov_len = left < ZERO_BUF ? (size_t)left : ZERO_BUF;
            left -= iov[n].iov_len;
            n++;
        }
        ssize_t w = pwritev(fd, iov, n, (off_t)pos);
        for (int i = 0; i < n; i++)
            iov[i].iov_len = ZERO_BUF;
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return JN_EIO;
        pos += (uint64_t)w;
    }
    return 0;
}

/* True when [pos, end) of |fd| holds only zero bytes (preallocated space). */
static bool only_zeros(int fd, uint64_t pos, uint64_t end)
{
    uint8_t buf[4096];
    while (pos < end) {
        size_t n = end - pos < sizeof buf ? (size_t)(end - pos) : sizeof buf;
        if (read_all(fd, buf, n, pos) < 0)
            return false;
        for (size_t i = 0; i < n; i++)
            if (buf[i])
                return false;
        pos += n;
    }
    return true;
}

int jn__plog_seg_file(const jn_plog_segment_t *seg, const char *ext, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s%s", seg->path, ext);
    return n < 0 || (size_t)n >= cap ? JN_EINVAL : 0;
}

void jn__plog_fsync_dir(jn_plog_t *log)
{
    if (log->dir_fd >= 0 && fsync(log->dir_fd) != 0)
        jn_warn("plog %s: fsync of directory failed: %s", log->dir, strerror(errno));
}

/* ---- segments ----------------------------------------------------------- */

jn_plog_segment_t *jn__plog_seg_new(const char *dir, int64_t base)
{
    char name[PATH_MAX];
    int n = snprintf(name, sizeof name, "%s/%0*" PRId64, dir, NAME_DIGITS, base);
    /* Room for the longest extension. */
    if (n < 0 || (size_t)n + sizeof ".log.cleaned" > sizeof name)
        return NULL;
    jn_plog_segment_t *seg = calloc(1, sizeof *seg + (size_t)n + 1);
    if (!seg)
        return NULL;
    memcpy(seg->path, name, (size_t)n + 1);
    seg->refs = 1;
    seg->base = base;
    seg->end = base;
    seg->last_base = -1;
    seg->max_ts = -1;
    seg->created_ms = -1;
    seg->fd = seg->idx_fd = seg->tidx_fd = -1;
    return seg;
}

static void seg_close_indexes(jn_plog_segment_t *seg)
{
    if (seg->idx_fd >= 0)
        close(seg->idx_fd);
    if (seg->tidx_fd >= 0)
        close(seg->tidx_fd);
    seg->idx_fd = seg->tidx_fd = -1;
}

/* Cuts the active segment's file back to its batches: drops a partial
 * write or the preallocated zeros. */
static void seg_cut(jn_plog_segment_t *seg)
{
    if (ftruncate(seg->fd, (off_t)seg->file_size) != 0)
        jn_error("plog %s.log: truncate failed: %s", seg->path, strerror(errno));
    else
        seg->alloc_size = seg->file_size;
}

void jn__plog_seg_ref(jn_plog_segment_t *seg) { seg->refs++; }

void jn_plog_segment_unref(jn_plog_segment_t *seg)
{
    if (!seg || --seg->refs > 0)
        return;
    if (seg->fd >= 0)
        close(seg->fd);
    seg_close_indexes(seg);
    free(seg->idx);
    free(seg->tidx);
    free(seg);
}

static int idx_push(jn_plog_segment_t *seg, uint32_t rel, uint32_t pos)
{
    if (seg->nidx == seg->idx_cap) {
        size_t cap = seg->idx_cap ? seg->idx_cap * 2 : 64;
        idx_entry_t *p = realloc(seg->idx, cap * sizeof *p);
        if (!p)
            return JN_ENOMEM;
        seg->idx = p;
        seg->idx_cap = cap;
    }
    seg->idx[seg->nidx++] = (idx_entry_t){rel, pos};
    return 0;
}

static int tidx_push(jn_plog_segment_t *seg, int64_t ts, uint32_t rel)
{
    if (seg->ntidx == seg->tidx_cap) {
        size_t cap = seg->tidx_cap ? seg->tidx_cap * 2 : 64;
        tidx_entry_t *p = realloc(seg->tidx, cap * sizeof *p);
        if (!p)
            return JN_ENOMEM;
        seg->tidx = p;
        seg->tidx_cap = cap;
    }
    seg->tidx[seg->ntidx++] = (tidx_entry_t){ts, rel};
    return 0;
}

/* Accounts one batch of |size| bytes at |pos| into |seg|'s indexes and
 * summary. The same rule serves appends and rebuilds, so a rebuilt index
 * equals the one written while appending. An index entry that cannot be
 * allocated is skipped: the index is sparse anyway. */
void jn__plog_seg_note_batch(jn_plog_segment_t *seg, uint32_t interval, uint64_t pos, size_t size,
                             const jn_batch_info_t *bi)
{
    if (bi->max_timestamp > seg->max_ts)
        seg->max_ts = bi->max_timestamp;
    if (pos > 0 && seg->since_index >= interval) {
        uint32_t rel = (uint32_t)(bi->base_offset - seg->base);
        if (idx_push(seg, rel, (uint32_t)pos) == 0) {
            seg->since_index = 0;
            if (seg->ntidx == 0 || seg->max_ts > seg->tidx[seg->ntidx - 1].ts)
                (void)tidx_push(seg, seg->max_ts, rel);
        }
    }
    seg->since_index += size;
    seg->last_base = bi->base_offset;
    seg->end = bi->base_offset + bi->last_offset_delta + 1;
}

/* Adds the time entry that seals a segment: its largest timestamp, so a
 * sealed segment's last time entry always holds it. */
void jn__plog_seg_seal_time(jn_plog_segment_t *seg)
{
    if (seg->last_base >= 0 && (seg->ntidx == 0 || seg->max_ts > seg->tidx[seg->ntidx - 1].ts))
        (void)tidx_push(seg, seg->max_ts, (uint32_t)(seg->last_base - seg->base));
}

/* Position to start scanning for |offset|: the last index entry at or
 * below it, or the segment start. */
static uint64_t seg_lookup(const jn_plog_segment_t *seg, int64_t offset)
{
    if (offset <= seg->base || seg->nidx == 0)
        return 0;
    int64_t rel = offset - seg->base;
    size_t lo = 0, hi = seg->nidx; /* first entry with rel > target */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((int64_t)seg->idx[mid].rel <= rel)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == 0 ? 0 : seg->idx[lo - 1].pos;
}

static void encode_idx(uint8_t *p, const idx_entry_t *e)
{
    jn_store_be32(p, e->rel);
    jn_store_be32(p + 4, e->pos);
}

static void encode_tidx(uint8_t *p, const tidx_entry_t *e)
{
    jn_store_be64(p, (uint64_t)e->ts);
    jn_store_be32(p + 8, e->rel);
}

/* Appends the index entries not yet in the files, INDEX_WRITE_RUN of them
 * per write. The entries live in memory; the files only spare recovery a
 * walk of the .log (they may trail it, see INDEXES above), so a failure is
 * logged and costs a rebuild at the next open. */
static void seg_write_indexes(jn_plog_segment_t *seg)
{
    uint8_t b[INDEX_WRITE_RUN * TIDX_SIZE];
    while (seg->idx_fd >= 0 && seg->idx_written < seg->nidx) {
        size_t n = 0, first = seg->idx_written;
        for (; n < INDEX_WRITE_RUN && first + n < seg->nidx; n++)
            encode_idx(b + n * IDX_SIZE, &seg->idx[first + n]);
        if (jn__plog_write_all(seg->idx_fd, b, n * IDX_SIZE, (uint64_t)first * IDX_SIZE) < 0) {
            jn_warn("plog %s.index: write failed: %s", seg->path, strerror(errno));
            break;
        }
        seg->idx_written += n;
    }
    while (seg->tidx_fd >= 0 && seg->tidx_written < seg->ntidx) {
        size_t n = 0, first = seg->tidx_written;
        for (; n < INDEX_WRITE_RUN && first + n < seg->ntidx; n++)
            encode_tidx(b + n * TIDX_SIZE, &seg->tidx[first + n]);
        if (jn__plog_write_all(seg->tidx_fd, b, n * TIDX_SIZE, (uint64_t)first * TIDX_SIZE) < 0) {
            jn_warn("plog %s.timeindex: write failed: %s", seg->path, strerror(errno));
            break;
        }
        seg->tidx_written += n;
    }
}

/* The flush's share of index writing: only once a run of entries is
 * pending, so that a busy log writes its indexes every ~64 entries instead
 * of two small writes every few publishes. Sealing and closing write the
 * rest. */
static void seg_write_indexes_lazily(jn_plog_segment_t *seg)
{
    if (seg->nidx - seg->idx_written >= INDEX_WRITE_RUN || seg->ntidx - seg->tidx_written >= INDEX_WRITE_RUN)
        seg_write_indexes(seg);
}

/* Replaces both index files with the in-memory entries. With |keep_open|
 * the descriptors stay open for appends (active segment). */
int jn__plog_seg_rewrite_indexes(jn_plog_segment_t *seg, bool keep_open)
{
    char name[PATH_MAX];
    int rc = 0;
    seg_close_indexes(seg);
    seg->idx_written = seg->tidx_written = 0;
    if (jn__plog_seg_file(seg, ".index", name, sizeof name) < 0)
        return JN_EIO;
    seg->idx_fd = open(name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (jn__plog_seg_file(seg, ".timeindex", name, sizeof name) < 0)
        return JN_EIO;
    seg->tidx_fd = open(name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (seg->idx_fd < 0 || seg->tidx_fd < 0) {
        jn_warn("plog %s: cannot create index files: %s", seg->path, strerror(errno));
        rc = JN_EIO;
    } else {
        seg_write_indexes(seg);
        if (seg->idx_written < seg->nidx || seg->tidx_written < seg->ntidx)
            rc = JN_EIO;
    }
    if (!keep_open)
        seg_close_indexes(seg);
    return rc;
}

/* ---- reading segment bytes ---------------------------------------------- */


/* Reads [pos, pos + n) of |seg|, from the file and, for the active segment,
 * from the tail buffer beyond the file. */
static int seg_read(const jn_plog_t *log, const jn_plog_segment_t *seg, void *dst, size_t n,
                    uint64_t pos)
{
    uint8_t *d = dst;
    if (pos > seg->size || n > seg->size - pos)
        return JN_EIO;
    if (pos < seg->file_size) {
        size_t k = seg->file_size - pos < n ? (size_t)(seg->file_size - pos) : n;
        if (read_all(seg->fd, d, k, pos) < 0) {
            jn_error("plog %s.log: read failed: %s", seg->path, strerror(errno));
            return JN_EIO;
        }
        d += k;
        n -= k;
        pos += k;
    }
    if (n > 0) {
        if (!log || seg != active_seg(log))
            return JN_EIO;
        memcpy(d, log->tail.data + (pos - seg->file_size), n);
    }
    return 0;
}


void jn__plog_scan_init(scanner_t *s, const jn_plog_t *log, const jn_plog_segment_t *seg,
                        uint64_t pos, uint64_t limit)
{
    memset(s, 0, sizeof *s);
    s->log = log;
    s->seg = seg;
    s->pos = pos;
    s->limit = limit;
}

void jn__plog_scan_free(scanner_t *s) { free(s->buf); }

static int scan_fill(scanner_t *s, size_t n)
{
    if (s->buf_len > 0 && s->pos >= s->buf_pos && s->pos + n <= s->buf_pos + s->buf_len)
        return 0;
    size_t want = n < SCAN_CHUNK ? SCAN_CHUNK : n;
    if (want > s->limit - s->pos)
        want = (size_t)(s->limit - s->pos);
    if (want > s->cap) {
        uint8_t *p = realloc(s->buf, want);
        if (!p)
            return JN_ENOMEM;
        s->buf = p;
        s->cap = want;
    }
    s->buf_len = 0;
    int rc = seg_read(s->log, s->seg, s->buf, want, s->pos);
    if (rc < 0)
        return rc;
    s->buf_pos = s->pos;
    s->buf_len = want;
    return 0;
}

/* Returns the next batch's total size with |bi| filled and *batch pointing
 * at its bytes (valid until the next call), 0 at the end, JN_EPARTIAL when
 * the bytes end inside a batch, JN_EPROTO / JN_ETOOBIG for an invalid
 * header, JN_EIO, JN_ENOMEM. Does not advance: see scan_skip. */
int jn__plog_scan_next(scanner_t *s, jn_batch_info_t *bi, const uint8_t **batch)
{
    if (s->pos >= s->limit)
        return 0;
    uint64_t left = s->limit - s->pos;
    if (left < JN_BATCH_HEADER_SIZE)
        return JN_EPARTIAL;
    int rc = scan_fill(s, JN_BATCH_HEADER_SIZE);
    if (rc < 0)
        return rc;
    rc = jn_batch_parse(s->buf + (s->pos - s->buf_pos), JN_BATCH_HEADER_SIZE, SCAN_MAX, bi);
    if (rc < 0 && rc != JN_EPARTIAL)
        return rc;
    size_t total = jn_batch_total_size(bi);
    if (total > left)
        return JN_EPARTIAL;
    rc = scan_fill(s, total);
    if (rc < 0)
        return rc;
    *batch = s->buf + (s->pos - s->buf_pos);
    return (int)total;
}

void jn__plog_scan_skip(scanner_t *s, size_t n) { s->pos += n; }

/* Reads and parses the batch header at |pos|; returns its total size. */
static int read_header(const jn_plog_t *log, const jn_plog_segment_t *seg, uint64_t pos,
                       jn_batch_info_t *bi)
{
    uint8_t h[JN_BATCH_HEADER_SIZE];
    if (pos > seg->size || seg->size - pos < JN_BATCH_HEADER_SIZE)
        return JN_EIO;
    int rc = seg_read(log, seg, h, sizeof h, pos);
    if (rc < 0)
        return rc;
    rc = jn_batch_parse(h, sizeof h, SCAN_MAX, bi);
    if (rc < 0 && rc != JN_EPARTIAL)
        return JN_EIO;
    size_t total = jn_batch_total_size(bi);
    if (total > seg->size - pos)
        return JN_EIO;
    return (int)total;
}

static int seg_repair(const jn_plog_t *log, jn_plog_segment_t *seg, bool at_open);

/* Position of the indexed batch at or below |offset|. The entry used is
 * checked against the batch header it points at: a sealed segment's index
 * is only spot-checked at open, so a wrong entry found here gets the
 * segment's indexes rebuilt on the spot. */
static int seg_index_pos(const jn_plog_t *log, jn_plog_segment_t *seg, int64_t offset,
                         uint64_t *pos)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        uint64_t p = seg_lookup(seg, offset);
        if (p == 0) {
            *pos = 0;
            return 0;
        }
        size_t lo = 0, hi = seg->nidx; /* the entry seg_lookup used */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (seg->idx[mid].pos <= p)
                lo = mid + 1;
            else
                hi = mid;
        }
        jn_batch_info_t bi;
        if (read_header(log, seg, p, &bi) >= 0 &&
            bi.base_offset == seg->base + (int64_t)seg->idx[lo - 1].rel) {
            *pos = p;
            return 0;
        }
        /* The active segment's index was built by this process: never wrong. */
        if (seg == active_seg(log))
            return JN_EIO;
        jn_warn("plog %s.index: entry for position %" PRIu64 " is wrong, rebuilding", seg->path, p);
        int rc = seg_repair(log, seg, false);
        if (rc < 0)
            return rc;
    }
    return JN_EIO;
}

/* Finds in |seg| the first batch whose last offset is >= |offset|.
 * Returns 1 with *pos set, 0 when there is none in this segment, JN_EIO. */
static int seg_find(const jn_plog_t *log, jn_plog_segment_t *seg, int64_t offset, uint64_t *pos)
{
    uint64_t p;
    int rc = seg_index_pos(log, seg, offset, &p);
    if (rc < 0)
        return rc;
    jn_batch_info_t bi;
    while (p < seg->size) {
        rc = read_header(log, seg, p, &bi);
        if (rc < 0) {
            jn_error("plog %s.log: bad batch header at %" PRIu64, seg->path, p);
            return JN_EIO;
        }
        if (bi.base_offset + bi.last_offset_delta >= offset) {
            *pos = p;
            return 1;
        }
        p += (uint64_t)rc;
    }
    return 0;
}

/* Index of the segment that may hold |offset|: the last with base <= it. */
static size_t seg_index_for(const jn_plog_t *log, int64_t offset)
{
    size_t lo = 0, hi = log->nsegs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (log->segs[mid]->base <= offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == 0 ? 0 : lo - 1;
}

/* Locates the first batch holding an offset >= |offset|. Returns 1 with
 * *si and *pos set, 0 when there is none (offset at the end), or an error. */
static int locate(jn_plog_t *log, int64_t offset, size_t *si, uint64_t *pos)
{
    for (size_t i = seg_index_for(log, offset); i < log->nsegs; i++) {
        int rc = seg_find(log, log->segs[i], offset, pos);
        if (rc != 0) {
            *si = i;
            return rc;
        }
    }
    return 0;
}

/* ---- recovery ----------------------------------------------------------- */

/* Loads an index file into memory; JN_ENOENT when missing, JN_ECORRUPT when
 * its size is not a multiple of |entry| or implausible for the segment. */
static int load_file(const jn_plog_segment_t *seg, const char *ext, size_t entry, uint8_t **out,
                     size_t *count)
{
    char name[PATH_MAX];
    *out = NULL;
    *count = 0;
    if (jn__plog_seg_file(seg, ext, name, sizeof name) < 0)
        return JN_EIO;
    int fd = open(name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? JN_ENOENT : JN_EIO;
    int rc = JN_ECORRUPT;
    struct stat st;
    if (fstat(fd, &st) != 0)
        goto done;
    uint64_t n = (uint64_t)st.st_size;
    /* At most one entry per smallest batch: bounds the allocation. */
    if (n % entry != 0 || n / entry > seg->file_size / JN_BATCH_HEADER_SIZE + 1)
        goto done;
    if (n > 0) {
        *out = malloc((size_t)n);
        if (!*out) {
            rc = JN_ENOMEM;
            goto done;
        }
        if (read_all(fd, *out, (size_t)n, 0) < 0) {
            free(*out);
            *out = NULL;
            rc = JN_ECORRUPT;
            goto done;
        }
    }
    *count = (size_t)(n / entry);
    rc = 0;
done:
    close(fd);
    return rc;
}

/* Loads and checks a sealed segment's indexes (rule 2 at the top). Returns
 * 0 when they are valid, with end, last_base and max_ts set. */
static int seg_load_trusted(jn_plog_segment_t *seg)
{
    uint8_t *raw = NULL, *traw = NULL;
    size_t n = 0, tn = 0;
    int rc = load_file(seg, ".index", IDX_SIZE, &raw, &n);
    if (rc < 0)
        goto fail;
    rc = load_file(seg, ".timeindex", TIDX_SIZE, &traw, &tn);
    if (rc < 0)
        goto fail;
    rc = JN_ECORRUPT;
    for (size_t i = 0; i < n; i++) {
        idx_entry_t e = {jn_load_be32(raw + i * IDX_SIZE), jn_load_be32(raw + i * IDX_SIZE + 4)};
        if (e.pos == 0 || e.pos >= seg->file_size)
            goto fail;
        if (i > 0 && (e.rel <= seg->idx[i - 1].rel || e.pos <= seg->idx[i - 1].pos))
            goto fail;
        if (idx_push(seg, e.rel, e.pos) < 0) {
            rc = JN_ENOMEM;
            goto fail;
        }
    }
    for (size_t i = 0; i < tn; i++) {
        tidx_entry_t e = {(int64_t)jn_load_be64(traw + i * TIDX_SIZE),
                          jn_load_be32(traw + i * TIDX_SIZE + 8)};
        if (i > 0 && (e.ts <= seg->tidx[i - 1].ts || e.rel < seg->tidx[i - 1].rel))
            goto fail;
        if (tidx_push(seg, e.ts, e.rel) < 0) {
            rc = JN_ENOMEM;
            goto fail;
        }
    }
    /* Walk from the last indexed batch to the end of the file. */
    uint64_t pos = n ? seg->idx[n - 1].pos : 0;
    int64_t expect = n ? seg->base + seg->idx[n - 1].rel : seg->base;
    scanner_t s;
    jn__plog_scan_init(&s, NULL, seg, pos, seg->file_size);
    jn_batch_info_t bi;
    const uint8_t *p;
    int64_t max_ts = tn ? seg->tidx[tn - 1].ts : -1;
    bool first = true;
    int r;
    while ((r = jn__plog_scan_next(&s, &bi, &p)) > 0) {
        /* An entry names its batch exactly; without one, compaction may
         * have removed the segment's first batches. */
        if ((first && n > 0) ? bi.base_offset != expect : bi.base_offset < expect)
            break;
        first = false;
        seg->last_base = bi.base_offset;
        seg->end = expect = bi.base_offset + bi.last_offset_delta + 1;
        if (bi.max_timestamp > max_ts)
            max_ts = bi.max_timestamp;
        jn__plog_scan_skip(&s, (size_t)r);
    }
    jn__plog_scan_free(&s);
    if (r != 0 || (first && n > 0))
        goto fail;
    if (tn > 0 && seg->base + seg->tidx[tn - 1].rel > seg->end)
        goto fail;
    seg->max_ts = seg->file_size > 0 ? max_ts : -1;
    rc = 0;
fail:
    free(raw);
    free(traw);
    return rc;
}

/* Walks every batch of |seg| from position 0 up to |limit|, rebuilding the
 * indexes and summary. With |strict| (the last segment) CRCs are checked
 * and batch offsets must be contiguous. Returns the position after the last
 * valid batch (or the error of the first invalid one when !strict). */
static int64_t seg_rebuild(const jn_plog_t *log, jn_plog_segment_t *seg, uint64_t limit,
                           bool strict, uint32_t interval, bool *damaged)
{
    if (damaged)
        *damaged = false;
    seg->nidx = seg->ntidx = 0;
    seg->since_index = 0;
    seg->end = seg->base;
    seg->last_base = -1;
    seg->max_ts = -1;
    seg->created_ms = -1;
    scanner_t s;
    jn__plog_scan_init(&s, log, seg, 0, limit);
    jn_batch_info_t bi;
    const uint8_t *p;
    int64_t expect = seg->base;
    int r;
    while ((r = jn__plog_scan_next(&s, &bi, &p)) > 0) {
        if (strict ? bi.base_offset != expect : bi.base_offset < expect) {
            r = JN_ECORRUPT;
            break;
        }
        if (strict && jn_batch_verify_crc(p, (size_t)r) < 0) {
            r = JN_ECORRUPT;
            break;
        }
        if (seg->created_ms < 0)
            seg->created_ms = bi.max_timestamp;
        jn__plog_seg_note_batch(seg, interval, s.pos, (size_t)r, &bi);
        expect = seg->end;
        jn__plog_scan_skip(&s, (size_t)r);
    }
    uint64_t valid = s.pos;
    jn__plog_scan_free(&s);
    if (!strict && r < 0 && r != JN_EIO && r != JN_ENOMEM) {
        /* A sealed segment may end in preallocated zeros when the server
         * stopped before its cut reached the disk (PREALLOCATION); when
         * asked, anything else keeps the batches before it (seg_repair). */
        if (only_zeros(seg->fd, valid, limit)) {
            r = 0;
        } else if (damaged) {
            *damaged = true;
            r = 0;
        }
    }
    if (r == JN_EIO || r == JN_ENOMEM || (!strict && r < 0))
        return r < 0 ? r : JN_EIO;
    return (int64_t)valid;
}

/* Moves [from, end of file) of a sealed segment to "<base>.log.damaged"
 * (kept for whoever investigates) and cuts the segment there. */
static int quarantine(jn_plog_segment_t *seg, uint64_t from)
{
    char name[PATH_MAX], side[PATH_MAX];
    if (jn__plog_seg_file(seg, ".log", name, sizeof name) < 0 || jn__plog_seg_file(seg, ".log.damaged", side, sizeof side) < 0)
        return JN_EIO;
    int out = open(side, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0)
        return JN_EIO;
    uint8_t buf[65536];
    int rc = 0;
    for (uint64_t pos = from; pos < seg->file_size && rc == 0;) {
        size_t n = seg->file_size - pos < sizeof buf ? (size_t)(seg->file_size - pos) : sizeof buf;
        rc = read_all(seg->fd, buf, n, pos);
        if (rc == 0)
            rc = jn__plog_write_all(out, buf, n, pos - from);
        pos += n;
    }
    if (rc == 0 && fdatasync(out) != 0)
        rc = JN_EIO;
    close(out);
    if (rc == 0 && truncate(name, (off_t)from) != 0)
        rc = JN_EIO;
    return rc;
}

/* Rebuilds a sealed segment's indexes from its .log, in memory and on disk.
 * At open (|at_open|), a segment damaged in its middle keeps the batches
 * before the damage: the rest is moved aside (quarantine), the partition
 * opens, and readers go on at the next segment. Later, the same damage is
 * only reported (readers may hold ranges of the file). */
static int seg_repair(const jn_plog_t *log, jn_plog_segment_t *seg, bool at_open)
{
    bool damaged = false;
    int64_t r = seg_rebuild(log, seg, seg->file_size, false, log->cfg.index_interval_bytes,
                            at_open ? &damaged : NULL);
    if (r < 0) {
        jn_error("plog %s: sealed segment unreadable at a batch header", seg->path);
        return r == JN_ENOMEM || r == JN_EIO ? (int)r : JN_ECORRUPT;
    }
    if (damaged) {
        uint64_t cut = seg->file_size - (uint64_t)r;
        if (quarantine(seg, (uint64_t)r) < 0) {
            jn_error("plog %s: cannot move the damaged part aside: %s", seg->path, strerror(errno));
            return JN_ECORRUPT;
        }
        jn_error("plog %s.log: invalid batch at position %" PRId64 " of a sealed segment: its last %" PRIu64
                 " bytes (the records after offset %" PRId64 " up to the next segment) are in %s.log.damaged "
                 "and no longer served",
                 seg->path, r, cut, seg->end - 1, seg->path);
        seg->file_size = seg->alloc_size = seg->size = (uint64_t)r;
    } else if ((uint64_t)r < seg->file_size) {
        char name[PATH_MAX];
        if (jn__plog_seg_file(seg, ".log", name, sizeof name) < 0 || truncate(name, (off_t)r) != 0) {
            jn_error("plog %s: cannot cut preallocated zeros: %s", seg->path, strerror(errno));
            return JN_EIO;
        }
        jn_info("plog %s: cut %" PRIu64 " bytes of preallocated zeros", seg->path, seg->file_size - (uint64_t)r);
        seg->file_size = seg->alloc_size = seg->size = (uint64_t)r;
    }
    jn__plog_seg_seal_time(seg);
    (void)jn__plog_seg_rewrite_indexes(seg, false);
    return 0;
}

static int seg_open_sealed(jn_plog_t *log, jn_plog_segment_t *seg)
{
    char name[PATH_MAX];
    if (jn__plog_seg_file(seg, ".log", name, sizeof name) < 0)
        return JN_EIO;
    seg->fd = open(name, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (seg->fd < 0 || fstat(seg->fd, &st) != 0) {
        jn_error("plog %s: cannot open: %s", name, strerror(errno));
        return JN_EIO;
    }
    seg->file_size = seg->alloc_size = seg->size = (uint64_t)st.st_size;
    int rc = seg_load_trusted(seg);
    if (rc == JN_ENOMEM || rc == JN_EIO)
        return rc;
    if (rc < 0) {
        jn_warn("plog %s: index missing or invalid, rebuilding", name);
        return seg_repair(log, seg, true);
    }
    return 0;
}

/* Opens (creating) the last segment, scans it and cuts the invalid tail. */
static int seg_open_active(jn_plog_t *log, jn_plog_segment_t *seg, bool create)
{
    char name[PATH_MAX];
    if (jn__plog_seg_file(seg, ".log", name, sizeof name) < 0)
        return JN_EIO;
    seg->fd = open(name, O_RDWR | O_CREAT | O_CLOEXEC | (create ? O_TRUNC : 0), 0644);
    struct stat st;
    if (seg->fd < 0 || fstat(seg->fd, &st) != 0) {
        jn_error("plog %s: cannot open: %s", name, strerror(errno));
        return JN_EIO;
    }
    seg->file_size = seg->alloc_size = seg->size = (uint64_t)st.st_size;
    int64_t valid = seg_rebuild(log, seg, seg->file_size, true, log->cfg.index_interval_bytes, NULL);
    if (valid < 0)
        return (int)valid;
    if ((uint64_t)valid < seg->file_size) {
        if (only_zeros(seg->fd, (uint64_t)valid, seg->file_size))
            jn_debug("plog %s: dropped %" PRIu64 " bytes of preallocated zeros after position %" PRId64,
                     name, seg->file_size - (uint64_t)valid, valid);
        else
            jn_warn("plog %s: cut %" PRIu64 " bytes of torn or invalid data after position %" PRId64,
                    name, seg->file_size - (uint64_t)valid, valid);
        if (ftruncate(seg->fd, (off_t)valid) != 0) {
            jn_error("plog %s: truncate failed: %s", name, strerror(errno));
            return JN_EIO;
        }
        seg->file_size = seg->alloc_size = seg->size = (uint64_t)valid;
    }
    int64_t now = jn_clock_now(log->clock);
    if (seg->created_ms > now)
        seg->created_ms = now;
    if (jn__plog_seg_rewrite_indexes(seg, true) < 0 && (seg->idx_fd < 0 || seg->tidx_fd < 0))
        return JN_EIO;
    if (create)
        log->dir_dirty = true;
    return 0;
}

/* Parses "<20 digits>.log". */
static bool parse_segment_name(const char *name, int64_t *base)
{
    if (strlen(name) != NAME_DIGITS + 4 || strcmp(name + NAME_DIGITS, ".log") != 0)
        return false;
    int64_t v = 0;
    for (int i = 0; i < NAME_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        int d = name[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *base = v;
    return true;
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int segs_push(jn_plog_t *log, jn_plog_segment_t *seg)
{
    if (log->nsegs == log->segs_cap) {
        size_t cap = log->segs_cap ? log->segs_cap * 2 : 8;
        jn_plog_segment_t **p = realloc(log->segs, cap * sizeof *p);
        if (!p)
            return JN_ENOMEM;
        log->segs = p;
        log->segs_cap = cap;
    }
    log->segs[log->nsegs++] = seg;
    return 0;
}

/* Lists segment bases in |dir| (sorted) and deletes leftovers of
 * interrupted compactions. */
static int list_segments(const char *dir, int64_t **out, size_t *count)
{
    DIR *d = opendir(dir);
    if (!d)
        return JN_EIO;
    int64_t *bases = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int64_t base;
        if (has_suffix(e->d_name, ".cleaned")) {
            char name[PATH_MAX];
            if (snprintf(name, sizeof name, "%s/%s", dir, e->d_name) < (int)sizeof name)
                (void)unlink(name);
            continue;
        }
        if (!parse_segment_name(e->d_name, &base))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            int64_t *p = realloc(bases, cap * sizeof *p);
            if (!p) {
                rc = JN_ENOMEM;
                break;
            }
            bases = p;
        }
        bases[n++] = base;
    }
    closedir(d);
    if (rc < 0) {
        free(bases);
        return rc;
    }
    if (n > 1)
        qsort(bases, n, sizeof *bases, cmp_i64);
    *out = bases;
    *count = n;
    return 0;
}

/* ---- configuration and the interval timer ------------------------------- */

void jn_plog_config_default(jn_plog_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->segment_bytes = 128u << 20;
    c->segment_ms = 7LL * 24 * 3600 * 1000;
    c->retention_ms = -1;
    c->retention_bytes = -1;
    c->index_interval_bytes = 4096;
    c->max_batch_bytes = 8u << 20;
    c->fsync = JN_FSYNC_INTERVAL;
    c->fsync_interval_ms = 1000;
    c->compact = false;
    c->delete_retention_ms = 24LL * 3600 * 1000;
}

static void sanitize_config(jn_plog_config_t *c)
{
    if (c->segment_bytes == 0)
        c->segment_bytes = 128u << 20;
    if (c->max_batch_bytes == 0 || c->max_batch_bytes > SCAN_MAX)
        c->max_batch_bytes = 8u << 20;
    if (c->fsync_interval_ms <= 0)
        c->fsync_interval_ms = 1000;
    if (c->segment_ms < 0)
        c->segment_ms = 0;
}

static void timer_cb(uv_timer_t *t)
{
    jn_plog_t *log = t->data;
    if (!log)
        return;
    log->interval_due = true;
    (void)jn_plog_flush(log);
}

static void timer_free_cb(uv_handle_t *h) { free(h); }

static void timer_stop(jn_plog_t *log)
{
    if (!log->timer)
        return;
    log->timer->data = NULL;
    uv_timer_stop(log->timer);
    uv_close((uv_handle_t *)log->timer, timer_free_cb);
    log->timer = NULL;
}

static void timer_update(jn_plog_t *log)
{
    if (log->cfg.fsync != JN_FSYNC_INTERVAL) {
        timer_stop(log);
        return;
    }
    if (!log->timer) {
        log->timer = malloc(sizeof *log->timer);
        if (!log->timer || uv_timer_init(log->loop, log->timer) != 0) {
            free(log->timer);
            log->timer = NULL;
            jn_error("plog %s: cannot start the fsync timer", log->dir);
            return;
        }
        log->timer->data = log;
    }
    uint64_t ms = (uint64_t)log->cfg.fsync_interval_ms;
    uv_timer_start(log->timer, timer_cb, ms, ms);
}

void jn_plog_set_config(jn_plog_t *log, const jn_plog_config_t *cfg)
{
    log->cfg = *cfg;
    sanitize_config(&log->cfg);
    timer_update(log);
}

const jn_plog_config_t *jn_plog_config(const jn_plog_t *log) { return &log->cfg; }

/* ---- open and close ----------------------------------------------------- */


static void log_free(jn_plog_t *log)
{
    jn__plog_pass_free(log);
    for (size_t i = 0; i < log->nsegs; i++)
        jn_plog_segment_unref(log->segs[i]);
    free(log->segs);
    jn_buf_free(&log->tail);
    if (log->dir_fd >= 0)
        close(log->dir_fd);
    free(log->dir);
    free(log);
}

int jn_plog_open(uv_loop_t *loop, const char *dir, const jn_plog_config_t *cfg,
                 const jn_clock_t *clock, jn_plog_t **out)
{
    int64_t *bases = NULL;
    size_t nbases = 0;
    jn_plog_t *log = calloc(1, sizeof *log);
    if (!log)
        return JN_ENOMEM;
    log->loop = loop;
    log->dir_fd = -1;
    log->clock = clock ? clock : &jn_clock_real;
    if (cfg)
        log->cfg = *cfg;
    else
        jn_plog_config_default(&log->cfg);
    sanitize_config(&log->cfg);
    jn_list_init(&log->waiters);
    jn_list_init(&log->jobs);
    jn_buf_init(&log->tail, TAIL_MAX);
    int rc = JN_ENOMEM;
    log->dir = strdup(dir);
    if (!log->dir)
        goto fail;
    rc = jn_fs_mkdir_p(dir);
    if (rc < 0)
        goto fail;
    log->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (log->dir_fd < 0) {
        rc = JN_EIO;
        goto fail;
    }
    rc = list_segments(dir, &bases, &nbases);
    if (rc < 0)
        goto fail;
    for (size_t i = 0; i < (nbases ? nbases : 1); i++) {
        jn_plog_segment_t *seg = jn__plog_seg_new(dir, nbases ? bases[i] : 0);
        rc = JN_ENOMEM;
        if (!seg || segs_push(log, seg) < 0) {
            free(seg);
            goto fail;
        }
        bool last = i + 1 >= nbases;
        rc = last ? seg_open_active(log, seg, nbases == 0) : seg_open_sealed(log, seg);
        if (rc < 0)
            goto fail;
    }
    jn_plog_segment_t *act = active_seg(log);
    log->end = log->written_end = log->durable = act->end;
    atomic_store_explicit(&act->written_end, act->end, memory_order_relaxed);
    /* What recovery found may sit in the page cache only (a process crash):
     * make it durable before calling it so. Open runs before serving. */
    if (act->file_size > 0 && log->cfg.fsync != JN_FSYNC_NEVER && fdatasync(act->fd) != 0) {
        rc = JN_EIO;
        goto fail;
    }
    log->cleaned_upto = log->segs[0]->base;
    timer_update(log);
    free(bases);
    *out = log;
    return 0;
fail:
    free(bases);
    log_free(log);
    return rc;
}

static void fire_list(jn_list_t *list, int status)
{
    while (!jn_list_empty(list)) {
        jn_durable_waiter_t *w = jn_container_of(list->next, jn_durable_waiter_t, node);
        jn_list_remove(&w->node);
        w->cb(w, status);
    }
}

static int write_tail(jn_plog_t *log);

/* Moves the waiters below |end| to |out|: collected before anything can
 * call back into the log, fired (fire_list) once the log is left alone. */
static void take_waiters(jn_plog_t *log, int64_t end, jn_list_t *out)
{
    jn_list_t *n, *tmp;
    jn_list_foreach_safe(n, tmp, &log->waiters) {
        jn_durable_waiter_t *w = jn_container_of(n, jn_durable_waiter_t, node);
        if (w->offset < end) {
            jn_list_remove(n);
            jn_list_insert_tail(out, n);
        }
    }
}

/* fdatasyncs on the calling thread what a sync job would cover (sealed
 * segments not synced yet, the active one, the directory). Returns 0 or
 * JN_EIO; on success the flags are cleared. */
static int sync_here(jn_plog_t *log)
{
    int rc = 0;
    for (size_t i = 0; i < log->nsegs; i++) {
        jn_plog_segment_t *seg = log->segs[i];
        if (!seg->needs_sync && i + 1 < log->nsegs)
            continue;
        if (fdatasync(seg->fd) != 0) {
            jn_error("plog %s.log: fdatasync failed: %s", seg->path, strerror(errno));
            rc = JN_EIO;
        } else {
            seg->needs_sync = false;
        }
    }
    if (log->dir_dirty) {
        if (log->dir_fd >= 0 && fsync(log->dir_fd) != 0) {
            jn_error("plog %s: fsync of directory failed: %s", log->dir, strerror(errno));
            rc = JN_EIO;
        } else {
            log->dir_dirty = false;
        }
    }
    return rc;
}

void jn_plog_close(jn_plog_t *log)
{
    if (!log)
        return;
    timer_stop(log);
    while (!jn_list_empty(&log->jobs)) {
        sync_job_t *job = jn_container_of(log->jobs.next, sync_job_t, link);
        jn_list_remove(&job->link);
        job->log = NULL; /* it finishes alone and frees itself */
        log->njobs--;
    }
    jn__plog_clean_detach(log);
    jn_plog_segment_t *act = active_seg(log);
    if (write_tail(log) < 0)
        jn_error("plog %s: %zu bytes lost at close", log->dir, log->tail.len);
    if (act->alloc_size > act->file_size)
        seg_cut(act);
    seg_write_indexes(act);
    if (log->cfg.fsync != JN_FSYNC_NEVER)
        (void)sync_here(log);
    else if (log->dir_dirty)
        jn__plog_fsync_dir(log); /* cheap: the segments' names survive, if not their data */
    jn_list_t pending;
    jn_list_init(&pending);
    while (!jn_list_empty(&log->waiters)) {
        jn_list_t *n = log->waiters.next;
        jn_list_remove(n);
        jn_list_insert_tail(&pending, n);
    }
    log_free(log);
    fire_list(&pending, JN_ECLOSED);
}

static int rm_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return JN_EIO;
    struct dirent *e;
    char name[PATH_MAX];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (snprintf(name, sizeof name, "%s/%s", dir, e->d_name) < (int)sizeof name)
            (void)unlink(name);
    }
    closedir(d);
    return rmdir(dir) == 0 ? 0 : JN_EIO;
}

void jn_plog_destroy(jn_plog_t *log)
{
    if (!log)
        return;
    char *dir = strdup(log->dir);
    log->cfg.fsync = JN_FSYNC_NEVER; /* the files are going away */
    jn_plog_close(log);
    if (dir && rm_files(dir) < 0)
        jn_warn("plog %s: cannot remove the directory", dir);
    free(dir);
}

/* ---- appending ---------------------------------------------------------- */

/* Makes sure zeros are written up to |upto| at least (PREALLOCATION at the
 * top), a chunk ahead. Failing only costs the speed it buys. */
static void seg_prealloc(const jn_plog_t *log, jn_plog_segment_t *seg, uint64_t upto)
{
    if (log->cfg.fsync != JN_FSYNC_ALWAYS || upto <= seg->alloc_size || seg->prealloc_failed)
        return;
    uint64_t to = (upto / PREALLOC_CHUNK + 1) * PREALLOC_CHUNK;
    uint64_t cap = log->cfg.segment_bytes > upto ? log->cfg.segment_bytes : upto;
    if (to > cap)
        to = cap;
    if (write_zeros(seg->fd, seg->alloc_size, to) < 0) {
        jn_warn("plog %s.log: cannot preallocate: %s", seg->path, strerror(errno));
        seg->prealloc_failed = true;
        seg_cut(seg);
        return;
    }
    seg->alloc_size = to;
}

static int write_tail(jn_plog_t *log)
{
    if (log->tail.len == 0)
        return 0;
    jn_plog_segment_t *seg = active_seg(log);
    seg_prealloc(log, seg, seg->file_size + log->tail.len);
    if (jn__plog_write_all(seg->fd, log->tail.data, log->tail.len, seg->file_size) < 0) {
        jn_error("plog %s.log: write failed: %s", seg->path, strerror(errno));
        /* Drop a partial write so the file stays a sequence of batches. */
        seg_cut(seg);
        return JN_EIO;
    }
    seg->file_size += log->tail.len;
    if (seg->alloc_size < seg->file_size)
        seg->alloc_size = seg->file_size;
    jn_buf_reset(&log->tail);
    log->written_end = log->end;
    atomic_store_explicit(&seg->written_end, log->end, memory_order_release);
    return 0;
}

static int roll(jn_plog_t *log)
{
    jn_plog_segment_t *old = active_seg(log);
    if (old->size == 0)
        return 0;
    int rc = write_tail(log);
    if (rc < 0)
        return rc;
    if (old->alloc_size > old->file_size)
        seg_cut(old); /* a sealed segment ends with its last batch */
    jn__plog_seg_seal_time(old);
    seg_write_indexes(old);
    jn_plog_segment_t *seg = jn__plog_seg_new(log->dir, log->end);
    if (!seg)
        return JN_ENOMEM;
    if (segs_push(log, seg) < 0) {
        free(seg);
        return JN_ENOMEM;
    }
    rc = seg_open_active(log, seg, true);
    if (rc < 0) {
        log->nsegs--;
        jn_plog_segment_unref(seg);
        return rc;
    }
    seg_close_indexes(old);
    old->needs_sync = true;
    return 0;
}

int jn_plog_roll(jn_plog_t *log) { return roll(log); }

int64_t jn_plog_append(jn_plog_t *log, const uint8_t *batch, size_t len)
{
    return jn_plog_append_at(log, batch, len, jn_clock_now(log->clock));
}

int64_t jn_plog_append_at(jn_plog_t *log, const uint8_t *batch, size_t len, int64_t now)
{
    jn_batch_info_t bi;
    if (len > log->cfg.max_batch_bytes)
        return JN_ETOOBIG;
    int rc = jn_batch_parse(batch, len, log->cfg.max_batch_bytes, &bi);
    if (rc == JN_ETOOBIG)
        return JN_ETOOBIG;
    if (rc < 0 || (size_t)rc != len)
        return JN_EPROTO;
    if (log->end > INT64_MAX - 1 - bi.last_offset_delta)
        return JN_ERANGE;

    jn_plog_segment_t *seg = active_seg(log);
    if (seg->size > 0 &&
        (seg->size + len > log->cfg.segment_bytes || seg->size + len > UINT32_MAX ||
         log->end + bi.last_offset_delta - seg->base > (int64_t)UINT32_MAX ||
         (log->cfg.segment_ms > 0 && now - seg->created_ms >= log->cfg.segment_ms))) {
        rc = roll(log);
        if (rc < 0)
            return rc == JN_ENOMEM ? JN_ENOMEM : JN_EIO;
        seg = active_seg(log);
    }
    if (log->tail.len + len > TAIL_MAX && write_tail(log) < 0)
        return JN_EIO;

    uint64_t pos = seg->size;
    bi.base_offset = log->end;
    uint8_t head[16];
    memcpy(head, batch, sizeof head);
    jn_batch_set_base_offset(head, log->end);
    jn_store_be32(head + 12, 0);
    if (len > TAIL_MAX) {
        /* Larger than the tail: written directly (the tail is empty now). */
        seg_prealloc(log, seg, pos + len);
        if (jn__plog_write_all(seg->fd, head, sizeof head, pos) < 0 ||
            jn__plog_write_all(seg->fd, batch + sizeof head, len - sizeof head, pos + sizeof head) < 0) {
            jn_error("plog %s.log: write failed: %s", seg->path, strerror(errno));
            seg_cut(seg);
            return JN_EIO;
        }
        seg->file_size += len;
        if (seg->alloc_size < seg->file_size)
            seg->alloc_size = seg->file_size;
    } else {
        if (jn_buf_append(&log->tail, head, sizeof head) < 0 ||
            jn_buf_append(&log->tail, batch + sizeof head, len - sizeof head) < 0) {
            log->tail.len = (size_t)(pos - seg->file_size);
            return JN_ENOMEM;
        }
    }
    if (seg->created_ms < 0)
        seg->created_ms = now;
    jn__plog_seg_note_batch(seg, log->cfg.index_interval_bytes, pos, len, &bi);
    seg->size += len;
    log->end = seg->end;
    if (log->tail.len == 0) {
        log->written_end = log->end;
        atomic_store_explicit(&seg->written_end, log->end, memory_order_release);
    }
    return bi.base_offset;
}

/* ---- fsync -------------------------------------------------------------- */

static void sync_work(uv_work_t *req)
{
    sync_job_t *job = jn_container_of(req, sync_job_t, req);
    /* Everything in the file when fdatasync starts is covered: records
     * written since the job was queued are answered by this fsync too. */
    if (job->nsegs > 0) {
        int64_t w = atomic_load_explicit(&job->segs[job->nsegs - 1]->written_end, memory_order_acquire);
        if (w > job->end)
            job->end = w;
    }
    uint64_t t0 = jn_mono_ns();
    for (size_t i = 0; i < job->nsegs; i++) {
        if (fdatasync(job->segs[i]->fd) != 0) {
            job->status = JN_EIO;
            job->err = errno;
        }
    }
    if (job->dir_fd >= 0 && fsync(job->dir_fd) != 0) {
        job->status = JN_EIO;
        job->err = errno;
    }
    job->ns = jn_mono_ns() - t0;
}

static void maybe_sync(jn_plog_t *log);

static void sync_after(uv_work_t *req, int status)
{
    sync_job_t *job = jn_container_of(req, sync_job_t, req);
    jn_plog_t *log = job->log;
    if (log) {
        jn_list_remove(&job->link);
        log->njobs--;
    }
    if (status != 0 && job->status == 0)
        job->status = JN_EIO;
    bool ok = job->status == 0;
    for (size_t i = 0; i < job->nsegs; i++) {
        jn_plog_segment_t *seg = job->segs[i];
        if (!ok && log && seg->refs > 1)
            seg->needs_sync = true;
        jn_plog_segment_unref(seg);
    }
    if (job->dir_fd >= 0)
        close(job->dir_fd);
    int64_t end = job->end;
    int err = job->err;
    uint64_t ns = job->ns;
    free(job->segs);
    free(job);
    if (!log)
        return;
    log->stats.syncs++;
    log->stats.failures += !ok;
    log->stats.sync_ns += ns;
    if (ok) {
        if (end > log->durable)
            log->durable = end;
    } else {
        jn_error("plog %s: fsync failed: %s", log->dir, err ? strerror(err) : "cancelled");
        log->dir_dirty = true;
    }
    /* Collect the waiters this job answered before anything can call back
     * into the log; fire them last, touching the log no more. */
    jn_list_t done;
    jn_list_init(&done);
    take_waiters(log, end, &done);
    (void)jn_plog_flush(log);
    fire_list(&done, ok ? 0 : JN_EIO);
}

static bool sealed_needs_sync(const jn_plog_t *log)
{
    for (size_t i = 0; i + 1 < log->nsegs; i++)
        if (log->segs[i]->needs_sync)
            return true;
    return false;
}

static bool has_unsynced(const jn_plog_t *log)
{
    if (log->written_end > log->durable || log->dir_dirty)
        return true;
    for (size_t i = 0; i < log->nsegs; i++)
        if (log->segs[i]->needs_sync)
            return true;
    return false;
}

static void maybe_sync(jn_plog_t *log)
{
    if (log->njobs >= SYNC_PIPELINE)
        return;
    /* ALWAYS syncs whatever was written, waited for or not (a Kafka acks=1
     * producer or an MQTT QoS 0 publisher is not answered after the fsync,
     * but its records are on disk as soon as group commit gets to them);
     * INTERVAL syncs when the interval passed or someone waits. */
    if (jn_list_empty(&log->waiters) && !log->interval_due && log->cfg.fsync != JN_FSYNC_ALWAYS)
        return;
    if (!has_unsynced(log)) {
        log->interval_due = false;
        return;
    }
    /* Everything written is already covered by a job in flight. */
    if (log->njobs > 0 && log->written_end <= log->sync_end && !log->dir_dirty && !sealed_needs_sync(log))
        return;
    sync_job_t *job = calloc(1, sizeof *job);
    if (!job)
        return;
    job->segs = calloc(log->nsegs, sizeof *job->segs);
    if (!job->segs) {
        free(job);
        return;
    }
    for (size_t i = 0; i < log->nsegs; i++) {
        jn_plog_segment_t *seg = log->segs[i];
        if (seg->needs_sync || i + 1 == log->nsegs) {
            jn__plog_seg_ref(seg);
            seg->needs_sync = false;
            job->segs[job->nsegs++] = seg;
        }
    }
    job->dir_fd = log->dir_dirty ? dup(log->dir_fd) : -1;
    log->dir_dirty = false;
    job->end = log->written_end;
    job->log = log;
    if (uv_queue_work(log->loop, &job->req, sync_work, sync_after) != 0) {
        jn_error("plog %s: cannot queue fsync", log->dir);
        for (size_t i = 0; i < job->nsegs; i++) {
            job->segs[i]->needs_sync = job->segs[i] != active_seg(log);
            jn_plog_segment_unref(job->segs[i]);
        }
        if (job->dir_fd >= 0) {
            close(job->dir_fd);
            log->dir_dirty = true;
        }
        free(job->segs);
        free(job);
        return;
    }
    jn_list_insert_tail(&log->jobs, &job->link);
    log->njobs++;
    if (job->end > log->sync_end)
        log->sync_end = job->end;
    log->interval_due = false;
}

int jn_plog_flush(jn_plog_t *log)
{
    int rc = write_tail(log);
    seg_write_indexes_lazily(active_seg(log));
    maybe_sync(log);
    return rc;
}

static void wait_arm(jn_plog_t *log, jn_durable_waiter_t *w, int64_t offset, jn_durable_cb cb, bool at_once)
{
    w->cb = cb;
    w->offset = offset;
    if (offset < log->durable || at_once) {
        jn_list_init(&w->node);
        cb(w, 0);
        return;
    }
    jn_list_insert_tail(&log->waiters, &w->node);
}

int jn_plog_sync(jn_plog_t *log)
{
    int rc = write_tail(log);
    if (rc < 0)
        return rc;
    seg_write_indexes_lazily(active_seg(log));
    int64_t end = log->written_end;
    rc = sync_here(log);
    if (rc < 0)
        return rc;
    if (end > log->durable)
        log->durable = end;
    jn_list_t done;
    jn_list_init(&done);
    take_waiters(log, end, &done);
    fire_list(&done, 0);
    return 0;
}

void jn_plog_wait_durable(jn_plog_t *log, jn_durable_waiter_t *w, int64_t offset, jn_durable_cb cb)
{
    wait_arm(log, w, offset, cb, log->cfg.fsync != JN_FSYNC_ALWAYS);
}

void jn_plog_wait_synced(jn_plog_t *log, jn_durable_waiter_t *w, int64_t offset, jn_durable_cb cb)
{
    wait_arm(log, w, offset, cb, log->cfg.fsync == JN_FSYNC_NEVER);
}

void jn_plog_cancel_durable(jn_durable_waiter_t *w)
{
    if (jn_list_linked(&w->node))
        jn_list_remove(&w->node);
}

/* ---- offsets and sizes -------------------------------------------------- */

int64_t jn_plog_start_offset(const jn_plog_t *log) { return log->segs[0]->base; }

void jn_plog_get_sync_stats(const jn_plog_t *log, jn_plog_sync_stats_t *st) { *st = log->stats; }
int64_t jn_plog_end_offset(const jn_plog_t *log) { return log->end; }
int64_t jn_plog_durable_offset(const jn_plog_t *log) { return log->durable; }
int64_t jn_plog_segment_count(const jn_plog_t *log) { return (int64_t)log->nsegs; }

uint64_t jn_plog_size_bytes(const jn_plog_t *log)
{
    uint64_t n = 0;
    for (size_t i = 0; i < log->nsegs; i++)
        n += log->segs[i]->size;
    return n;
}

/* ---- reads -------------------------------------------------------------- */

int jn_plog_read(jn_plog_t *log, int64_t offset, size_t max_bytes, jn_buf_t *out)
{
    if (offset < jn_plog_start_offset(log) || offset > log->end)
        return JN_ERANGE;
    size_t si;
    uint64_t pos;
    int rc = locate(log, offset, &si, &pos);
    if (rc <= 0)
        return rc;
    size_t copied = 0;
    while (si < log->nsegs && (copied == 0 || copied < max_bytes)) {
        jn_plog_segment_t *seg = log->segs[si];
        if (pos >= seg->size) {
            si++;
            pos = 0;
            continue;
        }
        /* Read as much as the budget allows in one go, then keep whole
         * batches only. The first batch is taken whole whatever its size. */
        size_t want = max_bytes - copied;
        if (seg->size - pos < want)
            want = (size_t)(seg->size - pos);
        if (copied == 0) {
            jn_batch_info_t bi;
            int total = read_header(log, seg, pos, &bi);
            if (total < 0)
                return total;
            if ((size_t)total > want)
                want = (size_t)total;
            if (out->max - out->len < want && out->max - out->len >= (size_t)total)
                want = out->max - out->len;
        } else if (out->max - out->len < want) {
            want = out->max - out->len;
        }
        if (want < JN_BATCH_LOG_OVERHEAD)
            break;
        size_t start = out->len;
        rc = jn_buf_reserve(out, want);
        if (rc < 0) {
            if (copied > 0)
                break;
            return rc;
        }
        rc = seg_read(log, seg, out->data + start, want, pos);
        if (rc < 0) {
            if (copied > 0)
                break;
            return rc;
        }
        size_t q = 0;
        while (want - q >= JN_BATCH_LOG_OVERHEAD) {
            uint64_t total = (uint64_t)jn_load_be32(out->data + start + q + 8) + JN_BATCH_LOG_OVERHEAD;
            if (total < JN_BATCH_HEADER_SIZE || total > want - q)
                break;
            q += (size_t)total;
        }
        out->len = start + q;
        copied += q;
        pos += q;
        if (q == 0) {
            if (copied == 0)
                return JN_EIO;
            break;
        }
        if (q < want)
            break; /* a batch did not fit the budget */
    }
    return (int)copied;
}

int jn_plog_slice(jn_plog_t *log, int64_t offset, size_t max_bytes, jn_plog_slice_t *out)
{
    memset(out, 0, sizeof *out);
    out->fd = -1;
    if (offset < jn_plog_start_offset(log) || offset > log->end)
        return JN_ERANGE;
    size_t si;
    uint64_t pos;
    int rc = locate(log, offset, &si, &pos);
    if (rc <= 0)
        return rc;
    jn_plog_segment_t *seg = log->segs[si];
    /* One range never straddles the file and the tail: batches are written
     * whole, so the boundary is between batches. */
    bool in_tail = pos >= seg->file_size;
    uint64_t limit = in_tail ? seg->size : seg->file_size;
    uint64_t end = pos;
    jn_batch_info_t bi;
    while (end < limit) {
        int total = read_header(log, seg, end, &bi);
        if (total < 0) {
            if (end == pos)
                return total;
            break;
        }
        if (end > pos && end - pos + (uint64_t)total > max_bytes)
            break;
        end += (uint64_t)total;
    }
    jn__plog_seg_ref(seg);
    out->seg = seg;
    out->pos = pos;
    out->len = (size_t)(end - pos);
    if (in_tail) {
        out->mem = log->tail.data + (pos - seg->file_size);
    } else {
        out->fd = seg->fd;
    }
    return 0;
}

int64_t jn_plog_offset_for_time(jn_plog_t *log, int64_t ts)
{
    for (size_t i = 0; i < log->nsegs; i++) {
        jn_plog_segment_t *seg = log->segs[i];
        if (seg->size == 0 || seg->max_ts < ts)
            continue;
        /* Start at the batch of the last time entry below |ts|. */
        uint64_t pos = 0;
        for (size_t k = seg->ntidx; k-- > 0;) {
            if (seg->tidx[k].ts < ts) {
                if (seg_index_pos(log, seg, seg->base + seg->tidx[k].rel, &pos) < 0)
                    pos = 0;
                break;
            }
        }
        scanner_t s;
        jn__plog_scan_init(&s, log, seg, pos, seg->size);
        jn_batch_info_t bi;
        const uint8_t *p;
        int r;
        int64_t found = -1;
        while (found < 0 && (r = jn__plog_scan_next(&s, &bi, &p)) > 0) {
            if (bi.max_timestamp >= ts) {
                jn_batch_iter_t it;
                jn_record_t rec;
                if ((bi.attributes & JN_BATCH_TIMESTAMP_LOG_APPEND) ||
                    jn_batch_iter_init(&it, p, (size_t)r, false) < 0) {
                    found = bi.base_offset;
                    break;
                }
                while (jn_batch_iter_next(&it, &rec) > 0) {
                    if (rec.timestamp >= ts) {
                        found = rec.offset;
                        break;
                    }
                }
            }
            jn__plog_scan_skip(&s, (size_t)r);
        }
        jn__plog_scan_free(&s);
        if (found >= 0)
            return found;
    }
    return log->end;
}

/* ---- retention ---------------------------------------------------------- */

static void delete_oldest(jn_plog_t *log)
{
    jn_plog_segment_t *seg = log->segs[0];
    static const char *const exts[] = {".log", ".index", ".timeindex"};
    char name[PATH_MAX];
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (jn__plog_seg_file(seg, exts[i], name, sizeof name) == 0 && unlink(name) != 0 && errno != ENOENT)
            jn_warn("plog %s: unlink failed: %s", name, strerror(errno));
    memmove(log->segs, log->segs + 1, (log->nsegs - 1) * sizeof *log->segs);
    log->nsegs--;
    jn_info("plog %s: deleted segment %" PRId64 " (%" PRIu64 " bytes)", log->dir, seg->base,
            seg->size);
    /* Slices and sync jobs may still hold it: the fd lives until they drop it. */
    jn_plog_segment_unref(seg);
}


int jn_plog_delete_before(jn_plog_t *log, int64_t offset)
{
    int n = 0;
    while (log->nsegs > 1 && log->segs[1]->base <= offset) {
        delete_oldest(log);
        n++;
    }
    return n;
}

/* Maintenance runs on the loop thread (a broker timer), so each call does
 * a bounded amount of work and leaves the rest to the next tick:
 *   - retention deletes at most MAINTAIN_DELETE_MAX segments (unlinks);
 *   - compaction advances by one step (jn__plog_compact_step in
 *     plog_compact.c): either map the keys of up to MAINTAIN_MAP_BYTES of
 *     segments (at least one segment), or
 *     rewrite one sealed segment into its .cleaned file (reads and writes
 *     in the page cache). Its fdatasync and the directory fsync after the
 *     rename run on the thread pool (a clean job, see DURABILITY); no step
 *     starts while one is in flight.
 * A big compaction therefore takes many ticks but stalls the loop for at
 * most one segment's read and rewrite at a time, and never for an fsync. */
#define MAINTAIN_DELETE_MAX 64

int jn_plog_maintain(jn_plog_t *log)
{
    int n = 0;
    int64_t now = jn_clock_now(log->clock);
    jn_plog_segment_t *act = active_seg(log);
    if (log->cfg.segment_ms > 0 && act->size > 0 && now - act->created_ms >= log->cfg.segment_ms &&
        roll(log) < 0)
        jn_warn("plog %s: roll by age failed", log->dir);
    if (log->cfg.retention_ms >= 0) {
        while (n < MAINTAIN_DELETE_MAX && log->nsegs > 1 &&
               log->segs[0]->max_ts < now - log->cfg.retention_ms) {
            delete_oldest(log);
            n++;
        }
    }
    if (log->cfg.retention_bytes >= 0) {
        uint64_t total = jn_plog_size_bytes(log);
        while (n < MAINTAIN_DELETE_MAX && log->nsegs > 1 && total > (uint64_t)log->cfg.retention_bytes) {
            total -= log->segs[0]->size;
            delete_oldest(log);
            n++;
        }
    }
    int rewritten = jn__plog_compact_step(log);
    if (rewritten > 0)
        n += rewritten;
    return n;
}

/* ---- producer-state scan (kafka) ----------------------------------------
 *
 * The Kafka door rebuilds idempotent producers' sequence state from batch
 * headers (src/proto/kafka/pstate.c). Only the 61-byte headers are needed,
 * so the walk reads the segment in chunks and parses headers in place: a
 * segment of small batches costs one read per chunk, a large batch one
 * read of its header. Records are never decoded. */

#define HDR_SCAN_CHUNK ((size_t)64 << 10)

int jn_plog_scan_headers(jn_plog_t *log, int64_t from, jn_plog_header_cb cb, void *arg)
{
    if (from < jn_plog_start_offset(log) || from > log->end)
        return JN_ERANGE;
    size_t si;
    uint64_t pos;
    int rc = locate(log, from, &si, &pos);
    if (rc <= 0)
        return rc;
    uint8_t *buf = malloc(HDR_SCAN_CHUNK);
    if (!buf)
        return JN_ENOMEM;
    for (; si < log->nsegs; si++, pos = 0) {
        const jn_plog_segment_t *seg = log->segs[si];
        uint64_t buf_pos = 0;
        size_t buf_len = 0;
        while (pos < seg->size) {
            if (buf_len == 0 || pos < buf_pos || pos + JN_BATCH_HEADER_SIZE > buf_pos + buf_len) {
                size_t want = seg->size - pos < HDR_SCAN_CHUNK ? (size_t)(seg->size - pos) : HDR_SCAN_CHUNK;
                if (want < JN_BATCH_HEADER_SIZE) {
                    rc = JN_EIO;
                    goto fail;
                }
                rc = seg_read(log, seg, buf, want, pos);
                if (rc < 0)
                    goto fail;
                buf_pos = pos;
                buf_len = want;
            }
            jn_batch_info_t bi;
            int prc = jn_batch_parse(buf + (pos - buf_pos), JN_BATCH_HEADER_SIZE, SCAN_MAX, &bi);
            if (prc < 0 && prc != JN_EPARTIAL) {
                jn_error("plog %s.log: bad batch header at %" PRIu64, seg->path, pos);
                rc = JN_EIO;
                goto fail;
            }
            size_t total = jn_batch_total_size(&bi);
            if (total > seg->size - pos) {
                rc = JN_EIO;
                goto fail;
            }
            rc = cb(&bi, arg);
            if (rc != 0)
                goto fail;
            pos += total;
        }
    }
    rc = 0;
fail:
    free(buf);
    return rc;
}

int64_t jn_plog_recent_offset(const jn_plog_t *log, uint64_t max_bytes)
{
    size_t i = log->nsegs - 1;
    uint64_t sum = log->segs[i]->size;
    while (i > 0 && sum + log->segs[i - 1]->size <= max_bytes) {
        i--;
        sum += log->segs[i]->size;
    }
    return log->segs[i]->base;
}
