/* Regions: claims (resident granules first, whether a run reads as zeros),
 * frees, purge passes (dirty -> aged -> purged), close and idleness, and
 * claims and frees racing with purge passes on another thread.
 *
 * Each check works on a region of its own, created and destroyed here: the
 * arena and the rest of the allocator are not involved. */
#include <string.h>
#include <sys/mman.h>

#include "init.h"
#include "region.h"
#include "unit.h"
#include "unit_region.h"

#define PAGE 4096
#define PAGES_PER_GRANULE (HM_GRANULE / PAGE)

static hm_region *region_new(void)
{
  hm_region *r = hm_region_create(NULL, 0);
  CHECK(r != NULL, "hm_region_create failed");
  CHECK(((uintptr_t)r & (HM_REGION_SIZE - 1)) == 0, "region %p not aligned to its size",
        (void *)r);
  return r;
}

static uint8_t *granule(hm_region *r, size_t g)
{
  return (uint8_t *)r + g * HM_GRANULE;
}

static uint8_t *claim(hm_region *r, size_t count, bool *zeroed)
{
  uint8_t *run = hm_region_claim(r, count, zeroed);
  CHECK(run != NULL, "hm_region_claim(%zu) returned NULL", count);
  CHECK(hm_region_of(run) == r && unit_granule_index(run) != 0,
        "run %p of %zu outside region %p or on its header", (void *)run, count, (void *)r);
  CHECK((UNIT_WORD(used, run) & unit_run_bits(run, count)) == unit_run_bits(run, count),
        "claimed run %p of %zu not marked used", (void *)run, count);
  return run;
}

/* Claims a run that must start at granule `g`. */
static uint8_t *claim_at(hm_region *r, size_t count, size_t g, bool zeroed_expected)
{
  bool zeroed;
  uint8_t *run = claim(r, count, &zeroed);
  CHECK(run == granule(r, g), "claim(%zu) got granule %zu, expected %zu", count,
        unit_granule_index(run), g);
  CHECK(zeroed == zeroed_expected, "claim(%zu) at granule %zu: zeroed %d, expected %d", count,
        g, zeroed, zeroed_expected);
  return run;
}

static struct hm_purge_result purge(hm_region *r, bool all, bool now)
{
  struct hm_purge_result out = {0};
  hm_region_purge(r, all, now, 0, &out);
  return out;
}

/* Pages of [p, p + bytes) resident in memory. */
static size_t resident_pages(const void *p, size_t bytes)
{
  static unsigned char vec[HM_RUN_MAX * PAGES_PER_GRANULE];
  CHECK(bytes / PAGE <= sizeof vec, "resident_pages of %zu bytes", bytes);
  CHECK(mincore((void *)p, bytes, vec) == 0, "mincore(%p, %zu) failed", p, bytes);
  size_t n = 0;
  for (size_t i = 0; i < bytes / PAGE; i++)
    n += vec[i] & 1;
  return n;
}

/* A tag in the first word of every page: a purge zeroes whole pages. */
static uint64_t tag_of(const void *run, size_t page, uint64_t salt)
{
  return ((uint64_t)(uintptr_t)run ^ (page * 0x9E3779B97F4A7C15ull) ^ salt) | 1;
}

static void tag(void *run, size_t count, uint64_t salt)
{
  for (size_t page = 0; page < count * PAGES_PER_GRANULE; page++)
    *(uint64_t *)((uint8_t *)run + page * PAGE) = tag_of(run, page, salt);
}

static void check_tags(const void *run, size_t count, uint64_t salt, const char *what)
{
  for (size_t page = 0; page < count * PAGES_PER_GRANULE; page++) {
    uint64_t seen = *(const uint64_t *)((const uint8_t *)run + page * PAGE);
    CHECK(seen == tag_of(run, page, salt), "%s: page %zu of run %p (%zu granules) holds %#lx",
          what, page, run, count, (unsigned long)seen);
  }
}

