/* amqp_exchange.c - exchanges, bindings and routing of the AMQP door;
 * amq.topic as the broker's subject space; dead-lettering; durable
 * definitions in the metadata log.
 *
 * amq.topic: a publish is jn_broker_publish on the subject made of the
 * routing key ('.' -> '/'), so every door sees it. A queue bound to
 * amq.topic is fed by a forwarder: a non-lossy broker subscription whose
 * filter is the binding pattern mapped to a subject filter (over-matching
 * where the mapping is not exact, with an exact topic check per record).
 * The subscription callback must not append to the log, so records are
 * copied into a bounded per-forwarder buffer and enqueued from a timer on
 * the next loop iteration; a full buffer makes the subscription lag (it
 * reads from the log later), so nothing is lost. Positions are committed
 * as consumer group "amqp-binding/<queue>/<pattern>" after the buffer is
 * flushed, so a restart resumes there: at-least-once.
 *
 * Durable records: "amqp/x/<name>" {type, durable, auto_delete, internal,
 * alternate, args(hex)}; "amqp/b/<hash>" {source, dest, to_exchange, key,
 * args(hex)} for bindings between durable ends.
 */
#include "amqp_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../common/log.h"
#include "deadletter.h"
#include "routing.h"

#define FW_BUF_MAX (1u << 20)
#define ROUTE_DEPTH_MAX 8
#define HDR_MAX 60

typedef struct amqp_forwarder {
    jn_list_t node;
    jn_amqp_t *door;
    jn_sub_t *sub;
    char queue[AMQP_NAME_MAX + 1];
    char pattern[AMQP_NAME_MAX + 1];
    char group[250];
    bool exact;
    bool dirty;
    jn_buf_t pending; /* copied records waiting to be enqueued */
    bool paused;
} amqp_forwarder_t;

typedef struct amqp_timers {
    uv_timer_t flush, commit;
    int open;
    jn_amqp_t *door;
} amqp_timers_t;

static const char *const type_names[] = {"direct", "fanout", "topic", "headers"};

static bool is_topic_space(const amqp_exchange_t *x)
{
    return strcmp(x->name, "amq.topic") == 0;
}

amqp_exchange_t *jn__amqp_exchange_find(jn_amqp_t *a, const uint8_t *name, size_t len)
{
    for (amqp_exchange_t *x = a->exchanges; x; x = x->next)
        if (strlen(x->name) == len && memcmp(x->name, name, len) == 0)
            return x;
    return NULL;
}

static void hex_encode(const uint8_t *p, size_t n, char *out)
{
    static const char h[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = h[p[i] >> 4];
        out[2 * i + 1] = h[p[i] & 15];
    }
    out[2 * n] = 0;
}

static json_t *hex_json(const uint8_t *p, size_t n)
{
    char *s = malloc(2 * n + 1);
    if (!s)
        return NULL;
    hex_encode(p, n, s);
    json_t *j = json_string(s);
    free(s);
    return j;
}

