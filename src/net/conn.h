/* conn.h - the connection layer every door stands on: listeners, TCP
 * connections, TLS, capped input/output buffers, backpressure, timeouts.
 *
 * A door (HTTP, MQTT, AMQP, Kafka, WebSocket...) never touches a socket.
 * It opens a listener, gets each accepted connection in on_accept, and
 * sets a handler: a vtable of callbacks plus a |ctx| pointer. Bytes arrive
 * in on_data (plaintext: TLS is done below), bytes leave with
 * jn_conn_write and friends. The handler can be switched at any time,
 * which is how an HTTP connection becomes a WebSocket one (see
 * jn_http_upgrade in http/server.h).
 *
 * Groups: a jn_net_t holds the connections of one or more listeners on one
 * loop, one coarse sweep timer for their deadlines, and one idle handle
 * that flushes output produced outside a read callback. Everything runs on
 * the loop thread; nothing here is thread-safe.
 *
 * Input: one buffer per connection, allocated on the first read, capped
 * (jn_conn_set_limits), and freed again when the connection has been idle
 * with nothing buffered for shrink_ms. on_data gets every unconsumed byte
 * and returns how many it consumed; the rest stays buffered and is offered
 * again, together with what arrives next. |data| is valid only during the
 * call, except while reading is paused: then the buffer is neither moved
 * nor grown nor freed, so a handler may pause, keep views into unconsumed
 * bytes, and resume when it is done with them.
 *
 * Output: jn_conn_write and friends copy into a capped buffer (file
 * ranges of jn_conn_sendfile are queued in order without copying);
 * nothing is written to the socket inside those calls. The buffer is flushed once at
 * the end of the read callback (for output produced in on_data) or from
 * the group's idle handle in the same loop iteration (for output produced
 * elsewhere): uv_try_write first, uv_write for the rest. Above the high
 * water mark the connection stops reading (a peer that does not read its
 * answers cannot make more work) and on_drain runs once the output falls
 * back below the mark.
 *
 * Callbacks never run inside a jn_conn_* call of the same connection,
 * with one exception: jn_conn_abort called from outside this connection's
 * callbacks runs on_close before it returns.
 */
#ifndef JN_NET_CONN_H
#define JN_NET_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <uv.h>

#include "../common/buf.h"
#include "../common/error.h"
#include "../core/metrics.h"

typedef struct jn_net jn_net_t;
typedef struct jn_listener jn_listener_t;
typedef struct jn_conn jn_conn_t;

/* ---- groups ---- */

typedef struct jn_net_config {
    uint32_t tick_ms;        /* sweep period: deadlines fire up to this late (default 250) */
    uint32_t linger_ms;      /* graceful close: wait this long for the peer's FIN (default 2000) */
    uint32_t write_stall_ms; /* abort when a write makes no progress this long; 0 never (default 60000) */
    uint32_t shrink_ms;      /* free the buffers of a conn idle this long (default 1000) */
    size_t in_max;           /* default input cap of a new conn (default 1 MiB) */
    size_t out_high_water;   /* default output high water (default 1 MiB) */
    size_t out_max;          /* default output hard cap (default 4 x high water) */
    /* Optional metrics (NULL: none); the gauge counts open connections. */
    jn_counter_t *m_bytes_in;
    jn_counter_t *m_bytes_out;
    jn_gauge_t *m_conns;
} jn_net_config_t;

void jn_net_config_default(jn_net_config_t *c);

/* Creates a group on |loop| (|cfg| NULL: defaults). NULL on ENOMEM. */
jn_net_t *jn_net_new(uv_loop_t *loop, const jn_net_config_t *cfg);
/* Closes every listener, then every connection still open (best effort:
 * queued output goes out if the socket takes it at once, then abort; each
 * handler's on_close runs), and frees the group once libuv has closed all
 * handles: run the loop to finish. */
void jn_net_free(jn_net_t *net);
uv_loop_t *jn_net_loop(const jn_net_t *net);
/* Open connections of the group (accepted, not yet closed). */
size_t jn_net_connections(const jn_net_t *net);
/* I/O states of quiet conns parked for reuse (docs/net.md; 0 under ASan). */
size_t jn_net_spares(const jn_net_t *net);

/* ---- listeners ---- */

/* Called for each accepted connection. The callee sets a handler with
 * jn_conn_set_handler (and may write: e.g. a greeting), or refuses with
 * jn_conn_abort. A conn left without a handler is aborted on return. For
 * TLS the handshake runs afterwards; on_data only ever sees plaintext. */
typedef void (*jn_accept_cb)(jn_conn_t *conn, void *arg);

