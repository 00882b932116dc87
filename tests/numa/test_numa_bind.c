/* Binding memory to nodes through the topology (hm_topology_bind): bound
 * where the node exists, one warning and usable unbound memory where it
 * does not, and nothing attempted for a topology of another machine. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "numa_test.h"
#include "topology.h"
#include "topology_test.h"

#define MAPPING (4u << 20)

/* Binds a fresh mapping to `node`, then touches every page; returns the
 * error and leaves the mapping's numa_maps line in `line`. */
static int bind_fresh(int node, char *line, size_t cap, char **mapping)
{
  char *p = fresh_mapping(MAPPING);
  int err = hm_topology_bind(p, MAPPING, node);
  memset(p, 0x5a, MAPPING);
  for (size_t i = 0; i < MAPPING; i += 4096)
    CHECK(p[i] == 0x5a, "byte %zu of the mapping reads %d", i, p[i]);
  CHECK(numa_maps_line(p, line, cap), "no numa_maps line for %p", (void *)p);
  *mapping = p;
  return err;
}

/* Synthetic two nodes declared to be this machine: node 0 exists (bound,
 * shown as a preferred policy), node 1 does not (EINVAL, one warning for
 * any number of failures, memory usable and left at the default policy). */
static void synthetic_this_system(void)
{
  start_and_expect_nodes(2);
  char line[512], *p, *q, *r;
  CHECK(bind_fresh(0, line, sizeof line, &p) == 0, "binding to node 0 failed");
  CHECK(strstr(line, " prefer:0 ") != NULL, "node 0 mapping: %s", line);
  printf("  node 0: %s\n", line);

  if (hm_os_numa_nodes_online() > 1) {
    printf("  node 1 exists on this machine: the failing bind cannot be checked\n");
    drop_mapping(p, MAPPING);
    return;
  }
  capture_stderr_begin();
  int err1 = bind_fresh(1, line, sizeof line, &q);
  char line2[512];
  int err2 = bind_fresh(1, line2, sizeof line2, &r);
  int err3 = hm_topology_bind(r, MAPPING, 7); /* no such logical node */
  char err[4096];
  capture_stderr_end(err, sizeof err);
  CHECK(err1 == EINVAL && err2 == EINVAL && err3 == EINVAL, "errors %d %d %d", err1, err2, err3);
  CHECK(strstr(line, " default ") != NULL && strstr(line2, " default ") != NULL,
        "node 1 mappings: %s / %s", line, line2);
  CHECK(strcmp(err, "hmalloc: binding memory to NUMA node 1 failed (Invalid argument); "
                    "continuing unbound\n") == 0,
        "stderr: %s", err);
  printf("  node 1: %s\n  warning: %s", line, err);
  drop_mapping(p, MAPPING);
  drop_mapping(q, MAPPING);
  drop_mapping(r, MAPPING);
}

/* A synthetic topology hwloc does not take for this machine's: its node
 * numbers mean nothing to the kernel, so nothing is bound or warned. */
static void synthetic_other_system(void)
{
  start_and_expect_nodes(2);
  char line[512], *p;
  capture_stderr_begin();
  int err = bind_fresh(1, line, sizeof line, &p);
  char text[4096];
  capture_stderr_end(text, sizeof text);
  CHECK(err == 0 && strstr(line, " default ") != NULL, "error %d, mapping %s", err, line);
  CHECK(text[0] == '\0', "stderr: %s", text);
  drop_mapping(p, MAPPING);
}

/* Without a table there is nothing to bind to. */
static void one_node(void)
{
  hm_topology_start();
  char line[512], *p;
  CHECK(bind_fresh(0, line, sizeof line, &p) == 0 && strstr(line, " default ") != NULL,
        "mapping %s", line);
  drop_mapping(p, MAPPING);
}

/* The OS node number, not the logical one, reaches the kernel: the fake
 * hwloc names OS nodes 100 and 101. */
static void os_numbers_reach_the_kernel(void)
{
  hm_topology_set_library(FAKE_HWLOC_PATH);
  start_and_expect_nodes(2);
  char line[512], *p;
  capture_stderr_begin();
  int e = bind_fresh(0, line, sizeof line, &p);
  char err[4096];
  capture_stderr_end(err, sizeof err);
  CHECK(e == EINVAL, "binding to OS node 100: %d", e);
  CHECK(count_lines(err) == 1 && count_lines_with(err, "NUMA node 100 failed (Invalid argument)"),
        "stderr: %s", err);
  drop_mapping(p, MAPPING);
}

static const struct scenario scenarios[] = {
    {"synthetic_this_system", synthetic_this_system,
     {"HWLOC_SYNTHETIC=node:2 pu:1", "HWLOC_THISSYSTEM=1"}},
    {"synthetic_other_system", synthetic_other_system, {"HWLOC_SYNTHETIC=node:2 pu:1"}},
    {"one_node", one_node, {"HMALLOC_NUMA=0"}},
    {"os_numbers_reach_the_kernel", os_numbers_reach_the_kernel,
     {"HWLOC_SYNTHETIC=node:2 pu:1", "FAKE_HWLOC_THISSYSTEM=1"}},
};

int main(int argc, char **argv)
{
  return run_scenarios(scenarios, sizeof scenarios / sizeof scenarios[0], argc, argv, 60);
}
