/* The page map: for every 64 KiB granule of the address space, the header
 * of the span, large run or huge mapping that covers it, or NULL for memory
 * hmalloc did not hand out.
 *
 * Two levels, 16 address bits each, over the 48-bit user address space. A
 * leaf (512 KiB of virtual memory, of which only the pages for granules in
 * use are ever touched) is created on first use and never freed, so readers
 * need no reclamation. Entries hold the header itself rather than a distance
 * to it: free saves the arithmetic. */
#ifndef HM_PAGEMAP_H
#define HM_PAGEMAP_H

#include "internal.h"

#define HM_PAGEMAP_BITS 16
#define HM_PAGEMAP_LEAF_ENTRIES ((size_t)1 << HM_PAGEMAP_BITS)

typedef void *_Atomic hm_pagemap_leaf[HM_PAGEMAP_LEAF_ENTRIES];
extern HM_HIDDEN hm_pagemap_leaf *_Atomic hm_pagemap_top[(size_t)1 << HM_PAGEMAP_BITS];

/* The header covering `p`, or NULL if hmalloc did not hand `p` out (NULL
 * and addresses beyond 48 bits included). */
static inline void *hm_pagemap_header(const void *p)
{
  uintptr_t a = (uintptr_t)p;
  uintptr_t top = a >> (HM_GRANULE_SHIFT + HM_PAGEMAP_BITS);
  if (hm_unlikely(top >= ((size_t)1 << HM_PAGEMAP_BITS)))
    return NULL;
  hm_pagemap_leaf *leaf = atomic_load_explicit(&hm_pagemap_top[top], memory_order_acquire);
  if (hm_unlikely(leaf == NULL))
    return NULL;
  /* Granule 0 is never handed out, so NULL finds no header. */
  return atomic_load_explicit(&(*leaf)[(uint32_t)a >> HM_GRANULE_SHIFT], memory_order_relaxed);
}

/* The same without the range check, for the free fast path: an address
 * beyond 48 bits reads the entry of some other granule, whose span then
 * fails the caller's bounds check (hm_span_is_block). */
static inline void *hm_pagemap_header_fast(const void *p)
{
  uintptr_t a = (uintptr_t)p;
  hm_pagemap_leaf *leaf = atomic_load_explicit(
      &hm_pagemap_top[(uint16_t)(a >> (HM_GRANULE_SHIFT + HM_PAGEMAP_BITS))],
      memory_order_acquire);
  if (hm_unlikely(leaf == NULL))
    return NULL;
  return atomic_load_explicit(&(*leaf)[(uint32_t)a >> HM_GRANULE_SHIFT], memory_order_relaxed);
}

/* Points the `count` granules starting at `first` to `header`. False when a
 * leaf could not be mapped. */
bool hm_pagemap_set(const void *header, const void *first, size_t count);
void hm_pagemap_clear(const void *first, size_t count);

#endif
