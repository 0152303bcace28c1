/* test_config.c - the option table, the config file parser, flags, size
 * suffixes, error messages with line numbers and the loopback rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/log.h"
#include "server/config.h"

static int setup(void **state)
{
    jn_config_t *c = calloc(1, sizeof *c);
    if (!c || jn_config_init(c) != 0)
        return -1;
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    jn_config_free(*state);
    free(*state);
    return 0;
}

static int parse(jn_config_t *c, const char *text, char *err)
{
    err[0] = '\0';
    return jn_config_parse(c, text, strlen(text), "junction.conf", err, JN_CONFIG_ERR_MAX);
}

static void test_defaults(void **state)
{
    jn_config_t *c = *state;
    assert_string_equal(c->data_dir, "./data");
    assert_int_equal(c->log_level, JN_LOG_INFO);
    assert_string_equal(c->http_listen, "127.0.0.1:8080");
    assert_string_equal(c->https_listen, "");
    assert_int_equal(c->allow_anonymous, JN_ANON_AUTO);
    assert_int_equal(c->http_max_body, 8 * 1024 * 1024);
    assert_int_equal(c->http_idle_timeout_ms, 60000);
    assert_int_equal(c->http_request_timeout_ms, 30000);
    assert_int_equal(c->http_max_connections, 100000);
    assert_int_equal(c->http_max_header_bytes, 16384);
    assert_int_equal(c->http_max_request_line, 8192);
    assert_int_equal(c->http_max_headers, 64);
    assert_true(c->streams_auto_create);
    assert_int_equal(c->streams_default_partitions, 1);
    assert_int_equal(c->streams_fsync, JN_FSYNC_INTERVAL);
    assert_int_equal(c->streams_fsync_interval_ms, 1000);
    assert_int_equal(c->streams_retention_ms, 604800000);
    assert_int_equal(c->streams_retention_bytes, -1);
    assert_int_equal(c->streams_segment_bytes, 134217728);
    assert_int_equal(c->streams_segment_ms, 604800000);
    assert_int_equal(c->streams_max_batch_bytes, 8388608);
    assert_int_equal(c->maintenance_interval_ms, 5000);
    assert_int_equal(c->nmaps, 0);
    char err[JN_CONFIG_ERR_MAX];
    assert_int_equal(jn_config_validate(c, err, sizeof err), 0);
}

static void test_table_is_complete(void **state)
{
    (void)state;
    size_t n;
    const jn_option_t *o = jn_config_options(&n);
    assert_true(n >= 27);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(o[i].name);
        assert_non_null(o[i].help);
        assert_non_null(o[i].metavar);
        for (size_t k = i + 1; k < n; k++)
            assert_string_not_equal(o[i].name, o[k].name);
    }
}

static void test_good_file(void **state)
{
    jn_config_t *c = *state;
    char err[JN_CONFIG_ERR_MAX];
    const char *text = "# a comment\n"
                       "\n"
                       "   # indented comment\n"
                       "data_dir = /var/lib/junction\n"
                       "log_level=debug\n"
                       "  http.listen   =   0.0.0.0:9000   \r\n"
                       "https.listen = [::1]:8443\n"
                       "tls.cert = /etc/junction/cert.pem\n"
                       "tls.key = /etc/junction/key.pem\n"
                       "allow_anonymous = false\n"
                       "streams.auto_create = no\n"
                       "streams.fsync = always\n"
                       "streams.retention_ms = -1\n"
                       "map = sensors/# -> iot\n"
                       "map = orders/+/created->orders-created\n"
                       "admin.user = root\n"
                       "admin.password = s3cret = with equals\n"
                       "\t\n";
    assert_int_equal(parse(c, text, err), 0);
    assert_string_equal(c->data_dir, "/var/lib/junction");
    assert_int_equal(c->log_level, JN_LOG_DEBUG);
    assert_string_equal(c->http_listen, "0.0.0.0:9000");
    assert_string_equal(c->https_listen, "[::1]:8443");
    assert_string_equal(c->tls_cert, "/etc/junction/cert.pem");
    assert_int_equal(c->allow_anonymous, JN_ANON_FALSE);
    assert_false(c->streams_auto_create);
    assert_int_equal(c->streams_fsync, JN_FSYNC_ALWAYS);
    assert_int_equal(c->streams_retention_ms, -1);
    assert_int_equal(c->nmaps, 2);
    assert_string_equal(c->maps[0].filter, "sensors/#");
    assert_string_equal(c->maps[0].stream, "iot");
    assert_string_equal(c->maps[1].filter, "orders/+/created");
    assert_string_equal(c->maps[1].stream, "orders-created");
    assert_string_equal(c->admin_user, "root");
    assert_string_equal(c->admin_password, "s3cret = with equals");
    /* Untouched options keep their defaults. */
    assert_int_equal(c->http_max_body, 8 * 1024 * 1024);
    assert_int_equal(jn_config_validate(c, err, sizeof err), 0);
}

