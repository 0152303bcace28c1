/* broker.h - the core: streams, subjects, publish, subscriptions, consumer
 * groups, tables, metadata, auth and metrics, behind one struct.
 *
 * The broker knows nothing about protocols. Every door maps its protocol's
 * events to the operations below. One loop thread owns all of it; nothing
 * here locks.
 *
 * Durable state is all logs (plog.h):
 *   <data>/meta/0/          the metadata log: stream definitions, users,
 *                           tokens, ACLs; compacted, fsync always
 *   <data>/offsets/0/       committed consumer-group offsets; compacted,
 *                           fsync always but asynchronous (see groups)
 *   <data>/streams/<name>/<partition>/   each stream's partitions
 * Metadata records are JSON values keyed by "<kind>/<id>" (a null value
 * deletes); replaying the metadata log at open rebuilds the broker.
 *
 * Subjects map to streams by the first mapping rule whose filter matches,
 * else by their first level (sensors/kitchen/temp -> stream "sensors").
 * Stream names follow Kafka's topic rules: 1..249 of [A-Za-z0-9._-], and
 * names starting with "__" are reserved.
 *
 * Internal streams: streams whose name starts with "__" hold the doors' and
 * the core's own state (internal tables such as "__mqtt_sessions", queue
 * streams "__q.*", webhook attempts). They never leak to users: a
 * subscription whose filter starts with a wildcard does not cover them
 * (as MQTT's '#' does not match "$" topics), a filter naming one is refused
 * unless the subscriber asks for internal access (jn_sub_opts_t.internal),
 * and jn_broker_publish refuses subjects that map to one. The core writes
 * them through its own entry points (the table API, queues).
 */
#ifndef JN_BROKER_H
#define JN_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#include "../common/clock.h"
#include "../common/error.h"
#include "auth.h"
#include "batch.h"
#include "metrics.h"
#include "plog.h"

#define JN_STREAM_NAME_MAX 249
#define JN_PARTITIONS_MAX 1024

typedef struct jn_broker jn_broker_t;
typedef struct jn_stream jn_stream_t;
typedef struct jn_sub jn_sub_t;

typedef struct jn_mapping {
    char *filter; /* subjects matching this filter ... */
    char *stream; /* ... live in this stream */
} jn_mapping_t;

typedef struct jn_broker_config {
    const char *data_dir;          /* default "./data" */
    uint32_t default_partitions;   /* for auto-created streams (default 1) */
    bool auto_create_streams;      /* publish to an unknown stream creates it (default true) */
    jn_plog_config_t stream_defaults; /* defaults for new streams */
    const jn_mapping_t *mappings;  /* subject -> stream rules, in order (borrowed during open) */
    size_t nmappings;
    int64_t maintenance_interval_ms; /* retention/compaction/roll check period (default 5000) */
    size_t catchup_batch_bytes;    /* bytes a lagging subscription reads at a time (default 256 KiB) */
} jn_broker_config_t;

void jn_broker_config_default(jn_broker_config_t *c);

/* Opens the broker on |data_dir| and replays metadata, groups and tables.
 * |clock| may be NULL for the real clock. Returns 0 and *out, or an error
 * (JN_EIO, JN_ECORRUPT, JN_ENOMEM, JN_EINVAL for a bad mapping). */
int jn_broker_open(uv_loop_t *loop, const jn_broker_config_t *cfg, const jn_clock_t *clock,
                   jn_broker_t **out) JN_MUST_CHECK;
/* Flushes and fsyncs every log, closes subscriptions (their sinks are not
 * called again), frees everything. Safe with NULL. */
void jn_broker_close(jn_broker_t *b);

jn_auth_t *jn_broker_auth(jn_broker_t *b);
jn_metrics_t *jn_broker_metrics(jn_broker_t *b);
uv_loop_t *jn_broker_loop(jn_broker_t *b);

/* ---- streams ---- */

/* 0 when |name| is a valid user stream name; JN_EINVAL otherwise. */
int jn_stream_name_validate(const char *name, size_t len);

/* Creates a stream with |partitions| (1..JN_PARTITIONS_MAX) and |cfg|
 * (NULL for the broker's defaults). The definition is durable before this
 * returns. JN_EEXIST, JN_EINVAL, JN_EIO. */
