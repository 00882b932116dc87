/* Private heaps under stress: many more threads than cores each create,
 * use, reset and destroy private heaps (thousands in all), hand blocks to
 * other threads, which verify and free them (or realloc them, or move them
 * into a heap of their own) while the heap lives, and now and then hand a
 * whole heap, with its blocks, to another thread, which allocates from it
 * and destroys it. Every block carries a pattern verified before every free
 * and after every realloc; now and then a thread trims. Before each reset or destroy, with no handed-off
 * block outstanding, hm_heap_visit and hm_heap_stats_get must agree exactly
 * with the test's own account of the heap; while blocks are outstanding,
 * hm_heap_visit must count between the blocks held and those plus the
 * outstanding ones. At the end the global bytes in use are back at the
 * baseline.
 *
 * An owner waits for its handed-off blocks (a per-heap atomic count) before
 * it resets or destroys a heap, as the API requires; while it waits it
 * frees what others handed to it, so no two threads wait on each other.
 *
 * Built against the hm_ API (hm_free; also with TSan and UBSan, fewer
 * operations) and the override library (plain free and realloc). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>

#define TEST_CHECK_PLAIN
#include "heap_test.h"

#ifndef THREADS
#define THREADS 32
#endif
#ifndef HEAPS_PER_THREAD
#define HEAPS_PER_THREAD 120 /* heap lifetimes each thread starts */
#endif
#ifndef OPS_PER_HEAP
#define OPS_PER_HEAP 300 /* mean operations on a heap before it retires */
#endif
#define LIVE_HEAPS 3   /* heaps a thread works on at once */
#define SLOTS 48       /* blocks a heap holds at most (test side) */
#define POOL (THREADS * 8)
#define RING 512       /* blocks waiting in a thread's inbox, at most */
#define HEAP_RING 8    /* heaps waiting in a thread's heap inbox, at most */
#define ADOPT_OPS 120  /* operations on an adopted heap before it is destroyed */
#define LIMIT (2 * MiB)
#define WAIT_BOUND_S 120.0
#define SEED 0x4EA95EEDull

/* One heap and the test's account of it. */
struct heap_ctx {
  hm_heap *h;
  size_t limit;
  /* Handed-off blocks not yet freed: +1 (relaxed) by the owner before it
   * hands one away, -1 (release) by the receiver after its free returned;
   * the owner reads it with acquire before reset and destroy. */
  _Atomic size_t outstanding;
  struct hblock slots[SLOTS];
  size_t live; /* slots in use */
  unsigned budget;
  struct heap_ctx *next; /* on the pool's free list */
};

struct msg {
  struct hblock b;
  struct heap_ctx *ctx;
};

struct worker {
  pthread_t thread;
  unsigned id;
  struct rng rng;
  struct heap_ctx *own[LIVE_HEAPS];
  bool finished; /* sends nothing any more */
  bool draining; /* inside a wait: received blocks are only freed */
  pthread_mutex_t lock;
  struct msg ring[RING];
  size_t ring_head, ring_count;
  struct heap_ctx *heaps_in[HEAP_RING];
  size_t heaps_in_count;
  struct visited scratch[SLOTS + 8];
  /* counts */
  size_t created, destroyed, resets, allocs, limit_failures, sent, received, moved_in,
      heaps_given, heaps_adopted, exact_checks, racing_visits;
};

static struct heap_ctx *pool;
static struct heap_ctx *pool_free;
static size_t pool_free_count;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct worker *workers;
static atomic_uint finished;
static pthread_barrier_t all_started;

/* ---- the pool of heap records (outside the allocator) ---- */

static struct heap_ctx *ctx_get(void)
{
  pthread_mutex_lock(&pool_lock);
  struct heap_ctx *c = pool_free;
  if (c != NULL) {
    pool_free = c->next;
    pool_free_count--;
  }
  pthread_mutex_unlock(&pool_lock);
  return c;
}

