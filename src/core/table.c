/* table.c - tables: the latest value per key of a compacted stream.
 *
 * The broker keeps, per compact stream, an ordered index key -> (partition,
 * offset) of the latest record of each key (an AVL tree of its own, keys as
 * bytes in memcmp order, so that scans by prefix and "after this key"
 * paging are in-order walks). Values stay in the log and are read back on
 * get. The index is rebuilt by reading the stream at open, and kept current
 * from the broker's common append path, so records that arrive through any
 * door (publish, Kafka batches) update it. Compaction never changes
 * offsets, so it leaves the index valid.
 */
#include "broker_int.h"

#include <stdlib.h>
#include <string.h>

#include "../common/log.h"

#define CTYPE_HEADER "content-type"
#define CTYPE_MAX 127

typedef struct tnode {
    struct tnode *l, *r;
    int h;
    uint32_t partition;
    int64_t offset;
    size_t klen;
    uint8_t key[];
} tnode_t;

struct jn_table_index {
    tnode_t *root;
    size_t count;
};

/* ---- the ordered index ---- */

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t m = alen < blen ? alen : blen;
    int c = m ? memcmp(a, b, m) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static int height(const tnode_t *n) { return n ? n->h : 0; }

static void fix_height(tnode_t *n)
{
    int hl = height(n->l), hr = height(n->r);
    n->h = 1 + (hl > hr ? hl : hr);
}

static tnode_t *rot_right(tnode_t *y)
{
    tnode_t *x = y->l;
    y->l = x->r;
    x->r = y;
    fix_height(y);
    fix_height(x);
    return x;
}

static tnode_t *rot_left(tnode_t *x)
{
    tnode_t *y = x->r;
    x->r = y->l;
    y->l = x;
    fix_height(x);
    fix_height(y);
    return y;
}

static tnode_t *rebalance(tnode_t *n)
{
    fix_height(n);
    int bf = height(n->l) - height(n->r);
    if (bf > 1) {
        if (height(n->l->l) < height(n->l->r))
            n->l = rot_left(n->l);
        return rot_right(n);
    }
    if (bf < -1) {
        if (height(n->r->r) < height(n->r->l))
            n->r = rot_right(n->r);
        return rot_left(n);
    }
    return n;
}

static tnode_t *insert(tnode_t *n, tnode_t *nn)
{
    if (!n)
        return nn;
    if (key_cmp(nn->key, nn->klen, n->key, n->klen) < 0)
        n->l = insert(n->l, nn);
    else
        n->r = insert(n->r, nn);
    return rebalance(n);
}

static tnode_t *remove_min(tnode_t *n, tnode_t **min)
{
    if (!n->l) {
        *min = n;
        return n->r;
    }
    n->l = remove_min(n->l, min);
    return rebalance(n);
}

static tnode_t *erase(tnode_t *n, const uint8_t *key, size_t klen, tnode_t **removed)
{
    if (!n)
        return NULL;
    int c = key_cmp(key, klen, n->key, n->klen);
    if (c < 0) {
        n->l = erase(n->l, key, klen, removed);
    } else if (c > 0) {
        n->r = erase(n->r, key, klen, removed);
    } else {
        *removed = n;
        tnode_t *l = n->l, *r = n->r;
        if (!r)
            return l;
        tnode_t *m = NULL;
        r = remove_min(r, &m);
        m->l = l;
        m->r = r;
        return rebalance(m);
    }
    return rebalance(n);
}

static tnode_t *lookup(const jn_table_index_t *t, const uint8_t *key, size_t klen)
{
    tnode_t *n = t->root;
    while (n) {
        int c = key_cmp(key, klen, n->key, n->klen);
        if (c == 0)
            return n;
        n = c < 0 ? n->l : n->r;
    }
    return NULL;
}

static int index_put(jn_table_index_t *t, const uint8_t *key, size_t klen, uint32_t p, int64_t off)
{
    tnode_t *n = lookup(t, key, klen);
    if (!n) {
        n = malloc(sizeof *n + klen);
        if (!n)
            return JN_ENOMEM;
        n->l = n->r = NULL;
        n->h = 1;
        n->klen = klen;
        if (klen)
            memcpy(n->key, key, klen);
        t->root = insert(t->root, n);
        t->count++;
    }
    n->partition = p;
    n->offset = off;
    return 0;
}

