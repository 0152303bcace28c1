/* server.h - the HTTP/1.1 server: listeners, connections, routing.
 *
 * Connections come from the connection layer (net/conn.h: libuv TCP,
 * optionally TLS over OpenSSL memory BIOs). Each connection reads into a
 * capped input buffer,
 * parses requests with parser.h, and runs one request at a time: pipelined
 * requests wait in the input buffer until the one before them has been
 * answered, so responses leave in order. Output is a capped, queued buffer
 * written with uv_try_write / uv_write; when it passes its high-water mark
 * the connection stops reading (backpressure) and streaming writers get
 * JN_EAGAIN until it drains.
 *
 * Limits: request line, header size and count (414/431), body size (413),
 * idle keep-alive timeout, and a slow-request timeout for a head or body
 * that takes too long (408). Every error response has a JSON body
 * {"code": "...", "message": "..."}.
 *
 * Routing: handlers register a method and a path pattern whose segments
 * are literals, "{name}" (one segment) or "{name*}" (the rest of the path,
 * possibly containing '/'). Unknown paths answer 404; a known path with
 * another method answers 405 with an Allow header.
 */
#ifndef JN_HTTP_SERVER_H
#define JN_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#include "../common/buf.h"
#include "../common/error.h"
#include "../core/metrics.h"
#include "../net/conn.h"
#include "parser.h"

typedef struct jn_httpd jn_httpd_t;
typedef struct jn_http_req jn_http_req_t;

typedef struct jn_httpd_config {
    jn_http_limits_t limits;
    size_t max_body;            /* 413 beyond (default 8 MiB) */
    size_t out_high_water;      /* stop reading / EAGAIN beyond (default 1 MiB) */
    uint32_t idle_timeout_ms;   /* keep-alive idle (default 60000) */
    uint32_t request_timeout_ms;/* head+body must arrive within (default 30000) */
    uint32_t max_connections;   /* refuse beyond (default 100000) */
} jn_httpd_config_t;

void jn_httpd_config_default(jn_httpd_config_t *c);

/* |metrics| may be NULL. */
jn_httpd_t *jn_httpd_new(uv_loop_t *loop, const jn_httpd_config_t *cfg, jn_metrics_t *metrics);
/* Closes listeners and connections (aborting requests in flight) and frees
 * the server once libuv has closed every handle; run the loop to finish. */
void jn_httpd_free(jn_httpd_t *s);

/* Listens on |host|:|port| (IPv4 or IPv6 literal or "localhost"). With
 * |cert_file| and |key_file| (PEM) the listener speaks TLS. Returns 0 or
 * JN_EIO (bind failed; logged), JN_EINVAL (bad cert/key). |port| 0 picks
 * a free port: jn_httpd_port returns it. */
int jn_httpd_listen(jn_httpd_t *s, const char *host, int port, const char *cert_file,
                    const char *key_file) JN_MUST_CHECK;
int jn_httpd_port(const jn_httpd_t *s, int listener_index);
/* Number of open connections. */
size_t jn_httpd_connections(const jn_httpd_t *s);

/* ---- routing ---- */

typedef void (*jn_http_handler)(jn_http_req_t *req, void *arg);

/* Registers |handler| for |method| ("GET", "POST"...) on |pattern|.
 * Literal routes win over parameter routes at each segment. Returns 0,
 * JN_EEXIST, JN_EINVAL (bad pattern). */
int jn_httpd_route(jn_httpd_t *s, const char *method, const char *pattern, jn_http_handler handler,
                   void *arg) JN_MUST_CHECK;

/* ---- requests ----
 * A request is owned by the server. The handler (or code it hands the
 * request to) must finish it exactly once with jn_http_respond* or
 * jn_http_stream_end. If the connection closes first, the abort callback
 * (if set) runs and after it the request is gone: do not touch it again.
 * All strings below are views valid until the request finishes. */