static void ctx_put(struct heap_ctx *c)
{
  memset(c, 0, sizeof *c);
  pthread_mutex_lock(&pool_lock);
  c->next = pool_free;
  pool_free = c;
  pool_free_count++;
  pthread_mutex_unlock(&pool_lock);
}

/* ---- sizes and blocks ---- */

static size_t pick_size(struct rng *r)
{
  uint64_t d = rng_below(r, 100000);
  if (d < 15)
    return rng_range(r, 5 * MiB, 6 * MiB);
  if (d < 400)
    return rng_range(r, 130 * KiB, 1 * MiB);
  if (d < 8000)
    return rng_range(r, 1025, 32 * KiB);
  return rng_range(r, 1, 1024);
}

static bool may_fail(const struct heap_ctx *c, void *p, const char *call)
{
  if (p != NULL)
    return false;
  if (c->limit == 0 || errno != ENOMEM)
    fail("%s failed (errno %d) in a heap %s", call, errno,
         c->limit ? "with a limit" : "without a limit");
  return true;
}

/* A new block in slot s of c, any way the API allows. */
static void block_new(struct worker *w, struct heap_ctx *c, struct hblock *s)
{
  size_t size = pick_size(&w->rng);
  uint64_t how = rng_below(&w->rng, 100);
  size_t align = 0;
  void *p;
  errno = 0;
  if (how < 70) {
    p = hm_heap_malloc(c->h, size);
  } else if (how < 80) {
    p = rng_below(&w->rng, 2) ? hm_heap_calloc(c->h, size, 1) : hm_heap_calloc(c->h, 1, size);
    if (p != NULL && !all_zero(p, size))
      fail("hm_heap_calloc(%zu) = %p is not zeroed", size, p);
  } else if (how < 90) {
    align = (size_t)32 << rng_below(&w->rng, 8);
    p = hm_heap_aligned_alloc(c->h, align, size);
    if (p != NULL && ((uintptr_t)p & (align - 1)) != 0)
      fail("hm_heap_aligned_alloc(%zu, %zu) = %p is misaligned", align, size, p);
  } else {
    p = hm_heap_realloc(c->h, NULL, size);
  }
  if (may_fail(c, p, "an allocation from a heap")) {
    w->limit_failures++;
    return;
  }
  size_t usable = hb_usable(p);
  if (usable < size)
    fail("usable size %zu of %p < %zu requested", usable, p, size);
  *s = (struct hblock){.p = p, .size = size, .align = align};
  hb_fill(s, rng_next(&w->rng));
  c->live++;
  w->allocs++;
}

static void block_free(struct heap_ctx *c, struct hblock *s, const char *where)
{
  hb_verify(s, where);
  t_free(s->p);
  *s = (struct hblock){0};
  c->live--;
}

/* Reallocs the block in slot s within `to` (c's heap or another of the
 * thread's), into slot d of `to` (d may be s). */
static void block_realloc(struct worker *w, struct heap_ctx *c, struct hblock *s,
                          struct heap_ctx *to, struct hblock *d)
{
  hb_verify(s, "before hm_heap_realloc");
  size_t size = pick_size(&w->rng);
  errno = 0;
  void *q = hm_heap_realloc(to->h, s->p, size);
  if (may_fail(to, q, "hm_heap_realloc")) {
    hb_verify(s, "after a failed hm_heap_realloc");
    return;
  }
  hb_verify_moved(q, s->size < size ? s->size : size, s, "after hm_heap_realloc");
  if (hb_usable(q) < size)
    fail("usable size %zu of %p < %zu after hm_heap_realloc", hb_usable(q), q, size);
  /* Kept in place, an over-aligned block is still the pointer inside its
   * block that aligned_alloc returned. */
  size_t align = q == s->p ? s->align : 0;
  *s = (struct hblock){0};
  c->live--;
  *d = (struct hblock){.p = q, .size = size, .align = align};
  hb_fill(d, rng_next(&w->rng));
  to->live++;
}

