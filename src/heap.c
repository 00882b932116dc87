#include "heap.h"

#include <errno.h>
#include <string.h>

#include "gate.h"
#include "init.h"
#include "large.h"
#include "purge.h"
#include "stats.h"

__thread hm_heap *hm_tls __attribute__((tls_model("initial-exec"))) = &hm_heap_empty;
__thread hm_bin_hot *hm_tls_cur __attribute__((tls_model("initial-exec"))) = &hm_bin_none;
hm_bin_hot hm_bin_none;

hm_heap hm_heap_empty;
static hm_heap heap_starting = {.kind = HM_HEAP_STARTING};
static hm_heap heap_dead = {.kind = HM_HEAP_DEAD};

/* ---- The pool of heap structures ------------------------------------------
 * Heaps are carved from granules straight from the OS (metadata that lives
 * for ever must not keep a region from being released) and never unmapped:
 * a freed one goes on a free stack, and the chunks stay listed so that a
 * fork child and the fork gate find every heap. Thread heaps and private
 * heaps have a stack each: a structure that a thread left with deliveries
 * in flight must go to another thread, never become a private heap. */
#define HEAPS_PER_CHUNK (HM_GRANULE / sizeof(hm_heap))

static hm_stack pool_free[2];
static hm_heap *_Atomic pool_chunks;

static hm_stack *pool_stack(uint32_t kind)
{
  return &pool_free[kind == HM_HEAP_PRIVATE];
}

static hm_heap *pool_grow(uint32_t kind)
{
  hm_heap *chunk = hm_os_reserve(HM_GRANULE, HM_GRANULE, true);
  if (chunk == NULL)
    return NULL;
  hm_heap *head = atomic_load_explicit(&pool_chunks, memory_order_relaxed);
  do {
    chunk->next_chunk = head;
  } while (!atomic_compare_exchange_weak_explicit(&pool_chunks, &head, chunk,
                                                  memory_order_seq_cst, memory_order_relaxed));
  for (size_t i = 1; i < HEAPS_PER_CHUNK; i++)
    hm_stack_push(pool_stack(kind), &chunk[i].link);
  return chunk;
}

static _Atomic uint32_t trim_epoch;

/* The thread id of heap `h` becomes `tid`; `acquired`: 1 when a new user
 * takes the structure. */
static void set_thread_id(hm_heap *h, uint32_t tid, uint64_t acquired)
{
  uint64_t count = (atomic_load_explicit(&h->thread_id, memory_order_relaxed) >> 32) + acquired;
  atomic_store_explicit(&h->thread_id, count << 32 | tid, memory_order_release);
}

static hm_heap *pool_acquire(uint32_t kind)
{
  hm_heap *h = (hm_heap *)hm_stack_pop(pool_stack(kind));
  if (h == NULL)
    h = pool_grow(kind);
  if (h == NULL)
    return NULL;
  memset(h->hot, 0, sizeof h->hot);
  memset(h->mallocs, 0, sizeof h->mallocs);
  memset(h->frees, 0, sizeof h->frees);
  memset(h->bins, 0, sizeof h->bins);
  h->kind = kind;
  set_thread_id(h, kind == HM_HEAP_THREAD ? hm_os_thread_id() : 0, 1);
  h->partial_bytes = 0;
  h->held = 0;
  h->limit = 0;
  h->large = NULL;
  memset(&h->runs, 0, sizeof h->runs);
  h->large_mallocs = h->large_frees = 0;
  h->large_bytes_allocated = h->large_bytes_freed = 0;
  h->trim_epoch = atomic_load_explicit(&trim_epoch, memory_order_relaxed);
  atomic_store_explicit(&h->in_use, 1, memory_order_release);
  return h;
}

static void pool_release(hm_heap *h)
{
  set_thread_id(h, 0, 0);
  atomic_store_explicit(&h->in_use, 0, memory_order_relaxed);
  hm_stack_push(pool_stack(h->kind), &h->link);
}

static void each_structure(void (*visit)(hm_heap *, void *), void *arg)
{
  /* seq_cst: a grace period's walk (hm_heap_wait_readers) finds every heap
   * whose reader it must see. */
  for (hm_heap *c = atomic_load_explicit(&pool_chunks, memory_order_seq_cst); c;
       c = c->next_chunk)
    for (size_t i = 0; i < HEAPS_PER_CHUNK; i++)
      visit(&c[i], arg);
}

