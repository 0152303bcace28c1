/* broker_int.h - internals shared by the broker's files (broker.c, sub.c,
 * group.c, table.c). Not a contract for anyone outside src/core/broker*.
 *
 * Ownership in one picture:
 *
 *   jn_broker_t
 *     streams[]  (sorted by name) -> jn_stream_t -> parts[] -> jn_part_t -> jn_plog_t
 *                                              \-> subs list of jn_subpos_t (cursors)
 *                                              \-> table index (compact streams)
 *     subs list  -> jn_sub_t -> pos[] (sorted by stream id) -> jn_subpos_t
 *     groups[]   (sorted by name) -> committed offsets
 *
 * A jn_subpos_t is one subscription's cursors in one stream; it is linked
 * from both sides so that deleting a stream or closing a subscription can
 * drop it without searching.
 */
#ifndef JN_BROKER_INT_H
#define JN_BROKER_INT_H

#include "broker.h"
#include "filter.h"
#include "../common/list.h"
#include "../common/pool.h"

/* Caps on scratch space, so that no buffer grows without bound. */
#define JN_BROKER_SCRATCH_MAX ((size_t)1 << 30)   /* batches built by one publish */
#define JN_BROKER_READ_MAX ((size_t)256 << 20)    /* one read (a first batch may exceed the ask) */
#define JN_BROKER_PUBLISH_MAX_RECORDS ((size_t)1 << 20)
#define JN_BROKER_META_VALUE_MAX ((size_t)1 << 20)
#define JN_GROUP_METADATA_MAX 4096

typedef struct jn_table_index jn_table_index_t;
typedef struct jn_qreg jn_qreg_t; /* queue.c: the broker's queues */

/* One partition of a stream. Heap-allocated on its own so that growing the
 * partition array never moves a node linked on the dirty list. */
typedef struct jn_part {
    jn_stream_t *s;
    uint32_t index;
    jn_plog_t *log;
    jn_list_t dirty; /* on b->dirty while it has appends not yet flushed */
} jn_part_t;

struct jn_stream {
    jn_broker_t *b;
    uint64_t id;                 /* creation order; sorts jn_sub_t.pos */
    char name[JN_STREAM_NAME_MAX + 1];
    size_t name_len;
    uint32_t nparts;
    jn_part_t **parts;
    jn_plog_config_t cfg;
    uint32_t rr;                 /* round-robin counter for keyless records */
    jn_list_t subs;              /* jn_subpos_t.snode of every covering subscription */
    jn_table_index_t *table;     /* key index, only when cfg.compact */
    jn_counter_t *m_records;     /* junction_records_published_total{stream} (NULL if OOM) */
    jn_counter_t *m_bytes;       /* junction_published_bytes_total{stream} (NULL if OOM) */
};

/* A cursor: "caught up" means positioned at the log end, offered records
 * live as they are appended; only a cursor that is behind holds a real
 * offset. This is what lets records of subjects a subscription does not
 * match pass without touching it. */
typedef struct jn_cursor {
    int64_t next;  /* next offset to offer, when behind */
    bool behind;
} jn_cursor_t;

/* From b->cur_pool (64 bytes): one per subscription and covered stream,
 * for as long as the subscription lives. */
typedef struct jn_subpos {
    jn_sub_t *sub;
    jn_stream_t *s;
    jn_list_t snode;   /* on s->subs */
    uint32_t nparts;
    jn_cursor_t *cur;  /* nparts cursors: &one for a single partition, else malloc'd */
    jn_cursor_t one;
} jn_subpos_t;

/* What a subscription needs only once it has cursors, that is once a
 * stream it covers exists: an idle device subscribed to a topic nobody has
 * published to yet does without it (from b->cur_pool, 64 bytes). */
typedef struct jn_subrun {
    jn_subpos_t **pos; /* sorted by stream id: &pos1 while cappos is 1, else malloc'd */
    jn_subpos_t *pos1; /* the usual case: one stream */
    uint64_t dropped;  /* lossy: records refused */
    uint64_t skipped;  /* records lost to retention while behind */
    uint32_t npos, cappos;
    uint32_t nbehind;  /* cursors that are behind */
    uint32_t rr_pos;   /* where catch-up resumes: pos index ... */
    uint32_t rr_part;  /* ... and partition (round robin over all cursors) */
    uint32_t catchup_bytes; /* next catch-up read size: adapts to what the sink takes */
} jn_subrun_t;

