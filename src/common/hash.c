/* hash.c - hashes whose results are part of behaviour: murmur2 must match
 * Kafka's Java client bit for bit, or keyed records produced through
 * Junction would land on other partitions than Kafka clients expect. */
#include "hash.h"

#define MURMUR2_SEED 0x9747b28cu
#define MURMUR2_M 0x5bd1e995u

int32_t jn_murmur2(const void *key, size_t len)
{
    const uint8_t *d = key;
    /* Java's length is an int; all arithmetic wraps at 32 bits. */
    uint32_t h = MURMUR2_SEED ^ (uint32_t)len;
    size_t blocks = len / 4;
    for (size_t i = 0; i < blocks; i++) {
        const uint8_t *q = d + 4 * i;
        uint32_t k = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 |
                     (uint32_t)q[3] << 24;
        k *= MURMUR2_M;
        k ^= k >> 24;
        k *= MURMUR2_M;
        h *= MURMUR2_M;
        h ^= k;
    }
    const uint8_t *tail = d + (len & ~(size_t)3);
    switch (len & 3) {
    case 3:
        h ^= (uint32_t)tail[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)tail[1] << 8;
        /* fall through */
    case 1:
        h ^= tail[0];
        h *= MURMUR2_M;
    }
    h ^= h >> 13;
    h *= MURMUR2_M;
    h ^= h >> 15;
    return (int32_t)h;
}

uint32_t jn_murmur2_partition(const void *key, size_t len, uint32_t partitions)
{
    if (partitions == 0)
        return 0;
    /* Kafka's toPositive: clear the sign bit (not abs, which fails on MIN). */
    uint32_t positive = (uint32_t)jn_murmur2(key, len) & 0x7fffffffu;
    return positive % partitions;
}

uint64_t jn_fnv1a(const void *p, size_t len)
{
    const uint8_t *d = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= d[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