struct each_in_use {
  void (*visit)(const hm_heap *, void *);
  void *arg;
};

static void visit_in_use(hm_heap *h, void *arg)
{
  struct each_in_use *e = arg;
  if (atomic_load_explicit(&h->in_use, memory_order_acquire))
    e->visit(h, e->arg);
}

void hm_heap_each(void (*visit)(const hm_heap *, void *), void *arg)
{
  struct each_in_use e = {visit, arg};
  each_structure(visit_in_use, &e);
}

static void gate_busy(hm_heap *h, void *arg)
{
  if (atomic_load_explicit(&h->gate, memory_order_seq_cst) != 0)
    *(bool *)arg = true;
}

static void wait_reader(hm_heap *h, void *period)
{
  for (;;) {
    uint64_t began = atomic_load_explicit(&h->rcu_period, memory_order_acquire);
    if (began == 0 || began >= *(uint64_t *)period)
      return;
    hm_os_yield();
  }
}

void hm_heap_wait_readers(uint64_t period)
{
  each_structure(wait_reader, &period);
}

bool hm_heap_gates_clear(void)
{
  bool busy = false;
  each_structure(gate_busy, &busy);
  return !busy;
}

typedef void (*span_fn)(hm_heap *h, hm_span *s, void *arg);
static void each_span(hm_heap *h, span_fn fn, void *arg);

/* ---- Queues ------------------------------------------------------------- */

static size_t span_bytes(const hm_span *s)
{
  return (size_t)s->granules * HM_GRANULE;
}

static void queue_push(hm_span **head, hm_span *s)
{
  hm_span *first = *head;
  if (first == NULL) {
    s->qnext = s->qprev = s;
  } else {
    s->qnext = first;
    s->qprev = first->qprev;
    first->qprev->qnext = s;
    first->qprev = s;
  }
  *head = s;
}

static void queue_remove(hm_span **head, hm_span *s)
{
  if (s->qnext == s) {
    *head = NULL;
  } else {
    s->qprev->qnext = s->qnext;
    s->qnext->qprev = s->qprev;
    if (*head == s)
      *head = s->qnext;
  }
  s->qnext = s->qprev = NULL;
}

static void span_unlink(hm_heap *h, hm_span *s)
{
  hm_bin *bin = &h->bins[s->cls];
  switch (s->queue) {
  case HM_Q_ACTIVE:
    bin->active = NULL;
    h->hot[s->cls].len = 0; /* free no longer takes its blocks for the active span's */
    break;
  case HM_Q_PARTIAL:
    queue_remove(&bin->partial, s);
    bin->npartial--;
    h->partial_bytes -= span_bytes(s);
    break;
  case HM_Q_FULL:
    queue_remove(&bin->full, s);
    break;
  case HM_Q_PENDING:
    queue_remove(&h->pending, s);
    break;
  }
  s->queue = HM_Q_NONE;
}

static void span_to_partial(hm_heap *h, hm_span *s)
{
  span_unlink(h, s);
  hm_bin *bin = &h->bins[s->cls];
  queue_push(&bin->partial, s);
  bin->npartial++;
  h->partial_bytes += span_bytes(s);
  s->queue = HM_Q_PARTIAL;
  atomic_store_explicit(&s->owner, (uintptr_t)h, memory_order_relaxed);
}

/* A span whose delivery to this heap is in flight stays, parked, until it
 * arrives (it must not be delivered to a heap that no longer owns it). */
static void span_to_pending(hm_heap *h, hm_span *s)
{
  span_unlink(h, s);
  queue_push(&h->pending, s);
  s->queue = HM_Q_PENDING;
  atomic_store_explicit(&s->owner, (uintptr_t)h | HM_OWNER_PARKED, memory_order_relaxed);
}

/* Statistics: the blocks the free fast path pushed on the span's local
 * list since the last look are frees of the owner's (the list holds
 * carved - used blocks). */
static void span_sync(hm_heap *h, hm_span *s)
{
  uint32_t local = hm_span_carved_blocks(s) - hm_span_used(s);
  if (local > s->local_counted)
    hm_count_n(&h->frees[s->cls], local - s->local_counted);
  s->local_counted = (uint16_t)local;
}

static hm_block *collect(hm_heap *h, hm_span *s)
{
  span_sync(h, s);
  return hm_span_collect(s);
}

/* The span leaves the heap: back to its region when unused, else to the
 * arena. False, and nothing done, while a delivery to this heap is in
 * flight. Private heaps call it for unused spans only. */
