/* pool.h - fixed-size object pools for small objects that live long.
 *
 * Why: an idle client costs a few small objects that live for hours (its
 * connection, its session), allocated between buffers that live for
 * milliseconds (the first read, the first answer). From malloc, freeing
 * the short-lived buffers leaves holes among the long-lived objects that
 * the heap cannot give back, and the resident memory per idle client
 * nearly doubles (docs/net.md). A pool keeps the objects of one kind
 * together in 64 KiB slabs outside the malloc heap, so the heap's free
 * space stays contiguous and can be returned, and a slab whose objects
 * are all freed goes back to the system (one empty slab is kept).
 *
 * Objects are handed out in address order from a fresh slab (its pages
 * are touched only as they are used) and recycled LIFO. Not thread-safe:
 * a pool belongs to one loop thread. Under AddressSanitizer every object
 * comes from calloc instead, so use-after-free is still caught.
 */
#ifndef JN_POOL_H
#define JN_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "list.h"

typedef struct jn_pool {
    size_t size;       /* object size, rounded up to 16 */
    uint32_t per_slab; /* objects in one slab */
    jn_list_t partial; /* slabs with free objects */
    jn_list_t full;    /* slabs without */
    size_t live;       /* objects handed out and not freed */
    size_t slabs;      /* slabs mapped */
    void *empty;       /* one completely free slab kept for reuse, or NULL */
} jn_pool_t;

/* Prepares |p| for objects of |size| bytes (1..16 KiB). */
void jn_pool_init(jn_pool_t *p, size_t size);
/* A zeroed object, or NULL when memory runs out. */
void *jn_pool_calloc(jn_pool_t *p);
/* Gives |obj| (from this pool; NULL is ignored) back. */
void jn_pool_free(jn_pool_t *p, void *obj);
/* Unmaps every slab. Objects still live become invalid: call it when the
 * owner is gone and nothing refers to them. */
void jn_pool_destroy(jn_pool_t *p);

#endif
