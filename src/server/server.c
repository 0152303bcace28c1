/* server.c - the server process: wires config, loop and broker to the
 * doors (HTTP with REST, WebSocket, SSE, console, webhooks and MQTT over
 * WebSocket; MQTT, AMQP and Kafka listeners), and shuts them down in the
 * order that keeps acknowledged data safe (doors first, then the broker's
 * final fsync).
 *
 * Everything lives in one jn_server_t on the stack of jn_server_run: no
 * globals, so tests or a later shard-per-core split can run several.
 */
#include "server.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "../common/log.h"
#include "../core/auth.h"
#include "../core/broker.h"
#include "../http/server.h"
#include "../proto/rest/rest.h"
#include "../proto/webhook/webhook.h"
#include "../proto/mqtt/mqtt.h"
#include "../proto/amqp/amqp.h"
#include "../proto/kafka/kafka.h"
#include "../net/conn.h"
#include "../proto/ws/ws.h"
#include "../proto/sse/sse.h"
#include "../proto/console/console.h"

/* How long shutdown waits for the broker's handles and thread-pool work
 * to finish after jn_broker_close before giving up on a clean loop close. */
#define SHUTDOWN_DRAIN_MS 5000

typedef struct jn_server {
    const jn_config_t *cfg;
    uv_loop_t loop;
    bool loop_ok;           /* loop initialised */
    jn_broker_t *broker;
    jn_httpd_t *httpd;
    jn_rest_t *rest;
    jn_webhook_t *webhook;
    jn_net_t *net;          /* connections of the non-HTTP doors */
    jn_mqtt_t *mqtt;
    jn_amqp_t *amqp;
    jn_kafka_t *kafka;
    jn_ws_t *ws;
    jn_sse_t *sse;
    jn_console_t *console;
    uv_signal_t sigint;
    uv_signal_t sigterm;
    int nsignals;           /* signal handles initialised */
    bool stopping;
} jn_server_t;

/* Ensures admin.user exists with admin.password and the admin flag.
 * Checking first keeps restarts from appending a new credential record to
 * the metadata log every time. */
static int ensure_admin(jn_server_t *s)
{
    const jn_config_t *c = s->cfg;
    if (!c->admin_user || !*c->admin_user)
        return 0;
    jn_auth_t *auth = jn_broker_auth(s->broker);
    jn_principal_t p;
    if (jn_auth_check_password(auth, c->admin_user, c->admin_password, &p) == 0 && p.admin)
        return 0;
    bool existed = jn_auth_user_exists(auth, c->admin_user);
    int rc = jn_auth_user_set(auth, c->admin_user, c->admin_password, true);
    if (rc) {
        jn_error("cannot set admin user '%s': %s", c->admin_user, jn_strerror(rc));
        return rc;
    }
    jn_info("admin user '%s' %s", c->admin_user, existed ? "updated" : "created");
    return 0;
}

static int open_broker(jn_server_t *s)
{
    const jn_config_t *c = s->cfg;
    jn_broker_config_t bc;
    jn_broker_config_default(&bc);
    bc.data_dir = c->data_dir;
    bc.default_partitions = (uint32_t)c->streams_default_partitions;
    bc.auto_create_streams = c->streams_auto_create;
    bc.mappings = c->maps;
    bc.nmappings = c->nmaps;
    bc.maintenance_interval_ms = c->maintenance_interval_ms;
    jn_plog_config_t *d = &bc.stream_defaults;
    d->segment_bytes = (uint64_t)c->streams_segment_bytes;
    d->segment_ms = c->streams_segment_ms;
    d->retention_ms = c->streams_retention_ms;
    d->retention_bytes = c->streams_retention_bytes;
    d->max_batch_bytes = (uint32_t)c->streams_max_batch_bytes;
    d->fsync = (enum jn_fsync_policy)c->streams_fsync;
    d->fsync_interval_ms = c->streams_fsync_interval_ms;
    int rc = jn_broker_open(&s->loop, &bc, NULL, &s->broker);
    if (rc)
        jn_error("cannot open the broker in '%s': %s", c->data_dir, jn_strerror(rc));
    return rc;
}

/* Binds one "host:port" listener; |index| is its listener number in the
 * httpd, for reading back the port when 0 was asked. */
