/* Spans, driven directly as a heap or the arena would: carving and
 * hm_span_is_block, `used` accounting, collect order, the remote list,
 * arming, delivery of a parked span (to a heap's inbox or the arena's
 * partial stack), the notify states, letting go to the arena with its
 * hysteresis, and two races: a remote freer against hm_span_to_arena, and
 * many remote freers against an owner that collects and re-arms. */
#include <string.h>

#include "arena.h"
#include "heap.h"
#include "hmalloc.h"
#include "unit.h"
#include "unit_region.h"
#include "unit_span.h"

static hm_arena *arena;
/* The main thread's heap: the owner the spans name when a heap owns them.
 * The main thread takes no slow path while one of them may be on its
 * inbox (take_inbox empties it first). */
static hm_heap *heap;

/* How many times `s` is on the partial stack of class `cls`. */
static unsigned times_listed_in(const hm_span *s, unsigned cls)
{
  return unit_times_on(&arena->partial[cls].stack, s);
}

static unsigned times_listed(const hm_span *s)
{
  return times_listed_in(s, s->cls);
}

static bool flag_set(const hm_span *s)
{
  return (unit_remote_word(s) & HM_REMOTE_NOTIFY) != 0;
}

/* As a heap owns a span: its owner word and its queue. */
static void own(hm_span *s, uintptr_t owner, enum hm_span_queue queue)
{
  atomic_store(&s->owner, owner);
  atomic_store(&s->state, HM_SPAN_OWNED);
  s->queue = (uint8_t)queue;
}

/* What drain_inbox does with a delivery: the inbox, taken whole, must hold
 * `s` alone; the owner's notification is over. Returns whether it did. */
static bool take_inbox(hm_span *s)
{
  hm_span *got = atomic_exchange(&heap->inbox, NULL);
  if (got == NULL)
    return false;
  CHECK(got == s, "the heap's inbox holds %p, expected span %p", (void *)got, (void *)s);
  CHECK(atomic_load(&s->link.next) == NULL, "span %p is on the inbox with %p after it", (void *)s,
        (void *)atomic_load(&s->link.next));
  s->notify = HM_NOTIFY_NONE;
  return true;
}

/* Checks the blocks `list` carves after the `done` blocks carved already:
 * each at its slot, in order. Returns how many. */
static size_t check_carved(const hm_span *s, const hm_block *list, size_t done)
{
  size_t size = s->block_size, cap = hm_class_capacity(s->cls);
  size_t per_carve = 4096 / size ? 4096 / size : 1; /* about a page at a time */
  size_t n = 0;
  for (const hm_block *b = list; b != NULL; b = b->next, n++) {
    const uint8_t *expected = s->blocks + (done + n) * size;
    CHECK(done + n < cap, "class %u: more than %zu blocks carved", s->cls, cap);
    CHECK((const uint8_t *)b == expected, "class %u: block %zu at %p, expected %p", s->cls,
          done + n, (const void *)b, (const void *)expected);
    CHECK(((uintptr_t)b & (HM_MIN_ALIGN - 1)) == 0, "block %p not 16-aligned", (const void *)b);
  }
  CHECK(n >= 1 && n <= per_carve, "class %u: carved %zu blocks at once (at most %zu)", s->cls, n,
        per_carve);
  CHECK(hm_span_used(s) == done + n && hm_span_carved_blocks(s) == done + n,
        "class %u: %zu blocks carved, used %u, carved %u", s->cls, done + n, hm_span_used(s),
        hm_span_carved_blocks(s));
  return n;
}

/* hm_span_is_block is true exactly for the starts of carved blocks, over
 * the header, every carved byte and the uncarved rest of the span. */
static void check_is_block(const hm_span *s, size_t carved)
{
  size_t size = s->block_size;
  const uint8_t *span_end = (const uint8_t *)s + (size_t)s->granules * HM_GRANULE;
  for (const uint8_t *p = (const uint8_t *)s; p < span_end; p++) {
    ptrdiff_t off = p - s->blocks;
    bool expected = off >= 0 && (size_t)off < carved * size && (size_t)off % size == 0;
    CHECK(hm_span_is_block(s, p) == expected,
          "class %u, %zu carved: hm_span_is_block(offset %td) is %d", s->cls, carved, off,
          !expected);
  }
}

/* Collects every block left in `s` into blocks[done..]: the span is full
 * after. Returns how many blocks were taken in all. */
static size_t drain(hm_span *s, hm_block **blocks, size_t done)
{
  for (hm_block *list; (list = hm_span_collect(s)) != NULL;) {
    check_carved(s, list, done);
    for (hm_block *b = list; b != NULL; b = b->next)
      blocks[done++] = b;
  }
  size_t cap = hm_class_capacity(s->cls);
  CHECK(done == cap, "class %u: %zu blocks from a span of %zu", s->cls, done, cap);
  CHECK(hm_span_collect(s) == NULL, "collect of a full span of class %u returned a block", s->cls);
  CHECK(hm_span_used(s) == cap, "class %u: full span has used %u of %zu", s->cls, hm_span_used(s),
        cap);
  return done;
}

/* Links blocks[0..n) into a list, in order. */
static hm_block *link_blocks(hm_block **blocks, size_t n)
{
  for (size_t i = 0; i < n; i++)
    blocks[i]->next = i + 1 < n ? blocks[i + 1] : NULL;
  return n ? blocks[0] : NULL;
}

static size_t list_length(const hm_block *list)
{
  size_t n = 0;
  for (; list != NULL; list = list->next)
    n++;
  return n;
}

static void check_list(const hm_block *list, hm_block *const *expected, size_t n, const char *what)
{
  for (size_t i = 0; i < n; i++, list = list->next)
    CHECK(list == expected[i], "%s: element %zu is %p, expected %p", what, i, (const void *)list,
          (const void *)expected[i]);
  CHECK(list == NULL, "%s: longer than %zu", what, n);
}

/* Span `s` (of class `cls`, `granules` long), every block of it free, was
 * let go: onto its class's empty stack, owned by nobody, with its free
 * blocks, where a purge pass or the next span of the class finds it (or,
 * if it went straight back to its region, with no page-map entry). Either
 * way it ends given back, so that the next span of the class forms afresh,
 * and the arena's stacks stay empty between checks. */