/* Every byte of the run is zero. */
static void check_zeros(const void *run, size_t count, const char *what)
{
  const uint64_t *w = run;
  for (size_t i = 0; i < count * HM_GRANULE / sizeof *w; i++)
    CHECK(w[i] == 0, "%s: byte %zu of run %p (%zu granules) is not zero", what, i * sizeof *w,
          run, count);
}

/* The run's bits in each bitmap: used, dirty, aged, clean, each all set
 * (1) or all clear (0). */
static void check_bits(const void *run, size_t count, int used, int dirty, int aged, int clean,
                       const char *what)
{
  uint64_t bits = unit_run_bits(run, count);
  uint64_t got[4] = {UNIT_WORD(used, run), UNIT_WORD(dirty, run), UNIT_WORD(aged, run),
                     UNIT_WORD(clean, run)};
  int want[4] = {used, dirty, aged, clean};
  static const char *const names[4] = {"used", "dirty", "aged", "clean"};
  for (int i = 0; i < 4; i++)
    CHECK((got[i] & bits) == (want[i] ? bits : 0),
          "%s: run at granule %zu (%zu granules) is %s%s (word %#lx)", what,
          unit_granule_index(run), count, want[i] ? "not " : "", names[i],
          (unsigned long)got[i]);
}

/* A fresh region: only the header is used, everything else is clean; the
 * first claims read as zeros. */
static void check_fresh(void)
{
  hm_region *r = region_new();
  CHECK(hm_region_is_empty(r) && hm_region_is_idle(r), "a fresh region: empty %d, idle %d",
        hm_region_is_empty(r), hm_region_is_idle(r));
  for (size_t w = 0; w < HM_REGION_WORDS; w++) {
    uint64_t free_bits = w == 0 ? ~(uint64_t)1 : ~(uint64_t)0;
    CHECK(atomic_load(&r->used[w]) == ~free_bits && atomic_load(&r->dirty[w]) == 0 &&
              atomic_load(&r->aged[w]) == 0 && atomic_load(&r->clean[w]) == free_bits,
          "fresh region word %zu: used %#lx dirty %#lx aged %#lx clean %#lx", w,
          (unsigned long)atomic_load(&r->used[w]), (unsigned long)atomic_load(&r->dirty[w]),
          (unsigned long)atomic_load(&r->aged[w]), (unsigned long)atomic_load(&r->clean[w]));
  }
  uint8_t *one = claim_at(r, 1, 1, true);
  check_zeros(one, 1, "a fresh run of 1");
  uint8_t *whole = claim_at(r, HM_RUN_MAX, 64, true); /* word 0 has the header */
  check_zeros(whole, HM_RUN_MAX, "a fresh run of 64");
  check_bits(whole, HM_RUN_MAX, 1, 0, 0, 0, "a claimed run");
  CHECK(!hm_region_is_empty(r) && !hm_region_is_idle(r), "with runs in use: empty %d idle %d",
        hm_region_is_empty(r), hm_region_is_idle(r));
  hm_region_destroy(r);
  UNIT_PASS("a fresh region is empty, idle and clean; its runs read as zeros");
}

/* Resident (dirty) granules are claimed before clean ones, even clean ones
 * at lower addresses; a run reads as zeros only if all of it is clean. */
