/* Measures hm_topology_current_node(): `numa_cost one N` with no table (a
 * one-node machine), `numa_cost table N` with a synthetic two-node table.
 * Prints the CPU source and ns per call; run under callgrind
 * (--toggle-collect=probe) for instructions per call. Not a test: no
 * timing is asserted anywhere. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "topology.h"

__attribute__((noinline)) int probe(void)
{
  return hm_topology_current_node();
}

static double now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
  if (argc != 3 || (strcmp(argv[1], "one") != 0 && strcmp(argv[1], "table") != 0)) {
    fprintf(stderr, "usage: %s one|table calls\n", argv[0]);
    return 2;
  }
  long calls = atol(argv[2]);
  bool table = strcmp(argv[1], "table") == 0;
  if (table)
    setenv("HWLOC_SYNTHETIC", "node:2 pu:1", 1);
  else
    setenv("HMALLOC_NUMA", "0", 1);
  hm_topology_start();
  if (table && !hm_topology_wait_ready(20000)) {
    fprintf(stderr, "no table\n");
    return 1;
  }
  long sum = 0;
  double start = now_ns();
  for (long i = 0; i < calls; i++)
    sum += probe();
  double ns = (now_ns() - start) / (double)calls;
  printf("%s: %d node(s), CPU from %s, %.2f ns per call (sum %ld)\n", argv[1],
         hm_topology_nodes(), hm_os_cpu_source_name(hm_os_current_cpu_source()), ns, sum);
  return 0;
}
