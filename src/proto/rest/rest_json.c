/* rest_json.c - the REST door's pure helpers: records to JSON and back,
 * UTF-8 checks, base64, and the core-error to HTTP mapping.
 *
 * Records are rendered by hand into a jn_buf_t rather than through jansson:
 * this runs once per record on reads and live feeds, and building a jansson
 * tree per record costs several allocations for nothing. The reverse
 * direction (batch publish bodies) is rare enough to parse with jansson.
 *
 * Bytes that are valid UTF-8 are shown as JSON text; anything else is
 * base64, flagged per docs/rest.md ("encoding", "key_encoding",
 * "base64_headers"), so a client never receives a lossy value.
 */
#include "rest_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/error.h"
#include "../../common/utf8.h"

/* Escape of one byte that cannot be copied as is, into |e| (7 bytes).
 * Returns its length. Invalid UTF-8 bytes are shown as U+0080..U+00FF. */
static size_t escape_byte(uint8_t c, char e[8])
{
    static const char hex[] = "0123456789abcdef";
    switch (c) {
    case '"': memcpy(e, "\\\"", 2); return 2;
    case '\\': memcpy(e, "\\\\", 2); return 2;
    case '\b': memcpy(e, "\\b", 2); return 2;
    case '\f': memcpy(e, "\\f", 2); return 2;
    case '\n': memcpy(e, "\\n", 2); return 2;
    case '\r': memcpy(e, "\\r", 2); return 2;
    case '\t': memcpy(e, "\\t", 2); return 2;
    default:
        memcpy(e, "\\u00", 4);
        e[4] = hex[c >> 4];
        e[5] = hex[c & 15];
        return 6;
    }
}

/* Calls the writer for runs of bytes to copy and for escapes, so that the
 * jn_buf and fixed-buffer versions share one scanner. */
typedef int (*emit_fn)(void *ctx, const void *p, size_t n);

static int json_string_emit(emit_fn emit, void *ctx, const uint8_t *p, size_t len)
{
    int rc = emit(ctx, "\"", 1);
    size_t i = 0, run = 0;
    while (rc == 0 && i < len) {
        uint8_t c = p[i];
        size_t k = 1;
        bool copy;
        if (c < 0x80) {
            copy = c >= 0x20 && c != '"' && c != '\\';
        } else {
            k = jn_utf8_char(p + i, len - i);
            copy = k != 0;
            if (!k)
                k = 1;
        }
        if (copy) {
            i += k;
            continue;
        }
        if (i > run)
            rc = emit(ctx, p + run, i - run);
        char e[8];
        size_t elen = escape_byte(c, e);
        if (rc == 0)
            rc = emit(ctx, e, elen);
        i += 1;
        run = i;
    }
    if (rc == 0 && len > run)
        rc = emit(ctx, p + run, len - run);
    if (rc == 0)
        rc = emit(ctx, "\"", 1);
    return rc;
}

static int emit_buf(void *ctx, const void *p, size_t n) { return jn_buf_append(ctx, p, n); }

int jn_rest_json_string(jn_buf_t *out, const uint8_t *p, size_t len)
{
    size_t mark = out->len;
    int rc = jn_buf_reserve(out, len + 2);
    if (rc == 0)
        rc = json_string_emit(emit_buf, out, p, len);
    if (rc < 0)
        out->len = mark;
    return rc;
}

typedef struct fixed_out {
    char *dst;
    size_t cap; /* room excluding the NUL */
    size_t len;
} fixed_out_t;

static int emit_fixed(void *ctx, const void *p, size_t n)
{
    fixed_out_t *f = ctx;
    if (n > f->cap - f->len)
        return JN_ETOOBIG;
    memcpy(f->dst + f->len, p, n);
    f->len += n;
    return 0;
}

ssize_t jn_rest_json_string_to(char *dst, size_t cap, const uint8_t *p, size_t len)
{
    if (cap == 0)
        return -1;
    fixed_out_t f = {dst, cap - 1, 0};
    if (json_string_emit(emit_fixed, &f, p, len) < 0)
        return -1;
    dst[f.len] = '\0';
    return (ssize_t)f.len;
}

