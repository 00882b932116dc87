/* One central arena per NUMA node, on synthetic topologies: 2 nodes with
 * one real CPU each (threads pinned with sched_setaffinity) and 4 nodes on
 * these 2 CPUs (threads placed with the fake-CPU hook).
 *
 *   spans_by_node      a thread on each node gets every block (every small
 *                      class, large, aligned, huge) from its node's arena,
 *                      and only that node's span count and mapping grow;
 *   cross_node_frees   blocks of node B freed by a thread of node A go back
 *                      to B's spans (B's cross-node count grows by the
 *                      blocks, A's lists and A's cache never see them), and
 *                      B's thread hands them out again;
 *   migration          a thread allocates on each node in turn, keeping the
 *                      spans it owns while taking new ones from its new
 *                      node, frees everything on the last one: bytes in use
 *                      back to the baseline, and hm_trim gives the spans
 *                      and regions back;
 *   numa_off           HMALLOC_NUMA=0 beats a synthetic topology: one arena.
 *
 * Every block is located through the page map (its span header names its
 * arena) and its region (which names the arena that reserved it). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "arena_test.h"
#include "init.h"
#include "node_test.h"
#include "numa_test.h"
#include "pagemap.h"
#include "topology_test.h"

#define TWO_NODES "HWLOC_SYNTHETIC=node:2 pu:1"
#define FOUR_NODES "HWLOC_SYNTHETIC=node:4 pu:1"
/* No purge pass gives partial spans back, or purges, behind the test's
 * back (passes follow the clock: under emulation one may land anywhere);
 * hm_trim still purges. */
#define NO_PURGE "HMALLOC_PURGE_DELAY_MS=-1"

static enum placement placement;
static int nodes;

static void setup(enum placement how, int expected_nodes)
{
  placement = how;
  nodes = expected_nodes;
  start_and_expect_nodes(expected_nodes);
  hm_process_init(); /* the class table */
  CHECK(hm_stats_nodes() == nodes, "hm_stats_nodes() = %d, expected %d", hm_stats_nodes(), nodes);
  CHECK(nodes <= TEST_MAX_NODES, "too many nodes");
}

/* ---- threads on nodes ------------------------------------------------------ */

struct on_node {
  int node;
  void (*fn)(void *);
  void *arg;
  pthread_t thread;
};

static void *on_node_main(void *p)
{
  struct on_node *t = p;
  move_to_node(placement, t->node); /* before the thread's first allocation */
  t->fn(t->arg);
  return NULL;
}

static void start_on_node(struct on_node *t, int node, void (*fn)(void *), void *arg)
{
  *t = (struct on_node){node, fn, arg, 0};
  CHECK(pthread_create(&t->thread, NULL, on_node_main, t) == 0, "pthread_create");
}

static void join(struct on_node *t)
{
  CHECK(pthread_join(t->thread, NULL) == 0, "pthread_join");
}

static void run_on_node(int node, void (*fn)(void *), void *arg)
{
  struct on_node t;
  start_on_node(&t, node, fn, arg);
  join(&t);
}

/* ---- blocks and spans (bookkeeping in libc's heap, not hmalloc's) --------- */

struct block {
  void *p;
  size_t size;
  uint64_t tag;
};

struct block_set {
  struct block *b;
  size_t n, cap;
};

static uint64_t next_tag = 1;

/* Records a fresh block and fills it with its pattern. */
static void keep(struct block_set *set, void *p, size_t size)
{
  CHECK(p != NULL, "allocating %zu bytes failed", size);
  if (set->n == set->cap) {
    set->cap = set->cap ? set->cap * 2 : 1024;
    set->b = realloc(set->b, set->cap * sizeof *set->b);
    CHECK(set->b != NULL, "out of test memory");
  }
  uint64_t tag = __atomic_fetch_add(&next_tag, 1, __ATOMIC_RELAXED);
  fill_pattern(p, size, tag);
  set->b[set->n++] = (struct block){p, size, tag};
}