static bool span_leave(hm_heap *h, hm_span *s)
{
  span_sync(h, s);
  if (!hm_span_disarm(s))
    return false;
  span_unlink(h, s);
  h->held -= span_bytes(s);
  if (hm_span_is_unused(s))
    hm_arena_push_empty(s);
  else
    hm_span_to_arena(s);
  return true;
}

static void span_leave_or_pend(hm_heap *h, hm_span *s)
{
  if (!span_leave(h, s))
    span_to_pending(h, s);
}

/* Statistics: the allocation list of class `cls` is `len` blocks long. The
 * fast paths pop (malloc) and push (free) there without counting; what the
 * length lost since the last look were mallocs, what it gained frees. */
static void sync_class(hm_heap *h, unsigned cls, uint32_t len)
{
  hm_bin *bin = &h->bins[cls];
  int64_t popped = (int64_t)bin->synced - len;
  if (popped >= 0)
    hm_count_n(&h->mallocs[cls], (size_t)popped);
  else
    hm_count_n(&h->frees[cls], (size_t)-popped);
  bin->synced = (int32_t)len;
}

static uint32_t list_length(const hm_block *b)
{
  uint32_t n = 0;
  for (; b != NULL; b = b->next)
    n++;
  return n;
}

static void sync_span(hm_heap *h, hm_span *s, void *arg)
{
  (void)arg;
  span_sync(h, s);
}

void hm_heap_sync_counts(hm_heap *h)
{
  for (unsigned c = 0; c < HM_CLASSES; c++)
    if (h->bins[c].synced != 0 || h->hot[c].free != NULL)
      sync_class(h, c, list_length(h->hot[c].free));
  each_span(h, sync_span, NULL);
}

/* The active span of class `cls` gives back its allocation list: it can
 * then be judged like any other span. */
static hm_span *active_settle(hm_heap *h, unsigned cls)
{
  hm_span *s = h->bins[cls].active;
  sync_class(h, cls, list_length(h->hot[cls].free));
  if (s != NULL)
    hm_span_put_back(s, h->hot[cls].free);
  h->hot[cls].free = NULL;
  h->bins[cls].synced = 0;
  return s;
}

/* Keeps the heap's partial spans within HM_HEAP_PARTIAL_BUDGET: the oldest
 * partial span of the next class in turn goes to the arena, where another
 * thread can use it. */
static void enforce_budget(hm_heap *h)
{
  if (h->kind != HM_HEAP_THREAD)
    return;
  while (h->partial_bytes > HM_HEAP_PARTIAL_BUDGET) {
    unsigned c = h->budget_cursor;
    for (unsigned i = 0; i < HM_CLASSES && h->bins[c].partial == NULL; i++)
      c = (c + 1) % HM_CLASSES;
    h->budget_cursor = (c + 1) % HM_CLASSES;
    span_leave_or_pend(h, h->bins[c].partial->qprev);
  }
}

static void drain_inbox(hm_heap *h)
{
  if (atomic_load_explicit(&h->inbox, memory_order_relaxed) == NULL)
    return;
  hm_span *s = atomic_exchange_explicit(&h->inbox, NULL, memory_order_acquire);
  while (s != NULL) {
    hm_span *next = (hm_span *)atomic_load_explicit(&s->link.next, memory_order_relaxed);
    s->notify = HM_NOTIFY_NONE;
    if (s->queue == HM_Q_FULL || s->queue == HM_Q_PENDING)
      span_to_partial(h, s);
    s = next;
  }
  enforce_budget(h);
}

/* Pushes on a list that its owner takes whole (so no ABA). */
static void shared_push(hm_span *_Atomic *list, hm_span *s)
{
  hm_span *head = atomic_load_explicit(list, memory_order_relaxed);
  do {
    atomic_store_explicit(&s->link.next, (hm_link *)head, memory_order_relaxed);
  } while (!atomic_compare_exchange_weak_explicit(list, &head, s, memory_order_release,
                                                  memory_order_relaxed));
}

void hm_heap_deliver(hm_heap *h, hm_span *s)
{
  shared_push(&h->inbox, s);
}

static void drain_large(hm_heap *h)
{
  if (atomic_load_explicit(&h->large_freed, memory_order_relaxed) == NULL)
    return;
  hm_span *s = atomic_exchange_explicit(&h->large_freed, NULL, memory_order_acquire);
  while (s != NULL) {
    hm_span *next = (hm_span *)atomic_load_explicit(&s->link.next, memory_order_relaxed);
    queue_remove(&h->large, s);
    h->held -= s->size;
    hm_large_release(s);
    s = next;
  }
}

