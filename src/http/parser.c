/* parser.c - strict, copy-free HTTP/1.1 request head parser, chunked body
 * decoder, and the small helpers around them (percent-decoding, query
 * lookup, reason phrases).
 *
 * The request parser is stateless: each call looks at every byte received
 * so far, in one left-to-right pass, and decides from those bytes only.
 * Every error, including the size limits, is tied to the position of the
 * byte that triggers it, so parsing a prefix of the input either asks for
 * more (JN_EPARTIAL) or returns exactly what parsing the whole input
 * returns. The fuzz target checks that property.
 *
 * Strictness follows RFC 9110/9112 where a lenient reading would let two
 * parsers on the path (a proxy and us) disagree about where a message ends:
 * no whitespace before ':', no obs-fold, no CTLs in values, one framing
 * (Content-Length or chunked, never both), chunked last among transfer
 * codings. Bare LF line endings are accepted since they cannot be
 * misread as anything else.
 */
#include "parser.h"

#include <limits.h>
#include <string.h>

/* ---- character classes ---- */

/* tchar (RFC 9110 5.6.2): the characters of methods and field names. */
static const unsigned char tchar_tab[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1,
    ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,
    ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,
    ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
    ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
    ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
    ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static inline bool is_tchar(char c)
{
    return tchar_tab[(unsigned char)c] != 0;
}

static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* Case-insensitive comparison of |a| (|n| bytes) against the lower-case
 * literal |lit| of the same length. */
static bool ieq(const char *a, const char *lit, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != (unsigned char)lit[i])
            return false;
    return true;
}

#define IEQ_LIT(p, n, lit) ((n) == sizeof(lit) - 1 && ieq((p), (lit), (n)))

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Field values are mostly long runs of ordinary bytes, so they are scanned
 * eight bytes at a time: a word with no byte below 0x20 and none equal to
 * 0x7f holds no CTL, HTAB, CR or LF. Returns the first byte that is a CTL
 * other than HTAB (so CR, LF and the bad ones), or |end|. */
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

static const char *scan_value(const char *p, const char *end)
{
    for (;;) {
        while (end - p >= 8) {
            uint64_t x;
            memcpy(&x, p, 8);
            uint64_t lt20 = (x - ONES * 0x20) & ~x & HIGHS;
            uint64_t d = x ^ (ONES * 0x7f);
            uint64_t del = (d - ONES) & ~d & HIGHS;
            if (lt20 | del)
                break;
            p += 8;
        }
        /* Byte by byte through the word that stopped the fast scan; an
         * HTAB alone sends us back to it. */
        const char *stop = (end - p >= 8) ? p + 8 : end;
        while (p < stop) {
            unsigned char c = (unsigned char)*p;
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return p;
            p++;
        }
        if (p == end)
            return p;
    }
}

/* ---- limits ---- */

void jn_http_limits_default(jn_http_limits_t *l)
{
    l->max_request_line = 8 * 1024;
    l->max_header_bytes = 16 * 1024;
    l->max_headers = 64;
}

/* ---- request target ---- */

/* Static "/" for an absolute-form target without a path: the path of
 * "http://host" is "/" (RFC 9110 4.2.3) but there is no such byte in the
 * buffer. It outlives any buffer, so the view contract still holds. */
static const char root_path[] = "/";

/* Splits the request target into path and query. |qmark| is its first '?'
 * (NULL when none). Returns false when the target is in no accepted form. */
static bool split_target(jn_http_request_t *req, const char *qmark)
{
    const char *t = req->target;
    const char *tend = t + req->target_len;
    const char *pend = qmark ? qmark : tend;

    if (qmark) {
        req->query = qmark + 1;
        req->query_len = (size_t)(tend - req->query);
    } else {
        req->query = NULL;
        req->query_len = 0;
    }

    if (t[0] == '/') { /* origin-form */
        req->path = t;
        req->path_len = (size_t)(pend - t);
        return true;
    }
    if (req->target_len == 1 && t[0] == '*') { /* asterisk-form: OPTIONS only */
        if (!(req->method_len == 7 && memcmp(req->method, "OPTIONS", 7) == 0))
            return false;
        req->path = t;
        req->path_len = 1;
        return true;
    }
    /* absolute-form: only http and https make sense to an origin server. */
    const char *s = t;
    while (s < pend && *s != ':')
        s++;
    size_t slen = (size_t)(s - t);
    if (!(IEQ_LIT(t, slen, "http") || IEQ_LIT(t, slen, "https")))
        return false;
    if (pend - s < 3 || s[1] != '/' || s[2] != '/')
        return false;
    const char *auth = s + 3;
    const char *a = auth;
    while (a < pend && *a != '/') {
        /* userinfo in an http URI is an error (RFC 9110 4.2.4) */
        if (*a == '@')
            return false;
        a++;
    }
    if (a == auth)
        return false;
    if (a == pend) {
        req->path = root_path;
        req->path_len = 1;
    } else {
        req->path = a;
        req->path_len = (size_t)(pend - a);
    }
    return true;
}

