/* Blocks too big for a span. A large block (up to HM_RUN_MAX granules,
 * header included) is a run of granules from an arena region; a huge block
 * is a mapping of its own. Both start with an hm_span header whose `blocks`
 * is the user pointer; the page map covers the granules from the header to
 * the user pointer, so a free of an interior pointer is refused. */
#ifndef HM_LARGE_H
#define HM_LARGE_H

#include "span.h"

/* `align` is a power of two, at least HM_MIN_ALIGN. *old_key is
 * hm_zero_key when the block reads as zeros. */
void *hm_large_alloc(size_t size, size_t align, uint64_t *old_key);
/* A large block (default alignment) of a thread heap `h`, from its cache
 * of freed runs; NULL if none fits. Its memory is not zeroed. */
void *hm_large_alloc_cached(struct hm_heap *h, size_t size);
/* Checks and frees a large or huge block, freed by the thread of heap `h`:
 * into that heap's run cache if it fits, else a private heap's goes
 * on its heap's large-free list, the others back to the arena or the OS. */
void hm_large_free(struct hm_heap *h, hm_span *s, const void *p, const char *func);
/* Gives a freed block's memory back (a huge one to its arena's cache if
 * it fits). */
void hm_large_release(hm_span *s);
/* Unmaps a freed huge block. */
void hm_large_unmap(hm_span *s);
/* Releases a run a heap's cache held (the arena counted it out). */
void hm_large_release_cached(hm_span *s);
/* Gives a block's memory back, freed or not (a private heap's reset). */
void hm_large_drop(hm_span *s);
size_t hm_large_usable(const hm_span *s);
/* Resizes the block in place, or moves a huge one without copying; returns
 * the user pointer, or NULL if the block must be copied. */
void *hm_large_resize(hm_span *s, size_t size);

#endif
