/* Statistics. Heaps count their own mallocs and frees in plain per-class
 * counters (merged here when a thread exits or a heap is reset); what
 * bypasses the heaps (large and huge blocks, re-entrant calls) is counted here with
 * atomics, on slow paths only. */
#ifndef HM_STATS_H
#define HM_STATS_H

#include "heap.h"

void hm_stats_count_thread(void);
void hm_stats_count_direct(size_t bytes);
void hm_stats_count_direct_free(size_t bytes);
/* Moves a heap's counters into the totals (its thread exits, or it is
 * reset or destroyed). */
void hm_stats_merge(hm_heap *h);
/* Blocks freed all at once (a private heap's reset). */
void hm_stats_count_freed(size_t blocks, size_t bytes);
/* A large or huge block was resized in place. */
void hm_stats_resize(size_t old_bytes, size_t new_bytes);

#endif
