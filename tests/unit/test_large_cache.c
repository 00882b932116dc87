/* The caches of freed large runs (a thread heap's) and huge mappings (an
 * arena's): a freed block is reused in place, within a quarter of waste;
 * calloc of reused memory reads zeros; the caches are bounded, age with the
 * purge passes, empty on trim and thread exit; a second free of a cached
 * block is still "double free". Run with HMALLOC_PURGE_DELAY_MS=-1 (no pass
 * but those the test makes by bumping the pass count), so nothing ages
 * behind its back. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "api/test_util.h"
#include "unit.h"

#include "arena.h"
#include "heap.h"
#include "hmalloc.h"
#include "large.h"
#include "pagemap.h"
#include "purge.h"

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

static hm_run_cache *my_runs(void)
{
  return &hm_heap_thread()->runs;
}

static hm_huge_cache *huge_cache(void)
{
  return &hm_arena_for_node(-1)->huge_cache;
}

static size_t huge_cached(void)
{
  return atomic_load(&huge_cache()->bytes);
}

/* Granules of a large run holding `size` bytes after its header. */
static size_t run_bytes(size_t size)
{
  return (size + HM_HEADER_SIZE + HM_GRANULE - 1) / HM_GRANULE * HM_GRANULE;
}

/* Makes `n` purge passes go by, as far as the caches' ages go. */
static void passes(unsigned n)
{
  atomic_fetch_add(&hm_purge_pass_count, n);
}

static void run_reused_in_place(void)
{
  char *p = hm_malloc(1 * MiB);
  CHECK(p != NULL, "malloc(1 MiB) failed");
  memset(p, 0x5a, 1 * MiB);
  hm_free(p);
  CHECK(my_runs()->bytes == run_bytes(1 * MiB), "the freed run is not cached: %zu bytes",
        my_runs()->bytes);
  char *q = hm_malloc(1 * MiB);
  CHECK(q == p, "malloc(1 MiB) after a free got %p, not the cached %p", (void *)q, (void *)p);
  CHECK(my_runs()->bytes == 0, "the reused run is still cached");
  CHECK(hm_usable_size(q) >= 1 * MiB, "usable size %zu", hm_usable_size(q));
  hm_free(q);
  hm_trim();
  UNIT_PASS("a freed large run is reused in place");
}

static void run_waste_bounded(void)
{
  char *p = hm_malloc(1 * MiB); /* 17 granules with its header */
  hm_free(p);
  char *small = hm_malloc(256 * KiB); /* 5 granules: 17 wastes too much */
  CHECK(small != p, "a 256 KiB block reused a 1 MiB run");
  char *close = hm_malloc(900 * KiB); /* 15 granules: 17 is within a quarter */
  CHECK(close == p, "a 900 KiB block did not reuse the cached 1 MiB run (%p, %p)",
        (void *)close, (void *)p);
  CHECK(hm_usable_size(close) >= 1 * MiB, "the reused run shrank: %zu",
        hm_usable_size(close));
  memset(close, 1, hm_usable_size(close));
  hm_free(small);
  hm_free(close);
  hm_trim();
  UNIT_PASS("a cached run serves only requests it fits within a quarter");
}

static void run_calloc_zeroed(void)
{
  char *p = hm_malloc(512 * KiB);
  memset(p, 0xab, 512 * KiB);
  hm_free(p);
  char *q = hm_calloc(1, 512 * KiB);
  CHECK(q == p, "calloc did not reuse the cached run");
  CHECK(all_zero(q, 512 * KiB), "calloc of a reused run is not zeroed");
  hm_free(q);
  hm_trim();
  UNIT_PASS("calloc of a reused run reads zeros");
}

static void run_cache_bounded(void)
{
  char *blocks[16];
  for (int i = 0; i < 16; i++)
    blocks[i] = hm_malloc(1 * MiB);
  for (int i = 0; i < 16; i++)
    hm_free(blocks[i]);
  size_t one = run_bytes(1 * MiB);
  CHECK(my_runs()->bytes == HM_RUN_CACHE_BYTES / one * one,
        "16 freed runs of %zu: %zu bytes cached, bound %zu", one, my_runs()->bytes,
        (size_t)HM_RUN_CACHE_BYTES);
  hm_trim();
  CHECK(my_runs()->bytes == 0 && my_runs()->nonempty == 0, "trim left %zu bytes cached",
        my_runs()->bytes);
  UNIT_PASS("the run cache stays within its bound; trim empties it");
}

