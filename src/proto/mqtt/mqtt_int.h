/* mqtt_int.h - the MQTT door's internal state, shared by its files.
 *
 * Two levels of state:
 *   jn_mqtt_session_t (session.c)  one network connection speaking MQTT:
 *       decode state, keep alive, topic aliases, durability waiters.
 *   mqtt_state_t (state.c)         one client id's MQTT session: its
 *       subscriptions (broker cursors), the outbound in-flight window,
 *       the inbound QoS 2 packet ids, the will. Lives on after the
 *       connection when its expiry is > 0 (persistent), and is saved in
 *       the internal table "__mqtt_sessions" so that it survives restarts.
 * One file per packet direction handles the packets (handle_*.c).
 */
#ifndef JN_MQTT_INT_H
#define JN_MQTT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../../common/list.h"
#include "../../common/pool.h"
#include "../../core/auth.h"
#include "codec.h"
#include "mqtt.h"

#define MQTT_SESSIONS_TABLE "__mqtt_sessions"
#define MQTT_RETAINED_TABLE "__mqtt_retained"
#define MQTT_CLIENT_ID_MAX 256    /* bytes of a client id we accept */
#define MQTT_CONNECT_TIMEOUT_MS 10000
#define MQTT_SUBS_MAX 1024        /* subscriptions per session */
#define MQTT_HDR_MAX 64           /* headers of one record (JN_BATCH_MAX_HEADERS) */
/* Input cap of a new TCP connection, raised to the packet limit once a
 * read fills it: an idle device's CONNECT and PINGREQs fit, so its input
 * buffer stays small (the connection layer starts at 8 KiB otherwise). */
#define MQTT_IN_FIRST 256
#define MQTT_ID_INLINE 40         /* client ids shorter than this live inside the state (192-byte pool objects) */
#define MQTT_SUB_INLINE 40        /* filters shorter than this live inside the msub (128-byte pool objects) */
#define MQTT_VTOPIC_MAX 64        /* longest topic remembered as valid (session.vtopic) */

/* Reserved record headers (docs/mqtt.md "Mapping to records"). */
#define MQTT_H_CTYPE "content-type"
#define MQTT_H_FORMAT "mqtt-payload-format"
#define MQTT_H_RESPONSE "mqtt-response-topic"
#define MQTT_H_CORREL "mqtt-correlation-data"
#define MQTT_H_EXPIRY "mqtt-message-expiry"
#define MQTT_H_RETAIN "mqtt-retain"
/* QoS of the PUBLISH, one byte "0" or "1", written only below 2: a record
 * without it (QoS 2, or from another door) goes out at the granted QoS. */
#define MQTT_H_QOS ":mqtt-qos"

typedef struct mqtt_state mqtt_state_t;
typedef struct mqtt_share mqtt_share_t;
typedef struct mqtt_retained mqtt_retained_t;

/* One subscription of a session: 88 bytes, from the door's msub_pool with
 * MQTT_SUB_INLINE bytes after it for the filter (idle memory: a device
 * keeps its subscriptions as long as it stays connected). */
typedef struct mqtt_msub {
    jn_list_t node;          /* in state->subs */
    jn_list_t share_node;    /* in share->members */
    mqtt_state_t *st;
    mqtt_share_t *share;     /* shared subscription, or NULL */
    jn_sub_t *sub;           /* the broker cursor (NULL for shared, or offline) */
    char *full;              /* as subscribed (with "$share/..."), NUL-terminated:
                              * inline after the struct when short, else malloc'd */
    uint32_t subno;          /* stable number: consumer group "mqtt/<id>/<n>" */
    uint32_t sub_id;         /* subscription identifier, 0 = none */
    uint16_t flen;           /* bytes of full (an MQTT string: at most 65535) */
    uint16_t foff;           /* the filter without "$share/<group>/" starts at full + foff */
    uint8_t qos;
    bool no_local, rap;
    uint8_t rh;
    bool blocked;            /* the cursor refused a record: resume on room */
} mqtt_msub_t;

