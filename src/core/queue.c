/* queue.c - queues: competing consumers with acks on the log (queue.h).
 *
 * A queue's messages are records of an internal stream ("__q.<name>", one
 * partition per priority level); this file keeps only what the log cannot:
 * per partition a head (everything below is settled), a read position
 * (everything from it on is ready and never delivered), the settled set
 * above the head and the requeued set, both as sorted arrays of offset
 * ranges, plus a hash of unacked messages. Ranges make the common cases
 * O(1) in memory: acks in order move the head; a stuck message followed by
 * a million acks is one range.
 *
 * Invariants per partition:  head <= read <= end of the stream;
 *   every offset in [head, read) is exactly one of: settled, unacked,
 *   requeued; every offset >= read is ready and was never delivered.
 * So ready = (end - read) + |requeued|, and nothing at or above read is
 * ever settled except by advancing read.
 *
 * ACK LOG FORMAT (<data>/queues/<dir>/acks/0, a plog of 1-record batches)
 *
 *   Each record's key is one byte, its value big-endian binary:
 *
 *   'S' settle:     u8 nparts, nparts x be64 read position,
 *                   then N x (u8 partition, be64 lo, be64 hi): offsets
 *                   [lo, hi) settled (acked, dead-lettered, dropped,
 *                   expired or purged).
 *   'C' checkpoint: u8 nparts, nparts x (be64 head, be64 read),
 *                   then N x (u8 partition, be64 lo, be64 hi): the whole
 *                   settled set above the heads.
 *
 *   One 'S' record is written per loop iteration in which something was
 *   settled or delivered (the uv_prepare handle), earlier if the pending
 *   entries reach Q_PEND_MAX. A checkpoint is written after Q_CKPT_RECORDS
 *   records or Q_CKPT_BYTES bytes, and at close; it starts a new segment,
 *   and the segments before the previous checkpoint are deleted then (the
 *   previous one, written long before, is durable by the time the next is
 *   written under every fsync policy that promises anything).
 *
 * REPLAY RULE
 *
 *   Read the ack log from its start: a 'C' replaces the state, an 'S' adds
 *   its ranges to the settled set and raises the read positions. Then clamp
 *   to the stream (head >= start offset, read <= end offset), and every
 *   offset in [head, read) that is not settled becomes requeued: it was
 *   delivered and not settled, so it is delivered again, with redelivered
 *   set. Nothing settled comes back; nothing unsettled is lost.
 *
 * DELIVERY
 *
 *   A uv_check handle (with a uv_idle one so that the poll does not block
 *   while work remains) runs each queue on the work list: up to Q_ROUND_MSGS
 *   deliveries or Q_ROUND_BYTES per queue per iteration, reading batches
 *   with jn_plog_read into a per-queue cache. Highest priority partition
 *   first, requeued before new within a partition; consumers by priority,
 *   round robin within one priority. When no consumer can take or nothing is
 *   ready, the queue leaves the list; when the list is empty the handles
 *   stop. Callbacks may ack, nack, cancel, consume or delete: a busy count
 *   defers freeing consumers and the queue until the round ends.
 */
#include "queue.h"
#include "queue_int.h"
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

#define Q_NAME_MAX 255
#define Q_PARTS_MAX 10
#define Q_READ_BYTES ((size_t)64 * 1024) /* one cache fill */
#define Q_ROUND_MSGS 256                 /* deliveries per queue per iteration */
#define Q_ROUND_BYTES ((size_t)1 << 20)
#define Q_PEND_MAX ((size_t)256 * 1024)  /* settle entries buffered before an early write */
#define Q_CKPT_RECORDS 1024
#define Q_CKPT_BYTES ((uint64_t)1 << 20)
#define Q_RANGES_MAX ((size_t)1 << 24)
#define Q_HASH_MAX ((size_t)1 << 24)
#define Q_MAINTAIN_MS 1000
#define Q_EXPIRE_PER_PASS 10000
#define Q_ENTRY 17                       /* u8 partition, be64 lo, be64 hi */
#define Q_OFFSET_MASK (((int64_t)1 << 56) - 1)
#define META_QUEUE_PREFIX "queue/"
#define QSTREAM_PREFIX "__q."

/* ---- range sets ---- */

typedef struct qrange {
    int64_t lo, hi; /* [lo, hi) */
} qrange_t;

typedef struct rset {
    qrange_t *r; /* sorted, disjoint, never adjacent */
    size_t n, cap;
    int64_t total; /* offsets covered */
} rset_t;

typedef struct qread {
    jn_buf_t buf;
    jn_batch_iter_t it; /* the record's headers live here */
    jn_record_t rec;
} qread_t;

typedef struct qpart {
    jn_plog_t *log;      /* the stream partition (owned by the stream) */
    int64_t head;
    int64_t read;
    int64_t read_logged; /* read position the ack log last recorded */
    rset_t settled;      /* settled offsets in (head, read) */
    rset_t requeued;     /* offsets in [head, read) to deliver again */
} qpart_t;

typedef struct qmsg {
    int64_t id;
    uint32_t size;       /* payload bytes, for the byte limit */
    jn_qconsumer_t *c;   /* NULL: owned by nobody (get, keep_unacked) */
    jn_list_t cnode;     /* on c->unacked */
    struct qmsg *hnext;
} qmsg_t;

struct jn_qconsumer {
    jn_queue_t *q;
    jn_qconsumer_opts_t o;
    uint64_t seq;      /* arrival order (single active consumer) */
    uint32_t nunacked;
    bool stalled;      /* refused a delivery: skipped until resume */
    bool gone;         /* cancelled; freed once the queue is not busy */
    jn_list_t node;    /* on q->consumers, or q->zombies once gone */
    jn_list_t unacked; /* qmsg_t.cnode */
};

typedef struct qhandles {
    uv_check_t check;     /* delivery rounds */
    uv_idle_t idle;       /* keeps the poll from blocking while work remains */
    uv_prepare_t prepare; /* writes the ack logs once per iteration */
    uv_timer_t timer;     /* maintenance */
    int open;
} qhandles_t;

struct jn_qreg {
    jn_broker_t *b;
    jn_queue_t **qs; /* sorted by name */
    size_t n, cap;
    jn_qdeadletter_cb dl;
    void *dlarg;
    jn_list_t work;  /* queues with deliveries to try */
    jn_list_t dirty; /* queues with ack-log writes pending */
    qhandles_t *h;
};

struct jn_queue {
    jn_broker_t *b;
    char name[Q_NAME_MAX + 1];
    char dir[64];                       /* directory name under <data>/queues */
    char sname[JN_STREAM_NAME_MAX + 1]; /* the stream */
    jn_queue_opts_t o;                  /* owned strings and arguments */
    jn_stream_t *s;
    uint32_t nparts;
    qpart_t parts[Q_PARTS_MAX];
    jn_plog_t *acks;
    char *qdir;                         /* <data>/queues/<dir> */

    qmsg_t **ht;                        /* unacked by id, chained */
    size_t htcap, nunacked;

    jn_list_t consumers; /* by priority, highest first; rotated within one */
    jn_list_t zombies;
    uint32_t nconsumers;
    uint64_t cseq;
    jn_qconsumer_t *active; /* single active consumer */
    bool exclusive;
    bool had_consumer;
    int64_t last_used;
    int64_t ready_bytes;

    /* sequential read cache (delivery rounds only) */
    jn_buf_t cbuf;
    int cpart;           /* partition cached, -1 none */
    size_t cpos;         /* next batch in cbuf */
    bool citer;          /* cit holds a batch being iterated */
    int64_t cnext;       /* offsets below this were passed */
    jn_batch_iter_t cit;
    qread_t rread;       /* requeued deliveries */
    qread_t gread;       /* jn_queue_get */
    qread_t dread;       /* dead-lettering */
    bool dread_busy;

    jn_buf_t pend;       /* settle entries not yet in the ack log */
    jn_buf_t vbuf, wbuf; /* ack record value, batch */
    int64_t ckpt_off;    /* offset of the last checkpoint, -1 none */
    uint32_t since_records;
    uint64_t since_bytes;

    jn_list_t wnode;     /* on reg->work */
    jn_list_t dnode;     /* on reg->dirty */
    int busy;
    bool deleted;
    bool own_ttl; /* may hold messages with JN_QUEUE_TTL_HEADER: the
                   * maintenance pass looks at the heads (set at enqueue
                   * and open, cleared when the queue is empty) */
};

static void q_free(jn_queue_t *q);
static void q_kick(jn_queue_t *q);
static void start_handles(jn_qreg_t *reg);

/* ---- range sets ---- */

static void rset_free(rset_t *s)
{
    free(s->r);
    memset(s, 0, sizeof *s);
}

/* First range with hi >= x (ranges touching x included). */
static size_t rset_lower(const rset_t *s, int64_t x)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->r[mid].hi < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Adds [lo, hi), merging with what it overlaps or touches. */
static int rset_add(rset_t *s, int64_t lo, int64_t hi)
{
    if (lo >= hi)
        return 0;
    size_t i = rset_lower(s, lo);
    size_t j = i;
    int64_t nlo = lo, nhi = hi, removed = 0;
    while (j < s->n && s->r[j].lo <= hi) {
        if (s->r[j].lo < nlo)
            nlo = s->r[j].lo;
        if (s->r[j].hi > nhi)
            nhi = s->r[j].hi;
        removed += s->r[j].hi - s->r[j].lo;
        j++;
    }
    if (j == i) {
        if (s->n == s->cap) {
            size_t ncap = s->cap ? s->cap * 2 : 8;
            if (ncap > Q_RANGES_MAX)
                return JN_ETOOBIG;
            qrange_t *nr = realloc(s->r, ncap * sizeof *nr);
            if (!nr)
                return JN_ENOMEM;
            s->r = nr;
            s->cap = ncap;
        }
        memmove(&s->r[i + 1], &s->r[i], (s->n - i) * sizeof *s->r);
        s->n++;
    } else if (j > i + 1) {
        memmove(&s->r[i + 1], &s->r[j], (s->n - j) * sizeof *s->r);
        s->n -= j - i - 1;
    }
    s->r[i].lo = nlo;
    s->r[i].hi = nhi;
    s->total += (nhi - nlo) - removed;
    return 0;
}

