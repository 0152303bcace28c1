/* door_kafka.c - the `kafka` door of the bench: a Kafka client of its own,
 * enough to load any Kafka-compatible broker on one address.
 *
 * --mode produce: --producers connections send Produce v3 requests, each
 * one RecordBatch v2 of --batch stamped records (uncompressed, built with
 * core/batch.h's builder, CRC-32C) for one partition, round-robin over the
 * topic's partitions, with at most --inflight requests unanswered per
 * connection. With acks 1 or all a record counts as delivered when its
 * request is answered without error, and its latency is stamp to answer;
 * with acks 0 nothing is answered and only sending is measured.
 *
 * --mode consume: one connection asks ListOffsets for the earliest and
 * latest offsets of every partition, then Fetches (v4) from the earliest
 * until every partition reached the latest offset seen at the start (or
 * --count records); records count as delivered, MB/s is the figure.
 *
 * Versions are the oldest that carry RecordBatch v2 and need no tagged
 * fields (ApiVersions v0, Metadata v1, Produce v3, ListOffsets v1, Fetch
 * v4); every broker since Kafka 0.11 speaks them. Only the target address
 * is used: the broker list of Metadata is ignored (single broker). */
#include "bench/bench_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "bench/stamp.h"
#include "common/clock.h"
#include "core/batch.h"

#define KAFKA_OUT_EXTRA (4u << 20)
#define KAFKA_RESP_MAX (64u << 20)     /* largest response we accept */
#define KAFKA_FETCH_MAX (8u << 20)     /* max_bytes of a fetch */
#define KAFKA_PARTS_MAX 4096
#define KAFKA_TOPIC_MAX 249
#define KAFKA_RETRY_MS 200             /* metadata retry while the topic appears */

enum { API_PRODUCE = 0, API_FETCH = 1, API_LIST_OFFSETS = 2, API_METADATA = 3, API_VERSIONS = 18 };

typedef struct kafka_cfg {
    const char *mode;  /* --mode produce|consume */
    const char *topic; /* --topic */
    int batch;         /* --batch records per RecordBatch */
    const char *acks;  /* --acks 0|1|all|-1 */
    int producers;     /* --producers */
    int inflight;      /* --inflight requests per connection */
    int timeout_ms;    /* --timeout-ms of Produce */
} kafka_cfg_t;

typedef struct kreq {
    int16_t api;
    int32_t corr;
    int32_t records;  /* Produce: records in it */
    uint64_t t_sent;
} kreq_t;

typedef struct kafka_door kafka_door_t;

enum { KS_VERSIONS, KS_METADATA, KS_OFFSETS_EARLY, KS_OFFSETS_LATE, KS_READY };

typedef struct kconn {
    jn_bclient_t cl;    /* first; a producer is the fleet's publisher */
    kafka_door_t *d;
    int state;          /* KS_* */
    int32_t corr;       /* next correlation id */
    kreq_t *reqs;       /* ring of requests awaiting answers */
    uint32_t rhead, rcount, rcap;
    uint64_t produced;  /* batches sent by this producer */
    bool fetching;      /* a Fetch is in flight */
    uv_timer_t retry;   /* Metadata again while the topic is being created */
    bool retry_init;
} kconn_t;

struct kafka_door {
    jn_bench_t *b;
    const kafka_cfg_t *cfg;
    bool consume;
    int16_t acks;
    jn_bfleet_t fleet;   /* over conns */
    kconn_t *conns;
    uint8_t *payload;
    uint64_t seq;
    int32_t nparts;
    int32_t *parts;      /* partition ids from Metadata */
    int64_t *next;       /* consume: next offset per partition */
    int64_t *end;        /* consume: offset to reach per partition */
    size_t batch_bytes;  /* upper bound of one request */
};

/* ---- a bounded reader -------------------------------------------------- */

typedef struct rd {
    const uint8_t *p, *end;
    bool bad;
} rd_t;