/* ---- derived header state ---- */

typedef struct head_state {
    bool te_present;      /* a Transfer-Encoding line was seen */
    bool te_last_chunked; /* the last coding so far is chunked */
    bool te_other;        /* some coding other than chunked was seen */
    int te_chunked_count; /* chunked must be applied once */
    bool conn_close, conn_keep_alive, conn_upgrade;
    bool upgrade_hdr;
    bool host_seen;
} head_state_t;

/* Calls |fn| on each non-empty element of a comma-separated list, trimmed
 * of OWS. Stops and returns false as soon as |fn| does. */
typedef bool (*list_fn)(head_state_t *hs, jn_http_request_t *req, const char *e, size_t n);

static bool each_element(const char *v, size_t vlen, head_state_t *hs, jn_http_request_t *req, list_fn fn)
{
    const char *end = v + vlen;
    while (v < end) {
        const char *comma = memchr(v, ',', (size_t)(end - v));
        const char *e_end = comma ? comma : end;
        const char *s = v;
        while (s < e_end && is_ows(*s))
            s++;
        const char *t = e_end;
        while (t > s && is_ows(t[-1]))
            t--;
        if (t > s && !fn(hs, req, s, (size_t)(t - s)))
            return false;
        v = comma ? comma + 1 : end;
    }
    return true;
}

static bool te_element(head_state_t *hs, jn_http_request_t *req, const char *e, size_t n)
{
    (void)req;
    /* transfer-coding = token *( OWS ";" OWS transfer-parameter ): only the
     * name matters, parameters make it a coding we do not implement. */
    size_t i = 0;
    while (i < n && is_tchar(e[i]))
        i++;
    if (i == 0)
        return false;
    if (i < n) {
        size_t j = i;
        while (j < n && is_ows(e[j]))
            j++;
        if (j == n || e[j] != ';')
            return false;
    }
    if (i == n && IEQ_LIT(e, i, "chunked")) {
        hs->te_last_chunked = true;
        hs->te_chunked_count++;
    } else {
        hs->te_last_chunked = false;
        hs->te_other = true;
    }
    return true;
}

static bool conn_element(head_state_t *hs, jn_http_request_t *req, const char *e, size_t n)
{
    (void)req;
    if (IEQ_LIT(e, n, "close"))
        hs->conn_close = true;
    else if (IEQ_LIT(e, n, "keep-alive"))
        hs->conn_keep_alive = true;
    else if (IEQ_LIT(e, n, "upgrade"))
        hs->conn_upgrade = true;
    return true;
}

static bool expect_element(head_state_t *hs, jn_http_request_t *req, const char *e, size_t n)
{
    (void)hs;
    if (IEQ_LIT(e, n, "100-continue"))
        req->expect_continue = true;
    return true;
}

/* Folds one header into the derived fields. Returns 0 or the status of the
 * error it reveals. */