static int hex_val(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes hex into a new buffer; false when malformed. */
static bool hex_decode(const char *s, uint8_t **out, uint32_t *len)
{
    size_t n = s ? strlen(s) : 0;
    *out = NULL;
    *len = 0;
    if (n % 2)
        return false;
    if (!n)
        return true;
    uint8_t *b = malloc(n / 2);
    if (!b)
        return false;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hex_val(s[2 * i]), lo = hex_val(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(b);
            return false;
        }
        b[i] = (uint8_t)(hi << 4 | lo);
    }
    *out = b;
    *len = (uint32_t)(n / 2);
    return true;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* ---- exchanges ---- */

static amqp_exchange_t *exchange_add(jn_amqp_t *a, const char *name, enum amqp_xtype t)
{
    amqp_exchange_t *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    snprintf(x->name, sizeof x->name, "%s", name);
    x->type = t;
    x->next = a->exchanges;
    a->exchanges = x;
    return x;
}

static void binding_free(jn_amqp_t *a, amqp_binding_t *b, bool forget);

static void exchange_unlink_free(jn_amqp_t *a, amqp_exchange_t *x, bool forget)
{
    for (amqp_exchange_t **pp = &a->exchanges; *pp; pp = &(*pp)->next) {
        if (*pp == x) {
            *pp = x->next;
            break;
        }
    }
    while (x->bindings) {
        amqp_binding_t *b = x->bindings;
        x->bindings = b->next;
        binding_free(a, b, forget);
    }
    if (forget && x->durable && !x->builtin) {
        char key[300];
        snprintf(key, sizeof key, "amqp/x/%s", x->name);
        if (jn_broker_meta_put(a->broker, key, NULL))
            jn_warn("amqp: cannot forget exchange %s", x->name);
    }
    free(x->alternate);
    free(x->args);
    free(x);
}

static int parse_type(const uint8_t *p, size_t n)
{
    for (int i = 0; i < 4; i++)
        if (strlen(type_names[i]) == n && memcmp(type_names[i], p, n) == 0)
            return i;
    return -1;
}

static int persist_exchange(jn_amqp_t *a, amqp_exchange_t *x)
{
    char key[300];
    snprintf(key, sizeof key, "amqp/x/%s", x->name);
    json_t *j = json_pack("{s:s,s:b,s:b,s:b,s:s?,s:o}", "type", type_names[x->type], "durable", x->durable,
                          "auto_delete", x->auto_delete, "internal", x->internal, "alternate", x->alternate, "args",
                          hex_json(x->args, x->args_len));
    if (!j)
        return JN_ENOMEM;
    int rc = jn_broker_meta_put(a->broker, key, j);
    json_decref(j);
    return rc;
}

int jn__amqp_exchange_declare(jn_amqp_t *a, const jn_amqp_method_t *m, char *text, size_t tlen)
{
    const jn_amqp_arg_t *name = &m->a[1], *type = &m->a[2];
    bool passive = m->a[3].u, durable = m->a[4].u, auto_del = m->a[5].u, internal = m->a[6].u;
    if (name->len == 0) {
        snprintf(text, tlen, "ACCESS_REFUSED - operation not permitted on the default exchange");
        return JN_AMQP_ACCESS_REFUSED;
    }
    if (memchr(name->p, 0, name->len)) {
        snprintf(text, tlen, "PRECONDITION_FAILED - bad exchange name");
        return JN_AMQP_PRECONDITION_FAILED;
    }
    amqp_exchange_t *x = jn__amqp_exchange_find(a, name->p, name->len);
    if (passive) {
        if (!x) {
            snprintf(text, tlen, "NOT_FOUND - no exchange '%.*s' in vhost '/'", (int)name->len, name->p);
            return JN_AMQP_NOT_FOUND;
        }
        return 0;
    }
    int t = parse_type(type->p, type->len);
    if (t < 0) {
        snprintf(text, tlen, "COMMAND_INVALID - unknown exchange type '%.*s'", (int)type->len, type->p);
        return JN_AMQP_COMMAND_INVALID;
    }
    if (x) {
        if ((int)x->type != t || x->durable != durable || x->auto_delete != auto_del || x->internal != internal) {
            snprintf(text, tlen, "PRECONDITION_FAILED - inequivalent arg for exchange '%.*s' in vhost '/'",
                     (int)name->len, name->p);
            return JN_AMQP_PRECONDITION_FAILED;
        }
        return 0;
    }
    if (name->len >= 4 && memcmp(name->p, "amq.", 4) == 0) {
        snprintf(text, tlen, "ACCESS_REFUSED - exchange name '%.*s' contains reserved prefix 'amq.*'", (int)name->len,
                 name->p);
        return JN_AMQP_ACCESS_REFUSED;
    }
    char nm[AMQP_NAME_MAX + 1];
    memcpy(nm, name->p, name->len);
    nm[name->len] = 0;
    x = exchange_add(a, nm, (enum amqp_xtype)t);
    if (!x)
        goto nomem;
    x->durable = durable;
    x->auto_delete = auto_del;
    x->internal = internal;
    jn_amqp_value_t v;
    if (jn_amqp_table_get(m->a[8].p, m->a[8].len, "alternate-exchange", &v) == 1 && v.type == 'S' && v.len <= 255) {
        x->alternate = strndup((const char *)v.p, v.len);
        if (!x->alternate)
            goto nomem;
    }
    if (m->a[8].len) {
        x->args = malloc(m->a[8].len);
        if (!x->args)
            goto nomem;
        memcpy(x->args, m->a[8].p, m->a[8].len);
        x->args_len = m->a[8].len;
    }
    if (durable && persist_exchange(a, x)) {
        exchange_unlink_free(a, x, false);
        snprintf(text, tlen, "INTERNAL_ERROR - cannot store the exchange");
        return JN_AMQP_INTERNAL_ERROR;
    }
    return 0;
nomem:
    if (x)
        exchange_unlink_free(a, x, false);
    snprintf(text, tlen, "INTERNAL_ERROR - out of memory");
    return JN_AMQP_INTERNAL_ERROR;
}

/* Removes every binding whose destination is exchange |name|. */
static void unbind_dest_exchange(jn_amqp_t *a, const char *name)
{
    for (amqp_exchange_t *x = a->exchanges; x; x = x->next) {
        for (amqp_binding_t **pp = &x->bindings; *pp;) {
            amqp_binding_t *b = *pp;
            if (b->to_exchange && strcmp(b->dest, name) == 0) {
                *pp = b->next;
                binding_free(a, b, true);
            } else {
                pp = &b->next;
            }
        }
    }
}

int jn__amqp_exchange_delete(jn_amqp_t *a, const jn_amqp_method_t *m, char *text, size_t tlen)
{
    const jn_amqp_arg_t *name = &m->a[1];
    amqp_exchange_t *x = jn__amqp_exchange_find(a, name->p, name->len);
    if (!x)
        return 0; /* as RabbitMQ 3.x: deleting a missing exchange succeeds */
    if (x->builtin) {
        snprintf(text, tlen, "ACCESS_REFUSED - operation not permitted on exchange '%.*s'", (int)name->len, name->p);
        return JN_AMQP_ACCESS_REFUSED;
    }
    if (m->a[2].u && x->bindings) {
        snprintf(text, tlen, "PRECONDITION_FAILED - exchange '%.*s' in use", (int)name->len, name->p);
        return JN_AMQP_PRECONDITION_FAILED;
    }
    char nm[AMQP_NAME_MAX + 1];
    snprintf(nm, sizeof nm, "%s", x->name);
    exchange_unlink_free(a, x, true);
    unbind_dest_exchange(a, nm);
    return 0;
}

/* ---- forwarders ---- */

static int fw_deliver(jn_sub_t *sub, const jn_delivery_t *d, void *arg);

static void fw_commit(amqp_forwarder_t *fw)
{
    jn_broker_t *br = fw->door->broker;
    for (jn_stream_t *s = jn_broker_stream_next(br, NULL); s; s = jn_broker_stream_next(br, s)) {
        for (uint32_t p = 0; p < jn_stream_partitions(s); p++) {
            int64_t pos = jn_sub_position(fw->sub, s, p), cur;
            if (pos < 0)
                continue;
            if (jn_broker_group_fetch(br, fw->group, s, p, &cur) == 0 && cur == pos)
                continue;
            if (jn_broker_group_commit(br, fw->group, s, p, pos, NULL))
                jn_warn("amqp: forwarder %s: commit failed", fw->group);
        }
    }
    fw->dirty = false;
}

/* Enqueues the copied records. */
static void fw_flush(amqp_forwarder_t *fw)
{
    jn_amqp_t *a = fw->door;
    const uint8_t *p = fw->pending.data, *end = p + fw->pending.len;
    jn_queue_t *q = jn_queue_find(a->broker, fw->queue);
    while (p && p < end) {
        /* Layout (ours, in memory only): ts:8 nh:4 vlen:4 value
         * then per header klen:4 key vlen:4 value (vlen -1: null). */
        jn_header_t h[HDR_MAX + 3];
        jn_record_t rec = {.key = NULL, .key_len = -1};
        memcpy(&rec.timestamp, p, 8);
        uint32_t nh;
        int32_t vl;
        memcpy(&nh, p + 8, 4);
        memcpy(&vl, p + 12, 4);
        p += 16;
        rec.value = vl >= 0 ? p : NULL;
        rec.value_len = vl;
        p += vl > 0 ? vl : 0;
        for (uint32_t i = 0; i < nh; i++) {
            uint32_t kl;
            memcpy(&kl, p, 4);
            h[i].key = p + 4;
            h[i].key_len = kl;
            p += 4 + kl;
            memcpy(&vl, p, 4);
            h[i].value = vl >= 0 ? p + 4 : NULL;
            h[i].value_len = vl;
            p += 4 + (vl > 0 ? vl : 0);
        }
        rec.headers = h;
        rec.header_count = nh;
        if (q) {
            int64_t id = jn_queue_enqueue(q, &rec, 0);
            if (id < 0 && id != JN_ETOOBIG)
                jn_warn("amqp: forwarder %s: enqueue: %s", fw->group, jn_strerror((int)id));
        }
    }
    jn_buf_reset(&fw->pending);
    fw->dirty = true;
    if (fw->paused) {
        fw->paused = false;
        jn_sub_resume(fw->sub);
    }
}

static int put_blob(jn_buf_t *b, const void *p, int32_t len)
{
    int rc = jn_buf_append(b, &len, 4);
    return rc ? rc : (len > 0 ? jn_buf_append(b, p, (size_t)len) : 0);
}

static void timers_flush_cb(uv_timer_t *t)
{
    amqp_timers_t *tm = t->data;
    jn_list_t *pos;
    jn_list_foreach(pos, &tm->door->forwarders) {
        amqp_forwarder_t *fw = jn_container_of(pos, amqp_forwarder_t, node);
        if (fw->pending.len || fw->paused)
            fw_flush(fw);
    }
}

static int fw_deliver(jn_sub_t *sub, const jn_delivery_t *d, void *arg)
{
    (void)sub;
    amqp_forwarder_t *fw = arg;
    char key[1024];
    size_t klen = jn_amqp_subject_to_key(d->subject, d->subject_len, key, sizeof key);
    if (klen >= sizeof key)
        return 0;
    if (!fw->exact && !jn_amqp_topic_match(fw->pattern, strlen(fw->pattern), key, klen))
        return 0;
    const jn_record_t *r = d->rec;
    jn_buf_t *b = &fw->pending;
    size_t mark = b->len;
    uint32_t nh = 0;
    int rc = jn_buf_append(b, &r->timestamp, 8);
    if (!rc)
        rc = jn_buf_append(b, &nh, 4);
    if (!rc)
        rc = put_blob(b, r->value, r->value ? r->value_len : -1);
    const jn_header_t *exp = NULL;
    for (uint32_t i = 0; !rc && i < r->header_count && nh < HDR_MAX; i++, nh++) {
        const jn_header_t *h = &r->headers[i];
        rc = put_blob(b, h->key, (int32_t)h->key_len);
        if (!rc)
            rc = put_blob(b, h->value, h->value ? h->value_len : -1);
        if (h->key_len == 15 && memcmp(h->key, "amqp-expiration", 15) == 0 && h->value)
            exp = h;
    }
    /* An AMQP expiration is the message's TTL in this queue too, counted
     * from its publication. */
    if (!rc && exp && jn__amqp_expiration_ok(&(jn_amqp_str_t){exp->value, (uint32_t)exp->value_len})) {
        rc = put_blob(b, JN_QUEUE_TTL_HEADER, sizeof JN_QUEUE_TTL_HEADER - 1);
        if (!rc)
            rc = put_blob(b, exp->value, exp->value_len);
        if (!rc)
            nh++;
    }
    /* Where it came from, for Basic.Deliver. */
    if (!rc)
        rc = put_blob(b, "amqp-exchange", 13);
    if (!rc)
        rc = put_blob(b, "amq.topic", 9);
    if (!rc)
        rc = put_blob(b, "amqp-routing-key", 16);
    if (!rc)
        rc = put_blob(b, key, (int32_t)klen);
    if (rc) {
        /* Full: lag now, read it from the log after the flush. */
        b->len = mark;
        fw->paused = true;
        uv_timer_start(&fw->door->timers->flush, timers_flush_cb, 0, 0);
        return JN_EAGAIN;
    }
    nh += 2;
    memcpy(b->data + mark + 8, &nh, 4);
    uv_timer_start(&fw->door->timers->flush, timers_flush_cb, 0, 0);
    return 0;
}

static void group_name(const char *queue, const char *pattern, char *out, size_t cap)
{
    int n = snprintf(out, cap, "amqp-binding/%s/%s", queue, pattern);
    bool ok = n > 0 && (size_t)n < cap && n <= 249;
    for (int i = 0; ok && out[i]; i++)
        if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] > 0x7e)
            ok = false;
    if (!ok) {
        uint64_t h = fnv(fnv(1469598103934665603ull, queue, strlen(queue) + 1), pattern, strlen(pattern));
        snprintf(out, cap, "amqp-binding/h%016llx", (unsigned long long)h);
    }
}

