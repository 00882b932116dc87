/* The arena: runs of granules (alloc, free, grow, shrink), concurrent
 * claims, spans taken for a size class, unused spans given back to their
 * region, and purge passes. */
#include <string.h>
#include <sys/mman.h>

#include "arena.h"
#include "init.h"
#include "pagemap.h"
#include "unit.h"
#include "unit_region.h"

static hm_arena *arena;

static uint64_t bitmap_word(const void *p)
{
  return UNIT_WORD(used, p);
}

/* A run of `count` granules; whether it reads as zeros is not asked. */
static void *alloc_run(size_t count)
{
  bool zeroed;
  return hm_arena_alloc_run(arena, count, &zeroed);
}

static size_t regions_live(void)
{
  return atomic_load(&arena->regions_live);
}

/* Where a run must be: granule aligned, past the region header, inside
 * one bitmap word, and marked used there. */
static void check_run_placed(void *run, size_t count)
{
  CHECK(run != NULL, "hm_arena_alloc_run(%zu) returned NULL", count);
  CHECK(((uintptr_t)run & (HM_GRANULE - 1)) == 0, "run %p of %zu not granule aligned", run,
        count);
  size_t g = unit_granule_index(run);
  CHECK(g != 0, "run %p of %zu overlaps the region header", run, count);
  CHECK(g / 64 == (g + count - 1) / 64, "run of %zu at granule %zu crosses a bitmap word",
        count, g);
  uint64_t bits = unit_bits(count, g % 64);
  CHECK((bitmap_word(run) & bits) == bits, "run %p of %zu not marked in the bitmap", run,
        count);
}

/* One tag per page, so that overlapping runs overwrite each other's. */
static uint64_t page_tag(const void *run, size_t page)
{
  return (uint64_t)(uintptr_t)run ^ (page * 0x9E3779B97F4A7C15ull) ^ 1;
}

static void tag_pages(void *run, size_t count)
{
  for (size_t page = 0; page < count * HM_GRANULE / 4096; page++)
    *(uint64_t *)((uint8_t *)run + page * 4096) = page_tag(run, page);
}

static void check_page_tags(const void *run, size_t count)
{
  for (size_t page = 0; page < count * HM_GRANULE / 4096; page++)
    CHECK(*(const uint64_t *)((const uint8_t *)run + page * 4096) == page_tag(run, page),
          "page %zu of run %p (%zu granules) was overwritten", page, run, count);
}

/* Every page of the run reads as zeros where the tags would go. */
static void check_zero_pages(const void *run, size_t count)
{
  for (size_t page = 0; page < count * HM_GRANULE / 4096; page++)
    CHECK(*(const uint64_t *)((const uint8_t *)run + page * 4096) == 0,
          "page %zu of run %p (%zu granules), said to read as zeros, does not", page, run,
          count);
}

static int by_address(const void *a, const void *b)
{
  uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
  return (x > y) - (x < y);
}

/* One run of each count 1..64 at once: placed right, writable, disjoint. */
static void check_runs_of_every_count(void)
{
  void *runs[HM_RUN_MAX + 1];
  for (size_t count = 1; count <= HM_RUN_MAX; count++) {
    runs[count] = alloc_run(count);
    check_run_placed(runs[count], count);
    tag_pages(runs[count], count);
  }
  for (size_t count = 1; count <= HM_RUN_MAX; count++)
    check_page_tags(runs[count], count);

  /* Sorted by address, each run ends before the next starts. Runs are
   * identified by their count through the tag check above. */
  struct {
    void *start;
    size_t count;
  } sorted[HM_RUN_MAX];
  for (size_t count = 1; count <= HM_RUN_MAX; count++) {
    sorted[count - 1].start = runs[count];
    sorted[count - 1].count = count;
  }
  qsort(sorted, HM_RUN_MAX, sizeof sorted[0], by_address);
  for (size_t i = 0; i + 1 < HM_RUN_MAX; i++)
    CHECK((uint8_t *)sorted[i].start + sorted[i].count * HM_GRANULE <=
              (uint8_t *)sorted[i + 1].start,
          "run %p of %zu overlaps run %p", sorted[i].start, sorted[i].count, sorted[i + 1].start);

  /* Once they are freed, a whole word is free in every region: a run of
   * 64 fits without a new region. */
  size_t regions = regions_live();
  for (size_t count = 1; count <= HM_RUN_MAX; count++)
    hm_arena_free_run(runs[count], count);
  void *whole = alloc_run(HM_RUN_MAX);
  check_run_placed(whole, HM_RUN_MAX);
  CHECK(regions_live() == regions,
        "a run of 64 with every run freed reserved a new region (%zu regions before)", regions);
  hm_arena_free_run(whole, HM_RUN_MAX);
  UNIT_PASS("runs of 1..64 granules: aligned, in one bitmap word, writable, disjoint");
}

