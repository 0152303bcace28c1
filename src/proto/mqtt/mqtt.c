/* mqtt.c - the MQTT door: listeners, the jn_conn_t transport of a session,
 * the periodic work (saving positions, expiring sessions, delayed wills,
 * $SYS), and the door's life cycle.
 */
#include "mqtt_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"
#include "../../net/addr.h"
#include "../common/door_metrics.h"

#define TICK_MS 1000

void jn_mqtt_config_default(jn_mqtt_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->max_packet_size = 1u << 20;
    c->max_inflight = 256;
    c->max_queued_bytes = 1u << 20;
    c->session_expiry_max = 7 * 24 * 3600;
    c->topic_alias_max = 16;
    c->sys_interval_ms = 10000;
    c->commit_interval_ms = 1000;
}

int64_t jn__mqtt_now(const jn_mqtt_t *m)
{
    (void)m;
    return jn_wall_ms();
}

/* ---- the jn_conn_t transport ---- */

static jn_buf_t *conn_outbuf(void *c) { return jn_conn_outbuf(c); }
static void conn_commit(void *c) { jn_conn_commit(c, 0); }
static bool conn_above(void *c) { return jn_conn_above_high_water(c); }
static void conn_close(void *c) { jn_conn_close(c); }
static void conn_abort(void *c) { jn_conn_abort(c); }
static void conn_timeout(void *c, uint64_t ms) { jn_conn_set_timeout(c, ms); }

static const jn_mqtt_transport_t conn_transport = {
    .outbuf = conn_outbuf,
    .commit = conn_commit,
    .above_high_water = conn_above,
    .close = conn_close,
    .abort = conn_abort,
    .set_timeout = conn_timeout,
};

static size_t on_data(jn_conn_t *c, const uint8_t *data, size_t len)
{
    jn_mqtt_session_t *s = jn_conn_ctx(c);
    if (!s->in_full && len >= MQTT_IN_FIRST) {
        /* A read filled the small first buffer: a busy or large-packet
         * client. From now on the buffer may grow to the packet limit. */
        s->in_full = true;
        jn_conn_set_limits(c, (size_t)s->m->cfg.max_packet_size + 8, 0, 0);
    }
    return jn_mqtt_session_input(s, data, len);
}
static void on_drain(jn_conn_t *c) { jn_mqtt_session_drain(jn_conn_ctx(c)); }
static void on_close(jn_conn_t *c, int reason) { jn_mqtt_session_closed(jn_conn_ctx(c), reason); }
static void on_timeout(jn_conn_t *c) { jn_mqtt_session_timeout(jn_conn_ctx(c)); }
static void on_eof(jn_conn_t *c) { jn_mqtt_session_eof(jn_conn_ctx(c)); }

static const jn_conn_handler_t conn_handler = {
    .on_data = on_data,
    .on_drain = on_drain,
    .on_close = on_close,
    .on_timeout = on_timeout,
    .on_eof = on_eof,
};

static void on_accept(jn_conn_t *conn, void *arg)
{
    jn_mqtt_t *m = arg;
    size_t hw = m->cfg.max_queued_bytes;
    jn_conn_set_limits(conn, MQTT_IN_FIRST, hw, hw * 4);
    jn_mqtt_session_t *s = jn_mqtt_session_new(m, &conn_transport, conn, jn_conn_is_loopback(conn));
    if (!s) {
        jn_conn_abort(conn);
        return;
    }
    jn_conn_set_handler(conn, &conn_handler, s);
}

/* ---- periodic work ---- */

void jn_mqtt_tick(jn_mqtt_t *m)
{
    int64_t now = jn__mqtt_now(m);
    jn_list_t *n, *t;
    jn_list_foreach_safe(n, t, &m->states) {
        mqtt_state_t *st = jn_container_of(n, mqtt_state_t, node);
        if (st->sess) {
            jn__mqtt_state_commit(st);
            continue;
        }
        if (st->will && st->will->at && now >= st->will->at) {
            jn__mqtt_will_publish(m, st->will);
            jn__mqtt_will_free(st->will);
            st->will = NULL;
        }
        if (st->expiry != UINT32_MAX && now >= st->offline_since + (int64_t)st->expiry * 1000) {
            if (st->will) {
                jn__mqtt_will_publish(m, st->will);
                jn__mqtt_will_free(st->will);
                st->will = NULL;
            }
            jn_debug("mqtt: session %s expired", st->client_id);
            jn__mqtt_state_end(st);
        }
    }
    jn__mqtt_shares_tick(m);
    if (m->cfg.sys_interval_ms && now >= m->next_sys_ms) {
        m->next_sys_ms = now + m->cfg.sys_interval_ms;
        jn__mqtt_sys_update(m);
    }
}

