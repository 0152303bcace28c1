/* codec.c - AMQP 0-9-1 frames, methods, content headers and field tables
 * (see codec.h). One static table of method signatures drives both the
 * decoder and the encoder.
 *
 * Wire facts (AMQP 0-9-1 section 4.2 and RabbitMQ's errata):
 *   frame    type:octet channel:short size:long payload[size] 0xCE
 *   method   class:short method:short arguments...
 *   bits     consecutive bit arguments pack into octets, least
 *            significant bit first; any other argument ends the run
 *   header   class:short weight:short body-size:longlong flags:short
 *            then the present properties in flag order (bit 15 first)
 *   tables   long size, then shortstr name + type octet + value; types as
 *            RabbitMQ uses them: t b B s u I i l f d D S x A T F V, plus the
 *            0-9-1 spec's 'U' (signed short) and 'L' (long-long) which
 *            RabbitMQ's errata replaced by 's' and 'l'.
 */
#include "codec.h"

#include <math.h>
#include <string.h>

typedef struct method_desc {
    uint32_t id;
    const char *name;
    const char *sig;
} method_desc_t;

/* Signatures: o octet, s short, l long, L longlong, S shortstr,
 * X longstr, b bit, T table. */
static const method_desc_t methods[] = {
    {JN_AMQP_CONNECTION_START, "connection.start", "ooTXX"},
    {JN_AMQP_CONNECTION_START_OK, "connection.start-ok", "TSXS"},
    {JN_AMQP_CONNECTION_SECURE, "connection.secure", "X"},
    {JN_AMQP_CONNECTION_SECURE_OK, "connection.secure-ok", "X"},
    {JN_AMQP_CONNECTION_TUNE, "connection.tune", "sls"},
    {JN_AMQP_CONNECTION_TUNE_OK, "connection.tune-ok", "sls"},
    {JN_AMQP_CONNECTION_OPEN, "connection.open", "SSb"},
    {JN_AMQP_CONNECTION_OPEN_OK, "connection.open-ok", "S"},
    {JN_AMQP_CONNECTION_CLOSE, "connection.close", "sSss"},
    {JN_AMQP_CONNECTION_CLOSE_OK, "connection.close-ok", ""},
    {JN_AMQP_CONNECTION_BLOCKED, "connection.blocked", "S"},
    {JN_AMQP_CONNECTION_UNBLOCKED, "connection.unblocked", ""},
    {JN_AMQP_CONNECTION_UPDATE_SECRET, "connection.update-secret", "XS"},
    {JN_AMQP_CONNECTION_UPDATE_SECRET_OK, "connection.update-secret-ok", ""},
    {JN_AMQP_CHANNEL_OPEN, "channel.open", "S"},
    {JN_AMQP_CHANNEL_OPEN_OK, "channel.open-ok", "X"},
    {JN_AMQP_CHANNEL_FLOW, "channel.flow", "b"},
    {JN_AMQP_CHANNEL_FLOW_OK, "channel.flow-ok", "b"},
    {JN_AMQP_CHANNEL_CLOSE, "channel.close", "sSss"},
    {JN_AMQP_CHANNEL_CLOSE_OK, "channel.close-ok", ""},
    {JN_AMQP_EXCHANGE_DECLARE, "exchange.declare", "sSSbbbbbT"},
    {JN_AMQP_EXCHANGE_DECLARE_OK, "exchange.declare-ok", ""},
    {JN_AMQP_EXCHANGE_DELETE, "exchange.delete", "sSbb"},
    {JN_AMQP_EXCHANGE_DELETE_OK, "exchange.delete-ok", ""},
    {JN_AMQP_EXCHANGE_BIND, "exchange.bind", "sSSSbT"},
    {JN_AMQP_EXCHANGE_BIND_OK, "exchange.bind-ok", ""},
    {JN_AMQP_EXCHANGE_UNBIND, "exchange.unbind", "sSSSbT"},
    {JN_AMQP_EXCHANGE_UNBIND_OK, "exchange.unbind-ok", ""},
    {JN_AMQP_QUEUE_DECLARE, "queue.declare", "sSbbbbbT"},
    {JN_AMQP_QUEUE_DECLARE_OK, "queue.declare-ok", "Sll"},
    {JN_AMQP_QUEUE_BIND, "queue.bind", "sSSSbT"},
    {JN_AMQP_QUEUE_BIND_OK, "queue.bind-ok", ""},
    {JN_AMQP_QUEUE_PURGE, "queue.purge", "sSb"},
    {JN_AMQP_QUEUE_PURGE_OK, "queue.purge-ok", "l"},
    {JN_AMQP_QUEUE_DELETE, "queue.delete", "sSbbb"},
    {JN_AMQP_QUEUE_DELETE_OK, "queue.delete-ok", "l"},
    {JN_AMQP_QUEUE_UNBIND, "queue.unbind", "sSSST"},
    {JN_AMQP_QUEUE_UNBIND_OK, "queue.unbind-ok", ""},
    {JN_AMQP_BASIC_QOS, "basic.qos", "lsb"},
    {JN_AMQP_BASIC_QOS_OK, "basic.qos-ok", ""},
    {JN_AMQP_BASIC_CONSUME, "basic.consume", "sSSbbbbT"},
    {JN_AMQP_BASIC_CONSUME_OK, "basic.consume-ok", "S"},
    {JN_AMQP_BASIC_CANCEL, "basic.cancel", "Sb"},
    {JN_AMQP_BASIC_CANCEL_OK, "basic.cancel-ok", "S"},
    {JN_AMQP_BASIC_PUBLISH, "basic.publish", "sSSbb"},
    {JN_AMQP_BASIC_RETURN, "basic.return", "sSSS"},
    {JN_AMQP_BASIC_DELIVER, "basic.deliver", "SLbSS"},
    {JN_AMQP_BASIC_GET, "basic.get", "sSb"},
    {JN_AMQP_BASIC_GET_OK, "basic.get-ok", "LbSSl"},
    {JN_AMQP_BASIC_GET_EMPTY, "basic.get-empty", "S"},
    {JN_AMQP_BASIC_ACK, "basic.ack", "Lb"},
    {JN_AMQP_BASIC_REJECT, "basic.reject", "Lb"},
    {JN_AMQP_BASIC_RECOVER_ASYNC, "basic.recover-async", "b"},
    {JN_AMQP_BASIC_RECOVER, "basic.recover", "b"},
    {JN_AMQP_BASIC_RECOVER_OK, "basic.recover-ok", ""},
    {JN_AMQP_BASIC_NACK, "basic.nack", "Lbb"},
    {JN_AMQP_CONFIRM_SELECT, "confirm.select", "b"},
    {JN_AMQP_CONFIRM_SELECT_OK, "confirm.select-ok", ""},
    {JN_AMQP_TX_SELECT, "tx.select", ""},
    {JN_AMQP_TX_SELECT_OK, "tx.select-ok", ""},
    {JN_AMQP_TX_COMMIT, "tx.commit", ""},
    {JN_AMQP_TX_COMMIT_OK, "tx.commit-ok", ""},
    {JN_AMQP_TX_ROLLBACK, "tx.rollback", ""},
    {JN_AMQP_TX_ROLLBACK_OK, "tx.rollback-ok", ""},
};

