/* bench.c - the core of `junction bench`: options, the run's phases and
 * deadlines, the progress line and the summary. What is specific to a
 * protocol lives in one door_*.c file behind jn_bench_door_t (see
 * bench_int.h for the life of a run); adding a door is adding that file
 * and one line to |doors| below. */
#include "bench/bench.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench/bench_int.h"
#include "common/clock.h"

static const jn_bench_door_t *const doors[] = {
    &jn__bench_door_http,
    &jn__bench_door_mqtt,
    &jn__bench_door_amqp,
    &jn__bench_door_kafka,
    &jn__bench_door_ws,
};
#define NDOORS (sizeof(doors) / sizeof(doors[0]))

#define OPT(field) offsetof(jn_bench_opts_t, field)
static const jn_bench_opt_t common_opts[] = {
    {"url", JN_BOPT_STR, OPT(url), 0, 0, "target URL (default per door)"},
    {"host", JN_BOPT_STR, OPT(host), 0, 0, "target host, overrides the URL's"},
    {"port", JN_BOPT_INT, OPT(port), 1, 65535, "target port, overrides the URL's"},
    {"duration", JN_BOPT_DOUBLE, OPT(duration_s), 0.001, 7 * 86400, "seconds of sending (default 10)"},
    {"count", JN_BOPT_U64, OPT(count), 0, 1e15, "total messages, 0 = unlimited (default 0)"},
    {"size", JN_BOPT_INT, OPT(size), 16, JN_BENCH_SIZE_MAX, "payload bytes, >= 16 (default 64)"},
    {"json", JN_BOPT_FLAG, OPT(json), 0, 0, "print the summary as one JSON object on stdout"},
    {"quiet", JN_BOPT_FLAG, OPT(quiet), 0, 0, "no live progress line"},
    {"help", JN_BOPT_FLAG, OPT(help), 0, 0, "this help"},
    {NULL, 0, 0, 0, 0, NULL},
};

/* ---- options ---------------------------------------------------------- */

static const jn_bench_opt_t *find_opt(const jn_bench_opt_t *t, const char *name, size_t len)
{
    for (; t && t->name; t++)
        if (strlen(t->name) == len && memcmp(t->name, name, len) == 0)
            return t;
    return NULL;
}

static int set_opt(const jn_bench_opt_t *d, void *base, const char *v, char *err, size_t errlen)
{
    char *end = NULL;
    char *field = (char *)base + d->offset;
    errno = 0;
    switch (d->kind) {
    case JN_BOPT_FLAG:
        *(bool *)field = true;
        return 0;
    case JN_BOPT_STR:
        if (!*v) {
            snprintf(err, errlen, "--%s needs a non-empty value", d->name);
            return -1;
        }
        *(const char **)field = v;
        return 0;
    case JN_BOPT_INT:
    case JN_BOPT_U64: {
        if (*v == '-' || *v == '+' || *v == ' ')
            goto bad;
        unsigned long long n = strtoull(v, &end, 10);
        if (errno || end == v || *end || (double)n < d->min || (double)n > d->max)
            goto bad;
        if (d->kind == JN_BOPT_INT)
            *(int *)field = (int)n;
        else
            *(uint64_t *)field = n;
        return 0;
    }
    case JN_BOPT_DOUBLE: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x) || x < d->min || x > d->max)
            goto bad;
        *(double *)field = x;
        return 0;
    }
    }
bad:
    snprintf(err, errlen, "--%s: '%s' is not a number in [%.15g, %.15g]", d->name, v, d->min, d->max);
    return -1;
}

void jn__bench_opts_free(jn_bench_opts_t *o)
{
    free(o->cfg);
    o->cfg = NULL;
}

