/* plog.h - one partition's durable log: segments, indexes, recovery,
 * retention, compaction, group-committed fsync.
 *
 * A partition lives in a directory of segment files, each named by its base
 * offset, zero-padded to 20 digits:
 *
 *   00000000000000000000.log        RecordBatch v2 batches, back to back
 *   00000000000000000000.index      sparse offset index (see plog.c)
 *   00000000000000000000.timeindex  sparse time index (see plog.c)
 *
 * The exact byte formats and the recovery rules are documented at the top of
 * plog.c, which writes them.
 *
 * Threading: every function here runs on the loop thread that owns the
 * partition. fsync runs on libuv's thread pool (uv_queue_work) and never
 * blocks the loop (compaction by jn_plog_maintain included); everything
 * else is synchronous. The exceptions, which fsync on the calling thread,
 * are jn_plog_open and jn_plog_close (start and shutdown) and
 * jn_plog_compact (tests, admin). Appends are copied into
 * an in-memory tail buffer and written to the file (write(2), page cache) by
 * jn_plog_flush(), which the broker calls once per loop iteration and when
 * the tail fills; readers see appended data at once (from the tail when it
 * is not yet written).
 */
#ifndef JN_PLOG_H
#define JN_PLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../common/buf.h"
#include "../common/clock.h"
#include "../common/error.h"
#include "../common/list.h"
#include "batch.h"

enum jn_fsync_policy {
    JN_FSYNC_NEVER = 0,    /* leave it to the OS */
    JN_FSYNC_INTERVAL = 1, /* fsync every fsync_interval_ms (default) */
    JN_FSYNC_ALWAYS = 2,   /* durable before acknowledged; group commit */
};

typedef struct jn_plog_config {
    uint64_t segment_bytes;       /* roll when the active segment reaches this (default 128 MiB) */
    int64_t segment_ms;           /* roll when the active segment is this old (default 7 days; 0 = never) */
    int64_t retention_ms;         /* delete segments older than this (-1 = forever) */
    int64_t retention_bytes;      /* delete oldest segments beyond this (-1 = unlimited) */
    uint32_t index_interval_bytes;/* an index entry every this many bytes (default 4096) */
    uint32_t max_batch_bytes;     /* reject batches larger than this (default 8 MiB) */
    enum jn_fsync_policy fsync;
    int64_t fsync_interval_ms;    /* for JN_FSYNC_INTERVAL (default 1000) */
    bool compact;                 /* keyed compaction instead of (or besides) deletion */
    int64_t delete_retention_ms;  /* tombstones kept at least this long once compacted (default 1 day) */
} jn_plog_config_t;

/* Fills |c| with the defaults above. */
void jn_plog_config_default(jn_plog_config_t *c);

typedef struct jn_plog jn_plog_t;

/* A durability waiter. Caller-owned (embed it in the request that waits);
 * armed by jn_plog_wait_durable, fired once, or cancelled. */
typedef struct jn_durable_waiter jn_durable_waiter_t;
typedef void (*jn_durable_cb)(jn_durable_waiter_t *w, int status);
struct jn_durable_waiter {
    jn_list_t node;   /* internal */
    int64_t offset;   /* internal: wait until this offset is durable */
    jn_durable_cb cb; /* status 0, or JN_EIO when fsync failed */
};

/* Opens (creating if needed) the partition log in |dir|, recovering as
 * plog.c describes: every segment but the last is trusted (indexes rebuilt
 * if missing or invalid); the last is scanned batch by batch and truncated
 * after the last batch whose header, length and CRC are valid. |loop| is
 * used for the fsync work and the interval timer. |cfg| is copied.
 * Returns 0 and sets *out, or JN_EIO / JN_ENOMEM / JN_ECORRUPT (a sealed
 * segment that cannot be read). */
int jn_plog_open(uv_loop_t *loop, const char *dir, const jn_plog_config_t *cfg,
                 const jn_clock_t *clock, jn_plog_t **out) JN_MUST_CHECK;

/* Flushes, fsyncs (synchronously: used at shutdown), closes and frees.
 * Pending durable waiters are fired with JN_ECLOSED. Jobs in flight on the
 * thread pool (fsync, compaction) finish alone after it: the loop must
 * still be run before it is closed. A compaction output not yet renamed
 * into place is left as <base>.log.cleaned, which the next open deletes.
 * Safe with NULL. */
