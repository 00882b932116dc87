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
/* Checks and frees a large or huge block; a private heap's goes on its
 * heap's large-free list, the others back to the arena or the OS. */
void hm_large_free(hm_span *s, const void *p, const char *func);
/* Gives a freed block's memory back. */
void hm_large_release(hm_span *s);
/* Gives a block's memory back, freed or not (a private heap's reset). */
void hm_large_drop(hm_span *s);
size_t hm_large_usable(const hm_span *s);
/* Resizes the block in place, or moves a huge one without copying; returns
 * the user pointer, or NULL if the block must be copied. */
void *hm_large_resize(hm_span *s, size_t size);

#endif