int jn_broker_stream_create(jn_broker_t *b, const char *name, uint32_t partitions,
                            const jn_plog_config_t *cfg, jn_stream_t **out) JN_MUST_CHECK;
/* Updates retention/fsync/segment settings of an existing stream (not the
 * partition count). JN_ENOENT. */
int jn_broker_stream_update(jn_broker_t *b, jn_stream_t *s, const jn_plog_config_t *cfg) JN_MUST_CHECK;
/* Grows the partition count (never shrinks). JN_EINVAL when smaller. */
int jn_broker_stream_add_partitions(jn_broker_t *b, jn_stream_t *s, uint32_t partitions) JN_MUST_CHECK;
/* Deletes the stream and its files; subscriptions on it stop receiving
 * from it. JN_ENOENT. */
int jn_broker_stream_delete(jn_broker_t *b, const char *name) JN_MUST_CHECK;
jn_stream_t *jn_broker_stream_find(jn_broker_t *b, const char *name, size_t len);
/* Iterates streams in name order: pass NULL to get the first. */
jn_stream_t *jn_broker_stream_next(jn_broker_t *b, jn_stream_t *prev);
size_t jn_broker_stream_count(const jn_broker_t *b);

const char *jn_stream_name(const jn_stream_t *s);
/* True for internal streams (name starting with "__", see above): listings
 * meant for users skip them. */
bool jn_stream_is_internal(const jn_stream_t *s);
uint32_t jn_stream_partitions(const jn_stream_t *s);
jn_plog_t *jn_stream_plog(const jn_stream_t *s, uint32_t partition);
const jn_plog_config_t *jn_stream_config(const jn_stream_t *s);
/* {"name","partitions","config":{...},"records","bytes",
 *  "partition_info":[{"partition","start_offset","end_offset","bytes","segments"}]}
 * (new reference). */
json_t *jn_stream_json(const jn_stream_t *s);
/* Stream config <-> JSON ("retention_ms","retention_bytes","segment_bytes",
 * "segment_ms","fsync":"always|interval|never","fsync_interval_ms",
 * "compact", "max_batch_bytes"). from_json starts from |base| and applies
 * the members present; JN_EINVAL names the bad member in |err| (may be
 * NULL; 128 bytes). */
json_t *jn_plog_config_json(const jn_plog_config_t *c);
int jn_plog_config_from_json(const json_t *j, const jn_plog_config_t *base, jn_plog_config_t *out,
                             char *err, size_t errlen) JN_MUST_CHECK;

/* The stream a subject maps to (by the rules above), as a name view. */
const char *jn_broker_stream_of_subject(const jn_broker_t *b, const char *subject, size_t len,
                                        size_t *name_len);

/* ---- publish ---- */

typedef struct jn_publish_result {
    jn_stream_t *stream;
    int32_t partition;
    int64_t offset;
} jn_publish_result_t;

/* Appends |n| records of |subject| (validated) to its stream, creating the
 * stream if allowed. Each record goes to |partition| when >= 0, else to
 * murmur2(key) % partitions when it has a key, else round robin. A record
 * timestamp of 0 means now. The ":subject" header is added when the subject
 * differs from the stream name. Live subscribers matching the subject are
 * offered the records before this returns. |out| (n entries, may be NULL)
 * gets each record's stream, partition and offset. Returns 0, or
 * JN_EINVAL (subject, partition, or a subject whose stream is internal:
 * this is the users' entry point; internal streams are written through the
 * table and queue APIs), JN_ENOENT (no stream and auto-create off),
 * JN_ETOOBIG, JN_EIO. On error nothing was appended. */
int jn_broker_publish(jn_broker_t *b, const char *subject, size_t subject_len, const jn_record_t *recs,
                      size_t n, int32_t partition, jn_publish_result_t *out) JN_MUST_CHECK;

/* Appends a complete RecordBatch v2 as received (Kafka produce) to
 * |partition| of |s|. Validates the header and CRC (JN_ECORRUPT). Returns
 * the base offset, or an error. Live subscribers are offered its records. */
