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

/* Private heaps, in the model of Windows' HeapCreate/HeapAlloc/HeapDestroy:
 * per-request or per-query memory that is dropped all at once.
 *
 * Thread rules: a heap is allocated from (hm_heap_malloc and friends,
 * hm_heap_visit, hm_heap_stats_get, hm_heap_reset, hm_heap_destroy) by one
 * thread at a time; the program serialises those calls, and the heap may
 * move between threads (a request in a thread pool). No lock is taken
 * inside. hm_free, free and realloc accept a heap's blocks from any thread
 * at any time while the heap lives.
 *
 * hm_heap_destroy and hm_heap_reset free every block of the heap at once:
 * every pointer into the heap dangles afterwards. Freeing one of them is a
 * misuse: while its memory is not in use again it aborts with the usual
 * one-line message (invalid pointer / double free); once the memory serves
 * another span it is indistinguishable from a use-after-free. Frees of the
 * heap's blocks must have returned before destroy or reset is called.
 *
 * A heap argument that is not a live heap from hm_heap_create aborts with
 * one line naming the function (`hmalloc: hm_heap_malloc(): invalid heap
 * 0x...`); NULL gives EINVAL (NULL result) to the allocating functions and
 * is ignored by hm_heap_destroy. */
typedef struct hm_heap hm_heap;

typedef struct hm_heap_options {
  int node;     /* NUMA node whose memory the heap uses; -1: the creating thread's */
  size_t limit; /* bytes of memory the heap may hold (its spans and large blocks);
                   an allocation that would pass it fails with ENOMEM; 0: none */
} hm_heap_options;

#define HM_HEAP_OPTIONS_INIT {-1, 0}

/* A new private heap; `opt` NULL: the defaults. NULL with errno EINVAL for
 * a node out of range, ENOMEM when out of memory. */
HM_API hm_heap *hm_heap_create(const hm_heap_options *opt);
/* Frees every block of the heap, then the heap. NULL: nothing. */
HM_API void hm_heap_destroy(hm_heap *heap);
/* Frees every block of the heap and keeps it, empty, for more allocations. */
HM_API void hm_heap_reset(hm_heap *heap);
/* As hm_malloc and friends, from `heap`. */
HM_API void *hm_heap_malloc(hm_heap *heap, size_t size);
HM_API void *hm_heap_calloc(hm_heap *heap, size_t count, size_t size);
/* The result is a block of `heap` (p itself when it is a block of the heap
 * that fits); p may be NULL or a block of any heap; size 0 frees p. */
HM_API void *hm_heap_realloc(hm_heap *heap, void *p, size_t size);
HM_API void *hm_heap_aligned_alloc(hm_heap *heap, size_t alignment, size_t size);
/* Calls fn(block, usable_size, arg) for every live block of the heap (the
 * pointer each allocation returned) until fn returns nonzero; returns that
 * value, or 0. fn must not allocate from or free into `heap`. */
HM_API int hm_heap_visit(hm_heap *heap, int (*fn)(void *block, size_t size, void *arg),
                         void *arg);

struct hm_heap_stats {
  size_t blocks_in_use; /* live blocks */
  size_t bytes_in_use;  /* their usable bytes */
  size_t bytes_held;    /* memory the heap holds: its spans and large blocks */
};
HM_API void hm_heap_stats_get(hm_heap *heap, struct hm_heap_stats *out);

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

/* mallocs and frees of small blocks are counted on slow paths, not per
 * call: exact for the calling thread, lagging for other running threads
 * (until their next slow path or exit; README explains). */
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
