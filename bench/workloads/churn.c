/* churn: small-object churn. A working set of SLOTS blocks of 16..128 B;
 * each iteration picks a random slot, verifies and frees its block, and
 * mallocs a block of a new random size into it.
 *
 * With -t T, T threads each run an independent churn of ITERATIONS / T
 * iterations on their own slots (the default, one thread, runs on the main
 * thread and creates none). ops: every malloc and free. */
#include "bench_common.h"

#include <stdlib.h>

enum { SLOTS = 4096, MIN_SIZE = 16, MAX_SIZE = 128 };

struct slot {
  void *block;
  size_t size;
  uint64_t tag;
};

struct churner {
  unsigned index;
  uint64_t iterations;
  struct bench_rng rng;
  uint64_t calls; /* mallocs and frees, counted */
};

/* The random value chooses the size, and doubles as the block's tag. */
static void refill(struct slot *slot, uint64_t random)
{
  slot->size = bench_in_range(random >> 32, MIN_SIZE, MAX_SIZE);
  slot->tag = random;
  slot->block = bench_malloc(slot->size);
  bench_fill(slot->block, slot->size, slot->tag);
}

static void verify_and_free(const struct churner *churner, struct slot *slot)
{
  if (!bench_intact(slot->block, slot->size, slot->tag))
    bench_fail("thread %u: block %p (%zu bytes) changed while allocated", churner->index,
               slot->block, slot->size);
  free(slot->block);
}

static void *churn(void *arg)
{
  struct churner *churner = arg;
  struct slot *slots = bench_malloc(SLOTS * sizeof *slots);
  for (size_t i = 0; i < SLOTS; i++)
    refill(&slots[i], bench_rng_next(&churner->rng));
  for (uint64_t i = 0; i < churner->iterations; i++) {
    uint64_t random = bench_rng_next(&churner->rng);
    struct slot *slot = &slots[random % SLOTS];
    verify_and_free(churner, slot);
    refill(slot, random);
    churner->calls += 2;
  }
  for (size_t i = 0; i < SLOTS; i++)
    verify_and_free(churner, &slots[i]);
  free(slots);
  /* The working set's malloc and free, and the slot array's. */
  churner->calls += 2 * SLOTS + 2;
  return NULL;
}

int main(int argc, char **argv)
{
  struct bench_args args = {.threads = 1, .iterations = 15000000, .seed = 1};
  bench_parse_args(argc, argv, &args);
  struct churner *churners = bench_malloc(args.threads * sizeof *churners);
  for (unsigned i = 0; i < args.threads; i++)
    churners[i] = (struct churner){.index = i,
                                   .iterations = args.iterations / args.threads,
                                   .rng = {bench_mix(args.seed + i)}};
  double start = bench_now();
  bench_run_parallel(args.threads, churn, churners, sizeof *churners);
  double seconds = bench_now() - start;
  uint64_t calls = 0;
  for (unsigned i = 0; i < args.threads; i++)
    calls += churners[i].calls;
  free(churners);
  bench_report_ops("churn", &args, seconds, calls, NULL);
  return 0;
}
