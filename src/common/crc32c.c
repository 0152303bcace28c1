/* crc32c.c - CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of Kafka RecordBatch v2.
 *
 * Two implementations give identical results: the SSE4.2 crc32 instruction
 * (8 bytes per instruction) chosen at run time when the CPU has it, and a
 * portable slicing-by-8 table walk. Both are reachable under jn__ names so
 * that the tests can compare them on any machine.
 */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define JN_CRC32C_HAVE_HW 1
#endif

#define CRC32C_POLY 0x82F63B78u

/* tables[k][b] is the CRC contribution of byte b followed by k zero bytes,
 * which lets the loop fold 8 input bytes with 8 independent lookups. */
static uint32_t tables[8][256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void tables_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int j = 0; j < 8; j++)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        tables[0][i] = c;
    }
    for (int k = 1; k < 8; k++)
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t prev = tables[k - 1][i];
            tables[k][i] = (prev >> 8) ^ tables[0][prev & 0xff];
        }
}

static inline uint32_t load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t jn__crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    pthread_once(&tables_once, tables_init);
    crc = ~crc;
    while (len >= 8) {
        uint32_t lo = crc ^ load_le32(p);
        uint32_t hi = load_le32(p + 4);
        crc = tables[7][lo & 0xff] ^ tables[6][(lo >> 8) & 0xff] ^ tables[5][(lo >> 16) & 0xff] ^
              tables[4][lo >> 24] ^ tables[3][hi & 0xff] ^ tables[2][(hi >> 8) & 0xff] ^
              tables[1][(hi >> 16) & 0xff] ^ tables[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = (crc >> 8) ^ tables[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

#ifdef JN_CRC32C_HAVE_HW
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p,
                                                               size_t len)
{
    crc = ~crc;
#if defined(__x86_64__)
    uint64_t c64 = crc;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8); /* unaligned-safe; the instruction wants LE, as x86 is */
        c64 = _mm_crc32_u64(c64, v);
        p += 8;
        len -= 8;
    }
    crc = (uint32_t)c64;
#endif
    while (len >= 4) {
        uint32_t v;
        memcpy(&v, p, 4);
        crc = _mm_crc32_u32(crc, v);
        p += 4;
        len -= 4;
    }
    while (len--)
        crc = _mm_crc32_u8(crc, *p++);
    return ~crc;
}

static int hw_available(void)
{
    static int cached = -1; /* benign: every thread computes the same value */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("sse4.2") ? 1 : 0;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}
#endif

int jn__crc32c_hw_available(void)
{
#ifdef JN_CRC32C_HAVE_HW
    return hw_available();
#else
    return 0;
#endif
}

uint32_t jn__crc32c_hw(uint32_t crc, const void *p, size_t len)
{
#ifdef JN_CRC32C_HAVE_HW
    if (hw_available())
        return crc32c_sse42(crc, p, len);
#endif
    return jn__crc32c_sw(crc, p, len);
}

uint32_t jn_crc32c(uint32_t crc, const void *p, size_t len)
{
    return jn__crc32c_hw(crc, p, len);
}