static void check_let_go_unused(hm_span *s, unsigned cls, unsigned granules, const char *what)
{
  CHECK(times_listed_in(s, cls) == 0, "%s: unused span %p is on the partial stack", what,
        (void *)s);
  if (hm_pagemap_header(s) != s) {
    unit_check_given_back(s, granules, what);
    return;
  }
  CHECK(atomic_load(&s->state) == HM_SPAN_EMPTY && unit_times_on(&arena->empty[cls].stack, s) == 1,
        "%s: unused span %p let go has state %u, is on the empty stack %u times", what, (void *)s,
        atomic_load(&s->state), unit_times_on(&arena->empty[cls].stack, s));
  CHECK(atomic_load(&s->owner) == 0 && s->queue == HM_Q_NONE && s->notify == HM_NOTIFY_NONE &&
            hm_span_is_unused(s) && !flag_set(s) && s->cls == cls,
        "%s: empty span %p: owner %#lx queue %u notify %u used %u remote %#lx", what, (void *)s,
        (unsigned long)atomic_load(&s->owner), s->queue, s->notify, hm_span_used(s),
        (unsigned long)unit_remote_word(s));
  CHECK((hm_span *)hm_stack_pop(&arena->empty[cls].stack) == s,
        "%s: empty span %p is not on top of its stack", what, (void *)s);
  hm_arena_give_back(s);
  unit_check_given_back(s, granules, what);
}

/* The owner lets go of a span with every block of it free (`blocks`, its
 * `n` carved blocks). */
static void release_all(hm_span *s, hm_block **blocks, size_t n, const char *what)
{
  unsigned granules = s->granules, cls = s->cls;
  hm_span_release(s, link_blocks(blocks, n));
  check_let_go_unused(s, cls, granules, what);
}

/* A new span of the class, as the arena forms it (this test gives every
 * span it empties back to its region, so none waits on an empty stack). */
static hm_span *take_fresh(unsigned cls)
{
  hm_span *s = hm_arena_take_span(arena, cls, false);
  CHECK(s != NULL && s->cls == cls, "hm_arena_take_span(%u, false) failed", cls);
  CHECK(atomic_load(&s->owner) == 0 && atomic_load(&s->state) == HM_SPAN_OWNED &&
            s->queue == HM_Q_NONE && s->notify == HM_NOTIFY_NONE && unit_remote_word(s) == 0 &&
            hm_span_used(s) == 0 && s->local_free == NULL,
        "fresh span %p of class %u: owner %#lx state %u queue %u notify %u "
        "remote %#lx used %u",
        (void *)s, cls, (unsigned long)atomic_load(&s->owner), atomic_load(&s->state), s->queue,
        s->notify, (unsigned long)unit_remote_word(s), hm_span_used(s));
  atomic_store(&s->state, HM_SPAN_OWNED); /* as a heap takes it */
  return s;
}

/* A fresh span of the class with every block taken (into `blocks`). */
static hm_span *take_full(unsigned cls, hm_block **blocks)
{
  hm_span *s = take_fresh(cls);
  drain(s, blocks, 0);
  return s;
}

/* Frees blocks[from..to) of `s` remotely. */
static void free_remote_range(hm_span *s, hm_block **blocks, size_t from, size_t to)
{
  for (size_t i = from; i < to; i++)
    hm_span_free_remote(s, blocks[i]);
}

/* Ends a test with span `s`, whichever its owner: the `n` blocks the test
 * still holds are freed remotely, a delivery is taken in, the span taken
 * off the arena's stack, and then, every block being free, given back. */
static void finish(hm_span *s, hm_block **held, size_t n, const char *what)
{
  free_remote_range(s, held, 0, n);
  take_inbox(s);
  if (atomic_load(&s->state) == HM_SPAN_LISTED) {
    CHECK(times_listed(s) == 1, "%s: listed span %p is on its stack %u times", what, (void *)s,
          times_listed(s));
    CHECK(hm_arena_take_span(arena, s->cls, true) == s, "%s: listed span %p not taken", what,
          (void *)s);
  }
  if (s->notify == HM_NOTIFY_ARMED)
    CHECK(hm_span_disarm(s), "%s: disarm of span %p with every block free failed", what, (void *)s);
  CHECK(hm_span_is_unused(s), "%s: span %p not unused (used %u, remote %u)", what, (void *)s,
        hm_span_used(s), hm_span_remote_count(s));
  unsigned granules = s->granules, cls = s->cls;
  atomic_store(&s->owner, 0);
  hm_span_release(s, NULL);
  check_let_go_unused(s, cls, granules, what);
}

static hm_block *blocks[HM_GRANULE / 16];

static void check_format_and_carve(void)
{
  for (unsigned cls = 0; cls < HM_CLASSES; cls++) {
    hm_span *s = take_fresh(cls);
    hm_span_format(s, cls, s->zeroed); /* formatting again is harmless */
    check_is_block(s, 0);
    hm_block *first = hm_span_collect(s);
    size_t n = check_carved(s, first, 0);
    check_is_block(s, n);
    for (size_t i = 0; i < n; i++, first = first->next)
      blocks[i] = first;
    size_t all = drain(s, blocks, n);
    check_is_block(s, all);
    release_all(s, blocks, all, "a drained span released with every block free");
  }
  UNIT_PASS("format/collect: every class carves distinct, spaced, in-bounds "
            "blocks, then NULL;"
            " used == blocks carved");
  UNIT_PASS("hm_span_is_block exact over header, carved and uncarved bytes");
}

/* `used` counts the carved blocks that are not on the local list, those on
 * the remote list included; the span is unused when they are all remote. */
static void check_used(void)
{
  enum { CLS = 23, LOCAL = 10 };
  hm_span *s = take_full(CLS, blocks);
  size_t cap = hm_class_capacity(CLS);
  hm_span_put_back(s, link_blocks(blocks, LOCAL));
  CHECK(hm_span_used(s) == cap - LOCAL && s->local_free == blocks[0],
        "put back %d of %zu: used %u, local list at %p", LOCAL, cap, hm_span_used(s),
        (void *)s->local_free);
  CHECK(!hm_span_is_unused(s), "unused with %d of %zu blocks free", LOCAL, cap);
  for (size_t i = LOCAL; i < cap; i++) {
    CHECK(!hm_span_is_unused(s), "unused with %zu of %zu blocks free", i, cap);
    hm_span_free_remote(s, blocks[i]);
    CHECK(hm_span_used(s) == cap - LOCAL && hm_span_remote_count(s) == i + 1 - LOCAL,
          "after %zu remote frees: used %u, remote count %u", i + 1 - LOCAL, hm_span_used(s),
          hm_span_remote_count(s));
  }
  CHECK(hm_span_is_unused(s), "not unused with every block free (used %u, remote %u)",
        hm_span_used(s), hm_span_remote_count(s));
  /* The local list taken: its blocks count as used again. */
  check_list(hm_span_collect(s), blocks, LOCAL, "collect with local and remote blocks");
  CHECK(hm_span_used(s) == cap && hm_span_remote_count(s) == cap - LOCAL && !hm_span_is_unused(s),
        "after collecting the local list: used %u (expected %zu), remote %u", hm_span_used(s), cap,
        hm_span_remote_count(s));
  hm_span_put_back(s, link_blocks(blocks + 3, 2));
  CHECK(hm_span_used(s) == cap - 2, "put back 2: used %u, expected %zu", hm_span_used(s), cap - 2);
  hm_span_put_back(s, NULL);
  CHECK(hm_span_used(s) == cap - 2, "put back of nothing changed used to %u", hm_span_used(s));
  /* The rest of the local list back: unused again, given back. */
  hm_span_put_back(s, link_blocks(blocks, 3));
  hm_span_put_back(s, link_blocks(blocks + 5, LOCAL - 5));
  CHECK(hm_span_used(s) == cap - LOCAL && hm_span_is_unused(s),
        "every block free again: used %u, remote %u", hm_span_used(s), hm_span_remote_count(s));
  unsigned granules = s->granules;
  hm_span_release(s, NULL);
  check_let_go_unused(s, CLS, granules, "an unused span released");
  UNIT_PASS("used: == blocks carved after collect, put_back subtracts the list "
            "length, "
            "unused iff used == remote count");
}