/* A freed run stays resident: with no other resident free granule, the
 * next claim of its size takes it again, contents and all, and says it does
 * not read as zeros. A purge with `now` makes it read as zeros again. */
static void check_free_then_reuse(void)
{
  for (size_t count = 1; count <= HM_RUN_MAX; count++) {
    hm_arena_purge(arena, true, true); /* no resident free granule left */
    bool zeroed;
    void *a = hm_arena_alloc_run(arena, count, &zeroed);
    check_run_placed(a, count);
    CHECK(zeroed, "every free granule purged, yet a run of %zu is not zeroed", count);
    check_zero_pages(a, count);
    tag_pages(a, count);
    hm_arena_free_run(a, count);
    uint64_t bits = unit_run_bits(a, count);
    CHECK((bitmap_word(a) & bits) == 0, "freed run %p of %zu still marked", a, count);
    void *b = hm_arena_alloc_run(arena, count, &zeroed);
    CHECK(b == a, "run of %zu freed at %p, claimed again at %p", count, a, b);
    CHECK(!zeroed, "a run of %zu claimed again unpurged is said to read as zeros", count);
    check_page_tags(b, count);
    hm_arena_free_run(b, count);
    hm_arena_purge(arena, true, true);
    b = hm_arena_alloc_run(arena, count, &zeroed);
    CHECK(zeroed, "a run of %zu after a purge of everything is not zeroed", count);
    check_zero_pages(b, count);
    hm_arena_free_run(b, count);
  }
  UNIT_PASS("a freed run is claimed again, unzeroed; zeroed once purged");
}

/* Claims runs of one granule until it gets `target`, a free granule. The
 * runs claimed on the way are stored in `others`. */
static size_t claim_until(void *target, void **others, size_t cap)
{
  for (size_t n = 0; n < cap; n++) {
    void *r = alloc_run(1);
    CHECK(r != NULL, "hm_arena_alloc_run(1) returned NULL");
    if (r == target)
      return n;
    others[n] = r;
  }
  FAIL("%zu runs of one granule claimed without the free granule %p", cap, target);
}

