/* kafka_int.h - shared state of the Kafka door's files (not a public API). */
#ifndef JN_KAFKA_INT_H
#define JN_KAFKA_INT_H

#include "../../common/list.h"
#include "../../core/auth.h"
#include "../../net/conn.h"
#include "codec.h"
#include "group.h"
#include "kafka.h"
#include "pstate.h"

#define KAFKA_ARENA_MAX (64u << 20)      /* decoded arrays of one request */
#define KAFKA_FETCH_RESPONSE_MAX (64u << 20)
#define KAFKA_OUT_MAX (160u << 20)       /* a connection's queued output */
#define KAFKA_PID_BLOCK 1000             /* producer ids reserved per durable write */
#define KAFKA_PID_TABLE "_kafka_producer_ids"
#define KAFKA_PSTATE_TABLE "_kafka_producer_state" /* producer state snapshots */
#define KAFKA_IDLE_MS 600000

typedef struct kpart kpart_t;

struct jn_kafka {
    jn_kafka_config_t cfg;
    char host[256];       /* advertised */
    jn_broker_t *broker;
    jn_auth_t *auth;
    uv_loop_t *loop;
    jn_net_t *net;
    jn_listener_t *listener;
    jn_kgroups_t *groups;
    bool wake_armed;      /* an append armed the tick at 0: parked fetches look again */
    bool hooked;          /* on_append registered with the broker */
    uv_timer_t tick;      /* group sessions and parked fetch deadlines */
    bool tick_init;
    jn_list_t parked;     /* connections with a parked Fetch */
    int64_t next_pid;     /* next producer id to hand out */
    int64_t pid_limit;    /* first id not yet reserved (the reservation may not be durable yet) */
    uint32_t pid_part;    /* where the latest reservation record is in KAFKA_PID_TABLE: */
    int64_t pid_offset;   /* ids are answered once it is durable */
    kpart_t **seq;        /* (stream, partition) -> idempotent producers' state */
    size_t seq_count;     /* producers tracked over all partitions (capped) */
};

enum kpark {
    KPARK_NONE = 0,
    KPARK_FETCH,
    KPARK_PRODUCE, /* acks=all, waiting for durability */
    KPARK_JOIN,
    KPARK_SYNC,
    KPARK_COMMIT,  /* OffsetCommit, waiting for the offsets log's fsync */
    KPARK_PID,     /* InitProducerId, waiting for its id block's reservation to be durable */
};

enum ksasl {
    KSASL_NONE = 0,
    KSASL_V0_RAW,    /* after SaslHandshake v0: raw tokens follow */
    KSASL_V1,        /* after SaslHandshake v1: SaslAuthenticate follows */
};

typedef struct kprod_wait kprod_wait_t;

typedef struct kconn {
    jn_kafka_t *k;
    jn_conn_t *conn;
    jn_principal_t principal;
    bool authenticated;
    enum ksasl sasl;
    int mech;             /* 1 PLAIN, 2 SCRAM-SHA-256 */
    /* SCRAM state between the two client messages. */
    char *scram_auth;     /* client-first-bare "," server-first */
    char scram_nonce[128];
    char scram_user[JN_NAME_MAX + 1];
    uint8_t stored_key[32], server_key[32];
    /* The request in progress when it must wait (one at a time, as Kafka
     * serves a connection: responses stay in request order). Its frame
     * stays unconsumed in the paused input buffer; views point into it. */
    enum kpark park;
    bool in_dispatch;     /* inside the handler of the current request */
    jn_kafka_header_t hdr;
    size_t frame_len;
    jn_karena_t arena;
    uint64_t req[JN_KAFKA_REQ_MAX / 8];
    int64_t deadline_ms;  /* parked fetch: answer by then (monotonic ms) */
    jn_list_t node;       /* in k->parked while a fetch is parked */
    kprod_wait_t *waits;  /* parked produce: per-partition results */
    int32_t nwaits;
    int32_t waits_left;
    jn_durable_waiter_t commit_wait; /* parked OffsetCommit: the commits' fsync */
    int16_t *commit_errs;            /* parked OffsetCommit: per-partition errors (arena) */
    jn_durable_waiter_t pid_wait;    /* parked InitProducerId: the reservation's fsync */
    int64_t pid;                     /* parked InitProducerId: the id to answer with */
} kconn_t;

/* Monotonic milliseconds. */
int64_t jn__kafka_now(void);

/* Response framing: begin writes the size placeholder and the response
 * header; end patches the size, or drops the response and aborts the
 * connection when the writer failed. */
void jn__kafka_begin(kconn_t *kc, jn_kwriter_t *w, size_t *mark);
/* The same header into |b| (from its current end, which must be 0): for
 * responses sent in parts (Fetch with file ranges). */