static void run_cache_ages(void)
{
  void *old = hm_malloc(2 * MiB);
  hm_free(old);
  passes(1);
  void *young = hm_malloc(3 * MiB);
  hm_free(young);
  size_t both = run_bytes(2 * MiB) + run_bytes(3 * MiB);
  CHECK(my_runs()->bytes == both, "cached %zu, expected %zu", my_runs()->bytes, both);
  /* One pass after the first free: nothing is old enough yet. */
  void *miss = hm_malloc(200 * KiB);
  CHECK(my_runs()->bytes == both, "a run went back one pass after its free");
  passes(1);
  void *miss2 = hm_malloc(200 * KiB);
  CHECK(my_runs()->bytes == run_bytes(3 * MiB),
        "two passes after: %zu bytes cached, expected only the younger run's %zu",
        my_runs()->bytes, run_bytes(3 * MiB));
  passes(2);
  void *miss3 = hm_malloc(200 * KiB);
  CHECK(my_runs()->bytes == 0, "every run aged out, yet %zu bytes are cached",
        my_runs()->bytes);
  hm_free(miss);
  hm_free(miss2);
  hm_free(miss3);
  hm_trim();
  UNIT_PASS("cached runs go back two passes after their free");
}

static void *free_block(void *arg)
{
  hm_free(arg);
  CHECK(my_runs()->bytes == run_bytes(1 * MiB), "the freeing thread did not cache the run");
  return NULL;
}

static void run_cross_thread_and_exit(void)
{
  struct hm_stats before;
  hm_stats_get(&before);
  void *p = hm_malloc(1 * MiB);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, free_block, p) == 0, "pthread_create failed");
  CHECK(pthread_join(t, NULL) == 0, "pthread_join failed");
  CHECK(my_runs()->bytes == 0, "a run freed by another thread is in the owner's cache");
  /* The thread's exit gave its cache back: the run is free in its region
   * and counted so. */
  struct hm_stats after;
  hm_stats_get(&after);
  CHECK(after.large_live == before.large_live, "large_live %zu after, %zu before",
        after.large_live, before.large_live);
  UNIT_PASS("a run freed by another thread goes to that thread's cache, out at its exit");
}

static void stats_count_cached_runs_freed(void)
{
  struct hm_stats s0, s1, s2;
  hm_stats_get(&s0);
  void *p = hm_malloc(1 * MiB);
  hm_stats_get(&s1);
  CHECK(s1.large_live == s0.large_live + 1, "large_live %zu -> %zu on a malloc", s0.large_live,
        s1.large_live);
  hm_free(p);
  hm_stats_get(&s2);
  CHECK(s2.large_live == s0.large_live, "a cached run counts as live: %zu, was %zu",
        s2.large_live, s0.large_live);
  CHECK(s2.frees == s1.frees + 1 && s1.mallocs == s0.mallocs + 1,
        "mallocs %zu -> %zu, frees %zu -> %zu", s0.mallocs, s1.mallocs, s1.frees, s2.frees);
  p = hm_malloc(1 * MiB); /* from the cache */
  hm_free(p);
  hm_trim();
  struct hm_stats s3;
  hm_stats_get(&s3);
  CHECK(s3.large_live == s0.large_live, "after reuse and trim large_live %zu, was %zu",
        s3.large_live, s0.large_live);
  CHECK(s3.mallocs == s0.mallocs + 2 && s3.frees == s0.frees + 2,
        "a cache hit is not counted: mallocs +%zu, frees +%zu", s3.mallocs - s0.mallocs,
        s3.frees - s0.frees);
  UNIT_PASS("statistics: cached runs are not live, cache hits count as mallocs");
}

/* Bytes of [p, p+n) resident now (mincore). */
static size_t resident_bytes(const char *p, size_t n)
{
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  unsigned char v[4096];
  CHECK(n / page <= sizeof v, "resident_bytes: %zu bytes is too many pages", n);
  CHECK(mincore((void *)p, n, v) == 0, "mincore failed");
  size_t resident = 0;
  for (size_t i = 0; i < n / page; i++)
    resident += (v[i] & 1) * page;
  return resident;
}

