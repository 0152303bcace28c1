/* queue_int.h - queue internals visible to the broker's files and to the
 * queue tests. Not a contract for doors: they use queue.h. */
#ifndef JN_QUEUE_INT_H
#define JN_QUEUE_INT_H

#include <stddef.h>

#include "queue.h"

/* Offsets the queue tracks in memory: unacked messages plus the ranges of
 * the settled-above-head and requeued sets. Stays bounded by the consumers'
 * prefetch (and the holes they leave), never by the backlog. */
size_t jn__queue_tracked(const jn_queue_t *q);

/* One maintenance pass over every queue, as the queues' timer runs it each
 * second: expires messages at the head (message_ttl_ms), deletes queues
 * unused for expires_ms, writes pending settlements and, when due, a
 * checkpoint, and deletes queue-stream segments wholly below the head.
 * Tests call it after moving their fake clock. */
void jn__queue_maintain(jn_broker_t *b);

/* Writes a checkpoint of |q|'s ack state now and compacts its ack log
 * (tests). Returns 0 or an error. */
int jn__queue_checkpoint(jn_queue_t *q);

#endif
