#define _GNU_SOURCE
#include "node_test.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "numa_test.h"
#include "topology.h"

/* CPU numbers looked at: the tests' topologies are small. */
#define CPU_LIMIT 1024

/* Whether the process may run on `cpu`: the main thread's affinity, as
 * the tests pin only the threads they start (a pinned thread's own mask
 * would hide the other nodes' CPUs when it moves). */
static bool process_may_use(int cpu)
{
  cpu_set_t set;
  CHECK(sched_getaffinity(getpid(), sizeof set, &set) == 0, "sched_getaffinity: %s",
        strerror(errno));
  return cpu < CPU_SETSIZE && CPU_ISSET(cpu, &set);
}

int cpu_on_node(enum placement how, int node)
{
  for (int cpu = 0; cpu < CPU_LIMIT; cpu++)
    if (hm_topology_node_of_cpu(cpu) == node && (how == BY_FAKE_CPU || process_may_use(cpu)))
      return cpu;
  test_fail(__FILE__, __LINE__, "cpu_on_node", "no %s CPU on node %d of %d",
            how == BY_PINNING ? "allowed" : "known", node, hm_topology_nodes());
}

void move_to_node(enum placement how, int node)
{
  int cpu = cpu_on_node(how, node);
  if (how == BY_FAKE_CPU)
    hm_topology_set_fake_cpu(cpu);
  else
    pin_to_cpu(cpu);
  CHECK(hm_topology_current_node() == node, "on CPU %d (%s): node %d, expected %d", cpu,
        how == BY_FAKE_CPU ? "fake" : "pinned", hm_topology_current_node(), node);
}
