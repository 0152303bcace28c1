/* client.c - what every client subcommand shares: option parsing and a
 * small REST client over libcurl's easy interface (auth, URL building,
 * capped response bodies, error reporting). */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define DEFAULT_URL "http://127.0.0.1:8080"

const cli_optspec_t cli_client_opts[] = {
    {"url", true},
    {"token", true},
    {"user", true},
    {"password", true},
    {NULL, false},
};

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "junction %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

static const cli_optspec_t *find_spec(const cli_optspec_t *specs, const char *name, size_t len)
{
    for (const cli_optspec_t *s = specs; s && s->name; s++)
        if (strlen(s->name) == len && memcmp(s->name, name, len) == 0)
            return s;
    return NULL;
}

int cli_parse(const char *cmd, int argc, char **argv, const cli_optspec_t *specs, cli_args_t *out)
{
    memset(out, 0, sizeof *out);
    bool options_done = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || strcmp(a, "-") == 0) {
            if (out->npos >= CLI_MAX_POSITIONAL)
                return cli_usage_error(cmd, "too many arguments");
            out->pos[out->npos++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            options_done = true;
            continue;
        }
        if (a[1] != '-')
            return cli_usage_error(cmd, "unknown option '%s'", a);
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const cli_optspec_t *s = find_spec(specs, name, len);
        if (!s)
            s = find_spec(cli_client_opts, name, len);
        if (!s)
            return cli_usage_error(cmd, "unknown option '--%.*s'", (int)len, name);
        const char *value = NULL;
        if (s->takes_value) {
            if (eq)
                value = eq + 1;
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return cli_usage_error(cmd, "option '--%s' needs a value", s->name);
        } else if (eq) {
            return cli_usage_error(cmd, "option '--%s' takes no value", s->name);
        }
        if (out->nopts >= CLI_MAX_OPTIONS)
            return cli_usage_error(cmd, "too many options");
        out->opts[out->nopts].name = s->name;
        out->opts[out->nopts].value = value;
        out->nopts++;
    }
    return 0;
}

const char *cli_get(const cli_args_t *a, const char *name)
{
    for (int i = a->nopts - 1; i >= 0; i--)
        if (strcmp(a->opts[i].name, name) == 0)
            return a->opts[i].value;
    return NULL;
}

bool cli_has(const cli_args_t *a, const char *name)
{
    for (int i = 0; i < a->nopts; i++)
        if (strcmp(a->opts[i].name, name) == 0)
            return true;
    return false;
}