/* The owner's collect takes its own frees first, then the remote list
 * (newest first), and carves only when both are empty. */
static void check_collect_order(void)
{
  enum { CLS = 3 };
  hm_span *s = take_fresh(CLS);
  size_t n = check_carved(s, hm_span_collect(s), 0);
  {
    hm_block *b = (hm_block *)s->blocks;
    for (size_t i = 0; i < n; i++, b = b->next)
      blocks[i] = b;
  }
  blocks[0]->next = NULL;
  hm_span_put_back(s, blocks[0]);
  hm_span_free_remote(s, blocks[5]);
  hm_span_free_remote(s, blocks[9]);
  check_list(hm_span_collect(s), blocks, 1, "collect with a local and 2 remote blocks");
  CHECK(hm_span_remote_count(s) == 2 && hm_span_used(s) == n,
        "collect of the local list touched the remote list (count %u) or used "
        "(%u)",
        hm_span_remote_count(s), hm_span_used(s));
  hm_block *expected[] = {blocks[9], blocks[5]};
  check_list(hm_span_collect(s), expected, 2, "collect with 2 remote blocks");
  CHECK(unit_remote_word(s) == 0 && hm_span_used(s) == n && hm_span_carved_blocks(s) == n,
        "after taking the remote list: remote %#lx, used %u, carved %u",
        (unsigned long)unit_remote_word(s), hm_span_used(s), hm_span_carved_blocks(s));
  hm_block *more = hm_span_collect(s);
  size_t m = check_carved(s, more, n);
  for (size_t i = 0; i < m; i++, more = more->next)
    blocks[n + i] = more;
  release_all(s, blocks, n + m, "collect order");
  UNIT_PASS("collect order: local list, then remote list (newest first), then "
            "carving");
}

/* Blocks freed by other threads are pushed and counted in one word. */
static void check_remote_free(void)
{
  enum { CLS = 3 };
  hm_span *s = take_full(CLS, blocks);
  own(s, (uintptr_t)heap, HM_Q_ACTIVE);
  hm_block *freed[] = {blocks[5], blocks[9], blocks[2]};
  for (size_t i = 0; i < 3; i++) {
    hm_span_free_remote(s, freed[i]);
    CHECK(freed[i]->key == hm_free_key, "remote-freed block %p not marked free", (void *)freed[i]);
    uint64_t remote = unit_remote_word(s);
    CHECK(hm_remote_list(remote) == freed[i] && hm_remote_count(remote) == i + 1 &&
              !(remote & HM_REMOTE_NOTIFY),
          "after %zu remote frees the list starts at %p and counts %u (word "
          "%#lx)",
          i + 1, (void *)hm_remote_list(remote), hm_remote_count(remote), (unsigned long)remote);
  }
  CHECK(atomic_load(&s->state) == HM_SPAN_OWNED && times_listed(s) == 0 &&
            atomic_load(&heap->inbox) == NULL && hm_span_used(s) == hm_class_capacity(CLS),
        "remote frees into an unarmed owned span: state %u, listed %u, inbox "
        "%p, used %u",
        atomic_load(&s->state), times_listed(s), (void *)atomic_load(&heap->inbox),
        hm_span_used(s));
  hm_block *expected[] = {freed[2], freed[1], freed[0]};
  check_list(hm_span_collect(s), expected, 3, "collect after 3 remote frees");
  CHECK(unit_remote_word(s) == 0, "the remote list is not empty once collected");
  CHECK(hm_span_collect(s) == NULL, "collect after taking the remote list returned a block");
  release_all(s, blocks, hm_class_capacity(CLS), "remote free");
  UNIT_PASS("remote frees push and count in one word; the owner collects them "
            "newest first");
}

enum { WCLS = 30 }; /* 68 blocks a span: the wake count is 8 */

static void check_arm(void)
{
  hm_span *s = take_full(WCLS, blocks);
  own(s, (uintptr_t)heap | HM_OWNER_PARKED, HM_Q_FULL);
  CHECK(hm_span_arm(s), "arm of a full span with an empty remote list failed");
  CHECK(unit_remote_word(s) == HM_REMOTE_NOTIFY && s->notify == HM_NOTIFY_ARMED,
        "armed: remote %#lx notify %u", (unsigned long)unit_remote_word(s), s->notify);
  CHECK(!hm_span_arm(s) && unit_remote_word(s) == HM_REMOTE_NOTIFY && s->notify == HM_NOTIFY_ARMED,
        "arm of an armed span: remote %#lx notify %u", (unsigned long)unit_remote_word(s),
        s->notify);
  CHECK(hm_span_disarm(s) && unit_remote_word(s) == 0 && s->notify == HM_NOTIFY_NONE,
        "disarm: remote %#lx notify %u", (unsigned long)unit_remote_word(s), s->notify);
  hm_span_free_remote(s, blocks[0]);
  uint64_t before = unit_remote_word(s);
  CHECK(!hm_span_arm(s), "arm with a block on the remote list succeeded");
  CHECK(unit_remote_word(s) == before && s->notify == HM_NOTIFY_NONE,
        "a failed arm changed remote %#lx to %#lx / notify to %u", (unsigned long)before,
        (unsigned long)unit_remote_word(s), s->notify);
  check_list(hm_span_collect(s), blocks, 1, "collect after a failed arm");
  CHECK(hm_span_arm(s), "arm after collecting failed");
  finish(s, blocks, hm_class_capacity(WCLS), "arm");
  UNIT_PASS("arm: sets HM_REMOTE_NOTIFY and ARMED on an empty remote word, "
            "fails otherwise");
}

/* Remote frees into a parked span of a heap: the one that brings the count
 * to the wake count takes the flag off and puts the span on the heap's
 * inbox, once; `owner` with or without HM_OWNER_PARKED. */
