/* asan.h - JN_ASAN: 1 when built with AddressSanitizer.
 *
 * Code that recycles memory itself (pool.c's slabs, the connection
 * layer's spare I/O states, the HTTP server's spare requests) hands it to
 * malloc and free instead under ASan, so that a use after free is still
 * caught rather than hidden by the recycling.
 */
#ifndef JN_ASAN_H
#define JN_ASAN_H

#if defined(__SANITIZE_ADDRESS__)
#define JN_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JN_ASAN 1
#endif
#endif
#ifndef JN_ASAN
#define JN_ASAN 0
#endif

#endif
