/* Puts the threads of the stress test (tests/stress/test_stress.c, built
 * unchanged with this file and -Wl,--wrap=pthread_create) on every node of
 * the synthetic topology in HWLOC_SYNTHETIC, though this machine has only
 * two CPUs: each thread the test starts gets the fake CPU of node
 * (its number % nodes). The first pthread_create waits for the topology, so
 * that every worker's first allocation already sees all the nodes.
 *
 * At exit (after the test's own checks passed and main returned), every
 * node must have formed spans and seen cross-node frees: all the arenas
 * were used, and blocks went back across nodes. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "arena_test.h"
#include "node_test.h"
#include "numa_test.h"
#include "topology.h"

int __real_pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                          void *(*start)(void *), void *arg);

#define MAX_THREADS 1024

struct start {
  void *(*fn)(void *);
  void *arg;
  int node;
};

static struct start starts[MAX_THREADS];
static atomic_uint started;

static void *on_fake_node(void *p)
{
  struct start *s = p;
  move_to_node(BY_FAKE_CPU, s->node);
  return s->fn(s->arg);
}

/* Starts discovery (a no-op if a malloc did already) and waits for the
 * table: a multi-node topology is the point of this test. */
static int wait_for_topology(void)
{
  static atomic_bool ready;
  if (!atomic_load(&ready)) {
    hm_topology_start();
    CHECK(hm_topology_wait_ready(20000), "no multi-node topology within 20 s (is HWLOC_SYNTHETIC set?)");
    CHECK(hm_topology_nodes() > 1, "%d node(s)", hm_topology_nodes());
    atomic_store(&ready, true);
  }
  return hm_topology_nodes();
}

/* The allocator's own threads (topology discovery, background purge) are
 * created detached; the test's are joinable. */
static bool allocator_thread(const pthread_attr_t *attr)
{
  int state;
  return attr != NULL && pthread_attr_getdetachstate(attr, &state) == 0 &&
         state == PTHREAD_CREATE_DETACHED;
}

int __wrap_pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                          void *(*start)(void *), void *arg)
{
  if (allocator_thread(attr))
    return __real_pthread_create(thread, attr, start, arg);
  int nodes = wait_for_topology();
  unsigned i = atomic_fetch_add(&started, 1);
  CHECK(i < MAX_THREADS, "more than %d threads", MAX_THREADS);
  starts[i] = (struct start){start, arg, (int)(i % (unsigned)nodes)};
  return __real_pthread_create(thread, attr, on_fake_node, &starts[i]);
}

__attribute__((destructor)) static void every_node_used(void)
{
  if (atomic_load(&started) == 0)
    return;
  struct hm_node_stats st[TEST_MAX_NODES];
  int nodes = node_stats_all(st);
  print_node_stats("stress on fake nodes");
  for (int n = 0; n < nodes; n++)
    CHECK(st[n].spans > 0 && st[n].cross_node_frees > 0,
          "node %d: %zu spans, %zu cross-node frees: not every arena was used", n, st[n].spans,
          st[n].cross_node_frees);
  printf("every one of %d nodes formed spans and took cross-node frees\n", nodes);
}
