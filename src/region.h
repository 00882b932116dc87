/* A region: 64 MiB of address space, 64 MiB-aligned, reserved from the OS
 * and handed out in runs of 64 KiB granules.
 *
 * The first granule holds this header. Four bitmaps of 1024 bits (16 words)
 * track every granule:
 *   used   in use, or held by a purge in progress;
 *   dirty  free, and touched since it was last purged (resident);
 *   aged   was dirty at the previous purge pass and has not been used since:
 *          the next pass purges it, so memory goes back to the OS between one
 *          and two purge delays after it was freed, and memory that is
 *          reused sooner is never purged (no purge-and-refault cliff);
 *   clean  free and known to read as zeros (never used, or purged with an
 *          immediate purge), so a span or block made of it needs no memset.
 * A run never crosses a bitmap word, so claiming or freeing it is one atomic
 * operation on the `used` word; runs are at most 64 granules (4 MiB). */
#ifndef HM_REGION_H
#define HM_REGION_H

#include "internal.h"

#define HM_REGION_SHIFT 26
#define HM_REGION_SIZE ((size_t)1 << HM_REGION_SHIFT)
#define HM_REGION_GRANULES (HM_REGION_SIZE / HM_GRANULE)
#define HM_REGION_WORDS (HM_REGION_GRANULES / 64)
#define HM_RUN_MAX 64

struct hm_arena;

typedef struct hm_region {
  struct hm_region *_Atomic next;
  struct hm_arena *arena;
  _Atomic uint64_t used[HM_REGION_WORDS];
  _Atomic uint64_t dirty[HM_REGION_WORDS];
  _Atomic uint64_t aged[HM_REGION_WORDS];
  _Atomic uint64_t clean[HM_REGION_WORDS];
} hm_region;

static inline hm_region *hm_region_of(const void *p)
{
  return (hm_region *)((uintptr_t)p & ~(uintptr_t)(HM_REGION_SIZE - 1));
}

/* A new region of arena `a`, its memory bound to NUMA node `node` before
 * anything touches it. */
hm_region *hm_region_create(struct hm_arena *a, int node);
/* Unmaps a region that hm_region_close emptied and nobody can reach. */
void hm_region_destroy(hm_region *r);

/* A run of `count` granules, preferring resident ones; *zeroed tells whether
 * it reads as zeros. NULL if the region has no such run. */
void *hm_region_claim(hm_region *r, size_t count, bool *zeroed);
/* Frees a run; with `purge` its memory goes back to the OS at once.
 * Returns whether it did. */
bool hm_region_free(void *run, size_t count, bool purge);
/* Extends a run in place, if the granules after it are free. */
bool hm_region_grow(void *run, size_t count, size_t new_count);

struct hm_purge_result {
  size_t bytes; /* purged */
  size_t calls; /* madvise calls made */
  size_t idle;  /* free and resident after the pass: the next pass's work */
  /* A bounded pass (an application thread's): the bytes it may purge or
   * unmap (0: no bound), those it did, and whether it stopped short. */
  size_t limit, spent;
  bool cut;
};
/* Purges the aged free granules (with `all`, every dirty free granule)
 * from word `from` on; `now`: RSS must drop at once. Returns the word a
 * bounded pass stopped at, its candidates left aged for the pass's
 * resumption, or HM_REGION_WORDS. */
size_t hm_region_purge(hm_region *r, bool all, bool now, size_t from, struct hm_purge_result *out);
/* Whether every granule but the header is free. */
bool hm_region_is_empty(hm_region *r);
/* Whether the region has been empty since the previous purge pass. */
bool hm_region_is_idle(hm_region *r);
/* Claims every granule of an empty region so nobody can take one while it
 * is being released; false (and nothing claimed) if it is not empty. */
bool hm_region_close(hm_region *r);

#endif
