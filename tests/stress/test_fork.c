/* fork() while other threads allocate and free: the child must find the heap
 * usable (no lock held by a thread that does not exist in the child, no
 * half-done list operation that corrupts it), allocate and free in its main
 * thread and in new threads, and free blocks it inherited from the parent.
 * Built with the standard names against libhmalloc.so: the LD_PRELOAD
 * situation, where glibc's fork and pthread code allocate through hmalloc. */
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stress_common.h"

#define WORKERS 8
#define WORKER_SLOTS 64
#define FORKS 40
#define INHERITED 256 /* blocks the main thread holds when it forks */
#define CHILD_OPS 4000
#define CHILD_THREADS 4
#define CHILD_THREAD_OPS 2000
#define CHILD_SLOTS 128
#define CHILD_DEADLINE_S 30 /* a child still running then is deadlocked */
#define SEED 0xF0F0F0F0ull

static const struct size_mix mix = {.medium = 50000, .large = 1000, .huge = 0};

struct worker {
  pthread_t thread;
  unsigned id;
  struct rng rng;
  struct block_queue inbox;
  struct block slots[WORKER_SLOTS];
  size_t allocs;
  _Atomic size_t ops; /* progress, for the main thread to see them busy */
};

static struct worker workers[WORKERS];
static struct block_queue main_inbox;
static atomic_bool stop;
/* Set while a child runs: the workers run during the fork, then step aside
 * so that the child gets the CPUs (two here) and finishes quickly. */
static atomic_bool child_running;
static pthread_barrier_t all_sent;

/* ---- the parent's workers ---- */

static void worker_retire(struct worker *w, struct block *b)
{
  uint64_t action = rng_below(&w->rng, 100);
  if (action < 10) {
    queue_push(&main_inbox, b); /* the main thread keeps some across forks */
    *b = (struct block){0};
  } else if (action < 50) {
    unsigned to = (w->id + 1 + (unsigned)rng_below(&w->rng, WORKERS - 1)) % WORKERS;
    queue_push(&workers[to].inbox, b);
    *b = (struct block){0};
  } else {
    block_free(b, "free by worker");
  }
}

static void *worker_main(void *arg)
{
  struct worker *w = arg;
  for (size_t i = 0; !atomic_load_explicit(&stop, memory_order_relaxed); i++) {
    struct block *b = &w->slots[rng_below(&w->rng, WORKER_SLOTS)];
    if (b->p == NULL) {
      block_alloc(b, &w->rng, random_size(&w->rng, &mix));
      w->allocs++;
    } else {
      worker_retire(w, b);
    }
    if (i % 16 == 0)
      queue_free_all(&w->inbox, "free by receiving worker");
    while (atomic_load_explicit(&child_running, memory_order_relaxed))
      nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    atomic_store_explicit(&w->ops, i, memory_order_relaxed);
  }
  for (size_t i = 0; i < WORKER_SLOTS; i++)
    if (w->slots[i].p != NULL)
      block_free(&w->slots[i], "final free by worker");
  pthread_barrier_wait(&all_sent);
  queue_free_all(&w->inbox, "final free by receiving worker");
  return NULL;
}

/* ---- the child ---- */

static struct block inherited[INHERITED];

/* Random allocations, reallocs and frees over a working set, all verified. */
static void churn(struct rng *r, struct block *slots, size_t count, size_t ops)
{
  for (size_t i = 0; i < ops; i++) {
    struct block *b = &slots[rng_below(r, count)];
    if (b->p == NULL)
      block_alloc(b, r, random_size(r, &mix));
    else if (rng_below(r, 8) == 0)
      block_realloc(b, r, random_size(r, &mix));
    else
      block_free(b, "free in child");
  }
  for (size_t i = 0; i < count; i++)
    if (slots[i].p != NULL)
      block_free(&slots[i], "final free in child");
}

struct child_thread {
  pthread_t thread;
  unsigned index;
  struct rng rng;
};

/* Thread k of the child also frees the odd-numbered inherited blocks whose
 * half-index is k modulo CHILD_THREADS. */
static void *child_thread_main(void *arg)
{
  struct child_thread *t = arg;
  for (size_t j = 1; j < INHERITED; j += 2)
    if ((j / 2) % CHILD_THREADS == t->index)
      block_free(&inherited[j], "free of an inherited block by a child thread");
  struct block slots[64] = {{0}};
  churn(&t->rng, slots, 64, CHILD_THREAD_OPS);
  return NULL;
}

