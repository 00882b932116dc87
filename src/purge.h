/* When idle memory goes back to the OS (jemalloc's decay is the anchor).
 *
 * Memory that has been free for one purge delay (HMALLOC_PURGE_DELAY_MS) is
 * purged by the next pass, so it leaves between one and two delays after it
 * was freed, and memory reused sooner is never purged. Passes run amortised
 * on slow paths (at most one per delay, in whichever thread gets there
 * first) until a pass finds HM_BACKGROUND_AUTO_BYTES idle; then (or from the
 * start, with HMALLOC_BACKGROUND_THREAD=1) on a thread that sleeps while
 * nothing is idle, since slow paths stop when the program goes quiet.
 * Regions are unmapped only by that thread or by a trim: releasing one
 * waits for an RCU grace period, which may sleep. */
#ifndef HM_PURGE_H
#define HM_PURGE_H

#include "internal.h"

/* Purge passes so far: the clock that cached large and huge blocks age by
 * (reading it costs a load, unlike the system clock). */
extern HM_HIDDEN _Atomic uint32_t hm_purge_pass_count;
static inline uint32_t hm_purge_passes(void)
{
  return atomic_load_explicit(&hm_purge_pass_count, memory_order_relaxed);
}

/* Called at the end of slow paths, outside any allocator state. */
void hm_purge_tick(void);
/* Something became idle: wake the background thread if it sleeps. */
void hm_purge_note_idle(void);
/* Whether freed granules are purged at once (delay 0). */
bool hm_purge_at_once(void);
/* Returns everything idle now; whether any memory was returned. */
bool hm_purge_trim(void);
void hm_purge_fork_prepare(void);
void hm_purge_fork_parent(void);
void hm_purge_fork_child(void);

#endif
