/* streams.c - `junction streams`: list (a table or JSON), create and
 * delete streams through /v1/streams. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

#define STREAMS_USAGE "usage: junction streams [--json]\n" \
                      "       junction streams create NAME [--partitions N] [--fsync always|interval|never] " \
                      "[--retention-ms N] [--compact]\n" \
                      "       junction streams delete NAME"

static const cli_optspec_t streams_opts[] = {
    {"json", false},
    {"partitions", true},
    {"fsync", true},
    {"retention-ms", true},
    {"compact", false},
    {NULL, false},
};

/* One row of the table, as text. */
typedef struct row {
    char name[256];
    char partitions[24];
    char records[24];
    char bytes[24];
    char first[24];
    char last[24];
} row_t;

static void fill_row(const json_t *s, row_t *r)
{
    const char *name = json_string_value(json_object_get(s, "name"));
    snprintf(r->name, sizeof r->name, "%s", name ? name : "?");
    snprintf(r->partitions, sizeof r->partitions, "%lld",
             (long long)json_integer_value(json_object_get(s, "partitions")));
    snprintf(r->records, sizeof r->records, "%lld", (long long)json_integer_value(json_object_get(s, "records")));
    snprintf(r->bytes, sizeof r->bytes, "%lld", (long long)json_integer_value(json_object_get(s, "bytes")));
    /* Across partitions: the lowest offset still stored and the highest
     * offset written; "-" when every partition is empty. */
    long long first = -1, last = -1;
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(s, "partition_info"), i, p) {
        long long start = (long long)json_integer_value(json_object_get(p, "start_offset"));
        long long end = (long long)json_integer_value(json_object_get(p, "end_offset"));
        if (end <= start)
            continue;
        if (first < 0 || start < first)
            first = start;
        if (end - 1 > last)
            last = end - 1;
    }
    if (first < 0) {
        snprintf(r->first, sizeof r->first, "-");
        snprintf(r->last, sizeof r->last, "-");
    } else {
        snprintf(r->first, sizeof r->first, "%lld", first);
        snprintf(r->last, sizeof r->last, "%lld", last);
    }
}

static int width(int w, const char *s)
{
    int n = (int)strlen(s);
    return n > w ? n : w;
}

static int list_streams(cli_client_t *c, bool as_json)
{
    jn_buf_t resp;
    jn_buf_init(&resp, CLI_RESPONSE_MAX);
    json_t *j = NULL;
    row_t *rows = NULL;
    long status = 0;
    int rc = cli_request(c, "GET", "/v1/streams", NULL, NULL, 0, &resp, &status);
    if (rc)
        goto done;
    if (status != 200) {
        rc = cli_report_error(status, &resp);
        goto done;
    }
    json_error_t jerr;
    j = json_loadb((const char *)resp.data, resp.len, 0, &jerr);
    json_t *streams = j ? json_object_get(j, "streams") : NULL;
    if (!json_is_array(streams)) {
        fprintf(stderr, "junction streams: unexpected answer from the server\n");
        rc = CLI_EXIT_FAIL;
        goto done;
    }
    if (as_json) {
        char *text = json_dumps(j, JSON_COMPACT);
        if (!text) {
            rc = CLI_EXIT_FAIL;
            goto done;
        }
        puts(text);
        free(text);
        rc = CLI_EXIT_OK;
        goto done;
    }
    size_t n = json_array_size(streams);
    rows = calloc(n + 1, sizeof *rows);
    if (!rows) {
        rc = CLI_EXIT_FAIL;
        goto done;
    }
    row_t *head = &rows[0];
    snprintf(head->name, sizeof head->name, "NAME");
    snprintf(head->partitions, sizeof head->partitions, "PARTITIONS");
    snprintf(head->records, sizeof head->records, "RECORDS");
    snprintf(head->bytes, sizeof head->bytes, "BYTES");
    snprintf(head->first, sizeof head->first, "FIRST");
    snprintf(head->last, sizeof head->last, "LAST");
    for (size_t i = 0; i < n; i++)
        fill_row(json_array_get(streams, i), &rows[i + 1]);
    int w[5] = {0};
    for (size_t i = 0; i <= n; i++) {
        w[0] = width(w[0], rows[i].name);
        w[1] = width(w[1], rows[i].partitions);
        w[2] = width(w[2], rows[i].records);
        w[3] = width(w[3], rows[i].bytes);
        w[4] = width(w[4], rows[i].first);
    }
    for (size_t i = 0; i <= n; i++)
        printf("%-*s  %*s  %*s  %*s  %*s  %s\n", w[0], rows[i].name, w[1], rows[i].partitions, w[2],
               rows[i].records, w[3], rows[i].bytes, w[4], rows[i].first, rows[i].last);
    rc = CLI_EXIT_OK;
done:
    free(rows);
    json_decref(j);
    jn_buf_free(&resp);
    return rc;
}

