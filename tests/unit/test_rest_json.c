/* test_rest_json.c - the REST door's pure helpers (rest_json.c): UTF-8
 * checks, JSON string escaping, base64, records rendered as JSON (text vs
 * base64, null keys, values and headers, the hidden ":subject" header),
 * batch-publish records parsed from JSON, the error mapping; and that the
 * embedded openapi.json documents exactly the routes the door registers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/assets.h"
#include "common/utf8.h"
#include "proto/rest/rest_internal.h"

#define U8(s) ((const uint8_t *)(s))

/* Renders |rec| and parses the result back with jansson. */
static json_t *render(const jn_record_t *rec, const char *subject)
{
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    assert_int_equal(jn_rest_record_json(&b, "sensors", 7, 3, rec, subject, strlen(subject)), 0);
    json_error_t e;
    json_t *j = json_loadb((const char *)b.data, b.len, JSON_ALLOW_NUL, &e);
    if (!j)
        fail_msg("invalid JSON (%s): %.*s", e.text, (int)b.len, (const char *)b.data);
    jn_buf_free(&b);
    return j;
}

static void test_utf8_valid(void **state)
{
    (void)state;
    assert_true(jn_utf8_valid(U8(""), 0));
    assert_true(jn_utf8_valid(U8("plain ascii"), 11));
    assert_true(jn_utf8_valid(U8("a\0b"), 3));
    assert_true(jn_utf8_valid(U8("caf\xc3\xa9"), 5));
    assert_true(jn_utf8_valid(U8("\xe2\x82\xac"), 3));          /* euro sign */
    assert_true(jn_utf8_valid(U8("\xf0\x9f\x98\x80"), 4));      /* emoji */
    assert_true(jn_utf8_valid(U8("\xf4\x8f\xbf\xbf"), 4));      /* U+10FFFF */
    assert_false(jn_utf8_valid(U8("\xff"), 1));
    assert_false(jn_utf8_valid(U8("\xc3"), 1));                 /* truncated */
    assert_false(jn_utf8_valid(U8("\xc0\xaf"), 2));             /* overlong '/' */
    assert_false(jn_utf8_valid(U8("\xe0\x80\xaf"), 3));         /* overlong */
    assert_false(jn_utf8_valid(U8("\xed\xa0\x80"), 3));         /* surrogate */
    assert_false(jn_utf8_valid(U8("\xf4\x90\x80\x80"), 4));     /* > U+10FFFF */
    assert_false(jn_utf8_valid(U8("\xe2\x82"), 2));
    assert_false(jn_utf8_valid(U8("\x80"), 1));
}

static void test_json_string_escaping(void **state)
{
    (void)state;
    jn_buf_t b;
    jn_buf_init(&b, 1024);
    assert_int_equal(jn_rest_json_string(&b, U8("a\"b\\c\n\t\x01\x7f\xc3\xa9"), 11), 0);
    const char *want = "\"a\\\"b\\\\c\\n\\t\\u0001\x7f\xc3\xa9\"";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    /* Invalid bytes become U+00XX, so the output is still valid JSON. */
    jn_buf_reset(&b);
    assert_int_equal(jn_rest_json_string(&b, U8("x\xffy"), 3), 0);
    assert_memory_equal(b.data, "\"x\\u00ffy\"", b.len);
    /* NUL is escaped. */
    jn_buf_reset(&b);
    assert_int_equal(jn_rest_json_string(&b, U8("\0"), 1), 0);
    assert_memory_equal(b.data, "\"\\u0000\"", b.len);
    /* Over the cap: error, buffer unchanged. */
    jn_buf_t small;
    jn_buf_init(&small, 8);
    assert_int_equal(jn_buf_append(&small, "ab", 2), 0);
    assert_int_equal(jn_rest_json_string(&small, U8("\n\n\n\n"), 4), JN_ETOOBIG);
    assert_int_equal(small.len, 2);
    jn_buf_free(&small);
    jn_buf_free(&b);

    char out[16];
    assert_int_equal(jn_rest_json_string_to(out, sizeof(out), U8("a/b"), 3), 5);
    assert_string_equal(out, "\"a/b\"");
    assert_int_equal(jn_rest_json_string_to(out, sizeof(out), U8("0123456789abcdef"), 16), -1);
    assert_int_equal(jn_rest_json_string_to(out, 8, U8("123456"), 6), -1); /* needs 9 with NUL */
    assert_int_equal(jn_rest_json_string_to(out, 9, U8("123456"), 6), 8);
}

