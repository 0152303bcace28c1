/* kafka_groups.c - consumer-group requests of the Kafka door: the
 * coordinator lookup, the rebalance protocol (handed to group.c's state
 * machine, answered through its callbacks), and committed offsets (stored
 * by the broker, so they survive restarts).
 */
#include "kafka_int.h"

#include <stdlib.h>
#include <string.h>

#define GROUP_NAME_MAX 249

static int64_t now_ms(void)
{
    return jn__kafka_now();
}

void jn__kafka_find_coordinator(kconn_t *kc, const jn_kafka_find_coordinator_req_t *req)
{
    int16_t v = kc->hdr.api_version;
    int16_t err = req->key_type == 0 ? 0 : JN_KERR_COORDINATOR_NOT_AVAILABLE; /* no transactions */
    jn_kwriter_t w;
    size_t mark;
    jn__kafka_begin(kc, &w, &mark);
    if (v >= 1)
        jn_kw_i32(&w, 0);
    if (v <= 3) {
        jn_kw_i16(&w, err);
        if (v >= 1)
            jn_kw_str(&w, NULL, -1);
        jn_kw_i32(&w, err ? -1 : 0);
        jn_kw_cstr(&w, err ? "" : kc->k->host);
        jn_kw_i32(&w, err ? -1 : jn_kafka_port(kc->k));
    } else {
        jn_kw_array(&w, req->nkeys);
        for (int32_t i = 0; i < req->nkeys; i++) {
            jn_kw_str(&w, req->keys[i].p, req->keys[i].len);
            jn_kw_i32(&w, err ? -1 : 0);
            jn_kw_cstr(&w, err ? "" : kc->k->host);
            jn_kw_i32(&w, err ? -1 : jn_kafka_port(kc->k));
            jn_kw_i16(&w, err);
            jn_kw_str(&w, NULL, -1);
            jn_kw_tags(&w);
        }
    }
    jn_kw_tags(&w);
    jn__kafka_end(kc, &w, mark);
}

/* ---- JoinGroup ---- */

static void write_join(kconn_t *kc, const jn_kgroup_join_result_t *res)
{
    int16_t v = kc->hdr.api_version;
    jn_kwriter_t w;
    size_t mark;
    jn__kafka_begin(kc, &w, &mark);
    if (v >= 2)
        jn_kw_i32(&w, 0);
    jn_kw_i16(&w, res->error);
    jn_kw_i32(&w, res->generation);
    if (v >= 7) {
        jn_kw_cstr(&w, res->protocol_type);
        jn_kw_cstr(&w, res->protocol_name);
    } else {
        jn_kw_cstr(&w, res->protocol_name ? res->protocol_name : "");
    }
    jn_kw_cstr(&w, res->leader ? res->leader : "");
    if (v >= 9)
        jn_kw_bool(&w, false);
    jn_kw_cstr(&w, res->member_id ? res->member_id : "");
    jn_kw_array(&w, (int32_t)res->nmembers);
    for (size_t i = 0; i < res->nmembers; i++) {
        jn_kw_cstr(&w, res->members[i].member_id);
        if (v >= 5)
            jn_kw_cstr(&w, res->members[i].instance_id);
        jn_kw_bytes(&w, res->members[i].metadata ? res->members[i].metadata : (const uint8_t *)"",
                    (int32_t)res->members[i].metadata_len);
        jn_kw_tags(&w);
    }
    jn_kw_tags(&w);
    jn__kafka_end(kc, &w, mark);
}

void jn__kafka_on_join(void *waiter, const jn_kgroup_join_result_t *res, void *arg)
{
    (void)arg;
    kconn_t *kc = waiter;
    write_join(kc, res);
    if (kc->park == KPARK_JOIN)
        jn__kafka_unpark(kc);
}

