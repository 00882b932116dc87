/* A span: one or more granules holding blocks of one size class, with the
 * header at its start. Large runs and huge mappings carry the same header
 * (kind LARGE / HUGE) so that free finds any block through the page map.
 *
 * Ownership (DESIGN.md invariant 2): a span belongs to one heap (`owner`),
 * or to its arena (`owner` 0): on the arena's partial stack, or detached
 * (in no list, waiting for remote frees). Only the owner touches the local
 * free list, `used` and the queue fields, with plain loads and stores. Any
 * thread pushes on the remote list with one CAS.
 *
 * Parking (invariant 4): a full span leaves its heap's allocation path and
 * is parked: the owner sets HM_REMOTE_NOTIFY in the empty remote word. The
 * remote free whose CAS brings the list to hm_span_wake_count() blocks takes
 * the flag off in that same CAS and delivers the span: to its heap's inbox,
 * or, for a detached span, to the arena's partial stack. So a parked span
 * costs its owner nothing until it is worth using again, and the arena
 * lends a span to another heap only once an eighth of it is free. */
#ifndef HM_SPAN_H
#define HM_SPAN_H

#include "stack.h"

struct hm_heap;
struct hm_arena;

enum hm_span_kind { HM_KIND_SMALL = 1, HM_KIND_LARGE, HM_KIND_HUGE };
enum hm_span_state {
  HM_SPAN_OWNED = 1, /* by a heap */
  HM_SPAN_LISTED,    /* on an arena partial stack */
  HM_SPAN_DETACHED,  /* the arena's, parked until remote frees make it worth listing */
  HM_SPAN_EMPTY,     /* on an arena empty stack */
  HM_SPAN_LIVE,      /* a large or huge block in use */
  HM_SPAN_FREED      /* a large or huge block freed */
};

/* Where a span is in its owning heap (owner-only). */
enum hm_span_queue { HM_Q_NONE, HM_Q_ACTIVE, HM_Q_PARTIAL, HM_Q_FULL, HM_Q_PENDING };
/* The owner's view of the span's notification (owner-only): ARMED, the
 * owner set HM_REMOTE_NOTIFY; PENDING, a freer took the flag off and the
 * span is on its way to (or in) the inbox. A span leaves its heap only with
 * NONE, so it is never delivered to a heap that no longer owns it. */
enum hm_span_notify { HM_NOTIFY_NONE, HM_NOTIFY_ARMED, HM_NOTIFY_PENDING };

/* In `owner`, beside the heap: the span is parked (or waits in the heap's
 * pending list), so the owner's fast-path compare fails and a free by the
 * owner takes the slow path that brings the span back into use. */
#define HM_OWNER_PARKED ((uintptr_t)1)

