/* queue.h - queues: competing consumers with acknowledgements, redelivery,
 * dead-lettering, TTL, length limits and priorities, on the log.
 *
 * A queue is an internal stream ("__q.<name>", one partition per priority
 * level) plus consumer state; messages live in the log, not in memory, so
 * a backlog of millions costs disk, not RAM. Enqueue appends a record;
 * delivery reads from the log at the queue's read position. The state that
 * is not in the stream is small and bounded:
 *   head       per partition: every offset below it is settled (acked,
 *              dead-lettered, dropped or expired);
 *   unacked    offsets delivered and not yet settled (bounded by the
 *              consumers' prefetch);
 *   settled    offsets at or above head settled out of order (sparse);
 *   requeued   offsets nacked with requeue, delivered again first.
 * Settlements are durable: each is appended to the queue's ack log
 * (<data>/queues/<name>/acks/, a plog of small records, fsynced per the
 * queue's policy) and the head is checkpointed there; at open the state is
 * rebuilt from the last checkpoint and the acks after it. Segments of the
 * queue's stream wholly below head are deleted.
 *
 * Queues belong to the core so that every door with competing-consumer
 * semantics (AMQP queues, MQTT shared subscriptions, webhooks) shares one
 * implementation. Exchanges and bindings are AMQP's and live in its door;
 * a binding from the subject space (AMQP amq.topic, or any door's filter)
 * is a forwarder: a broker subscription whose records are enqueued.
 */
#ifndef JN_QUEUE_H
#define JN_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "../common/error.h"
#include "batch.h"
#include "plog.h"

typedef struct jn_broker jn_broker_t;
typedef struct jn_queue jn_queue_t;
typedef struct jn_qconsumer jn_qconsumer_t;

enum jn_queue_overflow {
    JN_QUEUE_DROP_HEAD = 0,      /* drop (dead-letter) the oldest */
    JN_QUEUE_REJECT_PUBLISH = 1, /* refuse the new message */
};

typedef struct jn_queue_opts {
    bool durable;             /* definition and messages survive a restart */
    bool auto_delete;         /* delete when the last consumer goes (after having had one) */
    int64_t max_length;       /* messages; -1 unlimited */
    int64_t max_length_bytes; /* payload bytes; -1 unlimited */
    enum jn_queue_overflow overflow;
    int64_t message_ttl_ms;   /* -1 none */
    int64_t expires_ms;       /* delete after unused this long; -1 never */
    char *dead_letter_target; /* opaque to the core (the AMQP door stores "exchange"); NULL none */
    char *dead_letter_key;    /* NULL: keep the message's own */
    uint8_t max_priority;     /* 0: no priorities; else 1..255 levels (one partition each, capped at 10) */
    bool single_active_consumer;
    enum jn_fsync_policy fsync; /* for messages and acks */
    json_t *arguments;        /* the declaring door's raw arguments, stored verbatim (borrowed) */
} jn_queue_opts_t;

void jn_queue_opts_default(jn_queue_opts_t *o);

/* Declares a queue: creates it, or returns the existing one when its
 * options are equivalent (JN_ESTATE when they differ: AMQP's 406
 * PRECONDITION_FAILED). Names: 1..255 bytes, printable, no '/'. */
int jn_queue_declare(jn_broker_t *b, const char *name, const jn_queue_opts_t *opts, jn_queue_t **out) JN_MUST_CHECK;
jn_queue_t *jn_queue_find(jn_broker_t *b, const char *name);
/* Deletes the queue; |if_unused| (no consumers) and |if_empty| give
 * JN_ESTATE when not met. Consumers are cancelled (their cancel callback
 * runs). Returns the number of messages deleted. */
int64_t jn_queue_delete(jn_queue_t *q, bool if_unused, bool if_empty) JN_MUST_CHECK;
/* Settles every ready message (not the unacked ones). Returns how many. */
int64_t jn_queue_purge(jn_queue_t *q) JN_MUST_CHECK;
/* Iterates queues in name order (NULL for the first). */
jn_queue_t *jn_queue_next(jn_broker_t *b, jn_queue_t *prev);

const char *jn_queue_name(const jn_queue_t *q);
const jn_queue_opts_t *jn_queue_options(const jn_queue_t *q);
int64_t jn_queue_ready(const jn_queue_t *q);   /* messages waiting for delivery */
int64_t jn_queue_unacked(const jn_queue_t *q); /* delivered, not settled */
uint32_t jn_queue_consumer_count(const jn_queue_t *q);
/* {"name","durable",...,"ready","unacked","consumers"} (new reference). */
json_t *jn_queue_json(const jn_queue_t *q);

/* Appends one message (its key, value, headers and timestamp as given;
 * |priority| clamped to max_priority). Returns the message id (>= 0:
 * partition << 56 | offset), JN_ETOOBIG when the queue is full and
 * overflows with reject-publish, or an error. Consumers waiting for
 * messages are offered it before this returns (in the same loop
 * iteration at the latest). Durability: see jn_queue_wait_durable. */