static const method_desc_t *find_method(uint32_t id)
{
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (methods[i].id == id)
            return &methods[i];
    return NULL;
}

const char *jn_amqp_method_sig(uint32_t id, const char **name)
{
    const method_desc_t *d = find_method(id);
    if (!d)
        return NULL;
    if (name)
        *name = d->name;
    return d->sig;
}

const char *jn_amqp_method_name(uint32_t id)
{
    const method_desc_t *d = find_method(id);
    return d ? d->name : "unknown";
}

/* ---- protocol header and frames ---- */

int jn_amqp_protocol_header_check(const uint8_t *p, size_t len)
{
    size_t n = len < JN_AMQP_PROTOCOL_HEADER_LEN ? len : JN_AMQP_PROTOCOL_HEADER_LEN;
    if (memcmp(p, JN_AMQP_PROTOCOL_HEADER, n) != 0)
        return JN_EPROTO;
    return n == JN_AMQP_PROTOCOL_HEADER_LEN ? JN_AMQP_PROTOCOL_HEADER_LEN : JN_EPARTIAL;
}

int jn_amqp_frame_decode(const uint8_t *p, size_t len, uint32_t frame_max, jn_amqp_frame_t *f)
{
    if (len < 7)
        return JN_EPARTIAL;
    uint8_t type = p[0];
    if (type != JN_AMQP_FRAME_METHOD && type != JN_AMQP_FRAME_HEADER && type != JN_AMQP_FRAME_BODY &&
        type != JN_AMQP_FRAME_HEARTBEAT)
        return JN_EPROTO;
    uint32_t size = jn_load_be32(p + 3);
    /* Checked before waiting for the rest: a peer cannot make us buffer
     * more than the negotiated frame size. */
    if (frame_max && (uint64_t)size + JN_AMQP_FRAME_OVERHEAD > frame_max)
        return JN_ETOOBIG;
    if ((uint64_t)len < (uint64_t)size + JN_AMQP_FRAME_OVERHEAD)
        return JN_EPARTIAL;
    if (p[7 + size] != JN_AMQP_FRAME_END)
        return JN_EPROTO;
    f->type = type;
    f->channel = jn_load_be16(p + 1);
    f->payload = p + 7;
    f->size = size;
    return (int)(size + JN_AMQP_FRAME_OVERHEAD);
}

