/* The topology layer (src/topology.h) on hwloc's synthetic and XML inputs,
 * on a fake libhwloc, and on this one-node machine, where hwloc must never
 * be loaded. Each scenario runs in a child process of its own. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "numa_test.h"
#include "topology.h"
#include "topology_test.h"

/* Two nodes of one PU each: this machine's two CPUs, one per node. */
static void two_nodes(void)
{
  start_and_expect_nodes(2);
  static const int expected[] = {0, 1};
  expect_cpu_nodes(expected, 2);
  CHECK(hm_topology_os_node(0) == 0 && hm_topology_os_node(1) == 1, "OS nodes %d %d",
        hm_topology_os_node(0), hm_topology_os_node(1));
  expect_current_node_follows_pinning();
  CHECK(hm_topology_discoveries() == 1, "%u discoveries", hm_topology_discoveries());
  CHECK(maps_contain("libhwloc.so.15"), "hwloc is not mapped");
}

struct fake_arg {
  int cpu;
  pthread_barrier_t *barrier;
};

/* Every thread fakes its own CPU, all at once. */
static void *fake_cpu_thread(void *p)
{
  struct fake_arg *a = p;
  hm_topology_set_fake_cpu(a->cpu);
  pthread_barrier_wait(a->barrier);
  for (int i = 0; i < 100000; i++)
    CHECK(hm_topology_current_node() == a->cpu, "thread faking CPU %d on node %d", a->cpu,
          hm_topology_current_node());
  /* Back to the real CPU: pinned, this thread's node is its CPU's. */
  hm_topology_set_fake_cpu(-1);
  int cpus[64];
  int cpu = cpus[a->cpu % allowed_cpus(cpus, 64)];
  pin_to_cpu(cpu);
  CHECK(hm_topology_current_node() == hm_topology_node_of_cpu(cpu),
        "unfaked on CPU %d: node %d", cpu, hm_topology_current_node());
  return NULL;
}

/* Four nodes on a two-CPU machine: threads fake CPUs 0-3 to sit on each. */
static void four_nodes_fake_cpus(void)
{
  start_and_expect_nodes(4);
  static const int expected[] = {0, 1, 2, 3};
  expect_cpu_nodes(expected, 4);
  expect_current_node_follows_pinning();
  enum { THREADS = 8 };
  pthread_t t[THREADS];
  struct fake_arg args[THREADS];
  pthread_barrier_t barrier;
  pthread_barrier_init(&barrier, NULL, THREADS);
  for (int i = 0; i < THREADS; i++) {
    args[i] = (struct fake_arg){i % 4, &barrier};
    CHECK(pthread_create(&t[i], NULL, fake_cpu_thread, &args[i]) == 0, "pthread_create");
  }
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  /* The main thread never faked: its node is its real CPU's. */
  expect_current_node_follows_pinning();
}

/* Several PUs per node, nodes inside packages. */
static void packages_of_nodes(void)
{
  start_and_expect_nodes(4);
  int expected[16];
  for (int cpu = 0; cpu < 16; cpu++)
    expected[cpu] = cpu / 4;
  expect_cpu_nodes(expected, 16);
  hm_topology_set_fake_cpu(13);
  CHECK(hm_topology_current_node() == 3, "fake CPU 13 on node %d", hm_topology_current_node());
  hm_topology_set_fake_cpu(-1);
}

/* Node OS numbers differ from logical ones (7 and 5): written as hwloc 2
 * exports it. */
