#include "large.h"

#include <errno.h>

#include "arena.h"
#include "config.h"
#include "gate.h"
#include "pagemap.h"
#include "purge.h"
#include "heap.h"
#include "stats.h"

static size_t granules_for(size_t bytes)
{
  return (bytes + HM_GRANULE - 1) >> HM_GRANULE_SHIFT;
}

/* The page map covers every granule of a large run, so that reusing any of
 * them overwrites what a freed run left; a huge mapping, only the granules
 * up to the user pointer. */
static size_t mapped_granules(const hm_span *s)
{
  if (s->kind == HM_KIND_LARGE)
    return s->granules;
  return (size_t)((uintptr_t)s->blocks - (uintptr_t)s) / HM_GRANULE + 1;
}

/* The arena's counters of large and huge blocks in use, by `sign` blocks. */
static void count_live(hm_span *s, int sign)
{
  hm_arena *a = s->arena;
  bool large = s->kind == HM_KIND_LARGE;
  size_t bytes = s->size;
  if (sign > 0) {
    atomic_fetch_add_explicit(large ? &a->large_live : &a->huge_live, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(large ? &a->large_bytes : &a->huge_bytes, bytes,
                              memory_order_relaxed);
  } else {
    atomic_fetch_sub_explicit(large ? &a->large_live : &a->huge_live, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(large ? &a->large_bytes : &a->huge_bytes, bytes,
                              memory_order_relaxed);
  }
}

static void *finish(hm_span *s, hm_arena *a, uint8_t kind, size_t bytes, size_t align)
{
  s->kind = kind;
  s->arena = a;
  s->size = bytes;
  s->granules = (uint32_t)granules_for(bytes);
  s->blocks = (uint8_t *)hm_align_up((uintptr_t)s + HM_HEADER_SIZE, align);
  atomic_store_explicit(&s->owner, 0, memory_order_relaxed);
  atomic_store_explicit(&s->state, HM_SPAN_LIVE, memory_order_relaxed);
  if (!hm_pagemap_set(s, s, mapped_granules(s))) {
    hm_pagemap_clear(s, mapped_granules(s)); /* what was set before a leaf failed */
    return NULL;
  }
  count_live(s, 1);
  hm_stats_count_direct(hm_large_usable(s));
  return s->blocks;
}

/* A thread heap counts the large blocks its cache serves on plain
 * counters of its own: no shared line is written on a cache hit. */
static void count_cached(hm_heap *h, const hm_span *s, int sign)
{
  if (sign > 0) {
    hm_count(&h->large_mallocs);
    __atomic_store_n(&h->large_bytes_allocated, h->large_bytes_allocated + hm_large_usable(s),
                     __ATOMIC_RELAXED);
  } else {
    hm_count(&h->large_frees);
    __atomic_store_n(&h->large_bytes_freed, h->large_bytes_freed + hm_large_usable(s),
                     __ATOMIC_RELAXED);
  }
}

void *hm_large_alloc_cached(hm_heap *h, size_t size)
{
  if (size > (size_t)HM_RUN_MAX * HM_GRANULE - HM_HEADER_SIZE)
    return NULL;
  hm_span *s = hm_run_cache_take(&h->runs, granules_for(HM_HEADER_SIZE + size));
  if (s == NULL)
    return NULL;
  s->blocks = (uint8_t *)s + HM_HEADER_SIZE;
  atomic_store_explicit(&s->state, HM_SPAN_LIVE, memory_order_relaxed);
  count_cached(h, s, 1);
  return s->blocks;
}

/* The alignment of a new huge mapping: the huge page size, so that the OS
 * can back it with huge pages (asked for with HMALLOC_THP=1), or more. */
static size_t huge_align(size_t align)
{
  size_t huge_page = hm_os_huge_page_size();
  if (align < huge_page)
    align = huge_page;
  return align > HM_GRANULE ? align : HM_GRANULE;
}

/* Where a huge block of alignment `align` starts in its mapping: after the
 * header, aligned. Beyond a granule the mapping starts one granule before
 * the aligned block, not at an aligned address: the padding in between
 * would take address space, and page-map leaves for its granules. */
static size_t huge_offset(size_t align)
{
  return align > HM_GRANULE ? HM_GRANULE : hm_align_up(HM_HEADER_SIZE, align);
}

/* The mapping's start lies this far before an aligned address. */
static size_t huge_skew(size_t align)
{
  return align > HM_GRANULE ? HM_GRANULE : 0;
}

/* A new mapping for a huge block, bound to the arena's node. */
static hm_span *huge_map(hm_arena *a, size_t bytes, size_t align)
{
  hm_span *s = hm_os_reserve_skewed(bytes, huge_align(align), huge_skew(align), true);
  if (s == NULL)
    return NULL;
  hm_topology_bind(s, bytes, hm_arena_node(a));
  if (hm_config.huge_pages)
    hm_os_huge_pages(s, bytes);
  return s;
}

void *hm_large_alloc(size_t size, size_t align, uint64_t *old_key)
{
  bool zeroed = true; /* a new mapping is */
  /* The worst-case offset of the user pointer from the header. */
  size_t offset = hm_align_up(HM_HEADER_SIZE, align);
  if (offset > PTRDIFF_MAX - HM_GRANULE || size > PTRDIFF_MAX - HM_GRANULE - offset) {
    errno = ENOMEM;
    return NULL;
  }
  hm_arena *a = hm_arena_for_node(-1);
  size_t granules = granules_for(offset + size);
  void *p = NULL;
  if (granules <= HM_RUN_MAX) {
    hm_span *s = hm_arena_alloc_run(a, granules, &zeroed);
    if (s != NULL) {
      /* The run is only granule-aligned: give back what the real offset
       * did not need. */
      size_t real = (hm_align_up((uintptr_t)s + HM_HEADER_SIZE, align) - (uintptr_t)s) + size;
      size_t needed = granules_for(real);
      if (needed < granules)
        hm_arena_shrink_run(s, granules, needed);
      p = finish(s, a, HM_KIND_LARGE, needed * HM_GRANULE, align);
      if (p == NULL)
        hm_arena_free_run(s, needed);
    }
  } else {
    bool cached = align < HM_GRANULE;
    /* (Cached mappings are whole huge pages: hm_huge_granules.) */
    granules = cached ? hm_huge_granules(granules) : granules_for(huge_offset(align) + size);
    size_t bytes = granules * HM_GRANULE;
    hm_span *s = cached ? hm_huge_cache_take(a, granules) : NULL;
    if (s != NULL) {
      zeroed = s->zeroed;
      bytes = s->size; /* up to a quarter more than asked */
    } else if ((s = huge_map(a, bytes, align)) != NULL && cached) {
      /* Resident pages moved in from cached mappings save faulting in
       * fresh ones. */
      zeroed = !hm_huge_cache_fill(a, s, granules);
    }
    if (s != NULL) {
      p = finish(s, a, HM_KIND_HUGE, bytes, align);
      if (p == NULL)
        hm_large_unmap(s);
    }
  }
  if (p == NULL)
    errno = ENOMEM;
  *old_key = zeroed ? hm_zero_key : 0;
  return p;
}

size_t hm_large_usable(const hm_span *s)
{
  return (size_t)((const uint8_t *)s + s->size - s->blocks);
}

/* Whether a large run freed by heap `h`'s thread stays in its cache: a
 * thread heap's run of the thread's own node that no private heap owns,
 * unless freed memory must go back at once (purge delay 0). */
static bool cacheable(const hm_heap *h, const hm_span *s)
{
  return s->kind == HM_KIND_LARGE && h->kind == HM_HEAP_THREAD && s->arena == h->arena &&
         atomic_load_explicit(&s->owner, memory_order_relaxed) == 0 && !hm_purge_at_once();
}

void hm_large_free(hm_heap *h, hm_span *s, const void *p, const char *func)
{
  /* Only a freed large run leaves its header in the page map; purged, the
   * header reads as zeros. */
  if (s->kind != HM_KIND_LARGE && s->kind != HM_KIND_HUGE)
    hm_fatal(func, "double free", p);
  if (p != s->blocks)
    hm_fatal(func, "invalid pointer", p);
  uint32_t expected = HM_SPAN_LIVE;
  if (!atomic_compare_exchange_strong(&s->state, &expected, HM_SPAN_FREED))
    hm_fatal(func, "double free", p);
  if (cacheable(h, s)) {
    count_cached(h, s, -1);
    hm_run_cache_age(&h->runs);
    if (hm_run_cache_put(&h->runs, s))
      return;
    hm_gate_enter();
    hm_large_release_cached(s); /* past the cache's bound */
    hm_gate_exit();
    return;
  }
  hm_gate_enter();
  hm_stats_count_direct_free(hm_large_usable(s));
  if (s->arena != hm_arena_for_node(-1))
    atomic_fetch_add_explicit(&s->arena->cross_node_frees, 1, memory_order_relaxed);
  count_live(s, -1);
  struct hm_heap *owner = hm_span_owner(s);
  if (owner != NULL)
    hm_heap_large_freed(owner, s); /* its heap lists it: the heap gives it back */
  else
    hm_large_release(s);
  hm_gate_exit();
}

void hm_large_release(hm_span *s)
{
  if (s->kind == HM_KIND_LARGE) {
    /* The first granule keeps pointing to the header, now FREED (or zeros
     * once purged), so a second free says "double free" until the granule
     * is reused. */
    hm_pagemap_clear((uint8_t *)s + HM_GRANULE, s->granules - 1);
    hm_arena_free_run(s, s->granules);
  } else if (!hm_huge_cache_put(s->arena, s)) {
    hm_large_unmap(s);
  }
}

void hm_large_release_cached(hm_span *s)
{
  count_live(s, -1);
  hm_large_release(s);
}

void hm_large_unmap(hm_span *s)
{
  /* Every granule: the pieces' marks of a mapping made of pieces too. */
  hm_pagemap_clear(s, s->granules);
  hm_os_release(s, s->size);
}

void hm_large_drop(hm_span *s)
{
  /* FREED first: a later free of the block, while its granule is not
   * reused, then says "double free". */
  if (atomic_exchange_explicit(&s->state, HM_SPAN_FREED, memory_order_relaxed) == HM_SPAN_LIVE)
    count_live(s, -1);
  hm_large_release(s);
}

/* A huge mapping moves to a new aligned reservation with its pages, not
 * copies of them. */
static hm_span *huge_move(hm_span *s, size_t bytes)
{
  /* A block aligned beyond a granule keeps its alignment: at least that of
   * its address. */
  size_t offset = (size_t)(s->blocks - (uint8_t *)s);
  size_t align = offset < HM_GRANULE ? HM_GRANULE : (uintptr_t)s->blocks & -(uintptr_t)s->blocks;
  hm_span *to = hm_os_reserve_skewed(bytes, huge_align(align), huge_skew(align), false);
  if (to == NULL)
    return NULL;
  if (hm_config.huge_pages)
    hm_os_huge_pages(to, bytes);
  size_t marked = mapped_granules(s);
  /* The new entries first (a leaf may have to be mapped, and fail). The
   * old ones go before the remap: once it has unmapped the old range,
   * another thread's new mapping may land there and set its own. Only the
   * block's owner looks it up meanwhile. */
  if (!hm_pagemap_set(to, to, marked)) {
    hm_pagemap_clear(to, marked);
    hm_os_release(to, bytes);
    return NULL;
  }
  hm_pagemap_clear(s, s->granules); /* and the pieces' marks, if any */
  if (!hm_os_remap(s, s->size, to, bytes)) {
    /* (Pieces' marks are lost: once freed, the block's pieces are cached
     * as one mapping, which fails to move and is unmapped.) */
    hm_pagemap_set(s, s, marked); /* its leaf is there: cannot fail */
    hm_pagemap_clear(to, marked);
    hm_os_release(to, bytes);
    return NULL;
  }
  to->blocks = (uint8_t *)to + offset;
  return to;
}

void *hm_large_resize(hm_span *s, size_t size)
{
  size_t offset = (size_t)(s->blocks - (uint8_t *)s);
  if (size > PTRDIFF_MAX - offset - HM_GRANULE)
    return NULL;
  size_t needed = granules_for(offset + size);
  size_t have = s->size / HM_GRANULE;
  if (needed == have)
    return s->blocks;
  size_t old_usable = hm_large_usable(s);
  if (s->kind == HM_KIND_HUGE) {
    if (needed < have) {
      hm_pagemap_clear((uint8_t *)s + needed * HM_GRANULE, have - needed); /* pieces' marks */
      hm_os_release((uint8_t *)s + needed * HM_GRANULE, (have - needed) * HM_GRANULE);
    } else if (!hm_os_resize(s, s->size, needed * HM_GRANULE)) {
      hm_span *moved = huge_move(s, needed * HM_GRANULE);
      if (moved == NULL)
        return NULL;
      s = moved;
    }
  } else if (needed < have) {
    hm_pagemap_clear((uint8_t *)s + needed * HM_GRANULE, have - needed);
    hm_arena_shrink_run(s, have, needed);
  } else if (needed > HM_RUN_MAX || !hm_arena_grow_run(s, have, needed)) {
    return NULL;
  } else if (!hm_pagemap_set(s, (uint8_t *)s + have * HM_GRANULE, needed - have)) {
    hm_arena_shrink_run(s, needed, have);
    return NULL;
  }
  hm_arena *a = s->arena;
  _Atomic size_t *bytes = s->kind == HM_KIND_LARGE ? &a->large_bytes : &a->huge_bytes;
  atomic_fetch_add_explicit(bytes, (needed - have) * HM_GRANULE, memory_order_relaxed);
  s->size = needed * HM_GRANULE;
  s->granules = (uint32_t)needed;
  hm_stats_resize(old_usable, hm_large_usable(s));
  return s->blocks;
}
