/* kafka_data.c - the data path of the Kafka door: Metadata (with topic
 * auto-creation), Produce (batches appended as received; idempotent
 * producers' sequence checks, their state kept across restarts through
 * pstate.c), Fetch (long-polling, records sent from the
 * segment files with jn_conn_sendfile), ListOffsets and InitProducerId.
 *
 * Produced batches are stored byte for byte, compressed ones included; the
 * core decompresses them when another door needs the records
 * (jn_batch_iter_init_scratch), see docs/kafka.md.
 */
#include "kafka_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/clock.h"
#include "../../common/hash.h"
#include "../../common/log.h"

/* ---- Metadata ---- */

static void write_topic_meta(kconn_t *kc, jn_kwriter_t *w, int16_t v, int16_t err, jn_kstr_t name,
                             jn_stream_t *s)
{
    jn_kw_i16(w, err);
    jn_kw_str(w, name.p ? name.p : "", name.len > 0 ? name.len : 0);
    if (v >= 10) {
        uint8_t id[16] = {0};
        if (s)
            jn__kafka_topic_id(jn_stream_name(s), id);
        jn_kw_uuid(w, id);
    }
    if (v >= 1)
        jn_kw_bool(w, false);
    uint32_t np = s ? jn_stream_partitions(s) : 0;
    jn_kw_array(w, (int32_t)np);
    for (uint32_t p = 0; p < np; p++) {
        jn_kw_i16(w, 0);
        jn_kw_i32(w, (int32_t)p);
        jn_kw_i32(w, 0); /* leader: this node */
        if (v >= 7)
            jn_kw_i32(w, 0); /* leader epoch */
        jn_kw_array(w, 1);
        jn_kw_i32(w, 0);
        jn_kw_array(w, 1);
        jn_kw_i32(w, 0);
        if (v >= 5)
            jn_kw_array(w, 0);
        jn_kw_tags(w);
    }
    if (v >= 8)
        jn_kw_i32(w, INT32_MIN);
    jn_kw_tags(w);
    (void)kc;
}

void jn__kafka_metadata(kconn_t *kc, const jn_kafka_metadata_req_t *req)
{
    int16_t v = kc->hdr.api_version;
    jn_kwriter_t w;
    size_t mark;
    jn__kafka_begin(kc, &w, &mark);
    if (v >= 3)
        jn_kw_i32(&w, 0);
    jn_kw_array(&w, 1);
    jn_kw_i32(&w, 0);
    jn_kw_cstr(&w, kc->k->host);
    jn_kw_i32(&w, jn_kafka_port(kc->k));
    if (v >= 1)
        jn_kw_str(&w, NULL, -1);
    jn_kw_tags(&w);
    if (v >= 2)
        jn_kw_cstr(&w, "junction");
    if (v >= 1)
        jn_kw_i32(&w, 0);
    if (req->ntopics < 0) {
        int32_t n = 0;
        for (jn_stream_t *s = jn_broker_stream_next(kc->k->broker, NULL); s;
             s = jn_broker_stream_next(kc->k->broker, s))
            if (!jn__kafka_hidden(jn_stream_name(s)))
                n++;
        jn_kw_array(&w, n);
        for (jn_stream_t *s = jn_broker_stream_next(kc->k->broker, NULL); s;
             s = jn_broker_stream_next(kc->k->broker, s)) {
            const char *name = jn_stream_name(s);
            if (jn__kafka_hidden(name))
                continue;
            write_topic_meta(kc, &w, v, 0, (jn_kstr_t){name, (int32_t)strlen(name)}, s);
        }
    } else {
        jn_kw_array(&w, req->ntopics);
        for (int32_t i = 0; i < req->ntopics; i++) {
            int16_t err;
            jn_stream_t *s = jn__kafka_topic(kc, req->topics[i], req->allow_auto_create, &err);
            write_topic_meta(kc, &w, v, err, req->topics[i], s);
        }
    }
    if (v >= 8 && v <= 10)
        jn_kw_i32(&w, INT32_MIN);
    jn_kw_tags(&w);
    jn__kafka_end(kc, &w, mark);
}

/* ---- idempotent producers ----
 *
 * The state per (stream, partition) lives in pstate.c. It is rebuilt
 * lazily, on the first idempotent batch a partition gets after start, from
 * its snapshot in the KAFKA_PSTATE_TABLE table and the batch headers after
 * it (bounded: see jn_kps_rebuild). A snapshot is written when the
 * partition's log has rolled a segment since the last one (checked after
 * each idempotent append) and for every loaded partition at graceful
 * shutdown. Why a table and not files: the door has no directory of its
 * own, and the table is a compacted log like every other piece of durable
 * state; a snapshot lost or stale there only costs a longer scan, since a
 * snapshot is used only when its anchor batch is still in the log. */

