/* pool.c - fixed-size object pools (see pool.h for why).
 *
 * A slab is 64 KiB aligned to 64 KiB, so an object finds its slab by
 * masking its address. The slab starts with its header; objects follow.
 * Free objects of a slab are a LIFO list threaded through their first
 * word; |bump| counts objects never handed out, so a new slab's pages
 * are touched one by one as objects are taken from it.
 */
#include "pool.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "asan.h"

#if JN_ASAN
#define POOL_MALLOC 1
#endif

#define SLAB_SIZE ((size_t)64 << 10)

typedef struct slab {
    jn_list_t node;   /* in pool->partial or pool->full; unlinked when kept as |empty| */
    void *free;       /* freed objects, LIFO */
    uint32_t used;    /* objects handed out */
    uint32_t bump;    /* objects ever handed out from the fresh area */
} slab_t;

#define SLAB_HDR (((sizeof(slab_t)) + 15) & ~(size_t)15)

#ifndef POOL_MALLOC
static slab_t *slab_of(const void *obj)
{
    return (slab_t *)((uintptr_t)obj & ~(uintptr_t)(SLAB_SIZE - 1));
}

/* Maps twice the size and unmaps the ends to get the alignment. */
static slab_t *slab_map(void)
{
    size_t len = 2 * SLAB_SIZE;
    uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    uintptr_t a = ((uintptr_t)m + SLAB_SIZE - 1) & ~(uintptr_t)(SLAB_SIZE - 1);
    size_t head = a - (uintptr_t)m;
    if (head)
        munmap(m, head);
    size_t tail = len - head - SLAB_SIZE;
    if (tail)
        munmap((uint8_t *)a + SLAB_SIZE, tail);
    return (slab_t *)a; /* zero-filled by mmap */
}
#endif

void jn_pool_init(jn_pool_t *p, size_t size)
{
    memset(p, 0, sizeof *p);
    size = size < sizeof(void *) ? sizeof(void *) : size;
    p->size = (size + 15) & ~(size_t)15;
    p->per_slab = (uint32_t)((SLAB_SIZE - SLAB_HDR) / p->size);
    jn_list_init(&p->partial);
    jn_list_init(&p->full);
}

#ifdef POOL_MALLOC

void *jn_pool_calloc(jn_pool_t *p)
{
    void *o = calloc(1, p->size);
    if (o)
        p->live++;
    return o;
}

void jn_pool_free(jn_pool_t *p, void *obj)
{
    if (!obj)
        return;
    p->live--;
    free(obj);
}

void jn_pool_destroy(jn_pool_t *p)
{
    p->live = 0;
}

#else

void *jn_pool_calloc(jn_pool_t *p)
{
    slab_t *s;
    if (!jn_list_empty(&p->partial)) {
        s = jn_container_of(p->partial.next, slab_t, node);
    } else {
        if (p->empty) {
            s = p->empty;
            p->empty = NULL;
        } else {
            if (!(s = slab_map()))
                return NULL;
            p->slabs++;
        }
        jn_list_insert_head(&p->partial, &s->node);
    }
    uint8_t *o;
    if (s->free) {
        o = s->free;
        memcpy(&s->free, o, sizeof s->free);
        memset(o, 0, p->size);
    } else {
        o = (uint8_t *)s + SLAB_HDR + (size_t)s->bump * p->size; /* never used: still zero */
        s->bump++;
    }
    if (++s->used == p->per_slab) {
        jn_list_remove(&s->node);
        jn_list_insert_head(&p->full, &s->node);
    }
    p->live++;
    return o;
}

void jn_pool_free(jn_pool_t *p, void *obj)
{
    if (!obj)
        return;
    slab_t *s = slab_of(obj);
    memcpy(obj, &s->free, sizeof s->free);
    s->free = obj;
    if (s->used-- == p->per_slab) {
        jn_list_remove(&s->node);
        jn_list_insert_head(&p->partial, &s->node);
    }
    p->live--;
    if (s->used > 0)
        return;
    /* Empty: keep one for the next burst, give the others back. */
    jn_list_remove(&s->node);
    if (!p->empty) {
        /* Its pages stop counting as resident and read as zero again
         * (the header too: a zero header is a fresh slab). */
        madvise(s, SLAB_SIZE, MADV_DONTNEED);
        p->empty = s;
        return;
    }
    munmap(s, SLAB_SIZE);
    p->slabs--;
}

static void unmap_all(jn_list_t *l)
{
    while (!jn_list_empty(l)) {
        slab_t *s = jn_container_of(l->next, slab_t, node);
        jn_list_remove(&s->node);
        munmap(s, SLAB_SIZE);
    }
}

void jn_pool_destroy(jn_pool_t *p)
{
    unmap_all(&p->partial);
    unmap_all(&p->full);
    if (p->empty)
        munmap(p->empty, SLAB_SIZE);
    p->empty = NULL;
    p->slabs = 0;
    p->live = 0;
}

#endif