typedef struct hm_span {
  /* First cache line: what free reads and the owner writes. */
  hm_link link; /* on an arena stack, a heap's inbox or large-free list; first */
  _Atomic uintptr_t owner; /* heap | HM_OWNER_PARKED, or 0: the arena */
  uint8_t *blocks; /* first block (small) or the user pointer (large/huge) */
  /* The owner's: (blocks carved) * e, with e = block_size * divisor mod
   * 2^64 (see hm_span_is_block). */
  uint64_t bound;
  uint64_t divisor; /* floor(2^64 / block_size) + 1: see hm_span_is_block */
  hm_block *local_free;  /* blocks the owner freed */
  /* Carved blocks not on local_free (the remote list's included, and for
   * the heap's active span those on its allocation list): the owner's free
   * that takes it to 0 finds the span unused without a walk. */
  uint32_t used;
  uint32_t block_size;
  uint32_t capacity; /* blocks in the span */
  uint16_t cls;
  uint8_t kind;

  /* Second cache line: what other threads write, and slow-path fields. */
  /* The remote-free list: the first block's address, with the number of
   * blocks on the list in the top 16 bits, so that one CAS both pushes and
   * counts (a span has at most 4088 blocks), and HM_REMOTE_NOTIFY. */
  _Atomic uint64_t remote __attribute__((aligned(HM_CACHE_LINE)));
  _Atomic size_t carved; /* bytes from `blocks` handed out at least once */
  _Atomic uint32_t state; /* for inspection and large blocks */
  uint8_t queue;          /* enum hm_span_queue */
  uint8_t notify;         /* enum hm_span_notify */
  bool zeroed; /* the span's memory read as zeros when it was formed */
  union { /* by kind: the header must stay within HM_HEADER_SIZE */
    bool gradual; /* small: carve 4 blocks first, doubling (a private heap's span) */
    bool purged;  /* huge, cached: its pages went back */
  };
  struct hm_span *qnext, *qprev; /* the owner's queue (circular), or its large list */
  struct hm_arena *arena;
  size_t size; /* large/huge: bytes of the run or mapping */
  uint32_t granules;
  union {
    uint32_t cached_at; /* large/huge in a cache: the purge pass it was cached at */
    struct {
      uint16_t collected; /* small: blocks on the list hm_span_collect returned last */
      /* Statistics: blocks on local_free that the owner's counters have
       * (or that were no frees: put back unused, or counted by a remote
       * freer). The others, pushed by the free fast path, are counted when
       * the owner next looks (hm_heap.c span_sync). */
      uint16_t local_counted; /* (a span has at most 4096 blocks) */
    };
  };
} hm_span;

_Static_assert(sizeof(hm_span) <= HM_HEADER_SIZE, "span header too big");

/* M = floor(2^64 / d) + 1 (for a power of two, one more than 2^64 / d).
 * Then d * M = 2^64 + e with 0 < e <= d, and for an offset below 2^32:
 * off * M mod 2^64 < M iff d divides off (Lemire), and
 * off * M mod 2^64 = (off / d) * e for a multiple of d. */
static inline uint64_t hm_span_divisor(uint32_t size)
{
  return UINT64_MAX / size + 1 + ((size & (size - 1)) == 0);
}

static inline uint64_t hm_span_bound(uint32_t size, uint32_t blocks)
{
  return (uint64_t)blocks * (size * hm_span_divisor(size));
}

/* Whether `p`, an address in one of the span's granules, is the start of a
 * block carved from the span, for its owner: one multiply and one compare,
 * off * M mod 2^64 < (blocks carved) * e. A multiple of d gives (off/d) * e;
 * anything else, or an offset into the header (up to 4096 bytes before the
 * first block, wrapped), gives M or more, above any bound (at most
 * 4096 * 2^17 < M). Checked for every
 * class and offset by tests/unit/test_span.c. */
static inline bool hm_span_is_block(const hm_span *s, const void *p)
{
  uint64_t off = (uint64_t)((const uint8_t *)p - s->blocks);
  return off * s->divisor < s->bound;
}

/* Blocks carved so far (Lemire's division by the block size: exact below
 * 2^32). */
static inline uint32_t hm_span_carved_blocks(const hm_span *s)
{
  size_t bytes = atomic_load_explicit(&s->carved, memory_order_relaxed);
  return (uint32_t)(((unsigned __int128)bytes * s->divisor) >> 64);
}

/* Remote frees that wake a parked span: an eighth of it, so a span goes
 * back into use (or to another heap) in batches, never a block at a time. */
#ifndef HM_SPAN_WAKE_DIVISOR
#define HM_SPAN_WAKE_DIVISOR 8
#endif
static inline uint32_t hm_span_wake_count(const hm_span *s)
{
  uint32_t n = s->capacity / HM_SPAN_WAKE_DIVISOR;
  return n > 1 ? n : 1;
}

/* `used` is the owner's; statistics and remote frees of arena-owned spans
 * read it too. ThreadSanitizer builds make the accesses atomic (relaxed);
 * elsewhere a plain decrement is one instruction on the free fast path. */
static inline uint32_t hm_span_used(const hm_span *s)
{
  return __atomic_load_n(&s->used, __ATOMIC_RELAXED);
}