static int create_stream(cli_client_t *c, const cli_args_t *a, const char *name)
{
    jn_buf_t resp;
    jn_buf_init(&resp, CLI_RESPONSE_MAX);
    json_t *body = json_object();
    json_t *config = json_object();
    json_t *answer = NULL;
    char *text = NULL;
    struct curl_slist *headers = NULL;
    int rc = CLI_EXIT_FAIL;
    if (!body || !config)
        goto done;
    json_object_set_new(body, "name", json_string(name));
    const char *partitions = cli_get(a, "partitions");
    long long v;
    if (partitions) {
        if (cli_parse_uint(partitions, 1 << 20, &v) || v == 0) {
            rc = cli_usage_error("streams", "--partitions must be a positive integer (got '%s')", partitions);
            goto done;
        }
        json_object_set_new(body, "partitions", json_integer(v));
    }
    const char *fsync = cli_get(a, "fsync");
    if (fsync) {
        if (strcmp(fsync, "always") && strcmp(fsync, "interval") && strcmp(fsync, "never")) {
            rc = cli_usage_error("streams", "--fsync must be always, interval or never (got '%s')", fsync);
            goto done;
        }
        json_object_set_new(config, "fsync", json_string(fsync));
    }
    const char *retention = cli_get(a, "retention-ms");
    if (retention) {
        if (strcmp(retention, "-1") == 0)
            v = -1;
        else if (cli_parse_uint(retention, INT64_MAX, &v)) {
            rc = cli_usage_error("streams", "--retention-ms must be -1 or a non-negative integer (got '%s')",
                                 retention);
            goto done;
        }
        json_object_set_new(config, "retention_ms", json_integer(v));
    }
    if (cli_has(a, "compact"))
        json_object_set_new(config, "compact", json_true());
    if (json_object_size(config))
        json_object_set(body, "config", config);
    text = json_dumps(body, JSON_COMPACT);
    struct curl_slist *h = text ? curl_slist_append(NULL, "Content-Type: application/json") : NULL;
    if (!h)
        goto done;
    headers = h;
    long status = 0;
    if ((rc = cli_request(c, "POST", "/v1/streams", headers, text, strlen(text), &resp, &status)))
        goto done;
    if (status < 200 || status >= 300) {
        rc = cli_report_error(status, &resp);
        goto done;
    }
    json_error_t jerr;
    answer = json_loadb((const char *)resp.data, resp.len, 0, &jerr);
    json_int_t parts = answer ? json_integer_value(json_object_get(answer, "partitions")) : 0;
    if (parts > 0)
        printf("created stream %s (%lld partition%s)\n", name, (long long)parts, parts == 1 ? "" : "s");
    else
        printf("created stream %s\n", name);
    rc = CLI_EXIT_OK;
done:
    curl_slist_free_all(headers);
    free(text);
    json_decref(answer);
    json_decref(config);
    json_decref(body);
    jn_buf_free(&resp);
    return rc;
}

static int delete_stream(cli_client_t *c, const char *name)
{
    jn_buf_t resp, path;
    jn_buf_init(&resp, CLI_RESPONSE_MAX);
    jn_buf_init(&path, 4096);
    long status = 0;
    int rc;
    if (jn_buf_append_str(&path, "/v1/streams/") || cli_append_escaped(&path, name, false) ||
        jn_buf_put_u8(&path, 0)) {
        rc = cli_usage_error("streams", "stream name too long");
        goto done;
    }
    if ((rc = cli_request(c, "DELETE", (const char *)path.data, NULL, NULL, 0, &resp, &status)))
        goto done;
    if (status < 200 || status >= 300) {
        rc = cli_report_error(status, &resp);
        goto done;
    }
    printf("deleted stream %s\n", name);
    rc = CLI_EXIT_OK;
done:
    jn_buf_free(&resp);
    jn_buf_free(&path);
    return rc;
}

int cli_cmd_streams(int argc, char **argv)
{
    cli_args_t a;
    cli_client_t c;
    memset(&c, 0, sizeof c);
    int rc = cli_parse("streams", argc, argv, streams_opts, &a);
    if (rc)
        return rc;
    const char *action = a.npos > 0 ? a.pos[0] : "list";
    bool create = strcmp(action, "create") == 0;
    bool delete = strcmp(action, "delete") == 0;
    bool list = strcmp(action, "list") == 0;
    if (!create && !delete && !list)
        return cli_usage_error("streams", "unknown action '%s'\n" STREAMS_USAGE, action);
    if ((create || delete) && a.npos != 2)
        return cli_usage_error("streams", "%s needs exactly one NAME\n" STREAMS_USAGE, action);
    if (list && a.npos > 1)
        return cli_usage_error("streams", "too many arguments\n" STREAMS_USAGE);
    /* Options that belong to another action are a mistake worth naming. */
    for (int i = 0; i < a.nopts; i++) {
        const char *o = a.opts[i].name;
        bool for_create = !strcmp(o, "partitions") || !strcmp(o, "fsync") || !strcmp(o, "retention-ms") ||
                          !strcmp(o, "compact");
        if ((for_create && !create) || (!strcmp(o, "json") && !list))
            return cli_usage_error("streams", "--%s does not apply to '%s'", o, action);
    }
    if ((rc = cli_client_init(&c, "streams", &a)))
        goto done;
    if (create)
        rc = create_stream(&c, &a, a.pos[1]);
    else if (delete)
        rc = delete_stream(&c, a.pos[1]);
    else
        rc = list_streams(&c, cli_has(&a, "json"));
done:
    cli_client_free(&c);
    return rc;
}
