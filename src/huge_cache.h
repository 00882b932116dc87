/* An arena's cache of freed huge mappings (DESIGN.md "Large blocks").
 *
 * A freed huge block keeps its mapping (address space, NUMA binding, its
 * header FREED in the page map, so a second free is still caught) in one of
 * a few slots. A huge malloc of the arena's node takes the smallest cached
 * mapping that holds it with at most a quarter to spare, and pays no mmap
 * and, while the pages are still resident, no page faults. Else it gets a
 * new mapping and the cache's resident pages move into it (mremap: page
 * tables move, pages are neither copied nor faulted in again): whole
 * mappings, or the tail of one bigger than what is still needed, whose
 * head stays cached. Such a block is several mappings of the OS, which
 * moves one at a time: the page map marks where each piece starts, and
 * once freed each piece is cached on its own.
 *
 * A slot holds the mapping's address with its granule count in the low 15
 * bits and whether it was purged in bit 15 (mappings are granule-aligned),
 * so a taker chooses without touching a mapping it does not own, and
 * claims one with a CAS: no lock, no grace period. Whoever holds a mapping
 * taken from a slot owns it.
 *
 * Bounded: HM_HUGE_CACHE_MIN_BYTES, or the arena's huge bytes in use if
 * more (bench/ large -t 1 faulted 63 thousand pages with 256 MiB, 141
 * thousand with 64 MiB: whatever the bound turns away is unmapped and
 * faulted in again). Decayed by the purge passes: a mapping cached before
 * the previous pass is purged (its pages go back; it now reads as zeros),
 * one cached HM_HUGE_CACHE_UNMAP_PASSES passes ago is unmapped; a trim
 * unmaps them all. */
#ifndef HM_HUGE_CACHE_H
#define HM_HUGE_CACHE_H

#include "region.h"
#include "span.h"

#define HM_HUGE_CACHE_SLOTS 32
#ifndef HM_HUGE_CACHE_MIN_BYTES
#define HM_HUGE_CACHE_MIN_BYTES ((size_t)256 << 20)
#endif
#define HM_HUGE_CACHE_UNMAP_PASSES 8
/* Cached mappings moved into one new huge block at most. */
#define HM_HUGE_FILL_PIECES 8

typedef struct hm_huge_cache {
  _Atomic uintptr_t slots[HM_HUGE_CACHE_SLOTS]; /* mapping | granules, or 0 */
  _Atomic size_t bytes;                         /* of the cached mappings */
} hm_huge_cache;

struct hm_arena;

/* The granules of a huge mapping for a block of `granules`: whole huge
 * pages (2 MiB on x86_64), so that hm_huge_cache_fill moves pages between
 * mappings a page table at a time (moving them one by one, the first
 * touch of each costs about as much as a page fault under a hypervisor
 * with shadow page tables). */
static inline size_t hm_huge_granules(size_t granules)
{
  size_t unit = hm_os_huge_page_size() / HM_GRANULE;
  return unit > 1 ? hm_align_up(granules, unit) : granules;
}

/* Caches a freed huge block of arena `a`; false: the caller unmaps it. */
bool hm_huge_cache_put(struct hm_arena *a, hm_span *s);
/* A cached mapping of `granules` granules up to a quarter more, or NULL.
 * The caller formats the header anew; s->zeroed tells whether it reads as
 * zeros past the header. */
hm_span *hm_huge_cache_take(struct hm_arena *a, size_t granules);
/* Moves resident pages of cached mappings into the first of the `granules`
 * granules of `to`, a new mapping (whole mappings, or the tails of bigger
 * ones), as far as the cache has them; whether it moved any (then `to`
 * does not read as zeros). The page map marks where each piece starts. */
bool hm_huge_cache_fill(struct hm_arena *a, hm_span *to, size_t granules);
/* The purge pass's share: purges and unmaps what aged (with `all`,
 * unmaps everything), within out->limit; adds the bytes still cached and
 * resident to out->idle. */
void hm_huge_cache_purge(struct hm_arena *a, bool all, bool now, struct hm_purge_result *out);

#endif
