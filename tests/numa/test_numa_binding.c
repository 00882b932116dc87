/* Regions and huge mappings bound to their arena's node, seen from a
 * program that uses libhmalloc.so as its malloc (only the public API: the
 * topology's internals are hidden in the library).
 *
 * On this one-node machine the program re-executes itself under a
 * synthetic 2-node topology declared to be this machine
 * (HWLOC_SYNTHETIC="node:2 pu:1", HWLOC_THISSYSTEM=1): CPU 0 is node 0,
 * which exists, CPU 1 is node 1, which the kernel does not have.
 *   node0_bound      a thread on CPU 0 fills new regions and huge mappings:
 *                    /proc/self/numa_maps shows them "prefer:0" (except the
 *                    regions reserved before the topology was known);
 *   node1_unbound    a thread on CPU 1 makes node 1's arena reserve regions
 *                    and huge mappings: every binding fails with EINVAL, the
 *                    process prints exactly one warning line, the memory is
 *                    left at the default policy and works.
 * On a machine with several nodes (the qemu guest, tests/numa/qemu) it runs
 * on the real topology instead, and node 1's memory must be "prefer:1"
 * without any warning. */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arena_test.h"
#include "numa_test.h"

#define REGION_SIZE ((uintptr_t)64 << 20)
#define LARGE_BLOCK ((size_t)1 << 20)
#define LARGE_BLOCKS 100 /* 100 MiB of 1 MiB runs: new regions, whatever is free */
#define SMALL_BLOCKS 4000
#define HUGE_BLOCK ((size_t)8 << 20)
#define HUGE_BLOCKS 2
#define WARNING                                                                              \
  "hmalloc: binding memory to NUMA node 1 failed (Invalid argument); continuing unbound\n"

static bool synthetic;      /* the re-executed synthetic 2-node run */
static size_t early_mapped; /* node 0's mapping when the topology became known */
static int cpus[256], ncpus; /* the process's CPUs, before main pinned itself */

/* Online NUMA nodes of this machine: /sys/devices/system/node/nodeN. */
static int machine_nodes(void)
{
  DIR *d = opendir("/sys/devices/system/node");
  if (d == NULL)
    return 1;
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    n += strncmp(e->d_name, "node", 4) == 0 && e->d_name[4] >= '0' && e->d_name[4] <= '9';
  closedir(d);
  return n > 0 ? n : 1;
}

/* A CPU of this process on OS node `node`: in the synthetic topology CPU
 * `node`; on a real one, the CPU whose sysfs directory names that node. */
static int cpu_of_node(int node)
{
  for (int i = 0; i < ncpus; i++) {
    char path[128];
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/node%d", cpus[i], node);
    if (synthetic ? cpus[i] == node : access(path, F_OK) == 0)
      return cpus[i];
  }
  test_fail(__FILE__, __LINE__, "cpu_of_node", "no CPU of node %d allowed", node);
}

/* ---- allocating on a node --------------------------------------------------- */

struct node_blocks {
  int node, cpu;
  void *small[SMALL_BLOCKS], *large[LARGE_BLOCKS], *huge[HUGE_BLOCKS];
};

static size_t small_size(size_t i)
{
  return 16 + i % 2000;
}

static void *filled(size_t size, uint64_t tag)
{
  void *p = malloc(size);
  CHECK(p != NULL, "malloc(%zu) failed", size);
  fill_pattern(p, size, tag);
  return p;
}

static void *allocate_on_node(void *arg)
{
  struct node_blocks *b = arg;
  pin_to_cpu(b->cpu);
  for (size_t i = 0; i < SMALL_BLOCKS; i++)
    b->small[i] = filled(small_size(i), i);
  for (size_t i = 0; i < LARGE_BLOCKS; i++)
    b->large[i] = filled(LARGE_BLOCK, 100000 + i);
  for (size_t i = 0; i < HUGE_BLOCKS; i++)
    b->huge[i] = filled(HUGE_BLOCK, 200000 + i);
  return NULL;
}

