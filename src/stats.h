/* Statistics. Thread caches count their own mallocs and frees in plain
 * per-class counters (merged here when a thread exits); what bypasses the
 * caches (large and huge blocks, re-entrant calls) is counted here with
 * atomics, on slow paths only. */
#ifndef HM_STATS_H
#define HM_STATS_H

#include "tcache.h"

void hm_stats_count_thread(void);
void hm_stats_count_direct(size_t bytes);
void hm_stats_count_direct_free(size_t bytes);
void hm_stats_merge(hm_tcache *tc);
/* A large or huge block was resized in place. */
void hm_stats_resize(size_t old_bytes, size_t new_bytes);

#endif