static amqp_forwarder_t *fw_new(jn_amqp_t *a, const char *queue, const char *pattern, bool fresh)
{
    amqp_forwarder_t *fw = calloc(1, sizeof *fw);
    char filter[600];
    if (!fw)
        return NULL;
    fw->door = a;
    snprintf(fw->queue, sizeof fw->queue, "%s", queue);
    snprintf(fw->pattern, sizeof fw->pattern, "%s", pattern);
    group_name(queue, pattern, fw->group, sizeof fw->group);
    jn_buf_init(&fw->pending, FW_BUF_MAX);
    int ex = jn_amqp_topic_to_filter(pattern, strlen(pattern), filter, sizeof filter);
    fw->exact = ex == 1;
    if (ex < 0)
        goto fail;
    jn_sub_opts_t o = {
        .filter = filter,
        .start = JN_START_GROUP,
        .group = fw->group,
        .group_default = JN_START_LIVE,
        .deliver = fw_deliver,
        .arg = fw,
    };
    if (jn_broker_subscribe(a->broker, &o, &fw->sub))
        goto fail;
    jn_list_insert_tail(&a->forwarders, &fw->node);
    /* A new binding gets records from now on, restarts included: commit
     * the live position at once. */
    if (fresh)
        fw_commit(fw);
    return fw;
fail:
    jn_buf_free(&fw->pending);
    free(fw);
    return NULL;
}

static void fw_free(amqp_forwarder_t *fw, bool forget)
{
    if (fw->pending.len)
        fw_flush(fw);
    else if (!forget && fw->dirty)
        fw_commit(fw);
    if (!forget && fw->dirty)
        fw_commit(fw);
    jn_sub_close(fw->sub);
    if (forget)
        if (jn_broker_group_delete(fw->door->broker, fw->group) < 0)
            jn_debug("amqp: forwarder %s had no committed position", fw->group);
    jn_list_remove(&fw->node);
    jn_buf_free(&fw->pending);
    free(fw);
}

static void timers_commit_cb(uv_timer_t *t)
{
    amqp_timers_t *tm = t->data;
    jn_list_t *pos;
    jn_list_foreach(pos, &tm->door->forwarders) {
        amqp_forwarder_t *fw = jn_container_of(pos, amqp_forwarder_t, node);
        if (fw->pending.len)
            fw_flush(fw);
        if (fw->dirty)
            fw_commit(fw);
    }
}

/* ---- bindings ---- */

static uint64_t binding_hash(const char *src, const amqp_binding_t *b)
{
    uint64_t h = 1469598103934665603ull;
    h = fnv(h, src, strlen(src) + 1);
    h = fnv(h, b->dest, strlen(b->dest) + 1);
    h = fnv(h, b->to_exchange ? "e" : "q", 1);
    h = fnv(h, b->key, strlen(b->key) + 1);
    return b->args_len ? fnv(h, b->args, b->args_len) : h;
}

static void binding_meta_key(const char *src, const amqp_binding_t *b, char *out, size_t cap)
{
    snprintf(out, cap, "amqp/b/%016llx", (unsigned long long)binding_hash(src, b));
}

/* Frees |b| (already unlinked): stops its forwarder; |forget| removes its
 * durable record and the forwarder's committed position. */
static void binding_free(jn_amqp_t *a, amqp_binding_t *b, bool forget)
{
    if (b->fw)
        fw_free(b->fw, forget);
    if (forget && b->stored) {
        /* The source name is in the hash; the caller's exchange is gone or
         * going, so recompute from the record we wrote. */
        char key[64];
        snprintf(key, sizeof key, "%s", b->stored_key);
        if (jn_broker_meta_put(a->broker, key, NULL))
            jn_warn("amqp: cannot forget binding %s", key);
    }
    free(b->args);
    free(b);
}