static void check_wake_to_heap(void)
{
  hm_span *s = take_full(WCLS, blocks);
  size_t cap = hm_class_capacity(WCLS);
  uint32_t wake = hm_span_wake_count(s);
  CHECK(wake == cap / 8 && wake >= 2, "class %d: wake count %u for %zu blocks", WCLS, wake, cap);
  uintptr_t owners[] = {(uintptr_t)heap | HM_OWNER_PARKED, (uintptr_t)heap};
  for (int round = 0; round < 2; round++) {
    own(s, owners[round], round == 0 ? HM_Q_FULL : HM_Q_PARTIAL);
    CHECK(hm_span_arm(s), "round %d: arm failed", round);
    for (uint32_t i = 0; i + 1 < wake; i++) {
      hm_span_free_remote(s, blocks[i]);
      CHECK(flag_set(s) && hm_span_remote_count(s) == i + 1 && atomic_load(&heap->inbox) == NULL &&
                s->notify == HM_NOTIFY_ARMED,
            "round %d, %u of %u frees: remote %#lx, inbox %p, notify %u", round, i + 1, wake,
            (unsigned long)unit_remote_word(s), (void *)atomic_load(&heap->inbox), s->notify);
    }
    hm_span_free_remote(s, blocks[wake - 1]);
    CHECK(!flag_set(s) && hm_span_remote_count(s) == wake,
          "round %d: wake-count free left "
          "remote %#lx",
          round, (unsigned long)unit_remote_word(s));
    CHECK(atomic_load(&heap->inbox) == s && atomic_load(&s->link.next) == NULL,
          "round %d: after %u frees the inbox holds %p (expected span %p alone)", round, wake,
          (void *)atomic_load(&heap->inbox), (void *)s);
    CHECK(atomic_load(&s->owner) == owners[round] && atomic_load(&s->state) == HM_SPAN_OWNED &&
              times_listed(s) == 0,
          "round %d: delivery changed owner to %#lx / state to %u, or listed "
          "the span",
          round, (unsigned long)atomic_load(&s->owner), atomic_load(&s->state));
    free_remote_range(s, blocks, wake, cap);
    CHECK(atomic_load(&heap->inbox) == s && atomic_load(&s->link.next) == NULL && !flag_set(s),
          "round %d: frees past the wake count delivered again (inbox %p, next "
          "%p)",
          round, (void *)atomic_load(&heap->inbox), (void *)atomic_load(&s->link.next));
    CHECK(take_inbox(s), "round %d: the inbox is empty", round);
    hm_block *list = hm_span_collect(s);
    CHECK(list_length(list) == cap && list == blocks[cap - 1],
          "round %d: collect after delivery took %zu blocks", round, list_length(list));
    CHECK(s->notify == HM_NOTIFY_NONE, "round %d: notify %u after collecting", round, s->notify);
    CHECK(hm_span_collect(s) == NULL, "round %d: span not full after collecting", round);
  }
  finish(s, blocks, cap, "wake to heap");
  UNIT_PASS("a parked span is delivered to its heap's inbox by the "
            "wake-count-th remote free, "
            "exactly once");
}

/* The same for a detached span of the arena (owner 0): listed on the
 * arena's partial stack, where a heap takes it. */
static void check_wake_to_arena(void)
{
  hm_span *s = take_full(WCLS, blocks);
  size_t cap = hm_class_capacity(WCLS);
  uint32_t wake = hm_span_wake_count(s);
  own(s, 0, HM_Q_NONE);
  atomic_store(&s->state, HM_SPAN_DETACHED);
  CHECK(hm_span_arm(s), "arm of an arena span failed");
  for (uint32_t i = 0; i + 1 < wake; i++) {
    hm_span_free_remote(s, blocks[i]);
    CHECK(flag_set(s) && atomic_load(&s->state) == HM_SPAN_DETACHED && times_listed(s) == 0,
          "%u of %u frees: remote %#lx, state %u, listed %u", i + 1, wake,
          (unsigned long)unit_remote_word(s), atomic_load(&s->state), times_listed(s));
  }
  hm_span_free_remote(s, blocks[wake - 1]);
  CHECK(!flag_set(s) && atomic_load(&s->state) == HM_SPAN_LISTED && times_listed(s) == 1 &&
            atomic_load(&heap->inbox) == NULL,
        "wake-count free of a detached span: remote %#lx, state %u, listed %u, "
        "inbox %p",
        (unsigned long)unit_remote_word(s), atomic_load(&s->state), times_listed(s),
        (void *)atomic_load(&heap->inbox));
  free_remote_range(s, blocks, wake, wake + 2);
  CHECK(times_listed(s) == 1 && atomic_load(&s->state) == HM_SPAN_LISTED,
        "more frees listed the span %u times", times_listed(s));
  CHECK(hm_arena_take_span(arena, WCLS, true) == s, "the listed span was not taken");
  CHECK(times_listed(s) == 0, "the span is still listed after it was taken");
  atomic_store(&s->state, HM_SPAN_OWNED); /* as a heap takes it */
  s->notify = HM_NOTIFY_NONE;
  hm_block *list = hm_span_collect(s);
  CHECK(list_length(list) == wake + 2, "collect took %zu blocks, %u were freed", list_length(list),
        wake + 2);
  finish(s, blocks, cap, "wake to arena");
  UNIT_PASS("a detached span is listed by the wake-count-th remote free, "
            "exactly once");
}

/* The owner's exchange of the remote word tells it where the notification
 * is: with the flag in it, the owner took it off (nobody will deliver);
 * without it while armed, a freer took it (a delivery is on its way). */
static void check_take_remote_flags(void)
{
  hm_span *s = take_full(WCLS, blocks);
  size_t cap = hm_class_capacity(WCLS);
  uint32_t wake = hm_span_wake_count(s);
  own(s, (uintptr_t)heap | HM_OWNER_PARKED, HM_Q_FULL);
  for (int via_collect = 0; via_collect < 2; via_collect++) {
    hm_block *(*take)(hm_span *) = via_collect ? hm_span_collect : hm_span_take_remote;
    const char *how = via_collect ? "collect" : "take_remote";
    /* An empty list is not exchanged: the flag stays. */
    CHECK(hm_span_arm(s), "%s: arm failed", how);
    CHECK(take(s) == NULL && unit_remote_word(s) == HM_REMOTE_NOTIFY &&
              s->notify == HM_NOTIFY_ARMED,
          "%s of an armed empty span: remote %#lx notify %u", how,
          (unsigned long)unit_remote_word(s), s->notify);
    /* The owner takes the flag off with the list. */
    hm_span_free_remote(s, blocks[0]);
    check_list(take(s), blocks, 1, "one block after arming");
    CHECK(unit_remote_word(s) == 0 && s->notify == HM_NOTIFY_NONE,
          "%s of a word with the flag: remote %#lx notify %u (expected 0, NONE)", how,
          (unsigned long)unit_remote_word(s), s->notify);
    /* A freer took it: PENDING, and stays so until the delivery is in. */
    CHECK(hm_span_arm(s), "%s: second arm failed", how);
    free_remote_range(s, blocks, 0, wake);
    CHECK(atomic_load(&heap->inbox) == s, "%s: no delivery after %u frees", how, wake);
    CHECK(list_length(take(s)) == wake && s->notify == HM_NOTIFY_PENDING,
          "%s of a word without the flag while armed: notify %u (expected "
          "PENDING)",
          how, s->notify);
    hm_span_free_remote(s, blocks[0]);
    CHECK(list_length(take(s)) == 1 && s->notify == HM_NOTIFY_PENDING,
          "%s while PENDING changed notify to %u", how, s->notify);
    CHECK(take_inbox(s), "%s: the delivery is gone", how);
    /* Not armed: nothing changes. */
    hm_span_free_remote(s, blocks[1]);
    CHECK(list_length(take(s)) == 1 && s->notify == HM_NOTIFY_NONE,
          "%s of a word without the flag while not armed: notify %u", how, s->notify);
  }
  finish(s, blocks, cap, "take_remote flags");
  UNIT_PASS("collect/take_remote: exchanging the flag -> NONE; a word without "
            "it while "
            "ARMED -> PENDING; an empty list keeps the flag");
}

