/* The NUMA topology, discovered by hwloc on a helper thread (topology.h). */
#define _GNU_SOURCE
#include "topology.h"

#include <dlfcn.h>
#include <errno.h>
#include <hwloc.h>
#include <string.h>
#include <time.h>

struct hm_topology_shared hm_topology_shared;

/* Where discovery is. The helper thread marks its way through the dynamic
 * loader: glibc's fork resets the loader lock in the child without taking
 * it in the parent, so a child forked while the helper was inside dlopen
 * may find the loader's lists half-updated and must not dlopen again. Forks
 * wait for the helper to leave the loader, or hold it before it enters
 * (hm_topology_fork_prepare). Once a table is published, the state no
 * longer matters to a fork child: it keeps the table. */
enum topo_state {
  TOPO_IDLE,        /* not started, or to restart after a fork */
  TOPO_DECIDING,    /* a thread in hm_topology_start() reads the environment */
  TOPO_STARTING,    /* the helper is created, not yet in the loader */
  TOPO_HELD,        /* as STARTING, and a fork keeps the helper out of the loader */
  TOPO_IN_LOADER,   /* the helper is in dlopen, or in hwloc's init or destroy
                       (which dlopen and dlclose its plugins) */
  TOPO_DISCOVERING, /* the helper is in hwloc_topology_load or building the table */
  TOPO_DONE,        /* a table is published, or the process stays at one node */
};
/* How long a fork waits for the helper to leave the loader. Loading hwloc
 * and its plugins takes a few milliseconds (tens with a cold page cache);
 * the bound only matters if the helper is stuck, e.g. on the loader lock of
 * a thread that forks from a library constructor. */
static _Atomic int fork_wait_ms = 250;
static _Atomic int topo_state;
static _Atomic unsigned discoveries;
static _Atomic bool bind_warned;
static const char *hwloc_soname = "libhwloc.so.15";

/* The test hook's CPU, plus one (0: not faked). Initial-exec like the
 * thread-cache pointer: 4 bytes, read only once a thread has faked. */
static __thread int fake_cpu_plus_one __attribute__((tls_model("initial-exec")));

static void set_state(enum topo_state s)
{
  /* Sequentially consistent: a fork snapshot taken after the helper entered
   * dlopen must show TOPO_IN_LOADER. */
  atomic_store(&topo_state, s);
}

static void sleep_ms(long ms)
{
  const struct timespec ts = {ms / 1000, ms % 1000 * 1000000};
  nanosleep(&ts, NULL);
}

static const hm_topology_table *published(void)
{
  return atomic_load_explicit(&hm_topology_shared.table, memory_order_acquire);
}

/* One warning line, formatted by hm_format (no stdio: no allocation). */
#define WARNF(...)                                                                           \
  do {                                                                                       \
    char warn_msg_[224];                                                                     \
    hm_format(warn_msg_, sizeof warn_msg_, __VA_ARGS__);                                     \
    hm_warn(warn_msg_);                                                                      \
  } while (0)

/* ---- hwloc, through dlopen ---------------------------------------------
 * Only the functions below are called, through pointers: the headers give
 * their types, the library is never linked (a DT_NEEDED entry would load
 * hwloc, its plugins and their X11/OpenCL/libxml2 dependencies into every
 * process, one-node machines included). The header's inline helpers call
 * other exported functions, so none of them is used. */
#define HWLOC_FUNCTIONS(X)                                                                   \
  X(hwloc_get_api_version)                                                                   \
  X(hwloc_topology_init)                                                                     \
  X(hwloc_topology_load)                                                                     \
  X(hwloc_topology_destroy)                                                                  \
  X(hwloc_topology_set_cache_types_filter)                                                   \
  X(hwloc_topology_set_icache_types_filter)                                                  \
  X(hwloc_topology_is_thissystem)                                                            \
  X(hwloc_get_nbobjs_by_depth)                                                               \
  X(hwloc_get_obj_by_depth)                                                                  \
  X(hwloc_bitmap_next)                                                                       \
  X(hwloc_bitmap_last)
/* Since hwloc 2.1: may be missing from an older 2.x. */
#define HWLOC_OPTIONAL_FUNCTIONS(X) X(hwloc_topology_set_components)

#define HWLOC_POINTER(name) __typeof__(name) *name;
struct hwloc_api {
  HWLOC_FUNCTIONS(HWLOC_POINTER)
  HWLOC_OPTIONAL_FUNCTIONS(HWLOC_POINTER)
};