static void timer_cb(uv_timer_t *t)
{
    jn_mqtt_tick(t->data);
}

/* ---- life cycle ---- */

static char *dup_opt(jn_mqtt_t *m, int i, const char *s)
{
    if (!s)
        return NULL;
    m->cfg_strings[i] = strdup(s);
    return m->cfg_strings[i];
}

static int listen_on(jn_mqtt_t *m, const char *addr, bool tls, jn_listener_t **out)
{
    char host[64];
    int port;
    if (!m->net || jn_listen_parse(addr, host, sizeof host, &port) < 0) {
        jn_error("mqtt: bad listen address '%s'", addr);
        return JN_EINVAL;
    }
    int rc = jn_listener_open(m->net, tls ? "mqtts" : "mqtt", host, port, tls ? m->cfg.tls_cert : NULL,
                              tls ? m->cfg.tls_key : NULL, on_accept, m, out);
    if (rc < 0)
        return rc;
    jn_info("listening on %s://%s:%d", tls ? "mqtts" : "mqtt", addr[0] == '[' ? addr : host,
            jn_listener_port(*out));
    return 0;
}

jn_mqtt_t *jn_mqtt_new(jn_net_t *net, jn_broker_t *broker, const jn_mqtt_config_t *cfg)
{
    jn_mqtt_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->b = broker;
    m->net = net;
    jn_pool_init(&m->sess_pool, sizeof(jn_mqtt_session_t));
    jn_pool_init(&m->state_pool, sizeof(mqtt_state_t) + MQTT_ID_INLINE);
    jn_pool_init(&m->msub_pool, sizeof(mqtt_msub_t) + MQTT_SUB_INLINE);
    if (cfg)
        m->cfg = *cfg;
    else
        jn_mqtt_config_default(&m->cfg);
    if (!m->cfg.max_inflight)
        m->cfg.max_inflight = 256;
    if (!m->cfg.max_packet_size)
        m->cfg.max_packet_size = 1u << 20;
    if (!m->cfg.max_queued_bytes)
        m->cfg.max_queued_bytes = 1u << 20;
    m->cfg.listen = dup_opt(m, 0, m->cfg.listen);
    m->cfg.tls_listen = dup_opt(m, 1, m->cfg.tls_listen);
    m->cfg.tls_cert = dup_opt(m, 2, m->cfg.tls_cert);
    m->cfg.tls_key = dup_opt(m, 3, m->cfg.tls_key);
    m->cfg.version = dup_opt(m, 4, m->cfg.version);
    jn_list_init(&m->sessions);
    jn_list_init(&m->states);
    jn_list_init(&m->shares);
    jn_buf_init(&m->scratch, 1u << 30);
    jn_buf_init(&m->wsout, 0);
    jn_principal_anonymous(&m->anonymous);
    m->started_ms = jn__mqtt_now(m);
    jn_metrics_t *mx = jn_broker_metrics(broker);
    if (mx) {
        m->stats.g_conns = jn_metrics_gauge(mx, JN_DOOR_CONNECTIONS, JN_DOOR_CONNECTIONS_HELP, "door=\"mqtt\"");
        m->stats.c_in = jn_metrics_counter(mx, JN_DOOR_MESSAGES, JN_DOOR_MESSAGES_HELP,
                                           "door=\"mqtt\",direction=\"in\"");
        m->stats.c_out = jn_metrics_counter(mx, JN_DOOR_MESSAGES, JN_DOOR_MESSAGES_HELP,
                                            "door=\"mqtt\",direction=\"out\"");
    }
    if (uv_timer_init(jn_broker_loop(broker), &m->timer) < 0)
        goto fail_early;
    m->timer.data = m;
    m->timer_on = true;
    if (jn_broker_table_open_internal(broker, MQTT_SESSIONS_TABLE) < 0 ||
        jn_broker_table_open_internal(broker, MQTT_RETAINED_TABLE) < 0) {
        jn_error("mqtt: cannot open the internal tables");
        goto fail;
    }
    /* Retained messages first: a saved session's in-flight retained
     * message is restored only if the store still has it (state.c). */
    if (jn__mqtt_retained_load(m) < 0 || jn__mqtt_states_load(m) < 0) {
        jn_error("mqtt: cannot load the saved sessions and retained messages");
        goto fail;
    }
    if (m->cfg.sys_interval_ms)
        jn__mqtt_sys_update(m);
    m->next_sys_ms = m->started_ms + m->cfg.sys_interval_ms;
    if (m->cfg.listen && *m->cfg.listen && listen_on(m, m->cfg.listen, false, &m->lst) < 0)
        goto fail;
    if (m->cfg.tls_listen && *m->cfg.tls_listen && listen_on(m, m->cfg.tls_listen, true, &m->tls) < 0)
        goto fail;
    uint32_t period = m->cfg.commit_interval_ms ? m->cfg.commit_interval_ms : TICK_MS;
    uv_timer_start(&m->timer, timer_cb, period, period);
    uv_unref((uv_handle_t *)&m->timer);
    return m;
fail:
    jn_mqtt_free(m);
    return NULL;
fail_early:
    jn_pool_destroy(&m->sess_pool);
    jn_pool_destroy(&m->state_pool);
    jn_pool_destroy(&m->msub_pool);
    jn_buf_free(&m->scratch);
    jn_buf_free(&m->wsout);
    free(m);
    return NULL;
}

