/* bench_int.h - what the bench core (bench.c, bench_conn.c) shares with the
 * doors (door_*.c). A door is one file: a jn_bench_door_t with its own
 * option table and configuration struct, listed in bench.c's door table.
 *
 * Life of a run: the core parses options (common ones into jn_bench_opts_t,
 * the door's into its cfg struct), resolves the address, then calls
 * door->open, which connects. When every connection is ready (MQTT: all
 * CONNACKs and SUBACKs in) the door calls jn__bench_ready: the clock
 * starts and door->start begins sending, taking one permit per message
 * from jn__bench_take. When the duration ends or the count is used up the
 * core enters the drain phase (door->drain: stop sending) and waits, at
 * most JN_BENCH_DRAIN_NS, until door->settled says nothing is in flight;
 * doors call jn__bench_poke after any event that may settle the run. Then
 * door->close closes every handle, the loop ends, the summary is printed
 * and door->free releases memory. Everything runs on one thread.
 */
#ifndef JN_BENCH_INT_H
#define JN_BENCH_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <jansson.h>
#include <uv.h>

#include "bench/hist.h"
#include "common/buf.h"

#define JN_BENCH_DRAIN_NS 5000000000ull   /* wait for in-flight after the end */
#define JN_BENCH_CONNECT_NS 10000000000ull /* every connection ready within */
#define JN_BENCH_SIZE_MAX (16u << 20)      /* largest --size */
#define JN_BENCH_READ_CHUNK 65536

typedef struct jn_bench jn_bench_t;

/* One option: --name VALUE (or --name=VALUE); a FLAG takes no value. The
 * value is stored at |offset| in the options struct (common options) or in
 * the door's cfg struct (door options). */
enum jn_bench_optkind { JN_BOPT_INT, JN_BOPT_U64, JN_BOPT_DOUBLE, JN_BOPT_STR, JN_BOPT_FLAG };
typedef struct jn_bench_opt {
    const char *name;           /* without the leading "--"; NULL ends a table */
    enum jn_bench_optkind kind;
    size_t offset;              /* of an int, uint64_t, double, const char * or bool */
    double min, max;            /* accepted range of a number */
    const char *help;           /* one line for --help */
} jn_bench_opt_t;

typedef struct jn_bench_door jn_bench_door_t;

/* The common options (defaults set by jn__bench_parse). */
typedef struct jn_bench_opts {
    const jn_bench_door_t *door;
    const char *url;     /* --url, else the door's default */
    const char *host;    /* --host overrides the URL's host */
    int port;            /* --port overrides the URL's port (0: not given) */
    double duration_s;   /* --duration, default 10 */
    uint64_t count;      /* --count, 0 = unlimited within the duration */
    int size;            /* --size, payload bytes, default 64, >= 16 */
    bool json;           /* --json */
    bool quiet;          /* --quiet: no progress line */
    bool help;           /* --help */
    void *cfg;           /* the door's options, door->cfg_size bytes, owned */
} jn_bench_opts_t;

struct jn_bench_door {
    const char *name;          /* "http" */
    const char *summary;       /* one line for --help */
    const char *default_url;   /* used without --url */
    int default_port;          /* when the URL names none */
    const char *schemes[3];    /* accepted URL schemes, NULL-terminated */
    const jn_bench_opt_t *opts; /* the door's options, NULL-name terminated */
    size_t cfg_size;           /* bytes of the door's cfg struct */
    void (*defaults)(void *cfg);
    /* Checks the options together; on a problem writes a message to |err|
     * and returns -1 (exit code 2). */
    int (*check)(const jn_bench_opts_t *o, char *err, size_t errlen);
    /* Allocates the door's state (b->door_state) and starts connecting.
     * Returns 0, or a negative jn_err after jn__bench_fail. */
    int (*open)(jn_bench_t *b);
    void (*start)(jn_bench_t *b);   /* the clock runs: start sending */
    void (*drain)(jn_bench_t *b);   /* stop sending; may be NULL */
    bool (*settled)(jn_bench_t *b); /* nothing left in flight */
    void (*tick)(jn_bench_t *b);    /* once a second (keep-alives); may be NULL */
    void (*close)(jn_bench_t *b);   /* close every handle */
    void (*free)(jn_bench_t *b);    /* after the loop ended: free the state */
    /* Adds the door's settings to |config| for the summary. */
    void (*describe)(const jn_bench_t *b, json_t *config);
};

