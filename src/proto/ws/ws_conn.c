/* ws_conn.c - the glue between a WebSocket codec (ws_codec.c) and the
 * jn_conn_t it speaks over, shared by the doors that carry WebSocket: the
 * JSON/binary door at /v1/ws (ws_door.c) and MQTT over WebSocket at /mqtt
 * (proto/mqtt/ws_transport.c).
 */
#include "ws_internal.h"

#include <openssl/rand.h>

int jn_ws_conn_write(jn_conn_t *conn, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    struct iovec iov[2] = {{(void *)a, alen}, {(void *)b, blen}};
    int rc = jn_conn_writev(conn, iov, b && blen ? 2 : 1);
    /* At the hard cap: the codec keeps the frame and retries on drain. */
    return rc == JN_ETOOBIG ? JN_EAGAIN : rc;
}

int jn_ws_random(void *arg, uint8_t *buf, size_t len)
{
    (void)arg;
    return len <= INT32_MAX && RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}
