/* group.c - the consumer-group coordinator state machine (see group.h).
 *
 * Groups and members are short singly linked lists: a coordinator holds a
 * handful of groups of a handful of members, and every operation names one
 * group, so a scan is cheaper than a hash table's upkeep.
 */
#include "group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/error.h"
#include "../../common/hash.h"

typedef struct jn_kpending {
    struct jn_kpending *next;
    char *id;
    int64_t deadline_ms;
} jn_kpending_t;

struct jn_kgroups {
    jn_kgroups_config_t cfg;
    jn_kgroup_t *groups;
    jn_kgroup_join_cb on_join;
    jn_kgroup_sync_cb on_sync;
    void *arg;
    uint64_t seq; /* member id counter */
};

static char *dupstr(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void *dupmem(const void *p, size_t n)
{
    void *d = malloc(n ? n : 1);
    if (d && n)
        memcpy(d, p, n);
    return d;
}

jn_kgroups_t *jn_kgroups_new(const jn_kgroups_config_t *cfg, jn_kgroup_join_cb on_join, jn_kgroup_sync_cb on_sync,
                             void *arg)
{
    jn_kgroups_t *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    if (cfg) {
        g->cfg = *cfg;
    } else {
        g->cfg.min_session_timeout_ms = 1000;
        g->cfg.max_session_timeout_ms = 1800000;
    }
    g->on_join = on_join;
    g->on_sync = on_sync;
    g->arg = arg;
    return g;
}

static void free_protocols(jn_kprotocol_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(p[i].name);
        free(p[i].metadata);
    }
    free(p);
}

static void member_free(jn_kmember_t *m)
{
    free(m->id);
    free(m->instance_id);
    free(m->client_id);
    free(m->client_host);
    free_protocols(m->protocols, m->nprotocols);
    free(m->assignment);
    free(m);
}

static void group_free(jn_kgroup_t *grp)
{
    jn_kmember_t *m = grp->members;
    while (m) {
        jn_kmember_t *n = m->next;
        member_free(m);
        m = n;
    }
    jn_kpending_t *p = grp->pending;
    while (p) {
        jn_kpending_t *n = p->next;
        free(p->id);
        free(p);
        p = n;
    }
    free(grp->name);
    free(grp->protocol_type);
    free(grp->protocol_name);
    free(grp->leader);
    free(grp);
}

void jn_kgroups_free(jn_kgroups_t *g)
{
    if (!g)
        return;
    jn_kgroup_t *grp = g->groups;
    while (grp) {
        jn_kgroup_t *n = grp->next;
        group_free(grp);
        grp = n;
    }
    free(g);
}

const char *jn_kgroup_state_name(enum jn_kgroup_state s)
{
    switch (s) {
    case JN_KGROUP_EMPTY: return "Empty";
    case JN_KGROUP_PREPARING_REBALANCE: return "PreparingRebalance";
    case JN_KGROUP_COMPLETING_REBALANCE: return "CompletingRebalance";
    case JN_KGROUP_STABLE: return "Stable";
    case JN_KGROUP_DEAD: return "Dead";
    }
    return "Unknown";
}

jn_kgroup_t *jn_kgroups_find(jn_kgroups_t *g, const char *group)
{
    for (jn_kgroup_t *grp = g->groups; grp; grp = grp->next)
        if (strcmp(grp->name, group) == 0)
            return grp;
    return NULL;
}

jn_kgroup_t *jn_kgroups_first(jn_kgroups_t *g)
{
    return g->groups;
}

static jn_kmember_t *find_member(jn_kgroup_t *grp, const char *id)
{
    for (jn_kmember_t *m = grp->members; m; m = m->next)
        if (strcmp(m->id, id) == 0)
            return m;
    return NULL;
}

static const jn_kprotocol_t *member_protocol(const jn_kmember_t *m, const char *name)
{
    for (size_t i = 0; i < m->nprotocols; i++)
        if (strcmp(m->protocols[i].name, name) == 0)
            return &m->protocols[i];
    return NULL;
}