static bool dest_durable(jn_amqp_t *a, bool to_exchange, const char *dest)
{
    if (to_exchange) {
        amqp_exchange_t *d = jn__amqp_exchange_find(a, (const uint8_t *)dest, strlen(dest));
        return d && d->durable;
    }
    jn_queue_t *q = jn_queue_find(a->broker, dest);
    return q && jn_queue_options(q)->durable;
}

static int binding_add(jn_amqp_t *a, amqp_exchange_t *x, bool to_exchange, const char *dest, const char *key,
                       const uint8_t *args, uint32_t alen, bool fresh, bool persist)
{
    amqp_binding_t *b = calloc(1, sizeof *b);
    if (!b)
        return JN_ENOMEM;
    b->to_exchange = to_exchange;
    snprintf(b->dest, sizeof b->dest, "%s", dest);
    snprintf(b->key, sizeof b->key, "%s", key);
    if (alen) {
        b->args = malloc(alen);
        if (!b->args)
            goto nomem;
        memcpy(b->args, args, alen);
        b->args_len = alen;
    }
    if (is_topic_space(x) && !to_exchange) {
        b->fw = fw_new(a, dest, key, fresh);
        if (!b->fw)
            goto nomem;
    }
    binding_meta_key(x->name, b, b->stored_key, sizeof b->stored_key);
    if (persist && x->durable && dest_durable(a, to_exchange, dest)) {
        json_t *j = json_pack("{s:s,s:s,s:b,s:s,s:o}", "source", x->name, "dest", dest, "to_exchange", to_exchange,
                              "key", key, "args", hex_json(args, alen));
        int rc = j ? jn_broker_meta_put(a->broker, b->stored_key, j) : JN_ENOMEM;
        json_decref(j);
        if (rc) {
            binding_free(a, b, true);
            return rc;
        }
        b->stored = true;
    }
    b->next = x->bindings;
    x->bindings = b;
    x->had_binding = true;
    return 0;
nomem:
    binding_free(a, b, false);
    return JN_ENOMEM;
}

static void maybe_auto_delete(jn_amqp_t *a, amqp_exchange_t *x)
{
    if (x->auto_delete && x->had_binding && !x->bindings && !x->builtin) {
        char nm[AMQP_NAME_MAX + 1];
        snprintf(nm, sizeof nm, "%s", x->name);
        exchange_unlink_free(a, x, true);
        unbind_dest_exchange(a, nm);
    }
}

static bool same_args(const amqp_binding_t *b, const jn_amqp_str_t *args)
{
    return b->args_len == args->len && (args->len == 0 || memcmp(b->args, args->p, args->len) == 0);
}

int jn__amqp_bind(jn_amqp_t *a, bool to_exchange, const jn_amqp_str_t *dest, const jn_amqp_str_t *src,
                  const jn_amqp_str_t *key, const jn_amqp_str_t *args, bool unbind, const jn_principal_t *p,
                  char *text, size_t tlen)
{
    amqp_exchange_t *x = jn__amqp_exchange_find(a, src->p, src->len);
    if (src->len == 0 || (to_exchange && dest->len == 0)) {
        snprintf(text, tlen, "ACCESS_REFUSED - operation not permitted on the default exchange");
        return JN_AMQP_ACCESS_REFUSED;
    }
    if (!x) {
        snprintf(text, tlen, "NOT_FOUND - no exchange '%.*s' in vhost '/'", (int)src->len, src->p);
        return JN_AMQP_NOT_FOUND;
    }
    if (to_exchange && !jn__amqp_exchange_find(a, dest->p, dest->len)) {
        snprintf(text, tlen, "NOT_FOUND - no exchange '%.*s' in vhost '/'", (int)dest->len, dest->p);
        return JN_AMQP_NOT_FOUND;
    }
    char d[AMQP_NAME_MAX + 1], k[AMQP_NAME_MAX + 1];
    memcpy(d, dest->p, dest->len);
    d[dest->len] = 0;
    memcpy(k, key->p, key->len);
    k[key->len] = 0;
    for (amqp_binding_t **pp = &x->bindings; *pp; pp = &(*pp)->next) {
        amqp_binding_t *b = *pp;
        if (b->to_exchange == to_exchange && strcmp(b->dest, d) == 0 && strcmp(b->key, k) == 0 && same_args(b, args)) {
            if (unbind) {
                *pp = b->next;
                binding_free(a, b, true);
                maybe_auto_delete(a, x);
            }
            return 0;
        }
    }
    if (unbind)
        return 0;
    if (is_topic_space(x) && !to_exchange) {
        char filter[600];
        if (jn_amqp_topic_to_filter(k, strlen(k), filter, sizeof filter) >= 0 &&
            !jn_auth_allowed(jn_broker_auth(a->broker), p, JN_PERM_SUBSCRIBE, filter, strlen(filter))) {
            snprintf(text, tlen, "ACCESS_REFUSED - not allowed to subscribe to '%s'", filter);
            return JN_AMQP_ACCESS_REFUSED;
        }
    }
    int rc = binding_add(a, x, to_exchange, d, k, args->p, args->len, true, true);
    if (rc) {
        snprintf(text, tlen, "INTERNAL_ERROR - cannot bind: %s", jn_strerror(rc));
        return JN_AMQP_INTERNAL_ERROR;
    }
    return 0;
}

void jn__amqp_unbind_queue(jn_amqp_t *a, const char *name)
{
    for (amqp_exchange_t *x = a->exchanges, *next; x; x = next) {
        next = x->next;
        bool removed = false;
        for (amqp_binding_t **pp = &x->bindings; *pp;) {
            amqp_binding_t *b = *pp;
            if (!b->to_exchange && strcmp(b->dest, name) == 0) {
                *pp = b->next;
                binding_free(a, b, true);
                removed = true;
            } else {
                pp = &b->next;
            }
        }
        if (removed)
            maybe_auto_delete(a, x);
    }
}

/* ---- message <-> record ---- */

typedef struct rec_builder {
    jn_header_t h[HDR_MAX + 8];
    uint32_t n;
    char pool[8192]; /* numbers and other values rendered as text */
    size_t used;
    bool need_raw;
} rec_builder_t;

static void hdr_add(rec_builder_t *rb, const char *k, size_t kl, const void *v, int32_t vl)
{
    if (rb->n >= HDR_MAX + 8)
        return;
    rb->h[rb->n++] = (jn_header_t){(const uint8_t *)k, (uint32_t)kl, v, vl};
}

