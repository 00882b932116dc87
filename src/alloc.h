/* The fast paths of malloc and free, inlined into both the hm_ API and the
 * standard names. DESIGN.md invariant 3: no atomic read-modify-write, no
 * lock, no system call here. */
#ifndef HM_ALLOC_H
#define HM_ALLOC_H

#include "heap.h"
#include "pagemap.h"

void *hm_alloc_slow(hm_heap *h, size_t size, uint64_t *old_key);
/* The glibc extensions, for the override layer. */
void *hm_memalign(size_t alignment, size_t size);
void *hm_valloc(size_t size);
void *hm_pvalloc(size_t size);
void hm_free_slow(void *p, const char *func);

/* A block from heap `h`; *old_key receives what the block's key word held:
 * hm_zero_key if the block was never handed out and reads as zeros. */
static inline void *hm_alloc_block(hm_heap *h, size_t size, uint64_t *old_key)
{
  hm_bin_hot *bin = NULL;
  /* Classes 0-15 step by 16 bytes up to 256: their class needs no table
   * (size 0 wraps past the bound and takes the table). */
  if (hm_likely(size - 1 < HM_DIRECT_MAX))
    bin = &h->hot[(size - 1) >> 4];
  else if (size <= HM_LUT_MAX)
    bin = &h->hot[hm_class_lut[(size + 15) >> 4]];
  if (hm_likely(bin != NULL)) {
    hm_block *b = bin->free;
    if (hm_likely(b != NULL)) {
      hm_count(&bin->mallocs);
      bin->free = b->next;
      *old_key = b->key;
      b->key = 0;
      return b;
    }
  }
  return hm_alloc_slow(h, size, old_key);
}

static inline void *hm_alloc_inline(size_t size)
{
  uint64_t old_key;
  return hm_alloc_block(hm_tls, size, &old_key);
}

/* A block of a span this thread's heap owns (and has not parked), freed
 * exactly at its start and not marked free already, goes on the span's
 * local list; anything else (NULL, remote, large, parked, over-aligned,
 * invalid, double) is sorted out by the slow path. */
static inline void hm_free_inline(void *p)
{
  hm_span *s = hm_pagemap_header_fast(p);
  hm_heap *h = hm_tls;
  hm_block *b = p;
  if (hm_likely(s != NULL && hm_span_owned_by(s, h) && hm_span_is_block(s, p) &&
                b->key != hm_free_key)) {
    b->next = s->local_free;
    b->key = hm_free_key;
    s->local_free = b;
    hm_count(&h->frees[s->cls]);
    if (hm_unlikely(hm_span_dec_used(s) == 0))
      hm_heap_span_unused(h, s);
    return;
  }
  hm_free_slow(p, "free");
}

#endif