/* Lets go of the spans whose blocks are all free, so they can go back to
 * the OS (a trim). */
static void release_unused(hm_heap *h)
{
  h->trim_epoch = atomic_load_explicit(&trim_epoch, memory_order_relaxed);
  drain_inbox(h);
  hm_run_cache_flush(&h->runs);
  for (unsigned c = 0; c < HM_CLASSES; c++) {
    hm_bin *bin = &h->bins[c];
    hm_span *s = active_settle(h, c);
    if (s != NULL && hm_span_is_unused(s))
      span_leave(h, s);
    for (uint32_t n = bin->npartial; n > 0 && bin->partial != NULL; n--) {
      s = bin->partial->qprev;
      if (hm_span_is_unused(s) && span_leave(h, s))
        continue;
      bin->partial = s; /* rotate: look at the next oldest */
    }
  }
}

/* What every slow path of a heap does first: requests from other threads. */
static void housekeeping(hm_heap *h)
{
  if (h->trim_epoch != atomic_load_explicit(&trim_epoch, memory_order_relaxed))
    release_unused(h);
  drain_inbox(h);
  drain_large(h);
  hm_run_cache_age(&h->runs);
}

/* ---- Allocation --------------------------------------------------------- */

/* The active span is full: park it where the owner will not look until
 * remote frees wake it. Returns blocks instead if some arrived meanwhile. */
static hm_block *park(hm_heap *h, hm_span *s)
{
  if (s->notify == HM_NOTIFY_NONE && !hm_span_arm(s))
    return collect(h, s);
  hm_bin *bin = &h->bins[s->cls];
  span_unlink(h, s);
  queue_push(&bin->full, s);
  s->queue = HM_Q_FULL;
  atomic_store_explicit(&s->owner, (uintptr_t)h | HM_OWNER_PARKED, memory_order_relaxed);
  return NULL;
}

/* Makes `s` the active span of its class; its free blocks, or NULL (then
 * it is parked). */
static hm_block *activate(hm_heap *h, hm_span *s)
{
  span_unlink(h, s);
  h->bins[s->cls].active = s;
  s->queue = HM_Q_ACTIVE;
  atomic_store_explicit(&s->owner, (uintptr_t)h, memory_order_relaxed);
  hm_block *list = collect(h, s);
  return list != NULL ? list : park(h, s);
}

/* A span from the arena: a partial one (thread heaps: its blocks are
 * anybody's, and private heaps must free all of theirs at once) or a new
 * one, within the heap's limit. */
static hm_span *take_span(hm_heap *h, unsigned cls)
{
  bool private = hm_heap_is_private(h);
  size_t bytes = (size_t)hm_class_granules[cls] * HM_GRANULE;
  if (h->limit != 0 && h->held + bytes > h->limit)
    return NULL;
  hm_span *s = hm_arena_take_span(h->arena, cls, !private);
  if (s == NULL)
    return NULL;
  h->held += bytes;
  s->gradual = private;
  s->queue = HM_Q_NONE;
  s->notify = HM_NOTIFY_NONE;
  atomic_store_explicit(&s->state, HM_SPAN_OWNED, memory_order_relaxed);
  return s;
}

/* Calls fn on every span of the heap; fn may take the span out. */
static void each_span(hm_heap *h, span_fn fn, void *arg)
{
  for (unsigned c = 0; c < HM_CLASSES; c++) {
    hm_bin *bin = &h->bins[c];
    if (bin->active != NULL)
      fn(h, bin->active, arg);
    hm_span **queues[] = {&bin->partial, &bin->full};
    for (unsigned q = 0; q < 2; q++) {
      hm_span *s = *queues[q];
      for (hm_span *end = s ? s->qprev : NULL; s != NULL;) {
        hm_span *next = s == end ? NULL : s->qnext;
        fn(h, s, arg);
        s = next;
      }
    }
  }
}

static void leave_if_foreign(hm_heap *h, hm_span *s, void *arena)
{
  if (s->arena != arena)
    span_leave_or_pend(h, s);
}

/* The thread moved to another NUMA node: its spans of other nodes go back
 * to their arenas (where threads of their node use them), and new spans
 * come from the node it runs on now. */
