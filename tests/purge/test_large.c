/* Large (2 MiB, a run of a region) and huge (64 MiB, a mapping of its own)
 * blocks coming and going:
 *   - allocated, touched and freed 60 times: RSS does not grow with the
 *     iterations, nor does the number of mappings;
 *   - random sizes 128 KiB .. 16 MiB, up to 64 alive: the mappings stay
 *     within the live huge blocks plus the arena's cache slots and a
 *     constant, and go back to the start once the cache has aged out;
 *   - 1000 huge blocks of 5 MiB alive at once, freed in random order: at
 *     most one mapping each while alive, back to the start once the freed
 *     mappings the arena caches have aged out (some purge delays).
 * Every bound is far below vm.max_map_count. */
#include <string.h>

#include "huge_cache.h"
#include "purge_common.h"

#define PAGE 4096

/* Writes a byte per page: the block becomes resident. */
static void touch(char *p, size_t size)
{
  for (size_t off = 0; off < size; off += PAGE)
    p[off] = (char)off;
  p[size - 1] = 1;
}

static void *alloc_touched(size_t size)
{
  char *p = t_malloc(size);
  CHECK(p != NULL, "%s(%zu) failed", T_NAMES, size);
  touch(p, size);
  return p;
}

/* Fixed allowance over the starting figures: the regions the large blocks
 * use (a few 64 MiB mappings, each one line) and the process's own. */
#define MAPS_SLACK 16
#define RSS_SLACK (16 * MiB)

static void check_loop(void)
{
  enum { ITERATIONS = 60, WARM = 10 };
  size_t rss_warm = 0, maps_warm = 0, rss_max = 0, maps_max = 0;
  for (int i = 0; i < ITERATIONS; i++) {
    void *huge = alloc_touched(64 * MiB);
    void *large = alloc_touched(2 * MiB);
    t_free(huge);
    t_free(large);
    size_t rss = rss_bytes(), maps = maps_lines();
    if (i == WARM) {
      rss_warm = rss;
      maps_warm = maps;
    } else if (i > WARM) {
      rss_max = rss > rss_max ? rss : rss_max;
      maps_max = maps > maps_max ? maps : maps_max;
    }
  }
  note("64 MiB + 2 MiB x %d: after iteration %d RSS %.1f MiB, %zu mappings; at most %.1f MiB, "
       "%zu mappings after",
       ITERATIONS, WARM, mib(rss_warm), maps_warm, mib(rss_max), maps_max);
  /* A leak of one iteration's worth would be 66 MiB per iteration. */
  CHECK(rss_max <= rss_warm + RSS_SLACK,
        "RSS grew with the iterations: %.1f MiB after iteration %d, up to %.1f MiB later",
        mib(rss_warm), WARM, mib(rss_max));
  CHECK(maps_max <= maps_warm + MAPS_SLACK,
        "mappings grew with the iterations: %zu after iteration %d, up to %zu later", maps_warm,
        WARM, maps_max);
}

/* Sizes from 128 KiB (large) to 16 MiB (huge), up to 64 alive. */
static void check_random_mix(size_t maps_start)
{
  enum { SLOTS = 64, OPS = 4000 };
  void *slot[SLOTS] = {0};
  size_t size[SLOTS] = {0};
  struct rng rng = {7};
  size_t maps_max = 0;
  for (int op = 0; op < OPS; op++) {
    unsigned i = (unsigned)(rng_next(&rng) % SLOTS);
    if (slot[i] != NULL) {
      t_free(slot[i]);
      slot[i] = NULL;
      continue;
    }
    size[i] = (size_t)rng_range(&rng, 128 * KiB, 16 * MiB);
    slot[i] = t_malloc(size[i]);
    CHECK(slot[i] != NULL, "%s(%zu) failed", T_NAMES, size[i]);
    ((char *)slot[i])[0] = 1;
    ((char *)slot[i])[size[i] - 1] = 1;
    size_t maps = maps_lines();
    maps_max = maps > maps_max ? maps : maps_max;
  }
  for (unsigned i = 0; i < SLOTS; i++)
    t_free(slot[i]);
  size_t maps_end = wait_for_maps(maps_start + MAPS_SLACK, 3);
  note("random large/huge mix, %d ops with up to %d alive: at most %zu mappings (%zu at the "
       "start, %zu at the end)",
       OPS, SLOTS, maps_max, maps_start, maps_end);
  CHECK(maps_max <= maps_start + SLOTS + HM_HUGE_CACHE_SLOTS + MAPS_SLACK,
        "%zu mappings with at most %d blocks alive (%zu at the start)", maps_max, SLOTS,
        maps_start);
  CHECK(maps_end <= maps_start + MAPS_SLACK, "%zu mappings once every block is freed (%zu at "
        "the start)", maps_end, maps_start);
}

