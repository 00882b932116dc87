/* The allocator's names for tests whose one source builds against the hm_
 * API (hmalloc_api and its sanitizer builds) or against the standard names
 * (libhmalloc.so or libhmalloc.a overriding malloc): compile with
 * -DHM_TEST_STD_NAMES for the latter. */
#ifndef HM_TEST_NAMES_H
#define HM_TEST_NAMES_H

#include "hmalloc.h"

#ifdef HM_TEST_STD_NAMES
#include <malloc.h>
#include <stdlib.h>
#define t_malloc malloc
#define t_calloc calloc
#define t_realloc realloc
#define t_free free
#define t_aligned_alloc aligned_alloc
#define t_posix_memalign posix_memalign
#define t_usable_size malloc_usable_size
#define t_trim() malloc_trim(0)
#define T_NAMES "malloc"
#else
#define t_malloc hm_malloc
#define t_calloc hm_calloc
#define t_realloc hm_realloc
#define t_free hm_free
#define t_aligned_alloc hm_aligned_alloc
#define t_posix_memalign hm_posix_memalign
#define t_usable_size hm_usable_size
#define t_trim() hm_trim()
#define T_NAMES "hm_malloc"
#endif

#endif
