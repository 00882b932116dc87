/* Purging under load: 32 threads allocate (malloc or calloc, zeros
 * checked), reallocate and free blocks of every kind, and hand blocks to
 * each other to free, every block's contents verified, while purges run:
 * with HMALLOC_PURGE_DELAY_MS=0 every freed run is purged at once, with 10
 * passes run every 10 ms on slow paths, and a thread calls hm_trim() in a
 * loop all along (every thread then lets go of its unused spans at its
 * next refill). A purge of memory in use, a run reused while being purged,
 * or a span given back with a block in use shows up as a corrupted or
 * non-zero block. */
#include <sched.h>
#include <stdatomic.h>

#include "purge_common.h"

#define THREADS 32
#ifndef STRESS_OPS
#define STRESS_OPS 12000
#endif
#define SLOTS 48
#define MAILBOX 64

struct item {
  void *p;
  size_t size;
  uint64_t seed;
};

struct mailbox {
  pthread_mutex_t lock;
  struct item items[MAILBOX];
  unsigned count;
};

struct worker {
  unsigned id;
  struct rng rng;
  struct item slot[SLOTS];
  size_t allocs, callocs, reallocs, handed, received;
};

static struct worker workers[THREADS];
static struct mailbox mailboxes[THREADS];
static pthread_barrier_t done_sending;
static _Atomic unsigned workers_running = THREADS;

/* Mostly small, some medium, a few large (runs of a region), rare huge
 * (mappings of their own). */
static size_t draw_size(struct rng *r)
{
  uint64_t d = rng_next(r) % 1000;
  if (d < 880)
    return (size_t)rng_range(r, 1, 2048);
  if (d < 980)
    return (size_t)rng_range(r, 2049, 128 * KiB);
  if (d < 998)
    return (size_t)rng_range(r, 128 * KiB + 1, 2 * MiB);
  return (size_t)rng_range(r, 4 * MiB, 6 * MiB);
}

/* Whole contents for blocks up to 64 KiB, the ends beyond. */
static void check_item(const struct item *it, const char *what)
{
  if (it->size <= 64 * KiB)
    verify(it->p, it->size, it->seed, what);
  else
    verify_ends(it->p, it->size, it->seed, what);
}

static void free_item(struct item *it, const char *what)
{
  check_item(it, what);
  t_free(it->p);
  it->p = NULL;
}

static void new_item(struct worker *w, struct item *it)
{
  it->size = draw_size(&w->rng);
  it->seed = rng_next(&w->rng);
  if (rng_next(&w->rng) % 4 == 0) {
    it->p = t_calloc(1, it->size);
    CHECK(it->p != NULL, "calloc(%zu) failed", it->size);
    CHECK(all_zero(it->p, it->size), "calloc(%zu) returned %p, not all zeros", it->size,
          it->p);
    w->callocs++;
  } else {
    it->p = t_malloc(it->size);
    CHECK(it->p != NULL, "%s(%zu) failed", T_NAMES, it->size);
    w->allocs++;
  }
  fill(it->p, it->size, it->seed);
}

static void realloc_item(struct worker *w, struct item *it)
{
  check_item(it, "a block before realloc");
  size_t size = draw_size(&w->rng);
  void *q = t_realloc(it->p, size);
  CHECK(q != NULL, "realloc(%zu -> %zu) failed", it->size, size);
  size_t kept = size < it->size ? size : it->size;
  verify_moved(q, it->p, it->size, kept < 64 * KiB ? kept : 64 * KiB, it->seed,
               "the kept part of a reallocated block");
  it->p = q;
  it->size = size;
  fill(q, size, it->seed);
  w->reallocs++;
}

static void drain_mailbox(struct worker *w)
{
  struct mailbox *m = &mailboxes[w->id];
  struct item got[MAILBOX];
  pthread_mutex_lock(&m->lock);
  unsigned n = m->count;
  for (unsigned i = 0; i < n; i++)
    got[i] = m->items[i];
  m->count = 0;
  pthread_mutex_unlock(&m->lock);
  for (unsigned i = 0; i < n; i++)
    free_item(&got[i], "a block handed over by another thread");
  w->received += n;
}