struct kpart {
    kpart_t *next;
    char *stream;
    uint32_t partition;
    jn_plog_t *log; /* the log the state describes: another one (stream deleted
                     * and created again) means rebuilding */
    jn_kps_t ps;
    int64_t segs;   /* the log's segment count at the last snapshot or rebuild */
};

#define SEQ_BUCKETS 1024
#define SEQ_MAX 200000 /* tracked (producer, partition) pairs */
#define SNAP_KEY_MAX (JN_STREAM_NAME_MAX + 16)

static size_t seq_bucket(const char *stream, uint32_t part)
{
    uint64_t h = jn_fnv1a(stream, strlen(stream));
    h ^= part * 0xC2B2AE3D27D4EB4Full;
    return (size_t)(h % SEQ_BUCKETS);
}

/* "<stream>/<partition>": stream names have no '/'. */
static size_t snap_key(const kpart_t *e, char *key)
{
    int n = snprintf(key, SNAP_KEY_MAX, "%s/%" PRIu32, e->stream, e->partition);
    return n > 0 && n < SNAP_KEY_MAX ? (size_t)n : 0;
}

static int pstate_table(jn_broker_t *b)
{
    if (jn_broker_stream_find(b, KAFKA_PSTATE_TABLE, strlen(KAFKA_PSTATE_TABLE)))
        return 0;
    jn_plog_config_t pc;
    jn_plog_config_default(&pc);
    pc.compact = true;
    pc.fsync = JN_FSYNC_INTERVAL; /* a lost snapshot only means a longer scan */
    pc.retention_ms = -1;
    jn_stream_t *s;
    int rc = jn_broker_stream_create(b, KAFKA_PSTATE_TABLE, 1, &pc, &s);
    return rc == JN_EEXIST ? 0 : rc;
}

/* Writes the snapshot of |e| (dropping expired producers first). */
static void snapshot_write(jn_kafka_t *k, kpart_t *e)
{
    char key[SNAP_KEY_MAX];
    size_t klen = snap_key(e, key);
    e->segs = jn_plog_segment_count(e->log);
    jn_kps_expire(&e->ps, jn_wall_ms(), JN_KPS_EXPIRY_MS);
    jn_buf_t out;
    jn_buf_init(&out, JN_KPS_SNAPSHOT_MAX);
    int rc = klen ? jn_kps_snapshot(&e->ps, e->log, &out) : JN_EINVAL;
    if (rc == 0)
        rc = pstate_table(k->broker);
    if (rc == 0)
        rc = jn_broker_table_put(k->broker, KAFKA_PSTATE_TABLE, (const uint8_t *)key, klen, out.data, out.len,
                                 "application/octet-stream", NULL);
    if (rc < 0 && rc != JN_ENOENT)
        jn_warn("kafka: producer state snapshot of %s/%" PRIu32 " not written (%s)", e->stream, e->partition,
                jn_strerror(rc));
    jn_buf_free(&out);
}

static void rebuild(jn_kafka_t *k, kpart_t *e)
{
    char key[SNAP_KEY_MAX];
    size_t klen = snap_key(e, key);
    jn_buf_t v;
    jn_buf_init(&v, JN_KPS_SNAPSHOT_MAX);
    bool have = klen && jn_broker_stream_find(k->broker, KAFKA_PSTATE_TABLE, strlen(KAFKA_PSTATE_TABLE)) &&
                jn_broker_table_get(k->broker, KAFKA_PSTATE_TABLE, (const uint8_t *)key, klen, &v, NULL, 0, NULL,
                                    NULL) == 0;
    jn_kps_rebuild_info_t info;
    int rc = jn_kps_rebuild(&e->ps, e->log, have ? v.data : NULL, have ? v.len : 0, JN_KPS_SCAN_BYTES,
                            jn_wall_ms(), JN_KPS_EXPIRY_MS, &info);
    if (rc < 0)
        jn_warn("kafka: producer state of %s/%" PRIu32 " not rebuilt (%s): sequences unchecked until known",
                e->stream, e->partition, jn_strerror(rc));
    else
        jn_log(have && !info.snapshot_used ? JN_LOG_INFO : JN_LOG_DEBUG, "kafka: producer state of %s/%" PRIu32 ": %zu producers (snapshot %s, %" PRId64
                " batch headers read from offset %" PRId64 ")",
                e->stream, e->partition, jn_kps_count(&e->ps),
                info.snapshot_used ? "used" : have ? "stale, ignored" : "none", info.batches, info.scanned_from);
    e->segs = jn_plog_segment_count(e->log);
    jn_buf_free(&v);
}

/* The state of |s|/|part|, rebuilt first if it is not loaded yet (or
 * describes another log). NULL without memory: batches go unchecked. */
