/* The cost of NUMA awareness per malloc+free pair, for
 * measure_alloc_cost.sh: run under LD_PRELOAD=libhmalloc.so (it uses the
 * standard names and links nothing of hmalloc), natively or under
 * callgrind. Not a test: it only prints.
 *   numa_alloc_cost fast N    N x (malloc(32), free): the thread-cache path
 *   numa_alloc_cost refill N  N/16 x (16 x malloc(4096), 16 x free): 15
 *                             blocks fill a span, so each round refills
 *                             (asking for the current node) twice and hands
 *                             spans back through the arena
 *   numa_alloc_cost large N   N x (malloc(1 MiB), free): a large run from the
 *                             current node's arena each time
 * It prints ns per pair, the node count hmalloc reports and whether
 * libhwloc is mapped into the process. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REFILL_BATCH 16

static void keep(void *p)
{
  __asm__ volatile("" : : "r"(p) : "memory"); /* the compiler must not elide the pair */
}

static void pairs(size_t size, long n)
{
  for (long i = 0; i < n; i++) {
    void *p = malloc(size);
    keep(p);
    free(p);
  }
}

static void refills(long n)
{
  void *batch[REFILL_BATCH];
  for (long i = 0; i < n / REFILL_BATCH; i++) {
    for (int j = 0; j < REFILL_BATCH; j++)
      keep(batch[j] = malloc(4096));
    for (int j = 0; j < REFILL_BATCH; j++)
      free(batch[j]);
  }
}

/* The only code callgrind counts (--toggle-collect=measured_loop). */
__attribute__((noinline)) bool measured_loop(const char *mode, long n)
{
  if (strcmp(mode, "fast") == 0)
    pairs(32, n);
  else if (strcmp(mode, "refill") == 0)
    refills(n);
  else if (strcmp(mode, "large") == 0)
    pairs(1 << 20, n);
  else
    return false;
  return true;
}

static bool hwloc_mapped(void)
{
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  bool found = false;
  while (f != NULL && fgets(line, sizeof line, f) != NULL)
    found |= strstr(line, "libhwloc") != NULL;
  if (f != NULL)
    fclose(f);
  return found;
}

/* With a fake topology, measures once its table is published (the first
 * malloc starts discovery on a helper thread), so that every pair sees it. */
static void wait_for_topology(int (*nodes)(void))
{
  void *p = malloc(1); /* kept: a plain free(malloc(1)) is elided by the compiler */
  keep(p);
  free(p);
  const struct timespec ms = {0, 1000000};
  for (int waited = 0; nodes != NULL && getenv("HWLOC_SYNTHETIC") != NULL && nodes() < 2 &&
                       waited < 60000;
       waited++)
    nanosleep(&ms, NULL);
}

static double now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
  if (argc != 3) {
    fprintf(stderr, "usage: %s fast|refill|large N\n", argv[0]);
    return 2;
  }
  long n = atol(argv[2]);
  int (*nodes)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "hm_stats_nodes");
  wait_for_topology(nodes);
  double start = now_ns();
  if (!measured_loop(argv[1], n))
    return 2;
  double ns = (now_ns() - start) / (double)n;
  printf("%s: %.1f ns per pair, %s, %d node(s), hwloc %s\n", argv[1], ns,
         nodes != NULL ? "hmalloc" : "not hmalloc", nodes != NULL ? nodes() : 0,
         hwloc_mapped() ? "loaded" : "not loaded");
  return 0;
}