/* ---- base64 ---- */

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int jn_rest_base64_encode(jn_buf_t *out, const uint8_t *p, size_t len)
{
    if (len > (SIZE_MAX - 4) / 4 * 3)
        return JN_ETOOBIG;
    if (len == 0)
        return 0; /* out->data may still be NULL */
    size_t olen = (len + 2) / 3 * 4;
    int rc = jn_buf_reserve(out, olen);
    if (rc < 0)
        return rc;
    char *d = (char *)out->data + out->len;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *d++ = b64_alphabet[v >> 18];
        *d++ = b64_alphabet[(v >> 12) & 63];
        *d++ = b64_alphabet[(v >> 6) & 63];
        *d++ = b64_alphabet[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);
        *d++ = b64_alphabet[v >> 18];
        *d++ = b64_alphabet[(v >> 12) & 63];
        *d++ = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
        *d++ = '=';
    }
    out->len += olen;
    return 0;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int jn_rest_base64_decode(const char *in, size_t inlen, uint8_t *out)
{
    /* Padding is optional, but when present it must complete a quantum. */
    if (inlen % 4 == 0 && inlen > 0 && in[inlen - 1] == '=') {
        inlen--;
        if (in[inlen - 1] == '=')
            inlen--;
        if (inlen % 4 < 2)
            return JN_EINVAL;
    }
    if (inlen % 4 == 1)
        return JN_EINVAL;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < inlen; i++) {
        int v = b64_value(in[i]);
        if (v < 0)
            return JN_EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* Leftover bits must be zero (canonical encoding). */
    if (acc & ((1u << bits) - 1))
        return JN_EINVAL;
    if (o > INT32_MAX)
        return JN_ETOOBIG;
    return (int)o;
}

/* ---- record -> JSON ---- */

/* Appends "name":<text or base64 string>, setting *b64 when base64. */
static int put_bytes(jn_buf_t *out, const uint8_t *p, size_t len, bool *b64)
{
    *b64 = !jn_utf8_valid(p, len);
    if (!*b64)
        return jn_rest_json_string(out, p, len);
    int rc = jn_buf_append(out, "\"", 1);
    if (rc == 0)
        rc = jn_rest_base64_encode(out, p, len);
    if (rc == 0)
        rc = jn_buf_append(out, "\"", 1);
    return rc;
}

static bool is_subject_header(const jn_header_t *h)
{
    return h->key_len > 0 && h->key[0] == ':'; /* ":subject" and every other internal header */
}

int jn_rest_record_json(jn_buf_t *out, const char *stream, size_t stream_len, uint32_t partition,
                        const jn_record_t *rec, const char *subject, size_t subject_len)
{
    size_t mark = out->len;
    bool b64 = false, any_b64_header = false;
    int rc = jn_buf_append_str(out, "{\"stream\":");
    if (rc == 0)
        rc = jn_rest_json_string(out, (const uint8_t *)stream, stream_len);
    if (rc == 0)
        rc = jn_buf_printf(out, ",\"partition\":%" PRIu32 ",\"offset\":%" PRId64 ",\"subject\":", partition,
                           rec->offset);
    if (rc == 0)
        rc = jn_rest_json_string(out, (const uint8_t *)subject, subject_len);
    if (rc == 0)
        rc = jn_buf_printf(out, ",\"timestamp\":%" PRId64 ",\"key\":", rec->timestamp);
    if (rc == 0) {
        if (!rec->key || rec->key_len < 0) {
            rc = jn_buf_append_str(out, "null");
        } else {
            rc = put_bytes(out, rec->key, (size_t)rec->key_len, &b64);
            if (rc == 0 && b64)
                rc = jn_buf_append_str(out, ",\"key_encoding\":\"base64\"");
        }
    }
    if (rc == 0)
        rc = jn_buf_append_str(out, ",\"headers\":{");
    bool first = true;
    for (uint32_t i = 0; rc == 0 && i < rec->header_count; i++) {
        const jn_header_t *h = &rec->headers[i];
        if (is_subject_header(h))
            continue;
        if (!first)
            rc = jn_buf_append(out, ",", 1);
        first = false;
        if (rc == 0)
            rc = jn_rest_json_string(out, h->key, h->key_len);
        if (rc == 0)
            rc = jn_buf_append(out, ":", 1);
        if (rc == 0) {
            if (!h->value || h->value_len < 0) {
                rc = jn_buf_append_str(out, "null");
            } else {
                rc = put_bytes(out, h->value, (size_t)h->value_len, &b64);
                any_b64_header |= b64;
            }
        }
    }
    if (rc == 0)
        rc = jn_buf_append(out, "}", 1);
    if (rc == 0 && any_b64_header) {
        rc = jn_buf_append_str(out, ",\"base64_headers\":[");
        first = true;
        for (uint32_t i = 0; rc == 0 && i < rec->header_count; i++) {
            const jn_header_t *h = &rec->headers[i];
            if (is_subject_header(h) || !h->value || h->value_len < 0 ||
                jn_utf8_valid(h->value, (size_t)h->value_len))
                continue;
            if (!first)
                rc = jn_buf_append(out, ",", 1);
            first = false;
            if (rc == 0)
                rc = jn_rest_json_string(out, h->key, h->key_len);
        }
        if (rc == 0)
            rc = jn_buf_append(out, "]", 1);
    }
    if (rc == 0)
        rc = jn_buf_append_str(out, ",\"value\":");
    b64 = false;
    if (rc == 0) {
        if (!rec->value || rec->value_len < 0)
            rc = jn_buf_append_str(out, "null");
        else
            rc = put_bytes(out, rec->value, (size_t)rec->value_len, &b64);
    }
    if (rc == 0)
        rc = jn_buf_append_str(out, b64 ? ",\"encoding\":\"base64\"}" : ",\"encoding\":\"utf8\"}");
    if (rc < 0)
        out->len = mark;
    return rc;
}

