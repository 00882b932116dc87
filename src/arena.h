/* A central arena, one per NUMA node: the regions it reserved from the OS
 * (bound to its node), and per class lock-free stacks of the partial spans
 * no heap owns and of empty spans.
 *
 * Free memory's long-term home is the granule bitmaps of the regions, which
 * purging and releasing regions walk. An empty span waits on its class's
 * empty stack until the next purge pass gives it back there: a heap that
 * empties spans and forms them again soon after (per-request private heaps,
 * a thread's batch of frees) reuses them without the bitmap claim and the
 * page-map writes, and the memory still leaves by the purge policy. */
#ifndef HM_ARENA_H
#define HM_ARENA_H

#include "huge_cache.h"
#include "region.h"
#include "size_class.h"
#include "span.h"
#include "topology.h"

typedef struct hm_padded_stack {
  hm_stack stack;
} __attribute__((aligned(HM_CACHE_LINE))) hm_padded_stack;

typedef struct hm_arena {
  /* Pushed at the head with a CAS; unlinked only by the one purging thread,
   * and unmapped after an RCU grace period. */
  hm_region *_Atomic regions;
  hm_padded_stack partial[HM_CLASSES];
  hm_padded_stack empty[HM_CLASSES];
  /* Statistics, updated on slow paths only. */
  _Atomic size_t regions_live, regions_released;
  _Atomic size_t spans_formed;
  _Atomic size_t large_live, large_bytes;
  _Atomic size_t huge_live, huge_bytes;
  hm_huge_cache huge_cache;
  _Atomic size_t purge_calls, purged_bytes;
  _Atomic size_t cross_node_frees; /* blocks of this node freed by threads of another */
} hm_arena;

extern HM_HIDDEN hm_arena hm_arenas[HM_TOPOLOGY_MAX_NODES];

/* The arena for NUMA node `node`; -1: the node the caller runs on. */
hm_arena *hm_arena_for_node(int node);
/* Arenas in use: one per node of the topology (1 until it is known). */
unsigned hm_arena_count(void);
static inline int hm_arena_node(const hm_arena *a)
{
  return (int)(a - hm_arenas);
}
/* Bytes of the arena's regions that are resident (asks the OS). */
size_t hm_arena_resident(hm_arena *a);

/* A committed run of `count` (1..HM_RUN_MAX) granules, or NULL; *zeroed
 * tells whether it reads as zeros. */
void *hm_arena_alloc_run(hm_arena *a, size_t count, bool *zeroed);
void hm_arena_free_run(void *run, size_t count);
/* Extends a run in place to `new_count` granules, if those after it are free. */
bool hm_arena_grow_run(void *run, size_t count, size_t new_count);
void hm_arena_shrink_run(void *run, size_t count, size_t new_count);

/* An exclusively held span of class `cls`: a partial one (if `partial`),
 * or a new one. NULL when memory is exhausted. */
hm_span *hm_arena_take_span(hm_arena *a, unsigned cls, bool partial);
void hm_arena_push_partial(hm_span *s);
/* An unused span, held by the caller: onto its class's empty stack, its
 * free lists kept (the next heap to take it carves nothing). */
void hm_arena_push_empty(hm_span *s);
/* Gives the granules of an unused span back to its region. */
void hm_arena_give_back(hm_span *s);

/* One purge pass: unused partial spans go back to their regions, the
 * regions purge their aged granules (with `all`, every free one), and the
 * huge cache purges or unmaps the mappings that aged; `now`: RSS must drop
 * at once. Returns the bytes left idle (free and resident) for the next
 * pass. */
size_t hm_arena_purge(hm_arena *a, bool all, bool now);

/* Where a bounded pass stopped in an arena: step 0 gives unused spans
 * back, step i purges the i-th region from `word` on, step SIZE_MAX the
 * huge cache. Regions come and go between the two halves of a pass: the
 * resumed one may look at a region twice or skip one, never more. */
typedef struct hm_purge_at {
  size_t step, word;
} hm_purge_at;
/* The pass from *at ({0, 0}: the start) within out->limit: on a cut
 * (out->cut), *at says where to resume; else it is {0, 0} again. */
void hm_arena_purge_from(hm_arena *a, bool all, bool now, hm_purge_at *at,
                         struct hm_purge_result *out);
/* Releases regions that are empty (`all`) or have been empty for a purge
 * pass, keeping the newest one unless `all`. Sleeps for an RCU grace period:
 * never on a malloc or free path. Returns the bytes released. */
size_t hm_arena_release_regions(hm_arena *a, bool all);
/* Whether a purge pass would have anything to do. */
bool hm_arena_has_idle(hm_arena *a);

#endif