static int note_header(head_state_t *hs, jn_http_request_t *req, const jn_http_header_t *h)
{
    const char *n = h->name;
    switch (h->name_len) {
    case 4:
        if (ieq(n, "host", 4)) {
            /* Two Host lines make the target ambiguous (RFC 9112 3.2). */
            if (hs->host_seen)
                return 400;
            hs->host_seen = true;
        }
        break;
    case 6:
        if (ieq(n, "expect", 6))
            (void)each_element(h->value, h->value_len, hs, req, expect_element);
        break;
    case 7:
        if (ieq(n, "upgrade", 7) && h->value_len > 0)
            hs->upgrade_hdr = true;
        break;
    case 10:
        if (ieq(n, "connection", 10))
            (void)each_element(h->value, h->value_len, hs, req, conn_element);
        break;
    case 14:
        if (ieq(n, "content-length", 14)) {
            if (h->value_len == 0)
                return 400;
            int64_t v = 0;
            for (size_t i = 0; i < h->value_len; i++) {
                unsigned char c = (unsigned char)h->value[i];
                if (c < '0' || c > '9')
                    return 400;
                if (v > (INT64_MAX - (c - '0')) / 10)
                    return 400;
                v = v * 10 + (c - '0');
            }
            if (req->content_length >= 0 && req->content_length != v)
                return 400;
            req->content_length = v;
        }
        break;
    case 17:
        if (ieq(n, "transfer-encoding", 17)) {
            hs->te_present = true;
            /* An empty line adds no coding but still asks for one. */
            if (!each_element(h->value, h->value_len, hs, req, te_element))
                return 400;
        }
        break;
    default:
        break;
    }
    return 0;
}

/* Decides framing and connection handling once every header is known.
 * Returns 0 or an error status. */
static int finish_head(head_state_t *hs, jn_http_request_t *req)
{
    if (hs->te_present) {
        /* RFC 9112 6.1 and 6.3: both framings is a smuggling attempt, and
         * an HTTP/1.0 message with Transfer-Encoding has faulty framing. */
        if (req->content_length >= 0 || req->minor_version == 0)
            return 400;
        if (!hs->te_last_chunked || hs->te_chunked_count != 1)
            return 400;
        if (hs->te_other)
            return 501;
        req->chunked = true;
    }
    if (req->minor_version == 0) {
        req->keep_alive = hs->conn_keep_alive && !hs->conn_close;
        /* An HTTP/1.0 client cannot have sent 100-continue on purpose
         * (RFC 9110 10.1.1). */
        req->expect_continue = false;
    } else {
        req->keep_alive = !hs->conn_close;
    }
    req->upgrade = hs->conn_upgrade && hs->upgrade_hdr;
    return 0;
}

/* ---- request head ---- */

