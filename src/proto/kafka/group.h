/* group.h - the Kafka consumer-group coordinator: membership, generations
 * and the rebalance protocol (JoinGroup/SyncGroup/Heartbeat/LeaveGroup),
 * as a pure state machine over explicit time.
 *
 * States, as Kafka's GroupCoordinator names them:
 *   Empty               no members (offsets may still be committed)
 *   PreparingRebalance  waiting for every known member to (re)join, at most
 *                       the largest rebalance timeout of the members
 *   CompletingRebalance joined: the leader computes the assignment and
 *                       sends it with SyncGroup
 *   Stable              assignment distributed; heartbeats keep members alive
 *   Dead                the group was removed (not kept in the table)
 *
 * Nothing here does I/O or reads a clock: every call gets |now_ms|, and
 * jn_kgroups_tick expires sessions and rebalance timeouts. Join and sync
 * requests that must wait are held as opaque |waiter| pointers and
 * answered through the callbacks given to jn_kgroups_new, possibly from
 * inside a later call (any call on the table: another member's join,
 * a tick...), possibly before the call that registered them returns.
 * Committed offsets are not kept here (the broker stores them); the
 * coordinator only validates commits (jn_kgroups_commit_check).
 */
#ifndef JN_KAFKA_GROUP_H
#define JN_KAFKA_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum jn_kgroup_state {
    JN_KGROUP_EMPTY = 0,
    JN_KGROUP_PREPARING_REBALANCE,
    JN_KGROUP_COMPLETING_REBALANCE,
    JN_KGROUP_STABLE,
    JN_KGROUP_DEAD,
};

typedef struct jn_kprotocol {
    char *name;
    uint8_t *metadata;
    size_t metadata_len;
} jn_kprotocol_t;

typedef struct jn_kmember jn_kmember_t;
struct jn_kmember {
    jn_kmember_t *next;
    char *id;
    char *instance_id;   /* NULL when none */
    char *client_id;
    char *client_host;
    int32_t session_timeout_ms;
    int32_t rebalance_timeout_ms;
    jn_kprotocol_t *protocols;
    size_t nprotocols;
    uint8_t *assignment; /* from the leader's SyncGroup */
    size_t assignment_len;
    void *join_waiter;   /* a JoinGroup waiting for the rebalance to complete */
    void *sync_waiter;   /* a SyncGroup waiting for the leader's assignment */
    int64_t deadline_ms; /* session expiry */
};

typedef struct jn_kgroup jn_kgroup_t;
struct jn_kgroup {
    jn_kgroup_t *next;
    char *name;
    enum jn_kgroup_state state;
    int32_t generation;
    char *protocol_type;  /* NULL when no members ever joined */
    char *protocol_name;  /* selected at the end of a join round */
    char *leader;         /* member id; NULL when none */
    jn_kmember_t *members;
    size_t nmembers;
    int64_t rebalance_deadline_ms;
    /* Member ids handed out with MEMBER_ID_REQUIRED, not yet joined. */
    struct jn_kpending *pending;
};

typedef struct jn_kgroup_member_info {
    const char *member_id;
    const char *instance_id; /* NULL when none */
    const uint8_t *metadata;
    size_t metadata_len;
} jn_kgroup_member_info_t;

typedef struct jn_kgroup_join_result {
    int16_t error;            /* Kafka error code */
    int32_t generation;       /* -1 on error */
    const char *protocol_type;/* NULL on error */
    const char *protocol_name;/* NULL on error */
    const char *leader;       /* "" on error */
    const char *member_id;    /* the member's id ("" when unknown) */
    const jn_kgroup_member_info_t *members; /* only for the leader */
    size_t nmembers;
} jn_kgroup_join_result_t;

/* Views in |res| are valid during the call only. */
typedef void (*jn_kgroup_join_cb)(void *waiter, const jn_kgroup_join_result_t *res, void *arg);
typedef void (*jn_kgroup_sync_cb)(void *waiter, int16_t error, const uint8_t *assignment, size_t len,
                                  void *arg);

