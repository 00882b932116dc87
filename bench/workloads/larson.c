/* larson: a server simulation after Larson and Krishnan's benchmark. T
 * threads each hold an array of SLOTS blocks of 16..1024 B (uniformly
 * distributed, as in the original). In each round a thread replaces
 * ROUND random slots of the array it holds: it verifies and frees the block
 * there and puts a new, filled block in its place. At the end of the round
 * the arrays rotate: thread i takes the array thread i-1 held, so most
 * blocks are freed by a thread other than the one that allocated them, and
 * each thread frees into memory that another thread's frees have just
 * shaped (the pattern of a server whose connections move between worker
 * threads).
 *
 * ITERATIONS is the total number of replacements, split evenly over the
 * threads, so the work does not grow with T. The threads meet at a pthread
 * barrier between rounds (it sleeps in the kernel: 32 threads on 2 cores do
 * not spin). The initial filling of the arrays and the final freeing of
 * every block are part of the measured time; ops counts every malloc and
 * free of the threads. */
#include "bench_common.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { SLOTS = 2000, MIN_SIZE = 16, MAX_SIZE = 1024, ROUND = 10000 };

struct slot {
  void *block;
  size_t size;
  uint64_t tag;
};

struct worker {
  unsigned index;
  unsigned threads;
  uint64_t replacements; /* this thread's share of ITERATIONS */
  struct bench_rng rng;
  uint64_t made;  /* blocks made, for unique tags */
  uint64_t calls; /* mallocs and frees */
};

static struct slot **arrays; /* one per thread; array k starts with thread k */
static pthread_barrier_t round_end;

static void make_block(struct worker *worker, struct slot *slot)
{
  slot->size = bench_in_range(bench_rng_next(&worker->rng), MIN_SIZE, MAX_SIZE);
  slot->tag = bench_mix(((uint64_t)worker->index << 48) ^ worker->made++);
  slot->block = bench_malloc(slot->size);
  worker->calls++;
  bench_fill(slot->block, slot->size, slot->tag);
}

static void free_block(struct worker *worker, const struct slot *slot)
{
  if (!bench_intact(slot->block, slot->size, slot->tag))
    bench_fail("thread %u: block %p (%zu bytes) changed while in its array", worker->index,
               slot->block, slot->size);
  free(slot->block);
  worker->calls++;
}

static void *simulate(void *arg)
{
  struct worker *worker = arg;
  unsigned threads = worker->threads;
  struct slot *array = arrays[worker->index];
  for (size_t i = 0; i < SLOTS; i++)
    make_block(worker, &array[i]);
  /* Every thread has the same share, so the same number of rounds: each
   * meets the others at every barrier. */
  uint64_t rounds = (worker->replacements + ROUND - 1) / ROUND;
  for (uint64_t round = 0, done = 0; round < rounds; round++) {
    if (round > 0) {
      /* Round r: thread i holds array (i - r) mod T, the one thread i-1
       * held in round r-1. The barrier orders its accesses before ours. */
      int status = pthread_barrier_wait(&round_end);
      if (status != 0 && status != PTHREAD_BARRIER_SERIAL_THREAD)
        bench_fail("pthread_barrier_wait: %s", strerror(status));
      array = arrays[(worker->index + threads - (unsigned)(round % threads)) % threads];
    }
    uint64_t count = worker->replacements - done < ROUND ? worker->replacements - done : ROUND;
    for (uint64_t i = 0; i < count; i++) {
      struct slot *slot = &array[bench_rng_next(&worker->rng) % SLOTS];
      free_block(worker, slot);
      make_block(worker, slot);
    }
    done += count;
  }
  /* No barrier: in the last round the threads held distinct arrays. */
  for (size_t i = 0; i < SLOTS; i++)
    free_block(worker, &array[i]);
  return NULL;
}

int main(int argc, char **argv)
{
  struct bench_args args = {.threads = 1, .iterations = 6000000, .seed = 1};
  bench_parse_args(argc, argv, &args);
  arrays = bench_malloc(args.threads * sizeof *arrays);
  struct worker *workers = bench_malloc(args.threads * sizeof *workers);
  for (unsigned i = 0; i < args.threads; i++) {
    arrays[i] = bench_malloc(SLOTS * sizeof *arrays[i]);
    workers[i] = (struct worker){.index = i,
                                 .threads = args.threads,
                                 .replacements = args.iterations / args.threads,
                                 .rng = {bench_mix(args.seed ^ ((uint64_t)i << 32))}};
  }
  int error = pthread_barrier_init(&round_end, NULL, args.threads);
  if (error)
    bench_fail("pthread_barrier_init: %s", strerror(error));
  double start = bench_now();
  bench_run_parallel(args.threads, simulate, workers, sizeof *workers);
  double seconds = bench_now() - start;
  pthread_barrier_destroy(&round_end);
  uint64_t calls = 0;
  for (unsigned i = 0; i < args.threads; i++)
    calls += workers[i].calls;
  for (unsigned i = 0; i < args.threads; i++)
    free(arrays[i]);
  free(arrays);
  free(workers);
  bench_report_ops("larson", &args, seconds, calls, NULL);
  return 0;
}
