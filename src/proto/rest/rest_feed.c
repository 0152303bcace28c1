/* rest_feed.c - GET /v1/subscribe: a live NDJSON feed (one record JSON per
 * line, chunked) driven by a broker subscription.
 *
 * Flow control is the subscription's: when the connection's output passes
 * its high-water mark the feed pauses the subscription (which then lags in
 * the log, costing the server nothing) and resumes it from the drain
 * callback. A feed ends when the client goes away (abort), after |limit|
 * records, or when the door is freed. The subscription may not be closed
 * from inside its deliver callback, so the limit ends the feed from a
 * zero-delay timer instead.
 */
#include "rest_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"
#include "../../core/filter.h"

#define FEED_LINE_MAX (64u << 20) /* one rendered record (base64 of a large value) */

typedef struct rest_feed {
    jn_list_t node;       /* in jn_rest_t.feeds while live */
    jn_rest_t *rest;
    jn_http_req_t *req;   /* NULL once the request is finished or aborted */
    jn_sub_t *sub;
    uint64_t limit;       /* 0 = unlimited */
    uint64_t sent;
    bool blocked;         /* output above high water: waiting for drain */
    bool ending;          /* end scheduled on the timer */
    uv_timer_t timer;     /* defers the end out of the deliver callback */
    jn_buf_t line;        /* reused per record */
} rest_feed_t;

static void feed_close_cb(uv_handle_t *h)
{
    rest_feed_t *f = h->data;
    jn_buf_free(&f->line);
    free(f);
}

/* Stops everything but the request; frees the feed once the timer closed. */
static void feed_release(rest_feed_t *f)
{
    jn_list_remove(&f->node);
    if (f->sub)
        jn_sub_close(f->sub);
    f->sub = NULL;
    uv_timer_stop(&f->timer);
    uv_close((uv_handle_t *)&f->timer, feed_close_cb);
}

/* Ends the response (if still ours) and releases the feed. */
static void feed_end(rest_feed_t *f)
{
    jn_http_req_t *req = f->req;
    f->req = NULL;
    if (req) {
        jn_http_req_set_data(req, NULL);
        jn_http_req_on_abort(req, NULL);
        jn_http_req_on_drain(req, NULL);
        jn_http_stream_end(req);
    }
    feed_release(f);
}

static void feed_timer_cb(uv_timer_t *t)
{
    feed_end(t->data);
}

static void feed_abort(jn_http_req_t *req, void *data)
{
    rest_feed_t *f = data;
    if (!f)
        return;
    f->req = NULL;
    feed_release(f);
}

static void feed_drain(jn_http_req_t *req, void *data)
{
    rest_feed_t *f = data;
    if (!f || !f->sub || f->ending)
        return;
    f->blocked = false;
    jn_sub_resume(f->sub);
}

static void feed_schedule_end(rest_feed_t *f)
{
    if (f->ending)
        return;
    f->ending = true;
    if (f->sub)
        jn_sub_pause(f->sub);
    if (uv_timer_start(&f->timer, feed_timer_cb, 0, 0) < 0)
        jn_warn("rest: cannot schedule the end of a feed");
}

static int feed_deliver(jn_sub_t *sub, const jn_delivery_t *d, void *arg)
{
    rest_feed_t *f = arg;
    if (!f->req || f->ending)
        return JN_EAGAIN;
    const char *sname = jn_stream_name(d->stream);
    jn_buf_reset(&f->line);
    int rc = jn_rest_record_json(&f->line, sname, strlen(sname), d->partition, d->rec, d->subject, d->subject_len);
    if (rc == 0)
        rc = jn_buf_append(&f->line, "\n", 1);
    if (rc < 0) {
        /* Too large to render: say so in its place rather than stall. */
        jn_buf_reset(&f->line);
        if (jn_buf_printf(&f->line,
                          "{\"stream\":\"%s\",\"partition\":%" PRIu32 ",\"offset\":%" PRId64
                          ",\"error\":\"payload_too_large\"}\n",
                          sname, d->partition, d->rec->offset) < 0)
            return JN_EAGAIN;
    }
    rc = jn_http_stream_write(f->req, f->line.data, f->line.len);
    if (rc == JN_ETOOBIG) {
        if (f->blocked)
            return JN_EAGAIN; /* not queued: offered again after the drain */
        /* The output is below its mark and the line still does not fit:
         * it never will. Replace it by a marker so the feed goes on. */
        char small[256];
        int n = snprintf(small, sizeof(small),
                         "{\"stream\":\"%s\",\"partition\":%" PRIu32 ",\"offset\":%" PRId64
                         ",\"error\":\"payload_too_large\"}\n",
                         sname, d->partition, d->rec->offset);
        rc = jn_http_stream_write(f->req, small, (size_t)(n > 0 && (size_t)n < sizeof(small) ? n : 0));
        if (rc == JN_ETOOBIG)
            return JN_EAGAIN;
    }
    if (rc == JN_EAGAIN) {
        /* Queued, but the connection is now above its mark. */
        f->blocked = true;
        jn_sub_pause(sub);
    } else if (rc < 0) {
        /* The connection is going away; its abort ends the feed. */
        return JN_EAGAIN;
    }
    f->sent++;
    if (f->limit && f->sent >= f->limit)
        feed_schedule_end(f);
    return 0;
}

