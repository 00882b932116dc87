#include "region.h"

#include "pagemap.h"
#include "topology.h"

static uint64_t run_mask(size_t count, unsigned bit)
{
  return (count == 64 ? ~(uint64_t)0 : (((uint64_t)1 << count) - 1)) << bit;
}

/* Bit positions where `count` consecutive set bits of `ok` start. After the
 * loop bit i is set iff bits i..i+count-1 were; the zeros shifted in keep
 * runs from wrapping past bit 63. */
static uint64_t run_starts(uint64_t ok, size_t count)
{
  for (size_t have = 1; have < count && ok;) {
    size_t step = have < count - have ? have : count - have;
    ok &= ok >> step;
    have += step;
  }
  return ok;
}

static void run_bits(const void *run, size_t *word, unsigned *bit)
{
  size_t g = ((uintptr_t)run & (HM_REGION_SIZE - 1)) >> HM_GRANULE_SHIFT;
  *word = g / 64;
  *bit = (unsigned)(g % 64);
}

static uint64_t load(_Atomic uint64_t *w)
{
  return atomic_load_explicit(w, memory_order_relaxed);
}

hm_region *hm_region_create(struct hm_arena *a, int node)
{
  hm_region *r = hm_os_reserve(HM_REGION_SIZE, HM_REGION_SIZE, false);
  if (r == NULL)
    return NULL;
  /* One binding per 64 MiB: each policy boundary splits a mapping. A failure
   * leaves the memory unbound (and warns once). */
  hm_topology_bind(r, HM_REGION_SIZE, node);
  if (!hm_os_commit(r, HM_GRANULE)) {
    hm_os_release(r, HM_REGION_SIZE);
    return NULL;
  }
  r->arena = a;
  for (size_t w = 0; w < HM_REGION_WORDS; w++)
    atomic_store_explicit(&r->clean[w], ~(uint64_t)0, memory_order_relaxed);
  atomic_store_explicit(&r->clean[0], ~(uint64_t)1, memory_order_relaxed);
  atomic_store_explicit(&r->used[0], 1, memory_order_relaxed); /* the header */
  return r;
}

void hm_region_destroy(hm_region *r)
{
  /* A freed large block leaves its header in the page map (to name a
   * second free a double free): no entry may outlive the mapping. */
  hm_pagemap_clear(r, HM_REGION_GRANULES);
  hm_os_release(r, HM_REGION_SIZE);
}

static bool claim_in_word(hm_region *r, size_t w, size_t count, bool resident_only,
                          uint64_t *mask)
{
  uint64_t used = load(&r->used[w]);
  for (;;) {
    uint64_t ok = ~used;
    if (resident_only)
      ok &= load(&r->dirty[w]);
    uint64_t starts = run_starts(ok, count);
    if (starts == 0)
      return false;
    *mask = run_mask(count, (unsigned)__builtin_ctzll(starts));
    if (atomic_compare_exchange_weak_explicit(&r->used[w], &used, used | *mask,
                                              memory_order_acquire, memory_order_relaxed))
      return true;
  }
}

void *hm_region_claim(hm_region *r, size_t count, bool *zeroed)
{
  /* Resident granules first: reusing them costs no page faults. */
  for (int pass = 0; pass < 2; pass++) {
    for (size_t w = 0; w < HM_REGION_WORDS; w++) {
      uint64_t mask;
      if (!claim_in_word(r, w, count, pass == 0, &mask))
        continue;
      atomic_fetch_and_explicit(&r->dirty[w], ~mask, memory_order_relaxed);
      atomic_fetch_and_explicit(&r->aged[w], ~mask, memory_order_relaxed);
      uint64_t clean = atomic_fetch_and_explicit(&r->clean[w], ~mask, memory_order_relaxed);
      *zeroed = (clean & mask) == mask;
      return (uint8_t *)r + (w * 64 + (unsigned)__builtin_ctzll(mask)) * HM_GRANULE;
    }
  }
  return NULL;
}

bool hm_region_free(void *run, size_t count, bool purge)
{
  size_t w;
  unsigned bit;
  run_bits(run, &w, &bit);
  hm_region *r = hm_region_of(run);
  uint64_t mask = run_mask(count, bit);
  bool purged = purge && hm_os_purge(run, count * HM_GRANULE, true);
  if (purged) {
    atomic_fetch_or_explicit(&r->clean[w], mask, memory_order_relaxed);
  } else {
    /* Not aged: a pass must see it dirty once before purging it. */
    atomic_fetch_and_explicit(&r->aged[w], ~mask, memory_order_relaxed);
    atomic_fetch_or_explicit(&r->dirty[w], mask, memory_order_relaxed);
  }
  /* The last touch of the region: once the run is free the region may be
   * released. */
  atomic_fetch_and_explicit(&r->used[w], ~mask, memory_order_release);
  return purged;
}

