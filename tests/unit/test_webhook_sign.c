/* test_webhook_sign.c - the pure helpers of the webhooks door
 * (src/proto/webhook/webhook_sign.c): Standard Webhooks signatures against
 * the specification's published example, verification with several
 * signatures, the reusable signer, the generic HMAC scheme, message ids,
 * retry schedules and backoff, the SSRF address rules and the allow list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#define JN_WH_PURE_ONLY
#include "proto/webhook/webhook_int.h"

/* The example of the Standard Webhooks specification (and the Svix
 * libraries' tests). */
static const char spec_secret[] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
static const char spec_id[] = "msg_p5jXN8AQM9LWM0D4loKWxJek";
static const int64_t spec_ts = 1614265330;
static const char spec_body[] = "{\"test\": 2432232314}";
static const char spec_sig[] = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

static void test_sign_spec_example(void **state)
{
    (void)state;
    uint8_t key[JN_WH_SECRET_MAX];
    int kl = jn_wh_secret_decode(spec_secret, key);
    assert_int_equal(kl, 24);
    char sig[JN_WH_SIG_LEN];
    assert_int_equal(jn_wh_sign(key, (size_t)kl, spec_id, spec_ts, (const uint8_t *)spec_body, strlen(spec_body), sig), 0);
    assert_string_equal(sig, spec_sig);
    /* the prefix is optional when decoding */
    uint8_t key2[JN_WH_SECRET_MAX];
    assert_int_equal(jn_wh_secret_decode(spec_secret + 6, key2), 24);
    assert_memory_equal(key, key2, 24);
}

static void test_verify(void **state)
{
    (void)state;
    uint8_t key[JN_WH_SECRET_MAX];
    int kl = jn_wh_secret_decode(spec_secret, key);
    const uint8_t *b = (const uint8_t *)spec_body;
    size_t bl = strlen(spec_body);
    assert_true(jn_wh_verify(key, (size_t)kl, spec_id, spec_ts, b, bl, spec_sig, strlen(spec_sig)));
    const char *several = "v1,AAAA v2,whatever  v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    assert_true(jn_wh_verify(key, (size_t)kl, spec_id, spec_ts, b, bl, several, strlen(several)));
    assert_false(jn_wh_verify(key, (size_t)kl, spec_id, spec_ts + 1, b, bl, spec_sig, strlen(spec_sig)));
    assert_false(jn_wh_verify(key, (size_t)kl, "msg_other", spec_ts, b, bl, spec_sig, strlen(spec_sig)));
    assert_false(jn_wh_verify(key, (size_t)kl, spec_id, spec_ts, b, bl - 1, spec_sig, strlen(spec_sig)));
    const char *v2 = "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    assert_false(jn_wh_verify(key, (size_t)kl, spec_id, spec_ts, b, bl, v2, strlen(v2)));
    assert_false(jn_wh_verify(key, (size_t)kl, spec_id, spec_ts, b, bl, "", 0));
    assert_false(jn_wh_verify(key, (size_t)kl, spec_id, spec_ts, b, bl, "v1,!!!!", 7));
}

static void test_secrets(void **state)
{
    (void)state;
    uint8_t key[JN_WH_SECRET_MAX];
    assert_int_equal(jn_wh_secret_decode("whsec_", key), JN_EINVAL);
    assert_int_equal(jn_wh_secret_decode("whsec_!!!!", key), JN_EINVAL);
    char big[200] = "whsec_";
    memset(big + 6, 'A', 120);
    big[126] = '\0';
    assert_int_equal(jn_wh_secret_decode(big, key), JN_EINVAL);
    char s1[64], s2[64];
    assert_int_equal(jn_wh_secret_generate(s1, sizeof s1), 0);
    assert_int_equal(jn_wh_secret_generate(s2, sizeof s2), 0);
    assert_int_equal(strncmp(s1, "whsec_", 6), 0);
    assert_int_equal(strlen(s1), 6 + 32);
    assert_string_not_equal(s1, s2);
    assert_int_equal(jn_wh_secret_decode(s1, key), 24);
    assert_int_equal(jn_wh_secret_generate(s1, 20), JN_ETOOBIG);
}