int64_t jn_queue_enqueue(jn_queue_t *q, const jn_record_t *rec, uint8_t priority) JN_MUST_CHECK;

/* A message's own time to live: a record header of this name whose value
 * is a decimal count of milliseconds (1 to 15 digits; anything else is
 * ignored), counted like message_ttl_ms from the record's timestamp (its
 * enqueue time when the door passes timestamp 0). The message's TTL is the
 * lesser of the two. As for message_ttl_ms, expiry is checked where a
 * message reaches the head of its partition: at delivery, get and the
 * maintenance pass (RabbitMQ's per-message TTL semantics); an expired
 * message is dead-lettered with reason "expired". */
#define JN_QUEUE_TTL_HEADER ":ttl-ms"
/* Calls |cb| once message |msg_id| is fsynced: an fsync is started at the
 * next flush (shared with every other waiter) whatever the queue's policy
 * but "never", which fires at once. This is what a RabbitMQ publisher
 * confirm of a persistent message promises; without waiters, messages are
 * synced by the policy (every interval by default). JN_ECLOSED when the
 * queue is gone, JN_EIO when the fsync failed. */
void jn_queue_wait_durable(jn_queue_t *q, int64_t msg_id, jn_durable_waiter_t *w, jn_durable_cb cb);

/* A delivery offered to a consumer. |id| identifies the message for
 * ack/nack; |redelivered| is true when it was delivered before (to any
 * consumer) and not settled. |dead_letter_count| counts earlier dead
 * letterings (from headers the core adds: "x-death" is the door's
 * business). Views valid during the call. */
typedef struct jn_qdelivery {
    int64_t id;
    bool redelivered;
    const jn_record_t *rec;
} jn_qdelivery_t;

/* Returns 0 when taken (it counts as unacked unless the consumer is
 * no-ack), JN_EAGAIN when the consumer cannot take it now (not taken; the
 * queue offers it to another consumer or later; call jn_qconsumer_resume). */
typedef int (*jn_qdeliver_cb)(jn_qconsumer_t *c, const jn_qdelivery_t *d, void *arg);
/* The queue cancelled the consumer (queue deleted): unacked messages are
 * requeued; the consumer is freed after this returns. */
typedef void (*jn_qcancel_cb)(jn_qconsumer_t *c, void *arg);
/* A message is dead-lettered (rejected without requeue, expired, or
 * dropped by overflow) and the queue has a dead_letter_target: the owner
 * (the AMQP door) routes it. |reason| is "rejected", "expired" or
 * "maxlen". Set per broker with jn_queue_set_dead_letter_handler. */
typedef void (*jn_qdeadletter_cb)(jn_queue_t *q, const jn_record_t *rec, const char *reason, void *arg);
void jn_queue_set_dead_letter_handler(jn_broker_t *b, jn_qdeadletter_cb cb, void *arg);

typedef struct jn_qconsumer_opts {
    uint32_t prefetch;   /* unacked deliveries allowed at once (0: unlimited) */
    bool no_ack;         /* deliveries are settled when taken */
    bool exclusive;      /* JN_ESTATE if the queue has consumers; none may join */
    int32_t priority;    /* higher first (x-priority) */
    jn_qdeliver_cb deliver;
    jn_qcancel_cb cancel;
    void *arg;
} jn_qconsumer_opts_t;

/* Adds a consumer. Deliveries start on a later loop iteration. With
 * single_active_consumer only the first consumer gets messages until it
 * goes. JN_ESTATE (exclusivity). */
int jn_queue_consume(jn_queue_t *q, const jn_qconsumer_opts_t *opts, jn_qconsumer_t **out) JN_MUST_CHECK;
/* Removes the consumer; its unacked messages are requeued (redelivered
 * flag set) unless |keep_unacked| (AMQP: a cancelled consumer's unacked
 * messages stay owned by the channel until it closes or acks) — then
 * they are settled later with jn_queue_ack/nack by id. */
void jn_qconsumer_cancel(jn_qconsumer_t *c, bool keep_unacked);
void jn_qconsumer_resume(jn_qconsumer_t *c);
void jn_qconsumer_set_prefetch(jn_qconsumer_t *c, uint32_t prefetch);

/* Settles by message id. ack: done. nack with |requeue|: delivered again
 * (redelivered = true) before newer messages; without: dead-lettered or
 * dropped. JN_ENOENT when the id is not unacked. */
int jn_queue_ack(jn_queue_t *q, int64_t id) JN_MUST_CHECK;
int jn_queue_nack(jn_queue_t *q, int64_t id, bool requeue) JN_MUST_CHECK;

/* Basic.Get: takes the next ready message synchronously (counted as
 * unacked unless |no_ack|). Returns 1 and fills |d| (views valid until the
 * next call on the queue), 0 when empty. */
int jn_queue_get(jn_queue_t *q, bool no_ack, jn_qdelivery_t *d) JN_MUST_CHECK;

#endif
