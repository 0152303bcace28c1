/* fuzz_mqtt.c - libFuzzer target for the MQTT packet codec.
 *
 * The input is read as a stream of packets three times: as a new
 * connection (version 0, so the first packet must be a CONNECT, whose
 * level then applies), as a 3.1.1 connection and as a 5.0 connection.
 * Every view the decoder returns is touched so that ASan sees a view past
 * the input, and the iterators are walked to the end.
 *
 * Round-trip oracle: each packet that decodes is encoded again with the
 * same version, that encoding must decode, and encoding the second decode
 * must give the same bytes (encode . decode is a fixpoint after one step;
 * the first step may canonicalise: short forms, property order). Key
 * fields of the two decodes must agree.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/mqtt/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint32_t sink;

static void touch(jn_mqtt_view_t v)
{
    uint32_t s = 0;
    for (uint32_t i = 0; i < v.len; i++)
        s += v.data[i];
    sink += s;
}

static void walk_props(const jn_mqtt_props_t *p)
{
    jn_mqtt_prop_iter_t it;
    jn_mqtt_prop_t pr;
    uint32_t users = 0, subids = 0;
    jn_mqtt_prop_iter_init(&it, p);
    while (jn_mqtt_prop_next(&it, &pr)) {
        touch(pr.str);
        touch(pr.value);
        users += pr.id == JN_MQTT_PROP_USER;
        subids += pr.id == JN_MQTT_PROP_SUB_ID;
    }
    if (users != p->user_count || subids != p->sub_id_count)
        abort();
    for (int id = 0; id < 64; id++) {
        if (!JN_MQTT_HAS(p, id))
            continue;
        switch (id) {
        case JN_MQTT_PROP_CONTENT_TYPE: touch(p->content_type); break;
        case JN_MQTT_PROP_RESPONSE_TOPIC: touch(p->response_topic); break;
        case JN_MQTT_PROP_CORRELATION_DATA: touch(p->correlation_data); break;
        case JN_MQTT_PROP_ASSIGNED_CLIENT_ID: touch(p->assigned_client_id); break;
        case JN_MQTT_PROP_AUTH_METHOD: touch(p->auth_method); break;
        case JN_MQTT_PROP_AUTH_DATA: touch(p->auth_data); break;
        case JN_MQTT_PROP_RESPONSE_INFO: touch(p->response_info); break;
        case JN_MQTT_PROP_SERVER_REFERENCE: touch(p->server_reference); break;
        case JN_MQTT_PROP_REASON_STRING: touch(p->reason_string); break;
        default: break;
        }
    }
}

static void walk(const jn_mqtt_packet_t *pk)
{
    switch (pk->type) {
    case JN_MQTT_CONNECT: {
        const jn_mqtt_connect_t *c = &pk->u.connect;
        touch(c->client_id);
        touch(c->will_topic);
        touch(c->will_payload);
        touch(c->username);
        touch(c->password);
        walk_props(&c->props);
        walk_props(&c->will_props);
        break;
    }
    case JN_MQTT_CONNACK: walk_props(&pk->u.connack.props); break;
    case JN_MQTT_PUBLISH:
        touch(pk->u.publish.topic);
        touch(pk->u.publish.payload);
        walk_props(&pk->u.publish.props);
        break;
    case JN_MQTT_PUBACK:
    case JN_MQTT_PUBREC:
    case JN_MQTT_PUBREL:
    case JN_MQTT_PUBCOMP: walk_props(&pk->u.ack.props); break;
    case JN_MQTT_SUBSCRIBE:
    case JN_MQTT_UNSUBSCRIBE: {
        jn_mqtt_sub_iter_t it;
        jn_mqtt_sub_t s;
        uint32_t n = 0;
        jn_mqtt_sub_iter_init(&it, &pk->u.subscribe);
        while (jn_mqtt_sub_next(&it, &s)) {
            touch(s.filter);
            n++;
        }
        if (n != pk->u.subscribe.count || n == 0)
            abort();
        walk_props(&pk->u.subscribe.props);
        break;
    }
    case JN_MQTT_SUBACK:
    case JN_MQTT_UNSUBACK:
        touch(pk->u.suback.reasons);
        walk_props(&pk->u.suback.props);
        break;
    case JN_MQTT_DISCONNECT: walk_props(&pk->u.disconnect.props); break;
    case JN_MQTT_AUTH: walk_props(&pk->u.auth.props); break;
    default: break;
    }
}

static int encode(jn_buf_t *b, const jn_mqtt_packet_t *pk)
{
    uint8_t v = pk->version;
    switch (pk->type) {
    case JN_MQTT_CONNECT: return jn_mqtt_encode_connect(b, v, &pk->u.connect);
    case JN_MQTT_CONNACK: return jn_mqtt_encode_connack(b, v, &pk->u.connack);
    case JN_MQTT_PUBLISH: return jn_mqtt_encode_publish(b, v, &pk->u.publish);
    case JN_MQTT_PUBACK:
    case JN_MQTT_PUBREC:
    case JN_MQTT_PUBREL:
    case JN_MQTT_PUBCOMP: return jn_mqtt_encode_ack(b, v, pk->type, &pk->u.ack);
    case JN_MQTT_SUBSCRIBE: return jn_mqtt_encode_subscribe(b, v, &pk->u.subscribe);
    case JN_MQTT_UNSUBSCRIBE: return jn_mqtt_encode_unsubscribe(b, v, &pk->u.subscribe);
    case JN_MQTT_SUBACK: return jn_mqtt_encode_suback(b, v, &pk->u.suback);
    case JN_MQTT_UNSUBACK: return jn_mqtt_encode_unsuback(b, v, &pk->u.suback);
    case JN_MQTT_PINGREQ: return jn_mqtt_encode_pingreq(b);
    case JN_MQTT_PINGRESP: return jn_mqtt_encode_pingresp(b);
    case JN_MQTT_DISCONNECT: return jn_mqtt_encode_disconnect(b, v, &pk->u.disconnect);
    default: return jn_mqtt_encode_auth(b, v, &pk->u.auth);
    }
}

static bool view_eq(jn_mqtt_view_t a, jn_mqtt_view_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static void same(const jn_mqtt_packet_t *a, const jn_mqtt_packet_t *b)
{
    if (a->type != b->type || a->flags != b->flags || a->version != b->version)
        abort();
    bool ok = true;
    switch (a->type) {
    case JN_MQTT_CONNECT: {
        const jn_mqtt_connect_t *x = &a->u.connect, *y = &b->u.connect;
        ok = x->version == y->version && x->clean_start == y->clean_start && x->will == y->will &&
             x->will_qos == y->will_qos && x->will_retain == y->will_retain && x->keep_alive == y->keep_alive &&
             view_eq(x->client_id, y->client_id) && view_eq(x->will_topic, y->will_topic) &&
             view_eq(x->will_payload, y->will_payload) && view_eq(x->username, y->username) &&
             view_eq(x->password, y->password) && x->props.present == y->props.present &&
             x->will_props.present == y->will_props.present && x->props.user_count == y->props.user_count;
        break;
    }
    case JN_MQTT_CONNACK:
        ok = a->u.connack.session_present == b->u.connack.session_present &&
             a->u.connack.reason == b->u.connack.reason && a->u.connack.props.present == b->u.connack.props.present;
        break;
    case JN_MQTT_PUBLISH: {
        const jn_mqtt_publish_t *x = &a->u.publish, *y = &b->u.publish;
        ok = x->qos == y->qos && x->retain == y->retain && x->dup == y->dup && x->packet_id == y->packet_id &&
             view_eq(x->topic, y->topic) && view_eq(x->payload, y->payload) &&
             x->props.present == y->props.present && x->props.sub_id_count == y->props.sub_id_count &&
             x->props.user_count == y->props.user_count;
        break;
    }
    case JN_MQTT_PUBACK:
    case JN_MQTT_PUBREC:
    case JN_MQTT_PUBREL:
    case JN_MQTT_PUBCOMP:
        ok = a->u.ack.packet_id == b->u.ack.packet_id && a->u.ack.reason == b->u.ack.reason &&
             a->u.ack.props.present == b->u.ack.props.present;
        break;
    case JN_MQTT_SUBSCRIBE:
    case JN_MQTT_UNSUBSCRIBE:
        ok = a->u.subscribe.packet_id == b->u.subscribe.packet_id && a->u.subscribe.count == b->u.subscribe.count &&
             a->u.subscribe.props.present == b->u.subscribe.props.present;
        break;
    case JN_MQTT_SUBACK:
    case JN_MQTT_UNSUBACK:
        ok = a->u.suback.packet_id == b->u.suback.packet_id && view_eq(a->u.suback.reasons, b->u.suback.reasons);
        break;
    case JN_MQTT_DISCONNECT:
        ok = a->u.disconnect.reason == b->u.disconnect.reason &&
             a->u.disconnect.props.present == b->u.disconnect.props.present;
        break;
    case JN_MQTT_AUTH:
        ok = a->u.auth.reason == b->u.auth.reason && a->u.auth.props.present == b->u.auth.props.present;
        break;
    default: break;
    }
    if (!ok)
        abort();
}

/* Re-encodes |pk|, decodes that, re-encodes again: same bytes, same fields. */
static void roundtrip(const jn_mqtt_packet_t *pk)
{
    jn_buf_t b1, b2;
    jn_buf_init(&b1, JN_MQTT_MAX_PACKET);
    jn_buf_init(&b2, JN_MQTT_MAX_PACKET);
    jn_mqtt_packet_t p2, p3;
    int n1 = encode(&b1, pk);
    if (n1 <= 0)
        abort();
    uint8_t v = pk->type == JN_MQTT_CONNECT ? 0 : pk->version;
    if (jn_mqtt_decode(b1.data, b1.len, v, 0, &p2) != n1)
        abort();
    same(pk, &p2);
    int n2 = encode(&b2, &p2);
    if (n2 != n1 || memcmp(b1.data, b2.data, b1.len) != 0)
        abort();
    if (jn_mqtt_decode(b2.data, b2.len, v, 0, &p3) != n2)
        abort();
    same(&p2, &p3);
    jn_buf_free(&b1);
    jn_buf_free(&b2);
}

static void stream(const uint8_t *data, size_t size, uint8_t version)
{
    size_t off = 0;
    while (off < size) {
        jn_mqtt_packet_t pk;
        int rc = jn_mqtt_decode(data + off, size - off, version, 0, &pk);
        if (rc <= 0) {
            /* With a limit below the announced size, the header alone must
             * be enough to refuse the packet. */
            if (rc == JN_EPARTIAL && pk.len > 1) {
                jn_mqtt_packet_t p2;
                if (jn_mqtt_decode(data + off, size - off, version, pk.len - 1, &p2) != JN_ETOOBIG)
                    abort();
            }
            return;
        }
        if ((size_t)rc > size - off || (uint32_t)rc != pk.len)
            abort();
        walk(&pk);
        roundtrip(&pk);
        if (pk.type == JN_MQTT_CONNECT && version == 0)
            version = pk.u.connect.version;
        off += (size_t)rc;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    stream(data, size, 0);
    stream(data, size, JN_MQTT_V311);
    stream(data, size, JN_MQTT_V5);
    return 0;
}