int jn__bench_parse(int argc, char **argv, jn_bench_opts_t *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    o->duration_s = 10;
    o->size = 64;
    err[0] = 0;
    char list[128] = "";
    size_t ln = 0;
    for (size_t i = 0; i < NDOORS && ln < sizeof(list); i++)
        ln += (size_t)snprintf(list + ln, sizeof(list) - ln, "%s%s", i ? ", " : "", doors[i]->name);
    if (argc < 2 || !argv[1]) {
        snprintf(err, errlen, "missing door (one of: %s)", list);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        o->help = true;
        return 0;
    }
    for (size_t i = 0; i < NDOORS; i++)
        if (strcmp(doors[i]->name, argv[1]) == 0)
            o->door = doors[i];
    if (!o->door) {
        snprintf(err, errlen, "unknown door '%s' (one of: %s)", argv[1], list);
        return 2;
    }
    o->cfg = calloc(1, o->door->cfg_size ? o->door->cfg_size : 1);
    if (!o->cfg) {
        snprintf(err, errlen, "out of memory");
        return 2;
    }
    if (o->door->defaults)
        o->door->defaults(o->cfg);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0) {
            o->help = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            snprintf(err, errlen, "unexpected argument '%s'", a);
            goto fail;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        void *base = o;
        const jn_bench_opt_t *d = find_opt(common_opts, name, nlen);
        if (!d) {
            d = find_opt(o->door->opts, name, nlen);
            base = o->cfg;
        }
        if (!d) {
            snprintf(err, errlen, "unknown option '--%.*s' for door %s", (int)nlen, name, o->door->name);
            goto fail;
        }
        const char *v = NULL;
        if (d->kind == JN_BOPT_FLAG) {
            if (eq) {
                snprintf(err, errlen, "--%s takes no value", d->name);
                goto fail;
            }
        } else if (eq) {
            v = eq + 1;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            snprintf(err, errlen, "--%s needs a value", d->name);
            goto fail;
        }
        if (set_opt(d, base, v, err, errlen) < 0)
            goto fail;
    }
    if (o->help)
        return 0;
    if (o->door->check && o->door->check(o, err, errlen) < 0)
        goto fail;
    return 0;
fail:
    jn__bench_opts_free(o);
    return 2;
}

int jn__bench_url_split(const char *url, char *scheme, size_t scheme_len, char *host, size_t host_len,
                        int *port, char *path, size_t path_len)
{
    const char *sep = strstr(url, "://");
    if (!sep || sep == url || (size_t)(sep - url) >= scheme_len)
        return JN_EINVAL;
    memcpy(scheme, url, (size_t)(sep - url));
    scheme[sep - url] = 0;
    const char *h = sep + 3;
    const char *slash = strchr(h, '/');
    const char *q = strchr(h, '?');
    const char *auth_end = slash ? slash : (q ? q : h + strlen(h));
    if (q && q < auth_end)
        auth_end = q;
    const char *hend, *pstart = NULL;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(auth_end - h));
        if (!rb)
            return JN_EINVAL;
        h++;
        hend = rb;
        if (rb + 1 < auth_end) {
            if (rb[1] != ':')
                return JN_EINVAL;
            pstart = rb + 2;
        }
    } else {
        const char *colon = memchr(h, ':', (size_t)(auth_end - h));
        hend = colon ? colon : auth_end;
        if (colon)
            pstart = colon + 1;
    }
    if (hend == h || (size_t)(hend - h) >= host_len || memchr(h, '@', (size_t)(hend - h)))
        return JN_EINVAL;
    memcpy(host, h, (size_t)(hend - h));
    host[hend - h] = 0;
    *port = 0;
    if (pstart) {
        if (pstart == auth_end)
            return JN_EINVAL;
        long p = 0;
        for (const char *c = pstart; c < auth_end; c++) {
            if (*c < '0' || *c > '9')
                return JN_EINVAL;
            p = p * 10 + (*c - '0');
            if (p > 65535)
                return JN_EINVAL;
        }
        if (p == 0)
            return JN_EINVAL;
        *port = (int)p;
    }
    const char *rest = auth_end;
    int n = *rest == '/' ? snprintf(path, path_len, "%s", rest) : snprintf(path, path_len, "/%s", rest);
    if (n < 0 || (size_t)n >= path_len)
        return JN_EINVAL;
    return 0;
}

static void print_opts(FILE *f, const jn_bench_opt_t *t)
{
    for (; t && t->name; t++) {
        char left[64];
        snprintf(left, sizeof(left), "--%s%s", t->name,
                 t->kind == JN_BOPT_FLAG ? "" : t->kind == JN_BOPT_STR ? " S" : " N");
        fprintf(f, "  %-22s %s\n", left, t->help);
    }
}