static void index_del(jn_table_index_t *t, const uint8_t *key, size_t klen)
{
    tnode_t *removed = NULL;
    t->root = erase(t->root, key, klen, &removed);
    if (removed) {
        free(removed);
        t->count--;
    }
}

static void free_nodes(tnode_t *n)
{
    while (n) {
        free_nodes(n->l);
        tnode_t *r = n->r;
        free(n);
        n = r;
    }
}

jn_table_index_t *jn__table_index_new(void)
{
    return calloc(1, sizeof(jn_table_index_t));
}

void jn__table_index_free(jn_table_index_t *t)
{
    if (!t)
        return;
    free_nodes(t->root);
    free(t);
}

static void index_record(jn_stream_t *s, uint32_t p, const jn_record_t *rec)
{
    if (!rec->key || rec->key_len < 0)
        return;
    if (!rec->value) {
        index_del(s->table, rec->key, (size_t)rec->key_len);
        return;
    }
    if (index_put(s->table, rec->key, (size_t)rec->key_len, p, rec->offset) < 0)
        jn_error("broker: table %s: out of memory indexing a key", s->name);
}

void jn__table_index_batch(jn_stream_t *s, uint32_t p, const uint8_t *batch, size_t len, int64_t base)
{
    jn_batch_iter_t it;
    jn_buf_t z; /* compressed batches only */
    jn_buf_init(&z, JN_BATCH_MAX_DECOMPRESSED);
    int rc = jn_batch_iter_init_scratch(&it, batch, len, false, &z);
    if (rc < 0) {
        jn_debug("broker: table %s: batch at %lld not indexed: %s", s->name, (long long)base, jn_strerror(rc));
        jn_buf_free(&z);
        return;
    }
    jn_record_t rec;
    while ((rc = jn_batch_iter_next(&it, &rec)) == 1) {
        rec.offset = base + (rec.offset - it.info.base_offset);
        index_record(s, p, &rec);
    }
    jn_buf_free(&z);
}

typedef struct rebuild_ctx {
    jn_stream_t *s;
    uint32_t p;
} rebuild_ctx_t;

static int rebuild_record(jn_broker_t *b, const jn_record_t *rec, void *arg)
{
    (void)b;
    rebuild_ctx_t *c = arg;
    index_record(c->s, c->p, rec);
    return 0;
}

