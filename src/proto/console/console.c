/* console.c - serves the embedded web console (console.h). The assets are
 * immutable for the life of the process, so each one's ETag is computed
 * once here and requests only compare strings. */
#include "console.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/assets.h"
#include "../../common/hash.h"
#include "../../common/log.h"

#define WEB_PREFIX "web/"
#define ROUTE_MAX 256

typedef struct console_file {
    const jn_asset_t *asset;
    const char *ctype;
    char etag[24]; /* "\"" 16 hex digits "\"" */
} console_file_t;

struct jn_console {
    console_file_t *files;
    size_t nfiles;
};

static const char CSP[] = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                          "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'";

const char *jn_console_content_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},   {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},               {".json", "application/json"},
        {".png", "image/png"},                   {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},   {".woff2", "font/woff2"},
    };
    const char *dot = name ? strrchr(name, '.') : NULL;
    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcmp(dot, types[i].ext) == 0)
                return types[i].type;
    return "application/octet-stream";
}

/* True when the If-None-Match list |h| (|len| bytes) names |etag| or is "*". */
static bool etag_matches(const char *h, size_t len, const char *etag)
{
    size_t el = strlen(etag);
    size_t i = 0;
    while (i < len) {
        while (i < len && (h[i] == ' ' || h[i] == '\t' || h[i] == ','))
            i++;
        size_t j = i;
        while (j < len && h[j] != ',')
            j++;
        size_t k = j;
        while (k > i && (h[k - 1] == ' ' || h[k - 1] == '\t'))
            k--;
        const char *t = h + i;
        size_t tl = k - i;
        if (tl >= 2 && t[0] == 'W' && t[1] == '/') { /* weak comparison is right for GET */
            t += 2;
            tl -= 2;
        }
        if ((tl == 1 && t[0] == '*') || (tl == el && memcmp(t, etag, el) == 0))
            return true;
        i = j;
    }
    return false;
}

static void serve(jn_http_req_t *req, void *arg)
{
    const console_file_t *f = arg;
    size_t len;
    const char *inm = jn_http_req_header(req, "If-None-Match", &len);
    if (jn_http_add_header(req, "ETag", f->etag) < 0 || jn_http_add_header(req, "Cache-Control", "no-cache") < 0 ||
        jn_http_add_header(req, "X-Content-Type-Options", "nosniff") < 0 ||
        (strstr(f->ctype, "text/html") && (jn_http_add_header(req, "Content-Security-Policy", CSP) < 0 ||
                                            jn_http_add_header(req, "Referrer-Policy", "no-referrer") < 0))) {
        jn_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    if (inm && etag_matches(inm, len, f->etag)) {
        jn_http_respond(req, 304, NULL, NULL, 0);
        return;
    }
    jn_http_respond(req, 200, f->ctype, f->asset->data, f->asset->len);
}

static int route_one(jn_httpd_t *httpd, const char *path, console_file_t *f)
{
    int rc = jn_httpd_route(httpd, "GET", path, serve, f);
    if (rc < 0)
        jn_error("console: cannot register GET %s: %s", path, jn_strerror(rc));
    return rc;
}

jn_console_t *jn_console_new(jn_httpd_t *httpd)
{
    jn_console_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    size_t n = 0;
    for (const jn_asset_t *a = jn_assets; a->name; a++)
        if (strncmp(a->name, WEB_PREFIX, sizeof WEB_PREFIX - 1) == 0)
            n++;
    if (n == 0)
        return c;
    c->files = calloc(n, sizeof *c->files);
    if (!c->files)
        goto fail;
    for (const jn_asset_t *a = jn_assets; a->name; a++) {
        if (strncmp(a->name, WEB_PREFIX, sizeof WEB_PREFIX - 1) != 0)
            continue;
        console_file_t *f = &c->files[c->nfiles++];
        f->asset = a;
        f->ctype = jn_console_content_type(a->name);
        snprintf(f->etag, sizeof f->etag, "\"%016" PRIx64 "\"", jn_fnv1a(a->data, a->len));
        char path[ROUTE_MAX];
        int pl = snprintf(path, sizeof path, "/%s", a->name + sizeof WEB_PREFIX - 1);
        if (pl < 0 || (size_t)pl >= sizeof path) {
            jn_error("console: asset name too long: %s", a->name);
            goto fail;
        }
        if (route_one(httpd, path, f) < 0)
            goto fail;
        if (strcmp(a->name, WEB_PREFIX "index.html") == 0 && route_one(httpd, "/", f) < 0)
            goto fail;
    }
    return c;
fail:
    /* Routes already registered point into c->files: the server is being
     * torn down by the caller, which frees it before any request runs. */
    jn_console_free(c);
    return NULL;
}

void jn_console_free(jn_console_t *c)
{
    if (!c)
        return;
    free(c->files);
    free(c);
}
