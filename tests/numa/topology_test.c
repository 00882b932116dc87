#define _GNU_SOURCE
#include "topology_test.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "hmalloc.h"
#include "numa_test.h"
#include "topology.h"

void start_and_expect_nodes(int nodes)
{
  hm_topology_start();
  CHECK(hm_topology_wait_ready(20000), "no table after 20 s");
  CHECK(hm_topology_nodes() == nodes, "%d nodes, expected %d", hm_topology_nodes(), nodes);
  CHECK(hm_topology_os_node(nodes) == -1, "node %d has OS node %d", nodes,
        hm_topology_os_node(nodes));
  CHECK(hm_topology_os_node(-1) == -1, "node -1 has an OS node");
}

void expect_cpu_nodes(const int *expected, int cpus)
{
  for (int cpu = 0; cpu < cpus; cpu++)
    CHECK(hm_topology_node_of_cpu(cpu) == expected[cpu], "CPU %d on node %d, expected %d", cpu,
          hm_topology_node_of_cpu(cpu), expected[cpu]);
  CHECK(hm_topology_node_of_cpu(1 << 20) == 0, "an unknown CPU is not on node 0");
  CHECK(hm_topology_node_of_cpu(-1) == 0, "CPU -1 is not on node 0");
}

void expect_current_node_follows_pinning(void)
{
  int cpus[64];
  int n = allowed_cpus(cpus, 64);
  for (int i = 0; i < n; i++) {
    pin_to_cpu(cpus[i]);
    int expected = hm_topology_node_of_cpu(cpus[i]);
    CHECK(hm_topology_current_node() == expected, "on CPU %d: node %d, expected %d", cpus[i],
          hm_topology_current_node(), expected);
  }
}

struct churn_arg {
  int rounds;
  unsigned seed;
};

static void *churn_thread(void *p)
{
  struct churn_arg *a = p;
  void *blocks[64] = {0};
  for (int r = 0; r < a->rounds; r++) {
    a->seed = a->seed * 1103515245u + 12345u;
    unsigned slot = (a->seed >> 8) % 64;
    hm_free(blocks[slot]);
    size_t size = 1 + (a->seed >> 16) % 4096;
    blocks[slot] = hm_malloc(size);
    CHECK(blocks[slot] != NULL, "hm_malloc(%zu) failed", size);
    memset(blocks[slot], (int)slot, size);
    if (r % 256 == 0) {
      hm_topology_start();
      int node = hm_topology_current_node();
      CHECK(node >= 0 && node < hm_topology_nodes(), "current node %d of %d", node,
            hm_topology_nodes());
    }
  }
  for (int i = 0; i < 64; i++)
    hm_free(blocks[i]);
  return NULL;
}

void churn(int threads, int rounds)
{
  pthread_t t[threads];
  struct churn_arg args[threads];
  for (int i = 0; i < threads; i++) {
    args[i] = (struct churn_arg){rounds, (unsigned)i * 7919u + 1};
    CHECK(pthread_create(&t[i], NULL, churn_thread, &args[i]) == 0, "pthread_create");
  }
  for (int i = 0; i < threads; i++)
    pthread_join(t[i], NULL);
}

void expect_one_node_without_hwloc(void)
{
  hm_topology_start();
  CHECK(!hm_topology_wait_ready(1000), "a table was published");
  churn(8, 20000);
  const struct timespec pause = {0, 200 * 1000 * 1000};
  nanosleep(&pause, NULL);
  CHECK(!maps_contain("libhwloc"), "libhwloc is mapped");
  CHECK(hm_topology_discoveries() == 0, "%u discoveries started", hm_topology_discoveries());
  CHECK(thread_count() == 1, "%d threads: a helper was started", thread_count());
  CHECK(!hm_topology_ready(), "ready");
  CHECK(hm_topology_nodes() == 1, "%d nodes", hm_topology_nodes());
  CHECK(hm_topology_current_node() == 0, "current node %d", hm_topology_current_node());
  CHECK(hm_topology_node_of_cpu(1) == 0, "CPU 1 on node %d", hm_topology_node_of_cpu(1));
  CHECK(hm_topology_os_node(0) == -1, "OS node %d", hm_topology_os_node(0));
}
