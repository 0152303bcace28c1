/* config.c - the option table and everything derived from it: defaults,
 * the config file parser, command-line flags, --help and --print-config.
 *
 * Like an nginx module's directive table, each option is one row (name,
 * type, default, help, offset into jn_config_t); the parsers and printers
 * are generic over the rows, so adding an option is adding a row and a
 * struct field. Defaults are text parsed by the same code as user input,
 * so a default can never be a value the parser would reject.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/log.h"
#include "../core/filter.h"
#include "../http/parser.h"

#define OFF(field) offsetof(jn_config_t, field)

static const char *const log_levels[] = {"debug", "info", "warn", "error", "off", NULL};
static const char *const anon_policies[] = {"auto", "true", "false", NULL};
/* Indexed by enum jn_fsync_policy. */
static const char *const fsync_policies[] = {"never", "interval", "always", NULL};

#define KIB 1024LL
#define MIB (1024LL * KIB)
#define GIB (1024LL * MIB)

static const jn_option_t options[] = {
    {"data_dir", JN_OPT_STRING, "./data", "DIR", "directory of all durable state", OFF(data_dir), 1, 0, NULL},
    {"log_level", JN_OPT_ENUM, "info", "LEVEL", "least severe messages logged", OFF(log_level), 0, 0,
     log_levels},
    {"http.listen", JN_OPT_LISTEN, "127.0.0.1:8080", "HOST:PORT",
     "plain HTTP listener (REST, metrics); empty = none", OFF(http_listen), 0, 0, NULL},
    {"https.listen", JN_OPT_LISTEN, "", "HOST:PORT", "HTTPS listener, e.g. 127.0.0.1:8443; empty = off",
     OFF(https_listen), 0, 0, NULL},
    {"tls.cert", JN_OPT_STRING, "", "FILE", "TLS certificate chain (PEM) for https.listen", OFF(tls_cert), 0,
     0, NULL},
    {"tls.key", JN_OPT_STRING, "", "FILE", "TLS private key (PEM) for https.listen", OFF(tls_key), 0, 0, NULL},
    {"allow_anonymous", JN_OPT_ENUM, "auto", "auto|true|false",
     "clients without credentials; auto = only when every listener is loopback", OFF(allow_anonymous), 0, 0,
     anon_policies},
    {"http.max_body", JN_OPT_SIZE, "8m", "SIZE", "largest request body (413 beyond)", OFF(http_max_body), 1,
     GIB, NULL},
    {"http.idle_timeout_ms", JN_OPT_INT, "60000", "MS", "close idle keep-alive connections after",
     OFF(http_idle_timeout_ms), 1, UINT32_MAX, NULL},
    {"http.request_timeout_ms", JN_OPT_INT, "30000", "MS", "a request head and body must arrive within (408)",
     OFF(http_request_timeout_ms), 1, UINT32_MAX, NULL},
    {"http.max_connections", JN_OPT_INT, "100000", "N", "refuse connections beyond",
     OFF(http_max_connections), 1, UINT32_MAX, NULL},
    {"http.max_header_bytes", JN_OPT_SIZE, "16k", "SIZE", "largest request head (431 beyond)",
     OFF(http_max_header_bytes), 256, 16 * MIB, NULL},
    {"http.max_request_line", JN_OPT_SIZE, "8k", "SIZE", "longest request line (414 beyond)",
     OFF(http_max_request_line), 64, 16 * MIB, NULL},
    {"http.max_headers", JN_OPT_INT, "64", "N", "most header fields in a request (431 beyond)",
     OFF(http_max_headers), 1, JN_HTTP_MAX_HEADERS, NULL},
    {"streams.auto_create", JN_OPT_BOOL, "true", "BOOL", "publishing to an unknown stream creates it",
     OFF(streams_auto_create), 0, 0, NULL},
    {"streams.default_partitions", JN_OPT_INT, "1", "N", "partitions of auto-created streams",
     OFF(streams_default_partitions), 1, JN_PARTITIONS_MAX, NULL},
    {"streams.fsync", JN_OPT_ENUM, "interval", "never|interval|always",
     "default fsync policy of new streams", OFF(streams_fsync), 0, 0, fsync_policies},
    {"streams.fsync_interval_ms", JN_OPT_INT, "1000", "MS", "fsync period for the interval policy",
     OFF(streams_fsync_interval_ms), 1, INT32_MAX, NULL},
    {"streams.retention_ms", JN_OPT_INT, "604800000", "MS", "delete segments older than this; -1 = forever",
     OFF(streams_retention_ms), -1, INT64_MAX, NULL},
    {"streams.retention_bytes", JN_OPT_SIZE, "-1", "SIZE",
     "delete oldest segments beyond this per partition; -1 = unlimited", OFF(streams_retention_bytes), -1,
     INT64_MAX, NULL},
    {"streams.segment_bytes", JN_OPT_SIZE, "128m", "SIZE", "roll the active segment at this size",
     OFF(streams_segment_bytes), 4 * KIB, 4 * GIB, NULL},
    {"streams.segment_ms", JN_OPT_INT, "604800000", "MS", "roll the active segment at this age; 0 = never",
     OFF(streams_segment_ms), 0, INT64_MAX, NULL},
    {"streams.max_batch_bytes", JN_OPT_SIZE, "8m", "SIZE", "largest record batch accepted",
     OFF(streams_max_batch_bytes), 1 * KIB, GIB, NULL},
    {"maintenance_interval_ms", JN_OPT_INT, "5000", "MS", "retention, compaction and roll check period",
     OFF(maintenance_interval_ms), 10, INT32_MAX, NULL},
    {"map", JN_OPT_MAP, NULL, "'FILTER -> STREAM'",
     "subjects matching FILTER live in STREAM (repeatable; first match wins)", 0, 0, 0, NULL},
    {"kafka.listen", JN_OPT_LISTEN, "127.0.0.1:9092", "HOST:PORT", "Kafka protocol listener; empty = none",
     OFF(kafka_listen), 0, 0, NULL},
    {"kafka.advertised_host", JN_OPT_STRING, "", "HOST", "host Kafka clients are told to connect to; empty = listen host",
     OFF(kafka_advertised_host), 0, 0, NULL},
    {"kafka.max_request_bytes", JN_OPT_SIZE, "100m", "SIZE", "largest Kafka request accepted",
     OFF(kafka_max_request_bytes), 1 * KIB, GIB, NULL},
    {"mqtt.listen", JN_OPT_LISTEN, "127.0.0.1:1883", "HOST:PORT", "MQTT listener; empty = none",
     OFF(mqtt_listen), 0, 0, NULL},
    {"mqtt.tls_listen", JN_OPT_LISTEN, "", "HOST:PORT", "MQTT over TLS listener (uses tls.cert/tls.key), e.g. 127.0.0.1:8883",
     OFF(mqtt_tls_listen), 0, 0, NULL},
    {"mqtt.max_packet_size", JN_OPT_SIZE, "1m", "SIZE", "largest MQTT packet accepted",
     OFF(mqtt_max_packet_size), 64, 256 * MIB, NULL},
    {"mqtt.max_inflight", JN_OPT_INT, "256", "N", "MQTT Receive Maximum: unacknowledged QoS 1/2 messages each way",
     OFF(mqtt_max_inflight), 1, 65535, NULL},
    {"mqtt.max_queued_bytes", JN_OPT_SIZE, "1m", "SIZE",
     "output queued per MQTT connection before QoS 0 drops and QoS 1/2 cursors wait", OFF(mqtt_max_queued_bytes),
     4 * KIB, GIB, NULL},
    {"mqtt.session_expiry_max", JN_OPT_INT, "604800", "S", "longest MQTT session expiry (seconds)",
     OFF(mqtt_session_expiry_max), 0, UINT32_MAX, NULL},
    {"amqp.listen", JN_OPT_LISTEN, "127.0.0.1:5672", "HOST:PORT", "AMQP 0-9-1 listener; empty = none",
     OFF(amqp_listen), 0, 0, NULL},
    {"amqp.tls_listen", JN_OPT_LISTEN, "", "HOST:PORT",
     "AMQP over TLS listener (uses tls.cert/tls.key), e.g. 127.0.0.1:5671", OFF(amqp_tls_listen), 0, 0, NULL},
    {"mqtt.keepalive_max", JN_OPT_INT, "0", "S", "largest MQTT keep alive (seconds, MQTT 5); 0 = no cap",
     OFF(mqtt_keepalive_max), 0, 65535, NULL},
    {"webhooks.allow_hosts", JN_OPT_STRING, "", "LIST",
     "CIDRs/hosts webhooks may deliver to despite the SSRF rules, e.g. 127.0.0.1/32", OFF(webhooks_allow_hosts), 0,
     0, NULL},
    {"webhooks.max_concurrency_total", JN_OPT_INT, "1024", "N", "webhook requests in flight over all endpoints",
     OFF(webhooks_max_concurrency_total), 1, 65536, NULL},
    {"webhooks.default_timeout_ms", JN_OPT_INT, "15000", "MS", "webhook attempt timeout when an endpoint sets none",
     OFF(webhooks_default_timeout_ms), 100, 300000, NULL},
    {"webhooks.retry_schedule", JN_OPT_STRING, "5s,5m,30m,2h,5h,10h,10h", "LIST",
     "default delays between webhook attempts (ms, s, m, h)", OFF(webhooks_retry_schedule), 0, 0, NULL},
    {"admin.user", JN_OPT_STRING, "", "NAME", "ensure this admin user exists at start", OFF(admin_user), 0, 0,
     NULL},
    {"admin.password", JN_OPT_STRING, "", "PASSWORD", "password of admin.user", OFF(admin_password), 0, 0,
     NULL},
};

