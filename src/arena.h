/* The central arena: the regions it reserved from the OS, and lock-free
 * stacks of spans that no thread owns (partial spans per size class, empty
 * spans per span size).
 *
 * A region is 64 MiB, aligned to 64 MiB, so the region of any granule is
 * found by masking. Its first granule holds the region header; a bitmap of
 * 1024 bits (16 words) says which granules are in use. A run of granules
 * never crosses a bitmap word, so claiming or freeing one is a single atomic
 * operation on one word; hence runs are at most 64 granules (4 MiB). */
#ifndef HM_ARENA_H
#define HM_ARENA_H

#include "size_class.h"
#include "span.h"

#define HM_REGION_SHIFT 26
#define HM_REGION_SIZE ((size_t)1 << HM_REGION_SHIFT)
#define HM_REGION_GRANULES (HM_REGION_SIZE / HM_GRANULE)
#define HM_REGION_WORDS (HM_REGION_GRANULES / 64)
#define HM_RUN_MAX 64
/* Span sizes are 1, 2, 4, 8 or 16 granules: one empty stack for each. */
#define HM_SPAN_SIZES 5

typedef struct hm_region {
  struct hm_region *next; /* immutable once published */
  struct hm_arena *arena;
  _Atomic uint64_t used[HM_REGION_WORDS];
} hm_region;

typedef struct hm_padded_stack {
  hm_stack stack;
} __attribute__((aligned(HM_CACHE_LINE))) hm_padded_stack;

typedef struct hm_arena {
  hm_region *_Atomic regions;
  hm_padded_stack partial[HM_CLASSES];
  hm_padded_stack empty[HM_SPAN_SIZES];
  unsigned index;
  /* Statistics, updated on slow paths only. */
  _Atomic size_t regions_reserved;
  _Atomic size_t spans_formed;
  _Atomic size_t large_live, large_bytes;
  _Atomic size_t huge_live, huge_bytes;
} hm_arena;

extern HM_HIDDEN hm_arena hm_arenas[1];

/* The arena for NUMA node `node` (-1: the caller's node). One node for now;
 * the signature is where per-node arenas plug in. */
hm_arena *hm_arena_for_node(int node);

/* A committed run of `count` (1..HM_RUN_MAX) granules, or NULL. */
void *hm_arena_alloc_run(hm_arena *a, size_t count);
void hm_arena_free_run(void *run, size_t count);
/* Extends a run in place to `new_count` granules, if those after it are free. */
bool hm_arena_grow_run(void *run, size_t count, size_t new_count);
void hm_arena_shrink_run(void *run, size_t count, size_t new_count);

/* An exclusively held span of class `cls`: a partial one, an empty one
 * reformatted, or a new one. NULL when memory is exhausted. */
hm_span *hm_arena_take_span(hm_arena *a, unsigned cls);
void hm_arena_push_partial(hm_span *s);
void hm_arena_push_empty(hm_span *s);

#endif
