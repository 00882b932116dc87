/* fastpath: the cost of malloc+free pairs on the allocator's fast path.
 * bench/run.sh --callgrind runs it under callgrind at two values of N; the
 * difference in instructions over the difference in pairs is the cost of
 * one malloc+free pair, loop included, with start-up cancelled out.
 *
 *   (default)  N iterations of p = malloc(32); free(p)
 *   -m batch   N batches of 64: malloc 64 blocks of 16..128 B (sizes from a
 *              table made at start-up), then free the 64 in order
 *   -m sized   N iterations of p = malloc(32); free_sized(p, 32)
 *   -m alignN  N iterations of p = aligned_alloc(N, N); free(p)
 *   -m mallocN N iterations of p = malloc(N); free(p) (to compare with alignN) */
#include "bench_common.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

enum { BATCH = 64 };

int main(int argc, char **argv)
{
  struct bench_args args = {.threads = 1, .iterations = 100000000, .seed = 0};
  bench_parse_args(argc, argv, &args);
  const char *mode = args.mode ? args.mode : "";
  double start = bench_now();
  if (strcmp(mode, "batch") == 0) {
    static void *blocks[BATCH];
    static size_t sizes[BATCH];
    struct bench_rng rng = {bench_mix(args.seed)};
    for (int i = 0; i < BATCH; i++)
      sizes[i] = bench_in_range(bench_rng_next(&rng), 16, 128);
    for (uint64_t n = 0; n < args.iterations; n++) {
      for (int i = 0; i < BATCH; i++)
        blocks[i] = malloc(sizes[i]);
      __asm__ volatile("" : : "r"(blocks) : "memory");
      for (int i = 0; i < BATCH; i++)
        free(blocks[i]);
    }
  } else if (strcmp(mode, "sized") == 0) {
    /* C23's free_sized, looked up so the program runs on a libc without it. */
    void (*free_sized)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    if (free_sized == NULL)
      bench_fail("free_sized not found");
    for (uint64_t i = 0; i < args.iterations; i++) {
      void *block = malloc(32);
      __asm__ volatile("" : : "r"(block) : "memory");
      free_sized(block, 32);
    }
  } else if (strncmp(mode, "align", 5) == 0 || strncmp(mode, "malloc", 6) == 0) {
    bool aligned = mode[0] == 'a';
    size_t size = strtoul(mode + (aligned ? 5 : 6), NULL, 10);
    if (size == 0)
      bench_fail("mode %s: no size", mode);
    for (uint64_t i = 0; i < args.iterations; i++) {
      void *block = aligned ? aligned_alloc(size, size) : malloc(size);
      __asm__ volatile("" : : "r"(block) : "memory");
      free(block);
    }
  } else if (mode[0] == '\0') {
    for (uint64_t i = 0; i < args.iterations; i++) {
      void *block = malloc(32);
      /* The pointer "escapes" into an empty asm, so the compiler cannot
       * elide the malloc/free pair. */
      __asm__ volatile("" : : "r"(block) : "memory");
      free(block);
    }
  } else {
    bench_fail("unknown mode %s (known: batch, sized, alignN, mallocN)", mode);
  }
  bench_report("fastpath", &args, bench_now() - start);
  return 0;
}
