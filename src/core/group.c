/* group.c - consumer groups: committed offsets per (group, stream,
 * partition), kept in memory and in the compacted log <data>/offsets/0.
 *
 * Record format: key "<group>\0<stream>\0<partition in decimal>", value
 * {"offset":n,"metadata":"..."}; a null value forgets the offset. Replaying
 * the log in order at open rebuilds the map.
 *
 * Commits are asynchronous and group-committed. Every door commits, many
 * of them periodically (MQTT sessions and webhook endpoints every second,
 * AMQP forwarders, Kafka OffsetCommit, REST), so a synchronous fdatasync
 * per commit on the loop thread would stall every connection behind the
 * disk. Instead a commit is appended to the offsets log's tail and applied
 * to memory at once; jn_broker_flush writes the tail once per loop
 * iteration; and the log (fsync policy "interval", the stream defaults'
 * interval) fsyncs on the thread pool:
 *
 *   - for a door that must not answer before the commit is durable (REST
 *     POST /v1/groups/{group}/offsets, Kafka OffsetCommit): it arms a
 *     waiter with jn_broker_group_wait_durable (jn_plog_wait_synced), which
 *     has the next flush start an fsync; waiters that arrive while one
 *     runs share the next (plog.c's group commit);
 *   - otherwise every interval when commits came, so periodic commits
 *     become durable within about a second, with at most one background
 *     fsync per interval.
 *
 * What a crash loses: the commits after the last completed fsync, i.e. a
 * suffix of the log. Replay applies records in order, so the state after
 * reopen is exactly the state after some earlier commit - each offset is
 * its latest durable value, never a mix of torn bytes: plog recovery cuts
 * the log after the last batch whose CRC checks.
 */
#include "broker_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"

static bool group_name_ok(const char *g)
{
    size_t n = g ? strlen(g) : 0;
    if (n < 1 || n > JN_STREAM_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)g[i] < 0x20 || (unsigned char)g[i] > 0x7e)
            return false;
    return true;
}