static void check_grow_shrink(void)
{
  void *r = alloc_run(8);
  check_run_placed(r, 8);
  hm_arena_shrink_run(r, 8, 4);
  check_run_placed(r, 4);
  uint64_t tail = unit_bits(4, unit_granule_index(r) % 64 + 4);
  CHECK((bitmap_word(r) & tail) == 0, "shrinking %p from 8 to 4 left the tail marked", r);
  CHECK(hm_arena_grow_run(r, 4, 8), "growing %p back to 8 over its free tail failed", r);
  check_run_placed(r, 8);
  memset(r, 0x5a, 8 * HM_GRANULE); /* the grown part is committed */

  /* Never across a bitmap word. */
  size_t bit = unit_granule_index(r) % 64;
  uint64_t before = bitmap_word(r);
  CHECK(!hm_arena_grow_run(r, 8, 64 - bit + 1), "grew %p at bit %zu past the word", r, bit);
  CHECK(bitmap_word(r) == before, "a refused grow changed the bitmap");
  hm_arena_free_run(r, 8);

  /* Not over a granule in use: block the one after a run, then grow. */
  void *r2 = alloc_run(2);
  check_run_placed(r2, 2);
  hm_arena_shrink_run(r2, 2, 1);
  void *next = (uint8_t *)r2 + HM_GRANULE;
  size_t cap = regions_live() * HM_REGION_GRANULES;
  void **others = calloc(cap, sizeof *others);
  CHECK(others != NULL, "calloc failed");
  size_t n_others = claim_until(next, others, cap);
  before = bitmap_word(r2);
  CHECK(!hm_arena_grow_run(r2, 1, 2), "grew %p over the granule in use after it", r2);
  CHECK(bitmap_word(r2) == before, "a refused grow changed the bitmap");
  hm_arena_free_run(next, 1);
  CHECK(hm_arena_grow_run(r2, 1, 2), "grow of %p failed once the next granule was freed", r2);
  hm_arena_free_run(r2, 2);
  for (size_t i = 0; i < n_others; i++)
    hm_arena_free_run(others[i], 1);
  free(others);
  UNIT_PASS("grow over free granules, refused over used ones or past a word; shrink");
}

/* Concurrent claims. Every granule of a live run is marked with its owner
 * in a table; a second owner of the same granule is an overlap. */
#define THREADS 16
#define OPS_PER_THREAD UNIT_SCALE(20000)
#define RUNS_PER_THREAD 8
#define MAX_REGIONS 256

static _Atomic uintptr_t region_bases[MAX_REGIONS];
static _Atomic unsigned owners[MAX_REGIONS][HM_REGION_GRANULES];

/* The table row of the region holding `p`, registering it when new. */
static unsigned region_row(const void *p)
{
  uintptr_t base = (uintptr_t)hm_region_of(p);
  for (unsigned i = 0; i < MAX_REGIONS; i++) {
    uintptr_t b = atomic_load(&region_bases[i]);
    if (b == 0 && atomic_compare_exchange_strong(&region_bases[i], &b, base))
      return i;
    if (b == base)
      return i;
  }
  FAIL("more than %d regions for %d runs of at most 64 granules", MAX_REGIONS,
       THREADS * RUNS_PER_THREAD);
}

static void mark(void *run, size_t first, size_t count, unsigned who)
{
  for (size_t i = first; i < first + count; i++) {
    uint8_t *g = (uint8_t *)run + i * HM_GRANULE;
    unsigned was = 0;
    bool free = atomic_compare_exchange_strong(&owners[region_row(g)][unit_granule_index(g)], &was,
                                               who);
    CHECK(free, "granule %p claimed by thread %u is owned by thread %u", (void *)g, who, was);
    *(unsigned *)g = who; /* committed and writable */
  }
}

static void unmark(void *run, size_t first, size_t count, unsigned who)
{
  for (size_t i = first; i < first + count; i++) {
    uint8_t *g = (uint8_t *)run + i * HM_GRANULE;
    CHECK(*(unsigned *)g == who, "granule %p of thread %u was written by %u", (void *)g, who,
          *(unsigned *)g);
    unsigned was = who;
    bool ours = atomic_compare_exchange_strong(&owners[region_row(g)][unit_granule_index(g)], &was, 0);
    CHECK(ours, "granule %p of thread %u is marked for thread %u", (void *)g, who, was);
  }
}

typedef struct claimer {
  unsigned who; /* 1 + thread index */
  void *run[RUNS_PER_THREAD];
  size_t count[RUNS_PER_THREAD];
} claimer;

static void claim_slot(claimer *c, unsigned i, uint64_t rnd)
{
  size_t count = 1 + rnd % HM_RUN_MAX;
  void *run = alloc_run(count);
  check_run_placed(run, count);
  mark(run, 0, count, c->who);
  c->run[i] = run;
  c->count[i] = count;
}

