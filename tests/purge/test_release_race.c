/* Region release racing with frees: in rounds, producer threads allocate
 * some 150 MiB (small blocks and large runs, several regions' worth), then
 * pass the blocks through a queue to consumer threads, which verify and
 * free them. Each round ends with every block freed, so the regions empty
 * while the last frees, remote ones included, are still running; the
 * background thread (tiny delay) releases idle regions and, unless
 * PURGE_TEST_MODE=no_trim, a thread calls hm_trim() in a loop, which
 * releases every empty one. A region unmapped
 * under a thread still inside it crashes; a region released with a block in
 * use, or a granule reused while in use, corrupts a verified block. At the
 * end, regions must have been released. */
#include <sched.h>
#include <stdatomic.h>

#include "purge_common.h"

#define PRODUCERS 4
#define CONSUMERS 4
#ifndef RACE_ROUNDS
#define RACE_ROUNDS 6
#endif
#ifndef RACE_BYTES
#define RACE_BYTES (36 * MiB) /* per producer per round */
#endif
#define QUEUE 4096

struct item {
  void *p;
  size_t size;
  uint64_t seed;
};

static struct {
  pthread_mutex_t lock;
  struct item items[QUEUE];
  unsigned count;
} queue = {.lock = PTHREAD_MUTEX_INITIALIZER};

static pthread_barrier_t round_start;
static _Atomic unsigned producing; /* producers still at work this round */
static _Atomic bool finished;

static void free_item(const struct item *it, const char *what)
{
  verify_ends(it->p, it->size, it->seed, what);
  t_free(it->p);
}

/* Queues the block, or frees it here when the queue is full. */
static void pass_on(const struct item *it)
{
  pthread_mutex_lock(&queue.lock);
  bool queued = queue.count < QUEUE;
  if (queued)
    queue.items[queue.count++] = *it;
  pthread_mutex_unlock(&queue.lock);
  if (!queued)
    free_item(it, "a block the queue refused");
}

static unsigned take(struct item *out, unsigned max)
{
  pthread_mutex_lock(&queue.lock);
  unsigned n = queue.count < max ? queue.count : max;
  queue.count -= n;
  for (unsigned i = 0; i < n; i++)
    out[i] = queue.items[queue.count + i];
  pthread_mutex_unlock(&queue.lock);
  return n;
}

static size_t draw_size(struct rng *r)
{
  if (rng_next(r) % 64 == 0)
    return (size_t)rng_range(r, 256 * KiB, MiB); /* a large run */
  return (size_t)rng_range(r, 16, 4096);
}

/* Allocates the round's blocks, all of them alive at once (several
 * regions), then passes them on: the regions empty only by frees. */
static void produce(unsigned id, unsigned round)
{
  struct rng rng = {id * 1000003ull + round};
  size_t cap = RACE_BYTES / 16;
  struct item *items = map_array(cap * sizeof *items);
  size_t n = 0;
  for (size_t bytes = 0; bytes < RACE_BYTES && n < cap; n++) {
    struct item *it = &items[n];
    it->size = draw_size(&rng);
    it->seed = rng_next(&rng);
    it->p = t_malloc(it->size);
    CHECK(it->p != NULL, "%s(%zu) failed", T_NAMES, it->size);
    fill(it->p, it->size, it->seed);
    bytes += it->size;
  }
  for (size_t i = 0; i < n; i++) {
    /* One block in eight is freed here, the rest by a consumer. */
    if (rng_next(&rng) % 8 == 0)
      free_item(&items[i], "a block freed by its producer");
    else
      pass_on(&items[i]);
  }
  unmap_array(items, cap * sizeof *items);
}

static void consume(void)
{
  struct item got[64];
  for (;;) {
    bool last = atomic_load(&producing) == 0; /* read before taking */
    unsigned n = take(got, 64);
    for (unsigned i = 0; i < n; i++)
      free_item(&got[i], "a block freed by a consumer");
    if (n == 0 && last)
      return;
    if (n == 0)
      sched_yield();
  }
}