/* The filter of |ms| without "$share/<group>/", NUL-terminated. */
static inline const char *jn__mqtt_msub_filter(const mqtt_msub_t *ms)
{
    return ms->full + ms->foff;
}

/* A shared subscription: one cursor, many members (competing consumers). */
struct mqtt_share {
    jn_list_t node;          /* in door->shares */
    jn_mqtt_t *m;
    char *key;               /* "<group>/<filter>" */
    char *filter;
    char *group;             /* consumer group of its positions */
    jn_sub_t *sub;
    jn_list_t members;       /* mqtt_msub_t.share_node */
    size_t nmembers;
    jn_list_t *next;         /* round-robin position in members */
    bool blocked;
    bool dirty;              /* positions to save */
    bool reopen;             /* a member left with unacked records */
};

/* One outbound QoS>0 message in flight, slot[pid % cap]. A slot with
 * |stream| NULL is a retained message sent at SUBSCRIBE: it keeps the
 * exact message it sent (one reference), so that a reconnect or a restart
 * resends it with DUP and its packet id even after the topic's retained
 * message was replaced or cleared. */
typedef struct mqtt_slot {
    uint16_t pid;            /* 0 = free */
    uint8_t qos;
    uint8_t state;           /* 0 waiting PUBACK/PUBREC, 1 waiting PUBCOMP */
    bool stale;              /* from before a reconnect: resend with DUP */
    mqtt_msub_t *msub;       /* the subscription it was sent for */
    mqtt_share_t *share;     /* shared subscription deliveries only */
    jn_stream_t *stream;     /* NULL: not from a cursor (retained) */
    uint32_t partition;
    union {
        int64_t offset;      /* from a cursor: the record's offset */
        mqtt_retained_t *ret; /* retained (|stream| NULL): the message sent,
                              * one reference; NULL once past PUBREC */
    };
} mqtt_slot_t;

/* A partition that a resumed cursor reads again (mqtt_state_t.marks).
 * Every record of |msub| in |stream|/|partition| below |upto| was sent
 * before the reconnect or restart: the one with a stale slot goes out
 * again with DUP and its packet id, the others (acknowledged, or QoS 2
 * waiting for PUBCOMP) are skipped. Dropped once the cursor reaches
 * |upto|. */
typedef struct mqtt_mark {
    mqtt_msub_t *msub;
    jn_stream_t *stream;
    uint32_t partition;
    int64_t upto;
} mqtt_mark_t;
#define MQTT_MARKS_MAX 4096       /* marks of one session */

/* A retained message owed to a subscription since its SUBSCRIBE, not
 * sent yet for want of a window slot or output room (mqtt_pending_t). */
typedef struct mqtt_pend {
    mqtt_retained_t *ret;    /* one reference */
    mqtt_msub_t *msub;       /* its QoS and identifier apply when it goes */
} mqtt_pend_t;

/* The pending retained deliveries of a state, oldest first: a ring that
 * doubles up to MQTT_PENDING_MAX entries, allocated when the first one
 * must wait and freed once empty (an idle state has none). In memory
 * only: not in the saved session. */
typedef struct mqtt_pending {
    uint32_t head, n, cap;
    mqtt_pend_t v[];
} mqtt_pending_t;
#define MQTT_PENDING_MAX 100000   /* per session; beyond it: QoS 0 at once */

/* The will, copied out of the CONNECT. */
typedef struct mqtt_will {
    mqtt_state_t *owner;     /* the state whose saved copy holds it, or NULL */
    char *topic;
    uint8_t *payload;
    size_t payload_len;
    uint8_t qos;
    bool retain;
    uint32_t delay;          /* seconds */
    int64_t at;              /* wall-clock ms it goes out at; 0 = no delayed will pending */
    jn_buf_t headers;        /* serialized headers (see will_headers) */
} mqtt_will_t;

/* Pointers first, then the small fields packed: 152 bytes, and the pool
 * object adds MQTT_ID_INLINE bytes for the client id (idle memory). */
