/* A stand-in for libhwloc.so.15, loaded by src/topology.c through
 * hm_topology_set_library(), so that tests decide the topology hwloc
 * reports, its failures, and where discovery stops:
 *
 *   FAKE_HWLOC_NODES=n       n ordinary nodes; node i has CPU i and OS index
 *                            100 + i (default 2)
 *   FAKE_HWLOC_HBM=1         a memory-only node (subtype "HBM", OS index 99,
 *                            covering every CPU) comes first
 *   FAKE_HWLOC_VERSION=hex   what hwloc_get_api_version returns
 *   FAKE_HWLOC_FAIL=init|load  that call fails
 *   FAKE_HWLOC_THISSYSTEM=1  the topology is this machine's
 *   FAKE_HWLOC_BLOCK=ctor|init|load, FAKE_HWLOC_GATE=dir
 *                            on reaching that stage (ctor: the library's
 *                            constructor, inside dlopen), create dir/reached
 *                            and wait (at most 20 s) until dir/open exists
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdbool.h>
#include <hwloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_FAKE_NODES 128

struct hwloc_bitmap_s {
  uint64_t words[MAX_FAKE_NODES / 64 + 1];
};

struct fake_topology {
  int count;
  struct hwloc_obj objs[MAX_FAKE_NODES + 1];
  struct hwloc_bitmap_s sets[MAX_FAKE_NODES + 1];
};

static int env_int(const char *name, int fallback)
{
  const char *v = getenv(name);
  return v != NULL && *v != '\0' ? (int)strtol(v, NULL, 0) : fallback;
}

static bool env_is(const char *name, const char *value)
{
  const char *v = getenv(name);
  return v != NULL && strcmp(v, value) == 0;
}

static bool exists(const char *dir, const char *name)
{
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return access(path, F_OK) == 0;
}

/* Stops here while the test forks, if asked to. */
static void stage(const char *name)
{
  const char *gate = getenv("FAKE_HWLOC_GATE");
  if (!env_is("FAKE_HWLOC_BLOCK", name) || gate == NULL)
    return;
  char path[512];
  snprintf(path, sizeof path, "%s/reached", gate);
  close(open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  const struct timespec ms = {0, 1000000};
  for (int waited = 0; waited < 20000 && !exists(gate, "open"); waited++)
    nanosleep(&ms, NULL);
}

__attribute__((constructor)) static void fake_hwloc_loaded(void)
{
  stage("ctor");
}

static void set_bit(struct hwloc_bitmap_s *set, int bit)
{
  set->words[bit / 64] |= 1ull << (bit % 64);
}

static void add_node(struct fake_topology *t, unsigned os_index, const char *subtype)
{
  struct hwloc_obj *obj = &t->objs[t->count];
  obj->type = HWLOC_OBJ_NUMANODE;
  obj->os_index = os_index;
  obj->logical_index = (unsigned)t->count;
  obj->subtype = (char *)subtype;
  obj->cpuset = &t->sets[t->count];
  t->count++;
}

unsigned hwloc_get_api_version(void)
{
  return (unsigned)env_int("FAKE_HWLOC_VERSION", HWLOC_API_VERSION);
}

int hwloc_topology_init(hwloc_topology_t *topo)
{
  stage("init");
  if (env_is("FAKE_HWLOC_FAIL", "init"))
    return -1;
  *topo = calloc(1, sizeof(struct fake_topology));
  return *topo != NULL ? 0 : -1;
}

int hwloc_topology_load(hwloc_topology_t topo)
{
  stage("load");
  if (env_is("FAKE_HWLOC_FAIL", "load"))
    return -1;
  struct fake_topology *t = (struct fake_topology *)topo;
  int nodes = env_int("FAKE_HWLOC_NODES", 2);
  nodes = nodes < MAX_FAKE_NODES ? nodes : MAX_FAKE_NODES;
  if (env_is("FAKE_HWLOC_HBM", "1")) {
    add_node(t, 99, "HBM");
    for (int cpu = 0; cpu < nodes; cpu++)
      set_bit(&t->sets[0], cpu);
  }
  for (int i = 0; i < nodes; i++) {
    set_bit(&t->sets[t->count], i);
    add_node(t, 100u + (unsigned)i, NULL);
  }
  return 0;
}

void hwloc_topology_destroy(hwloc_topology_t topo)
{
  free(topo);
}

int hwloc_topology_set_cache_types_filter(hwloc_topology_t topo, enum hwloc_type_filter_e f)
{
  (void)topo;
  (void)f;
  return 0;
}

int hwloc_topology_set_icache_types_filter(hwloc_topology_t topo, enum hwloc_type_filter_e f)
{
  (void)topo;
  (void)f;
  return 0;
}

int hwloc_topology_is_thissystem(hwloc_topology_t topo)
{
  (void)topo;
  return env_is("FAKE_HWLOC_THISSYSTEM", "1");
}

unsigned hwloc_get_nbobjs_by_depth(hwloc_topology_t topo, int depth)
{
  return depth == HWLOC_TYPE_DEPTH_NUMANODE ? (unsigned)((struct fake_topology *)topo)->count : 0;
}

hwloc_obj_t hwloc_get_obj_by_depth(hwloc_topology_t topo, int depth, unsigned idx)
{
  struct fake_topology *t = (struct fake_topology *)topo;
  if (depth != HWLOC_TYPE_DEPTH_NUMANODE || idx >= (unsigned)t->count)
    return NULL;
  return &t->objs[idx];
}

int hwloc_bitmap_next(hwloc_const_bitmap_t set, int prev)
{
  for (int bit = prev + 1; bit < MAX_FAKE_NODES; bit++)
    if (set->words[bit / 64] & (1ull << (bit % 64)))
      return bit;
  return -1;
}

int hwloc_bitmap_last(hwloc_const_bitmap_t set)
{
  for (int bit = MAX_FAKE_NODES - 1; bit >= 0; bit--)
    if (set->words[bit / 64] & (1ull << (bit % 64)))
      return bit;
  return -1;
}
