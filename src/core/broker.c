/* broker.c - the broker's spine: open/close and metadata replay, the
 * streams registry, subject -> stream mapping, publish and batch append,
 * per-iteration flushing, maintenance and per-stream metrics.
 *
 * Every durable fact is a record in a log (see broker.h for the layout).
 * Admin operations (stream create/update/delete, users, tokens, ACLs, door
 * definitions, queue declarations) write the metadata log and fdatasync it
 * synchronously, on the loop thread, before returning. That is a deliberate
 * exception to "no fsync on the loop": admin calls are rare (an operator or
 * a client declaring its topology, not per message), their contracts say
 * "durable before return" and their callers are synchronous (a stream
 * created by an auto-creating publish must exist durably before records
 * land in it, or a crash would leave records of an unknown stream), and
 * the in-memory change follows the fsync, so nothing depends on a state
 * that could still vanish. Making them asynchronous would put a waiter in
 * every admin path of every door for an operation that happens a few times
 * a day. Consumer-group commits used to take the same path and do not any
 * more: they are frequent (every door commits periodically), so they are
 * appended and group-committed on the thread pool (group.c).
 *
 * The record hot path never fsyncs on the loop: appends go to the
 * partition's tail buffer, a uv_prepare handle flushes the partitions that
 * were written during the loop iteration (a dirty list, not a scan), and
 * fsync follows each stream's policy on the thread pool (plog.c).
 *
 * Maintenance (retention, rolls, compaction) runs from a timer; each tick
 * does a bounded amount of work per log (plog.c: at most 64 segments
 * deleted, and one compaction step - mapping up to 64 MiB of keys or
 * rewriting one segment - per partition), so a big compaction spreads over
 * many ticks instead of stalling the loop. The one fsync it does on the
 * loop (a rewritten segment, before its rename) is thus one per tick per
 * compacted partition.
 *
 * Everything that happens after an append - table index updates and live
 * delivery to subscriptions - happens in one place (after_append), so that
 * every door gets it whether it publishes records or appends whole batches.
 * Its last step calls the append hooks (jn_broker_on_append): a signal that
 * costs nothing per record, for doors that only need to know a partition
 * grew (a parked Kafka Fetch) and would otherwise subscribe and have every
 * record - compressed batches decompressed - offered to them.
 */
#include "broker_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/hash.h"
#include "../common/fs.h"
#include "../common/log.h"

#define META_STREAM_PREFIX "stream/"

/* ---- small helpers ---- */

static int stream_dir(const jn_broker_t *b, const char *name, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/streams/%s", b->data_dir, name);
    return (n < 0 || (size_t)n >= outlen) ? JN_EINVAL : 0;
}

static int part_dir(const jn_broker_t *b, const char *name, uint32_t p, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/streams/%s/%u", b->data_dir, name, p);
    return (n < 0 || (size_t)n >= outlen) ? JN_EINVAL : 0;
}

static void mark_dirty(jn_broker_t *b, jn_part_t *part)
{
    if (!jn_list_linked(&part->dirty))
        jn_list_insert_tail(&b->dirty, &part->dirty);
}

/* ---- plog config <-> JSON ---- */

static const char *fsync_name(enum jn_fsync_policy p)
{
    switch (p) {
    case JN_FSYNC_ALWAYS: return "always";
    case JN_FSYNC_NEVER: return "never";
    default: return "interval";
    }
}

json_t *jn_plog_config_json(const jn_plog_config_t *c)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:s,s:I,s:b,s:I,s:I,s:I}",
                     "retention_ms", (json_int_t)c->retention_ms,
                     "retention_bytes", (json_int_t)c->retention_bytes,
                     "segment_bytes", (json_int_t)c->segment_bytes,
                     "segment_ms", (json_int_t)c->segment_ms,
                     "fsync", fsync_name(c->fsync),
                     "fsync_interval_ms", (json_int_t)c->fsync_interval_ms,
                     "compact", c->compact ? 1 : 0,
                     "max_batch_bytes", (json_int_t)c->max_batch_bytes,
                     "index_interval_bytes", (json_int_t)c->index_interval_bytes,
                     "delete_retention_ms", (json_int_t)c->delete_retention_ms);
}

static bool int_in(const json_t *v, int64_t lo, int64_t hi, int64_t *out)
{
    if (!json_is_integer(v))
        return false;
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return false;
    *out = (int64_t)x;
    return true;
}

int jn_plog_config_from_json(const json_t *j, const jn_plog_config_t *base, jn_plog_config_t *out,
                             char *err, size_t errlen)
{
    jn_plog_config_t c;
    const char *bad = NULL, *why = NULL;
    if (base)
        c = *base;
    else
        jn_plog_config_default(&c);
    if (!json_is_object(j)) {
        bad = "config";
        why = "must be an object";
        goto fail;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)j, k, v) {
        int64_t x = 0;
        bad = k;
        if (strcmp(k, "retention_ms") == 0) {
            why = "must be an integer >= -1";
            if (!int_in(v, -1, INT64_MAX, &x))
                goto fail;
            c.retention_ms = x;
        } else if (strcmp(k, "retention_bytes") == 0) {
            why = "must be an integer >= -1";
            if (!int_in(v, -1, INT64_MAX, &x))
                goto fail;
            c.retention_bytes = x;
        } else if (strcmp(k, "segment_bytes") == 0) {
            why = "must be an integer from 1 to 2^40";
            if (!int_in(v, 1, (int64_t)1 << 40, &x))
                goto fail;
            c.segment_bytes = (uint64_t)x;
        } else if (strcmp(k, "segment_ms") == 0) {
            why = "must be an integer >= 0";
            if (!int_in(v, 0, INT64_MAX, &x))
                goto fail;
            c.segment_ms = x;
        } else if (strcmp(k, "fsync") == 0) {
            why = "must be \"always\", \"interval\" or \"never\"";
            const char *s = json_string_value(v);
            if (!s)
                goto fail;
            if (strcmp(s, "always") == 0)
                c.fsync = JN_FSYNC_ALWAYS;
            else if (strcmp(s, "interval") == 0)
                c.fsync = JN_FSYNC_INTERVAL;
            else if (strcmp(s, "never") == 0)
                c.fsync = JN_FSYNC_NEVER;
            else
                goto fail;
        } else if (strcmp(k, "fsync_interval_ms") == 0) {
            why = "must be an integer >= 1";
            if (!int_in(v, 1, INT64_MAX, &x))
                goto fail;
            c.fsync_interval_ms = x;
        } else if (strcmp(k, "compact") == 0) {
            why = "must be a boolean";
            if (!json_is_boolean(v))
                goto fail;
            c.compact = json_is_true(v);
        } else if (strcmp(k, "max_batch_bytes") == 0) {
            why = "must be an integer from 61 to 2^30";
            if (!int_in(v, JN_BATCH_HEADER_SIZE, (int64_t)1 << 30, &x))
                goto fail;
            c.max_batch_bytes = (uint32_t)x;
        } else if (strcmp(k, "index_interval_bytes") == 0) {
            why = "must be an integer from 1 to 2^30";
            if (!int_in(v, 1, (int64_t)1 << 30, &x))
                goto fail;
            c.index_interval_bytes = (uint32_t)x;
        } else if (strcmp(k, "delete_retention_ms") == 0) {
            why = "must be an integer >= 0";
            if (!int_in(v, 0, INT64_MAX, &x))
                goto fail;
            c.delete_retention_ms = x;
        } else {
            why = "unknown member";
            goto fail;
        }
    }
    *out = c;
    return 0;