static void huge_reused(void)
{
  hm_trim();
  char *p = hm_malloc(16 * MiB);
  CHECK(p != NULL, "malloc(16 MiB) failed");
  memset(p, 0x77, 16 * MiB);
  hm_free(p);
  CHECK(huge_cached() >= 16 * MiB, "the freed mapping is not cached (%zu bytes)", huge_cached());
  char *q = hm_malloc(14 * MiB); /* within a quarter: the same mapping */
  CHECK(q == p, "malloc(14 MiB) got %p, not the cached mapping %p", (void *)q, (void *)p);
  CHECK(huge_cached() == 0, "the reused mapping is still counted cached");
  char *r = hm_malloc(14 * MiB); /* nothing cached: a new mapping */
  CHECK(r != NULL && r != q, "a second 14 MiB block got %p", (void *)r);
  hm_free(q);
  char *z = hm_calloc(1, 15 * MiB);
  CHECK(z == q, "calloc did not reuse the cached mapping");
  CHECK(all_zero(z, 15 * MiB), "calloc of a reused mapping is not zeroed");
  memset(r, 0x21, 14 * MiB);
  hm_free(r);
  size_t cached = huge_cached();
  char *half = hm_malloc(8 * MiB); /* a new mapping: the cached one's tail moves into it */
  CHECK(half != NULL && half != r, "an 8 MiB block got %p (the cached mapping is %p)",
        (void *)half, (void *)r);
  size_t moved = cached - huge_cached();
  CHECK(moved >= 8 * MiB && moved < cached, "%zu of the %zu cached bytes moved into an 8 MiB block",
        moved, cached);
  CHECK(resident_bytes(hm_pagemap_header(half), 8 * MiB) == 8 * MiB,
        "the 8 MiB block's pages are not resident");
  CHECK(half[0] == 0x21 && half[4 * MiB] == 0x21, "the moved pages are not the cached ones");
  memset(half, 0x43, 8 * MiB);
  CHECK(r[0] == 0x21, "the cached mapping's head changed");
  hm_free(half); /* cached: its 8 MiB written, r's 6 MiB head */
  char *big = hm_malloc(12 * MiB); /* more than any cached mapping: made of them */
  CHECK(big != NULL, "malloc(12 MiB) failed");
  size_t resident = resident_bytes(hm_pagemap_header(big), 12 * MiB + HM_HEADER_SIZE);
  /* half's mapping, 8 MiB of it written, then r's head */
  CHECK(resident >= 10 * MiB, "only %zu bytes of the 12 MiB block are resident", resident);
  memset(big, 0x65, 12 * MiB);
  hm_free(big);
  hm_free(z);
  hm_trim();
  CHECK(huge_cached() == 0, "trim left %zu bytes of huge mappings", huge_cached());
  UNIT_PASS("a freed huge mapping is reused up to a quarter bigger, else its resident pages "
            "move into new mappings; calloc reads zeros");
}

/* The THPeligible field of the mapping at p in /proc/self/smaps: 1 when
 * the kernel may back it with huge pages; -1 if there is no such field. */
static int thp_eligible(const void *p)
{
  FILE *f = fopen("/proc/self/smaps", "r");
  CHECK(f != NULL, "cannot open /proc/self/smaps");
  char line[512];
  bool inside = false;
  int eligible = -1;
  while (eligible < 0 && fgets(line, sizeof line, f) != NULL) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
      inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
    else if (inside && sscanf(line, "THPeligible: %d", &eligible) == 1)
      break;
  }
  fclose(f);
  return eligible;
}

/* "always", "madvise" or "never": the bracketed word of the THP setting. */
static bool thp_mode_is(const char *mode)
{
  char text[128] = "";
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (f == NULL)
    return false;
  bool ok = fgets(text, sizeof text, f) != NULL;
  fclose(f);
  char want[32];
  snprintf(want, sizeof want, "[%s]", mode);
  return ok && strstr(text, want) != NULL;
}

static void huge_thp(void)
{
  char *p = hm_malloc(16 * MiB);
  CHECK(p != NULL, "malloc(16 MiB) failed");
  uintptr_t mapping = (uintptr_t)hm_pagemap_header(p);
  CHECK(mapping % (2 * MiB) == 0, "a huge mapping at %p is not 2 MiB-aligned", (void *)mapping);
  const char *thp = getenv("HMALLOC_THP");
  bool asked = thp != NULL && strcmp(thp, "1") == 0;
  int eligible = thp_eligible(p);
  if (eligible >= 0 && thp_mode_is("madvise"))
    CHECK(eligible == asked, "THPeligible %d with HMALLOC_THP=%s", eligible, thp ? thp : "unset");
  hm_free(p);
  hm_trim();
  UNIT_PASS(asked ? "huge mappings are 2 MiB-aligned and ask for huge pages"
                  : "huge mappings are 2 MiB-aligned and do not ask for huge pages");
}