static void hdr_text(rec_builder_t *rb, const char *k, size_t kl, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void hdr_text(rec_builder_t *rb, const char *k, size_t kl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = sizeof rb->pool - rb->used;
    int n = vsnprintf(rb->pool + rb->used, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room) {
        rb->need_raw = true;
        return;
    }
    hdr_add(rb, k, kl, rb->pool + rb->used, n);
    rb->used += (size_t)n + 1;
}

#define PROP_STR(flag, m, name)                                                                    \
    if (pr->flags & (flag))                                                                        \
    hdr_add(rb, name, sizeof(name) - 1, pr->m.p, (int32_t)pr->m.len)

static void build_headers(rec_builder_t *rb, const amqp_msg_t *m, bool with_route)
{
    const jn_amqp_props_t *pr = m->props;
    if (with_route) {
        hdr_add(rb, "amqp-exchange", 13, m->exchange, (int32_t)m->exchange_len);
        hdr_add(rb, "amqp-routing-key", 16, m->key, (int32_t)m->key_len);
    }
    PROP_STR(JN_AMQP_P_CONTENT_TYPE, content_type, "content-type");
    PROP_STR(JN_AMQP_P_CONTENT_ENCODING, content_encoding, "amqp-content-encoding");
    if (pr->flags & JN_AMQP_P_DELIVERY_MODE)
        hdr_text(rb, "amqp-delivery-mode", 18, "%u", pr->delivery_mode);
    if (pr->flags & JN_AMQP_P_PRIORITY)
        hdr_text(rb, "amqp-priority", 13, "%u", pr->priority);
    PROP_STR(JN_AMQP_P_CORRELATION_ID, correlation_id, "amqp-correlation-id");
    PROP_STR(JN_AMQP_P_REPLY_TO, reply_to, "amqp-reply-to");
    PROP_STR(JN_AMQP_P_EXPIRATION, expiration, "amqp-expiration");
    /* Per-message TTL, enforced by the core queue (validated at publish,
     * jn__amqp_expiration_ok); subject-space records get it on the way
     * into a bound queue (fw_deliver). */
    if (with_route && (pr->flags & JN_AMQP_P_EXPIRATION) && jn__amqp_expiration_ok(&pr->expiration))
        hdr_add(rb, JN_QUEUE_TTL_HEADER, sizeof JN_QUEUE_TTL_HEADER - 1, pr->expiration.p,
                (int32_t)pr->expiration.len);
    PROP_STR(JN_AMQP_P_MESSAGE_ID, message_id, "amqp-message-id");
    if (pr->flags & JN_AMQP_P_TIMESTAMP)
        hdr_text(rb, "amqp-timestamp", 14, "%llu", (unsigned long long)pr->timestamp);
    PROP_STR(JN_AMQP_P_TYPE, type, "amqp-type");
    PROP_STR(JN_AMQP_P_USER_ID, user_id, "amqp-user-id");
    PROP_STR(JN_AMQP_P_APP_ID, app_id, "amqp-app-id");
    PROP_STR(JN_AMQP_P_CLUSTER_ID, cluster_id, "amqp-cluster-id");
    if (!(pr->flags & JN_AMQP_P_HEADERS))
        return;
    jn_amqp_iter_t it;
    jn_amqp_str_t k;
    jn_amqp_value_t v;
    jn_amqp_iter_init(&it, pr->headers.p, pr->headers.len);
    while (jn_amqp_table_next(&it, &k, &v) == 1) {
        if (rb->n >= HDR_MAX) {
            rb->need_raw = true;
            break;
        }
        const char *kp = (const char *)k.p;
        switch (v.type) {
        case 'S':
        case 'x':
            hdr_add(rb, kp, k.len, v.p, (int32_t)v.len);
            if (v.type == 'x')
                rb->need_raw = true;
            break;
        case 't':
            hdr_text(rb, kp, k.len, "%s", v.i ? "true" : "false");
            rb->need_raw = true;
            break;
        case 'f':
        case 'd':
            hdr_text(rb, kp, k.len, "%.17g", v.d);
            rb->need_raw = true;
            break;
        case 'V':
            hdr_add(rb, kp, k.len, NULL, -1);
            rb->need_raw = true;
            break;
        case 'F':
        case 'A':
        case 'D': {
            json_t *j = jn_amqp_value_to_json(&v);
            char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
            if (s)
                hdr_text(rb, kp, k.len, "%s", s);
            free(s);
            json_decref(j);
            rb->need_raw = true;
            break;
        }
        default:
            if (v.type == 'L' || v.type == 'T')
                hdr_text(rb, kp, k.len, "%llu", (unsigned long long)v.u);
            else
                hdr_text(rb, kp, k.len, "%lld", (long long)v.i);
            rb->need_raw = true;
            break;
        }
    }
    /* The exact table for AMQP consumers when text lost type information. */
    if (rb->need_raw)
        hdr_add(rb, ":amqp-headers", 13, pr->headers.p, (int32_t)pr->headers.len);
}

static bool hdr_is(const jn_header_t *h, const char *s)
{
    size_t n = strlen(s);
    return h->key_len == n && memcmp(h->key, s, n) == 0;
}

static uint64_t hdr_num(const jn_header_t *h)
{
    char t[32];
    size_t n = h->value_len > 0 && (size_t)h->value_len < sizeof t ? (size_t)h->value_len : 0;
    memcpy(t, h->value, n);
    t[n] = 0;
    return strtoull(t, NULL, 10);
}

void jn__amqp_record_props(const jn_record_t *rec, jn_amqp_props_t *pr, jn_buf_t *tbl, jn_amqp_str_t *exchange,
                           jn_amqp_str_t *key)
{
    memset(pr, 0, sizeof *pr);
    *exchange = (jn_amqp_str_t){NULL, 0};
    *key = (jn_amqp_str_t){NULL, 0};
    const jn_header_t *raw = NULL, *subject = NULL;
    bool have_ex = false, have_rk = false;
    for (uint32_t i = 0; i < rec->header_count; i++)
        if (hdr_is(&rec->headers[i], ":amqp-headers"))
            raw = &rec->headers[i];
    size_t mark = 0;
    bool tbl_ok = !raw && jn_amqp_table_begin(tbl, &mark) == 0;
    for (uint32_t i = 0; i < rec->header_count; i++) {
        const jn_header_t *h = &rec->headers[i];
        jn_amqp_str_t v = {h->value, h->value_len > 0 ? (uint32_t)h->value_len : 0};
        if (v.len > 255 && h->key_len > 5 && !memcmp(h->key, "amqp-", 5))
            continue; /* a property cannot be longer than a shortstr */
#define PROP(name, flag, m)                                                                        \
    if (hdr_is(h, name)) {                                                                         \
        pr->flags |= (flag);                                                                       \
        pr->m = v;                                                                                 \
        continue;                                                                                  \
    }
        if (hdr_is(h, "amqp-exchange")) {
            *exchange = v;
            have_ex = true;
            continue;
        }
        if (hdr_is(h, "amqp-routing-key")) {
            *key = v;
            have_rk = true;
            continue;
        }
        if (hdr_is(h, JN_SUBJECT_HEADER)) {
            subject = h;
            continue;
        }
        PROP("content-type", JN_AMQP_P_CONTENT_TYPE, content_type)
        PROP("amqp-content-encoding", JN_AMQP_P_CONTENT_ENCODING, content_encoding)
        PROP("amqp-correlation-id", JN_AMQP_P_CORRELATION_ID, correlation_id)
        PROP("amqp-reply-to", JN_AMQP_P_REPLY_TO, reply_to)
        PROP("amqp-expiration", JN_AMQP_P_EXPIRATION, expiration)
        PROP("amqp-message-id", JN_AMQP_P_MESSAGE_ID, message_id)
        PROP("amqp-type", JN_AMQP_P_TYPE, type)
        PROP("amqp-user-id", JN_AMQP_P_USER_ID, user_id)
        PROP("amqp-app-id", JN_AMQP_P_APP_ID, app_id)
        PROP("amqp-cluster-id", JN_AMQP_P_CLUSTER_ID, cluster_id)
#undef PROP
        if (hdr_is(h, "amqp-delivery-mode")) {
            pr->flags |= JN_AMQP_P_DELIVERY_MODE;
            pr->delivery_mode = (uint8_t)hdr_num(h);
            continue;
        }
        if (hdr_is(h, "amqp-priority")) {
            pr->flags |= JN_AMQP_P_PRIORITY;
            pr->priority = (uint8_t)hdr_num(h);
            continue;
        }
        if (hdr_is(h, "amqp-timestamp")) {
            pr->flags |= JN_AMQP_P_TIMESTAMP;
            pr->timestamp = hdr_num(h);
            continue;
        }
        if (h->key_len == 0 || h->key_len > 255 || h->key[0] == ':' || !tbl_ok)
            continue;
        size_t s = tbl->len;
        int rc = jn_buf_put_u8(tbl, (uint8_t)h->key_len);
        if (!rc)
            rc = jn_buf_append(tbl, h->key, h->key_len);
        if (!rc)
            rc = h->value ? jn_buf_put_u8(tbl, 'S') : jn_buf_put_u8(tbl, 'V');
        if (!rc && h->value)
            rc = jn_buf_put_be32(tbl, v.len);
        if (!rc && v.len)
            rc = jn_buf_append(tbl, v.p, v.len);
        if (rc)
            tbl->len = s;
    }
    if (raw) {
        pr->flags |= JN_AMQP_P_HEADERS;
        pr->headers = (jn_amqp_str_t){raw->value, raw->value_len > 0 ? (uint32_t)raw->value_len : 0};
    } else if (tbl_ok) {
        jn_amqp_table_end(tbl, mark);
        if (tbl->len > mark + 4) {
            pr->flags |= JN_AMQP_P_HEADERS;
            pr->headers = (jn_amqp_str_t){tbl->data + mark + 4, (uint32_t)(tbl->len - mark - 4)};
        }
    }
    if (!have_rk && subject) {
        /* A record published on another door: its subject is the key. */
        size_t off = tbl->len;
        uint32_t n = subject->value_len > 0 ? (uint32_t)subject->value_len : 0;
        if (n <= 255 && jn_buf_reserve(tbl, n) == 0) {
            uint8_t *base = tbl->data;
            for (uint32_t i = 0; i < n; i++)
                base[off + i] = subject->value[i] == '/' ? '.' : subject->value[i];
            tbl->len += n;
            if (pr->flags & JN_AMQP_P_HEADERS && !raw)
                pr->headers.p = tbl->data + mark + 4; /* the buffer may have moved */
            *key = (jn_amqp_str_t){tbl->data + off, n};
        }
        if (!have_ex)
            *exchange = (jn_amqp_str_t){(const uint8_t *)"amq.topic", 9};
    }
    if (exchange->len > 255)
        exchange->len = 255;
    if (key->len > 255)
        key->len = 255;
}

/* ---- ACLs ---- */

/* Appends |n| bytes of a name to |out| as one subject level; false when
 * it does not fit. */
static bool acl_level(char *out, size_t cap, size_t *len, const char *p, size_t n, bool dots)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (*len + 4 > cap)
            return false;
        if (dots && c == '.') {
            out[(*len)++] = '/';
        } else if (c == '%' || c == '/' || c == '+' || c == '#') {
            out[(*len)++] = '%';
            out[(*len)++] = hex[c >> 4];
            out[(*len)++] = hex[c & 15];
        } else {
            out[(*len)++] = (char)c;
        }
    }
    out[*len] = 0;
    return true;
}