static size_t group_search(const jn_broker_t *b, const char *name, bool *found)
{
    size_t lo = 0, hi = b->ngroups;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(b->groups[mid]->name, name);
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

static jn_group_t *group_find(const jn_broker_t *b, const char *name)
{
    bool found;
    size_t i = group_search(b, name, &found);
    return found ? b->groups[i] : NULL;
}

static jn_group_t *group_get(jn_broker_t *b, const char *name)
{
    bool found;
    size_t i = group_search(b, name, &found);
    if (found)
        return b->groups[i];
    if (b->ngroups == b->capgroups) {
        size_t ncap = b->capgroups ? b->capgroups * 2 : 8;
        jn_group_t **ng = realloc(b->groups, ncap * sizeof *ng);
        if (!ng)
            return NULL;
        b->groups = ng;
        b->capgroups = ncap;
    }
    jn_group_t *g = calloc(1, sizeof *g);
    if (!g || !(g->name = strdup(name))) {
        free(g);
        return NULL;
    }
    memmove(&b->groups[i + 1], &b->groups[i], (b->ngroups - i) * sizeof *b->groups);
    b->groups[i] = g;
    b->ngroups++;
    return g;
}

static void off_free(jn_group_off_t *o)
{
    free(o->stream);
    free(o->metadata);
}

static void group_free(jn_group_t *g)
{
    for (size_t i = 0; i < g->n; i++)
        off_free(&g->offs[i]);
    free(g->offs);
    free(g->name);
    free(g);
}

static void group_drop(jn_broker_t *b, jn_group_t *g)
{
    bool found;
    size_t i = group_search(b, g->name, &found);
    if (found) {
        memmove(&b->groups[i], &b->groups[i + 1], (b->ngroups - i - 1) * sizeof *b->groups);
        b->ngroups--;
    }
    group_free(g);
}

static jn_group_off_t *off_find(jn_group_t *g, const char *stream, uint32_t p)
{
    for (size_t i = 0; i < g->n; i++)
        if (g->offs[i].partition == p && strcmp(g->offs[i].stream, stream) == 0)
            return &g->offs[i];
    return NULL;
}

/* Sets (or, with offset < 0, removes) an entry in memory. */
static int off_set(jn_broker_t *b, const char *group, const char *stream, uint32_t p, int64_t offset,
                   const char *metadata)
{
    jn_group_t *g = offset >= 0 ? group_get(b, group) : group_find(b, group);
    if (!g)
        return offset >= 0 ? JN_ENOMEM : 0;
    jn_group_off_t *o = off_find(g, stream, p);
    if (offset < 0) {
        if (o) {
            off_free(o);
            *o = g->offs[--g->n];
        }
        if (g->n == 0)
            group_drop(b, g);
        return 0;
    }
    char *md = strdup(metadata ? metadata : "");
    if (!md)
        return JN_ENOMEM;
    if (!o) {
        if (g->n == g->cap) {
            size_t ncap = g->cap ? g->cap * 2 : 8;
            jn_group_off_t *no = realloc(g->offs, ncap * sizeof *no);
            if (!no) {
                free(md);
                return JN_ENOMEM;
            }
            g->offs = no;
            g->cap = ncap;
        }
        char *sn = strdup(stream);
        if (!sn) {
            free(md);
            return JN_ENOMEM;
        }
        o = &g->offs[g->n++];
        o->stream = sn;
        o->partition = p;
        o->metadata = NULL;
    }
    free(o->metadata);
    o->metadata = md;
    o->offset = offset;
    return 0;
}

static int make_key(char *key, size_t keylen, const char *group, const char *stream, uint32_t p)
{
    size_t gl = strlen(group), sl = strlen(stream);
    char num[16];
    int nl = snprintf(num, sizeof num, "%u", p);
    if (gl + 1 + sl + 1 + (size_t)nl > keylen)
        return JN_ETOOBIG;
    memcpy(key, group, gl);
    key[gl] = '\0';
    memcpy(key + gl + 1, stream, sl);
    key[gl + 1 + sl] = '\0';
    memcpy(key + gl + 2 + sl, num, (size_t)nl);
    return (int)(gl + 2 + sl + (size_t)nl);
}

#define KEY_MAX (2 * (JN_STREAM_NAME_MAX + 1) + 16)

/* ---- durability of commits ---- */

void jn_broker_group_wait_durable(jn_broker_t *b, jn_durable_waiter_t *w, jn_durable_cb cb)
{
    int64_t last = jn_plog_end_offset(b->offsets) - 1;
    /* The next jn_broker_flush (this loop iteration's prepare) writes the
     * tail and starts the fsync that fires |w|; one already running that
     * covers |last| fires it sooner. */
    b->offsets_dirty = true;
    jn_plog_wait_synced(b->offsets, w, last, cb);
}

/* Appends one commit (offset < 0: a tombstone) to the offsets log; durable
 * later (see the top). */
static int persist(jn_broker_t *b, const char *group, const char *stream, uint32_t p, int64_t offset,
                   const char *metadata)
{
    char key[KEY_MAX];
    int klen = make_key(key, sizeof key, group, stream, p);
    if (klen < 0)
        return klen;
    int rc;
    if (offset < 0) {
        rc = jn__broker_log_write(b, b->offsets, key, (size_t)klen, NULL, 0, true, false);
    } else {
        json_t *j = json_pack("{s:I,s:s}", "offset", (json_int_t)offset, "metadata", metadata ? metadata : "");
        char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!txt)
            return JN_ENOMEM;
        rc = jn__broker_log_write(b, b->offsets, key, (size_t)klen, txt, strlen(txt), false, false);
        free(txt);
    }
    if (rc < 0)
        return rc;
    b->offsets_dirty = true;
    return 0;
}

int jn_broker_group_commit(jn_broker_t *b, const char *group, const jn_stream_t *s, uint32_t partition,
                           int64_t offset, const char *metadata)
{
    if (!b || !s || !group_name_ok(group) || partition >= s->nparts || offset < 0)
        return JN_EINVAL;
    if (metadata && strlen(metadata) > JN_GROUP_METADATA_MAX)
        return JN_ETOOBIG;
    if (metadata) {
        json_t *t = json_string(metadata); /* NULL when not UTF-8 */
        if (!t)
            return JN_EINVAL;
        json_decref(t);
    }
    int rc = persist(b, group, s->name, partition, offset, metadata);
    if (rc < 0)
        return rc;
    return off_set(b, group, s->name, partition, offset, metadata);
}

int jn_broker_group_fetch(jn_broker_t *b, const char *group, const jn_stream_t *s, uint32_t partition,
                          int64_t *offset)
{
    if (!b || !s || !group)
        return JN_EINVAL;
    jn_group_t *g = group_find(b, group);
    jn_group_off_t *o = g ? off_find(g, s->name, partition) : NULL;
    if (!o)
        return JN_ENOENT;
    *offset = o->offset;
    return 0;
}