/* Listens on |host|:|port| (IPv4 or IPv6 literal, "[v6]", or "localhost"
 * for 127.0.0.1); |port| 0 picks a free port (see jn_listener_port). With
 * |cert_file| and |key_file| (PEM chain, key) the listener speaks TLS 1.2+.
 * |name| ("http", "mqtt") prefixes log lines. On success *out is the
 * listener, owned by the group (close it with jn_listener_close or let
 * jn_net_free do it). Returns 0, JN_EINVAL (bad address, cert or key:
 * logged), JN_EIO (bind or listen failed: logged), JN_ENOMEM. */
int jn_listener_open(jn_net_t *net, const char *name, const char *host, int port, const char *cert_file,
                     const char *key_file, jn_accept_cb on_accept, void *arg, jn_listener_t **out) JN_MUST_CHECK;
/* The bound port. */
int jn_listener_port(const jn_listener_t *l);
bool jn_listener_is_tls(const jn_listener_t *l);
/* Stops accepting; connections already accepted stay open. */
void jn_listener_close(jn_listener_t *l);

/* ---- handlers ----
 * The vtable is not copied: it must outlive its use (make it static
 * const). Any callback but on_data and on_close may be NULL. */
typedef struct jn_conn_handler {
    /* Plaintext input: every unconsumed byte, oldest first (|len| > 0).
     * Returns the number of bytes consumed (<= len). The rest stays in
     * the input buffer and is offered again with more data; a handler
     * that consumes less than it could must pause, or it is not called
     * again until new bytes arrive. If the buffer is full (at its cap)
     * and the handler neither consumed anything nor paused nor closed,
     * the conn is aborted with reason JN_ETOOBIG. */
    size_t (*on_data)(jn_conn_t *conn, const uint8_t *data, size_t len);
    /* Output fell below high water after jn_conn_above_high_water() was
     * true (or a write returned JN_EAGAIN). */
    void (*on_drain)(jn_conn_t *conn);
    /* The conn is gone: runs exactly once, whatever closed it. |reason|:
     * 0 closed by jn_conn_close/abort (or jn_net_free); JN_ECLOSED the
     * peer closed or reset; JN_EIO a socket error; JN_EPROTO TLS failed;
     * JN_ETOOBIG input overflow; JN_EAGAIN a timeout or write stall with
     * the default on_timeout. After it the conn must not be touched (it
     * is freed once libuv closed its handle). */
    void (*on_close)(jn_conn_t *conn, int reason);
    /* The deadline of jn_conn_set_timeout passed (it is cleared before
     * the call; set it again to re-arm). NULL: abort with JN_EAGAIN. */
    void (*on_timeout)(jn_conn_t *conn);
    /* The peer closed its sending side (TCP FIN or TLS close_notify); all
     * input before it was offered. NULL: jn_conn_close (queued output is
     * still flushed, then the conn closes). */
    void (*on_eof)(jn_conn_t *conn);
} jn_conn_handler_t;

/* Sets the handler and its context. May be called at any time, also from
 * inside another handler's callback: the new handler gets the callbacks
 * from then on, and input still buffered (the bytes the old on_data did
 * not consume) is offered to its on_data never inside this call: right
 * after the old on_data returns when switched from there, else from the
 * loop. |h| NULL detaches: input is kept, nothing is delivered, and
 * on_close is not called, until the next handler is set; a detached conn
 * must get a handler before control returns to the loop. */
void jn_conn_set_handler(jn_conn_t *conn, const jn_conn_handler_t *h, void *ctx);
void *jn_conn_ctx(const jn_conn_t *conn);
const jn_conn_handler_t *jn_conn_handler(const jn_conn_t *conn);

/* Caps of this conn: |in_max| the input buffer (unconsumed bytes),
 * |out_high_water| where backpressure starts, |out_max| the hard cap on
 * queued output (>= out_high_water). 0 keeps a value. Input already
 * buffered beyond a lowered cap is kept. */
void jn_conn_set_limits(jn_conn_t *conn, size_t in_max, size_t out_high_water, size_t out_max);
/* Growth hint: the handler needs |total| unconsumed bytes before it can
 * progress (e.g. head + Content-Length): the buffer grows to that at
 * once (up to in_max) instead of doubling. */
void jn_conn_need_input(jn_conn_t *conn, size_t total);

/* ---- input flow ---- */

/* Stops delivering input (and reading, once the free tail of the input
 * buffer or the TLS decrypt backlog fills). While paused the input buffer
 * does not move: views into unconsumed bytes stay valid. */
void jn_conn_pause_reading(jn_conn_t *conn);
/* Resumes; input still buffered is offered again soon, from the loop. */
void jn_conn_resume_reading(jn_conn_t *conn);
bool jn_conn_is_paused(const jn_conn_t *conn);
/* Drops the first |n| unconsumed bytes from outside on_data (e.g. once an
 * asynchronous request that was kept in the buffer is finished). |n| is
 * clamped to what is buffered. Inside on_data, return the count instead. */