struct mqtt_state {
    jn_list_t node;          /* in door->states */
    mqtt_state_t *hnext;     /* hash chain */
    jn_mqtt_t *m;
    char *client_id;         /* inline after the struct when short (state.c) */
    jn_mqtt_session_t *sess; /* the connection, or NULL while offline */
    int64_t offline_since;   /* wall-clock ms, when offline */
    jn_list_t subs;          /* mqtt_msub_t */
    mqtt_slot_t *slots;      /* outbound window */
    mqtt_mark_t *marks;      /* partitions read again after a reconnect */
    uint16_t *q2;            /* inbound QoS 2 packet ids received and not yet released */
    mqtt_will_t *will;       /* its due time in will->at */
    mqtt_pending_t *pending; /* retained messages waiting for room, or NULL */
    uint64_t saved_hash;     /* of the saved JSON: an unchanged session is not written again */
    uint32_t expiry;         /* seconds; 0 = ends with the connection */
    uint32_t next_subno;
    uint16_t nsubs;          /* at most MQTT_SUBS_MAX */
    uint16_t cap;            /* slots allocated */
    uint16_t window;         /* client's Receive Maximum (capped) */
    uint16_t inflight;
    uint16_t next_pid;
    uint16_t nstale;         /* slots from before a reconnect */
    uint16_t nmarks, capmarks;
    uint16_t nq2, capq2;
    uint8_t version;
    bool dirty;              /* positions and in-flight state to save */
    bool saved;              /* present in the sessions table */
};

/* A retained message, in memory (and in MQTT_RETAINED_TABLE unless $SYS).
 * Reference counted: the table holds one reference while it is the
 * topic's current message, and each in-flight slot that sent it holds
 * one (jn__mqtt_retained_ref/unref); replacing or clearing the topic only
 * drops the table's. */
struct mqtt_retained {
    struct mqtt_retained *next; /* hash chain (meaningless once out of the table) */
    char *topic;
    uint64_t hash;           /* jn_fnv1a of blob: names it in a saved session */
    uint32_t refs;
    uint8_t qos;
    bool sys;                /* $SYS: not persisted */
    size_t len;              /* of blob */
    uint8_t blob[];          /* serialized: see retained.c */
};

/* A QoS 1/2 publish waiting for durability before its PUBACK/PUBREC. */
typedef struct mqtt_waiter {
    jn_durable_waiter_t w;   /* first: the callback casts back */
    jn_list_t node;          /* in session->waiters */
    jn_mqtt_session_t *sess;
    uint16_t pid;
    uint8_t qos;
} mqtt_waiter_t;

enum mqtt_phase { PH_CONNECT = 0, PH_ACTIVE, PH_CLOSING };

/* One per connected client, 112 bytes: the small fields are packed
 * together (docs/mqtt.md, memory per idle connection). */
struct jn_mqtt_session {
    jn_list_t node;          /* in door->sessions */
    jn_mqtt_t *m;
    const jn_mqtt_transport_t *t;
    void *tctx;
    mqtt_state_t *st;        /* after CONNECT */
    jn_principal_t *principal; /* &door->anonymous, or owned (a user's); NULL before CONNECT */
    char **aliases;          /* inbound topic aliases 1..topic_alias_max */
    /* The last topic published here that passed jn_subject_validate (a
     * device publishes to the same topic again and again): MQTT_VTOPIC_MAX
     * bytes allocated on the first publish, |vtlen| 0 when empty. */
    char *vtopic;
    jn_list_t waiters;       /* mqtt_waiter_t */
    uint32_t max_out;        /* client's Maximum Packet Size, 0 = none */
    uint16_t keep_alive;     /* seconds in effect */
    uint16_t recv_max_in;    /* our Receive Maximum */
    uint16_t in_unacked;     /* inbound QoS>0 not yet acknowledged */
    uint8_t phase;           /* enum mqtt_phase */
    uint8_t version;         /* 0 until CONNECT */
    uint8_t vtlen;
    bool loopback;
    bool graceful;           /* DISCONNECT 0x00 received: no will */
    bool will_anyway;        /* DISCONNECT 0x04 */
    bool in_full;            /* TCP: the input cap was raised from MQTT_IN_FIRST (mqtt.c) */
};

