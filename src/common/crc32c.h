/* crc32c.h - CRC-32C (Castagnoli), as Kafka RecordBatch v2 uses it.
 * Uses the SSE4.2 crc32 instruction when the CPU has it, a slicing table
 * otherwise. */
#ifndef JN_CRC32C_H
#define JN_CRC32C_H
#include <stddef.h>
#include <stdint.h>

/* Extends |crc| (0 to start) over |len| bytes of |p|. jn_crc32c(0, "123456789", 9)
 * == 0xE3069283. */
uint32_t jn_crc32c(uint32_t crc, const void *p, size_t len);

/* Internal, exposed for tests: the portable slicing-by-8 path, the SSE4.2
 * path (falls back to the portable one on CPUs without SSE4.2), and whether
 * this CPU has it. All give the same results as jn_crc32c. */
uint32_t jn__crc32c_sw(uint32_t crc, const void *p, size_t len);
uint32_t jn__crc32c_hw(uint32_t crc, const void *p, size_t len);
int jn__crc32c_hw_available(void);
#endif
