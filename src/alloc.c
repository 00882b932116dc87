/* The hm_ API: argument checks, then the heap for small blocks and large.c
 * for the rest; private heaps' entry points. */
#include "alloc.h"

#include <errno.h>
#include <string.h>

#include "../include/hmalloc.h"
#include "gate.h"
#include "init.h"
#include "large.h"
#include "purge.h"

/* (Not inlined: its frame would cost the small slow path.) */
__attribute__((noinline)) static void *alloc_large(hm_heap *h, size_t size, size_t align,
                                                   uint64_t *old_key)
{
  /* The process must be set up before the first block of any kind, and the
   * gate is the thread's. */
  hm_heap *mine = hm_heap_thread();
  if (h == mine && h->kind == HM_HEAP_THREAD) {
    hm_run_cache_age(&h->runs);
    void *p = align <= HM_HEADER_SIZE ? hm_large_alloc_cached(h, size) : NULL;
    if (p != NULL) {
      *old_key = 0; /* a reused run holds what its last user wrote */
      return p;
    }
  }
  hm_gate_enter();
  void *p = hm_large_alloc(size, align, old_key);
  if (p != NULL && hm_heap_is_private(h) && !hm_heap_large_add(h, hm_pagemap_header(p))) {
    hm_large_free(mine, hm_pagemap_header(p), p, "hm_heap_malloc"); /* past the heap's limit */
    errno = ENOMEM;
    p = NULL;
  }
  hm_gate_exit();
  hm_purge_tick();
  return p != NULL ? p : hm_alloc_failed(h, size, align, old_key);
}

static void *alloc_any(hm_heap *h, size_t size, size_t align, uint64_t *old_key)
{
  if (size <= HM_SMALL_MAX && align <= HM_MIN_ALIGN)
    return hm_heap_alloc_slow(h, size, old_key);
  return alloc_large(h, size, align, old_key);
}

/* Whether hmalloc may give memory back from this call: not from a call
 * nested in a slow path of the thread (its heap is half-way through a
 * change), nor while the thread builds its heap. */
static bool may_give_back(void)
{
  hm_heap *h = hm_tls;
  return h->kind == HM_HEAP_THREAD ? atomic_load_explicit(&h->gate, memory_order_relaxed) == 0
                                   : h->kind != HM_HEAP_STARTING;
}

/* An allocation that found no memory. If the OS refused some (address
 * space or mappings exhausted) since hmalloc last gave back, it gives back
 * all it keeps idle (empty spans and regions, cached runs and mappings:
 * that waits for a grace period, only on this failure path) and tries
 * once more. Called at the failure sites, so that the paths that succeed
 * pay nothing for it. Every NULL says ENOMEM, whatever ran after the
 * failure. */
void *hm_alloc_failed(hm_heap *h, size_t size, size_t align, uint64_t *old_key)
{
  static _Atomic uint32_t given_back_at; /* hm_os_refusals() then */
  static __thread bool retrying;
  void *p = NULL;
  uint32_t refusals = hm_os_refusals();
  if (!retrying && refusals != atomic_load_explicit(&given_back_at, memory_order_relaxed) &&
      may_give_back()) {
    atomic_store_explicit(&given_back_at, refusals, memory_order_relaxed);
    retrying = true;
    hm_purge_trim();
    p = alloc_any(h, size, align, old_key);
    retrying = false;
  }
  if (p == NULL)
    errno = ENOMEM;
  return p;
}

void *hm_alloc_slow(hm_heap *h, size_t size, uint64_t *old_key)
{
  return alloc_any(h, size, HM_MIN_ALIGN, old_key);
}

__attribute__((noinline)) void *hm_malloc_slow(size_t size)
{
  uint64_t old_key;
  return hm_alloc_block(hm_tls, size, &old_key);
}

static void *alloc_in(hm_heap *h, size_t size)
{
  uint64_t old_key;
  return hm_alloc_block(h, size, &old_key);
}

/* Aborts unless hmalloc handed `p` out from small span `s`: a block start
 * (small blocks, aligned ones included, are only ever handed out at their
 * start: size_class.h). */
static void check_small_block(hm_span *s, const void *p, const char *func)
{
  const uint8_t *q = p;
  size_t off = (size_t)(q - s->blocks);
  if (q < s->blocks || off >= atomic_load_explicit(&s->carved, memory_order_relaxed) ||
      off * s->divisor >= s->divisor)
    hm_fatal(func, "invalid pointer", p);
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
  hm_heap *h = hm_heap_thread(); /* once per thread that only frees */
  hm_span *s = header_of(p, func);
  if (s->kind != HM_KIND_SMALL) {
    hm_large_free(h, s, p, func);
    hm_purge_tick();
    return;
  }
  check_small_block(s, p, func);
  hm_heap_free_block(h, s, p, func);
}

