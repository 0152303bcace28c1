/* sse.c - GET /v1/events: a broker subscription written as
 * text/event-stream (docs/sse.md).
 *
 * Exactly-once across reconnects rests on one rule kept in the deliver
 * callback: a record (s, p, o) is written only when o >= vec[s][p], and
 * writing it sets vec[s][p] = o + 1, where vec is the connection's position
 * vector (sse_id.h). Every event's id carries vec as it stands after that
 * event, so the id a client last received says, for every partition, what
 * it has and has not been sent.
 *
 * On resume the broker cannot start a subscription at a different offset
 * per partition, so it starts at the smallest position any covered
 * partition needs (JN_START_OFFSET, clamped per partition by the broker)
 * and the rule above drops what the client already has. The cost is a
 * re-read of the gap between the partitions' positions; nothing is sent
 * twice.
 *
 * vec is maintained from what is written rather than read from
 * jn_sub_position in the callback: while one publish fans out over several
 * partitions, a partition not yet offered already reports its new end.
 */
#include "sse.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../common/list.h"
#include "../../common/log.h"
#include "../../core/filter.h"
#include "../common/door_metrics.h"
#define JN_REST_PURE_ONLY
#include "../rest/rest_internal.h"
#include "sse_id.h"

#define SSE_EVENT_MAX (64u << 20) /* one rendered event (base64 of a large value) */
#define SSE_HEARTBEAT_DEFAULT_MS 15000u
#define SSE_RETRY_DEFAULT_MS 2000u
#define SSE_CRED_MAX 1536 /* longest token or user:password accepted */

struct jn_sse {
    jn_httpd_t *httpd;
    jn_broker_t *broker;
    jn_auth_t *auth;
    jn_sse_config_t cfg;
    jn_list_t conns;       /* open streams (sse_conn_t.node) */
    jn_gauge_t *m_conns;   /* junction_door_connections{door="sse"} */
    jn_counter_t *m_out;   /* junction_door_messages_total{door="sse",direction="out"} */
};

typedef struct sse_conn {
    jn_list_t node;       /* in jn_sse_t.conns while open */
    jn_sse_t *door;
    jn_http_req_t *req;   /* NULL once finished or aborted */
    jn_sub_t *sub;
    jn_sse_vec_t vec;     /* next offset not yet written, per partition */
    uint64_t limit;       /* 0 = unlimited */
    uint64_t sent;
    bool blocked;         /* output above high water: waiting for drain */
    bool ending;          /* end scheduled on the timer */
    uint32_t hb_ms;
    uv_timer_t timer;     /* heartbeats; also defers the end out of the deliver callback */
    jn_buf_t ev;          /* the event being written, reused */
    jn_buf_t json;        /* the record JSON, reused */
} sse_conn_t;

/* ---- lifecycle ---- */

static void conn_close_cb(uv_handle_t *h)
{
    sse_conn_t *c = h->data;
    jn_buf_free(&c->ev);
    jn_buf_free(&c->json);
    jn_sse_vec_free(&c->vec);
    free(c);
}

/* Stops everything but the request; frees the connection once the timer
 * has closed. */
static void conn_release(sse_conn_t *c)
{
    jn_list_remove(&c->node);
    if (c->door->m_conns)
        c->door->m_conns->value--;
    if (c->sub)
        jn_sub_close(c->sub);
    c->sub = NULL;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_close_cb);
}

static void conn_end(sse_conn_t *c)
{
    jn_http_req_t *req = c->req;
    c->req = NULL;
    if (req) {
        jn_http_req_set_data(req, NULL);
        jn_http_req_on_abort(req, NULL);
        jn_http_req_on_drain(req, NULL);
        jn_http_stream_end(req);
    }
    conn_release(c);
}

static void end_timer_cb(uv_timer_t *t)
{
    conn_end(t->data);
}

static void conn_schedule_end(sse_conn_t *c)
{
    if (c->ending)
        return;
    c->ending = true;
    if (c->sub)
        jn_sub_pause(c->sub);
    /* Restarting the heartbeat timer with another callback: one handle. */
    if (uv_timer_start(&c->timer, end_timer_cb, 0, 0) < 0)
        jn_warn("sse: cannot schedule the end of a stream");
}

static void conn_abort(jn_http_req_t *req, void *data)
{
    (void)req;
    sse_conn_t *c = data;
    if (!c)
        return;
    c->req = NULL;
    conn_release(c);
}

static void conn_drain(jn_http_req_t *req, void *data)
{
    (void)req;
    sse_conn_t *c = data;
    if (!c || !c->sub || c->ending)
        return;
    c->blocked = false;
    jn_sub_resume(c->sub);
}

