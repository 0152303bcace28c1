/* stamp.c - encoding and decoding of the bench payload stamp (format in
 * stamp.h). Kept apart from the doors so every door, and any future
 * non-C client, stamps payloads the same way. */
#include "stamp.h"

#include <string.h>

#include "common/buf.h"

int jn_stamp_write(uint8_t *buf, size_t len, uint32_t seq, uint64_t ns)
{
    if (len < JN_STAMP_LEN)
        return JN_EINVAL;
    memcpy(buf, JN_STAMP_MAGIC, 4);
    jn_store_be32(buf + 4, seq);
    jn_store_be64(buf + 8, ns);
    return 0;
}

int jn_stamp_fill(uint8_t *buf, size_t len, uint32_t seq, uint64_t ns)
{
    int rc = jn_stamp_write(buf, len, seq, ns);
    if (rc < 0)
        return rc;
    /* Printable filler keeps payloads readable in logs and safe for doors
     * that carry text. */
    for (size_t i = JN_STAMP_LEN; i < len; i++)
        buf[i] = (uint8_t)('a' + (i - JN_STAMP_LEN) % 26);
    return 0;
}

int jn_stamp_read(const uint8_t *buf, size_t len, uint32_t *seq, uint64_t *ns)
{
    if (len < JN_STAMP_LEN || memcmp(buf, JN_STAMP_MAGIC, 4) != 0)
        return JN_EPROTO;
    if (seq)
        *seq = jn_load_be32(buf + 4);
    if (ns)
        *ns = jn_load_be64(buf + 8);
    return 0;
}