/* ---- a bounded reader ---- */

typedef struct rd {
    const uint8_t *p, *end;
} rd_t;

static bool rd_take(rd_t *r, size_t n, const uint8_t **out)
{
    if ((size_t)(r->end - r->p) < n)
        return false;
    *out = r->p;
    r->p += n;
    return true;
}

static int table_validate_depth(const uint8_t *p, size_t len, int depth);
static int array_validate_depth(const uint8_t *p, size_t len, int depth);

/* Reads one field value of |type| into |v| (when not NULL), checking
 * nested structures down to |depth|. */
static int read_value(rd_t *r, char type, jn_amqp_value_t *v, int depth)
{
    const uint8_t *q;
    jn_amqp_value_t tmp;
    if (!v)
        v = &tmp;
    memset(v, 0, sizeof *v);
    v->type = type;
    switch (type) {
    case 't':
    case 'b':
    case 'B':
        if (!rd_take(r, 1, &q))
            return JN_EPROTO;
        v->i = type == 'b' ? (int8_t)q[0] : q[0];
        if (type == 't')
            v->i = q[0] != 0;
        v->u = (uint64_t)v->i;
        return 0;
    case 's':
    case 'U':
    case 'u':
        if (!rd_take(r, 2, &q))
            return JN_EPROTO;
        v->i = type == 'u' ? (int64_t)jn_load_be16(q) : (int64_t)(int16_t)jn_load_be16(q);
        v->u = (uint64_t)v->i;
        return 0;
    case 'I':
    case 'i':
        if (!rd_take(r, 4, &q))
            return JN_EPROTO;
        v->i = type == 'i' ? (int64_t)jn_load_be32(q) : (int64_t)(int32_t)jn_load_be32(q);
        v->u = (uint64_t)v->i;
        return 0;
    case 'l':
    case 'L':
    case 'T':
        if (!rd_take(r, 8, &q))
            return JN_EPROTO;
        v->u = jn_load_be64(q);
        v->i = (int64_t)v->u;
        return 0;
    case 'f': {
        if (!rd_take(r, 4, &q))
            return JN_EPROTO;
        uint32_t bits = jn_load_be32(q);
        float fl;
        memcpy(&fl, &bits, 4);
        v->d = fl;
        return 0;
    }
    case 'd': {
        if (!rd_take(r, 8, &q))
            return JN_EPROTO;
        uint64_t bits = jn_load_be64(q);
        memcpy(&v->d, &bits, 8);
        return 0;
    }
    case 'D':
        if (!rd_take(r, 5, &q))
            return JN_EPROTO;
        v->scale = q[0];
        v->i = (int32_t)jn_load_be32(q + 1);
        return 0;
    case 'S':
    case 'x':
    case 'A':
    case 'F': {
        if (!rd_take(r, 4, &q))
            return JN_EPROTO;
        uint32_t n = jn_load_be32(q);
        if (!rd_take(r, n, &q))
            return JN_EPROTO;
        v->p = q;
        v->len = n;
        if (type == 'F' || type == 'A') {
            if (depth <= 0)
                return JN_EPROTO;
            return type == 'F' ? table_validate_depth(q, n, depth - 1) : array_validate_depth(q, n, depth - 1);
        }
        return 0;
    }
    case 'V':
        return 0;
    default:
        return JN_EPROTO;
    }
}

