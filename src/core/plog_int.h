/* plog_int.h - what plog.c (segments, recovery, appends, fsync, reads,
 * retention) and plog_compact.c (keyed compaction) share: the in-memory
 * shape of a log and its segments, and the segment and scanning helpers
 * compaction reuses. Not for use outside src/core/plog*.c; the format
 * and the rules are documented at the top of plog.c. */
#ifndef JN_PLOG_INT_H
#define JN_PLOG_INT_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "../common/buf.h"
#include "../common/list.h"
#include "plog.h"

#define TAIL_MAX ((size_t)1 << 20)   /* in-memory tail buffer cap */
#define PREALLOC_CHUNK ((uint64_t)1 << 20) /* zeros written ahead of an fsync-always active segment */
#define ZERO_BUF ((size_t)64 << 10)
#define SCAN_CHUNK ((size_t)1 << 20) /* read size when scanning a segment */
#define SCAN_MAX ((size_t)1 << 30)   /* largest stored batch we will read */
#define IDX_SIZE 8
#define TIDX_SIZE 12
#define INDEX_WRITE_RUN 64 /* index entries per write, and pending before a flush writes them */
#define NAME_DIGITS 20

typedef struct idx_entry {
    uint32_t rel; /* batch baseOffset - segment base */
    uint32_t pos; /* byte position of the batch */
} idx_entry_t;

typedef struct tidx_entry {
    int64_t ts;   /* largest timestamp up to and including the batch at rel */
    uint32_t rel;
} tidx_entry_t;

struct jn_plog_segment {
    int refs;             /* the log's reference plus slices and sync jobs */
    int64_t base;         /* base offset, the file name */
    int64_t end;          /* offset after the last batch (base when empty) */
    int64_t last_base;    /* baseOffset of the last batch, -1 when empty */
    int64_t max_ts;       /* largest batch maxTimestamp, -1 when empty */
    int64_t created_ms;   /* first append (for segment_ms), -1 when empty */
    uint64_t file_size;   /* bytes of batches in the .log file */
    uint64_t alloc_size;  /* active: the file's length, zero-filled past file_size (PREALLOCATION) */
    uint64_t size;        /* file_size plus the tail when active */
    uint64_t since_index; /* batch bytes since the last index entry */
    int fd;               /* .log; immutable while referenced (sync jobs read it) */
    int idx_fd;           /* .index, open while active only */
    int tidx_fd;          /* .timeindex, open while active only */
    idx_entry_t *idx;
    size_t nidx, idx_cap, idx_written; /* written: entries already in the file */
    tidx_entry_t *tidx;
    size_t ntidx, tidx_cap, tidx_written;
    /* Offsets below are in this file (page cache): stored by the loop after
     * each write, read by sync jobs on the pool right before fdatasync. */
    _Atomic int64_t written_end;
    bool needs_sync;      /* sealed with data no sync job has covered yet */
    bool prealloc_failed; /* writing zeros ahead failed: stop trying */
    char path[];          /* "<dir>/<base>" without extension */
};

/* Up to this many fsync jobs run at once per log. One: on this machine's
 * disk, overlapping fdatasync calls on one file queue behind each other's
 * cache flush, so a second job in flight made each slower and answered
 * fewer publishers per second (fsync always, 64 publishers over REST,
 * 5 interleaved runs each: 42.1 k acked/s with one, 37.9 k with three).
 * A job covers what is in the file when its fdatasync starts (sync_work),
 * not only what was there when it was queued. Other logs sync in
 * parallel on the other pool threads. */
#define SYNC_PIPELINE 1

typedef struct sync_job {
    jn_list_t link;             /* in the log's jobs list */
    uv_work_t req;
    jn_plog_t *log;             /* NULL once the log is closed */
    int64_t end;                /* offsets below are durable on success */
    jn_plog_segment_t **segs;   /* referenced segments to fdatasync */
    size_t nsegs;
    int dir_fd;                 /* dup of the directory to fsync, or -1 */
    int status;                 /* 0 or JN_EIO, set by the worker */
    int err;                    /* errno of the failure */
    uint64_t ns;                /* time in the sync calls, set by the worker */
} sync_job_t;