void jn_plog_close(jn_plog_t *log);

/* Closes and removes the directory and all its files. */
void jn_plog_destroy(jn_plog_t *log);

/* Replaces the configuration (retention, fsync policy...). */
void jn_plog_set_config(jn_plog_t *log, const jn_plog_config_t *cfg);
const jn_plog_config_t *jn_plog_config(const jn_plog_t *log);

/* Appends one complete batch of |len| bytes (as built by
 * jn_batch_builder_finish, or received from a Kafka producer). The log
 * assigns the base offset (rewriting bytes 0..7 of its copy), sets
 * partitionLeaderEpoch to 0, and rolls the segment first if needed.
 * |batch| is not modified and may be freed on return. Validates the header
 * (not the CRC, which the producer side checks). Returns the base offset
 * assigned, or JN_EPROTO (bad header), JN_ETOOBIG (over max_batch_bytes),
 * JN_EIO. */
int64_t jn_plog_append(jn_plog_t *log, const uint8_t *batch, size_t len) JN_MUST_CHECK;
/* jn_plog_append with the time already read from the log's clock by the
 * caller (|now_ms|), which saves a second clock read per publish. */
int64_t jn_plog_append_at(jn_plog_t *log, const uint8_t *batch, size_t len, int64_t now_ms) JN_MUST_CHECK;

/* Writes the tail buffer to the file. Starts an fsync on the thread pool,
 * unless one is running, when the policy is ALWAYS and anything written is
 * not yet synced, or when there are waiters, or when the INTERVAL passed;
 * when it completes, waiters up to the offsets it covered fire, and another
 * fsync starts if more came meanwhile (group commit). Returns 0 or JN_EIO. */
int jn_plog_flush(jn_plog_t *log);

/* Writes the tail and fdatasyncs it on the calling thread (with the
 * sealed segments and the directory a sync job would cover), then fires
 * the waiters it covered. Blocks on the disk: for rare administrative
 * writes (the broker's metadata log) that must be durable before their
 * call returns. Returns 0 or JN_EIO. */
int jn_plog_sync(jn_plog_t *log);

/* Arms |w| to fire when |offset| is durable (fsynced). Fires at once
 * (synchronously, before returning) if it already is, or if the policy is
 * not ALWAYS (the caller decides whether to wait; see the broker). */
void jn_plog_wait_durable(jn_plog_t *log, jn_durable_waiter_t *w, int64_t offset, jn_durable_cb cb);
/* As jn_plog_wait_durable, but under INTERVAL too: the waiter gets an fsync
 * started at the next flush (shared with every other waiter) instead of
 * firing before it. Fires at once only when |offset| is durable already or
 * the policy is NEVER. For acknowledgements that promise the disk whatever
 * the log's policy: AMQP publisher confirms of persistent messages, as
 * RabbitMQ's, and committed offsets. */
void jn_plog_wait_synced(jn_plog_t *log, jn_durable_waiter_t *w, int64_t offset, jn_durable_cb cb);
/* Disarms |w| if armed; it will not fire. */
void jn_plog_cancel_durable(jn_durable_waiter_t *w);

/* Offsets. */
int64_t jn_plog_start_offset(const jn_plog_t *log); /* first offset still stored */
int64_t jn_plog_end_offset(const jn_plog_t *log);   /* next offset to be assigned */
int64_t jn_plog_durable_offset(const jn_plog_t *log); /* all offsets below this are fsynced */
uint64_t jn_plog_size_bytes(const jn_plog_t *log);
int64_t jn_plog_segment_count(const jn_plog_t *log);

/* Sync jobs finished since the log was opened: how many, how many failed,
 * and the time spent in fdatasync/fsync calls (records per fsync is what
 * group commit achieves; see the broker's /metrics). */
typedef struct jn_plog_sync_stats {
    uint64_t syncs;
    uint64_t failures;
    uint64_t sync_ns;
} jn_plog_sync_stats_t;
void jn_plog_get_sync_stats(const jn_plog_t *log, jn_plog_sync_stats_t *st);