static int read_key(rd_t *r, jn_amqp_str_t *key)
{
    const uint8_t *q;
    if (!rd_take(r, 1, &q))
        return JN_EPROTO;
    uint8_t n = q[0];
    if (!rd_take(r, n, &q))
        return JN_EPROTO;
    key->p = q;
    key->len = n;
    return 0;
}

static int table_validate_depth(const uint8_t *p, size_t len, int depth)
{
    rd_t r = {p, p + len};
    while (r.p < r.end) {
        jn_amqp_str_t key;
        const uint8_t *t;
        if (read_key(&r, &key) || !rd_take(&r, 1, &t))
            return JN_EPROTO;
        int rc = read_value(&r, (char)t[0], NULL, depth);
        if (rc)
            return rc;
    }
    return 0;
}

static int array_validate_depth(const uint8_t *p, size_t len, int depth)
{
    rd_t r = {p, p + len};
    while (r.p < r.end) {
        const uint8_t *t;
        if (!rd_take(&r, 1, &t))
            return JN_EPROTO;
        int rc = read_value(&r, (char)t[0], NULL, depth);
        if (rc)
            return rc;
    }
    return 0;
}

int jn_amqp_table_validate(const uint8_t *p, size_t len)
{
    return table_validate_depth(p, len, JN_AMQP_TABLE_DEPTH_MAX);
}

void jn_amqp_iter_init(jn_amqp_iter_t *it, const uint8_t *p, size_t len)
{
    it->p = p;
    it->end = len ? p + len : p;
}

int jn_amqp_table_next(jn_amqp_iter_t *it, jn_amqp_str_t *key, jn_amqp_value_t *v)
{
    if (it->p >= it->end)
        return 0;
    rd_t r = {it->p, it->end};
    const uint8_t *t;
    if (read_key(&r, key) || !rd_take(&r, 1, &t) || read_value(&r, (char)t[0], v, JN_AMQP_TABLE_DEPTH_MAX))
        return JN_EPROTO;
    it->p = r.p;
    return 1;
}

int jn_amqp_array_next(jn_amqp_iter_t *it, jn_amqp_value_t *v)
{
    if (it->p >= it->end)
        return 0;
    rd_t r = {it->p, it->end};
    const uint8_t *t;
    if (!rd_take(&r, 1, &t) || read_value(&r, (char)t[0], v, JN_AMQP_TABLE_DEPTH_MAX))
        return JN_EPROTO;
    it->p = r.p;
    return 1;
}

int jn_amqp_table_get(const uint8_t *p, size_t len, const char *key, jn_amqp_value_t *v)
{
    jn_amqp_iter_t it;
    jn_amqp_iter_init(&it, p, len);
    jn_amqp_str_t k;
    size_t klen = strlen(key);
    while (jn_amqp_table_next(&it, &k, v) == 1)
        if (k.len == klen && memcmp(k.p, key, klen) == 0)
            return 1;
    return 0;
}

