/* codec_int.h - helpers shared by the per-API decoders (not a public API). */
#ifndef JN_KAFKA_CODEC_INT_H
#define JN_KAFKA_CODEC_INT_H

#include "codec.h"

/* Allocates |n| elements of |T| from the arena, or fails the decoder. */
#define KALLOC(a, n, T, dst)                                           \
    do {                                                               \
        (dst) = jn_karena_alloc((a), (size_t)((n) > 0 ? (n) : 0), sizeof(T)); \
        if (!(dst))                                                    \
            return JN_ENOMEM;                                          \
    } while (0)

#define KDONE(r) ((r)->err ? JN_EPROTO : 0)
#define KCHECK(r)              \
    do {                       \
        if ((r)->err)          \
            return JN_EPROTO;  \
    } while (0)

#endif