static void print_help(FILE *f, const jn_bench_door_t *door)
{
    fprintf(f, "usage: junction bench <door> [options]\n\ndoors:\n");
    for (size_t i = 0; i < NDOORS; i++)
        if (!door || door == doors[i])
            fprintf(f, "  %-8s %s (default %s)\n", doors[i]->name, doors[i]->summary, doors[i]->default_url);
    fprintf(f, "\ncommon options:\n");
    print_opts(f, common_opts);
    for (size_t i = 0; i < NDOORS; i++) {
        if (door && door != doors[i])
            continue;
        fprintf(f, "\n%s options:\n", doors[i]->name);
        print_opts(f, doors[i]->opts);
    }
}

/* ---- the run ---------------------------------------------------------- */

static void finish(jn_bench_t *b);

void jn__bench_fail(jn_bench_t *b, const char *fmt, ...)
{
    if (b->exit_code == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->fail_msg, sizeof(b->fail_msg), fmt, ap);
        va_end(ap);
        b->exit_code = 1;
    }
    b->poke_armed = false; /* force a re-arm */
    jn__bench_poke(b);
}

static void begin_drain(jn_bench_t *b);

static void on_end(uv_timer_t *t)
{
    jn_bench_t *b = t->data;
    if (b->phase == JN_BENCH_RUNNING)
        begin_drain(b);
    else if (b->phase == JN_BENCH_DRAINING)
        finish(b);
}

static void begin_drain(jn_bench_t *b)
{
    if (b->phase != JN_BENCH_RUNNING)
        return;
    b->phase = JN_BENCH_DRAINING;
    b->t_send_end = jn_mono_ns();
    b->t_drain_deadline = b->t_send_end + JN_BENCH_DRAIN_NS;
    if (b->o->door->drain)
        b->o->door->drain(b);
    uv_timer_start(&b->end_timer, on_end, JN_BENCH_DRAIN_NS / 1000000, 0);
    jn__bench_poke(b);
}

void jn__bench_end(jn_bench_t *b)
{
    if (b->phase != JN_BENCH_RUNNING)
        return;
    /* Not from inside a door callback: the poke handler drains. */
    b->end_requested = true;
    b->poke_armed = false;
    jn__bench_poke(b);
}

static void on_poke(uv_timer_t *t)
{
    jn_bench_t *b = t->data;
    b->poke_armed = false;
    if (b->phase == JN_BENCH_DONE)
        return;
    if (b->exit_code) {
        finish(b);
        return;
    }
    if (b->phase == JN_BENCH_RUNNING && (b->end_requested || (b->o->count && b->issued >= b->o->count)))
        begin_drain(b);
    if (b->phase == JN_BENCH_DRAINING && b->o->door->settled(b))
        finish(b);
}

void jn__bench_poke(jn_bench_t *b)
{
    if (b->poke_armed || b->phase == JN_BENCH_DONE)
        return;
    /* Nothing can end a run that is sending without a count or error. */
    if (b->phase == JN_BENCH_RUNNING && !b->exit_code && !b->interrupted && !b->end_requested &&
        !(b->o->count && b->issued >= b->o->count))
        return;
    b->poke_armed = true;
    uv_timer_start(&b->poke_timer, on_poke, 0, 0);
}

void jn__bench_ready(jn_bench_t *b)
{
    if (b->phase != JN_BENCH_CONNECTING || b->exit_code)
        return;
    b->phase = JN_BENCH_RUNNING;
    b->t_ready = jn_mono_ns();
    uint64_t ms = (uint64_t)llround(b->o->duration_s * 1000.0);
    uv_timer_start(&b->end_timer, on_end, ms ? ms : 1, 0);
    b->o->door->start(b);
}

bool jn__bench_take(jn_bench_t *b)
{
    if (b->phase != JN_BENCH_RUNNING)
        return false;
    if (b->o->count && b->issued >= b->o->count)
        return false;
    b->issued++;
    if (b->o->count && b->issued == b->o->count)
        jn__bench_poke(b);
    return true;
}

void jn__bench_delivered(jn_bench_t *b, size_t bytes, uint64_t lat_ns)
{
    b->delivered++;
    b->delivered_bytes += bytes;
    b->t_last_delivery = jn_mono_ns();
    jn_hist_record(&b->lat, lat_ns);
}

