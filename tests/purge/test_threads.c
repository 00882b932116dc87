/* The burst across threads: 8 threads each allocate 8 MiB of long-lived
 * and 128 MiB of burst small objects. Each frees half of its neighbour's
 * burst while that neighbour still runs; then the allocating threads exit,
 * and 8 new threads free the other halves. RSS must come back to the live
 * 64 MiB (rss_bound) past the purge delay, and the live objects, whose
 * threads are gone, keep their contents. */
#include "purge_common.h"

#define THREADS 8
#define LIVE_PER_THREAD (8 * MiB)
#define BURST_PER_THREAD (128 * MiB)

struct worker {
  unsigned id;
  struct block_set live, burst;
};

static struct worker workers[THREADS];
static pthread_barrier_t allocated, freed_first_halves;

static struct block_set *neighbours_burst(const struct worker *w, unsigned distance)
{
  return &workers[(w->id + distance) % THREADS].burst;
}

static void *allocate_then_free_half(void *arg)
{
  struct worker *w = arg;
  blocks_alloc(&w->live, LIVE_PER_THREAD, 100 + w->id);
  blocks_alloc(&w->burst, BURST_PER_THREAD, 200 + w->id);
  pthread_barrier_wait(&allocated);
  /* Cross-thread frees while the allocating thread is alive. */
  struct block_set *s = neighbours_burst(w, 1);
  blocks_free_range(s, 0, s->count / 2, "a burst block freed by a neighbour");
  /* Nobody exits before every first half is freed: the frees above meet a
   * live owner. */
  pthread_barrier_wait(&freed_first_halves);
  return NULL;
}

static void *free_second_half(void *arg)
{
  struct worker *w = arg;
  /* Freed after their allocating thread exited. */
  struct block_set *s = neighbours_burst(w, 2);
  blocks_free_range(s, s->count / 2, s->count, "a burst block of an exited thread");
  return NULL;
}

int main(void)
{
  CHECK(pthread_barrier_init(&allocated, NULL, THREADS) == 0 &&
            pthread_barrier_init(&freed_first_halves, NULL, THREADS) == 0,
        "pthread_barrier_init failed");
  for (unsigned i = 0; i < THREADS; i++)
    workers[i].id = i;
  size_t start = rss_bytes();
  run_threads(THREADS, allocate_then_free_half, workers, sizeof workers[0]);
  size_t half = rss_bytes();
  run_threads(THREADS, free_second_half, workers, sizeof workers[0]);
  size_t live = 0;
  for (unsigned i = 0; i < THREADS; i++) {
    live += workers[i].live.bytes;
    blocks_release_array(&workers[i].burst);
  }
  size_t freed = rss_bytes();
  size_t after = wait_for_rss(rss_bound(live), 5);
  note("RSS (MiB): start %.1f, half the burst freed %.1f, all freed %.1f, after the delay %.1f "
       "(bound %.1f for %.1f MiB live)",
       mib(start), mib(half), mib(freed), mib(after), mib(rss_bound(live)), mib(live));
  CHECK(after <= rss_bound(live),
        "RSS %.1f MiB after the burst was freed across threads, above the bound %.1f MiB",
        mib(after), mib(rss_bound(live)));
  for (unsigned i = 0; i < THREADS; i++)
    blocks_verify(&workers[i].live, "a live block of an exited thread");
  struct hm_stats st;
  hm_stats_get(&st);
  note("stats: threads %zu, regions %zu (released %zu), purged %.1f MiB in %zu calls",
       st.threads, st.regions, st.regions_released, mib(st.purged), st.purges);
  return 0;
}
