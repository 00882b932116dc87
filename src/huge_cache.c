#include "huge_cache.h"

#include <string.h>

#include "arena.h"
#include "large.h"
#include "pagemap.h"
#include "purge.h"

/* A slot's word: the mapping's address, its granule count below bit 15
 * and whether it was purged at bit 15 (mappings are granule-aligned). */
#define SLOT_PURGED ((uintptr_t)1 << 15)
#define SLOT_GRANULES (SLOT_PURGED - 1)
#define GRANULE_MASK ((uintptr_t)HM_GRANULE - 1)

static hm_span *slot_span(uintptr_t word)
{
  return (hm_span *)(word & ~GRANULE_MASK);
}

static size_t slot_granules(uintptr_t word)
{
  return word & SLOT_GRANULES;
}

static size_t cache_bound(const hm_arena *a)
{
  size_t in_use = atomic_load_explicit(&a->huge_bytes, memory_order_relaxed);
  return in_use > HM_HUGE_CACHE_MIN_BYTES ? in_use : HM_HUGE_CACHE_MIN_BYTES;
}

/* Publishes a mapping the caller owns in a free slot; false if none is. */
static bool publish(hm_huge_cache *c, hm_span *s)
{
  uintptr_t word = (uintptr_t)s | s->granules | (s->purged ? SLOT_PURGED : 0);
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

/* Puts a mapping the caller owns back in the cache, or unmaps it. */
static void recache(hm_huge_cache *c, hm_span *s)
{
  if (!publish(c, s))
    hm_large_unmap(s);
}

static bool cache(hm_arena *a, hm_span *s)
{
  hm_huge_cache *c = &a->huge_cache;
  if (atomic_load_explicit(&c->bytes, memory_order_relaxed) + s->size > cache_bound(a))
    return false;
  s->cached_at = hm_purge_passes();
  s->zeroed = false;
  s->purged = false;
  return publish(c, s);
}

/* The piece of mapping `s` from granule `g` on, as a freed mapping of its
 * own. */
static hm_span *cut(hm_span *s, size_t g)
{
  hm_span *piece = (hm_span *)((uint8_t *)s + g * HM_GRANULE);
  piece->kind = HM_KIND_HUGE;
  piece->arena = s->arena;
  piece->size = s->size - g * HM_GRANULE;
  piece->granules = s->granules - (uint32_t)g;
  piece->blocks = (uint8_t *)piece + HM_HEADER_SIZE;
  atomic_store_explicit(&piece->owner, 0, memory_order_relaxed);
  atomic_store_explicit(&piece->state, HM_SPAN_FREED, memory_order_relaxed);
  hm_pagemap_set(piece, piece, 1); /* the entry is there: cannot fail */
  s->size = g * HM_GRANULE;
  s->granules = (uint32_t)g;
  return piece;
}

bool hm_huge_cache_put(hm_arena *a, hm_span *s)
{
  /* Only mappings whose header granule is the only one the page map
   * covers (but for the pieces' marks): a reuse with another offset then
   * leaves no stale entry. */
  if (s->granules > SLOT_GRANULES || (size_t)(s->blocks - (uint8_t *)s) >= HM_GRANULE ||
      hm_purge_at_once())
    return false;
  /* Only whole huge pages, huge-page aligned (not a block that realloc
   * resized): see hm_huge_granules. */
  size_t huge_page = hm_os_huge_page_size();
  if (s->granules != hm_huge_granules(s->granules) ||
      (huge_page > HM_GRANULE && ((uintptr_t)s & (huge_page - 1)) != 0))
    return false;
  /* A mapping that hm_huge_cache_fill made of pieces of others is several
   * of the OS's mappings, and the OS moves only one at a time: each piece
   * is cached on its own. */
  for (size_t g = s->granules - 1; g > 0; g--) {
    if (hm_pagemap_header((uint8_t *)s + g * HM_GRANULE) != s)
      continue;
    hm_span *piece = cut(s, g);
    if (!cache(a, piece))
      hm_large_unmap(piece);
  }
  if (!cache(a, s))
    return false;
  hm_purge_note_idle(); /* the mapping ages only while passes run */
  return true;
}

/* Claims the cached mapping of slot `i` if it still holds `word`. */
static hm_span *claim(hm_huge_cache *c, int i, uintptr_t word)
{
  if (!atomic_compare_exchange_strong_explicit(&c->slots[i], &word, 0, memory_order_acquire,
                                               memory_order_relaxed))
    return NULL;
  hm_span *s = slot_span(word);
  atomic_fetch_sub_explicit(&c->bytes, s->size, memory_order_relaxed);
  return s;
}

/* The slot of the smallest cached mapping of `min` to `max` granules (with
 * `resident`, of those not purged), or -1. */
static int smallest(hm_huge_cache *c, size_t min, size_t max, bool resident, uintptr_t *word)
{
  int best = -1;
  size_t best_granules = max + 1;
  for (unsigned i = 0; i < HM_HUGE_CACHE_SLOTS; i++) {
    uintptr_t w = atomic_load_explicit(&c->slots[i], memory_order_acquire);
    size_t g = slot_granules(w);
    if (w != 0 && g >= min && g < best_granules && !(resident && (w & SLOT_PURGED))) {
      best = (int)i;
      best_granules = g;
      *word = w;
    }
  }
  return best;
}

/* The slot of the largest resident cached mapping, or -1. */
static int largest(hm_huge_cache *c, uintptr_t *word)
{
  int best = -1;
  size_t best_granules = 0;
  for (unsigned i = 0; i < HM_HUGE_CACHE_SLOTS; i++) {
    uintptr_t w = atomic_load_explicit(&c->slots[i], memory_order_acquire);
    size_t g = slot_granules(w);
    if (w != 0 && g > best_granules && !(w & SLOT_PURGED)) {
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
    int i = smallest(c, granules, granules + granules / 4, false, &word);
    if (i < 0)
      return NULL;
    hm_span *s = claim(c, i, word);
    if (s != NULL)
      return s;
  }
  return NULL;
}

/* A resident cached mapping to move pages from into a mapping that still
 * needs `need` granules: the smallest that has them all, else the largest. */
static hm_span *take_resident(hm_huge_cache *c, size_t need)
{
  for (int tries = 0; tries < 4; tries++) {
    uintptr_t word = 0;
    int i = smallest(c, need, SIZE_MAX - 1, true, &word);
    if (i < 0)
      i = largest(c, &word);
    if (i < 0)
      return NULL;
    hm_span *s = claim(c, i, word);
    if (s != NULL)
      return s;
  }
  return NULL;
}

bool hm_huge_cache_fill(hm_arena *a, hm_span *to, size_t granules)
{
  hm_huge_cache *c = &a->huge_cache;
  size_t done = 0;
  /* A few pieces at most: each is a mapping of the OS while the block lives. */
  for (int pieces = 0; pieces < HM_HUGE_FILL_PIECES && done < granules &&
                       atomic_load_explicit(&c->bytes, memory_order_relaxed) != 0;
       pieces++) {
    uint8_t *at = (uint8_t *)to + done * HM_GRANULE;
    /* Every piece but the first is marked, before it moves in. */
    if (done > 0 && !hm_pagemap_set(to, at, 1))
      break;
    hm_span *s = take_resident(c, granules - done);
    if (s == NULL) {
      if (done > 0)
        hm_pagemap_clear(at, 1);
      break;
    }
    /* A whole mapping, or the tail of a bigger one, whose head stays. */
    bool whole = s->granules <= granules - done;
    size_t moved = whole ? s->granules : granules - done;
    uint8_t *from = (uint8_t *)s + (s->granules - moved) * HM_GRANULE;
    if (whole)
      hm_pagemap_clear(s, 1);
    if (!hm_os_remap(from, moved * HM_GRANULE, at, moved * HM_GRANULE)) {
      /* Not one mapping of the OS (a piece whose mark was lost), or out
       * of the OS's mapping slots: gone. */
      if (done > 0)
        hm_pagemap_clear(at, 1);
      hm_large_unmap(s);
      continue;
    }
    if (!whole) { /* (a whole one's header moved with it) */
      s->size -= moved * HM_GRANULE;
      s->granules -= (uint32_t)moved;
      recache(c, s);
    }
    done += moved;
  }
  /* The fresh pages left are a mapping of the OS of their own. (Unmarked
   * if the page map cannot take the mark: then, once freed, the last piece
   * and they fail to move as one, and are unmapped.) */
  if (done > 0 && done < granules)
    hm_pagemap_set(to, (uint8_t *)to + done * HM_GRANULE, 1);
  return done > 0;
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