#define NOPTIONS (sizeof options / sizeof options[0])

const jn_option_t *jn_config_options(size_t *n)
{
    if (n)
        *n = NOPTIONS;
    return options;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Prefixes |err| with "prefix: " in place. */
static void prefix_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void prefix_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    char pre[256];
    char msg[JN_CONFIG_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    snprintf(msg, sizeof msg, "%s", err);
    snprintf(err, errlen, "%s: %s", pre, msg);
}

/* Option names compare with '-' and '_' as the same character, so that
 * --data-dir works as well as --data_dir. */
static bool name_eq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++) {
        char x = a[i] == '-' ? '_' : a[i];
        char y = b[i] == '-' ? '_' : b[i];
        if (x != y)
            return false;
    }
    return true;
}

static const jn_option_t *find_option(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (name_eq(name, len, options[i].name))
            return &options[i];
    return NULL;
}

static void *field(jn_config_t *c, const jn_option_t *o)
{
    return (char *)c + o->offset;
}

static const void *cfield(const jn_config_t *c, const jn_option_t *o)
{
    return (const char *)c + o->offset;
}

/* ---- value parsers: 0 or JN_EINVAL, no message ---- */

static int parse_int(const char *s, int64_t *out)
{
    if (!*s || isspace((unsigned char)*s))
        return JN_EINVAL;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return JN_EINVAL;
    *out = v;
    return 0;
}