typedef struct jn_kgroups jn_kgroups_t;

typedef struct jn_kgroups_config {
    int32_t min_session_timeout_ms; /* default 1000 */
    int32_t max_session_timeout_ms; /* default 1800000 */
    uint64_t seed;                  /* member ids: random suffix seed */
} jn_kgroups_config_t;

/* A coordinator. NULL on ENOMEM. |cfg| NULL: defaults. */
jn_kgroups_t *jn_kgroups_new(const jn_kgroups_config_t *cfg, jn_kgroup_join_cb on_join, jn_kgroup_sync_cb on_sync,
                             void *arg);
/* Frees everything; waiters are not answered. */
void jn_kgroups_free(jn_kgroups_t *g);

typedef struct jn_kgroup_join_args {
    const char *group;       /* NUL-terminated */
    const char *member_id;   /* "" for a new member */
    const char *instance_id; /* NULL when none */
    const char *client_id;
    const char *client_host;
    int32_t session_timeout_ms;
    int32_t rebalance_timeout_ms;
    const char *protocol_type;
    const jn_kprotocol_t *protocols; /* copied */
    size_t nprotocols;
    bool require_known_member_id;    /* JoinGroup v4+: answer MEMBER_ID_REQUIRED first */
} jn_kgroup_join_args_t;

/* JoinGroup. The answer always comes through on_join(|waiter|), maybe
 * before this returns (errors, MEMBER_ID_REQUIRED, a round that completes
 * at once) or later. Returns 0, or JN_ENOMEM (nothing answered). */
int jn_kgroups_join(jn_kgroups_t *g, const jn_kgroup_join_args_t *a, void *waiter, int64_t now_ms);

typedef struct jn_kgroup_assignment {
    const char *member_id;
    size_t member_len;
    const uint8_t *data;
    size_t len;
} jn_kgroup_assignment_t;

/* SyncGroup. The answer comes through on_sync(|waiter|), now or when the
 * leader's assignment arrives. Returns 0 or JN_ENOMEM. */
int jn_kgroups_sync(jn_kgroups_t *g, const char *group, const char *member_id, int32_t generation,
                    const jn_kgroup_assignment_t *assignments, size_t n, void *waiter, int64_t now_ms);

/* Heartbeat: returns the Kafka error code. */
int16_t jn_kgroups_heartbeat(jn_kgroups_t *g, const char *group, const char *member_id, int32_t generation,
                             int64_t now_ms);
/* LeaveGroup of one member: returns the Kafka error code. */
int16_t jn_kgroups_leave(jn_kgroups_t *g, const char *group, const char *member_id, int64_t now_ms);
/* Whether an OffsetCommit with |member_id|/|generation| is allowed now:
 * returns the Kafka error code (0 to commit). */
int16_t jn_kgroups_commit_check(jn_kgroups_t *g, const char *group, const char *member_id, int32_t generation,
                                int64_t now_ms);
/* Expires members whose session passed and rebalances that timed out. */
void jn_kgroups_tick(jn_kgroups_t *g, int64_t now_ms);
/* Forgets |waiter| (its connection closed): it will not be answered. */
void jn_kgroups_cancel(jn_kgroups_t *g, void *waiter);

/* Lookup and iteration for DescribeGroups/ListGroups (read only). */
jn_kgroup_t *jn_kgroups_find(jn_kgroups_t *g, const char *group);
jn_kgroup_t *jn_kgroups_first(jn_kgroups_t *g);
/* "Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead". */
const char *jn_kgroup_state_name(enum jn_kgroup_state s);
/* The metadata of |m| for the group's selected protocol (NULL, 0 when none). */
const uint8_t *jn_kmember_metadata(const jn_kgroup_t *grp, const jn_kmember_t *m, size_t *len);

#endif
