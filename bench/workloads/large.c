/* large: large blocks, 64 KiB..64 MiB (log-uniform: as many of 64..128 KiB as
 * of 32..64 MiB). Each of T threads keeps SLOTS blocks and ITERATIONS / T
 * times replaces a random one: checks and frees the old block, mallocs a new
 * one and touches every page of it (one word per page, bench_fill_pages).
 * The cost is mostly the kernel's: fresh mappings, page faults and zeroing,
 * which an allocator that reuses freed large blocks avoids, and RSS, which
 * one that keeps too many of them pays. */
#include "bench_common.h"

#include <stdlib.h>

enum { SLOTS = 16, MIN_SIZE = 64 * 1024, MAX_SIZE = 64 * 1024 * 1024 };

struct slot {
  void *block;
  size_t size;
  uint64_t tag;
};

struct keeper {
  unsigned index;
  uint64_t iterations;
  struct bench_rng rng;
};

static void refill(struct slot *slot, uint64_t random)
{
  slot->size = bench_log_uniform(random, MIN_SIZE, MAX_SIZE);
  slot->tag = random;
  slot->block = bench_malloc(slot->size);
  bench_fill_pages(slot->block, slot->size, slot->tag);
}

static void verify_and_free(const struct keeper *keeper, struct slot *slot)
{
  if (!bench_intact_pages(slot->block, slot->size, slot->tag))
    bench_fail("thread %u: block %p (%zu bytes) changed while allocated", keeper->index,
               slot->block, slot->size);
  free(slot->block);
}

static void *keep(void *arg)
{
  struct keeper *keeper = arg;
  struct slot slots[SLOTS];
  for (size_t i = 0; i < SLOTS; i++)
    refill(&slots[i], bench_rng_next(&keeper->rng));
  for (uint64_t i = 0; i < keeper->iterations; i++) {
    uint64_t random = bench_rng_next(&keeper->rng);
    struct slot *slot = &slots[(random >> 7) % SLOTS];
    verify_and_free(keeper, slot);
    refill(slot, random);
  }
  for (size_t i = 0; i < SLOTS; i++)
    verify_and_free(keeper, &slots[i]);
  return NULL;
}

int main(int argc, char **argv)
{
  struct bench_args args = {.threads = 1, .iterations = 250, .seed = 1};
  bench_parse_args(argc, argv, &args);
  struct keeper *keepers = bench_malloc(args.threads * sizeof *keepers);
  for (unsigned i = 0; i < args.threads; i++)
    keepers[i] = (struct keeper){.index = i,
                                 .iterations = args.iterations / args.threads,
                                 .rng = {bench_mix(args.seed ^ ((uint64_t)i << 32))}};
  double start = bench_now();
  bench_run_parallel(args.threads, keep, keepers, sizeof *keepers);
  double seconds = bench_now() - start;
  free(keepers);
  bench_report("large", &args, seconds);
  return 0;
}
