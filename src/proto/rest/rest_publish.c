/* rest_publish.c - POST /v1/publish/{subject*} (the body is one record)
 * and POST /v1/publish (a JSON batch of records).
 *
 * Both answer only once their records are durable under the stream's
 * fsync policy: the request keeps a jn_durable_waiter_t in heap state that
 * lives until the waiter fires or the connection goes away (then the
 * waiter is cancelled). Under the "interval" and "never" policies the
 * waiter fires inside jn_broker_wait_durable, so the reply leaves at once.
 *
 * The single-record path is the hot one: no jansson, the reply is
 * formatted with snprintf on the stack and copied into the request state.
 */
#include "rest_internal.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../common/log.h"
#include "../../core/filter.h"

#define REST_KEY_MAX 4096           /* ?key= / X-Junction-Key */
#define REST_HEADER_NAMES_MAX 8192  /* lower-cased X-Header-* names, all together */
#define REST_BATCH_MAX 10000        /* records per batch publish */

/* ---- one record ---- */

typedef struct pub_one {
    jn_durable_waiter_t w;
    jn_http_req_t *req;
    size_t len;
    char body[]; /* the 201 reply, ready */
} pub_one_t;

static void pub_one_durable(jn_durable_waiter_t *w, int status)
{
    pub_one_t *st = jn_container_of(w, pub_one_t, w);
    jn_http_req_t *req = st->req;
    jn_http_req_set_data(req, NULL);
    jn_http_req_on_abort(req, NULL);
    if (status < 0)
        jn__rest_fail(req, status == JN_ECLOSED ? JN_ECLOSED : JN_EIO, false, "the record was appended but is not durable");
    else
        jn_http_respond(req, 201, "application/json", st->body, st->len);
    free(st);
}

static void pub_one_abort(jn_http_req_t *req, void *data)
{
    pub_one_t *st = data;
    if (!st)
        return;
    jn_plog_cancel_durable(&st->w);
    free(st);
}

/* Renders {"stream","partition","offset","subject"} for |res| into |b|. */
static int render_result(jn_buf_t *b, const jn_publish_result_t *res, const char *subject, size_t sublen)
{
    int rc = jn_buf_append_str(b, "{\"stream\":");
    const char *sname = jn_stream_name(res->stream);
    if (rc == 0)
        rc = jn_rest_json_string(b, (const uint8_t *)sname, strlen(sname));
    if (rc == 0)
        rc = jn_buf_printf(b, ",\"partition\":%" PRId32 ",\"offset\":%" PRId64 ",\"subject\":", res->partition,
                           res->offset);
    if (rc == 0)
        rc = jn_rest_json_string(b, (const uint8_t *)subject, sublen);
    if (rc == 0)
        rc = jn_buf_append(b, "}", 1);
    return rc;
}

/* Gathers the record headers of the request: Content-Type, then every
 * X-Header-<name> with its name lower-cased into |names|. */
static int request_headers(jn_http_req_t *req, jn_header_t *hs, uint32_t *n, char *names, size_t names_cap)
{
    const jn_http_request_t *head = jn_http_req_head(req);
    size_t used = 0;
    *n = 0;
    size_t ctlen;
    const char *ct = jn_http_req_header(req, "Content-Type", &ctlen);
    if (ct) {
        hs[*n] = (jn_header_t){(const uint8_t *)"content-type", 12, (const uint8_t *)ct, (int32_t)ctlen};
        (*n)++;
    }
    static const char prefix[] = "X-Header-";
    const size_t plen = sizeof(prefix) - 1;
    for (size_t i = 0; i < head->num_headers; i++) {
        const jn_http_header_t *h = &head->headers[i];
        if (h->name_len <= plen || strncasecmp(h->name, prefix, plen) != 0)
            continue;
        size_t nlen = h->name_len - plen;
        if (*n >= JN_REST_MAX_HEADERS || nlen > names_cap - used)
            return JN_ETOOBIG;
        char *name = names + used;
        for (size_t k = 0; k < nlen; k++)
            name[k] = (char)tolower((unsigned char)h->name[plen + k]);
        used += nlen;
        hs[*n] = (jn_header_t){(const uint8_t *)name, (uint32_t)nlen, (const uint8_t *)h->value, (int32_t)h->value_len};
        (*n)++;
    }
    return 0;
}