int cli_parse_uint(const char *s, long long max, long long *out)
{
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

int cli_client_init(cli_client_t *c, const char *cmd, const cli_args_t *a)
{
    memset(c, 0, sizeof *c);
    const char *url = cli_get(a, "url");
    if (!url)
        url = getenv("JUNCTION_URL");
    if (!url || !*url)
        url = DEFAULT_URL;
    size_t len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        len--;
    if (len == 0 || len >= sizeof c->url)
        return cli_usage_error(cmd, "bad --url '%s'", url);
    memcpy(c->url, url, len);
    c->url[len] = '\0';
    if (strncmp(c->url, "http://", 7) != 0 && strncmp(c->url, "https://", 8) != 0)
        return cli_usage_error(cmd, "--url must start with http:// or https:// (got '%s')", c->url);

    c->token = cli_get(a, "token");
    if (!c->token) {
        const char *t = getenv("JUNCTION_TOKEN");
        c->token = t && *t ? t : NULL;
    }
    c->user = cli_get(a, "user");
    c->password = cli_get(a, "password");
    if (c->user && !c->password)
        return cli_usage_error(cmd, "--user needs --password");
    if (c->password && !c->user)
        return cli_usage_error(cmd, "--password needs --user");

    c->curl = curl_easy_init();
    if (!c->curl) {
        fprintf(stderr, "junction %s: cannot initialise libcurl\n", cmd);
        return CLI_EXIT_FAIL;
    }
    return 0;
}

void cli_client_free(cli_client_t *c)
{
    if (c->curl)
        curl_easy_cleanup(c->curl);
    c->curl = NULL;
    curl_slist_free_all(c->headers);
    c->headers = NULL;
}

int cli_append_escaped(jn_buf_t *b, const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char ch = *p;
        bool plain = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                     ch == '-' || ch == '.' || ch == '_' || ch == '~' || (keep_slash && ch == '/');
        int rc;
        if (plain) {
            rc = jn_buf_put_u8(b, ch);
        } else {
            char enc[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            rc = jn_buf_append(b, enc, 3);
        }
        if (rc)
            return rc;
    }
    return 0;
}

int cli_prepare(cli_client_t *c, const char *method, const char *path, struct curl_slist *headers,
                const void *body, size_t len)
{
    CURL *h = c->curl;
    curl_easy_reset(h);
    char url[8192];
    int n = snprintf(url, sizeof url, "%s%s", c->url, path);
    if (n < 0 || (size_t)n >= sizeof url) {
        fprintf(stderr, "junction: URL too long\n");
        return CLI_EXIT_FAIL;
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "junction-cli");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    /* The caller's headers plus Authorization in one list the client owns
     * until the next request: curl reads it during the transfer. */
    curl_slist_free_all(c->headers);
    c->headers = NULL;
    for (struct curl_slist *l = headers; l; l = l->next) {
        struct curl_slist *grown = curl_slist_append(c->headers, l->data);
        if (!grown)
            goto nomem;
        c->headers = grown;
    }
    /* Bodies go at once: no waiting for a 100 Continue. */
    struct curl_slist *with_expect = curl_slist_append(c->headers, "Expect:");
    if (!with_expect)
        goto nomem;
    c->headers = with_expect;
    if (c->token) {
        char auth[2048];
        n = snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
        if (n < 0 || (size_t)n >= sizeof auth) {
            fprintf(stderr, "junction: token too long\n");
            return CLI_EXIT_FAIL;
        }
        struct curl_slist *grown = curl_slist_append(c->headers, auth);
        if (!grown)
            goto nomem;
        c->headers = grown;
    } else if (c->user) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERNAME, c->user);
        curl_easy_setopt(h, CURLOPT_PASSWORD, c->password);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? len : 0));
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        if (body) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        }
    }
    return 0;
nomem:
    fprintf(stderr, "junction: out of memory\n");
    return CLI_EXIT_FAIL;
}

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    jn_buf_t *b = arg;
    size_t total = size * n;
    if (jn_buf_append(b, p, total) != 0)
        return 0; /* over the cap: abort the transfer */
    return total;
}

int cli_request(cli_client_t *c, const char *method, const char *path, struct curl_slist *headers,
                const void *body, size_t len, jn_buf_t *resp, long *status)
{
    if (cli_prepare(c, method, path, headers, body, len))
        return CLI_EXIT_FAIL;
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, resp);
    CURLcode rc = curl_easy_perform(c->curl);
    if (rc != CURLE_OK) {
        fprintf(stderr, "junction: %s %s%s: %s\n", method, c->url, path, curl_easy_strerror(rc));
        return CLI_EXIT_FAIL;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status);
    return 0;
}

int cli_report_error(long status, const jn_buf_t *resp)
{
    json_error_t jerr;
    json_t *j = resp->len ? json_loadb((const char *)resp->data, resp->len, 0, &jerr) : NULL;
    const char *msg = j ? json_string_value(json_object_get(j, "message")) : NULL;
    const char *code = j ? json_string_value(json_object_get(j, "code")) : NULL;
    if (msg)
        fprintf(stderr, "junction: %s%s%s%s\n", msg, code ? " (" : "", code ? code : "", code ? ")" : "");
    else if (resp->len)
        fprintf(stderr, "junction: HTTP %ld: %.*s\n", status, (int)(resp->len > 500 ? 500 : resp->len),
                (const char *)resp->data);
    else
        fprintf(stderr, "junction: HTTP %ld\n", status);
    json_decref(j);
    return CLI_EXIT_FAIL;
}
