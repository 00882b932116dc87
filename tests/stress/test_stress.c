/* Many more threads than cores allocate, realloc and free blocks of every
 * size tier, hand about half of the blocks they retire to other threads
 * (which verify and free them), and check every block's contents before it
 * is freed or realloc'd. Any corruption, overlap or double hand-out of a
 * block shows as a pattern mismatch. */
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "stress_common.h"

#ifndef STRESS_OPS
#define STRESS_OPS 40000 /* per thread */
#endif
#define THREADS 48
#define WORKING_SET 160 /* slots per thread */
#define DRAIN_EVERY 32  /* ops between two looks at the inbox */
#define SEED 0x5EED0001ull

static const struct size_mix mix = {.medium = 90000, .large = 3000, .huge = 300};

struct worker {
  pthread_t thread;
  unsigned id;
  struct rng rng;
  struct block_queue inbox;
  struct block slots[WORKING_SET];
  size_t allocs, sent, received;
};

static struct worker workers[THREADS];
static pthread_barrier_t all_started;
static atomic_uint finished; /* threads that will send no more */

static void send_away(struct worker *w, struct block *b)
{
  unsigned to = (w->id + 1 + (unsigned)rng_below(&w->rng, THREADS - 1)) % THREADS;
  queue_push(&workers[to].inbox, b);
  *b = (struct block){0};
  w->sent++;
}

/* An empty slot gets a new block; a full one is handed away (half of the
 * time), realloc'd or freed here. */
static void one_op(struct worker *w)
{
  struct block *b = &w->slots[rng_below(&w->rng, WORKING_SET)];
  if (b->p == NULL) {
    block_alloc(b, &w->rng, random_size(&w->rng, &mix));
    w->allocs++;
    return;
  }
  uint64_t action = rng_below(&w->rng, 100);
  if (action < 45)
    send_away(w, b);
  else if (action < 55)
    block_realloc(b, &w->rng, random_size(&w->rng, &mix));
  else
    block_free(b, "free by owner");
}

static void *worker_main(void *arg)
{
  struct worker *w = arg;
  /* All first allocations at once, so that thread start-up paths race each
   * other and, with the hm_ names (nothing allocated before), process
   * start-up too. */
  pthread_barrier_wait(&all_started);
  for (size_t i = 0; i < STRESS_OPS; i++) {
    one_op(w);
    if (i % DRAIN_EVERY == 0)
      w->received += queue_free_all(&w->inbox, "free by receiver");
  }
  for (size_t i = 0; i < WORKING_SET; i++)
    if (w->slots[i].p != NULL)
      block_free(&w->slots[i], "final free by owner");
  /* Keep receiving until nobody sends any more, then empty the inbox. */
  atomic_fetch_add(&finished, 1);
  while (atomic_load(&finished) < THREADS) {
    w->received += queue_free_all(&w->inbox, "free by receiver");
    nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
  }
  w->received += queue_free_all(&w->inbox, "final free by receiver");
  return NULL;
}

int main(void)
{
  set_test_name("test_stress");
  struct hm_stats before, after;
  hm_stats_get(&before);
  pthread_barrier_init(&all_started, NULL, THREADS);
  for (unsigned i = 0; i < THREADS; i++) {
    workers[i].id = i;
    workers[i].rng = rng_seeded(SEED, i);
    queue_init(&workers[i].inbox);
  }
  for (unsigned i = 0; i < THREADS; i++)
    if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
      fail("pthread_create failed");
  size_t allocs = 0, sent = 0, received = 0;
  for (unsigned i = 0; i < THREADS; i++) {
    pthread_join(workers[i].thread, NULL);
    allocs += workers[i].allocs;
    sent += workers[i].sent;
    received += workers[i].received;
    queue_destroy(&workers[i].inbox);
  }
  if (sent != received)
    fail("%zu blocks sent but %zu received", sent, received);
  hm_stats_get(&after);
  /* The allocator must have served at least the test's own allocations, and
   * every large and huge block the test made must be gone. */
  if (after.mallocs - before.mallocs < allocs)
    fail("hm_stats_get counts %zu mallocs, the test made %zu", after.mallocs - before.mallocs,
         allocs);
  if (after.large_live != before.large_live || after.huge_live != before.huge_live)
    fail("large/huge blocks live: %zu/%zu before, %zu/%zu after everything was freed",
         before.large_live, before.huge_live, after.large_live, after.huge_live);
  note("ok: %u threads, %zu allocations, %zu blocks handed to other threads", THREADS, allocs,
       sent);
  return 0;
}