static void check_claim_prefers_dirty(void)
{
  hm_region *r = region_new();
  uint8_t *g[11];
  for (size_t i = 1; i <= 10; i++) {
    g[i] = claim_at(r, 1, i, true);
    tag(g[i], 1, i);
  }
  for (size_t i = 1; i <= 5; i++)
    hm_region_free(g[i], 1, true); /* purged at once: clean */
  hm_region_free(g[8], 1, false);
  check_bits(g[1], 5, 0, 0, 0, 1, "runs freed with purge");
  CHECK(resident_pages(g[1], 5 * HM_GRANULE) == 0, "runs freed with purge are still resident");
  check_bits(g[8], 1, 0, 1, 0, 0, "a run freed without purge");

  claim_at(r, 1, 8, false); /* the dirty one, above clean ones */
  check_tags(g[8], 1, 8, "a dirty run claimed again");
  claim_at(r, 1, 1, true); /* then the lowest clean one */
  check_zeros(g[1], 1, "a run freed with purge, claimed again");

  /* Only isolated dirty granules: a run of 2 is clean. */
  hm_region_free(g[6], 1, false);
  hm_region_free(g[8], 1, false);
  claim_at(r, 2, 2, true);
  /* 6, 7, 8 dirty: the first dirty run of 2. */
  hm_region_free(g[7], 1, false);
  claim_at(r, 2, 6, false);
  check_tags(g[6], 1, 6, "granule 6 of a dirty run");
  check_tags(g[7], 1, 7, "granule 7 of a dirty run");
  /* Part dirty (8), part clean (9, 10): not zeroed. */
  hm_region_free(g[9], 1, true);
  hm_region_free(g[10], 1, true);
  claim_at(r, 3, 8, false);
  hm_region_destroy(r);
  UNIT_PASS("claims take dirty granules first; zeroed only for all-clean runs");
}

/* A free marks the run dirty and not aged; the first pass ages it, the
 * second purges it (now: DONTNEED, it reads as zeros and is not resident). */
static void check_decay(void)
{
  hm_region *r = region_new();
  enum { N = 4 };
  uint8_t *run = claim_at(r, N, 1, true);
  tag(run, N, 1);
  hm_region_free(run, N, false);
  check_bits(run, N, 0, 1, 0, 0, "freed");
  CHECK(!hm_region_is_idle(r), "a region with a run freed since the last pass is idle");

  struct hm_purge_result res = purge(r, false, true);
  CHECK(res.bytes == 0 && res.calls == 0, "first pass purged %zu bytes in %zu calls",
        res.bytes, res.calls);
  check_bits(run, N, 0, 1, 1, 0, "after one pass");
  CHECK(resident_pages(run, N * HM_GRANULE) == N * PAGES_PER_GRANULE,
        "aged run not resident before the second pass");
  check_tags(run, N, 1, "an aged run");
  CHECK(hm_region_is_idle(r), "empty and everything aged, yet not idle");

  res = purge(r, false, true);
  CHECK(res.bytes == N * HM_GRANULE && res.calls == 1,
        "second pass purged %zu bytes in %zu calls, expected %zu in 1", res.bytes, res.calls,
        (size_t)N * HM_GRANULE);
  check_bits(run, N, 0, 0, 0, 1, "after two passes");
  CHECK(resident_pages(run, N * HM_GRANULE) == 0, "purged run still has resident pages");
  CHECK(hm_region_is_idle(r), "empty and purged, yet not idle");
  res = purge(r, false, true);
  CHECK(res.bytes == 0, "a third pass purged %zu bytes again", res.bytes);
  claim_at(r, N, 1, true);
  check_zeros(run, N, "a purged run claimed again");
  hm_region_free(run, N, false);

  /* Reused between the passes: never purged. */
  purge(r, false, true); /* ages it */
  claim_at(r, N, 1, false);
  tag(run, N, 2);
  hm_region_free(run, N, false);
  check_bits(run, N, 0, 1, 0, 0, "aged, reused and freed again");
  res = purge(r, false, true);
  CHECK(res.bytes == 0, "a run reused since the last pass was purged (%zu bytes)", res.bytes);
  check_tags(run, N, 2, "a run reused between passes");

  /* Lazy (MADV_FREE): purged, but only a `now` purge may say zeros. */
  res = purge(r, false, false);
  CHECK(res.bytes == N * HM_GRANULE, "a lazy pass purged %zu bytes", res.bytes);
  bool zeroed;
  claim(r, N, &zeroed);
  if (zeroed)
    check_zeros(run, N, "a lazily purged run said to read as zeros");
  hm_region_destroy(r);
  UNIT_PASS("free: dirty, not aged; a pass ages, the next purges (DONTNEED: zeros, not "
            "resident); a reuse in between resets the age");
}