static void follow_node(hm_heap *h)
{
  hm_arena *a = hm_arena_for_node(-1);
  if (hm_likely(a == h->arena))
    return;
  h->arena = a;
  for (unsigned c = 0; c < HM_CLASSES; c++)
    active_settle(h, c);
  each_span(h, leave_if_foreign, a);
}

static hm_block *refill(hm_heap *h, unsigned cls)
{
  housekeeping(h);
  if (h->kind == HM_HEAP_THREAD)
    follow_node(h);
  hm_bin *bin = &h->bins[cls];
  hm_block *list;
  if (bin->active != NULL && (list = activate(h, bin->active)) != NULL)
    return list;
  while (bin->partial != NULL)
    if ((list = activate(h, bin->partial)) != NULL)
      return list;
  for (;;) {
    hm_span *s = take_span(h, cls);
    if (s == NULL)
      return NULL;
    if ((list = activate(h, s)) != NULL)
      return list;
  }
}

/* One block for a thread without a usable heap: take a span, take a block,
 * give the span back. Costs a few CAS, and is only for re-entrant calls and
 * threads being born or dying. */
static hm_block *alloc_direct(unsigned cls)
{
  hm_gate_enter();
  hm_arena *a = hm_arena_for_node(-1);
  hm_block *b = NULL;
  hm_span *s;
  while (b == NULL && (s = hm_arena_take_span(a, cls, true)) != NULL) {
    atomic_store_explicit(&s->state, HM_SPAN_OWNED, memory_order_relaxed);
    b = hm_span_collect(s);
    hm_span_release(s, b != NULL ? b->next : NULL);
  }
  hm_gate_exit();
  if (b != NULL)
    hm_stats_count_direct(hm_class_size[cls]);
  return b;
}

hm_heap *hm_heap_thread_start(void)
{
  hm_tls = &heap_starting;
  hm_process_init();
  hm_heap *h = pool_acquire(HM_HEAP_THREAD);
  if (h == NULL) {
    hm_tls = &hm_heap_empty; /* try again at the next malloc */
    return &heap_starting;
  }
  h->arena = hm_arena_for_node(-1);
  hm_os_thread_attach(h); /* may allocate: served directly */
  hm_stats_count_thread();
  hm_tls = h;
  hm_topology_start(); /* once per process; may allocate, now through h */
  return h;
}

/* Whether the heap's lists may be used now: a private heap always, a
 * thread's heap unless the call is nested in one of its slow paths. */
static bool usable(hm_heap *h)
{
  return h->kind == HM_HEAP_PRIVATE ||
         (h->kind == HM_HEAP_THREAD && atomic_load_explicit(&h->gate, memory_order_relaxed) == 0);
}

void *hm_heap_alloc_slow(hm_heap *h, size_t size, uint64_t *old_key)
{
  if (h->kind == HM_HEAP_EMPTY)
    h = hm_heap_thread_start(); /* first: the class table is built at process start */
  else if (h->kind == HM_HEAP_PRIVATE)
    hm_heap_thread(); /* the gate and statistics of the calling thread */
  unsigned cls = hm_class_of(size);
  hm_block *b;
  bool refilled = false;
  if (!usable(h)) {
    b = alloc_direct(cls);
  } else {
    /* Frees nested in this slow path (from libc, liburcu) must not push on
     * the allocation lists it is changing: they take the page map. */
    bool own = h == hm_tls;
    if (own) {
      hm_tls_cur = &hm_bin_none;
      h->hot[cls].len = 0; /* (free_sized finds the class by its size) */
    }
    b = h->hot[cls].free;
    hm_span *active = h->bins[cls].active;
    if (b == NULL && active != NULL && active->local_free != NULL) {
      /* What the owner freed into its active span: no span moves, so this
       * needs neither the gate nor a purge tick. */
      sync_class(h, cls, 0);
      b = collect(h, active);
      h->bins[cls].synced = (int32_t)active->collected;
    } else if (b == NULL) {
      sync_class(h, cls, 0);
      hm_gate_enter();
      b = refill(h, cls);
      hm_gate_exit();
      refilled = true;
      if (b != NULL)
        h->bins[cls].synced = (int32_t)h->bins[cls].active->collected;
    }
    if (b != NULL) {
      h->hot[cls].free = b->next;
      hm_heap_count_pop(h, &h->hot[cls]);
    }
    if (own) {
      hm_bin_hot *hot = &h->hot[cls];
      active = h->bins[cls].active;
      if (active != NULL) {
        hot->blocks = active->blocks;
        hot->divisor = active->divisor;
        hot->len = atomic_load_explicit(&active->carved, memory_order_relaxed);
      }
      hm_tls_cur = hot;
    }
  }
  if (b == NULL)
    return hm_alloc_failed(h, size, HM_MIN_ALIGN, old_key);
  *old_key = b->key;
  b->key = 0;
  /* Last: the heap is consistent again, and a purge pass (or starting the
   * purge thread, which allocates) may run. */
  if (refilled)
    hm_purge_tick();
  return b;
}

