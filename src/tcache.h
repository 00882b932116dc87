/* The thread cache: per size class, the one span the thread owns and that
 * span's free list. The owning thread alone reads and writes it, with plain
 * loads and stores.
 *
 * Every thread's cache pointer starts at hm_tcache_empty, whose bins are all
 * empty, so the first malloc of a thread falls into the slow path that sets
 * up a real cache. While that set-up runs, and after the thread's exit hook
 * flushed its cache, the pointer names a sentinel whose allocations go
 * straight to the arena ("direct"), so re-entrant calls from libc are
 * served without touching a half-built or dead cache. */
#ifndef HM_TCACHE_H
#define HM_TCACHE_H

#include "arena.h"

enum hm_tcache_kind {
  HM_TCACHE_EMPTY = 0, /* the thread has no cache yet */
  HM_TCACHE_REAL,
  HM_TCACHE_STARTING, /* the thread is building its cache */
  HM_TCACHE_DEAD      /* the thread's exit hook has run */
};

typedef struct hm_bin {
  hm_block *free; /* free blocks of `span` */
  hm_span *span;  /* the owned span of this class, or NULL */
  size_t mallocs; /* statistics: plain counters, owner only */
  size_t frees;
} hm_bin;

typedef struct hm_tcache {
  hm_link link; /* on the pool's free stack; must stay first */
  struct hm_tcache *next_chunk; /* first cache of a chunk: the next chunk */
  hm_arena *arena;
  uint32_t kind;
  uint32_t busy; /* inside a slow path: a nested call must not use the bins */
  _Atomic uint32_t in_use;
  uint32_t trim_epoch; /* the last trim this cache took part in */
  uint32_t slow_frees; /* frees that took the remote path */
  hm_bin bins[HM_CLASSES];
} __attribute__((aligned(4096))) hm_tcache;

/* Counts one more in a statistic that only the owning thread writes and
 * other threads read (hm_stats_get), which may then lag by a few counts. A
 * plain increment is one instruction on the fast paths; a relaxed atomic
 * store, what the C memory model asks for, costs two more, so it is used
 * only where ThreadSanitizer checks the code and would report the race. */
static inline void hm_count(size_t *counter)
{
#ifdef __SANITIZE_THREAD__
  __atomic_store_n(counter, *counter + 1, __ATOMIC_RELAXED);
#else
  ++*counter;
#endif
}

extern __thread hm_tcache *hm_tls __attribute__((tls_model("initial-exec"), visibility("hidden")));
extern HM_HIDDEN hm_tcache hm_tcache_empty;

/* A small block from the thread cache when the fast path found none;
 * *old_key receives what the block's key word held. */
void *hm_tcache_alloc_slow(hm_tcache *tc, size_t size, uint64_t *old_key);
/* Starts the process (once) behind the sentinel that serves re-entrant
 * calls from the arena, for a thread that has no cache yet. */
void hm_tcache_process_init(void);
/* A trim: the calling thread lets go of its unused spans at once, the
 * others at their next refill. */
void hm_tcache_trim(hm_tcache *tc);
/* Frees a block of a small span, checked and located by the caller. */
void hm_tcache_free_block(hm_tcache *tc, hm_span *s, hm_block *b, const void *p,
                          const char *func);
/* Called in a fork child: the caches of the threads that did not survive
 * the fork hand back their spans. */
void hm_tcache_fork_child(void);
void hm_tcache_thread_exit(void *tc);
/* Calls `visit` on every cache in use (statistics). */
void hm_tcache_each(void (*visit)(const hm_tcache *, void *), void *arg);

#endif