/* Reallocs the block out of the heap with plain realloc, then frees it. */
static void block_realloc_out(struct worker *w, struct heap_ctx *c, struct hblock *s)
{
  hb_verify(s, "before realloc");
  size_t size = pick_size(&w->rng);
  void *q = t_realloc(s->p, size);
  if (q == NULL)
    fail("realloc(%p, %zu) of a heap block failed", s->p, size);
  hb_verify_moved(q, s->size < size ? s->size : size, s, "after realloc of a heap block");
  t_free(q);
  *s = (struct hblock){0};
  c->live--;
}

/* ---- handing blocks and heaps to other threads ---- */

static unsigned other_worker(struct worker *w)
{
  return (w->id + 1 + (unsigned)rng_below(&w->rng, THREADS - 1)) % THREADS;
}

static bool send_block(struct worker *w, struct heap_ctx *c, struct hblock *s)
{
  struct worker *to = &workers[other_worker(w)];
  atomic_fetch_add_explicit(&c->outstanding, 1, memory_order_relaxed);
  pthread_mutex_lock(&to->lock);
  bool ok = to->ring_count < RING;
  if (ok) {
    to->ring[(to->ring_head + to->ring_count) % RING] = (struct msg){*s, c};
    to->ring_count++;
  }
  pthread_mutex_unlock(&to->lock);
  if (!ok) {
    atomic_fetch_sub_explicit(&c->outstanding, 1, memory_order_relaxed);
    return false;
  }
  *s = (struct hblock){0};
  c->live--;
  w->sent++;
  return true;
}

static struct hblock *free_slot(struct heap_ctx *c)
{
  for (size_t i = 0; i < SLOTS; i++)
    if (c->slots[i].p == NULL)
      return &c->slots[i];
  return NULL;
}

/* Takes what others handed to this thread: frees each block (verified),
 * or reallocs it first, or moves it into one of its own heaps. */
static void drain_blocks(struct worker *w)
{
  for (;;) {
    struct msg batch[32];
    size_t n = 0;
    pthread_mutex_lock(&w->lock);
    while (n < 32 && w->ring_count > 0) {
      batch[n++] = w->ring[w->ring_head];
      w->ring_head = (w->ring_head + 1) % RING;
      w->ring_count--;
    }
    pthread_mutex_unlock(&w->lock);
    if (n == 0)
      return;
    for (size_t i = 0; i < n; i++) {
      struct hblock *b = &batch[i].b;
      struct heap_ctx *origin = batch[i].ctx;
      uint64_t how = rng_below(&w->rng, 100);
      struct heap_ctx *mine = w->own[rng_below(&w->rng, LIVE_HEAPS)];
      struct hblock *d = NULL;
      if (how < 10 && !w->draining && !w->finished && mine != NULL && mine->limit == 0 &&
          (d = free_slot(mine)) != NULL) {
        /* Into a heap of this thread, while the first heap lives. */
        hb_verify(b, "received block, before hm_heap_realloc into the receiver's heap");
        size_t size = b->size / 2 + 1;
        void *q = hm_heap_realloc(mine->h, b->p, size);
        if (q == NULL)
          fail("hm_heap_realloc(%p, %zu) of a received block failed", b->p, size);
        hb_verify_moved(q, size, b, "received block, after hm_heap_realloc");
        *d = (struct hblock){.p = q, .size = size, .align = q == b->p ? b->align : 0};
        hb_fill(d, rng_next(&w->rng));
        mine->live++;
        w->moved_in++;
      } else if (how < 30) {
        hb_verify(b, "received block, before realloc");
        size_t size = pick_size(&w->rng);
        void *q = t_realloc(b->p, size);
        if (q == NULL)
          fail("realloc(%p, %zu) of a received heap block failed", b->p, size);
        hb_verify_moved(q, b->size < size ? b->size : size, b, "received block, after realloc");
        t_free(q);
      } else {
        hb_verify(b, "received block, before free");
        t_free(b->p);
      }
      /* The free has returned: the owner may reset or destroy now. Not a
       * look at origin after this. */
      atomic_fetch_sub_explicit(&origin->outstanding, 1, memory_order_release);
      w->received++;
    }
  }
}