fail:
    if (err && errlen)
        snprintf(err, errlen, "%s: %s", bad, why);
    return JN_EINVAL;
}

/* ---- config ---- */

void jn_broker_config_default(jn_broker_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->data_dir = "./data";
    c->default_partitions = 1;
    c->auto_create_streams = true;
    jn_plog_config_default(&c->stream_defaults);
    c->mappings = NULL;
    c->nmappings = 0;
    c->maintenance_interval_ms = 5000;
    c->catchup_batch_bytes = 256 * 1024;
}

int jn_stream_name_validate(const char *name, size_t len)
{
    if (!name || len == 0 || len > JN_STREAM_NAME_MAX)
        return JN_EINVAL;
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return JN_EINVAL;
    if (len >= 2 && name[0] == '_' && name[1] == '_')
        return JN_EINVAL;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return JN_EINVAL;
    }
    return 0;
}

/* ---- metadata / offsets log I/O ---- */

int jn__broker_log_write(jn_broker_t *b, jn_plog_t *log, const void *key, size_t klen,
                         const void *value, size_t vlen, bool tombstone, bool sync)
{
    if (klen > INT32_MAX || vlen > INT32_MAX)
        return JN_ETOOBIG;
    jn_record_t r;
    memset(&r, 0, sizeof r);
    r.key = key;
    r.key_len = (int32_t)klen;
    r.value = tombstone ? NULL : (value ? value : (const void *)"");
    r.value_len = tombstone ? -1 : (int32_t)vlen;
    r.timestamp = jn_clock_now(&b->clock);
    jn_batch_builder_t bb;
    jn_buf_reset(&b->mbuf);
    int rc = jn_batch_builder_begin(&bb, &b->mbuf);
    if (rc < 0)
        return rc;
    rc = jn_batch_builder_add(&bb, &r);
    if (rc < 0)
        return rc;
    rc = jn_batch_builder_finish(&bb);
    if (rc < 0)
        return rc;
    int64_t off = jn_plog_append(log, b->mbuf.data, (size_t)rc);
    if (off < 0)
        return (int)off;
    if (!sync)
        return 0; /* the caller's flush writes it, its waiter fsyncs it */
    /* fdatasync on the loop thread: admin writes are rare enough to pay
     * for it (see the top). */
    return jn_plog_sync(log);
}

int jn__broker_log_replay(jn_broker_t *b, jn_plog_t *log, jn_buf_t *buf, jn__record_cb cb, void *arg)
{
    int64_t off = jn_plog_start_offset(log);
    int64_t end = jn_plog_end_offset(log);
    while (off < end) {
        jn_buf_reset(buf);
        int n = jn_plog_read(log, off, 1 << 20, buf);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        size_t pos = 0;
        int64_t next = off;
        while (pos < buf->len) {
            jn_batch_info_t bi;
            int sz = jn_batch_parse(buf->data + pos, buf->len - pos, INT32_MAX, &bi);
            if (sz < 0)
                return JN_ECORRUPT;
            jn_batch_iter_t it;
            int rc = jn_batch_iter_init_scratch(&it, buf->data + pos, (size_t)sz, false, &b->zbuf);
            if (rc == 0) {
                jn_record_t rec;
                while ((rc = jn_batch_iter_next(&it, &rec)) == 1) {
                    if (rec.offset < off)
                        continue;
                    rc = cb(b, &rec, arg);
                    if (rc < 0)
                        return rc;
                }
                if (rc < 0)
                    return JN_ECORRUPT;
            } else if (rc != JN_EUNSUPPORTED && rc != JN_ETOOBIG) {
                return JN_ECORRUPT;
            }
            int64_t last = bi.base_offset + bi.last_offset_delta + 1;
            if (last > next)
                next = last;
            pos += (size_t)sz;
        }
        if (next <= off)
            return JN_ECORRUPT; /* no progress: never loop forever */
        off = next;
    }
    return 0;
}

/* ---- streams registry ---- */

static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t m = alen < blen ? alen : blen;
    int c = memcmp(a, b, m);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* Index of |name| in the sorted registry, or where it would go (*found false). */
