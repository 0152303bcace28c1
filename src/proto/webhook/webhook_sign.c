/* webhook_sign.c - the pure parts of the webhooks door: Standard Webhooks
 * signatures (v1, HMAC-SHA256 over "id.timestamp.body" with a whsec_
 * secret), the generic HMAC header scheme of inbound hooks, message ids,
 * retry schedules with jitter, and the SSRF address rules with their
 * allow list. No I/O, no loop: the unit test drives all of it. */
#define JN_REST_PURE_ONLY
#define JN_WH_PURE_ONLY
#include "webhook_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "../../common/buf.h"
#include "../rest/rest_internal.h"

#define SECRET_PREFIX "whsec_"

int jn_wh_secret_decode(const char *secret, uint8_t *out)
{
    size_t plen = strlen(SECRET_PREFIX);
    if (strncmp(secret, SECRET_PREFIX, plen) == 0)
        secret += plen;
    size_t n = strlen(secret);
    if (n == 0 || jn_rest_base64_decoded_max(n) > JN_WH_SECRET_MAX + 3)
        return JN_EINVAL;
    uint8_t tmp[JN_WH_SECRET_MAX + 3];
    int len = jn_rest_base64_decode(secret, n, tmp);
    if (len <= 0 || len > JN_WH_SECRET_MAX)
        return JN_EINVAL;
    memcpy(out, tmp, (size_t)len);
    return len;
}

int jn_wh_secret_generate(char *out, size_t outlen)
{
    uint8_t raw[24];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return JN_EIO;
    jn_buf_t b;
    jn_buf_init(&b, 64);
    int rc = jn_buf_append_str(&b, SECRET_PREFIX);
    if (rc == 0)
        rc = jn_rest_base64_encode(&b, raw, sizeof raw);
    if (rc == 0 && b.len + 1 > outlen)
        rc = JN_ETOOBIG;
    if (rc == 0) {
        memcpy(out, b.data, b.len);
        out[b.len] = '\0';
    }
    jn_buf_free(&b);
    return rc;
}

/* HMAC-SHA256 of the three Standard Webhooks parts, without building the
 * signed string in memory (the body may be large). */
static int sign_raw(const uint8_t *key, size_t klen, const char *id, int64_t ts, const uint8_t *body, size_t blen,
                    uint8_t mac[32])
{
    char head[JN_WH_MSGID_MAX + 32];
    int n = snprintf(head, sizeof head, "%s.%" PRId64 ".", id, ts);
    if (n < 0 || (size_t)n >= sizeof head)
        return JN_EINVAL;
    int rc = JN_EINVAL;
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = m ? EVP_MAC_CTX_new(m) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0), OSSL_PARAM_construct_end()};
    size_t outl = 0;
    if (!c || !EVP_MAC_init(c, key, klen, params) || !EVP_MAC_update(c, (const uint8_t *)head, (size_t)n))
        goto fail;
    if (blen && !EVP_MAC_update(c, body, blen))
        goto fail;
    if (!EVP_MAC_final(c, mac, &outl, 32) || outl != 32)
        goto fail;
    rc = 0;
fail:
    EVP_MAC_CTX_free(c);
    EVP_MAC_free(m);
    return rc;
}

int jn_wh_sign(const uint8_t *key, size_t klen, const char *id, int64_t ts, const uint8_t *body, size_t blen,
               char *out)
{
    uint8_t mac[32];
    if (strlen(id) > JN_WH_MSGID_MAX)
        return JN_EINVAL;
    int rc = sign_raw(key, klen, id, ts, body, blen, mac);
    if (rc < 0)
        return rc;
    jn_buf_t b;
    jn_buf_init(&b, JN_WH_SIG_LEN);
    rc = jn_buf_append_str(&b, "v1,");
    if (rc == 0)
        rc = jn_rest_base64_encode(&b, mac, sizeof mac);
    if (rc == 0 && b.len + 1 > JN_WH_SIG_LEN)
        rc = JN_ETOOBIG;
    if (rc == 0) {
        memcpy(out, b.data, b.len);
        out[b.len] = '\0';
    }
    jn_buf_free(&b);
    return rc;
}

