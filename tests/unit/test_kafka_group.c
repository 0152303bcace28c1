/* test_kafka_group.c - the Kafka consumer-group coordinator state machine,
 * driven with explicit (fake) time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proto/kafka/group.h"

typedef struct waiter {
    int joins, syncs;
    int16_t join_err, sync_err;
    int32_t generation;
    char member[128];
    char leader[128];
    size_t nmembers;
    char assignment[64];
} waiter_t;

static void on_join(void *w, const jn_kgroup_join_result_t *res, void *arg)
{
    (void)arg;
    waiter_t *x = w;
    x->joins++;
    x->join_err = res->error;
    x->generation = res->generation;
    snprintf(x->member, sizeof x->member, "%s", res->member_id);
    snprintf(x->leader, sizeof x->leader, "%s", res->leader);
    x->nmembers = res->nmembers;
}

static void on_sync(void *w, int16_t err, const uint8_t *a, size_t len, void *arg)
{
    (void)arg;
    waiter_t *x = w;
    x->syncs++;
    x->sync_err = err;
    snprintf(x->assignment, sizeof x->assignment, "%.*s", (int)len, a ? (const char *)a : "");
}

static const jn_kprotocol_t range = {.name = "range", .metadata = (uint8_t *)"m", .metadata_len = 1};

static void join(jn_kgroups_t *g, waiter_t *w, const char *member, bool v4, int64_t now)
{
    jn_kgroup_join_args_t a = {
        .group = "g", .member_id = member, .client_id = "c", .client_host = "h",
        .session_timeout_ms = 10000, .rebalance_timeout_ms = 30000, .protocol_type = "consumer",
        .protocols = &range, .nprotocols = 1, .require_known_member_id = v4,
    };
    assert_int_equal(jn_kgroups_join(g, &a, w, now), 0);
}

static void sync_(jn_kgroups_t *g, waiter_t *w, const char *member, int32_t gen, bool leader, int64_t now)
{
    jn_kgroup_assignment_t as[2];
    size_t n = 0;
    (void)leader;
    if (leader) {
        as[n++] = (jn_kgroup_assignment_t){w->member, strlen(w->member), (const uint8_t *)"A", 1};
    }
    assert_int_equal(jn_kgroups_sync(g, "g", member, gen, as, n, w, now), 0);
}

static void test_single_member_flow(void **state)
{
    (void)state;
    jn_kgroups_t *g = jn_kgroups_new(NULL, on_join, on_sync, NULL);
    waiter_t a = {0};
    /* v4+: the first join only hands out a member id. */
    join(g, &a, "", true, 0);
    assert_int_equal(a.joins, 1);
    assert_int_equal(a.join_err, 79);
    char id[128];
    snprintf(id, sizeof id, "%s", a.member);
    assert_true(strlen(id) > 0);
    assert_int_equal(jn_kgroups_find(g, "g")->nmembers, 0);
    /* Rejoining with it completes at once: the only member. */
    join(g, &a, id, true, 10);
    assert_int_equal(a.joins, 2);
    assert_int_equal(a.join_err, 0);
    assert_int_equal(a.generation, 1);
    assert_string_equal(a.leader, id);
    assert_int_equal(a.nmembers, 1);
    jn_kgroup_t *grp = jn_kgroups_find(g, "g");
    assert_int_equal(grp->state, JN_KGROUP_COMPLETING_REBALANCE);
    assert_int_equal(jn_kgroups_heartbeat(g, "g", id, 1, 20), 0);
    sync_(g, &a, id, 1, true, 20);
    assert_int_equal(a.syncs, 1);
    assert_int_equal(a.sync_err, 0);
    assert_string_equal(a.assignment, "A");
    assert_int_equal(grp->state, JN_KGROUP_STABLE);
    assert_int_equal(jn_kgroups_commit_check(g, "g", id, 1, 30), 0);
    assert_int_equal(jn_kgroups_commit_check(g, "g", id, 0, 30), 22);
    assert_int_equal(jn_kgroups_heartbeat(g, "g", "nobody", 1, 30), 25);
    assert_int_equal(jn_kgroups_heartbeat(g, "g", id, 7, 30), 22);
    /* Leaving empties the group. */
    assert_int_equal(jn_kgroups_leave(g, "g", id, 40), 0);
    assert_int_equal(grp->state, JN_KGROUP_EMPTY);
    assert_int_equal(jn_kgroups_commit_check(g, "g", "", -1, 50), 0);
    jn_kgroups_free(g);
}