static int parse_size(const char *s, int64_t *out)
{
    if (!*s || isspace((unsigned char)*s))
        return JN_EINVAL;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s)
        return JN_EINVAL;
    int64_t mult = 1;
    if (*end) {
        switch (tolower((unsigned char)*end)) {
        case 'k': mult = KIB; break;
        case 'm': mult = MIB; break;
        case 'g': mult = GIB; break;
        case 'b': mult = 1; break;
        default: return JN_EINVAL;
        }
        const char *rest = end + 1;
        if (mult > 1 && (strcasecmp(rest, "b") == 0 || strcasecmp(rest, "ib") == 0))
            rest += strlen(rest);
        if (*rest)
            return JN_EINVAL;
    }
    if (v > INT64_MAX / mult || v < INT64_MIN / mult)
        return JN_EINVAL;
    *out = v * mult;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return JN_EINVAL;
}

bool jn_host_is_loopback(const char *host)
{
    if (strcmp(host, "localhost") == 0)
        return true;
    unsigned char a4[4];
    if (inet_pton(AF_INET, host, a4) == 1)
        return a4[0] == 127;
    unsigned char a6[16];
    if (inet_pton(AF_INET6, host, a6) == 1) {
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        static const unsigned char one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        if (memcmp(a6, one, 16) == 0)
            return true;
        return memcmp(a6, v4mapped, 12) == 0 && a6[12] == 127;
    }
    return false;
}

