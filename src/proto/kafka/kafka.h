/* kafka.h - the Kafka door: the Kafka wire protocol on TCP (default
 * 127.0.0.1:9092) over the shared log.
 *
 * This broker is the only node (node id 0) and the leader of every
 * partition. A Kafka topic is a stream; a record produced to topic T is a
 * record of subject T (no ":subject" header); records published on other
 * doors under T/... carry their ":subject" header to Kafka consumers.
 * See docs/kafka.md for the mapping and the API/version coverage.
 */
#ifndef JN_KAFKA_H
#define JN_KAFKA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../../common/error.h"
#include "../../core/broker.h"

typedef struct jn_kafka jn_kafka_t;

typedef struct jn_kafka_config {
    const char *host;            /* listen address */
    int port;                    /* 0: any free port */
    const char *advertised_host; /* NULL or "": |host| (127.0.0.1 for a wildcard) */
    bool allow_anonymous;        /* clients that skip SASL act as "anonymous" */
    bool anonymous_is_admin;     /* ...and may administer (loopback-only default) */
    bool auto_create;            /* Metadata/Produce create unknown topics */
    uint32_t default_partitions; /* of auto-created topics */
    size_t max_request_bytes;    /* request frame cap (default 100 MiB) */
} jn_kafka_config_t;

void jn_kafka_config_default(jn_kafka_config_t *c);

/* Opens the listener. |b| must outlive the door. Returns 0 and *out, or
 * JN_EINVAL / JN_EIO (listen failed: logged) / JN_ENOMEM. */
int jn_kafka_new(uv_loop_t *loop, jn_broker_t *b, const jn_kafka_config_t *cfg, jn_kafka_t **out) JN_MUST_CHECK;
/* The bound port. */
int jn_kafka_port(const jn_kafka_t *k);
/* Closes the listener and every connection (parked requests are dropped);
 * handles finish closing as the loop runs. Safe with NULL. */
void jn_kafka_free(jn_kafka_t *k);

#endif