static void drain_help(void *arg)
{
  struct worker *w = arg;
  bool was = w->draining;
  w->draining = true;
  drain_blocks(w);
  w->draining = was;
}

/* Waits until no block of c is in another thread's hands. */
static void wait_outstanding(struct worker *w, struct heap_ctx *c, const char *what)
{
  wait_zero(&c->outstanding, drain_help, w, WAIT_BOUND_S, what);
}

static bool give_heap(struct worker *w, struct heap_ctx *c)
{
  struct worker *to = &workers[other_worker(w)];
  pthread_mutex_lock(&to->lock);
  bool ok = to->heaps_in_count < HEAP_RING;
  if (ok)
    to->heaps_in[to->heaps_in_count++] = c;
  pthread_mutex_unlock(&to->lock);
  if (ok)
    w->heaps_given++;
  return ok;
}

/* ---- heap lifetimes ---- */

/* hm_heap_visit and hm_heap_stats_get against the test's account; only
 * while no block of c is outstanding. */
static void check_exact(struct worker *w, struct heap_ctx *c, const char *where)
{
  heap_check_exact(c->h, c->slots, SLOTS, w->scratch, SLOTS + 8, where);
  if (c->limit != 0) {
    struct hm_heap_stats st;
    hm_heap_stats_get(c->h, &st);
    if (st.bytes_held > c->limit)
      fail("%s: a heap limited to %zu bytes holds %zu", where, c->limit, st.bytes_held);
  }
  w->exact_checks++;
}

static int count_one(void *block, size_t size, void *arg)
{
  (void)block;
  (void)size;
  ++*(size_t *)arg;
  return 0;
}

/* hm_heap_visit while other threads free blocks of the heap. */
static void check_racing(struct worker *w, struct heap_ctx *c)
{
  size_t before = atomic_load_explicit(&c->outstanding, memory_order_acquire);
  size_t count = 0;
  int r = hm_heap_visit(c->h, count_one, &count);
  if (r != 0)
    fail("hm_heap_visit returned %d", r);
  if (count < c->live || count > c->live + before)
    fail("hm_heap_visit counted %zu blocks; the heap's thread holds %zu and %zu more were "
         "handed out (some since freed)",
         count, c->live, before);
  w->racing_visits++;
}

static struct heap_ctx *heap_new(struct worker *w)
{
  struct heap_ctx *c = ctx_get();
  if (c == NULL)
    return NULL;
  hm_heap_options opt = HM_HEAP_OPTIONS_INIT;
  bool defaults = rng_below(&w->rng, 4) == 0;
  if (!defaults) {
    opt.node = rng_below(&w->rng, 2) ? -1 : 0;
    opt.limit = rng_below(&w->rng, 8) == 0 ? LIMIT : 0;
  }
  c->h = hm_heap_create(defaults ? NULL : &opt);
  if (c->h == NULL)
    fail("hm_heap_create failed: errno %d", errno);
  c->limit = opt.limit;
  c->budget = (unsigned)rng_range(&w->rng, OPS_PER_HEAP / 4, OPS_PER_HEAP * 7 / 4);
  w->created++;
  return c;
}

static void heap_reset(struct worker *w, struct heap_ctx *c)
{
  wait_outstanding(w, c, "before hm_heap_reset");
  check_exact(w, c, "before hm_heap_reset");
  for (size_t i = 0; i < SLOTS; i++)
    if (c->slots[i].p != NULL)
      hb_verify(&c->slots[i], "before hm_heap_reset");
  hm_heap_reset(c->h);
  memset(c->slots, 0, sizeof c->slots);
  c->live = 0;
  check_exact(w, c, "after hm_heap_reset");
  w->resets++;
}

