/* The page map: for every 64 KiB granule of the address space, where the
 * header of the span, large run or huge mapping that covers it lies.
 *
 * Two levels, 16 address bits each, over the 48-bit user address space.
 * An entry is 0 for memory hmalloc did not hand out, else 1 + the distance
 * in granules back to the header. A leaf (256 KiB of virtual memory, touched
 * only where used) is created on first use and never freed, so readers need
 * no reclamation. */
#ifndef HM_PAGEMAP_H
#define HM_PAGEMAP_H

#include "internal.h"

#define HM_PAGEMAP_BITS 16
#define HM_PAGEMAP_LEAF_ENTRIES ((size_t)1 << HM_PAGEMAP_BITS)

typedef _Atomic uint32_t hm_pagemap_leaf[HM_PAGEMAP_LEAF_ENTRIES];
extern hm_pagemap_leaf *_Atomic hm_pagemap_top[(size_t)1 << HM_PAGEMAP_BITS];

/* The header covering `p`, or NULL if hmalloc did not hand `p` out. */
static inline void *hm_pagemap_header(const void *p)
{
  uintptr_t a = (uintptr_t)p;
  if (hm_unlikely(a >> (HM_GRANULE_SHIFT + 2 * HM_PAGEMAP_BITS)))
    return NULL;
  hm_pagemap_leaf *leaf = atomic_load_explicit(
      &hm_pagemap_top[a >> (HM_GRANULE_SHIFT + HM_PAGEMAP_BITS)], memory_order_acquire);
  if (hm_unlikely(leaf == NULL))
    return NULL;
  uint32_t e = atomic_load_explicit(
      &(*leaf)[(a >> HM_GRANULE_SHIFT) & (HM_PAGEMAP_LEAF_ENTRIES - 1)], memory_order_relaxed);
  if (hm_unlikely(e == 0))
    return NULL;
  return (void *)((a & ~(uintptr_t)(HM_GRANULE - 1)) - ((uintptr_t)(e - 1) << HM_GRANULE_SHIFT));
}

/* Points the `count` granules starting at `first` to `header`. False when a
 * leaf could not be mapped. */
bool hm_pagemap_set(const void *header, const void *first, size_t count);
void hm_pagemap_clear(const void *first, size_t count);

#endif