bool jn__amqp_allowed_exchange(jn_amqp_t *a, const jn_principal_t *p, const char *exchange, size_t elen,
                               const char *key, size_t klen, bool with_key)
{
    if (p->admin)
        return true;
    char s[2048];
    size_t n = (size_t)snprintf(s, sizeof s, "amqp/exchange/");
    if (elen == 0) {
        exchange = "amq.default";
        elen = 11;
    }
    if (!acl_level(s, sizeof s, &n, exchange, elen, false))
        return false;
    if (with_key && klen) {
        s[n++] = '/';
        if (!acl_level(s, sizeof s, &n, key, klen, true))
            return false;
    }
    return jn_auth_allowed(jn_broker_auth(a->broker), p, JN_PERM_PUBLISH, s, n);
}

bool jn__amqp_allowed_queue(jn_amqp_t *a, const jn_principal_t *p, enum jn_perm perm, const char *queue)
{
    if (p->admin)
        return true;
    char s[1024];
    size_t n = (size_t)snprintf(s, sizeof s, "amqp/queue/");
    if (!acl_level(s, sizeof s, &n, queue, strlen(queue), false))
        return false;
    return jn_auth_allowed(jn_broker_auth(a->broker), p, perm, s, n);
}

/* ---- routing ---- */

bool jn__amqp_expiration_ok(const jn_amqp_str_t *e)
{
    if (e->len < 1 || e->len > 15)
        return false;
    for (uint32_t i = 0; i < e->len; i++)
        if (e->p[i] < '0' || e->p[i] > '9')
            return false;
    return true;
}

typedef struct route_set {
    const char *names[AMQP_ROUTE_MAX];
    int n;
    bool topic_space; /* reached amq.topic: publish to the subject space */
    int forwarded;    /* amq.topic queue bindings that match */
    const amqp_exchange_t *visited[ROUTE_DEPTH_MAX * 4];
    int nvisited;
} route_set_t;

static void set_add(route_set_t *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0)
            return;
    if (s->n < AMQP_ROUTE_MAX)
        s->names[s->n++] = name;
}

static bool binding_matches(const amqp_exchange_t *x, const amqp_binding_t *b, const amqp_msg_t *m)
{
    switch (x->type) {
    case XT_DIRECT:
        return strlen(b->key) == m->key_len && memcmp(b->key, m->key, m->key_len) == 0;
    case XT_FANOUT:
        return true;
    case XT_TOPIC:
        return jn_amqp_topic_match(b->key, strlen(b->key), m->key, m->key_len);
    case XT_HEADERS: {
        const jn_amqp_props_t *pr = m->props;
        bool has = pr->flags & JN_AMQP_P_HEADERS;
        return jn_amqp_headers_match(b->args, b->args_len, has ? pr->headers.p : NULL, has ? pr->headers.len : 0);
    }
    }
    return false;
}