static void close_core_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void finish(jn_bench_t *b)
{
    if (b->phase == JN_BENCH_DONE)
        return;
    if (b->phase == JN_BENCH_RUNNING)
        b->t_send_end = jn_mono_ns();
    if (b->phase == JN_BENCH_CONNECTING && !b->exit_code && !b->interrupted) {
        b->exit_code = 1;
        snprintf(b->fail_msg, sizeof(b->fail_msg), "could not get ready");
    }
    b->phase = JN_BENCH_DONE;
    if (b->progress)
        fprintf(stderr, "\r\033[K");
    close_core_handle((uv_handle_t *)&b->tick_timer);
    close_core_handle((uv_handle_t *)&b->end_timer);
    close_core_handle((uv_handle_t *)&b->poke_timer);
    close_core_handle((uv_handle_t *)&b->sigint);
    b->o->door->close(b);
}

static void on_sigint(uv_signal_t *s, int signum)
{
    jn_bench_t *b = s->data;
    (void)signum;
    /* The first Ctrl-C ends sending and lets in-flight messages land; a
     * second one (or one before the start) ends at once. Signal callbacks
     * run from the loop, outside any door callback, so finishing here is
     * safe. */
    b->interrupted = true;
    if (b->phase == JN_BENCH_RUNNING)
        begin_drain(b);
    else
        finish(b);
}

static void on_tick(uv_timer_t *t)
{
    jn_bench_t *b = t->data;
    uint64_t now = jn_mono_ns();
    if (b->phase == JN_BENCH_CONNECTING && now - b->t_created > JN_BENCH_CONNECT_NS) {
        jn__bench_fail(b, "connections not ready after %llu s", JN_BENCH_CONNECT_NS / 1000000000ull);
        return;
    }
    if (b->o->door->tick)
        b->o->door->tick(b);
    if (b->progress && (b->phase == JN_BENCH_RUNNING || b->phase == JN_BENCH_DRAINING)) {
        double el = (double)(now - b->t_ready) / 1e9;
        fprintf(stderr, "\r\033[K%6.1fs  sent %10llu (%9llu/s)  delivered %10llu (%9llu/s)  errors %llu%s", el,
                (unsigned long long)b->sent, (unsigned long long)(b->sent - b->prev_sent),
                (unsigned long long)b->delivered, (unsigned long long)(b->delivered - b->prev_delivered),
                (unsigned long long)b->errors, b->phase == JN_BENCH_DRAINING ? "  draining" : "");
        fflush(stderr);
    }
    b->prev_sent = b->sent;
    b->prev_delivered = b->delivered;
}

/* ---- the summary ------------------------------------------------------ */

static double us(uint64_t ns) { return round((double)ns / 100.0) / 10.0; }

static json_t *summary_json(const jn_bench_t *b)
{
    const jn_bench_opts_t *o = b->o;
    double send_s = b->t_send_end > b->t_ready ? (double)(b->t_send_end - b->t_ready) / 1e9 : 0;
    uint64_t t_del_end = b->t_last_delivery > b->t_send_end ? b->t_last_delivery : b->t_send_end;
    double del_s = t_del_end > b->t_ready ? (double)(t_del_end - b->t_ready) / 1e9 : 0;
    char target[300];
    snprintf(target, sizeof(target), strchr(b->host, ':') ? "[%s]:%d" : "%s:%d", b->host, b->port);

    json_t *cfg = json_object();
    json_object_set_new(cfg, "size", json_integer(o->size));
    json_object_set_new(cfg, "duration_s", json_real(o->duration_s));
    json_object_set_new(cfg, "count", json_integer((json_int_t)o->count));
    if (o->door->describe)
        o->door->describe(b, cfg);

    json_t *lat = json_object();
    json_object_set_new(lat, "count", json_integer((json_int_t)jn_hist_count(&b->lat)));
    json_object_set_new(lat, "mean", json_real(us((uint64_t)jn_hist_mean(&b->lat))));
    json_object_set_new(lat, "p50", json_real(us(jn_hist_percentile(&b->lat, 50))));
    json_object_set_new(lat, "p90", json_real(us(jn_hist_percentile(&b->lat, 90))));
    json_object_set_new(lat, "p99", json_real(us(jn_hist_percentile(&b->lat, 99))));
    json_object_set_new(lat, "p99_9", json_real(us(jn_hist_percentile(&b->lat, 99.9))));
    json_object_set_new(lat, "max", json_real(us(jn_hist_max(&b->lat))));

    json_t *j = json_object();
    json_object_set_new(j, "door", json_string(o->door->name));
    json_object_set_new(j, "target", json_string(target));
    json_object_set_new(j, "config", cfg);
    json_object_set_new(j, "send_s", json_real(send_s));
    json_object_set_new(j, "deliver_s", json_real(del_s));
    json_object_set_new(j, "sent", json_integer((json_int_t)b->sent));
    json_object_set_new(j, "sent_bytes", json_integer((json_int_t)b->sent_bytes));
    json_object_set_new(j, "sent_msgs_per_s", json_real(send_s > 0 ? round((double)b->sent / send_s) : 0));
    json_object_set_new(j, "sent_mb_per_s", json_real(send_s > 0 ? (double)b->sent_bytes / send_s / 1e6 : 0));
    json_object_set_new(j, "delivered", json_integer((json_int_t)b->delivered));
    json_object_set_new(j, "delivered_bytes", json_integer((json_int_t)b->delivered_bytes));
    json_object_set_new(j, "delivered_msgs_per_s",
                        json_real(del_s > 0 ? round((double)b->delivered / del_s) : 0));
    json_object_set_new(j, "delivered_mb_per_s",
                        json_real(del_s > 0 ? (double)b->delivered_bytes / del_s / 1e6 : 0));
    json_object_set_new(j, "errors", json_integer((json_int_t)b->errors));
    json_object_set_new(j, "acked", json_integer((json_int_t)b->acked));
    if (b->has_loss) {
        json_object_set_new(j, "expected", json_integer((json_int_t)b->expected));
        json_object_set_new(j, "lost", json_integer((json_int_t)(b->expected > b->delivered
                                                                     ? b->expected - b->delivered : 0)));
        json_object_set_new(j, "duplicates", json_integer((json_int_t)b->duplicates));
    }
    json_object_set_new(j, "interrupted", json_boolean(b->interrupted));
    json_object_set_new(j, "latency_us", lat);
    return j;
}