static void free_cb(uv_handle_t *h)
{
    jn_mqtt_t *m = h->data;
    for (int i = 0; i < 5; i++)
        free(m->cfg_strings[i]);
    jn_buf_free(&m->scratch);
    jn_buf_free(&m->wsout);
    free(m->htab);
    jn_pool_destroy(&m->sess_pool);
    jn_pool_destroy(&m->state_pool);
    jn_pool_destroy(&m->msub_pool);
    free(m);
}

void jn_mqtt_free(jn_mqtt_t *m)
{
    if (!m)
        return;
    m->freeing = true;
    if (m->lst)
        jn_listener_close(m->lst);
    if (m->tls)
        jn_listener_close(m->tls);
    m->lst = m->tls = NULL;
    while (!jn_list_empty(&m->sessions)) {
        jn_mqtt_session_t *s = jn_container_of(m->sessions.next, jn_mqtt_session_t, node);
        if (s->phase == PH_ACTIVE)
            jn__mqtt_send_disconnect(s, JN_MQTT_RC_SERVER_SHUTTING_DOWN);
        s->t->abort(s->tctx); /* runs jn_mqtt_session_closed */
    }
    while (!jn_list_empty(&m->states)) {
        mqtt_state_t *st = jn_container_of(m->states.next, mqtt_state_t, node);
        jn__mqtt_state_commit(st);
        /* Keep the saved copy and the positions: free in memory only. */
        while (!jn_list_empty(&st->subs)) {
            mqtt_msub_t *ms = jn_container_of(st->subs.next, mqtt_msub_t, node);
            jn__mqtt_msub_free(ms, false);
        }
        st->saved = false;
        st->expiry = 0;
        jn__mqtt_state_end(st);
    }
    while (!jn_list_empty(&m->shares)) {
        mqtt_share_t *sh = jn_container_of(m->shares.next, mqtt_share_t, node);
        jn_list_remove(&sh->node);
        if (sh->sub)
            jn_sub_close(sh->sub);
        free(sh->key);
        free(sh->filter);
        free(sh->group);
        free(sh);
    }
    jn__mqtt_retained_free_all(m);
    if (m->timer_on) {
        uv_timer_stop(&m->timer);
        uv_close((uv_handle_t *)&m->timer, free_cb);
    } else {
        free_cb((uv_handle_t *)&m->timer);
    }
}

int jn_mqtt_port(const jn_mqtt_t *m, bool tls)
{
    const jn_listener_t *l = tls ? m->tls : m->lst;
    return l ? jn_listener_port(l) : -1;
}

size_t jn_mqtt_clients_connected(const jn_mqtt_t *m) { return m->connected; }
size_t jn_mqtt_sessions(const jn_mqtt_t *m) { return m->nstates; }
uint64_t jn_mqtt_messages_received(const jn_mqtt_t *m) { return m->received; }
uint64_t jn_mqtt_messages_sent(const jn_mqtt_t *m) { return m->sent; }
uint64_t jn_mqtt_messages_dropped(const jn_mqtt_t *m) { return m->dropped; }