void hm_heap_trim(void)
{
  atomic_fetch_add_explicit(&trim_epoch, 1, memory_order_relaxed);
  hm_heap *h = hm_tls;
  if (h->kind == HM_HEAP_THREAD && usable(h)) {
    hm_gate_enter();
    release_unused(h);
    hm_gate_exit();
  }
}

/* ---- Free --------------------------------------------------------------- */

static bool is_double_free(hm_heap *h, hm_span *s, const hm_block *b)
{
  if (b->key != hm_free_key)
    return false;
  /* The key says free. A block of a span we own can be confirmed: it is on
   * one of our lists or on the remote list, which only we consume. For any
   * other span, only a program that read the random key out of freed memory
   * could have put it there. */
  if (hm_span_owner(s) != h)
    return true;
  return hm_block_list_contains(s->local_free, b) ||
         (s->queue == HM_Q_ACTIVE && hm_block_list_contains(h->hot[s->cls].free, b)) ||
         hm_block_list_contains(
             hm_remote_list(atomic_load_explicit(&s->remote, memory_order_acquire)), b);
}

void hm_heap_span_unused(hm_heap *h, hm_span *s)
{
  /* The active span stays: a class keeps one empty span. */
  if (s->queue != HM_Q_PARTIAL || !usable(h))
    return;
  hm_gate_enter();
  span_leave(h, s);
  hm_gate_exit();
  /* A burst freed by its own thread ends here, with no malloc to run the
   * passes that give it back (or to start the purge thread, which sees it
   * through an idle process): once a span. */
  hm_purge_tick();
}

/* The owner frees into a span it parked (or holds pending): the span is
 * worth allocating from again. Plain stores only. */
static void free_into_parked(hm_heap *h, hm_span *s)
{
  hm_gate_enter();
  span_to_partial(h, s);
  if (hm_span_used(s) != 0)
    enforce_budget(h);
  hm_gate_exit();
  if (hm_span_used(s) == 0)
    hm_heap_span_unused(h, s);
}

void hm_heap_check_live(hm_heap *h, hm_span *s, const void *p, const char *func)
{
  if (is_double_free(h, s, p))
    hm_fatal(func, "double free", p);
}

void hm_heap_free_block(hm_heap *h, hm_span *s, void *p, const char *func)
{
  hm_block *b = p;
  hm_heap_check_live(h, s, p, func);
  uintptr_t owner = atomic_load_explicit(&s->owner, memory_order_relaxed);
  if ((owner & ~HM_OWNER_PARKED) == (uintptr_t)h && usable(h)) {
    b->next = s->local_free;
    b->key = hm_free_key;
    s->local_free = b;
    uint32_t used = hm_span_dec_used(s); /* counted by span_sync */
    if (owner & HM_OWNER_PARKED)
      free_into_parked(h, s);
    else if (used == 0)
      hm_heap_span_unused(h, s);
    return;
  }
  bool counted = h->kind == HM_HEAP_THREAD;
  if (counted)
    hm_count(&h->frees[s->cls]);
  else
    hm_stats_count_direct_free(s->block_size);
  if (counted && s->arena != h->arena)
    atomic_fetch_add_explicit(&s->arena->cross_node_frees, 1, memory_order_relaxed);
  /* No read section: the span is alive while `b` is in use, and the free
   * does not touch it once `b` is on its list (hm_span_free_remote). */
  hm_span_free_remote(s, b);
  /* Bursts are often freed on this path: let it run purge passes too, at
   * most every 256 frees (reading the clock costs). */
  if (counted && (++h->slow_frees & 255) == 0)
    hm_purge_tick();
}

/* ---- Thread exit and fork ----------------------------------------------- */

/* Every span goes back, except those with a delivery in flight: they wait
 * in the pending list for the next thread that takes this structure. */
