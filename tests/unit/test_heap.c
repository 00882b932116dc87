/* Thread heaps, through hm_malloc/hm_free and the heap's internals: spans
 * owned by the calling thread's heap, LIFO reuse, the owner's frees into
 * parked spans, remote frees and the delivery of a parked span to its
 * heap's inbox, the partial budget, thread exit (spans handed back, and
 * kept for the next thread where a delivery is in flight), reuse of memory
 * and heaps across many short threads, and trim. */
#include <string.h>

#include "heap.h"
#include "hmalloc.h"
#include "pagemap.h"
#include "stats.h"
#include "unit.h"
#include "unit_region.h"
#include "unit_span.h"

static hm_span *span_of(const void *p)
{
  hm_span *s = hm_pagemap_header(p);
  CHECK(s != NULL && s->kind == HM_KIND_SMALL, "block %p has no small span", p);
  return s;
}

static void *malloc_checked(size_t size)
{
  void *p = hm_malloc(size);
  CHECK(p != NULL, "hm_malloc(%zu) returned NULL", size);
  memset(p, 0xa5, size);
  return p;
}

static size_t cap_of(unsigned cls)
{
  return hm_class_capacity(cls);
}

static uintptr_t owner_word(const hm_span *s)
{
  return atomic_load(&s->owner);
}

static size_t bytes_in_use(void)
{
  struct hm_stats st;
  hm_stats_get(&st);
  return st.bytes_in_use;
}

static size_t spans_formed(void)
{
  struct hm_stats st;
  hm_stats_get(&st);
  return st.spans;
}

static unsigned times_listed(hm_span *s)
{
  return unit_times_on(&s->arena->partial[s->cls].stack, s);
}

/* Span `s` of class `cls`, every block of it free, left its heap: back in
 * its region (no page-map entry), or on its class's empty stack, owned by
 * nobody, ready to be the class's next span. Only in quiet moments. */
static void check_left_unused(hm_span *s, unsigned cls, const char *what)
{
  if (hm_pagemap_header(s) != s)
    return; /* given back to its region */
  CHECK(atomic_load(&s->state) == HM_SPAN_EMPTY && owner_word(s) == 0 && s->queue == HM_Q_NONE &&
            s->notify == HM_NOTIFY_NONE && hm_span_is_unused(s) &&
            !(unit_remote_word(s) & HM_REMOTE_NOTIFY) &&
            unit_times_on(&s->arena->empty[cls].stack, s) == 1,
        "%s: span %p (class %u) with every block free did not leave: state %u, "
        "owner %#lx, "
        "queue %u, notify %u, used %u, remote %#lx, on the empty stack %u times",
        what, (void *)s, cls, atomic_load(&s->state), (unsigned long)owner_word(s), s->queue,
        s->notify, hm_span_used(s), (unsigned long)unit_remote_word(s),
        unit_times_on(&s->arena->empty[cls].stack, s));
}

/* Span `s` was handed to the arena with blocks in use: listed (once, no
 * flag) or detached (in no list, flag set), owned by nobody. */
static void check_arena_owned(hm_span *s, unsigned expected_state, const char *what)
{
  unsigned state = atomic_load(&s->state);
  CHECK(owner_word(s) == 0 && state == expected_state,
        "%s span %p: owner %#lx state %u, expected owner 0 state %u", what, (void *)s,
        (unsigned long)owner_word(s), state, expected_state);
  if (state == HM_SPAN_LISTED)
    CHECK(times_listed(s) == 1 && !(unit_remote_word(s) & HM_REMOTE_NOTIFY),
          "%s span %p: listed %u times, remote %#lx", what, (void *)s, times_listed(s),
          (unsigned long)unit_remote_word(s));
  else
    CHECK(times_listed(s) == 0 && (unit_remote_word(s) & HM_REMOTE_NOTIFY),
          "%s span %p: detached but listed %u times, remote %#lx", what, (void *)s, times_listed(s),
          (unsigned long)unit_remote_word(s));
}

/* Span `s` is parked in heap `h`: in its full queue, the owner word
 * marked, armed with an empty remote list. */
static void check_parked(hm_heap *h, hm_span *s, const char *what)
{
  CHECK(s->queue == HM_Q_FULL && owner_word(s) == ((uintptr_t)h | HM_OWNER_PARKED) &&
            s->notify == HM_NOTIFY_ARMED && unit_remote_word(s) == HM_REMOTE_NOTIFY,
        "%s: span %p not parked in heap %p: queue %u owner %#lx notify %u "
        "remote %#lx",
        what, (void *)s, (void *)h, s->queue, (unsigned long)owner_word(s), s->notify,
        (unsigned long)unit_remote_word(s));
}

/* Allocates `n` blocks of class `cls` into `out`, and returns how many
 * distinct spans they came from, in order, into `spans`. */
static size_t alloc_spans(unsigned cls, void **out, size_t n, hm_span **spans, size_t max_spans)
{
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    out[i] = malloc_checked(hm_class_size[cls]);
    hm_span *s = span_of(out[i]);
    CHECK(s->cls == cls, "a block of class %u in a span of class %u", cls, s->cls);
    if (k == 0 || spans[k - 1] != s) {
      for (size_t j = 0; j < k; j++)
        CHECK(spans[j] != s, "class %u: span %p handed out blocks again after another", cls,
              (void *)s);
      CHECK(k < max_spans, "class %u: more than %zu spans for %zu blocks", cls, max_spans, n);
      spans[k++] = s;
    }
  }
  return k;
}

/* ---- Ownership and reuse ------------------------------------------------ */

