/* handle_ack.c - PUBACK, PUBREC, PUBREL, PUBCOMP.
 *
 * Outbound (server to client) QoS 1/2 messages live in the state's slots
 * until acknowledged; an acknowledgement frees a slot and lets blocked
 * cursors go on. Inbound QoS 2 ends with PUBREL: its packet id is
 * forgotten and PUBCOMP sent. Both are saved with a persistent session at
 * the next commit (state.c), so they survive a restart.
 */
#include "mqtt_int.h"

#include <string.h>

static mqtt_slot_t *slot_find(mqtt_state_t *st, uint16_t pid)
{
    if (!st->slots || pid == 0)
        return NULL;
    mqtt_slot_t *sl = &st->slots[pid % st->cap];
    return sl->pid == pid ? sl : NULL;
}

void jn__mqtt_handle_ack(jn_mqtt_session_t *s, uint8_t type, const jn_mqtt_ack_t *a)
{
    mqtt_state_t *st = s->st;
    mqtt_slot_t *sl = slot_find(st, a->packet_id);
    switch (type) {
    case JN_MQTT_PUBACK:
        if (sl && sl->qos == 1) {
            jn__mqtt_slot_release(st, sl);
            jn__mqtt_state_resume(st);
        }
        break;
    case JN_MQTT_PUBREC:
        if (!sl || sl->qos != 2) {
            jn__mqtt_send_ack(s, JN_MQTT_PUBREL, a->packet_id, JN_MQTT_RC_PACKET_ID_NOT_FOUND);
            break;
        }
        if (a->reason >= 0x80) { /* the flow ends here (4.3.3) */
            jn__mqtt_slot_release(st, sl);
            jn__mqtt_state_resume(st);
            break;
        }
        if (sl->state == 0) {
            sl->state = 1;
            st->dirty = true; /* delivered: the position may move past it */
            if (!sl->stream) { /* retained: only PUBREL is ever sent again */
                jn__mqtt_retained_unref(sl->ret);
                sl->ret = NULL;
            }
        }
        jn__mqtt_send_ack(s, JN_MQTT_PUBREL, a->packet_id, 0);
        break;
    case JN_MQTT_PUBCOMP:
        if (sl && sl->qos == 2 && sl->state == 1) {
            jn__mqtt_slot_release(st, sl);
            jn__mqtt_state_resume(st);
        }
        break;
    case JN_MQTT_PUBREL: {
        bool found = false;
        for (uint16_t i = 0; i < st->nq2; i++) {
            if (st->q2[i] == a->packet_id) {
                st->q2[i] = st->q2[--st->nq2];
                st->dirty = true; /* saved with the session (state.c) */
                found = true;
                break;
            }
        }
        jn__mqtt_send_ack(s, JN_MQTT_PUBCOMP, a->packet_id, found ? 0 : JN_MQTT_RC_PACKET_ID_NOT_FOUND);
        break;
    }
    default: break;
    }
}