static int listen_one(jn_server_t *s, const char *addr, bool tls, int index)
{
    char host[64];
    int port;
    int rc = jn_listen_parse(addr, host, sizeof host, &port);
    if (rc) {
        jn_error("bad listen address '%s'", addr);
        return rc;
    }
    rc = jn_httpd_listen(s->httpd, host, port, tls ? s->cfg->tls_cert : NULL, tls ? s->cfg->tls_key : NULL);
    if (rc) {
        jn_error("cannot listen on %s%s: %s", addr, tls ? " (TLS)" : "", jn_strerror(rc));
        return rc;
    }
    bool v6 = strchr(host, ':') != NULL;
    jn_info("listening on %s://%s%s%s:%d", tls ? "https" : "http", v6 ? "[" : "", host, v6 ? "]" : "",
            jn_httpd_port(s->httpd, index));
    return 0;
}

static int start_http(jn_server_t *s, bool allow_anonymous)
{
    const jn_config_t *c = s->cfg;
    jn_httpd_config_t hc;
    jn_httpd_config_default(&hc);
    hc.max_body = (size_t)c->http_max_body;
    hc.idle_timeout_ms = (uint32_t)c->http_idle_timeout_ms;
    hc.request_timeout_ms = (uint32_t)c->http_request_timeout_ms;
    hc.max_connections = (uint32_t)c->http_max_connections;
    hc.limits.max_header_bytes = (size_t)c->http_max_header_bytes;
    hc.limits.max_request_line = (size_t)c->http_max_request_line;
    hc.limits.max_headers = (size_t)c->http_max_headers;
    s->httpd = jn_httpd_new(&s->loop, &hc, jn_broker_metrics(s->broker));
    if (!s->httpd)
        return JN_ENOMEM;

    jn_rest_config_t rc_cfg = {
        .allow_anonymous = allow_anonymous,
        .anonymous_is_admin = allow_anonymous && jn_config_loopback_only(c),
        .version = JN_VERSION,
        .max_read_records = 10000,
    };
    s->rest = jn_rest_new(s->httpd, s->broker, &rc_cfg);
    if (!s->rest)
        return JN_ENOMEM;
    jn_webhook_config_t wh_cfg;
    jn_webhook_config_default(&wh_cfg);
    wh_cfg.allow_hosts = c->webhooks_allow_hosts;
    wh_cfg.max_concurrency_total = (uint32_t)c->webhooks_max_concurrency_total;
    wh_cfg.default_timeout_ms = (uint32_t)c->webhooks_default_timeout_ms;
    wh_cfg.retry_schedule = c->webhooks_retry_schedule;
    int wrc = jn_webhook_new(s->httpd, s->broker, s->rest, &wh_cfg, &s->webhook);
    if (wrc)
        return wrc;
    jn_ws_config_t ws_cfg;
    jn_ws_config_default(&ws_cfg);
    ws_cfg.allow_anonymous = allow_anonymous;
    s->ws = jn_ws_new(s->httpd, s->broker, &ws_cfg);
    if (!s->ws)
        return JN_ENOMEM;
    jn_sse_config_t sse_cfg = {.allow_anonymous = allow_anonymous};
    s->sse = jn_sse_new(s->httpd, s->broker, &sse_cfg);
    if (!s->sse)
        return JN_ENOMEM;
    s->console = jn_console_new(s->httpd);
    if (!s->console)
        return JN_ENOMEM;

    /* Routes before listeners: no request can arrive to an empty router. */
    int index = 0;
    int rc;
    if (c->http_listen && *c->http_listen) {
        if ((rc = listen_one(s, c->http_listen, false, index++)))
            return rc;
    }
    if (c->https_listen && *c->https_listen) {
        if ((rc = listen_one(s, c->https_listen, true, index++)))
            return rc;
    }
    return 0;
}

static int start_mqtt(jn_server_t *s, bool allow_anonymous)
{
    const jn_config_t *c = s->cfg;
    if (!(s->net = jn_net_new(&s->loop, NULL)))
        return JN_ENOMEM;
    jn_mqtt_config_t mc;
    jn_mqtt_config_default(&mc);
    mc.listen = c->mqtt_listen;
    mc.tls_listen = c->mqtt_tls_listen;
    mc.tls_cert = c->tls_cert;
    mc.tls_key = c->tls_key;
    mc.allow_anonymous = allow_anonymous;
    mc.max_packet_size = (uint32_t)c->mqtt_max_packet_size;
    mc.max_inflight = (uint16_t)c->mqtt_max_inflight;
    mc.max_queued_bytes = (size_t)c->mqtt_max_queued_bytes;
    mc.session_expiry_max = (uint32_t)c->mqtt_session_expiry_max;
    mc.keepalive_max = (uint16_t)c->mqtt_keepalive_max;
    mc.version = JN_VERSION;
    s->mqtt = jn_mqtt_new(s->net, s->broker, &mc);
    if (!s->mqtt)
        return JN_EIO;
    /* MQTT over WebSocket on the HTTP listeners; the loop has not run yet,
     * so no request can arrive before the route exists. */
    return s->httpd ? jn_mqtt_ws_route(s->mqtt, s->httpd, "/mqtt") : 0;
}