static void test_base64(void **state)
{
    (void)state;
    static const struct { const char *raw, *enc; } v[] = {
        {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
    };
    jn_buf_t b;
    jn_buf_init(&b, 1024);
    uint8_t dec[64];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        jn_buf_reset(&b);
        assert_int_equal(jn_rest_base64_encode(&b, U8(v[i].raw), strlen(v[i].raw)), 0);
        assert_int_equal(b.len, strlen(v[i].enc));
        assert_memory_equal(b.data, v[i].enc, b.len);
        assert_int_equal(jn_rest_base64_decode(v[i].enc, strlen(v[i].enc), dec), (int)strlen(v[i].raw));
        assert_memory_equal(dec, v[i].raw, strlen(v[i].raw));
    }
    /* Padding is optional. */
    assert_int_equal(jn_rest_base64_decode("Zm8", 3, dec), 2);
    assert_memory_equal(dec, "fo", 2);
    /* Bad input. */
    assert_int_equal(jn_rest_base64_decode("Z", 1, dec), JN_EINVAL);
    assert_int_equal(jn_rest_base64_decode("Zm9v!A==", 8, dec), JN_EINVAL);
    assert_int_equal(jn_rest_base64_decode("Z===", 4, dec), JN_EINVAL);
    assert_int_equal(jn_rest_base64_decode("Zm=v", 4, dec), JN_EINVAL);
    assert_int_equal(jn_rest_base64_decode("Zh==", 4, dec), JN_EINVAL); /* non-zero trailing bits */
    /* All byte values round-trip. */
    uint8_t all[256], back[jn_rest_base64_decoded_max(344)];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    jn_buf_reset(&b);
    assert_int_equal(jn_rest_base64_encode(&b, all, sizeof(all)), 0);
    assert_int_equal(jn_rest_base64_decode((const char *)b.data, b.len, back), 256);
    assert_memory_equal(back, all, 256);
    jn_buf_free(&b);
}

static void test_record_text(void **state)
{
    (void)state;
    jn_header_t hs[] = {
        {U8(":subject"), 8, U8("sensors/kitchen/temp"), 20},
        {U8("content-type"), 12, U8("application/json"), 16},
        {U8("trace"), 5, NULL, -1},
    };
    jn_record_t rec = {.key = U8("k1"), .key_len = 2, .value = U8("{\"c\":21.5}"), .value_len = 10,
                       .timestamp = 1764403200123, .offset = 42, .header_count = 3, .headers = hs};
    json_t *j = render(&rec, "sensors/kitchen/temp");
    assert_string_equal(json_string_value(json_object_get(j, "stream")), "sensors");
    assert_int_equal(json_integer_value(json_object_get(j, "partition")), 3);
    assert_int_equal(json_integer_value(json_object_get(j, "offset")), 42);
    assert_string_equal(json_string_value(json_object_get(j, "subject")), "sensors/kitchen/temp");
    assert_int_equal(json_integer_value(json_object_get(j, "timestamp")), 1764403200123);
    assert_string_equal(json_string_value(json_object_get(j, "key")), "k1");
    assert_null(json_object_get(j, "key_encoding"));
    assert_string_equal(json_string_value(json_object_get(j, "value")), "{\"c\":21.5}");
    assert_string_equal(json_string_value(json_object_get(j, "encoding")), "utf8");
    json_t *h = json_object_get(j, "headers");
    assert_int_equal(json_object_size(h), 2); /* ":subject" is not shown */
    assert_string_equal(json_string_value(json_object_get(h, "content-type")), "application/json");
    assert_true(json_is_null(json_object_get(h, "trace")));
    assert_null(json_object_get(j, "base64_headers"));
    json_decref(j);
}