/* Grows, shrinks or frees the run in slot i. A shrunk tail is unmarked
 * before it is freed: from then on another thread may claim it. */
static void change_slot(claimer *c, unsigned i, uint64_t rnd)
{
  void *run = c->run[i];
  size_t count = c->count[i];
  switch (rnd % 4) {
  case 0: {
    size_t grown = count + 1 + (rnd >> 8) % 8;
    if (grown <= HM_RUN_MAX && hm_arena_grow_run(run, count, grown)) {
      mark(run, count, grown - count, c->who);
      c->count[i] = grown;
    }
    return;
  }
  case 1:
    if (count > 1) {
      size_t kept = 1 + (rnd >> 8) % (count - 1);
      unmark(run, kept, count - kept, c->who);
      hm_arena_shrink_run(run, count, kept);
      c->count[i] = kept;
    }
    return;
  default:
    unmark(run, 0, count, c->who);
    hm_arena_free_run(run, count);
    c->run[i] = NULL;
  }
}

static void *claim_concurrently(void *arg)
{
  claimer *c = arg;
  uint64_t state = 0x1234567ull * c->who + 1;
  for (unsigned op = 0; op < OPS_PER_THREAD; op++) {
    uint64_t rnd = unit_rand(&state);
    unsigned i = rnd % RUNS_PER_THREAD;
    if (c->run[i] == NULL)
      claim_slot(c, i, rnd >> 3);
    else
      change_slot(c, i, rnd >> 3);
  }
  for (unsigned i = 0; i < RUNS_PER_THREAD; i++)
    if (c->run[i] != NULL) {
      unmark(c->run[i], 0, c->count[i], c->who);
      hm_arena_free_run(c->run[i], c->count[i]);
    }
  return NULL;
}

static void check_concurrent_claims(void)
{
  claimer claimers[THREADS];
  memset(claimers, 0, sizeof claimers);
  for (unsigned t = 0; t < THREADS; t++)
    claimers[t].who = t + 1;
  run_threads(THREADS, claim_concurrently, claimers, sizeof claimers[0]);
  /* Everything was freed: every registered region is back to its header. */
  for (unsigned i = 0; i < MAX_REGIONS && atomic_load(&region_bases[i]); i++) {
    hm_region *r = (hm_region *)atomic_load(&region_bases[i]);
    for (size_t w = 0; w < HM_REGION_WORDS; w++)
      CHECK(atomic_load(&r->used[w]) == (w == 0 ? 1u : 0u),
            "region %p word %zu is %#lx after every run was freed", (void *)r, w,
            (unsigned long)atomic_load(&r->used[w]));
  }
  printf("ok: %d threads x %d claim/grow/shrink/free: runs disjoint, bitmap clean after\n",
         THREADS, OPS_PER_THREAD);
}

/* A span from hm_arena_take_span is formatted for the class asked. */
static void check_span_formatted(hm_span *s, unsigned cls)
{
  CHECK(s != NULL, "hm_arena_take_span(%u) returned NULL", cls);
  CHECK(((uintptr_t)s & (HM_GRANULE - 1)) == 0, "span %p not granule aligned", (void *)s);
  CHECK(s->cls == cls && s->block_size == hm_class_size[cls],
        "span %p: class %u size %u, expected class %u size %u", (void *)s, s->cls,
        s->block_size, cls, hm_class_size[cls]);
  CHECK(s->kind == HM_KIND_SMALL && s->arena == arena, "span %p: kind %u arena %p", (void *)s,
        s->kind, (void *)s->arena);
  CHECK(s->granules == hm_class_granules[cls], "span %p of class %u: %u granules, expected %u",
        (void *)s, cls, s->granules, hm_class_granules[cls]);
  CHECK(s->blocks == (uint8_t *)s + hm_class_offset(s->block_size), "span %p: blocks at %p", (void *)s,
        (void *)s->blocks);
  CHECK(atomic_load(&s->state) == HM_SPAN_OWNED && atomic_load(&s->owner) == 0,
        "span %p: state %u owner %p", (void *)s, atomic_load(&s->state),
        (void *)atomic_load(&s->owner));
  CHECK(hm_remote_list(atomic_load(&s->remote)) == NULL && s->local_free == NULL,
        "span %p: free lists not empty", (void *)s);
  for (unsigned g = 0; g < s->granules; g++) {
    uint8_t *p = (uint8_t *)s + g * HM_GRANULE + HM_GRANULE / 2;
    CHECK(hm_pagemap_header(p) == s, "granule %u of span %p maps to %p", g, (void *)s,
          hm_pagemap_header(p));
  }
}

