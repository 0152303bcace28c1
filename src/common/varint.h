/* varint.h - zigzag variable-length integers as Kafka records use them
 * (protobuf encoding: 7 bits a byte, little-endian groups, zigzag sign). */
#ifndef JN_VARINT_H
#define JN_VARINT_H
#include <stddef.h>
#include <stdint.h>

#define JN_VARINT_MAX 5   /* bytes of a 32-bit varint */
#define JN_VARLONG_MAX 10 /* bytes of a 64-bit varint */

/* Writes |v| zigzag-encoded to |out| (room for JN_VARINT_MAX). Returns bytes. */
size_t jn_varint_put(uint8_t *out, int32_t v);
size_t jn_varlong_put(uint8_t *out, int64_t v);
/* Size in bytes of the encoding of |v|. */
size_t jn_varint_size(int32_t v);
size_t jn_varlong_size(int64_t v);
/* Decodes from |p| (|len| bytes available). Returns bytes consumed, or
 * JN_EPARTIAL if |len| ends inside the number, or JN_EPROTO if it is
 * overlong (more than 5 / 10 bytes) or overflows. */
int jn_varint_get(const uint8_t *p, size_t len, int32_t *v);
int jn_varlong_get(const uint8_t *p, size_t len, int64_t *v);
/* Unsigned (non-zigzag) varint, as Kafka's compact encodings use. */
size_t jn_uvarint_put(uint8_t *out, uint32_t v);
int jn_uvarint_get(const uint8_t *p, size_t len, uint32_t *v);
#endif
