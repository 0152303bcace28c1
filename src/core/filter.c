/* filter.c - subject and filter validation, MQTT-style matching, and the
 * filter trie that finds every subscription interested in a subject.
 *
 * The trie has one node per filter level. A node keeps its literal children
 * in an open-addressing hash table (linear probing, backward-shift deletion)
 * and its '+' and '#' children apart, so matching a subject of depth d visits
 * at most the branches that can still match: cost grows with d and with the
 * number of matching entries, never with the number of stored filters.
 * Values live on the node of their filter's last level; nodes left without
 * values or children are freed on removal. Nodes come from the trie's own
 * pool and carry short keys and a single value inline: with many idle
 * clients each subscribed to its own topic, a leaf per client is most of
 * the trie (docs/benchmarks.md, memory per idle connection).
 */
#include "filter.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../common/hash.h"
#include "../common/pool.h"
#include "../common/utf8.h"

/* ---- validation ------------------------------------------------------- */

/* Shared by subjects and filters: |wild| allows whole-level '+' and a last
 * level '#'. */
static int validate(const char *s, size_t len, bool wild)
{
    if (s == NULL || len == 0 || len > JN_SUBJECT_MAX)
        return JN_EINVAL;
    const unsigned char *p = (const unsigned char *)s;
    size_t level_start = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        if (c == '+' || c == '#') {
            if (!wild)
                return JN_EINVAL;
            bool alone = i == level_start && (i + 1 == len || p[i + 1] == '/');
            if (!alone)
                return JN_EINVAL;
            if (c == '#' && i + 1 != len)
                return JN_EINVAL;
            i++;
            continue;
        }
        if (c == '/') {
            level_start = i + 1;
            i++;
            continue;
        }
        size_t n = c == 0 ? 0 : jn_utf8_char(p + i, len - i); /* U+0000 refused */
        if (n == 0)
            return JN_EINVAL;
        i += n;
    }
    return 0;
}

int jn_subject_validate(const char *s, size_t len)
{
    return validate(s, len, false);
}

int jn_filter_validate(const char *f, size_t len)
{
    return validate(f, len, true);
}

/* ---- level helpers ---------------------------------------------------- */

/* End of the level that starts at |pos| (the '/' or |len|). A string of
 * length n with k slashes has k+1 levels; a position past |len| means the
 * levels are exhausted. */
static size_t level_end(const char *s, size_t len, size_t pos)
{
    const char *slash = memchr(s + pos, '/', len - pos);
    return slash ? (size_t)(slash - s) : len;
}

static bool is_level(const char *s, size_t start, size_t end, char c)
{
    return end - start == 1 && s[start] == c;
}

static bool is_wild(const char *s, size_t start, size_t end)
{
    return is_level(s, start, end, '+') || is_level(s, start, end, '#');
}

/* MQTT 4.7.2: a filter whose first level is a wildcard does not reach
 * subjects (or literal filters) beginning with '$'. */
static bool first_level_wild(const char *f, size_t len)
{
    return len > 0 && (f[0] == '+' || f[0] == '#') && (len == 1 || f[1] == '/');
}

static bool starts_dollar(const char *s, size_t len)
{
    return len > 0 && s[0] == '$';
}

bool jn_filter_has_wildcard(const char *f, size_t len)
{
    for (size_t pos = 0; pos <= len;) {
        size_t end = level_end(f, len, pos);
        if (is_wild(f, pos, end))
            return true;
        pos = end + 1;
    }
    return false;
}

bool jn_filter_match(const char *f, size_t flen, const char *s, size_t slen)
{
    if (starts_dollar(s, slen) && first_level_wild(f, flen))
        return false;
    size_t fp = 0, sp = 0;
    while (fp <= flen) {
        size_t fe = level_end(f, flen, fp);
        if (is_level(f, fp, fe, '#'))
            return true; /* matches the rest, including no level at all */
        if (sp > slen)
            return false;
        size_t se = level_end(s, slen, sp);
        if (!is_level(f, fp, fe, '+') &&
            (fe - fp != se - sp || memcmp(f + fp, s + sp, fe - fp) != 0))
            return false;
        fp = fe + 1;
        sp = se + 1;
    }
    return sp > slen;
}

bool jn_filter_covers(const char *outer, size_t olen, const char *inner, size_t ilen)
{
    if (first_level_wild(outer, olen) && starts_dollar(inner, ilen))
        return false; /* inner reaches '$' subjects that outer cannot */
    size_t op = 0, ip = 0;
    while (op <= olen) {
        size_t oe = level_end(outer, olen, op);
        if (is_level(outer, op, oe, '#'))
            return true;
        if (ip > ilen)
            return false; /* inner stops where outer still needs a level */
        size_t ie = level_end(inner, ilen, ip);
        if (is_level(inner, ip, ie, '#'))
            return false; /* inner runs to any depth, outer does not */
        if (is_level(inner, ip, ie, '+')) {
            if (!is_level(outer, op, oe, '+'))
                return false;
        } else if (!is_level(outer, op, oe, '+') &&
                   (oe - op != ie - ip || memcmp(outer + op, inner + ip, oe - op) != 0)) {
            return false;
        }
        op = oe + 1;
        ip = ie + 1;
    }
    return ip > ilen;
}