/* `all` purges every dirty free granule at once, adjacent runs of a word
 * in one call. */
static void check_purge_all(void)
{
  hm_region *r = region_new();
  uint8_t *runs[3];
  for (size_t i = 0; i < 3; i++) {
    runs[i] = claim_at(r, 2, 1 + 2 * i, true);
    tag(runs[i], 2, i);
  }
  uint8_t *far = claim_at(r, HM_RUN_MAX, 64, true); /* the next word */
  tag(far, HM_RUN_MAX, 9);
  for (size_t i = 0; i < 3; i++)
    hm_region_free(runs[i], 2, false);
  hm_region_free(far, HM_RUN_MAX, false);
  struct hm_purge_result res = purge(r, true, true);
  CHECK(res.bytes == (6 + HM_RUN_MAX) * HM_GRANULE && res.calls == 2,
        "purge of all: %zu bytes in %zu calls, expected %d granules in 2 calls", res.bytes,
        res.calls, 6 + HM_RUN_MAX);
  check_bits(runs[0], 6, 0, 0, 0, 1, "three adjacent runs after a purge of all");
  check_bits(far, HM_RUN_MAX, 0, 0, 0, 1, "a run in the next word after a purge of all");
  CHECK(resident_pages(runs[0], 6 * HM_GRANULE) == 0 &&
            resident_pages(far, HM_RUN_MAX * HM_GRANULE) == 0,
        "pages resident after a purge of all");
  hm_region_destroy(r);
  UNIT_PASS("purge with `all`: every dirty free granule, one call per stretch");
}

/* A run in use is never purged, whatever the pass; a run grown over aged
 * granules takes them out of the next purge. */
static void check_in_use_kept(void)
{
  hm_region *r = region_new();
  uint8_t *before = claim_at(r, 2, 1, true);
  uint8_t *kept = claim_at(r, 4, 3, true);
  uint8_t *after = claim_at(r, 2, 7, true);
  tag(before, 2, 1);
  tag(kept, 4, 2);
  tag(after, 2, 3);
  hm_region_free(before, 2, false);
  hm_region_free(after, 2, false);
  for (int pass = 0; pass < 4; pass++)
    purge(r, pass >= 2, true);
  check_tags(kept, 4, 2, "a run in use through four purge passes");
  check_bits(kept, 4, 1, 0, 0, 0, "a run in use after purge passes");
  CHECK(resident_pages(kept, 4 * HM_GRANULE) == 4 * PAGES_PER_GRANULE,
        "a run in use lost resident pages");

  hm_region_destroy(r);

  /* An aged granule taken by growing the run before it is not purged. */
  r = region_new();
  uint8_t *grown = claim_at(r, 1, 1, true);
  uint8_t *next = claim_at(r, 1, 2, true);
  tag(next, 1, 7);
  hm_region_free(next, 1, false);
  purge(r, false, true);
  check_bits(next, 1, 0, 1, 1, 0, "a granule freed, after a pass");
  CHECK(hm_region_grow(grown, 1, 2), "growing granule 1 over the free granule 2 failed");
  check_bits(next, 1, 1, 0, 0, 0, "an aged granule taken by a grow");
  tag(grown, 2, 6);
  purge(r, false, true);
  purge(r, true, true);
  check_tags(grown, 2, 6, "a grown run after purge passes");
  hm_region_destroy(r);
  UNIT_PASS("runs in use are never purged; a grow takes aged granules out of the purge");
}

static bool page_mapped(void *p)
{
  return msync(p, PAGE, MS_ASYNC) == 0;
}

