/* pstate.h - idempotent producers' sequence state of one Kafka partition:
 * the checks a Produce goes through, the snapshot that carries the state
 * across a restart, and its rebuild from that snapshot plus the batch
 * headers of the log after it (what Kafka's ProducerStateManager does).
 *
 * The state of a partition is a set of producers keyed by producer id,
 * each with its epoch, the last sequence number appended, the time of its
 * last batch (for expiry) and its last JN_KPS_CACHE batches (first and last
 * sequence, base offset), so that a retried batch is answered with the
 * offset it got the first time.
 *
 * Everything here is plain memory and log reads (no table, no socket):
 * the door (kafka_data.c) decides where snapshots are kept and when they
 * are taken. Runs on the loop thread that owns the log.
 */
#ifndef JN_KAFKA_PSTATE_H
#define JN_KAFKA_PSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/buf.h"
#include "../../core/batch.h"
#include "../../core/plog.h"

#define JN_KPS_CACHE 5                    /* batches remembered per producer (as Kafka) */
#define JN_KPS_EXPIRY_MS (24 * 3600 * 1000LL) /* producer.id.expiration.ms default: 1 day */
#define JN_KPS_SCAN_BYTES ((uint64_t)256 << 20) /* a rebuild scans at most this much log (or one segment) */
#define JN_KPS_SNAPSHOT_MAX ((size_t)4 << 20)   /* encoded snapshot cap (about 40,000 producers) */

typedef struct jn_kps_batch {
    int32_t first_seq;
    int32_t last_seq;
    int64_t base_offset;
} jn_kps_batch_t;

typedef struct jn_kps_producer {
    int64_t pid;      /* -1: a free slot of the table */
    int16_t epoch;
    int32_t last_seq; /* of the last batch appended */
    int64_t last_ts;  /* wall ms of the last batch: expiry */
    uint8_t n;        /* batches cached */
    uint8_t head;     /* next slot of the ring */
    jn_kps_batch_t batches[JN_KPS_CACHE];
} jn_kps_producer_t;

/* One partition's producers: an open-addressing table by producer id. */
typedef struct jn_kps {
    jn_kps_producer_t *slots;
    size_t cap;    /* power of two, or 0 */
    size_t n;      /* producers */
    size_t *total; /* shared count across partitions (may be NULL) */
    size_t max;    /* cap on *total (on n when |total| is NULL) */
} jn_kps_t;

/* Where a snapshot's state ends, and how to recognise that place in the
 * log: the batch that ends at |end| - 1. */
typedef struct jn_kps_anchor {
    int64_t end;       /* the state covers the batches below this offset */
    int64_t last_base; /* base offset of the batch ending at end - 1 */
    uint32_t last_crc; /* that batch's CRC */
} jn_kps_anchor_t;

/* An empty state. |total| (may be NULL) is a producer count shared by many
 * states, capped at |max| together: past it, new producers are not
 * tracked (their batches are accepted unchecked, as when state is lost). */
void jn_kps_init(jn_kps_t *ps, size_t *total, size_t max);
/* Frees the table (and takes its producers off *total). Safe twice. */
void jn_kps_free(jn_kps_t *ps);
/* Empties the state, keeping its cap and shared count. */
void jn_kps_clear(jn_kps_t *ps);

/* Whether a batch takes part in sequence checks: a producer id, a base
 * sequence, and neither transactional nor control. */
bool jn_kps_tracked(const jn_batch_info_t *bi);

/* The producer's state, or NULL when unknown. Valid until the next change. */
const jn_kps_producer_t *jn_kps_find(const jn_kps_t *ps, int64_t pid);
size_t jn_kps_count(const jn_kps_t *ps);

/* Checks a tracked batch against its producer's state. Returns 0 to append
 * (also when the producer is unknown: first batch, or state expired or
 * lost), 1 when it repeats one of the cached batches (*dup_offset is the
 * base offset it got then), or a negated Kafka error:
 * -INVALID_PRODUCER_EPOCH (older epoch), -OUT_OF_ORDER_SEQUENCE_NUMBER (a
 * gap, or a new epoch not starting at 0), -DUPLICATE_SEQUENCE_NUMBER (an
 * old sequence that is not one of the cached batches). */
int jn_kps_check(const jn_kps_t *ps, const jn_batch_info_t *bi, int64_t *dup_offset);