static const char two_node_xml[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<!DOCTYPE topology SYSTEM \"hwloc2.dtd\">\n"
    "<topology version=\"2.0\">\n"
    " <object type=\"Machine\" os_index=\"0\" cpuset=\"0x3\" complete_cpuset=\"0x3\""
    " allowed_cpuset=\"0x3\" nodeset=\"0xa0\" complete_nodeset=\"0xa0\""
    " allowed_nodeset=\"0xa0\" gp_index=\"1\">\n"
    "  <object type=\"Group\" cpuset=\"0x1\" complete_cpuset=\"0x1\" nodeset=\"0x80\""
    " complete_nodeset=\"0x80\" gp_index=\"7\" kind=\"1001\" subkind=\"0\">\n"
    "   <object type=\"NUMANode\" os_index=\"7\" cpuset=\"0x1\" complete_cpuset=\"0x1\""
    " nodeset=\"0x80\" complete_nodeset=\"0x80\" gp_index=\"6\" local_memory=\"1073741824\"/>\n"
    "   <object type=\"PU\" os_index=\"0\" cpuset=\"0x1\" complete_cpuset=\"0x1\""
    " nodeset=\"0x80\" complete_nodeset=\"0x80\" gp_index=\"5\"/>\n"
    "  </object>\n"
    "  <object type=\"Group\" cpuset=\"0x2\" complete_cpuset=\"0x2\" nodeset=\"0x20\""
    " complete_nodeset=\"0x20\" gp_index=\"4\" kind=\"1001\" subkind=\"0\">\n"
    "   <object type=\"NUMANode\" os_index=\"5\" cpuset=\"0x2\" complete_cpuset=\"0x2\""
    " nodeset=\"0x20\" complete_nodeset=\"0x20\" gp_index=\"3\" local_memory=\"1073741824\"/>\n"
    "   <object type=\"PU\" os_index=\"1\" cpuset=\"0x2\" complete_cpuset=\"0x2\""
    " nodeset=\"0x20\" complete_nodeset=\"0x20\" gp_index=\"2\"/>\n"
    "  </object>\n"
    " </object>\n"
    "</topology>\n";

static void xml_file(void)
{
  char path[] = "/tmp/numa-test-topology-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp");
  CHECK(write(fd, two_node_xml, sizeof two_node_xml - 1) == (ssize_t)sizeof two_node_xml - 1,
        "write");
  close(fd);
  setenv("HWLOC_XMLFILE", path, 1);
  capture_stderr_begin();
  start_and_expect_nodes(2);
  char err[4096];
  capture_stderr_end(err, sizeof err);
  CHECK(err[0] == '\0', "hwloc complained: %s", err);
  unlink(path);
  int os0 = hm_topology_os_node(hm_topology_node_of_cpu(0));
  int os1 = hm_topology_os_node(hm_topology_node_of_cpu(1));
  CHECK(os0 == 7 && os1 == 5, "CPU 0 on OS node %d (expected 7), CPU 1 on %d (expected 5)", os0,
        os1);
  /* Not this machine's topology: binding is skipped, not attempted. */
  CHECK(hm_topology_bind(&os0, sizeof os0, 0) == 0, "bind was attempted");
  expect_current_node_follows_pinning();
}

/* This machine has one node: nothing to discover. */
static void one_node_never_loads_hwloc(void)
{
  if (hm_os_numa_nodes_online() != 1) {
    printf("  %d nodes online: the one-node case cannot be checked here\n",
           hm_os_numa_nodes_online());
    start_and_expect_nodes(hm_os_numa_nodes_online());
    return;
  }
  expect_one_node_without_hwloc();
}

static void numa_off(void)
{
  expect_one_node_without_hwloc();
}

static void bad_numa_value_warns(void)
{
  capture_stderr_begin();
  hm_topology_start();
  char err[4096];
  capture_stderr_end(err, sizeof err);
  CHECK(count_lines(err) == 1 &&
            count_lines_with(err, "hmalloc: HMALLOC_NUMA=yes is not 0 or 1; using 1") == 1,
        "stderr: %s", err);
  start_and_expect_nodes(2);
}

/* dlopen fails: one warning, one node, nothing else. */
static void missing_library_warns_once(void)
{
  hm_topology_set_library("libhwloc-missing.so.0");
  capture_stderr_begin();
  hm_topology_start();
  bool ready = hm_topology_wait_ready(20000);
  churn(4, 5000);
  char err[4096];
  capture_stderr_end(err, sizeof err);
  CHECK(!ready, "a table from a library that does not exist");
  CHECK(count_lines(err) == 1 &&
            count_lines_with(err, "hmalloc: cannot load libhwloc-missing.so.0 (") == 1 &&
            count_lines_with(err, "NUMA awareness off, running as one node") == 1,
        "stderr: %s", err);
  CHECK(hm_topology_nodes() == 1 && hm_topology_current_node() == 0, "%d nodes",
        hm_topology_nodes());
  CHECK(hm_topology_discoveries() == 1, "%u discoveries", hm_topology_discoveries());
}

/* ---- on the fake libhwloc (fake_hwloc.c) ---- */

static void use_fake_hwloc(void)
{
  hm_topology_set_library(FAKE_HWLOC_PATH);
}

/* Expects discovery to end without a table and with one warning line
 * containing `warning`. */
