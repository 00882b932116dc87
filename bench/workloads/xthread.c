/* xthread: cross-thread frees. T threads in a ring; thread i mallocs blocks
 * of 16..512 B, fills them, and passes them through a queue to thread i+1,
 * which verifies and frees them. Every free is of a block another thread
 * allocated.
 *
 * ITERATIONS is the total number of blocks, split evenly over the threads,
 * so the work does not grow with T. The queues are lock-free rings (ring.h);
 * a thread that can neither produce nor consume yields (8 threads on 2 cores).
 * ops: every malloc and free. With one thread the ring is the thread's own
 * and every free is local: the baseline of the scaling table. */
#include "bench_common.h"

#include "ring.h"

#include <sched.h>
#include <stdlib.h>

enum { BATCH = 64, MIN_SIZE = 16, MAX_SIZE = 512 };

struct worker {
  unsigned index;
  unsigned predecessor;
  uint64_t quota;
  uint64_t seed;
  struct ring *out; /* to the next thread */
  struct ring *in;  /* from the previous thread */
  uint64_t calls;   /* mallocs and frees made */
};

/* The size and tag of a producer's seq-th block, computed by the producer
 * and recomputed by the consumer. bench_mix is a bijection, so every block of
 * a run gets a distinct tag. */
struct block_spec {
  size_t size;
  uint64_t tag;
};

static struct block_spec block_spec(uint64_t seed, unsigned producer, uint64_t seq)
{
  uint64_t random = bench_mix(seed ^ ((uint64_t)producer << 48) ^ seq);
  return (struct block_spec){bench_in_range(random >> 32, MIN_SIZE, MAX_SIZE), random};
}

static uint64_t produce(struct worker *worker, uint64_t *produced)
{
  uint64_t count = ring_room(worker->out);
  if (count > BATCH)
    count = BATCH;
  if (count > worker->quota - *produced)
    count = worker->quota - *produced;
  for (uint64_t i = 0; i < count; i++) {
    struct block_spec spec = block_spec(worker->seed, worker->index, (*produced)++);
    void *block = bench_malloc(spec.size);
    bench_fill(block, spec.size, spec.tag);
    ring_push(worker->out, block);
  }
  worker->calls += count;
  return count;
}

static uint64_t consume(struct worker *worker, uint64_t *consumed)
{
  uint64_t count = 0;
  void *block;
  while (count < RING_SLOTS && (block = ring_pop(worker->in)) != NULL) {
    struct block_spec spec = block_spec(worker->seed, worker->predecessor, (*consumed)++);
    if (!bench_intact(block, spec.size, spec.tag))
      bench_fail("thread %u: block %p (%zu bytes) from thread %u changed in flight",
                 worker->index, block, spec.size, worker->predecessor);
    free(block);
    count++;
  }
  worker->calls += count;
  return count;
}

static void *exchange(void *arg)
{
  struct worker *worker = arg;
  uint64_t produced = 0, consumed = 0;
  while (produced < worker->quota || consumed < worker->quota) {
    uint64_t progress = produce(worker, &produced);
    progress += consume(worker, &consumed);
    if (progress == 0)
      sched_yield();
  }
  return NULL;
}

int main(int argc, char **argv)
{
  struct bench_args args = {.threads = 2, .iterations = 5000000, .seed = 1};
  bench_parse_args(argc, argv, &args);
  unsigned threads = args.threads;
  struct ring *rings = ring_array_new(threads);
  struct worker *workers = bench_malloc(threads * sizeof *workers);
  for (unsigned i = 0; i < threads; i++)
    workers[i] = (struct worker){.index = i,
                                 .predecessor = (i + threads - 1) % threads,
                                 .quota = args.iterations / threads,
                                 .seed = args.seed,
                                 .out = &rings[i],
                                 .in = &rings[(i + threads - 1) % threads]};
  double start = bench_now();
  bench_run_parallel(threads, exchange, workers, sizeof *workers);
  double seconds = bench_now() - start;
  uint64_t calls = 0;
  for (unsigned i = 0; i < threads; i++)
    calls += workers[i].calls;
  free(workers);
  free(rings);
  bench_report_ops("xthread", &args, seconds, calls, NULL);
  return 0;
}