/* Parses from= into |o|. Returns 0 or JN_EINVAL. */
static int parse_from(const char *from, jn_sub_opts_t *o)
{
    int64_t v;
    if (!from[0] || strcmp(from, "live") == 0) {
        o->start = JN_START_LIVE;
    } else if (strcmp(from, "earliest") == 0) {
        o->start = JN_START_EARLIEST;
    } else if (strncmp(from, "time:", 5) == 0) {
        if (jn_rest_parse_i64(from + 5, &v) < 0 || v < 0)
            return JN_EINVAL;
        o->start = JN_START_TIME;
        o->start_value = v;
    } else {
        if (jn_rest_parse_i64(from, &v) < 0 || v < 0)
            return JN_EINVAL;
        o->start = JN_START_OFFSET;
        o->start_value = v;
    }
    return 0;
}

void jn__rest_subscribe(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    char filter[JN_SUBJECT_MAX + 1];
    char from[64] = "";
    char group[JN_STREAM_NAME_MAX + 2] = "";
    rest_feed_t *f = NULL;

    int n = jn_http_req_query(req, "filter", filter, sizeof(filter));
    if (n < 0 || jn_filter_validate(filter, (size_t)n) < 0) {
        jn_http_respond_error(req, 400, n == JN_ENOENT ? "bad_request" : "invalid_name",
                              n == JN_ENOENT ? "query parameter 'filter' is required" : "invalid filter");
        return;
    }
    if (!jn__rest_allow(r, req, &p, JN_PERM_SUBSCRIBE, filter))
        return;
    jn_sub_opts_t o = {.filter = filter, .deliver = feed_deliver};
    int q = jn_http_req_query(req, "from", from, sizeof(from));
    if ((q < 0 && q != JN_ENOENT) || parse_from(from, &o) < 0) {
        jn_http_respond_error(req, 400, "bad_request", "from must be live, earliest, <offset> or time:<ms>");
        return;
    }
    q = jn_http_req_query(req, "group", group, sizeof(group));
    if (q < 0 && q != JN_ENOENT) {
        jn_http_respond_error(req, 400, "invalid_name", "invalid group name");
        return;
    }
    if (q >= 0) {
        if (q == 0) {
            jn_http_respond_error(req, 400, "invalid_name", "invalid group name");
            return;
        }
        if (o.start != JN_START_LIVE && o.start != JN_START_EARLIEST) {
            jn_http_respond_error(req, 400, "bad_request", "with group=, from may only be live or earliest");
            return;
        }
        o.group_default = o.start;
        o.start = JN_START_GROUP;
        o.group = group;
    }
    int64_t limit = 0;
    q = jn__rest_query_i64(req, "limit", &limit);
    if (q < 0)
        return;
    if (q && limit < 1) {
        jn_http_respond_error(req, 400, "bad_request", "limit must be positive");
        return;
    }

    f = calloc(1, sizeof(*f));
    if (!f) {
        jn__rest_fail(req, JN_ENOMEM, false, "out of memory");
        return;
    }
    jn_list_init(&f->node);
    f->rest = r;
    f->req = req;
    f->limit = (uint64_t)limit;
    jn_buf_init(&f->line, FEED_LINE_MAX);
    o.arg = f;
    int rc = jn_broker_subscribe(r->broker, &o, &f->sub);
    if (rc < 0) {
        jn__rest_fail(req, rc, rc == JN_EINVAL, "cannot subscribe to '%s'", filter);
        free(f);
        return;
    }
    rc = jn_http_stream_begin(req, 200, "application/x-ndjson");
    if (rc < 0) {
        jn_sub_close(f->sub);
        free(f);
        jn__rest_fail(req, rc, false, "cannot start the feed");
        return;
    }
    if (uv_timer_init(jn_broker_loop(r->broker), &f->timer) < 0) {
        /* Cannot happen with a live loop; end the empty feed cleanly. */
        jn_sub_close(f->sub);
        free(f);
        jn_http_stream_end(req);
        return;
    }
    f->timer.data = f;
    jn_list_insert_tail(&r->feeds, &f->node);
    jn_http_req_set_data(req, f);
    jn_http_req_on_abort(req, feed_abort);
    jn_http_req_on_drain(req, feed_drain);
}

void jn__rest_feeds_end_all(jn_rest_t *r)
{
    jn_list_t *pos, *tmp;
    jn_list_foreach_safe(pos, tmp, &r->feeds) {
        rest_feed_t *f = jn_container_of(pos, rest_feed_t, node);
        feed_end(f);
    }
}
