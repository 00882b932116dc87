#include "span.h"

#include "arena.h"
#include "gate.h"
#include "heap.h"
#include "purge.h"

void hm_span_format(hm_span *s, unsigned cls, bool zeroed)
{
  s->zeroed = zeroed;
  uint32_t size = hm_class_size[cls];
  s->cls = (uint16_t)cls;
  s->block_size = size;
  s->divisor = hm_span_divisor(size);
  s->capacity = hm_class_capacity(cls);
  s->blocks = (uint8_t *)s + hm_class_offset(size);
  atomic_store_explicit(&s->carved, 0, memory_order_relaxed);
  s->bound = 0;
  s->local_free = NULL;
  s->local_counted = 0;
  hm_span_set_used(s, 0);
  atomic_store_explicit(&s->remote, 0, memory_order_relaxed);
  hm_span_unowned(s);
  atomic_store_explicit(&s->state, HM_SPAN_OWNED, memory_order_relaxed);
}

void hm_span_unowned(hm_span *s)
{
  s->queue = HM_Q_NONE;
  s->notify = HM_NOTIFY_NONE;
  s->gradual = false;
  s->qnext = s->qprev = NULL;
  atomic_store_explicit(&s->owner, 0, memory_order_relaxed);
}

/* Carves about a page worth of never-used blocks: touching the whole span at
 * once would make a span's worth of memory resident for one block. A
 * gradual span starts with 4 blocks and doubles: a per-request heap uses a
 * few blocks of many classes, and writing a page of free-list links for
 * each would cost it more than its allocations. Every key word is written:
 * stale bytes of an earlier use must not pass for hm_zero_key. */
static hm_block *span_carve(hm_span *s)
{
  size_t carved = atomic_load_explicit(&s->carved, memory_order_relaxed);
  uint32_t carved_blocks = hm_span_carved_blocks(s);
  uint32_t left = s->capacity - carved_blocks;
  if (left == 0)
    return NULL;
  uint32_t n = 4096 / s->block_size;
  if (n == 0)
    n = 1;
  if (s->gradual && n > 4 && carved_blocks < n)
    n = carved_blocks > 4 ? carved_blocks : 4;
  if (n > left)
    n = left;
  uint8_t *block = s->blocks + carved;
  hm_block *first = (hm_block *)block;
  uint64_t key = s->zeroed ? hm_zero_key : 0;
  for (uint32_t i = 0; i < n; i++, block += s->block_size) {
    ((hm_block *)block)->next = i + 1 < n ? (hm_block *)(block + s->block_size) : NULL;
    ((hm_block *)block)->key = key;
  }
  atomic_store_explicit(&s->carved, carved + (size_t)n * s->block_size, memory_order_relaxed);
  s->bound = hm_span_bound(s->block_size, carved_blocks + n);
  hm_span_set_used(s, hm_span_used(s) + n);
  s->collected = (uint16_t)n;
  return first;
}

hm_block *hm_span_collect(hm_span *s)
{
  hm_block *list = s->local_free;
  if (list != NULL) {
    s->local_free = NULL;
    s->local_counted = 0;
    uint32_t carved = hm_span_carved_blocks(s);
    s->collected = (uint16_t)(carved - hm_span_used(s));
    hm_span_set_used(s, carved);
    return list;
  }
  /* Reuse before carving: it keeps the resident set small. */
  list = hm_span_take_remote(s);
  return list != NULL ? list : span_carve(s);
}

hm_block *hm_span_take_remote(hm_span *s)
{
  if (hm_remote_list(atomic_load_explicit(&s->remote, memory_order_relaxed)) == NULL)
    return NULL;
  uint64_t head = atomic_exchange_explicit(&s->remote, 0, memory_order_acquire);
  s->collected = (uint16_t)hm_remote_count(head);
  if (head & HM_REMOTE_NOTIFY)
    s->notify = HM_NOTIFY_NONE; /* we took the flag off: nobody will deliver */
  else if (s->notify == HM_NOTIFY_ARMED)
    s->notify = HM_NOTIFY_PENDING; /* a freer took it: a delivery is coming */
  return hm_remote_list(head);
}

void hm_span_put_back(hm_span *s, hm_block *list)
{
  if (list == NULL)
    return;
  uint32_t n = 1;
  hm_block *tail = list;
  for (; tail->next != NULL; tail = tail->next)
    n++;
  tail->next = s->local_free;
  s->local_free = list;
  s->local_counted = (uint16_t)(s->local_counted + n);
  hm_span_set_used(s, hm_span_used(s) - n);
}

