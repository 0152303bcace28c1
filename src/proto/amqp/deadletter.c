/* deadletter.c - the x-death history and dead-letter cycle rule of the
 * AMQP door (deadletter.h). Entries that are not changed are copied as raw
 * bytes, so every field type a client or an older broker put there
 * survives a dead-lettering untouched.
 */
#include "deadletter.h"

#include <stdio.h>
#include <string.h>

#include "codec.h"

static bool key_is(const jn_amqp_str_t *k, const char *s)
{
    size_t n = strlen(s);
    return k->len == n && memcmp(k->p, s, n) == 0;
}

static bool key_prefix(const jn_amqp_str_t *k, const char *s)
{
    size_t n = strlen(s);
    return k->len >= n && memcmp(k->p, s, n) == 0;
}

static bool val_is(const jn_amqp_value_t *v, const char *s)
{
    size_t n = strlen(s);
    return (v->type == 'S' || v->type == 'x') && v->len == n && memcmp(v->p, s, n) == 0;
}

/* The queue and reason of one x-death entry (a table's bytes); types are
 * 0 when missing. */
static void entry_id(const uint8_t *p, size_t len, jn_amqp_value_t *queue, jn_amqp_value_t *reason)
{
    queue->type = 0;
    reason->type = 0;
    jn_amqp_iter_t it;
    jn_amqp_str_t k;
    jn_amqp_value_t v;
    jn_amqp_iter_init(&it, p, len);
    while (jn_amqp_table_next(&it, &k, &v) == 1) {
        if (key_is(&k, "queue"))
            *queue = v;
        else if (key_is(&k, "reason"))
            *reason = v;
    }
}

static int put_timestamp(jn_buf_t *b, const char *key, int64_t secs)
{
    int rc = jn_amqp_put_key(b, key);
    if (!rc)
        rc = jn_buf_put_u8(b, 'T');
    if (!rc)
        rc = jn_buf_put_be64(b, (uint64_t)(secs < 0 ? 0 : secs));
    return rc;
}

/* A new x-death entry for |d|, as an array element ('F' + table). */
static int put_new_entry(jn_buf_t *b, const jn_amqp_death_t *d)
{
    size_t mark, amark;
    int rc = jn_buf_put_u8(b, 'F');
    if (!rc)
        rc = jn_amqp_table_begin(b, &mark);
    if (!rc)
        rc = jn_amqp_put_long(b, "count", 1);
    if (!rc)
        rc = jn_amqp_put_str(b, "reason", d->reason, strlen(d->reason));
    if (!rc)
        rc = jn_amqp_put_str(b, "queue", d->queue, strlen(d->queue));
    if (!rc)
        rc = put_timestamp(b, "time", d->time_s);
    if (!rc)
        rc = jn_amqp_put_str(b, "exchange", d->exchange, d->exchange_len);
    if (!rc)
        rc = jn_amqp_put_key(b, "routing-keys");
    if (!rc)
        rc = jn_buf_put_u8(b, 'A');
    if (!rc)
        rc = jn_amqp_table_begin(b, &amark);
    if (!rc)
        rc = jn_amqp_put_str(b, NULL, d->routing_key, d->routing_key_len);
    if (!rc) {
        jn_amqp_table_end(b, amark);
        if (d->expiration)
            rc = jn_amqp_put_str(b, "original-expiration", d->expiration, d->expiration_len);
    }
    if (!rc)
        jn_amqp_table_end(b, mark);
    return rc;
}

/* The entry |p|/|len| again with its count incremented. */
static int put_counted_entry(jn_buf_t *b, const uint8_t *p, size_t len)
{
    size_t mark;
    bool counted = false;
    int rc = jn_buf_put_u8(b, 'F');
    if (!rc)
        rc = jn_amqp_table_begin(b, &mark);
    jn_amqp_iter_t it;
    jn_amqp_str_t k;
    jn_amqp_value_t v;
    jn_amqp_iter_init(&it, p, len);
    for (;;) {
        const uint8_t *at = it.p;
        if (rc || jn_amqp_table_next(&it, &k, &v) != 1)
            break;
        if (key_is(&k, "count") && !counted) {
            static const char ints[] = "bBsUuIilL";
            int64_t n = v.type && strchr(ints, v.type) && v.i >= 0 ? v.i : 0;
            rc = jn_amqp_put_long(b, "count", n + 1);
            counted = true;
        } else {
            rc = jn_buf_append(b, at, (size_t)(it.p - at));
        }
    }
    if (!rc && !counted)
        rc = jn_amqp_put_long(b, "count", 1);
    if (!rc)
        jn_amqp_table_end(b, mark);
    return rc;
}