static void heap_destroy(struct worker *w, struct heap_ctx *c)
{
  wait_outstanding(w, c, "before hm_heap_destroy");
  check_exact(w, c, "before hm_heap_destroy");
  /* Some blocks freed one by one, the rest by the destroy. */
  for (size_t i = 0; i < SLOTS; i++)
    if (c->slots[i].p != NULL) {
      if (rng_below(&w->rng, 3) == 0)
        block_free(c, &c->slots[i], "before hm_heap_destroy");
      else
        hb_verify(&c->slots[i], "before hm_heap_destroy");
    }
  hm_heap_destroy(c->h);
  w->destroyed++;
  ctx_put(c);
}

/* One operation on heap c. `sending`: blocks may go to other threads. */
static void heap_op(struct worker *w, struct heap_ctx *c, bool sending)
{
  struct hblock *s = &c->slots[rng_below(&w->rng, SLOTS)];
  if (s->p == NULL) {
    block_new(w, c, s);
    return;
  }
  uint64_t action = rng_below(&w->rng, 100);
  if (action < 30 && sending) {
    if (send_block(w, c, s))
      return;
  }
  if (action < 45) {
    block_realloc(w, c, s, c, s);
  } else if (action < 50) {
    struct heap_ctx *to = w->own[rng_below(&w->rng, LIVE_HEAPS)];
    struct hblock *d = to != NULL && to != c ? free_slot(to) : NULL;
    if (d != NULL)
      block_realloc(w, c, s, to, d);
    else
      block_free(c, s, "free by the heap's thread");
  } else if (action < 53) {
    block_realloc_out(w, c, s);
  } else {
    block_free(c, s, "free by the heap's thread");
  }
}

/* A heap another thread handed over: check its blocks, use it, destroy it. */
static void adopt(struct worker *w, struct heap_ctx *c)
{
  w->heaps_adopted++;
  size_t live = 0;
  for (size_t i = 0; i < SLOTS; i++)
    if (c->slots[i].p != NULL) {
      hb_verify(&c->slots[i], "block of an adopted heap");
      live++;
    }
  if (live != c->live)
    fail("adopted heap: %zu blocks in its slots, %zu counted", live, c->live);
  check_racing(w, c);
  bool sending = !w->finished;
  for (unsigned i = 0; i < ADOPT_OPS; i++) {
    heap_op(w, c, sending);
    if (i == ADOPT_OPS / 2 && rng_below(&w->rng, 4) == 0)
      heap_reset(w, c);
    if (i % 16 == 0)
      drain_blocks(w);
  }
  heap_destroy(w, c);
}

static void adopt_all(struct worker *w)
{
  for (;;) {
    pthread_mutex_lock(&w->lock);
    struct heap_ctx *c = w->heaps_in_count ? w->heaps_in[--w->heaps_in_count] : NULL;
    pthread_mutex_unlock(&w->lock);
    if (c == NULL)
      return;
    adopt(w, c);
  }
}

/* The end of one of the thread's own heaps: destroyed here, or (one in
 * five, while others still take them) handed to another thread. */
static void retire(struct worker *w, unsigned k)
{
  struct heap_ctx *c = w->own[k];
  w->own[k] = NULL;
  if (rng_below(&w->rng, 100) < 50)
    check_racing(w, c);
  if (rng_below(&w->rng, 5) == 0 && give_heap(w, c))
    return;
  heap_destroy(w, c);
}