int jn_http_parse_request(const char *buf, size_t len, const jn_http_limits_t *limits,
                          jn_http_request_t *req, int *status)
{
    jn_http_limits_t defaults;
    int status_dummy;
    if (!status)
        status = &status_dummy;
    *status = 0;
    if (!limits) {
        jn_http_limits_default(&defaults);
        limits = &defaults;
    }
    size_t max_headers = limits->max_headers;
    if (max_headers > JN_HTTP_MAX_HEADERS)
        max_headers = JN_HTTP_MAX_HEADERS;
    size_t cap = limits->max_header_bytes;
    if (cap > INT_MAX)
        cap = INT_MAX; /* the head size is returned as an int */

    /* Bytes past the head cap are never looked at: running out of bytes
     * at |end| means 431 when more were there, else "feed more". */
    bool over_cap = len > cap;
    const char *p = buf;
    const char *end = buf + (over_cap ? cap : len);

    head_state_t hs = {0};
    req->num_headers = 0;
    req->content_length = -1;
    req->chunked = false;
    req->keep_alive = false;
    req->expect_continue = false;
    req->upgrade = false;

    /* RFC 9112 2.2: empty lines before the request line are ignored. */
    for (;;) {
        if (p == end)
            goto out_of_input;
        if (*p == '\n') {
            p++;
        } else if (*p == '\r') {
            if (end - p < 2)
                goto out_of_input;
            if (p[1] != '\n')
                goto bad_request;
            p += 2;
        } else {
            break;
        }
    }

    /* The request line's content (without its line ending) is scanned up
     * to |lend|; reaching it when it is not |end| means the line is too
     * long (414), whatever byte is there. */
    const char *line = p;
    const char *lend = end;
    bool line_capped = false;
    if ((size_t)(end - line) > limits->max_request_line) {
        lend = line + limits->max_request_line;
        line_capped = true;
    }

    const char *m = p;
    while (p < lend && is_tchar(*p))
        p++;
    if (p == lend)
        goto line_out;
    if (p == m || *p != ' ')
        goto bad_request;
    req->method = m;
    req->method_len = (size_t)(p - m);
    p++;

    /* request-target: visible ASCII only, no fragment. */
    const char *t = p;
    const char *qmark = NULL;
    for (;;) {
        if (p == lend)
            goto line_out;
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f || c == '#')
            break;
        if (c == '?' && !qmark)
            qmark = p;
        p++;
    }
    if (p == t || *p != ' ')
        goto bad_request;
    req->target = t;
    req->target_len = (size_t)(p - t);
    p++;

    /* HTTP-version = "HTTP/" DIGIT "." DIGIT */
    static const char proto[] = "HTTP/";
    for (int i = 0; i < 8; i++) {
        if (p + i == lend)
            goto line_out;
        char c = p[i];
        bool ok = i < 5 ? c == proto[i] : i == 6 ? c == '.' : (c >= '0' && c <= '9');
        if (!ok)
            goto bad_request;
    }
    int major = p[5] - '0';
    int minor = p[7] - '0';
    p += 8;
    if (p == end)
        goto out_of_input;
    if (*p == '\r') {
        if (end - p < 2)
            goto out_of_input;
        if (p[1] != '\n')
            goto bad_request;
        p += 2;
    } else if (*p == '\n') {
        p++;
    } else {
        goto bad_request;
    }
    if (major != 1 || minor > 1) {
        *status = 505;
        return JN_EPROTO;
    }
    req->minor_version = minor;
    if (!split_target(req, qmark))
        goto bad_request;

    /* Header fields, one line each, until the empty line. */
    for (;;) {
        if (p == end)
            goto out_of_input;
        if (*p == '\n') {
            p++;
            break;
        }
        if (*p == '\r') {
            if (end - p < 2)
                goto out_of_input;
            if (p[1] != '\n')
                goto bad_request;
            p += 2;
            break;
        }
        if (req->num_headers == max_headers) {
            *status = 431;
            return JN_EPROTO;
        }
        /* A line starting with whitespace is obs-fold (or, right after the
         * request line, a smuggling attempt): both are rejected. */
        const char *name = p;
        while (p < end && is_tchar(*p))
            p++;
        if (p == end)
            goto out_of_input;
        if (p == name || *p != ':')
            goto bad_request;
        size_t name_len = (size_t)(p - name);
        p++;
        while (p < end && is_ows(*p))
            p++;
        const char *value = p;
        p = scan_value(p, end);
        if (p == end)
            goto out_of_input;
        const char *vend = p;
        if (*p == '\r') {
            if (end - p < 2)
                goto out_of_input;
            if (p[1] != '\n')
                goto bad_request;
            p += 2;
        } else if (*p == '\n') {
            p++;
        } else {
            goto bad_request; /* a CTL in the value */
        }
        while (vend > value && is_ows(vend[-1]))
            vend--;
        jn_http_header_t *h = &req->headers[req->num_headers++];
        h->name = name;
        h->name_len = name_len;
        h->value = value;
        h->value_len = (size_t)(vend - value);
        int st = note_header(&hs, req, h);
        if (st) {
            *status = st;
            return JN_EPROTO;
        }
    }

    int st = finish_head(&hs, req);
    if (st) {
        *status = st;
        return JN_EPROTO;
    }
    return (int)(p - buf);

line_out:
    if (line_capped) {
        *status = 414;
        return JN_EPROTO;
    }
    /* fall through: the line may still end within the limit */
out_of_input:
    if (over_cap) {
        *status = 431;
        return JN_EPROTO;
    }
    return JN_EPARTIAL;

bad_request:
    *status = 400;
    return JN_EPROTO;
}

const jn_http_header_t *jn_http_find_header(const jn_http_request_t *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->num_headers; i++) {
        const jn_http_header_t *h = &req->headers[i];
        if (h->name_len != n)
            continue;
        size_t j = 0;
        while (j < n && lower((unsigned char)h->name[j]) == lower((unsigned char)name[j]))
            j++;
        if (j == n)
            return h;
    }
    return NULL;
}

/* ---- chunked body ---- */