/* Kafka's topic name rules, as jn_stream_name_validate applies them; kept
 * here so that the config has no link dependency on the broker. */
static bool stream_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > JN_STREAM_NAME_MAX)
        return false;
    if (len >= 2 && s[0] == '_' && s[1] == '_')
        return false;
    if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

static size_t trim_len(const char *s, size_t len)
{
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    return len;
}

static const char *skip_ws(const char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    return s;
}

/* "filter -> stream" into a new mapping. */
static int parse_map(const char *s, jn_mapping_t *m)
{
    const char *arrow = strstr(s, "->");
    if (!arrow)
        return JN_EINVAL;
    const char *f = skip_ws(s);
    size_t flen = arrow > f ? trim_len(f, (size_t)(arrow - f)) : 0;
    const char *st = skip_ws(arrow + 2);
    size_t slen = trim_len(st, strlen(st));
    if (flen == 0 || jn_filter_validate(f, flen) != 0 || !stream_name_ok(st, slen))
        return JN_EINVAL;
    for (size_t i = 0; i < flen; i++)
        if (isspace((unsigned char)f[i]))
            return JN_EINVAL;
    m->filter = strndup(f, flen);
    m->stream = strndup(st, slen);
    if (!m->filter || !m->stream) {
        free(m->filter);
        free(m->stream);
        m->filter = m->stream = NULL;
        return JN_ENOMEM;
    }
    return 0;
}

/* What a valid value looks like, for messages. */
static void describe(const jn_option_t *o, char *out, size_t outlen)
{
    switch (o->type) {
    case JN_OPT_STRING:
        snprintf(out, outlen, "a non-empty string");
        break;
    case JN_OPT_INT:
    case JN_OPT_SIZE: {
        const char *what = o->type == JN_OPT_INT ? "an integer" : "a size";
        const char *suffix = o->type == JN_OPT_SIZE ? " with an optional k/m/g suffix" : "";
        if (o->min == -1 && o->max == INT64_MAX)
            snprintf(out, outlen, "-1 or %s >= 0%s", what, suffix);
        else if (o->max == INT64_MAX)
            snprintf(out, outlen, "%s >= %lld%s", what, (long long)o->min, suffix);
        else
            snprintf(out, outlen, "%s %lld-%lld%s", what, (long long)o->min, (long long)o->max, suffix);
        break;
    }
    case JN_OPT_BOOL:
        snprintf(out, outlen, "true or false");
        break;
    case JN_OPT_ENUM: {
        size_t n = 0;
        int k = snprintf(out, outlen, "one of");
        for (const char *const *ch = o->choices; *ch && k >= 0 && (size_t)k < outlen; ch++, n++)
            k += snprintf(out + k, outlen - (size_t)k, "%s %s", n ? "," : "", *ch);
        break;
    }
    case JN_OPT_LISTEN:
        snprintf(out, outlen, "host:port with a port 0-65535, e.g. 127.0.0.1:8080 or [::1]:8080%s",
                 o->min ? "" : ", or empty");
        break;
    case JN_OPT_MAP:
        snprintf(out, outlen, "'filter -> stream', e.g. 'sensors/# -> iot'");
        break;
    }
}

static int replace_string(char **slot, const char *value)
{
    char *dup = strdup(value);
    if (!dup)
        return JN_ENOMEM;
    free(*slot);
    *slot = dup;
    return 0;
}

static void clear_maps(jn_config_t *c)
{
    for (size_t i = 0; i < c->nmaps; i++) {
        free(c->maps[i].filter);
        free(c->maps[i].stream);
    }
    free(c->maps);
    c->maps = NULL;
    c->nmaps = 0;
}