static void heartbeat_cb(uv_timer_t *t)
{
    sse_conn_t *c = t->data;
    if (!c->req || c->ending || c->blocked)
        return; /* a blocked connection has bytes in flight: no need to prove it alive */
    static const char hb[] = ": hb\n\n";
    int rc = jn_http_stream_write(c->req, hb, sizeof hb - 1);
    if (rc == JN_EAGAIN) {
        c->blocked = true;
        if (c->sub)
            jn_sub_pause(c->sub);
    }
}

/* ---- delivery ---- */

/* Builds the event for |d| in c->ev with the id of |vec| as it stands. */
static int render_event(sse_conn_t *c, const jn_delivery_t *d, const char *sname, size_t slen, bool marker)
{
    jn_buf_t *ev = &c->ev;
    jn_buf_reset(ev);
    int rc = jn_buf_append(ev, "id: ", 4);
    if (rc == 0) {
        rc = jn_sse_id_format(&c->vec, sname, slen, d->partition, d->rec->offset, ev);
        if (rc == JN_ETOOBIG) {
            /* Wider than an id may be: the bare record id still resumes
             * this partition exactly (docs/sse.md, limits). */
            rc = jn_buf_printf(ev, "%.*s/%" PRIu32 "/%" PRId64, (int)slen, sname, d->partition, d->rec->offset);
        }
    }
    if (rc == 0)
        rc = jn_buf_append_str(ev, "\nevent: record\ndata: ");
    if (rc == 0 && !marker) {
        jn_buf_reset(&c->json);
        rc = jn_rest_record_json(&c->json, sname, slen, d->partition, d->rec, d->subject, d->subject_len);
        if (rc == 0)
            rc = jn_buf_append(ev, c->json.data, c->json.len);
    }
    if (rc == 0 && marker)
        rc = jn_buf_printf(ev,
                           "{\"stream\":\"%.*s\",\"partition\":%" PRIu32 ",\"offset\":%" PRId64
                           ",\"error\":\"payload_too_large\"}",
                           (int)slen, sname, d->partition, d->rec->offset);
    if (rc == 0)
        rc = jn_buf_append(ev, "\n\n", 2);
    return rc;
}

static int conn_deliver(jn_sub_t *sub, const jn_delivery_t *d, void *arg)
{
    sse_conn_t *c = arg;
    if (!c->req || c->ending)
        return JN_EAGAIN;
    const char *sname = jn_stream_name(d->stream);
    size_t slen = strlen(sname);
    int64_t off = d->rec->offset;
    int64_t had = jn_sse_vec_get(&c->vec, sname, slen, d->partition);
    if (off < had)
        return 0; /* the client had it before it reconnected */

    if (jn_sse_vec_set(&c->vec, sname, slen, d->partition, off + 1) < 0) {
        jn_warn("sse: out of memory for a position; ending the stream");
        conn_schedule_end(c);
        return JN_EAGAIN;
    }
    int rc = render_event(c, d, sname, slen, false);
    if (rc < 0)
        rc = render_event(c, d, sname, slen, true); /* too large to render: say so in its place */
    if (rc == 0) {
        rc = jn_http_stream_write(c->req, c->ev.data, c->ev.len);
        if (rc == JN_ETOOBIG && !c->blocked) {
            /* Below the mark and still too big: it never will fit. */
            if (render_event(c, d, sname, slen, true) == 0)
                rc = jn_http_stream_write(c->req, c->ev.data, c->ev.len);
        }
    }
    if (rc == 0 || rc == JN_EAGAIN) {
        if (rc == JN_EAGAIN) {
            /* Queued, but the connection is now above its mark. */
            c->blocked = true;
            jn_sub_pause(sub);
        }
        c->sent++;
        if (c->door->m_out)
            jn_counter_inc(c->door->m_out);
        if (c->limit && c->sent >= c->limit)
            conn_schedule_end(c);
        return 0;
    }
    /* Not written (over the cap, or the connection is going away): the
     * record is offered again after the drain, so its position is not
     * the client's yet. */
    if (jn_sse_vec_set(&c->vec, sname, slen, d->partition, had) < 0)
        jn_debug("sse: cannot restore a position"); /* unreachable: the entry exists */
    return JN_EAGAIN;
}

static int ignore_deliver(jn_sub_t *sub, const jn_delivery_t *d, void *arg)
{
    (void)sub;
    (void)d;
    (void)arg;
    return JN_EAGAIN;
}

/* ---- request parsing ---- */

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

