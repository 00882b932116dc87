/* A lock-free LIFO of 4 KiB-aligned nodes (spans, thread caches).
 *
 * The head packs the node address (bits 12..47, 36 bits) with a 28-bit tag
 * bumped on every change, so a pop that read a stale `next` fails its CAS
 * instead of corrupting the list (ABA). Nodes are never unmapped while they
 * may be on a stack, so reading a stale node's `next` is harmless. */
#ifndef HM_STACK_H
#define HM_STACK_H

#include "internal.h"

typedef struct hm_link {
  struct hm_link *_Atomic next;
} hm_link;

typedef struct hm_stack {
  _Atomic uint64_t head;
} hm_stack;

#define HM_STACK_ADDR_SHIFT 12
#define HM_STACK_ADDR_BITS 36

static inline hm_link *hm_stack_node(uint64_t head)
{
  return (hm_link *)(uintptr_t)((head & (((uint64_t)1 << HM_STACK_ADDR_BITS) - 1))
                                << HM_STACK_ADDR_SHIFT);
}

static inline uint64_t hm_stack_pack(hm_link *node, uint64_t old)
{
  uint64_t tag = (old >> HM_STACK_ADDR_BITS) + 1;
  return (tag << HM_STACK_ADDR_BITS) | ((uintptr_t)node >> HM_STACK_ADDR_SHIFT);
}

static inline void hm_stack_push(hm_stack *s, hm_link *node)
{
  uint64_t old = atomic_load_explicit(&s->head, memory_order_relaxed);
  do {
    atomic_store_explicit(&node->next, hm_stack_node(old), memory_order_relaxed);
  } while (!atomic_compare_exchange_weak_explicit(&s->head, &old, hm_stack_pack(node, old),
                                                  memory_order_release, memory_order_relaxed));
}

static inline hm_link *hm_stack_pop(hm_stack *s)
{
  uint64_t old = atomic_load_explicit(&s->head, memory_order_acquire);
  for (;;) {
    hm_link *top = hm_stack_node(old);
    if (top == NULL)
      return NULL;
    hm_link *next = atomic_load_explicit(&top->next, memory_order_relaxed);
    if (atomic_compare_exchange_weak_explicit(&s->head, &old, hm_stack_pack(next, old),
                                              memory_order_acquire, memory_order_acquire))
      return top;
  }
}

#endif