/* Hands the block to another thread to free; frees it here if that
 * thread's mailbox is full. */
static void hand_over(struct worker *w, struct item *it)
{
  unsigned to = (unsigned)((w->id + 1 + rng_next(&w->rng) % (THREADS - 1)) % THREADS);
  struct mailbox *m = &mailboxes[to];
  pthread_mutex_lock(&m->lock);
  bool sent = m->count < MAILBOX;
  if (sent)
    m->items[m->count++] = *it;
  pthread_mutex_unlock(&m->lock);
  if (sent) {
    it->p = NULL;
    w->handed++;
  } else {
    free_item(it, "a block its mailbox refused");
  }
}

static void *work(void *arg)
{
  struct worker *w = arg;
  w->rng = (struct rng){0xabcdefull * (w->id + 1)};
  for (unsigned op = 0; op < STRESS_OPS; op++) {
    struct item *it = &w->slot[rng_next(&w->rng) % SLOTS];
    uint64_t d = rng_next(&w->rng) % 10;
    if (it->p == NULL)
      new_item(w, it);
    else if (d < 4)
      free_item(it, "a block freed by its allocating thread");
    else if (d < 8)
      hand_over(w, it);
    else
      realloc_item(w, it);
    if (op % 16 == 0)
      drain_mailbox(w);
  }
  pthread_barrier_wait(&done_sending);
  drain_mailbox(w);
  for (unsigned i = 0; i < SLOTS; i++)
    if (w->slot[i].p != NULL)
      free_item(&w->slot[i], "a block freed at the end");
  atomic_fetch_sub(&workers_running, 1);
  return NULL;
}

static void *trim_loop(void *arg)
{
  size_t *trims = arg;
  while (atomic_load(&workers_running) > 0) {
    hm_trim();
    ++*trims;
    sched_yield();
  }
  return NULL;
}

int main(void)
{
  int64_t delay = purge_delay_ms();
  CHECK(pthread_barrier_init(&done_sending, NULL, THREADS) == 0, "pthread_barrier_init failed");
  for (unsigned i = 0; i < THREADS; i++) {
    workers[i].id = i;
    pthread_mutex_init(&mailboxes[i].lock, NULL);
  }
  size_t trims = 0;
  pthread_t trimmer;
  CHECK(pthread_create(&trimmer, NULL, trim_loop, &trims) == 0, "pthread_create failed");
  run_threads(THREADS, work, workers, sizeof workers[0]);
  CHECK(pthread_join(trimmer, NULL) == 0, "pthread_join failed");
  size_t allocs = 0, callocs = 0, reallocs = 0, handed = 0, received = 0;
  for (unsigned i = 0; i < THREADS; i++) {
    allocs += workers[i].allocs;
    callocs += workers[i].callocs;
    reallocs += workers[i].reallocs;
    handed += workers[i].handed;
    received += workers[i].received;
  }
  CHECK(handed == received, "%zu blocks handed over, %zu received", handed, received);
  hm_trim();
  struct hm_stats st;
  hm_stats_get(&st);
  note("delay %lld ms: %d threads, %zu mallocs, %zu callocs, %zu reallocs, %zu handed over; "
       "%zu trims; purged %.1f MiB in %zu calls, %zu regions released",
       (long long)delay, THREADS, allocs, callocs, reallocs, handed, trims, mib(st.purged),
       st.purges, st.regions_released);
  CHECK(st.large_live == 0 && st.huge_live == 0, "every block freed, yet %zu large and %zu huge "
        "blocks live", st.large_live, st.huge_live);
  CHECK(trims > 0, "the trim loop never ran");
  /* With delay 0 the frees purge at once and the passes find nothing
   * dirty (purges made by frees are not counted: see test_calloc). */
  CHECK(delay == 0 || st.purges > 0, "no purge pass ran during the stress");
  return 0;
}