static kpart_t *part_state(jn_kafka_t *k, jn_stream_t *s, uint32_t part)
{
    const char *stream = jn_stream_name(s);
    jn_plog_t *log = jn_stream_plog(s, part);
    size_t b = seq_bucket(stream, part);
    kpart_t *e = k->seq[b];
    while (e && (e->partition != part || strcmp(e->stream, stream) != 0))
        e = e->next;
    if (e && e->log == log)
        return e;
    if (!e) {
        e = calloc(1, sizeof *e);
        if (!e)
            return NULL;
        e->stream = strdup(stream);
        if (!e->stream) {
            free(e);
            return NULL;
        }
        e->partition = part;
        jn_kps_init(&e->ps, &k->seq_count, SEQ_MAX);
        e->next = k->seq[b];
        k->seq[b] = e;
    }
    e->log = log;
    rebuild(k, e);
    return e;
}

/* A segment rolled since the last snapshot: take one, so that a restart
 * reads at most about one segment of headers. */
static void maybe_snapshot(jn_kafka_t *k, kpart_t *e)
{
    if (jn_plog_segment_count(e->log) != e->segs)
        snapshot_write(k, e);
}

void jn__kafka_seq_free(jn_kafka_t *k)
{
    if (!k->seq)
        return;
    for (size_t i = 0; i < SEQ_BUCKETS; i++) {
        kpart_t *e = k->seq[i];
        while (e) {
            kpart_t *n = e->next;
            /* Only while the stream still has this very log. */
            jn_stream_t *s = k->broker ? jn_broker_stream_find(k->broker, e->stream, strlen(e->stream)) : NULL;
            if (s && e->partition < jn_stream_partitions(s) && jn_stream_plog(s, e->partition) == e->log)
                snapshot_write(k, e);
            jn_kps_free(&e->ps);
            free(e->stream);
            free(e);
            e = n;
        }
        k->seq[i] = NULL;
    }
}

/* ---- Produce ---- */

struct kprod_wait {
    jn_durable_waiter_t w;
    kconn_t *kc;
    bool armed;
    int16_t error;
    int64_t base_offset;
    int64_t log_start;
};

static void write_produce_response(kconn_t *kc, const jn_kafka_produce_req_t *req)
{
    int16_t v = kc->hdr.api_version;
    jn_kwriter_t w;
    size_t mark;
    jn__kafka_begin(kc, &w, &mark);
    jn_kw_array(&w, req->ntopics);
    int32_t idx = 0;
    for (int32_t i = 0; i < req->ntopics; i++) {
        const jn_kafka_produce_topic_t *t = &req->topics[i];
        jn_kw_str(&w, t->name.p, t->name.len);
        jn_kw_array(&w, t->nparts);
        for (int32_t j = 0; j < t->nparts; j++, idx++) {
            const kprod_wait_t *pw = &kc->waits[idx];
            jn_kw_i32(&w, t->parts[j].index);
            jn_kw_i16(&w, pw->error);
            jn_kw_i64(&w, pw->error ? -1 : pw->base_offset);
            if (v >= 2)
                jn_kw_i64(&w, -1); /* log_append_time: CreateTime topics */
            if (v >= 5)
                jn_kw_i64(&w, pw->log_start);
            if (v >= 8) {
                jn_kw_array(&w, 0);
                jn_kw_str(&w, NULL, -1);
            }
            jn_kw_tags(&w);
        }
        jn_kw_tags(&w);
    }
    if (v >= 1)
        jn_kw_i32(&w, 0); /* throttle */
    jn_kw_tags(&w);
    jn__kafka_end(kc, &w, mark);
}

static void durable_cb(jn_durable_waiter_t *dw, int status)
{
    kprod_wait_t *pw = jn_container_of(dw, kprod_wait_t, w);
    kconn_t *kc = pw->kc;
    pw->armed = false;
    if (status)
        pw->error = JN_KERR_KAFKA_STORAGE_ERROR;
    if (--kc->waits_left > 0 || kc->park != KPARK_PRODUCE)
        return;
    const jn_kafka_produce_req_t *req = (const jn_kafka_produce_req_t *)kc->req;
    if (req->acks != 0)
        write_produce_response(kc, req);
    jn__kafka_unpark(kc);
}

void jn__kafka_produce_cancel(kconn_t *kc)
{
    if (kc->park != KPARK_PRODUCE || !kc->waits)
        return;
    for (int32_t i = 0; i < kc->nwaits; i++)
        if (kc->waits[i].armed)
            jn_plog_cancel_durable(&kc->waits[i].w);
    kc->waits = NULL;
}

static int16_t kafka_error_of(int rc)
{
    switch (rc) {
    case JN_ECORRUPT:
    case JN_EPROTO: return JN_KERR_CORRUPT_MESSAGE;
    case JN_ETOOBIG: return JN_KERR_MESSAGE_TOO_LARGE;
    case JN_EINVAL: return JN_KERR_CORRUPT_MESSAGE;
    case JN_EIO: return JN_KERR_KAFKA_STORAGE_ERROR;
    default: return JN_KERR_UNKNOWN_SERVER_ERROR;
    }
}