static size_t stream_search(const jn_broker_t *b, const char *name, size_t len, bool *found)
{
    size_t lo = 0, hi = b->nstreams;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const jn_stream_t *s = b->streams[mid];
        int c = name_cmp(s->name, s->name_len, name, len);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

jn_stream_t *jn_broker_stream_find(jn_broker_t *b, const char *name, size_t len)
{
    if (!b || !name)
        return NULL;
    bool found;
    size_t i = stream_search(b, name, len, &found);
    return found ? b->streams[i] : NULL;
}

jn_stream_t *jn_broker_stream_next(jn_broker_t *b, jn_stream_t *prev)
{
    if (!prev)
        return b->nstreams ? b->streams[0] : NULL;
    bool found;
    size_t i = stream_search(b, prev->name, prev->name_len, &found);
    if (found)
        i++;
    return i < b->nstreams ? b->streams[i] : NULL;
}

size_t jn_broker_stream_count(const jn_broker_t *b) { return b->nstreams; }
const char *jn_stream_name(const jn_stream_t *s) { return s->name; }

static bool name_is_internal(const char *name, size_t len)
{
    return len >= 2 && name[0] == '_' && name[1] == '_';
}

bool jn_stream_is_internal(const jn_stream_t *s) { return name_is_internal(s->name, s->name_len); }
uint32_t jn_stream_partitions(const jn_stream_t *s) { return s->nparts; }
const jn_plog_config_t *jn_stream_config(const jn_stream_t *s) { return &s->cfg; }

jn_plog_t *jn_stream_plog(const jn_stream_t *s, uint32_t partition)
{
    return partition < s->nparts ? s->parts[partition]->log : NULL;
}

static bool stream_registered(const jn_broker_t *b, const jn_stream_t *s)
{
    bool found;
    size_t i = stream_search(b, s->name, s->name_len, &found);
    return found && b->streams[i] == s;
}

static int open_parts(jn_broker_t *b, jn_stream_t *s, uint32_t from, uint32_t to)
{
    for (uint32_t p = from; p < to; p++) {
        char dir[PATH_MAX];
        int rc = part_dir(b, s->name, p, dir, sizeof dir);
        if (rc == 0)
            rc = jn_fs_mkdir_p(dir);
        if (rc < 0)
            return rc;
        jn_part_t *part = calloc(1, sizeof *part);
        if (!part)
            return JN_ENOMEM;
        part->s = s;
        part->index = p;
        jn_list_init(&part->dirty);
        rc = jn_plog_open(b->loop, dir, &s->cfg, &b->clock, &part->log);
        if (rc < 0) {
            free(part);
            return rc;
        }
        s->parts[p] = part;
    }
    return 0;
}

/* Closes (or destroys) partitions [from, nparts) and frees them. */
static void close_parts(jn_stream_t *s, uint32_t from, bool destroy)
{
    for (uint32_t p = from; p < s->nparts; p++) {
        jn_part_t *part = s->parts[p];
        if (!part)
            continue;
        jn_list_remove(&part->dirty);
        if (destroy)
            jn_plog_destroy(part->log);
        else
            jn_plog_close(part->log);
        free(part);
        s->parts[p] = NULL;
    }
}

static void stream_free(jn_stream_t *s, bool destroy)
{
    if (!s)
        return;
    if (s->parts)
        close_parts(s, 0, destroy);
    free(s->parts);
    jn__table_index_free(s->table);
    free(s);
}

static void stream_metrics(jn_broker_t *b, jn_stream_t *s)
{
    char labels[JN_STREAM_NAME_MAX + 16];
    snprintf(labels, sizeof labels, "stream=\"%s\"", s->name);
    s->m_records = jn_metrics_counter(b->metrics, "junction_records_published_total",
                                      "Records appended to a stream.", labels);
    s->m_bytes = jn_metrics_counter(b->metrics, "junction_published_bytes_total",
                                    "Batch bytes appended to a stream.", labels);
}

/* Opens |nparts| partitions of stream |name| (not yet registered). */
static int stream_open(jn_broker_t *b, const char *name, uint32_t nparts, const jn_plog_config_t *cfg,
                       jn_stream_t **out)
{
    int rc = JN_ENOMEM;
    size_t len = strlen(name);
    jn_stream_t *s = calloc(1, sizeof *s);
    if (!s || len > JN_STREAM_NAME_MAX)
        goto fail;
    s->b = b;
    s->id = b->next_stream_id++;
    memcpy(s->name, name, len + 1);
    s->name_len = len;
    s->cfg = *cfg;
    jn_list_init(&s->subs);
    s->parts = calloc(nparts, sizeof *s->parts);
    if (!s->parts)
        goto fail;
    s->nparts = nparts;
    rc = open_parts(b, s, 0, nparts);
    if (rc < 0)
        goto fail;
    if (cfg->compact) {
        rc = JN_ENOMEM;
        s->table = jn__table_index_new();
        if (!s->table)
            goto fail;
    }
    stream_metrics(b, s);
    *out = s;
    return 0;
fail:
    stream_free(s, false);
    return rc;
}

static int stream_insert(jn_broker_t *b, jn_stream_t *s)
{
    bool found;
    size_t i = stream_search(b, s->name, s->name_len, &found);
    if (found)
        return JN_EEXIST;
    if (b->nstreams == b->capstreams) {
        size_t ncap = b->capstreams ? b->capstreams * 2 : 16;
        jn_stream_t **ns = realloc(b->streams, ncap * sizeof *ns);
        if (!ns)
            return JN_ENOMEM;
        b->streams = ns;
        b->capstreams = ncap;
    }
    memmove(&b->streams[i + 1], &b->streams[i], (b->nstreams - i) * sizeof *b->streams);
    b->streams[i] = s;
    b->nstreams++;
    return 0;
}

static void stream_unregister(jn_broker_t *b, jn_stream_t *s)
{
    bool found;
    size_t i = stream_search(b, s->name, s->name_len, &found);
    if (!found || b->streams[i] != s)
        return;
    memmove(&b->streams[i], &b->streams[i + 1], (b->nstreams - i - 1) * sizeof *b->streams);
    b->nstreams--;
}

static int persist_stream(jn_broker_t *b, const char *name, uint32_t nparts, const jn_plog_config_t *cfg)
{
    char key[sizeof META_STREAM_PREFIX + JN_STREAM_NAME_MAX];
    int klen = snprintf(key, sizeof key, META_STREAM_PREFIX "%s", name);
    if (!cfg)
        return jn__broker_log_write(b, b->meta, key, (size_t)klen, NULL, 0, true, true);
    json_t *j = json_pack("{s:I,s:o}", "partitions", (json_int_t)nparts, "config", jn_plog_config_json(cfg));
    char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!txt)
        return JN_ENOMEM;
    int rc = jn__broker_log_write(b, b->meta, key, (size_t)klen, txt, strlen(txt), false, true);
    free(txt);
    return rc;
}

int jn__broker_stream_create(jn_broker_t *b, const char *name, uint32_t partitions,
                             const jn_plog_config_t *cfg, jn_stream_t **out)
{
    if (!name || partitions < 1 || partitions > JN_PARTITIONS_MAX)
        return JN_EINVAL;
    if (jn_broker_stream_find(b, name, strlen(name)))
        return JN_EEXIST;
    if (!cfg)
        cfg = &b->cfg.stream_defaults;
    /* Files left behind by a delete interrupted by a crash must not come
     * back as the new stream's content. */
    char dir[PATH_MAX];
    int rc = stream_dir(b, name, dir, sizeof dir);
    if (rc < 0)
        return rc;
    jn_fs_rm_tree(dir);
    jn_stream_t *s = NULL;
    rc = stream_open(b, name, partitions, cfg, &s);
    if (rc < 0)
        return rc;
    rc = persist_stream(b, name, partitions, cfg);
    if (rc < 0)
        goto fail;
    rc = stream_insert(b, s);
    if (rc < 0)
        goto fail;
    rc = jn__sub_stream_added(b, s, 0);
    if (rc < 0)
        jn_error("broker: stream %s: adding subscription cursors: %s", name, jn_strerror(rc));
    jn_info("broker: created stream %s (%u partitions)", name, partitions);
    if (out)
        *out = s;
    return 0;
fail:
    stream_free(s, true);
    return rc;
}

int jn_broker_stream_create(jn_broker_t *b, const char *name, uint32_t partitions,
                            const jn_plog_config_t *cfg, jn_stream_t **out)
{
    if (!b || !name || jn_stream_name_validate(name, strlen(name)) < 0)
        return JN_EINVAL;
    return jn__broker_stream_create(b, name, partitions, cfg, out);
}

int jn_broker_stream_update(jn_broker_t *b, jn_stream_t *s, const jn_plog_config_t *cfg)
{
    if (!b || !s || !stream_registered(b, s))
        return JN_ENOENT;
    if (!cfg)
        return JN_EINVAL;
    int rc = persist_stream(b, s->name, s->nparts, cfg);
    if (rc < 0)
        return rc;
    bool was_compact = s->cfg.compact;
    s->cfg = *cfg;
    for (uint32_t p = 0; p < s->nparts; p++)
        jn_plog_set_config(s->parts[p]->log, cfg);
    if (cfg->compact && !was_compact) {
        s->table = jn__table_index_new();
        if (!s->table)
            return JN_ENOMEM;
        rc = jn__table_rebuild(b, s);
        if (rc < 0)
            return rc;
    } else if (!cfg->compact && was_compact) {
        jn__table_index_free(s->table);
        s->table = NULL;
    }
    return 0;
}