static void free_all(struct block_set *set, const char *where)
{
  for (size_t i = 0; i < set->n; i++) {
    expect_pattern(set->b[i].p, set->b[i].size, set->b[i].tag, where);
    hm_free(set->b[i].p);
  }
  free(set->b);
  *set = (struct block_set){0};
}

static hm_span *span_of(const void *p)
{
  hm_span *s = hm_pagemap_header(p);
  CHECK(s != NULL, "no header for %p", p);
  return s;
}

static bool is_small(const void *p)
{
  return span_of(p)->kind == HM_KIND_SMALL;
}

static const char *kind_name(const hm_span *s)
{
  return s->kind == HM_KIND_SMALL ? "small" : s->kind == HM_KIND_LARGE ? "large" : "huge";
}

/* The block's span, and the region holding it, belong to `node`'s arena. */
static void expect_on_node(const void *p, int node, const char *where)
{
  hm_span *s = span_of(p);
  CHECK(s->arena == &hm_arenas[node], "%s: %s block %p (%u bytes class) from node %d's arena, "
        "expected node %d", where, kind_name(s), p, s->block_size, hm_arena_node(s->arena), node);
  if (s->kind != HM_KIND_HUGE)
    CHECK(hm_region_of(s)->arena == &hm_arenas[node],
          "%s: %s block %p lies in a region of node %d, expected %d", where, kind_name(s), p,
          hm_arena_node(hm_region_of(s)->arena), node);
}

/* Distinct spans, by linear search: a few hundred at most. */
struct span_set {
  hm_span **s;
  size_t n, cap;
};

static bool span_set_has(const struct span_set *set, const hm_span *s)
{
  for (size_t i = 0; i < set->n; i++)
    if (set->s[i] == s)
      return true;
  return false;
}

static void span_set_add(struct span_set *set, hm_span *s)
{
  if (span_set_has(set, s))
    return;
  if (set->n == set->cap) {
    set->cap = set->cap ? set->cap * 2 : 256;
    set->s = realloc(set->s, set->cap * sizeof *set->s);
    CHECK(set->s != NULL, "out of test memory");
  }
  set->s[set->n++] = s;
}

/* Every small class, capacity + 1 blocks each (two spans of every class),
 * then blocks of the other kinds and entry points: calloc, over-aligned
 * small and large, large runs, huge mappings. */
static void alloc_every_kind(struct block_set *set)
{
  for (unsigned c = 0; c < HM_CLASSES; c++)
    for (uint32_t i = 0; i <= hm_class_capacity(c); i++)
      keep(set, hm_malloc(hm_class_size[c]), hm_class_size[c]);
  keep(set, hm_calloc(100, 10), 1000);
  keep(set, hm_aligned_alloc(4096, 100), 100);
  keep(set, hm_aligned_alloc(1 << 20, 300 << 10), 300 << 10);
  static const size_t big[] = {200 << 10, 1 << 20, 3 << 20, 5 << 20, 12 << 20};
  for (size_t i = 0; i < sizeof big / sizeof big[0]; i++)
    keep(set, hm_malloc(big[i]), big[i]);
}

/* ---- arena lists ------------------------------------------------------------ */

static hm_span *list_top(const hm_arena *a, unsigned cls)
{
  return (hm_span *)hm_stack_node(
      atomic_load_explicit(&a->partial[cls].stack.head, memory_order_acquire));
}

static hm_span *list_next(const hm_span *s)
{
  return (hm_span *)atomic_load_explicit(&s->link.next, memory_order_acquire);
}

/* Every span on node's partial lists is that node's (its arena and its
 * region) and of the list's class. Read without popping: the caller keeps
 * every other thread still. */
