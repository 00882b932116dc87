/* batchfree: one thread mallocs BLOCKS blocks of 64 B, fills them, then
 * verifies and frees them all, in allocation order (default) or, with
 * -m random, in an order shuffled once at start-up; ITERATIONS rounds. The
 * frees come after the thread has moved on from the memory they go back to:
 * the pattern of a program that builds a big structure and then tears it
 * down.
 *
 * bench/run.sh --callgrind also runs it (in allocation order) at two round
 * counts: the difference in instructions over the difference in pairs is
 * the cost of one malloc+free pair of the batch, the program's fill and
 * check of the 64 bytes included (the same few instructions for every
 * allocator; they are inlined here to keep them few). */
#include "bench_common.h"

#include <stdlib.h>
#include <string.h>

enum { BLOCKS = 16384, BLOCK_SIZE = 64, WORDS = BLOCK_SIZE / 8 };

/* The pattern of bench_fill (tag in every word), inlined. */
static inline void fill(void *block, uint64_t tag)
{
  for (int i = 0; i < WORDS; i++)
    memcpy((char *)block + i * 8, &tag, 8);
}

static inline bool intact(const void *block, uint64_t tag)
{
  uint64_t differ = 0;
  for (int i = 0; i < WORDS; i++) {
    uint64_t word;
    memcpy(&word, (const char *)block + i * 8, 8);
    differ |= word ^ tag;
  }
  return differ == 0;
}

int main(int argc, char **argv)
{
  struct bench_args args = {.threads = 1, .iterations = 1000, .seed = 1};
  bench_parse_args(argc, argv, &args);
  bool random_order = false;
  if (args.mode && strcmp(args.mode, "random") == 0)
    random_order = true;
  else if (args.mode)
    bench_fail("unknown mode %s (known: random)", args.mode);

  void **blocks = bench_malloc(BLOCKS * sizeof *blocks);
  /* The order of the frees: the identity, or a Fisher-Yates shuffle of it. */
  uint32_t *order = bench_malloc(BLOCKS * sizeof *order);
  for (uint32_t i = 0; i < BLOCKS; i++)
    order[i] = i;
  if (random_order) {
    struct bench_rng rng = {bench_mix(args.seed)};
    for (uint32_t i = BLOCKS - 1; i > 0; i--) {
      uint32_t j = (uint32_t)(bench_rng_next(&rng) % (i + 1));
      uint32_t swap = order[i];
      order[i] = order[j];
      order[j] = swap;
    }
  }

  double start = bench_now();
  for (uint64_t round = 0; round < args.iterations; round++) {
    /* Block i of the round gets tag base + i: distinct within the round,
     * and from one round to the next. */
    uint64_t base = bench_mix(args.seed ^ (round << 20));
    for (uint32_t i = 0; i < BLOCKS; i++) {
      blocks[i] = bench_malloc(BLOCK_SIZE);
      fill(blocks[i], base + i);
    }
    for (uint32_t k = 0; k < BLOCKS; k++) {
      uint32_t i = order[k];
      if (!intact(blocks[i], base + i))
        bench_fail("round %llu: block %u (%p) changed before its free",
                   (unsigned long long)round, (unsigned)i, blocks[i]);
      free(blocks[i]);
    }
  }
  double seconds = bench_now() - start;
  free(order);
  free(blocks);
  bench_report_extra("batchfree", &args, seconds, random_order ? "order=random" : "order=allocation");
  return 0;
}