static void check_disarm(void)
{
  hm_span *s = take_full(WCLS, blocks);
  size_t cap = hm_class_capacity(WCLS);
  uint32_t wake = hm_span_wake_count(s);
  own(s, (uintptr_t)heap | HM_OWNER_PARKED, HM_Q_FULL);
  CHECK(hm_span_disarm(s) && unit_remote_word(s) == 0 && s->notify == HM_NOTIFY_NONE,
        "disarm of an unarmed span: remote %#lx notify %u", (unsigned long)unit_remote_word(s),
        s->notify);
  /* Armed, with blocks on the list below the wake count: the flag comes
   * off, the list stays, and no later free delivers. */
  CHECK(hm_span_arm(s), "arm failed");
  free_remote_range(s, blocks, 0, 3);
  uint64_t before = unit_remote_word(s);
  CHECK(hm_span_disarm(s), "disarm with the flag present failed");
  CHECK(unit_remote_word(s) == (before & ~(uint64_t)HM_REMOTE_NOTIFY) &&
            hm_span_remote_count(s) == 3 && s->notify == HM_NOTIFY_NONE,
        "disarm: remote %#lx -> %#lx, notify %u", (unsigned long)before,
        (unsigned long)unit_remote_word(s), s->notify);
  free_remote_range(s, blocks, 3, 3 + wake);
  CHECK(atomic_load(&heap->inbox) == NULL, "a disarmed span was delivered");
  CHECK(list_length(hm_span_collect(s)) == 3 + wake, "collect after disarm lost blocks");
  /* A freer took the flag: false, PENDING, until the delivery is in. */
  CHECK(hm_span_arm(s), "second arm failed");
  free_remote_range(s, blocks, 0, wake);
  CHECK(!hm_span_disarm(s) && s->notify == HM_NOTIFY_PENDING,
        "disarm after a freer took the flag: notify %u (expected PENDING, false)", s->notify);
  CHECK(!hm_span_disarm(s) && s->notify == HM_NOTIFY_PENDING,
        "second disarm while PENDING: notify %u", s->notify);
  CHECK(hm_span_remote_count(s) == wake && !flag_set(s), "disarm changed the remote word %#lx",
        (unsigned long)unit_remote_word(s));
  CHECK(take_inbox(s), "no delivery after the freer took the flag");
  CHECK(hm_span_disarm(s), "disarm after the delivery came in failed");
  finish(s, blocks + wake, cap - wake, "disarm");
  UNIT_PASS("disarm: ARMED with the flag -> true, flag off, NONE; after a "
            "freer took it -> "
            "false, PENDING");
}

/* The owner lets go of a span it holds blocks of, to the arena: listed if
 * an eighth of it is free (local, uncarved or remote), else detached with
 * the flag set, listed by the remote free that brings the remote list to
 * the wake count. */
static void check_to_arena(void)
{
  size_t cap = hm_class_capacity(WCLS);
  uint32_t wake = hm_class_capacity(WCLS) / 8;
  struct {
    const char *what;
    uint32_t local, remote; /* free blocks of each kind when it is let go */
  } cases[] = {
      {"full", 0, 0},
      {"remote one short of the wake count", 0, wake - 1},
      {"an eighth free on the local list", wake, 0},
      {"an eighth free on the remote list", 0, wake},
      {"half free", 2, cap / 2},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const char *what = cases[c].what;
    uint32_t local = cases[c].local, remote = cases[c].remote;
    hm_span *s = take_full(WCLS, blocks);
    own(s, (uintptr_t)heap, HM_Q_PARTIAL);
    hm_span_put_back(s, link_blocks(blocks, local));
    free_remote_range(s, blocks, local, local + remote);
    hm_span_to_arena(s);
    CHECK(atomic_load(&s->owner) == 0 && s->queue == HM_Q_NONE, "%s: let go, owner %#lx queue %u",
          what, (unsigned long)atomic_load(&s->owner), s->queue);
    CHECK(hm_span_remote_count(s) == remote, "%s: the remote list counts %u, expected %u", what,
          hm_span_remote_count(s), remote);
    size_t next = local + remote;
    if (local + remote >= wake) {
      CHECK(atomic_load(&s->state) == HM_SPAN_LISTED && times_listed(s) == 1 && !flag_set(s),
            "%s: state %u, listed %u, remote %#lx (expected listed once, no "
            "flag)",
            what, atomic_load(&s->state), times_listed(s), (unsigned long)unit_remote_word(s));
    } else {
      CHECK(atomic_load(&s->state) == HM_SPAN_DETACHED && times_listed(s) == 0 && flag_set(s),
            "%s: state %u, listed %u, remote %#lx (expected detached, flag set)", what,
            atomic_load(&s->state), times_listed(s), (unsigned long)unit_remote_word(s));
      /* Hysteresis: one free does not list it unless it completes the count. */
      while (hm_span_remote_count(s) + 1 < wake) {
        hm_span_free_remote(s, blocks[next++]);
        CHECK(atomic_load(&s->state) == HM_SPAN_DETACHED && times_listed(s) == 0 && flag_set(s),
              "%s: listed after %u of %u remote frees", what, hm_span_remote_count(s), wake);
      }
      hm_span_free_remote(s, blocks[next++]);
      CHECK(atomic_load(&s->state) == HM_SPAN_LISTED && times_listed(s) == 1 && !flag_set(s),
            "%s: after the wake-count-th remote free: state %u, listed %u, "
            "remote %#lx",
            what, atomic_load(&s->state), times_listed(s), (unsigned long)unit_remote_word(s));
    }
    finish(s, blocks + next, cap - next, what);
  }

  /* A span with free blocks on its local list but fewer than an eighth:
   * detached; it is listed once the free blocks reach an eighth, by the
   * wake-count-th remote free at the latest. */
  {
    uint32_t local = wake - 1;
    hm_span *s = take_full(WCLS, blocks);
    own(s, (uintptr_t)heap, HM_Q_PARTIAL);
    hm_span_put_back(s, link_blocks(blocks, local));
    hm_span_to_arena(s);
    CHECK(atomic_load(&s->state) == HM_SPAN_DETACHED && flag_set(s),
          "%u local free blocks: state %u, remote %#lx", local, atomic_load(&s->state),
          (unsigned long)unit_remote_word(s));
    size_t next = local;
    uint32_t listed_at = 0;
    for (uint32_t i = 1; i <= wake && listed_at == 0; i++) {
      hm_span_free_remote(s, blocks[next++]);
      if (atomic_load(&s->state) == HM_SPAN_LISTED)
        listed_at = i;
    }
    CHECK(listed_at != 0 && times_listed(s) == 1,
          "%u local free blocks: not listed after %u remote frees (listed %u)", local, wake,
          times_listed(s));
    printf("note: a detached span with %u local free blocks was listed by "
           "remote free %u "
           "(wake count %u)\n",
           local, listed_at, wake);
    finish(s, blocks + next, cap - next, "local free below an eighth");
  }

  /* A partly carved span: its uncarved blocks count as free. */
  {
    hm_span *s = take_fresh(WCLS);
    own(s, (uintptr_t)heap, HM_Q_ACTIVE);
    hm_block *list = hm_span_collect(s);
    size_t n = list_length(list);
    CHECK(cap - n >= wake, "class %d carves %zu of %zu blocks at once", WCLS, n, cap);
    for (size_t i = 0; i < n; i++, list = list->next)
      blocks[i] = list;
    hm_span_to_arena(s);
    CHECK(atomic_load(&s->state) == HM_SPAN_LISTED && times_listed(s) == 1 && !flag_set(s),
          "a span with %zu of %zu blocks carved: state %u, listed %u", n, cap,
          atomic_load(&s->state), times_listed(s));
    finish(s, blocks, n, "partly carved");
  }
  UNIT_PASS("to_arena: listed with an eighth free, else detached with the flag "
            "and listed by "
            "the wake-count-th remote free, not one free earlier");
}