static bool rset_contains(const rset_t *s, int64_t x)
{
    size_t i = rset_lower(s, x + 1);
    return i < s->n && s->r[i].lo <= x && x < s->r[i].hi;
}

static void rset_remove_first(rset_t *s)
{
    s->total -= s->r[0].hi - s->r[0].lo;
    memmove(&s->r[0], &s->r[1], (s->n - 1) * sizeof *s->r);
    s->n--;
}

static bool rset_pop_min(rset_t *s, int64_t *x)
{
    if (s->n == 0)
        return false;
    *x = s->r[0].lo++;
    s->total--;
    if (s->r[0].lo == s->r[0].hi)
        rset_remove_first(s); /* subtracts nothing: the range is empty */
    return true;
}

/* Drops everything below |x| and at or above |y|. */
static void rset_clip(rset_t *s, int64_t x, int64_t y)
{
    while (s->n && s->r[0].hi <= x)
        rset_remove_first(s);
    if (s->n && s->r[0].lo < x) {
        s->total -= x - s->r[0].lo;
        s->r[0].lo = x;
    }
    while (s->n && s->r[s->n - 1].lo >= y) {
        s->total -= s->r[s->n - 1].hi - s->r[s->n - 1].lo;
        s->n--;
    }
    if (s->n && s->r[s->n - 1].hi > y) {
        s->total -= s->r[s->n - 1].hi - y;
        s->r[s->n - 1].hi = y;
    }
}

/* ---- small helpers ---- */

static jn_qreg_t *reg_of(const jn_queue_t *q) { return q->b->queues; }
static int64_t now_ms(const jn_queue_t *q) { return jn_clock_now(&q->b->clock); }

static int queue_dir(const jn_broker_t *b, const char *dir, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/queues/%s", b->data_dir, dir);
    return (n < 0 || (size_t)n >= outlen) ? JN_EINVAL : 0;
}

static int name_validate(const char *name)
{
    if (!name)
        return JN_EINVAL;
    size_t len = strnlen(name, Q_NAME_MAX + 1);
    if (len == 0 || len > Q_NAME_MAX)
        return JN_EINVAL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c > 0x7e || c == '/')
            return JN_EINVAL;
    }
    return 0;
}

