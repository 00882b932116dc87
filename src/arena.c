#include "arena.h"

#include "config.h"
#include "pagemap.h"
#include "purge.h"
#include "rcu.h"

hm_arena hm_arenas[HM_TOPOLOGY_MAX_NODES];

unsigned hm_arena_count(void)
{
  return (unsigned)hm_topology_nodes();
}

/* Regions made before the topology was known (the process's first) were
 * bound to no node: once it is known, they are bound to node 0, whose arena
 * they belong to. Pages already touched stay where they are. */
static void bind_early_regions(void)
{
  static _Atomic bool done;
  if (atomic_load_explicit(&done, memory_order_relaxed) ||
      atomic_exchange_explicit(&done, true, memory_order_relaxed))
    return;
  hm_rcu_enter();
  for (hm_region *r = atomic_load_explicit(&hm_arenas[0].regions, memory_order_acquire); r;
       r = atomic_load_explicit(&r->next, memory_order_acquire))
    hm_topology_bind(r, HM_REGION_SIZE, 0);
  hm_rcu_exit();
}

hm_arena *hm_arena_for_node(int node)
{
  if (node < 0)
    node = hm_topology_current_node();
  unsigned count = hm_arena_count();
  if (hm_unlikely(count > 1))
    bind_early_regions();
  return &hm_arenas[(unsigned)node % count];
}

static hm_region *region_new(hm_arena *a)
{
  hm_region *r = hm_region_create(a, hm_arena_node(a));
  if (r != NULL)
    atomic_fetch_add_explicit(&a->regions_live, 1, memory_order_relaxed);
  return r;
}

static void region_publish(hm_arena *a, hm_region *r)
{
  hm_region *head = atomic_load_explicit(&a->regions, memory_order_relaxed);
  do {
    atomic_store_explicit(&r->next, head, memory_order_relaxed);
  } while (!atomic_compare_exchange_weak_explicit(&a->regions, &head, r, memory_order_release,
                                                  memory_order_relaxed));
}

static hm_region *first_region(hm_arena *a)
{
  return atomic_load_explicit(&a->regions, memory_order_acquire);
}

static hm_region *next_region(hm_region *r)
{
  return atomic_load_explicit(&r->next, memory_order_acquire);
}

static void *claim_existing(hm_arena *a, size_t count, bool *zeroed)
{
  void *run = NULL;
  hm_rcu_enter();
  /* Newest region first: it is the one most likely to have room. */
  for (hm_region *r = first_region(a); r && !run; r = next_region(r))
    run = hm_region_claim(r, count, zeroed);
  hm_rcu_exit();
  return run;
}

void hm_arena_give_back(hm_span *s)
{
  hm_pagemap_clear(s, s->granules);
  hm_arena_free_run(s, s->granules);
}

void hm_arena_push_empty(hm_span *s)
{
  hm_span_unowned(s);
  atomic_store_explicit(&s->state, HM_SPAN_EMPTY, memory_order_relaxed);
  hm_stack_push(&s->arena->empty[s->cls].stack, &s->link);
  hm_purge_note_idle();
}

/* Gives back every empty span, and every partial span that became unused;
 * pushes the others again. Looks at `*pops` spans at most, counting them
 * down. Returns whether anything was given back. */
static bool reclaim_unused(hm_arena *a, size_t *pops)
{
  bool any = false;
  hm_rcu_enter();
  for (unsigned c = 0; c < HM_CLASSES; c++) {
    for (hm_span *s; *pops > 0 && (s = (hm_span *)hm_stack_pop(&a->empty[c].stack)) != NULL;
         any = true, --*pops)
      hm_arena_give_back(s);
    hm_link *keep = NULL;
    for (hm_span *s; *pops > 0 && (s = (hm_span *)hm_stack_pop(&a->partial[c].stack)) != NULL;
         --*pops) {
      if (hm_span_is_unused(s)) {
        hm_arena_give_back(s);
        any = true;
      } else {
        atomic_store_explicit(&s->link.next, keep, memory_order_relaxed);
        keep = &s->link;
      }
    }
    while (keep != NULL) {
      hm_link *next = atomic_load_explicit(&keep->next, memory_order_relaxed);
      hm_stack_push(&a->partial[c].stack, keep);
      keep = next;
    }
  }
  hm_rcu_exit();
  return any;
}

