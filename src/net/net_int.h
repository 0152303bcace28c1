/* net_int.h - what conn.c and listener.c share inside src/net/. Not for
 * doors: they use conn.h only. */
#ifndef JN_NET_INT_H
#define JN_NET_INT_H

#include <openssl/ssl.h>

#include "../common/list.h"
#include "../common/pool.h"
#include "conn.h"

#define JN__NET_TLS_SCRATCH 65536 /* ciphertext read buffer of a group */

struct jn_net {
    uv_loop_t *loop;
    jn_net_config_t cfg;
    jn_list_t conns;     /* open conns (not yet closing their handle) */
    size_t nconns;
    jn_list_t listeners; /* open listeners */
    jn_list_t deferred;  /* conns with output to flush or input to offer */
    uv_idle_t idle;      /* runs |deferred| in the same loop iteration */
    uv_timer_t sweep;    /* deadlines, lingering, write stalls, shrinking */
    size_t handles;      /* open uv handles; the group is freed at 0 once freeing */
    bool freeing;
    char *scratch;       /* TLS ciphertext and discarded lingering input */
    jn_pool_t conn_pool; /* jn_conn_t: long-lived, kept apart from buffers (pool.h) */
    size_t shrunk;       /* buffer bytes given back to malloc since the last malloc_trim */
    jn_list_t spares;    /* I/O states of conns that went quiet, for reuse (conn.c) */
    size_t nspares;
    size_t spares_low;   /* fewest spares since the last sweep: those were not needed */
};

struct jn_listener {
    uv_tcp_t tcp;        /* first member: the close callback frees the listener */
    jn_net_t *net;
    jn_list_t link;      /* net->listeners */
    SSL_CTX *ctx;        /* NULL: plain TCP */
    jn_accept_cb on_accept;
    void *arg;
    int port;
    bool closed;
    char name[16];
};

/* Accepts one connection from |l| and runs its on_accept (conn.c). */
void jn__conn_accept(jn_listener_t *l);
/* One uv handle of the group closed (frees the group when the last one
 * closes after jn_net_free). */
void jn__net_handle_closed(jn_net_t *net);

#endif
