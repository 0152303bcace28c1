/* codec_group.c - request decoders of the consumer-group APIs:
 * FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
 * OffsetCommit, OffsetFetch, DescribeGroups, ListGroups.
 */
#include "codec_int.h"

int jn_kafka_decode_find_coordinator(jn_kreader_t *r, int16_t v, jn_karena_t *a,
                                     jn_kafka_find_coordinator_req_t *out)
{
    if (v <= 3) {
        out->nkeys = 1;
        KALLOC(a, 1, jn_kstr_t, out->keys);
        out->keys[0] = jn_kr_str(r);
        if (v >= 1)
            out->key_type = jn_kr_i8(r);
    } else {
        out->key_type = jn_kr_i8(r);
        out->nkeys = jn_kr_array(r, false, 1);
        KCHECK(r);
        KALLOC(a, out->nkeys, jn_kstr_t, out->keys);
        for (int32_t i = 0; i < out->nkeys; i++)
            out->keys[i] = jn_kr_str(r);
    }
    jn_kr_tags(r);
    return KDONE(r);
}

int jn_kafka_decode_join_group(jn_kreader_t *r, int16_t v, jn_karena_t *a, jn_kafka_join_group_req_t *out)
{
    out->group_id = jn_kr_str(r);
    out->session_timeout_ms = jn_kr_i32(r);
    out->rebalance_timeout_ms = v >= 1 ? jn_kr_i32(r) : out->session_timeout_ms;
    out->member_id = jn_kr_str(r);
    out->group_instance_id = (jn_kstr_t){NULL, -1};
    if (v >= 5)
        out->group_instance_id = jn_kr_nstr(r);
    out->protocol_type = jn_kr_str(r);
    out->nprotocols = jn_kr_array(r, false, 2);
    KCHECK(r);
    KALLOC(a, out->nprotocols, jn_kafka_protocol_t, out->protocols);
    for (int32_t i = 0; i < out->nprotocols; i++) {
        out->protocols[i].name = jn_kr_str(r);
        out->protocols[i].metadata = jn_kr_bytes(r, &out->protocols[i].metadata_len);
        jn_kr_tags(r);
        KCHECK(r);
        if (out->protocols[i].metadata_len < 0)
            return JN_EPROTO;
    }
    out->reason = (jn_kstr_t){NULL, -1};
    if (v >= 8)
        out->reason = jn_kr_nstr(r);
    jn_kr_tags(r);
    return KDONE(r);
}

int jn_kafka_decode_sync_group(jn_kreader_t *r, int16_t v, jn_karena_t *a, jn_kafka_sync_group_req_t *out)
{
    out->group_id = jn_kr_str(r);
    out->generation_id = jn_kr_i32(r);
    out->member_id = jn_kr_str(r);
    out->group_instance_id = out->protocol_type = out->protocol_name = (jn_kstr_t){NULL, -1};
    if (v >= 3)
        out->group_instance_id = jn_kr_nstr(r);
    if (v >= 5) {
        out->protocol_type = jn_kr_nstr(r);
        out->protocol_name = jn_kr_nstr(r);
    }
    out->nassignments = jn_kr_array(r, false, 2);
    KCHECK(r);
    KALLOC(a, out->nassignments, jn_kafka_assignment_t, out->assignments);
    for (int32_t i = 0; i < out->nassignments; i++) {
        out->assignments[i].member_id = jn_kr_str(r);
        out->assignments[i].assignment = jn_kr_bytes(r, &out->assignments[i].assignment_len);
        jn_kr_tags(r);
        KCHECK(r);
        if (out->assignments[i].assignment_len < 0)
            return JN_EPROTO;
    }
    jn_kr_tags(r);
    return KDONE(r);
}

int jn_kafka_decode_heartbeat(jn_kreader_t *r, int16_t v, jn_karena_t *a, jn_kafka_heartbeat_req_t *out)
{
    (void)a;
    out->group_id = jn_kr_str(r);
    out->generation_id = jn_kr_i32(r);
    out->member_id = jn_kr_str(r);
    out->group_instance_id = (jn_kstr_t){NULL, -1};
    if (v >= 3)
        out->group_instance_id = jn_kr_nstr(r);
    jn_kr_tags(r);
    return KDONE(r);
}

int jn_kafka_decode_leave_group(jn_kreader_t *r, int16_t v, jn_karena_t *a, jn_kafka_leave_group_req_t *out)
{
    out->group_id = jn_kr_str(r);
    if (v <= 2) {
        out->nmembers = 1;
        KALLOC(a, 1, jn_kafka_leave_member_t, out->members);
        out->members[0].member_id = jn_kr_str(r);
        out->members[0].group_instance_id = (jn_kstr_t){NULL, -1};
    } else {
        out->nmembers = jn_kr_array(r, false, 2);
        KCHECK(r);
        KALLOC(a, out->nmembers, jn_kafka_leave_member_t, out->members);
        for (int32_t i = 0; i < out->nmembers; i++) {
            out->members[i].member_id = jn_kr_str(r);
            out->members[i].group_instance_id = jn_kr_nstr(r);
            if (v >= 5)
                (void)jn_kr_nstr(r); /* reason */
            jn_kr_tags(r);
            KCHECK(r);
        }
    }
    jn_kr_tags(r);
    return KDONE(r);
}