int jn_broker_stream_add_partitions(jn_broker_t *b, jn_stream_t *s, uint32_t partitions)
{
    if (!b || !s || !stream_registered(b, s))
        return JN_ENOENT;
    if (partitions < s->nparts || partitions > JN_PARTITIONS_MAX)
        return JN_EINVAL;
    if (partitions == s->nparts)
        return 0;
    uint32_t old = s->nparts;
    jn_part_t **np = realloc(s->parts, partitions * sizeof *np);
    if (!np)
        return JN_ENOMEM;
    s->parts = np;
    for (uint32_t p = old; p < partitions; p++)
        np[p] = NULL;
    s->nparts = partitions;
    int rc = open_parts(b, s, old, partitions);
    if (rc == 0)
        rc = persist_stream(b, s->name, partitions, &s->cfg);
    if (rc < 0) {
        close_parts(s, old, true);
        s->nparts = old;
        return rc;
    }
    rc = jn__sub_stream_added(b, s, old);
    if (rc < 0)
        jn_error("broker: stream %s: adding subscription cursors: %s", s->name, jn_strerror(rc));
    return 0;
}

int jn_broker_stream_delete(jn_broker_t *b, const char *name)
{
    jn_stream_t *s = b && name ? jn_broker_stream_find(b, name, strlen(name)) : NULL;
    if (!s)
        return JN_ENOENT;
    int rc = persist_stream(b, s->name, 0, NULL);
    if (rc < 0)
        return rc;
    jn__sub_stream_removed(b, s);
    jn__group_stream_removed(b, s->name);
    stream_unregister(b, s);
    char dir[PATH_MAX];
    bool have_dir = stream_dir(b, s->name, dir, sizeof dir) == 0;
    jn_info("broker: deleted stream %s", s->name);
    stream_free(s, true);
    if (have_dir)
        jn_fs_rm_tree(dir);
    return 0;
}

json_t *jn_stream_json(const jn_stream_t *s)
{
    json_t *parts = json_array();
    int64_t records = 0;
    uint64_t bytes = 0;
    for (uint32_t p = 0; parts && p < s->nparts; p++) {
        jn_plog_t *log = s->parts[p]->log;
        int64_t so = jn_plog_start_offset(log), eo = jn_plog_end_offset(log);
        uint64_t sz = jn_plog_size_bytes(log);
        records += eo - so;
        bytes += sz;
        json_array_append_new(parts, json_pack("{s:I,s:I,s:I,s:I,s:I}", "partition", (json_int_t)p,
                                               "start_offset", (json_int_t)so, "end_offset", (json_int_t)eo,
                                               "bytes", (json_int_t)sz, "segments",
                                               (json_int_t)jn_plog_segment_count(log)));
    }
    if (!parts)
        return NULL;
    return json_pack("{s:s,s:I,s:o,s:I,s:I,s:o}", "name", s->name, "partitions", (json_int_t)s->nparts,
                     "config", jn_plog_config_json(&s->cfg), "records", (json_int_t)records, "bytes",
                     (json_int_t)bytes, "partition_info", parts);
}

/* ---- subject mapping ---- */

const char *jn_broker_stream_of_subject(const jn_broker_t *b, const char *subject, size_t len,
                                        size_t *name_len)
{
    for (size_t i = 0; i < b->nmappings; i++) {
        const jn_mapping_t *m = &b->mappings[i];
        if (jn_filter_match(m->filter, strlen(m->filter), subject, len)) {
            *name_len = strlen(m->stream);
            return m->stream;
        }
    }
    const char *slash = memchr(subject, '/', len);
    *name_len = slash ? (size_t)(slash - subject) : len;
    return subject;
}

/* ---- append path ---- */

/* Append hooks: a partition grew. Last, so that a hook sees the records
 * already offered and indexed. */
static void notify_append(jn_broker_t *b, jn_stream_t *s, uint32_t p)
{
    if (b->nhooks == 0)
        return;
    int64_t end = jn_plog_end_offset(s->parts[p]->log);
    for (size_t i = 0; i < b->nhooks; i++)
        b->hooks[i].cb(b->hooks[i].arg, s, p, end);
}

/* Everything that follows an append, for every door. */
static void after_append(jn_broker_t *b, jn_stream_t *s, uint32_t p, const uint8_t *batch, size_t len,
                         int64_t base, int32_t count, const char *subject, size_t subject_len)
{
    if (s->m_records)
        jn_counter_add(s->m_records, (uint64_t)count);
    if (s->m_bytes)
        jn_counter_add(s->m_bytes, len);
    if (s->table)
        jn__table_index_batch(s, p, batch, len, base);
    if (!jn_list_empty(&s->subs))
        jn__sub_offer_batch(b, s, p, batch, len, base, subject, subject_len);
    notify_append(b, s, p);
}

/* after_append for a publish whose records all went into one batch: live
 * subscribers are offered the publisher's records as they are, which saves
 * decoding the batch just built. */
static void after_publish(jn_broker_t *b, jn_stream_t *s, const jn_pub_batch_t *pb, const uint8_t *batch,
                          const jn_record_t *recs, size_t n, int64_t now, const char *subject,
                          size_t subject_len, bool add_subject)
{
    if (s->m_records)
        jn_counter_add(s->m_records, (uint64_t)n);
    if (s->m_bytes)
        jn_counter_add(s->m_bytes, pb->len);
    if (s->table)
        jn__table_index_batch(s, pb->partition, batch, pb->len, pb->base);
    if (!jn_list_empty(&s->subs))
        jn__sub_offer_records(b, s, pb->partition, recs, n, pb->base, now, subject, subject_len, add_subject);
    notify_append(b, s, pb->partition);
}

static int reserve_publish(jn_broker_t *b, size_t n, uint32_t nparts)
{
    if (n > b->cappidx) {
        uint32_t *np = realloc(b->pidx, n * sizeof *np);
        if (!np)
            return JN_ENOMEM;
        b->pidx = np;
        b->cappidx = n;
    }
    size_t nb = n < nparts ? n : nparts;
    if (nb > b->cappb) {
        jn_pub_batch_t *pb = realloc(b->pb, nb * sizeof *pb);
        if (!pb)
            return JN_ENOMEM;
        b->pb = pb;
        b->cappb = nb;
    }
    return 0;
}

#define PIDX_BATCH 0x80000000u