static void test_record_binary_and_nulls(void **state)
{
    (void)state;
    jn_header_t hs[] = {{U8("sig"), 3, U8("\xde\xad\xbe\xef"), 4}, {U8("ok"), 2, U8("yes"), 3}};
    jn_record_t rec = {.key = U8("\xff\xfe"), .key_len = 2, .value = U8("\xff\x00" "binary"), .value_len = 8,
                       .offset = 7, .header_count = 2, .headers = hs};
    json_t *j = render(&rec, "sensors");
    assert_string_equal(json_string_value(json_object_get(j, "key")), "//4=");
    assert_string_equal(json_string_value(json_object_get(j, "key_encoding")), "base64");
    assert_string_equal(json_string_value(json_object_get(j, "value")), "/wBiaW5hcnk=");
    assert_string_equal(json_string_value(json_object_get(j, "encoding")), "base64");
    json_t *h = json_object_get(j, "headers");
    assert_string_equal(json_string_value(json_object_get(h, "sig")), "3q2+7w==");
    assert_string_equal(json_string_value(json_object_get(h, "ok")), "yes");
    json_t *b64 = json_object_get(j, "base64_headers");
    assert_int_equal(json_array_size(b64), 1);
    assert_string_equal(json_string_value(json_array_get(b64, 0)), "sig");
    json_decref(j);

    /* A tombstone with no key and no headers. */
    jn_record_t tomb = {.key = NULL, .key_len = -1, .value = NULL, .value_len = -1, .offset = 8};
    j = render(&tomb, "sensors");
    assert_true(json_is_null(json_object_get(j, "key")));
    assert_true(json_is_null(json_object_get(j, "value")));
    assert_int_equal(json_object_size(json_object_get(j, "headers")), 0);
    json_decref(j);

    /* Empty value is text, not null; text with NUL and control bytes survives. */
    jn_record_t empty = {.key = U8(""), .key_len = 0, .value = U8("a\0\n\"b"), .value_len = 5};
    j = render(&empty, "s/\"quoted\"");
    assert_string_equal(json_string_value(json_object_get(j, "key")), "");
    assert_int_equal(json_string_length(json_object_get(j, "value")), 5);
    assert_memory_equal(json_string_value(json_object_get(j, "value")), "a\0\n\"b", 5);
    assert_string_equal(json_string_value(json_object_get(j, "subject")), "s/\"quoted\"");
    json_decref(j);
}

static void test_record_json_cap(void **state)
{
    (void)state;
    jn_record_t rec = {.value = U8("0123456789"), .value_len = 10, .key_len = -1};
    jn_buf_t b;
    jn_buf_init(&b, 64);
    assert_int_equal(jn_buf_append(&b, "[", 1), 0);
    assert_int_equal(jn_rest_record_json(&b, "sensors", 7, 0, &rec, "sensors", 7), JN_ETOOBIG);
    assert_int_equal(b.len, 1);
    jn_buf_free(&b);
}

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (!j)
        fail_msg("bad test JSON: %s", e.text);
    return j;
}

