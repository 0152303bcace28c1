/* stamp.h - the payload timestamp that makes end-to-end latency measurable.
 *
 * Every bench payload starts with 16 bytes, all integers big-endian:
 *
 *   offset 0  4 bytes  magic "JNB1"
 *   offset 4  4 bytes  sequence number (u32, the sender's message number)
 *   offset 8  8 bytes  send time, nanoseconds of CLOCK_MONOTONIC
 *
 * and the rest, up to the requested size, is printable filler. The time is
 * only comparable on the machine that wrote it, which is what the bench
 * needs: it targets loopback, and whoever receives a payload (an MQTT
 * subscriber, an AMQP consumer...) subtracts the stamp from its own clock.
 */
#ifndef JN_BENCH_STAMP_H
#define JN_BENCH_STAMP_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define JN_STAMP_LEN 16
#define JN_STAMP_MAGIC "JNB1"

/* Writes the 16-byte stamp (|seq|, |ns|) at the start of |buf| and fills
 * buf[16..len) with filler. Returns 0, or JN_EINVAL when |len| is below
 * JN_STAMP_LEN (buf untouched). */
int jn_stamp_fill(uint8_t *buf, size_t len, uint32_t seq, uint64_t ns) JN_MUST_CHECK;

/* Rewrites only the stamp of a payload already filled (the cheap path for
 * a sender that reuses one buffer). Same errors as jn_stamp_fill. */
int jn_stamp_write(uint8_t *buf, size_t len, uint32_t seq, uint64_t ns) JN_MUST_CHECK;

/* Reads the stamp of |buf|. Returns 0 and sets |*seq| and |*ns| (either may
 * be NULL); JN_EPROTO when |len| < JN_STAMP_LEN or the magic is not
 * "JNB1" (outputs untouched). Never reads past |len|. */
int jn_stamp_read(const uint8_t *buf, size_t len, uint32_t *seq, uint64_t *ns) JN_MUST_CHECK;

#endif
