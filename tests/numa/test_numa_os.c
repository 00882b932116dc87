/* The OS half of NUMA support (arch/numa.h): the current CPU by every path,
 * the online node count, and mbind. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/rseq.h>

#include "../arch/numa.h"
#include "numa_test.h"

/* Pinned to each allowed CPU in turn, every available way of reading the
 * current CPU names that CPU. */
static void current_cpu_follows_pinning(void)
{
  int cpus[64];
  int n = allowed_cpus(cpus, 64);
  for (int i = 0; i < n; i++) {
    pin_to_cpu(cpus[i]);
    int rseq = hm_os_cpu_from_rseq(), rdpid = hm_os_cpu_from_rdpid();
    CHECK(hm_os_current_cpu() == cpus[i], "on CPU %d: current_cpu %d", cpus[i],
          hm_os_current_cpu());
    CHECK(hm_os_cpu_from_getcpu() == cpus[i], "on CPU %d: getcpu %d", cpus[i],
          hm_os_cpu_from_getcpu());
    CHECK(rseq == -1 || rseq == cpus[i], "on CPU %d: rseq %d", cpus[i], rseq);
    CHECK(rdpid == -1 || rdpid == cpus[i], "on CPU %d: rdpid %d", cpus[i], rdpid);
    CHECK(hm_os_current_cpu_slow() == cpus[i], "on CPU %d: slow path %d", cpus[i],
          hm_os_current_cpu_slow());
  }
}

/* With glibc's rseq registration (2.35+, on unless
 * GLIBC_TUNABLES=glibc.pthread.rseq=0), the fast path is rseq; without it,
 * RDPID where the CPU has it. */
static void source_is_the_cheapest_available(void)
{
  enum hm_os_cpu_source source = hm_os_current_cpu_source();
  printf("  current CPU from %s (glibc __rseq_size %u)\n", hm_os_cpu_source_name(source),
         __rseq_size);
  if (__rseq_size > 0)
    CHECK(source == HM_CPU_FROM_RSEQ, "rseq is registered but the source is %s",
          hm_os_cpu_source_name(source));
  else if (hm_os_cpu_from_rdpid() >= 0)
    CHECK(source == HM_CPU_FROM_RDPID, "RDPID works but the source is %s",
          hm_os_cpu_source_name(source));
  else
    CHECK(source == HM_CPU_FROM_GETCPU, "source %s", hm_os_cpu_source_name(source));
}

static void rseq_off(void)
{
  CHECK(hm_os_cpu_from_rseq() == -1, "GLIBC_TUNABLES turned rseq off, yet it reads %d",
        hm_os_cpu_from_rseq());
  CHECK(hm_os_current_cpu_source() != HM_CPU_FROM_RSEQ, "source is rseq");
  current_cpu_follows_pinning();
}

static void node_lists_parse(void)
{
  static const struct {
    const char *text;
    int nodes;
  } cases[] = {{"0\n", 1},     {"0-1\n", 2},    {"0,2-3", 3}, {"0-3,8-11\n", 8},
               {"5", 1},       {"", -1},        {"\n", -1},   {"1-0", -1},
               {"0,,1", -1},   {"a", -1},       {"0-", -1},   {"0-1023", 1024},
               {"0-1024", -1}, {"2,4,6\n", 3}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int got = hm_os_parse_node_list(cases[i].text, strlen(cases[i].text));
    CHECK(got == cases[i].nodes, "\"%s\": %d nodes, expected %d", cases[i].text, got,
          cases[i].nodes);
  }
}

/* The count matches the file, read here with stdio. */
static void nodes_online_matches_sysfs(void)
{
  int expected = 1;
  FILE *f = fopen("/sys/devices/system/node/online", "r");
  if (f != NULL) {
    char line[256] = "";
    if (fgets(line, sizeof line, f) != NULL)
      expected = hm_os_parse_node_list(line, strlen(line));
    fclose(f);
  }
  CHECK(hm_os_numa_nodes_online() == expected, "%d nodes online, sysfs says %d",
        hm_os_numa_nodes_online(), expected);
  printf("  %d NUMA node(s) online\n", expected);
}

/* Node 0 exists on every Linux machine: binding to it is visible in
 * numa_maps as a preferred-node policy. */
static void bind_to_node_zero(void)
{
  size_t size = 1 << 20;
  char *p = fresh_mapping(size), line[512];
  errno = 12345;
  CHECK(hm_os_bind(p, size, 0) == 0, "binding to node 0 failed");
  CHECK(errno == 12345, "errno changed to %d", errno);
  memset(p, 1, size);
  CHECK(numa_maps_line(p, line, sizeof line), "no numa_maps line for %p", (void *)p);
  CHECK(strstr(line, " prefer:0 ") != NULL, "numa_maps: %s", line);
  drop_mapping(p, size);
}

/* A node the kernel does not have is EINVAL, and the memory stays usable. */
static void bind_to_missing_nodes(void)
{
  size_t size = 1 << 20;
  char *p = fresh_mapping(size), line[512];
  int missing[] = {hm_os_numa_nodes_online() == 1 ? 1 : 1000, 1000, 1023, 1024, -1, 1 << 30};
  for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
    errno = 12345;
    int err = hm_os_bind(p, size, missing[i]);
    CHECK(err == EINVAL, "node %d: %d (%s)", missing[i], err, strerror(err));
    CHECK(errno == 12345, "errno changed to %d", errno);
  }
  memset(p, 2, size);
  CHECK(p[size - 1] == 2, "memory unusable");
  CHECK(numa_maps_line(p, line, sizeof line) && strstr(line, " default ") != NULL,
        "numa_maps: %s", line);
  drop_mapping(p, size);
}

static const struct scenario scenarios[] = {
    {"current_cpu_follows_pinning", current_cpu_follows_pinning, {NULL}},
    {"source_is_the_cheapest_available", source_is_the_cheapest_available, {NULL}},
    {"node_lists_parse", node_lists_parse, {NULL}},
    {"nodes_online_matches_sysfs", nodes_online_matches_sysfs, {NULL}},
    {"bind_to_node_zero", bind_to_node_zero, {NULL}},
    {"bind_to_missing_nodes", bind_to_missing_nodes, {NULL}},
};

static const struct scenario rseq_off_scenarios[] = {
    {"rseq_off", rseq_off, {NULL}},
    {"source_is_the_cheapest_available", source_is_the_cheapest_available, {NULL}},
};

int main(int argc, char **argv)
{
  /* Run by ctest a second time with glibc's rseq registration off. */
  const char *tunables = getenv("GLIBC_TUNABLES");
  if (tunables != NULL && strstr(tunables, "glibc.pthread.rseq=0") != NULL)
    return run_scenarios(rseq_off_scenarios, 2, argc, argv, 30);
  return run_scenarios(scenarios, sizeof scenarios / sizeof scenarios[0], argc, argv, 30);
}