int64_t jn_broker_append_batch(jn_broker_t *b, jn_stream_t *s, uint32_t partition, const uint8_t *batch,
                               size_t len) JN_MUST_CHECK;

/* Calls |cb| when |offset| of |s|/|partition| is durable under the
 * stream's policy: after fsync for ALWAYS, at once (synchronously) for
 * INTERVAL and NEVER. |w| is caller-owned until it fires or is cancelled
 * with jn_plog_cancel_durable. */
void jn_broker_wait_durable(jn_broker_t *b, jn_stream_t *s, uint32_t partition, int64_t offset,
                            jn_durable_waiter_t *w, jn_durable_cb cb);
/* As jn_broker_wait_durable, but after an fsync under INTERVAL too (one is
 * started at the next flush, shared by every waiter; jn_plog_wait_synced):
 * at once only for NEVER. For acknowledgements that promise the disk
 * whatever the stream's policy (AMQP confirms of persistent messages in
 * durable queues, as RabbitMQ's). */
void jn_broker_wait_synced(jn_broker_t *b, jn_stream_t *s, uint32_t partition, int64_t offset,
                           jn_durable_waiter_t *w, jn_durable_cb cb);

/* ---- append notification ----
 *
 * A signal that a partition grew, for code that waits on the log itself
 * rather than on records (a Kafka Fetch long-poll): nothing is decoded or
 * matched against filters to raise it, unlike a subscription. */

#define JN_BROKER_APPEND_HOOKS_MAX 8

/* |end_offset| is the partition's end offset (next offset to be assigned)
 * after the append. Called on the loop thread after every append to any
 * stream - user and internal ones alike, whether through jn_broker_publish,
 * jn_broker_append_batch, a table write or a queue - once per partition
 * written by the call, after live subscribers were offered the records.
 * It runs on the hot path: it must be cheap, must not append, create or
 * delete streams, and must not add or remove hooks. */
typedef void (*jn_append_cb)(void *arg, jn_stream_t *s, uint32_t partition, int64_t end_offset);

/* Adds a hook called as above until jn_broker_off_append (the hook's owner
 * removes it before it goes away; the broker forgets hooks at close).
 * Returns 0, JN_EINVAL (NULL |cb|), or JN_ENOMEM when
 * JN_BROKER_APPEND_HOOKS_MAX hooks are registered. The same (cb, arg)
 * added twice is called twice. */
int jn_broker_on_append(jn_broker_t *b, jn_append_cb cb, void *arg) JN_MUST_CHECK;
/* Removes one registration of (cb, arg); nothing when there is none. */
void jn_broker_off_append(jn_broker_t *b, jn_append_cb cb, void *arg);

/* ---- subscriptions: cursors into the log ----
 *
 * A subscription is a filter plus a position in each partition of every
 * stream the filter can match (streams created later included, from their
 * start). While caught up it is offered records as they are appended
 * (found through the filter trie); when its sink is full it lags and later
 * reads what it missed from the log, in order, without the broker holding
 * anything for it. A lossy subscription (MQTT QoS 0 live delivery) skips
 * what its sink refused and counts it instead.
 */

typedef struct jn_delivery {
    jn_stream_t *stream;
    uint32_t partition;
    const jn_record_t *rec; /* rec->offset is set; views valid during the call */
    const char *subject;    /* view, not NUL-terminated */
    size_t subject_len;
} jn_delivery_t;

/* Offers one record. Return 0 when taken, JN_EAGAIN when the sink is full
 * (the record is not taken; call jn_sub_resume when there is room).
 * Must not close |sub| from inside the call. It may call jn_sub_pause,
 * and it may publish or enqueue (an AMQP binding forwards records into a
 * queue this way): the offer of the outer record to the other matching
 * subscriptions is not disturbed. */
typedef int (*jn_sub_deliver_cb)(jn_sub_t *sub, const jn_delivery_t *d, void *arg);

enum jn_start {
    JN_START_LIVE = 0,  /* only records appended from now on */
    JN_START_EARLIEST,  /* from the start of every partition */
    JN_START_OFFSET,    /* from |start_value| in every partition (clamped to start..end) */
    JN_START_TIME,      /* from the first record with timestamp >= |start_value| */
    JN_START_GROUP,     /* from |group|'s committed offsets, else per group_default */
};