/* Blocks of every class come from spans the caller's heap owns. */
static void check_owned_spans(void)
{
  static void *blocks[HM_CLASSES][2];
  for (unsigned cls = 0; cls < HM_CLASSES; cls++)
    for (int i = 0; i < 2; i++) {
      void *p = blocks[cls][i] = malloc_checked(hm_class_size[cls]);
      hm_span *s = span_of(p);
      CHECK(s->cls == cls, "a block of %u bytes is in a span of class %u, expected %u",
            hm_class_size[cls], s->cls, cls);
      CHECK(owner_word(s) == (uintptr_t)hm_tls && atomic_load(&s->state) == HM_SPAN_OWNED &&
                s->queue == HM_Q_ACTIVE && hm_tls->bins[cls].active == s,
            "block %p of class %u: span owner %#lx state %u queue %u (bin's "
            "active %p), "
            "expected this thread's heap %p",
            p, cls, (unsigned long)owner_word(s), atomic_load(&s->state), s->queue,
            (void *)hm_tls->bins[cls].active, (void *)hm_tls);
    }
  for (unsigned cls = 0; cls < HM_CLASSES; cls++)
    for (int i = 0; i < 2; i++)
      hm_free(blocks[cls][i]);
  UNIT_PASS("blocks of every class come from the active span of the calling "
            "thread's heap");
}

/* The owner's frees go on its span's local list, apart from the list the
 * fast path allocates from (free-list sharding): a freed block comes back
 * once that list runs out, the last freed first. */
static void check_lifo_reuse(void)
{
  enum { SIZE = 100 };
  size_t cap = cap_of(hm_class_of(SIZE));
  void *p = malloc_checked(SIZE), *a = malloc_checked(SIZE), *b = malloc_checked(SIZE);
  hm_free(p);
  hm_free(a);
  hm_free(b);
  void **others = calloc(cap + 3, sizeof *others);
  CHECK(others != NULL, "calloc failed");
  size_t n = 0;
  void *q;
  while ((q = malloc_checked(SIZE)) != p && q != a && q != b) {
    CHECK(n < cap, "%zu blocks allocated without getting back a freed one", n);
    CHECK(span_of(q) == span_of(p),
          "block %p came from another span while freed blocks of "
          "the active span wait",
          q);
    others[n++] = q;
  }
  void *second = malloc_checked(SIZE), *third = malloc_checked(SIZE);
  CHECK(q == b && second == a && third == p,
        "freed p=%p, a=%p, b=%p; after %zu other blocks got back %p, %p, %p", p, a, b, n, q, second,
        third);
  hm_free(q);
  hm_free(second);
  hm_free(third);
  while (n > 0)
    hm_free(others[--n]);
  free(others);
  UNIT_PASS("the owner's freed blocks come back, last freed first, once the "
            "allocation list "
            "runs out");
}

/* ---- The owner's batch free --------------------------------------------
 * More blocks of one class than a span holds: the full spans are parked.
 * The owner frees them all, round robin over the spans: nothing goes on a
 * remote list, a parked span moves to the partial queue at its first
 * free, and a span whose blocks are all free leaves the heap, except the
 * active one. */
enum { BATCH_CLS = 23, BATCH_SPANS = 5 };

static void check_batch_free(void)
{
  hm_heap *h = hm_tls;
  size_t cap = cap_of(BATCH_CLS);
  size_t n = (BATCH_SPANS - 1) * cap + cap / 2;
  void **blocks = calloc(n, sizeof *blocks);
  CHECK(blocks != NULL, "calloc failed");
  hm_span *spans[BATCH_SPANS + 1];
  size_t k = alloc_spans(BATCH_CLS, blocks, n, spans, BATCH_SPANS + 1);
  CHECK(k >= BATCH_SPANS, "%zu blocks of class %d came from %zu spans", n, BATCH_CLS, k);
  hm_span *active = spans[k - 1];
  CHECK(h->bins[BATCH_CLS].active == active && active->queue == HM_Q_ACTIVE &&
            owner_word(active) == (uintptr_t)h,
        "the span of the last block is not the active one");
  for (size_t j = 0; j + 1 < k; j++)
    check_parked(h, spans[j], "a span filled by the owner");
  CHECK(h->bins[BATCH_CLS].partial == NULL, "class %d has partial spans", BATCH_CLS);

  /* Which span each block is in, and how many of each are still live. */
  size_t live[BATCH_SPANS + 1] = {0};
  unsigned *where = calloc(n, sizeof *where);
  CHECK(where != NULL, "calloc failed");
  for (size_t i = 0; i < n; i++) {
    unsigned j = 0;
    while (spans[j] != span_of(blocks[i]))
      j++;
    where[i] = j;
    live[j]++;
  }
  bool gone[BATCH_SPANS + 1] = {false}, moved[BATCH_SPANS + 1] = {false};
  size_t freed = 0, max_partial = 0;
  /* Round robin: the i-th block of each span in turn. */
  for (size_t round = 0; freed < n; round++) {
    for (size_t j = 0; j < k; j++) {
      size_t seen = 0, i = 0;
      for (; i < n; i++)
        if (blocks[i] != NULL && where[i] == j && seen++ == 0)
          break;
      if (i == n)
        continue;
      hm_span *s = spans[j];
      hm_free(blocks[i]);
      blocks[i] = NULL;
      freed++;
      live[j]--;
      if (s != active && !moved[j]) {
        moved[j] = true;
        CHECK(s->queue == HM_Q_PARTIAL && owner_word(s) == (uintptr_t)h,
              "a parked span after the owner's first free: queue %u owner %#lx "
              "(expected "
              "partial, %p)",
              s->queue, (unsigned long)owner_word(s), (void *)h);
      }
      if (live[j] == 0 && s != active) {
        gone[j] = true;
        check_left_unused(s, BATCH_CLS, "a span the owner freed every block of");
      }
      /* No block went on a remote list, for any span still ours. */
      for (size_t m = 0; m < k; m++)
        if (!gone[m])
          CHECK(hm_remote_list(unit_remote_word(spans[m])) == NULL,
                "after %zu owner frees, span %zu has a remote list (%#lx)", freed, m,
                (unsigned long)unit_remote_word(spans[m]));
      if (h->bins[BATCH_CLS].npartial > max_partial)
        max_partial = h->bins[BATCH_CLS].npartial;
      CHECK(h->partial_bytes <= HM_HEAP_PARTIAL_BUDGET, "partial bytes %zu over the budget",
            h->partial_bytes);
    }
    (void)round;
  }
  CHECK(h->bins[BATCH_CLS].active == active && owner_word(active) == (uintptr_t)h &&
            hm_pagemap_header(active) == active,
        "the active span left the heap when its blocks were freed");
  CHECK(h->bins[BATCH_CLS].partial == NULL && h->bins[BATCH_CLS].full == NULL &&
            h->bins[BATCH_CLS].npartial == 0,
        "class %d still has partial (%u) or full spans", BATCH_CLS, h->bins[BATCH_CLS].npartial);
  CHECK(max_partial >= 2, "the round robin never had 2 partial spans at once (%zu)", max_partial);
  free(where);
  free(blocks);
  printf("ok: batch free by the owner of %zu blocks in %zu spans: no remote "
         "list, parked -> "
         "partial (up to %zu at once) -> left the heap when empty; the active "
         "span stays\n",
         n, k, max_partial);
}

