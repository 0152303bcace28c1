/* list.h - intrusive circular doubly linked list (as in libuv's queue.h and
 * the Linux kernel). A jn_list_t is both the head and the node. */
#ifndef JN_LIST_H
#define JN_LIST_H
#include <stdbool.h>
#include <stddef.h>

typedef struct jn_list {
    struct jn_list *prev, *next;
} jn_list_t;

#define jn_container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

static inline void jn_list_init(jn_list_t *l) { l->prev = l->next = l; }
static inline bool jn_list_empty(const jn_list_t *l) { return l->next == l; }
/* A node that was initialised or removed is "unlinked" when it points to itself. */
static inline bool jn_list_linked(const jn_list_t *n) { return n->next != n && n->next != NULL; }
static inline void jn_list_insert_tail(jn_list_t *head, jn_list_t *n) {
    n->prev = head->prev; n->next = head; head->prev->next = n; head->prev = n;
}
static inline void jn_list_insert_head(jn_list_t *head, jn_list_t *n) {
    n->next = head->next; n->prev = head; head->next->prev = n; head->next = n;
}
/* Unlinks |n| and leaves it pointing to itself (safe to remove twice). */
static inline void jn_list_remove(jn_list_t *n) {
    n->prev->next = n->next; n->next->prev = n->prev; n->prev = n->next = n;
}
#define jn_list_foreach(pos, head) for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)
#define jn_list_foreach_safe(pos, tmp, head) \
    for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); (pos) = (tmp), (tmp) = (pos)->next)
#endif
