/* amqp_int.h - state shared by the AMQP door's files: amqp.c
 * (listeners, connections, the connection class), amqp_channel.c
 * (channels, queue and basic classes, confirms, transactions) and
 * amqp_exchange.c (exchanges, bindings, routing, amq.topic forwarders,
 * dead-lettering, durable definitions).
 */
#ifndef JN_AMQP_INT_H
#define JN_AMQP_INT_H

#include "amqp.h"

#include "../../common/buf.h"
#include "../../common/list.h"
#include "../../core/auth.h"
#include "../../core/queue.h"
#include "../../net/conn.h"
#include "codec.h"

#define AMQP_NAME_MAX 255
#define AMQP_LISTENERS_MAX 4
#define AMQP_ROUTE_MAX 1024 /* queues one publish may reach */

typedef struct amqp_conn amqp_conn_t;
typedef struct amqp_chan amqp_chan_t;
typedef struct amqp_exchange amqp_exchange_t;
typedef struct amqp_binding amqp_binding_t;

enum amqp_xtype { XT_DIRECT, XT_FANOUT, XT_TOPIC, XT_HEADERS };

/* A binding: source exchange -> queue or exchange. */
struct amqp_binding {
    amqp_binding_t *next;
    bool to_exchange;
    char dest[AMQP_NAME_MAX + 1];
    char key[AMQP_NAME_MAX + 1];
    uint8_t *args;            /* raw field table (owned), may be NULL */
    uint32_t args_len;
    struct amqp_forwarder *fw; /* amq.topic -> queue: the broker subscription */
    bool stored;              /* written to the metadata log (durable) */
    char stored_key[32];      /* its metadata key, "amqp/b/<hash>" */
};

struct amqp_exchange {
    amqp_exchange_t *next;
    char name[AMQP_NAME_MAX + 1];
    enum amqp_xtype type;
    bool durable, auto_delete, internal, builtin;
    bool had_binding;
    char *alternate;          /* alternate-exchange, owned */
    uint8_t *args;            /* declare arguments, owned (for equivalence) */
    uint32_t args_len;
    amqp_binding_t *bindings;
};

/* An exclusive queue and the connection that owns it. */
typedef struct amqp_owned {
    jn_list_t node;
    amqp_conn_t *owner;
    char name[AMQP_NAME_MAX + 1];
} amqp_owned_t;

struct jn_amqp {
    jn_broker_t *broker;
    uv_loop_t *loop;
    jn_amqp_config_t cfg;
    jn_net_t *net;
    jn_listener_t *listeners[AMQP_LISTENERS_MAX];
    int nlisteners;
    jn_list_t conns;          /* amqp_conn_t.node */
    jn_list_t owned;          /* amqp_owned_t */
    jn_list_t forwarders;     /* struct amqp_forwarder */
    amqp_exchange_t *exchanges;
    struct amqp_timers *timers; /* forwarder flush/commit; freed by its close callback */
    uint64_t seq;             /* for generated names */
    jn_buf_t scratch;         /* message conversion */
};

/* ---- connections (amqp.c) ---- */

enum conn_state { CS_HEADER, CS_START_OK, CS_TUNE_OK, CS_OPEN, CS_RUNNING, CS_CLOSING };

struct amqp_conn {
    jn_list_t node;
    jn_amqp_t *door;
    jn_conn_t *conn;
    enum conn_state state;
    uint32_t frame_max;
    uint16_t channel_max;
    uint16_t heartbeat;
    int64_t last_recv_ms;
    jn_principal_t principal;
    bool cap_cancel_notify;
    amqp_chan_t **chans;      /* indexed by channel number, grown on demand */
    uint32_t nchans;
};

/* Queues one method frame; on failure the connection is aborted. */
void jn__amqp_send(amqp_conn_t *c, uint16_t ch, uint32_t id, const jn_amqp_arg_t *args, size_t n);
/* Raises a connection exception: Connection.Close, then only Close-Ok. */
void jn__amqp_conn_error(amqp_conn_t *c, uint16_t code, const char *text, uint32_t method);
/* Whether the connection takes more output now. */
bool jn__amqp_conn_writable(amqp_conn_t *c);
int64_t jn__amqp_now(void);

/* ---- channels (amqp_channel.c) ---- */

amqp_chan_t *jn__amqp_chan_new(amqp_conn_t *c, uint16_t id);
/* Frees the channel: consumers cancelled, unacked requeued, waiters cancelled. */
void jn__amqp_chan_free(amqp_chan_t *ch);
bool jn__amqp_chan_closing(const amqp_chan_t *ch);
/* The channel is finished (Close-Ok sent or received): drop and free it. */
void jn__amqp_chan_done(amqp_conn_t *c, uint16_t id);
/* Handles one frame for an open channel (methods other than channel.open). */
void jn__amqp_chan_frame(amqp_chan_t *ch, const jn_amqp_frame_t *f);
/* Output drained: consumers that were refused resume. */
void jn__amqp_chan_drain(amqp_chan_t *ch);
/* Deletes the exclusive queues of |c| (connection gone). */
void jn__amqp_release_owned(amqp_conn_t *c);