void hm_span_release(hm_span *s, hm_block *list)
{
  hm_span_put_back(s, list);
  if (hm_span_is_unused(s))
    hm_arena_push_empty(s);
  else
    hm_span_to_arena(s);
}

bool hm_span_is_unused(const hm_span *s)
{
  return hm_span_used(s) == hm_span_remote_count(s);
}

bool hm_span_arm(hm_span *s)
{
  uint64_t empty = 0;
  if (!atomic_compare_exchange_strong_explicit(&s->remote, &empty, HM_REMOTE_NOTIFY,
                                               memory_order_release, memory_order_relaxed))
    return false;
  s->notify = HM_NOTIFY_ARMED;
  return true;
}

bool hm_span_disarm(hm_span *s)
{
  if (s->notify == HM_NOTIFY_ARMED) {
    uint64_t head = atomic_load_explicit(&s->remote, memory_order_relaxed);
    while (head & HM_REMOTE_NOTIFY)
      if (atomic_compare_exchange_weak_explicit(&s->remote, &head, head & ~(uint64_t)HM_REMOTE_NOTIFY,
                                                memory_order_acquire, memory_order_relaxed)) {
        s->notify = HM_NOTIFY_NONE;
        return true;
      }
    s->notify = HM_NOTIFY_PENDING;
  }
  return s->notify == HM_NOTIFY_NONE;
}

void hm_span_to_arena(hm_span *s)
{
  s->queue = HM_Q_NONE;
  atomic_store_explicit(&s->owner, 0, memory_order_relaxed);
  uint32_t free_blocks = s->capacity - hm_span_used(s);
  uint64_t head = atomic_load_explicit(&s->remote, memory_order_relaxed);
  for (;;) {
    if (free_blocks + hm_remote_count(head) >= hm_span_wake_count(s)) {
      atomic_store_explicit(&s->state, HM_SPAN_LISTED, memory_order_relaxed);
      hm_arena_push_partial(s);
      return;
    }
    /* Too full to lend: the remote free that makes it worth it lists it.
     * The release orders the owner's store before the freer reads it. */
    atomic_store_explicit(&s->state, HM_SPAN_DETACHED, memory_order_relaxed);
    if (atomic_compare_exchange_weak_explicit(&s->remote, &head, head | HM_REMOTE_NOTIFY,
                                              memory_order_release, memory_order_relaxed))
      return;
  }
}

/* The freer took the notification off: the span goes where its owner
 * (a heap, or the arena for a detached span) will look. */
static void span_deliver(hm_span *s)
{
  hm_heap *owner = hm_span_owner(s);
  if (owner != NULL) {
    hm_heap_deliver(owner, s);
    return;
  }
  atomic_store_explicit(&s->state, HM_SPAN_LISTED, memory_order_relaxed);
  hm_arena_push_partial(s);
}

void hm_span_free_remote(hm_span *s, hm_block *b)
{
  /* `b` is in use, so the span cannot go away yet: read what the end needs. */
  uint32_t wake = hm_span_wake_count(s);
  bool arena_owned = atomic_load_explicit(&s->owner, memory_order_relaxed) == 0;
  uint32_t used = arena_owned ? hm_span_used(s) : 0;
  b->key = hm_free_key;
  uint64_t head = atomic_load_explicit(&s->remote, memory_order_relaxed);
  uint64_t next;
  bool deliver, gated = false;
  for (;;) {
    uint32_t count = hm_remote_count(head) + 1;
    deliver = (head & HM_REMOTE_NOTIFY) && count >= wake;
    /* A fork must not catch the span between this CAS and its delivery:
     * it would be in no list in the child. */
    if (deliver && !gated) {
      hm_gate_enter();
      gated = true;
    }
    b->next = hm_remote_list(head);
    next = (uint64_t)count << HM_REMOTE_COUNT_SHIFT | (uintptr_t)b |
           (deliver ? 0 : head & HM_REMOTE_NOTIFY);
    if (atomic_compare_exchange_weak_explicit(&s->remote, &head, next, memory_order_acq_rel,
                                              memory_order_relaxed))
      break;
  }
  if (deliver)
    span_deliver(s);
  if (gated)
    hm_gate_exit();
  /* From here on the span may be unused, given back and reused by another
   * thread: it is not touched again. */
  if (!deliver && arena_owned && used == hm_remote_count(next))
    hm_purge_note_idle(); /* in a partial list: the next pass gives it back */
}

bool hm_block_list_contains(const hm_block *list, const hm_block *b)
{
  for (; list != NULL; list = list->next)
    if (list == b)
      return true;
  return false;
}