void *hm_arena_alloc_run(hm_arena *a, size_t count, bool *zeroed)
{
  void *run = claim_existing(a, count, zeroed);
  if (run == NULL) {
    hm_region *r = region_new(a);
    /* Threads that ran out together all reserved a region: if one of them
     * published first and there is room now, ours goes back. */
    if (r != NULL && (run = claim_existing(a, count, zeroed)) != NULL) {
      hm_region_destroy(r);
      atomic_fetch_sub_explicit(&a->regions_live, 1, memory_order_relaxed);
    } else if (r != NULL) {
      /* Claim the run before publishing, so a racing thread cannot take the
       * whole new region first. */
      run = hm_region_claim(r, count, zeroed);
      region_publish(a, r);
    } else if (reclaim_unused(a, &(size_t){SIZE_MAX})) {
      run = claim_existing(a, count, zeroed);
    }
  }
  if (run == NULL)
    return NULL;
  if (!hm_os_commit(run, count * HM_GRANULE)) {
    hm_arena_free_run(run, count);
    return NULL;
  }
  return run;
}

void hm_arena_free_run(void *run, size_t count)
{
  /* The arena is read before the run is freed: the region may go then. */
  hm_arena *a = hm_region_of(run)->arena;
  if (hm_region_free(run, count, hm_purge_at_once())) {
    atomic_fetch_add_explicit(&a->purge_calls, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&a->purged_bytes, count * HM_GRANULE, memory_order_relaxed);
  }
  hm_purge_note_idle();
}

bool hm_arena_grow_run(void *run, size_t count, size_t new_count)
{
  return hm_region_grow(run, count, new_count);
}

void hm_arena_shrink_run(void *run, size_t count, size_t new_count)
{
  hm_arena_free_run((uint8_t *)run + new_count * HM_GRANULE, count - new_count);
}

void hm_arena_push_partial(hm_span *s)
{
  hm_stack_push(&s->arena->partial[s->cls].stack, &s->link);
}

static hm_span *span_new(hm_arena *a, unsigned cls)
{
  unsigned granules = hm_class_granules[cls];
  bool zeroed;
  hm_span *s = hm_arena_alloc_run(a, granules, &zeroed);
  if (s == NULL)
    return NULL;
  if (!hm_pagemap_set(s, s, granules)) {
    hm_arena_free_run(s, granules);
    return NULL;
  }
  s->arena = a;
  s->kind = HM_KIND_SMALL;
  s->granules = granules;
  hm_span_format(s, cls, zeroed);
  atomic_fetch_add_explicit(&a->spans_formed, 1, memory_order_relaxed);
  return s;
}

hm_span *hm_arena_take_span(hm_arena *a, unsigned cls, bool partial)
{
  hm_rcu_enter();
  hm_span *s = (hm_span *)hm_stack_pop(&a->empty[cls].stack);
  if (s == NULL && partial)
    s = (hm_span *)hm_stack_pop(&a->partial[cls].stack);
  hm_rcu_exit();
  return s != NULL ? s : span_new(a, cls);
}

/* The regions' part of a pass, from *at on; on a cut, *at says where. */
static void purge_regions(hm_arena *a, bool all, bool now, hm_purge_at *at,
                          struct hm_purge_result *out)
{
  size_t calls = out->calls, bytes = out->bytes;
  hm_rcu_enter();
  size_t i = 1;
  hm_region *r = first_region(a);
  for (; r != NULL && i < at->step; r = next_region(r))
    i++;
  for (; r != NULL; r = next_region(r), i++) {
    size_t word = hm_region_purge(r, all, now, i == at->step ? at->word : 0, out);
    if (out->cut) {
      *at = (hm_purge_at){i, word};
      break;
    }
  }
  hm_rcu_exit();
  if (!out->cut)
    *at = (hm_purge_at){i, 0};
  atomic_fetch_add_explicit(&a->purge_calls, out->calls - calls, memory_order_relaxed);
  atomic_fetch_add_explicit(&a->purged_bytes, out->bytes - bytes, memory_order_relaxed);
}

