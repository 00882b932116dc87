/* Fragmentation (a report, not a bound): the 1 GiB burst of small objects
 * (16..256 B) with 95% of it freed at random leaves live objects on almost
 * every page, so an allocator that does not move objects cannot return
 * most of it. Prints hmalloc's RSS after the purge delay and after a trim,
 * and what purging at page level inside partly used spans could reach at
 * best: the pages that hold a live object. bench/ has the other
 * allocators' numbers.
 *
 * Asserted: the live objects keep their contents through the purges, and
 * the RSS never falls below what they occupy (a purge of live memory
 * would). */
#include <stdlib.h>

#include "purge_common.h"

#define BURST_BYTES GiB
#define PAGE 4096

static int by_value(const void *a, const void *b)
{
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return (x > y) - (x < y);
}

/* Distinct 4 KiB pages holding part of a live object. */
static size_t live_pages(const struct block_set *s, size_t live)
{
  size_t cap = 2 * live;
  uintptr_t *pages = map_array(cap * sizeof *pages);
  size_t n = 0;
  for (size_t i = 0; i < s->count; i++)
    if (s->p[i] != NULL) {
      uintptr_t first = (uintptr_t)s->p[i] / PAGE;
      uintptr_t last = ((uintptr_t)s->p[i] + block_size_of(s, i) - 1) / PAGE;
      for (uintptr_t p = first; p <= last && n < cap; p++)
        pages[n++] = p;
    }
  qsort(pages, n, sizeof *pages, by_value);
  size_t distinct = 0;
  for (size_t i = 0; i < n; i++)
    distinct += i == 0 || pages[i] != pages[i - 1];
  unmap_array(pages, cap * sizeof *pages);
  return distinct;
}

int main(void)
{
  struct block_set burst = {0};
  size_t start = rss_bytes();
  blocks_alloc(&burst, BURST_BYTES, 9);
  size_t peak = rss_bytes();
  struct rng rng = {77};
  size_t live = 0;
  for (size_t i = 0; i < burst.count; i++) {
    if (rng_next(&rng) % 100 < 95)
      block_free(&burst, i, "a burst block before its free");
    else
      live++;
  }
  size_t freed = rss_bytes();
  wait_for_purge(5);
  size_t after_delay = rss_bytes();
  blocks_verify(&burst, "a live block after the purge delay");
  t_trim();
  size_t after_trim = rss_bytes();
  blocks_verify(&burst, "a live block after a trim");
  size_t pages = live_pages(&burst, live);
  /* The test's pointer array is resident too (8 bytes a block): not
   * hmalloc's. */
  size_t array = (burst.count * sizeof(void *) + PAGE - 1) / PAGE * PAGE;
  size_t own = after_trim > start + array ? after_trim - start - array : 0;
  note("1 GiB burst, 95%% freed at random: %zu of %zu blocks live (%.1f MiB requested)", live,
       burst.count, mib(burst.bytes));
  note("RSS (MiB): start %.1f, peak %.1f, freed %.1f, after the delay %.1f, after trim %.1f "
       "(of which the test's pointer array %.1f)",
       mib(start), mib(peak), mib(freed), mib(after_delay), mib(after_trim), mib(array));
  note("hmalloc holds %.1f MiB for %.1f MiB live; pages holding a live object: %zu (%.1f "
       "MiB): page-level purging inside partly used spans could return at most %.1f MiB more",
       mib(own), mib(burst.bytes), pages, mib(pages * PAGE),
       own > pages * PAGE ? mib(own - pages * PAGE) : 0.0);
  CHECK(after_trim >= burst.bytes, "RSS %.1f MiB below the %.1f MiB of live objects",
        mib(after_trim), mib(burst.bytes));
  return 0;
}
