/* fork() while 8 threads allocate from private heaps (creating, resetting
 * and destroying them) and from the default heap. Before each fork the
 * main thread fills a private heap of its own and keeps blocks of the
 * workers' heaps that they handed it. The child must find everything
 * usable: the main thread's heap holds exactly the blocks it had (visit and
 * statistics), their contents intact; it allocates from that heap, frees
 * into it and destroys it; it frees the workers' blocks (into heaps whose
 * threads do not exist in the child); it creates heaps of its own, in its
 * main thread and in new threads; then exits 0. The parent waits with a
 * bound and kills the child by its PID if it hangs (a deadlock), then goes
 * on with its own copy of the heap. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TEST_CHECK_PLAIN
#include "heap_test.h"

#define WORKERS 8
#define WORKER_SLOTS 48
#define WORKER_DEFAULT_SLOTS 32
#define WORKER_HEAP_OPS 600 /* operations on a worker's heap before it is replaced */
#define FORKS 20
#define INHERITED 256        /* blocks of the main thread's heap at each fork */
#define DEFAULT_INHERITED 64 /* blocks of the default heap at each fork */
#define HELD_MAX 512         /* workers' blocks the main thread keeps */
#define CHILD_OPS 3000
#define CHILD_THREADS 3
#define CHILD_THREAD_OPS 1500
#define CHILD_DEADLINE_S 30 /* a child still running then is deadlocked */
#define WAIT_BOUND_S 120.0
#define SEED 0xF04CF04Cull

static size_t pick_size(struct rng *r)
{
  uint64_t d = rng_below(r, 10000);
  if (d < 2)
    return rng_range(r, 5 * MiB, 6 * MiB);
  if (d < 40)
    return rng_range(r, 130 * KiB, 1 * MiB);
  if (d < 800)
    return rng_range(r, 1025, 32 * KiB);
  return rng_range(r, 1, 1024);
}

/* Allocates into b from h (NULL: the default heap). */
static void alloc_into(struct hblock *b, hm_heap *h, struct rng *r)
{
  size_t size = pick_size(r);
  void *p;
  uint64_t how = rng_below(r, 10);
  if (h == NULL)
    p = how == 0 ? t_calloc(1, size) : t_malloc(size);
  else if (how == 0)
    p = hm_heap_calloc(h, 1, size);
  else if (how == 1)
    p = hm_heap_realloc(h, NULL, size);
  else
    p = hm_heap_malloc(h, size);
  if (p == NULL)
    fail("allocating %zu bytes failed (errno %d)", size, errno);
  if (hb_usable(p) < size)
    fail("usable size %zu of %p < %zu", hb_usable(p), p, size);
  *b = (struct hblock){.p = p, .size = size};
  hb_fill(b, rng_next(r));
}

static void free_block(struct hblock *b, const char *where)
{
  hb_verify(b, where);
  t_free(b->p);
  *b = (struct hblock){0};
}

/* Reallocs b within h (NULL: with plain realloc). */
static void realloc_block(struct hblock *b, hm_heap *h, struct rng *r, const char *where)
{
  hb_verify(b, where);
  size_t size = pick_size(r);
  void *q = h != NULL ? hm_heap_realloc(h, b->p, size) : t_realloc(b->p, size);
  if (q == NULL)
    fail("%s: realloc to %zu failed", where, size);
  hb_verify_moved(q, b->size < size ? b->size : size, b, where);
  *b = (struct hblock){.p = q, .size = size};
  hb_fill(b, rng_next(r));
}

/* Random allocations, reallocs and frees over slots[], in heap h (NULL:
 * the default heap); frees everything at the end. */
static void churn(hm_heap *h, struct rng *r, struct hblock *slots, size_t count, size_t ops,
                  const char *where)
{
  for (size_t i = 0; i < ops; i++) {
    struct hblock *b = &slots[rng_below(r, count)];
    if (b->p == NULL)
      alloc_into(b, h, r);
    else if (rng_below(r, 6) == 0)
      realloc_block(b, h, r, where);
    else
      free_block(b, where);
  }
  for (size_t i = 0; i < count; i++)
    if (slots[i].p != NULL)
      free_block(&slots[i], where);
}

/* ---- the parent's workers ---- */

struct worker_heap {
  hm_heap *h;
  /* Blocks the main thread holds: the heap is not reset nor destroyed
   * until they are freed. */
  _Atomic size_t outstanding;
};