json_t *jn_broker_group_json(jn_broker_t *b, const char *group)
{
    jn_group_t *g = group ? group_find(b, group) : NULL;
    if (!g || g->n == 0)
        return NULL;
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    for (size_t i = 0; i < g->n; i++) {
        const jn_group_off_t *o = &g->offs[i];
        jn_stream_t *s = jn_broker_stream_find(b, o->stream, strlen(o->stream));
        json_t *lag = json_null();
        if (s && o->partition < s->nparts) {
            int64_t d = jn_plog_end_offset(s->parts[o->partition]->log) - o->offset;
            json_decref(lag);
            lag = json_integer(d > 0 ? d : 0);
        }
        json_array_append_new(arr, json_pack("{s:s,s:I,s:I,s:o,s:s}", "stream", o->stream, "partition",
                                             (json_int_t)o->partition, "offset", (json_int_t)o->offset,
                                             "lag", lag, "metadata", o->metadata));
    }
    return json_pack("{s:s,s:o}", "group", g->name, "offsets", arr);
}

json_t *jn_broker_groups_json(jn_broker_t *b)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < b->ngroups; i++)
        json_array_append_new(arr, json_string(b->groups[i]->name));
    return arr;
}

int jn_broker_group_delete(jn_broker_t *b, const char *group)
{
    jn_group_t *g = b && group ? group_find(b, group) : NULL;
    if (!g)
        return JN_ENOENT;
    for (size_t i = 0; i < g->n; i++) {
        int rc = persist(b, g->name, g->offs[i].stream, g->offs[i].partition, -1, NULL);
        if (rc < 0)
            return rc;
    }
    group_drop(b, g);
    return 0;
}

void jn__group_stream_removed(jn_broker_t *b, const char *name)
{
    for (size_t i = 0; i < b->ngroups;) {
        jn_group_t *g = b->groups[i];
        for (size_t k = 0; k < g->n;) {
            jn_group_off_t *o = &g->offs[k];
            if (strcmp(o->stream, name) != 0) {
                k++;
                continue;
            }
            int rc = persist(b, g->name, o->stream, o->partition, -1, NULL);
            if (rc < 0)
                jn_warn("broker: forgetting offsets of %s for %s: %s", g->name, name, jn_strerror(rc));
            off_free(o);
            *o = g->offs[--g->n];
        }
        if (g->n == 0) {
            group_drop(b, g);
            continue;
        }
        i++;
    }
}

static int offsets_record(jn_broker_t *b, const jn_record_t *rec, void *arg)
{
    (void)arg;
    if (!rec->key || rec->key_len <= 0 || rec->key_len >= KEY_MAX)
        return 0;
    char key[KEY_MAX];
    memcpy(key, rec->key, (size_t)rec->key_len);
    key[rec->key_len] = '\0';
    const char *group = key;
    size_t gl = strlen(group);
    if ((int32_t)gl + 1 >= rec->key_len)
        return 0;
    const char *stream = key + gl + 1;
    size_t sl = strlen(stream);
    if ((int32_t)(gl + sl + 2) >= rec->key_len)
        return 0;
    const char *num = stream + sl + 1;
    char *endp;
    unsigned long p = strtoul(num, &endp, 10);
    if (*endp != '\0' || p >= JN_PARTITIONS_MAX)
        return 0;
    if (!rec->value)
        return off_set(b, group, stream, (uint32_t)p, -1, NULL);
    json_error_t jerr;
    json_t *v = json_loadb((const char *)rec->value, (size_t)rec->value_len, 0, &jerr);
    json_t *jo = v ? json_object_get(v, "offset") : NULL;
    int rc = 0;
    if (json_is_integer(jo) && json_integer_value(jo) >= 0) {
        const char *md = json_string_value(json_object_get(v, "metadata"));
        rc = off_set(b, group, stream, (uint32_t)p, (int64_t)json_integer_value(jo), md);
    } else {
        jn_warn("broker: malformed committed offset for group %s", group);
    }
    json_decref(v);
    return rc;
}

int jn__group_replay(jn_broker_t *b)
{
    return jn__broker_log_replay(b, b->offsets, &b->tbuf, offsets_record, NULL);
}

void jn__group_free_all(jn_broker_t *b)
{
    for (size_t i = 0; i < b->ngroups; i++)
        group_free(b->groups[i]);
    free(b->groups);
    b->groups = NULL;
    b->ngroups = b->capgroups = 0;
}
