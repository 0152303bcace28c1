/* config.h - the server's configuration: one static option table that is
 * the single source for the config file parser, the command-line flags,
 * `junction serve --help` and `junction serve --print-config`.
 *
 * File format (junction.conf): one `key = value` per line; lines whose
 * first non-blank character is '#' are comments; blank lines are ignored.
 * There are no inline comments (a '#' belongs to the value, as in the
 * filter of `map = sensors/# -> iot`). A key given twice in one file is an
 * error, except for repeatable keys (`map`), which append.
 *
 * Flags: `--key value` or `--key=value` with the same names (a '-' in a
 * name may be written for '_'); they override the file. A repeatable key
 * given as a flag replaces the file's list. A boolean flag alone
 * (`--streams.auto_create`) means true.
 *
 * Sizes accept the suffixes k, m, g (KiB, MiB, GiB; case-insensitive,
 * optionally followed by "b" or "ib").
 */
#ifndef JN_SERVER_CONFIG_H
#define JN_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../common/error.h"
#include "../core/broker.h"
#include "../net/addr.h" /* jn_listen_parse, for the *.listen options */

#define JN_CONFIG_DEFAULT_FILE "junction.conf"
#define JN_CONFIG_FILE_MAX (1u << 20) /* bytes of a config file */
#define JN_CONFIG_MAPS_MAX 1024       /* `map` entries */
#define JN_CONFIG_ERR_MAX 512         /* a good size for |err| buffers */

/* allow_anonymous */
enum jn_anon_policy {
    JN_ANON_AUTO = 0, /* anonymous only when every listener is loopback */
    JN_ANON_TRUE = 1,
    JN_ANON_FALSE = 2,
};

typedef struct jn_config {
    char *data_dir;
    int log_level;        /* enum jn_log_level */
    char *http_listen;    /* "host:port"; "" = no plain HTTP listener */
    char *https_listen;   /* "host:port"; "" = off */
    char *tls_cert;       /* PEM file, for https.listen */
    char *tls_key;        /* PEM file, for https.listen */
    int allow_anonymous;  /* enum jn_anon_policy */

    int64_t http_max_body;
    int64_t http_idle_timeout_ms;
    int64_t http_request_timeout_ms;
    int64_t http_max_connections;
    int64_t http_max_header_bytes;
    int64_t http_max_request_line;
    int64_t http_max_headers;

    bool streams_auto_create;
    int64_t streams_default_partitions;
    int streams_fsync;    /* enum jn_fsync_policy */
    int64_t streams_fsync_interval_ms;
    int64_t streams_retention_ms;    /* -1 = forever */
    int64_t streams_retention_bytes; /* -1 = unlimited */
    int64_t streams_segment_bytes;
    int64_t streams_segment_ms;      /* 0 = never roll by age */
    int64_t streams_max_batch_bytes;
    int64_t maintenance_interval_ms;

    jn_mapping_t *maps;   /* owned, in order of appearance */
    size_t nmaps;

    char *kafka_listen;   /* "host:port"; "" = no Kafka listener */
    char *kafka_advertised_host; /* "" = the listen host */
    int64_t kafka_max_request_bytes;
    char *mqtt_listen;    /* "host:port"; "" = no MQTT listener */
    char *mqtt_tls_listen; /* "host:port"; "" = off */
    int64_t mqtt_max_packet_size;
    int64_t mqtt_max_inflight;
    int64_t mqtt_max_queued_bytes;
    int64_t mqtt_session_expiry_max;
    int64_t mqtt_keepalive_max;
    char *amqp_listen;     /* "host:port"; "" = no AMQP listener */
    char *amqp_tls_listen; /* "host:port"; "" = off */

    char *webhooks_allow_hosts;          /* CIDRs/hosts exempt from the webhook SSRF rules */
    int64_t webhooks_max_concurrency_total;
    int64_t webhooks_default_timeout_ms;
    char *webhooks_retry_schedule;       /* "5s,5m,30m,..." */

    char *admin_user;     /* NULL or "" = none */
    char *admin_password;
} jn_config_t;

enum jn_opt_type {
    JN_OPT_STRING, /* char *; strdup'ed */
    JN_OPT_INT,    /* int64_t within [min, max] */
    JN_OPT_SIZE,   /* int64_t within [min, max], k/m/g suffixes */
    JN_OPT_BOOL,   /* bool */
    JN_OPT_ENUM,   /* int: the index of the value in |choices| */
    JN_OPT_LISTEN, /* char *; "host:port", or "" when |min| is 0 */
    JN_OPT_MAP,    /* jn_config_t.maps: repeatable "filter -> stream" */
};