struct jn_plog {
    uv_loop_t *loop;
    char *dir;
    int dir_fd;
    jn_plog_config_t cfg;
    const jn_clock_t *clock;
    jn_plog_segment_t **segs; /* by base offset; the last is active */
    size_t nsegs, segs_cap;
    jn_buf_t tail;            /* appended, not yet written to the active file */
    int64_t end;              /* next offset to assign */
    int64_t written_end;      /* offsets below are in the file (page cache) */
    int64_t durable;          /* offsets below are fsynced */
    jn_list_t waiters;        /* jn_durable_waiter_t, armed */
    jn_list_t jobs;           /* sync jobs in flight (at most SYNC_PIPELINE) */
    size_t njobs;
    int64_t sync_end;         /* highest end of a job started (in flight or done) */
    uv_timer_t *timer;        /* INTERVAL policy timer, or NULL */
    bool interval_due;        /* the interval passed since the last sync job */
    bool dir_dirty;           /* segment files created since the last dir sync */
    int64_t cleaned_upto;     /* compaction: sealed segments below this base were cleaned */
    struct compact_pass *pass; /* maintenance compaction in progress, or NULL */
    struct clean_job *clean;  /* maintenance segment swap on the thread pool, or NULL */
    jn_plog_sync_stats_t stats;
};

/* Sequential batch reader over a segment with a chunked buffer. */
typedef struct scanner {
    const jn_plog_t *log;
    const jn_plog_segment_t *seg;
    uint64_t pos;     /* position of the next batch */
    uint64_t limit;   /* end of the bytes to scan */
    uint8_t *buf;
    size_t cap;
    uint64_t buf_pos; /* segment position of buf[0] */
    size_t buf_len;
} scanner_t;

static inline jn_plog_segment_t *active_seg(const jn_plog_t *log) { return log->segs[log->nsegs - 1]; }

/* ---- plog.c, for compaction ---- */

/* pwrite(2) of all |n| bytes at |pos|; 0 or JN_EIO. */
int jn__plog_write_all(int fd, const void *p, size_t n, uint64_t pos);
/* "<seg path><ext>" into |out|; 0 or JN_EINVAL when it does not fit. */
int jn__plog_seg_file(const jn_plog_segment_t *seg, const char *ext, char *out, size_t cap);
/* fsync of the log's directory (errors logged). */
void jn__plog_fsync_dir(jn_plog_t *log);
/* A segment of |dir| at |base|, no file open yet, one reference; NULL when
 * out of memory or the path is too long. */
jn_plog_segment_t *jn__plog_seg_new(const char *dir, int64_t base);
void jn__plog_seg_ref(jn_plog_segment_t *seg);
/* Accounts the batch |bi| of |size| bytes written at |pos|: sizes, end
 * offset, timestamps and the in-memory index entries (|interval| bytes). */
void jn__plog_seg_note_batch(jn_plog_segment_t *seg, uint32_t interval, uint64_t pos, size_t size,
                             const jn_batch_info_t *bi);
/* Adds the time entry that seals a segment: its largest timestamp, so a
 * sealed segment's last time entry always holds it. */
void jn__plog_seg_seal_time(jn_plog_segment_t *seg);
/* Replaces both index files with the in-memory entries. With |keep_open|
 * the descriptors stay open for appends (active segment). */
int jn__plog_seg_rewrite_indexes(jn_plog_segment_t *seg, bool keep_open);
/* A scanner over [pos, limit) of |seg|; see jn__plog_scan_next. */
void jn__plog_scan_init(scanner_t *s, const jn_plog_t *log, const jn_plog_segment_t *seg, uint64_t pos,
                        uint64_t limit);
void jn__plog_scan_free(scanner_t *s);
/* Returns the next batch's total size with |bi| filled and *batch pointing
 * at its bytes (valid until the next call), 0 at the end, JN_EPARTIAL when
 * the bytes end inside a batch, JN_EPROTO / JN_ETOOBIG for an invalid
 * header, JN_EIO, JN_ENOMEM. Does not advance: see jn__plog_scan_skip. */
int jn__plog_scan_next(scanner_t *s, jn_batch_info_t *bi, const uint8_t **batch);
void jn__plog_scan_skip(scanner_t *s, size_t n);

/* ---- plog_compact.c ---- */

/* A whole compaction pass now, on the calling thread (jn_plog_compact);
 * returns the records removed and sets *rewritten to the segments
 * replaced. */
int64_t jn__plog_compact_all(jn_plog_t *log, int *rewritten);
/* One bounded step of the maintenance compaction (jn_plog_maintain):
 * maps a share of the keys, or rewrites one segment and starts its swap on
 * the thread pool. Returns 1 when a segment rewrite started, 0, or an error. */
int jn__plog_compact_step(jn_plog_t *log);
/* Drops a stepwise pass in progress (its key map). */
void jn__plog_pass_free(jn_plog_t *log);
/* At close: a swap in flight on the pool finishes alone, without the log. */
void jn__plog_clean_detach(jn_plog_t *log);

#endif
