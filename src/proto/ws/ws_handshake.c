/* ws_handshake.c - the server side of the RFC 6455 opening handshake:
 * which upgrade requests to accept, the Sec-WebSocket-Accept value, the
 * junction.v1 subprotocol (and the "bearer.<token>" pseudo-protocol that
 * browsers use to carry a token, since they cannot set headers), and the
 * permessage-deflate offer of RFC 7692.
 *
 * Pure: headers come through a lookup callback so that tests and the fuzz
 * target drive it without an HTTP server.
 */
#include "ws_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <openssl/sha.h>

#define JN_REST_PURE_ONLY
#include "../rest/rest_internal.h"

static bool is_space(char c) { return c == ' ' || c == '\t'; }

/* Trims optional whitespace around [*s, *s + *n). */
static void trim(const char **s, size_t *n)
{
    while (*n && is_space(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n && is_space((*s)[*n - 1]))
        (*n)--;
}

/* Calls |fn| for each comma-separated element of a header list. Stops and
 * returns true when |fn| does. */
typedef bool (*elem_fn)(const char *e, size_t n, void *arg);
static bool each_elem(const char *v, size_t len, elem_fn fn, void *arg)
{
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && v[j] != ',')
            j++;
        const char *e = v + i;
        size_t n = j - i;
        trim(&e, &n);
        if (n && fn(e, n, arg))
            return true;
        i = j + 1;
    }
    return false;
}

static bool eq_ci(const char *e, size_t n, void *want)
{
    size_t wl = strlen(want);
    return n == wl && strncasecmp(e, want, n) == 0;
}

int jn_ws_accept_key(const char *key, size_t len, char out[29])
{
    uint8_t raw[24];
    trim(&key, &len);
    /* 16 bytes encode to exactly 24 characters with "==" padding. */
    if (len != 24 || key[22] != '=' || key[23] != '=')
        return JN_EINVAL;
    if (jn_rest_base64_decode(key, len, raw) != 16)
        return JN_EINVAL;
    uint8_t cat[24 + sizeof(JN_WS_GUID) - 1];
    memcpy(cat, key, 24);
    memcpy(cat + 24, JN_WS_GUID, sizeof(JN_WS_GUID) - 1);
    uint8_t digest[SHA_DIGEST_LENGTH];
    SHA1(cat, sizeof(cat), digest);
    jn_buf_t b;
    jn_buf_init(&b, 64);
    int rc = jn_rest_base64_encode(&b, digest, sizeof(digest));
    if (rc == 0 && b.len == 28) {
        memcpy(out, b.data, 28);
        out[28] = '\0';
    } else if (rc == 0) {
        rc = JN_EINVAL;
    }
    jn_buf_free(&b);
    return rc;
}

/* ---- permessage-deflate ---- */

typedef struct pmd_offer {
    bool seen_snct, seen_cnct, seen_smwb, seen_cmwb;
    int smwb;       /* server_max_window_bits value, 0 when absent */
    bool bad;
} pmd_offer_t;

/* Parses "8".."15" or the same in quotes. Returns the value or -1. */
static int window_bits(const char *v, size_t n)
{
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        v++;
        n -= 2;
    }
    if (n == 1 && v[0] >= '8' && v[0] <= '9')
        return v[0] - '0';
    if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
        return 10 + v[1] - '0';
    return -1;
}

/* Applies one "name[=value]" parameter of an offer. */
static void pmd_param(pmd_offer_t *o, const char *p, size_t n)
{
    const char *eq = memchr(p, '=', n);
    size_t nl = eq ? (size_t)(eq - p) : n;
    const char *v = eq ? eq + 1 : NULL;
    size_t vl = eq ? n - nl - 1 : 0;
    const char *name = p;
    trim(&name, &nl);
    if (v)
        trim(&v, &vl);
#define IS(s) (nl == sizeof(s) - 1 && strncasecmp(name, s, nl) == 0)
    if (IS("server_no_context_takeover")) {
        o->bad |= o->seen_snct || v;
        o->seen_snct = true;
    } else if (IS("client_no_context_takeover")) {
        o->bad |= o->seen_cnct || v;
        o->seen_cnct = true;
    } else if (IS("server_max_window_bits")) {
        o->bad |= o->seen_smwb || !v;
        o->seen_smwb = true;
        if (v) {
            o->smwb = window_bits(v, vl);
            o->bad |= o->smwb < 0;
        }
    } else if (IS("client_max_window_bits")) {
        /* Without a value: the client can take one. With a value it
         * limits the client's window; our inflater takes any window. */
        o->bad |= o->seen_cmwb || (v && window_bits(v, vl) < 0);
        o->seen_cmwb = true;
    } else {
        o->bad = true;
    }
#undef IS
}

typedef struct pmd_pick {
    jn_ws_pmd_t *pmd;
    char *resp;
    size_t resp_len;
} pmd_pick_t;