/* ---- Remote frees and delivery -----------------------------------------
 * A worker fills a span until it is parked; the main thread frees blocks of
 * it: they go on its remote list, and the free that brings the list to the
 * wake count puts the span on the worker's inbox. The worker's next refill
 * of the class, once its newer span is full, takes the span back and hands
 * out one of the freed blocks, without forming a span. */
enum { DELIVER_CLS = 36 }; /* 39 blocks a span, wake count 4 */

static _Atomic unsigned step;

static struct {
  hm_heap *heap;
  hm_span *parked;
  void *blocks[64]; /* the parked span's blocks */
  size_t count;
  void *freed[64]; /* those the main thread freed */
  size_t nfreed;
} deliver;

static void *delivery_worker(void *arg)
{
  (void)arg;
  unsigned cls = DELIVER_CLS;
  size_t cap = cap_of(cls);
  void *first = malloc_checked(hm_class_size[cls]);
  hm_heap *h = deliver.heap = hm_tls;
  hm_span *s = span_of(first);
  deliver.blocks[deliver.count++] = first;
  void *p;
  while (span_of(p = malloc_checked(hm_class_size[cls])) == s) {
    CHECK(deliver.count < cap, "more than %zu blocks from one span", cap);
    deliver.blocks[deliver.count++] = p;
  }
  hm_span *t = span_of(p);
  CHECK(deliver.count == cap, "the worker's first span of class %u gave %zu blocks of %zu", cls,
        deliver.count, cap);
  check_parked(h, s, "the worker's full span");
  CHECK(h->bins[cls].active == t, "the block after the full span is not from the active span");
  deliver.parked = s;
  atomic_store(&step, 1);
  unit_wait_for(&step, 2); /* the main thread freed some blocks */

  size_t spans_before = spans_formed();
  void *mine[128];
  size_t n = 0;
  mine[n++] = p;
  for (;;) {
    void *q = malloc_checked(hm_class_size[cls]);
    /* The first slow path takes the inbox in: the span waits in the
     * partial queue until the active one is full. */
    if (atomic_load(&h->inbox) == NULL)
      CHECK(s->queue == HM_Q_PARTIAL || s->queue == HM_Q_ACTIVE,
            "the inbox was taken in, the delivered span is in queue %u", s->queue);
    if (span_of(q) == s) {
      bool was_freed = false;
      for (size_t i = 0; i < deliver.nfreed; i++)
        was_freed |= deliver.freed[i] == q;
      CHECK(was_freed, "the delivered span handed out %p, not one of the freed blocks", q);
      mine[n++] = q;
      break;
    }
    CHECK(span_of(q) == t, "block %p from neither the active span nor the delivered one", q);
    CHECK(n < cap, "the worker's span of %zu blocks gave %zu", cap, n + 1);
    mine[n++] = q;
  }
  CHECK(spans_formed() == spans_before,
        "a span was formed (%zu -> %zu) though one was "
        "delivered",
        spans_before, spans_formed());
  CHECK(s->queue == HM_Q_ACTIVE && h->bins[cls].active == s && owner_word(s) == (uintptr_t)h &&
            s->notify == HM_NOTIFY_NONE && atomic_load(&h->inbox) == NULL,
        "the delivered span after the refill: queue %u owner %#lx notify %u "
        "inbox %p",
        s->queue, (unsigned long)owner_word(s), s->notify, (void *)atomic_load(&h->inbox));
  check_parked(h, t, "the worker's second span, full");
  for (size_t i = 0; i < n; i++)
    hm_free(mine[i]);
  for (size_t i = 0; i < deliver.count; i++)
    if (deliver.blocks[i] != NULL)
      hm_free(deliver.blocks[i]);
  return NULL;
}