static void verify_and_free(struct node_blocks *b)
{
  for (size_t i = 0; i < SMALL_BLOCKS; i++) {
    expect_pattern(b->small[i], small_size(i), i, "small block");
    free(b->small[i]);
  }
  for (size_t i = 0; i < LARGE_BLOCKS; i++) {
    expect_pattern(b->large[i], LARGE_BLOCK, 100000 + i, "large block");
    free(b->large[i]);
  }
  for (size_t i = 0; i < HUGE_BLOCKS; i++) {
    expect_pattern(b->huge[i], HUGE_BLOCK, 200000 + i, "huge block");
    free(b->huge[i]);
  }
}

/* The thread's CPU is found first: a failure inside the thread may go to
 * a captured stderr. */
static struct node_blocks *run_thread_on_node(int node)
{
  static struct node_blocks b;
  b.node = node;
  b.cpu = cpu_of_node(node);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, allocate_on_node, &b) == 0, "pthread_create");
  CHECK(pthread_join(t, NULL) == 0, "pthread_join");
  return &b;
}

/* ---- what numa_maps says ------------------------------------------------------- */

struct policies {
  int regions, bound, unbound; /* distinct regions of the blocks */
  int huge_bound, huge_unbound;
};

/* On a machine that has the node, the pages of a bound mapping are on it:
 * numa_maps counts them as N<node>= and names no other node. */
static void expect_pages_on(const char *line, int node)
{
  for (int n = 0; n < 64; n++) {
    char field[16];
    snprintf(field, sizeof field, " N%d=", n);
    CHECK((strstr(line, field) != NULL) == (n == node), "pages %s node %d: %s",
          n == node ? "missing on" : "on", n, line);
  }
}

static bool shows(const void *p, const char *policy, int node, char *line, size_t cap)
{
  CHECK(numa_maps_line(p, line, cap), "no numa_maps line for %p", p);
  bool bound = strstr(line, policy) != NULL;
  if (bound && !synthetic)
    expect_pages_on(line, node);
  return bound;
}

/* Tallies the policy of every distinct region of the small and large
 * blocks, and of every huge mapping, against `policy` (" prefer:N "). */
static struct policies tally(const struct node_blocks *b, const char *policy)
{
  struct policies out = {0};
  uintptr_t seen[64];
  const void *blocks[SMALL_BLOCKS + LARGE_BLOCKS];
  memcpy(blocks, b->small, sizeof b->small);
  memcpy(blocks + SMALL_BLOCKS, b->large, sizeof b->large);
  char line[512];
  for (size_t i = 0; i < SMALL_BLOCKS + LARGE_BLOCKS; i++) {
    uintptr_t region = (uintptr_t)blocks[i] & ~(REGION_SIZE - 1);
    bool known = false;
    for (int r = 0; r < out.regions && !known; r++)
      known = seen[r] == region;
    if (known)
      continue;
    CHECK(out.regions < 64, "more than 64 regions");
    seen[out.regions++] = region;
    bool bound = shows(blocks[i], policy, b->node, line, sizeof line);
    out.bound += bound;
    out.unbound += !bound;
    printf("  region %#lx: %.72s\n", (unsigned long)region, line);
  }
  for (size_t i = 0; i < HUGE_BLOCKS; i++) {
    bool bound = shows(b->huge[i], policy, b->node, line, sizeof line);
    out.huge_bound += bound;
    out.huge_unbound += !bound;
    printf("  huge %p: %.72s\n", b->huge[i], line);
  }
  return out;
}

/* ---- scenarios ------------------------------------------------------------------ */

/* Node 0's regions reserved after the topology was known, and its huge
 * mappings, are bound to node 0; those before it cannot be (at most what
 * node 0 had mapped then). */
