/* sse_id.c - the position vector of an SSE subscription and its id text
 * (format in sse_id.h and docs/sse.md). */
#include "sse_id.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/broker.h"

void jn_sse_vec_init(jn_sse_vec_t *vec)
{
    vec->v = NULL;
    vec->n = vec->cap = 0;
}

void jn_sse_vec_free(jn_sse_vec_t *vec)
{
    for (size_t i = 0; i < vec->n; i++) {
        free(vec->v[i].name);
        free(vec->v[i].pos);
    }
    free(vec->v);
    jn_sse_vec_init(vec);
}

static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* Binary search; *at gets the insertion point when absent. */
static jn_sse_vstream_t *find(const jn_sse_vec_t *vec, const char *name, size_t len, size_t *at)
{
    size_t lo = 0, hi = vec->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(vec->v[mid].name, vec->v[mid].name_len, name, len);
        if (c == 0) {
            if (at)
                *at = mid;
            return &vec->v[mid];
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (at)
        *at = lo;
    return NULL;
}

int64_t jn_sse_vec_get(const jn_sse_vec_t *vec, const char *stream, size_t len, uint32_t partition)
{
    const jn_sse_vstream_t *s = find(vec, stream, len, NULL);
    return s && partition < s->nparts ? s->pos[partition] : 0;
}

int jn_sse_vec_set(jn_sse_vec_t *vec, const char *stream, size_t len, uint32_t partition, int64_t pos)
{
    if (!stream || len == 0 || len > JN_STREAM_NAME_MAX || partition >= JN_PARTITIONS_MAX || pos < 0)
        return JN_EINVAL;
    size_t at;
    jn_sse_vstream_t *s = find(vec, stream, len, &at);
    if (!s) {
        if (pos == 0)
            return 0;
        if (vec->n == vec->cap) {
            size_t ncap = vec->cap ? vec->cap * 2 : 4;
            jn_sse_vstream_t *nv = realloc(vec->v, ncap * sizeof *nv);
            if (!nv)
                return JN_ENOMEM;
            vec->v = nv;
            vec->cap = ncap;
        }
        char *name = malloc(len + 1);
        if (!name)
            return JN_ENOMEM;
        memcpy(name, stream, len);
        name[len] = '\0';
        memmove(&vec->v[at + 1], &vec->v[at], (vec->n - at) * sizeof *vec->v);
        s = &vec->v[at];
        *s = (jn_sse_vstream_t){.name = name, .name_len = len};
        vec->n++;
    }
    if (partition >= s->nparts) {
        if (pos == 0)
            return 0;
        int64_t *np = realloc(s->pos, (partition + 1) * sizeof *np);
        if (!np)
            return JN_ENOMEM; /* the stream entry may stay, with all-zero positions: same meaning */
        for (uint32_t p = s->nparts; p <= partition; p++)
            np[p] = 0;
        s->pos = np;
        s->nparts = partition + 1;
    }
    s->pos[partition] = pos;
    return 0;
}

int jn_sse_id_format(const jn_sse_vec_t *vec, const char *stream, size_t stream_len, uint32_t partition,
                     int64_t offset, jn_buf_t *out)
{
    size_t mark = out->len;
    int rc = 0;
    if (stream) {
        rc = jn_buf_append(out, stream, stream_len);
        if (rc == 0)
            rc = jn_buf_printf(out, "/%" PRIu32 "/%" PRId64, partition, offset);
    }
    for (size_t i = 0; i < vec->n && rc == 0; i++) {
        const jn_sse_vstream_t *s = &vec->v[i];
        uint32_t used = s->nparts;
        while (used > 0 && s->pos[used - 1] == 0)
            used--;
        if (used == 0)
            continue;
        if ((rc = jn_buf_append(out, ";", 1)) < 0 || (rc = jn_buf_append(out, s->name, s->name_len)) < 0)
            break;
        for (uint32_t p = 0; p < used && rc == 0; p++)
            rc = jn_buf_printf(out, "%c%" PRId64, p ? ',' : '=', s->pos[p]);
        if (out->len - mark > JN_SSE_ID_MAX)
            rc = JN_ETOOBIG;
    }
    if (rc == 0 && out->len - mark > JN_SSE_ID_MAX)
        rc = JN_ETOOBIG;
    if (rc < 0)
        out->len = mark;
    return rc;
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

static bool valid_name(const char *p, size_t len)
{
    if (len == 0 || len > JN_STREAM_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!name_char(p[i]))
            return false;
    return true;
}

/* Parses a non-negative decimal of [p, end) into *out. */
static bool parse_u63(const char *p, const char *end, int64_t *out)
{
    if (p >= end || end - p > 19)
        return false;
    int64_t v = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return false;
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* "<stream>/<partition>/<offset>" */
static bool parse_record(const char *p, const char *end, const char **name, size_t *nlen, int64_t *part,
                         int64_t *off)
{
    const char *s1 = memchr(p, '/', (size_t)(end - p));
    if (!s1)
        return false;
    const char *s2 = memchr(s1 + 1, '/', (size_t)(end - s1 - 1));
    if (!s2 || !valid_name(p, (size_t)(s1 - p)) || !parse_u63(s1 + 1, s2, part) || *part >= JN_PARTITIONS_MAX ||
        !parse_u63(s2 + 1, end, off))
        return false;
    *name = p;
    *nlen = (size_t)(s1 - p);
    return true;
}

int jn_sse_id_parse(const char *id, size_t len, jn_sse_vec_t *out)
{
    if (len > JN_SSE_ID_MAX)
        return JN_ETOOBIG;
    const char *p = id, *end = id + len;
    const char *semi = memchr(p, ';', len);
    const char *name;
    size_t nlen;
    int64_t part, off;
    int rc = JN_EINVAL;
    if (!semi) {
        if (!parse_record(p, end, &name, &nlen, &part, &off) || off == INT64_MAX)
            goto fail;
        rc = jn_sse_vec_set(out, name, nlen, (uint32_t)part, off + 1);
        if (rc < 0)
            goto fail;
        return 0;
    }
    /* The record part is informative only, but must be well formed. */
    if (semi > p && !parse_record(p, semi, &name, &nlen, &part, &off))
        goto fail;
    p = semi + 1;
    while (p <= end) {
        const char *e = memchr(p, ';', (size_t)(end - p));
        if (!e)
            e = end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        if (!eq || !valid_name(p, (size_t)(eq - p)) || find(out, p, (size_t)(eq - p), NULL)) {
            rc = JN_EINVAL;
            goto fail;
        }
        const char *q = eq + 1;
        uint32_t pi = 0;
        for (;;) {
            const char *c = memchr(q, ',', (size_t)(e - q));
            if (!c)
                c = e;
            int64_t v;
            if (pi >= JN_PARTITIONS_MAX || !parse_u63(q, c, &v)) {
                rc = JN_EINVAL;
                goto fail;
            }
            if ((rc = jn_sse_vec_set(out, p, (size_t)(eq - p), pi, v)) < 0)
                goto fail;
            pi++;
            if (c == e)
                break;
            q = c + 1;
        }
        if (e == end)
            break;
        p = e + 1;
    }
    return 0;
fail:
    jn_sse_vec_free(out);
    return rc == 0 ? JN_EINVAL : rc;
}
