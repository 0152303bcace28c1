/* test_http_parser.c - unit tests of the HTTP/1.1 request parser, the
 * chunked decoder and the URL helpers (src/http/parser.c).
 *
 * Inputs are copied into heap buffers of their exact size before parsing,
 * so that a read past |len| shows up under AddressSanitizer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/parser.h"

#define S(lit) lit, sizeof(lit) - 1

static char *dup_exact(const char *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    assert_non_null(p);
    if (n)
        memcpy(p, s, n);
    return p;
}

/* Parses the first |n| bytes of |s| from an exact-size copy. */
static int parse_n(const char *s, size_t n, const jn_http_limits_t *lim, int *status)
{
    jn_http_request_t req;
    char *b = dup_exact(s, n);
    int r = jn_http_parse_request(b, n, lim, &req, status);
    free(b);
    return r;
}

static void assert_view(const char *p, size_t n, const char *want)
{
    if (!want) {
        assert_null(p);
        assert_int_equal(n, 0);
        return;
    }
    assert_non_null(p);
    char tmp[256];
    assert_true(n < sizeof(tmp));
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    assert_string_equal(tmp, want);
}

/* ---- valid requests ---- */

typedef struct hdr_want {
    const char *name, *value;
} hdr_want_t;

typedef struct valid_case {
    const char *raw;
    size_t head_len; /* 0: the whole of raw */
    const char *method, *target, *path, *query;
    int minor;
    int64_t content_length;
    bool chunked, keep_alive, expect_continue, upgrade;
    size_t num_headers;
    hdr_want_t h[6];
} valid_case_t;

static const valid_case_t valid_cases[] = {
    {"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", 0, "GET", "/", "/", NULL, 1, -1, false, true,
     false, false, 1, {{"Host", "example.com"}}},
    {"GET /a/b?x=1&y=%20 HTTP/1.0\r\n\r\n", 0, "GET", "/a/b?x=1&y=%20", "/a/b", "x=1&y=%20", 0, -1,
     false, false, false, false, 0, {{0}}},
    {"GET /? HTTP/1.1\r\n\r\n", 0, "GET", "/?", "/", "", 1, -1, false, true, false, false, 0, {{0}}},
    {"GET /a?b?c HTTP/1.1\r\n\r\n", 0, "GET", "/a?b?c", "/a", "b?c", 1, -1, false, true, false,
     false, 0, {{0}}},
    {"HEAD /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0, "HEAD", "/x", "/x", NULL, 0, -1, false,
     true, false, false, 1, {{"Connection", "keep-alive"}}},
    {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nConnection: close\r\n\r\n", 0, "GET", "/", "/", NULL,
     0, -1, false, false, false, false, 2, {{"Connection", "Keep-Alive"}, {"Connection", "close"}}},
    {"GET / HTTP/1.1\r\nConnection: foo, ,Close\r\n\r\n", 0, "GET", "/", "/", NULL, 1, -1, false,
     false, false, false, 1, {{"Connection", "foo, ,Close"}}},
    {"POST /submit HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
     sizeof("POST /submit HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n") - 1, "POST", "/submit",
     "/submit", NULL, 1, 5, false, true, false, false, 2, {{"Host", "h"}, {"Content-Length", "5"}}},
    {"PUT /k HTTP/1.1\r\ncontent-length: 007\r\nCONTENT-LENGTH: 7\r\n\r\n", 0, "PUT", "/k", "/k", NULL,
     1, 7, false, true, false, false, 2, {{"content-length", "007"}, {"CONTENT-LENGTH", "7"}}},
    {"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 0, "POST", "/", "/", NULL, 1, 0, false, true,
     false, false, 1, {{"Content-Length", "0"}}},
    {"POST /c HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n", 0, "POST", "/c", "/c", NULL, 1, -1,
     true, true, false, false, 1, {{"Transfer-Encoding", "Chunked"}}},
    {"POST /c HTTP/1.1\r\nTransfer-Encoding: ,chunked , \r\n\r\n", 0, "POST", "/c", "/c", NULL, 1, -1,
     true, true, false, false, 1, {{"Transfer-Encoding", ",chunked ,"}}},
    {"POST /e HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n", 0, "POST", "/e", "/e",
     NULL, 1, 3, false, true, true, false, 2, {{"Expect", "100-Continue"}, {"Content-Length", "3"}}},
    {"POST /e HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", 0, "POST", "/e", "/e",
     NULL, 0, 3, false, false, false, false, 2, {{"Expect", "100-continue"}, {"Content-Length", "3"}}},
    {"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n", 0,
     "GET", "/ws", "/ws", NULL, 1, -1, false, true, false, true, 3,
     {{"Host", "h"}, {"Upgrade", "websocket"}, {"Connection", "keep-alive, Upgrade"}}},
    {"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", 0, "GET", "/ws", "/ws", NULL, 1, -1, false,
     true, false, false, 1, {{"Upgrade", "websocket"}}},
    {"GET /ws HTTP/1.1\r\nConnection: upgrade\r\n\r\n", 0, "GET", "/ws", "/ws", NULL, 1, -1, false,
     true, false, false, 1, {{"Connection", "upgrade"}}},
    {"\r\n\r\nGET /lead HTTP/1.1\r\n\r\n", 0, "GET", "/lead", "/lead", NULL, 1, -1, false, true, false,
     false, 0, {{0}}},
    {"\nGET /lf HTTP/1.1\nHost: x\nX-Y: z\n\n", 0, "GET", "/lf", "/lf", NULL, 1, -1, false, true, false,
     false, 2, {{"Host", "x"}, {"X-Y", "z"}}},
    {"GET http://example.com:8080/p/q?z=1 HTTP/1.1\r\n\r\n", 0, "GET",
     "http://example.com:8080/p/q?z=1", "/p/q", "z=1", 1, -1, false, true, false, false, 0, {{0}}},
    {"GET HTTPS://example.com HTTP/1.1\r\n\r\n", 0, "GET", "HTTPS://example.com", "/", NULL, 1, -1,
     false, true, false, false, 0, {{0}}},
    {"GET http://h?q HTTP/1.1\r\n\r\n", 0, "GET", "http://h?q", "/", "q", 1, -1, false, true, false,
     false, 0, {{0}}},
    {"OPTIONS * HTTP/1.1\r\n\r\n", 0, "OPTIONS", "*", "*", NULL, 1, -1, false, true, false, false, 0,
     {{0}}},
    {"M-SEARCH /~x!$&'()*+,;=:@-._ HTTP/1.1\r\nX-Empty:\r\nX-Ws: \t a \t b \t \r\nX-Obs: caf\xc3\xa9\r\n"
     "!#$%&'*+-.^_`|~: tok\r\n\r\n",
     0, "M-SEARCH", "/~x!$&'()*+,;=:@-._", "/~x!$&'()*+,;=:@-._", NULL, 1, -1, false, true, false,
     false, 4, {{"X-Empty", ""}, {"X-Ws", "a \t b"}, {"X-Obs", "caf\xc3\xa9"}, {"!#$%&'*+-.^_`|~", "tok"}}},
    {"GET /long HTTP/1.1\r\nX-Long: 0123456789abcdef0123456789abcdef\t0123456789abcdef\r\n\r\n", 0,
     "GET", "/long", "/long", NULL, 1, -1, false, true, false, false, 1,
     {{"X-Long", "0123456789abcdef0123456789abcdef\t0123456789abcdef"}}},
};