static void route_into(jn_amqp_t *a, const amqp_exchange_t *x, const amqp_msg_t *m, route_set_t *s, int depth)
{
    for (int i = 0; i < s->nvisited; i++)
        if (s->visited[i] == x)
            return;
    if (s->nvisited < (int)(sizeof s->visited / sizeof s->visited[0]))
        s->visited[s->nvisited++] = x;
    if (x->name[0] == 0) {
        char q[AMQP_NAME_MAX + 1];
        if (m->key_len <= AMQP_NAME_MAX) {
            memcpy(q, m->key, m->key_len);
            q[m->key_len] = 0;
            jn_queue_t *qq = jn_queue_find(a->broker, q);
            if (qq)
                set_add(s, jn_queue_name(qq));
        }
        return;
    }
    if (is_topic_space(x))
        s->topic_space = true;
    for (const amqp_binding_t *b = x->bindings; b; b = b->next) {
        if (!binding_matches(x, b, m))
            continue;
        if (b->to_exchange) {
            const amqp_exchange_t *d = jn__amqp_exchange_find(a, (const uint8_t *)b->dest, strlen(b->dest));
            if (d && depth < ROUTE_DEPTH_MAX)
                route_into(a, d, m, s, depth + 1);
        } else if (b->fw) {
            s->forwarded++;
        } else if (jn_queue_find(a->broker, b->dest)) {
            set_add(s, b->dest);
        }
    }
}

static int wait_add(amqp_route_result_t *res, jn_queue_t *q, int64_t id)
{
    if (res->nwait == res->wait_cap) {
        int cap = res->wait_cap * 2;
        amqp_wait_t *w = res->wait == res->wait_inline ? malloc((size_t)cap * sizeof *w)
                                                       : realloc(res->wait, (size_t)cap * sizeof *w);
        if (!w)
            return JN_ENOMEM;
        if (res->wait == res->wait_inline)
            memcpy(w, res->wait_inline, sizeof res->wait_inline);
        res->wait = w;
        res->wait_cap = cap;
    }
    res->wait[res->nwait++] = (amqp_wait_t){q, id};
    return 0;
}

void jn__amqp_route_result_free(amqp_route_result_t *res)
{
    if (res->wait != res->wait_inline)
        free(res->wait);
    res->wait = res->wait_inline;
    res->nwait = 0;
    res->wait_cap = AMQP_WAIT_INLINE;
}

int jn__amqp_publish(jn_amqp_t *a, amqp_exchange_t *x, const amqp_msg_t *m, const jn_principal_t *p,
                     amqp_route_result_t *res)
{
    memset(res, 0, sizeof *res);
    res->wait = res->wait_inline;
    res->wait_cap = AMQP_WAIT_INLINE;
    route_set_t *s = calloc(1, sizeof *s);
    rec_builder_t *rb = calloc(1, sizeof *rb);
    int code = 0;
    if (!s || !rb) {
        res->errors++;
        goto out;
    }
    if (!is_topic_space(x) && !jn__amqp_allowed_exchange(a, p, m->exchange, m->exchange_len, m->key, m->key_len, true)) {
        code = JN_AMQP_ACCESS_REFUSED;
        goto out;
    }
    route_into(a, x, m, s, 0);
    if (s->n == 0 && !s->forwarded && x->alternate) {
        amqp_exchange_t *alt = jn__amqp_exchange_find(a, (const uint8_t *)x->alternate, strlen(x->alternate));
        if (alt)
            route_into(a, alt, m, s, 1);
    }
    jn_record_t rec = {
        .key = NULL,
        .key_len = -1,
        .value = m->body ? m->body : (const uint8_t *)"",
        .value_len = (int32_t)m->body_len,
        .timestamp = 0,
    };
    uint8_t prio = (m->props->flags & JN_AMQP_P_PRIORITY) ? m->props->priority : 0;
    if (s->topic_space) {
        /* The subject space: other doors see it; bound queues get it
         * through their forwarders. */
        char subject[AMQP_NAME_MAX + 1];
        size_t n = m->key_len;
        for (size_t i = 0; i < n; i++)
            subject[i] = m->key[i] == '.' ? '/' : m->key[i];
        subject[n] = 0;
        if (n && !jn_auth_allowed(jn_broker_auth(a->broker), p, JN_PERM_PUBLISH, subject, n)) {
            code = JN_AMQP_ACCESS_REFUSED;
            goto out;
        }
        build_headers(rb, m, false);
        rec.headers = rb->h;
        rec.header_count = rb->n;
        jn_publish_result_t pr;
        if (n && jn_broker_publish(a->broker, subject, n, &rec, 1, -1, &pr) == 0) {
            res->routed += s->forwarded;
            res->wait_stream = pr.stream;
            res->wait_part = (uint32_t)pr.partition;
            res->wait_off = pr.offset;
        } else if (n) {
            res->errors++;
        }
        rb->n = 0;
        rb->used = 0;
        rb->need_raw = false;
    }
    if (s->n && m->dead_lettered && (m->props->flags & JN_AMQP_P_HEADERS)) {
        /* RabbitMQ drops a dead-lettered message where it would close an
         * automatic cycle (deadletter.h); other queues still get it. */
        int w = 0;
        for (int i = 0; i < s->n; i++)
            if (!jn_amqp_dead_letter_cycle(m->props->headers.p, m->props->headers.len, s->names[i]))
                s->names[w++] = s->names[i];
        s->n = w;
    }
    if (s->n) {
        build_headers(rb, m, true);
        rec.headers = rb->h;
        rec.header_count = rb->n;
        for (int i = 0; i < s->n; i++) {
            jn_queue_t *q = jn_queue_find(a->broker, s->names[i]);
            if (!q)
                continue;
            int64_t id = jn_queue_enqueue(q, &rec, prio);
            if (id >= 0) {
                res->routed++;
                if (jn_queue_options(q)->durable && wait_add(res, q, id) < 0)
                    res->errors++; /* no memory to wait on it: nack rather than confirm early */
            } else if (id == JN_ETOOBIG) {
                res->rejected++;
            } else {
                res->errors++;
            }
        }
    }
out:
    free(s);
    free(rb);
    return code;
}

/* ---- dead letters ---- */

