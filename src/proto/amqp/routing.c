/* routing.c - topic and headers exchange matching, and the mapping of
 * amq.topic binding patterns onto broker subject filters (see routing.h).
 *
 * Topic matching is a dynamic program over words rather than recursion:
 * patterns like "#.#.#.#" stay linear per pattern word instead of
 * exponential.
 */
#include "routing.h"

#include <string.h>

#include "codec.h"

#define MAX_WORDS 1024

typedef struct word {
    const char *p;
    size_t len;
} word_t;

/* Splits on '.'; the empty string has no words. -1 when too many. */
static int split_words(const char *s, size_t len, word_t *w)
{
    if (len == 0)
        return 0;
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (n == MAX_WORDS)
                return -1;
            w[n].p = s + start;
            w[n].len = i - start;
            n++;
            start = i + 1;
        }
    }
    return n;
}

bool jn_amqp_topic_match(const char *pattern, size_t plen, const char *key, size_t klen)
{
    word_t pw[MAX_WORDS], kw[MAX_WORDS];
    bool a[MAX_WORDS + 1], b[MAX_WORDS + 1];
    int np = split_words(pattern, plen, pw);
    int nk = split_words(key, klen, kw);
    if (np < 0 || nk < 0)
        return false;
    bool *cur = a, *next = b;
    /* cur[j]: the pattern words so far match the first j key words. */
    memset(cur, 0, sizeof a);
    cur[0] = true;
    for (int i = 0; i < np; i++) {
        bool hash = pw[i].len == 1 && pw[i].p[0] == '#';
        bool star = pw[i].len == 1 && pw[i].p[0] == '*';
        bool any = false;
        for (int j = 0; j <= nk; j++) {
            if (hash) {
                any = any || cur[j];
                next[j] = any;
            } else if (j == 0) {
                next[j] = false;
            } else {
                next[j] = cur[j - 1] &&
                          (star || (pw[i].len == kw[j - 1].len && memcmp(pw[i].p, kw[j - 1].p, pw[i].len) == 0));
            }
        }
        bool *t = cur;
        cur = next;
        next = t;
    }
    return cur[nk];
}

/* Compares a binding value with a message value. */
static bool value_equal(const jn_amqp_value_t *x, const jn_amqp_value_t *y)
{
    static const char ints[] = "bBsUuIilLT";
    bool xi = strchr(ints, x->type) != NULL, yi = strchr(ints, y->type) != NULL;
    if (xi && yi)
        return x->i == y->i;
    bool xs = x->type == 'S' || x->type == 'x', ys = y->type == 'S' || y->type == 'x';
    if (xs && ys)
        return x->len == y->len && (x->len == 0 || memcmp(x->p, y->p, x->len) == 0);
    if (x->type != y->type)
        return false;
    switch (x->type) {
    case 't':
        return x->i == y->i;
    case 'f':
    case 'd':
        return x->d == y->d;
    case 'D':
        return x->scale == y->scale && x->i == y->i;
    case 'F':
    case 'A':
        return x->len == y->len && (x->len == 0 || memcmp(x->p, y->p, x->len) == 0);
    default:
        return true; /* 'V' */
    }
}

static bool str_is(const jn_amqp_value_t *v, const char *s)
{
    size_t n = strlen(s);
    return (v->type == 'S' || v->type == 'x') && v->len == n && memcmp(v->p, s, n) == 0;
}

bool jn_amqp_headers_match(const uint8_t *args, size_t alen, const uint8_t *msg, size_t mlen)
{
    jn_amqp_value_t xm;
    bool all = true, with_x = false;
    if (jn_amqp_table_get(args, alen, "x-match", &xm) == 1) {
        if (str_is(&xm, "any") || str_is(&xm, "any-with-x"))
            all = false;
        with_x = str_is(&xm, "all-with-x") || str_is(&xm, "any-with-x");
    }
    jn_amqp_iter_t it;
    jn_amqp_str_t k;
    jn_amqp_value_t v, mv;
    jn_amqp_iter_init(&it, args, alen);
    while (jn_amqp_table_next(&it, &k, &v) == 1) {
        if (k.len >= 2 && k.p[0] == 'x' && k.p[1] == '-' && (!with_x || (k.len == 7 && !memcmp(k.p, "x-match", 7))))
            continue;
        char key[256];
        memcpy(key, k.p, k.len);
        key[k.len] = 0;
        bool hit = jn_amqp_table_get(msg, mlen, key, &mv) == 1 && (v.type == 'V' || value_equal(&v, &mv));
        if (all && !hit)
            return false;
        if (!all && hit)
            return true;
    }
    return all;
}

int jn_amqp_topic_to_filter(const char *pattern, size_t plen, char *out, size_t outlen)
{
    word_t w[MAX_WORDS];
    int n = split_words(pattern, plen, w);
    size_t o = 0;
    int exact = 1;
#define PUT(s, l)                                                                                  \
    do {                                                                                           \
        if (o + (l) + 1 > outlen)                                                                  \
            return -1;                                                                             \
        memcpy(out + o, (s), (l));                                                                 \
        o += (l);                                                                                  \
    } while (0)
    if (n <= 0) {
        PUT("#", 1);
        out[o] = 0;
        return 0;
    }
    for (int i = 0; i < n; i++) {
        if (i)
            PUT("/", 1);
        bool hash = w[i].len == 1 && w[i].p[0] == '#';
        bool star = w[i].len == 1 && w[i].p[0] == '*';
        bool odd = !hash && !star && (memchr(w[i].p, '/', w[i].len) || memchr(w[i].p, '+', w[i].len) ||
                                      memchr(w[i].p, '#', w[i].len));
        if (hash || odd) {
            /* '#' ends an MQTT filter; anything odd falls back to '#'. */
            PUT("#", 1);
            if (odd || i != n - 1)
                exact = 0;
            break;
        }
        if (star)
            PUT("+", 1);
        else
            PUT(w[i].p, w[i].len);
    }
#undef PUT
    out[o] = 0;
    return exact;
}

size_t jn_amqp_subject_to_key(const char *s, size_t len, char *out, size_t outlen)
{
    for (size_t i = 0; i < len && outlen && i < outlen - 1; i++)
        out[i] = s[i] == '/' ? '.' : s[i];
    if (outlen)
        out[len < outlen - 1 ? len : outlen - 1] = 0;
    return len;
}