/* Names that can be a directory and a stream name as they are. */
static bool name_plain(const char *name)
{
    size_t len = strlen(name);
    if (len > 40 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool dir_taken(const jn_qreg_t *reg, const char *dir)
{
    for (size_t i = 0; i < reg->n; i++)
        if (strcmp(reg->qs[i]->dir, dir) == 0)
            return true;
    return false;
}

/* Picks the directory and stream names of a new queue: the name itself when
 * it is plain, else "h.<hash>"; never one in use. */
static int pick_ids(jn_broker_t *b, const char *name, char *dir, size_t dlen, char *sname, size_t slen)
{
    uint64_t h = jn_fnv1a(name, strlen(name));
    for (int k = -1; k < 64; k++) {
        int n = k < 0 ? (name_plain(name) ? snprintf(dir, dlen, "%s", name) : -1)
                      : snprintf(dir, dlen, "h.%016llx", (unsigned long long)(h + (uint64_t)k));
        if (n < 0 || (size_t)n >= dlen)
            continue;
        n = snprintf(sname, slen, QSTREAM_PREFIX "%s", dir);
        if (n < 0 || (size_t)n >= slen)
            continue;
        if (!jn_broker_stream_find(b, sname, strlen(sname)) && !dir_taken(b->queues, dir))
            return 0;
    }
    return JN_EEXIST;
}

/* ---- options ---- */

void jn_queue_opts_default(jn_queue_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->durable = true;
    o->max_length = -1;
    o->max_length_bytes = -1;
    o->overflow = JN_QUEUE_DROP_HEAD;
    o->message_ttl_ms = -1;
    o->expires_ms = -1;
    o->fsync = JN_FSYNC_INTERVAL;
}

static int opts_validate(const jn_queue_opts_t *o)
{
    if (o->max_length < -1 || o->max_length_bytes < -1 || o->message_ttl_ms < -1 || o->expires_ms < -1)
        return JN_EINVAL;
    if (o->overflow != JN_QUEUE_DROP_HEAD && o->overflow != JN_QUEUE_REJECT_PUBLISH)
        return JN_EINVAL;
    if (o->fsync != JN_FSYNC_NEVER && o->fsync != JN_FSYNC_INTERVAL && o->fsync != JN_FSYNC_ALWAYS)
        return JN_EINVAL;
    if ((o->dead_letter_target && strlen(o->dead_letter_target) > 1024) ||
        (o->dead_letter_key && strlen(o->dead_letter_key) > 1024))
        return JN_EINVAL;
    return 0;
}

static void opts_free(jn_queue_opts_t *o)
{
    free(o->dead_letter_target);
    free(o->dead_letter_key);
    json_decref(o->arguments);
    o->dead_letter_target = o->dead_letter_key = NULL;
    o->arguments = NULL;
}

static int opts_copy(jn_queue_opts_t *dst, const jn_queue_opts_t *src)
{
    *dst = *src;
    dst->dead_letter_target = src->dead_letter_target ? strdup(src->dead_letter_target) : NULL;
    dst->dead_letter_key = src->dead_letter_key ? strdup(src->dead_letter_key) : NULL;
    dst->arguments = src->arguments ? json_deep_copy(src->arguments) : NULL;
    if ((src->dead_letter_target && !dst->dead_letter_target) ||
        (src->dead_letter_key && !dst->dead_letter_key) || (src->arguments && !dst->arguments)) {
        opts_free(dst);
        return JN_ENOMEM;
    }
    return 0;
}

static bool str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* What a redeclaration must match (AMQP's equivalence). The raw arguments
 * are not compared: the door maps the ones that matter to the fields. */
static bool opts_equal(const jn_queue_opts_t *a, const jn_queue_opts_t *b)
{
    return a->durable == b->durable && a->auto_delete == b->auto_delete && a->max_length == b->max_length &&
           a->max_length_bytes == b->max_length_bytes && a->overflow == b->overflow &&
           a->message_ttl_ms == b->message_ttl_ms && a->expires_ms == b->expires_ms &&
           str_eq(a->dead_letter_target, b->dead_letter_target) &&
           str_eq(a->dead_letter_key, b->dead_letter_key) && a->max_priority == b->max_priority &&
           a->single_active_consumer == b->single_active_consumer;
}

static const char *fsync_str(enum jn_fsync_policy p)
{
    return p == JN_FSYNC_ALWAYS ? "always" : p == JN_FSYNC_NEVER ? "never" : "interval";
}

static json_t *opts_json(const jn_queue_opts_t *o)
{
    json_t *j = json_pack("{s:b,s:b,s:I,s:I,s:s,s:I,s:I,s:I,s:b,s:s}", "durable", o->durable, "auto_delete",
                          o->auto_delete, "max_length", (json_int_t)o->max_length, "max_length_bytes",
                          (json_int_t)o->max_length_bytes, "overflow",
                          o->overflow == JN_QUEUE_REJECT_PUBLISH ? "reject-publish" : "drop-head",
                          "message_ttl_ms", (json_int_t)o->message_ttl_ms, "expires_ms",
                          (json_int_t)o->expires_ms, "max_priority", (json_int_t)o->max_priority,
                          "single_active_consumer", o->single_active_consumer, "fsync", fsync_str(o->fsync));
    if (!j)
        return NULL;
    json_object_set_new(j, "dead_letter_target",
                        o->dead_letter_target ? json_string(o->dead_letter_target) : json_null());
    json_object_set_new(j, "dead_letter_key", o->dead_letter_key ? json_string(o->dead_letter_key) : json_null());
    json_object_set(j, "arguments", o->arguments ? o->arguments : json_null());
    return j;
}

static int64_t jint(const json_t *j, const char *k, int64_t dflt)
{
    const json_t *v = json_object_get(j, k);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

/* Definition JSON -> options (strings copied). JN_ECORRUPT when invalid. */
static int opts_from_json(const json_t *j, jn_queue_opts_t *o)
{
    jn_queue_opts_default(o);
    if (!json_is_object(j))
        return JN_ECORRUPT;
    o->durable = json_is_true(json_object_get(j, "durable"));
    o->auto_delete = json_is_true(json_object_get(j, "auto_delete"));
    o->max_length = jint(j, "max_length", -1);
    o->max_length_bytes = jint(j, "max_length_bytes", -1);
    const char *ov = json_string_value(json_object_get(j, "overflow"));
    o->overflow = ov && strcmp(ov, "reject-publish") == 0 ? JN_QUEUE_REJECT_PUBLISH : JN_QUEUE_DROP_HEAD;
    o->message_ttl_ms = jint(j, "message_ttl_ms", -1);
    o->expires_ms = jint(j, "expires_ms", -1);
    int64_t mp = jint(j, "max_priority", 0);
    o->max_priority = (uint8_t)(mp < 0 ? 0 : mp > 255 ? 255 : mp);
    o->single_active_consumer = json_is_true(json_object_get(j, "single_active_consumer"));
    const char *fs = json_string_value(json_object_get(j, "fsync"));
    o->fsync = fs && strcmp(fs, "always") == 0 ? JN_FSYNC_ALWAYS
               : fs && strcmp(fs, "never") == 0 ? JN_FSYNC_NEVER
                                                : JN_FSYNC_INTERVAL;
    jn_queue_opts_t tmp = *o;
    tmp.dead_letter_target = (char *)json_string_value(json_object_get(j, "dead_letter_target"));
    tmp.dead_letter_key = (char *)json_string_value(json_object_get(j, "dead_letter_key"));
    json_t *args = json_object_get(j, "arguments");
    tmp.arguments = json_is_null(args) ? NULL : args;
    if (opts_validate(&tmp) < 0)
        return JN_ECORRUPT;
    return opts_copy(o, &tmp);
}

static int persist_def(jn_queue_t *q, bool remove)
{
    char key[sizeof META_QUEUE_PREFIX + Q_NAME_MAX];
    int klen = snprintf(key, sizeof key, META_QUEUE_PREFIX "%s", q->name);
    if (klen < 0 || (size_t)klen >= sizeof key)
        return JN_EINVAL;
    if (remove)
        return jn__broker_log_write(q->b, q->b->meta, key, (size_t)klen, NULL, 0, true, true);
    json_t *j = opts_json(&q->o);
    if (!j)
        return JN_ENOMEM;
    json_object_set_new(j, "stream", json_string(q->sname));
    json_object_set_new(j, "dir", json_string(q->dir));
    char *txt = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!txt)
        return JN_ENOMEM;
    size_t len = strlen(txt);
    int rc = len > JN_BROKER_META_VALUE_MAX
                 ? JN_ETOOBIG
                 : jn__broker_log_write(q->b, q->b->meta, key, (size_t)klen, txt, len, false, true);
    free(txt);
    return rc;
}

/* ---- registry ---- */

static size_t reg_search(const jn_qreg_t *reg, const char *name, bool *found)
{
    size_t lo = 0, hi = reg->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(reg->qs[mid]->name, name);
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

static int reg_insert(jn_qreg_t *reg, jn_queue_t *q)
{
    bool found;
    size_t i = reg_search(reg, q->name, &found);
    if (found)
        return JN_EEXIST;
    if (reg->n == reg->cap) {
        size_t ncap = reg->cap ? reg->cap * 2 : 16;
        jn_queue_t **nq = realloc(reg->qs, ncap * sizeof *nq);
        if (!nq)
            return JN_ENOMEM;
        reg->qs = nq;
        reg->cap = ncap;
    }
    memmove(&reg->qs[i + 1], &reg->qs[i], (reg->n - i) * sizeof *reg->qs);
    reg->qs[i] = q;
    reg->n++;
    return 0;
}

static void reg_remove(jn_qreg_t *reg, jn_queue_t *q)
{
    bool found;
    size_t i = reg_search(reg, q->name, &found);
    if (!found || reg->qs[i] != q)
        return;
    memmove(&reg->qs[i], &reg->qs[i + 1], (reg->n - i - 1) * sizeof *reg->qs);
    reg->n--;
}

jn_queue_t *jn_queue_find(jn_broker_t *b, const char *name)
{
    if (!b || !b->queues || !name)
        return NULL;
    bool found;
    size_t i = reg_search(b->queues, name, &found);
    return found ? b->queues->qs[i] : NULL;
}

jn_queue_t *jn_queue_next(jn_broker_t *b, jn_queue_t *prev)
{
    if (!b || !b->queues)
        return NULL;
    jn_qreg_t *reg = b->queues;
    size_t i = 0;
    if (prev) {
        bool found;
        i = reg_search(reg, prev->name, &found);
        if (found)
            i++;
    }
    return i < reg->n ? reg->qs[i] : NULL;
}

void jn_queue_set_dead_letter_handler(jn_broker_t *b, jn_qdeadletter_cb cb, void *arg)
{
    if (!b || !b->queues)
        return;
    b->queues->dl = cb;
    b->queues->dlarg = arg;
}

/* ---- ack log ---- */

static void mark_dirty(jn_queue_t *q)
{
    if (!jn_list_linked(&q->dnode) && !q->deleted)
        jn_list_insert_tail(&reg_of(q)->dirty, &q->dnode);
}

static int64_t ack_append(jn_queue_t *q, uint8_t type)
{
    jn_record_t r;
    memset(&r, 0, sizeof r);
    r.key = &type;
    r.key_len = 1;
    r.value = q->vbuf.data ? q->vbuf.data : (const uint8_t *)"";
    r.value_len = (int32_t)q->vbuf.len;
    r.timestamp = now_ms(q);
    jn_batch_builder_t bb;
    jn_buf_reset(&q->wbuf);
    int rc = jn_batch_builder_begin(&bb, &q->wbuf);
    if (rc == 0)
        rc = jn_batch_builder_add(&bb, &r);
    if (rc == 0)
        rc = jn_batch_builder_finish(&bb);
    if (rc < 0)
        return rc;
    int64_t off = jn_plog_append(q->acks, q->wbuf.data, (size_t)rc);
    if (off >= 0) {
        q->since_records++;
        q->since_bytes += (uint64_t)rc;
    }
    return off;
}

static int put_entry(jn_buf_t *b, uint32_t p, int64_t lo, int64_t hi)
{
    int rc = jn_buf_put_u8(b, (uint8_t)p);
    if (rc == 0)
        rc = jn_buf_put_be64(b, (uint64_t)lo);
    if (rc == 0)
        rc = jn_buf_put_be64(b, (uint64_t)hi);
    return rc;
}

static int ack_flush(jn_queue_t *q);

/* Records [lo, hi) of |p| as settled in the pending ack-log entries,
 * extending the last entry when it ends where this starts. */
static void pend_add(jn_queue_t *q, uint32_t p, int64_t lo, int64_t hi)
{
    if (!q->acks)
        return;
    if (q->pend.len >= Q_ENTRY) {
        uint8_t *e = q->pend.data + q->pend.len - Q_ENTRY;
        if (e[0] == p && (int64_t)jn_load_be64(e + 9) == lo) {
            jn_store_be64(e + 9, (uint64_t)hi);
            return;
        }
    }
    if (q->pend.len + Q_ENTRY > Q_PEND_MAX)
        (void)ack_flush(q);
    if (put_entry(&q->pend, p, lo, hi) < 0)
        jn_error("queue %s: cannot buffer a settlement; it is lost at a crash", q->name);
    mark_dirty(q);
}

static int ack_checkpoint(jn_queue_t *q);

/* Writes the pending settlements and read positions as one 'S' record. */
static int ack_flush(jn_queue_t *q)
{
    if (!q->acks)
        return 0;
    bool moved = false;
    for (uint32_t p = 0; p < q->nparts; p++)
        moved |= q->parts[p].read != q->parts[p].read_logged;
    if (q->pend.len == 0 && !moved)
        return 0;
    jn_buf_reset(&q->vbuf);
    int rc = jn_buf_put_u8(&q->vbuf, (uint8_t)q->nparts);
    for (uint32_t p = 0; rc == 0 && p < q->nparts; p++)
        rc = jn_buf_put_be64(&q->vbuf, (uint64_t)q->parts[p].read);
    if (rc == 0)
        rc = jn_buf_append(&q->vbuf, q->pend.data, q->pend.len);
    int64_t off = rc < 0 ? rc : ack_append(q, 'S');
    if (off < 0) {
        jn_error("queue %s: ack log write failed: %s", q->name, jn_strerror((int)off));
        return (int)off;
    }
    jn_buf_reset(&q->pend);
    for (uint32_t p = 0; p < q->nparts; p++)
        q->parts[p].read_logged = q->parts[p].read;
    rc = jn_plog_flush(q->acks);
    if (q->since_records >= Q_CKPT_RECORDS || q->since_bytes >= Q_CKPT_BYTES)
        (void)ack_checkpoint(q);
    return rc;
}

/* Writes the whole state as a 'C' record at the start of a new segment,
 * then deletes ack-log segments before the previous checkpoint and stream
 * segments below the heads. */
static int ack_checkpoint(jn_queue_t *q)
{
    if (!q->acks)
        return 0;
    int rc = jn_plog_roll(q->acks);
    if (rc < 0)
        return rc;
    jn_buf_reset(&q->vbuf);
    rc = jn_buf_put_u8(&q->vbuf, (uint8_t)q->nparts);
    for (uint32_t p = 0; rc == 0 && p < q->nparts; p++) {
        rc = jn_buf_put_be64(&q->vbuf, (uint64_t)q->parts[p].head);
        if (rc == 0)
            rc = jn_buf_put_be64(&q->vbuf, (uint64_t)q->parts[p].read);
    }
    for (uint32_t p = 0; rc == 0 && p < q->nparts; p++) {
        const rset_t *s = &q->parts[p].settled;
        for (size_t i = 0; rc == 0 && i < s->n; i++)
            rc = put_entry(&q->vbuf, p, s->r[i].lo, s->r[i].hi);
    }
    int64_t off = rc < 0 ? rc : ack_append(q, 'C');
    if (off < 0) {
        jn_error("queue %s: checkpoint failed: %s", q->name, jn_strerror((int)off));
        return (int)off;
    }
    jn_buf_reset(&q->pend);
    for (uint32_t p = 0; p < q->nparts; p++)
        q->parts[p].read_logged = q->parts[p].read;
    rc = jn_plog_flush(q->acks);
    if (q->ckpt_off >= 0)
        (void)jn_plog_delete_before(q->acks, q->ckpt_off);
    q->ckpt_off = off;
    q->since_records = 0;
    q->since_bytes = 0;
    for (uint32_t p = 0; p < q->nparts; p++)
        (void)jn_plog_delete_before(q->parts[p].log, q->parts[p].head);
    return rc;
}

int jn__queue_checkpoint(jn_queue_t *q)
{
    return ack_checkpoint(q);
}

/* ---- settle state ---- */

/* Marks [lo, hi) of |p| settled (in memory, and in the ack log when |log|).
 * The offsets must be below read and neither unacked nor requeued. */
static void settle_range(jn_queue_t *q, uint32_t p, int64_t lo, int64_t hi, bool log)
{
    qpart_t *qp = &q->parts[p];
    if (lo < qp->head)
        lo = qp->head;
    if (lo >= hi)
        return;
    if (rset_add(&qp->settled, lo, hi) < 0)
        jn_error("queue %s: settled set full; offsets %lld.. stay pending", q->name, (long long)lo);
    while (qp->settled.n && qp->settled.r[0].lo <= qp->head) {
        if (qp->settled.r[0].hi > qp->head)
            qp->head = qp->settled.r[0].hi;
        rset_remove_first(&qp->settled);
    }
    if (log)
        pend_add(q, p, lo, hi);
}

static void settle(jn_queue_t *q, uint32_t p, int64_t off)
{
    settle_range(q, p, off, off + 1, true);
}

static int64_t part_end(const qpart_t *qp) { return jn_plog_end_offset(qp->log); }

int64_t jn_queue_ready(const jn_queue_t *q)
{
    int64_t n = 0;
    for (uint32_t p = 0; q && p < q->nparts; p++)
        n += (part_end(&q->parts[p]) - q->parts[p].read) + q->parts[p].requeued.total;
    return n;
}

int64_t jn_queue_unacked(const jn_queue_t *q) { return q ? (int64_t)q->nunacked : 0; }
uint32_t jn_queue_consumer_count(const jn_queue_t *q) { return q ? q->nconsumers : 0; }
const char *jn_queue_name(const jn_queue_t *q) { return q->name; }
const jn_queue_opts_t *jn_queue_options(const jn_queue_t *q) { return &q->o; }

size_t jn__queue_tracked(const jn_queue_t *q)
{
    size_t n = q->nunacked;
    for (uint32_t p = 0; p < q->nparts; p++)
        n += q->parts[p].settled.n + q->parts[p].requeued.n;
    return n;
}

json_t *jn_queue_json(const jn_queue_t *q)
{
    json_t *j = opts_json(&q->o);
    if (!j)
        return NULL;
    json_object_set_new(j, "name", json_string(q->name));
    json_object_set_new(j, "ready", json_integer((json_int_t)jn_queue_ready(q)));
    json_object_set_new(j, "unacked", json_integer((json_int_t)q->nunacked));
    json_object_set_new(j, "consumers", json_integer((json_int_t)q->nconsumers));
    return j;
}

/* ---- unacked ---- */

static size_t hslot(const jn_queue_t *q, int64_t id)
{
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 29) & (q->htcap - 1);
}

static qmsg_t **unacked_ref(jn_queue_t *q, int64_t id)
{
    if (!q->htcap)
        return NULL;
    qmsg_t **pp = &q->ht[hslot(q, id)];
    while (*pp && (*pp)->id != id)
        pp = &(*pp)->hnext;
    return *pp ? pp : NULL;
}

static qmsg_t *unacked_add(jn_queue_t *q, int64_t id, uint32_t size, jn_qconsumer_t *c)
{
    if (q->nunacked >= q->htcap && q->htcap < Q_HASH_MAX) {
        size_t ncap = q->htcap ? q->htcap * 2 : 64;
        qmsg_t **nt = calloc(ncap, sizeof *nt);
        if (nt) {
            qmsg_t **old = q->ht;
            size_t ocap = q->htcap;
            q->ht = nt;
            q->htcap = ncap;
            for (size_t i = 0; i < ocap; i++) {
                qmsg_t *m = old[i];
                while (m) {
                    qmsg_t *next = m->hnext;
                    size_t s = hslot(q, m->id);
                    m->hnext = nt[s];
                    nt[s] = m;
                    m = next;
                }
            }
            free(old);
        } else if (!q->htcap) {
            return NULL;
        }
    }
    qmsg_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->id = id;
    m->size = size;
    m->c = c;
    jn_list_init(&m->cnode);
    if (c) {
        jn_list_insert_tail(&c->unacked, &m->cnode);
        c->nunacked++;
    }
    size_t s = hslot(q, id);
    m->hnext = q->ht[s];
    q->ht[s] = m;
    q->nunacked++;
    return m;
}

/* Unlinks |m| (found through |ref|) and frees it; its consumer may have
 * room again. */
static void unacked_remove(jn_queue_t *q, qmsg_t **ref)
{
    qmsg_t *m = *ref;
    *ref = m->hnext;
    q->nunacked--;
    if (m->c) {
        jn_list_remove(&m->cnode);
        m->c->nunacked--;
        if (!m->c->gone)
            q_kick(q);
    }
    free(m);
}

/* ---- reading ---- */

/* Finds the first record at or after |off| in the batches of |buf| from
 * byte |*pos| on, iterating with |it| (*iter says it holds a batch). */
static int scan_buf(jn_buf_t *buf, size_t *pos, bool *iter, jn_batch_iter_t *it, int64_t off, jn_record_t *rec,
                    int64_t *passed)
{
    for (;;) {
        if (!*iter) {
            if (*pos >= buf->len)
                return 0;
            jn_batch_info_t bi;
            int sz = jn_batch_parse(buf->data + *pos, buf->len - *pos, INT32_MAX, &bi);
            if (sz < 0)
                return JN_ECORRUPT;
            int rc = jn_batch_iter_init(it, buf->data + *pos, (size_t)sz, false);
            *pos += (size_t)sz;
            if (rc == JN_EUNSUPPORTED)
                continue; /* not written by a queue: its offsets are a gap */
            if (rc < 0)
                return JN_ECORRUPT;
            *iter = true;
        }
        int rc = jn_batch_iter_next(it, rec);
        if (rc == 0) {
            *iter = false;
            continue;
        }
        if (rc < 0)
            return JN_ECORRUPT;
        if (passed)
            *passed = rec->offset + 1;
        if (rec->offset >= off)
            return 1;
    }
}

/* Reads the record at |off| (or the first after it, when |off| is a gap)
 * into |r|. Returns 1, 0 when there is none, or an error. */
static int read_one(jn_plog_t *log, int64_t off, qread_t *r)
{
    jn_buf_reset(&r->buf);
    if (off >= jn_plog_end_offset(log))
        return 0;
    int n = jn_plog_read(log, off, 1, &r->buf);
    if (n <= 0)
        return n;
    size_t pos = 0;
    bool iter = false;
    return scan_buf(&r->buf, &pos, &iter, &r->it, off, &r->rec, NULL);
}

/* The sequential reader of delivery rounds: the record at |off| of |p|
 * from the cache, refilling it with one jn_plog_read when needed. */
static int cache_get(jn_queue_t *q, uint32_t p, int64_t off, jn_record_t *rec)
{
    for (int round = 0; round < 2; round++) {
        if (q->cpart == (int)p && q->cnext <= off) {
            int rc = scan_buf(&q->cbuf, &q->cpos, &q->citer, &q->cit, off, rec, &q->cnext);
            if (rc != 0) {
                if (rc < 0)
                    q->cpart = -1;
                return rc;
            }
        }
        q->cpart = -1;
        q->cpos = 0;
        q->citer = false;
        jn_buf_reset(&q->cbuf);
        if (off >= part_end(&q->parts[p]))
            return 0;
        int n = jn_plog_read(q->parts[p].log, off, Q_READ_BYTES, &q->cbuf);
        if (n <= 0)
            return n;
        q->cpart = (int)p;
        q->cnext = INT64_MIN;
    }
    return 0;
}

static uint32_t rec_size(const jn_record_t *rec)
{
    return rec->value_len > 0 ? (uint32_t)rec->value_len : 0;
}

/* ---- selecting and taking ready messages ---- */

/* The next ready message: highest partition first, requeued before new.
 * With |oldest|, lowest partition first (what overflow drops). */
static bool next_ready(const jn_queue_t *q, bool oldest, uint32_t *p, int64_t *off, bool *redel)
{
    for (uint32_t k = 0; k < q->nparts; k++) {
        uint32_t i = oldest ? k : q->nparts - 1 - k;
        const qpart_t *qp = &q->parts[i];
        if (qp->requeued.n) {
            *p = i;
            *off = qp->requeued.r[0].lo;
            *redel = true;
            return true;
        }
        if (qp->read < part_end(qp)) {
            *p = i;
            *off = qp->read;
            *redel = false;
            return true;
        }
    }
    return false;
}

/* Moves the message from ready to in-flight (or about to be settled). */
static void take(jn_queue_t *q, uint32_t p, int64_t off, bool redel, uint32_t size)
{
    qpart_t *qp = &q->parts[p];
    int64_t x;
    if (redel)
        (void)rset_pop_min(&qp->requeued, &x);
    else if (qp->read == off) {
        qp->read++;
        mark_dirty(q);
    }
    q->ready_bytes -= size;
}

/* Undoes take() for a refused delivery. */
static void untake(jn_queue_t *q, uint32_t p, int64_t off, bool redel, uint32_t size)
{
    qpart_t *qp = &q->parts[p];
    if (!redel && qp->read == off + 1)
        qp->read = off;
    else if (rset_add(&qp->requeued, off, off + 1) < 0)
        jn_error("queue %s: requeued set full; message %lld lost", q->name, (long long)off);
    q->ready_bytes += size;
}

/* A ready message whose record is missing (lost with an unsynced tail, or
 * a gap): settles [off, upto) silently. */
static void skip_missing(jn_queue_t *q, uint32_t p, int64_t off, bool redel, int64_t upto)
{
    qpart_t *qp = &q->parts[p];
    if (redel) {
        int64_t x;
        (void)rset_pop_min(&qp->requeued, &x);
        settle(q, p, off);
        return;
    }
    if (upto <= off)
        upto = part_end(qp) > off ? part_end(qp) : off + 1;
    if (upto > part_end(qp))
        upto = part_end(qp);
    qp->read = upto;
    settle_range(q, p, off, upto, true);
}

/* The message's own TTL (JN_QUEUE_TTL_HEADER), -1 when it has none or
 * the value is not 1 to 15 decimal digits (so that now - ttl cannot
 * overflow). */
static int64_t own_ttl(const jn_record_t *rec)
{
    static const size_t klen = sizeof JN_QUEUE_TTL_HEADER - 1;
    for (uint32_t i = 0; i < rec->header_count; i++) {
        const jn_header_t *h = &rec->headers[i];
        if (h->key_len != klen || memcmp(h->key, JN_QUEUE_TTL_HEADER, klen) != 0)
            continue;
        if (!h->value || h->value_len < 1 || h->value_len > 15)
            return -1;
        int64_t v = 0;
        for (int32_t j = 0; j < h->value_len; j++) {
            if (h->value[j] < '0' || h->value[j] > '9')
                return -1;
            v = v * 10 + (h->value[j] - '0');
        }
        return v;
    }
    return -1;
}

static bool is_expired(const jn_queue_t *q, const jn_record_t *rec, int64_t now)
{
    int64_t ttl = q->o.message_ttl_ms, own = own_ttl(rec);
    if (own >= 0 && (ttl < 0 || own < ttl))
        ttl = own;
    return ttl >= 0 && rec->timestamp < now - ttl;
}

static void dead_letter(jn_queue_t *q, const jn_record_t *rec, const char *reason)
{
    jn_qreg_t *reg = reg_of(q);
    if (!q->o.dead_letter_target || !reg->dl || !rec)
        return;
    q->busy++;
    reg->dl(q, rec, reason, reg->dlarg);
    q->busy--;
}

/* Reads a message for dead-lettering without clobbering one being
 * dead-lettered already (a handler may enqueue into this queue). */
static qread_t *dread_acquire(jn_queue_t *q)
{
    if (!q->dread_busy) {
        q->dread_busy = true;
        return &q->dread;
    }
    qread_t *r = calloc(1, sizeof *r);
    if (r)
        jn_buf_init(&r->buf, JN_BROKER_READ_MAX);
    return r;
}

static void dread_release(jn_queue_t *q, qread_t *r)
{
    if (r == &q->dread) {
        q->dread_busy = false;
        return;
    }
    if (r) {
        jn_buf_free(&r->buf);
        free(r);
    }
}

/* Dead-letters (or drops) message |off| of |p| and settles it. The message
 * must not be ready (taken) or must be unacked-removed already. */
static void dead_letter_at(jn_queue_t *q, uint32_t p, int64_t off, const char *reason)
{
    if (q->o.dead_letter_target && reg_of(q)->dl) {
        qread_t *r = dread_acquire(q);
        if (r && read_one(q->parts[p].log, off, r) == 1 && r->rec.offset == off)
            dead_letter(q, &r->rec, reason);
        dread_release(q, r);
    }
    if (!q->deleted)
        settle(q, p, off);
}

/* Drops the oldest ready message (overflow). False when none. */
static bool drop_oldest(jn_queue_t *q)
{
    uint32_t p;
    int64_t off;
    bool redel;
    if (!next_ready(q, true, &p, &off, &redel))
        return false;
    qread_t *r = dread_acquire(q);
    int rc = r ? read_one(q->parts[p].log, off, r) : JN_ENOMEM;
    if (rc < 0) {
        dread_release(q, r);
        jn_error("queue %s: reading the oldest message: %s", q->name, jn_strerror(rc));
        return false;
    }
    if (rc == 0 || r->rec.offset != off) {
        int64_t upto = rc == 1 ? r->rec.offset : part_end(&q->parts[p]);
        dread_release(q, r);
        skip_missing(q, p, off, redel, upto);
        return true;
    }
    take(q, p, off, redel, rec_size(&r->rec));
    dead_letter(q, &r->rec, "maxlen");
    dread_release(q, r);
    if (!q->deleted)
        settle(q, p, off);
    return true;
}

static void enforce_limits(jn_queue_t *q)
{
    while (!q->deleted && ((q->o.max_length >= 0 && jn_queue_ready(q) > q->o.max_length) ||
                           (q->o.max_length_bytes >= 0 && q->ready_bytes > q->o.max_length_bytes)))
        if (!drop_oldest(q))
            break;
}

/* ---- consumers ---- */

static bool eligible(const jn_queue_t *q, const jn_qconsumer_t *c)
{
    if (c->gone || c->stalled)
        return false;
    if (q->o.single_active_consumer && q->active != c)
        return false;
    return c->o.no_ack || c->o.prefetch == 0 || c->nunacked < c->o.prefetch;
}

static jn_qconsumer_t *pick_consumer(jn_queue_t *q)
{
    if (q->o.single_active_consumer)
        return q->active && eligible(q, q->active) ? q->active : NULL;
    jn_list_t *n;
    jn_list_foreach(n, &q->consumers) {
        jn_qconsumer_t *c = jn_container_of(n, jn_qconsumer_t, node);
        if (eligible(q, c))
            return c;
    }
    return NULL;
}

/* Round robin within one priority: |c| goes behind its equals. */
static void rotate(jn_queue_t *q, jn_qconsumer_t *c)
{
    jn_list_t *last = &c->node;
    for (jn_list_t *n = c->node.next; n != &q->consumers; n = n->next) {
        if (jn_container_of(n, jn_qconsumer_t, node)->o.priority != c->o.priority)
            break;
        last = n;
    }
    if (last != &c->node) {
        jn_list_remove(&c->node);
        jn_list_insert_head(last, &c->node);
    }
}

static void q_kick(jn_queue_t *q)
{
    jn_qreg_t *reg = reg_of(q);
    if (q->deleted || !q->nconsumers || !reg)
        return;
    if (!jn_list_linked(&q->wnode))
        jn_list_insert_tail(&reg->work, &q->wnode);
    start_handles(reg);
}

/* Requeues (or orphans, when |keep|) the unacked messages of |c|. */
static void release_unacked(jn_queue_t *q, jn_qconsumer_t *c, bool keep)
{
    while (!jn_list_empty(&c->unacked)) {
        qmsg_t *m = jn_container_of(c->unacked.next, qmsg_t, cnode);
        jn_list_remove(&m->cnode);
        m->c = NULL;
        c->nunacked--;
        if (keep)
            continue;
        qmsg_t **ref = unacked_ref(q, m->id);
        uint32_t p = (uint32_t)(m->id >> 56);
        int64_t off = m->id & Q_OFFSET_MASK;
        q->ready_bytes += m->size;
        if (ref)
            unacked_remove(q, ref);
        if (p < q->nparts && rset_add(&q->parts[p].requeued, off, off + 1) < 0)
            jn_error("queue %s: requeued set full; message %lld lost", q->name, (long long)off);
    }
}

/* Takes |c| out of the consumer list; freed later (zombies) or now. */
static void consumer_detach(jn_queue_t *q, jn_qconsumer_t *c, bool keep)
{
    release_unacked(q, c, keep);
    jn_list_remove(&c->node);
    c->gone = true;
    q->nconsumers--;
    if (c->o.exclusive)
        q->exclusive = false;
    if (q->active == c) {
        q->active = NULL;
        jn_list_t *n;
        jn_list_foreach(n, &q->consumers) {
            jn_qconsumer_t *o = jn_container_of(n, jn_qconsumer_t, node);
            if (!q->active || o->seq < q->active->seq)
                q->active = o;
        }
    }
    jn_list_insert_tail(&q->zombies, &c->node);
    q_kick(q);
}

static void free_zombies(jn_queue_t *q)
{
    while (!jn_list_empty(&q->zombies)) {
        jn_qconsumer_t *c = jn_container_of(q->zombies.next, jn_qconsumer_t, node);
        jn_list_remove(&c->node);
        free(c);
    }
}

/* Ends a section that held |q| busy: frees what was deferred. |q| may be
 * gone after this returns. */
static void q_release(jn_queue_t *q)
{
    if (--q->busy > 0)
        return;
    free_zombies(q);
    if (q->deleted)
        q_free(q);
}

static int64_t queue_remove(jn_queue_t *q);

int jn_queue_consume(jn_queue_t *q, const jn_qconsumer_opts_t *opts, jn_qconsumer_t **out)
{
    if (!q || !opts || !opts->deliver || !out)
        return JN_EINVAL;
    if (q->deleted)
        return JN_ECLOSED;
    if (q->exclusive || (opts->exclusive && q->nconsumers > 0))
        return JN_ESTATE;
    jn_qconsumer_t *c = calloc(1, sizeof *c);
    if (!c)
        return JN_ENOMEM;
    c->q = q;
    c->o = *opts;
    c->seq = q->cseq++;
    jn_list_init(&c->unacked);
    jn_list_t *n;
    jn_list_t *before = &q->consumers;
    jn_list_foreach(n, &q->consumers) {
        if (jn_container_of(n, jn_qconsumer_t, node)->o.priority < c->o.priority) {
            before = n;
            break;
        }
    }
    jn_list_insert_tail(before, &c->node);
    q->nconsumers++;
    q->had_consumer = true;
    if (opts->exclusive)
        q->exclusive = true;
    if (q->o.single_active_consumer && !q->active)
        q->active = c;
    q->last_used = now_ms(q);
    q_kick(q);
    *out = c;
    return 0;
}

void jn_qconsumer_cancel(jn_qconsumer_t *c, bool keep_unacked)
{
    if (!c || c->gone)
        return;
    jn_queue_t *q = c->q;
    q->busy++;
    consumer_detach(q, c, keep_unacked);
    q->last_used = now_ms(q);
    if (q->o.auto_delete && q->had_consumer && q->nconsumers == 0 && !q->deleted)
        (void)queue_remove(q);
    q_release(q);
}

void jn_qconsumer_resume(jn_qconsumer_t *c)
{
    if (!c || c->gone)
        return;
    c->stalled = false;
    q_kick(c->q);
}

void jn_qconsumer_set_prefetch(jn_qconsumer_t *c, uint32_t prefetch)
{
    if (!c || c->gone)
        return;
    c->o.prefetch = prefetch;
    q_kick(c->q);
}

/* ---- delivery ---- */

/* One bounded round of deliveries. Returns true when more may be ready for
 * the consumers (the budget ran out). The caller holds |q| busy. */
static bool deliver_round(jn_queue_t *q)
{
    size_t n = 0, bytes = 0;
    int64_t now = now_ms(q);
    while (!q->deleted) {
        if (n >= Q_ROUND_MSGS || bytes >= Q_ROUND_BYTES)
            return true;
        jn_qconsumer_t *c = pick_consumer(q);
        if (!c)
            return false;
        uint32_t p;
        int64_t off;
        bool redel;
        if (!next_ready(q, false, &p, &off, &redel))
            return false;
        jn_record_t seq;
        const jn_record_t *rec;
        int rc;
        if (redel) {
            rc = read_one(q->parts[p].log, off, &q->rread);
            rec = &q->rread.rec;
        } else {
            rc = cache_get(q, p, off, &seq);
            rec = &seq;
        }
        if (rc < 0) {
            jn_error("queue %s: reading %u/%lld: %s", q->name, p, (long long)off, jn_strerror(rc));
            return false;
        }
        if (rc == 0 || rec->offset != off) {
            skip_missing(q, p, off, redel, rc == 1 ? rec->offset : -1);
            continue;
        }
        uint32_t size = rec_size(rec);
        take(q, p, off, redel, size);
        n++;
        if (is_expired(q, rec, now)) {
            dead_letter(q, rec, "expired");
            if (!q->deleted)
                settle(q, p, off);
            continue;
        }
        int64_t id = (int64_t)p << 56 | off;
        if (!c->o.no_ack && !unacked_add(q, id, size, c)) {
            untake(q, p, off, redel, size);
            return false;
        }
        jn_qdelivery_t d = {id, redel, rec};
        rc = c->o.deliver(c, &d, c->o.arg);
        if (q->deleted)
            return false;
        if (rc != 0) {
            /* Refused: the message goes back where it was, unless the
             * consumer was cancelled meanwhile and that requeued it. */
            c->stalled = true;
            bool undo = c->o.no_ack;
            qmsg_t **ref = c->o.no_ack ? NULL : unacked_ref(q, id);
            if (ref) {
                qmsg_t *m = *ref;
                if (m->c) {
                    jn_list_remove(&m->cnode);
                    m->c->nunacked--;
                    m->c = NULL;
                }
                unacked_remove(q, ref);
                undo = true;
            }
            if (undo)
                untake(q, p, off, redel, size);
            n--;
            continue;
        }
        bytes += size;
        if (c->o.no_ack)
            settle(q, p, off);
        if (!c->gone)
            rotate(q, c);
        q->last_used = now;
    }
    return false;
}

static void on_check(uv_check_t *h)
{
    jn_qreg_t *reg = h->data;
    if (!reg)
        return;
    jn_list_t marker;
    jn_list_insert_tail(&reg->work, &marker);
    while (reg->work.next != &marker) {
        jn_queue_t *q = jn_container_of(reg->work.next, jn_queue_t, wnode);
        jn_list_remove(&q->wnode);
        q->busy++;
        /* Callbacks may have re-queued it already (behind the marker). */
        if (deliver_round(q) && !q->deleted && !jn_list_linked(&q->wnode))
            jn_list_insert_tail(&reg->work, &q->wnode);
        q_release(q);
    }
    jn_list_remove(&marker);
    if (jn_list_empty(&reg->work)) {
        uv_check_stop(&reg->h->check);
        uv_idle_stop(&reg->h->idle);
    }
}

static void on_idle(uv_idle_t *h)
{
    (void)h; /* only there so that the loop polls without blocking */
}

static void start_handles(jn_qreg_t *reg)
{
    if (!reg->h || uv_is_active((uv_handle_t *)&reg->h->check))
        return;
    uv_check_start(&reg->h->check, on_check);
    uv_idle_start(&reg->h->idle, on_idle);
}

/* ---- enqueue, get, ack ---- */

static uint32_t prio_part(const jn_queue_t *q, uint8_t prio)
{
    if (q->nparts <= 1 || q->o.max_priority == 0)
        return 0;
    if (prio > q->o.max_priority)
        prio = q->o.max_priority;
    return (uint32_t)((uint32_t)prio * (q->nparts - 1) / q->o.max_priority);
}

int64_t jn_queue_enqueue(jn_queue_t *q, const jn_record_t *rec, uint8_t priority)
{
    if (!q || !rec)
        return JN_EINVAL;
    if (q->deleted)
        return JN_ECLOSED;
    uint32_t size = rec_size(rec);
    if (q->o.overflow == JN_QUEUE_REJECT_PUBLISH &&
        ((q->o.max_length >= 0 && jn_queue_ready(q) >= q->o.max_length) ||
         (q->o.max_length_bytes >= 0 && q->ready_bytes + size > q->o.max_length_bytes)))
        return JN_ETOOBIG;
    uint32_t p = prio_part(q, priority);
    if (!q->own_ttl && own_ttl(rec) >= 0)
        q->own_ttl = true;
    jn_publish_result_t res;
    int rc = jn__broker_publish_stream(q->b, q->s, q->s->name, q->s->name_len, rec, 1, (int32_t)p, &res);
    if (rc < 0)
        return rc;
    q->ready_bytes += size;
    int64_t id = (int64_t)p << 56 | res.offset;
    q->busy++;
    enforce_limits(q);
    q_kick(q);
    q_release(q);
    return id;
}

void jn_queue_wait_durable(jn_queue_t *q, int64_t msg_id, jn_durable_waiter_t *w, jn_durable_cb cb)
{
    if (!q || q->deleted || !q->s) {
        cb(w, JN_ECLOSED);
        return;
    }
    jn_broker_wait_synced(q->b, q->s, (uint32_t)(msg_id >> 56), msg_id & Q_OFFSET_MASK, w, cb);
}

int jn_queue_get(jn_queue_t *q, bool no_ack, jn_qdelivery_t *d)
{
    if (!q || !d)
        return JN_EINVAL;
    if (q->deleted)
        return JN_ECLOSED;
    int64_t now = now_ms(q);
    q->last_used = now;
    int ret = 0;
    q->busy++;
    for (;;) {
        uint32_t p;
        int64_t off;
        bool redel;
        if (q->deleted || !next_ready(q, false, &p, &off, &redel))
            break;
        int rc = read_one(q->parts[p].log, off, &q->gread);
        if (rc < 0) {
            ret = rc;
            break;
        }
        if (rc == 0 || q->gread.rec.offset != off) {
            skip_missing(q, p, off, redel, rc == 1 ? q->gread.rec.offset : -1);
            continue;
        }
        uint32_t size = rec_size(&q->gread.rec);
        take(q, p, off, redel, size);
        if (is_expired(q, &q->gread.rec, now)) {
            dead_letter(q, &q->gread.rec, "expired");
            if (!q->deleted)
                settle(q, p, off);
            continue;
        }
        int64_t id = (int64_t)p << 56 | off;
        if (no_ack) {
            settle(q, p, off);
        } else if (!unacked_add(q, id, size, NULL)) {
            untake(q, p, off, redel, size);
            ret = JN_ENOMEM;
            break;
        }
        d->id = id;
        d->redelivered = redel;
        d->rec = &q->gread.rec;
        ret = 1;
        break;
    }
    q_release(q);
    return ret;
}

static int settle_id(jn_queue_t *q, int64_t id, int how)
{
    if (!q)
        return JN_EINVAL;
    if (q->deleted)
        return JN_ENOENT;
    qmsg_t **ref = unacked_ref(q, id);
    if (!ref)
        return JN_ENOENT;
    uint32_t p = (uint32_t)(id >> 56);
    int64_t off = id & Q_OFFSET_MASK;
    uint32_t size = (*ref)->size;
    q->busy++;
    unacked_remove(q, ref);
    if (p < q->nparts) {
        if (how == 0) {
            settle(q, p, off);
        } else if (how == 1) {
            if (rset_add(&q->parts[p].requeued, off, off + 1) < 0)
                jn_error("queue %s: requeued set full; message %lld lost", q->name, (long long)off);
            q->ready_bytes += size;
            q_kick(q);
        } else {
            dead_letter_at(q, p, off, "rejected");
        }
    }
    q_release(q);
    return 0;
}

int jn_queue_ack(jn_queue_t *q, int64_t id) { return settle_id(q, id, 0); }

int jn_queue_nack(jn_queue_t *q, int64_t id, bool requeue) { return settle_id(q, id, requeue ? 1 : 2); }

int64_t jn_queue_purge(jn_queue_t *q)
{
    if (!q)
        return JN_EINVAL;
    if (q->deleted)
        return JN_ECLOSED;
    int64_t n = 0;
    for (uint32_t p = 0; p < q->nparts; p++) {
        qpart_t *qp = &q->parts[p];
        rset_t rq = qp->requeued;
        memset(&qp->requeued, 0, sizeof qp->requeued);
        for (size_t i = 0; i < rq.n; i++)
            settle_range(q, p, rq.r[i].lo, rq.r[i].hi, true);
        n += rq.total;
        rset_free(&rq);
        int64_t end = part_end(qp);
        if (qp->read < end) {
            int64_t from = qp->read;
            n += end - from;
            qp->read = end;
            settle_range(q, p, from, end, true);
        }
    }
    q->ready_bytes = 0;
    mark_dirty(q);
    return n;
}

/* ---- lifecycle ---- */

static void q_free(jn_queue_t *q)
{
    if (!q)
        return;
    free_zombies(q);
    while (!jn_list_empty(&q->consumers)) {
        jn_qconsumer_t *c = jn_container_of(q->consumers.next, jn_qconsumer_t, node);
        jn_list_remove(&c->node);
        free(c);
    }
    for (size_t i = 0; i < q->htcap; i++) {
        qmsg_t *m = q->ht[i];
        while (m) {
            qmsg_t *next = m->hnext;
            free(m);
            m = next;
        }
    }
    free(q->ht);
    for (uint32_t p = 0; p < Q_PARTS_MAX; p++) {
        rset_free(&q->parts[p].settled);
        rset_free(&q->parts[p].requeued);
    }
    jn_list_remove(&q->wnode);
    jn_list_remove(&q->dnode);
    jn_plog_close(q->acks);
    opts_free(&q->o);
    jn_buf_free(&q->cbuf);
    jn_buf_free(&q->rread.buf);
    jn_buf_free(&q->gread.buf);
    jn_buf_free(&q->dread.buf);
    jn_buf_free(&q->pend);
    jn_buf_free(&q->vbuf);
    jn_buf_free(&q->wbuf);
    free(q->qdir);
    free(q);
}

static jn_queue_t *q_alloc(jn_broker_t *b, const char *name, const jn_queue_opts_t *o)
{
    jn_queue_t *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->b = b;
    memcpy(q->name, name, strlen(name) + 1);
    jn_list_init(&q->consumers);
    jn_list_init(&q->zombies);
    jn_list_init(&q->wnode);
    jn_list_init(&q->dnode);
    q->cpart = -1;
    q->ckpt_off = -1;
    jn_buf_init(&q->cbuf, JN_BROKER_READ_MAX);
    jn_buf_init(&q->rread.buf, JN_BROKER_READ_MAX);
    jn_buf_init(&q->gread.buf, JN_BROKER_READ_MAX);
    jn_buf_init(&q->dread.buf, JN_BROKER_READ_MAX);
    jn_buf_init(&q->pend, Q_PEND_MAX + Q_ENTRY);
    jn_buf_init(&q->vbuf, (size_t)8 << 20);
    jn_buf_init(&q->wbuf, ((size_t)8 << 20) + 4096);
    if (opts_copy(&q->o, o) < 0) {
        free(q);
        return NULL;
    }
    q->nparts = o->max_priority ? (o->max_priority + 1u < Q_PARTS_MAX ? o->max_priority + 1u : Q_PARTS_MAX) : 1;
    q->last_used = jn_clock_now(&b->clock);
    q->own_ttl = true; /* a replayed queue may hold some */
    return q;
}

/* Opens the ack log of |q| (creating the directories). */
static int open_acks(jn_queue_t *q)
{
    char path[PATH_MAX];
    int rc = queue_dir(q->b, q->dir, path, sizeof path);
    if (rc < 0)
        return rc;
    q->qdir = strdup(path);
    if (!q->qdir)
        return JN_ENOMEM;
    int n = snprintf(path, sizeof path, "%s/acks/0", q->qdir);
    if (n < 0 || (size_t)n >= sizeof path)
        return JN_EINVAL;
    rc = jn_fs_mkdir_p(path);
    if (rc < 0)
        return rc;
    jn_plog_config_t cfg;
    jn_plog_config_default(&cfg);
    cfg.fsync = q->o.fsync;
    cfg.segment_bytes = 1u << 20;
    cfg.segment_ms = 0;
    return jn_plog_open(q->b->loop, path, &cfg, &q->b->clock, &q->acks);
}

static void bind_stream(jn_queue_t *q)
{
    if (q->s->nparts < q->nparts)
        q->nparts = q->s->nparts;
    for (uint32_t p = 0; p < q->nparts; p++) {
        qpart_t *qp = &q->parts[p];
        qp->log = jn_stream_plog(q->s, p);
        qp->head = qp->read = qp->read_logged = jn_plog_start_offset(qp->log);
    }
}

/* Ack-log replay: see REPLAY RULE at the top. */
static int ack_record(jn_broker_t *b, const jn_record_t *rec, void *arg)
{
    (void)b;
    jn_queue_t *q = arg;
    if (rec->key_len != 1 || !rec->value || rec->value_len < 1)
        return JN_ECORRUPT;
    uint8_t type = rec->key[0];
    const uint8_t *v = rec->value;
    size_t len = (size_t)rec->value_len;
    uint32_t np = v[0];
    size_t fixed = 1 + (size_t)np * (type == 'C' ? 16 : 8);
    if ((type != 'C' && type != 'S') || np > Q_PARTS_MAX || len < fixed || (len - fixed) % Q_ENTRY)
        return JN_ECORRUPT;
    const uint8_t *e = v + 1;
    for (uint32_t p = 0; p < np; p++) {
        qpart_t *qp = p < q->nparts ? &q->parts[p] : NULL;
        if (type == 'C') {
            int64_t h = (int64_t)jn_load_be64(e), r = (int64_t)jn_load_be64(e + 8);
            e += 16;
            if (!qp)
                continue;
            rset_free(&qp->settled);
            qp->head = h;
            qp->read = r;
        } else {
            int64_t r = (int64_t)jn_load_be64(e);
            e += 8;
            if (qp && r > qp->read)
                qp->read = r;
        }
    }
    if (type == 'C')
        q->ckpt_off = rec->offset;
    for (; e < v + len; e += Q_ENTRY) {
        uint32_t p = e[0];
        int64_t lo = (int64_t)jn_load_be64(e + 1), hi = (int64_t)jn_load_be64(e + 9);
        if (p >= q->nparts || lo >= hi)
            continue;
        settle_range(q, p, lo, hi, false);
        if (hi > q->parts[p].read)
            q->parts[p].read = hi;
    }
    return 0;
}

/* Sums the payload bytes of the ready messages (for max_length_bytes). */
static int count_ready_bytes(jn_queue_t *q)
{
    q->ready_bytes = 0;
    for (uint32_t p = 0; p < q->nparts; p++) {
        qpart_t *qp = &q->parts[p];
        int64_t off = qp->requeued.n ? qp->requeued.r[0].lo : qp->read;
        int64_t end = part_end(qp);
        while (off < end) {
            jn_buf_reset(&q->cbuf);
            int n = jn_plog_read(qp->log, off, (size_t)1 << 20, &q->cbuf);
            if (n <= 0)
                return n;
            size_t pos = 0;
            bool iter = false;
            jn_record_t rec;
            int64_t next = off;
            int rc;
            while ((rc = scan_buf(&q->cbuf, &pos, &iter, &q->cit, off, &rec, &next)) == 1)
                if (rec.offset >= qp->read || rset_contains(&qp->requeued, rec.offset))
                    q->ready_bytes += rec_size(&rec);
            if (rc < 0)
                return rc;
            if (next <= off)
                break;
            off = next;
        }
    }
    jn_buf_reset(&q->cbuf);
    q->cpart = -1;
    return 0;
}

static int replay_acks(jn_queue_t *q)
{
    jn_buf_t buf;
    jn_buf_init(&buf, JN_BROKER_READ_MAX);
    int rc = jn__broker_log_replay(q->b, q->acks, &buf, ack_record, q);
    jn_buf_free(&buf);
    if (rc < 0)
        return rc;
    for (uint32_t p = 0; p < q->nparts; p++) {
        qpart_t *qp = &q->parts[p];
        int64_t start = jn_plog_start_offset(qp->log), end = part_end(qp);
        if (qp->head < start)
            qp->head = start;
        if (qp->head > end)
            qp->head = end;
        if (qp->read > end)
            qp->read = end;
        if (qp->read < qp->head)
            qp->read = qp->head;
        rset_clip(&qp->settled, qp->head, qp->read);
        while (qp->settled.n && qp->settled.r[0].lo <= qp->head) {
            qp->head = qp->settled.r[0].hi;
            rset_remove_first(&qp->settled);
        }
        /* Delivered and not settled: delivered again. */
        int64_t from = qp->head;
        for (size_t i = 0; i <= qp->settled.n; i++) {
            int64_t to = i < qp->settled.n ? qp->settled.r[i].lo : qp->read;
            if (from < to && rset_add(&qp->requeued, from, to) < 0)
                return JN_ENOMEM;
            if (i < qp->settled.n)
                from = qp->settled.r[i].hi;
        }
        qp->read_logged = qp->read;
    }
    if (q->o.max_length_bytes >= 0)
        return count_ready_bytes(q);
    return 0;
}

static void stream_cfg(const jn_broker_t *b, const jn_queue_opts_t *o, jn_plog_config_t *cfg)
{
    *cfg = b->cfg.stream_defaults;
    cfg->retention_ms = -1;
    cfg->retention_bytes = -1;
    cfg->compact = false;
    cfg->fsync = o->fsync;
    if (cfg->segment_bytes > (16u << 20))
        cfg->segment_bytes = 16u << 20;
}

int jn_queue_declare(jn_broker_t *b, const char *name, const jn_queue_opts_t *opts, jn_queue_t **out)
{
    if (!b || !b->queues || !opts || name_validate(name) < 0 || opts_validate(opts) < 0)
        return JN_EINVAL;
    jn_queue_t *q = jn_queue_find(b, name);
    if (q) {
        if (!opts_equal(&q->o, opts))
            return JN_ESTATE;
        q->last_used = jn_clock_now(&b->clock);
        if (out)
            *out = q;
        return 0;
    }
    int rc = JN_ENOMEM;
    q = q_alloc(b, name, opts);
    if (!q)
        return JN_ENOMEM;
    rc = pick_ids(b, name, q->dir, sizeof q->dir, q->sname, sizeof q->sname);
    if (rc < 0)
        goto fail;
    char path[PATH_MAX];
    rc = queue_dir(b, q->dir, path, sizeof path);
    if (rc < 0)
        goto fail;
    jn_fs_rm_tree(path); /* left by a delete a crash interrupted */
    rc = persist_def(q, false);
    if (rc < 0)
        goto fail;
    jn_plog_config_t cfg;
    stream_cfg(b, opts, &cfg);
    rc = jn__broker_stream_create(b, q->sname, q->nparts, &cfg, &q->s);
    if (rc < 0)
        goto fail_def;
    bind_stream(q);
    rc = open_acks(q);
    if (rc == 0)
        rc = reg_insert(b->queues, q);
    if (rc < 0) {
        if (jn_broker_stream_delete(b, q->sname) < 0)
            jn_warn("queue %s: stream %s left behind", name, q->sname);
        goto fail_def;
    }
    jn_info("queue: declared %s", name);
    if (out)
        *out = q;
    return 0;
fail_def:
    (void)persist_def(q, true);
fail:
    if (q->acks) {
        jn_plog_destroy(q->acks);
        q->acks = NULL;
    }
    q_free(q);
    return rc;
}

/* Deletes |q| for good: consumers cancelled (callbacks run), definition,
 * stream and ack log removed. Freed now or when no longer busy. Returns the
 * number of ready messages it held. */
static int64_t queue_remove(jn_queue_t *q)
{
    jn_broker_t *b = q->b;
    int64_t n = jn_queue_ready(q);
    q->busy++;
    while (!jn_list_empty(&q->consumers)) {
        jn_qconsumer_t *c = jn_container_of(q->consumers.next, jn_qconsumer_t, node);
        consumer_detach(q, c, false);
        if (c->o.cancel)
            c->o.cancel(c, c->o.arg);
    }
    if (persist_def(q, true) < 0)
        jn_error("queue %s: cannot remove the definition; it comes back at restart", q->name);
    reg_remove(b->queues, q);
    jn_list_remove(&q->wnode);
    jn_list_remove(&q->dnode);
    q->deleted = true;
    if (q->acks) {
        jn_plog_destroy(q->acks);
        q->acks = NULL;
    }
    if (q->qdir)
        jn_fs_rm_tree(q->qdir);
    if (jn_broker_stream_delete(b, q->sname) < 0)
        jn_warn("queue %s: stream %s already gone", q->name, q->sname);
    q->s = NULL;
    jn_info("queue: deleted %s", q->name);
    q_release(q);
    return n;
}

int64_t jn_queue_delete(jn_queue_t *q, bool if_unused, bool if_empty)
{
    if (!q)
        return JN_EINVAL;
    if (q->deleted)
        return JN_ENOENT;
    if (if_unused && q->nconsumers > 0)
        return JN_ESTATE;
    if (if_empty && jn_queue_ready(q) > 0)
        return JN_ESTATE;
    return queue_remove(q);
}

/* ---- maintenance ---- */

/* Expires messages at the head of each partition. */
static void expire_heads(jn_queue_t *q, int64_t now)
{
    if (q->own_ttl && jn_queue_ready(q) == 0 && q->nunacked == 0)
        q->own_ttl = false; /* nothing left that could carry a TTL */
    if (q->o.message_ttl_ms < 0 && !q->own_ttl)
        return;
    int budget = Q_EXPIRE_PER_PASS;
    for (uint32_t p = 0; p < q->nparts && !q->deleted; p++) {
        qpart_t *qp = &q->parts[p];
        while (budget-- > 0 && !q->deleted) {
            int64_t off;
            bool redel = qp->requeued.n > 0;
            if (redel)
                off = qp->requeued.r[0].lo;
            else if (qp->read < part_end(qp))
                off = qp->read;
            else
                break;
            qread_t *r = dread_acquire(q);
            int rc = r ? read_one(qp->log, off, r) : JN_ENOMEM;
            if (rc < 0) {
                dread_release(q, r);
                break;
            }
            if (rc == 0 || r->rec.offset != off) {
                int64_t upto = rc == 1 ? r->rec.offset : -1;
                dread_release(q, r);
                skip_missing(q, p, off, redel, upto);
                continue;
            }
            if (!is_expired(q, &r->rec, now)) {
                dread_release(q, r);
                break;
            }
            take(q, p, off, redel, rec_size(&r->rec));
            dead_letter(q, &r->rec, "expired");
            dread_release(q, r);
            if (!q->deleted)
                settle(q, p, off);
        }
    }
}

void jn__queue_maintain(jn_broker_t *b)
{
    if (!b || !b->queues)
        return;
    jn_qreg_t *reg = b->queues;
    int64_t now = jn_clock_now(&b->clock);
    /* Deletions change the array: walk by name. */
    jn_queue_t *q = jn_queue_next(b, NULL);
    while (q) {
        char name[Q_NAME_MAX + 1];
        memcpy(name, q->name, sizeof name);
        q->busy++;
        expire_heads(q, now);
        if (!q->deleted && q->o.expires_ms >= 0 && q->nconsumers == 0 && now - q->last_used >= q->o.expires_ms) {
            jn_info("queue: %s unused for %lld ms, deleting", q->name, (long long)q->o.expires_ms);
            (void)queue_remove(q);
        }
        if (!q->deleted) {
            (void)ack_flush(q);
            /* A quiet queue's ack log still shrinks to one checkpoint,
             * without rolling a segment every second for a trickle. */
            if (q->since_records >= 64)
                (void)ack_checkpoint(q);
            for (uint32_t p = 0; p < q->nparts; p++)
                (void)jn_plog_delete_before(q->parts[p].log, q->parts[p].head);
            q_kick(q);
        }
        q_release(q);
        /* the next queue by name after |name| */
        bool found;
        size_t i = reg_search(reg, name, &found);
        if (found)
            i++;
        q = i < reg->n ? reg->qs[i] : NULL;
    }
}

static void on_prepare(uv_prepare_t *h)
{
    jn_qreg_t *reg = h->data;
    if (!reg)
        return;
    while (!jn_list_empty(&reg->dirty)) {
        jn_queue_t *q = jn_container_of(reg->dirty.next, jn_queue_t, dnode);
        jn_list_remove(&q->dnode);
        (void)ack_flush(q);
    }
}

static void on_timer(uv_timer_t *h)
{
    jn_qreg_t *reg = h->data;
    if (reg)
        jn__queue_maintain(reg->b);
}

static void on_handle_closed(uv_handle_t *h)
{
    qhandles_t *hs = h->data;
    if (--hs->open == 0)
        free(hs);
}

/* ---- open / close ---- */

static int meta_queue_record(jn_broker_t *b, const jn_record_t *rec, void *arg)
{
    (void)b;
    json_t *defs = arg;
    size_t plen = sizeof META_QUEUE_PREFIX - 1;
    if (!rec->key || rec->key_len <= (int32_t)plen || rec->key_len > (int32_t)(plen + Q_NAME_MAX) ||
        memcmp(rec->key, META_QUEUE_PREFIX, plen) != 0)
        return 0;
    char name[Q_NAME_MAX + 1];
    memcpy(name, rec->key + plen, (size_t)rec->key_len - plen);
    name[(size_t)rec->key_len - plen] = '\0';
    if (!rec->value) {
        json_object_del(defs, name);
        return 0;
    }
    json_error_t jerr;
    json_t *v = json_loadb((const char *)rec->value, (size_t)rec->value_len, 0, &jerr);
    if (!v) {
        jn_warn("queue: definition of %s: bad JSON: %s", name, jerr.text);
        return 0;
    }
    json_object_set_new(defs, name, v);
    return 0;
}

/* Removes what a queue that does not come back left: its stream and
 * directory, and its definition. */
static void cleanup_def(jn_broker_t *b, const char *name, const char *sname, const char *dir)
{
    if (sname && jn_broker_stream_find(b, sname, strlen(sname)) && jn_broker_stream_delete(b, sname) < 0)
        jn_warn("queue %s: cannot remove stream %s", name, sname);
    char path[PATH_MAX];
    if (dir && queue_dir(b, dir, path, sizeof path) == 0)
        jn_fs_rm_tree(path);
    char key[sizeof META_QUEUE_PREFIX + Q_NAME_MAX];
    int klen = snprintf(key, sizeof key, META_QUEUE_PREFIX "%s", name);
    if (klen > 0 && (size_t)klen < sizeof key)
        (void)jn__broker_log_write(b, b->meta, key, (size_t)klen, NULL, 0, true, true);
}

static int reopen_queue(jn_broker_t *b, const char *name, const json_t *def)
{
    const char *sname = json_string_value(json_object_get(def, "stream"));
    const char *dir = json_string_value(json_object_get(def, "dir"));
    jn_queue_opts_t o;
    int rc = opts_from_json(def, &o);
    if (rc < 0 || name_validate(name) < 0 || !sname || !dir || strlen(sname) > JN_STREAM_NAME_MAX ||
        strlen(dir) >= 64 || strncmp(sname, QSTREAM_PREFIX, sizeof QSTREAM_PREFIX - 1) != 0 ||
        strchr(dir, '/') || strcmp(dir, ".") == 0 || strcmp(dir, "..") == 0) {
        if (rc == 0)
            opts_free(&o);
        jn_error("queue: bad definition of %s; dropped", name);
        cleanup_def(b, name, NULL, NULL);
        return 0;
    }
    if (!o.durable) {
        jn_info("queue: removing non-durable queue %s", name);
        cleanup_def(b, name, sname, dir);
        opts_free(&o);
        return 0;
    }
    jn_queue_t *q = q_alloc(b, name, &o);
    opts_free(&o);
    if (!q)
        return JN_ENOMEM;
    memcpy(q->dir, dir, strlen(dir) + 1);
    memcpy(q->sname, sname, strlen(sname) + 1);
    q->s = jn_broker_stream_find(b, sname, strlen(sname));
    if (!q->s) {
        jn_warn("queue %s: stream %s missing; recreated empty", name, sname);
        jn_plog_config_t cfg;
        stream_cfg(b, &q->o, &cfg);
        rc = jn__broker_stream_create(b, sname, q->nparts, &cfg, &q->s);
        if (rc < 0)
            goto fail;
    }
    bind_stream(q);
    rc = open_acks(q);
    if (rc == 0)
        rc = replay_acks(q);
    if (rc == 0)
        rc = reg_insert(b->queues, q);
    if (rc < 0)
        goto fail;
    return 0;
fail:
    jn_error("queue %s: cannot reopen: %s", name, jn_strerror(rc));
    q_free(q);
    return rc;
}

int jn__queue_open(jn_broker_t *b)
{
    jn_qreg_t *reg = calloc(1, sizeof *reg);
    if (!reg)
        return JN_ENOMEM;
    reg->b = b;
    jn_list_init(&reg->work);
    jn_list_init(&reg->dirty);
    b->queues = reg;
    json_t *defs = json_object();
    if (!defs)
        return JN_ENOMEM;
    jn_buf_t buf;
    jn_buf_init(&buf, JN_BROKER_READ_MAX);
    int rc = jn__broker_log_replay(b, b->meta, &buf, meta_queue_record, defs);
    jn_buf_free(&buf);
    const char *name;
    json_t *def;
    json_object_foreach(defs, name, def) {
        if (rc < 0)
            break;
        rc = reopen_queue(b, name, def);
    }
    json_decref(defs);
    if (rc < 0)
        return rc;

    /* Queue streams no queue owns (a crash between the steps of a declare
     * or a delete) go. */
    for (;;) {
        jn_stream_t *orphan = NULL;
        for (jn_stream_t *s = jn_broker_stream_next(b, NULL); s; s = jn_broker_stream_next(b, s)) {
            const char *sn = jn_stream_name(s);
            if (strncmp(sn, QSTREAM_PREFIX, sizeof QSTREAM_PREFIX - 1) != 0)
                continue;
            bool owned = false;
            for (size_t i = 0; i < reg->n && !owned; i++)
                owned = reg->qs[i]->s == s;
            if (!owned) {
                orphan = s;
                break;
            }
        }
        if (!orphan)
            break;
        jn_info("queue: removing orphaned stream %s", jn_stream_name(orphan));
        if (jn_broker_stream_delete(b, jn_stream_name(orphan)) < 0)
            break;
    }

    reg->h = calloc(1, sizeof *reg->h);
    if (!reg->h)
        return JN_ENOMEM;
    uv_check_init(b->loop, &reg->h->check);
    uv_idle_init(b->loop, &reg->h->idle);
    uv_prepare_init(b->loop, &reg->h->prepare);
    uv_timer_init(b->loop, &reg->h->timer);
    reg->h->open = 4;
    reg->h->check.data = reg;
    reg->h->idle.data = reg;
    reg->h->prepare.data = reg;
    reg->h->timer.data = reg;
    uv_prepare_start(&reg->h->prepare, on_prepare);
    uv_unref((uv_handle_t *)&reg->h->prepare);
    uv_timer_start(&reg->h->timer, on_timer, Q_MAINTAIN_MS, Q_MAINTAIN_MS);
    uv_unref((uv_handle_t *)&reg->h->timer);
    for (size_t i = 0; i < reg->n; i++)
        if (reg->qs[i]->nconsumers)
            q_kick(reg->qs[i]);
    return 0;
}

void jn__queue_close_all(jn_broker_t *b)
{
    jn_qreg_t *reg = b ? b->queues : NULL;
    if (!reg)
        return;
    for (size_t i = 0; i < reg->n; i++) {
        jn_queue_t *q = reg->qs[i];
        (void)ack_flush(q);
        if (q->since_records > 0)
            (void)ack_checkpoint(q);
        q_free(q);
    }
    free(reg->qs);
    if (reg->h) {
        qhandles_t *h = reg->h;
        h->check.data = h;
        h->idle.data = h;
        h->prepare.data = h;
        h->timer.data = h;
        uv_close((uv_handle_t *)&h->check, on_handle_closed);
        uv_close((uv_handle_t *)&h->idle, on_handle_closed);
        uv_close((uv_handle_t *)&h->prepare, on_handle_closed);
        uv_close((uv_handle_t *)&h->timer, on_handle_closed);
    }
    free(reg);
    b->queues = NULL;
}