/* Appends the batches of one partition's records; returns a Kafka error
 * and sets *base to the first batch's offset, *last to the last offset. */
static int16_t produce_partition(kconn_t *kc, jn_stream_t *s, uint32_t part, const uint8_t *p, size_t len,
                                 int64_t *base, int64_t *last)
{
    const jn_plog_config_t *pc = jn_stream_config(s);
    size_t off = 0;
    bool first = true;
    kpart_t *touched = NULL;
    if (len == 0)
        return JN_KERR_CORRUPT_MESSAGE;
    while (off < len) {
        jn_batch_info_t bi;
        /* The magic byte is at 16 in every format: message sets v0/v1
         * (Produce v0-2 clients) are valid Kafka, just not stored here. */
        if (len - off > 16 && p[off + 16] < JN_BATCH_MAGIC)
            return JN_KERR_UNSUPPORTED_FOR_MESSAGE_FORMAT;
        int sz = jn_batch_parse(p + off, len - off, pc->max_batch_bytes, &bi);
        if (sz < 0)
            return sz == JN_ETOOBIG ? JN_KERR_MESSAGE_TOO_LARGE : JN_KERR_CORRUPT_MESSAGE;
        if (bi.attributes & JN_BATCH_TRANSACTIONAL)
            return JN_KERR_INVALID_RECORD; /* transactions are not supported */
        kpart_t *e = NULL;
        if (jn_kps_tracked(&bi)) {
            e = part_state(kc->k, s, part);
            int64_t dup = -1;
            int c = e ? jn_kps_check(&e->ps, &bi, &dup) : 0;
            if (c < 0)
                return (int16_t)-c;
            if (c == 1) {
                if (first)
                    *base = dup;
                *last = dup + bi.last_offset_delta;
                first = false;
                off += (size_t)sz;
                continue;
            }
        }
        int64_t b = jn_broker_append_batch(kc->k->broker, s, part, p + off, (size_t)sz);
        if (b < 0)
            return kafka_error_of((int)b);
        if (e) {
            /* Past the cap (or without memory) the producer goes untracked:
             * its batches are accepted unchecked, as before it was known. */
            if (jn_kps_record(&e->ps, &bi, b, jn_wall_ms()) == 0)
                touched = e;
        }
        if (first)
            *base = b;
        *last = b + bi.last_offset_delta;
        first = false;
        off += (size_t)sz;
    }
    if (touched)
        maybe_snapshot(kc->k, touched);
    return 0;
}

