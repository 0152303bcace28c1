/* fuzz_http.c - libFuzzer target for the HTTP/1.1 request parser and the
 * chunked decoder (src/http/parser.c).
 *
 * Besides looking for crashes, it checks two oracles:
 *  - consistency: parsing a prefix of the input (cut at a point derived
 *    from the first byte) either needs more bytes or gives exactly the
 *    result of the whole input, and a complete head is never incomplete
 *    once all of its bytes are there;
 *  - the chunked decoder gives the same bytes and verdict whether the body
 *    arrives in one piece or two.
 * Each runs with the default limits and with tiny ones that make 414 and
 * 431 reachable.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/parser.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

/* Whether |p| (|n| bytes) lies inside [base, base+len). */
static int inside(const char *base, size_t len, const char *p, size_t n)
{
    return p >= base && n <= len && (size_t)(p - base) <= len - n;
}

static void check_views(const char *b, size_t head, const jn_http_request_t *r)
{
    CHECK(r->method_len > 0 && inside(b, head, r->method, r->method_len));
    CHECK(r->target_len > 0 && inside(b, head, r->target, r->target_len));
    CHECK(r->path_len > 0);
    CHECK(inside(b, head, r->path, r->path_len) || (r->path_len == 1 && r->path[0] == '/'));
    CHECK(r->query == NULL || inside(b, head, r->query, r->query_len));
    CHECK(r->minor_version == 0 || r->minor_version == 1);
    CHECK(r->num_headers <= JN_HTTP_MAX_HEADERS);
    CHECK(!(r->chunked && r->content_length >= 0));
    for (size_t i = 0; i < r->num_headers; i++) {
        const jn_http_header_t *h = &r->headers[i];
        CHECK(h->name_len > 0 && inside(b, head, h->name, h->name_len));
        CHECK(inside(b, head, h->value, h->value_len));
    }
    if (r->num_headers > 0 && r->headers[0].name_len < 64) {
        char name[64];
        memcpy(name, r->headers[0].name, r->headers[0].name_len);
        name[r->headers[0].name_len] = '\0';
        CHECK(jn_http_find_header(r, name) == &r->headers[0]);
    }
}

static int same_request(const jn_http_request_t *a, const jn_http_request_t *b)
{
    if (a->method != b->method || a->method_len != b->method_len || a->target != b->target ||
        a->target_len != b->target_len || a->path != b->path || a->path_len != b->path_len ||
        a->query != b->query || a->query_len != b->query_len ||
        a->minor_version != b->minor_version || a->num_headers != b->num_headers ||
        a->content_length != b->content_length || a->chunked != b->chunked ||
        a->keep_alive != b->keep_alive || a->expect_continue != b->expect_continue ||
        a->upgrade != b->upgrade)
        return 0;
    for (size_t i = 0; i < a->num_headers; i++)
        if (memcmp(&a->headers[i], &b->headers[i], sizeof(a->headers[i])) != 0)
            return 0;
    return 1;
}

/* Decodes |body| in one call and again in two (cut at |cut|), and checks
 * that both agree. */
static void check_chunked(const char *body, size_t n, size_t cut)
{
    char *one = malloc(n ? n : 1);
    char *two = malloc(n ? n : 1);
    CHECK(one && two);
    memcpy(one, body, n);
    memcpy(two, body, n);

    jn_http_chunked_t c;
    jn_http_chunked_init(&c);
    size_t len1 = n, used1 = 0;
    int r1 = jn_http_chunked_decode(&c, one, &len1, &used1);
    CHECK(r1 == 0 || r1 == 1 || r1 == JN_EPROTO);
    CHECK(used1 <= n && len1 <= used1);
    CHECK(r1 != 0 || used1 == n);

    if (cut > n)
        cut = n;
    jn_http_chunked_init(&c);
    size_t la = cut, ua = 0;
    int ra = jn_http_chunked_decode(&c, two, &la, &ua);
    CHECK(ua <= cut && la <= ua);
    size_t out_len = la, used = ua;
    int r2 = ra;
    if (ra == 0) {
        CHECK(ua == cut);
        size_t lb = n - cut, ub = 0;
        r2 = jn_http_chunked_decode(&c, two + cut, &lb, &ub);
        CHECK(ub <= n - cut && lb <= ub);
        memmove(two + la, two + cut, lb);
        out_len += lb;
        used += ub;
    }
    CHECK(r1 == r2);
    if (r1 != JN_EPROTO) {
        CHECK(used1 == used);
        CHECK(len1 == out_len);
        CHECK(memcmp(one, two, len1) == 0);
    }
    free(one);
    free(two);
}

static void run(const char *b, size_t size, const jn_http_limits_t *lim, size_t split)
{
    static jn_http_request_t whole, part;
    int st = 0;
    int r = jn_http_parse_request(b, size, lim, &whole, &st);
    CHECK(r > 0 || r == JN_EPARTIAL || r == JN_EPROTO);
    if (r == JN_EPROTO)
        CHECK(st == 400 || st == 414 || st == 431 || st == 501 || st == 505);
    if (r > 0) {
        CHECK((size_t)r <= size);
        check_views(b, (size_t)r, &whole);
    }

    /* Consistency oracle on a prefix. */
    int st2 = 0;
    int r2 = jn_http_parse_request(b, split, lim, &part, &st2);
    if (r > 0) {
        if (split >= (size_t)r) {
            CHECK(r2 == r);
            CHECK(same_request(&whole, &part));
        } else {
            CHECK(r2 == JN_EPARTIAL);
        }
    } else if (r == JN_EPARTIAL) {
        CHECK(r2 == JN_EPARTIAL);
    } else {
        CHECK(r2 == JN_EPARTIAL || (r2 == JN_EPROTO && st2 == st));
    }

    if (r > 0 && whole.chunked)
        check_chunked(b + r, size - (size_t)r, split > (size_t)r ? split - (size_t)r : 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size heap copy makes any read past |size| visible. */
    char *b = malloc(size ? size : 1);
    if (!b)
        return 0;
    if (size)
        memcpy(b, data, size);
    size_t split = size ? (size_t)data[0] * size / 255 : 0;

    jn_http_limits_t def;
    jn_http_limits_default(&def);
    run(b, size, &def, split);

    jn_http_limits_t tiny = {.max_request_line = 32, .max_header_bytes = 96, .max_headers = 3};
    run(b, size, &tiny, split);

    /* The chunked decoder on its own, for framing the parser never saw. */
    check_chunked(b, size, split);

    free(b);
    return 0;
}