static void expect_lists_hold_only_own(int node)
{
  const hm_arena *a = &hm_arenas[node];
  for (unsigned c = 0; c < HM_CLASSES; c++)
    for (hm_span *s = list_top(a, c); s != NULL; s = list_next(s))
      CHECK(s->arena == a && hm_region_of(s)->arena == a && s->cls == c,
            "node %d's class %u list holds span %p of node %d (region of node %d), class %u",
            node, c, (void *)s, hm_arena_node(s->arena), hm_arena_node(hm_region_of(s)->arena),
            s->cls);
}

static bool on_partial_list(const hm_span *s)
{
  for (hm_span *l = list_top(s->arena, s->cls); l != NULL; l = list_next(l))
    if (l == s)
      return true;
  return false;
}

/* ---- spans_by_node ---------------------------------------------------------- */

struct node_run {
  int node;
  struct span_set spans; /* small spans the thread got */
};

static void alloc_everything_here(void *arg)
{
  struct node_run *r = arg;
  struct block_set set = {0};
  alloc_every_kind(&set);
  for (size_t i = 0; i < set.n; i++) {
    expect_on_node(set.b[i].p, r->node, "spans_by_node");
    if (is_small(set.b[i].p))
      span_set_add(&r->spans, span_of(set.b[i].p));
  }
  free_all(&set, "spans_by_node");
}

/* Only `node`'s figures moved between `before` and `after`. */
static void expect_only_node_grew(int node, const struct hm_node_stats *before,
                                  const struct hm_node_stats *after, size_t spans_seen)
{
  for (int n = 0; n < nodes; n++) {
    CHECK(after[n].cross_node_frees == 0, "node %d: %zu cross-node frees", n,
          after[n].cross_node_frees);
    if (n == node)
      continue;
    CHECK(after[n].spans == before[n].spans && after[n].mapped == before[n].mapped,
          "a thread on node %d changed node %d: spans %zu -> %zu, mapped %zu -> %zu", node, n,
          before[n].spans, after[n].spans, before[n].mapped, after[n].mapped);
  }
  CHECK(after[node].spans - before[node].spans >= spans_seen,
        "node %d formed %zu spans, its thread got %zu different ones", node,
        after[node].spans - before[node].spans, spans_seen);
  CHECK(after[node].mapped > before[node].mapped, "node %d mapped nothing new (%zu bytes)", node,
        after[node].mapped);
}

static void spans_by_node(void)
{
  for (int node = 0; node < nodes; node++) {
    struct hm_node_stats before[TEST_MAX_NODES], after[TEST_MAX_NODES];
    node_stats_all(before);
    struct node_run r = {node, {0}};
    run_on_node(node, alloc_everything_here, &r);
    node_stats_all(after);
    /* Two spans of every class at least: the capacity + 1 blocks. */
    CHECK(r.spans.n >= 2 * HM_CLASSES, "node %d: %zu small spans", node, r.spans.n);
    expect_only_node_grew(node, before, after, r.spans.n);
    free(r.spans.s);
  }
  print_node_stats("after");
}

static void spans_by_node_pinned(void)
{
  setup(BY_PINNING, 2);
  spans_by_node();
}

static void spans_by_node_fake4(void)
{
  setup(BY_FAKE_CPU, 4);
  spans_by_node();
}

/* ---- cross_node_frees --------------------------------------------------------- */

#define HANDED_LARGE 3

/* The owner (a thread on node `from`) allocates; the freer (on node `to`)
 * frees; the owner allocates again. */
struct handoff {
  int from, to;
  size_t size; /* of the small blocks */
  size_t count;
  struct block_set blocks;
  void **freed; /* addresses of the small blocks, once freed */
  size_t freed_n;
  pthread_barrier_t allocated, freed_all;
};

static int compare_ptr(const void *a, const void *b)
{
  uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
  return x < y ? -1 : x > y;
}

/* Every address the freer freed is handed out again to the owner's node,
 * before any other block: the owner takes count + capacity blocks, which
 * is what its own span and node's partial spans hold. */