static void node0_bound(void)
{
  struct node_blocks *b = run_thread_on_node(0);
  struct policies p = tally(b, " prefer:0 ");
  print_node_stats("node 0 thread");
  size_t early_regions = early_mapped / REGION_SIZE;
  CHECK(p.bound >= 1, "none of %d regions of node 0 is bound", p.regions);
  CHECK((size_t)p.unbound <= early_regions,
        "%d regions of node 0 unbound, only %zu existed before the topology", p.unbound,
        early_regions);
  CHECK(p.huge_bound == HUGE_BLOCKS, "%d of %d huge mappings bound", p.huge_bound, HUGE_BLOCKS);
  verify_and_free(b);
}

/* Node 1: absent here (EINVAL, one warning, default policy), bound on a
 * machine that has it (no warning). */
static void node1_unbound(void)
{
  capture_stderr_begin();
  struct node_blocks *b = run_thread_on_node(1);
  char err[4096];
  capture_stderr_end(err, sizeof err);
  bool exists = !synthetic;
  struct policies p = tally(b, exists ? " prefer:1 " : " default ");
  print_node_stats("node 1 thread");
  struct hm_node_stats st;
  CHECK(hm_stats_node_get(1, &st) == 0 && st.mapped >= 2 * REGION_SIZE,
        "node 1 maps %zu bytes", st.mapped);
  CHECK(p.regions >= 2 && p.bound == p.regions && p.huge_bound == HUGE_BLOCKS,
        "node 1: %d of %d regions, %d of %d huge mappings %s", p.bound, p.regions, p.huge_bound,
        HUGE_BLOCKS, exists ? "bound" : "left at the default policy");
  if (exists)
    CHECK(err[0] == '\0', "stderr: %s", err);
  else
    CHECK(strcmp(err, WARNING) == 0, "stderr, %d lines, expected one warning:\n%s",
          count_lines(err), err);
  printf("  stderr: %s", err[0] ? err : "(nothing)\n");
  verify_and_free(b);
}

static const struct scenario scenarios[] = {
    {"node0_bound", node0_bound, {NULL}},
    {"node1_unbound", node1_unbound, {NULL}},
};

/* Under the override, the topology is decided at the first malloc, which
 * may come before main: the variables must be there from the start. */
static void reexec_synthetic(char **argv)
{
  setenv("HWLOC_SYNTHETIC", "node:2 pu:1", 1);
  setenv("HWLOC_THISSYSTEM", "1", 1);
  unsetenv("HMALLOC_NUMA");
  execv("/proc/self/exe", argv);
  test_fail(__FILE__, __LINE__, "execv", "cannot re-execute /proc/self/exe");
}

static void wait_for_two_nodes(void)
{
  const struct timespec ms = {0, 1000000};
  void *volatile first = malloc(1); /* starts discovery if nothing did (volatile: not elided) */
  free(first);
  for (int waited = 0; waited < 20000 && hm_stats_nodes() < 2; waited++)
    nanosleep(&ms, NULL);
  CHECK(hm_stats_nodes() == 2, "%d nodes after 20 s", hm_stats_nodes());
}

int main(int argc, char **argv)
{
  if (machine_nodes() == 1 && getenv("HWLOC_SYNTHETIC") == NULL)
    reexec_synthetic(argv);
  synthetic = getenv("HWLOC_SYNTHETIC") != NULL;
  ncpus = allowed_cpus(cpus, 256);
  /* The main thread stays on node 0: none of its allocations may reserve
   * (and fail to bind) node 1's memory before the scenario that watches. */
  pin_to_cpu(cpu_of_node(0));
  wait_for_two_nodes();
  struct hm_node_stats st;
  CHECK(hm_stats_node_get(0, &st) == 0, "no node 0");
  early_mapped = st.mapped;
  printf("%s topology, %d nodes; node 0 mapped %zu MiB when it became known\n",
         synthetic ? "synthetic" : "real", hm_stats_nodes(), early_mapped >> 20);
  return run_scenarios(scenarios, sizeof scenarios / sizeof scenarios[0], argc, argv, 60);
}