int jn__broker_publish_stream(jn_broker_t *b, jn_stream_t *s, const char *subject, size_t subject_len,
                              const jn_record_t *recs, size_t n, int32_t partition,
                              jn_publish_result_t *out)
{
    if (partition >= 0 && (uint32_t)partition >= s->nparts)
        return JN_EINVAL;
    if (n == 0)
        return 0;
    if (!recs)
        return JN_EINVAL;
    if (n > JN_BROKER_PUBLISH_MAX_RECORDS)
        return JN_ETOOBIG;
    int rc = reserve_publish(b, n, s->nparts);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        const jn_record_t *r = &recs[i];
        if (partition >= 0)
            b->pidx[i] = (uint32_t)partition;
        else if (r->key && r->key_len >= 0)
            b->pidx[i] = jn_murmur2_partition(r->key, (size_t)r->key_len, s->nparts);
        else
            b->pidx[i] = s->rr++ % s->nparts;
    }
    bool add_subject = !(subject_len == s->name_len && memcmp(subject, s->name, subject_len) == 0);
    int64_t now = jn_clock_now(&b->clock);
    size_t nb = 0;
    jn_buf_reset(&b->scratch);

    /* Build every batch before appending any, so that a bad record fails
     * the whole publish with nothing appended. */
    for (size_t i = 0; i < n; i++) {
        if (b->pidx[i] & PIDX_BATCH)
            continue;
        uint32_t p = b->pidx[i];
        jn_pub_batch_t *pb = &b->pb[nb];
        pb->partition = p;
        pb->start = b->scratch.len;
        pb->used = 0;
        jn_batch_builder_t bb;
        rc = jn_batch_builder_begin(&bb, &b->scratch);
        if (rc < 0)
            return rc;
        for (size_t j = i; j < n; j++) {
            if (b->pidx[j] != p)
                continue;
            jn_record_t r = recs[j];
            if (r.timestamp == 0)
                r.timestamp = now;
            if (add_subject) {
                if (r.header_count >= JN_BATCH_MAX_HEADERS)
                    return JN_ETOOBIG;
                b->hdrs[0].key = (const uint8_t *)JN_SUBJECT_HEADER;
                b->hdrs[0].key_len = sizeof JN_SUBJECT_HEADER - 1;
                b->hdrs[0].value = (const uint8_t *)subject;
                b->hdrs[0].value_len = (int32_t)subject_len;
                if (r.header_count)
                    memcpy(&b->hdrs[1], r.headers, r.header_count * sizeof *r.headers);
                r.headers = b->hdrs;
                r.header_count++;
            } else if (r.header_count > JN_BATCH_MAX_HEADERS) {
                return JN_ETOOBIG;
            }
            rc = jn_batch_builder_add(&bb, &r);
            if (rc < 0)
                return rc;
            b->pidx[j] = PIDX_BATCH | (uint32_t)nb;
        }
        rc = jn_batch_builder_finish(&bb);
        if (rc < 0)
            return rc;
        if ((size_t)rc > s->cfg.max_batch_bytes)
            return JN_ETOOBIG;
        pb->len = (size_t)rc;
        nb++;
    }

    for (size_t k = 0; k < nb; k++) {
        jn_pub_batch_t *pb = &b->pb[k];
        jn_part_t *part = s->parts[pb->partition];
        /* The parts' logs share b->clock: |now| serves them too. */
        int64_t base = jn_plog_append_at(part->log, b->scratch.data + pb->start, pb->len, now);
        if (base < 0) {
            if (k > 0)
                jn_error("broker: %s: append failed after %zu of %zu batches: %s", s->name, k, nb,
                         jn_strerror((int)base));
            return (int)base;
        }
        pb->base = base;
        mark_dirty(b, part);
    }
    for (size_t i = 0; i < n; i++) {
        jn_pub_batch_t *pb = &b->pb[b->pidx[i] & ~PIDX_BATCH];
        if (out) {
            out[i].stream = s;
            out[i].partition = (int32_t)pb->partition;
            out[i].offset = pb->base + pb->used;
        }
        pb->used++;
    }
    b->busy++;
    if (nb == 1) {
        /* Copied: a delivery may publish, which reuses b->pb and b->scratch. */
        jn_pub_batch_t pb = b->pb[0];
        after_publish(b, s, &pb, b->scratch.data + pb.start, recs, n, now, subject, subject_len, add_subject);
    } else {
        for (size_t k = 0; k < nb; k++) {
            jn_pub_batch_t *pb = &b->pb[k];
            after_append(b, s, pb->partition, b->scratch.data + pb->start, pb->len, pb->base, pb->used, subject,
                         subject_len);
        }
    }
    b->busy--;
    jn__sub_free_zombies(b);
    return 0;
}

/* jn_subject_validate, remembering the last valid subject. */
static bool subject_valid(jn_broker_t *b, const char *subject, size_t len)
{
    if (len != 0 && len == b->valid_subject_len && memcmp(subject, b->valid_subject, len) == 0)
        return true;
    if (jn_subject_validate(subject, len) < 0)
        return false;
    if (len <= sizeof b->valid_subject) {
        memcpy(b->valid_subject, subject, len);
        b->valid_subject_len = len;
    }
    return true;
}

int jn_broker_publish(jn_broker_t *b, const char *subject, size_t subject_len, const jn_record_t *recs,
                      size_t n, int32_t partition, jn_publish_result_t *out)
{
    if (!b || !subject || !subject_valid(b, subject, subject_len))
        return JN_EINVAL;
    size_t nlen;
    const char *name = jn_broker_stream_of_subject(b, subject, subject_len, &nlen);
    /* Users' entry point: internal streams are written by the core only
     * (tables and queues call jn__broker_publish_stream). */
    if (name_is_internal(name, nlen))
        return JN_EINVAL;
    jn_stream_t *s = jn_broker_stream_find(b, name, nlen);
    if (!s) {
        if (jn_stream_name_validate(name, nlen) < 0)
            return JN_EINVAL;
        if (!b->cfg.auto_create_streams)
            return JN_ENOENT;
        if (partition >= 0 && (uint32_t)partition >= b->cfg.default_partitions)
            return JN_EINVAL;
        char nm[JN_STREAM_NAME_MAX + 1];
        memcpy(nm, name, nlen);
        nm[nlen] = '\0';
        int rc = jn__broker_stream_create(b, nm, b->cfg.default_partitions, NULL, &s);
        if (rc < 0)
            return rc;
    }
    return jn__broker_publish_stream(b, s, subject, subject_len, recs, n, partition, out);
}

int64_t jn_broker_append_batch(jn_broker_t *b, jn_stream_t *s, uint32_t partition, const uint8_t *batch,
                               size_t len)
{
    if (!b || !s || !batch)
        return JN_EINVAL;
    if (partition >= s->nparts)
        return JN_EINVAL;
    jn_batch_info_t bi;
    int sz = jn_batch_parse(batch, len, s->cfg.max_batch_bytes, &bi);
    if (sz == JN_EPARTIAL)
        return JN_EPROTO;
    if (sz < 0)
        return sz;
    if ((size_t)sz != len)
        return JN_EPROTO;
    if (jn_batch_verify_crc(batch, len) < 0)
        return JN_ECORRUPT;
    jn_part_t *part = s->parts[partition];
    int64_t base = jn_plog_append(part->log, batch, len);
    if (base < 0)
        return base;
    mark_dirty(b, part);
    b->busy++;
    after_append(b, s, partition, batch, len, base, bi.record_count, NULL, 0);
    b->busy--;
    jn__sub_free_zombies(b);
    return base;
}