const jn_http_request_t *jn_http_req_head(const jn_http_req_t *req);
/* The complete body (dechunked), possibly empty. */
const uint8_t *jn_http_req_body(const jn_http_req_t *req, size_t *len);
/* A route parameter, percent-decoded and NUL-terminated, or NULL. */
const char *jn_http_req_param(const jn_http_req_t *req, const char *name);
/* Query parameter into |out| (see jn_http_query_get). */
int jn_http_req_query(const jn_http_req_t *req, const char *name, char *out, size_t outlen);
/* Header value view (NULL when absent). */
const char *jn_http_req_header(const jn_http_req_t *req, const char *name, size_t *len);
/* The peer address as text ("127.0.0.1"), and whether it is loopback. */
const char *jn_http_req_peer(const jn_http_req_t *req);
bool jn_http_req_peer_is_loopback(const jn_http_req_t *req);
bool jn_http_req_is_tls(const jn_http_req_t *req);
/* Per-request slot for the handler's own state. */
void jn_http_req_set_data(jn_http_req_t *req, void *data);
void *jn_http_req_data(const jn_http_req_t *req);

typedef void (*jn_http_abort_cb)(jn_http_req_t *req, void *data);
void jn_http_req_on_abort(jn_http_req_t *req, jn_http_abort_cb cb);

/* Adds a response header (before respond / stream_begin). */
int jn_http_add_header(jn_http_req_t *req, const char *name, const char *value) JN_MUST_CHECK;

/* Sends a complete response with Content-Length. |ctype| may be NULL. */
void jn_http_respond(jn_http_req_t *req, int status, const char *ctype, const void *body, size_t len);
/* Sends |json| (not stolen) as application/json. */
void jn_http_respond_json(jn_http_req_t *req, int status, const json_t *json);
/* Sends {"code": code, "message": message} with |status|. */
void jn_http_respond_error(jn_http_req_t *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Streaming responses (chunked transfer coding): for live feeds.
 * stream_write returns 0, or JN_EAGAIN when the output buffer is above its
 * high-water mark (the data was still queued if it fit under the hard cap
 * of 2x high water, else it was not: the return says which: JN_ETOOBIG).
 * The drain callback runs when output falls below the mark again. */
int jn_http_stream_begin(jn_http_req_t *req, int status, const char *ctype) JN_MUST_CHECK;
int jn_http_stream_write(jn_http_req_t *req, const void *data, size_t len) JN_MUST_CHECK;
typedef void (*jn_http_drain_cb)(jn_http_req_t *req, void *data);
void jn_http_req_on_drain(jn_http_req_t *req, jn_http_drain_cb cb);
void jn_http_stream_end(jn_http_req_t *req);

/* ---- upgrade (WebSocket, MQTT over WebSocket...) ----
 * Answers |req| with "101 Switching Protocols", the Server header,
 * |extra_headers| (whole lines, each ending in CRLF, e.g. "Upgrade:
 * websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ...\r\n"; may
 * be NULL) and the headers added with jn_http_add_header; finishes the
 * request (do not touch |req| again) and hands the connection over: HTTP
 * drops it from its books (jn_httpd_connections, idle and request
 * timeouts) and detaches as its handler. Returns the connection; the
 * caller must set its handler (jn_conn_set_handler) before returning to
 * the loop, and owns it from then on (jn_conn_close when done; note that
 * jn_httpd_free still closes it, with on_close, since it lives in the
 * server's connection group).
 *
 * Input: bytes the client sent after the request (its head and body, if
 * any) are not parsed as HTTP: they stay in the connection's input buffer
 * and are offered to the new handler's on_data. Pipelining: the server
 * runs one request at a time and parses nothing behind a request until
 * it is answered, so an upgrade is always the only request in flight;
 * whatever follows it belongs to the new protocol.
 *
 * Returns NULL (and leaves the request waiting for a normal response)
 * when the request did not ask for an upgrade (Connection: upgrade plus
 * an Upgrade header, HTTP/1.1), when a response was already begun, when
 * |extra_headers| is not CRLF-terminated, or when the server is closing
 * or the output is full. */
jn_conn_t *jn_http_upgrade(jn_http_req_t *req, const char *extra_headers);

#endif