void jn__rest_publish_one(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    const char *subject = jn_http_req_param(req, "subject");
    size_t sublen = subject ? strlen(subject) : 0;
    char key[REST_KEY_MAX];
    char names[REST_HEADER_NAMES_MAX];
    jn_header_t hs[JN_REST_MAX_HEADERS];
    jn_buf_t big;
    jn_buf_init(&big, 64u << 10);

    if (!subject || jn_subject_validate(subject, sublen) < 0) {
        jn_http_respond_error(req, 400, "invalid_name", "invalid subject '%s'", subject ? subject : "");
        goto done;
    }
    if (!jn__rest_allow(r, req, &p, JN_PERM_PUBLISH, subject))
        goto done;
    jn_record_t rec = {.key = NULL, .key_len = -1};
    size_t blen;
    const uint8_t *body = jn_http_req_body(req, &blen);
    if (blen > INT32_MAX) {
        jn_http_respond_error(req, 413, "payload_too_large", "body too large");
        goto done;
    }
    rec.value = body ? body : (const uint8_t *)"";
    rec.value_len = (int32_t)blen;
    int klen = jn_http_req_query(req, "key", key, sizeof(key));
    if (klen >= 0) {
        rec.key = (const uint8_t *)key;
        rec.key_len = klen;
    } else if (klen != JN_ENOENT) {
        jn_http_respond_error(req, 400, "bad_request", "bad query parameter 'key'");
        goto done;
    } else {
        size_t hk;
        const char *kh = jn_http_req_header(req, "X-Junction-Key", &hk);
        if (kh) {
            rec.key = (const uint8_t *)kh;
            rec.key_len = (int32_t)hk;
        }
    }
    int64_t partition = -1;
    int q = jn__rest_query_i64(req, "partition", &partition);
    if (q < 0)
        goto done;
    if (q && (partition < 0 || partition > INT32_MAX)) {
        jn_http_respond_error(req, 400, "bad_request", "partition must be a non-negative integer");
        goto done;
    }
    if (request_headers(req, hs, &rec.header_count, names, sizeof(names)) < 0) {
        jn_http_respond_error(req, 400, "bad_request", "too many X-Header-* headers");
        goto done;
    }
    rec.headers = hs;

    jn_publish_result_t res;
    int rc = jn_broker_publish(r->broker, subject, sublen, &rec, 1, (int32_t)partition, &res);
    if (rc < 0) {
        jn__rest_fail(req, rc, rc == JN_EINVAL && partition < 0, "cannot publish to '%s': %s", subject,
                      rc == JN_EINVAL && partition >= 0 ? "no such partition" : jn_strerror(rc));
        goto done;
    }

    /* The reply, on the stack unless the subject is long. */
    char stack[1024];
    const char *reply = stack;
    size_t rlen;
    char sj[768];
    ssize_t sjl = jn_rest_json_string_to(sj, sizeof(sj), (const uint8_t *)subject, sublen);
    int n = sjl < 0 ? -1
                    : snprintf(stack, sizeof(stack), "{\"stream\":\"%s\",\"partition\":%" PRId32 ",\"offset\":%" PRId64
                                                     ",\"subject\":%s}",
                               jn_stream_name(res.stream), res.partition, res.offset, sj);
    if (n >= 0 && (size_t)n < sizeof(stack)) {
        rlen = (size_t)n;
    } else {
        if ((rc = render_result(&big, &res, subject, sublen)) < 0) {
            jn__rest_fail(req, JN_ENOMEM, false, "cannot render the reply");
            goto done;
        }
        reply = (const char *)big.data;
        rlen = big.len;
    }
    pub_one_t *st = calloc(1, sizeof(*st) + rlen);
    if (!st) {
        jn__rest_fail(req, JN_ENOMEM, false, "out of memory");
        goto done;
    }
    st->req = req;
    st->len = rlen;
    memcpy(st->body, reply, rlen);
    jn_http_req_set_data(req, st);
    jn_http_req_on_abort(req, pub_one_abort);
    /* May fire (and free st) before returning. */
    jn_broker_wait_durable(r->broker, res.stream, (uint32_t)res.partition, res.offset, &st->w, pub_one_durable);
done:
    jn_buf_free(&big);
}

/* ---- a batch ---- */

typedef struct pub_batch pub_batch_t;

/* One waiter per record, each with a way back to its batch. */
typedef struct pub_slot {
    jn_durable_waiter_t w;
    pub_batch_t *batch;
} pub_slot_t;

struct pub_batch {
    jn_http_req_t *req;
    size_t n;
    size_t pending; /* waiters not fired yet (+1 while arming) */
    int status;     /* first durability error */
    jn_buf_t reply;
    pub_slot_t slots[];
};

static void pub_batch_finish(pub_batch_t *st)
{
    jn_http_req_t *req = st->req;
    jn_http_req_set_data(req, NULL);
    jn_http_req_on_abort(req, NULL);
    if (st->status < 0)
        jn__rest_fail(req, st->status, false, "records were appended but are not durable");
    else
        jn__rest_respond_buf(req, 201, &st->reply);
    jn_buf_free(&st->reply);
    free(st);
}

static void pub_batch_durable(jn_durable_waiter_t *w, int status)
{
    pub_slot_t *slot = jn_container_of(w, pub_slot_t, w);
    pub_batch_t *st = slot->batch;
    if (status < 0 && st->status == 0)
        st->status = status == JN_ECLOSED ? JN_ECLOSED : JN_EIO;
    if (--st->pending == 0)
        pub_batch_finish(st);
}