static void test_hmac_scheme(void **state)
{
    (void)state;
    /* HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog") */
    const char *msg = "The quick brown fox jumps over the lazy dog";
    const char *hex = "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8";
    assert_true(jn_wh_hmac_verify("sha256", (const uint8_t *)"key", 3, NULL, (const uint8_t *)msg, strlen(msg), hex,
                                  strlen(hex), true));
    const char *b64 = "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg=";
    assert_true(jn_wh_hmac_verify("sha256", (const uint8_t *)"key", 3, NULL, (const uint8_t *)msg, strlen(msg), b64,
                                  strlen(b64), false));
    assert_false(jn_wh_hmac_verify("sha256", (const uint8_t *)"kez", 3, NULL, (const uint8_t *)msg, strlen(msg), hex,
                                   strlen(hex), true));
    /* with a prefix piece the signed data is prefix + body */
    assert_true(jn_wh_hmac_verify("sha256", (const uint8_t *)"key", 3, "The quick ",
                                  (const uint8_t *)msg + 10, strlen(msg) - 10, hex, strlen(hex), true));
    assert_false(jn_wh_hmac_verify("md5", (const uint8_t *)"key", 3, NULL, (const uint8_t *)msg, strlen(msg), hex,
                                   strlen(hex), true));
    assert_false(jn_wh_hmac_verify("sha256", (const uint8_t *)"key", 3, NULL, (const uint8_t *)msg, strlen(msg), "zz",
                                   2, true));
    assert_false(jn_wh_hmac_verify("sha256", (const uint8_t *)"key", 3, NULL, (const uint8_t *)msg, strlen(msg), hex,
                                   strlen(hex) - 2, true));
    assert_true(jn_wh_hmac_alg_ok("sha1") && jn_wh_hmac_alg_ok("sha512") && !jn_wh_hmac_alg_ok("crc32"));
}

static void test_msgid(void **state)
{
    (void)state;
    char id[JN_WH_MSGID_MAX + 1];
    assert_int_equal(jn_wh_msgid(id, sizeof id, "orders.eu-1", 3, 42), 0);
    assert_string_equal(id, "msg_3_42_orders.eu-1");
    char stream[250];
    uint32_t p;
    int64_t off;
    assert_int_equal(jn_wh_msgid_parse(id, stream, sizeof stream, &p, &off), 0);
    assert_string_equal(stream, "orders.eu-1");
    assert_int_equal(p, 3);
    assert_int_equal(off, 42);
    assert_int_equal(jn_wh_msgid_parse("msg_3_x_s", stream, sizeof stream, &p, &off), JN_EINVAL);
    assert_int_equal(jn_wh_msgid_parse("msg_3_1_", stream, sizeof stream, &p, &off), JN_EINVAL);
    /* Canonical numbers only: an id names one record (found by fuzz_webhook). */
    assert_int_equal(jn_wh_msgid_parse("msg_03_1_s", stream, sizeof stream, &p, &off), JN_EINVAL);
    assert_int_equal(jn_wh_msgid_parse("msg_3_01_s", stream, sizeof stream, &p, &off), JN_EINVAL);
    assert_int_equal(jn_wh_msgid_parse("msg_0_0_s", stream, sizeof stream, &p, &off), 0);
    assert_int_equal(jn_wh_msgid_parse("evt_3_1_s", stream, sizeof stream, &p, &off), JN_EINVAL);
    assert_int_equal(jn_wh_msgid_parse("msg_-3_1_s", stream, sizeof stream, &p, &off), JN_EINVAL);
    assert_int_equal(jn_wh_msgid(id, 8, "orders", 3, 42), JN_ETOOBIG);
}