/* Close claims everything of an empty region (nothing can be claimed
 * after), and refuses, changing nothing, while a run is in use. */
static void check_close(void)
{
  hm_region *r = region_new();
  uint8_t *run = claim_at(r, 3, 1, true);
  uint8_t *dirty = claim_at(r, 2, 4, true);
  tag(dirty, 2, 0);
  hm_region_free(dirty, 2, false);
  uint64_t used[HM_REGION_WORDS];
  for (size_t w = 0; w < HM_REGION_WORDS; w++)
    used[w] = atomic_load(&r->used[w]);
  CHECK(!hm_region_is_empty(r) && !hm_region_close(r), "close of a region with a run in use");
  for (size_t w = 0; w < HM_REGION_WORDS; w++)
    CHECK(atomic_load(&r->used[w]) == used[w], "a refused close changed used word %zu", w);
  claim_at(r, 2, 4, false); /* still claimable */
  hm_region_free(dirty, 2, false);
  hm_region_free(run, 3, false);
  CHECK(hm_region_is_empty(r), "every run freed, yet not empty");
  CHECK(hm_region_close(r), "close of an empty region (with dirty granules) failed");
  bool zeroed;
  CHECK(hm_region_claim(r, 1, &zeroed) == NULL && hm_region_claim(r, HM_RUN_MAX, &zeroed) == NULL,
        "a closed region handed out a run");
  CHECK(!hm_region_is_empty(r), "a closed region says it is empty");
  hm_region_destroy(r);
  CHECK(!page_mapped(r), "a destroyed region is still mapped");
  UNIT_PASS("close refuses a region in use (unchanged), closes an empty one for good");
}

/* Idle: empty, and everything dirty has been seen by a pass. */
static void check_idle(void)
{
  hm_region *r = region_new();
  uint8_t *run = claim_at(r, 2, 1, true);
  CHECK(!hm_region_is_idle(r), "idle with a run in use");
  hm_region_free(run, 2, false);
  CHECK(hm_region_is_empty(r) && !hm_region_is_idle(r), "freed since the last pass: idle");
  purge(r, false, true);
  CHECK(hm_region_is_idle(r), "aged: not idle");
  purge(r, false, true);
  CHECK(hm_region_is_idle(r), "purged: not idle");
  claim_at(r, 2, 1, true);
  hm_region_free(run, 2, true);
  CHECK(hm_region_is_idle(r), "freed with purge (clean): not idle");
  hm_region_destroy(r);
  UNIT_PASS("is_idle: empty and nothing freed since the last pass");
}

/* Claims, grows and frees on several threads while another runs purge
 * passes. Every page of a run in use carries a tag that a purge would
 * zero; a run said to read as zeros is checked to. */
#define WORKERS 4
#define OPS UNIT_SCALE(20000)
#define LIVE 8
#define MAX_COUNT 16

static hm_region *race_region;
static _Atomic unsigned workers_done;

typedef struct worker {
  unsigned id;
  uint8_t *run[LIVE];
  size_t count[LIVE];
  uint64_t salt[LIVE];
  size_t claims, zeroed, failed;
} worker;

static void check_first_words_zero(const uint8_t *run, size_t count)
{
  for (size_t page = 0; page < count * PAGES_PER_GRANULE; page++) {
    uint64_t w = *(const uint64_t *)(run + page * PAGE);
    CHECK(w == 0, "run %p of %zu said to read as zeros: page %zu holds %#lx", (void *)run,
          count, page, (unsigned long)w);
  }
}

static void worker_claim(worker *wk, unsigned i, uint64_t rnd)
{
  size_t count = 1 + rnd % MAX_COUNT;
  bool zeroed;
  uint8_t *run = hm_region_claim(race_region, count, &zeroed);
  if (run == NULL) {
    wk->failed++;
    return;
  }
  wk->claims++;
  if (zeroed) {
    wk->zeroed++;
    check_first_words_zero(run, count);
  }
  wk->salt[i] = rnd | wk->id;
  tag(run, count, wk->salt[i]);
  wk->run[i] = run;
  wk->count[i] = count;
}

