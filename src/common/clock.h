/* clock.h - time sources. Anything that depends on time takes a jn_clock_t
 * so that tests can drive a fake clock. */
#ifndef JN_CLOCK_H
#define JN_CLOCK_H
#include <stdint.h>

typedef struct jn_clock {
    /* Wall clock, milliseconds since the Unix epoch (record timestamps). */
    int64_t (*now_ms)(void *ctx);
    void *ctx;
} jn_clock_t;

/* The real clock (CLOCK_REALTIME). */
extern const jn_clock_t jn_clock_real;
int64_t jn_wall_ms(void);
/* Monotonic nanoseconds (for latencies and timeouts). */
uint64_t jn_mono_ns(void);
static inline int64_t jn_clock_now(const jn_clock_t *c) { return c->now_ms(c->ctx); }
#endif