int jn_kafka_decode_offset_commit(jn_kreader_t *r, int16_t v, jn_karena_t *a,
                                  jn_kafka_offset_commit_req_t *out)
{
    out->group_id = jn_kr_str(r);
    out->generation_id = -1;
    out->member_id = (jn_kstr_t){"", 0};
    out->group_instance_id = (jn_kstr_t){NULL, -1};
    if (v >= 1) {
        out->generation_id = jn_kr_i32(r);
        out->member_id = jn_kr_str(r);
    }
    if (v >= 7)
        out->group_instance_id = jn_kr_nstr(r);
    if (v >= 2 && v <= 4)
        (void)jn_kr_i64(r); /* retention_time_ms */
    out->ntopics = jn_kr_array(r, false, 2);
    KCHECK(r);
    KALLOC(a, out->ntopics, jn_kafka_commit_topic_t, out->topics);
    for (int32_t i = 0; i < out->ntopics; i++) {
        jn_kafka_commit_topic_t *t = &out->topics[i];
        t->name = jn_kr_str(r);
        t->nparts = jn_kr_array(r, false, 13);
        KCHECK(r);
        KALLOC(a, t->nparts, jn_kafka_commit_part_t, t->parts);
        for (int32_t j = 0; j < t->nparts; j++) {
            jn_kafka_commit_part_t *p = &t->parts[j];
            p->partition = jn_kr_i32(r);
            p->offset = jn_kr_i64(r);
            p->leader_epoch = v >= 6 ? jn_kr_i32(r) : -1;
            if (v == 1)
                (void)jn_kr_i64(r); /* commit_timestamp */
            p->metadata = jn_kr_nstr(r);
            jn_kr_tags(r);
            KCHECK(r);
        }
        jn_kr_tags(r);
    }
    jn_kr_tags(r);
    return KDONE(r);
}

static int decode_ofetch_topics(jn_kreader_t *r, int16_t v, jn_karena_t *a, jn_kafka_ofetch_group_t *g)
{
    g->ntopics = jn_kr_array(r, v >= 2, 2);
    KCHECK(r);
    if (g->ntopics < 0)
        return 0;
    KALLOC(a, g->ntopics, jn_kafka_ofetch_topic_t, g->topics);
    for (int32_t i = 0; i < g->ntopics; i++) {
        jn_kafka_ofetch_topic_t *t = &g->topics[i];
        t->name = jn_kr_str(r);
        t->nparts = jn_kr_array(r, false, 4);
        KCHECK(r);
        KALLOC(a, t->nparts, int32_t, t->parts);
        for (int32_t j = 0; j < t->nparts; j++)
            t->parts[j] = jn_kr_i32(r);
        jn_kr_tags(r);
        KCHECK(r);
    }
    return 0;
}

int jn_kafka_decode_offset_fetch(jn_kreader_t *r, int16_t v, jn_karena_t *a, jn_kafka_offset_fetch_req_t *out)
{
    int rc;
    if (v <= 7) {
        out->ngroups = 1;
        KALLOC(a, 1, jn_kafka_ofetch_group_t, out->groups);
        out->groups[0].group_id = jn_kr_str(r);
        if ((rc = decode_ofetch_topics(r, v, a, &out->groups[0])))
            return rc;
    } else {
        out->ngroups = jn_kr_array(r, false, 2);
        KCHECK(r);
        KALLOC(a, out->ngroups, jn_kafka_ofetch_group_t, out->groups);
        for (int32_t i = 0; i < out->ngroups; i++) {
            out->groups[i].group_id = jn_kr_str(r);
            if ((rc = decode_ofetch_topics(r, v, a, &out->groups[i])))
                return rc;
            jn_kr_tags(r);
            KCHECK(r);
        }
    }
    if (v >= 7)
        out->require_stable = jn_kr_bool(r);
    jn_kr_tags(r);
    return KDONE(r);
}

int jn_kafka_decode_describe_groups(jn_kreader_t *r, int16_t v, jn_karena_t *a,
                                    jn_kafka_describe_groups_req_t *out)
{
    out->ngroups = jn_kr_array(r, false, 1);
    KCHECK(r);
    KALLOC(a, out->ngroups, jn_kstr_t, out->groups);
    for (int32_t i = 0; i < out->ngroups; i++)
        out->groups[i] = jn_kr_str(r);
    if (v >= 3)
        out->include_authorized_operations = jn_kr_bool(r);
    jn_kr_tags(r);
    return KDONE(r);
}

int jn_kafka_decode_list_groups(jn_kreader_t *r, int16_t v, jn_karena_t *a, jn_kafka_list_groups_req_t *out)
{
    if (v >= 4) {
        out->nstates = jn_kr_array(r, false, 1);
        KCHECK(r);
        KALLOC(a, out->nstates, jn_kstr_t, out->states);
        for (int32_t i = 0; i < out->nstates; i++)
            out->states[i] = jn_kr_str(r);
    }
    jn_kr_tags(r);
    return KDONE(r);
}
