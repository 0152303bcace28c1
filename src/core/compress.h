/* compress.h - decompression of Kafka record batch payloads.
 *
 * A compressed RecordBatch v2 keeps its 61-byte header in the clear and
 * compresses the concatenated records after it with the codec named by
 * attributes bits 0-2. Junction stores such batches byte for byte (a Kafka
 * fetch returns them as produced) and decompresses them only when a record
 * must be looked at: another door delivering it, a table indexing it.
 *
 * Formats, as Kafka's clients write them:
 *   1 gzip   RFC 1952 members (zlib's auto-detected gzip/zlib header);
 *            concatenated members are read one after the other;
 *   2 snappy either Xerial's framing (magic 82 'SNAPPY' 00, int32 version,
 *            int32 compatible version, then blocks of int32 length + raw
 *            snappy), which the Java client writes, or one raw snappy block
 *            (librdkafka);
 *   3 lz4    the LZ4 frame format (one or more frames);
 *   4 zstd   zstd frames (content size may be absent: streamed).
 */
#ifndef JN_COMPRESS_H
#define JN_COMPRESS_H

#include <stddef.h>
#include <stdint.h>
#include "../common/buf.h"
#include "../common/error.h"

enum {
    JN_CODEC_NONE = 0,
    JN_CODEC_GZIP = 1,
    JN_CODEC_SNAPPY = 2,
    JN_CODEC_LZ4 = 3,
    JN_CODEC_ZSTD = 4,
};

/* The most a batch may decompress to: a peer's 1 MiB batch must not turn
 * into gigabytes of memory (a compression bomb). */
#define JN_DECOMPRESS_MAX ((size_t)64 << 20)

/* Decompresses |len| bytes at |src| compressed with |codec| (JN_CODEC_*),
 * appending the result to |out|. At most |max| bytes are produced (and
 * never more than JN_DECOMPRESS_MAX or |out|'s own cap). On failure
 * |out->len| is restored. Returns the number of bytes appended, JN_EPROTO
 * for malformed or truncated input or an unknown codec, JN_ETOOBIG past
 * the limit, JN_ENOMEM. */
int64_t jn_decompress(int codec, const uint8_t *src, size_t len, jn_buf_t *out, size_t max) JN_MUST_CHECK;

#endif