static void *run(void *arg)
{
  unsigned id = *(unsigned *)arg;
  for (unsigned round = 0; round < RACE_ROUNDS; round++) {
    pthread_barrier_wait(&round_start);
    if (id < PRODUCERS) {
      produce(id, round);
      atomic_fetch_sub(&producing, 1);
    } else {
      consume();
    }
    pthread_barrier_wait(&round_start); /* the main thread resets `producing` */
  }
  return NULL;
}

static void *trim_loop(void *arg)
{
  size_t *trims = arg;
  while (!atomic_load(&finished)) {
    *trims += hm_trim() != 0;
    sched_yield();
  }
  return NULL;
}

/* The background thread starts at a slow path: on a thread that exits, as
 * an idle main thread would keep the freed run in its cache, and with it
 * the region it lies in. */
static void *start_purging(void *arg)
{
  (void)arg;
  slow_path();
  return NULL;
}

int main(void)
{
  CHECK(background_thread(), "the test needs HMALLOC_BACKGROUND_THREAD=1");
  CHECK(pthread_barrier_init(&round_start, NULL, PRODUCERS + CONSUMERS + 1) == 0,
        "pthread_barrier_init failed");
  pthread_t starter;
  CHECK(pthread_create(&starter, NULL, start_purging, NULL) == 0, "pthread_create failed");
  CHECK(pthread_join(starter, NULL) == 0, "pthread_join failed");
  size_t trims = 0;
  pthread_t trimmer, threads[PRODUCERS + CONSUMERS];
  unsigned ids[PRODUCERS + CONSUMERS];
  bool trimming = !test_mode_is("no_trim");
  if (trimming)
    CHECK(pthread_create(&trimmer, NULL, trim_loop, &trims) == 0, "pthread_create failed");
  for (unsigned i = 0; i < PRODUCERS + CONSUMERS; i++) {
    ids[i] = i;
    CHECK(pthread_create(&threads[i], NULL, run, &ids[i]) == 0, "pthread_create failed");
  }
  for (unsigned round = 0; round < RACE_ROUNDS; round++) {
    atomic_store(&producing, PRODUCERS);
    pthread_barrier_wait(&round_start);
    pthread_barrier_wait(&round_start);
    CHECK(queue.count == 0, "round %u ended with %u blocks queued", round, queue.count);
  }
  for (unsigned i = 0; i < PRODUCERS + CONSUMERS; i++)
    CHECK(pthread_join(threads[i], NULL) == 0, "pthread_join failed");
  atomic_store(&finished, true);
  /* Until the workers exited, their heaps held spans (parked at the
   * barriers, they honour a trim only at their next slow path) in every
   * region; the background thread keeps the newest region, and the
   * trimmer's last trim may have come before the last exit. With the
   * trimmer, one more trim now finds the regions the workers emptied: no
   * wait for the scheduler. Without it, the background thread must release
   * them, and may come late on a loaded machine. */
  if (trimming) {
    CHECK(pthread_join(trimmer, NULL) == 0, "pthread_join failed");
    trims += hm_trim() != 0;
  }
  struct hm_stats st;
  hm_stats_get(&st);
  for (int64_t waited = 0; st.regions_released == 0 && waited < WAIT_CAP_MS; waited += 50) {
    sleep_ms(50);
    hm_stats_get(&st);
  }
  note("%d rounds of %d x %.0f MiB: %zu regions released (%zu live), %zu trims that returned "
       "memory, purged %.1f MiB in %zu calls",
       RACE_ROUNDS, PRODUCERS, mib(RACE_BYTES), st.regions_released, st.regions, trims,
       mib(st.purged), st.purges);
  CHECK(st.regions_released > 0, "no region was released");
  CHECK(st.large_live == 0, "every block freed, yet %zu large blocks live", st.large_live);
  return 0;
}