static int set_option(jn_config_t *c, const jn_option_t *o, const char *value, char *err, size_t errlen)
{
    int rc = JN_EINVAL;
    switch (o->type) {
    case JN_OPT_STRING:
        if (o->min > 0 && !*value)
            goto invalid;
        return replace_string(field(c, o), value);
    case JN_OPT_INT:
    case JN_OPT_SIZE: {
        int64_t v;
        rc = o->type == JN_OPT_INT ? parse_int(value, &v) : parse_size(value, &v);
        if (rc || v < o->min || v > o->max)
            goto invalid;
        *(int64_t *)field(c, o) = v;
        return 0;
    }
    case JN_OPT_BOOL:
        if (parse_bool(value, field(c, o)))
            goto invalid;
        return 0;
    case JN_OPT_ENUM:
        for (int i = 0; o->choices[i]; i++) {
            if (strcasecmp(value, o->choices[i]) == 0) {
                *(int *)field(c, o) = i;
                return 0;
            }
        }
        goto invalid;
    case JN_OPT_LISTEN: {
        char host[INET6_ADDRSTRLEN];
        int port;
        if (*value ? jn_listen_parse(value, host, sizeof host, &port) != 0 : o->min > 0)
            goto invalid;
        return replace_string(field(c, o), value);
    }
    case JN_OPT_MAP: {
        if (c->nmaps >= JN_CONFIG_MAPS_MAX) {
            set_err(err, errlen, "too many '%s' entries (at most %d)", o->name, JN_CONFIG_MAPS_MAX);
            return JN_ETOOBIG;
        }
        jn_mapping_t m;
        rc = parse_map(value, &m);
        if (rc == JN_ENOMEM)
            return rc;
        if (rc)
            goto invalid;
        jn_mapping_t *grown = realloc(c->maps, (c->nmaps + 1) * sizeof *grown);
        if (!grown) {
            free(m.filter);
            free(m.stream);
            return JN_ENOMEM;
        }
        grown[c->nmaps++] = m;
        c->maps = grown;
        return 0;
    }
    }
invalid: {
    char expect[256];
    describe(o, expect, sizeof expect);
    set_err(err, errlen, "invalid value '%s' for '%s' (expected %s)", value, o->name, expect);
    return JN_EINVAL;
}
}

int jn_config_set(jn_config_t *c, const char *name, const char *value, char *err, size_t errlen)
{
    const jn_option_t *o = find_option(name, strlen(name));
    if (!o) {
        set_err(err, errlen, "unknown option '%s'", name);
        return JN_EINVAL;
    }
    return set_option(c, o, value, err, errlen);
}

int jn_config_init(jn_config_t *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (!options[i].def)
            continue;
        char err[JN_CONFIG_ERR_MAX];
        int rc = set_option(c, &options[i], options[i].def, err, sizeof err);
        /* A bad default is our bug, but only ENOMEM can happen at run time. */
        if (rc)
            return rc;
    }
    return 0;
}

void jn_config_free(jn_config_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < NOPTIONS; i++) {
        const jn_option_t *o = &options[i];
        if (o->type == JN_OPT_STRING || o->type == JN_OPT_LISTEN)
            free(*(char **)field(c, o));
    }
    clear_maps(c);
    memset(c, 0, sizeof *c);
}

/* ---- the file ---- */