static bool rd_need(rd_t *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return false;
    }
    return true;
}
/* A big-endian integer of |n| (2, 4 or 8) bytes; 0 past the end. */
static uint64_t rd_be(rd_t *r, size_t n)
{
    if (!rd_need(r, n))
        return 0;
    uint64_t v = n == 2 ? jn_load_be16(r->p) : n == 4 ? jn_load_be32(r->p) : jn_load_be64(r->p);
    r->p += n;
    return v;
}
static int16_t rd16(rd_t *r) { return (int16_t)rd_be(r, 2); }
static int32_t rd32(rd_t *r) { return (int32_t)rd_be(r, 4); }
static int64_t rd64(rd_t *r) { return (int64_t)rd_be(r, 8); }
static void rd_skip(rd_t *r, size_t n)
{
    if (rd_need(r, n))
        r->p += n;
}
/* A string or nullable string: skipped, its view returned. */
static const uint8_t *rd_str(rd_t *r, int16_t *len)
{
    *len = rd16(r);
    if (*len < 0)
        return NULL;
    const uint8_t *s = r->p;
    rd_skip(r, (size_t)*len);
    return s;
}
/* An array count, checked against what the rest could hold (>= |each|
 * bytes per element); -1 (null) counts as 0. */
static int32_t rd_count(rd_t *r, size_t each)
{
    int32_t n = rd32(r);
    if (n < 0)
        return 0;
    if (each && (size_t)n > (size_t)(r->end - r->p) / each) {
        r->bad = true;
        return 0;
    }
    return n;
}

/* ---- requests ---------------------------------------------------------- */

static int put_str(jn_buf_t *o, const char *s)
{
    size_t n = strlen(s);
    int rc = jn_buf_put_be16(o, (uint16_t)n);
    return rc < 0 ? rc : jn_buf_append(o, s, n);
}

/* Appends the request header; |*size_at| is where the size goes. */
static int req_begin(kconn_t *k, int16_t api, int16_t ver, int32_t records, size_t *size_at)
{
    jn_buf_t *o = &k->cl.c.out;
    if (k->rcount == k->rcap)
        return JN_ETOOBIG;
    kreq_t *q = &k->reqs[(k->rhead + k->rcount) % k->rcap];
    q->api = api;
    q->corr = k->corr++;
    q->records = records;
    q->t_sent = jn_mono_ns();
    *size_at = o->len;
    int rc = jn_buf_put_be32(o, 0);
    if (rc >= 0)
        rc = jn_buf_put_be16(o, (uint16_t)api);
    if (rc >= 0)
        rc = jn_buf_put_be16(o, (uint16_t)ver);
    if (rc >= 0)
        rc = jn_buf_put_be32(o, (uint32_t)q->corr);
    if (rc >= 0)
        rc = put_str(o, "jnbench");
    return rc;
}

/* Finishes a request; |expect_answer| false for Produce with acks 0. */
static void req_end(kconn_t *k, size_t size_at, bool expect_answer)
{
    jn_buf_t *o = &k->cl.c.out;
    jn_store_be32(o->data + size_at, (uint32_t)(o->len - size_at - 4));
    if (expect_answer)
        k->rcount++;
}

static int send_versions(kconn_t *k)
{
    size_t at;
    int rc = req_begin(k, API_VERSIONS, 0, 0, &at);
    if (rc >= 0)
        req_end(k, at, true);
    k->state = KS_VERSIONS;
    return rc;
}

static int send_metadata(kconn_t *k)
{
    jn_buf_t *o = &k->cl.c.out;
    size_t at;
    int rc = req_begin(k, API_METADATA, 1, 0, &at);
    if (rc >= 0)
        rc = jn_buf_put_be32(o, 1);
    if (rc >= 0)
        rc = put_str(o, k->d->cfg->topic);
    if (rc >= 0)
        req_end(k, at, true);
    k->state = KS_METADATA;
    return rc;
}