static void owner_allocates_again(struct handoff *h)
{
  unsigned cls = hm_class_of(h->size);
  size_t want = h->count + hm_class_capacity(cls);
  struct block_set again = {0};
  for (size_t i = 0; i < want; i++) {
    keep(&again, hm_malloc(h->size), h->size);
    expect_on_node(again.b[i].p, h->from, "owner after the cross-node frees");
  }
  qsort(h->freed, h->freed_n, sizeof *h->freed, compare_ptr);
  size_t reused = 0;
  for (size_t i = 0; i < again.n; i++)
    reused += bsearch(&again.b[i].p, h->freed, h->freed_n, sizeof *h->freed, compare_ptr) != NULL;
  CHECK(reused == h->freed_n, "node %d's thread got back %zu of the %zu blocks node %d freed",
        h->from, reused, h->freed_n, h->to);
  free_all(&again, "owner's second blocks");
}

static void owner_side(void *arg)
{
  struct handoff *h = arg;
  for (size_t i = 0; i < h->count; i++)
    keep(&h->blocks, hm_malloc(h->size), h->size);
  for (int i = 0; i < HANDED_LARGE; i++)
    keep(&h->blocks, hm_malloc((size_t)(256 + i) << 10), (size_t)(256 + i) << 10);
  for (size_t i = 0; i < h->blocks.n; i++)
    expect_on_node(h->blocks.b[i].p, h->from, "owner");
  pthread_barrier_wait(&h->allocated);
  pthread_barrier_wait(&h->freed_all);
  owner_allocates_again(h);
}

/* The spans of the freed blocks are the owner node's, and each is either on
 * that node's partial list or still owned by the owner's cache: none was
 * lost, none moved. */
static void expect_spans_went_home(const struct handoff *h)
{
  for (size_t i = 0; i < h->freed_n; i++) {
    hm_span *s = span_of(h->freed[i]);
    uint32_t state = atomic_load(&s->state);
    CHECK(s->arena == &hm_arenas[h->from], "freed block %p: span of node %d", h->freed[i],
          hm_arena_node(s->arena));
    CHECK(state == HM_SPAN_OWNED ? atomic_load(&s->owner) != 0 : on_partial_list(s),
          "freed block %p: span %p in state %u, neither owned nor on node %d's list",
          h->freed[i], (void *)s, state, h->from);
  }
}

/* The freer's own blocks of the same class: none of them is node `from`'s,
 * so none of the freed blocks went into this thread's cache. */
static void freer_allocates_own(const struct handoff *h)
{
  struct block_set mine = {0};
  for (size_t i = 0; i < h->count; i++) {
    keep(&mine, hm_malloc(h->size), h->size);
    expect_on_node(mine.b[i].p, h->to, "freer after the cross-node frees");
  }
  free_all(&mine, "freer's own blocks");
}

static void freer_side(void *arg)
{
  struct handoff *h = arg;
  hm_free(hm_malloc(h->size)); /* this thread's cache exists, on node `to` */
  pthread_barrier_wait(&h->allocated);
  struct hm_node_stats before[TEST_MAX_NODES], after[TEST_MAX_NODES];
  node_stats_all(before);
  size_t large_live = atomic_load(&hm_arenas[h->from].large_live);
  for (size_t i = 0; i < h->blocks.n; i++)
    if (is_small(h->blocks.b[i].p))
      h->freed[h->freed_n++] = h->blocks.b[i].p;
  free_all(&h->blocks, "freer");
  node_stats_all(after);
  size_t cross = after[h->from].cross_node_frees - before[h->from].cross_node_frees;
  /* Every block counts, small, large and huge. */
  CHECK(cross == h->freed_n + HANDED_LARGE,
        "node %d's cross-node frees grew by %zu for %zu small and %d large blocks freed by node %d",
        h->from, cross, h->freed_n, HANDED_LARGE, h->to);
  for (int n = 0; n < nodes; n++)
    CHECK(n == h->from || after[n].cross_node_frees == before[n].cross_node_frees,
          "node %d's cross-node frees moved", n);
  CHECK(atomic_load(&hm_arenas[h->from].large_live) == large_live - HANDED_LARGE,
        "node %d: %zu large blocks live after freeing %d of %zu", h->from,
        atomic_load(&hm_arenas[h->from].large_live), HANDED_LARGE, large_live);
  expect_lists_hold_only_own(h->to);
  expect_lists_hold_only_own(h->from);
  expect_spans_went_home(h);
  freer_allocates_own(h);
  pthread_barrier_wait(&h->freed_all);
}

