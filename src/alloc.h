/* The fast paths of malloc and free, inlined into both the hm_ API and the
 * standard names. DESIGN.md invariant 3: no atomic read-modify-write, no
 * lock, no system call here. */
#ifndef HM_ALLOC_H
#define HM_ALLOC_H

#include "pagemap.h"
#include "tcache.h"

void *hm_alloc_slow(size_t size, uint64_t *old_key);
/* The glibc extensions, for the override layer. */
void *hm_memalign(size_t alignment, size_t size);
void *hm_valloc(size_t size);
void *hm_pvalloc(size_t size);
void hm_free_slow(void *p, const char *func);

/* *old_key receives what the block's key word held: hm_zero_key if the
 * block was never handed out and reads as zeros. */
static inline void *hm_alloc_block(size_t size, uint64_t *old_key)
{
  hm_tcache *tc = hm_tls;
  if (hm_likely(size <= HM_LUT_MAX)) {
    size_t cls = hm_class_lut[(size + 15) >> 4];
    hm_bin *bin = &tc->bins[cls];
    hm_block *b = bin->free;
    if (hm_likely(b != NULL)) {
      hm_count(&bin->mallocs);
      bin->free = b->next;
      *old_key = b->key;
      b->key = 0;
      return b;
    }
  }
  return hm_alloc_slow(size, old_key);
}

static inline void *hm_alloc_inline(size_t size)
{
  uint64_t old_key;
  return hm_alloc_block(size, &old_key);
}

/* A block of a span this thread owns, freed exactly at its start and not
 * marked free already, goes on the bin's list; anything else (NULL, remote,
 * large, over-aligned, invalid, double) is sorted out by the slow path. */
static inline void hm_free_inline(void *p)
{
  hm_span *s = hm_pagemap_header(p);
  hm_tcache *tc = hm_tls;
  hm_block *b = p;
  if (hm_likely(s != NULL && atomic_load_explicit(&s->owner, memory_order_relaxed) == tc &&
                hm_span_is_block(s, p) && b->key != hm_free_key)) {
    hm_bin *bin = (hm_bin *)((uint8_t *)tc + s->bin);
    b->next = bin->free;
    b->key = hm_free_key;
    bin->free = b;
    hm_count(&bin->frees);
    return;
  }
  hm_free_slow(p, "free");
}

#endif