typedef struct mqtt_sys_stats {
    jn_counter_t *c_in, *c_out;
    jn_gauge_t *g_conns;
} mqtt_sys_stats_t;

struct jn_mqtt {
    jn_broker_t *b;
    jn_net_t *net;
    jn_mqtt_config_t cfg;
    char *cfg_strings[5];    /* owned copies of the config's strings */
    jn_listener_t *lst, *tls;
    jn_list_t sessions;      /* jn_mqtt_session_t, connected or not */
    jn_list_t states;        /* mqtt_state_t */
    mqtt_state_t **htab;     /* client id -> state */
    size_t hcap, nstates;
    jn_list_t shares;
    mqtt_retained_t **rtab;  /* topic -> retained */
    size_t rcap, nretained;
    size_t connected;
    uint64_t received, sent, dropped;
    int64_t started_ms;
    uv_timer_t timer;        /* 1 s: commits, expiry, wills */
    bool timer_on;
    int64_t next_sys_ms;
    mqtt_sys_stats_t stats;
    /* the state publishing right now (No Local for live deliveries) */
    mqtt_state_t *publishing;
    jn_buf_t scratch;        /* table values, retained blobs */
    jn_buf_t wsout;          /* one outbound packet of a WebSocket session (ws_transport.c) */
    jn_principal_t anonymous; /* shared by the sessions without a user name */
    bool freeing;
    uint64_t idseq;          /* assigned client ids */
    /* Sessions and states live as long as their clients: kept out of the
     * malloc heap, so buffers freed around them leave no holes (pool.h). */
    jn_pool_t sess_pool;     /* jn_mqtt_session_t */
    jn_pool_t state_pool;    /* mqtt_state_t + MQTT_ID_INLINE bytes of client id */
    jn_pool_t msub_pool;     /* mqtt_msub_t + MQTT_SUB_INLINE bytes of filter */
};

/* ---- door (mqtt.c) ---- */
int64_t jn__mqtt_now(const jn_mqtt_t *m);

/* ---- state (state.c) ---- */
mqtt_state_t *jn__mqtt_state_find(jn_mqtt_t *m, const char *id, size_t len);
mqtt_state_t *jn__mqtt_state_new(jn_mqtt_t *m, const char *id, size_t len);
/* Ends the session: closes cursors, forgets positions and the saved copy. */
void jn__mqtt_state_end(mqtt_state_t *st);
/* The connection went away: marks what the cursors sent, makes the
 * in-flight slots stale, commits positions, saves the session, closes
 * cursors. Sets offline_since. */
void jn__mqtt_state_offline(mqtt_state_t *st);
/* A connection took the state: reopen cursors from saved positions. */
int jn__mqtt_state_online(mqtt_state_t *st);
/* Writes the session to MQTT_SESSIONS_TABLE when it is kept (expiry > 0,
 * or a will to publish after a restart), unless the JSON is the one saved
 * last; otherwise deletes the saved copy. Returns 0, JN_ENOMEM or the
 * table's error (logged). */
int jn__mqtt_state_save(mqtt_state_t *st);
/* The saved JSON of |st| (format at the top of state.c), NUL-terminated,
 * malloc'd, or NULL (JN_ENOMEM). */
char *jn__mqtt_state_encode(mqtt_state_t *st);
/* Fills a state just made by jn__mqtt_state_new from the saved JSON |txt|
 * (|len| bytes): subscriptions (closed cursors), stale in-flight slots,
 * marks, inbound QoS 2 packet ids, the will and its due time. Slots whose
 * stream or subscription is gone are dropped. |now| is the wall clock,
 * used as the stop time when the server did not stop cleanly. Returns 0,
 * JN_EPROTO (not a saved session) or JN_ENOMEM. */