/* Packed for idle memory: one allocation holds the filter too, from
 * b->sub_pool when it fits JN_SUB_POOL_OBJ bytes (sub.c). How a
 * subscription starts (jn_sub_opts_t.start, .group) is used only while
 * jn_broker_subscribe places its first cursors, so it is not kept: streams
 * and partitions that appear later are read from their start. */
struct jn_sub {
    jn_broker_t *b;
    jn_sub_deliver_cb deliver;
    void *arg;
    jn_subrun_t *run;  /* cursors; NULL until the first one */
    jn_list_t node;    /* on b->subs (or b->zombies once closed) */
    jn_list_t ready;   /* on b->ready while behind and not stalled */
    uint16_t flen;     /* filter length (at most JN_SUBJECT_MAX) */
    bool lossy;
    bool internal;     /* may name and cover internal ("__") streams */
    bool stalled;      /* paused, or the sink refused a record: wait for resume */
    bool closed;       /* closed while the broker was iterating: freed later */
    bool pooled;       /* from b->sub_pool (else malloc'd) */
    char filter[];     /* flen bytes and a NUL */
};

/* One batch of a publish: records for one partition. */
typedef struct jn_pub_batch {
    uint32_t partition;
    size_t start, len; /* in b->scratch */
    int64_t base;
    int32_t used;      /* results handed out so far */
} jn_pub_batch_t;

typedef struct jn_group_off {
    char *stream;
    uint32_t partition;
    int64_t offset;
    char *metadata;
} jn_group_off_t;

typedef struct jn_group {
    char *name;
    jn_group_off_t *offs;
    size_t n, cap;
} jn_group_t;

/* Loop handles live apart from the broker: libuv needs them until their
 * close callbacks run, which may be after jn_broker_close returned. */
typedef struct jn_broker_handles {
    uv_prepare_t prepare; /* flushes dirty partitions once per iteration */
    uv_idle_t idle;       /* runs catch-up while subscriptions are ready */
    uv_timer_t timer;     /* maintenance */
    int open;
} jn_broker_handles_t;

struct jn_broker {
    uv_loop_t *loop;
    jn_broker_config_t cfg;
    char *data_dir;
    jn_mapping_t *mappings; /* owned copies */
    size_t nmappings;
    jn_clock_t clock;

    jn_plog_t *meta;    /* <data>/meta/0 */
    jn_plog_t *offsets; /* <data>/offsets/0 */
    jn_auth_t *auth;
    jn_metrics_t *metrics;
    bool replaying;     /* auth persist calls are ignored while replaying */
    json_t *ext_meta;   /* "ext/<key>" door definitions: key -> JSON (jn_broker_meta_put) */

    jn_stream_t **streams; /* sorted by name */
    size_t nstreams, capstreams;
    uint64_t next_stream_id;
    jn_list_t dirty;

    jn_trie_t *trie;    /* filter -> jn_sub_t */
    /* Subscriptions with short filters (sub.c): they live as long as their
     * clients, so they are kept out of the malloc heap (pool.h). Set up by
     * the first subscribe, unmapped by jn__sub_close_all. */
    jn_pool_t sub_pool;
    jn_pool_t cur_pool; /* jn_subrun_t and jn_subpos_t (64-byte objects), likewise */
    jn_list_t subs;
    jn_list_t ready;
    jn_list_t zombies;
    int busy;           /* > 0 while iterating subscriptions */

    jn_group_t **groups; /* sorted by name */
    size_t ngroups, capgroups;
    /* Asynchronous commits (group.c): appends to b->offsets are written by
     * jn_broker_flush and fsynced on the thread pool. */
    bool offsets_dirty;          /* appended since the last flush */

    /* Reused scratch space: the publish path allocates nothing once warm. */
    jn_buf_t scratch;   /* batches being built */
    jn_buf_t rbuf;      /* catch-up reads */
    jn_buf_t tbuf;      /* table reads, index rebuilds */
    jn_buf_t mbuf;      /* metadata / offsets records */
    jn_buf_t zbuf;      /* decompressed records of one batch (catch-up, replay) */
    uint32_t *pidx;     /* partition, then batch, of each record of a publish */
    size_t cappidx;
    struct jn_pub_batch *pb; /* batches of the publish being built */
    size_t cappb;
    jn_sub_t **matches; /* subscriptions matching the current subject */
    size_t nmatches, capmatches;
    jn_header_t hdrs[JN_BATCH_MAX_HEADERS];

    jn_counter_t *m_dropped;   /* records lossy subscriptions skipped */
    jn_qreg_t *queues;         /* queue registry (queue.c); NULL before open replayed it */