static void *worker_main(void *arg)
{
  struct worker *w = arg;
  pthread_barrier_wait(&all_started);
  size_t started = 0;
  for (;;) {
    /* Keep LIVE_HEAPS heaps going until the thread's share is started. */
    for (unsigned k = 0; k < LIVE_HEAPS; k++)
      if (w->own[k] == NULL && started < HEAPS_PER_THREAD && (w->own[k] = heap_new(w)) != NULL)
        started++;
    unsigned k = (unsigned)rng_below(&w->rng, LIVE_HEAPS);
    struct heap_ctx *c = w->own[k];
    if (c == NULL) {
      bool any = false;
      for (unsigned j = 0; j < LIVE_HEAPS; j++)
        any |= w->own[j] != NULL;
      if (!any && started == HEAPS_PER_THREAD)
        break;
      drain_blocks(w);
      adopt_all(w);
      sched_yield(); /* the pool is empty for now */
      continue;
    }
    heap_op(w, c, true);
    if (rng_below(&w->rng, 400) == 0)
      heap_reset(w, c);
    else if (rng_below(&w->rng, 5000) == 0)
      t_trim(); /* every heap lets go of its unused spans at its next slow path */
    else if (rng_below(&w->rng, 200) == 0)
      check_racing(w, c);
    if (--c->budget == 0)
      retire(w, k);
    if (rng_below(&w->rng, 16) == 0) {
      drain_blocks(w);
      adopt_all(w);
    }
  }
  /* Nothing more is sent from here on; keep taking what others send until
   * every thread is there, then take the rest. */
  w->finished = true;
  atomic_fetch_add(&finished, 1);
  while (atomic_load(&finished) < THREADS) {
    drain_blocks(w);
    adopt_all(w);
    sched_yield();
  }
  drain_blocks(w);
  adopt_all(w);
  drain_blocks(w);
  return NULL;
}

/* ---- main ---- */

static void *idle_thread(void *arg)
{
  /* A heap's life on a short thread: the thread's own start-up and exit. */
  hm_heap *h = hm_heap_create(NULL);
  if (h == NULL)
    fail("hm_heap_create failed");
  void *p = hm_heap_malloc(h, 100);
  if (p == NULL)
    fail("hm_heap_malloc failed");
  t_free(p);
  hm_heap_destroy(h);
  return arg;
}

/* Small stacks: glibc keeps up to 40 MiB of exited threads' stacks, each
 * with its thread-local storage vector (allocated through hmalloc in the
 * override build). With 8 MiB stacks only a few are kept, and which ones
 * varies; with these, every stack of a run is kept for the next run. */
#define STACK_SIZE ((size_t)512 << 10)
static pthread_attr_t attr;

/* Starts and joins THREADS threads that do almost nothing; returns how
 * much hmalloc's bytes in use grew: what the threads themselves cost
 * (glibc's thread structures, through hmalloc in the override build). */