/* ---- JSON -> record ---- */

static bool is_base64_encoding(const json_t *enc, char *err, size_t errlen, const char *what, int *rc)
{
    *rc = 0;
    if (!enc || json_is_null(enc))
        return false;
    const char *s = json_string_value(enc);
    if (s && strcmp(s, "base64") == 0)
        return true;
    if (s && (strcmp(s, "utf8") == 0 || strcmp(s, "utf-8") == 0))
        return false;
    snprintf(err, errlen, "%s must be \"utf8\" or \"base64\"", what);
    *rc = JN_EINVAL;
    return false;
}

/* Decodes base64 string |s| into the arena at *pos. */
static int decode_into(const json_t *s, uint8_t *arena, size_t *pos, const uint8_t **view, int32_t *len)
{
    int n = jn_rest_base64_decode(json_string_value(s), json_string_length(s), arena + *pos);
    if (n < 0)
        return n;
    *view = arena + *pos;
    *len = n;
    *pos += (size_t)n;
    return 0;
}

static bool in_string_array(const json_t *arr, const char *name)
{
    size_t i;
    const json_t *v;
    json_array_foreach(arr, i, v) {
        const char *s = json_string_value(v);
        if (s && strcmp(s, name) == 0)
            return true;
    }
    return false;
}

int jn_rest_rec_parse(const json_t *o, jn_rest_rec_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->partition = -1;
    out->rec.key_len = -1;
    out->rec.value_len = -1;
    err[0] = '\0';
    int rc = JN_EINVAL;
    if (!json_is_object(o)) {
        snprintf(err, errlen, "a record must be a JSON object");
        goto fail;
    }
    const json_t *subj = json_object_get(o, "subject");
    if (subj) {
        if (!json_is_string(subj)) {
            snprintf(err, errlen, "\"subject\" must be a string");
            goto fail;
        }
        out->subject = json_string_value(subj);
        out->subject_len = json_string_length(subj);
    }
    const json_t *part = json_object_get(o, "partition");
    if (part && !json_is_null(part)) {
        if (!json_is_integer(part) || json_integer_value(part) < 0 || json_integer_value(part) > INT32_MAX) {
            snprintf(err, errlen, "\"partition\" must be a non-negative integer");
            goto fail;
        }
        out->partition = (int32_t)json_integer_value(part);
    }
    const json_t *ts = json_object_get(o, "timestamp");
    if (ts && !json_is_null(ts)) {
        if (!json_is_integer(ts) || json_integer_value(ts) < 0) {
            snprintf(err, errlen, "\"timestamp\" must be a non-negative integer (ms)");
            goto fail;
        }
        out->rec.timestamp = json_integer_value(ts);
    }
    const json_t *key = json_object_get(o, "key");
    const json_t *value = json_object_get(o, "value");
    const json_t *headers = json_object_get(o, "headers");
    const json_t *b64h = json_object_get(o, "base64_headers");
    if (key && !json_is_null(key) && !json_is_string(key)) {
        snprintf(err, errlen, "\"key\" must be a string or null");
        goto fail;
    }
    if (headers && !json_is_null(headers) && !json_is_object(headers)) {
        snprintf(err, errlen, "\"headers\" must be an object");
        goto fail;
    }
    if (b64h && !json_is_array(b64h)) {
        snprintf(err, errlen, "\"base64_headers\" must be an array of names");
        goto fail;
    }
    size_t nh = json_is_object(headers) ? json_object_size(headers) : 0;
    if (nh > JN_REST_MAX_HEADERS) {
        snprintf(err, errlen, "at most %d headers", JN_REST_MAX_HEADERS);
        goto fail;
    }
    int erc;
    bool key_b64 = is_base64_encoding(json_object_get(o, "key_encoding"), err, errlen, "\"key_encoding\"", &erc);
    if (erc < 0)
        goto fail;
    bool val_b64 = is_base64_encoding(json_object_get(o, "encoding"), err, errlen, "\"encoding\"", &erc);
    if (erc < 0)
        goto fail;
    if (val_b64 && value && !json_is_string(value) && !json_is_null(value)) {
        snprintf(err, errlen, "a base64 \"value\" must be a string");
        goto fail;
    }

    /* One arena for every base64 field, sized by the largest decodings. */
    size_t arena = 0;
    if (key_b64 && json_is_string(key))
        arena += jn_rest_base64_decoded_max(json_string_length(key));
    if (val_b64 && json_is_string(value))
        arena += jn_rest_base64_decoded_max(json_string_length(value));
    const char *hname;
    const json_t *hv;
    if (nh) {
        json_object_foreach((json_t *)headers, hname, hv) {
            if (json_is_string(hv) && b64h && in_string_array(b64h, hname))
                arena += jn_rest_base64_decoded_max(json_string_length(hv));
        }
        out->headers = calloc(nh, sizeof(*out->headers));
        if (!out->headers) {
            rc = JN_ENOMEM;
            goto fail;
        }
    }
    if (arena) {
        out->owned = malloc(arena);
        if (!out->owned) {
            rc = JN_ENOMEM;
            goto fail;
        }
    }
    size_t pos = 0;
    if (json_is_string(key)) {
        if (key_b64) {
            if (decode_into(key, out->owned, &pos, &out->rec.key, &out->rec.key_len) < 0) {
                snprintf(err, errlen, "\"key\" is not valid base64");
                goto fail;
            }
        } else {
            out->rec.key = (const uint8_t *)json_string_value(key);
            out->rec.key_len = (int32_t)json_string_length(key);
        }
    }
    if (!value) {
        snprintf(err, errlen, "\"value\" is missing (use null for a tombstone)");
        goto fail;
    } else if (json_is_string(value)) {
        if (val_b64) {
            if (decode_into(value, out->owned, &pos, &out->rec.value, &out->rec.value_len) < 0) {
                snprintf(err, errlen, "\"value\" is not valid base64");
                goto fail;
            }
        } else {
            out->rec.value = (const uint8_t *)json_string_value(value);
            out->rec.value_len = (int32_t)json_string_length(value);
        }
    } else if (!json_is_null(value)) {
        out->dumped = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!out->dumped) {
            rc = JN_ENOMEM;
            goto fail;
        }
        out->rec.value = (const uint8_t *)out->dumped;
        out->rec.value_len = (int32_t)strlen(out->dumped);
    }
    size_t i = 0;
    if (nh) {
        json_object_foreach((json_t *)headers, hname, hv) {
            jn_header_t *h = &out->headers[i++];
            size_t nlen = strlen(hname);
            /* Names starting with ':' (":subject", ":mqtt-qos"...) are the
             * core's and the doors' own; users may not set them. */
            if (nlen == 0 || hname[0] == ':') {
                snprintf(err, errlen, "header name \"%s\" is not allowed", hname);
                goto fail;
            }
            h->key = (const uint8_t *)hname;
            h->key_len = (uint32_t)nlen;
            h->value = NULL;
            h->value_len = -1;
            if (json_is_null(hv))
                continue;
            if (!json_is_string(hv)) {
                snprintf(err, errlen, "header \"%s\" must be a string or null", hname);
                goto fail;
            }
            if (b64h && in_string_array(b64h, hname)) {
                if (decode_into(hv, out->owned, &pos, &h->value, &h->value_len) < 0) {
                    snprintf(err, errlen, "header \"%s\" is not valid base64", hname);
                    goto fail;
                }
            } else {
                h->value = (const uint8_t *)json_string_value(hv);
                h->value_len = (int32_t)json_string_length(hv);
            }
        }
    }
    out->rec.headers = out->headers;
    out->rec.header_count = (uint32_t)nh;
    return 0;