static void huge_decays(void)
{
  hm_trim();
  char *p = hm_malloc(8 * MiB);
  memset(p, 0x31, 8 * MiB);
  hm_free(p);
  hm_arena *a = hm_arena_for_node(-1);
  size_t purged_before = atomic_load(&a->purged_bytes);
  passes(2);
  hm_arena_purge(a, false, true);
  CHECK(atomic_load(&a->purged_bytes) > purged_before, "a mapping cached two passes ago was "
        "not purged");
  CHECK(huge_cached() >= 8 * MiB, "the purged mapping left the cache");
  char *q = hm_calloc(1, 8 * MiB);
  CHECK(q == p, "the purged mapping was not reused");
  CHECK(all_zero(q, 8 * MiB), "a purged, reused mapping is not zeroed");
  hm_free(q);
  passes(HM_HUGE_CACHE_UNMAP_PASSES);
  hm_arena_purge(a, false, true);
  CHECK(huge_cached() == 0, "a mapping cached %u passes ago is still cached",
        HM_HUGE_CACHE_UNMAP_PASSES);
  UNIT_PASS("cached huge mappings are purged, then unmapped, as passes go by");
}

static void huge_bounded(void)
{
  hm_trim();
  enum { N = 32 }; /* 320 MiB of mappings: past the bound */
  char *blocks[N];
  for (int i = 0; i < N; i++)
    blocks[i] = hm_malloc(8 * MiB);
  for (int i = 0; i < N; i++)
    hm_free(blocks[i]);
  CHECK(huge_cached() <= HM_HUGE_CACHE_MIN_BYTES, "%zu bytes of huge mappings cached, bound %zu",
        huge_cached(), (size_t)HM_HUGE_CACHE_MIN_BYTES);
  CHECK(huge_cached() > 0, "nothing cached");
  hm_trim();
  CHECK(huge_cached() == 0, "trim left %zu bytes", huge_cached());
  UNIT_PASS("the huge cache stays within its bound");
}

static void *huge_worker(void *arg)
{
  uint64_t seed = (uintptr_t)arg;
  struct rng r = {seed};
  for (int i = 0; i < 40; i++) {
    size_t size = (size_t)rng_range(&r, 200 * KiB, 12 * MiB);
    char *p = hm_malloc(size);
    CHECK(p != NULL, "malloc(%zu) failed", size);
    uint64_t base = pattern_base(p, size, seed);
    pattern_fill(p, size, base);
    if (i % 3 == 0) {
      size_t grown = size + (size_t)rng_range(&r, 1, 4 * MiB);
      p = hm_realloc(p, grown);
      CHECK(p != NULL, "realloc to %zu failed", grown);
      pattern_expect(p, size, base, "after realloc");
      base = pattern_base(p, grown, seed);
      pattern_fill(p, grown, base);
      size = grown;
    }
    pattern_expect(p, size, base, "before free");
    hm_free(p);
  }
  return NULL;
}

static void stress_threads(void)
{
  enum { T = 16 };
  pthread_t threads[T];
  for (uintptr_t i = 0; i < T; i++)
    CHECK(pthread_create(&threads[i], NULL, huge_worker, (void *)(i + 1)) == 0,
          "pthread_create failed");
  for (int i = 0; i < T; i++)
    CHECK(pthread_join(threads[i], NULL) == 0, "pthread_join failed");
  hm_trim();
  UNIT_PASS("16 threads of large and huge blocks, contents verified");
}

/* ---- A second free of a cached block is still a double free ---------- */

static void double_free_cached_run(void *arg)
{
  (void)arg;
  void *p = hm_malloc(1 * MiB);
  hm_free(p);
  hm_free(tu_record(p));
}

static void double_free_cached_huge(void *arg)
{
  (void)arg;
  void *p = hm_malloc(16 * MiB);
  hm_free(p);
  hm_free(tu_record(p));
}

static void double_free_purged_huge(void *arg)
{
  (void)arg;
  void *p = hm_malloc(16 * MiB);
  hm_free(p);
  passes(2);
  hm_arena_purge(hm_arena_for_node(-1), false, true);
  hm_free(tu_record(p));
}

#define DOUBLE_FREE "hmalloc: free(): double free 0x"

static const struct tu_death_case cases[] = {
    {"cached large run freed twice", double_free_cached_run, {DOUBLE_FREE}},
    {"cached huge mapping freed twice", double_free_cached_huge, {DOUBLE_FREE}},
    {"cached, purged huge mapping freed twice", double_free_purged_huge, {DOUBLE_FREE}},
};

int main(void)
{
  run_reused_in_place();
  run_waste_bounded();
  run_calloc_zeroed();
  run_cache_bounded();
  run_cache_ages();
  run_cross_thread_and_exit();
  stats_count_cached_runs_freed();
  huge_reused();
  huge_thp();
  huge_decays();
  huge_bounded();
  stress_threads();
  return tu_run_death_cases(cases, sizeof cases / sizeof cases[0]) ? 1 : 0;
}
