/* The hm_ API: argument checks, then the thread cache for small blocks and
 * large.c for the rest. */
#include "alloc.h"

#include <errno.h>
#include <string.h>

#include "../include/hmalloc.h"
#include "init.h"
#include "large.h"
#include "purge.h"

/* Large blocks bypass the thread cache, but the process must be set up
 * (configuration, fork handlers) before the first block of any kind. A
 * thread that is building its cache has done it already. */
static void ensure_process_init(void)
{
  if (hm_tls->kind == HM_TCACHE_EMPTY)
    hm_tcache_process_init();
}

static void *alloc_large(size_t size, size_t align, uint64_t *old_key)
{
  ensure_process_init();
  void *p = hm_large_alloc(size, align, old_key);
  hm_purge_tick();
  return p;
}

void *hm_alloc_slow(size_t size, uint64_t *old_key)
{
  if (size <= HM_SMALL_MAX)
    return hm_tcache_alloc_slow(hm_tls, size, old_key);
  return alloc_large(size, HM_MIN_ALIGN, old_key);
}

/* The block that `p` lies in, aborting unless hmalloc handed `p` out: the
 * start of a block, or an over-aligned pointer inside one. An over-aligned
 * pointer lies less than its own alignment past the block start, in a span
 * that has served one: that rejects most stray interior pointers there too. */
static hm_block *small_block_of(hm_span *s, const void *p, const char *func)
{
  const uint8_t *q = p;
  size_t off = (size_t)(q - s->blocks);
  if (q < s->blocks || off >= atomic_load_explicit(&s->carved, memory_order_relaxed))
    hm_fatal(func, "invalid pointer", p);
  /* The common case, a block start, needs no division. */
  size_t rem = off * s->divisor < s->divisor ? 0 : off % s->block_size;
  size_t alignment = (uintptr_t)q & -(uintptr_t)q;
  if (rem != 0 && !(atomic_load_explicit(&s->aligned, memory_order_relaxed) && rem < alignment))
    hm_fatal(func, "invalid pointer", p);
  return (hm_block *)(q - rem);
}

static hm_span *header_of(const void *p, const char *func)
{
  hm_span *s = hm_pagemap_header(p);
  if (s == NULL)
    hm_fatal(func, "invalid pointer", p);
  return s;
}

void hm_free_slow(void *p, const char *func)
{
  if (p == NULL)
    return;
  hm_span *s = header_of(p, func);
  if (s->kind != HM_KIND_SMALL) {
    hm_large_free(s, p, func);
    hm_purge_tick();
    return;
  }
  hm_tcache_free_block(hm_tls, s, small_block_of(s, p, func), p, func);
}

static size_t usable_of(hm_span *s, const void *p, const char *func)
{
  if (s->kind != HM_KIND_SMALL) {
    if (p != s->blocks)
      hm_fatal(func, "invalid pointer", p);
    return hm_large_usable(s);
  }
  const hm_block *b = small_block_of(s, p, func);
  return s->block_size - (size_t)((const uint8_t *)p - (const uint8_t *)b);
}