int jn_config_parse(jn_config_t *c, const char *text, size_t len, const char *origin, char *err, size_t errlen)
{
    bool seen[NOPTIONS] = {0};
    const char *p = text;
    const char *end = text + len;
    int lineno = 0;
    char *line = NULL;
    int rc = 0;
    while (p < end) {
        lineno++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const char *next = nl ? nl + 1 : end;
        free(line);
        line = strndup(p, n);
        p = next;
        if (!line) {
            rc = JN_ENOMEM;
            goto fail;
        }
        if (strlen(line) != n) {
            set_err(err, errlen, "%s:%d: NUL byte in line", origin, lineno);
            rc = JN_EINVAL;
            goto fail;
        }
        const char *s = skip_ws(line);
        if (*s == '\0' || *s == '#')
            continue;
        const char *eq = strchr(s, '=');
        if (!eq) {
            set_err(err, errlen, "%s:%d: expected 'key = value'", origin, lineno);
            rc = JN_EINVAL;
            goto fail;
        }
        size_t klen = trim_len(s, (size_t)(eq - s));
        const char *v = skip_ws(eq + 1);
        line[(size_t)(v - line) + trim_len(v, strlen(v))] = '\0';
        if (klen == 0) {
            set_err(err, errlen, "%s:%d: expected 'key = value'", origin, lineno);
            rc = JN_EINVAL;
            goto fail;
        }
        const jn_option_t *o = find_option(s, klen);
        if (!o) {
            set_err(err, errlen, "%s:%d: unknown option '%.*s'", origin, lineno, (int)klen, s);
            rc = JN_EINVAL;
            goto fail;
        }
        size_t idx = (size_t)(o - options);
        if (seen[idx] && o->type != JN_OPT_MAP) {
            set_err(err, errlen, "%s:%d: duplicate option '%s'", origin, lineno, o->name);
            rc = JN_EINVAL;
            goto fail;
        }
        seen[idx] = true;
        rc = set_option(c, o, v, err, errlen);
        if (rc) {
            prefix_err(err, errlen, "%s:%d", origin, lineno);
            goto fail;
        }
    }
fail:
    free(line);
    return rc;
}

int jn_config_load_file(jn_config_t *c, const char *path, char *err, size_t errlen)
{
    int rc;
    char *text = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        return JN_EIO;
    }
    text = malloc(JN_CONFIG_FILE_MAX + 1);
    if (!text) {
        rc = JN_ENOMEM;
        goto fail;
    }
    size_t n = fread(text, 1, JN_CONFIG_FILE_MAX + 1, f);
    if (ferror(f)) {
        set_err(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        rc = JN_EIO;
        goto fail;
    }
    if (n > JN_CONFIG_FILE_MAX) {
        set_err(err, errlen, "%s: larger than %u bytes", path, JN_CONFIG_FILE_MAX);
        rc = JN_ETOOBIG;
        goto fail;
    }
    rc = jn_config_parse(c, text, n, path, err, errlen);
fail:
    free(text);
    fclose(f);
    return rc;
}

/* ---- flags ---- */

static bool is_flag(const char *a)
{
    return a[0] == '-' && a[1] == '-' && a[2] != '\0';
}

int jn_config_apply_args(jn_config_t *c, int argc, char *const *argv, char *err, size_t errlen)
{
    bool map_replaced = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!is_flag(a)) {
            set_err(err, errlen, "command line: unexpected argument '%s'", a);
            return JN_EINVAL;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const char *value = eq ? eq + 1 : NULL;
        if (name_eq(name, nlen, "config")) {
            if (!value)
                i++; /* its value; jn_config_load_args has used it */
            continue;
        }
        const jn_option_t *o = find_option(name, nlen);
        if (!o) {
            set_err(err, errlen, "command line: unknown option '%.*s'", (int)nlen, name);
            return JN_EINVAL;
        }
        if (!value) {
            if (i + 1 < argc && !(o->type == JN_OPT_BOOL && is_flag(argv[i + 1])))
                value = argv[++i];
            else if (o->type == JN_OPT_BOOL)
                value = "true";
            else {
                set_err(err, errlen, "command line: option '%s' needs a value", o->name);
                return JN_EINVAL;
            }
        }
        if (o->type == JN_OPT_MAP && !map_replaced) {
            clear_maps(c);
            map_replaced = true;
        }
        int rc = set_option(c, o, value, err, errlen);
        if (rc) {
            prefix_err(err, errlen, "command line");
            return rc;
        }
    }
    return 0;
}

int jn_config_load_args(jn_config_t *c, int argc, char *const *argv, char *err, size_t errlen)
{
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!is_flag(a))
            continue;
        if (strcmp(a, "--config") == 0) {
            if (i + 1 >= argc) {
                set_err(err, errlen, "command line: option 'config' needs a value");
                return JN_EINVAL;
            }
            path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            path = a + 9;
        } else if (!strchr(a, '=')) {
            /* Skip the value of a valued flag so that a value that happens
             * to be "--config" is not taken for the flag. */
            const jn_option_t *o = find_option(a + 2, strlen(a + 2));
            if (o && o->type != JN_OPT_BOOL && i + 1 < argc)
                i++;
        }
    }
    int rc;
    struct stat st;
    if (path)
        rc = jn_config_load_file(c, path, err, errlen);
    else if (stat(JN_CONFIG_DEFAULT_FILE, &st) == 0)
        rc = jn_config_load_file(c, JN_CONFIG_DEFAULT_FILE, err, errlen);
    else
        rc = 0;
    if (rc)
        return rc;
    rc = jn_config_apply_args(c, argc, argv, err, errlen);
    if (rc)
        return rc;
    return jn_config_validate(c, err, errlen);
}

