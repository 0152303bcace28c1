/* hash.h - hash functions with fixed, documented results. */
#ifndef JN_HASH_H
#define JN_HASH_H
#include <stddef.h>
#include <stdint.h>

/* Kafka's murmur2 (seed 0x9747b28c), as its Java client's
 * Utils.murmur2: keyed records land on partition
 * jn_murmur2_partition(key, n) exactly as Kafka's default partitioner puts
 * them (toPositive(murmur2(key)) % n). */
int32_t jn_murmur2(const void *key, size_t len);
uint32_t jn_murmur2_partition(const void *key, size_t len, uint32_t partitions);
/* FNV-1a 64, for in-memory hash tables. */
uint64_t jn_fnv1a(const void *p, size_t len);
#endif