static void test_second_member_rebalances(void **state)
{
    (void)state;
    jn_kgroups_t *g = jn_kgroups_new(NULL, on_join, on_sync, NULL);
    waiter_t a = {0}, b = {0};
    join(g, &a, "", false, 0); /* v0-3: member id assigned at once */
    assert_int_equal(a.join_err, 0);
    char ida[128];
    snprintf(ida, sizeof ida, "%s", a.member);
    sync_(g, &a, ida, 1, true, 0);
    jn_kgroup_t *grp = jn_kgroups_find(g, "g");
    assert_int_equal(grp->state, JN_KGROUP_STABLE);
    /* B joins: a rebalance starts, B waits for A. */
    join(g, &b, "", false, 100);
    assert_int_equal(b.joins, 0);
    assert_int_equal(grp->state, JN_KGROUP_PREPARING_REBALANCE);
    assert_int_equal(jn_kgroups_heartbeat(g, "g", ida, 1, 200), 27);
    assert_int_equal(jn_kgroups_commit_check(g, "g", ida, 1, 200), 0);
    /* A rejoins: the round completes, generation 2, A stays leader. */
    join(g, &a, ida, false, 300);
    assert_int_equal(a.joins, 2);
    assert_int_equal(b.joins, 1);
    assert_int_equal(a.generation, 2);
    assert_int_equal(b.generation, 2);
    assert_string_equal(a.leader, ida);
    assert_int_equal(a.nmembers, 2);
    assert_int_equal(b.nmembers, 0);
    /* The follower's sync waits for the leader's. */
    sync_(g, &b, b.member, 2, false, 400);
    assert_int_equal(b.syncs, 0);
    assert_int_equal(jn_kgroups_commit_check(g, "g", b.member, 2, 400), 27);
    sync_(g, &a, ida, 2, true, 500);
    assert_int_equal(a.syncs, 2);
    assert_int_equal(b.syncs, 1);
    assert_int_equal(b.sync_err, 0);
    assert_string_equal(b.assignment, ""); /* the leader gave B nothing */
    assert_int_equal(grp->state, JN_KGROUP_STABLE);
    jn_kgroups_free(g);
}

static void test_session_timeout_expels(void **state)
{
    (void)state;
    jn_kgroups_t *g = jn_kgroups_new(NULL, on_join, on_sync, NULL);
    waiter_t a = {0}, b = {0};
    join(g, &a, "", false, 0);
    char ida[128];
    snprintf(ida, sizeof ida, "%s", a.member);
    join(g, &b, "", false, 0); /* PreparingRebalance: A has a pending join still? no: A answered */
    /* A already answered in round 1; the new round waits for A. */
    join(g, &a, ida, false, 10);
    assert_int_equal(a.generation, 2);
    char idb[128];
    snprintf(idb, sizeof idb, "%s", b.member);
    sync_(g, &a, ida, 2, true, 20);
    sync_(g, &b, idb, 2, false, 20);
    jn_kgroup_t *grp = jn_kgroups_find(g, "g");
    assert_int_equal(grp->state, JN_KGROUP_STABLE);
    /* Only A heartbeats; B's 10 s session passes. */
    assert_int_equal(jn_kgroups_heartbeat(g, "g", ida, 2, 9000), 0);
    jn_kgroups_tick(g, 9000);
    assert_int_equal(grp->nmembers, 2);
    jn_kgroups_tick(g, 10021);
    assert_int_equal(grp->nmembers, 1);
    assert_int_equal(grp->state, JN_KGROUP_PREPARING_REBALANCE);
    assert_int_equal(jn_kgroups_heartbeat(g, "g", ida, 2, 10100), 27);
    join(g, &a, ida, false, 10200);
    assert_int_equal(a.generation, 3);
    assert_int_equal(a.nmembers, 1);
    jn_kgroups_free(g);
}