enum {
    CH_SIZE_FIRST, /* first hex digit of a chunk size */
    CH_SIZE,       /* further hex digits */
    CH_SIZE_WS,    /* BWS after the size: only more BWS or ';' may follow */
    CH_EXT,        /* chunk extensions, skipped to the end of the line */
    CH_SIZE_LF,    /* CR seen after the size line */
    CH_DATA,       /* |remaining| data bytes to go */
    CH_DATA_CR,    /* CRLF after the data */
    CH_DATA_LF,
    CH_TRAILER,    /* start of a trailer line, or the final empty line */
    CH_TRAILER_IN, /* inside a trailer line */
    CH_TRAILER_LF, /* CR seen at the end of a trailer line */
    CH_END_LF,     /* CR of the final empty line seen */
    CH_DONE,
    CH_ERROR,
};

#define CH_MAX_LINE 4096
#define CH_MAX_TRAILERS (16 * 1024)
#define CH_MAX_SIZE (1ULL << 62)

void jn_http_chunked_init(jn_http_chunked_t *c)
{
    c->state = CH_SIZE_FIRST;
    c->remaining = 0;
    c->line_len = 0;
}

/* Ends a size line: the chunk's data follows, or the trailers after the
 * last chunk. |remaining| counts the trailer bytes from then on. */
static void size_line_done(jn_http_chunked_t *c)
{
    c->line_len = 0;
    c->state = c->remaining ? CH_DATA : CH_TRAILER;
}

int jn_http_chunked_decode(jn_http_chunked_t *c, char *buf, size_t *len, size_t *consumed)
{
    const char *r = buf;
    const char *end = buf + *len;
    char *w = buf;
    int ret = 0;

    while (r < end && c->state != CH_DONE && c->state != CH_ERROR) {
        if (c->state == CH_DATA) {
            size_t n = (size_t)(end - r);
            if (n > c->remaining)
                n = (size_t)c->remaining;
            if (w != r)
                memmove(w, r, n);
            w += n;
            r += n;
            c->remaining -= n;
            if (c->remaining == 0)
                c->state = CH_DATA_CR;
            continue;
        }
        unsigned char ch = (unsigned char)*r++;
        switch (c->state) {
        case CH_SIZE_FIRST:
        case CH_SIZE: {
            int d = hexval(ch);
            if (d >= 0) {
                if (c->remaining > (CH_MAX_SIZE - (uint64_t)d) >> 4)
                    goto fail;
                c->remaining = c->remaining * 16 + (uint64_t)d;
                c->state = CH_SIZE;
            } else if (c->state == CH_SIZE_FIRST) {
                goto fail;
            } else if (ch == ';') {
                c->state = CH_EXT;
            } else if (is_ows((char)ch)) {
                c->state = CH_SIZE_WS;
            } else if (ch == '\r') {
                c->state = CH_SIZE_LF;
            } else if (ch == '\n') {
                size_line_done(c);
                continue;
            } else {
                goto fail;
            }
            break;
        }
        case CH_SIZE_WS:
            if (ch == ';')
                c->state = CH_EXT;
            else if (!is_ows((char)ch))
                goto fail;
            break;
        case CH_EXT:
            /* Extensions are ignored, but stay free of control bytes so a
             * CR cannot hide a line ending from another parser. */
            if (ch == '\r') {
                c->state = CH_SIZE_LF;
            } else if (ch == '\n') {
                size_line_done(c);
                continue;
            } else if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                goto fail;
            }
            break;
        case CH_SIZE_LF:
            if (ch != '\n')
                goto fail;
            size_line_done(c);
            continue;
        case CH_DATA_CR:
            if (ch == '\r')
                c->state = CH_DATA_LF;
            else if (ch == '\n')
                c->state = CH_SIZE_FIRST;
            else
                goto fail;
            continue;
        case CH_DATA_LF:
            if (ch != '\n')
                goto fail;
            c->state = CH_SIZE_FIRST;
            continue;
        case CH_TRAILER:
            if (ch == '\r') {
                c->state = CH_END_LF;
                continue;
            }
            if (ch == '\n') {
                c->state = CH_DONE;
                continue;
            }
            /* The byte belongs to the trailer line. */
            c->state = CH_TRAILER_IN;
            __attribute__((fallthrough));
        case CH_TRAILER_IN:
            if (ch == '\r') {
                c->state = CH_TRAILER_LF;
                c->line_len = 0;
                continue;
            }
            if (ch == '\n') {
                c->state = CH_TRAILER;
                c->line_len = 0;
                continue;
            }
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                goto fail;
            if (++c->remaining > CH_MAX_TRAILERS)
                goto fail;
            break;
        case CH_TRAILER_LF:
            if (ch != '\n')
                goto fail;
            c->state = CH_TRAILER;
            continue;
        case CH_END_LF:
            if (ch != '\n')
                goto fail;
            c->state = CH_DONE;
            continue;
        default:
            goto fail;
        }
        /* Bytes of a size or trailer line land here. */
        if (++c->line_len > CH_MAX_LINE)
            goto fail;
    }

    if (c->state == CH_ERROR) {
        ret = JN_EPROTO;
    } else if (c->state == CH_DONE) {
        ret = 1;
    }
    *len = (size_t)(w - buf);
    *consumed = (size_t)(r - buf);
    return ret;