static void hand_off(int from, int to, size_t size)
{
  struct handoff h = {.from = from, .to = to, .size = size};
  /* Three full spans and a part of a fourth. */
  h.count = 3 * (size_t)hm_class_capacity(hm_class_of(size)) + 5;
  h.freed = calloc(h.count, sizeof *h.freed);
  CHECK(h.freed != NULL, "out of test memory");
  pthread_barrier_init(&h.allocated, NULL, 2);
  pthread_barrier_init(&h.freed_all, NULL, 2);
  struct on_node owner, freer;
  start_on_node(&owner, from, owner_side, &h);
  start_on_node(&freer, to, freer_side, &h);
  join(&owner);
  join(&freer);
  printf("  node %d -> node %d: %zu blocks of %zu bytes came back\n", from, to, h.freed_n, size);
  free(h.freed);
}

static void cross_node_frees(void)
{
  /* Each node hands to the next; a different class each time. */
  for (int from = 0; from < nodes; from++)
    hand_off(from, (from + 1) % nodes, 48 + 32 * (size_t)from);
  print_node_stats("after");
}

static void cross_node_frees_pinned(void)
{
  setup(BY_PINNING, 2);
  cross_node_frees();
}

static void cross_node_frees_fake4(void)
{
  setup(BY_FAKE_CPU, 4);
  cross_node_frees();
}

/* ---- migration --------------------------------------------------------------- */

/* The blocks allocated on `node` (from index `first` of `all`): a span the
 * thread has not seen before is `node`'s; one it has seen is one it owned
 * when it moved, at most one per class; each class took a new span. */
static void expect_new_spans_from(int node, const struct block_set *all, size_t first,
                                  struct span_set *seen)
{
  struct span_set carried = {0}, fresh = {0};
  for (size_t i = first; i < all->n; i++) {
    void *p = all->b[i].p;
    if (!is_small(p)) {
      expect_on_node(p, node, "migration, large");
    } else if (span_set_has(seen, span_of(p))) {
      span_set_add(&carried, span_of(p));
    } else {
      expect_on_node(p, node, "migration, new span");
      span_set_add(&fresh, span_of(p));
    }
  }
  CHECK(carried.n <= HM_CLASSES, "on node %d: %zu spans of earlier nodes", node, carried.n);
  CHECK(fresh.n >= HM_CLASSES, "on node %d: only %zu new spans", node, fresh.n);
  for (size_t i = 0; i < fresh.n; i++)
    span_set_add(seen, fresh.s[i]);
  free(carried.s);
  free(fresh.s);
}

/* Frees everything on the last node: the earlier nodes' blocks, small,
 * large and huge, are all cross-node frees (the thread owns only spans of
 * the last node by now), the last node's none. */
static void free_on_last_node(struct block_set *all)
{
  size_t blocks_on[TEST_MAX_NODES] = {0};
  for (size_t i = 0; i < all->n; i++)
    blocks_on[hm_arena_node(span_of(all->b[i].p)->arena)]++;
  struct hm_node_stats before[TEST_MAX_NODES], after[TEST_MAX_NODES];
  node_stats_all(before);
  free_all(all, "migration, freed on the last node");
  node_stats_all(after);
  for (int n = 0; n < nodes; n++) {
    size_t expected = n == nodes - 1 ? 0 : blocks_on[n];
    CHECK(after[n].cross_node_frees - before[n].cross_node_frees == expected,
          "node %d: %zu cross-node frees, expected %zu", n,
          after[n].cross_node_frees - before[n].cross_node_frees, expected);
  }
}