static void unauthorized(jn_http_req_t *req, const char *msg)
{
    if (jn_http_add_header(req, "WWW-Authenticate", "Bearer") < 0)
        jn_debug("sse: cannot add WWW-Authenticate");
    jn_http_respond_error(req, 401, "unauthorized", "%s", msg);
}

static bool prefix_ci(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && strncasecmp(s, prefix, n) == 0;
}

/* As the REST door: Authorization Bearer or Basic, else ?token= (for
 * EventSource, which cannot set headers), else anonymous when allowed.
 * Answers 401 and returns false on failure. */
static bool sse_auth(jn_sse_t *s, jn_http_req_t *req, jn_principal_t *p)
{
    char cred[SSE_CRED_MAX];
    size_t len;
    int rc = JN_EAUTH;
    const char *h = jn_http_req_header(req, "Authorization", &len);
    if (h) {
        if (prefix_ci(h, len, "Bearer ")) {
            size_t n = len - 7;
            if (n > 0 && n < sizeof cred) {
                memcpy(cred, h + 7, n);
                cred[n] = '\0';
                rc = jn_auth_check_token(s->auth, cred, p);
            }
        } else if (prefix_ci(h, len, "Basic ")) {
            size_t n = len - 6;
            if (n > 0 && jn_rest_base64_decoded_max(n) < sizeof cred) {
                int dl = jn_rest_base64_decode(h + 6, n, (uint8_t *)cred);
                if (dl > 0) {
                    cred[dl] = '\0';
                    char *colon = memchr(cred, ':', (size_t)dl);
                    if (colon && strlen(cred) == (size_t)dl) {
                        *colon = '\0';
                        rc = jn_auth_check_password(s->auth, cred, colon + 1, p);
                    }
                }
            }
        }
    } else {
        int n = jn_http_req_query(req, "token", cred, sizeof cred);
        if (n == JN_ENOENT) {
            if (!s->cfg.allow_anonymous) {
                unauthorized(req, "credentials required");
                return false;
            }
            jn_principal_anonymous(p);
            return true;
        }
        if (n > 0)
            rc = jn_auth_check_token(s->auth, cred, p);
    }
    if (rc < 0) {
        unauthorized(req, "invalid credentials");
        return false;
    }
    return true;
}

/* Reads the resume id: the Last-Event-ID header, else ?last_event_id=.
 * Returns 1 with |vec| filled, 0 when there is none, or -1 after answering
 * 400. An empty id is no id (EventSource sends what the server last set). */
static int read_resume(jn_http_req_t *req, jn_sse_vec_t *vec)
{
    size_t len = 0;
    const char *h = jn_http_req_header(req, "Last-Event-ID", &len);
    char *q = NULL;
    int rc;
    if (!h) {
        q = malloc(JN_SSE_ID_MAX + 1);
        if (!q) {
            jn_http_respond_error(req, 500, "internal", "out of memory");
            return -1;
        }
        int n = jn_http_req_query(req, "last_event_id", q, JN_SSE_ID_MAX + 1);
        if (n == JN_ENOENT) {
            free(q);
            return 0;
        }
        if (n < 0) {
            free(q);
            jn_http_respond_error(req, 400, "bad_request", "last_event_id is not a valid event id");
            return -1;
        }
        h = q;
        len = (size_t)n;
    }
    while (len > 0 && (h[0] == ' ' || h[0] == '\t')) {
        h++;
        len--;
    }
    while (len > 0 && (h[len - 1] == ' ' || h[len - 1] == '\t'))
        len--;
    if (len == 0) {
        free(q);
        return 0;
    }
    rc = jn_sse_id_parse(h, len, vec);
    free(q);
    if (rc == JN_ENOMEM) {
        jn_http_respond_error(req, 500, "internal", "out of memory");
        return -1;
    }
    if (rc < 0) {
        jn_http_respond_error(req, 400, "bad_request", "Last-Event-ID is not an event id of this server");
        return -1;
    }
    return 1;
}

/* Where a resumed subscription must start: the smallest position any
 * partition it covers needs (a partition absent from |vec| needs its log
 * start). Positions past a log's end (the stream was recreated) are pulled
 * back to the end. Uses a throwaway live subscription to learn which
 * partitions the filter covers. */
