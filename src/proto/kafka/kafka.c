/* kafka.c - the Kafka door's connection side: listener, request framing,
 * authentication gate, dispatch to the handlers, and parking of requests
 * that wait (Fetch long-polls, acks=all produces, join and sync rounds,
 * InitProducerId until its id block is durable).
 *
 * Parked fetches are woken by the broker's append hook (jn_broker_on_append):
 * one cheap call per append, no records offered, no batch decompressed;
 * the tick then runs every parked fetch again.
 *
 * A connection serves one request at a time, as a Kafka broker does (it
 * mutes the channel until the response is sent): a request that must wait
 * keeps its frame in the input buffer, reading is paused, and the decoded
 * request (views into that frame) stays valid until it is answered. This
 * keeps responses in request order without queueing anything.
 */
#include "kafka_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../common/hash.h"
#include "../../common/log.h"

static const jn_conn_handler_t kafka_handler;

void jn_kafka_config_default(jn_kafka_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->port = 9092;
    c->auto_create = true;
    c->default_partitions = 1;
    c->max_request_bytes = 100u << 20;
}

int64_t jn__kafka_now(void)
{
    return (int64_t)(jn_mono_ns() / 1000000u);
}

const char *jn__kafka_cstr(jn_kstr_t s, char *buf, size_t n)
{
    size_t len = s.len > 0 ? (size_t)s.len : 0;
    if (len >= n)
        len = n - 1;
    if (len)
        memcpy(buf, s.p, len);
    buf[len] = '\0';
    return buf;
}

bool jn__kafka_hidden(const char *name)
{
    /* The door's own tables and the core's reserved "__" streams. */
    return strncmp(name, "_kafka_", 7) == 0 || strncmp(name, "__", 2) == 0;
}

void jn__kafka_topic_id(const char *name, uint8_t id[16])
{
    size_t n = strlen(name);
    uint64_t a = jn_fnv1a(name, n);
    char salted[JN_STREAM_NAME_MAX + 2];
    salted[0] = '#';
    memcpy(salted + 1, name, n < JN_STREAM_NAME_MAX ? n : JN_STREAM_NAME_MAX);
    uint64_t b = jn_fnv1a(salted, 1 + (n < JN_STREAM_NAME_MAX ? n : JN_STREAM_NAME_MAX));
    jn_store_be64(id, a);
    jn_store_be64(id + 8, b);
    id[6] = (uint8_t)((id[6] & 0x0f) | 0x40); /* shaped as a v4 UUID */
    id[8] = (uint8_t)((id[8] & 0x3f) | 0x80);
}

bool jn__kafka_may(kconn_t *kc, enum jn_perm perm, const char *topic, size_t len)
{
    if (kc->principal.admin || (kc->principal.anonymous && kc->k->cfg.anonymous_is_admin))
        return true;
    return jn_auth_allowed(kc->k->auth, &kc->principal, perm, topic, len);
}

bool jn__kafka_may_admin(kconn_t *kc, const char *topic)
{
    if (kc->principal.admin || (kc->principal.anonymous && kc->k->cfg.anonymous_is_admin))
        return true;
    return topic && jn_auth_allowed(kc->k->auth, &kc->principal, JN_PERM_ADMIN, topic, strlen(topic));
}