void jn__kafka_join_group(kconn_t *kc, const jn_kafka_join_group_req_t *req)
{
    char group[GROUP_NAME_MAX + 1], member[256], instance[256], ptype[256], client[256];
    jn_kafka_header_t *h = &kc->hdr;
    jn_kprotocol_t *protos = jn_karena_alloc(&kc->arena, (size_t)req->nprotocols, sizeof *protos);
    char *names = jn_karena_alloc(&kc->arena, (size_t)req->nprotocols, 256);
    if (!protos || !names) {
        jn_conn_abort(kc->conn);
        return;
    }
    for (int32_t i = 0; i < req->nprotocols; i++) {
        protos[i].name = (char *)jn__kafka_cstr(req->protocols[i].name, names + 256 * i, 256);
        protos[i].metadata = (uint8_t *)req->protocols[i].metadata;
        protos[i].metadata_len = (size_t)req->protocols[i].metadata_len;
    }
    jn_kgroup_join_args_t a = {
        .group = jn__kafka_cstr(req->group_id, group, sizeof group),
        .member_id = jn__kafka_cstr(req->member_id, member, sizeof member),
        .instance_id = req->group_instance_id.len >= 0 ? jn__kafka_cstr(req->group_instance_id, instance,
                                                                        sizeof instance)
                                                        : NULL,
        .client_id = jn__kafka_cstr(h->client_id, client, sizeof client),
        .client_host = jn_conn_peer(kc->conn),
        .session_timeout_ms = req->session_timeout_ms,
        .rebalance_timeout_ms = req->rebalance_timeout_ms,
        .protocol_type = jn__kafka_cstr(req->protocol_type, ptype, sizeof ptype),
        .protocols = protos,
        .nprotocols = (size_t)req->nprotocols,
        .require_known_member_id = h->api_version >= 4,
    };
    /* Parked first: the answer may come from inside the call. */
    kc->park = KPARK_JOIN;
    if (jn_kgroups_join(kc->k->groups, &a, kc, now_ms()) != 0) {
        kc->park = KPARK_NONE;
        jn_conn_abort(kc->conn);
    }
}

/* ---- SyncGroup ---- */

void jn__kafka_on_sync(void *waiter, int16_t error, const uint8_t *assignment, size_t len, void *arg)
{
    (void)arg;
    kconn_t *kc = waiter;
    int16_t v = kc->hdr.api_version;
    const jn_kafka_sync_group_req_t *req = (const jn_kafka_sync_group_req_t *)kc->req;
    jn_kwriter_t w;
    size_t mark;
    jn__kafka_begin(kc, &w, &mark);
    if (v >= 1)
        jn_kw_i32(&w, 0);
    jn_kw_i16(&w, error);
    if (v >= 5) {
        jn_kw_str(&w, req->protocol_type.p, req->protocol_type.len);
        jn_kw_str(&w, req->protocol_name.p, req->protocol_name.len);
    }
    jn_kw_bytes(&w, assignment ? assignment : (const uint8_t *)"", assignment ? (int32_t)len : 0);
    jn_kw_tags(&w);
    jn__kafka_end(kc, &w, mark);
    if (kc->park == KPARK_SYNC)
        jn__kafka_unpark(kc);
}

void jn__kafka_sync_group(kconn_t *kc, const jn_kafka_sync_group_req_t *req)
{
    char group[GROUP_NAME_MAX + 1], member[256];
    jn_kgroup_assignment_t *as = jn_karena_alloc(&kc->arena, (size_t)req->nassignments, sizeof *as);
    if (!as) {
        jn_conn_abort(kc->conn);
        return;
    }
    for (int32_t i = 0; i < req->nassignments; i++) {
        as[i].member_id = req->assignments[i].member_id.p;
        as[i].member_len = (size_t)req->assignments[i].member_id.len;
        as[i].data = req->assignments[i].assignment;
        as[i].len = (size_t)req->assignments[i].assignment_len;
    }
    jn_kgroups_t *g = kc->k->groups;
    jn__kafka_cstr(req->group_id, group, sizeof group);
    jn__kafka_cstr(req->member_id, member, sizeof member);
    /* Parked first: the answer may come from inside the call. */
    kc->park = KPARK_SYNC;
    int rc = jn_kgroups_sync(g, group, member, req->generation_id, as, (size_t)req->nassignments, kc, now_ms());
    if (rc) {
        kc->park = KPARK_NONE;
        jn_conn_abort(kc->conn);
    }
}