struct held {
  struct hblock b;
  struct worker_heap *from;
};

struct worker {
  pthread_t thread;
  unsigned id;
  struct rng rng;
  struct worker_heap heaps[2]; /* heaps[cur] in use; the other, while `pending`,
                                waits for its blocks to come back */
  unsigned cur;
  bool pending;
  /* Set around the worker's hm_heap_create, _reset and _destroy calls (and
   * the stores of the handles): a child forked meanwhile leaves the
   * worker's heaps alone. */
  atomic_bool in_transition;
  struct hblock slots[WORKER_SLOTS];
  struct hblock dslots[WORKER_DEFAULT_SLOTS];
  size_t heaps_made, allocs;
  _Atomic size_t ops;
};

static struct worker *workers;
static atomic_bool stop, child_running;
static pthread_mutex_t inbox_lock = PTHREAD_MUTEX_INITIALIZER;
static struct held *inbox; /* [HELD_MAX], from the workers to the main thread */
static size_t inbox_count;

static bool send_to_main(struct worker *w, struct hblock *b)
{
  struct worker_heap *wh = &w->heaps[w->cur];
  atomic_fetch_add_explicit(&wh->outstanding, 1, memory_order_relaxed);
  pthread_mutex_lock(&inbox_lock);
  bool ok = inbox_count < HELD_MAX;
  if (ok)
    inbox[inbox_count++] = (struct held){*b, wh};
  pthread_mutex_unlock(&inbox_lock);
  if (!ok) {
    atomic_fetch_sub_explicit(&wh->outstanding, 1, memory_order_relaxed);
    return false;
  }
  *b = (struct hblock){0};
  return true;
}

static void pause_for_child(void)
{
  while (atomic_load_explicit(&child_running, memory_order_relaxed))
    nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
}

/* The heap in use is replaced: its live blocks are freed (some) or left
 * to it, and the worker goes on with its other heap. The old one is reset
 * (and kept) or destroyed once the main thread freed the blocks it holds
 * of it, which may be after the next fork: the worker does not wait. */
static void replace_heap(struct worker *w)
{
  if (w->pending)
    return; /* the other heap is not free yet: later */
  for (size_t i = 0; i < WORKER_SLOTS; i++)
    if (w->slots[i].p != NULL) {
      if (rng_below(&w->rng, 2))
        free_block(&w->slots[i], "worker, before replacing its heap");
      else
        hb_verify(&w->slots[i], "worker, before replacing its heap");
    }
  memset(w->slots, 0, sizeof w->slots);
  w->pending = true;
  w->cur ^= 1;
  if (w->heaps[w->cur].h == NULL) {
    atomic_store(&w->in_transition, true);
    w->heaps[w->cur].h = hm_heap_create(NULL);
    atomic_store(&w->in_transition, false);
    if (w->heaps[w->cur].h == NULL)
      fail("hm_heap_create in a worker failed");
    w->heaps_made++;
  }
}

/* The replaced heap, once none of its blocks is held elsewhere. */
static void finish_pending(struct worker *w)
{
  struct worker_heap *old = &w->heaps[w->cur ^ 1];
  if (!w->pending || atomic_load_explicit(&old->outstanding, memory_order_acquire) != 0)
    return;
  atomic_store(&w->in_transition, true);
  if (rng_below(&w->rng, 3) == 0) {
    hm_heap_reset(old->h);
  } else {
    hm_heap_destroy(old->h);
    old->h = NULL;
  }
  atomic_store(&w->in_transition, false);
  w->pending = false;
}