const uint8_t *jn_kmember_metadata(const jn_kgroup_t *grp, const jn_kmember_t *m, size_t *len)
{
    *len = 0;
    if (!grp->protocol_name)
        return NULL;
    const jn_kprotocol_t *p = member_protocol(m, grp->protocol_name);
    if (!p)
        return NULL;
    *len = p->metadata_len;
    return p->metadata;
}

static void answer_join_error(jn_kgroups_t *g, void *waiter, int16_t err, const char *member_id)
{
    jn_kgroup_join_result_t res = {
        .error = err, .generation = -1, .leader = "", .member_id = member_id ? member_id : "",
    };
    g->on_join(waiter, &res, g->arg);
}

/* Answers every sync waiter of |grp| with |err| (a rebalance started, or
 * the member left). */
static void fail_syncs(jn_kgroups_t *g, jn_kgroup_t *grp, int16_t err)
{
    for (jn_kmember_t *m = grp->members; m; m = m->next) {
        if (m->sync_waiter) {
            void *w = m->sync_waiter;
            m->sync_waiter = NULL;
            g->on_sync(w, err, NULL, 0, g->arg);
        }
    }
}

static void prepare_rebalance(jn_kgroups_t *g, jn_kgroup_t *grp, int64_t now)
{
    if (grp->state == JN_KGROUP_COMPLETING_REBALANCE)
        fail_syncs(g, grp, 27 /* REBALANCE_IN_PROGRESS */);
    int32_t timeout = 0;
    for (jn_kmember_t *m = grp->members; m; m = m->next)
        if (m->rebalance_timeout_ms > timeout)
            timeout = m->rebalance_timeout_ms;
    grp->state = JN_KGROUP_PREPARING_REBALANCE;
    grp->rebalance_deadline_ms = now + timeout;
}

/* The protocol every member supports, in the leader's order of preference. */
static const char *select_protocol(jn_kgroup_t *grp, const jn_kmember_t *leader)
{
    for (size_t i = 0; i < leader->nprotocols; i++) {
        const char *name = leader->protocols[i].name;
        bool all = true;
        for (jn_kmember_t *m = grp->members; m && all; m = m->next)
            all = member_protocol(m, name) != NULL;
        if (all)
            return name;
    }
    return NULL;
}

static void unlink_member(jn_kgroup_t *grp, jn_kmember_t *dead)
{
    for (jn_kmember_t **pp = &grp->members; *pp; pp = &(*pp)->next) {
        if (*pp == dead) {
            *pp = dead->next;
            grp->nmembers--;
            break;
        }
    }
    if (grp->leader && strcmp(grp->leader, dead->id) == 0) {
        free(grp->leader);
        grp->leader = NULL;
    }
}

/* Ends a join round: members that did not rejoin are dropped, a new
 * generation starts, and every waiting member gets its answer (the
 * leader with the member list). */