int jn__mqtt_state_decode(mqtt_state_t *st, const char *txt, size_t len, int64_t now);
void jn__mqtt_state_commit(mqtt_state_t *st);
int jn__mqtt_states_load(jn_mqtt_t *m);
void jn__mqtt_group_name(char *out, size_t cap, const char *prefix, const char *a, const char *b, uint32_t n);
mqtt_msub_t *jn__mqtt_msub_find(mqtt_state_t *st, const char *full, size_t len);
/* A new subscription of |st| to |full| (|len| bytes, at most 65535) whose
 * filter starts at |full| + |foff|, linked at the end of st->subs (nsubs
 * counted) with no cursor; the caller sets the options. NULL: JN_ENOMEM. */
mqtt_msub_t *jn__mqtt_msub_new(mqtt_state_t *st, const char *full, size_t len, size_t foff);
int jn__mqtt_msub_open(mqtt_msub_t *ms, bool resume);
void jn__mqtt_msub_free(mqtt_msub_t *ms, bool forget);
/* Room again (an ack, a drain): resends the stale retained messages that
 * had no room at reconnect, sends the pending ones (retained.c) and
 * resumes blocked cursors. */
void jn__mqtt_state_resume(mqtt_state_t *st);
/* The mark of |ms| in |s|/|partition|, or NULL. */
mqtt_mark_t *jn__mqtt_mark_find(mqtt_state_t *st, const mqtt_msub_t *ms, const jn_stream_t *s, uint32_t partition);
/* Forgets |mk| (the cursor reached its end); other marks may move. */
void jn__mqtt_mark_drop(mqtt_state_t *st, mqtt_mark_t *mk);
int jn__mqtt_slots_ensure(mqtt_state_t *st);
void jn__mqtt_will_free(mqtt_will_t *w);
/* Publishes |w|. When it is its owner's current will, the owner's saved
 * copy is written again without it, so that a restart does not publish
 * it twice. The caller frees |w|. */
void jn__mqtt_will_publish(jn_mqtt_t *m, mqtt_will_t *w);

/* ---- delivery (deliver.c) ---- */
int jn__mqtt_deliver(jn_sub_t *sub, const jn_delivery_t *d, void *arg);
int jn__mqtt_share_deliver(jn_sub_t *sub, const jn_delivery_t *d, void *arg);
/* Encodes and queues one PUBLISH of |rec| on |subject| to |s|. |pid| 0
 * for QoS 0. Returns 0, JN_EAGAIN (no room), JN_ETOOBIG (never fits:
 * skip). */
int jn__mqtt_send_record(jn_mqtt_session_t *s, const char *subject, size_t slen, const jn_record_t *rec,
                         uint8_t qos, uint16_t pid, bool retain, bool dup, uint32_t sub_id);
/* The absolute expiry (wall-clock ms) in |rec|'s MQTT_H_EXPIRY header, or
 * 0 when it has none or it is not all digits. */
int64_t jn__mqtt_record_expiry(const jn_record_t *rec);
/* Whether |rec| has an expiry and it has passed. */
bool jn__mqtt_record_expired(jn_mqtt_t *m, const jn_record_t *rec);
bool jn__mqtt_has_room(jn_mqtt_session_t *s);
mqtt_slot_t *jn__mqtt_slot_take(mqtt_state_t *st);
/* Frees |sl| (nothing when already free), dropping the reference to the
 * retained message it holds. */
void jn__mqtt_slot_release(mqtt_state_t *st, mqtt_slot_t *sl);
mqtt_share_t *jn__mqtt_share_get(jn_mqtt_t *m, const char *group, size_t glen, const char *filter);
void jn__mqtt_share_leave(mqtt_msub_t *ms);
void jn__mqtt_shares_tick(jn_mqtt_t *m);

/* ---- retained (retained.c) ---- */
int jn__mqtt_retained_set(jn_mqtt_t *m, const char *topic, size_t tlen, const jn_record_t *rec, uint8_t qos,
                          bool persist);
/* Sends the retained messages matching |ms| (a new or replaced
 * subscription). QoS>0 ones take a window slot each; when no slot is
 * free, the output is above high water, or older ones are still pending,
 * they wait in st->pending (replacing the subscription drops its pending
 * ones first: they are matched again). Beyond MQTT_PENDING_MAX pending,
 * a message goes out at QoS 0 at once, or is dropped when there is no
 * room. */
