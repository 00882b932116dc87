/* A heap owns the spans it took (DESIGN.md "Heaps"). Each thread has a
 * default heap; private heaps (hm_heap_create) are the same structure with
 * an explicit handle. Per size class a heap keeps:
 *   the active span, whose free blocks are on `hot[cls].free` (the malloc
 *     fast path pops there);
 *   a queue of partial spans, which the owner's frees made partly free or
 *     remote frees woke, taken in turn when the active span is full;
 *   a queue of parked full spans, never scanned: a remote free wakes one
 *     into the inbox (span.h), an owner free moves it to the partial queue.
 * Only the thread using the heap reads and writes these, with plain loads
 * and stores; other threads reach a heap only through its inbox, and its
 * large-free list (private heaps).
 *
 * Every thread's heap pointer starts at hm_heap_empty, whose lists are all
 * empty, so the first malloc of a thread falls into the slow path that sets
 * up a real heap. While that set-up runs, and after the thread's exit hook
 * flushed its heap, the pointer names a sentinel whose allocations go
 * straight to the arena ("direct"), so re-entrant calls from libc are
 * served without touching a half-built or dead heap.
 *
 * Heap structures are never unmapped: a delivery to a heap whose thread
 * exited lands in a structure that still exists, and the next thread to
 * take that structure inherits it. */
#ifndef HM_HEAP_H
#define HM_HEAP_H

#include "arena.h"
#include "run_cache.h"

enum hm_heap_kind {
  HM_HEAP_EMPTY = 0, /* the thread has no heap yet */
  HM_HEAP_THREAD,    /* a thread's default heap */
  HM_HEAP_PRIVATE,   /* from hm_heap_create */
  HM_HEAP_STARTING,  /* the thread is building its heap */
  HM_HEAP_DEAD       /* the thread's exit hook has run */
};

/* Free bytes a thread's heap may keep in partial spans; past it the
 * oldest partial spans go to the arena for other threads. Private heaps
 * keep every span until destroyed (they free every block at once). */
#ifndef HM_HEAP_PARTIAL_BUDGET
#define HM_HEAP_PARTIAL_BUDGET ((size_t)1 << 20)
#endif

/* What the fast paths touch, 32 bytes a class: the allocation list, and
 * where the class's active span lies, so that free recognises a block of
 * it without the page map (hm_free_inline: the thread's "current" class).
 * `len` is 0 while the class has no active span; else the bytes carved
 * from `blocks`, `divisor` its hm_span_divisor. */
typedef struct hm_bin_hot {
  hm_block *free; /* free blocks of the active span */
  uint8_t *blocks;
  uint64_t len;
  uint64_t divisor;
} hm_bin_hot;

typedef struct hm_bin {
  hm_span *active;
  hm_span *partial; /* circular queues: head, with head->qprev the oldest */
  hm_span *full;
  uint32_t npartial;
  /* Statistics: the allocation list's length when the counters last took
   * it in (hm_heap_sync_counts). The fast paths count nothing: between two
   * looks, malloc pops and free pushes change only the list's length. */
  int32_t synced;
} hm_bin;

typedef struct hm_heap {
  hm_link link; /* on the pool's free stack; must stay first */
  struct hm_heap *next_chunk; /* first heap of a chunk: the next chunk */
  hm_arena *arena;
  uint32_t kind;
  /* The fork gate's count of this thread's slow paths (gate.h); nonzero:
   * a nested call must not use the heap's lists. Written by its thread. */
  _Atomic uint32_t gate;
  _Atomic uint32_t in_use;
  uint32_t trim_epoch; /* the last trim this heap took part in */
  uint32_t slow_frees; /* frees that took the remote path */
  uint32_t budget_cursor; /* the class the budget looks at next */
  /* Thread heaps in use: the OS id of the thread in the low 32 bits (0
   * otherwise), and above them a count of the structure's acquisitions, so
   * that trim claims a heap whose thread is gone only if nobody released
   * or took it meanwhile (reclaim_if_orphaned). */
  _Atomic uint64_t thread_id;
  /* Read-copy-update (rcu.h), thread heaps: the depth of its thread's read
   * sections, and while in one, the grace period it began in (else 0). */
  uint32_t rcu_depth;
  _Atomic uint64_t rcu_period;
  uintptr_t magic;   /* private heaps: validates the handle */
  size_t limit;      /* private heaps: bytes it may hold; 0: no limit */
  size_t held;       /* bytes of the spans and large blocks it holds */
  size_t partial_bytes; /* bytes of its partial spans */
  hm_span *pending;  /* spans whose delivery an earlier owner of this structure awaited */
  hm_span *large;    /* private heaps: its large and huge blocks */
  hm_run_cache runs; /* thread heaps: freed large runs kept for reuse */
  /* Statistics of the large blocks this thread's heap handed out from its
   * cache, or cached when freed (written by the owner only, read by the
   * statistics like mallocs[]). */
  size_t large_mallocs, large_frees, large_bytes_allocated, large_bytes_freed;
  /* What other threads push: spans woken by remote frees, and (private
   * heaps) large blocks freed. The owner takes each list whole. */
  hm_span *_Atomic inbox __attribute__((aligned(HM_CACHE_LINE)));
  hm_span *_Atomic large_freed;
  hm_bin_hot hot[HM_CLASSES] __attribute__((aligned(HM_CACHE_LINE)));
  /* Statistics, plain counters the owner adds to on slow paths (other
   * threads read them: they lag behind a running thread's fast paths). */
  size_t mallocs[HM_CLASSES];
  size_t frees[HM_CLASSES];
  hm_bin bins[HM_CLASSES];
} __attribute__((aligned(4096))) hm_heap;

