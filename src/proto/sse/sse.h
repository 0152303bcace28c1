/* sse.h - the Server-Sent Events door: GET /v1/events (docs/sse.md).
 *
 * Each connection is one broker subscription (a cursor into the log) whose
 * records are written as text/event-stream events: an id carrying the
 * subscription's position vector (sse_id.h), event "record", and the record
 * JSON as the REST door renders it. A client that reconnects with
 * Last-Event-ID (or ?last_event_id=) resumes exactly after the last event
 * it received: nothing lost, nothing repeated.
 *
 * Flow control as in the REST door's NDJSON feed: when the connection's
 * output passes its high-water mark the subscription is paused and lags in
 * the log; the drain callback resumes it. Memory per connection is the
 * HTTP output cap plus one rendered event.
 */
#ifndef JN_SSE_H
#define JN_SSE_H

#include <stdbool.h>
#include <stdint.h>

#include "../../core/broker.h"
#include "../../http/server.h"

typedef struct jn_sse_config {
    bool allow_anonymous;  /* requests without credentials get the anonymous principal */
    uint32_t heartbeat_ms; /* ": hb" comment period (default 15000; 0 = default) */
    uint32_t retry_ms;     /* "retry:" hint sent first (default 2000; 0 = default) */
} jn_sse_config_t;

typedef struct jn_sse jn_sse_t;

/* Registers GET /v1/events on |httpd|. |cfg| is copied. Registers the
 * gauge junction_door_connections{door="sse"} and the counter
 * junction_door_messages_total{door="sse",direction="out"} in the broker's
 * metrics. Returns the door (free it with jn_sse_free before the server) or
 * NULL on allocation failure or a route clash (logged). */
jn_sse_t *jn_sse_new(jn_httpd_t *httpd, jn_broker_t *broker, const jn_sse_config_t *cfg);

/* Ends every open event stream (their responses are finished) and frees
 * the door. Safe with NULL. */
void jn_sse_free(jn_sse_t *s);

#endif