static int send_list_offsets(kconn_t *k, int64_t which)
{
    kafka_door_t *d = k->d;
    jn_buf_t *o = &k->cl.c.out;
    size_t at;
    int rc = req_begin(k, API_LIST_OFFSETS, 1, 0, &at);
    if (rc >= 0)
        rc = jn_buf_put_be32(o, (uint32_t)-1); /* replica: a client */
    if (rc >= 0)
        rc = jn_buf_put_be32(o, 1);
    if (rc >= 0)
        rc = put_str(o, d->cfg->topic);
    if (rc >= 0)
        rc = jn_buf_put_be32(o, (uint32_t)d->nparts);
    for (int32_t i = 0; i < d->nparts && rc >= 0; i++) {
        rc = jn_buf_put_be32(o, (uint32_t)d->parts[i]);
        if (rc >= 0)
            rc = jn_buf_put_be64(o, (uint64_t)which);
    }
    if (rc >= 0)
        req_end(k, at, true);
    k->state = which == -2 ? KS_OFFSETS_EARLY : KS_OFFSETS_LATE;
    return rc;
}

static int send_fetch(kconn_t *k)
{
    kafka_door_t *d = k->d;
    jn_buf_t *o = &k->cl.c.out;
    size_t at;
    int32_t want = 0;
    for (int32_t i = 0; i < d->nparts; i++)
        want += d->next[i] < d->end[i];
    if (want == 0)
        return 0;
    int rc = req_begin(k, API_FETCH, 4, 0, &at);
    if (rc >= 0)
        rc = jn_buf_put_be32(o, (uint32_t)-1);
    if (rc >= 0)
        rc = jn_buf_put_be32(o, 100); /* max_wait_ms */
    if (rc >= 0)
        rc = jn_buf_put_be32(o, 1);   /* min_bytes */
    if (rc >= 0)
        rc = jn_buf_put_be32(o, KAFKA_FETCH_MAX);
    if (rc >= 0)
        rc = jn_buf_put_u8(o, 0);     /* read uncommitted */
    if (rc >= 0)
        rc = jn_buf_put_be32(o, 1);
    if (rc >= 0)
        rc = put_str(o, d->cfg->topic);
    if (rc >= 0)
        rc = jn_buf_put_be32(o, (uint32_t)want);
    for (int32_t i = 0; i < d->nparts && rc >= 0; i++) {
        if (d->next[i] >= d->end[i])
            continue;
        rc = jn_buf_put_be32(o, (uint32_t)d->parts[i]);
        if (rc >= 0)
            rc = jn_buf_put_be64(o, (uint64_t)d->next[i]);
        if (rc >= 0)
            rc = jn_buf_put_be32(o, KAFKA_FETCH_MAX / (uint32_t)want > 1048576 ? KAFKA_FETCH_MAX / (uint32_t)want
                                                                              : 1048576);
    }
    if (rc >= 0) {
        req_end(k, at, true);
        k->fetching = true;
    }
    return rc;
}

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Queues one Produce request of --batch records. */
static int send_produce(kconn_t *k, int32_t nrec)
{
    kafka_door_t *d = k->d;
    jn_bench_t *b = d->b;
    jn_buf_t *o = &k->cl.c.out;
    size_t size = (size_t)b->o->size;
    size_t at;
    int32_t part = d->parts[(k->produced + (uint64_t)k->cl.idx) % (uint64_t)d->nparts];
    int rc = req_begin(k, API_PRODUCE, 3, nrec, &at);
    if (rc >= 0)
        rc = jn_buf_put_be16(o, 0xffff); /* no transactional id */
    if (rc >= 0)
        rc = jn_buf_put_be16(o, (uint16_t)d->acks);
    if (rc >= 0)
        rc = jn_buf_put_be32(o, (uint32_t)d->cfg->timeout_ms);
    if (rc >= 0)
        rc = jn_buf_put_be32(o, 1);
    if (rc >= 0)
        rc = put_str(o, d->cfg->topic);
    if (rc >= 0)
        rc = jn_buf_put_be32(o, 1);
    if (rc >= 0)
        rc = jn_buf_put_be32(o, (uint32_t)part);
    size_t len_at = o->len;
    if (rc >= 0)
        rc = jn_buf_put_be32(o, 0);
    jn_batch_builder_t bb;
    if (rc >= 0)
        rc = jn_batch_builder_begin(&bb, o);
    int64_t ts = now_ms();
    for (int32_t i = 0; i < nrec && rc >= 0; i++) {
        if (jn_stamp_write(d->payload, size, (uint32_t)d->seq, jn_mono_ns()) < 0)
            return JN_EINVAL;
        jn_record_t rec = {.key = NULL, .key_len = -1, .value = d->payload, .value_len = (int32_t)size,
                           .timestamp = ts};
        rc = jn_batch_builder_add(&bb, &rec);
        d->seq++;
    }
    if (rc >= 0)
        rc = jn_batch_builder_finish(&bb);
    if (rc < 0)
        return rc;
    jn_store_be32(o->data + len_at, (uint32_t)(o->len - len_at - 4));
    req_end(k, at, d->acks != 0);
    k->produced++;
    return 0;
}