static void complete_join(jn_kgroups_t *g, jn_kgroup_t *grp, int64_t now)
{
    jn_kmember_t *m = grp->members;
    while (m) {
        jn_kmember_t *n = m->next;
        if (!m->join_waiter) {
            unlink_member(grp, m);
            member_free(m);
        }
        m = n;
    }
    grp->generation++;
    free(grp->protocol_name);
    grp->protocol_name = NULL;
    if (!grp->members) {
        grp->state = JN_KGROUP_EMPTY;
        free(grp->leader);
        grp->leader = NULL;
        return;
    }
    if (!grp->leader) {
        grp->leader = strdup(grp->members->id);
    }
    jn_kmember_t *leader = grp->leader ? find_member(grp, grp->leader) : NULL;
    if (!leader) {
        leader = grp->members;
        free(grp->leader);
        grp->leader = strdup(leader->id);
    }
    const char *proto = select_protocol(grp, leader);
    grp->protocol_name = dupstr(proto);
    grp->state = JN_KGROUP_COMPLETING_REBALANCE;

    jn_kgroup_member_info_t *infos = calloc(grp->nmembers ? grp->nmembers : 1, sizeof *infos);
    size_t ni = 0;
    for (m = grp->members; m && infos; m = m->next) {
        const jn_kprotocol_t *p = proto ? member_protocol(m, proto) : NULL;
        infos[ni].member_id = m->id;
        infos[ni].instance_id = m->instance_id;
        infos[ni].metadata = p ? p->metadata : NULL;
        infos[ni].metadata_len = p ? p->metadata_len : 0;
        ni++;
    }
    for (m = grp->members; m; m = m->next) {
        void *w = m->join_waiter;
        m->join_waiter = NULL;
        m->deadline_ms = now + m->session_timeout_ms;
        jn_kgroup_join_result_t res = {
            .error = proto && infos ? 0 : 23 /* INCONSISTENT_GROUP_PROTOCOL */,
            .generation = grp->generation,
            .protocol_type = grp->protocol_type,
            .protocol_name = grp->protocol_name,
            .leader = grp->leader ? grp->leader : "",
            .member_id = m->id,
        };
        if (m == leader && infos) {
            res.members = infos;
            res.nmembers = ni;
        }
        g->on_join(w, &res, g->arg);
    }
    free(infos);
}

static void try_complete_join(jn_kgroups_t *g, jn_kgroup_t *grp, int64_t now)
{
    if (grp->state != JN_KGROUP_PREPARING_REBALANCE)
        return;
    for (jn_kmember_t *m = grp->members; m; m = m->next)
        if (!m->join_waiter)
            return;
    complete_join(g, grp, now);
}

/* Removes a member (left or expired) and moves the group on. */
static void remove_member(jn_kgroups_t *g, jn_kgroup_t *grp, jn_kmember_t *m, int64_t now)
{
    void *jw = m->join_waiter, *sw = m->sync_waiter;
    char *id = strdup(m->id);
    unlink_member(grp, m);
    member_free(m);
    if (jw)
        answer_join_error(g, jw, 25 /* UNKNOWN_MEMBER_ID */, id);
    if (sw)
        g->on_sync(sw, 25, NULL, 0, g->arg);
    free(id);
    switch (grp->state) {
    case JN_KGROUP_STABLE:
    case JN_KGROUP_COMPLETING_REBALANCE:
        prepare_rebalance(g, grp, now);
        try_complete_join(g, grp, now);
        break;
    case JN_KGROUP_PREPARING_REBALANCE:
        try_complete_join(g, grp, now);
        break;
    default:
        break;
    }
    if (!grp->members && grp->state != JN_KGROUP_EMPTY) {
        grp->state = JN_KGROUP_EMPTY;
        grp->generation++;
    }
}

static jn_kgroup_t *group_create(jn_kgroups_t *g, const char *name)
{
    jn_kgroup_t *grp = calloc(1, sizeof *grp);
    if (!grp)
        return NULL;
    grp->name = strdup(name);
    if (!grp->name) {
        free(grp);
        return NULL;
    }
    grp->state = JN_KGROUP_EMPTY;
    grp->next = g->groups;
    g->groups = grp;
    return grp;
}

static char *new_member_id(jn_kgroups_t *g, const char *client_id)
{
    uint64_t seq = ++g->seq;
    uint64_t mix[2] = {g->cfg.seed, seq};
    uint64_t h = jn_fnv1a(mix, sizeof mix);
    const char *cid = client_id && *client_id ? client_id : "member";
    size_t n = strlen(cid) + 48;
    char *id = malloc(n);
    if (id)
        snprintf(id, n, "%.200s-%llu-%016llx", cid, (unsigned long long)seq, (unsigned long long)h);
    return id;
}

static bool take_pending(jn_kgroup_t *grp, const char *id)
{
    for (jn_kpending_t **pp = &grp->pending; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->id, id) == 0) {
            jn_kpending_t *p = *pp;
            *pp = p->next;
            free(p->id);
            free(p);
            return true;
        }
    }
    return false;
}

