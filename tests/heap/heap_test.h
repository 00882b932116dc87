/* Helpers shared by the private heap tests: the allocator's names, blocks
 * with a verifiable pattern, the live blocks of a heap as hm_heap_visit
 * reports them, bookkeeping memory outside the allocator, and bounded
 * waits.
 *
 * The same sources build against the hm_ API (hmalloc_api and its
 * sanitizer builds: blocks are freed with hm_free) or against libhmalloc.so
 * overriding malloc (-DHM_TEST_STD_NAMES: blocks of private heaps are freed
 * with plain free, realloc'd with plain realloc, measured with
 * malloc_usable_size). The hm_heap_* functions are the same in both.
 *
 * A test chooses its CHECK (test_common.h) by defining TEST_CHECK_PLAIN or
 * not before including this header; the helpers here report through
 * fail(), which is safe in a fork child and from any thread. */
#ifndef HEAP_TEST_H
#define HEAP_TEST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hmalloc.h"
#include "test_common.h"
#include "test_names.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static inline struct rng rng_seeded(uint64_t seed, uint64_t stream)
{
  struct rng r = {seed ^ (stream * 0xD1B54A32D192ED03ull)};
  rng_next(&r);
  return r;
}

/* A block the test owns. `tag` is random per allocation, so two owners of
 * one block (the allocator handing it out twice) write different patterns
 * even when address and size match. `align` > 16: from
 * hm_heap_aligned_alloc (hm_heap_visit then reports the enclosing block). */
struct hblock {
  void *p;
  size_t size;
  uint64_t tag;
  size_t align;
};

/* Writes the pattern of (p, size, tag) over the block. */
void hb_fill(struct hblock *b, uint64_t tag);
/* Fails, with the details, unless the whole block holds its pattern. */
void hb_verify(const struct hblock *b, const char *where);
/* Fails unless the `len` bytes at q hold the first `len` bytes of the
 * pattern `origin` had (a realloc moved or kept it). */
void hb_verify_moved(const void *q, size_t len, const struct hblock *origin, const char *where);

/* The usable size of a block, through the names under test. */
static inline size_t hb_usable(const void *p)
{
  return t_usable_size((void *)p);
}

/* One block hm_heap_visit reported. */
struct visited {
  void *block;
  size_t size;
  size_t matched; /* heap_check_exact's count of live blocks in it */
};

/* Visits `h` into out[] (at most `cap`; more fails), sorted by address;
 * returns how many. Fails if a block is reported twice, or the callback's
 * count disagrees with hm_heap_visit's return (0). */
size_t heap_collect(hm_heap *h, struct visited *out, size_t cap, const char *where);
/* The index in v[0..n) of the visited block holding p (p itself, or for an
 * over-aligned allocation the block that contains it); n if none. */
size_t visited_find(const struct visited *v, size_t n, const void *p);
/* Checks that the visited blocks are exactly the live blocks b[0..n) (the
 * entries whose p is not NULL): each block reported once, each live block
 * in exactly one reported block, sizes equal to the usable size for blocks
 * that are not over-aligned, and that hm_heap_stats_get agrees: as many
 * blocks, bytes_in_use the sum of the reported sizes, bytes_held at least
 * that. `scratch` holds `cap` entries. */
void heap_check_exact(hm_heap *h, const struct hblock *b, size_t n, struct visited *scratch,
                      size_t cap, const char *where);

/* Memory for bookkeeping, outside the allocator under test (an anonymous
 * mapping): it counts in no statistic of hmalloc's. Zero-filled. */
void *map_array(size_t bytes);
void unmap_array(void *p, size_t bytes);

/* Threads of the process now (entries of /proc/self/task). hmalloc may
 * start one of its own (the background purge thread, after a burst); in
 * the override build, glibc allocates its thread structures through
 * hmalloc, so a test that compares hmalloc's bytes in use before and after
 * allows that thread's cost. */
unsigned thread_count(void);

/* Monotonic seconds. */

/* Waits until *counter is 0 (acquire), calling `help(arg)` (if not NULL)
 * and yielding between looks; fails after `bound_s` seconds. The bound is
 * for a hang, not a measure: it is generous. */
void wait_zero(_Atomic size_t *counter, void (*help)(void *), void *arg, double bound_s,
               const char *what);

#endif
