#include "huge_cache.h"

#include <string.h>

#include "arena.h"
#include "large.h"
#include "purge.h"

#define GRANULE_MASK ((uintptr_t)HM_GRANULE - 1)

static hm_span *slot_span(uintptr_t word)
{
  return (hm_span *)(word & ~GRANULE_MASK);
}

static size_t slot_granules(uintptr_t word)
{
  return word & GRANULE_MASK;
}

static size_t cache_bound(const hm_arena *a)
{
  size_t in_use = atomic_load_explicit(&a->huge_bytes, memory_order_relaxed);
  return in_use > HM_HUGE_CACHE_MIN_BYTES ? in_use : HM_HUGE_CACHE_MIN_BYTES;
}

/* Publishes a mapping the caller owns in a free slot; false if none is. */
static bool publish(hm_huge_cache *c, hm_span *s)
{
  uintptr_t word = (uintptr_t)s | s->granules;
  atomic_fetch_add_explicit(&c->bytes, s->size, memory_order_relaxed);
  for (unsigned i = 0; i < HM_HUGE_CACHE_SLOTS; i++) {
    uintptr_t empty = 0;
    if (atomic_compare_exchange_strong_explicit(&c->slots[i], &empty, word, memory_order_release,
                                                memory_order_relaxed))
      return true;
  }
  atomic_fetch_sub_explicit(&c->bytes, s->size, memory_order_relaxed);
  return false;
}

bool hm_huge_cache_put(hm_arena *a, hm_span *s)
{
  /* Only mappings whose header granule is the only one the page map
   * covers: a reuse with another offset then leaves no stale entry. */
  if (s->granules > GRANULE_MASK || (size_t)(s->blocks - (uint8_t *)s) >= HM_GRANULE ||
      hm_purge_at_once())
    return false;
  hm_huge_cache *c = &a->huge_cache;
  if (atomic_load_explicit(&c->bytes, memory_order_relaxed) + s->size > cache_bound(a))
    return false;
  s->cached_at = hm_purge_passes();
  s->zeroed = false;
  s->purged = false;
  if (!publish(c, s))
    return false;
  hm_purge_note_idle(); /* the mapping ages only while passes run */
  return true;
}

/* The slot of the smallest cached mapping of `granules` up to twice that,
 * or -1. A bigger mapping is not cut to fit: not every system can release
 * part of a mapping, and a cut leaves pieces nobody asked for. */
static int best_fit(hm_huge_cache *c, size_t granules, uintptr_t *word)
{
  int best = -1;
  size_t best_granules = 2 * granules + 1;
  for (unsigned i = 0; i < HM_HUGE_CACHE_SLOTS; i++) {
    uintptr_t w = atomic_load_explicit(&c->slots[i], memory_order_acquire);
    size_t g = slot_granules(w);
    if (w != 0 && g >= granules && g < best_granules) {
      best = (int)i;
      best_granules = g;
      *word = w;
    }
  }
  return best;
}

hm_span *hm_huge_cache_take(hm_arena *a, size_t granules)
{
  hm_huge_cache *c = &a->huge_cache;
  /* A few tries: another taker may win the slot we chose. */
  for (int tries = 0; tries < 4; tries++) {
    if (atomic_load_explicit(&c->bytes, memory_order_relaxed) == 0)
      return NULL;
    uintptr_t word = 0;
    int i = best_fit(c, granules, &word);
    if (i < 0)
      return NULL;
    if (!atomic_compare_exchange_strong_explicit(&c->slots[i], &word, 0, memory_order_acquire,
                                                 memory_order_relaxed))
      continue;
    hm_span *s = slot_span(word);
    atomic_fetch_sub_explicit(&c->bytes, s->size, memory_order_relaxed);
    /* Reusing resident pages saves faulting in fresh ones; the spare
     * tail's go back, so that RSS follows what is asked for. */
    size_t spare = s->granules - granules;
    if (spare > granules / 4 && !s->purged)
      hm_os_purge((uint8_t *)s + granules * HM_GRANULE, spare * HM_GRANULE, true);
    return s;
  }
  return NULL;
}

/* Gives a cached mapping's pages back, all but the header's page, whose
 * bytes past the header are cleared so the whole block reads as zeros. */
static void purge_mapping(hm_arena *a, hm_span *s, bool now)
{
  size_t page = hm_os_page_size();
  s->zeroed = hm_os_purge((uint8_t *)s + page, s->size - page, now);
  if (s->zeroed)
    memset((uint8_t *)s + HM_HEADER_SIZE, 0, page - HM_HEADER_SIZE);
  s->purged = true;
  atomic_fetch_add_explicit(&a->purge_calls, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&a->purged_bytes, s->size - page, memory_order_relaxed);
}

/* Whether a bounded pass has room to purge or unmap `bytes` more. */
static bool room_for(struct hm_purge_result *out, size_t bytes)
{
  if (out->limit != 0 && out->spent + bytes > out->limit) {
    out->cut = true;
    return false;
  }
  out->spent += bytes;
  return true;
}

void hm_huge_cache_purge(hm_arena *a, bool all, bool now, struct hm_purge_result *out)
{
  hm_huge_cache *c = &a->huge_cache;
  uint32_t passes = hm_purge_passes();
  for (unsigned i = 0; i < HM_HUGE_CACHE_SLOTS && !out->cut; i++) {
    uintptr_t word = atomic_load_explicit(&c->slots[i], memory_order_acquire);
    if (word == 0 || !atomic_compare_exchange_strong_explicit(&c->slots[i], &word, 0,
                                                              memory_order_acquire,
                                                              memory_order_relaxed))
      continue;
    hm_span *s = slot_span(word);
    atomic_fetch_sub_explicit(&c->bytes, s->size, memory_order_relaxed);
    uint32_t age = passes - s->cached_at;
    bool unmap = all || age >= HM_HUGE_CACHE_UNMAP_PASSES;
    bool purge = !unmap && age >= 2 && !s->purged;
    if ((unmap || purge) && room_for(out, s->size)) {
      if (unmap) {
        hm_large_unmap(s);
        continue;
      }
      purge_mapping(a, s, now);
    }
    if (!s->purged)
      out->idle += s->size;
    if (!publish(c, s))
      hm_large_unmap(s);
  }
}
