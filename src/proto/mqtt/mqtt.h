/* mqtt.h - the MQTT door: MQTT 3.1.1 and 5.0 sessions on the broker.
 *
 * The door owns its listeners (TCP 1883, TLS 8883 by default), the MQTT
 * sessions (live and persistent), the retained messages and the $SYS
 * statistics. Each PUBLISH is a broker publish of its topic; each
 * subscription filter of a session is a broker subscription (a cursor).
 * docs/mqtt.md describes the mapping.
 *
 * Transport independence: a session never sees a jn_conn_t. It reads the
 * bytes handed to jn_mqtt_session_input and writes through the small
 * jn_mqtt_transport_t vtable below. The door's own listeners wrap a
 * jn_conn_t in such a transport (mqtt.c); MQTT over WebSocket at /mqtt
 * (jn_mqtt_ws_route, ws_transport.c) does the same over the WebSocket
 * door's codec: a transport whose outbuf/commit frame each packet as a
 * binary message, the payloads of received binary messages fed to
 * jn_mqtt_session_input as one stream, and jn_mqtt_session_drain /
 * _timeout / _closed called from the connection's callbacks.
 */
#ifndef JN_MQTT_H
#define JN_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/buf.h"
#include "../../common/error.h"
#include "../../core/broker.h"
#include "../../http/server.h"
#include "../../net/conn.h"

typedef struct jn_mqtt jn_mqtt_t;
typedef struct jn_mqtt_session jn_mqtt_session_t;

typedef struct jn_mqtt_config {
    const char *listen;       /* "host:port" plain listener; NULL or "" = none */
    const char *tls_listen;   /* "host:port" TLS listener; NULL or "" = none */
    const char *tls_cert;     /* PEM chain and key for tls_listen */
    const char *tls_key;
    bool allow_anonymous;     /* CONNECT without a user name is accepted */
    uint32_t max_packet_size; /* largest packet accepted and advertised (default 1 MiB) */
    uint16_t max_inflight;    /* Receive Maximum advertised; also caps our outbound window (default 256) */
    size_t max_queued_bytes;  /* output high water of a connection (default 1 MiB); hard cap 4x */
    uint32_t session_expiry_max; /* seconds a persistent session outlives its connection (default 7 days) */
    uint16_t keepalive_max;   /* seconds; 0 = no cap (default 0) */
    uint16_t topic_alias_max; /* inbound topic aliases accepted (default 16) */
    uint32_t sys_interval_ms; /* $SYS refresh period (default 10000; 0 = off) */
    uint32_t commit_interval_ms; /* positions of active persistent sessions saved every (default 1000) */
    const char *version;      /* for $SYS/broker/version */
} jn_mqtt_config_t;

void jn_mqtt_config_default(jn_mqtt_config_t *c);

/* Creates the door on |broker|, loads the persistent sessions and the
 * retained messages from the broker's internal tables, and opens the
 * configured listeners on |net| (|net| may be NULL when no listener is
 * configured: tests drive sessions through jn_mqtt_session_new). Returns
 * NULL on failure (logged: a bad address, a port in use, ENOMEM). */
jn_mqtt_t *jn_mqtt_new(jn_net_t *net, jn_broker_t *broker, const jn_mqtt_config_t *cfg);
/* Closes the listeners and every connection (wills of persistent sessions
 * stay pending as state; sessions keep their saved positions), saves the
 * positions of persistent sessions, frees everything. Run the loop
 * afterwards to let handles close. Safe with NULL. */
void jn_mqtt_free(jn_mqtt_t *m);
/* Registers GET |path| (NULL: "/mqtt") on |httpd|: MQTT over WebSocket
 * (MQTT section 6) with the subprotocol "mqtt" (or "mqttv3.1"), one
 * session per connection, as on the door's own listeners
 * (ws_transport.c). Call it before the HTTP server runs requests; the
 * route must not outlive |m| (free |m| and the HTTP server together,
 * without running the loop in between). Returns 0 or the error of
 * jn_httpd_route (logged). */
int jn_mqtt_ws_route(jn_mqtt_t *m, jn_httpd_t *httpd, const char *path) JN_MUST_CHECK;
/* The bound port of the plain (|tls| false) or TLS listener, or -1. */
int jn_mqtt_port(const jn_mqtt_t *m, bool tls);

/* ---- transport interface (what a session writes to) ---- */

typedef struct jn_mqtt_transport {
    /* The output buffer to append whole packets to; NULL when closing. */
    jn_buf_t *(*outbuf)(void *tctx);
    /* Bytes were appended to the buffer: queue them for sending. */
    void (*commit)(void *tctx);
    /* Output above high water: stop producing; a true answer promises a
     * later jn_mqtt_session_drain. */
    bool (*above_high_water)(void *tctx);
    /* Graceful close: flush what is queued, then close. The transport
     * calls jn_mqtt_session_closed later (never inside this call). */
    void (*close)(void *tctx);
    /* Closes at once, dropping queued output, and calls
     * jn_mqtt_session_closed before returning (used when the door is
     * freed). */
    void (*abort)(void *tctx);
    /* Deadline |ms| from now (0: none); when it passes, the transport
     * calls jn_mqtt_session_timeout. */
    void (*set_timeout)(void *tctx, uint64_t ms);
} jn_mqtt_transport_t;

/* A new connection-level session on |t| (vtable must outlive the session)
 * and |tctx|. |loopback| tells whether the peer is local (for logging and
 * anonymous rules). Arms the CONNECT deadline. NULL on ENOMEM. */
jn_mqtt_session_t *jn_mqtt_session_new(jn_mqtt_t *m, const jn_mqtt_transport_t *t, void *tctx, bool loopback);
/* Offers received bytes; returns how many were consumed (whole packets).
 * Unconsumed bytes must be offered again with more data. After a protocol
 * error the session closes the transport and consumes everything. */
size_t jn_mqtt_session_input(jn_mqtt_session_t *s, const uint8_t *data, size_t len);
/* The transport's output fell below high water. */
void jn_mqtt_session_drain(jn_mqtt_session_t *s);
/* The transport's deadline passed (keep alive or CONNECT timeout). */
void jn_mqtt_session_timeout(jn_mqtt_session_t *s);
/* The transport is gone (|reason| 0 for a close we asked for, else the
 * transport's error): publishes the will when the close was abnormal,
 * keeps or ends the MQTT session per its expiry, frees |s|. */
void jn_mqtt_session_closed(jn_mqtt_session_t *s, int reason);
/* The peer closed its sending side (EOF): treated as an abnormal close. */
void jn_mqtt_session_eof(jn_mqtt_session_t *s);

/* ---- introspection (tests, $SYS) ---- */
size_t jn_mqtt_clients_connected(const jn_mqtt_t *m);
size_t jn_mqtt_sessions(const jn_mqtt_t *m);
uint64_t jn_mqtt_messages_received(const jn_mqtt_t *m);
uint64_t jn_mqtt_messages_sent(const jn_mqtt_t *m);
uint64_t jn_mqtt_messages_dropped(const jn_mqtt_t *m);
/* Runs the periodic work now (commit positions, expire sessions, fire
 * delayed wills, refresh $SYS): for tests. */
void jn_mqtt_tick(jn_mqtt_t *m);

#endif