/* Reads whole batches starting with the one that contains |offset|,
 * appending them to |out| until at least one batch is copied and adding the
 * next would pass |max_bytes| (the first batch is always copied whole, even
 * if larger, as Kafka does). Returns the number of bytes appended (0 when
 * |offset| == end offset), JN_ERANGE when |offset| is below the start or
 * beyond the end, JN_EIO, or JN_ETOOBIG from |out|. The first batch may
 * begin before |offset|: callers skip records below it. */
int jn_plog_read(jn_plog_t *log, int64_t offset, size_t max_bytes, jn_buf_t *out) JN_MUST_CHECK;

/* A read range for zero-copy senders (Kafka fetch with sendfile): the
 * file and position of the batches starting with the one containing
 * |offset|, up to |max_bytes| (at least one batch). When the data is
 * still in the tail buffer, |fd| is -1 and |mem| points at it (valid until
 * the next append or flush). |seg| is a reference the caller drops with
 * jn_plog_segment_unref; it keeps the file open across segment deletion.
 * Returns 0, or the errors of jn_plog_read. */
typedef struct jn_plog_segment jn_plog_segment_t;
typedef struct jn_plog_slice {
    jn_plog_segment_t *seg;
    int fd;
    uint64_t pos;
    size_t len;
    const uint8_t *mem;
} jn_plog_slice_t;
int jn_plog_slice(jn_plog_t *log, int64_t offset, size_t max_bytes, jn_plog_slice_t *out) JN_MUST_CHECK;
void jn_plog_segment_unref(jn_plog_segment_t *seg);

/* The first offset whose record timestamp is >= |ts| (using the time
 * index, then scanning), or the end offset when none. */
int64_t jn_plog_offset_for_time(jn_plog_t *log, int64_t ts);

/* Enforces retention (time and bytes) and rolls the active segment when it
 * is older than segment_ms. Deletes whole sealed segments only; the active
 * segment is never deleted. If compaction is on, advances a cleaning pass
 * over dirty segments by one bounded step (see plog_compact.c): a step that
 * rewrites a segment leaves its fsyncs to the thread pool, and the
 * rewritten segment replaces the old one in a later loop callback (reads
 * see the old one until then; no further step starts meanwhile). Called
 * by the broker from a timer. Returns the number of segments removed plus
 * the number of segment rewrites started (0 or 1), or an error. */
int jn_plog_maintain(jn_plog_t *log);

/* Deletes the sealed segments every offset of which is below |offset|
 * (the next segment's base is <= |offset|); never the active segment. For
 * logs consumed destructively (queues: everything below the head is
 * settled). Returns the number of segments removed. */
int jn_plog_delete_before(jn_plog_t *log, int64_t offset);

/* Forces a whole compaction pass now (tests, admin), synchronously: the
 * rewritten segments are fsynced and renamed into place on the calling
 * thread, which blocks on the disk. A segment whose rewrite by
 * jn_plog_maintain is in flight is skipped (left to the next pass).
 * Returns the number of records removed, or an error. */
int64_t jn_plog_compact(jn_plog_t *log);

/* Forces a roll of the active segment (tests, admin). */
int jn_plog_roll(jn_plog_t *log);

/* ---- producer-state scan (kafka) ---- */

/* Called with each batch's parsed header; a nonzero return stops the scan
 * and is returned by jn_plog_scan_headers. Must not modify the log. */
typedef int (*jn_plog_header_cb)(const jn_batch_info_t *bi, void *arg);

/* Calls |cb| for the header of every batch from the one containing |from|
 * (or the first after it) up to the end offset, in offset order, tail
 * buffer included, without reading the records (the Kafka door rebuilds
 * producer state from these). Returns 0, |cb|'s nonzero return,
 * JN_ERANGE when |from| is below the start or beyond the end, JN_EIO (a
 * header that does not parse), JN_ENOMEM. */
int jn_plog_scan_headers(jn_plog_t *log, int64_t from, jn_plog_header_cb cb, void *arg) JN_MUST_CHECK;

/* Where a bounded scan of the newest data starts: the base offset of the
 * oldest segment such that it and every later segment together hold at
 * most |max_bytes| bytes, and at least the active segment's base (so the
 * bound is max(|max_bytes|, the active segment's size)). */
int64_t jn_plog_recent_offset(const jn_plog_t *log, uint64_t max_bytes);

#endif