struct hwloc_symbol {
  const char *name;
  size_t offset;
};
#define HWLOC_SYMBOL(name) {#name, offsetof(struct hwloc_api, name)},
static const struct hwloc_symbol hwloc_required[] = {HWLOC_FUNCTIONS(HWLOC_SYMBOL)};
static const struct hwloc_symbol hwloc_optional[] = {HWLOC_OPTIONAL_FUNCTIONS(HWLOC_SYMBOL)};

/* Looks up every one of `symbols` (a missing one stays NULL); returns the
 * name of the first missing one, or NULL. */
static const char *resolve(void *lib, struct hwloc_api *api, const struct hwloc_symbol *symbols,
                           size_t count)
{
  const char *missing = NULL;
  for (size_t i = 0; i < count; i++) {
    void *f = dlsym(lib, symbols[i].name);
    if (f == NULL && missing == NULL)
      missing = symbols[i].name;
    memcpy((char *)api + symbols[i].offset, &f, sizeof f);
  }
  return missing;
}

/* dlopens hwloc and checks it is the 2.x the headers describe. Never
 * dlclosed: its plugins pull in libraries that may have registered exit
 * handlers and thread keys. */
static bool hwloc_open(struct hwloc_api *api)
{
  memset(api, 0, sizeof *api);
  void *lib = dlopen(hwloc_soname, RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    const char *why = dlerror();
    WARNF("cannot load %s (%s); NUMA awareness off, running as one node", hwloc_soname,
          why != NULL ? why : "unknown error");
    return false;
  }
  const char *missing =
      resolve(lib, api, hwloc_required, sizeof hwloc_required / sizeof hwloc_required[0]);
  if (missing != NULL) {
    WARNF("%s has no %s; NUMA awareness off, running as one node", hwloc_soname, missing);
    return false;
  }
  resolve(lib, api, hwloc_optional, sizeof hwloc_optional / sizeof hwloc_optional[0]);
  unsigned version = api->hwloc_get_api_version();
  if (version >> 16 != HWLOC_API_VERSION >> 16) {
    WARNF("%s is hwloc %u.x, not %u.x; NUMA awareness off, running as one node", hwloc_soname,
          version >> 16, (unsigned)HWLOC_API_VERSION >> 16);
    return false;
  }
  return true;
}

/* hwloc_topology_init and _load, keeping only what the table needs. */
static bool hwloc_discover(const struct hwloc_api *api, hwloc_topology_t *topo)
{
  if (api->hwloc_topology_init(topo) != 0)
    return false;
  /* Caches are many objects nobody here reads. Groups and cores must stay:
   * NUMA nodes hang below them, and without them every node would hang
   * from the machine and cover every CPU. */
  api->hwloc_topology_set_cache_types_filter(*topo, HWLOC_TYPE_FILTER_KEEP_NONE);
  api->hwloc_topology_set_icache_types_filter(*topo, HWLOC_TYPE_FILTER_KEEP_NONE);
  /* The x86 backend only adds caches and cores, binding this thread to
   * every CPU in turn to read cpuid; Linux's sysfs has the nodes. */
  if (api->hwloc_topology_set_components != NULL)
    api->hwloc_topology_set_components(*topo, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "x86");
  set_state(TOPO_DISCOVERING);
  if (api->hwloc_topology_load(*topo) == 0)
    return true;
  set_state(TOPO_IN_LOADER);
  api->hwloc_topology_destroy(*topo);
  return false;
}

/* ---- the table ---------------------------------------------------------- */

#define NO_NODE UINT16_MAX
/* Guards the table's size against a nonsensical CPU number. */
#define MAX_CPUS (1 << 20)

static hwloc_obj_t numa_node(const struct hwloc_api *api, hwloc_topology_t topo, int i)
{
  return api->hwloc_get_obj_by_depth(topo, HWLOC_TYPE_DEPTH_NUMANODE, (unsigned)i);
}

static int highest_cpu(const struct hwloc_api *api, hwloc_topology_t topo, int count)
{
  int highest = 0;
  for (int i = 0; i < count; i++) {
    int last = api->hwloc_bitmap_last(numa_node(api, topo, i)->cpuset);
    if (last > highest)
      highest = last < MAX_CPUS ? last : MAX_CPUS - 1;
  }
  return highest;
}

/* Gives each CPU of `obj` not yet claimed to `node`. */
static void claim_cpus(const struct hwloc_api *api, hm_topology_table *t, hwloc_obj_t obj,
                       int node)
{
  for (int cpu = api->hwloc_bitmap_next(obj->cpuset, -1); cpu >= 0 && (uint32_t)cpu < t->cpus;
       cpu = api->hwloc_bitmap_next(obj->cpuset, cpu))
    if (t->node_of_cpu[cpu] == NO_NODE)
      t->node_of_cpu[cpu] = (uint16_t)node;
}