static void check_valid(const valid_case_t *c, const jn_http_request_t *req, int r)
{
    size_t raw_len = strlen(c->raw);
    size_t head = c->head_len ? c->head_len : raw_len;
    assert_int_equal(r, (int)head);
    assert_view(req->method, req->method_len, c->method);
    assert_view(req->target, req->target_len, c->target);
    assert_view(req->path, req->path_len, c->path);
    assert_view(req->query, req->query_len, c->query);
    assert_int_equal(req->minor_version, c->minor);
    assert_int_equal(req->content_length, c->content_length);
    assert_int_equal(req->chunked, c->chunked);
    assert_int_equal(req->keep_alive, c->keep_alive);
    assert_int_equal(req->expect_continue, c->expect_continue);
    assert_int_equal(req->upgrade, c->upgrade);
    assert_int_equal(req->num_headers, c->num_headers);
    for (size_t i = 0; i < c->num_headers; i++) {
        assert_view(req->headers[i].name, req->headers[i].name_len, c->h[i].name);
        assert_view(req->headers[i].value, req->headers[i].value_len, c->h[i].value);
    }
}

static void test_valid_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
        const valid_case_t *c = &valid_cases[i];
        size_t n = strlen(c->raw);
        char *b = dup_exact(c->raw, n);
        jn_http_request_t req;
        int st = -1;
        int r = jn_http_parse_request(b, n, NULL, &req, &st);
        if (r < 0)
            fail_msg("case %zu: r=%d status=%d", i, r, st);
        check_valid(c, &req, r);
        free(b);
    }
}

/* Every proper prefix of a head is incomplete; growing the input one byte
 * at a time gives the whole result once the head is in. */
static void test_valid_prefixes_and_growth(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
        const valid_case_t *c = &valid_cases[i];
        size_t n = strlen(c->raw);
        size_t head = c->head_len ? c->head_len : n;
        for (size_t k = 0; k <= n; k++) {
            char *b = dup_exact(c->raw, k);
            jn_http_request_t req;
            int st = 0;
            int r = jn_http_parse_request(b, k, NULL, &req, &st);
            if (k < head) {
                if (r != JN_EPARTIAL)
                    fail_msg("case %zu prefix %zu: r=%d status=%d", i, k, r, st);
            } else {
                check_valid(c, &req, r);
            }
            free(b);
        }
    }
}

