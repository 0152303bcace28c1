/* sse_id.h - the position vector behind an SSE event id, and its text form
 * (docs/sse.md).
 *
 * An SSE subscription spans every partition of every stream its filter can
 * match, and records of different partitions arrive interleaved. One
 * record's stream/partition/offset therefore cannot say where each of the
 * other partitions stood, so the id of every event carries the whole
 * vector: for each (stream, partition), the next offset the client has not
 * been sent. Partitions missing from the vector stand at 0, i.e. at the
 * start of their log, which is also where the broker starts a subscription
 * in streams and partitions created after it.
 *
 * Text form:  <stream>/<partition>/<offset>;<stream>=<p0>,<p1>,...;...
 *   - the part before the first ';' names the record the event carries
 *     (empty in an id sent without a record);
 *   - each ';'-separated entry gives one stream's positions, partition 0
 *     first; trailing zeros are left out, streams whose positions are all
 *     zero are left out, streams come in byte order of their names.
 *   Stream names cannot contain '/', ';', '=' or ',', so nothing is escaped.
 * A bare "<stream>/<partition>/<offset>" (no ';') is accepted as well and
 * means: that partition after <offset>, every other partition from its
 * start.
 *
 * Pure code: no broker, no I/O; the unit test drives it directly.
 */
#ifndef JN_SSE_ID_H
#define JN_SSE_ID_H

#include <stddef.h>
#include <stdint.h>

#include "../../common/buf.h"
#include "../../common/error.h"

/* Longest id accepted or produced. It must fit a Last-Event-ID header
 * under the HTTP server's head limit (16 KiB by default). */
#define JN_SSE_ID_MAX 8192

typedef struct jn_sse_vstream {
    char *name;      /* owned, NUL-terminated */
    size_t name_len;
    uint32_t nparts; /* entries in pos */
    int64_t *pos;    /* owned: next offset per partition, 0 = from the start */
} jn_sse_vstream_t;

/* The vector: streams sorted by name (memcmp order, shorter first on a tie). */
typedef struct jn_sse_vec {
    jn_sse_vstream_t *v;
    size_t n, cap;
} jn_sse_vec_t;

void jn_sse_vec_init(jn_sse_vec_t *vec);
/* Frees what |vec| owns; it is empty (and reusable) after. */
void jn_sse_vec_free(jn_sse_vec_t *vec);

/* Position of |stream|/|partition|; 0 when absent. */
int64_t jn_sse_vec_get(const jn_sse_vec_t *vec, const char *stream, size_t len, uint32_t partition);

/* Sets the position of |stream|/|partition| to |pos| (>= 0). Setting 0 on
 * an absent entry adds nothing. Returns 0, JN_EINVAL (empty or over-long
 * name, partition >= JN_PARTITIONS_MAX, negative |pos|) or JN_ENOMEM (the
 * vector is unchanged). */
int jn_sse_vec_set(jn_sse_vec_t *vec, const char *stream, size_t len, uint32_t partition,
                   int64_t pos) JN_MUST_CHECK;

/* Appends the id text of |vec| to |out|. |stream| (may be NULL for an id
 * without a record) with |partition| and |offset| names the record. Returns
 * 0, JN_ETOOBIG when the id would exceed JN_SSE_ID_MAX, or the error of
 * |out|; |out| is unchanged on error. */
int jn_sse_id_format(const jn_sse_vec_t *vec, const char *stream, size_t stream_len, uint32_t partition,
                     int64_t offset, jn_buf_t *out) JN_MUST_CHECK;

/* Parses id text (|len| bytes, no NUL needed) into |out| (initialised
 * and empty). Stream names must be valid stream names, partitions below
 * JN_PARTITIONS_MAX, positions decimal without sign or leading '+', and
 * no stream may appear twice. Returns 0, JN_EINVAL (malformed; |out| is
 * emptied), JN_ETOOBIG (over JN_SSE_ID_MAX) or JN_ENOMEM. */
int jn_sse_id_parse(const char *id, size_t len, jn_sse_vec_t *out) JN_MUST_CHECK;

#endif