static void wait_part(jn_broker_t *b, jn_stream_t *s, uint32_t partition, int64_t offset, jn_durable_waiter_t *w,
                      jn_durable_cb cb, bool synced)
{
    if (partition >= s->nparts) {
        cb(w, JN_EINVAL);
        return;
    }
    jn_part_t *part = s->parts[partition];
    /* The next flush is what starts an fsync for waiters, so make sure one
     * comes even when the appends were flushed already. */
    mark_dirty(b, part);
    if (synced)
        jn_plog_wait_synced(part->log, w, offset, cb);
    else
        jn_plog_wait_durable(part->log, w, offset, cb);
}

void jn_broker_wait_durable(jn_broker_t *b, jn_stream_t *s, uint32_t partition, int64_t offset,
                            jn_durable_waiter_t *w, jn_durable_cb cb)
{
    wait_part(b, s, partition, offset, w, cb, false);
}

void jn_broker_wait_synced(jn_broker_t *b, jn_stream_t *s, uint32_t partition, int64_t offset,
                           jn_durable_waiter_t *w, jn_durable_cb cb)
{
    wait_part(b, s, partition, offset, w, cb, true);
}

int jn_broker_on_append(jn_broker_t *b, jn_append_cb cb, void *arg)
{
    if (!b || !cb)
        return JN_EINVAL;
    if (b->nhooks >= JN_BROKER_APPEND_HOOKS_MAX)
        return JN_ENOMEM;
    b->hooks[b->nhooks].cb = cb;
    b->hooks[b->nhooks].arg = arg;
    b->nhooks++;
    return 0;
}

void jn_broker_off_append(jn_broker_t *b, jn_append_cb cb, void *arg)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->nhooks; i++) {
        if (b->hooks[i].cb == cb && b->hooks[i].arg == arg) {
            memmove(&b->hooks[i], &b->hooks[i + 1], (b->nhooks - i - 1) * sizeof b->hooks[0]);
            b->nhooks--;
            return;
        }
    }
}

/* ---- flushing and maintenance ---- */

void jn_broker_flush(jn_broker_t *b)
{
    while (!jn_list_empty(&b->dirty)) {
        jn_part_t *part = jn_container_of(b->dirty.next, jn_part_t, dirty);
        jn_list_remove(&part->dirty);
        int rc = jn_plog_flush(part->log);
        if (rc < 0)
            jn_error("broker: flush %s/%u: %s", part->s->name, part->index, jn_strerror(rc));
    }
    if (b->offsets_dirty) {
        /* Commits of this iteration in one write; a flush also starts the
         * fsync that armed commit waiters need. */
        b->offsets_dirty = false;
        int rc = jn_plog_flush(b->offsets);
        if (rc < 0)
            jn_error("broker: flush of the offsets log: %s", jn_strerror(rc));
    }
}

static void on_prepare(uv_prepare_t *h)
{
    jn_broker_t *b = h->data;
    if (b)
        jn_broker_flush(b);
}

static void on_idle(uv_idle_t *h)
{
    jn_broker_t *b = h->data;
    if (!b)
        return;
    if (!jn__sub_catchup(b))
        uv_idle_stop(h);
}

void jn__broker_kick(jn_broker_t *b)
{
    if (b->h && !uv_is_active((uv_handle_t *)&b->h->idle))
        uv_idle_start(&b->h->idle, on_idle);
}

/* Bounded per tick: see the top of this file and jn_plog_maintain. */
static void on_maintain(uv_timer_t *h)
{
    jn_broker_t *b = h->data;
    if (!b)
        return;
    for (size_t i = 0; i < b->nstreams; i++) {
        jn_stream_t *s = b->streams[i];
        for (uint32_t p = 0; p < s->nparts; p++) {
            int rc = jn_plog_maintain(s->parts[p]->log);
            if (rc < 0)
                jn_warn("broker: maintain %s/%u: %s", s->name, p, jn_strerror(rc));
        }
    }
    (void)jn_plog_maintain(b->meta);
    (void)jn_plog_maintain(b->offsets);
}

static void on_handle_closed(uv_handle_t *h)
{
    jn_broker_handles_t *hs = h->data;
    if (--hs->open == 0)
        free(hs);
}

/* ---- metrics ---- */

enum sync_figure { SYNC_COUNT, SYNC_SECONDS, SYNC_FAILURES };

/* One counter family over the streams' sync jobs (all partitions summed). */
static int sync_family(jn_buf_t *out, const jn_broker_t *b, const char *name, const char *help,
                       enum sync_figure fig)
{
    int rc = jn_buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (size_t i = 0; rc == 0 && i < b->nstreams; i++) {
        const jn_stream_t *s = b->streams[i];
        jn_plog_sync_stats_t sum = { 0 };
        for (uint32_t p = 0; p < s->nparts; p++) {
            jn_plog_sync_stats_t st;
            jn_plog_get_sync_stats(s->parts[p]->log, &st);
            sum.syncs += st.syncs;
            sum.failures += st.failures;
            sum.sync_ns += st.sync_ns;
        }
        if (fig == SYNC_SECONDS)
            rc = jn_buf_printf(out, "%s{stream=\"%s\"} %.6f\n", name, s->name, (double)sum.sync_ns / 1e9);
        else
            rc = jn_buf_printf(out, "%s{stream=\"%s\"} %llu\n", name, s->name,
                               (unsigned long long)(fig == SYNC_COUNT ? sum.syncs : sum.failures));
    }
    return rc;
}

static int collect_streams(jn_buf_t *out, void *arg)
{
    jn_broker_t *b = arg;
    int rc = jn_buf_append_str(out, "# HELP junction_stream_records Records stored in a stream.\n"
                                    "# TYPE junction_stream_records gauge\n");
    for (size_t i = 0; rc == 0 && i < b->nstreams; i++) {
        const jn_stream_t *s = b->streams[i];
        int64_t n = 0;
        for (uint32_t p = 0; p < s->nparts; p++)
            n += jn_plog_end_offset(s->parts[p]->log) - jn_plog_start_offset(s->parts[p]->log);
        rc = jn_buf_printf(out, "junction_stream_records{stream=\"%s\"} %lld\n", s->name, (long long)n);
    }
    if (rc == 0)
        rc = jn_buf_append_str(out, "# HELP junction_stream_bytes Bytes stored in a stream.\n"
                                    "# TYPE junction_stream_bytes gauge\n");
    for (size_t i = 0; rc == 0 && i < b->nstreams; i++) {
        const jn_stream_t *s = b->streams[i];
        uint64_t n = 0;
        for (uint32_t p = 0; p < s->nparts; p++)
            n += jn_plog_size_bytes(s->parts[p]->log);
        rc = jn_buf_printf(out, "junction_stream_bytes{stream=\"%s\"} %llu\n", s->name, (unsigned long long)n);
    }
    if (rc == 0)
        rc = sync_family(out, b, "junction_stream_fsyncs_total",
                         "Sync jobs (an fdatasync of new data in a partition) finished, by stream.", SYNC_COUNT);
    if (rc == 0)
        rc = sync_family(out, b, "junction_stream_fsync_seconds_total", "Time spent in fdatasync, by stream.",
                         SYNC_SECONDS);
    if (rc == 0)
        rc = sync_family(out, b, "junction_stream_fsync_failures_total", "Sync jobs that failed, by stream.",
                         SYNC_FAILURES);
    if (rc == 0)
        rc = jn_buf_append_str(out, "# HELP junction_stream_end_offset Next offset of a partition.\n"
                                    "# TYPE junction_stream_end_offset gauge\n");
    for (size_t i = 0; rc == 0 && i < b->nstreams; i++) {
        const jn_stream_t *s = b->streams[i];
        for (uint32_t p = 0; rc == 0 && p < s->nparts; p++)
            rc = jn_buf_printf(out, "junction_stream_end_offset{stream=\"%s\",partition=\"%u\"} %lld\n",
                               s->name, p, (long long)jn_plog_end_offset(s->parts[p]->log));
    }
    return rc;
}