static void flush(hm_heap *h)
{
  hm_gate_enter();
  drain_inbox(h);
  hm_run_cache_flush(&h->runs);
  for (unsigned c = 0; c < HM_CLASSES; c++) {
    hm_bin *bin = &h->bins[c];
    if (active_settle(h, c) != NULL)
      span_leave_or_pend(h, bin->active);
    while (bin->partial != NULL)
      span_leave_or_pend(h, bin->partial);
    while (bin->full != NULL)
      span_leave_or_pend(h, bin->full);
  }
  hm_gate_exit();
  hm_stats_merge(h);
}

void hm_heap_thread_exit(void *arg)
{
  hm_heap *h = arg;
  hm_tls = &heap_dead;
  hm_tls_cur = &hm_bin_none;
  flush(h);
  pool_release(h);
}

/* A thread heap whose thread is gone: its exit hook did not run. Only the
 * reclaiming thread touches it (nobody else hands a heap in use back), so
 * it acts as the owner, as a fork child does for the threads it lost. */
static void reclaim_if_orphaned(hm_heap *h, void *self)
{
  uint64_t id = atomic_load_explicit(&h->thread_id, memory_order_acquire);
  uint32_t tid = (uint32_t)id;
  if (h == self || tid == 0 || hm_os_thread_alive(tid))
    return;
  /* Its thread is gone; unless the structure was released (and perhaps
   * taken again) since the id was read, the heap is ours now. */
  if (!atomic_compare_exchange_strong_explicit(&h->thread_id, &id, id & ~(uint64_t)UINT32_MAX,
                                               memory_order_acq_rel, memory_order_relaxed))
    return;
  flush(h);
  pool_release(h);
}

void hm_heap_reclaim_orphans(void)
{
  /* In the gate: a fork must not find a heap half handed back. */
  hm_gate_enter();
  each_structure(reclaim_if_orphaned, hm_tls);
  hm_gate_exit();
}

static void fork_child_visit(hm_heap *h, void *self)
{
  if (h == self)
    return;
  /* Its thread did not survive the fork, nor did its read sections. */
  h->rcu_depth = 0;
  atomic_store_explicit(&h->rcu_period, 0, memory_order_relaxed);
  bool in_use = atomic_load_explicit(&h->in_use, memory_order_relaxed);
  if (in_use && h->kind == HM_HEAP_PRIVATE)
    return; /* the program's, and consistent: the fork gate saw to it */
  if (!in_use && h->pending == NULL && atomic_load(&h->inbox) == NULL)
    return;
  /* A heap of a thread that did not survive the fork, or a free structure
   * holding spans for its next thread. Every delivery has landed (the
   * gate), so after the drain nothing is pending. */
  hm_run_cache_forget(&h->runs);
  flush(h);
  if (in_use)
    pool_release(h);
}

void hm_heap_fork_child(void)
{
  if (hm_tls->kind == HM_HEAP_THREAD)
    set_thread_id(hm_tls, hm_os_thread_id(), 0); /* the child's thread has an id of its own */
  each_structure(fork_child_visit, hm_tls);
}

/* ---- Private heaps ------------------------------------------------------ */

hm_heap *hm_heap_private_new(int node, size_t limit)
{
  hm_heap *h = pool_acquire(HM_HEAP_PRIVATE);
  if (h == NULL)
    return NULL;
  h->arena = hm_arena_for_node(node);
  h->limit = limit;
  return h;
}

void hm_heap_private_free(hm_heap *h)
{
  hm_heap_release_all(h);
  pool_release(h);
}

/* Blocks of span `s` in use. */
static uint32_t span_live(const hm_heap *h, const hm_span *s)
{
  uint32_t live = hm_span_used(s) - hm_span_remote_count(s);
  if (s->queue == HM_Q_ACTIVE)
    for (const hm_block *b = h->hot[s->cls].free; b != NULL; b = b->next)
      live--;
  return live;
}

static void count_span(hm_heap *h, hm_span *s, void *arg)
{
  size_t *live = arg;
  uint32_t n = span_live(h, s);
  live[0] += n;
  live[1] += (size_t)n * s->block_size;
}

/* Every block of the span is freed at once: it is formatted anew (its lists
 * do not hold the blocks that were live) and waits on the empty stack. */
static void drop_span(hm_heap *h, hm_span *s, void *arg)
{
  count_span(h, s, arg);
  span_unlink(h, s);
  hm_span_format(s, s->cls, false);
  hm_arena_push_empty(s);
}