jn_stream_t *jn__kafka_topic(kconn_t *kc, jn_kstr_t name, bool create, int16_t *err)
{
    *err = 0;
    if (name.len <= 0 || jn_stream_name_validate(name.p, (size_t)name.len) < 0) {
        *err = JN_KERR_INVALID_TOPIC_EXCEPTION;
        return NULL;
    }
    jn_stream_t *s = jn_broker_stream_find(kc->k->broker, name.p, (size_t)name.len);
    if (s)
        return s;
    if (!create || !kc->k->cfg.auto_create) {
        *err = JN_KERR_UNKNOWN_TOPIC_OR_PARTITION;
        return NULL;
    }
    char buf[JN_STREAM_NAME_MAX + 1];
    jn__kafka_cstr(name, buf, sizeof buf);
    if (!jn__kafka_may(kc, JN_PERM_PUBLISH, buf, strlen(buf))) {
        *err = JN_KERR_TOPIC_AUTHORIZATION_FAILED;
        return NULL;
    }
    int rc = jn_broker_stream_create(kc->k->broker, buf, kc->k->cfg.default_partitions, NULL, &s);
    if (rc == JN_EEXIST)
        return jn_broker_stream_find(kc->k->broker, name.p, (size_t)name.len);
    if (rc) {
        *err = JN_KERR_UNKNOWN_TOPIC_OR_PARTITION;
        return NULL;
    }
    jn_info("kafka: created topic '%s' (%u partitions)", buf, kc->k->cfg.default_partitions);
    return s;
}

/* ---- responses ---- */

void jn__kafka_begin_buf(kconn_t *kc, jn_kwriter_t *w, jn_buf_t *b)
{
    jn_kwriter_init(w, b, false);
    jn_kw_i32(w, 0); /* size, patched by the caller */
    jn_kw_i32(w, kc->hdr.correlation_id);
    if (jn_kafka_response_header_version(kc->hdr.api_key, kc->hdr.api_version) >= 1) {
        w->flex = true;
        jn_kw_tags(w);
    }
    w->flex = kc->hdr.flexible;
}

void jn__kafka_begin(kconn_t *kc, jn_kwriter_t *w, size_t *mark)
{
    jn_buf_t *out = jn_conn_outbuf(kc->conn);
    if (!out) {
        /* Closing: encode into nothing (the writer fails at once). */
        jn_kwriter_init(w, NULL, kc->hdr.flexible);
        w->err = JN_ECLOSED;
        *mark = 0;
        return;
    }
    *mark = out->len;
    jn__kafka_begin_buf(kc, w, out);
}

void jn__kafka_end(kconn_t *kc, jn_kwriter_t *w, size_t mark)
{
    if (w->err == JN_ECLOSED && !w->b)
        return;
    jn_buf_t *out = w->b;
    if (w->err) {
        out->len = mark;
        jn_warn("kafka: %s: cannot encode a response (%s)", jn_conn_peer(kc->conn), jn_strerror(w->err));
        jn_conn_abort(kc->conn);
        return;
    }
    jn_store_be32(out->data + mark, (uint32_t)(out->len - mark - 4));
    jn_conn_commit(kc->conn, 0);
}

/* ---- parking ---- */

static void kconn_clear_request(kconn_t *kc)
{
    jn_karena_free(&kc->arena);
    kc->park = KPARK_NONE;
    kc->waits = NULL;
    kc->nwaits = kc->waits_left = 0;
}

void jn__kafka_unpark(kconn_t *kc)
{
    if (kc->in_dispatch) {
        /* Answered inside its own handler: on_data consumes the frame. */
        kc->park = KPARK_NONE;
        return;
    }
    if (jn_list_linked(&kc->node))
        jn_list_remove(&kc->node);
    size_t n = kc->frame_len;
    kconn_clear_request(kc);
    kc->frame_len = 0;
    if (jn_conn_is_closing(kc->conn))
        return;
    jn_conn_consume(kc->conn, n);
    jn_conn_resume_reading(kc->conn);
}

static void arm_tick(jn_kafka_t *k, int64_t delay);

static void tick_cb(uv_timer_t *t)
{
    jn_kafka_t *k = t->data;
    int64_t now = jn__kafka_now();
    k->wake_armed = false;
    jn_kgroups_tick(k->groups, now);
    /* Re-run every parked fetch: either data arrived (it answers now) or
     * the deadline passed (it answers with what there is). */
    jn_list_t *pos, *tmp;
    int64_t next = now + 100;
    jn_list_foreach_safe(pos, tmp, &k->parked) {
        kconn_t *kc = jn_container_of(pos, kconn_t, node);
        jn__kafka_fetch(kc, (const jn_kafka_fetch_req_t *)kc->req, now >= kc->deadline_ms);
    }
    jn_list_foreach(pos, &k->parked) {
        kconn_t *kc = jn_container_of(pos, kconn_t, node);
        if (kc->deadline_ms < next)
            next = kc->deadline_ms;
    }
    arm_tick(k, next > now ? next - now : 0);
}