static inline void hm_span_set_used(hm_span *s, uint32_t used)
{
  __atomic_store_n(&s->used, used, __ATOMIC_RELAXED);
}

static inline uint32_t hm_span_dec_used(hm_span *s)
{
#ifdef __SANITIZE_THREAD__
  uint32_t used = hm_span_used(s) - 1;
  hm_span_set_used(s, used);
  return used;
#else
  return --s->used;
#endif
}

/* The most blocks a span holds (16-byte blocks in one granule): the remote
 * count's 16 bits hold it. */
#define HM_SPAN_MAX_BLOCKS 4096

#define HM_REMOTE_COUNT_SHIFT 48
/* In the remote word: a remote free that brings the count to the wake count
 * delivers the span. (Blocks are 16-aligned: the low bits of the list
 * pointer are free.) */
#define HM_REMOTE_NOTIFY 1u

static inline hm_block *hm_remote_list(uint64_t head)
{
  return (hm_block *)(uintptr_t)(head & (((uint64_t)1 << HM_REMOTE_COUNT_SHIFT) - 1) &
                                 ~(uint64_t)(HM_MIN_ALIGN - 1));
}

static inline uint32_t hm_remote_count(uint64_t head)
{
  return (uint32_t)(head >> HM_REMOTE_COUNT_SHIFT);
}

static inline uint32_t hm_span_remote_count(const hm_span *s)
{
  return hm_remote_count(atomic_load_explicit(&s->remote, memory_order_acquire));
}

/* Whether the calling thread's heap `h` owns the span and has not parked
 * it: the free fast path's test. */
static inline bool hm_span_owned_by(const hm_span *s, const struct hm_heap *h)
{
  return hm_fast_load(&s->owner) == (uintptr_t)h;
}

static inline struct hm_heap *hm_span_owner(const hm_span *s)
{
  return (struct hm_heap *)(atomic_load_explicit(&s->owner, memory_order_relaxed) &
                            ~HM_OWNER_PARKED);
}

void hm_span_format(hm_span *s, unsigned cls, bool zeroed);
/* An unused span leaves its owner with its free blocks: no heap's, no
 * queue, no notification. */
void hm_span_unowned(hm_span *s);
/* Whether no block of the span is in use, for its owner (a heap's span
 * that is not the active one, or an arena's span it holds). */
bool hm_span_is_unused(const hm_span *s);
/* For the owner: the span's free blocks as a list, for the heap's
 * allocation list: what the owner freed, else what other threads freed,
 * else fresh blocks carved from the unused tail. NULL when the span is
 * full. The blocks count as used from then on. */
hm_block *hm_span_collect(hm_span *s);
/* For the owner: the remote list, taken whole (NULL if empty). */
hm_block *hm_span_take_remote(hm_span *s);
/* Takes HM_REMOTE_NOTIFY off again, if no freer did yet; whether the span
 * is free of notifications (it may then leave its heap). */
bool hm_span_disarm(hm_span *s);
/* Arms a full span (empty remote list); false if blocks arrived meanwhile. */
bool hm_span_arm(hm_span *s);
/* The owner lets go of a span that has blocks in use, to the arena: listed
 * if an eighth of it is free, else detached until remote frees make it so.
 * The caller must have disarmed it. */
void hm_span_to_arena(hm_span *s);
/* Puts `list` (blocks the holder of the span took from it and did not hand
 * out) back on the span's local list. */
void hm_span_put_back(hm_span *s, hm_block *list);
/* The holder of a span that is in no heap's lists (taken from the arena)
 * lets go of it, with `list` put back: to its region if unused, else to the
 * arena. */
void hm_span_release(hm_span *s, hm_block *list);
void hm_span_free_remote(hm_span *s, hm_block *b);
/* Whether `b` is on the list starting at `list` (for double-free checks). */
bool hm_block_list_contains(const hm_block *list, const hm_block *b);

#endif