int jn_wh_signer_init(jn_wh_signer_t *s, const uint8_t *key, size_t klen)
{
    s->mac = NULL;
    if (klen == 0)
        return JN_EINVAL;
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = m ? EVP_MAC_CTX_new(m) : NULL;
    EVP_MAC_free(m); /* the context holds its own reference */
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0), OSSL_PARAM_construct_end()};
    if (!c || !EVP_MAC_init(c, key, klen, params)) {
        EVP_MAC_CTX_free(c);
        return JN_ENOMEM;
    }
    s->mac = c;
    return 0;
}

int jn_wh_signer_sign(jn_wh_signer_t *s, const char *id, int64_t ts, const uint8_t *body, size_t blen, char *out)
{
    EVP_MAC_CTX *c = s->mac;
    char head[JN_WH_MSGID_MAX + 32];
    if (!c || strlen(id) > JN_WH_MSGID_MAX)
        return JN_EINVAL;
    int n = snprintf(head, sizeof head, "%s.%" PRId64 ".", id, ts);
    if (n < 0 || (size_t)n >= sizeof head)
        return JN_EINVAL;
    uint8_t mac[32];
    size_t outl = 0;
    /* A NULL key restarts HMAC with the key already set: no key schedule,
     * no allocation per signature. */
    if (!EVP_MAC_init(c, NULL, 0, NULL) || !EVP_MAC_update(c, (const uint8_t *)head, (size_t)n) ||
        (blen && !EVP_MAC_update(c, body, blen)) || !EVP_MAC_final(c, mac, &outl, sizeof mac) || outl != 32)
        return JN_EINVAL;
    memcpy(out, "v1,", 3);
    /* 32 bytes are 44 base64 characters and a NUL: within JN_WH_SIG_LEN. */
    if (EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)sizeof mac) != 44)
        return JN_EINVAL;
    return 0;
}

void jn_wh_signer_free(jn_wh_signer_t *s)
{
    EVP_MAC_CTX_free(s->mac);
    s->mac = NULL;
}

bool jn_wh_verify(const uint8_t *key, size_t klen, const char *id, int64_t ts, const uint8_t *body, size_t blen,
                  const char *header, size_t hlen)
{
    uint8_t mac[32];
    if (strlen(id) > JN_WH_MSGID_MAX || sign_raw(key, klen, id, ts, body, blen, mac) < 0)
        return false;
    bool ok = false;
    size_t i = 0;
    while (i < hlen) {
        while (i < hlen && header[i] == ' ')
            i++;
        size_t start = i;
        while (i < hlen && header[i] != ' ')
            i++;
        size_t len = i - start;
        const char *e = header + start;
        if (len > 3 && memcmp(e, "v1,", 3) == 0 && jn_rest_base64_decoded_max(len - 3) <= 64) {
            uint8_t got[64];
            int gl = jn_rest_base64_decode(e + 3, len - 3, got);
            /* Every entry is compared, so the time taken does not tell
             * which one matched. */
            if (gl == 32 && CRYPTO_memcmp(got, mac, 32) == 0)
                ok = true;
        }
    }
    return ok;
}

static const EVP_MD *hmac_md(const char *alg)
{
    if (!alg || strcmp(alg, "sha256") == 0)
        return EVP_sha256();
    if (strcmp(alg, "sha1") == 0)
        return EVP_sha1();
    if (strcmp(alg, "sha512") == 0)
        return EVP_sha512();
    return NULL;
}

bool jn_wh_hmac_alg_ok(const char *alg)
{
    return hmac_md(alg) != NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

bool jn_wh_hmac_verify(const char *alg, const uint8_t *key, size_t klen, const char *prefix_data,
                       const uint8_t *body, size_t blen, const char *sig, size_t slen, bool hex)
{
    const EVP_MD *md = hmac_md(alg);
    if (!md)
        return false;
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    bool ok = false;
    uint8_t got[EVP_MAX_MD_SIZE + 3];
    int gl = -1;
    if (hex) {
        if (slen % 2 || slen / 2 > EVP_MAX_MD_SIZE)
            return false;
        for (size_t i = 0; i < slen; i += 2) {
            int h = hexval(sig[i]), l = hexval(sig[i + 1]);
            if (h < 0 || l < 0)
                return false;
            got[i / 2] = (uint8_t)(h << 4 | l);
        }
        gl = (int)(slen / 2);
    } else {
        if (jn_rest_base64_decoded_max(slen) > sizeof got)
            return false;
        gl = jn_rest_base64_decode(sig, slen, got);
    }
    if (gl <= 0)
        return false;
    /* Two pieces (timestamp prefix, body): EVP_MAC as in sign_raw. */
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *mc = m ? EVP_MAC_CTX_new(m) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)EVP_MD_get0_name(md), 0),
                           OSSL_PARAM_construct_end()};
    size_t outl = 0;
    if (!mc || !EVP_MAC_init(mc, key, klen, params))
        goto fail;
    if (prefix_data && !EVP_MAC_update(mc, (const uint8_t *)prefix_data, strlen(prefix_data)))
        goto fail;
    if (blen && !EVP_MAC_update(mc, body, blen))
        goto fail;
    if (!EVP_MAC_final(mc, mac, &outl, sizeof mac))
        goto fail;
    maclen = (unsigned int)outl;
    ok = (size_t)gl == maclen && CRYPTO_memcmp(got, mac, maclen) == 0;