static void worker_change(worker *wk, unsigned i, uint64_t rnd)
{
  uint8_t *run = wk->run[i];
  size_t count = wk->count[i];
  check_tags(run, count, wk->salt[i], "a run in use while purges run");
  if (rnd % 4 == 0) {
    size_t grown = count + 1 + (rnd >> 4) % 4;
    if (grown <= HM_RUN_MAX && hm_region_grow(run, count, grown)) {
      tag(run, grown, wk->salt[i]);
      wk->count[i] = grown;
    }
    return;
  }
  hm_region_free(run, count, rnd % 8 == 1);
  wk->run[i] = NULL;
}

static void *work(void *arg)
{
  worker *wk = arg;
  uint64_t rng = 0x51ed2701ull * wk->id + 7;
  for (unsigned op = 0; op < OPS; op++) {
    uint64_t rnd = unit_rand(&rng);
    unsigned i = rnd % LIVE;
    if (wk->run[i] == NULL)
      worker_claim(wk, i, rnd >> 3);
    else
      worker_change(wk, i, rnd >> 3);
  }
  for (unsigned i = 0; i < LIVE; i++)
    if (wk->run[i] != NULL) {
      check_tags(wk->run[i], wk->count[i], wk->salt[i], "a run in use at the end");
      hm_region_free(wk->run[i], wk->count[i], false);
    }
  atomic_fetch_add(&workers_done, 1);
  return NULL;
}

static void *purge_loop(void *arg)
{
  size_t *passes = arg;
  uint64_t rng = 0xfeedull;
  while (atomic_load(&workers_done) < WORKERS) {
    uint64_t rnd = unit_rand(&rng);
    /* Mostly `now`: a DONTNEED of a run in use would zero its tags. */
    purge(race_region, rnd & 1, (rnd & 6) != 0);
    ++*passes;
    sched_yield(); /* two cores: let the workers run */
  }
  return NULL;
}

static void check_race_with_purges(void)
{
  race_region = region_new();
  worker workers[WORKERS];
  memset(workers, 0, sizeof workers);
  for (unsigned i = 0; i < WORKERS; i++)
    workers[i].id = i + 1;
  size_t passes = 0;
  pthread_t purger;
  CHECK(pthread_create(&purger, NULL, purge_loop, &passes) == 0, "pthread_create failed");
  run_threads(WORKERS, work, workers, sizeof workers[0]);
  CHECK(pthread_join(purger, NULL) == 0, "pthread_join failed");
  CHECK(hm_region_is_empty(race_region), "every run freed, yet the region is not empty");
  purge(race_region, true, true);
  CHECK(hm_region_is_idle(race_region) && hm_region_close(race_region),
        "every run freed and purged: idle %d, close refused", hm_region_is_idle(race_region));
  hm_region_destroy(race_region);
  size_t claims = 0, zeroed = 0, failed = 0;
  for (unsigned i = 0; i < WORKERS; i++) {
    claims += workers[i].claims;
    zeroed += workers[i].zeroed;
    failed += workers[i].failed;
  }
  CHECK(passes > 0 && zeroed > 0 && zeroed < claims,
        "the race did not mix: %zu passes, %zu of %zu claims zeroed", passes, zeroed, claims);
  printf("ok: %d threads x %d claim/grow/free racing %zu purge passes: no run in use purged, "
         "%zu of %zu claims zeroed and checked (%zu found the region full)\n",
         WORKERS, OPS, passes, zeroed, claims, failed);
}

int main(void)
{
  hm_process_init();
  check_fresh();
  check_claim_prefers_dirty();
  check_decay();
  check_purge_all();
  check_in_use_kept();
  check_close();
  check_idle();
  check_race_with_purges();
  return 0;
}