static void test_rec_parse(void **state)
{
    (void)state;
    char err[256];
    jn_rest_rec_t r;
    json_t *j = parse("{\"subject\":\"a/b\",\"key\":\"k\",\"value\":\"hello\",\"partition\":2,\"timestamp\":1003,"
                      "\"headers\":{\"x\":\"1\",\"n\":null,\"bin\":\"3q2+7w==\"},\"base64_headers\":[\"bin\"]}");
    assert_int_equal(jn_rest_rec_parse(j, &r, err, sizeof(err)), 0);
    assert_int_equal(r.subject_len, 3);
    assert_memory_equal(r.subject, "a/b", 3);
    assert_int_equal(r.partition, 2);
    assert_int_equal(r.rec.timestamp, 1003);
    assert_int_equal(r.rec.key_len, 1);
    assert_memory_equal(r.rec.key, "k", 1);
    assert_int_equal(r.rec.value_len, 5);
    assert_memory_equal(r.rec.value, "hello", 5);
    assert_int_equal(r.rec.header_count, 3);
    for (uint32_t i = 0; i < 3; i++) {
        const jn_header_t *h = &r.rec.headers[i];
        if (h->key_len == 1 && h->key[0] == 'x') {
            assert_int_equal(h->value_len, 1);
        } else if (h->key_len == 1 && h->key[0] == 'n') {
            assert_null(h->value);
            assert_int_equal(h->value_len, -1);
        } else {
            assert_int_equal(h->value_len, 4);
            assert_memory_equal(h->value, "\xde\xad\xbe\xef", 4);
        }
    }
    jn_rest_rec_free(&r);
    json_decref(j);

    /* Base64 value and key, defaults. */
    j = parse("{\"subject\":\"s\",\"value\":\"/wA=\",\"encoding\":\"base64\",\"key\":\"//4=\",\"key_encoding\":\"base64\"}");
    assert_int_equal(jn_rest_rec_parse(j, &r, err, sizeof(err)), 0);
    assert_int_equal(r.partition, -1);
    assert_int_equal(r.rec.timestamp, 0);
    assert_int_equal(r.rec.value_len, 2);
    assert_memory_equal(r.rec.value, "\xff\x00", 2);
    assert_int_equal(r.rec.key_len, 2);
    assert_memory_equal(r.rec.key, "\xff\xfe", 2);
    assert_int_equal(r.rec.header_count, 0);
    jn_rest_rec_free(&r);
    json_decref(j);

    /* Tombstone; a JSON object value is stored as its text; no subject. */
    j = parse("{\"subject\":\"s\",\"value\":null}");
    assert_int_equal(jn_rest_rec_parse(j, &r, err, sizeof(err)), 0);
    assert_null(r.rec.value);
    assert_int_equal(r.rec.value_len, -1);
    assert_null(r.rec.key);
    assert_int_equal(r.rec.key_len, -1);
    jn_rest_rec_free(&r);
    json_decref(j);
    j = parse("{\"value\":{\"c\":21.5}}");
    assert_int_equal(jn_rest_rec_parse(j, &r, err, sizeof(err)), 0);
    assert_null(r.subject);
    assert_int_equal(r.rec.value_len, 10);
    assert_memory_equal(r.rec.value, "{\"c\":21.5}", 10);
    jn_rest_rec_free(&r);
    json_decref(j);

    /* Errors. */
    static const char *bad[] = {
        "[1]",
        "{\"subject\":1,\"value\":\"x\"}",
        "{\"subject\":\"s\"}",
        "{\"subject\":\"s\",\"value\":\"!!\",\"encoding\":\"base64\"}",
        "{\"subject\":\"s\",\"value\":\"x\",\"encoding\":\"latin1\"}",
        "{\"subject\":\"s\",\"value\":1,\"encoding\":\"base64\"}",
        "{\"subject\":\"s\",\"value\":\"x\",\"key\":5}",
        "{\"subject\":\"s\",\"value\":\"x\",\"partition\":-1}",
        "{\"subject\":\"s\",\"value\":\"x\",\"timestamp\":\"now\"}",
        "{\"subject\":\"s\",\"value\":\"x\",\"headers\":[]}",
        "{\"subject\":\"s\",\"value\":\"x\",\"headers\":{\"h\":1}}",
        "{\"subject\":\"s\",\"value\":\"x\",\"headers\":{\":subject\":\"spoof\"}}",
        "{\"subject\":\"s\",\"value\":\"x\",\"headers\":{\"b\":\"!\"},\"base64_headers\":[\"b\"]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        j = parse(bad[i]);
        if (jn_rest_rec_parse(j, &r, err, sizeof(err)) != JN_EINVAL)
            fail_msg("accepted: %s", bad[i]);
        assert_true(err[0] != '\0');
        assert_null(r.headers);
        assert_null(r.owned);
        json_decref(j);
    }
    /* Too many headers. */
    j = json_pack("{s:s,s:s,s:{}}", "subject", "s", "value", "v", "headers");
    for (int i = 0; i <= JN_REST_MAX_HEADERS; i++) {
        char name[16];
        snprintf(name, sizeof(name), "h%d", i);
        json_object_set_new(json_object_get(j, "headers"), name, json_string("v"));
    }
    assert_int_equal(jn_rest_rec_parse(j, &r, err, sizeof(err)), JN_EINVAL);
    json_decref(j);
}

/* What the parser reads back renders as the same bytes. */
static void test_rec_roundtrip(void **state)
{
    (void)state;
    jn_header_t hs[] = {{U8("sig"), 3, U8("\x01\xff"), 2}, {U8("t"), 1, U8("text"), 4}};
    jn_record_t rec = {.key = U8("\x80"), .key_len = 1, .value = U8("\xc3\x28"), .value_len = 2,
                       .timestamp = 5, .header_count = 2, .headers = hs};
    json_t *j = render(&rec, "s");
    char err[256];
    jn_rest_rec_t r;
    assert_int_equal(jn_rest_rec_parse(j, &r, err, sizeof(err)), 0);
    assert_int_equal(r.rec.key_len, 1);
    assert_memory_equal(r.rec.key, "\x80", 1);
    assert_int_equal(r.rec.value_len, 2);
    assert_memory_equal(r.rec.value, "\xc3\x28", 2);
    assert_int_equal(r.rec.timestamp, 5);
    assert_int_equal(r.rec.header_count, 2);
    for (uint32_t i = 0; i < 2; i++) {
        const jn_header_t *h = &r.rec.headers[i];
        if (h->key_len == 3) {
            assert_int_equal(h->value_len, 2);
            assert_memory_equal(h->value, "\x01\xff", 2);
        } else {
            assert_int_equal(h->value_len, 4);
            assert_memory_equal(h->value, "text", 4);
        }
    }
    jn_rest_rec_free(&r);
    json_decref(j);
}