static void arm_tick(jn_kafka_t *k, int64_t delay)
{
    uv_timer_start(&k->tick, tick_cb, (uint64_t)delay, 0);
}

/* Parks a fetch until data or |deadline|. */
void jn__kafka_fetch_park(kconn_t *kc, int64_t deadline)
{
    if (kc->park == KPARK_FETCH && jn_list_linked(&kc->node))
        return;
    kc->park = KPARK_FETCH;
    kc->deadline_ms = deadline;
    jn_list_insert_tail(&kc->k->parked, &kc->node);
    int64_t now = jn__kafka_now();
    if (uv_timer_get_due_in(&kc->k->tick) > (uint64_t)(deadline > now ? deadline - now : 0))
        arm_tick(kc->k, deadline > now ? deadline - now : 0);
}

/* Records were appended somewhere: parked fetches look again on the next
 * loop iteration (never from inside the append). Once armed, further
 * appends before the tick runs cost a test. */
void jn__kafka_wake(jn_kafka_t *k)
{
    if (!jn_list_empty(&k->parked) && !k->wake_armed) {
        k->wake_armed = true;
        arm_tick(k, 0);
    }
}

/* ---- dispatch ---- */

static bool pre_auth_api(int16_t key)
{
    return key == JN_KAPI_API_VERSIONS || key == JN_KAPI_SASL_HANDSHAKE || key == JN_KAPI_SASL_AUTHENTICATE;
}

/* Handles one request frame. Returns false when the connection must
 * close (as Kafka closes it: unparseable or unknown requests). */
static bool handle_request(kconn_t *kc, const uint8_t *body, size_t blen)
{
    int hl = jn_kafka_parse_header(body, blen, &kc->hdr);
    if (hl < 0)
        return false;
    jn_kafka_header_t *h = &kc->hdr;
    if (h->api_key == JN_KAPI_API_VERSIONS && !jn_kafka_version_supported(h->api_key, h->api_version)) {
        /* Kafka answers an ApiVersions it does not know with a v0
         * response carrying UNSUPPORTED_VERSION and its ranges. */
        jn__kafka_api_versions(kc, h->api_version);
        return true;
    }
    if (!jn_kafka_version_supported(h->api_key, h->api_version)) {
        jn_info("kafka: %s: unsupported API %d v%d; closing", jn_conn_peer(kc->conn), h->api_key,
                h->api_version);
        return false;
    }
    if (!kc->authenticated && !pre_auth_api(h->api_key)) {
        if (!kc->k->cfg.allow_anonymous || kc->sasl != KSASL_NONE) {
            jn_info("kafka: %s: request before authentication; closing", jn_conn_peer(kc->conn));
            return false;
        }
        jn_principal_anonymous(&kc->principal);
        kc->authenticated = true;
    }
    jn_karena_init(&kc->arena, KAFKA_ARENA_MAX);
    void *req = kc->req;
    int rc = jn_kafka_decode_request(h, body + hl, blen - (size_t)hl, &kc->arena, req);
    if (rc) {
        jn_info("kafka: %s: malformed %s v%d request; closing", jn_conn_peer(kc->conn),
                jn_kafka_api_find(h->api_key)->name, h->api_version);
        jn_karena_free(&kc->arena);
        return false;
    }
    kc->in_dispatch = true;
    switch (h->api_key) {
    case JN_KAPI_API_VERSIONS: jn__kafka_api_versions(kc, -1); break;
    case JN_KAPI_METADATA: jn__kafka_metadata(kc, req); break;
    case JN_KAPI_PRODUCE: jn__kafka_produce(kc, req); break;
    case JN_KAPI_FETCH: jn__kafka_fetch(kc, req, false); break;
    case JN_KAPI_LIST_OFFSETS: jn__kafka_list_offsets(kc, req); break;
    case JN_KAPI_INIT_PRODUCER_ID: jn__kafka_init_producer_id(kc, req); break;
    case JN_KAPI_FIND_COORDINATOR: jn__kafka_find_coordinator(kc, req); break;
    case JN_KAPI_JOIN_GROUP: jn__kafka_join_group(kc, req); break;
    case JN_KAPI_SYNC_GROUP: jn__kafka_sync_group(kc, req); break;
    case JN_KAPI_HEARTBEAT: jn__kafka_heartbeat(kc, req); break;
    case JN_KAPI_LEAVE_GROUP: jn__kafka_leave_group(kc, req); break;
    case JN_KAPI_OFFSET_COMMIT: jn__kafka_offset_commit(kc, req); break;
    case JN_KAPI_OFFSET_FETCH: jn__kafka_offset_fetch(kc, req); break;
    case JN_KAPI_DESCRIBE_GROUPS: jn__kafka_describe_groups(kc, req); break;
    case JN_KAPI_LIST_GROUPS: jn__kafka_list_groups(kc, req); break;
    case JN_KAPI_CREATE_TOPICS: jn__kafka_create_topics(kc, req); break;
    case JN_KAPI_DELETE_TOPICS: jn__kafka_delete_topics(kc, req); break;
    case JN_KAPI_CREATE_PARTITIONS: jn__kafka_create_partitions(kc, req); break;
    case JN_KAPI_DESCRIBE_CONFIGS: jn__kafka_describe_configs(kc, req); break;
    case JN_KAPI_SASL_HANDSHAKE: jn__kafka_sasl_handshake(kc, req); break;
    case JN_KAPI_SASL_AUTHENTICATE: jn__kafka_sasl_authenticate(kc, req); break;
    default: break;
    }
    kc->in_dispatch = false;
    if (kc->park == KPARK_NONE)
        jn_karena_free(&kc->arena);
    return true;
}