static void *worker_main(void *arg)
{
  struct worker *w = arg;
  atomic_store(&w->in_transition, true);
  w->heaps[0].h = hm_heap_create(NULL);
  atomic_store(&w->in_transition, false);
  if (w->heaps[0].h == NULL)
    fail("hm_heap_create in a worker failed");
  w->heaps_made++;
  size_t heap_ops = 0;
  for (size_t i = 0; !atomic_load_explicit(&stop, memory_order_relaxed); i++) {
    hm_heap *h = w->heaps[w->cur].h;
    struct hblock *b = &w->slots[rng_below(&w->rng, WORKER_SLOTS)];
    if (b->p == NULL) {
      alloc_into(b, h, &w->rng);
      w->allocs++;
    } else {
      uint64_t a = rng_below(&w->rng, 100);
      if (a >= 10 || !send_to_main(w, b)) {
        if (a < 20)
          realloc_block(b, h, &w->rng, "worker realloc in its heap");
        else
          free_block(b, "free by a worker");
      }
    }
    struct hblock *d = &w->dslots[rng_below(&w->rng, WORKER_DEFAULT_SLOTS)];
    if (d->p == NULL)
      alloc_into(d, NULL, &w->rng);
    else if (rng_below(&w->rng, 5) == 0)
      realloc_block(d, NULL, &w->rng, "worker realloc");
    else
      free_block(d, "worker free of a default block");
    if (++heap_ops >= WORKER_HEAP_OPS) {
      heap_ops = 0;
      replace_heap(w);
    }
    finish_pending(w);
    pause_for_child();
    atomic_store_explicit(&w->ops, i, memory_order_relaxed);
  }
  for (size_t i = 0; i < WORKER_DEFAULT_SLOTS; i++)
    if (w->dslots[i].p != NULL)
      free_block(&w->dslots[i], "final free by a worker");
  for (unsigned k = 0; k < 2; k++) {
    if (w->heaps[k].h == NULL)
      continue;
    wait_zero(&w->heaps[k].outstanding, NULL, NULL, WAIT_BOUND_S,
              "worker waiting for the main thread's final frees");
    atomic_store(&w->in_transition, true);
    hm_heap_destroy(w->heaps[k].h);
    w->heaps[k].h = NULL;
    atomic_store(&w->in_transition, false);
  }
  memset(w->slots, 0, sizeof w->slots);
  return NULL;
}

/* ---- the main thread's state at a fork ---- */

static hm_heap *main_heap;
static struct hblock *inherited;         /* [INHERITED], of main_heap */
static struct hblock *default_inherited; /* [DEFAULT_INHERITED] */
static struct held *held;                /* [HELD_MAX], of the workers' heaps */
static size_t held_count;
static struct visited *scratch; /* [INHERITED + 64] */

/* ---- the child ---- */

struct child_thread {
  pthread_t thread;
  unsigned index;
  struct rng rng;
};

/* A heap of its own, and its share of the default blocks. */
static void *child_thread_main(void *arg)
{
  struct child_thread *t = arg;
  for (size_t j = t->index; j < DEFAULT_INHERITED; j += CHILD_THREADS)
    if (j % 2 == 1)
      free_block(&default_inherited[j], "child thread, free of an inherited default block");
  hm_heap *h = hm_heap_create(NULL);
  if (h == NULL)
    fail("hm_heap_create in a child thread failed");
  struct hblock slots[48] = {{0}};
  churn(h, &t->rng, slots, 48, CHILD_THREAD_OPS / 2, "child thread, own heap");
  for (size_t i = 0; i < 48; i += 2)
    alloc_into(&slots[i], h, &t->rng);
  hm_heap_reset(h);
  memset(slots, 0, sizeof slots);
  churn(h, &t->rng, slots, 48, CHILD_THREAD_OPS / 2, "child thread, own heap after reset");
  hm_heap_destroy(h);
  struct hblock dslots[32] = {{0}};
  churn(NULL, &t->rng, dslots, 32, CHILD_THREAD_OPS, "child thread, default heap");
  return NULL;
}

struct collect_count {
  size_t *count;
};

static int count_blocks(void *block, size_t size, void *arg)
{
  (void)block;
  (void)size;
  ++*((struct collect_count *)arg)->count;
  return 0;
}