/* ---- open / replay / close ---- */

static int auth_persist(void *ctx, const char *kind, const char *key, json_t *value)
{
    jn_broker_t *b = ctx;
    if (b->replaying)
        return 0;
    char mkey[512];
    int klen = snprintf(mkey, sizeof mkey, "%s/%s", kind, key);
    if (klen < 0 || (size_t)klen >= sizeof mkey)
        return JN_ETOOBIG;
    if (!value)
        return jn__broker_log_write(b, b->meta, mkey, (size_t)klen, NULL, 0, true, true);
    char *txt = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!txt)
        return JN_ENOMEM;
    int rc = jn__broker_log_write(b, b->meta, mkey, (size_t)klen, txt, strlen(txt), false, true);
    free(txt);
    return rc;
}

/* Meta replay: stream definitions collect into |arg| (a JSON object, the
 * last definition of each name wins, null deletes); auth records go
 * straight to jn_auth_load. */
static int meta_record(jn_broker_t *b, const jn_record_t *rec, void *arg)
{
    json_t *defs = arg;
    if (!rec->key || rec->key_len <= 0 || rec->key_len > 1024)
        return 0;
    char key[1025];
    memcpy(key, rec->key, (size_t)rec->key_len);
    key[rec->key_len] = '\0';
    char *slash = strchr(key, '/');
    if (!slash)
        return 0;
    *slash = '\0';
    const char *kind = key, *id = slash + 1;
    json_t *v = NULL;
    if (rec->value) {
        json_error_t jerr;
        v = json_loadb((const char *)rec->value, (size_t)rec->value_len, JSON_DECODE_ANY, &jerr);
        if (!v) {
            jn_warn("broker: meta record %s/%s: bad JSON: %s", kind, id, jerr.text);
            return 0;
        }
    }
    int rc = 0;
    if (strcmp(kind, "stream") == 0) {
        if (v)
            json_object_set(defs, id, v);
        else
            json_object_del(defs, id);
    } else if (strcmp(kind, "user") == 0 || strcmp(kind, "token") == 0 || strcmp(kind, "acl") == 0) {
        rc = jn_auth_load(b->auth, kind, id, v);
        if (rc < 0) {
            jn_warn("broker: meta record %s/%s: %s", kind, id, jn_strerror(rc));
            rc = 0;
        }
    } else if (strcmp(kind, "ext") == 0) {
        /* Door definitions (AMQP exchanges, bindings): kept for
         * jn_broker_meta_each; the broker does not interpret them. */
        if (v)
            rc = json_object_set(b->ext_meta, id, v) ? JN_ENOMEM : 0;
        else
            json_object_del(b->ext_meta, id);
    } else {
        jn_debug("broker: meta record of unknown kind %s", kind);
    }
    json_decref(v);
    return rc;
}

static int open_streams(jn_broker_t *b, json_t *defs)
{
    const char *name;
    json_t *def;
    json_object_foreach(defs, name, def) {
        json_int_t np = json_integer_value(json_object_get(def, "partitions"));
        jn_plog_config_t cfg;
        char err[128];
        if (np < 1 || np > JN_PARTITIONS_MAX || strlen(name) > JN_STREAM_NAME_MAX ||
            jn_plog_config_from_json(json_object_get(def, "config"), &b->cfg.stream_defaults, &cfg, err,
                                     sizeof err) < 0) {
            jn_error("broker: bad definition of stream %s", name);
            return JN_ECORRUPT;
        }
        jn_stream_t *s;
        int rc = stream_open(b, name, (uint32_t)np, &cfg, &s);
        if (rc < 0)
            return rc;
        rc = stream_insert(b, s);
        if (rc == 0 && s->table)
            rc = jn__table_rebuild(b, s);
        if (rc < 0) {
            stream_unregister(b, s);
            stream_free(s, false);
            return rc;
        }
    }
    return 0;
}

static int open_internal_log(jn_broker_t *b, const char *sub, enum jn_fsync_policy fs, jn_plog_t **out)
{
    char dir[PATH_MAX];
    int n = snprintf(dir, sizeof dir, "%s/%s/0", b->data_dir, sub);
    if (n < 0 || (size_t)n >= sizeof dir)
        return JN_EINVAL;
    int rc = jn_fs_mkdir_p(dir);
    if (rc < 0)
        return rc;
    jn_plog_config_t cfg;
    jn_plog_config_default(&cfg);
    cfg.compact = true;
    cfg.fsync = fs;
    if (b->cfg.stream_defaults.fsync_interval_ms > 0)
        cfg.fsync_interval_ms = b->cfg.stream_defaults.fsync_interval_ms;
    cfg.segment_bytes = 16u << 20;
    return jn_plog_open(b->loop, dir, &cfg, &b->clock, out);
}