static void test_schedule(void **state)
{
    (void)state;
    int64_t s[JN_WH_SCHEDULE_MAX];
    assert_int_equal(jn_wh_schedule_parse("5s,5m,30m,2h,5h,10h,10h", s), 7);
    assert_int_equal(s[0], 5000);
    assert_int_equal(s[1], 300000);
    assert_int_equal(s[3], 7200000);
    assert_int_equal(s[6], 36000000);
    assert_int_equal(jn_wh_schedule_parse("100, 250ms 1s", s), 3);
    assert_int_equal(s[0], 100);
    assert_int_equal(s[1], 250);
    assert_int_equal(s[2], 1000);
    assert_int_equal(jn_wh_schedule_parse("", s), 0);
    assert_int_equal(jn_wh_schedule_parse("5x", s), JN_EINVAL);
    assert_int_equal(jn_wh_schedule_parse("-5", s), JN_EINVAL);
    assert_int_equal(jn_wh_schedule_parse("200h", s), JN_EINVAL);
    assert_int_equal(jn_wh_schedule_parse("1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1", s), JN_EINVAL);
    int64_t sched[] = {1000, 10000};
    assert_int_equal(jn_wh_backoff(sched, 0, 0, 0), 900);
    assert_true(jn_wh_backoff(sched, 0, UINT32_MAX, 0) < 1100);
    assert_true(jn_wh_backoff(sched, 1, 12345, 0) >= 9000);
    /* Retry-After wins when longer, and is capped at a day */
    assert_int_equal(jn_wh_backoff(sched, 0, 0, 60000), 60000);
    assert_int_equal(jn_wh_backoff(sched, 1, 0, 1), 9000);
    assert_int_equal(jn_wh_backoff(sched, 0, 0, 1000LL * 3600 * 1000), 24LL * 3600 * 1000);
}

static const char *blocked4(const char *a)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, a, &sa.sin_addr), 1);
    return jn_wh_addr_blocked((const struct sockaddr *)&sa);
}

static const char *blocked6(const char *a)
{
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
    assert_int_equal(inet_pton(AF_INET6, a, &sa.sin6_addr), 1);
    return jn_wh_addr_blocked((const struct sockaddr *)&sa);
}

static void test_ssrf_rules(void **state)
{
    (void)state;
    assert_string_equal(blocked4("127.0.0.1"), "loopback");
    assert_string_equal(blocked4("127.255.0.9"), "loopback");
    assert_string_equal(blocked4("10.1.2.3"), "private");
    assert_string_equal(blocked4("172.16.0.1"), "private");
    assert_string_equal(blocked4("172.31.255.255"), "private");
    assert_null(blocked4("172.32.0.1"));
    assert_string_equal(blocked4("192.168.1.1"), "private");
    assert_string_equal(blocked4("169.254.169.254"), "metadata");
    assert_string_equal(blocked4("169.254.1.1"), "link-local");
    assert_string_equal(blocked4("0.0.0.0"), "unspecified");
    assert_string_equal(blocked4("100.64.0.1"), "shared");
    assert_string_equal(blocked4("224.0.0.1"), "multicast");
    assert_string_equal(blocked4("255.255.255.255"), "reserved");
    assert_null(blocked4("93.184.216.34"));
    assert_null(blocked4("8.8.8.8"));
    assert_string_equal(blocked6("::1"), "loopback");
    assert_string_equal(blocked6("::"), "unspecified");
    assert_string_equal(blocked6("fe80::1"), "link-local");
    assert_string_equal(blocked6("fd00::1"), "unique-local");
    assert_string_equal(blocked6("fc00::1"), "unique-local");
    assert_string_equal(blocked6("fd00:ec2::254"), "metadata");
    assert_string_equal(blocked6("::ffff:127.0.0.1"), "loopback");
    assert_string_equal(blocked6("::ffff:169.254.169.254"), "metadata");
    assert_string_equal(blocked6("64:ff9b::10.0.0.1"), "private");
    assert_string_equal(blocked6("ff02::1"), "multicast");
    assert_null(blocked6("2606:4700::1111"));
}