static _Noreturn void child_main(unsigned f)
{
  set_test_name("test_heap_fork (child)");
  struct hm_stats before, after;
  hm_stats_get(&before);
  struct rng r = rng_seeded(SEED ^ 0xC41D, f);

  /* The main thread's heap: exactly its blocks, intact. */
  for (size_t j = 0; j < INHERITED; j++)
    hb_verify(&inherited[j], "inherited heap block in the child");
  heap_check_exact(main_heap, inherited, INHERITED, scratch, INHERITED + 64,
                   "the main thread's heap in the child");
  for (size_t j = 0; j < INHERITED; j += 2)
    free_block(&inherited[j], "child, free of an inherited heap block");
  for (size_t j = 0; j < INHERITED; j += 4)
    alloc_into(&inherited[j], main_heap, &r);
  for (size_t j = 1; j < INHERITED; j += 8)
    realloc_block(&inherited[j], main_heap, &r, "child, realloc of an inherited heap block");
  heap_check_exact(main_heap, inherited, INHERITED, scratch, INHERITED + 64,
                   "the main thread's heap in the child, after frees and allocations");
  hm_heap_destroy(main_heap);

  /* Blocks of the workers' heaps: their threads are gone, the heaps live. */
  for (size_t j = 0; j < held_count; j++)
    free_block(&held[j].b, "child, free of a worker's heap block");

  /* The workers' heaps: their threads vanished in the middle of whatever
   * they did (but not inside a heap's slow path: the fork gate). The child
   * takes them over: visit and statistics agree, and they are destroyed. */
  size_t taken_over = 0;
  for (unsigned i = 0; i < WORKERS; i++) {
    if (atomic_load(&workers[i].in_transition))
      continue;
    for (unsigned k = 0; k < 2; k++) {
      hm_heap *wh = workers[i].heaps[k].h;
      if (wh == NULL)
        continue;
      size_t count = 0;
      struct collect_count cc = {&count};
      if (hm_heap_visit(wh, count_blocks, &cc) != 0)
        fail("fork %u: hm_heap_visit of worker %u's heap returned nonzero", f, i);
      struct hm_heap_stats st;
      hm_heap_stats_get(wh, &st);
      if (st.blocks_in_use != count)
        fail("fork %u: worker %u's heap in the child: hm_heap_visit counts %zu "
             "blocks, "
             "hm_heap_stats_get %zu",
             f, i, count, st.blocks_in_use);
      struct hblock b;
      alloc_into(&b, wh, &r);
      free_block(&b, "child, a block of a worker's heap");
      hm_heap_destroy(wh);
      taken_over++;
    }
  }
  if (taken_over == 0)
    fail("fork %u: every worker was creating or destroying a heap", f);

  for (size_t j = 0; j < DEFAULT_INHERITED; j++)
    hb_verify(&default_inherited[j], "inherited default block in the child");
  for (size_t j = 0; j < DEFAULT_INHERITED; j += 2)
    free_block(&default_inherited[j], "child, free of an inherited default block");

  /* New heaps in the main thread and in new threads. */
  hm_heap *h = hm_heap_create(NULL);
  if (h == NULL)
    fail("fork %u: hm_heap_create in the child failed", f);
  static struct hblock slots[64];
  churn(h, &r, slots, 64, CHILD_OPS, "child, new heap");
  hm_heap_destroy(h);
  static struct hblock dslots[64];
  churn(NULL, &r, dslots, 64, CHILD_OPS, "child, default heap");
  struct child_thread threads[CHILD_THREADS];
  for (unsigned k = 0; k < CHILD_THREADS; k++) {
    threads[k] = (struct child_thread){.index = k, .rng = rng_seeded(SEED ^ 0x7EAD, f * 8 + k)};
    if (pthread_create(&threads[k].thread, NULL, child_thread_main, &threads[k]) != 0)
      fail("fork %u: pthread_create in the child failed", f);
  }
  for (unsigned k = 0; k < CHILD_THREADS; k++)
    pthread_join(threads[k].thread, NULL);
  hm_stats_get(&after);
  if (after.mallocs - before.mallocs < CHILD_OPS / 4)
    fail("fork %u: hmalloc counts %zu mallocs in the child", f, after.mallocs - before.mallocs);
  exit(0);
}

/* ---- the parent's main thread ---- */

static void prepare_fork(struct rng *r)
{
  main_heap = hm_heap_create(NULL);
  if (main_heap == NULL)
    fail("hm_heap_create failed");
  for (size_t j = 0; j < INHERITED; j++)
    alloc_into(&inherited[j], main_heap, r);
  for (size_t j = 0; j < DEFAULT_INHERITED; j++)
    if (default_inherited[j].p == NULL)
      alloc_into(&default_inherited[j], NULL, r);
  pthread_mutex_lock(&inbox_lock);
  memcpy(held, inbox, inbox_count * sizeof *held);
  held_count = inbox_count;
  inbox_count = 0;
  pthread_mutex_unlock(&inbox_lock);
}

/* The parent's copy goes on: the same checks, then the heap is destroyed
 * and the workers' blocks freed (they may replace their heaps then). */