bool jn_filter_overlaps(const char *a, size_t alen, const char *b, size_t blen)
{
    if ((first_level_wild(a, alen) && starts_dollar(b, blen)) ||
        (first_level_wild(b, blen) && starts_dollar(a, alen)))
        return false;
    size_t ap = 0, bp = 0;
    for (;;) {
        bool aend = ap > alen, bend = bp > blen;
        if (aend && bend)
            return true;
        size_t ae = aend ? ap : level_end(a, alen, ap);
        size_t be = bend ? bp : level_end(b, blen, bp);
        if ((!aend && is_level(a, ap, ae, '#')) || (!bend && is_level(b, bp, be, '#')))
            return true;
        if (aend || bend)
            return false;
        if (!is_level(a, ap, ae, '+') && !is_level(b, bp, be, '+') &&
            (ae - ap != be - bp || memcmp(a + ap, b + bp, ae - ap) != 0))
            return false;
        ap = ae + 1;
        bp = be + 1;
    }
}

/* ---- trie ------------------------------------------------------------- */

/* Keys up to this many bytes live inside the node; longer ones are
 * malloc'd. A device's own level (an id, a serial number) fits. */
#define KEY_INLINE 16

/* 64 bytes, from the trie's pool: an idle client's subscription usually
 * adds one leaf (its own id under a shared prefix), so the leaf is what
 * counts. A leaf with one value keeps it in |one|; the array exists only
 * from two values on, its capacity being the power of two >= nvalues
 * (at least 2), so no capacity field is needed. */
typedef struct node {
    struct node **slots;   /* literal children, open addressing; NULL = free */
    struct node *plus;     /* the '+' child */
    struct node *hash_ch;  /* the '#' child (a leaf: '#' is last) */
    union {
        void *one;         /* nvalues == 1 */
        void **many;       /* nvalues >= 2 */
    } v;
    uint32_t hash;         /* jn_fnv1a(key, klen), truncated */
    uint32_t nchildren;    /* used slots */
    uint32_t nvalues;      /* values of the filter ending here */
    uint16_t klen;         /* bytes in key (a level is at most JN_SUBJECT_MAX) */
    uint8_t slots_log2;    /* nslots = 1 << slots_log2 when slots != NULL */
    union {
        char in[KEY_INLINE]; /* klen <= KEY_INLINE */
        char *out;           /* malloc'd otherwise */
    } key;                 /* this level's text (literal children only) */
} node_t;

struct jn_trie {
    node_t root;  /* never freed before the trie; holds no key */
    size_t count; /* stored (filter, value) pairs */
    jn_pool_t nodes; /* every other node: they live as long as subscriptions (pool.h) */
};

static size_t nslots_of(const node_t *n)
{
    return n->slots ? (size_t)1 << n->slots_log2 : 0;
}

static const char *key_of(const node_t *n)
{
    return n->klen <= KEY_INLINE ? n->key.in : n->key.out;
}

static uint32_t key_hash(const char *key, size_t klen)
{
    return (uint32_t)jn_fnv1a(key, klen);
}

static void *const *values_of(const node_t *n)
{
    return n->nvalues == 1 ? &n->v.one : n->v.many;
}

static bool node_empty(const node_t *n)
{
    return n->nvalues == 0 && n->nchildren == 0 && n->plus == NULL && n->hash_ch == NULL;
}

/* Frees what |n| owns (children, slots, values, key), not |n| itself. */
static void node_clear(jn_trie_t *t, node_t *n);

static void node_free(jn_trie_t *t, node_t *n)
{
    if (n == NULL)
        return;
    node_clear(t, n);
    jn_pool_free(&t->nodes, n);
}

static void node_clear(jn_trie_t *t, node_t *n)
{
    for (size_t i = 0; i < nslots_of(n); i++)
        node_free(t, n->slots[i]);
    node_free(t, n->plus);
    node_free(t, n->hash_ch);
    free(n->slots);
    if (n->nvalues >= 2)
        free(n->v.many);
    if (n->klen > KEY_INLINE)
        free(n->key.out);
}

/* Slot index of the child named |key|, or of the free slot where it would
 * go when it is absent. Requires nslots > nchildren. */
