/* bench_client.c - the connection bookkeeping the client doors of the bench
 * (mqtt, ws, amqp, kafka) share, above bench_conn.c's TCP: roles and
 * readiness, what a lost connection means for the run (a failure while
 * connecting, an error and a warning after), pacing, and the loops of
 * connect, settle, close and free. Each door keeps only its protocol. */
#include "bench/bench_int.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/clock.h"

jn_bclient_t *jn__bfleet_at(jn_bfleet_t *f, int i)
{
    return (jn_bclient_t *)(f->conns + (size_t)i * f->stride);
}

/* The bconn is the first member of the client, which starts the door's
 * struct: the three share one address. */
static jn_bclient_t *client_of(jn_bconn_t *c)
{
    return (jn_bclient_t *)c;
}

static void why_closed(const jn_bfleet_kind_t *kind, int err, char *why, size_t len)
{
    if (err == JN_EPROTO)
        snprintf(why, len, "%s", kind->malformed);
    else if (err == JN_ETOOBIG)
        snprintf(why, len, "%s", kind->too_big);
    else if (err == JN_ECLOSED && kind->closed)
        snprintf(why, len, "%s", kind->closed);
    /* Refusals were reported by jn__bench_fail; our own codes are not
     * libuv's even where the numbers meet. */
    else if (err < 0 && err > -4096 && err != JN_ECLOSED && err != JN_EAUTH && err != JN_EPERM)
        snprintf(why, len, "%s", uv_strerror(err));
    else
        snprintf(why, len, "closed");
}

static void on_close(jn_bconn_t *c, int err)
{
    jn_bclient_t *k = client_of(c);
    jn_bfleet_t *f = k->fleet;
    jn_bench_t *b = f->b;
    if (b->phase == JN_BENCH_DONE || k->dead)
        return;
    char why[96];
    why_closed(f->kind, err, why, sizeof(why));
    const char *role = k->is_pub ? f->kind->pub : f->kind->sub;
    if (b->phase == JN_BENCH_CONNECTING) {
        jn__bench_fail(b, "%s %d: %s %s:%d: %s", role, k->idx,
                       c->was_connected ? "lost its connection to" : "cannot connect to", b->host, b->port, why);
        return;
    }
    k->dead = true;
    b->errors++;
    k->inflight = 0; /* never acknowledged now */
    if (!f->warned_dead && !b->o->json) {
        f->warned_dead = true;
        fprintf(stderr, "\njunction bench %s: %s %d lost its connection (%s)\n", f->kind->door, role, k->idx, why);
    }
    jn__bench_poke(b);
}

static void on_writable(jn_bconn_t *c)
{
    jn_bclient_t *k = client_of(c);
    if (k->is_pub && k->fleet->kind->fill)
        k->fleet->kind->fill(k);
}

static void fill_all(jn_bfleet_t *f)
{
    if (!f->kind->fill)
        return;
    for (int i = 0; i < f->npub; i++)
        f->kind->fill(jn__bfleet_at(f, i));
}

static void on_pace(uv_timer_t *t) { fill_all(t->data); }

void jn__bfleet_init(jn_bfleet_t *f, jn_bench_t *b, const jn_bfleet_kind_t *kind, void *conns, size_t stride,
                     int npub, int nsub, size_t in_max, size_t out_max)
{
    f->b = b;
    f->kind = kind;
    f->conns = conns;
    f->stride = stride;
    f->npub = npub;
    f->nconns = npub + nsub;
    for (int i = 0; i < f->nconns; i++) {
        jn_bclient_t *k = jn__bfleet_at(f, i);
        jn__bconn_init(&k->c, b, k, in_max, out_max);
        k->fleet = f;
        k->is_pub = i < npub;
        k->idx = k->is_pub ? i : i - npub;
        k->c.on_connect = kind->on_connect;
        k->c.on_data = kind->on_data;
        k->c.on_writable = on_writable;
        k->c.on_close = on_close;
    }
}

void jn__bfleet_pace(jn_bfleet_t *f)
{
    uv_timer_init(&f->b->loop, &f->pace_timer);
    f->pace_timer.data = f;
    f->pace_init = true;
}

int jn__bfleet_connect(jn_bfleet_t *f)
{
    jn_bench_t *b = f->b;
    for (int i = 0; i < f->nconns; i++) {
        int rc = jn__bconn_connect(&jn__bfleet_at(f, i)->c);
        if (rc < 0) {
            jn__bench_fail(b, "cannot connect to %s:%d: %s", b->host, b->port, uv_strerror(rc));
            return JN_EIO;
        }
    }
    return 0;
}

void jn__bfleet_start(jn_bfleet_t *f)
{
    if (f->pace_init)
        uv_timer_start(&f->pace_timer, on_pace, JN_BENCH_PACE_MS, JN_BENCH_PACE_MS);
    fill_all(f);
}

void jn__bfleet_drain(jn_bfleet_t *f)
{
    if (f->pace_init)
        uv_timer_stop(&f->pace_timer);
}

bool jn__bfleet_settled(jn_bfleet_t *f)
{
    for (int i = 0; i < f->npub; i++) {
        const jn_bclient_t *k = jn__bfleet_at(f, i);
        if (!k->dead && k->inflight)
            return false;
    }
    return f->b->delivered >= f->b->expected;
}

void jn__bfleet_close(jn_bfleet_t *f)
{
    if (f->pace_init && !uv_is_closing((uv_handle_t *)&f->pace_timer))
        uv_close((uv_handle_t *)&f->pace_timer, NULL);
    for (int i = 0; i < f->nconns; i++)
        jn__bconn_close(&jn__bfleet_at(f, i)->c, 0);
}

void jn__bfleet_free(jn_bfleet_t *f)
{
    for (int i = 0; i < f->nconns; i++)
        jn__bconn_free(&jn__bfleet_at(f, i)->c);
}

void jn__bclient_ready(jn_bclient_t *k)
{
    jn_bfleet_t *f = k->fleet;
    if (k->ready)
        return;
    k->ready = true;
    if (++f->nready == f->nconns)
        jn__bench_ready(f->b);
}

uint64_t jn__bclient_allowance(const jn_bclient_t *k, double rate)
{
    if (rate <= 0)
        return UINT64_MAX;
    jn_bench_t *b = k->fleet->b;
    double due = rate * (double)(jn_mono_ns() - b->t_ready) / 1e9;
    return (uint64_t)due + 1 > k->published ? (uint64_t)due + 1 - k->published : 0;
}

int jn__bclient_parsed(jn_bclient_t *k, size_t used, int rc)
{
    jn_buf_consume(&k->c.in, used);
    if (rc < 0)
        return rc;
    if (k->is_pub && k->fleet->kind->fill)
        k->fleet->kind->fill(k);
    jn__bconn_flush(&k->c);
    jn__bench_poke(k->fleet->b);
    return 0;
}