static void test_rebalance_timeout_drops_silent_members(void **state)
{
    (void)state;
    jn_kgroups_t *g = jn_kgroups_new(NULL, on_join, on_sync, NULL);
    waiter_t a = {0}, b = {0};
    join(g, &a, "", false, 0);
    char ida[128];
    snprintf(ida, sizeof ida, "%s", a.member);
    sync_(g, &a, ida, 1, true, 0);
    join(g, &b, "", false, 1000);
    /* A keeps heartbeating but never rejoins: after the rebalance timeout
     * (30 s) the round completes without it. */
    for (int64_t t = 2000; t < 31000; t += 3000) {
        jn_kgroups_heartbeat(g, "g", ida, 1, t);
        jn_kgroups_tick(g, t);
    }
    assert_int_equal(b.joins, 0);
    jn_kgroups_tick(g, 31001);
    assert_int_equal(b.joins, 1);
    assert_int_equal(b.join_err, 0);
    assert_int_equal(b.generation, 2);
    assert_string_equal(b.leader, b.member);
    assert_int_equal(jn_kgroups_heartbeat(g, "g", ida, 1, 31002), 25);
    jn_kgroups_free(g);
}

static void test_errors(void **state)
{
    (void)state;
    jn_kgroups_t *g = jn_kgroups_new(NULL, on_join, on_sync, NULL);
    waiter_t a = {0}, b = {0};
    jn_kgroup_join_args_t bad = {.group = "g", .member_id = "", .session_timeout_ms = 10,
                                 .protocol_type = "consumer", .protocols = &range, .nprotocols = 1};
    assert_int_equal(jn_kgroups_join(g, &bad, &a, 0), 0);
    assert_int_equal(a.join_err, 26);
    bad.session_timeout_ms = 10000;
    bad.group = "";
    assert_int_equal(jn_kgroups_join(g, &bad, &a, 0), 0);
    assert_int_equal(a.join_err, 24);
    join(g, &a, "ghost", false, 0);
    assert_int_equal(a.join_err, 25);
    /* Incompatible protocols. */
    join(g, &a, "", false, 0);
    jn_kprotocol_t other = {.name = "roundrobin", .metadata = (uint8_t *)"", .metadata_len = 0};
    jn_kgroup_join_args_t x = {.group = "g", .member_id = "", .session_timeout_ms = 10000,
                               .protocol_type = "consumer", .protocols = &other, .nprotocols = 1};
    assert_int_equal(jn_kgroups_join(g, &x, &b, 0), 0);
    assert_int_equal(b.join_err, 23);
    assert_int_equal(jn_kgroups_sync(g, "nope", "m", 1, NULL, 0, &b, 0), 0);
    assert_int_equal(b.sync_err, 25);
    assert_int_equal(jn_kgroups_leave(g, "g", "nobody", 0), 25);
    /* A cancelled waiter is never answered. */
    join(g, &b, "", false, 0);
    jn_kgroups_cancel(g, &b);
    int before = b.joins;
    jn_kgroups_tick(g, 100000);
    assert_int_equal(b.joins, before);
    assert_string_equal(jn_kgroup_state_name(JN_KGROUP_STABLE), "Stable");
    jn_kgroups_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_member_flow),
        cmocka_unit_test(test_second_member_rebalances),
        cmocka_unit_test(test_session_timeout_expels),
        cmocka_unit_test(test_rebalance_timeout_drops_silent_members),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