void jn_conn_consume(jn_conn_t *conn, size_t n);
/* Unconsumed input bytes buffered. */
size_t jn_conn_input_len(const jn_conn_t *conn);

/* ---- output ----
 * All return 0, JN_ETOOBIG (would pass the hard cap: nothing was queued),
 * JN_ENOMEM, or JN_ECLOSED (the conn is closing: nothing was queued). A
 * write that leaves the conn above high water still returns 0; check
 * jn_conn_above_high_water to be called back in on_drain. */
int jn_conn_write(jn_conn_t *conn, const void *data, size_t len) JN_MUST_CHECK;
/* All of |iov| or nothing. */
int jn_conn_writev(jn_conn_t *conn, const struct iovec *iov, int iovcnt) JN_MUST_CHECK;
/* Encode in place: jn_conn_reserve returns room for |n| bytes at the end
 * of the output (NULL: over the cap, ENOMEM, or closing), valid until the
 * next call on this conn; jn_conn_commit(conn, used) queues the first
 * |used| (<= n) of them. */
uint8_t *jn_conn_reserve(jn_conn_t *conn, size_t n);
void jn_conn_commit(jn_conn_t *conn, size_t used);
/* The output buffer itself, for encoders built on jn_buf_* (append, then
 * truncate b->len back to a saved mark to undo). Call jn_conn_commit(conn,
 * 0) after appending so that a flush is scheduled. NULL when closing. A
 * jn_conn_sendfile call empties it (what it held is queued before the
 * file range): marks taken before that call are void after it. */
jn_buf_t *jn_conn_outbuf(jn_conn_t *conn);
/* Zero-copy output: queues |len| bytes of file |fd| from offset |off|,
 * after everything written so far and before anything written later
 * (the order of the byte stream is the order of the calls). Plain TCP
 * sends the range with sendfile(2), continuing across partial writes;
 * TLS reads it into the output buffer now (it must be encrypted). The
 * file must hold the range until it is sent: on success the conn owns
 * |ref| and calls |unref|(ref) exactly once (NULL: never) when the range
 * is no longer needed: sent, read (TLS, possibly before this returns), or
 * dropped when the conn closes. File bytes count in jn_conn_pending and
 * for high water, but not against out_max (they take no memory), except
 * on TLS. Returns 0, JN_EINVAL (fd < 0, range overflows), JN_ECLOSED,
 * JN_ENOMEM, and for TLS JN_ETOOBIG (over out_max) or JN_EIO (the file is
 * shorter or unreadable); on error nothing is queued and |unref| is not
 * called. */
int jn_conn_sendfile(jn_conn_t *conn, int fd, uint64_t off, size_t len, void *ref,
                     void (*unref)(void *ref)) JN_MUST_CHECK;
/* Bytes queued and not yet taken by the kernel (TLS: ciphertext). */
size_t jn_conn_pending(const jn_conn_t *conn);
/* Whether pending output is above high water. A true answer promises an
 * on_drain call when it falls below again. */
bool jn_conn_above_high_water(jn_conn_t *conn);

/* ---- closing ---- */

/* Graceful close: stops delivering input, flushes queued output (bounded
 * by write_stall_ms), shuts the write side down (TLS: close_notify first)
 * and discards input until the peer closes or linger_ms passes. on_close
 * (reason 0) runs at the end, never inside this call. Idempotent. */
void jn_conn_close(jn_conn_t *conn);
/* Closes now; queued output is dropped. on_close runs before this
 * returns, or, when called from inside one of this conn's callbacks,
 * right after that callback returns. Idempotent. */
void jn_conn_abort(jn_conn_t *conn);
/* Whether jn_conn_close or jn_conn_abort was called or the conn failed. */
bool jn_conn_is_closing(const jn_conn_t *conn);

/* ---- timers ---- */

/* Sets the deadline |ms| from now (0: none). It fires within tick_ms
 * after it passes, calling on_timeout. One deadline per conn: setting it
 * replaces the previous one. Cheap: no timer per conn. */
void jn_conn_set_timeout(jn_conn_t *conn, uint64_t ms);

/* ---- identity ---- */

/* The peer address as text ("127.0.0.1", "::1"), never NULL ("" if it
 * could not be read at accept). Formatted on demand into a thread-local
 * ring of four buffers: the text stays valid for the next three
 * jn_conn_peer calls on this thread; copy it to keep it longer. */
const char *jn_conn_peer(const jn_conn_t *conn);
bool jn_conn_is_loopback(const jn_conn_t *conn);
bool jn_conn_is_tls(const jn_conn_t *conn);
jn_net_t *jn_conn_net(const jn_conn_t *conn);
uv_loop_t *jn_conn_loop(const jn_conn_t *conn);

#endif