static int start_kafka(jn_server_t *s, bool allow_anonymous)
{
    const jn_config_t *c = s->cfg;
    if (!c->kafka_listen || !*c->kafka_listen)
        return 0;
    jn_kafka_config_t kc;
    jn_kafka_config_default(&kc);
    char host[64];
    int rc = jn_listen_parse(c->kafka_listen, host, sizeof host, &kc.port);
    if (rc)
        return rc;
    kc.host = host;
    kc.advertised_host = c->kafka_advertised_host;
    kc.allow_anonymous = allow_anonymous;
    kc.anonymous_is_admin = allow_anonymous && jn_config_loopback_only(c);
    kc.auto_create = c->streams_auto_create;
    kc.default_partitions = (uint32_t)c->streams_default_partitions;
    kc.max_request_bytes = (size_t)c->kafka_max_request_bytes;
    if ((rc = jn_kafka_new(&s->loop, s->broker, &kc, &s->kafka)))
        return rc;
    jn_info("listening on kafka://%s:%d", host, jn_kafka_port(s->kafka));
    return 0;
}

/* The AMQP door on amqp.listen / amqp.tls_listen (docs/amqp.md). */
static int start_amqp(jn_server_t *s, bool allow_anonymous)
{
    const jn_config_t *c = s->cfg;
    jn_amqp_config_t ac;
    jn_amqp_config_default(&ac);
    ac.allow_anonymous = allow_anonymous;
    if (!(s->amqp = jn_amqp_new(s->broker, &ac)))
        return JN_ENOMEM;
    const char *addrs[2] = {c->amqp_listen, c->amqp_tls_listen};
    for (int i = 0, index = 0; i < 2; i++) {
        char host[64];
        int port, rc;
        if (!addrs[i] || !*addrs[i])
            continue;
        if ((rc = jn_listen_parse(addrs[i], host, sizeof host, &port)) ||
            (rc = jn_amqp_listen(s->amqp, host, port, i ? c->tls_cert : NULL, i ? c->tls_key : NULL))) {
            jn_error("cannot listen on %s (AMQP%s): %s", addrs[i], i ? " TLS" : "", jn_strerror(rc));
            return rc;
        }
        jn_info("listening on amqp%s://%s:%d", i ? "s" : "", host, jn_amqp_port(s->amqp, index++));
    }
    return 0;
}

static void close_signal_cb(uv_handle_t *h)
{
    (void)h;
}

/* Closes the doors and the HTTP server; the broker stays open until their
 * handles are gone so that nothing touches it after it is closed. */
static void stop_front(jn_server_t *s)
{
    jn_mqtt_free(s->mqtt);
    s->mqtt = NULL;
    jn_amqp_free(s->amqp);
    s->amqp = NULL;
    jn_kafka_free(s->kafka);
    s->kafka = NULL;
    if (s->net)
        jn_net_free(s->net);
    s->net = NULL;
    jn_webhook_free(s->webhook); /* before the REST door whose helpers it uses */
    s->webhook = NULL;
    jn_rest_free(s->rest);
    s->rest = NULL;
    jn_ws_free(s->ws); /* before the server, which then closes its connections */
    s->ws = NULL;
    jn_sse_free(s->sse);
    s->sse = NULL;
    if (s->httpd)
        jn_httpd_free(s->httpd);
    s->httpd = NULL;
    /* After the server: its routes point at the console's files. */
    jn_console_free(s->console);
    s->console = NULL;
    if (s->nsignals > 0 && !uv_is_closing((uv_handle_t *)&s->sigint))
        uv_close((uv_handle_t *)&s->sigint, close_signal_cb);
    if (s->nsignals > 1 && !uv_is_closing((uv_handle_t *)&s->sigterm))
        uv_close((uv_handle_t *)&s->sigterm, close_signal_cb);
}

