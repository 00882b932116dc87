#include "span.h"

#include <stddef.h>

#include "arena.h"
#include "purge.h"
#include "tcache.h"

void hm_span_format(hm_span *s, unsigned cls, bool zeroed)
{
  s->zeroed = zeroed;
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
  atomic_store_explicit(&s->local_count, 0, memory_order_relaxed);
  atomic_store_explicit(&s->remote, 0, memory_order_relaxed);
  atomic_store_explicit(&s->owner, NULL, memory_order_relaxed);
  atomic_store_explicit(&s->state, HM_SPAN_OWNED, memory_order_relaxed);
}

/* Carves about a page worth of never-used blocks: touching the whole span at
 * once would make a span's worth of memory resident for one block. Every
 * key word is written: stale bytes of an earlier use must not pass for
 * hm_zero_key. */
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
  uint64_t key = s->zeroed ? hm_zero_key : 0;
  for (size_t i = 0; i < n; i++, block += s->block_size) {
    ((hm_block *)block)->next = i + 1 < n ? (hm_block *)(block + s->block_size) : NULL;
    ((hm_block *)block)->key = key;
  }
  atomic_store_explicit(&s->carved, carved + n * s->block_size, memory_order_relaxed);
  return first;
}

hm_block *hm_span_collect(hm_span *s)
{
  hm_block *list = s->local_free;
  if (list != NULL) {
    s->local_free = NULL;
    atomic_store_explicit(&s->local_count, 0, memory_order_relaxed);
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

static bool unused_with(const hm_span *s, size_t local, uint64_t remote)
{
  size_t carved = atomic_load_explicit(&s->carved, memory_order_relaxed) / s->block_size;
  return carved == local + hm_remote_count(remote);
}

bool hm_span_is_unused(const hm_span *s)
{
  return unused_with(s, atomic_load_explicit(&s->local_count, memory_order_relaxed),
                     atomic_load_explicit(&s->remote, memory_order_acquire));
}

bool hm_span_owner_unused(const hm_span *s, const hm_block *free_list)
{
  return unused_with(s, list_length(free_list),
                     atomic_load_explicit(&s->remote, memory_order_acquire));
}

void hm_span_release(hm_span *s, hm_block *free_list)
{
  s->local_free = free_list;
  atomic_store_explicit(&s->local_count, list_length(free_list), memory_order_relaxed);
  atomic_store_explicit(&s->owner, NULL, memory_order_relaxed);
  if (hm_span_is_unused(s)) {
    hm_arena_give_back(s);
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
  /* The detached mark goes in the remote word, so that it and a remote free
   * are ordered by the word itself: the mark lands only on an empty list,
   * and the freer whose CAS removes it takes the span over. */
  atomic_store_explicit(&s->state, HM_SPAN_DETACHED, memory_order_relaxed);
  uint64_t empty = 0;
  if (atomic_compare_exchange_strong_explicit(&s->remote, &empty, HM_REMOTE_DETACHED,
                                              memory_order_release, memory_order_relaxed))
    return false;
  /* Blocks came back meanwhile: the span is not full any more. */
  atomic_store_explicit(&s->state, keep_if_freed ? HM_SPAN_OWNED : HM_SPAN_LISTED,
                        memory_order_relaxed);
  if (keep_if_freed)
    return true;
  hm_arena_push_partial(s);
  return false;
}

void hm_span_free_remote(hm_span *s, hm_block *b)
{
  /* `b` is in use, so the span cannot go away yet: read what the end needs. */
  size_t local = atomic_load_explicit(&s->local_count, memory_order_relaxed);
  size_t carved = atomic_load_explicit(&s->carved, memory_order_relaxed) / s->block_size;
  b->key = hm_free_key;
  uint64_t head = atomic_load_explicit(&s->remote, memory_order_relaxed);
  uint64_t next;
  do {
    b->next = hm_remote_list(head);
    next = (uint64_t)(hm_remote_count(head) + 1) << HM_REMOTE_COUNT_SHIFT | (uintptr_t)b;
  } while (!atomic_compare_exchange_weak_explicit(&s->remote, &head, next, memory_order_acq_rel,
                                                  memory_order_relaxed));
  if (head & HM_REMOTE_DETACHED) {
    /* We took the detached mark off: the span is ours to list, and nobody
     * else can reach it until it is. */
    atomic_store_explicit(&s->state, HM_SPAN_LISTED, memory_order_relaxed);
    hm_arena_push_partial(s);
    return;
  }
  /* From here on the span may be unused, given back and reused by another
   * thread: it is not touched again. */
  if (carved == local + hm_remote_count(next))
    hm_purge_note_idle(); /* in a partial list: the next pass gives it back */
}

bool hm_block_list_contains(const hm_block *list, const hm_block *b)
{
  for (; list != NULL; list = list->next)
    if (list == b)
      return true;
  return false;
}