static void test_find_header(void **state)
{
    (void)state;
    const char *raw = "GET / HTTP/1.1\r\nHost: a\r\nX-Thing: 1\r\nx-thing: 2\r\n\r\n";
    jn_http_request_t req;
    int st;
    assert_true(jn_http_parse_request(raw, strlen(raw), NULL, &req, &st) > 0);
    const jn_http_header_t *h = jn_http_find_header(&req, "x-THING");
    assert_non_null(h);
    assert_view(h->value, h->value_len, "1");
    assert_non_null(jn_http_find_header(&req, "HOST"));
    assert_null(jn_http_find_header(&req, "X-Thin"));
    assert_null(jn_http_find_header(&req, "Content-Length"));
    assert_null(jn_http_find_header(&req, ""));
}

/* ---- invalid requests ---- */

typedef struct invalid_case {
    const char *raw;
    size_t len; /* 0: strlen(raw) */
    int status;
} invalid_case_t;

static const invalid_case_t invalid_cases[] = {
    /* request line */
    {"GET  / HTTP/1.1\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1 \r\n\r\n", 0, 400},
    {"GET /  HTTP/1.1\r\n\r\n", 0, 400},
    {" GET / HTTP/1.1\r\n\r\n", 0, 400},
    {"G(T / HTTP/1.1\r\n\r\n", 0, 400},
    {"GET\t/ HTTP/1.1\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\rX\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\r\n\r\n", 0, 400},
    {"\rGET / HTTP/1.1\r\n\r\n", 0, 400},
    {"GET /\r\n\r\n", 0, 400},
    {"GET / \r\n\r\n", 0, 400},
    {"GET / http/1.1\r\n\r\n", 0, 400},
    {"GET / HTTP/1.10\r\n\r\n", 0, 400},
    {"GET / HTTP/1\r\n\r\n", 0, 400},
    {"GET / HTTP/1.x\r\n\r\n", 0, 400},
    {"GET / HTTP/11.1\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1x\r\n\r\n", 0, 400},
    {"GET / HTTP/2.0\r\n\r\n", 0, 505},
    {"GET / HTTP/1.2\r\n\r\n", 0, 505},
    {"GET / HTTP/0.9\r\n\r\n", 0, 505},
    {"GET / HTTP/9.9\r\nX\r\n\r\n", 0, 505},
    /* request target */
    {"GET a HTTP/1.1\r\n\r\n", 0, 400},
    {"GET ?a HTTP/1.1\r\n\r\n", 0, 400},
    {"GET * HTTP/1.1\r\n\r\n", 0, 400},
    {"OPTIONS *x HTTP/1.1\r\n\r\n", 0, 400},
    {"GET /a#b HTTP/1.1\r\n\r\n", 0, 400},
    {"GET /a\x01 HTTP/1.1\r\n\r\n", 0, 400},
    {"GET /a\x7f HTTP/1.1\r\n\r\n", 0, 400},
    {"GET /\xc3\xa9 HTTP/1.1\r\n\r\n", 0, 400},
    {"GET ftp://h/ HTTP/1.1\r\n\r\n", 0, 400},
    {"GET http:/h/ HTTP/1.1\r\n\r\n", 0, 400},
    {"GET http:// HTTP/1.1\r\n\r\n", 0, 400},
    {"GET http:///p HTTP/1.1\r\n\r\n", 0, 400},
    {"GET http://u@h/ HTTP/1.1\r\n\r\n", 0, 400},
    {"CONNECT h:443 HTTP/1.1\r\n\r\n", 0, 400},
    {"GET /\0 HTTP/1.1\r\n\r\n", 19, 400},
    /* header fields */
    {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\n: x\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nBad(Name): x\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\n X: a\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nX: a\x01\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nX: 0123456789\x1b" "0123456789\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 24, 400},
    {"GET / HTTP/1.1\r\nX: a\r\n\r\r\n", 0, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 0, 400},
    /* Content-Length */
    {"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 0, 400},
    /* Transfer-Encoding */
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chun ked\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", 0, 400},
    {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0, 501},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 501},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: foo;q=1 , chunked\r\n\r\n", 0, 501},
};

static size_t inv_len(const invalid_case_t *c)
{
    return c->len ? c->len : strlen(c->raw);
}

static void test_invalid_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(invalid_cases) / sizeof(invalid_cases[0]); i++) {
        const invalid_case_t *c = &invalid_cases[i];
        int st = 0;
        int r = parse_n(c->raw, inv_len(c), NULL, &st);
        if (r != JN_EPROTO || st != c->status)
            fail_msg("case %zu (%s): r=%d status=%d want %d", i, c->raw, r, st, c->status);
    }
}

/* Growing a bad request byte by byte: incomplete until the error shows,
 * then the same error as the whole input from there on. */
static void test_invalid_growth(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(invalid_cases) / sizeof(invalid_cases[0]); i++) {
        const invalid_case_t *c = &invalid_cases[i];
        size_t n = inv_len(c);
        bool seen = false;
        for (size_t k = 0; k <= n; k++) {
            int st = 0;
            int r = parse_n(c->raw, k, NULL, &st);
            if (r == JN_EPARTIAL && !seen)
                continue;
            if (r != JN_EPROTO || st != c->status)
                fail_msg("case %zu prefix %zu: r=%d status=%d", i, k, r, st);
            seen = true;
        }
        assert_true(seen);
    }
}