int jn_broker_open(uv_loop_t *loop, const jn_broker_config_t *cfg, const jn_clock_t *clock,
                   jn_broker_t **out)
{
    int rc = JN_ENOMEM;
    json_t *defs = NULL;
    jn_broker_t *b = calloc(1, sizeof *b);
    if (!b)
        return JN_ENOMEM;
    b->loop = loop;
    b->cfg = *cfg;
    b->clock = clock ? *clock : jn_clock_real;
    b->ext_meta = json_object();
    if (!b->ext_meta) {
        free(b);
        return JN_ENOMEM;
    }
    jn_list_init(&b->dirty);
    jn_list_init(&b->subs);
    jn_list_init(&b->ready);
    jn_list_init(&b->zombies);
    jn_buf_init(&b->scratch, JN_BROKER_SCRATCH_MAX);
    jn_buf_init(&b->rbuf, JN_BROKER_READ_MAX);
    jn_buf_init(&b->tbuf, JN_BROKER_READ_MAX);
    jn_buf_init(&b->mbuf, JN_BROKER_META_VALUE_MAX + 4096);
    jn_buf_init(&b->zbuf, JN_BATCH_MAX_DECOMPRESSED);
    if (b->cfg.default_partitions < 1 || b->cfg.default_partitions > JN_PARTITIONS_MAX)
        b->cfg.default_partitions = 1;
    if (b->cfg.catchup_batch_bytes == 0)
        b->cfg.catchup_batch_bytes = 256 * 1024;
    if (b->cfg.maintenance_interval_ms <= 0)
        b->cfg.maintenance_interval_ms = 5000;
    b->cfg.mappings = NULL;
    b->data_dir = strdup(cfg->data_dir ? cfg->data_dir : "./data");
    if (!b->data_dir)
        goto fail;
    if (cfg->nmappings && !cfg->mappings) {
        rc = JN_EINVAL;
        goto fail;
    }
    if (cfg->nmappings) {
        b->mappings = calloc(cfg->nmappings, sizeof *b->mappings);
        if (!b->mappings)
            goto fail;
        for (size_t i = 0; i < cfg->nmappings; i++) {
            const jn_mapping_t *m = &cfg->mappings[i];
            if (!m->filter || !m->stream || jn_filter_validate(m->filter, strlen(m->filter)) < 0 ||
                jn_stream_name_validate(m->stream, strlen(m->stream)) < 0) {
                rc = JN_EINVAL;
                goto fail;
            }
            b->mappings[i].filter = strdup(m->filter);
            b->mappings[i].stream = strdup(m->stream);
            b->nmappings = i + 1;
            if (!b->mappings[i].filter || !b->mappings[i].stream)
                goto fail;
        }
    }
    b->trie = jn_trie_new();
    b->metrics = jn_metrics_new();
    b->auth = jn_auth_new(auth_persist, b);
    defs = json_object();
    if (!b->trie || !b->metrics || !b->auth || !defs)
        goto fail;
    b->m_dropped = jn_metrics_counter(b->metrics, "junction_subscription_dropped_total",
                                      "Records lossy subscriptions skipped because their sink was full.", "");
    if (!b->m_dropped)
        goto fail;
    if (jn_metrics_add_collector(b->metrics, collect_streams, b) < 0)
        goto fail;

    char dir[PATH_MAX];
    int n = snprintf(dir, sizeof dir, "%s/streams", b->data_dir);
    if (n < 0 || (size_t)n >= sizeof dir) {
        rc = JN_EINVAL;
        goto fail;
    }
    rc = jn_fs_mkdir_p(dir);
    if (rc < 0)
        goto fail;
    rc = open_internal_log(b, "meta", JN_FSYNC_ALWAYS, &b->meta);
    if (rc < 0)
        goto fail;
    /* Commits are fsynced on the thread pool for the waiters that ask and
     * otherwise every interval (group.c) - unless the operator chose
     * "never" for everything. */
    rc = open_internal_log(b, "offsets",
                           b->cfg.stream_defaults.fsync == JN_FSYNC_NEVER ? JN_FSYNC_NEVER : JN_FSYNC_INTERVAL,
                           &b->offsets);
    if (rc < 0)
        goto fail;

    b->replaying = true;
    rc = jn__broker_log_replay(b, b->meta, &b->tbuf, meta_record, defs);
    b->replaying = false;
    if (rc < 0)
        goto fail;
    rc = open_streams(b, defs);
    if (rc < 0)
        goto fail;
    rc = jn__group_replay(b);
    if (rc < 0)
        goto fail;
    rc = jn__queue_open(b);
    if (rc < 0)
        goto fail;
    json_decref(defs);
    defs = NULL;

    rc = JN_ENOMEM;
    b->h = calloc(1, sizeof *b->h);
    if (!b->h)
        goto fail;
    uv_prepare_init(loop, &b->h->prepare);
    uv_idle_init(loop, &b->h->idle);
    uv_timer_init(loop, &b->h->timer);
    b->h->open = 3;
    b->h->prepare.data = b;
    b->h->idle.data = b;
    b->h->timer.data = b;
    uv_prepare_start(&b->h->prepare, on_prepare);
    uv_unref((uv_handle_t *)&b->h->prepare);
    uv_timer_start(&b->h->timer, on_maintain, (uint64_t)b->cfg.maintenance_interval_ms,
                   (uint64_t)b->cfg.maintenance_interval_ms);
    uv_unref((uv_handle_t *)&b->h->timer);
    *out = b;
    return 0;
fail:
    json_decref(defs);
    jn_broker_close(b);
    return rc;
}

void jn_broker_close(jn_broker_t *b)
{
    if (!b)
        return;
    jn__queue_close_all(b);
    jn__sub_close_all(b);
    jn_broker_flush(b);
    for (size_t i = 0; i < b->nstreams; i++)
        stream_free(b->streams[i], false);
    free(b->streams);
    jn_plog_close(b->meta);
    jn_plog_close(b->offsets);
    jn__group_free_all(b);
    jn_auth_free(b->auth);
    json_decref(b->ext_meta);
    jn_metrics_free(b->metrics);
    jn_trie_free(b->trie);
    if (b->h) {
        jn_broker_handles_t *h = b->h;
        h->prepare.data = h;
        h->idle.data = h;
        h->timer.data = h;
        uv_close((uv_handle_t *)&h->prepare, on_handle_closed);
        uv_close((uv_handle_t *)&h->idle, on_handle_closed);
        uv_close((uv_handle_t *)&h->timer, on_handle_closed);
    }
    for (size_t i = 0; i < b->nmappings; i++) {
        free(b->mappings[i].filter);
        free(b->mappings[i].stream);
    }
    free(b->mappings);
    free(b->data_dir);
    jn_buf_free(&b->scratch);
    jn_buf_free(&b->rbuf);
    jn_buf_free(&b->tbuf);
    jn_buf_free(&b->mbuf);
    jn_buf_free(&b->zbuf);
    free(b->pidx);
    free(b->pb);
    free(b->matches);
    free(b);
}

jn_auth_t *jn_broker_auth(jn_broker_t *b) { return b->auth; }
jn_metrics_t *jn_broker_metrics(jn_broker_t *b) { return b->metrics; }
uv_loop_t *jn_broker_loop(jn_broker_t *b) { return b->loop; }

/* ---- door definitions ---- */

int jn_broker_meta_put(jn_broker_t *b, const char *key, json_t *value)
{
    char mkey[600];
    int klen = snprintf(mkey, sizeof mkey, "ext/%s", key);
    if (klen < 0 || (size_t)klen >= sizeof mkey)
        return JN_ETOOBIG;
    int rc;
    if (!value) {
        rc = jn__broker_log_write(b, b->meta, mkey, (size_t)klen, NULL, 0, true, true);
        if (rc >= 0)
            json_object_del(b->ext_meta, key);
        return rc < 0 ? rc : 0;
    }
    char *txt = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!txt)
        return JN_ENOMEM;
    rc = jn__broker_log_write(b, b->meta, mkey, (size_t)klen, txt, strlen(txt), false, true);
    free(txt);
    if (rc < 0)
        return rc;
    return json_object_set(b->ext_meta, key, value) ? JN_ENOMEM : 0;
}

void jn_broker_meta_each(jn_broker_t *b, const char *prefix, jn_meta_cb cb, void *arg)
{
    size_t plen = strlen(prefix);
    const char *key;
    json_t *v;
    json_object_foreach(b->ext_meta, key, v) {
        if (strncmp(key, prefix, plen) == 0)
            cb(key, v, arg);
    }
}