/* The blocks of the first carve of a fresh span: the first one at its
 * first slot, each carrying hm_zero_key exactly when the span's memory read
 * as zeros (calloc skips the memset for those), and zeros after the key. */
static hm_block *check_first_carve(hm_span *s)
{
  hm_block *list = hm_span_collect(s);
  CHECK((uint8_t *)list == s->blocks, "first block of a fresh span %p is %p, expected %p",
        (void *)s, (void *)list, (void *)s->blocks);
  for (hm_block *b = list; b != NULL; b = b->next) {
    CHECK(b->key == (s->zeroed ? hm_zero_key : 0),
          "block %p of span %p (zeroed %d): key %#lx", (void *)b, (void *)s, s->zeroed,
          (unsigned long)b->key);
    if (s->zeroed)
      for (size_t i = sizeof(hm_block); i < s->block_size; i++)
        CHECK(((uint8_t *)b)[i] == 0, "byte %zu of block %p of a zeroed span is %#x", i,
              (void *)b, ((uint8_t *)b)[i]);
  }
  return list;
}

static unsigned other_class_same_granules(unsigned cls)
{
  for (unsigned c = 0; c < HM_CLASSES; c++)
    if (c != cls && hm_class_granules[c] == hm_class_granules[cls])
      return c;
  FAIL("class %u is the only one with %u granules", cls, hm_class_granules[cls]);
}

/* Writes over a span's blocks, so that memory it leaves behind is not zero. */
static void scribble(hm_span *s, hm_block *carved)
{
  for (hm_block *b = carved; b != NULL; b = b->next)
    memset((uint8_t *)b + sizeof(hm_block), 0xee, s->block_size - sizeof(hm_block));
}

/* The holder lets go of a span whose blocks are all free: it waits on its
 * class's empty stack, and the next purge pass gives it back to its
 * region, aged by that same pass (the one after purges it: one to two
 * delays after the span emptied, as for granules freed directly). */
static void release_unused(hm_span *s, hm_block *list)
{
  hm_span_release(s, list);
  CHECK(atomic_load(&s->state) == HM_SPAN_EMPTY &&
            hm_stack_node(atomic_load(&arena->empty[s->cls].stack.head)) == &s->link,
        "an unused span %p is not on its class's empty stack (state %u)", (void *)s,
        atomic_load(&s->state));
  hm_arena_purge(arena, false, false);
}

