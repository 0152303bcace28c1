/* filter.h - subjects, filters, and the filter trie.
 *
 * A subject is a name of levels split by '/' (sensors/kitchen/temp). A filter
 * is a pattern over subjects with MQTT's wildcards: '+' matches exactly one
 * level, '#' (last level only) matches any number of levels including none
 * (so sensors/# matches sensors). Subjects starting with '$' are not matched
 * by a filter whose first level is a wildcard (MQTT 4.7.2).
 *
 * The trie stores (filter, value) pairs and visits the values whose filter
 * matches a subject; its cost depends on the subject's depth and the
 * matching entries, not on how many filters are stored.
 */
#ifndef JN_FILTER_H
#define JN_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include "../common/error.h"

#define JN_SUBJECT_MAX 4096 /* bytes */

/* Returns 0 when |s| is a valid subject: 1..JN_SUBJECT_MAX bytes of valid
 * UTF-8, no NUL, no '+' or '#'. JN_EINVAL otherwise. */
int jn_subject_validate(const char *s, size_t len);
/* Returns 0 when |f| is a valid filter: as a subject, but '+' and '#' are
 * allowed when they fill a whole level, and '#' only as the last level. */
int jn_filter_validate(const char *f, size_t len);
/* True when |f| contains a wildcard level. */
bool jn_filter_has_wildcard(const char *f, size_t len);
/* True when filter |f| matches subject |s| (both assumed valid). */
bool jn_filter_match(const char *f, size_t flen, const char *s, size_t slen);
/* True when every subject matched by |inner| is matched by |outer|
 * (used by ACLs: may this user subscribe to |inner|?). */
bool jn_filter_covers(const char *outer, size_t olen, const char *inner, size_t ilen);
/* True when some subject could match both filters. */
bool jn_filter_overlaps(const char *a, size_t alen, const char *b, size_t blen);

typedef struct jn_trie jn_trie_t;

jn_trie_t *jn_trie_new(void);
void jn_trie_free(jn_trie_t *t);
/* Adds (|filter|, |value|). JN_EEXIST if that exact pair is present,
 * JN_EINVAL for an invalid filter, JN_ENOMEM. */
int jn_trie_add(jn_trie_t *t, const char *filter, size_t len, void *value) JN_MUST_CHECK;
/* Removes the pair. JN_ENOENT if absent. Frees nodes left empty. */
int jn_trie_remove(jn_trie_t *t, const char *filter, size_t len, void *value);
/* Calls |cb| once for every stored pair whose filter matches |subject|.
 * The callback must not add to or remove from the trie. */
typedef void (*jn_trie_visit_cb)(void *value, void *arg);
void jn_trie_match(const jn_trie_t *t, const char *subject, size_t len, jn_trie_visit_cb cb, void *arg);
/* Number of stored pairs. */
size_t jn_trie_count(const jn_trie_t *t);

#endif
