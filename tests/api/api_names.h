/* The allocation functions under test, by a neutral name: the standard
 * names (test_api, linked with the overriding libhmalloc.so) or the hm_
 * names (test_hm_api, defined TEST_HM_NAMES, linked with hmalloc_api). The
 * checks in api_conformance.c are written once against these names. */
#ifndef HM_API_NAMES_H
#define HM_API_NAMES_H

#include <malloc.h>
#include <stdlib.h>

#include "hmalloc.h"

#ifdef TEST_HM_NAMES

/* The glibc extensions have no public hm_ name; the library defines them
 * for its override layer, and hmalloc_api reaches them through src/. */
#include "alloc.h"

#define API_LABEL "hm_ names"
#define a_malloc hm_malloc
#define a_calloc hm_calloc
#define a_realloc hm_realloc
#define a_reallocarray hm_reallocarray
#define a_free hm_free
#define a_free_sized hm_free_sized
#define a_free_aligned_sized hm_free_aligned_sized
#define a_aligned_alloc hm_aligned_alloc
#define a_posix_memalign hm_posix_memalign
#define a_memalign hm_memalign
#define a_valloc hm_valloc
#define a_pvalloc hm_pvalloc
#define a_usable_size hm_usable_size
#define a_trim() hm_trim()

static inline size_t a_bytes_in_use(void)
{
  struct hm_stats st;
  hm_stats_get(&st);
  return st.bytes_in_use;
}

#else

/* C23 names that glibc 2.36's headers do not declare yet. */
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t alignment, size_t size);

#define API_LABEL "standard names"
#define a_malloc malloc
#define a_calloc calloc
#define a_realloc realloc
#define a_reallocarray reallocarray
#define a_free free
#define a_free_sized free_sized
#define a_free_aligned_sized free_aligned_sized
#define a_aligned_alloc aligned_alloc
#define a_posix_memalign posix_memalign
#define a_memalign memalign
#define a_valloc valloc
#define a_pvalloc pvalloc
#define a_usable_size malloc_usable_size
#define a_trim() malloc_trim(0)

static inline size_t a_bytes_in_use(void)
{
  return mallinfo2().uordblks;
}

#endif

#endif
