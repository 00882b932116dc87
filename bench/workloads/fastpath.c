/* fastpath: N iterations of p = malloc(32); free(p). bench/run.sh --callgrind
 * runs it under callgrind at two values of N; the difference in instructions
 * over the difference in N is the cost of one malloc+free pair on the
 * allocator's fast path, loop included, with start-up cancelled out. */
#include "bench_common.h"

#include <stdlib.h>

int main(int argc, char **argv)
{
  struct bench_args args = {.threads = 1, .iterations = 100000000, .seed = 0};
  bench_parse_args(argc, argv, &args);
  double start = bench_now();
  for (uint64_t i = 0; i < args.iterations; i++) {
    void *block = malloc(32);
    /* The pointer "escapes" into an empty asm, so the compiler cannot
     * elide the malloc/free pair. */
    __asm__ volatile("" : : "r"(block) : "memory");
    free(block);
  }
  bench_report("fastpath", &args, bench_now() - start);
  return 0;
}