/* ---- Heartbeat, LeaveGroup ---- */

void jn__kafka_heartbeat(kconn_t *kc, const jn_kafka_heartbeat_req_t *req)
{
    char group[GROUP_NAME_MAX + 1], member[256];
    int16_t err = jn_kgroups_heartbeat(kc->k->groups, jn__kafka_cstr(req->group_id, group, sizeof group),
                                       jn__kafka_cstr(req->member_id, member, sizeof member),
                                       req->generation_id, now_ms());
    jn_kwriter_t w;
    size_t mark;
    jn__kafka_begin(kc, &w, &mark);
    if (kc->hdr.api_version >= 1)
        jn_kw_i32(&w, 0);
    jn_kw_i16(&w, err);
    jn_kw_tags(&w);
    jn__kafka_end(kc, &w, mark);
}

void jn__kafka_leave_group(kconn_t *kc, const jn_kafka_leave_group_req_t *req)
{
    int16_t v = kc->hdr.api_version;
    char group[GROUP_NAME_MAX + 1], member[256];
    jn__kafka_cstr(req->group_id, group, sizeof group);
    int16_t *errs = jn_karena_alloc(&kc->arena, (size_t)req->nmembers, sizeof *errs);
    if (!errs) {
        jn_conn_abort(kc->conn);
        return;
    }
    for (int32_t i = 0; i < req->nmembers; i++)
        errs[i] = jn_kgroups_leave(kc->k->groups, group,
                                   jn__kafka_cstr(req->members[i].member_id, member, sizeof member), now_ms());
    jn_kwriter_t w;
    size_t mark;
    jn__kafka_begin(kc, &w, &mark);
    if (v >= 1)
        jn_kw_i32(&w, 0);
    jn_kw_i16(&w, v <= 2 && req->nmembers == 1 ? errs[0] : 0);
    if (v >= 3) {
        jn_kw_array(&w, req->nmembers);
        for (int32_t i = 0; i < req->nmembers; i++) {
            jn_kw_str(&w, req->members[i].member_id.p, req->members[i].member_id.len);
            jn_kw_str(&w, req->members[i].group_instance_id.p, req->members[i].group_instance_id.len);
            jn_kw_i16(&w, errs[i]);
            jn_kw_tags(&w);
        }
    }
    jn_kw_tags(&w);
    jn__kafka_end(kc, &w, mark);
}

/* ---- offsets ---- */

static bool may_read_topic(kconn_t *kc, jn_kstr_t name)
{
    char f[JN_STREAM_NAME_MAX + 4];
    jn__kafka_cstr(name, f, JN_STREAM_NAME_MAX + 1);
    size_t n = strlen(f);
    memcpy(f + n, "/#", 3);
    return jn__kafka_may(kc, JN_PERM_SUBSCRIBE, f, n + 2);
}

/* Writes the OffsetCommit response from the per-partition errors of
 * jn__kafka_offset_commit; |status| < 0 when the commits did not become
 * durable (then every committed partition reports a storage error). */
static void write_commit(kconn_t *kc, const jn_kafka_offset_commit_req_t *req, const int16_t *errs, int status)
{
    int16_t v = kc->hdr.api_version;
    jn_kwriter_t w;
    size_t mark;
    jn__kafka_begin(kc, &w, &mark);
    if (v >= 3)
        jn_kw_i32(&w, 0);
    jn_kw_array(&w, req->ntopics);
    size_t k = 0;
    for (int32_t i = 0; i < req->ntopics; i++) {
        const jn_kafka_commit_topic_t *t = &req->topics[i];
        jn_kw_str(&w, t->name.p, t->name.len);
        jn_kw_array(&w, t->nparts);
        for (int32_t j = 0; j < t->nparts; j++, k++) {
            int16_t err = errs[k];
            if (!err && status < 0)
                err = JN_KERR_KAFKA_STORAGE_ERROR;
            jn_kw_i32(&w, t->parts[j].partition);
            jn_kw_i16(&w, err);
            jn_kw_tags(&w);
        }
        jn_kw_tags(&w);
    }
    jn_kw_tags(&w);
    jn__kafka_end(kc, &w, mark);
}

