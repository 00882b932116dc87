#include "stats.h"

#include "../include/hmalloc.h"
#include "config.h"

#include <errno.h>

static struct {
  _Atomic size_t threads, mallocs, frees, bytes_allocated, bytes_freed;
} totals;

void hm_stats_count_thread(void)
{
  atomic_fetch_add_explicit(&totals.threads, 1, memory_order_relaxed);
}

void hm_stats_count_direct(size_t bytes)
{
  atomic_fetch_add_explicit(&totals.mallocs, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&totals.bytes_allocated, bytes, memory_order_relaxed);
}

void hm_stats_count_direct_free(size_t bytes)
{
  atomic_fetch_add_explicit(&totals.frees, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&totals.bytes_freed, bytes, memory_order_relaxed);
}

void hm_stats_resize(size_t old_bytes, size_t new_bytes)
{
  if (new_bytes > old_bytes)
    atomic_fetch_add_explicit(&totals.bytes_allocated, new_bytes - old_bytes, memory_order_relaxed);
  else
    atomic_fetch_add_explicit(&totals.bytes_freed, old_bytes - new_bytes, memory_order_relaxed);
}

struct sums {
  size_t mallocs, frees, bytes_allocated, bytes_freed;
  size_t large_cached; /* large runs the heaps keep in their caches */
};

/* Reads another thread's plain counters: a statistic may lag by a few
 * blocks, never tear (aligned words). */
static void add_heap(const hm_heap *h, void *arg)
{
  struct sums *sum = arg;
  for (unsigned c = 0; c < HM_CLASSES; c++) {
    size_t m = __atomic_load_n(&h->mallocs[c], __ATOMIC_RELAXED);
    size_t f = __atomic_load_n(&h->frees[c], __ATOMIC_RELAXED);
    sum->mallocs += m;
    sum->frees += f;
    sum->bytes_allocated += m * hm_class_size[c];
    sum->bytes_freed += f * hm_class_size[c];
  }
  size_t lm = __atomic_load_n(&h->large_mallocs, __ATOMIC_RELAXED);
  size_t lf = __atomic_load_n(&h->large_frees, __ATOMIC_RELAXED);
  sum->mallocs += lm;
  sum->frees += lf;
  sum->large_cached += __atomic_load_n(&h->runs.count, __ATOMIC_RELAXED);
  sum->bytes_allocated += __atomic_load_n(&h->large_bytes_allocated, __ATOMIC_RELAXED);
  sum->bytes_freed += __atomic_load_n(&h->large_bytes_freed, __ATOMIC_RELAXED);
}

void hm_stats_merge(hm_heap *h)
{
  struct sums sum = {0};
  add_heap(h, &sum);
  atomic_fetch_add_explicit(&totals.mallocs, sum.mallocs, memory_order_relaxed);
  atomic_fetch_add_explicit(&totals.frees, sum.frees, memory_order_relaxed);
  atomic_fetch_add_explicit(&totals.bytes_allocated, sum.bytes_allocated, memory_order_relaxed);
  atomic_fetch_add_explicit(&totals.bytes_freed, sum.bytes_freed, memory_order_relaxed);
  for (unsigned c = 0; c < HM_CLASSES; c++) {
    __atomic_store_n(&h->mallocs[c], 0, __ATOMIC_RELAXED);
    __atomic_store_n(&h->frees[c], 0, __ATOMIC_RELAXED);
  }
  __atomic_store_n(&h->large_mallocs, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&h->large_frees, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&h->large_bytes_allocated, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&h->large_bytes_freed, 0, __ATOMIC_RELAXED);
}

void hm_stats_count_freed(size_t blocks, size_t bytes)
{
  atomic_fetch_add_explicit(&totals.frees, blocks, memory_order_relaxed);
  atomic_fetch_add_explicit(&totals.bytes_freed, bytes, memory_order_relaxed);
}