static void check_take_span(void)
{
  hm_arena_purge(arena, true, true); /* no resident free granule left */
  hm_span *spans[HM_CLASSES];
  hm_block *carved[HM_CLASSES];
  for (unsigned cls = 0; cls < HM_CLASSES; cls++) {
    spans[cls] = hm_arena_take_span(arena, cls, true);
    check_span_formatted(spans[cls], cls);
    CHECK(spans[cls]->zeroed, "span of class %u formed on purged memory is not zeroed", cls);
    carved[cls] = check_first_carve(spans[cls]);
  }
  /* A partial span comes back as it is. Once its blocks are all free, the
   * owner letting go of it gives it back to its region; the granules are
   * then the only resident free ones, so the next span of that many
   * granules forms there, for any class, and does not read as zeros. */
  for (unsigned cls = 0; cls < HM_CLASSES; cls++) {
    hm_span *s = spans[cls];
    unsigned granules = s->granules;
    atomic_store(&s->state, HM_SPAN_LISTED);
    hm_arena_push_partial(s);
    CHECK(hm_arena_take_span(arena, cls, true) == s, "partial span %p of class %u not taken back",
          (void *)s, cls);
    scribble(s, carved[cls]);
    release_unused(s, carved[cls]);
    unit_check_given_back_aged(s, granules, true, "a span released with every block free");
    unsigned other = other_class_same_granules(cls);
    hm_span *t = hm_arena_take_span(arena, other, true);
    CHECK(t == s, "the granules of span %p given back were not reused for class %u (got %p)",
          (void *)s, other, (void *)t);
    check_span_formatted(t, other);
    CHECK(!t->zeroed, "span %p formed on resident memory says it reads as zeros", (void *)t);
    release_unused(t, check_first_carve(t));
    unit_check_given_back_aged(t, granules, true, "a span of the other class, released unused");
    hm_arena_purge(arena, true, true); /* deterministic again: nothing resident */
  }
  UNIT_PASS("hm_arena_take_span: formatted spans of every class, zeroed when fresh; partial "
            "reuse; an unused span goes back to its region and its granules are reused");
}

/* A listed span whose last blocks other threads free stays listed until a
 * purge pass finds it unused and gives it back; a listed span with a block
 * in use is kept. */
static void check_purge_reclaims_unused(void)
{
  enum { CLS = 12 };
  hm_span *unused = hm_arena_take_span(arena, CLS, true);
  hm_span *in_use = hm_arena_take_span(arena, CLS, true);
  hm_block *a = hm_span_collect(unused), *b = hm_span_collect(in_use);
  CHECK(a != NULL && a->next != NULL && b != NULL, "collect of fresh spans of class %d failed",
        CLS);
  /* Read before the header is purged. */
  size_t granules = unused->granules, in_use_granules = in_use->granules;
  hm_block *a_kept = a, *a_rest = a->next;
  hm_span_release(unused, a_rest); /* one block in use: listed */
  hm_span_release(in_use, b->next);
  CHECK(atomic_load(&unused->state) == HM_SPAN_LISTED &&
            atomic_load(&in_use->state) == HM_SPAN_LISTED,
        "spans released with a block in use: states %u and %u", atomic_load(&unused->state),
        atomic_load(&in_use->state));
  hm_span_free_remote(unused, a_kept);
  CHECK(hm_span_is_unused(unused) && hm_pagemap_header(unused) == unused,
        "a listed span with every block freed remotely: unused %d, page map %p",
        hm_span_is_unused(unused), hm_pagemap_header(unused));
  size_t calls = atomic_load(&arena->purge_calls);
  hm_arena_purge(arena, false, true);
  unit_check_given_back_aged(unused, granules, true,
                             "an unused listed span after a purge pass");
  CHECK(hm_pagemap_header(in_use) == in_use, "a listed span in use lost its page-map entry");
  CHECK(hm_arena_take_span(arena, CLS, true) == in_use,
        "the listed span in use is not on the partial list any more");
  CHECK(atomic_load(&arena->purge_calls) == calls,
        "a pass right after the span was given back purged (%zu calls)",
        atomic_load(&arena->purge_calls) - calls);
  /* The next pass finds the granules aged, and purges them. */
  size_t purged = atomic_load(&arena->purged_bytes);
  hm_arena_purge(arena, false, true);
  CHECK(atomic_load(&arena->purged_bytes) - purged >= granules * HM_GRANULE,
        "the second pass purged %zu bytes, expected at least the span's %zu",
        atomic_load(&arena->purged_bytes) - purged, granules * HM_GRANULE);
  CHECK((UNIT_WORD(clean, unused) & unit_run_bits(unused, granules)) ==
            unit_run_bits(unused, granules),
        "the purged granules of the span are not marked clean");
  hm_block *left = hm_span_collect(in_use);
  CHECK(left == b->next, "the span in use lost its free blocks");
  hm_span_free_remote(in_use, b);
  release_unused(in_use, left);
  unit_check_given_back_aged(in_use, in_use_granules, true, "the other span, all blocks free");
  UNIT_PASS("a purge pass gives back listed spans found unused, keeps the others; the next "
            "one purges their granules");
}