static size_t slot_find(const node_t *n, const char *key, size_t klen, uint32_t h)
{
    size_t mask = nslots_of(n) - 1;
    size_t i = (size_t)h & mask;
    for (;;) {
        const node_t *c = n->slots[i];
        if (c == NULL || (c->hash == h && c->klen == klen && memcmp(key_of(c), key, klen) == 0))
            return i;
        i = (i + 1) & mask;
    }
}

static node_t *child_get(const node_t *n, const char *key, size_t klen)
{
    if (n->nchildren == 0)
        return NULL;
    return n->slots[slot_find(n, key, klen, key_hash(key, klen))];
}

static int slots_grow(node_t *n)
{
    size_t old = nslots_of(n);
    uint8_t nlog = n->slots ? (uint8_t)(n->slots_log2 + 1) : 2;
    size_t nsize = (size_t)1 << nlog;
    node_t **ns = calloc(nsize, sizeof *ns);
    if (ns == NULL)
        return JN_ENOMEM;
    for (size_t i = 0; i < old; i++) {
        node_t *c = n->slots[i];
        if (c == NULL)
            continue;
        size_t j = (size_t)c->hash & (nsize - 1);
        while (ns[j] != NULL)
            j = (j + 1) & (nsize - 1);
        ns[j] = c;
    }
    free(n->slots);
    n->slots = ns;
    n->slots_log2 = nlog;
    return 0;
}

static node_t *child_get_or_add(jn_trie_t *t, node_t *n, const char *key, size_t klen)
{
    node_t *c = child_get(n, key, klen);
    if (c != NULL)
        return c;
    /* keep the load factor under 3/4 so probes stay short */
    if (((size_t)n->nchildren + 1) * 4 > nslots_of(n) * 3 && slots_grow(n) != 0)
        return NULL;
    c = jn_pool_calloc(&t->nodes);
    if (c == NULL)
        return NULL;
    if (klen > KEY_INLINE) {
        c->key.out = malloc(klen);
        if (c->key.out == NULL) {
            jn_pool_free(&t->nodes, c);
            return NULL;
        }
    }
    memcpy(klen > KEY_INLINE ? c->key.out : c->key.in, key, klen);
    c->klen = (uint16_t)klen;
    c->hash = key_hash(key, klen);
    n->slots[slot_find(n, key, klen, c->hash)] = c;
    n->nchildren++;
    return c;
}

/* Unlinks the literal child at slot |i| (not freed) and shifts the probe
 * chain after it back so lookups never stop at a hole. */
static void slot_delete(node_t *n, size_t i)
{
    size_t mask = nslots_of(n) - 1;
    n->slots[i] = NULL;
    n->nchildren--;
    for (size_t j = (i + 1) & mask; n->slots[j] != NULL; j = (j + 1) & mask) {
        size_t home = (size_t)n->slots[j]->hash & mask;
        /* the entry at j may move to i only if its home is not in (i, j] */
        bool stays = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (stays)
            continue;
        n->slots[i] = n->slots[j];
        n->slots[j] = NULL;
        i = j;
    }
    if (n->nchildren == 0) {
        free(n->slots);
        n->slots = NULL;
        n->slots_log2 = 0;
    }
}

/* Adds |value| to the values of |n|. */
static int value_add(node_t *n, void *value)
{
    if (n->nvalues == 0) {
        n->v.one = value;
    } else if (n->nvalues == 1) {
        void **nv = malloc(2 * sizeof *nv);
        if (nv == NULL)
            return JN_ENOMEM;
        nv[0] = n->v.one;
        nv[1] = value;
        n->v.many = nv;
    } else {
        /* full exactly when nvalues is a power of two (capacity rule above) */
        if ((n->nvalues & (n->nvalues - 1)) == 0) {
            void **nv = realloc(n->v.many, (size_t)n->nvalues * 2 * sizeof *nv);
            if (nv == NULL)
                return JN_ENOMEM;
            n->v.many = nv;
        }
        n->v.many[n->nvalues] = value;
    }
    n->nvalues++;
    return 0;
}

/* Removes |value| from |n|; false when it is not there. */
static bool value_remove(node_t *n, void *value)
{
    if (n->nvalues == 1) {
        if (n->v.one != value)
            return false;
        n->v.one = NULL;
        n->nvalues = 0;
        return true;
    }
    for (uint32_t i = 0; i < n->nvalues; i++) {
        if (n->v.many[i] != value)
            continue;
        n->v.many[i] = n->v.many[--n->nvalues];
        if (n->nvalues == 1) {
            void *last = n->v.many[0];
            free(n->v.many);
            n->v.one = last;
        }
        /* a capacity above the rule's is harmless: growth only reallocs */
        return true;
    }
    return false;
}

jn_trie_t *jn_trie_new(void)
{
    jn_trie_t *t = calloc(1, sizeof(jn_trie_t));
    if (t != NULL)
        jn_pool_init(&t->nodes, sizeof(node_t));
    return t;
}