static void check_delivery(void)
{
  size_t baseline = bytes_in_use();
  pthread_t t;
  CHECK(pthread_create(&t, NULL, delivery_worker, NULL) == 0, "pthread_create failed");
  unit_wait_for(&step, 1);
  hm_heap *w = deliver.heap, *me = hm_tls;
  hm_span *s = deliver.parked;
  uint32_t wake = hm_span_wake_count(s);
  CHECK(wake >= 2, "class %d: wake count %u", DELIVER_CLS, wake);
  for (uint32_t i = 0; i <= wake; i++) {
    void *p = deliver.blocks[2 * i]; /* every other one */
    deliver.blocks[2 * i] = NULL;
    deliver.freed[deliver.nfreed++] = p;
    hm_free(p);
    uint64_t remote = unit_remote_word(s);
    CHECK(hm_block_list_contains(hm_remote_list(remote), p) && hm_remote_count(remote) == i + 1,
          "a block freed by another thread is not on its span's remote list "
          "(count %u)",
          hm_remote_count(remote));
    CHECK(!hm_block_list_contains(me->hot[DELIVER_CLS].free, p) &&
              (me->bins[DELIVER_CLS].active == NULL ||
               !hm_block_list_contains(me->bins[DELIVER_CLS].active->local_free, p)),
          "a block of another thread's span went on this thread's lists");
    if (i + 1 < wake) {
      CHECK((remote & HM_REMOTE_NOTIFY) && atomic_load(&w->inbox) == NULL,
            "after %u of %u remote frees: remote %#lx, inbox %p", i + 1, wake,
            (unsigned long)remote, (void *)atomic_load(&w->inbox));
    } else {
      CHECK(!(remote & HM_REMOTE_NOTIFY) && atomic_load(&w->inbox) == s &&
                atomic_load(&s->link.next) == NULL,
            "after %u remote frees (wake count %u): remote %#lx, inbox %p "
            "(span %p alone "
            "expected)",
            i + 1, wake, (unsigned long)remote, (void *)atomic_load(&w->inbox), (void *)s);
    }
    CHECK(s->queue == HM_Q_FULL && owner_word(s) == ((uintptr_t)w | HM_OWNER_PARKED),
          "a remote free moved the parked span: queue %u owner %#lx", s->queue,
          (unsigned long)owner_word(s));
  }
  atomic_store(&step, 2);
  CHECK(pthread_join(t, NULL) == 0, "pthread_join failed");
  CHECK(bytes_in_use() == baseline, "bytes in use %zu, expected %zu", bytes_in_use(), baseline);
  UNIT_PASS("remote frees go on the span's remote list; the wake-count-th "
            "delivers the parked "
            "span to its heap's inbox, once; the owner's refill reuses it "
            "without a new span");
}

/* ---- The partial budget ------------------------------------------------
 * A worker fills two spans of each of many classes and frees every other
 * block: each full span becomes partial. The heap keeps at most
 * HM_HEAP_PARTIAL_BUDGET bytes of partial spans after every call; the
 * others go to the arena (listed: half of them is free). */
enum { BUDGET_FIRST = 8, BUDGET_LAST = 35 };
#define BUDGET_SPANS ((BUDGET_LAST - BUDGET_FIRST + 1) * 3)

static struct {
  hm_span *spans[BUDGET_SPANS];
  size_t nspans, evicted, max_partial;
} budget;

/* The heap's partial queues add up to partial_bytes. */
static void check_partial_sum(hm_heap *h)
{
  size_t bytes = 0;
  for (unsigned c = 0; c < HM_CLASSES; c++) {
    hm_bin *bin = &h->bins[c];
    uint32_t n = 0;
    hm_span *s = bin->partial;
    if (s != NULL)
      do {
        CHECK(s->queue == HM_Q_PARTIAL && owner_word(s) == (uintptr_t)h && s->cls == c,
              "span %p in the partial queue of class %u: queue %u owner %#lx", (void *)s, c,
              s->queue, (unsigned long)owner_word(s));
        bytes += (size_t)s->granules * HM_GRANULE;
        n++;
        s = s->qnext;
      } while (s != bin->partial);
    CHECK(n == bin->npartial, "class %u: %u spans in the partial queue, npartial %u", c, n,
          bin->npartial);
  }
  CHECK(bytes == h->partial_bytes, "partial queues hold %zu bytes, partial_bytes %zu", bytes,
        h->partial_bytes);
}

static void check_budget_after(hm_heap *h, const char *op)
{
  CHECK(h->partial_bytes <= HM_HEAP_PARTIAL_BUDGET, "after %s: %zu partial bytes, budget %zu", op,
        h->partial_bytes, HM_HEAP_PARTIAL_BUDGET);
  if (h->partial_bytes > budget.max_partial)
    budget.max_partial = h->partial_bytes;
}

static void *budget_worker(void *arg)
{
  (void)arg;
  void **all[HM_CLASSES] = {NULL};
  size_t count[HM_CLASSES] = {0};
  hm_heap *h = NULL;
  for (unsigned c = BUDGET_FIRST; c <= BUDGET_LAST; c++) {
    size_t n = 2 * cap_of(c) + 1;
    void **blocks = all[c] = calloc(n, sizeof *blocks);
    CHECK(blocks != NULL, "calloc failed");
    count[c] = n;
    for (size_t i = 0; i < n; i++) {
      blocks[i] = malloc_checked(hm_class_size[c]);
      h = hm_tls;
      check_budget_after(h, "a malloc");
      hm_span *s = span_of(blocks[i]);
      size_t j = 0;
      while (j < budget.nspans && budget.spans[j] != s)
        j++;
      if (j == budget.nspans) {
        CHECK(j < BUDGET_SPANS, "class %u: too many spans", c);
        budget.spans[budget.nspans++] = s;
      }
    }
    for (size_t i = 0; i < n; i += 2) {
      hm_free(blocks[i]);
      blocks[i] = NULL;
      check_budget_after(h, "a free");
    }
    check_partial_sum(h);
    /* Every span so far is the heap's, in one of its queues, or the
     * arena's: listed (half free, so worth lending). */
    for (size_t j = 0; j < budget.nspans; j++) {
      hm_span *s = budget.spans[j];
      uintptr_t owner = owner_word(s);
      if ((owner & ~HM_OWNER_PARKED) == (uintptr_t)h)
        CHECK(s->queue == HM_Q_ACTIVE || s->queue == HM_Q_PARTIAL || s->queue == HM_Q_FULL ||
                  s->queue == HM_Q_PENDING,
              "span %p owned by the heap in queue %u", (void *)s, s->queue);
      else
        check_arena_owned(s, HM_SPAN_LISTED, "a span past the budget");
    }
  }
  for (size_t j = 0; j < budget.nspans; j++)
    budget.evicted += owner_word(budget.spans[j]) == 0;
  CHECK(budget.evicted > 0, "no span left the heap for the budget");
  /* The rest of the blocks, freed by their thread: the spans the heap
   * still has leave it when empty; those it let go get remote frees. */
  for (unsigned c = BUDGET_FIRST; c <= BUDGET_LAST; c++) {
    for (size_t i = 1; i < count[c]; i += 2) {
      hm_free(all[c][i]);
      check_budget_after(h, "a free of the rest");
    }
    free(all[c]);
  }
  check_partial_sum(h);
  CHECK(h->partial_bytes == 0, "every block free, yet %zu partial bytes", h->partial_bytes);
  return NULL;
}

