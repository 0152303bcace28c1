/* parser.h - a strict, copy-free HTTP/1.1 request parser (sans I/O).
 *
 * jn_http_parse_request looks at the bytes received so far and either
 * returns the size of a complete request head (request line and headers,
 * through the blank line), JN_EPARTIAL when more bytes are needed, or an
 * error with the HTTP status to answer. Nothing is copied: the fields are
 * views into the caller's buffer, valid as long as those bytes are.
 *
 * The chunked decoder decodes a chunked body in place.
 */
#ifndef JN_HTTP_PARSER_H
#define JN_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../common/error.h"

#define JN_HTTP_MAX_HEADERS 100

typedef struct jn_http_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading and trailing whitespace trimmed */
    size_t value_len;
} jn_http_header_t;

typedef struct jn_http_limits {
    size_t max_request_line; /* 414 beyond (default 8 KiB) */
    size_t max_header_bytes; /* 431 beyond, whole head (default 16 KiB) */
    size_t max_headers;      /* 431 beyond (default 64, <= JN_HTTP_MAX_HEADERS) */
} jn_http_limits_t;

void jn_http_limits_default(jn_http_limits_t *l);

typedef struct jn_http_request {
    const char *method;
    size_t method_len;
    const char *target;   /* request target as sent: path and query */
    size_t target_len;
    const char *path;     /* target up to '?' (absolute-form: after the
                             authority, a static "/" when empty) */
    size_t path_len;
    const char *query;    /* after '?', NULL when none */
    size_t query_len;
    int minor_version;    /* 0 or 1 */
    jn_http_header_t headers[JN_HTTP_MAX_HEADERS];
    size_t num_headers;
    /* Derived from the headers: */
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool keep_alive;        /* per version and Connection */
    bool expect_continue;   /* Expect: 100-continue */
    bool upgrade;           /* Connection: upgrade with an Upgrade header */
} jn_http_request_t;

/* Parses a request head from |buf| (|len| bytes). Returns the head's size
 * in bytes (> 0) when complete, JN_EPARTIAL when incomplete (and within the
 * limits; NULL |limits| means the defaults), or JN_EPROTO with *status set
 * to the response status:
 *   400 malformed request line, header, or framing (both Content-Length and
 *       Transfer-Encoding, several differing Content-Lengths, a
 *       Transfer-Encoding other than chunked, bare LF handling is accepted),
 *   414 request line too long, 431 headers too large or too many,
 *   501 unknown transfer coding, 505 HTTP version other than 1.0/1.1. */
int jn_http_parse_request(const char *buf, size_t len, const jn_http_limits_t *limits,
                          jn_http_request_t *req, int *status) JN_MUST_CHECK;

/* Case-insensitive header lookup; NULL when absent. */
const jn_http_header_t *jn_http_find_header(const jn_http_request_t *req, const char *name);

/* Chunked body decoder. Feed the bytes that follow the head; decoded
 * data is moved to the front of the buffer in place. */
typedef struct jn_http_chunked {
    int state;          /* internal */
    uint64_t remaining; /* bytes left in the current chunk */
    size_t line_len;    /* bytes of the current size/trailer line */
} jn_http_chunked_t;

void jn_http_chunked_init(jn_http_chunked_t *c);
/* Decodes from |buf| (|*len| bytes). On return *len is the number of
 * decoded body bytes now at the front of |buf|, and *consumed the number
 * of input bytes used. Returns 1 when the body is complete (last chunk and
 * trailers read), 0 when more input is needed, JN_EPROTO on bad framing
 * (invalid hex, chunk size over 2^62, missing CRLF, line over 4 KiB,
 * trailers over 16 KiB in total). */
int jn_http_chunked_decode(jn_http_chunked_t *c, char *buf, size_t *len, size_t *consumed) JN_MUST_CHECK;

/* Percent-decodes |in| into |out| (room for inlen + 1, NUL-terminated).
 * |plus_space| turns '+' into ' ' (query strings). Returns the decoded
 * length or JN_EINVAL on a bad escape or a decoded NUL. */
int jn_http_urldecode(const char *in, size_t inlen, char *out, bool plus_space);

/* Finds query parameter |name| in |query| (may be NULL) and percent-decodes
 * its value into |out| (|outlen| bytes including NUL). Returns the value
 * length, JN_ENOENT when absent, JN_ETOOBIG when it does not fit,
 * JN_EINVAL on a bad escape. A parameter without '=' has an empty value. */
int jn_http_query_get(const char *query, size_t qlen, const char *name, char *out, size_t outlen);

/* Reason phrase of a status code ("OK", "Not Found"...). */
const char *jn_http_reason(int status);

#endif