enum jn_bench_phase { JN_BENCH_CONNECTING, JN_BENCH_RUNNING, JN_BENCH_DRAINING, JN_BENCH_DONE };

struct jn_bench {
    uv_loop_t loop;
    const jn_bench_opts_t *o;
    void *cfg;                     /* == o->cfg */
    void *door_state;              /* the door's, freed by door->free */
    struct sockaddr_storage addr;  /* resolved target */
    char host[256];                /* target host as given */
    int port;                      /* target port */
    char path[1024];               /* URL path (with query), "/" when none */
    enum jn_bench_phase phase;

    uint64_t issued;            /* permits handed out by jn__bench_take */
    uint64_t sent;              /* messages written to a socket */
    uint64_t sent_bytes;        /* payload bytes of those */
    uint64_t delivered;         /* messages that arrived (or were answered 2xx) */
    uint64_t delivered_bytes;   /* payload bytes of those */
    uint64_t errors;            /* failed requests, bad payloads, broken connections */
    uint64_t acked;             /* broker acknowledgements (MQTT QoS >= 1) */
    uint64_t expected;          /* deliveries the protocol should make (loss accounting) */
    uint64_t duplicates;        /* deliveries seen twice by one receiver */
    bool has_loss;              /* the door fills expected/duplicates */
    jn_hist_t lat;              /* latency, ns */

    uint64_t t_ready;           /* mono ns when the clock started */
    uint64_t t_send_end;        /* mono ns when sending stopped */
    uint64_t t_last_delivery;   /* mono ns of the last delivery */
    uint64_t t_drain_deadline;  /* mono ns when draining gives up */

    uv_timer_t tick_timer;      /* 1 s: progress, door->tick, deadlines */
    uv_timer_t end_timer;       /* the duration */
    uv_timer_t poke_timer;      /* 0 ms: checks the end outside door callbacks */
    uv_signal_t sigint;         /* Ctrl-C ends the run early, with a summary */
    bool poke_armed;            /* poke_timer pending */
    bool interrupted;           /* ended by SIGINT */
    bool end_requested;         /* jn__bench_end: drain at the next poke */
    uint64_t t_created;         /* mono ns when connecting began */
    bool progress;              /* print the live line */
    uint64_t prev_sent, prev_delivered; /* for the progress rates */
    int exit_code;              /* 1 after jn__bench_fail */
    char fail_msg[512];
};

/* Parses argv (argv[0] = "bench", argv[1] = door). Returns 0 and fills |o|
 * (o->cfg allocated: free with jn__bench_opts_free), or writes a message
 * to |err| and returns 2; o->help set for --help (returns 0). */
int jn__bench_parse(int argc, char **argv, jn_bench_opts_t *o, char *err, size_t errlen);
void jn__bench_opts_free(jn_bench_opts_t *o);

/* Splits "scheme://host[:port][/path]" (IPv6 hosts in brackets). |port| is
 * 0 when absent. Returns 0 or JN_EINVAL. */
int jn__bench_url_split(const char *url, char *scheme, size_t scheme_len, char *host, size_t host_len,
                        int *port, char *path, size_t path_len);

/* For doors. */
/* Starts the clock (every connection is ready). Idempotent. */
void jn__bench_ready(jn_bench_t *b);
/* True and one message accounted when another message may be sent now;
 * false once the count is used up or the run is not RUNNING. */
bool jn__bench_take(jn_bench_t *b);
/* Counts a delivery of |bytes| payload bytes with latency |lat_ns|. */
void jn__bench_delivered(jn_bench_t *b, size_t bytes, uint64_t lat_ns);
/* Ends sending now, as if the duration had run out (a consumer that has
 * read everything it was asked to). In-flight messages still drain. */