static void expect_fake_fails_with(const char *warning)
{
  use_fake_hwloc();
  capture_stderr_begin();
  hm_topology_start();
  bool ready = hm_topology_wait_ready(20000);
  char err[4096];
  capture_stderr_end(err, sizeof err);
  CHECK(!ready && hm_topology_nodes() == 1, "%d nodes", hm_topology_nodes());
  CHECK(count_lines(err) == 1 && count_lines_with(err, warning) == 1, "stderr: %s", err);
}

/* A memory-only node listed first shares the CPUs of the ordinary nodes:
 * they keep their CPUs. */
static void fake_memory_only_node_first(void)
{
  use_fake_hwloc();
  start_and_expect_nodes(3);
  static const int expected[] = {1, 2};
  expect_cpu_nodes(expected, 2);
  CHECK(hm_topology_os_node(0) == 99 && hm_topology_os_node(1) == 100 &&
            hm_topology_os_node(2) == 101,
        "OS nodes %d %d %d", hm_topology_os_node(0), hm_topology_os_node(1),
        hm_topology_os_node(2));
}

static void fake_many_nodes_fold(void)
{
  use_fake_hwloc();
  capture_stderr_begin();
  start_and_expect_nodes(HM_TOPOLOGY_MAX_NODES);
  char err[4096];
  capture_stderr_end(err, sizeof err);
  CHECK(count_lines(err) == 1 &&
            count_lines_with(err, "hwloc reports 70 NUMA nodes; folding them onto 64 arenas"),
        "stderr: %s", err);
  int expected[70];
  for (int cpu = 0; cpu < 70; cpu++)
    expected[cpu] = cpu % HM_TOPOLOGY_MAX_NODES;
  expect_cpu_nodes(expected, 70);
  hm_topology_set_fake_cpu(69);
  CHECK(hm_topology_current_node() == 5, "CPU 69 on node %d", hm_topology_current_node());
  hm_topology_set_fake_cpu(4000);
  CHECK(hm_topology_current_node() == 0, "CPU 4000 on node %d", hm_topology_current_node());
}

static void fake_wrong_version(void)
{
  expect_fake_fails_with("is hwloc 3.x, not 2.x; NUMA awareness off, running as one node");
}

static void fake_init_fails(void)
{
  expect_fake_fails_with("hwloc could not discover the topology; running as one node");
}

static void fake_load_fails(void)
{
  expect_fake_fails_with("hwloc could not discover the topology; running as one node");
}

static void fake_no_nodes(void)
{
  expect_fake_fails_with("no usable NUMA topology from hwloc; running as one node");
}

#define SYNTHETIC(s) "HWLOC_SYNTHETIC=" s
static const struct scenario scenarios[] = {
    {"two_nodes", two_nodes, {SYNTHETIC("node:2 pu:1")}},
    {"four_nodes_fake_cpus", four_nodes_fake_cpus, {SYNTHETIC("node:4 pu:1")}},
    {"packages_of_nodes", packages_of_nodes, {SYNTHETIC("pack:2 node:2 core:2 pu:2")}},
    {"xml_file", xml_file, {NULL}},
    {"one_node_never_loads_hwloc", one_node_never_loads_hwloc, {NULL}},
    {"numa_off", numa_off, {"HMALLOC_NUMA=0", SYNTHETIC("node:2 pu:1")}},
    {"bad_numa_value_warns", bad_numa_value_warns, {"HMALLOC_NUMA=yes", SYNTHETIC("node:2 pu:1")}},
    {"missing_library_warns_once", missing_library_warns_once, {SYNTHETIC("node:2 pu:1")}},
    {"fake_memory_only_node_first", fake_memory_only_node_first,
     {SYNTHETIC("node:2 pu:1"), "FAKE_HWLOC_HBM=1"}},
    {"fake_many_nodes_fold", fake_many_nodes_fold,
     {SYNTHETIC("node:2 pu:1"), "FAKE_HWLOC_NODES=70"}},
    {"fake_wrong_version", fake_wrong_version,
     {SYNTHETIC("node:2 pu:1"), "FAKE_HWLOC_VERSION=0x30000"}},
    {"fake_init_fails", fake_init_fails, {SYNTHETIC("node:2 pu:1"), "FAKE_HWLOC_FAIL=init"}},
    {"fake_load_fails", fake_load_fails, {SYNTHETIC("node:2 pu:1"), "FAKE_HWLOC_FAIL=load"}},
    {"fake_no_nodes", fake_no_nodes, {SYNTHETIC("node:2 pu:1"), "FAKE_HWLOC_NODES=0"}},
};

int main(int argc, char **argv)
{
  return run_scenarios(scenarios, sizeof scenarios / sizeof scenarios[0], argc, argv, 60);
}
