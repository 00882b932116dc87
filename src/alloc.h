/* The fast paths of malloc and free, inlined into both the hm_ API and the
 * standard names. DESIGN.md invariant 3: no atomic read-modify-write, no
 * lock, no system call here. */
#ifndef HM_ALLOC_H
#define HM_ALLOC_H

#include "heap.h"
#include "pagemap.h"

void *hm_alloc_slow(hm_heap *h, size_t size, uint64_t *old_key);
/* malloc when its fast path found no block: a tail call, so the fast path
 * needs no stack frame. */
void *hm_malloc_slow(size_t size);
/* The glibc extensions, for the override layer. */
void *hm_memalign(size_t alignment, size_t size);
void *hm_valloc(size_t size);
void *hm_pvalloc(size_t size);
void *hm_aligned_alloc_slow(size_t alignment, size_t size);
void hm_free_slow(void *p, const char *func);
void hm_free_sized_slow(void *p, size_t size);

/* Code generation helpers for the fast paths. GCC computes an address used
 * twice into a register (one more instruction) and keeps a value used
 * twice in one; on x86-64 these take memory operands instead. */
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define hm_load_scaled2(base, at) hm_load_scaled2_((char *)(base), at)
#define hm_store_scaled2(base, at, b) hm_store_scaled2_((char *)(base), at, b)
/* base is h->hot: the heap pointer plus a constant, folded into the
 * instruction's displacement. */
static inline hm_block *hm_load_scaled2_(char *base, size_t at)
{
  hm_block *b;
  /* (In rax: malloc returns it.) */
  __asm__("movq %c3(%1,%2,2), %0"
          : "=a"(b)
          : "r"(base - offsetof(hm_heap, hot)), "r"(at), "i"(offsetof(hm_heap, hot)), "m"(*base));
  return b;
}
static inline void hm_store_scaled2_(char *base, size_t at, hm_block *b)
{
  __asm__("movq %2, %c3(%0,%1,2)"
          :
          : "r"(base - offsetof(hm_heap, hot)), "r"(at), "r"(b), "i"(offsetof(hm_heap, hot))
          : "memory");
}
static inline uint64_t hm_mul_mem(uint64_t x, const uint64_t *m)
{
  __asm__("imulq %1, %0" : "+r"(x) : "m"(*m));
  return x;
}
#else
static inline hm_block *hm_load_scaled2(hm_bin_hot *base, size_t at)
{
  return *(hm_block **)((char *)base + 2 * at);
}
static inline void hm_store_scaled2(hm_bin_hot *base, size_t at, hm_block *b)
{
  *(hm_block **)((char *)base + 2 * at) = b;
}
static inline uint64_t hm_mul_mem(uint64_t x, const uint64_t *m)
{
  return x * *m;
}
#endif

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
      bin->free = b->next;
      if (hm_heap_is_private(h))
        hm_heap_count_pop(h, bin);
      *old_key = b->key;
      b->key = 0;
      return b;
    }
  }
  return hm_alloc_slow(h, size, old_key);
}

/* A block of the class of (step + 1) bytes, step < HM_DIRECT_MAX, from the
 * thread's allocation list; NULL if the list is empty. */
static inline hm_block *hm_pop_direct(size_t step)
{
  hm_heap *h = hm_tls;
  /* hot[step >> 4] is 2 * (step & ~15) bytes into hot[]. */
  size_t at = step & ~(size_t)15;
  hm_block *b = hm_load_scaled2(h->hot, at);
  if (hm_likely(b != NULL)) {
    hm_store_scaled2(h->hot, at, b->next);
    b->key = 0;
  }
  return b;
}

/* malloc: the classes of 16-byte steps only; the rest, and an empty list,
 * in hm_malloc_slow. */
static inline void *hm_alloc_inline(size_t size)
{
  size_t step = size - 1;
  if (hm_likely(step < HM_DIRECT_MAX)) {
    hm_block *b = hm_pop_direct(step);
    if (hm_likely(b != NULL))
      return b;
  }
  return hm_malloc_slow(size);
}