static int set_protocols(jn_kmember_t *m, const jn_kgroup_join_args_t *a)
{
    jn_kprotocol_t *p = calloc(a->nprotocols ? a->nprotocols : 1, sizeof *p);
    if (!p)
        return JN_ENOMEM;
    for (size_t i = 0; i < a->nprotocols; i++) {
        p[i].name = strdup(a->protocols[i].name);
        p[i].metadata = dupmem(a->protocols[i].metadata, a->protocols[i].metadata_len);
        p[i].metadata_len = a->protocols[i].metadata_len;
        if (!p[i].name || !p[i].metadata) {
            free_protocols(p, i + 1);
            return JN_ENOMEM;
        }
    }
    free_protocols(m->protocols, m->nprotocols);
    m->protocols = p;
    m->nprotocols = a->nprotocols;
    return 0;
}

/* Whether a joining member's protocols fit the group: same protocol type
 * and at least one protocol every other member also supports. */
static bool protocols_compatible(jn_kgroup_t *grp, const jn_kgroup_join_args_t *a, const jn_kmember_t *self)
{
    if (a->nprotocols == 0 || !a->protocol_type || !*a->protocol_type)
        return false;
    bool others = false;
    for (jn_kmember_t *m = grp->members; m; m = m->next)
        if (m != self)
            others = true;
    if (!others)
        return true;
    if (grp->protocol_type && strcmp(grp->protocol_type, a->protocol_type) != 0)
        return false;
    for (size_t i = 0; i < a->nprotocols; i++) {
        bool all = true;
        for (jn_kmember_t *m = grp->members; m && all; m = m->next)
            if (m != self)
                all = member_protocol(m, a->protocols[i].name) != NULL;
        if (all)
            return true;
    }
    return false;
}

int jn_kgroups_join(jn_kgroups_t *g, const jn_kgroup_join_args_t *a, void *waiter, int64_t now)
{
    if (!a->group || !*a->group) {
        answer_join_error(g, waiter, 24 /* INVALID_GROUP_ID */, a->member_id);
        return 0;
    }
    if (a->session_timeout_ms < g->cfg.min_session_timeout_ms ||
        a->session_timeout_ms > g->cfg.max_session_timeout_ms) {
        answer_join_error(g, waiter, 26 /* INVALID_SESSION_TIMEOUT */, a->member_id);
        return 0;
    }
    jn_kgroup_t *grp = jn_kgroups_find(g, a->group);
    bool known = a->member_id && *a->member_id;
    jn_kmember_t *m = NULL;
    if (grp && known)
        m = find_member(grp, a->member_id);
    if (known && !m && !(grp && grp->pending && take_pending(grp, a->member_id))) {
        answer_join_error(g, waiter, 25 /* UNKNOWN_MEMBER_ID */, a->member_id);
        return 0;
    }
    if (!grp && !(grp = group_create(g, a->group)))
        return JN_ENOMEM;
    if (!protocols_compatible(grp, a, m)) {
        answer_join_error(g, waiter, 23 /* INCONSISTENT_GROUP_PROTOCOL */, a->member_id);
        return 0;
    }
    if (!m) {
        char *id = known ? strdup(a->member_id) : new_member_id(g, a->client_id);
        if (!id)
            return JN_ENOMEM;
        if (!known && a->require_known_member_id) {
            jn_kpending_t *p = calloc(1, sizeof *p);
            if (!p) {
                free(id);
                return JN_ENOMEM;
            }
            p->id = id;
            p->deadline_ms = now + a->session_timeout_ms;
            p->next = grp->pending;
            grp->pending = p;
            answer_join_error(g, waiter, 79 /* MEMBER_ID_REQUIRED */, id);
            return 0;
        }
        m = calloc(1, sizeof *m);
        if (!m) {
            free(id);
            return JN_ENOMEM;
        }
        m->id = id;
        /* Appended: the first member to join stays first (the leader). */
        jn_kmember_t **pp = &grp->members;
        while (*pp)
            pp = &(*pp)->next;
        *pp = m;
        grp->nmembers++;
    }
    if (set_protocols(m, a)) {
        if (!m->protocols) {
            unlink_member(grp, m);
            member_free(m);
        }
        return JN_ENOMEM;
    }
    free(m->instance_id);
    m->instance_id = dupstr(a->instance_id);
    free(m->client_id);
    m->client_id = dupstr(a->client_id ? a->client_id : "");
    free(m->client_host);
    m->client_host = dupstr(a->client_host ? a->client_host : "");
    m->session_timeout_ms = a->session_timeout_ms;
    m->rebalance_timeout_ms = a->rebalance_timeout_ms > 0 ? a->rebalance_timeout_ms : a->session_timeout_ms;
    m->deadline_ms = now + m->session_timeout_ms;
    if (!grp->protocol_type || grp->nmembers == 1) {
        free(grp->protocol_type);
        grp->protocol_type = dupstr(a->protocol_type);
    }
    if (m->join_waiter && m->join_waiter != waiter)
        answer_join_error(g, m->join_waiter, 25, m->id);
    m->join_waiter = waiter;
    if (grp->state != JN_KGROUP_PREPARING_REBALANCE)
        prepare_rebalance(g, grp, now);
    try_complete_join(g, grp, now);
    return 0;
}