void hm_heap_release_all(hm_heap *h)
{
  hm_gate_enter();
  /* Inbox entries are spans of the lists below; large-free entries are on
   * the large list. */
  atomic_store_explicit(&h->inbox, NULL, memory_order_relaxed);
  atomic_store_explicit(&h->large_freed, NULL, memory_order_relaxed);
  hm_heap_sync_counts(h); /* while the allocation lists are there to walk */
  size_t live[2] = {0, 0};
  each_span(h, drop_span, live);
  while (h->large != NULL) {
    hm_span *s = h->large;
    queue_remove(&h->large, s);
    if (atomic_load_explicit(&s->state, memory_order_relaxed) == HM_SPAN_LIVE) {
      live[0]++;
      live[1] += hm_large_usable(s);
    }
    hm_large_drop(s);
  }
  hm_stats_merge(h); /* before the counters are cleared */
  hm_stats_count_freed(live[0], live[1]);
  memset(h->hot, 0, sizeof h->hot);
  memset(h->bins, 0, sizeof h->bins);
  h->partial_bytes = 0;
  h->held = 0;
  hm_gate_exit();
}

bool hm_heap_large_add(hm_heap *h, hm_span *s)
{
  drain_large(h);
  if (h->limit != 0 && h->held + s->size > h->limit)
    return false;
  h->held += s->size;
  atomic_store_explicit(&s->owner, (uintptr_t)h, memory_order_relaxed);
  queue_push(&h->large, s);
  return true;
}

void hm_heap_large_freed(hm_heap *h, hm_span *s)
{
  shared_push(&h->large_freed, s);
}

struct walk {
  int (*fn)(void *block, size_t size, void *arg);
  void *arg;
  int result;
};

/* Marks the blocks of `list` in the span's bitmap of free blocks. */
static void mark_free(const hm_span *s, const hm_block *list, uint64_t *bits)
{
  for (; list != NULL; list = list->next) {
    size_t i = (size_t)((const uint8_t *)list - s->blocks) / s->block_size;
    bits[i / 64] |= (uint64_t)1 << (i % 64);
  }
}

static void walk_span(hm_heap *h, hm_span *s, void *arg)
{
  struct walk *w = arg;
  if (w->result != 0)
    return;
  /* Take the remote list in, so the free blocks are all on our lists; a
   * parked span with free blocks must be where allocation looks again (its
   * notification may be gone with the list). */
  hm_block *remote = hm_span_take_remote(s);
  hm_span_put_back(s, remote);
  if (remote != NULL && s->queue == HM_Q_FULL)
    span_to_partial(h, s);
  uint64_t bits[HM_SPAN_MAX_BLOCKS / 64] = {0};
  mark_free(s, s->local_free, bits);
  if (s->queue == HM_Q_ACTIVE)
    mark_free(s, h->hot[s->cls].free, bits);
  uint32_t carved = hm_span_carved_blocks(s);
  for (uint32_t i = 0; i < carved && w->result == 0; i++)
    if (!(bits[i / 64] & ((uint64_t)1 << (i % 64))))
      w->result = w->fn(s->blocks + (size_t)i * s->block_size, s->block_size, w->arg);
}

int hm_heap_walk(hm_heap *h, int (*fn)(void *block, size_t size, void *arg), void *arg)
{
  struct walk w = {fn, arg, 0};
  hm_gate_enter();
  drain_inbox(h);
  drain_large(h);
  each_span(h, walk_span, &w);
  hm_gate_exit();
  if (w.result != 0 || h->large == NULL)
    return w.result;
  hm_span *s = h->large;
  do {
    hm_span *next = s->qnext;
    if (atomic_load_explicit(&s->state, memory_order_relaxed) == HM_SPAN_LIVE)
      w.result = fn(s->blocks, hm_large_usable(s), arg);
    s = next;
  } while (w.result == 0 && s != h->large);
  return w.result;
}

void hm_heap_stats_of(hm_heap *h, size_t *blocks, size_t *bytes)
{
  size_t live[2] = {0, 0};
  hm_gate_enter();
  drain_large(h);
  each_span(h, count_span, live);
  hm_gate_exit();
  hm_span *s = h->large;
  if (s != NULL)
    do {
      if (atomic_load_explicit(&s->state, memory_order_relaxed) == HM_SPAN_LIVE) {
        live[0]++;
        live[1] += hm_large_usable(s);
      }
      s = s->qnext;
    } while (s != h->large);
  *blocks = live[0];
  *bytes = live[1];
}