/* ---- limits ---- */

static void test_limits_default(void **state)
{
    (void)state;
    jn_http_limits_t l;
    jn_http_limits_default(&l);
    assert_int_equal(l.max_request_line, 8192);
    assert_int_equal(l.max_header_bytes, 16384);
    assert_int_equal(l.max_headers, 64);
    assert_true(l.max_headers <= JN_HTTP_MAX_HEADERS);
}

static void test_request_line_limit(void **state)
{
    (void)state;
    jn_http_limits_t l = {.max_request_line = 20, .max_header_bytes = 1000, .max_headers = 10};
    int st;
    /* "GET /aaaaaaa HTTP/1.1" is 21 bytes, "GET /aaaaaa HTTP/1.1" 20. */
    assert_true(parse_n(S("GET /aaaaaa HTTP/1.1\r\n\r\n"), &l, &st) > 0);
    assert_true(parse_n(S("GET /aaaaaa HTTP/1.1\n\n"), &l, &st) > 0);
    assert_int_equal(parse_n(S("GET /aaaaaa HTTP/1.1"), &l, &st), JN_EPARTIAL);
    assert_int_equal(parse_n(S("GET /aaaaaaa HTTP/1.1\r\n\r\n"), &l, &st), JN_EPROTO);
    assert_int_equal(st, 414);
    /* Detected on partial input, as soon as the 21st byte arrives. */
    assert_int_equal(parse_n(S("GET /aaaaaaaaaaaaaaa"), &l, &st), JN_EPARTIAL);
    assert_int_equal(parse_n(S("GET /aaaaaaaaaaaaaaaa"), &l, &st), JN_EPROTO);
    assert_int_equal(st, 414);
    /* Leading empty lines do not count against the line. */
    assert_true(parse_n(S("\r\n\r\nGET /aaaaaa HTTP/1.1\r\n\r\n"), &l, &st) > 0);
    /* A malformed line is reported as such before it gets long. */
    assert_int_equal(parse_n(S("GET  /aaaaaaaaaaaaaaaaaaaaaaaaaaaa"), &l, &st), JN_EPROTO);
    assert_int_equal(st, 400);

    /* Defaults: 8 KiB. */
    size_t n = 9000;
    char *big = malloc(n);
    assert_non_null(big);
    memcpy(big, "GET /", 5);
    memset(big + 5, 'a', n - 5);
    assert_int_equal(parse_n(big, 8192, NULL, &st), JN_EPARTIAL);
    assert_int_equal(parse_n(big, 8193, NULL, &st), JN_EPROTO);
    assert_int_equal(st, 414);
    assert_int_equal(parse_n(big, n, NULL, &st), JN_EPROTO);
    assert_int_equal(st, 414);
    free(big);
}