fail:
    EVP_MAC_CTX_free(mc);
    EVP_MAC_free(m);
    return ok;
}

/* ---- message ids ---- */

int jn_wh_msgid(char *out, size_t outlen, const char *stream, uint32_t partition, int64_t offset)
{
    int n = snprintf(out, outlen, "msg_%" PRIu32 "_%" PRId64 "_%s", partition, offset, stream);
    return n < 0 || (size_t)n >= outlen ? JN_ETOOBIG : 0;
}

int jn_wh_msgid_parse(const char *id, char *stream, size_t streamlen, uint32_t *partition, int64_t *offset)
{
    if (strncmp(id, "msg_", 4) != 0)
        return JN_EINVAL;
    const char *p = id + 4;
    char *end;
    errno = 0;
    unsigned long part = strtoul(p, &end, 10);
    /* Canonical only (no sign, no leading zero): an id names one record
     * and renders back to itself. */
    if (errno || end == p || *end != '_' || part > UINT32_MAX || !isdigit((unsigned char)*p) ||
        (*p == '0' && end - p > 1))
        return JN_EINVAL;
    p = end + 1;
    long long off = strtoll(p, &end, 10);
    if (errno || end == p || *end != '_' || off < 0 || !isdigit((unsigned char)*p) || (*p == '0' && end - p > 1))
        return JN_EINVAL;
    p = end + 1;
    size_t sl = strlen(p);
    if (sl == 0 || sl >= streamlen)
        return JN_EINVAL;
    memcpy(stream, p, sl + 1);
    *partition = (uint32_t)part;
    *offset = off;
    return 0;
}

/* ---- retry schedule ---- */

int jn_wh_schedule_parse(const char *s, int64_t *out)
{
    int n = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        if (!isdigit((unsigned char)*p) || n >= JN_WH_SCHEDULE_MAX)
            return JN_EINVAL;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (errno || v < 0 || v > 7LL * 24 * 3600 * 1000)
            return JN_EINVAL;
        int64_t mult = 1;
        if (strncmp(end, "ms", 2) == 0) {
            end += 2;
        } else if (*end == 's') {
            mult = 1000;
            end++;
        } else if (*end == 'm') {
            mult = 60000;
            end++;
        } else if (*end == 'h') {
            mult = 3600000;
            end++;
        }
        if (*end && *end != ',' && *end != ' ')
            return JN_EINVAL;
        if (v * mult > 7LL * 24 * 3600 * 1000)
            return JN_EINVAL;
        out[n++] = v * mult;
        p = end;
    }
    return n;
}

int64_t jn_wh_backoff(const int64_t *sched, int n, uint32_t rnd, int64_t retry_after_ms)
{
    int64_t base = sched[n];
    /* +-10 %: receivers that failed together do not all retry together. */
    int64_t d = base * 9 / 10 + (int64_t)((double)base * 0.2 * ((double)rnd / 4294967296.0));
    if (retry_after_ms > 0) {
        if (retry_after_ms > 24LL * 3600 * 1000)
            retry_after_ms = 24LL * 3600 * 1000;
        if (d < retry_after_ms)
            d = retry_after_ms;
    }
    return d;
}

/* ---- SSRF ---- */

static bool prefix_match(const uint8_t *a, const uint8_t *b, int bits)
{
    int bytes = bits / 8, rem = bits % 8;
    if (memcmp(a, b, (size_t)bytes) != 0)
        return false;
    if (rem == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rem));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