void jn__kafka_begin_buf(kconn_t *kc, jn_kwriter_t *w, jn_buf_t *b);
void jn__kafka_end(kconn_t *kc, jn_kwriter_t *w, size_t mark);
/* Parks the current Fetch until data arrives or |deadline| (monotonic ms). */
void jn__kafka_fetch_park(kconn_t *kc, int64_t deadline);
/* Records were appended (the broker's append hook): parked fetches look
 * again on the next loop iteration, never from inside the append. */
void jn__kafka_wake(jn_kafka_t *k);
/* Ends a parked request: consumes its frame, resumes reading. */
void jn__kafka_unpark(kconn_t *kc);
/* Authorization helpers. */
bool jn__kafka_may(kconn_t *kc, enum jn_perm perm, const char *topic, size_t len);
bool jn__kafka_may_admin(kconn_t *kc, const char *topic);
/* The stream named |name|, created when |create| and allowed. NULL with
 * *err a Kafka error code otherwise. */
jn_stream_t *jn__kafka_topic(kconn_t *kc, jn_kstr_t name, bool create, int16_t *err);
/* Deterministic topic id of a stream name (Metadata v10+, DeleteTopics v6). */
void jn__kafka_topic_id(const char *name, uint8_t id[16]);
/* Whether a stream is internal to the door (hidden from listings). */
bool jn__kafka_hidden(const char *name);
/* Copies a view to a NUL-terminated string in |buf| (truncating). */
const char *jn__kafka_cstr(jn_kstr_t s, char *buf, size_t n);

/* Handlers: each writes its response (or parks). */
void jn__kafka_metadata(kconn_t *kc, const jn_kafka_metadata_req_t *req);
void jn__kafka_produce(kconn_t *kc, jn_kafka_produce_req_t *req);
void jn__kafka_fetch(kconn_t *kc, const jn_kafka_fetch_req_t *req, bool final);
void jn__kafka_list_offsets(kconn_t *kc, const jn_kafka_list_offsets_req_t *req);
void jn__kafka_init_producer_id(kconn_t *kc, const jn_kafka_init_producer_id_req_t *req);
void jn__kafka_produce_cancel(kconn_t *kc);
/* The connection closes: a parked InitProducerId's waiter must not fire. */
void jn__kafka_init_producer_id_cancel(kconn_t *kc);
/* The connection closes: a parked OffsetCommit's waiter must not fire. */
void jn__kafka_offset_commit_cancel(kconn_t *kc);
/* The door closes: snapshots the producer state of every partition loaded
 * (graceful shutdown; the broker is still open), then frees it all. */
void jn__kafka_seq_free(jn_kafka_t *k);

void jn__kafka_find_coordinator(kconn_t *kc, const jn_kafka_find_coordinator_req_t *req);
void jn__kafka_join_group(kconn_t *kc, const jn_kafka_join_group_req_t *req);
void jn__kafka_sync_group(kconn_t *kc, const jn_kafka_sync_group_req_t *req);
void jn__kafka_heartbeat(kconn_t *kc, const jn_kafka_heartbeat_req_t *req);
void jn__kafka_leave_group(kconn_t *kc, const jn_kafka_leave_group_req_t *req);
void jn__kafka_offset_commit(kconn_t *kc, const jn_kafka_offset_commit_req_t *req);
void jn__kafka_offset_fetch(kconn_t *kc, const jn_kafka_offset_fetch_req_t *req);
void jn__kafka_describe_groups(kconn_t *kc, const jn_kafka_describe_groups_req_t *req);
void jn__kafka_list_groups(kconn_t *kc, const jn_kafka_list_groups_req_t *req);
void jn__kafka_on_join(void *waiter, const jn_kgroup_join_result_t *res, void *arg);
void jn__kafka_on_sync(void *waiter, int16_t error, const uint8_t *assignment, size_t len, void *arg);

void jn__kafka_api_versions(kconn_t *kc, int16_t version_for_error);
void jn__kafka_create_topics(kconn_t *kc, const jn_kafka_create_topics_req_t *req);
void jn__kafka_delete_topics(kconn_t *kc, const jn_kafka_delete_topics_req_t *req);
void jn__kafka_create_partitions(kconn_t *kc, const jn_kafka_create_partitions_req_t *req);
void jn__kafka_describe_configs(kconn_t *kc, const jn_kafka_describe_configs_req_t *req);

void jn__kafka_sasl_handshake(kconn_t *kc, const jn_kafka_sasl_handshake_req_t *req);
void jn__kafka_sasl_authenticate(kconn_t *kc, const jn_kafka_sasl_authenticate_req_t *req);
/* A raw token after SaslHandshake v0. */
void jn__kafka_sasl_raw(kconn_t *kc, const uint8_t *p, size_t len);

#endif
