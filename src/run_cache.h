/* A thread heap's cache of freed large runs (DESIGN.md "Large blocks").
 *
 * A large run freed by a thread is kept whole: its header (state FREED, so
 * a second free is still caught exactly), its page-map entries and its
 * region bits. A later large malloc of the thread takes it back with no
 * bitmap claim, no page-map write and no system call: a list pop. Only the
 * owning thread touches the cache, with plain loads and stores, outside
 * the fork gate (no atomic operation on a hit): a fork child forgets the
 * caches of the threads that did not survive the fork.
 *
 * Bounded: at most HM_RUN_CACHE_BYTES a heap; a run that does not fit goes
 * back to its region. Decayed: a run cached before the previous purge pass
 * goes back at the owner's next large malloc or free or slow path, so
 * cached memory follows the purge delay; trim, thread exit and a fork child
 * flush the cache. A thread that stays idle keeps its cache (at most the
 * bound) until then, as it keeps its spans. Nothing is cached with purge
 * delay 0, where freed memory goes back at once. */
#ifndef HM_RUN_CACHE_H
#define HM_RUN_CACHE_H

#include "region.h"
#include "span.h"

#ifndef HM_RUN_CACHE_BYTES
#define HM_RUN_CACHE_BYTES ((size_t)8 << 20)
#endif

typedef struct hm_run_cache {
  uint64_t nonempty;       /* bit g-1: runs[g-1] holds runs of g granules */
  uint32_t epoch;          /* the purge pass the cache last aged at */
  size_t bytes;            /* bytes of the cached runs */
  size_t count;            /* cached runs (read by the statistics) */
  hm_span *runs[HM_RUN_MAX]; /* by granule count, LIFO through qnext */
} hm_run_cache;

/* A cached run of `granules` (1..HM_RUN_MAX) granules, or up to a quarter
 * more; NULL if there is none. The caller makes it LIVE. */
hm_span *hm_run_cache_take(hm_run_cache *c, size_t granules);
/* Caches a freed run; false (the caller releases it) past the bound. */
bool hm_run_cache_put(hm_run_cache *c, hm_span *s);
/* Releases the runs cached before the previous purge pass. */
void hm_run_cache_age(hm_run_cache *c);
/* Releases every cached run. */
void hm_run_cache_flush(hm_run_cache *c);
/* Drops the cache without looking at it: a fork child's copy of another
 * thread's cache, which that thread may have been changing (takes and puts
 * do not enter the fork gate). Its runs stay in use in the child. */
void hm_run_cache_forget(hm_run_cache *c);

#endif