static void prod_fill(jn_bclient_t *cl)
{
    kconn_t *k = cl->c.owner;
    kafka_door_t *d = k->d;
    jn_bench_t *b = d->b;
    if (k->state != KS_READY || k->cl.dead || !k->cl.c.connected || b->phase != JN_BENCH_RUNNING || d->consume)
        return;
    size_t size = (size_t)b->o->size;
    /* With acks 0 nothing is answered: the write buffer is the window. */
    while (d->acks ? k->rcount < (uint32_t)d->cfg->inflight : k->cl.c.out.len < d->batch_bytes) {
        int32_t n = 0;
        while (n < d->cfg->batch && jn__bench_take(b))
            n++;
        if (n == 0)
            break;
        if (send_produce(k, n) < 0) {
            b->errors += (uint64_t)n;
            break;
        }
        b->sent += (uint64_t)n;
        b->sent_bytes += (uint64_t)n * size;
        if (d->acks)
            b->expected += (uint64_t)n;
    }
    jn__bconn_flush(&k->cl.c);
}

/* ---- responses --------------------------------------------------------- */

static int on_versions(kconn_t *k, rd_t *r)
{
    jn_bench_t *b = k->d->b;
    int16_t err = rd16(r);
    int32_t n = rd_count(r, 6);
    int16_t produce_max = -1, fetch_max = -1;
    for (int32_t i = 0; i < n && !r->bad; i++) {
        int16_t key = rd16(r), vmin = rd16(r), vmax = rd16(r);
        (void)vmin;
        if (key == API_PRODUCE)
            produce_max = vmax;
        if (key == API_FETCH)
            fetch_max = vmax;
    }
    if (r->bad)
        return JN_EPROTO;
    if (err) {
        jn__bench_fail(b, "ApiVersions answered error %d", err);
        return JN_EPROTO;
    }
    if (produce_max < 3 || fetch_max < 4) {
        jn__bench_fail(b, "the broker lacks Produce v3 / Fetch v4 (has %d / %d)", produce_max, fetch_max);
        return JN_EUNSUPPORTED;
    }
    return send_metadata(k);
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

static void on_retry(uv_timer_t *t)
{
    kconn_t *k = t->data;
    if (send_metadata(k) < 0)
        jn__bconn_close(&k->cl.c, JN_ENOMEM);
    else
        jn__bconn_flush(&k->cl.c);
}

static void become_ready(kconn_t *k)
{
    k->state = KS_READY;
    jn__bclient_ready(&k->cl);
}

static int on_metadata(kconn_t *k, rd_t *r)
{
    kafka_door_t *d = k->d;
    int32_t nb = rd_count(r, 12);
    for (int32_t i = 0; i < nb && !r->bad; i++) {
        int16_t l;
        rd32(r);
        rd_str(r, &l);
        rd32(r);
        rd_str(r, &l);
    }
    rd32(r); /* controller */
    int32_t nt = rd_count(r, 9);
    int16_t terr = -1;
    int32_t parts[KAFKA_PARTS_MAX];
    int32_t np = 0;
    for (int32_t i = 0; i < nt && !r->bad; i++) {
        int16_t e = rd16(r), l;
        const uint8_t *name = rd_str(r, &l);
        rd_skip(r, 1);
        int32_t npp = rd_count(r, 18);
        bool ours = name && (size_t)l == strlen(d->cfg->topic) && memcmp(name, d->cfg->topic, (size_t)l) == 0;
        if (ours)
            terr = e;
        for (int32_t j = 0; j < npp && !r->bad; j++) {
            int16_t pe = rd16(r);
            int32_t id = rd32(r);
            rd32(r); /* leader */
            int32_t nr = rd_count(r, 4);
            rd_skip(r, (size_t)nr * 4);
            int32_t ni = rd_count(r, 4);
            rd_skip(r, (size_t)ni * 4);
            if (ours && pe == 0 && np < KAFKA_PARTS_MAX)
                parts[np++] = id;
        }
    }
    if (r->bad)
        return JN_EPROTO;
    if (terr != 0 || np == 0) {
        /* Being created (LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC...): ask
         * again until the connect deadline. */
        if (!k->retry_init) {
            uv_timer_init(&d->b->loop, &k->retry);
            k->retry.data = k;
            k->retry_init = true;
        }
        uv_timer_start(&k->retry, on_retry, KAFKA_RETRY_MS, 0);
        return 0;
    }
    if (!d->parts) {
        d->parts = malloc((size_t)np * sizeof(*d->parts));
        d->next = calloc((size_t)np, sizeof(*d->next));
        d->end = calloc((size_t)np, sizeof(*d->end));
        if (!d->parts || !d->next || !d->end)
            return JN_ENOMEM;
        memcpy(d->parts, parts, (size_t)np * sizeof(*parts));
        qsort(d->parts, (size_t)np, sizeof(*d->parts), cmp_i32);
        d->nparts = np;
    }
    if (d->consume)
        return send_list_offsets(k, -2);
    become_ready(k);
    return 0;
}

static int on_list_offsets(kconn_t *k, rd_t *r)
{
    kafka_door_t *d = k->d;
    bool early = k->state == KS_OFFSETS_EARLY;
    int32_t nt = rd_count(r, 6);
    for (int32_t i = 0; i < nt && !r->bad; i++) {
        int16_t l;
        rd_str(r, &l);
        int32_t np = rd_count(r, 22);
        for (int32_t j = 0; j < np && !r->bad; j++) {
            int32_t id = rd32(r);
            int16_t e = rd16(r);
            rd64(r);
            int64_t off = rd64(r);
            if (e) {
                jn__bench_fail(d->b, "ListOffsets of %s/%d answered error %d", d->cfg->topic, id, e);
                return JN_EPROTO;
            }
            for (int32_t x = 0; x < d->nparts; x++)
                if (d->parts[x] == id)
                    *(early ? &d->next[x] : &d->end[x]) = off;
        }
    }
    if (r->bad)
        return JN_EPROTO;
    if (early)
        return send_list_offsets(k, -1);
    become_ready(k);
    return 0;
}

/* Counts the records of |len| bytes of batches for partition slot |x|. */
static void take_records(kafka_door_t *d, int32_t x, const uint8_t *p, size_t len)
{
    jn_bench_t *b = d->b;
    while (len > 0) {
        jn_batch_info_t bi;
        int n = jn_batch_parse(p, len, KAFKA_RESP_MAX, &bi);
        if (n == JN_EPARTIAL)
            return; /* a partial batch at the end of a fetch is normal */
        jn_batch_iter_t it;
        if (n < 0 || jn_batch_iter_init(&it, p, (size_t)n, false) < 0) {
            b->errors++;
            d->next[x] = d->end[x]; /* cannot go on in this partition */
            return;
        }
        jn_record_t rec;
        int rc;
        uint64_t now = jn_mono_ns();
        while ((rc = jn_batch_iter_next(&it, &rec)) == 1) {
            if (rec.offset < d->next[x] || rec.offset >= d->end[x])
                continue;
            uint64_t ns;
            if (rec.value_len < 0 || jn_stamp_read(rec.value, (size_t)rec.value_len, NULL, &ns) < 0) {
                b->errors++;
                jn__bench_delivered(b, rec.value_len > 0 ? (size_t)rec.value_len : 0, 0);
            } else {
                jn__bench_delivered(b, (size_t)rec.value_len, now > ns ? now - ns : 0);
            }
            if (b->o->count && b->delivered >= b->o->count)
                jn__bench_end(b);
        }
        if (rc < 0)
            b->errors++;
        int64_t after = bi.base_offset + bi.last_offset_delta + 1;
        if (after > d->next[x])
            d->next[x] = after;
        p += n;
        len -= (size_t)n;
    }
}

static int on_fetch(kconn_t *k, rd_t *r)
{
    kafka_door_t *d = k->d;
    k->fetching = false;
    rd32(r); /* throttle */
    int32_t nt = rd_count(r, 6);
    for (int32_t i = 0; i < nt && !r->bad; i++) {
        int16_t l;
        rd_str(r, &l);
        int32_t np = rd_count(r, 30);
        for (int32_t j = 0; j < np && !r->bad; j++) {
            int32_t id = rd32(r);
            int16_t e = rd16(r);
            rd64(r); /* high watermark */
            rd64(r); /* last stable */
            int32_t na = rd_count(r, 16);
            rd_skip(r, (size_t)na * 16);
            int32_t rl = rd32(r);
            const uint8_t *recs = r->p;
            if (rl > 0)
                rd_skip(r, (size_t)rl);
            if (r->bad)
                break;
            int32_t x = -1;
            for (int32_t y = 0; y < d->nparts; y++)
                if (d->parts[y] == id)
                    x = y;
            if (x < 0)
                continue;
            if (e) {
                d->b->errors++;
                d->next[x] = d->end[x];
                continue;
            }
            if (rl > 0)
                take_records(d, x, recs, (size_t)rl);
        }
    }
    if (r->bad)
        return JN_EPROTO;
    bool done = true;
    for (int32_t x = 0; x < d->nparts; x++)
        done &= d->next[x] >= d->end[x];
    if (done)
        jn__bench_end(d->b);
    else if (d->b->phase == JN_BENCH_RUNNING)
        return send_fetch(k);
    return 0;
}

static int on_produce(kconn_t *k, rd_t *r, const kreq_t *q)
{
    jn_bench_t *b = k->d->b;
    int16_t err = 0;
    int32_t nt = rd_count(r, 6);
    for (int32_t i = 0; i < nt && !r->bad; i++) {
        int16_t l;
        rd_str(r, &l);
        int32_t np = rd_count(r, 22);
        for (int32_t j = 0; j < np && !r->bad; j++) {
            rd32(r);
            int16_t e = rd16(r);
            rd64(r);
            rd64(r);
            if (e)
                err = e;
        }
    }
    if (r->bad)
        return JN_EPROTO;
    if (err) {
        b->errors += (uint64_t)q->records;
        return 0;
    }
    uint64_t now = jn_mono_ns();
    uint64_t lat = now > q->t_sent ? now - q->t_sent : 0;
    b->acked += (uint64_t)q->records;
    for (int32_t i = 0; i < q->records; i++)
        jn__bench_delivered(b, (size_t)b->o->size, lat);
    return 0;
}

static int on_data(jn_bconn_t *c)
{
    kconn_t *k = c->owner;
    int rc = 0;
    size_t off = 0;
    while (c->in.len - off >= 8) {
        const uint8_t *p = c->in.data + off;
        uint32_t size = jn_load_be32(p);
        if (size < 4 || size > KAFKA_RESP_MAX) {
            rc = JN_ETOOBIG;
            break;
        }
        if (c->in.len - off < (size_t)size + 4)
            break;
        int32_t corr = (int32_t)jn_load_be32(p + 4);
        if (k->rcount == 0 || k->reqs[k->rhead].corr != corr) {
            rc = JN_EPROTO;
            break;
        }
        kreq_t q = k->reqs[k->rhead];
        k->rhead = (k->rhead + 1) % k->rcap;
        k->rcount--;
        rd_t r = {p + 8, p + 4 + size, false};
        switch (q.api) {
        case API_VERSIONS: rc = on_versions(k, &r); break;
        case API_METADATA: rc = on_metadata(k, &r); break;
        case API_LIST_OFFSETS: rc = on_list_offsets(k, &r); break;
        case API_FETCH: rc = on_fetch(k, &r); break;
        case API_PRODUCE: rc = on_produce(k, &r, &q); break;
        default: rc = JN_EPROTO;
        }
        if (rc < 0)
            break;
        off += (size_t)size + 4;
    }
    return jn__bclient_parsed(&k->cl, off, rc);
}

static void on_connect(jn_bconn_t *c)
{
    kconn_t *k = c->owner;
    if (send_versions(k) < 0)
        jn__bconn_close(c, JN_ENOMEM);
}

static const jn_bfleet_kind_t kafka_kind = {
    .door = "kafka",
    .pub = "connection",
    .sub = "connection",
    .malformed = "the broker sent a malformed or unexpected response",
    .too_big = "response larger than expected",
    .on_connect = on_connect,
    .on_data = on_data,
    .fill = prod_fill,
};

/* ---- the door ---------------------------------------------------------- */

static void kafka_defaults(void *cfg)
{
    kafka_cfg_t *c = cfg;
    c->mode = "produce";
    c->topic = "jnbench";
    c->batch = 100;
    c->acks = "1";
    c->producers = 1;
    c->inflight = 5;
    c->timeout_ms = 30000;
}

static int parse_acks(const char *s)
{
    if (strcmp(s, "0") == 0)
        return 0;
    if (strcmp(s, "1") == 0)
        return 1;
    if (strcmp(s, "all") == 0 || strcmp(s, "-1") == 0)
        return -1;
    return -2;
}

static int kafka_check(const jn_bench_opts_t *o, char *err, size_t errlen)
{
    const kafka_cfg_t *c = o->cfg;
    if (strcmp(c->mode, "produce") != 0 && strcmp(c->mode, "consume") != 0) {
        snprintf(err, errlen, "--mode must be produce or consume, not '%s'", c->mode);
        return -1;
    }
    if (parse_acks(c->acks) == -2) {
        snprintf(err, errlen, "--acks must be 0, 1, all or -1, not '%s'", c->acks);
        return -1;
    }
    size_t tl = strlen(c->topic);
    if (tl > KAFKA_TOPIC_MAX || strspn(c->topic, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != tl) {
        snprintf(err, errlen, "--topic must be at most %d of [a-zA-Z0-9._-]", KAFKA_TOPIC_MAX);
        return -1;
    }
    if ((uint64_t)c->batch * ((uint64_t)o->size + 32) > (64u << 20)) {
        snprintf(err, errlen, "--batch × --size over 64 MiB per request");
        return -1;
    }
    return 0;
}

static int kafka_open(jn_bench_t *b)
{
    const kafka_cfg_t *cfg = b->cfg;
    kafka_door_t *d = calloc(1, sizeof(*d));
    if (!d)
        goto nomem;
    b->door_state = d;
    d->b = b;
    d->cfg = cfg;
    d->consume = strcmp(cfg->mode, "consume") == 0;
    d->acks = (int16_t)parse_acks(cfg->acks);
    b->has_loss = !d->consume && d->acks != 0;
    size_t size = (size_t)b->o->size;
    d->payload = malloc(size);
    int nprod = d->consume ? 0 : cfg->producers, ncons = d->consume ? 1 : 0;
    d->conns = calloc((size_t)(nprod + ncons), sizeof(*d->conns));
    if (!d->payload || !d->conns || jn_stamp_fill(d->payload, size, 0, 0) < 0)
        goto nomem;
    d->batch_bytes = (size_t)cfg->batch * (size + 32) + 512;
    size_t out_max = d->batch_bytes * 2 + KAFKA_OUT_EXTRA;
    size_t in_max = KAFKA_RESP_MAX + 4 + JN_BENCH_READ_CHUNK;
    jn__bfleet_init(&d->fleet, b, &kafka_kind, d->conns, sizeof(*d->conns), nprod, ncons, in_max, out_max);
    for (int i = 0; i < d->fleet.nconns; i++) {
        kconn_t *k = &d->conns[i];
        k->d = d;
        k->corr = 1;
        k->rcap = (uint32_t)cfg->inflight + 4;
        if (!(k->reqs = calloc(k->rcap, sizeof(*k->reqs))))
            goto nomem;
    }
    return jn__bfleet_connect(&d->fleet);
nomem:
    jn__bench_fail(b, "out of memory");
    return JN_ENOMEM;
}

static void kafka_start(jn_bench_t *b)
{
    kafka_door_t *d = b->door_state;
    if (d->consume) {
        kconn_t *k = &d->conns[0];
        bool done = true;
        for (int32_t x = 0; x < d->nparts; x++)
            done &= d->next[x] >= d->end[x];
        if (done)
            jn__bench_end(b); /* nothing to read */
        else if (send_fetch(k) < 0)
            jn__bconn_close(&k->cl.c, JN_ENOMEM);
        else
            jn__bconn_flush(&k->cl.c);
        return;
    }
    jn__bfleet_start(&d->fleet);
}

static bool kafka_settled(jn_bench_t *b)
{
    kafka_door_t *d = b->door_state;
    if (d->consume)
        return true;
    /* With acks 0 "settled" means written: nothing left to hand over. */
    for (int i = 0; i < d->fleet.nconns; i++) {
        const kconn_t *k = &d->conns[i];
        if (!k->cl.dead && (k->rcount || k->cl.c.writing || k->cl.c.out.len))
            return false;
    }
    return true;
}

static void kafka_close(jn_bench_t *b)
{
    kafka_door_t *d = b->door_state;
    if (!d)
        return;
    for (int i = 0; i < d->fleet.nconns; i++) {
        kconn_t *k = &d->conns[i];
        if (k->retry_init && !uv_is_closing((uv_handle_t *)&k->retry))
            uv_close((uv_handle_t *)&k->retry, NULL);
    }
    jn__bfleet_close(&d->fleet);
}

static void kafka_free(jn_bench_t *b)
{
    kafka_door_t *d = b->door_state;
    jn__bfleet_free(&d->fleet);
    for (int i = 0; i < d->fleet.nconns; i++)
        free(d->conns[i].reqs);
    free(d->conns);
    free(d->payload);
    free(d->parts);
    free(d->next);
    free(d->end);
    free(d);
    b->door_state = NULL;
}

static void kafka_describe(const jn_bench_t *b, json_t *config)
{
    const kafka_cfg_t *c = b->cfg;
    const kafka_door_t *d = b->door_state;
    json_object_set_new(config, "mode", json_string(c->mode));
    json_object_set_new(config, "topic", json_string(c->topic));
    if (d)
        json_object_set_new(config, "partitions", json_integer(d->nparts));
    if (strcmp(c->mode, "produce") == 0) {
        json_object_set_new(config, "batch", json_integer(c->batch));
        json_object_set_new(config, "acks", json_string(c->acks));
        json_object_set_new(config, "producers", json_integer(c->producers));
        json_object_set_new(config, "inflight", json_integer(c->inflight));
    }
}

#define KOPT(f) offsetof(kafka_cfg_t, f)
static const jn_bench_opt_t kafka_opts[] = {
    {"mode", JN_BOPT_STR, KOPT(mode), 0, 0, "produce, or consume from earliest to the end (default produce)"},
    {"topic", JN_BOPT_STR, KOPT(topic), 0, 0, "topic (default jnbench)"},
    {"batch", JN_BOPT_INT, KOPT(batch), 1, 100000, "records per RecordBatch and Produce request (default 100)"},
    {"acks", JN_BOPT_STR, KOPT(acks), 0, 0, "0, 1 or all (default 1)"},
    {"producers", JN_BOPT_INT, KOPT(producers), 1, 1000, "producing connections (default 1)"},
    {"inflight", JN_BOPT_INT, KOPT(inflight), 1, 1000, "unanswered Produce requests per connection (default 5)"},
    {"timeout-ms", JN_BOPT_INT, KOPT(timeout_ms), 1, 3600000, "Produce timeout_ms (default 30000)"},
    {NULL, 0, 0, 0, 0, NULL},
};

const jn_bench_door_t jn__bench_door_kafka = {
    .name = "kafka",
    .summary = "Kafka producer (RecordBatch v2, acks 0/1/all) or consumer from earliest",
    .default_url = "kafka://127.0.0.1:9092",
    .default_port = 9092,
    .schemes = {"kafka", "tcp", NULL},
    .opts = kafka_opts,
    .cfg_size = sizeof(kafka_cfg_t),
    .defaults = kafka_defaults,
    .check = kafka_check,
    .open = kafka_open,
    .start = kafka_start,
    .drain = NULL,
    .settled = kafka_settled,
    .tick = NULL,
    .close = kafka_close,
    .free = kafka_free,
    .describe = kafka_describe,
};
