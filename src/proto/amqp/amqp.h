/* amqp.h - the AMQP 0-9-1 door (RabbitMQ-compatible): listeners,
 * connections, channels, exchanges and bindings, mapped onto the core's
 * queues (core/queue.h) and subject space (core/broker.h).
 *
 * Exchanges and bindings are the door's own state; durable ones are
 * stored as metadata records "ext/amqp/..." (jn_broker_meta_put) and
 * rebuilt by jn_amqp_new. Queues are core queues. amq.topic is the
 * broker's subject space: see docs/amqp.md.
 */
#ifndef JN_AMQP_H
#define JN_AMQP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "../../common/error.h"
#include "../../core/broker.h"

typedef struct jn_amqp jn_amqp_t;

typedef struct jn_amqp_config {
    bool allow_anonymous;     /* guest/guest (and an empty login) map to the anonymous principal */
    uint32_t frame_max;       /* offered in Connection.Tune (default 131072) */
    uint16_t channel_max;     /* offered (default 2047) */
    uint16_t heartbeat_s;     /* offered (default 60; 0 off) */
    uint64_t max_message;     /* body bytes (default 128 MiB) */
    uint32_t commit_interval_ms; /* amq.topic forwarders commit their position this often (default 1000) */
} jn_amqp_config_t;

void jn_amqp_config_default(jn_amqp_config_t *c);

/* Creates the door on |broker|'s loop and replays durable exchanges and
 * bindings (binding forwarders resume from their committed positions).
 * NULL on ENOMEM. */
jn_amqp_t *jn_amqp_new(jn_broker_t *broker, const jn_amqp_config_t *cfg);
/* Listens on |host|:|port| (TLS with |cert|/|key|, else plain). 0 or the
 * listener's error (JN_EINVAL, JN_EIO). */
int jn_amqp_listen(jn_amqp_t *a, const char *host, int port, const char *cert, const char *key) JN_MUST_CHECK;
/* The bound port of listener |index| (in jn_amqp_listen order), or -1. */
int jn_amqp_port(const jn_amqp_t *a, int index);
/* Closes listeners and connections (their unacked messages are requeued),
 * commits forwarder positions and frees the door. Safe with NULL. Run the
 * loop afterwards so that libuv finishes closing handles. */
void jn_amqp_free(jn_amqp_t *a);

#endif