fail:
    c->state = CH_ERROR;
    *len = (size_t)(w - buf);
    *consumed = (size_t)(r - buf);
    return JN_EPROTO;
}

/* ---- percent-decoding ---- */

/* Decodes |in| into |out| when |out| is not NULL (room for the result and
 * a NUL is the caller's business). Returns the decoded length or
 * JN_EINVAL (bad escape, NUL). */
static long pct_decode(const char *in, size_t inlen, char *out, bool plus_space)
{
    size_t o = 0;
    for (size_t i = 0; i < inlen; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '%') {
            if (inlen - i < 3)
                return JN_EINVAL;
            int hi = hexval((unsigned char)in[i + 1]);
            int lo = hexval((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0)
                return JN_EINVAL;
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_space) {
            c = ' ';
        }
        if (c == 0)
            return JN_EINVAL;
        if (out)
            out[o] = (char)c;
        o++;
    }
    return (long)o;
}

int jn_http_urldecode(const char *in, size_t inlen, char *out, bool plus_space)
{
    if (inlen > INT_MAX) {
        out[0] = '\0';
        return JN_EINVAL;
    }
    long n = pct_decode(in, inlen, out, plus_space);
    if (n < 0) {
        out[0] = '\0';
        return (int)n;
    }
    out[n] = '\0';
    return (int)n;
}

/* Whether the query key |k| (|klen| raw bytes) decodes to |name|. A key
 * with a bad escape matches nothing. */
static bool key_matches(const char *k, size_t klen, const char *name, size_t nlen)
{
    size_t o = 0;
    for (size_t i = 0; i < klen; i++) {
        unsigned char c = (unsigned char)k[i];
        if (c == '%') {
            if (klen - i < 3)
                return false;
            int hi = hexval((unsigned char)k[i + 1]);
            int lo = hexval((unsigned char)k[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (o >= nlen || (unsigned char)name[o] != c)
            return false;
        o++;
    }
    return o == nlen;
}

int jn_http_query_get(const char *query, size_t qlen, const char *name, char *out, size_t outlen)
{
    if (outlen > 0)
        out[0] = '\0';
    if (!name)
        return JN_EINVAL;
    if (!query)
        return JN_ENOENT;
    size_t nlen = strlen(name);
    const char *q = query;
    const char *qend = query + qlen;
    while (q < qend) {
        const char *amp = memchr(q, '&', (size_t)(qend - q));
        const char *pend = amp ? amp : qend;
        const char *eq = memchr(q, '=', (size_t)(pend - q));
        const char *kend = eq ? eq : pend;
        if (kend > q && key_matches(q, (size_t)(kend - q), name, nlen)) {
            const char *v = eq ? eq + 1 : pend;
            size_t vlen = (size_t)(pend - v);
            long n = pct_decode(v, vlen, NULL, true);
            if (n < 0)
                return (int)n;
            if ((size_t)n >= outlen || n > INT_MAX)
                return JN_ETOOBIG;
            (void)pct_decode(v, vlen, out, true);
            out[n] = '\0';
            return (int)n;
        }
        q = amp ? amp + 1 : qend;
    }
    return JN_ENOENT;
}

/* ---- reason phrases ---- */

const char *jn_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default:
        break;
    }
    if (status >= 100 && status < 200)
        return "Informational";
    if (status >= 200 && status < 300)
        return "Success";
    if (status >= 300 && status < 400)
        return "Redirection";
    if (status >= 400 && status < 500)
        return "Client Error";
    return "Server Error";
}