static void commit_durable(jn_durable_waiter_t *dw, int status)
{
    kconn_t *kc = jn_container_of(dw, kconn_t, commit_wait);
    if (kc->park != KPARK_COMMIT)
        return;
    write_commit(kc, (const jn_kafka_offset_commit_req_t *)kc->req, kc->commit_errs, status);
    kc->commit_errs = NULL;
    jn__kafka_unpark(kc);
}

void jn__kafka_offset_commit_cancel(kconn_t *kc)
{
    if (kc->park == KPARK_COMMIT)
        jn_plog_cancel_durable(&kc->commit_wait);
    kc->commit_errs = NULL;
}

/* Commits every partition at once (visible to OffsetFetch immediately),
 * then answers once the offsets log is fsynced: one group-committed fsync
 * for the whole request, shared with other connections committing now. */
void jn__kafka_offset_commit(kconn_t *kc, const jn_kafka_offset_commit_req_t *req)
{
    char group[GROUP_NAME_MAX + 1], member[256], meta[4096];
    jn__kafka_cstr(req->group_id, group, sizeof group);
    int16_t gerr = 0;
    if (!*group)
        gerr = JN_KERR_INVALID_GROUP_ID;
    else
        gerr = jn_kgroups_commit_check(kc->k->groups, group, jn__kafka_cstr(req->member_id, member, sizeof member),
                                       req->generation_id, now_ms());
    size_t nparts = 0;
    for (int32_t i = 0; i < req->ntopics; i++)
        if (req->topics[i].nparts > 0)
            nparts += (size_t)req->topics[i].nparts;
    int16_t *errs = jn_karena_alloc(&kc->arena, nparts ? nparts : 1, sizeof *errs);
    if (!errs) {
        jn_conn_abort(kc->conn);
        return;
    }
    size_t k = 0;
    bool committed = false;
    for (int32_t i = 0; i < req->ntopics; i++) {
        const jn_kafka_commit_topic_t *t = &req->topics[i];
        int16_t terr = gerr;
        jn_stream_t *s = NULL;
        if (!terr)
            s = jn__kafka_topic(kc, t->name, false, &terr);
        if (!terr && !may_read_topic(kc, t->name))
            terr = JN_KERR_TOPIC_AUTHORIZATION_FAILED;
        for (int32_t j = 0; j < t->nparts; j++, k++) {
            const jn_kafka_commit_part_t *p = &t->parts[j];
            int16_t err = terr;
            if (!err && (p->partition < 0 || (uint32_t)p->partition >= jn_stream_partitions(s)))
                err = JN_KERR_UNKNOWN_TOPIC_OR_PARTITION;
            if (!err) {
                int rc = jn_broker_group_commit(kc->k->broker, group, s, (uint32_t)p->partition, p->offset,
                                                jn__kafka_cstr(p->metadata, meta, sizeof meta));
                if (rc == JN_EINVAL)
                    err = JN_KERR_INVALID_GROUP_ID;
                else if (rc)
                    err = JN_KERR_UNKNOWN_SERVER_ERROR;
                else
                    committed = true;
            }
            errs[k] = err;
        }
    }
    if (!committed) {
        write_commit(kc, req, errs, 0);
        return;
    }
    /* Parked first: the waiter may fire inside the call (already durable,
     * or fsync "never"), which answers and unparks at once. */
    kc->park = KPARK_COMMIT;
    kc->commit_errs = errs;
    jn_broker_group_wait_durable(kc->k->broker, &kc->commit_wait, commit_durable);
}

static void write_opart(jn_kwriter_t *w, int16_t v, int32_t part, int64_t off, const char *meta, int16_t err)
{
    jn_kw_i32(w, part);
    jn_kw_i64(w, off);
    if (v >= 5)
        jn_kw_i32(w, -1);
    jn_kw_cstr(w, meta ? meta : "");
    jn_kw_i16(w, err);
    jn_kw_tags(w);
}