typedef struct jn_option {
    const char *name;     /* as written in the file and after "--" */
    enum jn_opt_type type;
    const char *def;      /* default, as text, parsed like a value from the file */
    const char *metavar;  /* placeholder in --help ("DIR", "N", "SIZE"...) */
    const char *help;     /* one line */
    size_t offset;        /* of the field in jn_config_t */
    int64_t min, max;     /* INT, SIZE range; STRING/LISTEN: min 1 = must not be empty */
    const char *const *choices; /* ENUM: NULL-terminated */
} jn_option_t;

/* The option table, in the order shown by --help; |*n| gets its length. */
const jn_option_t *jn_config_options(size_t *n);

/* Fills |c| with the defaults of the table. Returns 0 or JN_ENOMEM (|c| is
 * then still safe to pass to jn_config_free). */
int jn_config_init(jn_config_t *c) JN_MUST_CHECK;
/* Frees what |c| owns. Safe on a zeroed struct; |c| is zeroed after. */
void jn_config_free(jn_config_t *c);

/* Sets option |name| from text. On JN_EINVAL |err| (may be NULL) gets,
 * without any location prefix, "unknown option 'foo'" or
 * "invalid value 'x' for 'http.max_body' (expected ...)". JN_ENOMEM,
 * JN_ETOOBIG (too many map entries, with a message). A repeatable option
 * appends. */
int jn_config_set(jn_config_t *c, const char *name, const char *value, char *err,
                  size_t errlen) JN_MUST_CHECK;

/* Parses config text (|len| bytes, need not be NUL-terminated). |origin|
 * (the file name) prefixes messages: "junction.conf:12: unknown option
 * 'foo'". Options not in the text keep their values. Returns 0 or the
 * first error (JN_EINVAL, JN_ETOOBIG, JN_ENOMEM); options before the bad
 * line stay set. */
int jn_config_parse(jn_config_t *c, const char *text, size_t len, const char *origin, char *err,
                    size_t errlen) JN_MUST_CHECK;
/* Reads and parses |path|. JN_EIO when it cannot be read ("path: cannot
 * read: reason"), JN_ETOOBIG over JN_CONFIG_FILE_MAX, else as above. */
int jn_config_load_file(jn_config_t *c, const char *path, char *err, size_t errlen) JN_MUST_CHECK;

/* Applies flags argv[0..argc-1] (the arguments after `serve`). `--config`
 * is skipped here (see jn_config_load_args). Messages start with
 * "command line: ". JN_EINVAL also for a stray positional argument or a
 * missing value. */
int jn_config_apply_args(jn_config_t *c, int argc, char *const *argv, char *err,
                         size_t errlen) JN_MUST_CHECK;

/* The whole start-up sequence: defaults, then the file (`--config FILE`,
 * else ./junction.conf when it exists, else none), then the flags, then
 * jn_config_validate. |c| must be initialised. On error |c| holds what was
 * applied so far and still needs jn_config_free. */
int jn_config_load_args(jn_config_t *c, int argc, char *const *argv, char *err,
                        size_t errlen) JN_MUST_CHECK;

/* Checks across options: at least one listener; https.listen needs
 * tls.cert and tls.key; admin.user and admin.password come together.
 * JN_EINVAL with a message. */
int jn_config_validate(const jn_config_t *c, char *err, size_t errlen) JN_MUST_CHECK;

/* True for 127.0.0.0/8, ::1, ::ffff:127.x and "localhost". */
bool jn_host_is_loopback(const char *host);
/* True when every configured listener binds a loopback address. */
bool jn_config_loopback_only(const jn_config_t *c);

/* The anonymous-access rule (DESIGN.md, as Mosquitto 2): decides whether
 * anonymous clients are allowed, given |users| existing users (the
 * configured admin user included). Refuses (JN_EPERM, with a message
 * naming the listener and the fix) when the server would listen beyond
 * loopback with no user at all and allow_anonymous is not `true`. */
int jn_config_anonymous(const jn_config_t *c, size_t users, bool *allow, char *err,
                        size_t errlen) JN_MUST_CHECK;

/* `junction serve --help`: every option with its metavar, help and default. */
void jn_config_print_usage(FILE *f);
/* `junction serve --print-config`: a commented config file; options at
 * their default are written commented out, others as `key = value`, so
 * the output parses back to |c|. */
void jn_config_print(const jn_config_t *c, FILE *f);

#endif