static void *alloc_aligned(size_t align, size_t size)
{
  if (align <= HM_MIN_ALIGN)
    return hm_alloc_inline(size);
  if (size > PTRDIFF_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  if (size < HM_MIN_ALIGN)
    size = HM_MIN_ALIGN;
  /* Blocks start 128 bytes into their span, and for a size rounded up to an
   * alignment of at most 128 the class is a multiple of that alignment: every
   * block of the class is aligned already. */
  if (align <= HM_HEADER_SIZE && hm_align_up(size, align) <= HM_SMALL_MAX)
    return hm_alloc_inline(hm_align_up(size, align));
  if (align <= 4096 && size + align <= HM_SMALL_MAX) {
    uint8_t *b = hm_alloc_inline(size + align - HM_MIN_ALIGN);
    if (b == NULL)
      return NULL;
    hm_block *p = (hm_block *)hm_align_up((uintptr_t)b, align);
    if ((uint8_t *)p != b) {
      hm_span *s = hm_pagemap_header(p);
      atomic_store_explicit(&s->aligned, 1, memory_order_relaxed);
      p->key = 0; /* stale bytes there must not look like a freed block */
    }
    return p;
  }
  uint64_t old_key;
  return alloc_large(size, align, &old_key);
}

void *hm_malloc(size_t size)
{
  return hm_alloc_inline(size);
}

void hm_free(void *p)
{
  hm_free_inline(p);
}

void *hm_calloc(size_t count, size_t size)
{
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  uint64_t old_key;
  hm_block *p = hm_alloc_block(total, &old_key);
  if (p == NULL)
    return NULL;
  /* A block carved from memory that read as zeros holds only its free-list
   * words; a large run of such memory or a new mapping, nothing. */
  if (old_key != hm_zero_key)
    memset(p, 0, total);
  else if (total <= HM_SMALL_MAX)
    p->next = NULL;
  return p;
}

void *hm_realloc(void *p, size_t size)
{
  if (p == NULL)
    return hm_alloc_inline(size);
  if (size == 0) { /* glibc's behaviour: free, and return NULL */
    hm_free_slow(p, "realloc");
    return NULL;
  }
  hm_span *s = header_of(p, "realloc");
  size_t usable = usable_of(s, p, "realloc");
  if (s->kind == HM_KIND_SMALL) {
    /* Keep the block unless that would waste more than half of it. */
    if (size <= usable && (size >= usable / 2 || usable <= 32))
      return p;
  } else if (size > HM_SMALL_MAX) {
    void *q = hm_large_resize(s, size);
    if (q != NULL)
      return q;
  }
  void *q = hm_alloc_inline(size);
  if (q == NULL)
    return NULL;
  memcpy(q, p, usable < size ? usable : size);
  hm_free_slow(p, "realloc");
  return q;
}

void *hm_reallocarray(void *p, size_t count, size_t size)
{
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return hm_realloc(p, total);
}

static void free_checked(void *p, size_t size, const char *func)
{
  if (p == NULL)
    return;
  hm_span *s = header_of(p, func);
  if (size > usable_of(s, p, func))
    hm_fatal(func, "size larger than the block", p);
  hm_free_slow(p, func);
}

void hm_free_sized(void *p, size_t size)
{
  free_checked(p, size, "free_sized");
}

void hm_free_aligned_sized(void *p, size_t alignment, size_t size)
{
  if (!hm_is_pow2(alignment) || ((uintptr_t)p & (alignment - 1)) != 0)
    hm_fatal("free_aligned_sized", "pointer not aligned as stated", p);
  free_checked(p, size, "free_aligned_sized");
}

void *hm_aligned_alloc(size_t alignment, size_t size)
{
  if (!hm_is_pow2(alignment)) {
    errno = EINVAL;
    return NULL;
  }
  return alloc_aligned(alignment, size);
}

int hm_posix_memalign(void **out, size_t alignment, size_t size)
{
  if (!hm_is_pow2(alignment) || alignment % sizeof(void *) != 0)
    return EINVAL;
  void *p = alloc_aligned(alignment, size);
  if (p == NULL)
    return ENOMEM;
  *out = p;
  return 0;
}

/* glibc's memalign: a non-power-of-two alignment is rounded up. */
void *hm_memalign(size_t alignment, size_t size)
{
  if (alignment > ((size_t)1 << (sizeof(size_t) * 8 - 1))) {
    errno = EINVAL;
    return NULL;
  }
  if (!hm_is_pow2(alignment))
    alignment = alignment < 2 ? 1 : (size_t)1 << (64 - __builtin_clzl(alignment - 1));
  return alloc_aligned(alignment, size);
}

void *hm_valloc(size_t size)
{
  return alloc_aligned(hm_os_page_size(), size);
}

void *hm_pvalloc(size_t size)
{
  size_t page = hm_os_page_size();
  if (size > SIZE_MAX - page) {
    errno = ENOMEM;
    return NULL;
  }
  return alloc_aligned(page, hm_align_up(size ? size : 1, page));
}

size_t hm_usable_size(const void *p)
{
  if (p == NULL)
    return 0;
  return usable_of(header_of(p, "malloc_usable_size"), p, "malloc_usable_size");
}

int hm_trim(void)
{
  ensure_process_init();
  return hm_purge_trim();
}
