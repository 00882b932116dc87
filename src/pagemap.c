#include "pagemap.h"

struct hm_pagemap hm_pagemap;

static hm_pagemap_leaf *leaf_at(uintptr_t offset)
{
  return (hm_pagemap_leaf *)((uintptr_t)hm_pagemap.zero + offset);
}

static hm_pagemap_leaf *leaf_of(uintptr_t a, bool create)
{
  _Atomic uintptr_t *slot = &hm_pagemap.top[a >> (HM_GRANULE_SHIFT + HM_PAGEMAP_BITS)];
  uintptr_t leaf = atomic_load_explicit(slot, memory_order_acquire);
  if (leaf != 0 || !create)
    return leaf != 0 ? leaf_at(leaf) : NULL;
  hm_pagemap_leaf *fresh = hm_os_reserve(sizeof(hm_pagemap_leaf), HM_GRANULE, true);
  if (fresh == NULL)
    return NULL;
  uintptr_t offset = (uintptr_t)fresh - (uintptr_t)hm_pagemap.zero;
  if (atomic_compare_exchange_strong_explicit(slot, &leaf, offset, memory_order_acq_rel,
                                              memory_order_acquire))
    return fresh;
  hm_os_release(fresh, sizeof(hm_pagemap_leaf)); /* another thread won */
  return leaf_at(leaf);
}

/* Clearing (header NULL) creates no leaf: a missing leaf reads as NULL. */
static bool set_range(const void *header, const void *first, size_t count)
{
  uintptr_t g = (uintptr_t)first >> HM_GRANULE_SHIFT;
  for (size_t i = 0; i < count; i++, g++) {
    uintptr_t a = g << HM_GRANULE_SHIFT;
    if (a >> (HM_GRANULE_SHIFT + 2 * HM_PAGEMAP_BITS))
      return false;
    hm_pagemap_leaf *leaf = leaf_of(a, header != NULL);
    if (leaf == NULL)
      return header == NULL;
    uintptr_t entry = header != NULL ? (uintptr_t)header - (uintptr_t)&hm_pagemap.none : 0;
    atomic_store_explicit(&(*leaf)[g & (HM_PAGEMAP_LEAF_ENTRIES - 1)], entry, memory_order_relaxed);
  }
  return true;
}

bool hm_pagemap_set(const void *header, const void *first, size_t count)
{
  return set_range(header, first, count);
}

void hm_pagemap_clear(const void *first, size_t count)
{
  set_range(NULL, first, count);
}