/* The holder of a span taken from the arena lets go of it with
 * hm_span_release: given back when all free, else to the arena. */
static void check_release(void)
{
  enum { CLS = 20 };
  size_t cap = hm_class_capacity(CLS);
  uint32_t wake = (uint32_t)cap / 8;
  hm_span *s = take_full(CLS, blocks);
  hm_span_release(s, link_blocks(blocks, wake));
  CHECK(atomic_load(&s->state) == HM_SPAN_LISTED && times_listed(s) == 1,
        "released with %u free blocks: state %u, listed %u times", wake, atomic_load(&s->state),
        times_listed(s));
  CHECK(hm_arena_take_span(arena, CLS, true) == s, "the released span was not taken back");
  atomic_store(&s->state, HM_SPAN_OWNED);
  check_list(hm_span_collect(s), blocks, wake, "collect after release");

  hm_span_release(s, link_blocks(blocks, 1));
  CHECK(atomic_load(&s->state) == HM_SPAN_DETACHED && times_listed(s) == 0 && flag_set(s),
        "released with 1 free block: state %u, listed %u times", atomic_load(&s->state),
        times_listed(s));
  free_remote_range(s, blocks, 1, 1 + wake);
  CHECK(hm_arena_take_span(arena, CLS, true) == s, "the detached span was not listed");
  atomic_store(&s->state, HM_SPAN_OWNED);
  CHECK(list_length(hm_span_collect(s)) == 1 && list_length(hm_span_collect(s)) == wake,
        "collect after detach: local then remote");
  release_all(s, blocks, cap, "released with every block free");
  UNIT_PASS("release lists a span with an eighth free, detaches a fuller one, "
            "gives an "
            "all-free one back to its region");
}

/* A span nobody owns is unused once every carved block came back, however
 * it came back: the local list and the remote count together. */
static void check_unused(void)
{
  enum { CLS = 87 };
  hm_span *s = take_full(CLS, blocks);
  size_t cap = hm_class_capacity(CLS);
  for (size_t i = 0; i < cap; i++) {
    CHECK(!hm_span_is_unused(s), "unused with %zu of %zu blocks freed", i, cap);
    hm_span_free_remote(s, blocks[i]);
  }
  CHECK(hm_span_is_unused(s), "not unused with every block freed remotely");
  hm_block *list = hm_span_collect(s);
  CHECK(!hm_span_is_unused(s), "unused with every block taken by the owner");
  hm_block *rest = list->next;
  hm_span_free_remote(s, list);
  unsigned granules = s->granules;
  hm_span_release(s, rest);
  check_let_go_unused(s, CLS, granules, "released with all local free but 1 remote free block");
  UNIT_PASS("hm_span_is_unused counts local and remote free blocks");
}

/* An unused span let go waits on its class's empty stack with its free
 * blocks (the next heap to take it carves nothing): the next span of the
 * class is that one, before any partial span, and a purge pass gives it
 * back to its region. */