/* Adds to a statistic that only the owning thread writes and other
 * threads read (hm_stats_get). A plain add; a relaxed atomic store where
 * ThreadSanitizer checks the code and would report the race. */
static inline void hm_count_n(size_t *counter, size_t n)
{
#ifdef __SANITIZE_THREAD__
  __atomic_store_n(counter, *counter + n, __ATOMIC_RELAXED);
#else
  *counter += n;
#endif
}

static inline void hm_count(size_t *counter)
{
  hm_count_n(counter, 1);
}

extern __thread hm_heap *hm_tls __attribute__((tls_model("initial-exec"), visibility("hidden")));
/* The class of the thread's heap whose active span free tests first (the
 * class its last allocation slow path served), or hm_bin_none (len 0):
 * while the thread has no heap, in its slow paths, and after its exit. */
extern __thread hm_bin_hot *hm_tls_cur __attribute__((tls_model("initial-exec"), visibility("hidden")));
extern HM_HIDDEN hm_bin_hot hm_bin_none;

/* Builds the calling thread's heap (and starts the process); returns it,
 * or a sentinel if it cannot be had yet. */
hm_heap *hm_heap_thread_start(void);
/* The calling thread's heap, built if it has none yet: threads that only
 * free or only use private heaps get one too, so their slow paths count on
 * their own heap's words (the fork gate, statistics), not on the words all
 * heapless threads share. */
static inline hm_heap *hm_heap_thread(void)
{
  hm_heap *h = hm_tls;
  return h->kind == HM_HEAP_EMPTY ? hm_heap_thread_start() : h;
}

extern HM_HIDDEN hm_heap hm_heap_empty;

static inline bool hm_heap_is_private(const hm_heap *h)
{
  return h->kind == HM_HEAP_PRIVATE;
}

/* A small block from heap `h` when the fast path found none; *old_key
 * receives what the block's key word held. */
void *hm_heap_alloc_slow(hm_heap *h, size_t size, uint64_t *old_key);
/* (alloc.c) Where an allocation found no memory: gives back what hmalloc
 * keeps and tries once more if the OS refused memory since the last time;
 * else NULL with ENOMEM. */
void *hm_alloc_failed(hm_heap *h, size_t size, size_t align, uint64_t *old_key);
/* A trim: the calling thread's heap lets go of its unused spans at once,
 * the other threads' at their next slow path. */
void hm_heap_trim(void);
/* Aborts, naming `func` and `p`, if block `p` of small span `s` is free
 * (as far as heap `h`, the caller's, can tell: see is_double_free). */
void hm_heap_check_live(hm_heap *h, hm_span *s, const void *p, const char *func);
/* Waits until no thread's heap announces a read section that began
 * before grace period `period` (rcu.c). */
void hm_heap_wait_readers(uint64_t period);
/* Hands back the heaps of threads that are gone without their exit hook
 * (a first malloc in the last round of key destructors sets the hook too
 * late for it to run). One caller at a time: the purge lock's holder. */
void hm_heap_reclaim_orphans(void);
/* Frees block `p` of small span `s`, checked by the caller to be a block
 * start. */
void hm_heap_free_block(hm_heap *h, hm_span *s, void *p, const char *func);
/* The owner's free made span `s` unused (its `used` reached 0). */
void hm_heap_span_unused(hm_heap *h, hm_span *s);
/* A remote free woke span `s` of heap `h`: onto its inbox. */
void hm_heap_deliver(hm_heap *h, hm_span *s);
/* Called in a fork child: the heaps of the threads that did not survive
 * the fork hand back their spans. */
void hm_heap_fork_child(void);
void hm_heap_thread_exit(void *h);
/* A pop from a private heap's allocation list, counted at once: a private
 * heap may be read by hm_stats_get of the thread that uses it. */
static inline void hm_heap_count_pop(hm_heap *h, hm_bin_hot *bin)
{
  size_t cls = (size_t)(bin - h->hot);
  hm_count(&h->mallocs[cls]);
  h->bins[cls].synced--;
}

/* Takes the allocation list lengths of heap `h` into its statistics (the
 * owner, or a reader that owns `h` for now: a private heap's user). */
void hm_heap_sync_counts(hm_heap *h);
/* Calls `visit` on every heap in use, default and private (statistics). */
void hm_heap_each(void (*visit)(const hm_heap *, void *), void *arg);
/* Whether every heap structure's gate count is 0 (the fork gate). */
bool hm_heap_gates_clear(void);

/* Private heaps (heap_api in alloc.c). */
hm_heap *hm_heap_private_new(int node, size_t limit);
void hm_heap_private_free(hm_heap *h);
/* Frees every block of a private heap, keeping the heap. */
void hm_heap_release_all(hm_heap *h);
/* A large block of a private heap: registered when made (false: past the
 * heap's limit), and given back when the heap next looks at its large-free
 * list. */
bool hm_heap_large_add(hm_heap *h, hm_span *s);
void hm_heap_large_freed(hm_heap *h, hm_span *s);
/* Visits the live blocks of a private heap. */
int hm_heap_walk(hm_heap *h, int (*fn)(void *block, size_t size, void *arg), void *arg);
/* The live blocks of a private heap and their usable bytes. */
void hm_heap_stats_of(hm_heap *h, size_t *blocks, size_t *bytes);

#endif