static void on_signal(uv_signal_t *h, int signum)
{
    jn_server_t *s = h->data;
    if (s->stopping)
        return;
    s->stopping = true;
    jn_info("%s received: shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    stop_front(s);
    uv_stop(&s->loop);
}

static void find_closing(uv_handle_t *h, void *arg)
{
    if (uv_is_closing(h))
        *(bool *)arg = true;
}

static void log_open_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        jn_warn("shutdown: a %s handle is still open", uv_handle_type_name(uv_handle_get_type(h)));
}

/* Runs the loop until every handle being closed has finished closing. */
static void run_closing(uv_loop_t *loop)
{
    for (int i = 0; i < 1000; i++) {
        bool closing = false;
        uv_walk(loop, find_closing, &closing);
        if (!closing)
            return;
        uv_run(loop, UV_RUN_NOWAIT);
    }
}

static void teardown(jn_server_t *s)
{
    if (!s->loop_ok)
        return;
    stop_front(s);
    run_closing(&s->loop);
    if (s->broker) {
        jn_broker_close(s->broker);
        s->broker = NULL;
    }
    /* The broker may still have close callbacks or fsync work in flight;
     * give them a bounded time rather than hang on a handle left open. */
    uint64_t deadline = uv_hrtime() + (uint64_t)SHUTDOWN_DRAIN_MS * 1000000u;
    run_closing(&s->loop);
    while (uv_loop_alive(&s->loop) && uv_hrtime() < deadline)
        uv_run(&s->loop, UV_RUN_ONCE);
    if (uv_loop_close(&s->loop) != 0) {
        uv_walk(&s->loop, log_open_handle, NULL);
        jn_warn("shutdown: the event loop did not close cleanly");
    }
    s->loop_ok = false;
}

static const char *anonymous_text(const jn_config_t *c, bool allow)
{
    if (!allow)
        return "not allowed (credentials required)";
    return jn_config_loopback_only(c) ? "allowed (loopback only)"
                                      : "allowed from anywhere (allow_anonymous = true)";
}

int jn_server_run(const jn_config_t *cfg)
{
    jn_server_t s;
    memset(&s, 0, sizeof s);
    s.cfg = cfg;
    jn_log_set_level((enum jn_log_level)cfg->log_level);
    /* A peer closing mid-write must be an EPIPE on that connection, not
     * the death of the process. */
    signal(SIGPIPE, SIG_IGN);

    char err[JN_CONFIG_ERR_MAX];
    bool allow = false;
    int signums[2] = {SIGINT, SIGTERM};
    uv_signal_t *handles[2] = {&s.sigint, &s.sigterm};
    int rc = jn_config_validate(cfg, err, sizeof err);
    if (rc) {
        jn_error("%s", err);
        return rc;
    }
    jn_info("junction %s starting: data dir %s", JN_VERSION, cfg->data_dir);

    rc = uv_loop_init(&s.loop);
    if (rc) {
        jn_error("cannot create the event loop: %s", uv_strerror(rc));
        return JN_ENOMEM;
    }
    s.loop_ok = true;

    if ((rc = open_broker(&s)))
        goto fail;
    if ((rc = ensure_admin(&s)))
        goto fail;
    rc = jn_config_anonymous(cfg, jn_auth_user_count(jn_broker_auth(s.broker)), &allow, err, sizeof err);
    if (rc) {
        jn_error("%s", err);
        goto fail;
    }
    if ((rc = start_http(&s, allow)))
        goto fail;
    if ((rc = start_mqtt(&s, allow)))
        goto fail;
    if ((rc = start_amqp(&s, allow)))
        goto fail;
    if ((rc = start_kafka(&s, allow)))
        goto fail;
    jn_log(allow && !jn_config_loopback_only(cfg) ? JN_LOG_WARN : JN_LOG_INFO, "anonymous access: %s",
           anonymous_text(cfg, allow));

    for (int i = 0; i < 2; i++) {
        if (uv_signal_init(&s.loop, handles[i]) != 0) {
            rc = JN_EIO;
            goto fail;
        }
        s.nsignals++;
        handles[i]->data = &s;
        if (uv_signal_start(handles[i], on_signal, signums[i]) != 0) {
            rc = JN_EIO;
            goto fail;
        }
    }
    jn_info("ready");

    uv_run(&s.loop, UV_RUN_DEFAULT);
    teardown(&s);
    jn_info("stopped");
    return 0;

fail:
    teardown(&s);
    return rc;
}