/* A node's cpuset is that of the object it hangs from, so memory-only nodes
 * (HBM, CXL, GPU memory: hwloc gives them a subtype) share the CPUs of the
 * ordinary node beside them. Ordinary nodes claim their CPUs first. */
static void fill_cpus(const struct hwloc_api *api, hwloc_topology_t topo, hm_topology_table *t,
                      int count)
{
  for (uint32_t cpu = 0; cpu < t->cpus; cpu++)
    t->node_of_cpu[cpu] = NO_NODE;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < count; i++) {
      hwloc_obj_t obj = numa_node(api, topo, i);
      if ((obj->subtype == NULL) == (pass == 0))
        claim_cpus(api, t, obj, i % HM_TOPOLOGY_MAX_NODES);
    }
  for (uint32_t cpu = 0; cpu < t->cpus; cpu++)
    if (t->node_of_cpu[cpu] == NO_NODE)
      t->node_of_cpu[cpu] = 0;
}

/* The compact table, in memory of its own (it lives as long as the
 * process, and the allocator must not depend on itself for it). */
static hm_topology_table *build_table(const struct hwloc_api *api, hwloc_topology_t topo)
{
  int count = (int)api->hwloc_get_nbobjs_by_depth(topo, HWLOC_TYPE_DEPTH_NUMANODE);
  if (count <= 0)
    return NULL;
  if (count > HM_TOPOLOGY_MAX_NODES)
    WARNF("hwloc reports %d NUMA nodes; folding them onto %d arenas", count,
          HM_TOPOLOGY_MAX_NODES);
  uint32_t cpus = (uint32_t)highest_cpu(api, topo, count) + 1;
  size_t size = hm_align_up(offsetof(hm_topology_table, node_of_cpu) + cpus * sizeof(uint16_t),
                            HM_GRANULE);
  hm_topology_table *t = hm_os_reserve(size, HM_GRANULE, true);
  if (t == NULL || !hm_os_commit(t, size))
    return NULL;
  t->nodes = (uint32_t)(count < HM_TOPOLOGY_MAX_NODES ? count : HM_TOPOLOGY_MAX_NODES);
  t->cpus = cpus;
  t->thissystem = api->hwloc_topology_is_thissystem(topo) != 0;
  for (uint32_t i = 0; i < t->nodes; i++)
    t->os_node[i] = (int32_t)numa_node(api, topo, (int)i)->os_index;
  fill_cpus(api, topo, t, count);
  return t;
}

/* ---- the helper thread -------------------------------------------------- */

static void discover_and_publish(void)
{
  struct hwloc_api api;
  hwloc_topology_t topo;
  if (!hwloc_open(&api))
    return; /* it warned */
  if (!hwloc_discover(&api, &topo)) {
    hm_warn("hwloc could not discover the topology; running as one node");
    return;
  }
  hm_topology_table *t = build_table(&api, topo);
  if (t != NULL)
    atomic_store_explicit(&hm_topology_shared.table, t, memory_order_release);
  else
    hm_warn("no usable NUMA topology from hwloc; running as one node");
  set_state(TOPO_IN_LOADER);
  api.hwloc_topology_destroy(topo);
}

/* STARTING -> IN_LOADER, waiting while a fork holds the helper back. */
static void enter_loader(void)
{
  for (;;) {
    int expected = TOPO_STARTING;
    if (atomic_compare_exchange_strong(&topo_state, &expected, TOPO_IN_LOADER))
      return;
    sleep_ms(1);
  }
}

static void *discover(void *unused)
{
  (void)unused;
  enter_loader();
  discover_and_publish();
  set_state(TOPO_DONE);
  return NULL;
}

static bool env_set(const char *name)
{
  const char *v = hm_os_getenv(name);
  return v != NULL && *v != '\0';
}

