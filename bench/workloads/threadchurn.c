/* threadchurn: short-lived threads, as a server with a thread per connection
 * or a pool that grows and shrinks has. ITERATIONS threads are created in
 * all, at most T alive at once. Thread k mallocs PARCEL blocks of 16..1024 B,
 * frees half of them, and leaves the other half in its parcel; thread k + T,
 * created once thread k has been joined, checks and frees that parcel. So
 * every thread frees blocks of a thread that has exited, and the allocator
 * must reclaim memory of dead threads' caches. */
#include "bench_common.h"

#include <pthread.h>
#include <string.h>
#include <stdlib.h>

enum { PARCEL = 256, MIN_SIZE = 16, MAX_SIZE = 1024 };

struct parcel {
  void *blocks[PARCEL / 2];
};

struct churn {
  unsigned window;         /* T: threads alive at once */
  uint64_t seed;
  struct parcel **parcels; /* parcels[k]: what thread k left, until taken */
};

struct task {
  const struct churn *churn;
  uint64_t number;
};

static void *live_briefly(void *arg)
{
  struct task *task = arg;
  const struct churn *churn = task->churn;
  uint64_t number = task->number;
  free(task);
  /* The parcel of thread number - T, joined before this thread started. */
  if (number >= churn->window) {
    struct parcel *inherited = churn->parcels[number - churn->window];
    for (int i = 0; i < PARCEL / 2; i++)
      bench_object_free(inherited->blocks[i], "an heir");
    free(inherited);
  }
  struct bench_rng rng = {bench_mix(churn->seed ^ number)};
  struct parcel *parcel = bench_malloc(sizeof *parcel);
  void *kept[PARCEL / 2];
  for (int i = 0; i < PARCEL; i++) {
    uint64_t random = bench_rng_next(&rng);
    void *block = bench_object_new(bench_in_range(random >> 40, MIN_SIZE, MAX_SIZE), random);
    if (i % 2)
      parcel->blocks[i / 2] = block;
    else
      kept[i / 2] = block;
  }
  for (int i = 0; i < PARCEL / 2; i++)
    bench_object_free(kept[i], "its maker");
  churn->parcels[number] = parcel;
  return NULL;
}

static pthread_t start_thread(const struct churn *churn, uint64_t number)
{
  struct task *task = bench_malloc(sizeof *task);
  *task = (struct task){.churn = churn, .number = number};
  pthread_t thread;
  int error = pthread_create(&thread, NULL, live_briefly, task);
  if (error)
    bench_fail("pthread_create: %s", strerror(error));
  return thread;
}

int main(int argc, char **argv)
{
  struct bench_args args = {.threads = 8, .iterations = 10000, .seed = 1};
  bench_parse_args(argc, argv, &args);
  struct churn churn = {.window = args.threads, .seed = args.seed};
  churn.parcels = calloc(args.iterations, sizeof *churn.parcels);
  pthread_t *alive = bench_malloc(args.threads * sizeof *alive);
  if (!churn.parcels)
    bench_fail("calloc of the parcels failed");
  double start = bench_now();
  /* Thread k runs in slot k % T; it is joined before thread k + T starts. */
  for (uint64_t k = 0; k < args.iterations; k++) {
    if (k >= args.threads)
      pthread_join(alive[k % args.threads], NULL);
    alive[k % args.threads] = start_thread(&churn, k);
  }
  uint64_t first_left = args.iterations > args.threads ? args.iterations - args.threads : 0;
  for (uint64_t k = first_left; k < args.iterations; k++)
    pthread_join(alive[k % args.threads], NULL);
  /* The last T parcels have no heir. */
  for (uint64_t k = first_left; k < args.iterations; k++) {
    for (int i = 0; i < PARCEL / 2; i++)
      bench_object_free(churn.parcels[k]->blocks[i], "main");
    free(churn.parcels[k]);
  }
  double seconds = bench_now() - start;
  free(alive);
  free(churn.parcels);
  bench_report("threadchurn", &args, seconds);
  return 0;
}