static int put_summary(jn_buf_t *b, const char *prefix, const jn_amqp_death_t *d)
{
    char key[32];
    snprintf(key, sizeof key, "%sreason", prefix);
    int rc = jn_amqp_put_str(b, key, d->reason, strlen(d->reason));
    snprintf(key, sizeof key, "%squeue", prefix);
    if (!rc)
        rc = jn_amqp_put_str(b, key, d->queue, strlen(d->queue));
    snprintf(key, sizeof key, "%sexchange", prefix);
    if (!rc)
        rc = jn_amqp_put_str(b, key, d->exchange, d->exchange_len);
    return rc;
}

int jn_amqp_dead_letter_headers(jn_buf_t *out, const uint8_t *old, size_t old_len, const jn_amqp_death_t *d)
{
    size_t start = out->len, mark;
    const uint8_t *xd = NULL;
    uint32_t xd_len = 0;
    bool have_first = false;
    int rc = 0;
    jn_amqp_iter_t it;
    jn_amqp_str_t k;
    jn_amqp_value_t v;
    jn_amqp_iter_init(&it, old, old_len);
    for (;;) {
        const uint8_t *at = it.p;
        int n = jn_amqp_table_next(&it, &k, &v);
        if (n < 0) {
            rc = JN_EPROTO;
            goto fail;
        }
        if (n == 0)
            break;
        if (key_is(&k, "x-death")) {
            if (v.type == 'A') {
                xd = v.p;
                xd_len = v.len;
            }
            continue;
        }
        if (key_prefix(&k, "x-last-death-"))
            continue;
        if (key_prefix(&k, "x-first-death-"))
            have_first = true;
        rc = jn_buf_append(out, at, (size_t)(it.p - at));
        if (rc)
            goto fail;
    }

    /* x-death: the entry of this death first, then the others in order. */
    const uint8_t *match = NULL;
    uint32_t match_len = 0;
    jn_amqp_iter_init(&it, xd, xd_len);
    while (jn_amqp_array_next(&it, &v) == 1) {
        jn_amqp_value_t q, r;
        if (v.type != 'F')
            continue;
        entry_id(v.p, v.len, &q, &r);
        if (val_is(&q, d->queue) && val_is(&r, d->reason)) {
            match = v.p;
            match_len = v.len;
            break;
        }
    }
    rc = jn_amqp_put_key(out, "x-death");
    if (!rc)
        rc = jn_buf_put_u8(out, 'A');
    if (!rc)
        rc = jn_amqp_table_begin(out, &mark);
    if (!rc)
        rc = match ? put_counted_entry(out, match, match_len) : put_new_entry(out, d);
    jn_amqp_iter_init(&it, xd, xd_len);
    for (;;) {
        const uint8_t *at = it.p;
        if (rc || jn_amqp_array_next(&it, &v) != 1)
            break;
        if (v.type == 'F' && v.p == match)
            continue;
        rc = jn_buf_append(out, at, (size_t)(it.p - at));
    }
    if (rc)
        goto fail;
    jn_amqp_table_end(out, mark);
    if (!have_first)
        rc = put_summary(out, "x-first-death-", d);
    if (!rc)
        rc = put_summary(out, "x-last-death-", d);
    if (rc)
        goto fail;
    return 0;
fail:
    out->len = start;
    return rc;
}

bool jn_amqp_dead_letter_cycle(const uint8_t *tbl, size_t len, const char *queue)
{
    jn_amqp_value_t xd, v;
    if (jn_amqp_table_get(tbl, len, "x-death", &xd) != 1 || xd.type != 'A')
        return false;
    bool rejected = false;
    jn_amqp_iter_t it;
    jn_amqp_iter_init(&it, xd.p, xd.len);
    while (jn_amqp_array_next(&it, &v) == 1) {
        jn_amqp_value_t q, r;
        if (v.type != 'F')
            continue;
        entry_id(v.p, v.len, &q, &r);
        if (val_is(&r, "rejected"))
            rejected = true;
        if (val_is(&q, queue))
            return !rejected;
    }
    return false;
}