static void check_thousand_huge(size_t maps_start, size_t rss_start)
{
  enum { COUNT = 1000 };
  const size_t size = 5 * MiB;
  void **blocks = map_array(COUNT * sizeof *blocks);
  for (unsigned i = 0; i < COUNT; i++) {
    blocks[i] = t_malloc(size);
    CHECK(blocks[i] != NULL, "%s(5 MiB) number %u failed", T_NAMES, i);
    memset(blocks[i], 0x5a, PAGE);
  }
  size_t maps_alive = maps_lines();
  struct rng rng = {11};
  for (unsigned i = COUNT - 1; i > 0; i--) { /* Fisher-Yates: a random order */
    unsigned j = (unsigned)(rng_next(&rng) % (i + 1));
    void *t = blocks[i];
    blocks[i] = blocks[j];
    blocks[j] = t;
  }
  size_t maps_max = 0;
  for (unsigned i = 0; i < COUNT; i++) {
    CHECK(((unsigned char *)blocks[i])[PAGE - 1] == 0x5a, "huge block %p lost its contents",
          blocks[i]);
    t_free(blocks[i]);
    if (i % 50 == 0) {
      size_t maps = maps_lines();
      maps_max = maps > maps_max ? maps : maps_max;
    }
  }
  unmap_array(blocks, COUNT * sizeof *blocks);
  size_t maps_freed = maps_lines();
  size_t maps_end = wait_for_maps(maps_start + MAPS_SLACK, 3), rss_end = rss_bytes();
  struct hm_stats st;
  hm_stats_get(&st);
  note("%d huge blocks of 5 MiB: %zu mappings alive, at most %zu while freeing in random "
       "order, %zu at the last free, %zu after (vm.max_map_count %zu); RSS %.1f MiB after",
       COUNT, maps_alive, maps_max, maps_freed, maps_end, max_map_count(), mib(rss_end));
  CHECK(maps_alive <= maps_start + COUNT + MAPS_SLACK,
        "%zu mappings for %d huge blocks (%zu at the start)", maps_alive, COUNT, maps_start);
  CHECK(maps_max <= maps_start + COUNT + MAPS_SLACK,
        "%zu mappings while freeing %d huge blocks (%zu at the start)", maps_max, COUNT,
        maps_start);
  CHECK(maps_end <= maps_start + MAPS_SLACK, "%zu mappings after every huge block was freed "
        "and %d s went by (%zu at the start)", maps_end, WAIT_CAP_MS / 1000, maps_start);
  CHECK(rss_end <= rss_start + RSS_SLACK, "RSS %.1f MiB after the huge blocks, %.1f at the start",
        mib(rss_end), mib(rss_start));
  CHECK(st.huge_live == 0, "%zu huge blocks live once all were freed", st.huge_live);
}

int main(void)
{
  size_t maps_start = maps_lines();
  CHECK(maps_start + 1000 + 2 * MAPS_SLACK < max_map_count() / 10,
        "vm.max_map_count %zu is too low for this test", max_map_count());
  check_loop();
  size_t rss_start = rss_bytes();
  check_random_mix(maps_lines());
  check_thousand_huge(maps_lines(), rss_start);
  return 0;
}