int jn_wh_allow_parse(const char *s, jn_wh_allow_t *out)
{
    memset(out, 0, sizeof *out);
    const char *p = s ? s : "";
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *start = p;
        while (*p && *p != ' ' && *p != ',')
            p++;
        size_t len = (size_t)(p - start);
        if (out->n >= JN_WH_ALLOW_MAX || len == 0 || len >= sizeof out->e[0].host)
            return JN_EINVAL;
        jn_wh_allow_entry_t *e = &out->e[out->n];
        char tok[256];
        memcpy(tok, start, len);
        tok[len] = '\0';
        char *slash = strchr(tok, '/');
        int prefix = -1;
        if (slash) {
            *slash = '\0';
            char *end;
            long v = strtol(slash + 1, &end, 10);
            if (*end || end == slash + 1 || v < 0 || v > 128)
                return JN_EINVAL;
            prefix = (int)v;
        }
        if (inet_pton(AF_INET, tok, e->addr) == 1) {
            e->family = AF_INET;
            e->prefix = prefix < 0 ? 32 : prefix;
            if (e->prefix > 32)
                return JN_EINVAL;
        } else if (inet_pton(AF_INET6, tok, e->addr) == 1) {
            e->family = AF_INET6;
            e->prefix = prefix < 0 ? 128 : prefix;
        } else {
            if (slash)
                return JN_EINVAL;
            for (size_t i = 0; i < len; i++) {
                char c = tok[i];
                if (!isalnum((unsigned char)c) && c != '-' && c != '.' && c != '_')
                    return JN_EINVAL;
            }
            e->is_host = true;
            memcpy(e->host, tok, len + 1);
        }
        out->n++;
    }
    return 0;
}

bool jn_wh_allow_addr(const jn_wh_allow_t *a, const struct sockaddr *sa)
{
    const uint8_t *addr;
    if (sa->sa_family == AF_INET)
        addr = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6)
        addr = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    else
        return false;
    for (int i = 0; i < a->n; i++) {
        const jn_wh_allow_entry_t *e = &a->e[i];
        if (!e->is_host && e->family == sa->sa_family && prefix_match(addr, e->addr, e->prefix))
            return true;
    }
    return false;
}

bool jn_wh_allow_host(const jn_wh_allow_t *a, const char *host)
{
    for (int i = 0; i < a->n; i++)
        if (a->e[i].is_host && strcasecmp(a->e[i].host, host) == 0)
            return true;
    return false;
}

static const char *v4_blocked(const uint8_t *b)
{
    uint32_t x = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    if (x == 0xA9FEA9FE) /* 169.254.169.254, the cloud metadata service */
        return "metadata";
    if (b[0] == 0)
        return "unspecified";
    if (b[0] == 127)
        return "loopback";
    if (b[0] == 10 || (b[0] == 172 && (b[1] & 0xf0) == 16) || (b[0] == 192 && b[1] == 168))
        return "private";
    if (b[0] == 169 && b[1] == 254)
        return "link-local";
    if (b[0] == 100 && (b[1] & 0xc0) == 64)
        return "shared";
    if (b[0] >= 224 && b[0] < 240)
        return "multicast";
    if (b[0] >= 240 || (b[0] == 192 && b[1] == 0 && b[2] == 0) || (b[0] == 198 && (b[1] & 0xfe) == 18))
        return "reserved";
    return NULL;
}

const char *jn_wh_addr_blocked(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return v4_blocked((const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr);
    if (sa->sa_family != AF_INET6)
        return "reserved";
    const uint8_t *b = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    static const uint8_t zero[16];
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t metadata6[16] = {0xfd, 0, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54};
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0)
        return v4_blocked(b + 12);
    if (memcmp(b, zero, 15) == 0)
        return b[15] == 1 ? "loopback" : b[15] == 0 ? "unspecified" : "reserved"; /* ::1, ::, old compat */
    if (memcmp(b, metadata6, 16) == 0) /* fd00:ec2::254 */
        return "metadata";
    if ((b[0] & 0xfe) == 0xfc)
        return "unique-local";
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
        return "link-local";
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
        return "private"; /* deprecated site-local */
    if (b[0] == 0xff)
        return "multicast";
    return NULL;
}