json_t *jn_amqp_value_to_json(const jn_amqp_value_t *v)
{
    switch (v->type) {
    case 't':
        return json_boolean(v->i);
    case 'b': case 'B': case 's': case 'U': case 'u': case 'I': case 'i': case 'l': case 'L': case 'T':
        return json_integer((json_int_t)v->i);
    case 'f':
    case 'd':
        /* JSON has no NaN or infinity (jansson refuses them): null. */
        return isfinite(v->d) ? json_real(v->d) : json_null();
    case 'D': {
        double d = (double)v->i;
        for (int k = 0; k < v->scale; k++)
            d /= 10.0;
        return isfinite(d) ? json_real(d) : json_null();
    }
    case 'S':
    case 'x':
        return json_stringn_nocheck((const char *)v->p, v->len);
    case 'F':
        return jn_amqp_table_to_json(v->p, v->len);
    case 'A': {
        json_t *a = json_array();
        jn_amqp_iter_t it;
        jn_amqp_value_t e;
        int rc;
        jn_amqp_iter_init(&it, v->p, v->len);
        while (a && (rc = jn_amqp_array_next(&it, &e)) == 1) {
            json_t *j = jn_amqp_value_to_json(&e);
            if (!j || json_array_append_new(a, j)) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    default:
        return json_null();
    }
}

json_t *jn_amqp_table_to_json(const uint8_t *p, size_t len)
{
    json_t *o = json_object();
    jn_amqp_iter_t it;
    jn_amqp_str_t k;
    jn_amqp_value_t v;
    int rc;
    char key[256];
    jn_amqp_iter_init(&it, p, len);
    while (o && (rc = jn_amqp_table_next(&it, &k, &v)) != 0) {
        if (rc < 0)
            goto fail;
        memcpy(key, k.p, k.len);
        key[k.len] = 0;
        json_t *j = jn_amqp_value_to_json(&v);
        if (!j || json_object_set_new_nocheck(o, key, j))
            goto fail;
    }
    return o;
fail:
    json_decref(o);
    return NULL;
}

/* ---- methods ---- */

int jn_amqp_method_decode(const uint8_t *p, size_t len, jn_amqp_method_t *m)
{
    if (len < 4)
        return JN_EPROTO;
    memset(m, 0, sizeof *m);
    m->id = jn_load_be32(p);
    const method_desc_t *d = find_method(m->id);
    if (!d)
        return JN_EUNSUPPORTED;
    m->name = d->name;
    m->sig = d->sig;
    rd_t r = {p + 4, p + len};
    int bit = 8; /* next bit in |bits|; 8 = none left */
    uint8_t bits = 0;
    const uint8_t *q;
    for (const char *s = d->sig; *s; s++) {
        jn_amqp_arg_t *a = &m->a[m->nargs++];
        if (*s != 'b')
            bit = 8;
        switch (*s) {
        case 'b':
            if (bit == 8) {
                if (!rd_take(&r, 1, &q))
                    return JN_EPROTO;
                bits = q[0];
                bit = 0;
            }
            a->u = (bits >> bit++) & 1;
            break;
        case 'o':
            if (!rd_take(&r, 1, &q))
                return JN_EPROTO;
            a->u = q[0];
            break;
        case 's':
            if (!rd_take(&r, 2, &q))
                return JN_EPROTO;
            a->u = jn_load_be16(q);
            break;
        case 'l':
            if (!rd_take(&r, 4, &q))
                return JN_EPROTO;
            a->u = jn_load_be32(q);
            break;
        case 'L':
            if (!rd_take(&r, 8, &q))
                return JN_EPROTO;
            a->u = jn_load_be64(q);
            break;
        case 'S':
            if (!rd_take(&r, 1, &q))
                return JN_EPROTO;
            a->len = q[0];
            if (!rd_take(&r, a->len, &a->p))
                return JN_EPROTO;
            break;
        case 'X':
        case 'T':
            if (!rd_take(&r, 4, &q))
                return JN_EPROTO;
            a->len = jn_load_be32(q);
            if (!rd_take(&r, a->len, &a->p))
                return JN_EPROTO;
            if (*s == 'T' && jn_amqp_table_validate(a->p, a->len))
                return JN_EPROTO;
            break;
        }
    }
    return r.p == r.end ? 0 : JN_EPROTO;
}

/* Starts a frame: type, channel, size placeholder. Returns the offset of
 * the size field. */
static int frame_begin(jn_buf_t *out, uint8_t type, uint16_t channel, size_t *mark)
{
    int rc;
    if ((rc = jn_buf_put_u8(out, type)) || (rc = jn_buf_put_be16(out, channel)))
        return rc;
    *mark = out->len;
    return jn_buf_put_be32(out, 0);
}

static int frame_end(jn_buf_t *out, size_t mark)
{
    size_t size = out->len - mark - 4;
    if (size > UINT32_MAX)
        return JN_ETOOBIG;
    jn_store_be32(out->data + mark, (uint32_t)size);
    return jn_buf_put_u8(out, JN_AMQP_FRAME_END);
}

static int put_shortstr(jn_buf_t *out, const uint8_t *p, uint32_t len)
{
    if (len > 255)
        return JN_EINVAL;
    int rc = jn_buf_put_u8(out, (uint8_t)len);
    return rc ? rc : (len ? jn_buf_append(out, p, len) : 0);
}

static int put_longstr(jn_buf_t *out, const uint8_t *p, uint32_t len)
{
    int rc = jn_buf_put_be32(out, len);
    return rc ? rc : (len ? jn_buf_append(out, p, len) : 0);
}

int jn_amqp_encode_method(jn_buf_t *out, uint16_t channel, uint32_t id, const jn_amqp_arg_t *args,
                          size_t nargs)
{
    const method_desc_t *d = find_method(id);
    if (!d || strlen(d->sig) != nargs)
        return JN_EINVAL;
    size_t start = out->len, mark;
    int rc = frame_begin(out, JN_AMQP_FRAME_METHOD, channel, &mark);
    if (!rc)
        rc = jn_buf_put_be32(out, id);
    size_t bitpos = 0; /* offset of the octet collecting bits */
    int bit = 8;
    for (size_t i = 0; !rc && i < nargs; i++) {
        const jn_amqp_arg_t *a = &args[i];
        char t = d->sig[i];
        if (t != 'b')
            bit = 8;
        switch (t) {
        case 'b':
            if (bit == 8) {
                bitpos = out->len;
                rc = jn_buf_put_u8(out, 0);
                bit = 0;
            }
            if (!rc && a->u)
                out->data[bitpos] |= (uint8_t)(1u << bit);
            bit++;
            break;
        case 'o':
            rc = jn_buf_put_u8(out, (uint8_t)a->u);
            break;
        case 's':
            rc = jn_buf_put_be16(out, (uint16_t)a->u);
            break;
        case 'l':
            rc = jn_buf_put_be32(out, (uint32_t)a->u);
            break;
        case 'L':
            rc = jn_buf_put_be64(out, a->u);
            break;
        case 'S':
            rc = put_shortstr(out, a->p, a->len);
            break;
        default: /* X, T */
            rc = put_longstr(out, a->p, a->len);
            break;
        }
    }
    if (!rc)
        rc = frame_end(out, mark);
    if (rc)
        out->len = start;
    return rc;
}

/* ---- content ---- */

static int rd_shortstr(rd_t *r, jn_amqp_str_t *s)
{
    const uint8_t *q;
    if (!rd_take(r, 1, &q))
        return JN_EPROTO;
    s->len = q[0];
    return rd_take(r, s->len, &s->p) ? 0 : JN_EPROTO;
}

int jn_amqp_header_decode(const uint8_t *p, size_t len, jn_amqp_content_header_t *h)
{
    memset(h, 0, sizeof *h);
    rd_t r = {p, p + len};
    const uint8_t *q;
    if (!rd_take(&r, 14, &q))
        return JN_EPROTO;
    h->class_id = jn_load_be16(q);
    h->body_size = jn_load_be64(q + 4);
    jn_amqp_props_t *pr = &h->props;
    pr->flags = jn_load_be16(q + 12);
    uint16_t f = pr->flags;
    /* Bit 0 continues the flags into another word: basic has only 14
     * properties, so a continuation is malformed. */
    if (f & 1)
        return JN_EPROTO;
    if ((f & JN_AMQP_P_CONTENT_TYPE) && rd_shortstr(&r, &pr->content_type))
        return JN_EPROTO;
    if ((f & JN_AMQP_P_CONTENT_ENCODING) && rd_shortstr(&r, &pr->content_encoding))
        return JN_EPROTO;
    if (f & JN_AMQP_P_HEADERS) {
        if (!rd_take(&r, 4, &q))
            return JN_EPROTO;
        pr->headers.len = jn_load_be32(q);
        if (!rd_take(&r, pr->headers.len, &pr->headers.p) ||
            jn_amqp_table_validate(pr->headers.p, pr->headers.len))
            return JN_EPROTO;
    }
    if (f & JN_AMQP_P_DELIVERY_MODE) {
        if (!rd_take(&r, 1, &q))
            return JN_EPROTO;
        pr->delivery_mode = q[0];
    }
    if (f & JN_AMQP_P_PRIORITY) {
        if (!rd_take(&r, 1, &q))
            return JN_EPROTO;
        pr->priority = q[0];
    }
    if ((f & JN_AMQP_P_CORRELATION_ID) && rd_shortstr(&r, &pr->correlation_id))
        return JN_EPROTO;
    if ((f & JN_AMQP_P_REPLY_TO) && rd_shortstr(&r, &pr->reply_to))
        return JN_EPROTO;
    if ((f & JN_AMQP_P_EXPIRATION) && rd_shortstr(&r, &pr->expiration))
        return JN_EPROTO;
    if ((f & JN_AMQP_P_MESSAGE_ID) && rd_shortstr(&r, &pr->message_id))
        return JN_EPROTO;
    if (f & JN_AMQP_P_TIMESTAMP) {
        if (!rd_take(&r, 8, &q))
            return JN_EPROTO;
        pr->timestamp = jn_load_be64(q);
    }
    if ((f & JN_AMQP_P_TYPE) && rd_shortstr(&r, &pr->type))
        return JN_EPROTO;
    if ((f & JN_AMQP_P_USER_ID) && rd_shortstr(&r, &pr->user_id))
        return JN_EPROTO;
    if ((f & JN_AMQP_P_APP_ID) && rd_shortstr(&r, &pr->app_id))
        return JN_EPROTO;
    if ((f & JN_AMQP_P_CLUSTER_ID) && rd_shortstr(&r, &pr->cluster_id))
        return JN_EPROTO;
    return r.p == r.end ? 0 : JN_EPROTO;
}

int jn_amqp_encode_header(jn_buf_t *out, uint16_t channel, uint16_t class_id, uint64_t body_size,
                          const jn_amqp_props_t *pr)
{
    size_t start = out->len, mark;
    uint16_t f = pr ? (uint16_t)(pr->flags & ~1u) : 0;
    int rc = frame_begin(out, JN_AMQP_FRAME_HEADER, channel, &mark);
    if (!rc)
        rc = jn_buf_put_be16(out, class_id);
    if (!rc)
        rc = jn_buf_put_be16(out, 0);
    if (!rc)
        rc = jn_buf_put_be64(out, body_size);
    if (!rc)
        rc = jn_buf_put_be16(out, f);
#define STR(flag, m)                                                                               \
    if (!rc && (f & (flag)))                                                                       \
    rc = put_shortstr(out, pr->m.p, pr->m.len)
    STR(JN_AMQP_P_CONTENT_TYPE, content_type);
    STR(JN_AMQP_P_CONTENT_ENCODING, content_encoding);
    if (!rc && (f & JN_AMQP_P_HEADERS))
        rc = put_longstr(out, pr->headers.p, pr->headers.len);
    if (!rc && (f & JN_AMQP_P_DELIVERY_MODE))
        rc = jn_buf_put_u8(out, pr->delivery_mode);
    if (!rc && (f & JN_AMQP_P_PRIORITY))
        rc = jn_buf_put_u8(out, pr->priority);
    STR(JN_AMQP_P_CORRELATION_ID, correlation_id);
    STR(JN_AMQP_P_REPLY_TO, reply_to);
    STR(JN_AMQP_P_EXPIRATION, expiration);
    STR(JN_AMQP_P_MESSAGE_ID, message_id);
    if (!rc && (f & JN_AMQP_P_TIMESTAMP))
        rc = jn_buf_put_be64(out, pr->timestamp);
    STR(JN_AMQP_P_TYPE, type);
    STR(JN_AMQP_P_USER_ID, user_id);
    STR(JN_AMQP_P_APP_ID, app_id);
    STR(JN_AMQP_P_CLUSTER_ID, cluster_id);
#undef STR
    if (!rc)
        rc = frame_end(out, mark);
    if (rc)
        out->len = start;
    return rc;
}

int jn_amqp_encode_body(jn_buf_t *out, uint16_t channel, const uint8_t *p, size_t len, uint32_t frame_max)
{
    size_t start = out->len;
    size_t chunk = frame_max > JN_AMQP_FRAME_OVERHEAD ? frame_max - JN_AMQP_FRAME_OVERHEAD : len;
    if (chunk == 0)
        chunk = 1;
    int rc = 0;
    for (size_t off = 0; !rc && off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        size_t mark;
        rc = frame_begin(out, JN_AMQP_FRAME_BODY, channel, &mark);
        if (!rc)
            rc = jn_buf_append(out, p + off, n);
        if (!rc)
            rc = frame_end(out, mark);
    }
    if (rc)
        out->len = start;
    return rc;
}

int jn_amqp_encode_heartbeat(jn_buf_t *out)
{
    static const uint8_t hb[8] = {JN_AMQP_FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, JN_AMQP_FRAME_END};
    return jn_buf_append(out, hb, sizeof hb);
}

/* ---- table encoding ---- */

int jn_amqp_table_begin(jn_buf_t *b, size_t *mark)
{
    *mark = b->len;
    return jn_buf_put_be32(b, 0);
}

void jn_amqp_table_end(jn_buf_t *b, size_t mark)
{
    jn_store_be32(b->data + mark, (uint32_t)(b->len - mark - 4));
}

int jn_amqp_put_key(jn_buf_t *b, const char *key)
{
    return put_shortstr(b, (const uint8_t *)key, (uint32_t)strlen(key));
}

static int put_key_type(jn_buf_t *b, const char *key, char type)
{
    int rc = key ? jn_amqp_put_key(b, key) : 0;
    return rc ? rc : jn_buf_put_u8(b, (uint8_t)type);
}

int jn_amqp_put_bool(jn_buf_t *b, const char *key, bool v)
{
    size_t s = b->len;
    int rc = put_key_type(b, key, 't');
    if (!rc)
        rc = jn_buf_put_u8(b, v ? 1 : 0);
    if (rc)
        b->len = s;
    return rc;
}

int jn_amqp_put_long(jn_buf_t *b, const char *key, int64_t v)
{
    size_t s = b->len;
    int rc = put_key_type(b, key, 'l');
    if (!rc)
        rc = jn_buf_put_be64(b, (uint64_t)v);
    if (rc)
        b->len = s;
    return rc;
}

int jn_amqp_put_int(jn_buf_t *b, const char *key, int32_t v)
{
    size_t s = b->len;
    int rc = put_key_type(b, key, 'I');
    if (!rc)
        rc = jn_buf_put_be32(b, (uint32_t)v);
    if (rc)
        b->len = s;
    return rc;
}

int jn_amqp_put_str(jn_buf_t *b, const char *key, const void *str, size_t len)
{
    if (len > UINT32_MAX)
        return JN_ETOOBIG;
    size_t s = b->len;
    int rc = put_key_type(b, key, 'S');
    if (!rc)
        rc = put_longstr(b, str, (uint32_t)len);
    if (rc)
        b->len = s;
    return rc;
}

static int put_json_depth(jn_buf_t *b, const char *key, const json_t *v, int depth)
{
    if (depth <= 0)
        return JN_EINVAL;
    size_t s = b->len, mark = 0;
    int rc = 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *e;
        rc = put_key_type(b, key, 'F');
        if (!rc)
            rc = jn_amqp_table_begin(b, &mark);
        json_object_foreach((json_t *)v, k, e) {
            if (rc)
                break;
            if (strlen(k) > 255)
                rc = JN_EINVAL;
            else
                rc = put_json_depth(b, k, e, depth - 1);
        }
        if (!rc)
            jn_amqp_table_end(b, mark);
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *e;
        rc = put_key_type(b, key, 'A');
        if (!rc)
            rc = jn_amqp_table_begin(b, &mark);
        json_array_foreach(v, i, e) {
            if (rc)
                break;
            rc = put_json_depth(b, NULL, e, depth - 1);
        }
        if (!rc)
            jn_amqp_table_end(b, mark);
        break;
    }
    case JSON_STRING:
        rc = jn_amqp_put_str(b, key, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        rc = jn_amqp_put_long(b, key, (int64_t)json_integer_value(v));
        break;
    case JSON_REAL: {
        double d = json_real_value(v);
        uint64_t bits;
        memcpy(&bits, &d, 8);
        rc = put_key_type(b, key, 'd');
        if (!rc)
            rc = jn_buf_put_be64(b, bits);
        break;
    }
    case JSON_TRUE:
    case JSON_FALSE:
        rc = jn_amqp_put_bool(b, key, json_is_true(v));
        break;
    default:
        rc = put_key_type(b, key, 'V');
        break;
    }
    if (rc)
        b->len = s;
    return rc;
}

int jn_amqp_put_json(jn_buf_t *b, const char *key, const json_t *v)
{
    return put_json_depth(b, key, v, JN_AMQP_TABLE_DEPTH_MAX);
}