static void check_budget(void)
{
  size_t baseline = bytes_in_use();
  pthread_t t;
  CHECK(pthread_create(&t, NULL, budget_worker, NULL) == 0, "pthread_create failed");
  CHECK(pthread_join(t, NULL) == 0, "pthread_join failed");
  CHECK(bytes_in_use() == baseline, "bytes in use %zu, expected %zu", bytes_in_use(), baseline);
  printf("ok: partial budget: at most %zu of %zu bytes after every call; %zu "
         "of %zu spans went "
         "to the arena, listed\n",
         budget.max_partial, HM_HEAP_PARTIAL_BUDGET, budget.evicted, budget.nspans);
}

/* ---- Thread exit -------------------------------------------------------
 * A worker exits with live blocks in a full active span, a parked span, a
 * partial span and an emptied one: the full and parked spans become the
 * arena's, detached; the partial one listed; the emptied one leaves. The
 * main thread's frees then reach every block, and the detached spans are
 * listed by the wake-count-th of them, not earlier. */
enum {
  FULL_CLS = 39,   /* 31 blocks, wake count 3 */
  PARKED_CLS = 40, /* 28 blocks, wake count 3 */
  PARTIAL_CLS = 5,
  EMPTIED_CLS = 6,
  PARTIAL_LIVE = 3
};

static struct {
  hm_heap *heap;
  void *full[64];
  void *parked[64];
  void *after_parked;
  void *partial[PARTIAL_LIVE];
  hm_span *emptied;
} exiting;

static void fill_one_span(unsigned cls, void **out)
{
  size_t cap = cap_of(cls);
  for (size_t i = 0; i < cap; i++) {
    out[i] = malloc_checked(hm_class_size[cls]);
    CHECK(span_of(out[i]) == span_of(out[0]),
          "block %zu of class %u is not in the span of "
          "block 0",
          i, cls);
  }
}

static void *exiting_worker(void *arg)
{
  (void)arg;
  fill_one_span(FULL_CLS, exiting.full);
  fill_one_span(PARKED_CLS, exiting.parked);
  exiting.after_parked = malloc_checked(hm_class_size[PARKED_CLS]);
  check_parked(hm_tls, span_of(exiting.parked[0]), "a full span");
  for (int i = 0; i < PARTIAL_LIVE; i++)
    exiting.partial[i] = malloc_checked(hm_class_size[PARTIAL_CLS]);
  void *gone[PARTIAL_LIVE];
  for (int i = 0; i < PARTIAL_LIVE; i++)
    gone[i] = malloc_checked(hm_class_size[EMPTIED_CLS]);
  exiting.emptied = span_of(gone[0]);
  for (int i = 0; i < PARTIAL_LIVE; i++)
    hm_free(gone[i]);
  exiting.heap = hm_tls;
  return NULL;
}

/* Frees the blocks of a detached span: it stays detached until the
 * wake-count-th free, which lists it. */
static void free_detached(void **blocks, size_t n, const char *what)
{
  hm_span *s = span_of(blocks[0]);
  uint32_t wake = hm_span_wake_count(s);
  CHECK(wake >= 2 && n >= wake, "%s: wake count %u, %zu blocks", what, wake, n);
  for (size_t i = 0; i < n; i++) {
    hm_free(blocks[i]);
    if (i + 1 < wake)
      check_arena_owned(s, HM_SPAN_DETACHED, what);
    else if (i + 1 == wake)
      check_arena_owned(s, HM_SPAN_LISTED, what);
  }
}

static void check_thread_exit(void)
{
  size_t baseline = bytes_in_use();
  pthread_t t;
  CHECK(pthread_create(&t, NULL, exiting_worker, NULL) == 0, "pthread_create failed");
  CHECK(pthread_join(t, NULL) == 0, "pthread_join failed");
  CHECK(atomic_load(&exiting.heap->in_use) == 0, "the exited thread's heap is still in use");
  CHECK(exiting.heap->pending == NULL, "the exited thread's heap kept spans pending");
  hm_span *full = span_of(exiting.full[0]), *parked = span_of(exiting.parked[0]);
  hm_span *after = span_of(exiting.after_parked), *partial = span_of(exiting.partial[0]);
  check_arena_owned(full, HM_SPAN_DETACHED, "full (active)");
  check_arena_owned(parked, HM_SPAN_DETACHED, "full (parked)");
  check_arena_owned(after, HM_SPAN_LISTED, "1 block used");
  check_arena_owned(partial, HM_SPAN_LISTED, "partly used");
  check_left_unused(exiting.emptied, EMPTIED_CLS, "the span an exited thread had emptied");

  free_detached(exiting.full, cap_of(FULL_CLS), "detached (was active), then freed into,");
  free_detached(exiting.parked, cap_of(PARKED_CLS), "detached (was parked), then freed into,");
  hm_free(exiting.after_parked);
  for (int i = 0; i < PARTIAL_LIVE; i++)
    hm_free(exiting.partial[i]);
  CHECK(bytes_in_use() == baseline, "bytes in use %zu, expected %zu", bytes_in_use(), baseline);
  UNIT_PASS("an exited thread's spans: full and parked detached, partial "
            "listed, emptied gone; "
            "its blocks freed later, all accounted");
}

/* ---- Thread exit with a delivery in flight -----------------------------
 * A worker parks a span; the main thread frees blocks into it and plays a
 * freer that took the notification off with its CAS and has not yet
 * pushed the span on the inbox (hm_span_free_remote between its CAS and
 * span_deliver). The worker exits: its heap keeps the span in its pending
 * list. The delivery then lands (before or after the next thread took the
 * structure), and that thread inherits the span: its refill of the class
 * takes it, and hands out a freed block. */