static void test_last_line_without_newline(void **state)
{
    jn_config_t *c = *state;
    char err[JN_CONFIG_ERR_MAX];
    assert_int_equal(parse(c, "log_level = warn", err), 0);
    assert_int_equal(c->log_level, JN_LOG_WARN);
}

static void test_size_suffixes(void **state)
{
    jn_config_t *c = *state;
    char err[JN_CONFIG_ERR_MAX];
    static const struct {
        const char *text;
        int64_t value;
    } cases[] = {
        {"1024", 1024},   {"4k", 4096},           {"4K", 4096},          {"4kb", 4096},
        {"4KiB", 4096},   {"2m", 2097152},        {"2MB", 2097152},      {"1g", 1073741824},
        {"1GiB", 1073741824}, {"512b", 512},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(jn_config_set(c, "http.max_body", cases[i].text, err, sizeof err), 0);
        assert_int_equal(c->http_max_body, cases[i].value);
    }
    assert_int_equal(jn_config_set(c, "streams.retention_bytes", "10g", err, sizeof err), 0);
    assert_int_equal(c->streams_retention_bytes, 10LL << 30);
    assert_int_equal(jn_config_set(c, "streams.retention_bytes", "-1", err, sizeof err), 0);
    assert_int_equal(c->streams_retention_bytes, -1);

    static const char *const bad[] = {"", "k", "4x", "4kk", "4 k", " 4", "4.5m", "-1",
                                      "0", "2g", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(jn_config_set(c, "http.max_body", bad[i], err, sizeof err), JN_EINVAL);
    /* Overflow of the multiplication is an error, not a wrap. */
    assert_int_equal(jn_config_set(c, "streams.retention_bytes", "9000000000000g", err, sizeof err),
                     JN_EINVAL);
}

static void test_error_messages(void **state)
{
    jn_config_t *c = *state;
    char err[JN_CONFIG_ERR_MAX];

    assert_int_equal(parse(c, "# ok\nlog_level = info\n\nfoo = 1\n", err), JN_EINVAL);
    assert_string_equal(err, "junction.conf:4: unknown option 'foo'");

    assert_int_equal(parse(c, "http.max_connections = x\n", err), JN_EINVAL);
    assert_string_equal(err, "junction.conf:1: invalid value 'x' for 'http.max_connections' "
                             "(expected an integer 1-4294967295)");

    assert_int_equal(parse(c, "\n\nhttp.listen = 127.0.0.1:70000\n", err), JN_EINVAL);
    assert_non_null(strstr(err, "junction.conf:3: invalid value '127.0.0.1:70000' for 'http.listen' "
                                "(expected host:port with a port 0-65535"));

    assert_int_equal(parse(c, "streams.fsync = sometimes\n", err), JN_EINVAL);
    assert_string_equal(err, "junction.conf:1: invalid value 'sometimes' for 'streams.fsync' "
                             "(expected one of never, interval, always)");

    assert_int_equal(parse(c, "streams.auto_create = maybe\n", err), JN_EINVAL);
    assert_string_equal(err, "junction.conf:1: invalid value 'maybe' for 'streams.auto_create' "
                             "(expected true or false)");

    assert_int_equal(parse(c, "http.max_body = lots\n", err), JN_EINVAL);
    assert_string_equal(err, "junction.conf:1: invalid value 'lots' for 'http.max_body' "
                             "(expected a size 1-1073741824 with an optional k/m/g suffix)");

    assert_int_equal(parse(c, "streams.retention_ms = -5\n", err), JN_EINVAL);
    assert_string_equal(err, "junction.conf:1: invalid value '-5' for 'streams.retention_ms' "
                             "(expected -1 or an integer >= 0)");

    assert_int_equal(parse(c, "map = sensors/#\n", err), JN_EINVAL);
    assert_string_equal(err, "junction.conf:1: invalid value 'sensors/#' for 'map' "
                             "(expected 'filter -> stream', e.g. 'sensors/# -> iot')");
    assert_int_equal(parse(c, "map = sensors/#/x -> iot\n", err), JN_EINVAL);
    assert_int_equal(parse(c, "map = sensors/# -> bad name\n", err), JN_EINVAL);
    assert_int_equal(parse(c, "map = sensors/# -> __internal\n", err), JN_EINVAL);
    assert_int_equal(parse(c, "map =  -> iot\n", err), JN_EINVAL);

    assert_int_equal(parse(c, "data_dir =\n", err), JN_EINVAL);
    assert_string_equal(err, "junction.conf:1: invalid value '' for 'data_dir' (expected a non-empty string)");

    assert_int_equal(parse(c, "log_level info\n", err), JN_EINVAL);
    assert_string_equal(err, "junction.conf:1: expected 'key = value'");
    assert_int_equal(parse(c, " = info\n", err), JN_EINVAL);
    assert_string_equal(err, "junction.conf:1: expected 'key = value'");

    assert_int_equal(parse(c, "log_level = info\nlog_level = debug\n", err), JN_EINVAL);
    assert_string_equal(err, "junction.conf:2: duplicate option 'log_level'");

    assert_int_equal(jn_config_set(c, "nope", "1", err, sizeof err), JN_EINVAL);
    assert_string_equal(err, "unknown option 'nope'");
}

static void test_listen_parse(void **state)
{
    (void)state;
    char host[64];
    int port;
    assert_int_equal(jn_listen_parse("127.0.0.1:8080", host, sizeof host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_int_equal(jn_listen_parse("[::]:0", host, sizeof host, &port), 0);
    assert_string_equal(host, "::");
    assert_int_equal(port, 0);
    assert_int_equal(jn_listen_parse("localhost:65535", host, sizeof host, &port), 0);
    assert_string_equal(host, "localhost");
    static const char *const bad[] = {"127.0.0.1", ":8080", "127.0.0.1:", "::1:8080", "[::1]8080",
                                      "example.com:80", "1.2.3.4:65536", "1.2.3.4:-1", "[1.2.3.4]:80",
                                      "1.2.3.4:80x", "[zz]:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(jn_listen_parse(bad[i], host, sizeof host, &port), JN_EINVAL);

    assert_true(jn_host_is_loopback("127.0.0.1"));
    assert_true(jn_host_is_loopback("127.1.2.3"));
    assert_true(jn_host_is_loopback("::1"));
    assert_true(jn_host_is_loopback("::ffff:127.0.0.1"));
    assert_true(jn_host_is_loopback("localhost"));
    assert_false(jn_host_is_loopback("0.0.0.0"));
    assert_false(jn_host_is_loopback("::"));
    assert_false(jn_host_is_loopback("10.0.0.1"));
    assert_false(jn_host_is_loopback("128.0.0.1"));
}

static void test_flags_override(void **state)
{
    jn_config_t *c = *state;
    char err[JN_CONFIG_ERR_MAX];
    assert_int_equal(parse(c, "log_level = warn\nhttp.max_body = 1m\nmap = a/# -> x\nmap = b/# -> y\n", err), 0);
    char *argv[] = {"--log_level", "debug",        "--http.max_body=2m", "--streams.auto-create",
                    "--data-dir",  "/tmp/x",       "--map",              "c/# -> z",
                    "--streams.fsync", "never"};
    assert_int_equal(jn_config_apply_args(c, 10, argv, err, sizeof err), 0);
    assert_int_equal(c->log_level, JN_LOG_DEBUG);
    assert_int_equal(c->http_max_body, 2 * 1024 * 1024);
    assert_true(c->streams_auto_create);
    assert_string_equal(c->data_dir, "/tmp/x");
    assert_int_equal(c->streams_fsync, JN_FSYNC_NEVER);
    /* A list given as flags replaces the file's list. */
    assert_int_equal(c->nmaps, 1);
    assert_string_equal(c->maps[0].filter, "c/#");

    char *bool_argv[] = {"--streams.auto_create", "false", "--streams.auto_create", "--log_level", "off"};
    assert_int_equal(jn_config_apply_args(c, 2, bool_argv, err, sizeof err), 0);
    assert_false(c->streams_auto_create);
    assert_int_equal(jn_config_apply_args(c, 5, bool_argv, err, sizeof err), 0);
    assert_true(c->streams_auto_create);
    assert_int_equal(c->log_level, JN_LOG_OFF);

    char *unknown[] = {"--foo", "1"};
    assert_int_equal(jn_config_apply_args(c, 2, unknown, err, sizeof err), JN_EINVAL);
    assert_string_equal(err, "command line: unknown option 'foo'");
    char *bad[] = {"--http.max_headers=0"};
    assert_int_equal(jn_config_apply_args(c, 1, bad, err, sizeof err), JN_EINVAL);
    assert_string_equal(err, "command line: invalid value '0' for 'http.max_headers' (expected an integer 1-100)");
    char *missing[] = {"--data_dir"};
    assert_int_equal(jn_config_apply_args(c, 1, missing, err, sizeof err), JN_EINVAL);
    assert_string_equal(err, "command line: option 'data_dir' needs a value");
    char *stray[] = {"extra"};
    assert_int_equal(jn_config_apply_args(c, 1, stray, err, sizeof err), JN_EINVAL);
    assert_string_equal(err, "command line: unexpected argument 'extra'");
}

/* A temporary directory, removed with its files at the end. */
static char tmpdir[64];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void test_load_args_with_file(void **state)
{
    jn_config_t *c = *state;
    char err[JN_CONFIG_ERR_MAX];
    char path[128];
    snprintf(path, sizeof path, "%s/my.conf", tmpdir);
    write_file(path, "log_level = error\nstreams.default_partitions = 4\n");
    char *argv[] = {"--config", path, "--streams.default_partitions", "8"};
    assert_int_equal(jn_config_load_args(c, 4, argv, err, sizeof err), 0);
    assert_int_equal(c->log_level, JN_LOG_ERROR);
    assert_int_equal(c->streams_default_partitions, 8);

    /* The file's errors carry its name and the line. */
    write_file(path, "log_level = error\n\nhttp.max_headers = 1000\n");
    jn_config_free(c);
    assert_int_equal(jn_config_init(c), 0);
    char cfgflag[160];
    snprintf(cfgflag, sizeof cfgflag, "--config=%s", path);
    char *argv2[] = {cfgflag};
    assert_int_equal(jn_config_load_args(c, 1, argv2, err, sizeof err), JN_EINVAL);
    char want[256];
    snprintf(want, sizeof want,
             "%s:3: invalid value '1000' for 'http.max_headers' (expected an integer 1-100)", path);
    assert_string_equal(err, want);

    char missing[160];
    snprintf(missing, sizeof missing, "%s/absent.conf", tmpdir);
    char *argv3[] = {"--config", missing};
    assert_int_equal(jn_config_load_args(c, 2, argv3, err, sizeof err), JN_EIO);
    assert_non_null(strstr(err, "absent.conf: cannot read"));
    unlink(path);
}

static void test_default_file_in_cwd(void **state)
{
    jn_config_t *c = *state;
    char err[JN_CONFIG_ERR_MAX];
    char old[512];
    assert_non_null(getcwd(old, sizeof old));
    assert_int_equal(chdir(tmpdir), 0);
    /* No junction.conf: defaults. */
    assert_int_equal(jn_config_load_args(c, 0, NULL, err, sizeof err), 0);
    assert_int_equal(c->log_level, JN_LOG_INFO);
    write_file("junction.conf", "log_level = warn\nbogus = 1\n");
    assert_int_equal(jn_config_load_args(c, 0, NULL, err, sizeof err), JN_EINVAL);
    assert_string_equal(err, "junction.conf:2: unknown option 'bogus'");
    unlink("junction.conf");
    assert_int_equal(chdir(old), 0);
}

static void test_validate(void **state)
{
    jn_config_t *c = *state;
    char err[JN_CONFIG_ERR_MAX];
    assert_int_equal(jn_config_set(c, "https.listen", "127.0.0.1:8443", err, sizeof err), 0);
    assert_int_equal(jn_config_validate(c, err, sizeof err), JN_EINVAL);
    assert_string_equal(err, "https.listen needs tls.cert and tls.key");
    assert_int_equal(jn_config_set(c, "tls.cert", "c.pem", err, sizeof err), 0);
    assert_int_equal(jn_config_set(c, "tls.key", "k.pem", err, sizeof err), 0);
    assert_int_equal(jn_config_validate(c, err, sizeof err), 0);
    assert_int_equal(jn_config_set(c, "admin.user", "root", err, sizeof err), 0);
    assert_int_equal(jn_config_validate(c, err, sizeof err), JN_EINVAL);
    assert_string_equal(err, "admin.user and admin.password must be set together");
    assert_int_equal(jn_config_set(c, "admin.password", "pw", err, sizeof err), 0);
    assert_int_equal(jn_config_validate(c, err, sizeof err), 0);
    assert_int_equal(jn_config_set(c, "http.listen", "", err, sizeof err), 0);
    assert_int_equal(jn_config_set(c, "https.listen", "", err, sizeof err), 0);
    assert_int_equal(jn_config_validate(c, err, sizeof err), JN_EINVAL);
    assert_string_equal(err, "no listener: set http.listen or https.listen");
}

static void test_loopback_rule(void **state)
{
    jn_config_t *c = *state;
    char err[JN_CONFIG_ERR_MAX];
    bool allow = false;

    /* Default: loopback only, anonymous allowed. */
    assert_true(jn_config_loopback_only(c));
    assert_int_equal(jn_config_anonymous(c, 0, &allow, err, sizeof err), 0);
    assert_true(allow);
    assert_int_equal(jn_config_set(c, "allow_anonymous", "false", err, sizeof err), 0);
    assert_int_equal(jn_config_anonymous(c, 0, &allow, err, sizeof err), 0);
    assert_false(allow);

    /* Beyond loopback with no users: refused unless allow_anonymous = true. */
    assert_int_equal(jn_config_set(c, "allow_anonymous", "auto", err, sizeof err), 0);
    assert_int_equal(jn_config_set(c, "http.listen", "0.0.0.0:8080", err, sizeof err), 0);
    assert_false(jn_config_loopback_only(c));
    assert_int_equal(jn_config_anonymous(c, 0, &allow, err, sizeof err), JN_EPERM);
    assert_non_null(strstr(err, "refusing to listen on 0.0.0.0:8080 (beyond loopback) with no users"));
    assert_int_equal(jn_config_set(c, "allow_anonymous", "false", err, sizeof err), 0);
    assert_int_equal(jn_config_anonymous(c, 0, &allow, err, sizeof err), JN_EPERM);
    assert_int_equal(jn_config_set(c, "allow_anonymous", "true", err, sizeof err), 0);
    assert_int_equal(jn_config_anonymous(c, 0, &allow, err, sizeof err), 0);
    assert_true(allow);

    /* With a user, auto means no anonymous beyond loopback. */
    assert_int_equal(jn_config_set(c, "allow_anonymous", "auto", err, sizeof err), 0);
    assert_int_equal(jn_config_anonymous(c, 1, &allow, err, sizeof err), 0);
    assert_false(allow);

    /* One exposed listener is enough to count as exposed. */
    assert_int_equal(jn_config_set(c, "http.listen", "[::1]:8080", err, sizeof err), 0);
    assert_true(jn_config_loopback_only(c));
    assert_int_equal(jn_config_set(c, "https.listen", "[::]:8443", err, sizeof err), 0);
    assert_false(jn_config_loopback_only(c));
    assert_int_equal(jn_config_anonymous(c, 0, &allow, err, sizeof err), JN_EPERM);
    assert_non_null(strstr(err, "[::]:8443"));
}

/* --print-config output parses back to the same configuration. */
static void test_print_round_trip(void **state)
{
    jn_config_t *c = *state;
    char err[JN_CONFIG_ERR_MAX];
    assert_int_equal(parse(c, "data_dir = /srv/j\nhttp.max_body = 3m\nstreams.fsync = never\n"
                              "map = a/+/b -> s1\nmap = c/# -> s2\nallow_anonymous = true\n"
                              "streams.retention_bytes = 12345\n", err), 0);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    jn_config_print(c, f);
    assert_int_equal(fclose(f), 0);
    assert_non_null(strstr(text, "\nhttp.max_body = 3m\n"));
    assert_non_null(strstr(text, "\n# log_level = info\n"));

    jn_config_t back;
    assert_int_equal(jn_config_init(&back), 0);
    assert_int_equal(jn_config_parse(&back, text, len, "printed", err, sizeof err), 0);
    assert_string_equal(back.data_dir, "/srv/j");
    assert_int_equal(back.http_max_body, 3 * 1024 * 1024);
    assert_int_equal(back.streams_fsync, JN_FSYNC_NEVER);
    assert_int_equal(back.allow_anonymous, JN_ANON_TRUE);
    assert_int_equal(back.streams_retention_bytes, 12345);
    assert_int_equal(back.nmaps, 2);
    assert_string_equal(back.maps[1].stream, "s2");
    jn_config_free(&back);
    free(text);

    /* Defaults print every option, all commented out, and parse back. */
    jn_config_t d;
    assert_int_equal(jn_config_init(&d), 0);
    f = open_memstream(&text, &len);
    jn_config_print(&d, f);
    assert_int_equal(fclose(f), 0);
    size_t n;
    const jn_option_t *o = jn_config_options(&n);
    for (size_t i = 0; i < n; i++) {
        char key[128];
        snprintf(key, sizeof key, "\n# %s =", o[i].name);
        assert_non_null(strstr(text, key));
    }
    assert_int_equal(jn_config_parse(&d, text, len, "printed", err, sizeof err), 0);
    jn_config_free(&d);
    free(text);

    f = open_memstream(&text, &len);
    jn_config_print_usage(f);
    assert_int_equal(fclose(f), 0);
    for (size_t i = 0; i < n; i++) {
        char key[128];
        snprintf(key, sizeof key, "--%s ", o[i].name);
        assert_non_null(strstr(text, key));
    }
    assert_non_null(strstr(text, "(default: 8m)"));
    free(text);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/jn_test_config_XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test(test_table_is_complete),
        cmocka_unit_test_setup_teardown(test_good_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_line_without_newline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_suffixes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_messages, setup, teardown),
        cmocka_unit_test(test_listen_parse),
        cmocka_unit_test_setup_teardown(test_flags_override, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_args_with_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_file_in_cwd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loopback_rule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_print_round_trip, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rmdir(tmpdir);
    return rc;
}