int jn_kgroups_sync(jn_kgroups_t *g, const char *group, const char *member_id, int32_t generation,
                    const jn_kgroup_assignment_t *as, size_t n, void *waiter, int64_t now)
{
    jn_kgroup_t *grp = jn_kgroups_find(g, group);
    jn_kmember_t *m = grp ? find_member(grp, member_id) : NULL;
    if (!m) {
        g->on_sync(waiter, 25 /* UNKNOWN_MEMBER_ID */, NULL, 0, g->arg);
        return 0;
    }
    if (generation != grp->generation) {
        g->on_sync(waiter, 22 /* ILLEGAL_GENERATION */, NULL, 0, g->arg);
        return 0;
    }
    m->deadline_ms = now + m->session_timeout_ms;
    switch (grp->state) {
    case JN_KGROUP_PREPARING_REBALANCE:
        g->on_sync(waiter, 27 /* REBALANCE_IN_PROGRESS */, NULL, 0, g->arg);
        return 0;
    case JN_KGROUP_STABLE:
        g->on_sync(waiter, 0, m->assignment, m->assignment_len, g->arg);
        return 0;
    case JN_KGROUP_COMPLETING_REBALANCE:
        break;
    default:
        g->on_sync(waiter, 25, NULL, 0, g->arg);
        return 0;
    }
    if (m->sync_waiter && m->sync_waiter != waiter)
        g->on_sync(m->sync_waiter, 25, NULL, 0, g->arg);
    m->sync_waiter = waiter;
    if (!grp->leader || strcmp(grp->leader, member_id) != 0)
        return 0; /* a follower waits for the leader */
    /* The leader's assignment: copy every member's part first, so that a
     * failed allocation leaves the round as it was. */
    uint8_t **copies = calloc(grp->nmembers ? grp->nmembers : 1, sizeof *copies);
    size_t *lens = calloc(grp->nmembers ? grp->nmembers : 1, sizeof *lens);
    if (!copies || !lens) {
        free(copies);
        free(lens);
        m->sync_waiter = NULL;
        return JN_ENOMEM;
    }
    size_t i = 0;
    for (jn_kmember_t *x = grp->members; x; x = x->next, i++) {
        for (size_t k = 0; k < n; k++) {
            if (as[k].member_len == strlen(x->id) && memcmp(as[k].member_id, x->id, as[k].member_len) == 0) {
                copies[i] = dupmem(as[k].data, as[k].len);
                lens[i] = as[k].len;
                break;
            }
        }
    }
    i = 0;
    for (jn_kmember_t *x = grp->members; x; x = x->next, i++) {
        free(x->assignment);
        x->assignment = copies[i];
        x->assignment_len = copies[i] ? lens[i] : 0;
    }
    free(copies);
    free(lens);
    grp->state = JN_KGROUP_STABLE;
    for (jn_kmember_t *x = grp->members; x; x = x->next) {
        if (x->sync_waiter) {
            void *w = x->sync_waiter;
            x->sync_waiter = NULL;
            g->on_sync(w, 0, x->assignment, x->assignment_len, g->arg);
        }
    }
    return 0;
}