static void check_empty_stack(void)
{
  enum { CLS = 12 };
  size_t cap = hm_class_capacity(CLS);
  hm_span *s = take_full(CLS, blocks);
  hm_span *p = take_full(CLS, blocks + cap);
  own(s, (uintptr_t)heap, HM_Q_PARTIAL);
  s->notify = HM_NOTIFY_NONE;
  /* Free blocks of both kinds: local and remote. */
  free_remote_range(s, blocks, 0, 5);
  hm_span_release(s, link_blocks(blocks + 5, cap - 5));
  if (hm_pagemap_header(s) != s) {
    printf("skip: unused spans go straight back to their region (no empty "
           "stack)\n");
    unit_check_given_back(s, hm_class_granules[CLS], "released unused");
    hm_span_release(p, link_blocks(blocks + cap, cap));
    check_let_go_unused(p, CLS, p->granules, "released unused");
    return;
  }
  CHECK(atomic_load(&s->state) == HM_SPAN_EMPTY &&
            unit_times_on(&arena->empty[CLS].stack, s) == 1 && atomic_load(&s->owner) == 0 &&
            s->queue == HM_Q_NONE && hm_span_is_unused(s),
        "released unused: state %u, on the empty stack %u times, owner %#lx, "
        "queue %u",
        atomic_load(&s->state), unit_times_on(&arena->empty[CLS].stack, s),
        (unsigned long)atomic_load(&s->owner), s->queue);
  /* A partial span of the class too: the empty one is taken first. */
  hm_span_release(p, link_blocks(blocks + cap, cap / 2));
  CHECK(atomic_load(&p->state) == HM_SPAN_LISTED && times_listed(p) == 1,
        "half-free span released: state %u, listed %u", atomic_load(&p->state), times_listed(p));
  CHECK(hm_arena_take_span(arena, CLS, true) == s, "take_span(partial) did not take the empty "
                                                   "span first");
  CHECK(times_listed(p) == 1, "taking the empty span took the partial one too");
  atomic_store(&s->state, HM_SPAN_OWNED);
  /* Its free blocks come back, local then remote, with nothing carved. */
  size_t carved = hm_span_carved_blocks(s), n = 0;
  for (hm_block *list; (list = hm_span_collect(s)) != NULL;) {
    CHECK(hm_span_carved_blocks(s) == carved, "an empty span with free blocks carved more");
    n += list_length(list);
  }
  CHECK(n == carved && carved == cap && hm_span_used(s) == cap,
        "the empty span gave back %zu of its %zu carved blocks (used %u)", n, carved,
        hm_span_used(s));
  release_all(s, blocks, cap, "taken empty, refilled, released");
  /* A purge pass gives an empty span back, and leaves the partial one. */
  s = take_full(CLS, blocks);
  hm_span_release(s, link_blocks(blocks, cap));
  CHECK(atomic_load(&s->state) == HM_SPAN_EMPTY, "released unused again: state %u",
        atomic_load(&s->state));
  unsigned granules = s->granules;
  hm_arena_purge(arena, false, false);
  CHECK(hm_pagemap_header(s) == NULL && (UNIT_WORD(used, s) & unit_run_bits(s, granules)) == 0,
        "an empty span survived a purge pass (page map %p)", hm_pagemap_header(s));
  CHECK(unit_times_on(&arena->empty[CLS].stack, s) == 0, "a given-back span is on the empty stack");
  CHECK(times_listed(p) == 1 && hm_pagemap_header(p) == p, "a purge pass lost a partial span");
  CHECK(hm_arena_take_span(arena, CLS, true) == p, "the partial span was not taken");
  atomic_store(&p->state, HM_SPAN_OWNED);
  CHECK(list_length(hm_span_collect(p)) == cap / 2, "the partial span's free blocks are lost");
  release_all(p, blocks + cap, cap, "partial span, all freed");
  UNIT_PASS("an unused span waits on its class's empty stack with its free "
            "blocks, is taken "
            "before a partial one, and a purge pass gives it back");
}

/* ---- Race 1: the owner lets go while another thread frees -------------
 * Each round the span is full; the freer frees the wake count of blocks
 * while the owner calls hm_span_to_arena. Whatever the interleaving, the
 * span ends up listed exactly once. */
#define TO_ARENA_ROUNDS UNIT_SCALE(6000)
#define RACE_MAX_DELAY 4096

static hm_span *race_span;
static uint32_t race_wake;
static _Atomic unsigned freer_ready, round_started, round_freed;

/* A pause of `base` plus up to 15 spins after the start signal, so that the
 * two sides' steps interleave in varying ways. */
static void stagger(unsigned base, uint64_t *rng)
{
  for (unsigned n = base + unit_rand(rng) % 16; n > 0; n--)
    hm_cpu_pause();
}

static void *to_arena_freer(void *arg)
{
  (void)arg;
  uint64_t rng = 0x9E3779B97F4A7C15ull;
  for (unsigned r = 1; r <= TO_ARENA_ROUNDS; r++) {
    atomic_store_explicit(&freer_ready, r, memory_order_release);
    unit_wait_for(&round_started, r);
    stagger(0, &rng);
    free_remote_range(race_span, blocks, 0, race_wake);
    atomic_store_explicit(&round_freed, r, memory_order_release);
  }
  return NULL;
}

static void check_to_arena_race(void)
{
  race_span = take_full(WCLS, blocks);
  race_wake = hm_span_wake_count(race_span);
  hm_span *s = race_span;
  own(s, (uintptr_t)heap, HM_Q_PARTIAL);
  pthread_t freer;
  CHECK(pthread_create(&freer, NULL, to_arena_freer, NULL) == 0, "pthread_create failed");
  unsigned delay = 0, before = 0, amid = 0;
  uint64_t rng = 0x2545F4914F6CDD1Dull;
  for (unsigned r = 1; r <= TO_ARENA_ROUNDS; r++) {
    unit_wait_for(&freer_ready, r);
    atomic_store_explicit(&round_started, r, memory_order_release);
    stagger(delay, &rng);
    hm_span_to_arena(s);
    /* How many of the frees came first, roughly: none, some, or all. */
    uint32_t first = hm_span_remote_count(s);
    unit_wait_for(&round_freed, r);
    unsigned state = atomic_load(&s->state), listed = times_listed(s);
    CHECK(state == HM_SPAN_LISTED && listed == 1 && !flag_set(s),
          "round %u: span let go has state %u, listed %u times, remote %#lx "
          "(expected listed "
          "once, no flag)",
          r, state, listed, (unsigned long)unit_remote_word(s));
    CHECK(hm_arena_take_span(arena, WCLS, true) == s, "round %u: listed span not taken", r);
    own(s, (uintptr_t)heap, HM_Q_PARTIAL);
    CHECK(list_length(hm_span_collect(s)) == race_wake && hm_span_collect(s) == NULL,
          "round %u: the %u freed blocks did not come back", r, race_wake);
    /* Tune the owner's head start towards the point where either side
     * wins half of the time: there the two sides' steps overlap. */
    if (first == 0)
      before++;
    else if (first < race_wake)
      amid++;
    if (first < race_wake)
      delay += delay < RACE_MAX_DELAY ? 1 + delay / 8 : 0;
    else
      delay -= delay > 0 ? 1 + delay / 8 : 0;
    if (delay > RACE_MAX_DELAY)
      delay = RACE_MAX_DELAY;
  }
  CHECK(pthread_join(freer, NULL) == 0, "pthread_join failed");
  finish(s, blocks, hm_class_capacity(WCLS), "to_arena race");
  printf("ok: to_arena/remote-free race, %d rounds: listed exactly once every "
         "round "
         "(let go before the frees in %u, amid them in %u, after them in %u; "
         "final delay %u)\n",
         TO_ARENA_ROUNDS, before, amid, TO_ARENA_ROUNDS - before - amid, delay);
}

/* ---- Race 2: many freers against an owner that collects and re-arms ---
 * Each round every block of a full span is freed by FREERS threads while
 * the owner loops: arm when it may, sometimes disarm, collect, and take
 * the delivery in when its notify says one is coming. Every block must
 * come back exactly once, and the span is delivered exactly once for each
 * arming whose flag a freer took (never twice, never to nobody). */
#define ARM_ROUNDS UNIT_SCALE(1500)
enum { FREERS = 4, ACLS = 15 }; /* 255 blocks a span, wake count 31 */