static void print_text(FILE *f, json_t *j)
{
    json_t *cfg = json_object_get(j, "config");
    fprintf(f, "junction bench %s -> %s\n  config     ", json_string_value(json_object_get(j, "door")),
            json_string_value(json_object_get(j, "target")));
    const char *k;
    json_t *v;
    json_object_foreach(cfg, k, v) {
        if (json_is_string(v))
            fprintf(f, " %s=%s", k, json_string_value(v));
        else if (json_is_real(v))
            fprintf(f, " %s=%g", k, json_real_value(v));
        else if (json_is_boolean(v))
            fprintf(f, " %s=%s", k, json_is_true(v) ? "yes" : "no");
        else
            fprintf(f, " %s=%lld", k, (long long)json_integer_value(v));
    }
    fprintf(f, "\n");
#define I(name) ((long long)json_integer_value(json_object_get(j, name)))
#define R(obj, name) json_real_value(json_object_get(obj, name))
    fprintf(f, "  sent        %12lld msgs %12.0f msg/s %10.2f MB/s  (%.2f s)\n", I("sent"), R(j, "sent_msgs_per_s"),
            R(j, "sent_mb_per_s"), R(j, "send_s"));
    fprintf(f, "  delivered   %12lld msgs %12.0f msg/s %10.2f MB/s  (%.2f s)\n", I("delivered"),
            R(j, "delivered_msgs_per_s"), R(j, "delivered_mb_per_s"), R(j, "deliver_s"));
    fprintf(f, "  errors      %12lld\n", I("errors"));
    if (json_object_get(j, "lost"))
        fprintf(f, "  lost        %12lld  (expected %lld, duplicates %lld, acked %lld)\n", I("lost"), I("expected"),
                I("duplicates"), I("acked"));
    json_t *lat = json_object_get(j, "latency_us");
    fprintf(f, "  latency us   p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (mean %.1f, %lld samples)\n",
            R(lat, "p50"), R(lat, "p90"), R(lat, "p99"), R(lat, "p99_9"), R(lat, "max"), R(lat, "mean"),
            (long long)json_integer_value(json_object_get(lat, "count")));
    if (json_is_true(json_object_get(j, "interrupted")))
        fprintf(f, "  (interrupted)\n");
#undef I
#undef R
}

/* ---- entry ------------------------------------------------------------ */

