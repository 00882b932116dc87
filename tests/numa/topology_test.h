/* Checks shared by the topology tests (topology_test.c). */
#ifndef TOPOLOGY_TEST_H
#define TOPOLOGY_TEST_H

#include <stdbool.h>

/* Starts discovery and waits (at most 20 s) for the table; fails unless it
 * has `nodes` nodes. */
void start_and_expect_nodes(int nodes);
/* hm_topology_node_of_cpu(cpu) == expected[cpu] for every cpu < cpus, and
 * CPUs beyond the table are node 0. */
void expect_cpu_nodes(const int *expected, int cpus);
/* Pinned to each real CPU in turn, the current node is that CPU's node. */
void expect_current_node_follows_pinning(void);
/* After start, many allocations on several threads and a pause, the
 * process is still one node and never loaded hwloc nor started a thread. */
void expect_one_node_without_hwloc(void);
/* Allocates and frees on `threads` threads, calling hm_topology_start()
 * and the queries in between as the allocator's slow paths will. */
void churn(int threads, int rounds);

#endif
