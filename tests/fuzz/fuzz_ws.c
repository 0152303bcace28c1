/* fuzz_ws.c - libFuzzer target for the WebSocket door's input paths:
 *
 *  - the frame path: bytes from a client through wslay with the door's
 *    callbacks (ws_codec.c), with and without permessage-deflate, fed in
 *    two pieces cut where the first byte says; every complete message
 *    goes on to the JSON command parser (text) or the envelope decoder
 *    (binary), as in the door, and is echoed back through the send path;
 *  - the handshake's extension negotiation on the same bytes.
 *
 * Oracles besides crashes: text messages handed up are valid UTF-8, no
 * message exceeds the maximum size, and an output that was written is a
 * sequence of well-formed unmasked server frames.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/ws/ws_internal.h"
#include "common/utf8.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define MAX_MESSAGE 4096

typedef struct fz {
    jn_ws_codec_t *c;
    jn_buf_t out;
    int depth;
} fz_t;

static void on_msg(void *arg, bool binary, const uint8_t *p, size_t len)
{
    fz_t *f = arg;
    CHECK(len <= MAX_MESSAGE);
    if (binary) {
        jn_ws_env_publish_t e;
        if (jn_ws_env_publish_decode(p, len, &e) == 0) {
            CHECK(e.subject_len <= len);
            CHECK(!e.value || (e.value >= p && e.value + e.value_len == p + len));
        }
    } else {
        CHECK(jn_utf8_valid(p, len));
        jn_ws_cmd_t cmd;
        const char *code = NULL;
        char err[256];
        if (jn_ws_cmd_parse(p, len, &cmd, &code, err, sizeof(err)) < 0)
            CHECK(code != NULL);
        jn_ws_cmd_free(&cmd);
    }
    (void)jn_ws_codec_send(f->c, binary, p, len);
}

static int on_write(void *arg, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    fz_t *f = arg;
    int rc = jn_buf_append(&f->out, a, alen);
    if (rc == 0 && blen)
        rc = jn_buf_append(&f->out, b, blen);
    return rc == JN_ETOOBIG ? JN_EAGAIN : rc;
}

static int on_random(void *arg, uint8_t *buf, size_t len)
{
    memset(buf, 0, len);
    return 0;
}

/* The output must parse as complete unmasked frames. */
static void check_output(const jn_buf_t *o)
{
    size_t i = 0;
    while (i < o->len) {
        CHECK(i + 2 <= o->len);
        CHECK((o->data[i + 1] & 0x80) == 0);
        uint64_t len = o->data[i + 1] & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            CHECK(i + 4 <= o->len);
            len = jn_load_be16(o->data + i + 2);
            hl = 4;
        } else if (len == 127) {
            CHECK(i + 10 <= o->len);
            len = jn_load_be64(o->data + i + 2);
            hl = 10;
        }
        CHECK(len <= o->len - i - hl);
        i += hl + (size_t)len;
    }
}

static jn_ws_zctx_t *zctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (!zctx)
        zctx = jn_ws_zctx_new();
    uint8_t mode = data[0];
    data++;
    size--;

    jn_ws_pmd_t pmd;
    char resp[JN_WS_EXT_MAX];
    jn_ws_pmd_negotiate((const char *)data, size < 512 ? size : 512, &pmd, resp, sizeof(resp));
    CHECK(!pmd.enabled || (pmd.server_window_bits >= 8 && pmd.server_window_bits <= 15));

    fz_t f = {0};
    jn_buf_init(&f.out, 1 << 20);
    jn_ws_codec_config_t cfg = {.max_message = MAX_MESSAGE, .z = zctx, .compress_min = 8};
    cfg.pmd.enabled = mode & 1;
    cfg.pmd.server_window_bits = (uint8_t)(9 + (mode >> 5) % 7);
    jn_ws_codec_cb_t cb = {.message = on_msg, .write = on_write, .random = on_random};
    if (jn_ws_codec_new(&cfg, &cb, &f, &f.c) < 0)
        goto done;
    size_t cut = size ? (size_t)(mode >> 1) % (size + 1) : 0;
    if (jn_ws_codec_feed(f.c, data, cut) == 0)
        (void)jn_ws_codec_feed(f.c, data + cut, size - cut);
    check_output(&f.out);
    jn_ws_codec_free(f.c);
done:
    jn_buf_free(&f.out);
    return 0;
}