typedef struct jn_sub_opts {
    const char *filter;       /* NUL-terminated; validated */
    enum jn_start start;
    int64_t start_value;
    const char *group;        /* for JN_START_GROUP */
    enum jn_start group_default; /* LIVE or EARLIEST when the group has no offset */
    bool lossy;               /* drop instead of lag when the sink is full */
    bool internal;            /* internal access (default false): the filter may name
                               * an internal stream, and a wildcard first level also
                               * covers internal streams. Doors' own plumbing only. */
    jn_sub_deliver_cb deliver;
    void *arg;
} jn_sub_opts_t;

/* Creates a subscription. Catch-up (for non-live starts) begins on the next
 * loop iteration, never inside this call. Without |internal|, a filter
 * starting with a wildcard covers user streams only, and one whose first
 * level names an internal stream ("__...") is refused. JN_EINVAL (filter,
 * internal stream, start), JN_ENOMEM. */
int jn_broker_subscribe(jn_broker_t *b, const jn_sub_opts_t *opts, jn_sub_t **out) JN_MUST_CHECK;
/* The sink has room again: catch-up continues on a later loop iteration. */
void jn_sub_resume(jn_sub_t *sub);
/* Stop offering records until jn_sub_resume. */
void jn_sub_pause(jn_sub_t *sub);
/* Stops and frees the subscription; the sink is not called again. */
void jn_sub_close(jn_sub_t *sub);
/* Records skipped by a lossy subscription. */
uint64_t jn_sub_dropped(const jn_sub_t *sub);
/* Next offset the subscription will be offered in |s|/|partition|. */
int64_t jn_sub_position(const jn_sub_t *sub, const jn_stream_t *s, uint32_t partition);
/* Records between the subscription's positions and the ends of the logs. */
int64_t jn_sub_lag(const jn_sub_t *sub);

/* ---- consumer groups ---- */

/* Commits are asynchronous and group-committed: jn_broker_group_commit
 * appends the commit to the offsets log and updates memory at once (a
 * fetch sees it immediately); it never fsyncs on the loop thread. The
 * offsets log is fsynced on the thread pool: at once for the commits a
 * jn_broker_group_wait_durable waiter covers (all waiters that arrive
 * while an fsync runs share the next one), and otherwise in the background
 * every fsync_interval_ms (the stream defaults') while commits come. A crash
 * loses at most the commits not yet fsynced (the tail of the log), never
 * earlier ones, and never leaves a corrupt log (recovery cuts a torn tail).
 * With the stream defaults' fsync "never", nothing is fsynced before close
 * and waiters fire at once. */

/* Group names: 1..249 bytes, printable ASCII. Returns 0 once the commit is
 * appended and visible (not yet durable: see jn_broker_group_wait_durable),
 * or JN_EINVAL (group, partition, offset, metadata not UTF-8), JN_ETOOBIG
 * (metadata), JN_ENOMEM, JN_EIO. */
int jn_broker_group_commit(jn_broker_t *b, const char *group, const jn_stream_t *s, uint32_t partition,
                           int64_t offset, const char *metadata) JN_MUST_CHECK;
/* A durability barrier for commits: calls |cb| once every commit (and
 * group delete) made so far is fsynced, status 0, or JN_EIO when the fsync
 * failed, JN_ECLOSED when the broker closed first. Fires at once
 * (synchronously, before returning) when they already are or the policy is
 * "never". |w| is caller-owned until it fires or is cancelled with
 * jn_plog_cancel_durable (e.g. when the client goes away). A door replies
 * "committed" from |cb|; periodic committers need not wait. */
void jn_broker_group_wait_durable(jn_broker_t *b, jn_durable_waiter_t *w, jn_durable_cb cb);
/* JN_ENOENT when the group has no committed offset there. */
int jn_broker_group_fetch(jn_broker_t *b, const char *group, const jn_stream_t *s, uint32_t partition,
                          int64_t *offset) JN_MUST_CHECK;