void jn__mqtt_retained_send(jn_mqtt_session_t *s, mqtt_msub_t *ms);
int jn__mqtt_retained_load(jn_mqtt_t *m);
/* Drops the table's reference of every retained message (those still held
 * by in-flight slots live on until their slots release them). */
void jn__mqtt_retained_free_all(jn_mqtt_t *m);
/* Takes one more reference to |r|; returns |r|. */
mqtt_retained_t *jn__mqtt_retained_ref(mqtt_retained_t *r);
/* Drops one reference to |r| (NULL: nothing); frees it at the last. */
void jn__mqtt_retained_unref(mqtt_retained_t *r);
/* The current retained message of |topic| (|tlen| bytes), or NULL. No
 * reference is taken. */
mqtt_retained_t *jn__mqtt_retained_find(jn_mqtt_t *m, const char *topic, size_t tlen);
/* Sends the pending retained messages of |st| (mqtt_pending_t), oldest
 * first, while it is connected, the output has room and a window slot is
 * free for each QoS>0 one (at min(its QoS, the subscription's)). Expired
 * ones, and ones that never fit, are dropped. Frees the queue once empty. */
void jn__mqtt_pending_drain(mqtt_state_t *st);
/* Drops the pending retained messages of |ms| (NULL: all of them) with
 * their references; frees the queue once empty. */
void jn__mqtt_pending_drop(mqtt_state_t *st, const mqtt_msub_t *ms);
/* Sends the retained message of the stale slot |sl| of |s|'s state again
 * (state 0, |sl->ret| set): its packet id, DUP, RETAIN, its QoS, the
 * subscription identifier of its subscription. An expired message, or one
 * that can never fit the client's Maximum Packet Size, releases the slot
 * instead. Returns 0 (sent or released; the slot is no longer stale) or
 * JN_EAGAIN (no room now: the slot stays stale for the next try). */
int jn__mqtt_retained_resend(jn_mqtt_session_t *s, mqtt_slot_t *sl);
void jn__mqtt_sys_update(jn_mqtt_t *m);

/* ---- session (session.c) ---- */
void jn__mqtt_send_disconnect(jn_mqtt_session_t *s, uint8_t reason);
/* Protocol error: DISCONNECT |reason| in 5.0, then close. */
void jn__mqtt_fail(jn_mqtt_session_t *s, uint8_t reason);
void jn__mqtt_close(jn_mqtt_session_t *s);
int jn__mqtt_out_begin(jn_mqtt_session_t *s, jn_buf_t **b);
void jn__mqtt_out_end(jn_mqtt_session_t *s);
void jn__mqtt_send_ack(jn_mqtt_session_t *s, uint8_t type, uint16_t pid, uint8_t reason);

/* ---- packet handlers (handle_*.c) ---- */
void jn__mqtt_handle_connect(jn_mqtt_session_t *s, const jn_mqtt_connect_t *c);
void jn__mqtt_handle_publish(jn_mqtt_session_t *s, const jn_mqtt_packet_t *p);
void jn__mqtt_handle_subscribe(jn_mqtt_session_t *s, const jn_mqtt_subscribe_t *p);
void jn__mqtt_handle_unsubscribe(jn_mqtt_session_t *s, const jn_mqtt_subscribe_t *p);
void jn__mqtt_handle_ack(jn_mqtt_session_t *s, uint8_t type, const jn_mqtt_ack_t *a);
/* Publishes a record from MQTT fields (PUBLISH and wills). Below QoS 2 it
 * adds the MQTT_H_QOS header after |hdrs|, so |nh| must be < MQTT_HDR_MAX
 * (otherwise the record is stored without it). Retained copies keep the QoS
 * in their blob instead. */
int jn__mqtt_publish_record(jn_mqtt_t *m, mqtt_state_t *from, const char *topic, size_t tlen,
                            const uint8_t *payload, size_t plen, uint8_t qos, bool retain,
                            const jn_header_t *hdrs, size_t nh, jn_publish_result_t *res);

#endif