/* ---- exchanges (amqp_exchange.c) ---- */

int jn__amqp_exchanges_init(jn_amqp_t *a);
void jn__amqp_exchanges_free(jn_amqp_t *a);
amqp_exchange_t *jn__amqp_exchange_find(jn_amqp_t *a, const uint8_t *name, size_t len);
/* Declares or checks an exchange. Returns 0 or an AMQP reply code
 * (with |text| set, 128 bytes). */
int jn__amqp_exchange_declare(jn_amqp_t *a, const jn_amqp_method_t *m, char *text, size_t tlen);
int jn__amqp_exchange_delete(jn_amqp_t *a, const jn_amqp_method_t *m, char *text, size_t tlen);
/* Adds/removes a binding (queue.bind/unbind, exchange.bind/unbind). */
int jn__amqp_bind(jn_amqp_t *a, bool to_exchange, const jn_amqp_str_t *dest, const jn_amqp_str_t *src,
                  const jn_amqp_str_t *key, const jn_amqp_str_t *args, bool unbind, const jn_principal_t *p,
                  char *text, size_t tlen);
/* Drops every binding to queue |name| (queue deleted). */
void jn__amqp_unbind_queue(jn_amqp_t *a, const char *name);

/* A message to route: the exchange, routing key, decoded properties and
 * body, and the record built from them. */
typedef struct amqp_msg {
    const char *exchange;
    size_t exchange_len;
    const char *key;
    size_t key_len;
    const jn_amqp_props_t *props;
    const uint8_t *body;
    size_t body_len;
    bool dead_lettered; /* skip queues that would close a dead-letter cycle */
} amqp_msg_t;

/* A durable queue that took a message, and the message's id there. */
typedef struct amqp_wait {
    jn_queue_t *q;
    int64_t id;
} amqp_wait_t;

#define AMQP_WAIT_INLINE 8

/* Result of routing one publish; jn__amqp_route_result_free releases it. */
typedef struct amqp_route_result {
    int routed;            /* queues (or subject-space bindings) that took it */
    int rejected;          /* queues that refused it (reject-publish) */
    int errors;
    /* for confirms: what to wait on - every durable queue that took it */
    int nwait, wait_cap;
    amqp_wait_t *wait;     /* wait_inline, or the heap past AMQP_WAIT_INLINE */
    amqp_wait_t wait_inline[AMQP_WAIT_INLINE];
    jn_stream_t *wait_stream;
    uint32_t wait_part;
    int64_t wait_off;
} amqp_route_result_t;

void jn__amqp_route_result_free(amqp_route_result_t *res);

/* Routes |m| through exchange |x| (which exists). Returns 0 or an AMQP
 * reply code (403 publish to a subject not allowed). */
int jn__amqp_publish(jn_amqp_t *a, amqp_exchange_t *x, const amqp_msg_t *m, const jn_principal_t *p,
                     amqp_route_result_t *res);

/* ACLs beyond amq.topic (docs/amqp.md): AMQP resources are checked as
 * subjects of their own, names percent-encoded ('%', '/', '+', '#') so
 * that each is one level:
 *   amqp/exchange/<exchange>[/<routing key, '.' -> '/'>]  (the default
 *       exchange is "amq.default")
 *   amqp/queue/<queue>
 * Publishing through an exchange other than amq.topic needs publish on
 * the first (with the key); declaring or deleting an exchange, or binding
 * one as a destination, publish on it without a key. Declaring (not
 * passively), deleting, purging and binding a queue need publish on the
 * second; consuming and getting need subscribe on it. */
bool jn__amqp_allowed_exchange(jn_amqp_t *a, const jn_principal_t *p, const char *exchange, size_t elen,
                               const char *key, size_t klen, bool with_key);
bool jn__amqp_allowed_queue(jn_amqp_t *a, const jn_principal_t *p, enum jn_perm perm, const char *queue);

/* Whether an expiration property is a TTL the door enforces: 1 to 15
 * decimal digits (milliseconds), as RabbitMQ accepts (it refuses others
 * with 406 PRECONDITION_FAILED). */
bool jn__amqp_expiration_ok(const jn_amqp_str_t *e);

/* Converts a delivered record back to properties (headers table built
 * into |tbl|); fills exchange/routing key views from its headers. */
void jn__amqp_record_props(const jn_record_t *rec, jn_amqp_props_t *pr, jn_buf_t *tbl, jn_amqp_str_t *exchange,
                           jn_amqp_str_t *key);

#endif
