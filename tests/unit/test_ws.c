/* test_ws.c - the pure parts of the WebSocket door: handshake and accept
 * key, permessage-deflate negotiation and codec, framing through wslay
 * (fed whole and byte at a time), the binary envelope and the JSON
 * commands. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>

#include "proto/ws/ws_internal.h"

/* ---- handshake ---- */

static void test_accept_key_rfc(void **state)
{
    (void)state;
    char out[29];
    /* RFC 6455 section 1.3. */
    assert_int_equal(jn_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(jn_ws_accept_key(" dGhlIHNhbXBsZSBub25jZQ== ", 26, out), 0);
    assert_int_equal(jn_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ", 22, out), JN_EINVAL);
    assert_int_equal(jn_ws_accept_key("dGhlIHNhbXBsZSBub25j!Q==", 24, out), JN_EINVAL);
    assert_int_equal(jn_ws_accept_key("dGhlIHNhbXBsZSBub25jZQo=", 24, out), JN_EINVAL); /* 17 bytes */
    assert_int_equal(jn_ws_accept_key("", 0, out), JN_EINVAL);
}

typedef struct hdrs {
    const char *names[8];
    const char *values[8];
} hdrs_t;

static const char *hdr_lookup(void *arg, const char *name, size_t *len)
{
    hdrs_t *h = arg;
    for (int i = 0; i < 8 && h->names[i]; i++) {
        if (strcasecmp(h->names[i], name) == 0) {
            *len = strlen(h->values[i]);
            return h->values[i];
        }
    }
    return NULL;
}

static hdrs_t good_hdrs(void)
{
    hdrs_t h = {{"Upgrade", "Connection", "Sec-WebSocket-Version", "Sec-WebSocket-Key"},
                {"WebSocket", "keep-alive, Upgrade", "13", "dGhlIHNhbXBsZSBub25jZQ=="}};
    return h;
}

static void test_handshake(void **state)
{
    (void)state;
    jn_ws_handshake_t hs;
    hdrs_t h = good_hdrs();
    assert_int_equal(jn_ws_handshake_check("GET", hdr_lookup, &h, true, &hs), 0);
    assert_string_equal(hs.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_false(hs.subprotocol);
    assert_false(hs.pmd.enabled);
    assert_string_equal(hs.extensions, "");

    assert_int_equal(jn_ws_handshake_check("POST", hdr_lookup, &h, true, &hs), JN_EPROTO);
    assert_int_equal(hs.status, 400);

    h.values[2] = "8";
    assert_int_equal(jn_ws_handshake_check("GET", hdr_lookup, &h, true, &hs), JN_EPROTO);
    assert_int_equal(hs.status, 426);

    h = good_hdrs();
    h.values[0] = "h2c";
    assert_int_equal(jn_ws_handshake_check("GET", hdr_lookup, &h, true, &hs), JN_EPROTO);
    assert_int_equal(hs.status, 400);
    h = good_hdrs();
    h.values[1] = "keep-alive";
    assert_int_equal(jn_ws_handshake_check("GET", hdr_lookup, &h, true, &hs), JN_EPROTO);
    h = good_hdrs();
    h.names[3] = NULL;
    assert_int_equal(jn_ws_handshake_check("GET", hdr_lookup, &h, true, &hs), JN_EPROTO);

    /* Subprotocols: junction.v1 with a bearer token; others refused. */
    h = good_hdrs();
    h.names[4] = "Sec-WebSocket-Protocol";
    h.values[4] = "junction.v1, bearer.jnt_abc-DEF_123";
    assert_int_equal(jn_ws_handshake_check("GET", hdr_lookup, &h, true, &hs), 0);
    assert_true(hs.subprotocol);
    assert_string_equal(hs.token, "jnt_abc-DEF_123");
    h.values[4] = "chat, superchat";
    assert_int_equal(jn_ws_handshake_check("GET", hdr_lookup, &h, true, &hs), JN_EPROTO);
    assert_int_equal(hs.status, 400);

    /* Deflate offered, and off when not allowed. */
    h = good_hdrs();
    h.names[4] = "Sec-WebSocket-Extensions";
    h.values[4] = "permessage-deflate; client_max_window_bits";
    assert_int_equal(jn_ws_handshake_check("GET", hdr_lookup, &h, true, &hs), 0);
    assert_true(hs.pmd.enabled);
    assert_int_equal(hs.pmd.server_window_bits, 15);
    assert_string_equal(hs.extensions, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    assert_int_equal(jn_ws_handshake_check("GET", hdr_lookup, &h, false, &hs), 0);
    assert_false(hs.pmd.enabled);
}

/* Another door's subprotocols (MQTT over WebSocket): the preferred name
 * offered wins, a list without any is refused, no header answers none;
 * and the 101 header lines. */
static void test_handshake_protocols(void **state)
{
    (void)state;
    static const char *const mqtt[] = {"mqtt", "mqttv3.1", NULL};
    jn_ws_handshake_t hs;
    char out[256];
    hdrs_t h = good_hdrs();
    assert_int_equal(jn_ws_handshake_check_protocols("GET", hdr_lookup, &h, false, mqtt, "no", &hs), 0);
    assert_null(hs.protocol);
    assert_false(hs.subprotocol);
    assert_true(jn_ws_upgrade_headers(&hs, out, sizeof(out)) > 0);
    assert_string_equal(out, "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                             "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n");
    h.names[4] = "Sec-WebSocket-Protocol";
    h.values[4] = "mqttv3.1, mqtt";
    assert_int_equal(jn_ws_handshake_check_protocols("GET", hdr_lookup, &h, false, mqtt, "no", &hs), 0);
    assert_string_equal(hs.protocol, "mqtt");
    assert_true(hs.subprotocol);
    assert_true(jn_ws_upgrade_headers(&hs, out, sizeof(out)) > 0);
    assert_non_null(strstr(out, "\r\nSec-WebSocket-Protocol: mqtt\r\n"));
    assert_int_equal(jn_ws_upgrade_headers(&hs, out, 40), JN_ETOOBIG);
    h.values[4] = "mqttv3.1";
    assert_int_equal(jn_ws_handshake_check_protocols("GET", hdr_lookup, &h, false, mqtt, "no", &hs), 0);
    assert_string_equal(hs.protocol, "mqttv3.1");
    h.values[4] = "MQTT, junction.v1"; /* case-sensitive, as RFC 6455 4.1 says */
    assert_int_equal(jn_ws_handshake_check_protocols("GET", hdr_lookup, &h, false, mqtt, "no", &hs), JN_EPROTO);
    assert_int_equal(hs.status, 400);
    assert_string_equal(hs.error, "no");
    /* And the /v1/ws door still answers junction.v1 by name. */
    h.values[4] = "junction.v1";
    assert_int_equal(jn_ws_handshake_check("GET", hdr_lookup, &h, false, &hs), 0);
    assert_string_equal(hs.protocol, "junction.v1");
}

static void test_pmd_negotiate(void **state)
{
    (void)state;
    jn_ws_pmd_t p;
    char resp[JN_WS_EXT_MAX];
    const char *v = "permessage-deflate; server_max_window_bits=10";
    jn_ws_pmd_negotiate(v, strlen(v), &p, resp, sizeof(resp));
    assert_true(p.enabled);
    assert_int_equal(p.server_window_bits, 10);
    assert_non_null(strstr(resp, "server_max_window_bits=10"));

    /* Unknown, repeated or invalid parameters skip the offer; the next
     * acceptable one is taken. */
    v = "permessage-deflate; foo, permessage-deflate; server_no_context_takeover; server_no_context_takeover, "
        "permessage-deflate; server_max_window_bits=16, x-webkit-deflate-frame, "
        "permessage-deflate; client_max_window_bits=\"12\"; server_no_context_takeover";
    jn_ws_pmd_negotiate(v, strlen(v), &p, resp, sizeof(resp));
    assert_true(p.enabled);
    assert_int_equal(p.server_window_bits, 15);

    v = "permessage-deflate; server_max_window_bits";
    jn_ws_pmd_negotiate(v, strlen(v), &p, resp, sizeof(resp));
    assert_false(p.enabled);
    assert_string_equal(resp, "");
    v = "permessage-deflate; client_no_context_takeover=1";
    jn_ws_pmd_negotiate(v, strlen(v), &p, resp, sizeof(resp));
    assert_false(p.enabled);
    v = "permessage-deflate;";
    jn_ws_pmd_negotiate(v, strlen(v), &p, resp, sizeof(resp));
    assert_false(p.enabled);
    v = "PerMessage-Deflate";
    jn_ws_pmd_negotiate(v, strlen(v), &p, resp, sizeof(resp));
    assert_true(p.enabled);
}

/* ---- deflate ---- */

static void test_deflate_round_trip(void **state)
{
    (void)state;
    jn_ws_zctx_t *z = jn_ws_zctx_new();
    assert_non_null(z);
    char text[4096];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = "the quick brown fox "[i % 20];
    for (int wbits = 9; wbits <= 15; wbits++) {
        jn_buf_t c, d;
        jn_buf_init(&c, 1 << 20);
        jn_buf_init(&d, 1 << 20);
        assert_int_equal(jn_ws_deflate(z, wbits, (const uint8_t *)text, sizeof(text), &c), 0);
        assert_true(c.len < sizeof(text) / 4);
        assert_int_equal(jn_ws_inflate(z, c.data, c.len, &d), 0);
        assert_int_equal(d.len, sizeof(text));
        assert_memory_equal(d.data, text, sizeof(text));
        jn_buf_free(&c);
        jn_buf_free(&d);
    }
    /* Empty message: compresses to a few bytes, inflates to nothing. */
    jn_buf_t c, d;
    jn_buf_init(&c, 1024);
    jn_buf_init(&d, 1024);
    assert_int_equal(jn_ws_deflate(z, 15, (const uint8_t *)"", 0, &c), 0);
    assert_int_equal(jn_ws_inflate(z, c.data, c.len, &d), 0);
    assert_int_equal(d.len, 0);
    assert_int_equal(jn_ws_deflate(z, 8, (const uint8_t *)"x", 1, &c), JN_EINVAL);
    /* Garbage does not inflate. */
    jn_buf_reset(&d);
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x13, 0x37};
    assert_int_equal(jn_ws_inflate(z, junk, sizeof(junk), &d), JN_EPROTO);
    assert_int_equal(d.len, 0);
    jn_buf_free(&c);
    jn_buf_free(&d);
    jn_ws_zctx_free(z);
}

static void test_inflate_bomb_cap(void **state)
{
    (void)state;
    jn_ws_zctx_t *z = jn_ws_zctx_new();
    size_t big = 16u << 20;
    uint8_t *zeros = calloc(1, big);
    assert_non_null(zeros);
    jn_buf_t c, d;
    jn_buf_init(&c, 1 << 20);
    jn_buf_init(&d, 1 << 20); /* the maximum message */
    assert_int_equal(jn_ws_deflate(z, 15, zeros, big, &c), 0);
    assert_true(c.len < 64 * 1024); /* 16 MiB of zeros in a few KiB */
    assert_int_equal(jn_ws_inflate(z, c.data, c.len, &d), JN_ETOOBIG);
    assert_int_equal(d.len, 0);
    assert_true(d.cap <= (1u << 20));
    /* Exactly at the cap is fine. */
    jn_buf_reset(&c);
    assert_int_equal(jn_ws_deflate(z, 15, zeros, 1 << 20, &c), 0);
    assert_int_equal(jn_ws_inflate(z, c.data, c.len, &d), 0);
    assert_int_equal(d.len, 1 << 20);
    free(zeros);
    jn_buf_free(&c);
    jn_buf_free(&d);
    jn_ws_zctx_free(z);
}

/* ---- framing ---- */

typedef struct sink {
    jn_buf_t out;          /* bytes the codec wrote */
    int msgs;
    bool last_binary;
    uint8_t last[4096];
    size_t last_len;
    int pongs;
    bool full;             /* make writes fail with EAGAIN */
    jn_ws_codec_t *c;
    bool echo;             /* send each message back */
} sink_t;

static void on_msg(void *arg, bool binary, const uint8_t *p, size_t len)
{
    sink_t *s = arg;
    s->msgs++;
    s->last_binary = binary;
    s->last_len = len < sizeof(s->last) ? len : sizeof(s->last);
    memcpy(s->last, p, s->last_len);
    if (s->echo)
        assert_int_equal(jn_ws_codec_send(s->c, binary, p, len), 0);
}

static void on_pong(void *arg)
{
    ((sink_t *)arg)->pongs++;
}

static int on_write(void *arg, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    sink_t *s = arg;
    if (s->full)
        return JN_EAGAIN;
    int rc = jn_buf_append(&s->out, a, alen);
    if (rc == 0 && blen)
        rc = jn_buf_append(&s->out, b, blen);
    return rc;
}

static int on_random(void *arg, uint8_t *buf, size_t len)
{
    memset(buf, 0x5a, len);
    return 0;
}

static const jn_ws_codec_cb_t sink_cb = {on_msg, on_pong, on_write, on_random, NULL};

/* Appends a client frame (masked unless |mask| is false). */
static void frame(jn_buf_t *b, bool fin, bool rsv1, uint8_t opcode, bool mask, const void *payload, size_t len)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t h[14];
    size_t hl = 2;
    h[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode);
    if (len < 126) {
        h[1] = (uint8_t)len;
    } else if (len <= 0xffff) {
        h[1] = 126;
        jn_store_be16(h + 2, (uint16_t)len);
        hl = 4;
    } else {
        h[1] = 127;
        jn_store_be64(h + 2, len);
        hl = 10;
    }
    if (mask) {
        h[1] |= 0x80;
        memcpy(h + hl, key, 4);
        hl += 4;
    }
    assert_int_equal(jn_buf_append(b, h, hl), 0);
    const uint8_t *p = payload;
    for (size_t i = 0; i < len; i++)
        assert_int_equal(jn_buf_put_u8(b, (uint8_t)(mask ? p[i] ^ key[i % 4] : p[i])), 0);
}

static jn_ws_codec_t *new_codec(sink_t *s, size_t max_message, bool pmd, jn_ws_zctx_t *z)
{
    memset(s, 0, sizeof(*s));
    jn_buf_init(&s->out, 64u << 20);
    jn_ws_codec_config_t cfg = {.max_message = max_message, .z = z, .compress_min = 16};
    cfg.pmd.enabled = pmd;
    cfg.pmd.server_window_bits = 15;
    jn_ws_codec_t *c;
    assert_int_equal(jn_ws_codec_new(&cfg, &sink_cb, s, &c), 0);
    s->c = c;
    return c;
}

/* The close code in the first close frame the codec wrote, or 0. */
static int sent_close_code(const sink_t *s)
{
    size_t i = 0;
    while (i + 2 <= s->out.len) {
        uint8_t op = s->out.data[i] & 0x0f;
        size_t len = s->out.data[i + 1] & 0x7f, hl = 2;
        if (len == 126) {
            len = jn_load_be16(s->out.data + i + 2);
            hl = 4;
        } else if (len == 127) {
            len = (size_t)jn_load_be64(s->out.data + i + 2);
            hl = 10;
        }
        if (op == 0x8)
            return len >= 2 ? jn_load_be16(s->out.data + i + hl) : 1005;
        i += hl + len;
    }
    return 0;
}

static void test_codec_text_and_bytewise(void **state)
{
    (void)state;
    sink_t s;
    jn_ws_codec_t *c = new_codec(&s, 1 << 20, false, NULL);
    jn_buf_t in;
    jn_buf_init(&in, 1 << 20);
    frame(&in, true, false, 0x1, true, "{\"op\":\"ping\"}", 13);
    frame(&in, false, false, 0x2, true, "ab", 2);
    frame(&in, false, false, 0x0, true, "cd", 2);
    frame(&in, true, false, 0x9, true, "pp", 2); /* a ping between fragments */
    frame(&in, true, false, 0x0, true, "ef", 2);
    /* One byte at a time: the codec must keep its place. */
    for (size_t i = 0; i < in.len; i++)
        assert_int_equal(jn_ws_codec_feed(c, in.data + i, 1), 0);
    assert_int_equal(s.msgs, 2);
    assert_true(s.last_binary);
    assert_int_equal(s.last_len, 6);
    assert_memory_equal(s.last, "abcdef", 6);
    /* The pong echoes the ping's payload, unmasked. */
    static const uint8_t pong[] = {0x8a, 0x02, 'p', 'p'};
    assert_int_equal(s.out.len, sizeof(pong));
    assert_memory_equal(s.out.data, pong, sizeof(pong));

    /* Sending: an unmasked text frame. */
    jn_buf_reset(&s.out);
    assert_int_equal(jn_ws_codec_send(c, false, (const uint8_t *)"hi", 2), 0);
    static const uint8_t hi[] = {0x81, 0x02, 'h', 'i'};
    assert_int_equal(s.out.len, 4);
    assert_memory_equal(s.out.data, hi, 4);
    /* A full output refuses the message, and takes it later. */
    s.full = true;
    assert_int_equal(jn_ws_codec_send(c, true, (const uint8_t *)"x", 1), JN_EAGAIN);
    s.full = false;
    assert_int_equal(jn_ws_codec_send(c, true, (const uint8_t *)"x", 1), 0);

    /* The close handshake: the peer's close is echoed. */
    jn_buf_reset(&s.out);
    jn_buf_reset(&in);
    uint8_t cl[2] = {0x03, 0xe8};
    frame(&in, true, false, 0x8, true, cl, 2);
    assert_int_equal(jn_ws_codec_feed(c, in.data, in.len), 0);
    assert_int_equal(sent_close_code(&s), 1000);
    assert_true(jn_ws_codec_done(c));
    assert_int_equal(jn_ws_codec_send(c, false, (const uint8_t *)"late", 4), JN_ECLOSED);
    jn_buf_free(&in);
    jn_buf_free(&s.out);
    jn_ws_codec_free(c);
}

/* Feeds one frame to a fresh codec and returns the close code sent. */
static int close_code_for(bool fin, bool rsv1, uint8_t opcode, bool mask, const void *p, size_t len,
                          size_t max_message, bool pmd, int *msgs)
{
    sink_t s;
    jn_ws_zctx_t *z = jn_ws_zctx_new();
    jn_ws_codec_t *c = new_codec(&s, max_message, pmd, z);
    jn_buf_t in;
    jn_buf_init(&in, 64u << 20);
    frame(&in, fin, rsv1, opcode, mask, p, len);
    assert_int_equal(jn_ws_codec_feed(c, in.data, in.len), 0);
    int code = sent_close_code(&s);
    if (msgs)
        *msgs = s.msgs;
    jn_buf_free(&in);
    jn_buf_free(&s.out);
    jn_ws_codec_free(c);
    jn_ws_zctx_free(z);
    return code;
}

static void test_codec_close_codes(void **state)
{
    (void)state;
    int msgs;
    assert_int_equal(close_code_for(true, false, 0x1, false, "hi", 2, 1024, false, &msgs), 1002); /* unmasked */
    assert_int_equal(msgs, 0);
    assert_int_equal(close_code_for(true, false, 0x1, true, "\xff\xfe", 2, 1024, false, &msgs), 1007);
    assert_int_equal(msgs, 0);
    assert_int_equal(close_code_for(true, false, 0x1, true, "\xed\xa0\x80", 3, 1024, false, &msgs), 1007);
    char big[2000];
    memset(big, 'a', sizeof(big));
    assert_int_equal(close_code_for(true, false, 0x2, true, big, sizeof(big), 1024, false, &msgs), 1009);
    assert_int_equal(close_code_for(true, false, 0x3, true, "x", 1, 1024, false, &msgs), 1002); /* reserved op */
    assert_int_equal(close_code_for(true, true, 0x1, true, "x", 1, 1024, false, &msgs), 1002); /* RSV1 w/o pmd */
    assert_int_equal(close_code_for(false, false, 0x9, true, "x", 1, 1024, false, &msgs), 1002); /* frag ping */
    assert_int_equal(close_code_for(true, false, 0x0, true, "x", 1, 1024, false, &msgs), 1002); /* lone cont */
    assert_int_equal(close_code_for(true, true, 0x9, true, "x", 1, 1024, true, &msgs), 1002);  /* RSV1 ping */
    assert_int_equal(close_code_for(true, true, 0x1, true, "\xff\xff\xff", 3, 1024, true, &msgs), 1007);
    assert_int_equal(msgs, 0);
}

static void test_codec_deflate(void **state)
{
    (void)state;
    jn_ws_zctx_t *z = jn_ws_zctx_new();
    jn_buf_t comp, in;
    jn_buf_init(&comp, 1 << 20);
    jn_buf_init(&in, 1 << 20);
    const char *text = "{\"op\":\"publish\",\"subject\":\"a/b\",\"value\":\"hello hello hello hello\"}";
    assert_int_equal(jn_ws_deflate(z, 15, (const uint8_t *)text, strlen(text), &comp), 0);
    sink_t s;
    jn_ws_codec_t *c = new_codec(&s, 1024, true, z);
    s.echo = true;
    frame(&in, true, true, 0x1, true, comp.data, comp.len);
    assert_int_equal(jn_ws_codec_feed(c, in.data, in.len), 0);
    assert_int_equal(s.msgs, 1);
    assert_int_equal(s.last_len, strlen(text));
    assert_memory_equal(s.last, text, strlen(text));
    /* The echo went out compressed (RSV1) and inflates to the text. */
    assert_int_equal(s.out.data[0], 0xc1);
    size_t plen = s.out.data[1];
    assert_true(plen < 126);
    jn_buf_t back;
    jn_buf_init(&back, 1024);
    assert_int_equal(jn_ws_inflate(z, s.out.data + 2, plen, &back), 0);
    assert_int_equal(back.len, strlen(text));
    assert_memory_equal(back.data, text, back.len);
    jn_buf_free(&back);
    jn_ws_codec_free(c);
    jn_buf_free(&s.out);

    /* A bomb: small compressed, too big inflated -> 1009. */
    uint8_t *zeros = calloc(1, 4u << 20);
    jn_buf_reset(&comp);
    assert_int_equal(jn_ws_deflate(z, 15, zeros, 4u << 20, &comp), 0);
    int msgs;
    assert_int_equal(close_code_for(true, true, 0x2, true, comp.data, comp.len, 1 << 20, true, &msgs), 1009);
    assert_int_equal(msgs, 0);
    free(zeros);
    jn_buf_free(&comp);
    jn_buf_free(&in);
    jn_ws_zctx_free(z);
}

/* sendv: the pieces reach the output as one frame, byte for byte what
 * jn_ws_codec_send makes of their concatenation, on the direct path
 * (writev callback), gathered (no writev callback, or compression), and
 * queued behind what wslay holds. */
static int on_writev(void *arg, const struct iovec *iov, int iovcnt)
{
    sink_t *s = arg;
    if (s->full)
        return JN_EAGAIN;
    for (int i = 0; i < iovcnt; i++)
        if (iov[i].iov_len && jn_buf_append(&s->out, iov[i].iov_base, iov[i].iov_len) < 0)
            return JN_ENOMEM;
    return 0;
}

static void sendv_matches_send(bool with_writev, bool pmd, size_t len)
{
    jn_ws_zctx_t *z = jn_ws_zctx_new();
    sink_t a, b;
    jn_ws_codec_t *ca = new_codec(&a, 1 << 20, pmd, z);
    jn_ws_codec_t *cb = new_codec(&b, 1 << 20, pmd, z);
    if (with_writev) {
        /* Rebuild |cb| with a writev callback. */
        jn_ws_codec_free(cb);
        jn_ws_codec_cb_t cbs = sink_cb;
        cbs.writev = on_writev;
        jn_ws_codec_config_t cfg = {.max_message = 1 << 20, .z = z, .compress_min = 16};
        cfg.pmd.enabled = pmd;
        cfg.pmd.server_window_bits = 15;
        assert_int_equal(jn_ws_codec_new(&cfg, &cbs, &b, &cb), 0);
        b.c = cb;
    }
    uint8_t *msg = malloc(len);
    for (size_t i = 0; i < len; i++)
        msg[i] = (uint8_t)('a' + i % 7);
    assert_int_equal(jn_ws_codec_send(ca, true, msg, len), 0);
    size_t cut1 = len / 3, cut2 = len / 2;
    struct iovec iov[4] = {{NULL, 0}, {msg, cut1}, {msg + cut1, cut2 - cut1}, {msg + cut2, len - cut2}};
    assert_int_equal(jn_ws_codec_sendv(cb, true, iov, 4), 0);
    assert_null(iov[0].iov_base); /* the codec's slot is left clean */
    assert_int_equal(b.out.len, a.out.len);
    assert_memory_equal(b.out.data, a.out.data, a.out.len);
    free(msg);
    jn_buf_free(&a.out);
    jn_buf_free(&b.out);
    jn_ws_codec_free(ca);
    jn_ws_codec_free(cb);
    jn_ws_zctx_free(z);
}

static void test_codec_sendv(void **state)
{
    (void)state;
    sendv_matches_send(true, false, 10);     /* direct, 2-byte header */
    sendv_matches_send(true, false, 300);    /* direct, 4-byte header */
    sendv_matches_send(true, false, 70000);  /* direct, 10-byte header */
    sendv_matches_send(false, false, 300);   /* gathered */
    sendv_matches_send(true, true, 300);     /* compressed: gathered */
    sendv_matches_send(true, true, 10);      /* under compress_min: direct */

    sink_t s;
    jn_ws_codec_cb_t cbs = sink_cb;
    cbs.writev = on_writev;
    jn_ws_codec_config_t cfg = {.max_message = 1 << 20};
    jn_ws_codec_t *c;
    memset(&s, 0, sizeof(s));
    jn_buf_init(&s.out, 1 << 20);
    assert_int_equal(jn_ws_codec_new(&cfg, &cbs, &s, &c), 0);
    struct iovec iov[JN_WS_IOV_MAX + 2];
    memset(iov, 0, sizeof(iov));
    assert_int_equal(jn_ws_codec_sendv(c, false, iov, 1), JN_EINVAL);
    assert_int_equal(jn_ws_codec_sendv(c, false, iov, JN_WS_IOV_MAX + 2), JN_EINVAL);
    /* A full output refuses, all or nothing. */
    iov[1] = (struct iovec){"hi", 2};
    s.full = true;
    assert_int_equal(jn_ws_codec_sendv(c, false, iov, 2), JN_EAGAIN);
    assert_int_equal(s.out.len, 0);
    s.full = false;
    /* Behind a queued pong the message waits its turn (gathered). */
    jn_buf_t in;
    jn_buf_init(&in, 1024);
    frame(&in, true, false, 0x9, true, "pp", 2);
    s.full = true;
    assert_int_equal(jn_ws_codec_feed(c, in.data, in.len), 0); /* the pong stays queued in wslay */
    assert_true(jn_ws_codec_pending(c) > 0);
    s.full = false;
    iov[1] = (struct iovec){"ab", 2};
    iov[2] = (struct iovec){"cd", 2};
    assert_int_equal(jn_ws_codec_sendv(c, false, iov, 3), 0);
    static const uint8_t want[] = {0x8a, 0x02, 'p', 'p', 0x81, 0x04, 'a', 'b', 'c', 'd'};
    assert_int_equal(s.out.len, sizeof(want));
    assert_memory_equal(s.out.data, want, sizeof(want));
    /* After a close nothing more goes out. */
    jn_ws_codec_close(c, 1000, "bye");
    assert_int_equal(jn_ws_codec_sendv(c, false, iov, 2), JN_ECLOSED);
    jn_buf_free(&in);
    jn_buf_free(&s.out);
    jn_ws_codec_free(c);
}

/* feed_some: a message callback that yields stops the feed after that
 * message (plus what wslay had already read); feeding the rest delivers
 * the others in order. Plain feed ignores yields. */
typedef struct ysink {
    sink_t s;
    int yield_every;
    char seen[64];
    size_t nseen;
} ysink_t;

static void on_msg_yield(void *arg, bool binary, const uint8_t *p, size_t len)
{
    ysink_t *y = arg;
    on_msg(&y->s, binary, p, len);
    if (y->nseen < sizeof(y->seen) && len)
        y->seen[y->nseen++] = (char)p[0];
    if (y->yield_every && y->s.msgs % y->yield_every == 0)
        jn_ws_codec_yield(y->s.c);
}

static void test_codec_feed_some(void **state)
{
    (void)state;
    for (int plain = 0; plain < 2; plain++) {
        ysink_t y;
        memset(&y, 0, sizeof(y));
        jn_buf_init(&y.s.out, 1 << 20);
        jn_ws_codec_cb_t cbs = sink_cb;
        cbs.message = on_msg_yield;
        jn_ws_codec_config_t cfg = {.max_message = 1 << 20};
        jn_ws_codec_t *c;
        assert_int_equal(jn_ws_codec_new(&cfg, &cbs, &y, &c), 0);
        y.s.c = c;
        y.yield_every = 1;
        jn_buf_t in;
        jn_buf_init(&in, 1 << 20);
        /* Large enough frames that wslay's 4 KiB read buffer holds one at a time. */
        static char big[5000];
        for (int i = 0; i < 8; i++) {
            memset(big, 'A' + i, sizeof(big));
            frame(&in, true, false, 0x2, true, big, sizeof(big));
        }
        if (plain) {
            assert_int_equal(jn_ws_codec_feed(c, in.data, in.len), 0);
            assert_int_equal(y.s.msgs, 8);
        } else {
            size_t off = 0;
            int calls = 0;
            while (off < in.len) {
                size_t used = 0;
                assert_int_equal(jn_ws_codec_feed_some(c, in.data + off, in.len - off, &used), 0);
                assert_true(used > 0 || off == in.len);
                off += used;
                calls++;
                assert_true(calls < 100);
            }
            assert_int_equal(off, in.len);
            assert_int_equal(y.s.msgs, 8);
            assert_true(calls > 1); /* it did stop early */
        }
        assert_int_equal(y.nseen, 8);
        assert_memory_equal(y.seen, "ABCDEFGH", 8);
        jn_buf_free(&in);
        jn_buf_free(&y.s.out);
        jn_ws_codec_free(c);
    }
}

/* ---- envelope ---- */

static void test_envelope(void **state)
{
    (void)state;
    jn_buf_t b;
    jn_buf_init(&b, 1 << 16);
    jn_ws_env_publish_t p = {.flags = JN_WS_ENV_F_ACK, .ref = "r1", .ref_len = 2, .subject = "sensors/a",
                             .subject_len = 9, .key = (const uint8_t *)"k", .key_len = 1,
                             .value = (const uint8_t *)"\x00\x01\x02", .value_len = 3};
    assert_int_equal(jn_ws_env_publish_encode(&b, &p), 0);
    assert_int_equal(b.len, 8 + 2 + 9 + 1 + 3);
    jn_ws_env_publish_t q;
    assert_int_equal(jn_ws_env_publish_decode(b.data, b.len, &q), 0);
    assert_int_equal(q.flags, JN_WS_ENV_F_ACK | JN_WS_ENV_F_KEY);
    assert_int_equal(q.ref_len, 2);
    assert_memory_equal(q.ref, "r1", 2);
    assert_memory_equal(q.subject, "sensors/a", 9);
    assert_memory_equal(q.key, "k", 1);
    assert_int_equal(q.value_len, 3);
    assert_memory_equal(q.value, "\x00\x01\x02", 3);
    /* Every truncated prefix that cuts a field is refused. */
    for (size_t n = 0; n < 8 + 2 + 9 + 1; n++)
        assert_int_equal(jn_ws_env_publish_decode(b.data, n, &q), JN_EPROTO);
    b.data[3] = 1; /* reserved */
    assert_int_equal(jn_ws_env_publish_decode(b.data, b.len, &q), JN_EPROTO);

    /* A tombstone without key. */
    jn_buf_reset(&b);
    jn_ws_env_publish_t t = {.subject = "x", .subject_len = 1};
    assert_int_equal(jn_ws_env_publish_encode(&b, &t), 0);
    assert_int_equal(jn_ws_env_publish_decode(b.data, b.len, &q), 0);
    assert_null(q.value);
    assert_null(q.key);
    assert_int_equal(jn_buf_put_u8(&b, 0), 0);
    assert_int_equal(jn_ws_env_publish_decode(b.data, b.len, &q), JN_EPROTO);

    /* Records. */
    jn_buf_reset(&b);
    jn_ws_env_record_t r = {.sub = "s1", .sub_len = 2, .stream = "sensors", .stream_len = 7,
                            .subject = "sensors/a", .subject_len = 9, .partition = 3,
                            .offset = 1234567890123LL, .timestamp = 1764403200123LL,
                            .value = (const uint8_t *)"v", .value_len = 1};
    assert_int_equal(jn_ws_env_record_encode(&b, &r), 0);
    assert_int_equal(b.len, 28 + 2 + 7 + 9 + 1);
    jn_ws_env_record_t r2;
    assert_int_equal(jn_ws_env_record_decode(b.data, b.len, &r2), 0);
    assert_int_equal(r2.partition, 3);
    assert_true(r2.offset == 1234567890123LL);
    assert_true(r2.timestamp == 1764403200123LL);
    assert_memory_equal(r2.stream, "sensors", 7);
    assert_null(r2.key);
    assert_int_equal(r2.value_len, 1);
    for (size_t n = 0; n < 28 + 2 + 7 + 9; n++)
        assert_int_equal(jn_ws_env_record_decode(b.data, n, &r2), JN_EPROTO);
    /* The header alone, as the fan-out path sends it (the pieces follow
     * from where they are): the same bytes as the encoder's first 28. */
    uint8_t h[JN_WS_ENV_RECORD_HDR];
    assert_int_equal(jn_ws_env_record_header(h, &r), 0);
    assert_memory_equal(h, b.data, sizeof(h));
    r.key = (const uint8_t *)"kk";
    r.key_len = 2;
    jn_buf_reset(&b);
    assert_int_equal(jn_ws_env_record_encode(&b, &r), 0);
    assert_int_equal(jn_ws_env_record_header(h, &r), 0);
    assert_memory_equal(h, b.data, sizeof(h));
    assert_int_equal(h[1], JN_WS_ENV_F_KEY);
    r.key_len = 0x10000;
    assert_int_equal(jn_ws_env_record_header(h, &r), JN_EINVAL);
    r.key_len = 2;
    r.sub_len = 300;
    assert_int_equal(jn_ws_env_record_encode(&b, &r), JN_EINVAL);
    assert_int_equal(jn_ws_env_record_header(h, &r), JN_EINVAL);
    jn_buf_free(&b);
}

/* ---- commands ---- */

static int parse(const char *json, jn_ws_cmd_t *c, const char **code)
{
    char err[256];
    *code = NULL;
    return jn_ws_cmd_parse((const uint8_t *)json, strlen(json), c, code, err, sizeof(err));
}

static void expect_error(const char *json, const char *want_code)
{
    jn_ws_cmd_t c;
    const char *code;
    assert_int_equal(parse(json, &c, &code), JN_EINVAL);
    assert_string_equal(code, want_code);
    jn_ws_cmd_free(&c);
}

static void test_commands(void **state)
{
    (void)state;
    jn_ws_cmd_t c;
    const char *code;
    assert_int_equal(parse("{\"op\":\"subscribe\",\"id\":\"s1\",\"filter\":\"sensors/#\",\"from\":\"earliest\"}", &c,
                           &code),
                     0);
    assert_int_equal(c.op, JN_WS_OP_SUBSCRIBE);
    assert_string_equal(c.id, "s1");
    assert_string_equal(c.filter, "sensors/#");
    assert_int_equal(c.start, JN_START_EARLIEST);
    assert_null(c.group);
    jn_ws_cmd_free(&c);

    assert_int_equal(parse("{\"op\":\"subscribe\",\"id\":\"s\",\"filter\":\"a/+\",\"from\":\"time:1700\","
                           "\"format\":\"binary\",\"ref\":\"q\"}",
                           &c, &code),
                     0);
    assert_int_equal(c.start, JN_START_TIME);
    assert_true(c.start_value == 1700);
    assert_true(c.binary);
    assert_string_equal(c.ref, "q");
    jn_ws_cmd_free(&c);

    assert_int_equal(parse("{\"op\":\"subscribe\",\"id\":\"s\",\"filter\":\"a\",\"from\":42,\"group\":\"g\"}", &c,
                           &code),
                     JN_EINVAL); /* group with an offset */
    jn_ws_cmd_free(&c);
    assert_int_equal(parse("{\"op\":\"subscribe\",\"id\":\"s\",\"filter\":\"a\",\"group\":\"g\"}", &c, &code), 0);
    assert_string_equal(c.group, "g");
    jn_ws_cmd_free(&c);
    assert_int_equal(parse("{\"op\":\"subscribe\",\"id\":\"s\",\"filter\":\"a\",\"lossy\":true}", &c, &code), 0);
    assert_true(c.lossy);
    jn_ws_cmd_free(&c);

    assert_int_equal(parse("{\"op\":\"publish\",\"subject\":\"a/b\",\"value\":{\"x\":1},\"key\":\"k\","
                           "\"headers\":{\"h\":\"v\"},\"ack\":true,\"ref\":\"r1\"}",
                           &c, &code),
                     0);
    assert_int_equal(c.op, JN_WS_OP_PUBLISH);
    assert_true(c.ack);
    assert_int_equal(c.subject_len, 3);
    assert_int_equal(c.rec.value_len, 7);
    assert_memory_equal(c.rec.value, "{\"x\":1}", 7);
    assert_int_equal(c.rec.key_len, 1);
    assert_int_equal(c.rec.header_count, 1);
    assert_string_equal(c.ref, "r1");
    jn_ws_cmd_free(&c);
    assert_int_equal(parse("{\"op\":\"publish\",\"subject\":\"a\",\"value\":\"AAE=\",\"encoding\":\"base64\"}", &c,
                           &code),
                     0);
    assert_int_equal(c.rec.value_len, 2);
    jn_ws_cmd_free(&c);

    assert_int_equal(parse("{\"op\":\"commit\",\"group\":\"g\",\"stream\":\"s\",\"partition\":0,\"offset\":5}", &c,
                           &code),
                     0);
    assert_true(c.offset == 5);
    jn_ws_cmd_free(&c);
    assert_int_equal(parse("{\"op\":\"auth\",\"token\":\"jnt_x\"}", &c, &code), 0);
    assert_string_equal(c.token, "jnt_x");
    jn_ws_cmd_free(&c);
    assert_int_equal(parse("{\"op\":\"unsubscribe\",\"id\":\"s1\"}", &c, &code), 0);
    jn_ws_cmd_free(&c);

    /* Errors, with the ref kept for the error event. */
    assert_int_equal(parse("{\"op\":\"nope\",\"ref\":\"r9\"}", &c, &code), JN_EINVAL);
    assert_string_equal(code, "unknown_op");
    assert_string_equal(c.ref, "r9");
    jn_ws_cmd_free(&c);
    expect_error("{\"op\":", "invalid_json");
    expect_error("[1,2]", "invalid_json");
    expect_error("{\"op\":\"a\",\"op\":\"b\"}", "invalid_json");
    expect_error("{}", "bad_request");
    expect_error("{\"op\":5}", "bad_request");
    expect_error("{\"op\":\"subscribe\",\"filter\":\"a\"}", "bad_request");
    expect_error("{\"op\":\"subscribe\",\"id\":\"s\",\"filter\":\"a/#/b\"}", "invalid_name");
    expect_error("{\"op\":\"subscribe\",\"id\":\"s\",\"filter\":\"a\",\"from\":\"yesterday\"}", "bad_request");
    expect_error("{\"op\":\"subscribe\",\"id\":\"s\",\"filter\":\"a\",\"from\":\"earliest\",\"lossy\":true}",
                 "bad_request");
    expect_error("{\"op\":\"subscribe\",\"id\":\"s\",\"filter\":\"a\",\"format\":\"xml\"}", "bad_request");
    expect_error("{\"op\":\"publish\",\"value\":\"x\"}", "invalid_name");
    expect_error("{\"op\":\"publish\",\"subject\":\"a\"}", "bad_request");
    expect_error("{\"op\":\"publish\",\"subject\":\"a\",\"value\":\"!\",\"encoding\":\"base64\"}", "bad_request");
    expect_error("{\"op\":\"commit\",\"group\":\"g\",\"stream\":\"s\",\"partition\":-1,\"offset\":5}",
                 "bad_request");
    expect_error("{\"op\":\"auth\"}", "bad_request");

    enum jn_start st;
    int64_t v;
    assert_int_equal(jn_ws_parse_from("live", &st, &v), 0);
    assert_int_equal(st, JN_START_LIVE);
    assert_int_equal(jn_ws_parse_from("17", &st, &v), 0);
    assert_int_equal(st, JN_START_OFFSET);
    assert_int_equal(jn_ws_parse_from("-1", &st, &v), JN_EINVAL);
    assert_int_equal(jn_ws_parse_from("time:x", &st, &v), JN_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key_rfc),
        cmocka_unit_test(test_handshake),
        cmocka_unit_test(test_handshake_protocols),
        cmocka_unit_test(test_pmd_negotiate),
        cmocka_unit_test(test_deflate_round_trip),
        cmocka_unit_test(test_inflate_bomb_cap),
        cmocka_unit_test(test_codec_text_and_bytewise),
        cmocka_unit_test(test_codec_close_codes),
        cmocka_unit_test(test_codec_deflate),
        cmocka_unit_test(test_codec_sendv),
        cmocka_unit_test(test_codec_feed_some),
        cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_commands),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