void hm_arena_purge_from(hm_arena *a, bool all, bool now, hm_purge_at *at,
                         struct hm_purge_result *out)
{
  if (at->step == 0) {
    size_t pops = out->limit != 0 ? HM_PURGE_TICK_SPANS : SIZE_MAX;
    reclaim_unused(a, &pops);
    if (pops == 0) {
      out->cut = true;
      return;
    }
    *at = (hm_purge_at){1, 0};
  }
  if (at->step != SIZE_MAX) {
    purge_regions(a, all, now, at, out);
    if (out->cut)
      return;
    at->step = SIZE_MAX; /* the huge cache's step */
  }
  hm_huge_cache_purge(a, all, now, out);
  if (!out->cut)
    *at = (hm_purge_at){0, 0};
}

size_t hm_arena_purge(hm_arena *a, bool all, bool now)
{
  hm_purge_at at = {0, 0};
  struct hm_purge_result out = {0};
  hm_arena_purge_from(a, all, now, &at, &out);
  return out.idle;
}

bool hm_arena_has_idle(hm_arena *a)
{
  bool idle = atomic_load_explicit(&a->huge_cache.bytes, memory_order_relaxed) != 0;
  for (unsigned c = 0; c < HM_CLASSES && !idle; c++)
    idle = hm_stack_node(atomic_load_explicit(&a->empty[c].stack.head, memory_order_relaxed)) !=
           NULL;
  hm_rcu_enter();
  for (hm_region *r = first_region(a); r && !idle; r = next_region(r))
    for (size_t w = 0; w < HM_REGION_WORDS && !idle; w++)
      idle = atomic_load_explicit(&r->dirty[w], memory_order_relaxed) != 0;
  hm_rcu_exit();
  return idle;
}

/* Only the purging thread unlinks, and other threads only push at the head,
 * so the predecessor found here stays the predecessor. */
static void region_unlink(hm_arena *a, hm_region *r)
{
  hm_region *head = r;
  if (atomic_compare_exchange_strong(&a->regions, &head, next_region(r)))
    return;
  for (hm_region *p = first_region(a); p; p = next_region(p))
    if (next_region(p) == r) {
      atomic_store_explicit(&p->next, next_region(r), memory_order_release);
      return;
    }
}

size_t hm_arena_release_regions(hm_arena *a, bool all)
{
  hm_region *closed[64]; /* at most this many a call; the rest the next time */
  size_t n = 0;
  for (hm_region *r = first_region(a); r && n < sizeof closed / sizeof *closed;
       r = next_region(r)) {
    if (!all && r == first_region(a))
      continue; /* keep one region: the next burst would map it again */
    if ((all ? hm_region_is_empty(r) : hm_region_is_idle(r)) && hm_region_close(r)) {
      region_unlink(a, r);
      closed[n++] = r;
    }
  }
  if (n == 0)
    return 0;
  hm_rcu_synchronize();
  for (size_t i = 0; i < n; i++)
    hm_region_destroy(closed[i]);
  atomic_fetch_sub_explicit(&a->regions_live, n, memory_order_relaxed);
  atomic_fetch_add_explicit(&a->regions_released, n, memory_order_relaxed);
  return n * HM_REGION_SIZE;
}

size_t hm_arena_resident(hm_arena *a)
{
  size_t bytes = 0;
  hm_rcu_enter();
  for (hm_region *r = first_region(a); r; r = next_region(r))
    bytes += hm_os_resident(r, HM_REGION_SIZE);
  hm_rcu_exit();
  return bytes;
}