/* aligned_alloc: a power-of-two alignment up to HM_CLASS_ALIGN_MAX, with
 * the size rounded up to a multiple of it, names a class whose blocks all
 * have that alignment (size_class.h), so malloc's paths serve it. For a
 * power of two, (size - 1) | mask is the rounded size - 1 (size 0 and sizes
 * that overflow give more than any class); a larger alignment never rounds
 * into the 16-byte-step classes. */
static inline void *hm_aligned_inline(size_t alignment, size_t size)
{
  size_t mask = alignment - 1;
  size_t step = (size - 1) | mask;
  if (hm_likely((alignment & mask) == 0)) {
    if (hm_likely(step < HM_DIRECT_MAX)) {
      hm_block *b = hm_pop_direct(step);
      if (hm_likely(b != NULL))
        return b;
    }
    if (hm_likely(step < HM_SMALL_MAX && mask < HM_CLASS_ALIGN_MAX))
      return hm_malloc_slow(step + 1);
  }
  return hm_aligned_alloc_slow(alignment, size);
}

/* A block of the active span of the thread's current class (hm_tls_cur)
 * goes back on that class's allocation list: no page map, no counting (its
 * `used` counts the list's blocks). Else a block of a span this thread's
 * heap owns (and has not parked), freed exactly at its start and not
 * marked free already, goes on the span's local list; anything else (NULL,
 * remote, large, parked, invalid, double) is sorted out by
 * the slow path. */
static inline void hm_free_fast(void *p, size_t size, bool sized)
{
  hm_bin_hot *cur = hm_tls_cur;
  hm_block *b = p;
  uint64_t off = (uint64_t)((uintptr_t)p - (uintptr_t)cur->blocks);
  if (hm_likely(off < cur->len)) {
    /* Lemire's divisibility test, exact below 2^32 (span.h); for
     * free_sized, size - 1 < block size exactly when (size - 1) * divisor
     * stays below 2^64 (size 0 fails it, and takes the slow path). */
    if (hm_likely(hm_mul_mem(off, &cur->divisor) < cur->divisor &&
                  (!sized || (uint64_t)(((unsigned __int128)(size - 1) * cur->divisor) >> 64) == 0) &&
                  b->key != hm_free_key)) {
      b->next = cur->free;
      b->key = hm_free_key;
      cur->free = b;
      return;
    }
  } else if (hm_likely(!hm_pagemap_beyond((uintptr_t)p))) {
    hm_span *s = hm_pagemap_header_fast(p);
    hm_heap *h = hm_tls;
    if (hm_likely(hm_span_owned_by(s, h) && hm_span_is_block(s, p) &&
                  (!sized || size <= s->block_size) && b->key != hm_free_key)) {
      b->next = s->local_free;
      b->key = hm_free_key;
      s->local_free = b; /* counted when the owner next looks (span_sync) */
      if (hm_unlikely(hm_span_dec_used(s) == 0))
        hm_heap_span_unused(h, s);
      return;
    }
  }
  if (sized)
    hm_free_sized_slow(p, size);
  else
    hm_free_slow(p, "free");
}

static inline void hm_free_inline(void *p)
{
  hm_free_fast(p, 0, false);
}

/* free_sized: the size names the class, whose active span is tested first
 * (any class's, where free knows only the current class's); a block there
 * is no bigger than the class size. Else free's page-map path with the size
 * compared to the block's; anything else gets every check of free_checked. */
static inline void hm_free_sized_inline(void *p, size_t size)
{
  hm_heap *h = hm_tls;
  hm_block *b = p;
  size_t step = size - 1;
  if (hm_likely(step < HM_DIRECT_MAX)) {
    hm_bin_hot *bin = (hm_bin_hot *)((char *)h->hot + ((step & ~(size_t)15) << 1));
    uint64_t off = (uint64_t)((uintptr_t)p - (uintptr_t)bin->blocks);
    if (hm_likely(off < bin->len)) {
      if (hm_likely(hm_mul_mem(off, &bin->divisor) < bin->divisor && b->key != hm_free_key)) {
        b->next = bin->free;
        b->key = hm_free_key;
        bin->free = b;
        return;
      }
      hm_free_sized_slow(p, size);
      return;
    }
  }
  hm_free_fast(p, size, true);
}

#endif