static void test_allow_list(void **state)
{
    (void)state;
    jn_wh_allow_t a;
    assert_int_equal(jn_wh_allow_parse("127.0.0.1/32, 10.0.0.0/8 ::1 hooks.internal", &a), 0);
    assert_int_equal(a.n, 4);
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &v4.sin_addr);
    assert_true(jn_wh_allow_addr(&a, (struct sockaddr *)&v4));
    inet_pton(AF_INET, "127.0.0.2", &v4.sin_addr);
    assert_false(jn_wh_allow_addr(&a, (struct sockaddr *)&v4));
    inet_pton(AF_INET, "10.200.3.4", &v4.sin_addr);
    assert_true(jn_wh_allow_addr(&a, (struct sockaddr *)&v4));
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::1", &v6.sin6_addr);
    assert_true(jn_wh_allow_addr(&a, (struct sockaddr *)&v6));
    inet_pton(AF_INET6, "::2", &v6.sin6_addr);
    assert_false(jn_wh_allow_addr(&a, (struct sockaddr *)&v6));
    assert_true(jn_wh_allow_host(&a, "HOOKS.internal"));
    assert_false(jn_wh_allow_host(&a, "other.internal"));
    assert_int_equal(jn_wh_allow_parse("", &a), 0);
    assert_int_equal(a.n, 0);
    assert_int_equal(jn_wh_allow_parse("10.0.0.0/33", &a), JN_EINVAL);
    assert_int_equal(jn_wh_allow_parse("host/8", &a), JN_EINVAL);
    assert_int_equal(jn_wh_allow_parse("bad host!", &a), JN_EINVAL);
}

/* The keyed signer gives exactly jn_wh_sign's output, again and again
 * (its state restarts per signature), for the spec example and others. */
static void test_signer(void **state)
{
    (void)state;
    uint8_t key[JN_WH_SECRET_MAX];
    int kl = jn_wh_secret_decode(spec_secret, key);
    assert_int_equal(kl, 24);
    jn_wh_signer_t s;
    assert_int_equal(jn_wh_signer_init(&s, key, (size_t)kl), 0);
    char sig[JN_WH_SIG_LEN], want[JN_WH_SIG_LEN];
    for (int round = 0; round < 3; round++) {
        assert_int_equal(jn_wh_signer_sign(&s, spec_id, spec_ts, (const uint8_t *)spec_body, strlen(spec_body), sig), 0);
        assert_string_equal(sig, spec_sig);
    }
    const char *ids[] = {"msg_0_1_orders", "msg_3_99999_x", "a"};
    const char *bodies[] = {"", "hello", "{\"k\": [1, 2, 3]}"};
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) {
            int64_t ts = 1700000000 + i * 7 + j;
            assert_int_equal(jn_wh_signer_sign(&s, ids[i], ts, (const uint8_t *)bodies[j], strlen(bodies[j]), sig), 0);
            assert_int_equal(jn_wh_sign(key, (size_t)kl, ids[i], ts, (const uint8_t *)bodies[j], strlen(bodies[j]), want), 0);
            assert_string_equal(sig, want);
        }
    }
    /* an id over the cap is refused, as by jn_wh_sign */
    char long_id[JN_WH_MSGID_MAX + 2];
    memset(long_id, 'a', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    assert_int_equal(jn_wh_signer_sign(&s, long_id, 1, NULL, 0, sig), JN_EINVAL);
    jn_wh_signer_free(&s);
    jn_wh_signer_free(&s); /* safe twice */
    /* unset and empty-key signers refuse */
    assert_int_equal(jn_wh_signer_sign(&s, "x", 1, NULL, 0, sig), JN_EINVAL);
    assert_int_equal(jn_wh_signer_init(&s, key, 0), JN_EINVAL);
    assert_int_equal(jn_wh_signer_sign(&s, "x", 1, NULL, 0, sig), JN_EINVAL);
    jn_wh_signer_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_spec_example), cmocka_unit_test(test_verify),
        cmocka_unit_test(test_signer),
        cmocka_unit_test(test_secrets),           cmocka_unit_test(test_hmac_scheme),
        cmocka_unit_test(test_msgid),             cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_ssrf_rules),        cmocka_unit_test(test_allow_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
