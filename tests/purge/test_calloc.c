/* calloc returns zeros whatever the memory held before, whether hmalloc
 * clears it or skips the memset because it knows the memory reads as
 * zeros. Small blocks of several classes, large and huge blocks, on:
 *   fresh memory;
 *   memory freed dirty by this thread and reused;
 *   spans given back dirty by a thread that exited, formed again by another;
 *   memory a trim purged (MADV_DONTNEED: zeros, the memset is skipped);
 *   memory purge passes purged: MADV_DONTNEED, or MADV_FREE with
 *   HMALLOC_PURGE_LAZY=1 (the contents may stay: it must not pass for
 *   zeros), or at every free with HMALLOC_PURGE_DELAY_MS=0.
 * Then realloc of huge blocks: growing (in place or moved to a new mapping),
 * shrinking and growing again keeps the contents, compared with a copy. */
#include <stdlib.h>
#include <string.h>

#include "purge_common.h"

static const size_t small_sizes[] = {16, 100, 1000, 5000, 40000, 128 * KiB};
static const size_t big_sizes[] = {200 * KiB, MiB, 3 * MiB, 5 * MiB, 64 * MiB};
#define SMALL_SIZES (sizeof small_sizes / sizeof small_sizes[0])
#define BIG_SIZES (sizeof big_sizes / sizeof big_sizes[0])
#define SMALL_BYTES (2 * MiB) /* per class: several spans */
#define MAX_BLOCKS (SMALL_BYTES / 16)

static const char *stage;

static size_t blocks_for(size_t size)
{
  return SMALL_BYTES / size > 8 ? SMALL_BYTES / size : 8;
}

/* Callocs blocks of every small class and every big size, checks every
 * byte is zero, then fills them with non-zero bytes and frees them: the
 * memory is dirty for whoever comes next. */
static void calloc_check_dirty(void)
{
  static void *blocks[MAX_BLOCKS];
  for (size_t s = 0; s < SMALL_SIZES; s++) {
    size_t size = small_sizes[s], n = blocks_for(size);
    for (size_t i = 0; i < n; i++) {
      blocks[i] = t_calloc(1, size);
      CHECK(blocks[i] != NULL, "%s: calloc(%zu) failed", stage, size);
      CHECK(all_zero(blocks[i], size), "%s: calloc(%zu) block %zu at %p is not all zeros",
            stage, size, i, blocks[i]);
    }
    for (size_t i = 0; i < n; i++) {
      memset(blocks[i], 0xa5, size);
      t_free(blocks[i]);
    }
  }
  for (size_t b = 0; b < BIG_SIZES; b++) {
    size_t size = big_sizes[b];
    char *p = t_calloc(size, 1);
    CHECK(p != NULL, "%s: calloc(%zu) failed", stage, size);
    CHECK(all_zero(p, size), "%s: calloc(%zu) at %p is not all zeros", stage, size, (void *)p);
    memset(p, 0x5a, size);
    t_free(p);
  }
}

static void *calloc_in_thread(void *arg)
{
  (void)arg;
  calloc_check_dirty();
  return NULL;
}

/* In a new thread: a fresh cache forms new spans, on the granules the
 * previous thread's spans gave back. */
static void calloc_on_new_thread(const char *what)
{
  stage = what;
  pthread_t t;
  CHECK(pthread_create(&t, NULL, calloc_in_thread, NULL) == 0, "pthread_create failed");
  CHECK(pthread_join(t, NULL) == 0, "pthread_join failed");
}

static void check_calloc(void)
{
  stage = "fresh memory";
  calloc_check_dirty();
  stage = "memory this thread freed dirty";
  calloc_check_dirty();
  calloc_on_new_thread("spans given back dirty by an exited thread");
  calloc_on_new_thread("the same, again");
  t_trim(); /* what it returns: test_purge_stats */
  calloc_on_new_thread("memory purged by a trim");
  wait_for_purge(4);
  calloc_on_new_thread(purge_delay_ms() == 0 ? "memory purged at every free"
                       : getenv("HMALLOC_PURGE_LAZY") ? "memory purged lazily by passes"
                                                      : "memory purged by passes");
  stage = "the main thread at the end";
  calloc_check_dirty();
}

/* Reallocates a huge block through sizes, each time comparing what must
 * have been kept with a copy, and filling what is new. */
static void check_huge_realloc(void)
{
  static const size_t steps[] = {8 * MiB,  16 * MiB, 20 * MiB, 6 * MiB,
                                 64 * MiB, 5 * MiB,  256 * KiB, 12 * MiB};
  size_t max = 64 * MiB;
  uint8_t *copy = map_array(max);
  struct rng rng = {3};
  size_t size = steps[0];
  uint8_t *p = t_malloc(size);
  CHECK(p != NULL, "%s(%zu) failed", T_NAMES, size);
  for (size_t i = 0; i < size; i += 8) {
    uint64_t v = rng_next(&rng);
    memcpy(p + i, &v, 8);
  }
  memcpy(copy, p, size);
  unsigned moved = 0;
  /* A huge block mapped right after it keeps the next growth from
   * happening in place, most of the time: both ways are exercised. */
  void *neighbour = t_malloc(8 * MiB);
  for (size_t s = 1; s < sizeof steps / sizeof steps[0]; s++) {
    size_t next = steps[s];
    uint8_t *q = t_realloc(p, next);
    CHECK(q != NULL, "realloc(%zu -> %zu) failed", size, next);
    size_t kept = size < next ? size : next;
    CHECK(memcmp(q, copy, kept) == 0, "realloc(%zu -> %zu) %s lost contents", size, next,
          q == p ? "in place" : "moved");
    moved += q != p;
    for (size_t i = kept; i + 8 <= next; i += 8) {
      uint64_t v = rng_next(&rng);
      memcpy(q + i, &v, 8);
    }
    memcpy(copy, q, next);
    p = q;
    size = next;
  }
  t_free(neighbour);
  t_free(p);
  unmap_array(copy, max);
  note("huge realloc through %zu sizes: contents kept, %u moves",
       sizeof steps / sizeof steps[0], moved);
}

int main(void)
{
  check_calloc();
  note("calloc returned zeros on fresh, dirty, trimmed and purged memory (%s)",
       purge_delay_ms() == 0           ? "purges at every free"
       : getenv("HMALLOC_PURGE_LAZY") ? "lazy passes"
                                      : "DONTNEED passes");
  check_huge_realloc();
  return 0;
}