/* The topics of one group: the requested ones, or every committed one. */
static void write_ofetch_group(kconn_t *kc, jn_kwriter_t *w, const jn_kafka_ofetch_group_t *g)
{
    int16_t v = kc->hdr.api_version;
    char group[GROUP_NAME_MAX + 1];
    jn__kafka_cstr(g->group_id, group, sizeof group);
    if (g->ntopics >= 0) {
        jn_kw_array(w, g->ntopics);
        for (int32_t i = 0; i < g->ntopics; i++) {
            const jn_kafka_ofetch_topic_t *t = &g->topics[i];
            int16_t terr = 0;
            jn_stream_t *s = jn__kafka_topic(kc, t->name, false, &terr);
            if (!terr && !may_read_topic(kc, t->name))
                terr = JN_KERR_TOPIC_AUTHORIZATION_FAILED;
            jn_kw_str(w, t->name.p, t->name.len);
            jn_kw_array(w, t->nparts);
            for (int32_t j = 0; j < t->nparts; j++) {
                int64_t off = -1;
                int16_t err = terr == JN_KERR_TOPIC_AUTHORIZATION_FAILED ? terr : 0;
                if (s && t->parts[j] >= 0 && (uint32_t)t->parts[j] < jn_stream_partitions(s) && !err)
                    if (jn_broker_group_fetch(kc->k->broker, group, s, (uint32_t)t->parts[j], &off) != 0)
                        off = -1;
                write_opart(w, v, t->parts[j], off, "", err);
            }
            jn_kw_tags(w);
        }
        return;
    }
    json_t *j = jn_broker_group_json(kc->k->broker, group);
    json_t *offs = j ? json_object_get(j, "offsets") : NULL;
    size_t n = json_is_array(offs) ? json_array_size(offs) : 0;
    /* One topic entry per committed (stream, partition): Kafka groups them
     * by topic, clients accept either. */
    jn_kw_array(w, (int32_t)n);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(offs, i);
        const char *stream = json_string_value(json_object_get(o, "stream"));
        jn_kw_cstr(w, stream ? stream : "");
        jn_kw_array(w, 1);
        write_opart(w, v, (int32_t)json_integer_value(json_object_get(o, "partition")),
                    json_integer_value(json_object_get(o, "offset")),
                    json_string_value(json_object_get(o, "metadata")), 0);
        jn_kw_tags(w);
    }
    json_decref(j);
}

void jn__kafka_offset_fetch(kconn_t *kc, const jn_kafka_offset_fetch_req_t *req)
{
    int16_t v = kc->hdr.api_version;
    jn_kwriter_t w;
    size_t mark;
    jn__kafka_begin(kc, &w, &mark);
    if (v >= 3)
        jn_kw_i32(&w, 0);
    if (v <= 7) {
        write_ofetch_group(kc, &w, &req->groups[0]);
        if (v >= 2)
            jn_kw_i16(&w, 0);
    } else {
        jn_kw_array(&w, req->ngroups);
        for (int32_t i = 0; i < req->ngroups; i++) {
            jn_kw_str(&w, req->groups[i].group_id.p, req->groups[i].group_id.len);
            write_ofetch_group(kc, &w, &req->groups[i]);
            jn_kw_i16(&w, 0);
            jn_kw_tags(&w);
        }
    }
    jn_kw_tags(&w);
    jn__kafka_end(kc, &w, mark);
}

/* ---- DescribeGroups, ListGroups ---- */