int jn__table_rebuild(jn_broker_t *b, jn_stream_t *s)
{
    if (!s->table)
        return 0;
    free_nodes(s->table->root);
    s->table->root = NULL;
    s->table->count = 0;
    for (uint32_t p = 0; p < s->nparts; p++) {
        rebuild_ctx_t c = {s, p};
        int rc = jn__broker_log_replay(b, s->parts[p]->log, &b->tbuf, rebuild_record, &c);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- table operations ---- */

static jn_stream_t *table_find(jn_broker_t *b, const char *table)
{
    jn_stream_t *s = b && table ? jn_broker_stream_find(b, table, strlen(table)) : NULL;
    return s && s->table ? s : NULL;
}

static int write_record(jn_broker_t *b, jn_stream_t *s, const uint8_t *key, size_t klen, const uint8_t *value,
                        size_t vlen, bool tombstone, const char *ctype, jn_publish_result_t *out)
{
    jn_header_t h;
    jn_record_t rec;
    memset(&rec, 0, sizeof rec);
    rec.key = key;
    rec.key_len = (int32_t)klen;
    rec.value = tombstone ? NULL : (value ? value : (const uint8_t *)"");
    rec.value_len = tombstone ? -1 : (int32_t)vlen;
    if (ctype && ctype[0]) {
        h.key = (const uint8_t *)CTYPE_HEADER;
        h.key_len = sizeof CTYPE_HEADER - 1;
        h.value = (const uint8_t *)ctype;
        h.value_len = (int32_t)strlen(ctype);
        rec.headers = &h;
        rec.header_count = 1;
    }
    return jn__broker_publish_stream(b, s, s->name, s->name_len, &rec, 1, -1, out);
}

int jn_broker_table_put(jn_broker_t *b, const char *table, const uint8_t *key, size_t klen,
                        const uint8_t *value, size_t vlen, const char *content_type,
                        jn_publish_result_t *out)
{
    if (!b || !table || !key || klen == 0 || klen > INT32_MAX || vlen > INT32_MAX || (!value && vlen))
        return JN_EINVAL;
    if (content_type && strlen(content_type) > CTYPE_MAX)
        return JN_EINVAL;
    jn_stream_t *s = jn_broker_stream_find(b, table, strlen(table));
    if (!s) {
        if (jn_stream_name_validate(table, strlen(table)) < 0)
            return JN_EINVAL;
        if (!b->cfg.auto_create_streams)
            return JN_ENOENT;
        jn_plog_config_t cfg = b->cfg.stream_defaults;
        cfg.compact = true;
        int rc = jn__broker_stream_create(b, table, 1, &cfg, &s);
        if (rc < 0)
            return rc;
    }
    if (!s->table)
        return JN_EINVAL; /* a stream, but not compacted: not a table */
    return write_record(b, s, key, klen, value, vlen, false, content_type, out);
}

int jn_broker_table_open_internal(jn_broker_t *b, const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (!b || len < 3 || name[0] != '_' || name[1] != '_' || jn_stream_name_validate(name + 2, len - 2) < 0 ||
        (len > 3 && name[2] == '_' && name[3] == '_'))
        return JN_EINVAL;
    jn_stream_t *s = jn_broker_stream_find(b, name, len);
    if (s)
        return s->table ? 0 : JN_EINVAL;
    jn_plog_config_t cfg = b->cfg.stream_defaults;
    cfg.compact = true;
    return jn__broker_stream_create(b, name, 1, &cfg, &s);
}

static int table_get(jn_broker_t *b, const char *table, const uint8_t *key, size_t klen, jn_buf_t *value,
                     char *ctype, size_t ctype_len, jn_publish_result_t *res, int64_t *ts, jn_buf_t *z);

int jn_broker_table_get(jn_broker_t *b, const char *table, const uint8_t *key, size_t klen, jn_buf_t *value,
                        char *ctype, size_t ctype_len, jn_publish_result_t *res, int64_t *ts)
{
    /* The scratch for a compressed batch lives here so that every return
     * of table_get frees it. */
    jn_buf_t z;
    jn_buf_init(&z, JN_BATCH_MAX_DECOMPRESSED);
    int rc = table_get(b, table, key, klen, value, ctype, ctype_len, res, ts, &z);
    jn_buf_free(&z);
    return rc;
}

static int table_get(jn_broker_t *b, const char *table, const uint8_t *key, size_t klen, jn_buf_t *value,
                     char *ctype, size_t ctype_len, jn_publish_result_t *res, int64_t *ts, jn_buf_t *z)
{
    jn_stream_t *s = table_find(b, table);
    if (!s || !key)
        return JN_ENOENT;
    tnode_t *n = lookup(s->table, key, klen);
    if (!n || n->partition >= s->nparts)
        return JN_ENOENT;
    jn_buf_reset(&b->tbuf);
    int rc = jn_plog_read(s->parts[n->partition]->log, n->offset, 1, &b->tbuf);
    if (rc == JN_ERANGE || rc == 0)
        return JN_ENOENT;
    if (rc < 0)
        return rc;
    size_t pos = 0;
    while (pos < b->tbuf.len) {
        const uint8_t *bp = b->tbuf.data + pos;
        jn_batch_info_t bi;
        int sz = jn_batch_parse(bp, b->tbuf.len - pos, INT32_MAX, &bi);
        if (sz < 0)
            return JN_ECORRUPT;
        pos += (size_t)sz;
        if (n->offset < bi.base_offset || n->offset > bi.base_offset + bi.last_offset_delta)
            continue;
        jn_batch_iter_t it;
        rc = jn_batch_iter_init_scratch(&it, bp, (size_t)sz, false, z);
        if (rc < 0)
            return rc == JN_ETOOBIG || rc == JN_ENOMEM ? rc : JN_ECORRUPT;
        jn_record_t rec;
        while ((rc = jn_batch_iter_next(&it, &rec)) == 1) {
            if (rec.offset != n->offset)
                continue;
            if (!rec.value)
                return JN_ENOENT;
            if (value) {
                jn_buf_reset(value);
                rc = jn_buf_append(value, rec.value, (size_t)rec.value_len);
                if (rc < 0)
                    return rc;
            }
            if (ctype && ctype_len) {
                ctype[0] = '\0';
                for (uint32_t i = 0; i < rec.header_count; i++) {
                    const jn_header_t *h = &rec.headers[i];
                    if (h->key_len == sizeof CTYPE_HEADER - 1 &&
                        memcmp(h->key, CTYPE_HEADER, sizeof CTYPE_HEADER - 1) == 0 && h->value) {
                        size_t l = (size_t)h->value_len < ctype_len - 1 ? (size_t)h->value_len : ctype_len - 1;
                        memcpy(ctype, h->value, l);
                        ctype[l] = '\0';
                        break;
                    }
                }
            }
            if (res) {
                res->stream = s;
                res->partition = (int32_t)n->partition;
                res->offset = n->offset;
            }
            if (ts)
                *ts = rec.timestamp;
            return 0;
        }
        break;
    }
    return JN_ENOENT;
}

int jn_broker_table_delete(jn_broker_t *b, const char *table, const uint8_t *key, size_t klen,
                           jn_publish_result_t *out)
{
    jn_stream_t *s = table_find(b, table);
    if (!s || !key || !lookup(s->table, key, klen))
        return JN_ENOENT;
    return write_record(b, s, key, klen, NULL, 0, true, NULL, out);
}

typedef struct scan_ctx {
    const uint8_t *prefix, *after;
    size_t plen, alen;
    size_t limit, count;
    jn_table_key_cb cb;
    void *arg;
    bool stop;
} scan_ctx_t;

static bool above_lower_bound(const scan_ctx_t *c, const tnode_t *n)
{
    if (key_cmp(n->key, n->klen, c->prefix, c->plen) < 0)
        return false;
    return !c->after || key_cmp(n->key, n->klen, c->after, c->alen) > 0;
}

static void scan(tnode_t *n, scan_ctx_t *c)
{
    while (n && !c->stop) {
        if (!above_lower_bound(c, n)) {
            n = n->r; /* everything on the left is smaller still */
            continue;
        }
        scan(n->l, c);
        if (c->stop)
            return;
        /* Keys from here on are >= prefix in order, so the first one that
         * does not start with it ends the scan. */
        if (n->klen < c->plen || (c->plen && memcmp(n->key, c->prefix, c->plen) != 0)) {
            c->stop = true;
            return;
        }
        if (c->count >= c->limit) {
            c->stop = true;
            return;
        }
        c->count++;
        if (c->cb && c->cb(n->key, n->klen, c->arg) != 0) {
            c->stop = true;
            return;
        }
        n = n->r;
    }
}

int jn_broker_table_scan(jn_broker_t *b, const char *table, const uint8_t *prefix, size_t plen,
                         const uint8_t *after, size_t alen, size_t limit, jn_table_key_cb cb, void *arg)
{
    jn_stream_t *s = table_find(b, table);
    if (!s)
        return JN_ENOENT;
    scan_ctx_t c = {prefix ? prefix : (const uint8_t *)"", after, prefix ? plen : 0, alen, limit, 0, cb, arg,
                    false};
    scan(s->table->root, &c);
    return c.count > INT32_MAX ? INT32_MAX : (int)c.count;
}

int64_t jn_broker_table_count(jn_broker_t *b, const char *table)
{
    jn_stream_t *s = table_find(b, table);
    return s ? (int64_t)s->table->count : JN_ENOENT;
}