static int resume_start(jn_broker_t *b, const char *filter, jn_sse_vec_t *vec, int64_t *start)
{
    jn_sub_opts_t po = {.filter = filter, .start = JN_START_LIVE, .deliver = ignore_deliver};
    jn_sub_t *probe;
    int rc = jn_broker_subscribe(b, &po, &probe);
    if (rc < 0)
        return rc;
    int64_t m = INT64_MAX;
    for (jn_stream_t *s = jn_broker_stream_next(b, NULL); s; s = jn_broker_stream_next(b, s)) {
        const char *name = jn_stream_name(s);
        size_t nlen = strlen(name);
        for (uint32_t p = 0; p < jn_stream_partitions(s); p++) {
            if (jn_sub_position(probe, s, p) < 0)
                continue; /* not covered */
            const jn_plog_t *log = jn_stream_plog(s, p);
            int64_t lo = jn_plog_start_offset(log), hi = jn_plog_end_offset(log);
            int64_t want = jn_sse_vec_get(vec, name, nlen, p);
            if (want > hi) {
                want = hi;
                if ((rc = jn_sse_vec_set(vec, name, nlen, p, want)) < 0)
                    goto out;
            }
            if (want < lo)
                want = lo;
            if (want < m)
                m = want;
        }
    }
    *start = m == INT64_MAX ? 0 : m;
    rc = 0;
out:
    jn_sub_close(probe);
    return rc;
}

/* Raises |vec| to where the new subscription stands in every partition it
 * covers: its start positions, which nothing has been written before. */
