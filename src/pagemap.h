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

#include "span.h"

#define HM_PAGEMAP_BITS 16
#define HM_PAGEMAP_LEAF_ENTRIES ((size_t)1 << HM_PAGEMAP_BITS)

/* Entries are offsets, so that "nothing" needs no test on the free fast
 * path: a top entry is its leaf's address minus that of `zero` (a leaf
 * never written: its pages are the zero page), a leaf entry the header's
 * address minus that of `none` (a span header that no heap owns and no
 * block starts in). All three sit in one object, so one base address
 * serves the whole lookup. */
typedef _Atomic uintptr_t hm_pagemap_leaf[HM_PAGEMAP_LEAF_ENTRIES];
struct hm_pagemap {
  _Atomic uintptr_t top[(size_t)1 << HM_PAGEMAP_BITS];
  hm_pagemap_leaf zero;
  hm_span none;
};
extern HM_HIDDEN struct hm_pagemap hm_pagemap;

#define hm_pagemap_top (hm_pagemap.top)

/* The entry for `a`, below 2^48: an offset from hm_pagemap.none (0: no
 * header). */
/* *(base + disp + 8 * index), as one instruction (GCC would compute the
 * address with two more). A plain load: the entries are written with
 * relaxed atomic stores, and x86-64 loads are acquire loads. */
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define hm_pagemap_load(base, index, disp)                                                   \
  ({                                                                                       \
    uintptr_t v_;                                                                          \
    __asm__("movq %c3(%1,%2,8), %0"                                                        \
            : "=r"(v_)                                                                     \
            : "r"(base), "r"((uintptr_t)(index)), "i"(disp), "m"(hm_pagemap));             \
    v_;                                                                                    \
  })
#else
#define hm_pagemap_load(base, index, disp)                                                   \
  atomic_load_explicit((_Atomic uintptr_t *)((base) + (disp) + 8 * (uintptr_t)(index)),    \
                       memory_order_acquire)
#endif

static inline uintptr_t hm_pagemap_entry(uintptr_t a)
{
  /* All relative to the one base: the leaf's offset from `zero` plus the
   * base is the leaf minus offsetof(zero). */
  uintptr_t base = (uintptr_t)&hm_pagemap;
  uintptr_t leaf = base + hm_pagemap_load(base, a >> (HM_GRANULE_SHIFT + HM_PAGEMAP_BITS), 0);
  return hm_pagemap_load(leaf, (uint32_t)a >> HM_GRANULE_SHIFT, offsetof(struct hm_pagemap, zero));
}

/* Whether `a` lies beyond the 48 bits the map covers. */
static inline bool hm_pagemap_beyond(uintptr_t a)
{
  return (a >> (HM_GRANULE_SHIFT + HM_PAGEMAP_BITS)) >= ((uintptr_t)1 << HM_PAGEMAP_BITS);
}

/* The header covering `p`, or NULL if hmalloc did not hand `p` out (NULL
 * and addresses beyond 48 bits included). */
static inline void *hm_pagemap_header(const void *p)
{
  uintptr_t a = (uintptr_t)p;
  if (hm_unlikely(hm_pagemap_beyond(a)))
    return NULL;
  /* Granule 0 is never handed out, so NULL finds no header. */
  uintptr_t e = hm_pagemap_entry(a);
  return e == 0 ? NULL : (void *)((uintptr_t)&hm_pagemap.none + e);
}

/* The same for the free fast path, with hm_pagemap.none for "no header"
 * (its owner is no heap and no block starts in it, so the caller's owner
 * test fails: no test for NULL). For an address below 2^48 only
 * (hm_pagemap_beyond): the caller must not see the span of the granule
 * that a higher address aliases, as its block test is exact only over the
 * span's own granules. */
static inline hm_span *hm_pagemap_header_fast(const void *p)
{
  uintptr_t a = (uintptr_t)p;
  uintptr_t base = (uintptr_t)&hm_pagemap;
  uintptr_t leaf = base + hm_pagemap_load(base, a >> (HM_GRANULE_SHIFT + HM_PAGEMAP_BITS), 0);
  uintptr_t e = hm_pagemap_load(leaf, (uint32_t)a >> HM_GRANULE_SHIFT, offsetof(struct hm_pagemap, zero));
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  hm_span *s; /* base + offsetof(none) + e, in one instruction */
  __asm__("leaq %c3(%1,%2), %0" : "=r"(s) : "r"(base), "r"(e), "i"(offsetof(struct hm_pagemap, none)));
  return s;
#else
  return (hm_span *)(base + offsetof(struct hm_pagemap, none) + e);
#endif
}

/* Points the `count` granules starting at `first` to `header`. False when a
 * leaf could not be mapped. */
bool hm_pagemap_set(const void *header, const void *first, size_t count);
void hm_pagemap_clear(const void *first, size_t count);

#endif