/* ---- checks across options ---- */

static bool empty(const char *s)
{
    return !s || !*s;
}

int jn_config_validate(const jn_config_t *c, char *err, size_t errlen)
{
    if (empty(c->http_listen) && empty(c->https_listen)) {
        set_err(err, errlen, "no listener: set http.listen or https.listen");
        return JN_EINVAL;
    }
    if (!empty(c->https_listen) && (empty(c->tls_cert) || empty(c->tls_key))) {
        set_err(err, errlen, "https.listen needs tls.cert and tls.key");
        return JN_EINVAL;
    }
    if (!empty(c->mqtt_tls_listen) && (empty(c->tls_cert) || empty(c->tls_key))) {
        set_err(err, errlen, "mqtt.tls_listen needs tls.cert and tls.key");
        return JN_EINVAL;
    }
    if (!empty(c->amqp_tls_listen) && (empty(c->tls_cert) || empty(c->tls_key))) {
        set_err(err, errlen, "amqp.tls_listen needs tls.cert and tls.key");
        return JN_EINVAL;
    }
    if (empty(c->admin_user) != empty(c->admin_password)) {
        set_err(err, errlen, "admin.user and admin.password must be set together");
        return JN_EINVAL;
    }
    return 0;
}

/* The first listener that binds beyond loopback, or NULL. */
static const char *exposed_listener(const jn_config_t *c)
{
    const char *ls[5] = {c->http_listen, c->https_listen, c->mqtt_listen, c->mqtt_tls_listen, c->kafka_listen};
    for (int i = 0; i < 5; i++) {
        char host[INET6_ADDRSTRLEN];
        int port;
        if (empty(ls[i]))
            continue;
        if (jn_listen_parse(ls[i], host, sizeof host, &port) != 0 || !jn_host_is_loopback(host))
            return ls[i];
    }
    return NULL;
}

bool jn_config_loopback_only(const jn_config_t *c)
{
    return exposed_listener(c) == NULL;
}

int jn_config_anonymous(const jn_config_t *c, size_t users, bool *allow, char *err, size_t errlen)
{
    const char *exposed = exposed_listener(c);
    if (exposed && users == 0 && c->allow_anonymous != JN_ANON_TRUE) {
        set_err(err, errlen,
                "refusing to listen on %s (beyond loopback) with no users: set admin.user and "
                "admin.password, or allow_anonymous = true to let anyone who can reach it in",
                exposed);
        return JN_EPERM;
    }
    switch (c->allow_anonymous) {
    case JN_ANON_TRUE: *allow = true; break;
    case JN_ANON_FALSE: *allow = false; break;
    default: *allow = exposed == NULL; break;
    }
    return 0;
}

/* ---- printing ---- */

/* A size as the shortest exact text: 8388608 -> "8m". */
static void format_size(int64_t v, char *out, size_t outlen)
{
    if (v > 0 && v % GIB == 0)
        snprintf(out, outlen, "%lldg", (long long)(v / GIB));
    else if (v > 0 && v % MIB == 0)
        snprintf(out, outlen, "%lldm", (long long)(v / MIB));
    else if (v > 0 && v % KIB == 0)
        snprintf(out, outlen, "%lldk", (long long)(v / KIB));
    else
        snprintf(out, outlen, "%lld", (long long)v);
}