void jn_trie_free(jn_trie_t *t)
{
    if (t == NULL)
        return;
    node_clear(t, &t->root);
    jn_pool_destroy(&t->nodes);
    free(t);
}

/* Walks the path of |f| from |n| and, on the way back, frees every node the
 * walk leaves empty. Unless |prune_only|, |value| is first removed from the
 * last node (|*found| reports it); pruning alone undoes the nodes a failed
 * add created. */
static void remove_at(jn_trie_t *t, node_t *n, const char *f, size_t flen, size_t pos, void *value,
                      bool prune_only, bool *found)
{
    if (pos > flen) {
        if (!prune_only && value_remove(n, value))
            *found = true;
        return;
    }
    size_t end = level_end(f, flen, pos);
    if (is_level(f, pos, end, '+')) {
        if (n->plus == NULL)
            return;
        remove_at(t, n->plus, f, flen, end + 1, value, prune_only, found);
        if (node_empty(n->plus)) {
            node_free(t, n->plus);
            n->plus = NULL;
        }
    } else if (is_level(f, pos, end, '#')) {
        if (n->hash_ch == NULL)
            return;
        remove_at(t, n->hash_ch, f, flen, end + 1, value, prune_only, found);
        if (node_empty(n->hash_ch)) {
            node_free(t, n->hash_ch);
            n->hash_ch = NULL;
        }
    } else {
        if (n->nchildren == 0)
            return;
        size_t i = slot_find(n, f + pos, end - pos, key_hash(f + pos, end - pos));
        node_t *c = n->slots[i];
        if (c == NULL)
            return;
        remove_at(t, c, f, flen, end + 1, value, prune_only, found);
        if (node_empty(c)) {
            slot_delete(n, i);
            node_free(t, c);
        }
    }
}

int jn_trie_add(jn_trie_t *t, const char *filter, size_t len, void *value)
{
    int rc = jn_filter_validate(filter, len);
    if (rc != 0)
        return rc;
    node_t *n = &t->root;
    for (size_t pos = 0; pos <= len;) {
        size_t end = level_end(filter, len, pos);
        node_t **slot = NULL;
        if (is_level(filter, pos, end, '+'))
            slot = &n->plus;
        else if (is_level(filter, pos, end, '#'))
            slot = &n->hash_ch;
        if (slot != NULL) {
            if (*slot == NULL && (*slot = jn_pool_calloc(&t->nodes)) == NULL)
                goto fail;
            n = *slot;
        } else if ((n = child_get_or_add(t, n, filter + pos, end - pos)) == NULL) {
            goto fail;
        }
        pos = end + 1;
    }
    void *const *vals = values_of(n);
    for (uint32_t i = 0; i < n->nvalues; i++)
        if (vals[i] == value)
            return JN_EEXIST;
    if (value_add(n, value) != 0)
        goto fail;
    t->count++;
    return 0;
fail:
    {
        bool found = false;
        remove_at(t, &t->root, filter, len, 0, NULL, true, &found);
    }
    return JN_ENOMEM;
}

int jn_trie_remove(jn_trie_t *t, const char *filter, size_t len, void *value)
{
    if (jn_filter_validate(filter, len) != 0)
        return JN_ENOENT;
    bool found = false;
    remove_at(t, &t->root, filter, len, 0, value, false, &found);
    if (!found)
        return JN_ENOENT;
    t->count--;
    return 0;
}

static void visit_values(const node_t *n, jn_trie_visit_cb cb, void *arg)
{
    if (n->nvalues == 1) {
        cb(n->v.one, arg);
        return;
    }
    for (uint32_t i = 0; i < n->nvalues; i++)
        cb(n->v.many[i], arg);
}

/* |pos| is the start of the subject's next level (past |len| when all are
 * consumed); |dollar| is set only at the root for '$' subjects, where
 * wildcards must not match the first level. */
static void match_at(const node_t *n, const char *s, size_t len, size_t pos, bool dollar,
                     jn_trie_visit_cb cb, void *arg)
{
    if (n->hash_ch != NULL && !dollar)
        visit_values(n->hash_ch, cb, arg);
    if (pos > len) {
        visit_values(n, cb, arg);
        return;
    }
    size_t end = level_end(s, len, pos);
    const node_t *c = child_get(n, s + pos, end - pos);
    if (c != NULL)
        match_at(c, s, len, end + 1, false, cb, arg);
    if (n->plus != NULL && !dollar)
        match_at(n->plus, s, len, end + 1, false, cb, arg);
}

void jn_trie_match(const jn_trie_t *t, const char *subject, size_t len, jn_trie_visit_cb cb, void *arg)
{
    if (subject == NULL)
        return;
    match_at(&t->root, subject, len, 0, starts_dollar(subject, len), cb, arg);
}

size_t jn_trie_count(const jn_trie_t *t)
{
    return t->count;
}
