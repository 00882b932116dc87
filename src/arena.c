#include "arena.h"

#include "pagemap.h"

hm_arena hm_arenas[1];

hm_arena *hm_arena_for_node(int node)
{
  (void)node;
  return &hm_arenas[0];
}

static hm_region *region_of(const void *p)
{
  return (hm_region *)((uintptr_t)p & ~(uintptr_t)(HM_REGION_SIZE - 1));
}

static uint64_t run_mask(size_t count, unsigned bit)
{
  return (count == 64 ? ~(uint64_t)0 : (((uint64_t)1 << count) - 1)) << bit;
}

/* Bit positions where `count` consecutive zero bits of `used` start. */
static uint64_t run_starts(uint64_t used, size_t count)
{
  uint64_t ok = ~used;
  /* After the loop, bit i is set iff bits i..i+count-1 of ~used are all set;
   * the shifted-in zeros keep runs from wrapping past bit 63. */
  for (size_t have = 1; have < count && ok;) {
    size_t step = have < count - have ? have : count - have;
    ok &= ok >> step;
    have += step;
  }
  return ok;
}

static void *region_claim(hm_region *r, size_t count)
{
  for (size_t w = 0; w < HM_REGION_WORDS; w++) {
    uint64_t used = atomic_load_explicit(&r->used[w], memory_order_relaxed);
    for (;;) {
      uint64_t starts = run_starts(used, count);
      if (starts == 0)
        break;
      unsigned bit = (unsigned)__builtin_ctzll(starts);
      if (atomic_compare_exchange_weak_explicit(&r->used[w], &used, used | run_mask(count, bit),
                                                memory_order_acquire, memory_order_relaxed))
        return (uint8_t *)r + (w * 64 + bit) * HM_GRANULE;
    }
  }
  return NULL;
}

static hm_region *region_reserve(hm_arena *a)
{
  hm_region *r = hm_os_reserve(HM_REGION_SIZE, HM_REGION_SIZE, false);
  if (r == NULL)
    return NULL;
  if (!hm_os_commit(r, HM_GRANULE)) {
    hm_os_release(r, HM_REGION_SIZE);
    return NULL;
  }
  r->arena = a;
  atomic_store_explicit(&r->used[0], 1, memory_order_relaxed); /* the header granule */
  atomic_fetch_add_explicit(&a->regions_reserved, 1, memory_order_relaxed);
  return r;
}

static void region_publish(hm_arena *a, hm_region *r)
{
  hm_region *head = atomic_load_explicit(&a->regions, memory_order_relaxed);
  do {
    r->next = head;
  } while (!atomic_compare_exchange_weak_explicit(&a->regions, &head, r, memory_order_release,
                                                  memory_order_relaxed));
}

static void *claim_existing(hm_arena *a, size_t count)
{
  void *run = NULL;
  /* Newest region first: it is the one most likely to have room. */
  for (hm_region *r = atomic_load_explicit(&a->regions, memory_order_acquire); r && !run;
       r = r->next)
    run = region_claim(r, count);
  return run;
}

static void span_give_back(hm_span *s)
{
  hm_pagemap_clear(s, s->granules);
  hm_arena_free_run(s, s->granules);
}

/* Gives the granules of every unused span back to the regions, so that
 * memory freed as one class can serve another class or a large block. Runs
 * when the arena is out of room. Returns whether anything was given back. */
static bool arena_reclaim(hm_arena *a)
{
  bool any = false;
  for (unsigned i = 0; i < HM_SPAN_SIZES; i++)
    for (hm_span *s; (s = (hm_span *)hm_stack_pop(&a->empty[i].stack)) != NULL; any = true)
      span_give_back(s);
  for (unsigned c = 0; c < HM_CLASSES; c++) {
    hm_link *keep = NULL;
    for (hm_span *s; (s = (hm_span *)hm_stack_pop(&a->partial[c].stack)) != NULL;) {
      if (hm_span_is_unused(s)) {
        span_give_back(s);
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
  return any;
}

void *hm_arena_alloc_run(hm_arena *a, size_t count)
{
  void *run = claim_existing(a, count);
  if (run == NULL) {
    hm_region *r = region_reserve(a);
    if (r != NULL) {
      /* Claim the run before publishing, so a racing thread cannot take the
       * whole new region first. Two threads may both grow; that costs
       * address space only. */
      run = region_claim(r, count);
      region_publish(a, r);
    } else if (arena_reclaim(a)) {
      run = claim_existing(a, count);
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

static void run_bits(const void *run, size_t *word, unsigned *bit)
{
  size_t g = ((uintptr_t)run & (HM_REGION_SIZE - 1)) >> HM_GRANULE_SHIFT;
  *word = g / 64;
  *bit = (unsigned)(g % 64);
}

void hm_arena_free_run(void *run, size_t count)
{
  size_t w;
  unsigned bit;
  run_bits(run, &w, &bit);
  atomic_fetch_and_explicit(&region_of(run)->used[w], ~run_mask(count, bit),
                            memory_order_release);
}

bool hm_arena_grow_run(void *run, size_t count, size_t new_count)
{
  size_t w;
  unsigned bit;
  run_bits(run, &w, &bit);
  if (bit + new_count > 64)
    return false;
  _Atomic uint64_t *word = &region_of(run)->used[w];
  uint64_t extra = run_mask(new_count - count, bit + (unsigned)count);
  uint64_t used = atomic_load_explicit(word, memory_order_relaxed);
  do {
    if (used & extra)
      return false;
  } while (!atomic_compare_exchange_weak_explicit(word, &used, used | extra,
                                                  memory_order_acquire, memory_order_relaxed));
  if (hm_os_commit((uint8_t *)run + count * HM_GRANULE, (new_count - count) * HM_GRANULE))
    return true;
  atomic_fetch_and_explicit(word, ~extra, memory_order_release);
  return false;
}

void hm_arena_shrink_run(void *run, size_t count, size_t new_count)
{
  hm_arena_free_run((uint8_t *)run + new_count * HM_GRANULE, count - new_count);
}

static unsigned span_size_index(unsigned granules)
{
  return (unsigned)__builtin_ctz(granules);
}

void hm_arena_push_partial(hm_span *s)
{
  hm_stack_push(&s->arena->partial[s->cls].stack, &s->link);
}

void hm_arena_push_empty(hm_span *s)
{
  atomic_store_explicit(&s->state, HM_SPAN_EMPTY, memory_order_relaxed);
  hm_stack_push(&s->arena->empty[span_size_index(s->granules)].stack, &s->link);
}

static hm_span *span_new(hm_arena *a, unsigned cls)
{
  unsigned granules = hm_class_granules[cls];
  hm_span *s = hm_arena_alloc_run(a, granules);
  if (s == NULL)
    return NULL;
  if (!hm_pagemap_set(s, s, granules)) {
    hm_arena_free_run(s, granules);
    return NULL;
  }
  s->arena = a;
  s->kind = HM_KIND_SMALL;
  s->granules = granules;
  atomic_fetch_add_explicit(&a->spans_formed, 1, memory_order_relaxed);
  return s;
}

hm_span *hm_arena_take_span(hm_arena *a, unsigned cls)
{
  hm_span *s = (hm_span *)hm_stack_pop(&a->partial[cls].stack);
  if (s != NULL)
    return s;
  s = (hm_span *)hm_stack_pop(&a->empty[span_size_index(hm_class_granules[cls])].stack);
  if (s == NULL)
    s = span_new(a, cls);
  if (s != NULL)
    hm_span_format(s, cls);
  return s;
}