static void after_fork(struct rng *r)
{
  for (size_t j = 0; j < INHERITED; j++)
    hb_verify(&inherited[j], "the parent's heap block after the fork");
  heap_check_exact(main_heap, inherited, INHERITED, scratch, INHERITED + 64,
                   "the main thread's heap in the parent");
  for (size_t j = 0; j < INHERITED; j += 3)
    free_block(&inherited[j], "parent, free of a heap block");
  for (size_t j = 0; j < INHERITED; j += 9)
    alloc_into(&inherited[j], main_heap, r);
  heap_check_exact(main_heap, inherited, INHERITED, scratch, INHERITED + 64,
                   "the main thread's heap in the parent, after frees");
  hm_heap_destroy(main_heap);
  memset(inherited, 0, INHERITED * sizeof *inherited);
  for (size_t j = 0; j < DEFAULT_INHERITED; j++)
    if (rng_below(r, 3) == 0)
      free_block(&default_inherited[j], "parent, free of a default block");
  for (size_t j = 0; j < held_count; j++) {
    struct worker_heap *from = held[j].from;
    free_block(&held[j].b, "parent, free of a worker's heap block");
    atomic_fetch_sub_explicit(&from->outstanding, 1, memory_order_release);
  }
  held_count = 0;
}

static void wait_workers_busy(size_t ops)
{
  size_t start[WORKERS];
  for (unsigned i = 0; i < WORKERS; i++)
    start[i] = atomic_load_explicit(&workers[i].ops, memory_order_relaxed);
  double deadline = now_s() + WAIT_BOUND_S;
  for (unsigned i = 0; i < WORKERS; i++)
    while (atomic_load_explicit(&workers[i].ops, memory_order_relaxed) < start[i] + ops) {
      if (now_s() > deadline)
        fail("worker %u made no progress in %.0f s", i, WAIT_BOUND_S);
      nanosleep(&(struct timespec){.tv_nsec = 100000}, NULL);
    }
}

int main(void)
{
  set_test_name("test_heap_fork (" T_NAMES ")");
  workers = map_array(WORKERS * sizeof *workers);
  inbox = map_array(HELD_MAX * sizeof *inbox);
  held = map_array(HELD_MAX * sizeof *held);
  inherited = map_array(INHERITED * sizeof *inherited);
  default_inherited = map_array(DEFAULT_INHERITED * sizeof *default_inherited);
  scratch = map_array((INHERITED + 64) * sizeof *scratch);
  struct rng r = rng_seeded(SEED, 1000);
  for (unsigned i = 0; i < WORKERS; i++) {
    workers[i].id = i;
    workers[i].rng = rng_seeded(SEED, i);
  }
  for (unsigned i = 0; i < WORKERS; i++)
    if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
      fail("pthread_create failed");
  size_t held_total = 0;
  for (unsigned f = 0; f < FORKS; f++) {
    prepare_fork(&r);
    held_total += held_count;
    wait_workers_busy(200);
    pid_t pid = fork();
    if (pid < 0)
      fail("fork %u: fork failed", f);
    if (pid == 0)
      child_main(f);
    atomic_store(&child_running, true);
    wait_fork_child(pid, f, CHILD_DEADLINE_S);
    atomic_store(&child_running, false);
    after_fork(&r);
  }
  atomic_store(&stop, true);
  /* The workers wait for the blocks the main thread still gets. */
  size_t heaps = 0, allocs = 0;
  for (unsigned i = 0; i < WORKERS; i++) {
    for (;;) {
      pthread_mutex_lock(&inbox_lock);
      memcpy(held, inbox, inbox_count * sizeof *held);
      held_count = inbox_count;
      inbox_count = 0;
      pthread_mutex_unlock(&inbox_lock);
      for (size_t j = 0; j < held_count; j++) {
        struct worker_heap *from = held[j].from;
        free_block(&held[j].b, "parent, final free of a worker's heap block");
        atomic_fetch_sub_explicit(&from->outstanding, 1, memory_order_release);
      }
      held_count = 0;
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 1000000;
      if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
      }
      if (pthread_timedjoin_np(workers[i].thread, NULL, &ts) == 0)
        break;
    }
    heaps += workers[i].heaps_made;
    allocs += workers[i].allocs;
  }
  for (size_t j = 0; j < DEFAULT_INHERITED; j++)
    if (default_inherited[j].p != NULL)
      free_block(&default_inherited[j], "final free of a default block");
  note("ok: %d forks while %d threads made %zu heaps and %zu heap allocations; "
       "%zu of their "
       "blocks freed in the children",
       FORKS, WORKERS, heaps, allocs, held_total);
  return 0;
}