/* Adds the arena's figures to `out`. */
static void add_arena(hm_arena *a, struct hm_stats *out)
{
  size_t regions = atomic_load_explicit(&a->regions_live, memory_order_relaxed);
  out->regions += regions;
  out->reserved += regions * HM_REGION_SIZE + atomic_load(&a->huge_bytes) +
                   atomic_load(&a->huge_cache.bytes);
  out->spans += atomic_load(&a->spans_formed);
  out->large_live += atomic_load(&a->large_live);
  out->huge_live += atomic_load(&a->huge_live);
  out->purges += atomic_load(&a->purge_calls);
  out->purged += atomic_load(&a->purged_bytes);
  out->regions_released += atomic_load(&a->regions_released);
}

void hm_stats_get(struct hm_stats *out)
{
  /* The calling thread's counters are exact; other running threads' lag
   * until their next slow path (their fast paths count nothing). */
  hm_heap *self = hm_tls;
  if (self->kind == HM_HEAP_THREAD && atomic_load_explicit(&self->gate, memory_order_relaxed) == 0)
    hm_heap_sync_counts(self);
  struct sums sum = {0};
  hm_heap_each(add_heap, &sum);
  size_t freed = atomic_load(&totals.bytes_freed) + sum.bytes_freed;
  size_t allocated = atomic_load(&totals.bytes_allocated) + sum.bytes_allocated;
  *out = (struct hm_stats){
      .threads = atomic_load(&totals.threads),
      .mallocs = atomic_load(&totals.mallocs) + sum.mallocs,
      .frees = atomic_load(&totals.frees) + sum.frees,
      .bytes_allocated = allocated,
      .bytes_in_use = allocated > freed ? allocated - freed : 0,
  };
  for (unsigned i = 0; i < hm_arena_count(); i++)
    add_arena(&hm_arenas[i], out);
  /* The arenas count a cached run as out of its region; the caches are
   * read a moment apart from them. */
  out->large_live = out->large_live > sum.large_cached ? out->large_live - sum.large_cached : 0;
}

int hm_stats_nodes(void)
{
  return (int)hm_arena_count();
}

int hm_stats_node_get(int node, struct hm_node_stats *out)
{
  if (node < 0 || (unsigned)node >= hm_arena_count())
    return EINVAL;
  hm_arena *a = &hm_arenas[node];
  struct hm_stats st = {0};
  add_arena(a, &st);
  *out = (struct hm_node_stats){
      .mapped = st.reserved,
      .resident = hm_arena_resident(a),
      .spans = st.spans,
      .cross_node_frees = atomic_load(&a->cross_node_frees),
  };
  return 0;
}

void hm_stats_print(void)
{
  struct hm_stats st;
  hm_stats_get(&st);
  char line[512];
  size_t n = hm_format(line, sizeof line,
                       "hmalloc: stats: threads %zu, mallocs %zu, frees %zu, "
                       "bytes allocated %zu, bytes in use %zu\n",
                       st.threads, st.mallocs, st.frees, st.bytes_allocated, st.bytes_in_use);
  hm_os_write_error(line, n);
  for (unsigned i = 0; i < hm_arena_count(); i++) {
    struct hm_stats a = {0};
    add_arena(&hm_arenas[i], &a);
    n = hm_format(line, sizeof line,
                  "hmalloc: arena %u: regions %zu, reserved %zu bytes, spans %zu, "
                  "large live %zu, huge live %zu, purged %zu bytes in %zu calls, "
                  "regions released %zu, cross-node frees %zu\n",
                  i, a.regions, a.reserved, a.spans, a.large_live, a.huge_live, a.purged,
                  a.purges, a.regions_released,
                  atomic_load(&hm_arenas[i].cross_node_frees));
    hm_os_write_error(line, n);
  }
}

__attribute__((destructor)) static void stats_at_exit(void)
{
  if (hm_config.stats)
    hm_stats_print();
}