/* HMALLOC_NUMA=0, or one node and no fake topology: hwloc is not needed. */
static bool hwloc_needed(void)
{
  const char *v = hm_os_getenv("HMALLOC_NUMA");
  if (v != NULL && *v != '\0' && strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
    WARNF("HMALLOC_NUMA=%s is not 0 or 1; using 1", v);
  if (v != NULL && strcmp(v, "0") == 0)
    return false;
  return env_set("HWLOC_SYNTHETIC") || env_set("HWLOC_XMLFILE") || env_set("HWLOC_FSROOT") ||
         hm_os_numa_nodes_online() > 1;
}

void hm_topology_start(void)
{
  int expected = TOPO_IDLE;
  if (atomic_load_explicit(&topo_state, memory_order_relaxed) != TOPO_IDLE ||
      !atomic_compare_exchange_strong(&topo_state, &expected, TOPO_DECIDING))
    return;
  if (!hwloc_needed()) {
    set_state(TOPO_DONE);
    return;
  }
  atomic_fetch_add_explicit(&discoveries, 1, memory_order_relaxed);
  set_state(TOPO_STARTING);
  if (!hm_os_thread_start(discover, NULL)) {
    hm_warn("cannot start the NUMA topology thread; running as one node");
    set_state(TOPO_DONE);
  }
}

void hm_topology_fork_prepare(void)
{
  int limit = atomic_load_explicit(&fork_wait_ms, memory_order_relaxed);
  for (int waited = 0; waited < limit; waited++) {
    int s = TOPO_STARTING;
    if (atomic_compare_exchange_strong(&topo_state, &s, TOPO_HELD))
      return; /* held before the loader */
    if (s != TOPO_IN_LOADER && s != TOPO_DECIDING)
      return; /* not started, discovering (fork-safe) or done */
    sleep_ms(1);
  }
  /* Still in the loader: the child will run as one node. */
}

void hm_topology_fork_parent(void)
{
  int held = TOPO_HELD;
  atomic_compare_exchange_strong(&topo_state, &held, TOPO_STARTING);
}

void hm_topology_fork_child(void)
{
  if (published() != NULL) {
    set_state(TOPO_DONE);
    return;
  }
  switch (atomic_load(&topo_state)) {
  case TOPO_DECIDING:
  case TOPO_STARTING:
  case TOPO_HELD:
  case TOPO_DISCOVERING:
    /* The helper did not survive the fork, and was outside the loader. */
    set_state(TOPO_IDLE);
    break;
  case TOPO_IN_LOADER:
    hm_warn("fork during NUMA topology discovery; this process runs as one node");
    set_state(TOPO_DONE);
    break;
  default:
    break;
  }
}

/* ---- queries -------------------------------------------------------------- */

bool hm_topology_ready(void)
{
  return published() != NULL;
}

int hm_topology_nodes(void)
{
  const hm_topology_table *t = published();
  return t != NULL ? (int)t->nodes : 1;
}

int hm_topology_node_of_cpu(int cpu)
{
  const hm_topology_table *t = published();
  return t != NULL ? hm_topology_node_in(t, cpu) : 0;
}

int hm_topology_os_node(int node)
{
  const hm_topology_table *t = published();
  if (t == NULL || node < 0 || (uint32_t)node >= t->nodes)
    return -1;
  return t->os_node[node];
}

int hm_topology_bind(void *p, size_t size, int node)
{
  const hm_topology_table *t = published();
  if (t == NULL || !t->thissystem)
    return 0;
  int os_node = hm_topology_os_node(node);
  int err = os_node < 0 ? EINVAL : hm_os_bind(p, size, os_node);
  if (err != 0 && !atomic_exchange(&bind_warned, true)) {
    const char *why = strerrordesc_np(err); /* untranslated: no locale, no malloc */
    WARNF("binding memory to NUMA node %d failed (%s); continuing unbound",
          os_node < 0 ? node : os_node, why != NULL ? why : "unknown error");
  }
  return err;
}

int hm_topology_current_node_slow(void)
{
  const hm_topology_table *t = published();
  if (t == NULL)
    return 0;
  int fake = fake_cpu_plus_one;
  return hm_topology_node_in(t, fake != 0 ? fake - 1 : hm_os_current_cpu());
}

/* ---- test hooks --------------------------------------------------------- */

void hm_topology_set_fake_cpu(int cpu)
{
  fake_cpu_plus_one = cpu < 0 ? 0 : cpu + 1;
  if (cpu >= 0)
    atomic_store_explicit(&hm_topology_shared.fake_cpu_used, 1, memory_order_relaxed);
}

bool hm_topology_wait_ready(int timeout_ms)
{
  for (int waited = 0; waited <= timeout_ms; waited++) {
    int s = atomic_load(&topo_state);
    if (hm_topology_ready() || s == TOPO_IDLE || s == TOPO_DONE)
      return hm_topology_ready();
    sleep_ms(1);
  }
  return hm_topology_ready();
}

unsigned hm_topology_discoveries(void)
{
  return atomic_load_explicit(&discoveries, memory_order_relaxed);
}

void hm_topology_set_library(const char *soname)
{
  hwloc_soname = soname;
}

void hm_topology_set_fork_wait(int ms)
{
  atomic_store_explicit(&fork_wait_ms, ms, memory_order_relaxed);
}