static void test_error_status(void **state)
{
    (void)state;
    const char *code;
    assert_int_equal(jn_rest_error_status(JN_ENOENT, false, &code), 404);
    assert_string_equal(code, "not_found");
    assert_int_equal(jn_rest_error_status(JN_EEXIST, false, &code), 409);
    assert_string_equal(code, "already_exists");
    assert_int_equal(jn_rest_error_status(JN_EINVAL, true, &code), 400);
    assert_string_equal(code, "invalid_name");
    assert_int_equal(jn_rest_error_status(JN_EINVAL, false, &code), 400);
    assert_string_equal(code, "bad_request");
    assert_int_equal(jn_rest_error_status(JN_ERANGE, false, &code), 416);
    assert_string_equal(code, "offset_out_of_range");
    assert_int_equal(jn_rest_error_status(JN_ETOOBIG, false, &code), 413);
    assert_string_equal(code, "payload_too_large");
    assert_int_equal(jn_rest_error_status(JN_EPERM, false, &code), 403);
    assert_string_equal(code, "forbidden");
    assert_int_equal(jn_rest_error_status(JN_EAUTH, false, &code), 401);
    assert_string_equal(code, "unauthorized");
    assert_int_equal(jn_rest_error_status(JN_EIO, false, &code), 500);
    assert_string_equal(code, "internal");
    assert_int_equal(jn_rest_error_status(JN_ENOMEM, false, &code), 500);
    assert_string_equal(code, "internal");
}

static void test_parse_i64(void **state)
{
    (void)state;
    int64_t v;
    assert_int_equal(jn_rest_parse_i64("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(jn_rest_parse_i64("-12", &v), 0);
    assert_int_equal(v, -12);
    assert_int_equal(jn_rest_parse_i64("9223372036854775807", &v), 0);
    assert_int_equal(v, INT64_MAX);
    assert_int_equal(jn_rest_parse_i64("9223372036854775808", &v), JN_EINVAL);
    assert_int_equal(jn_rest_parse_i64("", &v), JN_EINVAL);
    assert_int_equal(jn_rest_parse_i64("x", &v), JN_EINVAL);
    assert_int_equal(jn_rest_parse_i64("1x", &v), JN_EINVAL);
    assert_int_equal(jn_rest_parse_i64(" 1", &v), JN_EINVAL);
    assert_int_equal(jn_rest_parse_i64("+1", &v), JN_EINVAL);
    assert_int_equal(jn_rest_parse_i64("-", &v), JN_EINVAL);
}

/* Every registered route is in openapi.json and nothing else is:
 * "{name*}" in a pattern is "{name}" in OpenAPI. */
static void test_openapi_covers_routes(void **state)
{
    (void)state;
    const jn_asset_t *a = jn_asset_find("openapi.json");
    assert_non_null(a);
    json_error_t e;
    json_t *doc = json_loadb((const char *)a->data, a->len, 0, &e);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "openapi")), "3.0.3");
    json_t *paths = json_object_get(doc, "paths");
    const char *routes[64][2];
    size_t n = jn_rest_routes(routes, 64);
    assert_true(n > 0 && n <= 64);
    size_t documented = 0;
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item) {
        const char *m;
        json_t *op;
        /* Routes of other doors documented in the same file (webhooks). */
        if (json_object_get(item, "x-junction-door"))
            continue;
        json_object_foreach(item, m, op) {
            if (strcmp(m, "parameters") != 0 && strncmp(m, "x-", 2) != 0)
                documented++;
        }
    }
    assert_int_equal(documented, n);
    for (size_t i = 0; i < n; i++) {
        char p[256], m[16];
        size_t k = 0;
        for (const char *s = routes[i][1]; *s && k + 1 < sizeof(p); s++)
            if (*s != '*')
                p[k++] = *s;
        p[k] = '\0';
        for (k = 0; routes[i][0][k] && k + 1 < sizeof(m); k++)
            m[k] = (char)(routes[i][0][k] - 'A' + 'a');
        m[k] = '\0';
        json_t *op = json_object_get(json_object_get(paths, p), m);
        if (!op)
            fail_msg("%s %s is not in openapi.json", routes[i][0], routes[i][1]);
        assert_non_null(json_object_get(op, "responses"));
    }
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_json_string_escaping),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_record_text),
        cmocka_unit_test(test_record_binary_and_nulls),
        cmocka_unit_test(test_record_json_cap),
        cmocka_unit_test(test_rec_parse),
        cmocka_unit_test(test_rec_roundtrip),
        cmocka_unit_test(test_error_status),
        cmocka_unit_test(test_parse_i64),
        cmocka_unit_test(test_openapi_covers_routes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
