/* routing.h - AMQP exchange routing rules, pure functions: topic patterns
 * (words split by '.', '*' one word, '#' zero or more words), headers
 * exchange matching (x-match all/any and RabbitMQ's all-with-x /
 * any-with-x), and the mapping of an amq.topic binding pattern onto a
 * subject filter of the broker (levels split by '/', '+' one level, '#'
 * the rest).
 */
#ifndef JN_AMQP_ROUTING_H
#define JN_AMQP_ROUTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Whether routing key |key| matches topic binding |pattern|. */
bool jn_amqp_topic_match(const char *pattern, size_t plen, const char *key, size_t klen);

/* Whether a message with headers table |msg| (raw field table bytes,
 * validated; may be empty) matches a headers binding whose arguments are
 * the table |args|. x-match defaults to "all"; keys starting with "x-" are
 * ignored unless x-match is all-with-x/any-with-x. A binding value of type
 * 'V' matches on presence alone. Values compare by type class: integers
 * numerically, strings bytewise, booleans, reals. */
bool jn_amqp_headers_match(const uint8_t *args, size_t alen, const uint8_t *msg, size_t mlen);

/* Maps topic binding |pattern| to a broker filter in |out| (|outlen|
 * bytes). Returns 1 when the filter matches exactly the subjects whose
 * routing keys match the pattern, 0 when it over-matches (a '#' that is
 * not the last word, or a word that contains '/', '+' or '#' besides the
 * wildcards: the caller must check each record with jn_amqp_topic_match),
 * or -1 when |out| is too small. The empty pattern maps to the empty
 * subject, which no record has, so it returns over-match "#". */
int jn_amqp_topic_to_filter(const char *pattern, size_t plen, char *out, size_t outlen);

/* Routing key of subject |s|: '/' becomes '.'. |out| gets at most
 * outlen-1 bytes and a NUL; returns the full length needed. */
size_t jn_amqp_subject_to_key(const char *s, size_t len, char *out, size_t outlen);

#endif
