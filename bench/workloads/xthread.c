/* xthread: cross-thread frees. T threads in a ring; thread i mallocs blocks
 * of 16..512 B, fills them, and passes them through a queue to thread i+1,
 * which verifies and frees them. Every free is of a block another thread
 * allocated.
 *
 * ITERATIONS is the total number of blocks, split evenly over the threads,
 * so the work does not grow with T. The queues are single-producer
 * single-consumer rings, lock-free, so the benchmark adds no lock of its own;
 * a thread that can neither produce nor consume yields (8 threads on 2 cores). */
#include "bench_common.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { RING_SLOTS = 1024, BATCH = 64, MIN_SIZE = 16, MAX_SIZE = 512, CACHE_LINE = 64 };

/* A ring from one producer to one consumer. Each side's index lives on its
 * own cache line next to that side's cached copy of the other index. */
struct ring {
  _Alignas(CACHE_LINE) _Atomic uint64_t tail; /* written by the producer */
  uint64_t head_seen;                         /* the producer's view of head */
  _Alignas(CACHE_LINE) _Atomic uint64_t head; /* written by the consumer */
  uint64_t tail_seen;                         /* the consumer's view of tail */
  _Alignas(CACHE_LINE) void *slots[RING_SLOTS];
};

struct worker {
  unsigned index;
  unsigned predecessor;
  uint64_t quota;
  uint64_t seed;
  struct ring *out; /* to the next thread */
  struct ring *in;  /* from the previous thread */
};

/* How many blocks the producer can push now. */
static uint64_t ring_room(struct ring *ring)
{
  uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
  if (tail - ring->head_seen == RING_SLOTS)
    ring->head_seen = atomic_load_explicit(&ring->head, memory_order_acquire);
  return RING_SLOTS - (tail - ring->head_seen);
}

/* Only after ring_room said there is room. */
static void ring_push(struct ring *ring, void *block)
{
  uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
  ring->slots[tail % RING_SLOTS] = block;
  atomic_store_explicit(&ring->tail, tail + 1, memory_order_release);
}

/* The oldest block in the ring, or NULL when it is empty. */
static void *ring_pop(struct ring *ring)
{
  uint64_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);
  if (head == ring->tail_seen) {
    ring->tail_seen = atomic_load_explicit(&ring->tail, memory_order_acquire);
    if (head == ring->tail_seen)
      return NULL;
  }
  void *block = ring->slots[head % RING_SLOTS];
  atomic_store_explicit(&ring->head, head + 1, memory_order_release);
  return block;
}

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

static void *aligned_zeroed(size_t count, size_t size)
{
  void *memory = aligned_alloc(CACHE_LINE, count * size);
  if (!memory)
    bench_fail("aligned_alloc(%d, %zu) returned NULL", CACHE_LINE, count * size);
  return memset(memory, 0, count * size);
}

int main(int argc, char **argv)
{
  struct bench_args args = {.threads = 2, .iterations = 5000000, .seed = 1};
  bench_parse_args(argc, argv, &args);
  unsigned threads = args.threads;
  struct ring *rings = aligned_zeroed(threads, sizeof *rings);
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
  free(workers);
  free(rings);
  bench_report("xthread", &args, seconds);
  return 0;
}
