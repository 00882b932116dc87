/* The standard and glibc names, for LD_PRELOAD and static linking. malloc
 * free, free_sized and aligned_alloc inline the fast paths; the rest call the hm_ functions. The
 * __libc_ names are the ones glibc itself calls. */
#include <malloc.h>
#include <stdlib.h>

#include "../include/hmalloc.h"
#include "alloc.h"

#define HM_PUBLIC __attribute__((visibility("default")))
#define HM_ALIAS(name) __attribute__((alias(#name), copy(name), visibility("default")))

HM_PUBLIC void *malloc(size_t size)
{
  return hm_alloc_inline(size);
}

HM_PUBLIC void free(void *p)
{
  hm_free_inline(p);
}

HM_PUBLIC void *calloc(size_t count, size_t size)
{
  return hm_calloc(count, size);
}

HM_PUBLIC void *realloc(void *p, size_t size)
{
  return hm_realloc(p, size);
}

HM_PUBLIC void *reallocarray(void *p, size_t count, size_t size)
{
  return hm_reallocarray(p, count, size);
}

HM_PUBLIC void *aligned_alloc(size_t alignment, size_t size)
{
  return hm_aligned_inline(alignment, size);
}

HM_PUBLIC int posix_memalign(void **out, size_t alignment, size_t size)
{
  return hm_posix_memalign(out, alignment, size);
}

HM_PUBLIC void *memalign(size_t alignment, size_t size)
{
  return hm_memalign(alignment, size);
}

HM_PUBLIC void *valloc(size_t size)
{
  return hm_valloc(size);
}

HM_PUBLIC void *pvalloc(size_t size)
{
  return hm_pvalloc(size);
}

HM_PUBLIC size_t malloc_usable_size(void *p)
{
  return hm_usable_size(p);
}

HM_PUBLIC void free_sized(void *p, size_t size)
{
  hm_free_sized_inline(p, size);
}

HM_PUBLIC void free_aligned_sized(void *p, size_t alignment, size_t size)
{
  hm_free_aligned_sized(p, alignment, size);
}

HM_PUBLIC int malloc_trim(size_t pad)
{
  (void)pad;
  return hm_trim();
}

HM_PUBLIC struct mallinfo2 mallinfo2(void)
{
  struct hm_stats st;
  hm_stats_get(&st);
  struct mallinfo2 mi = {0};
  mi.arena = st.regions * HM_REGION_SIZE;
  mi.hblks = st.huge_live;
  mi.hblkhd = st.reserved - mi.arena;
  mi.uordblks = st.bytes_in_use;
  mi.fordblks = mi.arena + mi.hblkhd > st.bytes_in_use ? mi.arena + mi.hblkhd - st.bytes_in_use : 0;
  return mi;
}

HM_PUBLIC void malloc_stats(void)
{
  hm_stats_print();
}

void *__libc_malloc(size_t size) HM_ALIAS(malloc);
void __libc_free(void *p) HM_ALIAS(free);
void *__libc_calloc(size_t count, size_t size) HM_ALIAS(calloc);
void *__libc_realloc(void *p, size_t size) HM_ALIAS(realloc);
void *__libc_memalign(size_t alignment, size_t size) HM_ALIAS(memalign);
void *__libc_valloc(size_t size) HM_ALIAS(valloc);
void *__libc_pvalloc(size_t size) HM_ALIAS(pvalloc);