/* hm_trim gives the spans back: every node's resident memory drops, and
 * the nodes after the first (which holds the thread caches) keep nothing. */
static void expect_trim_returns_everything(void)
{
  struct hm_node_stats before[TEST_MAX_NODES], after[TEST_MAX_NODES];
  node_stats_all(before);
  print_node_stats("before hm_trim");
  hm_trim();
  node_stats_all(after);
  print_node_stats("after hm_trim");
  for (int n = 0; n < nodes; n++) {
    CHECK(after[n].resident < before[n].resident, "node %d: resident %zu -> %zu bytes", n,
          before[n].resident, after[n].resident);
    if (n > 0)
      CHECK(after[n].mapped == 0 && after[n].resident == 0,
            "node %d still maps %zu bytes (%zu resident) with nothing allocated", n,
            after[n].mapped, after[n].resident);
  }
  CHECK(after[0].mapped <= before[0].mapped, "node 0 mapped more");
}

static void migrate_and_free(void *unused)
{
  (void)unused;
  hm_free(hm_malloc(16)); /* the cache exists: the baseline includes it */
  size_t baseline = bytes_in_use();
  struct block_set all = {0};
  struct span_set seen = {0};
  for (int node = 0; node < nodes; node++) {
    if (node > 0)
      move_to_node(placement, node);
    size_t first = all.n;
    alloc_every_kind(&all);
    expect_new_spans_from(node, &all, first, &seen);
  }
  free(seen.s);
  free_on_last_node(&all);
  CHECK(bytes_in_use() == baseline, "%zu bytes in use, %zu before", bytes_in_use(), baseline);
  expect_trim_returns_everything();
}

static void migration_pinned(void)
{
  setup(BY_PINNING, 2);
  run_on_node(0, migrate_and_free, NULL);
}

static void migration_fake4(void)
{
  setup(BY_FAKE_CPU, 4);
  run_on_node(0, migrate_and_free, NULL);
}

/* ---- numa_off ------------------------------------------------------------------ */

/* HMALLOC_NUMA=0 with a synthetic 4-node topology: hwloc never loads, one
 * arena serves a thread that claims to run on node 3's CPU. */
static void numa_off(void)
{
  hm_topology_start();
  CHECK(!hm_topology_wait_ready(1000), "a table was published");
  hm_process_init();
  hm_topology_set_fake_cpu(3);
  struct block_set set = {0};
  alloc_every_kind(&set);
  for (size_t i = 0; i < set.n; i++)
    expect_on_node(set.b[i].p, 0, "numa_off");
  free_all(&set, "numa_off");
  struct hm_node_stats st;
  CHECK(hm_stats_nodes() == 1, "%d nodes", hm_stats_nodes());
  CHECK(hm_stats_node_get(1, &st) == EINVAL, "node 1 has statistics");
  CHECK(!maps_contain("libhwloc"), "libhwloc is mapped");
}

static const struct scenario scenarios[] = {
    {"spans_by_node_pinned", spans_by_node_pinned, {TWO_NODES}},
    {"spans_by_node_fake4", spans_by_node_fake4, {FOUR_NODES}},
    {"cross_node_frees_pinned", cross_node_frees_pinned, {TWO_NODES, NO_PURGE}},
    {"cross_node_frees_fake4", cross_node_frees_fake4, {FOUR_NODES, NO_PURGE}},
    {"migration_pinned", migration_pinned, {TWO_NODES, NO_PURGE}},
    {"migration_fake4", migration_fake4, {FOUR_NODES, NO_PURGE}},
    {"numa_off", numa_off, {FOUR_NODES, "HMALLOC_NUMA=0"}},
};

int main(int argc, char **argv)
{
  return run_scenarios(scenarios, sizeof scenarios / sizeof scenarios[0], argc, argv, 60);
}