static _Noreturn void child_main(unsigned fork_index)
{
  set_test_name("test_fork (child)");
  struct hm_stats before, after;
  hm_stats_get(&before);
  for (size_t j = 0; j < INHERITED; j++)
    block_verify(&inherited[j], "inherited block in child");
  for (size_t j = 0; j < INHERITED; j += 2)
    block_free(&inherited[j], "free of an inherited block by the child");
  struct rng r = rng_seeded(SEED ^ 0xC41D, fork_index);
  static struct block slots[CHILD_SLOTS];
  churn(&r, slots, CHILD_SLOTS, CHILD_OPS);
  struct child_thread threads[CHILD_THREADS];
  for (unsigned k = 0; k < CHILD_THREADS; k++) {
    threads[k] =
        (struct child_thread){.index = k, .rng = rng_seeded(SEED ^ 0x7EAD, fork_index * 8 + k)};
    if (pthread_create(&threads[k].thread, NULL, child_thread_main, &threads[k]) != 0)
      fail("fork %u: pthread_create in the child failed", fork_index);
  }
  for (unsigned k = 0; k < CHILD_THREADS; k++)
    pthread_join(threads[k].thread, NULL);
  hm_stats_get(&after);
  if (after.mallocs - before.mallocs < CHILD_OPS / 4)
    fail("fork %u: hmalloc counts %zu mallocs in the child: not the allocator "
         "in use?",
         fork_index, after.mallocs - before.mallocs);
  exit(0);
}

/* ---- the parent's main thread ---- */

/* Between forks: frees a quarter of the held blocks, and fills the empty
 * slots with blocks from the workers, then with new ones. */
static void refresh_inherited(struct rng *r)
{
  for (size_t j = 0; j < INHERITED; j++)
    if (inherited[j].p != NULL && rng_below(r, 4) == 0)
      block_free(&inherited[j], "free by parent main");
  for (size_t j = 0; j < INHERITED; j++)
    if (inherited[j].p == NULL && queue_take(&main_inbox, &inherited[j], 1) == 0)
      block_alloc(&inherited[j], r, random_size(r, &mix));
  queue_free_all(&main_inbox, "free by parent main of a worker's block");
}

/* Returns once every worker has made `ops` more operations: they are back
 * from their pause and in the middle of allocating when the fork comes. */
static void wait_workers_busy(size_t ops)
{
  size_t start[WORKERS];
  for (unsigned i = 0; i < WORKERS; i++)
    start[i] = atomic_load_explicit(&workers[i].ops, memory_order_relaxed);
  for (unsigned i = 0; i < WORKERS; i++)
    while (atomic_load_explicit(&workers[i].ops, memory_order_relaxed) < start[i] + ops)
      nanosleep(&(struct timespec){.tv_nsec = 100000}, NULL);
}

static void start_workers(void)
{
  queue_init(&main_inbox);
  pthread_barrier_init(&all_sent, NULL, WORKERS);
  for (unsigned i = 0; i < WORKERS; i++) {
    workers[i].id = i;
    workers[i].rng = rng_seeded(SEED, i);
    queue_init(&workers[i].inbox);
  }
  for (unsigned i = 0; i < WORKERS; i++)
    if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
      fail("pthread_create failed");
}

static size_t stop_workers(void)
{
  atomic_store(&stop, true);
  size_t allocs = 0;
  for (unsigned i = 0; i < WORKERS; i++) {
    pthread_join(workers[i].thread, NULL);
    queue_destroy(&workers[i].inbox);
    allocs += workers[i].allocs;
  }
  queue_free_all(&main_inbox, "final free by parent main");
  queue_destroy(&main_inbox);
  return allocs;
}

int main(void)
{
  set_test_name("test_fork");
  struct hm_stats before, after;
  hm_stats_get(&before);
  struct rng r = rng_seeded(SEED, 1000);
  start_workers();
  for (unsigned f = 0; f < FORKS; f++) {
    refresh_inherited(&r);
    wait_workers_busy(200);
    pid_t pid = fork();
    if (pid < 0)
      fail("fork %u: fork failed", f);
    if (pid == 0)
      child_main(f);
    atomic_store(&child_running, true);
    wait_fork_child(pid, f, CHILD_DEADLINE_S);
    atomic_store(&child_running, false);
  }
  size_t allocs = stop_workers();
  for (size_t j = 0; j < INHERITED; j++)
    block_free(&inherited[j], "final free of the parent's blocks");
  hm_stats_get(&after);
  if (after.mallocs - before.mallocs < allocs)
    fail("hmalloc counts %zu mallocs, the workers made %zu: not the allocator "
         "in use?",
         after.mallocs - before.mallocs, allocs);
  note("ok: %d forks while %d threads made %zu allocations", FORKS, WORKERS, allocs);
  return 0;
}