static void test_header_bytes_limit(void **state)
{
    (void)state;
    jn_http_limits_t l = {.max_request_line = 100, .max_header_bytes = 40, .max_headers = 10};
    int st;
    /* 40 bytes exactly. */
    const char ok[] = "GET / HTTP/1.1\r\nX-Abc: 0123456789abc\r\n\r\n";
    assert_int_equal(sizeof(ok) - 1, 40);
    assert_int_equal(parse_n(S(ok), &l, &st), 40);
    /* One more byte in the head. */
    const char big[] = "GET / HTTP/1.1\r\nX-Abc: 0123456789abcd\r\n\r\n";
    assert_int_equal(parse_n(S(big), &l, &st), JN_EPROTO);
    assert_int_equal(st, 431);
    /* On partial input: 40 bytes may still end, 41 may not. */
    assert_int_equal(parse_n(big, 40, &l, &st), JN_EPARTIAL);
    assert_int_equal(parse_n(big, 41, &l, &st), JN_EPROTO);
    assert_int_equal(st, 431);
    /* A body after a head within the limit does not count. */
    assert_int_equal(parse_n(S("GET / HTTP/1.1\r\n\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), &l, &st), 18);
    /* Endless empty lines before the request line are bounded too. */
    char crlf[64];
    for (size_t i = 0; i < sizeof(crlf); i += 2)
        memcpy(crlf + i, "\r\n", 2);
    assert_int_equal(parse_n(crlf, 40, &l, &st), JN_EPARTIAL);
    assert_int_equal(parse_n(crlf, 42, &l, &st), JN_EPROTO);
    assert_int_equal(st, 431);
    /* A long request line beyond the head cap is 431, not 414. */
    assert_int_equal(parse_n(S("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), &l, &st), JN_EPROTO);
    assert_int_equal(st, 431);

    /* Defaults: 16 KiB. */
    size_t n = 20000;
    char *b = malloc(n);
    assert_non_null(b);
    memset(b, 'v', n);
    memcpy(b, "GET / HTTP/1.1\r\nX: ", 19);
    assert_int_equal(parse_n(b, 16384, NULL, &st), JN_EPARTIAL);
    assert_int_equal(parse_n(b, 16385, NULL, &st), JN_EPROTO);
    assert_int_equal(st, 431);
    free(b);
}

static void test_header_count_limit(void **state)
{
    (void)state;
    jn_http_limits_t l = {.max_request_line = 100, .max_header_bytes = 10000, .max_headers = 2};
    int st;
    assert_true(parse_n(S("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n"), &l, &st) > 0);
    assert_int_equal(parse_n(S("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"), &l, &st), JN_EPROTO);
    assert_int_equal(st, 431);
    /* Known as soon as the third line starts. */
    assert_int_equal(parse_n(S("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC"), &l, &st), JN_EPROTO);
    assert_int_equal(st, 431);

    /* The default is 64, and a larger limit is held to JN_HTTP_MAX_HEADERS. */
    static const int counts[] = {64, 65, 100, 101};
    char *d = malloc(4096);
    assert_non_null(d);
    for (int v = 0; v < 4; v++) {
        size_t m = (size_t)snprintf(d, 4096, "GET / HTTP/1.1\r\n");
        for (int i = 0; i < counts[v]; i++)
            m += (size_t)snprintf(d + m, 4096 - m, "H%d: v\r\n", i);
        m += (size_t)snprintf(d + m, 4096 - m, "\r\n");
        int r = parse_n(d, m, NULL, &st);
        if (counts[v] <= 64) {
            assert_int_equal(r, (int)m);
        } else {
            assert_int_equal(r, JN_EPROTO);
            assert_int_equal(st, 431);
        }
        jn_http_limits_t huge = {.max_request_line = 100, .max_header_bytes = 100000, .max_headers = 1000};
        r = parse_n(d, m, &huge, &st);
        if (counts[v] <= JN_HTTP_MAX_HEADERS) {
            assert_int_equal(r, (int)m);
        } else {
            assert_int_equal(r, JN_EPROTO);
            assert_int_equal(st, 431);
        }
    }
    free(d);
}

/* ---- pipelining ---- */

static void test_pipelined(void **state)
{
    (void)state;
    const char raw[] = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
                       "POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                       "GET /c HTTP/1.0\r\n\r\n";
    size_t n = sizeof(raw) - 1;
    char *b = dup_exact(raw, n);
    jn_http_request_t req;
    int st;
    size_t off = 0;

    int r = jn_http_parse_request(b + off, n - off, NULL, &req, &st);
    assert_int_equal(r, (int)strlen("GET /a HTTP/1.1\r\nHost: h\r\n\r\n"));
    assert_view(req.path, req.path_len, "/a");
    assert_true(req.keep_alive);
    off += (size_t)r;

    r = jn_http_parse_request(b + off, n - off, NULL, &req, &st);
    assert_int_equal(r, (int)strlen("POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\n"));
    assert_view(req.method, req.method_len, "POST");
    assert_int_equal(req.content_length, 3);
    off += (size_t)r;
    assert_memory_equal(b + off, "abc", 3);
    off += 3;

    r = jn_http_parse_request(b + off, n - off, NULL, &req, &st);
    assert_int_equal(r, (int)strlen("GET /c HTTP/1.0\r\n\r\n"));
    assert_view(req.path, req.path_len, "/c");
    assert_false(req.keep_alive);
    off += (size_t)r;
    assert_int_equal(off, n);
    assert_int_equal(jn_http_parse_request(b + off, 0, NULL, &req, &st), JN_EPARTIAL);
    free(b);
}

static void test_status_may_be_null(void **state)
{
    (void)state;
    jn_http_request_t req;
    assert_int_equal(jn_http_parse_request(S("BAD  / HTTP/1.1\r\n\r\n"), NULL, &req, NULL), JN_EPROTO);
}

/* ---- chunked decoding ---- */

typedef struct chunk_result {
    char out[512];
    size_t out_len;
    size_t consumed;
    int ret;
} chunk_result_t;

/* Feeds |in| to a fresh decoder in pieces ending at |cuts| (ascending),
 * each piece from an exact-size copy, the way a connection would: after
 * each call the input left over is what was not consumed. */
static void chunk_feed(const char *in, size_t n, const size_t *cuts, size_t ncuts, chunk_result_t *res)
{
    jn_http_chunked_t c;
    jn_http_chunked_init(&c);
    memset(res, 0, sizeof(*res));
    size_t pos = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t stop = i < ncuts ? cuts[i] : n;
        if (stop < pos)
            continue;
        size_t len = stop - pos;
        char *b = dup_exact(in + pos, len);
        size_t used = 0;
        int r = jn_http_chunked_decode(&c, b, &len, &used);
        assert_true(used <= stop - pos);
        assert_true(len <= used);
        assert_true(res->out_len + len <= sizeof(res->out));
        memcpy(res->out + res->out_len, b, len);
        res->out_len += len;
        free(b);
        res->ret = r;
        /* Needing more means everything given was taken. */
        if (r == 0)
            assert_int_equal(used, stop - pos);
        pos += used;
        if (r != 0)
            break;
    }
    res->consumed = pos;
}

static const char chunked_body[] = "5\r\nhello\r\n"
                                   "6;name=value;x=\"q\"\r\n world\r\n"
                                   "A \t;ext\r\n0123456789\r\n"
                                   "00001\r\n!\r\n"
                                   "0\r\nTrailer-A: 1\r\nTrailer-B: 2\r\n\r\n"
                                   "GET /next HTTP/1.1\r\n\r\n";
static const char chunked_decoded[] = "hello world0123456789!";

static void check_chunk_ok(const chunk_result_t *res, size_t body_len)
{
    assert_int_equal(res->ret, 1);
    assert_int_equal(res->out_len, sizeof(chunked_decoded) - 1);
    assert_memory_equal(res->out, chunked_decoded, res->out_len);
    assert_int_equal(res->consumed, body_len);
}

static void test_chunked_whole(void **state)
{
    (void)state;
    size_t n = sizeof(chunked_body) - 1;
    size_t body_len = n - strlen("GET /next HTTP/1.1\r\n\r\n");
    chunk_result_t res;
    chunk_feed(chunked_body, n, NULL, 0, &res);
    check_chunk_ok(&res, body_len);

    /* Once done, further calls use nothing. */
    jn_http_chunked_t c;
    jn_http_chunked_init(&c);
    char *b = dup_exact(chunked_body, n);
    size_t len = n, used = 0;
    assert_int_equal(jn_http_chunked_decode(&c, b, &len, &used), 1);
    assert_memory_equal(b, chunked_decoded, len);
    len = n - used;
    size_t used2 = 99;
    assert_int_equal(jn_http_chunked_decode(&c, b + used, &len, &used2), 1);
    assert_int_equal(len, 0);
    assert_int_equal(used2, 0);
    free(b);
}

static void test_chunked_every_split(void **state)
{
    (void)state;
    size_t n = sizeof(chunked_body) - 1;
    size_t body_len = n - strlen("GET /next HTTP/1.1\r\n\r\n");
    chunk_result_t res;
    for (size_t s = 0; s <= n; s++) {
        chunk_feed(chunked_body, n, &s, 1, &res);
        check_chunk_ok(&res, body_len);
    }
    /* Every pair of cut points, too. */
    for (size_t s = 0; s <= body_len; s++)
        for (size_t t = s; t <= body_len; t++) {
            size_t cuts[2] = {s, t};
            chunk_feed(chunked_body, n, cuts, 2, &res);
            check_chunk_ok(&res, body_len);
        }
}

static void test_chunked_byte_at_a_time(void **state)
{
    (void)state;
    size_t n = sizeof(chunked_body) - 1;
    size_t body_len = n - strlen("GET /next HTTP/1.1\r\n\r\n");
    size_t cuts[sizeof(chunked_body)];
    for (size_t i = 0; i < n; i++)
        cuts[i] = i + 1;
    chunk_result_t res;
    chunk_feed(chunked_body, n, cuts, n, &res);
    check_chunk_ok(&res, body_len);
}

static void test_chunked_variants(void **state)
{
    (void)state;
    chunk_result_t res;
    /* Bare LF line endings. */
    chunk_feed(S("5\nhello\n0\n\n"), NULL, 0, &res);
    assert_int_equal(res.ret, 1);
    assert_int_equal(res.out_len, 5);
    assert_memory_equal(res.out, "hello", 5);
    /* Upper- and lower-case hex. */
    chunk_feed(S("a\r\n0123456789\r\nB\r\nabcdefghijk\r\n0\r\n\r\n"), NULL, 0, &res);
    assert_int_equal(res.ret, 1);
    assert_int_equal(res.out_len, 21);
    /* Empty body. */
    chunk_feed(S("0\r\n\r\n"), NULL, 0, &res);
    assert_int_equal(res.ret, 1);
    assert_int_equal(res.out_len, 0);
    assert_int_equal(res.consumed, 5);
    /* Incomplete: needs more, everything consumed. */
    chunk_feed(S("5\r\nhel"), NULL, 0, &res);
    assert_int_equal(res.ret, 0);
    assert_int_equal(res.out_len, 3);
    assert_int_equal(res.consumed, 6);
    chunk_feed(S("0\r\nX: y\r\n"), NULL, 0, &res);
    assert_int_equal(res.ret, 0);
    /* The largest size allowed, 2^62, is accepted (and then waits). */
    jn_http_chunked_t c;
    jn_http_chunked_init(&c);
    char big[] = "4000000000000000\r\n";
    size_t len = sizeof(big) - 1, used;
    assert_int_equal(jn_http_chunked_decode(&c, big, &len, &used), 0);
    assert_int_equal(c.remaining, 1ULL << 62);
    assert_int_equal(len, 0);
    /* Zero-length input. */
    jn_http_chunked_init(&c);
    len = 0;
    assert_int_equal(jn_http_chunked_decode(&c, big, &len, &used), 0);
    assert_int_equal(used, 0);
}

static void test_chunked_bad(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
    } bad[] = {
        {"x\r\n", 0},
        {"\r\n", 0},
        {"-5\r\nhello\r\n0\r\n\r\n", 0},
        {"0x5\r\nhello\r\n0\r\n\r\n", 0},
        {"5\r\nhelloX\r\n0\r\n\r\n", 0},
        {"5\r\nhello\rX0\r\n\r\n", 0},
        {"5\r\nhello\r\r\n", 0},
        {"5 x\r\nhello\r\n0\r\n\r\n", 0},
        {"5 \r\nhello\r\n0\r\n\r\n", 0},
        {"5\rX", 0},
        {"5;a\x01\r\nhello\r\n0\r\n\r\n", 0},
        {"5;a\rb\r\nhello\r\n0\r\n\r\n", 0},
        {"4000000000000001\r\n", 0},
        {"10000000000000000\r\n", 0},
        {"ffffffffffffffffffff\r\n", 0},
        {"0\r\nX: a\x01\r\n\r\n", 0},
        {"0\r\nX: a\rb\r\n\r\n", 0},
        {"0\r\n\rX", 0},
        {"5\r\nhello\r\n0\0\r\n\r\n", 17},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = bad[i].len ? bad[i].len : strlen(bad[i].in);
        chunk_result_t res;
        chunk_feed(bad[i].in, n, NULL, 0, &res);
        if (res.ret != JN_EPROTO)
            fail_msg("bad chunk case %zu: ret %d", i, res.ret);
        /* Same verdict byte by byte. */
        size_t cuts[64];
        assert_true(n <= 64);
        for (size_t k = 0; k < n; k++)
            cuts[k] = k + 1;
        chunk_feed(bad[i].in, n, cuts, n, &res);
        if (res.ret != JN_EPROTO)
            fail_msg("bad chunk case %zu byte-wise: ret %d", i, res.ret);
    }

    /* Size and trailer lines over 4 KiB. */
    size_t n = 5000;
    char *b = malloc(n + 16);
    assert_non_null(b);
    memcpy(b, "5;", 2);
    memset(b + 2, 'e', n - 2);
    chunk_result_t res;
    chunk_feed(b, n, NULL, 0, &res);
    assert_int_equal(res.ret, JN_EPROTO);
    memcpy(b, "5;", 2);
    memset(b + 2, 'e', 4000);
    memcpy(b + 4002, "\r\nhello\r\n0\r\n\r\n", 15);
    chunk_feed(b, 4002 + 15, NULL, 0, &res);
    assert_int_equal(res.ret, 1);
    memcpy(b, "0\r\nX:", 5);
    memset(b + 5, 'v', n - 5);
    chunk_feed(b, n, NULL, 0, &res);
    assert_int_equal(res.ret, JN_EPROTO);
    free(b);

    /* Many small trailer lines: bounded in total. */
    size_t tn = 3 + 20000 * 6 + 2;
    char *t = malloc(tn);
    assert_non_null(t);
    memcpy(t, "0\r\n", 3);
    for (size_t i = 0; i < 20000; i++)
        memcpy(t + 3 + i * 6, "X: y\r\n", 6);
    memcpy(t + tn - 2, "\r\n", 2);
    chunk_feed(t, tn, NULL, 0, &res);
    assert_int_equal(res.ret, JN_EPROTO);
    free(t);

    /* Errors stick. */
    jn_http_chunked_t c;
    jn_http_chunked_init(&c);
    char x[] = "zz";
    size_t len = 2, used;
    assert_int_equal(jn_http_chunked_decode(&c, x, &len, &used), JN_EPROTO);
    char y[] = "0\r\n\r\n";
    len = 5;
    assert_int_equal(jn_http_chunked_decode(&c, y, &len, &used), JN_EPROTO);
}

/* ---- URL helpers ---- */

static void test_urldecode(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(jn_http_urldecode(S("a%20b"), out, false), 3);
    assert_string_equal(out, "a b");
    assert_int_equal(jn_http_urldecode(S("a+b"), out, true), 3);
    assert_string_equal(out, "a b");
    assert_int_equal(jn_http_urldecode(S("a+b"), out, false), 3);
    assert_string_equal(out, "a+b");
    assert_int_equal(jn_http_urldecode(S("%41%6a%2B%2f"), out, true), 4);
    assert_string_equal(out, "Aj+/");
    assert_int_equal(jn_http_urldecode(S("%e2%82%AC"), out, false), 3);
    assert_string_equal(out, "\xe2\x82\xac");
    assert_int_equal(jn_http_urldecode("", 0, out, false), 0);
    assert_string_equal(out, "");
    assert_int_equal(jn_http_urldecode(S("plain"), out, false), 5);
    assert_string_equal(out, "plain");
    /* Only |inlen| bytes are read. */
    assert_int_equal(jn_http_urldecode("abcdef", 3, out, false), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(jn_http_urldecode(S("%"), out, false), JN_EINVAL);
    assert_int_equal(jn_http_urldecode(S("a%2"), out, false), JN_EINVAL);
    assert_int_equal(jn_http_urldecode(S("%zz"), out, false), JN_EINVAL);
    assert_int_equal(jn_http_urldecode(S("%g0"), out, false), JN_EINVAL);
    assert_int_equal(jn_http_urldecode(S("a%00b"), out, false), JN_EINVAL);
    assert_int_equal(jn_http_urldecode("a\0b", 3, out, false), JN_EINVAL);
    /* A trailing '%' cut by inlen is an error even if more follows. */
    assert_int_equal(jn_http_urldecode("a%41", 3, out, false), JN_EINVAL);
}

static void test_query_get(void **state)
{
    (void)state;
    char out[32];
    const char q[] = "a=1&bb=two&flag&empty=&x=a+b%21&a=2&k%20y=v&eq=a=b&bad=%zz&big=0123456789abcdef";
    size_t qn = sizeof(q) - 1;
    assert_int_equal(jn_http_query_get(q, qn, "a", out, sizeof(out)), 1);
    assert_string_equal(out, "1");
    assert_int_equal(jn_http_query_get(q, qn, "bb", out, sizeof(out)), 3);
    assert_string_equal(out, "two");
    assert_int_equal(jn_http_query_get(q, qn, "b", out, sizeof(out)), JN_ENOENT);
    assert_int_equal(jn_http_query_get(q, qn, "flag", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(jn_http_query_get(q, qn, "empty", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(jn_http_query_get(q, qn, "x", out, sizeof(out)), 4);
    assert_string_equal(out, "a b!");
    assert_int_equal(jn_http_query_get(q, qn, "k y", out, sizeof(out)), 1);
    assert_string_equal(out, "v");
    assert_int_equal(jn_http_query_get(q, qn, "eq", out, sizeof(out)), 3);
    assert_string_equal(out, "a=b");
    assert_int_equal(jn_http_query_get(q, qn, "bad", out, sizeof(out)), JN_EINVAL);
    assert_int_equal(jn_http_query_get(q, qn, "big", out, 16), JN_ETOOBIG);
    assert_int_equal(jn_http_query_get(q, qn, "big", out, 17), 16);
    assert_string_equal(out, "0123456789abcdef");
    assert_int_equal(jn_http_query_get(q, qn, "a", out, 1), JN_ETOOBIG);
    assert_int_equal(jn_http_query_get(q, qn, "flag", out, 1), 0);
    assert_int_equal(jn_http_query_get(q, qn, "flag", out, 0), JN_ETOOBIG);
    assert_int_equal(jn_http_query_get(q, qn, "missing", out, sizeof(out)), JN_ENOENT);
    assert_int_equal(jn_http_query_get(NULL, 0, "a", out, sizeof(out)), JN_ENOENT);
    assert_int_equal(jn_http_query_get("", 0, "a", out, sizeof(out)), JN_ENOENT);
    assert_int_equal(jn_http_query_get(S("&&=x&a&"), "a", out, sizeof(out)), 0);
    assert_int_equal(jn_http_query_get(S("&&=x&a&"), "", out, sizeof(out)), JN_ENOENT);
    /* Keys with bad escapes match nothing; the search goes on. */
    assert_int_equal(jn_http_query_get(S("%zz=1&%7a=2"), "z", out, sizeof(out)), 1);
    assert_string_equal(out, "2");
    /* Only |qlen| bytes are looked at. */
    assert_int_equal(jn_http_query_get("a=1&b=2", 3, "b", out, sizeof(out)), JN_ENOENT);
    assert_int_equal(jn_http_query_get("a=12345", 4, "a", out, sizeof(out)), 2);
    assert_string_equal(out, "12");
}

static void test_reason(void **state)
{
    (void)state;
    static const int codes[] = {100, 101, 200, 201, 202, 204, 206, 301, 302, 304, 400,
                                401, 403, 404, 405, 408, 409, 411, 413, 414, 415, 416,
                                422, 426, 429, 431, 500, 501, 502, 503, 504, 505};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *r = jn_http_reason(codes[i]);
        assert_non_null(r);
        assert_true(strlen(r) > 1);
    }
    assert_string_equal(jn_http_reason(200), "OK");
    assert_string_equal(jn_http_reason(404), "Not Found");
    assert_string_equal(jn_http_reason(101), "Switching Protocols");
    assert_string_equal(jn_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(jn_http_reason(505), "HTTP Version Not Supported");
    assert_non_null(jn_http_reason(599));
    assert_non_null(jn_http_reason(0));
    assert_non_null(jn_http_reason(-1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_table),
        cmocka_unit_test(test_valid_prefixes_and_growth),
        cmocka_unit_test(test_find_header),
        cmocka_unit_test(test_invalid_table),
        cmocka_unit_test(test_invalid_growth),
        cmocka_unit_test(test_limits_default),
        cmocka_unit_test(test_request_line_limit),
        cmocka_unit_test(test_header_bytes_limit),
        cmocka_unit_test(test_header_count_limit),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_status_may_be_null),
        cmocka_unit_test(test_chunked_whole),
        cmocka_unit_test(test_chunked_every_split),
        cmocka_unit_test(test_chunked_byte_at_a_time),
        cmocka_unit_test(test_chunked_variants),
        cmocka_unit_test(test_chunked_bad),
        cmocka_unit_test(test_urldecode),
        cmocka_unit_test(test_query_get),
        cmocka_unit_test(test_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