static size_t on_data(jn_conn_t *conn, const uint8_t *data, size_t len)
{
    kconn_t *kc = jn_conn_ctx(conn);
    size_t used = 0;
    jn_conn_set_timeout(conn, KAFKA_IDLE_MS);
    while (used < len && kc->park == KPARK_NONE && !jn_conn_is_closing(conn)) {
        const uint8_t *body;
        size_t blen, flen = 0;
        int rc = jn_kafka_frame(data + used, len - used, kc->k->cfg.max_request_bytes, &body, &blen, &flen);
        if (rc == JN_EPARTIAL) {
            jn_conn_need_input(conn, flen);
            break;
        }
        if (rc) {
            jn_info("kafka: %s: bad request size; closing", jn_conn_peer(conn));
            jn_conn_abort(conn);
            return len;
        }
        if (kc->sasl == KSASL_V0_RAW && !kc->authenticated) {
            jn__kafka_sasl_raw(kc, body, blen);
            used += flen;
            continue;
        }
        kc->frame_len = flen;
        if (!handle_request(kc, body, blen)) {
            jn_conn_abort(conn);
            return len;
        }
        if (kc->park != KPARK_NONE) {
            jn_conn_pause_reading(conn);
            break; /* the frame stays buffered until the answer */
        }
        used += flen;
    }
    return used;
}

static void on_close(jn_conn_t *conn, int reason)
{
    (void)reason;
    kconn_t *kc = jn_conn_ctx(conn);
    if (jn_list_linked(&kc->node))
        jn_list_remove(&kc->node);
    jn_kgroups_cancel(kc->k->groups, kc);
    jn__kafka_produce_cancel(kc);
    jn__kafka_offset_commit_cancel(kc);
    jn__kafka_init_producer_id_cancel(kc);
    jn_karena_free(&kc->arena);
    free(kc->scram_auth);
    free(kc);
}

static void on_timeout(jn_conn_t *conn)
{
    jn_conn_close(conn);
}