int16_t jn_kgroups_heartbeat(jn_kgroups_t *g, const char *group, const char *member_id, int32_t generation,
                             int64_t now)
{
    jn_kgroup_t *grp = jn_kgroups_find(g, group);
    jn_kmember_t *m = grp ? find_member(grp, member_id) : NULL;
    if (!m)
        return 25; /* UNKNOWN_MEMBER_ID */
    if (generation != grp->generation)
        return 22; /* ILLEGAL_GENERATION */
    m->deadline_ms = now + m->session_timeout_ms;
    if (grp->state == JN_KGROUP_PREPARING_REBALANCE)
        return 27; /* REBALANCE_IN_PROGRESS */
    return 0;
}

int16_t jn_kgroups_leave(jn_kgroups_t *g, const char *group, const char *member_id, int64_t now)
{
    jn_kgroup_t *grp = jn_kgroups_find(g, group);
    jn_kmember_t *m = grp ? find_member(grp, member_id) : NULL;
    if (!m)
        return 25;
    remove_member(g, grp, m, now);
    return 0;
}

int16_t jn_kgroups_commit_check(jn_kgroups_t *g, const char *group, const char *member_id, int32_t generation,
                                int64_t now)
{
    jn_kgroup_t *grp = jn_kgroups_find(g, group);
    if (!grp || grp->state == JN_KGROUP_EMPTY) {
        /* Offsets of a group without members (manual assignment, tools):
         * allowed with no member id and no generation, as Kafka does. */
        if (generation < 0)
            return 0;
        return 25; /* UNKNOWN_MEMBER_ID */
    }
    if (generation < 0 && (!member_id || !*member_id))
        return 22; /* the group is active: a simple commit would clash */
    jn_kmember_t *m = find_member(grp, member_id);
    if (!m)
        return 25;
    if (generation != grp->generation)
        return 22;
    if (grp->state == JN_KGROUP_COMPLETING_REBALANCE)
        return 27;
    m->deadline_ms = now + m->session_timeout_ms;
    return 0;
}

void jn_kgroups_tick(jn_kgroups_t *g, int64_t now)
{
    for (jn_kgroup_t *grp = g->groups; grp; grp = grp->next) {
        for (jn_kpending_t **pp = &grp->pending; *pp;) {
            jn_kpending_t *p = *pp;
            if (now >= p->deadline_ms) {
                *pp = p->next;
                free(p->id);
                free(p);
            } else {
                pp = &p->next;
            }
        }
        /* A member waiting in a join round is not expired: the round's own
         * timeout covers it. */
        /* Removing a member can end a join round, which frees other
         * members: rescan from the start after each removal. */
        for (;;) {
            jn_kmember_t *m = grp->members;
            while (m && (m->join_waiter || now < m->deadline_ms))
                m = m->next;
            if (!m)
                break;
            remove_member(g, grp, m, now);
        }
        if (grp->state == JN_KGROUP_PREPARING_REBALANCE && now >= grp->rebalance_deadline_ms)
            complete_join(g, grp, now);
    }
}

void jn_kgroups_cancel(jn_kgroups_t *g, void *waiter)
{
    if (!waiter)
        return;
    for (jn_kgroup_t *grp = g->groups; grp; grp = grp->next) {
        for (jn_kmember_t *m = grp->members; m; m = m->next) {
            if (m->join_waiter == waiter)
                m->join_waiter = NULL;
            if (m->sync_waiter == waiter)
                m->sync_waiter = NULL;
        }
    }
}