bool hm_region_grow(void *run, size_t count, size_t new_count)
{
  size_t w;
  unsigned bit;
  run_bits(run, &w, &bit);
  if (bit + new_count > 64)
    return false;
  hm_region *r = hm_region_of(run);
  uint64_t extra = run_mask(new_count - count, bit + (unsigned)count);
  uint64_t used = load(&r->used[w]);
  do {
    if (used & extra)
      return false;
  } while (!atomic_compare_exchange_weak_explicit(&r->used[w], &used, used | extra,
                                                  memory_order_acquire, memory_order_relaxed));
  atomic_fetch_and_explicit(&r->dirty[w], ~extra, memory_order_relaxed);
  atomic_fetch_and_explicit(&r->aged[w], ~extra, memory_order_relaxed);
  atomic_fetch_and_explicit(&r->clean[w], ~extra, memory_order_relaxed);
  if (hm_os_commit((uint8_t *)run + count * HM_GRANULE, (new_count - count) * HM_GRANULE))
    return true;
  hm_region_free((uint8_t *)run + count * HM_GRANULE, new_count - count, false);
  return false;
}

/* Holds the candidates (as used) while purging them, so nobody claims a
 * granule whose pages are being discarded. */
static void purge_word(hm_region *r, size_t w, uint64_t candidates, bool now,
                       struct hm_purge_result *out)
{
  uint64_t used = load(&r->used[w]);
  uint64_t take;
  do {
    take = candidates & ~used;
    if (take == 0)
      return;
  } while (!atomic_compare_exchange_weak_explicit(&r->used[w], &used, used | take,
                                                  memory_order_acquire, memory_order_relaxed));
  uint64_t zeroed = 0;
  for (uint64_t left = take; left != 0;) {
    unsigned first = (unsigned)__builtin_ctzll(left);
    uint64_t from_first = left >> first;
    unsigned len = from_first == ~(uint64_t)0 ? 64 : (unsigned)__builtin_ctzll(~from_first);
    uint64_t mask = run_mask(len, first);
    if (hm_os_purge((uint8_t *)r + (w * 64 + first) * HM_GRANULE, len * HM_GRANULE, now))
      zeroed |= mask;
    out->bytes += len * HM_GRANULE;
    out->spent += len * HM_GRANULE;
    out->calls++;
    left &= ~mask;
  }
  atomic_fetch_and_explicit(&r->dirty[w], ~take, memory_order_relaxed);
  atomic_fetch_and_explicit(&r->aged[w], ~take, memory_order_relaxed);
  atomic_fetch_or_explicit(&r->clean[w], zeroed, memory_order_relaxed);
  atomic_fetch_and_explicit(&r->used[w], ~take, memory_order_release);
}

/* The lowest of the candidates a bounded pass still has room for. */
static uint64_t within_limit(uint64_t candidates, const struct hm_purge_result *out)
{
  size_t room = out->spent < out->limit ? (out->limit - out->spent) / HM_GRANULE : 0;
  uint64_t kept = 0;
  for (; candidates != 0 && room > 0; room--) {
    kept |= candidates & -candidates;
    candidates &= candidates - 1;
  }
  return kept;
}

size_t hm_region_purge(hm_region *r, bool all, bool now, size_t from, struct hm_purge_result *out)
{
  for (size_t w = from; w < HM_REGION_WORDS; w++) {
    uint64_t dirty = load(&r->dirty[w]);
    uint64_t candidates = all ? dirty : dirty & load(&r->aged[w]);
    if (candidates != 0 && out->limit != 0) {
      uint64_t kept = within_limit(candidates, out);
      if (kept != candidates) {
        /* The word's marks stay as they are: the resumed pass purges what
         * is left of it as this pass would have. */
        if (kept != 0)
          purge_word(r, w, kept, now, out);
        out->cut = true;
        return w;
      }
    }
    if (candidates != 0)
      purge_word(r, w, candidates, now, out);
    /* What is dirty and free now is purged by the next pass unless it is
     * reused before. */
    uint64_t aged = load(&r->dirty[w]) & ~load(&r->used[w]);
    atomic_store_explicit(&r->aged[w], aged, memory_order_relaxed);
    out->idle += (size_t)__builtin_popcountll(aged) * HM_GRANULE;
  }
  return HM_REGION_WORDS;
}

static uint64_t free_mask(size_t w)
{
  return w == 0 ? ~(uint64_t)1 : ~(uint64_t)0;
}

bool hm_region_is_empty(hm_region *r)
{
  for (size_t w = 0; w < HM_REGION_WORDS; w++)
    if (load(&r->used[w]) & free_mask(w))
      return false;
  return true;
}

bool hm_region_is_idle(hm_region *r)
{
  if (!hm_region_is_empty(r))
    return false;
  for (size_t w = 0; w < HM_REGION_WORDS; w++)
    if (load(&r->dirty[w]) & ~load(&r->aged[w]))
      return false;
  return true;
}

bool hm_region_close(hm_region *r)
{
  size_t w = 0;
  for (; w < HM_REGION_WORDS; w++) {
    uint64_t expected = ~free_mask(w);
    if (!atomic_compare_exchange_strong_explicit(&r->used[w], &expected, ~(uint64_t)0,
                                                 memory_order_acquire, memory_order_relaxed))
      break;
  }
  if (w == HM_REGION_WORDS)
    return true;
  while (w-- > 0)
    atomic_store_explicit(&r->used[w], ~free_mask(w), memory_order_release);
  return false;
}
