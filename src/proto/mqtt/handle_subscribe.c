/* handle_subscribe.c - SUBSCRIBE and UNSUBSCRIBE: each filter of a session
 * is a broker subscription (a cursor); "$share/<group>/<filter>" joins the
 * group's one shared cursor instead. Retained messages go out after the
 * SUBACK, per Retain Handling.
 */
#include "mqtt_int.h"

#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"
#include "../../core/filter.h"

/* Splits "$share/<group>/<filter>". Returns 1 when shared, 0 when not,
 * JN_EINVAL when malformed. */
static int split_share(const char *f, size_t len, const char **group, size_t *glen, const char **filter)
{
    if (len < 7 || memcmp(f, "$share/", 7) != 0)
        return 0;
    const char *g = f + 7;
    const char *slash = memchr(g, '/', len - 7);
    if (!slash || slash == g)
        return JN_EINVAL;
    for (const char *c = g; c < slash; c++)
        if (*c == '+' || *c == '#')
            return JN_EINVAL;
    *group = g;
    *glen = (size_t)(slash - g);
    *filter = slash + 1;
    if ((size_t)(slash + 1 - f) >= len)
        return JN_EINVAL;
    return 1;
}

void jn__mqtt_handle_subscribe(jn_mqtt_session_t *s, const jn_mqtt_subscribe_t *p)
{
    jn_mqtt_t *m = s->m;
    mqtt_state_t *st = s->st;
    bool v5 = s->version == JN_MQTT_V5;
    uint32_t sub_id = 0;
    if (v5 && JN_MQTT_HAS(&p->props, JN_MQTT_PROP_SUB_ID))
        sub_id = p->props.sub_id;
    uint8_t *codes = malloc(p->count ? p->count : 1);
    mqtt_msub_t **retain = calloc(p->count ? p->count : 1, sizeof *retain);
    if (!codes || !retain) {
        free(codes);
        free(retain);
        jn__mqtt_fail(s, JN_MQTT_RC_UNSPECIFIED);
        return;
    }
    bool changed = false;
    uint32_t i = 0;
    jn_mqtt_sub_iter_t it;
    jn_mqtt_sub_t e;
    jn_mqtt_sub_iter_init(&it, p);
    while (jn_mqtt_sub_next(&it, &e) && i < p->count) {
        const char *full = (const char *)e.filter.data;
        size_t flen = e.filter.len;
        const char *group = NULL, *filter = full;
        size_t glen = 0;
        uint8_t code = e.qos > 2 ? 2 : e.qos;
        int sh = split_share(full, flen, &group, &glen, &filter);
        size_t fl = flen - (size_t)(filter - full);
        if (sh < 0 || jn_filter_validate(filter, fl) < 0) {
            code = v5 ? JN_MQTT_RC_TOPIC_FILTER_INVALID : 0x80;
        } else if (sh == 1 && e.no_local) {
            free(codes);
            free(retain);
            jn__mqtt_fail(s, JN_MQTT_RC_PROTOCOL_ERROR); /* 3.8.3.1 */
            return;
        } else if (!jn_auth_allowed(jn_broker_auth(m->b), s->principal, JN_PERM_SUBSCRIBE, filter, fl)) {
            code = v5 ? JN_MQTT_RC_NOT_AUTHORIZED : 0x80;
        } else {
            mqtt_msub_t *ms = jn__mqtt_msub_find(st, full, flen);
            bool is_new = !ms;
            if (is_new && st->nsubs >= MQTT_SUBS_MAX) {
                code = v5 ? JN_MQTT_RC_QUOTA_EXCEEDED : 0x80;
                goto next;
            }
            if (!ms) {
                ms = jn__mqtt_msub_new(st, full, flen, (size_t)(filter - full));
                if (!ms) {
                    code = v5 ? JN_MQTT_RC_UNSPECIFIED : 0x80;
                    goto next;
                }
                ms->subno = st->next_subno++;
            }
            bool reopen = !is_new && (ms->qos == 0) != (code == 0) && !ms->share;
            ms->qos = code;
            ms->no_local = e.no_local;
            ms->rap = e.retain_as_published;
            ms->rh = e.retain_handling;
            ms->sub_id = sub_id;
            if (reopen && ms->sub) {
                jn_sub_close(ms->sub);
                ms->sub = NULL;
            }
            if (sh == 1 && !ms->share) {
                mqtt_share_t *share = jn__mqtt_share_get(m, group, glen, jn__mqtt_msub_filter(ms));
                if (share) {
                    ms->share = share;
                    jn_list_insert_tail(&share->members, &ms->share_node);
                    share->nmembers++;
                }
            }
            if (!ms->share && !ms->sub && jn__mqtt_msub_open(ms, false) < 0) {
                jn__mqtt_msub_free(ms, true);
                code = v5 ? JN_MQTT_RC_UNSPECIFIED : 0x80;
                goto next;
            }
            if (sh == 1 && !ms->share) {
                jn__mqtt_msub_free(ms, true);
                code = v5 ? JN_MQTT_RC_UNSPECIFIED : 0x80;
                goto next;
            }
            changed = true;
            if (!ms->share && (ms->rh == 0 || (ms->rh == 1 && is_new)))
                retain[i] = ms;
        }
    next:
        codes[i++] = code;
    }
    jn_buf_t *b;
    jn_mqtt_suback_t sa;
    memset(&sa, 0, sizeof sa);
    sa.packet_id = p->packet_id;
    sa.reasons.data = codes;
    sa.reasons.len = i;
    sa.props.limit = s->max_out;
    if (jn__mqtt_out_begin(s, &b) == 0 && jn_mqtt_encode_suback(b, s->version, &sa) > 0)
        jn__mqtt_out_end(s);
    for (uint32_t k = 0; k < i; k++)
        if (retain[k])
            jn__mqtt_retained_send(s, retain[k]);
    free(codes);
    free(retain);
    if (changed && st->expiry > 0)
        (void)jn__mqtt_state_save(st);
}

void jn__mqtt_handle_unsubscribe(jn_mqtt_session_t *s, const jn_mqtt_subscribe_t *p)
{
    mqtt_state_t *st = s->st;
    uint8_t *codes = malloc(p->count ? p->count : 1);
    if (!codes) {
        jn__mqtt_fail(s, JN_MQTT_RC_UNSPECIFIED);
        return;
    }
    bool changed = false;
    uint32_t i = 0;
    jn_mqtt_sub_iter_t it;
    jn_mqtt_sub_t e;
    jn_mqtt_sub_iter_init(&it, p);
    while (jn_mqtt_sub_next(&it, &e) && i < p->count) {
        mqtt_msub_t *ms = jn__mqtt_msub_find(st, (const char *)e.filter.data, e.filter.len);
        if (ms) {
            jn__mqtt_msub_free(ms, true);
            changed = true;
        }
        codes[i++] = ms ? JN_MQTT_RC_SUCCESS : JN_MQTT_RC_NO_SUBSCRIPTION_EXISTED;
    }
    jn_buf_t *b;
    jn_mqtt_suback_t sa;
    memset(&sa, 0, sizeof sa);
    sa.packet_id = p->packet_id;
    sa.reasons.data = codes;
    sa.reasons.len = i;
    sa.props.limit = s->max_out;
    if (jn__mqtt_out_begin(s, &b) == 0 && jn_mqtt_encode_unsuback(b, s->version, &sa) > 0)
        jn__mqtt_out_end(s);
    free(codes);
    if (changed && st->expiry > 0)
        (void)jn__mqtt_state_save(st);
    jn__mqtt_state_resume(st); /* freed slots may unblock the others */
}