static void pub_batch_abort(jn_http_req_t *req, void *data)
{
    pub_batch_t *st = data;
    if (!st)
        return;
    for (size_t i = 0; i < st->n; i++)
        jn_plog_cancel_durable(&st->slots[i].w);
    jn_buf_free(&st->reply);
    free(st);
}

void jn__rest_publish_batch(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    json_t *body = NULL;
    jn_rest_rec_t *parsed = NULL;
    jn_record_t *recs = NULL;
    jn_publish_result_t *res = NULL;
    pub_batch_t *st = NULL;
    size_t n = 0;

    if (!jn__rest_auth(r, req, &p))
        return;
    body = jn__rest_body_json(req);
    if (!body)
        return;
    const json_t *arr = json_is_array(body) ? body : json_object_get(body, "records");
    if (!json_is_array(arr)) {
        jn_http_respond_error(req, 400, "invalid_json", "body must be {\"records\": [...]} or an array of records");
        goto done;
    }
    n = json_array_size(arr);
    if (n == 0) {
        jn_http_respond_error(req, 400, "bad_request", "no records");
        goto done;
    }
    if (n > REST_BATCH_MAX) {
        jn_http_respond_error(req, 413, "payload_too_large", "at most %d records per request", REST_BATCH_MAX);
        goto done;
    }
    parsed = calloc(n, sizeof(*parsed));
    recs = calloc(n, sizeof(*recs));
    res = calloc(n, sizeof(*res));
    st = calloc(1, sizeof(*st) + n * sizeof(pub_slot_t));
    if (!parsed || !recs || !res || !st) {
        jn__rest_fail(req, JN_ENOMEM, false, "out of memory");
        goto done;
    }
    jn_buf_init(&st->reply, 256u << 20);
    for (size_t i = 0; i < n; i++) {
        char err[256];
        int rc = jn_rest_rec_parse(json_array_get(arr, i), &parsed[i], err, sizeof(err));
        if (rc < 0) {
            jn__rest_fail(req, rc, false, "record %zu: %s", i, err);
            goto done;
        }
        const jn_rest_rec_t *pr = &parsed[i];
        if (!pr->subject || jn_subject_validate(pr->subject, pr->subject_len) < 0 ||
            strlen(pr->subject) != pr->subject_len) {
            jn_http_respond_error(req, 400, "invalid_name", "record %zu: missing or invalid \"subject\"", i);
            goto done;
        }
        if (!p.admin && !jn_auth_allowed(r->auth, &p, JN_PERM_PUBLISH, pr->subject, pr->subject_len)) {
            jn_http_respond_error(req, 403, "forbidden", "%s may not publish on '%s'", p.name, pr->subject);
            goto done;
        }
        recs[i] = pr->rec;
    }
    /* Consecutive records of one subject and partition go in one append. */
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && parsed[j].subject_len == parsed[i].subject_len && parsed[j].partition == parsed[i].partition &&
               memcmp(parsed[j].subject, parsed[i].subject, parsed[i].subject_len) == 0)
            j++;
        int rc = jn_broker_publish(r->broker, parsed[i].subject, parsed[i].subject_len, recs + i, j - i,
                                   parsed[i].partition, res + i);
        if (rc < 0) {
            bool part = rc == JN_EINVAL && parsed[i].partition >= 0;
            jn__rest_fail(req, rc, rc == JN_EINVAL && !part, "record %zu (subject '%s'): %s%s", i, parsed[i].subject,
                          part ? "no such partition" : jn_strerror(rc),
                          i > 0 ? " (the records before it were published)" : "");
            goto done;
        }
        i = j;
    }
    int rc = jn_buf_append_str(&st->reply, "{\"results\":[");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (i)
            rc = jn_buf_append(&st->reply, ",", 1);
        if (rc == 0)
            rc = render_result(&st->reply, &res[i], parsed[i].subject, parsed[i].subject_len);
    }
    if (rc == 0)
        rc = jn_buf_append_str(&st->reply, "]}");
    if (rc < 0) {
        jn__rest_fail(req, JN_ENOMEM, false, "records were published but the reply could not be rendered");
        goto done;
    }
    st->req = req;
    st->n = n;
    st->pending = n + 1;
    jn_http_req_set_data(req, st);
    jn_http_req_on_abort(req, pub_batch_abort);
    for (size_t i = 0; i < n; i++) {
        st->slots[i].batch = st;
        jn_broker_wait_durable(r->broker, res[i].stream, (uint32_t)res[i].partition, res[i].offset, &st->slots[i].w,
                               pub_batch_durable);
    }
    if (--st->pending == 0)
        pub_batch_finish(st);
    st = NULL; /* owned by the request now */
done:
    if (st) {
        jn_buf_free(&st->reply);
        free(st);
    }
    for (size_t i = 0; parsed && i < n; i++)
        jn_rest_rec_free(&parsed[i]);
    free(parsed);
    free(recs);
    free(res);
    json_decref(body);
}
