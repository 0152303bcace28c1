/* ws.h - the WebSocket door at GET /v1/ws (RFC 6455, RFC 7692; the JSON
 * protocol and binary envelope are in docs/ws.md).
 *
 * An adapter like the REST door: the upgrade request is checked and
 * answered on the HTTP server, then the connection (a jn_conn_t) speaks
 * WebSocket through ws_codec.c and each command maps to one broker
 * operation. Every subscription is a broker cursor: when the connection's
 * unsent output passes max_unsent the subscription pauses (it lags in the
 * log, costing no memory) and resumes on drain; a lossy live subscription
 * skips instead and reports the count in a lag event.
 */
#ifndef JN_WS_H
#define JN_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../core/broker.h"
#include "../../http/server.h"

typedef struct jn_ws_config {
    bool allow_anonymous;      /* connections without a token get the anonymous principal */
    size_t max_message;        /* close 1009 beyond, before or after inflating (default 1 MiB) */
    size_t max_unsent;         /* unsent bytes per connection before subscriptions pause (default 1 MiB) */
    uint32_t idle_timeout_ms;  /* ping after this silence, close 1001 when still silent after as long again (default 30000) */
    uint32_t auth_timeout_ms;  /* a connection without credentials must send "auth" within (default 10000) */
    uint32_t max_subscriptions;/* per connection (default 256) */
    bool deflate;              /* negotiate permessage-deflate (default true) */
    size_t compress_min;       /* messages shorter than this are sent uncompressed (default 256) */
} jn_ws_config_t;

typedef struct jn_ws jn_ws_t;

void jn_ws_config_default(jn_ws_config_t *c);

/* Registers GET /v1/ws on |httpd|. |cfg| is copied (NULL: defaults).
 * Returns the door, or NULL (allocation failure, route clash: logged).
 * Free it with jn_ws_free before the HTTP server. */
jn_ws_t *jn_ws_new(jn_httpd_t *httpd, jn_broker_t *broker, const jn_ws_config_t *cfg);

/* Closes every WebSocket connection with 1001 (going away) after what is
 * queued, stops their subscriptions, and frees the door. Safe with NULL. */
void jn_ws_free(jn_ws_t *ws);

/* Open WebSocket connections. */
size_t jn_ws_connections(const jn_ws_t *ws);

#endif