/* {"group": name, "offsets":[{"stream","partition","offset","lag","metadata"}]}
 * or NULL (JN_ENOENT) when the group has nothing committed. */
json_t *jn_broker_group_json(jn_broker_t *b, const char *group);
/* JSON array of group names. */
json_t *jn_broker_groups_json(jn_broker_t *b);
int jn_broker_group_delete(jn_broker_t *b, const char *group) JN_MUST_CHECK;

/* ---- tables: the latest value per key of a compacted stream ----
 *
 * A table is a stream with compact=true, one partition unless created
 * otherwise. Writes are records with subject = table name; a delete is a
 * tombstone (null value). The broker keeps key -> (partition, offset) in
 * memory (rebuilt from the log at open) and reads values from the log.
 */

/* Puts |key| = |value| with optional content type (kept as a
 * "content-type" header). Creates the table (a compacted stream) if it does
 * not exist and auto-create is on. */
int jn_broker_table_put(jn_broker_t *b, const char *table, const uint8_t *key, size_t klen,
                        const uint8_t *value, size_t vlen, const char *content_type,
                        jn_publish_result_t *out) JN_MUST_CHECK;
/* Creates the internal table |name| (compacted, one partition) if it does
 * not exist yet. Unlike user streams the name must start with "__" (the
 * reserved prefix: doors keep their durable state there, e.g. the MQTT
 * door's "__mqtt_sessions"); the rest follows the stream name rules. Once
 * it exists, jn_broker_table_put/get/delete/scan work on it as on any
 * table. JN_EINVAL (name, or an existing stream that is not a table),
 * JN_EIO, JN_ENOMEM. */
int jn_broker_table_open_internal(jn_broker_t *b, const char *name) JN_MUST_CHECK;
/* JN_ENOENT when absent (or deleted). |value| gets the bytes; |ctype| (may
 * be NULL, 128 bytes) the content type or "". |res| (may be NULL) where it
 * is stored, |ts| (may be NULL) its timestamp. */
int jn_broker_table_get(jn_broker_t *b, const char *table, const uint8_t *key, size_t klen, jn_buf_t *value,
                        char *ctype, size_t ctype_len, jn_publish_result_t *res, int64_t *ts) JN_MUST_CHECK;
int jn_broker_table_delete(jn_broker_t *b, const char *table, const uint8_t *key, size_t klen,
                           jn_publish_result_t *out) JN_MUST_CHECK;
/* Lists keys in byte order that start with |prefix|, strictly after |after|
 * (NULL to start), at most |limit|. Calls |cb| for each; returns the count
 * or JN_ENOENT when there is no such table. */
typedef int (*jn_table_key_cb)(const uint8_t *key, size_t klen, void *arg);
int jn_broker_table_scan(jn_broker_t *b, const char *table, const uint8_t *prefix, size_t plen,
                         const uint8_t *after, size_t alen, size_t limit, jn_table_key_cb cb, void *arg);
/* Number of live keys, or JN_ENOENT. */
int64_t jn_broker_table_count(jn_broker_t *b, const char *table);

/* ---- door definitions in the metadata log ----
 * Doors keep their own durable definitions (AMQP exchanges and bindings)
 * as JSON records "ext/<key>" of the metadata log: written and fsynced
 * before jn_broker_meta_put returns, replayed at open, compacted like the
 * rest. The broker stores them without interpreting them. */

/* Stores |value| (borrowed; NULL deletes) under |key| (up to 590 bytes).
 * 0, JN_ETOOBIG, JN_EIO, JN_ENOMEM. */
int jn_broker_meta_put(jn_broker_t *b, const char *key, json_t *value) JN_MUST_CHECK;
/* Calls |cb| for every stored definition whose key starts with |prefix|
 * (|value| borrowed; |cb| must not call jn_broker_meta_put). */
typedef void (*jn_meta_cb)(const char *key, json_t *value, void *arg);
void jn_broker_meta_each(jn_broker_t *b, const char *prefix, jn_meta_cb cb, void *arg);

/* ---- admin helpers ---- */
/* Flushes all tails now (normally once per loop iteration). */
void jn_broker_flush(jn_broker_t *b);

#endif