void jn__kafka_describe_groups(kconn_t *kc, const jn_kafka_describe_groups_req_t *req)
{
    int16_t v = kc->hdr.api_version;
    char group[GROUP_NAME_MAX + 1];
    jn_kwriter_t w;
    size_t mark;
    jn__kafka_begin(kc, &w, &mark);
    if (v >= 1)
        jn_kw_i32(&w, 0);
    jn_kw_array(&w, req->ngroups);
    for (int32_t i = 0; i < req->ngroups; i++) {
        jn_kgroup_t *grp = jn_kgroups_find(kc->k->groups, jn__kafka_cstr(req->groups[i], group, sizeof group));
        jn_kw_i16(&w, 0);
        jn_kw_str(&w, req->groups[i].p, req->groups[i].len);
        if (!grp) {
            json_t *j = jn_broker_group_json(kc->k->broker, group);
            jn_kw_cstr(&w, j ? "Empty" : "Dead");
            json_decref(j);
            jn_kw_cstr(&w, "");
            jn_kw_cstr(&w, "");
            jn_kw_array(&w, 0);
        } else {
            jn_kw_cstr(&w, jn_kgroup_state_name(grp->state));
            jn_kw_cstr(&w, grp->protocol_type ? grp->protocol_type : "");
            jn_kw_cstr(&w, grp->protocol_name && grp->state == JN_KGROUP_STABLE ? grp->protocol_name : "");
            jn_kw_array(&w, (int32_t)grp->nmembers);
            for (jn_kmember_t *m = grp->members; m; m = m->next) {
                size_t mlen;
                const uint8_t *md = jn_kmember_metadata(grp, m, &mlen);
                jn_kw_cstr(&w, m->id);
                if (v >= 4)
                    jn_kw_cstr(&w, m->instance_id);
                jn_kw_cstr(&w, m->client_id);
                jn_kw_cstr(&w, m->client_host);
                jn_kw_bytes(&w, md ? md : (const uint8_t *)"", md ? (int32_t)mlen : 0);
                jn_kw_bytes(&w, m->assignment ? m->assignment : (const uint8_t *)"",
                            m->assignment ? (int32_t)m->assignment_len : 0);
                jn_kw_tags(&w);
            }
        }
        if (v >= 3)
            jn_kw_i32(&w, INT32_MIN);
        jn_kw_tags(&w);
    }
    jn_kw_tags(&w);
    jn__kafka_end(kc, &w, mark);
}

void jn__kafka_list_groups(kconn_t *kc, const jn_kafka_list_groups_req_t *req)
{
    int16_t v = kc->hdr.api_version;
    /* Groups with members (in memory) plus groups known only by their
     * committed offsets (durable), shown as Empty. */
    json_t *names = jn_broker_groups_json(kc->k->broker);
    json_t *all = json_array();
    for (jn_kgroup_t *g = jn_kgroups_first(kc->k->groups); g; g = g->next)
        json_array_append_new(all, json_pack("[ssi]", g->name, g->protocol_type ? g->protocol_type : "",
                                             (int)g->state));
    size_t i;
    json_t *nv;
    json_array_foreach(names, i, nv) {
        const char *n = json_string_value(nv);
        if (n && !jn_kgroups_find(kc->k->groups, n))
            json_array_append_new(all, json_pack("[ssi]", n, "consumer", (int)JN_KGROUP_EMPTY));
    }
    json_decref(names);
    jn_kwriter_t w;
    size_t mark;
    jn__kafka_begin(kc, &w, &mark);
    if (v >= 1)
        jn_kw_i32(&w, 0);
    jn_kw_i16(&w, 0);
    int32_t count = 0;
    json_array_foreach(all, i, nv) {
        const char *st = jn_kgroup_state_name((enum jn_kgroup_state)json_integer_value(json_array_get(nv, 2)));
        bool keep = req->nstates <= 0;
        for (int32_t k = 0; k < req->nstates && !keep; k++)
            keep = (size_t)req->states[k].len == strlen(st) && strncasecmp(req->states[k].p, st, strlen(st)) == 0;
        if (!keep)
            json_array_set_new(nv, 0, json_null());
        else
            count++;
    }
    jn_kw_array(&w, count);
    json_array_foreach(all, i, nv) {
        if (json_is_null(json_array_get(nv, 0)))
            continue;
        jn_kw_cstr(&w, json_string_value(json_array_get(nv, 0)));
        jn_kw_cstr(&w, json_string_value(json_array_get(nv, 1)));
        if (v >= 4)
            jn_kw_cstr(&w, jn_kgroup_state_name((enum jn_kgroup_state)json_integer_value(json_array_get(nv, 2))));
        jn_kw_tags(&w);
    }
    jn_kw_tags(&w);
    json_decref(all);
    jn__kafka_end(kc, &w, mark);
}
