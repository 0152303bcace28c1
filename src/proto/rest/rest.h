/* rest.h - the REST door: /v1 resources over the HTTP server (docs/rest.md).
 *
 * A thin adapter: each handler parses its request, checks auth through the
 * core auth, calls one broker operation and renders the result as JSON.
 * No storage or routing logic lives here. */
#ifndef JN_REST_H
#define JN_REST_H

#include <stdbool.h>
#include "../../core/broker.h"
#include "../../http/server.h"

typedef struct jn_rest_config {
    bool allow_anonymous;    /* anonymous requests get the anonymous principal */
    bool anonymous_is_admin; /* anonymous may use admin routes (loopback-only default) */
    const char *version;     /* reported by /v1/health */
    uint32_t max_read_records;   /* cap on ?limit= for reads (default 10000) */
} jn_rest_config_t;

typedef struct jn_rest jn_rest_t;

/* Registers every route of docs/rest.md on |httpd|, including /metrics and
 * /v1/openapi.json. |cfg| is copied. Returns the door (freed with
 * jn_rest_free after the server) or NULL on allocation failure. */
jn_rest_t *jn_rest_new(jn_httpd_t *httpd, jn_broker_t *broker, const jn_rest_config_t *cfg);
/* Ends live feeds (their requests are finished) and frees the door. */
void jn_rest_free(jn_rest_t *r);

/* Lists the routes jn_rest_new registers: fills up to |max| entries of
 * |out| with {method, pattern} (static strings; patterns as registered,
 * e.g. "/v1/publish/{subject*}", where OpenAPI writes "{subject}") and
 * returns the total number of routes, which may exceed |max|. */
size_t jn_rest_routes(const char *(*out)[2], size_t max);

#endif