fail:
    jn_rest_rec_free(out);
    return rc;
}

void jn_rest_rec_free(jn_rest_rec_t *r)
{
    free(r->headers);
    free(r->owned);
    free(r->dumped);
    r->headers = NULL;
    r->owned = NULL;
    r->dumped = NULL;
}

/* ---- errors ---- */

int jn_rest_error_status(int err, bool is_name, const char **code)
{
    switch (err) {
    case JN_ENOENT: *code = "not_found"; return 404;
    case JN_EEXIST: *code = "already_exists"; return 409;
    case JN_EINVAL: *code = is_name ? "invalid_name" : "bad_request"; return 400;
    case JN_EPROTO: *code = "bad_request"; return 400;
    case JN_ERANGE: *code = "offset_out_of_range"; return 416;
    case JN_ETOOBIG: *code = "payload_too_large"; return 413;
    case JN_EPERM: *code = "forbidden"; return 403;
    case JN_EAUTH: *code = "unauthorized"; return 401;
    case JN_ECLOSED: *code = "unavailable"; return 503;
    default: *code = "internal"; return 500;
    }
}

int jn_rest_parse_i64(const char *s, int64_t *out)
{
    if (!s || !*s || *s == ' ' || *s == '+')
        return JN_EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || (*s != '-' && (*s < '0' || *s > '9')))
        return JN_EINVAL;
    *out = (int64_t)v;
    return 0;
}
