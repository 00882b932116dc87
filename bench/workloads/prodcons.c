/* prodcons: producers that allocate and consumers, on other threads, that
 * free. Of T threads, (T+1)/2 produce and T/2 consume; producer i sends its
 * blocks through ring i to consumer i % consumers. Memory flows one way: a
 * producer never frees and a consumer never allocates, so the allocator must
 * carry what consumers free back to the producers (a server's I/O threads
 * allocating requests that worker threads retire).
 *
 * Blocks are 16 B..4 KiB, log-uniform, self-describing (bench_object_*).
 * ITERATIONS is the total number of blocks, split over the producers. A
 * thread with nothing to do yields (32 threads on 2 cores). ops: the
 * producers' mallocs and the consumers' frees. */
#include "bench_common.h"

#include "ring.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

enum { BATCH = 64, MIN_SIZE = 16, MAX_SIZE = 4096 };

struct role {
  unsigned index;
  unsigned producers;
  unsigned consumers;
  uint64_t seed;
  uint64_t quota;       /* blocks to produce or, for a consumer, to consume */
  struct ring *rings;   /* one per producer */
  bool consumer;
  uint64_t calls;       /* mallocs or frees made */
};

static void produce(struct role *role)
{
  struct ring *out = &role->rings[role->index];
  struct bench_rng rng = {bench_mix(role->seed ^ ((uint64_t)role->index << 40))};
  uint64_t produced = 0;
  while (produced < role->quota) {
    uint64_t count = ring_room(out);
    if (count == 0) {
      sched_yield();
      continue;
    }
    if (count > BATCH)
      count = BATCH;
    if (count > role->quota - produced)
      count = role->quota - produced;
    for (uint64_t i = 0; i < count; i++, produced++) {
      uint64_t random = bench_rng_next(&rng);
      ring_push(out, bench_object_new(bench_log_uniform(random, MIN_SIZE, MAX_SIZE), random));
      role->calls++;
    }
  }
}

static void consume(struct role *role)
{
  uint64_t consumed = 0;
  while (consumed < role->quota) {
    uint64_t progress = 0;
    for (unsigned p = role->index; p < role->producers; p += role->consumers) {
      void *block;
      while ((block = ring_pop(&role->rings[p])) != NULL) {
        bench_object_free(block, "a consumer");
        role->calls++;
        progress++;
      }
    }
    consumed += progress;
    if (progress == 0)
      sched_yield();
  }
}

static void *play(void *arg)
{
  struct role *role = arg;
  if (role->consumer)
    consume(role);
  else
    produce(role);
  return NULL;
}

int main(int argc, char **argv)
{
  struct bench_args args = {.threads = 2, .iterations = 4000000, .seed = 1};
  bench_parse_args(argc, argv, &args);
  if (args.threads < 2)
    bench_fail("needs at least 2 threads (a producer and a consumer)");
  unsigned producers = (args.threads + 1) / 2, consumers = args.threads / 2;
  uint64_t per_producer = args.iterations / producers;
  struct ring *rings = ring_array_new(producers);
  struct role *roles = bench_malloc(args.threads * sizeof *roles);
  for (unsigned i = 0; i < args.threads; i++) {
    bool consumer = i >= producers;
    unsigned index = consumer ? i - producers : i;
    /* A consumer's quota: the blocks of the producers it serves. */
    uint64_t quota = per_producer;
    if (consumer)
      quota = per_producer * ((producers - index + consumers - 1) / consumers);
    roles[i] = (struct role){.index = index, .producers = producers, .consumers = consumers,
                             .seed = args.seed, .quota = quota, .rings = rings,
                             .consumer = consumer};
  }
  double start = bench_now();
  bench_run_parallel(args.threads, play, roles, sizeof *roles);
  double seconds = bench_now() - start;
  uint64_t calls = 0;
  for (unsigned i = 0; i < args.threads; i++)
    calls += roles[i].calls;
  free(roles);
  free(rings);
  bench_report_ops("prodcons", &args, seconds, calls, NULL);
  return 0;
}