/* Whether the page at `p` is mapped: msync fails with ENOMEM where it is
 * not. */
static bool page_mapped(void *p)
{
  return msync(p, 4096, MS_ASYNC) == 0;
}

/* Starting from no region: runs that fill one region and start a second,
 * touched, then all freed. Both regions are then empty, with resident
 * granules freed since the last pass. */
static void use_two_fresh_regions(void)
{
  enum { MAX_RUNS = 2 * HM_REGION_GRANULES / HM_RUN_MAX };
  void *runs[MAX_RUNS];
  size_t n = 0;
  while (regions_live() < 2) {
    CHECK(n < MAX_RUNS, "%d runs of 64 granules, yet fewer than two regions", MAX_RUNS);
    runs[n] = alloc_run(HM_RUN_MAX);
    check_run_placed(runs[n], HM_RUN_MAX);
    tag_pages(runs[n++], 1);
  }
  while (n > 0)
    hm_arena_free_run(runs[--n], HM_RUN_MAX);
}

/* Empty regions are unmapped: without `all` only those empty since the
 * previous pass, and never the newest; with `all` every empty one. */
static void check_release_regions(void)
{
  hm_arena_release_regions(arena, true);
  CHECK(regions_live() == 0, "every run freed, yet %zu regions kept by a release of all",
        regions_live());
  use_two_fresh_regions();
  size_t live = regions_live(), released = atomic_load(&arena->regions_released);
  hm_region *newest = atomic_load(&arena->regions);
  CHECK(hm_arena_has_idle(arena), "freed runs: hm_arena_has_idle is false");
  CHECK(hm_arena_release_regions(arena, false) == 0,
        "regions emptied since the last pass were released");
  hm_arena_purge(arena, false, true); /* ages what was freed */
  size_t bytes = hm_arena_release_regions(arena, false);
  CHECK(live == 2 && bytes == HM_REGION_SIZE && regions_live() == 1,
        "%zu idle regions: %zu bytes released, %zu regions left (expected all but the newest)",
        live, bytes, regions_live());
  CHECK(atomic_load(&arena->regions) == newest && atomic_load(&newest->next) == NULL,
        "the newest region is not the one kept, or not alone");
  CHECK(atomic_load(&arena->regions_released) == released + live - 1,
        "regions_released went from %zu to %zu", released,
        atomic_load(&arena->regions_released));
  CHECK(hm_arena_release_regions(arena, true) == HM_REGION_SIZE && regions_live() == 0,
        "release of all: the newest, empty region was not released");
  CHECK(!page_mapped(newest), "the released region %p is still mapped",
        (void *)newest);
  CHECK(!hm_arena_has_idle(arena), "no region left, yet hm_arena_has_idle");
  /* The arena maps a region again when asked. */
  bool zeroed;
  void *run = hm_arena_alloc_run(arena, 3, &zeroed);
  check_run_placed(run, 3);
  CHECK(zeroed && regions_live() == 1, "a run from a new region: zeroed %d, %zu regions",
        zeroed, regions_live());
  hm_arena_free_run(run, 3);
  CHECK(hm_arena_release_regions(arena, true) == HM_REGION_SIZE,
        "the region mapped again was not released");
  UNIT_PASS("empty regions released after a pass (the newest kept), all with `all`; the "
            "arena maps a new one after");
}

int main(void)
{
  hm_process_init();
  arena = hm_arena_for_node(-1);
  check_runs_of_every_count();
  check_free_then_reuse();
  check_grow_shrink();
  check_concurrent_claims(); /* expects every earlier run freed */
  check_take_span();
  check_purge_reclaims_unused();
  check_release_regions(); /* expects every earlier run and span freed */
  return 0;
}