void jn__bench_end(jn_bench_t *b);
/* Checks (later, outside the caller's stack) whether the run is over. */
void jn__bench_poke(jn_bench_t *b);
/* Ends the run with exit code 1 and |fmt| as the reason. */
void jn__bench_fail(jn_bench_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A TCP connection with a capped input buffer and double-buffered output:
 * the door appends to |out| and calls jn__bconn_flush; while one write is
 * in flight the next batch collects in |out|. */
typedef struct jn_bconn jn_bconn_t;
struct jn_bconn {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    jn_bench_t *b;
    void *owner;         /* the door's per-connection state */
    jn_buf_t in;         /* received, not yet parsed */
    jn_buf_t out;        /* to send next */
    jn_buf_t wr;         /* being written */
    bool open;           /* tcp handle initialised, not closed */
    bool connected;
    bool writing;
    bool was_connected;  /* in on_close: the connection had been established */
    /* Connected (a failed connect goes to on_close with was_connected
     * false). */
    void (*on_connect)(jn_bconn_t *c);
    /* New bytes in |in|: parse and jn_buf_consume. Return < 0 to close. */
    int (*on_data)(jn_bconn_t *c);
    /* A write finished: a chance to append more before the next flush. */
    void (*on_writable)(jn_bconn_t *c);
    /* The connection is gone: |err| 0 when we closed it, else the libuv
     * error (or JN_EPROTO...) that broke it. The struct may be reused. */
    void (*on_close)(jn_bconn_t *c, int err);
    int close_err;
};
/* Initialises buffers with caps |in_max| and |out_max|. */
void jn__bconn_init(jn_bconn_t *c, jn_bench_t *b, void *owner, size_t in_max, size_t out_max);
/* Connects to b->addr. Returns 0 or a libuv error (no callbacks then, but
 * the handle closes in the background: connect again only after the loop
 * ran). */
int jn__bconn_connect(jn_bconn_t *c);
/* Starts writing |out| unless a write is in flight. */
void jn__bconn_flush(jn_bconn_t *c);
/* Closes the handle (on_close follows with |err|). Idempotent. */
void jn__bconn_close(jn_bconn_t *c, int err);
/* Frees the buffers (after on_close). */
void jn__bconn_free(jn_bconn_t *c);

/* ---- client connections (bench_client.c) ----
 * What the doors with many connections in two roles share (mqtt, ws, amqp,
 * kafka): the door's connection struct starts with a jn_bclient_t, and a
 * jn_bfleet_t in the door's state holds them all, publishers first. The
 * clock starts when every connection is ready; one lost before that fails
 * the run, one lost after counts as an error and the run goes on without
 * it (what it had in flight shows as lost). */
typedef struct jn_bfleet jn_bfleet_t;

typedef struct jn_bclient {
    jn_bconn_t c;        /* c.owner: the door's struct (which starts here) */
    jn_bfleet_t *fleet;
    int idx;             /* among publishers, or among subscribers */
    bool is_pub;
    bool ready;          /* set up: counted by jn__bclient_ready */
    bool dead;           /* lost after the start; no longer counted on */
    uint32_t inflight;   /* publisher: sent, not yet acknowledged */
    uint64_t published;  /* publisher: messages sent */
} jn_bclient_t;

/* A door's part: its words for messages and its protocol callbacks. */
typedef struct jn_bfleet_kind {
    const char *door;      /* "mqtt", in warnings */
    const char *pub, *sub; /* role names: "publisher", "subscriber" */
    const char *malformed; /* why a connection closed on JN_EPROTO */
    const char *too_big;   /* ... on JN_ETOOBIG */
    const char *closed;    /* ... on JN_ECLOSED; NULL: "closed" */
    void (*on_connect)(jn_bconn_t *c);
    int (*on_data)(jn_bconn_t *c);
    /* Queues what publisher |k| may send now; called when a write ends,
     * by jn__bfleet_start, the pacing timer and jn__bclient_parsed. */
    void (*fill)(jn_bclient_t *k);
} jn_bfleet_kind_t;

struct jn_bfleet {
    jn_bench_t *b;
    const jn_bfleet_kind_t *kind;
    char *conns;           /* the door's array: nconns structs of |stride| bytes */
    size_t stride;
    int npub, nconns, nready;
    bool warned_dead;      /* the first loss is reported, not every one */
    uv_timer_t pace_timer; /* --rate: publishers filled every JN_BENCH_PACE_MS */
    bool pace_init;
};
#define JN_BENCH_PACE_MS 1

/* Sets up |f| over the door's zeroed array |conns| of |npub| + |nsub|
 * structs of |stride| bytes: roles, indexes, and each connection's bconn
 * with caps |in_max| and |out_max| and |kind|'s callbacks. Connects
 * nothing yet. The door owns |conns| and |kind| (both outlive |f|). */
void jn__bfleet_init(jn_bfleet_t *f, jn_bench_t *b, const jn_bfleet_kind_t *kind, void *conns, size_t stride,
                     int npub, int nsub, size_t in_max, size_t out_max);
/* The |i|th connection (0 <= i < nconns). */
jn_bclient_t *jn__bfleet_at(jn_bfleet_t *f, int i);
/* With --rate: a timer that fills publishers while the run sends. */
void jn__bfleet_pace(jn_bfleet_t *f);
/* Connects every connection. Returns 0, or JN_EIO after jn__bench_fail. */
int jn__bfleet_connect(jn_bfleet_t *f);
/* The clock runs: starts the pacing timer and fills every publisher. */
void jn__bfleet_start(jn_bfleet_t *f);
/* Sending ends: stops the pacing timer. */
void jn__bfleet_drain(jn_bfleet_t *f);
/* No live publisher waits for an acknowledgement and every expected
 * delivery arrived. */
bool jn__bfleet_settled(jn_bfleet_t *f);
/* Closes the pacing timer and every connection. */
void jn__bfleet_close(jn_bfleet_t *f);
/* Frees every connection's buffers (after the loop ended), not the array. */
void jn__bfleet_free(jn_bfleet_t *f);
/* |k| is set up (idempotent); the clock starts when all are. */
void jn__bclient_ready(jn_bclient_t *k);
/* Messages publisher |k| may still send at |rate| per second since the
 * clock started (UINT64_MAX when |rate| is 0: flat out). */
uint64_t jn__bclient_allowance(const jn_bclient_t *k, double rate);
/* Ends a door's on_data: drops the |used| bytes it parsed and, unless
 * |rc| < 0, lets a publisher send more, flushes and checks whether the run
 * is over. Returns |rc| when negative (on_data's contract), else 0. */
int jn__bclient_parsed(jn_bclient_t *k, size_t used, int rc);

/* The doors. */
extern const jn_bench_door_t jn__bench_door_http;
extern const jn_bench_door_t jn__bench_door_mqtt;
extern const jn_bench_door_t jn__bench_door_amqp;
extern const jn_bench_door_t jn__bench_door_kafka;
extern const jn_bench_door_t jn__bench_door_ws;

/* Exposed for tests: HTTP response framing (door_http.c). Parses the
 * response at the start of |p| (|len| bytes): returns its total length
 * (head and body) and sets |*status| and |*close| (server will close), or
 * JN_EPARTIAL when more bytes are needed, JN_EPROTO when malformed,
 * JN_EUNSUPPORTED when the body is delimited by the connection's end. */
int jn__bench_http_response(const uint8_t *p, size_t len, int *status, bool *close);

/* Exposed for tests: MQTT remaining length (door_mqtt.c). put writes 1..4
 * bytes (v < 268435456) and returns the count, or JN_EINVAL; get returns
 * bytes consumed, JN_EPARTIAL, or JN_EPROTO for a fifth byte. */
int jn__bench_mqtt_len_put(uint8_t *out, uint32_t v);
int jn__bench_mqtt_len_get(const uint8_t *p, size_t len, uint32_t *v);

#endif