    /* Append notifications (jn_broker_on_append), called in order. */
    struct jn_append_hook {
        jn_append_cb cb;
        void *arg;
    } hooks[JN_BROKER_APPEND_HOOKS_MAX];
    size_t nhooks;

    jn_broker_handles_t *h;
    /* The last subject jn_broker_publish found valid: publishers repeat
     * their subjects, and a compare is cheaper than a validation. */
    size_t valid_subject_len;  /* 0: none */
    char valid_subject[128];
};

/* broker.c */
/* Appends one record (key, value or NULL for a tombstone) to |log|. With
 * |sync| it is flushed and fdatasynced before returning (the metadata log:
 * admin operations, on the loop thread); without, it is only appended to
 * the log's tail (the offsets log: the caller arranges the flush). */
int jn__broker_log_write(jn_broker_t *b, jn_plog_t *log, const void *key, size_t klen,
                         const void *value, size_t vlen, bool tombstone, bool sync);
/* Reads every record of |log| in order, calling |cb|; stops on its error. */
typedef int (*jn__record_cb)(jn_broker_t *b, const jn_record_t *rec, void *arg);
int jn__broker_log_replay(jn_broker_t *b, jn_plog_t *log, jn_buf_t *buf, jn__record_cb cb, void *arg);
/* Appends records to |s| directly (no subject mapping). */
int jn__broker_publish_stream(jn_broker_t *b, jn_stream_t *s, const char *subject, size_t subject_len,
                              const jn_record_t *recs, size_t n, int32_t partition,
                              jn_publish_result_t *out);
/* Creates a stream without the "__" reservation check (internal callers). */
int jn__broker_stream_create(jn_broker_t *b, const char *name, uint32_t partitions,
                             const jn_plog_config_t *cfg, jn_stream_t **out);

/* Starts the catch-up idle handle (work is on the ready list). */
void jn__broker_kick(jn_broker_t *b);

/* sub.c */
/* Offers the records of one batch just appended at |base| of |s|/|p|. */
void jn__sub_offer_batch(jn_broker_t *b, jn_stream_t *s, uint32_t p, const uint8_t *batch, size_t len,
                         int64_t base, const char *subject, size_t subject_len);
/* Offers records just appended at |base|.. of |s|/|p| from the publisher's
 * own records, without decoding the batch: what a subscriber sees is what
 * the batch decodes to - a record with timestamp 0 gets |now|, and when
 * |add_subject| the subject header is put first. Every record has
 * |subject|, so the filter trie is matched once. */
void jn__sub_offer_records(jn_broker_t *b, jn_stream_t *s, uint32_t p, const jn_record_t *recs, size_t n,
                           int64_t base, int64_t now, const char *subject, size_t subject_len,
                           bool add_subject);
/* A stream was created (or grew from |old_parts|): add cursors to covering subs. */
int jn__sub_stream_added(jn_broker_t *b, jn_stream_t *s, uint32_t old_parts);
/* A stream is being deleted: drop every cursor into it. */
void jn__sub_stream_removed(jn_broker_t *b, jn_stream_t *s);
/* Runs one round of catch-up; returns true when work remains. */
bool jn__sub_catchup(jn_broker_t *b);
void jn__sub_close_all(jn_broker_t *b);
void jn__sub_free_zombies(jn_broker_t *b);

/* group.c */
int jn__group_replay(jn_broker_t *b);
void jn__group_free_all(jn_broker_t *b);
/* Forgets (durably) every committed offset of stream |name|. */
void jn__group_stream_removed(jn_broker_t *b, const char *name);

/* table.c */
jn_table_index_t *jn__table_index_new(void);
void jn__table_index_free(jn_table_index_t *t);
/* Updates |s|'s index with the keyed records of a batch appended at |base|. */
void jn__table_index_batch(jn_stream_t *s, uint32_t p, const uint8_t *batch, size_t len, int64_t base);
/* Builds |s|'s index from its partitions (compact streams only). */
int jn__table_rebuild(jn_broker_t *b, jn_stream_t *s);

/* queue.c */
/* Replays queue definitions from the metadata log (after the streams are
 * open): durable queues are reopened with their ack state, non-durable ones
 * and orphaned "__q." streams are removed. Starts the queues' loop handles. */
int jn__queue_open(jn_broker_t *b);
/* Writes each queue's pending settlements and a checkpoint, closes the ack
 * logs and frees every queue and consumer (no callbacks). Safe when
 * jn__queue_open did not run. */
void jn__queue_close_all(jn_broker_t *b);

#endif