static size_t thread_cost(void)
{
  struct hm_stats a, b;
  hm_stats_get(&a);
  pthread_t t[THREADS];
  for (unsigned i = 0; i < THREADS; i++)
    if (pthread_create(&t[i], &attr, idle_thread, NULL) != 0)
      fail("pthread_create failed");
  for (unsigned i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  hm_stats_get(&b);
  return b.bytes_in_use > a.bytes_in_use ? b.bytes_in_use - a.bytes_in_use : 0;
}

int main(void)
{
  set_test_name("test_heap_stress (" T_NAMES ")");
  /* Twice: the first run warms glibc's thread stack cache; the second is
   * what a run of threads costs from then on. */
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, STACK_SIZE);
  size_t cost_first = thread_cost();
  size_t slack = thread_cost();
  pool = map_array(POOL * sizeof *pool);
  workers = map_array(THREADS * sizeof *workers);
  for (size_t i = 0; i < POOL; i++)
    ctx_put(&pool[i]);
  struct hm_stats before, after;
  unsigned threads_before = thread_count();
  hm_stats_get(&before);
  pthread_barrier_init(&all_started, NULL, THREADS);
  for (unsigned i = 0; i < THREADS; i++) {
    workers[i].id = i;
    workers[i].rng = rng_seeded(SEED, i);
    pthread_mutex_init(&workers[i].lock, NULL);
  }
  for (unsigned i = 0; i < THREADS; i++)
    if (pthread_create(&workers[i].thread, &attr, worker_main, &workers[i]) != 0)
      fail("pthread_create failed");
  struct worker sum = {0};
  for (unsigned i = 0; i < THREADS; i++) {
    struct worker *w = &workers[i];
    pthread_join(w->thread, NULL);
    if (w->ring_count != 0 || w->heaps_in_count != 0)
      fail("thread %u ended with %zu blocks and %zu heaps in its inboxes", i, w->ring_count,
           w->heaps_in_count);
    sum.created += w->created;
    sum.destroyed += w->destroyed;
    sum.resets += w->resets;
    sum.allocs += w->allocs;
    sum.limit_failures += w->limit_failures;
    sum.sent += w->sent;
    sum.received += w->received;
    sum.moved_in += w->moved_in;
    sum.heaps_given += w->heaps_given;
    sum.heaps_adopted += w->heaps_adopted;
    sum.exact_checks += w->exact_checks;
    sum.racing_visits += w->racing_visits;
  }
  if (sum.sent != sum.received)
    fail("%zu blocks handed to other threads, %zu received", sum.sent, sum.received);
  if (sum.created != sum.destroyed || sum.created != (size_t)THREADS * HEAPS_PER_THREAD)
    fail("%zu heaps created, %zu destroyed, %d expected", sum.created, sum.destroyed,
         THREADS * HEAPS_PER_THREAD);
  if (sum.heaps_given != sum.heaps_adopted)
    fail("%zu heaps handed over, %zu adopted", sum.heaps_given, sum.heaps_adopted);
  if (pool_free_count != POOL)
    fail("%zu heap records of %d back in the pool", pool_free_count, POOL);
  hm_stats_get(&after);
  /* A thread hmalloc started meanwhile (the background purge thread, after
   * a burst) costs what one of the first run's threads cost. */
  unsigned threads_after = thread_count();
  size_t per_thread = (cost_first + THREADS - 1) / THREADS;
  unsigned extra = threads_after > threads_before ? threads_after - threads_before : 0;
  size_t slack_threads = slack;
  slack += extra * per_thread;
  size_t grew = after.bytes_in_use > before.bytes_in_use ? after.bytes_in_use - before.bytes_in_use
                                                         : 0;
  if (after.bytes_in_use < before.bytes_in_use || grew > slack)
    fail("hm_stats_get bytes_in_use: %zu before the threads, %zu after every heap was destroyed "
         "(allowed: %zu, for %u threads started by hmalloc; a run of %d threads cost %zu the "
         "first time, then %zu)",
         before.bytes_in_use, after.bytes_in_use, slack, extra, THREADS, cost_first,
         slack_threads);
  if (after.large_live != before.large_live || after.huge_live != before.huge_live)
    fail("large/huge blocks live: %zu/%zu before, %zu/%zu after every heap was destroyed",
         before.large_live, before.huge_live, after.large_live, after.huge_live);
  if (after.mallocs - before.mallocs < sum.allocs)
    fail("hm_stats_get counts %zu mallocs, the test made %zu", after.mallocs - before.mallocs,
         sum.allocs);
  note("ok: %d threads, %zu heaps (%zu handed over), %zu resets, %zu allocations (%zu refused "
       "by a limit), %zu blocks handed over (%zu moved into the receiver's heap), %zu exact "
       "checks, %zu racing visits; bytes in use %zu -> %zu (allowed: +%zu for threads)",
       THREADS, sum.created, sum.heaps_given, sum.resets, sum.allocs, sum.limit_failures,
       sum.sent, sum.moved_in, sum.exact_checks, sum.racing_visits, before.bytes_in_use,
       after.bytes_in_use, slack);
  return 0;
}
