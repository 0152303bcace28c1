/* clock.c - the real time sources behind jn_clock_t. Code that depends on
 * time takes a jn_clock_t so that tests can substitute a fake one. */
#include "clock.h"

#include <time.h>

int64_t jn_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t jn_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t real_now_ms(void *ctx)
{
    (void)ctx;
    return jn_wall_ms();
}

const jn_clock_t jn_clock_real = {real_now_ms, NULL};