static void format_value(const jn_config_t *c, const jn_option_t *o, char *out, size_t outlen)
{
    switch (o->type) {
    case JN_OPT_STRING:
    case JN_OPT_LISTEN: {
        const char *s = *(char *const *)cfield(c, o);
        snprintf(out, outlen, "%s", s ? s : "");
        break;
    }
    case JN_OPT_INT:
        snprintf(out, outlen, "%lld", (long long)*(const int64_t *)cfield(c, o));
        break;
    case JN_OPT_SIZE:
        format_size(*(const int64_t *)cfield(c, o), out, outlen);
        break;
    case JN_OPT_BOOL:
        snprintf(out, outlen, "%s", *(const bool *)cfield(c, o) ? "true" : "false");
        break;
    case JN_OPT_ENUM:
        snprintf(out, outlen, "%s", o->choices[*(const int *)cfield(c, o)]);
        break;
    case JN_OPT_MAP:
        out[0] = '\0';
        break;
    }
}

void jn_config_print_usage(FILE *f)
{
    fprintf(f, "usage: junction serve [--config FILE] [--OPTION VALUE | --OPTION=VALUE]...\n\n"
               "Runs the server. Options come from the table below; a config file\n"
               "(--config FILE, else ./junction.conf when it exists) takes the same\n"
               "names as `key = value` lines, and flags override it.\n\n");
    fprintf(f, "  %-36s %s\n", "--config FILE", "config file (default: ./junction.conf if it exists)");
    fprintf(f, "  %-36s %s\n", "--print-config", "print the effective configuration and exit");
    fprintf(f, "  %-36s %s\n", "--help", "this help");
    jn_config_t defaults;
    bool have_defaults = jn_config_init(&defaults) == 0;
    for (size_t i = 0; i < NOPTIONS; i++) {
        const jn_option_t *o = &options[i];
        char left[128], def[256];
        snprintf(left, sizeof left, "--%s %s", o->name, o->metavar);
        if (o->type == JN_OPT_MAP)
            snprintf(def, sizeof def, "none");
        else if (have_defaults)
            format_value(&defaults, o, def, sizeof def);
        else
            snprintf(def, sizeof def, "%s", o->def ? o->def : "");
        fprintf(f, "  %-36s %s (default: %s)\n", left, o->help, *def ? def : "empty");
    }
    fprintf(f, "\nSizes accept k, m and g suffixes (KiB, MiB, GiB). Listening beyond loopback\n"
               "needs a user (admin.user) unless allow_anonymous = true.\n");
    jn_config_free(&defaults);
}

void jn_config_print(const jn_config_t *c, FILE *f)
{
    jn_config_t defaults;
    bool have_defaults = jn_config_init(&defaults) == 0;
    fprintf(f, "# junction.conf - Junction server configuration.\n"
               "#\n"
               "# One `key = value` per line; '#' starts a comment line. Every key can\n"
               "# also be given as a flag (`junction serve --streams.fsync always`),\n"
               "# which overrides this file. Sizes accept k, m and g suffixes (KiB, MiB,\n"
               "# GiB). Options left commented out are at their default.\n"
               "# Generated by `junction serve --print-config`.\n");
    for (size_t i = 0; i < NOPTIONS; i++) {
        const jn_option_t *o = &options[i];
        fprintf(f, "\n# %s\n", o->help);
        if (o->type == JN_OPT_BOOL)
            fprintf(f, "# (true|false)\n");
        if (o->type == JN_OPT_ENUM) {
            fprintf(f, "# (");
            for (size_t k = 0; o->choices[k]; k++)
                fprintf(f, "%s%s", k ? "|" : "", o->choices[k]);
            fprintf(f, ")\n");
        }
        if (o->type == JN_OPT_MAP) {
            if (c->nmaps == 0)
                fprintf(f, "# %s = sensors/# -> iot\n", o->name);
            for (size_t k = 0; k < c->nmaps; k++)
                fprintf(f, "%s = %s -> %s\n", o->name, c->maps[k].filter, c->maps[k].stream);
            continue;
        }
        char v[1024], d[1024];
        format_value(c, o, v, sizeof v);
        bool is_default = false;
        if (have_defaults) {
            format_value(&defaults, o, d, sizeof d);
            is_default = strcmp(v, d) == 0;
        }
        fprintf(f, "%s%s =%s%s\n", is_default ? "# " : "", o->name, *v ? " " : "", v);
    }
    jn_config_free(&defaults);
}