enum { PENDING_CLS = 41 }; /* 25 blocks, wake count 3 */

static struct {
  hm_heap *heap;
  void *blocks[64];
  void *after;
  void *taken; /* the block the next thread got */
  bool deliver_first;
} pend;

static _Atomic unsigned pend_step;

static void *pending_owner(void *arg)
{
  (void)arg;
  fill_one_span(PENDING_CLS, pend.blocks);
  pend.after = malloc_checked(hm_class_size[PENDING_CLS]);
  pend.heap = hm_tls;
  check_parked(hm_tls, span_of(pend.blocks[0]), "the span to be pending");
  atomic_store(&pend_step, 1);
  unit_wait_for(&pend_step, 2); /* the flag is gone, the delivery not made */
  return NULL;
}

static void *pending_heir(void *arg)
{
  (void)arg;
  hm_span *s = span_of(pend.blocks[0]);
  if (!pend.deliver_first) {
    void *p = malloc_checked(16); /* takes a heap structure, drains an empty inbox */
    CHECK(hm_tls == pend.heap, "the next thread took heap %p, not %p (the pool is LIFO)",
          (void *)hm_tls, (void *)pend.heap);
    CHECK(hm_tls->pending == s && s->queue == HM_Q_PENDING,
          "the inherited structure lost its pending span (pending %p, queue %u)",
          (void *)hm_tls->pending, s->queue);
    hm_free(p);
    atomic_store(&pend_step, 4);
    unit_wait_for(&pend_step, 5); /* delivered now */
  }
  void *q = malloc_checked(hm_class_size[PENDING_CLS]);
  hm_heap *h = hm_tls;
  CHECK(h == pend.heap, "the next thread took heap %p, not %p", (void *)h, (void *)pend.heap);
  CHECK(span_of(q) == s, "the next thread's first block of the class is not from the "
                         "inherited span");
  CHECK(h->pending == NULL && atomic_load(&h->inbox) == NULL && s->queue == HM_Q_ACTIVE &&
            owner_word(s) == (uintptr_t)h && s->notify == HM_NOTIFY_NONE,
        "the inherited span: pending %p inbox %p queue %u owner %#lx notify %u", (void *)h->pending,
        (void *)atomic_load(&h->inbox), s->queue, (unsigned long)owner_word(s), s->notify);
  pend.taken = q;
  return NULL;
}

static void check_pending_inherited(void)
{
  for (int round = 0; round < 2; round++) {
    size_t baseline = bytes_in_use();
    pend.deliver_first = round == 0;
    atomic_store(&pend_step, 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, pending_owner, NULL) == 0, "pthread_create failed");
    unit_wait_for(&pend_step, 1);
    hm_heap *w = pend.heap;
    hm_span *s = span_of(pend.blocks[0]);
    size_t cap = cap_of(PENDING_CLS);
    uint32_t wake = hm_span_wake_count(s);
    for (uint32_t i = 0; i + 1 < wake; i++)
      hm_free(pend.blocks[i]);
    /* The freer of the wake-count-th block: its CAS, not its delivery. */
    hm_block *b = pend.blocks[wake - 1];
    b->key = hm_free_key;
    uint64_t head = unit_remote_word(s);
    CHECK((head & HM_REMOTE_NOTIFY) && hm_remote_count(head) + 1 == wake,
          "round %d: remote %#lx before the wake-count-th free", round, (unsigned long)head);
    b->next = hm_remote_list(head);
    uint64_t next = (uint64_t)wake << HM_REMOTE_COUNT_SHIFT | (uintptr_t)b;
    CHECK(atomic_compare_exchange_strong(&s->remote, &head, next), "round %d: CAS failed", round);
    hm_stats_count_direct_free(hm_class_size[PENDING_CLS]); /* as its free counts */
    atomic_store(&pend_step, 2);
    CHECK(pthread_join(t, NULL) == 0, "pthread_join failed");

    CHECK(atomic_load(&w->in_use) == 0, "round %d: the exited heap is in use", round);
    CHECK(w->pending == s && s->qnext == s && s->queue == HM_Q_PENDING &&
              s->notify == HM_NOTIFY_PENDING && owner_word(s) == ((uintptr_t)w | HM_OWNER_PARKED) &&
              atomic_load(&w->inbox) == NULL,
          "round %d: at exit, the span with a delivery in flight: heap pending "
          "%p, queue %u, "
          "notify %u, owner %#lx, inbox %p",
          round, (void *)w->pending, s->queue, s->notify, (unsigned long)owner_word(s),
          (void *)atomic_load(&w->inbox));
    check_arena_owned(span_of(pend.after), HM_SPAN_LISTED, "the exited thread's active span");
    /* Another free meanwhile is an ordinary remote free. */
    hm_free(pend.blocks[wake]);
    CHECK(hm_remote_count(unit_remote_word(s)) == wake + 1 && w->pending == s,
          "round %d: a free into the pending span: remote %#lx", round,
          (unsigned long)unit_remote_word(s));

    pthread_t heir;
    if (pend.deliver_first) {
      hm_heap_deliver(w, s); /* the freer resumes: span_deliver */
      CHECK(atomic_load(&w->inbox) == s, "round %d: the delivery did not land", round);
      CHECK(pthread_create(&heir, NULL, pending_heir, NULL) == 0, "pthread_create failed");
    } else {
      CHECK(pthread_create(&heir, NULL, pending_heir, NULL) == 0, "pthread_create failed");
      unit_wait_for(&pend_step, 4);
      hm_heap_deliver(w, s);
      atomic_store(&pend_step, 5);
    }
    CHECK(pthread_join(heir, NULL) == 0, "pthread_join failed");
    bool was_freed = false;
    for (uint32_t i = 0; i <= wake; i++)
      was_freed |= pend.taken == pend.blocks[i];
    CHECK(was_freed, "round %d: the heir got %p, not one of the freed blocks", round, pend.taken);
    /* The heir exited holding its block: the span went to the arena. */
    check_arena_owned(s, HM_SPAN_LISTED, "the inherited span after its heir exited");
    hm_free(pend.taken);
    for (size_t i = wake + 1; i < cap; i++)
      if (pend.blocks[i] != pend.taken)
        hm_free(pend.blocks[i]);
    hm_free(pend.after);
    CHECK(bytes_in_use() == baseline, "round %d: bytes in use %zu, expected %zu", round,
          bytes_in_use(), baseline);
  }
  UNIT_PASS("a span whose delivery is in flight at thread exit stays pending "
            "in the heap "
            "structure, and the next thread to take it inherits the span "
            "(delivery before or "
            "after it started)");
}

