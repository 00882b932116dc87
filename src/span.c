#include "span.h"

#include <stddef.h>

#include "arena.h"
#include "tcache.h"

void hm_span_format(hm_span *s, unsigned cls)
{
  uint32_t size = hm_class_size[cls];
  s->cls = (uint16_t)cls;
  s->block_size = size;
  s->divisor = hm_span_divisor(size);
  s->capacity = hm_class_capacity(cls);
  s->bin = (uint32_t)(offsetof(hm_tcache, bins) + cls * sizeof(hm_bin));
  s->blocks = (uint8_t *)s + HM_HEADER_SIZE;
  atomic_store_explicit(&s->carved, 0, memory_order_relaxed);
  s->local_free = NULL;
  atomic_store_explicit(&s->aligned, 0, memory_order_relaxed);
  s->local_count = 0;
  atomic_store_explicit(&s->remote, 0, memory_order_relaxed);
  atomic_store_explicit(&s->owner, NULL, memory_order_relaxed);
  atomic_store_explicit(&s->state, HM_SPAN_OWNED, memory_order_relaxed);
}

/* Carves about a page worth of never-used blocks: touching the whole span at
 * once would make a span's worth of memory resident for one block. */
static hm_block *span_carve(hm_span *s)
{
  size_t carved = atomic_load_explicit(&s->carved, memory_order_relaxed);
  size_t left = s->capacity - carved / s->block_size;
  if (left == 0)
    return NULL;
  size_t n = 4096 / s->block_size;
  if (n == 0)
    n = 1;
  if (n > left)
    n = left;
  uint8_t *block = s->blocks + carved;
  hm_block *first = (hm_block *)block;
  for (size_t i = 0; i + 1 < n; i++, block += s->block_size)
    ((hm_block *)block)->next = (hm_block *)(block + s->block_size);
  ((hm_block *)block)->next = NULL;
  atomic_store_explicit(&s->carved, carved + n * s->block_size, memory_order_relaxed);
  return first;
}

hm_block *hm_span_collect(hm_span *s)
{
  hm_block *list = s->local_free;
  if (list != NULL) {
    s->local_free = NULL;
    s->local_count = 0;
    return list;
  }
  /* Reuse before carving: it keeps the resident set small. */
  if (atomic_load_explicit(&s->remote, memory_order_relaxed) != 0)
    return hm_remote_list(atomic_exchange_explicit(&s->remote, 0, memory_order_acquire));
  return span_carve(s);
}

static uint32_t list_length(const hm_block *list)
{
  uint32_t n = 0;
  for (; list != NULL; list = list->next)
    n++;
  return n;
}

bool hm_span_is_unused(const hm_span *s)
{
  size_t carved = atomic_load_explicit(&s->carved, memory_order_relaxed) / s->block_size;
  uint64_t remote = atomic_load_explicit(&s->remote, memory_order_acquire);
  return carved == (size_t)s->local_count + hm_remote_count(remote);
}

void hm_span_release(hm_span *s, hm_block *free_list)
{
  s->local_free = free_list;
  s->local_count = list_length(free_list);
  atomic_store_explicit(&s->owner, NULL, memory_order_relaxed);
  if (hm_span_is_unused(s)) {
    hm_arena_push_empty(s);
  } else if (free_list != NULL ||
             atomic_load_explicit(&s->carved, memory_order_relaxed) <
                 (size_t)s->capacity * s->block_size) {
    atomic_store_explicit(&s->state, HM_SPAN_LISTED, memory_order_relaxed);
    hm_arena_push_partial(s);
  } else {
    hm_span_detach(s, false);
  }
}

bool hm_span_detach(hm_span *s, bool keep_if_freed)
{
  atomic_store_explicit(&s->owner, NULL, memory_order_relaxed);
  /* Dekker with hm_span_free_remote: we publish DETACHED then look for
   * remote frees; a freer publishes its block then looks at the state. In
   * the seq_cst order one of the two sees the other, and the state CAS picks
   * exactly one of us to take care of the span. */
  atomic_store_explicit(&s->state, HM_SPAN_DETACHED, memory_order_seq_cst);
  if (atomic_load_explicit(&s->remote, memory_order_seq_cst) == 0)
    return false;
  uint32_t expected = HM_SPAN_DETACHED;
  uint32_t next = keep_if_freed ? HM_SPAN_OWNED : HM_SPAN_LISTED;
  if (!atomic_compare_exchange_strong_explicit(&s->state, &expected, next, memory_order_acq_rel,
                                               memory_order_relaxed))
    return false;
  if (keep_if_freed)
    return true;
  hm_arena_push_partial(s);
  return false;
}

void hm_span_free_remote(hm_span *s, hm_block *b)
{
  b->key = hm_free_key;
  uint64_t head = atomic_load_explicit(&s->remote, memory_order_relaxed);
  uint64_t next;
  do {
    b->next = hm_remote_list(head);
    next = (head & ~(((uint64_t)1 << HM_REMOTE_COUNT_SHIFT) - 1)) +
           ((uint64_t)1 << HM_REMOTE_COUNT_SHIFT) + (uintptr_t)b;
  } while (!atomic_compare_exchange_weak_explicit(&s->remote, &head, next, memory_order_seq_cst,
                                                  memory_order_relaxed));
  if (atomic_load_explicit(&s->state, memory_order_seq_cst) != HM_SPAN_DETACHED)
    return;
  uint32_t expected = HM_SPAN_DETACHED;
  if (atomic_compare_exchange_strong_explicit(&s->state, &expected, HM_SPAN_LISTED,
                                              memory_order_acq_rel, memory_order_relaxed))
    hm_arena_push_partial(s);
}

bool hm_block_list_contains(const hm_block *list, const hm_block *b)
{
  for (; list != NULL; list = list->next)
    if (list == b)
      return true;
  return false;
}