/* One extension of the list: accept it when it is a good deflate offer. */
static bool pmd_offer(const char *e, size_t n, void *arg)
{
    pmd_pick_t *pk = arg;
    size_t i = 0;
    while (i < n && e[i] != ';')
        i++;
    const char *name = e;
    size_t nl = i;
    trim(&name, &nl);
    if (!(nl == 18 && strncasecmp(name, "permessage-deflate", 18) == 0))
        return false;
    pmd_offer_t o = {0};
    while (i < n && !o.bad) {
        size_t j = ++i;
        while (j < n && e[j] != ';')
            j++;
        const char *p = e + i;
        size_t pl = j - i;
        trim(&p, &pl);
        if (pl == 0)
            o.bad = true;
        else
            pmd_param(&o, p, pl);
        i = j;
    }
    if (o.bad)
        return false;
    pk->pmd->enabled = true;
    pk->pmd->server_window_bits = (uint8_t)(o.smwb ? o.smwb : 15);
    int w;
    if (o.smwb)
        w = snprintf(pk->resp, pk->resp_len,
                     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                     "server_max_window_bits=%d",
                     o.smwb);
    else
        w = snprintf(pk->resp, pk->resp_len,
                     "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    if (w < 0 || (size_t)w >= pk->resp_len) {
        pk->pmd->enabled = false;
        pk->resp[0] = '\0';
        return false;
    }
    return true;
}

void jn_ws_pmd_negotiate(const char *v, size_t len, jn_ws_pmd_t *pmd, char *resp, size_t resp_len)
{
    memset(pmd, 0, sizeof(*pmd));
    if (resp_len)
        resp[0] = '\0';
    if (!v || resp_len == 0)
        return;
    pmd_pick_t pk = {pmd, resp, resp_len};
    each_elem(v, len, pmd_offer, &pk);
}

/* ---- subprotocols ---- */

typedef struct proto_scan {
    jn_ws_handshake_t *hs;
    const char *const *protos; /* accepted names, preferred first */
    size_t best;               /* index of the preferred name offered so far */
    bool bad;
} proto_scan_t;

static bool proto_elem(const char *e, size_t n, void *arg)
{
    proto_scan_t *ps = arg;
    size_t bl = sizeof(JN_WS_BEARER_PREFIX) - 1;
    for (size_t i = 0; ps->protos[i] && i < ps->best; i++) {
        if (strlen(ps->protos[i]) == n && memcmp(e, ps->protos[i], n) == 0) {
            ps->best = i;
            return false;
        }
    }
    if (n > bl && strncasecmp(e, JN_WS_BEARER_PREFIX, bl) == 0) {
        if (n - bl > JN_WS_TOKEN_MAX || ps->hs->token[0]) {
            ps->bad = true;
            return true;
        }
        memcpy(ps->hs->token, e + bl, n - bl);
        ps->hs->token[n - bl] = '\0';
    }
    return false;
}

static int refuse(jn_ws_handshake_t *out, int status, const char *msg)
{
    out->status = status;
    out->error = msg;
    return JN_EPROTO;
}

int jn_ws_handshake_check_protocols(const char *method, jn_ws_header_fn hdr, void *arg, bool allow_deflate,
                                    const char *const *protos, const char *refusal, jn_ws_handshake_t *out)
{
    memset(out, 0, sizeof(*out));
    size_t n;
    const char *v;
    if (!method || strcmp(method, "GET") != 0)
        return refuse(out, 400, "a WebSocket handshake must be a GET");
    v = hdr(arg, "Upgrade", &n);
    if (!v || !each_elem(v, n, eq_ci, "websocket"))
        return refuse(out, 400, "the Upgrade header must be 'websocket'");
    v = hdr(arg, "Connection", &n);
    if (!v || !each_elem(v, n, eq_ci, "upgrade"))
        return refuse(out, 400, "the Connection header must list 'Upgrade'");
    v = hdr(arg, "Sec-WebSocket-Version", &n);
    if (v)
        trim(&v, &n);
    if (!v || n != 2 || memcmp(v, "13", 2) != 0)
        return refuse(out, 426, "only WebSocket version 13 is supported");
    v = hdr(arg, "Sec-WebSocket-Key", &n);
    if (!v || jn_ws_accept_key(v, n, out->accept) < 0)
        return refuse(out, 400, "Sec-WebSocket-Key must be 16 bytes in base64");
    v = hdr(arg, "Sec-WebSocket-Protocol", &n);
    if (v) {
        proto_scan_t ps = {out, protos, SIZE_MAX, false};
        each_elem(v, n, proto_elem, &ps);
        if (ps.bad)
            return refuse(out, 400, "bad bearer token in Sec-WebSocket-Protocol");
        if (ps.best == SIZE_MAX)
            return refuse(out, 400, refusal);
        out->subprotocol = true;
        out->protocol = protos[ps.best];
    }
    if (allow_deflate) {
        v = hdr(arg, "Sec-WebSocket-Extensions", &n);
        if (v)
            jn_ws_pmd_negotiate(v, n, &out->pmd, out->extensions, sizeof(out->extensions));
    }
    return 0;
}

int jn_ws_handshake_check(const char *method, jn_ws_header_fn hdr, void *arg, bool allow_deflate,
                          jn_ws_handshake_t *out)
{
    static const char *const protos[] = {JN_WS_SUBPROTOCOL, NULL};
    return jn_ws_handshake_check_protocols(method, hdr, arg, allow_deflate, protos,
                                           "the only subprotocol spoken here is " JN_WS_SUBPROTOCOL, out);
}

int jn_ws_upgrade_headers(const jn_ws_handshake_t *hs, char *out, size_t cap)
{
    int n = snprintf(out, cap, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s%s%s%s",
                     hs->accept, hs->protocol ? "Sec-WebSocket-Protocol: " : "", hs->protocol ? hs->protocol : "",
                     hs->protocol ? "\r\n" : "", hs->extensions[0] ? "Sec-WebSocket-Extensions: " : "",
                     hs->extensions, hs->extensions[0] ? "\r\n" : "");
    return n > 0 && (size_t)n < cap ? n : JN_ETOOBIG;
}
