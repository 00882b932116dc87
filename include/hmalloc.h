/* hmalloc: a lock-free, thread-caching memory allocator.
 *
 * Loaded with LD_PRELOAD or linked (libhmalloc.so / libhmalloc.a), it
 * replaces malloc, free and the other standard and glibc allocation
 * functions. The hm_ names below are the same functions, usable when the
 * standard names are left to another allocator (hmalloc_api build, or a
 * program that dlopen()s libhmalloc.so). */
#ifndef HMALLOC_H
#define HMALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HMALLOC_VERSION_MAJOR 0
#define HMALLOC_VERSION_MINOR 1

#define HM_API __attribute__((visibility("default")))

HM_API void *hm_malloc(size_t size);
HM_API void *hm_calloc(size_t count, size_t size);
/* As glibc: hm_realloc(p, 0) frees p and returns NULL. */
HM_API void *hm_realloc(void *p, size_t size);
HM_API void *hm_reallocarray(void *p, size_t count, size_t size);
HM_API void hm_free(void *p);
/* Frees p, which was allocated with `size` bytes; aborts if `size` is larger
 * than the block. */
HM_API void hm_free_sized(void *p, size_t size);
HM_API void hm_free_aligned_sized(void *p, size_t alignment, size_t size);
/* `alignment` must be a power of two (EINVAL otherwise). */
HM_API void *hm_aligned_alloc(size_t alignment, size_t size);
/* Returns EINVAL unless `alignment` is a power of two multiple of
 * sizeof(void *); ENOMEM when out of memory. */
HM_API int hm_posix_memalign(void **out, size_t alignment, size_t size);
/* Bytes usable at p (at least what was requested); 0 for NULL. */
HM_API size_t hm_usable_size(const void *p);

/* Returns idle memory to the OS; nonzero if any was returned. */
HM_API int hm_trim(void);

struct hm_stats {
  size_t threads;          /* threads that allocated, ever */
  size_t mallocs;          /* blocks handed out, all sizes */
  size_t frees;            /* blocks freed */
  size_t bytes_allocated;  /* sum of the block sizes handed out */
  size_t bytes_in_use;     /* of blocks not yet freed */
  size_t regions;          /* 64 MiB regions reserved now */
  size_t reserved;         /* bytes of address space reserved (regions + huge) */
  size_t spans;            /* spans formed */
  size_t large_live;       /* large blocks (128 KiB .. 4 MiB) in use */
  size_t huge_live;        /* huge blocks (own mapping) in use */
  size_t purges;           /* purge calls made (madvise on Linux) */
  size_t purged;           /* bytes purged: returned to the OS but still mapped */
  size_t regions_released; /* regions unmapped */
};

HM_API void hm_stats_get(struct hm_stats *out);

/* Per NUMA node: one arena each (node 0 only on a one-node machine, or
 * until the topology is known). */
struct hm_node_stats {
  size_t mapped;           /* bytes of address space of the node's arena */
  size_t resident;         /* bytes of it resident now */
  size_t spans;            /* spans formed from the node's memory */
  size_t cross_node_frees; /* its blocks freed by threads running on other nodes */
};
HM_API int hm_stats_nodes(void);
/* 0, or EINVAL for a node out of range. */
HM_API int hm_stats_node_get(int node, struct hm_node_stats *out);
/* A short summary on stderr; what HMALLOC_STATS=1 prints at exit. */
HM_API void hm_stats_print(void);

#ifdef __cplusplus
}
#endif

#endif
