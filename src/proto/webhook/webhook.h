/* webhook.h - the webhooks door (docs/webhooks.md).
 *
 * Outbound: endpoints managed over REST (/v1/webhooks...). Each enabled
 * endpoint is a subscriber of the shared log (a broker subscription with
 * its filter, progress committed as consumer group "webhook/<id>"), and
 * every record it is offered is POSTed to its URL with the Standard
 * Webhooks headers, retried on a schedule, dead-lettered after the last
 * attempt. Delivery runs on libcurl's multi interface driven by the
 * server's libuv loop: no thread per request.
 *
 * Inbound: hooks managed over REST (/v1/hooks...); POST /v1/hooks/{name}
 * verifies a signature and publishes the body as a record.
 *
 * Definitions are JSON records of the metadata log ("ext/webhook/<id>",
 * "ext/hook/<name>"), replayed by jn_webhook_new.
 */
#ifndef JN_WEBHOOK_H
#define JN_WEBHOOK_H

#include <stdint.h>

#include "../../core/broker.h"
#include "../../http/server.h"
#include "../rest/rest.h"

typedef struct jn_webhook_config {
    const char *allow_hosts;        /* CIDRs / hosts exempt from the SSRF rules ("" = none) */
    uint32_t max_concurrency_total; /* requests in flight over all endpoints (default 1024) */
    uint32_t default_timeout_ms;    /* per attempt, when an endpoint sets none (default 15000) */
    const char *retry_schedule;     /* default schedule ("5s,5m,30m,2h,5h,10h,10h") */
    int64_t commit_interval_ms;     /* progress commit period (default 1000) */
    int64_t disable_after_ms;       /* default for endpoints: failing this long disables (5 days) */
} jn_webhook_config_t;

typedef struct jn_webhook jn_webhook_t;

void jn_webhook_config_default(jn_webhook_config_t *c);

/* Creates the door: registers its routes on |httpd| (authentication and
 * error answers through |rest|'s helpers), opens the internal attempts
 * table, replays the stored endpoints and hooks and starts delivering.
 * |cfg| is copied. Returns 0 and *out; JN_EINVAL (bad allow list or
 * schedule, logged), JN_ENOMEM, JN_EIO. */
int jn_webhook_new(jn_httpd_t *httpd, jn_broker_t *broker, jn_rest_t *rest, const jn_webhook_config_t *cfg,
                   jn_webhook_t **out) JN_MUST_CHECK;

/* Commits every endpoint's progress, aborts requests in flight (they are
 * sent again after a restart: same webhook-id), closes subscriptions and
 * starts closing the loop handles; the memory goes when they are closed
 * (run the loop). Safe with NULL. Call before the broker closes. */
void jn_webhook_free(jn_webhook_t *w);

#endif
