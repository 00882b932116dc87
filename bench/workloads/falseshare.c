/* falseshare: false sharing between threads' small objects (Hoard's
 * cache-scratch). In each of ROUNDS rounds the main thread mallocs one small
 * object per thread, back to back, so they likely share cache lines, and
 * hands object i to thread i. Each thread frees the object it was given
 * (a remote free), then ITERATIONS / (T * ROUNDS) times mallocs an object of
 * the same size, writes it WRITES times, checks it and frees it.
 *
 * An allocator that hands thread i the block thread j freed, or places
 * different threads' small blocks in one cache line, makes the threads' writes
 * fight over that line; one that keeps each thread's blocks apart does not.
 * The writes are the work: the time is mostly the cost of false sharing. */
#include "bench_common.h"

#include <stdlib.h>

enum { OBJECT_SIZE = 8, ROUNDS = 20, WRITES = 500 };

struct scratcher {
  unsigned index;
  uint64_t iterations;
  void *given; /* the object the main thread made for this thread */
};

/* Writes the object's word `WRITES` times through a volatile pointer so each
 * write reaches the cache line; the result is known, so it checks itself. */
static void scribble(unsigned thread, volatile uint64_t *word, uint64_t start)
{
  *word = start;
  for (int i = 0; i < WRITES; i++)
    *word = *word + 1;
  if (*word != start + WRITES)
    bench_fail("thread %u: object %p holds %llu, expected %llu", thread, (void *)word,
               (unsigned long long)*word, (unsigned long long)(start + WRITES));
}

static void *scratch(void *arg)
{
  struct scratcher *scratcher = arg;
  free(scratcher->given);
  for (uint64_t i = 0; i < scratcher->iterations; i++) {
    uint64_t *object = bench_malloc(OBJECT_SIZE);
    scribble(scratcher->index, object, i << 16);
    free(object);
  }
  return NULL;
}

int main(int argc, char **argv)
{
  struct bench_args args = {.threads = 2, .iterations = 4000000, .seed = 1};
  bench_parse_args(argc, argv, &args);
  struct scratcher *scratchers = bench_malloc(args.threads * sizeof *scratchers);
  double start = bench_now();
  for (int round = 0; round < ROUNDS; round++) {
    for (unsigned i = 0; i < args.threads; i++)
      scratchers[i] = (struct scratcher){.index = i,
                                         .iterations = args.iterations / args.threads / ROUNDS,
                                         .given = bench_malloc(OBJECT_SIZE)};
    bench_run_parallel(args.threads, scratch, scratchers, sizeof *scratchers);
  }
  double seconds = bench_now() - start;
  free(scratchers);
  bench_report("falseshare", &args, seconds);
  return 0;
}
