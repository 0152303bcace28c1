/* fuzz_webhook.c - libFuzzer target for what the webhooks door parses
 * from outside: the webhook-signature header of an inbound hook (Standard
 * Webhooks scheme) and the generic HMAC signature, message ids, retry
 * schedules, secrets and allow lists (configuration and REST input).
 *
 * The input is cut into fields at 0xff bytes. Oracles besides crashes: a
 * header holding the signature the door itself computes always verifies,
 * and still does with fuzzed entries around it; a parsed message id
 * renders back to the same text; a parsed schedule has at most
 * JN_WH_SCHEDULE_MAX non-negative delays; a decoded secret fits the cap.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/webhook/webhook_int.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define FIELDS 4

/* Splits |data| at 0xff into up to FIELDS NUL-terminated copies. */
static int split(const uint8_t *data, size_t size, char *f[FIELDS], size_t len[FIELDS])
{
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= size && n < FIELDS; i++) {
        if (i == size || data[i] == 0xff) {
            len[n] = i - start;
            f[n] = malloc(len[n] + 1);
            if (!f[n])
                return n;
            memcpy(f[n], data + start, len[n]);
            f[n][len[n]] = '\0';
            n++;
            start = i + 1;
        }
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *f[FIELDS] = {0};
    size_t len[FIELDS] = {0};
    int n = split(data, size, f, len);
    static const uint8_t key[] = "fuzz-secret-key-0123456789";
    const char *id = "msg_0_42_orders";
    const char *body = n > 1 ? f[1] : "";
    size_t blen = n > 1 ? len[1] : 0;

    if (n > 0) {
        /* Inbound Standard Webhooks verification of the fuzzed header. */
        (void)jn_wh_verify(key, sizeof key - 1, id, 1700000000, (const uint8_t *)body, blen, f[0], len[0]);
        /* The true signature verifies alone and among fuzzed entries. */
        char sig[JN_WH_SIG_LEN];
        CHECK(jn_wh_sign(key, sizeof key - 1, id, 1700000000, (const uint8_t *)body, blen, sig) == 0);
        CHECK(jn_wh_verify(key, sizeof key - 1, id, 1700000000, (const uint8_t *)body, blen, sig, strlen(sig)));
        size_t hcap = len[0] * 2 + sizeof sig + 4;
        char *h = malloc(hcap);
        if (h) {
            /* Entries are split at spaces: the true one stays whole
             * whatever surrounds it. */
            int hl = snprintf(h, hcap, "%s %s %s", f[0], sig, f[0]);
            CHECK(hl > 0 && (size_t)hl < hcap);
            CHECK(jn_wh_verify(key, sizeof key - 1, id, 1700000000, (const uint8_t *)body, blen, h, (size_t)hl));
            free(h);
        }
        /* The generic HMAC scheme, hex and base64, every algorithm. */
        static const char *algs[] = {"sha256", "sha1", "sha512", "md5"};
        for (size_t i = 0; i < sizeof algs / sizeof *algs; i++) {
            (void)jn_wh_hmac_verify(algs[i], key, sizeof key - 1, n > 2 ? f[2] : NULL, (const uint8_t *)body,
                                    blen, f[0], len[0], true);
            (void)jn_wh_hmac_verify(algs[i], key, sizeof key - 1, NULL, (const uint8_t *)body, blen, f[0], len[0],
                                    false);
        }
        /* Message ids: what parses renders back identically. */
        char stream[JN_STREAM_NAME_MAX + 1];
        uint32_t part;
        int64_t off;
        if (jn_wh_msgid_parse(f[0], stream, sizeof stream, &part, &off) == 0) {
            char back[JN_WH_MSGID_MAX + 1];
            CHECK(jn_wh_msgid(back, sizeof back, stream, part, off) == 0);
            CHECK(strcmp(back, f[0]) == 0);
        }
        /* Secrets. */
        uint8_t sk[JN_WH_SECRET_MAX];
        int kl = jn_wh_secret_decode(f[0], sk);
        CHECK(kl == JN_EINVAL || (kl > 0 && kl <= JN_WH_SECRET_MAX));
    }
    if (n > 2) {
        int64_t sched[JN_WH_SCHEDULE_MAX];
        int c = jn_wh_schedule_parse(f[2], sched);
        CHECK(c == JN_EINVAL || (c >= 0 && c <= JN_WH_SCHEDULE_MAX));
        for (int i = 0; i < c; i++) {
            CHECK(sched[i] >= 0);
            int64_t d = jn_wh_backoff(sched, i, (uint32_t)size * 2654435761u, (int64_t)len[2] * 1000);
            CHECK(d >= 0);
        }
    }
    if (n > 3) {
        jn_wh_allow_t a;
        if (jn_wh_allow_parse(f[3], &a) == 0) {
            CHECK(a.n >= 0 && a.n <= JN_WH_ALLOW_MAX);
            (void)jn_wh_allow_host(&a, f[0]);
        }
    }
    for (int i = 0; i < n; i++)
        free(f[i]);
    return 0;
}