/* ---- Many short threads ------------------------------------------------
 * Many short threads, a wave at a time: each allocates and frees blocks of
 * a few classes. Their heaps are reused; their spans leave when they exit,
 * and the spans of the next threads form on the same granules (or are the
 * same spans), not on new ones. */
#define WAVES UNIT_SCALE(150)
#define WAVE_THREADS 8
static const size_t short_sizes[] = {24, 100, 500, 3000, 20000, 100000};
#define SHORT_CLASSES (sizeof short_sizes / sizeof short_sizes[0])

/* Every granule a span of the short threads covered, one bit each, in a
 * row per region (registered on first sight). */
#define MAX_REGIONS 16
static _Atomic uintptr_t footprint_regions[MAX_REGIONS];
static _Atomic uint64_t footprint[MAX_REGIONS][HM_REGION_WORDS];

static void note_footprint(const hm_span *s)
{
  uintptr_t base = (uintptr_t)hm_region_of(s);
  unsigned row = 0;
  for (;; row++) {
    CHECK(row < MAX_REGIONS, "short threads' spans in more than %d regions", MAX_REGIONS);
    uintptr_t seen = atomic_load(&footprint_regions[row]);
    if (seen == 0 && atomic_compare_exchange_strong(&footprint_regions[row], &seen, base))
      break;
    if (seen == base)
      break;
  }
  size_t g = unit_granule_index(s);
  atomic_fetch_or(&footprint[row][g / 64], unit_bits(s->granules, g % 64));
}

static size_t footprint_granules(void)
{
  size_t n = 0;
  for (unsigned row = 0; row < MAX_REGIONS; row++)
    for (size_t w = 0; w < HM_REGION_WORDS; w++)
      n += (size_t)__builtin_popcountll(atomic_load(&footprint[row][w]));
  return n;
}

static void *short_lived(void *arg)
{
  hm_heap **heap = arg;
  void *blocks[SHORT_CLASSES][20];
  for (size_t c = 0; c < SHORT_CLASSES; c++)
    for (size_t i = 0; i < 20 && i < cap_of(hm_class_of(short_sizes[c])); i++) {
      blocks[c][i] = malloc_checked(short_sizes[c]);
      note_footprint(span_of(blocks[c][i]));
    }
  for (size_t c = 0; c < SHORT_CLASSES; c++)
    for (size_t i = 0; i < 20 && i < cap_of(hm_class_of(short_sizes[c])); i++)
      hm_free(blocks[c][i]);
  *heap = hm_tls;
  return NULL;
}

/* Distinct heaps seen so far, out of `count` new ones. */
static size_t note_heaps(hm_heap **seen, size_t distinct, hm_heap *const *fresh, size_t count)
{
  for (size_t i = 0; i < count; i++) {
    size_t j = 0;
    while (j < distinct && seen[j] != fresh[i])
      j++;
    if (j == distinct)
      seen[distinct++] = fresh[i];
  }
  return distinct;
}

static void check_short_threads(void)
{
  hm_arena *a = hm_arena_for_node(-1);
  size_t regions_before = atomic_load(&a->regions_live);
  size_t spans_before = atomic_load(&a->spans_formed);
  size_t baseline = bytes_in_use();
  static hm_heap *seen[WAVES * WAVE_THREADS];
  size_t distinct = 0;
  for (int w = 0; w < WAVES; w++) {
    hm_heap *heaps[WAVE_THREADS];
    run_threads(WAVE_THREADS, short_lived, heaps, sizeof heaps[0]);
    distinct = note_heaps(seen, distinct, heaps, WAVE_THREADS);
  }
  /* A wave holds at most one span per class per thread at once; twice
   * that leaves room for first-fit fragmentation. A leak, or spans formed
   * on new granules instead of the freed ones, would grow with the waves. */
  size_t wave_granules = 0;
  for (size_t c = 0; c < SHORT_CLASSES; c++)
    wave_granules += WAVE_THREADS * hm_class_granules[hm_class_of(short_sizes[c])];
  size_t granules = footprint_granules();
  CHECK(granules <= 2 * wave_granules,
        "%d threads in waves of %d: their spans covered %zu granules (at most "
        "%zu expected)",
        WAVES * WAVE_THREADS, WAVE_THREADS, granules, 2 * wave_granules);
  CHECK(distinct <= 2 * WAVE_THREADS, "%d threads in waves of %d used %zu distinct heaps",
        WAVES * WAVE_THREADS, WAVE_THREADS, distinct);
  size_t regions = atomic_load(&a->regions_live) - regions_before;
  CHECK(regions <= 2, "%d short threads reserved %zu new regions", WAVES * WAVE_THREADS, regions);
  CHECK(bytes_in_use() == baseline, "bytes in use %zu, expected %zu", bytes_in_use(), baseline);
  printf("ok: %d short threads: %zu spans formed on %zu granules (a wave holds "
         "at most %zu), "
         "%zu heaps, %zu new regions\n",
         WAVES * WAVE_THREADS, atomic_load(&a->spans_formed) - spans_before, granules,
         wave_granules, distinct, regions);
}