static size_t usable_of(hm_span *s, const void *p, const char *func)
{
  if (s->kind != HM_KIND_SMALL) {
    if (p != s->blocks)
      hm_fatal(func, "invalid pointer", p);
    return hm_large_usable(s);
  }
  check_small_block(s, p, func);
  return s->block_size;
}

/* usable_of for realloc, which also aborts on a block that is free, as
 * free would: keeping, resizing or copying a freed block would hand out
 * memory that a live block may be using. */
static size_t live_usable_of(hm_span *s, const void *p, const char *func)
{
  if (s->kind == HM_KIND_SMALL) {
    size_t usable = usable_of(s, p, func);
    hm_heap_check_live(hm_heap_thread(), s, p, func);
    return usable;
  }
  /* A purged header of a freed run reads as zeros (hm_large_free). */
  if (s->kind != HM_KIND_LARGE && s->kind != HM_KIND_HUGE)
    hm_fatal(func, "double free", p);
  size_t usable = usable_of(s, p, func);
  if (atomic_load_explicit(&s->state, memory_order_relaxed) != HM_SPAN_LIVE)
    hm_fatal(func, "double free", p);
  return usable;
}

static void *alloc_aligned(hm_heap *h, size_t align, size_t size)
{
  if (align <= HM_MIN_ALIGN)
    return alloc_in(h, size);
  if (size > PTRDIFF_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  /* Size 0 is a block of its own too (past an alignment of a granule or
   * more, 0 bytes would start where the run ends). */
  if (size == 0)
    size = 1;
  size_t rounded = hm_align_up(size, align);
  if (align <= HM_CLASS_ALIGN_MAX && rounded <= HM_SMALL_MAX)
    return alloc_in(h, rounded);
  uint64_t old_key;
  return alloc_any(h, size, align, &old_key);
}

void *hm_malloc(size_t size)
{
  return hm_alloc_inline(size);
}

void hm_free(void *p)
{
  hm_free_inline(p);
}

static void *calloc_in(hm_heap *h, size_t count, size_t size)
{
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  uint64_t old_key;
  hm_block *p = hm_alloc_block(h, total, &old_key);
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

void *hm_calloc(size_t count, size_t size)
{
  return calloc_in(hm_tls, count, size);
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
  size_t usable = live_usable_of(s, p, "realloc");
  if (s->kind == HM_KIND_SMALL) {
    /* Keep the block unless that would waste more than half of it. */
    if (size <= usable && (size >= usable / 2 || usable <= 32))
      return p;
  } else if (size > HM_SMALL_MAX && hm_span_owner(s) == NULL) {
    /* (A private heap's large block is on its heap's list, which only the
     * heap's thread may change: it moves.) */
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

__attribute__((noinline)) static void free_checked(void *p, size_t size, const char *func)
{
  if (p == NULL)
    return;
  hm_span *s = hm_pagemap_header(p);
  if (s == NULL && hm_os_foreign_free(p))
    return;
  s = header_of(p, func);
  if (size > usable_of(s, p, func))
    hm_fatal(func, "size larger than the block", p);
  hm_free_slow(p, func);
}

/* free_sized: free's fast paths with one more test, the size against the
 * block's; anything else gets every check of free_checked. */
void hm_free_sized_slow(void *p, size_t size)
{
  free_checked(p, size, "free_sized");
}

void hm_free_sized(void *p, size_t size)
{
  hm_free_sized_inline(p, size);
}

void hm_free_aligned_sized(void *p, size_t alignment, size_t size)
{
  if (!hm_is_pow2(alignment) || ((uintptr_t)p & (alignment - 1)) != 0)
    hm_fatal("free_aligned_sized", "pointer not aligned as stated", p);
  free_checked(p, size, "free_aligned_sized");
}

void *hm_aligned_alloc_slow(size_t alignment, size_t size)
{
  if (!hm_is_pow2(alignment)) {
    errno = EINVAL;
    return NULL;
  }
  return alloc_aligned(hm_tls, alignment, size);
}

void *hm_aligned_alloc(size_t alignment, size_t size)
{
  return hm_aligned_inline(alignment, size);
}

int hm_posix_memalign(void **out, size_t alignment, size_t size)
{
  if (!hm_is_pow2(alignment) || alignment % sizeof(void *) != 0)
    return EINVAL;
  void *p = hm_aligned_inline(alignment, size);
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
  return hm_aligned_inline(alignment, size);
}

void *hm_valloc(size_t size)
{
  return alloc_aligned(hm_tls, hm_os_page_size(), size);
}

void *hm_pvalloc(size_t size)
{
  size_t page = hm_os_page_size();
  if (size > SIZE_MAX - page) {
    errno = ENOMEM;
    return NULL;
  }
  return alloc_aligned(hm_tls, page, hm_align_up(size ? size : 1, page));
}

size_t hm_usable_size(const void *p)
{
  if (p == NULL)
    return 0;
  return usable_of(header_of(p, "malloc_usable_size"), p, "malloc_usable_size");
}

int hm_trim(void)
{
  hm_heap_thread();
  return hm_purge_trim();
}

/* ---- Private heaps ------------------------------------------------------ */

static uintptr_t heap_magic(const hm_heap *h)
{
  return (uintptr_t)h ^ hm_free_key ^ 0x6865617068656170u;
}

/* NULL for NULL (the caller's EINVAL); aborts for anything but a live
 * private heap. */
static hm_heap *heap_checked(hm_heap *h, const char *func)
{
  if (h != NULL && (h->kind != HM_HEAP_PRIVATE || h->magic != heap_magic(h)))
    hm_fatal(func, "invalid heap", h);
  return h;
}

static hm_heap *heap_for_alloc(hm_heap *h, const char *func)
{
  if (heap_checked(h, func) == NULL)
    errno = EINVAL;
  return h;
}

hm_heap *hm_heap_create(const hm_heap_options *opt)
{
  hm_heap_thread();
  hm_heap_options o = HM_HEAP_OPTIONS_INIT;
  if (opt != NULL)
    o = *opt;
  if (o.node < -1 || o.node >= (int)hm_arena_count()) {
    errno = EINVAL;
    return NULL;
  }
  hm_heap *h = hm_heap_private_new(o.node, o.limit);
  if (h == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  h->magic = heap_magic(h);
  return h;
}

void hm_heap_destroy(hm_heap *heap)
{
  if (heap_checked(heap, "hm_heap_destroy") == NULL)
    return;
  hm_heap_thread(); /* the heap may have moved to a thread that has none */
  heap->magic = 0;
  hm_heap_private_free(heap);
}

void hm_heap_reset(hm_heap *heap)
{
  if (heap_checked(heap, "hm_heap_reset") == NULL)
    return;
  hm_heap_thread();
  hm_heap_release_all(heap);
}

void *hm_heap_malloc(hm_heap *heap, size_t size)
{
  if (heap_for_alloc(heap, "hm_heap_malloc") == NULL)
    return NULL;
  return alloc_in(heap, size);
}

void *hm_heap_calloc(hm_heap *heap, size_t count, size_t size)
{
  if (heap_for_alloc(heap, "hm_heap_calloc") == NULL)
    return NULL;
  return calloc_in(heap, count, size);
}

void *hm_heap_aligned_alloc(hm_heap *heap, size_t alignment, size_t size)
{
  if (heap_for_alloc(heap, "hm_heap_aligned_alloc") == NULL)
    return NULL;
  if (!hm_is_pow2(alignment)) {
    errno = EINVAL;
    return NULL;
  }
  return alloc_aligned(heap, alignment, size);
}

void *hm_heap_realloc(hm_heap *heap, void *p, size_t size)
{
  if (heap_for_alloc(heap, "hm_heap_realloc") == NULL)
    return NULL;
  if (p == NULL)
    return alloc_in(heap, size);
  if (size == 0) {
    hm_free_slow(p, "hm_heap_realloc");
    return NULL;
  }
  hm_span *s = header_of(p, "hm_heap_realloc");
  size_t usable = live_usable_of(s, p, "hm_heap_realloc");
  /* Keep a block of the heap unless that would waste more than half of it. */
  if (hm_span_owner(s) == heap && size <= usable && (size >= usable / 2 || usable <= 32))
    return p;
  void *q = alloc_in(heap, size);
  if (q == NULL)
    return NULL;
  memcpy(q, p, usable < size ? usable : size);
  hm_free_slow(p, "hm_heap_realloc");
  return q;
}

int hm_heap_visit(hm_heap *heap, int (*fn)(void *block, size_t size, void *arg), void *arg)
{
  if (heap_checked(heap, "hm_heap_visit") == NULL || fn == NULL)
    return 0;
  return hm_heap_walk(heap, fn, arg);
}

void hm_heap_stats_get(hm_heap *heap, struct hm_heap_stats *out)
{
  *out = (struct hm_heap_stats){0};
  if (heap_checked(heap, "hm_heap_stats_get") == NULL)
    return;
  hm_heap_stats_of(heap, &out->blocks_in_use, &out->bytes_in_use);
  out->bytes_held = heap->held;
}