void jn__kafka_produce(kconn_t *kc, jn_kafka_produce_req_t *req)
{
    int32_t total = 0;
    for (int32_t i = 0; i < req->ntopics; i++)
        total += req->topics[i].nparts;
    kc->waits = jn_karena_alloc(&kc->arena, (size_t)total, sizeof(kprod_wait_t));
    if (!kc->waits) {
        jn_conn_abort(kc->conn);
        return;
    }
    kc->nwaits = total;
    bool txn = req->transactional_id.len >= 0;
    int32_t idx = 0;
    for (int32_t i = 0; i < req->ntopics; i++) {
        jn_kafka_produce_topic_t *t = &req->topics[i];
        int16_t terr = 0;
        char name[JN_STREAM_NAME_MAX + 1];
        jn__kafka_cstr(t->name, name, sizeof name);
        jn_stream_t *s = NULL;
        if (!jn__kafka_may(kc, JN_PERM_PUBLISH, name, strlen(name)))
            terr = JN_KERR_TOPIC_AUTHORIZATION_FAILED;
        else
            s = jn__kafka_topic(kc, t->name, true, &terr);
        for (int32_t j = 0; j < t->nparts; j++, idx++) {
            kprod_wait_t *pw = &kc->waits[idx];
            pw->kc = kc;
            pw->base_offset = -1;
            pw->log_start = -1;
            jn_kafka_produce_part_t *pp = &t->parts[j];
            if (txn) {
                pw->error = JN_KERR_INVALID_REQUEST;
                continue;
            }
            if (terr) {
                pw->error = terr;
                continue;
            }
            if (pp->index < 0 || (uint32_t)pp->index >= jn_stream_partitions(s)) {
                pw->error = JN_KERR_UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            if (!pp->records) {
                pw->error = JN_KERR_CORRUPT_MESSAGE;
                continue;
            }
            int64_t last = -1;
            pw->error = produce_partition(kc, s, (uint32_t)pp->index, pp->records, (size_t)pp->records_len,
                                          &pw->base_offset, &last);
            pw->log_start = jn_plog_start_offset(jn_stream_plog(s, (uint32_t)pp->index));
            /* Armed below, once every partition is appended. Parked
             * fetches were woken by the broker's append hook. */
            if (!pw->error)
                pw->w.offset = last;
        }
    }
    if (req->acks != -1) {
        if (req->acks != 0)
            write_produce_response(kc, req);
        kc->waits = NULL;
        return;
    }
    /* acks=all: answer once every appended partition is durable under its
     * stream's fsync policy. */
    kc->park = KPARK_PRODUCE;
    kc->waits_left = 1; /* held until every waiter is armed */
    idx = 0;
    for (int32_t i = 0; i < req->ntopics; i++) {
        jn_kafka_produce_topic_t *t = &req->topics[i];
        jn_stream_t *s = jn_broker_stream_find(kc->k->broker, t->name.p, (size_t)(t->name.len > 0 ? t->name.len : 0));
        for (int32_t j = 0; j < t->nparts; j++, idx++) {
            kprod_wait_t *pw = &kc->waits[idx];
            if (pw->error || !s)
                continue;
            kc->waits_left++;
            pw->armed = true;
            jn_broker_wait_durable(kc->k->broker, s, (uint32_t)t->parts[j].index, pw->w.offset, &pw->w,
                                   durable_cb);
        }
    }
    if (--kc->waits_left == 0) {
        write_produce_response(kc, req);
        kc->waits = NULL;
        kc->park = KPARK_NONE; /* answered at once: not parked */
    }
}

/* ---- InitProducerId ----
 *
 * Ids are handed out from blocks of KAFKA_PID_BLOCK reserved in the
 * KAFKA_PID_TABLE table (fsync always): its "next" key holds the first id
 * of no block yet. An id is answered only once the record reserving its
 * block is durable, so that after a crash or power loss the server starts
 * past every id a client was given (ids of a block never answered are
 * simply skipped). Requests wait only while that record's fsync is in
 * flight (the one that reserved, and any arriving meanwhile); the rest of
 * the block finds it durable and is answered at once. */

static int reserve_pids(jn_kafka_t *k)
{
    jn_broker_t *b = k->broker;
    if (!jn_broker_stream_find(b, KAFKA_PID_TABLE, strlen(KAFKA_PID_TABLE))) {
        jn_plog_config_t pc;
        jn_plog_config_default(&pc);
        pc.compact = true;
        pc.fsync = JN_FSYNC_ALWAYS;
        pc.retention_ms = -1;
        jn_stream_t *s;
        int rc = jn_broker_stream_create(b, KAFKA_PID_TABLE, 1, &pc, &s);
        if (rc && rc != JN_EEXIST)
            return rc;
    }
    if (k->pid_limit == 0) {
        jn_buf_t v;
        jn_buf_init(&v, 64);
        int rc = jn_broker_table_get(b, KAFKA_PID_TABLE, (const uint8_t *)"next", 4, &v, NULL, 0, NULL, NULL);
        int64_t next = 0;
        if (rc == 0 && v.len > 0 && v.len < 32) {
            char tmp[32];
            memcpy(tmp, v.data, v.len);
            tmp[v.len] = '\0';
            next = strtoll(tmp, NULL, 10);
        }
        jn_buf_free(&v);
        if (next < 1)
            next = 1;
        k->next_pid = k->pid_limit = next;
    }
    char val[32];
    int64_t limit = k->pid_limit + KAFKA_PID_BLOCK;
    int n = snprintf(val, sizeof val, "%" PRId64, limit);
    jn_publish_result_t res;
    int rc = jn_broker_table_put(b, KAFKA_PID_TABLE, (const uint8_t *)"next", 4, (const uint8_t *)val, (size_t)n,
                                 "text/plain", &res);
    if (rc)
        return rc;
    k->pid_limit = limit;
    k->pid_part = (uint32_t)res.partition;
    k->pid_offset = res.offset;
    return 0;
}

static void write_pid_response(kconn_t *kc, int16_t err, int64_t pid)
{
    jn_kwriter_t w;
    size_t mark;
    jn__kafka_begin(kc, &w, &mark);
    jn_kw_i32(&w, 0);
    jn_kw_i16(&w, err);
    jn_kw_i64(&w, err ? -1 : pid);
    jn_kw_i16(&w, err ? -1 : 0); /* epoch */
    jn_kw_tags(&w);
    jn__kafka_end(kc, &w, mark);
}

static void pid_durable_cb(jn_durable_waiter_t *w, int status)
{
    kconn_t *kc = jn_container_of(w, kconn_t, pid_wait);
    jn_kafka_t *k = kc->k;
    if (kc->park != KPARK_PID)
        return;
    if (status) {
        /* The reservation may be lost: hand out nothing more of its block
         * (the next request reserves a new one past it). */
        jn_warn("kafka: producer id block not durable (%s)", jn_strerror(status));
        k->next_pid = k->pid_limit;
        write_pid_response(kc, JN_KERR_KAFKA_STORAGE_ERROR, -1);
    } else {
        write_pid_response(kc, 0, kc->pid);
    }
    jn__kafka_unpark(kc);
}

void jn__kafka_init_producer_id_cancel(kconn_t *kc)
{
    if (kc->park == KPARK_PID)
        jn_plog_cancel_durable(&kc->pid_wait);
}

void jn__kafka_init_producer_id(kconn_t *kc, const jn_kafka_init_producer_id_req_t *req)
{
    jn_kafka_t *k = kc->k;
    if (req->transactional_id.len >= 0) {
        write_pid_response(kc, JN_KERR_INVALID_REQUEST, -1); /* transactions are not supported */
        return;
    }
    /* The table gone (deleted by an admin) took the reservation with it:
     * reserve again, past the ids handed out. */
    jn_stream_t *s = jn_broker_stream_find(k->broker, KAFKA_PID_TABLE, strlen(KAFKA_PID_TABLE));
    if (!s || k->next_pid >= k->pid_limit) {
        if (reserve_pids(k) != 0 ||
            !(s = jn_broker_stream_find(k->broker, KAFKA_PID_TABLE, strlen(KAFKA_PID_TABLE)))) {
            write_pid_response(kc, JN_KERR_KAFKA_STORAGE_ERROR, -1);
            return;
        }
    }
    kc->pid = k->next_pid++;
    /* Fires at once (inside this call) when the reservation is durable
     * already; jn__kafka_unpark knows the request is still in dispatch. */
    kc->park = KPARK_PID;
    jn_broker_wait_durable(k->broker, s, k->pid_part, k->pid_offset, &kc->pid_wait, pid_durable_cb);
}

/* ---- Fetch ----
 *
 * Zero copy: the response is encoded into a buffer of its own, with a
 * hole wherever a partition's records are a range of a segment file
 * (jn_plog_slice). Once the size is known, the parts go out in order: the
 * bytes before the first hole, the file range (jn_conn_sendfile: sendfile
 * on plain TCP), the bytes up to the next hole, and so on. The records
 * field is a length-prefixed blob in every version (int32 or, flexible,
 * an unsigned varint of length + 1), so the prefix is written before the
 * hole and nothing after it depends on the bytes. Records still in the
 * log's tail buffer (not yet written to the file) are copied. */

typedef struct fetch_hole {
    size_t at;                /* position in the encoded response */
    jn_plog_slice_t sl;       /* the range; sl.seg is our reference */
} fetch_hole_t;

typedef struct fetch_state {
    size_t bytes;        /* records bytes so far */
    bool errors;         /* a partition has an error: answer now */
    fetch_hole_t *holes; /* file ranges, in response order */
    int32_t nholes, capholes;
} fetch_state_t;

static void seg_unref(void *seg)
{
    jn_plog_segment_unref(seg);
}

static void fetch_drop_holes(fetch_state_t *st)
{
    for (int32_t i = 0; i < st->nholes; i++)
        jn_plog_segment_unref(st->holes[i].sl.seg);
    st->nholes = 0;
}

/* Finds the batches at |fp|'s offset within |budget|: *sl is a file range
 * (or memory of the tail buffer). Returns the bytes, 0 for nothing now, or
 * a Kafka error (negated). Only the first batch of a response may pass the
 * limits (as Kafka does): later partitions drop a batch that does not fit. */
static int64_t fetch_slice(jn_plog_t *log, const jn_kafka_fetch_part_t *fp, size_t budget, bool first,
                           jn_plog_slice_t *sl)
{
    int rc = jn_plog_slice(log, fp->fetch_offset, budget, sl);
    if (rc == JN_ERANGE)
        return -JN_KERR_OFFSET_OUT_OF_RANGE;
    if (rc < 0)
        return -JN_KERR_KAFKA_STORAGE_ERROR;
    if (sl->len == 0 || (!first && sl->len > budget) || sl->len > INT32_MAX) {
        if (sl->seg)
            jn_plog_segment_unref(sl->seg);
        sl->seg = NULL;
        return 0;
    }
    return (int64_t)sl->len;
}

/* Writes one partition of the response (or, with |w| NULL, only probes
 * whether it has data or an error). */
static void fetch_partition(jn_kwriter_t *w, int16_t v, jn_stream_t *s, int16_t terr,
                            const jn_kafka_fetch_part_t *fp, size_t max_total, fetch_state_t *st)
{
    int16_t err = terr;
    jn_plog_t *log = NULL;
    int64_t hw = -1, start = -1;
    if (!err && (fp->partition < 0 || (uint32_t)fp->partition >= jn_stream_partitions(s)))
        err = JN_KERR_UNKNOWN_TOPIC_OR_PARTITION;
    if (!err) {
        log = jn_stream_plog(s, (uint32_t)fp->partition);
        hw = jn_plog_end_offset(log);
        start = jn_plog_start_offset(log);
        if (fp->fetch_offset < start || fp->fetch_offset > hw)
            err = JN_KERR_OFFSET_OUT_OF_RANGE;
    }
    bool want = !err && fp->fetch_offset < hw && st->bytes < max_total && fp->max_bytes > 0;
    size_t budget = want ? max_total - st->bytes : 0;
    if (want && (size_t)fp->max_bytes < budget)
        budget = (size_t)fp->max_bytes;
    if (!w) {
        if (err)
            st->errors = true;
        else if (fp->fetch_offset < hw)
            st->bytes += 1; /* something is there */
        return;
    }
    jn_plog_slice_t sl = {0};
    int64_t got = 0;
    if (want && !w->err && st->nholes < st->capholes)
        got = fetch_slice(log, fp, budget, st->bytes == 0, &sl);
    if (got < 0)
        err = (int16_t)-got;
    jn_kw_i32(w, fp->partition);
    jn_kw_i16(w, err);
    jn_kw_i64(w, hw);
    jn_kw_i64(w, hw); /* last stable offset: no transactions */
    if (v >= 5)
        jn_kw_i64(w, start);
    jn_kw_array(w, 0); /* aborted transactions */
    if (v >= 11)
        jn_kw_i32(w, -1);
    if (got > 0) {
        jn_kw_bytes_len(w, (int32_t)got);
        if (sl.fd < 0) {
            jn_kw_raw(w, sl.mem, sl.len); /* the tail buffer: copy now */
            jn_plog_segment_unref(sl.seg);
        } else if (!w->err) {
            st->holes[st->nholes].at = w->b->len;
            st->holes[st->nholes].sl = sl;
            st->nholes++;
        } else {
            jn_plog_segment_unref(sl.seg);
        }
        st->bytes += (size_t)got;
    } else {
        jn_kw_bytes_len(w, 0);
    }
    if (err)
        st->errors = true;
    jn_kw_tags(w);
}

/* Queues the encoded response |b| with its holes filled from the files. */
static int fetch_send(kconn_t *kc, jn_buf_t *b, fetch_state_t *st)
{
    uint64_t total = b->len - 4;
    for (int32_t i = 0; i < st->nholes; i++)
        total += st->holes[i].sl.len;
    if (total > INT32_MAX)
        return JN_ETOOBIG;
    jn_store_be32(b->data, (uint32_t)total);
    size_t at = 0;
    int rc = 0;
    int32_t i = 0;
    for (; i < st->nholes && rc == 0; i++) {
        fetch_hole_t *h = &st->holes[i];
        rc = jn_conn_write(kc->conn, b->data + at, h->at - at);
        if (rc == 0)
            rc = jn_conn_sendfile(kc->conn, h->sl.fd, h->sl.pos, h->sl.len, h->sl.seg, seg_unref);
        if (rc == 0)
            h->sl.seg = NULL; /* the conn owns the reference now */
        at = h->at;
    }
    if (rc == 0)
        rc = jn_conn_write(kc->conn, b->data + at, b->len - at);
    for (int32_t k = 0; k < st->nholes; k++)
        if (st->holes[k].sl.seg)
            jn_plog_segment_unref(st->holes[k].sl.seg);
    st->nholes = 0;
    return rc;
}

void jn__kafka_fetch(kconn_t *kc, const jn_kafka_fetch_req_t *req, bool final)
{
    int16_t v = kc->hdr.api_version;
    bool was_parked = kc->park == KPARK_FETCH;
    size_t max_total = req->max_bytes > 0 ? (size_t)req->max_bytes : 0;
    if (max_total > KAFKA_FETCH_RESPONSE_MAX)
        max_total = KAFKA_FETCH_RESPONSE_MAX;
    /* Probe pass: is there anything (or an error) to answer with now? */
    if (!final && req->max_wait_ms > 0) {
        fetch_state_t probe = {0};
        for (int32_t i = 0; i < req->ntopics && !probe.errors; i++) {
            const jn_kafka_fetch_topic_t *t = &req->topics[i];
            int16_t terr = 0;
            jn_stream_t *s = jn__kafka_topic(kc, t->name, false, &terr);
            for (int32_t j = 0; j < t->nparts; j++)
                fetch_partition(NULL, v, s, terr, &t->parts[j], max_total, &probe);
        }
        if (!probe.errors && probe.bytes == 0) {
            if (!was_parked)
                jn__kafka_fetch_park(kc, jn__kafka_now() + req->max_wait_ms);
            return;
        }
    }
    fetch_state_t st = {0};
    int64_t nparts = 0;
    for (int32_t i = 0; i < req->ntopics; i++)
        nparts += req->topics[i].nparts;
    /* One hole per partition at most; the request arena already bounded
     * the count. Without the array every partition answers empty. */
    if (nparts > 0 && (st.holes = calloc((size_t)nparts, sizeof *st.holes)))
        st.capholes = (int32_t)nparts;
    jn_buf_t b;
    jn_buf_init(&b, KAFKA_FETCH_RESPONSE_MAX + (16u << 20));
    jn_kwriter_t w;
    jn__kafka_begin_buf(kc, &w, &b);
    jn_kw_i32(&w, 0); /* throttle */
    if (v >= 7) {
        jn_kw_i16(&w, 0);
        jn_kw_i32(&w, 0); /* no fetch sessions: every fetch is a full one */
    }
    jn_kw_array(&w, req->ntopics);
    for (int32_t i = 0; i < req->ntopics; i++) {
        const jn_kafka_fetch_topic_t *t = &req->topics[i];
        int16_t terr = 0;
        char name[JN_STREAM_NAME_MAX + 8];
        jn__kafka_cstr(t->name, name, JN_STREAM_NAME_MAX + 1);
        jn_stream_t *s = jn__kafka_topic(kc, t->name, false, &terr);
        if (s) {
            size_t nl = strlen(name);
            memcpy(name + nl, "/#", 3);
            if (!jn__kafka_may(kc, JN_PERM_SUBSCRIBE, name, nl + 2))
                terr = JN_KERR_TOPIC_AUTHORIZATION_FAILED;
        }
        jn_kw_str(&w, t->name.p, t->name.len);
        jn_kw_array(&w, t->nparts);
        for (int32_t j = 0; j < t->nparts; j++)
            fetch_partition(&w, v, s, terr, &t->parts[j], max_total, &st);
        jn_kw_tags(&w);
    }
    jn_kw_tags(&w);
    if (!final && !st.errors && st.bytes < (size_t)(req->min_bytes > 0 ? req->min_bytes : 0) &&
        req->max_wait_ms > 0) {
        /* Not enough yet: drop what was encoded and keep waiting. */
        fetch_drop_holes(&st);
        if (!was_parked)
            jn__kafka_fetch_park(kc, jn__kafka_now() + req->max_wait_ms);
        goto done;
    }
    int rc = w.err;
    if (rc == 0)
        rc = fetch_send(kc, &b, &st);
    fetch_drop_holes(&st);
    if (rc < 0 && rc != JN_ECLOSED) {
        /* Part of the answer may be queued already: the stream cannot
         * be repaired, so the connection goes (as in jn__kafka_end). */
        jn_warn("kafka: %s: cannot send a fetch response (%s)", jn_conn_peer(kc->conn), jn_strerror(rc));
        jn_conn_abort(kc->conn);
        goto done;
    }
    if (was_parked)
        jn__kafka_unpark(kc);
done:
    jn_buf_free(&b);
    free(st.holes);
}

/* ---- ListOffsets ---- */

void jn__kafka_list_offsets(kconn_t *kc, const jn_kafka_list_offsets_req_t *req)
{
    int16_t v = kc->hdr.api_version;
    jn_kwriter_t w;
    size_t mark;
    jn__kafka_begin(kc, &w, &mark);
    if (v >= 2)
        jn_kw_i32(&w, 0);
    jn_kw_array(&w, req->ntopics);
    for (int32_t i = 0; i < req->ntopics; i++) {
        const jn_kafka_list_offsets_topic_t *t = &req->topics[i];
        int16_t terr = 0;
        jn_stream_t *s = jn__kafka_topic(kc, t->name, false, &terr);
        jn_kw_str(&w, t->name.p, t->name.len);
        jn_kw_array(&w, t->nparts);
        for (int32_t j = 0; j < t->nparts; j++) {
            const jn_kafka_list_offsets_part_t *p = &t->parts[j];
            int16_t err = terr;
            int64_t ts = -1, off = -1;
            if (!err && (p->partition < 0 || (uint32_t)p->partition >= jn_stream_partitions(s)))
                err = JN_KERR_UNKNOWN_TOPIC_OR_PARTITION;
            if (!err) {
                jn_plog_t *log = jn_stream_plog(s, (uint32_t)p->partition);
                int64_t end = jn_plog_end_offset(log);
                if (p->timestamp == -1 || p->timestamp == -3) {
                    off = end; /* -3 (max timestamp) approximated by the end */
                } else if (p->timestamp == -2) {
                    off = jn_plog_start_offset(log);
                } else if (p->timestamp >= 0) {
                    off = jn_plog_offset_for_time(log, p->timestamp);
                    if (off >= end)
                        off = -1;
                    else
                        ts = p->timestamp;
                } else {
                    err = JN_KERR_INVALID_REQUEST;
                }
            }
            jn_kw_i32(&w, p->partition);
            jn_kw_i16(&w, err);
            jn_kw_i64(&w, ts);
            jn_kw_i64(&w, off);
            if (v >= 4)
                jn_kw_i32(&w, 0);
            jn_kw_tags(&w);
        }
        jn_kw_tags(&w);
    }
    jn_kw_tags(&w);
    jn__kafka_end(kc, &w, mark);
}
