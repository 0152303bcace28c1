/* fuzz_batch.c - libFuzzer target for the RecordBatch v2 reader.
 *
 * The input is treated as a stream of batches, as a Kafka Produce request or
 * a segment file presents them: each is parsed and iterated, once with the
 * CRC check (the path real input takes) and once without (so that the record
 * parser sees mutated bytes that would otherwise stop at the CRC). Every
 * record view is touched so that ASan sees any view past the input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "core/batch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint32_t sink;

static void touch(const uint8_t *p, int32_t len)
{
    if (p && len > 0)
        sink += jn_crc32c(0, p, (size_t)len);
}

static void iterate(const uint8_t *p, size_t len, bool verify)
{
    jn_batch_iter_t it;
    jn_record_t rec;
    if (jn_batch_iter_init(&it, p, len, verify) < 0)
        return;
    int rc;
    int32_t n = 0;
    while ((rc = jn_batch_iter_next(&it, &rec)) == 1) {
        touch(rec.key, rec.key_len);
        touch(rec.value, rec.value_len);
        for (uint32_t i = 0; i < rec.header_count; i++) {
            touch(rec.headers[i].key, (int32_t)rec.headers[i].key_len);
            touch(rec.headers[i].value, rec.headers[i].value_len);
        }
        size_t slen;
        const char *s = jn_record_subject(&rec, "stream", 6, &slen);
        touch((const uint8_t *)s, (int32_t)slen);
        if (rec.offset < it.info.base_offset ||
            rec.offset > it.info.base_offset + it.info.last_offset_delta)
            abort();
        if (++n > it.info.record_count)
            abort(); /* more records than the header announced */
    }
    /* An error is sticky: asking again gives the same answer. */
    if (rc < 0 && jn_batch_iter_next(&it, &rec) != rc)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Copy to an exact-size heap buffer so that ASan flags any read past it. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);

    size_t pos = 0;
    for (int batches = 0; batches < 64 && pos < size; batches++) {
        jn_batch_info_t bi;
        int rc = jn_batch_parse(buf + pos, size - pos, 1 << 20, &bi);
        if (rc < 0) {
            /* Still exercise the iterator on what is left: it must fail cleanly. */
            iterate(buf + pos, size - pos, false);
            break;
        }
        (void)jn_batch_verify_crc(buf + pos, (size_t)rc);
        iterate(buf + pos, (size_t)rc, true);
        iterate(buf + pos, (size_t)rc, false);
        pos += (size_t)rc;
    }
    free(buf);
    return 0;
}
