/* A span: one or more granules holding blocks of one size class, with the
 * header at its start. Large runs and huge mappings carry the same header
 * (kind LARGE / HUGE) so that free finds any block through the page map.
 *
 * Ownership (DESIGN.md invariant 2): a span belongs to one thread cache
 * (state OWNED, `owner` set), to an arena list (LISTED or EMPTY), or to
 * nobody (DETACHED: it was full when its owner let it go). Only the owner
 * touches the local free list. Any thread pushes on `remote`; the thread that
 * pushes the first block on a DETACHED span moves it to the arena's partial
 * list, so no span is ever lost. A span whose blocks are all free goes back
 * to its region. */
#ifndef HM_SPAN_H
#define HM_SPAN_H

#include "stack.h"

struct hm_tcache;
struct hm_arena;

enum hm_span_kind { HM_KIND_SMALL = 1, HM_KIND_LARGE, HM_KIND_HUGE };
enum hm_span_state {
  HM_SPAN_OWNED = 1,
  HM_SPAN_LISTED,
  HM_SPAN_DETACHED,
  HM_SPAN_LIVE, /* a large or huge block in use */
  HM_SPAN_FREED /* a large or huge block freed */
};

typedef struct hm_span {
  /* First cache line: what free reads. */
  hm_link link; /* on an arena stack; must stay first */
  struct hm_tcache *_Atomic owner;
  uint8_t *blocks; /* first block (small) or the user pointer (large/huge) */
  _Atomic size_t carved; /* bytes from `blocks` handed out at least once */
  uint64_t divisor;      /* 2^64 / block_size, rounded up: see hm_span_is_block */
  hm_block *local_free;  /* free blocks while nobody owns the span */
  uint32_t block_size;
  uint32_t capacity;     /* blocks in the span */
  uint32_t bin;          /* byte offset of the class's bin in a thread cache */
  uint16_t cls;
  uint8_t kind;
  _Atomic uint8_t aligned; /* has handed out interior (over-aligned) pointers */

  /* Second cache line: what other threads write, and slow-path fields. */
  /* The remote-free list: the first block's address, with the number of
   * blocks on the list in the top 16 bits, so that one CAS both pushes and
   * counts (a span has at most 4088 blocks). */
  _Atomic uint64_t remote __attribute__((aligned(HM_CACHE_LINE)));
  _Atomic uint32_t state; /* for inspection; the remote word decides */
  _Atomic uint32_t local_count; /* blocks on local_free */
  bool zeroed; /* the span's memory read as zeros when it was formed */
  struct hm_arena *arena;
  size_t size; /* large/huge: bytes of the run or mapping */
  uint32_t granules;
} hm_span;

_Static_assert(sizeof(hm_span) <= HM_HEADER_SIZE, "span header too big");

static inline uint64_t hm_span_divisor(uint32_t size)
{
  return UINT64_MAX / size + 1;
}

/* Whether `p` is the start of a block carved from the span. One unsigned
 * compare bounds it on both sides; the divisibility test is Lemire's
 * (off * ceil(2^64/d) mod 2^64 < ceil(2^64/d) iff d divides off), exact for
 * any offset below 2^32, which the bound guarantees. */
static inline bool hm_span_is_block(const hm_span *s, const void *p)
{
  uint64_t off = (uint64_t)((const uint8_t *)p - s->blocks);
  return off < atomic_load_explicit(&s->carved, memory_order_relaxed) &&
         off * s->divisor < s->divisor;
}

#define HM_REMOTE_COUNT_SHIFT 48
/* In the remote word of an empty list: the span was full when its owner let
 * it go; the first remote free takes it over and lists it. (Blocks are
 * 16-aligned: the low bits of the list pointer are free.) */
#define HM_REMOTE_DETACHED 1u

static inline hm_block *hm_remote_list(uint64_t head)
{
  return (hm_block *)(uintptr_t)(head & (((uint64_t)1 << HM_REMOTE_COUNT_SHIFT) - 1) &
                                 ~(uint64_t)(HM_MIN_ALIGN - 1));
}

static inline uint32_t hm_remote_count(uint64_t head)
{
  return (uint32_t)(head >> HM_REMOTE_COUNT_SHIFT);
}

void hm_span_format(hm_span *s, unsigned cls, bool zeroed);
/* Whether no block of a span nobody owns is in use. Nobody can free into
 * such a span (it would be a double free), so it may be reformatted or its
 * granules given back. */
bool hm_span_is_unused(const hm_span *s);
/* The same for the span's owner, whose free blocks are on `free_list`. */
bool hm_span_owner_unused(const hm_span *s, const hm_block *free_list);
/* Free blocks for the span's owner, as a list: the local list, else what
 * other threads freed, else fresh blocks carved from the unused tail.
 * NULL when the span is full. */
hm_block *hm_span_collect(hm_span *s);
/* The owner lets go of a span, leaving `free_list` in it. */
void hm_span_release(hm_span *s, hm_block *free_list);
/* The owner lets go of a full span. Returns true if the span turned out to
 * have remote frees and the caller still owns it. */
bool hm_span_detach(hm_span *s, bool keep_if_freed);
void hm_span_free_remote(hm_span *s, hm_block *b);
/* Whether `b` is on the list starting at `list` (for double-free checks). */
bool hm_block_list_contains(const hm_block *list, const hm_block *b);

#endif
