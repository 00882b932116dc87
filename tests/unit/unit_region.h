/* Helpers for the unit tests that look at a region's granule bitmaps: where
 * a run lies in them, and what a run given back to its region looks like. */
#ifndef HM_UNIT_REGION_H
#define HM_UNIT_REGION_H

#include "pagemap.h"
#include "region.h"
#include "unit.h"

/* Index of the granule holding `p` in its region. */
static inline size_t unit_granule_index(const void *p)
{
  return ((uintptr_t)p & (HM_REGION_SIZE - 1)) >> HM_GRANULE_SHIFT;
}

/* `count` bits from `bit` (count 1..64). */
static inline uint64_t unit_bits(size_t count, size_t bit)
{
  return (count == 64 ? ~(uint64_t)0 : ((uint64_t)1 << count) - 1) << bit;
}

/* The bits of a run in its bitmap word (a run never crosses a word). */
static inline uint64_t unit_run_bits(const void *run, size_t count)
{
  return unit_bits(count, unit_granule_index(run) % 64);
}

/* The word of bitmap `map` (one of a region's used, dirty, aged, clean)
 * that holds the run starting at `run`. */
#define UNIT_WORD(map, run) \
  atomic_load(&hm_region_of(run)->map[unit_granule_index(run) / 64])

/* A run of `granules` given back to its region (by a span whose blocks were
 * all free) and not reused since: no page-map entry, free, and dirty (its
 * pages are resident); aged once a purge pass has seen it so, not before.
 * Only for quiet moments: another thread may claim the granules at any
 * time. Assumes a purge delay other than 0 (which purges at once). */
static inline void unit_check_given_back_aged(const void *run, size_t granules, bool aged,
                                              const char *what)
{
  for (size_t g = 0; g < granules; g++) {
    const uint8_t *p = (const uint8_t *)run + g * HM_GRANULE;
    CHECK(hm_pagemap_header(p) == NULL && hm_pagemap_header(p + HM_GRANULE - 1) == NULL,
          "%s: granule %zu of %p still maps to %p", what, g, run, hm_pagemap_header(p));
  }
  uint64_t bits = unit_run_bits(run, granules);
  CHECK((UNIT_WORD(used, run) & bits) == 0, "%s: run %p of %zu granules still used (%#lx)",
        what, run, granules, (unsigned long)UNIT_WORD(used, run));
  CHECK((UNIT_WORD(dirty, run) & bits) == bits, "%s: run %p of %zu not dirty (%#lx)", what,
        run, granules, (unsigned long)UNIT_WORD(dirty, run));
  CHECK((UNIT_WORD(aged, run) & bits) == (aged ? bits : 0), "%s: run %p of %zu %s", what, run,
        granules, aged ? "not aged by a purge pass" : "aged as soon as freed");
}

static inline void unit_check_given_back(const void *run, size_t granules, const char *what)
{
  unit_check_given_back_aged(run, granules, false, what);
}

#endif