static const jn_conn_handler_t kafka_handler = {
    .on_data = on_data,
    .on_close = on_close,
    .on_timeout = on_timeout,
};

static void on_accept(jn_conn_t *conn, void *arg)
{
    jn_kafka_t *k = arg;
    kconn_t *kc = calloc(1, sizeof *kc);
    if (!kc) {
        jn_conn_abort(conn);
        return;
    }
    kc->k = k;
    kc->conn = conn;
    jn_list_init(&kc->node);
    jn_karena_init(&kc->arena, KAFKA_ARENA_MAX);
    jn_conn_set_limits(conn, k->cfg.max_request_bytes + 4, 4u << 20, KAFKA_OUT_MAX);
    jn_conn_set_handler(conn, &kafka_handler, kc);
    jn_conn_set_timeout(conn, KAFKA_IDLE_MS);
}

/* ---- lifecycle ---- */

/* The broker's append hook. Internal ("__") streams cannot be fetched
 * over Kafka, so their appends (tables, queues) wake nothing. */
static void on_append(void *arg, jn_stream_t *s, uint32_t partition, int64_t end_offset)
{
    (void)partition;
    (void)end_offset;
    if (!jn_stream_is_internal(s))
        jn__kafka_wake(arg);
}

int jn_kafka_new(uv_loop_t *loop, jn_broker_t *b, const jn_kafka_config_t *cfg, jn_kafka_t **out)
{
    jn_kafka_t *k = calloc(1, sizeof *k);
    if (!k)
        return JN_ENOMEM;
    int rc = JN_ENOMEM;
    k->cfg = *cfg;
    if (!k->cfg.max_request_bytes)
        k->cfg.max_request_bytes = 100u << 20;
    if (!k->cfg.default_partitions)
        k->cfg.default_partitions = 1;
    k->broker = b;
    k->auth = jn_broker_auth(b);
    k->loop = loop;
    jn_list_init(&k->parked);
    const char *adv = cfg->advertised_host && *cfg->advertised_host ? cfg->advertised_host : cfg->host;
    if (!adv || !*adv || strcmp(adv, "0.0.0.0") == 0 || strcmp(adv, "::") == 0 || strcmp(adv, "localhost") == 0)
        adv = "127.0.0.1";
    snprintf(k->host, sizeof k->host, "%s", adv);
    k->seq = calloc(1024, sizeof *k->seq);
    k->groups = jn_kgroups_new(NULL, jn__kafka_on_join, jn__kafka_on_sync, k);
    if (!k->seq || !k->groups)
        goto fail;
    if (uv_timer_init(loop, &k->tick))
        goto fail;
    k->tick_init = true;
    k->tick.data = k;
    arm_tick(k, 100);
    k->net = jn_net_new(loop, NULL);
    if (!k->net)
        goto fail;
    rc = jn_broker_on_append(b, on_append, k);
    if (rc)
        goto fail;
    k->hooked = true;
    rc = jn_listener_open(k->net, "kafka", cfg->host, cfg->port, NULL, NULL, on_accept, k, &k->listener);
    if (rc)
        goto fail;
    *out = k;
    return 0;
fail:
    jn_kafka_free(k);
    return rc;
}

int jn_kafka_port(const jn_kafka_t *k)
{
    return jn_listener_port(k->listener);
}

static void tick_closed(uv_handle_t *h)
{
    free(h->data);
}

void jn_kafka_free(jn_kafka_t *k)
{
    if (!k)
        return;
    if (k->hooked)
        jn_broker_off_append(k->broker, on_append, k);
    if (k->net)
        jn_net_free(k->net); /* on_close of each conn runs: groups still exist */
    jn_kgroups_free(k->groups);
    jn__kafka_seq_free(k);
    free(k->seq);
    if (k->tick_init) {
        uv_timer_stop(&k->tick);
        uv_close((uv_handle_t *)&k->tick, tick_closed);
    } else {
        free(k);
    }
}
