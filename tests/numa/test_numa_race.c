/* Topology discovery racing with the first mallocs of 16 threads (and,
 * built with START_IN_CONSTRUCTOR, started by a malloc in a constructor,
 * before main). Run with HWLOC_SYNTHETIC="node:2 pu:1" from ctest. Linked
 * with hmalloc_static, hwloc's own mallocs go through hmalloc on the helper
 * thread meanwhile. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "hmalloc.h"
#include "numa_test.h"
#include "topology.h"

enum { THREADS = 16, ROUNDS = 4000, SLOTS = 32 };

static pthread_barrier_t barrier;

#ifdef START_IN_CONSTRUCTOR
static void *early_block;

__attribute__((constructor)) static void start_before_main(void)
{
  early_block = hm_malloc(100);
  memset(early_block, 7, 100);
  hm_topology_start();
}
#endif

static void fill(unsigned char *p, size_t size, unsigned tag)
{
  for (size_t i = 0; i < size; i++)
    p[i] = (unsigned char)(tag + i);
}

static void verify(const unsigned char *p, size_t size, unsigned tag)
{
  for (size_t i = 0; i < size; i++)
    CHECK(p[i] == (unsigned char)(tag + i), "block %p byte %zu overwritten", (const void *)p, i);
}

/* The first malloc of the thread, then the start as the allocator's slow
 * path will call it, then allocation with content checks while hwloc
 * loads. */
static void *racer(void *arg)
{
  unsigned id = (unsigned)(uintptr_t)arg;
  pthread_barrier_wait(&barrier);
  unsigned char *first = hm_malloc(64);
  CHECK(first != NULL, "first malloc failed");
  hm_topology_start();
  unsigned char *blocks[SLOTS] = {0};
  size_t sizes[SLOTS] = {0};
  unsigned seed = id * 2654435761u + 1;
  for (int r = 0; r < ROUNDS; r++) {
    seed = seed * 1103515245u + 12345u;
    unsigned s = (seed >> 8) % SLOTS;
    if (blocks[s] != NULL) {
      verify(blocks[s], sizes[s], id + s);
      hm_free(blocks[s]);
    }
    sizes[s] = 1 + (seed >> 16) % 2048;
    blocks[s] = hm_malloc(sizes[s]);
    CHECK(blocks[s] != NULL, "malloc(%zu) failed", sizes[s]);
    fill(blocks[s], sizes[s], id + s);
    int node = hm_topology_current_node(), nodes = hm_topology_nodes();
    CHECK(nodes == 1 || nodes == 2, "%d nodes", nodes);
    CHECK(node >= 0 && node < 2, "node %d", node);
  }
  for (int s = 0; s < SLOTS; s++)
    if (blocks[s] != NULL) {
      verify(blocks[s], sizes[s], id + (unsigned)s);
      hm_free(blocks[s]);
    }
  hm_free(first);
  return NULL;
}

int main(void)
{
  pthread_barrier_init(&barrier, NULL, THREADS);
  pthread_t t[THREADS];
  for (unsigned i = 0; i < THREADS; i++)
    CHECK(pthread_create(&t[i], NULL, racer, (void *)(uintptr_t)i) == 0, "pthread_create");
  for (unsigned i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  CHECK(hm_topology_wait_ready(20000), "no table after 20 s");
  CHECK(hm_topology_discoveries() == 1, "%u discoveries", hm_topology_discoveries());
  CHECK(hm_topology_nodes() == 2 && hm_topology_node_of_cpu(0) == 0 &&
            hm_topology_node_of_cpu(1) == 1,
        "%d nodes, CPU 0 on %d, CPU 1 on %d", hm_topology_nodes(), hm_topology_node_of_cpu(0),
        hm_topology_node_of_cpu(1));
#ifdef START_IN_CONSTRUCTOR
  for (int i = 0; i < 100; i++)
    CHECK(((unsigned char *)early_block)[i] == 7, "the constructor's block changed");
  hm_free(early_block);
#endif
  printf("1 passed, 0 failed\n");
  return 0;
}
