/* sub.c - `junction sub`: follows GET /v1/subscribe (NDJSON over a chunked
 * response) and prints each record the moment its line is complete. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

#define LINE_MAX_BYTES (64u << 20) /* one record's JSON line */
#define ERROR_MAX (64u << 10)      /* an error body */
#define SUB_USAGE "usage: junction sub FILTER [--from earliest|live|OFFSET|time:MS] [--group G] " \
                  "[--count N] [--json]"

static const cli_optspec_t sub_opts[] = {
    {"from", true},
    {"group", true},
    {"count", true},
    {"json", false},
    {NULL, false},
};

typedef struct sub_state {
    CURL *curl;
    jn_buf_t line;      /* the incomplete line so far */
    jn_buf_t error;     /* the body of a non-2xx answer */
    bool json;
    long long count;    /* stop after this many records; 0 = never */
    long long seen;
    bool done;          /* count reached: the abort that follows is ours */
    bool bad_line;      /* a line was too long or not JSON */
} sub_state_t;

static void print_record(sub_state_t *st, const char *line, size_t len)
{
    if (st->json) {
        fwrite(line, 1, len, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        return;
    }
    json_error_t jerr;
    json_t *j = json_loadb(line, len, 0, &jerr);
    if (!json_is_object(j)) {
        fprintf(stderr, "junction sub: not a record: %.*s\n", (int)(len > 200 ? 200 : len), line);
        json_decref(j);
        st->bad_line = true;
        return;
    }
    const char *subject = json_string_value(json_object_get(j, "subject"));
    json_t *value = json_object_get(j, "value");
    const char *enc = json_string_value(json_object_get(j, "encoding"));
    printf("%s %lld ", subject ? subject : "?", (long long)json_integer_value(json_object_get(j, "offset")));
    if (json_is_string(value)) {
        if (enc && strcmp(enc, "base64") == 0)
            fputs("base64:", stdout);
        fwrite(json_string_value(value), 1, json_string_length(value), stdout);
    } else {
        fputs("null", stdout);
    }
    fputc('\n', stdout);
    fflush(stdout);
    json_decref(j);
}

/* Returns false once --count records have been printed. */
static bool take_line(sub_state_t *st, const char *p, size_t n)
{
    while (n > 0 && p[n - 1] == '\r')
        n--;
    if (n == 0)
        return true; /* keep-alive blank line */
    print_record(st, p, n);
    st->seen++;
    return !(st->count > 0 && st->seen >= st->count);
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    sub_state_t *st = arg;
    size_t total = size * nmemb;
    long status = 0;
    curl_easy_getinfo(st->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 300) {
        /* Keep what fits of the error body; it is only for the message. */
        size_t room = st->error.max - st->error.len;
        if (jn_buf_append(&st->error, p, total < room ? total : room) != 0)
            return 0;
        return total;
    }
    size_t off = 0;
    while (off < total) {
        const char *nl = memchr(p + off, '\n', total - off);
        size_t n = nl ? (size_t)(nl - (p + off)) : total - off;
        if (jn_buf_append(&st->line, p + off, n) != 0) {
            fprintf(stderr, "junction sub: a record line is longer than %u bytes\n", LINE_MAX_BYTES);
            st->bad_line = true;
            return 0;
        }
        off += n;
        if (!nl)
            break;
        off++; /* the '\n' */
        bool more = take_line(st, (const char *)st->line.data, st->line.len);
        jn_buf_reset(&st->line);
        if (!more) {
            st->done = true;
            return 0; /* ends the transfer */
        }
    }
    return total;
}

/* --from: earliest | live | OFFSET | time:MS, passed on as the query's
 * "from" when it is well formed. */
static bool from_ok(const char *s)
{
    long long v;
    if (strcmp(s, "earliest") == 0 || strcmp(s, "live") == 0)
        return true;
    if (strncmp(s, "time:", 5) == 0)
        return cli_parse_uint(s + 5, INT64_MAX, &v) == 0;
    return cli_parse_uint(s, INT64_MAX, &v) == 0;
}

int cli_cmd_sub(int argc, char **argv)
{
    cli_args_t a;
    cli_client_t c;
    sub_state_t st;
    jn_buf_t path;
    int rc;
    memset(&c, 0, sizeof c);
    memset(&st, 0, sizeof st);
    jn_buf_init(&st.line, LINE_MAX_BYTES);
    jn_buf_init(&st.error, ERROR_MAX);
    jn_buf_init(&path, 64 * 1024);

    if ((rc = cli_parse("sub", argc, argv, sub_opts, &a)))
        goto done;
    if (a.npos != 1) {
        rc = cli_usage_error("sub", a.npos < 1 ? "missing FILTER\n" SUB_USAGE : "too many arguments\n" SUB_USAGE);
        goto done;
    }
    const char *from = cli_get(&a, "from");
    if (from && !from_ok(from)) {
        rc = cli_usage_error("sub", "--from must be earliest, live, an offset or time:MS (got '%s')", from);
        goto done;
    }
    const char *count = cli_get(&a, "count");
    if (count && (cli_parse_uint(count, INT64_MAX, &st.count) || st.count == 0)) {
        rc = cli_usage_error("sub", "--count must be a positive integer (got '%s')", count);
        goto done;
    }
    const char *group = cli_get(&a, "group");
    st.json = cli_has(&a, "json");

    if ((rc = cli_client_init(&c, "sub", &a)))
        goto done;
    st.curl = c.curl;

    if (jn_buf_append_str(&path, "/v1/subscribe?filter=") || cli_append_escaped(&path, a.pos[0], false))
        goto toolong;
    if (from && (jn_buf_append_str(&path, "&from=") || cli_append_escaped(&path, from, false)))
        goto toolong;
    if (group && (jn_buf_append_str(&path, "&group=") || cli_append_escaped(&path, group, false)))
        goto toolong;
    if (count && jn_buf_printf(&path, "&limit=%lld", st.count))
        goto toolong;
    if (jn_buf_put_u8(&path, 0))
        goto toolong;

    if ((rc = cli_prepare(&c, "GET", (const char *)path.data, NULL, NULL, 0)))
        goto done;
    curl_easy_setopt(c.curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c.curl, CURLOPT_WRITEDATA, &st);
    /* A live feed can be quiet for hours: keep the connection checked by
     * TCP rather than by a transfer timeout. */
    curl_easy_setopt(c.curl, CURLOPT_TCP_KEEPALIVE, 1L);
    CURLcode cr = curl_easy_perform(c.curl);
    long status = 0;
    curl_easy_getinfo(c.curl, CURLINFO_RESPONSE_CODE, &status);
    if (st.done) {
        rc = CLI_EXIT_OK;
    } else if (status >= 300) {
        rc = cli_report_error(status, &st.error);
    } else if (cr != CURLE_OK) {
        if (st.bad_line)
            ; /* already reported */
        else if (cr == CURLE_PARTIAL_FILE)
            fprintf(stderr, "junction sub: the server closed the feed\n");
        else
            fprintf(stderr, "junction sub: %s%s: %s\n", c.url, (const char *)path.data, curl_easy_strerror(cr));
        rc = CLI_EXIT_FAIL;
    } else {
        /* The server ended the feed (its limit, or shutdown). A last line
         * without its newline still counts. */
        if (st.line.len)
            take_line(&st, (const char *)st.line.data, st.line.len);
        rc = st.bad_line ? CLI_EXIT_FAIL : CLI_EXIT_OK;
    }
    goto done;

toolong:
    rc = cli_usage_error("sub", "filter or group too long");
done:
    cli_client_free(&c);
    jn_buf_free(&st.line);
    jn_buf_free(&st.error);
    jn_buf_free(&path);
    return rc;
}
