/* deadletter.h - RabbitMQ's dead-letter headers for the AMQP door: the
 * "x-death" history a dead-lettered message carries, the x-first-death-*
 * and x-last-death-* summaries, and the rule that drops messages caught in
 * an automatic dead-letter cycle. Pure functions over field-table bytes
 * (no broker state), so that the unit tests drive them directly.
 *
 * x-death is an array of tables, the most recent death first, one per
 * (queue, reason) pair:
 *   queue          longstr  the queue the message died in
 *   reason         longstr  "rejected", "expired" or "maxlen"
 *   count          long     times it died there for that reason
 *   time           timestamp (seconds) of the first such death
 *   exchange       longstr  the exchange it had been published to
 *   routing-keys   array of longstr: its routing key
 *   original-expiration longstr  its expiration property, when it had one
 *                  (the property itself is removed so that it does not
 *                  expire again where it is dead-lettered to)
 * A death for a (queue, reason) already in the array increments that
 * entry's count and moves it to the front; its other fields stay.
 */
#ifndef JN_AMQP_DEADLETTER_H
#define JN_AMQP_DEADLETTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/buf.h"
#include "../../common/error.h"

typedef struct jn_amqp_death {
    const char *queue;            /* NUL-terminated */
    const char *reason;           /* "rejected", "expired", "maxlen" */
    const uint8_t *exchange;      /* the message's exchange (may be empty) */
    uint32_t exchange_len;
    const uint8_t *routing_key;
    uint32_t routing_key_len;
    const uint8_t *expiration;    /* its expiration property, NULL if none */
    uint32_t expiration_len;
    int64_t time_s;               /* now, seconds since the epoch */
} jn_amqp_death_t;

/* Appends to |out| the headers table (its entries, without the 4-byte
 * length prefix) of a message dead-lettered as |d|, whose headers were
 * |old| (validated table bytes, |old_len| may be 0): every entry of |old|
 * but x-death and x-last-death-*, then x-death updated as described above,
 * x-first-death-reason/-queue/-exchange when |old| had none, and
 * x-last-death-reason/-queue/-exchange. An x-death in |old| that is not
 * an array is replaced. Returns 0, JN_ETOOBIG when |out|'s cap is reached
 * or JN_EPROTO when |old| is malformed (|out| is then left as it was). */
int jn_amqp_dead_letter_headers(jn_buf_t *out, const uint8_t *old, size_t old_len,
                                const jn_amqp_death_t *d) JN_MUST_CHECK;

/* RabbitMQ's cycle rule: routing a dead-lettered message whose headers
 * are |tbl| (validated table bytes, holding the x-death written by
 * jn_amqp_dead_letter_headers) to |queue| closes a cycle when x-death
 * names |queue|, and the cycle is dropped when no death from the most
 * recent back to and including that entry was "rejected" (a cycle only
 * of expiries and overflows would repeat forever without a client's
 * say). True: do not deliver to |queue|. */
bool jn_amqp_dead_letter_cycle(const uint8_t *tbl, size_t len, const char *queue);

#endif