static int seed_positions(jn_broker_t *b, jn_sub_t *sub, jn_sse_vec_t *vec)
{
    for (jn_stream_t *s = jn_broker_stream_next(b, NULL); s; s = jn_broker_stream_next(b, s)) {
        const char *name = jn_stream_name(s);
        size_t nlen = strlen(name);
        for (uint32_t p = 0; p < jn_stream_partitions(s); p++) {
            int64_t at = jn_sub_position(sub, s, p);
            if (at <= jn_sse_vec_get(vec, name, nlen, p))
                continue; /* not covered (JN_ENOENT), or the client is further */
            int rc = jn_sse_vec_set(vec, name, nlen, p, at);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static void sse_events(jn_http_req_t *req, void *arg)
{
    jn_sse_t *s = arg;
    jn_principal_t p;
    char filter[JN_SUBJECT_MAX + 1];
    char from[64] = "";
    sse_conn_t *c = NULL;
    bool resumed = false;
    int rc;

    int n = jn_http_req_query(req, "filter", filter, sizeof filter);
    if (n < 0 || jn_filter_validate(filter, (size_t)n) < 0) {
        jn_http_respond_error(req, 400, n == JN_ENOENT ? "bad_request" : "invalid_name",
                              n == JN_ENOENT ? "query parameter 'filter' is required" : "invalid filter");
        return;
    }
    if (!sse_auth(s, req, &p))
        return;
    if (!p.admin && !jn_auth_allowed(s->auth, &p, JN_PERM_SUBSCRIBE, filter, (size_t)n)) {
        jn_http_respond_error(req, 403, "forbidden", "%s may not subscribe on '%s'", p.name, filter);
        return;
    }
    jn_sub_opts_t o = {.filter = filter, .deliver = conn_deliver};
    int q = jn_http_req_query(req, "from", from, sizeof from);
    if ((q < 0 && q != JN_ENOENT) || parse_from(from, &o) < 0) {
        jn_http_respond_error(req, 400, "bad_request", "from must be live, earliest, <offset> or time:<ms>");
        return;
    }
    int64_t v = 0;
    char num[32];
    uint32_t hb_ms = s->cfg.heartbeat_ms;
    q = jn_http_req_query(req, "heartbeat", num, sizeof num);
    if (q != JN_ENOENT) {
        if (q < 0 || jn_rest_parse_i64(num, &v) < 0 || v < 1 || v > 3600) {
            jn_http_respond_error(req, 400, "bad_request", "heartbeat must be 1..3600 seconds");
            return;
        }
        hb_ms = (uint32_t)v * 1000u;
    }
    uint32_t retry_ms = s->cfg.retry_ms;
    q = jn_http_req_query(req, "retry", num, sizeof num);
    if (q != JN_ENOENT) {
        if (q < 0 || jn_rest_parse_i64(num, &v) < 0 || v < 100 || v > 600000) {
            jn_http_respond_error(req, 400, "bad_request", "retry must be 100..600000 milliseconds");
            return;
        }
        retry_ms = (uint32_t)v;
    }
    int64_t limit = 0;
    q = jn_http_req_query(req, "limit", num, sizeof num);
    if (q != JN_ENOENT) {
        if (q < 0 || jn_rest_parse_i64(num, &limit) < 0 || limit < 1) {
            jn_http_respond_error(req, 400, "bad_request", "limit must be a positive integer");
            return;
        }
    }

    c = calloc(1, sizeof *c);
    if (!c) {
        jn_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    jn_list_init(&c->node);
    jn_sse_vec_init(&c->vec);
    jn_buf_init(&c->ev, SSE_EVENT_MAX);
    jn_buf_init(&c->json, SSE_EVENT_MAX);
    c->door = s;
    c->req = req;
    c->limit = (uint64_t)limit;
    c->hb_ms = hb_ms;

    int r = read_resume(req, &c->vec);
    if (r < 0)
        goto fail_answered;
    if (r == 1) {
        /* Last-Event-ID wins over from=: the id says where every partition stands. */
        resumed = true;
        int64_t start;
        rc = resume_start(s->broker, filter, &c->vec, &start);
        if (rc < 0)
            goto fail;
        o.start = JN_START_OFFSET;
        o.start_value = start;
    }
    o.arg = c;
    rc = jn_broker_subscribe(s->broker, &o, &c->sub);
    if (rc < 0)
        goto fail;
    if ((rc = seed_positions(s->broker, c->sub, &c->vec)) < 0)
        goto fail;
    if (jn_http_add_header(req, "Cache-Control", "no-cache") < 0 ||
        jn_http_add_header(req, "X-Accel-Buffering", "no") < 0) {
        rc = JN_ENOMEM;
        goto fail;
    }
    if ((rc = jn_http_stream_begin(req, 200, "text/event-stream; charset=utf-8")) < 0)
        goto fail;
    /* From here the response has begun: failures end the stream. */
    if (uv_timer_init(jn_broker_loop(s->broker), &c->timer) < 0) {
        jn_sub_close(c->sub);
        jn_buf_free(&c->ev);
        jn_buf_free(&c->json);
        jn_sse_vec_free(&c->vec);
        free(c);
        jn_http_stream_end(req);
        return;
    }
    c->timer.data = c;
    jn_list_insert_tail(&s->conns, &c->node);
    if (s->m_conns)
        s->m_conns->value++;
    jn_http_req_set_data(req, c);
    jn_http_req_on_abort(req, conn_abort);
    jn_http_req_on_drain(req, conn_drain);

    char hello[96];
    n = snprintf(hello, sizeof hello, ": junction %s\nretry: %" PRIu32 "\n\n", resumed ? "resumed" : "events",
                 retry_ms);
    rc = jn_http_stream_write(req, hello, (size_t)n);
    if (rc < 0 && rc != JN_EAGAIN) {
        conn_end(c);
        return;
    }
    if (uv_timer_start(&c->timer, heartbeat_cb, hb_ms, hb_ms) < 0)
        jn_warn("sse: cannot start heartbeats");
    return;

fail:
    if (rc == JN_EINVAL)
        jn_http_respond_error(req, 400, "invalid_name", "cannot subscribe to '%s'", filter);
    else
        jn_http_respond_error(req, 500, "internal", "cannot start the event stream: %s", jn_strerror(rc));
fail_answered:
    if (c->sub)
        jn_sub_close(c->sub);
    jn_buf_free(&c->ev);
    jn_buf_free(&c->json);
    jn_sse_vec_free(&c->vec);
    free(c);
}

/* ---- the door ---- */

jn_sse_t *jn_sse_new(jn_httpd_t *httpd, jn_broker_t *broker, const jn_sse_config_t *cfg)
{
    jn_sse_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->httpd = httpd;
    s->broker = broker;
    s->auth = jn_broker_auth(broker);
    s->cfg = *cfg;
    if (s->cfg.heartbeat_ms == 0)
        s->cfg.heartbeat_ms = SSE_HEARTBEAT_DEFAULT_MS;
    if (s->cfg.retry_ms == 0)
        s->cfg.retry_ms = SSE_RETRY_DEFAULT_MS;
    jn_list_init(&s->conns);
    jn_metrics_t *m = jn_broker_metrics(broker);
    if (m) {
        s->m_conns = jn_metrics_gauge(m, JN_DOOR_CONNECTIONS, JN_DOOR_CONNECTIONS_HELP, "door=\"sse\"");
        s->m_out = jn_metrics_counter(m, JN_DOOR_MESSAGES, JN_DOOR_MESSAGES_HELP, "door=\"sse\",direction=\"out\"");
    }
    int rc = jn_httpd_route(httpd, "GET", "/v1/events", sse_events, s);
    if (rc < 0) {
        jn_error("sse: cannot register GET /v1/events: %s", jn_strerror(rc));
        free(s);
        return NULL;
    }
    return s;
}

void jn_sse_free(jn_sse_t *s)
{
    if (!s)
        return;
    jn_list_t *pos, *tmp;
    jn_list_foreach_safe(pos, tmp, &s->conns) {
        sse_conn_t *c = jn_container_of(pos, sse_conn_t, node);
        conn_end(c);
    }
    free(s);
}