static int resolve(jn_bench_t *b, char *err, size_t errlen)
{
    const jn_bench_opts_t *o = b->o;
    const char *url = o->url ? o->url : o->door->default_url;
    char scheme[16];
    if (jn__bench_url_split(url, scheme, sizeof(scheme), b->host, sizeof(b->host), &b->port, b->path,
                            sizeof(b->path)) < 0) {
        snprintf(err, errlen, "bad URL '%s' (want scheme://host[:port][/path])", url);
        return 2;
    }
    bool ok = false;
    for (int i = 0; i < 3 && o->door->schemes[i]; i++)
        ok |= strcmp(scheme, o->door->schemes[i]) == 0;
    if (!ok) {
        snprintf(err, errlen, "door %s does not speak '%s://' (use %s://)", o->door->name, scheme,
                 o->door->schemes[0]);
        return 2;
    }
    if (o->host) {
        if (strlen(o->host) >= sizeof(b->host)) {
            snprintf(err, errlen, "--host too long");
            return 2;
        }
        snprintf(b->host, sizeof(b->host), "%s", o->host);
    }
    if (o->port)
        b->port = o->port;
    if (!b->port)
        b->port = o->door->default_port;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%d", b->port);
    int rc = getaddrinfo(b->host, port, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "cannot resolve %s: %s", b->host, gai_strerror(rc));
        return 1;
    }
    memcpy(&b->addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int jn_bench_main(int argc, char **argv)
{
    jn_bench_opts_t o;
    char err[512];
    int rc = jn__bench_parse(argc, argv, &o, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "junction bench: %s (see `junction bench %s%s--help`)\n", err, o.door ? o.door->name : "",
                o.door ? " " : "");
        return 2;
    }
    if (o.help) {
        print_help(stdout, o.door);
        jn__bench_opts_free(&o);
        return 0;
    }
    bool loop_ok = false;
    jn_bench_t *b = calloc(1, sizeof(*b));
    if (!b) {
        fprintf(stderr, "junction bench: out of memory\n");
        rc = 1;
        goto out;
    }
    b->o = &o;
    b->cfg = o.cfg;
    rc = resolve(b, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "junction bench: %s\n", err);
        goto out;
    }
    /* 1 ns resolution up to one hour, 3 significant digits. */
    if (jn_hist_init(&b->lat, 1000, 3600ull * 1000000000ull, 3) < 0) {
        fprintf(stderr, "junction bench: out of memory\n");
        rc = 1;
        goto out;
    }
    if (uv_loop_init(&b->loop) < 0) {
        fprintf(stderr, "junction bench: cannot create an event loop\n");
        rc = 1;
        goto out;
    }
    loop_ok = true;
    raise_nofile();
    b->progress = !o.quiet && isatty(STDERR_FILENO);
    b->t_created = jn_mono_ns();
    uv_timer_init(&b->loop, &b->tick_timer);
    uv_timer_init(&b->loop, &b->end_timer);
    uv_timer_init(&b->loop, &b->poke_timer);
    uv_signal_init(&b->loop, &b->sigint);
    b->tick_timer.data = b->end_timer.data = b->poke_timer.data = b->sigint.data = b;
    uv_timer_start(&b->tick_timer, on_tick, 1000, 1000);
    uv_signal_start(&b->sigint, on_sigint, SIGINT);
    if (o.door->open(b) < 0 && !b->exit_code)
        jn__bench_fail(b, "cannot start");
    uv_run(&b->loop, UV_RUN_DEFAULT);

    if (b->exit_code) {
        fprintf(stderr, "junction bench %s: %s\n", o.door->name, b->fail_msg);
        rc = 1;
    } else {
        json_t *j = summary_json(b);
        if (!j) {
            rc = 1;
        } else {
            if (o.json) {
                char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
                if (s)
                    printf("%s\n", s);
                free(s);
            } else {
                print_text(stdout, j);
            }
            fflush(stdout);
            json_decref(j);
            rc = 0;
        }
    }
out:
    if (loop_ok) {
        /* Normally everything is closed already; this catches handles a
         * failed start left open, before the memory under them goes. */
        uv_walk(&b->loop, close_walk, NULL);
        uv_run(&b->loop, UV_RUN_DEFAULT);
    }
    if (b && b->door_state && o.door->free)
        o.door->free(b);
    if (loop_ok)
        (void)uv_loop_close(&b->loop);
    if (b)
        jn_hist_free(&b->lat);
    free(b);
    jn__bench_opts_free(&o);
    return rc;
}