/* ---- Trim --------------------------------------------------------------
 * hm_trim: the caller's heap lets go at once of its spans whose blocks are
 * all free: empty active spans, and a partial span whose last blocks were
 * freed remotely (which no owner free notices); spans with live blocks
 * stay. Another thread's heap does the same at its next slow path. */
enum { TRIM_EMPTY_CLS = 45, TRIM_REMOTE_CLS = 44, TRIM_LIVE_CLS = 46, TRIM_OTHER_CLS = 47 };

static struct {
  void *remote_block;
  hm_span *span;
  hm_heap *heap;
} trim;
static _Atomic unsigned trim_step;

static void *remote_freer(void *arg)
{
  (void)arg;
  hm_free(trim.remote_block);
  return NULL;
}

static void *trimmed_worker(void *arg)
{
  (void)arg;
  void *p[3];
  for (int i = 0; i < 3; i++)
    p[i] = malloc_checked(hm_class_size[TRIM_OTHER_CLS]);
  trim.span = span_of(p[0]);
  trim.heap = hm_tls;
  for (int i = 0; i < 3; i++)
    hm_free(p[i]);
  CHECK(hm_tls->bins[TRIM_OTHER_CLS].active == trim.span, "the emptied span is not active");
  atomic_store(&trim_step, 1);
  unit_wait_for(&trim_step, 2); /* the main thread trimmed */
  CHECK(hm_tls->bins[TRIM_OTHER_CLS].active == trim.span,
        "another thread's trim touched this heap's lists");
  void *q = malloc_checked(hm_class_size[TRIM_OTHER_CLS + 1]); /* a slow path */
  CHECK(hm_tls->bins[TRIM_OTHER_CLS].active == NULL && owner_word(trim.span) != (uintptr_t)hm_tls,
        "the trim request was not honoured at the next slow path (active %p)",
        (void *)hm_tls->bins[TRIM_OTHER_CLS].active);
  if (hm_pagemap_header(trim.span) == trim.span)
    check_left_unused(trim.span, TRIM_OTHER_CLS, "an emptied span after a trim request");
  hm_free(q);
  return NULL;
}

static void check_trim(void)
{
  hm_heap *h = hm_tls;
  /* An emptied active span. */
  void *e[5];
  for (int i = 0; i < 5; i++)
    e[i] = malloc_checked(hm_class_size[TRIM_EMPTY_CLS]);
  hm_span *empty = span_of(e[0]);
  for (int i = 0; i < 5; i++)
    hm_free(e[i]);
  CHECK(h->bins[TRIM_EMPTY_CLS].active == empty && hm_pagemap_header(empty) == empty,
        "the emptied active span left before the trim");

  /* A partial span whose last block was freed by another thread. */
  size_t cap = cap_of(TRIM_REMOTE_CLS);
  void *r[64];
  fill_one_span(TRIM_REMOTE_CLS, r);
  void *next = malloc_checked(hm_class_size[TRIM_REMOTE_CLS]);
  hm_span *remote = span_of(r[0]), *next_span = span_of(next);
  check_parked(h, remote, "a full span");
  trim.remote_block = r[0];
  pthread_t t;
  CHECK(pthread_create(&t, NULL, remote_freer, NULL) == 0, "pthread_create failed");
  CHECK(pthread_join(t, NULL) == 0, "pthread_join failed");
  CHECK(hm_span_wake_count(remote) >= 2 && atomic_load(&h->inbox) == NULL,
        "one remote free delivered the span");
  for (size_t i = 1; i < cap; i++)
    hm_free(r[i]);
  CHECK(remote->queue == HM_Q_PARTIAL && hm_span_is_unused(remote) &&
            owner_word(remote) == (uintptr_t)h,
        "the span freed by its owner and one remote free: queue %u unused %d", remote->queue,
        hm_span_is_unused(remote));
  hm_free(next);

  /* A span with a live block. */
  void *live = malloc_checked(hm_class_size[TRIM_LIVE_CLS]);
  hm_span *live_span = span_of(live);

  hm_trim();
  /* Given back: the page map no longer knows them (their region may even
   * be gone: their headers are not read). */
  CHECK(h->bins[TRIM_EMPTY_CLS].active == NULL && hm_pagemap_header(empty) != empty,
        "trim kept the emptied active span (active %p)", (void *)h->bins[TRIM_EMPTY_CLS].active);
  CHECK(h->bins[TRIM_REMOTE_CLS].partial == NULL && h->bins[TRIM_REMOTE_CLS].npartial == 0 &&
            hm_pagemap_header(remote) != remote,
        "trim kept the unused partial span");
  CHECK(h->bins[TRIM_REMOTE_CLS].active == NULL && hm_pagemap_header(next_span) != next_span,
        "trim kept the emptied active span of class %d", TRIM_REMOTE_CLS);
  CHECK(h->bins[TRIM_LIVE_CLS].active == live_span && hm_pagemap_header(live) == live_span &&
            owner_word(live_span) == (uintptr_t)h,
        "trim let go of a span with a live block");
  memset(live, 0x5a, hm_class_size[TRIM_LIVE_CLS]);
  hm_free(live);

  /* Another thread's heap: at its next slow path. */
  CHECK(pthread_create(&t, NULL, trimmed_worker, NULL) == 0, "pthread_create failed");
  unit_wait_for(&trim_step, 1);
  hm_trim();
  atomic_store(&trim_step, 2);
  CHECK(pthread_join(t, NULL) == 0, "pthread_join failed");
  UNIT_PASS("trim releases the caller's empty active spans and unused partial "
            "spans at once, "
            "keeps spans in use, and other threads' at their next slow path");
}

int main(void)
{
  void *p = hm_malloc(1); /* sets up the process and this thread's heap */
  CHECK(p != NULL, "hm_malloc failed");
  hm_free(p);
  check_owned_spans();
  check_lifo_reuse();
  check_batch_free();
  check_delivery();
  check_budget();
  check_thread_exit();
  check_pending_inherited();
  check_short_threads();
  check_trim();
  return 0;
}