/* Records a tracked batch appended at |base_offset| at wall time |ts_ms|:
 * a new epoch restarts the cache, the batch goes into the ring, last_seq
 * moves. Returns 0, JN_ETOOBIG when the producer is new and the shared cap
 * is reached (not recorded), JN_ENOMEM. */
int jn_kps_record(jn_kps_t *ps, const jn_batch_info_t *bi, int64_t base_offset, int64_t ts_ms) JN_MUST_CHECK;

/* Drops producers whose last batch is older than |now_ms| - |max_idle_ms|.
 * Returns how many were dropped. */
size_t jn_kps_expire(jn_kps_t *ps, int64_t now_ms, int64_t max_idle_ms);

/* Snapshot encoding (big-endian), appended to |out|:
 *
 *   off len field
 *    0   4  magic "JKPS"
 *    4   2  version 1
 *    6   8  anchor end
 *   14   8  anchor last_base
 *   22   4  anchor last_crc
 *   26   4  producer count N
 *   30      N producers: pid i64, epoch i16, last_seq i32, last_ts i64,
 *           n u8 (0..5), then n batches oldest first: first_seq i32,
 *           last_seq i32, base_offset i64
 *   end  4  CRC-32C of every byte before it
 *
 * Returns 0, JN_ETOOBIG (over JN_KPS_SNAPSHOT_MAX or |out|'s cap; |out|
 * is left as it was), JN_ENOMEM. */
int jn_kps_encode(const jn_kps_t *ps, const jn_kps_anchor_t *a, jn_buf_t *out) JN_MUST_CHECK;
/* Decodes a snapshot into |ps| (emptied first) and *a. Returns 0, or
 * JN_ECORRUPT (bad magic, version, lengths, CRC or field; |ps| is left
 * empty), JN_ETOOBIG (the shared cap), JN_ENOMEM. */
int jn_kps_decode(jn_kps_t *ps, const uint8_t *p, size_t len, jn_kps_anchor_t *a) JN_MUST_CHECK;

/* The anchor of |log| as it is now: its end offset and the batch ending
 * just before it. JN_ENOENT when there is none (an empty log, or the last
 * offset removed by compaction): no snapshot can be taken then. JN_EIO. */
int jn_kps_anchor_of(jn_plog_t *log, jn_kps_anchor_t *a) JN_MUST_CHECK;

/* Encodes |ps| as the snapshot of |log| now: jn_kps_anchor_of, then
 * jn_kps_encode. The caller expires producers first if it wants to. */
int jn_kps_snapshot(const jn_kps_t *ps, jn_plog_t *log, jn_buf_t *out) JN_MUST_CHECK;

typedef struct jn_kps_rebuild_info {
    bool snapshot_used;    /* the snapshot matched the log */
    int64_t scanned_from;  /* first offset whose batch headers were read */
    int64_t batches;       /* batch headers read */
} jn_kps_rebuild_info_t;

/* Rebuilds |ps| for |log| from |snap| (may be NULL) and the log.
 *
 * The snapshot is used only when the log still holds the batch it is
 * anchored to, unchanged: end <= the log's end offset, the batch ending
 * at end - 1 is in the log with the same base offset and CRC. A log that
 * recovery cut shorter than the snapshot (a crash before the data was
 * written or synced), or that was cut and has grown again with other
 * batches, fails this, and so does a stream deleted and created again.
 * It must also lie within the scan window (jn_plog_recent_offset with
 * |scan_bytes|): state older than that would skip batches in between.
 * A snapshot that fails is ignored.
 *
 * Then every batch header from the snapshot's end (or, without a usable
 * snapshot, from the window's start) to the log's end is applied with
 * jn_kps_record with time |now_ms| (the append time is not in the
 * header, and the batch timestamps are the producer's clock: a producer
 * seen there counts as active at the rebuild, so expiry may come late but
 * never early), and producers idle longer than |max_idle_ms| (by their
 * snapshot time) are dropped. Producers last seen before the window are unknown after
 * such a rebuild: their next batch is accepted, as before this existed.
 *
 * Returns 0 with *info (may be NULL) filled, or JN_EIO / JN_ENOMEM from
 * the log scan (|ps| is left empty). */
int jn_kps_rebuild(jn_kps_t *ps, jn_plog_t *log, const uint8_t *snap, size_t snap_len, uint64_t scan_bytes,
                   int64_t now_ms, int64_t max_idle_ms, jn_kps_rebuild_info_t *info) JN_MUST_CHECK;

#endif