static hm_span *arm_span;
static size_t arm_cap;
static _Atomic unsigned arm_round, arm_done;

static void *arm_freer(void *arg)
{
  unsigned t = (unsigned)(uintptr_t)arg;
  for (unsigned r = 1; r <= ARM_ROUNDS; r++) {
    unit_wait_for(&arm_round, r);
    /* Each round the blocks go in a different interleaving. */
    for (size_t i = (t + r) % FREERS; i < arm_cap; i += FREERS)
      hm_span_free_remote(arm_span, blocks[i]);
    atomic_fetch_add_explicit(&arm_done, 1, memory_order_release);
  }
  return NULL;
}

static void spin_for_delivery(hm_span *s)
{
  for (unsigned spins = 0; atomic_load_explicit(&heap->inbox, memory_order_acquire) == NULL;
       spins++)
    if (spins > 4096)
      sched_yield();
  CHECK(take_inbox(s), "the inbox emptied itself");
}

static void check_arm_race(void)
{
  arm_span = take_full(ACLS, blocks);
  arm_cap = hm_class_capacity(ACLS);
  hm_span *s = arm_span;
  own(s, (uintptr_t)heap | HM_OWNER_PARKED, HM_Q_FULL);
  static uint8_t seen[HM_GRANULE / 16];
  pthread_t freers[FREERS];
  for (uintptr_t t = 0; t < FREERS; t++)
    CHECK(pthread_create(&freers[t], NULL, arm_freer, (void *)t) == 0, "pthread_create failed");
  uint64_t rng = 0x853C49E6748FEA9Bull;
  size_t armings = 0, deliveries = 0, taken_by_freer = 0, taken_by_owner = 0, disarmed = 0;
  for (unsigned r = 1; r <= ARM_ROUNDS; r++) {
    memset(seen, 0, arm_cap);
    atomic_store_explicit(&arm_round, r, memory_order_release);
    size_t collected = 0;
    for (unsigned idle = 0; collected < arm_cap;) {
      /* Nothing came for a while: let the freers run (cores may be few). */
      if (++idle > 256) {
        sched_yield();
        idle = 0;
      }
      uint64_t dice = unit_rand(&rng);
      if (s->notify == HM_NOTIFY_NONE && hm_span_arm(s))
        armings++;
      if (s->notify == HM_NOTIFY_ARMED && dice % 32 == 0) {
        if (hm_span_disarm(s)) {
          disarmed++;
        } else {
          CHECK(s->notify == HM_NOTIFY_PENDING, "round %u: disarm false, notify %u", r, s->notify);
          taken_by_freer++;
        }
      }
      for (unsigned n = (unsigned)(dice >> 8) % 64; n > 0; n--)
        hm_cpu_pause();
      uint8_t before = s->notify;
      hm_block *list = dice & 16 ? hm_span_collect(s) : hm_span_take_remote(s);
      if (list != NULL && before == HM_NOTIFY_ARMED) {
        CHECK(s->notify != HM_NOTIFY_ARMED, "round %u: a nonempty exchange left notify ARMED", r);
        if (s->notify == HM_NOTIFY_PENDING)
          taken_by_freer++;
        else
          taken_by_owner++;
      } else {
        CHECK(s->notify == before, "round %u: notify %u -> %u (list %p)", r, before, s->notify,
              (void *)list);
      }
      if (list != NULL)
        idle = 0;
      for (hm_block *b = list; b != NULL; b = b->next, collected++) {
        size_t off = (size_t)((uint8_t *)b - s->blocks);
        CHECK(hm_span_is_block(s, b), "round %u: collected %p is not a block", r, (void *)b);
        size_t i = off / s->block_size;
        CHECK(seen[i]++ == 0, "round %u: block %zu collected twice", r, i);
      }
      CHECK(collected <= arm_cap, "round %u: %zu blocks collected of %zu", r, collected, arm_cap);
      /* A delivery comes only for an arming whose flag a freer took; the
       * owner may learn of it (PENDING) before or after it arrives. */
      if (s->notify == HM_NOTIFY_PENDING && atomic_load(&heap->inbox) != NULL) {
        CHECK(take_inbox(s), "round %u: inbox", r);
        deliveries++;
      } else if (s->notify == HM_NOTIFY_NONE) {
        CHECK(atomic_load(&heap->inbox) == NULL,
              "round %u: a delivery while no arming is outstanding", r);
      }
    }
    unit_wait_for(&arm_done, r * FREERS);
    /* Every block is back: a delivery may still be on its way, never more
     * than one. */
    if (s->notify == HM_NOTIFY_PENDING) {
      spin_for_delivery(s);
      deliveries++;
    }
    CHECK(atomic_load(&heap->inbox) == NULL, "round %u: a delivery nobody expected", r);
    CHECK(unit_remote_word(s) == (s->notify == HM_NOTIFY_ARMED ? HM_REMOTE_NOTIFY : 0),
          "round %u: remote word %#lx with notify %u after collecting everything", r,
          (unsigned long)unit_remote_word(s), s->notify);
    if (s->notify == HM_NOTIFY_ARMED) {
      CHECK(hm_span_disarm(s), "round %u: disarm at the end failed", r);
      disarmed++;
    }
    CHECK(hm_span_used(s) == arm_cap && hm_span_collect(s) == NULL,
          "round %u: span not full after every block came back (used %u)", r, hm_span_used(s));
  }
  for (int t = 0; t < FREERS; t++)
    CHECK(pthread_join(freers[t], NULL) == 0, "pthread_join failed");
  CHECK(deliveries == taken_by_freer && armings == taken_by_freer + taken_by_owner + disarmed,
        "%zu armings: %zu deliveries for %zu flags taken by freers, %zu taken "
        "back, %zu "
        "disarmed",
        armings, deliveries, taken_by_freer, taken_by_owner, disarmed);
  finish(s, blocks, arm_cap, "arm race");
  printf("ok: %d freers vs an arming owner, %d rounds: every block back once; %zu "
         "armings, "
         "%zu delivered, %zu taken back by the owner's exchange, %zu disarmed\n",
         FREERS, ARM_ROUNDS, armings, deliveries, taken_by_owner, disarmed);
}

int main(void)
{
  void *p = hm_malloc(1); /* sets up the process and this thread's heap */
  CHECK(p != NULL, "hm_malloc failed");
  heap = hm_tls;
  hm_free(p);
  arena = hm_arena_for_node(-1);
  check_format_and_carve();
  check_used();
  check_collect_order();
  check_remote_free();
  check_arm();
  check_wake_to_heap();
  check_wake_to_arena();
  check_take_remote_flags();
  check_disarm();
  check_to_arena();
  check_release();
  check_unused();
  check_empty_stack();
  check_to_arena_race();
  check_arm_race();
  return 0;
}
