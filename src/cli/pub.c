/* pub.c - `junction pub`: publishes one record through
 * POST /v1/publish/{subject} and prints where it was stored. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"

#define STDIN_MAX (1u << 30) /* bytes of a payload read from stdin */
#define PUB_USAGE "usage: junction pub SUBJECT [PAYLOAD|-] [--key K] [--header k=v]... " \
                  "[--partition N] [--content-type T]"

static const cli_optspec_t pub_opts[] = {
    {"key", true},
    {"header", true},
    {"partition", true},
    {"content-type", true},
    {NULL, false},
};

static int read_stdin(jn_buf_t *b)
{
    char chunk[65536];
    for (;;) {
        ssize_t n = read(STDIN_FILENO, chunk, sizeof chunk);
        if (n == 0)
            return 0;
        if (n < 0) {
            perror("junction pub: reading stdin");
            return CLI_EXIT_FAIL;
        }
        if (jn_buf_append(b, chunk, (size_t)n) != 0) {
            fprintf(stderr, "junction pub: payload on stdin is larger than %u bytes\n", STDIN_MAX);
            return CLI_EXIT_FAIL;
        }
    }
}

/* Adds "Name: value" to |*list|. */
static int add_header(struct curl_slist **list, const char *name, size_t nlen, const char *value)
{
    char line[8192];
    int n = snprintf(line, sizeof line, "%.*s:%s%s", (int)nlen, name, *value ? " " : "", value);
    if (n < 0 || (size_t)n >= sizeof line)
        return -1;
    struct curl_slist *grown = curl_slist_append(*list, line);
    if (!grown)
        return -1;
    *list = grown;
    return 0;
}

static bool header_name_ok(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 32 || ch >= 127 || strchr("()<>@,;:\\\"/[]?={}", ch))
            return false;
    }
    return true;
}

int cli_cmd_pub(int argc, char **argv)
{
    cli_args_t a;
    cli_client_t c;
    jn_buf_t payload, path, resp;
    struct curl_slist *headers = NULL;
    json_t *j = NULL;
    int rc;
    memset(&c, 0, sizeof c);
    jn_buf_init(&payload, STDIN_MAX);
    jn_buf_init(&path, 64 * 1024);
    jn_buf_init(&resp, CLI_RESPONSE_MAX);

    if ((rc = cli_parse("pub", argc, argv, pub_opts, &a)))
        goto done;
    if (a.npos < 1 || a.npos > 2) {
        rc = cli_usage_error("pub", a.npos < 1 ? "missing SUBJECT\n" PUB_USAGE : "too many arguments\n" PUB_USAGE);
        goto done;
    }
    const char *subject = a.pos[0];
    if (!*subject) {
        rc = cli_usage_error("pub", "empty SUBJECT");
        goto done;
    }
    const char *partition = cli_get(&a, "partition");
    long long pnum = 0;
    if (partition && cli_parse_uint(partition, 1 << 20, &pnum)) {
        rc = cli_usage_error("pub", "--partition must be a non-negative integer (got '%s')", partition);
        goto done;
    }
    /* Every --header, in order; each becomes an X-Header-<name> header. */
    for (int i = 0; i < a.nopts; i++) {
        if (strcmp(a.opts[i].name, "header") != 0)
            continue;
        const char *kv = a.opts[i].value;
        const char *eq = strchr(kv, '=');
        if (!eq || !header_name_ok(kv, (size_t)(eq - kv))) {
            rc = cli_usage_error("pub", "--header needs name=value with a token name (got '%s')", kv);
            goto done;
        }
        char name[512];
        int n = snprintf(name, sizeof name, "X-Header-%.*s", (int)(eq - kv), kv);
        if (n < 0 || (size_t)n >= sizeof name || add_header(&headers, name, (size_t)n, eq + 1)) {
            rc = cli_usage_error("pub", "--header too long");
            goto done;
        }
    }
    const char *ctype = cli_get(&a, "content-type");
    /* Without this curl would label the body as a form. An empty value
     * makes curl send no Content-Type at all. */
    if (add_header(&headers, "Content-Type", 12, ctype ? ctype : "")) {
        rc = cli_usage_error("pub", "--content-type too long");
        goto done;
    }

    if ((rc = cli_client_init(&c, "pub", &a)))
        goto done;

    if (a.npos == 2 && strcmp(a.pos[1], "-") == 0) {
        if ((rc = read_stdin(&payload)))
            goto done;
    } else if (a.npos == 2 && jn_buf_append_str(&payload, a.pos[1]) != 0) {
        rc = cli_usage_error("pub", "payload too large");
        goto done;
    }

    const char *key = cli_get(&a, "key");
    char sep = '?';
    if (jn_buf_append_str(&path, "/v1/publish/") || cli_append_escaped(&path, subject, true))
        goto toolong;
    if (key) {
        if (jn_buf_printf(&path, "%ckey=", sep) || cli_append_escaped(&path, key, false))
            goto toolong;
        sep = '&';
    }
    if (partition && jn_buf_printf(&path, "%cpartition=%lld", sep, pnum))
        goto toolong;
    if (jn_buf_put_u8(&path, 0))
        goto toolong;

    long status = 0;
    if ((rc = cli_request(&c, "POST", (const char *)path.data, headers,
                          payload.data ? payload.data : (const uint8_t *)"", payload.len, &resp, &status)))
        goto done;
    if (status < 200 || status >= 300) {
        rc = cli_report_error(status, &resp);
        goto done;
    }
    json_error_t jerr;
    j = json_loadb((const char *)resp.data, resp.len, 0, &jerr);
    const char *stream = j ? json_string_value(json_object_get(j, "stream")) : NULL;
    json_t *jp = j ? json_object_get(j, "partition") : NULL;
    json_t *jo = j ? json_object_get(j, "offset") : NULL;
    if (!stream || !json_is_integer(jp) || !json_is_integer(jo)) {
        fprintf(stderr, "junction pub: unexpected answer from the server: %.*s\n",
                (int)(resp.len > 500 ? 500 : resp.len), resp.data ? (const char *)resp.data : "");
        rc = CLI_EXIT_FAIL;
        goto done;
    }
    printf("stream=%s partition=%lld offset=%lld\n", stream, (long long)json_integer_value(jp),
           (long long)json_integer_value(jo));
    rc = CLI_EXIT_OK;
    goto done;

toolong:
    rc = cli_usage_error("pub", "subject or key too long");
done:
    json_decref(j);
    curl_slist_free_all(headers);
    cli_client_free(&c);
    jn_buf_free(&payload);
    jn_buf_free(&path);
    jn_buf_free(&resp);
    return rc;
}