static void on_dead_letter(jn_queue_t *q, const jn_record_t *rec, const char *reason, void *arg)
{
    jn_amqp_t *a = arg;
    const jn_queue_opts_t *o = jn_queue_options(q);
    if (!o->dead_letter_target)
        return;
    amqp_exchange_t *x = jn__amqp_exchange_find(a, (const uint8_t *)o->dead_letter_target, strlen(o->dead_letter_target));
    if (!x)
        return;
    jn_amqp_props_t pr;
    jn_amqp_str_t ex, key;
    jn_buf_t tbl, h2;
    jn_buf_init(&tbl, 1u << 20);
    jn_buf_init(&h2, 1u << 20);
    jn__amqp_record_props(rec, &pr, &tbl, &ex, &key);
    jn_amqp_death_t d = {
        .queue = jn_queue_name(q),
        .reason = reason,
        .exchange = ex.p ? ex.p : (const uint8_t *)"",
        .exchange_len = ex.len,
        .routing_key = key.p ? key.p : (const uint8_t *)"",
        .routing_key_len = key.len,
        .expiration = (pr.flags & JN_AMQP_P_EXPIRATION) ? pr.expiration.p : NULL,
        .expiration_len = (pr.flags & JN_AMQP_P_EXPIRATION) ? pr.expiration.len : 0,
        .time_s = (int64_t)time(NULL),
    };
    const uint8_t *old = (pr.flags & JN_AMQP_P_HEADERS) ? pr.headers.p : NULL;
    size_t old_len = (pr.flags & JN_AMQP_P_HEADERS) ? pr.headers.len : 0;
    if (jn_amqp_dead_letter_headers(&h2, old, old_len, &d) == 0) {
        pr.flags |= JN_AMQP_P_HEADERS;
        pr.headers = (jn_amqp_str_t){h2.data, (uint32_t)h2.len};
    } else {
        jn_warn("amqp: %s: cannot add x-death to a dead letter; sent without it", jn_queue_name(q));
    }
    /* Its own expiration does not follow it (kept in x-death as
     * original-expiration): it would expire again where it goes. */
    pr.flags &= (uint16_t)~JN_AMQP_P_EXPIRATION;
    const char *dk = o->dead_letter_key;
    char k[AMQP_NAME_MAX + 1];
    if (dk) {
        snprintf(k, sizeof k, "%s", dk);
    } else {
        size_t kl = key.len > AMQP_NAME_MAX ? AMQP_NAME_MAX : key.len;
        memcpy(k, key.p ? (const char *)key.p : "", kl);
        k[kl] = 0;
    }
    amqp_msg_t m = {
        .exchange = x->name,
        .exchange_len = strlen(x->name),
        .key = k,
        .key_len = strlen(k),
        .props = &pr,
        .body = rec->value,
        .body_len = rec->value_len > 0 ? (size_t)rec->value_len : 0,
        .dead_lettered = true,
    };
    amqp_route_result_t res;
    jn_principal_t admin = {.admin = true};
    (void)jn__amqp_publish(a, x, &m, &admin, &res);
    jn__amqp_route_result_free(&res);
    jn_buf_free(&tbl);
    jn_buf_free(&h2);
}

/* ---- setup and replay ---- */

static void replay_exchange(const char *key, json_t *v, void *arg)
{
    jn_amqp_t *a = arg;
    const char *name = key + strlen("amqp/x/");
    int t = -1;
    const char *ts = json_string_value(json_object_get(v, "type"));
    if (ts)
        t = parse_type((const uint8_t *)ts, strlen(ts));
    if (t < 0 || jn__amqp_exchange_find(a, (const uint8_t *)name, strlen(name)))
        return;
    amqp_exchange_t *x = exchange_add(a, name, (enum amqp_xtype)t);
    if (!x)
        return;
    x->durable = true;
    x->auto_delete = json_is_true(json_object_get(v, "auto_delete"));
    x->internal = json_is_true(json_object_get(v, "internal"));
    const char *alt = json_string_value(json_object_get(v, "alternate"));
    if (alt)
        x->alternate = strdup(alt);
    if (!hex_decode(json_string_value(json_object_get(v, "args")), &x->args, &x->args_len))
        jn_warn("amqp: exchange %s: bad stored arguments", name);
}

static void replay_binding(const char *key, json_t *v, void *arg)
{
    jn_amqp_t *a = arg;
    const char *src = json_string_value(json_object_get(v, "source"));
    const char *dest = json_string_value(json_object_get(v, "dest"));
    const char *rk = json_string_value(json_object_get(v, "key"));
    bool to_ex = json_is_true(json_object_get(v, "to_exchange"));
    if (!src || !dest || !rk)
        return;
    amqp_exchange_t *x = jn__amqp_exchange_find(a, (const uint8_t *)src, strlen(src));
    if (!x || (to_ex ? !jn__amqp_exchange_find(a, (const uint8_t *)dest, strlen(dest)) : !jn_queue_find(a->broker, dest)))
        return; /* an end is gone: the binding went with it */
    uint8_t *args;
    uint32_t alen;
    if (!hex_decode(json_string_value(json_object_get(v, "args")), &args, &alen))
        return;
    if (binding_add(a, x, to_ex, dest, rk, args, alen, false, false) == 0) {
        x->bindings->stored = true;
        snprintf(x->bindings->stored_key, sizeof x->bindings->stored_key, "%s", key);
    }
    free(args);
}

int jn__amqp_exchanges_init(jn_amqp_t *a)
{
    static const struct {
        const char *name;
        enum amqp_xtype t;
    } builtin[] = {{"", XT_DIRECT},         {"amq.direct", XT_DIRECT},   {"amq.fanout", XT_FANOUT},
                   {"amq.topic", XT_TOPIC}, {"amq.headers", XT_HEADERS}, {"amq.match", XT_HEADERS}};
    for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++) {
        amqp_exchange_t *x = exchange_add(a, builtin[i].name, builtin[i].t);
        if (!x)
            return JN_ENOMEM;
        x->durable = true;
        x->builtin = true;
    }
    amqp_timers_t *tm = calloc(1, sizeof *tm);
    if (!tm)
        return JN_ENOMEM;
    tm->door = a;
    uv_timer_init(a->loop, &tm->flush);
    uv_timer_init(a->loop, &tm->commit);
    tm->flush.data = tm;
    tm->commit.data = tm;
    tm->open = 2;
    a->timers = tm;
    uv_timer_start(&tm->commit, timers_commit_cb, a->cfg.commit_interval_ms, a->cfg.commit_interval_ms);
    uv_unref((uv_handle_t *)&tm->commit);
    jn_broker_meta_each(a->broker, "amqp/x/", replay_exchange, a);
    jn_broker_meta_each(a->broker, "amqp/b/", replay_binding, a);
    jn_queue_set_dead_letter_handler(a->broker, on_dead_letter, a);
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    amqp_timers_t *tm = h->data;
    if (--tm->open == 0)
        free(tm);
}

void jn__amqp_exchanges_free(jn_amqp_t *a)
{
    if (a->timers) {
        jn_queue_set_dead_letter_handler(a->broker, NULL, NULL);
    }
    while (a->exchanges)
        exchange_unlink_free(a, a->exchanges, false);
    if (a->timers) {
        uv_close((uv_handle_t *)&a->timers->flush, timer_closed);
        uv_close((uv_handle_t *)&a->timers->commit, timer_closed);
        a->timers = NULL;
    }
}
